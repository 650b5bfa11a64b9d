//! The portability report: from what an app's traffic used (capabilities and request metadata
//! keys, with counts), what would happen to it on another store type.
//!
//! Pure code. The gateway counts usage per app and store ([`UsageCounts`]); the report
//! ([`report`]) replays those counts against the source store's matrix and the target's
//! matrix (the target backend's default traits under the built-in policy) and lists every
//! use that would not be served natively there, with a one-line verdict. Usage never holds
//! raw keys or values: metadata names outside [`MetaKey::ALL`] are counted as `_other`.

use std::fmt;

use super::{Feature, Matrix, Status};
use crate::model::Metadata;

/// A request metadata name the report knows by name; every other name is [`MetaKey::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum MetaKey {
    /// `ttlInSeconds`: per-item expiry (the TTL capability).
    TtlInSeconds = 0,
    /// `contentType`: read by Mecha's gRPC door on every store.
    ContentType,
    /// `partitionKey`: Cosmos DB's partition (the partition-key capability).
    PartitionKey,
    /// `queryIndexName`: Dapr's Redis query index (no Mecha store reads it).
    QueryIndexName,
    /// `outbox.projection`: daprd's outbox (Mecha has no outbox).
    OutboxProjection,
    /// Any other name (bucketed, never recorded by name).
    Other,
}

impl MetaKey {
    /// Every bucket, in report order.
    pub const ALL: [MetaKey; 6] = [
        MetaKey::TtlInSeconds,
        MetaKey::ContentType,
        MetaKey::PartitionKey,
        MetaKey::QueryIndexName,
        MetaKey::OutboxProjection,
        MetaKey::Other,
    ];

    /// The label: the key's name, or `_other`.
    pub const fn name(self) -> &'static str {
        match self {
            MetaKey::TtlInSeconds => "ttlInSeconds",
            MetaKey::ContentType => "contentType",
            MetaKey::PartitionKey => "partitionKey",
            MetaKey::QueryIndexName => "queryIndexName",
            MetaKey::OutboxProjection => "outbox.projection",
            MetaKey::Other => "_other",
        }
    }

    /// The bucket of a metadata name (exact, case-sensitive, as Dapr's stores match them).
    pub fn of(name: &str) -> MetaKey {
        MetaKey::ALL[..MetaKey::ALL.len() - 1]
            .iter()
            .copied()
            .find(|k| k.name() == name)
            .unwrap_or(MetaKey::Other)
    }

    /// The capability whose status decides what happens to the key, if any.
    pub const fn feature(self) -> Option<Feature> {
        match self {
            MetaKey::TtlInSeconds => Some(Feature::Ttl),
            MetaKey::PartitionKey => Some(Feature::PartitionKey),
            _ => None,
        }
    }

    const fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// The set of metadata buckets one request used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MetaKeys(u8);

impl MetaKeys {
    /// Adds the buckets of every name in `metadata`.
    pub fn add_all(&mut self, metadata: &Metadata) {
        for name in metadata.keys() {
            self.0 |= MetaKey::of(name).bit();
        }
    }

    /// Whether `key` was used.
    pub const fn has(self, key: MetaKey) -> bool {
        self.0 & key.bit() != 0
    }

    /// The buckets used, in report order.
    pub fn iter(self) -> impl Iterator<Item = MetaKey> {
        MetaKey::ALL.into_iter().filter(move |k| self.has(*k))
    }
}

/// What one app's traffic used on one store: requests, and per capability and per metadata
/// bucket the number of requests that used it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UsageCounts {
    /// Requests that reached negotiation.
    pub requests: u64,
    /// Per [`Feature`] (indexed by its discriminant).
    pub features: [u64; Feature::ALL.len()],
    /// Per [`MetaKey`] (indexed by its discriminant).
    pub keys: [u64; MetaKey::ALL.len()],
}

impl UsageCounts {
    /// The sum of two usages.
    pub fn add(&mut self, other: &UsageCounts) {
        self.requests += other.requests;
        for (a, b) in self.features.iter_mut().zip(other.features) {
            *a += b;
        }
        for (a, b) in self.keys.iter_mut().zip(other.keys) {
            *a += b;
        }
    }
}

/// What happens to a use on a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fate {
    /// Served by the store itself (or, for a key, read as on every Mecha store).
    Native,
    /// Served correctly by Mecha on top of the store.
    Emulated,
    /// Dropped there, as it is now.
    Ignored,
    /// Served now, dropped on the target: the application loses it silently.
    Lost,
    /// The call fails there.
    Rejected,
}

impl Fate {
    /// Lower-case name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Fate::Native => "native",
            Fate::Emulated => "emulated",
            Fate::Ignored => "ignored",
            Fate::Lost => "lost",
            Fate::Rejected => "rejected",
        }
    }

    fn of(status: Status) -> Fate {
        match status {
            Status::Native => Fate::Native,
            Status::Emulated => Fate::Emulated,
            Status::Ignored => Fate::Ignored,
            Status::Rejected => Fate::Rejected,
        }
    }

    /// The fate on the target, given the fate now: something served now and ignored there is lost.
    fn moving(now: Fate, there: Fate) -> Fate {
        if there == Fate::Ignored && matches!(now, Fate::Native | Fate::Emulated) {
            Fate::Lost
        } else {
            there
        }
    }
}

impl fmt::Display for Fate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a metadata key becomes on a store with `matrix`.
pub fn key_fate(key: MetaKey, matrix: &Matrix) -> Fate {
    match key.feature() {
        Some(feature) => Fate::of(matrix.status(feature)),
        None if key == MetaKey::ContentType => Fate::Native,
        // No Mecha store reads these: they reach the store and are ignored, everywhere.
        None => Fate::Ignored,
    }
}

/// Whether a report line is about a capability or a metadata key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A capability ([`Feature::policy_name`]).
    Capability,
    /// A metadata key ([`MetaKey::name`]).
    Metadata,
}

impl Kind {
    /// Lower-case name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Capability => "capability",
            Kind::Metadata => "metadata",
        }
    }
}

/// One use that would not be native on the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    /// Capability or metadata key.
    pub kind: Kind,
    /// Its name.
    pub name: &'static str,
    /// What happens to it on the source store now.
    pub now: Fate,
    /// What would happen on the target.
    pub target: Fate,
    /// Requests that used it.
    pub count: u64,
}

/// The source of a report: one store the app used, its matrix and its usage.
pub struct Source<'a> {
    /// The store's matrix.
    pub matrix: &'a Matrix,
    /// The app's usage of it.
    pub usage: UsageCounts,
}

/// The report for one target type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Requests counted.
    pub requests: u64,
    /// Every use that would not be native on the target, capabilities first, in matrix order.
    pub gaps: Vec<Gap>,
    /// One line.
    pub verdict: String,
}

/// Replays the usage of every source against `target` (the target type's matrix). A use is
/// counted under the worst fate it has now across the sources.
pub fn report(target_type: &str, target: &Matrix, sources: &[Source<'_>]) -> Report {
    let mut gaps = Vec::new();
    let mut requests = 0;
    for s in sources {
        requests += s.usage.requests;
    }
    let mut push = |kind, name, uses: Vec<(Fate, u64)>, there: Fate| {
        let count: u64 = uses.iter().map(|(_, n)| n).sum();
        if count == 0 {
            return;
        }
        let now = uses
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(f, _)| *f)
            .max()
            .unwrap_or(Fate::Native);
        let target = Fate::moving(now, there);
        if target != Fate::Native {
            gaps.push(Gap {
                kind,
                name,
                now,
                target,
                count,
            });
        }
    };
    for f in Feature::ALL {
        let uses = sources
            .iter()
            .map(|s| (Fate::of(s.matrix.status(f)), s.usage.features[f as usize]))
            .collect();
        push(
            Kind::Capability,
            f.policy_name(),
            uses,
            Fate::of(target.status(f)),
        );
    }
    for k in MetaKey::ALL {
        let uses = sources
            .iter()
            .map(|s| (key_fate(k, s.matrix), s.usage.keys[k as usize]))
            .collect();
        push(Kind::Metadata, k.name(), uses, key_fate(k, target));
    }
    let verdict = verdict(target_type, requests, &gaps);
    Report {
        requests,
        gaps,
        verdict,
    }
}

fn verdict(target_type: &str, requests: u64, gaps: &[Gap]) -> String {
    if requests == 0 {
        return format!("no traffic recorded since start: nothing to judge for {target_type}");
    }
    // What changes: capabilities, and keys no capability stands for (those of `ttlInSeconds`
    // and `partitionKey` would repeat their capability's line).
    let list = |fate: Fate| {
        gaps.iter()
            .filter(|g| g.target == fate && g.target != g.now)
            .filter(|g| g.kind == Kind::Capability || MetaKey::of(g.name).feature().is_none())
            .map(|g| format!("{} x{}", g.name, g.count))
            .collect::<Vec<_>>()
    };
    let (rejected, lost, emulated) = (list(Fate::Rejected), list(Fate::Lost), list(Fate::Emulated));
    if !rejected.is_empty() {
        format!(
            "not portable to {target_type}: calls served now would be rejected ({})",
            rejected.join(", ")
        )
    } else if !lost.is_empty() {
        format!(
            "portable to {target_type} with silent loss ({})",
            lost.join(", ")
        )
    } else if !emulated.is_empty() {
        format!(
            "portable to {target_type}: everything served now is served there, some by Mecha's emulation ({})",
            emulated.join(", ")
        )
    } else {
        format!("portable to {target_type}: everything used is served as it is now")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capabilities::{Capability, CapabilitySet, StoreTraits};

    fn matrix(caps: &[Capability], lists_keys: bool) -> Matrix {
        Matrix::without_policy(
            StoreTraits {
                native: CapabilitySet::of(caps),
                lists_keys,
                max_transaction_ops: 100,
            },
            crate::capabilities::Baseline::Compatible,
        )
    }

    #[test]
    fn metadata_names_are_bucketed() {
        assert_eq!(MetaKey::of("ttlInSeconds"), MetaKey::TtlInSeconds);
        assert_eq!(MetaKey::of("TTLINSECONDS"), MetaKey::Other);
        assert_eq!(MetaKey::of("customer-42"), MetaKey::Other);
        let mut keys = MetaKeys::default();
        keys.add_all(&Metadata::from([
            ("partitionKey".to_owned(), "p".to_owned()),
            ("x".to_owned(), "1".to_owned()),
            ("y".to_owned(), "2".to_owned()),
        ]));
        assert_eq!(
            keys.iter().collect::<Vec<_>>(),
            [MetaKey::PartitionKey, MetaKey::Other]
        );
    }

    #[test]
    fn report_lists_gaps_with_counts_and_a_verdict() {
        use Capability as C;
        let source = matrix(
            &[
                C::Etag,
                C::FirstWrite,
                C::Transactional,
                C::Ttl,
                C::BulkNative,
            ],
            true,
        );
        let mut usage = UsageCounts {
            requests: 10,
            ..UsageCounts::default()
        };
        usage.features[Feature::Transactions as usize] = 2;
        usage.features[Feature::Ttl as usize] = 3;
        usage.features[Feature::Etag as usize] = 4;
        usage.keys[MetaKey::TtlInSeconds as usize] = 3;
        usage.keys[MetaKey::Other as usize] = 1;
        let target = matrix(&[C::Etag, C::FirstWrite], true);
        let r = report(
            "state.jetstream",
            &target,
            &[Source {
                matrix: &source,
                usage,
            }],
        );
        let got: Vec<_> = r
            .gaps
            .iter()
            .map(|g| (g.name, g.now, g.target, g.count))
            .collect();
        assert_eq!(
            got,
            [
                ("transactions", Fate::Native, Fate::Rejected, 2),
                ("ttl", Fate::Native, Fate::Emulated, 3),
                ("ttlInSeconds", Fate::Native, Fate::Emulated, 3),
                ("_other", Fate::Ignored, Fate::Ignored, 1),
            ]
        );
        assert_eq!(
            r.verdict,
            "not portable to state.jetstream: calls served now would be rejected (transactions x2)"
        );
        let same = report(
            "state.in-memory",
            &source,
            &[Source {
                matrix: &source,
                usage,
            }],
        );
        assert_eq!(same.gaps.len(), 1, "{same:?}");
        assert!(
            same.verdict
                .starts_with("portable to state.in-memory: everything")
        );
    }

    #[test]
    fn ignored_where_served_now_is_lost() {
        assert_eq!(Fate::moving(Fate::Native, Fate::Ignored), Fate::Lost);
        assert_eq!(Fate::moving(Fate::Ignored, Fate::Ignored), Fate::Ignored);
        assert_eq!(Fate::moving(Fate::Native, Fate::Rejected), Fate::Rejected);
    }
}
