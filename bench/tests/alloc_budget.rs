//! The allocation budget of the hot path: see `mecha_bench::allocs`. Each kind
//! of request must stay at or under its budget, averaged over `ROUNDS` requests.

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

#[actix_rt::test]
async fn allocations_per_request_stay_within_budget() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let counts = mecha_bench::allocs::measure(|| dhat::HeapStats::get().total_blocks)
        .await
        .expect("the in-process Mecha serves");
    let report: Vec<String> = counts
        .iter()
        .zip(mecha_bench::allocs::BUDGETS)
        .map(|(c, (_, budget))| {
            format!(
                "{}: {:.1} allocations per request (budget {budget}; harness {:.1})",
                c.name, c.per_request, c.harness
            )
        })
        .collect();
    println!("{}", report.join("\n"));
    for (c, (_, budget)) in counts.iter().zip(mecha_bench::allocs::BUDGETS) {
        assert!(c.per_request <= budget, "{}", report.join("\n"));
    }
}
