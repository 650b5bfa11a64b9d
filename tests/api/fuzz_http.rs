//! Fuzz-style property test: random methods, paths and bodies (raw bytes and mutated Dapr
//! shapes) at every route. Each response must be well-formed and Dapr-shaped, no unexpected
//! 5xx may appear, nothing may hang, and the process must stay healthy.

use crate::support;

use std::time::Duration;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use serde_json::{Value, json};
use support::TestMecha;

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        "[a-z|%+ ]{0,8}".prop_map(Value::String),
        Just(json!("first-write")),
        Just(json!("upsert")),
        Just(json!("delete")),
        Just(json!("-1")),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::hash_map(
                "[a-zA-Z]{1,8}|key|value|etag|metadata|options|operation|request|keys",
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    let shaped = (json_value(), json_value(), json_value(), "[a-z|]{0,6}").prop_map(|(a, b, c, k)| {
        let variants = [
            json!([{"key": k, "value": a, "etag": b, "metadata": c}]),
            json!([{"key": k, "value": a, "options": b}, c]),
            json!({"keys": [k, a], "parallelism": b, "metadata": c}),
            json!({"operations": [{"operation": "upsert", "request": {"key": k, "value": a, "etag": b}}, {"operation": c, "request": a}], "metadata": b}),
            json!({"filter": a, "sort": b, "page": c}),
            a,
        ];
        let i = k.len() % variants.len();
        serde_json::to_vec(&variants[i]).unwrap()
    });
    prop_oneof![shaped, prop::collection::vec(any::<u8>(), 0..64)]
}

fn request() -> impl Strategy<Value = (String, String, Vec<u8>)> {
    let method = prop_oneof![
        Just("GET"),
        Just("POST"),
        Just("PUT"),
        Just("DELETE"),
        Just("PATCH")
    ];
    let seg = "[a-zA-Z0-9%+._~-]{0,10}";
    let path = (seg, seg, 0usize..10).prop_map(|(a, b, t)| match t {
        0 => "/v1.0/state/statestore".to_owned(),
        1 => format!("/v1.0/state/{a}"),
        2 => format!("/v1.0/state/statestore/{a}"),
        3 => "/v1.0/state/statestore/bulk".to_owned(),
        4 => "/v1.0/state/statestore/transaction".to_owned(),
        5 => "/v1.0-alpha1/state/statestore/query".to_owned(),
        6 => format!("/v1.0/metadata/{a}"),
        7 => format!("/v1.0/state/statestore/{a}?metadata.{b}={a}&consistency={b}"),
        8 => format!("/v1.0/state/statestore?metadata.ttlInSeconds={b}"),
        _ => format!("/{a}/{b}"),
    });
    (method, path, body()).prop_map(|(m, p, b)| (m.to_owned(), p, b))
}

#[actix_rt::test]
async fn random_requests_get_dapr_shaped_answers_and_the_process_survives() {
    let m = TestMecha::memory()
        .settings("limits:\n  maxBodySize: 4Ki\n")
        .start()
        .await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut runner = TestRunner::deterministic();
    let strategy = request();
    for i in 0..600 {
        let (method, path, body) = strategy.new_tree(&mut runner).unwrap().current();
        let r = client
            .request(method.parse().unwrap(), m.url(&path))
            .body(body.clone())
            .send()
            .await
            .unwrap_or_else(|e| panic!("case {i}: {method} {path}: no answer: {e}"));
        let status = r.status().as_u16();
        let ctype = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let text = r.text().await.unwrap();
        let case = || {
            format!(
                "case {i}: {method} {path} {:?} → {status} {text}",
                String::from_utf8_lossy(&body)
            )
        };
        if status < 400 {
            continue;
        }
        if ctype.starts_with("text/plain") {
            assert!(
                status == 400 && text.starts_with("failed to unescape request parameter"),
                "{}",
                case()
            );
            continue;
        }
        let v: Value =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("non-JSON error: {}", case()));
        let code = v["errorCode"]
            .as_str()
            .unwrap_or_else(|| panic!("no errorCode: {}", case()));
        assert!(v["message"].is_string(), "{}", case());
        if status >= 500 {
            // The in-memory store fails only transactions (ETag conflicts) and query (unsupported).
            assert!(
                matches!(
                    code,
                    "ERR_STATE_TRANSACTION" | "ERR_STATE_STORE_NOT_SUPPORTED"
                ),
                "unexpected 5xx: {}",
                case()
            );
        }
    }
    assert_eq!(m.get("/v1.0/healthz").await.status(), 204);
    m.save("statestore", "after-fuzz", json!({"ok": true}))
        .await;
    assert_eq!(
        m.get("/v1.0/state/statestore/after-fuzz")
            .await
            .text()
            .await
            .unwrap(),
        r#"{"ok":true}"#
    );
}
