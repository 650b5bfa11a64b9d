//! Emulations: [`StateStore`](super::StateStore) wrappers that give a store a capability it
//! lacks, *correctly*, on top of what it has. The capability matrix
//! ([`crate::capabilities::emulation`]) decides where each one is offered; the catalog wraps
//! the store's factory so every instance (every shard) goes through the wrapper.

mod ttl;

pub use ttl::{ENVELOPE_MAGIC, Envelope, TtlEmulation, TtlEmulationFactory};
