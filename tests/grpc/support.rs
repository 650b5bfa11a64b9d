//! A small harness for the gRPC integration tests: start Mecha in-process on port 0, talk to
//! it with the generated tonic client and with reqwest.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use mecha::actors::backends::in_memory::{InMemoryStore, SystemClock};
use mecha::actors::{StateStore, StoreError, StoreFactory};
use mecha::app::{Options, Running};
use mecha::capabilities::{Capability, CapabilitySet};
use mecha::config::{ComponentSource, Config, LoadedComponent, Settings, load_components};
use mecha::gateway::grpc::proto::common::{Etag, StateItem};
use mecha::gateway::grpc::proto::runtime::dapr_client::DaprClient;
use mecha::model::{DeleteRequest, GetRequest, SetRequest, StateEntry};
use tonic::transport::Channel;

pub use mecha::gateway::grpc::proto::{common, runtime};

/// A running Mecha plus clients.
pub struct Mecha {
    pub running: Running,
    pub http: reqwest::Client,
}

impl Mecha {
    /// Mecha with the embedded default store (`statestore`, in memory).
    pub async fn start() -> Mecha {
        let (components, _) = load_components(&ComponentSource::Embedded).unwrap();
        Mecha::with(components, Settings::default()).await
    }

    /// Mecha with these stores and settings.
    pub async fn with(components: Vec<LoadedComponent>, settings: Settings) -> Mecha {
        let config = Config {
            settings,
            components,
            warnings: Vec::new(),
        };
        let opts = Options {
            http_port: 0,
            grpc_port: 0,
            metrics_port: 0,
            handle_signals: false,
            ..Options::default()
        };
        let running = mecha::app::start(config, opts).await.unwrap();
        Mecha {
            running,
            http: reqwest::Client::new(),
        }
    }

    /// A gRPC client (a fresh connection).
    pub async fn grpc(&self) -> DaprClient<Channel> {
        let url = format!("http://{}", self.running.grpc_addr);
        DaprClient::connect(url).await.unwrap()
    }

    /// A raw channel, for calls the generated client cannot express.
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.running.grpc_addr))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    /// `http://addr/path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.running.http_addr)
    }

    /// Stops every listener.
    pub async fn stop(self) {
        self.running.stop(true).await;
    }
}

/// A SaveState item.
pub fn item(key: &str, value: &[u8]) -> StateItem {
    StateItem {
        key: key.into(),
        value: value.to_vec(),
        ..StateItem::default()
    }
}

/// A SaveState item with an ETag message.
pub fn item_etag(key: &str, value: &[u8], etag: &str) -> StateItem {
    StateItem {
        etag: Some(Etag { value: etag.into() }),
        ..item(key, value)
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
pub fn etag_only_store(name: &str) -> LoadedComponent {
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
    LoadedComponent::custom(name, "state.etag-only", Arc::new(Factory(Arc::new(store))))
}

/// A store without ETags whose every read fails for keys starting with `bad` (per-item
/// errors in bulk get).
pub fn flaky_store(name: &str) -> LoadedComponent {
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
    LoadedComponent::custom(name, "state.flaky", Arc::new(Factory(Arc::default())))
}
