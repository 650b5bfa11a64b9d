//! Standing red-team tests of tenant isolation (key namespaces, per-app health, ETag checks): each replays an attack of one app on
//! another through a shared `mecha` binary, on in-memory, Redis, PostgreSQL, JetStream, SQLite
//! and MySQL where the attack concerns the store. A configuration that makes an attack possible
//! must be refused by `mecha check` and at start-up; if it were accepted, the attack is carried
//! out and must find nothing. Redis, PostgreSQL, NATS and MariaDB are the servers
//! `scripts/test.sh` starts; the tests fail without them. SQLite files and MySQL tables live in
//! a scratch directory and schema of each test's own (`support::sql`). Stores that must be down
//! point at ports of the 15000-15099 range, where nothing listens (SQLite: a file in a
//! directory that does not exist).

use crate::support;
use crate::support::services::{database_url, nats_url, redis_host};

use std::process::Command;
use std::time::{Duration, Instant};

use mecha::gateway::grpc::proto::common::StateItem;
use mecha::gateway::grpc::proto::runtime::SaveStateRequest;
use mecha::gateway::grpc::proto::runtime::dapr_client::DaprClient;
use support::binary::Process;
use support::sql::SqlScratch;
use support::unique;

/// The backends, as a component named `name` with extra metadata lines `extra`; the SQL ones
/// in `sql`'s file and schema (one table per kind, so two components of a kind share it).
fn component(kind: &str, name: &str, extra: &str, sql: &SqlScratch) -> String {
    let spec = match kind {
        "memory" => "  type: state.in-memory\n  metadata:\n".to_owned(),
        "redis" => format!(
            "  type: state.redis\n  metadata:\n  - name: redisHost\n    value: \"{}\"\n  - name: dialTimeout\n    value: 300ms\n",
            redis_host()
        ),
        "postgres" => format!(
            "  type: state.postgresql\n  metadata:\n  - name: connectionString\n    value: \"{}\"\n  - name: tableName\n    value: redteam_tenancy\n",
            database_url()
        ),
        "jetstream" => format!(
            "  type: state.jetstream\n  metadata:\n  - name: natsURL\n    value: \"{}\"\n  - name: bucket\n    value: redteam-tenancy\n",
            nats_url()
        ),
        "sqlite" => format!(
            "  type: state.sqlite\n  metadata:\n{}",
            SqlScratch::lines(&sql.sqlite("redteam.db", "redteam_tenancy"))
        ),
        "mysql" => format!(
            "  type: state.mysql\n  metadata:\n{}",
            SqlScratch::lines(&sql.mysql("redteam_tenancy"))
        ),
        other => panic!("unknown backend {other}"),
    };
    format!("---\nkind: Component\nmetadata:\n  name: {name}\nspec:\n{spec}{extra}")
}

/// A configuration directory: components and `mecha.yaml`.
struct Setup {
    _dir: tempfile::TempDir,
    components: String,
    config: String,
}

fn setup(components: &str, config: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path().join("components");
    std::fs::create_dir(&c).unwrap();
    std::fs::write(c.join("stores.yaml"), components).unwrap();
    let f = dir.path().join("mecha.yaml");
    std::fs::write(&f, config).unwrap();
    Setup {
        components: c.to_str().unwrap().to_owned(),
        config: f.to_str().unwrap().to_owned(),
        _dir: dir,
    }
}

/// `mecha check` and `mecha run` on `s`: `Err(stderr of check)` when both refuse it, else
/// the running process (`check` and start-up disagreeing fails the test).
fn start(s: &Setup, extra: &[&str]) -> Result<Process, String> {
    let mut args = vec!["--resources-path", &s.components, "--config", &s.config];
    args.extend_from_slice(extra);
    let check = Command::new(support::binary::bin())
        .arg("check")
        .args(&args)
        .env_remove("DAPR_API_TOKEN")
        .output()
        .unwrap();
    if check.status.success() {
        let mut run = vec!["run"];
        run.extend_from_slice(&args);
        return Ok(Process::spawn(&run, &[]));
    }
    let mut run = Command::new(support::binary::bin())
        .arg("run")
        .args(&args)
        .args([
            "--http-port",
            "0",
            "--grpc-port",
            "0",
            "--metrics-port",
            "0",
        ])
        .env_remove("DAPR_API_TOKEN")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = run.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = run.kill();
            let _ = run.wait();
            panic!("mecha check refused what start-up accepted");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success(), "start-up must fail");
    Err(String::from_utf8_lossy(&check.stderr).into_owned())
}

async fn call(
    p: &Process,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<String>,
) -> (u16, String) {
    let mut b = reqwest::Client::new().request(method, format!("{}{path}", p.base()));
    if let Some(t) = token {
        b = b.header("dapr-api-token", t);
    }
    if let Some(body) = body {
        b = b.body(body);
    }
    let r = b.send().await.expect("request");
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn save(p: &Process, token: &str, store: &str, key: &str, value: &str) {
    let body = serde_json::json!([{"key": key, "value": value}]).to_string();
    let (status, text) = call(
        p,
        reqwest::Method::POST,
        &format!("/v1.0/state/{store}"),
        Some(token),
        Some(body),
    )
    .await;
    assert_eq!(status, 204, "save {key}: {text}");
}

async fn get(p: &Process, token: &str, store: &str, key: &str) -> String {
    let path = format!("/v1.0/state/{store}/{}", key.replace('|', "%7C"));
    let (status, text) = call(p, reqwest::Method::GET, &path, Some(token), None).await;
    assert!(status == 200 || status == 204, "get {key}: {status} {text}");
    text
}

const BACKENDS: [&str; 6] = [
    "memory",
    "redis",
    "postgres",
    "jetstream",
    "sqlite",
    "mysql",
];

/// Attack 1a: app `orders|` reads `orders`' key `|pipe` as its own key `pipe`, and `orders`
/// reads `orders|`'s keys by prefixing `|`.
#[actix_rt::test]
async fn an_app_id_ending_in_the_separator_cannot_reach_another_apps_keys() {
    let sql = SqlScratch::new();
    for kind in BACKENDS {
        let s = setup(
            &component(kind, "store", "", &sql),
            "apps:\n  - id: orders\n    token: tok-orders\n  - id: \"orders|\"\n    token: tok-pipe\n",
        );
        match start(&s, &[]) {
            Err(stderr) => assert!(
                stderr.contains("apps[1].id") && stderr.contains("'|'"),
                "{kind}: {stderr}"
            ),
            Ok(p) => {
                let secret = unique("secret");
                let key = unique("pipe");
                save(&p, "tok-orders", "store", &format!("|{key}"), &secret).await;
                let seen = get(&p, "tok-pipe", "store", &key).await;
                assert!(!seen.contains(&secret), "{kind}: orders| read orders' key");
                save(&p, "tok-pipe", "store", &key, &secret).await;
                let seen = get(&p, "tok-orders", "store", &format!("|{key}")).await;
                assert!(!seen.contains(&secret), "{kind}: orders read orders|' key");
                panic!("{kind}: an app id containing '|' was accepted");
            }
        }
    }
    // The same id given as --app-id (the app of callers when no apps are configured).
    let s = setup(&component("memory", "store", "", &sql), "");
    let err = start(&s, &["--app-id", "orders|"]).err().expect("refused");
    assert!(err.contains("--app-id"), "{err}");
    // A custom keyPrefix holding the separator's character.
    let s = setup(
        &component(
            "memory",
            "store",
            "  - name: keyPrefix\n    value: \"orders|\"\n",
            &sql,
        ),
        "",
    );
    let err = start(&s, &[]).err().expect("refused");
    assert!(err.contains("keyPrefix"), "{err}");
}

/// Keys holding single `|` stay each app's own on every backend (valid ids, same key format).
#[actix_rt::test]
async fn keys_with_pipes_stay_private_to_their_app() {
    let sql = SqlScratch::new();
    for kind in BACKENDS {
        let s = setup(
            &component(kind, "store", "", &sql),
            "apps:\n  - id: orders\n    token: tok-orders\n  - id: orders-x\n    token: tok-x\n",
        );
        let p = start(&s, &[]).expect("valid configuration");
        let key = unique("k");
        let secret = unique("secret");
        save(&p, "tok-orders", "store", &format!("|{key}|"), &secret).await;
        assert!(
            get(&p, "tok-orders", "store", &format!("|{key}|"))
                .await
                .contains(&secret)
        );
        for probe in [format!("|{key}|"), format!("{key}|"), format!("x|{key}|")] {
            let seen = get(&p, "tok-x", "store", &probe).await;
            assert!(!seen.contains(&secret), "{kind}: {probe}");
        }
    }
}

/// Attack 1b: a store named `billing` with `keyPrefix: name` on the same physical store as
/// an app-prefixed store writes exactly app `billing`'s keys.
#[actix_rt::test]
async fn a_store_name_cannot_share_an_apps_key_space() {
    let sql = SqlScratch::new();
    for kind in ["redis", "postgres", "jetstream", "sqlite", "mysql"] {
        let mut stores = component(kind, "rds", "", &sql);
        stores.push_str(&component(
            kind,
            "billing",
            "  - name: keyPrefix\n    value: name\n",
            &sql,
        ));
        let s = setup(
            &stores,
            "apps:\n  - id: billing\n    token: tok-billing\n  - id: orders\n    token: tok-orders\n",
        );
        match start(&s, &[]) {
            Err(stderr) => assert!(
                stderr.contains("store 'billing'")
                    && stderr.contains("store 'rds'")
                    && stderr.contains("app 'billing'"),
                "{kind}: {stderr}"
            ),
            Ok(p) => {
                let key = unique("k");
                let secret = unique("secret");
                save(&p, "tok-billing", "rds", &key, &secret).await;
                let seen = get(&p, "tok-orders", "billing", &key).await;
                assert!(
                    !seen.contains(&secret),
                    "{kind}: orders read billing's key through store 'billing'"
                );
                panic!("{kind}: a store name equal to an app id on one key space was accepted");
            }
        }
    }
    // In-memory stores never share data: the same names are fine there.
    let mut stores = component("memory", "rds", "", &sql);
    stores.push_str(&component(
        "memory",
        "billing",
        "  - name: keyPrefix\n    value: name\n",
        &sql,
    ));
    let s = setup(
        &stores,
        "apps:\n  - id: billing\n    token: tok-billing\n  - id: orders\n    token: tok-orders\n",
    );
    let p = start(&s, &[]).expect("separate in-memory stores");
    let key = unique("k");
    let secret = unique("secret");
    save(&p, "tok-billing", "rds", &key, &secret).await;
    assert!(
        !get(&p, "tok-orders", "billing", &key)
            .await
            .contains(&secret)
    );
}

/// Attack 4: with stores scoped to `orders` down (Redis, PostgreSQL, JetStream and MySQL, each
/// on a port where nothing listens, and SQLite on a file that cannot be created), `billing`'s health names none of them and is healthy; the
/// platform's unauthenticated probes are healthy; `orders` sees its stores down.
#[actix_rt::test]
async fn health_is_per_app() {
    let sql = SqlScratch::new();
    let down = |kind: &str, name: &str, port: u16| {
        let spec = match kind {
            "redis" => format!(
                "  type: state.redis\n  metadata:\n  - name: redisHost\n    value: 127.0.0.1:{port}\n  - name: dialTimeout\n    value: 200ms\n"
            ),
            "postgres" => format!(
                "  type: state.postgresql\n  metadata:\n  - name: connectionString\n    value: \"host=127.0.0.1 port={port} user=postgres dbname=test connect_timeout=1\"\n"
            ),
            "jetstream" => format!(
                "  type: state.jetstream\n  metadata:\n  - name: natsURL\n    value: nats://127.0.0.1:{port}\n  - name: bucket\n    value: down\n"
            ),
            "mysql" => format!(
                "  type: state.mysql\n  metadata:\n  - name: connectionString\n    value: \"root:@tcp(127.0.0.1:{port})/test\"\n  - name: timeoutInSeconds\n    value: \"1\"\n"
            ),
            // A file in a directory that does not exist: it cannot be opened or created.
            _ => format!(
                "  type: state.sqlite\n  metadata:\n  - name: connectionString\n    value: \"{}\"\n  - name: timeout\n    value: 1s\n",
                sql.sqlite_path("missing-dir/state.db")
            ),
        };
        format!(
            "---\nkind: Component\nmetadata:\n  name: {name}\nspec:\n{spec}scopes:\n  - orders\n"
        )
    };
    let mut stores = component("memory", "shared", "", &sql);
    stores.push_str(&down("redis", "orders-redis", 15011));
    stores.push_str(&down("postgres", "orders-pg", 15012));
    stores.push_str(&down("jetstream", "orders-js", 15013));
    stores.push_str(&down("mysql", "orders-mysql", 15014));
    stores.push_str(&down("sqlite", "orders-sqlite", 0));
    let s = setup(
        &stores,
        "apps:\n  - id: orders\n    token: tok-orders\n  - id: billing\n    token: tok-billing\nactors:\n  healthInterval: 100ms\n  requestTimeout: 1s\n",
    );
    let p = start(&s, &[]).expect("valid configuration");
    // `orders` sees its stores down, each named.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = call(
            &p,
            reqwest::Method::GET,
            "/v1.0/healthz/outbound",
            Some("tok-orders"),
            None,
        )
        .await;
        if status == 500
            && [
                "orders-redis",
                "orders-pg",
                "orders-js",
                "orders-mysql",
                "orders-sqlite",
            ]
            .iter()
            .all(|n| body.contains(n))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "orders never saw its stores down: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for path in ["/v1.0/healthz", "/v1.0/healthz/outbound"] {
        let (status, body) = call(&p, reqwest::Method::GET, path, Some("tok-billing"), None).await;
        assert_eq!(status, 204, "billing {path}: {body}");
        for (token, who) in [(None, "no token"), (Some("wrong"), "a wrong token")] {
            let (status, body) = call(&p, reqwest::Method::GET, path, token, None).await;
            assert_eq!(status, 204, "{who} {path}: {body}");
            assert!(!body.contains("orders"), "{body}");
        }
    }
    let (status, body) = call(
        &p,
        reqwest::Method::GET,
        "/v1.0/healthz",
        Some("tok-orders"),
        None,
    )
    .await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("orders-pg"), "{body}");
}

/// Attack 6: gRPC SaveState with `contentType: application/json` gets the HTTP door's JSON
/// checks: nesting deeper than `maxJsonDepth` refused, invalid JSON and invalid protobuf
/// answered `INVALID_ARGUMENT`.
#[actix_rt::test]
async fn grpc_json_values_get_the_http_checks() {
    let sql = SqlScratch::new();
    let s = setup(&component("memory", "store", "", &sql), "");
    let p = start(&s, &[]).expect("valid configuration");
    let mut client = DaprClient::connect(format!("http://{}", p.grpc))
        .await
        .unwrap();
    let save = |value: Vec<u8>| SaveStateRequest {
        store_name: "store".into(),
        states: vec![StateItem {
            key: "k".into(),
            value,
            metadata: [("contentType".to_owned(), "application/json".to_owned())].into(),
            ..StateItem::default()
        }],
    };
    let nested = |depth: usize| {
        let mut v = "[".repeat(depth);
        v.push_str(&"]".repeat(depth));
        v.into_bytes()
    };
    client
        .save_state(save(nested(64)))
        .await
        .expect("64 levels are fine");
    for depth in [65, 100, 10_000] {
        let e = client.save_state(save(nested(depth))).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{depth}: {e:?}");
        assert!(e.message().contains("64"), "{depth}: {}", e.message());
    }
    let e = client
        .save_state(save(b"{not json".to_vec()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");

    // A message that is not protobuf at all, sent as raw gRPC frames.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", p.grpc))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(
        "/dapr.proto.runtime.v1.Dapr/SaveState",
    );
    let e = grpc
        .unary::<Vec<u8>, Vec<u8>, _>(
            tonic::Request::new(vec![0xff, 0xff, 0xff, 0xff, 0x0f, 0x01]),
            path,
            RawCodec,
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
}

/// Bytes in, bytes out: lets a test send a message that is not protobuf.
#[derive(Clone, Copy)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }
    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        use bytes::Buf;
        let mut out = vec![0; src.remaining()];
        src.copy_to_slice(&mut out);
        Ok(Some(out))
    }
}

/// A JSON array of small objects, `bytes` long at least: costly to parse.
fn big_json(bytes: usize) -> Vec<u8> {
    let mut v = b"[".to_vec();
    while v.len() < bytes {
        v.extend_from_slice(br#"{"id":12345,"name":"abcdefgh","tags":["x","y"],"ok":true},"#);
    }
    v.pop();
    v.push(b']');
    v
}

/// The quiet client's GetState latencies while six others save 3.8 MB JSON values over gRPC.
fn quiet_latencies(config: &str) -> Vec<Duration> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let sql = SqlScratch::new();
    let s = setup(&component("memory", "store", "", &sql), config);
    let p = start(&s, &[]).expect("valid configuration");
    let addr = format!("http://{}", p.grpc);
    let stop = Arc::new(AtomicBool::new(false));
    let value = Arc::new(big_json(3_800_000));
    let flooders: Vec<_> = (0..6)
        .map(|i| {
            let (addr, stop, value) = (addr.clone(), stop.clone(), value.clone());
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let mut c = DaprClient::connect(addr)
                        .await
                        .unwrap()
                        .max_encoding_message_size(8 << 20);
                    let mut saved = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let req = SaveStateRequest {
                            store_name: "store".into(),
                            states: vec![StateItem {
                                key: format!("big-{i}"),
                                value: value.to_vec(),
                                metadata: [(
                                    "contentType".to_owned(),
                                    "application/json".to_owned(),
                                )]
                                .into(),
                                ..StateItem::default()
                            }],
                        };
                        // The app's body budget (quotas.maxBodyBytes) may refuse some
                        // of the six at once: that is the budget working, not a failure.
                        match c.save_state(req).await {
                            Ok(_) => saved += 1,
                            Err(e) if e.code() == tonic::Code::ResourceExhausted => {}
                            Err(e) => panic!("big save: {e:?}"),
                        }
                    }
                    saved
                })
            })
        })
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let latencies = rt.block_on(async {
        let mut c = DaprClient::connect(addr.clone()).await.unwrap();
        let get = || mecha::gateway::grpc::proto::runtime::GetStateRequest {
            store_name: "store".into(),
            key: "quiet".into(),
            ..Default::default()
        };
        c.get_state(get()).await.unwrap();
        // Let the flood start.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut out = Vec::new();
        let end = Instant::now() + Duration::from_secs(4);
        while Instant::now() < end {
            let t = Instant::now();
            c.get_state(get()).await.unwrap();
            out.push(t.elapsed());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        out
    });
    stop.store(true, Ordering::Relaxed);
    for f in flooders {
        assert!(f.join().unwrap() > 0, "the flood saved nothing");
    }
    let mut l = latencies;
    l.sort();
    l
}

/// Attack 6, load: big JSON values are parsed off the gRPC serving thread, so a quiet
/// client stays fast while six others save 3.8 MB JSON values. (Parsed on the serving
/// thread, as with `blockingParseThreshold: 1Gi`, the quiet client's median is above a
/// second in a debug build; off it, about a millisecond.)
#[test]
fn big_grpc_json_values_do_not_stall_other_calls() {
    // The flood's six 3.8 MB bodies fit the app's body budget, so this measures where the
    // values are parsed (the budget is held by tests/limits/redteam_resources.rs).
    let l = quiet_latencies("quotas:\n  maxBodyBytes: 64Mi\n");
    let (p50, p99) = (l[l.len() / 2], l[l.len() * 99 / 100]);
    eprintln!(
        "quiet gRPC client under a JSON flood: p50 {p50:?}, p99 {p99:?}, {} calls",
        l.len()
    );
    assert!(p50 < Duration::from_millis(50), "p50 {p50:?} p99 {p99:?}");
}
