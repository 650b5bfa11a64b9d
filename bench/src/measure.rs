//! Running the scenarios: the sides of each alternately, several rounds, for throughput
//! (closed loop) and latency (open loop), with Mecha's CPU time per request and its
//! resident memory under load.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use crate::cli::{Args, Plan};
use crate::external::{H2load, Wrk};
use crate::load::{self, Errors, Op, RedisBenchmark, closed_loop, median, open_loop};
use crate::process::{self, CpuSnapshot, Mecha};
use crate::report;
use crate::scenarios::{self, Scenario};
use crate::session::Cleanup;
use crate::setup::Setup;

/// One side of a scenario, ready to run.
pub struct Side {
    /// The label in the report.
    pub label: &'static str,
    /// What it runs.
    pub load: Load,
    /// Whether this side is served by Mecha (its CPU is measured in latency runs).
    pub mecha: bool,
}

/// What a side runs.
pub enum Load {
    /// Requests from this process.
    Op(Op),
    /// `redis-benchmark` as a process of its own (throughput only).
    RedisBenchmark(RedisBenchmark),
    /// `wrk` (HTTP throughput).
    Wrk(Wrk),
    /// `h2load` (gRPC throughput).
    H2load(H2load),
}

impl Side {
    /// The side's requests, for the latency runs (which only have request sides).
    fn op(&self) -> Result<&Op, String> {
        match &self.load {
            Load::Op(op) => Ok(op),
            _ => Err(format!("{}: not a latency side", self.label)),
        }
    }

    /// One closed-loop throughput run.
    async fn throughput(&self, concurrency: usize, duration: Duration) -> load::Throughput {
        match &self.load {
            Load::Op(op) => closed_loop(op, concurrency, duration).await,
            Load::RedisBenchmark(rb) => rb.run(concurrency, duration).await,
            Load::Wrk(w) => w.run(concurrency, duration).await,
            Load::H2load(h) => h.run(concurrency, duration).await,
        }
    }
}

/// The throughput of one side, every round.
pub struct SideResult {
    /// The side's label.
    pub label: &'static str,
    /// Requests (or keys) per second, per round.
    pub values: Vec<f64>,
    /// Errors of all rounds.
    pub errors: Errors,
    /// CPU microseconds per request (or key) by party, per round.
    pub cpu: Vec<CpuSnapshot>,
}

impl SideResult {
    fn new(label: &'static str) -> SideResult {
        SideResult {
            label,
            values: Vec::new(),
            errors: Errors::default(),
            cpu: Vec::new(),
        }
    }

    /// The median throughput of the rounds.
    pub fn median(&self) -> f64 {
        median(&self.values)
    }

    /// Median CPU microseconds per request (or key) of each party.
    pub fn cpu_us(&self) -> CpuSnapshot {
        let of = |f: fn(&CpuSnapshot) -> f64| median(&self.cpu.iter().map(f).collect::<Vec<_>>());
        CpuSnapshot {
            mecha: of(|c| c.mecha),
            store: of(|c| c.store),
            client: of(|c| c.client),
            machine: of(|c| c.machine),
        }
    }
}

/// The latency of one side, every round (microseconds).
pub struct LatencySide {
    /// The side's label.
    pub label: &'static str,
    /// Median latency, per round.
    pub p50: Vec<f64>,
    /// 99th percentile, per round.
    pub p99: Vec<f64>,
    /// 99.9th percentile, per round.
    pub p999: Vec<f64>,
    /// Mecha's CPU (% of one core) per 1000 requests per second, per round.
    pub cpu: Vec<f64>,
    /// Requests measured in all rounds.
    pub samples: usize,
    /// Errors of all rounds.
    pub errors: Errors,
}

impl LatencySide {
    fn new(label: &'static str) -> LatencySide {
        LatencySide {
            label,
            p50: Vec::new(),
            p99: Vec::new(),
            p999: Vec::new(),
            cpu: Vec::new(),
            samples: 0,
            errors: Errors::default(),
        }
    }
}

/// Everything measured against the running Mecha.
pub struct Measured {
    /// Whether no side of any scenario had an error.
    pub ok: bool,
    /// Each selected throughput scenario with its sides' results.
    pub throughput: Vec<(&'static Scenario, Vec<SideResult>)>,
    /// Each selected latency scenario with its sides' results.
    pub latency: Vec<(&'static Scenario, Vec<LatencySide>)>,
    /// Mecha's largest resident memory sampled during the throughput runs (MiB).
    pub load_rss: f64,
}

/// The sides of each scenario of `table` this run has the clients for.
fn ready(
    setup: &Setup,
    table: &'static [Scenario],
    latency: bool,
) -> Result<Vec<(&'static Scenario, Vec<Side>)>, String> {
    let mut out = Vec::new();
    for sc in table {
        if let Some(sides) = setup.sides(sc, latency)? {
            out.push((sc, sides));
        }
    }
    Ok(out)
}

/// Runs the selected scenarios against `mecha` (and `baseline`, the `--baseline-mecha`
/// build): throughput first, with resident memory sampled, then latency.
pub async fn measure(
    args: &Args,
    plan: &Plan,
    mecha: &Mecha,
    baseline: Option<&Mecha>,
    cleanup: &Cleanup,
) -> Result<Measured, String> {
    let setup = Setup::connect(args, plan, mecha, baseline, cleanup).await?;
    let throughput_sides = ready(&setup, scenarios::THROUGHPUT, false)?;
    let latency_sides = ready(&setup, scenarios::LATENCY, true)?;
    let conc = args.concurrency.max(1);

    let sampler = RssSampler::start(mecha.pid());
    // CPU per request: both Mecha processes and the empty tonic server count as the served
    // side (only one serves at a time).
    let mecha_pids: Vec<u32> = [mecha.pid(), setup.empty.pid()]
        .into_iter()
        .chain(baseline.map(Mecha::pid))
        .collect();
    let mut ok = true;
    let mut throughput = Vec::new();
    for (sc, sides) in throughput_sides.iter().filter(|s| args.selected(s.0.id)) {
        eprintln!("throughput: {} ...", sc.title);
        let results = throughput_rounds(sc, sides, conc, plan, &mecha_pids).await;
        ok &= report::throughput_progress(&results);
        throughput.push((*sc, results));
    }
    let load_rss = sampler.stop().await;

    let mut latency = Vec::new();
    for (sc, sides) in latency_sides.iter().filter(|s| args.selected(s.0.id)) {
        eprintln!("latency at {}/s: {} ...", args.rate, sc.title);
        let results = latency_rounds(sides, args, plan, mecha.pid()).await?;
        ok &= report::latency_progress(&results);
        latency.push((*sc, results));
    }
    Ok(Measured {
        ok,
        throughput,
        latency,
        load_rss,
    })
}

/// Resident memory under load: sampled every 50 ms until stopped.
struct RssSampler {
    sampling: Arc<AtomicBool>,
    task: JoinHandle<f64>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let sampling = Arc::new(AtomicBool::new(true));
        let task = {
            let sampling = sampling.clone();
            tokio::spawn(async move {
                let mut max = 0f64;
                while sampling.load(Ordering::Relaxed) {
                    max = max.max(process::status_mib(pid, "VmRSS"));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                max
            })
        };
        RssSampler { sampling, task }
    }

    /// The largest sample (MiB).
    async fn stop(self) -> f64 {
        self.sampling.store(false, Ordering::Relaxed);
        self.task.await.unwrap_or(f64::NAN)
    }
}

/// The order of the sides in `round`: alternated every round so neither side always runs
/// first.
fn round_order(sides: usize, round: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..sides).collect();
    if round % 2 == 1 {
        order.reverse();
    }
    order
}

/// A throughput scenario: a warm-up of each side, then `plan.rounds` rounds.
async fn throughput_rounds(
    sc: &Scenario,
    sides: &[Side],
    conc: usize,
    plan: &Plan,
    mecha_pids: &[u32],
) -> Vec<SideResult> {
    // Warm-up (connections, statement caches, JIT-free but caches and pools).
    for s in sides {
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
    let mut results: Vec<SideResult> = sides.iter().map(|s| SideResult::new(s.label)).collect();
    for round in 0..plan.rounds {
        for i in round_order(sides.len(), round) {
            let before = process::cpu_snapshot(mecha_pids);
            let started = Instant::now();
            let t = sides[i].throughput(conc, plan.seconds).await;
            let wall = started.elapsed().as_secs_f64();
            let used = process::cpu_snapshot(mecha_pids) - before;
            let v = if sc.keys { t.keys_per_s } else { t.rps };
            let per_unit = 1e6 / (v * wall).max(1.0);
            results[i].cpu.push(CpuSnapshot {
                mecha: used.mecha * per_unit,
                store: used.store * per_unit,
                client: used.client * per_unit,
                machine: used.machine * per_unit,
            });
            results[i].values.push(v);
            results[i].errors.add(&t.errors);
        }
    }
    results
}

/// A latency scenario: a short warm-up of each side, then `plan.latency_rounds` rounds
/// at `args.rate`.
async fn latency_rounds(
    sides: &[Side],
    args: &Args,
    plan: &Plan,
    mecha_pid: u32,
) -> Result<Vec<LatencySide>, String> {
    let conc = args.concurrency.max(1);
    let mut results: Vec<LatencySide> = sides.iter().map(|s| LatencySide::new(s.label)).collect();
    for s in sides {
        let _ = open_loop(s.op()?, args.rate, Duration::from_millis(200), conc).await;
    }
    for round in 0..plan.latency_rounds {
        for i in round_order(sides.len(), round) {
            let cpu0 = process::cpu_seconds(mecha_pid);
            let t0 = Instant::now();
            let l = open_loop(sides[i].op()?, args.rate, plan.latency_seconds, conc).await;
            let wall = t0.elapsed().as_secs_f64();
            let cpu = process::cpu_seconds(mecha_pid) - cpu0;
            let r = &mut results[i];
            r.p50.push(l.quantile(0.50));
            r.p99.push(l.quantile(0.99));
            r.p999.push(l.quantile(0.999));
            r.samples += l.micros.len();
            if sides[i].mecha {
                // % of one core, scaled to 1000 requests per second.
                r.cpu.push(cpu / wall * 100.0 / (l.rate / 1000.0));
            }
            r.errors.add(&l.errors);
        }
    }
    Ok(results)
}
