//! `GET /v1.0-alpha1/mecha/portability[?app=ID][&target=TYPE]`: the portability report as
//! JSON. An app reads its own report with its API token; the operator reads any app's with
//! the metrics token (`Authorization: Bearer` or `dapr-api-token`), naming the app. Without
//! `target`, the answer judges every registered store type, most portable first.

use actix_web::{HttpRequest, HttpResponse};
use serde_json::{Value, json};

use super::respond;
use super::router::query_pairs;
use crate::capabilities::portability::Report;
use crate::error::{Error, ErrorKind};
use crate::gateway::{AppId, Gateway};
use crate::model::Operation;

/// Who asks.
pub enum Reader<'a> {
    /// An app, with its own token: it reads only its own report.
    App(&'a AppId),
    /// The operator, with the metrics token: it names the app.
    Operator,
}

/// The token an operator presents: `Authorization: Bearer <token>` (as Prometheus sends it),
/// or the `dapr-api-token` header.
pub fn operator_token(req: &HttpRequest) -> Option<&str> {
    let h = req.headers();
    h.get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| {
            h.get(super::handlers::API_TOKEN)
                .and_then(|v| v.to_str().ok())
        })
}

/// The report for `reader`, from the route's query string.
pub fn serve(gw: &Gateway, query: &str, reader: Reader<'_>) -> Result<HttpResponse, Error> {
    let bad = |m: String| Error::malformed(Operation::Other, m);
    let (mut app, mut target) = (None, None);
    for (k, v) in query_pairs(query) {
        match k.as_str() {
            "app" => app = app.or(Some(v)),
            "target" => target = target.or(Some(v)),
            _ => {}
        }
    }
    let catalog = gw.catalog();
    let app: AppId = match (reader, app) {
        (Reader::App(caller), Some(a)) if a.as_str() != caller.as_ref() => {
            return Err(Error::new(ErrorKind::Unauthorized, Operation::Other).detail(format!(
                "the token is app {caller}'s: an app reads only its own portability report, not {a}'s"
            )));
        }
        (Reader::App(caller), _) => caller.clone(),
        (Reader::Operator, Some(a)) if catalog.usage().knows(&a) => AppId::from(a.as_str()),
        (Reader::Operator, Some(a)) => return Err(bad(format!("unknown app '{a}'"))),
        (Reader::Operator, None) => {
            return Err(bad(
                "the query parameter 'app' is required with the metrics token".into(),
            ));
        }
    };
    let target = target.filter(|t| !t.is_empty());
    let reports = catalog.portability(&app, target.as_deref()).map_err(bad)?;
    let body = match (target, reports.as_slice()) {
        (Some(_), [one]) => report_json(&app, one),
        _ => json!({
            "app": app.as_ref(),
            "targets": reports.iter().map(|r| report_json(&app, r)).collect::<Vec<_>>(),
        }),
    };
    Ok(respond::json_bytes(
        serde_json::to_vec(&body).unwrap_or_default(),
        &[],
    ))
}

/// One target's report: the overall verdict, one per store the app used, and every gap.
fn report_json(app: &AppId, r: &Report) -> Value {
    let stores: Vec<Value> = r
        .stores
        .iter()
        .map(|s| {
            json!({
                "store": s.store,
                "requests": s.requests,
                "verdict": s.verdict.as_str(),
                "summary": s.summary,
            })
        })
        .collect();
    let gaps: Vec<Value> = r
        .gaps
        .iter()
        .map(|g| {
            json!({
                "store": g.store,
                "operation": g.operation.metric_label(),
                "kind": g.kind.as_str(),
                "name": g.name,
                "now": g.now.as_str(),
                "target": g.target.as_str(),
                "count": g.count,
            })
        })
        .collect();
    json!({
        "app": app.as_ref(),
        "target": r.target,
        "requests": r.requests,
        "portable": r.verdict.is_portable(),
        "verdict": r.verdict.as_str(),
        "summary": r.summary,
        "stores": stores,
        "gaps": gaps,
    })
}
