//! The pipeline: every state call, from either door, passes through the same seven steps,
//! each a function below returning `Result<_, Error>`, in this order:
//!
//! 1. **resolve** the store for the app ([`Catalog::resolve`]), once;
//! 2. **negotiate the operation** (transactions, queries) against the store's effective
//!    matrix, before the request body is looked at, in daprd's order;
//! 3. **lint** every request-level metadata map ([`crate::capabilities::lint`]) against the
//!    store's declared request keys and its matrix: an invalid value fails the call in every
//!    mode, other findings fail it under `lint: reject`, and under `warn` they travel with
//!    the answer (`mecha-lint`), to the log (rate-limited, keys only) and to the metrics
//!    ([`lint`]);
//! 4. **validate** keys, limits, TTLs and ETags, and apply the key prefix (the operation's
//!    [`StateOp::validate`]);
//! 5. **plan** ([`negotiate`]): what the request needs (ETag, first-write, TTL, bulk, strong
//!    consistency, `partitionKey`) against the matrix, giving native, emulated, ignored and
//!    rejected steps; a rejected step fails the call with nothing applied, ignored options
//!    are removed from the request;
//! 6. **execute** the plan on the store actor through its handle, as a separate task (so the
//!    gateway actor never serializes requests), emulated steps served by Mecha (bulk fan-out
//!    in [`crate::actors::StateStore`]'s defaults, TTL by [`crate::actors::emulation`])
//!    (the operation's [`StateOp::execute`]);
//! 7. **finish**: the receipt of every non-native decision joins the answer, and the
//!    request's duration is recorded, once, whichever step ended the call ([`finish`]).
//!
//! The steps are generic over the operation ([`StateOp`]): what differs between operations
//! lives in the operation's own file in [`super::ops`]. Steps 1 to 5 run synchronously on the
//! gateway actor; an answer known before the store is needed (an empty bulk) is
//! [`Prepared::Answered`], not an error.

mod lint;
mod portability;

use std::sync::Arc;
use std::time::Instant;

use crate::actors::StoreHandle;
use crate::capabilities::lint::{Finding, LintMode};
use crate::capabilities::portability::MetaKeys;
use crate::capabilities::{Feature, Matrix, Needs, Plan, Receipt, Shape, Status, negotiate};
use crate::error::{Error, ErrorKind};
use crate::gateway::actor::{Answer, StateCall};
use crate::gateway::ops::{Scope, StateOp, Validated};
use crate::gateway::{Catalog, StoreInfo};
use crate::metrics;
use crate::model::{AppId, Operation, Protocol};

/// What every step knows about the call once its store is resolved.
struct Call<'a> {
    catalog: &'a Catalog,
    app: &'a AppId,
    op: Operation,
    index: usize,
    info: &'a StoreInfo,
    /// The app's view of the store's matrix (its portability target applied).
    matrix: &'a Matrix,
    mode: LintMode,
}

/// Where steps 1 to 5 leave a call.
enum Prepared<O: StateOp> {
    /// Work for the store.
    Run(Ready<O>),
    /// The answer is known without the store (an empty bulk request).
    Answered(Answer<O::Reply>),
}

/// A call ready for the store: the validated request and its plan, with the lint findings
/// to report.
struct Ready<O: StateOp> {
    exec: O::Exec,
    plan: Plan,
    findings: Vec<Finding>,
}

/// Step 1: the index of the store the call names, for its app.
fn resolve<O: StateOp>(catalog: &Catalog, msg: &StateCall<O>) -> Result<usize, Error> {
    catalog.resolve(&msg.app, &msg.store, O::OP)
}

/// Steps 2 to 5 for a resolved call.
fn prepare<O: StateOp>(
    catalog: &Catalog,
    index: usize,
    msg: StateCall<O>,
) -> Result<Prepared<O>, Error> {
    let info = catalog.store(index);
    let (matrix, mode) = info.view(&msg.app);
    let call = Call {
        catalog,
        app: &msg.app,
        op: O::OP,
        index,
        info,
        matrix,
        mode,
    };
    let keys = msg
        .request
        .as_ref()
        .map(lint::meta_keys::<O>)
        .unwrap_or_default();
    let keys = negotiate_operation(&call, O::needs(&Shape::default()), keys)?;
    let request = msg.request?;
    let found = lint::lint_request::<O>(&request, &msg.url_metadata, &info.lint_target(matrix));
    let targets = catalog.targets().of_app(call.app);
    let key_gaps =
        targets.map(|t| portability::key_gaps::<O>(t.iter(), &request, &msg.url_metadata, &found));
    let mut findings = lint::judge(catalog, call.app, index, info, call.op, call.mode, found)?;
    let scope = Scope {
        limits: &catalog.limits,
        info,
        app: call.app,
        op: O::OP,
    };
    let (mut exec, shape) = match O::validate(&scope, request) {
        Ok(Validated::Run(exec, shape)) => (exec, shape),
        Ok(Validated::Nothing(reply)) => {
            return Ok(Prepared::Answered(Answer {
                reply,
                receipt: Receipt::default(),
                lint: findings,
            }));
        }
        Err(e) => return Err(e.with_lint(findings)),
    };
    let needs = O::needs(&shape);
    let plan = match plan(&call, needs, keys) {
        Ok(plan) => plan,
        Err(e) => return Err(e.with_lint(findings)),
    };
    if let (Some(targets), Some(mut gaps)) = (targets, key_gaps) {
        let needs = needs.union(O::needs(&Shape::default()));
        gaps.extend(portability::capability_gaps(targets.iter(), needs, matrix));
        let (app, op, mode) = (call.app, call.op, targets.mode);
        match portability::judge(catalog, app, index, info, op, mode, gaps) {
            Ok(gaps) => findings.extend(gaps),
            Err(e) => return Err(e.with_lint(findings)),
        }
    }
    O::degrade(&plan, &mut exec);
    Ok(Prepared::Run(Ready {
        exec,
        plan,
        findings,
    }))
}

/// Step 2: the operation itself (transactions, queries) against the matrix, before the
/// request is looked at. The metadata keys are handed back for step 5's usage record.
fn negotiate_operation(
    call: &Call<'_>,
    op_needs: Needs,
    keys: MetaKeys,
) -> Result<MetaKeys, Error> {
    let op_plan = negotiate(op_needs, call.matrix);
    let Some(step) = op_plan.rejected() else {
        return Ok(keys);
    };
    record_plan(call.app, call.info, call.op, &op_plan);
    call.catalog
        .usage()
        .record(call.app, call.index, call.op, op_needs, keys);
    Err(rejection(call.op, call.info, call.matrix, step.feature))
}

/// Step 5: what the request needs, negotiated against the matrix; recorded (metrics and the
/// portability usage) whether it runs or not.
fn plan(call: &Call<'_>, request_needs: Needs, keys: MetaKeys) -> Result<Plan, Error> {
    let plan = negotiate(request_needs, call.matrix);
    record_plan(call.app, call.info, call.op, &plan);
    call.catalog
        .usage()
        .record(call.app, call.index, call.op, request_needs, keys);
    match plan.rejected() {
        Some(step) => Err(rejection(call.op, call.info, call.matrix, step.feature)),
        None => Ok(plan),
    }
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

fn record_plan(app: &str, info: &StoreInfo, op: Operation, plan: &Plan) {
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

/// Step 6 and the receipt of step 7: runs the plan on the store and builds the answer.
async fn run<O: StateOp>(
    handle: StoreHandle,
    catalog: &Catalog,
    index: usize,
    app: &str,
    ready: Ready<O>,
) -> Result<Answer<O::Reply>, Error> {
    let Ready {
        exec,
        plan,
        findings,
    } = ready;
    let info = catalog.store(index);
    let store_start = Instant::now();
    let in_flight = info.metrics.start();
    let res = O::execute(handle, &info.name, exec).await;
    drop(in_flight);
    metrics::record_store_call(app, &info.name, O::OP, res.is_ok(), store_start.elapsed());
    let mut receipt = plan.receipt();
    let reply = match res {
        Ok(reply) => reply,
        Err(e) => return Err(e.with_receipt(&receipt).with_lint(findings)),
    };
    // Reads on a store with emulated TTL: an item with an expiry was served by Mecha.
    if info.matrix.status(Feature::Ttl) == Status::Emulated && O::served_an_expiry(&reply) {
        receipt.add(Feature::Ttl, Status::Emulated);
    }
    Ok(Answer {
        reply,
        receipt,
        lint: findings,
    })
}

/// Step 7: records the request's duration once per call whose store is known, whichever
/// step ended it. A call counts as native unless a decision was not (its receipt) or a
/// capability was refused.
fn finish<R>(
    catalog: &Catalog,
    index: usize,
    app: &str,
    op: Operation,
    protocol: Protocol,
    start: Instant,
    result: &Result<Answer<R>, Error>,
) {
    let native = match result {
        Ok(answer) => answer.receipt.is_empty(),
        Err(e) => {
            let refused = matches!(
                e.kind(),
                ErrorKind::TransactionsNotSupported
                    | ErrorKind::QueryNotSupported
                    | ErrorKind::CapabilityRejected { .. }
            );
            !refused && e.receipt().is_none()
        }
    };
    let name = &catalog.store(index).name;
    metrics::record_request_duration(app, name, op, protocol, native, start.elapsed());
}

/// The whole pipeline of one call, as the gateway actor runs it: steps 1 to 5 now, on the
/// actor; step 6 and 7 in the returned future.
pub(super) fn start<O: StateOp>(
    catalog: &Arc<Catalog>,
    stores: &[StoreHandle],
    msg: StateCall<O>,
) -> actix::ResponseFuture<Result<Answer<O::Reply>, Error>> {
    let start = Instant::now();
    let (app, op, protocol) = (msg.app.clone(), O::OP, msg.protocol);
    let index = match resolve(catalog, &msg) {
        Ok(index) => index,
        // An unknown store has no duration series.
        Err(e) => return Box::pin(async move { Err(e) }),
    };
    let ready = match prepare(catalog, index, msg) {
        Ok(Prepared::Run(ready)) => ready,
        Ok(Prepared::Answered(answer)) => return Box::pin(async move { Ok(answer) }),
        Err(e) => {
            let result = Err(e);
            finish(catalog, index, &app, op, protocol, start, &result);
            return Box::pin(async move { result });
        }
    };
    let handle = stores[index].clone();
    let catalog = catalog.clone();
    Box::pin(async move {
        let result = run(handle, &catalog, index, &app, ready).await;
        finish(&catalog, index, &app, op, protocol, start, &result);
        result
    })
}
