//! The README's capability matrix is generated from the backend registry; this test fails
//! when they drift (regenerate with `MECHA_UPDATE_README=1 cargo test --test docs readme::`).

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
        "README capability matrix is stale: run MECHA_UPDATE_README=1 cargo test --test docs readme::"
    );
}

/// The book's resiliency example is a Dapr file that loads unchanged, with a component.
#[test]
fn readme_resiliency_example_loads() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/src/operations/resiliency.md");
    let readme = std::fs::read_to_string(&path).expect("the resiliency chapter");
    let section = readme
        .split("# Resiliency (Dapr `kind: Resiliency`)")
        .nth(1)
        .expect("resiliency section");
    let yaml = section
        .split("```yaml\n")
        .nth(1)
        .and_then(|s| s.split("```").next())
        .expect("yaml block");
    let component = "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: statestore\nspec:\n  type: state.in-memory\n  version: v1\n";
    let files = [
        (std::path::Path::new("statestore.yaml"), component),
        (std::path::Path::new("resiliency.yaml"), yaml),
    ];
    let (mut c, _) = mecha::config::parse_components(&files, &|_| None).expect("components");
    mecha::config::components::apply_resiliency(&files, &mut c).expect("resiliency loads");
    let r = &c[0].resiliency;
    assert_eq!(
        r.breaker.as_ref().map(|b| b.name.as_str()),
        Some("simpleCB")
    );
    assert_eq!(
        r.retry.as_ref().map(|b| b.name.as_str()),
        Some("retryForever")
    );
    assert_eq!(
        r.timeout,
        Some(("general".into(), std::time::Duration::from_secs(5)))
    );
}
