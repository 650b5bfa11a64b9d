//! The runtime arrangement (see `mecha::gateway::grpc`): the gRPC door runs on its own
//! arbiter with its own gateway and store shards, next to the HTTP workers, and both share
//! one store. These tests drive both doors at the same time.

use std::collections::HashMap;

use futures::future::join_all;
use serde_json::json;
use tonic::Code;

use super::client::runtime::{GetBulkStateRequest, GetStateRequest, SaveStateRequest};
use super::client::{GrpcExt, TestMecha, item, item_etag};

const INCREMENTS: usize = 20;

/// Both doors increment one counter concurrently with ETag compare-and-set, retrying on
/// 409/Aborted; no increment is lost, so the ETag check is atomic across the threads.
#[actix_rt::test]
async fn both_doors_increment_one_counter_concurrently() {
    let m = TestMecha::memory().start().await;
    let mut c = m.grpc().await;
    c.save_state(SaveStateRequest {
        store_name: "statestore".into(),
        states: vec![item("counter", b"0")],
    })
    .await
    .unwrap();

    let over_grpc = {
        let mut c = m.grpc().await;
        async move {
            for _ in 0..INCREMENTS {
                loop {
                    let cur = c
                        .get_state(GetStateRequest {
                            store_name: "statestore".into(),
                            key: "counter".into(),
                            ..GetStateRequest::default()
                        })
                        .await
                        .unwrap()
                        .into_inner();
                    let n: u64 = std::str::from_utf8(&cur.data).unwrap().parse().unwrap();
                    let next = (n + 1).to_string();
                    let saved = c
                        .save_state(SaveStateRequest {
                            store_name: "statestore".into(),
                            states: vec![item_etag("counter", next.as_bytes(), &cur.etag)],
                        })
                        .await;
                    match saved {
                        Ok(_) => break,
                        Err(st) => assert_eq!(st.code(), Code::Aborted, "{st:?}"),
                    }
                }
            }
        }
    };
    let over_http = async {
        for _ in 0..INCREMENTS {
            loop {
                let resp = m
                    .client
                    .get(m.url("/v1.0/state/statestore/counter"))
                    .send()
                    .await
                    .unwrap();
                let etag = resp.headers()["etag"].to_str().unwrap().to_owned();
                let n: u64 = resp.text().await.unwrap().parse().unwrap();
                // Over HTTP the value is JSON: a number stays a number.
                let status = m
                    .client
                    .post(m.url("/v1.0/state/statestore"))
                    .body(json!([{"key": "counter", "value": n + 1, "etag": etag}]).to_string())
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16();
                match status {
                    204 => break,
                    s => assert_eq!(s, 409),
                }
            }
        }
    };
    futures::join!(over_grpc, over_http);

    let r = c
        .get_state(GetStateRequest {
            store_name: "statestore".into(),
            key: "counter".into(),
            ..GetStateRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.data, (2 * INCREMENTS).to_string().as_bytes());
    m.stop().await;
}

/// Many writes through both doors at once, each read back through the other door.
#[actix_rt::test]
async fn concurrent_writes_are_visible_across_doors() {
    let m = TestMecha::memory().start().await;
    let grpc_writes = (0..50).map(|i| {
        let m = &m;
        async move {
            let mut c = m.grpc().await;
            c.save_state(SaveStateRequest {
                store_name: "statestore".into(),
                states: vec![item(&format!("g{i}"), format!("{i}").as_bytes())],
            })
            .await
            .unwrap();
        }
    });
    let http_writes = (0..50).map(|i| {
        let m = &m;
        async move {
            let status = m
                .client
                .post(m.url("/v1.0/state/statestore"))
                .body(json!([{"key": format!("h{i}"), "value": i}]).to_string())
                .send()
                .await
                .unwrap()
                .status();
            assert_eq!(status.as_u16(), 204);
        }
    });
    futures::join!(join_all(grpc_writes), join_all(http_writes));

    let mut c = m.grpc().await;
    let keys: Vec<String> = (0..50).map(|i| format!("h{i}")).collect();
    let r = c
        .get_bulk_state(GetBulkStateRequest {
            store_name: "statestore".into(),
            keys,
            parallelism: 8,
            metadata: HashMap::new(),
        })
        .await
        .unwrap()
        .into_inner();
    for (i, it) in r.items.iter().enumerate() {
        assert_eq!(it.data, i.to_string().as_bytes(), "{}", it.key);
    }
    let (status, body) = {
        let resp = m
            .client
            .post(m.url("/v1.0/state/statestore/bulk"))
            .body(json!({"keys": (0..50).map(|i| format!("g{i}")).collect::<Vec<_>>()}).to_string())
            .send()
            .await
            .unwrap();
        (
            resp.status().as_u16(),
            resp.json::<serde_json::Value>().await.unwrap(),
        )
    };
    assert_eq!(status, 200);
    for (i, it) in body.as_array().unwrap().iter().enumerate() {
        // gRPC stored the bare digits, which are valid JSON numbers.
        assert_eq!(it["data"], json!(i), "{it}");
    }
    m.stop().await;
}

/// Stopping Mecha stops the gRPC door too: new connections are refused.
#[actix_rt::test]
async fn grpc_stops_with_http() {
    let m = TestMecha::memory().start().await;
    let addr = m.running.grpc_addr;
    let mut c = m.grpc().await;
    c.get_state(GetStateRequest {
        store_name: "statestore".into(),
        key: "k".into(),
        ..GetStateRequest::default()
    })
    .await
    .unwrap();
    drop(c);
    m.stop().await;
    let url = format!("http://{addr}");
    let refused = super::client::runtime::dapr_client::DaprClient::connect(url).await;
    assert!(refused.is_err());
}
