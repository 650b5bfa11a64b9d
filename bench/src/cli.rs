//! The command line, and the plan (rounds and durations) it makes.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// Benchmarks Mecha against direct store clients in one run.
#[derive(Parser, Debug, Clone)]
#[command(name = "mecha-bench")]
pub struct Args {
    /// Run everything briefly (smoke test; timings are not meaningful).
    #[arg(long)]
    pub quick: bool,
    /// Where to write the JSON results.
    #[arg(long, default_value = "mecha-bench.json")]
    pub json: PathBuf,
    /// Connections of the throughput runs (`wrk`, `h2load`, `redis-benchmark`, and the
    /// concurrent requests of the in-process clients).
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 1024)]
    pub value_size: usize,
    /// Request rate of the latency runs (per second).
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Rounds per scenario [default: 5, quick 1].
    #[arg(long)]
    pub rounds: Option<usize>,
    /// Seconds per throughput measurement [default: 2, quick 0.2].
    #[arg(long)]
    pub seconds: Option<f64>,
    /// Seconds per latency measurement [default: 5, quick 0.3].
    #[arg(long)]
    pub latency_seconds: Option<f64>,
    /// Rounds of the latency scenarios [default: 3, quick 1].
    #[arg(long)]
    pub latency_rounds: Option<usize>,
    /// Start-ups to time (the last one is benchmarked) [default: 5, quick 1].
    #[arg(long)]
    pub startups: Option<usize>,
    /// gRPC channels (HTTP/2 connections) of the in-process gRPC client (latency runs).
    #[arg(long, default_value_t = 4)]
    pub grpc_channels: usize,
    /// Concurrent streams per HTTP/2 connection of `h2load` (gRPC throughput runs, on
    /// `--concurrency` connections).
    #[arg(long, default_value_t = 4)]
    pub grpc_streams: usize,
    /// Multiplexed connections of the direct Redis client (Mecha: one per serving thread).
    #[arg(long, default_value_t = 2)]
    pub redis_connections: usize,
    /// Connections of the direct PostgreSQL client (Mecha's pool: maxConns, 4 per CPU).
    #[arg(long)]
    pub pg_connections: Option<usize>,
    /// Connections of the direct MySQL client (Mecha's `state.mysql` pool: 8).
    #[arg(long, default_value_t = 8)]
    pub mysql_connections: usize,
    /// Connections of the direct SQLite client (Mecha's `state.sqlite` pool: 4).
    #[arg(long, default_value_t = 4)]
    pub sqlite_connections: usize,
    /// Mecha's `server.workers` (0: one per CPU, Mecha's default).
    #[arg(long, default_value_t = 0)]
    pub workers: usize,
    /// Only run scenarios whose id contains this text (or one of several, comma-separated:
    /// `--only mysql,sqlite`).
    #[arg(long)]
    pub only: Option<String>,
    /// Redis URL.
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,
    /// PostgreSQL URL.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres:postgres@127.0.0.1:5432/test"
    )]
    pub database_url: String,
    /// MySQL / MariaDB, as a Go DSN (what `state.mysql` takes); its database holds the table.
    #[arg(
        long,
        env = "MYSQL_URL",
        default_value = "root:@tcp(127.0.0.1:3306)/test"
    )]
    pub mysql_url: String,
    /// The mecha binary [default: `mecha` next to this executable].
    #[arg(long)]
    pub mecha: Option<PathBuf>,
    /// Another mecha binary (an earlier build) to compare against: adds the scenario
    /// `before_after`, HTTP GetState via Redis on both, alternately.
    #[arg(long)]
    pub baseline_mecha: Option<PathBuf>,
}

impl Args {
    /// Whether `--only` selects the scenario `id`.
    pub fn selected(&self, id: &str) -> bool {
        self.only
            .as_deref()
            .is_none_or(|o| o.split(',').any(|p| id.contains(p.trim())))
    }
}

/// How long and how often each measurement runs.
pub struct Plan {
    /// Rounds per throughput scenario.
    pub rounds: usize,
    /// Duration of one throughput measurement.
    pub seconds: Duration,
    /// Duration of one latency measurement.
    pub latency_seconds: Duration,
    /// Rounds per latency scenario.
    pub latency_rounds: usize,
    /// Start-ups to time.
    pub startups: usize,
    /// Seeded keys read in turn.
    pub keys: usize,
}

impl Plan {
    /// The plan of `args`: its explicit values, else the defaults of a full or a quick run.
    pub fn new(args: &Args) -> Plan {
        if args.quick {
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
        }
    }
}
