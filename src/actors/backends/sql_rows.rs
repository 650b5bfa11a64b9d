//! What the sqlx-backed stores (MySQL and SQLite) do the same way, written once over
//! [`SqlRows`]: every call bounded by the store's timeout after the schema check, a write of
//! several items (bulk or transaction) in one database transaction, the liveness ping and
//! the sweep of expired rows. Each backend keeps its own SQL for single rows.

use std::future::Future;
use std::time::Duration;

use std::sync::Arc;

use sqlx::{Database, Executor, IntoArguments, Pool, Transaction};

use crate::actors::{StateStore, StoreError, StoreFactory};
use crate::capabilities::CapabilitySet;
use crate::model::{DeleteRequest, SetRequest, TransactionOp, TransactionRequest};

/// What all shards of one store share: the pool, the settings, and whether the table has
/// been created.
pub(super) struct Rows<DB: Database, T> {
    /// The connection pool.
    pub pool: Pool<DB>,
    /// The store's settings.
    pub settings: T,
    /// Set once the table exists.
    pub migrated: tokio::sync::OnceCell<()>,
}

/// The pool options both stores use: at most `max` connections, a wait of `timeout` for one,
/// and no idle timeout, lifetime or minimum (sqlx would spawn maintenance tasks at once, and
/// components are also loaded, to be validated, outside a Tokio runtime).
pub(super) fn pool_options<DB: Database>(
    max: u32,
    timeout: Duration,
) -> sqlx::pool::PoolOptions<DB> {
    sqlx::pool::PoolOptions::new()
        .max_connections(max)
        .min_connections(0)
        .idle_timeout(None)
        .max_lifetime(None)
        .acquire_timeout(timeout)
}

/// Makes one shard of a store over its shared rows.
type Shard<DB, T> = fn(Arc<Rows<DB, T>>) -> Arc<dyn StateStore>;

/// The factory of a [`SqlRows`] store: every shard is a handle on the same [`Rows`].
pub(super) struct RowsFactory<DB: Database, T> {
    rows: Arc<Rows<DB, T>>,
    capabilities: CapabilitySet,
    shard: Shard<DB, T>,
}

impl<DB: Database, T> RowsFactory<DB, T> {
    /// A factory of shards made by `shard` over one pool.
    pub(super) fn new(
        pool: Pool<DB>,
        settings: T,
        capabilities: CapabilitySet,
        shard: Shard<DB, T>,
    ) -> RowsFactory<DB, T> {
        let rows = Arc::new(Rows {
            pool,
            settings,
            migrated: tokio::sync::OnceCell::new(),
        });
        RowsFactory {
            rows,
            capabilities,
            shard,
        }
    }
}

impl<DB: Database, T: Send + Sync + 'static> StoreFactory for RowsFactory<DB, T> {
    fn create(&self) -> Result<Arc<dyn StateStore>, StoreError> {
        Ok((self.shard)(self.rows.clone()))
    }

    fn capabilities(&self) -> CapabilitySet {
        self.capabilities
    }

    fn lists_keys(&self) -> bool {
        true
    }
}

/// The `SELECT` of one page of keys: live rows at or after `prefix` and after the cursor, in
/// byte order (the key column compares bytes on both stores), `limit + 1` of them.
pub(super) fn key_page_sql(table: &str, key_column: &str) -> String {
    format!(
        "SELECT {key_column} FROM {table} WHERE {key_column} >= ? AND {key_column} > ? \
         AND (expires_at IS NULL OR expires_at > ?) ORDER BY {key_column} LIMIT ?"
    )
}

/// The page of [`StateStore::list_keys_with_prefix`] from the keys [`key_page_sql`] read: those
/// that start with `prefix` (they come first: keys with a prefix are contiguous in byte
/// order), and the cursor of the next page when more than `limit` of them came back.
pub(super) fn key_page(rows: Vec<String>, prefix: &str, limit: usize) -> crate::actors::KeyPage {
    let mut keys: Vec<String> = rows
        .into_iter()
        .take_while(|k| k.starts_with(prefix))
        .collect();
    let more = keys.len() > limit;
    keys.truncate(limit);
    let next = if more { keys.last().cloned() } else { None };
    crate::actors::KeyPage { keys, next }
}

/// A store whose rows live in one table of a sqlx database.
pub(super) trait SqlRows: Sync {
    /// The database.
    type Db: Database;

    /// The store's name in log lines.
    const NAME: &'static str;
    /// A driver error as a store error (whether it reached the database or not).
    const DB_ERR: fn(sqlx::Error) -> StoreError;

    /// The connection pool, the table (a checked identifier), and the bound on every call
    /// (schema check included).
    fn parts(&self) -> (&Pool<Self::Db>, &str, Duration);

    /// The connection pool.
    fn pool(&self) -> &Pool<Self::Db> {
        self.parts().0
    }

    /// The table.
    fn table(&self) -> &str {
        self.parts().1
    }

    /// The bound on every call.
    fn timeout(&self) -> Duration {
        self.parts().2
    }

    /// [`SqlRows::DB_ERR`], as a function.
    fn db_err(e: sqlx::Error) -> StoreError {
        (Self::DB_ERR)(e)
    }

    /// Creates the table once per store (later calls return at once).
    fn migrate(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// One write inside `tx`.
    fn exec_set(
        tx: &mut Transaction<'static, Self::Db>,
        table: &str,
        req: &SetRequest,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// One delete inside `tx`.
    fn exec_delete(
        tx: &mut Transaction<'static, Self::Db>,
        table: &str,
        req: &DeleteRequest,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Runs `f` after the schema check, the whole bounded by the store's timeout.
pub(super) async fn timed<S: SqlRows, T>(
    s: &S,
    f: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    let t = s.timeout();
    match tokio::time::timeout(t, async {
        s.migrate().await?;
        f.await
    })
    .await
    {
        Ok(r) => r,
        Err(_) => Err(StoreError::Timeout(t)),
    }
}

/// One item of a bulk write: a save or a delete.
pub(super) trait RowWrite: Sync {
    /// Applies the item inside `tx`.
    fn apply<S: SqlRows>(
        &self,
        tx: &mut Transaction<'static, S::Db>,
        table: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

impl RowWrite for SetRequest {
    fn apply<S: SqlRows>(
        &self,
        tx: &mut Transaction<'static, S::Db>,
        table: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        S::exec_set(tx, table, self)
    }
}

impl RowWrite for DeleteRequest {
    fn apply<S: SqlRows>(
        &self,
        tx: &mut Transaction<'static, S::Db>,
        table: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        S::exec_delete(tx, table, self)
    }
}

/// Saves or deletes one item, in a database transaction of its own.
pub(super) async fn write_one<S: SqlRows, R: RowWrite>(s: &S, req: &R) -> Result<(), StoreError> {
    timed(s, async {
        let mut tx = s.pool().begin().await.map_err(S::db_err)?;
        req.apply::<S>(&mut tx, s.table()).await?;
        tx.commit().await.map_err(S::db_err)
    })
    .await
}

/// Saves or deletes every item in one database transaction, each with its own result; a
/// failure of the transaction itself is every item's.
pub(super) async fn bulk_write<S: SqlRows, R: RowWrite>(
    s: &S,
    reqs: &[R],
) -> Vec<Result<(), StoreError>> {
    let n = reqs.len();
    let res = timed(s, async {
        let mut tx = s.pool().begin().await.map_err(S::db_err)?;
        let mut out = Vec::with_capacity(n);
        for r in reqs {
            out.push(r.apply::<S>(&mut tx, s.table()).await);
        }
        tx.commit().await.map_err(S::db_err)?;
        Ok(out)
    })
    .await;
    res.unwrap_or_else(|e| (0..n).map(|_| Err(e.clone())).collect())
}

/// Applies every operation in one database transaction, or none.
pub(super) async fn transact<S: SqlRows>(
    s: &S,
    req: &TransactionRequest,
) -> Result<(), StoreError> {
    timed(s, async {
        let mut tx = s.pool().begin().await.map_err(S::db_err)?;
        for op in &req.operations {
            match op {
                TransactionOp::Upsert(r) => S::exec_set(&mut tx, s.table(), r).await?,
                TransactionOp::Delete(r) => S::exec_delete(&mut tx, s.table(), r).await?,
            }
        }
        tx.commit().await.map_err(S::db_err)
    })
    .await
}

/// One round trip to the database.
pub(super) async fn ping<S: SqlRows>(s: &S) -> Result<(), StoreError>
where
    for<'c> &'c Pool<S::Db>: Executor<'c, Database = S::Db>,
    for<'q> <S::Db as Database>::Arguments<'q>: IntoArguments<'q, S::Db>,
{
    timed(s, async {
        sqlx::query::<S::Db>("SELECT 1")
            .execute(s.pool())
            .await
            .map(|_| ())
            .map_err(S::db_err)
    })
    .await
}

/// Deletes the rows whose expiry has passed (`now_ms`, milliseconds since the epoch); a
/// failure is logged, and the next sweep tries again.
pub(super) async fn sweep_expired<S: SqlRows>(s: &S, now_ms: i64)
where
    for<'c> &'c Pool<S::Db>: Executor<'c, Database = S::Db>,
    for<'q> <S::Db as Database>::Arguments<'q>: IntoArguments<'q, S::Db>,
    for<'q> i64: sqlx::Encode<'q, S::Db> + sqlx::Type<S::Db>,
{
    let sql = format!(
        "DELETE FROM {} WHERE expires_at IS NOT NULL AND expires_at <= ?",
        s.table()
    );
    let r = timed(s, async {
        sqlx::query::<S::Db>(&sql)
            .bind(now_ms)
            .execute(s.pool())
            .await
            .map_err(S::db_err)
    })
    .await;
    if let Err(e) = r {
        tracing::warn!(store = S::NAME, error = %e, "cleanup of expired rows failed");
    }
}

/// The `impl StateStore` of a [`SqlRows`] store: the store's own methods (reads, single
/// writes, the rest of the trait) as given, plus those every such store serves the same way
/// (bulk writes, transactions, the ping, the sweep).
macro_rules! sql_state_store {
    ($store:ty { $($own:tt)* }) => {
        #[async_trait::async_trait]
        impl crate::actors::StateStore for $store {
            $($own)*

            async fn bulk_set(&self, reqs: Vec<SetRequest>) -> Vec<Result<(), StoreError>> {
                sql_rows::bulk_write(self, &reqs).await
            }

            async fn bulk_delete(
                &self,
                reqs: Vec<DeleteRequest>,
            ) -> Vec<Result<(), StoreError>> {
                sql_rows::bulk_write(self, &reqs).await
            }

            async fn transact(&self, req: TransactionRequest) -> Result<(), StoreError> {
                sql_rows::transact(self, &req).await
            }

            async fn ping(&self) -> Result<(), StoreError> {
                sql_rows::ping(self).await
            }

            fn housekeeping_interval(&self) -> Option<Duration> {
                self.c.settings.cleanup_interval
            }

            async fn housekeeping(&self) {
                sql_rows::sweep_expired(self, now_ms()).await;
            }
        }
    };
}
pub(super) use sql_state_store;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_page_stops_at_the_prefix_and_its_limit() {
        let rows = |ks: &[&str]| ks.iter().map(|k| (*k).to_owned()).collect::<Vec<_>>();
        let page = key_page(rows(&["a||1", "a||2", "a||3"]), "a||", 2);
        assert_eq!(page.keys, ["a||1", "a||2"]);
        assert_eq!(page.next.as_deref(), Some("a||2"));
        let page = key_page(rows(&["a||1", "b||1", "b||2"]), "a||", 2);
        assert_eq!((page.keys, page.next), (vec!["a||1".to_owned()], None));
        let page = key_page(rows(&["x", "y"]), "", 2);
        assert_eq!((page.keys.len(), page.next), (2, None));
        assert!(key_page_sql("t", "key").contains("ORDER BY key LIMIT ?"));
    }
}
