//! The catalog: which stores exist, which app is calling, and the limits. One catalog is one
//! version of the configuration: immutable (except extended metadata and token files) and
//! shared by every gateway actor and front door. A reload builds the next version with
//! [`Catalog::next`], which carries over the running parts of every store whose definition
//! did not change, and publishes it through [`super::Live`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::auth::Tokens;
use super::extended::ExtendedMetadata;
use super::quota::{Permit, Quotas, Refusal};
use super::usage::Usage;
use crate::actors::emulation;
use crate::actors::{StoreFactory, StoreHealth};
use crate::capabilities::lint::{LintCode, LintMode, LintTarget, RequestKey};
use crate::capabilities::{Baseline, CapabilitySet, Feature, Matrix, portability};
use crate::config::resiliency::StoreResiliency;
use crate::config::{Limits, LoadedComponent, Settings, TokenSource};
use crate::error::{Error, ErrorKind};
use crate::keys::KeyPrefix;
use crate::model::Operation;

/// The calling app's id (used for key prefixes, scopes and metrics).
use crate::model::AppId;

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
    /// The store's resiliency (breaker, retry, attempt timeout), shared by all its shards.
    pub resilience: Arc<crate::resilience::Resilience>,
    /// Builds store instances (one per shard), wrapped in the store's emulations.
    pub factory: Arc<dyn StoreFactory>,
    /// The backend's own factory (without emulations): it holds the connections (or, for
    /// the in-memory store, the data), so a reload that keeps the definition keeps it.
    pub base_factory: Arc<dyn StoreFactory>,
    /// The digest of the backend definition ([`LoadedComponent::definition`]).
    pub definition: String,
    /// The resiliency settings `resilience` was built from.
    pub resiliency: StoreResiliency,
    /// In-flight gauge and round-trip histogram of the store.
    pub metrics: crate::metrics::StoreMetrics,
    /// Set by the first pipeline, whose shard runs housekeeping.
    pub(crate) primary_claimed: Arc<AtomicBool>,
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
    /// Whether a gateway may keep its shard of `old` for this store: same backend instance
    /// factory (emulations included) and same resiliency.
    pub fn same_shards(&self, old: &StoreInfo) -> bool {
        Arc::ptr_eq(&self.factory, &old.factory) && Arc::ptr_eq(&self.resilience, &old.resilience)
    }

    /// Claims the primary shard (the one that runs housekeeping); true for the first caller.
    pub(crate) fn claim_primary(&self) -> bool {
        !self.primary_claimed.swap(true, Ordering::SeqCst)
    }

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

impl StoreInfo {
    /// The store of component `c`. What a reload did not change is carried over from the
    /// `previous` catalog's store of the same name: its backend (when the definition is
    /// the same), its emulations (same matrix), resiliency state, health and metrics.
    fn build(c: &LoadedComponent, settings: &Settings, previous: Option<&Catalog>) -> StoreInfo {
        let matrix = c.matrix(settings).expect("policies were checked above");
        let old = previous
            .and_then(|p| p.store_named(&c.name))
            .filter(|o| o.definition == c.definition && o.component_type == c.component_type);
        let base_factory = old.map_or_else(|| c.factory.clone(), |o| o.base_factory.clone());
        let same_matrix = old.is_some_and(|o| o.matrix == matrix);
        let same_resiliency = old.is_some_and(|o| o.resiliency == c.resiliency);
        // Emulations wrap every instance of the store, so no path bypasses them.
        let factory = match old.filter(|_| same_matrix) {
            Some(o) => o.factory.clone(),
            None => emulation::wrap(
                base_factory.clone(),
                &matrix,
                settings.actors.ttl_sweep_interval,
            ),
        };
        let resilience = match old.filter(|_| same_resiliency) {
            Some(o) => o.resilience.clone(),
            None => {
                if c.resiliency.breaker.is_some() {
                    crate::metrics::breaker_started(&c.name);
                }
                Arc::new(crate::resilience::Resilience::new(
                    &c.name,
                    c.resiliency.breaker.clone(),
                    c.resiliency.retry.clone(),
                    c.resiliency.timeout.as_ref().map(|(_, d)| *d),
                ))
            }
        };
        let primary_claimed = match old.filter(|_| same_matrix && same_resiliency) {
            Some(o) => o.primary_claimed.clone(),
            None => Arc::new(AtomicBool::new(false)),
        };
        StoreInfo {
            name: c.name.clone(),
            component_type: c.component_type.clone(),
            version: c.version.clone(),
            capabilities: base_factory.capabilities(),
            max_transaction_ops: matrix.max_transaction_ops(),
            matrix,
            key_prefix: c.key_prefix.clone(),
            scopes: c.scopes.clone(),
            health: old.map_or_else(|| Arc::new(StoreHealth::default()), |o| o.health.clone()),
            metrics: old.map_or_else(
                || crate::metrics::StoreMetrics::new(&c.name),
                |o| o.metrics.clone(),
            ),
            resilience,
            factory,
            base_factory,
            definition: c.definition.clone(),
            resiliency: c.resiliency.clone(),
            primary_claimed,
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
    }
}

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

/// Every store and app, plus limits.
pub struct Catalog {
    version: u64,
    stores: Vec<StoreInfo>,
    by_name: HashMap<String, usize>,
    default_app: AppId,
    tokens: Tokens,
    metrics_token: Tokens,
    quotas: Arc<Quotas>,
    /// Request limits.
    pub limits: Limits,
    /// What stores do where their policy says nothing (the portability report assumes it for
    /// a target store type).
    baseline: Baseline,
    extended: Arc<ExtendedMetadata>,
    requires: HashMap<String, Vec<&'static str>>,
    lint_log: parking_lot::Mutex<HashMap<(AppId, usize, LintCode), std::time::Instant>>,
    usage: Usage,
}

impl Catalog {
    /// Builds the catalog from configuration (version 1). Fails, listing every problem, when
    /// a store's policy would break a guarantee (see [`crate::config::policy_problems`]).
    pub fn new(
        components: &[LoadedComponent],
        settings: &Settings,
        default_app: &str,
    ) -> Result<Catalog, Vec<String>> {
        Catalog::build(components, settings, default_app, None)
    }

    /// The next version of this catalog, from reloaded configuration. A store whose backend
    /// definition is unchanged keeps its backend (connections, data), health and metrics; if
    /// its effective matrix and resiliency are unchanged too it keeps its shards (gateways
    /// reuse them, see [`StoreInfo::same_shards`]). Quota budgets of apps whose quota did not
    /// change, extended metadata and usage counts carry over.
    pub fn next(
        &self,
        components: &[LoadedComponent],
        settings: &Settings,
    ) -> Result<Catalog, Vec<String>> {
        let default_app = self.default_app.clone();
        Catalog::build(components, settings, &default_app, Some(self))
    }

    /// This catalog's version of the configuration (1 at start, +1 per applied reload).
    pub fn version(&self) -> u64 {
        self.version
    }

    fn build(
        components: &[LoadedComponent],
        settings: &Settings,
        default_app: &str,
        previous: Option<&Catalog>,
    ) -> Result<Catalog, Vec<String>> {
        let file = std::path::Path::new("mecha.yaml");
        let mut problems = crate::config::policy_problems(file, settings, components);
        problems.extend(crate::config::namespace_problems(
            file,
            settings,
            components,
            default_app,
        ));
        if !problems.is_empty() {
            return Err(problems.iter().map(ToString::to_string).collect());
        }
        let limits = settings.limits.clone();
        let stores: Vec<StoreInfo> = components
            .iter()
            .map(|c| StoreInfo::build(c, settings, previous))
            .collect();
        let by_name = stores
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.clone(), i))
            .collect();
        let default_app = AppId::from(default_app);
        let apps: Vec<(AppId, &crate::config::AppConfig)> = settings
            .apps
            .iter()
            .map(|a| (AppId::from(a.id.as_str()), a))
            .collect();
        // daprd's DAPR_API_TOKEN is the token of the --app-id app.
        let dapr_token = settings
            .api_token
            .clone()
            .map(|t| (default_app.clone(), TokenSource::Value(t)));
        let tokens = Tokens::new(
            apps.iter()
                .map(|(id, a)| (id.clone(), a.token.clone()))
                .chain(dapr_token),
        );
        let mut quotas: Vec<_> = apps.iter().map(|(id, a)| (id.clone(), a.quota)).collect();
        if !quotas.iter().any(|(id, _)| *id == default_app) {
            quotas.push((default_app.clone(), settings.quota));
        }
        let usage = Usage::carried(
            apps.iter()
                .map(|(id, _)| id.clone())
                .chain(std::iter::once(default_app.clone())),
            stores.iter().map(|s| s.name.clone()).collect(),
            previous.map(|p| &p.usage),
        );
        Ok(Catalog {
            version: previous.map_or(1, |p| p.version + 1),
            usage,
            stores,
            by_name,
            tokens,
            metrics_token: Tokens::new(
                settings
                    .metrics_token
                    .clone()
                    .map(|t| (AppId::from("metrics"), t)),
            ),
            quotas: Arc::new(Quotas::carried(
                quotas,
                previous.map(|p| &*p.quotas),
                Some(&super::quota::BodyLimits {
                    in_flight: limits.resources.max_body_bytes_in_flight,
                    wait: limits.resources.body_memory_wait,
                }),
            )),
            // Restart-only limits bound it (see `crate::reload`): the apps' attributes stay.
            extended: previous.map_or_else(
                || Arc::new(ExtendedMetadata::new(&limits)),
                |p| p.extended.clone(),
            ),
            default_app,
            limits,
            baseline: settings.baseline,
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

    /// A configured store by name (scopes not applied).
    pub fn store_named(&self, name: &str) -> Option<&StoreInfo> {
        self.by_name.get(name).map(|i| &self.stores[*i])
    }

    /// The index of the store `name` (scopes not applied).
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
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
        !self.tokens.is_empty()
    }

    /// The calling app, from its `dapr-api-token` (ignored when no token is configured:
    /// no apps and no `DAPR_API_TOKEN`).
    pub fn authenticate(&self, token: Option<&str>) -> Result<AppId, Error> {
        if self.tokens.is_empty() {
            return Ok(self.default_app.clone());
        }
        match token {
            None | Some("") => Err(Error::new(ErrorKind::Unauthorized, Operation::Other)
                .detail("missing api token in request metadata")),
            Some(t) => self.tokens.find(t).ok_or_else(|| {
                Error::new(ErrorKind::Unauthorized, Operation::Other)
                    .detail("authentication error: api token mismatch")
            }),
        }
    }

    /// The first step of every call on both doors: who is calling (its `dapr-api-token`),
    /// then whether its app may call now (its quota). The permit is held until the call has
    /// answered; the doors only render a refusal, after its delay.
    pub fn admit_call(&self, token: Option<&str>) -> Result<(AppId, Permit), Box<Turned>> {
        let app = self.authenticate(token).map_err(|error| {
            Box::new(Turned {
                app: None,
                error,
                delay: std::time::Duration::ZERO,
            })
        })?;
        match self.admit(&app) {
            Ok(permit) => Ok((app, permit)),
            Err(Refusal { error, delay }) => Err(Box::new(Turned {
                app: Some(app),
                error,
                delay,
            })),
        }
    }

    /// Whether `token` is a valid app token (only then do health answers carry error text).
    pub fn is_valid_token(&self, token: Option<&str>) -> bool {
        token.is_some_and(|t| self.tokens.find(t).is_some())
    }

    /// Whether `token` may read `/metrics` (always, when no metrics token is configured).
    pub fn metrics_allowed(&self, token: Option<&str>) -> bool {
        self.metrics_token.is_empty() || token.is_some_and(|t| self.metrics_token.find(t).is_some())
    }

    /// Whether any token comes from a file that [`Catalog::reload_tokens`] must watch.
    pub fn has_token_files(&self) -> bool {
        self.tokens.has_files() || self.metrics_token.has_files()
    }

    /// Re-reads token files that changed.
    pub fn reload_tokens(&self) {
        self.tokens.reload();
        self.metrics_token.reload();
    }

    /// Admits one request of `app` under its quota (hold the permit until the answer).
    pub fn admit(&self, app: &AppId) -> Result<Permit, Refusal> {
        self.quotas.admit(app)
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

    /// What each app's traffic used (the portability report's counts).
    pub fn usage(&self) -> &Usage {
        &self.usage
    }

    /// The portability report of `app`'s traffic since start (on every store it can see) for
    /// a move to store type `target` under the configured default policy. `Err` names the
    /// known types when `target` is not one.
    pub fn portability(
        &self,
        app: &AppId,
        target: &str,
    ) -> Result<(&'static str, Vec<&str>, portability::Report), String> {
        let descriptor = crate::actors::backends::lookup(target).ok_or_else(|| {
            let known: Vec<&str> = crate::actors::backends::REGISTRY
                .iter()
                .map(|d| d.component_type)
                .collect();
            format!(
                "unknown target store type '{target}': use one of {}",
                known.join(", ")
            )
        })?;
        let matrix = Matrix::without_policy(
            descriptor.default_traits(self.limits.max_transaction_ops),
            self.baseline,
        );
        let mut used = Vec::new();
        let sources: Vec<portability::Source<'_>> = self
            .stores
            .iter()
            .enumerate()
            .filter(|(_, s)| s.visible_to(app))
            .map(|(i, s)| portability::Source {
                matrix: &s.matrix,
                usage: self.usage.counts(app, i),
            })
            .collect();
        for (i, s) in self.stores.iter().enumerate() {
            if s.visible_to(app) && self.usage.counts(app, i).requests > 0 {
                used.push(s.name.as_str());
            }
        }
        Ok((
            descriptor.component_type,
            used,
            portability::report(descriptor.component_type, &matrix, &sources),
        ))
    }

    /// Sets one of `app`'s extended metadata attributes (`PUT /v1.0/metadata/{key}`, gRPC
    /// `SetMetadata`), within the app's metadata limits.
    pub fn set_extended(&self, app: &AppId, key: &str, value: &str) -> Result<(), Error> {
        self.extended.set(app, key, value)
    }

    /// The largest extended-metadata value an app can set, in bytes.
    pub fn max_extended_value(&self) -> usize {
        self.extended.max_value_bytes()
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
        let mut out = self.extended.get(app);
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
