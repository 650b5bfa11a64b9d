//! The stores side of the catalog: each configured store as the gateway sees it, and what a
//! reload carries over from the previous version of a store.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::Catalog;
use crate::actors::emulation;
use crate::actors::{StoreFactory, StoreHealth};
use crate::capabilities::lint::{LintMode, LintTarget, RequestKey};
use crate::capabilities::{CapabilitySet, Feature, Matrix};
use crate::config::resiliency::StoreResiliency;
use crate::config::{LoadedComponent, Settings};
use crate::keys::KeyPrefix;

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
    pub(super) fn build(
        c: &LoadedComponent,
        settings: &Settings,
        app_id: &str,
        previous: Option<&Catalog>,
    ) -> StoreInfo {
        let matrix = c
            .matrix(settings)
            .expect("a valid configuration's policies build");
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
                emulation::QueryLimits {
                    max_scan: settings.limits.max_query_scan,
                    timeout: settings.actors.request_timeout,
                },
            ),
        };
        let resilience = match old.filter(|_| same_resiliency) {
            Some(o) => o.resilience.clone(),
            None => {
                let target = crate::metrics::ResiliencyTarget {
                    app_id: app_id.to_owned(),
                    name: c.resiliency.resource_name().to_owned(),
                    store: c.name.clone(),
                };
                Arc::new(crate::resilience::Resilience::new(
                    target,
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
                            .expect("a valid configuration's policies build"),
                        lint_mode: c.lint_mode(settings, Some(a)),
                    };
                    (a.id.clone(), view)
                })
                .collect(),
        }
    }
}
