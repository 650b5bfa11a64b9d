//! What each app's traffic used on each store, for the portability report: a fixed table of
//! counters, one row per (known app, configured store), allocated at start-up. Apps and
//! stores are finite sets (configured apps plus the default app; configured stores), so the
//! memory is bounded whatever the traffic; nothing raw (keys, values, metadata names outside
//! the known list) is kept.
//!
//! Each use is also a Prometheus counter (`mecha_capability_usage_total`,
//! `mecha_metadata_key_usage_total`), so the history outlives a restart.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use crate::capabilities::portability::{MetaKey, MetaKeys, UsageCounts};
use crate::capabilities::{Feature, Needs};
use crate::metrics;
use crate::model::{AppId, Operation};
use ::metrics::Counter;

const FEATURES: usize = Feature::ALL.len();
const KEYS: usize = MetaKey::ALL.len();

const OPS: usize = Operation::ALL.len();

#[derive(Default)]
struct OpRow {
    requests: AtomicU64,
    features: [AtomicU64; FEATURES],
    keys: [AtomicU64; KEYS],
}

#[derive(Default)]
struct Row {
    ops: [OpRow; OPS],
    feature_counters: [OnceLock<Counter>; FEATURES],
    key_counters: [OnceLock<Counter>; KEYS],
}

/// The usage table.
pub struct Usage {
    apps: HashMap<AppId, usize>,
    stores: Vec<String>,
    rows: Vec<Arc<Row>>,
}

/// Increments a cached Prometheus counter (registered on first use once the recorder is
/// installed; before that, each increment goes to whatever recorder is current).
fn bump(cell: &OnceLock<Counter>, register: impl FnOnce() -> Counter) {
    if let Some(c) = cell.get() {
        c.increment(1);
    } else if metrics::installed() {
        cell.get_or_init(register).increment(1);
    } else {
        register().increment(1);
    }
}

impl Usage {
    /// A table for `apps` × `stores`.
    pub fn new(apps: impl IntoIterator<Item = AppId>, stores: Vec<String>) -> Usage {
        Usage::carried(apps, stores, None)
    }

    /// A table for `apps` × `stores` after a reload: the rows of (app, store) pairs that
    /// `previous` had are shared with it (so counts go on, even from requests still running
    /// on the old configuration); new pairs start at zero.
    pub fn carried(
        apps: impl IntoIterator<Item = AppId>,
        stores: Vec<String>,
        previous: Option<&Usage>,
    ) -> Usage {
        let mut map: HashMap<AppId, usize> = HashMap::new();
        let mut order: Vec<AppId> = Vec::new();
        for a in apps {
            if !map.contains_key(&a) {
                map.insert(a.clone(), order.len());
                order.push(a);
            }
        }
        let rows = order
            .iter()
            .flat_map(|a| stores.iter().map(move |s| (a, s)))
            .map(|(a, s)| {
                previous
                    .and_then(|p| p.shared_row(a, s))
                    .unwrap_or_default()
            })
            .collect();
        Usage {
            apps: map,
            stores,
            rows,
        }
    }

    fn shared_row(&self, app: &str, store: &str) -> Option<Arc<Row>> {
        let s = self.stores.iter().position(|n| n == store)?;
        let a = *self.apps.get(app)?;
        self.rows.get(a * self.stores.len() + s).cloned()
    }

    fn row(&self, app: &str, store: usize) -> Option<&Row> {
        let a = *self.apps.get(app)?;
        self.rows.get(a * self.stores.len() + store).map(|r| &**r)
    }

    /// Records one request of `app` with operation `op` on store `store` (an index of the
    /// catalog) that needed `needs` and carried the metadata names in `keys`.
    pub fn record(&self, app: &str, store: usize, op: Operation, needs: Needs, keys: MetaKeys) {
        let Some(row) = self.row(app, store) else {
            return;
        };
        let store_name = &self.stores[store];
        let counts = &row.ops[op.index()];
        counts.requests.fetch_add(1, Ordering::Relaxed);
        for f in Feature::ALL.into_iter().filter(|f| needs.has(*f)) {
            let i = f as usize;
            counts.features[i].fetch_add(1, Ordering::Relaxed);
            bump(&row.feature_counters[i], || {
                metrics::capability_usage_counter(app, store_name, f.policy_name())
            });
        }
        for k in keys.iter() {
            let i = k as usize;
            counts.keys[i].fetch_add(1, Ordering::Relaxed);
            bump(&row.key_counters[i], || {
                metrics::metadata_key_usage_counter(app, store_name, k.name())
            });
        }
    }

    /// Whether `app` has rows (a configured app, or the default app).
    pub fn knows(&self, app: &str) -> bool {
        self.apps.contains_key(app)
    }

    /// `app`'s usage of store `store` since start (zero for an unknown app).
    pub fn counts(&self, app: &str, store: usize) -> UsageCounts {
        let mut out = UsageCounts::default();
        let Some(row) = self.row(app, store) else {
            return out;
        };
        for (out, counts) in out.ops.iter_mut().zip(&row.ops) {
            out.requests = counts.requests.load(Ordering::Relaxed);
            for (o, c) in out.features.iter_mut().zip(&counts.features) {
                *o = c.load(Ordering::Relaxed);
            }
            for (o, c) in out.keys.iter_mut().zip(&counts.keys) {
                *o = c.load(Ordering::Relaxed);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_apps_are_not_recorded_and_memory_is_fixed() {
        let u = Usage::new([AppId::from("a"), AppId::from("b")], vec!["s".into()]);
        assert_eq!(u.rows.len(), 2);
        let needs = Needs::NONE.with(Feature::Ttl);
        let mut keys = MetaKeys::default();
        keys.add_all(&crate::model::Metadata::from([(
            "ttlInSeconds".to_owned(),
            "5".to_owned(),
        )]));
        u.record("a", 0, Operation::Save, needs, keys);
        u.record("a", 0, Operation::Get, Needs::NONE, MetaKeys::default());
        u.record("zzz", 0, Operation::Save, needs, keys);
        let c = u.counts("a", 0);
        assert_eq!(c.requests(), 2);
        let save = c.op(Operation::Save);
        assert_eq!(save.requests, 1);
        assert_eq!(save.features[Feature::Ttl as usize], 1);
        assert_eq!(save.keys[MetaKey::TtlInSeconds as usize], 1);
        assert_eq!(c.op(Operation::Get).features, [0; FEATURES]);
        assert_eq!(u.counts("b", 0), UsageCounts::default());
        assert_eq!(u.counts("zzz", 0), UsageCounts::default());
        assert_eq!(u.rows.len(), 2);
    }

    #[test]
    fn a_reload_carries_counts_of_kept_pairs_only() {
        let old = Usage::new([AppId::from("a")], vec!["s".into(), "gone".into()]);
        old.record("a", 0, Operation::Get, Needs::NONE, MetaKeys::default());
        old.record("a", 1, Operation::Get, Needs::NONE, MetaKeys::default());
        let new = Usage::carried(
            [AppId::from("b"), AppId::from("a")],
            vec!["t".into(), "s".into()],
            Some(&old),
        );
        assert_eq!(new.counts("a", 1).requests(), 1, "a on s carried");
        assert_eq!(new.counts("a", 0).requests(), 0, "t is new");
        assert_eq!(new.counts("b", 1).requests(), 0, "b is new");
        // Shared: a request still running on the old table counts in the new one.
        old.record("a", 0, Operation::Get, Needs::NONE, MetaKeys::default());
        assert_eq!(new.counts("a", 1).requests(), 2);
    }
}
