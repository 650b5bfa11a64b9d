//! The gRPC front door: `dapr.proto.runtime.v1.Dapr` (the state and metadata RPCs) on tonic,
//! wire-compatible with daprd for the official SDKs.
//!
//! Like the HTTP door it only translates: proto messages become the gateway messages of
//! [`crate::gateway`] (`convert`), failures are rendered from [`crate::error::Error::wire`]
//! ([`status()`]), and auth, message-size errors and metrics wrap every call (`door`).
//!
//! # Runtime arrangement
//!
//! actix-web runs N worker threads, each a current-thread tokio runtime with a `LocalSet`,
//! and each worker starts its own gateway actor and store-actor shards
//! ([`Gateway::start_local`]). tonic runs the same way, on as many threads of its own:
//!
//! ```text
//!  actix System thread ── app::start, metrics server, Running
//!  HTTP worker 1..N    ── actix-web  ─► GatewayActor ─► StoreActor shards ─┐
//!  gRPC arbiter 1..N   ── tonic      ─► GatewayActor ─► StoreActor shards ─┼─► shared store
//!                                                                          │   (map / pool)
//! ```
//!
//! * [`GrpcServer::start`] creates N dedicated actix [`Arbiter`]s (threads with a
//!   current-thread tokio runtime and a `LocalSet`). On each, it calls
//!   [`Gateway::start_local`] and serves tonic with `serve_with_incoming_shutdown` on its own
//!   clone of one listening socket, bound beforehand on the caller's thread (so port 0 works
//!   and the address is known at once). The kernel hands each new connection to one of the
//!   accepting threads, so gRPC load spreads over the cores as HTTP load does; one
//!   connection (and its HTTP/2 streams) stays on one thread.
//! * tonic spawns its connection tasks with `tokio::spawn` on that runtime; handlers are
//!   `Send` futures that `.await` `gateway.call(..)`, which is an actix `Addr::send` to the
//!   gateway actor living on the same thread. A gRPC call therefore never hops threads, just
//!   like an HTTP request on its worker.
//! * The shards of a store share its data or connection pool (the store factory's job), so
//!   both doors see the same state; ETag checks and transactions are atomic in the backend,
//!   not in a mailbox. `tests/api/grpc/runtime.rs` drives both protocols concurrently against
//!   one store to prove it.
//! * Shutdown: [`GrpcServer::stop`] signals tonic (no new connections, GOAWAY, in-flight
//!   calls finish, bounded by the shutdown timeout), then stops the arbiter.
//!   `app::Running` stops gRPC when HTTP stops.

pub mod codec;
mod convert;
mod door;
mod listener;
pub mod proto;
mod service;
mod status;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_rt::Arbiter;
use tokio::sync::watch;
use tonic::transport::Server;

pub use door::Caller;
pub use status::{code_name, status};

use self::door::DoorLayer;
use self::proto::runtime::dapr_server::DaprServer;
use self::service::DaprService;
use crate::actors::ActorSettings;
use crate::gateway::{Gateway, Live};

/// A running gRPC door on its own arbiters.
pub struct GrpcServer {
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    finished: Vec<watch::Receiver<bool>>,
    arbiters: Vec<Arbiter>,
    shutdown_timeout: Duration,
}

impl GrpcServer {
    /// Binds `addr` (port 0 picks a free port) with `SO_REUSEADDR`, as actix-web does.
    /// Must be called inside a tokio runtime (the listener is registered there briefly).
    pub fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(1024)?.into_std()
    }

    /// Starts serving on `listener` from `threads` new arbiters (at least one), each with
    /// its own gateway and store shards; TLS with `tls` when given. Must be called inside a
    /// running actix system.
    pub fn start(
        live: Arc<Live>,
        settings: ActorSettings,
        listener: std::net::TcpListener,
        shutdown_timeout: Duration,
        threads: usize,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> io::Result<GrpcServer> {
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let catalog = live.catalog();
        let limits = &catalog.limits;
        codec::allow_repeated(limits.max_bulk_items.max(limits.max_transaction_ops));
        let conn_limits = listener::ConnLimits {
            tracker: crate::gateway::conns::ConnTracker::new(
                "grpc",
                limits.max_connections,
                limits.resources.max_connections_per_peer,
                limits.header_timeout,
                Some(limits.idle_timeout),
            ),
            handshake: limits.header_timeout,
            idle: limits.idle_timeout,
            tls: tls.map(tokio_rustls::TlsAcceptor::from),
        };
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut server = GrpcServer {
            addr,
            shutdown,
            finished: Vec::new(),
            arbiters: Vec::new(),
            shutdown_timeout,
        };
        for _ in 0..threads.max(1) {
            let listener = listener.try_clone()?;
            let (live, settings, shutdown_rx, conn_limits) = (
                live.clone(),
                settings.clone(),
                shutdown_rx.clone(),
                conn_limits.clone(),
            );
            let (finished_tx, finished) = watch::channel(false);
            let arbiter = Arbiter::new();
            let spawned = arbiter.spawn(async move {
                if let Err(e) = serve(live, settings, listener, conn_limits, shutdown_rx).await {
                    tracing::error!(error = %e, "grpc server failed");
                }
                let _ = finished_tx.send(true);
            });
            server.arbiters.push(arbiter);
            if !spawned {
                for a in &server.arbiters {
                    a.stop();
                }
                return Err(io::Error::other("a gRPC arbiter is not running"));
            }
            server.finished.push(finished);
        }
        Ok(server)
    }

    /// Where the server listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets in-flight calls finish (if `graceful`, up to the shutdown
    /// timeout), then stops the arbiter with its actors. Idempotent.
    pub async fn stop(&self, graceful: bool) {
        let _ = self.shutdown.send(true);
        let wait = if graceful {
            self.shutdown_timeout
        } else {
            Duration::from_millis(100)
        };
        let all = futures::future::join_all(self.finished.iter().map(|f| {
            let mut f = f.clone();
            async move {
                let _ = f.wait_for(|done| *done).await;
            }
        }));
        if tokio::time::timeout(wait, all).await.is_err() {
            tracing::warn!("grpc server did not finish within {wait:?}; dropping remaining calls");
        }
        for arbiter in &self.arbiters {
            arbiter.stop();
        }
    }
}

async fn serve(
    live: Arc<Live>,
    settings: ActorSettings,
    listener: std::net::TcpListener,
    conn_limits: listener::ConnLimits,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let gateway = Gateway::start_local(live.clone(), &settings);
    // Restart-only limits (see `crate::reload`): read once.
    let catalog = live.catalog();
    let limit = catalog.limits.max_body_size;
    let dapr = DaprServer::new(DaprService::new(gateway))
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit);
    let max_streams = catalog.limits.max_concurrent_streams;
    let (incoming, accept_task) = listener::incoming(listener, conn_limits);
    let served = Server::builder()
        .max_concurrent_streams(max_streams)
        .layer(DoorLayer::new(live, settings.request_timeout))
        .add_service(dapr)
        .serve_with_incoming_shutdown(incoming, async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .await;
    // Close the listener before reporting the server finished.
    accept_task.abort();
    let _ = accept_task.await;
    served?;
    Ok(())
}
