//! The deployment on paper (`deploy/`) against the binary it deploys: every flag and variable
//! the manifests and the Dockerfile use is one `mecha --help` lists, every port is the one the
//! binary is told to use, the probes hit real routes, the selectors and names line up, and the
//! mounted configuration loads with Mecha's own parsers.

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

    // Probes hit real routes on the HTTP port.
    let ready = &c["readinessProbe"]["httpGet"];
    assert_eq!(s(&ready["path"]), "/v1.0/healthz/outbound");
    assert_eq!(s(&ready["port"]), "http");
    let live = &c["livenessProbe"]["httpGet"];
    assert_eq!(s(&live["path"]), "/v1.0/healthz");
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
    let text = s(&mount_of(&config_path)[file]);
    let settings = Settings::parse_with_env(Path::new(file), text, &env)
        .unwrap_or_else(|e| panic!("mecha.yaml in the ConfigMap does not load: {e:?}"));
    assert!(
        !settings.apps.is_empty(),
        "replicas behind a Service should authenticate apps"
    );
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
