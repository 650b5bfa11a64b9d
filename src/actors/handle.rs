//! `StoreHandle`: the typed, timeout-bounded way to reach a store actor.

use std::sync::Arc;
use std::time::Duration;

use actix::{Addr, MailboxError};
use futures::FutureExt;
use tokio::sync::Semaphore;

use super::store::{BulkGetItem, StateStore, StoreError};
use super::store_actor::{Call, StoreActor};
use crate::model::{
    DeleteRequest, GetRequest, QueryRequest, QueryResponse, SetRequest, StateEntry,
    TransactionRequest,
};

/// The gateway's view of one store shard. Cloning is cheap (clones share the shard's
/// in-flight bound).
#[derive(Clone)]
pub struct StoreHandle {
    addr: Addr<StoreActor>,
    timeout: Duration,
    /// One permit per request allowed in flight on this shard (`actors.mailboxCapacity`).
    in_flight: Arc<Semaphore>,
    capacity: usize,
}

impl StoreHandle {
    /// Wraps a shard's address with the per-request timeout and an in-flight bound of
    /// `capacity` requests: a request past it waits for a free slot, within its timeout.
    pub fn new(addr: Addr<StoreActor>, timeout: Duration, capacity: usize) -> StoreHandle {
        let capacity = capacity.clamp(1, Semaphore::MAX_PERMITS);
        StoreHandle {
            addr,
            timeout,
            in_flight: Arc::new(Semaphore::new(capacity)),
            capacity,
        }
    }

    async fn call<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(Arc<dyn StateStore>) -> futures::future::BoxFuture<'static, R> + Send + 'static,
    {
        let start = tokio::time::Instant::now();
        // The permit travels with the call and is released when the store future ends (not
        // when the caller gives up), so at most `capacity` store calls run at once on this
        // shard; waiting for one counts against the timeout.
        let permit = match tokio::time::timeout(
            self.timeout,
            self.in_flight.clone().acquire_owned(),
        )
        .await
        {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => {
                return Err(StoreError::Unavailable("the store shard is closed".into()));
            }
            Err(_) => return Err(StoreError::Busy(self.capacity)),
        };
        let left = self.timeout.saturating_sub(start.elapsed());
        let call = move |store: Arc<dyn StateStore>| {
            let fut = f(store);
            async move {
                let r = fut.await;
                drop(permit);
                r
            }
            .boxed()
        };
        match self.addr.send(Call(Box::new(call))).timeout(left).await {
            Ok(r) => r,
            Err(MailboxError::Timeout) => Err(StoreError::Timeout(self.timeout)),
            Err(MailboxError::Closed) => Err(StoreError::Unavailable(
                "the store actor is not running".into(),
            )),
        }
    }

    /// Reads one key.
    pub async fn get(&self, req: GetRequest) -> Result<Option<StateEntry>, StoreError> {
        self.call(move |s| async move { s.get(req).await }.boxed())
            .await?
    }

    /// Reads several keys.
    pub async fn bulk_get(
        &self,
        reqs: Vec<GetRequest>,
        parallelism: usize,
    ) -> Result<Vec<BulkGetItem>, StoreError> {
        self.call(move |s| async move { s.bulk_get(reqs, parallelism).await }.boxed())
            .await
    }

    /// Writes one key.
    pub async fn set(&self, req: SetRequest) -> Result<(), StoreError> {
        self.call(move |s| async move { s.set(req).await }.boxed())
            .await?
    }

    /// Writes several keys.
    pub async fn bulk_set(
        &self,
        reqs: Vec<SetRequest>,
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        self.call(move |s| async move { s.bulk_set(reqs).await }.boxed())
            .await
    }

    /// Deletes one key.
    pub async fn delete(&self, req: DeleteRequest) -> Result<(), StoreError> {
        self.call(move |s| async move { s.delete(req).await }.boxed())
            .await?
    }

    /// Deletes several keys.
    pub async fn bulk_delete(
        &self,
        reqs: Vec<DeleteRequest>,
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        self.call(move |s| async move { s.bulk_delete(reqs).await }.boxed())
            .await
    }

    /// Runs a transaction.
    pub async fn transact(&self, req: TransactionRequest) -> Result<(), StoreError> {
        self.call(move |s| async move { s.transact(req).await }.boxed())
            .await?
    }

    /// Runs a query.
    pub async fn query(&self, req: QueryRequest) -> Result<QueryResponse, StoreError> {
        self.call(move |s| async move { s.query(req).await }.boxed())
            .await?
    }
}
