//! Protocol-neutral request and response types for state operations.
//!
//! Both front doors (HTTP and gRPC) translate their wire shapes into these types, the
//! gateway validates and prefixes keys, and backends receive them with keys already
//! prefixed. Nothing here knows about actix-web, tonic or any store.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

/// Which app a request belongs to (its `app-id`); shared, cheap to clone.
pub type AppId = std::sync::Arc<str>;

/// The API operation a failure happened in; it picks the `errorCode` of store failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// GetState.
    Get,
    /// GetBulkState.
    BulkGet,
    /// SaveState (single or bulk).
    Save,
    /// DeleteState.
    Delete,
    /// DeleteBulkState (gRPC only).
    BulkDelete,
    /// ExecuteStateTransaction.
    Transaction,
    /// QueryStateAlpha1.
    Query,
    /// Metadata and health routes, and anything outside the state API.
    Other,
}

impl Operation {
    /// Every operation, `Other` last.
    pub const ALL: [Operation; 8] = [
        Operation::Get,
        Operation::BulkGet,
        Operation::Save,
        Operation::Delete,
        Operation::BulkDelete,
        Operation::Transaction,
        Operation::Query,
        Operation::Other,
    ];

    /// The operation's position in [`Operation::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The operation's wire facts: one row per operation, the only place they are written.
    const fn facts(self) -> &'static OpFacts {
        const fn row(
            metric_label: &'static str,
            method_name: &'static str,
            error_code: &'static str,
            failure: &'static str,
        ) -> OpFacts {
            OpFacts {
                metric_label,
                method_name,
                error_code,
                failure,
            }
        }
        use Operation as O;
        const GET: OpFacts = row(
            "get",
            "GetState",
            "ERR_STATE_GET",
            "fail to get {key} from state store {store}: {detail}",
        );
        const BULK_GET: OpFacts = row("bulk_get", "GetBulkState", "ERR_STATE_BULK_GET", "{detail}");
        const SAVE: OpFacts = row(
            "set",
            "SaveState",
            "ERR_STATE_SAVE",
            "failed saving state in state store {store}: {detail}",
        );
        const DELETE: OpFacts = row(
            "delete",
            "DeleteState",
            "ERR_STATE_DELETE",
            "failed deleting state with key {key}: {detail}",
        );
        const BULK_DELETE: OpFacts = row(
            "bulk_delete",
            "DeleteBulkState",
            "ERR_STATE_BULK_DELETE",
            "failed deleting state in state store {store}: {detail}",
        );
        const TRANSACTION: OpFacts = row(
            "transaction",
            "ExecuteStateTransaction",
            "ERR_STATE_TRANSACTION",
            "error while executing state transaction: {detail}",
        );
        const QUERY: OpFacts = row(
            "query",
            "QueryStateAlpha1",
            "ERR_STATE_QUERY",
            "state store {store} query failed: {detail}",
        );
        const OTHER: OpFacts = row("other", "Other", "ERR_INTERNAL", "{detail}");
        match self {
            O::Get => &GET,
            O::BulkGet => &BULK_GET,
            O::Save => &SAVE,
            O::Delete => &DELETE,
            O::BulkDelete => &BULK_DELETE,
            O::Transaction => &TRANSACTION,
            O::Query => &QUERY,
            O::Other => &OTHER,
        }
    }

    /// Dapr's metric label for the operation (`dapr_component_state_count{operation}`).
    pub const fn metric_label(self) -> &'static str {
        self.facts().metric_label
    }

    /// The operation's name as the gRPC method and HTTP route name.
    pub const fn method_name(self) -> &'static str {
        self.facts().method_name
    }

    /// The `errorCode` of a store failure in this operation.
    pub const fn error_code(self) -> &'static str {
        self.facts().error_code
    }

    /// The message of a store failure in this operation, as Dapr words it.
    pub fn failure_message(self, store: &str, key: &str, detail: &str) -> String {
        let mut out = String::with_capacity(self.facts().failure.len() + detail.len() + 32);
        let mut rest = self.facts().failure;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let close = open + rest[open..].find('}').unwrap_or(0);
            out.push_str(match &rest[open + 1..close] {
                "store" => store,
                "key" => key,
                _ => detail,
            });
            rest = &rest[close + 1..];
        }
        out.push_str(rest);
        out
    }
}

/// What the wire says about one operation.
struct OpFacts {
    metric_label: &'static str,
    method_name: &'static str,
    error_code: &'static str,
    /// The message of a store failure, with `{store}`, `{key}` and `{detail}` filled in.
    failure: &'static str,
}

/// Which front door renders the error; a few messages and details differ between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// The HTTP API.
    Http,
    /// The gRPC API.
    Grpc,
}

impl Protocol {
    /// Its name in metric labels and log lines.
    pub const fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Grpc => "grpc",
        }
    }
}

/// Request or response metadata (`map<string,string>` on the wire).
pub type Metadata = HashMap<String, String>;

/// The request metadata key for a per-item TTL.
pub const TTL_IN_SECONDS: &str = "ttlInSeconds";
/// The response metadata key carrying an item's expiry (RFC 3339, UTC, seconds).
pub const TTL_EXPIRE_TIME: &str = "ttlExpireTime";
/// The request metadata key selecting a value's content type.
pub const CONTENT_TYPE: &str = "contentType";

/// Write concurrency mode (`options.concurrency`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Concurrency {
    /// Not given: the store's default, which is last-write.
    #[default]
    Unspecified,
    /// Create-only when no ETag is given; a normal ETag check otherwise.
    FirstWrite,
    /// Last write wins when no ETag is given.
    LastWrite,
}

impl Concurrency {
    /// Parses Dapr's string form; `""` is unspecified.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "" => Ok(Concurrency::Unspecified),
            "first-write" => Ok(Concurrency::FirstWrite),
            "last-write" => Ok(Concurrency::LastWrite),
            other => Err(format!("unrecognized concurrency model '{other}'")),
        }
    }
}

/// Read/write consistency (`options.consistency`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Consistency {
    /// Not given: the store's default, which is eventual.
    #[default]
    Unspecified,
    /// Eventual consistency.
    Eventual,
    /// Strong consistency, where the store can give it.
    Strong,
}

impl Consistency {
    /// Parses Dapr's string form; `""` is unspecified.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "" => Ok(Consistency::Unspecified),
            "eventual" => Ok(Consistency::Eventual),
            "strong" => Ok(Consistency::Strong),
            other => Err(format!("unrecognized consistency model '{other}'")),
        }
    }
}

/// Concurrency and consistency options of one write or delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StateOptions {
    /// Concurrency mode.
    pub concurrency: Concurrency,
    /// Consistency mode.
    pub consistency: Consistency,
}

/// A per-item time to live, parsed from `ttlInSeconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ttl {
    /// `-1` or `0`: never expire, and clear any earlier expiry or store default.
    Never,
    /// Expire this many seconds after the write.
    Seconds(u32),
}

impl Ttl {
    /// Parses `ttlInSeconds` from request metadata with Dapr's portable rules: a decimal integer
    /// in `[-1, 2147483647]`; missing or empty means "not given".
    pub fn from_metadata(metadata: &Metadata) -> Result<Option<Ttl>, String> {
        match metadata.get(TTL_IN_SECONDS).map(String::as_str) {
            None | Some("") => Ok(None),
            Some(raw) => Ttl::parse(raw).map(Some),
        }
    }

    /// Parses one `ttlInSeconds` value.
    pub fn parse(raw: &str) -> Result<Ttl, String> {
        let bad =
            |why: &str| format!("incorrect value for metadata '{TTL_IN_SECONDS}': '{raw}' {why}");
        let n: i64 = raw.trim().parse().map_err(|_| bad("is not an integer"))?;
        match n {
            -1 | 0 => Ok(Ttl::Never),
            n if n < -1 => Err(bad("is less than -1")),
            n if n > i64::from(i32::MAX) => Err(bad("is larger than 2147483647")),
            n => Ok(Ttl::Seconds(n as u32)),
        }
    }

    /// The absolute expiry of a write made at `now`, if any.
    pub fn expiry_from(self, now: SystemTime) -> Option<SystemTime> {
        match self {
            Ttl::Never => None,
            Ttl::Seconds(s) => Some(now + Duration::from_secs(u64::from(s))),
        }
    }
}

/// Formats an expiry as Dapr's `ttlExpireTime` (RFC 3339, UTC, seconds precision).
pub fn format_expire_time(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string()
}

/// A read of one key. `key` is already prefixed.
#[derive(Debug, Clone)]
pub struct GetRequest {
    /// Store key (prefixed).
    pub key: String,
    /// Requested consistency.
    pub consistency: Consistency,
    /// Request metadata.
    pub metadata: Metadata,
}

/// A value found in a store.
#[derive(Debug, Clone, PartialEq)]
pub struct StateEntry {
    /// The stored bytes, unchanged.
    pub data: Bytes,
    /// The current ETag, for stores with ETags.
    pub etag: Option<String>,
    /// Response metadata (e.g. `ttlExpireTime`).
    pub metadata: Metadata,
}

/// One write. `key` is already prefixed.
#[derive(Debug, Clone)]
pub struct SetRequest {
    /// Store key (prefixed).
    pub key: String,
    /// The bytes to store.
    pub value: Bytes,
    /// Expected ETag; `None` means unguarded (an empty ETag is normalised to `None`).
    pub etag: Option<String>,
    /// Concurrency and consistency.
    pub options: StateOptions,
    /// Parsed `ttlInSeconds`; `None` when not given.
    pub ttl: Option<Ttl>,
    /// Request metadata as sent.
    pub metadata: Metadata,
}

/// One delete. `key` is already prefixed.
#[derive(Debug, Clone)]
pub struct DeleteRequest {
    /// Store key (prefixed).
    pub key: String,
    /// Expected ETag; `None` means unguarded.
    pub etag: Option<String>,
    /// Concurrency and consistency.
    pub options: StateOptions,
    /// Request metadata as sent.
    pub metadata: Metadata,
}

/// One operation of a transaction.
#[derive(Debug, Clone)]
pub enum TransactionOp {
    /// Insert or update.
    Upsert(SetRequest),
    /// Delete.
    Delete(DeleteRequest),
}

impl TransactionOp {
    /// The (prefixed) key the operation touches.
    pub fn key(&self) -> &str {
        match self {
            TransactionOp::Upsert(r) => &r.key,
            TransactionOp::Delete(r) => &r.key,
        }
    }
}

/// An all-or-nothing list of operations.
#[derive(Debug, Clone, Default)]
pub struct TransactionRequest {
    /// Operations, applied in order.
    pub operations: Vec<TransactionOp>,
    /// Transaction-level metadata.
    pub metadata: Metadata,
}

/// A state query (alpha API); `query` is the JSON text as the client sent it.
#[derive(Debug, Clone)]
pub struct QueryRequest {
    /// The JSON query.
    pub query: String,
    /// Request metadata.
    pub metadata: Metadata,
    /// Only keys with this prefix are visible to the query (the calling app's prefix).
    pub key_prefix: String,
}

/// One query result.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryItem {
    /// Store key (prefixed; the gateway strips the prefix).
    pub key: String,
    /// The stored bytes.
    pub data: Bytes,
    /// The ETag, if any.
    pub etag: Option<String>,
}

/// A page of query results.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueryResponse {
    /// Results in order.
    pub results: Vec<QueryItem>,
    /// Token for the next page, if there is one.
    pub token: Option<String>,
    /// Store-defined metadata.
    pub metadata: Metadata,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_parsing_follows_dapr_rules() {
        let cases: &[(&str, Result<Ttl, ()>)] = &[
            ("-1", Ok(Ttl::Never)),
            ("0", Ok(Ttl::Never)),
            ("1", Ok(Ttl::Seconds(1))),
            ("2147483647", Ok(Ttl::Seconds(2147483647))),
            ("2147483648", Err(())),
            ("-2", Err(())),
            ("1.5", Err(())),
            ("ten", Err(())),
        ];
        for (raw, want) in cases {
            assert_eq!(Ttl::parse(raw).map_err(|_| ()), *want, "{raw}");
        }
        let mut md = Metadata::new();
        assert_eq!(Ttl::from_metadata(&md), Ok(None));
        md.insert(TTL_IN_SECONDS.into(), String::new());
        assert_eq!(Ttl::from_metadata(&md), Ok(None));
        md.insert(TTL_IN_SECONDS.into(), "x".into());
        assert!(
            Ttl::from_metadata(&md)
                .unwrap_err()
                .contains("ttlInSeconds")
        );
    }

    #[test]
    fn options_parse_strings() {
        assert_eq!(Concurrency::parse(""), Ok(Concurrency::Unspecified));
        assert_eq!(
            Concurrency::parse("first-write"),
            Ok(Concurrency::FirstWrite)
        );
        assert!(Concurrency::parse("First-Write").is_err());
        assert_eq!(Consistency::parse("strong"), Ok(Consistency::Strong));
        assert_eq!(
            Consistency::parse("x").unwrap_err(),
            "unrecognized consistency model 'x'"
        );
    }

    #[test]
    fn expire_time_is_rfc3339_utc_seconds() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_500);
        assert_eq!(format_expire_time(t), "2023-11-14T22:13:20Z");
    }
}
