//! Traces exported over OTLP, to a collector run here in-process: the trace service over
//! gRPC (tonic) and `POST /v1/traces` over HTTP/protobuf (actix-web), each receiving from the
//! real binary configured by `OTEL_EXPORTER_OTLP_ENDPOINT` and `OTEL_EXPORTER_OTLP_PROTOCOL`.
//! An HTTP and a gRPC call, each with a caller's `traceparent`, must arrive as spans of the
//! caller's trace: `request` (child of the caller's span, with the protocol), `state` (its
//! child: app, store, operation, decisions) and `store_call` (the state span's child, the
//! store attempt); the answers name Mecha's request span in their own `traceparent`.

use crate::support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mecha::gateway::grpc::proto::runtime::SaveStateRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use support::binary::Process;

/// Every span the collector received, with its resource's `service.name`.
#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<(String, Span)>>>);

impl Collector {
    fn take(&self, r: ExportTraceServiceRequest) {
        let mut all = self.0.lock().unwrap();
        for rs in r.resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|a| a.key == "service.name")
                .and_then(|a| text(a.value.as_ref()?.value.as_ref()?))
                .unwrap_or_default();
            for ss in rs.scope_spans {
                all.extend(ss.spans.into_iter().map(|s| (service.clone(), s)));
            }
        }
    }

    /// The spans of trace `trace_id` (hex), waiting up to 10 s for `n` of them.
    fn trace(&self, trace_id: &str, n: usize) -> Vec<(String, Span)> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let spans: Vec<(String, Span)> = self
                .0
                .lock()
                .unwrap()
                .iter()
                .filter(|(_, s)| hex(&s.trace_id) == trace_id)
                .cloned()
                .collect();
            if spans.len() >= n || Instant::now() > deadline {
                return spans;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.take(req.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

fn text(v: &AnyValue) -> Option<String> {
    match v {
        AnyValue::StringValue(s) => Some(s.clone()),
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| text(a.value.as_ref()?.value.as_ref()?))
}

/// A collector over OTLP/gRPC, on a thread and runtime of its own (the test blocks while
/// Mecha shuts down and flushes): its endpoint.
fn grpc_collector(c: Collector) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(c))
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
                .await
        })
    });
    format!("http://{addr}")
}

/// A collector over OTLP/HTTP with protobuf bodies, on a thread of its own: its endpoint
/// (the exporter adds `/v1/traces`).
fn http_collector(c: Collector) -> String {
    use actix_web::{App, HttpResponse, HttpServer, web};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            let server = HttpServer::new(move || {
                let c = c.clone();
                App::new().route(
                    "/v1/traces",
                    web::post().to(move |body: web::Bytes| {
                        let c = c.clone();
                        async move {
                            match ExportTraceServiceRequest::decode(body) {
                                Ok(r) => {
                                    c.take(r);
                                    HttpResponse::Ok()
                                        .content_type("application/x-protobuf")
                                        .body(ExportTraceServiceResponse::default().encode_to_vec())
                                }
                                Err(e) => HttpResponse::BadRequest().body(e.to_string()),
                            }
                        }
                    }),
                )
            })
            .workers(1)
            .disable_signals()
            .listen(listener)
            .unwrap();
            server.run().await
        })
    });
    format!("http://{addr}")
}

const HTTP_PARENT: (&str, &str) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
const GRPC_PARENT: (&str, &str) = ("5cf92f3577b34da6a3ce929d0e0e4737", "11f067aa0ba902b8");

fn traceparent((trace, parent): (&str, &str)) -> String {
    format!("00-{trace}-{parent}-01")
}

/// The request, state and store_call spans of one call, checked as one chain under the
/// caller's span; `answered` is the `traceparent` the answer carried.
fn check_chain(spans: &[(String, Span)], caller: (&str, &str), protocol: &str, answered: &str) {
    let named = |name: &str| {
        spans
            .iter()
            .find(|(_, s)| s.name == name)
            .unwrap_or_else(|| panic!("no {name} span in {:#?}", names(spans)))
            .clone()
    };
    let (service, request) = named("request");
    assert_eq!(service, "mecha");
    assert_eq!(
        hex(&request.parent_span_id),
        caller.1,
        "child of the caller"
    );
    assert_eq!(attribute(&request, "protocol").as_deref(), Some(protocol));
    assert_eq!(
        answered,
        format!("00-{}-{}-01", caller.0, hex(&request.span_id)),
        "the answer names Mecha's span"
    );
    let (_, state) = named("state");
    assert_eq!(state.parent_span_id, request.span_id);
    assert_eq!(attribute(&state, "app").as_deref(), Some("default"));
    assert_eq!(attribute(&state, "store").as_deref(), Some("statestore"));
    assert_eq!(attribute(&state, "operation").as_deref(), Some("set"));
    assert_eq!(attribute(&state, "decisions").as_deref(), Some("native"));
    let (_, store) = named("store_call");
    assert_eq!(store.parent_span_id, state.span_id);
    assert_eq!(attribute(&store, "store").as_deref(), Some("statestore"));
}

fn names(spans: &[(String, Span)]) -> Vec<(String, String, String)> {
    spans
        .iter()
        .map(|(_, s)| (s.name.clone(), hex(&s.span_id), hex(&s.parent_span_id)))
        .collect()
}

#[actix_rt::test]
async fn http_and_grpc_calls_are_spans_of_the_callers_trace_over_both_protocols() {
    for protocol in ["grpc", "http/protobuf"] {
        let collector = Collector::default();
        let endpoint = match protocol {
            "grpc" => grpc_collector(collector.clone()),
            _ => http_collector(collector.clone()),
        };
        let mut mecha = Process::spawn(
            &["--resources-path", "config/components"],
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
            ],
        );
        assert!(mecha.log().contains("exporting traces"), "{}", mecha.log());

        let r = reqwest::Client::new()
            .post(format!("{}/v1.0/state/statestore", mecha.base()))
            .header("traceparent", traceparent(HTTP_PARENT))
            .body(r#"[{"key":"otlp-h","value":1}]"#)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        let http_answer = r.headers()["traceparent"].to_str().unwrap().to_owned();

        let mut g = mecha::gateway::grpc::proto::runtime::dapr_client::DaprClient::connect(
            format!("http://{}", mecha.grpc),
        )
        .await
        .unwrap();
        let mut req = tonic::Request::new(SaveStateRequest {
            store_name: "statestore".into(),
            states: vec![support::item("otlp-g", b"2")],
        });
        req.metadata_mut()
            .insert("traceparent", traceparent(GRPC_PARENT).parse().unwrap());
        let answer = g.save_state(req).await.unwrap();
        let grpc_answer = answer
            .metadata()
            .get("traceparent")
            .expect("a traceparent in the answer")
            .to_str()
            .unwrap()
            .to_owned();

        // SIGTERM: the exporter sends what it holds before the process exits.
        mecha.terminate();
        let spans = collector.trace(HTTP_PARENT.0, 3);
        assert!(
            !spans.is_empty(),
            "{protocol}: nothing exported; log:\n{}",
            mecha.log()
        );
        check_chain(&spans, HTTP_PARENT, "http", &http_answer);
        let spans = collector.trace(GRPC_PARENT.0, 3);
        check_chain(&spans, GRPC_PARENT, "grpc", &grpc_answer);
    }
}

/// Without an endpoint nothing is exported and answers carry no `traceparent`.
#[actix_rt::test]
async fn nothing_is_exported_unless_configured() {
    let mut mecha = Process::spawn(&["--resources-path", "config/components"], &[]);
    let r = reqwest::Client::new()
        .post(format!("{}/v1.0/state/statestore", mecha.base()))
        .header("traceparent", traceparent(HTTP_PARENT))
        .body(r#"[{"key":"otlp-off","value":1}]"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert!(r.headers().get("traceparent").is_none());
    assert!(!mecha.log().contains("exporting traces"));
    mecha.terminate();
}
