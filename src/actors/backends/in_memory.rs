//! `state.in-memory`: a complete store in process memory.
//!
//! One map behind one lock: every ETag check, bulk operation and transaction runs inside a
//! single short critical section, which is what makes them atomic. ETags are a store-wide
//! counter, so a re-created key never matches an old ETag. Expired items are invisible at
//! once and freed by a periodic sweep over an expiry index. All shards of one component
//! share the same data, and a restarted shard finds it intact.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use parking_lot::RwLock;

use super::{ComponentConfig, Descriptor, Field, FieldKind};
use crate::actors::{BulkGetItem, KeyPage, StateStore, StoreError, StoreFactory};
use crate::capabilities::{Capability, CapabilitySet};
use crate::model::{
    Concurrency, DeleteRequest, GetRequest, Metadata, SetRequest, StateEntry, TTL_EXPIRE_TIME,
    TransactionOp, TransactionRequest, format_expire_time,
};

/// The backend's self-description.
pub const DESCRIPTOR: Descriptor = Descriptor {
    component_type: "state.in-memory",
    aliases: &[],
    versions: &["v1"],
    capabilities: CAPABILITIES,
    conditional: CapabilitySet::EMPTY,
    lists_keys: true,
    per_process: true,
    variants: &[],
    metadata: &[Field::new(
        "sweepInterval",
        FieldKind::Duration,
        "how often expired items are freed (default 1s)",
    )],
    // Only the portable keys (`ttlInSeconds`, `contentType`).
    request_keys: &[],
    build,
    locations,
};

const CAPABILITIES: CapabilitySet = CapabilitySet::of(&[
    Capability::Etag,
    Capability::Transactional,
    Capability::Ttl,
    Capability::FirstWrite,
    Capability::BulkNative,
    Capability::StrongConsistency,
]);

fn build(cfg: &ComponentConfig) -> Result<Arc<dyn StoreFactory>, String> {
    let sweep = cfg.duration_or("sweepInterval", Duration::from_secs(1));
    if sweep.is_zero() {
        return Err("sweepInterval must be greater than zero".into());
    }
    Ok(Arc::new(InMemoryFactory {
        store: Arc::new(InMemoryStore::new(Arc::new(SystemClock), sweep)),
    }))
}

/// A source of wall-clock time, injectable so TTL tests need not sleep.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// The real clock.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

struct InMemoryFactory {
    store: Arc<InMemoryStore>,
}

impl StoreFactory for InMemoryFactory {
    fn create(&self) -> Result<Arc<dyn StateStore>, StoreError> {
        Ok(self.store.clone())
    }

    fn capabilities(&self) -> CapabilitySet {
        CAPABILITIES
    }

    fn lists_keys(&self) -> bool {
        true
    }
}

#[derive(Debug, Clone)]
struct Item {
    data: bytes::Bytes,
    version: u64,
    expires_at: Option<SystemTime>,
}

impl Item {
    fn live(&self, now: SystemTime) -> bool {
        self.expires_at.is_none_or(|t| t > now)
    }
}

#[derive(Default)]
struct Inner {
    items: HashMap<String, Item>,
    expiries: BTreeSet<(SystemTime, String)>,
    last_version: u64,
}

impl Inner {
    fn live(&self, key: &str, now: SystemTime) -> Option<&Item> {
        self.items.get(key).filter(|i| i.live(now))
    }

    fn put(&mut self, key: String, data: bytes::Bytes, expires_at: Option<SystemTime>) {
        self.last_version += 1;
        if let Some(t) = expires_at {
            self.expiries.insert((t, key.clone()));
        }
        // The caller has already removed the old item's expiry from the index.
        self.items.insert(
            key,
            Item {
                data,
                version: self.last_version,
                expires_at,
            },
        );
    }
}

/// The in-memory store. Public so tests can drive it with a manual clock.
pub struct InMemoryStore {
    inner: RwLock<Inner>,
    clock: Arc<dyn Clock>,
    sweep_interval: Duration,
}

/// Checks an ETag and first-write against the current live item.
fn check(
    current: Option<&Item>,
    etag: Option<&str>,
    concurrency: Concurrency,
) -> Result<(), StoreError> {
    match etag {
        Some(raw) => {
            let want: u64 = raw
                .parse()
                .map_err(|_| StoreError::EtagInvalid(raw.to_owned()))?;
            match current {
                Some(item) if item.version == want => Ok(()),
                Some(_) => Err(StoreError::EtagMismatch(None)),
                None => Err(StoreError::EtagMismatch(Some(
                    "the key does not exist".into(),
                ))),
            }
        }
        None if concurrency == Concurrency::FirstWrite && current.is_some() => Err(
            StoreError::EtagMismatch(Some("first-write: the key already exists".into())),
        ),
        None => Ok(()),
    }
}

impl InMemoryStore {
    /// An empty store reading time from `clock`.
    pub fn new(clock: Arc<dyn Clock>, sweep_interval: Duration) -> InMemoryStore {
        InMemoryStore {
            inner: RwLock::new(Inner::default()),
            clock,
            sweep_interval,
        }
    }

    /// Number of items held, expired but not yet swept ones included.
    pub fn len(&self) -> usize {
        self.inner.read().items.len()
    }

    /// Whether the store holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Frees expired items; returns how many were removed.
    pub fn sweep(&self) -> usize {
        let now = self.clock.now();
        let mut inner = self.inner.write();
        let mut removed = 0;
        while let Some((t, _)) = inner.expiries.first() {
            if *t > now {
                break;
            }
            let (t, key) = inner.expiries.pop_first().expect("checked non-empty");
            if inner
                .items
                .get(&key)
                .is_some_and(|i| i.expires_at == Some(t))
            {
                inner.items.remove(&key);
                removed += 1;
            }
        }
        removed
    }

    fn entry(item: &Item) -> StateEntry {
        let mut metadata = Metadata::new();
        if let Some(t) = item.expires_at {
            metadata.insert(TTL_EXPIRE_TIME.to_owned(), format_expire_time(t));
        }
        StateEntry {
            data: item.data.clone(),
            etag: Some(item.version.to_string()),
            metadata,
        }
    }

    fn set_locked(inner: &mut Inner, now: SystemTime, req: SetRequest) -> Result<(), StoreError> {
        check(
            inner.live(&req.key, now),
            req.etag.as_deref(),
            req.options.concurrency,
        )?;
        // A write without a TTL clears any earlier one, as Dapr's in-memory and SQL stores do.
        let expires_at = req.ttl.and_then(|t| t.expiry_from(now));
        Self::remove_index(inner, &req.key);
        inner.put(req.key, req.value, expires_at);
        Ok(())
    }

    fn delete_locked(
        inner: &mut Inner,
        now: SystemTime,
        req: &DeleteRequest,
    ) -> Result<(), StoreError> {
        check(
            inner.live(&req.key, now),
            req.etag.as_deref(),
            Concurrency::LastWrite,
        )?;
        Self::remove_index(inner, &req.key);
        inner.items.remove(&req.key);
        Ok(())
    }

    fn remove_index(inner: &mut Inner, key: &str) {
        if let Some(t) = inner.items.get(key).and_then(|i| i.expires_at) {
            inner.expiries.remove(&(t, key.to_owned()));
        }
    }
}

#[async_trait]
impl StateStore for InMemoryStore {
    async fn get(&self, req: GetRequest) -> Result<Option<StateEntry>, StoreError> {
        let now = self.clock.now();
        Ok(self.inner.read().live(&req.key, now).map(Self::entry))
    }

    async fn set(&self, req: SetRequest) -> Result<(), StoreError> {
        let now = self.clock.now();
        Self::set_locked(&mut self.inner.write(), now, req)
    }

    async fn delete(&self, req: DeleteRequest) -> Result<(), StoreError> {
        let now = self.clock.now();
        Self::delete_locked(&mut self.inner.write(), now, &req)
    }

    async fn bulk_get(&self, reqs: Vec<GetRequest>, _parallelism: usize) -> Vec<BulkGetItem> {
        let now = self.clock.now();
        let inner = self.inner.read();
        reqs.iter()
            .map(|r| Ok(inner.live(&r.key, now).map(Self::entry)))
            .collect()
    }

    async fn bulk_set(&self, reqs: Vec<SetRequest>) -> Vec<Result<(), StoreError>> {
        let now = self.clock.now();
        let mut inner = self.inner.write();
        reqs.into_iter()
            .map(|r| Self::set_locked(&mut inner, now, r))
            .collect()
    }

    async fn bulk_delete(&self, reqs: Vec<DeleteRequest>) -> Vec<Result<(), StoreError>> {
        let now = self.clock.now();
        let mut inner = self.inner.write();
        reqs.iter()
            .map(|r| Self::delete_locked(&mut inner, now, r))
            .collect()
    }

    async fn transact(&self, req: TransactionRequest) -> Result<(), StoreError> {
        let now = self.clock.now();
        let mut inner = self.inner.write();
        // Dry run on an overlay so later operations see earlier ones; commit only if every
        // operation (ETag checks included) succeeds.
        let mut overlay: HashMap<&str, Option<Item>> = HashMap::new();
        for op in &req.operations {
            let key = op.key();
            let current = match overlay.get(key) {
                Some(staged) => staged.as_ref(),
                None => inner.live(key, now),
            };
            match op {
                TransactionOp::Upsert(r) => {
                    check(current, r.etag.as_deref(), r.options.concurrency)?;
                    let item = Item {
                        data: r.value.clone(),
                        version: 0,
                        expires_at: r.ttl.and_then(|t| t.expiry_from(now)),
                    };
                    overlay.insert(key, Some(item));
                }
                TransactionOp::Delete(r) => {
                    check(current, r.etag.as_deref(), Concurrency::LastWrite)?;
                    overlay.insert(key, None);
                }
            }
        }
        let staged: Vec<(String, Option<Item>)> = overlay
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        for (key, item) in staged {
            Self::remove_index(&mut inner, &key);
            match item {
                Some(item) => inner.put(key, item.data, item.expires_at),
                None => {
                    inner.items.remove(&key);
                }
            }
        }
        Ok(())
    }

    /// Live keys in byte order after the cursor (the last key of the previous page). Each page
    /// scans the map once under the read lock, keeping only the `limit + 1` smallest keys.
    async fn list_keys(&self, cursor: Option<String>, limit: usize) -> Result<KeyPage, StoreError> {
        self.list_keys_with_prefix("", cursor, limit).await
    }

    /// As [`StateStore::list_keys`], keeping only the keys that start with `prefix`.
    async fn list_keys_with_prefix(
        &self,
        prefix: &str,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<KeyPage, StoreError> {
        let limit = limit.max(1);
        let now = self.clock.now();
        let inner = self.inner.read();
        let mut page: BTreeSet<&str> = BTreeSet::new();
        for (key, item) in &inner.items {
            if !key.starts_with(prefix)
                || cursor.as_deref().is_some_and(|c| key.as_str() <= c)
                || !item.live(now)
            {
                continue;
            }
            page.insert(key);
            if page.len() > limit + 1 {
                page.pop_last();
            }
        }
        let more = page.len() > limit;
        let keys: Vec<String> = page.into_iter().take(limit).map(str::to_owned).collect();
        let next = if more { keys.last().cloned() } else { None };
        Ok(KeyPage { keys, next })
    }

    fn housekeeping_interval(&self) -> Option<Duration> {
        Some(self.sweep_interval)
    }

    async fn housekeeping(&self) {
        let removed = self.sweep();
        if removed > 0 {
            tracing::debug!(removed, "in-memory sweep freed expired items");
        }
    }
}

/// Each in-memory component holds its own data: its only place is itself.
fn locations(cfg: &ComponentConfig) -> Vec<String> {
    vec![format!("state.in-memory:{}", cfg.name)]
}

#[cfg(test)]
mod tests;
