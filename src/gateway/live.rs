//! The live configuration: which [`Catalog`] version serves new requests.
//!
//! Every door and gateway reads the current catalog from one [`Live`]; a reload publishes
//! the next version with [`Live::publish`]. A request keeps the catalog (and the store
//! shard) it started with until it ends, so in-flight requests finish on the configuration
//! they started with, while the next request sees the new one. Gateways are told at once
//! so that they drop the shards of removed stores even when no request arrives.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use actix::WeakRecipient;
use actix::prelude::*;
use arc_swap::ArcSwap;
use parking_lot::Mutex;

use super::catalog::Catalog;

/// Asks a gateway actor to adopt the current catalog now.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Refresh;

/// The current catalog, shared by every door and gateway.
pub struct Live {
    /// Read by every request on every thread: a lock-free load, no lock.
    current: ArcSwap<Catalog>,
    /// The current catalog's version: one atomic load tells a gateway whether it is behind.
    version: AtomicU64,
    gateways: Mutex<Vec<WeakRecipient<Refresh>>>,
}

impl Live {
    /// Serves `catalog` until the next [`Live::publish`].
    pub fn new(catalog: Arc<Catalog>) -> Arc<Live> {
        Arc::new(Live {
            version: AtomicU64::new(catalog.version()),
            current: ArcSwap::new(catalog),
            gateways: Mutex::new(Vec::new()),
        })
    }

    /// The catalog new requests use.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.current.load_full()
    }

    /// The version of the catalog new requests use.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Makes `catalog` the live one and tells every gateway; returns the previous one.
    pub fn publish(&self, catalog: Arc<Catalog>) -> Arc<Catalog> {
        // The catalog first, then its version: a gateway that sees the new version finds
        // the new catalog (one that sees the old version keeps its catalog a moment longer).
        let version = catalog.version();
        let old = self.current.swap(catalog);
        self.version.store(version, Ordering::Release);
        let mut gateways = self.gateways.lock();
        // A gateway that stopped (its server shut down) is forgotten.
        gateways.retain(|g| match g.upgrade() {
            Some(r) => {
                r.do_send(Refresh);
                true
            }
            None => false,
        });
        old
    }

    /// Registers a gateway to be told about new versions.
    pub(crate) fn register(&self, gateway: WeakRecipient<Refresh>) {
        self.gateways.lock().push(gateway);
    }
}
