//! A bounded flood against one `mecha` process (descriptor limit [`FD_LIMIT`]), from an
//! app token and from no token at once: thousands of idle connections on both ports,
//! trickled bodies, made-up routes, stores and gRPC methods, amplifying HTTP bodies and
//! gRPC messages, huge extended-metadata PUTs. Meanwhile a well-behaved app keeps reading
//! its key over HTTP and gRPC.
//!
//! Bounds asserted (the baseline is the idle server, about 10 MiB and 30 descriptors):
//! * resident memory never above [`PEAK_RSS_MIB`] MiB, and back under [`AFTER_RSS_MIB`] MiB
//!   once the flood ends;
//! * open descriptors never above 2 listeners × (workers + 1) × `maxConnections` + 100:
//!   each worker accepts up to `maxConnections` so that the connection tracker, not a
//!   full worker, decides which connection goes, and the tracker holds a duplicate of each
//!   connection it keeps (to shut it down); the excess is closed as soon as it is accepted;
//! * fewer than 100 metric series (histogram buckets not counted);
//! * every request of the quiet app succeeds, none slower than [`QUIET_MAX`].

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::proc::{self, FD_LIMIT, Mecha, amplifying_body, post_as};
use crate::support::MEMORY_STORE;

const PEAK_RSS_MIB: usize = 256;
const AFTER_RSS_MIB: usize = 128;
const QUIET_MAX: Duration = Duration::from_secs(1);
const MAX_CONNECTIONS: usize = 500;
const WORKERS: usize = 2;

const CONFIG: &str = "apps:\n  - id: quiet\n    token: quiet-token\n  - id: flood\n    token: flood-token\nlimits:\n  maxConnections: 500\n  headerTimeout: 1s\n  bodyTimeout: 2s\n  idleTimeout: 5s\nserver:\n  workers: 2\n";

fn connect_many(addr: &str, n: usize, threads: usize) -> Vec<TcpStream> {
    let addr: SocketAddr = addr.parse().unwrap();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            std::thread::spawn(move || {
                (0..n / threads)
                    .filter_map(|_| {
                        TcpStream::connect_timeout(&addr, Duration::from_millis(20)).ok()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect()
}

fn trickle(addr: &str, token: Option<&str>, conns: usize, stop: &AtomicBool) {
    let auth = token
        .map(|t| format!("dapr-api-token: {t}\r\n"))
        .unwrap_or_default();
    let mut held: Vec<TcpStream> = Vec::new();
    for _ in 0..conns {
        if let Ok(mut s) = TcpStream::connect(addr) {
            let _ = s.write_all(
                format!("POST /v1.0/state/statestore HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 1000000\r\n\r\n[").as_bytes(),
            );
            held.push(s);
        }
    }
    while !stop.load(Ordering::Relaxed) {
        held.retain_mut(|s| s.write_all(b" ").is_ok());
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_flood_stays_bounded_and_a_quiet_app_is_served_throughout() {
    let _one = proc::alone();
    let started = Instant::now();
    let m = Mecha::start(CONFIG, MEMORY_STORE);
    let pid = m.pid();
    let (status, body) = post_as(
        &m.http,
        "quiet-token",
        "/v1.0/state/statestore",
        r#"[{"key":"quiet","value":1}]"#,
    );
    assert_eq!(status, 204, "{body}");

    let stop = Arc::new(AtomicBool::new(false));
    // The quiet app: HTTP on one kept-alive connection, gRPC on one channel.
    let quiet_http = {
        let (addr, stop) = (m.http.clone(), stop.clone());
        std::thread::spawn(move || proc::quiet_http_client(&addr, stop))
    };
    let quiet_grpc = {
        let (addr, stop) = (m.grpc.clone(), stop.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(proc::quiet_grpc_client(&addr, "quiet-token", stop))
        })
    };
    std::thread::sleep(Duration::from_millis(200));

    // Watch memory and descriptors.
    let max_fds = Arc::new(AtomicUsize::new(0));
    let watcher = {
        let (stop, max_fds) = (stop.clone(), max_fds.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                max_fds.fetch_max(proc::fds(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };

    let mut attackers = Vec::new();
    // Idle connections on both ports, held until the end.
    for addr in [m.grpc.clone(), m.http.clone()] {
        attackers.push(std::thread::spawn(move || {
            let held = connect_many(&addr, 3000, 8);
            std::thread::sleep(Duration::from_secs(4));
            drop(held);
        }));
    }
    // Trickled bodies, from an app and from no app, until the other attackers are done.
    let trickle_stop = Arc::new(AtomicBool::new(false));
    let tricklers: Vec<_> = [Some("flood-token"), None]
        .into_iter()
        .map(|token| {
            let (addr, stop) = (m.http.clone(), trickle_stop.clone());
            std::thread::spawn(move || trickle(&addr, token, 150, &stop))
        })
        .collect();
    // Made-up routes and stores, with and without a token.
    {
        let addr = m.http.clone();
        attackers.push(std::thread::spawn(move || {
            for i in 0..1500 {
                let id = format!("{i:x}-{}", i * 7919);
                proc::http(&addr, &format!("GET /x/{id} HTTP/1.1\r\n\r\n"));
                proc::http(
                    &addr,
                    &format!(
                        "GET /v1.0/state/s-{id}/k HTTP/1.1\r\ndapr-api-token: flood-token\r\n\r\n"
                    ),
                );
            }
        }));
    }
    // Huge extended-metadata PUTs (per-app metadata is bounded: refused while read).
    {
        let addr = m.http.clone();
        attackers.push(std::thread::spawn(move || {
            let big = "x".repeat(4 * 1024 * 1024 - 16);
            for i in 0..20 {
                let (status, text) = proc::http(
                    &addr,
                    &format!(
                        "PUT /v1.0/metadata/k{i} HTTP/1.1\r\ndapr-api-token: flood-token\r\nContent-Length: {}\r\n\r\n{big}",
                        big.len()
                    ),
                );
                assert!(status == 413 || status == 0, "{status} {text:.300}");
            }
        }));
    }
    // Made-up gRPC methods.
    {
        let addr = m.grpc.clone();
        attackers.push(std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(proc::grpc_made_up_methods(&addr, 1000));
        }));
    }
    // Amplifying bodies: 4 MB of `[{},{},...]` over HTTP, 2M empty items over gRPC.
    {
        let addr = m.http.clone();
        let body = Arc::new(amplifying_body());
        for _ in 0..8 {
            let (addr, body) = (addr.clone(), body.clone());
            attackers.push(std::thread::spawn(move || {
                for _ in 0..3 {
                    let (status, text) =
                        post_as(&addr, "flood-token", "/v1.0/state/statestore", &body);
                    // 400 once parsed, or 429 when the body budget is spent (refused
                    // before the body is buffered), or the connection closed.
                    assert!(
                        status == 400 || status == 429 || status == 0,
                        "{status} {text:.300}"
                    );
                }
            }));
        }
        let grpc = m.grpc.clone();
        attackers.push(std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            for _ in 0..2 {
                let st = rt.block_on(proc::grpc_save_empty_items(&grpc, 2_000_000));
                assert_ne!(st.code(), tonic::Code::Ok);
            }
        }));
    }
    let mut results: Vec<_> = attackers.into_iter().map(|a| a.join()).collect();
    trickle_stop.store(true, Ordering::Relaxed);
    results.extend(tricklers.into_iter().map(|t| t.join()));
    let peak = proc::peak_rss_kib(pid) / 1024;
    std::thread::sleep(Duration::from_millis(2500));
    stop.store(true, Ordering::Relaxed);
    for r in results {
        if let Err(panic) = r {
            std::panic::resume_unwind(panic);
        }
    }
    watcher.join().unwrap();
    let http_lat = quiet_http
        .join()
        .expect("the quiet app over HTTP was served");
    let grpc_lat = quiet_grpc
        .join()
        .expect("the quiet app over gRPC was served");

    let after = proc::rss_kib(pid) / 1024;
    let max_fds = max_fds.load(Ordering::Relaxed);
    let series = proc::scrape(&m.metrics)
        .lines()
        .filter(|l| !l.starts_with('#') && !l.contains("_bucket{"))
        .count();
    let worst = |l: &[Duration]| l.iter().max().copied().unwrap_or_default();
    let p50 = |l: &[Duration]| {
        let mut v = l.to_vec();
        v.sort();
        v.get(v.len() / 2).copied().unwrap_or_default()
    };
    eprintln!(
        "flood: {:?}, peak RSS {peak} MiB, after {after} MiB, max fds {max_fds} (limit {FD_LIMIT}), {series} series, quiet HTTP {} req p50 {:?} max {:?}, gRPC {} req p50 {:?} max {:?}",
        started.elapsed(),
        http_lat.len(),
        p50(&http_lat),
        worst(&http_lat),
        grpc_lat.len(),
        p50(&grpc_lat),
        worst(&grpc_lat)
    );
    assert!(peak < PEAK_RSS_MIB, "peak RSS {peak} MiB");
    assert!(after < AFTER_RSS_MIB, "RSS after the flood {after} MiB");
    assert!(
        max_fds <= 2 * (WORKERS + 1) * MAX_CONNECTIONS + 100,
        "{max_fds} descriptors"
    );
    assert!(series < 100, "{series} metric series");
    assert!(http_lat.len() > 50 && grpc_lat.len() > 50);
    assert!(
        worst(&http_lat) < QUIET_MAX,
        "quiet HTTP {:?}",
        worst(&http_lat)
    );
    assert!(
        worst(&grpc_lat) < QUIET_MAX,
        "quiet gRPC {:?}",
        worst(&grpc_lat)
    );
    // Still healthy and serving afterwards.
    let (status, _) = proc::http(&m.http, "GET /v1.0/healthz HTTP/1.1\r\n\r\n");
    assert_eq!(status, 204);
}
