//! The two load shapes: closed-loop throughput at a fixed concurrency, and open-loop latency
//! at a fixed rate with coordinated-omission correction.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use parking_lot::Mutex;

/// One request of a scenario: `(worker, sequence number)` → keys served, or an error text.
/// The worker index is stable within a closed-loop run (a worker may own a key); open-loop
/// requests get worker `seq % workers`.
pub type Op = Arc<dyn Fn(usize, u64) -> BoxFuture<'static, Result<u64, String>> + Send + Sync>;

/// Errors of one run: how many, and the first message.
#[derive(Debug, Default, Clone)]
pub struct Errors {
    pub count: u64,
    pub first: Option<String>,
}

impl Errors {
    pub fn add(&mut self, other: &Errors) {
        self.count += other.count;
        if self.first.is_none() {
            self.first.clone_from(&other.first);
        }
    }
}

#[derive(Default)]
struct ErrorSink(Mutex<Errors>);

impl ErrorSink {
    fn record(&self, e: String) {
        let mut g = self.0.lock();
        g.count += 1;
        if g.first.is_none() {
            g.first = Some(e);
        }
    }
    fn take(&self) -> Errors {
        std::mem::take(&mut *self.0.lock())
    }
}

/// Result of one closed-loop run.
pub struct Throughput {
    /// Requests per second.
    pub rps: f64,
    /// Keys per second (bulk requests count each key).
    pub keys_per_s: f64,
    pub errors: Errors,
}

/// Runs `op` from `concurrency` workers back to back for `duration`.
pub async fn closed_loop(op: &Op, concurrency: usize, duration: Duration) -> Throughput {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let keys = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(ErrorSink::default());
    let start = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|w| {
            let (op, stop, done, keys, errors) = (
                op.clone(),
                stop.clone(),
                done.clone(),
                keys.clone(),
                errors.clone(),
            );
            tokio::spawn(async move {
                let mut seq = w as u64;
                while !stop.load(Ordering::Relaxed) {
                    match op(w, seq).await {
                        Ok(k) => {
                            done.fetch_add(1, Ordering::Relaxed);
                            keys.fetch_add(k, Ordering::Relaxed);
                        }
                        Err(e) => errors.record(e),
                    }
                    seq += concurrency as u64;
                }
            })
        })
        .collect();
    tokio::time::sleep(duration).await;
    // Count what completed within the window only.
    let n = done.load(Ordering::Relaxed);
    let k = keys.load(Ordering::Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    Throughput {
        rps: n as f64 / elapsed,
        keys_per_s: k as f64 / elapsed,
        errors: errors.take(),
    }
}

/// Result of one open-loop run.
pub struct Latency {
    /// Latencies in microseconds (completion − intended send time), sorted.
    pub micros: Vec<f64>,
    pub errors: Errors,
    /// Requests actually scheduled per second (should equal the target rate).
    pub rate: f64,
}

impl Latency {
    /// The `q` quantile (0..=1), nearest rank.
    pub fn quantile(&self, q: f64) -> f64 {
        if self.micros.is_empty() {
            return f64::NAN;
        }
        let rank = ((q * self.micros.len() as f64).ceil() as usize).clamp(1, self.micros.len());
        self.micros[rank - 1]
    }
}

/// Sends `op` at `rate` per second for `duration`, on a schedule fixed in advance: request
/// `i` is due at `start + i / rate`, and its latency is measured from that due time, so a
/// stall (in the server or in the sender) counts for every request it delayed.
/// A dedicated thread keeps the schedule (sleeping, not spinning) and spawns each request on
/// the runtime; no request waits for another.
pub async fn open_loop(op: &Op, rate: f64, duration: Duration, workers: usize) -> Latency {
    let total = (rate * duration.as_secs_f64()).round() as u64;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let results: Arc<Mutex<Vec<f64>>> = Arc::new(Mutex::new(Vec::with_capacity(total as usize)));
    let errors = Arc::new(ErrorSink::default());
    let (finished_tx, finished_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let handle = tokio::runtime::Handle::current();
    let start = Instant::now() + Duration::from_millis(5);
    let sched = {
        let (op, results, errors) = (op.clone(), results.clone(), errors.clone());
        std::thread::spawn(move || {
            for i in 0..total {
                let due = start + interval.mul_f64(i as f64);
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                let (op, results, errors, tx) = (
                    op.clone(),
                    results.clone(),
                    errors.clone(),
                    finished_tx.clone(),
                );
                handle.spawn(async move {
                    let r = op((i as usize) % workers.max(1), i).await;
                    let lat = due.elapsed().as_secs_f64() * 1e6;
                    match r {
                        Ok(_) => results.lock().push(lat),
                        Err(e) => errors.record(e),
                    }
                    drop(tx);
                });
            }
        })
    };
    // Every request task holds a sender; the channel closes when the last one finishes.
    let mut rx = finished_rx;
    let _ = rx.recv().await;
    let _ = tokio::task::spawn_blocking(move || sched.join()).await;
    let mut micros = std::mem::take(&mut *results.lock());
    micros.sort_by(f64::total_cmp);
    Latency {
        micros,
        errors: errors.take(),
        rate: total as f64 / duration.as_secs_f64(),
    }
}

/// The median of `xs` (NaN when empty).
pub fn median(xs: &[f64]) -> f64 {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// `redis-benchmark -t get` on the same Redis, concurrency and value size: the baseline
/// of a Redis proxy (what Redis serves to a C client that does nothing else).
#[derive(Clone)]
pub struct RedisBenchmark {
    pub host: String,
    pub port: u16,
    pub value_size: usize,
}

impl RedisBenchmark {
    /// From a `redis://host:port` URL.
    pub fn from_url(url: &str, value_size: usize) -> Result<RedisBenchmark, String> {
        let rest = url
            .strip_prefix("redis://")
            .ok_or_else(|| format!("redis-benchmark needs a redis:// URL, not {url}"))?;
        let hostport = rest.rsplit('@').next().unwrap_or(rest);
        let hostport = hostport.split('/').next().unwrap_or(hostport);
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().map_err(|e| format!("port in {url}: {e}"))?),
            None => (hostport, 6379),
        };
        Ok(RedisBenchmark {
            host: host.to_owned(),
            port,
            value_size,
        })
    }

    /// Runs about `duration` of GETs (its request count estimated from a 100k/s rate) on
    /// `concurrency` connections. The key is set first (`-t set,get`), so GETs return values
    /// of the same size as Mecha's; only the GET rate is reported.
    pub async fn run(&self, concurrency: usize, duration: Duration) -> Throughput {
        let requests = ((duration.as_secs_f64() * 100_000.0) as u64).max(1000);
        let out = tokio::process::Command::new("redis-benchmark")
            .args(["-h", &self.host, "-p", &self.port.to_string()])
            .args(["-c", &concurrency.to_string()])
            .args(["-n", &requests.to_string()])
            .args(["-d", &self.value_size.to_string()])
            .args(["-t", "set,get", "--csv"])
            .output()
            .await;
        let failed = |e: String| Throughput {
            rps: 0.0,
            keys_per_s: 0.0,
            errors: Errors {
                count: 1,
                first: Some(e),
            },
        };
        let out = match out {
            Ok(o) if o.status.success() => o,
            Ok(o) => return failed(format!("redis-benchmark: {}", o.status)),
            Err(e) => return failed(format!("redis-benchmark: {e}")),
        };
        // CSV: "test","rps",...; one line per test.
        let text = String::from_utf8_lossy(&out.stdout);
        let rps = text.lines().find_map(|l| {
            let mut cols = l.split(',').map(|c| c.trim_matches('"'));
            (cols.next() == Some("GET"))
                .then(|| cols.next().and_then(|v| v.parse::<f64>().ok()))
                .flatten()
        });
        match rps {
            Some(rps) => Throughput {
                rps,
                keys_per_s: rps,
                errors: Errors::default(),
            },
            None => failed(format!("redis-benchmark printed no GET rate: {text}")),
        }
    }
}
