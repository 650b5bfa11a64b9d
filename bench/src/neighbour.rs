//! The noisy-neighbour scenario: two apps share one Mecha (in-memory store). The quiet app
//! sends GetState open-loop at the latency rate; its p99 is measured alone, then while the
//! noisy app floods closed-loop far beyond its quota (most of its requests get 429). The
//! ratio of the two p99s is the price one app pays for another's flood, with quotas on.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use hyper::{Method, StatusCode};

use crate::clients::HttpPool;
use crate::load::{Errors, Op, closed_loop, median, open_loop};
use crate::process::Mecha;

/// The stated bound: the quiet app's p99 under the flood is at most this many times its p99
/// alone.
pub const P99_RATIO_BOUND: f64 = 3.0;

/// The noisy app's quota in this scenario.
const NOISY_QUOTA: &str =
    "      maxConcurrent: 16\n      requestsPerSecond: 2000\n      burst: 200\n";

/// What the scenario measured (medians of rounds).
pub struct Neighbour {
    pub alone_p99_ms: f64,
    pub flooded_p99_ms: f64,
    pub ratio: f64,
    /// The noisy app's answered requests per second (served plus refused) and served ones.
    pub noisy_rps: f64,
    pub noisy_served_rps: f64,
    pub flood_concurrency: usize,
    pub errors: Errors,
}

fn get(pool: &Arc<HttpPool>, refused_ok: bool) -> Op {
    let pool = pool.clone();
    Arc::new(move |_w, _seq| {
        let pool = pool.clone();
        async move {
            let r = pool
                .send(Method::GET, "/v1.0/state/mem/k", None, None)
                .await?;
            match r.status {
                StatusCode::OK => Ok(1),
                StatusCode::TOO_MANY_REQUESTS if refused_ok => Ok(0),
                s => Err(format!(
                    "GET /v1.0/state/mem/k: {s} {}",
                    String::from_utf8_lossy(&r.body)
                )),
            }
        }
        .boxed()
    })
}

/// Runs the scenario on its own Mecha process under `dir`.
pub async fn run(
    bin: &Path,
    dir: &Path,
    rate: f64,
    seconds: Duration,
    rounds: usize,
    flood_concurrency: usize,
) -> Result<Neighbour, String> {
    let resources = dir.join("neighbour-components");
    std::fs::create_dir_all(&resources).map_err(|e| e.to_string())?;
    std::fs::write(
        resources.join("mem.yaml"),
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: mem\nspec:\n  type: state.in-memory\n  version: v1\n",
    )
    .map_err(|e| e.to_string())?;
    let config = dir.join("neighbour.yaml");
    std::fs::write(
        &config,
        format!(
            "apps:\n  - id: noisy\n    token: noisy-token\n    quota:\n{NOISY_QUOTA}  - id: quiet\n    token: quiet-token\n"
        ),
    )
    .map_err(|e| e.to_string())?;
    let mecha = Mecha::start(bin, &resources, &config, dir.join("mecha-neighbour.log"))?;
    let result = measure(&mecha, rate, seconds, rounds, flood_concurrency).await;
    mecha.stop();
    result
}

async fn measure(
    mecha: &Mecha,
    rate: f64,
    seconds: Duration,
    rounds: usize,
    flood_concurrency: usize,
) -> Result<Neighbour, String> {
    let quiet = HttpPool::with_token(mecha.http, "quiet-token");
    let noisy = HttpPool::with_token(mecha.http, "noisy-token");
    for pool in [&quiet, &noisy] {
        let r = pool
            .send(
                Method::POST,
                "/v1.0/state/mem",
                Some(bytes::Bytes::from_static(br#"[{"key":"k","value":"v"}]"#)),
                None,
            )
            .await?;
        if r.status != StatusCode::NO_CONTENT {
            return Err(format!("seeding the neighbour store failed: {}", r.status));
        }
    }
    let (quiet_op, noisy_op) = (get(&quiet, false), get(&noisy, true));
    let workers = 32;
    let mut errors = Errors::default();
    let (mut alone, mut flooded, mut noisy_rps, mut noisy_served) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // Warm up both apps' connections.
    let _ = open_loop(&quiet_op, rate, Duration::from_millis(200), workers).await;
    for _ in 0..rounds.max(1) {
        let l = open_loop(&quiet_op, rate, seconds, workers).await;
        errors.add(&l.errors);
        alone.push(l.quantile(0.99) / 1000.0);

        let flood = {
            let op = noisy_op.clone();
            let d = seconds + Duration::from_millis(400);
            tokio::spawn(async move { closed_loop(&op, flood_concurrency, d).await })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        let l = open_loop(&quiet_op, rate, seconds, workers).await;
        errors.add(&l.errors);
        flooded.push(l.quantile(0.99) / 1000.0);
        let t = flood.await.map_err(|e| e.to_string())?;
        errors.add(&t.errors);
        noisy_rps.push(t.rps);
        noisy_served.push(t.keys_per_s);
    }
    let (a, f) = (median(&alone), median(&flooded));
    Ok(Neighbour {
        alone_p99_ms: a,
        flooded_p99_ms: f,
        ratio: f / a,
        noisy_rps: median(&noisy_rps),
        noisy_served_rps: median(&noisy_served),
        flood_concurrency,
        errors,
    })
}
