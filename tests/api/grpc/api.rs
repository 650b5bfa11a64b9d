//! Every RPC of the gRPC door, with the semantics of spec §2.4 and the codes of §2.5.

use std::collections::HashMap;

use tonic::Code;
use tonic_types::{ErrorDetail, StatusExt};

use super::client::common::{Etag, StateItem, StateOptions, state_options};
use super::client::runtime::{
    DeleteBulkStateRequest, DeleteStateRequest, ExecuteStateTransactionRequest,
    GetBulkStateRequest, GetMetadataRequest, GetMetadataResponse, GetStateRequest,
    QueryStateRequest, SaveStateRequest, SetMetadataRequest, TransactionalStateOperation,
};
use super::client::{GrpcExt, TestMecha, etag_only_store, flaky_store, item, item_etag, reason};

const S: &str = "statestore";

fn get(key: &str) -> GetStateRequest {
    GetStateRequest {
        store_name: S.into(),
        key: key.into(),
        ..GetStateRequest::default()
    }
}

fn save(states: Vec<StateItem>) -> SaveStateRequest {
    SaveStateRequest {
        store_name: S.into(),
        states,
    }
}

fn op(kind: &str, item: StateItem) -> TransactionalStateOperation {
    TransactionalStateOperation {
        operation_type: kind.into(),
        request: Some(item),
    }
}

/// GetState of a missing key is an empty success, not an error.
#[actix_rt::test]
async fn get_missing_key_is_empty_success() {
    let m = TestMecha::memory().start().await;
    let mut c = m.grpc().await;
    let r = c.get_state(get("nope")).await.unwrap().into_inner();
    assert!(r.data.is_empty() && r.etag.is_empty() && r.metadata.is_empty());
    m.stop().await;
}

/// Raw bytes are stored as they are; reads return them with an ETag and TTL metadata.
#[actix_rt::test]
async fn save_then_get_returns_raw_bytes_etag_and_ttl() {
    let m = TestMecha::memory().start().await;
    let mut c = m.grpc().await;
    let mut it = item("k", b"\x00raw\xffbytes");
    it.metadata.insert("ttlInSeconds".into(), "100".into());
    c.save_state(save(vec![it])).await.unwrap();
    let r = c.get_state(get("k")).await.unwrap().into_inner();
    assert_eq!(r.data, b"\x00raw\xffbytes");
    assert!(!r.etag.is_empty());
    assert!(r.metadata.contains_key("ttlExpireTime"), "{:?}", r.metadata);
    // An empty save is a no-op.
    c.save_state(save(vec![])).await.unwrap();
    m.stop().await;
}

/// ETags: match succeeds, stale is Aborted, non-numeric is InvalidArgument, and
/// `Etag{value:""}` counts as no ETag.
#[actix_rt::test]
async fn etags_on_save() {
    let m = TestMecha::memory().start().await;
    let mut c = m.grpc().await;
    c.save_state(save(vec![item("k", b"1")])).await.unwrap();
    let e1 = c.get_state(get("k")).await.unwrap().into_inner().etag;
    c.save_state(save(vec![item_etag("k", b"2", &e1)]))
        .await
        .unwrap();
    let st = c
        .save_state(save(vec![item_etag("k", b"3", &e1)]))
        .await
        .unwrap_err();
    assert_eq!(st.code(), Code::Aborted);
    assert_eq!(reason(&st).as_deref(), Some("ERR_STATE_SAVE"));
    assert!(
        st.message()
            .starts_with("failed saving state in state store statestore: possible etag mismatch"),
        "{}",
        st.message()
    );
    let st = c
        .save_state(save(vec![item_etag("k", b"3", "not-a-number")]))
        .await
        .unwrap_err();
    assert_eq!(st.code(), Code::InvalidArgument);
    assert_eq!(reason(&st).as_deref(), Some("ERR_STATE_SAVE"));
    c.save_state(save(vec![item_etag("k", b"4", "")]))
        .await
        .unwrap();
    assert_eq!(c.get_state(get("k")).await.unwrap().into_inner().data, b"4");
    m.stop().await;
}

/// Options present but all UNSPECIFIED are unspecified (last-write); FIRST_WRITE is honoured.
#[actix_rt::test]
async fn options_unspecified_and_first_write() {
    let m = TestMecha::memory().start().await;
    let mut c = m.grpc().await;
    c.save_state(save(vec![item("k", b"1")])).await.unwrap();
    let unspecified = StateItem {
        options: Some(StateOptions::default()),
        ..item("k", b"2")
    };
    c.save_state(save(vec![unspecified])).await.unwrap();
    let first_write = StateItem {
        options: Some(StateOptions {
            concurrency: state_options::StateConcurrency::ConcurrencyFirstWrite as i32,
            consistency: state_options::StateConsistency::ConsistencyStrong as i32,
        }),
        ..item("k", b"3")
    };
    let st = c.save_state(save(vec![first_write])).await.unwrap_err();
    assert_eq!(st.code(), Code::Aborted);
    let r = c
        .get_state(GetStateRequest {
            consistency: state_options::StateConsistency::ConsistencyStrong as i32,
            ..get("k")
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.data, b"2");
    m.stop().await;
}

/// SaveState with an empty key is InvalidArgument "state key cannot be empty".
#[actix_rt::test]
async fn save_empty_key_is_invalid_argument() {
    let m = TestMecha::memory().start().await;
    let mut c = m.grpc().await;
    let st = c.save_state(save(vec![item("", b"x")])).await.unwrap_err();
    assert_eq!(st.code(), Code::InvalidArgument);
    assert_eq!(st.message(), "state key cannot be empty");
    assert_eq!(reason(&st).as_deref(), Some("ERR_STATE_SAVE"));
    m.stop().await;
}

/// `contentType=application/json` on SaveState re-serializes JSON; invalid JSON is
/// `INVALID_ARGUMENT` (daprd answers a plain `Unknown`).
#[actix_rt::test]
async fn save_with_json_content_type() {
    let m = TestMecha::memory().start().await;
    let mut c = m.grpc().await;
    let mut it = item("j", br#"{ "b": 1, "a": "x" }"#);
    it.metadata
        .insert("contentType".into(), "application/json".into());
    c.save_state(save(vec![it.clone()])).await.unwrap();
    let r = c.get_state(get("j")).await.unwrap().into_inner();
    assert_eq!(r.data, br#"{"a":"x","b":1}"#);
    it.value = b"{not json".to_vec();
    let st = c.save_state(save(vec![it])).await.unwrap_err();
    assert_eq!(st.code(), Code::InvalidArgument);
    assert_eq!(reason(&st).as_deref(), Some("ERR_MALFORMED_REQUEST"));
    m.stop().await;
}

/// GetBulkState keeps request order, leaves missing keys empty and strips prefixes.
#[actix_rt::test]
async fn bulk_get_in_order_with_missing_keys() {
    let m = TestMecha::memory().start().await;
    let mut c = m.grpc().await;
    c.save_state(save(vec![item("a", b"A"), item("b", b"B")]))
        .await
        .unwrap();
    let r = c
        .get_bulk_state(GetBulkStateRequest {
            store_name: S.into(),
            keys: vec!["b".into(), "missing".into(), "a".into()],
            parallelism: 2,
            metadata: HashMap::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let got: Vec<(&str, &[u8], bool)> = r
        .items
        .iter()
        .map(|i| (i.key.as_str(), i.data.as_slice(), i.etag.is_empty()))
        .collect();
    assert_eq!(
        got,
        [
            ("b", &b"B"[..], false),
            ("missing", &b""[..], true),
            ("a", &b"A"[..], false)
        ]
    );
    let empty = c
        .get_bulk_state(GetBulkStateRequest {
            store_name: S.into(),
            ..GetBulkStateRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(empty.items.is_empty());
    m.stop().await;
}

/// Per-key failures come back in `BulkStateItem.error`, the call itself succeeds.
#[actix_rt::test]
async fn bulk_get_reports_per_item_errors() {
    let m = TestMecha::empty()
        .custom("flaky", flaky_store())
        .start()
        .await;
    let mut c = m.grpc().await;
    c.save_state(SaveStateRequest {
        store_name: "flaky".into(),
        states: vec![item("good", b"G")],
    })
    .await
    .unwrap();
    let r = c
        .get_bulk_state(GetBulkStateRequest {
            store_name: "flaky".into(),
            keys: vec!["good".into(), "bad1".into()],
            ..GetBulkStateRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.items[0].data, b"G");
    assert!(r.items[0].error.is_empty());
    assert_eq!(r.items[1].key, "bad1");
    assert!(r.items[1].data.is_empty());
    assert!(r.items[1].error.contains("boom"), "{:?}", r.items[1]);
    m.stop().await;
}

/// DeleteState: ETag match deletes, stale ETag is Aborted, a missing key is fine.
#[actix_rt::test]
async fn delete_with_etags() {
    let m = TestMecha::memory().start().await;
    let mut c = m.grpc().await;
    c.save_state(save(vec![item("k", b"1")])).await.unwrap();
    let e1 = c.get_state(get("k")).await.unwrap().into_inner().etag;
    c.save_state(save(vec![item("k", b"2")])).await.unwrap();
    let del = |etag: Option<&str>| DeleteStateRequest {
        store_name: S.into(),
        key: "k".into(),
        etag: etag.map(|v| Etag { value: v.into() }),
        // A present-but-empty options message (the JS SDK sends one).
        options: Some(StateOptions::default()),
        metadata: HashMap::new(),
    };
    let st = c.delete_state(del(Some(&e1))).await.unwrap_err();
    assert_eq!(st.code(), Code::Aborted);
    assert_eq!(reason(&st).as_deref(), Some("ERR_STATE_DELETE"));
    assert!(
        st.message()
            .starts_with("failed deleting state with key k: ")
    );
    let e2 = c.get_state(get("k")).await.unwrap().into_inner().etag;
    c.delete_state(del(Some(&e2))).await.unwrap();
    assert!(
        c.get_state(get("k"))
            .await
            .unwrap()
            .into_inner()
            .data
            .is_empty()
    );
    c.delete_state(del(None)).await.unwrap();
    c.delete_state(del(Some(""))).await.unwrap();
    m.stop().await;
}

/// DeleteBulkState deletes every key; a stale ETag is Aborted, and the good items are
/// deleted anyway (partial success).
#[actix_rt::test]
async fn delete_bulk_partial_success() {
    let m = TestMecha::memory().start().await;
    let mut c = m.grpc().await;
    c.save_state(save(vec![
        item("a", b"1"),
        item("b", b"2"),
        item("c", b"3"),
    ]))
    .await
    .unwrap();
    c.delete_bulk_state(DeleteBulkStateRequest {
        store_name: S.into(),
        states: vec![item("a", b"")],
    })
    .await
    .unwrap();
    let st = c
        .delete_bulk_state(DeleteBulkStateRequest {
            store_name: S.into(),
            states: vec![item("b", b""), item_etag("c", b"", "999999")],
        })
        .await
        .unwrap_err();
    assert_eq!(st.code(), Code::Aborted);
    assert_eq!(reason(&st).as_deref(), Some("ERR_STATE_BULK_DELETE"));
    for (k, want) in [("a", &b""[..]), ("b", b""), ("c", b"3")] {
        assert_eq!(
            c.get_state(get(k)).await.unwrap().into_inner().data,
            want,
            "{k}"
        );
    }
    m.stop().await;
}

/// Transactions: upserts (raw bytes, even with a JSON content type) and deletes apply
/// together; an unknown operation is Unimplemented; an ETag mismatch is Internal.
#[actix_rt::test]
async fn transactions() {
    // `partitionKey` is rejected unless the store's policy says what to do with it.
    let m = TestMecha::memory()
        .settings("stores:\n  statestore:\n    partitionKey: ignore\n")
        .start()
        .await;
    let mut c = m.grpc().await;
    c.save_state(save(vec![item("gone", b"x")])).await.unwrap();
    let mut raw = item("t1", b"{ \"raw\": true }");
    raw.metadata
        .insert("contentType".into(), "application/json".into());
    let tx = |ops| ExecuteStateTransactionRequest {
        store_name: S.into(),
        operations: ops,
        metadata: HashMap::from([("partitionKey".into(), "p".into())]),
    };
    c.execute_state_transaction(tx(vec![op("upsert", raw), op("delete", item("gone", b""))]))
        .await
        .unwrap();
    assert_eq!(
        c.get_state(get("t1")).await.unwrap().into_inner().data,
        b"{ \"raw\": true }"
    );
    assert!(
        c.get_state(get("gone"))
            .await
            .unwrap()
            .into_inner()
            .data
            .is_empty()
    );
    // No operations: nothing to do.
    c.execute_state_transaction(tx(vec![])).await.unwrap();

    let st = c
        .execute_state_transaction(tx(vec![op("merge", item("t1", b"x"))]))
        .await
        .unwrap_err();
    assert_eq!(st.code(), Code::Unimplemented);
    assert_eq!(st.message(), "operation type merge not supported");
    assert_eq!(
        reason(&st).as_deref(),
        Some("ERR_NOT_SUPPORTED_STATE_OPERATION")
    );

    let st = c
        .execute_state_transaction(tx(vec![
            op("upsert", item("t2", b"y")),
            op("upsert", item_etag("t1", b"z", "999999")),
        ]))
        .await
        .unwrap_err();
    assert_eq!(st.code(), Code::Internal);
    assert_eq!(reason(&st).as_deref(), Some("ERR_STATE_TRANSACTION"));
    // All or nothing.
    assert!(
        c.get_state(get("t2"))
            .await
            .unwrap()
            .into_inner()
            .data
            .is_empty()
    );
    m.stop().await;
}

/// More operations than the limit: InvalidArgument with the counts in ErrorInfo metadata.
#[actix_rt::test]
async fn too_many_transaction_operations() {
    let m = TestMecha::memory()
        .settings("limits:\n  maxTransactionOps: 2\n")
        .start()
        .await;
    let mut c = m.grpc().await;
    let ops = (0..3)
        .map(|i| op("upsert", item(&format!("k{i}"), b"v")))
        .collect();
    let st = c
        .execute_state_transaction(ExecuteStateTransactionRequest {
            store_name: S.into(),
            operations: ops,
            metadata: HashMap::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(st.code(), Code::InvalidArgument);
    let info = st.get_details_error_info().unwrap();
    assert_eq!(info.reason, "DAPR_STATE_TOO_MANY_TRANSACTIONS");
    assert_eq!(info.metadata["currentOpsTransaction"], "3");
    assert_eq!(info.metadata["maxOpsPerTransaction"], "2");
    assert!(st.get_details_resource_info().is_some());
    m.stop().await;
}

/// Query on a store without QUERY_API (one that cannot list its keys, so no emulation
/// either): Internal, ResourceInfo + ErrorInfo.
#[actix_rt::test]
async fn query_not_supported_is_internal() {
    let m = TestMecha::memory()
        .custom("plain", etag_only_store())
        .start()
        .await;
    let mut c = m.grpc().await;
    let st = c
        .query_state_alpha1(QueryStateRequest {
            store_name: "plain".into(),
            query: "{}".into(),
            metadata: HashMap::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(st.code(), Code::Internal);
    assert_eq!(
        st.message(),
        "state store does not support querying (capability query (QUERY_API), policy: reject (built-in default))"
    );
    assert_eq!(
        reason(&st).as_deref(),
        Some("DAPR_STATE_QUERYING_NOT_SUPPORTED")
    );
    assert!(st.get_details_resource_info().is_some());
    m.stop().await;
}

/// Store lookup: unknown (and empty) names are InvalidArgument, no stores at all is
/// FailedPrecondition; ErrorInfo metadata is empty on gRPC.
#[actix_rt::test]
async fn store_lookup_errors() {
    let m = TestMecha::memory().start().await;
    let mut c = m.grpc().await;
    for name in ["nope", ""] {
        let st = c
            .get_state(GetStateRequest {
                store_name: name.into(),
                ..get("k")
            })
            .await
            .unwrap_err();
        assert_eq!(st.code(), Code::InvalidArgument);
        assert_eq!(st.message(), format!("state store {name} is not found"));
        let info = st.get_details_error_info().unwrap();
        assert_eq!(info.reason, "DAPR_STATE_NOT_FOUND");
        assert!(info.metadata.is_empty());
    }
    m.stop().await;

    let m = TestMecha::empty().start().await;
    let mut c = m.grpc().await;
    let st = c.save_state(save(vec![item("k", b"v")])).await.unwrap_err();
    assert_eq!(st.code(), Code::FailedPrecondition);
    assert_eq!(reason(&st).as_deref(), Some("DAPR_STATE_NOT_CONFIGURED"));
    m.stop().await;
}

/// A key with `||`: InvalidArgument with BadRequest, ResourceInfo and ErrorInfo.
#[actix_rt::test]
async fn illegal_key_details() {
    let m = TestMecha::memory().start().await;
    let mut c = m.grpc().await;
    let st = c.get_state(get("a||b")).await.unwrap_err();
    assert_eq!(st.code(), Code::InvalidArgument);
    assert_eq!(
        st.message(),
        "input key/keyPrefix 'a||b' can't contain '||'"
    );
    let d = st.get_error_details_vec();
    assert!(matches!(&d[0], ErrorDetail::BadRequest(b) if b.field_violations[0].field == "a||b"));
    assert!(matches!(&d[1], ErrorDetail::ResourceInfo(r)
        if r.resource_type == "state" && r.resource_name == S));
    assert!(matches!(&d[2], ErrorDetail::ErrorInfo(i) if i.reason == "DAPR_STATE_ILLEGAL_KEY"));
    m.stop().await;
}

/// GetMetadata lists components with capabilities and extended metadata; SetMetadata adds
/// an attribute; `google.protobuf.Empty` works as the request.
#[actix_rt::test]
async fn metadata_rpcs() {
    let m = TestMecha::memory()
        .custom("plain", etag_only_store())
        .start()
        .await;
    let mut c = m.grpc().await;
    c.set_metadata(SetMetadataRequest {
        key: "owner".into(),
        value: "team-a".into(),
    })
    .await
    .unwrap();
    let md = c
        .get_metadata(GetMetadataRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(md.id, "testapp");
    assert!(md.runtime_version.starts_with("mecha-"));
    let comps: HashMap<&str, (&str, &str, &[String])> = md
        .registered_components
        .iter()
        .map(|c| {
            (
                c.name.as_str(),
                (
                    c.r#type.as_str(),
                    c.version.as_str(),
                    c.capabilities.as_slice(),
                ),
            )
        })
        .collect();
    let (ty, ver, caps) = comps["statestore"];
    assert_eq!((ty, ver), ("state.in-memory", "v1"));
    for cap in ["ETAG", "TRANSACTIONAL", "TTL", "ACTOR"] {
        assert!(caps.iter().any(|c| c == cap), "{cap} missing from {caps:?}");
    }
    assert_eq!(comps["plain"].2, ["ETAG"]);
    assert_eq!(md.extended_metadata["owner"], "team-a");
    assert!(md.extended_metadata.contains_key("daprRuntimeVersion"));

    // The Python SDK sends google.protobuf.Empty; it is the same bytes on the wire.
    let mut grpc = tonic::client::Grpc::new(m.channel().await);
    grpc.ready().await.unwrap();
    let codec = tonic_prost::ProstCodec::<(), GetMetadataResponse>::default();
    let path = "/dapr.proto.runtime.v1.Dapr/GetMetadata".parse().unwrap();
    let md2 = grpc
        .unary(tonic::Request::new(()), path, codec)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(md2.registered_components.len(), 2);
    m.stop().await;
}

/// Methods of the Dapr service that Mecha does not serve answer Unimplemented.
#[actix_rt::test]
async fn unknown_methods_are_unimplemented() {
    let m = TestMecha::memory().start().await;
    let mut grpc = tonic::client::Grpc::new(m.channel().await);
    for path in [
        "/dapr.proto.runtime.v1.Dapr/InvokeService",
        "/dapr.proto.runtime.v1.Dapr/PublishEvent",
        "/some.other.Service/Method",
    ] {
        grpc.ready().await.unwrap();
        let codec = tonic_prost::ProstCodec::<(), ()>::default();
        let st = grpc
            .unary(tonic::Request::new(()), path.parse().unwrap(), codec)
            .await
            .unwrap_err();
        assert_eq!(st.code(), Code::Unimplemented, "{path}");
    }
    m.stop().await;
}

/// With apps configured, `dapr-api-token` picks the app; a missing or wrong token is
/// Unauthenticated, and each app sees only its own keys.
#[actix_rt::test]
async fn api_token_selects_the_app() {
    let m = TestMecha::memory()
        .settings("apps:\n  - id: app-a\n    token: token-a\n  - id: app-b\n    token: token-b\n")
        .start()
        .await;
    let mut c = m.grpc().await;
    fn with_token<T>(token: &str, msg: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        req.metadata_mut()
            .insert("dapr-api-token", token.parse().unwrap());
        req
    }

    let st = c.get_state(get("k")).await.unwrap_err();
    assert_eq!(st.code(), Code::Unauthenticated);
    assert_eq!(st.message(), "Unauthorized");
    let info = st.get_details_error_info().unwrap();
    assert_eq!(info.reason, "Unauthorized");
    assert_eq!(info.metadata["http.code"], "401");
    assert_eq!(
        info.metadata["http.error_message"],
        "missing api token in request metadata"
    );
    let st = c
        .get_state(with_token("wrong", get("k")))
        .await
        .unwrap_err();
    assert_eq!(st.code(), Code::Unauthenticated);

    c.save_state(with_token("token-a", save(vec![item("k", b"a")])))
        .await
        .unwrap();
    let a = c.get_state(with_token("token-a", get("k"))).await.unwrap();
    assert_eq!(a.into_inner().data, b"a");
    let b = c.get_state(with_token("token-b", get("k"))).await.unwrap();
    assert!(b.into_inner().data.is_empty());
    let md = c
        .get_metadata(with_token("token-b", GetMetadataRequest {}))
        .await
        .unwrap();
    assert_eq!(md.into_inner().id, "app-b");
    m.stop().await;
}

/// Messages over the shared size limit: a request gets ResourceExhausted (a proper status,
/// not a dropped connection), and so does a response; HTTP answers 413 for the same body.
#[actix_rt::test]
async fn message_size_limit_is_shared_with_http() {
    let m = TestMecha::memory()
        .settings("limits:\n  maxBodySize: 2048\n")
        .start()
        .await;
    let mut c = m.grpc().await;

    let st = c
        .save_state(save(vec![item("big", &[b'x'; 4096])]))
        .await
        .unwrap_err();
    assert_eq!(st.code(), Code::ResourceExhausted, "{st:?}");
    assert!(st.message().contains("2048"), "{}", st.message());
    // The connection is still usable afterwards.
    c.save_state(save(vec![item("a", &[b'a'; 1500])]))
        .await
        .unwrap();
    c.save_state(save(vec![item("b", &[b'b'; 1500])]))
        .await
        .unwrap();
    let st = c
        .get_bulk_state(GetBulkStateRequest {
            store_name: S.into(),
            keys: vec!["a".into(), "b".into()],
            ..GetBulkStateRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(st.code(), Code::ResourceExhausted, "{st:?}");
    assert_eq!(reason(&st).as_deref(), Some("ERR_RESPONSE_TOO_LARGE"));

    let body = format!(r#"[{{"key":"big","value":"{}"}}]"#, "x".repeat(4096));
    let resp = m
        .client
        .post(m.url("/v1.0/state/statestore"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 413);
    m.stop().await;
}

/// Completed calls are counted per method and status, with Dapr's metric names.
#[actix_rt::test]
async fn grpc_metrics_are_recorded() {
    let m = TestMecha::memory().start().await;
    let mut c = m.grpc().await;
    c.get_state(get("k")).await.unwrap();
    let _ = c
        .get_state(GetStateRequest {
            store_name: "nope".into(),
            ..get("k")
        })
        .await;
    let text = m
        .client
        .get(format!("http://{}/metrics", m.running.metrics_addr))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let has = |status: &str| {
        text.lines().any(|l| {
            l.starts_with("dapr_grpc_io_server_completed_rpcs")
                && l.contains(r#"grpc_server_method="/dapr.proto.runtime.v1.Dapr/GetState""#)
                && l.contains(&format!(r#"grpc_server_status="{status}""#))
        })
    };
    assert!(has("OK"), "{text}");
    assert!(has("InvalidArgument"), "{text}");
    m.stop().await;
}
