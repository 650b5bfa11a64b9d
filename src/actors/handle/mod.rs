//! `StoreHandle`: the typed, timeout-bounded way to reach a store actor.
//!
//! A call passes through small layers, each with one job, in Dapr's order:
//! [`retry`] (may the failed attempt run again, and when) → [`breaker`] (an open breaker
//! answers at once) → [`in_flight`] (a slot on the shard) → the store actor, with
//! [`deadline`] bounding each attempt and the whole call, retries and their waits included.

mod breaker;
mod deadline;
mod in_flight;
mod retry;

use std::sync::Arc;
use std::time::Duration;

use actix::{Addr, MailboxError};
use futures::FutureExt;
use futures::future::BoxFuture;

use self::deadline::{AttemptLimit, Deadline};
use self::in_flight::InFlight;
use self::retry::Repeat;
use super::store::{BulkGetItem, StateStore, StoreError};
use super::store_actor::{Call, StoreActor};
use crate::model::{
    DeleteRequest, GetRequest, QueryRequest, QueryResponse, SetRequest, StateEntry,
    TransactionRequest,
};
use crate::resilience::Resilience;

/// The gateway's view of one store shard. Cloning is cheap (clones share the shard's
/// in-flight bound and the store's resiliency).
#[derive(Clone)]
pub struct StoreHandle {
    /// Shared by clones: cloning an actor address allocates, an `Arc` does not.
    shard: Arc<Shard>,
}

struct Shard {
    addr: Addr<StoreActor>,
    timeout: Duration,
    resilience: Arc<Resilience>,
    /// One slot per request allowed in flight on this shard (`actors.mailboxCapacity`).
    in_flight: InFlight,
}

/// A single call's `Ok` means the store answered.
fn single<R>(_: &R) -> bool {
    true
}

/// A bulk call's `Ok` holds per-item results: the store answered only if no item failed
/// with a store failure (ETag conflicts and bad input are answers).
#[allow(clippy::ptr_arg)] // must match `fn(&R) -> bool` with `R = Vec<_>`
fn every_item<T>(items: &Vec<Result<T, StoreError>>) -> bool {
    !items
        .iter()
        .any(|i| matches!(i, Err(e) if e.is_store_failure()))
}

/// A store call: cloned for each attempt (with its request), then run on the store.
trait Attempt<R>:
    FnOnce(Arc<dyn StateStore>) -> BoxFuture<'static, Result<R, StoreError>> + Clone + Send + 'static
{
}

impl<R, F> Attempt<R> for F where
    F: FnOnce(Arc<dyn StateStore>) -> BoxFuture<'static, Result<R, StoreError>>
        + Clone
        + Send
        + 'static
{
}

impl StoreHandle {
    /// Wraps a shard's address with the per-request timeout, an in-flight bound of
    /// `capacity` requests (a request past it waits for a free slot, within its timeout) and
    /// the store's resiliency.
    pub fn new(
        addr: Addr<StoreActor>,
        timeout: Duration,
        capacity: usize,
        resilience: Arc<Resilience>,
    ) -> StoreHandle {
        StoreHandle {
            shard: Arc::new(Shard {
                addr,
                timeout,
                resilience,
                in_flight: InFlight::new(capacity),
            }),
        }
    }

    /// Runs `run` through the layers; `repeat` says when a failed attempt may run again.
    async fn call<R: Send + 'static>(
        &self,
        repeat: Repeat,
        answered: fn(&R) -> bool,
        run: impl Attempt<R>,
    ) -> Result<R, StoreError> {
        let shard = &*self.shard;
        let deadline = Deadline::start(shard.timeout);
        shard.resilience.looked_up();
        let attempt = |run| async move {
            let limit = deadline
                .attempt(shard.resilience.attempt_timeout)
                .ok_or(StoreError::Timeout(deadline.timeout()))?;
            breaker::guarded(&shard.resilience, answered, self.send(run, limit)).await
        };
        match shard.resilience.retry.as_ref() {
            // Without a retry policy there is one attempt (what `retrying` would do with no
            // policy): the request moves into it instead of being cloned.
            None => attempt(run).await,
            Some(policy) => {
                let target = &shard.resilience.target;
                retry::retrying(Some(policy), repeat, deadline, target, || {
                    attempt(run.clone())
                })
                .await
            }
        }
    }

    /// One attempt: a slot on the shard, then the store actor, all within `limit`.
    async fn send<R: Send + 'static>(
        &self,
        f: impl Attempt<R>,
        limit: AttemptLimit,
    ) -> Result<R, StoreError> {
        let shard = &*self.shard;
        let start = std::time::Instant::now();
        let permit = shard.in_flight.acquire(limit.within).await?;
        // A stopped actor never received the call; one that stops after receiving it may
        // have dropped it mid-way, so only the first is known not to have been sent.
        if !shard.addr.connected() {
            return Err(StoreError::NotSent("the store actor is not running".into()));
        }
        let call = Call {
            run: f,
            span: store_call_span(&shard.resilience.store),
            permit,
            reply: std::marker::PhantomData,
        };
        let left = limit.within.saturating_sub(start.elapsed());
        match shard.addr.send(call).timeout(left).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => Err(e),
            Err(MailboxError::Timeout) => Err(StoreError::Timeout(limit.named)),
            Err(MailboxError::Closed) => Err(StoreError::Unavailable(
                "the store actor stopped during the call".into(),
            )),
        }
    }

    /// Reads one key.
    pub async fn get(&self, req: GetRequest) -> Result<Option<StateEntry>, StoreError> {
        self.call(Repeat::Idempotent, single, move |s: Arc<dyn StateStore>| {
            async move { s.get(req).await }.boxed()
        })
        .await
    }

    /// Reads several keys.
    pub async fn bulk_get(
        &self,
        reqs: Vec<GetRequest>,
        parallelism: usize,
    ) -> Result<Vec<BulkGetItem>, StoreError> {
        self.call(
            Repeat::Idempotent,
            every_item,
            move |s: Arc<dyn StateStore>| {
                async move { Ok(s.bulk_get(reqs, parallelism).await) }.boxed()
            },
        )
        .await
    }

    /// Writes one key.
    pub async fn set(&self, req: SetRequest) -> Result<(), StoreError> {
        self.call(
            Repeat::OnlyIfNotSent,
            single,
            move |s: Arc<dyn StateStore>| async move { s.set(req).await }.boxed(),
        )
        .await
    }

    /// Writes several keys.
    pub async fn bulk_set(
        &self,
        reqs: Vec<SetRequest>,
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        self.call(
            Repeat::OnlyIfNotSent,
            every_item,
            move |s: Arc<dyn StateStore>| async move { Ok(s.bulk_set(reqs).await) }.boxed(),
        )
        .await
    }

    /// Deletes one key.
    pub async fn delete(&self, req: DeleteRequest) -> Result<(), StoreError> {
        self.call(
            Repeat::OnlyIfNotSent,
            single,
            move |s: Arc<dyn StateStore>| async move { s.delete(req).await }.boxed(),
        )
        .await
    }

    /// Deletes several keys.
    pub async fn bulk_delete(
        &self,
        reqs: Vec<DeleteRequest>,
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        self.call(
            Repeat::OnlyIfNotSent,
            every_item,
            move |s: Arc<dyn StateStore>| async move { Ok(s.bulk_delete(reqs).await) }.boxed(),
        )
        .await
    }

    /// Runs a transaction.
    pub async fn transact(&self, req: TransactionRequest) -> Result<(), StoreError> {
        self.call(
            Repeat::OnlyIfNotSent,
            single,
            move |s: Arc<dyn StateStore>| async move { s.transact(req).await }.boxed(),
        )
        .await
    }

    /// Runs a query.
    pub async fn query(&self, req: QueryRequest) -> Result<QueryResponse, StoreError> {
        self.call(Repeat::Idempotent, single, move |s: Arc<dyn StateStore>| {
            async move { s.query(req).await }.boxed()
        })
        .await
    }
}

/// The span of one attempt on the store, a child of the request's: at the request span's
/// level (info when the caller sent a `traceparent`, else debug), so an untraced request at
/// the default log level creates none.
fn store_call_span(store: &str) -> tracing::Span {
    if tracing::Span::current().is_disabled() {
        tracing::debug_span!("store_call", store)
    } else {
        tracing::info_span!("store_call", store)
    }
}
