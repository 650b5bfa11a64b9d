//! SaveState: one or several writes.

use crate::actors::StoreHandle;
use crate::capabilities::lint::{LintOp, Location};
use crate::capabilities::{Feature, Needs, Plan, Shape};
use crate::error::Error;
use crate::gateway::limits;
use crate::model::{Metadata, Operation, SetRequest};

use super::checks::{degrade_set, shape_of, shape_of_set};
use super::{Scope, StateOp, Validated, write};

/// SaveState.
pub struct Save;

/// What writes (saves and transactions' upserts) can need.
pub(super) fn upsert_needs(shape: &Shape) -> Needs {
    Needs::NONE
        .with_if(Feature::Etag, shape.etag)
        .with_if(Feature::FirstWrite, shape.first_write)
        .with_if(Feature::Ttl, shape.ttl)
        .with_if(Feature::StrongConsistency, shape.strong)
        .with_if(Feature::PartitionKey, shape.partition_key)
}

impl StateOp for Save {
    const OP: Operation = Operation::Save;
    // HTTP copies URL metadata over every item: it reaches the writes.
    const URL_LINT: LintOp = LintOp::Save;
    /// The items; `ttl` is filled in from metadata by validation.
    type Request = Vec<SetRequest>;
    type Exec = Vec<SetRequest>;
    type Reply = ();

    fn metadata<'r>(
        req: &'r Vec<SetRequest>,
        each: &mut dyn FnMut(&'r Metadata, LintOp, Location),
    ) {
        for (i, r) in req.iter().enumerate() {
            each(&r.metadata, LintOp::Save, Location::Item(i));
        }
    }

    fn needs(shape: &Shape) -> Needs {
        upsert_needs(shape).with_if(Feature::Bulk, shape.items > 1)
    }

    fn validate(at: &Scope<'_>, items: Vec<SetRequest>) -> Result<Validated<Self>, Error> {
        limits::items(at.op, "items", items.len(), at.limits.max_bulk_items)?;
        let sets = items
            .into_iter()
            .map(|r| at.set(r))
            .collect::<Result<Vec<_>, Error>>()?;
        if sets.is_empty() {
            return Ok(Validated::Nothing(()));
        }
        let mut shape = shape_of(sets.len(), &Metadata::new());
        sets.iter().for_each(|r| shape_of_set(&mut shape, r));
        Ok(Validated::Run(sets, shape))
    }

    fn degrade(plan: &Plan, sets: &mut Vec<SetRequest>) {
        sets.iter_mut().for_each(|r| degrade_set(plan, r));
    }

    async fn execute(handle: StoreHandle, store: &str, sets: Vec<SetRequest>) -> Result<(), Error> {
        let key_of: fn(&SetRequest) -> &str = |r| &r.key;
        write(
            Self::OP,
            store,
            sets,
            key_of,
            |r| handle.set(r),
            |rs| handle.bulk_set(rs),
        )
        .await
    }
}
