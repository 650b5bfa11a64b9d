//! ETags are parsed strictly, the same way on both doors and on every store: an ETag that is
//! not 1 to 256 visible ASCII characters (a non-ASCII byte, a control character, a space, an
//! over-long value) is refused with a 400 (HTTP) / `INVALID_ARGUMENT` (gRPC) naming the
//! field, and nothing is written. Before, a non-ASCII `If-Match` header was dropped and the
//! delete ran unconditionally. An empty ETag still counts as none (Dapr's contract).
//!
//! Needs Redis, PostgreSQL, NATS JetStream and MySQL/MariaDB (`scripts/test.sh` starts them;
//! SQLite needs nothing); fails, never skips, without them.

use crate::support;
use crate::support::services::{database_url, delete_kv_bucket, nats_url, redis_host};

use mecha::gateway::grpc::proto::common::{Etag, StateItem};
use mecha::gateway::grpc::proto::runtime::dapr_client::DaprClient;
use mecha::gateway::grpc::proto::runtime::{
    DeleteBulkStateRequest, DeleteStateRequest, ExecuteStateTransactionRequest, SaveStateRequest,
    TransactionalStateOperation,
};
use reqwest::header::HeaderValue;
use serde_json::json;
use support::sql::SqlScratch;
use support::{Mecha, TestMecha, component, error_of, unique};
use tonic::Code;

const STORES: [&str; 6] = ["memory", "redis", "pg", "js", "sqlite", "mysql"];

/// Mecha with an in-memory, a Redis, a PostgreSQL, a JetStream, a SQLite and a MySQL store;
/// the bucket name and the SQL scratch space (the SQLite file and the MySQL schema, removed
/// when it is dropped).
async fn mecha() -> (Mecha, String, SqlScratch) {
    let sql = SqlScratch::new();
    let bucket = unique("mecha_etag").replace('-', "_");
    let m = TestMecha::empty()
        .yaml(&component("memory", "state.in-memory", &[]).replace("  metadata:\n", ""))
        .yaml(&component(
            "redis",
            "state.redis",
            &[("redisHost", redis_host())],
        ))
        .yaml(&component(
            "pg",
            "state.postgresql",
            &[
                ("connectionString", database_url()),
                ("tableName", "mecha_etag_strict".into()),
            ],
        ))
        .yaml(&component(
            "js",
            "state.jetstream",
            &[("natsURL", nats_url()), ("bucket", bucket.clone())],
        ))
        .yaml(&component(
            "sqlite",
            "state.sqlite",
            &sql.sqlite("etag.db", "etag_strict"),
        ))
        .yaml(&component(
            "mysql",
            "state.mysql",
            &sql.mysql("etag_strict"),
        ))
        .start()
        .await;
    (m, bucket, sql)
}

async fn value_of(m: &Mecha, store: &str, key: &str) -> Option<serde_json::Value> {
    let r = m.get(&format!("/v1.0/state/{store}/{key}")).await;
    if r.status() == 204 {
        return None;
    }
    assert_eq!(r.status(), 200);
    Some(r.json().await.unwrap())
}

/// The malformed ETags: a non-ASCII byte pair (UTF-8 `é`), a control character, a space,
/// and 257 characters.
fn bad_etags() -> Vec<String> {
    vec![
        "9\u{e9}".into(),
        "9\u{7}".into(),
        "1 2".into(),
        "1".repeat(257),
    ]
}

#[actix_rt::test]
async fn a_malformed_if_match_never_drops_the_check_on_any_store() {
    let (m, bucket, _sql) = mecha().await;
    let key = unique("k");
    for store in STORES {
        m.save(store, &key, json!("kept")).await;
        let mut headers: Vec<HeaderValue> = vec![HeaderValue::from_bytes(b"9\xc3\xa9").unwrap()];
        headers.push(HeaderValue::from_bytes(b"9\xff").unwrap());
        headers.push(HeaderValue::from_static("1 2"));
        headers.push(HeaderValue::from_str(&"7".repeat(300)).unwrap());
        for h in headers {
            let r = m
                .client
                .delete(m.url(&format!("/v1.0/state/{store}/{key}")))
                .header("If-Match", h.clone())
                .send()
                .await
                .unwrap();
            let (status, code, message, _) = error_of(r).await;
            assert_eq!(
                (status, code.as_str()),
                (400, "ERR_STATE_DELETE"),
                "{store} {h:?}: {message}"
            );
            assert!(message.contains("If-Match"), "{store}: {message}");
            assert!(message.contains("invalid etag value"), "{store}: {message}");
            assert_eq!(
                value_of(&m, store, &key).await,
                Some(json!("kept")),
                "{store}: a malformed If-Match deleted the key"
            );
        }
        // An empty If-Match still counts as none (Dapr's contract).
        let r = m
            .client
            .delete(m.url(&format!("/v1.0/state/{store}/{key}")))
            .header("If-Match", "")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204, "{store}");
        assert_eq!(value_of(&m, store, &key).await, None, "{store}");
    }
    delete_kv_bucket(&bucket);
}

#[actix_rt::test]
async fn malformed_etags_in_http_saves_and_transactions_are_400_and_write_nothing() {
    let (m, bucket, _sql) = mecha().await;
    for store in STORES {
        let key = unique("k");
        m.save(store, &key, json!("kept")).await;
        for bad in bad_etags() {
            let body = json!([{"key": key, "value": "new", "etag": bad}]).to_string();
            let (status, code, message, _) =
                error_of(m.post(&format!("/v1.0/state/{store}"), body).await).await;
            assert_eq!(
                (status, code.as_str()),
                (400, "ERR_STATE_SAVE"),
                "{store}: {message}"
            );
            assert!(message.contains("etag field"), "{store}: {message}");

            let tx = json!({"operations": [
                {"operation": "upsert", "request": {"key": format!("{key}-other"), "value": 1}},
                {"operation": "delete", "request": {"key": key, "etag": bad}},
            ]});
            let (status, code, message, _) = error_of(
                m.post(&format!("/v1.0/state/{store}/transaction"), tx.to_string())
                    .await,
            )
            .await;
            // JetStream has no transactions: refused before the ETag is looked at.
            if store != "js" {
                assert_eq!(
                    (status, code.as_str()),
                    (400, "ERR_MALFORMED_REQUEST"),
                    "{store}: {message}"
                );
                assert!(message.contains("invalid etag value"), "{store}: {message}");
            } else {
                assert!(status >= 400, "{store}: {message}");
            }
            assert_eq!(
                value_of(&m, store, &key).await,
                Some(json!("kept")),
                "{store}"
            );
            assert_eq!(
                value_of(&m, store, &format!("{key}-other")).await,
                None,
                "{store}"
            );
        }
    }
    delete_kv_bucket(&bucket);
}

fn item(key: &str, etag: &str) -> StateItem {
    StateItem {
        key: key.into(),
        value: b"\"new\"".to_vec(),
        etag: Some(Etag { value: etag.into() }),
        ..StateItem::default()
    }
}

#[actix_rt::test]
async fn malformed_etags_over_grpc_are_invalid_argument_and_write_nothing() {
    let (m, bucket, _sql) = mecha().await;
    let mut c = DaprClient::connect(format!("http://{}", m.running.grpc_addr))
        .await
        .unwrap();
    for store in STORES {
        let (key, other) = (unique("k"), unique("o"));
        m.save(store, &key, json!("kept")).await;
        m.save(store, &other, json!("kept")).await;
        for bad in bad_etags() {
            let save = c
                .save_state(SaveStateRequest {
                    store_name: store.into(),
                    states: vec![item(&key, &bad)],
                })
                .await
                .unwrap_err();
            assert_eq!(
                save.code(),
                Code::InvalidArgument,
                "{store}: {}",
                save.message()
            );
            let delete = c
                .delete_state(DeleteStateRequest {
                    store_name: store.into(),
                    key: key.clone(),
                    etag: Some(Etag { value: bad.clone() }),
                    ..DeleteStateRequest::default()
                })
                .await
                .unwrap_err();
            assert_eq!(
                delete.code(),
                Code::InvalidArgument,
                "{store}: {}",
                delete.message()
            );
            // Bulk delete: one good item and one malformed ETag; nothing is deleted.
            let bulk = c
                .delete_bulk_state(DeleteBulkStateRequest {
                    store_name: store.into(),
                    states: vec![
                        StateItem {
                            key: other.clone(),
                            ..StateItem::default()
                        },
                        item(&key, &bad),
                    ],
                })
                .await
                .unwrap_err();
            assert_eq!(
                bulk.code(),
                Code::InvalidArgument,
                "{store}: {}",
                bulk.message()
            );
            if store != "js" {
                let tx = c
                    .execute_state_transaction(ExecuteStateTransactionRequest {
                        store_name: store.into(),
                        operations: vec![TransactionalStateOperation {
                            operation_type: "delete".into(),
                            request: Some(item(&key, &bad)),
                        }],
                        metadata: Default::default(),
                    })
                    .await
                    .unwrap_err();
                assert_eq!(
                    tx.code(),
                    Code::InvalidArgument,
                    "{store}: {}",
                    tx.message()
                );
            }
            assert_eq!(
                value_of(&m, store, &key).await,
                Some(json!("kept")),
                "{store}"
            );
            assert_eq!(
                value_of(&m, store, &other).await,
                Some(json!("kept")),
                "{store}"
            );
        }
    }
    delete_kv_bucket(&bucket);
}

/// ETags compare exactly: one that differs from the current ETag only in letter case is stale
/// (409 on save and delete, a failed transaction), and nothing is written. This binds on every
/// store whose ETags hold letters, SQLite's and MySQL's random hex ones among them (MySQL
/// compares text case-insensitively unless told otherwise); numeric ETags have no other
/// spelling.
#[actix_rt::test]
async fn an_etag_in_another_letter_case_is_stale_on_every_store() {
    let (m, bucket, _sql) = mecha().await;
    let mut checked = Vec::new();
    for store in STORES {
        let key = unique("k");
        m.save(store, &key, json!("kept")).await;
        let r = m.get(&format!("/v1.0/state/{store}/{key}")).await;
        let etag = r.headers()["etag"].to_str().unwrap().to_owned();
        let swapped: String = etag
            .chars()
            .map(|c| {
                if c.is_ascii_lowercase() {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                }
            })
            .collect();
        if swapped == etag {
            continue;
        }
        checked.push(store);
        let body = json!([{"key": key, "value": "new", "etag": swapped}]).to_string();
        let (status, code, message, _) =
            error_of(m.post(&format!("/v1.0/state/{store}"), body).await).await;
        assert_eq!(
            (status, code.as_str()),
            (409, "ERR_STATE_SAVE"),
            "{store}: {message}"
        );
        let r = m
            .client
            .delete(m.url(&format!("/v1.0/state/{store}/{key}")))
            .header("If-Match", swapped.as_str())
            .send()
            .await
            .unwrap();
        let (status, code, message, _) = error_of(r).await;
        assert_eq!(
            (status, code.as_str()),
            (409, "ERR_STATE_DELETE"),
            "{store}: {message}"
        );
        let tx = json!({"operations": [
            {"operation": "upsert", "request": {"key": key, "value": "tx", "etag": swapped}},
        ]});
        let (status, code, message, _) = error_of(
            m.post(&format!("/v1.0/state/{store}/transaction"), tx.to_string())
                .await,
        )
        .await;
        assert_eq!(
            (status, code.as_str()),
            (500, "ERR_STATE_TRANSACTION"),
            "{store}: {message}"
        );
        assert_eq!(
            value_of(&m, store, &key).await,
            Some(json!("kept")),
            "{store}"
        );
        // The ETag as issued still works.
        let body = json!([{"key": key, "value": "new", "etag": etag}]).to_string();
        let r = m.post(&format!("/v1.0/state/{store}"), body).await;
        assert_eq!(r.status(), 204, "{store}");
        assert_eq!(
            value_of(&m, store, &key).await,
            Some(json!("new")),
            "{store}"
        );
    }
    assert!(
        checked.contains(&"sqlite") && checked.contains(&"mysql"),
        "stores with letters in their ETags: {checked:?}"
    );
    delete_kv_bucket(&bucket);
}
