//! The client side of `mecha portability`: one GET of `/v1.0-alpha1/mecha/portability` on a
//! running Mecha (plain HTTP or HTTPS, with the app's token or the operator's metrics token),
//! and the rendering of its answer as text with the verdict as an exit status.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::Value;

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

/// The TLS configuration for `https://`: ring as the provider, the roots of `cacert` or the
/// system's.
fn tls_config(cacert: Option<&PathBuf>) -> Result<rustls::ClientConfig, String> {
    let mut roots = RootCertStore::empty();
    match cacert {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("cannot read --cacert {}: {e}", path.display()))?;
            for cert in certs {
                let cert = cert.map_err(|e| format!("bad --cacert {}: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("bad certificate in {}: {e}", path.display()))?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(native.certs);
            if added == 0 {
                return Err("no system certificate authorities found: pass --cacert".into());
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The request URL: `base` with the report's path and query.
fn report_url(q: &Query) -> Result<reqwest::Url, String> {
    let mut url = reqwest::Url::parse(&q.url).map_err(|e| format!("bad --url '{}': {e}", q.url))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "--url '{}' must start with http:// or https://",
            q.url
        ));
    }
    let path = format!(
        "{}/v1.0-alpha1/mecha/portability",
        url.path().trim_end_matches('/')
    );
    url.set_path(&path);
    {
        let mut pairs = url.query_pairs_mut();
        pairs.clear();
        if let Some(app) = &q.app {
            pairs.append_pair("app", app);
        }
        if let Some(target) = &q.target {
            pairs.append_pair("target", target);
        }
    }
    Ok(url)
}

/// Fetches the report; `Ok` is the JSON body of a 200 answer, `Err` says what failed
/// (connection, TLS, or Mecha's error answer).
pub async fn fetch(q: &Query) -> Result<String, String> {
    if q.metrics_token.is_some() && q.app.is_none() {
        return Err("--app is required with --metrics-token".into());
    }
    let url = report_url(q)?;
    let mut client = reqwest::Client::builder().timeout(TIMEOUT);
    if url.scheme() == "https" {
        client = client.tls_backend_preconfigured(tls_config(q.cacert.as_ref())?);
    } else if q.cacert.is_some() {
        return Err("--cacert is for an https:// --url".into());
    }
    let client = client
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
    let mut req = client.get(url);
    if let Some(t) = &q.token {
        req = req.header("dapr-api-token", t);
    }
    if let Some(t) = &q.metrics_token {
        req = req.bearer_auth(t);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| format!("request to {} failed: {}", q.url, chain(&e)))?;
    let status = resp.status();
    let text = resp
        .text()
        .await
        .map_err(|e| format!("reading the answer failed: {}", chain(&e)))?;
    if status.is_success() {
        Ok(text)
    } else {
        Err(format!("Mecha answered {status}: {text}"))
    }
}

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
    for s in v["stores"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "  store {:<16} {:>8} request(s)  {}",
            text(&s["store"]),
            s["requests"].as_u64().unwrap_or(0),
            text(&s["summary"])
        );
    }
    for g in v["gaps"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "    {:<12} {:<12} {:<10} {:<18} {:>8} -> {:<8} x{}",
            text(&g["store"]),
            text(&g["operation"]),
            text(&g["kind"]),
            text(&g["name"]),
            text(&g["now"]),
            text(&g["target"]),
            g["count"].as_u64().unwrap_or(0)
        );
    }
    let _ = writeln!(out, "{}", text(&v["summary"]));
    Ok(out)
}
