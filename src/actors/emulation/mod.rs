//! Emulations: [`StateStore`](super::StateStore) wrappers that give a store a capability it
//! lacks, *correctly*, on top of what it has. The capability matrix
//! ([`crate::capabilities::emulation`]) decides where each one is offered; the catalog wraps
//! the store's factory so every instance (every shard) goes through the wrapper.

mod query;
mod ttl;

use std::sync::Arc;

pub use query::{
    DEFAULT_MAX_QUERY_SCAN, QUERY_BATCH, QueryEmulation, QueryEmulationFactory, QueryLimits,
};
pub use ttl::{
    DEFAULT_SWEEP_INTERVAL, ENVELOPE_MAGIC, Envelope, TtlEmulation, TtlEmulationFactory,
};

use super::StoreFactory;
use crate::capabilities::{Feature, Matrix, Status};

/// The factory a store runs with under its effective matrix: `factory` itself, or wrapped in
/// every emulation the matrix decided: TTL (swept every `ttl_sweep_interval`), then query
/// (bounded by `query`) around it, so a query reads values through the
/// emulated expiry. Bulk needs no wrapper: the [`StateStore`](super::StateStore) defaults
/// fan out.
pub fn wrap(
    factory: Arc<dyn StoreFactory>,
    matrix: &Matrix,
    ttl_sweep_interval: std::time::Duration,
    query: QueryLimits,
) -> Arc<dyn StoreFactory> {
    let factory: Arc<dyn StoreFactory> = if matrix.status(Feature::Ttl) == Status::Emulated {
        Arc::new(TtlEmulationFactory::new(factory).sweep_every(ttl_sweep_interval))
    } else {
        factory
    };
    if matrix.status(Feature::Query) == Status::Emulated {
        Arc::new(QueryEmulationFactory::new(factory, query))
    } else {
        factory
    }
}
