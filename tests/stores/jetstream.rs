//! `state.jetstream` end to end: Mecha loads the shipped example component (with a bucket of
//! the test's own) and serves it over HTTP and gRPC against a real nats-server with
//! JetStream (`NATS_URL`, default `nats://127.0.0.1:4222`; `scripts/test.sh` starts one).
//! An unreachable server fails the tests. Buckets are deleted when a test ends.

use crate::support;

use mecha::gateway::grpc::proto::common::{Etag, StateOptions, state_options};
use mecha::gateway::grpc::proto::runtime::{
    DeleteBulkStateRequest, DeleteStateRequest, GetBulkStateRequest, GetStateRequest,
    SaveStateRequest,
};
use serde_json::json;
use support::kv_example::{JETSTREAM, http_etags_first_write_and_guarded_delete, kv_over_grpc};
use support::{error_of, item, item_etag};
use tonic::Code;

#[actix_rt::test]
async fn http_save_get_etags_first_write_and_delete() {
    let (m, _place) = JETSTREAM.start().await;
    http_etags_first_write_and_guarded_delete(&m).await;
    // Deleting a missing key succeeds.
    assert_eq!(m.delete("/v1.0/state/kv/never").await.status(), 204);
    // Bulk get fans out: the missing key comes back without data or error.
    let r = m
        .post(
            "/v1.0/state/kv/bulk",
            json!({"keys": ["fresh", "never"]}).to_string(),
        )
        .await;
    assert_eq!(r.status(), 200);
    let items: serde_json::Value = r.json().await.unwrap();
    assert_eq!(items[0]["data"], json!(3));
    assert!(items[1].get("data").is_none() && items[1].get("error").is_none());
}

#[actix_rt::test]
async fn http_transaction_is_refused_and_nothing_applied() {
    let (m, _place) = JETSTREAM.start().await;
    let tx = json!({"operations": [
        {"operation": "upsert", "request": {"key": "t1", "value": 1}},
        {"operation": "delete", "request": {"key": "t2"}}
    ]});
    let (status, code, _, _) =
        error_of(m.post("/v1.0/state/kv/transaction", tx.to_string()).await).await;
    assert_eq!(
        (status, code.as_str()),
        (500, "ERR_STATE_STORE_NOT_SUPPORTED")
    );
    assert_eq!(m.get("/v1.0/state/kv/t1").await.status(), 204);
}

#[actix_rt::test]
async fn metadata_lists_only_what_jetstream_does() {
    let (m, _place) = JETSTREAM.start().await;
    let meta: serde_json::Value = m.get("/v1.0/metadata").await.json().await.unwrap();
    let kv = meta["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "kv")
        .expect("kv listed")
        .clone();
    assert_eq!(kv["type"], "state.jetstream");
    let caps: Vec<&str> = kv["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert!(caps.contains(&"ETAG"), "{caps:?}");
    // TTL is not native, but with no policy Mecha emulates it (CAS and key listing make that
    // correct), so it is an effective capability an SDK may rely on.
    assert!(caps.contains(&"TTL"), "{caps:?}");
    // The same for query: Mecha scans the app's keys (the bucket lists them).
    assert!(caps.contains(&"QUERY_API"), "{caps:?}");
    for absent in ["TRANSACTIONAL", "ACTOR"] {
        assert!(!caps.contains(&absent), "{absent} in {caps:?}");
    }
    assert!(
        meta["extended"]["mecha.matrix.kv"]
            .as_str()
            .unwrap()
            .contains("ttl=emulated"),
        "{meta}"
    );
    let mut c = m.grpc().await;
    let comp = kv_over_grpc(&mut c).await;
    assert_eq!(comp.r#type, "state.jetstream");
}

#[actix_rt::test]
async fn grpc_save_get_etag_conflicts_and_bulk_delete() {
    let (m, _place) = JETSTREAM.start().await;
    let mut c = m.grpc().await;
    // Raw bytes (not JSON) round-trip unchanged.
    c.save_state(SaveStateRequest {
        store_name: "kv".into(),
        states: vec![item("a/b:c", &[0, 1, 255]), item("other", b"x")],
    })
    .await
    .unwrap();
    let got = c
        .get_state(GetStateRequest {
            store_name: "kv".into(),
            key: "a/b:c".into(),
            ..GetStateRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.data, [0, 1, 255]);
    assert!(!got.etag.is_empty());

    let st = c
        .save_state(SaveStateRequest {
            store_name: "kv".into(),
            states: vec![item_etag("a/b:c", b"1", "12345678")],
        })
        .await
        .unwrap_err();
    assert_eq!(st.code(), Code::Aborted, "{st:?}");
    let st = c
        .save_state(SaveStateRequest {
            store_name: "kv".into(),
            states: vec![item_etag("a/b:c", b"1", "not-a-number")],
        })
        .await
        .unwrap_err();
    assert_eq!(st.code(), Code::InvalidArgument, "{st:?}");

    // first-write through gRPC options.
    let mut fw = item("other", b"y");
    fw.options = Some(StateOptions {
        concurrency: state_options::StateConcurrency::ConcurrencyFirstWrite as i32,
        consistency: 0,
    });
    let st = c
        .save_state(SaveStateRequest {
            store_name: "kv".into(),
            states: vec![fw],
        })
        .await
        .unwrap_err();
    assert_eq!(st.code(), Code::Aborted, "{st:?}");

    // Guarded delete with a stale ETag, then bulk delete.
    let st = c
        .delete_state(DeleteStateRequest {
            store_name: "kv".into(),
            key: "a/b:c".into(),
            etag: Some(Etag {
                value: "12345678".into(),
            }),
            ..DeleteStateRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(st.code(), Code::Aborted);
    c.delete_bulk_state(DeleteBulkStateRequest {
        store_name: "kv".into(),
        states: vec![item("a/b:c", b""), item("other", b"")],
    })
    .await
    .unwrap();
    let bulk = c
        .get_bulk_state(GetBulkStateRequest {
            store_name: "kv".into(),
            keys: vec!["a/b:c".into(), "other".into()],
            ..GetBulkStateRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        bulk.items
            .iter()
            .all(|i| i.data.is_empty() && i.etag.is_empty())
    );
}

/// A key within Mecha's key-length limit that NATS KV cannot hold once encoded is the
/// caller's mistake: 400 naming `maxKeyLength` on HTTP, `INVALID_ARGUMENT` on gRPC (not 500).
#[actix_rt::test]
async fn a_key_too_long_once_encoded_is_a_400() {
    let (m, _place) = JETSTREAM.start().await;
    let key = "_".repeat(600);
    let body = json!([{"key": key, "value": 1}]).to_string();
    for (what, r) in [
        ("save", m.post("/v1.0/state/kv", body).await),
        ("get", m.get(&format!("/v1.0/state/kv/{key}")).await),
        ("delete", m.delete(&format!("/v1.0/state/kv/{key}")).await),
    ] {
        let (status, _, message, _) = error_of(r).await;
        assert_eq!(status, 400, "{what}: {message}");
        assert!(message.contains("maxKeyLength"), "{what}: {message}");
    }
    let mut client = m.grpc().await;
    let err = client
        .save_state(SaveStateRequest {
            store_name: "kv".into(),
            states: vec![item(&key, b"1")],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{}", err.message());
}

/// An app's keys are listed by the server (a consumer filtered to the app's subject
/// token): exactly the app's live keys, in order, deleted ones left out, across pages; an
/// app without keys gets an empty page at once; another app's keys never appear.
#[actix_rt::test]
async fn an_apps_keys_are_listed_by_the_server_without_deleted_ones() {
    use mecha::model::{DeleteRequest, SetRequest};
    use std::path::Path;
    let bucket = format!("list-{:016x}", rand::random::<u64>());
    let yaml = support::component(
        "kv",
        "state.jetstream",
        &[
            ("natsURL", support::services::nats_url()),
            ("bucket", bucket.clone()),
        ],
    );
    let (c, _) =
        mecha::config::parse_components(&[(Path::new("kv.yaml"), yaml.as_str())], &|_| None)
            .expect("component");
    let store = c[0].factory.create().expect("store");
    let set = |key: &str| SetRequest {
        key: key.into(),
        value: bytes::Bytes::from_static(b"1"),
        etag: None,
        options: Default::default(),
        ttl: None,
        metadata: Default::default(),
    };
    for k in ["a||k1", "a||k2", "a||k3", "a||x||y", "b||k1", "ab||k1"] {
        store.set(set(k)).await.unwrap();
    }
    store
        .delete(DeleteRequest {
            key: "a||k2".into(),
            etag: None,
            options: Default::default(),
            metadata: Default::default(),
        })
        .await
        .unwrap();
    let mut keys = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.list_keys_with_prefix("a||", cursor, 2).await.unwrap();
        assert!(page.keys.len() <= 2);
        keys.extend(page.keys);
        match page.next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    assert_eq!(keys, ["a||k1", "a||k3", "a||x||y"]);
    let none = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        store.list_keys_with_prefix("nobody||", None, 10),
    )
    .await
    .expect("an empty listing ends at once")
    .unwrap();
    assert!(none.keys.is_empty() && none.next.is_none());
    support::services::delete_kv_bucket(&bucket);
}
