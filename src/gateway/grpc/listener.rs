//! The gRPC door's accept loop, with the bounds hyper does not give: every connection is
//! registered with the listener's [`ConnTracker`] (at most `limits.maxConnections`, and
//! `limits.maxConnectionsPerPeer` per peer address, unauthenticated connections closed
//! first to make room; the first complete request within `limits.headerTimeout` of the
//! accept, however the bytes trickle; closed after `limits.idleTimeout` without a call in
//! progress), a connection must send its first bytes within `limits.headerTimeout` (an
//! idle TCP connection never reaches hyper), and a connection on which the client sends
//! nothing for `limits.idleTimeout` is closed.
//!
//! With TLS configured, the handshake runs here too, inside the same first-bytes deadline
//! and holding the same connection slot, so TLS connections count against
//! `limits.maxConnections` like plain ones and a stalled handshake is dropped in time.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::{Instant, Sleep};
use tokio_rustls::TlsAcceptor;
use tonic::transport::server::Connected;

use crate::gateway::conns::{ConnHandle, ConnTracker};

/// Connection bounds of one listener.
#[derive(Clone)]
pub(super) struct ConnLimits {
    /// The open connections, shared by every accepting thread.
    pub tracker: Arc<ConnTracker>,
    /// Time to the first byte.
    pub handshake: Duration,
    /// Longest silence from the client.
    pub idle: Duration,
    /// Serve TLS with this acceptor (`server.tls`); `None` serves plain TCP.
    pub tls: Option<TlsAcceptor>,
}

/// Accepts on `listener` and yields connections that sent their first bytes in time. The
/// accept loop runs until the returned stream is dropped or the returned task is aborted;
/// the listener is closed once that task has ended (await it after aborting, so a stopped
/// server refuses new connections at once).
pub(super) fn incoming(
    listener: TcpListener,
    limits: ConnLimits,
) -> (
    impl Stream<Item = Result<Conn, io::Error>>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = mpsc::unbounded_channel::<Conn>();
    let task = tokio::spawn(accept_loop(listener, limits, tx));
    let stream =
        futures::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|c| (Ok(c), rx)) },
        );
    (stream, task)
}

async fn accept_loop(listener: TcpListener, limits: ConnLimits, tx: mpsc::UnboundedSender<Conn>) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = tx.closed() => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of descriptors or memory: back off instead of spinning.
                tracing::debug!(error = %e, "grpc accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(permit) = limits
            .tracker
            .admit(std::os::fd::AsFd::as_fd(&stream), peer.ip())
        else {
            drop(stream);
            continue;
        };
        let permit = Arc::new(permit);
        let _ = stream.set_nodelay(true);
        let tx = tx.clone();
        let (handshake, idle, tls) = (limits.handshake, limits.idle, limits.tls.clone());
        tokio::spawn(async move {
            let deadline = Instant::now() + handshake;
            let mut probe = [0u8; 1];
            match tokio::time::timeout_at(deadline, stream.peek(&mut probe)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => {
                    tracing::debug!("grpc connection closed: nothing received in time");
                    return;
                }
            }
            let io: Box<dyn Io> = match tls {
                None => Box::new(stream),
                Some(acceptor) => {
                    match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => Box::new(tls),
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, "grpc TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(
                                "grpc connection closed: TLS handshake not done in time"
                            );
                            return;
                        }
                    }
                }
            };
            let _ = tx.send(Conn::new(io, permit, idle));
        });
    }
}

/// A connection's byte stream: plain TCP or TLS over TCP.
trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// What the door learns of a call's connection (a request extension, set by tonic): its
/// registration to mark it served or authenticated.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    /// The connection's registration with the listener's tracker.
    pub conn: Arc<ConnHandle>,
}

/// An accepted connection holding its slot; reads fail once the client stays silent for
/// the idle timeout, which makes hyper close the connection.
pub(super) struct Conn {
    stream: Box<dyn Io>,
    permit: Arc<ConnHandle>,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl Conn {
    fn new(stream: Box<dyn Io>, permit: Arc<ConnHandle>, idle: Duration) -> Conn {
        Conn {
            stream,
            permit,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.stream).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    let next = Instant::now() + self.idle;
                    self.deadline.as_mut().reset(next);
                }
                Poll::Ready(r)
            }
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client sent nothing within the idle timeout",
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

impl Connected for Conn {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        ConnInfo {
            conn: self.permit.clone(),
        }
    }
}
