//! Portability targets per app (`apps[].portableTo`, `apps[].portability`): every call of
//! the app is checked against each target type. Under `warn` (the default) a call the
//! target would serve differently is served and carries a `not-portable` finding (the
//! `mecha-lint` header or gRPC metadata, the log, `mecha_lint_findings_total`); under
//! `reject` it fails with `ERR_NOT_PORTABLE` (400, gRPC INVALID_ARGUMENT) before anything is
//! applied. Apps without targets are untouched. Both doors, on PostgreSQL (and Redis for a
//! key only Redis honours).

use crate::support;

use mecha::gateway::grpc::proto::runtime::{
    ExecuteStateTransactionRequest, GetMetadataRequest, GetStateRequest, SaveStateRequest,
    TransactionalStateOperation,
};
use serde_json::{Value, json};
use support::services::{database_url, drop_pg_table, redis_host};
use support::{Mecha, TestMecha, error_of, unique};
use tonic::Code;

const SETTINGS: &str = "apps:
  - id: orders
    token: tok-orders
    portableTo: [state.jetstream, state.redis]
  - id: strict
    token: tok-strict
    portableTo: [state.jetstream]
    portability: reject
  - id: free
    token: tok-free
  - id: cached
    token: tok-cached
    portableTo: [state.postgresql]
";

async fn start(yaml: &str) -> Mecha {
    TestMecha::empty()
        .yaml(yaml)
        .settings(SETTINGS)
        .start()
        .await
}

async fn http_tx(m: &Mecha, store: &str, token: &str, key: &str) -> reqwest::Response {
    let ops = json!({"operations": [{"operation": "upsert", "request": {"key": key, "value": 1}}]});
    m.client
        .post(m.url(&format!("/v1.0/state/{store}/transaction")))
        .header("dapr-api-token", token)
        .body(ops.to_string())
        .send()
        .await
        .unwrap()
}

async fn http_get(m: &Mecha, store: &str, token: &str, key: &str) -> reqwest::Response {
    m.client
        .get(m.url(&format!("/v1.0/state/{store}/{key}")))
        .header("dapr-api-token", token)
        .send()
        .await
        .unwrap()
}

fn grpc_tx(store: &str, token: &str, key: &str) -> tonic::Request<ExecuteStateTransactionRequest> {
    let mut req = tonic::Request::new(ExecuteStateTransactionRequest {
        store_name: store.into(),
        operations: vec![TransactionalStateOperation {
            operation_type: "upsert".into(),
            request: Some(support::item(key, b"1")),
        }],
        metadata: Default::default(),
    });
    req.metadata_mut()
        .insert("dapr-api-token", token.parse().unwrap());
    req
}

fn lint_header(r: &reqwest::Response) -> String {
    r.headers()
        .get("mecha-lint")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

const TX_JS: &str = "not-portable;target=state.jetstream;capability=transactions";

/// A PostgreSQL store on a table of its own, dropped on drop.
struct Pg {
    table: String,
}

impl Pg {
    fn new() -> Pg {
        Pg {
            table: format!("portable_to_{:08x}", rand::random::<u32>()),
        }
    }

    fn yaml(&self, name: &str) -> String {
        support::component(
            name,
            "state.postgresql",
            &[
                ("connectionString", database_url()),
                ("tableName", self.table.clone()),
            ],
        )
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        drop_pg_table(&self.table);
    }
}

async fn http_save(m: &Mecha, store: &str, token: &str, body: Value) -> reqwest::Response {
    m.client
        .post(m.url(&format!("/v1.0/state/{store}")))
        .header("dapr-api-token", token)
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

fn with_token<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut()
        .insert("dapr-api-token", token.parse().unwrap());
    req
}

fn grpc_lint(md: &tonic::metadata::MetadataMap) -> String {
    md.get("mecha-lint")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// The traffic on PostgreSQL for an app with `portableTo: [state.jetstream,
/// state.redis]` under `warn`, over HTTP and gRPC: a transaction gets a finding for
/// JetStream (Redis has transactions); a plain save and get, and a TTL (emulated on
/// JetStream, so portable with a receipt there) get none; `partitionKey` gets the store's
/// own `ignored-by-store` finding and no `not-portable` one (ignored here and on both
/// targets: nothing changes by moving). The report on the same traffic agrees: the only use
/// it calls not portable is the transactions the findings named.
#[actix_rt::test]
async fn warn_serves_the_call_and_says_which_target_it_breaks_on_both_doors() {
    let pg = Pg::new();
    let store = "pg";
    let m = start(&pg.yaml(store)).await;
    let key = unique("k");

    // HTTP.
    let r = http_save(&m, store, "tok-orders", json!([{"key": key, "value": 1}])).await;
    assert_eq!(r.status(), 204);
    assert_eq!(lint_header(&r), "", "a plain save is portable everywhere");
    let r = http_get(&m, store, "tok-orders", &key).await;
    assert_eq!(r.status(), 200);
    assert_eq!(lint_header(&r), "", "a plain read is portable everywhere");
    let r = http_tx(&m, store, "tok-orders", &key).await;
    assert_eq!(r.status(), 204);
    assert_eq!(lint_header(&r), TX_JS);
    let ttl = json!([{"key": key, "value": 2, "metadata": {"ttlInSeconds": "60"}}]);
    let r = http_save(&m, store, "tok-orders", ttl).await;
    assert_eq!(r.status(), 204);
    assert_eq!(
        lint_header(&r),
        "",
        "TTL is emulated on JetStream: portable"
    );
    let pk = json!([{"key": key, "value": 3, "metadata": {"partitionKey": "p"}}]);
    let r = http_save(&m, store, "tok-orders", pk).await;
    assert_eq!(r.status(), 204);
    let lint = lint_header(&r);
    assert!(
        lint.starts_with("ignored-by-store;key=partitionKey"),
        "{lint}"
    );
    assert!(!lint.contains("not-portable"), "{lint}");

    // gRPC: the same answers in the response metadata.
    let mut g = m.grpc().await;
    let ok = g
        .execute_state_transaction(grpc_tx(store, "tok-orders", &key))
        .await
        .expect("served under warn");
    assert_eq!(grpc_lint(ok.metadata()), TX_JS);
    let mut item = support::item(&key, b"4");
    item.metadata.insert("ttlInSeconds".into(), "60".into());
    let save = SaveStateRequest {
        store_name: store.into(),
        states: vec![item],
    };
    let ok = g.save_state(with_token(save, "tok-orders")).await.unwrap();
    assert_eq!(grpc_lint(ok.metadata()), "");
    let get = GetStateRequest {
        store_name: store.into(),
        key: key.clone(),
        ..Default::default()
    };
    let ok = g.get_state(with_token(get, "tok-orders")).await.unwrap();
    assert_eq!(grpc_lint(ok.metadata()), "");
    assert_eq!(ok.into_inner().data, b"4");

    // An app without targets: no finding.
    let r = http_tx(&m, store, "tok-free", &key).await;
    assert_eq!(r.status(), 204);
    assert_eq!(lint_header(&r), "");

    // Counted per app and store, as a lint finding with its own code (two transactions).
    let metrics = m.metrics().await;
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with("mecha_lint_findings_total{")
                && l.contains("app_id=\"orders\"")
                && l.contains("code=\"not-portable\"")
        })
        .unwrap_or_else(|| panic!("no not-portable count in\n{metrics}"));
    assert!(line.ends_with(" 2"), "{line}");
    assert!(
        !metrics
            .lines()
            .any(|l| l.contains("app_id=\"free\"") && l.contains("not-portable")),
        "{metrics}"
    );

    // The report on the same traffic agrees with the findings.
    let report = |target: &'static str| {
        let m = &m;
        async move {
            let url = format!("/v1.0-alpha1/mecha/portability?target={target}");
            let r = m
                .client
                .get(m.url(&url))
                .header("dapr-api-token", "tok-orders")
                .send()
                .await
                .unwrap();
            r.json::<Value>().await.unwrap()
        }
    };
    let js = report("state.jetstream").await;
    assert_eq!(js["verdict"], "not-portable", "{js}");
    let breaking: Vec<&str> = js["gaps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["target"] == "rejected" || g["target"] == "lost")
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(breaking, ["transactions"], "{js}");
    assert!(
        js["gaps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["name"] == "ttl" && g["target"] == "emulated"),
        "{js}"
    );
    let redis = report("state.redis").await;
    assert_eq!(
        redis["portable"], true,
        "no finding for Redis, portable: {redis}"
    );

    // Discovery: the app's targets and what they allow, in its extended metadata.
    let meta: Value = m
        .client
        .get(m.url("/v1.0/metadata"))
        .header("dapr-api-token", "tok-orders")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ext = &meta["extended"];
    assert_eq!(
        ext["mecha.portableTo"], "state.jetstream,state.redis",
        "{ext}"
    );
    assert_eq!(ext["mecha.portability"], "warn");
    let js_matrix = ext["mecha.portableTo.state.jetstream"].as_str().unwrap();
    assert!(
        js_matrix.contains("transaction") && js_matrix.contains("rejected"),
        "{js_matrix}"
    );
    let grpc_meta = g
        .get_metadata(with_token(GetMetadataRequest::default(), "tok-orders"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        grpc_meta.extended_metadata["mecha.portableTo"],
        "state.jetstream,state.redis"
    );
    let free = g
        .get_metadata(with_token(GetMetadataRequest::default(), "tok-free"))
        .await
        .unwrap()
        .into_inner();
    assert!(!free.extended_metadata.contains_key("mecha.portableTo"));
    m.running.stop(false).await;
}

/// Under `reject`, the transaction fails with `ERR_NOT_PORTABLE` on both doors and writes
/// nothing; what every target serves (a plain save and read, a TTL) is served.
#[actix_rt::test]
async fn reject_refuses_before_anything_is_applied_on_both_doors() {
    let pg = Pg::new();
    let store = "pg";
    let m = start(&pg.yaml(store)).await;
    let key = unique("k");

    let r = http_tx(&m, store, "tok-strict", &key).await;
    let (status, code, message, _) = error_of(r).await;
    assert_eq!(status, 400);
    assert_eq!(code, "ERR_NOT_PORTABLE");
    for part in ["strict", store, "state.jetstream", "transactions"] {
        assert!(message.contains(part), "{part} not in {message}");
    }
    let r = http_get(&m, store, "tok-strict", &key).await;
    assert_eq!(r.status(), 204, "nothing was written");

    let mut g = m.grpc().await;
    let e = g
        .execute_state_transaction(grpc_tx(store, "tok-strict", &key))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("state.jetstream"), "{e:?}");
    let r = http_get(&m, store, "tok-strict", &key).await;
    assert_eq!(r.status(), 204, "nothing was written over gRPC either");

    let ttl = json!([{"key": key, "value": 2, "metadata": {"ttlInSeconds": "60"}}]);
    let r = http_save(&m, store, "tok-strict", ttl).await;
    assert_eq!(r.status(), 204);
    let get = GetStateRequest {
        store_name: store.into(),
        key: key.clone(),
        ..Default::default()
    };
    let got = g.get_state(with_token(get, "tok-strict")).await.unwrap();
    assert_eq!(got.into_inner().data, b"2");
    m.running.stop(false).await;
}

/// A request-metadata key the store honours and a target does not: `queryIndexName` on a
/// Redis store, for an app that must stay movable to PostgreSQL.
#[actix_rt::test]
async fn a_key_only_this_store_honours_is_a_finding_for_the_target() {
    let store = unique("pt-redis");
    let yaml = support::component(&store, "state.redis", &redis_metadata());
    let m = start(&yaml).await;
    let key = unique("k");
    let r = m
        .client
        .get(m.url(&format!(
            "/v1.0/state/{store}/{key}?metadata.queryIndexName=idx"
        )))
        .header("dapr-api-token", "tok-cached")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let lint = lint_header(&r);
    assert!(
        lint.contains("not-portable;target=state.postgresql;key=queryIndexName;at=request"),
        "{lint}"
    );
    // Another app on the same store, without targets: nothing to say (Redis honours it).
    let r = m
        .client
        .get(m.url(&format!(
            "/v1.0/state/{store}/{key}?metadata.queryIndexName=idx"
        )))
        .header("dapr-api-token", "tok-free")
        .send()
        .await
        .unwrap();
    assert_eq!(lint_header(&r), "");
    m.running.stop(false).await;
}

fn redis_metadata() -> Vec<(&'static str, String)> {
    vec![("redisHost", redis_host())]
}

#[test]
fn settings_name_the_unknown_type_and_the_bad_mode() {
    let bad = "apps:\n  - id: a\n    token: t\n    portableTo: [state.jetstrem, state.redis]\n    portability: block\n";
    let e = mecha::config::Settings::parse(std::path::Path::new("mecha.yaml"), bad)
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(e.contains("apps[0].portableTo[0]"), "{e}");
    assert!(e.contains("did you mean 'state.jetstream'"), "{e}");
    assert!(e.contains("apps[0].portability"), "{e}");
    assert!(e.contains("warn or reject"), "{e}");
}
