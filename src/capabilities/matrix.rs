//! The effective capability matrix of a store: for every feature, what the store does
//! natively and what the operator's policy decides where it does not.

use super::policy::{
    Baseline, Feature, Origin, Policy, PolicyProblem, Status, StoreTraits, allowed,
};
use super::{Capability, CapabilitySet};

/// One cell of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cell {
    /// Effective status.
    pub status: Status,
    /// Where it came from.
    pub origin: Origin,
}

impl Cell {
    /// How the policy reads in error messages: `reject`, `reject (default)`, `reject (built-in default)`.
    pub fn policy_text(&self) -> String {
        let action = match self.status {
            Status::Native => "native",
            Status::Emulated => "emulate",
            Status::Ignored => "ignore",
            Status::Rejected => "reject",
        };
        match self.origin {
            Origin::Native | Origin::Explicit => action.to_owned(),
            Origin::StoreDefault => format!("{action} (the store's default)"),
            Origin::BuiltIn(Baseline::Compatible) => format!("{action} (built-in default)"),
            Origin::BuiltIn(Baseline::Strict) => format!("{action} (default: strict)"),
            Origin::App => format!("{action} (the app's own policy)"),
        }
    }
}

/// The effective matrix of one store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matrix {
    traits: StoreTraits,
    cells: [Cell; Feature::ALL.len()],
}

impl Matrix {
    /// Combines native traits and policy; every refused policy is listed.
    pub fn build(traits: StoreTraits, policy: &Policy) -> Result<Matrix, Vec<PolicyProblem>> {
        let mut problems = Vec::new();
        let cells = Feature::ALL.map(|f| {
            if traits.native.has(f.capability()) {
                return Cell {
                    status: Status::Native,
                    origin: Origin::Native,
                };
            }
            if let Some(&action) = policy.features.get(&f) {
                return match allowed(&traits, f, action) {
                    Ok(status) => Cell {
                        status,
                        origin: Origin::Explicit,
                    },
                    Err(reason) => {
                        problems.push(PolicyProblem {
                            feature: f,
                            action,
                            reason,
                        });
                        Cell {
                            status: Status::Rejected,
                            origin: Origin::Explicit,
                        }
                    }
                };
            }
            if let Some(status) = policy.default.and_then(|a| allowed(&traits, f, a).ok()) {
                return Cell {
                    status,
                    origin: Origin::StoreDefault,
                };
            }
            Cell {
                status: policy.baseline.status(&traits, f),
                origin: Origin::BuiltIn(policy.baseline),
            }
        });
        if problems.is_empty() {
            Ok(Matrix { traits, cells })
        } else {
            Err(problems)
        }
    }

    /// The matrix of a store that no `stores:` entry names, under `baseline`.
    pub fn without_policy(traits: StoreTraits, baseline: Baseline) -> Matrix {
        let policy = Policy {
            baseline,
            ..Policy::default()
        };
        Matrix::build(traits, &policy).expect("a baseline alone is always valid")
    }

    /// The cell of `feature`.
    pub fn cell(&self, feature: Feature) -> Cell {
        self.cells[feature as usize]
    }

    /// The effective status of `feature`.
    pub fn status(&self, feature: Feature) -> Status {
        self.cell(feature).status
    }

    /// The native traits the matrix was built from.
    pub fn traits(&self) -> &StoreTraits {
        &self.traits
    }

    /// Effective maximum operations per transaction.
    pub fn max_transaction_ops(&self) -> usize {
        self.traits.max_transaction_ops
    }

    /// How this matrix serves a Dapr capability string an app may require (`ETAG`,
    /// `TRANSACTIONAL`, `TTL`, ..., `ACTOR`): the status of its feature; capabilities without
    /// a policy (`DELETE_WITH_PREFIX`, `KEYS_LIKE`) are native or rejected; `ACTOR` needs
    /// native ETag and transactions. `None` for a string that is not a capability.
    pub fn requirement_status(&self, requirement: &str) -> Option<Status> {
        if requirement == "ACTOR" {
            let both = self.status(Feature::Etag) == Status::Native
                && self.status(Feature::Transactions) == Status::Native;
            return Some(if both {
                Status::Native
            } else {
                Status::Rejected
            });
        }
        let cap = Capability::parse(requirement)?;
        if let Some(f) = Feature::ALL.into_iter().find(|f| f.capability() == cap) {
            return Some(self.status(f));
        }
        Some(if self.traits.native.has(cap) {
            Status::Native
        } else {
            Status::Rejected
        })
    }

    /// This matrix with `features` rejected for one app (its tightenings): a native cell
    /// stays native (there is nothing to tighten), anything else becomes rejected.
    pub fn tightened(&self, features: impl IntoIterator<Item = Feature>) -> Matrix {
        let mut m = self.clone();
        for f in features {
            if m.cells[f as usize].status != Status::Native {
                m.cells[f as usize] = Cell {
                    status: Status::Rejected,
                    origin: Origin::App,
                };
            }
        }
        m
    }

    /// Native capabilities plus emulated ones: what an SDK may rely on.
    pub fn effective(&self) -> CapabilitySet {
        let mut set = self.traits.native;
        for f in Feature::ALL {
            if self.status(f) == Status::Emulated {
                set = set.with(f.capability());
            }
        }
        set
    }

    /// Dapr's `capabilities` list: native or emulated features only, and `ACTOR` only when
    /// ETag and transactions are both native.
    pub fn dapr_strings(&self) -> Vec<String> {
        // ETag and transactions are never emulated (see [`emulation`]), so the `ACTOR` that
        // `CapabilitySet::dapr_strings` derives from the effective set means both are native.
        self.effective().dapr_strings()
    }

    /// The full matrix as one line: `etag=native,first-write=native,transactions=native(max=1000),...`.
    pub fn describe(&self) -> String {
        Feature::ALL
            .iter()
            .map(|&f| {
                let s = self.status(f);
                if f == Feature::Transactions && s == Status::Native {
                    format!(
                        "{}={}(max={})",
                        f.receipt_name(),
                        s,
                        self.traits.max_transaction_ops
                    )
                } else {
                    format!("{}={}", f.receipt_name(), s)
                }
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}
