//! `state.mysql`: durable state in one MySQL / MariaDB table, through sqlx's async MySQL driver.
//!
//! # Table layout
//!
//! ```sql
//! CREATE TABLE <schemaName>.<tableName> (
//!   id         VARBINARY(3072) NOT NULL PRIMARY KEY, -- the prefixed key
//!   value      LONGBLOB NOT NULL,                    -- the bytes exactly as written
//!   etag       VARCHAR(64) NOT NULL,                 -- a random 128-bit value, fresh on every write
//!   expires_at BIGINT NULL);                         -- TTL as Unix milliseconds; NULL means never
//! ```
//!
//! Same rules as `state.sqlite`: ETags never repeat, a write with an ETag is one `UPDATE ...
//! WHERE id = ? AND etag = BINARY ?` (no row: mismatch, also for a missing key; `BINARY`
//! because the column's collation may compare case-insensitively, and an ETag that differs in
//! letter case is a different ETag, as on every other store), first-write is an
//! `INSERT` that fails on a live duplicate, bulk writes and transactions are one database
//! transaction, expired rows are invisible at once and deleted by the periodic cleanup.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::mysql::{MySql, MySqlConnectOptions, MySqlPool, MySqlPoolOptions, MySqlSslMode};
use sqlx::{Row, Transaction};

use super::sqlite::{
    check_etag, entry, expiry, first_write_conflict, new_etag, now_ms, parse_cleanup, parse_ident,
};
use super::{ComponentConfig, Descriptor, Field, FieldKind};
use crate::actors::{BulkGetItem, StateStore, StoreError, StoreFactory};
use crate::capabilities::{Capability, CapabilitySet};
use crate::model::{
    Concurrency, DeleteRequest, GetRequest, SetRequest, StateEntry, TransactionOp,
    TransactionRequest,
};

/// The backend's self-description.
pub const DESCRIPTOR: Descriptor = Descriptor {
    component_type: "state.mysql",
    aliases: &[],
    versions: &["v1"],
    capabilities: CAPABILITIES,
    conditional: CapabilitySet::EMPTY,
    lists_keys: false,
    per_process: false,
    variants: &[],
    metadata: &[
        Field::new(
            "connectionString",
            FieldKind::String,
            "Go DSN: user:password@tcp(host:3306)/dbname?allowNativePasswords=true",
        )
        .required()
        .sensitive(),
        Field::new(
            "schemaName",
            FieldKind::String,
            "database holding the tables, created when missing (default dapr_state_store)",
        ),
        Field::new(
            "tableName",
            FieldKind::String,
            "state table (default state)",
        ),
        Field::new(
            "metadataTableName",
            FieldKind::String,
            "table for bookkeeping (default dapr_metadata)",
        ),
        Field::new(
            "timeoutInSeconds",
            FieldKind::Integer {
                min: 1,
                max: 86_400,
            },
            "deadline of one database operation in seconds (default 20)",
        ),
        Field::new(
            "cleanupInterval",
            FieldKind::String,
            "how often expired rows are deleted (default 1h; 0 or negative disables)",
        ),
    ],
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

/// Most keys read by one bulk-get statement.
const BULK_GET_CHUNK: usize = 500;

/// Longest key, prefix included, the `id VARBINARY(3072)` column holds (InnoDB's limit for
/// an index key). A longer one is refused before the database sees it: MySQL would answer a
/// 500-worthy "data too long" in strict mode, and in a non-strict `sql_mode` it would cut the
/// key, so that two long keys sharing their first 3072 bytes were one row.
const MAX_KEY_BYTES: usize = 3072;

/// The key's bytes, or the caller's error when the column cannot hold it.
fn key_bytes(key: &str) -> Result<&[u8], StoreError> {
    if key.len() > MAX_KEY_BYTES {
        return Err(StoreError::InvalidRequest(format!(
            "the key is {} bytes with its prefix; state.mysql stores keys of at most \
             {MAX_KEY_BYTES} bytes",
            key.len()
        )));
    }
    Ok(key.as_bytes())
}

/// MySQL's error number for a duplicate key.
const ER_DUP_ENTRY: &str = "23000";

#[derive(Debug, Clone)]
struct Settings {
    /// `schema`.`table`, quoted.
    table: String,
    schema: String,
    metadata_table: String,
    timeout: Duration,
    cleanup_interval: Option<Duration>,
    endpoint: String,
}

/// Parses a Go MySQL driver DSN: `[user[:password]@][tcp[(host[:port])]]/dbname[?params]`.
pub(crate) fn parse_dsn(raw: &str) -> Result<(MySqlConnectOptions, String), String> {
    let err = |m: &str| format!("connectionString: {m}");
    let (cred_addr, rest) = raw
        .rsplit_once('/')
        .ok_or_else(|| err("expected user:password@tcp(host:port)/dbname"))?;
    let (db, params) = rest.split_once('?').unwrap_or((rest, ""));
    let (creds, addr) = match cred_addr.rsplit_once('@') {
        Some((c, a)) => (Some(c), a),
        None => (None, cred_addr),
    };
    let mut opts = MySqlConnectOptions::new();
    if let Some(c) = creds {
        let (user, pass) = c.split_once(':').unwrap_or((c, ""));
        if user.is_empty() {
            return Err(err("the user name is empty"));
        }
        opts = opts.username(user);
        if !pass.is_empty() {
            opts = opts.password(pass);
        }
    }
    let (host, port) = if addr.is_empty() {
        ("127.0.0.1".to_owned(), 3306)
    } else {
        let inner = addr
            .strip_prefix("tcp(")
            .and_then(|a| a.strip_suffix(')'))
            .ok_or_else(|| err(&format!("address {addr:?} is not tcp(host:port)")))?;
        match inner.rsplit_once(':') {
            Some((h, p)) => (
                h.to_owned(),
                p.parse::<u16>()
                    .map_err(|_| err(&format!("port {p:?} is not a number")))?,
            ),
            None if inner.is_empty() => ("127.0.0.1".to_owned(), 3306),
            None => (inner.to_owned(), 3306),
        }
    };
    if host.is_empty() {
        return Err(err("the host is empty"));
    }
    opts = opts.host(&host).port(port);
    if !db.is_empty() {
        opts = opts.database(db);
    }
    opts = opts.ssl_mode(MySqlSslMode::Disabled);
    for kv in params.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| err(&format!("parameter {kv:?} is not name=value")))?;
        match k {
            "tls" => match v {
                "false" => {}
                "skip-verify" | "preferred" => opts = opts.ssl_mode(MySqlSslMode::Preferred),
                other => {
                    return Err(err(&format!(
                        "tls={other} is not supported (use tls=false or tls=skip-verify)"
                    )));
                }
            },
            "charset" => {
                let first = v.split(',').next().unwrap_or(v);
                opts = opts.charset(first);
            }
            "collation" => opts = opts.collation(v),
            // Accepted for compatibility with Dapr's DSNs; sqlx behaves this way already.
            _ => {}
        }
    }
    Ok((opts, format!("{host}:{port}")))
}

fn parse_settings(cfg: &ComponentConfig) -> Result<(MySqlConnectOptions, Settings), String> {
    let raw = cfg.get("connectionString").unwrap_or_default().trim();
    if raw.is_empty() {
        return Err("connectionString is required".into());
    }
    let (opts, endpoint) = parse_dsn(raw)?;
    let schema = parse_ident(
        "schemaName",
        cfg.get("schemaName").unwrap_or("dapr_state_store"),
    )?;
    let table = parse_ident("tableName", cfg.get("tableName").unwrap_or("state"))?;
    let metadata_table = parse_ident(
        "metadataTableName",
        cfg.get("metadataTableName").unwrap_or("dapr_metadata"),
    )?;
    if table == metadata_table {
        return Err("metadataTableName must differ from tableName".into());
    }
    let secs = match cfg.get("timeoutInSeconds") {
        None => 20,
        Some(v) => v
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|s| *s > 0)
            .ok_or_else(|| format!("timeoutInSeconds: {v:?} is not a positive integer"))?,
    };
    Ok((
        opts,
        Settings {
            table: format!("`{schema}`.`{table}`"),
            metadata_table: format!("`{schema}`.`{metadata_table}`"),
            schema,
            timeout: Duration::from_secs(secs),
            cleanup_interval: parse_cleanup(cfg.get("cleanupInterval"))?,
            endpoint,
        },
    ))
}

fn build(cfg: &ComponentConfig) -> Result<Arc<dyn StoreFactory>, String> {
    let (opts, settings) = parse_settings(cfg)?;
    // No idle timeout, no lifetime and no minimum: sqlx would spawn maintenance tasks at once,
    // and components are also loaded (validated) outside a Tokio runtime.
    let pool = MySqlPoolOptions::new()
        .max_connections(8)
        .min_connections(0)
        .idle_timeout(None)
        .max_lifetime(None)
        .acquire_timeout(settings.timeout)
        .connect_lazy_with(opts);
    Ok(Arc::new(MySqlFactory {
        common: Arc::new(Common {
            pool,
            settings,
            migrated: tokio::sync::OnceCell::new(),
        }),
    }))
}

struct MySqlFactory {
    common: Arc<Common>,
}

impl StoreFactory for MySqlFactory {
    fn create(&self) -> Result<Arc<dyn StateStore>, StoreError> {
        Ok(Arc::new(MySqlStore {
            c: self.common.clone(),
        }))
    }

    fn capabilities(&self) -> CapabilitySet {
        CAPABILITIES
    }
}

struct Common {
    pool: MySqlPool,
    settings: Settings,
    migrated: tokio::sync::OnceCell<()>,
}

struct MySqlStore {
    c: Arc<Common>,
}

fn db_err(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::PoolTimedOut => {
            StoreError::Unavailable("timed out waiting for a MySQL connection".into())
        }
        sqlx::Error::Io(e) => StoreError::Unavailable(format!("MySQL I/O error: {e}")),
        other => StoreError::Internal(format!("MySQL error: {other}")),
    }
}

fn is_duplicate(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => {
            d.is_unique_violation() || d.code().is_some_and(|c| c == ER_DUP_ENTRY)
        }
        _ => false,
    }
}

impl MySqlStore {
    async fn timed<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let t = self.c.settings.timeout;
        match tokio::time::timeout(t, async {
            self.migrate().await?;
            f.await
        })
        .await
        {
            Ok(r) => r,
            Err(_) => Err(StoreError::Timeout(t)),
        }
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        self.c
            .migrated
            .get_or_try_init(|| async {
                let s = &self.c.settings;
                for stmt in [
                    format!("CREATE DATABASE IF NOT EXISTS `{}`", s.schema),
                    format!(
                        "CREATE TABLE IF NOT EXISTS {} (id VARBINARY(3072) NOT NULL PRIMARY KEY, \
                         value LONGBLOB NOT NULL, etag VARCHAR(64) NOT NULL, \
                         expires_at BIGINT NULL, INDEX expires_at_idx (expires_at))",
                        s.table
                    ),
                    format!(
                        "CREATE TABLE IF NOT EXISTS {} (id VARCHAR(255) NOT NULL PRIMARY KEY, \
                         value TEXT NOT NULL)",
                        s.metadata_table
                    ),
                ] {
                    sqlx::query(&stmt)
                        .execute(&self.c.pool)
                        .await
                        .map_err(db_err)?;
                }
                Ok::<(), StoreError>(())
            })
            .await
            .map(|_| ())
    }
}

async fn exec_set(
    tx: &mut Transaction<'_, MySql>,
    table: &str,
    req: &SetRequest,
) -> Result<(), StoreError> {
    let now = now_ms();
    let exp = expiry(req.ttl, now);
    let etag = new_etag();
    let value: &[u8] = &req.value;
    let key = key_bytes(&req.key)?;
    if let Some(old) = &req.etag {
        let old = check_etag(old)?;
        let n = sqlx::query(&format!(
            "UPDATE {table} SET value = ?, etag = ?, expires_at = ? WHERE id = ? AND etag = BINARY ? \
             AND (expires_at IS NULL OR expires_at > ?)"
        ))
        .bind(value)
        .bind(&etag)
        .bind(exp)
        .bind(key)
        .bind(old)
        .bind(now)
        .execute(&mut **tx)
        .await
        .map_err(db_err)?
        .rows_affected();
        return if n == 0 {
            Err(StoreError::EtagMismatch(None))
        } else {
            Ok(())
        };
    }
    if req.options.concurrency == Concurrency::FirstWrite {
        // An expired row does not exist: remove it, then insert; a live duplicate fails.
        sqlx::query(&format!(
            "DELETE FROM {table} WHERE id = ? AND expires_at IS NOT NULL AND expires_at <= ?"
        ))
        .bind(key)
        .bind(now)
        .execute(&mut **tx)
        .await
        .map_err(db_err)?;
        return match sqlx::query(&format!(
            "INSERT INTO {table} (id, value, etag, expires_at) VALUES (?, ?, ?, ?)"
        ))
        .bind(key)
        .bind(value)
        .bind(&etag)
        .bind(exp)
        .execute(&mut **tx)
        .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_duplicate(&e) => Err(first_write_conflict()),
            Err(e) => Err(db_err(e)),
        };
    }
    sqlx::query(&format!(
        "INSERT INTO {table} (id, value, etag, expires_at) VALUES (?, ?, ?, ?) \
         ON DUPLICATE KEY UPDATE value = VALUES(value), etag = VALUES(etag), \
         expires_at = VALUES(expires_at)"
    ))
    .bind(key)
    .bind(value)
    .bind(&etag)
    .bind(exp)
    .execute(&mut **tx)
    .await
    .map_err(db_err)?;
    Ok(())
}

async fn exec_delete(
    tx: &mut Transaction<'_, MySql>,
    table: &str,
    req: &DeleteRequest,
) -> Result<(), StoreError> {
    let key: &[u8] = req.key.as_bytes();
    match &req.etag {
        None => {
            sqlx::query(&format!("DELETE FROM {table} WHERE id = ?"))
                .bind(key)
                .execute(&mut **tx)
                .await
                .map_err(db_err)?;
            Ok(())
        }
        Some(old) => {
            let old = check_etag(old)?;
            let n = sqlx::query(&format!(
                "DELETE FROM {table} WHERE id = ? AND etag = BINARY ? \
                 AND (expires_at IS NULL OR expires_at > ?)"
            ))
            .bind(key)
            .bind(old)
            .bind(now_ms())
            .execute(&mut **tx)
            .await
            .map_err(db_err)?
            .rows_affected();
            if n == 0 {
                Err(StoreError::EtagMismatch(None))
            } else {
                Ok(())
            }
        }
    }
}

#[async_trait]
impl StateStore for MySqlStore {
    async fn get(&self, req: GetRequest) -> Result<Option<StateEntry>, StoreError> {
        self.timed(async {
            let row = sqlx::query(&format!(
                "SELECT value, etag, expires_at FROM {} WHERE id = ? \
                 AND (expires_at IS NULL OR expires_at > ?)",
                self.c.settings.table
            ))
            .bind(req.key.as_bytes())
            .bind(now_ms())
            .fetch_optional(&self.c.pool)
            .await
            .map_err(db_err)?;
            Ok(row.map(|r| entry(r.get(0), r.get(1), r.get(2))))
        })
        .await
    }

    async fn set(&self, req: SetRequest) -> Result<(), StoreError> {
        self.timed(async {
            let mut tx = self.c.pool.begin().await.map_err(db_err)?;
            exec_set(&mut tx, &self.c.settings.table, &req).await?;
            tx.commit().await.map_err(db_err)
        })
        .await
    }

    async fn delete(&self, req: DeleteRequest) -> Result<(), StoreError> {
        self.timed(async {
            let mut tx = self.c.pool.begin().await.map_err(db_err)?;
            exec_delete(&mut tx, &self.c.settings.table, &req).await?;
            tx.commit().await.map_err(db_err)
        })
        .await
    }

    async fn bulk_get(&self, reqs: Vec<GetRequest>, _parallelism: usize) -> Vec<BulkGetItem> {
        let keys: Vec<String> = reqs.into_iter().map(|r| r.key).collect();
        let res = self
            .timed(async {
                let mut found = std::collections::HashMap::new();
                let now = now_ms();
                for chunk in keys.chunks(BULK_GET_CHUNK) {
                    let marks = vec!["?"; chunk.len()].join(", ");
                    let sql = format!(
                        "SELECT id, value, etag, expires_at FROM {} WHERE id IN ({marks}) \
                         AND (expires_at IS NULL OR expires_at > ?)",
                        self.c.settings.table
                    );
                    let mut q = sqlx::query(&sql).persistent(false);
                    for k in chunk {
                        q = q.bind(k.as_bytes());
                    }
                    let rows = q.bind(now).fetch_all(&self.c.pool).await.map_err(db_err)?;
                    for r in rows {
                        let k: Vec<u8> = r.get(0);
                        found.insert(
                            String::from_utf8_lossy(&k).into_owned(),
                            entry(r.get(1), r.get(2), r.get(3)),
                        );
                    }
                }
                Ok(found)
            })
            .await;
        match res {
            Ok(found) => keys.iter().map(|k| Ok(found.get(k).cloned())).collect(),
            Err(e) => keys.iter().map(|_| Err(e.clone())).collect(),
        }
    }

    async fn bulk_set(&self, reqs: Vec<SetRequest>) -> Vec<Result<(), StoreError>> {
        let n = reqs.len();
        let res = self
            .timed(async {
                let mut tx = self.c.pool.begin().await.map_err(db_err)?;
                let mut out = Vec::with_capacity(n);
                for r in &reqs {
                    out.push(exec_set(&mut tx, &self.c.settings.table, r).await);
                }
                tx.commit().await.map_err(db_err)?;
                Ok(out)
            })
            .await;
        res.unwrap_or_else(|e| (0..n).map(|_| Err(e.clone())).collect())
    }

    async fn bulk_delete(&self, reqs: Vec<DeleteRequest>) -> Vec<Result<(), StoreError>> {
        let n = reqs.len();
        let res = self
            .timed(async {
                let mut tx = self.c.pool.begin().await.map_err(db_err)?;
                let mut out = Vec::with_capacity(n);
                for r in &reqs {
                    out.push(exec_delete(&mut tx, &self.c.settings.table, r).await);
                }
                tx.commit().await.map_err(db_err)?;
                Ok(out)
            })
            .await;
        res.unwrap_or_else(|e| (0..n).map(|_| Err(e.clone())).collect())
    }

    async fn transact(&self, req: TransactionRequest) -> Result<(), StoreError> {
        self.timed(async {
            let mut tx = self.c.pool.begin().await.map_err(db_err)?;
            for op in &req.operations {
                match op {
                    TransactionOp::Upsert(r) => {
                        exec_set(&mut tx, &self.c.settings.table, r).await?
                    }
                    TransactionOp::Delete(r) => {
                        exec_delete(&mut tx, &self.c.settings.table, r).await?
                    }
                }
            }
            tx.commit().await.map_err(db_err)
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.timed(async {
            sqlx::query("SELECT 1")
                .execute(&self.c.pool)
                .await
                .map(|_| ())
                .map_err(db_err)
        })
        .await
    }

    fn housekeeping_interval(&self) -> Option<Duration> {
        self.c.settings.cleanup_interval
    }

    async fn housekeeping(&self) {
        let r = self
            .timed(async {
                sqlx::query(&format!(
                    "DELETE FROM {} WHERE expires_at IS NOT NULL AND expires_at <= ?",
                    self.c.settings.table
                ))
                .bind(now_ms())
                .execute(&self.c.pool)
                .await
                .map_err(db_err)
            })
            .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "MySQL cleanup of expired rows failed");
        }
    }
}

/// The server and table the store's rows live in; the server as `host:port` normalised
/// (`localhost` is `127.0.0.1`, case folded, default port), so two spellings of one server
/// compare equal.
fn locations(cfg: &ComponentConfig) -> Vec<String> {
    let Ok((_, s)) = parse_settings(cfg) else {
        return Vec::new();
    };
    let (server, _) = super::normalize_endpoint(&s.endpoint, 3306);
    vec![format!("state.mysql:{server}/{}", s.table.replace('`', ""))]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_dsns_parse_and_bad_ones_name_the_field() {
        let (o, ep) =
            parse_dsn("root:@tcp(127.0.0.1:3306)/test?allowNativePasswords=true").unwrap();
        assert_eq!(ep, "127.0.0.1:3306");
        assert_eq!(o.get_username(), "root");
        assert_eq!(o.get_database(), Some("test"));
        let (o, ep) = parse_dsn("u:p@tcp(db.example)/").unwrap();
        assert_eq!(ep, "db.example:3306");
        assert_eq!(o.get_database(), None);
        assert!(parse_dsn("u:p@tcp(h:1)/d?tls=skip-verify").is_ok());
        assert!(parse_dsn("u:p@tcp(h:1)/d?tls=false").is_ok());
        for bad in [
            "u:p@tcp(h:1)/d?tls=true",
            "u:p@tcp(h:1)/d?tls=custom",
            "u:p@unix(/tmp/s)/d",
            "u:p@tcp(h:port)/d",
            "no-slash",
            ":p@tcp(h:1)/d",
            "u:p@tcp(h:1)/d?novalue",
        ] {
            let e = parse_dsn(bad)
                .err()
                .unwrap_or_else(|| panic!("{bad} accepted"));
            assert!(e.starts_with("connectionString"), "{bad}: {e}");
        }
    }

    fn config(extra: &[(&str, &str)]) -> ComponentConfig {
        let mut metadata: std::collections::HashMap<String, String> = extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        metadata
            .entry("connectionString".into())
            .or_insert_with(|| {
                std::env::var("MYSQL_URL")
                    .unwrap_or_else(|_| "root:@tcp(127.0.0.1:3306)/test".into())
            });
        ComponentConfig {
            name: "my".into(),
            component_type: "state.mysql".into(),
            version: "v1".into(),
            metadata,
        }
    }

    #[test]
    fn malformed_settings_name_their_field() {
        for (meta, field) in [
            (("schemaName", "a-b"), "schemaName"),
            (("tableName", "x y"), "tableName"),
            (("timeoutInSeconds", "0"), "timeoutInSeconds"),
            (("cleanupInterval", "later"), "cleanupInterval"),
            (
                ("connectionString", "u:p@tcp(h:1)/d?tls=true"),
                "connectionString",
            ),
        ] {
            let e = build(&config(&[meta]))
                .err()
                .unwrap_or_else(|| panic!("{meta:?} accepted"));
            assert!(e.contains(field), "{meta:?}: {e}");
        }
    }

    /// Against the local MariaDB (`MYSQL_URL`), on a schema of its own: the schema is created,
    /// a new factory reads what the first wrote, and the sweep deletes only expired rows.
    #[tokio::test]
    async fn schema_is_created_and_expired_rows_are_swept() {
        use crate::model::{Metadata, StateOptions, Ttl};
        let schema = format!("unit_{:016x}", rand::random::<u64>());
        let cfg = config(&[("schemaName", &schema)]);
        let s = build(&cfg).unwrap().create().unwrap();
        let set = |key: &str, ttl| SetRequest {
            key: key.into(),
            value: bytes::Bytes::from_static(b"v"),
            etag: None,
            options: StateOptions::default(),
            ttl,
            metadata: Metadata::new(),
        };
        s.set(set("keep", None)).await.unwrap();
        s.set(set("gone", Some(Ttl::Seconds(1)))).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let again = build(&cfg).unwrap().create().unwrap();
        let get = |key: &str| GetRequest {
            key: key.into(),
            consistency: Default::default(),
            metadata: Metadata::new(),
        };
        assert!(again.get(get("keep")).await.unwrap().is_some());
        assert!(again.get(get("gone")).await.unwrap().is_none());
        let (opts, _) = parse_settings(&cfg).unwrap();
        let pool = MySqlPool::connect_with(opts).await.unwrap();
        let count = |pool: MySqlPool, schema: String| async move {
            sqlx::query_scalar::<_, i64>(&format!("SELECT count(*) FROM `{schema}`.`state`"))
                .fetch_one(&pool)
                .await
                .unwrap()
        };
        assert_eq!(count(pool.clone(), schema.clone()).await, 2);
        again.housekeeping().await;
        assert_eq!(count(pool.clone(), schema.clone()).await, 1);
        sqlx::query(&format!("DROP DATABASE `{schema}`"))
            .execute(&pool)
            .await
            .unwrap();
    }

    /// A key longer than the column is the caller's error, never a database error or a cut
    /// key; the longest one that fits round-trips.
    #[tokio::test]
    async fn keys_longer_than_the_column_are_refused_before_the_database() {
        use crate::model::{Metadata, StateOptions};
        let schema = format!("unit_{:016x}", rand::random::<u64>());
        let cfg = config(&[("schemaName", &schema)]);
        let s = build(&cfg).unwrap().create().unwrap();
        let set = |key: String| SetRequest {
            key,
            value: bytes::Bytes::from_static(b"v"),
            etag: None,
            options: StateOptions::default(),
            ttl: None,
            metadata: Metadata::new(),
        };
        let fits = "k".repeat(MAX_KEY_BYTES);
        s.set(set(fits.clone())).await.unwrap();
        let got = s
            .get(GetRequest {
                key: fits.clone(),
                consistency: Default::default(),
                metadata: Metadata::new(),
            })
            .await
            .unwrap();
        assert!(got.is_some());
        let long = format!("{fits}x");
        let e = s.set(set(long.clone())).await.unwrap_err();
        assert!(
            matches!(&e, StoreError::InvalidRequest(m) if m.contains("3073 bytes")),
            "{e:?}"
        );
        let e = s
            .transact(TransactionRequest {
                operations: vec![TransactionOp::Upsert(set(long))],
                metadata: Metadata::new(),
            })
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::InvalidRequest(_)), "{e:?}");
        let (opts, _) = parse_settings(&cfg).unwrap();
        let pool = MySqlPool::connect_with(opts).await.unwrap();
        sqlx::query(&format!("DROP DATABASE `{schema}`"))
            .execute(&pool)
            .await
            .unwrap();
    }
}
