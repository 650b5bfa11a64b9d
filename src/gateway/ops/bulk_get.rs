//! GetBulkState: many keys, fanned out by the store (natively, or by Mecha's bounded fan-out).

use crate::actors::StoreHandle;
use crate::capabilities::lint::{LintOp, Location};
use crate::capabilities::{Feature, Needs, Shape};
use crate::error::Error;
use crate::gateway::limits;
use crate::model::{Consistency, GetRequest, Metadata, Operation, StateEntry};

use super::checks::shape_of;
use super::get::has_expiry;
use super::{Scope, StateOp, Validated};

/// GetBulkState.
pub struct BulkGet;

/// A GetBulkState as a door hands it over.
#[derive(Debug, Clone)]
pub struct BulkGetInput {
    /// The user's keys.
    pub keys: Vec<String>,
    /// Requested fan-out (≤ 0: Mecha's default).
    pub parallelism: i32,
    /// Metadata for every key.
    pub metadata: Metadata,
}

/// One result of GetBulkState, keyed by the user's key.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkItem {
    /// The user's key.
    pub key: String,
    /// The value, `None` when missing, or this key's error.
    pub result: Result<Option<StateEntry>, String>,
}

/// A validated bulk get: the store's requests, the user's keys, the fan-out.
pub struct BulkGetExec {
    gets: Vec<GetRequest>,
    keys: Vec<String>,
    parallelism: usize,
}

impl StateOp for BulkGet {
    const OP: Operation = Operation::BulkGet;
    const URL_LINT: LintOp = LintOp::Get;
    type Request = BulkGetInput;
    type Exec = BulkGetExec;
    /// One item per key, in request order.
    type Reply = Vec<BulkItem>;

    fn metadata<'r>(req: &'r BulkGetInput, each: &mut dyn FnMut(&'r Metadata, LintOp, Location)) {
        each(&req.metadata, LintOp::Get, Location::Request);
    }

    /// A bulk get has no consistency option.
    fn needs(shape: &Shape) -> Needs {
        Needs::NONE
            .with_if(Feature::Bulk, shape.items > 1)
            .with_if(Feature::PartitionKey, shape.partition_key)
    }

    fn validate(at: &Scope<'_>, req: BulkGetInput) -> Result<Validated<Self>, Error> {
        let keys = req.keys;
        limits::items(at.op, "keys", keys.len(), at.limits.max_bulk_items)?;
        for k in &keys {
            at.check_key(k)?;
        }
        if keys.is_empty() {
            return Ok(Validated::Nothing(Vec::new()));
        }
        let shape = shape_of(keys.len(), &req.metadata);
        let gets = keys
            .iter()
            .map(|k| GetRequest {
                key: at.prefixed(k),
                consistency: Consistency::Unspecified,
                metadata: req.metadata.clone(),
            })
            .collect();
        let parallelism = match usize::try_from(req.parallelism) {
            Ok(p) if p > 0 => p,
            _ => at.limits.default_bulk_parallelism,
        };
        let exec = BulkGetExec {
            gets,
            keys,
            parallelism,
        };
        Ok(Validated::Run(exec, shape))
    }

    async fn execute(
        handle: StoreHandle,
        store: &str,
        exec: BulkGetExec,
    ) -> Result<Vec<BulkItem>, Error> {
        let results = handle
            .bulk_get(exec.gets, exec.parallelism)
            .await
            .map_err(|e| Error::from_store(e, Self::OP, store, ""))?;
        Ok(exec
            .keys
            .into_iter()
            .zip(results)
            .map(|(key, r)| BulkItem {
                key,
                result: r.map_err(|e| e.to_string()),
            })
            .collect())
    }

    fn served_an_expiry(reply: &Vec<BulkItem>) -> bool {
        reply
            .iter()
            .any(|i| i.result.as_ref().is_ok_and(has_expiry))
    }
}
