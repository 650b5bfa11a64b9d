//! `state.jetstream` end to end: Mecha loads the shipped example component (with a bucket of
//! the test's own) and serves it over HTTP and gRPC against a real nats-server with
//! JetStream (`NATS_URL`, default `nats://127.0.0.1:4222`; `scripts/test.sh` starts one).
//! An unreachable server fails the tests. Buckets are deleted when a test ends.

mod support;

use mecha::gateway::grpc::proto::common::{Etag, StateItem, StateOptions, state_options};
use mecha::gateway::grpc::proto::runtime::dapr_client::DaprClient;
use mecha::gateway::grpc::proto::runtime::{
    DeleteBulkStateRequest, DeleteStateRequest, GetBulkStateRequest, GetMetadataRequest,
    GetStateRequest, SaveStateRequest,
};
use serde_json::json;
use support::{Mecha, TestMecha, error_of, unique};
use tonic::Code;

fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// Deletes the test's bucket on drop (pass or panic).
struct Bucket(String);

impl Drop for Bucket {
    fn drop(&mut self) {
        let name = self.0.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let client = async_nats::connect(nats_url()).await.ok()?;
                async_nats::jetstream::new(client)
                    .delete_key_value(&name)
                    .await
                    .ok()
            })
        })
        .join();
    }
}

/// Mecha serving `config/examples/statestore-jetstream.yaml` as store `kv`, on a fresh bucket.
async fn mecha() -> (Mecha, Bucket) {
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/examples/statestore-jetstream.yaml"
    ))
    .unwrap();
    let bucket = unique("mecha-it").replace('-', "_");
    let yaml = example
        .replace("name: statestore-jetstream", "name: kv")
        .replace("value: mecha-state", &format!("value: {bucket}"))
        .replace(
            "value: nats://127.0.0.1:4222",
            &format!("value: {}", nats_url()),
        );
    assert!(yaml.contains(&bucket), "the example's bucket line changed");
    let m = TestMecha::empty().yaml(&yaml).start().await;
    (m, Bucket(bucket))
}

async fn grpc(m: &Mecha) -> DaprClient<tonic::transport::Channel> {
    DaprClient::connect(format!("http://{}", m.running.grpc_addr))
        .await
        .unwrap()
}

fn item(key: &str, value: &[u8], etag: Option<&str>) -> StateItem {
    StateItem {
        key: key.into(),
        value: value.to_vec(),
        etag: etag.map(|e| Etag { value: e.into() }),
        ..StateItem::default()
    }
}

#[actix_rt::test]
async fn http_save_get_etags_first_write_and_delete() {
    let (m, _b) = mecha().await;
    m.save("kv", "order 1", json!({"n": 1})).await;
    let r = m.get("/v1.0/state/kv/order%201").await;
    assert_eq!(r.status(), 200);
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap(),
        json!({"n": 1})
    );

    // Guarded update with the current ETag, then the same ETag again: 409.
    let body = json!([{"key": "order 1", "value": 2, "etag": etag}]).to_string();
    assert_eq!(m.post("/v1.0/state/kv", body.clone()).await.status(), 204);
    let (status, code, _, _) = error_of(m.post("/v1.0/state/kv", body).await).await;
    assert_eq!((status, code.as_str()), (409, "ERR_STATE_SAVE"));

    // first-write on an existing key: 409; on a new key: created.
    let fw = |k: &str| {
        json!([{"key": k, "value": 3, "options": {"concurrency": "first-write"}}]).to_string()
    };
    let (status, _, _, _) = error_of(m.post("/v1.0/state/kv", fw("order 1")).await).await;
    assert_eq!(status, 409);
    assert_eq!(m.post("/v1.0/state/kv", fw("fresh")).await.status(), 204);

    // Delete with a stale ETag: 409 and the value stays; with the current one: gone.
    let r = m
        .client
        .delete(m.url("/v1.0/state/kv/order%201"))
        .header("If-Match", etag.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let current = m.get("/v1.0/state/kv/order%201").await.headers()["etag"]
        .to_str()
        .unwrap()
        .to_owned();
    let r = m
        .client
        .delete(m.url("/v1.0/state/kv/order%201"))
        .header("If-Match", current.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(m.get("/v1.0/state/kv/order%201").await.status(), 204);
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
    let (m, _b) = mecha().await;
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
    let (m, _b) = mecha().await;
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
    for absent in ["TRANSACTIONAL", "QUERY_API", "ACTOR"] {
        assert!(!caps.contains(&absent), "{absent} in {caps:?}");
    }
    assert!(
        meta["extended"]["mecha.matrix.kv"]
            .as_str()
            .unwrap()
            .contains("ttl=emulated"),
        "{meta}"
    );
    let mut c = grpc(&m).await;
    let md = c
        .get_metadata(GetMetadataRequest::default())
        .await
        .unwrap()
        .into_inner();
    let comp = md
        .registered_components
        .iter()
        .find(|c| c.name == "kv")
        .expect("kv over gRPC");
    assert_eq!(comp.r#type, "state.jetstream");
}

#[actix_rt::test]
async fn grpc_save_get_etag_conflicts_and_bulk_delete() {
    let (m, _b) = mecha().await;
    let mut c = grpc(&m).await;
    // Raw bytes (not JSON) round-trip unchanged.
    c.save_state(SaveStateRequest {
        store_name: "kv".into(),
        states: vec![item("a/b:c", &[0, 1, 255], None), item("other", b"x", None)],
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
            states: vec![item("a/b:c", b"1", Some("12345678"))],
        })
        .await
        .unwrap_err();
    assert_eq!(st.code(), Code::Aborted, "{st:?}");
    let st = c
        .save_state(SaveStateRequest {
            store_name: "kv".into(),
            states: vec![item("a/b:c", b"1", Some("not-a-number"))],
        })
        .await
        .unwrap_err();
    assert_eq!(st.code(), Code::InvalidArgument, "{st:?}");

    // first-write through gRPC options.
    let mut fw = item("other", b"y", None);
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
        states: vec![item("a/b:c", b"", None), item("other", b"", None)],
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
    let (m, _b) = mecha().await;
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
    let mut client = grpc(&m).await;
    let err = client
        .save_state(SaveStateRequest {
            store_name: "kv".into(),
            states: vec![item(&key, b"1", None)],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{}", err.message());
}
