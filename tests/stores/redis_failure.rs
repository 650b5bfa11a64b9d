//! The Redis store through Mecha's HTTP door, against real Redis servers.
//!
//! * Failure behaviour: a private `redis-server` on a free port is killed, frozen and
//!   restarted under a running Mecha; calls fail fast with Dapr errors, `/v1.0/healthz`
//!   names the store, and Mecha recovers without a restart.
//! * ETag status codes over HTTP, on `REDIS_URL`.
//!
//! Both fail (never skip) when `redis-server` is missing or Redis is unreachable:
//! `scripts/test.sh` installs and starts it.

use crate::support;
use crate::support::services::redis_url;

use std::time::{Duration, Instant};

use serde_json::json;
use support::servers::redis as private_redis;
use support::{Mecha, TestMecha, error_of, unique};

fn component(name: &str, host: &str, extra: &str) -> String {
    format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n  type: state.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    value: \"{host}\"\n{extra}"
    )
}

async fn healthz_until(m: &Mecha, healthy: bool, within: Duration) -> reqwest::Response {
    let deadline = Instant::now() + within;
    loop {
        let r = m.get("/v1.0/healthz").await;
        if (r.status() == 204) == healthy || Instant::now() > deadline {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_rt::test]
async fn redis_outage_fails_fast_shows_in_health_and_recovers() {
    let mut redis = private_redis();
    let yaml = component(
        "cache",
        &format!("127.0.0.1:{}", redis.port),
        "  - name: dialTimeout\n    value: 300ms\n  - name: readTimeout\n    value: 300ms\n",
    );
    let m = TestMecha::empty()
        .yaml(&yaml)
        .settings("actors:\n  requestTimeout: 1s\n  healthInterval: 200ms\n")
        .start()
        .await;

    m.save("cache", "k", json!({"n": 1})).await;
    let r = m.get("/v1.0/state/cache/k").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), r#"{"n":1}"#);
    assert_eq!(
        healthz_until(&m, true, Duration::from_secs(2))
            .await
            .status(),
        204
    );

    // Down: every call fails well within the 1 s request timeout, with Dapr's error codes.
    redis.kill();
    for _ in 0..3 {
        let started = Instant::now();
        let (status, code, message, _) = error_of(m.get("/v1.0/state/cache/k").await).await;
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "get took {:?}",
            started.elapsed()
        );
        assert!(
            (status, code.as_str()) == (500, "ERR_STATE_GET") || status == 504,
            "{status} {code} {message}"
        );
        let started = Instant::now();
        let body = json!([{"key": "k", "value": 2}]).to_string();
        let (status, code, message, _) = error_of(m.post("/v1.0/state/cache", body).await).await;
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "save took {:?}",
            started.elapsed()
        );
        assert!(
            (status, code.as_str()) == (500, "ERR_STATE_SAVE") || status == 504,
            "{status} {code} {message}"
        );
    }
    let (status, code, message, _) =
        error_of(healthz_until(&m, false, Duration::from_secs(3)).await).await;
    assert_eq!(
        (status, code.as_str()),
        (500, "ERR_HEALTH_NOT_READY"),
        "{message}"
    );
    // Without a valid token, health says how many stores are down, not which or why.
    assert_eq!(message, "dapr is not ready: [1 state store(s) not ready]");
    assert!(!m.running.catalog().stores()[0].health.is_healthy());

    // Back (empty, as it saves nothing): the next calls work, no Mecha restart.
    redis.restart();
    let r = m.get("/v1.0/state/cache/k").await;
    assert_eq!(r.status(), 204, "{}", r.text().await.unwrap_or_default());
    m.save("cache", "k", json!("again")).await;
    let r = m.get("/v1.0/state/cache/k").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), r#""again""#);
    assert_eq!(
        healthz_until(&m, true, Duration::from_secs(3))
            .await
            .status(),
        204
    );

    // Frozen (accepts nothing, answers nothing): a timeout, not a hang.
    redis.signal("-STOP");
    let started = Instant::now();
    let (status, code, message, _) = error_of(m.get("/v1.0/state/cache/k").await).await;
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "get took {:?}",
        started.elapsed()
    );
    assert_eq!(status, 504, "{code} {message}");
    let (status, _, message, _) =
        error_of(healthz_until(&m, false, Duration::from_secs(3)).await).await;
    assert_eq!(status, 500, "{message}");
    redis.signal("-CONT");
    assert_eq!(
        healthz_until(&m, true, Duration::from_secs(5))
            .await
            .status(),
        204
    );
    let r = m.get("/v1.0/state/cache/k").await;
    assert_eq!(r.status(), 200);
}

#[actix_rt::test]
async fn etag_errors_have_daprs_status_codes() {
    let prefix = unique("http");
    let yaml = component(
        "redis",
        &redis_url(),
        &format!("  - name: keyPrefix\n    value: {prefix}\n"),
    );
    let m = TestMecha::empty().yaml(&yaml).start().await;
    let r = m.get("/v1.0/healthz").await;
    assert_eq!(
        r.status(),
        204,
        "Redis at {} is unreachable: {}",
        redis_url(),
        r.text().await.unwrap_or_default()
    );

    m.save("redis", "k", json!(1)).await;
    let r = m.get("/v1.0/state/redis/k").await;
    let stale = r.headers()["etag"].to_str().unwrap().to_owned();
    m.save("redis", "k", json!(2)).await;
    let fresh = m.get("/v1.0/state/redis/k").await.headers()["etag"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_ne!(stale, fresh);

    let save = |etag: &str| json!([{"key": "k", "value": 3, "etag": etag}]).to_string();
    let (status, code, message, _) =
        error_of(m.post("/v1.0/state/redis", save(&stale)).await).await;
    assert_eq!(
        (status, code.as_str()),
        (409, "ERR_STATE_SAVE"),
        "{message}"
    );
    let (status, code, message, _) =
        error_of(m.post("/v1.0/state/redis", save("not-a-number")).await).await;
    assert_eq!(
        (status, code.as_str()),
        (400, "ERR_STATE_SAVE"),
        "{message}"
    );
    let del = |etag: &str| {
        m.client
            .delete(m.url("/v1.0/state/redis/k"))
            .header("If-Match", etag)
            .send()
    };
    let (status, code, _, _) = error_of(del(&stale).await.unwrap()).await;
    assert_eq!((status, code.as_str()), (409, "ERR_STATE_DELETE"));
    let (status, code, _, _) = error_of(del("x").await.unwrap()).await;
    assert_eq!((status, code.as_str()), (400, "ERR_STATE_DELETE"));

    // A transaction whose last etag is stale writes nothing, and answers 500.
    let tx = json!({"operations": [
        {"operation": "upsert", "request": {"key": "new", "value": "n"}},
        {"operation": "delete", "request": {"key": "k"}},
        {"operation": "upsert", "request": {"key": "k", "value": 4, "etag": stale}},
    ]})
    .to_string();
    let (status, code, message, _) =
        error_of(m.post("/v1.0/state/redis/transaction", tx).await).await;
    assert_eq!(
        (status, code.as_str()),
        (500, "ERR_STATE_TRANSACTION"),
        "{message}"
    );
    assert_eq!(m.get("/v1.0/state/redis/new").await.status(), 204);
    let r = m.get("/v1.0/state/redis/k").await;
    assert_eq!(r.headers()["etag"].to_str().unwrap(), fresh);
    assert_eq!(r.text().await.unwrap(), "2");

    // The fresh etag still works, and a stale bulk item does not block the others.
    let body = json!([
        {"key": "k", "value": 5, "etag": fresh},
        {"key": "b", "value": "b"},
    ])
    .to_string();
    let r = m.post("/v1.0/state/redis", body).await;
    assert_eq!(r.status(), 204);
    let body =
        json!([{"key": "k", "value": 6, "etag": fresh}, {"key": "c", "value": "c"}]).to_string();
    let (status, _, _, _) = error_of(m.post("/v1.0/state/redis", body).await).await;
    assert_eq!(status, 409);
    assert_eq!(m.get("/v1.0/state/redis/c").await.status(), 200);
    assert_eq!(
        m.get("/v1.0/state/redis/k").await.text().await.unwrap(),
        "5"
    );
}

/// A Dapr resiliency file on a Redis store frozen with SIGSTOP under load. The
/// breaker opens within its trip condition, calls then fail at once with a Dapr error
/// saying the circuit is open, half-open probes close it by themselves after the thaw, and
/// every acknowledged write is present afterwards.
#[actix_rt::test]
async fn frozen_redis_trips_the_breaker_fails_fast_and_recovers() {
    let redis = private_redis();
    let yaml = format!(
        "{}---\n{}",
        component(
            "cache",
            &format!("127.0.0.1:{}", redis.port),
            "  - name: dialTimeout\n    value: 300ms\n  - name: readTimeout\n    value: 300ms\n",
        ),
        "apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata:\n  name: res\nspec:\n  policies:\n    timeouts:\n      short: 400ms\n    retries:\n      reads:\n        policy: constant\n        duration: \"50\"\n        maxRetries: 2\n    circuitBreakers:\n      cb:\n        maxRequests: 1\n        timeout: 1s\n        trip: consecutiveFailures >= 3\n  targets:\n    components:\n      cache:\n        outbound:\n          timeout: short\n          retry: reads\n          circuitBreaker: cb\n"
    );
    let m = TestMecha::empty()
        .yaml(&yaml)
        .settings("actors:\n  requestTimeout: 1s\n  healthInterval: 200ms\n")
        .start()
        .await;
    let m = std::sync::Arc::new(m);
    let prefix = unique("res");

    // Bounded load: 4 writers, each writing its own keys in order; acknowledged keys kept.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4 {
        let (m, stop, prefix) = (m.clone(), stop.clone(), prefix.clone());
        writers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut i = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let key = format!("{prefix}-{w}-{i}");
                let body = json!([{"key": key, "value": i}]).to_string();
                let r = m.post("/v1.0/state/cache", body).await;
                if r.status() == 204 {
                    acked.push(key);
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            acked
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    redis.signal("-STOP");
    let frozen_at = Instant::now();
    // The breaker opens within the trip condition: three timed-out calls of at most 400 ms.
    let opened = loop {
        let started = Instant::now();
        let (_, _, message, _) =
            error_of(m.get(&format!("/v1.0/state/cache/{prefix}-x")).await).await;
        assert!(
            started.elapsed() < Duration::from_millis(1200),
            "a call took {:?}",
            started.elapsed()
        );
        if message.contains("circuit breaker is open") {
            break Instant::now();
        }
        assert!(
            frozen_at.elapsed() < Duration::from_secs(4),
            "the breaker did not open: {message}"
        );
    };
    // While open: failures are immediate and say why.
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let started = Instant::now();
        let (status, code, message, _) =
            error_of(m.get(&format!("/v1.0/state/cache/{prefix}-x")).await).await;
        slowest = slowest.max(started.elapsed());
        if opened.elapsed() > Duration::from_millis(800) {
            break; // half-open may start at 1 s
        }
        assert_eq!((status, code.as_str()), (500, "ERR_STATE_GET"), "{message}");
        assert!(
            message.contains("state store unavailable: circuit breaker is open"),
            "{message}"
        );
    }
    assert!(
        slowest < Duration::from_millis(50),
        "open-breaker failures took up to {slowest:?}"
    );
    // Health says so at once (the breaker is read on each health call).
    if opened.elapsed() < Duration::from_millis(800) {
        let (status, code, message, _) = error_of(m.get("/v1.0/healthz/outbound").await).await;
        assert_eq!(
            (status, code.as_str()),
            (500, "ERR_HEALTH_NOT_READY"),
            "{message}"
        );
    }
    let metrics = m.metrics().await;
    assert!(
        metrics.lines().any(|l| l.starts_with("dapr_resiliency_cb_state{")
            && l.contains("policy=\"circuitbreaker\",namespace=\"\",flow_direction=\"outbound\",target=\"Statestore_cache\",status=\"open\"")
            && l.ends_with(" 1")),
        "{}",
        metrics.lines().filter(|l| l.contains("resiliency")).collect::<Vec<_>>().join("\n")
    );

    // Thawed: half-open probes close it by themselves within timeout (1 s) + a probe.
    redis.signal("-CONT");
    let thawed = Instant::now();
    loop {
        let r = m.get(&format!("/v1.0/state/cache/{prefix}-x")).await;
        if r.status() == 204 {
            break;
        }
        assert!(
            thawed.elapsed() < Duration::from_secs(4),
            "no recovery: {}",
            r.text().await.unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut acked = Vec::new();
    for w in writers {
        acked.extend(w.await.unwrap());
    }
    assert!(acked.len() > 20, "only {} writes acknowledged", acked.len());
    for key in &acked {
        let r = m.get(&format!("/v1.0/state/cache/{key}")).await;
        assert_eq!(r.status(), 200, "acknowledged write {key} is missing");
    }
}

/// With Redis frozen, concurrent calls must not queue their
/// reconnects behind one another (they took p50 4 s with a 2 s timeout). No breaker here:
/// each call alone is bounded by the component's timeouts.
#[actix_rt::test]
async fn frozen_redis_reconnects_never_queue_calls() {
    let redis = private_redis();
    let yaml = component(
        "cache",
        &format!("127.0.0.1:{}", redis.port),
        "  - name: dialTimeout\n    value: 300ms\n  - name: readTimeout\n    value: 300ms\n",
    );
    let m = std::sync::Arc::new(
        TestMecha::empty()
            .yaml(&yaml)
            .settings("server:\n  workers: 1\nactors:\n  requestTimeout: 10s\n")
            .start()
            .await,
    );
    m.save("cache", "k", json!(1)).await;
    redis.signal("-STOP");
    for round in 0..3 {
        let mut calls = Vec::new();
        for _ in 0..16 {
            let m = m.clone();
            calls.push(tokio::spawn(async move {
                let started = Instant::now();
                let (status, _, message, _) = error_of(m.get("/v1.0/state/cache/k").await).await;
                (started.elapsed(), status, message)
            }));
        }
        for c in calls {
            let (took, status, message) = c.await.unwrap();
            assert!(status >= 500, "{status} {message}");
            assert!(
                took < Duration::from_millis(900),
                "round {round}: a call took {took:?} ({message})"
            );
        }
    }
    redis.signal("-CONT");
}
