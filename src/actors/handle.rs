//! `StoreHandle`: the typed, timeout-bounded way to reach a store actor.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{Addr, MailboxError};
use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::{Semaphore, TryAcquireError};

use super::store::{BulkGetItem, StateStore, StoreError};
use super::store_actor::{Call, StoreActor};
use crate::capabilities::resiliency::Resilience;
use crate::model::{
    DeleteRequest, GetRequest, QueryRequest, QueryResponse, SetRequest, StateEntry,
    TransactionRequest,
};

/// The gateway's view of one store shard. Cloning is cheap (clones share the shard's
/// in-flight bound and the store's resiliency).
///
/// Every call goes through the store's resiliency, Dapr's order: retry → breaker →
/// per-attempt timeout → store. The request timeout bounds the whole call, retries, their
/// waits and the wait for an in-flight slot included, so no request waits longer than it.
#[derive(Clone)]
pub struct StoreHandle {
    /// Shared by clones: cloning an actor address allocates, an `Arc` does not.
    shard: Arc<Shard>,
}

struct Shard {
    addr: Addr<StoreActor>,
    timeout: Duration,
    resilience: Arc<Resilience>,
    /// One permit per request allowed in flight on this shard (`actors.mailboxCapacity`).
    in_flight: Arc<Semaphore>,
    capacity: usize,
}

/// Whether a failed attempt may be repeated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Repeat {
    /// Reads: repeating cannot change anything.
    Idempotent,
    /// Writes: repeated only when the store was certainly not reached.
    OnlyIfNotSent,
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
        let capacity = capacity.clamp(1, Semaphore::MAX_PERMITS);
        StoreHandle {
            shard: Arc::new(Shard {
                addr,
                timeout,
                resilience,
                in_flight: Arc::new(Semaphore::new(capacity)),
                capacity,
            }),
        }
    }

    /// One attempt within `limit`, through the breaker (checked first, so an open breaker
    /// answers at once) and the in-flight bound.
    async fn attempt<R: Send + 'static>(
        &self,
        f: impl Attempt<R>,
        limit: Duration,
        named: Duration,
        answered: fn(&R) -> bool,
    ) -> Result<R, StoreError> {
        let shard = &*self.shard;
        let ticket = match &shard.resilience.breaker {
            Some(b) => Some(b.admit(Instant::now()).map_err(StoreError::CircuitOpen)?),
            None => None,
        };
        let start = Instant::now();
        // The permit travels with the call and is released when the store future ends (not
        // when the caller gives up), so at most `capacity` store calls run at once on this
        // shard; waiting for one counts against the timeout (no timer when one is free).
        let permit = match shard.in_flight.clone().try_acquire_owned() {
            Ok(permit) => Ok(permit),
            Err(TryAcquireError::Closed) => {
                Err(StoreError::Unavailable("the store shard is closed".into()))
            }
            Err(TryAcquireError::NoPermits) => {
                match tokio::time::timeout(limit, shard.in_flight.clone().acquire_owned()).await {
                    Ok(Ok(permit)) => Ok(permit),
                    Ok(Err(_)) => Err(StoreError::Unavailable("the store shard is closed".into())),
                    Err(_) => Err(StoreError::Busy(shard.capacity)),
                }
            }
        };
        let result = match permit {
            Err(e) => Err(e),
            Ok(permit) => {
                let left = limit.saturating_sub(start.elapsed());
                let call = Call {
                    run: Box::new(f),
                    span: tracing::Span::current(),
                    permit,
                };
                match shard.addr.send(call).timeout(left).await {
                    Ok(Ok(r)) => r,
                    Ok(Err(e)) => Err(e),
                    Err(MailboxError::Timeout) => Err(StoreError::Timeout(named)),
                    Err(MailboxError::Closed) => Err(StoreError::Unavailable(
                        "the store actor is not running".into(),
                    )),
                }
            }
        };
        if let (Some(b), Some(t)) = (&shard.resilience.breaker, ticket) {
            // A bulk call answers `Ok` with per-item results: items the store failed count
            // as a failure of the call, or a store failing every bulk call would never trip.
            let ok = match &result {
                Ok(r) => answered(r),
                Err(e) => !e.is_store_failure(),
            };
            if let Some(state) = b.record(t, ok, Instant::now()) {
                tracing::warn!(
                    store = %shard.resilience.store,
                    breaker = %b.settings().name,
                    state = state.as_str(),
                    "circuit breaker changed state"
                );
                crate::metrics::breaker_state(self.store_name(), state);
            }
        }
        result
    }

    fn store_name(&self) -> &str {
        &self.shard.resilience.store
    }

    /// Runs `make()`'s call with the resiliency policies; `repeat` says when a failed
    /// attempt may run again.
    async fn call<R: Send + 'static>(
        &self,
        repeat: Repeat,
        answered: fn(&R) -> bool,
        run: impl Attempt<R>,
    ) -> Result<R, StoreError> {
        let shard = &*self.shard;
        let deadline = Instant::now() + shard.timeout;
        let mut retry = 0u32;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(StoreError::Timeout(shard.timeout));
            }
            let limit = shard
                .resilience
                .attempt_timeout
                .map_or(left, |t| t.min(left));
            // A timeout names the limit that fired: the attempt's, or the request's.
            let named = match shard.resilience.attempt_timeout {
                Some(t) if t < left => t,
                _ => shard.timeout,
            };
            let err = match self.attempt(run.clone(), limit, named, answered).await {
                Ok(r) => return Ok(r),
                Err(e) => e,
            };
            let may_repeat = match (repeat, &err) {
                (_, StoreError::CircuitOpen(_)) => false,
                (Repeat::Idempotent, e) => e.is_store_failure(),
                (Repeat::OnlyIfNotSent, StoreError::Unavailable(m)) => {
                    m == "the store actor is not running"
                }
                (Repeat::OnlyIfNotSent, _) => false,
            };
            let Some(policy) = shard.resilience.retry.as_ref().filter(|_| may_repeat) else {
                return Err(err);
            };
            retry += 1;
            let Some(wait) = policy.wait(retry, rand::random::<f64>()) else {
                return Err(err);
            };
            // Retry only when the wait leaves time for another attempt.
            if Instant::now() + wait >= deadline {
                return Err(err);
            }
            crate::metrics::store_retry(self.store_name());
            tracing::debug!(retry, error = %err, wait_ms = wait.as_millis() as u64, "retrying a store call");
            tokio::time::sleep(wait).await;
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
