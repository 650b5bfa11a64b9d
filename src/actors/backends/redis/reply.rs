//! How Redis answers become Mecha's: errors mapped to `StoreError` (and whether a failed
//! command can have run), replies of the write script and of reads decoded into entries,
//! the read pipelines, and the grouping of keys by hash slot.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use redis::cluster_routing::Slot as HashSlot;
use redis::{RedisError, Value};

use super::{EXPIRY_FIELD, Settings};
use crate::actors::StoreError;
use crate::model::{Metadata, StateEntry, TTL_EXPIRE_TIME, format_expire_time};

pub(super) fn map_redis_error(e: &RedisError, timeout: Duration) -> StoreError {
    use redis::{ErrorKind, ServerErrorKind};
    if e.is_timeout() {
        return StoreError::Timeout(timeout);
    }
    match e.kind() {
        ErrorKind::Io | ErrorKind::AuthenticationFailed => StoreError::Unavailable(e.to_string()),
        ErrorKind::Server(
            ServerErrorKind::BusyLoading
            | ServerErrorKind::TryAgain
            | ServerErrorKind::MasterDown
            | ServerErrorKind::ReadOnly
            | ServerErrorKind::ClusterDown,
        ) => StoreError::Unavailable(e.to_string()),
        _ if e.code() == Some("BUSY") => StoreError::Unavailable(e.to_string()),
        _ => StoreError::Internal(format!("redis: {e}")),
    }
}

/// Whether the connection a command failed on must be replaced.
pub(super) fn is_broken(e: &RedisError) -> bool {
    e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_unrecoverable_error()
}

/// Whether an error proves the command was not run, so sending it again is harmless.
pub(super) fn not_executed(e: &RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind as S};
    match e.kind() {
        ErrorKind::Server(
            S::Moved | S::Ask | S::TryAgain | S::ClusterDown | S::MasterDown | S::ReadOnly,
        )
        | ErrorKind::Server(S::BusyLoading)
        | ErrorKind::ClusterConnectionNotFound => true,
        _ => e.is_connection_refusal(),
    }
}

/// Groups items by the hash slot of their key, in order of first appearance.
pub(super) fn group_by_slot<'a, T: Copy>(
    items: impl IntoIterator<Item = (T, &'a str)>,
) -> Vec<Vec<T>> {
    let mut index: std::collections::HashMap<HashSlot, usize> = Default::default();
    let mut groups: Vec<Vec<T>> = Vec::new();
    for (item, key) in items {
        let g = *index
            .entry(HashSlot::for_key(key.as_bytes()))
            .or_insert_with(|| {
                groups.push(Vec::new());
                groups.len() - 1
            });
        groups[g].push(item);
    }
    groups
}

/// Fails a strong write that fewer than `required` replicas acknowledged.
pub(super) fn check_acked(acked: i64, required: u32, s: &Settings) -> Result<(), StoreError> {
    if acked < i64::from(required) {
        return Err(StoreError::Internal(format!(
            "consistency=strong: the write is applied on the primary but not yet replicated: {acked} of {required} replicas acknowledged it within {}ms",
            s.wait_timeout.as_millis()
        )));
    }
    Ok(())
}

/// One operation for the write script, its ETag already checked for format.
pub(super) struct WriteOp<'a> {
    /// The Redis key (see [`Shared::redis_key`]).
    pub(super) key: std::borrow::Cow<'a, str>,
    pub(super) del: bool,
    pub(super) etag: Option<String>,
    pub(super) first_write: bool,
    pub(super) ttl_ms: i64,
    pub(super) data: &'a [u8],
}

/// The canonical form of an ETag, or [`StoreError::EtagInvalid`].
pub(super) fn canonical_etag(raw: &str) -> Result<String, StoreError> {
    raw.parse::<u64>()
        .map(|v| v.to_string())
        .map_err(|_| StoreError::EtagInvalid(raw.to_owned()))
}

/// Interprets one result code of the write script.
pub(super) fn write_result(v: &Value) -> Result<(), StoreError> {
    match v {
        Value::Int(n) if *n >= 0 => Ok(()),
        Value::Int(-1) => Err(StoreError::EtagMismatch(None)),
        Value::Int(-2) => Err(StoreError::EtagMismatch(Some(
            "the key does not exist".into(),
        ))),
        Value::Int(-3) => Err(StoreError::EtagMismatch(Some(
            "first-write: the key already exists".into(),
        ))),
        Value::BulkString(b) => Err(StoreError::Internal(format!(
            "redis: {}",
            String::from_utf8_lossy(b)
        ))),
        Value::SimpleString(s) => Err(StoreError::Internal(format!("redis: {s}"))),
        other => Err(StoreError::Internal(format!(
            "redis: unexpected script reply {other:?}"
        ))),
    }
}

pub(super) fn unexpected(v: &Value) -> StoreError {
    StoreError::Internal(format!("redis: unexpected script reply {v:?}"))
}

/// What one key's `HMGET key data version expiry` says.
pub(super) enum Read {
    /// No value.
    Missing,
    /// The value, its version and its expiry, all from the hash.
    Entry(StateEntry),
    /// A value whose `expiry` field is absent or belongs to another version (the key was
    /// written by Dapr, or by Dapr after Mecha): its TTL must be asked of Redis
    /// ([`ttl_read_pipeline`]).
    UnknownExpiry,
}

pub(super) fn server_error(e: &redis::ServerError) -> StoreError {
    StoreError::Internal(format!(
        "redis: {} {}",
        e.code(),
        e.details().unwrap_or_default()
    ))
}

pub(super) fn bulk_str(v: Value) -> Result<Option<Vec<u8>>, StoreError> {
    match v {
        Value::BulkString(b) => Ok(Some(b)),
        Value::Nil => Ok(None),
        other => Err(unexpected(&other)),
    }
}

/// The time a key expires at, from its `expiry` field (`<version>:<unix ms>`, `0` for
/// none), if the field belongs to `version`: `Some(None)` means no expiry.
pub(super) fn parse_expiry(field: &[u8], version: &[u8]) -> Option<Option<SystemTime>> {
    let field = std::str::from_utf8(field).ok()?;
    let (of, ms) = field.split_once(':')?;
    if of.as_bytes() != version {
        return None;
    }
    match ms.parse::<u64>().ok()? {
        0 => Some(None),
        ms => Some(Some(SystemTime::UNIX_EPOCH + Duration::from_millis(ms))),
    }
}

/// Interprets the reply to one key's `HMGET key data version expiry` ([`read_pipeline`]).
pub(super) fn read_result(fields: Value) -> Result<Read, StoreError> {
    let mut fields = match fields {
        Value::Array(f) if f.len() == 3 => f.into_iter(),
        Value::ServerError(e) => return Err(server_error(&e)),
        other => return Err(unexpected(&other)),
    };
    let (Some(data), Some(version), Some(expiry)) = (fields.next(), fields.next(), fields.next())
    else {
        unreachable!("three fields")
    };
    // The value is moved out (no copy).
    let Some(data) = bulk_str(data)? else {
        return Ok(Read::Missing);
    };
    let version = bulk_str(version)?;
    let expires = match (bulk_str(expiry)?, &version) {
        (Some(e), Some(v)) => match parse_expiry(&e, v) {
            Some(at) => at,
            None => return Ok(Read::UnknownExpiry),
        },
        _ => return Ok(Read::UnknownExpiry),
    };
    Ok(Read::Entry(entry(data, version, expires)))
}

pub(super) fn entry(
    data: Vec<u8>,
    version: Option<Vec<u8>>,
    expires: Option<SystemTime>,
) -> StateEntry {
    let mut metadata = Metadata::new();
    if let Some(at) = expires {
        metadata.insert(TTL_EXPIRE_TIME.to_owned(), format_expire_time(at));
    }
    StateEntry {
        data: Bytes::from(data),
        etag: version.map(|v| String::from_utf8_lossy(&v).into_owned()),
        metadata,
    }
}

/// Interprets the replies of one key in [`ttl_read_pipeline`].
pub(super) fn ttl_read_result(
    fields: Value,
    pttl: Value,
) -> Result<Option<StateEntry>, StoreError> {
    let mut fields = match fields {
        Value::Array(f) if f.len() == 2 => f.into_iter(),
        Value::ServerError(e) => return Err(server_error(&e)),
        other => return Err(unexpected(&other)),
    };
    let (Some(data), Some(version)) = (fields.next(), fields.next()) else {
        unreachable!("two fields")
    };
    let Some(data) = bulk_str(data)? else {
        return Ok(None);
    };
    let expires = match pttl {
        Value::Int(ms) if ms >= 0 => Some(SystemTime::now() + Duration::from_millis(ms as u64)),
        Value::Int(_) => None,
        other => return Err(unexpected(&other)),
    };
    Ok(Some(entry(data, bulk_str(version)?, expires)))
}

/// What a read of `keys` sends: one `HMGET key data version expiry` per key, pipelined:
/// plain commands (no script, no `MULTI`), one round trip whatever the number of keys.
/// Each `HMGET` sees one moment of its key: the write script sets value, version, expiry
/// field and native expiry in one step. A key that is not a hash answers its own error (the
/// pipeline ignores errors per command).
pub fn read_pipeline(keys: &[&str]) -> redis::Pipeline {
    let mut pipe = redis::Pipeline::with_capacity(keys.len());
    pipe.ignore_errors();
    for k in keys {
        pipe.cmd("HMGET")
            .arg(*k)
            .arg("data")
            .arg("version")
            .arg(EXPIRY_FIELD);
    }
    pipe
}

/// The read of keys whose expiry the hash does not record (written by Dapr): `MULTI`, then
/// per key `HMGET key data version` and `PTTL key`, then `EXEC`, so value, version and
/// remaining TTL come from one moment.
pub fn ttl_read_pipeline(keys: &[&str]) -> redis::Pipeline {
    let mut pipe = redis::Pipeline::with_capacity(2 * keys.len());
    pipe.atomic().ignore_errors();
    for k in keys {
        pipe.cmd("HMGET").arg(*k).arg("data").arg("version");
        pipe.cmd("PTTL").arg(*k);
    }
    pipe
}
