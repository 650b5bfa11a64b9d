//! Builds backends for the conformance suite from Dapr component metadata.

use std::path::Path;
use std::sync::Arc;

use mecha::actors::StateStore;
use mecha::capabilities::CapabilitySet;
use mecha::config::parse_components;

/// A store under test, its declared capabilities and a key base unique to this test.
pub struct Backend {
    pub store: Arc<dyn StateStore>,
    pub caps: CapabilitySet,
    pub base: String,
}

impl Backend {
    /// A key under this test's base.
    pub fn key(&self, suffix: &str) -> String {
        format!("{}||{suffix}", self.base)
    }
}

/// Builds a backend from a component type and `(name, value)` metadata, as a user's
/// component file would.
pub fn from_component(component_type: &str, metadata: &[(&str, String)]) -> Backend {
    let mut yaml = format!(
        "kind: Component\nmetadata:\n  name: conformance\nspec:\n  type: {component_type}\n  metadata:\n"
    );
    for (k, v) in metadata {
        yaml.push_str(&format!(
            "  - name: {k}\n    value: {}\n",
            serde_json::to_string(v).unwrap()
        ));
    }
    yaml.push_str("  - name: keyPrefix\n    value: none\n");
    let (components, _) = parse_components(&[(Path::new("conformance.yaml"), &yaml)], &|_| None)
        .unwrap_or_else(|e| panic!("component for {component_type} is invalid: {e:?}"));
    let factory = components[0].factory.clone();
    Backend {
        store: factory.create().expect("store instance"),
        caps: factory.capabilities(),
        base: format!("conf-{:016x}", rand::random::<u64>()),
    }
}

/// The in-memory store.
pub async fn in_memory() -> Backend {
    from_component("state.in-memory", &[("sweepInterval", "100ms".into())])
}
