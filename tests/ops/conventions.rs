//! daprd's conventions on the real binary: `DAPR_HTTP_PORT`, `DAPR_GRPC_PORT`,
//! `--dapr-http-port`, `--dapr-grpc-port` and `--log-as-json` accepted with a stated
//! precedence (flag, `MECHA_*`, `DAPR_*`, default); a fatal error printed once; the lint log
//! line's fields as values, never Rust debug output; a driver's notices only at debug.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::binary::{Process, bin};

/// Starts the binary with exactly `args` and `env` (no port flags added), returns the child
/// and its first line naming `mecha listening` (or panics with what it printed).
fn listening_line(args: &[&str], env: &[(&str, &str)]) -> (Child, String) {
    let mut child = Command::new(bin())
        .args(["run", "--resources-path", "config/components"])
        .args(args)
        .env_remove("MECHA_HTTP_PORT")
        .env_remove("MECHA_GRPC_PORT")
        .env_remove("DAPR_HTTP_PORT")
        .env_remove("DAPR_GRPC_PORT")
        .env_remove("MECHA_LOG_FORMAT")
        .env("MECHA_METRICS_PORT", "0")
        .env("NO_COLOR", "1")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mecha");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        if line.contains("mecha listening") {
            std::thread::spawn(move || lines.for_each(drop));
            return (child, line);
        }
        seen.push(line);
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("mecha did not listen: {}", seen.join("\n"));
}

/// The `host:port` after `name=` in a text log line.
fn field<'a>(line: &'a str, name: &str) -> &'a str {
    line.split(&format!(" {name}="))
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no {name} in {line}"))
}

fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn daprd_port_variables_are_read_below_mecha_s_own() {
    let (child, line) = listening_line(
        &[],
        &[("DAPR_HTTP_PORT", "23101"), ("DAPR_GRPC_PORT", "23102")],
    );
    stop(child);
    assert_eq!(field(&line, "http"), "127.0.0.1:23101", "{line}");
    assert_eq!(field(&line, "grpc"), "127.0.0.1:23102", "{line}");
    // Mecha's own variables win over daprd's.
    let (child, line) = listening_line(
        &[],
        &[
            ("DAPR_HTTP_PORT", "23103"),
            ("MECHA_HTTP_PORT", "23104"),
            ("DAPR_GRPC_PORT", "23105"),
            ("MECHA_GRPC_PORT", "23106"),
        ],
    );
    stop(child);
    assert_eq!(field(&line, "http"), "127.0.0.1:23104", "{line}");
    assert_eq!(field(&line, "grpc"), "127.0.0.1:23106", "{line}");
}

#[test]
fn daprd_flag_names_are_aliases_and_win_over_every_variable() {
    let (child, line) = listening_line(
        &["--dapr-http-port", "23111", "--dapr-grpc-port", "23112"],
        &[
            ("DAPR_HTTP_PORT", "23113"),
            ("MECHA_HTTP_PORT", "23114"),
            ("DAPR_GRPC_PORT", "23115"),
            ("MECHA_GRPC_PORT", "23116"),
        ],
    );
    stop(child);
    assert_eq!(field(&line, "http"), "127.0.0.1:23111", "{line}");
    assert_eq!(field(&line, "grpc"), "127.0.0.1:23112", "{line}");
}

#[test]
fn a_bad_daprd_port_variable_is_named_and_refused() {
    let out = Command::new(bin())
        .args(["run", "--resources-path", "config/components"])
        .env_remove("MECHA_HTTP_PORT")
        .env("DAPR_HTTP_PORT", "35OO")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("invalid value '35OO' for DAPR_HTTP_PORT"),
        "{err}"
    );
}

#[test]
fn log_as_json_selects_json_over_log_format() {
    for args in [
        &["--log-as-json", "--http-port", "0", "--grpc-port", "0"][..],
        &["--log-as-json=true", "--http-port", "0", "--grpc-port", "0"][..],
    ] {
        let (child, line) = listening_line(args, &[("MECHA_LOG_FORMAT", "text")]);
        stop(child);
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(v["fields"]["message"], "mecha listening", "{line}");
    }
    let (child, line) = listening_line(
        &[
            "--log-as-json=false",
            "--http-port",
            "0",
            "--grpc-port",
            "0",
        ],
        &[],
    );
    stop(child);
    assert!(
        serde_json::from_str::<serde_json::Value>(&line).is_err(),
        "{line}"
    );
}

#[test]
fn a_fatal_error_is_printed_once() {
    let taken = std::net::TcpListener::bind("127.0.0.1:23121").unwrap();
    let out = Command::new(bin())
        .args(["run", "--resources-path", "config/components"])
        .args([
            "--http-port",
            "23121",
            "--grpc-port",
            "0",
            "--metrics-port",
            "0",
        ])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    drop(taken);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert_eq!(
        err.matches("cannot listen for HTTP on 127.0.0.1:23121 (set with --http-port)")
            .count(),
        1,
        "{err}"
    );
}

/// Waits until some line of `p`'s log contains `needle`, and returns that line.
fn wait_line(p: &Process, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(l) = p.lines().into_iter().find(|l| l.contains(needle)) {
            return l;
        }
        assert!(Instant::now() < deadline, "no '{needle}' in:\n{}", p.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One HTTP/1.1 request on a fresh connection; returns the whole answer.
fn http(addr: &str, method: &str, path: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    answer
}

#[test]
fn lint_log_lines_carry_values_not_debug_output() {
    let p = Process::spawn(&["run", "--resources-path", "config/components"], &[]);
    let get = "/v1.0/state/statestore/k?metadata.ttlInSecond=5";
    assert!(http(&p.http, "GET", get, "").starts_with("HTTP/1.1 204"));
    let unknown = wait_line(&p, "code=unknown-key");
    assert!(unknown.contains(" key=ttlInSecond "), "{unknown}");
    assert!(unknown.contains(" suggestion=ttlInSeconds "), "{unknown}");
    assert!(
        !unknown.contains("detail="),
        "an absent detail is no field: {unknown}"
    );
    let body = r#"[{"key":"k","value":1,"metadata":{"keyPrefix":"none"}}]"#;
    let answer = http(&p.http, "POST", "/v1.0/state/statestore", body);
    assert!(answer.starts_with("HTTP/1.1 204"), "{answer}");
    let level = wait_line(&p, "code=component-level-key");
    assert!(
        level.contains(" detail=\"it is component metadata and does nothing per request\""),
        "{level}"
    );
    assert!(!level.contains("suggestion="), "{level}");
    for l in [&unknown, &level] {
        assert!(!l.contains("Some(") && !l.contains("None"), "{l}");
    }
}

/// A PostgreSQL store whose schema already exists: its migration makes the server send
/// `NOTICE: relation ... already exists, skipping`.
fn postgres_components() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("pg.yaml"),
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: pg\nspec:\n  type: state.postgresql\n  version: v1\n  metadata:\n  - name: connectionString\n    value: \"host=127.0.0.1 port=5432 user=postgres password=postgres dbname=test\"\n  - name: tableName\n    value: conventions_notice\n",
    )
    .unwrap();
    dir
}

#[test]
fn driver_notices_show_only_at_debug() {
    let dir = postgres_components();
    let path = dir.path().to_str().unwrap();
    // The first start creates the schema if it is missing; from then on it exists.
    for level in ["info", "info", "debug"] {
        let mut p = Process::spawn(
            &["run", "--resources-path", path, "--log-level", level],
            &[],
        );
        wait_line(&p, "state store reachable store=pg");
        p.terminate();
        let notices: Vec<String> = p
            .lines()
            .into_iter()
            .filter(|l| l.contains("NOTICE: relation"))
            .collect();
        if level == "debug" {
            assert!(!notices.is_empty(), "no notice at debug:\n{}", p.log());
        } else {
            assert!(notices.is_empty(), "{notices:?}");
        }
    }
}
