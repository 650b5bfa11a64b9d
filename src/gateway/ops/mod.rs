//! The state operations, one file each.
//!
//! An operation is a type implementing [`StateOp`]: the request a door hands over (user
//! keys), the metadata maps it carries (for the lint), how it is validated and what its
//! shape needs from the store's matrix, what a plan's ignored options remove from it, how
//! it runs on the store, and its typed reply. The gateway's pipeline is generic over it, so
//! adding an operation is one file here, its line in the list below, and its row in
//! [`Operation`]'s wire facts (its metric label, method name, error code and message).

mod bulk_delete;
mod bulk_get;
mod checks;
mod delete;
mod get;
mod query;
mod save;
mod transaction;

use std::future::Future;

pub use bulk_delete::BulkDelete;
pub use bulk_get::{BulkGet, BulkGetInput, BulkItem};
pub use checks::{MAX_ETAG_LEN, Scope};
pub use delete::Delete;
pub use get::{Get, GetInput};
pub use query::{Query, QueryInput};
pub use save::Save;
pub use transaction::Transaction;

use crate::actors::{StoreError, StoreHandle};
use crate::capabilities::lint::{LintOp, Location};
use crate::capabilities::{Needs, Plan, Shape};
use crate::error::{Error, ErrorKind};
use crate::keys;
use crate::model::{Metadata, Operation};

/// One state operation.
pub trait StateOp: Sized + Send + 'static {
    /// Which operation it is (metrics labels, error codes).
    const OP: Operation;
    /// How request-level metadata the door took from the URL is linted.
    const URL_LINT: LintOp;
    /// The request as a door hands it over, with the user's keys.
    type Request: Send + 'static;
    /// The validated request, keys prefixed, ready for the store.
    type Exec: 'static;
    /// What the operation answers.
    type Reply: Send + 'static;

    /// Calls `each` with every metadata map of the request, in request order, with how and
    /// where it is linted.
    fn metadata<'r>(req: &'r Self::Request, each: &mut dyn FnMut(&'r Metadata, LintOp, Location));

    /// What a request of `shape` needs from the store's matrix; with the default shape,
    /// what the operation itself needs (transactions, query).
    fn needs(shape: &Shape) -> Needs;

    /// Checks keys, counts, TTLs and ETags, applies the key prefix and measures the shape.
    fn validate(at: &Scope<'_>, req: Self::Request) -> Result<Validated<Self>, Error>;

    /// Removes from the request what the plan ignores, so the store never sees it.
    fn degrade(_plan: &Plan, _exec: &mut Self::Exec) {}

    /// Runs the validated request on the store behind `handle` (named `store`).
    fn execute(
        handle: StoreHandle,
        store: &str,
        exec: Self::Exec,
    ) -> impl Future<Output = Result<Self::Reply, Error>>;

    /// Whether the reply holds an item with an expiry (on a store with emulated TTL, one
    /// Mecha served).
    fn served_an_expiry(_reply: &Self::Reply) -> bool {
        false
    }
}

/// What validation leaves of a request.
pub enum Validated<O: StateOp> {
    /// Work for the store, and the request's shape for negotiation.
    Run(O::Exec, Shape),
    /// Nothing to do (an empty bulk request): the answer is known.
    Nothing(O::Reply),
}

/// Folds per-item results of a bulk write into Dapr's one answer: success; ETag errors only
/// (409, or 400 when one is invalid), with the good items kept; or a store failure (500).
fn fold_bulk(
    results: Vec<Result<(), StoreError>>,
    keys: &[String],
    op: Operation,
    store: &str,
) -> Result<(), Error> {
    let failures: Vec<(&String, StoreError)> = keys
        .iter()
        .zip(results)
        .filter_map(|(k, r)| r.err().map(|e| (k, e)))
        .collect();
    if failures.is_empty() {
        return Ok(());
    }
    let kind = if failures.iter().all(|(_, e)| e.is_etag()) {
        if failures
            .iter()
            .any(|(_, e)| matches!(e, StoreError::EtagInvalid(_)))
        {
            ErrorKind::EtagInvalid
        } else {
            ErrorKind::EtagMismatch
        }
    } else {
        ErrorKind::StoreFailure
    };
    let detail = failures
        .iter()
        .map(|(k, e)| format!("key {}: {e}", keys::original_key(k)))
        .collect::<Vec<_>>()
        .join("; ");
    Err(Error::new(kind, op).store(store).detail(detail))
}

/// A write of several items (save, bulk delete): one item is one store call (its error names
/// the key); several are one bulk call whose per-item results fold into Dapr's one answer.
async fn write<R, One, Many>(
    op: Operation,
    name: &str,
    mut reqs: Vec<R>,
    key_of: fn(&R) -> &str,
    one: impl FnOnce(R) -> One,
    many: impl FnOnce(Vec<R>) -> Many,
) -> Result<(), Error>
where
    One: Future<Output = Result<(), StoreError>>,
    Many: Future<Output = Result<Vec<Result<(), StoreError>>, StoreError>>,
{
    if reqs.len() == 1 {
        let req = reqs.pop().expect("one item");
        let key = keys::original_key(key_of(&req)).to_owned();
        return one(req)
            .await
            .map_err(|e| Error::from_store(e, op, name, &key));
    }
    let keys: Vec<String> = reqs.iter().map(|r| key_of(r).to_owned()).collect();
    let results = many(reqs)
        .await
        .map_err(|e| Error::from_store(e, op, name, ""))?;
    fold_bulk(results, &keys, op, name)
}

#[cfg(test)]
mod tests;
