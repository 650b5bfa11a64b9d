//! `state.etcd`: state on an etcd v3 cluster (etcd 3.4 or newer), through `etcd-client`.
//!
//! # Data layout
//!
//! A Mecha key `k` (already prefixed, e.g. `myapp||order-1`) is stored under the etcd key
//! `keyPrefixPath + "/" + k`, exactly as daprd's etcd store lays it out (`/myapp||order-1`
//! without a prefix path, `dapr/myapp||order-1` with `keyPrefixPath: dapr`).
//!
//! The value format follows `spec.version`, as in Dapr:
//!
//! * `v1` (the default when no version is given, as in Dapr): the value's bytes as they are;
//! * `v2`: Dapr's protobuf `dapr.proto.components.state.v2.Value` (`data` = the value's bytes,
//!   `ts` = write time, `ttl` = the granted TTL, zero when none).
//!
//! The two formats are not interchangeable: a component must keep the version its data was
//! written with. A v2 store that meets a value it cannot decode answers an error naming the key.
//!
//! # ETags and concurrency
//!
//! The ETag is the key's `mod_revision` in decimal. Revisions are global to the cluster and
//! never repeat, so a key deleted and created again never matches an old ETag. Every guarded
//! operation is one etcd `Txn` whose compare is evaluated by the cluster (daprd instead checks
//! with a separate read and ignores the result of its `Txn`, so a concurrent writer can make it
//! drop a write and answer success):
//!
//! * write or delete with an ETag: `If(mod_revision(key) == etag) Then(put | delete)`; the
//!   answer's `succeeded` flag decides between success and an ETag mismatch (409);
//! * first-write without an ETag: `If(create_revision(key) == 0) Then(put)` (the key does not
//!   exist);
//! * an ETag that is not a positive decimal integer is invalid (400); `0` is never a key's
//!   revision and is a mismatch.
//!
//! # TTL
//!
//! `ttlInSeconds` > 0 grants a lease of that many seconds and attaches the key to it, in the
//! same `Txn` as the write; the lease is revoked again when the write does not happen (an ETag
//! mismatch), so failed writes leave no leases behind. etcd raises a TTL below its minimum
//! (about 2 s with default election settings) to that minimum; reads report the granted
//! expiry as `ttlExpireTime` (v2: `ts + ttl` from the value; v1: from the lease's remaining
//! time). `ttlInSeconds` of `-1`/`0`, or none, writes without a lease, which removes an earlier
//! expiry (daprd instead grants a lease for those and the key expires within seconds).
//!
//! # Transactions
//!
//! A transaction is one etcd `Txn`: every ETag and first-write condition is a compare of that
//! `Txn`, every operation is in its `Then`, so the cluster applies all or nothing. etcd caps the
//! compares and operations of one `Txn` at its `--max-txn-ops` (128 by default); the component's
//! `maxTxnOps` (default 128) declares that cap, the gateway refuses a longer transaction with a
//! clear error, and it must not exceed the server's setting. etcd refuses two operations on one
//! key within a `Txn`; Mecha folds them into one (the last operation wins, the conditions of the
//! first stand), and refuses a later ETag on a key the same transaction already wrote, because
//! that ETag cannot be the key's revision at commit.
//!
//! # Consistency
//!
//! Reads are linearizable (served through the leader's read index) unless the request asks for
//! `consistency: eventual`, which is served as a serializable read from whichever member
//! answers. Writes are always committed by a quorum. `STRONG_CONSISTENCY` is declared.
//!
//! # Connections and failures
//!
//! All instances of one component share one client per endpoint, opened lazily (creating a
//! store never blocks), and send calls to one preferred member (a random one per process). A
//! call that cannot reach its member goes to the next at once (it was never sent); a read also
//! moves on when its member cannot serve it; a write that may have been sent is never sent
//! again. Each call, retries included, is bounded by `requestTimeout` (default 5 s, as daprd);
//! a connect that failed is remembered for `reconnectWait`, during which calls fail fast.
//!
//! # Not supported
//!
//! TLS (`tlsEnable`, `ca`, `cert`, `key`) is not built in: a component asking for it is refused at
//! load. Query API, delete-with-prefix and `KEYS_LIKE` are not offered.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, KeyValue, PutOptions,
    Txn, TxnOp, TxnOpResponse,
};
use prost::Message;

use super::{ComponentConfig, Descriptor, Field, FieldKind};
use crate::actors::{BulkGetItem, KeyPage, LazyConnection, StateStore, StoreError, StoreFactory};
use crate::capabilities::{Capability, CapabilitySet};
use crate::model::{
    Concurrency, Consistency, DeleteRequest, GetRequest, Metadata, SetRequest, StateEntry,
    TTL_EXPIRE_TIME, TransactionOp, TransactionRequest, Ttl, format_expire_time,
};

/// The backend's self-description.
pub const DESCRIPTOR: Descriptor = Descriptor {
    component_type: "state.etcd",
    aliases: &[],
    versions: &["v1", "v2"],
    capabilities: CAPABILITIES,
    conditional: CapabilitySet::EMPTY,
    lists_keys: true,
    metadata: METADATA,
    per_process: false,
    variants: &[],
    // Only the portable keys (`ttlInSeconds`, `contentType`).
    request_keys: &[],
    build,
    locations,
};

/// What an etcd store does natively.
const CAPABILITIES: CapabilitySet = CapabilitySet::of(&[
    Capability::Etag,
    Capability::Transactional,
    Capability::Ttl,
    Capability::FirstWrite,
    Capability::StrongConsistency,
]);

/// etcd's default `--max-txn-ops`.
pub const DEFAULT_MAX_TXN_OPS: usize = 128;

const METADATA: &[Field] = &[
    Field::new(
        "endpoints",
        FieldKind::String,
        "etcd client URLs, comma-separated (host:2379 or http://host:2379)",
    )
    .required(),
    Field::new(
        "keyPrefixPath",
        FieldKind::String,
        "prefix of every etcd key: <keyPrefixPath>/<key> (default empty)",
    ),
    Field::new(
        "tlsEnable",
        FieldKind::Bool,
        "TLS to etcd: not built into Mecha; true is refused at load",
    ),
    Field::new(
        "ca",
        FieldKind::String,
        "TLS CA (PEM): refused, see tlsEnable",
    )
    .sensitive(),
    Field::new(
        "cert",
        FieldKind::String,
        "TLS client certificate (PEM): refused, see tlsEnable",
    )
    .sensitive(),
    Field::new(
        "key",
        FieldKind::String,
        "TLS client key (PEM): refused, see tlsEnable",
    )
    .sensitive(),
    Field::new(
        "maxTxnOps",
        FieldKind::Integer {
            min: 1,
            max: 100_000,
        },
        "most operations in one transaction (default 128); keep it <= the server's --max-txn-ops",
    ),
    Field::new(
        "connectTimeout",
        FieldKind::Duration,
        "Mecha: connect timeout (default 5s)",
    ),
    Field::new(
        "requestTimeout",
        FieldKind::Duration,
        "Mecha: timeout of each call (default 5s)",
    ),
    Field::new(
        "reconnectWait",
        FieldKind::Duration,
        "Mecha: after a failed connect, calls fail fast for this long (default 500ms)",
    ),
];

/// The stored value format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// Raw bytes.
    V1,
    /// `dapr.proto.components.state.v2.Value`.
    V2,
}

/// Settings read from component metadata.
#[derive(Debug, Clone)]
struct Settings {
    endpoints: Vec<String>,
    prefix: String,
    format: Format,
    max_txn_ops: usize,
    connect_timeout: Duration,
    request_timeout: Duration,
    reconnect_wait: Duration,
}

fn settings(cfg: &ComponentConfig) -> Result<Settings, String> {
    let endpoints: Vec<String> = cfg
        .get("endpoints")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(str::to_owned)
        .collect();
    if endpoints.is_empty() {
        return Err("endpoints required: list etcd client URLs, comma-separated".into());
    }
    if cfg.bool_or("tlsEnable", false) {
        return Err("tlsEnable: TLS to etcd is not built into Mecha; reach etcd over a private network or a TLS-terminating sidecar, and set tlsEnable to false".into());
    }
    for f in ["ca", "cert", "key"] {
        if cfg.get(f).is_some_and(|v| !v.trim().is_empty()) {
            return Err(format!(
                "{f}: TLS to etcd is not built into Mecha, so a certificate would be ignored; remove it"
            ));
        }
    }
    let format = match cfg.version.as_str() {
        "v2" => Format::V2,
        _ => Format::V1,
    };
    let s = Settings {
        endpoints,
        prefix: cfg.get("keyPrefixPath").unwrap_or_default().to_owned(),
        format,
        max_txn_ops: cfg.int_or("maxTxnOps", DEFAULT_MAX_TXN_OPS as i64) as usize,
        connect_timeout: cfg.duration_or("connectTimeout", Duration::from_secs(5)),
        request_timeout: cfg.duration_or("requestTimeout", Duration::from_secs(5)),
        reconnect_wait: cfg.duration_or("reconnectWait", Duration::from_millis(500)),
    };
    for (name, d) in [
        ("connectTimeout", s.connect_timeout),
        ("requestTimeout", s.request_timeout),
    ] {
        if d.is_zero() {
            return Err(format!("{name} must be greater than zero"));
        }
    }
    Ok(s)
}

fn build(cfg: &ComponentConfig) -> Result<Arc<dyn StoreFactory>, String> {
    let settings = settings(cfg)?;
    Ok(Arc::new(EtcdFactory {
        shared: Arc::new(Shared {
            settings,
            conn: LazyConnection::default(),
        }),
    }))
}

// === value encoding (v2) ===

/// `google.protobuf.Timestamp`.
#[derive(Clone, PartialEq, Message)]
struct Timestamp {
    #[prost(int64, tag = "1")]
    seconds: i64,
    #[prost(int32, tag = "2")]
    nanos: i32,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, Message)]
struct PbDuration {
    #[prost(int64, tag = "1")]
    seconds: i64,
    #[prost(int32, tag = "2")]
    nanos: i32,
}

/// `dapr.proto.components.state.v2.Value`, daprd's v2 etcd value.
#[derive(Clone, PartialEq, Message)]
struct V2Value {
    #[prost(bytes = "bytes", tag = "1")]
    data: Bytes,
    #[prost(message, optional, tag = "2")]
    ts: Option<Timestamp>,
    #[prost(message, optional, tag = "3")]
    ttl: Option<PbDuration>,
}

/// Encodes a value for storage, with the TTL granted for it (seconds; 0 = none).
fn encode_value(format: Format, data: &Bytes, ttl_secs: i64, now: SystemTime) -> Vec<u8> {
    match format {
        Format::V1 => data.to_vec(),
        Format::V2 => {
            let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
            V2Value {
                data: data.clone(),
                ts: Some(Timestamp {
                    seconds: since.as_secs() as i64,
                    nanos: since.subsec_nanos() as i32,
                }),
                ttl: Some(PbDuration {
                    seconds: ttl_secs,
                    nanos: 0,
                }),
            }
            .encode_to_vec()
        }
    }
}

/// A decoded stored value: the data, and its expiry when the value records one.
fn decode_value(
    format: Format,
    key: &str,
    raw: &[u8],
) -> Result<(Bytes, Option<SystemTime>), StoreError> {
    match format {
        Format::V1 => Ok((Bytes::copy_from_slice(raw), None)),
        Format::V2 => {
            let v = V2Value::decode(raw).map_err(|e| {
                StoreError::Internal(format!(
                    "etcd: the value of key {key:?} is not a v2 state value ({e}); was it written by a v1 store?"
                ))
            })?;
            let expiry = match (&v.ts, &v.ttl) {
                (Some(ts), Some(ttl)) if ttl.seconds > 0 && ts.seconds >= 0 => Some(
                    UNIX_EPOCH
                        + Duration::new(ts.seconds as u64, ts.nanos.max(0) as u32)
                        + Duration::from_secs(ttl.seconds as u64),
                ),
                _ => None,
            };
            Ok((v.data, expiry))
        }
    }
}

// === connection ===

/// What all instances of one configured store share.
struct Shared {
    settings: Settings,
    /// The clients, created on first use.
    conn: LazyConnection<Pool>,
}

/// One client per endpoint, and the one calls go to first. etcd-client's own balanced
/// channel keeps sending a share of the calls to a member that is down (each failing with a
/// connect error), so Mecha pins calls to one member and moves to the next when a call cannot
/// reach it, as etcd's own Go client does.
struct Pool {
    clients: Vec<Client>,
    preferred: AtomicUsize,
}

impl Pool {
    /// Moves calls off the member at `from` (unless another call already did).
    fn skip(&self, from: usize) {
        let next = (from + 1) % self.clients.len();
        let _ = self
            .preferred
            .compare_exchange(from, next, Ordering::AcqRel, Ordering::Relaxed);
    }
}

impl Shared {
    async fn pool(&self) -> Result<Arc<Pool>, StoreError> {
        let s = &self.settings;
        self.conn.get(s.reconnect_wait, || self.connect()).await
    }

    async fn connect(&self) -> Result<Pool, StoreError> {
        let s = &self.settings;
        let opts = ConnectOptions::new()
            .with_connect_timeout(s.connect_timeout)
            .with_timeout(s.request_timeout)
            .with_keep_alive(Duration::from_secs(10), s.request_timeout);
        let connect = async {
            let mut clients = Vec::with_capacity(s.endpoints.len());
            for e in &s.endpoints {
                // Channels connect lazily: this fails only on a malformed endpoint.
                clients.push(Client::connect([e.as_str()], Some(opts.clone())).await?);
            }
            Ok::<_, etcd_client::Error>(clients)
        };
        match tokio::time::timeout(s.connect_timeout, connect).await {
            Ok(Ok(clients)) => Ok(Pool {
                // Replicas spread over the members instead of all starting on the first.
                preferred: AtomicUsize::new(rand::random_range(0..clients.len())),
                clients,
            }),
            Ok(Err(e)) => Err(StoreError::NotSent(format!("etcd: connect: {e}"))),
            Err(_) => Err(StoreError::Timeout(s.connect_timeout)),
        }
    }
}

/// Whether a call failed before reaching any server (safe to send again elsewhere).
fn not_sent(e: &etcd_client::Error) -> bool {
    let text = match e {
        etcd_client::Error::GRpcStatus(st) if st.code() == tonic::Code::Unavailable => {
            st.message().to_ascii_lowercase()
        }
        etcd_client::Error::TransportError(t) => t.to_string().to_ascii_lowercase(),
        _ => return false,
    };
    text.contains("connect error")
        || text.contains("connection refused")
        || text.contains("error trying to connect")
}

/// Whether a failed call may have been the member's fault (down, partitioned, no leader),
/// so that an idempotent call is worth sending to another member.
fn member_trouble(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::GRpcStatus(st) => matches!(
            st.code(),
            tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::DeadlineExceeded
        ),
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
        _ => false,
    }
}

struct EtcdFactory {
    shared: Arc<Shared>,
}

impl StoreFactory for EtcdFactory {
    fn create(&self) -> Result<Arc<dyn StateStore>, StoreError> {
        Ok(Arc::new(EtcdStore {
            shared: self.shared.clone(),
        }))
    }

    fn capabilities(&self) -> CapabilitySet {
        CAPABILITIES
    }

    fn max_transaction_ops(&self) -> Option<usize> {
        Some(self.shared.settings.max_txn_ops)
    }

    fn lists_keys(&self) -> bool {
        true
    }
}

/// One store instance (all instances of a component share the client).
pub struct EtcdStore {
    shared: Arc<Shared>,
}

/// Maps a client error to a store error.
fn map_err(e: etcd_client::Error, timeout: Duration) -> StoreError {
    use etcd_client::Error as E;
    match e {
        E::GRpcStatus(st) => match st.code() {
            tonic::Code::ResourceExhausted => StoreError::InvalidRequest(format!(
                "etcd refused the request as too large (limit: the server's --max-request-bytes, 1.5 MiB by default): {}",
                st.message()
            )),
            tonic::Code::InvalidArgument | tonic::Code::FailedPrecondition => {
                StoreError::InvalidRequest(format!("etcd refused the request: {}", st.message()))
            }
            tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => StoreError::Timeout(timeout),
            tonic::Code::Unavailable => StoreError::Unavailable(format!("etcd: {}", st.message())),
            _ => StoreError::Internal(format!("etcd: {:?}: {}", st.code(), st.message())),
        },
        E::TransportError(t) => StoreError::Unavailable(format!("etcd: {t}")),
        E::IoError(io) => StoreError::Unavailable(format!("etcd: {io}")),
        other => StoreError::Internal(format!("etcd: {other}")),
    }
}

/// The revision an ETag names: a positive decimal integer, else invalid. `Ok(None)` for `0`,
/// which no key can have.
fn parse_etag(raw: &str) -> Result<Option<i64>, StoreError> {
    match raw.parse::<i64>() {
        Ok(0) => Ok(None),
        Ok(n) if n > 0 => Ok(Some(n)),
        _ => Err(StoreError::EtagInvalid(raw.to_owned())),
    }
}

/// The write a key receives within one `Txn`.
enum Action {
    Put { value: Bytes, ttl: Option<Ttl> },
    Delete,
}

/// The condition a key must meet for its write to happen.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Guard {
    /// Unconditional.
    None,
    /// `mod_revision == n`.
    Revision(i64),
    /// The key does not exist (`create_revision == 0`).
    Absent,
    /// Never holds (an ETag of `0`, or a later ETag on a key this transaction writes).
    Never,
}

impl EtcdStore {
    fn settings(&self) -> &Settings {
        &self.shared.settings
    }

    /// The etcd key of a Mecha key.
    fn etcd_key(&self, key: &str) -> Result<String, StoreError> {
        if key.is_empty() {
            return Err(StoreError::InvalidRequest(
                "the key must not be empty".into(),
            ));
        }
        Ok(format!("{}/{key}", self.settings().prefix))
    }

    /// Runs one call within `requestTimeout`, on the preferred member. A call that could not
    /// reach its member goes to the next one (any call: it was never sent); an idempotent call
    /// (a read) also moves on when the member answered that it cannot serve. The calls that
    /// follow stay on the member that answered.
    async fn run<T, F, Fut>(&self, pool: &Pool, idempotent: bool, f: F) -> Result<T, StoreError>
    where
        F: Fn(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let t = self.settings().request_timeout;
        let deadline = tokio::time::Instant::now() + t;
        let n = pool.clients.len();
        let mut last = None;
        for _ in 0..n {
            let at = pool.preferred.load(Ordering::Acquire) % n;
            match tokio::time::timeout_at(deadline, f(pool.clients[at].clone())).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) if not_sent(&e) || (idempotent && member_trouble(&e)) => {
                    pool.skip(at);
                    last = Some(map_err(e, t));
                }
                Ok(Err(e)) => {
                    if member_trouble(&e) {
                        pool.skip(at);
                    }
                    return Err(map_err(e, t));
                }
                Err(_) => {
                    pool.skip(at);
                    return Err(StoreError::Timeout(t));
                }
            }
        }
        Err(last.unwrap_or(StoreError::Timeout(t)))
    }

    /// Builds the entry of a stored key-value.
    async fn entry(&self, pool: &Pool, key: &str, kv: &KeyValue) -> Result<StateEntry, StoreError> {
        let (data, mut expiry) = decode_value(self.settings().format, key, kv.value())?;
        if expiry.is_none() && kv.lease() != 0 {
            // v1 values do not record their TTL: ask the lease.
            let id = kv.lease();
            let ttl = self
                .run(pool, true, |c| async move {
                    c.lease_client().time_to_live(id, None).await
                })
                .await?
                .ttl();
            if ttl > 0 {
                expiry = Some(SystemTime::now() + Duration::from_secs(ttl as u64));
            }
        }
        let mut metadata = Metadata::new();
        if let Some(at) = expiry {
            metadata.insert(TTL_EXPIRE_TIME.to_owned(), format_expire_time(at));
        }
        Ok(StateEntry {
            data,
            etag: Some(kv.mod_revision().to_string()),
            metadata,
        })
    }

    fn get_options(consistency: Consistency) -> GetOptions {
        match consistency {
            Consistency::Eventual => GetOptions::new().with_serializable(),
            _ => GetOptions::new(),
        }
    }

    /// Grants a lease of `secs` seconds; answers its id and the TTL etcd granted.
    async fn grant(&self, pool: &Pool, secs: u32) -> Result<(i64, i64), StoreError> {
        let r = self
            .run(pool, false, |c| async move {
                c.lease_client().grant(i64::from(secs), None).await
            })
            .await?;
        Ok((r.id(), r.ttl()))
    }

    /// Revokes leases of writes that did not happen (best effort: they expire anyway).
    async fn revoke(&self, pool: &Pool, leases: &[i64]) {
        for &id in leases {
            let revoke = |c: Client| async move { c.lease_client().revoke(id).await };
            if let Err(e) = self.run(pool, true, revoke).await {
                tracing::debug!(lease = id, error = %e, "etcd: could not revoke an unused lease");
            }
        }
    }

    /// Runs one `Txn` of guarded writes. `Ok(false)` when a guard did not hold (nothing was
    /// written). Grants the leases the puts need first, and revokes them when nothing was
    /// written.
    async fn commit(
        &self,
        pool: &Pool,
        writes: Vec<(String, Guard, Action)>,
    ) -> Result<bool, StoreError> {
        if writes.iter().any(|(_, g, _)| *g == Guard::Never) {
            return Ok(false);
        }
        let now = SystemTime::now();
        let format = self.settings().format;
        let mut leases = Vec::new();
        let mut compares = Vec::new();
        let mut ops = Vec::with_capacity(writes.len());
        let mut outcome = Ok(());
        for (key, guard, action) in &writes {
            match guard {
                Guard::Revision(n) => {
                    compares.push(Compare::mod_revision(key.as_str(), CompareOp::Equal, *n));
                }
                Guard::Absent => {
                    compares.push(Compare::create_revision(key.as_str(), CompareOp::Equal, 0));
                }
                Guard::None | Guard::Never => {}
            }
            match action {
                Action::Delete => ops.push(TxnOp::delete(key.as_str(), None::<DeleteOptions>)),
                Action::Put { value, ttl } => {
                    let (opts, granted) = match ttl {
                        Some(Ttl::Seconds(s)) => match self.grant(pool, *s).await {
                            Ok((id, granted)) => {
                                leases.push(id);
                                (Some(PutOptions::new().with_lease(id)), granted)
                            }
                            Err(e) => {
                                outcome = Err(e);
                                break;
                            }
                        },
                        _ => (None, 0),
                    };
                    ops.push(TxnOp::put(
                        key.as_str(),
                        encode_value(format, value, granted, now),
                        opts,
                    ));
                }
            }
        }
        if let Err(e) = outcome {
            self.revoke(pool, &leases).await;
            return Err(e);
        }
        let txn = Txn::new().when(compares).and_then(ops);
        let send = |c: Client| {
            let txn = txn.clone();
            async move { c.kv_client().txn(txn).await }
        };
        match self.run(pool, false, send).await {
            Ok(r) if r.succeeded() => Ok(true),
            Ok(_) => {
                self.revoke(pool, &leases).await;
                Ok(false)
            }
            // A write that timed out may still have been applied: keep its leases.
            Err(e @ StoreError::Timeout(_)) => Err(e),
            Err(e) => {
                self.revoke(pool, &leases).await;
                Err(e)
            }
        }
    }
}

fn set_guard(req: &SetRequest) -> Result<Guard, StoreError> {
    Ok(match req.etag.as_deref() {
        Some(raw) => parse_etag(raw)?.map_or(Guard::Never, Guard::Revision),
        None if req.options.concurrency == Concurrency::FirstWrite => Guard::Absent,
        None => Guard::None,
    })
}

fn delete_guard(req: &DeleteRequest) -> Result<Guard, StoreError> {
    Ok(match req.etag.as_deref() {
        Some(raw) => parse_etag(raw)?.map_or(Guard::Never, Guard::Revision),
        None => Guard::None,
    })
}

#[async_trait]
impl StateStore for EtcdStore {
    async fn get(&self, req: GetRequest) -> Result<Option<StateEntry>, StoreError> {
        let key = self.etcd_key(&req.key)?;
        let pool = self.shared.pool().await?;
        let consistency = req.consistency;
        let read = |c: Client| {
            let key = key.clone();
            async move {
                c.kv_client()
                    .get(key, Some(Self::get_options(consistency)))
                    .await
            }
        };
        let resp = self.run(&pool, true, read).await?;
        match resp.kvs().first() {
            Some(found) => Ok(Some(self.entry(&pool, &req.key, found).await?)),
            None => Ok(None),
        }
    }

    /// One `Txn` of range reads per `maxTxnOps` keys: one round trip per chunk, every key of a
    /// chunk read at the same revision.
    async fn bulk_get(&self, reqs: Vec<GetRequest>, _parallelism: usize) -> Vec<BulkGetItem> {
        let mut out: Vec<BulkGetItem> = Vec::with_capacity(reqs.len());
        let pool = match self.shared.pool().await {
            Ok(c) => c,
            Err(e) => return reqs.iter().map(|_| Err(e.clone())).collect(),
        };
        for chunk in reqs.chunks(self.settings().max_txn_ops.max(1)) {
            let mut keys = Vec::with_capacity(chunk.len());
            for r in chunk {
                keys.push(self.etcd_key(&r.key));
            }
            let ops: Vec<TxnOp> = chunk
                .iter()
                .zip(&keys)
                .filter_map(|(r, k)| {
                    k.as_ref()
                        .ok()
                        .map(|k| TxnOp::get(k.as_str(), Some(Self::get_options(r.consistency))))
                })
                .collect();
            let nothing_to_read = ops.is_empty();
            let txn = Txn::new().and_then(ops);
            let read = |c: Client| {
                let txn = txn.clone();
                async move { c.kv_client().txn(txn).await }
            };
            let answers = if nothing_to_read {
                Ok(Vec::new())
            } else {
                self.run(&pool, true, read).await.map(|r| r.op_responses())
            };
            let mut answers = match answers {
                Ok(a) => a.into_iter(),
                Err(e) => {
                    out.extend(chunk.iter().map(|_| Err(e.clone())));
                    continue;
                }
            };
            for (r, k) in chunk.iter().zip(keys) {
                if let Err(e) = k {
                    out.push(Err(e));
                    continue;
                }
                let item = match answers.next() {
                    Some(TxnOpResponse::Get(g)) => match g.kvs().first() {
                        Some(found) => self.entry(&pool, &r.key, found).await.map(Some),
                        None => Ok(None),
                    },
                    _ => Err(StoreError::Internal(
                        "etcd: a bulk read answered out of shape".into(),
                    )),
                };
                out.push(item);
            }
        }
        out
    }

    async fn set(&self, req: SetRequest) -> Result<(), StoreError> {
        let key = self.etcd_key(&req.key)?;
        let guard = set_guard(&req)?;
        let pool = self.shared.pool().await?;
        let first_write = guard == Guard::Absent;
        let action = Action::Put {
            value: req.value,
            ttl: req.ttl,
        };
        if self.commit(&pool, vec![(key, guard, action)]).await? {
            Ok(())
        } else if first_write {
            Err(StoreError::EtagMismatch(Some(
                "first-write: the key already exists".into(),
            )))
        } else {
            Err(StoreError::EtagMismatch(None))
        }
    }

    async fn delete(&self, req: DeleteRequest) -> Result<(), StoreError> {
        let key = self.etcd_key(&req.key)?;
        let guard = delete_guard(&req)?;
        let pool = self.shared.pool().await?;
        if self
            .commit(&pool, vec![(key, guard, Action::Delete)])
            .await?
        {
            Ok(())
        } else {
            Err(StoreError::EtagMismatch(None))
        }
    }

    async fn transact(&self, req: TransactionRequest) -> Result<(), StoreError> {
        if req.operations.is_empty() {
            return Ok(());
        }
        let max = self.settings().max_txn_ops;
        if req.operations.len() > max {
            return Err(StoreError::InvalidRequest(format!(
                "the transaction has {} operations; this etcd store allows at most {max} (maxTxnOps, which must not exceed the server's --max-txn-ops)",
                req.operations.len()
            )));
        }
        // Folds operations on one key: the first operation's guard stands, the last write wins.
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut writes: Vec<(String, Guard, Action)> = Vec::new();
        for (i, op) in req.operations.into_iter().enumerate() {
            let key = self.etcd_key(op.key())?;
            let (guard, action) = match op {
                TransactionOp::Upsert(r) => (
                    set_guard(&r)?,
                    Action::Put {
                        value: r.value,
                        ttl: r.ttl,
                    },
                ),
                TransactionOp::Delete(r) => (delete_guard(&r)?, Action::Delete),
            };
            match index.get(&key) {
                None => {
                    index.insert(key.clone(), writes.len());
                    writes.push((key, guard, action));
                }
                Some(&at) => {
                    let staged_exists = matches!(writes[at].2, Action::Put { .. });
                    let holds = match guard {
                        Guard::None => true,
                        Guard::Absent => !staged_exists,
                        Guard::Revision(_) | Guard::Never => false,
                    };
                    if !holds {
                        return Err(StoreError::EtagMismatch(Some(format!(
                            "operation {} (key {:?}) is guarded against a key this transaction already wrote; nothing was written",
                            i + 1,
                            writes[at].0
                        ))));
                    }
                    writes[at].2 = action;
                }
            }
        }
        let pool = self.shared.pool().await?;
        if self.commit(&pool, writes).await? {
            Ok(())
        } else {
            Err(StoreError::EtagMismatch(Some(
                "an ETag or first-write condition of the transaction did not hold; nothing was written"
                    .into(),
            )))
        }
    }

    /// Lists the component's keys under `keyPrefixPath/`, in byte order, `limit` per page (a
    /// linearizable range read per page; the cursor is the last etcd key of the page).
    async fn list_keys(&self, cursor: Option<String>, limit: usize) -> Result<KeyPage, StoreError> {
        self.list_keys_with_prefix("", cursor, limit).await
    }

    /// As [`StateStore::list_keys`], over the range of the keys that start with `prefix`
    /// only (one range read per page).
    async fn list_keys_with_prefix(
        &self,
        prefix: &str,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<KeyPage, StoreError> {
        let limit = limit.max(1);
        let base = format!("{}/", self.settings().prefix);
        let end = prefix_end(format!("{base}{prefix}").as_bytes());
        let start = match &cursor {
            Some(c) => {
                let mut k = c.clone().into_bytes();
                k.push(0);
                k
            }
            None => format!("{base}{prefix}").into_bytes(),
        };
        let pool = self.shared.pool().await?;
        let read = |c: Client| {
            let (start, end) = (start.clone(), end.clone());
            async move {
                let opts = GetOptions::new()
                    .with_range(end)
                    .with_keys_only()
                    .with_limit(limit as i64);
                c.kv_client().get(start, Some(opts)).await
            }
        };
        let resp = self.run(&pool, true, read).await?;
        let mut keys = Vec::with_capacity(resp.kvs().len());
        let mut last = None;
        for found in resp.kvs() {
            let Ok(k) = std::str::from_utf8(found.key()) else {
                continue;
            };
            last = Some(k.to_owned());
            if let Some(stripped) = k.strip_prefix(base.as_str()) {
                keys.push(stripped.to_owned());
            }
        }
        Ok(KeyPage {
            keys,
            next: if resp.more() { last } else { None },
        })
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let pool = self.shared.pool().await?;
        // A linearizable read needs a quorum, so this checks the cluster, not one member.
        let key = format!("{}/", self.settings().prefix);
        let read = |c: Client| {
            let key = key.clone();
            async move {
                c.kv_client()
                    .get(key, Some(GetOptions::new().with_count_only()))
                    .await
            }
        };
        self.run(&pool, true, read).await.map(|_| ())
    }
}

/// The smallest key greater than every key starting with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// Every endpoint and key prefix path the store's keys live under.
fn locations(cfg: &ComponentConfig) -> Vec<String> {
    let path = cfg.get("keyPrefixPath").unwrap_or_default();
    cfg.get("endpoints")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|e| {
            let (addr, _) = super::normalize_endpoint(e, 2379);
            format!("state.etcd:{addr}/{path}")
        })
        .collect()
}

#[cfg(test)]
mod tests;
