//! Fault tests that need a store to fail for real, besides the frozen Redis and
//! PostgreSQL of `redis_failure.rs` and `resiliency_postgres.rs`:
//!
//! * Redis killed and restarted under a circuit breaker: fail fast while open, recovery
//!   without restarting Mecha, every acknowledged write present (the test's Redis fsyncs
//!   each write, so a kill loses nothing it acknowledged);
//! * bulk calls feed the breaker (a bulk call answers per item, so before this a store that
//!   failed every bulk call never tripped it);
//! * PostgreSQL crashed (immediate shutdown) and restarted, the same way;
//! * NATS JetStream frozen, then killed and restarted, the same way;
//! * retries happen only where they are safe, and never past the request's deadline.
//!
//! They fail (never skip) when `redis-server` or `nats-server` is missing: `scripts/test.sh`
//! installs them.

use crate::support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use mecha::actors::{StateStore, StoreError, StoreFactory};
use mecha::capabilities::{Capability, CapabilitySet};
use mecha::model::{DeleteRequest, GetRequest, SetRequest, StateEntry};
use serde_json::json;
use support::servers::{PrivateServer, durable_redis, jetstream, postgres};
use support::{Mecha, TestMecha, error_of, unique};

/// A breaker that trips after three consecutive failures and probes again after 1 s, a
/// 400 ms attempt timeout and a short retry for reads, on store `store`.
fn resiliency(store: &str) -> String {
    format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata:\n  name: res\nspec:\n  policies:\n    timeouts:\n      short: 400ms\n    retries:\n      reads:\n        policy: constant\n        duration: 20ms\n        maxRetries: 1\n    circuitBreakers:\n      cb:\n        maxRequests: 1\n        timeout: 1s\n        trip: consecutiveFailures >= 3\n  targets:\n    components:\n      {store}:\n        outbound:\n          timeout: short\n          retry: reads\n          circuitBreaker: cb\n"
    )
}

fn redis_component(name: &str, addr: &str) -> String {
    format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n  type: state.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    value: \"{addr}\"\n  - name: dialTimeout\n    value: 300ms\n  - name: readTimeout\n    value: 300ms\n"
    )
}

fn jetstream_component(name: &str, port: u16, bucket: &str) -> String {
    format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n  type: state.jetstream\n  version: v1\n  metadata:\n  - name: natsURL\n    value: nats://127.0.0.1:{port}\n  - name: bucket\n    value: {bucket}\n  - name: connectTimeout\n    value: 300ms\n  - name: requestTimeout\n    value: 300ms\n"
    )
}

/// Mecha serving `component` (store `store`) under [`resiliency`].
async fn start(component: &str, store: &str) -> Arc<Mecha> {
    Arc::new(
        TestMecha::empty()
            .yaml(&format!("{component}---\n{}", resiliency(store)))
            .settings("actors:\n  requestTimeout: 1s\n  healthInterval: 200ms\n")
            .start()
            .await,
    )
}

/// Four writers, each writing its own keys in order until `stop`; they return the keys
/// Mecha acknowledged.
fn writers(
    m: &Arc<Mecha>,
    store: &str,
    prefix: &str,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Vec<String>>> {
    (0..4)
        .map(|w| {
            let (m, stop, prefix) = (m.clone(), stop.clone(), prefix.to_owned());
            let path = format!("/v1.0/state/{store}");
            tokio::spawn(async move {
                let mut acked = Vec::new();
                let mut i = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("{prefix}-{w}-{i}");
                    let body = json!([{"key": key, "value": i}]).to_string();
                    if m.post(&path, body).await.status() == 204 {
                        acked.push(key);
                    }
                    i += 1;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                acked
            })
        })
        .collect()
}

/// Reads until the breaker answers open; every call on the way is bounded by the attempt
/// timeout (plus the one read retry). Returns when it opened.
async fn until_open(m: &Mecha, store: &str, since: Instant) -> Instant {
    loop {
        let started = Instant::now();
        let r = m.get(&format!("/v1.0/state/{store}/probe")).await;
        // Calls sent just before the fault took hold may still succeed.
        let message = if r.status().is_success() {
            String::new()
        } else {
            error_of(r).await.2
        };
        assert!(
            started.elapsed() < Duration::from_millis(1200),
            "a call took {:?}: {message}",
            started.elapsed()
        );
        if message.contains("circuit breaker is open") {
            return Instant::now();
        }
        assert!(
            since.elapsed() < Duration::from_secs(5),
            "the breaker did not open: {message}"
        );
    }
}

/// While the breaker is open (for up to 800 ms after `opened`), every call fails at once
/// with a message that says why; `/v1.0/healthz/outbound` says the store is not ready.
async fn assert_fails_fast(m: &Mecha, store: &str, opened: Instant) {
    let mut took = Vec::new();
    let mut calls = 0;
    while opened.elapsed() < Duration::from_millis(800) {
        let started = Instant::now();
        let (status, code, message, _) =
            error_of(m.get(&format!("/v1.0/state/{store}/probe")).await).await;
        if opened.elapsed() > Duration::from_millis(800) {
            break; // half-open may start at 1 s
        }
        took.push(started.elapsed());
        calls += 1;
        assert_eq!((status, code.as_str()), (500, "ERR_STATE_GET"), "{message}");
        // Open, or half-open with its probe out (the writers may have tripped it before
        // this reader saw it): either way the store was not called.
        assert!(
            message.contains("state store unavailable: circuit breaker is")
                && message.ends_with("(the store was not called)"),
            "{message}"
        );
        if calls == 5 {
            let (status, code, message, _) = error_of(m.get("/v1.0/healthz/outbound").await).await;
            assert_eq!(
                (status, code.as_str()),
                (500, "ERR_HEALTH_NOT_READY"),
                "{message}"
            );
        }
    }
    assert!(calls >= 5, "only {calls} calls while open");
    // The median bounds what the breaker costs; the maximum only what a busy test machine
    // (two cores shared with builds) adds to an HTTP round trip.
    took.sort();
    let (median, slowest) = (took[took.len() / 2], took[took.len() - 1]);
    assert!(
        median < Duration::from_millis(10) && slowest < Duration::from_millis(250),
        "open-breaker failures took {median:?} (median), up to {slowest:?}"
    );
}

/// Reads until the store answers again, at most `within` after `since`.
async fn until_recovered(m: &Mecha, store: &str, since: Instant, within: Duration) {
    loop {
        let r = m.get(&format!("/v1.0/state/{store}/probe")).await;
        if r.status() == 204 {
            return;
        }
        assert!(
            since.elapsed() < within,
            "no recovery within {within:?}: {}",
            r.text().await.unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn assert_all_present(m: &Mecha, store: &str, acked: &[String]) {
    assert!(acked.len() > 20, "only {} writes acknowledged", acked.len());
    for key in acked {
        let r = m.get(&format!("/v1.0/state/{store}/{key}")).await;
        assert_eq!(r.status(), 200, "acknowledged write {key} is missing");
    }
}

/// Kills the server under load, checks the breaker, restarts it and checks recovery and
/// that no acknowledged write was lost. Recovery is bounded by the breaker's timeout (1 s),
/// one probe and the store's reconnect: 5 s.
async fn kill_and_restart(m: Arc<Mecha>, server: &mut PrivateServer, store: &str) {
    let prefix = unique("kill");
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = writers(&m, store, &prefix, &stop);
    tokio::time::sleep(Duration::from_millis(300)).await;

    server.kill();
    let killed = Instant::now();
    let opened = until_open(&m, store, killed).await;
    assert_fails_fast(&m, store, opened).await;

    server.restart();
    let restarted = Instant::now();
    until_recovered(&m, store, restarted, Duration::from_secs(5)).await;
    // Health follows within its bound: the next successful ping (every 200 ms here).
    let healthy_by = Instant::now() + Duration::from_secs(2);
    loop {
        let r = m.get("/v1.0/healthz/outbound").await;
        if r.status() == 204 {
            break;
        }
        assert!(
            Instant::now() < healthy_by,
            "health still says: {}",
            r.text().await.unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    assert_all_present(&m, store, &acked).await;
}

#[actix_rt::test]
async fn redis_killed_and_restarted_under_a_breaker() {
    let mut redis = durable_redis();
    let m = start(&redis_component("cache", &redis.addr()), "cache").await;
    // The breaker's gauge exists from the start, closed, before any state change.
    let metrics = m.metrics().await;
    assert!(
        metrics.lines().any(|l| l.starts_with("dapr_resiliency_cb_state{")
            && l.contains("policy=\"circuitbreaker\",namespace=\"\",flow_direction=\"outbound\",target=\"Statestore_cache\",status=\"closed\"")
            && l.ends_with(" 1")),
        "{}",
        metrics.lines().filter(|l| l.contains("resiliency")).collect::<Vec<_>>().join("\n")
    );
    kill_and_restart(m, &mut redis, "cache").await;
}

#[actix_rt::test]
async fn postgres_killed_and_restarted_under_a_breaker() {
    let mut pg = postgres();
    let component = format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: pg\nspec:\n  type: state.postgresql\n  version: v1\n  metadata:\n  - name: connectionString\n    value: \"host=127.0.0.1 port={} user=postgres dbname=postgres connect_timeout=1\"\n  - name: timeout\n    value: 500ms\n",
        pg.port
    );
    let m = start(&component, "pg").await;
    until_recovered(&m, "pg", Instant::now(), Duration::from_secs(5)).await;
    kill_and_restart(m, &mut pg, "pg").await;
}

#[actix_rt::test]
async fn bulk_calls_that_fail_trip_the_breaker() {
    let mut redis = durable_redis();
    let m = start(&redis_component("bulky", &redis.addr()), "bulky").await;
    let keys: Vec<String> = (0..4).map(|i| format!("bulk-{i}")).collect();
    let r = m
        .post(
            "/v1.0/state/bulky/bulk",
            json!({"keys": keys, "parallelism": 4}).to_string(),
        )
        .await;
    assert_eq!(r.status(), 200);
    redis.kill();
    // Only bulk reads: each answers per item, and each must count as a failure.
    let mut opened = false;
    for _ in 0..6 {
        let r = m
            .post(
                "/v1.0/state/bulky/bulk",
                json!({"keys": keys, "parallelism": 4}).to_string(),
            )
            .await;
        let text = r.text().await.unwrap();
        if text.contains("circuit breaker is open") {
            opened = true;
            break;
        }
    }
    assert!(opened, "failing bulk reads never opened the breaker");
    let started = Instant::now();
    let (_, _, message, _) = error_of(m.get("/v1.0/state/bulky/single").await).await;
    assert!(message.contains("circuit breaker is open"), "{message}");
    assert!(started.elapsed() < Duration::from_millis(50));
}

#[actix_rt::test]
async fn jetstream_frozen_then_killed_fails_fast_and_recovers() {
    let mut nats = jetstream();
    let store = "kv";
    let bucket = unique("faults").replace('-', "_");
    let m = start(&jetstream_component(store, nats.port, &bucket), store).await;
    // The bucket exists and the store answers before the faults.
    until_recovered(&m, store, Instant::now(), Duration::from_secs(5)).await;

    // Frozen: requests time out, the breaker opens, then fails fast; thawed, it recovers.
    let prefix = unique("freeze");
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = writers(&m, store, &prefix, &stop);
    tokio::time::sleep(Duration::from_millis(300)).await;
    nats.signal("-STOP");
    let frozen = Instant::now();
    let opened = until_open(&m, store, frozen).await;
    assert_fails_fast(&m, store, opened).await;
    nats.signal("-CONT");
    until_recovered(&m, store, Instant::now(), Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    assert_all_present(&m, store, &acked).await;

    // Killed and restarted on the same storage directory.
    kill_and_restart(m, &mut nats, store).await;
}

/// A store that counts calls and fails on purpose, by key: `flaky` fails its first two
/// reads, `down` fails every read, `lost` fails every write as if the connection broke
/// after sending, and any guarded write is an ETag conflict.
#[derive(Default)]
struct Faulty {
    gets: AtomicUsize,
    sets: AtomicUsize,
    refused: AtomicUsize,
}

#[async_trait]
impl StateStore for Faulty {
    async fn get(&self, req: GetRequest) -> Result<Option<StateEntry>, StoreError> {
        let n = self.gets.fetch_add(1, Ordering::SeqCst);
        if req.key.ends_with("||down") || (req.key.ends_with("||flaky") && n < 2) {
            return Err(StoreError::Unavailable("connection reset by peer".into()));
        }
        Ok(Some(StateEntry {
            data: Bytes::from_static(b"1"),
            etag: Some("1".into()),
            metadata: Default::default(),
        }))
    }

    async fn set(&self, req: SetRequest) -> Result<(), StoreError> {
        self.sets.fetch_add(1, Ordering::SeqCst);
        if req.etag.is_some() {
            return Err(StoreError::EtagMismatch(None));
        }
        if req.key.ends_with("||lost") {
            return Err(StoreError::Unavailable(
                "connection closed while awaiting the reply".into(),
            ));
        }
        if req.key.ends_with("||refused") && self.refused.fetch_add(1, Ordering::SeqCst) < 2 {
            return Err(StoreError::NotSent("connection refused".into()));
        }
        Ok(())
    }

    async fn delete(&self, _req: DeleteRequest) -> Result<(), StoreError> {
        Ok(())
    }
}

struct FaultyFactory(Arc<Faulty>);

impl StoreFactory for FaultyFactory {
    fn create(&self) -> Result<Arc<dyn StateStore>, StoreError> {
        Ok(self.0.clone())
    }
    fn capabilities(&self) -> CapabilitySet {
        CapabilitySet::of(&[Capability::Etag])
    }
}

#[actix_rt::test]
async fn retries_only_where_safe_and_within_the_deadline() {
    let store = Arc::new(Faulty::default());
    let m = TestMecha::empty()
        .custom("faulty", Arc::new(FaultyFactory(store.clone())))
        .resiliency(
            "apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata:\n  name: res\nspec:\n  policies:\n    retries:\n      often:\n        policy: constant\n        duration: 200ms\n        maxRetries: 10\n  targets:\n    components:\n      faulty:\n        outbound:\n          retry: often\n",
        )
        .settings("actors:\n  requestTimeout: 900ms\n")
        .start()
        .await;
    let retries = |metrics: &str| -> u64 {
        metrics
            .lines()
            .find(|l| {
                l.starts_with("dapr_resiliency_activations_total{")
                    && l.contains("policy=\"retry\"")
                    && l.contains("target=\"Statestore_faulty\"")
            })
            .and_then(|l| l.rsplit(' ').next())
            .map_or(0, |n| n.parse().unwrap())
    };

    // A read that fails twice is retried and succeeds: three calls, one activation (daprd
    // counts a call's first retry being scheduled, not every retry).
    let r = m.get("/v1.0/state/faulty/flaky").await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert_eq!(store.gets.load(Ordering::SeqCst), 3);
    assert_eq!(retries(&m.metrics().await), 1);

    // A write whose connection broke may have been applied: never repeated.
    let (status, _, message, _) = error_of(
        m.post(
            "/v1.0/state/faulty",
            json!([{"key": "lost", "value": 1}]).to_string(),
        )
        .await,
    )
    .await;
    assert_eq!(status, 500, "{message}");
    assert_eq!(store.sets.load(Ordering::SeqCst), 1);

    // An ETag conflict is an answer, not a fault: never repeated.
    let r = m
        .post(
            "/v1.0/state/faulty",
            json!([{"key": "k", "value": 1, "etag": "7"}]).to_string(),
        )
        .await;
    assert_eq!(r.status(), 409);
    assert_eq!(store.sets.load(Ordering::SeqCst), 2);
    assert_eq!(retries(&m.metrics().await), 1);

    // A write that never left Mecha (no connection could be had) cannot have been applied:
    // repeated like a read, and it succeeds on the third attempt.
    let r = m
        .post(
            "/v1.0/state/faulty",
            json!([{"key": "refused", "value": 1}]).to_string(),
        )
        .await;
    assert_eq!(r.status(), 204, "{}", r.text().await.unwrap());
    assert_eq!(store.sets.load(Ordering::SeqCst), 5);
    assert_eq!(retries(&m.metrics().await), 2);

    // A read that never succeeds: retried every 200 ms while the 900 ms deadline leaves
    // room for another attempt (calls at 0, 200, 400, 600 and maybe 800 ms), never the ten
    // retries the policy would allow, and the call ends within the deadline.
    let before = store.gets.load(Ordering::SeqCst);
    let started = Instant::now();
    let (status, _, message, _) = error_of(m.get("/v1.0/state/faulty/down").await).await;
    let took = started.elapsed();
    // The last attempt may be cut off by the deadline on a loaded machine (its 100 ms or so
    // can pass before the store is reached): then the answer is the request's timeout.
    match status {
        500 => assert!(message.contains("connection reset by peer"), "{message}"),
        504 => assert!(message.contains("timed out after 900ms"), "{message}"),
        _ => panic!("{status}: {message}"),
    }
    let calls = store.gets.load(Ordering::SeqCst) - before;
    assert!((3..=5).contains(&calls), "{calls} calls");
    // Within the deadline, plus the answer's own way back on a busy machine.
    assert!(took < Duration::from_millis(1200), "took {took:?}");
    // One activation for the call, however many retries it took.
    let r = retries(&m.metrics().await) - 2;
    assert_eq!(r, 1, "{r} activations, {calls} calls");
}
