//! Bounded metric cardinality, in its own process (one recorder, one Mecha): thousands of
//! distinct paths, store names, keys, metadata names and gRPC methods, with a valid token, a
//! wrong one and none, leave the number of series under a stated bound, because every label
//! value comes from a finite set (configured apps and stores, route templates, the fixed
//! gRPC method list, Dapr's operations, Mecha's capabilities and metadata buckets).

use crate::support;

use mecha::gateway::grpc::proto::common::StateItem;
use mecha::gateway::grpc::proto::runtime::dapr_client::DaprClient;
use mecha::gateway::grpc::proto::runtime::{GetStateRequest, SaveStateRequest};
use support::TestMecha;
use tonic::transport::Channel;

const APPS: &str =
    "apps:\n  - id: carda\n    token: tok-carda\n  - id: cardb\n    token: tok-cardb\n";
const STORE: &str = "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: statestore\nspec:\n  type: state.in-memory\n  version: v1\n";

/// The stated bound: series (histogram buckets not counted) after the flood below.
const MAX_SERIES: usize = 150;

fn with_token<T>(mut req: tonic::Request<T>, token: Option<&str>) -> tonic::Request<T> {
    if let Some(t) = token {
        req.metadata_mut()
            .insert("dapr-api-token", t.parse().unwrap());
    }
    req
}

#[actix_rt::test]
async fn thousands_of_made_up_names_leave_series_bounded() {
    if support::own_process::ran_elsewhere(
        "cardinality::thousands_of_made_up_names_leave_series_bounded",
    ) {
        return;
    }
    let m = TestMecha::empty().yaml(STORE).settings(APPS).start().await;
    let tokens = [Some("tok-carda"), Some("tok-cardb"), Some("wrong"), None];
    let ch = Channel::from_shared(format!("http://{}", m.running.grpc_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut g = DaprClient::new(ch.clone());
    let mut raw = tonic::client::Grpc::new(ch);
    for i in 0..2000 {
        let token = tokens[i % tokens.len()];
        let id = format!("{i:05}-made-up");
        let send = |method: reqwest::Method, path: String, body: Option<String>| {
            let mut rb = m.client.request(method, m.url(&path));
            if let Some(t) = token {
                rb = rb.header("dapr-api-token", t);
            }
            if let Some(b) = body {
                rb = rb.body(b);
            }
            rb.send()
        };
        // A made-up route, a made-up store, a real store with a fresh key and made-up
        // metadata names, and a made-up extended-metadata attribute.
        send(reqwest::Method::GET, format!("/x/{id}/y"), None)
            .await
            .unwrap();
        send(reqwest::Method::GET, format!("/v1.0/state/s-{id}/k"), None)
            .await
            .unwrap();
        send(
            reqwest::Method::GET,
            format!("/v1.0/state/statestore/k-{id}?metadata.m-{id}=v&consistency=strong"),
            None,
        )
        .await
        .unwrap();
        send(
            reqwest::Method::POST,
            "/v1.0/state/statestore".into(),
            Some(format!(
                "[{{\"key\":\"k-{id}\",\"value\":1,\"metadata\":{{\"n-{id}\":\"v\"}}}}]"
            )),
        )
        .await
        .unwrap();
        // gRPC: a made-up store, a real store with a fresh key and metadata name, a
        // made-up method.
        let _ = g
            .get_state(with_token(
                tonic::Request::new(GetStateRequest {
                    store_name: format!("s-{id}"),
                    key: "k".into(),
                    ..GetStateRequest::default()
                }),
                token,
            ))
            .await;
        let _ = g
            .save_state(with_token(
                tonic::Request::new(SaveStateRequest {
                    store_name: "statestore".into(),
                    states: vec![StateItem {
                        key: format!("g-{id}"),
                        value: b"1".to_vec(),
                        metadata: [(format!("g-{id}"), "v".to_owned())].into(),
                        ..StateItem::default()
                    }],
                }),
                token,
            ))
            .await;
        if i % 4 == 0 && raw.ready().await.is_ok() {
            let path: tonic::codegen::http::uri::PathAndQuery =
                format!("/made.Up{i}/Method{i}").parse().unwrap();
            let codec: tonic_prost::ProstCodec<GetStateRequest, GetStateRequest> =
                tonic_prost::ProstCodec::default();
            let r = raw
                .unary(
                    with_token(tonic::Request::new(GetStateRequest::default()), token),
                    path,
                    codec,
                )
                .await;
            assert!(r.is_err(), "a made-up method answered");
        }
    }
    let metrics = m.metrics().await;
    let series = metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty() && !l.contains("_bucket{"))
        .count();
    assert!(series < MAX_SERIES, "{series} series:\n{metrics}");
    assert!(!metrics.contains("made-up"), "raw names in labels");
    assert!(!metrics.contains("Made"), "raw gRPC methods in labels");
    // The traffic did land where it should.
    assert!(metrics.contains(
        "mecha_metadata_key_usage_total{app_id=\"carda\",store=\"statestore\",key=\"_other\"}"
    ));
    eprintln!("{series} series after the flood");
}
