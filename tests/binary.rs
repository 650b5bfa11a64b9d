//! The `mecha` binary: `check`, flags from the environment, and graceful shutdown on SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_mecha");

/// Starts the binary on free ports and returns it with its HTTP address.
fn spawn(args: &[&str], envs: &[(&str, &str)]) -> (Child, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .envs(envs.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mecha");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        if let Some(rest) = line.split("http=").nth(1) {
            let addr = rest.split_whitespace().next().unwrap().to_owned();
            // Keep draining the log so the child never blocks on a full pipe.
            std::thread::spawn(move || lines.for_each(drop));
            return (child, addr);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("mecha did not report its address");
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "mecha did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

#[test]
fn check_prints_the_stores_and_their_capabilities() {
    let out = Command::new(BIN)
        .args(["check", "--resources-path", "config/components"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("| `statestore` | state.in-memory v1 | ✔ | ✔ |"),
        "{stdout}"
    );
    assert!(stdout.contains("configuration OK: 1 state store(s)"));
}

#[test]
fn check_lists_every_problem_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.yaml"),
        "kind: Component\nmetadata:\n  name: a\nspec:\n  type: state.nope\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("b.yml"),
        "kind: Component\nmetadata:\n  name: b\nspec:\n  type: state.in-memory\n  metadata:\n  - name: sweepInterval\n    value: never\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("ignored.txt"), "not yaml").unwrap();
    let cfg = dir.path().join("mecha.yaml");
    std::fs::write(&cfg, "limits:\n  maxBodySize: huge\n").unwrap();
    let out = Command::new(BIN)
        .args([
            "check",
            "--resources-path",
            dir.path().to_str().unwrap(),
            "--config",
            cfg.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("3 problem(s)"), "{stderr}");
    assert!(
        stderr.contains("a.yaml: spec.type: unknown state store type 'state.nope'"),
        "{stderr}"
    );
    assert!(
        stderr.contains("b.yml: spec.metadata[0].value: 'sweepInterval'"),
        "{stderr}"
    );
    assert!(
        stderr.contains("mecha.yaml: limits.maxBodySize"),
        "{stderr}"
    );
}

#[test]
fn flags_come_from_the_environment_and_port_zero_is_reported() {
    let (mut child, addr) = spawn(
        &["run"],
        &[
            ("MECHA_HTTP_PORT", "0"),
            ("MECHA_GRPC_PORT", "0"),
            ("MECHA_METRICS_PORT", "0"),
            ("MECHA_APP_ID", "envapp"),
            ("MECHA_RESOURCES_PATH", "config/components"),
        ],
    );
    let mut s = TcpStream::connect(&addr).unwrap();
    s.write_all(b"GET /v1.0/metadata HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.contains("\"id\":\"envapp\""), "{resp}");
    signal(&child, "-INT");
    assert!(wait_exit(&mut child, Duration::from_secs(10)).success());
}

#[test]
fn sigterm_finishes_in_flight_requests_then_exits_zero() {
    let (mut child, addr) = spawn(
        &[
            "--http-port",
            "0",
            "--grpc-port",
            "0",
            "--metrics-port",
            "0",
            "--resources-path",
            "config/components",
        ],
        &[],
    );
    let body = br#"[{"key":"inflight","value":{"done":true}}]"#;
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // Send the headers and half the body, then ask Mecha to stop.
    write!(
        s,
        "POST /v1.0/state/statestore HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(&body[..10]).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    signal(&child, "-TERM");
    std::thread::sleep(Duration::from_millis(300));
    // New connections are refused once shutdown has begun.
    assert!(
        TcpStream::connect(&addr).is_err(),
        "listener still accepting after SIGTERM"
    );
    s.write_all(&body[10..]).unwrap();
    let mut first = String::new();
    BufReader::new(&s).read_line(&mut first).unwrap();
    assert!(
        first.starts_with("HTTP/1.1 204"),
        "in-flight request must complete: {first:?}"
    );
    assert!(wait_exit(&mut child, Duration::from_secs(15)).success());
}
