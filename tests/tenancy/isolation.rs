//! Tenant isolation: what one app can see of or do to another through a shared Mecha.
//! Per-app extended metadata with limits, metadata listing only the app's own stores, health
//! answers without backend text, NUL keys refused on every store, unparseable queries,
//! daprd's `DAPR_API_TOKEN`, token files that rotate, the `/metrics` token, and quotas.
//! Redis and PostgreSQL tests use the servers `scripts/test.sh` starts and fail without them.

use crate::support;
use crate::support::services::{
    database_url, delete_kv_bucket, drop_pg_table, nats_url, redis_url,
};

use std::time::{Duration, Instant};

use mecha::gateway::grpc::proto::common::StateItem;
use mecha::gateway::grpc::proto::runtime::{
    GetMetadataRequest, GetStateRequest, SaveStateRequest, SetMetadataRequest,
};
use serde_json::{Value, json};
use support::sql::SqlScratch;
use support::{Mecha, TestMecha, error_of, unique};

const TWO_APPS: &str =
    "apps:\n  - id: alpha\n    token: tok-alpha\n  - id: beta\n    token: tok-beta\n";

fn scoped(name: &str, scope: &str) -> String {
    format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n  type: state.in-memory\n  version: v1\nscopes:\n  - {scope}\n"
    )
}

fn redis_component(name: &str, host: &str) -> String {
    format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n  type: state.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    value: \"{host}\"\n  - name: dialTimeout\n    value: 200ms\n"
    )
}

fn jetstream_component(name: &str, bucket: &str) -> String {
    format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n  type: state.jetstream\n  version: v1\n  metadata:\n  - name: natsURL\n    value: \"{}\"\n  - name: bucket\n    value: {bucket}\n",
        nats_url()
    )
}

/// A SQLite or MySQL store with `metadata` from `support::sql`.
fn sql_component(name: &str, ty: &str, metadata: &[(&str, String)]) -> String {
    format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n  type: {ty}\n  version: v1\n  metadata:\n{}",
        SqlScratch::lines(metadata)
    )
}

fn pg_component(name: &str, table: &str) -> String {
    format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n  type: state.postgresql\n  version: v1\n  metadata:\n  - name: connectionString\n    value: \"{}\"\n  - name: tableName\n    value: {table}\n",
        database_url()
    )
}

async fn send(
    m: &Mecha,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> reqwest::Response {
    let mut b = m.client.request(method, m.url(path)).body(body.to_owned());
    if let Some(t) = token {
        b = b.header("dapr-api-token", t);
    }
    b.send().await.expect("request")
}

async fn metadata(m: &Mecha, token: &str) -> Value {
    let r = send(m, reqwest::Method::GET, "/v1.0/metadata", Some(token), "").await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

fn with_token<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut()
        .insert("dapr-api-token", token.parse().unwrap());
    req
}

#[actix_rt::test]
async fn extended_metadata_is_per_app_and_bounded_over_http() {
    let m = TestMecha::memory()
        .settings(&format!(
            "{TWO_APPS}limits:\n  maxMetadataEntries: 3\n  maxMetadataKeyLength: 16\n  maxMetadataBytes: 1Ki\n"
        ))
        .start()
        .await;
    let put = |token: &'static str, key: &str, value: String| {
        let path = format!("/v1.0/metadata/{key}");
        let m = &m;
        async move { send(m, reqwest::Method::PUT, &path, Some(token), &value).await }
    };
    assert_eq!(put("tok-alpha", "color", "red".into()).await.status(), 204);
    assert_eq!(put("tok-beta", "color", "blue".into()).await.status(), 204);
    // Each app reads its own value; neither overwrote the other.
    assert_eq!(metadata(&m, "tok-alpha").await["extended"]["color"], "red");
    assert_eq!(metadata(&m, "tok-beta").await["extended"]["color"], "blue");
    assert_eq!(
        put("tok-alpha", "only-alpha", "x".into()).await.status(),
        204
    );
    assert!(
        metadata(&m, "tok-beta").await["extended"]
            .get("only-alpha")
            .is_none()
    );

    // Past the entry count, the name length and the byte budget: a clear error, nothing kept.
    assert_eq!(put("tok-alpha", "third", "x".into()).await.status(), 204);
    let (status, code, message, _) = error_of(put("tok-alpha", "fourth", "x".into()).await).await;
    assert_eq!(
        (status, code.as_str()),
        (400, "ERR_METADATA_LIMIT"),
        "{message}"
    );
    assert!(message.contains("3 metadata attributes"), "{message}");
    let (status, code, _, _) = error_of(put("tok-beta", &"n".repeat(17), "x".into()).await).await;
    assert_eq!((status, code.as_str()), (400, "ERR_METADATA_LIMIT"));
    let (status, code, _, _) = error_of(put("tok-beta", "big", "v".repeat(1020)).await).await;
    assert_eq!((status, code.as_str()), (400, "ERR_METADATA_LIMIT"));
    assert!(
        metadata(&m, "tok-beta").await["extended"]
            .get("big")
            .is_none()
    );
    // A value larger than the whole budget is refused while it is read (413), not stored.
    let r = put("tok-beta", "huge", "v".repeat(4 * 1024 * 1024)).await;
    assert_eq!(r.status(), 413);
    // Replacing an attribute within the budget still works.
    assert_eq!(
        put("tok-alpha", "color", "green".into()).await.status(),
        204
    );
    assert_eq!(
        metadata(&m, "tok-alpha").await["extended"]["color"],
        "green"
    );
    m.running.stop(true).await;
}

#[actix_rt::test]
async fn grpc_metadata_is_per_app_and_bounded() {
    let m = TestMecha::memory()
        .settings(&format!("{TWO_APPS}limits:\n  maxMetadataEntries: 2\n"))
        .start()
        .await;
    let mut c = m.grpc().await;
    let set = |key: &str, value: &str| SetMetadataRequest {
        key: key.into(),
        value: value.into(),
    };
    c.set_metadata(with_token(set("team", "a"), "tok-alpha"))
        .await
        .unwrap();
    c.set_metadata(with_token(set("team", "b"), "tok-beta"))
        .await
        .unwrap();
    c.set_metadata(with_token(set("two", "a"), "tok-alpha"))
        .await
        .unwrap();
    let st = c
        .set_metadata(with_token(set("three", "a"), "tok-alpha"))
        .await
        .unwrap_err();
    assert_eq!(st.code(), tonic::Code::ResourceExhausted, "{st:?}");
    assert!(st.message().contains("metadata attributes"), "{st:?}");
    // A value larger than the budget (64 KiB by default) is refused: GetMetadata of every
    // app stays small, so SDKs that call it first keep working.
    let st = c
        .set_metadata(with_token(
            set("big", &"v".repeat(3 * 1024 * 1024)),
            "tok-beta",
        ))
        .await
        .unwrap_err();
    assert_eq!(st.code(), tonic::Code::ResourceExhausted);
    let a = c
        .get_metadata(with_token(GetMetadataRequest::default(), "tok-alpha"))
        .await
        .unwrap()
        .into_inner();
    let b = c
        .get_metadata(with_token(GetMetadataRequest::default(), "tok-beta"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(a.extended_metadata["team"], "a");
    assert_eq!(b.extended_metadata["team"], "b");
    assert!(!b.extended_metadata.contains_key("two"));
    assert!(!b.extended_metadata.contains_key("big"));
    m.running.stop(true).await;
}

#[actix_rt::test]
async fn metadata_lists_only_the_apps_own_stores_and_capabilities() {
    let m = TestMecha::empty()
        .yaml(&scoped("alpha-store", "alpha"))
        .yaml(&scoped("beta-store", "beta"))
        .settings(TWO_APPS)
        .start()
        .await;
    let meta = metadata(&m, "tok-alpha").await;
    let names: Vec<&str> = meta["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alpha-store"]);
    let ext = meta["extended"].as_object().unwrap();
    assert!(
        ext.contains_key("mecha.capabilities.alpha-store"),
        "{ext:?}"
    );
    assert!(
        !ext.contains_key("mecha.capabilities.beta-store"),
        "{ext:?}"
    );
    let mut c = m.grpc().await;
    let b = c
        .get_metadata(with_token(GetMetadataRequest::default(), "tok-beta"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(b.registered_components.len(), 1);
    assert_eq!(b.registered_components[0].name, "beta-store");
    assert!(
        b.extended_metadata
            .contains_key("mecha.capabilities.beta-store")
    );
    assert!(
        !b.extended_metadata
            .contains_key("mecha.capabilities.alpha-store")
    );
    m.running.stop(true).await;
}

#[actix_rt::test]
async fn health_answers_carry_backend_text_only_for_a_valid_token() {
    // A Redis that nobody listens on: unhealthy after the first ping.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let m = TestMecha::empty()
        .yaml(&redis_component("cache", &format!("127.0.0.1:{port}")))
        .settings(&format!(
            "{TWO_APPS}actors:\n  healthInterval: 100ms\n  requestTimeout: 1s\n"
        ))
        .start()
        .await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = send(
            &m,
            reqwest::Method::GET,
            "/v1.0/healthz",
            Some("tok-alpha"),
            "",
        )
        .await;
        if r.status() != 204 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the store never became unhealthy"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Without a valid token: the process-level health, which names and counts
    // no store.
    for token in [None, Some("wrong")] {
        for path in ["/v1.0/healthz", "/v1.0/healthz/outbound"] {
            let r = send(&m, reqwest::Method::GET, path, token, "").await;
            assert_eq!(r.status(), 204, "{path} {token:?}");
        }
    }
    let r = send(
        &m,
        reqwest::Method::GET,
        "/v1.0/healthz",
        Some("tok-beta"),
        "",
    )
    .await;
    let (_, _, message, _) = error_of(r).await;
    assert!(message.contains("cache ("), "{message}");
    m.running.stop(false).await;
}

/// Every store (SQLite and MySQL too) gets a NUL byte in a key refused with the same 400, on
/// both doors (PostgreSQL cannot store one, so no store may accept one).
#[actix_rt::test]
async fn a_nul_byte_in_a_key_is_the_same_400_on_every_store() {
    let table = format!("iso_{:016x}", rand::random::<u64>());
    let sql = SqlScratch::new();
    let bucket = format!("iso_{:016x}", rand::random::<u64>());
    let m = TestMecha::memory()
        .yaml(&redis_component("redis", &redis_url()))
        .yaml(&pg_component("pg", &table))
        .yaml(&jetstream_component("kv", &bucket))
        .yaml(&sql_component(
            "sqlite",
            "state.sqlite",
            &sql.sqlite("iso.db", &table),
        ))
        .yaml(&sql_component("mysql", "state.mysql", &sql.mysql(&table)))
        .start()
        .await;
    let key = unique("nul");
    let mut c = m.grpc().await;
    for store in ["statestore", "redis", "pg", "kv", "sqlite", "mysql"] {
        let body = json!([{"key": format!("{key}\u{0}x"), "value": 1}]).to_string();
        let (status, code, message, _) =
            error_of(m.post(&format!("/v1.0/state/{store}"), body).await).await;
        assert_eq!(
            (status, code.as_str()),
            (400, "ERR_MALFORMED_REQUEST"),
            "{store}: {message}"
        );
        assert!(message.contains("NUL byte"), "{store}: {message}");
        let (status, code, _, _) =
            error_of(m.get(&format!("/v1.0/state/{store}/{key}%00x")).await).await;
        assert_eq!(
            (status, code.as_str()),
            (400, "ERR_MALFORMED_REQUEST"),
            "{store}"
        );
        let (status, _, _, _) =
            error_of(m.delete(&format!("/v1.0/state/{store}/{key}%00x")).await).await;
        assert_eq!(status, 400, "{store}");
        let st = c
            .save_state(SaveStateRequest {
                store_name: store.into(),
                states: vec![StateItem {
                    key: format!("{key}\u{0}"),
                    value: b"1".to_vec(),
                    ..StateItem::default()
                }],
            })
            .await
            .unwrap_err();
        assert_eq!(st.code(), tonic::Code::InvalidArgument, "{store}: {st:?}");
        assert!(st.message().contains("NUL byte"), "{store}: {st:?}");
        let st = c
            .get_state(GetStateRequest {
                store_name: store.into(),
                key: format!("\u{0}{key}"),
                ..GetStateRequest::default()
            })
            .await
            .unwrap_err();
        assert_eq!(st.code(), tonic::Code::InvalidArgument, "{store}");
        // Nothing was stored under the key without the NUL either.
        let r = m.get(&format!("/v1.0/state/{store}/{key}")).await;
        assert_eq!(r.status(), 204, "{store}");
    }
    m.running.stop(true).await;
    drop_pg_table(&table);
    delete_kv_bucket(&bucket);
}

#[actix_rt::test]
async fn random_bytes_to_the_query_route_are_a_400() {
    let table = format!("iso_{:016x}", rand::random::<u64>());
    let m = TestMecha::empty()
        .yaml(&pg_component("pg", &table))
        .start()
        .await;
    let path = "/v1.0-alpha1/state/pg/query";
    let mut bodies: Vec<Vec<u8>> = vec![
        b"\x00\xff\xfe garbage".to_vec(),
        b"}{".to_vec(),
        b"not json at all".to_vec(),
        b"[1,2,3]".to_vec(),
    ];
    for _ in 0..20 {
        bodies.push((0..64).map(|_| rand::random::<u8>()).collect());
    }
    for body in bodies {
        let r = m.post(path, body.clone()).await;
        assert_eq!(
            r.status(),
            400,
            "{:?}: {}",
            String::from_utf8_lossy(&body),
            r.text().await.unwrap()
        );
    }
    // A valid query still answers.
    assert_eq!(m.post(path, "{}").await.status(), 204);
    m.running.stop(true).await;
    drop_pg_table(&table);
}

/// `DAPR_API_TOKEN` without any configured app: daprd's single-token mode.
#[actix_rt::test]
async fn dapr_api_token_alone_requires_the_token_on_both_doors() {
    let m = TestMecha::memory().api_token("single-secret").start().await;
    let r = m.get("/v1.0/state/statestore/k").await;
    assert_eq!(r.status(), 401);
    assert_eq!(r.text().await.unwrap(), "invalid api token\n");
    let r = send(
        &m,
        reqwest::Method::GET,
        "/v1.0/state/statestore/k",
        Some("nope"),
        "",
    )
    .await;
    assert_eq!(r.status(), 401);
    let r = send(&m, reqwest::Method::GET, "/v1.0/metadata", None, "").await;
    assert_eq!(r.status(), 401);
    // Health is exempt.
    assert_eq!(m.get("/v1.0/healthz").await.status(), 204);
    assert_eq!(m.get("/v1.0/healthz/outbound").await.status(), 204);
    let r = send(
        &m,
        reqwest::Method::POST,
        "/v1.0/state/statestore",
        Some("single-secret"),
        r#"[{"key":"k","value":1}]"#,
    )
    .await;
    assert_eq!(r.status(), 204);
    let r = send(
        &m,
        reqwest::Method::GET,
        "/v1.0/state/statestore/k",
        Some("single-secret"),
        "",
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(metadata(&m, "single-secret").await["id"], "testapp");

    let mut c = m.grpc().await;
    let get = || GetStateRequest {
        store_name: "statestore".into(),
        key: "k".into(),
        ..GetStateRequest::default()
    };
    let st = c.get_state(get()).await.unwrap_err();
    assert_eq!(st.code(), tonic::Code::Unauthenticated);
    let st = c.get_state(with_token(get(), "nope")).await.unwrap_err();
    assert_eq!(st.code(), tonic::Code::Unauthenticated);
    let got = c
        .get_state(with_token(get(), "single-secret"))
        .await
        .unwrap();
    assert_eq!(got.into_inner().data, b"1");
    m.running.stop(true).await;
}

#[actix_rt::test]
async fn a_token_file_rotates_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("alpha.token");
    std::fs::write(&file, "first-token\n").unwrap();
    let m = TestMecha::memory()
        .settings(&format!(
            "apps:\n  - id: alpha\n    tokenFile: {}\nserver:\n  tokenFileCheckInterval: 50ms\n",
            file.display()
        ))
        .start()
        .await;
    let status = |t: &'static str| {
        let m = &m;
        async move {
            send(
                m,
                reqwest::Method::GET,
                "/v1.0/state/statestore/k",
                Some(t),
                "",
            )
            .await
            .status()
        }
    };
    assert_eq!(status("first-token").await, 204);
    assert_eq!(status("second-token").await, 401);
    std::fs::write(&file, "second-token\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while status("second-token").await != 204 {
        assert!(
            Instant::now() < deadline,
            "the rotated token was never picked up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status("first-token").await, 401, "the old token is gone");
    let mut c = m.grpc().await;
    let req = GetMetadataRequest::default();
    assert_eq!(
        c.get_metadata(with_token(req, "second-token"))
            .await
            .unwrap()
            .into_inner()
            .id,
        "alpha"
    );
    m.running.stop(true).await;
}

#[actix_rt::test]
async fn metrics_can_require_a_token_of_their_own() {
    let m = TestMecha::memory()
        .settings(&format!("{TWO_APPS}metrics:\n  token: scrape-secret\n"))
        .start()
        .await;
    let url = format!("http://{}/metrics", m.running.metrics_addr);
    assert_eq!(m.client.get(&url).send().await.unwrap().status(), 401);
    // An app token is not the metrics token.
    let r = m
        .client
        .get(&url)
        .bearer_auth("tok-alpha")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = m
        .client
        .get(&url)
        .bearer_auth("scrape-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    m.running.stop(true).await;
}

/// A noisy app past its quota gets 429s with `Retry-After` (and `RESOURCE_EXHAUSTED` with
/// `retry-after` on gRPC) while a quiet app keeps being served.
#[actix_rt::test]
async fn quotas_refuse_the_noisy_app_and_keep_serving_the_quiet_one() {
    let m = TestMecha::memory()
        .settings(
            "apps:\n  - id: noisy\n    token: tok-noisy\n    quota:\n      maxConcurrent: 4\n      requestsPerSecond: 50\n      burst: 20\n  - id: quiet\n    token: tok-quiet\n"
        )
        .start()
        .await;
    let noisy = async {
        let calls = (0..300).map(|_| {
            send(
                &m,
                reqwest::Method::GET,
                "/v1.0/state/statestore/k",
                Some("tok-noisy"),
                "",
            )
        });
        futures::future::join_all(calls).await
    };
    let quiet = async {
        let mut statuses = Vec::new();
        for _ in 0..50 {
            let r = send(
                &m,
                reqwest::Method::GET,
                "/v1.0/state/statestore/k",
                Some("tok-quiet"),
                "",
            )
            .await;
            statuses.push(r.status().as_u16());
        }
        statuses
    };
    let (noisy, quiet) = futures::join!(noisy, quiet);
    assert!(quiet.iter().all(|s| *s == 204), "quiet app: {quiet:?}");
    let mut refused = 0;
    let mut served = 0;
    for r in noisy {
        match r.status().as_u16() {
            204 => served += 1,
            429 => {
                refused += 1;
                let after: u64 = r.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!(after >= 1);
                let (_, code, message, _) = error_of(r).await;
                assert_eq!(code, "ERR_TOO_MANY_REQUESTS");
                assert!(message.contains("app noisy is over its quota"), "{message}");
            }
            s => panic!("unexpected status {s}"),
        }
    }
    assert!(
        served >= 1 && refused >= 50,
        "served {served}, refused {refused}"
    );

    // gRPC: the burst is spent, so the next calls are refused with retry-after metadata.
    let mut c = m.grpc().await;
    let get = || GetStateRequest {
        store_name: "statestore".into(),
        key: "k".into(),
        ..GetStateRequest::default()
    };
    let mut seen = None;
    for _ in 0..100 {
        if let Err(st) = c.get_state(with_token(get(), "tok-noisy")).await {
            seen = Some(st);
            break;
        }
    }
    let st = seen.expect("a refused gRPC call");
    assert_eq!(st.code(), tonic::Code::ResourceExhausted);
    assert!(st.metadata().get("retry-after").is_some(), "{st:?}");
    assert!(c.get_state(with_token(get(), "tok-quiet")).await.is_ok());
    m.running.stop(true).await;
}
