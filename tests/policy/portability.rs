//! The portability report end to end: a scripted mix over HTTP and gRPC on an in-memory store,
//! then `GET /v1.0-alpha1/mecha/portability` and `mecha portability` for two target types,
//! the authorisation rule (an app reads only its own), and the usage counters in `/metrics`.
//! The same mix on a SQLite and on a MySQL store (MariaDB from `scripts/test.sh`; a scratch
//! file and schema of the test's own) reports the same gaps, and both SQL stores are targets
//! that everything in the mix ports to.

use crate::support;

use mecha::gateway::grpc::proto::common::{Etag, StateItem};
use mecha::gateway::grpc::proto::runtime::dapr_client::DaprClient;
use mecha::gateway::grpc::proto::runtime::{
    ExecuteStateTransactionRequest, SaveStateRequest, TransactionalStateOperation,
};
use serde_json::{Value, json};
use support::services::{database_url, delete_kv_bucket, drop_pg_table, nats_url};
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

/// The mix's gaps toward JetStream, as [`lines`] shows them (from an in-memory, SQLite or
/// MySQL store: all serve the mix natively).
const MIX_TO_JETSTREAM: [&str; 8] = [
    "get metadata queryIndexName ignored->ignored x1",
    "get metadata _other ignored->ignored x1",
    "bulk_get capability bulk native->emulated x1",
    "set capability ttl native->emulated x2",
    "set capability partitionKey ignored->ignored x1",
    "set metadata ttlInSeconds native->emulated x2",
    "set metadata partitionKey ignored->ignored x1",
    "transaction capability transactions native->rejected x1",
];

/// The mix's gaps toward PostgreSQL, SQLite or MySQL: only what every store ignores.
const MIX_TO_SQL: [&str; 4] = [
    "get metadata queryIndexName ignored->ignored x1",
    "get metadata _other ignored->ignored x1",
    "set capability partitionKey ignored->ignored x1",
    "set metadata partitionKey ignored->ignored x1",
];

/// The report's gaps as lines without the store (each test's reports cover one store):
/// `operation kind name now->target xN`.
fn lines(report: &Value) -> Vec<String> {
    gap_lines(report)
        .into_iter()
        .map(|l| l.split_once(' ').unwrap().1.to_owned())
        .collect()
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
    assert_eq!(js["stores"][0]["store"], store);
    assert_eq!(js["stores"].as_array().unwrap().len(), 1);
    // 10 requests reached negotiation (the ETag lookup GET included).
    assert_eq!(js["requests"], 10);
    assert_eq!(lines(&js), MIX_TO_JETSTREAM);
    assert_eq!(
        js["summary"],
        "not portable to state.jetstream: calls served now would be rejected (transactions x1)"
    );

    let pg = report(&m, "state.postgresql").await;
    assert_eq!(lines(&pg), MIX_TO_SQL);
    assert_eq!(
        pg["summary"],
        "portable to state.postgresql: everything used is served as it is now"
    );
    // The SQL stores serve what PostgreSQL serves: the same gaps, the same verdict.
    for target in ["state.sqlite", "state.mysql"] {
        let r = report(&m, target).await;
        assert_eq!(lines(&r), lines(&pg), "{target}");
        assert_eq!(
            r["summary"],
            format!("portable to {target}: everything used is served as it is now")
        );
    }

    // The same report from the command line: not portable, exit 1.
    let (code, text, err) = cli(&[
        "--app",
        "porta",
        "--target",
        "state.jetstream",
        "--url",
        &m.base,
        "--token",
        "tok-porta",
    ])
    .await;
    assert_eq!(code, 1, "{text} {err}");
    let expected_head = format!(
        "app porta -> state.jetstream: 10 request(s) since start\n  store {store}: 10 request(s), not portable to state.jetstream: calls served now would be rejected (transactions x1)\n    get          metadata   queryIndexName      ignored -> ignored  x1\n"
    );
    assert!(text.starts_with(&expected_head), "{text}");
    assert!(text.contains("transactions"), "{text}");
    assert!(
        text.ends_with(&format!("{}\n", js["summary"].as_str().unwrap())),
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
    // Without `target`: every registered type, judged for the app (no traffic: all portable).
    let r = get("?app=portb".into(), "tok-portb").await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["app"], "portb");
    let targets = v["targets"].as_array().unwrap();
    assert_eq!(targets.len(), mecha::actors::backends::REGISTRY.len());
    assert!(targets.iter().all(|t| t["portable"] == true), "{v}");
    // An operator's metrics token is not configured here: no other reader.
    let r = get("?app=porta&target=state.redis".into(), "").await;
    assert_eq!(r.status(), 401);
    // Without `app`, the caller's own; no traffic yet.
    let r = get("?target=state.redis".into(), "tok-portb").await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["app"], "portb");
    assert_eq!(v["requests"], 0);
    assert_eq!(v["gaps"], json!([]));
    assert_eq!(
        v["summary"],
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
        assert_eq!(js["stores"][0]["store"], store, "{ty}");
        assert_eq!(js["requests"], 10, "{ty}");
        assert_eq!(lines(&js), MIX_TO_JETSTREAM, "{ty}");
        for target in [other, "state.postgresql"] {
            let r = report(&m, target).await;
            assert_eq!(lines(&r), MIX_TO_SQL, "{ty} -> {target}");
            assert_eq!(
                r["summary"],
                format!("portable to {target}: everything used is served as it is now"),
                "{ty}"
            );
        }
    }
}

/// Each gap as one readable line: `store operation kind name now->target xN`.
pub(crate) fn gap_lines(report: &Value) -> Vec<String> {
    report["gaps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            format!(
                "{} {} {} {} {}->{} x{}",
                g["store"].as_str().unwrap(),
                g["operation"].as_str().unwrap(),
                g["kind"].as_str().unwrap(),
                g["name"].as_str().unwrap(),
                g["now"].as_str().unwrap(),
                g["target"].as_str().unwrap(),
                g["count"].as_u64().unwrap()
            )
        })
        .collect()
}

/// Runs `mecha portability` with `args`: (exit code, stdout, stderr).
pub(crate) async fn cli(args: &[&str]) -> (i32, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_mecha"))
        .arg("portability")
        .args(args)
        .env_remove("MECHA_METRICS_TOKEN")
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[derive(Clone, Copy, Debug)]
enum Door {
    Http,
    Grpc,
}

/// App `porta`'s one-upsert transaction on `store` through `door`: Ok, or the error code.
async fn transact(m: &Mecha, door: Door, store: &str) -> Result<(), String> {
    let key = unique("tx");
    match door {
        Door::Http => {
            let ops = json!({"operations": [{"operation": "upsert", "request": {"key": key, "value": 3}}]});
            let path = format!("/v1.0/state/{store}/transaction");
            let r = call(m, reqwest::Method::POST, &path, "tok-porta", Some(ops)).await;
            if r.status() == 204 {
                return Ok(());
            }
            let v: Value = r.json().await.unwrap();
            Err(v["errorCode"].as_str().unwrap_or("?").to_owned())
        }
        Door::Grpc => {
            let mut g = m.grpc().await;
            let mut req = tonic::Request::new(ExecuteStateTransactionRequest {
                store_name: store.into(),
                operations: vec![TransactionalStateOperation {
                    operation_type: "upsert".into(),
                    request: Some(support::item(&key, b"3")),
                }],
                metadata: Default::default(),
            });
            req.metadata_mut()
                .insert("dapr-api-token", "tok-porta".parse().unwrap());
            g.execute_state_transaction(req)
                .await
                .map(|_| ())
                .map_err(|s| format!("{:?}", s.code()))
        }
    }
}

/// The reproduction, on both doors: a transaction served natively on PostgreSQL,
/// then the same transaction rejected on JetStream. The rejected call is listed as
/// "rejected now, rejected there" and never hides the native use: the app stays not
/// portable to JetStream, per store and overall, and the command exits 1 both times.
#[actix_rt::test]
async fn a_rejection_on_one_store_never_hides_a_native_use_on_another() {
    for door in [Door::Http, Door::Grpc] {
        let table = format!("porta_{:08x}", rand::random::<u32>());
        let bucket = format!("porta-{:08x}", rand::random::<u32>());
        let yaml = support::component(
            "pg",
            "state.postgresql",
            &[
                ("connectionString", database_url()),
                ("tableName", table.clone()),
            ],
        ) + "---\n"
            + &support::component(
                "kvstore",
                "state.jetstream",
                &[("natsURL", nats_url()), ("bucket", bucket.clone())],
            );
        let m = TestMecha::empty().yaml(&yaml).settings(APPS).start().await;
        let args = [
            "--app",
            "porta",
            "--target",
            "state.jetstream",
            "--url",
            &m.base,
            "--token",
            "tok-porta",
        ];

        transact(&m, door, "pg")
            .await
            .expect("native on PostgreSQL");
        let (code, out, err) = cli(&args).await;
        assert_eq!(code, 1, "{door:?}: {out} {err}");
        let before = report(&m, "state.jetstream").await;
        assert_eq!(before["portable"], false, "{door:?}: {before}");
        assert_eq!(
            gap_lines(&before),
            ["pg transaction capability transactions native->rejected x1"],
            "{door:?}"
        );

        let refused = transact(&m, door, "kvstore").await.unwrap_err();
        let expected = match door {
            Door::Http => "ERR_STATE_STORE_NOT_SUPPORTED",
            Door::Grpc => "Unimplemented",
        };
        assert_eq!(refused, expected, "{door:?}");
        let after = report(&m, "state.jetstream").await;
        assert_eq!(after["portable"], false, "{door:?}: {after}");
        assert_eq!(after["verdict"], "not-portable");
        assert_eq!(
            gap_lines(&after),
            [
                "pg transaction capability transactions native->rejected x1",
                "kvstore transaction capability transactions rejected->rejected x1",
            ],
            "{door:?}"
        );
        let stores: Vec<(&str, &str)> = after["stores"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["store"].as_str().unwrap(), s["verdict"].as_str().unwrap()))
            .collect();
        assert_eq!(stores, [("pg", "not-portable"), ("kvstore", "portable")]);
        let (code, out, err) = cli(&args).await;
        assert_eq!(code, 1, "{door:?}: {out} {err}");
        assert!(
            out.contains("rejected->") || out.contains("rejected"),
            "{out}"
        );

        m.running.stop(false).await;
        drop_pg_table(&table);
        delete_kv_bucket(&bucket);
    }
}

/// `mecha portability` as a deploy gate: exit 0 portable, 1 not portable, 2 could not tell
/// (unreachable, unauthorised, unknown app or type); `--format json` prints what the
/// endpoint answers; without `--target`, one line per registered type, most portable first.
#[actix_rt::test]
async fn the_command_exits_by_verdict_and_lists_every_type() {
    let store = unique("porta-cli");
    let settings = format!("{APPS}metrics:\n  token: ops-secret\n");
    let m = TestMecha::empty()
        .yaml(&store_yaml(&store))
        .settings(&settings)
        .start()
        .await;
    assert!(transact(&m, Door::Http, &store).await.is_ok());
    let base = m.base.clone();
    let with = |extra: &[&'static str]| {
        let mut a = vec![
            "--url".to_owned(),
            base.clone(),
            "--token".into(),
            "tok-porta".into(),
        ];
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let run = |a: Vec<String>| async move {
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        cli(&refs).await
    };

    let (code, out, err) = run(with(&["--target", "state.postgresql"])).await;
    assert_eq!(code, 0, "{out} {err}");
    assert!(
        out.ends_with("portable to state.postgresql: everything used is served as it is now\n"),
        "{out}"
    );
    let (code, out, _) = run(with(&["--target", "state.jetstream"])).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("not portable to state.jetstream"), "{out}");

    // JSON: exactly the endpoint's answer.
    let (code, out, _) = run(with(&["--target", "state.jetstream", "--format", "json"])).await;
    assert_eq!(code, 1);
    let printed: Value = serde_json::from_str(&out).expect("JSON on stdout");
    assert_eq!(printed, report(&m, "state.jetstream").await);

    // Every registered type, most portable first.
    let (code, out, err) = run(with(&[])).await;
    assert_eq!(code, 0, "{out} {err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        "app porta: verdict per store type, most portable first"
    );
    let verdicts = ["portable", "portable-emulated", "lossy", "not-portable"];
    let rank: Vec<usize> = lines[1..]
        .iter()
        .map(|l| {
            let v = l.split_whitespace().nth(1).unwrap();
            verdicts
                .iter()
                .position(|x| *x == v)
                .unwrap_or_else(|| panic!("{l}"))
        })
        .collect();
    assert!(rank.windows(2).all(|w| w[0] <= w[1]), "{out}");
    for ty in mecha::actors::backends::REGISTRY
        .iter()
        .map(|d| d.component_type)
    {
        assert!(
            lines[1..]
                .iter()
                .any(|l| l.split_whitespace().next() == Some(ty)),
            "{ty} missing from\n{out}"
        );
    }
    let js = lines
        .iter()
        .find(|l| l.trim_start().starts_with("state.jetstream"))
        .unwrap();
    assert!(js.contains("not-portable"), "{js}");
    let (_, out, _) = run(with(&["--format", "json"])).await;
    let listing: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listing["app"], "porta");
    assert_eq!(
        listing["targets"].as_array().unwrap().len(),
        mecha::actors::backends::REGISTRY.len()
    );

    // The operator's metrics token reads any app's report (naming it), flag or variable.
    let op = |token: &str| {
        vec![
            "--url".to_owned(),
            base.clone(),
            "--metrics-token".into(),
            token.into(),
            "--app".into(),
            "porta".into(),
            "--target".into(),
            "state.jetstream".into(),
        ]
    };
    let (code, out, err) = run(op("ops-secret")).await;
    assert_eq!(code, 1, "{out} {err}");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_mecha"))
        .args([
            "portability",
            "--url",
            &base,
            "--app",
            "porta",
            "--target",
            "state.postgresql",
        ])
        .env("MECHA_METRICS_TOKEN", "ops-secret")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    // Could not tell: exit 2, with the reason on stderr.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "--url".into(),
                closed,
                "--target".into(),
                "state.redis".into(),
            ],
            "failed",
        ),
        (
            vec![
                "--url".into(),
                base.clone(),
                "--token".into(),
                "wrong".into(),
                "--target".into(),
                "state.redis".into(),
            ],
            "401",
        ),
        (with(&["--target", "state.nope"]), "state.nope"),
        (op("wrong-secret"), "401"),
        (
            {
                let mut a = op("ops-secret");
                a[5] = "nobody".into();
                a
            },
            "unknown app 'nobody'",
        ),
    ];
    for (args, why) in cases {
        let (code, out, err) = run(args.clone()).await;
        assert_eq!(code, 2, "{args:?}: {out} {err}");
        assert!(err.contains(why), "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}: {out}");
    }
}
