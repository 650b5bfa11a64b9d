//! Mecha: a shared proxy that speaks the Dapr State API and routes each call to a
//! configured state store, making portability explicit.
//!
//! # Layout
//!
//! ```text
//!  HTTP door (gateway::http) ─┐                         ┌─ StoreActor ─ StateStore (actors::backends::*)
//!                             ├─► GatewayActor ─ handle ┤   (one shard per serving thread, supervised)
//!  gRPC door (gateway::grpc) ─┘   (one per thread)      └─ ...
//! ```
//!
//! * [`gateway`]: the front doors (protocol shapes only) and the gateway actor, which
//!   validates, prefixes keys, dispatches to stores and records metrics.
//! * [`actors`]: the [`actors::StateStore`] contract, the supervised store actor and its
//!   typed handle, and the backends with their descriptors.
//! * [`capabilities`]: capability vocabulary and the matrix; pure code.
//! * [`error`]: the single table deciding how every failure looks on HTTP and gRPC.
//! * [`config`]: `mecha.yaml` and Dapr component files, validated with every problem reported.
//! * [`model`], [`keys`]: protocol-neutral requests and daprd's key prefixing.
//! * [`app`]: wiring and shutdown; [`metrics`]: metric names and recording.
//! * [`tls`]: TLS on the listeners, with certificates renewed without a restart.
//! * [`watch`]: the one watcher of the files re-read while running (configuration, token
//!   files, certificates).

pub mod actors;
pub mod app;
pub mod capabilities;
pub mod config;
pub mod error;
pub mod gateway;
pub mod keys;
pub mod metrics;
pub mod model;
pub mod portability_client;
pub mod redact;
pub mod reference;
pub mod reload;
pub mod resilience;
pub mod telemetry;
pub mod tls;
pub mod watch;
