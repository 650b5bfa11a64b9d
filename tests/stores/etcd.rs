//! `state.etcd` end to end: Mecha loads the shipped example component (under a
//! `keyPrefixPath` of the test's own) and serves it over HTTP and gRPC against a real etcd
//! cluster (`ETCD_ENDPOINTS`, default the three-member cluster `scripts/test.sh` starts on
//! 127.0.0.1:23791-23793). An unreachable cluster fails the tests.

use crate::support;

use mecha::gateway::grpc::proto::common::{Etag, StateItem, StateOptions, state_options};
use mecha::gateway::grpc::proto::runtime::{
    ExecuteStateTransactionRequest, GetStateRequest, SaveStateRequest, TransactionalStateOperation,
};
use serde_json::json;
use support::error_of;
use support::kv_example::{ETCD, etag_of, http_etags_first_write_and_guarded_delete, kv_over_grpc};
use tonic::Code;

#[actix_rt::test]
async fn http_etags_first_write_ttl_and_delete() {
    let (m, _place) = ETCD.start().await;
    http_etags_first_write_and_guarded_delete(&m).await;

    // TTL through a lease: the read reports ttlExpireTime.
    let ttl = json!([{"key": "short", "value": "x", "metadata": {"ttlInSeconds": "60"}}]);
    assert_eq!(
        m.post("/v1.0/state/kv", ttl.to_string()).await.status(),
        204
    );
    let r = m.get("/v1.0/state/kv/short").await;
    assert!(
        r.headers().contains_key("metadata.ttlexpiretime"),
        "{:?}",
        r.headers()
    );
}

#[actix_rt::test]
async fn http_transaction_is_all_or_nothing() {
    let (m, _place) = ETCD.start().await;
    m.save("kv", "a", json!(1)).await;
    m.save("kv", "b", json!(1)).await;
    let ea = etag_of(&m, "a").await;
    let tx = json!({"operations": [
        {"operation": "upsert", "request": {"key": "a", "value": 2, "etag": ea}},
        {"operation": "upsert", "request": {"key": "c", "value": 2}},
        {"operation": "delete", "request": {"key": "b", "etag": "1"}}
    ]});
    // As in Dapr, a failed transaction answers ERR_STATE_TRANSACTION/500, never 409.
    let (status, code, _, _) =
        error_of(m.post("/v1.0/state/kv/transaction", tx.to_string()).await).await;
    assert_eq!((status, code.as_str()), (500, "ERR_STATE_TRANSACTION"));
    assert_eq!(m.get("/v1.0/state/kv/c").await.status(), 204);
    let a: serde_json::Value = m.get("/v1.0/state/kv/a").await.json().await.unwrap();
    assert_eq!(a, json!(1));
    let eb = etag_of(&m, "b").await;
    let tx = json!({"operations": [
        {"operation": "upsert", "request": {"key": "a", "value": 2, "etag": ea}},
        {"operation": "upsert", "request": {"key": "c", "value": 2}},
        {"operation": "delete", "request": {"key": "b", "etag": eb}}
    ]});
    let r = m.post("/v1.0/state/kv/transaction", tx.to_string()).await;
    assert_eq!(r.status(), 204);
    assert_eq!(m.get("/v1.0/state/kv/b").await.status(), 204);
    let c: serde_json::Value = m.get("/v1.0/state/kv/c").await.json().await.unwrap();
    assert_eq!(c, json!(2));
    // More operations than maxTxnOps: a clear 400-class refusal, nothing applied.
    let ops: Vec<_> = (0..129)
        .map(|i| json!({"operation": "upsert", "request": {"key": format!("m{i}"), "value": i}}))
        .collect();
    let (status, _, msg, _) = error_of(
        m.post(
            "/v1.0/state/kv/transaction",
            json!({ "operations": ops }).to_string(),
        )
        .await,
    )
    .await;
    assert_eq!(status, 400, "{msg}");
    assert!(msg.contains("128"), "{msg}");
    assert_eq!(m.get("/v1.0/state/kv/m0").await.status(), 204);
}

#[actix_rt::test]
async fn http_same_etag_race_has_exactly_one_winner() {
    let (m, _place) = ETCD.start().await;
    m.save("kv", "race", json!(0)).await;
    let etag = etag_of(&m, "race").await;
    let m = std::sync::Arc::new(m);
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let (m, etag) = (m.clone(), etag.clone());
            tokio::spawn(async move {
                let body = json!([{"key": "race", "value": i, "etag": etag}]).to_string();
                m.post("/v1.0/state/kv", body).await.status().as_u16()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 204).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 204 || *s == 409),
        "{statuses:?}"
    );
}

#[actix_rt::test]
async fn grpc_etags_transactions_and_metadata() {
    let (m, _place) = ETCD.start().await;
    let mut c = m.grpc().await;
    c.save_state(SaveStateRequest {
        store_name: "kv".into(),
        states: vec![StateItem {
            key: "g".into(),
            value: vec![0, 1, 255],
            ..StateItem::default()
        }],
    })
    .await
    .unwrap();
    let got = c
        .get_state(GetStateRequest {
            store_name: "kv".into(),
            key: "g".into(),
            consistency: state_options::StateConsistency::ConsistencyStrong as i32,
            ..GetStateRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.data, [0, 1, 255]);
    let stale = StateItem {
        key: "g".into(),
        value: b"1".to_vec(),
        etag: Some(Etag { value: "1".into() }),
        options: Some(StateOptions {
            concurrency: state_options::StateConcurrency::ConcurrencyFirstWrite as i32,
            consistency: 0,
        }),
        ..StateItem::default()
    };
    let st = c
        .save_state(SaveStateRequest {
            store_name: "kv".into(),
            states: vec![stale.clone()],
        })
        .await
        .unwrap_err();
    assert_eq!(st.code(), Code::Aborted, "{st:?}");
    let st = c
        .execute_state_transaction(ExecuteStateTransactionRequest {
            store_name: "kv".into(),
            operations: vec![
                TransactionalStateOperation {
                    operation_type: "upsert".into(),
                    request: Some(StateItem {
                        key: "h".into(),
                        value: b"2".to_vec(),
                        ..StateItem::default()
                    }),
                },
                TransactionalStateOperation {
                    operation_type: "upsert".into(),
                    request: Some(stale),
                },
            ],
            metadata: Default::default(),
        })
        .await
        .unwrap_err();
    assert_eq!(st.code(), Code::Internal, "{st:?}");
    let h = c
        .get_state(GetStateRequest {
            store_name: "kv".into(),
            key: "h".into(),
            ..GetStateRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        h.data.is_empty(),
        "nothing of the failed transaction applied"
    );

    let comp = kv_over_grpc(&mut c).await;
    assert_eq!(comp.r#type, "state.etcd");
    for cap in ["ETAG", "TRANSACTIONAL", "TTL"] {
        assert!(
            comp.capabilities.iter().any(|c| c == cap),
            "{cap}: {comp:?}"
        );
    }
}
