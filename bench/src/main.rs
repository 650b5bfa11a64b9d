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
//!
//! The scenarios are data ([`scenarios`]); [`setup`] connects the clients and seeds the
//! stores, [`session`] starts and stops Mecha around the run, [`measure`] runs the rounds
//! and [`report`] prints the tables and writes the JSON.

mod cli;
mod clients;
mod external;
mod load;
mod measure;
mod neighbour;
mod process;
mod report;
mod scenarios;
mod session;
mod setup;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;

use cli::{Args, Plan};
use clients::MySqlDsn;
use session::Cleanup;

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

/// The whole run: the benchmark, then the cleanup (whatever the outcome), then the JSON
/// results. Answers whether no scenario had errors.
async fn run(args: Args) -> Result<bool, String> {
    let plan = Plan::new(&args);
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
    let result = session::bench(&args, &plan, &bin, &cleanup).await;
    cleanup.run().await;
    let (ok, mut report) = result?;
    report::finish(&mut report, started.elapsed().as_secs_f64(), &args.json)?;
    Ok(ok)
}
