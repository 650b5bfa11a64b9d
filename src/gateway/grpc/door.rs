//! The door around the generated `DaprServer`: what every call goes through before and after
//! its handler, at the HTTP/2 level (so it also covers calls tonic rejects itself).
//!
//! * Auth: `dapr-api-token` picks the app ([`crate::gateway::Catalog::authenticate`]); a failure answers
//!   `Unauthenticated` without reaching the handler. The token is removed, and the app
//!   passed to the handler as [`Caller`].
//! * Quota: the app's in-flight and rate limits ([`crate::gateway::Catalog::admit`]); past them the call is
//!   answered `ResourceExhausted` with `retry-after` metadata, without reaching the handler.
//! * Memory: the request body is charged against the app's and the global body budgets
//!   frame by frame before tonic decodes it ([`crate::gateway::budget`]); a charge that
//!   finds no room within `limits.bodyMemoryWait` fails the call with `ResourceExhausted`.
//!   The charge is held until the call has answered.
//! * Connections: the call marks its connection served or authenticated
//!   ([`crate::gateway::conns`]), so authenticated connections are kept when room is made.
//! * Message size: tonic's decoder rejects an oversized request with `OutOfRange`; the door
//!   turns that into [`ErrorKind::BodyTooLarge`], rendered by the error table like every
//!   other failure (`ResourceExhausted`).
//! * Metrics: `dapr_grpc_io_server_*` per full method name and status code name.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use futures::future::BoxFuture;
use tonic::body::Body;
use tonic::codegen::http;
use tonic::server::NamedService;
use tonic::{Code, Status};
use tracing::Instrument;

use super::listener::ConnInfo;
use super::status::{code_name, status};
use crate::error::{Error, ErrorKind};
use crate::gateway::budget::BodyMeter;
use crate::gateway::conns::ConnHandle;
use crate::gateway::door::{self, InProgress};
use crate::gateway::trace;
use crate::gateway::{AppId, Live};
use crate::metrics;
use crate::model::{Operation, Protocol};

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
        // Token and quota; the permit moves into the call and is held until it answers.
        let admitted = catalog.apps().admit_call(token);
        // The connection's stage (unauthenticated connections are closed first for room).
        let authenticated = admitted.as_ref().map_or_else(|t| t.app.is_some(), |_| true);
        let conn = req
            .extensions()
            .get::<ConnInfo>()
            .map(|i| InProgress::new(i.conn.clone(), authenticated));
        let (app, permit) = match admitted {
            Ok(admitted) => admitted,
            Err(turned) => {
                let app = match turned.app.clone() {
                    Some(app) => app,
                    None => catalog.apps().default_app().clone(),
                };
                return Box::pin(turned_away(*turned, app, method, start, conn));
            }
        };
        req.extensions_mut().insert(Caller(app.clone()));
        // The body is charged to the memory budgets as it streams in; the charge is held
        // (in `held`) until the call has answered.
        let held = Arc::new(parking_lot::Mutex::new(None));
        let meter = permit.body_meter(&app);
        let op = operation(&method);
        let req = req.map(|b| Body::new(Metered::new(b, meter, held.clone(), op)));
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
                let resp = match tokio::time::timeout(deadline, inner.call(req)).await {
                    Ok(r) => r?,
                    Err(_) => {
                        let err = Error::new(ErrorKind::BodyTimeout { limit }, operation(&method));
                        tracing::debug!(error = %err, method = %method, "grpc call timed out");
                        status(&err).into_http()
                    }
                };
                drop(permit);
                drop(held);
                drop(conn);
                let (mut resp, code) = with_size_error(resp, catalog.limits.max_body_size, &method);
                add_traceparent(resp.headers_mut());
                let elapsed = start.elapsed();
                metrics::record_grpc(&app, &method, code_name(code), elapsed);
                door::log_request(Protocol::Grpc, &method, &app, &code_name(code), elapsed);
                Ok(resp)
            }
            .instrument(call_span),
        )
    }
}

/// Names Mecha's span of the call in the answer's `traceparent` metadata (traces exported).
fn add_traceparent(headers: &mut http::HeaderMap) {
    if let Some(tp) = trace::current_traceparent()
        && let Ok(v) = http::HeaderValue::from_str(&tp)
    {
        headers.insert(trace::TRACEPARENT, v);
    }
}

/// The answer to a call turned away at the door (no valid token, or over its app's quota),
/// after the refusal's delay; counted in the gRPC metrics like every call.
async fn turned_away(
    turned: crate::gateway::Turned,
    app: AppId,
    method: String,
    start: Instant,
    conn: Option<InProgress<Arc<ConnHandle>>>,
) -> Result<http::Response<Body>, Infallible> {
    door::log_failure(Protocol::Grpc, &turned.error);
    let st = status(&turned.error);
    if !turned.delay.is_zero() {
        tokio::time::sleep(turned.delay).await;
    }
    drop(conn);
    metrics::record_grpc(&app, &method, code_name(st.code()), start.elapsed());
    Ok(st.into_http())
}

/// The status code of an answer (errors of unary calls are trailers-only: the status is in
/// the headers), with tonic's "decoded message length too large" turned into the error
/// table's [`ErrorKind::BodyTooLarge`].
fn with_size_error(
    resp: http::Response<Body>,
    limit: usize,
    method: &str,
) -> (http::Response<Body>, Code) {
    let Some(st) = Status::from_header_map(resp.headers()) else {
        return (resp, Code::Ok);
    };
    if !is_decode_limit(&st) {
        return (resp, st.code());
    }
    let err = Error::new(ErrorKind::BodyTooLarge { limit }, operation(method));
    tracing::debug!(error = %err, method = %method, "grpc message too large");
    let st = status(&err);
    let code = st.code();
    (st.into_http(), code)
}

type Reserve = Pin<Box<dyn Future<Output = (BodyMeter, Result<(), Error>)> + Send>>;

/// A request body charged to the memory budgets frame by frame: a DATA frame is handed to
/// the decoder only once its bytes are charged. The meter moves to `held` when the body is
/// dropped, so the charge outlives decoding until the call answers.
struct Metered {
    inner: Body,
    meter: Option<BodyMeter>,
    pending: Option<(Reserve, http_body::Frame<bytes::Bytes>)>,
    seen: usize,
    held: Arc<parking_lot::Mutex<Option<BodyMeter>>>,
    op: Operation,
}

impl Metered {
    fn new(
        inner: Body,
        meter: BodyMeter,
        held: Arc<parking_lot::Mutex<Option<BodyMeter>>>,
        op: Operation,
    ) -> Metered {
        Metered {
            inner,
            meter: Some(meter),
            pending: None,
            seen: 0,
            held,
            op,
        }
    }
}

impl Drop for Metered {
    fn drop(&mut self) {
        if let Some(m) = self.meter.take() {
            *self.held.lock() = Some(m);
        }
    }
}

impl http_body::Body for Metered {
    type Data = bytes::Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, Status>>> {
        let this = &mut *self;
        loop {
            if let Some((reserve, _)) = &mut this.pending {
                let (meter, charged) = std::task::ready!(reserve.as_mut().poll(cx));
                this.meter = Some(meter);
                let (_, frame) = this.pending.take().expect("pending frame");
                return Poll::Ready(Some(match charged {
                    Ok(()) => Ok(frame),
                    Err(e) => Err(status(&e)),
                }));
            }
            let frame = match std::task::ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => frame,
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => return Poll::Ready(None),
            };
            let Some(data) = frame.data_ref() else {
                return Poll::Ready(Some(Ok(frame)));
            };
            this.seen += data.len();
            let (total, op) = (this.seen, this.op);
            let Some(mut meter) = this.meter.take() else {
                return Poll::Ready(Some(Ok(frame)));
            };
            let reserve: Reserve = Box::pin(async move {
                let r = meter.reserve(total, op).await;
                (meter, r)
            });
            this.pending = Some((reserve, frame));
        }
    }

    fn is_end_stream(&self) -> bool {
        self.pending.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
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
