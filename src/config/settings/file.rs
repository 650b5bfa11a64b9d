//! The shape of `config/mecha.yaml` as serde reads it: typed sections whose every field is
//! optional (`#[serde(default)]`), unknown fields refused with a did-you-mean, and sizes and
//! durations read into [`Checked`] values, so that a bad value is reported together with every
//! other problem instead of stopping the parse.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use serde::de::{self, Deserializer, IntoDeserializer, Visitor};

use super::RawTls;
use crate::config::ConfigError;

/// The whole file.
#[derive(Deserialize, Default, JsonSchema)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct FileSettings {
    /// The apps that call this Mecha, each with its token; none: every caller is the `--app-id` app.
    pub apps: Vec<FileApp>,
    /// Request limits.
    pub limits: FileLimits,
    /// Store actors: in-flight calls, timeouts, health checks.
    pub actors: FileActors,
    /// The server: workers, shutdown, reloads, TLS.
    pub server: FileServer,
    /// Per store: `lint` (off, warn, reject) and a decision per capability (`default`, `etag`, `ttl`, ... : native, emulate, ignore, reject).
    pub stores: BTreeMap<String, BTreeMap<String, String>>,
    /// What applies to every store without its own decision.
    pub policy: FilePolicy,
    /// Every app's quota (an app's own `quota` overrides it field by field).
    pub quotas: FileQuota,
    /// The token `/metrics` and the operator's portability report require (one of token, tokenEnv, tokenFile).
    pub metrics: FileToken,
    /// Trace export over OTLP (off unless an endpoint is set here, in a Dapr Configuration or in OTEL_EXPORTER_OTLP_ENDPOINT).
    pub tracing: FileTracing,
}

/// `tracing:`: trace export over OTLP.
#[derive(Deserialize, Default, Debug, PartialEq, JsonSchema)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct FileTracing {
    /// The collector, http:// or https:// (gRPC: port 4317; HTTP: port 4318, `/v1/traces` added).
    pub endpoint: Option<String>,
    /// `grpc` (default) or `http/protobuf`.
    pub protocol: Option<String>,
    /// Share of new traces sampled, 0 to 1 (default 1; 0: off); a caller's sampled flag wins.
    #[serde(deserialize_with = "scalar_text")]
    #[schemars(with = "Option<f64>")]
    pub sampling_rate: Option<String>,
}

/// A scalar read as text: Dapr writes `samplingRate: "1"`, YAML users `samplingRate: 0.5`.
fn scalar_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v = Option::<serde_norway::Value>::deserialize(d)?;
    match v {
        None | Some(serde_norway::Value::Null) => Ok(None),
        Some(serde_norway::Value::String(s)) => Ok(Some(s)),
        Some(serde_norway::Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(de::Error::custom("expected a number or a string")),
    }
}

/// `policy:`: what applies to every store where its own `stores:` entry says nothing.
#[derive(Deserialize, Default, JsonSchema)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct FilePolicy {
    /// `compatible` (the default: emulate where correct, ignore what daprd ignores, else reject) or `strict`.
    pub default: Option<String>,
}

/// `quotas:` and `apps[].quota`: every field unset inherits (the defaults, or `quotas`).
#[derive(Deserialize, Default, Clone, JsonSchema)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct FileQuota {
    /// Requests of the app in flight at once.
    pub max_concurrent: Option<usize>,
    /// Sustained request rate of the app.
    pub requests_per_second: Option<u32>,
    /// Requests allowed above the rate at once.
    pub burst: Option<u32>,
    /// How long a refused request waits before its 429 (at most 1s).
    pub refusal_delay: Checked<Dur>,
    /// Bytes of request bodies the app holds at once (default 16 MiB).
    pub max_body_bytes: Checked<Size>,
}

/// Where a token comes from: exactly one of the three is expected.
#[derive(Deserialize, Default, JsonSchema)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct FileToken {
    /// The token itself.
    pub token: Option<String>,
    /// The environment variable holding it.
    pub token_env: Option<String>,
    /// The file holding it (re-read when it changes).
    pub token_file: Option<PathBuf>,
}

/// One `apps:` entry.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct FileApp {
    /// The app id (what daprd calls the app id; a key prefix, so no `|`).
    pub id: String,
    /// The app's API token, as sent in `dapr-api-token`.
    #[serde(default)]
    pub token: Option<String>,
    /// The environment variable holding the token.
    #[serde(default)]
    pub token_env: Option<String>,
    /// The file holding the token (re-read when it changes).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// The app's own quota, field by field over `quotas`.
    #[serde(default)]
    pub quota: FileQuota,
    /// Capabilities every store in the app's scope must serve (Dapr's names: ETAG, TRANSACTIONAL, TTL, QUERY_API, ...).
    #[serde(default)]
    pub requires: Vec<String>,
    /// Store types the app must stay movable to: every call is checked against each.
    #[serde(default)]
    pub portable_to: Vec<String>,
    /// `warn` (default: a `not-portable` finding) or `reject` (`ERR_NOT_PORTABLE`).
    #[serde(default)]
    pub portability: Option<String>,
    /// The app's own tightenings per store: `lint` and capability decisions, stricter only.
    #[serde(default)]
    pub stores: BTreeMap<String, BTreeMap<String, String>>,
}

/// `limits:`.
#[derive(Deserialize, Default, JsonSchema)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct FileLimits {
    /// Largest HTTP body or gRPC message (default 4 MiB).
    pub max_body_size: Checked<Size>,
    /// Longest key in bytes (default 4096).
    pub max_key_length: Option<usize>,
    /// Items of a save, keys of a bulk get or delete (default 1000).
    pub max_bulk_items: Option<usize>,
    /// Operations of a transaction (default 1000; a store may allow fewer).
    pub max_transaction_ops: Option<usize>,
    /// Keys one emulated query examines at most (default 10000; restart-only).
    pub max_query_scan: Option<usize>,
    /// Store calls of one emulated bulk operation at once.
    pub default_bulk_parallelism: Option<usize>,
    /// Connections per listener (default 1024).
    pub max_connections: Option<usize>,
    /// From the accept to the first complete request, TLS handshake included (default 5s).
    pub header_timeout: Checked<Dur>,
    /// A whole request body or gRPC message (default 10s).
    pub body_timeout: Checked<Dur>,
    /// A connection on which the client sends nothing (default 60s).
    pub idle_timeout: Checked<Dur>,
    /// gRPC streams per connection (default 100).
    pub max_concurrent_streams: Option<usize>,
    /// Nesting of a JSON body (default 64).
    pub max_json_depth: Option<usize>,
    /// Bodies larger than this are parsed on blocking threads (default 64 KiB).
    pub blocking_parse_threshold: Checked<Size>,
    /// Entries of an app's extended metadata.
    pub max_metadata_entries: Option<usize>,
    /// Longest extended-metadata key.
    pub max_metadata_key_length: Option<usize>,
    /// Bytes of an app's extended metadata.
    pub max_metadata_bytes: Checked<Size>,
    /// Bytes of request bodies all apps hold at once (default 32 MiB).
    pub max_body_bytes_in_flight: Checked<Size>,
    /// How long a body waits for room under the body budgets before a 429.
    pub body_memory_wait: Checked<Dur>,
    /// Connections per listener and client address (default 512).
    pub max_connections_per_peer: Option<usize>,
}

/// `actors:`.
#[derive(Deserialize, Default, JsonSchema)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct FileActors {
    /// Store calls in flight per store and serving thread (default 1024).
    pub mailbox_capacity: Option<usize>,
    /// Queueing plus the store call (default 5s).
    pub request_timeout: Checked<Dur>,
    /// How often each store is pinged.
    pub health_interval: Checked<Dur>,
    /// Failed pings in a row after which a store's actor is restarted.
    pub restart_after_failed_pings: Option<u32>,
    /// How often expired records of emulated TTL are deleted.
    pub ttl_sweep_interval: Checked<Dur>,
}

/// `server:`.
#[derive(Deserialize, Default, JsonSchema)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct FileServer {
    /// How long calls in flight may finish after SIGTERM (default 10s).
    pub shutdown_timeout: Checked<Dur>,
    /// Serving threads (default: one per CPU; restart-only).
    pub workers: Option<usize>,
    /// How often token files are checked for a change (default 1s).
    pub token_file_check_interval: Checked<Dur>,
    /// How often configuration files are checked for a change (default 2s; 0s: on SIGHUP only).
    pub reload_interval: Checked<Dur>,
    /// TLS on the HTTP and gRPC listeners.
    pub tls: Option<RawTls>,
}

impl<T: JsonSchema> JsonSchema for Checked<T> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        T::schema_name()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        T::json_schema(generator)
    }

    fn inline_schema() -> bool {
        T::inline_schema()
    }
}

impl JsonSchema for Dur {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": ["string", "integer"],
            "description": "A duration: 250ms, 10s, 1m30s, 2h, or a bare number of seconds."
        })
    }
}

impl JsonSchema for Size {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Size".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": ["string", "integer"],
            "description": "A size in bytes, or with a binary unit: 512, 64K or 64KiB (1024 bytes each), 4M or 4MiB, 1G or 1GiB."
        })
    }
}

/// The JSON Schema of `mecha.yaml`, pretty-printed.
pub(in crate::config) fn schema() -> String {
    let schema = schemars::schema_for!(FileSettings);
    serde_json::to_string_pretty(&schema).unwrap_or_default() + "\n"
}

/// A scalar setting as read: absent (or `null`), its value, or why its text is not one.
/// Keeping the problem instead of failing the parse lets every bad value of a file be
/// reported at once, each under its own field.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Checked<T> {
    /// Not given: the default (or the inherited value) applies.
    #[default]
    Unset,
    /// A valid value.
    Set(T),
    /// The text given, and what is wrong with it.
    Bad(String),
}

impl<T> Checked<T> {
    /// The value, `default` when unset; a bad value is reported under `field` and gives
    /// `default`.
    pub fn or_report(self, field: &str, default: T, err: &mut dyn FnMut(&str, String)) -> T {
        match self {
            Checked::Unset => default,
            Checked::Set(v) => v,
            Checked::Bad(e) => {
                err(field, e);
                default
            }
        }
    }

    /// `Some(value)`, `None` when unset or bad (a bad value is reported under `field`).
    pub fn report(self, field: &str, err: &mut dyn FnMut(&str, String)) -> Option<T> {
        match self {
            Checked::Unset => None,
            Checked::Set(v) => Some(v),
            Checked::Bad(e) => {
                err(field, e);
                None
            }
        }
    }
}

impl<'de, T: FromStr<Err = String>> Deserialize<'de> for Checked<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Option::<ScalarText>::deserialize(d)? {
            None => Checked::Unset,
            Some(ScalarText(text)) => match text.parse() {
                Ok(v) => Checked::Set(v),
                Err(e) => Checked::Bad(e),
            },
        })
    }
}

/// Any scalar (string, number, boolean) as its text; a sequence or mapping is a type error.
struct ScalarText(String);

impl<'de> Deserialize<'de> for ScalarText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Text(PhantomData<()>);
        impl Visitor<'_> for Text {
            type Value = ScalarText;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a size or duration")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ScalarText, E> {
                Ok(ScalarText(v.to_owned()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ScalarText, E> {
                Ok(ScalarText(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ScalarText, E> {
                Ok(ScalarText(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<ScalarText, E> {
                Ok(ScalarText(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<ScalarText, E> {
                Ok(ScalarText(v.to_string()))
            }
        }
        d.deserialize_any(Text(PhantomData))
    }
}

/// A duration: humantime's spellings (`250ms`, `5s`, `1m30s`, `2h`) or a bare number of
/// seconds (`10`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl FromStr for Dur {
    type Err = String;
    fn from_str(value: &str) -> Result<Dur, String> {
        let v = value.trim();
        if let Ok(secs) = v.parse::<u64>() {
            return Ok(Dur(Duration::from_secs(secs)));
        }
        let text: de::value::StrDeserializer<'_, de::value::Error> = v.into_deserializer();
        match humantime_serde::deserialize(text) {
            Ok(d) => Ok(Dur(d)),
            // humantime says what is wrong (a missing unit, an unknown one).
            Err(_) => Err(crate::actors::backends::parse_duration(value)
                .err()
                .unwrap_or_else(|| format!("'{value}' is not a duration"))),
        }
    }
}

/// A size in bytes: a byte count or a whole number with a unit. Units are binary whatever
/// their spelling: `K`, `Ki`, `KB` and `KiB` all mean 1024 bytes (likewise `M…` and `G…`),
/// as Mecha has always read them. Fractions are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub usize);

impl FromStr for Size {
    type Err = String;
    fn from_str(raw: &str) -> Result<Size, String> {
        let s = raw.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: u64 = num.parse().map_err(|_| format!("'{raw}' is not a size"))?;
        let unit = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => bytesize::ByteSize::b(1),
            "k" | "ki" | "kb" | "kib" => bytesize::ByteSize::kib(1),
            "m" | "mi" | "mb" | "mib" => bytesize::ByteSize::mib(1),
            "g" | "gi" | "gb" | "gib" => bytesize::ByteSize::gib(1),
            _ => return Err(format!("'{raw}' has an unknown unit")),
        };
        n.checked_mul(unit.as_u64())
            .and_then(|b| usize::try_from(b).ok())
            .map(Size)
            .ok_or_else(|| format!("'{raw}' is too large"))
    }
}

/// Reads the file's structure. A structural problem (an unknown field, a section of the
/// wrong type, an app without `id`) stops the read; it is reported under its path (such as
/// `limits.maxBodySise`), an unknown field with the nearest valid name.
pub(super) fn read(file: &Path, text: &str) -> (FileSettings, Vec<ConfigError>) {
    if text.trim().is_empty() {
        return (FileSettings::default(), Vec::new());
    }
    let value: serde_norway::Value = match serde_norway::from_str(text) {
        Ok(v) => v,
        Err(e) => return (FileSettings::default(), vec![structural(file, "", &e)]),
    };
    match dapr_file(file, &value) {
        Some(Ok(s)) => return (s, Vec::new()),
        Some(Err(e)) => return (FileSettings::default(), vec![e]),
        None => {}
    }
    // The whole file at once: its first problem keeps serde's line and column.
    let de = serde_norway::Deserializer::from_str(text);
    let first = match serde_path_to_error::deserialize::<_, FileSettings>(de) {
        Ok(s) => return (s, Vec::new()),
        Err(e) => e,
    };
    let first_path = first.path().to_string();
    let first = structural(file, &first_path, first.inner());
    // Then section by section, so that a problem in one section hides none in another.
    let serde_norway::Value::Mapping(map) = value else {
        return (FileSettings::default(), vec![first]);
    };
    let mut s = FileSettings::default();
    let mut errors = Vec::new();
    for (key, v) in map {
        let name = key.as_str().unwrap_or_default().to_owned();
        let mut at = Section {
            file,
            name: &name,
            first: &first,
            errors: &mut errors,
        };
        match name.as_str() {
            "apps" => s.apps = at.read(v),
            "limits" => s.limits = at.read(v),
            "actors" => s.actors = at.read(v),
            "server" => s.server = at.read(v),
            "stores" => s.stores = at.read(v),
            "policy" => s.policy = at.read(v),
            "quotas" => s.quotas = at.read(v),
            "metrics" => s.metrics = at.read(v),
            "tracing" => s.tracing = at.read(v),
            _ => at.unknown(),
        }
    }
    if !errors.contains(&first) {
        errors.insert(0, first);
    }
    (s, errors)
}

/// The top-level sections of `mecha.yaml`, as serde names them.
const SECTIONS: &[&str] = &[
    "apps", "limits", "actors", "server", "stores", "policy", "quotas", "metrics", "tracing",
];

/// One top-level section read on its own.
struct Section<'a> {
    file: &'a Path,
    name: &'a str,
    /// The whole file's first problem, reported instead of this section's own when it is in
    /// this section (it has the line and column).
    first: &'a ConfigError,
    errors: &'a mut Vec<ConfigError>,
}

impl Section<'_> {
    fn owns_first(&self) -> bool {
        let f = &self.first.field;
        f == self.name
            || f.strip_prefix(self.name)
                .is_some_and(|rest| rest.starts_with(['.', '[']))
    }

    fn push(&mut self, e: ConfigError) {
        let e = if self.owns_first() {
            self.first.clone()
        } else {
            e
        };
        if !self.errors.contains(&e) {
            self.errors.push(e);
        }
    }

    /// The section's value, or its default with the problem recorded.
    fn read<T: serde::de::DeserializeOwned + Default>(&mut self, v: serde_norway::Value) -> T {
        match serde_path_to_error::deserialize::<_, T>(v) {
            Ok(t) => t,
            Err(e) => {
                let rest = e.path().to_string();
                let path = match rest.as_str() {
                    "." => self.name.to_owned(),
                    r if r.starts_with('[') => format!("{}{r}", self.name),
                    r => format!("{}.{r}", self.name),
                };
                let e = structural(self.file, &path, e.inner());
                self.push(e);
                T::default()
            }
        }
    }

    /// A top-level name that is no section.
    fn unknown(&mut self) {
        let list = SECTIONS
            .iter()
            .map(|s| format!("`{s}`"))
            .collect::<Vec<_>>()
            .join(", ");
        let text = format!("unknown field `{}`, expected one of {list}", self.name);
        let message = match did_you_mean(&text) {
            Some(s) => format!("{text}: did you mean `{s}`?"),
            None => text,
        };
        let e = ConfigError::new(self.file, self.name, message);
        self.push(e);
    }
}

/// A Dapr file given where Mecha's own file is expected: a `kind: Configuration` (daprd's
/// `--config`) is read for what Mecha supports, its `spec.tracing` (OTLP export); another
/// kind is refused with what `--config` expects. `None`: not a Dapr file.
fn dapr_file(file: &Path, v: &serde_norway::Value) -> Option<Result<FileSettings, ConfigError>> {
    let kind = v.get("kind")?.as_str()?;
    let dapr = v
        .get("apiVersion")
        .and_then(|a| a.as_str())
        .is_some_and(|a| a.starts_with("dapr.io/"));
    if !dapr {
        return None;
    }
    if kind != "Configuration" {
        return Some(Err(ConfigError::new(
            file,
            "kind",
            format!(
                "this is a Dapr `kind: {kind}` file, not Mecha's configuration: --config expects \
                 Mecha's own mecha.yaml (top-level {}) or a Dapr `kind: Configuration`; component \
                 and `kind: Resiliency` files go in --resources-path",
                SECTIONS.join(", ")
            ),
        )));
    }
    let tracing = v.get("spec").and_then(|s| s.get("tracing"));
    Some(dapr_tracing(file, tracing).map(|tracing| FileSettings {
        tracing,
        ..FileSettings::default()
    }))
}

/// A Dapr Configuration's `spec.tracing`: `samplingRate` and `otel` (`endpointAddress`,
/// `isSecure`, `protocol`); Zipkin is refused (Mecha exports OTLP only).
fn dapr_tracing(file: &Path, t: Option<&serde_norway::Value>) -> Result<FileTracing, ConfigError> {
    let Some(t) = t else {
        return Ok(FileTracing::default());
    };
    if t.get("zipkin").is_some() {
        return Err(ConfigError::new(
            file,
            "spec.tracing.zipkin",
            "Mecha exports traces over OTLP only: use spec.tracing.otel (Zipkin and Jaeger \
             both receive OTLP)",
        ));
    }
    let text = |v: Option<&serde_norway::Value>| match v {
        Some(serde_norway::Value::String(s)) => Some(s.clone()),
        Some(serde_norway::Value::Number(n)) => Some(n.to_string()),
        Some(serde_norway::Value::Bool(b)) => Some(b.to_string()),
        _ => None,
    };
    let otel = t.get("otel");
    let secure = text(otel.and_then(|o| o.get("isSecure"))).is_some_and(|s| s == "true");
    let endpoint = text(otel.and_then(|o| o.get("endpointAddress"))).map(|e| {
        if e.contains("://") {
            e
        } else if secure {
            format!("https://{e}")
        } else {
            format!("http://{e}")
        }
    });
    Ok(FileTracing {
        endpoint,
        protocol: text(otel.and_then(|o| o.get("protocol"))),
        sampling_rate: text(t.get("samplingRate")),
    })
}

/// A structural problem at `path`.
fn structural(file: &Path, path: &str, e: &serde_norway::Error) -> ConfigError {
    let field = if path == "." { "" } else { path };
    ConfigError::new(file, field, structural_message(field, e))
}

/// serde's message without the path it repeats, with a did-you-mean for an unknown field.
fn structural_message(path: &str, e: &serde_norway::Error) -> String {
    let text = e.to_string();
    // serde_norway starts its message with the path of the mapping or value it was reading
    // (for an unknown field, the mapping holding it): `path` or one of its parents.
    let text = match text.split_once(": ") {
        Some((head, rest)) if path.starts_with(head) => rest.to_owned(),
        _ => text,
    };
    match did_you_mean(&text) {
        Some(s) => format!("{text}: did you mean `{s}`?"),
        None => text,
    }
}

/// The valid field nearest to the unknown one of serde's "unknown field `x`, expected one
/// of `a`, `b`, ..." (or "expected `a` or `b`"), when it is close enough to be a typo.
fn did_you_mean(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let (unknown, expected) = rest.split_once('`')?;
    let unknown = unknown.to_ascii_lowercase();
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|known| {
            let d = strsim::damerau_levenshtein(&unknown, &known.to_ascii_lowercase());
            (d, known)
        })
        .filter(|(d, known)| *d <= (known.len() / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, known)| known.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_binary_whatever_the_unit_spelling() {
        for (text, bytes) in [
            ("512", 512),
            ("1K", 1024),
            ("1KB", 1024),
            ("1kb", 1024),
            ("2 KiB", 2048),
            ("1Ki", 1024),
            ("4MB", 4 << 20),
            ("4Mi", 4 << 20),
            ("1GB", 1 << 30),
        ] {
            assert_eq!(text.parse::<Size>(), Ok(Size(bytes)), "{text}");
        }
        assert_eq!(
            "4Xi".parse::<Size>(),
            Err("'4Xi' has an unknown unit".into())
        );
        assert_eq!(
            "1.5Mi".parse::<Size>().unwrap_err(),
            "'1.5Mi' has an unknown unit"
        );
        assert_eq!("lots".parse::<Size>().unwrap_err(), "'lots' is not a size");
        assert!("99999999999999999999G".parse::<Size>().is_err());
        assert_eq!(
            "18014398509481984G".parse::<Size>().unwrap_err(),
            "'18014398509481984G' is too large"
        );
    }

    #[test]
    fn durations_take_humantime_spellings_and_bare_seconds() {
        for (text, d) in [
            ("250ms", Duration::from_millis(250)),
            ("5s", Duration::from_secs(5)),
            ("1m30s", Duration::from_secs(90)),
            ("2h", Duration::from_secs(7200)),
            ("1m 30s", Duration::from_secs(90)),
            ("10", Duration::from_secs(10)),
            (" 3s ", Duration::from_secs(3)),
            ("0s", Duration::ZERO),
            ("100us", Duration::from_micros(100)),
        ] {
            assert_eq!(text.parse::<Dur>(), Ok(Dur(d)), "{text}");
        }
        let e = "soon".parse::<Dur>().unwrap_err();
        assert!(e.starts_with("'soon' is not a duration: "), "{e}");
        assert!("5 parsecs".parse::<Dur>().is_err());
    }

    #[test]
    fn unknown_fields_get_the_nearest_valid_name() {
        let msg = "unknown field `maxBodySise`, expected one of `maxBodySize`, `maxKeyLength`";
        assert_eq!(did_you_mean(msg).as_deref(), Some("maxBodySize"));
        let msg = "unknown field `colour`, expected `id` or `token`";
        assert_eq!(did_you_mean(msg), None, "nothing close");
        let msg = "unknown field `limts`, expected one of `apps`, `limits`, `actors`";
        assert_eq!(did_you_mean(msg).as_deref(), Some("limits"));
    }

    /// The first problem `read` finds in `text`, if any.
    fn first_problem(text: &str) -> Result<FileSettings, ConfigError> {
        match read(Path::new("mecha.yaml"), text) {
            (s, e) if e.is_empty() => Ok(s),
            (_, mut e) => Err(e.remove(0)),
        }
    }

    #[test]
    fn a_problem_in_one_section_hides_none_in_another() {
        let text = "apps:\n  - id: a\n    tokn: t\nlimits:\n  maxBodySise: 4Mi\nlimts: {}\nserver:\n  workers: 2\n";
        let (s, e) = read(Path::new("mecha.yaml"), text);
        let fields: Vec<&str> = e.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["apps[0].tokn", "limits.maxBodySise", "limts"],
            "{e:?}"
        );
        assert!(
            e[0].message.contains("line 3"),
            "the first keeps its line: {}",
            e[0]
        );
        assert!(
            e[1].message.ends_with("did you mean `maxBodySize`?"),
            "{}",
            e[1]
        );
        assert!(e[2].message.ends_with("did you mean `limits`?"), "{}", e[2]);
        assert_eq!(s.server.workers, Some(2), "a good section is read");
    }

    #[test]
    fn a_key_given_twice_is_refused_not_overwritten() {
        let e = first_problem("stores:\n  kv:\n    lint: reject\n    lint: off\n")
            .err()
            .expect("a duplicate key must not silently win");
        assert!(
            e.message.contains("duplicate entry with key \"lint\""),
            "{e}"
        );
    }

    #[test]
    fn a_dapr_configuration_is_read_for_its_tracing_and_other_dapr_kinds_are_named() {
        let text = "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: c\nspec:\n  tracing:\n    samplingRate: \"0.5\"\n    otel:\n      endpointAddress: \"collector:4318\"\n      isSecure: false\n      protocol: http\n  metric:\n    enabled: true\n";
        let s = first_problem(text).expect("a Dapr Configuration is read");
        assert_eq!(
            s.tracing,
            FileTracing {
                endpoint: Some("http://collector:4318".into()),
                protocol: Some("http".into()),
                sampling_rate: Some("0.5".into()),
            }
        );
        let zipkin = "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nspec:\n  tracing:\n    zipkin:\n      endpointAddress: http://z:9411/api/v2/spans\n";
        let e = first_problem(zipkin).err().unwrap();
        assert_eq!(e.field, "spec.tracing.zipkin");
        let component = "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: s\nspec:\n  type: state.redis\n";
        let e = first_problem(component).err().unwrap();
        assert!(
            e.message
                .starts_with("this is a Dapr `kind: Component` file"),
            "{e}"
        );
        let (_, all) = read(Path::new("mecha.yaml"), component);
        assert_eq!(all.len(), 1, "one message for one cause: {all:?}");
    }

    #[test]
    fn structural_problems_name_their_path() {
        let Err(e) = first_problem("limits:\n  maxBodySise: 4Mi\n") else {
            panic!("accepted a typo");
        };
        assert_eq!(e.field, "limits.maxBodySise");
        assert!(e.message.starts_with("unknown field `maxBodySise`"), "{e}");
        assert!(e.message.ends_with("did you mean `maxBodySize`?"), "{e}");
        assert!(
            !e.message.starts_with("limits"),
            "the path is not repeated: {e}"
        );
        assert!(
            e.to_string()
                .starts_with("mecha.yaml: limits.maxBodySise: unknown field"),
            "{e}"
        );
        let Err(e) = first_problem("apps:\n  - id: a\n  - token: t\n") else {
            panic!("accepted an app without id");
        };
        assert_eq!(e.field, "apps[1]");
        assert!(e.message.contains("missing field `id`"), "{e}");
        let Err(e) = first_problem("server:\n  workers: many\n") else {
            panic!("accepted a word as a number");
        };
        assert_eq!(e.field, "server.workers");
        let Err(e) = first_problem("server: [1]\n") else {
            panic!("accepted a list as a section");
        };
        assert_eq!(e.field, "server");
    }

    #[test]
    fn bad_values_are_kept_for_the_report_and_nulls_are_unset() {
        let f = first_problem(
            "limits:\n  maxBodySize: lots\n  headerTimeout: ~\n  bodyTimeout: 7\n  maxMetadataBytes: 2048\n",
        )
        .ok()
        .unwrap();
        assert_eq!(
            f.limits.max_body_size,
            Checked::Bad("'lots' is not a size".into())
        );
        assert_eq!(f.limits.header_timeout, Checked::Unset);
        assert_eq!(
            f.limits.body_timeout,
            Checked::Set(Dur(Duration::from_secs(7)))
        );
        assert_eq!(f.limits.max_metadata_bytes, Checked::Set(Size(2048)));
    }
}
