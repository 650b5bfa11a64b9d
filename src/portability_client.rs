//! The client side of `mecha portability`: one GET of `/v1.0-alpha1/mecha/portability` on a
//! running Mecha (plain HTTP or HTTPS, with the app's token or the operator's metrics token),
//! and the rendering of its answer as text with the verdict as an exit status.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use ureq::Agent;
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig, TlsProvider, parse_pem};

/// What to ask.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// Mecha's HTTP base URL, `http://host:port` or `https://host:port`.
    pub url: String,
    /// The app; `None`: the caller's (required with `metrics_token`).
    pub app: Option<String>,
    /// The target store type; `None`: every registered type.
    pub target: Option<String>,
    /// The app's API token (`dapr-api-token`).
    pub token: Option<String>,
    /// The operator's metrics token (`Authorization: Bearer`): any app's report.
    pub metrics_token: Option<String>,
    /// PEM file of the certificate authorities to trust for `https://` (default: the
    /// system's).
    pub cacert: Option<PathBuf>,
}

/// How long the whole exchange may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The verdict as an exit status: 0 portable, 1 not portable, 2 could not tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Portable (or, for a listing of every type, the listing was printed).
    Portable = 0,
    /// Not portable: calls would be rejected or lose something.
    NotPortable = 1,
    /// Unreachable, unauthorised, unknown app or type, or an answer that is not a report.
    Unknown = 2,
}

/// The roots to trust for `https://`: the certificates of `cacert`, or the system's
/// (webpki's bundled roots when the system has none).
fn root_certs(cacert: Option<&PathBuf>) -> Result<RootCerts, String> {
    let Some(path) = cacert else {
        let native = rustls_native_certs::load_native_certs();
        if native.certs.is_empty() {
            return Ok(RootCerts::WebPki);
        }
        let certs: Vec<Certificate<'static>> = native
            .certs
            .iter()
            .map(|c| Certificate::from_der(c.as_ref()).to_owned())
            .collect();
        return Ok(RootCerts::new_with_certs(&certs));
    };
    let pem =
        std::fs::read(path).map_err(|e| format!("cannot read --cacert {}: {e}", path.display()))?;
    let mut certs = Vec::new();
    for item in parse_pem(&pem) {
        match item.map_err(|e| format!("bad --cacert {}: {e}", path.display()))? {
            PemItem::Certificate(c) => certs.push(c.to_owned()),
            _ => continue,
        }
    }
    if certs.is_empty() {
        return Err(format!("--cacert {} holds no certificate", path.display()));
    }
    Ok(RootCerts::new_with_certs(&certs))
}

/// The report's URL without its query: `base` with the report's path.
fn report_url(q: &Query) -> Result<String, String> {
    let base = q.url.trim_end_matches('/');
    let Some((scheme, rest)) = base.split_once("://") else {
        return Err(format!(
            "--url '{}' must start with http:// or https://",
            q.url
        ));
    };
    if !matches!(scheme, "http" | "https") || rest.is_empty() || rest.contains(['?', '#']) {
        return Err(format!(
            "--url '{}' must be http:// or https:// with a host and no query",
            q.url
        ));
    }
    Ok(format!("{base}/v1.0-alpha1/mecha/portability"))
}

/// Fetches the report; `Ok` is the JSON body of a 200 answer, `Err` says what failed
/// (connection, TLS, or Mecha's error answer).
pub fn fetch(q: &Query) -> Result<String, String> {
    if q.metrics_token.is_some() && q.app.is_none() {
        return Err("--app is required with --metrics-token".into());
    }
    let url = report_url(q)?;
    let https = url.starts_with("https://");
    if !https && q.cacert.is_some() {
        return Err("--cacert is for an https:// --url".into());
    }
    let mut tls = TlsConfig::builder().provider(TlsProvider::Rustls);
    if https {
        tls = tls.root_certs(root_certs(q.cacert.as_ref())?);
    }
    let agent: Agent = Agent::config_builder()
        .tls_config(tls.build())
        .timeout_global(Some(TIMEOUT))
        .http_status_as_error(false)
        .build()
        .into();
    let mut req = agent.get(&url);
    if let Some(app) = &q.app {
        req = req.query("app", app);
    }
    if let Some(target) = &q.target {
        req = req.query("target", target);
    }
    if let Some(t) = &q.token {
        req = req.header("dapr-api-token", t);
    }
    if let Some(t) = &q.metrics_token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let mut resp = req
        .call()
        .map_err(|e| format!("request to {} failed: {}", q.url, chain(&e)))?;
    let status = resp.status();
    let text = resp
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER)
        .read_to_string()
        .map_err(|e| format!("reading the answer failed: {}", chain(&e)))?;
    if status.is_success() {
        Ok(text)
    } else {
        Err(format!("Mecha answered {status}: {text}"))
    }
}

/// The largest answer read (a report lists at most a few hundred gaps).
const MAX_ANSWER: u64 = 16 * 1024 * 1024;

/// An error with its causes, `a: b: c`.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let _ = write!(out, ": {s}");
        source = s.source();
    }
    out
}

/// The outcome of a report body (one target, or a listing of every type).
pub fn outcome(body: &str) -> Outcome {
    match serde_json::from_str::<Value>(body) {
        Ok(v) if v.get("targets").is_some() => Outcome::Portable,
        Ok(v) => match v["portable"].as_bool() {
            Some(true) => Outcome::Portable,
            Some(false) => Outcome::NotPortable,
            None => Outcome::Unknown,
        },
        Err(_) => Outcome::Unknown,
    }
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

/// Renders the JSON answer as text: for one target, a header, the verdict per store, one
/// line per gap and the overall verdict; for every type, one line each, most portable first.
pub fn render(body: &str) -> Result<String, String> {
    let v: Value =
        serde_json::from_str(body).map_err(|e| format!("the answer is not JSON: {e}"))?;
    let mut out = String::new();
    if let Some(targets) = v["targets"].as_array() {
        let _ = writeln!(
            out,
            "app {}: verdict per store type, most portable first",
            text(&v["app"])
        );
        for t in targets {
            let _ = writeln!(
                out,
                "  {:<24} {:<18} {}",
                text(&t["target"]),
                text(&t["verdict"]),
                text(&t["summary"])
            );
        }
        return Ok(out);
    }
    let _ = writeln!(
        out,
        "app {} -> {}: {} request(s) since start",
        text(&v["app"]),
        text(&v["target"]),
        v["requests"].as_u64().unwrap_or(0),
    );
    let gaps = v["gaps"].as_array().map(Vec::as_slice).unwrap_or_default();
    for s in v["stores"].as_array().into_iter().flatten() {
        let store = text(&s["store"]);
        let _ = writeln!(
            out,
            "  store {store}: {} request(s), {}",
            s["requests"].as_u64().unwrap_or(0),
            text(&s["summary"])
        );
        for g in gaps.iter().filter(|g| text(&g["store"]) == store) {
            let _ = writeln!(
                out,
                "    {:<12} {:<10} {:<18} {:>8} -> {:<8} x{}",
                text(&g["operation"]),
                text(&g["kind"]),
                text(&g["name"]),
                text(&g["now"]),
                text(&g["target"]),
                g["count"].as_u64().unwrap_or(0)
            );
        }
    }
    let _ = writeln!(out, "{}", text(&v["summary"]));
    Ok(out)
}
