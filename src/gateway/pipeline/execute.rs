//! Step 6 (execute): the prepared request runs on the store through its handle; bulk
//! results fold into Dapr's one answer, and reads served by emulated TTL are marked.

use std::future::Future;

use crate::actors::{StoreError, StoreHandle};
use crate::error::{Error, ErrorKind};
use crate::gateway::actor::{BulkItem, StateReply};
use crate::keys;
use crate::model::{
    DeleteRequest, Operation, QueryRequest, SetRequest, StateEntry, TTL_EXPIRE_TIME,
};

use super::validate::Exec;

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

/// Whether an entry carries an expiry set by emulated TTL.
fn has_expiry(e: &Option<StateEntry>) -> bool {
    e.as_ref()
        .is_some_and(|e| e.metadata.contains_key(TTL_EXPIRE_TIME))
}

/// Runs the prepared request on the store.
pub(super) async fn execute(
    handle: StoreHandle,
    op: Operation,
    name: &str,
    exec: Exec,
) -> Result<StateReply, Error> {
    match exec {
        Exec::Get(req, user_key) => handle
            .get(req)
            .await
            .map(StateReply::Entry)
            .map_err(|e| Error::from_store(e, op, name, &user_key)),
        Exec::BulkGet(reqs, user_keys, parallelism) => {
            let results = handle
                .bulk_get(reqs, parallelism)
                .await
                .map_err(|e| Error::from_store(e, op, name, ""))?;
            Ok(StateReply::Bulk(
                user_keys
                    .into_iter()
                    .zip(results)
                    .map(|(key, r)| BulkItem {
                        key,
                        result: r.map_err(|e| e.to_string()),
                    })
                    .collect(),
            ))
        }
        Exec::Save(reqs) => {
            let key_of: fn(&SetRequest) -> &str = |r| &r.key;
            write(
                op,
                name,
                reqs,
                key_of,
                |r| handle.set(r),
                |rs| handle.bulk_set(rs),
            )
            .await
        }
        Exec::Delete(reqs) => {
            let key_of: fn(&DeleteRequest) -> &str = |r| &r.key;
            write(
                op,
                name,
                reqs,
                key_of,
                |r| handle.delete(r),
                |rs| handle.bulk_delete(rs),
            )
            .await
        }
        Exec::Transaction(req) => handle
            .transact(req)
            .await
            .map(|()| StateReply::Done)
            .map_err(|e| Error::from_store(e, op, name, "")),
        Exec::Query(req) => query(handle, op, name, req).await,
    }
}

/// A save or delete: one item is one store call (its error names the key); several are one
/// bulk call whose per-item results fold into Dapr's one answer.
async fn write<R, One, Many>(
    op: Operation,
    name: &str,
    mut reqs: Vec<R>,
    key_of: fn(&R) -> &str,
    one: impl FnOnce(R) -> One,
    many: impl FnOnce(Vec<R>) -> Many,
) -> Result<StateReply, Error>
where
    One: Future<Output = Result<(), StoreError>>,
    Many: Future<Output = Result<Vec<Result<(), StoreError>>, StoreError>>,
{
    if reqs.len() == 1 {
        let req = reqs.pop().expect("one item");
        let key = keys::original_key(key_of(&req)).to_owned();
        return one(req)
            .await
            .map(|()| StateReply::Done)
            .map_err(|e| Error::from_store(e, op, name, &key));
    }
    let keys: Vec<String> = reqs.iter().map(|r| key_of(r).to_owned()).collect();
    let results = many(reqs)
        .await
        .map_err(|e| Error::from_store(e, op, name, ""))?;
    fold_bulk(results, &keys, op, name).map(|()| StateReply::Done)
}

/// A query, its keys given back without the app's prefix.
async fn query(
    handle: StoreHandle,
    op: Operation,
    name: &str,
    req: QueryRequest,
) -> Result<StateReply, Error> {
    let prefix = req.key_prefix.clone();
    let mut resp = handle
        .query(req)
        .await
        .map_err(|e| Error::from_store(e, op, name, ""))?;
    for item in &mut resp.results {
        if let Some(k) = item.key.strip_prefix(&prefix) {
            item.key = k.to_owned();
        }
    }
    Ok(StateReply::Query(resp))
}

/// Whether a read's answer holds an item with an expiry (on a store with emulated TTL, one
/// Mecha served).
pub(super) fn served_an_expiry(reply: &StateReply) -> bool {
    match reply {
        StateReply::Entry(e) => has_expiry(e),
        StateReply::Bulk(items) => items
            .iter()
            .any(|i| i.result.as_ref().is_ok_and(has_expiry)),
        _ => false,
    }
}
