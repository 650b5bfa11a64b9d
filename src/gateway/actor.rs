//! The gateway actor: every state request from both front doors passes through one.
//!
//! One gateway actor runs per serving thread, next to that thread's store shards, so a
//! request never hops threads. Each handler validates what is protocol-independent (keys,
//! limits, TTL), applies the key prefix, calls the store through its handle as a separate
//! task (so the actor never serializes requests), maps store errors, and records metrics.
//! Later: capability negotiation (reject or degrade) and the metadata lint go here.

use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use futures::future::LocalBoxFuture;

use super::catalog::{AppId, Catalog, StoreInfo};
use crate::actors::{StoreError, StoreHandle};
use crate::error::{Error, ErrorKind, Operation};
use crate::keys;
use crate::metrics;
use crate::model::{
    Consistency, DeleteRequest, GetRequest, Metadata, QueryRequest, QueryResponse, SetRequest,
    StateEntry, TransactionOp, TransactionRequest, Ttl,
};

/// Who is calling which store (an index from [`Catalog::resolve`]).
#[derive(Debug, Clone)]
pub struct Target {
    /// The calling app.
    pub app: AppId,
    /// Store index in the catalog.
    pub store: usize,
}

/// GetState: `key` is the user's key.
#[derive(Message)]
#[rtype(result = "Result<Option<StateEntry>, Error>")]
pub struct GetState {
    /// Caller and store.
    pub target: Target,
    /// The user's key.
    pub key: String,
    /// Requested consistency.
    pub consistency: Consistency,
    /// Request metadata.
    pub metadata: Metadata,
}

/// One result of GetBulkState, keyed by the user's key.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkItem {
    /// The user's key.
    pub key: String,
    /// The value, `None` when missing, or this key's error.
    pub result: Result<Option<StateEntry>, String>,
}

/// GetBulkState.
#[derive(Message)]
#[rtype(result = "Result<Vec<BulkItem>, Error>")]
pub struct GetBulkState {
    /// Caller and store.
    pub target: Target,
    /// The user's keys.
    pub keys: Vec<String>,
    /// Requested fan-out (≤ 0: Mecha's default).
    pub parallelism: i32,
    /// Metadata for every key.
    pub metadata: Metadata,
}

/// SaveState: requests carry user keys; `ttl` is filled in here from metadata.
#[derive(Message)]
#[rtype(result = "Result<(), Error>")]
pub struct SaveState {
    /// Caller and store.
    pub target: Target,
    /// The items.
    pub items: Vec<SetRequest>,
}

/// DeleteState (one item) or DeleteBulkState (`bulk`), with user keys.
#[derive(Message)]
#[rtype(result = "Result<(), Error>")]
pub struct DeleteState {
    /// Caller and store.
    pub target: Target,
    /// The items.
    pub items: Vec<DeleteRequest>,
    /// Whether this is gRPC DeleteBulkState (it picks the error code).
    pub bulk: bool,
}

/// ExecuteStateTransaction, with user keys.
#[derive(Message)]
#[rtype(result = "Result<(), Error>")]
pub struct ExecuteTransaction {
    /// Caller and store.
    pub target: Target,
    /// The transaction.
    pub request: TransactionRequest,
}

/// QueryStateAlpha1.
#[derive(Message)]
#[rtype(result = "Result<QueryResponse, Error>")]
pub struct QueryState {
    /// Caller and store.
    pub target: Target,
    /// The JSON query text.
    pub query: String,
    /// Request metadata.
    pub metadata: Metadata,
}

/// The gateway actor of one serving thread.
pub struct GatewayActor {
    catalog: Arc<Catalog>,
    stores: Vec<StoreHandle>,
}

impl GatewayActor {
    /// A gateway over `stores`, index-aligned with the catalog.
    pub fn new(catalog: Arc<Catalog>, stores: Vec<StoreHandle>) -> GatewayActor {
        GatewayActor { catalog, stores }
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

    fn prefixed(&self, info: &StoreInfo, app: &str, key: &str) -> String {
        info.key_prefix.apply(app, &info.name, key)
    }

    fn prepare_set(
        &self,
        t: &Target,
        op: Operation,
        mut r: SetRequest,
    ) -> Result<SetRequest, Error> {
        let info = self.catalog.store(t.store);
        if op == Operation::Save && r.key.is_empty() {
            return Err(Error::new(ErrorKind::EmptyKey, op).store(&info.name));
        }
        self.check_key(info, op, &t.app, &r.key)?;
        r.ttl = Ttl::from_metadata(&r.metadata).map_err(|e| {
            Error::new(ErrorKind::InvalidOption, op)
                .store(&info.name)
                .key(&r.key)
                .detail(e)
        })?;
        if r.etag.as_deref() == Some("") {
            r.etag = None;
        }
        r.key = self.prefixed(info, &t.app, &r.key);
        Ok(r)
    }

    fn prepare_delete(
        &self,
        t: &Target,
        op: Operation,
        mut r: DeleteRequest,
    ) -> Result<DeleteRequest, Error> {
        let info = self.catalog.store(t.store);
        self.check_key(info, op, &t.app, &r.key)?;
        if r.etag.as_deref() == Some("") {
            r.etag = None;
        }
        r.key = self.prefixed(info, &t.app, &r.key);
        Ok(r)
    }

    /// Runs `fut` as the store call of `op`, recording Dapr's component metrics.
    fn timed<T: 'static>(
        &self,
        t: &Target,
        op: Operation,
        fut: impl Future<Output = Result<T, Error>> + 'static,
    ) -> LocalBoxFuture<'static, Result<T, Error>> {
        let app = t.app.clone();
        let catalog = self.catalog.clone();
        let store = t.store;
        Box::pin(async move {
            let start = Instant::now();
            let res = fut.await;
            let name = &catalog.store(store).name;
            metrics::record_store_call(&app, name, op, res.is_ok(), start.elapsed());
            res
        })
    }
}

impl Actor for GatewayActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // The gateway only validates and forwards; store actors bound the real work.
        ctx.set_mailbox_capacity(usize::MAX >> 1);
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

impl Handler<GetState> for GatewayActor {
    type Result = ResponseFuture<Result<Option<StateEntry>, Error>>;

    fn handle(&mut self, msg: GetState, _: &mut Context<Self>) -> Self::Result {
        let op = Operation::Get;
        let info = self.catalog.store(msg.target.store);
        if let Err(e) = self.check_key(info, op, &msg.target.app, &msg.key) {
            return Box::pin(async move { Err(e) });
        }
        let req = GetRequest {
            key: self.prefixed(info, &msg.target.app, &msg.key),
            consistency: msg.consistency,
            metadata: msg.metadata,
        };
        let handle = self.stores[msg.target.store].clone();
        let catalog = self.catalog.clone();
        let store = msg.target.store;
        let user_key = msg.key;
        self.timed(&msg.target, op, async move {
            handle
                .get(req)
                .await
                .map_err(|e| Error::from_store(e, op, &catalog.store(store).name, &user_key))
        })
    }
}

impl Handler<GetBulkState> for GatewayActor {
    type Result = ResponseFuture<Result<Vec<BulkItem>, Error>>;

    fn handle(&mut self, msg: GetBulkState, _: &mut Context<Self>) -> Self::Result {
        let op = Operation::BulkGet;
        let info = self.catalog.store(msg.target.store);
        let checked = self.check_count(op, "keys", msg.keys.len()).and_then(|()| {
            msg.keys
                .iter()
                .try_for_each(|k| self.check_key(info, op, &msg.target.app, k))
        });
        if let Err(e) = checked {
            return Box::pin(async move { Err(e) });
        }
        if msg.keys.is_empty() {
            return Box::pin(async { Ok(Vec::new()) });
        }
        let reqs: Vec<GetRequest> = msg
            .keys
            .iter()
            .map(|k| GetRequest {
                key: self.prefixed(info, &msg.target.app, k),
                consistency: Consistency::Unspecified,
                metadata: msg.metadata.clone(),
            })
            .collect();
        let parallelism = match usize::try_from(msg.parallelism) {
            Ok(p) if p > 0 => p,
            _ => self.catalog.limits.default_bulk_parallelism,
        };
        let handle = self.stores[msg.target.store].clone();
        let name = info.name.clone();
        let user_keys = msg.keys;
        self.timed(&msg.target, op, async move {
            let results = handle
                .bulk_get(reqs, parallelism)
                .await
                .map_err(|e| Error::from_store(e, op, &name, ""))?;
            Ok(user_keys
                .into_iter()
                .zip(results)
                .map(|(key, r)| BulkItem {
                    key,
                    result: r.map_err(|e| e.to_string()),
                })
                .collect())
        })
    }
}

impl Handler<SaveState> for GatewayActor {
    type Result = ResponseFuture<Result<(), Error>>;

    fn handle(&mut self, msg: SaveState, _: &mut Context<Self>) -> Self::Result {
        let op = Operation::Save;
        let prepared: Result<Vec<SetRequest>, Error> = self
            .check_count(op, "items", msg.items.len())
            .and_then(|()| {
                msg.items
                    .into_iter()
                    .map(|r| self.prepare_set(&msg.target, op, r))
                    .collect()
            });
        let mut reqs = match prepared {
            Ok(r) if r.is_empty() => return Box::pin(async { Ok(()) }),
            Ok(r) => r,
            Err(e) => return Box::pin(async move { Err(e) }),
        };
        let handle = self.stores[msg.target.store].clone();
        let name = self.catalog.store(msg.target.store).name.clone();
        self.timed(&msg.target, op, async move {
            if reqs.len() == 1 {
                let req = reqs.pop().expect("one item");
                let key = keys::original_key(&req.key).to_owned();
                return handle
                    .set(req)
                    .await
                    .map_err(|e| Error::from_store(e, op, &name, &key));
            }
            let keys: Vec<String> = reqs.iter().map(|r| r.key.clone()).collect();
            let results = handle
                .bulk_set(reqs)
                .await
                .map_err(|e| Error::from_store(e, op, &name, ""))?;
            fold_bulk(results, &keys, op, &name)
        })
    }
}

impl Handler<DeleteState> for GatewayActor {
    type Result = ResponseFuture<Result<(), Error>>;

    fn handle(&mut self, msg: DeleteState, _: &mut Context<Self>) -> Self::Result {
        let op = if msg.bulk {
            Operation::BulkDelete
        } else {
            Operation::Delete
        };
        let prepared: Result<Vec<DeleteRequest>, Error> = self
            .check_count(op, "keys", msg.items.len())
            .and_then(|()| {
                msg.items
                    .into_iter()
                    .map(|r| self.prepare_delete(&msg.target, op, r))
                    .collect()
            });
        let mut reqs = match prepared {
            Ok(r) if r.is_empty() => return Box::pin(async { Ok(()) }),
            Ok(r) => r,
            Err(e) => return Box::pin(async move { Err(e) }),
        };
        let handle = self.stores[msg.target.store].clone();
        let name = self.catalog.store(msg.target.store).name.clone();
        self.timed(&msg.target, op, async move {
            if reqs.len() == 1 {
                let req = reqs.pop().expect("one item");
                let key = keys::original_key(&req.key).to_owned();
                return handle
                    .delete(req)
                    .await
                    .map_err(|e| Error::from_store(e, op, &name, &key));
            }
            let keys: Vec<String> = reqs.iter().map(|r| r.key.clone()).collect();
            let results = handle
                .bulk_delete(reqs)
                .await
                .map_err(|e| Error::from_store(e, op, &name, ""))?;
            fold_bulk(results, &keys, op, &name)
        })
    }
}

impl Handler<ExecuteTransaction> for GatewayActor {
    type Result = ResponseFuture<Result<(), Error>>;

    fn handle(&mut self, msg: ExecuteTransaction, _: &mut Context<Self>) -> Self::Result {
        let op = Operation::Transaction;
        let info = self.catalog.store(msg.target.store);
        let count = msg.request.operations.len();
        if count > info.max_transaction_ops {
            let e = Error::new(
                ErrorKind::TooManyTransactionOps {
                    count,
                    max: info.max_transaction_ops,
                },
                op,
            )
            .store(&info.name);
            return Box::pin(async move { Err(e) });
        }
        let t = &msg.target;
        let ops: Result<Vec<TransactionOp>, Error> = msg
            .request
            .operations
            .into_iter()
            .map(|o| match o {
                TransactionOp::Upsert(r) => self.prepare_set(t, op, r).map(TransactionOp::Upsert),
                TransactionOp::Delete(r) => {
                    self.prepare_delete(t, op, r).map(TransactionOp::Delete)
                }
            })
            .collect();
        let ops = match ops {
            Ok(o) if o.is_empty() => return Box::pin(async { Ok(()) }),
            Ok(o) => o,
            Err(e) => return Box::pin(async move { Err(e) }),
        };
        let req = TransactionRequest {
            operations: ops,
            metadata: msg.request.metadata,
        };
        let handle = self.stores[t.store].clone();
        let name = info.name.clone();
        self.timed(t, op, async move {
            handle
                .transact(req)
                .await
                .map_err(|e| Error::from_store(e, op, &name, ""))
        })
    }
}

impl Handler<QueryState> for GatewayActor {
    type Result = ResponseFuture<Result<QueryResponse, Error>>;

    fn handle(&mut self, msg: QueryState, _: &mut Context<Self>) -> Self::Result {
        let op = Operation::Query;
        let info = self.catalog.store(msg.target.store);
        let prefix = info.key_prefix.scan_prefix(&msg.target.app, &info.name);
        let req = QueryRequest {
            query: msg.query,
            metadata: msg.metadata,
            key_prefix: prefix.clone(),
        };
        let handle = self.stores[msg.target.store].clone();
        let name = info.name.clone();
        self.timed(&msg.target, op, async move {
            let mut resp = handle
                .query(req)
                .await
                .map_err(|e| Error::from_store(e, op, &name, ""))?;
            for item in &mut resp.results {
                if let Some(k) = item.key.strip_prefix(&prefix) {
                    item.key = k.to_owned();
                }
            }
            Ok(resp)
        })
    }
}
