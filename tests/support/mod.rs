//! In-process test harness: starts Mecha on free ports inside the test's actix system.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use mecha::actors::backends::in_memory::{InMemoryStore, SystemClock};
use mecha::actors::{StateStore, StoreError, StoreFactory};
use mecha::app::{Options, Running, start};
use mecha::capabilities::{Capability, CapabilitySet};
use mecha::config::{Config, LoadedComponent, Settings, parse_components};
use mecha::gateway::grpc::proto::common::{Etag, StateItem};
use mecha::gateway::grpc::proto::runtime::dapr_client::DaprClient;
use tonic::transport::Channel;

pub mod binary;
pub mod kv_example;
pub mod mariadb;
pub mod own_process;
pub mod servers;
pub mod services;
pub mod sql;
pub mod writes;

/// The in-memory `statestore` most tests use.
pub const MEMORY_STORE: &str = "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: statestore\nspec:\n  type: state.in-memory\n  version: v1\n";

/// The in-memory backend declared as a key-value store: compare-and-set (ETags,
/// first-write) and key listing, nothing else (the shape of NATS JetStream KV), so Mecha
/// emulates TTL and bulk on it.
pub struct KvFactory(pub Arc<InMemoryStore>);

impl KvFactory {
    /// A fresh store (expired entries swept hourly) and its factory.
    pub fn fresh() -> (Arc<InMemoryStore>, Arc<dyn StoreFactory>) {
        let store = Arc::new(InMemoryStore::new(
            Arc::new(SystemClock),
            Duration::from_secs(3600),
        ));
        (store.clone(), Arc::new(KvFactory(store)))
    }
}

impl StoreFactory for KvFactory {
    fn create(&self) -> Result<Arc<dyn StateStore>, StoreError> {
        Ok(self.0.clone())
    }
    fn capabilities(&self) -> CapabilitySet {
        CapabilitySet::of(&[Capability::Etag, Capability::FirstWrite])
    }
    fn lists_keys(&self) -> bool {
        true
    }
}

/// Builds a test instance.
pub struct TestMecha {
    components: Vec<LoadedComponent>,
    settings: Settings,
    app_id: String,
}

/// A running test instance.
pub struct Mecha {
    pub running: Running,
    pub base: String,
    pub client: reqwest::Client,
}

impl TestMecha {
    /// No stores; add some with the methods below.
    pub fn empty() -> TestMecha {
        TestMecha {
            components: Vec::new(),
            settings: Settings::default(),
            app_id: "testapp".into(),
        }
    }

    /// One in-memory `statestore`.
    pub fn memory() -> TestMecha {
        TestMecha::empty().yaml(MEMORY_STORE)
    }

    /// Adds the components of a Dapr component file.
    pub fn yaml(mut self, text: &str) -> TestMecha {
        let (c, _) = parse_components(&[(Path::new("test.yaml"), text)], &|k| {
            std::env::var(k).ok()
        })
        .unwrap_or_else(|e| panic!("bad test component: {e:?}"));
        let mut c = c;
        mecha::config::components::apply_resiliency(&[(Path::new("test.yaml"), text)], &mut c)
            .unwrap_or_else(|e| panic!("bad test resiliency: {e:?}"));
        self.components.extend(c);
        self
    }

    /// Adds a store backed by a hand-written factory.
    pub fn custom(mut self, name: &str, factory: Arc<dyn StoreFactory>) -> TestMecha {
        self.components
            .push(LoadedComponent::custom(name, "state.test", factory));
        self
    }

    /// Applies the `kind: Resiliency` documents of `yaml` to the stores added so far.
    pub fn resiliency(mut self, yaml: &str) -> TestMecha {
        mecha::config::components::apply_resiliency(
            &[(Path::new("resiliency.yaml"), yaml)],
            &mut self.components,
        )
        .unwrap_or_else(|e| panic!("bad test resiliency: {e:?}"));
        self
    }

    /// Replaces the settings with a parsed `mecha.yaml`.
    pub fn settings(mut self, yaml: &str) -> TestMecha {
        self.settings =
            Settings::parse(Path::new("mecha.yaml"), yaml).expect("valid test settings");
        self
    }

    /// daprd's single-token mode, as `DAPR_API_TOKEN` would set it.
    pub fn api_token(mut self, token: &str) -> TestMecha {
        self.settings.api_token = Some(token.into());
        self
    }

    /// Sets the default app id.
    pub fn app_id(mut self, id: &str) -> TestMecha {
        self.app_id = id.into();
        self
    }

    /// The configuration and options it starts with (free loopback ports).
    fn into_parts(self) -> (Config, Options) {
        let config = Config {
            settings: self.settings,
            components: self.components,
            warnings: Vec::new(),
        };
        let opts = Options {
            http_port: 0,
            grpc_port: 0,
            metrics_port: 0,
            app_id: self.app_id,
            handle_signals: false,
            ..Options::default()
        };
        (config, opts)
    }

    /// Starts it on free loopback ports.
    pub async fn start(self) -> Mecha {
        let (config, opts) = self.into_parts();
        let running = start(config, opts).await.expect("mecha starts");
        let base = format!("http://{}", running.http_addr);
        Mecha {
            running,
            base,
            client: reqwest::Client::new(),
        }
    }

    /// Tries to start it and expects start-up to be refused: the error, as text.
    pub async fn refused(self) -> String {
        let (config, opts) = self.into_parts();
        match start(config, opts).await {
            Ok(_) => panic!("start-up must be refused"),
            Err(e) => e.to_string(),
        }
    }
}

impl Mecha {
    /// `base + path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// GET.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request")
    }

    /// POST with a raw body.
    pub async fn post(&self, path: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .body(body)
            .send()
            .await
            .expect("request")
    }

    /// DELETE.
    pub async fn delete(&self, path: &str) -> reqwest::Response {
        self.client
            .delete(self.url(path))
            .send()
            .await
            .expect("request")
    }

    /// Saves `[{"key":k,"value":v}]` and asserts 204.
    pub async fn save(&self, store: &str, key: &str, value: serde_json::Value) {
        let body = serde_json::json!([{"key": key, "value": value}]).to_string();
        let r = self.post(&format!("/v1.0/state/{store}"), body).await;
        assert_eq!(
            r.status(),
            204,
            "save {key}: {}",
            r.text().await.unwrap_or_default()
        );
    }

    /// A gRPC client on a fresh connection.
    pub async fn grpc(&self) -> DaprClient<Channel> {
        let url = format!("http://{}", self.running.grpc_addr);
        let channel = Channel::from_shared(url).unwrap().connect().await.unwrap();
        DaprClient::new(channel)
    }

    /// POST with a JSON body.
    pub async fn post_json(&self, path: &str, body: serde_json::Value) -> reqwest::Response {
        self.post(path, body.to_string()).await
    }

    /// Prometheus text from the metrics port.
    pub async fn metrics(&self) -> String {
        let url = format!("http://{}/metrics", self.running.metrics_addr);
        self.client
            .get(url)
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    }
}

/// Reads a JSON error body and returns `(status, errorCode, message, details)`.
pub async fn error_of(r: reqwest::Response) -> (u16, String, String, Vec<serde_json::Value>) {
    let status = r.status().as_u16();
    let v: serde_json::Value = r.json().await.expect("json error body");
    let details = v
        .get("details")
        .and_then(|d| d.as_array())
        .cloned()
        .unwrap_or_default();
    (
        status,
        v["errorCode"].as_str().unwrap_or_default().to_owned(),
        v["message"].as_str().unwrap_or_default().to_owned(),
        details,
    )
}

/// A Dapr component file: store `name` of type `ty` with `metadata` (values quoted).
pub fn component(name: &str, ty: &str, metadata: &[(&str, String)]) -> String {
    let mut out = format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n  type: {ty}\n  version: v1\n  metadata:\n"
    );
    for (k, v) in metadata {
        out.push_str(&format!("  - name: {k}\n    value: \"{v}\"\n"));
    }
    out
}

/// The `mecha-receipt` header of an HTTP answer (what Mecha emulated or ignored), if any.
pub fn receipt_of(r: &reqwest::Response) -> Option<String> {
    r.headers()
        .get("mecha-receipt")
        .map(|v| v.to_str().unwrap().to_owned())
}

/// The `mecha-receipt` metadata of a gRPC answer, if any.
pub fn grpc_receipt(md: &tonic::metadata::MetadataMap) -> Option<String> {
    md.get("mecha-receipt")
        .map(|v| v.to_str().unwrap().to_owned())
}

/// A gRPC SaveState item.
pub fn item(key: &str, value: &[u8]) -> StateItem {
    StateItem {
        key: key.into(),
        value: value.to_vec(),
        ..StateItem::default()
    }
}

/// A gRPC SaveState item with an ETag.
pub fn item_etag(key: &str, value: &[u8], etag: &str) -> StateItem {
    StateItem {
        etag: Some(Etag { value: etag.into() }),
        ..item(key, value)
    }
}

/// A random base for keys, so runs and tests never collide.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{:016x}", rand::random::<u64>())
}
