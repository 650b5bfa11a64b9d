//! Thin handlers: route → extract → gateway → respond, in daprd's order of checks
//! (auth, store lookup, capability, body, empty shortcut, keys, store call).

use crate::resilience::BreakerState;
use std::time::Instant;

use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use serde_json::json;
use tracing::Instrument;

use super::portability::{self, Reader};
use super::router::{Route, clean_segments, query_pairs, query_unescape, route};
use super::{body, respond};
use crate::config::Limits;
use crate::error::{Error, ErrorKind};
use crate::gateway::budget::BodyMeter;
use crate::gateway::conns::ConnHandle;
use crate::gateway::door::{self, InProgress};
use crate::gateway::limits;
use crate::gateway::ops::{
    BulkGet, BulkGetInput, BulkItem, Delete, Get, GetInput, Query as StateQuery, QueryInput, Save,
    Transaction,
};
use crate::gateway::trace;
use crate::gateway::{AppId, Catalog, Gateway, RUNTIME_VERSION, StateOp, StoreName};
use crate::metrics;
use crate::model::{
    Concurrency, Consistency, DeleteRequest, Metadata, Operation, Protocol, QueryResponse,
    StateEntry, StateOptions,
};

/// The token header. Header names looked up by `&str` are parsed (and a name outside the
/// standard set copied to the heap) on every lookup; a static name is not.
pub(super) const API_TOKEN: HeaderName = HeaderName::from_static("dapr-api-token");

/// The W3C trace context header, as a static name (see [`API_TOKEN`]).
const TRACEPARENT: HeaderName = HeaderName::from_static(trace::TRACEPARENT);

/// Per-worker state of the HTTP door.
pub struct HttpState {
    /// This worker's gateway.
    pub gateway: Gateway,
}

/// The query string, split once.
struct Query {
    metadata: Metadata,
    consistency: Option<String>,
    concurrency: Option<String>,
    appid: Option<String>,
}

impl Query {
    fn parse(raw: &str) -> Query {
        let mut q = Query {
            metadata: Metadata::new(),
            consistency: None,
            concurrency: None,
            appid: None,
        };
        // Only the first value of a repeated parameter counts.
        for (k, v) in query_pairs(raw) {
            if let Some(name) = k.strip_prefix("metadata.") {
                q.metadata.entry(name.to_owned()).or_insert(v);
            } else if k == "consistency" {
                q.consistency.get_or_insert(v);
            } else if k == "concurrency" {
                q.concurrency.get_or_insert(v);
            } else if k == "appid" {
                q.appid.get_or_insert(v);
            }
        }
        q
    }

    fn options(&self, op: Operation) -> Result<StateOptions, Error> {
        let invalid = |e: String| Error::new(ErrorKind::InvalidOption, op).detail(e);
        Ok(StateOptions {
            concurrency: Concurrency::parse(self.concurrency.as_deref().unwrap_or(""))
                .map_err(invalid)?,
            consistency: Consistency::parse(self.consistency.as_deref().unwrap_or(""))
                .map_err(invalid)?,
        })
    }
}

/// What a handler produced, and the app to label metrics with.
enum Outcome {
    Response(HttpResponse),
    Error(Error),
    /// A path parameter that does not unescape: daprd answers in plain text.
    BadParam(&'static str, String),
}

impl From<Result<HttpResponse, Error>> for Outcome {
    fn from(r: Result<HttpResponse, Error>) -> Self {
        r.map_or_else(Outcome::Error, Outcome::Response)
    }
}

/// The catch-all service: every request of the HTTP door comes through here, inside its
/// request span (protocol and, from a valid `traceparent` header, trace id).
pub async fn dispatch(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<HttpState>,
) -> HttpResponse {
    let span = trace::request_span(
        "http",
        req.headers().get(TRACEPARENT).map(HeaderValue::as_bytes),
    );
    serve_request(req, payload, state).instrument(span).await
}

async fn serve_request(
    req: HttpRequest,
    mut payload: web::Payload,
    state: web::Data<HttpState>,
) -> HttpResponse {
    let start = Instant::now();
    // Borrowed from the request, which this function owns until it answers.
    let segments = clean_segments(req.uri().path());
    let route = route(req.method(), &segments);
    let gw = &state.gateway;
    let token = req.headers().get(API_TOKEN).and_then(|v| v.to_str().ok());
    let mut app: Option<AppId> = None;
    let mut body_refused = false;
    // The connection's stage: a request with a valid token marks it authenticated (kept
    // when room is made for new connections), see `crate::gateway::conns`.
    let in_progress = req.conn_data::<ConnSlot>().map(|slot| {
        let valid = !matches!(route, Route::NotFound) && gw.catalog().apps().is_valid_token(token);
        InProgress::new(slot.0.clone(), valid)
    });
    let outcome = match route {
        Route::Healthz => healthz(gw, &Query::parse(req.query_string()), token).into(),
        // Outbound readiness is the stores' readiness (an unreachable store is not ready).
        Route::HealthzOutbound => healthz(gw, &Query::parse(""), token).into(),
        // The platform's probes, no token: liveness is the process answering, readiness
        // every store's health (counted, never named).
        Route::Livez => Outcome::Response(respond::no_content()),
        Route::Readyz => readyz(gw).into(),
        Route::NotFound => Outcome::Error(Error::new(ErrorKind::RouteNotFound, Operation::Other)),
        // The operator (the metrics token) reads any app's report, outside the apps' quotas.
        Route::Portability if is_operator(gw, &req) => {
            portability::serve(gw, req.query_string(), Reader::Operator).into()
        }
        // Token and quota; the permit is held until the answer is ready.
        _ => match gw.catalog().apps().admit_call(token) {
            Err(turned) => {
                app = turned.app;
                if !turned.delay.is_zero() {
                    actix_rt::time::sleep(turned.delay).await;
                }
                Outcome::Error(turned.error)
            }
            Ok((a, permit)) => {
                app = Some(a.clone());
                // The body's bytes are charged to the memory budgets as they are read, and
                // held until the answer is ready.
                let mut meter = permit.body_meter(&a);
                let outcome = serve(gw, &req, &mut payload, &route, a, &mut meter).await;
                body_refused = meter.refused();
                outcome
            }
        },
    };
    drop(in_progress);
    let resp = match outcome {
        Outcome::Response(r) => r,
        Outcome::Error(e) => error_response(&e, body_refused, payload),
        Outcome::BadParam(name, why) => respond::text(
            StatusCode::BAD_REQUEST,
            &format!("failed to unescape request parameter \"{name}\". Error: {why}"),
        ),
    };
    let resp = with_traceparent(resp);
    let elapsed = start.elapsed();
    let catalog = gw.catalog();
    let app_label = app
        .as_deref()
        .unwrap_or_else(|| catalog.apps().default_app());
    metrics::record_http_path(
        app_label,
        req.method().as_str(),
        path_label(&catalog, &route, &segments),
        resp.status().as_u16(),
        elapsed,
    );
    let status = resp.status().as_u16();
    door::log_request(Protocol::Http, route.name(), app_label, &status, elapsed);
    resp
}

/// Names Mecha's span of the request in the answer's `traceparent` (traces exported).
fn with_traceparent(mut resp: HttpResponse) -> HttpResponse {
    use actix_web::http::header::{HeaderName, HeaderValue};
    if let Some(tp) = trace::current_traceparent()
        && let Ok(v) = HeaderValue::from_str(&tp)
    {
        resp.headers_mut()
            .insert(HeaderName::from_static(trace::TRACEPARENT), v);
    }
    resp
}

/// Whether the request carries the operator's metrics token.
fn is_operator(gw: &Gateway, req: &HttpRequest) -> bool {
    let token = portability::operator_token(req);
    gw.catalog().apps().is_operator_token(token)
}

/// The answer to a failed request, logged by its summary (never the key, value or request
/// detail: only code, operation and store). When the body was not read to its end, the
/// connection closes after the answer instead of being held for a body that may never end:
/// actix-http closes when the payload is still unread (not dropped) as the response ends,
/// while a dropped payload would drain a chunked body for as long as the client keeps it
/// open, so the response body keeps the payload until it is written.
fn error_response(e: &Error, body_refused: bool, payload: web::Payload) -> HttpResponse {
    door::log_failure(Protocol::Http, e);
    let mut resp = respond::error(e);
    let unread = body_refused
        || matches!(
            e.kind(),
            ErrorKind::BodyTooLarge { .. } | ErrorKind::BodyTimeout { .. } | ErrorKind::BodyRead
        );
    if unread {
        resp.head_mut()
            .set_connection_type(actix_web::http::ConnectionType::Close);
        resp = resp
            .map_body(|_, body| HoldPayload {
                body,
                _payload: payload,
            })
            .map_into_boxed_body();
    }
    resp
}

/// The metrics `path` of a request: a configured store's state path, a route template, or
/// `_unknown` (never the raw path, so requests cannot create series at will).
fn path_label<'c>(
    catalog: &'c Catalog,
    route: &Route<'_>,
    segments: &[&str],
) -> metrics::HttpPath<'c> {
    use metrics::HttpPath::{Fixed, State};
    let store = match *route {
        Route::Save(s)
        | Route::Get(s, _)
        | Route::Delete(s, _)
        | Route::BulkGet(s)
        | Route::Transaction(s)
        | Route::Query(s) => s,
        Route::Healthz => return Fixed("/v1.0/healthz"),
        Route::HealthzOutbound => return Fixed("/v1.0/healthz/outbound"),
        Route::Livez => return Fixed("/livez"),
        Route::Readyz => return Fixed("/readyz"),
        Route::GetMetadata => return Fixed("/v1.0/metadata"),
        Route::PutMetadata(_) => return Fixed("/v1.0/metadata/{key}"),
        Route::Portability => return Fixed("/v1.0-alpha1/mecha/portability"),
        Route::NotFound => return Fixed(metrics::UNKNOWN),
    };
    let name = if store.contains(['%', '+']) {
        query_unescape(store).ok().map(std::borrow::Cow::Owned)
    } else {
        Some(std::borrow::Cow::Borrowed(store))
    };
    let version = if segments.first() == Some(&"v1.0-alpha1") {
        "v1.0-alpha1"
    } else {
        "v1.0"
    };
    match name.and_then(|n| catalog.store_named(&n)) {
        Some(info) => State {
            version,
            store: &info.name,
        },
        None => Fixed(metrics::UNKNOWN),
    }
}

/// A response body that keeps the request payload alive until the body is written.
struct HoldPayload {
    body: actix_web::body::BoxBody,
    _payload: web::Payload,
}

impl actix_web::body::MessageBody for HoldPayload {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> actix_web::body::BodySize {
        self.body.size()
    }

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Bytes, Self::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_next(cx)
    }
}

fn unescape(name: &'static str, raw: &str) -> Result<String, Outcome> {
    query_unescape(raw).map_err(|e| Outcome::BadParam(name, e))
}

/// The store a state route names, unescaped: the catalog's shared name when a store has it
/// (nothing is copied for a configured store named without escapes), else the caller's text.
fn store_name(catalog: &Catalog, raw: &str) -> Result<StoreName, Outcome> {
    let unescaped = if raw.contains(['%', '+']) {
        std::borrow::Cow::Owned(unescape("storeName", raw)?)
    } else {
        // Nothing to unescape: `query_unescape` would return the same text.
        std::borrow::Cow::Borrowed(raw)
    };
    Ok(match catalog.shared_name(&unescaped) {
        Some(shared) => StoreName::Shared(shared),
        None => StoreName::Given(unescaped.into_owned()),
    })
}

impl From<Error> for Outcome {
    fn from(e: Error) -> Self {
        Outcome::Error(e)
    }
}

/// What a state route hands the pipeline: the store as the caller named it and the
/// operation's request (or why it could not be read: the pipeline reports that in daprd's
/// order, after the store lookup and the operation's capability check).
type StateInput<O> = (StoreName, Result<<O as StateOp>::Request, Error>);

/// Where a route's body comes from and what it may cost.
struct BodySource<'a> {
    req: &'a HttpRequest,
    payload: &'a mut web::Payload,
    limits: &'a Limits,
    meter: &'a mut BodyMeter,
}

impl BodySource<'_> {
    /// The whole body, within `limits.maxBodySize` and `limits.bodyTimeout`.
    async fn read(&mut self, op: Operation) -> Result<Bytes, Error> {
        self.read_within(op, self.limits.max_body_size).await
    }

    async fn read_within(&mut self, op: Operation, limit: usize) -> Result<Bytes, Error> {
        let wait = self.limits.body_timeout;
        read_body(self.req, self.payload, limit, wait, op, self.meter).await
    }

    /// The body read, its item counts checked by `items` before parsing, then parsed.
    async fn parsed<T: Send + 'static>(
        &mut self,
        op: Operation,
        items: impl FnOnce(&body::Shape) -> Result<(), Error> + Send + 'static,
        parse: impl FnOnce(&[u8]) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let bytes = self.read(op).await?;
        parse_body(bytes, self.limits, op, items, parse).await
    }
}

async fn serve(
    gw: &Gateway,
    req: &HttpRequest,
    payload: &mut web::Payload,
    route: &Route<'_>,
    app: AppId,
    meter: &mut BodyMeter,
) -> Outcome {
    match serve_route(gw, req, payload, route, app, meter).await {
        Ok(resp) => Outcome::Response(resp),
        Err(outcome) => outcome,
    }
}

/// Every route behind authentication and quota: translate the wire request, run it through
/// the gateway, render the answer.
async fn serve_route(
    gw: &Gateway,
    req: &HttpRequest,
    payload: &mut web::Payload,
    route: &Route<'_>,
    app: AppId,
    meter: &mut BodyMeter,
) -> Result<HttpResponse, Outcome> {
    let q = Query::parse(req.query_string());
    let catalog = gw.catalog();
    let limits = catalog.limits.clone();
    let mut body = BodySource {
        req,
        payload,
        limits: &limits,
        meter,
    };
    match *route {
        Route::Save(store) => {
            let input = save_input(&catalog, store, &q, &mut body).await?;
            call::<Save>(gw, app, input, q.metadata, |()| respond::no_content()).await
        }
        Route::Get(store, key) => {
            let input = get_input(&catalog, store, key, &q)?;
            call::<Get>(gw, app, input, q.metadata, render_entry).await
        }
        Route::Delete(store, key) => {
            let input = delete_input(&catalog, store, key, &q, req)?;
            call::<Delete>(gw, app, input, q.metadata, |()| respond::no_content()).await
        }
        Route::BulkGet(store) => {
            let input = bulk_get_input(&catalog, store, &q, &mut body).await?;
            let render = |items: Vec<BulkItem>| respond::json_bytes(bulk_json(&items), &[]);
            call::<BulkGet>(gw, app, input, q.metadata, render).await
        }
        Route::Transaction(store) => {
            let input = transaction_input(gw, store, &q, &mut body).await?;
            call::<Transaction>(gw, app, input, q.metadata, |()| respond::no_content()).await
        }
        Route::Query(store) => {
            let input = query_input(&catalog, store, &q, &mut body).await?;
            call::<StateQuery>(gw, app, input, q.metadata, render_query).await
        }
        Route::GetMetadata => Ok(metadata(gw, &app)),
        Route::Portability => Ok(portability::serve(
            gw,
            req.query_string(),
            Reader::App(&app),
        )?),
        Route::PutMetadata(key) => put_metadata(gw, key, &app, &mut body).await,
        Route::Healthz
        | Route::HealthzOutbound
        | Route::Livez
        | Route::Readyz
        | Route::NotFound => {
            unreachable!("handled in dispatch")
        }
    }
}

/// Runs a state operation through the gateway and renders its reply with `render`, with
/// the answer's annotations (receipt, lint findings).
async fn call<O: StateOp>(
    gw: &Gateway,
    app: AppId,
    (store, request): StateInput<O>,
    url_metadata: Metadata,
    render: impl FnOnce(O::Reply) -> HttpResponse,
) -> Result<HttpResponse, Outcome> {
    let answer = gw
        .state::<O>(app, store, Protocol::Http, request, url_metadata)
        .await?;
    let receipt = answer.receipt.header_value();
    let mut resp = render(answer.reply);
    respond::annotate(&mut resp, receipt.as_deref(), &answer.lint);
    Ok(resp)
}

async fn save_input(
    catalog: &Catalog,
    store: &str,
    q: &Query,
    body: &mut BodySource<'_>,
) -> Result<StateInput<Save>, Outcome> {
    let op = Operation::Save;
    let max = body.limits.max_bulk_items;
    let url = q.metadata.clone();
    let request = body
        .parsed(
            op,
            move |s| limits::items(op, "items", s.top_items, max),
            move |b| body::parse_save(b, &url),
        )
        .await;
    Ok((store_name(catalog, store)?, request))
}

fn get_input(
    catalog: &Catalog,
    store: &str,
    key: &str,
    q: &Query,
) -> Result<StateInput<Get>, Outcome> {
    let op = Operation::Get;
    let store = store_name(catalog, store)?;
    let key = unescape("key", key)?;
    let request = q.options(op).map(|o| GetInput {
        key,
        consistency: o.consistency,
        metadata: q.metadata.clone(),
    });
    Ok((store, request))
}

fn delete_input(
    catalog: &Catalog,
    store: &str,
    key: &str,
    q: &Query,
    req: &HttpRequest,
) -> Result<StateInput<Delete>, Outcome> {
    let op = Operation::Delete;
    let store = store_name(catalog, store)?;
    let key = unescape("key", key)?;
    let etag = req
        .headers()
        .get("if-match")
        // Kept even when it is not visible ASCII: the gateway refuses such an ETag (400)
        // instead of deleting without a check.
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let request = q.options(op).map(|options| DeleteRequest {
        key,
        etag,
        options,
        metadata: q.metadata.clone(),
    });
    Ok((store, request))
}

async fn bulk_get_input(
    catalog: &Catalog,
    store: &str,
    q: &Query,
    body: &mut BodySource<'_>,
) -> Result<StateInput<BulkGet>, Outcome> {
    let op = Operation::BulkGet;
    let max = body.limits.max_bulk_items;
    let url = q.metadata.clone();
    let request = body
        .parsed(
            op,
            move |s| limits::items(op, "keys", s.field_items, max),
            move |b| body::parse_bulk(b, &url),
        )
        .await
        .map(|b| BulkGetInput {
            keys: b.keys,
            parallelism: b.parallelism,
            metadata: b.metadata,
        });
    Ok((store_name(catalog, store)?, request))
}

async fn transaction_input(
    gw: &Gateway,
    store: &str,
    q: &Query,
    body: &mut BodySource<'_>,
) -> Result<StateInput<Transaction>, Outcome> {
    let op = Operation::Transaction;
    let store = store_name(&gw.catalog(), store)?;
    // Counted before parsing, against the store's own limit when it has one.
    let (max, name) = gw
        .catalog()
        .store_named(&store)
        .map_or((body.limits.max_transaction_ops, store.to_string()), |s| {
            (s.max_transaction_ops, s.name.clone())
        });
    let url = q.metadata.clone();
    let request = body
        .parsed(
            op,
            move |s| limits::transaction_ops(op, s.field_items, max, &name),
            move |b| body::parse_transaction(b, &url),
        )
        .await;
    Ok((store, request))
}

async fn query_input(
    catalog: &Catalog,
    store: &str,
    q: &Query,
    body: &mut BodySource<'_>,
) -> Result<StateInput<StateQuery>, Outcome> {
    let op = Operation::Query;
    let request = body
        .read(op)
        .await
        .and_then(|b| {
            String::from_utf8(b.to_vec())
                .map_err(|_| Error::new(ErrorKind::BodyRead, op).detail("the body is not UTF-8"))
        })
        .map(|query| QueryInput {
            query,
            metadata: q.metadata.clone(),
        });
    Ok((store_name(catalog, store)?, request))
}

async fn put_metadata(
    gw: &Gateway,
    key: &str,
    app: &AppId,
    body: &mut BodySource<'_>,
) -> Result<HttpResponse, Outcome> {
    let key = unescape("key", key)?;
    // No value can be larger than the app's whole metadata allowance.
    let limit = body
        .limits
        .max_body_size
        .min(gw.catalog().apps().max_extended_value());
    let value = body.read_within(Operation::Other, limit).await?;
    gw.catalog()
        .apps()
        .set_extended(app, &key, &String::from_utf8_lossy(&value))?;
    Ok(respond::no_content())
}

/// A GetState reply as daprd renders it: the value with its ETag and metadata as headers,
/// or 204 when the key is missing.
fn render_entry(entry: Option<StateEntry>) -> HttpResponse {
    let Some(entry) = entry else {
        return respond::no_content();
    };
    let mut resp = respond::json_bytes(entry.data, &[]);
    let headers = resp.headers_mut();
    // The ETag string becomes the header value without a copy (same validation as
    // `HeaderValue::from_str`: an ETag a header cannot carry is left out).
    if let Some(etag) = entry
        .etag
        .and_then(|e| HeaderValue::from_maybe_shared(Bytes::from(e)).ok())
    {
        headers.insert(actix_web::http::header::ETAG, etag);
    }
    for (k, v) in &entry.metadata {
        let name = HeaderName::try_from(format!("metadata.{}", k.to_ascii_lowercase()));
        if let (Ok(n), Ok(v)) = (name, HeaderValue::from_str(v)) {
            headers.insert(n, v);
        }
    }
    resp
}

/// A query's reply: 204 when nothing matched.
fn render_query(resp: QueryResponse) -> HttpResponse {
    if resp.results.is_empty() {
        return respond::no_content();
    }
    respond::json_bytes(query_json(&resp), &[])
}

/// Reads the whole body, failing fast (413) once it passes `limit` (checked on every chunk,
/// so a chunked body is bounded too), and (408) when it has not arrived within
/// `limits.bodyTimeout` (a trickled body, or a chunk size that is never filled).
///
/// Bytes are charged to `meter` (the app's and the global body budgets) before they are
/// buffered: a declared `Content-Length` whole before the first read, a chunked body in
/// steps of at least [`CHARGE_STEP`]. No room within `limits.bodyMemoryWait`: 429.
async fn read_body(
    req: &HttpRequest,
    payload: &mut web::Payload,
    limit: usize,
    body_timeout: std::time::Duration,
    op: Operation,
    meter: &mut BodyMeter,
) -> Result<Bytes, Error> {
    let too_large = || Error::new(ErrorKind::BodyTooLarge { limit }, op);
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let read = async {
        if let Some(n) = declared {
            meter.reserve(n, op).await?;
        }
        let mut buf = BytesMut::with_capacity(declared.unwrap_or(0));
        while let Some(chunk) = payload.next().await {
            let chunk =
                chunk.map_err(|e| Error::new(ErrorKind::BodyRead, op).detail(e.to_string()))?;
            let total = buf.len() + chunk.len();
            if total > limit {
                return Err(too_large());
            }
            if total > meter.charged() {
                meter
                    .reserve(total.max(buf.len() + CHARGE_STEP).min(limit), op)
                    .await?;
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf.freeze())
    };
    match tokio::time::timeout(body_timeout, read).await {
        Ok(r) => r,
        Err(_) => Err(Error::new(
            ErrorKind::BodyTimeout {
                limit: body_timeout,
            },
            op,
        )),
    }
}

/// The smallest step a chunked body's charge grows by.
const CHARGE_STEP: usize = 64 * 1024;

/// The connection of a request, as registered by the HTTP listener's tracker (set per
/// connection by `on_connect`, see `crate::app`).
pub struct ConnSlot(pub std::rc::Rc<ConnHandle>);

/// Checks the body's shape (depth, item count via `items`) and parses it with `parse`: on
/// this thread when it is small, else on a bounded pool of blocking threads so a long
/// parse never stalls the other requests of this worker.
async fn parse_body<T: Send + 'static>(
    body: Bytes,
    limits: &Limits,
    op: Operation,
    items: impl FnOnce(&body::Shape) -> Result<(), Error> + Send + 'static,
    parse: impl FnOnce(&[u8]) -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    let max_depth = limits.max_json_depth;
    let len = body.len();
    let work = move || {
        let shape = body::shape(&body, max_depth, op)?;
        items(&shape)?;
        parse(&body)
    };
    if len <= limits.blocking_parse_threshold {
        return work();
    }
    let _permit = crate::gateway::parse_permits()
        .acquire()
        .await
        .map_err(|e| Error::new(ErrorKind::BodyRead, op).detail(e.to_string()))?;
    web::block(work)
        .await
        .map_err(|e| Error::new(ErrorKind::BodyRead, op).detail(e.to_string()))?
}

/// Metadata in a stable (sorted) order, as the JSON bodies show it.
type SortedMetadata<'a> = std::collections::BTreeMap<&'a String, &'a String>;

/// One item of a bulk get's body.
#[derive(serde::Serialize)]
struct BulkItemJson<'a> {
    key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<respond::JsonData<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    etag: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<SortedMetadata<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

fn bulk_json(items: &[BulkItem]) -> Vec<u8> {
    let items: Vec<BulkItemJson<'_>> = items
        .iter()
        .map(|item| {
            let mut j = BulkItemJson {
                key: &item.key,
                data: None,
                etag: None,
                metadata: None,
                error: None,
            };
            match &item.result {
                Ok(Some(entry)) => {
                    j.data = Some(respond::JsonData(&entry.data));
                    j.etag = entry.etag.as_deref();
                    j.metadata =
                        (!entry.metadata.is_empty()).then(|| entry.metadata.iter().collect());
                }
                Ok(None) => {}
                Err(e) => j.error = Some(e),
            }
            j
        })
        .collect();
    respond::to_json_line(&items, 64 * items.len() + 2)
}

/// One result of a query's body.
#[derive(serde::Serialize)]
struct QueryItemJson<'a> {
    key: &'a str,
    /// `null` for an empty value.
    data: Option<respond::JsonData<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    etag: Option<&'a str>,
}

/// A query's body.
#[derive(serde::Serialize)]
struct QueryJson<'a> {
    results: Vec<QueryItemJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<SortedMetadata<'a>>,
}

fn query_json(resp: &crate::model::QueryResponse) -> Vec<u8> {
    let body = QueryJson {
        results: resp
            .results
            .iter()
            .map(|item| QueryItemJson {
                key: &item.key,
                data: (!item.data.is_empty()).then_some(respond::JsonData(&item.data)),
                etag: item.etag.as_deref().filter(|e| !e.is_empty()),
            })
            .collect(),
        token: resp.token.as_deref().filter(|t| !t.is_empty()),
        metadata: (!resp.metadata.is_empty()).then(|| resp.metadata.iter().collect()),
    };
    respond::to_json_line(&body, 64 * resp.results.len() + 16)
}

/// Whose health a `/v1.0/healthz` (or `/outbound`) caller sees.
enum HealthView {
    /// An app's view: only the stores in its scope, and why they failed when `detailed`
    /// (a valid token: backend errors can name hosts, users and databases).
    App { app: AppId, detailed: bool },
    /// The process-level health the platform probes (liveness and readiness, no token):
    /// the process serves. No store is named or counted: one tenant's store being down
    /// neither restarts Mecha nor takes it out of service for the other tenants.
    Process,
}

/// `/v1.0/healthz`: with a valid app token, the health of the stores in that app's scope
/// (named, with why); with no token configured, that of the `--app-id` app's stores
/// (counted only: anyone may call); without a valid token when tokens are configured, the
/// process-level health.
fn healthz(gw: &Gateway, q: &Query, token: Option<&str>) -> Result<HttpResponse, Error> {
    let catalog = gw.catalog();
    if let Some(id) = q.appid.as_deref().filter(|id| !id.is_empty())
        && id != catalog.apps().default_app().as_ref()
        && !catalog.apps().requires_token()
    {
        return Err(Error::new(ErrorKind::HealthAppIdMismatch, Operation::Other));
    }
    let view = if !catalog.apps().requires_token() {
        HealthView::App {
            app: catalog.apps().default_app().clone(),
            detailed: false,
        }
    } else {
        match catalog.apps().authenticate(token) {
            Ok(app) => HealthView::App {
                app,
                detailed: true,
            },
            Err(_) => HealthView::Process,
        }
    };
    let HealthView::App { app, detailed } = view else {
        return Ok(respond::no_content());
    };
    let unhealthy = unhealthy_stores(gw, |s| s.visible_to(&app));
    if unhealthy.is_empty() {
        Ok(respond::no_content())
    } else if detailed {
        Err(Error::new(ErrorKind::HealthNotReady, Operation::Other).detail(unhealthy.join(", ")))
    } else {
        Err(Error::new(ErrorKind::HealthNotReady, Operation::Other)
            .detail(format!("{} state store(s) not ready", unhealthy.len())))
    }
}

/// `/readyz`: 204 while every configured store is healthy, else `ERR_HEALTH_NOT_READY`
/// with how many are not (never which: anyone may call it). The platform's readiness
/// probe: a replica whose stores are unreachable stops receiving traffic, and `/livez`
/// keeps it from being restarted for it.
fn readyz(gw: &Gateway) -> Result<HttpResponse, Error> {
    let unhealthy = unhealthy_stores(gw, |_| true);
    if unhealthy.is_empty() {
        Ok(respond::no_content())
    } else {
        Err(Error::new(ErrorKind::HealthNotReady, Operation::Other)
            .detail(format!("{} state store(s) not ready", unhealthy.len())))
    }
}

/// The stores `which` selects that are not ready, each named with why. A store is not
/// ready when its last ping failed (pings run every `healthInterval`) or when its circuit
/// breaker is open (read now, so the change shows at once).
fn unhealthy_stores(
    gw: &Gateway,
    which: impl Fn(&crate::gateway::catalog::StoreInfo) -> bool,
) -> Vec<String> {
    gw.catalog()
        .stores()
        .iter()
        .filter(|s| which(s))
        .filter_map(|s| {
            if s.resilience.breaker_state() == Some(BreakerState::Open) {
                Some(format!("{} (circuit breaker open)", s.name))
            } else if !s.health.is_healthy() {
                Some(format!(
                    "{} ({})",
                    s.name,
                    s.health.last_error().unwrap_or_default()
                ))
            } else {
                None
            }
        })
        .collect()
}

fn metadata(gw: &Gateway, app: &AppId) -> HttpResponse {
    let view = gw.catalog().metadata_view(app, RUNTIME_VERSION);
    let components: Vec<serde_json::Value> = view
        .components
        .iter()
        .map(|s| {
            let mut c = json!({"name": s.name, "type": s.component_type, "version": s.version});
            if !s.capabilities.is_empty() {
                c["capabilities"] = json!(s.capabilities);
            }
            c
        })
        .collect();
    let body = json!({
        "id": view.id,
        "runtimeVersion": view.runtime_version,
        "components": components,
        "extended": view.extended,
    });
    respond::json_bytes(serde_json::to_vec(&body).unwrap_or_default(), &[])
}
