//! `state.postgresql` (alias `state.postgres`): durable state in one PostgreSQL table.
//!
//! # Table layout (schema version 1)
//!
//! ```sql
//! CREATE TABLE <tableName> (
//!   key        text COLLATE "C" NOT NULL PRIMARY KEY, -- the prefixed key
//!   value      bytea NOT NULL,        -- the bytes exactly as written
//!   value_json jsonb NULL,            -- the same value parsed, when it is JSON (for queries)
//!   version    bigint NOT NULL,       -- the ETag: nextval('<tableName>_version_seq')
//!   expires_at timestamptz NULL,      -- TTL; NULL means never
//!   updated_at timestamptz NOT NULL DEFAULT now());
//! CREATE SEQUENCE <tableName>_version_seq AS bigint;
//! CREATE INDEX <tableName>_expires_at_idx ON <tableName> (expires_at) WHERE expires_at IS NOT NULL;
//! -- <metadataTableName> (key text PRIMARY KEY, value text): rows
//! --   mecha-schema-version:<tableName> = 1, mecha-last-cleanup:<tableName> = <timestamp>
//! ```
//!
//! The schema is created (or migrated) on first use inside one transaction holding
//! `pg_advisory_xact_lock`, so Mecha instances starting together do not race. Every write takes
//! a fresh version from the sequence, so an ETag never repeats for a key, even after a delete.
//! Conditional writes are single statements (`UPDATE ... WHERE version = $etag`, `INSERT ... ON
//! CONFLICT ... WHERE expired`), bulk writes one `unnest` statement per batch, and transactions
//! one database transaction.
//!
//! Single-statement operations (get, set, delete, the bulk ones, ping) run on a few shared
//! connections per store instance (`pipelineConnections`, default 2 per serving thread), used
//! round-robin: tokio-postgres pipelines concurrent statements on one connection, so many
//! requests are in flight per connection. These connections are opened with the pool's
//! settings but outside it, so they never take pool slots: transactions, queries, migration
//! and cleanup check out a pooled connection (at most `maxConns`) exclusively. A shared
//! connection that broke, or whose operation timed out, is replaced on next use. Statements
//! are prepared once per connection. Instances built by one factory share the pool; nothing
//! connects until the first call.

mod commands;
mod reply;
mod sql;
mod write;

use reply::*;
use write::*;

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use deadpool_postgres::{
    GenericClient, Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime,
    TimeoutType,
};
use serde_json::Value;
use tokio::sync::OnceCell;
use tokio_postgres::types::{Json, ToSql};
use tokio_postgres::{NoTls, Row, Statement};

use self::sql::{Ident, SCHEMA_VERSION, Sql};
use super::{ComponentConfig, Descriptor, Field, FieldKind, parse_duration};
use crate::actors::{BulkGetItem, StateStore, StoreError, StoreFactory};
use crate::capabilities::query::Query;
use crate::capabilities::{Capability, CapabilitySet};
use crate::model::{
    Concurrency, DeleteRequest, GetRequest, Metadata, QueryItem, QueryRequest, QueryResponse,
    SetRequest, StateEntry, TTL_EXPIRE_TIME, TransactionOp, TransactionRequest, Ttl,
    format_expire_time,
};

/// The backend's self-description.
pub const DESCRIPTOR: Descriptor = Descriptor {
    component_type: "state.postgresql",
    aliases: &["state.postgres"],
    // Dapr's v1 (xmin ETags) and v2 (UUID ETags) differ in ways clients cannot see through
    // the API; both spellings select this one implementation and its own table layout.
    versions: &["v1", "v2"],
    capabilities: CAPABILITIES,
    conditional: CapabilitySet::EMPTY,
    lists_keys: false,
    per_process: false,
    variants: &[],
    metadata: &[
        Field::new(
            "connectionString",
            FieldKind::String,
            "PostgreSQL URL or key=value DSN (TLS is not supported: use sslmode=disable or prefer)",
        )
        .required()
        .sensitive(),
        Field::new(
            "tableName",
            FieldKind::String,
            "state table, optionally schema-qualified (default state)",
        ),
        Field::new(
            "metadataTableName",
            FieldKind::String,
            "table for the schema version and cleanup bookkeeping (default dapr_metadata)",
        ),
        super::SQL_TIMEOUT_FIELDS[0],
        super::SQL_TIMEOUT_FIELDS[1],
        super::SQL_TIMEOUT_FIELDS[2],
        Field::new(
            "cleanupIntervalInSeconds",
            FieldKind::Integer {
                min: i64::MIN,
                max: 31_536_000,
            },
            "older spelling of cleanupInterval, in seconds",
        ),
        Field::new(
            "maxConns",
            FieldKind::Integer {
                min: 1,
                max: 10_000,
            },
            "maximum pooled connections (default 4 per CPU, at least 4)",
        ),
        Field::new(
            "connectionMaxIdleTime",
            FieldKind::Duration,
            "close pooled connections idle for longer than this (default: never)",
        ),
        Field::new(
            "pipelineConnections",
            FieldKind::Integer { min: 0, max: 64 },
            "shared connections per serving thread that pipeline single-statement operations, \
             outside the pool (default 2; 0 runs every operation on a pooled connection)",
        ),
    ],
    // Only the portable keys (`ttlInSeconds`, `contentType`).
    request_keys: &[],
    build,
    locations,
};

const CAPABILITIES: CapabilitySet = CapabilitySet::of(&[
    Capability::Etag,
    Capability::Transactional,
    Capability::QueryApi,
    Capability::Ttl,
    Capability::FirstWrite,
    Capability::BulkNative,
    Capability::StrongConsistency,
]);

/// Connection establishment is bounded by this unless the connection string sets
/// `connect_timeout`, so an unreachable database fails well inside the request deadline.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Above this many cached statements on one connection, query shapes are prepared without
/// caching (a client could otherwise grow the cache with endlessly different filters).
const QUERY_CACHE_LIMIT: usize = 256;

/// Validated settings of one component.
#[derive(Debug, Clone)]
struct Settings {
    table: Ident,
    metadata_table: Ident,
    timeout: Duration,
    cleanup_interval: Option<Duration>,
    max_conns: usize,
    max_idle: Option<Duration>,
    pipeline: usize,
}

/// Shared pipelining connections per store instance (per serving thread) unless configured.
const DEFAULT_PIPELINE_CONNECTIONS: usize = 2;

/// The exact single-row read and last-write upsert statements this backend prepares for
/// `table` (`(get, upsert)`; parameters as in [`StateStore::get`] and a plain `set`), so the
/// benchmark's direct baseline runs the same SQL.
pub fn read_and_upsert_sql(table: &str) -> Result<(String, String), String> {
    let sql = Sql::new(&Ident::parse(table)?, &Ident::parse("dapr_metadata")?);
    Ok((sql.get, sql.upsert))
}

fn build(cfg: &ComponentConfig) -> Result<Arc<dyn StoreFactory>, String> {
    let (pg, settings) = parse_settings(cfg)?;
    let manager = Manager::from_config(
        pg.clone(),
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let connect = DEFAULT_CONNECT_TIMEOUT.min(settings.timeout);
    let pool = Pool::builder(manager)
        .max_size(settings.max_conns)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(settings.timeout))
        .create_timeout(Some(connect))
        .recycle_timeout(Some(connect))
        .build()
        .map_err(|e| format!("cannot build the connection pool: {e}"))?;
    let common = Common {
        sql: Sql::new(&settings.table, &settings.metadata_table),
        pool,
        pg,
        migrated: OnceCell::new(),
        settings,
    };
    Ok(Arc::new(PgFactory {
        common: Arc::new(common),
    }))
}

fn parse_settings(cfg: &ComponentConfig) -> Result<(tokio_postgres::Config, Settings), String> {
    let raw = cfg.get("connectionString").unwrap_or_default();
    if raw.trim().is_empty() {
        return Err("connectionString is required".into());
    }
    // The parse error never echoes the string, which may hold a password.
    let mut pg = tokio_postgres::Config::from_str(raw).map_err(|e| {
        format!("connectionString is not a valid PostgreSQL connection string: {e}")
    })?;
    if pg.get_application_name().is_none() {
        pg.application_name("mecha");
    }
    let timeout = match (cfg.get("timeout"), cfg.get("timeoutInSeconds")) {
        (Some(_), _) => cfg.duration_or("timeout", Duration::from_secs(20)),
        (None, Some(_)) => Duration::from_secs(cfg.int_or("timeoutInSeconds", 20) as u64),
        (None, None) => Duration::from_secs(20),
    };
    if timeout.is_zero() {
        return Err("timeout must be greater than zero".into());
    }
    if pg.get_connect_timeout().is_none() {
        pg.connect_timeout(DEFAULT_CONNECT_TIMEOUT.min(timeout));
    }
    let cleanup_interval = match (
        cfg.get("cleanupInterval"),
        cfg.get("cleanupIntervalInSeconds"),
    ) {
        (Some(v), _) => parse_cleanup(v)?,
        (None, Some(_)) => {
            let secs = cfg.int_or("cleanupIntervalInSeconds", 3600);
            (secs > 0).then(|| Duration::from_secs(secs as u64))
        }
        (None, None) => Some(Duration::from_secs(3600)),
    };
    let default_conns = std::thread::available_parallelism()
        .map(|n| n.get() * 4)
        .unwrap_or(4)
        .max(4);
    let max_conns = cfg.int_or("maxConns", default_conns as i64) as usize;
    let max_idle = cfg
        .get("connectionMaxIdleTime")
        .map(|_| cfg.duration_or("connectionMaxIdleTime", Duration::ZERO))
        .filter(|d| !d.is_zero());
    let pipeline = cfg.int_or("pipelineConnections", DEFAULT_PIPELINE_CONNECTIONS as i64) as usize;
    let table = Ident::parse(cfg.get("tableName").unwrap_or("state"))
        .map_err(|e| format!("tableName: {e}"))?;
    let metadata_table = Ident::parse(cfg.get("metadataTableName").unwrap_or("dapr_metadata"))
        .map_err(|e| format!("metadataTableName: {e}"))?;
    if table == metadata_table {
        return Err("tableName and metadataTableName must differ".into());
    }
    Ok((
        pg,
        Settings {
            table,
            metadata_table,
            timeout,
            cleanup_interval,
            max_conns,
            max_idle,
            pipeline,
        },
    ))
}

/// `cleanupInterval`: a duration or a number of seconds; zero or negative disables cleanup.
fn parse_cleanup(raw: &str) -> Result<Option<Duration>, String> {
    let v = raw.trim();
    if v.starts_with('-') {
        return Ok(None);
    }
    let d = parse_duration(v).map_err(|e| format!("cleanupInterval: {e}"))?;
    Ok((!d.is_zero()).then_some(d))
}

struct PgFactory {
    common: Arc<Common>,
}

impl StoreFactory for PgFactory {
    fn create(&self) -> Result<Arc<dyn StateStore>, StoreError> {
        // Shards share the pool and the schema check; each has its own pipelining
        // connections. Creating one connects nothing.
        Ok(Arc::new(PgStore {
            common: self.common.clone(),
            pipe: (0..self.common.settings.pipeline)
                .map(|_| tokio::sync::Mutex::new(None))
                .collect(),
            next: AtomicUsize::new(0),
        }))
    }

    fn capabilities(&self) -> CapabilitySet {
        CAPABILITIES
    }
}

/// What every instance built by one factory shares.
struct Common {
    pool: Pool,
    /// The pool's connection settings, also used for the pipelining connections.
    pg: tokio_postgres::Config,
    sql: Sql,
    settings: Settings,
    migrated: OnceCell<()>,
}

/// One store instance (one shard): the shared pool plus its own pipelining connections.
struct PgStore {
    common: Arc<Common>,
    /// Slots of shared connections, filled lazily and refilled when their connection broke.
    pipe: Vec<tokio::sync::Mutex<Option<Arc<Shared>>>>,
    /// Round-robin cursor over `pipe`.
    next: AtomicUsize,
}

impl std::ops::Deref for PgStore {
    type Target = Common;

    fn deref(&self) -> &Common {
        &self.common
    }
}

/// The single statements run on shared connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stmt {
    Get,
    BulkGet,
    BulkSet,
    BulkDelete,
    Ping,
    Write(WriteKind),
}

impl Stmt {
    const COUNT: usize = 5 + WriteKind::COUNT;

    fn index(self) -> usize {
        match self {
            Stmt::Get => 0,
            Stmt::BulkGet => 1,
            Stmt::BulkSet => 2,
            Stmt::BulkDelete => 3,
            Stmt::Ping => 4,
            Stmt::Write(k) => 5 + k as usize,
        }
    }

    fn text(self, sql: &Sql) -> &str {
        match self {
            Stmt::Get => &sql.get,
            Stmt::BulkGet => &sql.bulk_get,
            Stmt::BulkSet => &sql.bulk_set,
            Stmt::BulkDelete => &sql.bulk_delete,
            Stmt::Ping => &sql.ping,
            Stmt::Write(k) => k.text(sql),
        }
    }
}

/// A connection shared by concurrent operations of one store instance: tokio-postgres
/// pipelines their statements (sent back to back, answered in order). Statements are
/// prepared once per connection.
struct Shared {
    client: tokio_postgres::Client,
    stmts: [OnceCell<Statement>; Stmt::COUNT],
    /// Set when an operation on it timed out: it is replaced, never used again.
    dead: AtomicBool,
    /// The task driving the socket; aborted when the connection is given up.
    task: tokio::task::AbortHandle,
}

impl Shared {
    fn usable(&self) -> bool {
        !self.dead.load(Ordering::Relaxed) && !self.client.is_closed()
    }

    /// Closes the connection now: in-flight operations on it fail as "connection lost".
    fn kill(&self) {
        self.dead.store(true, Ordering::Relaxed);
        self.task.abort();
    }

    async fn statement(&self, stmt: Stmt, sql: &Sql) -> Result<&Statement, StoreError> {
        self.stmts[stmt.index()]
            .get_or_try_init(|| async { self.client.prepare(stmt.text(sql)).await })
            .await
            .map_err(db_err)
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // A dropped client ends its connection once the socket drains; a dead peer never
        // does, so the task is ended explicitly.
        self.task.abort();
    }
}

// === errors ===

/// A pooled connection that goes back to the pool only through [`Conn::release`]; dropped
/// any other way (its future cancelled by a timeout), it is detached and closed.
struct Conn(Option<Object>);

impl Conn {
    fn release(mut self) {
        drop(self.0.take());
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(obj) = self.0.take() {
            drop(Object::take(obj));
        }
    }
}

// === the store ===

#[async_trait]
impl StateStore for PgStore {
    async fn get(&self, req: GetRequest) -> Result<Option<StateEntry>, StoreError> {
        self.single(Stmt::Get, async |client, stmt| {
            let row = client.query_opt(stmt, &[&req.key]).await.map_err(db_err)?;
            Ok(row.map(|r| entry(r.get(0), r.get(1), r.get(2))))
        })
        .await
    }

    async fn set(&self, req: SetRequest) -> Result<(), StoreError> {
        let etag = req.etag.as_deref().map(parse_etag).transpose()?;
        let kind = WriteKind::of_set(&req, etag);
        self.single(Stmt::Write(kind), async |client, stmt| {
            exec_set(client, stmt, &req, etag).await
        })
        .await
    }

    async fn delete(&self, req: DeleteRequest) -> Result<(), StoreError> {
        let etag = req.etag.as_deref().map(parse_etag).transpose()?;
        let kind = WriteKind::of_delete(etag);
        self.single(Stmt::Write(kind), async |client, stmt| {
            exec_delete(client, stmt, &req.key, etag).await
        })
        .await
    }

    async fn bulk_get(&self, reqs: Vec<GetRequest>, _parallelism: usize) -> Vec<BulkGetItem> {
        if reqs.is_empty() {
            return Vec::new();
        }
        let keys: Vec<&str> = reqs.iter().map(|r| r.key.as_str()).collect();
        let found = self
            .single(Stmt::BulkGet, async |client, stmt| {
                let rows: Vec<Row> = client.query(stmt, &[&keys]).await.map_err(db_err)?;
                Ok(rows
                    .into_iter()
                    .map(|r| (r.get::<_, String>(0), entry(r.get(1), r.get(2), r.get(3))))
                    .collect::<HashMap<String, StateEntry>>())
            })
            .await;
        match found {
            Ok(found) => reqs
                .iter()
                .map(|r| Ok(found.get(&r.key).cloned()))
                .collect(),
            Err(e) => reqs.iter().map(|_| Err(e.clone())).collect(),
        }
    }

    async fn bulk_set(&self, reqs: Vec<SetRequest>) -> Vec<Result<(), StoreError>> {
        let mut results: Vec<Result<(), StoreError>> = vec![Ok(()); reqs.len()];
        let mut valid = Vec::with_capacity(reqs.len());
        for (i, r) in reqs.into_iter().enumerate() {
            match r.etag.as_deref().map(parse_etag).transpose() {
                Ok(etag) => valid.push((i, (r, etag))),
                Err(e) => results[i] = Err(e),
            }
        }
        if valid.is_empty() {
            return results;
        }
        let outcome = self
            // Each round is one autocommitted statement, as on a pooled connection.
            .single(Stmt::BulkSet, async |client, stmt| {
                let mut written = Vec::new();
                for round in rounds(valid, |(r, _)| r.key.as_str()) {
                    let items: Vec<(usize, SetRequest, Option<i64>)> =
                        round.into_iter().map(|(i, (r, e))| (i, r, e)).collect();
                    let ok = self.bulk_set_round(client, stmt, &items).await?;
                    written.extend(items.into_iter().map(|(i, r, e)| {
                        let res = if ok.contains(&r.key) {
                            Ok(())
                        } else if e.is_some() {
                            Err(StoreError::EtagMismatch(None))
                        } else {
                            Err(first_write_conflict())
                        };
                        (i, res)
                    }));
                }
                Ok(written)
            })
            .await;
        match outcome {
            Ok(written) => {
                for (i, r) in written {
                    results[i] = r;
                }
            }
            // The batches may have partly run; every item not already failed reports the error.
            Err(e) => {
                for r in results.iter_mut().filter(|r| r.is_ok()) {
                    *r = Err(e.clone());
                }
            }
        }
        results
    }

    async fn bulk_delete(&self, reqs: Vec<DeleteRequest>) -> Vec<Result<(), StoreError>> {
        let mut results: Vec<Result<(), StoreError>> = vec![Ok(()); reqs.len()];
        let mut valid = Vec::with_capacity(reqs.len());
        for (i, r) in reqs.into_iter().enumerate() {
            match r.etag.as_deref().map(parse_etag).transpose() {
                Ok(etag) => valid.push((i, (r.key, etag))),
                Err(e) => results[i] = Err(e),
            }
        }
        if valid.is_empty() {
            return results;
        }
        let outcome = self
            .single(Stmt::BulkDelete, async |client, stmt| {
                let mut done = Vec::new();
                for round in rounds(valid, |(k, _)| k.as_str()) {
                    let keys: Vec<&str> = round.iter().map(|(_, (k, _))| k.as_str()).collect();
                    let etags: Vec<Option<i64>> = round.iter().map(|(_, (_, e))| *e).collect();
                    let rows = client.query(stmt, &[&keys, &etags]).await.map_err(db_err)?;
                    let deleted: HashSet<String> = rows.iter().map(|r| r.get(0)).collect();
                    done.extend(round.iter().map(|(i, (k, e))| {
                        let res = if e.is_none() || deleted.contains(k) {
                            Ok(())
                        } else {
                            Err(StoreError::EtagMismatch(None))
                        };
                        (*i, res)
                    }));
                }
                Ok(done)
            })
            .await;
        match outcome {
            Ok(done) => {
                for (i, r) in done {
                    results[i] = r;
                }
            }
            Err(e) => {
                for r in results.iter_mut().filter(|r| r.is_ok()) {
                    *r = Err(e.clone());
                }
            }
        }
        results
    }

    async fn transact(&self, req: TransactionRequest) -> Result<(), StoreError> {
        // Reject malformed ETags before touching the database.
        let etags = req
            .operations
            .iter()
            .map(|op| {
                let etag = match op {
                    TransactionOp::Upsert(r) => r.etag.as_deref(),
                    TransactionOp::Delete(r) => r.etag.as_deref(),
                };
                etag.map(parse_etag).transpose()
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.with_conn(async |client| {
            let tx = client.transaction().await.map_err(db_err)?;
            let kinds: Vec<WriteKind> = req
                .operations
                .iter()
                .zip(&etags)
                .map(|(op, etag)| WriteKind::of(op, *etag))
                .collect();
            let mut stmts: [Option<Statement>; WriteKind::COUNT] = Default::default();
            for kind in &kinds {
                if stmts[*kind as usize].is_none() {
                    stmts[*kind as usize] = Some(self.prepare(&tx, *kind).await?);
                }
            }
            // The operations are pipelined: sent back to back and executed in order by the
            // server, so each sees the ones before it. Any failure rolls everything back.
            let results =
                futures::future::join_all(req.operations.iter().zip(&etags).zip(&kinds).map(
                    |((op, etag), kind)| {
                        let stmt = stmts[*kind as usize].as_ref().expect("prepared above");
                        let tx = tx.client();
                        async move {
                            match op {
                                TransactionOp::Upsert(r) => exec_set(tx, stmt, r, *etag).await,
                                TransactionOp::Delete(r) => {
                                    exec_delete(tx, stmt, &r.key, *etag).await
                                }
                            }
                        }
                    },
                ))
                .await;
            if let Some(e) = results.into_iter().find_map(Result::err) {
                tx.rollback().await.map_err(db_err)?;
                return Err(e);
            }
            tx.commit().await.map_err(db_err)
        })
        .await
    }

    async fn query(&self, req: QueryRequest) -> Result<QueryResponse, StoreError> {
        let bad =
            |e: String| StoreError::InvalidQuery(format!("failed to parse JSON query body: {e}"));
        let query = Query::parse(&req.query).map_err(|e| bad(e.0))?;
        let q = sql::translate(&self.sql.table, &query, &req.key_prefix).map_err(bad)?;
        self.with_conn(async |client| {
            let stmt = if client.statement_cache.size() < QUERY_CACHE_LIMIT {
                client.prepare_cached(&q.text).await
            } else {
                client.prepare(&q.text).await
            }
            .map_err(db_err)?;
            let params: Vec<&(dyn ToSql + Sync)> = q
                .params
                .iter()
                .map(|p| p.as_ref() as &(dyn ToSql + Sync))
                .collect();
            let mut rows = client.query(&stmt, &params).await.map_err(db_err)?;
            let mut token = None;
            if q.limit > 0 && rows.len() as u64 > q.limit {
                rows.truncate(q.limit as usize);
                token = Some((q.offset + q.limit).to_string());
            }
            let results = rows
                .into_iter()
                .map(|r| QueryItem {
                    key: r.get(0),
                    data: Bytes::from(r.get::<_, Vec<u8>>(1)),
                    etag: Some(r.get::<_, i64>(2).to_string()),
                })
                .collect();
            Ok(QueryResponse {
                results,
                token,
                metadata: Metadata::new(),
            })
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.single(Stmt::Ping, async |client, stmt| {
            client.query_one(stmt, &[]).await.map_err(db_err)?;
            Ok(())
        })
        .await
    }

    fn housekeeping_interval(&self) -> Option<Duration> {
        match (self.settings.cleanup_interval, self.settings.max_idle) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    async fn housekeeping(&self) {
        if let Some(max_idle) = self.settings.max_idle {
            let closed = self
                .pool
                .retain(|_, m| m.last_used() < max_idle)
                .removed
                .len();
            if closed > 0 {
                tracing::debug!(closed, "postgresql: closed idle connections");
            }
        }
        if let Some(interval) = self.settings.cleanup_interval {
            match self.cleanup(interval).await {
                Ok(0) => {}
                Ok(removed) => {
                    tracing::debug!(removed, table = %self.settings.table.plain(), "postgresql: deleted expired rows")
                }
                Err(e) => tracing::warn!(error = %e, "postgresql: expired-row cleanup failed"),
            }
        }
    }
}

/// Every server, database and table the store's rows live in (`host:port/db/table`).
fn locations(cfg: &ComponentConfig) -> Vec<String> {
    let Ok((pg, settings)) = parse_settings(cfg) else {
        return Vec::new();
    };
    let db = pg
        .get_dbname()
        .or(pg.get_user())
        .unwrap_or("postgres")
        .to_owned();
    let ports = pg.get_ports();
    pg.get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let host = match h {
                tokio_postgres::config::Host::Tcp(h) => h.clone(),
                #[cfg(unix)]
                tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
            };
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            let (addr, _) = super::normalize_endpoint(&format!("{host}:{port}"), 5432);
            // An unqualified table is in `public` (the default search path).
            let table = settings.table.plain();
            let table = if table.contains('.') {
                table
            } else {
                format!("public.{table}")
            };
            format!("state.postgresql:{addr}/{db}/{table}")
        })
        .collect()
}

#[cfg(test)]
mod tests;
