//! What the scenarios run against: one connected client of each kind, the stores seeded
//! through Mecha, and each [`Client`] of the scenario table turned into requests ([`Op`]s)
//! that check every answer.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures::FutureExt;
use hyper::{Method, StatusCode};
use mecha::gateway::grpc::proto::runtime::GetStateRequest;
use prost::Message;
use serde_json::Value;
use tokio_postgres::types::Json;

use crate::cli::{Args, Plan};
use crate::clients::{GrpcPool, HttpPool, MySqlDirect, PgDirect, RedisDirect, SqliteDirect};
use crate::external::{H2load, Wrk, WrkRequests};
use crate::load::{Op, RedisBenchmark};
use crate::measure::{Load, Side};
use crate::process::{EmptyTonic, Mecha};
use crate::scenarios::{Client, Direct, SEEDED_STORES, Scenario};
use crate::session::{Cleanup, sqlite_file};

/// The run's clients and the value every save writes.
pub struct Setup {
    /// The value (a JSON string of `--value-size` bytes).
    value: Bytes,
    /// The value as PostgreSQL's JSON parameter.
    value_json: Arc<Json<Value>>,
    /// Seeded read keys: `k0..k{nkeys}`.
    nkeys: u64,
    /// Mecha's key prefix of the run, for the direct clients.
    prefix: String,
    http: Arc<HttpPool>,
    /// The `--baseline-mecha` build's HTTP door.
    baseline_http: Option<Arc<HttpPool>>,
    grpc: Arc<GrpcPool>,
    /// Mecha's doors and the baseline build's HTTP door, for the external load generators.
    http_addr: SocketAddr,
    grpc_addr: SocketAddr,
    baseline_addr: Option<SocketAddr>,
    /// The empty tonic server (a process of its own).
    pub empty: EmptyTonic,
    /// Where the load generators' scripts and request files go.
    dir: PathBuf,
    /// Streams per connection of the gRPC load generator.
    grpc_streams: usize,
    redis: Arc<RedisDirect>,
    pg: Arc<PgDirect>,
    mysql: Arc<MySqlDirect>,
    sqlite: Arc<SqliteDirect>,
    redis_url: String,
    value_size: usize,
}

/// The value every save writes: a JSON string of `size` bytes.
fn value_of(size: usize) -> Bytes {
    let mut v = Vec::with_capacity(size);
    v.push(b'"');
    v.extend(std::iter::repeat_n(b'x', size - 2));
    v.push(b'"');
    Bytes::from(v)
}

impl Setup {
    /// Connects the clients, starts the empty tonic handler, seeds every store through
    /// `mecha`, then connects the direct SQL clients (Mecha created their tables on the
    /// first write).
    pub async fn connect(
        args: &Args,
        plan: &Plan,
        mecha: &Mecha,
        baseline: Option<&Mecha>,
        cleanup: &Cleanup,
    ) -> Result<Setup, String> {
        let value = value_of(args.value_size);
        let value_json = Arc::new(Json(
            serde_json::from_slice(&value).map_err(|e| e.to_string())?,
        ));
        let nkeys = plan.keys as u64;
        let http = HttpPool::new(mecha.http);
        let grpc = GrpcPool::connect(mecha.grpc, args.grpc_channels).await?;
        let redis = RedisDirect::connect(&args.redis_url, args.redis_connections).await?;
        let pg_conns = args.pg_connections.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get() * 4)
                .unwrap_or(4)
                .max(4)
        });
        crate::external::check_tools()?;
        let empty = EmptyTonic::start(args.value_size, mecha::app::serving_threads(args.workers))?;
        seed(&http, &value, nkeys, args.concurrency.max(1)).await?;
        let pg = PgDirect::connect(&args.database_url, &cleanup.table, pg_conns).await?;
        let mysql = MySqlDirect::connect(
            &cleanup.mysql,
            &format!("`{}`.`{}`", cleanup.mysql.database, cleanup.table),
            args.mysql_connections,
        )
        .await?;
        let sqlite = SqliteDirect::connect(
            &sqlite_file(&cleanup.dir),
            &cleanup.table,
            args.sqlite_connections,
        )
        .await?;
        Ok(Setup {
            value,
            value_json,
            nkeys,
            prefix: cleanup.prefix.clone(),
            http,
            baseline_http: baseline.map(|b| HttpPool::new(b.http)),
            grpc,
            http_addr: mecha.http,
            grpc_addr: mecha.grpc,
            baseline_addr: baseline.map(|b| b.http),
            empty,
            dir: cleanup.dir.join("load"),
            grpc_streams: args.grpc_streams,
            redis,
            pg,
            mysql,
            sqlite,
            redis_url: args.redis_url.clone(),
            value_size: args.value_size,
        })
    }

    /// The sides of `scenario`, or `None` when one needs a client this run has not (the
    /// baseline build without `--baseline-mecha`). Throughput sides served by Mecha (or the
    /// empty tonic server) run `wrk` or `h2load`; latency sides send from this process at a
    /// fixed rate and check every answer.
    pub fn sides(&self, scenario: &Scenario, latency: bool) -> Result<Option<Vec<Side>>, String> {
        let mut sides = Vec::new();
        for s in scenario.sides {
            let load = if latency {
                self.op(s.client)?.map(Load::Op)
            } else {
                self.load(scenario.id, s.client)?
            };
            let Some(load) = load else {
                return Ok(None);
            };
            sides.push(Side {
                label: s.label,
                load,
                mecha: s.client.served_by_mecha(),
            });
        }
        Ok(Some(sides))
    }

    /// What `client` runs in the throughput scenario `scenario`, or `None` when this run
    /// has no such client.
    fn load(&self, scenario: &str, client: Client) -> Result<Option<Load>, String> {
        let url = |addr: SocketAddr| format!("http://{addr}");
        let name = format!("{scenario}-{}", self.side_name(client));
        let value_len = self.value.len();
        let wrk = |addr: SocketAddr, requests: WrkRequests, min: usize, keys: f64| {
            Wrk::new(url(addr), &self.dir, &name, &requests, min as f64, keys).map(Load::Wrk)
        };
        let h2load = |addr: SocketAddr, store: &str| {
            let message = GetStateRequest {
                store_name: store.to_owned(),
                key: "k0".to_owned(),
                ..Default::default()
            }
            .encode_to_vec();
            // A correct answer's DATA: the 5-byte gRPC frame header, then at least the
            // value's field (tag, 2-byte length, value) and an ETag field of 3 or more bytes.
            let min = (value_len + 5 + 3 + 3) as f64;
            H2load::new(
                format!("{}/dapr.proto.runtime.v1.Dapr/GetState", url(addr)),
                &self.dir,
                &name,
                &message,
                self.grpc_streams,
                min,
            )
            .map(Load::H2load)
        };
        let get = |store: &str| WrkRequests::Get {
            store: store.to_owned(),
            keys: self.nkeys,
        };
        let load = match client {
            Client::HttpGet(store) => wrk(self.http_addr, get(store), value_len, 1.0)?,
            Client::BaselineHttpGet(store) => match self.baseline_addr {
                Some(addr) => wrk(addr, get(store), value_len, 1.0)?,
                None => return Ok(None),
            },
            Client::HttpSave(store) => wrk(
                self.http_addr,
                WrkRequests::Save {
                    store: store.to_owned(),
                    keys: self.nkeys,
                    value_len,
                },
                0,
                1.0,
            )?,
            Client::HttpBulkGet(store) => wrk(
                self.http_addr,
                WrkRequests::BulkGet {
                    store: store.to_owned(),
                    keys: self.nkeys,
                },
                10 * value_len,
                10.0,
            )?,
            Client::GrpcGet(store) => h2load(self.grpc_addr, store)?,
            Client::EmptyTonicGet => h2load(self.empty.addr, "redis")?,
            Client::RedisBenchmarkGet => {
                let rb = RedisBenchmark::from_url(&self.redis_url, self.value_size)?;
                Load::RedisBenchmark(rb)
            }
            Client::HttpReadThenSave { .. } | Client::DirectGet(_) | Client::DirectSave(_) => {
                match self.op(client)? {
                    Some(op) => Load::Op(op),
                    None => return Ok(None),
                }
            }
        };
        Ok(Some(load))
    }

    /// A file name for `client`'s script or request.
    fn side_name(&self, client: Client) -> String {
        format!("{client:?}")
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect()
    }

    /// `client`'s requests from this process (every answer checked), or `None` when this
    /// run has no such client.
    fn op(&self, client: Client) -> Result<Option<Op>, String> {
        let op = match client {
            Client::HttpGet(store) => http_get(&self.http, store, self.nkeys, self.value.len()),
            Client::BaselineHttpGet(store) => match &self.baseline_http {
                Some(http) => http_get(http, store, self.nkeys, self.value.len()),
                None => return Ok(None),
            },
            Client::HttpSave(store) => self.http_save(store),
            Client::HttpBulkGet(store) => self.bulk_get(store),
            Client::HttpReadThenSave { store, etag } => self.read_then_save(store, etag),
            Client::GrpcGet(store) => self.grpc_get(&self.grpc, store),
            Client::DirectGet(direct) => self.direct_get(direct),
            Client::DirectSave(direct) => self.direct_save(direct),
            Client::EmptyTonicGet | Client::RedisBenchmarkGet => {
                return Err(format!("{client:?} has no in-process requests"));
            }
        };
        Ok(Some(op))
    }

    fn direct_get(&self, direct: Direct) -> Op {
        match direct {
            Direct::Redis => self.redis_get(),
            Direct::Postgres => self.pg_get(),
            Direct::MySql => self.mysql_get(),
            Direct::Sqlite => self.sqlite_get(),
        }
    }

    fn direct_save(&self, direct: Direct) -> Op {
        match direct {
            Direct::Redis => self.redis_set(),
            Direct::Postgres => self.pg_set(),
            Direct::MySql => self.mysql_set(),
            Direct::Sqlite => self.sqlite_set(),
        }
    }
}

/// Saves keys `k0..k{nkeys}` (reads) and `e0..e{workers}` (the ETag scenario) in every
/// store, 100 per request.
async fn seed(http: &HttpPool, value: &[u8], nkeys: u64, workers: usize) -> Result<(), String> {
    for store in SEEDED_STORES {
        let all: Vec<String> = (0..nkeys)
            .map(|i| format!("k{i}"))
            .chain((0..workers).map(|w| format!("e{w}")))
            .collect();
        for chunk in all.chunks(100) {
            let items: Vec<String> = chunk
                .iter()
                .map(|k| {
                    format!(
                        "{{\"key\":\"{k}\",\"value\":{}}}",
                        std::str::from_utf8(value).unwrap_or("\"\"")
                    )
                })
                .collect();
            let body = Bytes::from(format!("[{}]", items.join(",")));
            let r = http
                .send(
                    Method::POST,
                    &format!("/v1.0/state/{store}"),
                    Some(body),
                    None,
                )
                .await?;
            if r.status != StatusCode::NO_CONTENT {
                return Err(format!(
                    "seeding {store} failed: {} {}",
                    r.status,
                    String::from_utf8_lossy(&r.body)
                ));
            }
        }
    }
    Ok(())
}

/// HTTP GetState of the seeded keys in turn; the answer must be 200 with the whole value.
fn http_get(http: &Arc<HttpPool>, store: &'static str, nkeys: u64, expect_len: usize) -> Op {
    let http = http.clone();
    Arc::new(move |_w, seq| {
        let http = http.clone();
        async move {
            let path = format!("/v1.0/state/{store}/k{}", seq % nkeys);
            let r = http.send(Method::GET, &path, None, None).await?;
            if r.status != StatusCode::OK || r.body.len() != expect_len {
                return Err(format!("GET {path}: {} ({} bytes)", r.status, r.body.len()));
            }
            Ok(1)
        }
        .boxed()
    })
}

/// The body of a SaveState of `value` under `key`.
fn save_body(key: &str, value: &[u8]) -> Bytes {
    let mut b = Vec::with_capacity(value.len() + 32);
    b.extend_from_slice(b"[{\"key\":\"");
    b.extend_from_slice(key.as_bytes());
    b.extend_from_slice(b"\",\"value\":");
    b.extend_from_slice(value);
    b.extend_from_slice(b"}]");
    Bytes::from(b)
}

/// Mecha's doors.
impl Setup {
    /// HTTP SaveState of one item, keys `w..` in turn; the answer must be 204.
    fn http_save(&self, store: &'static str) -> Op {
        let (http, value, nkeys) = (self.http.clone(), self.value.clone(), self.nkeys);
        Arc::new(move |_w, seq| {
            let http = http.clone();
            let body = save_body(&format!("w{}", seq % nkeys), &value);
            async move {
                let path = format!("/v1.0/state/{store}");
                let r = http.send(Method::POST, &path, Some(body), None).await?;
                if r.status != StatusCode::NO_CONTENT {
                    return Err(format!(
                        "POST {path}: {} {}",
                        r.status,
                        String::from_utf8_lossy(&r.body)
                    ));
                }
                Ok(1)
            }
            .boxed()
        })
    }

    /// gRPC GetState of the seeded keys in turn on `pool`; the answer must hold the value.
    fn grpc_get(&self, pool: &Arc<GrpcPool>, store: &'static str) -> Op {
        let (pool, nkeys, expect_len) = (pool.clone(), self.nkeys, self.value.len());
        Arc::new(move |_w, seq| {
            let pool = pool.clone();
            async move {
                let r = pool.get(seq, store, format!("k{}", seq % nkeys)).await?;
                if r.data.len() != expect_len {
                    return Err(format!("grpc GetState: {} bytes", r.data.len()));
                }
                Ok(1)
            }
            .boxed()
        })
    }

    /// HTTP bulk get of 10 seeded keys (parallelism 10); all 10 must have a value.
    fn bulk_get(&self, store: &'static str) -> Op {
        let (http, nkeys) = (self.http.clone(), self.nkeys);
        let path: Arc<str> = Arc::from(format!("/v1.0/state/{store}/bulk"));
        Arc::new(move |_w, seq| {
            let (http, path) = (http.clone(), path.clone());
            let keys: Vec<String> = (0..10)
                .map(|j| format!("\"k{}\"", (seq * 10 + j) % nkeys))
                .collect();
            let body = Bytes::from(format!(
                "{{\"keys\":[{}],\"parallelism\":10}}",
                keys.join(",")
            ));
            async move {
                let r = http.send(Method::POST, &path, Some(body), None).await?;
                let items: Vec<Value> = serde_json::from_slice(&r.body).unwrap_or_default();
                let found = items.iter().filter(|i| i.get("data").is_some()).count();
                if r.status != StatusCode::OK || found != 10 {
                    return Err(format!("bulk get: {} with {found} values", r.status));
                }
                Ok(10)
            }
            .boxed()
        })
    }

    /// Reads the worker's own key `e<worker>` for its ETag, then saves it: conditionally
    /// (the item's `etag`) or plainly. Each worker owns its key, so no ETag can be stale.
    fn read_then_save(&self, store: &'static str, with_etag: bool) -> Op {
        let (http, value) = (self.http.clone(), self.value.clone());
        let path: Arc<str> = Arc::from(format!("/v1.0/state/{store}"));
        Arc::new(move |w, _seq| {
            let (http, value, path) = (http.clone(), value.clone(), path.clone());
            async move {
                let key = format!("e{w}");
                let r = http
                    .send(
                        Method::GET,
                        &format!("/v1.0/state/{store}/{key}"),
                        None,
                        None,
                    )
                    .await?;
                let etag = r
                    .etag
                    .filter(|_| r.status == StatusCode::OK)
                    .ok_or_else(|| format!("GET {key}: {} without ETag", r.status))?;
                let v = std::str::from_utf8(&value).unwrap_or("\"\"");
                let body = if with_etag {
                    format!("[{{\"key\":\"{key}\",\"value\":{v},\"etag\":\"{etag}\"}}]")
                } else {
                    format!("[{{\"key\":\"{key}\",\"value\":{v}}}]")
                };
                let r = http
                    .send(Method::POST, &path, Some(Bytes::from(body)), None)
                    .await?;
                if r.status != StatusCode::NO_CONTENT {
                    return Err(format!(
                        "save {key}: {} {}",
                        r.status,
                        String::from_utf8_lossy(&r.body)
                    ));
                }
                Ok(1)
            }
            .boxed()
        })
    }
}

/// The direct clients: the read of the seeded keys (which must return the whole value)
/// and the save of keys `w..`, each on Mecha's prefixed keys.
impl Setup {
    fn redis_get(&self) -> Op {
        let (redis, prefix) = (self.redis.clone(), self.prefix.clone());
        let (nkeys, expect_len) = (self.nkeys, self.value.len());
        Arc::new(move |_w, seq| {
            let (redis, key) = (redis.clone(), format!("{prefix}||k{}", seq % nkeys));
            async move {
                let n = redis.get(seq, &key).await?;
                if n != expect_len {
                    return Err(format!("redis {key}: {n} bytes"));
                }
                Ok(1)
            }
            .boxed()
        })
    }

    fn redis_set(&self) -> Op {
        let (redis, prefix, value) = (self.redis.clone(), self.prefix.clone(), self.value.clone());
        let nkeys = self.nkeys;
        Arc::new(move |_w, seq| {
            let (redis, value) = (redis.clone(), value.clone());
            let key = format!("{prefix}||w{}", seq % nkeys);
            async move {
                redis.set(seq, &key, &value).await?;
                Ok(1)
            }
            .boxed()
        })
    }

    fn pg_get(&self) -> Op {
        let (pg, prefix) = (self.pg.clone(), self.prefix.clone());
        let (nkeys, expect_len) = (self.nkeys, self.value.len());
        Arc::new(move |_w, seq| {
            let (pg, key) = (pg.clone(), format!("{prefix}||k{}", seq % nkeys));
            async move {
                let n = pg.get(seq, &key).await?;
                if n != expect_len {
                    return Err(format!("postgres {key}: {n} bytes"));
                }
                Ok(1)
            }
            .boxed()
        })
    }

    fn pg_set(&self) -> Op {
        let (pg, prefix) = (self.pg.clone(), self.prefix.clone());
        let (value, json, nkeys) = (self.value.clone(), self.value_json.clone(), self.nkeys);
        Arc::new(move |_w, seq| {
            let (pg, value, json) = (pg.clone(), value.clone(), json.clone());
            let key = format!("{prefix}||w{}", seq % nkeys);
            async move {
                pg.set(seq, &key, &value, &json).await?;
                Ok(1)
            }
            .boxed()
        })
    }

    fn mysql_get(&self) -> Op {
        let (mysql, prefix) = (self.mysql.clone(), self.prefix.clone());
        let (nkeys, expect_len) = (self.nkeys, self.value.len());
        Arc::new(move |_w, seq| {
            let (mysql, key) = (mysql.clone(), format!("{prefix}||k{}", seq % nkeys));
            async move {
                let n = mysql.get(&key).await?;
                if n != expect_len {
                    return Err(format!("mysql {key}: {n} bytes"));
                }
                Ok(1)
            }
            .boxed()
        })
    }

    fn mysql_set(&self) -> Op {
        let (mysql, prefix, value) = (self.mysql.clone(), self.prefix.clone(), self.value.clone());
        let nkeys = self.nkeys;
        Arc::new(move |_w, seq| {
            let (mysql, value) = (mysql.clone(), value.clone());
            let key = format!("{prefix}||w{}", seq % nkeys);
            async move {
                mysql.set(&key, &value).await?;
                Ok(1)
            }
            .boxed()
        })
    }

    fn sqlite_get(&self) -> Op {
        let (sqlite, prefix) = (self.sqlite.clone(), self.prefix.clone());
        let (nkeys, expect_len) = (self.nkeys, self.value.len());
        Arc::new(move |_w, seq| {
            let (sqlite, key) = (sqlite.clone(), format!("{prefix}||k{}", seq % nkeys));
            async move {
                let n = sqlite.get(&key).await?;
                if n != expect_len {
                    return Err(format!("sqlite {key}: {n} bytes"));
                }
                Ok(1)
            }
            .boxed()
        })
    }

    fn sqlite_set(&self) -> Op {
        let (sqlite, prefix) = (self.sqlite.clone(), self.prefix.clone());
        let (value, nkeys) = (self.value.clone(), self.nkeys);
        Arc::new(move |_w, seq| {
            let (sqlite, value) = (sqlite.clone(), value.clone());
            let key = format!("{prefix}||w{}", seq % nkeys);
            async move {
                sqlite.set(&key, &value).await?;
                Ok(1)
            }
            .boxed()
        })
    }
}
