//! Emulated TTL for a store with compare-and-set (native ETag and first-write) and key listing,
//! but no expiry of its own.
//!
//! Every value is stored inside an envelope carrying its absolute expiry:
//!
//! ```text
//! envelope := "\0mecha-ttl/1 " expiry "\n" value
//! expiry   := Unix time in milliseconds (decimal), or "-" for no expiry
//! ```
//!
//! Stored bytes without the leading `"\0mecha-ttl/1 "` (written before emulation was switched
//! on) read as values without expiry. Rules:
//!
//! * an expired item is never returned (get, bulk get) and counts as absent for ETag and
//!   first-write checks: an ETag on it is a mismatch, and a first-write over it succeeds by
//!   compare-and-set on the expired item's version;
//! * reads of an item with an expiry return `ttlExpireTime`, as stores with native TTL do;
//! * a write without `ttlInSeconds` clears an earlier expiry (as Dapr's SQL and in-memory
//!   stores do), `-1`/`0` too;
//! * a background sweep (the store's housekeeping, on one shard) lists keys page by page and
//!   deletes each expired item *with compare-and-set on the version it read*, so an item
//!   rewritten after the sweep read it is never deleted.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::{BufMut, Bytes, BytesMut};
use parking_lot::Mutex;

use crate::actors::backends::in_memory::{Clock, SystemClock};
use crate::actors::{BulkGetItem, KeyPage, StateStore, StoreError, StoreFactory};
use crate::capabilities::{Capability, CapabilitySet};
use crate::model::{
    Concurrency, DeleteRequest, GetRequest, QueryRequest, QueryResponse, SetRequest, StateEntry,
    StateOptions, TTL_EXPIRE_TIME, TransactionRequest, format_expire_time,
};

/// The first bytes of every enveloped value.
pub const ENVELOPE_MAGIC: &[u8] = b"\0mecha-ttl/1 ";

/// Keys examined per page of the sweep (large: some stores, JetStream among them, scan the
/// whole key space for every page).
const SWEEP_PAGE: usize = 1000;
/// Keys examined per sweep run at most (the next run continues where this one stopped).
const SWEEP_BUDGET: usize = 10_000;
/// How often the sweep runs by default (`actors.ttlSweepInterval`).
pub const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_secs(10);

/// A decoded stored value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Absolute expiry, if any.
    pub expires_at: Option<SystemTime>,
    /// The user's value.
    pub value: Bytes,
}

impl Envelope {
    /// Encodes `value` with `expires_at`.
    pub fn encode(value: &[u8], expires_at: Option<SystemTime>) -> Bytes {
        let expiry = match expires_at {
            Some(t) => t
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis()
                .to_string(),
            None => "-".to_owned(),
        };
        let mut b = BytesMut::with_capacity(ENVELOPE_MAGIC.len() + expiry.len() + 1 + value.len());
        b.put_slice(ENVELOPE_MAGIC);
        b.put_slice(expiry.as_bytes());
        b.put_u8(b'\n');
        b.put_slice(value);
        b.freeze()
    }

    /// Decodes stored bytes; bytes without the magic are a value without expiry.
    pub fn decode(stored: &Bytes) -> Result<Envelope, StoreError> {
        let Some(rest) = stored.strip_prefix(ENVELOPE_MAGIC) else {
            return Ok(Envelope {
                expires_at: None,
                value: stored.clone(),
            });
        };
        let bad = || StoreError::Internal("corrupt emulated-TTL envelope".to_owned());
        let nl = rest.iter().position(|b| *b == b'\n').ok_or_else(bad)?;
        let expiry = std::str::from_utf8(&rest[..nl]).map_err(|_| bad())?;
        let expires_at = match expiry {
            "-" => None,
            ms => Some(UNIX_EPOCH + Duration::from_millis(ms.parse().map_err(|_| bad())?)),
        };
        let start = ENVELOPE_MAGIC.len() + nl + 1;
        Ok(Envelope {
            expires_at,
            value: stored.slice(start..),
        })
    }

    fn live(&self, now: SystemTime) -> bool {
        self.expires_at.is_none_or(|t| t > now)
    }
}

/// A store with emulated TTL over `inner`.
pub struct TtlEmulation {
    inner: Arc<dyn StateStore>,
    clock: Arc<dyn Clock>,
    sweep_interval: Duration,
    sweep_cursor: Mutex<Option<String>>,
}

/// One raw read: the inner entry and its decoded envelope.
struct Raw {
    etag: Option<String>,
    envelope: Envelope,
}

impl TtlEmulation {
    /// Wraps `inner`, reading time from `clock`.
    pub fn new(
        inner: Arc<dyn StateStore>,
        clock: Arc<dyn Clock>,
        sweep_interval: Duration,
    ) -> TtlEmulation {
        TtlEmulation {
            inner,
            clock,
            sweep_interval,
            sweep_cursor: Mutex::new(None),
        }
    }

    async fn read_raw(&self, key: &str) -> Result<Option<Raw>, StoreError> {
        let entry = self
            .inner
            .get(GetRequest {
                key: key.to_owned(),
                consistency: Default::default(),
                metadata: Default::default(),
            })
            .await?;
        entry
            .map(|e| {
                Ok(Raw {
                    envelope: Envelope::decode(&e.data)?,
                    etag: e.etag,
                })
            })
            .transpose()
    }

    fn entry(envelope: Envelope, etag: Option<String>) -> StateEntry {
        let mut metadata = crate::model::Metadata::new();
        if let Some(t) = envelope.expires_at {
            metadata.insert(TTL_EXPIRE_TIME.to_owned(), format_expire_time(t));
        }
        StateEntry {
            data: envelope.value,
            etag,
            metadata,
        }
    }

    fn decode_entry(&self, entry: Option<StateEntry>) -> Result<Option<StateEntry>, StoreError> {
        let now = self.clock.now();
        let Some(e) = entry else { return Ok(None) };
        let env = Envelope::decode(&e.data)?;
        Ok(env.live(now).then(|| Self::entry(env, e.etag)))
    }

    /// Deletes expired items, each by compare-and-set on the version read. Returns how many
    /// were deleted. Examines at most 10 000 keys; the next call continues.
    pub async fn sweep(&self) -> Result<usize, StoreError> {
        let mut cursor = self.sweep_cursor.lock().clone();
        let mut examined = 0;
        let mut deleted = 0;
        loop {
            let page = self.inner.list_keys(cursor.clone(), SWEEP_PAGE).await?;
            for key in &page.keys {
                examined += 1;
                let Some(raw) = self.read_raw(key).await? else {
                    continue;
                };
                if raw.envelope.live(self.clock.now()) || raw.etag.is_none() {
                    continue;
                }
                let del = DeleteRequest {
                    key: key.clone(),
                    etag: raw.etag,
                    options: StateOptions::default(),
                    metadata: Default::default(),
                };
                match self.inner.delete(del).await {
                    Ok(()) => deleted += 1,
                    // Rewritten (or deleted) since we read it: the newer write stays.
                    Err(e) if e.is_etag() => {}
                    Err(e) => return Err(e),
                }
            }
            cursor = page.next;
            if cursor.is_none() || examined >= SWEEP_BUDGET {
                break;
            }
        }
        *self.sweep_cursor.lock() = cursor;
        Ok(deleted)
    }
}

#[async_trait]
impl StateStore for TtlEmulation {
    async fn get(&self, req: GetRequest) -> Result<Option<StateEntry>, StoreError> {
        let entry = self.inner.get(req).await?;
        self.decode_entry(entry)
    }

    async fn bulk_get(&self, reqs: Vec<GetRequest>, parallelism: usize) -> Vec<BulkGetItem> {
        self.inner
            .bulk_get(reqs, parallelism)
            .await
            .into_iter()
            .map(|r| r.and_then(|e| self.decode_entry(e)))
            .collect()
    }

    async fn set(&self, req: SetRequest) -> Result<(), StoreError> {
        let now = self.clock.now();
        let expires_at = req.ttl.and_then(|t| t.expiry_from(now));
        let value = Envelope::encode(&req.value, expires_at);
        let first_write = req.options.concurrency == Concurrency::FirstWrite;
        let mut inner_req = SetRequest {
            value,
            ttl: None,
            ..req
        };
        if let Some(etag) = &inner_req.etag {
            // An ETag on an expired item is a mismatch: the item is absent.
            match self.read_raw(&inner_req.key).await? {
                Some(raw) if raw.envelope.live(now) => {}
                Some(raw) if raw.etag.as_deref() != Some(etag) => {}
                _ => {
                    return Err(StoreError::EtagMismatch(Some(
                        "the key does not exist".to_owned(),
                    )));
                }
            }
            return self.inner.set(inner_req).await;
        }
        if !first_write {
            return self.inner.set(inner_req).await;
        }
        match self.inner.set(inner_req.clone()).await {
            Err(e) if e.is_etag() => {
                // The key exists; if it has expired, replace it by compare-and-set on the
                // expired version (a concurrent writer makes this fail, as it should).
                match self.read_raw(&inner_req.key).await? {
                    Some(raw) if !raw.envelope.live(self.clock.now()) && raw.etag.is_some() => {
                        inner_req.etag = raw.etag;
                        inner_req.options.concurrency = Concurrency::FirstWrite;
                        self.inner.set(inner_req).await
                    }
                    _ => Err(e),
                }
            }
            other => other,
        }
    }

    async fn delete(&self, req: DeleteRequest) -> Result<(), StoreError> {
        if let Some(etag) = &req.etag {
            let now = self.clock.now();
            match self.read_raw(&req.key).await? {
                Some(raw) if raw.envelope.live(now) => {}
                Some(raw) if raw.etag.as_deref() != Some(etag) => {}
                _ => {
                    return Err(StoreError::EtagMismatch(Some(
                        "the key does not exist".to_owned(),
                    )));
                }
            }
        }
        self.inner.delete(req).await
    }

    async fn transact(&self, _req: TransactionRequest) -> Result<(), StoreError> {
        Err(StoreError::Unsupported(Capability::Transactional))
    }

    async fn query(&self, _req: QueryRequest) -> Result<QueryResponse, StoreError> {
        Err(StoreError::Unsupported(Capability::QueryApi))
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
        Some(
            self.inner
                .housekeeping_interval()
                .map_or(self.sweep_interval, |d| d.min(self.sweep_interval)),
        )
    }

    async fn housekeeping(&self) {
        if self.inner.housekeeping_interval().is_some() {
            self.inner.housekeeping().await;
        }
        match self.sweep().await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(deleted = n, "emulated-TTL sweep deleted expired items"),
            Err(e) => tracing::warn!(error = %e, "emulated-TTL sweep failed"),
        }
    }
}

/// Wraps a factory so every instance it builds has emulated TTL.
pub struct TtlEmulationFactory {
    inner: Arc<dyn StoreFactory>,
    clock: Arc<dyn Clock>,
    sweep_interval: Duration,
}

impl TtlEmulationFactory {
    /// Wraps `inner` with the real clock and the default sweep interval.
    pub fn new(inner: Arc<dyn StoreFactory>) -> TtlEmulationFactory {
        TtlEmulationFactory {
            inner,
            clock: Arc::new(SystemClock),
            sweep_interval: DEFAULT_SWEEP_INTERVAL,
        }
    }

    /// The same factory, sweeping every `interval`.
    pub fn sweep_every(self, interval: Duration) -> TtlEmulationFactory {
        TtlEmulationFactory {
            sweep_interval: interval,
            ..self
        }
    }
}

impl StoreFactory for TtlEmulationFactory {
    fn create(&self) -> Result<Arc<dyn StateStore>, StoreError> {
        Ok(Arc::new(TtlEmulation::new(
            self.inner.create()?,
            self.clock.clone(),
            self.sweep_interval,
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

#[cfg(test)]
mod tests;
