//! Telemetry: metric families and their counts (`metrics_families`), bounded cardinality
//! (`cardinality`), spans on store log lines (`store_spans`), JSON logs with trace ids
//! (`trace_logs`), traces exported over OTLP (`otlp`), nothing secret in logs
//! (`log_privacy`), and `promtool check metrics` on a scrape of the real binary
//! (`promtool`). The tests that read
//! process-wide state (the metrics recorder, the tracing subscriber) run in a process of
//! their own (`support::own_process`).

mod cardinality;
mod log_privacy;
mod metrics_families;
mod otlp;
mod promtool;
mod store_spans;
#[path = "../support/mod.rs"]
mod support;
mod trace_logs;
