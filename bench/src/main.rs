//! `mecha-bench`: what Mecha costs compared with talking to the store directly, measured in
//! one run on this machine.
//!
//! It starts the release `mecha` binary (next to this one) as a separate process on free
//! ports, with a generated resources directory (`mem`: in-memory, `redis`: Redis, `pg`:
//! PostgreSQL, `mysql`: MySQL / MariaDB, `sqlite`: SQLite in a file of the run's temp dir, all
//! with a run-unique key prefix and table), and measures each scenario against its baseline
//! alternately, several rounds, reporting medians:
//!
//! * throughput: closed loop at a fixed concurrency (HTTP over hyper keep-alive connections,
//!   one per worker; gRPC over a few tonic channels; Redis over multiplexed connections;
//!   PostgreSQL over tokio-postgres connections; MySQL and SQLite over sqlx pools of the size
//!   of Mecha's);
//! * latency: open loop at a fixed rate with coordinated-omission correction (each request
//!   has a due time fixed in advance; latency = completion − due time);
//! * footprint: start-up (exec → `/v1.0/healthz` 204), resident memory idle and under load,
//!   CPU per 1000 requests per second.
//!
//! The direct baselines send what Mecha sends: for Redis the same read (`HMGET key data
//! version expiry`) and `EVALSHA` of the write script on the same prefixed keys, for
//! PostgreSQL, MySQL and SQLite the same prepared statements with the same parameters (for
//! MySQL and SQLite a save is, as in Mecha, `BEGIN`, the upsert, `COMMIT`). Any error fails its scenario and makes the exit status non-zero.
//! `--quick` runs everything briefly (a smoke test: it never judges timings).
//!
//! Run it with `scripts/bench.sh [--quick] [--json FILE]`.

mod clients;
mod load;
mod neighbour;
mod process;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use futures::FutureExt;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};

use clients::{GrpcPool, HttpPool, MySqlDirect, MySqlDsn, PgDirect, RedisDirect, SqliteDirect};
use load::{Errors, Op, RedisBenchmark, closed_loop, median, open_loop};
use process::Mecha;

/// Benchmarks Mecha against direct store clients in one run.
#[derive(Parser, Debug, Clone)]
#[command(name = "mecha-bench")]
struct Args {
    /// Run everything briefly (smoke test; timings are not meaningful).
    #[arg(long)]
    quick: bool,
    /// Where to write the JSON results.
    #[arg(long, default_value = "mecha-bench.json")]
    json: PathBuf,
    /// Concurrent requests in the throughput runs.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 1024)]
    value_size: usize,
    /// Request rate of the latency runs (per second).
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// Rounds per scenario [default: 5, quick 1].
    #[arg(long)]
    rounds: Option<usize>,
    /// Seconds per throughput measurement [default: 2, quick 0.2].
    #[arg(long)]
    seconds: Option<f64>,
    /// Seconds per latency measurement [default: 5, quick 0.3].
    #[arg(long)]
    latency_seconds: Option<f64>,
    /// Rounds of the latency scenarios [default: 3, quick 1].
    #[arg(long)]
    latency_rounds: Option<usize>,
    /// Start-ups to time (the last one is benchmarked) [default: 5, quick 1].
    #[arg(long)]
    startups: Option<usize>,
    /// gRPC channels (HTTP/2 connections) of the gRPC clients.
    #[arg(long, default_value_t = 4)]
    grpc_channels: usize,
    /// Multiplexed connections of the direct Redis client (Mecha: one per serving thread).
    #[arg(long, default_value_t = 2)]
    redis_connections: usize,
    /// Connections of the direct PostgreSQL client (Mecha's pool: maxConns, 4 per CPU).
    #[arg(long)]
    pg_connections: Option<usize>,
    /// Connections of the direct MySQL client (Mecha's `state.mysql` pool: 8).
    #[arg(long, default_value_t = 8)]
    mysql_connections: usize,
    /// Connections of the direct SQLite client (Mecha's `state.sqlite` pool: 4).
    #[arg(long, default_value_t = 4)]
    sqlite_connections: usize,
    /// Mecha's `server.workers` (0: one per CPU, Mecha's default).
    #[arg(long, default_value_t = 0)]
    workers: usize,
    /// Only run scenarios whose id contains this text (or one of several, comma-separated:
    /// `--only mysql,sqlite`).
    #[arg(long)]
    only: Option<String>,
    /// Redis URL.
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    /// PostgreSQL URL.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres:postgres@127.0.0.1:5432/test"
    )]
    database_url: String,
    /// MySQL / MariaDB, as a Go DSN (what `state.mysql` takes); its database holds the table.
    #[arg(
        long,
        env = "MYSQL_URL",
        default_value = "root:@tcp(127.0.0.1:3306)/test"
    )]
    mysql_url: String,
    /// The mecha binary [default: `mecha` next to this executable].
    #[arg(long)]
    mecha: Option<PathBuf>,
    /// Another mecha binary (an earlier build) to compare against: adds the scenario
    /// `before_after`, HTTP GetState via Redis on both, alternately.
    #[arg(long)]
    baseline_mecha: Option<PathBuf>,
}

struct Plan {
    rounds: usize,
    seconds: Duration,
    latency_seconds: Duration,
    latency_rounds: usize,
    startups: usize,
    keys: usize,
}

/// One side of a scenario.
struct Side {
    label: &'static str,
    load: Load,
    /// Whether this side is served by Mecha (its CPU is measured in latency runs).
    mecha: bool,
}

/// What a side runs.
enum Load {
    /// Requests from this process.
    Op(Op),
    /// `redis-benchmark` as a process of its own (throughput only).
    RedisBenchmark(RedisBenchmark),
}

impl Side {
    /// The side's requests, for the latency runs (which only have request sides).
    fn op(&self) -> Result<&Op, String> {
        match &self.load {
            Load::Op(op) => Ok(op),
            Load::RedisBenchmark(_) => Err(format!("{}: not a latency side", self.label)),
        }
    }

    /// One closed-loop throughput run.
    async fn throughput(&self, concurrency: usize, duration: Duration) -> load::Throughput {
        match &self.load {
            Load::Op(op) => closed_loop(op, concurrency, duration).await,
            Load::RedisBenchmark(rb) => rb.run(concurrency, duration).await,
        }
    }
}

/// A scenario: its sides run alternately, several rounds.
struct Scenario {
    id: &'static str,
    title: &'static str,
    /// Throughput unit: requests or keys per second.
    keys: bool,
    sides: Vec<Side>,
}

struct SideResult {
    label: &'static str,
    values: Vec<f64>,
    errors: Errors,
    /// CPU microseconds per request (or key) by party, per round.
    cpu: Vec<process::CpuSnapshot>,
}

impl SideResult {
    fn median(&self) -> f64 {
        median(&self.values)
    }

    /// Median CPU microseconds per request (or key) of each party.
    fn cpu_us(&self) -> process::CpuSnapshot {
        let of = |f: fn(&process::CpuSnapshot) -> f64| {
            median(&self.cpu.iter().map(f).collect::<Vec<_>>())
        };
        process::CpuSnapshot {
            mecha: of(|c| c.mecha),
            store: of(|c| c.store),
            client: of(|c| c.client),
            machine: of(|c| c.machine),
        }
    }
}

struct LatencySide {
    label: &'static str,
    p50: Vec<f64>,
    p99: Vec<f64>,
    p999: Vec<f64>,
    /// Mecha's CPU (% of one core) per 1000 requests per second, per round.
    cpu: Vec<f64>,
    samples: usize,
    errors: Errors,
}

/// A ratio with a target: `scenario` side `num` / side `den` ≥ `target`.
struct Check {
    what: &'static str,
    scenario: &'static str,
    num: usize,
    den: usize,
    target: Option<f64>,
}

const CHECKS: &[Check] = &[
    Check {
        what: "HTTP GetState via Redis / redis-benchmark -t get",
        scenario: "redis_get_http",
        num: 0,
        den: 2,
        target: Some(0.85),
    },
    Check {
        what: "HTTP GetState via Redis / the same Mecha's in-memory GetState",
        scenario: "redis_get_http",
        num: 0,
        den: 3,
        target: Some(0.85),
    },
    Check {
        what: "HTTP GetState via Redis / direct Redis (same commands)",
        scenario: "redis_get_http",
        num: 0,
        den: 1,
        target: None,
    },
    Check {
        what: "HTTP SaveState via Redis / direct Redis",
        scenario: "redis_save_http",
        num: 0,
        den: 1,
        target: None,
    },
    Check {
        what: "gRPC GetState via Redis / empty tonic handler",
        scenario: "redis_get_grpc",
        num: 0,
        den: 2,
        target: Some(0.9),
    },
    Check {
        what: "gRPC GetState via Redis / direct Redis",
        scenario: "redis_get_grpc",
        num: 0,
        den: 1,
        target: None,
    },
    Check {
        what: "HTTP GetState via PostgreSQL / direct prepared statement",
        scenario: "pg_get_http",
        num: 0,
        den: 1,
        target: Some(0.8),
    },
    Check {
        what: "HTTP SaveState via PostgreSQL / direct prepared statement",
        scenario: "pg_save_http",
        num: 0,
        den: 1,
        target: None,
    },
    Check {
        what: "HTTP GetState via MySQL / direct prepared statement",
        scenario: "mysql_get_http",
        num: 0,
        den: 1,
        target: None,
    },
    Check {
        what: "HTTP SaveState via MySQL / direct prepared statement",
        scenario: "mysql_save_http",
        num: 0,
        den: 1,
        target: None,
    },
    Check {
        what: "HTTP GetState via SQLite / direct prepared statement",
        scenario: "sqlite_get_http",
        num: 0,
        den: 1,
        target: None,
    },
    Check {
        what: "HTTP SaveState via SQLite / direct prepared statement",
        scenario: "sqlite_save_http",
        num: 0,
        den: 1,
        target: None,
    },
    Check {
        what: "in-memory GetState: gRPC / HTTP",
        scenario: "mem_get",
        num: 1,
        den: 0,
        target: None,
    },
    Check {
        what: "bulk get of 10 keys / single gets (keys/s)",
        scenario: "bulk_get",
        num: 0,
        den: 1,
        target: Some(7.0),
    },
    Check {
        what: "GetState via Redis: this build / --baseline-mecha (recording costs a few %)",
        scenario: "before_after",
        num: 0,
        den: 1,
        target: Some(0.95),
    },
    Check {
        what: "read + ETag'd save / read + plain save",
        scenario: "etag_save",
        num: 0,
        den: 1,
        target: None,
    },
];

/// Added p99 latency target (ms) for the scenarios with a direct baseline.
const ADDED_P99_TARGET_MS: f64 = 0.1;
/// Idle resident memory target: 8 MB.
const IDLE_RSS_TARGET_MIB: f64 = 8.0 * 1000.0 * 1000.0 / (1024.0 * 1024.0);
const STARTUP_TARGET_MS: f64 = 100.0;
/// Concurrent requests of the noisy app in the noisy-neighbour scenario.
const NOISY_FLOOD_CONCURRENCY: usize = 128;

fn main() -> ExitCode {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(run(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("mecha-bench: FAILED (errors in at least one scenario)");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("mecha-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn mecha_binary(args: &Args) -> Result<PathBuf, String> {
    let bin = match &args.mecha {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name("mecha"),
    };
    if !bin.exists() {
        return Err(format!(
            "{} not found: build it first (cargo build --release --bins, or run scripts/bench.sh)",
            bin.display()
        ));
    }
    Ok(bin)
}

/// What the run leaves behind and removes at the end.
struct Cleanup {
    dir: PathBuf,
    redis_url: String,
    prefix: String,
    pg_url: String,
    mysql: MySqlDsn,
    table: String,
}

impl Cleanup {
    async fn run(&self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Ok(client) = redis::Client::open(self.redis_url.as_str())
            && let Ok(mut conn) = client.get_multiplexed_async_connection().await
        {
            let pattern = format!("{}||*", self.prefix);
            let mut cursor: u64 = 0;
            loop {
                let r: Result<(u64, Vec<String>), _> = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .query_async(&mut conn)
                    .await;
                let Ok((next, keys)) = r else { break };
                if !keys.is_empty() {
                    let _: Result<i64, _> =
                        redis::cmd("DEL").arg(&keys).query_async(&mut conn).await;
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        if let Ok((client, conn)) =
            tokio_postgres::connect(&self.pg_url, tokio_postgres::NoTls).await
        {
            tokio::spawn(conn);
            let t = &self.table;
            let _ = client
                .batch_execute(&format!(
                    "DROP TABLE IF EXISTS {t}; DROP SEQUENCE IF EXISTS {t}_version_seq; DROP TABLE IF EXISTS {t}_meta;"
                ))
                .await;
        }
        if let Ok(mut conn) =
            <sqlx::MySqlConnection as sqlx::Connection>::connect_with(&self.mysql.options()).await
        {
            let (db, t) = (&self.mysql.database, &self.table);
            for sql in [
                format!("DROP TABLE IF EXISTS `{db}`.`{t}`"),
                format!("DROP TABLE IF EXISTS `{db}`.`{t}_meta`"),
            ] {
                let _ = sqlx::query(&sql).execute(&mut conn).await;
            }
        }
    }
}

async fn run(args: Args) -> Result<bool, String> {
    let plan = if args.quick {
        Plan {
            rounds: args.rounds.unwrap_or(1),
            seconds: Duration::from_secs_f64(args.seconds.unwrap_or(0.2)),
            latency_seconds: Duration::from_secs_f64(args.latency_seconds.unwrap_or(0.3)),
            latency_rounds: args.latency_rounds.unwrap_or(1),
            startups: args.startups.unwrap_or(1),
            keys: 100,
        }
    } else {
        Plan {
            rounds: args.rounds.unwrap_or(5),
            seconds: Duration::from_secs_f64(args.seconds.unwrap_or(2.0)),
            latency_seconds: Duration::from_secs_f64(args.latency_seconds.unwrap_or(5.0)),
            latency_rounds: args.latency_rounds.unwrap_or(3),
            startups: args.startups.unwrap_or(5),
            keys: 1000,
        }
    };
    if args.value_size < 2 {
        return Err("--value-size must be at least 2 (a JSON string)".into());
    }
    let bin = mecha_binary(&args)?;
    let pid = std::process::id();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let run_id = format!("{pid}_{nanos}");
    let mysql = MySqlDsn::parse(&args.mysql_url)?;
    let cleanup = Cleanup {
        dir: std::env::temp_dir().join(format!("mecha-bench-{run_id}")),
        redis_url: args.redis_url.clone(),
        prefix: format!("mechabench{run_id}"),
        pg_url: args.database_url.clone(),
        mysql,
        table: format!("mecha_bench_{run_id}"),
    };
    let started = Instant::now();
    let result = bench(&args, &plan, &bin, &cleanup).await;
    cleanup.run().await;
    let (ok, mut report) = result?;
    let secs = started.elapsed().as_secs_f64();
    report["total_seconds"] = json!(secs);
    println!("\nTotal run time: {secs:.1} s");
    std::fs::write(
        &args.json,
        serde_json::to_vec_pretty(&report).unwrap_or_default(),
    )
    .map_err(|e| format!("cannot write {}: {e}", args.json.display()))?;
    println!("JSON results: {}", args.json.display());
    Ok(ok)
}

async fn bench(
    args: &Args,
    plan: &Plan,
    bin: &std::path::Path,
    cleanup: &Cleanup,
) -> Result<(bool, Value), String> {
    // Fail early and clearly when a service is missing.
    let redis_probe = RedisDirect::connect(&args.redis_url, 1)
        .await
        .map_err(|e| format!("Redis at {} is not reachable: {e}", args.redis_url))?;
    drop(redis_probe);
    let (pg_probe, conn) = tokio_postgres::connect(&args.database_url, tokio_postgres::NoTls)
        .await
        .map_err(|e| format!("PostgreSQL is not reachable: {e}"))?;
    drop(pg_probe);
    drop(conn);
    let mysql_probe =
        <sqlx::MySqlConnection as sqlx::Connection>::connect_with(&cleanup.mysql.options())
            .await
            .map_err(|e| format!("MySQL at {} is not reachable: {e}", args.mysql_url))?;
    drop(mysql_probe);

    let dir = &cleanup.dir;
    let resources = dir.join("components");
    process::write_resources(
        &resources,
        &process::Stores {
            redis_host: &args.redis_url,
            prefix: &cleanup.prefix,
            pg_url: &args.database_url,
            table: &cleanup.table,
            mysql_dsn: &args.mysql_url,
            mysql_schema: &cleanup.mysql.database,
            sqlite_file: &sqlite_file(dir),
        },
    )
    .map_err(|e| format!("cannot write components: {e}"))?;
    let config = dir.join("mecha.yaml");
    let config_text = if args.workers > 0 {
        format!("server:\n  workers: {}\n", args.workers)
    } else {
        "{}\n".to_owned()
    };
    std::fs::write(&config, config_text).map_err(|e| e.to_string())?;

    // Start-up: several cold starts, the last one stays up for the benchmark.
    let mut startups = Vec::new();
    let mut mecha = None;
    for i in 0..plan.startups.max(1) {
        let m = Mecha::start(bin, &resources, &config, dir.join(format!("mecha-{i}.log")))?;
        startups.push(m.startup.as_secs_f64() * 1000.0);
        if i + 1 < plan.startups.max(1) {
            m.stop();
        } else {
            mecha = Some(m);
        }
    }
    let mecha = mecha.expect("at least one start");
    let mpid = mecha.pid();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_rss = process::status_mib(mpid, "VmRSS");
    let baseline = match &args.baseline_mecha {
        Some(b) => Some(Mecha::start(
            b,
            &resources,
            &config,
            dir.join("mecha-baseline.log"),
        )?),
        None => None,
    };

    let out = measure(args, plan, &mecha, baseline.as_ref(), cleanup).await;
    if let Some(b) = baseline {
        b.stop();
    }
    let idle_after = process::status_mib(mpid, "VmRSS");
    let hwm = process::status_mib(mpid, "VmHWM");
    let log = mecha.log.clone();
    mecha.stop();
    let (ok, throughput, latency, load_rss) = match out {
        Ok(v) => v,
        Err(e) => {
            let tail = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = tail.lines().rev().take(20).collect();
            return Err(format!(
                "{e}\nlast lines of the mecha log:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ));
        }
    };
    eprintln!("allocations per request (in-process) ...");
    let allocations = allocations()?;
    let footprint = Footprint {
        startup_ms: startups,
        idle_rss,
        idle_after,
        load_rss,
        hwm,
        allocations,
    };
    let mut report = render(args, plan, &throughput, &latency, &footprint);
    let mut ok = ok;
    if selected(args, "noisy_neighbour") {
        eprintln!(
            "noisy neighbour: quiet app at {}/s, noisy app flooding ...",
            args.rate
        );
        // The noisy neighbour: 128 concurrent flooding requests, whatever --concurrency.
        let flood = NOISY_FLOOD_CONCURRENCY;
        let n = neighbour::run(
            bin,
            dir,
            args.rate,
            plan.latency_seconds,
            plan.latency_rounds,
            flood,
        )
        .await?;
        ok &= n.errors.count == 0;
        let met = n.ratio <= neighbour::P99_RATIO_BOUND;
        println!(
            "### Noisy neighbour (quotas)\n\n| quiet app p99 alone | p99 while the noisy app floods | ratio | bound | result |\n|---:|---:|---:|---:|---|\n| {:.3} ms | {:.3} ms | {:.2}x | <= {:.1}x | {} |\n\nNoisy app: {} concurrent requests, {:.0} answered/s of which {:.0} served/s (the rest 429); errors: {}{}\n",
            n.alone_p99_ms,
            n.flooded_p99_ms,
            n.ratio,
            neighbour::P99_RATIO_BOUND,
            if args.quick { "-" } else { pass(met) },
            n.flood_concurrency,
            n.noisy_rps,
            n.noisy_served_rps,
            n.errors.count,
            n.errors
                .first
                .as_deref()
                .map(|e| format!(" (first: {e})"))
                .unwrap_or_default(),
        );
        report["noisy_neighbour"] = json!({
            "quiet_p99_alone_ms": n.alone_p99_ms,
            "quiet_p99_flooded_ms": n.flooded_p99_ms,
            "ratio": n.ratio,
            "bound": neighbour::P99_RATIO_BOUND,
            "noisy_concurrency": n.flood_concurrency,
            "noisy_answered_rps": n.noisy_rps,
            "noisy_served_rps": n.noisy_served_rps,
            "errors": n.errors.count,
        });
    }
    Ok((ok, report))
}

/// Whether `--only` selects the scenario `id`.
fn selected(args: &Args, id: &str) -> bool {
    args.only
        .as_deref()
        .is_none_or(|o| o.split(',').any(|p| id.contains(p.trim())))
}

/// The `state.sqlite` database of a run: a file in the run's temp dir.
fn sqlite_file(dir: &std::path::Path) -> PathBuf {
    dir.join("state.sqlite")
}

struct Footprint {
    startup_ms: Vec<f64>,
    idle_rss: f64,
    idle_after: f64,
    load_rss: f64,
    hwm: f64,
    /// `mecha-allocs`' rows (name, per_request, harness, budget).
    allocations: Vec<Value>,
}

/// Runs `mecha-allocs` (next to this executable): allocations per request of the hot path,
/// counted in-process with a counting allocator (this binary keeps the system allocator).
fn allocations() -> Result<Vec<Value>, String> {
    let bin = std::env::current_exe()
        .map_err(|e| e.to_string())?
        .with_file_name("mecha-allocs");
    let out = std::process::Command::new(&bin).output().map_err(|e| {
        format!(
            "{}: {e} (run scripts/bench.sh, which builds it)",
            bin.display()
        )
    })?;
    if !out.status.success() {
        return Err(format!(
            "mecha-allocs failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    match serde_json::from_slice(&out.stdout) {
        Ok(Value::Array(rows)) => Ok(rows),
        _ => Err("mecha-allocs printed no JSON array".into()),
    }
}

type Measured = (
    bool,
    Vec<(&'static Scenario, Vec<SideResult>)>,
    Vec<(&'static str, &'static str, Vec<LatencySide>)>,
    f64,
);

#[allow(clippy::too_many_lines)]
async fn measure(
    args: &Args,
    plan: &Plan,
    mecha: &Mecha,
    baseline: Option<&Mecha>,
    cleanup: &Cleanup,
) -> Result<Measured, String> {
    let conc = args.concurrency.max(1);
    let value: Bytes = {
        let mut v = Vec::with_capacity(args.value_size);
        v.push(b'"');
        v.extend(std::iter::repeat_n(b'x', args.value_size - 2));
        v.push(b'"');
        Bytes::from(v)
    };
    let value_json: Arc<tokio_postgres::types::Json<Value>> = Arc::new(
        tokio_postgres::types::Json(serde_json::from_slice(&value).map_err(|e| e.to_string())?),
    );
    let nkeys = plan.keys as u64;
    let http = HttpPool::new(mecha.http);
    let grpc = GrpcPool::connect(mecha.grpc, args.grpc_channels).await?;
    let redis = RedisDirect::connect(&args.redis_url, args.redis_connections).await?;
    let pg_conns = args.pg_connections.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get() * 4)
            .unwrap_or(4)
            .max(4)
    });
    let empty_addr = clients::start_empty_tonic(value.to_vec(), mecha::app::serving_threads(0))?;
    let empty = GrpcPool::connect(empty_addr, args.grpc_channels).await?;
    let prefix = cleanup.prefix.clone();

    // Seed every store through Mecha: keys k0.. for reads, e0.. for the ETag scenario.
    for store in ["mem", "redis", "pg", "mysql", "sqlite"] {
        let all: Vec<String> = (0..nkeys)
            .map(|i| format!("k{i}"))
            .chain((0..conc).map(|w| format!("e{w}")))
            .collect();
        for chunk in all.chunks(100) {
            let items: Vec<String> = chunk
                .iter()
                .map(|k| {
                    format!(
                        "{{\"key\":\"{k}\",\"value\":{}}}",
                        std::str::from_utf8(&value).unwrap_or("\"\"")
                    )
                })
                .collect();
            let body = Bytes::from(format!("[{}]", items.join(",")));
            let r = http
                .send(
                    Method::POST,
                    &format!("/v1.0/state/{store}"),
                    Some(body),
                    None,
                )
                .await?;
            if r.status != StatusCode::NO_CONTENT {
                return Err(format!(
                    "seeding {store} failed: {} {}",
                    r.status,
                    String::from_utf8_lossy(&r.body)
                ));
            }
        }
    }
    // The SQL tables exist now (Mecha migrated them on the first write).
    let pg = PgDirect::connect(&args.database_url, &cleanup.table, pg_conns).await?;
    let mysql = MySqlDirect::connect(
        &cleanup.mysql,
        &format!("`{}`.`{}`", cleanup.mysql.database, cleanup.table),
        args.mysql_connections,
    )
    .await?;
    let sqlite = SqliteDirect::connect(
        &sqlite_file(&cleanup.dir),
        &cleanup.table,
        args.sqlite_connections,
    )
    .await?;

    let expect_len = value.len();
    let http_get_on = |http: Arc<HttpPool>, store: &'static str| -> Op {
        Arc::new(move |_w, seq| {
            let http = http.clone();
            async move {
                let path = format!("/v1.0/state/{store}/k{}", seq % nkeys);
                let r = http.send(Method::GET, &path, None, None).await?;
                if r.status != StatusCode::OK || r.body.len() != expect_len {
                    return Err(format!("GET {path}: {} ({} bytes)", r.status, r.body.len()));
                }
                Ok(1)
            }
            .boxed()
        })
    };
    let http_get = |store: &'static str| http_get_on(http.clone(), store);
    let save_body = {
        let value = value.clone();
        move |key: &str| {
            let mut b = Vec::with_capacity(value.len() + 32);
            b.extend_from_slice(b"[{\"key\":\"");
            b.extend_from_slice(key.as_bytes());
            b.extend_from_slice(b"\",\"value\":");
            b.extend_from_slice(&value);
            b.extend_from_slice(b"}]");
            Bytes::from(b)
        }
    };
    let http_save = |store: &'static str| -> Op {
        let http = http.clone();
        let save_body = save_body.clone();
        Arc::new(move |_w, seq| {
            let http = http.clone();
            let body = save_body(&format!("w{}", seq % nkeys));
            async move {
                let path = format!("/v1.0/state/{store}");
                let r = http.send(Method::POST, &path, Some(body), None).await?;
                if r.status != StatusCode::NO_CONTENT {
                    return Err(format!(
                        "POST {path}: {} {}",
                        r.status,
                        String::from_utf8_lossy(&r.body)
                    ));
                }
                Ok(1)
            }
            .boxed()
        })
    };
    let grpc_get = |pool: &Arc<GrpcPool>, store: &'static str| -> Op {
        let pool = pool.clone();
        Arc::new(move |_w, seq| {
            let pool = pool.clone();
            async move {
                let r = pool.get(seq, store, format!("k{}", seq % nkeys)).await?;
                if r.data.len() != expect_len {
                    return Err(format!("grpc GetState: {} bytes", r.data.len()));
                }
                Ok(1)
            }
            .boxed()
        })
    };
    let redis_get: Op = {
        let (redis, prefix) = (redis.clone(), prefix.clone());
        Arc::new(move |_w, seq| {
            let (redis, key) = (redis.clone(), format!("{prefix}||k{}", seq % nkeys));
            async move {
                let n = redis.get(seq, &key).await?;
                if n != expect_len {
                    return Err(format!("redis {key}: {n} bytes"));
                }
                Ok(1)
            }
            .boxed()
        })
    };
    let redis_set: Op = {
        let (redis, prefix, value) = (redis.clone(), prefix.clone(), value.clone());
        Arc::new(move |_w, seq| {
            let (redis, value) = (redis.clone(), value.clone());
            let key = format!("{prefix}||w{}", seq % nkeys);
            async move {
                redis.set(seq, &key, &value).await?;
                Ok(1)
            }
            .boxed()
        })
    };
    let pg_get: Op = {
        let (pg, prefix) = (pg.clone(), prefix.clone());
        Arc::new(move |_w, seq| {
            let (pg, key) = (pg.clone(), format!("{prefix}||k{}", seq % nkeys));
            async move {
                let n = pg.get(seq, &key).await?;
                if n != expect_len {
                    return Err(format!("postgres {key}: {n} bytes"));
                }
                Ok(1)
            }
            .boxed()
        })
    };
    let pg_set: Op = {
        let (pg, prefix, value, json) = (pg.clone(), prefix.clone(), value.clone(), value_json);
        Arc::new(move |_w, seq| {
            let (pg, value, json) = (pg.clone(), value.clone(), json.clone());
            let key = format!("{prefix}||w{}", seq % nkeys);
            async move {
                pg.set(seq, &key, &value, &json).await?;
                Ok(1)
            }
            .boxed()
        })
    };
    let mysql_get: Op = {
        let (mysql, prefix) = (mysql.clone(), prefix.clone());
        Arc::new(move |_w, seq| {
            let (mysql, key) = (mysql.clone(), format!("{prefix}||k{}", seq % nkeys));
            async move {
                let n = mysql.get(&key).await?;
                if n != expect_len {
                    return Err(format!("mysql {key}: {n} bytes"));
                }
                Ok(1)
            }
            .boxed()
        })
    };
    let mysql_set: Op = {
        let (mysql, prefix, value) = (mysql.clone(), prefix.clone(), value.clone());
        Arc::new(move |_w, seq| {
            let (mysql, value) = (mysql.clone(), value.clone());
            let key = format!("{prefix}||w{}", seq % nkeys);
            async move {
                mysql.set(&key, &value).await?;
                Ok(1)
            }
            .boxed()
        })
    };
    let sqlite_get: Op = {
        let (sqlite, prefix) = (sqlite.clone(), prefix.clone());
        Arc::new(move |_w, seq| {
            let (sqlite, key) = (sqlite.clone(), format!("{prefix}||k{}", seq % nkeys));
            async move {
                let n = sqlite.get(&key).await?;
                if n != expect_len {
                    return Err(format!("sqlite {key}: {n} bytes"));
                }
                Ok(1)
            }
            .boxed()
        })
    };
    let sqlite_set: Op = {
        let (sqlite, prefix, value) = (sqlite.clone(), prefix.clone(), value.clone());
        Arc::new(move |_w, seq| {
            let (sqlite, value) = (sqlite.clone(), value.clone());
            let key = format!("{prefix}||w{}", seq % nkeys);
            async move {
                sqlite.set(&key, &value).await?;
                Ok(1)
            }
            .boxed()
        })
    };
    let bulk: Op = {
        let http = http.clone();
        Arc::new(move |_w, seq| {
            let http = http.clone();
            let keys: Vec<String> = (0..10)
                .map(|j| format!("\"k{}\"", (seq * 10 + j) % nkeys))
                .collect();
            let body = Bytes::from(format!(
                "{{\"keys\":[{}],\"parallelism\":10}}",
                keys.join(",")
            ));
            async move {
                let r = http
                    .send(Method::POST, "/v1.0/state/redis/bulk", Some(body), None)
                    .await?;
                let items: Vec<Value> = serde_json::from_slice(&r.body).unwrap_or_default();
                let found = items.iter().filter(|i| i.get("data").is_some()).count();
                if r.status != StatusCode::OK || found != 10 {
                    return Err(format!("bulk get: {} with {found} values", r.status));
                }
                Ok(10)
            }
            .boxed()
        })
    };
    // Read the ETag, then save: conditionally (If-Match via the item's etag) or plainly.
    // Each worker owns its key, so no ETag can be stale.
    let read_then_save = |with_etag: bool| -> Op {
        let http = http.clone();
        let value = value.clone();
        Arc::new(move |w, _seq| {
            let http = http.clone();
            let value = value.clone();
            async move {
                let key = format!("e{w}");
                let r = http
                    .send(Method::GET, &format!("/v1.0/state/redis/{key}"), None, None)
                    .await?;
                let etag = r
                    .etag
                    .filter(|_| r.status == StatusCode::OK)
                    .ok_or_else(|| format!("GET {key}: {} without ETag", r.status))?;
                let v = std::str::from_utf8(&value).unwrap_or("\"\"");
                let body = if with_etag {
                    format!("[{{\"key\":\"{key}\",\"value\":{v},\"etag\":\"{etag}\"}}]")
                } else {
                    format!("[{{\"key\":\"{key}\",\"value\":{v}}}]")
                };
                let r = http
                    .send(
                        Method::POST,
                        "/v1.0/state/redis",
                        Some(Bytes::from(body)),
                        None,
                    )
                    .await?;
                if r.status != StatusCode::NO_CONTENT {
                    return Err(format!(
                        "save {key}: {} {}",
                        r.status,
                        String::from_utf8_lossy(&r.body)
                    ));
                }
                Ok(1)
            }
            .boxed()
        })
    };

    let side = |label, op, mecha| Side {
        label,
        load: Load::Op(op),
        mecha,
    };
    let redis_benchmark = RedisBenchmark::from_url(&args.redis_url, args.value_size)?;
    let mut scenarios: Vec<Scenario> = vec![
        Scenario {
            id: "redis_get_http",
            title: "HTTP GetState via Redis",
            keys: false,
            sides: vec![
                side("Mecha HTTP", http_get("redis"), true),
                side("direct Redis (HMGET)", redis_get.clone(), false),
                Side {
                    label: "redis-benchmark -t get",
                    load: Load::RedisBenchmark(redis_benchmark),
                    mecha: false,
                },
                side("Mecha HTTP, in-memory store", http_get("mem"), true),
            ],
        },
        Scenario {
            id: "redis_save_http",
            title: "HTTP SaveState via Redis",
            keys: false,
            sides: vec![
                side("Mecha HTTP", http_save("redis"), true),
                side("direct Redis (EVALSHA write script)", redis_set, false),
            ],
        },
        Scenario {
            id: "redis_get_grpc",
            title: "gRPC GetState via Redis",
            keys: false,
            sides: vec![
                side("Mecha gRPC", grpc_get(&grpc, "redis"), true),
                side("direct Redis (HMGET)", redis_get.clone(), false),
                side("empty tonic handler", grpc_get(&empty, "redis"), false),
            ],
        },
        Scenario {
            id: "pg_get_http",
            title: "HTTP GetState via PostgreSQL",
            keys: false,
            sides: vec![
                side("Mecha HTTP", http_get("pg"), true),
                side("direct prepared SELECT", pg_get.clone(), false),
            ],
        },
        Scenario {
            id: "pg_save_http",
            title: "HTTP SaveState via PostgreSQL",
            keys: false,
            sides: vec![
                side("Mecha HTTP", http_save("pg"), true),
                side("direct prepared upsert", pg_set, false),
            ],
        },
        Scenario {
            id: "mysql_get_http",
            title: "HTTP GetState via MySQL",
            keys: false,
            sides: vec![
                side("Mecha HTTP", http_get("mysql"), true),
                side("direct prepared SELECT", mysql_get.clone(), false),
            ],
        },
        Scenario {
            id: "mysql_save_http",
            title: "HTTP SaveState via MySQL",
            keys: false,
            sides: vec![
                side("Mecha HTTP", http_save("mysql"), true),
                side("direct prepared upsert", mysql_set, false),
            ],
        },
        Scenario {
            id: "sqlite_get_http",
            title: "HTTP GetState via SQLite",
            keys: false,
            sides: vec![
                side("Mecha HTTP", http_get("sqlite"), true),
                side("direct prepared SELECT", sqlite_get.clone(), false),
            ],
        },
        Scenario {
            id: "sqlite_save_http",
            title: "HTTP SaveState via SQLite",
            keys: false,
            sides: vec![
                side("Mecha HTTP", http_save("sqlite"), true),
                side("direct prepared upsert", sqlite_set, false),
            ],
        },
        Scenario {
            id: "mem_get",
            title: "in-memory GetState",
            keys: false,
            sides: vec![
                side("Mecha HTTP", http_get("mem"), true),
                side("Mecha gRPC", grpc_get(&grpc, "mem"), true),
            ],
        },
        Scenario {
            id: "bulk_get",
            title: "Redis GetState, keys/s: bulk of 10 vs single (HTTP)",
            keys: true,
            sides: vec![
                side("bulk get of 10 keys", bulk, true),
                side("single gets", http_get("redis"), true),
            ],
        },
        Scenario {
            id: "etag_save",
            title: "Redis SaveState after a read: ETag'd (CAS) vs plain (HTTP)",
            keys: false,
            sides: vec![
                side("read + ETag'd save", read_then_save(true), true),
                side("read + plain save", read_then_save(false), true),
            ],
        },
    ];
    if let Some(b) = baseline {
        scenarios.push(Scenario {
            id: "before_after",
            title: "HTTP GetState via Redis: this build vs --baseline-mecha",
            keys: false,
            sides: vec![
                side("this build", http_get("redis"), true),
                side(
                    "baseline build",
                    http_get_on(HttpPool::new(b.http), "redis"),
                    true,
                ),
            ],
        });
    }
    let latency_scenarios: Vec<(&'static str, &'static str, Vec<Side>)> = vec![
        (
            "redis_get_http",
            "HTTP GetState via Redis",
            vec![
                side("Mecha HTTP", http_get("redis"), true),
                side("direct Redis", redis_get.clone(), false),
            ],
        ),
        (
            "redis_get_grpc",
            "gRPC GetState via Redis",
            vec![
                side("Mecha gRPC", grpc_get(&grpc, "redis"), true),
                side("direct Redis", redis_get.clone(), false),
            ],
        ),
        (
            "pg_get_http",
            "HTTP GetState via PostgreSQL",
            vec![
                side("Mecha HTTP", http_get("pg"), true),
                side("direct prepared SELECT", pg_get, false),
            ],
        ),
        (
            "mysql_get_http",
            "HTTP GetState via MySQL",
            vec![
                side("Mecha HTTP", http_get("mysql"), true),
                side("direct prepared SELECT", mysql_get, false),
            ],
        ),
        (
            "sqlite_get_http",
            "HTTP GetState via SQLite",
            vec![
                side("Mecha HTTP", http_get("sqlite"), true),
                side("direct prepared SELECT", sqlite_get, false),
            ],
        ),
        (
            "mem_get",
            "in-memory GetState",
            vec![
                side("Mecha HTTP", http_get("mem"), true),
                side("Mecha gRPC", grpc_get(&grpc, "mem"), true),
            ],
        ),
    ];
    let selected = |id: &str| selected(args, id);

    // Resident memory under load: sampled every 50 ms during the throughput runs.
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        let pid = mecha.pid();
        tokio::spawn(async move {
            let mut max = 0f64;
            while sampling.load(Ordering::Relaxed) {
                max = max.max(process::status_mib(pid, "VmRSS"));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            max
        })
    };

    // CPU per request: both Mecha processes count as Mecha (only one serves at a time).
    let mecha_pids: Vec<u32> = std::iter::once(mecha.pid())
        .chain(baseline.map(Mecha::pid))
        .collect();
    let mut ok = true;
    let scenarios: &'static [Scenario] = Vec::leak(scenarios);
    let mut throughput = Vec::new();
    for sc in scenarios.iter().filter(|s| selected(s.id)) {
        eprintln!("throughput: {} ...", sc.title);
        // Warm-up (connections, statement caches, JIT-free but caches and pools).
        for s in &sc.sides {
            let w = s
                .throughput(conc, plan.seconds.min(Duration::from_millis(300)))
                .await;
            if w.errors.count > 0 {
                eprintln!(
                    "  warm-up of {}: {} errors, first: {:?}",
                    s.label, w.errors.count, w.errors.first
                );
            }
        }
        let mut results: Vec<SideResult> = sc
            .sides
            .iter()
            .map(|s| SideResult {
                label: s.label,
                values: Vec::new(),
                errors: Errors::default(),
                cpu: Vec::new(),
            })
            .collect();
        for round in 0..plan.rounds {
            // Alternate the order every round so neither side always runs first.
            let mut order: Vec<usize> = (0..sc.sides.len()).collect();
            if round % 2 == 1 {
                order.reverse();
            }
            for i in order {
                let before = process::cpu_snapshot(&mecha_pids);
                let started = Instant::now();
                let t = sc.sides[i].throughput(conc, plan.seconds).await;
                let wall = started.elapsed().as_secs_f64();
                let used = process::cpu_snapshot(&mecha_pids) - before;
                let v = if sc.keys { t.keys_per_s } else { t.rps };
                let per_unit = 1e6 / (v * wall).max(1.0);
                results[i].cpu.push(process::CpuSnapshot {
                    mecha: used.mecha * per_unit,
                    store: used.store * per_unit,
                    client: used.client * per_unit,
                    machine: used.machine * per_unit,
                });
                results[i].values.push(v);
                results[i].errors.add(&t.errors);
            }
        }
        for r in &results {
            if r.errors.count > 0 {
                ok = false;
            }
            eprintln!(
                "  {:<40} median {:>9.0}/s  rounds {:?}  errors {}",
                r.label,
                r.median(),
                r.values
                    .iter()
                    .map(|v| v.round() as i64)
                    .collect::<Vec<_>>(),
                r.errors.count
            );
        }
        throughput.push((sc, results));
    }
    sampling.store(false, Ordering::Relaxed);
    let load_rss = sampler.await.unwrap_or(f64::NAN);

    let mut latency = Vec::new();
    for (id, title, sides) in latency_scenarios.into_iter().filter(|s| selected(s.0)) {
        eprintln!("latency at {}/s: {title} ...", args.rate);
        let mut results: Vec<LatencySide> = sides
            .iter()
            .map(|s| LatencySide {
                label: s.label,
                p50: Vec::new(),
                p99: Vec::new(),
                p999: Vec::new(),
                cpu: Vec::new(),
                samples: 0,
                errors: Errors::default(),
            })
            .collect();
        for s in &sides {
            let _ = open_loop(s.op()?, args.rate, Duration::from_millis(200), conc).await;
        }
        for round in 0..plan.latency_rounds {
            let mut order: Vec<usize> = (0..sides.len()).collect();
            if round % 2 == 1 {
                order.reverse();
            }
            for i in order {
                let cpu0 = process::cpu_seconds(mecha.pid());
                let t0 = Instant::now();
                let l = open_loop(sides[i].op()?, args.rate, plan.latency_seconds, conc).await;
                let wall = t0.elapsed().as_secs_f64();
                let cpu = process::cpu_seconds(mecha.pid()) - cpu0;
                let r = &mut results[i];
                r.p50.push(l.quantile(0.50));
                r.p99.push(l.quantile(0.99));
                r.p999.push(l.quantile(0.999));
                r.samples += l.micros.len();
                if sides[i].mecha {
                    // % of one core, scaled to 1000 requests per second.
                    r.cpu.push(cpu / wall * 100.0 / (l.rate / 1000.0));
                }
                let _ = l.wall;
                r.errors.add(&l.errors);
            }
        }
        for r in &results {
            if r.errors.count > 0 {
                ok = false;
            }
            eprintln!(
                "  {:<28} p50 {:>7.0} us  p99 {:>7.0} us  p99.9 {:>7.0} us  errors {}",
                r.label,
                median(&r.p50),
                median(&r.p99),
                median(&r.p999),
                r.errors.count
            );
        }
        latency.push((id, title, results));
    }
    Ok((ok, throughput, latency, load_rss))
}

fn pass(ok: bool) -> &'static str {
    if ok { "PASS" } else { "MISS" }
}

fn ms(us: f64) -> String {
    format!("{:.3}", us / 1000.0)
}

#[allow(clippy::too_many_lines)]
fn cpu_json(c: &process::CpuSnapshot) -> Value {
    json!({"mecha": c.mecha, "store": c.store, "load_generator": c.client, "machine": c.machine})
}

fn render(
    args: &Args,
    plan: &Plan,
    throughput: &[(&'static Scenario, Vec<SideResult>)],
    latency: &[(&'static str, &'static str, Vec<LatencySide>)],
    fp: &Footprint,
) -> Value {
    let mut md = String::new();
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    md.push_str(&format!(
        "\n## mecha-bench{}\n\n{cores} CPUs; concurrency {}, value {} B, {} rounds x {:.1} s (throughput), {} rounds x {:.1} s at {}/s (latency); medians of rounds.\n\n",
        if args.quick { " (--quick: timings not meaningful)" } else { "" },
        args.concurrency,
        args.value_size,
        plan.rounds,
        plan.seconds.as_secs_f64(),
        plan.latency_rounds,
        plan.latency_seconds.as_secs_f64(),
        args.rate
    ));
    md.push_str("### Throughput (closed loop)\n\n| Scenario | Client | Throughput | Errors |\n|---|---|---:|---:|\n");
    let mut tjson = Vec::new();
    for (sc, results) in throughput {
        let unit = if sc.keys { "keys/s" } else { "req/s" };
        for r in results {
            md.push_str(&format!(
                "| {} | {} | {:.0} {unit} | {}{} |\n",
                sc.title,
                r.label,
                r.median(),
                r.errors.count,
                if r.errors.count > 0 { " FAILED" } else { "" }
            ));
        }
        tjson.push(json!({
            "id": sc.id,
            "title": sc.title,
            "unit": unit,
            "sides": results.iter().map(|r| json!({
                "label": r.label,
                "median": r.median(),
                "rounds": r.values,
                "errors": r.errors.count,
                "first_error": r.errors.first,
                "failed": r.errors.count > 0,
                "cpu_us_per_unit": cpu_json(&r.cpu_us()),
            })).collect::<Vec<_>>(),
        }));
    }
    md.push_str("\n### CPU per request (closed loop; µs of CPU time per request, or per key for bulk)\n\nThe load generator, Mecha and the store share the machine's cores, so throughput is about cores / machine CPU per request. The empty tonic handler runs inside the load generator's process.\n\n| Scenario | Client | Mecha | store server | load generator | machine |\n|---|---|---:|---:|---:|---:|\n");
    for (sc, results) in throughput {
        for r in results {
            let c = r.cpu_us();
            md.push_str(&format!(
                "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1} |\n",
                sc.title, r.label, c.mecha, c.store, c.client, c.machine
            ));
        }
    }
    md.push_str("\n### Ratios\n\n| Ratio | Value | Target | Result |\n|---|---:|---:|---|\n");
    let mut rjson = Vec::new();
    for c in CHECKS {
        let Some((_, results)) = throughput.iter().find(|(s, _)| s.id == c.scenario) else {
            continue;
        };
        let failed = results.iter().any(|r| r.errors.count > 0);
        let ratio = results[c.num].median() / results[c.den].median();
        let result = if failed {
            "FAILED".to_owned()
        } else {
            c.target
                .map_or("-".to_owned(), |t| pass(ratio >= t).to_owned())
        };
        md.push_str(&format!(
            "| {} | {ratio:.2}x | {} | {result} |\n",
            c.what,
            c.target.map_or("-".to_owned(), |t| format!(">= {t}x"))
        ));
        rjson.push(json!({"ratio": c.what, "scenario": c.scenario, "value": ratio, "target": c.target, "result": result}));
    }
    md.push_str(&format!(
        "\n### Latency (open loop at {}/s, coordinated-omission corrected; ms)\n\n| Scenario | Client | p50 | p99 | p99.9 | CPU per 1000 rps | Errors |\n|---|---|---:|---:|---:|---:|---:|\n",
        args.rate
    ));
    let mut ljson = Vec::new();
    let mut added = Vec::new();
    for (id, title, results) in latency {
        for r in results {
            let cpu = if r.cpu.is_empty() {
                "-".to_owned()
            } else {
                format!("{:.1}% of a core", median(&r.cpu))
            };
            md.push_str(&format!(
                "| {title} | {} | {} | {} | {} | {cpu} | {}{} |\n",
                r.label,
                ms(median(&r.p50)),
                ms(median(&r.p99)),
                ms(median(&r.p999)),
                r.errors.count,
                if r.errors.count > 0 { " FAILED" } else { "" }
            ));
        }
        let failed = results.iter().any(|r| r.errors.count > 0);
        // Mecha against a direct client: the added latency.
        if *id != "mem_get" && results.len() == 2 {
            let d =
                |f: fn(&LatencySide) -> &Vec<f64>| median(f(&results[0])) - median(f(&results[1]));
            added.push((*title, d(|r| &r.p50), d(|r| &r.p99), d(|r| &r.p999), failed));
        }
        ljson.push(json!({
            "id": id,
            "title": title,
            "sides": results.iter().map(|r| json!({
                "label": r.label,
                "p50_ms": median(&r.p50) / 1000.0,
                "p99_ms": median(&r.p99) / 1000.0,
                "p999_ms": median(&r.p999) / 1000.0,
                "rounds_p99_ms": r.p99.iter().map(|v| v / 1000.0).collect::<Vec<_>>(),
                "cpu_percent_per_1000_rps": if r.cpu.is_empty() { Value::Null } else { json!(median(&r.cpu)) },
                "samples": r.samples,
                "errors": r.errors.count,
                "first_error": r.errors.first,
                "failed": r.errors.count > 0,
            })).collect::<Vec<_>>(),
        }));
    }
    md.push_str("\n### Added latency (Mecha − direct; ms)\n\n| Scenario | p50 | p99 | p99.9 | Target (p99) | Result |\n|---|---:|---:|---:|---:|---|\n");
    let mut ajson = Vec::new();
    for (title, p50, p99, p999, failed) in &added {
        let result = if *failed {
            "FAILED"
        } else {
            pass(*p99 / 1000.0 <= ADDED_P99_TARGET_MS)
        };
        md.push_str(&format!(
            "| {title} | {} | {} | {} | <= {ADDED_P99_TARGET_MS} | {result} |\n",
            ms(*p50),
            ms(*p99),
            ms(*p999)
        ));
        ajson.push(json!({"scenario": title, "p50_ms": p50 / 1000.0, "p99_ms": p99 / 1000.0, "p999_ms": p999 / 1000.0, "target_p99_ms": ADDED_P99_TARGET_MS, "result": result}));
    }
    let startup = median(&fp.startup_ms);
    md.push_str("\n### Footprint\n\n| Measure | Value | Target | Result |\n|---|---:|---:|---|\n");
    md.push_str(&format!(
        "| start-up, exec to healthy (median of {}) | {startup:.1} ms | <= {STARTUP_TARGET_MS} ms | {} |\n",
        fp.startup_ms.len(),
        pass(startup <= STARTUP_TARGET_MS)
    ));
    md.push_str(&format!(
        "| resident memory, idle after start | {:.1} MiB | <= {IDLE_RSS_TARGET_MIB:.2} MiB (8 MB) | {} |\n",
        fp.idle_rss,
        pass(fp.idle_rss <= IDLE_RSS_TARGET_MIB)
    ));
    md.push_str(&format!(
        "| resident memory, under load (max sampled) | {:.1} MiB | - | - |\n",
        fp.load_rss
    ));
    md.push_str(&format!(
        "| resident memory, idle after load | {:.1} MiB | - | - |\n",
        fp.idle_after
    ));
    md.push_str(&format!(
        "| resident memory, peak (VmHWM) | {:.1} MiB | - | - |\n",
        fp.hwm
    ));
    md.push_str("\n### Allocations per request (in-process, HTTP door to the in-memory store)\n\n| Request | Allocations | Budget (CI test) | Result |\n|---|---:|---:|---|\n");
    for row in &fp.allocations {
        let n = row["per_request"].as_f64().unwrap_or(f64::NAN);
        let budget = row["budget"].as_f64().unwrap_or(f64::NAN);
        md.push_str(&format!(
            "| {} | {n:.1} | <= {budget} | {} |\n",
            row["name"].as_str().unwrap_or("?"),
            pass(n <= budget)
        ));
    }
    println!("{md}");
    json!({
        "quick": args.quick,
        "cpus": cores,
        "concurrency": args.concurrency,
        "value_size": args.value_size,
        "rate": args.rate,
        "rounds": plan.rounds,
        "seconds": plan.seconds.as_secs_f64(),
        "latency_rounds": plan.latency_rounds,
        "latency_seconds": plan.latency_seconds.as_secs_f64(),
        "throughput": tjson,
        "ratios": rjson,
        "latency": ljson,
        "added_latency": ajson,
        "footprint": {
            "startup_ms": startup,
            "startup_ms_runs": fp.startup_ms,
            "startup_target_ms": STARTUP_TARGET_MS,
            "idle_rss_mib": fp.idle_rss,
            "idle_rss_target_mib": IDLE_RSS_TARGET_MIB,
            "load_rss_mib": fp.load_rss,
            "idle_after_load_rss_mib": fp.idle_after,
            "peak_rss_mib": fp.hwm,
        },
        "allocations_per_request": fp.allocations,
    })
}
