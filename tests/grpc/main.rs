//! gRPC door integration tests: every RPC and error row (`api`), HTTP/gRPC parity
//! (`parity`), and both doors driven concurrently against one store (`runtime`).

mod api;
mod client;
mod parity;
mod runtime;
#[path = "../support/mod.rs"]
mod support;
