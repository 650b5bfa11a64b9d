//! Limits against the real `mecha` binary: the README's first minute, bind errors, start-up
//! health, connection/time/body/item/depth limits, finite metric labels, and a bounded
//! flood (`flood.rs`). Every server is a child process on free loopback ports with its own
//! descriptor limit, measured through `/proc`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use crate::proc::{self, Mecha, amplifying_body, http, post, rss_kib};
use crate::support::MEMORY_STORE;

/// The indented command lines of the README's quick start.
fn quick_start_lines() -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let section = readme
        .split_once("## Quick start")
        .expect("a Quick start section")
        .1
        .split_once("\n## ")
        .expect("a section after Quick start")
        .0;
    section
        .lines()
        .filter_map(|l| l.strip_prefix("    "))
        .map(|l| l.split("  #").next().unwrap_or(l).trim_end().to_owned())
        .filter(|l| !l.is_empty())
        .collect()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `args` through the built binary in `dir` and returns its output; a command that does
/// not finish within 30 s is killed and fails the test (a server line misread as a one-shot
/// command must not hang the run).
fn run_to_completion(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    let child = std::process::Command::new(proc::BIN)
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status();
            panic!("`mecha {}` did not finish within 30 s", args.join(" "));
        }
    }
}

/// Runs the README's two curl lines against `port`; returns the answer of the read.
fn quick_start_curls(lines: &[String], port: u16) -> String {
    let curls: Vec<String> = lines
        .iter()
        .filter(|l| l.starts_with("curl "))
        .map(|l| l.replace("localhost:3500", &format!("localhost:{port}")))
        .collect();
    assert_eq!(curls.len(), 2, "{lines:?}");
    let mut outputs = Vec::new();
    for c in &curls {
        let out = std::process::Command::new("sh")
            .args(["-c", &format!("{c} -sS --max-time 10")])
            .output()
            .unwrap();
        assert!(out.status.success(), "{c}: {out:?}");
        outputs.push(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    outputs.pop().unwrap()
}

fn assert_read_back(get: &str) {
    assert!(get.starts_with("HTTP/1.1 200"), "{get}");
    assert!(get.to_ascii_lowercase().contains("\netag: "), "{get}");
    assert!(get.ends_with("{\"qty\":2}"), "{get}");
}

/// A read of the quick start's key alone (no write first).
fn read_only(port: u16) -> String {
    let out = std::process::Command::new("sh")
        .args([
            "-c",
            &format!("curl -i -sS --max-time 10 localhost:{port}/v1.0/state/statestore/order-1"),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn readme_quick_start_runs_as_written() {
    let _beside = proc::beside_others();
    let lines = quick_start_lines();
    // `cargo run` must pick the server: the package names it as the default binary.
    let manifest =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).unwrap();
    assert!(
        manifest.contains("default-run = \"mecha\""),
        "cargo run cannot choose between the binaries"
    );
    let runs: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("cargo run"))
        .collect();
    assert_eq!(
        runs.first().map(|l| l.as_str()),
        Some("cargo run --release")
    );
    // Every command runs from a scratch copy of the clone's root as far as the commands can
    // see it (`config/` linked in), so files a store creates land there and not in the clone.
    let root = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(
        concat!(env!("CARGO_MANIFEST_DIR"), "/config"),
        root.path().join("config"),
    )
    .unwrap();
    for line in &runs {
        let args: Vec<&str> = line
            .strip_prefix("cargo run --release")
            .unwrap()
            .trim_start()
            .strip_prefix("--")
            .unwrap_or("")
            .split_whitespace()
            .collect();
        if args.first() == Some(&"check") {
            // The check line runs to completion and names the default store.
            let out = run_to_completion(root.path(), &args);
            assert!(out.status.success(), "{line}: {out:?}");
            assert!(
                String::from_utf8_lossy(&out.stdout).contains("statestore"),
                "{line}: {out:?}"
            );
            continue;
        }
        // A server line: started as written; only the ports move (so parallel runs do not
        // collide), and the curl lines follow them.
        let port = free_port();
        let envs = [
            ("MECHA_HTTP_PORT", port.to_string()),
            ("MECHA_GRPC_PORT", "0".to_owned()),
            ("MECHA_METRICS_PORT", "0".to_owned()),
        ];
        let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let m = Mecha::spawn_in(root.path(), &args, &envs);
        assert_read_back(&quick_start_curls(&lines, port));
        drop(m);
        // A line the README says keeps state across restarts does: the same command, started
        // again, reads the key without writing it first.
        if args.iter().any(|a| a.contains("sqlite")) {
            let port = free_port();
            let envs = [
                ("MECHA_HTTP_PORT", port.to_string()),
                ("MECHA_GRPC_PORT", "0".to_owned()),
                ("MECHA_METRICS_PORT", "0".to_owned()),
            ];
            let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let m = Mecha::spawn_in(root.path(), &args, &envs);
            assert_read_back(&read_only(port));
            drop(m);
            assert!(root.path().join("mecha-state.db").exists());
        }
    }
    assert!(
        runs.iter().any(|l| l.contains("sqlite")),
        "the quick start shows the durable SQLite example"
    );
}

#[test]
fn example_components_fit_the_quick_start_curl_lines() {
    let _beside = proc::beside_others();
    // The examples are drop-in replacements of the default store: same name as the
    // README's curl lines use, and `mecha check` accepts them as the README says.
    for file in ["statestore-redis.yaml", "statestore-postgresql.yaml"] {
        let dir = tempfile::tempdir().unwrap();
        let src = format!("{}/config/examples/{file}", env!("CARGO_MANIFEST_DIR"));
        std::fs::copy(&src, dir.path().join(file)).unwrap();
        let out = std::process::Command::new(proc::BIN)
            .args(["check", "--resources-path"])
            .arg(dir.path())
            .env("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{file}: {out:?}");
        assert!(stdout.contains("| `statestore` |"), "{file}: {stdout}");
    }
}

#[test]
fn bind_errors_name_the_listener_the_address_and_the_flag() {
    let _beside = proc::beside_others();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    for (flag, name) in [
        ("--http-port", "HTTP"),
        ("--grpc-port", "gRPC"),
        ("--metrics-port", "metrics"),
    ] {
        let mut args = vec![
            "--http-port",
            "0",
            "--grpc-port",
            "0",
            "--metrics-port",
            "0",
        ];
        let p = port.to_string();
        let i = args.iter().position(|a| *a == flag).unwrap();
        args[i + 1] = &p;
        let out = std::process::Command::new(proc::BIN)
            .args(&args)
            .args(["--resources-path", "config/components"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        let want = format!("cannot listen for {name} on 127.0.0.1:{port} (set with {flag})");
        assert!(stderr.contains(&want), "{stderr}");
    }
}

#[test]
fn an_unreachable_store_is_unhealthy_from_the_start_and_logged_once() {
    let _beside = proc::beside_others();
    let closed = free_port();
    let redis = format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: cache\nspec:\n  type: state.redis\n  version: v1\n  metadata:\n    - name: redisHost\n      value: 127.0.0.1:{closed}\n    - name: dialTimeout\n      value: 200ms\n    - name: maxRetries\n      value: \"0\"\n"
    );
    let m = Mecha::start(
        "server:\n  workers: 2\nactors:\n  healthInterval: 100ms\n  restartAfterFailedPings: 2\n",
        &redis,
    );
    // Before any ping can have answered, and after.
    let (status, body) = http(&m.http, "GET /v1.0/healthz/outbound HTTP/1.1\r\n\r\n");
    assert_eq!(status, 500, "{body}");
    std::thread::sleep(Duration::from_millis(1500));
    for path in ["/v1.0/healthz/outbound", "/v1.0/healthz"] {
        let (status, body) = http(&m.http, &format!("GET {path} HTTP/1.1\r\n\r\n"));
        // Which store, and why, is only told to callers with a token.
        assert_eq!(status, 500, "{path}: {body}");
        assert!(body.contains("ERR_HEALTH_NOT_READY"), "{body}");
    }
    let log = m.log();
    assert_eq!(
        log.matches("state store unreachable").count(),
        1,
        "logged once per store, not per shard or ping:\n{log}"
    );
    assert!(!log.contains("state store reachable"), "{log}");
    assert!(!log.contains("store ping failed"), "{log}");
}

/// Reads whatever the server answers until it closes or `within` passes.
fn read_answer(s: &mut TcpStream, within: Duration) -> (String, Duration) {
    let start = Instant::now();
    s.set_read_timeout(Some(within)).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
        if start.elapsed() > within {
            break;
        }
    }
    (String::from_utf8_lossy(&out).into_owned(), start.elapsed())
}

const SHORT_TIMEOUTS: &str =
    "limits:\n  headerTimeout: 1s\n  bodyTimeout: 1s\n  idleTimeout: 2s\nserver:\n  workers: 1\n";

#[test]
fn slow_headers_and_trickled_or_endless_bodies_are_cut_off() {
    let _beside = proc::beside_others();
    let m = Mecha::start(SHORT_TIMEOUTS, MEMORY_STORE);
    // Headers that never end.
    let mut s = TcpStream::connect(&m.http).unwrap();
    s.write_all(b"POST /v1.0/state/statestore HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let (_, took) = read_answer(&mut s, Duration::from_secs(6));
    assert!(took < Duration::from_secs(4), "headers held {took:?}");

    // A declared 1 MB body trickled a byte at a time.
    let mut s = TcpStream::connect(&m.http).unwrap();
    s.write_all(
        b"POST /v1.0/state/statestore HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n[",
    )
    .unwrap();
    let trickle = {
        let mut s = s.try_clone().unwrap();
        std::thread::spawn(move || {
            for _ in 0..40 {
                if s.write_all(b" ").is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let (answer, took) = read_answer(&mut s, Duration::from_secs(6));
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("ERR_BODY_READ"), "{answer}");
    assert!(took < Duration::from_secs(3), "body held {took:?}");
    trickle.join().unwrap();

    // A chunk size that can never be filled.
    let mut s = TcpStream::connect(&m.http).unwrap();
    s.write_all(b"POST /v1.0/state/statestore HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n[{}")
        .unwrap();
    let (answer, took) = read_answer(&mut s, Duration::from_secs(6));
    assert!(answer.starts_with("HTTP/1.1 4"), "answered: {answer:?}");
    assert!(took < Duration::from_secs(3), "chunked body held {took:?}");

    // A chunked body past the size limit is refused while streaming.
    let mut s = TcpStream::connect(&m.http).unwrap();
    s.write_all(
        b"POST /v1.0/state/statestore HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
    )
    .unwrap();
    let chunk = format!("100000\r\n{}\r\n", " ".repeat(0x100000));
    for _ in 0..5 {
        if s.write_all(chunk.as_bytes()).is_err() {
            break;
        }
    }
    let (answer, _) = read_answer(&mut s, Duration::from_secs(6));
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer:.200}");

    // The server still serves.
    let (status, _) = http(&m.http, "GET /v1.0/healthz HTTP/1.1\r\n\r\n");
    assert_eq!(status, 204);
}

#[test]
fn item_counts_and_depth_are_checked_before_parsing() {
    let _beside = proc::beside_others();
    // 16 bodies of 4 MiB against the app's 16 MiB body budget: some wait for room. The wait
    // is long here so that a loaded machine reading them slowly still gets every 400 (this
    // test is about item counts; the budget's own refusals are tested in redteam_resources).
    let m = Mecha::start(
        "server:\n  workers: 2\nlimits:\n  bodyMemoryWait: 60s\n",
        MEMORY_STORE,
    );
    let base = rss_kib(m.pid());
    let body = amplifying_body();
    let bodies = std::sync::Arc::new(body);
    let handles: Vec<_> = (0..16)
        .map(|_| {
            let (addr, body) = (m.http.clone(), bodies.clone());
            std::thread::spawn(move || post(&addr, "/v1.0/state/statestore", &body))
        })
        .collect();
    for h in handles {
        let (status, body) = h.join().unwrap();
        assert_eq!(status, 400, "{body}");
        assert!(body.contains("more than the limit of 1000"), "{body}");
    }
    let peak = proc::peak_rss_kib(m.pid());
    // 16 bodies of 4 MiB are held at most once each, plus the server's own baseline.
    assert!(
        peak < base + 160 * 1024,
        "peak RSS {peak} KiB from {base} KiB"
    );

    let keys = format!("{{\"keys\":[{}\"k\"]}}", "\"k\",".repeat(1000));
    let (status, body) = post(&m.http, "/v1.0/state/statestore/bulk", &keys);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("1001 keys"), "{body}");

    let ops = format!(
        "{{\"operations\":[{}{{\"operation\":\"delete\",\"request\":{{\"key\":\"k\"}}}}]}}",
        "{\"operation\":\"delete\",\"request\":{\"key\":\"k\"}},".repeat(1000)
    );
    let (status, body) = post(&m.http, "/v1.0/state/statestore/transaction", &ops);
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("ERR_STATE_STORE_TOO_MANY_TRANSACTIONS"),
        "{body}"
    );

    let deep = format!(
        "[{{\"key\":\"k\",\"value\":{}1{}}}]",
        "[".repeat(100),
        "]".repeat(100)
    );
    let (status, body) = post(&m.http, "/v1.0/state/statestore", &deep);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("deeper than the limit of 64"), "{body}");

    // Within the limits everything still works.
    let ok = format!(
        "[{{\"key\":\"k\",\"value\":{}1{}}}]",
        "[".repeat(60),
        "]".repeat(60)
    );
    assert_eq!(post(&m.http, "/v1.0/state/statestore", &ok).0, 204);
}

#[test]
fn metric_labels_come_from_finite_sets() {
    let _beside = proc::beside_others();
    let m = Mecha::start("server:\n  workers: 1\n", MEMORY_STORE);
    for i in 0..300 {
        let id = format!("{i:08x}-made-up");
        http(&m.http, &format!("GET /x/{id} HTTP/1.1\r\n\r\n"));
        http(
            &m.http,
            &format!("GET /v1.0/state/store-{id}/k HTTP/1.1\r\n\r\n"),
        );
        http(
            &m.http,
            &format!("PUT /v1.0/metadata/{id} HTTP/1.1\r\nContent-Length: 0\r\n\r\n"),
        );
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(proc::grpc_made_up_methods(&m.grpc, 300));
    let metrics = proc::scrape(&m.metrics);
    let series = metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.contains("_bucket{"))
        .count();
    assert!(series < 100, "{series} series:\n{metrics:.3000}");
    assert!(!metrics.contains("made-up"), "raw paths in labels");
    assert!(!metrics.contains("Made"), "raw gRPC methods in labels");
    assert!(metrics.contains("path=\"_unknown\""), "{metrics:.3000}");
    assert!(
        metrics.contains("grpc_server_method=\"_unknown\""),
        "{metrics:.3000}"
    );
}

#[test]
fn grpc_item_counts_are_checked_before_decoding() {
    let _beside = proc::beside_others();
    let m = Mecha::start("server:\n  workers: 1\n", MEMORY_STORE);
    let base = rss_kib(m.pid());
    let rt = tokio::runtime::Runtime::new().unwrap();
    // On a loaded machine the 4 MB upload is sometimes cut by a transport error (the
    // connection, not the answer); try again then, up to three times: what is asserted is
    // the refusal and the memory it cost.
    let mut status = rt.block_on(proc::grpc_save_empty_items(&m.grpc, 2_000_000));
    for _ in 0..2 {
        if status.code() != tonic::Code::Unknown {
            break;
        }
        status = rt.block_on(proc::grpc_save_empty_items(&m.grpc, 2_000_000));
    }
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    let peak = proc::peak_rss_kib(m.pid());
    assert!(
        peak < base + 64 * 1024,
        "peak RSS {peak} KiB from {base} KiB"
    );
}

#[test]
fn idle_and_silent_connections_are_bounded_on_both_ports() {
    let _beside = proc::beside_others();
    let m = Mecha::start(
        "limits:\n  maxConnections: 200\n  headerTimeout: 1s\n  idleTimeout: 2s\nserver:\n  workers: 2\n",
        MEMORY_STORE,
    );
    let base = proc::fds(m.pid());
    let mut held = Vec::new();
    for addr in [&m.grpc, &m.http] {
        let addr: std::net::SocketAddr = addr.parse().unwrap();
        for _ in 0..300 {
            if let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
                held.push(s);
            }
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let open = proc::fds(m.pid());
    // At most maxConnections per listener; each tracked connection holds two descriptors
    // (the connection's own and the tracker's duplicate, which it shuts down to close it).
    assert!(
        open <= base + 2 * 2 * 200 + 40,
        "{open} descriptors (base {base})"
    );
    // Silent connections are closed after the header timeout.
    std::thread::sleep(Duration::from_millis(2500));
    let open = proc::fds(m.pid());
    assert!(
        open <= base + 20,
        "{open} descriptors after the timeouts (base {base})"
    );
    drop(held);
    // A gRPC connection that goes quiet after a call is closed after the idle timeout.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = proc::grpc_client(&m.grpc).await;
        proc::grpc_get(&mut c, "k").await.unwrap();
        let before = proc::fds(m.pid());
        tokio::time::sleep(Duration::from_millis(3500)).await;
        let after = proc::fds(m.pid());
        assert!(
            after < before,
            "idle HTTP/2 connection kept ({before} → {after})"
        );
    });
}

/// One HTTP/2 frame.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

#[test]
fn a_grpc_message_that_never_completes_is_answered_and_not_held() {
    let _beside = proc::beside_others();
    let m = Mecha::start(
        "limits:\n  bodyTimeout: 1s\nactors:\n  requestTimeout: 1s\nserver:\n  workers: 1\n",
        MEMORY_STORE,
    );
    let mut s = TcpStream::connect(&m.grpc).unwrap();
    // HPACK literal header fields without indexing (no Huffman).
    let mut block = Vec::new();
    for (k, v) in [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/dapr.proto.runtime.v1.Dapr/GetState"),
        (":authority", "x"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ] {
        block.push(0);
        block.push(k.len() as u8);
        block.extend_from_slice(k.as_bytes());
        block.push(v.len() as u8);
        block.extend_from_slice(v.as_bytes());
    }
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(h2_frame(4, 0, 0, &[]));
    out.extend(h2_frame(1, 4, 1, &block));
    // A gRPC message declared 100 bytes long, of which 3 arrive; the stream stays open.
    out.extend(h2_frame(0, 0, 1, &[0, 0, 0, 0, 100, 0x0a, 0x01, b's']));
    s.write_all(&out).unwrap();
    let start = Instant::now();
    s.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
    let mut answered = None;
    let mut head = [0u8; 9];
    while answered.is_none() && start.elapsed() < Duration::from_secs(8) {
        if s.read_exact(&mut head).is_err() {
            break;
        }
        let len = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
        let (kind, flags) = (head[3], head[4]);
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; len];
        s.read_exact(&mut payload).unwrap();
        match (kind, stream) {
            (4, 0) if flags & 1 == 0 => s.write_all(&h2_frame(4, 1, 0, &[])).unwrap(),
            (1, 1) if flags & 1 == 1 => answered = Some(start.elapsed()),
            (3, 1) | (7, _) => answered = Some(start.elapsed()),
            _ => {}
        }
    }
    let took = answered.expect("the half-sent call was answered");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "answered after {took:?}"
    );
}
