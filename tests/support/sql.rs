//! Scratch space for the SQL stores (`state.sqlite`, `state.mysql`) in suites that run an
//! attack or a check on every store: a temporary directory for SQLite files and a MySQL schema
//! of the test's own (so parallel tests and runs never share a table), both removed when the
//! value is dropped. MySQL is `MYSQL_URL` (a Go DSN) or the local MariaDB `scripts/test.sh`
//! provides; an unreachable server fails the test that uses the store, never skips it.

use std::time::Duration;

/// `MYSQL_URL`, or the local MariaDB.
pub fn mysql_dsn() -> String {
    std::env::var("MYSQL_URL").unwrap_or_else(|_| "root:@tcp(127.0.0.1:3306)/test".into())
}

/// A temporary directory and a MySQL schema name, dropped with the value.
pub struct SqlScratch {
    dir: tempfile::TempDir,
    /// The MySQL schema (database) this scratch owns.
    pub schema: String,
}

impl Default for SqlScratch {
    fn default() -> Self {
        Self::new()
    }
}

impl SqlScratch {
    pub fn new() -> SqlScratch {
        SqlScratch {
            dir: tempfile::tempdir().expect("temporary directory"),
            schema: format!("mecha_t_{:016x}", rand::random::<u64>()),
        }
    }

    /// The path of SQLite file `file` in the scratch directory.
    pub fn sqlite_path(&self, file: &str) -> String {
        self.dir.path().join(file).to_str().unwrap().to_owned()
    }

    /// A `state.sqlite` component's metadata: database file `file`, state table `table`.
    pub fn sqlite(&self, file: &str, table: &str) -> Vec<(&'static str, String)> {
        vec![
            ("connectionString", self.sqlite_path(file)),
            ("tableName", table.to_owned()),
            ("metadataTableName", format!("{table}_meta")),
        ]
    }

    /// A `state.mysql` component's metadata: state table `table` in this scratch's schema.
    pub fn mysql(&self, table: &str) -> Vec<(&'static str, String)> {
        vec![
            ("connectionString", mysql_dsn()),
            ("schemaName", self.schema.clone()),
            ("tableName", table.to_owned()),
            ("metadataTableName", format!("{table}_meta")),
        ]
    }

    /// The same metadata as `name: value` lines of a component's `spec.metadata`.
    pub fn lines(metadata: &[(&str, String)]) -> String {
        metadata
            .iter()
            .map(|(k, v)| format!("  - name: {k}\n    value: \"{v}\"\n"))
            .collect()
    }
}

impl Drop for SqlScratch {
    fn drop(&mut self) {
        drop_mysql_schema(&self.schema);
    }
}

/// `(user, password, host, port)` of a Go MySQL DSN `user[:password]@tcp(host[:port])/db`.
fn dsn_parts(dsn: &str) -> (String, String, String, u16) {
    let (creds, rest) = dsn.rsplit_once('@').unwrap_or(("root", dsn));
    let (user, password) = creds.split_once(':').unwrap_or((creds, ""));
    let addr = rest
        .split_once("tcp(")
        .and_then(|(_, a)| a.split_once(')'))
        .map(|(a, _)| a)
        .unwrap_or("");
    let (host, port) = addr.rsplit_once(':').unwrap_or((addr, "3306"));
    let host = if host.is_empty() { "127.0.0.1" } else { host };
    (
        user.to_owned(),
        password.to_owned(),
        host.to_owned(),
        port.parse().unwrap_or(3306),
    )
}

/// Drops `schema` if it exists. Runs on its own thread and runtime (called from `Drop`, maybe
/// inside another runtime). Best effort: the schema may never have been created.
pub fn drop_mysql_schema(schema: &str) {
    let schema = schema.to_owned();
    let job = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        rt.block_on(async {
            use sqlx::Connection;
            let (user, password, host, port) = dsn_parts(&mysql_dsn());
            let mut opts = sqlx::mysql::MySqlConnectOptions::new()
                .host(&host)
                .port(port)
                .username(&user)
                .ssl_mode(sqlx::mysql::MySqlSslMode::Disabled);
            if !password.is_empty() {
                opts = opts.password(&password);
            }
            let connect = sqlx::mysql::MySqlConnection::connect_with(&opts);
            let mut conn = tokio::time::timeout(Duration::from_secs(5), connect)
                .await
                .ok()?
                .ok()?;
            sqlx::query(&format!("DROP DATABASE IF EXISTS `{schema}`"))
                .execute(&mut conn)
                .await
                .ok()
        })
    });
    let _ = job.join();
}
