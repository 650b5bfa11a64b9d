//! `state.mysql` against MariaDB servers, through the real `mecha` binary:
//!
//! - TLS, on a private MariaDB with a certificate from a CA made here: `tls=custom` with
//!   `pemPath` or `pemContents`, `skip-verify` and `preferred` serve as a user the server
//!   only admits over TLS (`REQUIRE SSL`; the same user over `tls=false` is refused), while a
//!   wrong CA and `tls=true` (the CA is not a system root) fail verification, as root, who
//!   would be admitted in plaintext: no fallback. Against a server without TLS,
//!   `preferred` falls back to plaintext while `skip-verify` and `true` fail.
//! - SIGKILL durability on a private MariaDB: every write Mecha acknowledged
//!   reads back after Mecha is killed mid-stream and started again.
//! - A private MariaDB killed (SIGKILL) and restarted under load with a resiliency breaker:
//!   calls fail within their bound, then at once with the breaker open, recover after the
//!   restart, and no acknowledged write is lost.
//!
//! Private servers use ports 13301-13304.

use crate::support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use support::binary::Process;
use support::error_of;
use support::mariadb::{MariaDb, TestCa};
use support::writes::{Acked, acknowledged_before_sigkill, assert_all_present, writer};

/// One metadata field: name, value.
type Meta<'a> = (&'a str, &'a str);

/// A `state.mysql` component file: `name`, connection string and extra metadata lines.
fn component(name: &str, dsn: &str, extra: &[Meta<'_>]) -> String {
    let mut s = format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n  type: state.mysql\n  version: v1\n  metadata:\n  - name: connectionString\n    value: {}\n",
        serde_json::to_string(dsn).unwrap()
    );
    for (k, v) in extra {
        s.push_str(&format!(
            "  - name: {k}\n    value: {}\n",
            serde_json::to_string(v).unwrap()
        ));
    }
    s
}

fn spawn_mecha(resources: &Path, config: Option<&Path>) -> Process {
    let mut args = vec!["--resources-path", resources.to_str().unwrap()];
    if let Some(c) = config {
        args.extend(["--config", c.to_str().unwrap()]);
    }
    Process::spawn(&args, &[])
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Saves and reads back one key through store `name`: `Ok` or the error's message.
async fn round_trip(c: &reqwest::Client, base: &str, name: &str) -> Result<(), String> {
    let r = c
        .post(format!("{base}/v1.0/state/{name}"))
        .body(json!([{"key": "k", "value": {"store": name}}]).to_string())
        .send()
        .await
        .unwrap();
    if r.status() != 204 {
        let (status, code, message, _) = error_of(r).await;
        return Err(format!("{status} {code} {message}"));
    }
    let r = c
        .get(format!("{base}/v1.0/state/{name}/k"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{name}: read after an acknowledged save");
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap(),
        json!({"store": name})
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_modes_encrypt_verify_and_never_fall_back_to_plaintext() {
    let ca = TestCa::new("mecha test CA");
    let db = MariaDb::start(13301, Some(&ca));
    // A user the server admits only over TLS.
    db.exec(&[
        "CREATE USER 'tlsuser'@'localhost' IDENTIFIED BY 'tlspw' REQUIRE SSL",
        "CREATE USER 'tlsuser'@'127.0.0.1' IDENTIFIED BY 'tlspw' REQUIRE SSL",
        "GRANT ALL PRIVILEGES ON *.* TO 'tlsuser'@'localhost'",
        "GRANT ALL PRIVILEGES ON *.* TO 'tlsuser'@'127.0.0.1'",
    ])
    .await;

    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, ca.pem()).unwrap();
    let ca_path = ca_path.to_str().unwrap().to_owned();
    let wrong_ca = TestCa::new("another CA").pem();
    let tls_user = "tlsuser:tlspw";
    let stores: [(&str, String, &[Meta<'_>]); 8] = [
        (
            "custompath",
            db.dsn(tls_user, "tls=custom"),
            &[("pemPath", &ca_path)],
        ),
        (
            "customcontents",
            db.dsn(tls_user, "tls=custom"),
            &[("pemContents", &ca.pem())],
        ),
        ("skipverify", db.dsn(tls_user, "tls=skip-verify"), &[]),
        ("preferred", db.dsn(tls_user, "tls=preferred"), &[]),
        ("plaintext", db.dsn(tls_user, "tls=false"), &[]),
        (
            "wrongca",
            db.dsn("root", "tls=custom"),
            &[("pemContents", &wrong_ca)],
        ),
        ("systemroots", db.dsn("root", "tls=true"), &[]),
        ("rootplain", db.dsn("root", "tls=false"), &[]),
    ];
    for (i, (name, dsn, extra)) in stores.iter().enumerate() {
        let mut meta = extra.to_vec();
        meta.extend([
            ("schemaName", "tls_test"),
            ("tableName", name),
            ("timeoutInSeconds", "5"),
        ]);
        std::fs::write(
            dir.path().join(format!("{i}-{name}.yaml")),
            component(name, dsn, &meta),
        )
        .unwrap();
    }
    let mecha = spawn_mecha(dir.path(), None);
    let c = client();
    let base = mecha.base();

    for name in ["custompath", "customcontents", "skipverify", "preferred"] {
        round_trip(&c, &base, name)
            .await
            .unwrap_or_else(|e| panic!("{name} over TLS: {e}\n{}", mecha.log()));
    }
    // The control: the TLS-only user over plaintext is refused by the server, so the stores
    // above did speak TLS.
    let e = round_trip(&c, &base, "plaintext")
        .await
        .expect_err("the REQUIRE SSL user was admitted in plaintext");
    assert!(e.contains("Access denied"), "{e}");
    // Root is admitted in plaintext (also a control) ...
    round_trip(&c, &base, "rootplain")
        .await
        .unwrap_or_else(|e| panic!("root in plaintext: {e}"));
    // ... yet a verification failure never falls back to it.
    for name in ["wrongca", "systemroots"] {
        let e = round_trip(&c, &base, name)
            .await
            .expect_err("a server certificate from an untrusted CA was accepted");
        assert!(e.starts_with("500 ERR_STATE_SAVE"), "{name}: {e}");
        assert!(
            e.contains("MySQL TLS handshake failed: invalid peer certificate"),
            "{name}: the error does not say why: {e}"
        );
    }
    // What the server holds: tables from exactly the stores that got in.
    let mut admin = db.admin().await;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT TABLE_NAME FROM information_schema.TABLES \
         WHERE TABLE_SCHEMA = 'tls_test' AND TABLE_NAME <> 'dapr_metadata' ORDER BY TABLE_NAME",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert_eq!(
        tables,
        [
            "customcontents",
            "custompath",
            "preferred",
            "rootplain",
            "skipverify"
        ],
        "only the stores that connected created their tables"
    );
}

/// Against a server without TLS: `tls=preferred` falls back to plaintext (the Go driver's
/// meaning), while `tls=skip-verify` and `tls=true` require TLS and fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preferred_falls_back_on_a_server_without_tls_required_modes_fail() {
    let db = MariaDb::start(13304, None);
    let dir = tempfile::tempdir().unwrap();
    for name in ["preferred", "skipverify", "verify"] {
        let param = match name {
            "preferred" => "tls=preferred",
            "skipverify" => "tls=skip-verify",
            _ => "tls=true",
        };
        std::fs::write(
            dir.path().join(format!("{name}.yaml")),
            component(
                name,
                &db.dsn("root", param),
                &[("tableName", name), ("timeoutInSeconds", "5")],
            ),
        )
        .unwrap();
    }
    let mecha = spawn_mecha(dir.path(), None);
    let c = client();
    round_trip(&c, &mecha.base(), "preferred")
        .await
        .unwrap_or_else(|e| panic!("tls=preferred without TLS on the server: {e}"));
    for name in ["skipverify", "verify"] {
        let e = round_trip(&c, &mecha.base(), name)
            .await
            .expect_err("connected in plaintext although TLS is required");
        assert!(
            e.starts_with("500 ERR_STATE_SAVE") && e.contains("server does not support TLS"),
            "{name}: {e}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_sigkill_of_mecha() {
    let db = MariaDb::start(13302, None);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("my.yaml"),
        component("my", &db.dsn("root", "allowNativePasswords=true"), &[]),
    )
    .unwrap();

    let mut first = spawn_mecha(dir.path(), None);
    let acked = acknowledged_before_sigkill(&mut first, "my").await;
    let second = spawn_mecha(dir.path(), None);
    assert_all_present(&second.base(), "my", &acked).await;
    drop(second);

    // Nothing beyond what was written: every row is an acknowledged key or one whose
    // acknowledgement the kill cut off (at most one request per writer: 3 keys).
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM dapr_state_store.state")
        .fetch_one(&mut db.admin().await)
        .await
        .unwrap();
    let rows = rows as usize;
    assert!(
        rows >= acked.len() && rows <= acked.len() + 8 * 3,
        "{rows} rows for {} acknowledged keys",
        acked.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mariadb_killed_under_load_trips_the_breaker_and_recovers_after_restart() {
    let mut db = MariaDb::start(13303, None);
    let dir = tempfile::tempdir().unwrap();
    let resources = dir.path().join("resources");
    std::fs::create_dir(&resources).unwrap();
    std::fs::write(
        resources.join("db.yaml"),
        component(
            "db",
            &db.dsn("root", "allowNativePasswords=true"),
            &[("timeoutInSeconds", "1")],
        ),
    )
    .unwrap();
    std::fs::write(
        resources.join("resiliency.yaml"),
        "apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata:\n  name: res\nspec:\n  policies:\n    timeouts:\n      short: 400ms\n    circuitBreakers:\n      cb:\n        maxRequests: 1\n        timeout: 3s\n        trip: consecutiveFailures >= 3\n  targets:\n    components:\n      db:\n        outbound:\n          timeout: short\n          circuitBreaker: cb\n",
    )
    .unwrap();
    let config = dir.path().join("mecha.yaml");
    std::fs::write(
        &config,
        "actors:\n  requestTimeout: 1s\n  healthInterval: 200ms\n",
    )
    .unwrap();
    let mecha = spawn_mecha(&resources, Some(&config));
    let base = mecha.base();
    let c = client();
    round_trip(&c, &base, "db")
        .await
        .unwrap_or_else(|e| panic!("before the kill: {e}\n{}", mecha.log()));

    let acked: Acked = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|id| {
            tokio::spawn(writer(
                id,
                base.clone(),
                "db",
                acked.clone(),
                stop.clone(),
                true,
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let before = acked.lock().len();
    assert!(before > 20, "only {before} writes acknowledged under load");

    db.kill();
    let killed_at = Instant::now();
    // Calls fail within their bound (400 ms timeout) until the breaker opens ...
    let opened = loop {
        let started = Instant::now();
        let (status, code, message, _) = error_of(
            c.get(format!("{base}/v1.0/state/db/k"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert!(
            started.elapsed() < Duration::from_millis(1200),
            "a call took {:?}",
            started.elapsed()
        );
        // 504 when the call hit the timeout policy, 500 for a refused connection.
        assert!(
            matches!(status, 500 | 504) && code == "ERR_STATE_GET",
            "{status} {code} {message}"
        );
        if message.contains("circuit breaker is open") {
            break Instant::now();
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(5),
            "the breaker did not open: {message}"
        );
    };
    // ... then at once, saying why. The breaker stays open 3 s: it opened at most one call
    // (1.2 s) before this loop saw it, so the 700 ms below end before it half-opens.
    let mut slowest = Duration::ZERO;
    while opened.elapsed() < Duration::from_millis(700) {
        let started = Instant::now();
        let (status, code, message, _) = error_of(
            c.post(format!("{base}/v1.0/state/db"))
                .body(json!([{"key": "k", "value": 0}]).to_string())
                .send()
                .await
                .unwrap(),
        )
        .await;
        slowest = slowest.max(started.elapsed());
        assert_eq!(
            (status, code.as_str()),
            (500, "ERR_STATE_SAVE"),
            "{message}"
        );
        assert!(message.contains("circuit breaker is open"), "{message}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        slowest < Duration::from_millis(100),
        "open-breaker failures took up to {slowest:?}"
    );
    let metrics = c
        .get(format!("http://{}/metrics", mecha.metrics))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("dapr_resiliency_cb_state")
                && l.contains("target=\"Statestore_db\"")
                && l.contains("status=\"open\"")
                && l.ends_with(" 1")),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("resiliency"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // Restarted on the same data directory and port (InnoDB crash recovery): the half-open
    // probes close the breaker by themselves.
    db.restart();
    let restarted = Instant::now();
    loop {
        let r = c
            .get(format!("{base}/v1.0/state/db/k"))
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            break;
        }
        assert!(
            restarted.elapsed() < Duration::from_secs(10),
            "no recovery: {} {}",
            r.status(),
            r.text().await.unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "recovered {:?} after the restart ({:?} after the kill)",
        restarted.elapsed(),
        killed_at.elapsed()
    );
    // Writes are acknowledged again, then the load stops.
    let recovered = acked.lock().len();
    let deadline = Instant::now() + Duration::from_secs(5);
    while acked.lock().len() < recovered + 20 {
        assert!(Instant::now() < deadline, "the writers never recovered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.expect("writer");
    }
    let acked = std::mem::take(&mut *acked.lock());
    eprintln!("{} acknowledged writes across the restart", acked.len());
    assert_all_present(&base, "db", &acked).await;
}
