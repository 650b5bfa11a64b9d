//! Dapr component files (`kind: Component`) → validated state stores.
//!
//! Accepts Dapr's own format so files copy over from a Dapr project: every `*.yaml`/`*.yml`
//! in the resources path, multi-document files included. Documents of other kinds, and
//! components that are not state stores, are skipped with a warning.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use serde_norway::Value;

use super::ConfigError;
use crate::actors::StoreFactory;
use crate::actors::backends::{self, ComponentConfig, Descriptor};
use crate::capabilities::{CapabilitySet, Matrix, Policy, PolicyProblem, StoreTraits};
use crate::keys::KeyPrefix;

/// Where components come from.
#[derive(Debug, Clone)]
pub enum ComponentSource {
    /// Every YAML file in a directory (not recursive, sorted by name).
    Dir(PathBuf),
    /// The embedded default (one in-memory `statestore`).
    Embedded,
}

/// A state store ready to start.
#[derive(Clone)]
pub struct LoadedComponent {
    /// `metadata.name`.
    pub name: String,
    /// `spec.type` as written in the registry (lower case).
    pub component_type: String,
    /// `spec.version`.
    pub version: String,
    /// The key prefix strategy.
    pub key_prefix: KeyPrefix,
    /// App ids allowed to use the store; empty means every app.
    pub scopes: Vec<String>,
    /// Builds store instances.
    pub factory: Arc<dyn StoreFactory>,
    /// Request metadata keys the backend understands beyond the portable ones.
    pub request_keys: &'static [crate::capabilities::lint::RequestKey],
    /// The file it came from.
    pub file: PathBuf,
    /// The effective resiliency policies (Dapr `kind: Resiliency` documents).
    pub resiliency: super::resiliency::StoreResiliency,
    /// A digest of what builds the backend (type, version, every metadata value): two
    /// loads with the same definition talk to the same backend the same way, so a reload
    /// keeps the running store (its connections and data) instead of building a new one.
    pub definition: String,
    /// Where the store's keys physically live ([`crate::actors::backends::Descriptor::locations`]):
    /// stores sharing one share a key space.
    pub locations: Vec<String>,
}

impl std::fmt::Debug for LoadedComponent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedComponent")
            .field("name", &self.name)
            .field("type", &self.component_type)
            .field("version", &self.version)
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

impl LoadedComponent {
    /// A store from a hand-built factory (embedding and tests).
    pub fn custom(
        name: &str,
        component_type: &str,
        factory: Arc<dyn StoreFactory>,
    ) -> LoadedComponent {
        LoadedComponent {
            name: name.to_owned(),
            component_type: component_type.to_owned(),
            version: "v1".to_owned(),
            key_prefix: KeyPrefix::AppId,
            scopes: Vec::new(),
            request_keys: &[],
            file: PathBuf::from("<custom>"),
            resiliency: Default::default(),
            // A hand-built factory is its own definition: never equal to a loaded one.
            definition: format!("custom:{name}:{:p}", Arc::as_ptr(&factory).cast::<u8>()),
            // A hand-built store shares its keys with no other.
            locations: vec![format!(
                "custom:{name}:{:p}",
                Arc::as_ptr(&factory).cast::<u8>()
            )],
            factory,
        }
    }

    /// What the store does natively.
    pub fn capabilities(&self) -> CapabilitySet {
        self.factory.capabilities()
    }

    /// The store's native traits, with Mecha's transaction limit applied.
    pub fn traits(&self, limits: &super::Limits) -> StoreTraits {
        StoreTraits {
            native: self.factory.capabilities(),
            lists_keys: self.factory.lists_keys(),
            max_transaction_ops: self
                .factory
                .max_transaction_ops()
                .map_or(limits.max_transaction_ops, |m| {
                    m.min(limits.max_transaction_ops)
                }),
        }
    }

    /// The effective matrix under the store's policy in `settings` (none: the built-in default).
    pub fn matrix(&self, settings: &super::Settings) -> Result<Matrix, Vec<PolicyProblem>> {
        let policy = settings
            .policies
            .get(&self.name)
            .cloned()
            .unwrap_or(Policy {
                baseline: settings.baseline,
                ..Policy::default()
            });
        Matrix::build(self.traits(&settings.limits), &policy)
    }

    /// The matrix `app` sees: the store's, with the app's own `reject` tightenings applied.
    pub fn app_matrix(
        &self,
        settings: &super::Settings,
        app: &super::AppConfig,
    ) -> Result<Matrix, Vec<PolicyProblem>> {
        let m = self.matrix(settings)?;
        Ok(match app.stores.get(&self.name) {
            Some(t) => m.tightened(
                t.policy
                    .iter()
                    .filter(|(_, a)| **a == crate::capabilities::Action::Reject)
                    .map(|(f, _)| *f),
            ),
            None => m,
        })
    }

    /// The lint mode `app` gets on this store: the store's (default `warn`), or the app's
    /// own when stricter.
    pub fn lint_mode(
        &self,
        settings: &super::Settings,
        app: Option<&super::AppConfig>,
    ) -> crate::capabilities::lint::LintMode {
        let store = settings.lint.get(&self.name).copied().unwrap_or_default();
        app.and_then(|a| a.stores.get(&self.name))
            .and_then(|t| t.lint)
            .map_or(store, |m| store.stricter(m))
    }

    /// Whether `app` may use this store.
    pub fn visible_to(&self, app: &str) -> bool {
        self.scopes.is_empty() || self.scopes.iter().any(|s| s == app)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDoc {
    api_version: Option<String>,
    kind: Option<String>,
    metadata: Option<RawObjectMeta>,
    spec: Option<RawSpec>,
    #[serde(default)]
    scopes: Vec<String>,
}

#[derive(Deserialize)]
struct RawObjectMeta {
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawSpec {
    #[serde(rename = "type")]
    type_: Option<String>,
    version: Option<String>,
    #[serde(default)]
    metadata: Vec<RawMetadataItem>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawMetadataItem {
    name: Option<String>,
    value: Option<Value>,
    secret_key_ref: Option<Value>,
    env_ref: Option<String>,
}

/// Loads and validates every component; returns the stores and the warnings, or every error.
pub fn load_components(source: &ComponentSource) -> ParsedComponents {
    let files: Vec<(PathBuf, String)> = match source {
        ComponentSource::Embedded => vec![(
            PathBuf::from("<embedded default>"),
            super::EMBEDDED_DEFAULT_COMPONENT.to_owned(),
        )],
        ComponentSource::Dir(dir) => match read_dir(dir) {
            Ok(files) => files,
            Err(errors) => {
                return ParsedComponents {
                    errors,
                    ..ParsedComponents::default()
                };
            }
        },
    };
    let refs: Vec<(&Path, &str)> = files
        .iter()
        .map(|(p, t)| (p.as_path(), t.as_str()))
        .collect();
    let mut parsed = parse_all(&refs, &|k| std::env::var(k).ok());
    // Resiliency targets name stores: only checked against a complete set of them.
    if parsed.errors.is_empty()
        && let Err(e) = apply_resiliency(&refs, &mut parsed.components)
    {
        parsed.errors.extend(e);
    }
    parsed
}

/// The YAML files of a resources directory, sorted by name.
fn read_dir(dir: &Path) -> Result<Vec<(PathBuf, String)>, Vec<ConfigError>> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        vec![ConfigError::new(
            dir,
            "",
            format!("cannot read the resources path: {e}"),
        )]
    })?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
        })
        .collect();
    paths.sort();
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for p in paths {
        match std::fs::read_to_string(&p) {
            Ok(t) => files.push((p, t)),
            Err(e) => errors.push(ConfigError::new(&p, "", format!("cannot read: {e}"))),
        }
    }
    if errors.is_empty() {
        Ok(files)
    } else {
        Err(errors)
    }
}

/// Everything the component files say: the stores that are valid, every problem, every
/// warning, and the names of the stores whose documents have problems (so that nothing
/// else is reported against them as "not configured": one message per cause).
#[derive(Default)]
pub struct ParsedComponents {
    /// The valid state stores, in load order.
    pub components: Vec<LoadedComponent>,
    /// Non-fatal findings.
    pub warnings: Vec<ConfigError>,
    /// Problems.
    pub errors: Vec<ConfigError>,
    /// Names of component documents that have problems.
    pub failed: Vec<String>,
}

/// Resolves the `kind: Resiliency` documents of `files` onto `components`.
pub fn apply_resiliency(
    files: &[(&Path, &str)],
    components: &mut [LoadedComponent],
) -> Result<(), Vec<ConfigError>> {
    let names: Vec<String> = components.iter().map(|c| c.name.clone()).collect();
    let mut by_store = super::resiliency::parse_resiliency(files, &names)?;
    for c in components {
        if let Some(r) = by_store.remove(&c.name) {
            c.resiliency = r;
        }
    }
    Ok(())
}

/// Parses and validates component files given as `(path, text)`; `env` resolves `envRef`.
pub fn parse_components(
    files: &[(&Path, &str)],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Vec<LoadedComponent>, Vec<ConfigError>), Vec<ConfigError>> {
    let parsed = parse_all(files, env);
    if parsed.errors.is_empty() {
        Ok((parsed.components, parsed.warnings))
    } else {
        Err(parsed.errors)
    }
}

/// As [`parse_components`], keeping the valid stores, the warnings and the failed names
/// beside the problems.
pub fn parse_all(
    files: &[(&Path, &str)],
    env: &dyn Fn(&str) -> Option<String>,
) -> ParsedComponents {
    let mut p = ParsedComponents::default();
    for (file, text) in files {
        for (i, doc) in serde_norway::Deserializer::from_str(text).enumerate() {
            let value = match Value::deserialize(doc) {
                Ok(Value::Null) => continue,
                Ok(v) => v,
                Err(e) => {
                    p.errors.push(ConfigError::new(
                        file,
                        "",
                        format!("document {}: {e}", i + 1),
                    ));
                    break;
                }
            };
            let name = value
                .get("metadata")
                .and_then(|m| m.get("name"))
                .and_then(Value::as_str)
                .map(str::to_owned);
            match serde_norway::from_value::<RawDoc>(value) {
                Ok(raw) => add_document(file, i, raw, env, &mut p),
                Err(e) => {
                    p.errors.push(ConfigError::new(
                        file,
                        "",
                        format!("document {}: {e}", i + 1),
                    ));
                    p.failed.extend(name);
                }
            }
        }
    }
    p
}

/// The kinds Mecha reads in a resources directory.
const KINDS: &[&str] = &["Component", "Resiliency"];

/// A kind that is a misspelling of one Mecha reads (`Compnent`), if `kind` is one.
fn misspelt_kind(kind: &str) -> Option<&'static str> {
    KINDS.iter().copied().find(|k| {
        let d = strsim::damerau_levenshtein(&kind.to_ascii_lowercase(), &k.to_ascii_lowercase());
        d > 0 && d <= 2
    })
}

/// One parsed document of a component file: a component is validated and added to `out`
/// (a name given twice is an error), another kind is skipped with a warning.
fn add_document(
    file: &Path,
    i: usize,
    raw: RawDoc,
    env: &dyn Fn(&str) -> Option<String>,
    p: &mut ParsedComponents,
) {
    match raw.kind.as_deref() {
        Some("Component") => {}
        // Read by `resiliency::parse_resiliency`.
        Some("Resiliency") => return,
        Some(other) if misspelt_kind(other).is_some() => {
            let kind = misspelt_kind(other).unwrap_or_default();
            p.errors.push(ConfigError::new(
                file,
                "kind",
                format!(
                    "document {}: '{other}' is not a kind Mecha reads: did you mean `{kind}`?",
                    i + 1
                ),
            ));
            p.failed.extend(raw.metadata.and_then(|m| m.name));
            return;
        }
        other => {
            p.warnings.push(ConfigError::new(
                file,
                "kind",
                format!(
                    "document {} of kind {:?} skipped (Mecha reads {})",
                    i + 1,
                    other.unwrap_or("<none>"),
                    KINDS.join(" and ")
                ),
            ));
            return;
        }
    }
    if let Some(v) = &raw.api_version
        && v != "dapr.io/v1alpha1"
    {
        p.warnings.push(ConfigError::new(
            file,
            "apiVersion",
            format!("unexpected apiVersion {v}"),
        ));
    }
    let before = p.errors.len();
    let name = raw.metadata.as_ref().and_then(|m| m.name.clone());
    let valid = validate(file, raw, env, &mut p.errors, &mut p.warnings);
    match valid {
        Some(c) if p.errors.len() == before => {
            if let Some(first) = p.components.iter().find(|o| o.name == c.name) {
                let also = first.file.display().to_string();
                p.errors.push(ConfigError::new(
                    file,
                    "metadata.name",
                    format!("duplicate component name '{}' (also in {also})", c.name),
                ));
            } else {
                p.components.push(c);
            }
        }
        _ => p.failed.extend(name),
    }
}

fn scalar_to_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Null => Some(String::new()),
        _ => None,
    }
}

fn validate(
    file: &Path,
    raw: RawDoc,
    env: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<ConfigError>,
    warnings: &mut Vec<ConfigError>,
) -> Option<LoadedComponent> {
    let mut err = |field: &str, msg: String| errors.push(ConfigError::new(file, field, msg));
    let name = raw.metadata.and_then(|m| m.name).unwrap_or_default();
    if name.is_empty() {
        err("metadata.name", "is required".into());
    } else if name.contains('/') || name.chars().any(char::is_whitespace) {
        err(
            "metadata.name",
            format!("'{name}' must not contain '/' or white space"),
        );
    }
    let Some(spec) = raw.spec else {
        err("spec", "is required".into());
        return None;
    };
    let Some(type_name) = spec.type_.filter(|t| !t.is_empty()) else {
        err("spec.type", "is required".into());
        return None;
    };
    let (desc, version) = backend_of(file, &name, &type_name, spec.version, &mut err, warnings)?;
    let given: Vec<String> = spec
        .metadata
        .iter()
        .filter_map(|m| m.name.clone())
        .collect();
    let (metadata, bad) = validate_metadata(file, desc, spec.metadata, env, &mut err, warnings);
    // One message per cause: a field given with a bad value is not also "required".
    for f in crate::actors::backends::COMMON_FIELDS
        .iter()
        .chain(desc.metadata)
    {
        if f.required && !metadata.contains_key(f.name) && !given.iter().any(|g| g == f.name) {
            err(
                "spec.metadata",
                format!("'{}' is required for {}", f.name, desc.component_type),
            );
        }
    }
    let key_prefix = match KeyPrefix::parse(metadata.get("keyPrefix").map(String::as_str)) {
        Ok(k) => k,
        Err(e) => {
            err("spec.metadata.keyPrefix", e);
            return None;
        }
    };
    if bad {
        // The backend does not judge a configuration with a field left out for a problem.
        return None;
    }
    let definition = definition_digest(desc.component_type, &version, &metadata);
    let cfg = ComponentConfig {
        name: name.clone(),
        component_type: desc.component_type.to_owned(),
        version: version.clone(),
        metadata,
    };
    let locations = (desc.locations)(&cfg);
    let factory = match (desc.build)(&cfg) {
        Ok(f) => f,
        Err(e) => {
            err("spec.metadata", e);
            return None;
        }
    };
    Some(LoadedComponent {
        request_keys: desc.request_keys,
        name,
        component_type: desc.component_type.to_owned(),
        version,
        key_prefix,
        scopes: raw.scopes,
        factory,
        file: file.to_owned(),
        resiliency: Default::default(),
        definition,
        locations,
    })
}

/// The backend of `spec.type` and the version of `spec.version` (its first when absent); a
/// component of another kind than state is skipped with a warning.
fn backend_of(
    file: &Path,
    name: &str,
    type_name: &str,
    version: Option<String>,
    err: &mut dyn FnMut(&str, String),
    warnings: &mut Vec<ConfigError>,
) -> Option<(&'static backends::Descriptor, String)> {
    let lower = type_name.to_ascii_lowercase();
    if !lower.starts_with("state.") {
        warnings.push(ConfigError::new(
            file,
            "spec.type",
            format!(
                "component '{name}' of type {type_name} skipped: Mecha serves state stores only"
            ),
        ));
        return None;
    }
    let Some(desc) = backends::lookup(&lower) else {
        let known: Vec<&str> = backends::REGISTRY
            .iter()
            .map(|d| d.component_type)
            .collect();
        err(
            "spec.type",
            format!(
                "unknown state store type '{type_name}' (known: {})",
                known.join(", ")
            ),
        );
        return None;
    };
    let version = match version.filter(|v| !v.is_empty()) {
        None => desc.versions[0].to_owned(),
        Some(v) if desc.versions.contains(&v.as_str()) => v,
        Some(v) => {
            err(
                "spec.version",
                format!(
                    "{type_name} has no version '{v}' (supported: {})",
                    desc.versions.join(", ")
                ),
            );
            return None;
        }
    };
    Some((desc, version))
}

/// The digest of a backend definition: SHA-256 over the type, the version and the metadata
/// sorted by name (values may be secrets, so only the digest is kept for comparison).
fn definition_digest(
    component_type: &str,
    version: &str,
    metadata: &std::collections::HashMap<String, String>,
) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    let mut field = |s: &str| {
        h.update((s.len() as u64).to_le_bytes());
        h.update(s.as_bytes());
    };
    field(component_type);
    field(version);
    let mut entries: Vec<(&String, &String)> = metadata.iter().collect();
    entries.sort();
    for (k, v) in entries {
        field(k);
        field(v);
    }
    h.finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
}

fn validate_metadata(
    file: &Path,
    desc: &Descriptor,
    items: Vec<RawMetadataItem>,
    env: &dyn Fn(&str) -> Option<String>,
    err: &mut dyn FnMut(&str, String),
    warnings: &mut Vec<ConfigError>,
) -> (HashMap<String, String>, bool) {
    let mut out = HashMap::new();
    let mut bad = false;
    let mut err = |field: &str, msg: String| {
        bad = true;
        err(field, msg);
    };
    for (i, item) in items.into_iter().enumerate() {
        let at = format!("spec.metadata[{i}]");
        let Some(name) = item.name.filter(|n| !n.is_empty()) else {
            err(&format!("{at}.name"), "is required".into());
            continue;
        };
        let value = if item.secret_key_ref.is_some() {
            err(
                &format!("{at}.secretKeyRef"),
                format!("'{name}': secret stores are not supported; use value or envRef"),
            );
            continue;
        } else if let Some(var) = item.env_ref {
            match env(&var) {
                Some(v) => v,
                None => {
                    err(
                        &format!("{at}.envRef"),
                        format!("'{name}': environment variable {var} is not set"),
                    );
                    continue;
                }
            }
        } else {
            match item.value.as_ref().map(scalar_to_string) {
                Some(Some(v)) => v,
                None => String::new(),
                Some(None) => {
                    err(
                        &format!("{at}.value"),
                        format!("'{name}' must be a string, number or boolean"),
                    );
                    continue;
                }
            }
        };
        match desc.field(&name) {
            Some(field) => {
                if let Err(e) = field.validate(&value) {
                    err(&format!("{at}.value"), format!("'{}': {e}", field.name));
                    continue;
                }
                if out.insert(field.name.to_owned(), value).is_some() {
                    err(&format!("{at}.name"), format!("'{name}' is given twice"));
                }
            }
            None => {
                let near = nearest_field(desc, &name)
                    .map(|f| format!(" (did you mean `{f}`?)"))
                    .unwrap_or_default();
                warnings.push(ConfigError::new(
                    file,
                    format!("{at}.name"),
                    format!(
                        "'{name}' is not a metadata field of {}{near}; it is ignored",
                        desc.component_type
                    ),
                ));
            }
        }
    }
    (out, bad)
}

/// The metadata field of `desc` nearest to `name`, when close enough to be a typo.
fn nearest_field(desc: &Descriptor, name: &str) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    crate::actors::backends::COMMON_FIELDS
        .iter()
        .chain(desc.metadata)
        .map(|f| {
            let d = strsim::damerau_levenshtein(&lower, &f.name.to_ascii_lowercase());
            (d, f.name)
        })
        .filter(|(d, known)| *d <= (known.len() / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, known)| known)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(
        files: &[(&str, &str)],
    ) -> Result<(Vec<LoadedComponent>, Vec<ConfigError>), Vec<ConfigError>> {
        let files: Vec<(&Path, &str)> = files.iter().map(|(p, t)| (Path::new(*p), *t)).collect();
        parse_components(&files, &|k| (k == "PREFIX").then(|| "fromenv".to_owned()))
    }

    const MEM: &str = "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: statestore\nspec:\n  type: state.in-memory\n  version: v1\n  metadata: []\n";

    #[test]
    fn loads_a_dapr_component() {
        let (c, w) = parse(&[("a.yaml", MEM)]).unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].name, "statestore");
        assert_eq!(c[0].version, "v1");
        assert!(w.is_empty(), "{w:?}");
    }

    #[test]
    fn multi_document_files_and_other_kinds() {
        let text = format!(
            "{MEM}---\napiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: cfg\n---\nkind: Component\nmetadata:\n  name: second\nspec:\n  type: State.In-Memory\n  metadata:\n  - name: keyPrefix\n    envRef: PREFIX\n  - name: sweepInterval\n    value: 2\nscopes: [app1]\n---\nkind: Component\nmetadata:\n  name: pubsub\nspec:\n  type: pubsub.redis\n"
        );
        let (c, w) = parse(&[("multi.yaml", &text)]).unwrap();
        assert_eq!(
            c.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            ["statestore", "second"]
        );
        assert_eq!(c[1].key_prefix, KeyPrefix::Custom("fromenv".into()));
        assert_eq!(c[1].scopes, ["app1"]);
        assert_eq!(w.len(), 2, "{w:?}");
    }

    #[test]
    fn every_problem_is_reported_with_file_and_field() {
        let bad = "kind: Component\nmetadata:\n  name: x\nspec:\n  type: state.nope\n---\nkind: Component\nmetadata: {}\nspec:\n  type: state.in-memory\n  version: v9\n---\nkind: Component\nmetadata:\n  name: y\nspec:\n  type: state.in-memory\n  metadata:\n  - name: sweepInterval\n    value: soon\n  - name: keyPrefix\n    value: a||b\n";
        let errs = parse(&[("bad.yaml", bad), ("dup1.yaml", MEM), ("dup2.yaml", MEM)]).unwrap_err();
        let shown: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        let want = [
            "bad.yaml: spec.type: unknown state store type 'state.nope'",
            "bad.yaml: metadata.name: is required",
            "bad.yaml: spec.version: state.in-memory has no version 'v9'",
            "bad.yaml: spec.metadata[0].value: 'sweepInterval'",
            "bad.yaml: spec.metadata.keyPrefix: keyPrefix 'a||b'",
            "dup2.yaml: metadata.name: duplicate component name 'statestore' (also in dup1.yaml)",
        ];
        assert_eq!(shown.len(), want.len(), "{shown:#?}");
        for (got, want) in shown.iter().zip(want) {
            assert!(got.starts_with(want), "{got} does not start with {want}");
        }
    }

    #[test]
    fn unknown_metadata_is_a_warning_and_secrets_an_error() {
        let text = "kind: Component\nmetadata:\n  name: s\nspec:\n  type: state.in-memory\n  metadata:\n  - name: sweepIntervall\n    value: 1s\n";
        let (_, w) = parse(&[("w.yaml", text)]).unwrap();
        assert!(w[0].message.contains("sweepIntervall"));
        let text = "kind: Component\nmetadata:\n  name: s\nspec:\n  type: state.in-memory\n  metadata:\n  - name: keyPrefix\n    secretKeyRef: {name: a, key: b}\n";
        assert!(
            parse(&[("s.yaml", text)]).unwrap_err()[0]
                .field
                .ends_with("secretKeyRef")
        );
    }

    #[test]
    fn a_failed_component_is_named_and_a_misspelt_kind_is_an_error() {
        let text = "kind: Compnent\nmetadata:\n  name: a\nspec:\n  type: state.in-memory\n---\nkind: Component\nmetadata:\n  name: b\nspec:\n  type: state.redis\n  metadata:\n  - name: redisHost\n    value: h\n  - name: redisPasword\n    value: p\n  - name: redisDB\n    value: x\n---\nkind: Subscription\nmetadata:\n  name: s\n---\nkind: Component\nmetadata:\n  name: c\nspec:\n  type: state.in-memory\n";
        let p = parse_all(&[(Path::new("c.yaml"), text)], &|_| None);
        let errors: Vec<String> = p.errors.iter().map(ToString::to_string).collect();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].contains("'Compnent' is not a kind Mecha reads: did you mean `Component`?"),
            "{errors:?}"
        );
        assert!(errors[1].contains("'redisDB'"), "{errors:?}");
        assert_eq!(p.failed, ["a", "b"]);
        assert_eq!(p.components.len(), 1, "the valid store is kept");
        let warnings: Vec<String> = p.warnings.iter().map(ToString::to_string).collect();
        assert!(
            warnings.iter().any(
                |w| w.contains("'redisPasword'") && w.contains("did you mean `redisPassword`?")
            ),
            "{warnings:?}"
        );
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("\"Subscription\" skipped")),
            "{warnings:?}"
        );
    }

    #[test]
    fn embedded_default_is_one_in_memory_store() {
        let parsed = load_components(&ComponentSource::Embedded);
        assert!(parsed.errors.is_empty() && parsed.warnings.is_empty());
        let c = parsed.components;
        assert_eq!(c.len(), 1);
        assert_eq!(
            (c[0].name.as_str(), c[0].component_type.as_str()),
            ("statestore", "state.in-memory")
        );
    }
}
