//! Every operation against every capability status: what it needs, how the plan serves it.

use crate::capabilities::{
    Action, Capability, CapabilitySet, Feature, Matrix, Needs, Policy, Shape, Status, StoreTraits,
    negotiate,
};
use crate::model::Operation;

use super::{BulkDelete, BulkGet, Delete, Get, Query, Save, StateOp, Transaction};

const ALL_STATUSES: [Status; 4] = [
    Status::Native,
    Status::Emulated,
    Status::Ignored,
    Status::Rejected,
];

/// What an operation needs for a request of a shape.
type NeedsOf = fn(&Shape) -> Needs;

/// Every operation with what it needs.
const OPS: [(Operation, NeedsOf); 7] = [
    (Get::OP, Get::needs),
    (BulkGet::OP, BulkGet::needs),
    (Save::OP, Save::needs),
    (Delete::OP, Delete::needs),
    (BulkDelete::OP, BulkDelete::needs),
    (Transaction::OP, Transaction::needs),
    (Query::OP, Query::needs),
];

fn traits(caps: &[Capability], lists_keys: bool) -> StoreTraits {
    StoreTraits {
        native: CapabilitySet::of(caps),
        lists_keys,
        max_transaction_ops: 100,
    }
}

/// A matrix in which `feature` has `status` (by native capability or policy), or `None` when
/// no valid policy produces that status for the feature.
fn matrix_with(feature: Feature, status: Status) -> Option<Matrix> {
    // A key-value store with CAS and key listing, like JetStream: TTL can be emulated.
    let mut caps = vec![Capability::Etag, Capability::FirstWrite];
    let mut policy = Policy::default();
    match status {
        Status::Native => caps.push(feature.capability()),
        Status::Emulated => {
            policy.features.insert(feature, Action::Emulate);
        }
        Status::Ignored => {
            policy.features.insert(feature, Action::Ignore);
        }
        Status::Rejected => {
            policy.features.insert(feature, Action::Reject);
        }
    }
    if status != Status::Native {
        caps.retain(|c| *c != feature.capability());
    }
    Matrix::build(traits(&caps, true), &policy).ok()
}

fn shape_needing(feature: Feature) -> Shape {
    let mut s = Shape {
        items: 1,
        ..Shape::default()
    };
    match feature {
        Feature::Etag => s.etag = true,
        Feature::FirstWrite => s.first_write = true,
        Feature::Ttl => s.ttl = true,
        Feature::Bulk => s.items = 3,
        Feature::StrongConsistency => s.strong = true,
        Feature::PartitionKey => s.partition_key = true,
        Feature::Transactions | Feature::Query => {}
    }
    s
}

/// Which operations can carry which feature.
fn carries(op: Operation, f: Feature) -> bool {
    use Feature as F;
    use Operation as O;
    match f {
        F::Etag => matches!(op, O::Save | O::Delete | O::BulkDelete | O::Transaction),
        F::FirstWrite | F::Ttl => matches!(op, O::Save | O::Transaction),
        F::Transactions => op == O::Transaction,
        F::Query => op == O::Query,
        F::Bulk => matches!(op, O::BulkGet | O::Save | O::BulkDelete),
        F::StrongConsistency => matches!(
            op,
            O::Get | O::Save | O::Delete | O::BulkDelete | O::Transaction
        ),
        F::PartitionKey => true,
    }
}

/// Which (feature, status) pairs a valid policy can produce at all.
fn producible(f: Feature, s: Status) -> bool {
    match s {
        Status::Native | Status::Rejected => true,
        Status::Emulated => matches!(f, Feature::Bulk | Feature::Ttl | Feature::Query),
        Status::Ignored => matches!(
            f,
            Feature::Ttl | Feature::StrongConsistency | Feature::PartitionKey
        ),
    }
}

#[test]
fn every_capability_status_and_operation() {
    let mut cases = 0;
    for (op, needs) in OPS {
        for f in Feature::ALL {
            for status in ALL_STATUSES {
                let matrix = matrix_with(f, status);
                assert_eq!(
                    matrix.is_some(),
                    producible(f, status),
                    "{f:?} {status:?}: policy validity"
                );
                let Some(matrix) = matrix else { continue };
                assert_eq!(matrix.status(f), status, "{f:?} {status:?}");
                let plan = negotiate(needs(&shape_needing(f)), &matrix);
                if carries(op, f) {
                    assert_eq!(plan.status(f), Some(status), "{op:?} {f:?} {status:?}");
                    // Any other step is the operation's own need (a transaction, a query).
                    let others: Vec<Feature> = plan
                        .steps
                        .iter()
                        .map(|s| s.feature)
                        .filter(|g| *g != f)
                        .collect();
                    assert!(
                        others
                            .iter()
                            .all(|g| matches!(g, Feature::Transactions | Feature::Query)),
                        "{op:?} {f:?}: {others:?}"
                    );
                    let step = plan.steps.iter().find(|s| s.feature == f).unwrap();
                    assert_eq!(step.cell.status, status);
                    let want =
                        matches!(status, Status::Emulated | Status::Ignored).then_some((f, status));
                    let got = plan
                        .receipt()
                        .entries()
                        .iter()
                        .copied()
                        .find(|(g, _)| *g == f);
                    assert_eq!(got, want, "{op:?} {f:?} {status:?}");
                    if others.is_empty() {
                        assert_eq!(
                            plan.rejected().map(|s| s.feature),
                            (status == Status::Rejected).then_some(f)
                        );
                        assert_eq!(
                            plan.receipt().header_value(),
                            want.map(|(f, s)| format!("{}={s}", f.receipt_name()))
                        );
                    }
                } else {
                    assert_eq!(plan.status(f), None, "{op:?} {f:?} {status:?}");
                }
                cases += 1;
            }
        }
    }
    assert!(cases > 100);
}
