//! Prints the hot path's allocations per request as JSON (see `mecha_bench::allocs`);
//! `mecha-bench` runs it and puts the counts in its table.

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

#[actix_rt::main]
async fn main() -> std::process::ExitCode {
    let _profiler = dhat::Profiler::builder().testing().build();
    match mecha_bench::allocs::measure(|| dhat::HeapStats::get().total_blocks).await {
        Ok(counts) => {
            let rows: Vec<serde_json::Value> = counts
                .iter()
                .zip(mecha_bench::allocs::BUDGETS)
                .map(|(c, (_, budget))| {
                    serde_json::json!({
                        "name": c.name,
                        "per_request": c.per_request,
                        "harness": c.harness,
                        "budget": budget,
                    })
                })
                .collect();
            println!("{}", serde_json::Value::Array(rows));
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mecha-allocs: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
