//! Allocations per request on the hot path: GetState, SaveState and a bulk get
//! of ten keys through the HTTP door, the gateway pipeline and the in-memory store,
//! in-process on one thread, with the Prometheus recorder installed as in production.
//!
//! The caller's global allocator counts: [`measure`] takes the count as a function, so the
//! test (`tests/alloc_budget.rs`) and `mecha-allocs` (which `mecha-bench` runs) use `dhat`'s
//! testing allocator, while `mecha-bench` itself keeps the system allocator. Counts do not
//! depend on the machine's speed: they guard the hot path in CI where timings cannot.
//! What actix-web's test harness allocates to build each request is measured separately
//! and subtracted.

use std::path::Path;
use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::{App, test, web};
use mecha::config::{Config, Settings, parse_components};
use mecha::gateway::http::{HttpState, dispatch};
use mecha::gateway::{Catalog, Gateway, Live};

/// Requests counted per kind.
pub const ROUNDS: u64 = 400;

/// The budget per request of each measured kind, in [`measure`]'s order. When an
/// optimisation lowers a count, lower its budget.
pub const BUDGETS: [(&str, f64); 3] = [
    ("GetState", 20.0),
    ("SaveState", 32.0),
    ("bulk get of 10", 80.0),
];

const STORE: &str = "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: statestore\nspec:\n  type: state.in-memory\n  version: v1\n";

/// One measured kind of request.
#[derive(Debug, Clone)]
pub struct Count {
    /// What was sent.
    pub name: &'static str,
    /// Allocations per request, the harness's own subtracted.
    pub per_request: f64,
    /// Allocations the harness makes to build one request (not counted above).
    pub harness: f64,
}

/// Serves `ROUNDS` requests of each kind (after a warm-up) and counts allocations with
/// `blocks` (the number of allocations so far). Must run inside an actix system.
pub async fn measure(blocks: impl Fn() -> u64) -> Result<Vec<Count>, String> {
    mecha::metrics::install();
    let (components, _) = parse_components(&[(Path::new("s.yaml"), STORE)], &|_| None)
        .map_err(|e| format!("{e:?}"))?;
    let config = Config {
        settings: Settings::default(),
        components,
        warnings: Vec::new(),
    }
    .validate(Path::new("mecha.yaml"), "app")
    .map_err(|e| format!("{e:?}"))?;
    let catalog = Arc::new(Catalog::new(&config));
    let gateway = Gateway::start_local(Live::new(catalog), &config.settings().actors);
    let app = test::init_service(
        App::new()
            .app_data(web::Data::new(HttpState { gateway }))
            .default_service(web::to(dispatch)),
    )
    .await;

    let value = format!("\"{}\"", "x".repeat(1024));
    let save_body = format!(r#"[{{"key":"k0","value":{value}}}]"#);
    let keys: Vec<String> = (0..10).map(|i| format!("\"k{i}\"")).collect();
    let bulk_body = format!(r#"{{"keys":[{}],"parallelism":10}}"#, keys.join(","));
    for i in 0..10 {
        let body = format!(r#"[{{"key":"k{i}","value":{value}}}]"#);
        let req = test::TestRequest::post()
            .uri("/v1.0/state/statestore")
            .set_payload(body)
            .to_request();
        let status = test::call_service(&app, req).await.status();
        if status != 204 {
            return Err(format!("seeding k{i}: {status}"));
        }
    }

    let get = || {
        test::TestRequest::get()
            .uri("/v1.0/state/statestore/k1")
            .to_request()
    };
    let save = || {
        test::TestRequest::post()
            .uri("/v1.0/state/statestore")
            .set_payload(save_body.clone())
            .to_request()
    };
    let bulk = || {
        test::TestRequest::post()
            .uri("/v1.0/state/statestore/bulk")
            .set_payload(bulk_body.clone())
            .to_request()
    };
    let kinds: [(&'static str, &dyn Fn() -> actix_http::Request, u16); 3] = [
        (BUDGETS[0].0, &get, 200),
        (BUDGETS[1].0, &save, 204),
        (BUDGETS[2].0, &bulk, 200),
    ];
    let mut out = Vec::new();
    for (name, make, status) in kinds {
        out.push(count(&app, name, make, status, &blocks).await?);
    }
    Ok(out)
}

/// Serves `ROUNDS` requests made by `make` (after a warm-up, each answered `status`) and
/// counts their allocations, less what building the requests allocates.
async fn count<S, B>(
    app: &S,
    name: &'static str,
    make: &dyn Fn() -> actix_http::Request,
    status: u16,
    blocks: &impl Fn() -> u64,
) -> Result<Count, String>
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    // Warm-up: first-use allocations (metric handles, buffers) are not per request.
    for _ in 0..50 {
        let resp = test::call_service(app, make()).await;
        if resp.status() != status {
            return Err(format!("{name}: {}", resp.status()));
        }
        let _ = test::read_body(resp).await;
    }
    let before = blocks();
    for _ in 0..ROUNDS {
        drop(make());
    }
    let harness = (blocks() - before) as f64 / ROUNDS as f64;
    let before = blocks();
    for _ in 0..ROUNDS {
        let resp = test::call_service(app, make()).await;
        let _ = test::read_body(resp).await;
    }
    let per_request = (blocks() - before) as f64 / ROUNDS as f64 - harness;
    Ok(Count {
        name,
        per_request,
        harness,
    })
}
