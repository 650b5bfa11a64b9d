//! Capability negotiation end to end, over HTTP and gRPC, on real stores: every strategy
//! (native, emulated, ignored, rejected), receipts, discovery and policy refusal.
//!
//! `kv` is the real in-memory backend declared with only ETag and first-write (and key
//! listing), the shape of a key-value store such as NATS JetStream KV: with no policy Mecha
//! emulates bulk and TTL on it and rejects transactions and strong consistency. Redis and
//! PostgreSQL run on the local servers (`scripts/test.sh` starts them; never skipped).

use crate::support;
use crate::support::services::{database_url, redis_host};

use std::collections::HashMap;
use std::time::Duration;

use mecha::gateway::grpc::proto::common::{StateOptions, state_options};
use mecha::gateway::grpc::proto::runtime::{
    DeleteBulkStateRequest, ExecuteStateTransactionRequest, GetBulkStateRequest,
    GetMetadataRequest, GetStateRequest, SaveStateRequest, TransactionalStateOperation,
};
use serde_json::{Value, json};
use support::{KvFactory, TestMecha, error_of, grpc_receipt, item, receipt_of, unique};
use tonic::Code;

fn redis_component(name: &str) -> String {
    let host = redis_host();
    format!(
        "kind: Component\nmetadata:\n  name: {name}\nspec:\n  type: state.redis\n  metadata:\n  - name: redisHost\n    value: {host}\n"
    )
}

fn strong() -> Option<StateOptions> {
    Some(StateOptions {
        concurrency: 0,
        consistency: state_options::StateConsistency::ConsistencyStrong as i32,
    })
}

/// Bulk on a store without native bulk: served by Mecha's fan-out, with a receipt, on both
/// doors; a single-key call on the same store is native and carries none.
#[actix_rt::test]
async fn bulk_is_emulated_with_a_receipt_and_a_plain_call_has_none() {
    let (_, f) = KvFactory::fresh();
    let m = TestMecha::empty().custom("kv", f).start().await;
    let (a, b) = (unique("a"), unique("b"));
    let r = m
        .post_json(
            "/v1.0/state/kv",
            json!([{"key": a, "value": 1}, {"key": b, "value": 2}]),
        )
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(receipt_of(&r).as_deref(), Some("bulk=emulated"));
    let r = m
        .post_json("/v1.0/state/kv/bulk", json!({"keys": [a, b]}))
        .await;
    assert_eq!(receipt_of(&r).as_deref(), Some("bulk=emulated"));
    let items: Value = r.json().await.unwrap();
    assert_eq!(items[0]["data"], 1);
    assert_eq!(items[1]["data"], 2);
    // An emulated bulk save where one item fails its ETag: 409, the good item kept, and the
    // error response still says how the call was served.
    let r = m
        .post_json(
            "/v1.0/state/kv",
            json!([{"key": a, "value": 9, "etag": "12345"}, {"key": b, "value": 8}]),
        )
        .await;
    assert_eq!(r.status(), 409);
    assert_eq!(receipt_of(&r).as_deref(), Some("bulk=emulated"));
    let mut bad = item(&a, b"9");
    bad.etag = Some(mecha::gateway::grpc::proto::common::Etag {
        value: "12345".into(),
    });
    let st = m
        .grpc()
        .await
        .save_state(SaveStateRequest {
            store_name: "kv".into(),
            states: vec![bad, item(&b, b"8")],
        })
        .await
        .unwrap_err();
    assert_eq!(st.code(), Code::Aborted);
    assert_eq!(
        grpc_receipt(st.metadata()).as_deref(),
        Some("bulk=emulated")
    );
    // Each non-native decision is counted.
    let metrics = m.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("mecha_capability_decisions_total{")
                && l.contains("store=\"kv\"")
                && l.contains("capability=\"bulk\"")
                && l.contains("decision=\"emulated\"")),
        "{metrics}"
    );
    // A plain, fully native call: no receipt.
    let r = m.get(&format!("/v1.0/state/kv/{a}")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(receipt_of(&r), None);
    let r = m
        .post_json("/v1.0/state/kv", json!([{"key": a, "value": 3}]))
        .await;
    assert_eq!((r.status().as_u16(), receipt_of(&r)), (204, None));

    let mut c = m.grpc().await;
    let resp = c
        .get_bulk_state(GetBulkStateRequest {
            store_name: "kv".into(),
            keys: vec![a.clone(), b.clone()],
            parallelism: 2,
            metadata: HashMap::new(),
        })
        .await
        .unwrap();
    assert_eq!(
        grpc_receipt(resp.metadata()).as_deref(),
        Some("bulk=emulated")
    );
    assert_eq!(resp.into_inner().items[0].data, b"3");
    let resp = c
        .delete_bulk_state(DeleteBulkStateRequest {
            store_name: "kv".into(),
            states: vec![item(&a, b""), item(&b, b"")],
        })
        .await
        .unwrap();
    assert_eq!(
        grpc_receipt(resp.metadata()).as_deref(),
        Some("bulk=emulated")
    );
    let resp = c
        .get_state(GetStateRequest {
            store_name: "kv".into(),
            key: a.clone(),
            ..GetStateRequest::default()
        })
        .await
        .unwrap();
    assert_eq!(grpc_receipt(resp.metadata()), None);
    assert!(resp.into_inner().data.is_empty());
    m.running.stop(true).await;
}

/// With `bulk: reject`, a bulk call fails (500 / UNIMPLEMENTED) naming store, capability and
/// policy, and nothing is written.
#[actix_rt::test]
async fn bulk_rejected_by_policy_writes_nothing() {
    let (store, f) = KvFactory::fresh();
    let m = TestMecha::empty()
        .custom("kv", f)
        .settings("stores:\n  kv:\n    bulk: reject\n")
        .start()
        .await;
    let r = m
        .post_json(
            "/v1.0/state/kv",
            json!([{"key": "x", "value": 1}, {"key": "y", "value": 2}]),
        )
        .await;
    let (status, code, msg, _) = error_of(r).await;
    assert_eq!(
        (status, code.as_str()),
        (500, "ERR_STATE_STORE_NOT_SUPPORTED")
    );
    assert_eq!(
        msg,
        "state store kv rejected the SaveState request: capability bulk (BULK_NATIVE), policy: reject"
    );
    assert!(store.is_empty());
    let st = m
        .grpc()
        .await
        .save_state(SaveStateRequest {
            store_name: "kv".into(),
            states: vec![item("x", b"1"), item("y", b"2")],
        })
        .await
        .unwrap_err();
    assert_eq!(st.code(), Code::Unimplemented);
    assert!(st.message().contains("capability bulk"), "{}", st.message());
    assert!(store.is_empty());
    m.running.stop(true).await;
}

/// Transactions on a store without them: rejected as daprd does (500 / UNIMPLEMENTED), the
/// message naming the policy, and nothing applied.
#[actix_rt::test]
async fn transaction_rejected_applies_nothing() {
    let (store, f) = KvFactory::fresh();
    let m = TestMecha::empty()
        .custom("kv", f)
        .settings("stores:\n  kv:\n    default: reject\n    transactions: reject\n")
        .start()
        .await;
    let r = m
        .post_json(
            "/v1.0/state/kv/transaction",
            json!({"operations": [{"operation": "upsert", "request": {"key": "t", "value": 1}}]}),
        )
        .await;
    let (status, code, msg, _) = error_of(r).await;
    assert_eq!(
        (status, code.as_str()),
        (500, "ERR_STATE_STORE_NOT_SUPPORTED")
    );
    assert_eq!(
        msg,
        "state store kv doesn't support transactions (capability transactions (TRANSACTIONAL), policy: reject)"
    );
    let st = m
        .grpc()
        .await
        .execute_state_transaction(ExecuteStateTransactionRequest {
            store_name: "kv".into(),
            operations: vec![TransactionalStateOperation {
                operation_type: "upsert".into(),
                request: Some(item("t", b"1")),
            }],
            metadata: HashMap::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(st.code(), Code::Unimplemented);
    assert!(st.message().contains("policy: reject"), "{}", st.message());
    assert!(store.is_empty(), "nothing may be applied");
    m.running.stop(true).await;
}

/// TTL emulated on the key-value store: the write and the read say so, `ttlExpireTime` comes
/// back as for native TTL, the item disappears when it expires and the sweep deletes it from
/// the backend, while a rewrite without TTL survives.
#[actix_rt::test]
async fn ttl_is_emulated_expires_and_is_swept() {
    let (store, f) = KvFactory::fresh();
    let m = TestMecha::empty()
        .custom("kv", f)
        .settings("actors:\n  ttlSweepInterval: 1s\n")
        .start()
        .await;
    let (k, keep) = (unique("ttl"), unique("keep"));
    let r = m
        .post_json(
            "/v1.0/state/kv",
            json!([{"key": k, "value": "v", "metadata": {"ttlInSeconds": "1"}}]),
        )
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(receipt_of(&r).as_deref(), Some("ttl=emulated"));
    let r = m.get(&format!("/v1.0/state/kv/{k}")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(receipt_of(&r).as_deref(), Some("ttl=emulated"));
    assert!(r.headers().contains_key("metadata.ttlexpiretime"));
    assert_eq!(r.text().await.unwrap(), "\"v\"");
    // gRPC: the same expiry in the response metadata.
    let resp = m
        .grpc()
        .await
        .get_state(GetStateRequest {
            store_name: "kv".into(),
            key: k.clone(),
            ..GetStateRequest::default()
        })
        .await
        .unwrap();
    assert_eq!(
        grpc_receipt(resp.metadata()).as_deref(),
        Some("ttl=emulated")
    );
    assert!(resp.into_inner().metadata.contains_key("ttlExpireTime"));
    // A key written with a TTL, then rewritten without one, keeps living.
    m.post_json(
        "/v1.0/state/kv",
        json!([{"key": keep, "value": 1, "metadata": {"ttlInSeconds": "1"}}]),
    )
    .await;
    m.save("kv", &keep, json!(2)).await;
    assert_eq!(store.len(), 2);
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(m.get(&format!("/v1.0/state/kv/{k}")).await.status(), 204);
    assert_eq!(store.len(), 1, "the sweep deleted the expired item only");
    let r = m.get(&format!("/v1.0/state/kv/{keep}")).await;
    assert_eq!(r.text().await.unwrap(), "2");
    m.running.stop(true).await;
}

/// Strong consistency on Redis without replicas: rejected by default (400 / INVALID_ARGUMENT
/// naming the policy), ignored with a receipt when the policy says so.
#[actix_rt::test]
async fn strong_consistency_rejected_by_default_ignored_by_policy() {
    // Two key-value stores without strong consistency, and Redis, where it is native.
    let m = TestMecha::empty()
        .custom("cache", KvFactory::fresh().1)
        .custom("blur", KvFactory::fresh().1)
        .yaml(&redis_component("redis"))
        .settings("stores:\n  blur:\n    strongConsistency: ignore\n")
        .start()
        .await;
    let k = unique("strong");
    let body = json!([{"key": k, "value": 1, "options": {"consistency": "strong"}}]);
    let r = m.post_json("/v1.0/state/redis", body.clone()).await;
    assert_eq!((r.status().as_u16(), receipt_of(&r)), (204, None));
    let (status, code, msg, _) =
        error_of(m.post_json("/v1.0/state/cache", body.clone()).await).await;
    assert_eq!(
        (status, code.as_str()),
        (400, "ERR_STATE_STORE_NOT_SUPPORTED")
    );
    assert_eq!(
        msg,
        "state store cache rejected the SaveState request: capability strongConsistency (STRONG_CONSISTENCY), policy: reject (built-in default)"
    );
    let r = m
        .get(&format!("/v1.0/state/cache/{k}?consistency=strong"))
        .await;
    assert_eq!(r.status(), 400);
    let r = m.post_json("/v1.0/state/blur", body).await;
    assert_eq!(r.status(), 204);
    assert_eq!(receipt_of(&r).as_deref(), Some("consistency=ignored"));
    let r = m
        .get(&format!("/v1.0/state/blur/{k}?consistency=strong"))
        .await;
    assert_eq!(receipt_of(&r).as_deref(), Some("consistency=ignored"));
    assert_eq!(r.text().await.unwrap(), "1");
    // A plain call is fully native.
    let r = m.get(&format!("/v1.0/state/blur/{k}")).await;
    assert_eq!((r.status().as_u16(), receipt_of(&r)), (200, None));

    let mut c = m.grpc().await;
    let st = c
        .get_state(GetStateRequest {
            store_name: "cache".into(),
            key: k.clone(),
            consistency: state_options::StateConsistency::ConsistencyStrong as i32,
            metadata: HashMap::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(st.code(), Code::InvalidArgument);
    assert!(
        st.message().contains("strongConsistency"),
        "{}",
        st.message()
    );
    let mut strong_item = item(&k, b"2");
    strong_item.options = strong();
    let resp = c
        .save_state(SaveStateRequest {
            store_name: "blur".into(),
            states: vec![strong_item],
        })
        .await
        .unwrap();
    assert_eq!(
        grpc_receipt(resp.metadata()).as_deref(),
        Some("consistency=ignored")
    );
    m.running.stop(true).await;
}

/// Discovery lists effective capabilities only (never ignored or rejected ones); the extended
/// metadata carries the full matrix.
#[actix_rt::test]
async fn metadata_lists_effective_capabilities() {
    let (_, f) = KvFactory::fresh();
    let m = TestMecha::empty()
        .custom("kv", f)
        .yaml(&redis_component("cache"))
        .settings("stores:\n  kv:\n    default: reject\n    ttl: emulate\n    bulk: emulate\n    strongConsistency: ignore\n")
        .start()
        .await;
    let meta: Value = m.get("/v1.0/metadata").await.json().await.unwrap();
    let caps = |name: &str| {
        meta["components"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap()["capabilities"]
            .clone()
    };
    assert_eq!(caps("kv"), json!(["ETAG", "TTL"]));
    assert_eq!(
        caps("cache"),
        json!(["ETAG", "TRANSACTIONAL", "QUERY_API", "TTL", "ACTOR"])
    );
    assert_eq!(
        meta["extended"]["mecha.matrix.kv"],
        "etag=native,first-write=native,transactions=rejected,ttl=emulated,bulk=emulated,consistency=ignored,query=rejected,partition-key=rejected"
    );
    let resp = m
        .grpc()
        .await
        .get_metadata(GetMetadataRequest::default())
        .await
        .unwrap()
        .into_inner();
    let kv = resp
        .registered_components
        .iter()
        .find(|c| c.name == "kv")
        .unwrap();
    assert_eq!(kv.capabilities, ["ETAG", "TTL"]);
    assert!(resp.extended_metadata["mecha.matrix.cache"].contains("consistency=native"));
    assert!(resp.extended_metadata["mecha.matrix.cache"].contains("query=emulated"));
    m.running.stop(true).await;
}

/// PostgreSQL: native calls carry no receipt, and a partitionKey is ignored by default, with one.
#[actix_rt::test]
async fn postgresql_native_calls_have_no_receipt() {
    let url = database_url();
    let table = format!("neg_{:016x}", rand::random::<u64>());
    let yaml = format!(
        "kind: Component\nmetadata:\n  name: pg\nspec:\n  type: state.postgresql\n  metadata:\n  - name: connectionString\n    value: \"{url}\"\n  - name: tableName\n    value: {table}\n"
    );
    let m = TestMecha::empty().yaml(&yaml).start().await;
    let (a, b) = (unique("a"), unique("b"));
    let r = m.post_json("/v1.0/state/pg",
        json!([{"key": a, "value": 1, "options": {"consistency": "strong"}, "metadata": {"ttlInSeconds": "60"}}, {"key": b, "value": 2}]),
    )
    .await;
    assert_eq!((r.status().as_u16(), receipt_of(&r)), (204, None));
    let r = m
        .post_json("/v1.0/state/pg/bulk", json!({"keys": [a, b]}))
        .await;
    assert_eq!((r.status().as_u16(), receipt_of(&r)), (200, None));
    let r = m
        .post_json(
            "/v1.0/state/pg/transaction",
            json!({"operations": [{"operation": "delete", "request": {"key": a}}]}),
        )
        .await;
    assert_eq!((r.status().as_u16(), receipt_of(&r)), (204, None));
    let r = m
        .get(&format!("/v1.0/state/pg/{b}?metadata.partitionKey=p"))
        .await;
    assert_eq!(
        (r.status().as_u16(), receipt_of(&r).as_deref()),
        (200, Some("partition-key=ignored"))
    );
    m.running.stop(true).await;
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let _ = client
        .batch_execute(&format!("DROP TABLE IF EXISTS \"{table}\""))
        .await;
}

/// A refused policy stops start-up, naming store and capability.
#[actix_rt::test]
async fn refused_policy_stops_start_up() {
    let err = TestMecha::empty()
        .custom("kv", KvFactory::fresh().1)
        .settings("stores:\n  kv:\n    transactions: ignore\n    strongConsistency: emulate\n")
        .refused()
        .await;
    assert!(
        err.contains("store 'kv' (state.test): capability transactions (TRANSACTIONAL): policy 'ignore' is refused"),
        "{err}"
    );
    assert!(
        err.contains(
            "capability strongConsistency (STRONG_CONSISTENCY): policy 'emulate' is refused"
        ),
        "{err}"
    );
}
