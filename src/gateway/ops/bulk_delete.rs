//! DeleteBulkState (gRPC): several keys.

use crate::actors::StoreHandle;
use crate::capabilities::lint::{LintOp, Location};
use crate::capabilities::{Feature, Needs, Plan, Shape};
use crate::error::Error;
use crate::gateway::limits;
use crate::model::{DeleteRequest, Metadata, Operation};

use super::checks::{degrade_delete, shape_of, shape_of_delete};
use super::delete::delete_needs;
use super::{Scope, StateOp, Validated, write};

/// DeleteBulkState.
pub struct BulkDelete;

impl StateOp for BulkDelete {
    const OP: Operation = Operation::BulkDelete;
    const URL_LINT: LintOp = LintOp::Delete;
    type Request = Vec<DeleteRequest>;
    type Exec = Vec<DeleteRequest>;
    type Reply = ();

    fn metadata<'r>(
        req: &'r Vec<DeleteRequest>,
        each: &mut dyn FnMut(&'r Metadata, LintOp, Location),
    ) {
        for (i, r) in req.iter().enumerate() {
            each(&r.metadata, LintOp::Delete, Location::Item(i));
        }
    }

    fn needs(shape: &Shape) -> Needs {
        delete_needs(shape).with_if(Feature::Bulk, shape.items > 1)
    }

    fn validate(at: &Scope<'_>, items: Vec<DeleteRequest>) -> Result<Validated<Self>, Error> {
        limits::items(at.op, "keys", items.len(), at.limits.max_bulk_items)?;
        let dels = items
            .into_iter()
            .map(|r| at.delete(r))
            .collect::<Result<Vec<_>, Error>>()?;
        if dels.is_empty() {
            return Ok(Validated::Nothing(()));
        }
        let mut shape = shape_of(dels.len(), &Metadata::new());
        dels.iter().for_each(|r| shape_of_delete(&mut shape, r));
        Ok(Validated::Run(dels, shape))
    }

    fn degrade(plan: &Plan, dels: &mut Vec<DeleteRequest>) {
        dels.iter_mut().for_each(|r| degrade_delete(plan, r));
    }

    async fn execute(
        handle: StoreHandle,
        store: &str,
        dels: Vec<DeleteRequest>,
    ) -> Result<(), Error> {
        let key_of: fn(&DeleteRequest) -> &str = |r| &r.key;
        write(
            Self::OP,
            store,
            dels,
            key_of,
            |r| handle.delete(r),
            |rs| handle.bulk_delete(rs),
        )
        .await
    }
}
