//! Step 4 (validate): keys, counts, TTLs and ETags checked the same way for both doors,
//! keys prefixed, and the request's shape measured for negotiation.

use crate::capabilities::{Feature, Plan, Shape, Status};
use crate::config::Limits;
use crate::error::{Error, ErrorKind};
use crate::gateway::actor::{PARTITION_KEY, StateRequest};
use crate::gateway::{StoreInfo, limits};
use crate::keys;
use crate::model::{
    Concurrency, Consistency, DeleteRequest, GetRequest, Metadata, Operation, QueryRequest,
    SetRequest, TTL_IN_SECONDS, TransactionOp, TransactionRequest, Ttl,
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
    let at = Scope {
        limits,
        info,
        app,
        op,
    };
    match request {
        StateRequest::Get {
            key,
            consistency,
            metadata,
        } => at.get(key, consistency, metadata).map(Some),
        StateRequest::BulkGet {
            keys,
            parallelism,
            metadata,
        } => at.bulk_get(keys, parallelism, metadata),
        StateRequest::Save { items } => at.save(items),
        StateRequest::Delete { items } => at.delete(items),
        StateRequest::Transaction(request) => at.transaction(request),
        StateRequest::Query { query, metadata } => Ok(Some(at.query(query, metadata))),
    }
}

/// Where a request is validated: the limits, the store, the calling app, the operation.
struct Scope<'a> {
    limits: &'a Limits,
    info: &'a StoreInfo,
    app: &'a str,
    op: Operation,
}

/// The shape of a request of `items` items, before its options are looked at.
fn shape_of(items: usize) -> Shape {
    Shape {
        items,
        ..Shape::default()
    }
}

impl Scope<'_> {
    fn prefixed(&self, key: &str) -> String {
        self.info.key_prefix.apply(self.app, &self.info.name, key)
    }

    fn set(&self, r: SetRequest) -> Result<SetRequest, Error> {
        prepare_set(self.limits, self.info, self.app, self.op, r)
    }

    fn del(&self, r: DeleteRequest) -> Result<DeleteRequest, Error> {
        prepare_delete(self.limits, self.info, self.app, self.op, r)
    }

    fn get(
        &self,
        key: String,
        consistency: Consistency,
        metadata: Metadata,
    ) -> Result<(Exec, Shape), Error> {
        check_key(self.limits, self.info, self.op, self.app, &key)?;
        let mut shape = shape_of(1);
        shape.strong = consistency == Consistency::Strong;
        shape.partition_key = metadata.contains_key(PARTITION_KEY);
        let req = GetRequest {
            key: self.prefixed(&key),
            consistency,
            metadata,
        };
        Ok((Exec::Get(req, key), shape))
    }

    fn bulk_get(
        &self,
        keys: Vec<String>,
        parallelism: i32,
        metadata: Metadata,
    ) -> Result<Option<(Exec, Shape)>, Error> {
        limits::items(self.op, "keys", keys.len(), self.limits.max_bulk_items)?;
        for k in &keys {
            check_key(self.limits, self.info, self.op, self.app, k)?;
        }
        if keys.is_empty() {
            return Ok(None);
        }
        let mut shape = shape_of(keys.len());
        shape.partition_key = metadata.contains_key(PARTITION_KEY);
        let reqs = keys
            .iter()
            .map(|k| GetRequest {
                key: self.prefixed(k),
                consistency: Consistency::Unspecified,
                metadata: metadata.clone(),
            })
            .collect();
        let parallelism = match usize::try_from(parallelism) {
            Ok(p) if p > 0 => p,
            _ => self.limits.default_bulk_parallelism,
        };
        Ok(Some((Exec::BulkGet(reqs, keys, parallelism), shape)))
    }

    fn save(&self, items: Vec<SetRequest>) -> Result<Option<(Exec, Shape)>, Error> {
        limits::items(self.op, "items", items.len(), self.limits.max_bulk_items)?;
        let reqs = items
            .into_iter()
            .map(|r| self.set(r))
            .collect::<Result<Vec<_>, Error>>()?;
        if reqs.is_empty() {
            return Ok(None);
        }
        let mut shape = shape_of(reqs.len());
        reqs.iter().for_each(|r| shape_of_set(&mut shape, r));
        Ok(Some((Exec::Save(reqs), shape)))
    }

    fn delete(&self, items: Vec<DeleteRequest>) -> Result<Option<(Exec, Shape)>, Error> {
        limits::items(self.op, "keys", items.len(), self.limits.max_bulk_items)?;
        let reqs = items
            .into_iter()
            .map(|r| self.del(r))
            .collect::<Result<Vec<_>, Error>>()?;
        if reqs.is_empty() {
            return Ok(None);
        }
        let mut shape = shape_of(reqs.len());
        reqs.iter().for_each(|r| shape_of_delete(&mut shape, r));
        Ok(Some((Exec::Delete(reqs), shape)))
    }

    fn transaction(&self, request: TransactionRequest) -> Result<Option<(Exec, Shape)>, Error> {
        let max = self.info.matrix.max_transaction_ops();
        limits::transaction_ops(self.op, request.operations.len(), max, &self.info.name)?;
        let ops = request
            .operations
            .into_iter()
            .map(|o| match o {
                TransactionOp::Upsert(r) => self.set(r).map(TransactionOp::Upsert),
                TransactionOp::Delete(r) => self.del(r).map(TransactionOp::Delete),
            })
            .collect::<Result<Vec<_>, Error>>()?;
        if ops.is_empty() {
            return Ok(None);
        }
        let mut shape = shape_of(ops.len());
        shape.partition_key = request.metadata.contains_key(PARTITION_KEY);
        for o in &ops {
            match o {
                TransactionOp::Upsert(r) => shape_of_set(&mut shape, r),
                TransactionOp::Delete(r) => shape_of_delete(&mut shape, r),
            }
        }
        let exec = Exec::Transaction(TransactionRequest {
            operations: ops,
            metadata: request.metadata,
        });
        Ok(Some((exec, shape)))
    }

    fn query(&self, query: String, metadata: Metadata) -> (Exec, Shape) {
        let mut shape = shape_of(1);
        shape.partition_key = metadata.contains_key(PARTITION_KEY);
        let exec = Exec::Query(QueryRequest {
            query,
            metadata,
            key_prefix: self.info.key_prefix.scan_prefix(self.app, &self.info.name),
        });
        (exec, shape)
    }
}
