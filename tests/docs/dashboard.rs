//! The Grafana dashboard in `deploy/grafana/mecha.json`, the book's metrics section
//! (`docs/src/operations/observability.md`) and
//! `/metrics` agree: after a traffic mix, every metric the dashboard queries and every Mecha
//! family the README lists has samples in `/metrics`, and each panel's selectors and `by`
//! clauses name labels those samples have. The dashboard's shape: import asks for the data
//! source (`__inputs`), totals over the time range are stat panels, rates of things that are
//! not requests are not in `reqps`, and breakers, reloads and 429s have panels.

use std::collections::{BTreeMap, BTreeSet};

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

/// A store whose server is not there (nothing listens on the port), under a breaker that
/// opens at the first failure and a retry: its failures feed the resiliency families.
const DOWN_STORE: &str = "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: down\nspec:\n  type: state.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    value: 127.0.0.1:23998\n  - name: dialTimeout\n    value: 200ms\n---\napiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata:\n  name: dashres\nspec:\n  policies:\n    retries:\n      once:\n        policy: constant\n        duration: 10ms\n        maxRetries: 1\n    circuitBreakers:\n      cb:\n        maxRequests: 1\n        timeout: 30s\n        trip: consecutiveFailures >= 1\n  targets:\n    components:\n      down:\n        outbound:\n          retry: once\n          circuitBreaker: cb\n";

/// A traffic mix: native calls (one with metadata), an ETag conflict, an unknown route, a
/// gRPC read, failing calls on a store that is down (a retry, a breaker opening).
async fn traffic_mix() -> support::Mecha {
    let m = TestMecha::memory().yaml(DOWN_STORE).start().await;
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
    for _ in 0..2 {
        assert_eq!(
            m.get(&format!("/v1.0/state/down/{key}")).await.status(),
            500
        );
    }
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
    m
}

#[actix_rt::test]
async fn dashboard_readme_and_metrics_agree() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dashboard = dashboard();
    let mut qs = Vec::new();
    queries(&dashboard, &mut qs);
    let dashboard_names = metric_names(&qs.join("\n"));
    assert!(dashboard_names.len() >= 10, "{dashboard_names:?}");

    let readme =
        std::fs::read_to_string(root.join("docs/src/operations/observability.md")).unwrap();
    let readme_names: Vec<String> = metric_names(&readme)
        .into_iter()
        .filter(|n| n.starts_with("mecha_"))
        .collect();
    assert!(readme_names.len() >= 8, "{readme_names:?}");

    let m = traffic_mix().await;
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
            "{family} is not in the observability chapter"
        );
    }
}

fn dashboard() -> Value {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(root.join("deploy/grafana/mecha.json")).unwrap())
        .expect("the dashboard is JSON")
}

/// Each series name of a scrape with the label names its samples carry.
fn scraped_labels(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let labels = out.entry(line[..name_end].to_owned()).or_default();
        let Some(mut rest) = line[name_end..].strip_prefix('{') else {
            continue;
        };
        // name="value" pairs; values may hold commas and escaped quotes.
        while let Some((name, after)) = rest.split_once("=\"") {
            labels.insert(name.trim_start_matches(',').to_owned());
            let mut end = 0;
            let bytes = after.as_bytes();
            while bytes[end] != b'"' {
                end += if bytes[end] == b'\\' { 2 } else { 1 };
            }
            rest = &after[end + 1..];
        }
    }
    out
}

/// The selectors of a query: each metric name with the label names its matchers use.
fn selectors(query: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for name in metric_names(query) {
        for (at, _) in query.match_indices(name.as_str()) {
            let after = &query[at + name.len()..];
            let boundary = !after.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_');
            if !boundary {
                continue;
            }
            let labels = after
                .strip_prefix('{')
                .and_then(|m| m.split_once('}'))
                .map(|(m, _)| {
                    m.split(',')
                        .filter_map(|x| x.split(['=', '!']).next())
                        .map(|x| x.trim().to_owned())
                        .filter(|x| !x.is_empty())
                        .collect()
                })
                .unwrap_or_default();
            out.push((name.clone(), labels));
        }
    }
    out
}

/// The label names of a query's `by (...)` clauses.
fn by_labels(query: &str) -> Vec<String> {
    query
        .split("by (")
        .skip(1)
        .filter_map(|s| s.split_once(')'))
        .flat_map(|(l, _)| l.split(',').map(|x| x.trim().to_owned()))
        .collect()
}

#[actix_rt::test]
async fn each_panel_names_series_and_labels_a_scrape_has() {
    let m = traffic_mix().await;
    let scraped = scraped_labels(&m.metrics().await);
    let d = dashboard();
    for panel in d["panels"].as_array().unwrap() {
        let title = panel["title"].as_str().unwrap();
        let mut qs = Vec::new();
        queries(&panel["targets"], &mut qs);
        assert!(!qs.is_empty(), "{title}: no query");
        for q in &qs {
            let sels = selectors(q);
            assert!(!sels.is_empty(), "{title}: {q} names no series");
            let mut seen = BTreeSet::new();
            for (name, labels) in &sels {
                let have = scraped
                    .get(name)
                    .unwrap_or_else(|| panic!("{title}: no {name} in the scrape"));
                for l in labels {
                    assert!(
                        have.contains(l),
                        "{title}: {name} has no label {l}: {have:?}"
                    );
                }
                seen.extend(have.iter().cloned());
            }
            for l in by_labels(q) {
                assert!(seen.contains(&l), "{title}: `by ({l})` but {seen:?}");
            }
        }
    }
}

#[test]
fn the_dashboard_asks_for_its_data_source_and_shows_what_operators_need() {
    let d = dashboard();
    let inputs = d["__inputs"].as_array().expect("__inputs");
    let input = inputs
        .iter()
        .find(|i| i["type"] == "datasource" && i["pluginId"] == "prometheus")
        .expect("a Prometheus data source input");
    let uid = format!("${{{}}}", input["name"].as_str().unwrap());
    let mut all = Vec::new();
    queries(&d, &mut all);
    for panel in d["panels"].as_array().unwrap() {
        let title = panel["title"].as_str().unwrap();
        assert_eq!(panel["datasource"]["uid"], uid.as_str(), "{title}");
        let mut qs = Vec::new();
        queries(&panel["targets"], &mut qs);
        // A total over the dashboard's range is one number per series: a stat.
        if qs.iter().all(|q| q.contains("[$__range]")) {
            assert_eq!(panel["type"], "stat", "{title}");
        }
        // Requests per second only for request counters.
        if panel["fieldConfig"]["defaults"]["unit"] == "reqps" {
            let requests = [
                "dapr_http_server_request_count",
                "dapr_grpc_io_server_completed_rpcs",
                "dapr_component_state_count",
                "mecha_request_duration_seconds_count",
                "mecha_capability_decisions_total",
            ];
            for q in &qs {
                assert!(
                    metric_names(q)
                        .iter()
                        .all(|n| requests.contains(&n.as_str())),
                    "{title}: {q} counts no requests but is in reqps"
                );
            }
        }
    }
    for t in d["templating"]["list"].as_array().unwrap() {
        assert_eq!(t["datasource"]["uid"], uid.as_str(), "{t}");
    }
    let all = all.join("\n");
    for (what, needle) in [
        ("breakers", "dapr_resiliency_cb_state"),
        ("reloads", "mecha_config_reloads_total"),
        ("429s", "status=\"429\""),
        (
            "gRPC ResourceExhausted",
            "grpc_server_status=\"ResourceExhausted\"",
        ),
    ] {
        assert!(all.contains(needle), "no panel for {what}");
    }
}
