//! gRPC door integration tests: every RPC and error row (`api`), HTTP/gRPC parity
//! (`parity`), both doors driven concurrently against one store (`runtime`), and the
//! per-connection stream limit (`streams`).

mod api;
mod client;
mod parity;
mod runtime;
mod streams;
