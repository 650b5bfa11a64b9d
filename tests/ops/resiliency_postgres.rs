//! Resiliency on PostgreSQL: the database is reached through a TCP proxy this test owns and
//! can freeze (it stops forwarding bytes, as a frozen server would). Health notices within
//! its stated bound, the breaker opens and fails calls fast, and everything recovers after
//! the thaw without restarting Mecha; acknowledged writes are all present.

use crate::support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use support::{TestMecha, error_of, unique};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Copies `from` to `to`, stalling (holding the bytes) while `frozen` is set.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        while frozen.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// A freezable proxy in front of `upstream`; returns its port.
async fn freezable_proxy(upstream: String, frozen: Arc<AtomicBool>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            let frozen = frozen.clone();
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(&upstream).await else {
                    return;
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pump(cr, sw, frozen.clone()));
                pump(sr, cw, frozen).await;
            });
        }
    });
    port
}

#[actix_rt::test]
async fn frozen_postgres_shows_in_health_trips_the_breaker_and_recovers() {
    let frozen = Arc::new(AtomicBool::new(false));
    let port = freezable_proxy("127.0.0.1:5432".into(), frozen.clone()).await;
    let table = unique("res_pg").replace('-', "_");
    let yaml = format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: pg\nspec:\n  type: state.postgresql\n  version: v1\n  metadata:\n  - name: connectionString\n    value: \"host=127.0.0.1 port={port} user=postgres password=postgres dbname=test\"\n  - name: tableName\n    value: {table}\n  - name: timeout\n    value: 500ms\n---\napiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata:\n  name: res\nspec:\n  policies:\n    timeouts:\n      DefaultTimeoutPolicy: 400ms\n    circuitBreakers:\n      DefaultCircuitBreakerPolicy:\n        maxRequests: 1\n        timeout: 1s\n        trip: consecutiveFailures >= 2\n"
    );
    let m = TestMecha::empty()
        .yaml(&yaml)
        .settings("actors:\n  requestTimeout: 1s\n  healthInterval: 200ms\n")
        .start()
        .await;
    let prefix = unique("k");
    let mut acked = Vec::new();
    for i in 0..20 {
        let key = format!("{prefix}-{i}");
        let r = m
            .post(
                "/v1.0/state/pg",
                json!([{"key": key, "value": i}]).to_string(),
            )
            .await;
        assert_eq!(r.status(), 204, "{}", r.text().await.unwrap_or_default());
        acked.push(key);
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while m.get("/v1.0/healthz/outbound").await.status() != 204 {
        assert!(Instant::now() < deadline, "never healthy");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    frozen.store(true, Ordering::Relaxed);
    let frozen_at = Instant::now();
    // Calls time out within their bound until the breaker opens, then fail at once.
    loop {
        let started = Instant::now();
        let (status, code, message, _) =
            error_of(m.get(&format!("/v1.0/state/pg/{prefix}-0")).await).await;
        assert!(
            started.elapsed() < Duration::from_millis(1200),
            "a call took {:?}",
            started.elapsed()
        );
        assert!(status >= 500, "{status} {code} {message}");
        if message.contains("circuit breaker is open") {
            assert!(
                started.elapsed() < Duration::from_millis(50),
                "open breaker took {:?}",
                started.elapsed()
            );
            break;
        }
        assert!(
            frozen_at.elapsed() < Duration::from_secs(4),
            "breaker never opened: {message}"
        );
    }
    // Health: not ready (breaker open at once; pings time out within healthInterval).
    let (status, code, message, _) = error_of(m.get("/v1.0/healthz").await).await;
    assert_eq!(
        (status, code.as_str()),
        (500, "ERR_HEALTH_NOT_READY"),
        "{message}"
    );
    let deadline = Instant::now() + Duration::from_secs(2);
    while m.running.catalog().stores()[0].health.is_healthy() {
        assert!(
            Instant::now() < deadline,
            "the ping never noticed the frozen database"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    frozen.store(false, Ordering::Relaxed);
    let thawed = Instant::now();
    loop {
        let r = m.get(&format!("/v1.0/state/pg/{prefix}-0")).await;
        if r.status() == 200 {
            break;
        }
        assert!(
            thawed.elapsed() < Duration::from_secs(6),
            "no recovery: {}",
            r.text().await.unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for key in &acked {
        let r = m.get(&format!("/v1.0/state/pg/{key}")).await;
        assert_eq!(r.status(), 200, "acknowledged write {key} is missing");
    }
}
