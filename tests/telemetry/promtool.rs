//! `promtool check metrics` (Prometheus's own linter, Debian's `prometheus` package) on a
//! scrape of the real binary after a traffic mix: every family has HELP text, the process
//! families and `mecha_build_info` are there, daprd's resiliency families carry daprd's
//! labels. The only findings allowed are the `_total`/`_count` suffix remarks on the
//! counters that keep daprd's names (so Dapr's dashboards work); anything else fails, and a
//! missing promtool fails too (`scripts/services.sh` installs it).

use std::io::{Read, Write};
use std::process::{Command, Stdio};

use crate::support::binary::Process;

/// Counters named as daprd names them, without `_total`: promtool remarks on their suffix.
const DAPRD_COUNTERS: &[&str] = &[
    "dapr_component_state_count",
    "dapr_http_server_request_count",
    "dapr_resiliency_count",
    "dapr_resiliency_loaded",
];

const COMPONENTS: &str = "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: statestore\nspec:\n  type: state.in-memory\n  version: v1\n---\napiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata:\n  name: promres\nspec:\n  policies:\n    timeouts:\n      t: 2s\n    retries:\n      r:\n        policy: constant\n        duration: 10ms\n        maxRetries: 2\n    circuitBreakers:\n      cb:\n        maxRequests: 1\n        timeout: 5s\n        trip: consecutiveFailures >= 5\n  targets:\n    components:\n      statestore:\n        outbound:\n          timeout: t\n          retry: r\n          circuitBreaker: cb\n";

/// One HTTP/1.1 request on a fresh connection; returns the status and the body.
fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let status = answer[9..12].parse().unwrap();
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.to_owned())
}

/// `/metrics` of a running binary after saves, reads, a lint finding and an ETag conflict.
pub fn scrape_after_traffic() -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.yaml"), COMPONENTS).unwrap();
    let p = Process::spawn(
        &["run", "--resources-path", dir.path().to_str().unwrap()],
        &[],
    );
    let save = r#"[{"key":"k","value":1}]"#;
    assert_eq!(http(&p.http, "POST", "/v1.0/state/statestore", save).0, 204);
    let lint = "/v1.0/state/statestore/k?metadata.ttlInSecond=5";
    assert_eq!(http(&p.http, "GET", lint, "").0, 200);
    let conflict = r#"[{"key":"k","value":2,"etag":"999"}]"#;
    assert_eq!(
        http(&p.http, "POST", "/v1.0/state/statestore", conflict).0,
        409
    );
    let (status, text) = http(&p.metrics, "GET", "/metrics", "");
    assert_eq!(status, 200, "{text}");
    text
}

/// promtool's findings on `text` (one per line; empty when it is clean).
fn promtool(text: &str) -> Vec<String> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is not installed: `source scripts/services.sh && ensure_promtool`");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let findings: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .chain(String::from_utf8_lossy(&out.stderr).lines())
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect();
    assert_eq!(
        out.status.success(),
        findings.is_empty(),
        "promtool's exit status and output disagree: {findings:?}"
    );
    findings
}

#[test]
fn promtool_finds_nothing_but_daprd_s_counter_names() {
    let text = scrape_after_traffic();
    let findings = promtool(&text);
    for f in &findings {
        let family = f.split_whitespace().next().unwrap_or_default();
        let suffix_remark = f.contains("should have \"_total\" suffix")
            || f.contains("should not have \"_count\" suffix");
        assert!(
            DAPRD_COUNTERS.contains(&family) && suffix_remark,
            "promtool: {f}\n{text}"
        );
    }
    // Every family has HELP text (promtool would say "no help text" otherwise).
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let family = line.split_whitespace().nth(2).unwrap();
        assert!(
            text.contains(&format!("# HELP {family} ")),
            "{family} has no HELP"
        );
    }
}

/// The value of the first sample of `name` whose line contains every one of `labels`.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| labels.iter().all(|x| l.contains(x)))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
fn process_build_and_daprd_resiliency_families_are_exported() {
    let text = scrape_after_traffic();
    for family in [
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_start_time_seconds",
        "process_threads",
    ] {
        assert!(sample(&text, family, &[]).is_some(), "no {family}:\n{text}");
    }
    let commit = text
        .lines()
        .find(|l| l.starts_with("mecha_build_info{"))
        .and_then(|l| l.split("commit=\"").nth(1)?.split('"').next())
        .unwrap_or_else(|| panic!("no mecha_build_info:\n{text}"));
    assert!(
        commit == "unknown"
            || (commit.len() == 12 && commit.chars().all(|c| c.is_ascii_hexdigit())),
        "{commit}"
    );
    assert!(text.contains(&format!(
        "mecha_build_info{{version=\"{}\",commit=\"{commit}\"}} 1",
        env!("CARGO_PKG_VERSION")
    )));
    // daprd's labels: app_id, name (the Resiliency resource), policy, namespace,
    // flow_direction, target, status; four breaker states.
    let who = [
        "app_id=\"default\"",
        "name=\"promres\"",
        "namespace=\"\"",
        "flow_direction=\"outbound\"",
        "target=\"Statestore_statestore\"",
    ];
    for (status, want) in [
        ("closed", 1.0),
        ("open", 0.0),
        ("half-open", 0.0),
        ("unknown", 0.0),
    ] {
        let st = format!("status=\"{status}\"");
        let labels: Vec<&str> = who.iter().copied().chain([st.as_str()]).collect();
        assert_eq!(
            sample(&text, "dapr_resiliency_cb_state", &labels),
            Some(want),
            "{status}:\n{text}"
        );
    }
    let loaded = ["app_id=\"default\"", "name=\"promres\"", "namespace=\"\""];
    assert_eq!(sample(&text, "dapr_resiliency_loaded", &loaded), Some(1.0));
    // Three store calls, each looking up the three policies.
    for (policy, status) in [("timeout", ""), ("retry", ""), ("circuitbreaker", "closed")] {
        let p = format!("policy=\"{policy}\"");
        let st = format!("status=\"{status}\"");
        let labels: Vec<&str> = who
            .iter()
            .copied()
            .chain([p.as_str(), st.as_str()])
            .collect();
        assert_eq!(
            sample(&text, "dapr_resiliency_count", &labels),
            Some(3.0),
            "{policy}:\n{text}"
        );
    }
}
