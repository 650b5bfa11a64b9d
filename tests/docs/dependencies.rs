//! One major version of each crate where Mecha chooses it: every crate Mecha (or its bench)
//! depends on directly is at a major version that some other crate of the graph uses too,
//! or that no other crate uses at all. A newer major than the dependencies use would put two
//! copies of the crate in the binary (`cargo tree -d`); the fix is to follow the
//! dependencies. Read from `cargo metadata` on the lock file, offline.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// `1.2.3` → `1`, `0.12.5` → `0.12` (Cargo's compatibility rule).
fn major(version: &str) -> String {
    let mut parts = version.split('.');
    let first = parts.next().unwrap_or_default();
    if first == "0" {
        format!("0.{}", parts.next().unwrap_or_default())
    } else {
        first.to_owned()
    }
}

/// The host's target triple, from `rustc -vV`.
fn host() -> String {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = std::process::Command::new(rustc)
        .arg("-vV")
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .expect("rustc names its host")
        .to_owned()
}

/// The resolved graph for this platform (other platforms' crates need not be downloaded).
fn metadata() -> Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .args(["--filter-platform", &host()])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn mecha_uses_the_major_versions_its_dependencies_use() {
    let meta = metadata();
    let packages: BTreeMap<&str, (&str, &str)> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let id = p["id"].as_str().unwrap();
            (
                id,
                (p["name"].as_str().unwrap(), p["version"].as_str().unwrap()),
            )
        })
        .collect();
    let members: BTreeSet<&str> = meta["workspace_members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    // Who depends on which crate at which major: name -> major -> dependants.
    let mut used: BTreeMap<&str, BTreeMap<String, BTreeSet<&str>>> = BTreeMap::new();
    for node in meta["resolve"]["nodes"].as_array().unwrap() {
        let from = node["id"].as_str().unwrap();
        for dep in node["deps"].as_array().unwrap() {
            let (name, version) = packages[dep["pkg"].as_str().unwrap()];
            used.entry(name)
                .or_default()
                .entry(major(version))
                .or_default()
                .insert(from);
        }
    }
    let mut problems = Vec::new();
    for (name, majors) in &used {
        for (m, dependants) in majors {
            let ours = dependants.iter().all(|d| members.contains(d));
            let others: BTreeSet<&String> = majors
                .iter()
                .filter(|(_, ds)| ds.iter().any(|d| !members.contains(d)))
                .map(|(m, _)| m)
                .collect();
            if ours && !others.is_empty() {
                problems.push(format!(
                    "{name} {m} is only Mecha's choice; its dependencies use {others:?}"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}
