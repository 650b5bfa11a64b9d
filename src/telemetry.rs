//! Traces exported over OTLP: the request spans of both doors, the gateway's `state` span
//! (app, store, operation, the decisions of negotiation) and one `store_call` span per store
//! attempt, as OpenTelemetry spans. Off unless configured (`tracing:` in `mecha.yaml`, the
//! `spec.tracing` of a Dapr `kind: Configuration` given to `--config`, or
//! `OTEL_EXPORTER_OTLP_ENDPOINT`); sampled by trace id at the configured rate, following the
//! caller's sampled flag when a `traceparent` came in (its trace is continued: Mecha's spans
//! are children of the caller's).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};

/// How spans are sent to the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// OTLP/gRPC (the collector's port 4317).
    Grpc,
    /// OTLP/HTTP with binary protobuf bodies (the collector's port 4318).
    HttpProtobuf,
}

impl OtlpProtocol {
    /// The names of `OTEL_EXPORTER_OTLP_PROTOCOL` (and Dapr's `otel.protocol`: `http`).
    pub fn parse(s: &str) -> Option<OtlpProtocol> {
        match s.trim().to_ascii_lowercase().as_str() {
            "grpc" => Some(OtlpProtocol::Grpc),
            "http/protobuf" | "http" => Some(OtlpProtocol::HttpProtobuf),
            _ => None,
        }
    }

    /// Its `OTEL_EXPORTER_OTLP_PROTOCOL` name.
    pub const fn as_str(self) -> &'static str {
        match self {
            OtlpProtocol::Grpc => "grpc",
            OtlpProtocol::HttpProtobuf => "http/protobuf",
        }
    }
}

/// Where and how traces are exported.
#[derive(Debug, Clone, PartialEq)]
pub struct TracingSettings {
    /// The collector: `http://host:4317` (gRPC) or `http://host:4318` (HTTP; `/v1/traces` is
    /// added when the URL has no path).
    pub endpoint: String,
    /// gRPC or HTTP/protobuf.
    pub protocol: OtlpProtocol,
    /// The share of new traces sampled, 0 to 1 (a caller's sampled flag wins).
    pub sampling_rate: f64,
}

impl TracingSettings {
    /// The URL the exporter posts to.
    pub fn export_url(&self) -> String {
        let base = self.endpoint.trim_end_matches('/');
        let has_path = base
            .split_once("://")
            .is_some_and(|(_, rest)| rest.contains('/'));
        match self.protocol {
            OtlpProtocol::HttpProtobuf if !has_path => format!("{base}/v1/traces"),
            _ => base.to_owned(),
        }
    }

    /// One line for `mecha check` and the start-up log.
    pub fn describe(&self) -> String {
        format!(
            "OTLP {} to {}, sampling {}",
            self.protocol.as_str(),
            self.export_url(),
            self.sampling_rate
        )
    }
}

/// Whether spans are exported: the doors add the `traceparent` of Mecha's span to answers
/// only then.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// The exporter's state, kept for the process's life: dropping it sends what is buffered.
pub struct Exporter {
    provider: SdkTracerProvider,
    /// The runtime the gRPC exporter's connection runs on (the batch processor calls it
    /// from its own thread).
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for Exporter {
    fn drop(&mut self) {
        EXPORTING.store(false, Ordering::Relaxed);
        if let Err(e) = self.provider.shutdown() {
            eprintln!("mecha: flushing the last spans failed: {e}");
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

/// How long one export may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// The tracing layer exporting Mecha's spans under `settings`, and the exporter to keep.
pub fn otlp_layer<S>(
    settings: &TracingSettings,
) -> Result<
    (
        tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::SdkTracer>,
        Exporter,
    ),
    String,
>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let url = settings.export_url();
    let (exporter, runtime) = match settings.protocol {
        OtlpProtocol::Grpc => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("otlp-export")
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start the OTLP exporter's runtime: {e}"))?;
            let exporter = rt.block_on(async {
                opentelemetry_otlp::SpanExporter::builder()
                    .with_tonic()
                    .with_endpoint(url.clone())
                    .with_timeout(EXPORT_TIMEOUT)
                    .build()
            });
            (exporter, Some(rt))
        }
        OtlpProtocol::HttpProtobuf => (
            opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .with_endpoint(url.clone())
                .with_timeout(EXPORT_TIMEOUT)
                .build(),
            None,
        ),
    };
    let exporter =
        exporter.map_err(|e| format!("cannot build the OTLP exporter for {url}: {e}"))?;
    let sampler =
        Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(settings.sampling_rate)));
    let resource = Resource::builder()
        .with_service_name("mecha")
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(sampler)
        .with_resource(resource)
        .build();
    let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("mecha"));
    EXPORTING.store(true, Ordering::Relaxed);
    Ok((layer, Exporter { provider, runtime }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_http_url_gets_the_traces_path_only_when_it_has_none() {
        let s = |endpoint: &str, protocol| TracingSettings {
            endpoint: endpoint.into(),
            protocol,
            sampling_rate: 1.0,
        };
        let h = OtlpProtocol::HttpProtobuf;
        assert_eq!(
            s("http://c:4318", h).export_url(),
            "http://c:4318/v1/traces"
        );
        assert_eq!(
            s("http://c:4318/", h).export_url(),
            "http://c:4318/v1/traces"
        );
        assert_eq!(
            s("http://c:4318/otlp/v1/traces", h).export_url(),
            "http://c:4318/otlp/v1/traces"
        );
        assert_eq!(
            s("http://c:4317", OtlpProtocol::Grpc).export_url(),
            "http://c:4317"
        );
        assert_eq!(OtlpProtocol::parse("http/protobuf"), Some(h));
        assert_eq!(OtlpProtocol::parse("GRPC"), Some(OtlpProtocol::Grpc));
        assert_eq!(OtlpProtocol::parse("http/json"), None);
    }
}
