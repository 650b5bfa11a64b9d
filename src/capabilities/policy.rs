//! The effective capability matrix of one store: what it has natively, what Mecha can emulate
//! on it *correctly*, and what the operator's policy makes of every gap.
//!
//! Pure code. The backend's factory supplies the native side ([`StoreTraits`]); the operator's
//! `stores:` section of `mecha.yaml` supplies a [`Policy`]; [`Matrix::build`] combines them or
//! lists every policy that would break a guarantee.

use std::collections::BTreeMap;
use std::fmt;

use super::matrix::{Cell, Matrix};
use super::{Capability, CapabilitySet};

/// A capability that a request can need and a policy can decide about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Feature {
    /// ETag-guarded writes and deletes.
    Etag = 0,
    /// Create-only writes (`concurrency: first-write`).
    FirstWrite,
    /// Atomic multi-operation transactions.
    Transactions,
    /// Per-item expiry (`ttlInSeconds`).
    Ttl,
    /// Several keys in one round trip (bulk get, save of several items, bulk delete).
    Bulk,
    /// `consistency: strong`.
    StrongConsistency,
    /// The state query API.
    Query,
    /// The `partitionKey` request metadata.
    PartitionKey,
}

impl Feature {
    /// Every feature, in matrix order.
    pub const ALL: [Feature; 8] = [
        Feature::Etag,
        Feature::FirstWrite,
        Feature::Transactions,
        Feature::Ttl,
        Feature::Bulk,
        Feature::StrongConsistency,
        Feature::Query,
        Feature::PartitionKey,
    ];

    /// The native capability that provides this feature.
    pub const fn capability(self) -> Capability {
        match self {
            Feature::Etag => Capability::Etag,
            Feature::FirstWrite => Capability::FirstWrite,
            Feature::Transactions => Capability::Transactional,
            Feature::Ttl => Capability::Ttl,
            Feature::Bulk => Capability::BulkNative,
            Feature::StrongConsistency => Capability::StrongConsistency,
            Feature::Query => Capability::QueryApi,
            Feature::PartitionKey => Capability::PartitionKey,
        }
    }

    /// The name used in the policy file (`stores.<name>.<feature>`).
    pub const fn policy_name(self) -> &'static str {
        match self {
            Feature::Etag => "etag",
            Feature::FirstWrite => "firstWrite",
            Feature::Transactions => "transactions",
            Feature::Ttl => "ttl",
            Feature::Bulk => "bulk",
            Feature::StrongConsistency => "strongConsistency",
            Feature::Query => "query",
            Feature::PartitionKey => "partitionKey",
        }
    }

    /// The name used in receipts (`mecha-receipt: ttl=emulated, consistency=ignored`).
    pub const fn receipt_name(self) -> &'static str {
        match self {
            Feature::Etag => "etag",
            Feature::FirstWrite => "first-write",
            Feature::Transactions => "transactions",
            Feature::Ttl => "ttl",
            Feature::Bulk => "bulk",
            Feature::StrongConsistency => "consistency",
            Feature::Query => "query",
            Feature::PartitionKey => "partition-key",
        }
    }

    /// Parses a policy-file name (exact).
    pub fn parse_policy_name(s: &str) -> Option<Feature> {
        Feature::ALL.into_iter().find(|f| f.policy_name() == s)
    }

    /// Whether a rejection is the request's fault (400 / `INVALID_ARGUMENT`: it asked for an
    /// option the store cannot give) rather than an operation the store lacks (500, as daprd
    /// answers an unsupported transaction).
    pub const fn rejection_is_client_error(self) -> bool {
        !matches!(self, Feature::Transactions | Feature::Query | Feature::Bulk)
    }

    const fn bit(self) -> u16 {
        1 << (self as u8)
    }
}

impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.policy_name())
    }
}

/// What the operator wants for a capability the store lacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Fail the call with an error naming store, capability and policy.
    Reject,
    /// Let Mecha fill the gap (only where it can do so correctly).
    Emulate,
    /// Proceed without the feature, with a receipt saying so.
    Ignore,
}

impl Action {
    /// Parses `reject`, `emulate` or `ignore`.
    pub fn parse(s: &str) -> Result<Action, String> {
        match s {
            "reject" => Ok(Action::Reject),
            "emulate" => Ok(Action::Emulate),
            "ignore" => Ok(Action::Ignore),
            other => Err(format!(
                "'{other}' is not a policy: use reject, emulate or ignore"
            )),
        }
    }

    /// The policy-file spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Action::Reject => "reject",
            Action::Emulate => "emulate",
            Action::Ignore => "ignore",
        }
    }
}

/// The effective status of one feature on one store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// The store does it itself.
    Native,
    /// Mecha does it, correctly, on top of the store.
    Emulated,
    /// Requests that ask for it proceed without it (with a receipt).
    Ignored,
    /// Requests that ask for it fail.
    Rejected,
}

impl Status {
    /// Lower-case name, as in receipts and metadata.
    pub const fn as_str(self) -> &'static str {
        match self {
            Status::Native => "native",
            Status::Emulated => "emulated",
            Status::Ignored => "ignored",
            Status::Rejected => "rejected",
        }
    }

    /// Whether a request needing the feature is served with it (natively or emulated).
    pub const fn is_real(self) -> bool {
        matches!(self, Status::Native | Status::Emulated)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What Mecha does, when no policy names it, for a capability a store lacks
/// (`policy: {default: compatible | strict}` in `mecha.yaml`, for every store).
///
/// Both emulate what can be emulated correctly and reject every guarantee that cannot be
/// had (ETag, first-write, transactions, query, strong consistency). They differ only in
/// request options that cannot change the result on the store:
///
/// * `compatible` (the default) serves a client written for daprd as daprd does:
///   `partitionKey` on a store without partitions is ignored, with a receipt and a lint
///   finding;
/// * `strict` rejects it, so an app cannot come to depend on an option its store ignores.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Baseline {
    /// Whatever daprd gives, never a weaker guarantee than asked for.
    #[default]
    Compatible,
    /// Only what the store does natively or Mecha emulates correctly.
    Strict,
}

impl Baseline {
    /// Parses `compatible` or `strict`.
    pub fn parse(s: &str) -> Result<Baseline, String> {
        match s {
            "compatible" => Ok(Baseline::Compatible),
            "strict" => Ok(Baseline::Strict),
            other => Err(format!(
                "'{other}' is not a default policy: use compatible or strict"
            )),
        }
    }

    /// The configuration spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Baseline::Compatible => "compatible",
            Baseline::Strict => "strict",
        }
    }

    /// The status of `feature` on a store with `traits` that lacks it natively, when no
    /// policy names it.
    pub fn status(self, traits: &StoreTraits, feature: Feature) -> Status {
        if emulation(traits, feature).is_ok() {
            Status::Emulated
        } else if self == Baseline::Compatible && feature == Feature::PartitionKey {
            Status::Ignored
        } else {
            Status::Rejected
        }
    }
}

impl fmt::Display for Baseline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One store's policy: a `default` for features not listed, per-feature actions, and the
/// [`Baseline`] for everything neither names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// Applies to features not listed, where the action is allowed for that feature.
    pub default: Option<Action>,
    /// Explicit per-feature actions (validated strictly).
    pub features: BTreeMap<Feature, Action>,
    /// What applies where neither `default` nor `features` decides.
    pub baseline: Baseline,
}

/// What a configured store has natively, as its backend factory reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreTraits {
    /// Native capabilities (including those that depend on component metadata).
    pub native: CapabilitySet,
    /// Whether the store can list its keys (needed by the sweep of emulated TTL and by the
    /// emulated query).
    pub lists_keys: bool,
    /// Effective maximum operations per transaction.
    pub max_transaction_ops: usize,
}

/// A policy that would break a guarantee, or that cannot be honoured on this store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyProblem {
    /// The feature.
    pub feature: Feature,
    /// The refused action.
    pub action: Action,
    /// Why.
    pub reason: &'static str,
}

impl fmt::Display for PolicyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "capability {} ({}): policy '{}' is refused: {}",
            self.feature.policy_name(),
            self.feature.capability(),
            self.action.as_str(),
            self.reason
        )
    }
}

/// Where a feature's status came from (for error messages and `mecha check`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The store has it.
    Native,
    /// Listed in the store's policy.
    Explicit,
    /// The policy's `default`.
    StoreDefault,
    /// No policy said anything: the [`Baseline`] decided.
    BuiltIn(Baseline),
    /// The calling app's own tightening (`apps[].stores.<store>`).
    App,
}

/// Whether Mecha can emulate `feature` correctly on a store with `traits`; `Err` says why not.
pub fn emulation(traits: &StoreTraits, feature: Feature) -> Result<(), &'static str> {
    let has = |c| traits.native.has(c);
    match feature {
        Feature::Bulk => Ok(()),
        Feature::Ttl if !(has(Capability::Etag) && has(Capability::FirstWrite)) => {
            Err("emulated TTL needs compare-and-set in the store (native ETag and first-write)")
        }
        Feature::Ttl if !traits.lists_keys => {
            Err("emulated TTL needs a store that can list its keys (for the expiry sweep)")
        }
        Feature::Ttl if has(Capability::Transactional) || has(Capability::QueryApi) => Err(
            "emulated TTL is not offered on a store with transactions or queries: they would bypass the emulated expiry",
        ),
        Feature::Ttl => Ok(()),
        Feature::Etag | Feature::FirstWrite => Err("it needs compare-and-set in the store itself"),
        Feature::Transactions => Err("atomicity across keys cannot be emulated correctly"),
        Feature::StrongConsistency => {
            Err("strong consistency cannot be emulated on top of the store")
        }
        Feature::Query if !traits.lists_keys => {
            Err("emulated query needs a store that can list its keys (to scan the app's keys)")
        }
        Feature::Query => Ok(()),
        Feature::PartitionKey => Err("partitions cannot be emulated"),
    }
}

/// Whether a request needing `feature` may proceed without it; `Err` says why not.
pub fn ignorable(feature: Feature) -> Result<(), &'static str> {
    match feature {
        Feature::Ttl | Feature::StrongConsistency | Feature::PartitionKey => Ok(()),
        Feature::Etag | Feature::FirstWrite => Err(
            "ignoring it would let a write silently overwrite a concurrent one (no compare-and-set)",
        ),
        Feature::Transactions => Err("ignoring it would apply operations non-atomically"),
        Feature::Bulk => Err("a bulk call cannot be served without bulk: use emulate or reject"),
        Feature::Query => Err("a query cannot be answered without the query API"),
    }
}

pub(super) fn allowed(
    traits: &StoreTraits,
    feature: Feature,
    action: Action,
) -> Result<Status, &'static str> {
    match action {
        Action::Reject => Ok(Status::Rejected),
        Action::Emulate => emulation(traits, feature).map(|()| Status::Emulated),
        Action::Ignore => ignorable(feature).map(|()| Status::Ignored),
    }
}

/// A set of features a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Needs(u16);

impl Needs {
    /// Nothing.
    pub const NONE: Needs = Needs(0);

    /// The set with `f` added.
    pub const fn with(self, f: Feature) -> Needs {
        Needs(self.0 | f.bit())
    }

    /// `f` added when `cond` holds.
    pub const fn with_if(self, f: Feature, cond: bool) -> Needs {
        if cond { self.with(f) } else { self }
    }

    /// Whether `f` is needed.
    pub const fn has(self, f: Feature) -> bool {
        self.0 & f.bit() != 0
    }

    /// The union.
    pub const fn union(self, other: Needs) -> Needs {
        Needs(self.0 | other.0)
    }
}

/// The protocol-neutral shape of a request, as far as negotiation cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Shape {
    /// Items (keys, writes, deletes or transaction operations) in the request.
    pub items: usize,
    /// Some write or delete carries an ETag.
    pub etag: bool,
    /// Some write asks for `first-write` without an ETag.
    pub first_write: bool,
    /// Some write sets an expiry (`ttlInSeconds` > 0).
    pub ttl: bool,
    /// Some part asks for `consistency: strong`.
    pub strong: bool,
    /// Some part carries `partitionKey` metadata.
    pub partition_key: bool,
}

/// One decision of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// The needed feature.
    pub feature: Feature,
    /// How it will be served.
    pub cell: Cell,
}

/// The plan for one request: a step per needed feature, in matrix order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// The steps.
    pub steps: Vec<Step>,
}

impl Plan {
    /// The first rejected step, if any (the request must then fail with nothing applied).
    pub fn rejected(&self) -> Option<Step> {
        self.steps
            .iter()
            .copied()
            .find(|s| s.cell.status == Status::Rejected)
    }

    /// The status of `feature` in this plan (`None` when the request does not need it).
    pub fn status(&self, feature: Feature) -> Option<Status> {
        self.steps
            .iter()
            .find(|s| s.feature == feature)
            .map(|s| s.cell.status)
    }

    /// The receipt: every emulated or ignored step.
    pub fn receipt(&self) -> Receipt {
        let mut r = Receipt::default();
        for s in &self.steps {
            r.add(s.feature, s.cell.status);
        }
        r
    }
}

/// Negotiation: what the request needs, against the store's matrix (native capabilities with the
/// operator's policy already applied), gives the plan. Pure and total.
pub fn negotiate(needs: Needs, matrix: &Matrix) -> Plan {
    Plan {
        steps: Feature::ALL
            .into_iter()
            .filter(|f| needs.has(*f))
            .map(|feature| Step {
                feature,
                cell: matrix.cell(feature),
            })
            .collect(),
    }
}

/// What a response tells the caller about non-native decisions, e.g. `ttl=emulated, consistency=ignored`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Receipt(Vec<(Feature, Status)>);

/// The HTTP header and gRPC metadata key of a receipt.
pub const RECEIPT_HEADER: &str = "mecha-receipt";

impl Receipt {
    /// Records a decision; native and rejected ones are not receipts, duplicates are dropped.
    pub fn add(&mut self, feature: Feature, status: Status) {
        if matches!(status, Status::Emulated | Status::Ignored)
            && !self.0.iter().any(|(f, _)| *f == feature)
        {
            self.0.push((feature, status));
            self.0.sort_by_key(|(f, _)| *f);
        }
    }

    /// Whether nothing was emulated or ignored.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The decisions, in matrix order.
    pub fn entries(&self) -> &[(Feature, Status)] {
        &self.0
    }

    /// The header value, `None` for a fully native call.
    pub fn header_value(&self) -> Option<String> {
        (!self.is_empty()).then(|| {
            self.0
                .iter()
                .map(|(f, s)| format!("{}={}", f.receipt_name(), s))
                .collect::<Vec<_>>()
                .join(", ")
        })
    }
}

#[cfg(test)]
mod tests;
