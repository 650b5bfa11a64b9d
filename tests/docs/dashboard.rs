//! The Grafana dashboard in `deploy/grafana/mecha.json`, the README's metrics section and
//! `/metrics` agree: after a traffic mix, every metric the dashboard queries and every Mecha
//! family the README lists has samples in `/metrics`.

use crate::support;

use mecha::gateway::grpc::proto::runtime::GetStateRequest;
use mecha::gateway::grpc::proto::runtime::dapr_client::DaprClient;
use serde_json::{Value, json};
use support::{TestMecha, unique};
use tonic::transport::Channel;

/// Every `dapr_*` / `mecha_*` name in `text`.
fn metric_names(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if !text.is_char_boundary(i) {
            i += 1;
            continue;
        }
        let starts = text[i..].starts_with("dapr_") || text[i..].starts_with("mecha_");
        let boundary = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        if starts && boundary {
            let end = text[i..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .map_or(text.len(), |e| i + e);
            out.push(text[i..end].to_owned());
            i = end;
        } else {
            i += 1;
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Every query string of the dashboard (panel targets and template variables).
fn queries(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("expr" | "query", Value::String(s)) => out.push(s.clone()),
                    _ => queries(x, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| queries(x, out)),
        _ => {}
    }
}

#[actix_rt::test]
async fn dashboard_readme_and_metrics_agree() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("deploy/grafana/mecha.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    let mut qs = Vec::new();
    queries(&dashboard, &mut qs);
    let dashboard_names = metric_names(&qs.join("\n"));
    assert!(dashboard_names.len() >= 10, "{dashboard_names:?}");

    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let start = readme
        .find("### Metrics (port 9090")
        .expect("metrics section");
    let end = start
        + readme[start..]
            .find("\n### Portability")
            .expect("section end");
    let readme_names: Vec<String> = metric_names(&readme[start..end])
        .into_iter()
        .filter(|n| n.starts_with("mecha_"))
        .collect();
    assert!(readme_names.len() >= 8, "{readme_names:?}");

    // A traffic mix: native calls (one with metadata), an ETag conflict, an unknown route, a gRPC read.
    let m = TestMecha::memory().start().await;
    let key = unique("dash");
    m.save("statestore", &key, json!(1)).await;
    assert_eq!(
        m.get(&format!("/v1.0/state/statestore/{key}?metadata.custom=1"))
            .await
            .status(),
        200
    );
    let r = m
        .post(
            "/v1.0/state/statestore",
            json!([{"key": key, "value": 2, "etag": "999"}]).to_string(),
        )
        .await;
    assert_eq!(r.status(), 409);
    assert_eq!(m.get("/nowhere").await.status(), 404);
    let ch = Channel::from_shared(format!("http://{}", m.running.grpc_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let _ = DaprClient::new(ch)
        .get_state(GetStateRequest {
            store_name: "nope".into(),
            key: key.clone(),
            ..GetStateRequest::default()
        })
        .await;
    let metrics = m.metrics().await;
    let exported: Vec<&str> = metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let has = |name: &str| {
        exported.iter().any(|e| {
            *e == name
                || e.strip_prefix(name)
                    .is_some_and(|s| ["_bucket", "_count", "_sum"].contains(&s))
        })
    };
    for n in dashboard_names.iter().chain(&readme_names) {
        assert!(
            has(n),
            "{n} is queried or documented but not in /metrics:\n{metrics}"
        );
    }
    // Every Mecha family the dashboard shows is documented.
    for n in dashboard_names.iter().filter(|n| n.starts_with("mecha_")) {
        let family = ["_bucket", "_count", "_sum"]
            .iter()
            .find_map(|s| n.strip_suffix(s))
            .unwrap_or(n);
        assert!(
            readme_names.iter().any(|r| r == family),
            "{family} is not in the README"
        );
    }
}
