//! `state.jetstream`: state on a NATS JetStream key-value bucket (nats-server 2.9 or newer).
//!
//! # Data layout
//!
//! One bucket (`bucket`) holds every key of the component; Mecha creates it when it is missing
//! (with `history` and `replicas`), unless `createBucket` is false. A value is stored as the
//! KV entry's payload, byte for byte; nothing else is stored with it.
//!
//! NATS KV keys may only contain `[-/_=.a-zA-Z0-9]`, must not start or end with `.` and may
//! not hold empty `.`-separated tokens, while a Dapr key is arbitrary UTF-8 such as
//! `myapp||order 1`. Keys are therefore encoded reversibly ([`encode_key`], [`decode_key`]):
//!
//! * `A`-`Z`, `a`-`z`, `0`-`9`, `-`, `/` and `=` are kept as they are;
//! * `||` becomes `.` (so `myapp||order-1` is stored as `myapp.order-1`, the key daprd's
//!   JetStream store uses for it), except where a `.` would be first, last or follow another
//!   `.`; there each `|` is escaped;
//! * every other byte of the UTF-8 encoding, including `_`, `.` and a lone `|`, becomes `_`
//!   followed by two upper-case hex digits (`_` → `_5F`, space → `_20`, `é` → `_C3_A9`).
//!
//! Decoding reverses it; a stored key that is not in this exact (canonical) form was not
//! written by Mecha and is left out of key listings. An encoded key may be at most
//! `maxKeyLength` bytes (default 1024); a longer key is refused with a clear error before
//! anything is sent, because the server closes a connection whose protocol line exceeds its
//! `max_control_line` (4 KiB by default).
//!
//! # ETags and concurrency
//!
//! The ETag is the entry's revision (the stream sequence of its last write, in decimal).
//! Revisions never repeat in a bucket, so a key that is deleted and created again never
//! matches an old ETag. Every guarded operation is a compare-and-set done by the server
//! (`Nats-Expected-Last-Subject-Sequence`):
//!
//! * a write with an ETag is a KV `update` expecting that revision;
//! * a first-write without an ETag is a create: an `update` expecting revision 0 (no message
//!   for the key), or, when the key's last entry is a delete or purge marker, expecting that
//!   marker's revision, so a deleted key can be created again;
//! * a delete with an ETag is a purge (a roll-up that drops the key's older revisions)
//!   expecting that revision; a delete without one reads the key first and writes nothing
//!   when it is already absent, so deleting missing keys never grows the stream;
//! * an ETag that is not a decimal `u64` is invalid (400); `0` and every other revision that
//!   is not the key's current one are a mismatch (409).
//!
//! A missing, deleted or purged key reads as not found (daprd's store answers an error).
//!
//! # Not supported
//!
//! * Transactions: JetStream KV cannot write several keys atomically; they are refused
//!   (`Unsupported`).
//! * Per-item TTL: nats-server has per-message TTL only from 2.11, on streams created with
//!   `allow_msg_ttl`. The connected server's version and the stream's setting are detected
//!   on connect and logged, but this build never uses native TTL: a write with
//!   `ttlInSeconds` > 0 is refused with `Unsupported(Ttl)` (the gateway's policy may emulate
//!   TTL above the store). `ttlInSeconds` of `-1`/`0` (no expiry) is accepted.
//! * Bulk operations fan out over single ones (no native bulk).
//! * Strong consistency is declared only for a bucket of one replica (`replicas: 1`, the
//!   default): reads are direct gets, which a replica of a replicated bucket may answer
//!   before it has the latest write. A strong read of a bucket found with more replicas than
//!   configured is refused.
//! * Query API.
//!
//! # Connections and failures
//!
//! All instances of one component share one NATS connection, opened lazily on first use
//! within `connectTimeout`; creating a store never blocks. Once connected, the client
//! reconnects by itself; while it is disconnected calls fail at once with
//! [`StoreError::Unavailable`] instead of queueing writes that could be applied after the
//! caller was told they failed. Every call is bounded by `requestTimeout` and answers
//! [`StoreError::Timeout`] (or `Unavailable` when the connection dropped meanwhile); as with
//! any store, a guarded write that times out may or may not have been applied. A failed
//! connect is remembered for `reconnectWait`, during which calls fail fast instead of each
//! waiting for a connect of its own. A bucket deleted under a running Mecha is noticed by the
//! call that meets it (a write fails as unavailable; a read gets no answer and times out,
//! after which a background check looks for the stream), and the next call reopens it,
//! creating it again unless `createBucket` is false.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::jetstream::kv::{self, Operation};
use async_nats::jetstream::{self, context::GetStreamError, context::GetStreamErrorKind};
use async_nats::{Client, ConnectOptions, ServerAddr, connection::State};
use async_trait::async_trait;
use futures::StreamExt;

use super::{ComponentConfig, Descriptor, Field, FieldKind};
use crate::actors::{KeyPage, LazyConnection, StateStore, StoreError, StoreFactory};
use crate::capabilities::{Capability, CapabilitySet};
use crate::model::{
    Concurrency, Consistency, DeleteRequest, GetRequest, Metadata, SetRequest, StateEntry, Ttl,
};

/// The backend's self-description.
pub const DESCRIPTOR: Descriptor = Descriptor {
    component_type: "state.jetstream",
    aliases: &[],
    versions: &["v1"],
    // Strong consistency on a bucket of one replica: the default, so not conditional here;
    // a component with `replicas` above 1 does not declare it (see the factory).
    capabilities: CAPABILITIES.with(Capability::StrongConsistency),
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

/// What a JetStream KV store does natively.
const CAPABILITIES: CapabilitySet = CapabilitySet::of(&[Capability::Etag, Capability::FirstWrite]);

const DURATION: FieldKind = FieldKind::Duration;
const STRING: FieldKind = FieldKind::String;

const METADATA: &[Field] = &[
    Field::new(
        "natsURL",
        STRING,
        "server URLs, comma-separated (nats://host:4222; tls:// for TLS; user:pass@ or token@ authenticate)",
    )
    .required()
    .sensitive(),
    Field::new(
        "bucket",
        STRING,
        "KV bucket ([A-Za-z0-9_-]+); created when missing unless createBucket is false",
    )
    .required(),
    Field::new(
        "jwt",
        STRING,
        "user JWT for decentralised auth (with seedKey)",
    )
    .sensitive(),
    Field::new(
        "seedKey",
        STRING,
        "user nkey seed that signs the server nonce (with jwt)",
    )
    .sensitive(),
    Field::new(
        "credsFile",
        STRING,
        "Mecha: path of a .creds file (JWT and seed), instead of jwt/seedKey; read on each connect",
    ),
    Field::new(
        "name",
        STRING,
        "NATS connection name (default 'mecha - state.jetstream/<component>')",
    ),
    Field::new(
        "createBucket",
        FieldKind::Bool,
        "Mecha: create the bucket when it is missing (default true)",
    ),
    Field::new(
        "history",
        FieldKind::Integer { min: 1, max: 64 },
        "Mecha: revisions kept per key when Mecha creates the bucket (default 1)",
    ),
    Field::new(
        "replicas",
        FieldKind::Integer { min: 1, max: 5 },
        "Mecha: stream replicas when Mecha creates the bucket (default 1)",
    ),
    Field::new(
        "connectTimeout",
        DURATION,
        "Mecha: connect timeout (default 2s)",
    ),
    Field::new(
        "requestTimeout",
        DURATION,
        "Mecha: timeout of each read, write and ping (default 2s)",
    ),
    Field::new(
        "listTimeout",
        DURATION,
        "Mecha: timeout of one page of a key listing, which scans the bucket (default 30s)",
    ),
    Field::new(
        "reconnectWait",
        DURATION,
        "Mecha: after a failed connect, calls fail fast for this long before the next attempt (default 500ms)",
    ),
    Field::new(
        "maxKeyLength",
        FieldKind::Integer { min: 16, max: 3072 },
        "Mecha: longest encoded key in bytes (default 1024; see the key encoding)",
    ),
];

/// The default of `maxKeyLength`.
pub const DEFAULT_MAX_KEY_LENGTH: usize = 1024;

/// Room left on a protocol line for everything but the encoded key (verb, `$KV.<bucket>.`,
/// reply inbox, sizes), against the server's default `max_control_line` of 4096.
const CONTROL_LINE_BUDGET: usize = 4096 - 256;

/// Settings read from component metadata.
#[derive(Debug, Clone)]
struct Settings {
    servers: Vec<ServerAddr>,
    bucket: String,
    creds: Option<Creds>,
    name: String,
    create_bucket: bool,
    history: i64,
    replicas: usize,
    connect_timeout: Duration,
    request_timeout: Duration,
    list_timeout: Duration,
    reconnect_wait: Duration,
    max_key_length: usize,
}

/// Decentralised-auth credentials.
#[derive(Clone)]
enum Creds {
    /// `jwt` + `seedKey`, as a `.creds` document.
    Inline(String),
    /// A `.creds` file, read on each connect.
    File(String),
}

impl std::fmt::Debug for Creds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Creds::Inline(_) => f.write_str("Inline(<redacted>)"),
            Creds::File(p) => write!(f, "File({p})"),
        }
    }
}

/// A `.creds` document holding a user JWT and its nkey seed.
fn creds_document(jwt: &str, seed: &str) -> String {
    format!(
        "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n\
         -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
    )
}

fn is_valid_bucket(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The servers of `natsURL` (comma-separated).
fn servers(url: &str) -> Result<Vec<ServerAddr>, String> {
    let mut servers = Vec::new();
    for part in url.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        // The URL may hold a password: the message names only its position.
        let addr = part.parse::<ServerAddr>().map_err(|e| {
            format!(
                "natsURL entry {} is not a NATS server URL: {e}",
                servers.len() + 1
            )
        })?;
        servers.push(addr);
    }
    if servers.is_empty() {
        return Err("natsURL lists no server".into());
    }
    Ok(servers)
}

/// The credentials: `jwt` with `seedKey`, or `credsFile`, or none.
fn credentials(cfg: &ComponentConfig) -> Result<Option<Creds>, String> {
    let jwt = cfg.get("jwt").map(str::trim).filter(|s| !s.is_empty());
    let seed = cfg.get("seedKey").map(str::trim).filter(|s| !s.is_empty());
    let file = cfg
        .get("credsFile")
        .map(str::trim)
        .filter(|s| !s.is_empty());
    Ok(match (jwt, seed, file) {
        (Some(_), Some(_), Some(_)) => {
            return Err("give either jwt and seedKey or credsFile, not both".into());
        }
        (Some(j), Some(s), None) => {
            let doc = creds_document(j, s);
            // Parses the JWT block and the seed (an invalid seed fails here, at load).
            ConnectOptions::new()
                .credentials(&doc)
                .map_err(|_| "jwt/seedKey: the seed is not a valid user nkey seed".to_owned())?;
            Some(Creds::Inline(doc))
        }
        (Some(_), None, _) => return Err("missing seedKey: jwt needs seedKey".into()),
        (None, Some(_), _) => return Err("missing jwt: seedKey needs jwt".into()),
        (None, None, Some(f)) => {
            std::fs::metadata(f).map_err(|e| format!("credsFile '{f}': {e}"))?;
            Some(Creds::File(f.to_owned()))
        }
        (None, None, None) => None,
    })
}

fn settings(cfg: &ComponentConfig) -> Result<Settings, String> {
    let url = cfg.get("natsURL").unwrap_or_default().trim();
    if url.is_empty() {
        return Err("natsURL must not be empty".into());
    }
    let servers = servers(url)?;
    let bucket = cfg.get("bucket").unwrap_or_default().trim().to_owned();
    if !is_valid_bucket(&bucket) {
        return Err(format!(
            "bucket '{bucket}' is not a valid KV bucket name ([A-Za-z0-9_-]+)"
        ));
    }
    let creds = credentials(cfg)?;
    let s = Settings {
        servers,
        creds,
        name: cfg
            .get("name")
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
            .unwrap_or_else(|| format!("mecha - state.jetstream/{}", cfg.name)),
        create_bucket: cfg.bool_or("createBucket", true),
        history: cfg.int_or("history", 1),
        replicas: cfg.int_or("replicas", 1) as usize,
        connect_timeout: cfg.duration_or("connectTimeout", Duration::from_secs(2)),
        request_timeout: cfg.duration_or("requestTimeout", Duration::from_secs(2)),
        list_timeout: cfg.duration_or("listTimeout", Duration::from_secs(30)),
        reconnect_wait: cfg.duration_or("reconnectWait", Duration::from_millis(500)),
        max_key_length: cfg.int_or("maxKeyLength", DEFAULT_MAX_KEY_LENGTH as i64) as usize,
        bucket,
    };
    for (name, d) in [
        ("connectTimeout", s.connect_timeout),
        ("requestTimeout", s.request_timeout),
        ("listTimeout", s.list_timeout),
    ] {
        if d.is_zero() {
            return Err(format!("{name} must be greater than zero"));
        }
    }
    if s.max_key_length + s.bucket.len() > CONTROL_LINE_BUDGET {
        return Err(format!(
            "maxKeyLength {} with bucket name of {} bytes exceeds the {} bytes a NATS protocol line leaves for a subject",
            s.max_key_length,
            s.bucket.len(),
            CONTROL_LINE_BUDGET
        ));
    }
    Ok(s)
}

fn build(cfg: &ComponentConfig) -> Result<Arc<dyn StoreFactory>, String> {
    let settings = settings(cfg)?;
    Ok(Arc::new(JetStreamFactory {
        shared: Arc::new(Shared {
            settings,
            conn: LazyConnection::default(),
            probing: AtomicBool::new(false),
        }),
    }))
}

// === key encoding ===

fn is_plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'/' || b == b'='
}

/// Encodes a Mecha key into a NATS KV key (see the module doc). `None` for the empty key.
pub fn encode_key(key: &str) -> Option<String> {
    if key.is_empty() {
        return None;
    }
    let bytes = key.as_bytes();
    let mut out = String::with_capacity(key.len() + 8);
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'|'
            && bytes.get(i + 1) == Some(&b'|')
            && !out.is_empty()
            && !out.ends_with('.')
            && i + 2 < bytes.len()
        {
            out.push('.');
            i += 2;
            continue;
        }
        if is_plain(b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "_{b:02X}");
        }
        i += 1;
    }
    Some(out)
}

/// Decodes a NATS KV key written by [`encode_key`]; `None` when it is not in that canonical
/// form (a key written by something else).
pub fn decode_key(stored: &str) -> Option<String> {
    let bytes = stored.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'.' => {
                out.extend_from_slice(b"||");
                i += 1;
            }
            b'_' => {
                let hex = stored.get(i + 1..i + 3)?;
                if !hex
                    .bytes()
                    .all(|h| h.is_ascii_digit() || (b'A'..=b'F').contains(&h))
                {
                    return None;
                }
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b if is_plain(b) => {
                out.push(b);
                i += 1;
            }
            _ => return None,
        }
    }
    let key = String::from_utf8(out).ok()?;
    (encode_key(&key).as_deref() == Some(stored)).then_some(key)
}

// === connection ===

/// What all instances of one configured store share.
struct Shared {
    settings: Settings,
    /// The connection and bucket, opened on first use.
    conn: LazyConnection<Conn>,
    /// Whether a background check that the bucket exists is running.
    probing: AtomicBool,
}

/// An open connection and the bucket's handle.
struct Conn {
    client: Client,
    js: jetstream::Context,
    kv: kv::Store,
    /// The server's `max_payload`, read once on connect.
    max_payload: usize,
    /// The bucket stream's replicas, read once on connect.
    replicas: usize,
}

/// What was detected about the server on connect.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TtlSupport {
    /// The server's version string.
    server_version: String,
    /// Whether that version has per-message TTL (2.11 or newer).
    server_has_msg_ttl: bool,
    /// Whether the bucket's stream allows per-message TTL (`allow_msg_ttl`).
    stream_allows_msg_ttl: bool,
}

/// Parses `major.minor` of a server version such as `2.9.10` or `2.11.0-RC.1`.
pub fn version_at_least(version: &str, major: u64, minor: u64) -> bool {
    let mut parts = version
        .trim_start_matches('v')
        .split(['.', '-'])
        .map(|p| p.parse::<u64>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(ma), Some(mi)) => (ma, mi) >= (major, minor),
        _ => false,
    }
}

impl Shared {
    /// The shared connection, opened on first use. Concurrent callers wait for one connect
    /// instead of each opening their own.
    async fn conn(&self) -> Result<Arc<Conn>, StoreError> {
        let s = &self.settings;
        let budget = s.connect_timeout + s.request_timeout;
        self.conn
            .get(s.reconnect_wait, || async {
                tokio::time::timeout(budget, self.open())
                    .await
                    .unwrap_or(Err(StoreError::Timeout(budget)))
            })
            .await
    }

    /// Forgets the connection, so the next call opens it (and the bucket) again.
    fn forget(&self) {
        self.conn.forget();
    }

    /// Connects, and opens (or creates) the bucket.
    async fn open(&self) -> Result<Conn, StoreError> {
        let s = &self.settings;
        let mut opts = ConnectOptions::new()
            .name(&s.name)
            .connection_timeout(s.connect_timeout)
            .request_timeout(Some(s.request_timeout));
        opts = match &s.creds {
            None => opts,
            Some(Creds::Inline(doc)) => opts
                .credentials(doc)
                .map_err(|e| StoreError::Internal(format!("jetstream: credentials: {e}")))?,
            Some(Creds::File(path)) => opts
                .credentials_file(path)
                .await
                .map_err(|e| StoreError::NotSent(format!("jetstream: credsFile '{path}': {e}")))?,
        };
        let client = opts
            .connect(s.servers.as_slice())
            .await
            .map_err(|e| StoreError::NotSent(format!("jetstream: connect: {e}")))?;
        let mut js = jetstream::new(client.clone());
        js.set_timeout(s.request_timeout);
        let unavailable = |what: &str, e: &dyn std::error::Error| {
            StoreError::Unavailable(format!(
                "jetstream: bucket '{}' {what}: {}",
                s.bucket,
                error_chain(e)
            ))
        };
        match js.get_stream(format!("KV_{}", s.bucket)).await {
            Ok(_) => {}
            Err(e) if is_stream_not_found(&e) && s.create_bucket => {
                // Creating a bucket that a concurrent creator just made, with the same
                // configuration, succeeds, so racing instances agree.
                js.create_stream(bucket_stream_config(s))
                    .await
                    .map_err(|e| unavailable("is missing and could not be created", &e))?;
                tracing::info!(bucket = %s.bucket, history = s.history, replicas = s.replicas, "jetstream: created the bucket");
            }
            Err(e) if is_stream_not_found(&e) => {
                return Err(StoreError::Unavailable(format!(
                    "jetstream: bucket '{}' does not exist (createBucket is false)",
                    s.bucket
                )));
            }
            Err(e) => return Err(unavailable("could not be read", &e)),
        }
        let kv = js
            .get_key_value(&s.bucket)
            .await
            .map_err(|e| unavailable("is not a usable KV bucket", &e))?;
        let info = client.server_info();
        let max_payload = info.max_payload;
        let ttl = TtlSupport {
            server_has_msg_ttl: version_at_least(&info.version, 2, 11),
            server_version: info.version,
            stream_allows_msg_ttl: kv.stream.cached_info().config.allow_message_ttl,
        };
        tracing::info!(
            bucket = %s.bucket,
            server = %ttl.server_version,
            msg_ttl_server = ttl.server_has_msg_ttl,
            msg_ttl_stream = ttl.stream_allows_msg_ttl,
            "jetstream: connected; per-item TTL is not used natively by this build"
        );
        let replicas = kv.stream.cached_info().config.num_replicas;
        if replicas > 1 && s.replicas == 1 {
            tracing::warn!(bucket = %s.bucket, replicas, "jetstream: the bucket has several replicas; consistency=strong reads are refused (a replica may serve them)");
        }
        Ok(Conn {
            client,
            js,
            kv,
            max_payload,
            replicas,
        })
    }
}

/// Whether the server answered that the stream does not exist.
fn is_stream_not_found(e: &GetStreamError) -> bool {
    matches!(e.kind(), GetStreamErrorKind::JetStream(js)
        if js.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND)
}

/// The stream behind a new bucket, as NATS KV lays it out (the conventions every NATS KV
/// client follows: one subject space `$KV.<bucket>.>`, history as messages per subject,
/// roll-ups allowed for purges, direct gets). `create_key_value` of async-nats is not used:
/// it first queries account information in a form nats-server 2.9 does not answer.
fn bucket_stream_config(s: &Settings) -> jetstream::stream::Config {
    use jetstream::stream::{Config, DiscardPolicy};
    Config {
        name: format!("KV_{}", s.bucket),
        description: Some("Mecha state store".into()),
        subjects: vec![format!("$KV.{}.>", s.bucket)],
        max_messages_per_subject: s.history,
        max_bytes: -1,
        max_messages: -1,
        max_message_size: -1,
        allow_rollup: true,
        deny_delete: true,
        deny_purge: false,
        allow_direct: true,
        num_replicas: s.replicas,
        discard: DiscardPolicy::New,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    }
}

struct JetStreamFactory {
    shared: Arc<Shared>,
}

impl StoreFactory for JetStreamFactory {
    fn create(&self) -> Result<Arc<dyn StateStore>, StoreError> {
        Ok(Arc::new(JetStreamStore {
            shared: self.shared.clone(),
        }))
    }

    /// Strong consistency on a bucket of one replica: every write is acknowledged once
    /// stored (on several replicas: by a quorum), and the one copy serves every read.
    fn capabilities(&self) -> CapabilitySet {
        if self.shared.settings.replicas == 1 {
            CAPABILITIES.with(Capability::StrongConsistency)
        } else {
            CAPABILITIES
        }
    }

    /// Instances list their keys, so Mecha may emulate TTL on the bucket (expiry sweep).
    fn lists_keys(&self) -> bool {
        true
    }
}

/// One store instance (all instances of a component share the connection).
pub struct JetStreamStore {
    shared: Arc<Shared>,
}

/// How a NATS call failed, before mapping to [`StoreError`].
enum Fail {
    /// The server refused a compare-and-set.
    WrongRevision,
    /// The client or server timed out.
    TimedOut,
    /// No stream takes the bucket's subjects: the bucket was deleted.
    NoBucket,
    /// Anything else.
    Other(String),
}

fn update_fail(e: kv::UpdateError) -> Fail {
    match e.kind() {
        kv::UpdateErrorKind::WrongLastRevision => Fail::WrongRevision,
        kv::UpdateErrorKind::TimedOut => Fail::TimedOut,
        _ => other_fail(&e),
    }
}

/// Recognises, under a write's error, a bucket whose stream is gone (deleted under a running
/// Mecha) and an acknowledgement that timed out.
fn other_fail(e: &(dyn std::error::Error + 'static)) -> Fail {
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(inner) = src {
        if let Some(p) = inner.downcast_ref::<jetstream::context::PublishError>() {
            match p.kind() {
                jetstream::context::PublishErrorKind::StreamNotFound => return Fail::NoBucket,
                jetstream::context::PublishErrorKind::TimedOut => return Fail::TimedOut,
                _ => {}
            }
        }
        src = inner.source();
    }
    Fail::Other(error_chain(e))
}

fn entry_fail(e: kv::EntryError) -> Fail {
    match e.kind() {
        kv::EntryErrorKind::TimedOut => Fail::TimedOut,
        _ => Fail::Other(error_chain(&e)),
    }
}

fn put_fail(e: kv::PutError) -> Fail {
    other_fail(&e)
}

/// An error with its sources, which say what actually went wrong.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let _ = write!(s, ": {inner}");
        src = inner.source();
    }
    s
}

impl JetStreamStore {
    /// The connection, failing fast while the client is disconnected.
    async fn conn(&self) -> Result<Arc<Conn>, StoreError> {
        let c = self.shared.conn().await?;
        match c.client.connection_state() {
            State::Connected => Ok(c),
            other => Err(StoreError::Unavailable(format!(
                "jetstream: not connected to NATS ({other:?})"
            ))),
        }
    }

    /// The encoded key, or a clear error.
    fn key(&self, key: &str) -> Result<String, StoreError> {
        let max = self.shared.settings.max_key_length;
        let enc = encode_key(key)
            .ok_or_else(|| StoreError::InvalidRequest("the key must not be empty".into()))?;
        if enc.len() > max {
            return Err(StoreError::InvalidRequest(format!(
                "the key is {} bytes once encoded for NATS KV; this store allows at most {max} (maxKeyLength)",
                enc.len()
            )));
        }
        Ok(enc)
    }

    /// Maps a failure, telling a dropped connection from a slow server.
    fn map(&self, c: &Arc<Conn>, f: Fail) -> StoreError {
        let t = self.shared.settings.request_timeout;
        let connected = c.client.connection_state() == State::Connected;
        match f {
            Fail::WrongRevision => StoreError::EtagMismatch(None),
            _ if !connected => StoreError::Unavailable("jetstream: connection to NATS lost".into()),
            Fail::TimedOut => {
                self.probe_bucket(c);
                StoreError::Timeout(t)
            }
            Fail::NoBucket => {
                // The next call opens the bucket again (and creates it, unless createBucket
                // is false).
                self.shared.forget();
                StoreError::Unavailable(format!(
                    "jetstream: bucket '{}' no longer exists",
                    self.shared.settings.bucket
                ))
            }
            Fail::Other(m) => StoreError::Internal(format!("jetstream: {m}")),
        }
    }

    /// After a timeout on a live connection, checks in the background whether the bucket
    /// still exists: reads of a deleted bucket get no answer (rather than an error), so this
    /// is how they learn that the next call must open (or re-create) it. One probe at a time.
    fn probe_bucket(&self, c: &Arc<Conn>) {
        if self.shared.probing.swap(true, Ordering::AcqRel) {
            return;
        }
        let (shared, c) = (self.shared.clone(), c.clone());
        tokio::spawn(async move {
            let t = shared.settings.request_timeout;
            let stream = c.kv.stream_name.clone();
            if let Ok(Err(e)) = tokio::time::timeout(t, c.js.get_stream(&stream)).await
                && is_stream_not_found(&e)
            {
                tracing::warn!(bucket = %shared.settings.bucket, "jetstream: the bucket no longer exists; reopening it on the next call");
                shared.forget();
            }
            shared.probing.store(false, Ordering::Release);
        });
    }

    /// Runs one NATS call within `requestTimeout`.
    async fn call<T>(
        &self,
        c: &Arc<Conn>,
        fut: impl std::future::Future<Output = Result<T, Fail>>,
    ) -> Result<T, StoreError> {
        let t = self.shared.settings.request_timeout;
        match tokio::time::timeout(t, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(f)) => Err(self.map(c, f)),
            Err(_) => Err(self.map(c, Fail::TimedOut)),
        }
    }

    /// The key's last entry (a value or a delete/purge marker), if any.
    async fn entry(&self, c: &Arc<Conn>, key: &str) -> Result<Option<kv::Entry>, StoreError> {
        self.call(c, async { c.kv.entry(key).await.map_err(entry_fail) })
            .await
    }

    /// Refuses a value the server would refuse, with a clear message.
    fn check_size(c: &Conn, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let max = c.max_payload;
        if max > 0 && value.len() > max {
            return Err(StoreError::InvalidRequest(format!(
                "the value of key {key:?} is {} bytes; the NATS server accepts at most {max} (max_payload)",
                value.len()
            )));
        }
        Ok(())
    }

    /// Create-only write: succeeds over a missing, deleted or purged key.
    async fn create(
        &self,
        c: &Arc<Conn>,
        key: &str,
        value: bytes::Bytes,
    ) -> Result<(), StoreError> {
        let mut expect = 0u64;
        // Each round either writes or learns the key's current state; a concurrent change
        // between the read and the write is a lost race, reported as a mismatch.
        for _ in 0..2 {
            let attempt = self
                .call(c, async {
                    c.kv.update(key, value.clone(), expect)
                        .await
                        .map_err(update_fail)
                })
                .await;
            match attempt {
                Ok(_) => return Ok(()),
                Err(StoreError::EtagMismatch(_)) => {}
                Err(e) => return Err(e),
            }
            match self.entry(c, key).await? {
                Some(e) if e.operation == Operation::Put => {
                    return Err(StoreError::EtagMismatch(Some(
                        "first-write: the key already exists".into(),
                    )));
                }
                Some(marker) if marker.revision != expect => expect = marker.revision,
                Some(_) | None => break,
            }
        }
        Err(StoreError::EtagMismatch(Some(
            "first-write: the key was written concurrently".into(),
        )))
    }
}

/// The revision an ETag names, or [`StoreError::EtagInvalid`].
fn parse_etag(raw: &str) -> Result<u64, StoreError> {
    raw.parse::<u64>()
        .map_err(|_| StoreError::EtagInvalid(raw.to_owned()))
}

#[async_trait]
impl StateStore for JetStreamStore {
    async fn get(&self, req: GetRequest) -> Result<Option<StateEntry>, StoreError> {
        let key = self.key(&req.key)?;
        let c = self.conn().await?;
        if req.consistency == Consistency::Strong && c.replicas > 1 {
            // Reads are direct gets, which any replica may answer with what it has so far.
            return Err(StoreError::InvalidRequest(format!(
                "consistency=strong: bucket '{}' has {} replicas and a read may be served by one that lags; strong reads need a bucket of one replica",
                self.shared.settings.bucket, c.replicas
            )));
        }
        Ok(match self.entry(&c, &key).await? {
            Some(e) if e.operation == Operation::Put => Some(StateEntry {
                data: e.value,
                etag: Some(e.revision.to_string()),
                metadata: Metadata::new(),
            }),
            _ => None,
        })
    }

    async fn set(&self, req: SetRequest) -> Result<(), StoreError> {
        if matches!(req.ttl, Some(Ttl::Seconds(_))) {
            return Err(StoreError::Unsupported(Capability::Ttl));
        }
        let key = self.key(&req.key)?;
        let etag = req.etag.as_deref().map(parse_etag).transpose()?;
        let c = self.conn().await?;
        Self::check_size(&c, &req.key, &req.value)?;
        let value = req.value;
        match etag {
            // Revision 0 would mean "the key does not exist": no ETag names it.
            Some(0) => Err(StoreError::EtagMismatch(None)),
            Some(rev) => self
                .call(&c, async {
                    c.kv.update(&key, value, rev).await.map_err(update_fail)
                })
                .await
                .map(|_| ()),
            None if req.options.concurrency == Concurrency::FirstWrite => {
                self.create(&c, &key, value).await
            }
            None => self
                .call(&c, async { c.kv.put(&key, value).await.map_err(put_fail) })
                .await
                .map(|_| ()),
        }
    }

    async fn delete(&self, req: DeleteRequest) -> Result<(), StoreError> {
        let key = self.key(&req.key)?;
        let etag = req.etag.as_deref().map(parse_etag).transpose()?;
        let c = self.conn().await?;
        let expect = match etag {
            Some(0) => return Err(StoreError::EtagMismatch(None)),
            Some(rev) => Some(rev),
            None => match self.entry(&c, &key).await? {
                Some(e) if e.operation == Operation::Put => None,
                // Missing, deleted or purged already: nothing to write.
                _ => return Ok(()),
            },
        };
        self.call(&c, async {
            c.kv.purge_expect_revision(&key, expect)
                .await
                .map_err(update_fail)
        })
        .await
    }

    /// Lists the bucket's live keys (decoded) in byte order of their stored form, `limit` per
    /// page; the cursor is the last stored key of the previous page. Each page scans every
    /// key's last entry (headers only, through an ordered consumer), so listing a bucket of N
    /// keys in pages of L costs about N²/L entries on the wire: it serves housekeeping, not
    /// requests. Keys not written by Mecha (not in canonical encoding) are left out.
    async fn list_keys(&self, cursor: Option<String>, limit: usize) -> Result<KeyPage, StoreError> {
        self.list_keys_with_prefix("", cursor, limit).await
    }

    /// As [`StateStore::list_keys`], keeping the keys whose stored form starts with the
    /// encoded `prefix` (an app prefix `app||` is the subject token `app.`).
    async fn list_keys_with_prefix(
        &self,
        prefix: &str,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<KeyPage, StoreError> {
        let stored_prefix = encoded_prefix(prefix);
        let limit = limit.max(1);
        let c = self.conn().await?;
        let t = self.shared.settings.list_timeout;
        let scan = async {
            let mut keys = stored_keys(&c, &stored_prefix).await?;
            // The `limit + 1` smallest stored keys after the cursor.
            let mut page: BTreeSet<String> = BTreeSet::new();
            while let Some(k) = keys.next().await {
                let k = k?;
                if cursor
                    .as_ref()
                    .is_some_and(|cur| k.as_str() <= cur.as_str())
                {
                    continue;
                }
                if !k.starts_with(stored_prefix.as_str())
                    || (page.len() > limit && page.last().is_some_and(|last| &k >= last))
                {
                    continue;
                }
                if decode_key(&k).is_none() {
                    continue;
                }
                page.insert(k);
                if page.len() > limit + 1 {
                    page.pop_last();
                }
            }
            Ok::<_, Fail>(page)
        };
        let mut page = match tokio::time::timeout(t, scan).await {
            Ok(Ok(p)) => p,
            Ok(Err(f)) => return Err(self.map(&c, f)),
            Err(_) => return Err(StoreError::Timeout(t)),
        };
        let more = page.len() > limit;
        if more {
            page.pop_last();
        }
        let next = if more { page.last().cloned() } else { None };
        Ok(KeyPage {
            keys: page.iter().filter_map(|k| decode_key(k)).collect(),
            next,
        })
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let c = self.conn().await?;
        let stream = c.kv.stream_name.clone();
        self.call(&c, async {
            c.js.get_stream(&stream)
                .await
                .map(|_| ())
                .map_err(|e| Fail::Other(error_chain(&e)))
        })
        .await
    }
}

/// The stored keys starting with `stored_prefix`. An app's prefix is a whole subject token
/// (`app||` is stored as `app.`), so the server filters: an ordered consumer on
/// `$KV.<bucket>.app.>`, last message per key, headers only, skipping deleted keys, ending
/// when the server says nothing is pending. Another prefix (or none: the TTL sweep) lists
/// the whole bucket.
async fn stored_keys(
    c: &Conn,
    stored_prefix: &str,
) -> Result<futures::stream::BoxStream<'static, Result<String, Fail>>, Fail> {
    use async_nats::jetstream::consumer::{DeliverPolicy, ReplayPolicy, push::OrderedConfig};
    let fail = |e: &dyn std::error::Error| Fail::Other(error_chain(e));
    if !stored_prefix.ends_with('.') {
        let keys = c.kv.keys().await.map_err(|e| fail(&e))?;
        return Ok(keys.map(move |k| k.map_err(|e| fail(&e))).boxed());
    }
    let subject_prefix = c.kv.prefix.clone();
    let consumer =
        c.kv.stream
            .create_consumer(OrderedConfig {
                deliver_subject: c.client.new_inbox(),
                description: Some("mecha key listing".into()),
                filter_subject: format!("{subject_prefix}{stored_prefix}>"),
                headers_only: true,
                replay_policy: ReplayPolicy::Instant,
                deliver_policy: DeliverPolicy::LastPerSubject,
                ..Default::default()
            })
            .await
            .map_err(|e| fail(&e))?;
    let empty = consumer.cached_info().num_pending == 0;
    let messages = consumer.messages().await.map_err(|e| fail(&e))?;
    let state = (messages, empty);
    Ok(futures::stream::unfold(state, move |(mut messages, done)| {
        let subject_prefix = subject_prefix.clone();
        async move {
            if done {
                return None;
            }
            loop {
                let m = match messages.next().await? {
                    Ok(m) => m,
                    Err(e) => return Some((Err(fail(&e)), (messages, true))),
                };
                let last = m.info().map_or(true, |i| i.pending == 0);
                let deleted = m
                    .headers
                    .as_ref()
                    .and_then(|h| h.get("KV-Operation"))
                    .is_some_and(|op| matches!(op.as_str(), "DEL" | "PURGE"));
                let key = m.subject.as_str().strip_prefix(subject_prefix.as_str());
                match key {
                    Some(k) if !deleted => return Some((Ok(k.to_owned()), (messages, last))),
                    _ if last => return None,
                    _ => continue,
                }
            }
        }
    })
    .boxed())
}

/// The stored (encoded) form every key starting with `prefix` starts with: `app||` becomes
/// `app.`, as in the encoded keys (empty for an empty prefix).
fn encoded_prefix(prefix: &str) -> String {
    if prefix.is_empty() {
        return String::new();
    }
    let mut enc = encode_key(&format!("{prefix}x")).unwrap_or_default();
    enc.pop();
    enc
}

/// Every server the store's bucket is on (`host:port/bucket`).
fn locations(cfg: &ComponentConfig) -> Vec<String> {
    let bucket = cfg.get("bucket").unwrap_or_default().trim();
    cfg.get("natsURL")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (addr, _) = super::normalize_endpoint(p, 4222);
            format!("state.jetstream:{addr}/{bucket}")
        })
        .collect()
}

#[cfg(test)]
mod tests;
