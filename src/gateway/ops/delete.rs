//! DeleteState: one key.

use crate::actors::StoreHandle;
use crate::capabilities::lint::{LintOp, Location};
use crate::capabilities::{Needs, Plan, Shape};
use crate::error::Error;
use crate::keys;
use crate::model::{DeleteRequest, Metadata, Operation};

use super::checks::{degrade_delete, shape_of, shape_of_delete};
use super::{Scope, StateOp, Validated};

/// DeleteState.
pub struct Delete;

/// What deletes (single, bulk, in a transaction) can need.
pub(super) fn delete_needs(shape: &Shape) -> Needs {
    use crate::capabilities::Feature;
    Needs::NONE
        .with_if(Feature::Etag, shape.etag)
        .with_if(Feature::StrongConsistency, shape.strong)
        .with_if(Feature::PartitionKey, shape.partition_key)
}

impl StateOp for Delete {
    const OP: Operation = Operation::Delete;
    const URL_LINT: LintOp = LintOp::Delete;
    type Request = DeleteRequest;
    type Exec = DeleteRequest;
    type Reply = ();

    fn metadata<'r>(req: &'r DeleteRequest, each: &mut dyn FnMut(&'r Metadata, LintOp, Location)) {
        each(&req.metadata, LintOp::Delete, Location::Request);
    }

    fn needs(shape: &Shape) -> Needs {
        delete_needs(shape)
    }

    fn validate(at: &Scope<'_>, req: DeleteRequest) -> Result<Validated<Self>, Error> {
        let del = at.delete(req)?;
        let mut shape = shape_of(1, &Metadata::new());
        shape_of_delete(&mut shape, &del);
        Ok(Validated::Run(del, shape))
    }

    fn degrade(plan: &Plan, del: &mut DeleteRequest) {
        degrade_delete(plan, del);
    }

    async fn execute(handle: StoreHandle, store: &str, del: DeleteRequest) -> Result<(), Error> {
        let key = keys::original_key(&del.key).to_owned();
        handle
            .delete(del)
            .await
            .map_err(|e| Error::from_store(e, Self::OP, store, &key))
    }
}
