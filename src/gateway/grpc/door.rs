//! The door around the generated `DaprServer`: what every call goes through before and after
//! its handler, at the HTTP/2 level (so it also covers calls tonic rejects itself).
//!
//! * Auth: `dapr-api-token` picks the app ([`crate::gateway::Catalog::authenticate`]); a failure answers
//!   `Unauthenticated` without reaching the handler. The token is removed, and the app
//!   passed to the handler as [`Caller`].
//! * Quota: the app's in-flight and rate limits ([`crate::gateway::Catalog::admit`]); past them the call is
//!   answered `ResourceExhausted` with `retry-after` metadata, without reaching the handler.
//! * Message size: tonic's decoder rejects an oversized request with `OutOfRange`; the door
//!   turns that into [`ErrorKind::BodyTooLarge`], rendered by the error table like every
//!   other failure (`ResourceExhausted`).
//! * Metrics: `dapr_grpc_io_server_*` per full method name and status code name.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use futures::future::BoxFuture;
use tonic::body::Body;
use tonic::codegen::http;
use tonic::server::NamedService;
use tonic::{Code, Status};
use tracing::Instrument;

use super::status::{code_name, status};
use crate::error::{Error, ErrorKind, Operation};
use crate::gateway::trace;
use crate::gateway::{AppId, Live};
use crate::metrics;

/// The authenticated app of a call (a request extension set by the door).
#[derive(Debug, Clone)]
pub struct Caller(pub AppId);

/// Wraps a generated tonic server with auth, size-error mapping and metrics.
#[derive(Clone)]
pub struct Door<S> {
    inner: S,
    live: Arc<Live>,
    request_timeout: std::time::Duration,
}

impl<S> Door<S> {
    /// The door in front of `inner`; `request_timeout` is the store actors' deadline.
    pub fn new(inner: S, live: Arc<Live>, request_timeout: std::time::Duration) -> Door<S> {
        Door {
            inner,
            live,
            request_timeout,
        }
    }
}

/// Puts a [`Door`] around the whole router, so calls to methods and services Mecha does not
/// serve pass through it too (auth, metrics under `_unknown`).
#[derive(Clone)]
pub struct DoorLayer {
    live: Arc<Live>,
    request_timeout: std::time::Duration,
}

impl DoorLayer {
    /// The layer; `request_timeout` is the store actors' deadline.
    pub fn new(live: Arc<Live>, request_timeout: std::time::Duration) -> DoorLayer {
        DoorLayer {
            live,
            request_timeout,
        }
    }
}

impl<S> tower_layer::Layer<S> for DoorLayer {
    type Service = Door<S>;

    fn layer(&self, inner: S) -> Door<S> {
        Door::new(inner, self.live.clone(), self.request_timeout)
    }
}

impl<S: NamedService> NamedService for Door<S> {
    const NAME: &'static str = S::NAME;
}

/// The operation of a full method name (`/dapr.proto.runtime.v1.Dapr/GetState`).
fn operation(path: &str) -> Operation {
    let name = path.rsplit('/').next().unwrap_or_default();
    Operation::ALL
        .into_iter()
        .find(|op| *op != Operation::Other && op.method_name() == name)
        .unwrap_or(Operation::Other)
}

/// Whether a trailers-only response is tonic's "decoded message length too large".
fn is_decode_limit(st: &Status) -> bool {
    st.code() == Code::OutOfRange && st.message().contains("decoded message length too large")
}

impl<S> tonic::codegen::Service<http::Request<Body>> for Door<S>
where
    S: tonic::codegen::Service<
            http::Request<Body>,
            Response = http::Response<Body>,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<http::Response<Body>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<Body>) -> Self::Future {
        // The call's span: protocol and, from valid `traceparent` metadata, trace id.
        let span = trace::request_span(
            "grpc",
            req.headers()
                .get(trace::TRACEPARENT)
                .map(http::HeaderValue::as_bytes),
        );
        let _entered = span.enter();
        let start = Instant::now();
        let method = req.uri().path().to_owned();
        // The configuration this call started with serves it to the end.
        let catalog = self.live.catalog();
        // daprd removes the token before the handler runs.
        let token = req.headers_mut().remove("dapr-api-token");
        let token = token.as_ref().and_then(|v| v.to_str().ok());
        let app = match catalog.authenticate(token) {
            Ok(app) => app,
            Err(e) => {
                tracing::debug!(error = %e.log_summary(), method = %method, "grpc call unauthenticated");
                let st = status(&e);
                let app = catalog.default_app().clone();
                metrics::record_grpc(&app, &method, code_name(st.code()), start.elapsed());
                return Box::pin(async move { Ok(st.into_http()) });
            }
        };
        // The app's quota; the permit moves into the call and is held until it answers.
        let permit = match catalog.admit(&app) {
            Ok(p) => p,
            Err(refusal) => {
                let e = refusal.error;
                tracing::debug!(error = %e.log_summary(), method = %method, "grpc call over quota");
                let st = status(&e);
                return Box::pin(async move {
                    tokio::time::sleep(refusal.delay).await;
                    metrics::record_grpc(&app, &method, code_name(st.code()), start.elapsed());
                    Ok(st.into_http())
                });
            }
        };
        req.extensions_mut().insert(Caller(app.clone()));
        // The ready service is the one polled; leave a fresh clone in its place (tower's rule).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        // A call (its message and its store call) gets `bodyTimeout + requestTimeout`: a
        // stream whose message never completes is answered and closed, not held.
        let limit = catalog.limits.body_timeout;
        let deadline = limit + self.request_timeout;
        let call_span = span.clone();
        Box::pin(
            async move {
                let mut resp = match tokio::time::timeout(deadline, inner.call(req)).await {
                    Ok(r) => r?,
                    Err(_) => {
                        let err = Error::new(ErrorKind::BodyTimeout { limit }, operation(&method));
                        tracing::debug!(error = %err, method = %method, "grpc call timed out");
                        status(&err).into_http()
                    }
                };
                drop(permit);
                // Errors of unary calls are trailers-only: the status is in the headers.
                let mut code = Code::Ok;
                if let Some(st) = Status::from_header_map(resp.headers()) {
                    code = st.code();
                    if is_decode_limit(&st) {
                        let limit = catalog.limits.max_body_size;
                        let err = Error::new(ErrorKind::BodyTooLarge { limit }, operation(&method));
                        tracing::debug!(error = %err, method = %method, "grpc message too large");
                        let st = status(&err);
                        code = st.code();
                        resp = st.into_http();
                    }
                }
                let elapsed = start.elapsed();
                metrics::record_grpc(&app, &method, code_name(code), elapsed);
                tracing::debug!(
                    method = %method, app = %app, status = code_name(code),
                    micros = elapsed.as_micros() as u64, "grpc request"
                );
                Ok(resp)
            }
            .instrument(call_span),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_paths_map_to_operations() {
        assert_eq!(
            operation("/dapr.proto.runtime.v1.Dapr/SaveState"),
            Operation::Save
        );
        assert_eq!(
            operation("/dapr.proto.runtime.v1.Dapr/DeleteBulkState"),
            Operation::BulkDelete
        );
        assert_eq!(
            operation("/dapr.proto.runtime.v1.Dapr/GetMetadata"),
            Operation::Other
        );
    }
}
