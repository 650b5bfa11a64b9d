//! Hot reload: a policy flip applies to the next request while a call in flight
//! finishes on the old configuration; stores added and removed under load; a token change;
//! an invalid or restart-only reload changes nothing; SIGHUP and file-change triggers.
//!
//! In-process tests load real files (as the binary does) and reload through
//! `Running::reload` or the file check; the binary tests send SIGHUP and read the log and
//! `/metrics` (one process each, so the metric values are theirs alone).

use crate::support;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mecha::actors::{StateStore, StoreError, StoreFactory};
use mecha::app::{Options, start};
use mecha::capabilities::CapabilitySet;
use mecha::config::{Config, ConfigSources, LoadedComponent};
use mecha::model::{DeleteRequest, GetRequest, SetRequest, StateEntry};
use mecha::reload::Outcome;
use serde_json::json;
use support::binary::Process;
use support::{Mecha, error_of, receipt_of, unique};

/// A configuration on disk: `mecha.yaml` and a resources directory.
struct Files {
    _dir: tempfile::TempDir,
    config: PathBuf,
    resources: PathBuf,
}

impl Files {
    fn new(mecha_yaml: &str, components: &[(&str, &str)]) -> Files {
        let dir = tempfile::tempdir().unwrap();
        let resources = dir.path().join("components");
        std::fs::create_dir(&resources).unwrap();
        let f = Files {
            config: dir.path().join("mecha.yaml"),
            resources,
            _dir: dir,
        };
        f.write_config(mecha_yaml);
        for (name, text) in components {
            f.write_component(name, text);
        }
        f
    }

    /// Writes atomically (a file check never sees half a file).
    fn write(path: &Path, text: &str) {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    fn write_config(&self, text: &str) {
        Files::write(&self.config, text);
    }

    fn write_component(&self, name: &str, text: &str) {
        Files::write(&self.resources.join(name), text);
    }

    fn remove_component(&self, name: &str) {
        std::fs::remove_file(self.resources.join(name)).unwrap();
    }

    fn sources(&self) -> ConfigSources {
        ConfigSources {
            config_file: Some(self.config.clone()),
            resources_path: Some(self.resources.clone()),
            tls_flags: Default::default(),
        }
    }

    fn args(&self) -> Vec<String> {
        vec![
            "--config".into(),
            self.config.to_str().unwrap().into(),
            "--resources-path".into(),
            self.resources.to_str().unwrap().into(),
        ]
    }

    /// Starts Mecha in process from these files, with reloads enabled.
    async fn start(&self) -> Mecha {
        let config = Config::load(&self.sources()).expect("valid test configuration");
        let opts = Options {
            http_port: 0,
            grpc_port: 0,
            metrics_port: 0,
            app_id: "testapp".into(),
            handle_signals: false,
            config_sources: Some(self.sources()),
            ..Options::default()
        };
        let running = start(config, opts).await.expect("mecha starts");
        let base = format!("http://{}", running.http_addr);
        Mecha {
            running,
            base,
            client: reqwest::Client::new(),
        }
    }
}

fn memory(name: &str) -> String {
    format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n  type: state.in-memory\n  version: v1\n"
    )
}

/// A nats-server with JetStream on a private port, to freeze with SIGSTOP.
struct PrivateNats {
    child: Child,
    _dir: tempfile::TempDir,
}

impl PrivateNats {
    const PORT: u16 = 14361;

    fn start() -> PrivateNats {
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new("nats-server")
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &PrivateNats::PORT.to_string(),
                "-js",
            ])
            .arg("-sd")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server is installed (scripts/services.sh installs it)");
        let nats = PrivateNats { child, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", PrivateNats::PORT)).is_err() {
            assert!(
                Instant::now() < deadline,
                "private nats-server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        nats
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
        if sig == "-STOP" {
            support::servers::wait_stopped(&self.child.id().to_string());
        }
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `bulk` flips from `emulate` to `reject` on a JetStream store. A bulk save in
/// flight (NATS frozen with SIGSTOP while it runs) finishes on the configuration it started
/// with (204, `bulk=emulated`, both items written); the next bulk save is rejected at once.
#[actix_rt::test]
async fn policy_flip_applies_to_the_next_request_while_a_call_in_flight_finishes() {
    let nats = PrivateNats::start();
    let bucket = unique("reload").replace('-', "_");
    let component = format!(
        "kind: Component\nmetadata:\n  name: kv\nspec:\n  type: state.jetstream\n  metadata:\n  - name: natsURL\n    value: nats://127.0.0.1:{}\n  - name: bucket\n    value: {bucket}\n  - name: requestTimeout\n    value: 8s\n",
        PrivateNats::PORT
    );
    let policy = |action: &str| {
        format!(
            "server:\n  reloadInterval: 0s\nactors:\n  requestTimeout: 10s\nstores:\n  kv:\n    bulk: {action}\n"
        )
    };
    let files = Files::new(&policy("emulate"), &[("kv.yaml", &component)]);
    let m = files.start().await;
    let save = |m: &Mecha, a: &str, b: &str| {
        let body = json!([{"key": a, "value": 1}, {"key": b, "value": 2}]).to_string();
        m.client.post(m.url("/v1.0/state/kv")).body(body).send()
    };
    let r = save(&m, "a", "b").await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(receipt_of(&r).as_deref(), Some("bulk=emulated"));

    // A bulk save blocked on the frozen store.
    nats.signal("-STOP");
    let in_flight = actix_rt::spawn(save(&m, "c", "d"));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        !in_flight.is_finished(),
        "the store is frozen: the call must be in flight"
    );

    files.write_config(&policy("reject"));
    match m.running.reload().await.unwrap() {
        Outcome::Applied { version, changes } => {
            assert_eq!(version, 2);
            assert_eq!(changes, vec!["store kv changed (policy)".to_owned()]);
        }
        other => panic!("reload refused: {other:?}"),
    }
    assert_eq!(m.running.catalog().version(), 2);

    // The next bulk save is refused by the new policy, without waiting for the store.
    let started = Instant::now();
    let r = save(&m, "e", "f").await.unwrap();
    let (status, code, msg, _) = error_of(r).await;
    assert_eq!(
        (status, code.as_str()),
        (500, "ERR_STATE_STORE_NOT_SUPPORTED")
    );
    assert!(
        msg.contains("capability bulk (BULK_NATIVE), policy: reject"),
        "{msg}"
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(
        !in_flight.is_finished(),
        "the old call still waits for the store"
    );

    // The store comes back: the call in flight completes on the old configuration.
    nats.signal("-CONT");
    let r = in_flight.await.unwrap().unwrap();
    assert_eq!(r.status(), 204, "{:?}", r.text().await);
    assert_eq!(receipt_of(&r).as_deref(), Some("bulk=emulated"));
    for key in ["a", "b", "c", "d"] {
        let r = m.get(&format!("/v1.0/state/kv/{key}")).await;
        assert_eq!(r.status(), 200, "{key} was acknowledged and must be there");
    }
    for key in ["e", "f"] {
        let r = m.get(&format!("/v1.0/state/kv/{key}")).await;
        assert_eq!(r.status(), 204, "{key} was refused and must not be written");
    }
    m.running.stop(true).await;
    drop(nats);
}

/// A store added and one removed (files changed, picked up by the file check)
/// while four clients hammer two other stores: zero failed requests on those; the in-memory
/// stores keep their data (their backends are kept); the new store serves; the removed one
/// answers daprd's "not found".
#[actix_rt::test]
async fn stores_added_and_removed_under_load_by_file_change() {
    let files = Files::new(
        "server:\n  reloadInterval: 100ms\n",
        &[
            ("a.yaml", &memory("a")),
            ("b.yaml", &memory("b")),
            ("gone.yaml", &memory("gone")),
        ],
    );
    let m = Arc::new(files.start().await);
    m.save("a", "kept", json!("before")).await;
    m.save("gone", "x", json!(1)).await;

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..4 {
        let (m, stop) = (m.clone(), stop.clone());
        clients.push(actix_rt::spawn(async move {
            let store = if c % 2 == 0 { "a" } else { "b" };
            let (mut ok, mut failed) = (0u32, Vec::new());
            let mut i = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let key = format!("c{c}-{i}");
                let body = json!([{"key": key, "value": i}]).to_string();
                let r = m.post(&format!("/v1.0/state/{store}"), body).await;
                if r.status() == 204 {
                    let r = m.get(&format!("/v1.0/state/{store}/{key}")).await;
                    if r.status() == 200 {
                        ok += 1;
                    } else {
                        failed.push(format!("get {key}: {}", r.status()));
                    }
                } else {
                    failed.push(format!("save {key}: {}", r.status()));
                }
                i += 1;
            }
            (ok, failed)
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    files.remove_component("gone.yaml");
    files.write_component("fresh.yaml", &memory("fresh"));
    // Two file operations: one or two reloads, whichever the file check sees.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let c = m.running.catalog();
        if c.store_named("fresh").is_some() && c.store_named("gone").is_none() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the file change was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    for c in clients {
        let (ok, failed) = c.await.unwrap();
        assert!(
            failed.is_empty(),
            "failed requests on unchanged stores: {failed:?}"
        );
        total += ok;
    }
    assert!(total > 20, "the clients made too few requests: {total}");

    let r = m.get("/v1.0/state/a/kept").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "\"before\"");
    m.save("fresh", "k", json!(2)).await;
    assert_eq!(m.get("/v1.0/state/fresh/k").await.status(), 200);
    let (status, code, msg, _) = error_of(m.get("/v1.0/state/gone/x").await).await;
    assert_eq!((status, code.as_str()), (400, "ERR_STATE_STORE_NOT_FOUND"));
    assert_eq!(msg, "state store gone is not found");
    let meta: serde_json::Value = m.get("/v1.0/metadata").await.json().await.unwrap();
    let mut names: Vec<&str> = meta["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["a", "b", "fresh"]);
    m.running.stop(true).await;
}

/// An app's token changes in `mecha.yaml`: the new token works and the old one is
/// refused after the reload, without a restart; the app's data stays.
#[actix_rt::test]
async fn a_token_change_applies_without_restart() {
    let cfg = |token: &str| {
        format!("server:\n  reloadInterval: 0s\napps:\n  - id: orders\n    token: {token}\n")
    };
    let files = Files::new(&cfg("old-token"), &[("s.yaml", &memory("s"))]);
    let m = files.start().await;
    let call = |token: &'static str, path: &str| {
        m.client
            .get(m.url(path))
            .header("dapr-api-token", token)
            .send()
    };
    let save = m
        .client
        .post(m.url("/v1.0/state/s"))
        .header("dapr-api-token", "old-token")
        .body(json!([{"key": "k", "value": "v"}]).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(save.status(), 204);
    assert_eq!(
        call("new-token", "/v1.0/state/s/k").await.unwrap().status(),
        401
    );

    files.write_config(&cfg("new-token"));
    let outcome = m.running.reload().await.unwrap();
    assert_eq!(
        outcome,
        Outcome::Applied {
            version: 2,
            changes: vec!["app orders changed".into()]
        }
    );
    assert_eq!(
        call("old-token", "/v1.0/state/s/k").await.unwrap().status(),
        401
    );
    let r = call("new-token", "/v1.0/state/s/k").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "\"v\"");
    m.running.stop(true).await;
}

/// An app's portability targets and mode change on reload: the next call is judged by the
/// new ones (no target: served quietly; `portableTo` with `reject`: refused).
#[actix_rt::test]
async fn portability_targets_change_on_reload() {
    let cfg = |extra: &str| {
        format!("server:\n  reloadInterval: 0s\napps:\n  - id: orders\n    token: tok\n{extra}")
    };
    let files = Files::new(&cfg(""), &[("s.yaml", &memory("s"))]);
    let m = files.start().await;
    let tx = || {
        m.client
            .post(m.url("/v1.0/state/s/transaction"))
            .header("dapr-api-token", "tok")
            .body(json!({"operations": [{"operation": "upsert", "request": {"key": "k", "value": 1}}]}).to_string())
            .send()
    };
    let r = tx().await.unwrap();
    assert_eq!(r.status(), 204);
    assert!(r.headers().get("mecha-lint").is_none());

    files.write_config(&cfg(
        "    portableTo: [state.jetstream]\n    portability: reject\n",
    ));
    let outcome = m.running.reload().await.unwrap();
    assert_eq!(
        outcome,
        Outcome::Applied {
            version: 2,
            changes: vec!["app orders changed".into()]
        }
    );
    let (status, code, message, _) = error_of(tx().await.unwrap()).await;
    assert_eq!(
        (status, code.as_str()),
        (400, "ERR_NOT_PORTABLE"),
        "{message}"
    );

    files.write_config(&cfg("    portableTo: [state.redis]\n"));
    m.running.reload().await.unwrap();
    let r = tx().await.unwrap();
    assert_eq!(r.status(), 204, "Redis has transactions");
    m.running.stop(true).await;
}

/// A store whose writes wait for a gate, counting its live instances.
struct Gated {
    gate: Arc<tokio::sync::Semaphore>,
    live: Arc<AtomicUsize>,
}

impl Drop for Gated {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}

#[async_trait::async_trait]
impl StateStore for Gated {
    async fn get(&self, _: GetRequest) -> Result<Option<StateEntry>, StoreError> {
        Ok(None)
    }
    async fn set(&self, _: SetRequest) -> Result<(), StoreError> {
        let _permit = self.gate.acquire().await.expect("gate open");
        Ok(())
    }
    async fn delete(&self, _: DeleteRequest) -> Result<(), StoreError> {
        Ok(())
    }
}

struct GatedFactory {
    gate: Arc<tokio::sync::Semaphore>,
    live: Arc<AtomicUsize>,
}

impl StoreFactory for GatedFactory {
    fn create(&self) -> Result<Arc<dyn StateStore>, StoreError> {
        self.live.fetch_add(1, Ordering::SeqCst);
        Ok(Arc::new(Gated {
            gate: self.gate.clone(),
            live: self.live.clone(),
        }))
    }
    fn capabilities(&self) -> CapabilitySet {
        CapabilitySet::of(&[])
    }
}

/// A removed store drains. A write in flight on it when the reload applies
/// completes (204); new calls get "not found" at once; once the write is done, its shards
/// stop and drop their store instances.
#[actix_rt::test]
async fn a_removed_store_drains_its_calls_then_drops_its_shards() {
    let files = Files::new(
        "server:\n  reloadInterval: 0s\n",
        &[("a.yaml", &memory("a"))],
    );
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let live = Arc::new(AtomicUsize::new(0));
    let factory = Arc::new(GatedFactory {
        gate: gate.clone(),
        live: live.clone(),
    });
    let mut config = Config::load(&files.sources()).unwrap();
    config
        .components
        .push(LoadedComponent::custom("gated", "state.test", factory));
    let opts = Options {
        http_port: 0,
        grpc_port: 0,
        metrics_port: 0,
        handle_signals: false,
        config_sources: Some(files.sources()),
        ..Options::default()
    };
    let running = start(config, opts).await.unwrap();
    let m = Mecha {
        base: format!("http://{}", running.http_addr),
        running,
        client: reqwest::Client::new(),
    };
    assert!(live.load(Ordering::SeqCst) > 0);
    let body = json!([{"key": "k", "value": 1}]).to_string();
    let in_flight = actix_rt::spawn(m.client.post(m.url("/v1.0/state/gated")).body(body).send());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!in_flight.is_finished());

    // The files do not have it: the reload removes it.
    let Outcome::Applied { changes, .. } = m.running.reload().await.unwrap() else {
        panic!("reload refused");
    };
    assert_eq!(changes, ["store gated removed (draining)"]);
    let (status, code, _, _) = error_of(m.get("/v1.0/state/gated/k").await).await;
    assert_eq!((status, code.as_str()), (400, "ERR_STATE_STORE_NOT_FOUND"));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!in_flight.is_finished());
    assert!(
        live.load(Ordering::SeqCst) > 0,
        "the store is draining: its shards must stay while a call runs"
    );

    gate.add_permits(1);
    let r = in_flight.await.unwrap().unwrap();
    assert_eq!(r.status(), 204, "the call in flight completes");
    let deadline = Instant::now() + Duration::from_secs(5);
    while live.load(Ordering::SeqCst) > 0 {
        assert!(
            Instant::now() < deadline,
            "the removed store's shards did not stop: {} instance(s) left",
            live.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    m.save("a", "k", json!(1)).await;
    m.running.stop(true).await;
}

/// Dapr resiliency files reload with the components: a new breaker applies to its store
/// (and only it changes); a document naming an undefined policy is refused.
#[actix_rt::test]
async fn resiliency_files_reload_all_or_nothing() {
    let files = Files::new(
        "server:\n  reloadInterval: 0s\n",
        &[("s.yaml", &memory("s")), ("t.yaml", &memory("t"))],
    );
    let m = files.start().await;
    m.save("s", "k", json!(1)).await;
    let doc = |breaker: &str| {
        format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata:\n  name: r\nspec:\n  policies:\n    circuitBreakers:\n      cb:\n        maxRequests: 1\n        timeout: 30s\n        trip: consecutiveFailures >= 5\n  targets:\n    components:\n      s:\n        outbound:\n          circuitBreaker: {breaker}\n"
        )
    };
    files.write_component("resiliency.yaml", &doc("cb"));
    let outcome = m.running.reload().await.unwrap();
    assert_eq!(
        outcome,
        Outcome::Applied {
            version: 2,
            changes: vec!["store s changed (resiliency)".into()]
        }
    );
    let catalog = m.running.catalog();
    assert!(
        catalog
            .store_named("s")
            .unwrap()
            .resilience
            .breaker
            .is_some()
    );
    assert!(
        catalog
            .store_named("t")
            .unwrap()
            .resilience
            .breaker
            .is_none()
    );
    assert_eq!(m.get("/v1.0/state/s/k").await.status(), 200);

    files.write_component("resiliency.yaml", &doc("nosuch"));
    let Outcome::Refused { problems, .. } = m.running.reload().await.unwrap() else {
        panic!("an undefined policy must be refused");
    };
    assert!(problems.join("\n").contains("nosuch"), "{problems:?}");
    assert_eq!(m.running.catalog().version(), 2);
    assert!(
        m.running
            .catalog()
            .store_named("s")
            .unwrap()
            .resilience
            .breaker
            .is_some()
    );
    m.running.stop(true).await;
}

/// An invalid configuration (three problems in two files, next to a valid new store) and a restart-only change are
/// refused as a whole, naming every problem; the old version keeps serving unchanged.
#[actix_rt::test]
async fn an_invalid_reload_changes_nothing() {
    let files = Files::new(
        "server:\n  reloadInterval: 0s\nstores:\n  s:\n    bulk: emulate\n",
        &[("s.yaml", &memory("s"))],
    );
    let m = files.start().await;
    m.save("s", "k", json!(1)).await;
    // A valid part (a new store) next to invalid ones: nothing of it may apply.
    files.write_component("t.yaml", &memory("t"));
    files.write_component(
        "bad.yaml",
        "kind: Component\nmetadata:\n  name: bad\nspec:\n  type: state.nope\n",
    );
    files.write_config(
        "server:\n  reloadInterval: 0s\napps:\n  - id: orders\n    token: t\n    stores:\n      elsewhere:\n        lint: reject\nstores:\n  nosuch:\n    bulk: emulate\n",
    );
    let Outcome::Refused { version, problems } = m.running.reload().await.unwrap() else {
        panic!("an invalid configuration must be refused");
    };
    assert_eq!(version, 1);
    let all = problems.join("\n");
    assert!(
        all.contains("unknown state store type 'state.nope'"),
        "{all}"
    );
    assert!(
        all.contains("app 'orders': no state store named 'elsewhere'"),
        "{all}"
    );
    assert!(all.contains("no state store named 'nosuch'"), "{all}");
    assert_eq!(m.running.catalog().version(), 1);
    assert_eq!(
        error_of(m.get("/v1.0/state/t/k").await).await.1,
        "ERR_STATE_STORE_NOT_FOUND"
    );
    assert_eq!(m.get("/v1.0/state/s/k").await.status(), 200);

    // Valid, but a restart-only setting changed: refused, naming the field.
    files.remove_component("bad.yaml");
    files.write_config("server:\n  reloadInterval: 0s\n  workers: 7\n");
    let Outcome::Refused { problems, .. } = m.running.reload().await.unwrap() else {
        panic!("a restart-only change must be refused");
    };
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("server.workers changed (0 -> 7)"),
        "{problems:?}"
    );
    assert!(problems[0].contains("needs a restart"), "{problems:?}");
    assert_eq!(m.running.catalog().version(), 1);
    assert_eq!(
        error_of(m.get("/v1.0/state/t/k").await).await.1,
        "ERR_STATE_STORE_NOT_FOUND"
    );

    // Fixed: applies. The policy of `s` changes (new shards over the same backend): its
    // in-memory data stays.
    files.write_config("server:\n  reloadInterval: 0s\nstores:\n  s:\n    partitionKey: ignore\n");
    let Outcome::Applied { version, changes } = m.running.reload().await.unwrap() else {
        panic!("a valid configuration must apply");
    };
    assert_eq!(version, 2);
    assert_eq!(changes, ["store s changed (policy)", "store t added"]);
    assert_eq!(m.get("/v1.0/state/t/k").await.status(), 204);
    assert_eq!(m.get("/v1.0/state/s/k").await.status(), 200);
    m.running.stop(true).await;
}

/// The binary with its log and metrics.
struct Binary {
    process: Process,
    /// `http://` and the HTTP API's address.
    http: String,
    /// The `/metrics` URL.
    metrics: String,
}

impl Binary {
    fn spawn(files: &Files) -> Binary {
        let args = files.args();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let process = Process::spawn(&args, &[]);
        Binary {
            http: process.base(),
            metrics: format!("http://{}/metrics", process.metrics),
            process,
        }
    }

    fn sighup(&self) {
        let ok = Command::new("kill")
            .args(["-HUP", &self.process.pid().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Waits for a log line containing `text`.
    async fn wait_log(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.log_has(text) {
            assert!(
                Instant::now() < deadline,
                "no log line with {text:?}:\n{}",
                self.process.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn log_has(&self, text: &str) -> bool {
        self.process.lines().iter().any(|l| l.contains(text))
    }

    async fn metric(&self, series: &str) -> Option<f64> {
        let text = reqwest::get(&self.metrics)
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
    }
}

/// Through the binary: SIGHUP applies a change (a store added, a policy changed),
/// the log names the live version and what changed, and `/metrics` shows the version and
/// the applied and refused reloads; an invalid file on SIGHUP is refused with every problem
/// logged, and the running version keeps serving.
#[actix_rt::test]
async fn sighup_reloads_and_the_log_and_metrics_show_the_live_version() {
    let files = Files::new(
        "server:\n  reloadInterval: 0s\n",
        &[("s.yaml", &memory("s"))],
    );
    let bin = Binary::spawn(&files);
    let client = reqwest::Client::new();
    assert_eq!(bin.metric("mecha_config_version ").await, Some(1.0));
    assert_eq!(
        bin.metric("mecha_config_reloads_total{result=\"applied\"} ")
            .await,
        Some(0.0)
    );
    let save = |store: &str| {
        client
            .post(format!("{}/v1.0/state/{store}", bin.http))
            .body(json!([{"key": "k", "value": 1}]).to_string())
            .send()
    };
    assert_eq!(save("s").await.unwrap().status(), 204);
    assert_eq!(save("t").await.unwrap().status(), 400);

    files.write_component("t.yaml", &memory("t"));
    files.write_config("server:\n  reloadInterval: 0s\nstores:\n  s:\n    lint: reject\n");
    bin.sighup();
    bin.wait_log("configuration reloaded: version 2 is live")
        .await;
    assert!(bin.log_has("trigger=\"SIGHUP\""));
    assert!(bin.log_has("store t added"));
    assert!(bin.log_has("store s changed (lint)"));
    assert_eq!(save("t").await.unwrap().status(), 204);
    assert_eq!(bin.metric("mecha_config_version ").await, Some(2.0));
    assert_eq!(
        bin.metric("mecha_config_reloads_total{result=\"applied\"} ")
            .await,
        Some(1.0)
    );

    // Two problems in two files: both logged, nothing applied.
    files.write_component(
        "u.yaml",
        "kind: Component\nmetadata:\n  name: u\nspec:\n  type: state.nope\n",
    );
    files.write_config("server:\n  reloadInterval: 0s\nstores:\n  s:\n    lint: sometimes\n");
    bin.sighup();
    bin.wait_log("configuration reload refused: version 2 keeps serving")
        .await;
    assert!(bin.log_has("unknown state store type 'state.nope'"));
    assert!(bin.log_has("stores.s"));
    assert_eq!(
        bin.metric("mecha_config_reloads_total{result=\"refused\"} ")
            .await,
        Some(1.0)
    );
    assert_eq!(bin.metric("mecha_config_version ").await, Some(2.0));
    assert_eq!(save("t").await.unwrap().status(), 204);
    assert_eq!(save("u").await.unwrap().status(), 400);
}

/// The file check of the binary: a changed file reloads without a signal; an unchanged one
/// never does (the version stays put between checks).
#[actix_rt::test]
async fn a_file_change_reloads_the_binary_without_a_signal() {
    let files = Files::new(
        "server:\n  reloadInterval: 100ms\n",
        &[("s.yaml", &memory("s"))],
    );
    let bin = Binary::spawn(&files);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        bin.metric("mecha_config_version ").await,
        Some(1.0),
        "nothing changed"
    );
    files.write_component("t.yaml", &memory("t"));
    bin.wait_log("configuration reloaded: version 2 is live")
        .await;
    assert!(bin.log_has("trigger=\"file change\""));
    let r = reqwest::Client::new()
        .get(format!("{}/v1.0/state/t/k", bin.http))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(bin.metric("mecha_config_version ").await, Some(2.0));
}

/// A component written in place in two steps, the second (its `scopes:`) 300 ms after the
/// first: the first part parses on its own and would open the store to every app. The
/// file-change reload waits for the file to settle, so the unscoped half is never applied.
#[actix_rt::test]
async fn a_component_written_in_place_in_parts_is_applied_only_whole() {
    let files = Files::new(
        "server:\n  reloadInterval: 100ms\napps:\n  - id: orders\n    token: t-orders\n  - id: billing\n    token: t-billing\n",
        &[("a.yaml", &memory("a"))],
    );
    let m = files.start().await;
    let status = |token: &'static str| {
        let req = m
            .client
            .get(m.url("/v1.0/state/secret/k"))
            .header("dapr-api-token", token)
            .send();
        async move { req.await.unwrap().status().as_u16() }
    };
    let path = files.resources.join("secret.yaml");
    std::fs::write(
        &path,
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: secret\nspec:\n  type: state.in-memory\n  version: v1\n",
    )
    .unwrap();
    let watch_billing = |until: Instant| async move {
        while Instant::now() < until {
            let s = status("t-billing").await;
            assert!(s >= 400, "billing reached the half-written store: {s}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    watch_billing(Instant::now() + Duration::from_millis(300)).await;
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"scopes:\n  - orders\n").unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while status("t-orders").await != 204 {
        assert!(
            Instant::now() < deadline,
            "the whole file was never applied"
        );
        let s = status("t-billing").await;
        assert!(s >= 400, "billing reached the store: {s}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    watch_billing(Instant::now() + Duration::from_millis(300)).await;
    m.running.stop(true).await;
}
