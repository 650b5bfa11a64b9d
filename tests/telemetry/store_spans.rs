//! Lines a store logs while it serves a request carry that request's span (trace id, app,
//! store, operation), although store calls run as their own tasks on the store actor: here
//! a store call that panics, whose "store call panicked" line must name the request.

use crate::support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use mecha::actors::{StateStore, StoreError, StoreFactory};
use mecha::capabilities::CapabilitySet;
use mecha::model::{DeleteRequest, GetRequest, SetRequest, StateEntry};
use serde_json::Value;
use support::TestMecha;

struct Panics;

#[async_trait]
impl StateStore for Panics {
    async fn get(&self, _req: GetRequest) -> Result<Option<StateEntry>, StoreError> {
        panic!("the backend broke");
    }
    async fn set(&self, _req: SetRequest) -> Result<(), StoreError> {
        Ok(())
    }
    async fn delete(&self, _req: DeleteRequest) -> Result<(), StoreError> {
        Ok(())
    }
}

struct PanicsFactory;

impl StoreFactory for PanicsFactory {
    fn create(&self) -> Result<Arc<dyn StateStore>, StoreError> {
        Ok(Arc::new(Panics))
    }
    fn capabilities(&self) -> CapabilitySet {
        CapabilitySet::of(&[])
    }
}

/// Collects what the subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[actix_rt::test]
async fn a_store_actors_log_line_names_the_request() {
    if support::own_process::ran_elsewhere("store_spans::a_store_actors_log_line_names_the_request")
    {
        return;
    }
    let captured = Captured::default();
    let writer = captured.clone();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .json()
            .with_env_filter("info")
            .with_writer(move || writer.clone())
            .finish(),
    )
    .expect("the only subscriber of this process");
    let m = TestMecha::empty()
        .custom("fragile", Arc::new(PanicsFactory))
        .start()
        .await;
    let trace = format!("{:032x}", rand::random::<u128>() | 1);
    let r = m
        .client
        .get(m.url("/v1.0/state/fragile/k"))
        .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);

    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let line = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["fields"]["message"] == "store call panicked; restarting the shard")
        .unwrap_or_else(|| panic!("no panic line in\n{text}"));
    let mut fields = serde_json::Map::new();
    for span in line["spans"].as_array().into_iter().flatten() {
        fields.extend(span.as_object().cloned().unwrap_or_default());
    }
    assert_eq!(fields.get("trace_id"), Some(&Value::from(trace)), "{line}");
    assert_eq!(fields.get("app"), Some(&Value::from("testapp")), "{line}");
    assert_eq!(fields.get("store"), Some(&Value::from("fragile")), "{line}");
    assert_eq!(fields.get("operation"), Some(&Value::from("get")), "{line}");
}
