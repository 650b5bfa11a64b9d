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

use sqlx::mysql::{MySql, MySqlConnectOptions, MySqlSslMode};
use sqlx::{Row, Transaction};

use super::sql_rows::{self, SqlRows};
use super::sqlite::{
    check_etag, entry, expiry, first_write_conflict, new_etag, now_ms, parse_cleanup, parse_ident,
};
use super::{ComponentConfig, Descriptor, Field, FieldKind};
use crate::actors::{BulkGetItem, StateStore, StoreError, StoreFactory};
use crate::capabilities::{Capability, CapabilitySet};
use crate::model::{
    Concurrency, DeleteRequest, GetRequest, SetRequest, StateEntry, TransactionRequest,
};

/// The backend's self-description.
pub const DESCRIPTOR: Descriptor = Descriptor {
    component_type: "state.mysql",
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
            "Go DSN: user:password@tcp(host:3306)/dbname?allowNativePasswords=true",
        )
        .required()
        .sensitive(),
        Field::new(
            "pemPath",
            FieldKind::String,
            "file holding the CA certificate(s) in PEM that tls=custom verifies the server against",
        ),
        Field::new(
            "pemContents",
            FieldKind::String,
            "the CA certificate(s) in PEM, inline, that tls=custom verifies the server against",
        ),
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

/// The Go driver's `tls` DSN parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TlsParam {
    /// `tls=false` (the default): plaintext.
    Off,
    /// `tls=true`: TLS, the certificate verified against the system roots, hostname checked.
    Verify,
    /// `tls=skip-verify`: TLS required, the certificate not verified.
    SkipVerify,
    /// `tls=preferred`: TLS without verification when the server offers it, else plaintext.
    Preferred,
    /// `tls=custom`: TLS verified against the CA of `pemPath` / `pemContents`, hostname checked.
    Custom,
}

impl TlsParam {
    /// Reads the value the way the Go driver does (booleans as Go's driver spells them).
    fn parse(v: &str) -> Result<TlsParam, String> {
        Ok(match v {
            "1" | "true" | "TRUE" | "True" => TlsParam::Verify,
            "0" | "false" | "FALSE" | "False" => TlsParam::Off,
            _ if v.eq_ignore_ascii_case("skip-verify") => TlsParam::SkipVerify,
            _ if v.eq_ignore_ascii_case("preferred") => TlsParam::Preferred,
            "custom" => TlsParam::Custom,
            other => {
                return Err(format!(
                    "tls={other} is not supported (use false, true, skip-verify, preferred, \
                     or custom with pemPath or pemContents)"
                ));
            }
        })
    }

    fn ssl_mode(self) -> MySqlSslMode {
        match self {
            TlsParam::Off => MySqlSslMode::Disabled,
            TlsParam::Verify | TlsParam::Custom => MySqlSslMode::VerifyIdentity,
            TlsParam::SkipVerify => MySqlSslMode::Required,
            TlsParam::Preferred => MySqlSslMode::Preferred,
        }
    }
}

/// A parsed Go MySQL driver DSN.
pub(crate) struct Dsn {
    pub(crate) opts: MySqlConnectOptions,
    /// `host:port`.
    pub(crate) endpoint: String,
    pub(crate) tls: TlsParam,
}

/// Parses a Go MySQL driver DSN: `[user[:password]@][tcp[(host[:port])]]/dbname[?params]`.
/// With `tls=custom` the CA still has to be added ([`parse_settings`] does).
pub(crate) fn parse_dsn(raw: &str) -> Result<Dsn, String> {
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
    let mut tls = TlsParam::Off;
    for kv in params.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| err(&format!("parameter {kv:?} is not name=value")))?;
        match k {
            "tls" => tls = TlsParam::parse(v).map_err(|m| err(&m))?,
            "charset" => {
                let first = v.split(',').next().unwrap_or(v);
                opts = opts.charset(first);
            }
            "collation" => opts = opts.collation(v),
            // Accepted for compatibility with Dapr's DSNs; sqlx behaves this way already.
            _ => {}
        }
    }
    Ok(Dsn {
        opts: opts.ssl_mode(tls.ssl_mode()),
        endpoint: format!("{host}:{port}"),
        tls,
    })
}

/// The CA of `tls=custom`: `pemPath` or `pemContents` (not both), read and checked now so a
/// bad certificate is a load error naming its field. Returns the field set and the PEM.
fn custom_ca(cfg: &ComponentConfig) -> Result<Option<(&'static str, Vec<u8>)>, String> {
    let path = cfg.get("pemPath").map(str::trim).filter(|p| !p.is_empty());
    let contents = cfg.get("pemContents").filter(|c| !c.trim().is_empty());
    let (field, pem) = match (path, contents) {
        (None, None) => return Ok(None),
        (Some(_), Some(_)) => {
            return Err("pemPath and pemContents: set only one of them".into());
        }
        (Some(p), None) => (
            "pemPath",
            std::fs::read(p).map_err(|e| format!("pemPath: cannot read {p:?}: {e}"))?,
        ),
        (None, Some(c)) => ("pemContents", c.as_bytes().to_vec()),
    };
    check_ca_pem(&pem).map_err(|m| format!("{field}: {m}"))?;
    Ok(Some((field, pem)))
}

/// Accepts PEM holding at least one certificate, every one a well-formed X.509 certificate.
fn check_ca_pem(pem: &[u8]) -> Result<(), String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| format!("not valid PEM: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("not a valid X.509 certificate: {e}"))?;
    }
    if roots.is_empty() {
        return Err("no CERTIFICATE block in the PEM".into());
    }
    Ok(())
}

fn parse_settings(cfg: &ComponentConfig) -> Result<(MySqlConnectOptions, Settings), String> {
    let raw = cfg.get("connectionString").unwrap_or_default().trim();
    if raw.is_empty() {
        return Err("connectionString is required".into());
    }
    let Dsn {
        mut opts,
        endpoint,
        tls,
    } = parse_dsn(raw)?;
    match (tls, custom_ca(cfg)?) {
        (TlsParam::Custom, Some((_, pem))) => opts = opts.ssl_ca_from_pem(pem),
        (TlsParam::Custom, None) => {
            return Err(
                "connectionString: tls=custom needs the CA certificate in pemPath or pemContents"
                    .into(),
            );
        }
        (_, Some((field, _))) => {
            return Err(format!(
                "{field}: only used with tls=custom in connectionString"
            ));
        }
        (_, None) => {}
    }
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
    let pool = sql_rows::pool_options(8, settings.timeout).connect_lazy_with(opts);
    let shard = |c| Arc::new(MySqlStore { c }) as Arc<dyn StateStore>;
    Ok(Arc::new(sql_rows::RowsFactory::new(
        pool,
        settings,
        CAPABILITIES,
        shard,
    )))
}

/// What all shards of the store share.
type Common = sql_rows::Rows<MySql, Settings>;

struct MySqlStore {
    c: Arc<Common>,
}

fn db_err(e: sqlx::Error) -> StoreError {
    match e {
        // No statement is sent before a connection is had: these never reached the table.
        sqlx::Error::PoolTimedOut => {
            StoreError::NotSent("timed out waiting for a MySQL connection".into())
        }
        // rustls reports a refused certificate as an I/O error of the handshake.
        sqlx::Error::Io(e) if e.get_ref().is_some_and(|i| i.is::<rustls::Error>()) => {
            StoreError::NotSent(format!("MySQL TLS handshake failed: {e}"))
        }
        sqlx::Error::Io(e) => StoreError::Unavailable(format!("MySQL I/O error: {e}")),
        sqlx::Error::Tls(e) => StoreError::NotSent(format!("MySQL TLS error: {e}")),
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
    /// Runs `f` after the schema check, bounded by the configured timeout.
    async fn timed<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        sql_rows::timed(self, f).await
    }
}

impl SqlRows for MySqlStore {
    type Db = MySql;
    const NAME: &'static str = "state.mysql";
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

    async fn exec_set(
        tx: &mut Transaction<'static, MySql>,
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
        tx: &mut Transaction<'static, MySql>,
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
}

sql_rows::sql_state_store!(MySqlStore {
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

    async fn list_keys(
        &self,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<crate::actors::KeyPage, StoreError> {
        self.list_keys_with_prefix("", cursor, limit).await
    }

    /// One range read over the primary key (`VARBINARY`, compared by bytes).
    async fn list_keys_with_prefix(
        &self,
        prefix: &str,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<crate::actors::KeyPage, StoreError> {
        let limit = limit.max(1);
        self.timed(async {
            let rows = sqlx::query(&sql_rows::key_page_sql(&self.c.settings.table, "id"))
                .bind(prefix.as_bytes())
                .bind(cursor.as_deref().unwrap_or("").as_bytes())
                .bind(now_ms())
                .bind(i64::try_from(limit).unwrap_or(i64::MAX - 1) + 1)
                .fetch_all(&self.c.pool)
                .await
                .map_err(db_err)?;
            let keys = rows
                .iter()
                .filter_map(|r| String::from_utf8(r.get::<Vec<u8>, _>(0)).ok())
                .collect();
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

});

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
    use crate::model::TransactionOp;
    use sqlx::mysql::MySqlPool;

    #[test]
    fn go_dsns_parse_and_bad_ones_name_the_field() {
        let d = parse_dsn("root:@tcp(127.0.0.1:3306)/test?allowNativePasswords=true").unwrap();
        assert_eq!(d.endpoint, "127.0.0.1:3306");
        assert_eq!(d.opts.get_username(), "root");
        assert_eq!(d.opts.get_database(), Some("test"));
        assert_eq!(d.tls, TlsParam::Off);
        let d = parse_dsn("u:p@tcp(db.example)/").unwrap();
        assert_eq!(d.endpoint, "db.example:3306");
        assert_eq!(d.opts.get_database(), None);
        for (param, want) in [
            ("false", TlsParam::Off),
            ("0", TlsParam::Off),
            ("true", TlsParam::Verify),
            ("1", TlsParam::Verify),
            ("skip-verify", TlsParam::SkipVerify),
            ("preferred", TlsParam::Preferred),
            ("custom", TlsParam::Custom),
        ] {
            let d = parse_dsn(&format!("u:p@tcp(h:1)/d?tls={param}")).unwrap();
            assert_eq!(d.tls, want, "tls={param}");
        }
        for bad in [
            "u:p@tcp(h:1)/d?tls=yes",
            "u:p@tcp(h:1)/d?tls=other-config",
            "u:p@tcp(h:1)/d?tls=",
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

    /// The TLS mode each `tls` value maps to: plaintext, verified (identity), encrypted
    /// without verification, or opportunistic.
    #[test]
    fn tls_values_map_to_the_go_driver_modes() {
        let mode = |dsn: &str| format!("{:?}", parse_dsn(dsn).unwrap().opts.get_ssl_mode());
        assert_eq!(mode("u:p@tcp(h:1)/d"), "Disabled");
        assert_eq!(mode("u:p@tcp(h:1)/d?tls=false"), "Disabled");
        assert_eq!(mode("u:p@tcp(h:1)/d?tls=true"), "VerifyIdentity");
        assert_eq!(mode("u:p@tcp(h:1)/d?tls=custom"), "VerifyIdentity");
        assert_eq!(mode("u:p@tcp(h:1)/d?tls=skip-verify"), "Required");
        assert_eq!(mode("u:p@tcp(h:1)/d?tls=preferred"), "Preferred");
    }

    fn ca_pem() -> String {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.self_signed(&rcgen::KeyPair::generate().unwrap())
            .unwrap()
            .pem()
    }

    /// `tls=custom` takes its CA from `pemPath` or `pemContents`; each wrong combination or
    /// bad certificate is a load error naming the field.
    #[test]
    fn custom_tls_needs_exactly_one_valid_pem() {
        let pem = ca_pem();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, &pem).unwrap();
        let path = path.to_str().unwrap();
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a certificate").unwrap();
        let custom = "u:p@tcp(h:1)/d?tls=custom";
        assert!(build(&config(&[("connectionString", custom), ("pemPath", path)])).is_ok());
        assert!(
            build(&config(&[
                ("connectionString", custom),
                ("pemContents", &pem)
            ]))
            .is_ok()
        );
        let broken = pem.replace("MII", "XXX");
        for (meta, field) in [
            (vec![("connectionString", custom)], "connectionString"),
            (
                vec![
                    ("connectionString", custom),
                    ("pemPath", path),
                    ("pemContents", &pem),
                ],
                "pemPath and pemContents",
            ),
            (
                vec![
                    ("connectionString", custom),
                    ("pemPath", "/nonexistent/ca.pem"),
                ],
                "pemPath",
            ),
            (
                vec![
                    ("connectionString", custom),
                    ("pemPath", garbage.to_str().unwrap()),
                ],
                "pemPath",
            ),
            (
                vec![("connectionString", custom), ("pemContents", "junk")],
                "pemContents",
            ),
            (
                vec![("connectionString", custom), ("pemContents", &broken)],
                "pemContents",
            ),
            (
                vec![
                    ("connectionString", "u:p@tcp(h:1)/d?tls=true"),
                    ("pemPath", path),
                ],
                "pemPath",
            ),
            (
                vec![
                    ("connectionString", "u:p@tcp(h:1)/d"),
                    ("pemContents", &pem),
                ],
                "pemContents",
            ),
        ] {
            let e = build(&config(&meta))
                .err()
                .unwrap_or_else(|| panic!("{meta:?} accepted"));
            assert!(e.starts_with(field), "{meta:?}: {e}");
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
                ("connectionString", "u:p@tcp(h:1)/d?tls=custom"),
                "connectionString",
            ),
            (
                ("connectionString", "u:p@tcp(h:1)/d?tls=bogus"),
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
