//! The backend contract: [`StateStore`] and its error type.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;

use crate::capabilities::{Capability, CapabilitySet};
use crate::model::{
    DeleteRequest, GetRequest, QueryRequest, QueryResponse, SetRequest, StateEntry,
    TransactionRequest,
};

/// A backend failure. Converted to the API's [`crate::error::Error`] at the gateway.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The ETag did not match (or the key is missing, or a first-write found the key).
    #[error("possible etag mismatch. error from state store{}", .0.as_deref().map(|s| format!(": {s}")).unwrap_or_default())]
    EtagMismatch(Option<String>),
    /// The ETag is not one this store could have issued.
    #[error("invalid etag value: {0}")]
    EtagInvalid(String),
    /// The store lacks the capability the operation needs.
    #[error("the state store does not support {0}")]
    Unsupported(Capability),
    /// A query that does not parse or cannot run on this store.
    #[error("{0}")]
    InvalidQuery(String),
    /// A request value the store rejects (for example a bad option).
    #[error("{0}")]
    InvalidRequest(String),
    /// The backend failed while the request may have reached it (a lost connection, an I/O
    /// error mid-call): a write may or may not have been applied.
    #[error("state store unavailable: {0}")]
    Unavailable(String),
    /// The request never left Mecha: no connection could be had (connect refused, pool
    /// exhausted, the store actor stopped). Nothing was applied, so even a write may be
    /// repeated.
    #[error("state store unavailable: {0} (the request was not sent)")]
    NotSent(String),
    /// The store did not answer in time.
    #[error("timed out after {}ms", .0.as_millis())]
    Timeout(Duration),
    /// The store's circuit breaker refused the call; the store was not called.
    #[error("state store unavailable: {0} (the store was not called)")]
    CircuitOpen(crate::resilience::Rejection),
    /// The shard already runs its maximum of requests (`actors.mailboxCapacity`) and none
    /// finished within the request timeout.
    #[error("{0} requests already in flight")]
    Busy(usize),
    /// Anything else.
    #[error("{0}")]
    Internal(String),
}

impl StoreError {
    /// Whether the error says the store is unwell (so it counts against its circuit
    /// breaker). Conflicts, bad input and missing capabilities are the caller's outcome,
    /// not the store's health: one app's ETag conflicts never open the breaker for others.
    pub fn is_store_failure(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable(_)
                | StoreError::NotSent(_)
                | StoreError::Timeout(_)
                | StoreError::Internal(_)
        )
    }

    /// Whether the request certainly did not reach the store, so repeating it cannot apply
    /// anything twice. The retry decision for writes rests on this, never on a message.
    pub fn not_sent(&self) -> bool {
        matches!(
            self,
            StoreError::NotSent(_) | StoreError::CircuitOpen(_) | StoreError::Busy(_)
        )
    }

    /// The same failure, known not to have reached the store (met while connecting, before
    /// any command was written): an unavailable store becomes [`StoreError::NotSent`];
    /// timeouts stay timeouts (the client sees which limit fired) and answers stay answers.
    pub fn before_sending(self) -> StoreError {
        match self {
            StoreError::Unavailable(m) => StoreError::NotSent(m),
            other => other,
        }
    }

    /// Whether this is an ETag error (mismatch or invalid).
    pub fn is_etag(&self) -> bool {
        matches!(
            self,
            StoreError::EtagMismatch(_) | StoreError::EtagInvalid(_)
        )
    }
}

/// One result of a bulk get, in request order.
pub type BulkGetItem = Result<Option<StateEntry>, StoreError>;

/// What a state store does. Keys arrive already prefixed and validated; options, TTL and
/// ETags arrive parsed. Atomicity of ETag checks and transactions is the backend's job:
/// the actor runs many calls concurrently.
///
/// Optional operations have defaults: bulk operations fan out over the single ones with
/// bounded parallelism, and transactions and queries answer [`StoreError::Unsupported`].
#[async_trait]
pub trait StateStore: Send + Sync + 'static {
    /// Reads one key; `Ok(None)` when it is missing or expired.
    async fn get(&self, req: GetRequest) -> Result<Option<StateEntry>, StoreError>;

    /// Writes one key.
    async fn set(&self, req: SetRequest) -> Result<(), StoreError>;

    /// Deletes one key (a missing key is not an error unless an ETag was given).
    async fn delete(&self, req: DeleteRequest) -> Result<(), StoreError>;

    /// Reads several keys; one result per request, in order. `parallelism` bounds the
    /// fan-out of the default implementation.
    async fn bulk_get(&self, reqs: Vec<GetRequest>, parallelism: usize) -> Vec<BulkGetItem> {
        futures::stream::iter(reqs)
            .map(|r| self.get(r))
            .buffered(parallelism.max(1))
            .collect()
            .await
    }

    /// Writes several keys, not atomically: one result per request, in order.
    async fn bulk_set(&self, reqs: Vec<SetRequest>) -> Vec<Result<(), StoreError>> {
        futures::stream::iter(reqs)
            .map(|r| self.set(r))
            .buffered(DEFAULT_FANOUT)
            .collect()
            .await
    }

    /// Deletes several keys, not atomically: one result per request, in order.
    async fn bulk_delete(&self, reqs: Vec<DeleteRequest>) -> Vec<Result<(), StoreError>> {
        futures::stream::iter(reqs)
            .map(|r| self.delete(r))
            .buffered(DEFAULT_FANOUT)
            .collect()
            .await
    }

    /// Runs every operation or none.
    async fn transact(&self, _req: TransactionRequest) -> Result<(), StoreError> {
        Err(StoreError::Unsupported(Capability::Transactional))
    }

    /// Runs a state query.
    async fn query(&self, _req: QueryRequest) -> Result<QueryResponse, StoreError> {
        Err(StoreError::Unsupported(Capability::QueryApi))
    }

    /// Lists stored keys (as stored, i.e. prefixed) one page at a time, for Mecha's own
    /// housekeeping such as the sweep of emulated TTL. `cursor` is `None` for the first page;
    /// the answer's `next` is `None` after the last page. A listing need not be a snapshot:
    /// keys written during it may or may not appear. Stores that cannot list answer
    /// [`StoreError::Internal`].
    async fn list_keys(
        &self,
        _cursor: Option<String>,
        _limit: usize,
    ) -> Result<KeyPage, StoreError> {
        Err(StoreError::Internal(
            "this store cannot list its keys".to_owned(),
        ))
    }

    /// Lists the stored keys that start with `prefix` (one app's keys, for the emulated
    /// query), as [`StateStore::list_keys`] does: `cursor` `None` for the first page, the
    /// answer's `next` `None` after the last; a page may hold fewer than `limit` keys (even
    /// none) before the end, and on Redis a few more (`SCAN`'s count is a hint). The default pages through `list_keys` and keeps the matching
    /// keys; stores that can read one prefix only do so.
    async fn list_keys_with_prefix(
        &self,
        prefix: &str,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<KeyPage, StoreError> {
        let mut cursor = cursor;
        let mut keys = Vec::new();
        loop {
            let page = self.list_keys(cursor, limit).await?;
            keys.extend(page.keys.into_iter().filter(|k| k.starts_with(prefix)));
            cursor = page.next;
            if keys.len() >= limit.max(1) || cursor.is_none() {
                return Ok(KeyPage { keys, next: cursor });
            }
        }
    }

    /// Checks the backend is reachable.
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// How often [`StateStore::housekeeping`] should run, if at all.
    fn housekeeping_interval(&self) -> Option<Duration> {
        None
    }

    /// Periodic maintenance (expiry sweeps, cleanup). Runs on one shard only.
    async fn housekeeping(&self) {}
}

/// One page of [`StateStore::list_keys`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPage {
    /// Keys as stored (prefixed).
    pub keys: Vec<String>,
    /// Cursor of the next page; `None` after the last.
    pub next: Option<String>,
}

/// Fan-out used by the default bulk write and delete.
pub const DEFAULT_FANOUT: usize = 16;

/// Builds store instances for one configured component. Called once per shard at start-up
/// and again whenever a supervisor restarts a shard, so it must be cheap and must not block
/// (connect lazily). Instances of one factory share whatever the store shares (the
/// in-memory map, a connection pool).
pub trait StoreFactory: Send + Sync + 'static {
    /// A fresh instance.
    fn create(&self) -> Result<Arc<dyn StateStore>, StoreError>;

    /// What this configured store does natively (may depend on its metadata).
    fn capabilities(&self) -> CapabilitySet;

    /// The store's own maximum number of operations per transaction, if it has one.
    fn max_transaction_ops(&self) -> Option<usize> {
        None
    }

    /// Whether the store's instances implement [`StateStore::list_keys`] and
    /// [`StateStore::list_keys_with_prefix`] (required before Mecha emulates TTL on the
    /// store, for the expiry sweep, or query, to scan an app's keys).
    fn lists_keys(&self) -> bool {
        false
    }
}
