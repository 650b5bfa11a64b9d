//! `limits.maxConcurrentStreams`: the most calls one HTTP/2 connection of the gRPC door has
//! in flight. A store that holds every read until released shows whether a second call on
//! the same connection reaches the store while the first is still open.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use mecha::actors::{StateStore, StoreError, StoreFactory};
use mecha::capabilities::CapabilitySet;
use mecha::gateway::grpc::proto::runtime::dapr_client::DaprClient;
use mecha::model::{DeleteRequest, GetRequest, SetRequest, StateEntry};
use tokio::sync::watch;

use super::client::runtime::GetStateRequest;
use super::client::{GrpcExt, TestMecha};

/// Every read counts itself as started, then waits until the gate opens.
struct Gated {
    started: AtomicUsize,
    open: watch::Receiver<bool>,
}

#[async_trait]
impl StateStore for Gated {
    async fn get(&self, _: GetRequest) -> Result<Option<StateEntry>, StoreError> {
        self.started.fetch_add(1, Ordering::SeqCst);
        let mut open = self.open.clone();
        let _ = open.wait_for(|o| *o).await;
        Ok(None)
    }
    async fn set(&self, _: SetRequest) -> Result<(), StoreError> {
        Ok(())
    }
    async fn delete(&self, _: DeleteRequest) -> Result<(), StoreError> {
        Ok(())
    }
}

struct Factory(Arc<Gated>);

impl StoreFactory for Factory {
    fn create(&self) -> Result<Arc<dyn StateStore>, StoreError> {
        Ok(self.0.clone())
    }
    fn capabilities(&self) -> CapabilitySet {
        CapabilitySet::EMPTY
    }
}

fn get(key: &str) -> GetStateRequest {
    GetStateRequest {
        store_name: "gated".into(),
        key: key.into(),
        ..GetStateRequest::default()
    }
}

/// Whether a second call on one connection reaches the store while the first is held, with
/// `maxConcurrentStreams: limit`.
async fn second_call_starts(limit: u32) -> bool {
    let (release, open) = watch::channel(false);
    let store = Arc::new(Gated {
        started: AtomicUsize::new(0),
        open,
    });
    let m = TestMecha::empty()
        .custom("gated", Arc::new(Factory(store.clone())))
        .settings(&format!("limits:\n  maxConcurrentStreams: {limit}\n"))
        .start()
        .await;
    // One channel: one HTTP/2 connection for both calls.
    let channel = m.channel().await;
    let mut first = DaprClient::new(channel.clone());
    let mut second = DaprClient::new(channel);
    let a = tokio::spawn(async move { first.get_state(get("a")).await });
    let deadline = Instant::now() + Duration::from_secs(5);
    while store.started.load(Ordering::SeqCst) < 1 {
        assert!(
            Instant::now() < deadline,
            "the first call never reached the store"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let b = tokio::spawn(async move { second.get_state(get("b")).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = store.started.load(Ordering::SeqCst) == 2;
    // Released, both calls finish (the second one then reaches the store).
    release.send(true).unwrap();
    a.await.unwrap().expect("first call");
    b.await.unwrap().expect("second call");
    assert_eq!(store.started.load(Ordering::SeqCst), 2);
    m.stop().await;
    started
}

#[actix_rt::test]
async fn max_concurrent_streams_bounds_the_calls_of_one_connection() {
    assert!(
        !second_call_starts(1).await,
        "with maxConcurrentStreams 1 a second call ran beside the first"
    );
    assert!(
        second_call_starts(100).await,
        "with maxConcurrentStreams 100 the second call waited"
    );
}
