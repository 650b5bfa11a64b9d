//! The deployment on paper (`deploy/`) against the binary it deploys: every flag and variable
//! the manifests and the Dockerfile use is one `mecha --help` lists, every port is the one the
//! binary is told to use, the probes hit real routes (liveness never on a store), the pod is
//! Pod Security "restricted" and drains within its grace period, tokens are files, the
//! selectors and names line up, and the mounted configuration loads with Mecha's own parsers;
//! the same for `docker-compose.yml`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use mecha::config::{Settings, parse_components};
use serde_norway::Value;

const BIN: &str = env!("CARGO_BIN_EXE_mecha");

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every document of every manifest, by kind.
fn manifests() -> BTreeMap<String, Vec<Value>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes");
    let mut by_kind: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in serde_norway::Deserializer::from_str(&text) {
            let v = <Value as serde::Deserialize>::deserialize(doc)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let kind = v["kind"]
                .as_str()
                .expect("every document has a kind")
                .to_owned();
            by_kind.entry(kind).or_default().push(v);
        }
    }
    by_kind
}

fn one<'a>(m: &'a BTreeMap<String, Vec<Value>>, kind: &str) -> &'a Value {
    let docs = m
        .get(kind)
        .unwrap_or_else(|| panic!("no {kind} in deploy/kubernetes"));
    assert_eq!(docs.len(), 1, "one {kind}");
    &docs[0]
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v:?}"))
}

/// What `mecha run --help` says: long flags, and for each environment variable its flag's
/// default.
struct Help {
    flags: BTreeSet<String>,
    env_defaults: BTreeMap<String, Option<String>>,
    subcommands: BTreeSet<String>,
}

fn help() -> Help {
    let run = Command::new(BIN).args(["run", "--help"]).output().unwrap();
    assert!(run.status.success());
    let text = String::from_utf8(run.stdout).unwrap();
    let mut flags = BTreeSet::new();
    let mut env_defaults = BTreeMap::new();
    // clap prints one option per paragraph: "--flag <X>" then its help with "[env: NAME=]"
    // and "[default: V]".
    let mut current: Option<String> = None;
    let mut paragraph = String::new();
    let finish = |flag: &Option<String>, para: &str, env_defaults: &mut BTreeMap<_, _>| {
        if flag.is_none() {
            return;
        }
        if let Some(env) = para.split("[env: ").nth(1) {
            let name = env.split(['=', ']']).next().unwrap().to_owned();
            let default = para
                .split("[default: ")
                .nth(1)
                .map(|d| d.split(']').next().unwrap().to_owned());
            env_defaults.insert(name, default);
        }
    };
    for line in text.lines() {
        let t = line.trim_start();
        if let Some(rest) = t.strip_prefix("--") {
            finish(&current, &paragraph, &mut env_defaults);
            paragraph.clear();
            let flag = rest.split([' ', '=', '<']).next().unwrap().to_owned();
            flags.insert(flag.clone());
            current = Some(flag);
        } else if t.starts_with("-h,") || t.starts_with("-V,") {
            finish(&current, &paragraph, &mut env_defaults);
            paragraph.clear();
            current = None;
            let flag = t.split("--").nth(1).unwrap().split(' ').next().unwrap();
            flags.insert(flag.to_owned());
        }
        paragraph.push_str(line);
        paragraph.push(' ');
    }
    finish(&current, &paragraph, &mut env_defaults);
    let top = Command::new(BIN).arg("--help").output().unwrap();
    let top = String::from_utf8(top.stdout).unwrap();
    let subcommands = top
        .split("Commands:")
        .nth(1)
        .unwrap()
        .split("Options:")
        .next()
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect();
    Help {
        flags,
        env_defaults,
        subcommands,
    }
}

#[test]
fn help_is_parsed_as_expected() {
    let h = help();
    for f in [
        "http-port",
        "grpc-port",
        "metrics-port",
        "listen-address",
        "resources-path",
        "config",
        "log-level",
    ] {
        assert!(h.flags.contains(f), "{f}: {:?}", h.flags);
    }
    assert_eq!(h.env_defaults["MECHA_HTTP_PORT"].as_deref(), Some("3500"));
    assert!(h.subcommands.contains("run") && h.subcommands.contains("check"));
}

/// The container's environment as name → literal value (`None` when from a Secret).
fn container_env(c: &Value) -> BTreeMap<String, Option<String>> {
    c["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|e| {
            (
                s(&e["name"]).to_owned(),
                e["value"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

#[test]
fn the_deployment_uses_only_real_flags_ports_and_routes() {
    let h = help();
    let m = manifests();
    let d = one(&m, "Deployment");
    let pod = &d["spec"]["template"];
    let containers = pod["spec"]["containers"].as_sequence().unwrap();
    assert_eq!(containers.len(), 1);
    let c = &containers[0];

    // Arguments: a real subcommand, then real flags.
    let args: Vec<&str> = c["args"].as_sequence().unwrap().iter().map(s).collect();
    assert!(h.subcommands.contains(args[0]), "{args:?}");
    for a in &args[1..] {
        if let Some(flag) = a.strip_prefix("--") {
            assert!(
                h.flags.contains(flag.split('=').next().unwrap()),
                "unknown flag {a}"
            );
        }
    }

    // Every MECHA_ variable is one the binary reads; the rest feed tokenEnv/envRef (below).
    let env = container_env(c);
    for name in env
        .keys()
        .filter(|n| n.starts_with("MECHA_") && !n.starts_with("MECHA_TOKEN_"))
    {
        assert!(
            h.env_defaults.contains_key(name),
            "{name} is not read by mecha"
        );
    }
    assert_eq!(
        env["MECHA_LISTEN_ADDRESS"].as_deref(),
        Some("0.0.0.0"),
        "a pod must listen on every interface"
    );

    // Each named container port is the port the binary is told (or defaults) to use.
    let port_of = |var: &str| -> u64 {
        env.get(var)
            .cloned()
            .flatten()
            .or_else(|| h.env_defaults[var].clone())
            .unwrap()
            .parse()
            .unwrap()
    };
    let ports: BTreeMap<&str, u64> = c["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| (s(&p["name"]), p["containerPort"].as_u64().unwrap()))
        .collect();
    assert_eq!(ports["http"], port_of("MECHA_HTTP_PORT"));
    assert_eq!(ports["grpc"], port_of("MECHA_GRPC_PORT"));
    assert_eq!(ports["metrics"], port_of("MECHA_METRICS_PORT"));

    // Probes on the HTTP port: liveness and start-up on the process-only route (a store
    // outage never restarts Mecha), readiness on the stores' health (each route is served:
    // `probes_answer_on_the_binary`).
    for (probe, path) in [
        ("startupProbe", "/livez"),
        ("livenessProbe", "/livez"),
        ("readinessProbe", "/readyz"),
    ] {
        let get = &c[probe]["httpGet"];
        assert_eq!(s(&get["path"]), path, "{probe}");
        assert_eq!(s(&get["port"]), "http", "{probe}");
    }
    assert!(
        c["resources"]["requests"]["cpu"].as_str().is_some(),
        "the HPA needs a CPU request"
    );

    // Mounted paths are where the binary is told to look.
    let mounts: BTreeMap<&str, &str> = c["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| (s(&v["name"]), s(&v["mountPath"])))
        .collect();
    let resources = env["MECHA_RESOURCES_PATH"].clone().unwrap();
    let config = env["MECHA_CONFIG"].clone().unwrap();
    assert!(
        mounts.values().any(|p| *p == resources),
        "{resources} is not mounted"
    );
    assert!(
        mounts
            .values()
            .any(|p| config.starts_with(&format!("{p}/"))),
        "{config} is not mounted"
    );
}

#[test]
fn service_pdb_and_hpa_select_the_deployment() {
    let m = manifests();
    let d = one(&m, "Deployment");
    let labels = &d["spec"]["template"]["metadata"]["labels"];
    let matches = |selector: &Value| {
        let sel = selector.as_mapping().unwrap();
        assert!(!sel.is_empty());
        sel.iter().all(|(k, v)| labels[s(k)] == *v)
    };
    assert!(matches(&d["spec"]["selector"]["matchLabels"]));
    let svc = one(&m, "Service");
    assert!(matches(&svc["spec"]["selector"]));
    let container_ports: BTreeSet<&str> = d["spec"]["template"]["spec"]["containers"][0]["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| s(&p["name"]))
        .collect();
    for p in svc["spec"]["ports"].as_sequence().unwrap() {
        assert!(container_ports.contains(s(&p["targetPort"])), "{p:?}");
    }
    let pdb = one(&m, "PodDisruptionBudget");
    assert!(matches(&pdb["spec"]["selector"]["matchLabels"]));
    let hpa = one(&m, "HorizontalPodAutoscaler");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["kind"], "Deployment");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], d["metadata"]["name"]);
    let metric = &hpa["spec"]["metrics"][0]["resource"];
    assert_eq!(s(&metric["name"]), "cpu");
    let min_available = pdb["spec"]["minAvailable"].as_u64().unwrap();
    assert!(hpa["spec"]["minReplicas"].as_u64().unwrap() > min_available);
    assert!(d["spec"]["replicas"].as_u64().unwrap() > min_available);
}

#[test]
fn the_mounted_configuration_loads_and_its_secrets_exist() {
    let m = manifests();
    let d = one(&m, "Deployment");
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    let secret = one(&m, "Secret");
    let secret_name = s(&secret["metadata"]["name"]);
    let secret_keys: BTreeSet<&str> = secret["stringData"]
        .as_mapping()
        .unwrap()
        .keys()
        .map(s)
        .collect();
    // Variables filled from the Secret, each naming a key the Secret has.
    let mut from_secret = BTreeMap::new();
    for e in c["env"].as_sequence().unwrap() {
        let r = &e["valueFrom"]["secretKeyRef"];
        if r.is_mapping() {
            assert_eq!(s(&r["name"]), secret_name);
            assert!(secret_keys.contains(s(&r["key"])), "{r:?}");
            // The Secret's placeholder stands for the real value.
            let value = s(&secret["stringData"][s(&r["key"])]).to_owned();
            from_secret.insert(s(&e["name"]).to_owned(), value);
        }
    }
    let env = |k: &str| from_secret.get(k).cloned();

    // The volumes name the ConfigMaps; each ConfigMap's files load with Mecha's parsers.
    let maps: BTreeMap<&str, &Value> = m["ConfigMap"]
        .iter()
        .map(|cm| (s(&cm["metadata"]["name"]), &cm["data"]))
        .collect();
    let volumes: BTreeMap<&str, &str> = d["spec"]["template"]["spec"]["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter(|v| v["configMap"].is_mapping())
        .map(|v| (s(&v["name"]), s(&v["configMap"]["name"])))
        .collect();
    let mount_of = |path: &str| -> &Value {
        let mounts = c["volumeMounts"].as_sequence().unwrap();
        let mv = mounts
            .iter()
            .find(|v| {
                path == s(&v["mountPath"]) || path.starts_with(&format!("{}/", s(&v["mountPath"])))
            })
            .unwrap_or_else(|| panic!("{path} not mounted"));
        maps[volumes[s(&mv["name"])]]
    };
    let env_values = container_env(c);
    let components = mount_of(env_values["MECHA_RESOURCES_PATH"].as_deref().unwrap());
    let files: Vec<(String, String)> = components
        .as_mapping()
        .unwrap()
        .iter()
        .map(|(k, v)| (s(k).to_owned(), s(v).to_owned()))
        .collect();
    let refs: Vec<(&Path, &str)> = files
        .iter()
        .map(|(k, v)| (Path::new(k.as_str()), v.as_str()))
        .collect();
    let (loaded, warnings) = parse_components(&refs, &env)
        .unwrap_or_else(|e| panic!("the ConfigMap's components do not load: {e:?}"));
    assert!(warnings.is_empty(), "{warnings:?}");
    assert!(loaded.iter().any(|c| c.component_type == "state.etcd"));
    assert!(
        loaded.iter().all(|c| c.component_type != "state.in-memory"),
        "the in-memory store is per process: replicas would not share it"
    );
    let config_path = env_values["MECHA_CONFIG"].clone().unwrap();
    let file = config_path.rsplit('/').next().unwrap();
    // The token files, as kubelet would write them from the Secret, in a scratch directory.
    let (tokens_dir, mount_path) = token_files(d, secret);
    let text = s(&mount_of(&config_path)[file]).replace(
        &format!("{mount_path}/"),
        &format!("{}/", tokens_dir.path().display()),
    );
    let settings = Settings::parse_with_env(Path::new(file), &text, &env)
        .unwrap_or_else(|e| panic!("mecha.yaml in the ConfigMap does not load: {e:?}"));
    assert!(
        !settings.apps.is_empty(),
        "replicas behind a Service should authenticate apps"
    );
}

/// The Deployment's token volume (a Secret's items) written out as files: the scratch
/// directory and the mount path it stands for.
fn token_files(d: &Value, secret: &Value) -> (tempfile::TempDir, String) {
    let pod = &d["spec"]["template"]["spec"];
    let volume = pod["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["secret"].is_mapping())
        .expect("the tokens come from a Secret volume");
    assert_eq!(volume["secret"]["secretName"], secret["metadata"]["name"]);
    let mount = pod["containers"][0]["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|m| m["name"] == volume["name"])
        .expect("the Secret volume is mounted");
    assert!(
        mount.get("subPath").is_none(),
        "a subPath mount never sees a rotated Secret"
    );
    let dir = tempfile::tempdir().unwrap();
    for item in volume["secret"]["items"].as_sequence().unwrap() {
        let value = s(&secret["stringData"][s(&item["key"])]);
        std::fs::write(dir.path().join(s(&item["path"])), value).unwrap();
    }
    (dir, s(&mount["mountPath"]).to_owned())
}

/// Pod Security "restricted", a read-only root filesystem, tokens as files, and a preStop
/// delay that with `server.shutdownTimeout` fits in the grace period.
#[test]
fn the_pod_is_restricted_and_drains_within_its_grace_period() {
    let m = manifests();
    let d = one(&m, "Deployment");
    let pod = &d["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    let sc = &c["securityContext"];
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["capabilities"]["drop"][0], "ALL");
    assert!(sc["capabilities"].get("add").is_none());
    let either = |k: &str| {
        c["securityContext"]
            .get(k)
            .or(pod["securityContext"].get(k))
    };
    assert_eq!(either("runAsNonRoot"), Some(&Value::Bool(true)));
    assert_eq!(
        either("seccompProfile").map(|p| &p["type"]),
        Some(&Value::from("RuntimeDefault"))
    );
    assert!(pod["hostNetwork"].is_null() && pod["hostPID"].is_null());
    // No token in the environment: every app's token is a file.
    let env = container_env(c);
    assert!(env.keys().all(|k| !k.starts_with("MECHA_TOKEN")), "{env:?}");
    let config = m["ConfigMap"]
        .iter()
        .find_map(|cm| cm["data"]["mecha.yaml"].as_str())
        .unwrap();
    let yaml: Value = serde_norway::from_str(config).unwrap();
    for app in yaml["apps"].as_sequence().unwrap() {
        assert!(app["tokenFile"].is_string(), "{app:?}");
    }
    // preStop sleep, then SIGTERM and the drain: both within the grace period.
    let pre_stop: Vec<&str> = c["lifecycle"]["preStop"]["exec"]["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(s)
        .collect();
    assert_eq!(pre_stop[0], "/bin/sleep", "{pre_stop:?}");
    let delay: u64 = pre_stop[1].parse().unwrap();
    let shutdown = humantime::parse_duration(s(&yaml["server"]["shutdownTimeout"]))
        .unwrap()
        .as_secs();
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(delay > 0 && shutdown > 0);
    assert!(delay + shutdown <= grace, "{delay} + {shutdown} > {grace}");
    let startup = &c["startupProbe"];
    let budget =
        startup["periodSeconds"].as_u64().unwrap() * startup["failureThreshold"].as_u64().unwrap();
    assert!(budget >= 30, "start-up gets {budget}s");
}

/// The probe routes on a running binary whose store is down: `/livez` 204 (never asks a
/// store), `/readyz` 500 `ERR_HEALTH_NOT_READY` without naming the store, even with tokens
/// configured and none sent (the platform's probes send none).
#[test]
fn probes_answer_on_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let components = dir.path().join("components");
    std::fs::create_dir(&components).unwrap();
    std::fs::write(
        components.join("down.yaml"),
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: secretname\nspec:\n  type: state.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    value: 127.0.0.1:23996\n  - name: dialTimeout\n    value: 100ms\n",
    )
    .unwrap();
    let token = dir.path().join("orders");
    std::fs::write(&token, "probe-token\n").unwrap();
    let cfg = dir.path().join("mecha.yaml");
    std::fs::write(
        &cfg,
        format!(
            "apps:\n  - id: orders\n    tokenFile: {}\n",
            token.display()
        ),
    )
    .unwrap();
    let p = crate::support::binary::Process::spawn(
        &[
            "run",
            "--resources-path",
            components.to_str().unwrap(),
            "--config",
            cfg.to_str().unwrap(),
        ],
        &[],
    );
    let get = |path: &str| {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(&p.http).unwrap();
        write!(
            c,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut answer = String::new();
        c.read_to_string(&mut answer).unwrap();
        answer
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let ready = loop {
        let a = get("/readyz");
        if a.contains("ERR_HEALTH_NOT_READY") || std::time::Instant::now() > deadline {
            break a;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(ready.starts_with("HTTP/1.1 500"), "{ready}");
    assert!(ready.contains("1 state store(s) not ready"), "{ready}");
    assert!(!ready.contains("secretname"), "{ready}");
    let live = get("/livez");
    assert!(live.starts_with("HTTP/1.1 204"), "{live}");
}

/// `docker-compose.yml` (a local trial: Mecha with Redis, PostgreSQL and NATS JetStream):
/// Mecha's variables are ones it reads, its ports are published, its mounted components
/// and `mecha.yaml` load with Mecha's parsers, and each store points at a service of the
/// file.
#[test]
fn the_compose_file_matches_the_binary() {
    let h = help();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let compose: Value = serde_norway::from_str(&read("docker-compose.yml")).unwrap();
    let services = compose["services"].as_mapping().unwrap();
    let names: BTreeSet<&str> = services.keys().map(s).collect();
    for want in ["mecha", "redis", "postgres", "nats"] {
        assert!(names.contains(want), "no {want} service: {names:?}");
    }
    let nats_cmd = format!("{:?}", compose["services"]["nats"]["command"]);
    assert!(
        nats_cmd.contains("-js"),
        "NATS without JetStream: {nats_cmd}"
    );
    let mecha = &compose["services"]["mecha"];
    assert_eq!(s(&mecha["build"]["dockerfile"]), "deploy/Dockerfile");
    let env: BTreeMap<String, String> = mecha["environment"]
        .as_mapping()
        .unwrap()
        .iter()
        .map(|(k, v)| (s(k).to_owned(), s(v).to_owned()))
        .collect();
    for k in env.keys().filter(|k| k.starts_with("MECHA_")) {
        assert!(h.env_defaults.contains_key(k), "{k} is not read by mecha");
    }
    assert_eq!(env["MECHA_LISTEN_ADDRESS"], "0.0.0.0");
    let published: Vec<String> = mecha["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| s(p).rsplit(':').next().unwrap().to_owned())
        .collect();
    for var in ["MECHA_HTTP_PORT", "MECHA_GRPC_PORT", "MECHA_METRICS_PORT"] {
        let port = env
            .get(var)
            .cloned()
            .or_else(|| h.env_defaults[var].clone())
            .unwrap();
        assert!(
            published.contains(&port),
            "{var}={port} not published: {published:?}"
        );
    }
    // The mounted host directories, by their path inside the container.
    let mounts: BTreeMap<String, std::path::PathBuf> = mecha["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| {
            let (host, inside) = s(v).split_once(':').unwrap();
            (inside.trim_end_matches(":ro").to_owned(), root.join(host))
        })
        .collect();
    let components_dir = &mounts[&env["MECHA_RESOURCES_PATH"]];
    let mut files = Vec::new();
    for e in std::fs::read_dir(components_dir).unwrap() {
        let path = e.unwrap().path();
        files.push((path.clone(), std::fs::read_to_string(&path).unwrap()));
    }
    let refs: Vec<(&Path, &str)> = files
        .iter()
        .map(|(p, t)| (p.as_path(), t.as_str()))
        .collect();
    let lookup = |k: &str| env.get(k).cloned();
    let (loaded, warnings) = parse_components(&refs, &lookup)
        .unwrap_or_else(|e| panic!("the compose components do not load: {e:?}"));
    assert!(warnings.is_empty(), "{warnings:?}");
    let types: BTreeSet<&str> = loaded.iter().map(|c| c.component_type.as_str()).collect();
    for t in ["state.redis", "state.postgresql", "state.jetstream"] {
        assert!(types.contains(t), "no {t} store: {types:?}");
    }
    let all = files.iter().map(|(_, t)| t.as_str()).collect::<String>();
    for host in ["redis:6379", "nats://nats:4222"] {
        assert!(all.contains(host), "no store points at {host}");
    }
    let pg = &env["PG_CONNECTION_STRING"];
    assert!(pg.contains("host=postgres "), "{pg}");
    let password = s(&compose["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"]);
    assert!(pg.contains(&format!("password={password} ")), "{pg}");
    let config = mounts
        .iter()
        .find_map(|(inside, host)| {
            env["MECHA_CONFIG"]
                .strip_prefix(&format!("{inside}/"))
                .map(|f| host.join(f))
        })
        .expect("MECHA_CONFIG is mounted");
    let text = std::fs::read_to_string(&config).unwrap();
    Settings::parse_with_env(&config, &text, &lookup)
        .unwrap_or_else(|e| panic!("the compose mecha.yaml does not load: {e:?}"));
}

#[test]
fn the_dockerfile_matches_the_binary() {
    let h = help();
    let text = read("deploy/Dockerfile");
    assert!(text.matches("FROM ").count() >= 2, "multi-stage");
    let exposed: BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("EXPOSE "))
        .flat_map(|l| l.split_whitespace().map(str::to_owned))
        .collect();
    let mut env = BTreeMap::new();
    let mut in_env = false;
    for line in text.lines() {
        let t = line.trim();
        let body = if let Some(rest) = t.strip_prefix("ENV ") {
            rest
        } else if in_env {
            t
        } else {
            continue;
        };
        in_env = body.ends_with('\\');
        for pair in body.trim_end_matches('\\').split_whitespace() {
            let (k, v) = pair.split_once('=').unwrap();
            assert!(h.env_defaults.contains_key(k), "{k} is not read by mecha");
            env.insert(k.to_owned(), v.to_owned());
        }
    }
    for var in ["MECHA_HTTP_PORT", "MECHA_GRPC_PORT", "MECHA_METRICS_PORT"] {
        let port = env
            .get(var)
            .cloned()
            .or_else(|| h.env_defaults[var].clone())
            .unwrap();
        assert!(
            exposed.contains(&port),
            "{var}={port} is not exposed: {exposed:?}"
        );
    }
    assert_eq!(env["MECHA_LISTEN_ADDRESS"], "0.0.0.0");
    let cmd = text.lines().find_map(|l| l.strip_prefix("CMD ")).unwrap();
    let cmd: Vec<String> = serde_json::from_str(cmd).unwrap();
    assert!(h.subcommands.contains(cmd[0].as_str()), "{cmd:?}");
}
