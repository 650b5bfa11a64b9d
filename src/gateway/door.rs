//! What both front doors do the same way around every call, whatever their framework (the
//! HTTP door's `serve_request`, the gRPC door's tower layer): admission is one call,
//! [`super::Apps::admit_call`] (token, then quota; the permit held until the answer); then the
//! connection's stage ([`InProgress`]), the log line of a failure ([`log_failure`]) and the
//! log line of every request ([`log_request`]). Receipts and lint findings are rendered from
//! [`super::annotations`] by both.

use std::fmt::Display;
use std::ops::Deref;
use std::time::Duration;

use super::conns::ConnHandle;
use crate::error::Error;
use crate::model::Protocol;

/// A request in progress on a tracked connection (`Rc` on the HTTP door's worker threads,
/// `Arc` on the gRPC door's); marks the connection served, or authenticated, while it lasts
/// (see [`super::conns`]: authenticated connections are kept when room is made).
pub struct InProgress<C: Deref<Target = ConnHandle>>(C);

impl<C: Deref<Target = ConnHandle>> InProgress<C> {
    /// Starts a request on `conn`.
    pub fn new(conn: C, authenticated: bool) -> InProgress<C> {
        conn.request_started(authenticated);
        InProgress(conn)
    }
}

impl<C: Deref<Target = ConnHandle>> Drop for InProgress<C> {
    fn drop(&mut self) {
        self.0.request_ended();
    }
}

/// Logs a failed call by its summary: code, operation and store, never the key, value or
/// request detail. A client's mistake is a debug line, a server-side failure a warning.
pub fn log_failure(protocol: Protocol, e: &Error) {
    let protocol = protocol.as_str();
    if e.is_client_error() {
        tracing::debug!(protocol, error = %e.log_summary(), "request rejected");
    } else {
        tracing::warn!(protocol, error = %e.log_summary(), "request failed");
    }
}

/// The debug line of every request, once it has answered: its route (never the path: it
/// carries the key), its app, its status and how long it took.
pub fn log_request(
    protocol: Protocol,
    route: &str,
    app: &str,
    status: &dyn Display,
    elapsed: Duration,
) {
    let micros = elapsed.as_micros() as u64;
    match protocol {
        Protocol::Http => {
            tracing::debug!(route, app, status = %status, micros, "http request")
        }
        Protocol::Grpc => {
            tracing::debug!(route, app, status = %status, micros, "grpc request")
        }
    }
}
