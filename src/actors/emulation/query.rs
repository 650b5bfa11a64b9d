//! Emulated query (`QUERY_API`) for a store that can list keys but has no query engine.
//!
//! A query lists the calling app's keys (the request's key prefix) page by page, reads
//! their values in batches through the store's bulk get (so an expired item, native or
//! emulated TTL, is never seen), and filters, sorts and pages them with
//! [`crate::capabilities::query_eval`], PostgreSQL's rules. Bounded:
//!
//! * at most `max_scan` keys are examined (`limits.maxQueryScan`); a query that would
//!   examine more fails, naming the limit, before any result is returned;
//! * at most one page (`limit + 1` items) and one batch of values ([`QUERY_BATCH`]) are held
//!   at once, beside one listing of keys ([`KEY_PAGE`]) and the keys already examined (at
//!   most `max_scan`, so a key a listing repeats is read once); a query without a page limit
//!   holds its matches, at most `max_scan`;
//! * a batch of more than 256 KiB of values is decoded and filtered on a blocking thread,
//!   off the serving thread; the scan yields between batches and stops at `actors.requestTimeout`, the deadline its
//!   caller has (the store call would otherwise outlive a caller that timed out).
//!
//! The scan is not a snapshot: a write made while a query runs, or between two pages, may
//! or may not be seen. The page token is the position of the page's last item, so the next
//! page resumes strictly after it whatever was written in between.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use crate::actors::{BulkGetItem, KeyPage, StateStore, StoreError, StoreFactory};
use crate::capabilities::CapabilitySet;
use crate::capabilities::query::Query;
use crate::capabilities::query_eval::{PageBuilder, Position, rank};
use crate::model::{
    DeleteRequest, GetRequest, Metadata, QueryItem, QueryRequest, QueryResponse, SetRequest,
    StateEntry, TransactionRequest,
};

/// Values read per batch.
pub const QUERY_BATCH: usize = 256;
/// Keys listed per listing call (keys only: some stores, JetStream and the in-memory map
/// among them, walk every key for each call, so fewer, larger listings cost less).
pub const KEY_PAGE: usize = 2048;
/// Default `limits.maxQueryScan`.
pub const DEFAULT_MAX_QUERY_SCAN: usize = 10_000;
/// Values of one batch read at once by stores whose bulk get fans out.
const READ_PARALLELISM: usize = 16;
/// A batch holding more value bytes than this is decoded and filtered on a blocking thread.
const BLOCKING_BATCH_BYTES: usize = 256 * 1024;

/// The matching items of a batch, each with its position.
fn rank_all(query: &Query, entries: Vec<(String, StateEntry)>) -> Vec<(Position, QueryItem)> {
    entries
        .into_iter()
        .filter_map(|(key, entry)| {
            let doc: Option<Value> = serde_json::from_slice(&entry.data).ok();
            let at = rank(query, &key, doc.as_ref())?;
            Some((
                at,
                QueryItem {
                    key,
                    data: entry.data,
                    etag: entry.etag,
                },
            ))
        })
        .collect()
}

/// The bounds of one emulated query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryLimits {
    /// Most keys examined (`limits.maxQueryScan`).
    pub max_scan: usize,
    /// Longest a scan runs (`actors.requestTimeout`): the store call outlives a caller that
    /// timed out, so the scan stops itself at the same deadline.
    pub timeout: Duration,
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryLimits {
            max_scan: DEFAULT_MAX_QUERY_SCAN,
            timeout: Duration::from_secs(5),
        }
    }
}

/// A store whose queries Mecha answers by scanning the app's keys.
pub struct QueryEmulation {
    inner: Arc<dyn StateStore>,
    limits: QueryLimits,
}

impl QueryEmulation {
    /// Wraps `inner`, bounding every query by `limits`.
    pub fn new(inner: Arc<dyn StateStore>, limits: QueryLimits) -> QueryEmulation {
        QueryEmulation { inner, limits }
    }

    /// The query, without its time bound.
    async fn scan(&self, req: QueryRequest) -> Result<QueryResponse, StoreError> {
        let bad =
            |e: String| StoreError::InvalidQuery(format!("failed to parse JSON query body: {e}"));
        let query = Arc::new(Query::parse(&req.query).map_err(|e| bad(e.0))?);
        let mut page = PageBuilder::new(&query).map_err(|e| bad(e.0))?;
        // A 16-byte digest per key examined, not the key: at most `maxQueryScan` of them.
        let mut seen: HashSet<u128> = HashSet::new();
        let mut cursor = None;
        loop {
            let listed = self
                .inner
                .list_keys_with_prefix(&req.key_prefix, cursor, KEY_PAGE)
                .await?;
            // A listing may repeat a key (Redis SCAN): each is read and counted once.
            let fresh: Vec<String> = listed
                .keys
                .into_iter()
                .filter(|k| k.starts_with(&req.key_prefix) && seen.insert(digest(k)))
                .collect();
            if seen.len() > self.limits.max_scan {
                return Err(self.too_many());
            }
            let mut fresh = fresh.into_iter().peekable();
            while fresh.peek().is_some() {
                let batch: Vec<String> = fresh.by_ref().take(QUERY_BATCH).collect();
                self.offer_batch(&query, batch, &mut page).await?;
            }
            cursor = listed.next;
            if cursor.is_none() {
                break;
            }
            tokio::task::yield_now().await;
        }
        let done = page.finish();
        Ok(QueryResponse {
            results: done.items,
            token: done.token,
            metadata: Metadata::new(),
        })
    }

    /// Reads one batch of keys and offers the live matching ones to `page`. Decoding and
    /// filtering a large batch runs on a blocking thread, off the serving thread.
    async fn offer_batch(
        &self,
        query: &Arc<Query>,
        keys: Vec<String>,
        page: &mut PageBuilder<'_, QueryItem>,
    ) -> Result<(), StoreError> {
        let reqs = keys
            .iter()
            .map(|k| GetRequest {
                key: k.clone(),
                consistency: Default::default(),
                metadata: Default::default(),
            })
            .collect();
        let read = self.inner.bulk_get(reqs, READ_PARALLELISM).await;
        let mut entries = Vec::with_capacity(keys.len());
        let mut bytes = 0;
        for (key, entry) in keys.into_iter().zip(read) {
            if let Some(entry) = entry? {
                bytes += entry.data.len();
                entries.push((key, entry));
            }
        }
        let ranked = if bytes > BLOCKING_BATCH_BYTES {
            let query = query.clone();
            tokio::task::spawn_blocking(move || rank_all(&query, entries))
                .await
                .map_err(|e| StoreError::Internal(format!("query evaluation failed: {e}")))?
        } else {
            rank_all(query, entries)
        };
        for (at, item) in ranked {
            page.offer_at(at, item);
        }
        Ok(())
    }

    fn too_many(&self) -> StoreError {
        StoreError::InvalidQuery(format!(
            "the query would examine more than {} items, the limit limits.maxQueryScan of \
             Mecha's emulated query on this store; narrow the app's data or use a store with \
             native query (PostgreSQL)",
            self.limits.max_scan
        ))
    }
}

/// The future of a store method as `async_trait` declares it.
type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

// The data calls pass straight through: they hand back the inner store's future (already
// boxed by `async_trait`) instead of an `async fn` here, which would box a second future
// around it on every call.
#[async_trait]
impl StateStore for QueryEmulation {
    fn get<'s, 'f>(
        &'s self,
        req: GetRequest,
    ) -> StoreFuture<'f, Result<Option<StateEntry>, StoreError>>
    where
        's: 'f,
    {
        self.inner.get(req)
    }

    fn set<'s, 'f>(&'s self, req: SetRequest) -> StoreFuture<'f, Result<(), StoreError>>
    where
        's: 'f,
    {
        self.inner.set(req)
    }

    fn delete<'s, 'f>(&'s self, req: DeleteRequest) -> StoreFuture<'f, Result<(), StoreError>>
    where
        's: 'f,
    {
        self.inner.delete(req)
    }

    fn bulk_get<'s, 'f>(
        &'s self,
        reqs: Vec<GetRequest>,
        parallelism: usize,
    ) -> StoreFuture<'f, Vec<BulkGetItem>>
    where
        's: 'f,
    {
        self.inner.bulk_get(reqs, parallelism)
    }

    fn bulk_set<'s, 'f>(
        &'s self,
        reqs: Vec<SetRequest>,
    ) -> StoreFuture<'f, Vec<Result<(), StoreError>>>
    where
        's: 'f,
    {
        self.inner.bulk_set(reqs)
    }

    fn bulk_delete<'s, 'f>(
        &'s self,
        reqs: Vec<DeleteRequest>,
    ) -> StoreFuture<'f, Vec<Result<(), StoreError>>>
    where
        's: 'f,
    {
        self.inner.bulk_delete(reqs)
    }

    fn transact<'s, 'f>(
        &'s self,
        req: TransactionRequest,
    ) -> StoreFuture<'f, Result<(), StoreError>>
    where
        's: 'f,
    {
        self.inner.transact(req)
    }

    async fn query(&self, req: QueryRequest) -> Result<QueryResponse, StoreError> {
        let t = self.limits.timeout;
        tokio::time::timeout(t, self.scan(req))
            .await
            .unwrap_or(Err(StoreError::Timeout(t)))
    }

    async fn list_keys(&self, cursor: Option<String>, limit: usize) -> Result<KeyPage, StoreError> {
        self.inner.list_keys(cursor, limit).await
    }

    async fn list_keys_with_prefix(
        &self,
        prefix: &str,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<KeyPage, StoreError> {
        self.inner
            .list_keys_with_prefix(prefix, cursor, limit)
            .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }

    fn housekeeping_interval(&self) -> Option<Duration> {
        self.inner.housekeeping_interval()
    }

    async fn housekeeping(&self) {
        self.inner.housekeeping().await
    }
}

/// Wraps a factory so every instance it builds answers queries by scanning.
pub struct QueryEmulationFactory {
    inner: Arc<dyn StoreFactory>,
    limits: QueryLimits,
}

impl QueryEmulationFactory {
    /// Wraps `inner`, bounding every query by `limits`.
    pub fn new(inner: Arc<dyn StoreFactory>, limits: QueryLimits) -> QueryEmulationFactory {
        QueryEmulationFactory { inner, limits }
    }
}

impl StoreFactory for QueryEmulationFactory {
    fn create(&self) -> Result<Arc<dyn StateStore>, StoreError> {
        Ok(Arc::new(QueryEmulation::new(
            self.inner.create()?,
            self.limits,
        )))
    }

    fn capabilities(&self) -> CapabilitySet {
        self.inner.capabilities()
    }

    fn max_transaction_ops(&self) -> Option<usize> {
        self.inner.max_transaction_ops()
    }

    fn lists_keys(&self) -> bool {
        self.inner.lists_keys()
    }
}

/// A key's identity for counting it once: the first 16 bytes of its SHA-256 (a collision
/// between two keys of one app is as likely as guessing a 128-bit secret).
fn digest(key: &str) -> u128 {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(key.as_bytes());
    let mut first = [0u8; 16];
    first.copy_from_slice(&d[..16]);
    u128::from_le_bytes(first)
}

#[cfg(test)]
mod tests;
