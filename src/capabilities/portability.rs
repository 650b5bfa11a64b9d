//! The portability report: from what an app's traffic used (capabilities and request metadata
//! keys, with counts), what would happen to it on another store type.
//!
//! Pure code. The gateway counts usage per app and store ([`UsageCounts`]); the report
//! ([`report`]) replays those counts against the source store's matrix and the target's
//! matrix (the target backend's default traits under the built-in policy) and lists every
//! use that would not be served natively there, with a one-line verdict. Usage never holds
//! raw keys or values: metadata names outside [`MetaKey::ALL`] are counted as `_other`.

use std::fmt;

use super::{Feature, Matrix, Needs, Status};
use crate::model::{Metadata, Operation};

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

/// What one app's traffic used on one store with one operation: requests, and per capability
/// and per metadata bucket the number of requests that used it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OpUsage {
    /// Requests that reached negotiation.
    pub requests: u64,
    /// Per [`Feature`] (indexed by its discriminant).
    pub features: [u64; Feature::ALL.len()],
    /// Per [`MetaKey`] (indexed by its discriminant).
    pub keys: [u64; MetaKey::ALL.len()],
}

/// What one app's traffic used on one store, per operation (indexed by
/// [`Operation::index`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UsageCounts {
    /// Per operation.
    pub ops: [OpUsage; Operation::ALL.len()],
}

impl UsageCounts {
    /// Requests of every operation.
    pub fn requests(&self) -> u64 {
        self.ops.iter().map(|o| o.requests).sum()
    }

    /// The usage of one operation.
    pub fn op(&self, op: Operation) -> &OpUsage {
        &self.ops[op.index()]
    }

    /// The usage of one operation, to count into.
    pub fn op_mut(&mut self, op: Operation) -> &mut OpUsage {
        &mut self.ops[op.index()]
    }
}

/// What an app's portability targets (`apps[].portableTo`) do to a call one of them would
/// serve differently (`apps[].portability`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PortabilityMode {
    /// A `not-portable` lint finding travels with the answer (the default).
    #[default]
    Warn,
    /// The call fails before anything is applied (400 `ERR_NOT_PORTABLE`).
    Reject,
}

impl PortabilityMode {
    /// Parses `warn` or `reject`.
    pub fn parse(s: &str) -> Option<PortabilityMode> {
        match s {
            "warn" => Some(PortabilityMode::Warn),
            "reject" => Some(PortabilityMode::Reject),
            _ => None,
        }
    }

    /// Lower-case name.
    pub const fn as_str(self) -> &'static str {
        match self {
            PortabilityMode::Warn => "warn",
            PortabilityMode::Reject => "reject",
        }
    }
}

/// The capabilities a call needing `needs` on a store with matrix `here` would lose or be
/// refused on a store with matrix `target` (emulated there is portable: it gets a receipt).
/// A capability refused here is left out: the call fails here anyway.
pub fn call_gaps(needs: Needs, here: &Matrix, target: &Matrix) -> impl Iterator<Item = Feature> {
    Feature::ALL.into_iter().filter(move |f| {
        if !needs.has(*f) {
            return false;
        }
        let now = Fate::of(here.status(*f));
        let there = Fate::moving(now, Fate::of(target.status(*f)));
        !Verdict::of_move(now, there).is_portable()
    })
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

    /// The fate of a use under a matrix status.
    pub const fn of(status: Status) -> Fate {
        match status {
            Status::Native => Fate::Native,
            Status::Emulated => Fate::Emulated,
            Status::Ignored => Fate::Ignored,
            Status::Rejected => Fate::Rejected,
        }
    }

    /// The fate on the target, given the fate now: something served now and ignored there is lost.
    pub const fn moving(now: Fate, there: Fate) -> Fate {
        match (now, there) {
            (Fate::Native | Fate::Emulated, Fate::Ignored) => Fate::Lost,
            _ => there,
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

/// How portable traffic is, from best to worst: the order of [`Verdict`]s is the order in
/// which target types are listed ("most portable first").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verdict {
    /// Everything used is served there as it is now (or better).
    Same,
    /// Everything served now is served there, some of it by Mecha's emulation (with a receipt).
    Emulated,
    /// Something served now would be dropped there without an error.
    Lossy,
    /// Calls served now would be rejected there.
    NotPortable,
}

impl Verdict {
    /// The stable name, in the JSON report.
    pub const fn as_str(self) -> &'static str {
        match self {
            Verdict::Same => "portable",
            Verdict::Emulated => "portable-emulated",
            Verdict::Lossy => "lossy",
            Verdict::NotPortable => "not-portable",
        }
    }

    /// Whether an app can move without losing anything (what `mecha portability` exits 0 on).
    pub const fn is_portable(self) -> bool {
        matches!(self, Verdict::Same | Verdict::Emulated)
    }

    /// What a use with fate `now` here and `there` on the target makes of a move.
    pub const fn of_move(now: Fate, there: Fate) -> Verdict {
        match (now, there) {
            (Fate::Rejected, _) => Verdict::Same,
            (_, Fate::Rejected) => Verdict::NotPortable,
            (_, Fate::Lost) => Verdict::Lossy,
            (Fate::Native, Fate::Emulated) => Verdict::Emulated,
            _ => Verdict::Same,
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One use that would not be native on the target, or that is rejected now: per store,
/// operation and capability (or metadata key), never merged across stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    /// The store it was used on.
    pub store: String,
    /// The operation that used it.
    pub operation: Operation,
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

impl Gap {
    /// What this use makes of the move.
    pub const fn verdict(&self) -> Verdict {
        Verdict::of_move(self.now, self.target)
    }

    /// Whether the summary names it: capabilities, and keys no capability stands for (those
    /// of `ttlInSeconds` and `partitionKey` would repeat their capability's line).
    fn summarised(&self) -> bool {
        self.kind == Kind::Capability || MetaKey::of(self.name).feature().is_none()
    }
}

/// The source of a report: one store the app used, its matrix (the app's view) and its usage.
pub struct Source<'a> {
    /// The store's name.
    pub store: &'a str,
    /// The store's matrix as the app sees it.
    pub matrix: &'a Matrix,
    /// The app's usage of it.
    pub usage: UsageCounts,
}

/// The verdict for one store the app used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreVerdict {
    /// The store's name.
    pub store: String,
    /// Requests counted on it.
    pub requests: u64,
    /// The worst verdict of its uses.
    pub verdict: Verdict,
    /// One line.
    pub summary: String,
}

/// The report for one target type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The target type.
    pub target: String,
    /// Requests counted.
    pub requests: u64,
    /// Every use that would not be native on the target, per store in source order, then
    /// per operation, capabilities first in matrix order, then metadata keys.
    pub gaps: Vec<Gap>,
    /// One verdict per store the app used (stores without traffic are left out).
    pub stores: Vec<StoreVerdict>,
    /// The worst of the stores' verdicts.
    pub verdict: Verdict,
    /// One line.
    pub summary: String,
}

impl Report {
    /// Requests whose uses make the move worse than [`Verdict::Same`]: the tie-breaker
    /// between two targets with the same verdict.
    pub fn affected(&self) -> u64 {
        self.gaps
            .iter()
            .filter(|g| g.verdict() != Verdict::Same)
            .map(|g| g.count)
            .sum()
    }
}

/// The gaps of one source against `target`.
fn source_gaps(target: &Matrix, source: &Source<'_>, gaps: &mut Vec<Gap>) {
    for op in Operation::ALL {
        let usage = source.usage.op(op);
        if usage.requests == 0 {
            continue;
        }
        let features = Feature::ALL.into_iter().map(|f| {
            let fates = (
                Fate::of(source.matrix.status(f)),
                Fate::of(target.status(f)),
            );
            (
                Kind::Capability,
                f.policy_name(),
                fates,
                usage.features[f as usize],
            )
        });
        let keys = MetaKey::ALL.into_iter().map(|k| {
            let fates = (key_fate(k, source.matrix), key_fate(k, target));
            (Kind::Metadata, k.name(), fates, usage.keys[k as usize])
        });
        for (kind, name, (now, there), count) in features.chain(keys) {
            let moved = Fate::moving(now, there);
            if count > 0 && (moved != Fate::Native || now == Fate::Rejected) {
                gaps.push(Gap {
                    store: source.store.to_owned(),
                    operation: op,
                    kind,
                    name,
                    now,
                    target: moved,
                    count,
                });
            }
        }
    }
}

/// Replays the usage of every source against `target` (the target type's matrix). Each
/// store is judged on its own: a use rejected on one store never hides the same use served
/// on another.
pub fn report(target_type: &str, target: &Matrix, sources: &[Source<'_>]) -> Report {
    let mut gaps = Vec::new();
    let mut stores = Vec::new();
    for s in sources {
        let requests = s.usage.requests();
        if requests == 0 {
            continue;
        }
        let first = gaps.len();
        source_gaps(target, s, &mut gaps);
        let own = &gaps[first..];
        let verdict = worst(own);
        stores.push(StoreVerdict {
            store: s.store.to_owned(),
            requests,
            verdict,
            summary: summary(target_type, verdict, own, false),
        });
    }
    let requests = stores.iter().map(|s| s.requests).sum();
    let verdict = stores
        .iter()
        .map(|s| s.verdict)
        .max()
        .unwrap_or(Verdict::Same);
    let summary = if requests == 0 {
        format!("no traffic recorded since start: nothing to judge for {target_type}")
    } else {
        summary(target_type, verdict, &gaps, stores.len() > 1)
    };
    Report {
        target: target_type.to_owned(),
        requests,
        gaps,
        stores,
        verdict,
        summary,
    }
}

fn worst(gaps: &[Gap]) -> Verdict {
    gaps.iter().map(Gap::verdict).max().unwrap_or(Verdict::Same)
}

/// One line for `verdict`, naming the uses that make it (with their store when the report
/// covers several).
fn summary(target_type: &str, verdict: Verdict, gaps: &[Gap], name_stores: bool) -> String {
    let mut names: Vec<(String, u64)> = Vec::new();
    for g in gaps
        .iter()
        .filter(|g| g.verdict() == verdict && g.summarised())
    {
        let name = if name_stores {
            format!("{} on {}", g.name, g.store)
        } else {
            g.name.to_owned()
        };
        match names.iter_mut().find(|(n, _)| *n == name) {
            Some((_, count)) => *count += g.count,
            None => names.push((name, g.count)),
        }
    }
    let list = names
        .iter()
        .map(|(n, c)| format!("{n} x{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    match verdict {
        Verdict::NotPortable => {
            format!("not portable to {target_type}: calls served now would be rejected ({list})")
        }
        Verdict::Lossy => format!("not portable to {target_type}: silent loss ({list})"),
        Verdict::Emulated => format!(
            "portable to {target_type}: everything served now is served there, some by Mecha's emulation ({list})"
        ),
        Verdict::Same => {
            format!("portable to {target_type}: everything used is served as it is now")
        }
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

    fn usage(op: Operation, requests: u64, features: &[(Feature, u64)]) -> UsageCounts {
        let mut u = UsageCounts::default();
        let o = u.op_mut(op);
        o.requests = requests;
        for (f, n) in features {
            o.features[*f as usize] = *n;
        }
        u
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
        let mut usage = usage(
            Operation::Save,
            10,
            &[(Feature::Ttl, 3), (Feature::Etag, 4)],
        );
        usage.op_mut(Operation::Save).keys[MetaKey::TtlInSeconds as usize] = 3;
        usage.op_mut(Operation::Save).keys[MetaKey::Other as usize] = 1;
        usage.op_mut(Operation::Transaction).requests = 2;
        usage.op_mut(Operation::Transaction).features[Feature::Transactions as usize] = 2;
        let target = matrix(&[C::Etag, C::FirstWrite], true);
        let one = |target: &Matrix, name| {
            report(
                name,
                target,
                &[Source {
                    store: "s",
                    matrix: &source,
                    usage,
                }],
            )
        };
        let r = one(&target, "state.jetstream");
        let got: Vec<_> = r
            .gaps
            .iter()
            .map(|g| (g.operation, g.name, g.now, g.target, g.count))
            .collect();
        assert_eq!(
            got,
            [
                (Operation::Save, "ttl", Fate::Native, Fate::Emulated, 3),
                (
                    Operation::Save,
                    "ttlInSeconds",
                    Fate::Native,
                    Fate::Emulated,
                    3
                ),
                (Operation::Save, "_other", Fate::Ignored, Fate::Ignored, 1),
                (
                    Operation::Transaction,
                    "transactions",
                    Fate::Native,
                    Fate::Rejected,
                    2
                ),
            ]
        );
        assert_eq!(r.verdict, Verdict::NotPortable);
        assert_eq!(r.requests, 12);
        assert_eq!(
            r.summary,
            "not portable to state.jetstream: calls served now would be rejected (transactions x2)"
        );
        let same = one(&source, "state.in-memory");
        assert_eq!(same.gaps.len(), 1, "{same:?}");
        assert_eq!(same.verdict, Verdict::Same);
        assert!(
            same.summary
                .starts_with("portable to state.in-memory: everything")
        );
    }

    /// The table: several stores, each judged on its own, never merged.
    #[test]
    fn each_store_is_judged_on_its_own() {
        use Capability as C;
        let pg = matrix(&[C::Etag, C::FirstWrite, C::Transactional, C::Ttl], true);
        // A key-value store whose policy rejects transactions and emulates TTL.
        let kv = matrix(&[C::Etag, C::FirstWrite], true);
        let memory = matrix(
            &[
                C::Etag,
                C::FirstWrite,
                C::Transactional,
                C::Ttl,
                C::BulkNative,
            ],
            true,
        );
        let tx = |n| usage(Operation::Transaction, n, &[(Feature::Transactions, n)]);
        let ttl = |n| usage(Operation::Save, n, &[(Feature::Ttl, n)]);
        let plain = |n| usage(Operation::Get, n, &[]);
        struct Case {
            name: &'static str,
            target: &'static Matrix,
            sources: Vec<(&'static str, &'static Matrix, UsageCounts)>,
            want: Verdict,
            per_store: Vec<Verdict>,
        }
        let leak = |m: Matrix| -> &'static Matrix { Box::leak(Box::new(m)) };
        let (pg, kv, memory) = (leak(pg), leak(kv), leak(memory));
        let cases = [
            Case {
                name: "a rejection on kv does not hide native transactions on pg",
                target: kv,
                sources: vec![("pg", pg, tx(1)), ("kvstore", kv, tx(1))],
                want: Verdict::NotPortable,
                per_store: vec![Verdict::NotPortable, Verdict::Same],
            },
            Case {
                name: "rejected now and there changes nothing",
                target: kv,
                sources: vec![("kvstore", kv, tx(3))],
                want: Verdict::Same,
                per_store: vec![Verdict::Same],
            },
            Case {
                name: "native TTL becomes emulated",
                target: kv,
                sources: vec![("pg", pg, ttl(2)), ("mem", memory, plain(5))],
                want: Verdict::Emulated,
                per_store: vec![Verdict::Emulated, Verdict::Same],
            },
            Case {
                name: "moving to a richer store",
                target: memory,
                sources: vec![("pg", pg, tx(1)), ("kvstore", kv, ttl(4))],
                want: Verdict::Same,
                per_store: vec![Verdict::Same, Verdict::Same],
            },
            Case {
                name: "stores without traffic are left out",
                target: kv,
                sources: vec![
                    ("pg", pg, UsageCounts::default()),
                    ("mem", memory, plain(1)),
                ],
                want: Verdict::Same,
                per_store: vec![Verdict::Same],
            },
        ];
        for c in cases {
            let sources: Vec<Source<'_>> = c
                .sources
                .iter()
                .map(|(store, matrix, usage)| Source {
                    store,
                    matrix,
                    usage: *usage,
                })
                .collect();
            let r = report("t", c.target, &sources);
            assert_eq!(r.verdict, c.want, "{}: {r:?}", c.name);
            let got: Vec<Verdict> = r.stores.iter().map(|s| s.verdict).collect();
            assert_eq!(got, c.per_store, "{}: {r:?}", c.name);
        }
    }

    #[test]
    fn a_rejected_use_is_listed_as_rejected_now_and_there() {
        use Capability as C;
        let kv = matrix(&[C::Etag], true);
        let pg = matrix(&[C::Etag, C::Transactional], true);
        let tx = usage(Operation::Transaction, 1, &[(Feature::Transactions, 1)]);
        let r = report(
            "state.jetstream",
            &kv,
            &[
                Source {
                    store: "pg",
                    matrix: &pg,
                    usage: tx,
                },
                Source {
                    store: "kvstore",
                    matrix: &kv,
                    usage: tx,
                },
            ],
        );
        let got: Vec<_> = r
            .gaps
            .iter()
            .map(|g| (g.store.as_str(), g.now, g.target, g.verdict()))
            .collect();
        assert_eq!(
            got,
            [
                ("pg", Fate::Native, Fate::Rejected, Verdict::NotPortable),
                ("kvstore", Fate::Rejected, Fate::Rejected, Verdict::Same),
            ]
        );
        assert_eq!(
            r.summary,
            "not portable to state.jetstream: calls served now would be rejected (transactions on pg x1)"
        );
        assert!(!r.verdict.is_portable());
    }

    #[test]
    fn ignored_where_served_now_is_lost() {
        assert_eq!(Fate::moving(Fate::Native, Fate::Ignored), Fate::Lost);
        assert_eq!(Fate::moving(Fate::Ignored, Fate::Ignored), Fate::Ignored);
        assert_eq!(Fate::moving(Fate::Native, Fate::Rejected), Fate::Rejected);
    }
}
