//! ExecuteStateTransaction: writes and deletes applied all or nothing.

use crate::actors::StoreHandle;
use crate::capabilities::lint::{LintOp, Location};
use crate::capabilities::{Feature, Needs, Plan, Shape};
use crate::error::Error;
use crate::gateway::limits;
use crate::model::{Metadata, Operation, TransactionOp, TransactionRequest};

use super::checks::{degrade_delete, degrade_set, shape_of, shape_of_delete, shape_of_set};
use super::save::upsert_needs;
use super::{Scope, StateOp, Validated};

/// ExecuteStateTransaction.
pub struct Transaction;

impl StateOp for Transaction {
    const OP: Operation = Operation::Transaction;
    // HTTP copies URL metadata over every operation: it reaches the writes.
    const URL_LINT: LintOp = LintOp::Save;
    type Request = TransactionRequest;
    type Exec = TransactionRequest;
    type Reply = ();

    fn metadata<'r>(
        req: &'r TransactionRequest,
        each: &mut dyn FnMut(&'r Metadata, LintOp, Location),
    ) {
        each(&req.metadata, LintOp::Transaction, Location::Transaction);
        for (i, o) in req.operations.iter().enumerate() {
            match o {
                TransactionOp::Upsert(r) => each(&r.metadata, LintOp::Save, Location::Operation(i)),
                TransactionOp::Delete(r) => {
                    each(&r.metadata, LintOp::Delete, Location::Operation(i))
                }
            }
        }
    }

    /// A transaction's deletes need nothing an upsert could not need.
    fn needs(shape: &Shape) -> Needs {
        upsert_needs(shape).with(Feature::Transactions)
    }

    fn validate(at: &Scope<'_>, req: TransactionRequest) -> Result<Validated<Self>, Error> {
        let max = at.info.matrix.max_transaction_ops();
        limits::transaction_ops(at.op, req.operations.len(), max, &at.info.name)?;
        let ops = req
            .operations
            .into_iter()
            .map(|o| match o {
                TransactionOp::Upsert(r) => at.set(r).map(TransactionOp::Upsert),
                TransactionOp::Delete(r) => at.delete(r).map(TransactionOp::Delete),
            })
            .collect::<Result<Vec<_>, Error>>()?;
        if ops.is_empty() {
            return Ok(Validated::Nothing(()));
        }
        let mut shape = shape_of(ops.len(), &req.metadata);
        for o in &ops {
            match o {
                TransactionOp::Upsert(r) => shape_of_set(&mut shape, r),
                TransactionOp::Delete(r) => shape_of_delete(&mut shape, r),
            }
        }
        let exec = TransactionRequest {
            operations: ops,
            metadata: req.metadata,
        };
        Ok(Validated::Run(exec, shape))
    }

    fn degrade(plan: &Plan, t: &mut TransactionRequest) {
        t.operations.iter_mut().for_each(|o| match o {
            TransactionOp::Upsert(r) => degrade_set(plan, r),
            TransactionOp::Delete(r) => degrade_delete(plan, r),
        });
    }

    async fn execute(handle: StoreHandle, store: &str, t: TransactionRequest) -> Result<(), Error> {
        handle
            .transact(t)
            .await
            .map_err(|e| Error::from_store(e, Self::OP, store, ""))
    }
}
