//! Capability negotiation on NATS JetStream KV (`state.jetstream`), the store where all four
//! strategies are real: Mecha fills the gap (bulk, TTL), the store fills it (revisions as
//! ETags), blur (strong consistency ignored by policy), reject (transactions). Over HTTP and
//! gRPC, against the local nats-server (`scripts/test.sh` starts it; never skipped). Each test
//! uses a bucket of its own, deleted at the end.

use crate::support;
use crate::support::services::{delete_kv_bucket, nats_url};

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use mecha::actors::{StateStore, StoreFactory};
use mecha::config::parse_components;
use mecha::gateway::grpc::proto::common::{StateOptions, state_options};
use mecha::gateway::grpc::proto::runtime::{
    ExecuteStateTransactionRequest, GetBulkStateRequest, GetStateRequest, SaveStateRequest,
    TransactionalStateOperation,
};
use mecha::model::{GetRequest, Metadata};
use serde_json::{Value, json};
use support::{Mecha, TestMecha, error_of, grpc_receipt, item, receipt_of, unique};
use tonic::Code;

/// The README's worked example policy.
const POLICY: &str = "stores:\n  kvstore:\n    default: reject\n    ttl: emulate\n    bulk: emulate\n    partitionKey: ignore\nactors:\n  ttlSweepInterval: 1s\n";

/// A bucket of its own; deleted on drop.
struct Bucket(String);

impl Bucket {
    fn new() -> Bucket {
        Bucket(format!("neg-{:016x}", rand::random::<u64>()))
    }

    fn component(&self) -> String {
        format!(
            "kind: Component\nmetadata:\n  name: kvstore\nspec:\n  type: state.jetstream\n  metadata:\n  - name: natsURL\n    value: {}\n  - name: bucket\n    value: {}\n",
            nats_url(),
            self.0
        )
    }

    /// The raw backend on the same bucket, without Mecha's emulations: what is really stored.
    fn raw(&self) -> Arc<dyn StateStore> {
        let text = self.component();
        let (c, _) = parse_components(&[(Path::new("raw.yaml"), text.as_str())], &|_| None)
            .expect("component");
        let factory: Arc<dyn StoreFactory> = c[0].factory.clone();
        factory.create().expect("store")
    }
}

impl Drop for Bucket {
    fn drop(&mut self) {
        delete_kv_bucket(&self.0);
    }
}

async fn start(bucket: &Bucket, policy: &str) -> Mecha {
    TestMecha::empty()
        .yaml(&bucket.component())
        .settings(policy)
        .start()
        .await
}

async fn raw_get(store: &Arc<dyn StateStore>, key: &str) -> Option<bytes::Bytes> {
    store
        .get(GetRequest {
            key: format!("testapp||{key}"),
            consistency: Default::default(),
            metadata: Metadata::new(),
        })
        .await
        .unwrap()
        .map(|e| e.data)
}

/// The README's worked example, step by step: receipts for emulated TTL and bulk and for an
/// ignored partitionKey, none for a native call (strong consistency included: one replica),
/// and the transaction refusal.
#[actix_rt::test]
async fn readme_worked_example() {
    let bucket = Bucket::new();
    let m = start(&bucket, POLICY).await;
    let r = m
        .post_json(
            "/v1.0/state/kvstore",
            json!([{"key":"a","value":1},{"key":"b","value":2,"metadata":{"ttlInSeconds":"60"}}]),
        )
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(
        receipt_of(&r).as_deref(),
        Some("ttl=emulated, bulk=emulated")
    );
    let r = m
        .get("/v1.0/state/kvstore/a?metadata.partitionKey=p1")
        .await;
    assert_eq!(receipt_of(&r).as_deref(), Some("partition-key=ignored"));
    assert_eq!(r.text().await.unwrap(), "1");
    let r = m.get("/v1.0/state/kvstore/a?consistency=strong").await;
    assert_eq!((r.status().as_u16(), receipt_of(&r)), (200, None));
    let r = m.get("/v1.0/state/kvstore/a").await;
    assert_eq!((r.status().as_u16(), receipt_of(&r)), (200, None));
    assert!(r.headers().contains_key("etag"));
    let r = m
        .post_json(
            "/v1.0/state/kvstore/transaction",
            json!({"operations":[{"operation":"upsert","request":{"key":"c","value":3}}]}),
        )
        .await;
    let (status, code, msg, _) = error_of(r).await;
    assert_eq!(
        (status, code.as_str(), msg.as_str()),
        (
            500,
            "ERR_STATE_STORE_NOT_SUPPORTED",
            "state store kvstore doesn't support transactions (capability transactions (TRANSACTIONAL), policy: reject (the store's default))"
        )
    );
    let meta: Value = m.get("/v1.0/metadata").await.json().await.unwrap();
    assert_eq!(
        meta["components"][0]["capabilities"],
        json!(["ETAG", "TTL"])
    );
    m.running.stop(true).await;
}

/// A transaction is rejected with the documented error on both doors, and nothing is applied.
#[actix_rt::test]
async fn transaction_rejected_applies_nothing() {
    let bucket = Bucket::new();
    let m = start(&bucket, POLICY).await;
    let k = unique("tx");
    let r = m.post_json("/v1.0/state/kvstore/transaction",
        json!({"operations":[{"operation":"upsert","request":{"key":k,"value":1}},{"operation":"delete","request":{"key":"other"}}]}),
    )
    .await;
    assert_eq!(r.status(), 500);
    let st = m
        .grpc()
        .await
        .execute_state_transaction(ExecuteStateTransactionRequest {
            store_name: "kvstore".into(),
            operations: vec![TransactionalStateOperation {
                operation_type: "upsert".into(),
                request: Some(item(&k, b"1")),
            }],
            metadata: HashMap::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(st.code(), Code::Unimplemented);
    assert_eq!(
        st.message(),
        "state store kvstore doesn't support transactions (capability transactions (TRANSACTIONAL), policy: reject (the store's default))"
    );
    assert_eq!(raw_get(&bucket.raw(), &k).await, None, "nothing applied");
    m.running.stop(true).await;
}

/// Bulk is emulated with a receipt on both doors; with the store's `default: reject` a query
/// is refused naming the capability, while the listed `partitionKey: ignore` holds.
#[actix_rt::test]
async fn bulk_emulated_with_a_receipt() {
    let bucket = Bucket::new();
    let m = start(&bucket, POLICY).await;
    let mut c = m.grpc().await;
    let resp = c
        .save_state(SaveStateRequest {
            store_name: "kvstore".into(),
            states: vec![item("x", b"1"), item("y", b"2")],
        })
        .await
        .unwrap();
    assert_eq!(
        grpc_receipt(resp.metadata()).as_deref(),
        Some("bulk=emulated")
    );
    let resp = c
        .get_bulk_state(GetBulkStateRequest {
            store_name: "kvstore".into(),
            keys: vec!["x".into(), "y".into(), "z".into()],
            parallelism: 2,
            metadata: HashMap::new(),
        })
        .await
        .unwrap();
    assert_eq!(
        grpc_receipt(resp.metadata()).as_deref(),
        Some("bulk=emulated")
    );
    let items = resp.into_inner().items;
    assert_eq!(
        (items[0].data.as_slice(), items[1].data.as_slice()),
        (&b"1"[..], &b"2"[..])
    );
    assert!(items[2].data.is_empty());
    let r = m
        .post_json("/v1.0/state/kvstore/bulk", json!({"keys": ["x", "y"]}))
        .await;
    assert_eq!(receipt_of(&r).as_deref(), Some("bulk=emulated"));
    let r = m.get("/v1.0/state/kvstore/x?metadata.partitionKey=p").await;
    assert_eq!(
        (r.status().as_u16(), receipt_of(&r).as_deref()),
        (200, Some("partition-key=ignored"))
    );
    let strict = Bucket::new();
    let s = start(&strict, "stores:\n  kvstore:\n    partitionKey: reject\n").await;
    let (status, _, msg, _) =
        error_of(s.get("/v1.0/state/kvstore/x?metadata.partitionKey=p").await).await;
    assert_eq!(status, 400);
    assert!(
        msg.contains("partitionKey (PARTITION_KEY), policy: reject"),
        "{msg}"
    );
    s.running.stop(true).await;
    m.running.stop(true).await;
}

/// Strong consistency is native on a bucket of one replica (the default), on both doors, with
/// no receipt. A component that asks for more replicas does not declare it: ignored by policy
/// with a receipt, rejected without one.
#[actix_rt::test]
async fn strong_consistency_native_on_one_replica_else_by_policy() {
    let bucket = Bucket::new();
    let m = start(&bucket, POLICY).await;
    let mut c = m.grpc().await;
    let mut strong = item("s", b"1");
    strong.options = Some(StateOptions {
        concurrency: 0,
        consistency: state_options::StateConsistency::ConsistencyStrong as i32,
    });
    let resp = c
        .save_state(SaveStateRequest {
            store_name: "kvstore".into(),
            states: vec![strong.clone()],
        })
        .await
        .unwrap();
    assert_eq!(grpc_receipt(resp.metadata()), None);
    let resp = c
        .get_state(GetStateRequest {
            store_name: "kvstore".into(),
            key: "s".into(),
            consistency: state_options::StateConsistency::ConsistencyStrong as i32,
            ..GetStateRequest::default()
        })
        .await
        .unwrap();
    assert_eq!(grpc_receipt(resp.metadata()), None);
    assert_eq!(resp.into_inner().data, b"1");
    m.running.stop(true).await;

    // The same bucket (it exists, so it is not created again) configured with three replicas.
    let replicated = bucket.component().replace(
        "  - name: bucket",
        "  - name: replicas\n    value: \"3\"\n  - name: bucket",
    );
    let blur = TestMecha::empty()
        .yaml(&replicated)
        .settings("stores:\n  kvstore:\n    strongConsistency: ignore\n")
        .start()
        .await;
    let resp = blur
        .grpc()
        .await
        .save_state(SaveStateRequest {
            store_name: "kvstore".into(),
            states: vec![strong],
        })
        .await
        .unwrap();
    assert_eq!(
        grpc_receipt(resp.metadata()).as_deref(),
        Some("consistency=ignored")
    );
    blur.running.stop(true).await;
    // Without the policy, the same request is rejected rather than silently weakened.
    let plain = TestMecha::empty().yaml(&replicated).start().await;
    let r = plain
        .post_json(
            "/v1.0/state/kvstore",
            json!([{"key":"s","value":1,"options":{"consistency":"strong"}}]),
        )
        .await;
    let (status, code, msg, _) = error_of(r).await;
    assert_eq!(
        (status, code.as_str()),
        (400, "ERR_STATE_STORE_NOT_SUPPORTED")
    );
    assert!(msg.contains("policy: reject (built-in default)"), "{msg}");
    plain.running.stop(true).await;
}

/// TTL emulated: `ttlExpireTime` on reads, gone once expired (also for ETags: an ETag of the
/// expired item is a mismatch, a first-write over it succeeds), swept from the bucket, and
/// the sweep never deletes a rewrite.
#[actix_rt::test]
async fn ttl_emulated_expires_is_swept_and_spares_a_rewrite() {
    let bucket = Bucket::new();
    let raw = bucket.raw();
    let m = start(&bucket, POLICY).await;
    let (gone, rewritten) = (unique("gone"), unique("rewritten"));
    for k in [&gone, &rewritten] {
        let r = m
            .post_json(
                "/v1.0/state/kvstore",
                json!([{"key": k, "value": "old", "metadata": {"ttlInSeconds": "1"}}]),
            )
            .await;
        assert_eq!(receipt_of(&r).as_deref(), Some("ttl=emulated"));
    }
    let r = m.get(&format!("/v1.0/state/kvstore/{gone}")).await;
    assert_eq!(receipt_of(&r).as_deref(), Some("ttl=emulated"));
    assert!(r.headers().contains_key("metadata.ttlexpiretime"));
    let old_etag = r.headers()["etag"].to_str().unwrap().to_owned();
    let resp = m
        .grpc()
        .await
        .get_state(GetStateRequest {
            store_name: "kvstore".into(),
            key: gone.clone(),
            ..GetStateRequest::default()
        })
        .await
        .unwrap();
    assert!(resp.into_inner().metadata.contains_key("ttlExpireTime"));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // Expired: invisible, and absent for ETag checks...
    assert_eq!(
        m.get(&format!("/v1.0/state/kvstore/{gone}")).await.status(),
        204
    );
    let r = m
        .post_json(
            "/v1.0/state/kvstore",
            json!([{"key": gone, "value": "x", "etag": old_etag}]),
        )
        .await;
    assert_eq!(r.status(), 409);
    // ...and a first-write over an expired item succeeds: the rewrite has no TTL.
    let r = m
        .post_json(
            "/v1.0/state/kvstore",
            json!([{"key": rewritten, "value": "new", "options": {"concurrency": "first-write"}}]),
        )
        .await;
    assert_eq!(r.status(), 204);
    // The sweep (every second here) deletes the expired item from the bucket and leaves the
    // rewrite alone.
    let deadline = std::time::Instant::now() + Duration::from_secs(6);
    while raw_get(&raw, &gone).await.is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "the sweep did not delete the expired item"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let r = m.get(&format!("/v1.0/state/kvstore/{rewritten}")).await;
    assert_eq!((r.status().as_u16(), receipt_of(&r)), (200, None));
    assert_eq!(r.text().await.unwrap(), "\"new\"");
    assert!(raw_get(&raw, &rewritten).await.is_some());
    m.running.stop(true).await;
}
