//! The book's generated reference pages (`docs/src/reference/`) are what the code says:
//! `mecha reference` writes them again into a scratch directory and every page must be
//! identical, with no page left over that the code no longer makes; the book's summary
//! links every store page. After changing the command line, a store's metadata, an error or
//! a metric family: `mecha reference --out docs/src/reference`.

use std::collections::BTreeMap;
use std::path::Path;

/// Every file under `dir`, by path relative to it.
fn files(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read_to_string(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn the_reference_pages_are_what_the_code_says() {
    let scratch = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mecha"))
        .args(["reference", "--out", scratch.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fresh = files(scratch.path());
    let checked_in = files(Path::new("docs/src/reference"));
    let names = |m: &BTreeMap<String, String>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(
        names(&checked_in),
        names(&fresh),
        "pages missing or left over: run `mecha reference --out docs/src/reference`"
    );
    for (path, text) in &fresh {
        assert!(
            checked_in[path] == *text,
            "docs/src/reference/{path} differs from the code: run `mecha reference --out docs/src/reference`"
        );
    }
    // The schema is valid JSON and names every section of mecha.yaml.
    let schema: serde_json::Value = serde_json::from_str(&fresh["mecha.schema.json"]).unwrap();
    for section in [
        "apps", "limits", "actors", "server", "stores", "policy", "quotas", "metrics", "tracing",
    ] {
        assert!(
            schema["properties"].get(section).is_some(),
            "{section} missing from the schema"
        );
    }
    let summary = std::fs::read_to_string("docs/src/SUMMARY.md").unwrap();
    for path in fresh.keys().filter(|p| p.ends_with(".md")) {
        assert!(
            summary.contains(&format!("(reference/{path})")),
            "docs/src/SUMMARY.md does not link reference/{path}"
        );
    }
}
