//! The key-value stores' shipped example components (`config/examples/`), served end to end:
//! each is loaded as written but for three lines (the component is named `kv`, the data goes
//! to a place of the test's own, the service is the environment's), so the examples stay
//! loadable; and the behaviour every key-value store shares, checked on each of them.

use mecha::gateway::grpc::proto::runtime::dapr_client::DaprClient;
use mecha::gateway::grpc::proto::runtime::{GetMetadataRequest, RegisteredComponents};
use serde_json::json;
use tonic::transport::Channel;

use super::services::{delete_kv_bucket, etcd_endpoints, nats_url};
use super::{Mecha, TestMecha, error_of, unique};

/// One example component of a key-value store.
pub struct KvExample {
    /// The file under `config/examples/`; its stem is the component's name.
    file: &'static str,
    /// The metadata value naming where the data goes (an etcd key prefix, a JetStream bucket).
    place: &'static str,
    /// A fresh place, unique to one test.
    fresh_place: fn() -> String,
    /// The metadata value naming the service, and the environment's value for it.
    service: (&'static str, fn() -> String),
    /// Removes a place when the test ends (`None`: what it holds stays, under its own name).
    remove_place: Option<fn(&str)>,
}

/// `statestore-etcd.yaml`, under a `keyPrefixPath` of the test's own on `ETCD_ENDPOINTS`.
pub const ETCD: KvExample = KvExample {
    file: "statestore-etcd.yaml",
    place: "mecha",
    fresh_place: || unique("mecha-it"),
    service: (
        "http://127.0.0.1:23791,http://127.0.0.1:23792,http://127.0.0.1:23793",
        etcd_endpoints,
    ),
    remove_place: None,
};

/// `statestore-jetstream.yaml`, on a bucket of the test's own on `NATS_URL`, deleted when
/// the test ends.
pub const JETSTREAM: KvExample = KvExample {
    file: "statestore-jetstream.yaml",
    place: "mecha-state",
    fresh_place: || unique("mecha-it").replace('-', "_"),
    service: ("nats://127.0.0.1:4222", nats_url),
    remove_place: Some(delete_kv_bucket),
};

/// Where a test's data went; removed on drop (pass or panic) when the store says how.
pub struct Place {
    name: String,
    remove: Option<fn(&str)>,
}

impl Drop for Place {
    fn drop(&mut self) {
        if let Some(remove) = self.remove {
            remove(&self.name);
        }
    }
}

impl KvExample {
    /// Mecha serving the example as store `kv`, on a fresh place.
    pub async fn start(&self) -> (Mecha, Place) {
        let path = format!(
            "{}/config/examples/{}",
            env!("CARGO_MANIFEST_DIR"),
            self.file
        );
        let example = std::fs::read_to_string(path).unwrap();
        let name = self.file.trim_end_matches(".yaml");
        let place = (self.fresh_place)();
        let (service, service_here) = self.service;
        let yaml = example
            .replace(&format!("name: {name}\n"), "name: kv\n")
            .replace(
                &format!("value: {}\n", self.place),
                &format!("value: {place}\n"),
            )
            .replace(
                &format!("value: {service}\n"),
                &format!("value: {}\n", service_here()),
            );
        assert!(
            yaml.contains("name: kv\n") && yaml.contains(&place),
            "the name or place lines of {} changed",
            self.file
        );
        let m = TestMecha::empty().yaml(&yaml).start().await;
        let place = Place {
            name: place,
            remove: self.remove_place,
        };
        (m, place)
    }
}

/// The ETag of `key` in store `kv`, read over HTTP.
pub async fn etag_of(m: &Mecha, key: &str) -> String {
    m.get(&format!("/v1.0/state/kv/{key}")).await.headers()["etag"]
        .to_str()
        .unwrap()
        .to_owned()
}

/// Store `kv` as gRPC GetMetadata lists it.
pub async fn kv_over_grpc(c: &mut DaprClient<Channel>) -> RegisteredComponents {
    let md = c
        .get_metadata(GetMetadataRequest::default())
        .await
        .unwrap()
        .into_inner();
    md.registered_components
        .into_iter()
        .find(|c| c.name == "kv")
        .expect("kv over gRPC")
}

/// What every key-value store does over HTTP: a save reads back with an ETag; a guarded
/// update succeeds once and its ETag is then stale (409); first-write conflicts on an
/// existing key and creates a new one (`fresh`, holding 3); a guarded delete with a stale
/// ETag is refused (409) and with the current one removes the key.
pub async fn http_etags_first_write_and_guarded_delete(m: &Mecha) {
    m.save("kv", "order 1", json!({"n": 1})).await;
    let r = m.get("/v1.0/state/kv/order%201").await;
    assert_eq!(r.status(), 200);
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap(),
        json!({"n": 1})
    );

    // Guarded update with the current ETag, then the same ETag again: 409.
    let body = json!([{"key": "order 1", "value": 2, "etag": etag}]).to_string();
    assert_eq!(m.post("/v1.0/state/kv", body.clone()).await.status(), 204);
    let (status, code, _, _) = error_of(m.post("/v1.0/state/kv", body).await).await;
    assert_eq!((status, code.as_str()), (409, "ERR_STATE_SAVE"));

    // first-write on an existing key: 409; on a new key: created.
    let fw = |k: &str| {
        json!([{"key": k, "value": 3, "options": {"concurrency": "first-write"}}]).to_string()
    };
    let (status, _, _, _) = error_of(m.post("/v1.0/state/kv", fw("order 1")).await).await;
    assert_eq!(status, 409);
    assert_eq!(m.post("/v1.0/state/kv", fw("fresh")).await.status(), 204);

    // Delete with a stale ETag: 409 and the value stays; with the current one: gone.
    let delete = |etag: String| {
        m.client
            .delete(m.url("/v1.0/state/kv/order%201"))
            .header("If-Match", etag)
            .send()
    };
    assert_eq!(delete(etag).await.unwrap().status(), 409);
    let current = etag_of(m, "order%201").await;
    assert_eq!(delete(current).await.unwrap().status(), 204);
    assert_eq!(m.get("/v1.0/state/kv/order%201").await.status(), 204);
}
