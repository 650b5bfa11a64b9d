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
    parse_size,
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
        let mut problems = policy_problems(file, &self.settings, &self.components);
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
pub fn policy_problems(
    file: &Path,
    settings: &Settings,
    components: &[LoadedComponent],
) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    for name in settings.policies.keys() {
        if !components.iter().any(|c| &c.name == name) {
            errors.push(ConfigError::new(
                file,
                format!("stores.{name}"),
                format!("no state store named '{name}' is configured"),
            ));
        }
    }
    errors.extend(app_problems(file, settings, components));
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
) -> Vec<ConfigError> {
    use crate::capabilities::Status;
    let mut errors = Vec::new();
    for (i, app) in settings.apps.iter().enumerate() {
        for (store, tight) in &app.stores {
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

impl Config {
    /// Reads and validates everything; on failure returns every problem found.
    pub fn load(sources: &ConfigSources) -> Result<Config, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let env = |k: &str| std::env::var(k).ok();
        let parse =
            |path: &Path, text: &str| Settings::parse_full(path, text, &env, &sources.tls_flags);
        let settings = match &sources.config_file {
            Some(path) => match std::fs::read_to_string(path) {
                Ok(text) => parse(path, &text),
                Err(e) => Err(vec![ConfigError::new(
                    path,
                    "",
                    format!("cannot read: {e}"),
                )]),
            },
            None => {
                let path = Path::new(DEFAULT_CONFIG_FILE);
                match std::fs::read_to_string(path) {
                    Ok(text) => parse(path, &text),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => parse(path, ""),
                    Err(e) => Err(vec![ConfigError::new(
                        path,
                        "",
                        format!("cannot read: {e}"),
                    )]),
                }
            }
        }
        .unwrap_or_else(|e| {
            errors.extend(e);
            Settings::default()
        });
        let mut settings = settings;
        // daprd's single-token mode, exactly as daprd reads it.
        settings.api_token = std::env::var(API_TOKEN_ENV).ok().filter(|t| !t.is_empty());

        let source = match &sources.resources_path {
            Some(dir) => ComponentSource::Dir(dir.clone()),
            None if Path::new(DEFAULT_RESOURCES_PATH).is_dir() => {
                ComponentSource::Dir(PathBuf::from(DEFAULT_RESOURCES_PATH))
            }
            None => ComponentSource::Embedded,
        };
        let (components, warnings) = match load_components(&source) {
            Ok(ok) => ok,
            Err(e) => {
                errors.extend(e);
                (Vec::new(), Vec::new())
            }
        };
        let config_file = sources
            .config_file
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_FILE));
        errors.extend(policy_problems(&config_file, &settings, &components));
        if let Some(tls) = &settings.server.tls {
            errors.extend(
                crate::tls::check(tls)
                    .into_iter()
                    .map(|(field, msg)| ConfigError::new(&config_file, field, msg)),
            );
        }
        if errors.is_empty() {
            Ok(Config {
                settings,
                components,
                warnings,
            })
        } else {
            Err(errors)
        }
    }
}
