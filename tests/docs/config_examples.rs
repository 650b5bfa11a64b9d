//! Every component file shipped under `config/` loads: the examples users copy and the
//! default components. Loading builds each store's factory, which must not connect, so no
//! service is needed for those. And daprd's own component files for `state.mysql` and
//! `state.sqlite`, written as daprd's documentation shows them, pass `mecha check` unchanged
//! and serve through the binary (MySQL: the local MariaDB `scripts/test.sh` provides, in a
//! schema of the test's own; the test fails without it).

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Command;

use mecha::config::parse_components;
use serde_json::json;
use support::binary::Process;
use support::sql::SqlScratch;

fn yaml_files(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    files
}

fn assert_loads(dir: &str) -> Vec<String> {
    let files = yaml_files(dir);
    assert!(!files.is_empty(), "no component files in {dir}");
    let mut types = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        // Examples read secrets through envRef; give every variable a plausible value.
        let env = |k: &str| match k {
            "DATABASE_URL" => Some("postgres://postgres@127.0.0.1:5432/test".to_owned()),
            "MYSQL_URL" => Some("root:@tcp(127.0.0.1:3306)/test".to_owned()),
            _ => Some("example".to_owned()),
        };
        let (components, warnings) = parse_components(&[(&file, &text)], &env)
            .unwrap_or_else(|e| panic!("{} does not load: {e:?}", file.display()));
        assert!(
            !components.is_empty(),
            "{} holds no component",
            file.display()
        );
        assert!(
            warnings.is_empty(),
            "{} loads with warnings: {warnings:?}",
            file.display()
        );
        types.extend(components.into_iter().map(|c| c.component_type));
    }
    types
}

#[test]
fn example_components_load() {
    let types = assert_loads("config/examples");
    assert!(
        types.iter().any(|t| t == "state.redis"),
        "no Redis example: {types:?}"
    );
    assert!(
        types.iter().any(|t| t == "state.jetstream"),
        "no JetStream example: {types:?}"
    );
    assert!(
        types.iter().any(|t| t == "state.etcd"),
        "no etcd example: {types:?}"
    );
    assert!(
        types.iter().any(|t| t == "state.mysql"),
        "no MySQL example: {types:?}"
    );
}

#[test]
fn sqlite_resources_folder_holds_only_a_sqlite_store() {
    let types = assert_loads("config/examples/sqlite");
    assert_eq!(types, vec!["state.sqlite".to_owned()]);
}

#[test]
fn default_components_load_and_need_no_service() {
    let types = assert_loads("config/components");
    assert!(
        types.iter().all(|t| t == "state.in-memory"),
        "config/components must stay external-service-free: {types:?}"
    );
}

/// daprd's `state.mysql` component as its documentation writes it (the DSN without a database:
/// the tables live in `schemaName`, created when missing).
fn daprd_mysql_component(schema: &str) -> String {
    format!(
        r#"apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: statestore
spec:
  type: state.mysql
  version: v1
  metadata:
  - name: connectionString
    value: "root:@tcp(127.0.0.1:3306)/?allowNativePasswords=true"
  - name: schemaName
    value: "{schema}"
  - name: tableName
    value: "state"
  - name: metadataTableName
    value: "dapr_metadata"
  - name: timeoutInSeconds
    value: "30"
  - name: cleanupInterval
    value: "1h"
# Uncomment this if you wish to use MySQL & PostgreSQL as a state store for actors (optional)
  #- name: actorStateStore
  #  value: "true"
"#
    )
}

/// daprd's `state.sqlite` component as its documentation writes it.
fn daprd_sqlite_component(file: &str) -> String {
    format!(
        r#"apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: statestore
spec:
  type: state.sqlite
  version: v1
  metadata:
  # Connection string
  - name: connectionString
    value: "{file}"
  # Name of the table where to store the state (optional)
  - name: tableName
    value: "state"
  # Name of the table where to store metadata used by Dapr (optional)
  - name: metadataTableName
    value: "metadata"
  # Timeout for database operations, as a Go duration or number of seconds (optional)
  - name: timeout
    value: "20s"
  # Interval at which to perform garbage collection (optional)
  - name: cleanupInterval
    value: "1h"
  # Set busy timeout for database operations
  - name: busyTimeout
    value: "2s"
  # Uncomment this if you wish to disable WAL journaling (optional)
  - name: disableWAL
    value: "false"
  # Uncomment this if you wish to use SQLite as a state store for actors (optional)
  #- name: actorStateStore
  #  value: "true"
"#
    )
}

/// `mecha check` accepts the folder without a warning and lists `ty` with native ETags,
/// transactions and TTL.
fn check_accepts(dir: &str, ty: &str) {
    let out = Command::new(support::binary::bin())
        .args(["check", "--resources-path", dir])
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{ty}: {stdout}{stderr}");
    assert!(
        !stdout.contains("warning") && !stderr.contains("warning"),
        "{ty}: {stdout}{stderr}"
    );
    let row = stdout
        .lines()
        .find(|l| l.starts_with("| `statestore` |"))
        .unwrap_or_else(|| panic!("{ty}: no statestore row in\n{stdout}"));
    assert!(
        row.starts_with(&format!(
            "| `statestore` | {ty} v1 | native | native | native"
        )),
        "{row}"
    );
    assert!(
        stdout.contains("configuration OK: 1 state store(s)"),
        "{stdout}"
    );
}

/// Saves, reads back (with its ETag), updates with that ETag and deletes through the binary.
async fn save_get(p: &Process, key: &str) {
    let c = reqwest::Client::new();
    let url = format!("{}/v1.0/state/statestore", p.base());
    let r = c
        .post(&url)
        .body(json!([{"key": key, "value": {"n": 1}}]).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204, "{}", r.text().await.unwrap());
    let r = c.get(format!("{url}/{key}")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap(),
        json!({"n": 1})
    );
    let r = c
        .post(&url)
        .body(json!([{"key": key, "value": {"n": 2}, "etag": etag}]).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204, "{}", r.text().await.unwrap());
    let r = c
        .post(&url)
        .body(json!([{"key": key, "value": {"n": 3}, "etag": etag}]).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409, "a stale ETag was accepted");
    let r = c.get(format!("{url}/{key}")).send().await.unwrap();
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap(),
        json!({"n": 2})
    );
}

async fn value_after_restart(p: &Process, key: &str) -> serde_json::Value {
    let r = reqwest::get(format!("{}/v1.0/state/statestore/{key}", p.base()))
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the value did not survive a restart");
    r.json().await.unwrap()
}

#[actix_rt::test]
async fn daprd_component_files_for_mysql_and_sqlite_work_unchanged() {
    let sql = SqlScratch::new();
    for (ty, text) in [
        ("state.mysql", daprd_mysql_component(&sql.schema)),
        (
            "state.sqlite",
            daprd_sqlite_component(&sql.sqlite_path("data.db")),
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("statestore.yaml"), &text).unwrap();
        let resources = dir.path().to_str().unwrap();
        check_accepts(resources, ty);
        let key = format!("daprd-file-{:016x}", rand::random::<u64>());
        let mut p = Process::spawn(&["run", "--resources-path", resources], &[]);
        save_get(&p, &key).await;
        p.terminate();
        // Durable: a new process reads what the first one wrote.
        let p = Process::spawn(&["run", "--resources-path", resources], &[]);
        assert_eq!(value_after_restart(&p, &key).await, json!({"n": 2}), "{ty}");
    }
    assert!(
        Path::new(&sql.sqlite_path("data.db")).exists(),
        "the SQLite file is where the component says"
    );
}
