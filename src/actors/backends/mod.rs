//! State store backends. A backend is one file exporting a `DESCRIPTOR`; to add one, write
//! `foo.rs`, declare `pub mod foo;` below and add `&foo::DESCRIPTOR` to [`REGISTRY`] (a test
//! fails when a backend module is not registered). Everything else (component loading,
//! metadata validation, `mecha check`, `/v1.0/metadata`, the README matrix) works from the
//! descriptor.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::actors::StoreFactory;
use crate::capabilities::lint::RequestKey;
use crate::capabilities::{CapabilitySet, MatrixRow, StoreTraits, render_matrix};

pub mod etcd;
pub mod in_memory;
pub mod jetstream;
pub mod mysql;
pub mod postgresql;
pub mod redis;
mod sql_rows;
pub mod sqlite;

/// Every backend Mecha knows, in the order the matrix lists them.
pub static REGISTRY: &[&Descriptor] = &[
    &in_memory::DESCRIPTOR,
    &redis::DESCRIPTOR,
    &postgresql::DESCRIPTOR,
    &jetstream::DESCRIPTOR,
    &etcd::DESCRIPTOR,
    &sqlite::DESCRIPTOR,
    &mysql::DESCRIPTOR,
];

/// How a backend describes itself.
pub struct Descriptor {
    /// Dapr component type, e.g. `state.redis`.
    pub component_type: &'static str,
    /// Other accepted type names.
    pub aliases: &'static [&'static str],
    /// Accepted `spec.version` values; the first is the default.
    pub versions: &'static [&'static str],
    /// Capabilities the backend can have natively (a configured store may have fewer).
    pub capabilities: CapabilitySet,
    /// Those of `capabilities` a store has only with some configuration (shown as `(✔)`).
    pub conditional: CapabilitySet,
    /// Whether instances can list their keys (what the expiry sweep of emulated TTL and the
    /// emulated query need).
    pub lists_keys: bool,
    /// Component metadata the backend reads (in addition to [`COMMON_FIELDS`]).
    pub metadata: &'static [Field],
    /// Whether the data lives inside one Mecha process, so replicas do not share it (the
    /// matrix says so: ETags and transactions then hold per process only).
    pub per_process: bool,
    /// Configurations whose capabilities differ from the type's, each with a matrix row of
    /// its own (e.g. Redis Cluster, where transactions hold only within one hash slot).
    pub variants: &'static [Variant],
    /// Request metadata keys the backend understands beyond the portable ones
    /// ([`crate::capabilities::lint::PORTABLE`]), with their value kinds; the request lint
    /// reports every other key.
    pub request_keys: &'static [RequestKey],
    /// Builds the store factory from validated component metadata.
    pub build: fn(&ComponentConfig) -> Result<Arc<dyn StoreFactory>, String>,
    /// Where a store's keys physically live: one string per place (server and database,
    /// table or bucket). Two stores sharing any of them share one key space, so their key
    /// prefixes must not meet (see [`crate::config::namespace_problems`]). Never holds a
    /// password; never shown to users.
    pub locations: fn(&ComponentConfig) -> Vec<String>,
}

impl Descriptor {
    /// Whether `type_name` (lower-cased) names this backend.
    pub fn matches(&self, type_name: &str) -> bool {
        self.component_type == type_name || self.aliases.contains(&type_name)
    }

    /// The native traits of a store of this type in its default configuration (conditional
    /// capabilities left out), with Mecha's transaction limit `max_transaction_ops`: what the
    /// portability report assumes for a target type.
    pub fn default_traits(&self, max_transaction_ops: usize) -> StoreTraits {
        let mut native = self.capabilities;
        for c in self.conditional.iter() {
            native = native.without(c);
        }
        StoreTraits {
            native,
            lists_keys: self.lists_keys,
            max_transaction_ops,
        }
    }

    /// Looks up the schema of a metadata field (names match case-insensitively, as Dapr's
    /// metadata decoding does).
    pub fn field(&self, name: &str) -> Option<&'static Field> {
        COMMON_FIELDS
            .iter()
            .chain(self.metadata.iter())
            .find(|f| f.name.eq_ignore_ascii_case(name))
    }
}

/// A configuration of a backend with capabilities of its own (a row of the matrix).
pub struct Variant {
    /// The matrix row's second column, e.g. ``v1, `redisType: cluster` ``.
    pub detail: &'static str,
    /// What the backend can do natively in this configuration.
    pub capabilities: CapabilitySet,
    /// Those of `capabilities` that hold only with some configuration or for some keys.
    pub conditional: CapabilitySet,
}

/// The capability matrix of every backend, as the README shows it.
pub fn registry_matrix() -> String {
    let rows: Vec<MatrixRow> = REGISTRY
        .iter()
        .flat_map(|d| {
            let main = MatrixRow {
                name: d.component_type.to_owned(),
                detail: if d.per_process {
                    format!("{} (per process)", d.versions.join(", "))
                } else {
                    d.versions.join(", ")
                },
                capabilities: d.capabilities,
                conditional: d.conditional,
            };
            std::iter::once(main).chain(d.variants.iter().map(|v| MatrixRow {
                name: d.component_type.to_owned(),
                detail: v.detail.to_owned(),
                capabilities: v.capabilities,
                conditional: v.conditional,
            }))
        })
        .collect();
    render_matrix("type", "versions", &rows)
}

/// Finds the backend for a component type (case-insensitive).
pub fn lookup(type_name: &str) -> Option<&'static Descriptor> {
    let lower = type_name.to_ascii_lowercase();
    REGISTRY.iter().copied().find(|d| d.matches(&lower))
}

/// The kind of value a metadata field takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// Any string.
    String,
    /// A decimal integer within the bounds.
    Integer {
        /// Smallest accepted value.
        min: i64,
        /// Largest accepted value.
        max: i64,
    },
    /// `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`, case-insensitive).
    Bool,
    /// A duration such as `10s`, `500ms`, `1m`, or a bare number of seconds.
    Duration,
    /// One of a fixed set of values (case-insensitive).
    OneOf(&'static [&'static str]),
}

/// Schema of one component metadata field.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// Name as written in `spec.metadata[].name`.
    pub name: &'static str,
    /// Value kind.
    pub kind: FieldKind,
    /// Whether a value must be given.
    pub required: bool,
    /// Whether the value is a secret (never logged).
    pub sensitive: bool,
    /// One line for humans.
    pub description: &'static str,
}

/// The fields of a SQL store's deadline and expired-row sweep, as daprd's PostgreSQL and
/// SQLite components spell them.
pub(super) const SQL_TIMEOUT_FIELDS: [Field; 3] = [
    Field::new(
        "timeout",
        FieldKind::Duration,
        "deadline of one database operation (default 20s)",
    ),
    Field::new(
        "timeoutInSeconds",
        FieldKind::Integer {
            min: 1,
            max: 86_400,
        },
        "older spelling of timeout, in seconds",
    ),
    Field::new(
        "cleanupInterval",
        FieldKind::String,
        "how often expired rows are deleted (default 1h; 0 or negative disables)",
    ),
];

impl Field {
    /// An optional field.
    pub const fn new(name: &'static str, kind: FieldKind, description: &'static str) -> Field {
        Field {
            name,
            kind,
            required: false,
            sensitive: false,
            description,
        }
    }

    /// The same field, required.
    pub const fn required(self) -> Field {
        Field {
            required: true,
            ..self
        }
    }

    /// The same field, secret.
    pub const fn sensitive(self) -> Field {
        Field {
            sensitive: true,
            ..self
        }
    }

    /// Checks one value against the kind.
    pub fn validate(&self, value: &str) -> Result<(), String> {
        match self.kind {
            FieldKind::String => Ok(()),
            FieldKind::Integer { min, max } => match value.trim().parse::<i64>() {
                Ok(n) if (min..=max).contains(&n) => Ok(()),
                Ok(n) => Err(format!("{n} is outside {min}..={max}")),
                Err(_) => Err(format!("'{value}' is not an integer")),
            },
            FieldKind::Bool => parse_bool(value).map(|_| ()),
            FieldKind::Duration => parse_duration(value).map(|_| ()),
            FieldKind::OneOf(allowed) => {
                if allowed.iter().any(|a| a.eq_ignore_ascii_case(value)) {
                    Ok(())
                } else {
                    Err(format!("'{value}' is not one of {}", allowed.join(", ")))
                }
            }
        }
    }
}

/// `host:port` of one server address written as `host`, `host:port` or a URL
/// (`scheme://user:password@host:port/path`): lower-cased, without scheme, credentials and
/// path, with `default_port` when none is given and `localhost` spelled `127.0.0.1`, so two
/// spellings of one server compare equal. The path, when there is one, is returned apart.
pub fn normalize_endpoint(raw: &str, default_port: u16) -> (String, String) {
    let s = raw.trim();
    let s = s.split_once("://").map_or(s, |(_, rest)| rest);
    let (authority, path) = s.split_once('/').unwrap_or((s, ""));
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let authority = authority.to_ascii_lowercase();
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            (h.to_owned(), p.to_owned())
        }
        _ => (authority.clone(), default_port.to_string()),
    };
    let host = match host.as_str() {
        "localhost" | "[::1]" | "::1" => "127.0.0.1".to_owned(),
        _ => host,
    };
    let path = path.split(['?', '#']).next().unwrap_or_default().to_owned();
    (format!("{host}:{port}"), path)
}

/// Metadata every component accepts.
pub const COMMON_FIELDS: &[Field] = &[
    Field::new(
        "keyPrefix",
        FieldKind::String,
        "key prefix strategy: appid (default), name, none, or a custom prefix",
    ),
    Field::new(
        "actorStateStore",
        FieldKind::Bool,
        "marks the actor state store (accepted for compatibility; Mecha serves no actors)",
    ),
];

/// Parses a boolean as Dapr's `utils.IsTruthy` does, but rejects garbage instead of reading it as false.
pub fn parse_bool(value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "y" | "on" => Ok(true),
        "false" | "0" | "no" | "n" | "off" | "" => Ok(false),
        _ => Err(format!("'{value}' is not a boolean")),
    }
}

/// Parses a duration: Go-style (`500ms`, `10s`, `1m30s`, `2h`) or a bare number of seconds.
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(v).map_err(|e| format!("'{value}' is not a duration: {e}"))
}

/// A validated component, as a backend's `build` function sees it.
#[derive(Debug, Clone)]
pub struct ComponentConfig {
    /// `metadata.name`.
    pub name: String,
    /// `spec.type`, lower-cased.
    pub component_type: String,
    /// `spec.version` (the backend's default when absent).
    pub version: String,
    /// `spec.metadata`, keyed by the schema's canonical field name when known.
    pub metadata: HashMap<String, String>,
}

impl ComponentConfig {
    /// A value by canonical field name.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.metadata.get(name).map(String::as_str)
    }

    /// A validated boolean, or `default`.
    pub fn bool_or(&self, name: &str, default: bool) -> bool {
        self.get(name)
            .and_then(|v| parse_bool(v).ok())
            .unwrap_or(default)
    }

    /// A validated duration, or `default`.
    pub fn duration_or(&self, name: &str, default: Duration) -> Duration {
        self.get(name)
            .and_then(|v| parse_duration(v).ok())
            .unwrap_or(default)
    }

    /// A validated integer, or `default`.
    pub fn int_or(&self, name: &str, default: i64) -> i64 {
        self.get(name)
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_types_and_aliases_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for d in REGISTRY {
            assert!(
                !d.versions.is_empty(),
                "{} has no version",
                d.component_type
            );
            for name in std::iter::once(&d.component_type).chain(d.aliases) {
                assert!(seen.insert(*name), "duplicate type {name}");
                assert_eq!(*name, name.to_ascii_lowercase());
            }
            let mut fields = std::collections::HashSet::new();
            for f in COMMON_FIELDS.iter().chain(d.metadata) {
                assert!(
                    fields.insert(f.name.to_ascii_lowercase()),
                    "duplicate field {}",
                    f.name
                );
            }
        }
    }

    #[test]
    fn field_kinds_validate() {
        let int = Field::new("n", FieldKind::Integer { min: 0, max: 10 }, "");
        assert!(int.validate("3").is_ok());
        assert!(int.validate("11").is_err());
        assert!(int.validate("x").is_err());
        let b = Field::new("b", FieldKind::Bool, "");
        assert!(b.validate("TRUE").is_ok() && b.validate("maybe").is_err());
        let d = Field::new("d", FieldKind::Duration, "");
        assert!(
            d.validate("10s").is_ok() && d.validate("15").is_ok() && d.validate("soon").is_err()
        );
        let e = Field::new("e", FieldKind::OneOf(&["a", "b"]), "");
        assert!(e.validate("A").is_ok() && e.validate("c").is_err());
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
    }

    /// Every `pub mod` of this directory is a backend and must be in the registry.
    #[test]
    fn every_backend_module_is_registered() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/actors/backends");
        let source = std::fs::read_to_string(dir.join("mod.rs")).unwrap();
        let modules: Vec<&str> = source
            .lines()
            .filter_map(|l| l.strip_prefix("pub mod ")?.strip_suffix(';'))
            .collect();
        assert!(modules.len() >= 3, "{modules:?}");
        let registry = source
            .split_once("pub static REGISTRY")
            .map(|(_, rest)| rest.split_once("];").map_or(rest, |(r, _)| r))
            .unwrap();
        for m in &modules {
            assert!(
                registry.contains(&format!("&{m}::DESCRIPTOR")),
                "backend module {m} is not in REGISTRY"
            );
        }
        assert_eq!(REGISTRY.len(), modules.len());
    }

    #[test]
    fn endpoints_normalize() {
        let n = |s: &str| normalize_endpoint(s, 6379);
        assert_eq!(n("localhost"), ("127.0.0.1:6379".into(), String::new()));
        assert_eq!(n("LocalHost:6379"), n("127.0.0.1"));
        assert_eq!(
            n("redis://u:secret@Cache.Example:7000/2?x=1"),
            ("cache.example:7000".into(), "2".into())
        );
        assert_eq!(n("[::1]:6379").0, "127.0.0.1:6379");
    }

    #[test]
    fn lookup_is_case_insensitive() {
        assert!(lookup("State.In-Memory").is_some());
        assert!(lookup("state.nope").is_none());
    }
}
