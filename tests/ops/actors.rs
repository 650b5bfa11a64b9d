//! The actor layer: concurrency, supervision and timeouts, with deliberately misbehaving stores.

use crate::support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use mecha::actors::{StateStore, StoreError, StoreFactory};
use mecha::capabilities::CapabilitySet;
use mecha::model::{DeleteRequest, GetRequest, SetRequest, StateEntry};
use support::{TestMecha, error_of};
use tokio::sync::Barrier;

/// A store whose reads misbehave on demand.
struct Trick {
    /// Every read of `together` waits until this many reads are in flight at once.
    barrier: Arc<Barrier>,
    /// Reads of `slow` sleep this long.
    slow: Duration,
    /// Pings fail while set.
    down: Arc<AtomicBool>,
}

#[async_trait]
impl StateStore for Trick {
    async fn get(&self, req: GetRequest) -> Result<Option<StateEntry>, StoreError> {
        match req.key.rsplit("||").next().unwrap_or_default() {
            "boom" => panic!("the store exploded"),
            "together" => {
                self.barrier.wait().await;
            }
            "slow" => tokio::time::sleep(self.slow).await,
            _ => {}
        }
        Ok(Some(StateEntry {
            data: bytes::Bytes::from_static(b"\"ok\""),
            etag: None,
            metadata: Default::default(),
        }))
    }
    async fn set(&self, _: SetRequest) -> Result<(), StoreError> {
        Ok(())
    }
    async fn delete(&self, _: DeleteRequest) -> Result<(), StoreError> {
        Ok(())
    }
    async fn ping(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            Err(StoreError::Unavailable("backend lost".into()))
        } else {
            Ok(())
        }
    }
}

struct TrickFactory {
    created: AtomicUsize,
    barrier: Arc<Barrier>,
    down: Arc<AtomicBool>,
}

impl TrickFactory {
    fn new(parallel: usize) -> Arc<TrickFactory> {
        Arc::new(TrickFactory {
            created: AtomicUsize::new(0),
            barrier: Arc::new(Barrier::new(parallel)),
            down: Arc::default(),
        })
    }
}

impl StoreFactory for TrickFactory {
    fn create(&self) -> Result<Arc<dyn StateStore>, StoreError> {
        self.created.fetch_add(1, Ordering::SeqCst);
        Ok(Arc::new(Trick {
            barrier: self.barrier.clone(),
            slow: Duration::from_secs(3),
            down: self.down.clone(),
        }))
    }
    fn capabilities(&self) -> CapabilitySet {
        CapabilitySet::EMPTY
    }
}

/// One worker, so every request meets the same gateway and store shard.
const ONE_WORKER: &str = "server:\n  workers: 1\nactors:\n  requestTimeout: 5s\n  healthInterval: 100ms\n  restartAfterFailedPings: 2\n";

#[actix_rt::test]
async fn slow_requests_to_one_store_run_concurrently() {
    const N: usize = 12;
    let factory = TrickFactory::new(N);
    let m = TestMecha::empty()
        .custom("trick", factory.clone())
        .settings(ONE_WORKER)
        .start()
        .await;
    // Each read blocks until all N are in flight: a serializing actor would deadlock until
    // the 5 s request timeout and answer 504.
    let reads = (0..N).map(|_| m.get("/v1.0/state/trick/together"));
    for r in futures::future::join_all(reads).await {
        assert_eq!(r.status(), 200);
    }
}

#[actix_rt::test]
async fn mailbox_capacity_bounds_store_calls_in_flight() {
    // Four slow reads (3 s each) fill the shard's four slots; the next four wait for a
    // slot until the 500 ms request timeout and get 503 ERR_STATE_GET (busy), while the
    // four running ones time out (504). Before the bound, all eight ran at once (504).
    let factory = TrickFactory::new(1);
    let m = TestMecha::empty()
        .custom("trick", factory.clone())
        .settings("server:\n  workers: 1\nactors:\n  requestTimeout: 500ms\n  mailboxCapacity: 4\n")
        .start()
        .await;
    let reads = (0..8).map(|_| m.get("/v1.0/state/trick/slow"));
    let mut statuses: Vec<u16> = Vec::new();
    for r in futures::future::join_all(reads).await {
        statuses.push(r.status().as_u16());
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [503, 503, 503, 503, 504, 504, 504, 504]);
    // The slots stay taken until the store calls really end, not when callers give up.
    let (status, code, msg, _) = error_of(m.get("/v1.0/state/trick/fine").await).await;
    assert_eq!((status, code.as_str()), (503, "ERR_STATE_GET"), "{msg}");
    assert!(msg.contains("4 requests already in flight"), "{msg}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(m.get("/v1.0/state/trick/fine").await.status(), 200);
}

#[actix_rt::test]
async fn a_panicking_store_is_restarted_and_the_next_requests_succeed() {
    let factory = TrickFactory::new(1);
    let m = TestMecha::empty()
        .custom("trick", factory.clone())
        .settings(ONE_WORKER)
        .start()
        .await;
    assert_eq!(m.get("/v1.0/state/trick/fine").await.status(), 200);
    let created = factory.created.load(Ordering::SeqCst);
    let (status, code, msg, _) = error_of(m.get("/v1.0/state/trick/boom").await).await;
    assert_eq!((status, code.as_str()), (500, "ERR_STATE_GET"));
    assert!(msg.contains("the store exploded"), "{msg}");
    for _ in 0..20 {
        assert_eq!(m.get("/v1.0/state/trick/fine").await.status(), 200);
    }
    assert!(
        factory.created.load(Ordering::SeqCst) > created,
        "the supervisor rebuilt the store"
    );
    assert!(m.running.catalog().stores()[0].health.restarts() >= 1);
}

#[actix_rt::test]
async fn a_store_that_loses_its_backend_is_reported_and_restarted() {
    let factory = TrickFactory::new(1);
    let m = TestMecha::empty()
        .custom("trick", factory.clone())
        .settings(ONE_WORKER)
        .start()
        .await;
    assert_eq!(m.get("/v1.0/healthz").await.status(), 204);
    let created = factory.created.load(Ordering::SeqCst);
    factory.down.store(true, Ordering::SeqCst);
    let mut unhealthy = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let r = m.get("/v1.0/healthz").await;
        if r.status() == 500 {
            unhealthy = Some(error_of(r).await);
            break;
        }
    }
    let (_, code, msg, _) = unhealthy.expect("healthz reports the lost backend");
    assert_eq!(code, "ERR_HEALTH_NOT_READY");
    // Without a valid token the answer names no backend error; the catalog keeps it.
    assert_eq!(msg, "dapr is not ready: [1 state store(s) not ready]");
    let last = m.running.catalog().stores()[0].health.last_error();
    assert!(
        last.as_deref().is_some_and(|e| e.contains("backend lost")),
        "{last:?}"
    );
    for _ in 0..50 {
        if factory.created.load(Ordering::SeqCst) > created {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        factory.created.load(Ordering::SeqCst) > created,
        "repeated failed pings restart the shard"
    );
    factory.down.store(false, Ordering::SeqCst);
    for _ in 0..50 {
        if m.get("/v1.0/healthz").await.status() == 204 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(m.get("/v1.0/healthz").await.status(), 204);
    assert_eq!(m.get("/v1.0/state/trick/fine").await.status(), 200);
}

#[actix_rt::test]
async fn a_request_that_outlives_its_timeout_gets_504() {
    let factory = TrickFactory::new(1);
    let settings = "server:\n  workers: 1\nactors:\n  requestTimeout: 200ms\n";
    let m = TestMecha::empty()
        .custom("trick", factory)
        .settings(settings)
        .start()
        .await;
    let (status, code, msg, _) = error_of(m.get("/v1.0/state/trick/slow").await).await;
    assert_eq!((status, code.as_str()), (504, "ERR_STATE_GET"));
    assert!(msg.contains("timed out after 200ms"), "{msg}");
    assert_eq!(m.get("/v1.0/state/trick/fine").await.status(), 200);
}
