//! The catalog: which stores exist, which app is calling, and the limits. Immutable after
//! start-up (except extended metadata) and shared by every gateway actor and front door.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use parking_lot::RwLock;

use crate::actors::emulation;
use crate::actors::{StoreFactory, StoreHealth};
use crate::capabilities::lint::{LintCode, LintMode, LintTarget, RequestKey};
use crate::capabilities::{CapabilitySet, Feature, Matrix};
use crate::config::{Limits, LoadedComponent, Settings};
use crate::error::{Error, ErrorKind, Operation};
use crate::keys::KeyPrefix;

/// The calling app's id (used for key prefixes, scopes and metrics).
pub type AppId = Arc<str>;

/// One configured store as the gateway sees it.
pub struct StoreInfo {
    /// Component name.
    pub name: String,
    /// Component type.
    pub component_type: String,
    /// Component version.
    pub version: String,
    /// Native capabilities.
    pub capabilities: CapabilitySet,
    /// The effective matrix: native capabilities under the store's policy.
    pub matrix: Matrix,
    /// Key prefix strategy.
    pub key_prefix: KeyPrefix,
    /// Allowed apps (empty: all).
    pub scopes: Vec<String>,
    /// Effective maximum operations per transaction.
    pub max_transaction_ops: usize,
    /// Shared health, updated by the store's actors.
    pub health: Arc<StoreHealth>,
    /// Builds store instances (one per shard).
    pub factory: Arc<dyn StoreFactory>,
    /// Set by the first pipeline, whose shard runs housekeeping.
    pub(crate) primary_claimed: AtomicBool,
    /// The request-metadata lint mode (`stores.<name>.lint`, default `warn`).
    pub lint_mode: LintMode,
    /// Request metadata keys the backend understands beyond the portable ones.
    pub request_keys: &'static [RequestKey],
    /// Apps that tightened this store for themselves: their matrix and lint mode.
    pub per_app: HashMap<String, AppView>,
}

/// What one app sees of a store it tightened for itself.
#[derive(Debug, Clone)]
pub struct AppView {
    /// The store's matrix with the app's `reject` tightenings.
    pub matrix: Matrix,
    /// The stricter of the store's and the app's lint mode.
    pub lint_mode: LintMode,
}

impl StoreInfo {
    /// Whether `app` may use this store.
    pub fn visible_to(&self, app: &str) -> bool {
        self.scopes.is_empty() || self.scopes.iter().any(|s| s == app)
    }

    /// The matrix and lint mode `app` gets (the store's unless the app tightened them).
    /// No allocation; a lookup in an empty map when no app tightened anything.
    pub fn view(&self, app: &str) -> (&Matrix, LintMode) {
        match self.per_app.get(app) {
            Some(v) => (&v.matrix, v.lint_mode),
            None => (&self.matrix, self.lint_mode),
        }
    }

    /// What the lint needs to know about this store, as `matrix` decides it.
    pub fn lint_target<'a>(&'a self, matrix: &Matrix) -> LintTarget<'a> {
        LintTarget {
            store_type: &self.component_type,
            store_keys: self.request_keys,
            ttl: matrix.status(Feature::Ttl),
            partition_key: matrix.status(Feature::PartitionKey),
        }
    }
}

/// How often the same lint finding (app, store, code) may be logged.
pub const LINT_LOG_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);
/// Most (app, store, code) triples remembered by the lint log limiter.
const LINT_LOG_MAX_ENTRIES: usize = 4096;

/// Every store and app, plus limits.
pub struct Catalog {
    stores: Vec<StoreInfo>,
    by_name: HashMap<String, usize>,
    default_app: AppId,
    apps_by_token: HashMap<String, AppId>,
    /// Request limits.
    pub limits: Limits,
    extended: RwLock<BTreeMap<String, String>>,
    requires: HashMap<String, Vec<&'static str>>,
    lint_log: parking_lot::Mutex<HashMap<(AppId, usize, LintCode), std::time::Instant>>,
}

impl Catalog {
    /// Builds the catalog from configuration. Fails, listing every problem, when a store's
    /// policy would break a guarantee (see [`crate::config::policy_problems`]).
    pub fn new(
        components: &[LoadedComponent],
        settings: &Settings,
        default_app: &str,
    ) -> Result<Catalog, Vec<String>> {
        let problems = crate::config::policy_problems(
            std::path::Path::new("mecha.yaml"),
            settings,
            components,
        );
        if !problems.is_empty() {
            return Err(problems.iter().map(ToString::to_string).collect());
        }
        let limits = settings.limits.clone();
        let stores: Vec<StoreInfo> = components
            .iter()
            .map(|c| {
                let matrix = c.matrix(settings).expect("policies were checked above");
                // Emulations wrap every instance of the store, so no path bypasses them.
                let factory = emulation::wrap(
                    c.factory.clone(),
                    &matrix,
                    settings.actors.ttl_sweep_interval,
                );
                StoreInfo {
                    name: c.name.clone(),
                    component_type: c.component_type.clone(),
                    version: c.version.clone(),
                    capabilities: c.capabilities(),
                    max_transaction_ops: matrix.max_transaction_ops(),
                    matrix,
                    key_prefix: c.key_prefix.clone(),
                    scopes: c.scopes.clone(),
                    health: Arc::new(StoreHealth::default()),
                    factory,
                    primary_claimed: AtomicBool::new(false),
                    lint_mode: c.lint_mode(settings, None),
                    request_keys: c.request_keys,
                    per_app: settings
                        .apps
                        .iter()
                        .filter(|a| a.stores.contains_key(&c.name))
                        .map(|a| {
                            let view = AppView {
                                matrix: c
                                    .app_matrix(settings, a)
                                    .expect("policies were checked above"),
                                lint_mode: c.lint_mode(settings, Some(a)),
                            };
                            (a.id.clone(), view)
                        })
                        .collect(),
                }
            })
            .collect();
        let by_name = stores
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.clone(), i))
            .collect();
        let apps_by_token = settings
            .apps
            .iter()
            .map(|a| (a.token.clone(), AppId::from(a.id.as_str())))
            .collect();
        Ok(Catalog {
            stores,
            by_name,
            default_app: AppId::from(default_app),
            apps_by_token,
            limits,
            extended: RwLock::new(BTreeMap::new()),
            requires: settings
                .apps
                .iter()
                .filter(|a| !a.requires.is_empty())
                .map(|a| (a.id.clone(), a.requires.clone()))
                .collect(),
            lint_log: parking_lot::Mutex::new(HashMap::new()),
        })
    }

    /// Every store.
    pub fn stores(&self) -> &[StoreInfo] {
        &self.stores
    }

    /// One store by index (from [`Catalog::resolve`]).
    pub fn store(&self, index: usize) -> &StoreInfo {
        &self.stores[index]
    }

    /// The app id used when no apps are configured.
    pub fn default_app(&self) -> &AppId {
        &self.default_app
    }

    /// Whether callers must present an API token.
    pub fn requires_token(&self) -> bool {
        !self.apps_by_token.is_empty()
    }

    /// The calling app, from its `dapr-api-token` (ignored when no apps are configured).
    pub fn authenticate(&self, token: Option<&str>) -> Result<AppId, Error> {
        if self.apps_by_token.is_empty() {
            return Ok(self.default_app.clone());
        }
        match token {
            None | Some("") => Err(Error::new(ErrorKind::Unauthorized, Operation::Other)
                .detail("missing api token in request metadata")),
            Some(t) => self.apps_by_token.get(t).cloned().ok_or_else(|| {
                Error::new(ErrorKind::Unauthorized, Operation::Other)
                    .detail("authentication error: api token mismatch")
            }),
        }
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
        let Some(reqs) = self.requires.get(app) else {
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

    /// Sets an extended metadata attribute (`PUT /v1.0/metadata/{key}`, gRPC `SetMetadata`).
    pub fn set_extended(&self, key: &str, value: &str) {
        if !key.is_empty() {
            self.extended
                .write()
                .insert(key.to_owned(), value.to_owned());
        }
    }

    /// Extended metadata: user attributes plus Mecha's own.
    pub fn extended(&self, runtime_version: &str) -> BTreeMap<String, String> {
        let mut out = self.extended.read().clone();
        out.insert("daprRuntimeVersion".into(), runtime_version.into());
        out.insert("mechaVersion".into(), env!("CARGO_PKG_VERSION").into());
        for s in &self.stores {
            out.insert(
                format!("mecha.capabilities.{}", s.name),
                s.capabilities.to_list_string(),
            );
            out.insert(format!("mecha.matrix.{}", s.name), s.matrix.describe());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lint_log_is_rate_limited_per_app_store_and_code() {
        let catalog = Catalog::new(&[], &Settings::default(), "app").unwrap();
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
