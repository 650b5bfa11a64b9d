//! The gateway actor: every state request from both front doors passes through one.
//!
//! One gateway actor runs per serving thread, next to that thread's store shards, so a
//! request never hops threads. Every state operation, from either door, is one [`StateCall`]
//! of its operation type ([`super::ops`]) and goes through the same protocol-neutral
//! pipeline ([`super::pipeline`]); the actor
//! holds this thread's shards and adopts a reloaded catalog between calls.

use std::sync::Arc;
use std::time::Instant;

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use actix::prelude::*;
use tracing::Instrument;
use tracing::instrument::Instrumented;

use super::catalog::{Catalog, StoreInfo};
use super::live::{Live, Refresh};
use super::ops::StateOp;
use crate::actors::{ActorSettings, Spawned, StoreActor, StoreHandle};
use crate::capabilities::Receipt;
use crate::capabilities::lint::Finding;
use crate::error::Error;
use crate::model::{AppId, Metadata, Protocol};

/// A successful answer, its receipt (empty for a fully native call) and the lint findings
/// reported for its request metadata (empty when clean or when the lint mode is `off`).
#[derive(Debug, Clone, PartialEq)]
pub struct Answer<R> {
    /// The operation's reply.
    pub reply: R,
    /// Every decision that was not native.
    pub receipt: Receipt,
    /// Lint findings reported under `warn` (rendered as `mecha-lint`).
    pub lint: Vec<Finding>,
}

/// One state operation: who calls which store with what. A request the door could not read
/// or parse travels as its error, so the pipeline reports it in daprd's order (after the store
/// lookup and the operation's capability check).
pub struct StateCall<O: StateOp> {
    /// The call's span (app, store, operation; a child of the door's request span): the
    /// pipeline runs inside it, so every log line of the call carries its fields.
    pub span: tracing::Span,
    /// The calling app.
    pub app: AppId,
    /// The store name as the caller wrote it.
    pub store: StoreName,
    /// The front door it came through (for metrics).
    pub protocol: Protocol,
    /// The request, or why the door could not build it.
    pub request: Result<O::Request, Error>,
    /// Request-level metadata the door merged into the request's maps (HTTP `metadata.*`
    /// query parameters); linted once, at location `request`. Empty on gRPC.
    pub url_metadata: Metadata,
}

/// The store name a call gives: the catalog's own (shared) name when the door found one equal
/// to the caller's, so naming a configured store copies nothing; otherwise the caller's text.
/// The pipeline resolves it by name either way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreName {
    /// A configured store's name, shared with the catalog.
    Shared(Arc<str>),
    /// The caller's text (no store of that name, or none looked up).
    Given(String),
}

impl std::ops::Deref for StoreName {
    type Target = str;

    fn deref(&self) -> &str {
        match self {
            StoreName::Shared(s) => s,
            StoreName::Given(s) => s,
        }
    }
}

impl std::fmt::Display for StoreName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self)
    }
}

impl From<String> for StoreName {
    fn from(s: String) -> Self {
        StoreName::Given(s)
    }
}

impl<O: StateOp> Message for StateCall<O> {
    type Result = Result<Answer<O::Reply>, Error>;
}

/// The gateway actor of one serving thread.
pub struct GatewayActor {
    live: Arc<Live>,
    settings: ActorSettings,
    /// The catalog this gateway's shards belong to (the live one, or the one before it
    /// until the next request or [`Refresh`]).
    catalog: Arc<Catalog>,
    /// This thread's shard of every store, index-aligned with `catalog`.
    stores: Vec<StoreHandle>,
}

impl Actor for GatewayActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // The gateway only validates and forwards; store actors bound the real work.
        ctx.set_mailbox_capacity(usize::MAX >> 1);
        self.live
            .register(ctx.address().downgrade().recipient::<Refresh>());
        // A reload may have been published between `new` and now.
        self.refresh();
    }
}

impl Handler<Refresh> for GatewayActor {
    type Result = ();

    fn handle(&mut self, _: Refresh, _: &mut Context<Self>) {
        self.refresh();
    }
}

/// Starts this thread's shard of `info`.
fn start_shard(info: &StoreInfo, settings: &ActorSettings) -> StoreHandle {
    let addr = StoreActor::start_supervised(
        Arc::from(info.name.as_str()),
        info.factory.clone(),
        info.health.clone(),
        settings.clone(),
        info.claim_primary(),
    );
    StoreHandle::new(
        addr,
        settings.request_timeout,
        settings.mailbox_capacity,
        info.resilience.clone(),
    )
}

impl GatewayActor {
    /// A gateway serving the live catalog, with one shard of each of its stores.
    pub fn new(live: Arc<Live>, settings: ActorSettings) -> GatewayActor {
        let catalog = live.catalog();
        let stores = catalog
            .stores()
            .iter()
            .map(|info| start_shard(info, &settings))
            .collect();
        GatewayActor {
            live,
            settings,
            catalog,
            stores,
        }
    }

    /// Adopts the live catalog if it is newer (one atomic load when it is not). Shards of
    /// stores whose backend and resiliency did not change are kept; new and changed stores
    /// get new shards; the handles of removed or replaced shards are dropped here, and their
    /// actors stop once the requests still holding a handle have finished.
    fn refresh(&mut self) {
        if self.live.version() == self.catalog.version() {
            return;
        }
        let catalog = self.live.catalog();
        let stores = catalog
            .stores()
            .iter()
            .map(|info| {
                let kept = self
                    .catalog
                    .index_of(&info.name)
                    .filter(|i| info.same_shards(self.catalog.store(*i)))
                    .and_then(|i| self.stores.get(i).cloned());
                kept.unwrap_or_else(|| start_shard(info, &self.settings))
            })
            .collect();
        self.catalog = catalog;
        self.stores = stores;
    }
}

impl<O: StateOp> Handler<StateCall<O>> for GatewayActor {
    type Result = Spawned<Instrumented<Logged<O::Reply>>>;

    fn handle(&mut self, msg: StateCall<O>, _: &mut Context<Self>) -> Self::Result {
        self.refresh();
        let span = msg.span.clone();
        let start = Instant::now();
        let answer = span.in_scope(|| super::pipeline::start(&self.catalog, &self.stores, msg));
        Spawned(Logged { answer, start }.instrument(span))
    }
}

/// The task of one state call: the pipeline's future, and the debug line once it is done. A
/// named future rather than an `async` block, so [`Spawned`] can spawn it without boxing
/// it first.
pub struct Logged<R> {
    answer: ResponseFuture<Result<Answer<R>, Error>>,
    start: Instant,
}

impl<R> Future for Logged<R> {
    type Output = Result<Answer<R>, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        let Poll::Ready(res) = self.answer.as_mut().poll(cx) else {
            return Poll::Pending;
        };
        // Never the error's detail here (it may name a key): the door logs its summary.
        tracing::debug!(
            ok = res.is_ok(),
            micros = self.start.elapsed().as_micros() as u64,
            "state call"
        );
        Poll::Ready(res)
    }
}
