//! `state.redis`: Dapr-compatible state on Redis: one node (Redis 4 or newer, 6 for ACL
//! users), or Redis Cluster with `redisType: cluster` (see [Cluster](#cluster)).
//!
//! # Data layout
//!
//! Each key is a hash `{data, version}`, the layout Dapr's Redis store uses, so data written
//! by Dapr can be read here, plus a field `expiry` ([`EXPIRY_FIELD`]) that records when the
//! value expires, so that a read is one `HMGET`. The version is the ETag, written as a decimal number. Versions
//! come from one counter key (`mecha||etag||counter`, which no prefixed state key can equal:
//! state keys contain `||` at most once), so a key that is deleted and created again never
//! gets an earlier version back and an old ETag can never match a new value (as long as the
//! counter itself is not deleted, e.g. by `FLUSHDB`). A key written by Dapr keeps its version
//! and continues above it.
//!
//! # Cluster
//!
//! With `redisType: cluster`, `redisHost` lists seed nodes and the `redis` crate's cluster
//! client routes each command to the primary of its key's hash slot, follows `MOVED`/`ASK`
//! and re-reads the topology. A script may only touch keys of one slot, so:
//!
//! * every slot has its own version counter (`slot_counter_key`): the counter's name carries
//!   a hash tag chosen to fall in the slot, so a key and its counter always travel together;
//! * bulk calls are split by slot, one script call (or, for reads, one pipeline) per
//!   slot, sent together (at most
//!   64 in flight), each item keeping its own result;
//! * a transaction whose keys span slots is refused before anything is sent (it cannot be
//!   atomic); hash tags, or `clusterKeyPlacement: prefix` (the key prefix becomes the hash
//!   tag), put keys in one slot;
//! * `consistency: strong` sends the script and `WAIT` in one pipeline to the slot's primary.
//!
//! Reads use a cluster client that retries by itself; writes one whose retries are off, so
//! the crate never re-sends a write whose connection broke (see `Kind::Write`).
//!
//! # Atomicity
//!
//! Every write goes through one Lua script ([`WRITE_SCRIPT`]), loaded once and called by SHA
//! (`EVALSHA`; `redis::Script` loads it again after `NOSCRIPT`, for example after a Redis
//! restart). A read is one plain command per key, `HMGET key data version expiry`
//! ([`read_pipeline`]), pipelined: one round trip whatever the number of keys, and no work
//! for Redis beyond what a `GET` costs. Redis runs a script without interleaving other
//! commands, so:
//!
//! * the ETag or first-write check and the write happen in one step;
//! * the TTL (`PEXPIRE`, or `PERSIST` when there is none) and the `expiry` field are set in
//!   the same step as the value: there is no moment where the key exists without its
//!   expiry, and a read's `HMGET` returns value, version and expiry of one moment (the
//!   expiry is Redis's clock at the write plus the TTL). A key whose `expiry` field is
//!   missing or names another version (written by Dapr) is read again with `MULTI`,
//!   `HMGET`, `PTTL`, `EXEC` ([`ttl_read_pipeline`]);
//! * bulk get, bulk save and bulk delete are one round trip each, with one result per key
//!   (an ETag failure only fails its own item);
//! * a transaction first checks every operation (ETags, first-write, key types, seeing the
//!   effect of its own earlier operations), and writes only if all checks pass. Dapr's Redis
//!   store uses `MULTI`, which cannot roll back; here nothing is written when any check
//!   fails. The one way to get a partial transaction is Redis itself dying in the middle of
//!   the script (or being killed by `SCRIPT KILL`, which Redis refuses once a script wrote).
//!
//! # Connections
//!
//! Each store instance (one per serving thread, rebuilt by the supervisor after failures)
//! keeps one multiplexed connection (on a cluster: one cluster connection for reads and one
//! for writes), opened lazily on the first call and replaced after an
//! I/O error or a timeout, so a broken connection is never reused. All ordinary commands are
//! pipelined over it: they need no connection state of their own. A call reads the ready
//! connection through `arc-swap`, without a lock; a lock is taken only to connect or to
//! replace it.
//!
//! Only `WAIT` needs a connection to itself: it blocks the connection it is sent on and
//! counts the writes of that connection. Writes asking for `consistency: strong` therefore
//! check a connection out of a deadpool pool (`poolSize`), run the script and `WAIT` on it,
//! and give it back. The pool serves only that: recycling a pooled connection sends
//! `UNWATCH` + `PING`, a second round trip per call (the ignored test
//! `connection_strategies` measures it; README, "Benchmarks").
//!
//! # Failures
//!
//! Connecting is bounded by `dialTimeout`, reads by `readTimeout`, writes by `writeTimeout`
//! (defaults 2 s each, below the actor's 5 s request timeout). Unreachable Redis answers
//! [`StoreError::NotSent`] (nothing was written), a broken connection
//! [`StoreError::Unavailable`], a timeout [`StoreError::Timeout`]. A failed connect is retried
//! up to `maxRetries` times with exponential backoff capped by `maxRetryBackoff`, within one
//! `dialTimeout` in total. A read whose connection broke is retried on a fresh connection. A
//! write is sent again only when it provably did not run (the connect failed, or a cluster
//! node answered `MOVED`, `ASK`, `TRYAGAIN`, `CLUSTERDOWN`, `READONLY` or `LOADING`): after a
//! broken connection it may have been applied, and repeating it could report a false ETag
//! mismatch or overwrite another client's newer write, so its error is returned. `ping`
//! sends `PING` with a short timeout and no retries.
//!
//! # Differences from Dapr's Redis store
//!
//! * An ETag is enforced with `concurrency: last-write` too (Dapr's Redis ignores it there),
//!   as on the in-memory store and the SQL stores.
//! * A first-write conflict is an ETag mismatch (409), not a plain error (500).
//! * A write without `ttlInSeconds` and without a component default clears an earlier TTL
//!   (Dapr's Redis keeps it); this is the portable rule of the SQL and in-memory stores.
//! * Reads return `ttlExpireTime`.
//! * `strong` consistency is always declared: reads and writes go to the primary, and a
//!   strong write waits (`WAIT`) for every replica Mecha has seen behind it, learned on
//!   each connect and health ping and never forgotten while the store lives (Dapr counts
//!   the connected replicas once, at start-up), or for `redisReplicas` when set. With no
//!   replica there is nothing to wait for.
//! * On a cluster, a transaction over keys of several hash slots is refused up front (Dapr's
//!   store fails it with `CROSSSLOT` or, with older go-redis, runs it per slot, not
//!   atomically); `redisDB` other than 0 is refused on a cluster (Dapr ignores it).
//! * No RedisJSON query API (Mecha emulates queries with `SCAN` over the app's prefix, see
//!   `scan.rs`), no Sentinel mode, and no TLS in this build.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use deadpool_redis::{Manager, Pool, Runtime};
use futures::StreamExt;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::Slot as HashSlot;
use redis::{
    AsyncConnectionConfig, Client, Cmd, ConnectionInfo, Pipeline, RedisError, RedisFuture, Script,
    Value,
};

use super::{ComponentConfig, Descriptor, Field, FieldKind, Variant};
use crate::actors::{BulkGetItem, KeyPage, StateStore, StoreError, StoreFactory};
use crate::capabilities::{Capability, CapabilitySet};
use crate::keys;
use crate::model::{
    Concurrency, Consistency, DeleteRequest, GetRequest, SetRequest, StateEntry, TransactionOp,
    TransactionRequest, Ttl,
};

/// The backend's self-description.
pub const DESCRIPTOR: Descriptor = Descriptor {
    component_type: "state.redis",
    aliases: &[],
    versions: &["v1"],
    capabilities: CAPABILITIES,
    conditional: CapabilitySet::EMPTY,
    lists_keys: true,
    metadata: METADATA,
    per_process: false,
    variants: &[Variant {
        detail: "v1, `redisType: cluster`",
        capabilities: CAPABILITIES,
        // Transactions only over keys of one hash slot (others are refused).
        conditional: CapabilitySet::of(&[Capability::Transactional]),
    }],
    // Only the portable keys: Mecha's Redis store has no RediSearch query API, so
    // `queryIndexName` does nothing here (the lint reports it as store-specific).
    request_keys: &[],
    build,
    locations,
};

/// What every Redis store does. `StrongConsistency`: reads and writes go to the primary, and
/// a strong write waits for the replicas (see [`Topology`]).
const CAPABILITIES: CapabilitySet = CapabilitySet::of(&[
    Capability::Etag,
    Capability::Transactional,
    Capability::Ttl,
    Capability::FirstWrite,
    Capability::BulkNative,
    Capability::StrongConsistency,
]);

const DURATION: FieldKind = FieldKind::Duration;
const BOOL: FieldKind = FieldKind::Bool;
const STRING: FieldKind = FieldKind::String;

const METADATA: &[Field] = &[
    Field::new(
        "redisHost",
        STRING,
        "address as host:port (port 6379 when left out), or a redis:// URL; with redisType cluster a comma-separated list of seed nodes",
    )
    .required(),
    Field::new("redisPassword", STRING, "password (AUTH)").sensitive(),
    Field::new("redisUsername", STRING, "ACL user name (Redis 6 or newer)"),
    Field::new(
        "redisDB",
        FieldKind::Integer {
            min: 0,
            max: i32::MAX as i64,
        },
        "database number to SELECT (default 0)",
    ),
    Field::new(
        "redisType",
        FieldKind::OneOf(&["node", "cluster"]),
        "node (default), or cluster: Redis Cluster, redisHost lists seed nodes (transactions only within one hash slot)",
    ),
    Field::new(
        "ttlInSeconds",
        FieldKind::Integer {
            min: -1,
            max: i32::MAX as i64,
        },
        "default TTL of writes that give none (-1 or 0: no default)",
    ),
    Field::new(
        "enableTLS",
        BOOL,
        "TLS to Redis; not supported by this build, so true is rejected",
    ),
    Field::new(
        "clientCert",
        STRING,
        "client certificate for TLS; rejected (no TLS)",
    ),
    Field::new("clientKey", STRING, "client key for TLS; rejected (no TLS)").sensitive(),
    Field::new("useEntraID", BOOL, "Azure Entra ID auth; true is rejected"),
    Field::new(
        "failover",
        BOOL,
        "Redis Sentinel; not supported, so true is rejected",
    ),
    Field::new(
        "sentinelMasterName",
        STRING,
        "Sentinel master name; rejected (no Sentinel support)",
    ),
    Field::new(
        "maxRetries",
        FieldKind::Integer { min: -1, max: 100 },
        "reconnect attempts after a failed connect (default 3; -1 or 0: none)",
    ),
    Field::new(
        "maxRetryBackoff",
        STRING,
        "longest wait between reconnects (default 2s; -1: no wait; bare numbers of 1000000 or more are nanoseconds as in Dapr's docs)",
    ),
    Field::new(
        "redisMaxRetries",
        FieldKind::Integer { min: -1, max: 100 },
        "same as maxRetries (overrides it)",
    ),
    Field::new(
        "redisMinRetryInterval",
        STRING,
        "first wait between reconnects (default 8ms; -1: no wait)",
    ),
    Field::new(
        "redisMaxRetryInterval",
        STRING,
        "same as maxRetryBackoff (overrides it)",
    ),
    Field::new("dialTimeout", DURATION, "connect timeout (default 2s)"),
    Field::new(
        "readTimeout",
        DURATION,
        "timeout of reads and pings (default 2s)",
    ),
    Field::new(
        "writeTimeout",
        DURATION,
        "timeout of writes (default: readTimeout)",
    ),
    Field::new(
        "poolSize",
        FieldKind::Integer {
            min: 1,
            max: 10_000,
        },
        "connections of the pool used for WAIT (default 10)",
    ),
    Field::new(
        "poolTimeout",
        DURATION,
        "wait for a pooled connection (default: readTimeout)",
    ),
    Field::new(
        "queryIndexes",
        STRING,
        "RedisJSON query indexes; ignored with a warning (no query API)",
    ),
    Field::new(
        "redisReplicas",
        FieldKind::Integer { min: 0, max: 1000 },
        "Mecha: replicas that must acknowledge a consistency=strong write (WAIT); 0 (default): every replica Mecha has seen connected to the primary (none: no WAIT)",
    ),
    Field::new(
        "waitTimeout",
        DURATION,
        "Mecha: how long a strong write waits for replicas (default 1s, as Dapr)",
    ),
    Field::new(
        "clusterKeyPlacement",
        FieldKind::OneOf(&["key", "prefix"]),
        "Mecha, redisType cluster: key (default) spreads keys over slots by their own name; prefix puts all keys of one key prefix (app) in one hash slot, so all its transactions are atomic",
    ),
    Field::new(
        "maxTransactionOps",
        FieldKind::Integer {
            min: 1,
            max: 100_000,
        },
        "Mecha: most operations in one transaction (default 1000)",
    ),
];

/// The Lua script every write runs.
pub const WRITE_SCRIPT: &str = include_str!("redis/write.lua");

/// The hash field in which the write script records a value's expiry, as
/// `<version>:<unix ms>` (`0`: none), so a read needs no `PTTL`. It names its version, so a
/// field left behind by a later write that does not set it (Dapr's) is recognised as stale.
pub const EXPIRY_FIELD: &str = "expiry";

/// The counter all versions come from. It contains `||` twice, which no state key does.
pub const VERSION_COUNTER_KEY: &str = "mecha||etag||counter";

fn build(cfg: &ComponentConfig) -> Result<Arc<dyn StoreFactory>, String> {
    let settings = settings(cfg)?;
    let infos = connection_infos(cfg)?;
    Ok(Arc::new(RedisFactory {
        shared: Arc::new(Shared::new(infos, settings)?),
    }))
}

/// The version counter of the hash slot of `key` on Redis Cluster: a script may only touch
/// keys of one slot, so every slot has its own counter, named `mecha||etag||counter||{t}`
/// with a hash tag `t` chosen to fall in that slot. A key always lives in the same slot
/// (resharding moves the counter along with it), so its versions keep rising as on one node.
fn slot_counter_key(key: &str) -> &'static str {
    static TABLE: std::sync::OnceLock<std::collections::HashMap<HashSlot, String>> =
        std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        // About 170 000 CRC16s (the coupon collector's 16384 * ln 16384): a few ms, once.
        let mut table = std::collections::HashMap::with_capacity(SLOTS);
        let mut n = 0u32;
        while table.len() < SLOTS {
            let tag = n.to_string();
            table
                .entry(HashSlot::for_key(tag.as_bytes()))
                .or_insert_with(|| format!("{VERSION_COUNTER_KEY}||{{{tag}}}"));
            n += 1;
        }
        table
    });
    &table[&HashSlot::for_key(key.as_bytes())]
}

/// Hash slots of Redis Cluster.
const SLOTS: usize = 16384;

/// How many per-slot script calls of one bulk request are in flight at once.
const MAX_SLOT_CALLS: usize = 64;

struct RedisFactory {
    shared: Arc<Shared>,
}

impl StoreFactory for RedisFactory {
    fn create(&self) -> Result<Arc<dyn StateStore>, StoreError> {
        Ok(Arc::new(RedisStore::new(self.shared.clone())))
    }

    fn capabilities(&self) -> CapabilitySet {
        CAPABILITIES
    }

    fn max_transaction_ops(&self) -> Option<usize> {
        Some(self.shared.settings.max_transaction_ops)
    }

    fn lists_keys(&self) -> bool {
        true
    }
}

/// One store instance: the shared settings plus this instance's multiplexed connection (on a
/// cluster: its cluster connections, one for reads and one for writes).
pub struct RedisStore {
    shared: Arc<Shared>,
    /// Reads and pings; on one node every command.
    conn: Slot,
    /// On a cluster: writes, over the client that never re-sends a command by itself.
    write_conn: Slot,
    /// On a cluster: `consistency: strong` writes. `WAIT` blocks the connection it is sent on
    /// until replicas acknowledge (up to `waitTimeout`), so it never shares one with other
    /// calls: without a replica to answer, every other write of the instance would queue
    /// behind it.
    strong_conn: Slot,
    generation: Arc<AtomicU64>,
}

fn strong(consistency: Consistency) -> bool {
    consistency == Consistency::Strong
}

#[async_trait]
impl StateStore for RedisStore {
    async fn get(&self, req: GetRequest) -> Result<Option<StateEntry>, StoreError> {
        self.read(&[&req.key])
            .await?
            .pop()
            .expect("one result per key")
    }

    async fn set(&self, req: SetRequest) -> Result<(), StoreError> {
        let strong = strong(req.options.consistency);
        let op = self.set_op(&req);
        self.write_each(vec![op], strong)
            .await
            .pop()
            .expect("one result")
    }

    async fn delete(&self, req: DeleteRequest) -> Result<(), StoreError> {
        let strong = strong(req.options.consistency);
        let op = self.delete_op(&req);
        self.write_each(vec![op], strong)
            .await
            .pop()
            .expect("one result")
    }

    async fn bulk_get(&self, reqs: Vec<GetRequest>, _parallelism: usize) -> Vec<BulkGetItem> {
        if reqs.is_empty() {
            return Vec::new();
        }
        let keys: Vec<&str> = reqs.iter().map(|r| r.key.as_str()).collect();
        match self.read(&keys).await {
            Ok(items) => items,
            Err(e) => reqs.iter().map(|_| Err(e.clone())).collect(),
        }
    }

    async fn bulk_set(&self, reqs: Vec<SetRequest>) -> Vec<Result<(), StoreError>> {
        let strong = reqs.iter().any(|r| strong(r.options.consistency));
        let ops = reqs.iter().map(|r| self.set_op(r)).collect();
        self.write_each(ops, strong).await
    }

    async fn bulk_delete(&self, reqs: Vec<DeleteRequest>) -> Vec<Result<(), StoreError>> {
        let strong = reqs.iter().any(|r| strong(r.options.consistency));
        let ops = reqs.iter().map(|r| self.delete_op(r)).collect();
        self.write_each(ops, strong).await
    }

    async fn transact(&self, req: TransactionRequest) -> Result<(), StoreError> {
        if req.operations.is_empty() {
            return Ok(());
        }
        let max = self.shared.settings.max_transaction_ops;
        if req.operations.len() > max {
            return Err(StoreError::InvalidRequest(format!(
                "the transaction has {} operations; this store allows at most {max}",
                req.operations.len()
            )));
        }
        let mut strong_any = false;
        let mut ops = Vec::with_capacity(req.operations.len());
        for op in &req.operations {
            let (w, c) = match op {
                TransactionOp::Upsert(r) => (self.set_op(r)?, r.options.consistency),
                TransactionOp::Delete(r) => (self.delete_op(r)?, r.options.consistency),
            };
            strong_any |= strong(c);
            ops.push(w);
        }
        if self.shared.settings.cluster {
            self.check_one_slot(&req, &ops)?;
        }
        let refs: Vec<&WriteOp<'_>> = ops.iter().collect();
        let reply = self.write("all", &refs, strong_any).await?;
        let Value::Array(items) = &reply else {
            return Err(unexpected(&reply));
        };
        match items.as_slice() {
            [Value::Int(0)] => Ok(()),
            [Value::Int(i), code] => {
                let i = *i as usize;
                let key = req
                    .operations
                    .get(i.wrapping_sub(1))
                    .map(TransactionOp::key)
                    .unwrap_or("?");
                match write_result(code) {
                    Err(StoreError::EtagMismatch(why)) => {
                        Err(StoreError::EtagMismatch(Some(format!(
                            "operation {i} (key {key}){}; nothing was written",
                            why.map(|w| format!(": {w}")).unwrap_or_default()
                        ))))
                    }
                    Err(e) => Err(StoreError::Internal(format!(
                        "operation {i} (key {key}) failed, nothing was written: {e}"
                    ))),
                    Ok(()) => Err(unexpected(&reply)),
                }
            }
            _ => Err(unexpected(&reply)),
        }
    }

    /// `SCAN` over every state key (see the `scan` module).
    async fn list_keys(&self, cursor: Option<String>, limit: usize) -> Result<KeyPage, StoreError> {
        self.scan_page("", cursor, limit).await
    }

    /// `SCAN ... MATCH <prefix>*`, on the node or on every primary of a cluster.
    async fn list_keys_with_prefix(
        &self,
        prefix: &str,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<KeyPage, StoreError> {
        self.scan_page(prefix, cursor, limit).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let s = &self.shared.settings;
        let limit = (s.dial_timeout + s.read_timeout).min(PING_TIMEOUT);
        let ping = async {
            let (generation, mut conn) = self.connection(Kind::Read).await?;
            let pong: Result<Value, RedisError> = redis::cmd("PING").query_async(&mut conn).await;
            match pong {
                Ok(_) => {
                    if let Err(e) = self.shared.learn_topology(&mut conn).await {
                        tracing::debug!(error = %e, "redis: replication topology not read");
                    }
                    Ok(())
                }
                Err(e) => {
                    if is_broken(&e) {
                        self.discard(Kind::Read, generation);
                    }
                    Err(map_redis_error(&e, limit))
                }
            }
        };
        match tokio::time::timeout(limit, ping).await {
            Ok(r) => r,
            Err(_) => {
                // Whatever connection hung is replaced on the next call; a connect in flight
                // is bounded by its own dial timeout.
                self.conn.discard(None);
                Err(StoreError::Timeout(limit))
            }
        }
    }
}

/// The most a ping may take, whatever the component's timeouts say.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

mod commands;
mod config;
mod connection;
mod reply;
mod scan;
mod topology;

use config::*;
use connection::*;
use reply::*;
pub use reply::{read_pipeline, ttl_read_pipeline};

/// Every node and database the store's keys live on (`host:port/db`).
fn locations(cfg: &ComponentConfig) -> Vec<String> {
    let Ok(infos) = connection_infos(cfg) else {
        return Vec::new();
    };
    infos
        .iter()
        .map(|i| {
            let (addr, _) = super::normalize_endpoint(&i.addr().to_string(), 6379);
            format!("state.redis:{addr}/{}", i.redis_settings().db())
        })
        .collect()
}

#[cfg(test)]
mod tests;
