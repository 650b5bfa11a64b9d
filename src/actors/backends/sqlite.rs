//! `state.sqlite`: durable state in one SQLite table, through sqlx's async SQLite driver (the
//! database runs on sqlx's worker thread, never on a serving thread).
//!
//! # Table layout
//!
//! ```sql
//! CREATE TABLE <tableName> (
//!   key        TEXT NOT NULL PRIMARY KEY,  -- the prefixed key
//!   value      BLOB NOT NULL,              -- the bytes exactly as written
//!   etag       TEXT NOT NULL,              -- a random 128-bit value, fresh on every write
//!   expires_at INTEGER NULL);              -- TTL as Unix milliseconds; NULL means never
//! ```
//!
//! ETags are random 128-bit values, so one never repeats for a key (even after a delete).
//! Conditional writes are single statements (`UPDATE ... WHERE etag = ?`, `INSERT ... ON
//! CONFLICT DO UPDATE ... WHERE expired`); bulk writes and transactions run in one database
//! transaction. Expired rows are invisible at once and deleted by the periodic cleanup.
//!
//! Durability: WAL with `synchronous=FULL` by default, so an acknowledged write survives a
//! power loss, not only a process crash (NORMAL in WAL mode may lose the last commits on
//! power loss). `disableWAL: true` uses the rollback journal (DELETE mode), also FULL.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Row, Sqlite, Transaction};

use super::sql_rows::{self, SqlRows};
use super::{ComponentConfig, Descriptor, Field, FieldKind, parse_duration};
use crate::actors::{BulkGetItem, StateStore, StoreError, StoreFactory};
use crate::capabilities::{Capability, CapabilitySet};
use crate::model::{
    Concurrency, DeleteRequest, GetRequest, Metadata, SetRequest, StateEntry, TTL_EXPIRE_TIME,
    TransactionRequest, Ttl, format_expire_time,
};

/// The backend's self-description.
pub const DESCRIPTOR: Descriptor = Descriptor {
    component_type: "state.sqlite",
    aliases: &[],
    versions: &["v1"],
    capabilities: CAPABILITIES,
    conditional: CapabilitySet::EMPTY,
    lists_keys: true,
    per_process: false,
    variants: &[],
    metadata: &[
        Field::new(
            "connectionString",
            FieldKind::String,
            "database file path or file: URI (:memory: for a private in-memory database)",
        )
        .required(),
        Field::new(
            "tableName",
            FieldKind::String,
            "state table (default state)",
        ),
        Field::new(
            "metadataTableName",
            FieldKind::String,
            "table for bookkeeping (default metadata)",
        ),
        super::SQL_TIMEOUT_FIELDS[0],
        super::SQL_TIMEOUT_FIELDS[1],
        super::SQL_TIMEOUT_FIELDS[2],
        Field::new(
            "busyTimeout",
            FieldKind::Duration,
            "how long a statement waits for a lock held by another connection (default 2s)",
        ),
        Field::new(
            "disableWAL",
            FieldKind::Bool,
            "use the rollback journal instead of write-ahead logging (default false)",
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

/// Most keys read by one bulk-get statement (SQLite's default host-parameter limit is 32766).
const BULK_GET_CHUNK: usize = 500;

#[derive(Debug, Clone)]
struct Settings {
    table: String,
    metadata_table: String,
    timeout: Duration,
    cleanup_interval: Option<Duration>,
}

/// A plain SQL identifier (letters, digits, underscore; not starting with a digit).
pub(super) fn parse_ident(field: &str, raw: &str) -> Result<String, String> {
    let ok = !raw.is_empty()
        && raw.len() <= 64
        && raw.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !raw.starts_with(|c: char| c.is_ascii_digit());
    if ok {
        Ok(raw.to_owned())
    } else {
        Err(format!(
            "{field}: {raw:?} is not a plain identifier (letters, digits, _; at most 64)"
        ))
    }
}

/// `cleanupInterval`: a duration or a number of seconds; zero or negative disables cleanup.
pub(super) fn parse_cleanup(raw: Option<&str>) -> Result<Option<Duration>, String> {
    let Some(v) = raw.map(str::trim) else {
        return Ok(Some(Duration::from_secs(3600)));
    };
    if v.starts_with('-') {
        return Ok(None);
    }
    let d = match v.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => parse_duration(v).map_err(|e| format!("cleanupInterval: {e}"))?,
    };
    Ok((!d.is_zero()).then_some(d))
}

fn parse_settings(cfg: &ComponentConfig) -> Result<(SqliteConnectOptions, Settings), String> {
    let raw = cfg.get("connectionString").unwrap_or_default().trim();
    if raw.is_empty() {
        return Err("connectionString is required".into());
    }
    let wal = !cfg.bool_or("disableWAL", false);
    let busy = cfg.duration_or("busyTimeout", Duration::from_secs(2));
    let opts = if raw == ":memory:" {
        SqliteConnectOptions::new().in_memory(true)
    } else if raw.starts_with("file:") || raw.starts_with("sqlite:") {
        raw.parse::<SqliteConnectOptions>()
            .map_err(|e| format!("connectionString: not a valid SQLite URI: {e}"))?
    } else {
        SqliteConnectOptions::new().filename(raw)
    };
    let in_memory = raw == ":memory:" || raw.contains("mode=memory");
    let journal = if in_memory {
        SqliteJournalMode::Memory
    } else if wal {
        SqliteJournalMode::Wal
    } else {
        SqliteJournalMode::Delete
    };
    let opts = opts
        .create_if_missing(true)
        .busy_timeout(busy)
        .synchronous(SqliteSynchronous::Full)
        .journal_mode(journal);
    let timeout = match (cfg.get("timeout"), cfg.get("timeoutInSeconds")) {
        (Some(_), _) => cfg.duration_or("timeout", Duration::from_secs(20)),
        (None, Some(_)) => Duration::from_secs(cfg.int_or("timeoutInSeconds", 20) as u64),
        (None, None) => Duration::from_secs(20),
    };
    if timeout.is_zero() {
        return Err("timeout must be greater than zero".into());
    }
    let table = parse_ident("tableName", cfg.get("tableName").unwrap_or("state"))?;
    let metadata_table = parse_ident(
        "metadataTableName",
        cfg.get("metadataTableName").unwrap_or("metadata"),
    )?;
    if table == metadata_table {
        return Err("tableName and metadataTableName must differ".into());
    }
    Ok((
        opts,
        Settings {
            table,
            metadata_table,
            timeout,
            cleanup_interval: parse_cleanup(cfg.get("cleanupInterval"))?,
        },
    ))
}

fn build(cfg: &ComponentConfig) -> Result<Arc<dyn StoreFactory>, String> {
    let (opts, settings) = parse_settings(cfg)?;
    let in_memory = opts.get_filename().to_string_lossy() == ":memory:";
    // A private in-memory database lives as long as its one connection: keep exactly one.
    let pool = sql_rows::pool_options(if in_memory { 1 } else { 4 }, settings.timeout)
        .connect_lazy_with(opts);
    let shard = |c| Arc::new(SqliteStore { c }) as Arc<dyn StateStore>;
    Ok(Arc::new(sql_rows::RowsFactory::new(
        pool,
        settings,
        CAPABILITIES,
        shard,
    )))
}

/// What all shards of the store share.
type Common = sql_rows::Rows<Sqlite, Settings>;

struct SqliteStore {
    c: Arc<Common>,
}

pub(super) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub(super) fn new_etag() -> String {
    format!("{:032x}", rand::random::<u128>())
}

pub(super) fn expiry(ttl: Option<Ttl>, now: i64) -> Option<i64> {
    match ttl {
        Some(Ttl::Seconds(s)) => Some(now + i64::from(s) * 1000),
        Some(Ttl::Never) | None => None,
    }
}

pub(super) fn entry(value: Vec<u8>, etag: String, expires_at: Option<i64>) -> StateEntry {
    let mut metadata = Metadata::new();
    if let Some(ms) = expires_at {
        let t = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
        metadata.insert(TTL_EXPIRE_TIME.to_owned(), format_expire_time(t));
    }
    StateEntry {
        data: Bytes::from(value),
        etag: Some(etag),
        metadata,
    }
}

fn db_err(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::PoolTimedOut => {
            StoreError::NotSent("timed out waiting for a SQLite connection".into())
        }
        sqlx::Error::Io(e) => StoreError::Unavailable(format!("SQLite I/O error: {e}")),
        other => StoreError::Internal(format!("SQLite error: {other}")),
    }
}

/// An ETag shaped like the ones this store issues (hex digits, at most 64); anything else is
/// invalid. A well-formed ETag that matches no row is a mismatch.
pub(super) fn check_etag(raw: &str) -> Result<&str, StoreError> {
    if !raw.is_empty() && raw.len() <= 64 && raw.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(raw)
    } else {
        Err(StoreError::EtagInvalid(raw.to_owned()))
    }
}

pub(super) fn first_write_conflict() -> StoreError {
    StoreError::EtagMismatch(Some("first-write: the key already exists".into()))
}

impl SqliteStore {
    /// Runs `f` after the schema check, bounded by the configured timeout.
    async fn timed<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        sql_rows::timed(self, f).await
    }

    async fn get_one(&self, key: &str) -> Result<Option<StateEntry>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT value, etag, expires_at FROM {} WHERE key = ? \
             AND (expires_at IS NULL OR expires_at > ?)",
            self.c.settings.table
        ))
        .bind(key)
        .bind(now_ms())
        .fetch_optional(&self.c.pool)
        .await
        .map_err(db_err)?;
        Ok(row.map(|r| entry(r.get(0), r.get(1), r.get(2))))
    }
}

impl SqlRows for SqliteStore {
    type Db = Sqlite;
    const NAME: &'static str = "state.sqlite";
    const DB_ERR: fn(sqlx::Error) -> StoreError = db_err;

    fn parts(&self) -> (&sqlx::Pool<Self::Db>, &str, Duration) {
        let c = &self.c;
        (&c.pool, &c.settings.table, c.settings.timeout)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        self.c
            .migrated
            .get_or_try_init(|| async {
                let s = &self.c.settings;
                let mut tx = self.c.pool.begin().await.map_err(db_err)?;
                for stmt in [
                    format!(
                        "CREATE TABLE IF NOT EXISTS {} (key TEXT NOT NULL PRIMARY KEY, \
                         value BLOB NOT NULL, etag TEXT NOT NULL, expires_at INTEGER NULL)",
                        s.table
                    ),
                    format!(
                        "CREATE INDEX IF NOT EXISTS {t}_expires_at_idx ON {t} (expires_at) \
                         WHERE expires_at IS NOT NULL",
                        t = s.table
                    ),
                    format!(
                        "CREATE TABLE IF NOT EXISTS {} (key TEXT NOT NULL PRIMARY KEY, \
                         value TEXT NOT NULL)",
                        s.metadata_table
                    ),
                ] {
                    sqlx::query(&stmt).execute(&mut *tx).await.map_err(db_err)?;
                }
                tx.commit().await.map_err(db_err)
            })
            .await
            .map(|_| ())
    }

    async fn exec_set(
        tx: &mut Transaction<'static, Sqlite>,
        table: &str,
        req: &SetRequest,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let exp = expiry(req.ttl, now);
        let etag = new_etag();
        let value: &[u8] = &req.value;
        let n = if let Some(old) = &req.etag {
            let old = check_etag(old)?;
            sqlx::query(&format!(
                "UPDATE {table} SET value = ?, etag = ?, expires_at = ? WHERE key = ? AND etag = ? \
                 AND (expires_at IS NULL OR expires_at > ?)"
            ))
            .bind(value)
            .bind(&etag)
            .bind(exp)
            .bind(&req.key)
            .bind(old)
            .bind(now)
            .execute(&mut **tx)
            .await
        } else if req.options.concurrency == Concurrency::FirstWrite {
            sqlx::query(&format!(
                "INSERT INTO {table} (key, value, etag, expires_at) VALUES (?, ?, ?, ?) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, etag = excluded.etag, \
                 expires_at = excluded.expires_at \
                 WHERE {table}.expires_at IS NOT NULL AND {table}.expires_at <= ?"
            ))
            .bind(&req.key)
            .bind(value)
            .bind(&etag)
            .bind(exp)
            .bind(now)
            .execute(&mut **tx)
            .await
        } else {
            sqlx::query(&format!(
                "INSERT INTO {table} (key, value, etag, expires_at) VALUES (?, ?, ?, ?) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, etag = excluded.etag, \
                 expires_at = excluded.expires_at"
            ))
            .bind(&req.key)
            .bind(value)
            .bind(&etag)
            .bind(exp)
            .execute(&mut **tx)
            .await
        }
        .map_err(db_err)?
        .rows_affected();
        match (n, &req.etag, req.options.concurrency) {
            (0, Some(_), _) => Err(StoreError::EtagMismatch(None)),
            (0, None, Concurrency::FirstWrite) => Err(first_write_conflict()),
            _ => Ok(()),
        }
    }

    async fn exec_delete(
        tx: &mut Transaction<'static, Sqlite>,
        table: &str,
        req: &DeleteRequest,
    ) -> Result<(), StoreError> {
        match &req.etag {
            None => {
                sqlx::query(&format!("DELETE FROM {table} WHERE key = ?"))
                    .bind(&req.key)
                    .execute(&mut **tx)
                    .await
                    .map_err(db_err)?;
                Ok(())
            }
            Some(old) => {
                let old = check_etag(old)?;
                let n = sqlx::query(&format!(
                    "DELETE FROM {table} WHERE key = ? AND etag = ? \
                     AND (expires_at IS NULL OR expires_at > ?)"
                ))
                .bind(&req.key)
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
}

sql_rows::sql_state_store!(SqliteStore {
    async fn get(&self, req: GetRequest) -> Result<Option<StateEntry>, StoreError> {
        self.timed(self.get_one(&req.key)).await
    }

    async fn list_keys(
        &self,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<crate::actors::KeyPage, StoreError> {
        self.list_keys_with_prefix("", cursor, limit).await
    }

    /// One range read over the primary key (`TEXT`, compared by bytes).
    async fn list_keys_with_prefix(
        &self,
        prefix: &str,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<crate::actors::KeyPage, StoreError> {
        let limit = limit.max(1);
        self.timed(async {
            let rows = sqlx::query(&sql_rows::key_page_sql(&self.c.settings.table, "key"))
                .bind(prefix)
                .bind(cursor.as_deref().unwrap_or(""))
                .bind(now_ms())
                .bind(i64::try_from(limit).unwrap_or(i64::MAX - 1) + 1)
                .fetch_all(&self.c.pool)
                .await
                .map_err(db_err)?;
            let keys = rows.iter().map(|r| r.get::<String, _>(0)).collect();
            Ok(sql_rows::key_page(keys, prefix, limit))
        })
        .await
    }

    async fn set(&self, req: SetRequest) -> Result<(), StoreError> {
        sql_rows::write_one(self, &req).await
    }

    async fn delete(&self, req: DeleteRequest) -> Result<(), StoreError> {
        sql_rows::write_one(self, &req).await
    }

    async fn bulk_get(&self, reqs: Vec<GetRequest>, _parallelism: usize) -> Vec<BulkGetItem> {
        let keys: Vec<String> = reqs.into_iter().map(|r| r.key).collect();
        let res = self
            .timed(async {
                let mut found = HashMap::new();
                let now = now_ms();
                for chunk in keys.chunks(BULK_GET_CHUNK) {
                    let marks = vec!["?"; chunk.len()].join(", ");
                    let sql = format!(
                        "SELECT key, value, etag, expires_at FROM {} WHERE key IN ({marks}) \
                         AND (expires_at IS NULL OR expires_at > ?)",
                        self.c.settings.table
                    );
                    let mut q = sqlx::query(&sql).persistent(false);
                    for k in chunk {
                        q = q.bind(k);
                    }
                    let rows = q.bind(now).fetch_all(&self.c.pool).await.map_err(db_err)?;
                    for r in rows {
                        let k: String = r.get(0);
                        found.insert(k, entry(r.get(1), r.get(2), r.get(3)));
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

});

/// The database file and table the store's rows live in: the file as one absolute path
/// whatever the spelling (`file:` URI, relative, `./` and `..` detours, symbolic links of the
/// part that exists), also before the file is created, and the table name in lower case
/// (SQLite compares names case-insensitively), so that two spellings of one table compare equal.
fn locations(cfg: &ComponentConfig) -> Vec<String> {
    let Ok((opts, settings)) = parse_settings(cfg) else {
        return Vec::new();
    };
    let file = opts.get_filename().to_string_lossy().into_owned();
    let Some(path) = physical_path(&file) else {
        return Vec::new();
    };
    vec![format!(
        "state.sqlite:{}/{}",
        path.display(),
        settings.table.to_ascii_lowercase()
    )]
}

/// The file SQLite opens for `file` (a path, or a `file:` URI as SQLite reads it), absolute
/// and normalised; `None` for a private in-memory database.
fn physical_path(file: &str) -> Option<std::path::PathBuf> {
    use std::path::{Component, PathBuf};
    if file == ":memory:" || file.is_empty() {
        return None;
    }
    let path = match file.strip_prefix("file:") {
        Some(uri) => {
            let uri = uri.split(['?', '#']).next().unwrap_or_default();
            // file://[localhost]/abs/path: drop the (empty or local) authority.
            let uri = match uri.strip_prefix("//") {
                Some(rest) => &rest[rest.find('/').unwrap_or(rest.len())..],
                None => uri,
            };
            if uri == ":memory:" || uri.is_empty() {
                return None;
            }
            percent_decode(uri)
        }
        None => file.to_owned(),
    };
    let path = std::path::Path::new(&path);
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().ok()?.join(path)
    };
    let mut lexical = PathBuf::new();
    for c in abs.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                lexical.pop();
            }
            other => lexical.push(other),
        }
    }
    // Resolve symbolic links in the longest part that exists; keep the rest as written.
    let mut existing = lexical.clone();
    let mut missing = Vec::new();
    while !existing.exists() {
        match existing.file_name() {
            Some(name) => {
                missing.push(name.to_owned());
                existing.pop();
            }
            None => break,
        }
    }
    let mut out = std::fs::canonicalize(&existing).unwrap_or(existing);
    out.extend(missing.iter().rev());
    Some(out)
}

/// `%XX` escapes of a URI path decoded (others kept as written).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    //! Settings parsing, ETag generation, and the store on a real database file (SQLite needs
    //! no service): persistence across a new factory, TTL expiry and cleanup, first-write over
    //! an expired row, all-or-nothing transactions, and the journal mode.

    use std::collections::HashMap;

    use super::*;
    use crate::model::StateOptions;
    use crate::model::TransactionOp;
    use sqlx::sqlite::SqlitePool;

    fn config(extra: &[(&str, &str)]) -> ComponentConfig {
        ComponentConfig {
            name: "lite".into(),
            component_type: "state.sqlite".into(),
            version: "v1".into(),
            metadata: extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<HashMap<_, _>>(),
        }
    }

    fn store(cfg: &ComponentConfig) -> Arc<dyn StateStore> {
        build(cfg).unwrap().create().unwrap()
    }

    fn set(key: &str, value: &str, etag: Option<&str>, ttl: Option<Ttl>) -> SetRequest {
        SetRequest {
            key: key.into(),
            value: Bytes::from(value.to_owned()),
            etag: etag.map(str::to_owned),
            options: StateOptions::default(),
            ttl,
            metadata: Metadata::new(),
        }
    }

    fn get(key: &str) -> GetRequest {
        GetRequest {
            key: key.into(),
            consistency: Default::default(),
            metadata: Metadata::new(),
        }
    }

    #[test]
    fn settings_defaults_and_malformed_values_name_their_field() {
        let (_, s) = parse_settings(&config(&[("connectionString", "x.db")])).unwrap();
        assert_eq!(s.table, "state");
        assert_eq!(s.metadata_table, "metadata");
        assert_eq!(s.timeout, Duration::from_secs(20));
        assert_eq!(s.cleanup_interval, Some(Duration::from_secs(3600)));
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[], "connectionString"),
            (&[("connectionString", "  ")], "connectionString"),
            (
                &[("connectionString", "x.db"), ("tableName", "a-b")],
                "tableName",
            ),
            (
                &[("connectionString", "x.db"), ("metadataTableName", "1x")],
                "metadataTableName",
            ),
            (
                &[("connectionString", "x.db"), ("cleanupInterval", "soon")],
                "cleanupInterval",
            ),
            (
                &[
                    ("connectionString", "x.db"),
                    ("tableName", "t"),
                    ("metadataTableName", "t"),
                ],
                "metadataTableName",
            ),
            (
                &[("connectionString", "x.db"), ("timeout", "0s")],
                "timeout",
            ),
        ];
        for (meta, field) in cases {
            let err = parse_settings(&config(meta)).err().unwrap_or_else(|| {
                panic!("{meta:?} accepted");
            });
            assert!(err.contains(field), "{meta:?}: {err}");
        }
        assert_eq!(parse_cleanup(Some("0")).unwrap(), None);
        assert_eq!(parse_cleanup(Some("-1")).unwrap(), None);
        assert_eq!(
            parse_cleanup(Some("90")).unwrap(),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            parse_cleanup(Some("5m")).unwrap(),
            Some(Duration::from_secs(300))
        );
    }

    #[test]
    fn etags_never_repeat() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..20_000 {
            assert!(seen.insert(new_etag()));
        }
    }

    #[test]
    fn loading_needs_no_runtime() {
        // Components are validated outside a Tokio runtime (mecha check, config tests).
        assert!(build(&config(&[("connectionString", ":memory:")])).is_ok());
        assert!(build(&config(&[("connectionString", "file:x.db?mode=rwc")])).is_ok());
    }

    #[tokio::test]
    async fn state_survives_a_new_factory_on_the_same_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let cfg = config(&[("connectionString", path.to_str().unwrap())]);
        let s = store(&cfg);
        s.set(set("k", "v1", None, None)).await.unwrap();
        let e1 = s.get(get("k")).await.unwrap().unwrap().etag.unwrap();
        s.set(set("k", "v2", Some(&e1), None)).await.unwrap();
        let e2 = s.get(get("k")).await.unwrap().unwrap().etag.unwrap();
        assert_ne!(e1, e2);
        drop(s);
        let again = store(&cfg);
        let got = again.get(get("k")).await.unwrap().unwrap();
        assert_eq!(got.data, Bytes::from("v2"));
        assert_eq!(got.etag.as_deref(), Some(e2.as_str()));
        // The stale ETag no longer guards anything, on a missing key either.
        assert!(matches!(
            again.set(set("k", "v3", Some(&e1), None)).await,
            Err(StoreError::EtagMismatch(_))
        ));
        assert!(matches!(
            again.set(set("nope", "v", Some(&e2), None)).await,
            Err(StoreError::EtagMismatch(_))
        ));
    }

    /// A second, independent connection to the same file.
    async fn peek(path: &std::path::Path) -> SqlitePool {
        SqlitePool::connect_with(SqliteConnectOptions::new().filename(path))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn expired_rows_are_invisible_at_once_and_swept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ttl.db");
        let s = store(&config(&[("connectionString", path.to_str().unwrap())]));
        s.set(set("short", "v", None, Some(Ttl::Seconds(1))))
            .await
            .unwrap();
        s.set(set("long", "v", None, None)).await.unwrap();
        let got = s.get(get("short")).await.unwrap().unwrap();
        assert!(got.metadata.contains_key(TTL_EXPIRE_TIME));
        s.set(set("gone", "v", None, Some(Ttl::Seconds(1))))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert!(s.get(get("short")).await.unwrap().is_none());
        // First-write takes over the expired row, then refuses the live one.
        let mut fw = set("short", "fresh", None, None);
        fw.options.concurrency = Concurrency::FirstWrite;
        s.set(fw.clone()).await.unwrap();
        assert!(matches!(s.set(fw).await, Err(StoreError::EtagMismatch(_))));
        let p = peek(&path).await;
        let count = || async {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM state")
                .fetch_one(&p)
                .await
                .unwrap()
        };
        assert_eq!(count().await, 3, "the expired row is still stored");
        s.housekeeping().await;
        let keys: Vec<String> = sqlx::query_scalar("SELECT key FROM state ORDER BY key")
            .fetch_all(&p)
            .await
            .unwrap();
        assert_eq!(keys, vec!["long".to_owned(), "short".to_owned()]);
    }

    #[tokio::test]
    async fn a_transaction_with_a_failing_etag_writes_nothing() {
        let s = store(&config(&[("connectionString", ":memory:")]));
        s.set(set("a", "old", None, None)).await.unwrap();
        let req = TransactionRequest {
            operations: vec![
                TransactionOp::Upsert(set("a", "new", None, None)),
                TransactionOp::Upsert(set("b", "new", None, None)),
                TransactionOp::Upsert(set(
                    "c",
                    "new",
                    Some("0123456789abcdef0123456789abcdef"),
                    None,
                )),
            ],
            metadata: Metadata::new(),
        };
        assert!(matches!(
            s.transact(req).await,
            Err(StoreError::EtagMismatch(_))
        ));
        assert_eq!(
            s.get(get("a")).await.unwrap().unwrap().data,
            Bytes::from("old")
        );
        assert!(s.get(get("b")).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn wal_by_default_and_rollback_journal_when_disabled() {
        let dir = tempfile::tempdir().unwrap();
        for (disable, want) in [("false", "wal"), ("true", "delete")] {
            let path = dir.path().join(format!("j-{disable}.db"));
            let s = store(&config(&[
                ("connectionString", path.to_str().unwrap()),
                ("disableWAL", disable),
            ]));
            s.set(set("k", "v", None, None)).await.unwrap();
            let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
                .fetch_one(&peek(&path).await)
                .await
                .unwrap();
            assert_eq!(mode, want, "disableWAL={disable}");
        }
    }

    #[test]
    fn every_spelling_of_one_file_is_one_location() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        let want = physical_path(&format!("{d}/a b.db")).unwrap();
        for spelling in [
            format!("{d}/./x/../a b.db"),
            format!("file:{d}/a%20b.db?mode=rwc"),
            format!("file://{d}/a b.db"),
            format!("file://localhost{d}/a%20b.db#frag"),
        ] {
            assert_eq!(
                physical_path(&spelling).as_deref(),
                Some(want.as_path()),
                "{spelling}"
            );
        }
        assert!(want.is_absolute());
        assert_eq!(physical_path(":memory:"), None);
        assert_eq!(physical_path("file::memory:?cache=shared"), None);
        assert_eq!(percent_decode("a%2"), "a%2");
    }
}
