//! The front doors and the gateway actor.
//!
//! [`Gateway::start_local`] starts, on the current thread's arbiter, one [`GatewayActor`]
//! and one supervised shard of every store; each HTTP worker thread (and the gRPC thread)
//! gets its own, so a request is parsed, routed and served without hopping threads, while
//! all shards of a store share its data or connection pool. The HTTP door (`http`) and the
//! gRPC door (`grpc`, on its own arbiter) only translate wire shapes; everything
//! protocol-neutral happens in the actor.

mod actor;
pub mod auth;
pub mod budget;
mod catalog;
pub mod conns;
pub mod door;
pub mod extended;
pub mod grpc;
pub mod http;
pub mod limits;
mod live;
pub mod ops;
mod pipeline;
pub mod quota;
mod store_error;
pub mod trace;
pub mod usage;

use std::sync::Arc;

use actix::prelude::*;

pub use crate::model::AppId;
pub use actor::{Answer, GatewayActor, StateCall, StoreName};
pub use catalog::{AppView, Apps, Catalog, StoreInfo, TargetType, Targets, Turned};
pub use live::{Live, Refresh};
pub use ops::StateOp;

use crate::actors::ActorSettings;
use crate::error::{Error, ErrorKind};
use crate::model::Protocol;

/// The annotations a call's answer carries, the same on both doors (HTTP headers, gRPC
/// metadata), for a success and for an error alike: `mecha-receipt` lists every decision
/// that was not native, `mecha-lint` the metadata findings reported under `warn` (at most
/// [`crate::capabilities::lint::HEADER_MAX_FINDINGS`]). Names are lower-case ASCII; a value
/// a door cannot carry is left out.
pub fn annotations(
    receipt: Option<&str>,
    lint: &[crate::capabilities::lint::Finding],
) -> impl Iterator<Item = (&'static str, String)> {
    let receipt = receipt.map(|r| (crate::capabilities::RECEIPT_HEADER, r.to_owned()));
    let lint = (!lint.is_empty()).then(|| {
        (
            crate::capabilities::lint::LINT_HEADER,
            crate::capabilities::lint::header_value(
                lint,
                crate::capabilities::lint::HEADER_MAX_FINDINGS,
            ),
        )
    });
    receipt.into_iter().chain(lint)
}

/// The runtime version reported in metadata.
pub const RUNTIME_VERSION: &str = concat!("mecha-", env!("CARGO_PKG_VERSION"));

/// A front door's handle to its thread's gateway actor. Cloning is cheap.
#[derive(Clone)]
pub struct Gateway {
    addr: Addr<GatewayActor>,
    live: Arc<Live>,
}

impl Gateway {
    /// Starts a gateway actor on the current arbiter; it starts one shard of every store of
    /// the live catalog (and, after a reload, of every new or changed store).
    pub fn start_local(live: Arc<Live>, settings: &ActorSettings) -> Gateway {
        let addr = GatewayActor::new(live.clone(), settings.clone()).start();
        Gateway { addr, live }
    }

    /// The live catalog (the configuration new requests use).
    pub fn catalog(&self) -> Arc<Catalog> {
        self.live.catalog()
    }

    /// The live configuration holder.
    pub fn live(&self) -> &Arc<Live> {
        &self.live
    }

    /// Runs one state operation `O` through the gateway pipeline. `request` is the door's
    /// translation of the wire request, or why it could not make one.
    pub async fn state<O: StateOp>(
        &self,
        app: AppId,
        store: impl Into<StoreName>,
        protocol: Protocol,
        request: Result<O::Request, Error>,
        url_metadata: crate::model::Metadata,
    ) -> Result<Answer<O::Reply>, Error> {
        let op = O::OP;
        let store = store.into();
        // Inside the door's request span (protocol, trace id): never a key or a value. At
        // the door span's level (info when traced, else debug; see `trace::request_span`).
        let span = if tracing::Span::current().is_disabled() {
            tracing::debug_span!(
                "state",
                app = %app,
                store = %store,
                operation = op.metric_label(),
                decisions = tracing::field::Empty,
            )
        } else {
            tracing::info_span!(
                "state",
                app = %app,
                store = %store,
                operation = op.metric_label(),
                decisions = tracing::field::Empty,
            )
        };
        let recorded = span.clone();
        let msg = StateCall::<O> {
            span,
            app,
            store,
            protocol,
            request,
            url_metadata,
        };
        match self.addr.send(msg).await {
            Ok(r) => {
                // What negotiation decided (the receipt), on the span: `native` when nothing
                // was emulated, ignored or relaxed.
                if let Ok(answer) = &r
                    && !recorded.is_disabled()
                {
                    let decisions = answer.receipt.header_value();
                    recorded.record("decisions", decisions.as_deref().unwrap_or("native"));
                }
                r
            }
            Err(e) => {
                Err(Error::new(ErrorKind::StoreFailure, op)
                    .detail(format!("gateway unavailable: {e}")))
            }
        }
    }
}

/// Bounds the blocking threads parsing large bodies (HTTP) and JSON values (gRPC) at once,
/// and so their memory: both doors share it.
pub(crate) fn parse_permits() -> &'static tokio::sync::Semaphore {
    static PERMITS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    PERMITS.get_or_init(|| {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        tokio::sync::Semaphore::new(cpus * 2)
    })
}
