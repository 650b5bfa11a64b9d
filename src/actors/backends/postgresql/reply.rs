//! How PostgreSQL's answers become Mecha's: driver and pool errors mapped to `StoreError`
//! (pool failures are never sent), ETags and TTLs to and from columns, rows to entries, and
//! the rounds a bulk write is split into so no round writes one key twice.

use super::*;

pub(super) fn db_err(e: tokio_postgres::Error) -> StoreError {
    if let Some(db) = e.as_db_error() {
        return StoreError::Internal(format!(
            "postgresql: {} (SQLSTATE {})",
            db.message(),
            db.code().code()
        ));
    }
    if e.is_closed() {
        return StoreError::Unavailable("the connection to PostgreSQL was lost".into());
    }
    StoreError::Unavailable(format!("postgresql: {}", with_causes(&e)))
}

/// `error: cause: cause`, since tokio-postgres keeps the useful part (e.g. "Connection
/// refused") in the source chain.
pub(super) fn with_causes(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

/// No statement is sent before the pool hands out a connection: every pool failure but a
/// database error is [`StoreError::NotSent`].
pub(super) fn pool_err(e: PoolError) -> StoreError {
    match e {
        PoolError::Timeout(TimeoutType::Wait) => StoreError::NotSent(
            "timed out waiting for a free PostgreSQL connection (maxConns are busy)".into(),
        ),
        PoolError::Timeout(TimeoutType::Create) => {
            StoreError::NotSent("timed out connecting to PostgreSQL".into())
        }
        PoolError::Timeout(TimeoutType::Recycle) => {
            StoreError::NotSent("timed out checking a pooled PostgreSQL connection".into())
        }
        PoolError::Backend(e) if e.as_db_error().is_none() => {
            StoreError::NotSent(format!("cannot connect to PostgreSQL: {}", with_causes(&e)))
        }
        PoolError::Backend(e) => db_err(e),
        other => StoreError::NotSent(format!("cannot connect to PostgreSQL: {other}")),
    }
}

pub(super) fn parse_etag(raw: &str) -> Result<i64, StoreError> {
    raw.parse()
        .map_err(|_| StoreError::EtagInvalid(raw.to_owned()))
}

pub(super) fn first_write_conflict() -> StoreError {
    StoreError::EtagMismatch(Some("first-write: the key already exists".into()))
}

// === values ===

/// The value as `jsonb` when its bytes are JSON PostgreSQL accepts; `None` otherwise (the row
/// is then stored and read normally but no query filter matches it). serde_json is stricter
/// than jsonb except for `\u0000` in strings, which jsonb rejects.
pub(super) fn json_of(bytes: &[u8]) -> Option<Json<Value>> {
    let v: Value = serde_json::from_slice(bytes).ok()?;
    if bytes.windows(6).any(|w| w == b"\\u0000") && has_nul(&v) {
        return None;
    }
    Some(Json(v))
}

pub(super) fn has_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(a) => a.iter().any(has_nul),
        Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

/// `ttlInSeconds` as the statements take it: seconds, or NULL for no expiry. `Ttl::Never`
/// and an absent TTL both clear an earlier expiry, as Dapr's SQL stores do.
pub(super) fn ttl_param(ttl: Option<Ttl>) -> Option<i32> {
    match ttl {
        Some(Ttl::Seconds(s)) => Some(i32::try_from(s).unwrap_or(i32::MAX)),
        Some(Ttl::Never) | None => None,
    }
}

pub(super) fn entry(value: Vec<u8>, version: i64, expires_at: Option<SystemTime>) -> StateEntry {
    let mut metadata = Metadata::new();
    if let Some(t) = expires_at {
        metadata.insert(TTL_EXPIRE_TIME.to_owned(), format_expire_time(t));
    }
    StateEntry {
        data: Bytes::from(value),
        etag: Some(version.to_string()),
        metadata,
    }
}

/// Splits items into rounds in which every key appears at most once, keeping each key's
/// items in request order (round `n` holds the `n`-th occurrence of each key). A batched
/// statement must not touch a row twice, and in-order application is what the one-by-one
/// semantics of a bulk request mean for a repeated key.
pub(super) fn rounds<T>(items: Vec<(usize, T)>, key: impl Fn(&T) -> &str) -> Vec<Vec<(usize, T)>> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out: Vec<Vec<(usize, T)>> = Vec::new();
    for (i, item) in items {
        let n = seen.entry(key(&item).to_owned()).or_insert(0);
        if out.len() <= *n {
            out.push(Vec::new());
        }
        out[*n].push((i, item));
        *n += 1;
    }
    out
}
