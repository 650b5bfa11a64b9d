//! One guarded or unguarded write: which statement a save or delete needs (plain, ETag'd,
//! first-write) and running it on a connection or inside a transaction.

use super::*;

/// The single-row statements, one per kind of write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WriteKind {
    Upsert,
    InsertFirst,
    UpdateEtag,
    Delete,
    DeleteEtag,
}

impl WriteKind {
    pub(super) const COUNT: usize = 5;

    pub(super) fn text(self, sql: &Sql) -> &str {
        match self {
            WriteKind::Upsert => &sql.upsert,
            WriteKind::InsertFirst => &sql.insert_first,
            WriteKind::UpdateEtag => &sql.update_etag,
            WriteKind::Delete => &sql.delete,
            WriteKind::DeleteEtag => &sql.delete_etag,
        }
    }

    pub(super) fn of(op: &TransactionOp, etag: Option<i64>) -> WriteKind {
        match (op, etag) {
            (TransactionOp::Upsert(_), Some(_)) => WriteKind::UpdateEtag,
            (TransactionOp::Upsert(r), None)
                if r.options.concurrency == Concurrency::FirstWrite =>
            {
                WriteKind::InsertFirst
            }
            (TransactionOp::Upsert(_), None) => WriteKind::Upsert,
            (TransactionOp::Delete(_), Some(_)) => WriteKind::DeleteEtag,
            (TransactionOp::Delete(_), None) => WriteKind::Delete,
        }
    }

    pub(super) fn of_set(req: &SetRequest, etag: Option<i64>) -> WriteKind {
        match (etag, req.options.concurrency) {
            (Some(_), _) => WriteKind::UpdateEtag,
            (None, Concurrency::FirstWrite) => WriteKind::InsertFirst,
            (None, _) => WriteKind::Upsert,
        }
    }

    pub(super) fn of_delete(etag: Option<i64>) -> WriteKind {
        if etag.is_some() {
            WriteKind::DeleteEtag
        } else {
            WriteKind::Delete
        }
    }
}

/// Runs a prepared single-row write. Nothing is awaited before the statement is sent, so
/// futures of several writes polled together are pipelined in poll order.
pub(super) async fn exec_set(
    client: &tokio_postgres::Client,
    stmt: &Statement,
    req: &SetRequest,
    etag: Option<i64>,
) -> Result<(), StoreError> {
    let json = json_of(&req.value);
    let ttl = ttl_param(req.ttl);
    let value: &[u8] = &req.value;
    let n = match etag {
        Some(e) => {
            client
                .execute(stmt, &[&req.key, &value, &json, &ttl, &e])
                .await
        }
        None => client.execute(stmt, &[&req.key, &value, &json, &ttl]).await,
    }
    .map_err(db_err)?;
    match (n, etag, req.options.concurrency) {
        (0, Some(_), _) => Err(StoreError::EtagMismatch(None)),
        (0, None, Concurrency::FirstWrite) => Err(first_write_conflict()),
        _ => Ok(()),
    }
}

/// Runs a prepared single-row delete (pipelining as for [`exec_set`]).
pub(super) async fn exec_delete(
    client: &tokio_postgres::Client,
    stmt: &Statement,
    key: &str,
    etag: Option<i64>,
) -> Result<(), StoreError> {
    match etag {
        None => client.execute(stmt, &[&key]).await.map(|_| Ok(())),
        Some(e) => client.execute(stmt, &[&key, &e]).await.map(|n| {
            if n == 0 {
                Err(StoreError::EtagMismatch(None))
            } else {
                Ok(())
            }
        }),
    }
    .map_err(db_err)?
}
