//! The client side of `mecha portability`: one GET of `/v1.0-alpha1/mecha/portability` on a
//! running Mecha, and the rendering of its answer as text.

use std::fmt::Write as _;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

/// What to ask.
#[derive(Debug, Clone)]
pub struct Query {
    /// Mecha's HTTP base URL, `http://host:port`.
    pub url: String,
    /// The app (must be the token's app); `None`: the caller's.
    pub app: Option<String>,
    /// The target store type.
    pub target: String,
    /// The app's API token.
    pub token: Option<String>,
}

/// How long the whole exchange may take.
const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Fetches the report; `Ok` is the JSON body of a 200 answer, `Err` says what failed
/// (connection, or Mecha's error answer).
pub async fn fetch(q: &Query) -> Result<String, String> {
    tokio::time::timeout(TIMEOUT, fetch_inner(q))
        .await
        .map_err(|_| format!("no answer from {} within {TIMEOUT:?}", q.url))?
}

async fn fetch_inner(q: &Query) -> Result<String, String> {
    let base: hyper::Uri = q
        .url
        .parse()
        .map_err(|e| format!("bad --url '{}': {e}", q.url))?;
    if base.scheme_str() != Some("http") {
        return Err(format!("--url '{}' must start with http://", q.url));
    }
    let host = base
        .host()
        .ok_or_else(|| format!("--url '{}' has no host", q.url))?;
    let port = base.port_u16().unwrap_or(80);
    let enc = |s: &str| utf8_percent_encode(s, NON_ALPHANUMERIC).to_string();
    let mut path = format!(
        "{}/v1.0-alpha1/mecha/portability?target={}",
        base.path().trim_end_matches('/'),
        enc(&q.target)
    );
    if let Some(app) = &q.app {
        let _ = write!(path, "&app={}", enc(app));
    }
    let stream = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", q.url))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("cannot talk HTTP to {}: {e}", q.url))?;
    tokio::spawn(conn);
    let mut req = hyper::Request::get(path).header(hyper::header::HOST, format!("{host}:{port}"));
    if let Some(t) = &q.token {
        req = req.header("dapr-api-token", t);
    }
    let req = req
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("cannot build the request: {e}"))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("request to {} failed: {e}", q.url))?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("reading the answer failed: {e}"))?
        .to_bytes();
    let text = String::from_utf8_lossy(&body).into_owned();
    if status.is_success() {
        Ok(text)
    } else {
        Err(format!("Mecha answered {status}: {text}"))
    }
}

/// Renders the JSON report as text: a header, one line per gap, the verdict.
pub fn render(body: &str) -> Result<String, String> {
    let v: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("the answer is not JSON: {e}"))?;
    let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    let stores: Vec<String> = v["stores"]
        .as_array()
        .map(|a| a.iter().map(s).collect())
        .unwrap_or_default();
    let mut out = format!(
        "app {} -> {}: {} request(s) since start on {}\n",
        s(&v["app"]),
        s(&v["target"]),
        v["requests"].as_u64().unwrap_or(0),
        if stores.is_empty() {
            "no store".to_owned()
        } else {
            stores.join(", ")
        }
    );
    for g in v["gaps"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "  {:<10} {:<18} {:>8} -> {:<8} x{}",
            s(&g["kind"]),
            s(&g["name"]),
            s(&g["now"]),
            s(&g["target"]),
            g["count"].as_u64().unwrap_or(0)
        );
    }
    let _ = writeln!(out, "{}", s(&v["verdict"]));
    Ok(out)
}
