//! Dapr resiliency documents (`kind: Resiliency`) → the effective policy of each store.
//!
//! Files are the same `.yaml`/`.yml` files of the resources path as components (any name,
//! several documents per file). Mecha reads Dapr's format unchanged: `spec.policies.timeouts`,
//! `retries` (`constant`, `exponential`), `circuitBreakers`, and
//! `spec.targets.components.<store>.outbound`, with Dapr's default policy names
//! (`DefaultStatestoreComponentOutboundRetryPolicy` and its fallbacks). Unlike daprd, every
//! part Mecha would not apply is a load error, each listed: `apps`/`actors` targets,
//! `inbound`, `matching`, unknown fields, policy names that do not exist, targets naming no
//! configured store, and `trip` conditions with unknown variables.
//!
//! `scopes` is read and reported: the policies of a store are shared by every app that uses
//! the store (one breaker per store, as daprd has one per component), so a scoped document
//! applies when any of its apps is served and `mecha check` shows the scope it came with.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_norway::{Mapping, Value};

use super::ConfigError;
use crate::resilience::{Backoff, BreakerSettings, RetryPolicy, TripCondition};

/// The effective resiliency of one store.
#[derive(Debug, Clone, Default)]
pub struct StoreResiliency {
    /// Per-attempt timeout and its policy name.
    pub timeout: Option<(String, Duration)>,
    /// Retry policy.
    pub retry: Option<RetryPolicy>,
    /// Circuit breaker.
    pub breaker: Option<BreakerSettings>,
    /// Where these came from (`file: document name`, and the scopes if any).
    pub source: Option<String>,
    /// The `metadata.name` of every `kind: Resiliency` document read (in order), the same
    /// for every store: `dapr_resiliency_loaded` counts each. Not part of a store's
    /// resiliency (equality ignores it): a document added for another store changes nothing
    /// here.
    pub resources: Vec<String>,
}

/// Two stores' resiliency are the same when their policies, where they came from, and the
/// name their series carry are.
impl PartialEq for StoreResiliency {
    fn eq(&self, other: &Self) -> bool {
        self.timeout == other.timeout
            && self.retry == other.retry
            && self.breaker == other.breaker
            && self.source == other.source
            && self.resource_name() == other.resource_name()
    }
}

impl Eq for StoreResiliency {}

impl StoreResiliency {
    /// daprd's `name` label of this store's series: the `metadata.name` of the last
    /// Resiliency decoded, or empty when the store has no policy (and so no series).
    pub fn resource_name(&self) -> &str {
        let any = self.timeout.is_some() || self.retry.is_some() || self.breaker.is_some();
        match self.resources.last() {
            Some(name) if any => name,
            _ => "",
        }
    }

    /// One line per policy kind, as `mecha check` prints them.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        match &self.timeout {
            Some((n, d)) => {
                let _ = writeln!(s, "  timeout: {n} = {} per attempt", fmt_dur(*d));
            }
            None => s.push_str("  timeout: none (the request timeout bounds each call)\n"),
        }
        match &self.retry {
            Some(r) => {
                let how = match r.backoff {
                    Backoff::Constant(d) => format!("constant {}", fmt_dur(d)),
                    Backoff::Exponential { max_interval } => format!(
                        "exponential from 500ms x1.5, max interval {}, +/-50% jitter",
                        fmt_dur(max_interval)
                    ),
                };
                let max = r
                    .max_retries
                    .map_or("unlimited".to_owned(), |m| m.to_string());
                let _ = writeln!(
                    s,
                    "  retry: {} = {how}, max retries {max}, within the request timeout; \
                     only reads and never-sent writes",
                    r.name
                );
            }
            None => s.push_str("  retry: none\n"),
        }
        match &self.breaker {
            Some(b) => {
                let _ = writeln!(
                    s,
                    "  circuitBreaker: {} = trip '{}', open {}, {} half-open probe(s), counts cleared {}",
                    b.name,
                    b.trip,
                    fmt_dur(b.timeout),
                    b.max_requests,
                    if b.interval.is_zero() {
                        "never".to_owned()
                    } else {
                        format!("every {}", fmt_dur(b.interval))
                    }
                );
            }
            None => s.push_str("  circuitBreaker: none\n"),
        }
        if let Some(src) = &self.source {
            let _ = writeln!(s, "  from: {src}");
        }
        s
    }
}

fn fmt_dur(d: Duration) -> String {
    format!("{d:?}")
}

/// Parses a Dapr duration: digits only are milliseconds, otherwise Go's syntax (signed
/// decimal numbers with `ns`, `us`, `µs`, `ms`, `s`, `m`, `h`, combinable: `1h30m`, `1.5s`).
pub fn parse_dapr_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t
            .parse::<u64>()
            .map(Duration::from_millis)
            .map_err(|e| format!("'{s}': {e}"));
    }
    let bad = || format!("'{s}' is not a duration (examples: \"500\" = 500 ms, \"2s\", \"1m30s\")");
    let mut rest = t.strip_prefix('+').unwrap_or(t);
    if rest.is_empty() || rest.starts_with('-') {
        return Err(bad());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let num: f64 = rest[..n].parse().map_err(|_| bad())?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let secs = match &rest[..u] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += num * secs;
        rest = &rest[u..];
    }
    Duration::try_from_secs_f64(total).map_err(|_| bad())
}

#[derive(Default)]
struct Policies {
    timeouts: BTreeMap<String, (Duration, String)>,
    retries: BTreeMap<String, (RetryPolicy, String)>,
    breakers: BTreeMap<String, (BreakerSettings, String)>,
}

struct Target {
    timeout: Option<String>,
    retry: Option<String>,
    breaker: Option<String>,
    file: PathBuf,
    source: String,
}

/// Reads every `kind: Resiliency` document of `files` and resolves the policy of each store
/// in `stores`. Returns every problem found.
pub fn parse_resiliency(
    files: &[(&Path, &str)],
    stores: &[String],
) -> Result<BTreeMap<String, StoreResiliency>, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut policies = Policies::default();
    let mut targets: BTreeMap<String, Target> = BTreeMap::new();
    let mut resources = Vec::new();
    for (file, text) in files {
        for (i, doc) in serde_norway::Deserializer::from_str(text).enumerate() {
            let Ok(value) = <Value as serde::Deserialize>::deserialize(doc) else {
                // Syntax errors are reported by the component loader.
                break;
            };
            let Value::Mapping(m) = value else { continue };
            if m.get("kind").and_then(Value::as_str) != Some("Resiliency") {
                continue;
            }
            let mut err = |field: String, msg: String| {
                errors.push(ConfigError::new(
                    file,
                    format!("document {}: {field}", i + 1),
                    msg,
                ));
            };
            read_document(file, &m, &mut policies, &mut targets, &mut err);
            resources.push(
                m.get("metadata")
                    .and_then(|x| x.get("name"))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            );
        }
    }
    // Resolve targets and defaults for every store.
    let mut out = BTreeMap::new();
    for (name, t) in &targets {
        if !stores.iter().any(|s| s == name) {
            errors.push(ConfigError::new(
                &t.file,
                format!("spec.targets.components.{name}"),
                format!("no state store named '{name}' is configured"),
            ));
        }
    }
    for store in stores {
        let mut r = resolve_store(store, &policies, &targets, &mut errors);
        r.resources = resources.clone();
        out.insert(store.clone(), r);
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// The policies of `store`: its target's, or Dapr's default names; a name that no policy
/// has is reported.
fn resolve_store(
    store: &str,
    policies: &Policies,
    targets: &BTreeMap<String, Target>,
    errors: &mut Vec<ConfigError>,
) -> StoreResiliency {
    let mut r = StoreResiliency::default();
    let (timeout, retry, breaker, file, source) = match targets.get(store) {
        Some(t) => (
            t.timeout.clone(),
            t.retry.clone(),
            t.breaker.clone(),
            Some(t.file.clone()),
            Some(t.source.clone()),
        ),
        None => (
            default_name(&policies.timeouts, "Timeout"),
            default_name(&policies.retries, "Retry"),
            default_name(&policies.breakers, "CircuitBreaker"),
            None,
            None,
        ),
    };
    let mut missing = |kind: &str, n: &str| {
        errors.push(ConfigError::new(
            file.as_deref().unwrap_or(Path::new("<resiliency>")),
            format!("spec.targets.components.{store}.outbound.{kind}"),
            format!("no {kind} policy named '{n}' is defined"),
        ));
    };
    let mut from = Vec::new();
    if let Some(n) = timeout {
        match policies.timeouts.get(&n) {
            Some((d, src)) => {
                r.timeout = Some((n.clone(), *d));
                from.push(src.clone());
            }
            None => missing("timeout", &n),
        }
    }
    if let Some(n) = retry {
        match policies.retries.get(&n) {
            Some((p, src)) => {
                r.retry = Some(p.clone());
                from.push(src.clone());
            }
            None => missing("retry", &n),
        }
    }
    if let Some(n) = breaker {
        match policies.breakers.get(&n) {
            Some((b, src)) => {
                r.breaker = Some(b.clone());
                from.push(src.clone());
            }
            None => missing("circuitBreaker", &n),
        }
    }
    if let Some(s) = source {
        from.insert(0, s);
    }
    from.dedup();
    r.source = (!from.is_empty()).then(|| from.join("; "));
    r
}

/// Dapr's default lookup for a state store: the first defined of these names.
fn default_name<T>(map: &BTreeMap<String, T>, kind: &str) -> Option<String> {
    [
        format!("DefaultStatestoreComponentOutbound{kind}Policy"),
        format!("DefaultComponentOutbound{kind}Policy"),
        format!("DefaultComponent{kind}Policy"),
        format!("Default{kind}Policy"),
    ]
    .into_iter()
    .find(|n| map.contains_key(n))
}

fn key_str(k: &Value) -> String {
    match k {
        Value::String(s) => s.clone(),
        other => format!("{other:?}"),
    }
}

/// Reports every key of `m` outside `known`.
fn unknown_keys(
    m: &Mapping,
    known: &[&str],
    at: &str,
    err: &mut dyn FnMut(String, String),
    why: &dyn Fn(&str) -> String,
) {
    for k in m.keys() {
        let k = key_str(k);
        if !known.contains(&k.as_str()) {
            err(format!("{at}{k}"), why(&k));
        }
    }
}

fn map_at<'a>(
    m: &'a Mapping,
    key: &str,
    at: &str,
    err: &mut dyn FnMut(String, String),
) -> Option<&'a Mapping> {
    match m.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::Mapping(x)) => Some(x),
        Some(_) => {
            err(format!("{at}{key}"), "must be a mapping".into());
            None
        }
    }
}

fn duration_at(v: &Value, field: String, err: &mut dyn FnMut(String, String)) -> Option<Duration> {
    match v {
        Value::String(s) => match parse_dapr_duration(s) {
            Ok(d) => Some(d),
            Err(e) => {
                err(field, e);
                None
            }
        },
        Value::Number(n) => {
            err(
                field,
                format!(
                    "durations are strings: quote it (\"{n}\" = {n} ms, or \"{n}s\"); daprd rejects the whole file too"
                ),
            );
            None
        }
        _ => {
            err(field, "must be a duration string such as \"5s\"".into());
            None
        }
    }
}

fn dur_field(
    m: &Mapping,
    key: &str,
    default: Duration,
    at: &str,
    err: &mut dyn FnMut(String, String),
) -> Option<Duration> {
    match m.get(key) {
        None | Some(Value::Null) => Some(default),
        Some(v) => duration_at(v, format!("{at}{key}"), err),
    }
}

fn read_document(
    file: &Path,
    m: &Mapping,
    policies: &mut Policies,
    targets: &mut BTreeMap<String, Target>,
    err: &mut dyn FnMut(String, String),
) {
    unknown_keys(
        m,
        &["apiVersion", "kind", "metadata", "spec", "scopes"],
        "",
        err,
        &|_| "unknown field".into(),
    );
    let source = document_source(file, m, err);
    let Some(spec) = map_at(m, "spec", "", err) else {
        err("spec".into(), "missing".into());
        return;
    };
    unknown_keys(spec, &["policies", "targets"], "spec.", err, &|_| {
        "unknown field".into()
    });
    if let Some(p) = map_at(spec, "policies", "spec.", err) {
        read_policies(p, &source, policies, err);
    }
    if let Some(t) = map_at(spec, "targets", "spec.", err) {
        unknown_keys(t, &["components"], "spec.targets.", err, &|k| {
            format!(
                "Mecha serves state stores only: '{k}' targets are not supported (remove them, or keep them in daprd's own file)"
            )
        });
        if let Some(c) = map_at(t, "components", "spec.targets.", err) {
            for (k, v) in c {
                let store = key_str(k);
                if let Some(target) = read_target(file, &source, &store, v, err) {
                    targets.insert(store, target);
                }
            }
        }
    }
}

/// How a document's policies are named in the log: its file and name, and its scopes.
fn document_source(file: &Path, m: &Mapping, err: &mut dyn FnMut(String, String)) -> String {
    let doc_name = m
        .get("metadata")
        .and_then(|x| x.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("<unnamed>")
        .to_owned();
    let scopes: Vec<String> = match m.get("scopes") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Sequence(s)) => s
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        Some(_) => {
            err("scopes".into(), "must be a list of app IDs".into());
            Vec::new()
        }
    };
    if scopes.is_empty() {
        format!("{} ({doc_name})", file.display())
    } else {
        format!(
            "{} ({doc_name}, scopes: {}; shared by every app using the store)",
            file.display(),
            scopes.join(", ")
        )
    }
}

/// `spec.policies`: the named timeouts, retries and circuit breakers.
fn read_policies(
    p: &Mapping,
    source: &str,
    policies: &mut Policies,
    err: &mut dyn FnMut(String, String),
) {
    unknown_keys(
        p,
        &["timeouts", "retries", "circuitBreakers"],
        "spec.policies.",
        err,
        &|_| "unknown field".into(),
    );
    if let Some(t) = map_at(p, "timeouts", "spec.policies.", err) {
        for (k, v) in t {
            let name = key_str(k);
            if let Some(d) = duration_at(v, format!("spec.policies.timeouts.{name}"), err) {
                policies.timeouts.insert(name, (d, source.to_owned()));
            }
        }
    }
    if let Some(t) = map_at(p, "retries", "spec.policies.", err) {
        for (k, v) in t {
            let name = key_str(k);
            if let Some(r) = read_retry(&name, v, err) {
                policies.retries.insert(name, (r, source.to_owned()));
            }
        }
    }
    if let Some(t) = map_at(p, "circuitBreakers", "spec.policies.", err) {
        for (k, v) in t {
            let name = key_str(k);
            if let Some(b) = read_breaker(&name, v, err) {
                policies.breakers.insert(name, (b, source.to_owned()));
            }
        }
    }
}

/// `spec.targets.components.<store>`: the policy names of the store's outbound calls.
fn read_target(
    file: &Path,
    source: &str,
    store: &str,
    v: &Value,
    err: &mut dyn FnMut(String, String),
) -> Option<Target> {
    let at = format!("spec.targets.components.{store}.");
    let Value::Mapping(dirs) = v else {
        err(at, "must be a mapping".into());
        return None;
    };
    unknown_keys(dirs, &["outbound"], &at, err, &|k| {
        if k == "inbound" {
            "state stores have no inbound calls: 'inbound' is not supported".into()
        } else {
            "unknown field".into()
        }
    });
    let mut target = Target {
        timeout: None,
        retry: None,
        breaker: None,
        file: file.to_owned(),
        source: source.to_owned(),
    };
    if let Some(o) = map_at(dirs, "outbound", &at, err) {
        let at = format!("{at}outbound.");
        unknown_keys(
            o,
            &["timeout", "retry", "circuitBreaker"],
            &at,
            err,
            &|_| "unknown field (known: timeout, retry, circuitBreaker)".into(),
        );
        let mut name = |key: &str| match o.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                err(format!("{at}{key}"), "must be a policy name".into());
                None
            }
        };
        target.timeout = name("timeout");
        target.retry = name("retry");
        target.breaker = name("circuitBreaker");
    }
    Some(target)
}

fn read_retry(name: &str, v: &Value, err: &mut dyn FnMut(String, String)) -> Option<RetryPolicy> {
    let at = format!("spec.policies.retries.{name}.");
    let Value::Mapping(m) = v else {
        err(at, "must be a mapping".into());
        return None;
    };
    let mut ok = true;
    unknown_keys(
        m,
        &["policy", "duration", "maxInterval", "maxRetries"],
        &at,
        err,
        &|k| {
            if k == "matching" {
                "retry 'matching' is not supported: state-store errors carry no status codes (daprd ignores it for state stores); remove it".into()
            } else {
                "unknown field (known: policy, duration, maxInterval, maxRetries)".into()
            }
        },
    );
    if m.contains_key("matching") {
        ok = false;
    }
    let policy = match m.get("policy") {
        None | Some(Value::Null) => "constant".to_owned(),
        Some(Value::String(s)) => s.to_ascii_lowercase(),
        Some(_) => {
            err(
                format!("{at}policy"),
                "must be constant or exponential".into(),
            );
            return None;
        }
    };
    let backoff = retry_backoff(m, &policy, &at, &mut ok, err);
    let max_retries = max_retries(m, &at, &mut ok, err);
    let backoff = backoff?;
    ok.then(|| RetryPolicy {
        name: name.to_owned(),
        backoff,
        max_retries,
    })
}

/// A retry's backoff by its `policy` (constant or exponential) and the fields it allows.
fn retry_backoff(
    m: &Mapping,
    policy: &str,
    at: &str,
    ok: &mut bool,
    err: &mut dyn FnMut(String, String),
) -> Option<Backoff> {
    match policy {
        "constant" => {
            if m.contains_key("maxInterval") {
                err(
                    format!("{at}maxInterval"),
                    "only exponential policies have maxInterval".into(),
                );
                *ok = false;
            }
            dur_field(m, "duration", Duration::from_secs(5), at, err).map(Backoff::Constant)
        }
        "exponential" => {
            if m.contains_key("duration") {
                err(
                    format!("{at}duration"),
                    "exponential policies start at 500ms; 'duration' applies to constant policies only".into(),
                );
                *ok = false;
            }
            dur_field(m, "maxInterval", Duration::from_secs(60), at, err)
                .map(|max_interval| Backoff::Exponential { max_interval })
        }
        other => {
            err(
                format!("{at}policy"),
                format!("unknown retry policy '{other}' (constant or exponential)"),
            );
            None
        }
    }
}

/// A retry's `maxRetries`: `None` (unlimited) for absent or -1.
fn max_retries(
    m: &Mapping,
    at: &str,
    ok: &mut bool,
    err: &mut dyn FnMut(String, String),
) -> Option<u32> {
    match m.get("maxRetries") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => match n.as_i64() {
            Some(-1) => None,
            Some(n) if n >= 0 => Some(u32::try_from(n).unwrap_or(u32::MAX)),
            _ => {
                err(
                    format!("{at}maxRetries"),
                    "must be -1 (unlimited) or a count >= 0".into(),
                );
                *ok = false;
                None
            }
        },
        Some(_) => {
            err(format!("{at}maxRetries"), "must be an integer".into());
            *ok = false;
            None
        }
    }
}

fn read_breaker(
    name: &str,
    v: &Value,
    err: &mut dyn FnMut(String, String),
) -> Option<BreakerSettings> {
    let at = format!("spec.policies.circuitBreakers.{name}.");
    let Value::Mapping(m) = v else {
        err(at, "must be a mapping".into());
        return None;
    };
    unknown_keys(
        m,
        &["maxRequests", "interval", "timeout", "trip"],
        &at,
        err,
        &|_| "unknown field (known: maxRequests, interval, timeout, trip)".into(),
    );
    let mut ok = true;
    let max_requests = match m.get("maxRequests") {
        None | Some(Value::Null) => 1,
        Some(Value::Number(n)) => match n.as_u64() {
            Some(0) => 1,
            Some(n) => u32::try_from(n).unwrap_or(u32::MAX),
            None => {
                err(format!("{at}maxRequests"), "must be a count >= 0".into());
                ok = false;
                1
            }
        },
        Some(_) => {
            err(format!("{at}maxRequests"), "must be an integer".into());
            ok = false;
            1
        }
    };
    let interval = dur_field(m, "interval", Duration::ZERO, &at, err);
    let timeout = dur_field(m, "timeout", Duration::from_secs(60), &at, err).map(|t| {
        if t.is_zero() {
            Duration::from_secs(60)
        } else {
            t
        }
    });
    let trip = match m.get("trip") {
        None | Some(Value::Null) => Some(TripCondition::parse("consecutiveFailures > 5").ok()?),
        Some(Value::String(s)) => match TripCondition::parse(s) {
            Ok(t) => Some(t),
            Err(e) => {
                err(format!("{at}trip"), format!("'{s}': {e}"));
                None
            }
        },
        Some(_) => {
            err(
                format!("{at}trip"),
                "must be a condition such as \"consecutiveFailures >= 5\"".into(),
            );
            None
        }
    };
    let (interval, timeout, trip) = (interval?, timeout?, trip?);
    ok.then(|| BreakerSettings {
        name: name.to_owned(),
        max_requests,
        interval,
        timeout,
        trip,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of Dapr's documentation, as users have it.
    pub(crate) const DAPR_EXAMPLE: &str = r#"apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: myresiliency
scopes:
  - myapp
spec:
  policies:
    timeouts:
      general: 5s
      important: 60s
      largeResponse: 10s
    retries:
      pubsubRetry:
        policy: constant
        duration: 5s
        maxRetries: 10
      retryForever:
        policy: exponential
        maxInterval: 15s
        maxRetries: -1
      important:
        policy: constant
        duration: "500"
        maxRetries: 30
      DefaultRetryPolicy:
        policy: exponential
        maxInterval: 2s
        maxRetries: 3
    circuitBreakers:
      simpleCB:
        maxRequests: 1
        timeout: 30s
        trip: consecutiveFailures >= 5
      pubsubCB:
        maxRequests: 1
        interval: 8s
        timeout: 45s
        trip: consecutiveFailures > 8
  targets:
    components:
      statestore1:
        outbound:
          timeout: general
          retry: retryForever
          circuitBreaker: simpleCB
"#;

    fn parse(
        text: &str,
        stores: &[&str],
    ) -> Result<BTreeMap<String, StoreResiliency>, Vec<ConfigError>> {
        let stores: Vec<String> = stores.iter().map(|s| (*s).to_owned()).collect();
        parse_resiliency(&[(Path::new("res.yaml"), text)], &stores)
    }

    #[test]
    fn dapr_example_loads_with_targets_and_defaults() {
        let r = parse(DAPR_EXAMPLE, &["statestore1", "other"]).unwrap();
        let s = &r["statestore1"];
        assert_eq!(s.timeout, Some(("general".into(), Duration::from_secs(5))));
        let b = s.breaker.as_ref().unwrap();
        assert_eq!((b.max_requests, b.timeout), (1, Duration::from_secs(30)));
        assert_eq!(s.retry.as_ref().unwrap().max_retries, None);
        // The untargeted store takes Dapr's default names.
        let o = &r["other"];
        assert_eq!(o.retry.as_ref().unwrap().name, "DefaultRetryPolicy");
        assert_eq!(o.breaker, None);
        assert!(s.describe().contains("trip 'consecutiveFailures >= 5'"));
    }

    #[test]
    fn durations_follow_dapr() {
        assert_eq!(parse_dapr_duration("1500"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_dapr_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_dapr_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_dapr_duration("250ms"), Ok(Duration::from_millis(250)));
        for bad in ["", "5d", "-1s", "s", "1.2.3s"] {
            assert!(parse_dapr_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn unsupported_parts_are_all_listed() {
        let text = r#"kind: Resiliency
metadata: {name: r}
spec:
  policies:
    timeouts:
      t: 5
    retries:
      r:
        policy: fibonacci
      m:
        policy: constant
        matching:
          httpStatusCodes: "500"
    circuitBreakers:
      cb:
        trip: consecutiveFailure >= 5
        maxRequest: 2
  targets:
    apps:
      a: {retry: r}
    components:
      nostore:
        outbound: {retry: m}
      statestore:
        inbound: {timeout: t}
        outbound: {circuitBreaker: missing}
"#;
        let errs = parse(text, &["statestore"]).unwrap_err();
        let all: Vec<String> = errs.iter().map(ToString::to_string).collect();
        let joined = all.join("\n");
        for want in [
            "timeouts.t: durations are strings",
            "retries.r.policy: unknown retry policy 'fibonacci'",
            "retries.m.matching",
            "circuitBreakers.cb.trip: 'consecutiveFailure >= 5': unknown variable",
            "circuitBreakers.cb.maxRequest: unknown field",
            "spec.targets.apps: Mecha serves state stores only",
            "statestore.inbound: state stores have no inbound calls",
            "spec.targets.components.nostore: no state store named 'nostore'",
            "outbound.circuitBreaker: no circuitBreaker policy named 'missing'",
        ] {
            assert!(joined.contains(want), "missing {want:?} in\n{joined}");
        }
    }

    #[test]
    fn later_documents_win_and_other_kinds_are_ignored() {
        let text = "kind: Component\nmetadata: {name: x}\n---\nkind: Resiliency\nspec:\n  policies:\n    timeouts:\n      DefaultTimeoutPolicy: 1s\n---\nkind: Resiliency\nspec:\n  policies:\n    timeouts:\n      DefaultTimeoutPolicy: 2s\n";
        let r = parse(text, &["s"]).unwrap();
        assert_eq!(
            r["s"].timeout,
            Some(("DefaultTimeoutPolicy".into(), Duration::from_secs(2)))
        );
    }
}
