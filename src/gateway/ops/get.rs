//! GetState: one key.

use crate::actors::StoreHandle;
use crate::capabilities::lint::{LintOp, Location};
use crate::capabilities::{Feature, Needs, Plan, Shape, Status};
use crate::error::Error;
use crate::model::{Consistency, GetRequest, Metadata, Operation, StateEntry, TTL_EXPIRE_TIME};

use super::checks::shape_of;
use super::{Scope, StateOp, Validated};

/// GetState.
pub struct Get;

/// A GetState as a door hands it over.
#[derive(Debug, Clone)]
pub struct GetInput {
    /// The user's key.
    pub key: String,
    /// Requested consistency.
    pub consistency: Consistency,
    /// Request metadata.
    pub metadata: Metadata,
}

/// Whether an entry carries an expiry set by emulated TTL.
pub(super) fn has_expiry(e: &Option<StateEntry>) -> bool {
    e.as_ref()
        .is_some_and(|e| e.metadata.contains_key(TTL_EXPIRE_TIME))
}

impl StateOp for Get {
    const OP: Operation = Operation::Get;
    const URL_LINT: LintOp = LintOp::Get;
    type Request = GetInput;
    /// The request, and the user's key (for errors).
    type Exec = (GetRequest, String);
    /// The entry, or `None` when missing.
    type Reply = Option<StateEntry>;

    fn metadata<'r>(req: &'r GetInput, each: &mut dyn FnMut(&'r Metadata, LintOp, Location)) {
        each(&req.metadata, LintOp::Get, Location::Request);
    }

    fn needs(shape: &Shape) -> Needs {
        Needs::NONE
            .with_if(Feature::StrongConsistency, shape.strong)
            .with_if(Feature::PartitionKey, shape.partition_key)
    }

    fn validate(at: &Scope<'_>, req: GetInput) -> Result<Validated<Self>, Error> {
        at.check_key(&req.key)?;
        let mut shape = shape_of(1, &req.metadata);
        shape.strong = req.consistency == Consistency::Strong;
        let get = GetRequest {
            key: at.prefixed(&req.key),
            consistency: req.consistency,
            metadata: req.metadata,
        };
        Ok(Validated::Run((get, req.key), shape))
    }

    fn degrade(plan: &Plan, (get, _): &mut Self::Exec) {
        if plan.status(Feature::StrongConsistency) == Some(Status::Ignored) {
            get.consistency = Consistency::Eventual;
        }
    }

    async fn execute(
        handle: StoreHandle,
        store: &str,
        (get, key): Self::Exec,
    ) -> Result<Option<StateEntry>, Error> {
        handle
            .get(get)
            .await
            .map_err(|e| Error::from_store(e, Self::OP, store, &key))
    }

    fn served_an_expiry(reply: &Option<StateEntry>) -> bool {
        has_expiry(reply)
    }
}
