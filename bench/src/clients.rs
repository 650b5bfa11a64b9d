//! The clients: Mecha over HTTP (hyper, keep-alive connections) and gRPC (tonic channels),
//! Redis, PostgreSQL, MySQL and SQLite directly.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use mecha::gateway::grpc::proto::runtime::dapr_client::DaprClient;
use mecha::gateway::grpc::proto::runtime::{GetStateRequest, GetStateResponse};
use parking_lot::Mutex;
use tonic::Response;
use tonic::transport::Channel;

fn err(what: &str, e: impl std::fmt::Display) -> String {
    format!("{what}: {e}")
}

/// HTTP/1.1 keep-alive connections to one address, reused (one per concurrent request).
pub struct HttpPool {
    addr: SocketAddr,
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
    /// Sent as `dapr-api-token` on every request, when set.
    token: Option<String>,
}

/// A response: status, headers we look at, and the body.
pub struct HttpReply {
    pub status: StatusCode,
    pub etag: Option<String>,
    pub body: Bytes,
}

impl HttpPool {
    pub fn new(addr: SocketAddr) -> Arc<HttpPool> {
        Arc::new(HttpPool {
            addr,
            idle: Mutex::new(Vec::new()),
            token: None,
        })
    }

    /// A pool whose requests carry `dapr-api-token: token` (one app of a shared Mecha).
    pub fn with_token(addr: SocketAddr, token: &str) -> Arc<HttpPool> {
        Arc::new(HttpPool {
            addr,
            idle: Mutex::new(Vec::new()),
            token: Some(token.to_owned()),
        })
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, String> {
        let stream = tokio::net::TcpStream::connect(self.addr)
            .await
            .map_err(|e| err("connect", e))?;
        stream.set_nodelay(true).map_err(|e| err("nodelay", e))?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| err("handshake", e))?;
        tokio::spawn(conn);
        Ok(sender)
    }

    /// Sends one request on an idle connection (or a new one).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        if_etag: Option<&str>,
    ) -> Result<HttpReply, String> {
        let pooled = self.idle.lock().pop();
        let mut sender = match pooled {
            // A kept-alive connection the server closed while it was idle (actix closes
            // them after its keep-alive timeout) fails `ready`, before anything was sent:
            // open a fresh one, as any HTTP client does.
            Some(mut s) => match s.ready().await {
                Ok(()) => s,
                Err(_) => self.connect().await?,
            },
            None => self.connect().await?,
        };
        sender.ready().await.map_err(|e| err("ready", e))?;
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, "127.0.0.1");
        if body.is_some() {
            req = req.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        if let Some(e) = if_etag {
            req = req.header(hyper::header::IF_MATCH, e);
        }
        if let Some(t) = &self.token {
            req = req.header("dapr-api-token", t.as_str());
        }
        let req = req
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| err("request", e))?;
        let resp = sender.send_request(req).await.map_err(|e| err("send", e))?;
        let status = resp.status();
        let etag = resp
            .headers()
            .get(hyper::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| err("body", e))?
            .to_bytes();
        if !sender.is_closed() {
            self.idle.lock().push(sender);
        }
        Ok(HttpReply { status, etag, body })
    }
}

/// A few gRPC channels (HTTP/2 connections), used round-robin.
pub struct GrpcPool {
    clients: Vec<DaprClient<Channel>>,
}

impl GrpcPool {
    pub async fn connect(addr: SocketAddr, channels: usize) -> Result<Arc<GrpcPool>, String> {
        let mut clients = Vec::new();
        for _ in 0..channels.max(1) {
            let ch = Channel::from_shared(format!("http://{addr}"))
                .map_err(|e| err("uri", e))?
                .tcp_nodelay(true)
                .connect()
                .await
                .map_err(|e| err("grpc connect", e))?;
            clients.push(DaprClient::new(ch));
        }
        Ok(Arc::new(GrpcPool { clients }))
    }

    pub fn client(&self, seq: u64) -> DaprClient<Channel> {
        self.clients[(seq % self.clients.len() as u64) as usize].clone()
    }

    pub async fn get(
        &self,
        seq: u64,
        store: &str,
        key: String,
    ) -> Result<GetStateResponse, String> {
        let mut c = self.client(seq);
        c.get_state(GetStateRequest {
            store_name: store.to_owned(),
            key,
            ..Default::default()
        })
        .await
        .map(Response::into_inner)
        .map_err(|s| format!("grpc {:?}: {}", s.code(), s.message()))
    }
}

/// Direct Redis: multiplexed connections sending Mecha's own commands (the read pipeline,
/// the write script by SHA).
pub struct RedisDirect {
    conns: Vec<redis::aio::MultiplexedConnection>,
    write: redis::Script,
}

impl RedisDirect {
    pub async fn connect(url: &str, conns: usize) -> Result<Arc<RedisDirect>, String> {
        let client = redis::Client::open(url).map_err(|e| err("redis url", e))?;
        let mut out = Vec::new();
        for _ in 0..conns.max(1) {
            out.push(
                client
                    .get_multiplexed_async_connection()
                    .await
                    .map_err(|e| err("redis connect", e))?,
            );
        }
        Ok(Arc::new(RedisDirect {
            conns: out,
            write: redis::Script::new(mecha::actors::backends::redis::WRITE_SCRIPT),
        }))
    }

    pub fn conn(&self, seq: u64) -> redis::aio::MultiplexedConnection {
        self.conns[(seq % self.conns.len() as u64) as usize].clone()
    }

    /// `HMGET key data version expiry`: what Mecha's GetState sends. Returns the value's
    /// length.
    pub async fn get(&self, seq: u64, key: &str) -> Result<usize, String> {
        let mut conn = self.conn(seq);
        let v: Vec<redis::Value> = mecha::actors::backends::redis::read_pipeline(&[key])
            .query_async(&mut conn)
            .await
            .map_err(|e| err("redis", e))?;
        match v.first() {
            Some(redis::Value::Array(fields)) => match fields.first() {
                Some(redis::Value::BulkString(b)) => Ok(b.len()),
                _ => Err(format!("redis: key {key} missing")),
            },
            _ => Err("redis: unexpected reply".into()),
        }
    }

    /// `EVALSHA <write script> 2 counter key each set '' 0 -1 value`: what Mecha's SaveState
    /// of one item without ETag or TTL sends.
    pub async fn set(&self, seq: u64, key: &str, value: &[u8]) -> Result<(), String> {
        let mut conn = self.conn(seq);
        let v: redis::Value = self
            .write
            .key(mecha::actors::backends::redis::VERSION_COUNTER_KEY)
            .arg("each")
            .key(key)
            .arg("set")
            .arg("")
            .arg("0")
            .arg(-1i64)
            .arg(value)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| err("redis", e))?;
        match v {
            redis::Value::Array(codes) if matches!(codes.first(), Some(redis::Value::Int(n)) if *n > 0) => {
                Ok(())
            }
            other => Err(format!("redis: unexpected write reply {other:?}")),
        }
    }
}

/// Direct PostgreSQL: tokio-postgres connections, each with Mecha's statements prepared.
/// Requests are spread over the connections (tokio-postgres pipelines concurrent queries).
pub struct PgDirect {
    conns: Vec<(
        tokio_postgres::Client,
        tokio_postgres::Statement,
        tokio_postgres::Statement,
    )>,
}

impl PgDirect {
    pub async fn connect(url: &str, table: &str, conns: usize) -> Result<Arc<PgDirect>, String> {
        let (get_sql, upsert_sql) =
            mecha::actors::backends::postgresql::read_and_upsert_sql(table)?;
        let mut out = Vec::new();
        for _ in 0..conns.max(1) {
            let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                .await
                .map_err(|e| err("postgres connect", e))?;
            tokio::spawn(conn);
            let get = client
                .prepare(&get_sql)
                .await
                .map_err(|e| err("prepare", e))?;
            let upsert = client
                .prepare(&upsert_sql)
                .await
                .map_err(|e| err("prepare", e))?;
            out.push((client, get, upsert));
        }
        Ok(Arc::new(PgDirect { conns: out }))
    }

    fn pick(
        &self,
        seq: u64,
    ) -> &(
        tokio_postgres::Client,
        tokio_postgres::Statement,
        tokio_postgres::Statement,
    ) {
        &self.conns[(seq % self.conns.len() as u64) as usize]
    }

    /// Mecha's `get` statement. Returns the value's length.
    pub async fn get(&self, seq: u64, key: &str) -> Result<usize, String> {
        let (c, get, _) = self.pick(seq);
        let row = c
            .query_opt(get, &[&key])
            .await
            .map_err(|e| err("postgres", e))?
            .ok_or_else(|| format!("postgres: key {key} missing"))?;
        let v: Vec<u8> = row.get(0);
        let _version: i64 = row.get(1);
        let _exp: Option<std::time::SystemTime> = row.get(2);
        Ok(v.len())
    }

    /// Mecha's last-write upsert, with the same parameters (value, its JSON, no TTL).
    pub async fn set(
        &self,
        seq: u64,
        key: &str,
        value: &[u8],
        json: &tokio_postgres::types::Json<serde_json::Value>,
    ) -> Result<(), String> {
        let (c, _, upsert) = self.pick(seq);
        let ttl: Option<i32> = None;
        let n = c
            .execute(upsert, &[&key, &value, &Some(json), &ttl])
            .await
            .map_err(|e| err("postgres", e))?;
        if n == 1 {
            Ok(())
        } else {
            Err(format!("postgres: upsert touched {n} rows"))
        }
    }
}

/// A Go MySQL driver DSN (`user[:password]@tcp(host[:port])/dbname[?params]`, what
/// `state.mysql` takes) taken apart: enough for the benchmark's own direct client.
#[derive(Debug, Clone)]
pub struct MySqlDsn {
    pub user: String,
    pub password: String,
    pub host: String,
    pub port: u16,
    pub database: String,
}

impl MySqlDsn {
    pub fn parse(raw: &str) -> Result<MySqlDsn, String> {
        let bad = || format!("MySQL DSN {raw:?}: expected user[:password]@tcp(host:port)/dbname");
        let (cred_addr, rest) = raw.rsplit_once('/').ok_or_else(bad)?;
        let database = rest.split_once('?').map_or(rest, |(d, _)| d).to_owned();
        let (creds, addr) = cred_addr.rsplit_once('@').ok_or_else(bad)?;
        let (user, password) = creds.split_once(':').unwrap_or((creds, ""));
        let inner = addr
            .strip_prefix("tcp(")
            .and_then(|a| a.strip_suffix(')'))
            .ok_or_else(bad)?;
        let (host, port) = match inner.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().map_err(|_| bad())?),
            None => (inner, 3306),
        };
        if user.is_empty() || host.is_empty() || database.is_empty() {
            return Err(bad());
        }
        Ok(MySqlDsn {
            user: user.to_owned(),
            password: password.to_owned(),
            host: host.to_owned(),
            port,
            database,
        })
    }

    pub fn options(&self) -> sqlx::mysql::MySqlConnectOptions {
        let mut o = sqlx::mysql::MySqlConnectOptions::new()
            .host(&self.host)
            .port(self.port)
            .username(&self.user)
            .database(&self.database)
            .ssl_mode(sqlx::mysql::MySqlSslMode::Disabled);
        if !self.password.is_empty() {
            o = o.password(&self.password);
        }
        o
    }
}

/// The ETag `state.mysql` and `state.sqlite` write with every row: 128 random bits in hex.
fn new_etag() -> String {
    format!("{:032x}", rand::random::<u128>())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Direct MySQL / MariaDB: an sqlx pool of the size of Mecha's (8) running `state.mysql`'s
/// statements, prepared and cached per connection as sqlx does for Mecha, with the same
/// parameters: the read, and a save as Mecha runs it (`BEGIN`, the upsert, `COMMIT`).
pub struct MySqlDirect {
    pool: sqlx::MySqlPool,
    get: String,
    upsert: String,
}

impl MySqlDirect {
    /// `table` is `` `schema`.`table` ``, quoted as the backend quotes it.
    pub async fn connect(
        dsn: &MySqlDsn,
        table: &str,
        conns: usize,
    ) -> Result<Arc<MySqlDirect>, String> {
        let pool = sqlx::mysql::MySqlPoolOptions::new()
            .max_connections(conns.max(1) as u32)
            .connect_with(dsn.options())
            .await
            .map_err(|e| err("mysql connect", e))?;
        // The statements of src/actors/backends/mysql.rs, character for character.
        Ok(Arc::new(MySqlDirect {
            pool,
            get: format!(
                "SELECT value, etag, expires_at FROM {table} WHERE id = ? \
                 AND (expires_at IS NULL OR expires_at > ?)"
            ),
            upsert: format!(
                "INSERT INTO {table} (id, value, etag, expires_at) VALUES (?, ?, ?, ?) \
                 ON DUPLICATE KEY UPDATE value = VALUES(value), etag = VALUES(etag), \
                 expires_at = VALUES(expires_at)"
            ),
        }))
    }

    /// The read. Returns the value's length.
    pub async fn get(&self, key: &str) -> Result<usize, String> {
        use sqlx::Row;
        let row = sqlx::query(&self.get)
            .bind(key.as_bytes())
            .bind(now_ms())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| err("mysql", e))?
            .ok_or_else(|| format!("mysql: key {key} missing"))?;
        let v: Vec<u8> = row.get(0);
        let _etag: String = row.get(1);
        let _exp: Option<i64> = row.get(2);
        Ok(v.len())
    }

    /// The last-write save of one item without TTL, in its transaction.
    pub async fn set(&self, key: &str, value: &[u8]) -> Result<(), String> {
        let mut tx = self.pool.begin().await.map_err(|e| err("mysql", e))?;
        sqlx::query(&self.upsert)
            .bind(key.as_bytes())
            .bind(value)
            .bind(new_etag())
            .bind(None::<i64>)
            .execute(&mut *tx)
            .await
            .map_err(|e| err("mysql", e))?;
        tx.commit().await.map_err(|e| err("mysql", e))
    }
}

/// Direct SQLite: an sqlx pool of the size of Mecha's (4) on the same database file, opened
/// as `state.sqlite` opens it (WAL, `synchronous=FULL`, 2 s busy timeout), running its
/// statements with the same parameters; the database work runs in this process.
pub struct SqliteDirect {
    pool: sqlx::SqlitePool,
    get: String,
    upsert: String,
}

impl SqliteDirect {
    pub async fn connect(
        file: &std::path::Path,
        table: &str,
        conns: usize,
    ) -> Result<Arc<SqliteDirect>, String> {
        use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
        let opts = SqliteConnectOptions::new()
            .filename(file)
            .busy_timeout(std::time::Duration::from_secs(2))
            .synchronous(SqliteSynchronous::Full)
            .journal_mode(SqliteJournalMode::Wal);
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(conns.max(1) as u32)
            .connect_with(opts)
            .await
            .map_err(|e| err("sqlite open", e))?;
        // The statements of src/actors/backends/sqlite.rs, character for character.
        Ok(Arc::new(SqliteDirect {
            pool,
            get: format!(
                "SELECT value, etag, expires_at FROM {table} WHERE key = ? \
                 AND (expires_at IS NULL OR expires_at > ?)"
            ),
            upsert: format!(
                "INSERT INTO {table} (key, value, etag, expires_at) VALUES (?, ?, ?, ?) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, etag = excluded.etag, \
                 expires_at = excluded.expires_at"
            ),
        }))
    }

    /// The read. Returns the value's length.
    pub async fn get(&self, key: &str) -> Result<usize, String> {
        use sqlx::Row;
        let row = sqlx::query(&self.get)
            .bind(key)
            .bind(now_ms())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| err("sqlite", e))?
            .ok_or_else(|| format!("sqlite: key {key} missing"))?;
        let v: Vec<u8> = row.get(0);
        let _etag: String = row.get(1);
        let _exp: Option<i64> = row.get(2);
        Ok(v.len())
    }

    /// The last-write save of one item without TTL, in its transaction.
    pub async fn set(&self, key: &str, value: &[u8]) -> Result<(), String> {
        let mut tx = self.pool.begin().await.map_err(|e| err("sqlite", e))?;
        sqlx::query(&self.upsert)
            .bind(key)
            .bind(value)
            .bind(new_etag())
            .bind(None::<i64>)
            .execute(&mut *tx)
            .await
            .map_err(|e| err("sqlite", e))?;
        tx.commit().await.map_err(|e| err("sqlite", e))
    }
}
