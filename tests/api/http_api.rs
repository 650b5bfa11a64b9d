//! The HTTP state API against the in-memory store, over real HTTP, row by row of the spec.

use crate::support;

use std::sync::Arc;

use async_trait::async_trait;
use mecha::actors::{StateStore, StoreError, StoreFactory};
use mecha::capabilities::CapabilitySet;
use mecha::model::{DeleteRequest, GetRequest, SetRequest, StateEntry};
use parking_lot::Mutex;
use serde_json::{Value, json};
use support::sql::SqlScratch;
use support::{TestMecha, error_of};

const S: &str = "/v1.0/state/statestore";

/// A minimal store without ETag or transactions, to see capability refusals.
#[derive(Default)]
struct PlainStore(Mutex<std::collections::HashMap<String, bytes::Bytes>>);

#[async_trait]
impl StateStore for PlainStore {
    async fn get(&self, req: GetRequest) -> Result<Option<StateEntry>, StoreError> {
        Ok(self.0.lock().get(&req.key).map(|d| StateEntry {
            data: d.clone(),
            etag: None,
            metadata: Default::default(),
        }))
    }
    async fn set(&self, req: SetRequest) -> Result<(), StoreError> {
        self.0.lock().insert(req.key, req.value);
        Ok(())
    }
    async fn delete(&self, req: DeleteRequest) -> Result<(), StoreError> {
        self.0.lock().remove(&req.key);
        Ok(())
    }
}

struct PlainFactory(Arc<PlainStore>);

impl StoreFactory for PlainFactory {
    fn create(&self) -> Result<Arc<dyn StateStore>, StoreError> {
        Ok(self.0.clone())
    }
    fn capabilities(&self) -> CapabilitySet {
        CapabilitySet::EMPTY
    }
}

#[actix_rt::test]
async fn save_then_get_returns_the_value_with_an_etag() {
    let m = TestMecha::memory().start().await;
    let r = m
        .post(S, r#"[{"key":"order-1","value":{"qty":2,"a":"<b>"}}]"#)
        .await;
    assert_eq!(r.status(), 204);
    assert!(r.headers().get("content-type").is_none());
    let r = m.get(&format!("{S}/order-1")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    assert!(!etag.is_empty());
    assert_eq!(r.text().await.unwrap(), r#"{"a":"<b>","qty":2}"#);
}

#[actix_rt::test]
async fn values_are_reserialized_json() {
    let m = TestMecha::memory().start().await;
    let r = m.post(S, r#"[{"key":"s","value":"value1"},{"key":"n","value":1.50},{"key":"none"},{"key":"e","value":""}]"#).await;
    assert_eq!(r.status(), 204);
    for (k, want) in [
        ("s", "\"value1\""),
        ("n", "1.5"),
        ("none", "null"),
        ("e", "\"\""),
    ] {
        let r = m.get(&format!("{S}/{k}")).await;
        assert_eq!(r.status(), 200, "{k}");
        assert_eq!(r.text().await.unwrap(), want, "{k}");
    }
}

#[actix_rt::test]
async fn missing_key_is_204_and_delete_of_missing_is_204() {
    let m = TestMecha::memory().start().await;
    let r = m.get(&format!("{S}/nope")).await;
    assert_eq!(r.status(), 204);
    assert!(r.headers().get("etag").is_none());
    assert_eq!(r.text().await.unwrap(), "");
    assert_eq!(m.delete(&format!("{S}/nope")).await.status(), 204);
}

#[actix_rt::test]
async fn keys_are_query_unescaped_after_routing() {
    let m = TestMecha::memory().start().await;
    let r = m
        .post(
            S,
            r#"[{"key":"a/b","value":1},{"key":"a b","value":2},{"key":"bulk","value":3}]"#,
        )
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(
        m.get(&format!("{S}/a%2Fb")).await.text().await.unwrap(),
        "1"
    );
    assert_eq!(m.get(&format!("{S}/a+b")).await.text().await.unwrap(), "2");
    assert_eq!(
        m.get(&format!("{S}/a%20b")).await.text().await.unwrap(),
        "2"
    );
    assert_eq!(
        m.get(&format!("{S}/bulk")).await.text().await.unwrap(),
        "3",
        "GET .../bulk reads the key bulk"
    );
    let r = m.get(&format!("{S}/a%zzb")).await;
    assert_eq!(r.status(), 400);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert!(
        r.text()
            .await
            .unwrap()
            .starts_with("failed to unescape request parameter \"key\"")
    );
}

#[actix_rt::test]
async fn etag_checks_on_save_and_delete() {
    let m = TestMecha::memory().start().await;
    m.save("statestore", "k", json!(1)).await;
    let etag = m.get(&format!("{S}/k")).await.headers()["etag"]
        .to_str()
        .unwrap()
        .to_owned();
    let r = m
        .post(S, json!([{"key":"k","value":2,"etag":etag}]).to_string())
        .await;
    assert_eq!(r.status(), 204);
    // Stale etag: 409 on save.
    let (status, code, msg, details) = error_of(
        m.post(S, json!([{"key":"k","value":3,"etag":etag}]).to_string())
            .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (409, "ERR_STATE_SAVE"));
    assert!(
        msg.starts_with("failed saving state in state store statestore: possible etag mismatch"),
        "{msg}"
    );
    assert!(details.is_empty(), "legacy shape");
    // Invalid etag: 400.
    let (status, code, msg, _) = error_of(
        m.post(S, r#"[{"key":"k","value":3,"etag":"not-a-version"}]"#)
            .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (400, "ERR_STATE_SAVE"));
    assert!(msg.contains("invalid etag value"), "{msg}");
    // Delete with a stale If-Match: 409; invalid: 400; empty If-Match counts as none.
    let del = |etag: &str| {
        m.client
            .delete(m.url(&format!("{S}/k")))
            .header("If-Match", etag)
            .send()
    };
    let (status, code, msg, _) = error_of(del(&etag).await.unwrap()).await;
    assert_eq!((status, code.as_str()), (409, "ERR_STATE_DELETE"));
    assert!(
        msg.starts_with("failed deleting state with key k: "),
        "{msg}"
    );
    assert_eq!(error_of(del("x").await.unwrap()).await.0, 400);
    let current = m.get(&format!("{S}/k")).await.headers()["etag"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(del(&current).await.unwrap().status(), 204);
    m.save("statestore", "k", json!(1)).await;
    assert_eq!(del("").await.unwrap().status(), 204);
    assert_eq!(m.get(&format!("{S}/k")).await.status(), 204);
}

#[actix_rt::test]
async fn first_write_is_create_only_and_a_conflict_is_409() {
    let m = TestMecha::memory().start().await;
    let body = r#"[{"key":"fw","value":1,"options":{"concurrency":"first-write","consistency":"strong"}}]"#;
    assert_eq!(m.post(S, body).await.status(), 204);
    let (status, code, _, _) = error_of(m.post(S, body).await).await;
    assert_eq!((status, code.as_str()), (409, "ERR_STATE_SAVE"));
    // An empty etag counts as no etag: still create-only.
    let body = r#"[{"key":"fw","value":2,"etag":"","options":{"concurrency":"first-write"}}]"#;
    assert_eq!(error_of(m.post(S, body).await).await.0, 409);
}

#[actix_rt::test]
async fn bulk_save_with_one_stale_etag_is_409_and_keeps_the_good_item() {
    let m = TestMecha::memory().start().await;
    m.save("statestore", "b", json!(0)).await;
    let r = m.post(S, r#"[{"key":"a","value":1},{"key":"b","value":1,"etag":"424242"},{"key":"a2","value":2}]"#).await;
    assert_eq!(error_of(r).await.0, 409);
    assert_eq!(m.get(&format!("{S}/a")).await.text().await.unwrap(), "1");
    assert_eq!(m.get(&format!("{S}/a2")).await.text().await.unwrap(), "2");
    assert_eq!(m.get(&format!("{S}/b")).await.text().await.unwrap(), "0");
    // One invalid etag among the failures makes it 400.
    let r = m
        .post(
            S,
            r#"[{"key":"b","value":1,"etag":"424242"},{"key":"b","value":1,"etag":"bad"}]"#,
        )
        .await;
    assert_eq!(error_of(r).await.0, 400);
}

#[actix_rt::test]
async fn ttl_from_url_metadata_comes_back_as_a_header() {
    let m = TestMecha::memory().start().await;
    let r = m
        .post(
            &format!("{S}?metadata.ttlInSeconds=100"),
            r#"[{"key":"t","value":1,"metadata":{"ttlInSeconds":"1"}}]"#,
        )
        .await;
    assert_eq!(r.status(), 204);
    let r = m.get(&format!("{S}/t")).await;
    let at = r.headers()["metadata.ttlexpiretime"]
        .to_str()
        .unwrap()
        .to_owned();
    let at = humantime::parse_rfc3339(&at).unwrap();
    let left = at.duration_since(std::time::SystemTime::now()).unwrap();
    assert!(
        left.as_secs() > 90,
        "URL metadata (100 s) wins over item metadata: {left:?}"
    );
    let (status, code, msg, _) = error_of(
        m.post(
            S,
            r#"[{"key":"t","value":1,"metadata":{"ttlInSeconds":"soon"}}]"#,
        )
        .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (400, "ERR_STATE_SAVE"));
    assert!(
        msg.contains("incorrect value for metadata 'ttlInSeconds'"),
        "{msg}"
    );
}

#[actix_rt::test]
async fn malformed_bodies_get_malformed_request() {
    let m = TestMecha::memory().start().await;
    for body in [
        "",
        "{}",
        "foobar",
        r#"[{"key":"k",}]"#,
        r#"[{"key":"k","etag":5}]"#,
        r#"[{"key":"k","metadata":{"a":1}}]"#,
    ] {
        let (status, code, _, details) = error_of(m.post(S, body).await).await;
        assert_eq!(
            (status, code.as_str()),
            (400, "ERR_MALFORMED_REQUEST"),
            "{body}"
        );
        assert!(details.is_empty());
    }
    let (status, code, msg, _) = error_of(m.post(S, r#"[{"value":1}]"#).await).await;
    assert_eq!(
        (status, code.as_str(), msg.as_str()),
        (400, "ERR_MALFORMED_REQUEST", "\"key\" is a required field")
    );
    assert_eq!(m.post(S, "[]").await.status(), 204);
    let (status, code, _, _) = error_of(m.get(&format!("{S}/k?consistency=linear")).await).await;
    assert_eq!((status, code.as_str()), (400, "ERR_STATE_GET"));
}

#[actix_rt::test]
async fn illegal_keys_get_the_rich_error() {
    let m = TestMecha::memory().start().await;
    let (status, code, msg, details) =
        error_of(m.post(S, r#"[{"key":"ke||y1","value":"value1"}]"#).await).await;
    assert_eq!((status, code.as_str()), (400, "ERR_MALFORMED_REQUEST"));
    assert_eq!(
        msg,
        "api error: code = InvalidArgument desc = input key/keyPrefix 'ke||y1' can't contain '||'"
    );
    assert_eq!(details.len(), 3);
    assert_eq!(
        details[0]["@type"],
        "type.googleapis.com/google.rpc.BadRequest"
    );
    assert_eq!(details[0]["field_violations"][0]["field"], "ke||y1");
    assert_eq!(details[1]["resource_name"], "statestore");
    assert_eq!(details[1]["resource_type"], "state");
    assert_eq!(details[2]["reason"], "DAPR_STATE_ILLEGAL_KEY");
    assert_eq!(details[2]["domain"], "dapr.io");
    assert_eq!(error_of(m.get(&format!("{S}/a%7C%7Cb")).await).await.0, 400);
    assert_eq!(
        error_of(m.delete(&format!("{S}/a%7C%7Cb")).await).await.0,
        400
    );
    let r = m
        .post(&format!("{S}/bulk"), r#"{"keys":["ok","x||y"]}"#)
        .await;
    assert_eq!(error_of(r).await.0, 400);
}

#[actix_rt::test]
async fn unknown_store_and_no_stores() {
    let m = TestMecha::memory().start().await;
    let (status, code, msg, details) =
        error_of(m.post("/v1.0/state/mystore-doesnt-exist", "garbage").await).await;
    assert_eq!(
        (status, code.as_str(), msg.as_str()),
        (
            400,
            "ERR_STATE_STORE_NOT_FOUND",
            "state store mystore-doesnt-exist is not found"
        )
    );
    assert_eq!(details.len(), 1);
    assert_eq!(details[0]["reason"], "DAPR_STATE_NOT_FOUND");
    assert_eq!(details[0]["metadata"]["appID"], "testapp");
    let none = TestMecha::empty().start().await;
    let (status, code, msg, details) = error_of(none.get("/v1.0/state/mystore/k").await).await;
    assert_eq!(
        (status, code.as_str(), msg.as_str()),
        (
            500,
            "ERR_STATE_STORE_NOT_CONFIGURED",
            "state store mystore is not configured"
        )
    );
    assert_eq!(details[0]["reason"], "DAPR_STATE_NOT_CONFIGURED");
}

#[actix_rt::test]
async fn bulk_get_returns_items_in_request_order() {
    let m = TestMecha::memory().start().await;
    m.post(
        &format!("{S}?metadata.ttlInSeconds=60"),
        r#"[{"key":"a","value":{"x":1}},{"key":"b","value":"two"}]"#,
    )
    .await;
    let r = m
        .post(
            &format!("{S}/bulk"),
            r#"{"keys":["b","missing","a"],"parallelism":2}"#,
        )
        .await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(text.ends_with("]\n"));
    let items: Vec<Value> = serde_json::from_str(&text).unwrap();
    assert_eq!(items[0]["key"], "b");
    assert_eq!(items[0]["data"], "two");
    assert!(items[0]["etag"].is_string());
    assert!(items[0]["metadata"]["ttlExpireTime"].is_string());
    assert_eq!(items[1], json!({"key":"missing"}));
    assert_eq!(items[2]["data"], json!({"x":1}));
    let r = m
        .client
        .put(m.url(&format!("{S}/bulk")))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "[]\n");
    let (status, code, msg, _) = error_of(m.post(&format!("{S}/bulk"), "").await).await;
    assert_eq!((status, code.as_str()), (400, "ERR_MALFORMED_REQUEST"));
    assert!(msg.starts_with("failed deserializing HTTP body: "));
}

#[actix_rt::test]
async fn transactions_apply_atomically() {
    // No store has partitions: `partitionKey` is ignored here by policy, with a receipt.
    let m = TestMecha::memory()
        .settings("stores:\n  statestore:\n    partitionKey: ignore\n")
        .start()
        .await;
    m.save("statestore", "k2", json!("old")).await;
    let tx = r#"{"operations":[{"operation":"upsert","request":{"key":"k1","value":{"a":1},"metadata":{"ttlInSeconds":"60"}}},{"operation":"delete","request":{"key":"k2"}}],"metadata":{"partitionKey":"p1"}}"#;
    let r = m.post(&format!("{S}/transaction"), tx).await;
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["mecha-receipt"], "partition-key=ignored");
    assert_eq!(
        m.get(&format!("{S}/k1")).await.text().await.unwrap(),
        r#"{"a":1}"#
    );
    assert_eq!(m.get(&format!("{S}/k2")).await.status(), 204);
    // A stale etag fails the whole transaction with 500, never 409, and writes nothing.
    let tx = r#"{"operations":[{"operation":"upsert","request":{"key":"k3","value":3}},{"operation":"delete","request":{"key":"k1","etag":"987654"}}]}"#;
    let (status, code, msg, _) = error_of(m.post(&format!("{S}/transaction"), tx).await).await;
    assert_eq!((status, code.as_str()), (500, "ERR_STATE_TRANSACTION"));
    assert!(msg.starts_with("error while executing state transaction: "));
    assert_eq!(m.get(&format!("{S}/k3")).await.status(), 204);
    assert_eq!(m.get(&format!("{S}/k1")).await.status(), 200);
    // Empty operations: 204 without calling the store; unknown operation: 400.
    assert_eq!(
        m.post(
            &format!("{S}/transaction"),
            r#"{"operations":[],"metadata":null}"#
        )
        .await
        .status(),
        204
    );
    let (status, code, msg, _) = error_of(
        m.post(
            &format!("{S}/transaction"),
            r#"{"operations":[{"operation":"merge","request":{"key":"a"}}]}"#,
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, code.as_str(), msg.as_str()),
        (
            400,
            "ERR_NOT_SUPPORTED_STATE_OPERATION",
            "operation type merge not supported"
        )
    );
    assert_eq!(
        error_of(m.post(&format!("{S}/transaction"), "nope").await)
            .await
            .0,
        400
    );
}

#[actix_rt::test]
async fn too_many_transaction_operations_is_a_rich_400() {
    let m = TestMecha::memory()
        .settings("limits:\n  maxTransactionOps: 2\n")
        .start()
        .await;
    let ops: Vec<Value> = (0..3)
        .map(|i| json!({"operation":"upsert","request":{"key":format!("k{i}"),"value":i}}))
        .collect();
    let (status, code, msg, details) = error_of(
        m.post(
            &format!("{S}/transaction"),
            json!({"operations":ops}).to_string(),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (400, "ERR_STATE_STORE_TOO_MANY_TRANSACTIONS")
    );
    assert_eq!(
        msg,
        "the transaction contains 3 operations, which is more than what the state store supports: 2"
    );
    assert_eq!(
        details[1]["metadata"],
        json!({"currentOpsTransaction":"3","maxOpsPerTransaction":"2"})
    );
}

#[actix_rt::test]
async fn capability_refusals_for_transactions_and_query() {
    let m = TestMecha::memory()
        .custom("plain", Arc::new(PlainFactory(Arc::default())))
        .start()
        .await;
    // The capability check runs before the body is parsed.
    let (status, code, msg, details) =
        error_of(m.post("/v1.0/state/plain/transaction", "not json").await).await;
    assert_eq!(
        (status, code.as_str(), msg.as_str()),
        (
            500,
            "ERR_STATE_STORE_NOT_SUPPORTED",
            "state store plain doesn't support transactions (capability transactions (TRANSACTIONAL), policy: reject (built-in default))"
        )
    );
    let types: Vec<&str> = details
        .iter()
        .map(|d| d["@type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "type.googleapis.com/google.rpc.Help",
            "type.googleapis.com/google.rpc.ResourceInfo",
            "type.googleapis.com/google.rpc.ErrorInfo"
        ]
    );
    assert_eq!(
        details[2]["reason"],
        "DAPR_STATE_TRANSACTIONS_NOT_SUPPORTED"
    );
    // A store that cannot list its keys has no query (the default in-memory store's is
    // emulated: tests/api/query.rs).
    let (status, code, msg, details) =
        error_of(m.post("/v1.0-alpha1/state/plain/query", "{}").await).await;
    assert_eq!(
        (status, code.as_str(), msg.as_str()),
        (
            500,
            "ERR_STATE_STORE_NOT_SUPPORTED",
            "state store does not support querying (capability query (QUERY_API), policy: reject (built-in default))"
        )
    );
    assert_eq!(details.len(), 2);
    assert_eq!(details[1]["reason"], "DAPR_STATE_QUERYING_NOT_SUPPORTED");
    // The plain store still does the basics, and reads carry no ETag header.
    m.save("plain", "k", json!(1)).await;
    let r = m.get("/v1.0/state/plain/k").await;
    assert!(r.headers().get("etag").is_none());
}

/// `state.sqlite` and `state.mysql` have no query engine of their own: Mecha emulates the
/// query over a range read of the app's keys, on both verbs, with the `query=emulated`
/// receipt, and a query that does not parse is the client's 400. MySQL is the local MariaDB,
/// in a schema of this test's own.
#[actix_rt::test]
async fn query_is_emulated_on_sqlite_and_mysql() {
    let sql = SqlScratch::new();
    let component = |name: &str, ty: &str, metadata: Vec<(&str, String)>| {
        format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n  type: {ty}\n  version: v1\n  metadata:\n{}",
            SqlScratch::lines(&metadata)
        )
    };
    let m = TestMecha::empty()
        .yaml(&component(
            "sqlite",
            "state.sqlite",
            sql.sqlite("query.db", "query_emulated"),
        ))
        .yaml(&component(
            "mysql",
            "state.mysql",
            sql.mysql("query_emulated"),
        ))
        .start()
        .await;
    let query = json!({"filter": {"EQ": {"name": "mecha"}}, "page": {"limit": 10}}).to_string();
    for store in ["sqlite", "mysql"] {
        m.save(store, "k", json!({"name": "mecha"})).await;
        m.save(store, "other", json!({"name": "other"})).await;
        for method in ["POST", "PUT"] {
            let r = m
                .client
                .request(
                    method.parse().unwrap(),
                    m.url(&format!("/v1.0-alpha1/state/{store}/query")),
                )
                .body(query.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{store} {method}");
            assert_eq!(r.headers()["mecha-receipt"], "query=emulated", "{store}");
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["results"].as_array().unwrap().len(), 1, "{store}: {v}");
            assert_eq!(v["results"][0]["key"], "k", "{store}: {v}");
            assert_eq!(v["results"][0]["data"], json!({"name": "mecha"}), "{store}");
        }
        let (status, code, _, _) = error_of(
            m.post(
                &format!("/v1.0-alpha1/state/{store}/query"),
                r#"{"filter":{}}"#,
            )
            .await,
        )
        .await;
        assert_eq!((status, code.as_str()), (400, "ERR_STATE_QUERY"), "{store}");
        let r = m.get(&format!("/v1.0/state/{store}/k")).await;
        assert_eq!(r.status(), 200, "{store}");
    }
}

/// A key within `maxKeyLength` that MySQL's key column cannot hold (3072 bytes with the
/// prefix) is the caller's 400 naming the limit, not a 500 carrying the database's error, and
/// nothing is written; SQLite takes it.
#[actix_rt::test]
async fn a_key_too_long_for_mysql_is_a_400() {
    let sql = SqlScratch::new();
    let component = |name: &str, ty: &str, metadata: Vec<(&str, String)>| {
        format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n  type: {ty}\n  version: v1\n  metadata:\n{}",
            SqlScratch::lines(&metadata)
        )
    };
    let m = TestMecha::empty()
        .yaml(&component(
            "sqlite",
            "state.sqlite",
            sql.sqlite("long.db", "long_keys"),
        ))
        .yaml(&component("mysql", "state.mysql", sql.mysql("long_keys")))
        .start()
        .await;
    let key = "k".repeat(3500);
    m.save("sqlite", &key, json!(1)).await;
    let body = json!([{"key": key, "value": 1}]).to_string();
    let (status, code, msg, _) = error_of(m.post("/v1.0/state/mysql", body).await).await;
    assert_eq!((status, code.as_str()), (400, "ERR_STATE_SAVE"), "{msg}");
    assert!(msg.contains("at most 3072 bytes"), "{msg}");
    assert!(!msg.contains("MySQL error"), "{msg}");
    let r = m.get(&format!("/v1.0/state/mysql/{key}")).await;
    assert_eq!(r.status(), 204);
}

#[actix_rt::test]
async fn unknown_routes_fall_through_to_404_direct_invoke() {
    let m = TestMecha::memory().start().await;
    for (method, path) in [
        ("GET", "/v1.0/state/statestore"),
        ("PATCH", "/v1.0/state/statestore/k"),
        ("GET", "/v1.0/nothing"),
        ("DELETE", "/v1.0/state/statestore"),
    ] {
        let r = m
            .client
            .request(method.parse().unwrap(), m.url(path))
            .send()
            .await
            .unwrap();
        let (status, code, msg, _) = error_of(r).await;
        assert_eq!(
            (status, code.as_str()),
            (404, "ERR_DIRECT_INVOKE"),
            "{method} {path}"
        );
        assert_eq!(
            msg,
            "failed getting app id either from the URL path or the header dapr-app-id"
        );
    }
    // Path cleaning: `//`, `.` and a trailing slash still route.
    m.save("statestore", "k", json!(1)).await;
    assert_eq!(m.get("//v1.0/state/./statestore/k/").await.status(), 200);
}

#[actix_rt::test]
async fn health_and_metadata_endpoints() {
    let m = TestMecha::memory().start().await;
    assert_eq!(m.get("/v1.0/healthz").await.status(), 204);
    assert_eq!(m.get("/v1.0/healthz/outbound").await.status(), 204);
    let (status, code, _, _) = error_of(m.get("/v1.0/healthz?appid=other").await).await;
    assert_eq!((status, code.as_str()), (500, "ERR_HEALTH_APPID_NOT_MATCH"));
    assert_eq!(m.get("/v1.0/healthz?appid=testapp").await.status(), 204);
    let r = m
        .client
        .put(m.url("/v1.0/metadata/myattr"))
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let md: Value = m.get("/v1.0/metadata").await.json().await.unwrap();
    assert_eq!(md["id"], "testapp");
    assert_eq!(
        md["components"],
        json!([{"name":"statestore","type":"state.in-memory","version":"v1","capabilities":["ETAG","TRANSACTIONAL","QUERY_API","TTL","ACTOR"]}])
    );
    assert_eq!(md["extended"]["myattr"], "hello");
    assert!(md["extended"]["daprRuntimeVersion"].is_string());
    assert_eq!(
        md["extended"]["mecha.capabilities.statestore"],
        "ETAG,TRANSACTIONAL,TTL,FIRST_WRITE,BULK_NATIVE,STRONG_CONSISTENCY"
    );
}

#[actix_rt::test]
async fn limits_are_enforced_with_dapr_shaped_errors() {
    let m = TestMecha::memory()
        .settings("limits:\n  maxBodySize: 2Ki\n  maxKeyLength: 8\n  maxBulkItems: 3\n")
        .start()
        .await;
    let big = json!([{"key":"k","value":"x".repeat(4096)}]).to_string();
    let (status, code, msg, _) = error_of(m.post(S, big).await).await;
    assert_eq!((status, code.as_str()), (413, "ERR_MALFORMED_REQUEST"));
    assert!(msg.contains("2048"), "{msg}");
    // Chunked (no Content-Length) is limited too.
    let chunks: Vec<Result<String, std::io::Error>> = (0..8).map(|_| Ok("x".repeat(512))).collect();
    let body = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    let r = m.client.post(m.url(S)).body(body).send().await.unwrap();
    assert_eq!(r.status(), 413);
    let (status, _, msg, _) = error_of(m.post(S, r#"[{"key":"123456789","value":1}]"#).await).await;
    assert_eq!(status, 400);
    assert!(msg.contains("more than the limit of 8 bytes"), "{msg}");
    let (status, _, msg, _) = error_of(
        m.post(&format!("{S}/bulk"), r#"{"keys":["a","b","c","d"]}"#)
            .await,
    )
    .await;
    assert_eq!(status, 400);
    assert!(msg.contains("4 keys, more than the limit of 3"), "{msg}");
    let four = r#"[{"key":"a"},{"key":"b"},{"key":"c"},{"key":"d"}]"#;
    assert_eq!(error_of(m.post(S, four).await).await.0, 400);
}

#[actix_rt::test]
async fn apps_are_identified_by_token_and_keys_are_prefixed_per_app() {
    let settings =
        "apps:\n  - id: orders\n    token: tok-orders\n  - id: billing\n    token: tok-billing\n";
    let shared = "kind: Component\nmetadata:\n  name: shared\nspec:\n  type: state.in-memory\n  metadata:\n  - name: keyPrefix\n    value: name\n";
    let scoped = "kind: Component\nmetadata:\n  name: ordersonly\nspec:\n  type: state.in-memory\nscopes: [orders]\n";
    let m = TestMecha::memory()
        .yaml(shared)
        .yaml(scoped)
        .settings(settings)
        .start()
        .await;
    let call = |method: &str, path: &str, token: Option<&str>, body: &str| {
        let mut b = m
            .client
            .request(method.parse().unwrap(), m.url(path))
            .body(body.to_owned());
        if let Some(t) = token {
            b = b.header("dapr-api-token", t);
        }
        b.send()
    };
    // No or wrong token: 401 in plain text; health needs none.
    let r = call("GET", "/v1.0/state/statestore/k", None, "")
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.text().await.unwrap(), "invalid api token\n");
    assert_eq!(
        call("GET", "/v1.0/metadata", Some("nope"), "")
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        call("GET", "/v1.0/healthz", None, "")
            .await
            .unwrap()
            .status(),
        204
    );
    // Same key, two apps: isolated by the appid prefix, shared under keyPrefix=name.
    for (store, app) in [
        ("statestore", "tok-orders"),
        ("statestore", "tok-billing"),
        ("shared", "tok-orders"),
    ] {
        let body = json!([{"key":"k","value":app}]).to_string();
        assert_eq!(
            call("POST", &format!("/v1.0/state/{store}"), Some(app), &body)
                .await
                .unwrap()
                .status(),
            204
        );
    }
    let read = |store: &str, tok: &str| {
        let path = format!("/v1.0/state/{store}/k");
        let tok = tok.to_owned();
        async move {
            call("GET", &path, Some(&tok), "")
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    assert_eq!(read("statestore", "tok-orders").await, "\"tok-orders\"");
    assert_eq!(read("statestore", "tok-billing").await, "\"tok-billing\"");
    assert_eq!(read("shared", "tok-billing").await, "\"tok-orders\"");
    // Scopes: the store does not exist for other apps.
    assert_eq!(
        call("GET", "/v1.0/state/ordersonly/k", Some("tok-orders"), "")
            .await
            .unwrap()
            .status(),
        204
    );
    let r = call("GET", "/v1.0/state/ordersonly/k", Some("tok-billing"), "")
        .await
        .unwrap();
    assert_eq!(error_of(r).await.1, "ERR_STATE_STORE_NOT_FOUND");
    let md: Value = call("GET", "/v1.0/metadata", Some("tok-billing"), "")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(md["id"], "billing");
    assert_eq!(md["components"].as_array().unwrap().len(), 2);
}

#[actix_rt::test]
async fn metrics_count_store_calls_per_app_store_and_operation() {
    let m = TestMecha::memory().app_id("metricsapp").start().await;
    m.save("statestore", "k", json!(1)).await;
    m.get(&format!("{S}/k")).await;
    m.post(S, r#"[{"key":"k","value":1,"etag":"999999"}]"#)
        .await;
    let text = m.metrics().await;
    let has = |needle: &[&str]| text.lines().any(|l| needle.iter().all(|n| l.contains(n)));
    assert!(
        has(&[
            "dapr_component_state_count",
            "app_id=\"metricsapp\"",
            "operation=\"set\"",
            "success=\"true\""
        ]),
        "{text}"
    );
    assert!(has(&[
        "dapr_component_state_count",
        "app_id=\"metricsapp\"",
        "operation=\"set\"",
        "success=\"false\""
    ]));
    assert!(has(&[
        "dapr_component_state_count",
        "app_id=\"metricsapp\"",
        "operation=\"get\"",
        "component=\"statestore\""
    ]));
    assert!(has(&[
        "dapr_http_server_request_count",
        "app_id=\"metricsapp\"",
        "path=\"/v1.0/state/statestore\"",
        "status=\"409\""
    ]));
    assert!(has(&[
        "dapr_component_state_latencies_bucket",
        "app_id=\"metricsapp\""
    ]));
}
