//! The README's capability matrix is generated from the backend registry; this test fails
//! when they drift (regenerate with `MECHA_UPDATE_README=1 cargo test --test readme`).

const START: &str = "<!-- capability-matrix:start -->\n";
const END: &str = "<!-- capability-matrix:end -->";

#[test]
fn readme_capability_matrix_matches_the_registry() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let readme = std::fs::read_to_string(&path).expect("README.md");
    let (head, rest) = readme
        .split_once(START)
        .expect("matrix start marker in README.md");
    let (current, tail) = rest
        .split_once(END)
        .expect("matrix end marker in README.md");
    let want = mecha::actors::backends::registry_matrix();
    if current != want && std::env::var_os("MECHA_UPDATE_README").is_some() {
        std::fs::write(&path, format!("{head}{START}{want}{END}{tail}")).expect("write README.md");
        return;
    }
    assert_eq!(
        current, want,
        "README capability matrix is stale: run MECHA_UPDATE_README=1 cargo test --test readme"
    );
}
