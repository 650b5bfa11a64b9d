//! A client written for daprd works on Mecha's built-in (compatible) policy: with no
//! `stores:` section at all, `consistency: strong` on a save, get, delete and transaction, and
//! `partitionKey` on a save and a transaction, succeed over HTTP and gRPC on in-memory,
//! Redis, Redis Cluster, PostgreSQL, etcd, SQLite and MySQL. `partitionKey` is ignored with a
//! receipt and a lint finding; `policy: {default: strict}` rejects it again.
//!
//! Needs the services `scripts/test.sh` starts (Redis, the private Redis Cluster on
//! 27001-27006, PostgreSQL, the etcd cluster on 23791-23793, MariaDB); fails, never skips,
//! without them. SQLite and MySQL tables live in a scratch file and schema per test.

use crate::support;

use std::collections::HashMap;

use mecha::gateway::grpc::proto::common::{StateItem, StateOptions, state_options};
use mecha::gateway::grpc::proto::runtime::dapr_client::DaprClient;
use mecha::gateway::grpc::proto::runtime::{
    DeleteStateRequest, ExecuteStateTransactionRequest, GetStateRequest, SaveStateRequest,
    TransactionalStateOperation,
};
use serde_json::json;
use support::sql::SqlScratch;
use support::{Mecha, TestMecha, component, error_of, unique};

fn env_or(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_owned())
}

/// Every store type that serves strong consistency natively, as a daprd user configures it;
/// the SQL stores in `sql`'s file and schema.
fn stores(sql: &SqlScratch) -> Vec<(&'static str, String)> {
    let redis = env_or("REDIS_URL", "redis://127.0.0.1:6379");
    let redis_host = redis.trim_start_matches("redis://").to_owned();
    let cluster = env_or(
        "REDIS_CLUSTER_NODES",
        "127.0.0.1:27001,127.0.0.1:27002,127.0.0.1:27003,127.0.0.1:27004,127.0.0.1:27005,127.0.0.1:27006",
    );
    let pg = env_or(
        "DATABASE_URL",
        "postgres://postgres:postgres@127.0.0.1:5432/test",
    );
    let etcd = env_or(
        "ETCD_ENDPOINTS",
        "http://127.0.0.1:23791,http://127.0.0.1:23792,http://127.0.0.1:23793",
    );
    let etcd_hosts = etcd
        .split(',')
        .map(|e| e.trim_start_matches("http://"))
        .collect::<Vec<_>>()
        .join(",");
    vec![
        (
            "memory",
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: memory\nspec:\n  type: state.in-memory\n  version: v1\n".to_owned(),
        ),
        (
            "redis",
            component("redis", "state.redis", &[("redisHost", redis_host)]),
        ),
        (
            "cluster",
            component(
                "cluster",
                "state.redis",
                &[("redisHost", cluster), ("redisType", "cluster".into())],
            ),
        ),
        (
            "pg",
            component(
                "pg",
                "state.postgresql",
                &[
                    ("connectionString", pg),
                    ("tableName", "mecha_compatible_defaults".into()),
                ],
            ),
        ),
        (
            "etcd",
            component("etcd", "state.etcd", &[("endpoints", etcd_hosts)]),
        ),
        (
            "sqlite",
            component(
                "sqlite",
                "state.sqlite",
                &sql.sqlite("compatible.db", "compatible_defaults"),
            ),
        ),
        (
            "mysql",
            component(
                "mysql",
                "state.mysql",
                &sql.mysql("compatible_defaults"),
            ),
        ),
    ]
}

async fn mecha(settings: Option<&str>, sql: &SqlScratch) -> Mecha {
    let mut t = TestMecha::empty();
    for (_, yaml) in stores(sql) {
        t = t.yaml(&yaml);
    }
    if let Some(s) = settings {
        t = t.settings(s);
    }
    t.start().await
}

fn receipt(r: &reqwest::Response) -> String {
    r.headers()
        .get("mecha-receipt")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

#[actix_rt::test]
async fn strong_consistency_and_partition_key_work_over_http_on_every_store() {
    let sql = SqlScratch::new();
    let m = mecha(None, &sql).await;
    for (store, _) in stores(&sql) {
        let key = unique("strong");
        let body = json!([{"key": key, "value": {"n": 1}, "options": {"consistency": "strong"}}]);
        let r = m
            .post(&format!("/v1.0/state/{store}"), body.to_string())
            .await;
        assert_eq!(r.status(), 204, "{store}: {:?}", error_of(r).await);
        assert_eq!(receipt(&r), "", "{store}: strong is native, nothing to say");

        let r = m
            .get(&format!("/v1.0/state/{store}/{key}?consistency=strong"))
            .await;
        assert_eq!(r.status(), 200, "{store}");
        assert_eq!(r.text().await.unwrap(), r#"{"n":1}"#, "{store}");

        // partitionKey on a save: ignored, with a receipt and a lint finding.
        let body = json!([{"key": key, "value": 2, "metadata": {"partitionKey": "p1"}}]);
        let r = m
            .post(&format!("/v1.0/state/{store}"), body.to_string())
            .await;
        assert_eq!(r.status(), 204, "{store}: {:?}", error_of(r).await);
        assert_eq!(receipt(&r), "partition-key=ignored", "{store}");
        let lint = r
            .headers()
            .get("mecha-lint")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        assert!(lint.contains("partitionKey"), "{store}: lint {lint:?}");

        // A transaction with strong operations and partitionKey metadata.
        let body = json!({
            "operations": [
                {"operation": "upsert", "request": {"key": key, "value": 3, "options": {"consistency": "strong"}}},
            ],
            "metadata": {"partitionKey": "p1"},
        });
        let r = m
            .post(
                &format!("/v1.0/state/{store}/transaction"),
                body.to_string(),
            )
            .await;
        assert_eq!(r.status(), 204, "{store}: {:?}", error_of(r).await);
        assert_eq!(receipt(&r), "partition-key=ignored", "{store}");
        let r = m.get(&format!("/v1.0/state/{store}/{key}")).await;
        assert_eq!(r.text().await.unwrap(), "3", "{store}");

        let r = m
            .delete(&format!("/v1.0/state/{store}/{key}?consistency=strong"))
            .await;
        assert_eq!(r.status(), 204, "{store}: {:?}", error_of(r).await);
        let r = m.get(&format!("/v1.0/state/{store}/{key}")).await;
        assert_eq!(r.status(), 204, "{store}: deleted");
    }
}

#[actix_rt::test]
async fn strong_consistency_and_partition_key_work_over_grpc_on_every_store() {
    let sql = SqlScratch::new();
    let m = mecha(None, &sql).await;
    let mut c = DaprClient::connect(format!("http://{}", m.running.grpc_addr))
        .await
        .unwrap();
    let strong = || {
        Some(StateOptions {
            consistency: state_options::StateConsistency::ConsistencyStrong as i32,
            ..StateOptions::default()
        })
    };
    let partition = || HashMap::from([("partitionKey".to_owned(), "p1".to_owned())]);
    for (store, _) in stores(&sql) {
        let key = unique("strong");
        let saved = c
            .save_state(SaveStateRequest {
                store_name: store.into(),
                states: vec![StateItem {
                    key: key.clone(),
                    value: b"one".to_vec(),
                    options: strong(),
                    metadata: partition(),
                    ..StateItem::default()
                }],
            })
            .await
            .unwrap_or_else(|e| panic!("{store}: {e:?}"));
        assert_eq!(
            saved.metadata().get("mecha-receipt").unwrap(),
            "partition-key=ignored",
            "{store}"
        );
        let got = c
            .get_state(GetStateRequest {
                store_name: store.into(),
                key: key.clone(),
                consistency: state_options::StateConsistency::ConsistencyStrong as i32,
                metadata: HashMap::new(),
            })
            .await
            .unwrap_or_else(|e| panic!("{store}: {e:?}"));
        assert_eq!(got.get_ref().data, b"one", "{store}");
        let tx = c
            .execute_state_transaction(ExecuteStateTransactionRequest {
                store_name: store.into(),
                operations: vec![TransactionalStateOperation {
                    operation_type: "upsert".into(),
                    request: Some(StateItem {
                        key: key.clone(),
                        value: b"two".to_vec(),
                        options: strong(),
                        ..StateItem::default()
                    }),
                }],
                metadata: partition(),
            })
            .await
            .unwrap_or_else(|e| panic!("{store}: {e:?}"));
        assert_eq!(
            tx.metadata().get("mecha-receipt").unwrap(),
            "partition-key=ignored",
            "{store}"
        );
        c.delete_state(DeleteStateRequest {
            store_name: store.into(),
            key: key.clone(),
            options: strong(),
            ..DeleteStateRequest::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{store}: {e:?}"));
        let gone = c
            .get_state(GetStateRequest {
                store_name: store.into(),
                key,
                ..GetStateRequest::default()
            })
            .await
            .unwrap();
        assert!(gone.get_ref().data.is_empty(), "{store}");
    }
}

#[actix_rt::test]
async fn strict_is_one_line_away() {
    let sql = SqlScratch::new();
    let m = mecha(Some("policy:\n  default: strict\n"), &sql).await;
    for (store, _) in stores(&sql) {
        let key = unique("strict");
        let body = json!([{"key": key, "value": 1, "metadata": {"partitionKey": "p1"}}]);
        let r = m
            .post(&format!("/v1.0/state/{store}"), body.to_string())
            .await;
        let (status, code, message, _) = error_of(r).await;
        assert_eq!(
            (status, code.as_str()),
            (400, "ERR_STATE_STORE_NOT_SUPPORTED"),
            "{store}: {message}"
        );
        assert!(
            message.contains("partitionKey") && message.contains("default: strict"),
            "{store}: {message}"
        );
        // Strong consistency stays native under strict.
        let body = json!([{"key": key, "value": 1, "options": {"consistency": "strong"}}]);
        let r = m
            .post(&format!("/v1.0/state/{store}"), body.to_string())
            .await;
        assert_eq!(r.status(), 204, "{store}: {:?}", error_of(r).await);
    }
    // The matrix says so where every app can read it.
    let md: serde_json::Value = m.get("/v1.0/metadata").await.json().await.unwrap();
    let matrix = md["extended"]["mecha.matrix.redis"]
        .as_str()
        .unwrap_or_default();
    assert!(
        matrix.contains("consistency=native") && matrix.contains("partition-key=rejected"),
        "{md}"
    );
}

#[actix_rt::test]
async fn the_compatible_matrix_is_what_metadata_shows() {
    let sql = SqlScratch::new();
    let m = mecha(None, &sql).await;
    let md: serde_json::Value = m.get("/v1.0/metadata").await.json().await.unwrap();
    for (store, _) in stores(&sql) {
        let matrix = md["extended"][format!("mecha.matrix.{store}")]
            .as_str()
            .unwrap_or_default();
        assert!(
            matrix.contains("consistency=native") && matrix.contains("partition-key=ignored"),
            "{store}: {matrix}"
        );
        let caps = md["components"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == store)
            .unwrap()["capabilities"]
            .to_string();
        assert!(
            !caps.contains("PARTITION_KEY"),
            "{store}: ignored is not a capability: {caps}"
        );
    }
}

#[actix_rt::test]
async fn an_unknown_default_policy_is_a_configuration_error() {
    let parsed = mecha::config::Settings::parse(
        std::path::Path::new("mecha.yaml"),
        "policy:\n  default: lenient\n",
    );
    let Err(e) = parsed else {
        panic!("an unknown default policy was accepted")
    };
    let text = format!("{e:?}");
    assert!(
        text.contains("policy.default") && text.contains("compatible or strict"),
        "{text}"
    );
}
