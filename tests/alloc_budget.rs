//! The allocation budget of the hot path (issue 14): GetState, SaveState and a bulk get of
//! ten keys through the HTTP door, the gateway pipeline and the in-memory store, in-process
//! on one thread, with the Prometheus recorder installed as in production. A counting
//! global allocator (`dhat` in testing mode) counts every allocation made while serving
//! `ROUNDS` requests of each kind; the average per request must stay within its budget.
//!
//! Allocation counts do not depend on the machine's speed, so this guards the hot path in
//! CI where timings cannot. The counts include what actix-web's test harness allocates to
//! build each request (a few blocks); when an optimisation lowers a count, lower the budget.

use std::path::Path;
use std::sync::Arc;

use actix_web::{App, test, web};
use mecha::config::{Settings, parse_components};
use mecha::gateway::http::{HttpState, dispatch};
use mecha::gateway::{Catalog, Gateway};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

const ROUNDS: u64 = 400;

/// Most allocations per request, averaged over `ROUNDS` requests.
const GET_BUDGET: f64 = 34.0;
const SAVE_BUDGET: f64 = 42.0;
const BULK_GET_10_BUDGET: f64 = 102.0;

const STORE: &str = "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: statestore\nspec:\n  type: state.in-memory\n  version: v1\n";

fn blocks() -> u64 {
    dhat::HeapStats::get().total_blocks
}

#[actix_rt::test]
async fn allocations_per_request_stay_within_budget() {
    let _profiler = dhat::Profiler::builder().testing().build();
    mecha::metrics::install();
    let (components, _) = parse_components(&[(Path::new("s.yaml"), STORE)], &|_| None).unwrap();
    let settings = Settings::default();
    let catalog = Arc::new(Catalog::new(&components, &settings, "app").unwrap());
    let gateway = Gateway::start_local(catalog, &settings.actors);
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
        assert_eq!(test::call_service(&app, req).await.status(), 204);
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
    let mut report = Vec::new();
    for (name, budget, make, status) in [
        ("GetState", GET_BUDGET, &get as &dyn Fn() -> _, 200),
        ("SaveState", SAVE_BUDGET, &save, 204),
        ("bulk get of 10", BULK_GET_10_BUDGET, &bulk, 200),
    ] {
        // Warm-up: first-use allocations (metric handles, buffers) are not per request.
        for _ in 0..50 {
            let resp = test::call_service(&app, make()).await;
            assert_eq!(resp.status(), status, "{name}");
            let _ = test::read_body(resp).await;
        }
        // What the test harness itself allocates to build a request, not counted.
        let before = blocks();
        for _ in 0..ROUNDS {
            drop(make());
        }
        let harness = (blocks() - before) as f64 / ROUNDS as f64;
        let before = blocks();
        for _ in 0..ROUNDS {
            let resp = test::call_service(&app, make()).await;
            let _ = test::read_body(resp).await;
        }
        let per_request = (blocks() - before) as f64 / ROUNDS as f64 - harness;
        println!("{name}: harness {harness:.1}");
        report.push(format!(
            "{name}: {per_request:.1} allocations per request (budget {budget})"
        ));
        println!("{name}: {per_request:.1} allocations per request (budget {budget})");
        assert!(
            per_request <= budget,
            "{name}: {per_request:.1} allocations per request, budget {budget}\n{}",
            report.join("\n")
        );
    }
}
