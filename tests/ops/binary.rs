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
        stdout.contains(
            "| `statestore` | state.in-memory v1 | native | native | native (max 1000) | native | native | native | emulated | ignored |"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("configuration OK: 1 state store(s)"));
}

/// Runs `mecha check` and `mecha run` on a configuration that must be refused; asserts both
/// fail and returns their stderr.
fn check_and_run_fail(components: &str, cfg: &str) -> Vec<String> {
    let ports = [
        "--http-port",
        "0",
        "--grpc-port",
        "0",
        "--metrics-port",
        "0",
    ];
    ["check", "run"]
        .into_iter()
        .map(|cmd| {
            let mut c = Command::new(BIN);
            c.args([cmd, "--resources-path", components, "--config", cfg]);
            if cmd == "run" {
                c.args(ports);
            }
            let out = c.output().unwrap();
            assert!(!out.status.success(), "{cmd} must fail");
            String::from_utf8_lossy(&out.stderr).into_owned()
        })
        .collect()
}

/// Two stores (in-memory and Redis, which connects lazily) and a policy file.
fn policy_setup(policy: &str) -> (tempfile::TempDir, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let components = dir.path().join("components");
    std::fs::create_dir(&components).unwrap();
    std::fs::write(
        components.join("stores.yaml"),
        "kind: Component\nmetadata:\n  name: mem\nspec:\n  type: state.in-memory\n---\nkind: Component\nmetadata:\n  name: cache\nspec:\n  type: state.redis\n  metadata:\n  - name: redisHost\n    value: 127.0.0.1:6379\n",
    )
    .unwrap();
    let cfg = dir.path().join("mecha.yaml");
    std::fs::write(&cfg, policy).unwrap();
    let (c, f) = (
        components.to_str().unwrap().to_owned(),
        cfg.to_str().unwrap().to_owned(),
    );
    (dir, c, f)
}

/// `mecha check` on the two stores of [`policy_setup`] with `policy` as `mecha.yaml`:
/// (exit success, stdout, stderr).
fn check_policy(policy: &str) -> (bool, String, String) {
    let (_dir, components, cfg) = policy_setup(policy);
    let out = Command::new(BIN)
        .args(["check", "--resources-path", &components, "--config", &cfg])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_prints_the_effective_matrix_after_policy() {
    let (_dir, components, cfg) = policy_setup(
        "policy:\n  default: strict\nstores:\n  cache:\n    default: reject\n    partitionKey: ignore\n",
    );
    let out = Command::new(BIN)
        .args(["check", "--resources-path", &components, "--config", &cfg])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("| `cache` | state.redis v1 | native | native | native (max 1000) | native | native | native | rejected | ignored |"),
        "{stdout}"
    );
    assert!(
        stdout.contains("| `mem` | state.in-memory v1 | native | native | native (max 1000) | native | native | native | emulated | rejected |"),
        "{stdout}"
    );
}

/// A policy that would break a guarantee stops `mecha check` and start-up, with every
/// problem listed at once, each naming the store and the capability.
#[test]
fn refused_policies_stop_check_and_start_up() {
    let (_dir, components, cfg) = policy_setup(
        "stores:\n  cache:\n    partitionKey: emulate\n  mem:\n    query: ignore\n  ghost:\n    ttl: emulate\n",
    );
    for stderr in check_and_run_fail(&components, &cfg) {
        assert!(stderr.contains("3 problem(s)"), "{stderr}");
        assert!(
            stderr.contains("stores.cache.partitionKey: store 'cache' (state.redis): capability partitionKey (PARTITION_KEY): policy 'emulate' is refused"),
            "{stderr}"
        );
        assert!(
            stderr.contains("stores.mem.query: store 'mem' (state.in-memory): capability query (QUERY_API): policy 'ignore' is refused"),
            "{stderr}"
        );
        assert!(
            stderr.contains("stores.ghost: no state store named 'ghost' is configured"),
            "{stderr}"
        );
    }
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

/// Runs `mecha check` on `files` (name, text) in a fresh directory, with `mecha.yaml` as
/// `--config` when given; (exit success, stdout, stderr).
fn check_files(
    files: &[(&str, &str)],
    mecha_yaml: Option<&str>,
    extra: &[&str],
) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let res = dir.path().join("components");
    std::fs::create_dir(&res).unwrap();
    for (name, text) in files {
        std::fs::write(res.join(name), text).unwrap();
    }
    let mut args = vec![
        "check".to_owned(),
        "--resources-path".into(),
        res.to_str().unwrap().into(),
    ];
    if let Some(text) = mecha_yaml {
        let cfg = dir.path().join("mecha.yaml");
        std::fs::write(&cfg, text).unwrap();
        args.extend(["--config".into(), cfg.to_str().unwrap().to_owned()]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let out = Command::new(BIN).args(&args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every mistake at once and one message per cause: a broken component does not also
/// produce "no state store named" for its policy; an unknown field in one section of
/// `mecha.yaml` hides no problem of another; warnings are shown with the errors; kinds,
/// fields and component metadata names get a did-you-mean.
#[test]
fn check_reports_every_mistake_once_with_warnings_and_suggestions() {
    let redis = "kind: Component\nmetadata:\n  name: cache\nspec:\n  type: state.redis\n  metadata:\n  - name: redisHost\n    value: 127.0.0.1:6379\n  - name: redisPasword\n    value: pw\n  - name: redisDB\n    value: abc\n";
    let typo = "kind: Compnent\nmetadata:\n  name: mem\nspec:\n  type: state.in-memory\n";
    let ok = "kind: Component\nmetadata:\n  name: ok\nspec:\n  type: state.in-memory\n";
    let unset = "kind: Component\nmetadata:\n  name: far\nspec:\n  type: state.redis\n  metadata:\n  - name: redisHost\n    envRef: MECHA_TEST_NEVER_SET_HOST\n";
    let cfg = "apps:\n  - id: x\n    tokn: y\nstores:\n  cache:\n    ttl: emulate\n  mem:\n    bulk: emulate\n  ghost:\n    bulk: emulate\nlimits:\n  maxBodySize: 12 parsecs\nlimts: {}\n";
    let (ok_exit, _, stderr) = check_files(
        &[
            ("a.yaml", redis),
            ("b.yaml", typo),
            ("c.yaml", ok),
            ("d.yaml", unset),
        ],
        Some(cfg),
        &[],
    );
    assert!(!ok_exit, "{stderr}");
    let problems: Vec<&str> = stderr
        .lines()
        .take_while(|l| !l.starts_with("and "))
        .filter(|l| l.starts_with("  - "))
        .collect();
    for expected in [
        "mecha.yaml: apps[0].tokn: unknown field `tokn`",
        "mecha.yaml: limts: unknown field `limts`",
        "mecha.yaml: limits.maxBodySize: '12 parsecs' has an unknown unit",
        "a.yaml: spec.metadata[2].value: 'redisDB': 'abc' is not an integer",
        "b.yaml: kind: document 1: 'Compnent' is not a kind Mecha reads: did you mean `Component`?",
        "mecha.yaml: stores.ghost: no state store named 'ghost' is configured",
        "d.yaml: spec.metadata[0].envRef: 'redisHost': environment variable MECHA_TEST_NEVER_SET_HOST is not set",
    ] {
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "{expected} not in\n{stderr}"
        );
    }
    assert_eq!(problems.len(), 7, "one message per cause:\n{stderr}");
    assert!(stderr.contains("did you mean `token`?"), "{stderr}");
    assert!(stderr.contains("did you mean `limits`?"), "{stderr}");
    assert!(stderr.contains("and 1 warning(s):"), "{stderr}");
    assert!(
        stderr.contains(
            "'redisPasword' is not a metadata field of state.redis (did you mean `redisPassword`?)"
        ),
        "{stderr}"
    );
}

/// No store at all is an error; a Dapr `kind: Configuration` given to `--config` is read for
/// its tracing, another Dapr kind there is named as such (not as a list of unknown fields);
/// `--strict` also fails on warnings.
#[test]
fn check_refuses_no_store_reads_a_dapr_configuration_and_strict_fails_on_warnings() {
    let (ok, _, stderr) = check_files(&[], None, &[]);
    assert!(!ok);
    assert!(stderr.contains("no state store is configured"), "{stderr}");
    let sub = "kind: Subscription\nmetadata:\n  name: s\n";
    let (ok, _, stderr) = check_files(&[("s.yaml", sub)], None, &[]);
    assert!(!ok);
    assert!(stderr.contains("no state store is configured"), "{stderr}");
    assert!(
        stderr.contains("\"Subscription\" skipped"),
        "warnings shown: {stderr}"
    );

    let mem = "kind: Component\nmetadata:\n  name: s\nspec:\n  type: state.in-memory\n";
    // daprd's --config file: read for its tracing.
    let dapr = "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: daprConfig\nspec:\n  tracing:\n    samplingRate: \"0.5\"\n    otel:\n      endpointAddress: collector:4318\n      isSecure: false\n      protocol: http\n";
    let (ok, stdout, stderr) = check_files(&[("s.yaml", mem)], Some(dapr), &[]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains(
            "Traces: OTLP http/protobuf to http://collector:4318/v1/traces, sampling 0.5"
        ),
        "{stdout}"
    );
    // Another Dapr kind given to --config is named as such, not as unknown fields.
    let (ok, _, stderr) = check_files(
        &[("s.yaml", mem)],
        Some(
            mem.replace("kind:", "apiVersion: dapr.io/v1alpha1\nkind:")
                .as_str(),
        ),
        &[],
    );
    assert!(!ok);
    assert!(stderr.contains("1 problem(s)"), "{stderr}");
    assert!(
        stderr.contains("this is a Dapr `kind: Component` file, not Mecha's configuration"),
        "{stderr}"
    );
    assert!(!stderr.contains("unknown field `apiVersion`"), "{stderr}");

    let warned = "kind: Component\nmetadata:\n  name: s\nspec:\n  type: state.in-memory\n  metadata:\n  - name: sweepIntervl\n    value: 1s\n";
    let (ok, stdout, _) = check_files(&[("s.yaml", warned)], None, &[]);
    assert!(ok, "warnings alone pass without --strict");
    assert!(stdout.contains("did you mean `sweepInterval`?"), "{stdout}");
    let (ok, _, stderr) = check_files(&[("s.yaml", warned)], None, &["--strict"]);
    assert!(!ok);
    assert!(
        stderr.contains("1 warning(s) and --strict was given"),
        "{stderr}"
    );
    let (ok, _, _) = check_files(&[("s.yaml", mem)], None, &["--strict"]);
    assert!(ok, "no warning, --strict passes");
}

/// A listen address that is not this machine's is blamed on `--listen-address`, not on a
/// port flag.
#[test]
fn a_foreign_listen_address_is_blamed_on_its_flag() {
    let out = Command::new(BIN)
        .args([
            "run",
            "--listen-address",
            "192.0.2.1",
            "--http-port",
            "0",
            "--grpc-port",
            "0",
            "--metrics-port",
            "0",
            "--resources-path",
            "config/components",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("(set with --listen-address: not an address of this machine)"),
        "{stderr}"
    );
    assert!(!stderr.contains("set with --grpc-port"), "{stderr}");
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

/// A capability an app requires that a store in its scope cannot give stops `mecha check`
/// and start-up, naming the app, the store and the capability, every problem at once.
#[test]
fn unmet_app_requirements_stop_check_and_start_up() {
    let (_dir, components, cfg) = policy_setup(
        "apps:\n  - id: orders\n    token: t1\n    requires: [ETAG, QUERY_API]\nstores:\n  mem:\n    lint: reject\n    query: reject\n  cache:\n    query: reject\n",
    );
    for stderr in check_and_run_fail(&components, &cfg) {
        assert!(stderr.contains("2 problem(s)"), "{stderr}");
        for store in ["'mem' (state.in-memory)", "'cache' (state.redis)"] {
            assert!(
                stderr.contains(&format!(
                    "apps[0].requires: app 'orders' requires QUERY_API, but store {store} in its scope has it rejected"
                )),
                "{stderr}"
            );
        }
    }
}

/// Met requirements pass `mecha check`, which prints each app's lint mode and requirements.
#[test]
fn check_prints_met_app_requirements() {
    let (ok, stdout, stderr) = check_policy(
        "apps:\n  - id: orders\n    token: t1\n    requires: [ETAG, TTL]\n    stores:\n      cache:\n        lint: reject\nstores:\n  mem:\n    lint: off\n",
    );
    assert!(ok, "{stdout}{stderr}");
    assert!(
        stdout.contains(
            "app 'orders' on store 'mem': lint off, requires ETAG=native, TTL=native (met)"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "app 'orders' on store 'cache': lint reject, requires ETAG=native, TTL=native (met)"
        ),
        "{stdout}"
    );
}

/// `mecha check` prints each app's portability targets with what each target type serves,
/// and refuses an unknown type, naming the field and the nearest known type.
#[test]
fn check_prints_portability_targets_and_refuses_unknown_types() {
    let (ok, stdout, stderr) = check_policy(
        "apps:\n  - id: orders\n    token: t1\n    portableTo: [state.jetstream, state.redis]\n    portability: reject\n",
    );
    assert!(ok, "{stdout}{stderr}");
    assert!(
        stdout.contains(
            "app 'orders' must stay portable to state.jetstream, state.redis (portability: reject):"
        ),
        "{stdout}"
    );
    let js = stdout
        .lines()
        .find(|l| l.starts_with("  state.jetstream: "))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        js.contains("transaction") && js.contains("rejected"),
        "{js}"
    );

    let (ok, _, stderr) = check_policy(
        "apps:\n  - id: orders\n    token: t1\n    portableTo: [state.redis, state.jetstrem]\n",
    );
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains("apps[0].portableTo[1]")
            && stderr.contains("did you mean 'state.jetstream'"),
        "{stderr}"
    );
}

/// `mecha check` prints each store's effective resiliency, and lists every problem of a bad
/// resiliency file instead of starting.
#[test]
fn check_prints_the_effective_resiliency_and_refuses_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path();
    std::fs::write(
        c.join("stores.yaml"),
        "kind: Component\nmetadata:\n  name: mem\nspec:\n  type: state.in-memory\n",
    )
    .unwrap();
    std::fs::write(
        c.join("resiliency.yaml"),
        "apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata:\n  name: r\nspec:\n  policies:\n    circuitBreakers:\n      DefaultCircuitBreakerPolicy:\n        maxRequests: 2\n        timeout: 10s\n        trip: consecutiveFailures >= 5\n",
    )
    .unwrap();
    let run = || {
        Command::new(BIN)
            .args(["check", "--resources-path", c.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let out = run();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("circuitBreaker: DefaultCircuitBreakerPolicy = trip 'consecutiveFailures >= 5', open 10s, 2 half-open probe(s)"),
        "{stdout}"
    );
    std::fs::write(
        c.join("resiliency.yaml"),
        "kind: Resiliency\nspec:\n  policies:\n    timeouts:\n      t: 5\n  targets:\n    actors:\n      a: {}\n",
    )
    .unwrap();
    let out = run();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("timeouts.t: durations are strings"),
        "{stderr}"
    );
    assert!(stderr.contains("spec.targets.actors"), "{stderr}");
}

/// Credentials in host and URL values never reach `mecha check`'s report or the start-up
/// error: only the host part of `user:pw@host` is echoed.
#[test]
fn credentials_in_host_values_are_never_echoed() {
    let dir = tempfile::tempdir().unwrap();
    let components = dir.path().join("components");
    std::fs::create_dir(&components).unwrap();
    std::fs::write(
        components.join("b.yaml"),
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: b\nspec:\n  type: state.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    value: \"ops:S3cretPw@a:1,ops:S3cretPw@b:2\"\n",
    )
    .unwrap();
    let components = components.to_str().unwrap();
    for args in [
        vec!["check", "--resources-path", components],
        vec![
            "run",
            "--resources-path",
            components,
            "--http-port",
            "0",
            "--grpc-port",
            "0",
            "--metrics-port",
            "0",
        ],
    ] {
        let out = Command::new(BIN)
            .args(&args)
            .env("RUST_LOG", "trace")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "{args:?}: {text}");
        assert!(text.contains("redisHost"), "{args:?}: {text}");
        assert!(text.contains("'***@a:1,***@b:2'"), "{args:?}: {text}");
        assert!(
            !text.contains("S3cretPw"),
            "{args:?} echoed a password: {text}"
        );
    }
}
