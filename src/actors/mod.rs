//! Store backends and the actors that run them.
//!
//! A backend implements [`StateStore`] (plain async Rust, testable without actors) and is
//! described by a [`backends::Descriptor`] in [`backends`]. At start-up each configured store gets one
//! supervised [`StoreActor`] per serving thread; the gateway reaches it only through a
//! [`StoreHandle`], which owns the per-request timeout and maps mailbox failures. Nothing here
//! knows about HTTP, gRPC or Dapr error codes.

pub mod backends;
pub mod emulation;
mod handle;
mod lazy;
mod spawned;
mod store;
mod store_actor;

pub use handle::StoreHandle;
pub use lazy::LazyConnection;
pub use spawned::Spawned;
pub use store::{BulkGetItem, KeyPage, StateStore, StoreError, StoreFactory};
pub use store_actor::{ActorSettings, StoreActor, StoreHealth};
