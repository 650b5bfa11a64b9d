//! Configuration: Mecha's own file (`config/mecha.yaml`) and Dapr component files.
//!
//! Loading is split from parsing (tests feed strings), and validation collects every
//! problem before failing, each naming its file and field. The result is a [`Config`]
//! that cannot hold an invalid value.

pub mod components;
pub mod resiliency;
mod settings;

use std::path::{Path, PathBuf};

pub use components::{ComponentSource, LoadedComponent, load_components, parse_components};
pub use settings::{
    AppConfig, Limits, QuotaSettings, RawTls, ServerSettings, Settings, TlsSettings, TokenSource,
    parse_size, settings_schema,
};

/// The component file used when the resources path does not exist and was not given
/// explicitly: one in-memory store named `statestore`.
pub const EMBEDDED_DEFAULT_COMPONENT: &str =
    include_str!("../../config/components/statestore.yaml");

/// One configuration problem, located as precisely as possible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file the problem is in.
    pub file: PathBuf,
    /// The field, as a path such as `spec.metadata[2].value`; empty for the whole file.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    /// A problem in `file` at `field`.
    pub fn new(file: &Path, field: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: file.to_owned(),
            field: field.into(),
            // Operators put credentials in host and URL values: never echo them.
            message: crate::redact::credentials(&message.into()).into_owned(),
        }
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(
                f,
                "{}: {}: {}",
                self.file.display(),
                self.field,
                self.message
            )
        }
    }
}

/// Everything Mecha needs to start, each file validated on its own ([`Config::load`]);
/// [`Config::validate`] adds the checks that need the whole of it and the app id.
pub struct Config {
    /// Mecha's own settings.
    pub settings: Settings,
    /// The state stores, in load order.
    pub components: Vec<LoadedComponent>,
    /// Non-fatal findings (unknown metadata keys, skipped documents).
    pub warnings: Vec<ConfigError>,
}

/// A configuration that passed every check, for the app id it was checked with: the only
/// input the gateway's catalog is built from, so the catalog never re-validates.
pub struct ValidConfig {
    config: Config,
    app_id: String,
}

impl ValidConfig {
    /// Mecha's own settings.
    pub fn settings(&self) -> &Settings {
        &self.config.settings
    }

    /// The state stores, in load order.
    pub fn components(&self) -> &[LoadedComponent] {
        &self.config.components
    }

    /// The app id of callers when no apps are configured (`--app-id`).
    pub fn app_id(&self) -> &str {
        &self.app_id
    }

    /// Non-fatal findings.
    pub fn warnings(&self) -> &[ConfigError] {
        &self.config.warnings
    }

    /// The configuration, settings first.
    pub fn into_parts(self) -> (Settings, Vec<LoadedComponent>) {
        (self.config.settings, self.config.components)
    }
}

impl Config {
    /// Checks what needs the whole configuration and the app id (`file` names Mecha's own
    /// file in the problems): every store policy against its store
    /// ([`policy_problems`]) and every key namespace against the others
    /// ([`namespace_problems`]). All problems are returned at once.
    pub fn validate(self, file: &Path, app_id: &str) -> Result<ValidConfig, Vec<ConfigError>> {
        let mut problems = policy_problems(file, &self.settings, &self.components, &[]);
        problems.extend(namespace_problems(
            file,
            &self.settings,
            &self.components,
            app_id,
        ));
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(ValidConfig {
            config: self,
            app_id: app_id.to_owned(),
        })
    }
}

/// Every policy of `settings` that names an unknown store or would break a guarantee on its
/// store, each naming the store and the capability. Start-up and `mecha check` both refuse them.
/// Stores named in `failed` (their component documents have problems of their own) are not
/// reported as unknown: one message per cause.
pub fn policy_problems(
    file: &Path,
    settings: &Settings,
    components: &[LoadedComponent],
    failed: &[String],
) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    for name in settings.policies.keys() {
        if !components.iter().any(|c| &c.name == name) && !failed.contains(name) {
            errors.push(ConfigError::new(
                file,
                format!("stores.{name}"),
                format!("no state store named '{name}' is configured"),
            ));
        }
    }
    errors.extend(app_problems(file, settings, components, failed));
    for c in components {
        if let Err(problems) = c.matrix(settings) {
            for p in problems {
                errors.push(ConfigError::new(
                    file,
                    format!("stores.{}.{}", c.name, p.feature.policy_name()),
                    format!("store '{}' ({}): {p}", c.name, c.component_type),
                ));
            }
        }
    }
    errors
}

/// Every way two tenants' keys could meet in one physical key space. Key prefixes are
/// unambiguous by construction ([`crate::keys`]: app ids and prefixes hold no `|`); what is
/// left is two stores on the same server and database (table, bucket) whose prefixes are
/// equal: an app id (`keyPrefix: appid`) equal to another store's name (`keyPrefix: name`)
/// or custom prefix, or a store name equal to a custom prefix. Each is refused, naming both
/// stores, as is an invalid `--app-id` (`default_app`) or a store name that is a prefix but
/// not a valid one. Start-up, reloads and `mecha check` all refuse them.
pub fn namespace_problems(
    file: &Path,
    settings: &Settings,
    components: &[LoadedComponent],
    default_app: &str,
) -> Vec<ConfigError> {
    use crate::keys::{KeyPrefix, id_problem};
    let mut errors = Vec::new();
    if let Some(why) = id_problem(default_app) {
        errors.push(ConfigError::new(
            file,
            "--app-id",
            format!("app '{default_app}' {why}"),
        ));
    }
    for c in components {
        if c.key_prefix == KeyPrefix::StoreName
            && let Some(why) = id_problem(&c.name)
        {
            errors.push(ConfigError::new(
                &c.file,
                "metadata.name",
                format!(
                    "store '{}' has keyPrefix 'name', so its name is a key prefix, which {why}",
                    c.name
                ),
            ));
        }
    }
    // The apps that can call at all: the configured ones, and the `--app-id` app when no
    // app is configured or `DAPR_API_TOKEN` makes it reachable.
    let mut apps: Vec<&str> = settings.apps.iter().map(|a| a.id.as_str()).collect();
    if (settings.apps.is_empty() || settings.api_token.is_some()) && !apps.contains(&default_app) {
        apps.push(default_app);
    }
    errors.extend(prefix_clashes(components, &apps));
    errors
}

/// Two stores on the same server and database whose fixed key prefix (a store name or a
/// custom prefix) equals an app id writing through the other, or the other's fixed prefix.
fn prefix_clashes(components: &[LoadedComponent], apps: &[&str]) -> Vec<ConfigError> {
    use crate::keys::KeyPrefix;
    let mut errors = Vec::new();
    let fixed = |c: &LoadedComponent| -> Option<(String, &'static str)> {
        match &c.key_prefix {
            KeyPrefix::StoreName => Some((c.name.clone(), "name")),
            KeyPrefix::Custom(p) => Some((p.clone(), "a custom prefix")),
            KeyPrefix::AppId | KeyPrefix::None => None,
        }
    };
    let shared = |a: &LoadedComponent, b: &LoadedComponent| {
        a.locations.iter().any(|l| b.locations.contains(l))
    };
    for (i, b) in components.iter().enumerate() {
        let Some((prefix, how)) = fixed(b) else {
            continue;
        };
        for (j, a) in components.iter().enumerate() {
            if i == j || !shared(a, b) {
                continue;
            }
            let clash = match &a.key_prefix {
                KeyPrefix::AppId => apps
                    .iter()
                    .find(|id| **id == prefix && a.visible_to(id))
                    .map(|id| {
                        format!(
                            "app '{id}' writes its own keys there through store '{}'",
                            a.name
                        )
                    }),
                // A store-name prefix meeting a custom one (each pair reported once).
                KeyPrefix::StoreName | KeyPrefix::Custom(_) if j < i => fixed(a)
                    .filter(|(p, h)| *p == prefix && *h != how)
                    .map(|(_, h)| format!("store '{}' uses the same prefix ({h})", a.name)),
                _ => None,
            };
            if let Some(clash) = clash {
                errors.push(ConfigError::new(
                    &b.file,
                    "spec.metadata.keyPrefix",
                    format!(
                        "store '{}' writes keys '{prefix}||...' ({how}) on the same {} as store '{}', and {clash}: the two would read and overwrite each other's keys. Rename the store or the app, give the store another keyPrefix, or move it to another database, table or bucket",
                        b.name, b.component_type, a.name
                    ),
                ));
            }
        }
    }
    errors
}

/// Every app setting that cannot hold: a tightening of an unknown or out-of-scope store, a
/// loosening of the operator's lint mode or policy, and a required capability that a store in
/// the app's scope rejects or ignores (naming the app, the store and the capability).
fn app_problems(
    file: &Path,
    settings: &Settings,
    components: &[LoadedComponent],
    failed: &[String],
) -> Vec<ConfigError> {
    use crate::capabilities::Status;
    let mut errors = Vec::new();
    for (i, app) in settings.apps.iter().enumerate() {
        for (store, tight) in app.stores.iter().filter(|(s, _)| !failed.contains(s)) {
            errors.extend(tightening_problems(
                file, settings, components, i, app, store, tight,
            ));
        }
        if app.requires.is_empty() {
            continue;
        }
        for c in components.iter().filter(|c| c.visible_to(&app.id)) {
            let Ok(matrix) = c.app_matrix(settings, app) else {
                continue;
            };
            for req in &app.requires {
                let status = matrix.requirement_status(req).unwrap_or(Status::Rejected);
                if !status.is_real() {
                    errors.push(ConfigError::new(
                        file,
                        format!("apps[{i}].requires"),
                        format!(
                            "app '{}' requires {req}, but store '{}' ({}) in its scope has it {status}",
                            app.id, c.name, c.component_type
                        ),
                    ));
                }
            }
        }
    }
    errors
}

/// The problems of one app's tightening of `store` (`apps[i].stores.<store>`): an unknown
/// or out-of-scope store, a lint mode or an action looser than the operator's.
fn tightening_problems(
    file: &Path,
    settings: &Settings,
    components: &[LoadedComponent],
    i: usize,
    app: &AppConfig,
    store: &str,
    tight: &settings::AppStoreSettings,
) -> Vec<ConfigError> {
    use crate::capabilities::{Action, Status};
    let mut errors = Vec::new();
    let field = format!("apps[{i}].stores.{store}");
    let Some(c) = components.iter().find(|c| c.name == store) else {
        errors.push(ConfigError::new(
            file,
            field,
            format!(
                "app '{}': no state store named '{store}' is configured",
                app.id
            ),
        ));
        return errors;
    };
    if !c.visible_to(&app.id) {
        errors.push(ConfigError::new(
            file,
            field,
            format!(
                "app '{}': store '{store}' is not in the app's scope",
                app.id
            ),
        ));
        return errors;
    }
    let base = c.lint_mode(settings, None);
    if let Some(mode) = tight.lint.filter(|m| *m < base) {
        errors.push(ConfigError::new(
            file,
            format!("{field}.lint"),
            format!(
                "app '{}': lint '{}' on store '{store}' would loosen the operator's '{}': an app may only make a store stricter",
                app.id,
                mode.as_str(),
                base.as_str()
            ),
        ));
    }
    let Ok(matrix) = c.matrix(settings) else {
        return errors;
    };
    for (feature, action) in &tight.policy {
        let status = matrix.status(*feature);
        let same = matches!(
            (action, status),
            (Action::Emulate, Status::Emulated) | (Action::Ignore, Status::Ignored)
        );
        if *action != Action::Reject && !same {
            errors.push(ConfigError::new(
                file,
                format!("{field}.{}", feature.policy_name()),
                format!(
                    "app '{}': '{}' for capability {} on store '{store}' would loosen the operator's decision ({status}): an app may only tighten to 'reject'",
                    app.id,
                    action.as_str(),
                    feature.policy_name()
                ),
            ));
        }
    }
    errors
}

/// Where to load configuration from.
#[derive(Debug, Clone)]
pub struct ConfigSources {
    /// `--config`: Mecha's own file; `None` means the default path, which may be absent.
    pub config_file: Option<PathBuf>,
    /// `--resources-path`: `None` means the default path, falling back to the embedded
    /// default store when that directory does not exist.
    pub resources_path: Option<PathBuf>,
    /// `--tls-*` flags: `server.tls` fields that replace the file's.
    pub tls_flags: RawTls,
}

/// The environment variable of daprd's single API token.
pub const API_TOKEN_ENV: &str = "DAPR_API_TOKEN";

/// The default `--config` path.
pub const DEFAULT_CONFIG_FILE: &str = "config/mecha.yaml";
/// The default `--resources-path`.
pub const DEFAULT_RESOURCES_PATH: &str = "config/components";

/// What a load found: the configuration when there is no problem, every problem, and every
/// warning (shown with the problems, never hidden by them).
pub struct LoadReport {
    /// The configuration, when `errors` is empty.
    pub config: Option<Config>,
    /// Every problem found.
    pub errors: Vec<ConfigError>,
    /// Every non-fatal finding.
    pub warnings: Vec<ConfigError>,
}

impl Config {
    /// Reads and validates everything; on failure returns every problem found.
    pub fn load(sources: &ConfigSources) -> Result<Config, Vec<ConfigError>> {
        let report = Config::load_report(sources);
        report.config.ok_or(report.errors)
    }

    /// Reads and validates everything, keeping the warnings beside the problems.
    pub fn load_report(sources: &ConfigSources) -> LoadReport {
        let config_file = sources
            .config_file
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_FILE));
        let (settings, mut errors) = load_settings(sources);
        let source = match &sources.resources_path {
            Some(dir) => ComponentSource::Dir(dir.clone()),
            None if Path::new(DEFAULT_RESOURCES_PATH).is_dir() => {
                ComponentSource::Dir(PathBuf::from(DEFAULT_RESOURCES_PATH))
            }
            None => ComponentSource::Embedded,
        };
        let parsed = load_components(&source);
        errors.extend(parsed.errors);
        if errors.is_empty() && parsed.components.is_empty() && parsed.failed.is_empty() {
            errors.push(no_store(&source));
        }
        errors.extend(policy_problems(
            &config_file,
            &settings,
            &parsed.components,
            &parsed.failed,
        ));
        if let Some(tls) = &settings.server.tls {
            errors.extend(
                crate::tls::check(tls)
                    .into_iter()
                    .map(|(field, msg)| ConfigError::new(&config_file, field, msg)),
            );
        }
        let config = errors.is_empty().then(|| Config {
            settings,
            components: parsed.components,
            warnings: parsed.warnings.clone(),
        });
        LoadReport {
            config,
            errors,
            warnings: parsed.warnings,
        }
    }
}

/// Mecha's own file (absent at the default path: the defaults), with `DAPR_API_TOKEN`; on a
/// problem, the defaults and every problem.
fn load_settings(sources: &ConfigSources) -> (Settings, Vec<ConfigError>) {
    let env = |k: &str| std::env::var(k).ok();
    let parse =
        |path: &Path, text: &str| Settings::parse_report(path, text, &env, &sources.tls_flags);
    let (path, explicit) = match &sources.config_file {
        Some(path) => (path.as_path(), true),
        None => (Path::new(DEFAULT_CONFIG_FILE), false),
    };
    let (mut settings, errors) = match std::fs::read_to_string(path) {
        Ok(text) => parse(path, &text),
        Err(e) if !explicit && e.kind() == std::io::ErrorKind::NotFound => parse(path, ""),
        Err(e) => (
            Settings::default(),
            vec![ConfigError::new(path, "", format!("cannot read: {e}"))],
        ),
    };
    // daprd's single-token mode, exactly as daprd reads it.
    settings.api_token = std::env::var(API_TOKEN_ENV).ok().filter(|t| !t.is_empty());
    (settings, errors)
}

/// The problem of a configuration without a state store.
fn no_store(source: &ComponentSource) -> ConfigError {
    let at = match source {
        ComponentSource::Dir(dir) => dir.clone(),
        ComponentSource::Embedded => PathBuf::from("<embedded default>"),
    };
    ConfigError::new(
        &at,
        "",
        "no state store is configured: no `kind: Component` document of a state store type \
         was found (Mecha serves state stores only; without --resources-path and without \
         config/components, Mecha runs on its embedded in-memory store)",
    )
}
