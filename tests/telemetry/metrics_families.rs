//! Mecha's metric families end to end: a known mix over HTTP and gRPC on a key-value-shaped
//! store (native calls, an emulated bulk and TTL, an ignored consistency, a rejected
//! transaction on both doors, an ETag conflict, lint warnings on both doors), then exact
//! counts per family and label set
//! in `/metrics`.

use crate::support;

use mecha::gateway::grpc::proto::common::StateItem;
use mecha::gateway::grpc::proto::runtime::dapr_client::DaprClient;
use mecha::gateway::grpc::proto::runtime::{
    ExecuteStateTransactionRequest, GetStateRequest, SaveStateRequest, TransactionalStateOperation,
};
use serde_json::json;
use support::{KvFactory, TestMecha, unique};
use tonic::transport::Channel;

#[actix_rt::test]
async fn families_count_a_known_mix_exactly() {
    let store = unique("mkv");
    let m = TestMecha::empty()
        .custom(&store, KvFactory::fresh().1)
        .settings(&format!(
            "stores:\n  {store}:\n    strongConsistency: ignore\n"
        ))
        .start()
        .await;
    let (k1, k2) = (unique("k1"), unique("k2"));
    let path = format!("/v1.0/state/{store}");
    // HTTP: a plain save and get (native), an emulated bulk save with a TTL, an ignored
    // strong read, a rejected transaction, an ETag conflict.
    let r = m
        .post(&path, json!([{"key": k1, "value": 1}]).to_string())
        .await;
    assert_eq!(r.status(), 204);
    // A misspelled metadata key: a lint warning (mode `warn`), served all the same.
    assert_eq!(
        m.get(&format!("{path}/{k1}?metadata.ttlInSecond=5"))
            .await
            .status(),
        200
    );
    let body = json!([
        {"key": k1, "value": 2, "metadata": {"ttlInSeconds": "600"}},
        {"key": k2, "value": 3}
    ]);
    let r = m.post(&path, body.to_string()).await;
    assert_eq!(r.status(), 204);
    let r = m.get(&format!("{path}/{k2}?consistency=strong")).await;
    assert_eq!(r.status(), 200);
    let tx = json!({"operations": [{"operation": "upsert", "request": {"key": k1, "value": 4}}]});
    let r = m.post(&format!("{path}/transaction"), tx.to_string()).await;
    assert_eq!(r.status(), 500);
    let r = m
        .post(
            &path,
            json!([{"key": k1, "value": 5, "etag": "12345"}]).to_string(),
        )
        .await;
    assert_eq!(r.status(), 409);
    // gRPC: a native get and save, a rejected transaction.
    let ch = Channel::from_shared(format!("http://{}", m.running.grpc_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut g = DaprClient::new(ch);
    // A key the operation does not use: a second lint warning, on the other door.
    g.get_state(GetStateRequest {
        store_name: store.clone(),
        key: k1.clone(),
        metadata: [("ttlInSeconds".to_owned(), "5".to_owned())].into(),
        ..GetStateRequest::default()
    })
    .await
    .unwrap();
    g.save_state(SaveStateRequest {
        store_name: store.clone(),
        states: vec![StateItem {
            key: k2.clone(),
            value: b"6".to_vec(),
            ..StateItem::default()
        }],
    })
    .await
    .unwrap();
    let st = g
        .execute_state_transaction(ExecuteStateTransactionRequest {
            store_name: store.clone(),
            operations: vec![TransactionalStateOperation {
                operation_type: "upsert".into(),
                request: Some(StateItem {
                    key: k1.clone(),
                    value: b"7".to_vec(),
                    ..StateItem::default()
                }),
            }],
            metadata: Default::default(),
        })
        .await
        .unwrap_err();
    assert_eq!(st.code(), tonic::Code::Unimplemented);

    let metrics = m.metrics().await;
    let app = "testapp";
    let decision = |op: &str, cap: &str, d: &str, n: u64| {
        (
            format!(
                "mecha_capability_decisions_total{{app_id=\"{app}\",store=\"{store}\",operation=\"{op}\",capability=\"{cap}\",decision=\"{d}\"}}"
            ),
            n,
        )
    };
    let duration = |op: &str, proto: &str, native: bool, n: u64| {
        (
            format!(
                "mecha_request_duration_seconds_count{{app_id=\"{app}\",store=\"{store}\",operation=\"{op}\",protocol=\"{proto}\",native=\"{native}\"}}"
            ),
            n,
        )
    };
    let expected = [
        decision("set", "basic", "native", 2),
        decision("get", "basic", "native", 2),
        decision("set", "bulk", "emulated", 1),
        decision("set", "ttl", "emulated", 1),
        decision("get", "strongConsistency", "ignored", 1),
        decision("transaction", "transactions", "rejected", 2),
        decision("set", "etag", "native", 1),
        duration("set", "http", true, 2),
        duration("get", "http", true, 1),
        duration("set", "http", false, 1),
        duration("get", "http", false, 1),
        duration("transaction", "http", false, 1),
        // k1 carries an emulated expiry since the bulk save: its read is served by Mecha.
        duration("get", "grpc", false, 1),
        duration("set", "grpc", true, 1),
        duration("transaction", "grpc", false, 1),
        (
            format!(
                "mecha_lint_findings_total{{app_id=\"{app}\",store=\"{store}\",code=\"unknown-key\",severity=\"warning\"}}"
            ),
            1,
        ),
        (
            format!(
                "mecha_lint_findings_total{{app_id=\"{app}\",store=\"{store}\",code=\"not-for-operation\",severity=\"warning\"}}"
            ),
            1,
        ),
        (format!("mecha_store_up{{store=\"{store}\"}}"), 1),
        (
            format!("mecha_store_actor_restarts_total{{store=\"{store}\"}}"),
            0,
        ),
        (
            format!("mecha_store_in_flight_requests{{store=\"{store}\"}}"),
            0,
        ),
        (
            format!("mecha_store_round_trip_seconds_count{{store=\"{store}\"}}"),
            7,
        ),
        (
            format!(
                "dapr_component_state_count{{app_id=\"{app}\",component=\"{store}\",namespace=\"\",operation=\"set\",success=\"false\"}}"
            ),
            1,
        ),
    ];
    for (line, n) in &expected {
        assert!(
            metrics.contains(&format!("{line} {n}\n")),
            "{line} {n} not in\n{metrics}"
        );
    }
    // Exactly these decision and duration series for the store, nothing else.
    let count = |prefix: &str| {
        metrics
            .lines()
            .filter(|l| l.starts_with(prefix) && l.contains(&format!("store=\"{store}\"")))
            .count()
    };
    assert_eq!(count("mecha_capability_decisions_total{"), 7, "{metrics}");
    assert_eq!(count("mecha_lint_findings_total{"), 2, "{metrics}");
    assert_eq!(
        count("mecha_request_duration_seconds_count{"),
        8,
        "{metrics}"
    );
}
