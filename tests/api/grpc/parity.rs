//! One store, two doors: the same scenario over HTTP and gRPC gives the paired status
//! (409/Aborted, 400/InvalidArgument, 500/Unimplemented, 500/Internal), and data written
//! through one door reads the same through the other (spec §1.11).

use std::collections::HashMap;

use serde_json::{Value, json};
use tonic::Code;

use super::client::common::Etag;
use super::client::runtime::{
    DeleteStateRequest, ExecuteStateTransactionRequest, GetStateRequest, QueryStateRequest,
    SaveStateRequest, TransactionalStateOperation,
};
use super::client::{
    GrpcExt, Mecha, TestMecha, etag_only_store, flaky_store, item, item_etag, reason,
};

fn get(store: &str, key: &str) -> GetStateRequest {
    GetStateRequest {
        store_name: store.into(),
        key: key.into(),
        ..GetStateRequest::default()
    }
}

/// An HTTP call's status and JSON body (`Null` when empty).
async fn http(m: &Mecha, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = m.client.request(method, m.url(path));
    if let Some(b) = body {
        req = req.body(b.to_string());
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// HTTP's ETag header for a key.
async fn http_etag(m: &Mecha, key: &str) -> String {
    let resp = m
        .client
        .get(m.url(&format!("/v1.0/state/statestore/{key}")))
        .send()
        .await
        .unwrap();
    resp.headers()["etag"].to_str().unwrap().to_owned()
}

/// A stale ETag on save and delete: 409 over HTTP, Aborted over gRPC.
#[actix_rt::test]
async fn stale_etag_is_409_over_http_and_aborted_over_grpc() {
    let m = TestMecha::memory().start().await;
    let mut c = m.grpc().await;
    let save = json!([{"key": "k", "value": 1}]);
    assert_eq!(
        http(&m, "POST", "/v1.0/state/statestore", Some(save))
            .await
            .0,
        204
    );
    let stale = http_etag(&m, "k").await;
    let save = json!([{"key": "k", "value": 2}]);
    assert_eq!(
        http(&m, "POST", "/v1.0/state/statestore", Some(save))
            .await
            .0,
        204
    );

    let (status, body) = http(
        &m,
        "POST",
        "/v1.0/state/statestore",
        Some(json!([{"key": "k", "value": 3, "etag": stale}])),
    )
    .await;
    assert_eq!(
        (status, body["errorCode"].as_str()),
        (409, Some("ERR_STATE_SAVE"))
    );
    let st = c
        .save_state(SaveStateRequest {
            store_name: "statestore".into(),
            states: vec![item_etag("k", b"3", &stale)],
        })
        .await
        .unwrap_err();
    assert_eq!(st.code(), Code::Aborted);
    assert_eq!(reason(&st).as_deref(), Some("ERR_STATE_SAVE"));

    let resp = m
        .client
        .delete(m.url("/v1.0/state/statestore/k"))
        .header("if-match", &stale)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 409);
    let st = c
        .delete_state(DeleteStateRequest {
            store_name: "statestore".into(),
            key: "k".into(),
            etag: Some(Etag {
                value: stale.clone(),
            }),
            ..DeleteStateRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(st.code(), Code::Aborted);
    assert_eq!(reason(&st).as_deref(), Some("ERR_STATE_DELETE"));
    m.stop().await;
}

/// An illegal key and an unknown store: 400 over HTTP, InvalidArgument over gRPC, with the
/// same ErrorInfo reasons.
#[actix_rt::test]
async fn client_errors_are_400_and_invalid_argument() {
    let m = TestMecha::memory().start().await;
    let mut c = m.grpc().await;
    let cases = [
        ("statestore", "a||b", "DAPR_STATE_ILLEGAL_KEY"),
        ("nope", "k", "DAPR_STATE_NOT_FOUND"),
    ];
    for (store, key, want) in cases {
        let (status, body) = http(
            &m,
            "POST",
            &format!("/v1.0/state/{store}"),
            Some(json!([{"key": key, "value": 1}])),
        )
        .await;
        assert_eq!(status, 400, "{body}");
        let reasons: Vec<&str> = body["details"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|d| d["reason"].as_str())
            .collect();
        assert_eq!(reasons, [want]);
        let st = c.get_state(get(store, key)).await.unwrap_err();
        assert_eq!(st.code(), Code::InvalidArgument);
        assert_eq!(reason(&st).as_deref(), Some(want));
    }
    m.stop().await;
}

/// Transactions on a store without TRANSACTIONAL: 500 over HTTP, Unimplemented over gRPC.
#[actix_rt::test]
async fn transactions_not_supported_is_500_and_unimplemented() {
    let m = TestMecha::empty()
        .custom("plain", etag_only_store())
        .start()
        .await;
    let mut c = m.grpc().await;
    let (status, body) = http(
        &m,
        "POST",
        "/v1.0/state/plain/transaction",
        Some(json!({"operations": [{"operation": "upsert", "request": {"key": "k", "value": 1}}]})),
    )
    .await;
    assert_eq!(status, 500);
    assert_eq!(body["errorCode"], "ERR_STATE_STORE_NOT_SUPPORTED");
    let st = c
        .execute_state_transaction(ExecuteStateTransactionRequest {
            store_name: "plain".into(),
            operations: vec![TransactionalStateOperation {
                operation_type: "upsert".into(),
                request: Some(item("k", b"1")),
            }],
            metadata: HashMap::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(st.code(), Code::Unimplemented);
    assert_eq!(
        st.message(),
        "state store plain doesn't support transactions (capability transactions (TRANSACTIONAL), policy: reject (built-in default))"
    );
    assert_eq!(
        reason(&st).as_deref(),
        Some("DAPR_STATE_TRANSACTIONS_NOT_SUPPORTED")
    );
    use tonic_types::StatusExt;
    assert!(st.get_details_help().is_some());
    assert!(st.get_details_resource_info().is_some());
    m.stop().await;
}

/// Query on a store without QUERY_API (one that cannot list its keys, so no emulation
/// either): 500 over HTTP, Internal over gRPC.
#[actix_rt::test]
async fn query_not_supported_is_500_and_internal() {
    let m = TestMecha::memory()
        .custom("plain", etag_only_store())
        .start()
        .await;
    let mut c = m.grpc().await;
    let (status, body) = http(
        &m,
        "POST",
        "/v1.0-alpha1/state/plain/query",
        Some(json!({"filter": {}})),
    )
    .await;
    assert_eq!(
        (status, body["errorCode"].as_str()),
        (500, Some("ERR_STATE_STORE_NOT_SUPPORTED"))
    );
    let st = c
        .query_state_alpha1(QueryStateRequest {
            store_name: "plain".into(),
            query: r#"{"filter":{}}"#.into(),
            metadata: HashMap::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(st.code(), Code::Internal);
    assert_eq!(
        reason(&st).as_deref(),
        Some("DAPR_STATE_QUERYING_NOT_SUPPORTED")
    );
    m.stop().await;
}

/// A store failure on get: 500 `ERR_STATE_GET` over HTTP, Internal with the same reason and
/// message over gRPC.
#[actix_rt::test]
async fn store_failure_is_500_and_internal() {
    let m = TestMecha::empty()
        .custom("flaky", flaky_store())
        .start()
        .await;
    let mut c = m.grpc().await;
    let (status, body) = http(&m, "GET", "/v1.0/state/flaky/bad1", None).await;
    assert_eq!(
        (status, body["errorCode"].as_str()),
        (500, Some("ERR_STATE_GET"))
    );
    let st = c.get_state(get("flaky", "bad1")).await.unwrap_err();
    assert_eq!(st.code(), Code::Internal);
    assert_eq!(reason(&st).as_deref(), Some("ERR_STATE_GET"));
    assert_eq!(
        st.message(),
        "fail to get bad1 from state store flaky: boom"
    );
    assert_eq!(body["message"], st.message());
    m.stop().await;
}

/// Written over HTTP, read over gRPC: the stored JSON bytes, quotes included, same ETag.
#[actix_rt::test]
async fn http_write_reads_the_same_over_grpc() {
    let m = TestMecha::memory().start().await;
    let mut c = m.grpc().await;
    let save = json!([
        {"key": "s", "value": "hello"},
        {"key": "o", "value": {"b": 1, "a": [true, null]}}
    ]);
    assert_eq!(
        http(&m, "POST", "/v1.0/state/statestore", Some(save))
            .await
            .0,
        204
    );
    let r = c
        .get_state(get("statestore", "s"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.data, br#""hello""#);
    assert_eq!(r.etag, http_etag(&m, "s").await);
    let r = c
        .get_state(get("statestore", "o"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.data, br#"{"a":[true,null],"b":1}"#);
    m.stop().await;
}

/// Written over gRPC, read over HTTP: the raw bytes as the body (labelled JSON), and a
/// JSON content type on SaveState stores what HTTP would have stored.
#[actix_rt::test]
async fn grpc_write_reads_the_same_over_http() {
    let m = TestMecha::memory().start().await;
    let mut c = m.grpc().await;
    let mut json_item = item("j", br#"{"b": 1, "a": 2}"#);
    json_item
        .metadata
        .insert("contentType".into(), "application/json".into());
    c.save_state(SaveStateRequest {
        store_name: "statestore".into(),
        states: vec![item("raw", b"hello"), json_item],
    })
    .await
    .unwrap();
    let resp = m
        .client
        .get(m.url("/v1.0/state/statestore/raw"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let etag = resp.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(resp.bytes().await.unwrap(), &b"hello"[..]);
    let grpc_etag = c
        .get_state(get("statestore", "raw"))
        .await
        .unwrap()
        .into_inner()
        .etag;
    assert_eq!(etag, grpc_etag);
    let (status, body) = http(&m, "GET", "/v1.0/state/statestore/j", None).await;
    assert_eq!((status, body), (200, json!({"a": 2, "b": 1})));
    let (_, bulk) = http(
        &m,
        "POST",
        "/v1.0/state/statestore/bulk",
        Some(json!({"keys": ["j", "missing"]})),
    )
    .await;
    assert_eq!(bulk[0]["data"], json!({"a": 2, "b": 1}));
    assert_eq!(bulk[1], json!({"key": "missing"}));
    m.stop().await;
}
