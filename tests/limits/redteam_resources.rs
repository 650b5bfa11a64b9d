//! Standing red-team suite for what one client can cost the others in memory and
//! connections (the README's "Security model" states these bounds). Each test starts the
//! real `mecha` binary and replays an attack that once worked:
//!
//! * 600 concurrent 4 MiB bodies from one app took 2.7 GB and kept 2.5 GB: now bodies are
//!   charged against the app's budget (`quotas.maxBodyBytes`, 16 MiB) and the process's
//!   (`limits.maxBodyBytesInFlight`, 32 MiB) while they stream in, the rest wait
//!   `limits.bodyMemoryWait` (1 s) and get 429, and jemalloc gives the memory back;
//! * 1,100 sockets that send only the HTTP/2 preface, and connections trickling a byte at
//!   a time, locked every app out of the gRPC port; 1,100 idle keep-alive connections did
//!   the same on the HTTP port: now unauthenticated connections are closed first to make
//!   room, and a connection must complete its first request within `headerTimeout` of
//!   the accept, however it trickles.
//!
//! Each test runs alone in its binary (`proc::alone`), since each loads the machine on
//! purpose.

use crate::support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mecha::gateway::grpc::proto::runtime::GetStateRequest;
use mecha::gateway::grpc::proto::runtime::dapr_client::DaprClient;
use support::binary::Process;

const CONFIG: &str = "apps:\n  - id: flood\n    token: flood-token\n  - id: quiet\n    token: quiet-token\nlimits:\n  headerTimeout: 1s\n";
const MEMORY: &str = "kind: Component\nmetadata:\n  name: store\nspec:\n  type: state.in-memory\n";

fn start(config: &str) -> (tempfile::TempDir, Process) {
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path().join("components");
    std::fs::create_dir(&c).unwrap();
    std::fs::write(c.join("store.yaml"), MEMORY).unwrap();
    let f = dir.path().join("mecha.yaml");
    std::fs::write(&f, config).unwrap();
    let p = Process::spawn(
        &[
            "run",
            "--resources-path",
            c.to_str().unwrap(),
            "--config",
            f.to_str().unwrap(),
        ],
        &[],
    );
    (dir, p)
}

/// Resident memory of `pid`, in MiB.
fn rss_mib(pid: u32) -> usize {
    crate::proc::rss_kib(pid) / 1024
}

/// One HTTP/1.1 request on a fresh connection: the status (0 when the connection failed).
fn http(addr: &str, token: &str, method: &str, path: &str, body: &[u8]) -> u16 {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return 0;
    };
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\ndapr-api-token: {token}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if s.write_all(head.as_bytes()).is_err() {
        return 0;
    }
    // A refused body may be answered before it is all sent: keep the answer.
    let _ = s.write_all(body);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    std::str::from_utf8(&out)
        .ok()
        .and_then(|t| t.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

#[test]
fn a_burst_of_large_bodies_stays_within_the_budget_and_memory_returns() {
    let _one = crate::proc::alone();
    let (_dir, p) = start(CONFIG);
    let pid = p.pid();
    assert_eq!(
        http(&p.http, "quiet-token", "GET", "/v1.0/state/store/k", b""),
        204
    );
    let base = rss_mib(pid);
    let peak = Arc::new(AtomicUsize::new(base));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, stop) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(rss_mib(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    // 600 bodies of 4 MiB (just under maxBodySize), not JSON: each is refused once read,
    // if it is read at all.
    let body = Arc::new(vec![b'x'; 4 * 1024 * 1024 - 1024]);
    let statuses: Vec<_> = (0..600)
        .map(|_| {
            let (addr, body) = (p.http.clone(), body.clone());
            std::thread::Builder::new()
                .stack_size(128 * 1024)
                .spawn(move || http(&addr, "flood-token", "POST", "/v1.0/state/store", &body))
                .unwrap()
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    let peak_during = peak.load(Ordering::Relaxed);
    // Another app is served at once after the burst.
    assert_eq!(
        http(&p.http, "quiet-token", "GET", "/v1.0/state/store/k", b""),
        204
    );
    let refused_by_budget = statuses.iter().filter(|s| **s == 429).count();
    let parsed = statuses.iter().filter(|s| **s == 400).count();
    assert!(
        // 400 once read, 429 from the budget, 408 when a starved sender missed the body
        // timeout, 0 when the connection was cut (the per-peer cap).
        statuses.iter().all(|s| matches!(s, 400 | 408 | 429 | 0)),
        "unexpected statuses: {statuses:?}"
    );
    assert!(refused_by_budget > 0, "the budget never refused a body");
    // Memory falls back: within 30 s of the burst (jemalloc's background thread purges
    // pages unused for 10 s), to within 128 MiB of where it started (it kept 2.5 GB before
    // the budgets; what stays is allocator pages kept for reuse).
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut after = rss_mib(pid);
    while after > base + 128 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
        after = rss_mib(pid);
    }
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    if std::env::var_os("REDTEAM_SMAPS").is_some() {
        let maps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
        let mut big: Vec<(usize, String)> = Vec::new();
        let mut cur = String::new();
        for l in maps.lines() {
            if l.contains('-') && !l.starts_with(|c: char| c.is_ascii_uppercase()) {
                cur = l.to_owned();
            } else if let Some(v) = l.strip_prefix("Rss:") {
                let kb: usize = v.split_whitespace().next().unwrap().parse().unwrap();
                big.push((kb, cur.clone()));
            }
        }
        big.sort();
        for (kb, m) in big.iter().rev().take(12) {
            eprintln!("{kb} kB {m}");
        }
        eprintln!(
            "threads: {}",
            std::fs::read_dir(format!("/proc/{pid}/task"))
                .unwrap()
                .count()
        );
    }
    eprintln!(
        "600 x 4 MiB: {parsed} read and refused (400), {refused_by_budget} refused by the budget (429), {} cut; RSS base {base} MiB, peak {peak_during} MiB, after {after} MiB",
        statuses.iter().filter(|s| **s == 0).count()
    );
    // The stated bound (README, "Security model"): bodies held at most the 32 MiB global
    // budget (16 MiB per app); with buffer growth, 600 connections' read buffers and the
    // allocator's retained pages the process stays under 320 MiB, well inside the shipped
    // manifest's 512 MiB limit.
    assert!(
        peak_during < 320,
        "peak RSS {peak_during} MiB (base {base} MiB)"
    );
    assert!(
        after <= base + 128,
        "RSS {after} MiB 30 s after the burst (base {base} MiB)"
    );
}

/// Opens `n` connections to `addr` and sends `first` on each; returns those still open.
fn hold(addr: &str, n: usize, first: &[u8]) -> Vec<TcpStream> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        if let Ok(mut s) = TcpStream::connect(addr)
            && s.write_all(first).is_ok()
        {
            out.push(s);
        }
    }
    out
}

/// Latencies of `calls` fresh authenticated gRPC calls (a new connection each) and how
/// many failed.
fn fresh_grpc_calls(addr: &str, calls: usize) -> (Vec<Duration>, usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (mut lat, mut failed) = (Vec::new(), 0);
        for _ in 0..calls {
            let t = Instant::now();
            let ok = async {
                let mut c = DaprClient::connect(format!("http://{addr}")).await.ok()?;
                let mut req = tonic::Request::new(GetStateRequest {
                    store_name: "store".into(),
                    key: "k".into(),
                    ..Default::default()
                });
                req.metadata_mut()
                    .insert("dapr-api-token", "quiet-token".parse().unwrap());
                c.get_state(req).await.ok()
            };
            match tokio::time::timeout(Duration::from_secs(5), ok).await {
                Ok(Some(_)) => lat.push(t.elapsed()),
                _ => failed += 1,
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        lat.sort();
        (lat, failed)
    })
}

#[test]
fn preface_only_and_trickling_connections_do_not_lock_out_an_authenticated_app() {
    let _one = crate::proc::alone();
    let (_dir, p) = start(CONFIG);
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";
    // More preface-only sockets than maxConnections (1024), all from one address.
    let held = hold(&p.grpc, 1100, preface);
    // Tricklers: a byte every 300 ms, which once kept a connection open forever.
    let trickle_stop = Arc::new(AtomicBool::new(false));
    let tricklers: Vec<_> = (0..20)
        .map(|_| {
            let (addr, stop) = (p.grpc.clone(), trickle_stop.clone());
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(&addr).ok()?;
                let opened = Instant::now();
                for b in preface.iter().cycle() {
                    if stop.load(Ordering::Relaxed) || s.write_all(&[*b]).is_err() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(300));
                }
                Some(opened.elapsed())
            })
        })
        .collect();
    let (lat, failed) = fresh_grpc_calls(&p.grpc, 200);
    trickle_stop.store(true, Ordering::Relaxed);
    let trickled: Vec<_> = tricklers.into_iter().map(|t| t.join().unwrap()).collect();
    drop(held);
    let (p50, p99) = (percentile(&lat, 50), percentile(&lat, 99));
    eprintln!(
        "fresh gRPC calls under the preface flood: {failed} failed, p50 {p50:?}, p99 {p99:?}; tricklers cut after {trickled:?}"
    );
    assert_eq!(failed, 0, "an authenticated app was locked out");
    assert!(p99 < Duration::from_secs(1), "p99 {p99:?}");
    // Each trickler was cut within headerTimeout (1 s) of its accept, plus a sweep, plus the
    // byte interval in which the write notices.
    for t in trickled {
        let t = t.expect("the trickler connected");
        assert!(
            t < Duration::from_secs(3),
            "a trickling connection lived {t:?}"
        );
    }
}

#[test]
fn idle_keep_alive_connections_do_not_lock_out_an_authenticated_app() {
    let _one = crate::proc::alone();
    let (_dir, p) = start(CONFIG);
    // One unauthenticated health check each, then silence on a kept-alive connection.
    let mut held = hold(
        &p.http,
        1100,
        b"GET /v1.0/healthz HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    for s in &mut held {
        s.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
        let _ = s.read(&mut [0; 256]);
    }
    let mut lat = Vec::new();
    let mut failed = 0;
    for _ in 0..200 {
        let t = Instant::now();
        match http(&p.http, "quiet-token", "GET", "/v1.0/state/store/k", b"") {
            204 => lat.push(t.elapsed()),
            _ => failed += 1,
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(held);
    lat.sort();
    let (p50, p99) = (percentile(&lat, 50), percentile(&lat, 99));
    eprintln!(
        "fresh HTTP calls under 1,100 idle keep-alive connections: {failed} failed, p50 {p50:?}, p99 {p99:?}"
    );
    assert_eq!(failed, 0, "an authenticated app was locked out");
    assert!(p99 < Duration::from_secs(1), "p99 {p99:?}");
}
