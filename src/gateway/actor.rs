//! The gateway actor: every state request from both front doors passes through one.
//!
//! One gateway actor runs per serving thread, next to that thread's store shards, so a
//! request never hops threads. Every state operation, from either door, is one [`StateCall`]
//! and goes through the same protocol-neutral pipeline:
//!
//! 1. **resolve** the store for the app ([`Catalog::resolve`]);
//! 2. **negotiate the operation** (transactions, queries) against the store's effective
//!    matrix, before the request body is looked at, in daprd's order;
//! 3. **lint** every request-level metadata map ([`crate::capabilities::lint`]) against the
//!    store's declared request keys and its matrix: an invalid value fails the call in every
//!    mode, other findings fail it under `lint: reject`, and under `warn` they travel with
//!    the answer (`mecha-lint`), to the log (rate-limited, keys only) and to the metrics;
//!    Then **validate** keys, limits and TTL, and apply the key prefix;
//! 4. **negotiate the request** ([`negotiate`]): what it needs (ETag, first-write, TTL, bulk,
//!    strong consistency, `partitionKey`) against the matrix, giving a plan of native,
//!    emulated, ignored and rejected steps; a rejected step fails the call with nothing applied;
//! 5. **execute** the plan on the store actor, through its handle, as a separate task (so the
//!    actor never serializes requests): ignored options are removed from the request,
//!    emulated ones are served by Mecha (bulk fan-out in [`crate::actors::StateStore`]'s
//!    defaults, TTL by [`crate::actors::emulation`]);
//! 6. **attach the receipt** of every non-native decision to the answer;
//! 7. **record** Dapr's store-call metrics and Mecha's decision counter.

use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use tracing::Instrument;

use super::catalog::{Catalog, StoreInfo};
use super::live::{Live, Refresh};
use crate::actors::{ActorSettings, StoreActor, StoreError, StoreHandle};
use crate::capabilities::lint::{self, Finding, LintMode, LintOp, LintTarget, Location, Severity};
use crate::capabilities::portability::MetaKeys;
use crate::capabilities::{Feature, Matrix, Plan, Receipt, Shape, Status, needs, negotiate};
use crate::error::{Error, ErrorKind};
use crate::keys;
use crate::metrics;
use crate::model::AppId;
use crate::model::{
    Concurrency, Consistency, DeleteRequest, GetRequest, Metadata, QueryRequest, QueryResponse,
    SetRequest, StateEntry, TTL_EXPIRE_TIME, TTL_IN_SECONDS, TransactionOp, TransactionRequest,
    Ttl,
};
use crate::model::{Operation, Protocol};

/// The request metadata key of Cosmos DB's partition key (no Mecha store has partitions).
pub const PARTITION_KEY: &str = "partitionKey";

/// One result of GetBulkState, keyed by the user's key.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkItem {
    /// The user's key.
    pub key: String,
    /// The value, `None` when missing, or this key's error.
    pub result: Result<Option<StateEntry>, String>,
}

/// A state operation as the front doors hand it over, with user keys.
#[derive(Debug, Clone)]
pub enum StateRequest {
    /// GetState.
    Get {
        /// The user's key.
        key: String,
        /// Requested consistency.
        consistency: Consistency,
        /// Request metadata.
        metadata: Metadata,
    },
    /// GetBulkState.
    BulkGet {
        /// The user's keys.
        keys: Vec<String>,
        /// Requested fan-out (≤ 0: Mecha's default).
        parallelism: i32,
        /// Metadata for every key.
        metadata: Metadata,
    },
    /// SaveState (one or several items); `ttl` is filled in here from metadata.
    Save {
        /// The items.
        items: Vec<SetRequest>,
    },
    /// DeleteState (one item) or gRPC DeleteBulkState.
    Delete {
        /// The items.
        items: Vec<DeleteRequest>,
    },
    /// ExecuteStateTransaction.
    Transaction(TransactionRequest),
    /// QueryStateAlpha1.
    Query {
        /// The JSON query text.
        query: String,
        /// Request metadata.
        metadata: Metadata,
    },
}

/// What a state operation returns.
#[derive(Debug, Clone, PartialEq)]
pub enum StateReply {
    /// GetState: the entry, or `None` when missing.
    Entry(Option<StateEntry>),
    /// GetBulkState.
    Bulk(Vec<BulkItem>),
    /// Writes, deletes and transactions.
    Done,
    /// QueryStateAlpha1.
    Query(QueryResponse),
}

/// A successful answer, its receipt (empty for a fully native call) and the lint findings
/// reported for its request metadata (empty when clean or when the lint mode is `off`).
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The reply.
    pub reply: StateReply,
    /// Every decision that was not native.
    pub receipt: Receipt,
    /// Lint findings reported under `warn` (rendered as `mecha-lint`).
    pub lint: Vec<Finding>,
}

/// One state operation: who calls which store with what. A request the door could not read
/// or parse travels as its error, so the pipeline reports it in daprd's order (after the store
/// lookup and the operation's capability check).
#[derive(Message)]
#[rtype(result = "Result<Answer, Error>")]
pub struct StateCall {
    /// The call's span (app, store, operation; a child of the door's request span): the
    /// pipeline runs inside it, so every log line of the call carries its fields.
    pub span: tracing::Span,
    /// The calling app.
    pub app: AppId,
    /// The store name as the caller wrote it.
    pub store: String,
    /// The operation.
    pub op: Operation,
    /// The front door it came through (for metrics).
    pub protocol: Protocol,
    /// The request, or why the door could not build it.
    pub request: Result<StateRequest, Error>,
    /// Request-level metadata the door merged into the request's maps (HTTP `metadata.*`
    /// query parameters); linted once, at location `request`. Empty on gRPC.
    pub url_metadata: Metadata,
}

/// The gateway actor of one serving thread.
pub struct GatewayActor {
    live: Arc<Live>,
    settings: ActorSettings,
    /// The catalog this gateway's shards belong to (the live one, or the one before it
    /// until the next request or [`Refresh`]).
    catalog: Arc<Catalog>,
    /// This thread's shard of every store, index-aligned with `catalog`.
    stores: Vec<StoreHandle>,
}

impl Actor for GatewayActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // The gateway only validates and forwards; store actors bound the real work.
        ctx.set_mailbox_capacity(usize::MAX >> 1);
        self.live
            .register(ctx.address().downgrade().recipient::<Refresh>());
        // A reload may have been published between `new` and now.
        self.refresh();
    }
}

impl Handler<Refresh> for GatewayActor {
    type Result = ();

    fn handle(&mut self, _: Refresh, _: &mut Context<Self>) {
        self.refresh();
    }
}

/// Starts this thread's shard of `info`.
fn start_shard(info: &StoreInfo, settings: &ActorSettings) -> StoreHandle {
    let addr = StoreActor::start_supervised(
        Arc::from(info.name.as_str()),
        info.factory.clone(),
        info.health.clone(),
        settings.clone(),
        info.claim_primary(),
    );
    StoreHandle::new(
        addr,
        settings.request_timeout,
        settings.mailbox_capacity,
        info.resilience.clone(),
    )
}

/// A validated request, keys prefixed, ready for the store.
enum Exec {
    Get(GetRequest, String),
    BulkGet(Vec<GetRequest>, Vec<String>, usize),
    Save(Vec<SetRequest>),
    Delete(Vec<DeleteRequest>),
    Transaction(TransactionRequest),
    Query(QueryRequest),
}

fn shape_of_set(shape: &mut Shape, r: &SetRequest) {
    shape.etag |= r.etag.is_some();
    shape.first_write |= r.etag.is_none() && r.options.concurrency == Concurrency::FirstWrite;
    shape.ttl |= matches!(r.ttl, Some(Ttl::Seconds(_)));
    shape.strong |= r.options.consistency == Consistency::Strong;
    shape.partition_key |= r.metadata.contains_key(PARTITION_KEY);
}

fn shape_of_delete(shape: &mut Shape, r: &DeleteRequest) {
    shape.etag |= r.etag.is_some();
    shape.strong |= r.options.consistency == Consistency::Strong;
    shape.partition_key |= r.metadata.contains_key(PARTITION_KEY);
}

/// The metadata buckets a request carries, at any level (request, item, transaction).
fn meta_keys(request: &StateRequest) -> MetaKeys {
    let mut keys = MetaKeys::default();
    match request {
        StateRequest::Get { metadata, .. }
        | StateRequest::BulkGet { metadata, .. }
        | StateRequest::Query { metadata, .. } => keys.add_all(metadata),
        StateRequest::Save { items } => items.iter().for_each(|r| keys.add_all(&r.metadata)),
        StateRequest::Delete { items } => items.iter().for_each(|r| keys.add_all(&r.metadata)),
        StateRequest::Transaction(t) => {
            keys.add_all(&t.metadata);
            for o in &t.operations {
                match o {
                    TransactionOp::Upsert(r) => keys.add_all(&r.metadata),
                    TransactionOp::Delete(r) => keys.add_all(&r.metadata),
                }
            }
        }
    }
    keys
}

/// Removes what the plan ignores from a write, so the store never sees it.
fn degrade_set(plan: &Plan, r: &mut SetRequest) {
    if plan.status(Feature::Ttl) == Some(Status::Ignored) {
        r.ttl = None;
        r.metadata.remove(TTL_IN_SECONDS);
    }
    if plan.status(Feature::StrongConsistency) == Some(Status::Ignored) {
        r.options.consistency = Consistency::Eventual;
    }
}

fn degrade_delete(plan: &Plan, r: &mut DeleteRequest) {
    if plan.status(Feature::StrongConsistency) == Some(Status::Ignored) {
        r.options.consistency = Consistency::Eventual;
    }
}

/// The lint operation a map of the request's top level travels with.
/// The longest ETag accepted. Every store's own ETags are far shorter (a number, a UUID, a
/// revision); a longer one can only be a mistake or an attack.
pub const MAX_ETAG_LEN: usize = 256;

/// Checks an ETag as the client gave it (the HTTP `If-Match` header, a body's `etag` field, a
/// gRPC `Etag` message), the same way for both doors: empty means no ETag (Dapr's contract),
/// anything else must be 1 to [`MAX_ETAG_LEN`] visible ASCII characters. A value outside that
/// is refused with a 400 / `INVALID_ARGUMENT` naming the field, never dropped: dropping it
/// would turn a guarded write into an unconditional one.
fn check_etag(
    info: &StoreInfo,
    op: Operation,
    key: &str,
    etag: Option<String>,
) -> Result<Option<String>, Error> {
    let Some(etag) = etag.filter(|e| !e.is_empty()) else {
        return Ok(None);
    };
    let problem = if etag.len() > MAX_ETAG_LEN {
        Some(format!(
            "it is {} bytes long, more than {MAX_ETAG_LEN}",
            etag.len()
        ))
    } else {
        etag.bytes()
            .find(|b| !(0x21..=0x7e).contains(b))
            .map(|b| format!("it contains the byte 0x{b:02x}"))
    };
    let Some(problem) = problem else {
        return Ok(Some(etag));
    };
    let detail = format!(
        "the ETag of key {key:?} (the If-Match header or the etag field) must be 1 to \
         {MAX_ETAG_LEN} visible ASCII characters: {problem}"
    );
    // Inside a transaction an invalid ETag is a malformed request (400), not a store failure
    // (daprd's 500): nothing was tried, and the client must fix the request.
    Err(if op == Operation::Transaction {
        Error::malformed(op, format!("invalid etag value: {detail}")).store(&info.name)
    } else {
        Error::new(ErrorKind::EtagInvalid, op)
            .store(&info.name)
            .key(key)
            .detail(format!("invalid etag value: {detail}"))
    })
}

fn lint_op(op: Operation) -> LintOp {
    match op {
        Operation::Get | Operation::BulkGet | Operation::Other => LintOp::Get,
        // HTTP copies URL metadata over every item and operation: it reaches the writes.
        Operation::Save | Operation::Transaction => LintOp::Save,
        Operation::Delete | Operation::BulkDelete => LintOp::Delete,
        Operation::Query => LintOp::Query,
    }
}

/// Step 3: the findings of every metadata map of the request, in request order. A key the
/// door copied from the URL into an inner map is reported once, at `request`. Allocates
/// nothing when every map is empty.
fn lint_request(
    request: &StateRequest,
    url: &Metadata,
    op: Operation,
    target: &LintTarget<'_>,
) -> Vec<Finding> {
    let mut out = lint::lint(url, lint_op(op), Location::Request, target);
    let mut add = |m: &Metadata, lop: LintOp, at: Location| {
        if m.is_empty() {
            return;
        }
        let own = m.iter().filter(|(k, _)| !url.contains_key(k.as_str()));
        out.extend(lint::lint(own, lop, at, target));
    };
    match request {
        StateRequest::Get { metadata, .. } | StateRequest::BulkGet { metadata, .. } => {
            add(metadata, LintOp::Get, Location::Request)
        }
        StateRequest::Query { metadata, .. } => add(metadata, LintOp::Query, Location::Request),
        StateRequest::Save { items } => {
            for (i, r) in items.iter().enumerate() {
                add(&r.metadata, LintOp::Save, Location::Item(i));
            }
        }
        StateRequest::Delete { items } => {
            for (i, r) in items.iter().enumerate() {
                let at = if op == Operation::Delete {
                    Location::Request
                } else {
                    Location::Item(i)
                };
                add(&r.metadata, LintOp::Delete, at);
            }
        }
        StateRequest::Transaction(t) => {
            add(&t.metadata, LintOp::Transaction, Location::Transaction);
            for (i, o) in t.operations.iter().enumerate() {
                match o {
                    TransactionOp::Upsert(r) => {
                        add(&r.metadata, LintOp::Save, Location::Operation(i))
                    }
                    TransactionOp::Delete(r) => {
                        add(&r.metadata, LintOp::Delete, Location::Operation(i))
                    }
                }
            }
        }
    }
    out
}

fn list(findings: &[Finding]) -> String {
    findings
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The error of a rejected step: it names the store, the capability and the policy.
fn rejection(op: Operation, info: &StoreInfo, matrix: &Matrix, feature: Feature) -> Error {
    let cell = matrix.cell(feature);
    let why = format!(
        "capability {} ({}), policy: {}",
        feature.policy_name(),
        feature.capability(),
        cell.policy_text()
    );
    let kind = match feature {
        Feature::Transactions => ErrorKind::TransactionsNotSupported,
        Feature::Query => ErrorKind::QueryNotSupported,
        _ => ErrorKind::CapabilityRejected {
            capability: feature,
            client: feature.rejection_is_client_error(),
        },
    };
    Error::new(kind, op).store(&info.name).detail(why)
}

impl GatewayActor {
    /// A gateway serving the live catalog, with one shard of each of its stores.
    pub fn new(live: Arc<Live>, settings: ActorSettings) -> GatewayActor {
        let catalog = live.catalog();
        let stores = catalog
            .stores()
            .iter()
            .map(|info| start_shard(info, &settings))
            .collect();
        GatewayActor {
            live,
            settings,
            catalog,
            stores,
        }
    }

    /// Adopts the live catalog if it is newer (one atomic load when it is not). Shards of
    /// stores whose backend and resiliency did not change are kept; new and changed stores
    /// get new shards; the handles of removed or replaced shards are dropped here, and their
    /// actors stop once the requests still holding a handle have finished.
    fn refresh(&mut self) {
        if self.live.version() == self.catalog.version() {
            return;
        }
        let catalog = self.live.catalog();
        let stores = catalog
            .stores()
            .iter()
            .map(|info| {
                let kept = self
                    .catalog
                    .index_of(&info.name)
                    .filter(|i| info.same_shards(self.catalog.store(*i)))
                    .and_then(|i| self.stores.get(i).cloned());
                kept.unwrap_or_else(|| start_shard(info, &self.settings))
            })
            .collect();
        self.catalog = catalog;
        self.stores = stores;
    }

    fn check_key(
        &self,
        info: &StoreInfo,
        op: Operation,
        app: &str,
        key: &str,
    ) -> Result<(), Error> {
        if !keys::is_legal(key) {
            return Err(Error::new(ErrorKind::IllegalKey, op)
                .store(&info.name)
                .key(key)
                .app(app));
        }
        let max = self.catalog.limits.max_key_length;
        if key.len() > max {
            return Err(Error::malformed(
                op,
                format!(
                    "the key is {} bytes long, more than the limit of {max} bytes",
                    key.len()
                ),
            ));
        }
        Ok(())
    }

    fn check_count(&self, op: Operation, what: &str, n: usize) -> Result<(), Error> {
        let max = self.catalog.limits.max_bulk_items;
        if n > max {
            return Err(Error::new(ErrorKind::LimitExceeded, op).detail(format!(
                "the request has {n} {what}, more than the limit of {max}"
            )));
        }
        Ok(())
    }

    fn prepare_set(
        &self,
        info: &StoreInfo,
        app: &str,
        op: Operation,
        mut r: SetRequest,
    ) -> Result<SetRequest, Error> {
        if op == Operation::Save && r.key.is_empty() {
            return Err(Error::new(ErrorKind::EmptyKey, op).store(&info.name));
        }
        self.check_key(info, op, app, &r.key)?;
        r.ttl = Ttl::from_metadata(&r.metadata).map_err(|e| {
            Error::new(ErrorKind::InvalidOption, op)
                .store(&info.name)
                .key(&r.key)
                .detail(e)
        })?;
        r.etag = check_etag(info, op, &r.key, r.etag.take())?;
        r.key = info.key_prefix.apply(app, &info.name, &r.key);
        Ok(r)
    }

    fn prepare_delete(
        &self,
        info: &StoreInfo,
        app: &str,
        op: Operation,
        mut r: DeleteRequest,
    ) -> Result<DeleteRequest, Error> {
        self.check_key(info, op, app, &r.key)?;
        r.etag = check_etag(info, op, &r.key, r.etag.take())?;
        r.key = info.key_prefix.apply(app, &info.name, &r.key);
        Ok(r)
    }

    /// Steps 3: validates and prefixes; `Ok(None)` is an empty request (nothing to do).
    fn validate(
        &self,
        info: &StoreInfo,
        app: &str,
        op: Operation,
        request: StateRequest,
    ) -> Result<Option<(Exec, Shape)>, Error> {
        let mut shape = Shape {
            items: 1,
            ..Shape::default()
        };
        let exec = match request {
            StateRequest::Get {
                key,
                consistency,
                metadata,
            } => {
                self.check_key(info, op, app, &key)?;
                shape.strong = consistency == Consistency::Strong;
                shape.partition_key = metadata.contains_key(PARTITION_KEY);
                let req = GetRequest {
                    key: info.key_prefix.apply(app, &info.name, &key),
                    consistency,
                    metadata,
                };
                Exec::Get(req, key)
            }
            StateRequest::BulkGet {
                keys,
                parallelism,
                metadata,
            } => {
                self.check_count(op, "keys", keys.len())?;
                for k in &keys {
                    self.check_key(info, op, app, k)?;
                }
                if keys.is_empty() {
                    return Ok(None);
                }
                shape.items = keys.len();
                shape.partition_key = metadata.contains_key(PARTITION_KEY);
                let reqs = keys
                    .iter()
                    .map(|k| GetRequest {
                        key: info.key_prefix.apply(app, &info.name, k),
                        consistency: Consistency::Unspecified,
                        metadata: metadata.clone(),
                    })
                    .collect();
                let parallelism = match usize::try_from(parallelism) {
                    Ok(p) if p > 0 => p,
                    _ => self.catalog.limits.default_bulk_parallelism,
                };
                Exec::BulkGet(reqs, keys, parallelism)
            }
            StateRequest::Save { items } => {
                self.check_count(op, "items", items.len())?;
                let reqs = items
                    .into_iter()
                    .map(|r| self.prepare_set(info, app, op, r))
                    .collect::<Result<Vec<_>, Error>>()?;
                if reqs.is_empty() {
                    return Ok(None);
                }
                shape.items = reqs.len();
                reqs.iter().for_each(|r| shape_of_set(&mut shape, r));
                Exec::Save(reqs)
            }
            StateRequest::Delete { items } => {
                self.check_count(op, "keys", items.len())?;
                let reqs = items
                    .into_iter()
                    .map(|r| self.prepare_delete(info, app, op, r))
                    .collect::<Result<Vec<_>, Error>>()?;
                if reqs.is_empty() {
                    return Ok(None);
                }
                shape.items = reqs.len();
                reqs.iter().for_each(|r| shape_of_delete(&mut shape, r));
                Exec::Delete(reqs)
            }
            StateRequest::Transaction(request) => {
                let count = request.operations.len();
                let max = info.matrix.max_transaction_ops();
                if count > max {
                    return Err(
                        Error::new(ErrorKind::TooManyTransactionOps { count, max }, op)
                            .store(&info.name),
                    );
                }
                let ops = request
                    .operations
                    .into_iter()
                    .map(|o| match o {
                        TransactionOp::Upsert(r) => self
                            .prepare_set(info, app, op, r)
                            .map(TransactionOp::Upsert),
                        TransactionOp::Delete(r) => self
                            .prepare_delete(info, app, op, r)
                            .map(TransactionOp::Delete),
                    })
                    .collect::<Result<Vec<_>, Error>>()?;
                if ops.is_empty() {
                    return Ok(None);
                }
                shape.items = ops.len();
                shape.partition_key = request.metadata.contains_key(PARTITION_KEY);
                for o in &ops {
                    match o {
                        TransactionOp::Upsert(r) => shape_of_set(&mut shape, r),
                        TransactionOp::Delete(r) => shape_of_delete(&mut shape, r),
                    }
                }
                Exec::Transaction(TransactionRequest {
                    operations: ops,
                    metadata: request.metadata,
                })
            }
            StateRequest::Query { query, metadata } => {
                shape.partition_key = metadata.contains_key(PARTITION_KEY);
                Exec::Query(QueryRequest {
                    query,
                    metadata,
                    key_prefix: info.key_prefix.scan_prefix(app, &info.name),
                })
            }
        };
        Ok(Some((exec, shape)))
    }

    /// Step 3's verdict: every finding is counted and (rate-limited) logged; an invalid value
    /// fails the call in every mode (as the TTL parse always has: 400 with the operation's
    /// error code), other warnings fail it under `reject` (`ERR_METADATA_LINT`), and under
    /// `warn` the reported findings are returned to travel with the answer.
    fn judge(
        &self,
        app: &AppId,
        index: usize,
        info: &StoreInfo,
        op: Operation,
        mode: LintMode,
        findings: Vec<Finding>,
    ) -> Result<Vec<Finding>, Error> {
        if findings.is_empty() {
            return Ok(findings);
        }
        let reported: Vec<Finding> = lint::reported(&findings, mode).cloned().collect();
        for f in &reported {
            metrics::record_lint_finding(app, &info.name, f.code.as_str(), f.severity().as_str());
            if self.catalog.lint_log_due(app, index, f.code) {
                // Keys and codes only: values may be secrets.
                tracing::warn!(
                    app_id = %app, store = %info.name, code = %f.code, key = ?f.key,
                    at = %f.location, suggestion = ?f.suggestion, detail = ?f.detail,
                    mode = mode.as_str(),
                    "request metadata lint finding (at most one line a minute per app, store and code)"
                );
            }
        }
        let errors: Vec<Finding> = reported
            .iter()
            .filter(|f| f.severity() == Severity::Error)
            .cloned()
            .collect();
        if !errors.is_empty() {
            return Err(Error::new(ErrorKind::InvalidOption, op)
                .store(&info.name)
                .app(app.as_ref())
                .detail(list(&errors)));
        }
        if lint::rejects(&reported, mode) {
            return Err(Error::new(ErrorKind::MetadataLint, op)
                .store(&info.name)
                .app(app.as_ref())
                .detail(list(&reported)));
        }
        Ok(reported)
    }

    /// Steps 1 to 4, synchronous: the plan and the prepared request (with the lint findings
    /// to report), or an immediate answer.
    #[allow(clippy::type_complexity)]
    fn prepare(
        &self,
        msg: StateCall,
    ) -> Result<Result<(usize, Exec, Plan, Vec<Finding>), Answer>, Error> {
        let op = msg.op;
        let index = self.catalog.resolve(&msg.app, &msg.store, op)?;
        let info = self.catalog.store(index);
        let (matrix, mode) = info.view(&msg.app);
        let keys = msg.request.as_ref().map(meta_keys).unwrap_or_default();
        let op_needs = needs(op, &Shape::default());
        let op_plan = negotiate(op_needs, matrix);
        if let Some(step) = op_plan.rejected() {
            self.record_plan(&msg.app, info, op, &op_plan);
            self.catalog.usage().record(&msg.app, index, op_needs, keys);
            return Err(rejection(op, info, matrix, step.feature));
        }
        let request = msg.request?;
        let findings = lint_request(&request, &msg.url_metadata, op, &info.lint_target(matrix));
        let findings = self.judge(&msg.app, index, info, op, mode, findings)?;
        let validated = match self.validate(info, &msg.app, op, request) {
            Ok(v) => v,
            Err(e) => return Err(e.with_lint(findings)),
        };
        let Some((mut exec, shape)) = validated else {
            let reply = match op {
                Operation::BulkGet => StateReply::Bulk(Vec::new()),
                _ => StateReply::Done,
            };
            return Ok(Err(Answer {
                reply,
                receipt: Receipt::default(),
                lint: findings,
            }));
        };
        let request_needs = needs(op, &shape);
        let plan = negotiate(request_needs, matrix);
        self.record_plan(&msg.app, info, op, &plan);
        self.catalog
            .usage()
            .record(&msg.app, index, request_needs, keys);
        if let Some(step) = plan.rejected() {
            return Err(rejection(op, info, matrix, step.feature).with_lint(findings));
        }
        match &mut exec {
            Exec::Get(r, _) => {
                if plan.status(Feature::StrongConsistency) == Some(Status::Ignored) {
                    r.consistency = Consistency::Eventual;
                }
            }
            Exec::Save(reqs) => reqs.iter_mut().for_each(|r| degrade_set(&plan, r)),
            Exec::Delete(reqs) => reqs.iter_mut().for_each(|r| degrade_delete(&plan, r)),
            Exec::Transaction(t) => t.operations.iter_mut().for_each(|o| match o {
                TransactionOp::Upsert(r) => degrade_set(&plan, r),
                TransactionOp::Delete(r) => degrade_delete(&plan, r),
            }),
            Exec::BulkGet(..) | Exec::Query(_) => {}
        }
        Ok(Ok((index, exec, plan, findings)))
    }

    fn record_plan(&self, app: &str, info: &StoreInfo, op: Operation, plan: &Plan) {
        if plan.steps.is_empty() {
            metrics::record_capability_decision(
                app,
                &info.name,
                op,
                metrics::BASIC_CAPABILITY,
                Status::Native.as_str(),
            );
        }
        for s in &plan.steps {
            metrics::record_capability_decision(
                app,
                &info.name,
                op,
                s.feature.policy_name(),
                s.cell.status.as_str(),
            );
        }
    }
}

/// Folds per-item results of a bulk write into Dapr's one answer: success; ETag errors only
/// (409, or 400 when one is invalid), with the good items kept; or a store failure (500).
fn fold_bulk(
    results: Vec<Result<(), StoreError>>,
    keys: &[String],
    op: Operation,
    store: &str,
) -> Result<(), Error> {
    let failures: Vec<(&String, StoreError)> = keys
        .iter()
        .zip(results)
        .filter_map(|(k, r)| r.err().map(|e| (k, e)))
        .collect();
    if failures.is_empty() {
        return Ok(());
    }
    let kind = if failures.iter().all(|(_, e)| e.is_etag()) {
        if failures
            .iter()
            .any(|(_, e)| matches!(e, StoreError::EtagInvalid(_)))
        {
            ErrorKind::EtagInvalid
        } else {
            ErrorKind::EtagMismatch
        }
    } else {
        ErrorKind::StoreFailure
    };
    let detail = failures
        .iter()
        .map(|(k, e)| format!("key {}: {e}", keys::original_key(k)))
        .collect::<Vec<_>>()
        .join("; ");
    Err(Error::new(kind, op).store(store).detail(detail))
}

/// Whether an entry carries an expiry set by emulated TTL.
fn has_expiry(e: &Option<StateEntry>) -> bool {
    e.as_ref()
        .is_some_and(|e| e.metadata.contains_key(TTL_EXPIRE_TIME))
}

/// Step 5: runs the prepared request on the store.
async fn execute(
    handle: StoreHandle,
    op: Operation,
    name: &str,
    exec: Exec,
) -> Result<StateReply, Error> {
    match exec {
        Exec::Get(req, user_key) => handle
            .get(req)
            .await
            .map(StateReply::Entry)
            .map_err(|e| Error::from_store(e, op, name, &user_key)),
        Exec::BulkGet(reqs, user_keys, parallelism) => {
            let results = handle
                .bulk_get(reqs, parallelism)
                .await
                .map_err(|e| Error::from_store(e, op, name, ""))?;
            Ok(StateReply::Bulk(
                user_keys
                    .into_iter()
                    .zip(results)
                    .map(|(key, r)| BulkItem {
                        key,
                        result: r.map_err(|e| e.to_string()),
                    })
                    .collect(),
            ))
        }
        Exec::Save(mut reqs) => {
            if reqs.len() == 1 {
                let req = reqs.pop().expect("one item");
                let key = keys::original_key(&req.key).to_owned();
                return handle
                    .set(req)
                    .await
                    .map(|()| StateReply::Done)
                    .map_err(|e| Error::from_store(e, op, name, &key));
            }
            let keys: Vec<String> = reqs.iter().map(|r| r.key.clone()).collect();
            let results = handle
                .bulk_set(reqs)
                .await
                .map_err(|e| Error::from_store(e, op, name, ""))?;
            fold_bulk(results, &keys, op, name).map(|()| StateReply::Done)
        }
        Exec::Delete(mut reqs) => {
            if reqs.len() == 1 {
                let req = reqs.pop().expect("one item");
                let key = keys::original_key(&req.key).to_owned();
                return handle
                    .delete(req)
                    .await
                    .map(|()| StateReply::Done)
                    .map_err(|e| Error::from_store(e, op, name, &key));
            }
            let keys: Vec<String> = reqs.iter().map(|r| r.key.clone()).collect();
            let results = handle
                .bulk_delete(reqs)
                .await
                .map_err(|e| Error::from_store(e, op, name, ""))?;
            fold_bulk(results, &keys, op, name).map(|()| StateReply::Done)
        }
        Exec::Transaction(req) => handle
            .transact(req)
            .await
            .map(|()| StateReply::Done)
            .map_err(|e| Error::from_store(e, op, name, "")),
        Exec::Query(req) => {
            let prefix = req.key_prefix.clone();
            let mut resp = handle
                .query(req)
                .await
                .map_err(|e| Error::from_store(e, op, name, ""))?;
            for item in &mut resp.results {
                if let Some(k) = item.key.strip_prefix(&prefix) {
                    item.key = k.to_owned();
                }
            }
            Ok(StateReply::Query(resp))
        }
    }
}

impl Handler<StateCall> for GatewayActor {
    type Result = ResponseFuture<Result<Answer, Error>>;

    fn handle(&mut self, msg: StateCall, _: &mut Context<Self>) -> Self::Result {
        self.refresh();
        let span = msg.span.clone();
        let start = Instant::now();
        let answer = span.in_scope(|| self.pipeline(msg));
        Box::pin(
            async move {
                let res = answer.await;
                // Never the error's detail here (it may name a key): the door logs its summary.
                tracing::debug!(
                    ok = res.is_ok(),
                    micros = start.elapsed().as_micros() as u64,
                    "state call"
                );
                res
            }
            .instrument(span),
        )
    }
}

impl GatewayActor {
    /// The pipeline of one call: resolve, validate, plan, execute, record.
    fn pipeline(&mut self, msg: StateCall) -> ResponseFuture<Result<Answer, Error>> {
        let op = msg.op;
        let protocol = msg.protocol;
        let app = msg.app.clone();
        let start = Instant::now();
        // The store, for the duration histogram (calls to an unknown store have no series).
        let resolved = self.catalog.resolve(&app, &msg.store, op).ok();
        let (index, exec, plan, findings) = match self.prepare(msg) {
            Err(e) => {
                if let Some(i) = resolved {
                    let rejected = matches!(
                        e.kind(),
                        ErrorKind::TransactionsNotSupported
                            | ErrorKind::QueryNotSupported
                            | ErrorKind::CapabilityRejected { .. }
                    );
                    let name = &self.catalog.store(i).name;
                    metrics::record_request_duration(
                        &app,
                        name,
                        op,
                        protocol,
                        !rejected,
                        start.elapsed(),
                    );
                }
                return Box::pin(async move { Err(e) });
            }
            Ok(Err(answer)) => return Box::pin(async move { Ok(answer) }),
            Ok(Ok(prepared)) => prepared,
        };
        let handle = self.stores[index].clone();
        let catalog = self.catalog.clone();
        Box::pin(async move {
            let info = catalog.store(index);
            let store_start = Instant::now();
            let in_flight = info.metrics.start();
            let res = execute(handle, op, &info.name, exec).await;
            drop(in_flight);
            metrics::record_store_call(&app, &info.name, op, res.is_ok(), store_start.elapsed());
            let mut receipt = plan.receipt();
            let reply = match res {
                Ok(reply) => reply,
                Err(e) => {
                    metrics::record_request_duration(
                        &app,
                        &info.name,
                        op,
                        protocol,
                        receipt.is_empty(),
                        start.elapsed(),
                    );
                    return Err(e.with_receipt(&receipt).with_lint(findings));
                }
            };
            // Reads on a store with emulated TTL: an item with an expiry was served by Mecha.
            if info.matrix.status(Feature::Ttl) == Status::Emulated {
                let emulated = match &reply {
                    StateReply::Entry(e) => has_expiry(e),
                    StateReply::Bulk(items) => items
                        .iter()
                        .any(|i| i.result.as_ref().is_ok_and(has_expiry)),
                    _ => false,
                };
                if emulated {
                    receipt.add(Feature::Ttl, Status::Emulated);
                }
            }
            metrics::record_request_duration(
                &app,
                &info.name,
                op,
                protocol,
                receipt.is_empty(),
                start.elapsed(),
            );
            Ok(Answer {
                reply,
                receipt,
                lint: findings,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(key: &str, metadata: Metadata) -> SetRequest {
        SetRequest {
            key: key.to_owned(),
            value: bytes::Bytes::from_static(b"1"),
            etag: None,
            options: Default::default(),
            ttl: None,
            metadata,
        }
    }

    fn delete(key: &str) -> DeleteRequest {
        DeleteRequest {
            key: key.to_owned(),
            etag: None,
            options: Default::default(),
            metadata: Metadata::new(),
        }
    }

    /// The hot path: a request whose maps are all empty is linted without allocating (the
    /// findings vector keeps capacity 0; iterating and probing empty maps allocates nothing,
    /// and the verdict returns at once on no findings).
    #[test]
    fn empty_metadata_lints_without_allocating() {
        let target = LintTarget::native("state.in-memory");
        let url = Metadata::new();
        let requests = [
            (
                Operation::Get,
                StateRequest::Get {
                    key: "k".into(),
                    consistency: Consistency::Unspecified,
                    metadata: Metadata::new(),
                },
            ),
            (
                Operation::BulkGet,
                StateRequest::BulkGet {
                    keys: vec!["a".into(), "b".into()],
                    parallelism: 0,
                    metadata: Metadata::new(),
                },
            ),
            (
                Operation::Save,
                StateRequest::Save {
                    items: vec![set("a", Metadata::new()), set("b", Metadata::new())],
                },
            ),
            (
                Operation::BulkDelete,
                StateRequest::Delete {
                    items: vec![delete("a"), delete("b")],
                },
            ),
            (
                Operation::Transaction,
                StateRequest::Transaction(TransactionRequest {
                    operations: vec![
                        TransactionOp::Upsert(set("a", Metadata::new())),
                        TransactionOp::Delete(delete("b")),
                    ],
                    metadata: Metadata::new(),
                }),
            ),
            (
                Operation::Query,
                StateRequest::Query {
                    query: "{}".into(),
                    metadata: Metadata::new(),
                },
            ),
        ];
        for (op, request) in &requests {
            let found = lint_request(request, &url, *op, &target);
            assert!(found.is_empty(), "{op:?}");
            assert_eq!(found.capacity(), 0, "{op:?} allocated");
        }
    }

    /// A key copied from the URL into every item is reported once, at `request`; item keys
    /// are reported per item.
    #[test]
    fn url_keys_are_reported_once() {
        let target = LintTarget::native("state.in-memory");
        let url: Metadata = [("ttlInSecond".to_owned(), "5".to_owned())].into();
        let mut item = url.clone();
        item.insert("keyPrefix".into(), "x".into());
        let request = StateRequest::Save {
            items: vec![set("a", url.clone()), set("b", item)],
        };
        let found = lint_request(&request, &url, Operation::Save, &target);
        let got: Vec<String> = found.iter().map(ToString::to_string).collect();
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[0].starts_with("unknown-key 'ttlInSecond' in request"));
        assert!(got[1].starts_with("component-level-key 'keyPrefix' in item[1]"));
    }
}
