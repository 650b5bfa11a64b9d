//! The portability report end to end: a scripted mix over HTTP and gRPC on an in-memory store,
//! then `GET /v1.0-alpha1/mecha/portability` and `mecha portability` for two target types,
//! the authorisation rule (an app reads only its own), and the usage counters in `/metrics`.
//! The same mix on a SQLite and on a MySQL store (MariaDB from `scripts/test.sh`; a scratch
//! file and schema of the test's own) reports the same gaps, and both SQL stores are targets
//! that everything in the mix ports to.

use crate::support;

use mecha::gateway::grpc::proto::common::{Etag, StateItem};
use mecha::gateway::grpc::proto::runtime::SaveStateRequest;
use mecha::gateway::grpc::proto::runtime::dapr_client::DaprClient;
use serde_json::{Value, json};
use support::sql::SqlScratch;
use support::{Mecha, TestMecha, unique};
use tonic::transport::Channel;

const APPS: &str =
    "apps:\n  - id: porta\n    token: tok-porta\n  - id: portb\n    token: tok-portb\n";

fn store_yaml(name: &str) -> String {
    format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n  type: state.in-memory\n  version: v1\n"
    )
}

async fn call(
    m: &Mecha,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut rb = m
        .client
        .request(method, m.url(path))
        .header("dapr-api-token", token);
    if let Some(b) = body {
        rb = rb.body(b.to_string());
    }
    rb.send().await.expect("request")
}

/// The scripted mix of app `porta` on `store`; returns nothing, asserts each status.
async fn mix(m: &Mecha, store: &str) {
    use reqwest::Method as M;
    let t = "tok-porta";
    let (k1, k2) = (unique("k1"), unique("k2"));
    let save = format!("/v1.0/state/{store}");
    // A plain save: no capability.
    let r = call(m, M::POST, &save, t, Some(json!([{"key": k1, "value": 1}]))).await;
    assert_eq!(r.status(), 204);
    // A save with a TTL (item metadata).
    let body = json!([{"key": k2, "value": 2, "metadata": {"ttlInSeconds": "60"}}]);
    assert_eq!(call(m, M::POST, &save, t, Some(body)).await.status(), 204);
    // A strong read.
    let r = call(
        m,
        M::GET,
        &format!("/v1.0/state/{store}/{k1}?consistency=strong"),
        t,
        None,
    )
    .await;
    assert_eq!(r.status(), 200);
    // A bulk get.
    let r = call(
        m,
        M::POST,
        &format!("/v1.0/state/{store}/bulk"),
        t,
        Some(json!({"keys": [k1, k2]})),
    )
    .await;
    assert_eq!(r.status(), 200);
    // A transaction.
    let ops = json!({"operations": [
        {"operation": "upsert", "request": {"key": k1, "value": 3}},
        {"operation": "delete", "request": {"key": k2}}
    ]});
    let r = call(
        m,
        M::POST,
        &format!("/v1.0/state/{store}/transaction"),
        t,
        Some(ops),
    )
    .await;
    assert_eq!(r.status(), 204);
    // partitionKey: ignored on this store (no partitions, the compatible default), counted as used.
    let body = json!([{"key": k1, "value": 4, "metadata": {"partitionKey": "p"}}]);
    assert_eq!(call(m, M::POST, &save, t, Some(body)).await.status(), 204);
    // Metadata no Mecha store reads: a Redis index name and made-up names (bucketed).
    let r = call(
        m,
        M::GET,
        &format!("/v1.0/state/{store}/{k1}?metadata.queryIndexName=i&metadata.customer-17=x&metadata.other=y"),
        t,
        None,
    )
    .await;
    assert_eq!(r.status(), 200);
    // gRPC: a save with an ETag, and one with a TTL.
    let ch = Channel::from_shared(format!("http://{}", m.running.grpc_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut g = DaprClient::new(ch);
    let etag = r_etag(m, store, &k1).await;
    let mut req = tonic::Request::new(SaveStateRequest {
        store_name: store.into(),
        states: vec![StateItem {
            key: k1.clone(),
            value: b"5".to_vec(),
            etag: Some(Etag { value: etag }),
            ..StateItem::default()
        }],
    });
    req.metadata_mut()
        .insert("dapr-api-token", t.parse().unwrap());
    g.save_state(req).await.expect("grpc save with etag");
    let mut req = tonic::Request::new(SaveStateRequest {
        store_name: store.into(),
        states: vec![StateItem {
            key: k2.clone(),
            value: b"6".to_vec(),
            metadata: [("ttlInSeconds".to_owned(), "30".to_owned())].into(),
            ..StateItem::default()
        }],
    });
    req.metadata_mut()
        .insert("dapr-api-token", t.parse().unwrap());
    g.save_state(req).await.expect("grpc save with ttl");
}

async fn r_etag(m: &Mecha, store: &str, key: &str) -> String {
    let r = call(
        m,
        reqwest::Method::GET,
        &format!("/v1.0/state/{store}/{key}"),
        "tok-porta",
        None,
    )
    .await;
    assert_eq!(r.status(), 200);
    r.headers()["etag"].to_str().unwrap().to_owned()
}

/// App `porta`'s portability report towards `target`.
async fn report(m: &Mecha, target: &str) -> Value {
    let r = call(
        m,
        reqwest::Method::GET,
        &format!("/v1.0-alpha1/mecha/portability?app=porta&target={target}"),
        "tok-porta",
        None,
    )
    .await;
    assert_eq!(r.status(), 200);
    r.json::<Value>().await.unwrap()
}

fn gaps(report: &Value) -> Vec<(String, String, String, String, u64)> {
    report["gaps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["kind"].as_str().unwrap().to_owned(),
                g["name"].as_str().unwrap().to_owned(),
                g["now"].as_str().unwrap().to_owned(),
                g["target"].as_str().unwrap().to_owned(),
                g["count"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn row(
    kind: &str,
    name: &str,
    now: &str,
    target: &str,
    n: u64,
) -> (String, String, String, String, u64) {
    (kind.into(), name.into(), now.into(), target.into(), n)
}

#[actix_rt::test]
async fn report_names_exactly_the_gaps_for_two_targets() {
    let store = unique("porta-store");
    let m = TestMecha::empty()
        .yaml(&store_yaml(&store))
        .settings(APPS)
        .start()
        .await;
    mix(&m, &store).await;
    // Another app's traffic never shows in this app's report.
    let r = call(
        &m,
        reqwest::Method::POST,
        &format!("/v1.0/state/{store}/transaction"),
        "tok-portb",
        Some(json!({"operations": [{"operation": "upsert", "request": {"key": "x", "value": 1}}]})),
    )
    .await;
    assert_eq!(r.status(), 204);

    let js = report(&m, "state.jetstream").await;
    assert_eq!(js["app"], "porta");
    assert_eq!(js["target"], "state.jetstream");
    assert_eq!(js["stores"], json!([store]));
    // 10 requests reached negotiation (the ETag lookup GET included).
    assert_eq!(js["requests"], 10);
    assert_eq!(
        gaps(&js),
        [
            row("capability", "transactions", "native", "rejected", 1),
            row("capability", "ttl", "native", "emulated", 2),
            row("capability", "bulk", "native", "emulated", 1),
            row("capability", "partitionKey", "ignored", "ignored", 1),
            row("metadata", "ttlInSeconds", "native", "emulated", 2),
            row("metadata", "partitionKey", "ignored", "ignored", 1),
            row("metadata", "queryIndexName", "ignored", "ignored", 1),
            row("metadata", "_other", "ignored", "ignored", 1),
        ]
    );
    assert_eq!(
        js["verdict"],
        "not portable to state.jetstream: calls served now would be rejected (transactions x1)"
    );

    let pg = report(&m, "state.postgresql").await;
    assert_eq!(
        gaps(&pg),
        [
            row("capability", "partitionKey", "ignored", "ignored", 1),
            row("metadata", "partitionKey", "ignored", "ignored", 1),
            row("metadata", "queryIndexName", "ignored", "ignored", 1),
            row("metadata", "_other", "ignored", "ignored", 1),
        ]
    );
    assert_eq!(
        pg["verdict"],
        "portable to state.postgresql: everything used is served as it is now"
    );
    // The SQL stores serve what PostgreSQL serves: the same gaps, the same verdict.
    for target in ["state.sqlite", "state.mysql"] {
        let r = report(&m, target).await;
        assert_eq!(gaps(&r), gaps(&pg), "{target}");
        assert_eq!(
            r["verdict"],
            format!("portable to {target}: everything used is served as it is now")
        );
    }

    // The same report from the command line.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_mecha"))
        .args([
            "portability",
            "--app",
            "porta",
            "--target",
            "state.jetstream",
            "--url",
            &m.base,
            "--token",
            "tok-porta",
        ])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.starts_with(&format!(
            "app porta -> state.jetstream: 10 request(s) since start on {store}\n"
        )),
        "{text}"
    );
    assert!(text.contains("transactions"), "{text}");
    assert!(
        text.ends_with(&format!("{}\n", js["verdict"].as_str().unwrap())),
        "{text}"
    );

    // Usage as Prometheus counters, by capability and metadata bucket (no raw names).
    let metrics = m.metrics().await;
    for (line, n) in [
        (
            format!(
                "mecha_capability_usage_total{{app_id=\"porta\",store=\"{store}\",capability=\"ttl\"}}"
            ),
            2,
        ),
        (
            format!(
                "mecha_capability_usage_total{{app_id=\"porta\",store=\"{store}\",capability=\"transactions\"}}"
            ),
            1,
        ),
        (
            format!(
                "mecha_capability_usage_total{{app_id=\"portb\",store=\"{store}\",capability=\"transactions\"}}"
            ),
            1,
        ),
        (
            format!(
                "mecha_metadata_key_usage_total{{app_id=\"porta\",store=\"{store}\",key=\"_other\"}}"
            ),
            1,
        ),
    ] {
        assert!(
            metrics.contains(&format!("{line} {n}\n")),
            "{line} {n} not in\n{metrics}"
        );
    }
    assert!(!metrics.contains("customer-17"));
}

#[actix_rt::test]
async fn an_app_reads_only_its_own_report_and_bad_targets_are_named() {
    let store = unique("porta-auth");
    let m = TestMecha::empty()
        .yaml(&store_yaml(&store))
        .settings(APPS)
        .start()
        .await;
    let get = |q: String, token: &'static str| {
        let m = &m;
        async move {
            call(
                m,
                reqwest::Method::GET,
                &format!("/v1.0-alpha1/mecha/portability{q}"),
                token,
                None,
            )
            .await
        }
    };
    let r = get("?app=porta&target=state.redis".into(), "tok-portb").await;
    assert_eq!(r.status(), 401);
    let r = get("?app=porta&target=state.redis".into(), "").await;
    assert_eq!(r.status(), 401);
    let r = get("?target=state.nope".into(), "tok-portb").await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["errorCode"], "ERR_MALFORMED_REQUEST");
    assert!(
        v["message"].as_str().unwrap().contains("state.jetstream"),
        "{v}"
    );
    let r = get("?app=portb".into(), "tok-portb").await;
    assert_eq!(r.status(), 400);
    // Without `app`, the caller's own; no traffic yet.
    let r = get("?target=state.redis".into(), "tok-portb").await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["app"], "portb");
    assert_eq!(v["requests"], 0);
    assert_eq!(v["gaps"], json!([]));
    assert_eq!(
        v["verdict"],
        "no traffic recorded since start: nothing to judge for state.redis"
    );
}

/// The mix on a SQLite and on a MySQL store: everything the in-memory store serves natively
/// is native there too, so the report toward JetStream names the same gaps, and toward the
/// other SQL store or PostgreSQL only what is ignored everywhere.
#[actix_rt::test]
async fn the_mix_on_sqlite_and_mysql_reports_the_same_gaps() {
    let sql = SqlScratch::new();
    for (ty, metadata, other) in [
        (
            "state.sqlite",
            sql.sqlite("porta.db", "portability"),
            "state.mysql",
        ),
        ("state.mysql", sql.mysql("portability"), "state.sqlite"),
    ] {
        let store = unique("porta-sql");
        let yaml = store_yaml(&store).replace("state.in-memory", ty)
            + "  metadata:\n"
            + &SqlScratch::lines(&metadata);
        let m = TestMecha::empty().yaml(&yaml).settings(APPS).start().await;
        mix(&m, &store).await;
        let js = report(&m, "state.jetstream").await;
        assert_eq!(js["stores"], json!([store]), "{ty}");
        assert_eq!(js["requests"], 10, "{ty}");
        assert_eq!(
            gaps(&js),
            [
                row("capability", "transactions", "native", "rejected", 1),
                row("capability", "ttl", "native", "emulated", 2),
                row("capability", "bulk", "native", "emulated", 1),
                row("capability", "partitionKey", "ignored", "ignored", 1),
                row("metadata", "ttlInSeconds", "native", "emulated", 2),
                row("metadata", "partitionKey", "ignored", "ignored", 1),
                row("metadata", "queryIndexName", "ignored", "ignored", 1),
                row("metadata", "_other", "ignored", "ignored", 1),
            ],
            "{ty}"
        );
        for target in [other, "state.postgresql"] {
            let r = report(&m, target).await;
            assert_eq!(
                gaps(&r),
                [
                    row("capability", "partitionKey", "ignored", "ignored", 1),
                    row("metadata", "partitionKey", "ignored", "ignored", 1),
                    row("metadata", "queryIndexName", "ignored", "ignored", 1),
                    row("metadata", "_other", "ignored", "ignored", 1),
                ],
                "{ty} -> {target}"
            );
            assert_eq!(
                r["verdict"],
                format!("portable to {target}: everything used is served as it is now"),
                "{ty}"
            );
        }
    }
}
