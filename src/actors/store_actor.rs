//! `StoreActor`: one supervised actor per store and serving thread.
//!
//! Each request becomes its own task (`ResponseFuture`), so the mailbox never serializes
//! requests; the actor only bounds the queue, catches panics, pings the backend and lets its
//! [`actix::Supervisor`] rebuild the store instance from its factory after a panic or after
//! repeated failed pings.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use actix::prelude::*;
use futures::FutureExt;
use futures::future::BoxFuture;
use parking_lot::Mutex;

use super::store::{StateStore, StoreError, StoreFactory};

/// Tunables of every store actor.
#[derive(Debug, Clone)]
pub struct ActorSettings {
    /// Mailbox capacity: requests queued beyond this wait (back-pressure) until the timeout.
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
#[derive(Debug, Default)]
pub struct StoreHealth {
    unhealthy: AtomicBool,
    restarts: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl StoreHealth {
    /// Whether the last ping (of any shard) succeeded.
    pub fn is_healthy(&self) -> bool {
        !self.unhealthy.load(Ordering::Relaxed)
    }

    /// How many times a shard of this store was restarted.
    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    /// The last ping error, if the store is unhealthy.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().clone()
    }

    fn record(&self, result: &Result<(), StoreError>) {
        match result {
            Ok(()) => {
                self.unhealthy.store(false, Ordering::Relaxed);
                *self.last_error.lock() = None;
            }
            Err(e) => {
                self.unhealthy.store(true, Ordering::Relaxed);
                *self.last_error.lock() = Some(e.to_string());
            }
        }
    }
}

/// Runs one shard of one store.
pub struct StoreActor {
    name: Arc<str>,
    factory: Arc<dyn StoreFactory>,
    store: Option<Arc<dyn StateStore>>,
    health: Arc<StoreHealth>,
    settings: ActorSettings,
    primary: bool,
    failed_pings: u32,
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

impl Actor for StoreActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(self.settings.mailbox_capacity);
        if let Err(e) = self.ensure_store() {
            tracing::error!(store = %self.name, error = %e, "cannot create store instance");
        }
        ctx.run_interval(self.settings.health_interval, |act, ctx| {
            let Ok(store) = act.ensure_store() else { return };
            let ping = async move { store.ping().await };
            ctx.spawn(ping.into_actor(act).map(|res, act, ctx| {
                act.health.record(&res);
                match res {
                    Ok(()) => act.failed_pings = 0,
                    Err(e) => {
                        act.failed_pings += 1;
                        tracing::warn!(store = %act.name, error = %e, failures = act.failed_pings, "store ping failed");
                        if act.failed_pings >= act.settings.restart_after_failed_pings {
                            ctx.stop();
                        }
                    }
                }
            }));
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
        tracing::warn!(store = %self.name, "restarting store actor");
    }
}

/// A call into the store: a closure that receives the current store instance.
pub(crate) struct Call<R: Send + 'static>(
    pub(crate) Box<dyn FnOnce(Arc<dyn StateStore>) -> BoxFuture<'static, R> + Send>,
);

impl<R: Send + 'static> Message for Call<R> {
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

impl<R: Send + 'static> Handler<Call<R>> for StoreActor {
    type Result = ResponseFuture<Result<R, StoreError>>;

    fn handle(&mut self, msg: Call<R>, ctx: &mut Context<Self>) -> Self::Result {
        let store = match self.ensure_store() {
            Ok(s) => s,
            Err(e) => return Box::pin(async move { Err(e) }),
        };
        let me = ctx.address();
        let name = self.name.clone();
        let fut = (msg.0)(store);
        Box::pin(async move {
            match AssertUnwindSafe(fut).catch_unwind().await {
                Ok(r) => Ok(r),
                Err(panic) => {
                    let why = panic_message(&panic);
                    tracing::error!(store = %name, panic = %why, "store call panicked; restarting the shard");
                    me.do_send(Crashed);
                    Err(StoreError::Internal(format!(
                        "state store {name} failed: {why}"
                    )))
                }
            }
        })
    }
}

fn panic_message(panic: &Box<dyn Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".to_owned())
}
