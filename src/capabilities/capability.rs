//! The `Capability` enum and the `CapabilitySet` bitset.

use std::fmt;

/// One thing a state store may do natively.
///
/// The first seven are Dapr's feature strings (`components-contrib/state/feature.go`) and are
/// reported in `/v1.0/metadata` exactly as Dapr reports them. The rest are Mecha's own
/// distinctions, reported only in Mecha's extended metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Capability {
    /// Optimistic concurrency: every read returns an ETag and writes can be guarded by one.
    Etag = 0,
    /// Atomic multi-operation transactions.
    Transactional,
    /// The state query API.
    QueryApi,
    /// Per-item expiry from `ttlInSeconds`.
    Ttl,
    /// Deleting every key under a prefix.
    DeleteWithPrefix,
    /// Honours the `partitionKey` request metadata.
    PartitionKey,
    /// SQL-`LIKE` key listing.
    KeysLike,
    /// Create-only writes (`concurrency: first-write` without an ETag).
    FirstWrite,
    /// Bulk get/set/delete served by the store in one round trip, not by fan-out.
    BulkNative,
    /// `consistency: strong` is honoured by the store itself.
    StrongConsistency,
}

impl Capability {
    /// Every capability, in declaration order.
    pub const ALL: [Capability; 10] = [
        Capability::Etag,
        Capability::Transactional,
        Capability::QueryApi,
        Capability::Ttl,
        Capability::DeleteWithPrefix,
        Capability::PartitionKey,
        Capability::KeysLike,
        Capability::FirstWrite,
        Capability::BulkNative,
        Capability::StrongConsistency,
    ];

    /// The wire name: Dapr's feature string, or Mecha's own for the extras.
    pub const fn as_str(self) -> &'static str {
        match self {
            Capability::Etag => "ETAG",
            Capability::Transactional => "TRANSACTIONAL",
            Capability::QueryApi => "QUERY_API",
            Capability::Ttl => "TTL",
            Capability::DeleteWithPrefix => "DELETE_WITH_PREFIX",
            Capability::PartitionKey => "PARTITION_KEY",
            Capability::KeysLike => "KEYS_LIKE",
            Capability::FirstWrite => "FIRST_WRITE",
            Capability::BulkNative => "BULK_NATIVE",
            Capability::StrongConsistency => "STRONG_CONSISTENCY",
        }
    }

    /// Whether Dapr itself knows this feature string (and so reports it in `capabilities`).
    pub const fn is_dapr_feature(self) -> bool {
        (self as u8) <= (Capability::KeysLike as u8)
    }

    /// Parses a wire name (exact, upper case).
    pub fn parse(s: &str) -> Option<Capability> {
        Capability::ALL.into_iter().find(|c| c.as_str() == s)
    }

    const fn bit(self) -> u32 {
        1 << (self as u8)
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of capabilities, stored as a bitset so descriptors can build it in a `const`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CapabilitySet(u32);

impl CapabilitySet {
    /// The empty set.
    pub const EMPTY: CapabilitySet = CapabilitySet(0);

    /// Builds a set from a list, usable in `const` descriptors.
    pub const fn of(caps: &[Capability]) -> CapabilitySet {
        let mut bits = 0;
        let mut i = 0;
        while i < caps.len() {
            bits |= caps[i].bit();
            i += 1;
        }
        CapabilitySet(bits)
    }

    /// Whether `cap` is in the set.
    pub const fn has(self, cap: Capability) -> bool {
        self.0 & cap.bit() != 0
    }

    /// The set with `cap` added.
    pub const fn with(self, cap: Capability) -> CapabilitySet {
        CapabilitySet(self.0 | cap.bit())
    }

    /// The set with `cap` removed.
    pub const fn without(self, cap: Capability) -> CapabilitySet {
        CapabilitySet(self.0 & !cap.bit())
    }

    /// Iterates in declaration order.
    pub fn iter(self) -> impl Iterator<Item = Capability> {
        Capability::ALL.into_iter().filter(move |c| self.has(*c))
    }

    /// Dapr's `components[].capabilities` list: the Dapr feature strings in declaration order,
    /// plus `ACTOR` when both `ETAG` and `TRANSACTIONAL` are present.
    ///
    /// ```
    /// use mecha::capabilities::{Capability, CapabilitySet};
    ///
    /// let caps = CapabilitySet::of(&[Capability::Ttl, Capability::Etag, Capability::Transactional, Capability::BulkNative]);
    /// assert_eq!(caps.dapr_strings(), ["ETAG", "TRANSACTIONAL", "TTL", "ACTOR"]);
    /// assert!(caps.has(Capability::BulkNative), "Mecha's own capabilities stay in the set");
    /// ```
    pub fn dapr_strings(self) -> Vec<String> {
        let mut out: Vec<String> = self
            .iter()
            .filter(|c| c.is_dapr_feature())
            .map(|c| c.as_str().to_owned())
            .collect();
        if self.has(Capability::Etag) && self.has(Capability::Transactional) {
            out.push("ACTOR".to_owned());
        }
        out
    }

    /// Every capability name, Mecha's extras included, comma separated.
    pub fn to_list_string(self) -> String {
        self.iter()
            .map(Capability::as_str)
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl fmt::Debug for CapabilitySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for c in Capability::ALL {
            assert_eq!(Capability::parse(c.as_str()), Some(c));
        }
        assert_eq!(Capability::parse("etag"), None);
    }

    #[test]
    fn dapr_strings_add_actor_only_with_etag_and_transactional() {
        let cases: &[(&[Capability], &[&str])] = &[
            (&[], &[]),
            (&[Capability::Etag], &["ETAG"]),
            (
                &[Capability::Transactional, Capability::Etag],
                &["ETAG", "TRANSACTIONAL", "ACTOR"],
            ),
            (&[Capability::Ttl, Capability::BulkNative], &["TTL"]),
        ];
        for (caps, want) in cases {
            assert_eq!(CapabilitySet::of(caps).dapr_strings(), *want, "{caps:?}");
        }
    }

    #[test]
    fn set_operations() {
        let s = CapabilitySet::of(&[Capability::Ttl]).with(Capability::Etag);
        assert!(s.has(Capability::Ttl) && s.has(Capability::Etag));
        assert!(!s.without(Capability::Ttl).has(Capability::Ttl));
        assert_eq!(s.to_list_string(), "ETAG,TTL");
        assert!(Capability::KeysLike.is_dapr_feature());
        assert!(!Capability::FirstWrite.is_dapr_feature());
    }
}
