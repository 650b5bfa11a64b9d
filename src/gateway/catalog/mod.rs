//! The catalog: which stores exist (the stores side, [`StoreInfo`]), which app is calling
//! ([`Apps`]: tokens, quotas, extended metadata, requirements), and the limits. One catalog is one
//! version of the configuration: immutable (except extended metadata and token files) and
//! shared by every gateway actor and front door. A reload builds the next version with
//! [`Catalog::next`], which carries over the running parts of every store whose definition
//! did not change, and publishes it through [`super::Live`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

mod apps;
mod stores;
mod targets;

pub use apps::Apps;
pub use stores::{AppView, StoreInfo};
pub use targets::{TargetType, Targets};

use super::usage::Usage;
use crate::capabilities::lint::LintCode;
use crate::capabilities::portability;
use crate::config::{Limits, ValidConfig};
use crate::error::{Error, ErrorKind};
use crate::model::{AppId, Operation};

/// A call turned away at the door: unauthenticated (`app` is `None`) or over its app's
/// quota (answered after `delay`, which slows a client that retries at once).
#[derive(Debug)]
pub struct Turned {
    /// The authenticated app, if the token was valid.
    pub app: Option<AppId>,
    /// The 401 / 429 error to answer with.
    pub error: Error,
    /// How long to wait before answering.
    pub delay: std::time::Duration,
}

/// The metadata an app sees, protocol-neutral (see [`Catalog::metadata_view`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataView {
    /// The app's id.
    pub id: String,
    /// Mecha's runtime version string.
    pub runtime_version: &'static str,
    /// The stores the app can see.
    pub components: Vec<ComponentView>,
    /// Extended metadata: the app's attributes, the versions, its requirements.
    pub extended: BTreeMap<String, String>,
}

/// One store as the metadata shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentView {
    /// The store's name.
    pub name: String,
    /// Its component type (`state.redis`).
    pub component_type: String,
    /// Its component version.
    pub version: String,
    /// Dapr's capability strings of the app's view of it.
    pub capabilities: Vec<String>,
}

/// How often the same lint finding (app, store, code) may be logged.
pub const LINT_LOG_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);
/// Most (app, store, code) triples remembered by the lint log limiter.
const LINT_LOG_MAX_ENTRIES: usize = 4096;

/// Every store and app of one configuration version, plus limits.
pub struct Catalog {
    version: u64,
    stores: Vec<StoreInfo>,
    /// Keyed by shared names: a door hands a call the catalog's own name ([`Catalog::shared_name`]).
    by_name: HashMap<Arc<str>, usize>,
    apps: Apps,
    /// Request limits.
    pub limits: Limits,
    /// Every store type as a portability target, and each app's targets.
    targets: Targets,
    lint_log: parking_lot::Mutex<HashMap<(AppId, usize, LintCode), std::time::Instant>>,
    usage: Usage,
}

impl Catalog {
    /// Builds the catalog (version 1) from a validated configuration.
    pub fn new(config: &ValidConfig) -> Catalog {
        Catalog::build(config, None)
    }

    /// The next version of this catalog, from a reloaded and validated configuration. A
    /// store whose backend definition is unchanged keeps its backend (connections, data),
    /// health and metrics; if its effective matrix and resiliency are unchanged too it keeps
    /// its shards (gateways reuse them, see [`StoreInfo::same_shards`]). Quota budgets of
    /// apps whose quota did not change, extended metadata and usage counts carry over.
    pub fn next(&self, config: &ValidConfig) -> Catalog {
        Catalog::build(config, Some(self))
    }

    /// This catalog's version of the configuration (1 at start, +1 per applied reload).
    pub fn version(&self) -> u64 {
        self.version
    }

    fn build(config: &ValidConfig, previous: Option<&Catalog>) -> Catalog {
        let settings = config.settings();
        let stores: Vec<StoreInfo> = config
            .components()
            .iter()
            .map(|c| StoreInfo::build(c, settings, config.app_id(), previous))
            .collect();
        if let Some(c) = config.components().first() {
            crate::metrics::resiliency_loaded(config.app_id(), &c.resiliency.resources);
        }
        let by_name = stores
            .iter()
            .enumerate()
            .map(|(i, s)| (Arc::from(s.name.as_str()), i))
            .collect();
        let apps = Apps::build(settings, config.app_id(), previous.map(|p| &p.apps));
        let app_ids = settings
            .apps
            .iter()
            .map(|a| AppId::from(a.id.as_str()))
            .chain(std::iter::once(apps.default_app().clone()));
        let usage = Usage::carried(
            app_ids,
            stores.iter().map(|s| s.name.clone()).collect(),
            previous.map(|p| &p.usage),
        );
        Catalog {
            version: previous.map_or(1, |p| p.version + 1),
            usage,
            stores,
            by_name,
            apps,
            limits: settings.limits.clone(),
            targets: Targets::build(settings),
            lint_log: parking_lot::Mutex::new(HashMap::new()),
        }
    }

    /// The apps side: tokens, quotas, extended metadata, requirements.
    pub fn apps(&self) -> &Apps {
        &self.apps
    }

    /// Every store.
    pub fn stores(&self) -> &[StoreInfo] {
        &self.stores
    }

    /// A configured store by name (scopes not applied).
    pub fn store_named(&self, name: &str) -> Option<&StoreInfo> {
        self.by_name.get(name).map(|i| &self.stores[*i])
    }

    /// The catalog's own copy of the store name `name`, shared (scopes not applied): a door
    /// names a configured store in its call with it instead of a copy of the request's text.
    pub fn shared_name(&self, name: &str) -> Option<Arc<str>> {
        self.by_name.get_key_value(name).map(|(k, _)| k.clone())
    }

    /// The index of the store `name` (scopes not applied).
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// One store by index (from [`Catalog::resolve`]).
    pub fn store(&self, index: usize) -> &StoreInfo {
        &self.stores[index]
    }

    /// Finds the store `name` for `app`, with daprd's checks in daprd's order: no stores at
    /// all, then unknown (or out-of-scope) store. Capabilities are negotiated by the gateway.
    pub fn resolve(&self, app: &AppId, name: &str, op: Operation) -> Result<usize, Error> {
        let fail = |kind| Error::new(kind, op).store(name).app(app.as_ref());
        if self.stores.is_empty() {
            return Err(fail(ErrorKind::StoreNotConfigured));
        }
        self.by_name
            .get(name)
            .copied()
            .filter(|i| self.stores[*i].visible_to(app))
            .ok_or_else(|| fail(ErrorKind::StoreNotFound))
    }

    /// Whether a lint finding of `code` for `app` on store `index` should be logged now: at
    /// most once per `LINT_LOG_INTERVAL` (a minute) per (app, store, code). The memory is bounded:
    /// when full, entries older than the interval are dropped, then everything.
    pub fn lint_log_due(&self, app: &AppId, index: usize, code: LintCode) -> bool {
        let now = std::time::Instant::now();
        let mut seen = self.lint_log.lock();
        let key = (app.clone(), index, code);
        if let Some(last) = seen.get(&key)
            && now.duration_since(*last) < LINT_LOG_INTERVAL
        {
            return false;
        }
        if seen.len() >= LINT_LOG_MAX_ENTRIES {
            seen.retain(|_, t| now.duration_since(*t) < LINT_LOG_INTERVAL);
            if seen.len() >= LINT_LOG_MAX_ENTRIES {
                seen.clear();
            }
        }
        seen.insert(key, now);
        true
    }

    /// The calling app's requirements per store in its scope, as extended metadata:
    /// `mecha.requires.<store>` = `TTL=met(emulated),TRANSACTIONAL=met(native)`. Empty when
    /// the app requires nothing.
    pub fn requirements(&self, app: &str) -> BTreeMap<String, String> {
        let Some(reqs) = self.apps.requires(app) else {
            return BTreeMap::new();
        };
        self.stores
            .iter()
            .filter(|s| s.visible_to(app))
            .map(|s| {
                let (matrix, _) = s.view(app);
                let value = reqs
                    .iter()
                    .map(|r| {
                        let st = matrix
                            .requirement_status(r)
                            .unwrap_or(crate::capabilities::Status::Rejected);
                        let met = if st.is_real() { "met" } else { "unmet" };
                        format!("{r}={met}({st})")
                    })
                    .collect::<Vec<_>>()
                    .join(",");
                (format!("mecha.requires.{}", s.name), value)
            })
            .collect()
    }

    /// The calling app's portability targets as extended metadata, so an SDK-side check is
    /// possible: `mecha.portableTo` = `state.jetstream,state.redis`, `mecha.portability` =
    /// `warn`, and per target `mecha.portableTo.<type>` = what it serves (the matrix, as in
    /// `mecha.matrix.<store>`). Empty when the app has no targets.
    pub fn portability_targets(&self, app: &str) -> BTreeMap<String, String> {
        let Some(mine) = self.targets.of_app(app) else {
            return BTreeMap::new();
        };
        let mut out = BTreeMap::new();
        let types: Vec<&str> = mine.iter().map(|t| t.component_type).collect();
        out.insert("mecha.portableTo".to_owned(), types.join(","));
        out.insert(
            "mecha.portability".to_owned(),
            mine.mode.as_str().to_owned(),
        );
        for t in mine.iter() {
            out.insert(
                format!("mecha.portableTo.{}", t.component_type),
                t.matrix.describe(),
            );
        }
        out
    }

    /// What each app's traffic used (the portability report's counts).
    pub fn usage(&self) -> &Usage {
        &self.usage
    }

    /// Every store type as a portability target, and each app's targets.
    pub fn targets(&self) -> &Targets {
        &self.targets
    }

    /// The portability report of `app`'s traffic since start (on every store it can see, each
    /// under the app's view of it) for a move to store type `target`, or, without one, for
    /// every registered type, most portable first. `Err` names the known types when `target`
    /// is not one.
    pub fn portability(
        &self,
        app: &AppId,
        target: Option<&str>,
    ) -> Result<Vec<portability::Report>, String> {
        let sources: Vec<portability::Source<'_>> = self
            .stores
            .iter()
            .enumerate()
            .filter(|(_, s)| s.visible_to(app))
            .map(|(i, s)| portability::Source {
                store: &s.name,
                matrix: s.view(app).0,
                usage: self.usage.counts(app, i),
            })
            .collect();
        let report = |t: &TargetType| portability::report(t.component_type, &t.matrix, &sources);
        let Some(target) = target else {
            let mut all: Vec<portability::Report> =
                self.targets.types().iter().map(report).collect();
            all.sort_by_key(|r| (r.verdict, r.affected()));
            return Ok(all);
        };
        let t = self.targets.get(target).ok_or_else(|| {
            let known: Vec<&str> = self
                .targets
                .types()
                .iter()
                .map(|t| t.component_type)
                .collect();
            format!(
                "unknown target store type '{target}': use one of {}",
                known.join(", ")
            )
        })?;
        Ok(vec![report(t)])
    }

    /// What `GET /v1.0/metadata` and gRPC `GetMetadata` answer for `app`: its id, the stores
    /// it can see with the capabilities of its view, and its extended metadata (with the
    /// runtime versions and its portability requirements). Both doors render this one view.
    pub fn metadata_view(&self, app: &AppId, runtime_version: &'static str) -> MetadataView {
        let components = self
            .stores()
            .iter()
            .filter(|s| s.visible_to(app))
            .map(|s| ComponentView {
                name: s.name.clone(),
                component_type: s.component_type.clone(),
                version: s.version.clone(),
                capabilities: s.view(app).0.dapr_strings(),
            })
            .collect();
        let mut extended = self.extended(app, runtime_version);
        extended.extend(self.requirements(app));
        extended.extend(self.portability_targets(app));
        MetadataView {
            id: app.to_string(),
            runtime_version,
            components,
            extended,
        }
    }

    /// `app`'s extended metadata: its own attributes plus Mecha's, with the capabilities of
    /// the stores it can see only.
    pub fn extended(&self, app: &AppId, runtime_version: &str) -> BTreeMap<String, String> {
        let mut out = self.apps.attributes(app);
        out.insert("daprRuntimeVersion".into(), runtime_version.into());
        out.insert("mechaVersion".into(), env!("CARGO_PKG_VERSION").into());
        for s in self.stores.iter().filter(|s| s.visible_to(app)) {
            out.insert(
                format!("mecha.capabilities.{}", s.name),
                s.capabilities.to_list_string(),
            );
            out.insert(format!("mecha.matrix.{}", s.name), s.view(app).0.describe());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lint_log_is_rate_limited_per_app_store_and_code() {
        let config = crate::config::Config {
            settings: crate::config::Settings::default(),
            components: Vec::new(),
            warnings: Vec::new(),
        };
        let config = config
            .validate(std::path::Path::new("mecha.yaml"), "app")
            .unwrap();
        let catalog = Catalog::new(&config);
        let (a, b): (AppId, AppId) = ("a".into(), "b".into());
        assert!(catalog.lint_log_due(&a, 0, LintCode::UnknownKey));
        assert!(
            !catalog.lint_log_due(&a, 0, LintCode::UnknownKey),
            "within the minute"
        );
        assert!(catalog.lint_log_due(&a, 0, LintCode::ComponentLevelKey));
        assert!(catalog.lint_log_due(&a, 1, LintCode::UnknownKey));
        assert!(catalog.lint_log_due(&b, 0, LintCode::UnknownKey));
        // Bounded: past the cap, the memory is cleared rather than grown.
        for i in 0..LINT_LOG_MAX_ENTRIES + 10 {
            catalog.lint_log_due(&a, i, LintCode::InvalidValue);
        }
        assert!(catalog.lint_log.lock().len() <= LINT_LOG_MAX_ENTRIES);
    }
}
