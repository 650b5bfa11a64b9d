//! Route matching on the raw request path, as daprd's chi router does it: the *escaped*
//! path is cleaned (`//` collapses, `.`/`..` resolve, trailing `/` goes), segments are
//! matched, and only then are path parameters query-unescaped (`%2F` → `/`, `+` → space).

use actix_web::http::Method;
use smallvec::SmallVec;

/// A matched route, with parameters still escaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route<'a> {
    /// `POST|PUT /v1.0/state/{store}`.
    Save(&'a str),
    /// `GET /v1.0/state/{store}/{key}`.
    Get(&'a str, &'a str),
    /// `DELETE /v1.0/state/{store}/{key}`.
    Delete(&'a str, &'a str),
    /// `POST|PUT /v1.0/state/{store}/bulk`.
    BulkGet(&'a str),
    /// `POST|PUT /v1.0/state/{store}/transaction`.
    Transaction(&'a str),
    /// `POST|PUT /v1.0-alpha1/state/{store}/query`.
    Query(&'a str),
    /// `GET /v1.0/healthz`.
    Healthz,
    /// `GET /v1.0/healthz/outbound`.
    HealthzOutbound,
    /// `GET /livez`: Mecha's process-only liveness (never looks at a store).
    Livez,
    /// `GET /readyz`: Mecha's readiness for the platform: every store healthy.
    Readyz,
    /// `GET /v1.0/metadata`.
    GetMetadata,
    /// `PUT /v1.0/metadata/{key}`.
    PutMetadata(&'a str),
    /// `GET /v1.0-alpha1/mecha/portability`: Mecha's portability report.
    Portability,
    /// Anything else: daprd's service-invocation fallback (404 `ERR_DIRECT_INVOKE`).
    NotFound,
}

impl Route<'_> {
    /// The operation name for logs and metrics (the gRPC method name).
    pub fn name(&self) -> &'static str {
        match self {
            Route::Save(_) => "SaveState",
            Route::Get(..) => "GetState",
            Route::Delete(..) => "DeleteState",
            Route::BulkGet(_) => "GetBulkState",
            Route::Transaction(_) => "ExecuteStateTransaction",
            Route::Query(_) => "QueryStateAlpha1",
            Route::Healthz => "Healthz",
            Route::HealthzOutbound => "HealthzOutbound",
            Route::Livez => "Livez",
            Route::Readyz => "Readyz",
            Route::GetMetadata => "GetMetadata",
            Route::PutMetadata(_) => "SetMetadata",
            Route::Portability => "Portability",
            Route::NotFound => "NotFound",
        }
    }
}

/// The cleaned segments of a path: inline up to four (the most any route has), so routing a
/// request allocates nothing; a longer path (never a route) spills to the heap.
pub type Segments<'a> = SmallVec<[&'a str; 4]>;

/// Go's `path.Clean` on an absolute path: returns the cleaned segments.
pub fn clean_segments(path: &str) -> Segments<'_> {
    let mut out = Segments::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    out
}

/// Matches a method and raw (still escaped) path.
pub fn route<'a>(method: &Method, segments: &[&'a str]) -> Route<'a> {
    let write = method == Method::POST || method == Method::PUT;
    match segments {
        ["v1.0", "healthz"] if method == Method::GET => Route::Healthz,
        ["v1.0", "healthz", "outbound"] if method == Method::GET => Route::HealthzOutbound,
        ["livez"] if method == Method::GET => Route::Livez,
        ["readyz"] if method == Method::GET => Route::Readyz,
        ["v1.0", "metadata"] if method == Method::GET => Route::GetMetadata,
        ["v1.0", "metadata", key] if method == Method::PUT => Route::PutMetadata(key),
        ["v1.0", "state", store] if write => Route::Save(store),
        // Literal segments win over {key}, but only for their own methods.
        ["v1.0", "state", store, "bulk"] if write => Route::BulkGet(store),
        ["v1.0", "state", store, "transaction"] if write => Route::Transaction(store),
        ["v1.0", "state", store, key] if method == Method::GET => Route::Get(store, key),
        ["v1.0", "state", store, key] if method == Method::DELETE => Route::Delete(store, key),
        ["v1.0-alpha1", "state", store, "query"] if write => Route::Query(store),
        ["v1.0-alpha1", "mecha", "portability"] if method == Method::GET => Route::Portability,
        _ => Route::NotFound,
    }
}

/// Go's `url.QueryUnescape`: `%XX` decodes, `+` is a space, and a bad escape is an error.
pub fn query_unescape(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .filter(|h| h.iter().all(u8::is_ascii_hexdigit));
                let Some(h) = hex else {
                    let bad: String = s[i..].chars().take(3).collect();
                    return Err(format!("invalid URL escape \"{bad}\""));
                };
                let v = u8::from_str_radix(std::str::from_utf8(h).unwrap_or("00"), 16).unwrap_or(0);
                out.push(v);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| "the unescaped value is not UTF-8".to_owned())
}

/// Parses a query string into `(name, value)` pairs, unescaped (invalid escapes are kept raw).
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let dec = |s: &str| query_unescape(s).unwrap_or_else(|_| s.to_owned());
            (dec(k), dec(v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r<'a>(m: Method, path: &'a str) -> Route<'a> {
        route(&m, &clean_segments(path))
    }

    #[test]
    fn routes_match_daprd() {
        let cases: &[(Method, &str, Route<'_>)] = &[
            (Method::POST, "/v1.0/state/s", Route::Save("s")),
            (Method::PUT, "/v1.0/state/s/", Route::Save("s")),
            (Method::GET, "/v1.0/state/s", Route::NotFound),
            (Method::GET, "/v1.0/state/s/k", Route::Get("s", "k")),
            (Method::DELETE, "/v1.0/state/s/k", Route::Delete("s", "k")),
            (Method::PATCH, "/v1.0/state/s/k", Route::NotFound),
            (Method::GET, "/v1.0/state/s/bulk", Route::Get("s", "bulk")),
            (Method::POST, "/v1.0/state/s/bulk", Route::BulkGet("s")),
            (
                Method::DELETE,
                "/v1.0/state/s/transaction",
                Route::Delete("s", "transaction"),
            ),
            (
                Method::PUT,
                "/v1.0/state/s/transaction",
                Route::Transaction("s"),
            ),
            (
                Method::POST,
                "/v1.0-alpha1/state/s/query",
                Route::Query("s"),
            ),
            (Method::GET, "//v1.0//state/s/./k", Route::Get("s", "k")),
            (Method::GET, "/v1.0/state/s/x/../k", Route::Get("s", "k")),
            (Method::GET, "/v1.0/state/s/a%2Fb", Route::Get("s", "a%2Fb")),
            (Method::GET, "/v1.0/healthz", Route::Healthz),
            (
                Method::GET,
                "/v1.0/healthz/outbound",
                Route::HealthzOutbound,
            ),
            (Method::GET, "/v1.0/metadata", Route::GetMetadata),
            (Method::GET, "/livez", Route::Livez),
            (Method::GET, "/readyz/", Route::Readyz),
            (Method::POST, "/livez", Route::NotFound),
            (Method::PUT, "/v1.0/metadata/k", Route::PutMetadata("k")),
            (Method::GET, "/v2.0/state/s/k", Route::NotFound),
        ];
        for (m, path, want) in cases {
            assert_eq!(r(m.clone(), path), *want, "{m} {path}");
        }
    }

    #[test]
    fn unescape_like_go() {
        assert_eq!(query_unescape("a%2Fb").unwrap(), "a/b");
        assert_eq!(query_unescape("a+b").unwrap(), "a b");
        assert_eq!(query_unescape("%7C%7C").unwrap(), "||");
        assert!(query_unescape("%zz").is_err());
        assert!(query_unescape("%4").is_err());
        assert!(query_unescape("%ff").is_err());
    }

    #[test]
    fn query_pairs_keep_order_and_decode() {
        let p = query_pairs("metadata.ttlInSeconds=5&consistency=strong&metadata.a=x+y&&flag");
        assert_eq!(p[0], ("metadata.ttlInSeconds".into(), "5".into()));
        assert_eq!(p[2], ("metadata.a".into(), "x y".into()));
        assert_eq!(p[3], ("flag".into(), String::new()));
    }
}
