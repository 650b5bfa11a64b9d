//! `StoreActor`: one supervised actor per store and serving thread.
//!
//! Each request becomes its own task ([`Spawned`]), so the mailbox never serializes
//! requests; how many run at once is bounded by the handle (`mailboxCapacity`). The actor
//! catches panics, pings the backend and lets its [`actix::Supervisor`] rebuild the store instance from its factory after a panic or after
//! repeated failed pings.

use std::any::Any;
use std::future::Future;
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;
use tracing::Instrument;
use tracing::instrument::Instrumented;

use actix::prelude::*;
use futures::FutureExt;
use futures::future::{BoxFuture, CatchUnwind};
use parking_lot::Mutex;

use super::spawned::Spawned;
use super::store::{StateStore, StoreError, StoreFactory};

/// Tunables of every store actor.
#[derive(Debug, Clone)]
pub struct ActorSettings {
    /// Store calls in flight per shard (enforced by [`super::StoreHandle`]): more wait for
    /// a slot within the request timeout, then fail with [`StoreError::Busy`].
    pub mailbox_capacity: usize,
    /// Per-request deadline, covering queueing and the store call.
    pub request_timeout: Duration,
    /// How often each shard pings its backend.
    pub health_interval: Duration,
    /// Consecutive failed pings after which a shard restarts (rebuilds its store instance).
    pub restart_after_failed_pings: u32,
    /// How often the sweep of emulated TTL runs (expired items are invisible at once; the
    /// sweep only reclaims their space).
    pub ttl_sweep_interval: Duration,
}

impl Default for ActorSettings {
    fn default() -> Self {
        ActorSettings {
            mailbox_capacity: 1024,
            request_timeout: Duration::from_secs(5),
            health_interval: Duration::from_secs(5),
            restart_after_failed_pings: 3,
            ttl_sweep_interval: Duration::from_secs(10),
        }
    }
}

/// Health of one store, shared by all its shards and read by `/v1.0/healthz`.
///
/// A store starts *unchecked*, which counts as not ready: a store that cannot be reached at
/// start-up is never reported healthy. Every shard pings once as soon as it starts and then
/// every `healthInterval`; the state changes on each result, and only a change is logged
/// (once per store, whichever shard sees it first).
#[derive(Debug, Default)]
pub struct StoreHealth {
    /// [`UNCHECKED`], [`HEALTHY`] or [`UNHEALTHY`].
    state: AtomicU8,
    restarts: AtomicU64,
    last_error: Mutex<Option<String>>,
}

const UNCHECKED: u8 = 0;
const HEALTHY: u8 = 1;
const UNHEALTHY: u8 = 2;

impl StoreHealth {
    /// Whether the last ping (of any shard) succeeded; `false` before the first ping answered.
    pub fn is_healthy(&self) -> bool {
        self.state.load(Ordering::Relaxed) == HEALTHY
    }

    /// Whether any ping has answered yet (successfully or not).
    pub fn is_checked(&self) -> bool {
        self.state.load(Ordering::Relaxed) != UNCHECKED
    }

    /// How many times a shard of this store was restarted.
    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    /// Why the store is not healthy (the last ping error, or that none answered yet).
    pub fn last_error(&self) -> Option<String> {
        match self.state.load(Ordering::Relaxed) {
            UNCHECKED => Some("not reached yet".to_owned()),
            _ => self.last_error.lock().clone(),
        }
    }

    /// Records a ping result of store `name`, logging when the state changes.
    pub fn record(&self, name: &str, result: &Result<(), StoreError>) {
        let new = if result.is_ok() { HEALTHY } else { UNHEALTHY };
        // A driver's error may quote the address it dialled, credentials included.
        let error = result
            .as_ref()
            .err()
            .map(|e| crate::redact::credentials(&e.to_string()).into_owned());
        *self.last_error.lock() = error.clone();
        let old = self.state.swap(new, Ordering::Relaxed);
        match (old, error) {
            (UNCHECKED, None) => tracing::info!(store = %name, "state store reachable"),
            (UNHEALTHY, None) => tracing::info!(store = %name, "state store reachable again"),
            (UNCHECKED | HEALTHY, Some(e)) => {
                tracing::warn!(store = %name, error = %e, "state store unreachable")
            }
            _ => {}
        }
    }
}

/// How often a shard checks whether any handle to it is left (see `started`).
const DRAIN_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Runs one shard of one store.
pub struct StoreActor {
    name: Arc<str>,
    factory: Arc<dyn StoreFactory>,
    store: Option<Arc<dyn StateStore>>,
    health: Arc<StoreHealth>,
    settings: ActorSettings,
    primary: bool,
    failed_pings: u32,
    /// Its own address, weak (a strong one would keep it alive forever), for the request
    /// tasks to report a panic; taken once instead of on every call.
    me: Option<actix::WeakAddr<StoreActor>>,
}

impl StoreActor {
    /// Starts a supervised shard on the current arbiter. The `primary` shard also runs the
    /// store's housekeeping.
    pub fn start_supervised(
        name: Arc<str>,
        factory: Arc<dyn StoreFactory>,
        health: Arc<StoreHealth>,
        settings: ActorSettings,
        primary: bool,
    ) -> Addr<StoreActor> {
        Supervisor::start(move |_| StoreActor {
            name,
            factory,
            store: None,
            health,
            settings,
            primary,
            failed_pings: 0,
            me: None,
        })
    }

    fn ensure_store(&mut self) -> Result<Arc<dyn StateStore>, StoreError> {
        if let Some(s) = &self.store {
            return Ok(s.clone());
        }
        let s = self.factory.create()?;
        self.store = Some(s.clone());
        Ok(s)
    }
}

impl StoreActor {
    fn ping(&mut self, ctx: &mut Context<Self>) {
        let store = match self.ensure_store() {
            Ok(s) => s,
            Err(e) => {
                self.health.record(&self.name, &Err(e));
                return;
            }
        };
        // A ping that does not answer is a failed ping: whatever the backend's own timeouts,
        // a frozen store shows in health within `healthInterval` (at most `requestTimeout`)
        // after the ping is sent.
        let limit = self
            .settings
            .health_interval
            .min(self.settings.request_timeout);
        let ping = async move {
            tokio::time::timeout(limit, store.ping())
                .await
                .unwrap_or(Err(StoreError::Timeout(limit)))
        };
        ctx.spawn(ping.into_actor(self).map(|res, act, ctx| {
            act.health.record(&act.name, &res);
            match res {
                Ok(()) => act.failed_pings = 0,
                Err(e) => {
                    act.failed_pings += 1;
                    // The store-level change is logged once by `record`; this is per shard.
                    tracing::debug!(store = %act.name, error = %e, failures = act.failed_pings, "store ping failed");
                    if act.failed_pings >= act.settings.restart_after_failed_pings {
                        ctx.stop();
                    }
                }
            }
        }));
    }
}

impl Actor for StoreActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(self.settings.mailbox_capacity);
        self.me = Some(ctx.address().downgrade());
        // Ping at once, so a store that cannot be reached is known at start-up, then
        // every `healthInterval`.
        Self::ping(self, ctx);
        ctx.run_interval(self.settings.health_interval, Self::ping);
        // Its interval tasks would keep the actor alive for ever: once no handle is left (the
        // store was removed or replaced by a reload, and its last in-flight call finished),
        // the shard stops and drops its store instance and connections.
        let check = self.settings.health_interval.min(DRAIN_CHECK_INTERVAL);
        ctx.run_interval(check, |_, ctx| {
            if !ctx.connected() {
                ctx.stop();
            }
        });
        if self.primary
            && let Some(interval) = self.store.as_ref().and_then(|s| s.housekeeping_interval())
        {
            ctx.run_interval(interval, |act, ctx| {
                if let Some(store) = act.store.clone() {
                    ctx.spawn(async move { store.housekeeping().await }.into_actor(act));
                }
            });
        }
    }
}

impl Supervised for StoreActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        self.health.restarts.fetch_add(1, Ordering::Relaxed);
        self.failed_pings = 0;
        // Drop the old instance (and its connections); `started` builds a fresh one.
        self.store = None;
        tracing::debug!(store = %self.name, "restarting store actor");
    }
}

/// A call into the store, generic over its closure so sending it boxes nothing but actix's
/// envelope.
pub(crate) struct Call<R, F> {
    /// Receives the current store instance.
    pub(crate) run: F,
    /// The request's span, so what the store logs while serving it names the request.
    pub(crate) span: tracing::Span,
    /// The shard's in-flight slot, released when the store future ends (not when the caller
    /// gives up).
    pub(crate) permit: tokio::sync::OwnedSemaphorePermit,
    /// What the store future gives.
    pub(crate) reply: PhantomData<fn() -> R>,
}

impl<R, F> Message for Call<R, F>
where
    R: Send + 'static,
    F: FnOnce(Arc<dyn StateStore>) -> BoxFuture<'static, R> + Send + 'static,
{
    type Result = Result<R, StoreError>;
}

/// Sent by a request task whose store future panicked: the shard restarts.
#[derive(Message)]
#[rtype(result = "()")]
struct Crashed;

impl Handler<Crashed> for StoreActor {
    type Result = ();

    fn handle(&mut self, _: Crashed, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl<R, F> Handler<Call<R, F>> for StoreActor
where
    R: Send + 'static,
    F: FnOnce(Arc<dyn StateStore>) -> BoxFuture<'static, R> + Send + 'static,
{
    type Result = Spawned<Instrumented<StoreCall<R>>>;

    fn handle(&mut self, msg: Call<R, F>, _: &mut Context<Self>) -> Self::Result {
        let Call {
            run, span, permit, ..
        } = msg;
        let call = match self.ensure_store() {
            // The slot is released at once: nothing runs on the store.
            Err(e) => StoreCall {
                fut: None,
                permit: None,
                failed: Some(e),
                me: None,
                name: self.name.clone(),
            },
            Ok(store) => StoreCall {
                fut: Some(AssertUnwindSafe(span.in_scope(|| run(store))).catch_unwind()),
                permit: Some(permit),
                failed: None,
                me: self.me.clone(),
                name: self.name.clone(),
            },
        };
        Spawned(call.instrument(span))
    }
}

/// One store call's task: the store future, with panics caught (the shard then restarts)
/// and the in-flight slot held until it ends. A named future rather than an `async` block,
/// so [`Spawned`] can spawn it without boxing it first.
pub(crate) struct StoreCall<R> {
    /// The store future; `None` once it ended, or when there was no store instance.
    fut: Option<CatchUnwind<AssertUnwindSafe<BoxFuture<'static, R>>>>,
    /// The shard's in-flight slot, released as the store future ends.
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    /// Why nothing ran (no store instance), until polled.
    failed: Option<StoreError>,
    me: Option<actix::WeakAddr<StoreActor>>,
    name: Arc<str>,
}

impl<R> Future for StoreCall<R> {
    type Output = Result<R, StoreError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let Some(fut) = this.fut.as_mut() else {
            let e = this.failed.take();
            return Poll::Ready(Err(e.unwrap_or_else(|| {
                StoreError::Internal("a store call was polled after its end".into())
            })));
        };
        let Poll::Ready(result) = Pin::new(fut).poll(cx) else {
            return Poll::Pending;
        };
        this.fut = None;
        this.permit = None;
        Poll::Ready(result.map_err(|panic| {
            let (name, why) = (&this.name, panic_message(&panic));
            tracing::error!(store = %name, panic = %why, "store call panicked; restarting the shard");
            if let Some(me) = this.me.take().and_then(|m| m.upgrade()) {
                me.do_send(Crashed);
            }
            StoreError::Internal(format!("state store {name} failed: {why}"))
        }))
    }
}

fn panic_message(panic: &Box<dyn Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".to_owned())
}
