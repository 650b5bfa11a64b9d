//! Rendering results and errors as daprd writes them.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use serde_json::{Value, json};

use crate::capabilities::lint::Finding;
use crate::error::{Detail, Error, Wire};
use crate::model::Protocol;

const JSON: &str = "application/json";

/// `Content-Type: application/json` as a static value: a `&str` given to a header builder is
/// copied to the heap on every response.
const JSON_VALUE: HeaderValue = HeaderValue::from_static(JSON);

/// A JSON object for one rich-error detail (`google.rpc.*`, proto snake_case field names).
fn detail_json(d: &Detail) -> Value {
    const T: &str = "type.googleapis.com/google.rpc.";
    match d {
        Detail::ErrorInfo { reason, metadata } => json!({
            "@type": format!("{T}ErrorInfo"),
            "domain": crate::error::ERROR_DOMAIN,
            "metadata": metadata,
            "reason": reason,
        }),
        Detail::ResourceInfo {
            resource_type,
            resource_name,
        } => json!({
            "@type": format!("{T}ResourceInfo"),
            "description": "",
            "owner": "",
            "resource_name": resource_name,
            "resource_type": resource_type,
        }),
        Detail::BadRequest { field, description } => json!({
            "@type": format!("{T}BadRequest"),
            "field_violations": [{"description": description, "field": field}],
        }),
        Detail::Help { description, url } => json!({
            "@type": format!("{T}Help"),
            "links": [{"description": description, "url": url}],
        }),
    }
}

/// The JSON error body: legacy `{errorCode, message}`, or rich with `details`.
pub fn error_body(wire: &Wire) -> Value {
    let mut body = json!({"errorCode": wire.error_code, "message": wire.message});
    if !wire.details.is_empty() {
        body["details"] = Value::Array(wire.details.iter().map(detail_json).collect());
    }
    body
}

/// An HTTP response for an error.
pub fn error(err: &Error) -> HttpResponse {
    let wire = err.wire(Protocol::Http);
    let status =
        StatusCode::from_u16(wire.http_status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if matches!(err.kind(), crate::error::ErrorKind::Unauthorized) {
        // daprd answers a bad token with Go's http.Error: plain text, not JSON.
        return text(status, "invalid api token\n");
    }
    let mut b = HttpResponse::build(status);
    b.insert_header((CONTENT_TYPE, JSON_VALUE));
    for (name, value) in crate::gateway::annotations(err.receipt(), err.lint()) {
        if let Ok(v) = HeaderValue::from_str(&value) {
            b.insert_header((name, v));
        }
    }
    if let Some(secs) = err.retry_after() {
        b.insert_header((actix_web::http::header::RETRY_AFTER, secs.to_string()));
    }
    let mut resp = b.body(serde_json::to_vec(&error_body(&wire)).unwrap_or_default());
    resp.head_mut().set_camel_case_headers(true);
    resp
}

/// Adds a call's annotations ([`crate::gateway::annotations`]) to a response.
pub fn annotate(resp: &mut HttpResponse, receipt: Option<&str>, lint: &[Finding]) {
    for (name, value) in crate::gateway::annotations(receipt, lint) {
        if let Ok(v) = HeaderValue::from_str(&value) {
            resp.headers_mut().insert(HeaderName::from_static(name), v);
        }
    }
}

/// A plain-text response (daprd's `http.Error` shape).
pub fn text(status: StatusCode, body: &str) -> HttpResponse {
    let mut resp = HttpResponse::build(status)
        .insert_header((CONTENT_TYPE, "text/plain; charset=utf-8"))
        .insert_header(("x-content-type-options", "nosniff"))
        .body(body.to_owned());
    resp.head_mut().set_camel_case_headers(true);
    resp
}

/// `204 No Content`.
pub fn no_content() -> HttpResponse {
    HttpResponse::NoContent().finish()
}

/// A 200 with a JSON body and extra headers, written with Go-style canonical header names.
pub fn json_bytes(
    body: impl Into<bytes::Bytes>,
    headers: &[(HeaderName, HeaderValue)],
) -> HttpResponse {
    let mut b = HttpResponse::Ok();
    b.insert_header((CONTENT_TYPE, JSON_VALUE));
    for h in headers {
        b.insert_header(h.clone());
    }
    let mut resp = b.body(body.into());
    resp.head_mut().set_camel_case_headers(true);
    resp
}

/// Stored bytes as a JSON value: embedded raw when they are JSON (as daprd does), or as a
/// JSON string otherwise (daprd's encoder would fail halfway; we stay well-formed). Checking
/// and embedding borrow the bytes; nothing is copied but the output.
pub struct JsonData<'a>(pub &'a [u8]);

impl serde::Serialize for JsonData<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let raw = std::str::from_utf8(self.0)
            .ok()
            .and_then(|text| serde_json::from_str::<&serde_json::value::RawValue>(text).ok());
        match raw {
            Some(raw) => raw.serialize(s),
            None => String::from_utf8_lossy(self.0).serialize(s),
        }
    }
}

/// `value` as JSON followed by a newline, into a buffer of `capacity` bytes to start with.
pub fn to_json_line<T: serde::Serialize>(value: &T, capacity: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(capacity);
    // Serializing borrowed strings and raw JSON into a Vec cannot fail.
    serde_json::to_writer(&mut out, value).expect("JSON into memory");
    out.push(b'\n');
    out
}
