//! gRPC helpers on top of the shared harness (`tests/support`): the generated tonic client,
//! request builders, and stores with fewer capabilities than the in-memory one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use mecha::actors::backends::in_memory::{InMemoryStore, SystemClock};
use mecha::actors::{StateStore, StoreError, StoreFactory};
use mecha::capabilities::{Capability, CapabilitySet};
use mecha::model::{DeleteRequest, GetRequest, SetRequest, StateEntry};
use tonic::transport::Channel;

pub use crate::support::{Mecha, TestMecha, item, item_etag};
pub use mecha::gateway::grpc::proto::{common, runtime};

/// gRPC access to a running test instance of the shared harness.
pub trait GrpcExt {
    /// A raw channel, for calls the generated client cannot express.
    async fn channel(&self) -> Channel;
    /// Stops every listener (gRPC with HTTP).
    async fn stop(self);
}

impl GrpcExt for Mecha {
    async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.running.grpc_addr))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    async fn stop(self) {
        self.running.stop(true).await;
    }
}

/// The ErrorInfo reason of a status, if it has one.
pub fn reason(st: &tonic::Status) -> Option<String> {
    use tonic_types::StatusExt;
    st.get_details_error_info().map(|i| {
        assert_eq!(i.domain, "dapr.io");
        i.reason
    })
}

/// A store with ETags but without transactions or queries (wraps the in-memory store).
pub fn etag_only_store() -> Arc<dyn StoreFactory> {
    struct Factory(Arc<InMemoryStore>);
    impl StoreFactory for Factory {
        fn create(&self) -> Result<Arc<dyn StateStore>, StoreError> {
            Ok(self.0.clone())
        }
        fn capabilities(&self) -> CapabilitySet {
            CapabilitySet::of(&[Capability::Etag])
        }
    }
    let store = InMemoryStore::new(Arc::new(SystemClock), std::time::Duration::from_secs(60));
    Arc::new(Factory(Arc::new(store)))
}

/// A store without ETags whose every read fails for keys starting with `bad` (per-item
/// errors in bulk get).
pub fn flaky_store() -> Arc<dyn StoreFactory> {
    #[derive(Default)]
    struct Flaky(Mutex<HashMap<String, bytes::Bytes>>);
    #[async_trait]
    impl StateStore for Flaky {
        async fn get(&self, req: GetRequest) -> Result<Option<StateEntry>, StoreError> {
            if mecha::keys::original_key(&req.key).starts_with("bad") {
                return Err(StoreError::Internal("boom".into()));
            }
            Ok(self.0.lock().unwrap().get(&req.key).map(|d| StateEntry {
                data: d.clone(),
                etag: None,
                metadata: Default::default(),
            }))
        }
        async fn set(&self, req: SetRequest) -> Result<(), StoreError> {
            self.0.lock().unwrap().insert(req.key, req.value);
            Ok(())
        }
        async fn delete(&self, req: DeleteRequest) -> Result<(), StoreError> {
            self.0.lock().unwrap().remove(&req.key);
            Ok(())
        }
    }
    struct Factory(Arc<Flaky>);
    impl StoreFactory for Factory {
        fn create(&self) -> Result<Arc<dyn StateStore>, StoreError> {
            Ok(self.0.clone())
        }
        fn capabilities(&self) -> CapabilitySet {
            CapabilitySet::EMPTY
        }
    }
    Arc::new(Factory(Arc::default()))
}
