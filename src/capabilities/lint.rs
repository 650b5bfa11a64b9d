//! The request-metadata lint: pure rules over one metadata map.
//!
//! Dapr passes request metadata to the store unchecked, so a misspelt `ttlInSecond` is
//! dropped without a word and a Cosmos-only `partitionKey` quietly ties an app to one store.
//! [`lint`] looks at one map (the HTTP `metadata.*` query parameters, one item of a save body,
//! a transaction or one of its operations, or a gRPC `metadata` field) against what the
//! target store understands and returns [`Finding`]s: data, not strings, so the doors, the
//! logs and the metrics each render them their own way.
//!
//! The rules come from tables, not from checks scattered in handlers: [`PORTABLE`] (keys
//! Dapr's runtime or every store understands), [`COMPONENT_ONLY`] (component metadata names
//! that do nothing per request), [`STORE_SPECIFIC`] (keys only some store types honour), and
//! the target store's own [`RequestKey`] declarations.
//!
//! An empty map costs nothing: no finding, no allocation.

use std::fmt;

use super::Status;

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Worth knowing; never rejects a call.
    Info,
    /// Portability or correctness risk; rejects the call when the lint mode is `reject`.
    Warning,
    /// The store would fail on it anyway; rejects the call in every mode (even `off`).
    Error,
}

impl Severity {
    /// Lower-case name, as used in headers, logs and metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// The stable code of a finding. Codes are part of Mecha's interface: they appear in
/// response headers, logs and metric labels, and the README documents each one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LintCode {
    /// A key nobody understands (often a misspelling; a suggestion is given when one is close).
    UnknownKey,
    /// A key only some store types honour, sent to a store that is not one of them.
    StoreSpecificKey,
    /// A component-level name (`keyPrefix`, `actorStateStore`, ...) sent per request, where it
    /// does nothing.
    ComponentLevelKey,
    /// A value the store would refuse (`ttlInSeconds=abc`, `-5`).
    InvalidValue,
    /// A key the target store will ignore under its policy (`ttlInSeconds` where TTL is ignored).
    IgnoredByStore,
    /// A key the operation does not use (`ttlInSeconds` on a read or a delete).
    NotForOperation,
    /// A key that needs a runtime feature Mecha does not have (`outbox.projection`).
    UnsupportedFeature,
    /// A value that only some stores interpret (`contentType` other than JSON).
    NonPortableValue,
    /// A call one of its app's portability targets (`apps[].portableTo`) would serve
    /// differently: rejected there, or dropped there while served here, or a metadata key the
    /// target type does not understand.
    NotPortable,
}

impl LintCode {
    /// Every code, in documentation order.
    pub const ALL: [LintCode; 9] = [
        LintCode::UnknownKey,
        LintCode::StoreSpecificKey,
        LintCode::ComponentLevelKey,
        LintCode::InvalidValue,
        LintCode::IgnoredByStore,
        LintCode::NotForOperation,
        LintCode::UnsupportedFeature,
        LintCode::NonPortableValue,
        LintCode::NotPortable,
    ];

    /// The stable wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            LintCode::UnknownKey => "unknown-key",
            LintCode::StoreSpecificKey => "store-specific-key",
            LintCode::ComponentLevelKey => "component-level-key",
            LintCode::InvalidValue => "invalid-value",
            LintCode::IgnoredByStore => "ignored-by-store",
            LintCode::NotForOperation => "not-for-operation",
            LintCode::UnsupportedFeature => "unsupported-feature",
            LintCode::NonPortableValue => "non-portable-value",
            LintCode::NotPortable => "not-portable",
        }
    }

    /// The severity a finding of this code has.
    pub const fn severity(self) -> Severity {
        match self {
            LintCode::InvalidValue => Severity::Error,
            LintCode::NonPortableValue => Severity::Info,
            _ => Severity::Warning,
        }
    }
}

impl fmt::Display for LintCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which metadata map of a request a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Location {
    /// Request-level metadata: HTTP `metadata.*` query parameters or a gRPC request's map.
    Request,
    /// Item N (from 0) of a save or bulk body.
    Item(usize),
    /// Transaction-level metadata.
    Transaction,
    /// Operation N (from 0) of a transaction.
    Operation(usize),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Request => f.write_str("request"),
            Location::Item(n) => write!(f, "item[{n}]"),
            Location::Transaction => f.write_str("transaction"),
            Location::Operation(n) => write!(f, "operation[{n}]"),
        }
    }
}

/// The operation a metadata map travels with: it decides which keys have an effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LintOp {
    /// GetState and each key of GetBulkState.
    Get,
    /// SaveState items and transaction upserts.
    Save,
    /// DeleteState items and transaction deletes.
    Delete,
    /// Transaction-level metadata.
    Transaction,
    /// QueryStateAlpha1.
    Query,
}

/// The kind of value a request key takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    /// Any string.
    Any,
    /// A decimal integer within the bounds (inclusive).
    Integer {
        /// Smallest accepted value.
        min: i64,
        /// Largest accepted value.
        max: i64,
    },
    /// `true` or `false`.
    Bool,
}

impl ValueKind {
    /// Why `value` is not of this kind, if it is not.
    pub fn check(self, value: &str) -> Option<String> {
        match self {
            ValueKind::Any => None,
            ValueKind::Integer { min, max } => match value.trim().parse::<i64>() {
                Ok(n) if (min..=max).contains(&n) => None,
                Ok(n) => Some(format!("{n} is outside {min}..={max}")),
                Err(_) => Some("is not an integer".to_owned()),
            },
            ValueKind::Bool => match value {
                "true" | "false" => None,
                _ => Some("is not true or false".to_owned()),
            },
        }
    }
}

/// A request-level metadata key a store (or Mecha's runtime) understands.
#[derive(Debug, Clone, Copy)]
pub struct RequestKey {
    /// The key, case-sensitive as Dapr matches it.
    pub name: &'static str,
    /// Its value kind.
    pub kind: ValueKind,
    /// The operations on which it has an effect.
    pub ops: &'static [LintOp],
}

const WRITES: &[LintOp] = &[LintOp::Save];
const EVERY_OP: &[LintOp] = &[
    LintOp::Get,
    LintOp::Save,
    LintOp::Delete,
    LintOp::Transaction,
    LintOp::Query,
];

/// The name of the per-item TTL key.
pub const TTL_KEY: &str = "ttlInSeconds";
/// The name of the content-type key.
pub const CONTENT_TYPE_KEY: &str = "contentType";

/// Keys every Mecha store accepts per request (spec section 7.1). `ttlInSeconds` is
/// checked against the store's TTL decision separately.
pub const PORTABLE: &[RequestKey] = &[
    RequestKey {
        name: TTL_KEY,
        kind: ValueKind::Integer {
            min: -1,
            max: i32::MAX as i64,
        },
        ops: WRITES,
    },
    RequestKey {
        name: CONTENT_TYPE_KEY,
        kind: ValueKind::Any,
        ops: EVERY_OP,
    },
];

/// The name of Cosmos DB's partition key; its fate is decided by the matrix (`partitionKey`).
pub const PARTITION_KEY: &str = "partitionKey";

/// Keys that only some store types honour, with the types that do (spec sections 7.1, 7.2).
/// `partitionKey` is not here: the matrix has a decision for it (see [`LintTarget`]).
pub const STORE_SPECIFIC: &[(&str, &[&str])] = &[
    ("queryIndexName", &["state.redis"]),
    ("contentMD5", &["state.azure.blobstorage"]),
    ("contentEncoding", &["state.azure.blobstorage"]),
    ("contentLanguage", &["state.azure.blobstorage"]),
    ("contentDisposition", &["state.azure.blobstorage"]),
    ("cacheControl", &["state.azure.blobstorage"]),
];

/// Component metadata names that do nothing when sent per request (spec section 7).
pub const COMPONENT_ONLY: &[&str] = &[
    "keyPrefix",
    "actorStateStore",
    "outboxPublishPubsub",
    "outboxPublishTopic",
    "outboxPubsub",
    "outboxDiscardWhenMissingState",
    "primaryEncryptionKey",
    "secondaryEncryptionKey",
    "queryIndexes",
    "ttlAttributeName",
    "cleanupInterval",
    "cleanupIntervalInSeconds",
    "keyPrefixPath",
];

/// Keys that need a daprd runtime feature Mecha does not have, with that feature.
pub const RUNTIME_FEATURES: &[(&str, &str)] =
    &[("outbox.projection", "daprd's transactional outbox")];

/// One lint finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Stable code.
    pub code: LintCode,
    /// The metadata key concerned, as sent.
    pub key: String,
    /// Which map it was in.
    pub location: Location,
    /// The key probably meant (for [`LintCode::UnknownKey`]).
    pub suggestion: Option<&'static str>,
    /// A short explanation without the value (values may be secrets), e.g. which stores
    /// honour a key or why a value is invalid.
    pub detail: Option<String>,
    /// For [`LintCode::NotPortable`]: the target type and what it would serve differently.
    pub target: Option<TargetGap>,
}

/// What a portability target would serve differently: a capability the call needs, or (when
/// `capability` is `None`) the finding's metadata key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetGap {
    /// The target component type, e.g. `state.jetstream`.
    pub target: &'static str,
    /// The capability's policy name (`transactions`, `ttl`), if the gap is a capability.
    pub capability: Option<&'static str>,
}

impl Finding {
    /// The severity of this finding.
    pub fn severity(&self) -> Severity {
        self.code.severity()
    }
}

impl fmt::Display for Finding {
    /// One line for humans: `unknown-key 'ttlInSecond' in request: did you mean 'ttlInSeconds'?`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.target {
            Some(TargetGap {
                target,
                capability: Some(c),
            }) => write!(f, "{} capability '{c}' for {target}", self.code)?,
            Some(TargetGap { target, .. }) => write!(
                f,
                "{} '{}' in {} for {target}",
                self.code, self.key, self.location
            )?,
            None => write!(f, "{} '{}' in {}", self.code, self.key, self.location)?,
        }
        if let Some(s) = self.suggestion {
            write!(f, ": did you mean '{s}'?")?;
        }
        if let Some(d) = &self.detail {
            write!(f, ": {d}")?;
        }
        Ok(())
    }
}

/// What the lint needs to know about the target store.
#[derive(Debug, Clone, Copy)]
pub struct LintTarget<'a> {
    /// The store's component type, e.g. `state.redis`.
    pub store_type: &'a str,
    /// Request keys the store's backend understands beyond [`PORTABLE`].
    pub store_keys: &'a [RequestKey],
    /// The effective matrix status of TTL for this caller. `ignored`: a positive
    /// `ttlInSeconds` is an [`LintCode::IgnoredByStore`] finding; `rejected`: negotiation
    /// refuses the call, so the lint says nothing more.
    pub ttl: Status,
    /// The effective matrix status of `partitionKey` for this caller. `ignored`: an
    /// [`LintCode::IgnoredByStore`] finding; `rejected` (the built-in default: no Mecha store
    /// has partitions): negotiation refuses the call in every lint mode, so the lint does not
    /// report it twice; `native`: no finding.
    pub partition_key: Status,
}

impl LintTarget<'_> {
    /// A target on which every matrix-governed key is native (tests, tools).
    pub const fn native(store_type: &str) -> LintTarget<'_> {
        LintTarget {
            store_type,
            store_keys: &[],
            ttl: Status::Native,
            partition_key: Status::Native,
        }
    }
}

/// Lints one metadata map. Findings come in a stable order (by key) so responses are
/// deterministic. Never allocates when `metadata` is empty.
pub fn lint<'m, I>(
    metadata: I,
    op: LintOp,
    location: Location,
    target: &LintTarget<'_>,
) -> Vec<Finding>
where
    I: IntoIterator<Item = (&'m String, &'m String)>,
{
    let mut out = Vec::new();
    for (key, value) in metadata {
        if let Some(f) = lint_one(key, value, op, location, target) {
            out.push(f);
        }
    }
    if out.len() > 1 {
        out.sort_by(|a, b| a.key.cmp(&b.key).then(a.code.as_str().cmp(b.code.as_str())));
    }
    out
}

fn finding(code: LintCode, key: &str, location: Location) -> Finding {
    Finding {
        code,
        key: key.to_owned(),
        location,
        suggestion: None,
        detail: None,
        target: None,
    }
}

/// The finding for a key Mecha knows (portable, or declared by the store), if any: an
/// invalid value, an operation that does not use it, an option the store's policy ignores,
/// a value only some stores understand.
fn lint_known(
    k: &RequestKey,
    key: &str,
    value: &str,
    op: LintOp,
    location: Location,
    target: &LintTarget<'_>,
) -> Option<Finding> {
    if let Some(why) = k.kind.check(value) {
        // The wording of Mecha's TTL parse error, without the value (it may be a secret).
        return Some(Finding {
            detail: Some(format!(
                "incorrect value for metadata '{key}': the value {why}"
            )),
            ..finding(LintCode::InvalidValue, key, location)
        });
    }
    if !k.ops.contains(&op) {
        return Some(Finding {
            detail: Some("this operation does not use it".to_owned()),
            ..finding(LintCode::NotForOperation, key, location)
        });
    }
    if key == TTL_KEY
        && target.ttl == Status::Ignored
        && value.trim().parse::<i64>().is_ok_and(|n| n > 0)
    {
        return Some(Finding {
            detail: Some(format!(
                "the store's policy ignores TTL, so {} will not expire",
                if matches!(location, Location::Request) {
                    "the items"
                } else {
                    "this item"
                }
            )),
            ..finding(LintCode::IgnoredByStore, key, location)
        });
    }
    if key == CONTENT_TYPE_KEY && !value.eq_ignore_ascii_case("application/json") {
        return Some(Finding {
            detail: Some(
                "only some stores interpret a content type other than application/json".to_owned(),
            ),
            ..finding(LintCode::NonPortableValue, key, location)
        });
    }
    None
}

fn lint_one(
    key: &str,
    value: &str,
    op: LintOp,
    location: Location,
    target: &LintTarget<'_>,
) -> Option<Finding> {
    let known = PORTABLE
        .iter()
        .chain(target.store_keys)
        .find(|k| k.name == key);
    if let Some(k) = known {
        return lint_known(k, key, value, op, location, target);
    }
    if key == PARTITION_KEY {
        return (target.partition_key == Status::Ignored).then(|| Finding {
            detail: Some(format!(
                "the store's policy ignores partitionKey: {} has no partitions",
                target.store_type
            )),
            ..finding(LintCode::IgnoredByStore, key, location)
        });
    }
    if let Some((_, types)) = STORE_SPECIFIC.iter().find(|(name, _)| *name == key) {
        if !types.contains(&target.store_type) {
            return Some(Finding {
                detail: Some(format!(
                    "only {} honour{} it; {} ignores it",
                    types.join(", "),
                    if types.len() == 1 { "s" } else { "" },
                    target.store_type
                )),
                ..finding(LintCode::StoreSpecificKey, key, location)
            });
        }
        return None;
    }
    if COMPONENT_ONLY.contains(&key) {
        return Some(Finding {
            detail: Some("it is component metadata and does nothing per request".to_owned()),
            ..finding(LintCode::ComponentLevelKey, key, location)
        });
    }
    if let Some((_, feature)) = RUNTIME_FEATURES.iter().find(|(name, _)| *name == key) {
        return Some(Finding {
            detail: Some(format!("it needs {feature}, which Mecha does not have")),
            ..finding(LintCode::UnsupportedFeature, key, location)
        });
    }
    Some(Finding {
        suggestion: suggest(key, target),
        ..finding(LintCode::UnknownKey, key, location)
    })
}

/// The known key closest to `key`, if one is close enough to be a likely misspelling.
fn suggest(key: &str, target: &LintTarget<'_>) -> Option<&'static str> {
    let candidates = PORTABLE
        .iter()
        .chain(target.store_keys)
        .map(|k| k.name)
        .chain(std::iter::once(PARTITION_KEY))
        .chain(STORE_SPECIFIC.iter().map(|(n, _)| *n))
        .chain(COMPONENT_ONLY.iter().copied())
        .chain(RUNTIME_FEATURES.iter().map(|(n, _)| *n));
    let lower = key.to_ascii_lowercase();
    let mut best: Option<(usize, &'static str)> = None;
    for name in candidates {
        let d = strsim::damerau_levenshtein(&lower, &name.to_ascii_lowercase());
        // Close enough: a case difference, or up to two edits on names long enough that two
        // edits leave most of the word (one edit for short names).
        let allowed = if name.len() >= 8 { 2 } else { 1 };
        if d <= allowed && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, name));
        }
    }
    best.map(|(_, n)| n)
}

/// How a store treats findings (`lint:` in `config/mecha.yaml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LintMode {
    /// No lint (invalid values are still refused: the store would fail on them).
    Off,
    /// Findings are reported (response header or gRPC metadata, log, metrics); the call
    /// proceeds.
    #[default]
    Warn,
    /// Any warning or error rejects the call with every finding listed; nothing is written.
    Reject,
}

impl LintMode {
    /// The stricter of two modes (an app may tighten a store's mode, never loosen it).
    pub fn stricter(self, other: LintMode) -> LintMode {
        self.max(other)
    }

    /// Lower-case name.
    pub const fn as_str(self) -> &'static str {
        match self {
            LintMode::Off => "off",
            LintMode::Warn => "warn",
            LintMode::Reject => "reject",
        }
    }
}

impl PartialOrd for LintMode {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for LintMode {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (*self as u8).cmp(&(*other as u8))
    }
}

/// Whether the findings of a request reject it under `mode`.
pub fn rejects(findings: &[Finding], mode: LintMode) -> bool {
    findings.iter().any(|f| match f.severity() {
        Severity::Error => true,
        Severity::Warning => mode == LintMode::Reject,
        Severity::Info => false,
    })
}

/// Which findings are reported under `mode` (none under `off`, except errors).
pub fn reported(findings: &[Finding], mode: LintMode) -> impl Iterator<Item = &Finding> {
    findings
        .iter()
        .filter(move |f| mode != LintMode::Off || f.severity() == Severity::Error)
}

/// The HTTP response header and gRPC response metadata key of reported findings.
pub const LINT_HEADER: &str = "mecha-lint";

/// Most findings listed in one `mecha-lint` value (the rest are counted as `+N more`).
pub const HEADER_MAX_FINDINGS: usize = 16;

/// Renders findings as one header value (`mecha-lint`), e.g.
/// `unknown-key;key=ttlInSecond;at=request;suggest=ttlInSeconds, component-level-key;key=keyPrefix;at=item[0]`.
/// Keys are percent-encoded outside visible ASCII and cut at 64 bytes, so the value is
/// always a valid header; at most `max` findings are listed, then `+N more`.
pub fn header_value<'a>(findings: impl IntoIterator<Item = &'a Finding>, max: usize) -> String {
    let mut out = String::new();
    let mut extra = 0usize;
    for (i, f) in findings.into_iter().enumerate() {
        if i >= max {
            extra += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(", ");
        }
        out.push_str(f.code.as_str());
        if let Some(gap) = f.target {
            out.push_str(";target=");
            out.push_str(gap.target);
            if let Some(c) = gap.capability {
                out.push_str(";capability=");
                out.push_str(c);
                continue;
            }
        }
        out.push_str(";key=");
        push_header_safe(&mut out, &f.key);
        out.push_str(";at=");
        out.push_str(&f.location.to_string());
        if let Some(s) = f.suggestion {
            out.push_str(";suggest=");
            out.push_str(s);
        }
    }
    if extra > 0 {
        out.push_str(&format!(", +{extra} more"));
    }
    out
}

fn push_header_safe(out: &mut String, key: &str) {
    const MAX: usize = 64;
    for (i, b) in key.bytes().enumerate() {
        if i >= MAX {
            out.push('…');
            break;
        }
        if b.is_ascii_graphic() && !matches!(b, b',' | b';' | b'%' | b'=') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    const REDIS_KEYS: &[RequestKey] = &[RequestKey {
        name: "queryIndexName",
        kind: ValueKind::Any,
        ops: &[LintOp::Query],
    }];

    fn target(store_type: &'static str, ttl_ignored: bool) -> LintTarget<'static> {
        LintTarget {
            store_type,
            store_keys: if store_type == "state.redis" {
                REDIS_KEYS
            } else {
                &[]
            },
            ttl: if ttl_ignored {
                Status::Ignored
            } else {
                Status::Native
            },
            partition_key: Status::Rejected,
        }
    }

    fn run(pairs: &[(&str, &str)], op: LintOp, t: &LintTarget<'_>) -> Vec<Finding> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        lint(&map, op, Location::Request, t)
    }

    #[test]
    fn every_rule_fires_as_the_table_says() {
        let pg = target("state.postgresql", false);
        let pk_ignored = LintTarget {
            partition_key: Status::Ignored,
            ..target("state.postgresql", false)
        };
        let pk_native = LintTarget::native("state.azure.cosmosdb");
        let ttl_rejected = LintTarget {
            ttl: Status::Rejected,
            ..target("state.in-memory", false)
        };
        // (metadata, operation, target, expected code, expected suggestion)
        type Case<'a> = (
            &'a str,
            &'a str,
            LintOp,
            &'a LintTarget<'a>,
            Option<LintCode>,
            Option<&'a str>,
        );
        let cases: &[Case<'_>] = &[
            ("ttlInSeconds", "3600", LintOp::Save, &pg, None, None),
            ("ttlInSeconds", "-1", LintOp::Save, &pg, None, None),
            ("ttlInSeconds", "0", LintOp::Save, &pg, None, None),
            ("ttlInSeconds", "2147483647", LintOp::Save, &pg, None, None),
            (
                "contentType",
                "application/json",
                LintOp::Save,
                &pg,
                None,
                None,
            ),
            (
                "contentType",
                "application/JSON",
                LintOp::Get,
                &pg,
                None,
                None,
            ),
            (
                "ttlInSeconds",
                "abc",
                LintOp::Save,
                &pg,
                Some(LintCode::InvalidValue),
                None,
            ),
            (
                "ttlInSeconds",
                "-5",
                LintOp::Save,
                &pg,
                Some(LintCode::InvalidValue),
                None,
            ),
            (
                "ttlInSeconds",
                "2147483648",
                LintOp::Save,
                &pg,
                Some(LintCode::InvalidValue),
                None,
            ),
            (
                "ttlInSeconds",
                "abc",
                LintOp::Get,
                &pg,
                Some(LintCode::InvalidValue),
                None,
            ),
            (
                "ttlInSeconds",
                "10",
                LintOp::Get,
                &pg,
                Some(LintCode::NotForOperation),
                None,
            ),
            (
                "ttlInSeconds",
                "10",
                LintOp::Delete,
                &pg,
                Some(LintCode::NotForOperation),
                None,
            ),
            (
                "ttlInSeconds",
                "10",
                LintOp::Save,
                &target("state.jetstream", true),
                Some(LintCode::IgnoredByStore),
                None,
            ),
            (
                "ttlInSecond",
                "10",
                LintOp::Save,
                &pg,
                Some(LintCode::UnknownKey),
                Some("ttlInSeconds"),
            ),
            (
                "TTLInSeconds",
                "10",
                LintOp::Save,
                &pg,
                Some(LintCode::UnknownKey),
                Some("ttlInSeconds"),
            ),
            (
                "contenttype",
                "a",
                LintOp::Save,
                &pg,
                Some(LintCode::UnknownKey),
                Some("contentType"),
            ),
            (
                "partitionkey",
                "a",
                LintOp::Get,
                &pg,
                Some(LintCode::UnknownKey),
                Some("partitionKey"),
            ),
            (
                "metakey",
                "metavalue",
                LintOp::Save,
                &pg,
                Some(LintCode::UnknownKey),
                None,
            ),
            // Rejected by the matrix: negotiation answers, the lint does not repeat it.
            ("partitionKey", "p1", LintOp::Get, &pg, None, None),
            (
                "partitionKey",
                "p1",
                LintOp::Save,
                &pk_ignored,
                Some(LintCode::IgnoredByStore),
                None,
            ),
            ("partitionKey", "p1", LintOp::Get, &pk_native, None, None),
            // TTL ignored: only an expiry that would have happened is reported.
            (
                "ttlInSeconds",
                "-1",
                LintOp::Save,
                &target("state.jetstream", true),
                None,
                None,
            ),
            (
                "ttlInSeconds",
                "abc",
                LintOp::Save,
                &target("state.jetstream", true),
                Some(LintCode::InvalidValue),
                None,
            ),
            // TTL rejected: negotiation refuses a positive TTL; nothing to add.
            (
                "ttlInSeconds",
                "60",
                LintOp::Save,
                &ttl_rejected,
                None,
                None,
            ),
            (
                "outbox.projectio",
                "true",
                LintOp::Save,
                &pg,
                Some(LintCode::UnknownKey),
                Some("outbox.projection"),
            ),
            (
                "keyprefix",
                "x",
                LintOp::Save,
                &pg,
                Some(LintCode::UnknownKey),
                Some("keyPrefix"),
            ),
            (
                "queryIndexName",
                "idx",
                LintOp::Query,
                &pg,
                Some(LintCode::StoreSpecificKey),
                None,
            ),
            (
                "queryIndexName",
                "idx",
                LintOp::Query,
                &target("state.redis", false),
                None,
                None,
            ),
            (
                "queryIndexName",
                "idx",
                LintOp::Get,
                &target("state.redis", false),
                Some(LintCode::NotForOperation),
                None,
            ),
            (
                "keyPrefix",
                "none",
                LintOp::Save,
                &pg,
                Some(LintCode::ComponentLevelKey),
                None,
            ),
            (
                "actorStateStore",
                "true",
                LintOp::Get,
                &pg,
                Some(LintCode::ComponentLevelKey),
                None,
            ),
            (
                "cleanupInterval",
                "1h",
                LintOp::Get,
                &pg,
                Some(LintCode::ComponentLevelKey),
                None,
            ),
            (
                "outbox.projection",
                "true",
                LintOp::Save,
                &pg,
                Some(LintCode::UnsupportedFeature),
                None,
            ),
            (
                "contentType",
                "text/plain",
                LintOp::Save,
                &pg,
                Some(LintCode::NonPortableValue),
                None,
            ),
        ];
        for (key, value, op, t, code, suggestion) in cases {
            let found = run(&[(key, value)], *op, t);
            assert_eq!(
                found.first().map(|f| f.code),
                *code,
                "{key}={value} on {op:?} for {}: {found:?}",
                t.store_type
            );
            assert!(found.len() <= 1);
            assert_eq!(
                found.first().and_then(|f| f.suggestion),
                *suggestion,
                "{key}"
            );
        }
    }

    #[test]
    fn severities_and_modes() {
        let invalid = finding(LintCode::InvalidValue, "ttlInSeconds", Location::Item(0));
        let unknown = finding(LintCode::UnknownKey, "x", Location::Request);
        let info = finding(LintCode::NonPortableValue, "contentType", Location::Request);
        for mode in [LintMode::Off, LintMode::Warn, LintMode::Reject] {
            assert!(rejects(std::slice::from_ref(&invalid), mode), "{mode:?}");
            assert!(!rejects(std::slice::from_ref(&info), mode), "{mode:?}");
        }
        assert!(!rejects(std::slice::from_ref(&unknown), LintMode::Off));
        assert!(!rejects(std::slice::from_ref(&unknown), LintMode::Warn));
        assert!(rejects(std::slice::from_ref(&unknown), LintMode::Reject));
        let all = [invalid.clone(), unknown, info];
        assert_eq!(reported(&all, LintMode::Off).count(), 1);
        assert_eq!(reported(&all, LintMode::Warn).count(), 3);
        assert_eq!(LintMode::Warn.stricter(LintMode::Reject), LintMode::Reject);
        assert_eq!(LintMode::Reject.stricter(LintMode::Off), LintMode::Reject);
        assert_eq!(LintMode::Off.stricter(LintMode::Warn), LintMode::Warn);
    }

    #[test]
    fn every_code_has_a_distinct_name() {
        let names: std::collections::HashSet<_> =
            LintCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(names.len(), LintCode::ALL.len());
    }

    #[test]
    fn findings_render_for_humans_and_headers() {
        let t = target("state.postgresql", false);
        let found = run(
            &[
                ("ttlInSecond", "5"),
                ("keyPrefix", "x"),
                ("we,ird\nkey", "v"),
            ],
            LintOp::Save,
            &t,
        );
        assert_eq!(found.len(), 3);
        assert_eq!(
            found[1].to_string(),
            "unknown-key 'ttlInSecond' in request: did you mean 'ttlInSeconds'?"
        );
        let header = header_value(&found, 10);
        assert_eq!(
            header,
            "component-level-key;key=keyPrefix;at=request, \
             unknown-key;key=ttlInSecond;at=request;suggest=ttlInSeconds, \
             unknown-key;key=we%2Cird%0Akey;at=request"
        );
        assert!(header.bytes().all(|b| b.is_ascii_graphic() || b == b' '));
        assert_eq!(header_value(&found, 1).matches(", ").count(), 1);
        assert!(header_value(&found, 1).ends_with("+2 more"));
    }

    #[test]
    fn empty_metadata_has_no_findings() {
        let map: BTreeMap<String, String> = BTreeMap::new();
        let found = lint(
            &map,
            LintOp::Save,
            Location::Item(3),
            &target("state.redis", true),
        );
        assert!(found.is_empty());
        assert_eq!(found.capacity(), 0);
    }

    #[test]
    fn locations_render() {
        assert_eq!(Location::Item(2).to_string(), "item[2]");
        assert_eq!(Location::Operation(0).to_string(), "operation[0]");
        assert_eq!(Location::Transaction.to_string(), "transaction");
    }
}
