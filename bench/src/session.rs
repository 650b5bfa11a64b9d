//! One run's environment: the services it needs, the files it writes, the Mecha processes
//! it starts, what it leaves behind and removes at the end; and the run itself, from the
//! first start-up to the report.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::cli::{Args, Plan};
use crate::clients::{MySqlDsn, RedisDirect};
use crate::process::{self, Mecha};
use crate::report::{self, Footprint};
use crate::scenarios::NOISY_FLOOD_CONCURRENCY;
use crate::{measure, neighbour};

/// What the run leaves behind and removes at the end.
pub struct Cleanup {
    /// The run's temp dir (resources, config, logs, the SQLite file).
    pub dir: PathBuf,
    /// Redis, where the keys are.
    pub redis_url: String,
    /// Mecha's key prefix of the run.
    pub prefix: String,
    /// PostgreSQL, where the table is.
    pub pg_url: String,
    /// MySQL, where the table is.
    pub mysql: MySqlDsn,
    /// The run's SQL table.
    pub table: String,
}

impl Cleanup {
    /// Removes the temp dir, the run's Redis keys and its SQL tables (failures ignored).
    pub async fn run(&self) {
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

/// The `state.sqlite` database of a run: a file in the run's temp dir.
pub fn sqlite_file(dir: &Path) -> PathBuf {
    dir.join("state.sqlite")
}

/// Fails early and clearly when a service is missing.
async fn probe_services(args: &Args, cleanup: &Cleanup) -> Result<(), String> {
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
    Ok(())
}

/// Writes the run's resources directory and Mecha's configuration file; answers both paths.
fn write_run_files(args: &Args, cleanup: &Cleanup) -> Result<(PathBuf, PathBuf), String> {
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
    Ok((resources, config))
}

/// Start-up: several cold starts, timed; the last one stays up for the benchmark.
fn start_timed(
    bin: &Path,
    resources: &Path,
    config: &Path,
    dir: &Path,
    startups: usize,
) -> Result<(Mecha, Vec<f64>), String> {
    let start = |i: usize| -> Result<(Mecha, f64), String> {
        let m = Mecha::start(bin, resources, config, dir.join(format!("mecha-{i}.log")))?;
        let ms = m.startup.as_secs_f64() * 1000.0;
        Ok((m, ms))
    };
    let last = startups.max(1) - 1;
    let mut times = Vec::new();
    for i in 0..last {
        let (m, ms) = start(i)?;
        times.push(ms);
        m.stop();
    }
    let (m, ms) = start(last)?;
    times.push(ms);
    Ok((m, times))
}

/// `e` with the last lines of the mecha log at `log`.
fn with_log_tail(e: &str, log: &Path) -> String {
    let tail = std::fs::read_to_string(log).unwrap_or_default();
    let tail: Vec<&str> = tail.lines().rev().take(20).collect();
    format!(
        "{e}\nlast lines of the mecha log:\n{}",
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    )
}

/// Starts Mecha (and the `--baseline-mecha` build), measures every selected scenario and
/// its footprint, prints the report; answers whether no scenario had errors, and the JSON
/// results.
pub async fn bench(
    args: &Args,
    plan: &Plan,
    bin: &Path,
    cleanup: &Cleanup,
) -> Result<(bool, Value), String> {
    probe_services(args, cleanup).await?;
    let dir = &cleanup.dir;
    let (resources, config) = write_run_files(args, cleanup)?;
    // Idle memory on the embedded default configuration (the target's), then on the
    // benchmark's five stores.
    let default = Mecha::start_default(bin, dir.join("mecha-default.log"))?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_rss_default = process::status_mib(default.pid(), "VmRSS");
    default.stop();
    let (mecha, startup_ms) = start_timed(bin, &resources, &config, dir, plan.startups)?;
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

    let out = measure::measure(args, plan, &mecha, baseline.as_ref(), cleanup).await;
    if let Some(b) = baseline {
        b.stop();
    }
    let idle_after = process::status_mib(mpid, "VmRSS");
    let hwm = process::status_mib(mpid, "VmHWM");
    let log = mecha.log.clone();
    mecha.stop();
    let measured = out.map_err(|e| with_log_tail(&e, &log))?;
    eprintln!("allocations per request (in-process) ...");
    let allocations = allocations()?;
    let footprint = Footprint {
        startup_ms,
        idle_rss_default,
        idle_rss,
        idle_after,
        load_rss: measured.load_rss,
        hwm,
        allocations,
    };
    let mut report = report::render(
        args,
        plan,
        &measured.throughput,
        &measured.latency,
        &footprint,
    );
    let mut ok = measured.ok;
    if args.selected("noisy_neighbour") {
        let (quiet, json) = noisy_neighbour(args, plan, bin, dir).await?;
        ok &= quiet;
        report["noisy_neighbour"] = json;
    }
    Ok((ok, report))
}

/// The noisy-neighbour scenario, printed; answers whether it had no errors, and its JSON.
async fn noisy_neighbour(
    args: &Args,
    plan: &Plan,
    bin: &Path,
    dir: &Path,
) -> Result<(bool, Value), String> {
    eprintln!(
        "noisy neighbour: quiet app at {}/s, noisy app flooding ...",
        args.rate
    );
    let n = neighbour::run(
        bin,
        dir,
        args.rate,
        plan.latency_seconds,
        plan.latency_rounds,
        NOISY_FLOOD_CONCURRENCY,
    )
    .await?;
    let json = report::noisy_neighbour(&n, args.quick);
    Ok((n.errors.count == 0, json))
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
