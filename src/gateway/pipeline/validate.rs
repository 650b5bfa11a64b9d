//! Step 4 (validate): keys, counts, TTLs and ETags checked the same way for both doors,
//! keys prefixed, and the request's shape measured for negotiation.

use crate::capabilities::{Feature, Plan, Shape, Status};
use crate::config::Limits;
use crate::error::{Error, ErrorKind};
use crate::gateway::actor::{PARTITION_KEY, StateRequest};
use crate::gateway::{StoreInfo, limits};
use crate::keys;
use crate::model::{
    Concurrency, Consistency, DeleteRequest, GetRequest, Operation, QueryRequest, SetRequest,
    TTL_IN_SECONDS, TransactionOp, TransactionRequest, Ttl,
};

/// A validated request, keys prefixed, ready for the store.
pub(super) enum Exec {
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

/// Step 5's consequence for the request: what the plan ignores is removed, so the store
/// never sees it.
pub(super) fn apply_plan(plan: &Plan, exec: &mut Exec) {
    match exec {
        Exec::Get(r, _) => {
            if plan.status(Feature::StrongConsistency) == Some(Status::Ignored) {
                r.consistency = Consistency::Eventual;
            }
        }
        Exec::Save(reqs) => reqs.iter_mut().for_each(|r| degrade_set(plan, r)),
        Exec::Delete(reqs) => reqs.iter_mut().for_each(|r| degrade_delete(plan, r)),
        Exec::Transaction(t) => t.operations.iter_mut().for_each(|o| match o {
            TransactionOp::Upsert(r) => degrade_set(plan, r),
            TransactionOp::Delete(r) => degrade_delete(plan, r),
        }),
        Exec::BulkGet(..) | Exec::Query(_) => {}
    }
}

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

fn check_key(
    limits: &Limits,
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
    let max = limits.max_key_length;
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

fn prepare_set(
    limits: &Limits,
    info: &StoreInfo,
    app: &str,
    op: Operation,
    mut r: SetRequest,
) -> Result<SetRequest, Error> {
    if op == Operation::Save && r.key.is_empty() {
        return Err(Error::new(ErrorKind::EmptyKey, op).store(&info.name));
    }
    check_key(limits, info, op, app, &r.key)?;
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
    limits: &Limits,
    info: &StoreInfo,
    app: &str,
    op: Operation,
    mut r: DeleteRequest,
) -> Result<DeleteRequest, Error> {
    check_key(limits, info, op, app, &r.key)?;
    r.etag = check_etag(info, op, &r.key, r.etag.take())?;
    r.key = info.key_prefix.apply(app, &info.name, &r.key);
    Ok(r)
}

/// Step 4: checks keys, counts, TTLs and ETags, applies the key prefix, and measures the
/// request's shape for negotiation; `Ok(None)` is an empty request (nothing to do).
pub(super) fn validate(
    limits: &Limits,
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
            check_key(limits, info, op, app, &key)?;
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
            limits::items(op, "keys", keys.len(), limits.max_bulk_items)?;
            for k in &keys {
                check_key(limits, info, op, app, k)?;
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
                _ => limits.default_bulk_parallelism,
            };
            Exec::BulkGet(reqs, keys, parallelism)
        }
        StateRequest::Save { items } => {
            limits::items(op, "items", items.len(), limits.max_bulk_items)?;
            let reqs = items
                .into_iter()
                .map(|r| prepare_set(limits, info, app, op, r))
                .collect::<Result<Vec<_>, Error>>()?;
            if reqs.is_empty() {
                return Ok(None);
            }
            shape.items = reqs.len();
            reqs.iter().for_each(|r| shape_of_set(&mut shape, r));
            Exec::Save(reqs)
        }
        StateRequest::Delete { items } => {
            limits::items(op, "keys", items.len(), limits.max_bulk_items)?;
            let reqs = items
                .into_iter()
                .map(|r| prepare_delete(limits, info, app, op, r))
                .collect::<Result<Vec<_>, Error>>()?;
            if reqs.is_empty() {
                return Ok(None);
            }
            shape.items = reqs.len();
            reqs.iter().for_each(|r| shape_of_delete(&mut shape, r));
            Exec::Delete(reqs)
        }
        StateRequest::Transaction(request) => {
            limits::transaction_ops(
                op,
                request.operations.len(),
                info.matrix.max_transaction_ops(),
                &info.name,
            )?;
            let ops = request
                .operations
                .into_iter()
                .map(|o| match o {
                    TransactionOp::Upsert(r) => {
                        prepare_set(limits, info, app, op, r).map(TransactionOp::Upsert)
                    }
                    TransactionOp::Delete(r) => {
                        prepare_delete(limits, info, app, op, r).map(TransactionOp::Delete)
                    }
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
