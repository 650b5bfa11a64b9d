//! What a run reports: the progress lines on stderr, the markdown tables on stdout
//! (throughput, CPU per request, ratios, latency, added latency, footprint, allocations,
//! noisy neighbour) and the JSON results.

use serde_json::{Value, json};

use crate::cli::{Args, Plan};
use crate::load::median;
use crate::measure::{LatencySide, SideResult};
use crate::neighbour::{self, Neighbour};
use crate::process::CpuSnapshot;
use crate::scenarios::{ADDED_P99_TARGET_MS, CHECKS, Scenario};

/// Idle resident memory target: 8 MB.
const IDLE_RSS_TARGET_MIB: f64 = 8.0 * 1000.0 * 1000.0 / (1024.0 * 1024.0);
/// Allocations per GetState target (the CI budget may hold a little slack above the count).
const GET_ALLOCATIONS_TARGET: f64 = 20.0;
/// Start-up target: exec to healthy.
const STARTUP_TARGET_MS: f64 = 100.0;

/// The throughput scenarios with their sides' results.
pub type ThroughputResults = [(&'static Scenario, Vec<SideResult>)];
/// The latency scenarios with their sides' results.
pub type LatencyResults = [(&'static Scenario, Vec<LatencySide>)];

/// The Mecha process's footprint.
pub struct Footprint {
    /// Each timed start-up, exec to healthy (ms).
    pub startup_ms: Vec<f64>,
    /// Resident memory 1 s after start-up on the embedded default configuration (MiB).
    pub idle_rss_default: f64,
    /// Resident memory 1 s after start-up on the benchmark's five stores (MiB).
    pub idle_rss: f64,
    /// Resident memory after the load (MiB).
    pub idle_after: f64,
    /// Largest resident memory sampled under load (MiB).
    pub load_rss: f64,
    /// Peak resident memory, `VmHWM` (MiB).
    pub hwm: f64,
    /// `mecha-allocs`' rows (name, per_request, harness, budget).
    pub allocations: Vec<Value>,
}

fn pass(ok: bool) -> &'static str {
    if ok { "PASS" } else { "MISS" }
}

fn ms(us: f64) -> String {
    format!("{:.3}", us / 1000.0)
}

fn failed_mark(errors: u64) -> &'static str {
    if errors > 0 { " FAILED" } else { "" }
}

fn cpu_json(c: &CpuSnapshot) -> Value {
    json!({"mecha": c.mecha, "store": c.store, "load_generator": c.client, "machine": c.machine})
}

/// Prints each side's throughput after a scenario (stderr); whether none had errors.
pub fn throughput_progress(results: &[SideResult]) -> bool {
    for r in results {
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
    results.iter().all(|r| r.errors.count == 0)
}

/// Prints each side's latency after a scenario (stderr); whether none had errors.
pub fn latency_progress(results: &[LatencySide]) -> bool {
    for r in results {
        eprintln!(
            "  {:<28} p50 {:>7.0} us  p99 {:>7.0} us  p99.9 {:>7.0} us  errors {}",
            r.label,
            median(&r.p50),
            median(&r.p99),
            median(&r.p999),
            r.errors.count
        );
    }
    results.iter().all(|r| r.errors.count == 0)
}

/// Prints the report's tables and answers the JSON results (without `total_seconds` and
/// `noisy_neighbour`, which the caller adds).
pub fn render(
    args: &Args,
    plan: &Plan,
    throughput: &ThroughputResults,
    latency: &LatencyResults,
    fp: &Footprint,
) -> Value {
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let mut md = header(args, plan, cores);
    let tjson = throughput_table(&mut md, throughput);
    cpu_table(&mut md, throughput);
    let rjson = ratio_table(&mut md, throughput);
    let (ljson, added) = latency_table(&mut md, args.rate, latency);
    let ajson = added_latency_table(&mut md, &added);
    let startup = footprint_table(&mut md, fp);
    allocations_table(&mut md, &fp.allocations);
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
            "idle_rss_default_config_mib": fp.idle_rss_default,
            "idle_rss_target_mib": IDLE_RSS_TARGET_MIB,
            "idle_rss_bench_config_mib": fp.idle_rss,
            "load_rss_mib": fp.load_rss,
            "idle_after_load_rss_mib": fp.idle_after,
            "peak_rss_mib": fp.hwm,
        },
        "allocations_per_request": fp.allocations,
    })
}

fn header(args: &Args, plan: &Plan, cores: usize) -> String {
    format!(
        "\n## mecha-bench{}\n\n{cores} CPUs; concurrency {}, value {} B, {} rounds x {:.1} s (throughput), {} rounds x {:.1} s at {}/s (latency); medians of rounds.\n\n",
        if args.quick {
            " (--quick: timings not meaningful)"
        } else {
            ""
        },
        args.concurrency,
        args.value_size,
        plan.rounds,
        plan.seconds.as_secs_f64(),
        plan.latency_rounds,
        plan.latency_seconds.as_secs_f64(),
        args.rate
    )
}

fn throughput_table(md: &mut String, throughput: &ThroughputResults) -> Vec<Value> {
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
                failed_mark(r.errors.count)
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
    tjson
}

fn cpu_table(md: &mut String, throughput: &ThroughputResults) {
    md.push_str("\n### CPU per request (closed loop; µs of CPU time per request, or per key for bulk)\n\nThe load generator, Mecha and the store share the machine's cores, so throughput is about cores / machine CPU per request. Mecha's sides are driven by `wrk` (HTTP) and `h2load` (gRPC); the direct clients and the read-then-save sides send from the benchmark's own process. The served column is Mecha, or the empty tonic server (a process of its own) on its side.\n\n| Scenario | Client | served (Mecha) | store server | load generator | machine |\n|---|---|---:|---:|---:|---:|\n");
    for (sc, results) in throughput {
        for r in results {
            let c = r.cpu_us();
            md.push_str(&format!(
                "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1} |\n",
                sc.title, r.label, c.mecha, c.store, c.client, c.machine
            ));
        }
    }
}

fn ratio_table(md: &mut String, throughput: &ThroughputResults) -> Vec<Value> {
    md.push_str("\n### Ratios\n\n| Ratio | Value | Target | Result |\n|---|---:|---:|---|\n");
    let mut rjson = Vec::new();
    for c in CHECKS {
        let Some((_, results)) = throughput.iter().find(|(s, _)| s.id == c.scenario) else {
            continue;
        };
        let any_failed = results.iter().any(|r| r.errors.count > 0);
        let ratio = results[c.num].median() / results[c.den].median();
        let result = if any_failed {
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
    rjson
}

/// Mecha − direct client in one latency scenario (µs), and whether a side failed.
struct Added {
    title: &'static str,
    p50: f64,
    p99: f64,
    p999: f64,
    failed: bool,
}

fn latency_table(md: &mut String, rate: f64, latency: &LatencyResults) -> (Vec<Value>, Vec<Added>) {
    md.push_str(&format!(
        "\n### Latency (open loop at {rate}/s, coordinated-omission corrected; ms)\n\n| Scenario | Client | p50 | p99 | p99.9 | CPU per 1000 rps | Errors |\n|---|---|---:|---:|---:|---:|---:|\n",
    ));
    let mut ljson = Vec::new();
    let mut added = Vec::new();
    for (sc, results) in latency {
        for r in results {
            let cpu = if r.cpu.is_empty() {
                "-".to_owned()
            } else {
                format!("{:.1}% of a core", median(&r.cpu))
            };
            md.push_str(&format!(
                "| {} | {} | {} | {} | {} | {cpu} | {}{} |\n",
                sc.title,
                r.label,
                ms(median(&r.p50)),
                ms(median(&r.p99)),
                ms(median(&r.p999)),
                r.errors.count,
                failed_mark(r.errors.count)
            ));
        }
        if sc.added_latency() {
            let d =
                |f: fn(&LatencySide) -> &Vec<f64>| median(f(&results[0])) - median(f(&results[1]));
            added.push(Added {
                title: sc.title,
                p50: d(|r| &r.p50),
                p99: d(|r| &r.p99),
                p999: d(|r| &r.p999),
                failed: results.iter().any(|r| r.errors.count > 0),
            });
        }
        ljson.push(latency_json(sc, results));
    }
    (ljson, added)
}

fn latency_json(sc: &Scenario, results: &[LatencySide]) -> Value {
    json!({
        "id": sc.id,
        "title": sc.title,
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
    })
}

fn added_latency_table(md: &mut String, added: &[Added]) -> Vec<Value> {
    md.push_str("\n### Added latency (Mecha − direct; ms)\n\n| Scenario | p50 | p99 | p99.9 | Target (p99) | Result |\n|---|---:|---:|---:|---:|---|\n");
    let mut ajson = Vec::new();
    for a in added {
        let result = if a.failed {
            "FAILED"
        } else {
            pass(a.p99 / 1000.0 <= ADDED_P99_TARGET_MS)
        };
        md.push_str(&format!(
            "| {} | {} | {} | {} | <= {ADDED_P99_TARGET_MS} | {result} |\n",
            a.title,
            ms(a.p50),
            ms(a.p99),
            ms(a.p999)
        ));
        ajson.push(json!({"scenario": a.title, "p50_ms": a.p50 / 1000.0, "p99_ms": a.p99 / 1000.0, "p999_ms": a.p999 / 1000.0, "target_p99_ms": ADDED_P99_TARGET_MS, "result": result}));
    }
    ajson
}

/// The footprint table; answers the median start-up (ms).
fn footprint_table(md: &mut String, fp: &Footprint) -> f64 {
    let startup = median(&fp.startup_ms);
    md.push_str("\n### Footprint\n\n| Measure | Value | Target | Result |\n|---|---:|---:|---|\n");
    md.push_str(&format!(
        "| start-up, exec to healthy (median of {}) | {startup:.1} ms | <= {STARTUP_TARGET_MS} ms | {} |\n",
        fp.startup_ms.len(),
        pass(startup <= STARTUP_TARGET_MS)
    ));
    md.push_str(&format!(
        "| resident memory, idle after start, default configuration | {:.1} MiB | <= {IDLE_RSS_TARGET_MIB:.2} MiB (8 MB) | {} |\n",
        fp.idle_rss_default,
        pass(fp.idle_rss_default <= IDLE_RSS_TARGET_MIB)
    ));
    md.push_str(&format!(
        "| resident memory, idle after start, the benchmark's five stores | {:.1} MiB | - | - |\n",
        fp.idle_rss
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
    startup
}

fn allocations_table(md: &mut String, allocations: &[Value]) {
    md.push_str("\n### Allocations per request (in-process, HTTP door to the in-memory store)\n\n| Request | Allocations | Budget (CI test) | Target | Result |\n|---|---:|---:|---:|---|\n");
    for row in allocations {
        let n = row["per_request"].as_f64().unwrap_or(f64::NAN);
        let budget = row["budget"].as_f64().unwrap_or(f64::NAN);
        let name = row["name"].as_str().unwrap_or("?");
        let target = (name == "GetState").then_some(GET_ALLOCATIONS_TARGET);
        md.push_str(&format!(
            "| {name} | {n:.1} | <= {budget} | {} | {} |\n",
            target.map_or("-".to_owned(), |t| format!("<= {t}")),
            pass(n <= budget && target.is_none_or(|t| n <= t))
        ));
    }
}

/// Prints the noisy-neighbour table and answers its JSON. In `--quick` runs the bound is
/// not judged.
pub fn noisy_neighbour(n: &Neighbour, quick: bool) -> Value {
    let met = n.ratio <= neighbour::P99_RATIO_BOUND;
    println!(
        "### Noisy neighbour (quotas)\n\n| quiet app p99 alone | p99 while the noisy app floods | ratio | bound | result |\n|---:|---:|---:|---:|---|\n| {:.3} ms | {:.3} ms | {:.2}x | <= {:.1}x | {} |\n\nNoisy app: {} concurrent requests, {:.0} answered/s of which {:.0} served/s (the rest 429); errors: {}{}\n",
        n.alone_p99_ms,
        n.flooded_p99_ms,
        n.ratio,
        neighbour::P99_RATIO_BOUND,
        if quick { "-" } else { pass(met) },
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
    json!({
        "quiet_p99_alone_ms": n.alone_p99_ms,
        "quiet_p99_flooded_ms": n.flooded_p99_ms,
        "ratio": n.ratio,
        "bound": neighbour::P99_RATIO_BOUND,
        "noisy_concurrency": n.flood_concurrency,
        "noisy_answered_rps": n.noisy_rps,
        "noisy_served_rps": n.noisy_served_rps,
        "errors": n.errors.count,
    })
}

/// Prints the run's total time and where the JSON results went.
pub fn finish(report: &mut Value, secs: f64, path: &std::path::Path) -> Result<(), String> {
    report["total_seconds"] = json!(secs);
    println!("\nTotal run time: {secs:.1} s");
    std::fs::write(
        path,
        serde_json::to_vec_pretty(&*report).unwrap_or_default(),
    )
    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    println!("JSON results: {}", path.display());
    Ok(())
}
