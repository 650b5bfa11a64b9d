//! The store types an app may move to: every registered type's matrix in its default
//! configuration under the configured baseline, which both the portability report and the
//! apps' portability targets (`apps[].portableTo`) judge against, so that the report says
//! "portable" exactly when no call met a `not-portable` finding.

use std::collections::HashMap;

use crate::actors::backends::{self, REGISTRY};
use crate::capabilities::lint::{LintTarget, RequestKey};
use crate::capabilities::portability::PortabilityMode;
use crate::capabilities::{Feature, Matrix};
use crate::config::Settings;
use crate::model::AppId;

/// One registered store type as a target.
pub struct TargetType {
    /// Its component type, e.g. `state.jetstream`.
    pub component_type: &'static str,
    /// Its matrix: the type's default traits under the configured baseline.
    pub matrix: Matrix,
    /// The request keys its backend understands.
    pub request_keys: &'static [RequestKey],
}

impl TargetType {
    /// What the metadata lint knows of this type.
    pub fn lint_target(&self) -> LintTarget<'static> {
        LintTarget {
            store_type: self.component_type,
            store_keys: self.request_keys,
            ttl: self.matrix.status(Feature::Ttl),
            partition_key: self.matrix.status(Feature::PartitionKey),
        }
    }
}

/// An app's portability targets.
struct AppTargets {
    /// Indexes into [`Targets::types`].
    types: Vec<usize>,
    mode: PortabilityMode,
}

/// Every registered type as a target, and each app's own targets.
pub struct Targets {
    types: Vec<TargetType>,
    per_app: HashMap<AppId, AppTargets>,
}

impl Targets {
    /// The targets of one configuration.
    pub fn build(settings: &Settings) -> Targets {
        let types: Vec<TargetType> = REGISTRY
            .iter()
            .map(|d| TargetType {
                component_type: d.component_type,
                matrix: Matrix::without_policy(
                    d.default_traits(settings.limits.max_transaction_ops),
                    settings.baseline,
                ),
                request_keys: d.request_keys,
            })
            .collect();
        let per_app = settings
            .apps
            .iter()
            .filter(|a| !a.portable_to.is_empty())
            .map(|a| {
                let indexes = a
                    .portable_to
                    .iter()
                    .filter_map(|t| types.iter().position(|x| x.component_type == *t))
                    .collect();
                let targets = AppTargets {
                    types: indexes,
                    mode: a.portability,
                };
                (AppId::from(a.id.as_str()), targets)
            })
            .collect();
        Targets { types, per_app }
    }

    /// Every registered type, in registry order.
    pub fn types(&self) -> &[TargetType] {
        &self.types
    }

    /// The type `name` names (its component type or an alias, any case).
    pub fn get(&self, name: &str) -> Option<&TargetType> {
        let d = backends::lookup(name)?;
        self.types
            .iter()
            .find(|t| t.component_type == d.component_type)
    }

    /// `app`'s targets and mode, if it has any.
    pub fn of_app(&self, app: &str) -> Option<AppTargetsRef<'_>> {
        let a = self.per_app.get(app)?;
        Some(AppTargetsRef {
            all: &self.types,
            types: &a.types,
            mode: a.mode,
        })
    }
}

/// One app's targets, borrowed from [`Targets`].
#[derive(Clone, Copy)]
pub struct AppTargetsRef<'a> {
    all: &'a [TargetType],
    types: &'a [usize],
    /// What a call a target would serve differently gets.
    pub mode: PortabilityMode,
}

impl<'a> AppTargetsRef<'a> {
    /// The target types, in the order the app lists them.
    pub fn iter(self) -> impl Iterator<Item = &'a TargetType> {
        self.types.iter().map(|i| &self.all[*i])
    }
}
