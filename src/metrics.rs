//! Metric names, labels and recording, in one place (Dapr's names, so existing dashboards work).
//!
//! A single Prometheus recorder is installed per process; several Mecha instances in one
//! process (tests) share it, and every series carries `app_id`.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::error::Operation;

/// API calls that reached a store: `app_id`, `component`, `namespace`, `operation`, `success`.
pub const STATE_COUNT: &str = "dapr_component_state_count";
/// Store call latency in milliseconds, same labels.
pub const STATE_LATENCY: &str = "dapr_component_state_latencies";
/// HTTP requests: `app_id`, `method`, `path`, `status`.
pub const HTTP_COUNT: &str = "dapr_http_server_request_count";
/// HTTP latency in milliseconds, same labels.
pub const HTTP_LATENCY: &str = "dapr_http_server_latency";
/// Completed gRPC calls: `app_id`, `grpc_server_method`, `grpc_server_status`.
pub const GRPC_COMPLETED: &str = "dapr_grpc_io_server_completed_rpcs";
/// gRPC latency in milliseconds, same labels.
pub const GRPC_LATENCY: &str = "dapr_grpc_io_server_server_latency";

/// Dapr's default latency buckets (ms).
const LATENCY_BUCKETS_MS: &[f64] = &[
    1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 13.0, 16.0, 20.0, 25.0, 30.0, 40.0, 50.0, 65.0, 80.0,
    100.0, 130.0, 160.0, 200.0, 250.0, 300.0, 400.0, 500.0, 650.0, 800.0, 1000.0, 2000.0, 5000.0,
    10000.0, 20000.0, 50000.0, 100000.0,
];

/// Installs the process-wide recorder (once) and returns the handle that renders it.
pub fn install() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("latencies".into()), LATENCY_BUCKETS_MS)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Suffix("latency".into()), LATENCY_BUCKETS_MS)
                })
                .expect("bucket list is non-empty");
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed by an embedding program; then ours
            // still renders (empty) and theirs receives the data.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Records one store call.
pub fn record_store_call(app: &str, store: &str, op: Operation, success: bool, elapsed: Duration) {
    let labels = [
        ("app_id", app.to_owned()),
        ("component", store.to_owned()),
        ("namespace", String::new()),
        ("operation", op.metric_label().to_owned()),
        ("success", success.to_string()),
    ];
    metrics::counter!(STATE_COUNT, &labels).increment(1);
    if !elapsed.is_zero() {
        metrics::histogram!(STATE_LATENCY, &labels).record(ms(elapsed));
    }
}

/// Dapr's low-cardinality `path` label: state paths are cut to `/<version>/state/<store>`.
pub fn http_path_label(segments: &[&str]) -> String {
    match segments {
        [version, "state", store, ..] => format!("/{version}/state/{store}"),
        other => format!("/{}", other.join("/")),
    }
}

/// Records one HTTP request.
pub fn record_http(app: &str, method: &str, path: &str, status: u16, elapsed: Duration) {
    let method = match method {
        "GET" | "POST" | "PUT" | "DELETE" | "PATCH" | "HEAD" | "OPTIONS" | "CONNECT" | "TRACE" => {
            method
        }
        _ => "UNKNOWN",
    };
    let labels = [
        ("app_id", app.to_owned()),
        ("method", method.to_owned()),
        ("path", path.to_owned()),
        ("status", status.to_string()),
    ];
    metrics::counter!(HTTP_COUNT, &labels).increment(1);
    metrics::histogram!(HTTP_LATENCY, &labels).record(ms(elapsed));
}

/// Records one gRPC call.
pub fn record_grpc(app: &str, method: &str, status: &str, elapsed: Duration) {
    let labels = [
        ("app_id", app.to_owned()),
        ("grpc_server_method", method.to_owned()),
        ("grpc_server_status", status.to_owned()),
    ];
    metrics::counter!(GRPC_COMPLETED, &labels).increment(1);
    metrics::histogram!(GRPC_LATENCY, &labels).record(ms(elapsed));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_label_is_low_cardinality() {
        assert_eq!(
            http_path_label(&["v1.0", "state", "s", "k"]),
            "/v1.0/state/s"
        );
        assert_eq!(
            http_path_label(&["v1.0-alpha1", "state", "s", "query"]),
            "/v1.0-alpha1/state/s"
        );
        assert_eq!(http_path_label(&["v1.0", "healthz"]), "/v1.0/healthz");
    }
}
