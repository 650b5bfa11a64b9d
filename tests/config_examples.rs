//! Every component file shipped under `config/` loads: the examples users copy and the
//! default components. Loading builds each store's factory, which must not connect, so no
//! service is needed.

use std::path::{Path, PathBuf};

use mecha::config::parse_components;

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
