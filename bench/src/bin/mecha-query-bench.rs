//! `mecha-query-bench`: what a query costs, emulated (in-memory, Redis) against PostgreSQL's
//! native query, on the same corpus.
//!
//! For each size (1,000 and 10,000 items; `--quick`: 1,000 only) it writes one app's items
//! (`{"group": "hit" | "miss", "n": i, "pad": ...}`, 1 % of them `hit`) to each store, built
//! from component metadata and wrapped in the emulations its matrix decides, exactly as Mecha
//! runs it, then runs the query `{"filter": {"EQ": {"group": "hit"}}}` several times and
//! reports the median time per query and the items scanned per second (the app's items
//! divided by that time). It drives the stores in process (no HTTP), so it measures the query
//! itself. Every answer is checked (1 % of the items, every one a `hit`); any error or a wrong
//! answer makes the exit status non-zero. The items are deleted (PostgreSQL: the table
//! dropped) at the end.
//!
//! ```text
//! cargo run --release -p mecha-bench --bin mecha-query-bench [-- --quick]
//! ```
//!
//! Environment: `REDIS_URL` (default `redis://127.0.0.1:6379`), `DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mecha::actors::emulation::{self, QueryLimits};
use mecha::actors::{StateStore, StoreFactory};
use mecha::capabilities::{Baseline, Feature, Matrix, Status, StoreTraits};
use mecha::config::parse_components;
use mecha::model::{DeleteRequest, Metadata, QueryRequest, SetRequest, StateOptions};

/// Queries timed per store and size (the median is reported).
const ROUNDS: usize = 7;
/// Items written per bulk call.
const WRITE_CHUNK: usize = 500;

struct Target {
    name: &'static str,
    store: Arc<dyn StateStore>,
    mode: Status,
}

fn build(name: &'static str, component_type: &str, metadata: &[(&str, String)]) -> Target {
    let mut yaml = format!(
        "kind: Component\nmetadata:\n  name: {name}\nspec:\n  type: {component_type}\n  metadata:\n  - name: keyPrefix\n    value: none\n"
    );
    for (k, v) in metadata {
        yaml.push_str(&format!("  - name: {k}\n    value: {v:?}\n"));
    }
    let (components, _) = parse_components(&[(Path::new("bench.yaml"), &yaml)], &|_| None)
        .unwrap_or_else(|e| panic!("component {name}: {e:?}"));
    let factory: Arc<dyn StoreFactory> = components[0].factory.clone();
    let traits = StoreTraits {
        native: factory.capabilities(),
        lists_keys: factory.lists_keys(),
        max_transaction_ops: 1000,
    };
    let matrix = Matrix::without_policy(traits, Baseline::Compatible);
    let factory = emulation::wrap(
        factory,
        &matrix,
        emulation::DEFAULT_SWEEP_INTERVAL,
        QueryLimits {
            timeout: Duration::from_secs(60),
            ..QueryLimits::default()
        },
    );
    Target {
        name,
        store: factory.create().expect("store instance"),
        mode: matrix.status(Feature::Query),
    }
}

fn item(prefix: &str, i: usize) -> SetRequest {
    let group = if i.is_multiple_of(100) { "hit" } else { "miss" };
    let value = serde_json::json!({"group": group, "n": i, "pad": "x".repeat(64)});
    SetRequest {
        key: format!("{prefix}{i:06}"),
        value: Bytes::from(value.to_string()),
        etag: None,
        options: StateOptions::default(),
        ttl: None,
        metadata: Metadata::new(),
    }
}

async fn seed(t: &Target, prefix: &str, items: usize) -> Result<(), String> {
    let all: Vec<usize> = (0..items).collect();
    for chunk in all.chunks(WRITE_CHUNK) {
        let reqs = chunk.iter().map(|i| item(prefix, *i)).collect();
        for r in t.store.bulk_set(reqs).await {
            r.map_err(|e| format!("{}: seeding: {e}", t.name))?;
        }
    }
    Ok(())
}

async fn clear(t: &Target, prefix: &str, items: usize) {
    let all: Vec<usize> = (0..items).collect();
    for chunk in all.chunks(WRITE_CHUNK) {
        let reqs = chunk
            .iter()
            .map(|i| DeleteRequest {
                key: format!("{prefix}{i:06}"),
                etag: None,
                options: StateOptions::default(),
                metadata: Metadata::new(),
            })
            .collect();
        t.store.bulk_delete(reqs).await;
    }
}

/// The median time of one query, after checking its answer.
async fn time_query(t: &Target, prefix: &str, items: usize) -> Result<Duration, String> {
    let mut times = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let req = QueryRequest {
            query: r#"{"filter":{"EQ":{"group":"hit"}}}"#.into(),
            metadata: Metadata::new(),
            key_prefix: prefix.to_owned(),
        };
        let started = Instant::now();
        let r = t
            .store
            .query(req)
            .await
            .map_err(|e| format!("{}: {e}", t.name))?;
        times.push(started.elapsed());
        let want = items.div_ceil(100);
        let hits = r
            .results
            .iter()
            .filter(|i| i.data.windows(5).any(|w| w == b"\"hit\""))
            .count();
        if r.results.len() != want || hits != want {
            return Err(format!(
                "{}: {} results ({hits} hits), expected {want}",
                t.name,
                r.results.len()
            ));
        }
    }
    times.sort();
    Ok(times[ROUNDS / 2])
}

async fn drop_table(url: &str, table: &str) {
    if let Ok((client, conn)) = tokio_postgres::connect(url, tokio_postgres::NoTls).await {
        tokio::spawn(conn);
        let _ = client
            .batch_execute(&format!(
                "DROP TABLE IF EXISTS \"{table}\"; DROP SEQUENCE IF EXISTS \"{table}_version_seq\""
            ))
            .await;
    }
}

async fn run(quick: bool) -> Result<(), String> {
    let redis = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let pg = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let run_id = format!("{:012x}", rand::random::<u64>() >> 16);
    let table = format!("bench_query_{run_id}");
    let targets = [
        build("in-memory", "state.in-memory", &[]),
        build("redis", "state.redis", &[("redisHost", redis)]),
        build(
            "postgresql",
            "state.postgresql",
            &[
                ("connectionString", pg.clone()),
                ("tableName", table.clone()),
            ],
        ),
    ];
    let sizes: &[usize] = if quick { &[1_000] } else { &[1_000, 10_000] };
    println!(
        "| store | query | items | matches | time per query (median of {ROUNDS}) | items scanned per second |"
    );
    println!("| --- | --- | ---: | ---: | ---: | ---: |");
    let mut result = Ok(());
    for &items in sizes {
        for t in &targets {
            let prefix = format!("bench-q-{run_id}-{items}||");
            let outcome = async {
                seed(t, &prefix, items).await?;
                time_query(t, &prefix, items).await
            }
            .await;
            clear(t, &prefix, items).await;
            match outcome {
                Ok(d) => println!(
                    "| {} | {} | {items} | {} | {:.2} ms | {:.0} |",
                    t.name,
                    t.mode,
                    items.div_ceil(100),
                    d.as_secs_f64() * 1000.0,
                    items as f64 / d.as_secs_f64()
                ),
                Err(e) => {
                    eprintln!("mecha-query-bench: {e}");
                    result = Err(e);
                }
            }
        }
    }
    drop_table(&pg, &table).await;
    result
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let quick = std::env::args().any(|a| a == "--quick");
    match run(quick).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(_) => std::process::ExitCode::FAILURE,
    }
}
