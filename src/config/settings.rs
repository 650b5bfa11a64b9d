//! `config/mecha.yaml`: apps, limits, actor and server tunables.

mod file;

use std::path::{Path, PathBuf};
use std::time::Duration;

use std::collections::BTreeMap;

use serde::Deserialize;

use super::ConfigError;
use crate::actors::ActorSettings;
use crate::capabilities::lint::LintMode;
use crate::capabilities::portability::PortabilityMode;
use crate::capabilities::{Action, Baseline, Feature, Policy};
use file::{Checked, Dur, FileActors, FileApp, FileLimits, FileQuota, FileServer, FileToken, Size};

/// Where a token comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// A value given literally (`token`) or read once from the environment (`tokenEnv`).
    Value(String),
    /// A file holding the token (`tokenFile`; surrounding whitespace ignored), re-read
    /// whenever it changes, so a token rotates without a restart.
    File(PathBuf),
}

impl std::fmt::Debug for TokenSource {
    // Never print a token, not even in a debug dump of the settings.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenSource::Value(_) => f.write_str("Value(<redacted>)"),
            TokenSource::File(p) => write!(f, "File({})", p.display()),
        }
    }
}

impl TokenSource {
    /// Reads the current token (the file's trimmed contents, or the value).
    pub fn read(&self) -> Result<String, String> {
        match self {
            TokenSource::Value(v) => Ok(v.clone()),
            TokenSource::File(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| format!("cannot read {}: {e}", p.display()))?;
                let t = text.trim();
                if t.is_empty() {
                    return Err(format!("{} is empty", p.display()));
                }
                Ok(t.to_owned())
            }
        }
    }
}

/// An app allowed to call Mecha, identified by its API token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppConfig {
    /// The app id (used for key prefixes, scopes and metrics).
    pub id: String,
    /// The `dapr-api-token` the app sends.
    pub token: TokenSource,
    /// The app's quota (the `quotas` defaults, overridden by the app's own `quota`).
    pub quota: QuotaSettings,
    /// Capabilities (Dapr's strings) the app relies on: every store in its scope must serve
    /// them natively or emulated, or start-up fails.
    pub requires: Vec<&'static str>,
    /// Store types (canonical component types) the app must stay movable to
    /// (`apps[].portableTo`): every call is checked against each.
    pub portable_to: Vec<&'static str>,
    /// What a call a target would serve differently gets (`apps[].portability`).
    pub portability: PortabilityMode,
    /// The app's own tightenings per store (`apps[].stores.<store>`).
    pub stores: BTreeMap<String, AppStoreSettings>,
}

/// What an app makes stricter for itself on one store: never looser than the operator's
/// settings (a loosening is a configuration error, see [`crate::config::policy_problems`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AppStoreSettings {
    /// The app's lint mode on this store (at least the store's).
    pub lint: Option<LintMode>,
    /// Per-capability actions; only `reject` tightens (or the store's own action, a no-op).
    pub policy: BTreeMap<Feature, Action>,
}

/// A per-app quota: requests in flight and request rate. Past either, a request is answered
/// at once with 429 `ERR_TOO_MANY_REQUESTS` / `RESOURCE_EXHAUSTED` and a `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaSettings {
    /// Requests of the app in flight at once (0 = unlimited).
    pub max_concurrent: usize,
    /// Sustained requests per second (0 = unlimited).
    pub requests_per_second: u32,
    /// Requests allowed at once above the sustained rate (0 = `requests_per_second`).
    pub burst: u32,
    /// How long a refused request waits before its 429 is sent. It slows a client that
    /// retries at once (each of its connections gets at most one refusal per delay), so a
    /// flood costs Mecha little CPU; the wait holds no quota slot.
    pub refusal_delay: Duration,
    /// Bytes of the app's request bodies (HTTP) and messages (gRPC) held in memory at once,
    /// counted while they are read (`quotas.maxBodyBytes`, 0 = only the global budget).
    pub max_body_bytes: usize,
}

impl Default for QuotaSettings {
    fn default() -> Self {
        QuotaSettings {
            max_concurrent: 1024,
            requests_per_second: 0,
            burst: 0,
            refusal_delay: Duration::from_millis(50),
            max_body_bytes: 16 * 1024 * 1024,
        }
    }
}

/// Request limits. Every one is enforced on both protocols and answered with a Dapr-shaped error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest request body (HTTP) or message (gRPC), in bytes.
    pub max_body_size: usize,
    /// Longest key, in bytes (before prefixing).
    pub max_key_length: usize,
    /// Most keys in one bulk get, items in one save, or keys in one bulk delete.
    pub max_bulk_items: usize,
    /// Most operations in one transaction (a store's own lower maximum wins).
    pub max_transaction_ops: usize,
    /// Most keys one emulated query examines (`limits.maxQueryScan`); a query that would
    /// examine more fails before returning anything.
    pub max_query_scan: usize,
    /// Default fan-out of a bulk get that does not say (`parallelism` ≤ 0).
    pub default_bulk_parallelism: usize,
    /// Most open connections per listener (HTTP and gRPC each); more are closed at once.
    pub max_connections: usize,
    /// Time a client has to send the request headers (HTTP) or its first bytes (gRPC).
    pub header_timeout: Duration,
    /// Time a client has to send a whole request body (HTTP) or message (gRPC), from the
    /// end of the headers.
    pub body_timeout: Duration,
    /// An open connection on which the client sends nothing for this long is closed.
    pub idle_timeout: Duration,
    /// Most concurrent HTTP/2 streams per gRPC connection.
    pub max_concurrent_streams: u32,
    /// Deepest nesting of arrays and objects in a JSON body.
    pub max_json_depth: usize,
    /// JSON bodies larger than this are parsed on a bounded pool of blocking threads, so
    /// a big parse never stalls the other requests of its serving thread.
    pub blocking_parse_threshold: usize,
    /// Most extended-metadata attributes one app may set.
    pub max_metadata_entries: usize,
    /// Longest extended-metadata attribute name, in bytes.
    pub max_metadata_key_length: usize,
    /// Most bytes (names plus values) of one app's extended metadata.
    pub max_metadata_bytes: usize,
    /// Resource bounds per request and per peer (bodies in memory, connections).
    pub resources: ResourceLimits,
}

/// Bounds on what one app or one client can hold: body bytes in memory, connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceLimits {
    /// Bytes of request bodies and messages of all apps held in memory at once
    /// (`limits.maxBodyBytesInFlight`).
    pub max_body_bytes_in_flight: usize,
    /// How long a body waits for room in the per-app and global budgets before it is
    /// refused with 429 / `RESOURCE_EXHAUSTED` (`limits.bodyMemoryWait`).
    pub body_memory_wait: Duration,
    /// Most open connections from one peer address per listener
    /// (`limits.maxConnectionsPerPeer`).
    pub max_connections_per_peer: usize,
}

impl Default for ResourceLimits {
    fn default() -> Self {
        ResourceLimits {
            max_body_bytes_in_flight: 32 * 1024 * 1024,
            body_memory_wait: Duration::from_secs(1),
            max_connections_per_peer: 512,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_size: 4 * 1024 * 1024,
            max_key_length: 4096,
            max_bulk_items: 1000,
            max_transaction_ops: 1000,
            max_query_scan: crate::actors::emulation::DEFAULT_MAX_QUERY_SCAN,
            default_bulk_parallelism: 16,
            max_connections: 1024,
            header_timeout: Duration::from_secs(5),
            body_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_concurrent_streams: 100,
            max_json_depth: 64,
            blocking_parse_threshold: 64 * 1024,
            max_metadata_entries: 64,
            max_metadata_key_length: 256,
            max_metadata_bytes: 64 * 1024,
            resources: ResourceLimits::default(),
        }
    }
}

/// Server tunables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    /// How long a shutdown waits for in-flight requests.
    pub shutdown_timeout: Duration,
    /// HTTP worker threads (0 = one per CPU).
    pub workers: usize,
    /// How often token files (`tokenFile`) are checked for a change.
    pub token_file_check_interval: Duration,
    /// How often the configuration files are checked for a change to reload (zero: only
    /// on `SIGHUP`).
    pub reload_interval: Duration,
    /// TLS on the HTTP and gRPC listeners (`server.tls`); `None` serves plain TCP.
    pub tls: Option<TlsSettings>,
}

pub use crate::tls::TlsSettings;

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            shutdown_timeout: Duration::from_secs(10),
            workers: 0,
            token_file_check_interval: Duration::from_secs(1),
            reload_interval: Duration::from_secs(2),
            tls: None,
        }
    }
}

/// Mecha's validated settings.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Configured apps; empty means every caller is the `--app-id` app and no token is needed.
    pub apps: Vec<AppConfig>,
    /// Request limits.
    pub limits: Limits,
    /// Store actor tunables.
    pub actors: ActorSettings,
    /// Server tunables.
    pub server: ServerSettings,
    /// daprd's single-token mode: the `DAPR_API_TOKEN` environment variable, the token of
    /// the `--app-id` app. Set by [`crate::config::Config::load`], never read from the file.
    pub api_token: Option<String>,
    /// The token `/metrics` requires (`Authorization: Bearer`), if any.
    pub metrics_token: Option<TokenSource>,
    /// The quota of the `--app-id` app, and the default of every configured app.
    pub quota: QuotaSettings,
    /// Per-store capability policies (`stores:`), by store name.
    pub policies: BTreeMap<String, Policy>,
    /// What every store does where its policy says nothing (`policy.default`).
    pub baseline: Baseline,
    /// Per-store request-metadata lint mode (`stores.<name>.lint`); absent: `warn`.
    pub lint: BTreeMap<String, LintMode>,
    /// Trace export (`tracing:`, a Dapr Configuration's `spec.tracing`, or
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`); `None`: off.
    pub tracing: Option<crate::telemetry::TracingSettings>,
}

/// One `stores.<name>` (or `apps[].stores.<name>`) entry: `lint` and per-capability actions.
fn parse_store_entry(
    prefix: &str,
    entries: BTreeMap<String, String>,
    err: &mut dyn FnMut(&str, String),
) -> (Option<LintMode>, Policy) {
    let mut policy = Policy::default();
    let mut lint = None;
    for (name, value) in entries {
        let field = format!("{prefix}.{name}");
        if name == "lint" {
            match value.as_str() {
                "off" => lint = Some(LintMode::Off),
                "warn" => lint = Some(LintMode::Warn),
                "reject" => lint = Some(LintMode::Reject),
                other => err(
                    &field,
                    format!("'{other}' is not a lint mode: use off, warn or reject"),
                ),
            }
            continue;
        }
        let action = match Action::parse(&value) {
            Ok(a) => a,
            Err(e) => {
                err(&field, e);
                continue;
            }
        };
        if name == "default" {
            policy.default = Some(action);
        } else if let Some(f) = Feature::parse_policy_name(&name) {
            policy.features.insert(f, action);
        } else {
            let known: Vec<&str> = Feature::ALL.iter().map(|f| f.policy_name()).collect();
            err(
                &field,
                format!(
                    "unknown capability '{name}': use lint, default or one of {}",
                    known.join(", ")
                ),
            );
        }
    }
    (lint, policy)
}

/// `server.tls` as written; also filled from the `--tls-*` flags.
#[derive(Deserialize, Default, Debug, Clone, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawTls {
    /// `certFile`: the server certificate chain (PEM); renewed in place without a restart.
    pub cert_file: Option<PathBuf>,
    /// `keyFile`: its private key (PEM).
    pub key_file: Option<PathBuf>,
    /// `clientCaFile`: the authorities client certificates are verified against.
    pub client_ca_file: Option<PathBuf>,
    /// `requireClientCert`: refuse clients without a certificate (needs `clientCaFile`).
    pub require_client_cert: Option<bool>,
    /// `checkInterval`: how often the files are checked for a renewal (default 1s).
    pub check_interval: Option<String>,
}

impl RawTls {
    /// `self` with every field `over` sets replaced (flags win over the file).
    pub fn merged(self, over: RawTls) -> RawTls {
        RawTls {
            cert_file: over.cert_file.or(self.cert_file),
            key_file: over.key_file.or(self.key_file),
            client_ca_file: over.client_ca_file.or(self.client_ca_file),
            require_client_cert: over.require_client_cert.or(self.require_client_cert),
            check_interval: over.check_interval.or(self.check_interval),
        }
    }

    fn is_empty(&self) -> bool {
        self.cert_file.is_none()
            && self.key_file.is_none()
            && self.client_ca_file.is_none()
            && self.require_client_cert.is_none()
            && self.check_interval.is_none()
    }

    /// Validates the shape (both files given, `requireClientCert` only with a CA); the files
    /// themselves are checked by [`crate::tls::check`]. `None` when TLS is off or on error.
    pub fn validate(self, field: &str, err: &mut dyn FnMut(&str, String)) -> Option<TlsSettings> {
        if self.is_empty() {
            return None;
        }
        let check_interval = match self.check_interval.as_deref().map(str::parse::<Dur>) {
            None => Some(TlsSettings::DEFAULT_CHECK_INTERVAL),
            Some(Ok(Dur(d))) if !d.is_zero() => Some(d),
            Some(Ok(_)) => {
                err(
                    &format!("{field}.checkInterval"),
                    "must be greater than zero".into(),
                );
                None
            }
            Some(Err(e)) => {
                err(&format!("{field}.checkInterval"), e);
                None
            }
        };
        let mut file = |name: &str, v: Option<PathBuf>| match v {
            Some(p) if !p.as_os_str().is_empty() => Some(p),
            _ => {
                err(
                    &format!("{field}.{name}"),
                    "is required when TLS is configured (give both certFile and keyFile)".into(),
                );
                None
            }
        };
        let cert_file = file("certFile", self.cert_file);
        let key_file = file("keyFile", self.key_file);
        let require_client_cert = self.require_client_cert.unwrap_or(false);
        let client_ca_file = self.client_ca_file.filter(|p| !p.as_os_str().is_empty());
        if require_client_cert && client_ca_file.is_none() {
            err(
                &format!("{field}.requireClientCert"),
                "needs clientCaFile (the CA client certificates are verified against)".into(),
            );
            return None;
        }
        Some(TlsSettings {
            cert_file: cert_file?,
            key_file: key_file?,
            client_ca_file,
            require_client_cert,
            check_interval: check_interval?,
        })
    }
}

/// The capability strings an app may list in `requires`.
pub const REQUIRABLE: &[&str] = &[
    "ETAG",
    "TRANSACTIONAL",
    "QUERY_API",
    "TTL",
    "DELETE_WITH_PREFIX",
    "PARTITION_KEY",
    "KEYS_LIKE",
    "FIRST_WRITE",
    "ACTOR",
];

/// Parses a size: a byte count, or a whole number with `Ki`/`Mi`/`Gi` (also `KiB`, `K`,
/// `KB`, ...): every unit is binary, `KB` is 1024 bytes.
pub fn parse_size(raw: &str) -> Result<usize, String> {
    raw.parse::<Size>().map(|Size(n)| n)
}

/// Exactly one of `token`, `tokenEnv`, `tokenFile`, resolved (`tokenEnv` read now).
fn token_source(
    field: &str,
    given: FileToken,
    env: &dyn Fn(&str) -> Option<String>,
    err: &mut dyn FnMut(&str, String),
) -> Option<TokenSource> {
    match (given.token, given.token_env, given.token_file) {
        (Some(t), None, None) => Some(TokenSource::Value(t)),
        (None, Some(var), None) => match env(&var) {
            Some(t) => Some(TokenSource::Value(t)),
            None => {
                err(
                    &format!("{field}.tokenEnv"),
                    format!("environment variable {var} is not set"),
                );
                None
            }
        },
        (None, None, Some(path)) => Some(TokenSource::File(path)),
        _ => {
            err(
                field,
                "give exactly one of token, tokenEnv or tokenFile".into(),
            );
            None
        }
    }
}

impl Settings {
    /// Parses and validates `mecha.yaml` text; `file` only names errors.
    pub fn parse(file: &Path, text: &str) -> Result<Settings, Vec<ConfigError>> {
        Self::parse_with_env(file, text, &|k| std::env::var(k).ok())
    }

    /// As [`Settings::parse`], reading `tokenEnv` variables through `env`.
    pub fn parse_with_env(
        file: &Path,
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Settings, Vec<ConfigError>> {
        Self::parse_full(file, text, env, &RawTls::default())
    }

    /// As [`Settings::parse_with_env`], with `server.tls` fields given by flags (`tls_flags`)
    /// replacing the file's.
    ///
    /// Every problem is reported at once, each under its field's path: a structural problem
    /// (an unknown field, a section of the wrong type) leaves its section at its defaults and
    /// hides nothing in the other sections; bad values and failed checks follow.
    pub fn parse_full(
        file: &Path,
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
        tls_flags: &RawTls,
    ) -> Result<Settings, Vec<ConfigError>> {
        match Self::parse_report(file, text, env, tls_flags) {
            (s, errors) if errors.is_empty() => Ok(s),
            (_, errors) => Err(errors),
        }
    }

    /// As [`Settings::parse_full`], returning what could be read beside every problem, so
    /// that the checks against the components still run on it (an error in one section
    /// hides no problem of another).
    pub fn parse_report(
        file: &Path,
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
        tls_flags: &RawTls,
    ) -> (Settings, Vec<ConfigError>) {
        let (raw, mut errors) = file::read(file, text);
        let mut err = |field: &str, msg: String| errors.push(ConfigError::new(file, field, msg));
        let mut s = Settings::default();
        s.quota = quota(raw.quotas, "quotas", QuotaSettings::default(), &mut err);
        s.apps = apps(raw.apps, s.quota, env, &mut err);
        s.metrics_token = metrics_token(raw.metrics, env, &mut err);
        s.limits = limits(raw.limits, &mut err);
        s.actors = actors(raw.actors, &mut err);
        s.server = server(raw.server, tls_flags, &mut err);
        if let Some(v) = raw.policy.default {
            match Baseline::parse(&v) {
                Ok(b) => s.baseline = b,
                Err(e) => err("policy.default", e),
            }
        }
        for (store, entries) in raw.stores {
            let (lint, mut policy) =
                parse_store_entry(&format!("stores.{store}"), entries, &mut err);
            policy.baseline = s.baseline;
            if let Some(mode) = lint {
                s.lint.insert(store.clone(), mode);
            }
            s.policies.insert(store, policy);
        }
        s.tracing = tracing_settings(raw.tracing, env, &mut err);
        body_budgets(&s, &mut err);
        (s, errors)
    }
}

/// A quota (`quotas`, `apps[].quota` under `field`): every field given replaces `base`'s.
fn quota(
    q: FileQuota,
    field: &str,
    base: QuotaSettings,
    err: &mut dyn FnMut(&str, String),
) -> QuotaSettings {
    let delay_field = format!("{field}.refusalDelay");
    let refusal_delay = match q.refusal_delay.report(&delay_field, err) {
        None => base.refusal_delay,
        Some(Dur(d)) if d <= Duration::from_secs(1) => d,
        Some(_) => {
            err(&delay_field, "must be at most 1s".into());
            base.refusal_delay
        }
    };
    let max_body_bytes = q.max_body_bytes.or_report(
        &format!("{field}.maxBodyBytes"),
        Size(base.max_body_bytes),
        err,
    );
    QuotaSettings {
        max_concurrent: q.max_concurrent.unwrap_or(base.max_concurrent),
        requests_per_second: q.requests_per_second.unwrap_or(base.requests_per_second),
        burst: q.burst.unwrap_or(base.burst),
        refusal_delay,
        max_body_bytes: max_body_bytes.0,
    }
}

/// `apps:`: ids and tokens checked (unique, readable), requirements and tightenings parsed.
fn apps(
    raw: Vec<FileApp>,
    default_quota: QuotaSettings,
    env: &dyn Fn(&str) -> Option<String>,
    err: &mut dyn FnMut(&str, String),
) -> Vec<AppConfig> {
    let mut apps: Vec<AppConfig> = Vec::new();
    let mut tokens: Vec<String> = Vec::new();
    for (i, app) in raw.into_iter().enumerate() {
        let field = format!("apps[{i}]");
        if let Some(why) = crate::keys::id_problem(&app.id) {
            err(&format!("{field}.id"), format!("app '{}' {why}", app.id));
        }
        let given = FileToken {
            token: app.token,
            token_env: app.token_env,
            token_file: app.token_file,
        };
        let Some(source) = token_source(&field, given, env, err) else {
            continue;
        };
        let current = match source.read() {
            Ok(t) if !t.is_empty() => t,
            Ok(_) => {
                err(&format!("{field}.token"), "must not be empty".into());
                continue;
            }
            Err(e) => {
                err(&format!("{field}.tokenFile"), e);
                continue;
            }
        };
        if tokens.contains(&current) {
            err(
                &format!("{field}.token"),
                "the same token is given to two apps".into(),
            );
        } else if apps.iter().any(|a| a.id == app.id) {
            err(
                &format!("{field}.id"),
                format!("app '{}' is listed twice", app.id),
            );
        } else {
            tokens.push(current);
            let requires = requirements(&field, &app.requires, err);
            let portable_to = portable_to(&field, &app.portable_to, err);
            let portability = portability_mode(&field, app.portability.as_deref(), err);
            let stores = app_stores(&field, app.stores, err);
            apps.push(AppConfig {
                id: app.id,
                token: source,
                quota: quota(app.quota, &format!("{field}.quota"), default_quota, err),
                requires,
                portable_to,
                portability,
                stores,
            });
        }
    }
    apps
}

/// `apps[].requires`: known capability strings, deduplicated in order.
fn requirements(
    field: &str,
    raw: &[String],
    err: &mut dyn FnMut(&str, String),
) -> Vec<&'static str> {
    let mut requires = Vec::new();
    for (j, r) in raw.iter().enumerate() {
        match REQUIRABLE.iter().find(|c| **c == r.as_str()) {
            Some(c) => {
                if !requires.contains(c) {
                    requires.push(*c);
                }
            }
            None => err(
                &format!("{field}.requires[{j}]"),
                format!(
                    "'{r}' is not a capability: use one of {}",
                    REQUIRABLE.join(", ")
                ),
            ),
        }
    }
    requires
}

/// `apps[].portableTo`: registered store types (aliases allowed), canonical and deduplicated
/// in order; an unknown type is an error naming the nearest known one.
fn portable_to(
    field: &str,
    raw: &[String],
    err: &mut dyn FnMut(&str, String),
) -> Vec<&'static str> {
    let mut types = Vec::new();
    for (j, t) in raw.iter().enumerate() {
        match crate::actors::backends::lookup(&t.to_ascii_lowercase()) {
            Some(d) if !types.contains(&d.component_type) => types.push(d.component_type),
            Some(_) => {}
            None => {
                let known: Vec<&str> = crate::actors::backends::REGISTRY
                    .iter()
                    .map(|d| d.component_type)
                    .collect();
                let near = known
                    .iter()
                    .min_by_key(|k| strsim::damerau_levenshtein(k, &t.to_ascii_lowercase()))
                    .filter(|k| strsim::damerau_levenshtein(k, &t.to_ascii_lowercase()) <= 3)
                    .map(|k| format!(" (did you mean '{k}'?)"))
                    .unwrap_or_default();
                err(
                    &format!("{field}.portableTo[{j}]"),
                    format!(
                        "'{t}' is not a store type Mecha knows{near}: use one of {}",
                        known.join(", ")
                    ),
                );
            }
        }
    }
    types
}

/// `tracing:` (or a Dapr Configuration's `spec.tracing`), completed from the standard
/// `OTEL_EXPORTER_OTLP_ENDPOINT` and `OTEL_EXPORTER_OTLP_PROTOCOL`; `None` without an
/// endpoint, or with a sampling rate of 0 (as Dapr's `samplingRate: "0"`).
fn tracing_settings(
    t: file::FileTracing,
    env: &dyn Fn(&str) -> Option<String>,
    err: &mut dyn FnMut(&str, String),
) -> Option<crate::telemetry::TracingSettings> {
    use crate::telemetry::{OtlpProtocol, TracingSettings};
    let (endpoint_field, endpoint) = match t.endpoint {
        Some(e) => ("tracing.endpoint", e),
        None => (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            env("OTEL_EXPORTER_OTLP_ENDPOINT").filter(|e| !e.trim().is_empty())?,
        ),
    };
    let endpoint = endpoint.trim().to_owned();
    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
        err(
            endpoint_field,
            format!("'{endpoint}' must be an http:// or https:// URL"),
        );
        return None;
    }
    let (protocol_field, protocol) = match t.protocol {
        Some(p) => ("tracing.protocol", Some(p)),
        None => (
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            env("OTEL_EXPORTER_OTLP_PROTOCOL"),
        ),
    };
    let protocol = match protocol {
        None => OtlpProtocol::Grpc,
        Some(p) => match OtlpProtocol::parse(&p) {
            Some(p) => p,
            None => {
                err(
                    protocol_field,
                    format!(
                        "'{p}' is not an OTLP protocol Mecha speaks: use grpc or http/protobuf"
                    ),
                );
                return None;
            }
        },
    };
    let rate = match t.sampling_rate.as_deref().map(str::trim) {
        None => 1.0,
        Some(r) => match r.parse::<f64>() {
            Ok(v) if (0.0..=1.0).contains(&v) => v,
            _ => {
                err(
                    "tracing.samplingRate",
                    format!("'{r}' is not a rate from 0 to 1"),
                );
                return None;
            }
        },
    };
    (rate > 0.0).then_some(TracingSettings {
        endpoint,
        protocol,
        sampling_rate: rate,
    })
}

/// The JSON Schema of `mecha.yaml` (for editors and the book), from the types it is read
/// into.
pub fn settings_schema() -> String {
    file::schema()
}

/// `apps[].portability`: `warn` (the default) or `reject`.
fn portability_mode(
    field: &str,
    raw: Option<&str>,
    err: &mut dyn FnMut(&str, String),
) -> PortabilityMode {
    let Some(raw) = raw else {
        return PortabilityMode::default();
    };
    PortabilityMode::parse(raw).unwrap_or_else(|| {
        err(
            &format!("{field}.portability"),
            format!("'{raw}' is not a portability mode: use warn or reject"),
        );
        PortabilityMode::default()
    })
}

/// `apps[].stores`: an app's tightenings per store (an app sets no default).
fn app_stores(
    field: &str,
    raw: BTreeMap<String, BTreeMap<String, String>>,
    err: &mut dyn FnMut(&str, String),
) -> BTreeMap<String, AppStoreSettings> {
    let mut stores = BTreeMap::new();
    for (store, entries) in raw {
        let prefix = format!("{field}.stores.{store}");
        let (lint, policy) = parse_store_entry(&prefix, entries, err);
        if policy.default.is_some() {
            err(
                &format!("{prefix}.default"),
                "an app cannot set a default: list the capabilities it tightens".into(),
            );
        }
        stores.insert(
            store,
            AppStoreSettings {
                lint,
                policy: policy.features,
            },
        );
    }
    stores
}

/// `metrics:`: the token `/metrics` requires, if one is given.
fn metrics_token(
    m: FileToken,
    env: &dyn Fn(&str) -> Option<String>,
    err: &mut dyn FnMut(&str, String),
) -> Option<TokenSource> {
    if m.token.is_none() && m.token_env.is_none() && m.token_file.is_none() {
        return None;
    }
    let source = token_source("metrics", m, env, err)?;
    match source.read() {
        Ok(t) if !t.is_empty() => Some(source),
        Ok(_) => {
            err("metrics.token", "must not be empty".into());
            None
        }
        Err(e) => {
            err("metrics.tokenFile", e);
            None
        }
    }
}

/// A count that must be positive: the default when unset, reported when zero.
fn positive(
    field: &str,
    v: Option<usize>,
    default: usize,
    err: &mut dyn FnMut(&str, String),
) -> usize {
    match v {
        Some(0) => {
            err(field, "must be greater than zero".into());
            default
        }
        Some(n) => n,
        None => default,
    }
}

/// A duration that must be positive: the default when unset, reported when zero or bad.
fn nonzero(
    field: &str,
    v: Checked<Dur>,
    default: Duration,
    err: &mut dyn FnMut(&str, String),
) -> Duration {
    match v.report(field, err) {
        Some(Dur(d)) if d.is_zero() => {
            err(field, "must be greater than zero".into());
            default
        }
        Some(Dur(d)) => d,
        None => default,
    }
}

/// `limits:`.
fn limits(mut l: FileLimits, err: &mut dyn FnMut(&str, String)) -> Limits {
    let d = Limits::default();
    let mut out = limit_sizes(&mut l, err);
    limit_counts(&l, &mut out, err);
    out.header_timeout = nonzero(
        "limits.headerTimeout",
        l.header_timeout,
        d.header_timeout,
        err,
    );
    out.body_timeout = nonzero("limits.bodyTimeout", l.body_timeout, d.body_timeout, err);
    out.idle_timeout = nonzero("limits.idleTimeout", l.idle_timeout, d.idle_timeout, err);
    out.resources = resource_limits(
        l.max_body_bytes_in_flight,
        l.body_memory_wait,
        l.max_connections_per_peer,
        err,
    );
    out
}

/// The default limits with the sizes of `limits:` (`maxBodySize`, `blockingParseThreshold`,
/// `maxMetadataBytes`) taken out of `l`.
fn limit_sizes(l: &mut FileLimits, err: &mut dyn FnMut(&str, String)) -> Limits {
    let d = Limits::default();
    let max_body_size = match std::mem::take(&mut l.max_body_size).report("limits.maxBodySize", err)
    {
        Some(Size(n)) if n < 1024 => {
            err("limits.maxBodySize", "must be at least 1Ki".into());
            d.max_body_size
        }
        Some(Size(n)) => n,
        None => d.max_body_size,
    };
    let blocking_parse_threshold = std::mem::take(&mut l.blocking_parse_threshold)
        .or_report(
            "limits.blockingParseThreshold",
            Size(d.blocking_parse_threshold),
            err,
        )
        .0;
    let metadata = std::mem::take(&mut l.max_metadata_bytes).report("limits.maxMetadataBytes", err);
    let max_metadata_bytes = match metadata {
        Some(Size(0)) => {
            err(
                "limits.maxMetadataBytes",
                "must be greater than zero".into(),
            );
            d.max_metadata_bytes
        }
        Some(Size(n)) => n,
        None => d.max_metadata_bytes,
    };
    Limits {
        max_body_size,
        blocking_parse_threshold,
        max_metadata_bytes,
        ..d
    }
}

/// The counts of `limits:`, each of which must be positive, set in `out`.
fn limit_counts(l: &FileLimits, out: &mut Limits, err: &mut dyn FnMut(&str, String)) {
    let counts: [(&str, Option<usize>, &mut usize); 9] = [
        (
            "limits.maxKeyLength",
            l.max_key_length,
            &mut out.max_key_length,
        ),
        (
            "limits.maxBulkItems",
            l.max_bulk_items,
            &mut out.max_bulk_items,
        ),
        (
            "limits.maxTransactionOps",
            l.max_transaction_ops,
            &mut out.max_transaction_ops,
        ),
        (
            "limits.maxQueryScan",
            l.max_query_scan,
            &mut out.max_query_scan,
        ),
        (
            "limits.defaultBulkParallelism",
            l.default_bulk_parallelism,
            &mut out.default_bulk_parallelism,
        ),
        (
            "limits.maxConnections",
            l.max_connections,
            &mut out.max_connections,
        ),
        (
            "limits.maxJsonDepth",
            l.max_json_depth,
            &mut out.max_json_depth,
        ),
        (
            "limits.maxMetadataEntries",
            l.max_metadata_entries,
            &mut out.max_metadata_entries,
        ),
        (
            "limits.maxMetadataKeyLength",
            l.max_metadata_key_length,
            &mut out.max_metadata_key_length,
        ),
    ];
    for (field, given, target) in counts {
        *target = positive(field, given, *target, err);
    }
    let streams = positive(
        "limits.maxConcurrentStreams",
        l.max_concurrent_streams,
        out.max_concurrent_streams as usize,
        err,
    );
    out.max_concurrent_streams = u32::try_from(streams).unwrap_or(u32::MAX);
}

/// `limits.maxBodyBytesInFlight`, `limits.bodyMemoryWait`, `limits.maxConnectionsPerPeer`.
fn resource_limits(
    in_flight: Checked<Size>,
    wait: Checked<Dur>,
    per_peer: Option<usize>,
    err: &mut dyn FnMut(&str, String),
) -> ResourceLimits {
    let d = ResourceLimits::default();
    let body_memory_wait = match wait.report("limits.bodyMemoryWait", err) {
        Some(Dur(w)) if w <= Duration::from_secs(60) => w,
        Some(_) => {
            err("limits.bodyMemoryWait", "must be at most 1m".into());
            d.body_memory_wait
        }
        None => d.body_memory_wait,
    };
    ResourceLimits {
        max_body_bytes_in_flight: in_flight
            .or_report(
                "limits.maxBodyBytesInFlight",
                Size(d.max_body_bytes_in_flight),
                err,
            )
            .0,
        body_memory_wait,
        max_connections_per_peer: positive(
            "limits.maxConnectionsPerPeer",
            per_peer,
            d.max_connections_per_peer,
            err,
        ),
    }
}

/// `actors:`.
fn actors(a: FileActors, err: &mut dyn FnMut(&str, String)) -> ActorSettings {
    let d = ActorSettings::default();
    let pings = match a.restart_after_failed_pings {
        Some(0) => {
            err(
                "actors.restartAfterFailedPings",
                "must be greater than zero".into(),
            );
            d.restart_after_failed_pings
        }
        Some(n) => n,
        None => d.restart_after_failed_pings,
    };
    ActorSettings {
        mailbox_capacity: positive(
            "actors.mailboxCapacity",
            a.mailbox_capacity,
            d.mailbox_capacity,
            err,
        ),
        restart_after_failed_pings: pings,
        request_timeout: nonzero(
            "actors.requestTimeout",
            a.request_timeout,
            d.request_timeout,
            err,
        ),
        health_interval: nonzero(
            "actors.healthInterval",
            a.health_interval,
            d.health_interval,
            err,
        ),
        ttl_sweep_interval: nonzero(
            "actors.ttlSweepInterval",
            a.ttl_sweep_interval,
            d.ttl_sweep_interval,
            err,
        ),
    }
}

/// `server:`, with the `--tls-*` flags replacing the file's `server.tls` fields.
fn server(sv: FileServer, tls_flags: &RawTls, err: &mut dyn FnMut(&str, String)) -> ServerSettings {
    let d = ServerSettings::default();
    ServerSettings {
        shutdown_timeout: nonzero(
            "server.shutdownTimeout",
            sv.shutdown_timeout,
            d.shutdown_timeout,
            err,
        ),
        token_file_check_interval: nonzero(
            "server.tokenFileCheckInterval",
            sv.token_file_check_interval,
            d.token_file_check_interval,
            err,
        ),
        workers: sv.workers.unwrap_or(d.workers),
        // Zero is allowed here: it turns the file check off (reload on SIGHUP only).
        reload_interval: sv
            .reload_interval
            .or_report("server.reloadInterval", Dur(d.reload_interval), err)
            .0,
        tls: sv
            .tls
            .unwrap_or_default()
            .merged(tls_flags.clone())
            .validate("server.tls", err),
    }
}

/// The checks that tie `limits.maxBodyBytesInFlight` and the apps' `maxBodyBytes` to
/// `limits.maxBodySize`: a budget smaller than one allowed body would refuse that body forever.
fn body_budgets(s: &Settings, err: &mut dyn FnMut(&str, String)) {
    let body = s.limits.max_body_size;
    let budget = s.limits.resources.max_body_bytes_in_flight;
    if budget != 0 && budget < body {
        err(
            "limits.maxBodyBytesInFlight",
            format!("must be 0 (unlimited) or at least limits.maxBodySize ({body} bytes)"),
        );
    }
    let quotas = std::iter::once(("quotas".to_owned(), s.quota)).chain(
        s.apps
            .iter()
            .map(|a| (format!("app '{}' quota", a.id), a.quota)),
    );
    for (name, q) in quotas {
        if q.max_body_bytes != 0 && q.max_body_bytes < body {
            err(
                &format!("{name}.maxBodyBytes"),
                format!(
                    "must be 0 (only the global budget) or at least limits.maxBodySize ({body} bytes)"
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Settings, Vec<ConfigError>> {
        Settings::parse_with_env(Path::new("mecha.yaml"), text, &|k| {
            (k == "TOKEN_A").then(|| "secret-a".to_owned())
        })
    }

    #[test]
    fn empty_file_gives_defaults() {
        let s = parse("").unwrap();
        assert_eq!(s.limits, Limits::default());
        assert!(s.apps.is_empty());
    }

    #[test]
    fn full_file_parses() {
        let s = parse(
            "apps:\n  - id: orders\n    tokenEnv: TOKEN_A\n  - id: billing\n    token: t2\nlimits:\n  maxBodySize: 1Mi\n  maxKeyLength: 10\nactors:\n  requestTimeout: 250ms\n  mailboxCapacity: 8\nserver:\n  shutdownTimeout: 3s\n  workers: 2\n",
        )
        .unwrap();
        assert_eq!(s.apps[0].id, "orders");
        assert_eq!(s.apps[0].token, TokenSource::Value("secret-a".into()));
        assert_eq!(s.apps[1].quota, QuotaSettings::default());
        assert_eq!(s.limits.max_body_size, 1024 * 1024);
        assert_eq!(s.limits.max_key_length, 10);
        assert_eq!(s.actors.request_timeout, Duration::from_millis(250));
        assert_eq!(s.actors.mailbox_capacity, 8);
        assert_eq!(s.server.workers, 2);
    }

    #[test]
    fn every_error_is_reported() {
        let errs = parse(
            "apps:\n  - id: a\n    tokenEnv: MISSING\n  - id: ''\n    token: x\nlimits:\n  maxBodySize: lots\n  maxKeyLength: 0\nactors:\n  requestTimeout: soon\n",
        )
        .unwrap_err();
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "apps[0].tokenEnv",
                "apps[1].id",
                "limits.maxBodySize",
                "limits.maxKeyLength",
                "actors.requestTimeout"
            ]
        );
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let errs = parse("limitz: {}\n").unwrap_err();
        assert!(errs[0].message.contains("unknown field"), "{errs:?}");
    }

    #[test]
    fn quotas_tokens_files_and_metadata_limits() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tok");
        std::fs::write(&file, "  from-file\n").unwrap();
        let s = parse(&format!(
            "apps:\n  - id: a\n    tokenFile: {}\n    quota:\n      requestsPerSecond: 5\n  - id: b\n    token: t\nquotas:\n  maxConcurrent: 8\n  burst: 3\nmetrics:\n  token: m\nlimits:\n  maxMetadataEntries: 2\n  maxMetadataBytes: 1Ki\nserver:\n  tokenFileCheckInterval: 50ms\n",
            file.display()
        ))
        .unwrap();
        assert_eq!(s.apps[0].token.read().unwrap(), "from-file");
        let a = QuotaSettings {
            max_concurrent: 8,
            requests_per_second: 5,
            burst: 3,
            refusal_delay: Duration::from_millis(50),
            max_body_bytes: QuotaSettings::default().max_body_bytes,
        };
        assert_eq!(s.apps[0].quota, a);
        assert_eq!(s.apps[1].quota.requests_per_second, 0);
        assert_eq!(s.quota.max_concurrent, 8);
        assert_eq!(s.metrics_token, Some(TokenSource::Value("m".into())));
        assert_eq!(s.limits.max_metadata_entries, 2);
        assert_eq!(s.limits.max_metadata_bytes, 1024);
        assert_eq!(
            s.server.token_file_check_interval,
            Duration::from_millis(50)
        );
        // A missing token file and two token sources are both reported.
        let errs = parse("apps:\n  - id: a\n    tokenFile: /nonexistent/tok\n  - id: b\n    token: x\n    tokenEnv: TOKEN_A\n").unwrap_err();
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["apps[0].tokenFile", "apps[1]"]);
        assert!(
            !format!("{:?}", s.apps[1]).contains("\"t\""),
            "a token is never printed"
        );
    }

    #[test]
    fn store_policies_parse_and_bad_ones_are_all_reported() {
        let s = parse(
            "stores:\n  kvstore:\n    default: reject\n    ttl: emulate\n    bulk: emulate\n    strongConsistency: ignore\n",
        )
        .unwrap();
        let p = &s.policies["kvstore"];
        assert_eq!(p.default, Some(Action::Reject));
        assert_eq!(p.features[&Feature::Ttl], Action::Emulate);
        assert_eq!(p.features[&Feature::StrongConsistency], Action::Ignore);
        let errs = parse("stores:\n  a:\n    ttl: degrade\n    colour: ignore\n").unwrap_err();
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["stores.a.colour", "stores.a.ttl"]);
    }

    #[test]
    fn lint_modes_requirements_and_app_tightenings_parse() {
        let s = parse(
            "apps:\n  - id: orders\n    token: t\n    requires: [TTL, ETAG, TTL, ACTOR]\n    stores:\n      kv:\n        lint: reject\n        ttl: reject\nstores:\n  kv:\n    lint: off\n    ttl: emulate\n",
        )
        .unwrap();
        assert_eq!(s.lint["kv"], LintMode::Off);
        assert_eq!(s.policies["kv"].features[&Feature::Ttl], Action::Emulate);
        let app = &s.apps[0];
        assert_eq!(
            app.requires,
            ["TTL", "ETAG", "ACTOR"],
            "deduplicated, in order"
        );
        assert_eq!(app.stores["kv"].lint, Some(LintMode::Reject));
        assert_eq!(app.stores["kv"].policy[&Feature::Ttl], Action::Reject);
        let errs = parse(
            "apps:\n  - id: a\n    token: t\n    requires: [TRANSACTION]\n    stores:\n      kv:\n        lint: loud\n        default: reject\nstores:\n  kv:\n    lint: strict\n",
        )
        .unwrap_err();
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "apps[0].requires[0]",
                "apps[0].stores.kv.lint",
                "apps[0].stores.kv.default",
                "stores.kv.lint"
            ]
        );
        assert!(errs[0].message.contains("TRANSACTIONAL"), "{errs:?}");
    }

    #[test]
    fn tls_settings_parse_and_flags_replace_file_fields() {
        assert_eq!(parse("").unwrap().server.tls, None);
        let s = parse(
            "server:\n  tls:\n    certFile: c.pem\n    keyFile: k.pem\n    clientCaFile: ca.pem\n    requireClientCert: true\n    checkInterval: 250ms\n",
        )
        .unwrap();
        let tls = s.server.tls.unwrap();
        assert_eq!(tls.cert_file, PathBuf::from("c.pem"));
        assert_eq!(tls.key_file, PathBuf::from("k.pem"));
        assert_eq!(tls.client_ca_file, Some(PathBuf::from("ca.pem")));
        assert!(tls.require_client_cert);
        assert_eq!(tls.check_interval, Duration::from_millis(250));

        // Flags fill in or replace fields of the file.
        let flags = RawTls {
            key_file: Some("flag-k.pem".into()),
            ..RawTls::default()
        };
        let s = Settings::parse_full(
            Path::new("mecha.yaml"),
            "server:\n  tls:\n    certFile: c.pem\n    keyFile: k.pem\n",
            &|_| None,
            &flags,
        )
        .unwrap();
        let tls = s.server.tls.unwrap();
        assert_eq!(tls.key_file, PathBuf::from("flag-k.pem"));
        assert_eq!(tls.check_interval, TlsSettings::DEFAULT_CHECK_INTERVAL);
        assert!(!tls.require_client_cert);

        // Every shape problem, each with its field.
        let errs = parse("server:\n  tls:\n    requireClientCert: true\n    checkInterval: soon\n")
            .unwrap_err();
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "server.tls.checkInterval",
                "server.tls.certFile",
                "server.tls.keyFile",
                "server.tls.requireClientCert"
            ]
        );
        let errs = parse("server:\n  tls:\n    cert: c.pem\n").unwrap_err();
        assert!(errs[0].message.contains("unknown field"), "{errs:?}");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4Mi"), Ok(4 * 1024 * 1024));
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("2 KiB"), Ok(2048));
        assert!(parse_size("4Xi").is_err());
    }
    #[test]
    fn a_typo_names_its_path_and_the_nearest_field() {
        let errs = parse("limits:\n  maxBodySise: 4Mi\n").unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].field, "limits.maxBodySise");
        assert!(
            errs[0].message.contains("did you mean `maxBodySize`?"),
            "{errs:?}"
        );
        let shown = errs[0].to_string();
        assert!(
            shown.starts_with("mecha.yaml: limits.maxBodySise: unknown field `maxBodySise`"),
            "{shown}"
        );
        let errs = parse("server:\n  tls:\n    certFlie: c.pem\n").unwrap_err();
        assert_eq!(errs[0].field, "server.tls.certFlie");
        assert!(
            errs[0].message.contains("did you mean `certFile`?"),
            "{errs:?}"
        );
    }

    #[test]
    fn sizes_read_kb_as_1024_bytes() {
        let s = parse(
            "limits:\n  maxBodySize: 8KB\n  maxMetadataBytes: 2 kb\n  blockingParseThreshold: 1MB\n  maxBodyBytesInFlight: 1GB\nquotas:\n  maxBodyBytes: 3M\n",
        )
        .unwrap();
        assert_eq!(s.limits.max_body_size, 8 * 1024);
        assert_eq!(s.limits.max_metadata_bytes, 2 * 1024);
        assert_eq!(s.limits.blocking_parse_threshold, 1024 * 1024);
        assert_eq!(s.limits.resources.max_body_bytes_in_flight, 1 << 30);
        assert_eq!(s.quota.max_body_bytes, 3 * 1024 * 1024);
        assert_eq!(parse_size("1KB"), parse_size("1KiB"));
    }

    #[test]
    fn durations_take_every_humantime_spelling_and_bare_seconds() {
        let s = parse(
            "limits:\n  headerTimeout: 1m30s\n  bodyTimeout: 2 min\n  idleTimeout: 7\n  bodyMemoryWait: 1500ms\nactors:\n  requestTimeout: '250ms'\n  healthInterval: 1h\nserver:\n  reloadInterval: 0s\n  shutdownTimeout: 3s 500ms\nquotas:\n  refusalDelay: 20ms\n",
        )
        .unwrap();
        assert_eq!(s.limits.header_timeout, Duration::from_secs(90));
        assert_eq!(s.limits.body_timeout, Duration::from_secs(120));
        assert_eq!(s.limits.idle_timeout, Duration::from_secs(7));
        assert_eq!(
            s.limits.resources.body_memory_wait,
            Duration::from_millis(1500)
        );
        assert_eq!(s.actors.request_timeout, Duration::from_millis(250));
        assert_eq!(s.actors.health_interval, Duration::from_secs(3600));
        assert_eq!(s.server.reload_interval, Duration::ZERO);
        assert_eq!(s.server.shutdown_timeout, Duration::from_millis(3500));
        assert_eq!(s.quota.refusal_delay, Duration::from_millis(20));
        let errs = parse("limits:\n  headerTimeout: 0s\n").unwrap_err();
        assert_eq!(errs[0].field, "limits.headerTimeout");
        assert_eq!(errs[0].message, "must be greater than zero");
    }

    #[test]
    fn bad_values_of_every_kind_are_reported_together() {
        let errs = parse(
            "limits:\n  maxBodySize: 4Xi\n  blockingParseThreshold: much\n  headerTimeout: later\n  bodyMemoryWait: 2m\nactors:\n  healthInterval: never\n  restartAfterFailedPings: 0\nserver:\n  reloadInterval: sometimes\nquotas:\n  refusalDelay: 5s\n  maxBodyBytes: 1.5Mi\n",
        )
        .unwrap_err();
        let mut fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        fields.sort_unstable();
        assert_eq!(
            fields,
            [
                "actors.healthInterval",
                "actors.restartAfterFailedPings",
                "limits.blockingParseThreshold",
                "limits.bodyMemoryWait",
                "limits.headerTimeout",
                "limits.maxBodySize",
                "quotas.maxBodyBytes",
                "quotas.refusalDelay",
                "server.reloadInterval",
            ],
            "{errs:?}"
        );
        let shown: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert!(
            shown.contains(&"mecha.yaml: limits.maxBodySize: '4Xi' has an unknown unit".to_owned()),
            "{shown:?}"
        );
    }
}
