//! PostgreSQL-specific behaviour against a real server (`DATABASE_URL`, default the local one
//! `scripts/test.sh` starts): schema migration, cleanup, component validation, the query API
//! over HTTP, and failure and recovery through a TCP proxy the test controls. Each test uses
//! its own table and drops it afterwards. An unreachable server fails the tests.

use crate::support;
use crate::support::services::{database_url, drop_pg_table};

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mecha::actors::{StateStore, StoreError, StoreFactory};
use mecha::config::parse_components;
use mecha::model::{
    Concurrency, Consistency, DeleteRequest, GetRequest, Metadata, QueryRequest, SetRequest,
    StateOptions, TransactionOp, TransactionRequest, Ttl,
};
use parking_lot::Mutex;
use support::{TestMecha, error_of};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// A table name unique to one test; dropped (with its sequence and metadata rows) on drop.
struct Table(String);

impl Table {
    fn new() -> Table {
        Table(format!("pgt_{:016x}", rand::random::<u64>()))
    }
}

impl Drop for Table {
    fn drop(&mut self) {
        drop_pg_table(&self.0);
    }
}

/// A plain connection for checking what the store wrote.
async fn sql_client() -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(&database_url(), tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    Ok(client)
}

fn component_yaml(name: &str, metadata: &[(&str, &str)]) -> String {
    let mut yaml = format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n  type: state.postgresql\n  version: v1\n  metadata:\n"
    );
    for (k, v) in metadata {
        yaml.push_str(&format!(
            "  - name: {k}\n    value: {}\n",
            serde_json::to_string(v).unwrap()
        ));
    }
    yaml
}

fn factory(metadata: &[(&str, &str)]) -> Result<Arc<dyn StoreFactory>, String> {
    let yaml = component_yaml("pg", metadata);
    parse_components(&[(Path::new("pg.yaml"), &yaml)], &|_| None)
        .map(|(c, _)| c[0].factory.clone())
        .map_err(|e| format!("{e:?}"))
}

fn store(table: &Table, extra: &[(&str, &str)]) -> Arc<dyn StateStore> {
    let url = database_url();
    let mut md = vec![
        ("connectionString", url.as_str()),
        ("tableName", table.0.as_str()),
    ];
    md.extend_from_slice(extra);
    factory(&md)
        .expect("valid component")
        .create()
        .expect("store")
}

fn set(key: &str, value: &[u8]) -> SetRequest {
    SetRequest {
        key: key.into(),
        value: Bytes::copy_from_slice(value),
        etag: None,
        options: StateOptions::default(),
        ttl: None,
        metadata: Metadata::new(),
    }
}

fn get(key: &str) -> GetRequest {
    GetRequest {
        key: key.into(),
        consistency: Consistency::Unspecified,
        metadata: Metadata::new(),
    }
}

fn del(key: &str, etag: Option<String>) -> DeleteRequest {
    DeleteRequest {
        key: key.into(),
        etag,
        options: StateOptions::default(),
        metadata: Metadata::new(),
    }
}

async fn value(s: &Arc<dyn StateStore>, key: &str) -> Option<Bytes> {
    s.get(get(key)).await.unwrap().map(|e| e.data)
}

// === component validation ===

#[test]
fn component_metadata_is_validated() {
    let url = database_url();
    let ok: &[&[(&str, &str)]] = &[
        &[("connectionString", &url)],
        &[
            (
                "connectionString",
                "host=127.0.0.1 user=postgres dbname=test",
            ),
            ("tableName", "public.State_1"),
        ],
        &[
            ("connectionString", &url),
            ("cleanupInterval", "-1"),
            ("timeout", "5s"),
        ],
        &[
            ("connectionString", &url),
            ("cleanupIntervalInSeconds", "0"),
            ("timeoutInSeconds", "3"),
        ],
        &[
            ("connectionString", &url),
            ("maxConns", "2"),
            ("connectionMaxIdleTime", "30s"),
            ("pipelineConnections", "0"),
        ],
        &[("connectionString", &url), ("pipelineConnections", "8")],
    ];
    for md in ok {
        assert!(factory(md).is_ok(), "{md:?}: {:?}", factory(md).err());
    }
    let bad: &[(&[(&str, &str)], &str)] = &[
        (&[], "connectionString"),
        (
            &[("connectionString", "postgres://x:y@h/db?bogus_option=1")],
            "not a valid PostgreSQL connection string",
        ),
        (
            &[
                ("connectionString", &url),
                ("tableName", "state; DROP TABLE x"),
            ],
            "not a valid table name",
        ),
        (
            &[("connectionString", &url), ("tableName", "\"state\"")],
            "not a valid table name",
        ),
        (
            &[("connectionString", &url), ("tableName", "a.b.c")],
            "schema.table",
        ),
        (
            &[("connectionString", &url), ("tableName", "1state")],
            "not a valid table name",
        ),
        (
            &[
                ("connectionString", &url),
                ("metadataTableName", "meta-data"),
            ],
            "metadataTableName",
        ),
        (
            &[
                ("connectionString", &url),
                ("tableName", "x"),
                ("metadataTableName", "X"),
            ],
            "must differ",
        ),
        (
            &[("connectionString", &url), ("cleanupInterval", "often")],
            "cleanupInterval",
        ),
        (&[("connectionString", &url), ("maxConns", "0")], "maxConns"),
        (
            &[("connectionString", &url), ("pipelineConnections", "-1")],
            "pipelineConnections",
        ),
        (
            &[("connectionString", &url), ("pipelineConnections", "65")],
            "pipelineConnections",
        ),
        (&[("connectionString", &url), ("timeout", "0s")], "timeout"),
    ];
    for (md, want) in bad {
        let e = factory(md)
            .err()
            .unwrap_or_else(|| panic!("{md:?} accepted"));
        assert!(e.contains(want), "{md:?}: {e}");
        assert!(!e.contains("x:y@"), "the connection string leaked: {e}");
    }
}

#[test]
fn type_aliases_and_versions_are_accepted() {
    let url = database_url();
    for (ty, version) in [
        ("state.postgresql", "v1"),
        ("state.postgres", "v1"),
        ("state.postgresql", "v2"),
    ] {
        let yaml = format!(
            "kind: Component\nmetadata:\n  name: s\nspec:\n  type: {ty}\n  version: {version}\n  metadata:\n  - name: connectionString\n    value: {url}\n"
        );
        let r = parse_components(&[(Path::new("s.yaml"), &yaml)], &|_| None);
        assert!(r.is_ok(), "{ty} {version}: {:?}", r.err());
    }
    let yaml = format!(
        "kind: Component\nmetadata:\n  name: s\nspec:\n  type: state.postgresql\n  version: v3\n  metadata:\n  - name: connectionString\n    value: {url}\n"
    );
    assert!(parse_components(&[(Path::new("s.yaml"), &yaml)], &|_| None).is_err());
}

#[test]
fn the_example_component_file_loads() {
    let text = std::fs::read_to_string("config/examples/statestore-postgresql.yaml").unwrap();
    let env = |k: &str| (k == "DATABASE_URL").then(database_url);
    let (c, warnings) = parse_components(&[(Path::new("statestore-postgresql.yaml"), &text)], &env)
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(c[0].component_type, "state.postgresql");
    assert!(warnings.is_empty(), "{warnings:?}");
}

// === schema ===

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn creation_does_not_connect() {
    // Nothing listens on port 1: building and creating must still succeed.
    let f = factory(&[("connectionString", "postgres://postgres@127.0.0.1:1/test")]).unwrap();
    let s = f.create().unwrap();
    let started = Instant::now();
    let r = s.get(get("k")).await;
    assert!(
        matches!(r, Err(StoreError::NotSent(ref m)) if m.contains("refused")),
        "{r:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_first_use_migrates_once_and_records_the_version() {
    let table = Table::new();
    // Eight independent "instances" (own pools) start on the same new table at once.
    let stores: Vec<_> = (0..8).map(|_| store(&table, &[])).collect();
    let mut joins = Vec::new();
    for (i, s) in stores.into_iter().enumerate() {
        joins.push(tokio::spawn(async move {
            s.set(set(&format!("k{i}"), b"1")).await
        }));
    }
    for j in joins {
        j.await.unwrap().expect("every instance works");
    }
    let c = sql_client().await.unwrap();
    let row = c
        .query_one(
            "SELECT value FROM dapr_metadata WHERE key = $1",
            &[&format!("mecha-schema-version:{}", table.0)],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "1");
    let n: i64 = c
        .query_one(&format!("SELECT count(*) FROM \"{}\"", table.0), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 8);
    // A restart finds the schema and leaves the data alone.
    let again = store(&table, &[]);
    assert_eq!(value(&again, "k3").await.as_deref(), Some(&b"1"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_table_is_refused_clearly() {
    let table = Table::new();
    let c = sql_client().await.unwrap();
    c.batch_execute(&format!(
        "CREATE TABLE \"{}\" (key text PRIMARY KEY, value jsonb)",
        table.0
    ))
    .await
    .unwrap();
    let s = store(&table, &[]);
    let e = s.get(get("k")).await.unwrap_err().to_string();
    assert!(e.contains("is not a Mecha state table"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_schema_version_is_refused() {
    let table = Table::new();
    let s = store(&table, &[]);
    s.ping().await.unwrap();
    let c = sql_client().await.unwrap();
    c.execute(
        "UPDATE dapr_metadata SET value = '99' WHERE key = $1",
        &[&format!("mecha-schema-version:{}", table.0)],
    )
    .await
    .unwrap();
    let e = store(&table, &[]).ping().await.unwrap_err().to_string();
    assert!(e.contains("schema version 99"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_round_trip_and_json_is_indexed_only_when_valid() {
    let table = Table::new();
    let s = store(&table, &[]);
    let cases: &[(&str, &[u8], bool)] = &[
        ("obj", br#"{"a":1}"#, true),
        ("str", br#""text""#, true),
        ("nul", br#"{"a":"x\u0000y"}"#, false),
        ("surrogate", br#""\ud800""#, false),
        ("huge", b"1e999999", false),
        ("bin", &[0, 159, 146, 150, 255], false),
        ("empty", b"", false),
        ("notjson", b"hello", false),
    ];
    for (k, v, _) in cases {
        s.set(set(k, v))
            .await
            .unwrap_or_else(|e| panic!("{k}: {e}"));
        assert_eq!(value(&s, k).await.as_deref(), Some(*v), "{k}");
    }
    let c = sql_client().await.unwrap();
    for (k, _, json) in cases {
        let row = c
            .query_one(
                &format!(
                    "SELECT value_json IS NOT NULL FROM \"{}\" WHERE key = $1",
                    table.0
                ),
                &[k],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, bool>(0), *json, "{k}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etags_never_repeat_across_delete_and_recreate() {
    let table = Table::new();
    let s = store(&table, &[]);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..5 {
        s.set(set("k", b"1")).await.unwrap();
        let e = s.get(get("k")).await.unwrap().unwrap().etag.unwrap();
        assert!(e.parse::<i64>().is_ok(), "decimal etag {e}");
        assert!(seen.insert(e.clone()), "etag {e} repeated");
        s.delete(del("k", None)).await.unwrap();
        let mut stale = set("k", b"2");
        stale.etag = Some(e);
        assert!(matches!(
            s.set(stale).await,
            Err(StoreError::EtagMismatch(_))
        ));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_rows_count_as_absent_and_cleanup_deletes_them() {
    let table = Table::new();
    let s = store(&table, &[("cleanupInterval", "1s")]);
    assert_eq!(s.housekeeping_interval(), Some(Duration::from_secs(1)));
    for k in ["a", "b", "c"] {
        let mut r = set(k, b"1");
        r.ttl = Some(Ttl::Seconds(1));
        s.set(r).await.unwrap();
    }
    s.set(set("keep", b"1")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1300)).await;
    // Expired but not yet deleted: invisible, and a first-write may create the key again.
    assert_eq!(value(&s, "a").await, None);
    let mut fw = set("a", b"2");
    fw.options.concurrency = Concurrency::FirstWrite;
    s.set(fw).await.unwrap();
    assert_eq!(value(&s, "a").await.as_deref(), Some(&b"2"[..]));
    let mut guarded = set("b", b"2");
    guarded.etag = Some("1".into());
    assert!(matches!(
        s.set(guarded).await,
        Err(StoreError::EtagMismatch(_))
    ));

    s.housekeeping().await;
    let c = sql_client().await.unwrap();
    let keys: Vec<String> = c
        .query(
            &format!("SELECT key FROM \"{}\" ORDER BY key", table.0),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(keys, ["a", "keep"]);
    // A second sweep within the interval is skipped (claimed in the metadata table).
    let claimed: String = c
        .query_one(
            "SELECT value FROM dapr_metadata WHERE key = $1",
            &[&format!("mecha-last-cleanup:{}", table.0)],
        )
        .await
        .unwrap()
        .get(0);
    s.housekeeping().await;
    let again: String = c
        .query_one(
            "SELECT value FROM dapr_metadata WHERE key = $1",
            &[&format!("mecha-last-cleanup:{}", table.0)],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(claimed, again);

    let off = store(&table, &[("cleanupInterval", "0")]);
    assert_eq!(off.housekeeping_interval(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_writes_apply_repeated_keys_in_order() {
    let table = Table::new();
    let s = store(&table, &[]);
    s.set(set("x", b"0")).await.unwrap();
    let e0 = s.get(get("x")).await.unwrap().unwrap().etag.unwrap();
    let mut guarded = set("x", b"2");
    guarded.etag = Some(e0.clone());
    let mut first = set("y", b"1");
    first.options.concurrency = Concurrency::FirstWrite;
    let mut first_again = set("y", b"2");
    first_again.options.concurrency = Concurrency::FirstWrite;
    let mut bad = set("z", b"1");
    bad.etag = Some("not-a-number".into());
    let results = s
        .bulk_set(vec![
            set("x", b"1"),
            guarded,
            first,
            first_again,
            bad,
            set("w", b"1"),
        ])
        .await;
    assert!(results[0].is_ok());
    // The plain write of x ran first, so the guarded one saw a new version.
    assert!(
        matches!(results[1], Err(StoreError::EtagMismatch(_))),
        "{results:?}"
    );
    assert!(results[2].is_ok());
    assert!(
        matches!(results[3], Err(StoreError::EtagMismatch(_))),
        "{results:?}"
    );
    assert!(
        matches!(results[4], Err(StoreError::EtagInvalid(_))),
        "{results:?}"
    );
    assert!(results[5].is_ok());
    assert_eq!(value(&s, "x").await.as_deref(), Some(&b"1"[..]));
    assert_eq!(value(&s, "y").await.as_deref(), Some(&b"1"[..]));

    let ex = s.get(get("x")).await.unwrap().unwrap().etag;
    let results = s
        .bulk_delete(vec![
            del("x", ex.clone()),
            del("x", ex),
            del("w", None),
            del("nope", None),
        ])
        .await;
    assert!(results[0].is_ok());
    assert!(
        matches!(results[1], Err(StoreError::EtagMismatch(_))),
        "{results:?}"
    );
    assert!(results[2].is_ok() && results[3].is_ok());
    assert_eq!(value(&s, "x").await, None);

    // A large batch goes through in one statement per round.
    let many: Vec<SetRequest> = (0..500)
        .map(|i| set(&format!("m{i}"), i.to_string().as_bytes()))
        .collect();
    assert!(s.bulk_set(many).await.iter().all(Result::is_ok));
    let got = s
        .bulk_get((0..500).map(|i| get(&format!("m{i}"))).collect(), 1)
        .await;
    for (i, r) in got.into_iter().enumerate() {
        assert_eq!(r.unwrap().unwrap().data, i.to_string());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_transaction_commits_atomically_in_order() {
    let table = Table::new();
    let s = store(&table, &[]);
    let mut ops: Vec<TransactionOp> = (0..200)
        .map(|i| TransactionOp::Upsert(set(&format!("t{}", i % 50), i.to_string().as_bytes())))
        .collect();
    ops.push(TransactionOp::Delete(del("t0", None)));
    s.transact(TransactionRequest {
        operations: ops,
        metadata: Metadata::new(),
    })
    .await
    .unwrap();
    assert_eq!(value(&s, "t0").await, None);
    assert_eq!(value(&s, "t1").await.as_deref(), Some(&b"151"[..]));
    assert_eq!(value(&s, "t49").await.as_deref(), Some(&b"199"[..]));

    let mut fw = set("t1", b"x");
    fw.options.concurrency = Concurrency::FirstWrite;
    let ops = vec![
        TransactionOp::Upsert(set("new", b"1")),
        TransactionOp::Upsert(fw),
    ];
    let r = s
        .transact(TransactionRequest {
            operations: ops,
            metadata: Metadata::new(),
        })
        .await;
    assert!(matches!(r, Err(StoreError::EtagMismatch(_))), "{r:?}");
    assert_eq!(value(&s, "new").await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_paths_and_values_are_data_not_sql() {
    let table = Table::new();
    let s = store(&table, &[]);
    s.set(set(
        "a||1",
        br#"{"x'); DROP TABLE y; --":1,"n":{"m":[5,6]}}"#,
    ))
    .await
    .unwrap();
    s.set(set("a||2", br#"{"status":"on"}"#)).await.unwrap();
    let q = |text: &str| QueryRequest {
        query: text.into(),
        metadata: Metadata::new(),
        key_prefix: "a||".into(),
    };
    let r = s
        .query(q(r#"{"filter":{"EQ":{"x'); DROP TABLE y; --":1}}}"#))
        .await
        .unwrap();
    assert_eq!(r.results.len(), 1);
    let r = s
        .query(q(r#"{"filter":{"EQ":{"n.m.1":6}}}"#))
        .await
        .unwrap();
    assert_eq!(r.results.len(), 1, "array elements are reachable by index");
    let r = s
        .query(q(r#"{"filter":{"EQ":{"status":"'; DELETE FROM x; --"}}}"#))
        .await
        .unwrap();
    assert!(r.results.is_empty());
    // NEQ, like every comparison, never matches a row without the field.
    let r = s
        .query(q(r#"{"filter":{"NEQ":{"status":"off"}}}"#))
        .await
        .unwrap();
    assert_eq!(
        r.results.iter().map(|i| i.key.as_str()).collect::<Vec<_>>(),
        ["a||2"]
    );
    assert_eq!(
        value(&s, "a||2").await.as_deref(),
        Some(&br#"{"status":"on"}"#[..])
    );
}

// === over HTTP ===

fn mecha_component(name: &str, table: &Table, url: &str) -> String {
    component_yaml(name, &[("connectionString", url), ("tableName", &table.0)])
}

#[actix_rt::test]
async fn query_over_http() {
    let table = Table::new();
    let url = database_url();
    let m = TestMecha::empty()
        .app_id("app1")
        .yaml(&mecha_component("pg", &table, &url))
        .start()
        .await;
    let other = TestMecha::empty()
        .app_id("app2")
        .yaml(&mecha_component("pg", &table, &url))
        .start()
        .await;
    for (i, city) in ["Seattle", "Portland", "Seattle", "Austin"]
        .iter()
        .enumerate()
    {
        m.save(
            "pg",
            &format!("p{i}"),
            serde_json::json!({"city": city, "n": i}),
        )
        .await;
        other
            .save(
                "pg",
                &format!("q{i}"),
                serde_json::json!({"city": city, "n": i}),
            )
            .await;
    }
    let path = "/v1.0-alpha1/state/pg/query";
    let body = r#"{"filter":{"EQ":{"city":"Seattle"}},"sort":[{"key":"n","order":"DESC"}],"page":{"limit":1}}"#;
    let r = m.post(path, body).await;
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["results"][0]["key"], "p2", "{v}");
    assert_eq!(
        v["results"][0]["data"],
        serde_json::json!({"city": "Seattle", "n": 2})
    );
    assert!(
        v["results"][0]["etag"]
            .as_str()
            .is_some_and(|e| e.parse::<i64>().is_ok())
    );
    let token = v["token"].as_str().expect("a next-page token").to_owned();
    let body = format!(
        r#"{{"filter":{{"EQ":{{"city":"Seattle"}}}},"sort":[{{"key":"n","order":"DESC"}}],"page":{{"limit":1,"token":"{token}"}}}}"#
    );
    let v: serde_json::Value = m.post(path, body).await.json().await.unwrap();
    assert_eq!(v["results"][0]["key"], "p0", "{v}");
    assert!(v.get("token").is_none(), "last page has no token: {v}");

    // The other app's identical rows are invisible; no match is 204.
    let v: serde_json::Value = m
        .post(path, r#"{"filter":{"EQ":{"city":"Austin"}}}"#)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["results"].as_array().unwrap().len(), 1, "{v}");
    let r = m.post(path, r#"{"filter":{"EQ":{"city":"Paris"}}}"#).await;
    assert_eq!(r.status(), 204);
    assert!(r.bytes().await.unwrap().is_empty());

    let (status, code, message, _) =
        error_of(m.post(path, r#"{"filter":{"LIKE":{"a":1}}}"#).await).await;
    // A query that does not parse is the client's error: 400 (daprd: 500), daprd's code.
    assert_eq!((status, code.as_str()), (400, "ERR_STATE_QUERY"));
    assert_eq!(
        message,
        r#"state store pg query failed: failed to parse JSON query body: unsupported filter "LIKE""#
    );

    let meta: serde_json::Value = m.get("/v1.0/metadata").await.json().await.unwrap();
    let caps = &meta["components"][0]["capabilities"];
    for c in ["ETAG", "TRANSACTIONAL", "QUERY_API", "TTL", "ACTOR"] {
        assert!(
            caps.as_array().unwrap().contains(&serde_json::json!(c)),
            "{c} missing from {caps}"
        );
    }
}

/// The same query through the gRPC door: results, an empty answer, and a query error.
#[actix_rt::test]
async fn query_over_grpc() {
    use mecha::gateway::grpc::proto::runtime::QueryStateRequest;
    use mecha::gateway::grpc::proto::runtime::dapr_client::DaprClient;
    use tonic_types::StatusExt;

    let table = Table::new();
    let m = TestMecha::empty()
        .app_id("grpcapp")
        .yaml(&mecha_component("pg", &table, &database_url()))
        .start()
        .await;
    for (i, kind) in ["a", "b", "a"].iter().enumerate() {
        m.save(
            "pg",
            &format!("g{i}"),
            serde_json::json!({"kind": kind, "n": i}),
        )
        .await;
    }
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", m.running.grpc_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = DaprClient::new(channel);
    let query = |q: &str| QueryStateRequest {
        store_name: "pg".into(),
        query: q.into(),
        metadata: Default::default(),
    };
    let resp = client
        .query_state_alpha1(query(
            r#"{"filter":{"EQ":{"kind":"a"}},"sort":[{"key":"n"}]}"#,
        ))
        .await
        .unwrap()
        .into_inner();
    let keys: Vec<&str> = resp.results.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, ["g0", "g2"]);
    let data: serde_json::Value = serde_json::from_slice(&resp.results[1].data).unwrap();
    assert_eq!(data, serde_json::json!({"kind": "a", "n": 2}));
    assert!(!resp.results[0].etag.is_empty());

    let empty = client
        .query_state_alpha1(query(r#"{"filter":{"EQ":{"kind":"z"}}}"#))
        .await
        .unwrap()
        .into_inner();
    assert!(empty.results.is_empty() && empty.token.is_empty());

    let st = client
        .query_state_alpha1(query(r#"{"filter":{"EQ":{}}}"#))
        .await
        .unwrap_err();
    // An invalid filter is the client's error (daprd: Internal).
    assert_eq!(st.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        st.get_details_error_info().unwrap().reason,
        "DAPR_STATE_QUERY_FAILED"
    );
    assert!(
        st.message().starts_with("state store pg query failed: "),
        "{}",
        st.message()
    );
}

// === failure and recovery ===

/// A TCP proxy to PostgreSQL that a test can cut (closing every connection) and restore on
/// the same port, or turn into a black hole that accepts and never answers.
struct Proxy {
    addr: SocketAddr,
    tasks: Arc<Mutex<Vec<AbortHandle>>>,
    freeze: Arc<tokio::sync::Notify>,
}

impl Proxy {
    async fn start() -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = Proxy {
            addr: listener.local_addr().unwrap(),
            tasks: Arc::default(),
            freeze: Arc::default(),
        };
        proxy.serve(listener, true);
        proxy
    }

    fn serve(&self, listener: TcpListener, forward: bool) {
        let tasks = self.tasks.clone();
        let freeze = self.freeze.clone();
        let accept = tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if !forward {
                    held.push(inbound);
                    continue;
                }
                let freeze = freeze.clone();
                let conn = tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect("127.0.0.1:5432").await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        // Frozen: both sockets stay open and silent, like a dead peer.
                        _ = freeze.notified() => std::future::pending::<()>().await,
                    }
                });
                tasks.lock().push(conn.abort_handle());
            }
        });
        self.tasks.lock().push(accept.abort_handle());
    }

    /// Stops forwarding on every open connection without closing it; new ones still work.
    fn freeze(&self) {
        self.freeze.notify_waiters();
    }

    /// Closes the listener and every proxied connection.
    fn cut(&self) {
        for t in self.tasks.lock().drain(..) {
            t.abort();
        }
    }

    async fn rebind(&self, forward: bool) {
        self.cut();
        // The aborted listener is dropped on the runtime's next turn; retry until the port is free.
        for _ in 0..50 {
            if let Ok(l) = TcpListener::bind(self.addr).await {
                self.serve(l, forward);
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("cannot rebind {}", self.addr);
    }
}

/// `DATABASE_URL`'s credentials and database, reached through `addr`.
fn via(addr: SocketAddr) -> String {
    let cfg: tokio_postgres::Config = database_url().parse().unwrap();
    let mut out = format!("host={} port={}", addr.ip(), addr.port());
    if let Some(u) = cfg.get_user() {
        out.push_str(&format!(" user={u}"));
    }
    if let Some(p) = cfg.get_password() {
        out.push_str(&format!(" password={}", String::from_utf8_lossy(p)));
    }
    if let Some(d) = cfg.get_dbname() {
        out.push_str(&format!(" dbname={d}"));
    }
    out
}

#[actix_rt::test]
async fn database_outage_fails_fast_and_recovers_without_restart() {
    // The proxy forwards to 5432 only; make sure the server really is there.
    assert!(
        TcpStream::connect("127.0.0.1:5432").await.is_ok(),
        "PostgreSQL must listen on 127.0.0.1:5432"
    );
    let table = Table::new();
    let proxy = Proxy::start().await;
    let m = TestMecha::empty()
        .yaml(&mecha_component("pg", &table, &via(proxy.addr)))
        .start()
        .await;
    m.save("pg", "k", serde_json::json!("v")).await;

    // Down: connections cut and refused. Each call fails fast with a clear 500.
    proxy.cut();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let checks: [(&str, &str, Option<&str>, &str); 3] = [
        ("GET", "/v1.0/state/pg/k", None, "ERR_STATE_GET"),
        (
            "POST",
            "/v1.0/state/pg",
            Some(r#"[{"key":"k","value":"w"}]"#),
            "ERR_STATE_SAVE",
        ),
        (
            "POST",
            "/v1.0-alpha1/state/pg/query",
            Some("{}"),
            "ERR_STATE_QUERY",
        ),
    ];
    for (method, path, body, want) in checks {
        let started = Instant::now();
        let r = match body {
            Some(b) => m.post(path, b.to_owned()).await,
            None => m.get(path).await,
        };
        let (status, code, message, _) = error_of(r).await;
        assert_eq!(
            (status, code.as_str()),
            (500, want),
            "{method} {path}: {message}"
        );
        assert!(
            message.contains("PostgreSQL") || message.contains("unavailable"),
            "{message}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{method} {path} took {:?}",
            started.elapsed()
        );
    }

    // Up again on the same address: the next calls succeed, with no restart of Mecha.
    proxy.rebind(true).await;
    let r = m.get("/v1.0/state/pg/k").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "\"v\"");
    m.save("pg", "k2", serde_json::json!(1)).await;

    // A black hole (accepts, never answers): still a clear 500 inside the request deadline.
    proxy.rebind(false).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let (status, code, message, _) = error_of(m.get("/v1.0/state/pg/k").await).await;
    assert_eq!((status, code.as_str()), (500, "ERR_STATE_GET"), "{message}");
    assert!(message.contains("timed out connecting"), "{message}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );

    proxy.rebind(true).await;
    let r = m.get("/v1.0/state/pg/k2").await;
    assert_eq!(r.status(), 200);
    proxy.cut();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_connection_times_out_and_is_replaced() {
    // Pinned to one connection of each kind, so the call after the freeze is sure to land on
    // the hung one: the shared pipelining connection, then (with pipelining off) the only
    // pooled connection.
    for pipeline in ["1", "0"] {
        let table = Table::new();
        let proxy = Proxy::start().await;
        let url = via(proxy.addr);
        let s = factory(&[
            ("connectionString", url.as_str()),
            ("tableName", table.0.as_str()),
            ("timeout", "1s"),
            ("maxConns", "1"),
            ("pipelineConnections", pipeline),
        ])
        .unwrap()
        .create()
        .unwrap();
        s.set(set("k", b"1")).await.unwrap();
        proxy.freeze();
        let started = Instant::now();
        let r = s.get(get("k")).await;
        assert_eq!(
            r,
            Err(StoreError::Timeout(Duration::from_secs(1))),
            "pipelineConnections {pipeline}"
        );
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "{:?}",
            started.elapsed()
        );
        // The connection hung; it must have been dropped, not reused.
        assert_eq!(value(&s, "k").await.as_deref(), Some(&b"1"[..]));
        s.set(set("k", b"2")).await.unwrap();
        assert_eq!(value(&s, "k").await.as_deref(), Some(&b"2"[..]));
        proxy.cut();
    }
}

/// Connections to the server whose application_name is `app`: (total, waiting on a lock).
async fn connections_of(c: &tokio_postgres::Client, app: &str) -> (i64, i64) {
    let row = c
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE wait_event_type = 'Lock') \
             FROM pg_stat_activity WHERE application_name = $1",
            &[&app],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_gets_pipeline_on_a_shared_connection_beside_a_busy_pool() {
    let table = Table::new();
    let app = format!("mecha_{}", table.0);
    let base = database_url();
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}application_name={app}");
    let s = factory(&[
        ("connectionString", url.as_str()),
        ("tableName", table.0.as_str()),
        ("timeout", "10s"),
        ("maxConns", "1"),
        ("pipelineConnections", "1"),
    ])
    .unwrap()
    .create()
    .unwrap();
    for i in 0..50 {
        s.set(set(&format!("k{i}"), i.to_string().as_bytes()))
            .await
            .unwrap();
    }

    // Exhaust the pool: the only pooled connection runs a transaction blocked on a row lock
    // that this test holds.
    let mut locker = sql_client().await.unwrap();
    let lock = locker.transaction().await.unwrap();
    lock.execute(
        &format!("SELECT 1 FROM {} WHERE key = 'k0' FOR UPDATE", table.0),
        &[],
    )
    .await
    .unwrap();
    let tx_store = s.clone();
    let tx = tokio::spawn(async move {
        tx_store
            .transact(TransactionRequest {
                operations: vec![TransactionOp::Upsert(set("k0", b"tx"))],
                metadata: Metadata::new(),
            })
            .await
    });
    let observer = sql_client().await.unwrap();
    let started = Instant::now();
    while connections_of(&observer, &app).await.1 < 1 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the transaction never blocked"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // 200 concurrent gets on this one instance all complete while the pool has nothing free.
    let started = Instant::now();
    let gets = futures::future::join_all((0..200).map(|i| s.get(get(&format!("k{}", i % 50)))));
    let results = tokio::time::timeout(Duration::from_secs(3), gets)
        .await
        .expect("gets must not wait for the pool");
    for (i, r) in results.into_iter().enumerate() {
        let want = if i % 50 == 0 {
            "0".to_owned()
        } else {
            (i % 50).to_string()
        };
        assert_eq!(r.unwrap().unwrap().data, Bytes::from(want), "get {i}");
    }
    assert!(started.elapsed() < Duration::from_secs(3));
    // Served by exactly one more server connection than the pool's one: the shared one.
    assert_eq!(connections_of(&observer, &app).await, (2, 1));
    assert!(!tx.is_finished());

    lock.commit().await.unwrap();
    tx.await.unwrap().unwrap();
    assert_eq!(value(&s, "k0").await.as_deref(), Some(&b"tx"[..]));
}
