//! The Query API on every store, over both doors: the embedded default, Redis, Redis
//! Cluster, SQLite and MySQL answer with Mecha's emulated query, PostgreSQL with its native
//! one, and the same
//! corpus gives the same results, in the same order, with the same page boundaries, over
//! HTTP and gRPC. Emulated answers carry `mecha-receipt: query=emulated`; `GET
//! /v1.0/metadata` lists `QUERY_API` where query is native or emulated.

use serde_json::{Value, json};
use tonic::Request;

use crate::support::services::{database_url, drop_pg_table, redis_cluster_nodes, redis_url};
use crate::support::sql::SqlScratch;
use crate::support::{Mecha, TestMecha, component, error_of, grpc_receipt, receipt_of, unique};
use mecha::gateway::grpc::proto::runtime::QueryStateRequest;

const STORES: [&str; 6] = ["mem", "redis", "cluster", "sqlite", "mysql", "pg"];

struct PgTable(String, SqlScratch);

impl Drop for PgTable {
    fn drop(&mut self) {
        drop_pg_table(&self.0);
    }
}

async fn start(app: &str, table: &PgTable, settings: &str) -> Mecha {
    let sql = &table.1;
    TestMecha::empty()
        .app_id(app)
        .settings(settings)
        .yaml(&component("mem", "state.in-memory", &[]))
        .yaml(&component(
            "redis",
            "state.redis",
            &[("redisHost", redis_url())],
        ))
        .yaml(&component(
            "cluster",
            "state.redis",
            &[
                ("redisHost", redis_cluster_nodes()),
                ("redisType", "cluster".into()),
            ],
        ))
        .yaml(&component(
            "sqlite",
            "state.sqlite",
            &sql.sqlite("query.db", &table.0),
        ))
        .yaml(&component("mysql", "state.mysql", &sql.mysql(&table.0)))
        .yaml(&component(
            "pg",
            "state.postgresql",
            &[
                ("connectionString", database_url()),
                ("tableName", table.0.clone()),
            ],
        ))
        .start()
        .await
}

fn corpus() -> Vec<(&'static str, Value)> {
    vec![
        (
            "u1",
            json!({"name": "ann", "age": 31, "addr": {"city": "Oslo"}, "score": 7.5}),
        ),
        (
            "u2",
            json!({"name": "bob", "age": 25, "addr": {"city": "Bergen"}, "score": 9}),
        ),
        (
            "u3",
            json!({"name": "cid", "age": 31, "addr": {"city": "Oslo"}, "score": 7.5}),
        ),
        (
            "u4",
            json!({"name": "dee", "age": "31", "addr": {"city": "Tromsø"}}),
        ),
        (
            "u5",
            json!({"name": "eve", "age": 40, "addr": {"city": "Bergen"}}),
        ),
    ]
}

fn queries() -> Vec<Value> {
    let sort = json!([{"key": "addr.city"}, {"key": "age", "order": "DESC"}]);
    vec![
        json!({}),
        json!({"filter": {"EQ": {"addr.city": "Oslo"}}}),
        json!({"filter": {"NEQ": {"addr.city": "Oslo"}}, "sort": [{"key": "name", "order": "DESC"}]}),
        json!({"filter": {"OR": [{"GT": {"age": 30}}, {"IN": {"name": ["bob"]}}]}}),
        json!({"filter": {"AND": [{"GTE": {"score": 7.5}}, {"LTE": {"age": 31}}]}}),
        json!({"filter": {"LT": {"age": 31}}}),
        json!({"filter": {"EQ": {"name": "nobody"}}}),
        json!({"sort": sort}),
        json!({"sort": [{"key": "age"}, {"key": "name", "order": "DESC"}]}),
    ]
}

/// Every page of `q` over HTTP: (keys and data of each page, receipt of the first).
async fn http_pages(
    m: &Mecha,
    store: &str,
    q: &Value,
) -> (Vec<Vec<(String, Value)>>, Option<String>) {
    let path = format!("/v1.0-alpha1/state/{store}/query");
    let mut pages = Vec::new();
    let mut receipt = None;
    let mut q = q.clone();
    loop {
        assert!(pages.len() < 10, "{store}: paging does not end");
        let r = m.post(&path, q.to_string()).await;
        if pages.is_empty() {
            receipt = receipt_of(&r);
        }
        if r.status() == 204 {
            pages.push(Vec::new());
            break;
        }
        assert_eq!(r.status(), 200, "{store} {q}");
        let v: Value = r.json().await.unwrap();
        let page = v["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                assert!(i["etag"].as_str().is_some_and(|e| !e.is_empty()), "{i}");
                (i["key"].as_str().unwrap().to_owned(), i["data"].clone())
            })
            .collect();
        pages.push(page);
        match v.get("token").and_then(Value::as_str) {
            Some(t) => q["page"]["token"] = json!(t),
            None => break,
        }
    }
    (pages, receipt)
}

/// The same over gRPC.
async fn grpc_pages(
    m: &Mecha,
    store: &str,
    q: &Value,
) -> (Vec<Vec<(String, Value)>>, Option<String>) {
    let mut client = m.grpc().await;
    let mut pages = Vec::new();
    let mut receipt = None;
    let mut q = q.clone();
    loop {
        assert!(pages.len() < 10, "{store}: paging does not end");
        let resp = client
            .query_state_alpha1(Request::new(QueryStateRequest {
                store_name: store.into(),
                query: q.to_string(),
                metadata: Default::default(),
            }))
            .await
            .unwrap_or_else(|e| panic!("{store} {q}: {e}"));
        if pages.is_empty() {
            receipt = grpc_receipt(resp.metadata());
        }
        let resp = resp.into_inner();
        pages.push(
            resp.results
                .iter()
                .map(|i| (i.key.clone(), serde_json::from_slice(&i.data).unwrap()))
                .collect(),
        );
        if resp.token.is_empty() {
            break;
        }
        q["page"]["token"] = json!(resp.token);
    }
    (pages, receipt)
}

/// Every query, whole and in pages of two, gives PostgreSQL's answer on every store and
/// over both doors; only the emulated answers carry the receipt, and another app's identical
/// keys never show.
#[actix_rt::test]
async fn every_store_answers_like_postgresql_over_both_doors() {
    let table = PgTable(unique("query_parity").replace('-', "_"), SqlScratch::new());
    let app = unique("qapp");
    let m = start(&app, &table, "{}").await;
    let other = start(&unique("qother"), &table, "{}").await;
    for store in STORES {
        for (k, v) in corpus() {
            m.save(store, k, v.clone()).await;
            other.save(store, &format!("{k}x"), v).await;
        }
    }
    for q in queries() {
        for paged in [q.clone(), {
            let mut p = q.clone();
            p["page"] = json!({"limit": 2});
            p
        }] {
            let (want, none) = http_pages(&m, "pg", &paged).await;
            assert_eq!(none, None, "native query has no receipt");
            for store in STORES {
                let (got, receipt) = http_pages(&m, store, &paged).await;
                assert_eq!(got, want, "{store} over HTTP: {paged}");
                let (got, grpc) = grpc_pages(&m, store, &paged).await;
                let want_grpc: Vec<_> = want.iter().filter(|p| !p.is_empty()).cloned().collect();
                let got: Vec<_> = got.into_iter().filter(|p| !p.is_empty()).collect();
                assert_eq!(got, want_grpc, "{store} over gRPC: {paged}");
                let emulated = (store != "pg").then(|| "query=emulated".to_owned());
                assert_eq!(receipt, emulated, "{store}");
                assert_eq!(grpc, emulated, "{store}");
            }
        }
    }
    let meta: Value = m.get("/v1.0/metadata").await.json().await.unwrap();
    for c in meta["components"].as_array().unwrap() {
        assert!(
            c["capabilities"]
                .as_array()
                .unwrap()
                .contains(&json!("QUERY_API")),
            "{c}"
        );
    }
}

/// A query that would scan more than `limits.maxQueryScan` keys fails with the client's
/// error naming the limit and the store, on both doors; a malformed query is a 400 on an
/// emulated store as on PostgreSQL.
#[actix_rt::test]
async fn over_the_scan_limit_and_malformed_queries_fail_cleanly() {
    let table = PgTable(unique("query_limit").replace('-', "_"), SqlScratch::new());
    let m = start(&unique("qlimit"), &table, "limits:\n  maxQueryScan: 4\n").await;
    for (k, v) in corpus() {
        m.save("mem", k, v.clone()).await;
        m.save("pg", k, v).await;
    }
    let (status, code, msg, _) = error_of(
        m.post("/v1.0-alpha1/state/mem/query", r#"{"page":{"limit":1}}"#)
            .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (400, "ERR_STATE_QUERY"));
    assert!(
        msg.starts_with("state store mem query failed: the query would examine more than 4 items")
            && msg.contains("limits.maxQueryScan"),
        "{msg}"
    );
    let st = m
        .grpc()
        .await
        .query_state_alpha1(Request::new(QueryStateRequest {
            store_name: "mem".into(),
            query: "{}".into(),
            metadata: Default::default(),
        }))
        .await
        .unwrap_err();
    assert_eq!(st.code(), tonic::Code::InvalidArgument);
    assert!(
        st.message().contains("limits.maxQueryScan"),
        "{}",
        st.message()
    );
    // Native query has no scan limit.
    let r = m.post("/v1.0-alpha1/state/pg/query", "{}").await;
    assert_eq!(r.status(), 200);
    for store in ["mem", "pg"] {
        let (status, code, msg, _) = error_of(
            m.post(
                &format!("/v1.0-alpha1/state/{store}/query"),
                r#"{"filter":{"LIKE":{"a":1}}}"#,
            )
            .await,
        )
        .await;
        assert_eq!((status, code.as_str()), (400, "ERR_STATE_QUERY"), "{store}");
        assert_eq!(
            msg,
            format!(
                r#"state store {store} query failed: failed to parse JSON query body: unsupported filter "LIKE""#
            )
        );
        let st = m
            .grpc()
            .await
            .query_state_alpha1(Request::new(QueryStateRequest {
                store_name: store.into(),
                query: r#"{"page":{"token":"not-a-token","limit":1}}"#.into(),
                metadata: Default::default(),
            }))
            .await
            .unwrap_err();
        assert_eq!(st.code(), tonic::Code::InvalidArgument, "{store}");
        assert!(
            st.message().contains("invalid page token"),
            "{}",
            st.message()
        );
    }
}

/// An item whose TTL ran out is never returned, over either door, on every store.
#[actix_rt::test]
async fn expired_items_are_never_returned() {
    let table = PgTable(unique("query_ttl").replace('-', "_"), SqlScratch::new());
    let m = start(&unique("qttl"), &table, "{}").await;
    let q = r#"{"filter":{"EQ":{"t":1}}}"#;
    for store in STORES {
        let body = json!([
            {"key": "short", "value": {"t": 1}, "metadata": {"ttlInSeconds": "1"}},
            {"key": "long", "value": {"t": 1}}
        ]);
        let r = m.post_json(&format!("/v1.0/state/{store}"), body).await;
        assert_eq!(r.status(), 204, "{store}");
        let (pages, _) = http_pages(&m, store, &serde_json::from_str(q).unwrap()).await;
        let keys: Vec<&str> = pages[0].iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["long", "short"], "{store}");
    }
    tokio::time::sleep(std::time::Duration::from_millis(2600)).await;
    for store in STORES {
        let (pages, _) = http_pages(&m, store, &serde_json::from_str(q).unwrap()).await;
        let keys: Vec<&str> = pages[0].iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["long"], "{store} over HTTP");
        let (pages, _) = grpc_pages(&m, store, &serde_json::from_str(q).unwrap()).await;
        let keys: Vec<&str> = pages[0].iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["long"], "{store} over gRPC");
    }
}
