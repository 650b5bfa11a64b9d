//! The request-metadata lint end to end, over HTTP and gRPC: `warn` reports every map (URL
//! query, item, bulk get, transaction, operation) in `mecha-lint` and lets the call proceed;
//! `reject` answers `ERR_METADATA_LINT` / `INVALID_ARGUMENT` and writes nothing; an invalid
//! value fails in every mode; portable metadata is silent; apps' `requires` and tightenings.

use crate::support;
use crate::support::services::database_url;

use std::collections::HashMap;

use mecha::gateway::grpc::proto::common::StateItem;
use mecha::gateway::grpc::proto::runtime::{
    DeleteBulkStateRequest, ExecuteStateTransactionRequest, GetBulkStateRequest,
    GetMetadataRequest, GetStateRequest, QueryStateRequest, SaveStateRequest,
    TransactionalStateOperation,
};
use serde_json::{Value, json};
use support::{KvFactory, MEMORY_STORE, Mecha, TestMecha, error_of, unique};
use tonic::Code;

fn memory(name: &str) -> String {
    MEMORY_STORE.replace("name: statestore", &format!("name: {name}"))
}

/// `statestore` (warn, the default), `strict` (reject), `quiet` (off), `kv` (TTL and
/// partitionKey ignored, warn), `pinned` (partitionKey rejected).
async fn mecha() -> Mecha {
    TestMecha::memory()
        .yaml(&memory("strict"))
        .yaml(&memory("quiet"))
        .yaml(&memory("pinned"))
        .custom("kv", KvFactory::fresh().1)
        .settings(
            "stores:\n  strict:\n    lint: reject\n  quiet:\n    lint: off\n  kv:\n    ttl: ignore\n    partitionKey: ignore\n  pinned:\n    partitionKey: reject\n",
        )
        .start()
        .await
}

fn lint_of(r: &reqwest::Response) -> Option<String> {
    r.headers()
        .get("mecha-lint")
        .map(|v| v.to_str().unwrap().to_owned())
}

fn grpc_lint(md: &tonic::metadata::MetadataMap) -> Option<String> {
    md.get("mecha-lint").map(|v| v.to_str().unwrap().to_owned())
}

fn md(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

async fn status_of_get(m: &Mecha, store: &str, key: &str) -> u16 {
    m.get(&format!("/v1.0/state/{store}/{key}"))
        .await
        .status()
        .as_u16()
}

#[actix_rt::test]
async fn http_warn_reports_every_map_and_proceeds() {
    let m = mecha().await;
    let k = unique("w");
    // Item metadata in a save body.
    let r = m
        .post(
            "/v1.0/state/statestore",
            json!([{"key": k, "value": 1, "metadata": {"keyPrefix": "none"}}]).to_string(),
        )
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(
        lint_of(&r).as_deref(),
        Some("component-level-key;key=keyPrefix;at=item[0]")
    );
    assert_eq!(status_of_get(&m, "statestore", &k).await, 200, "written");
    // URL metadata on a save of two items: reported once, at `request`.
    let r = m
        .post(
            "/v1.0/state/statestore?metadata.ttlInSecond=5",
            json!([{"key": format!("{k}-a"), "value": 1}, {"key": format!("{k}-b"), "value": 2}])
                .to_string(),
        )
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(
        lint_of(&r).as_deref(),
        Some("unknown-key;key=ttlInSecond;at=request;suggest=ttlInSeconds")
    );
    // Query parameters on a get.
    let r = m
        .get(&format!(
            "/v1.0/state/statestore/{k}?metadata.metakey=metavalue"
        ))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        lint_of(&r).as_deref(),
        Some("unknown-key;key=metakey;at=request")
    );
    // Bulk get body metadata.
    let r = m
        .post(
            "/v1.0/state/statestore/bulk",
            json!({"keys": [k], "metadata": {"actorStateStore": "true"}}).to_string(),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        lint_of(&r).as_deref(),
        Some("component-level-key;key=actorStateStore;at=request")
    );
    // Transaction-level and operation-level metadata (the Python SDK example's keys).
    let r = m
        .post(
            "/v1.0/state/statestore/transaction",
            json!({
                "operations": [
                    {"operation": "upsert", "request": {"key": k, "value": 2}},
                    {"operation": "upsert", "request": {"key": format!("{k}-t"), "value": 3,
                        "metadata": {"ttlInSecond": "60"}}},
                ],
                "metadata": {"outbox.projection": "true"},
            })
            .to_string(),
        )
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(
        lint_of(&r).as_deref(),
        Some(
            "unsupported-feature;key=outbox.projection;at=transaction, \
             unknown-key;key=ttlInSecond;at=operation[1];suggest=ttlInSeconds"
        )
    );
    // Delete with URL metadata.
    let r = m
        .delete(&format!(
            "/v1.0/state/statestore/{k}?metadata.keyPrefix=none"
        ))
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(
        lint_of(&r).as_deref(),
        Some("component-level-key;key=keyPrefix;at=request")
    );
    // A query (emulated on the in-memory store) has its metadata linted like any call;
    // this one's filter is malformed, the client's 400.
    let r = m
        .post(
            "/v1.0-alpha1/state/statestore/query?metadata.queryIndexName=idx",
            r#"{"filter":{}}"#,
        )
        .await;
    assert_eq!(
        (r.status().as_u16(), lint_of(&r).as_deref()),
        (
            400,
            Some("store-specific-key;key=queryIndexName;at=request")
        )
    );
    // Counted in the metrics, with finite labels only.
    let metrics = m.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("mecha_lint_findings_total")
                && l.contains("code=\"unknown-key\"")
                && l.contains("severity=\"warning\"")
                && l.contains("store=\"statestore\"")),
        "{metrics}"
    );
    assert!(!metrics.contains("metavalue"));
    m.running.stop(true).await;
}

#[actix_rt::test]
async fn portable_metadata_produces_no_finding() {
    let m = mecha().await;
    let k = unique("p");
    for store in ["statestore", "strict"] {
        for md in [
            json!({"ttlInSeconds": "3600"}),
            json!({"ttlInSeconds": "-1"}),
            json!({"contentType": "application/json"}),
        ] {
            let r = m
                .post(
                    &format!("/v1.0/state/{store}"),
                    json!([{"key": k, "value": 1, "metadata": md}]).to_string(),
                )
                .await;
            assert_eq!(r.status(), 204, "{store} {md}");
            assert_eq!(lint_of(&r), None, "{store} {md}");
        }
        let r = m
            .get(&format!(
                "/v1.0/state/{store}/{k}?metadata.contentType=application/json"
            ))
            .await;
        assert_eq!((r.status().as_u16(), lint_of(&r)), (200, None));
    }
    let mut c = m.grpc().await;
    let resp = c
        .save_state(SaveStateRequest {
            store_name: "strict".into(),
            states: vec![StateItem {
                key: k.clone(),
                value: b"1".to_vec(),
                metadata: md(&[("ttlInSeconds", "-1"), ("contentType", "application/json")]),
                ..StateItem::default()
            }],
        })
        .await
        .unwrap();
    assert_eq!(grpc_lint(resp.metadata()), None);
    m.running.stop(true).await;
}

#[actix_rt::test]
async fn http_reject_lists_every_finding_and_writes_nothing() {
    let m = mecha().await;
    let k = unique("r");
    let cases: Vec<(String, Value, &str)> = vec![
        (
            "/v1.0/state/strict".into(),
            json!([{"key": k, "value": 1, "metadata": {"keyPrefix": "none", "ttlInSecond": "5"}}]),
            "component-level-key 'keyPrefix' in item[0]: it is component metadata and does nothing per request; unknown-key 'ttlInSecond' in item[0]: did you mean 'ttlInSeconds'?",
        ),
        (
            "/v1.0/state/strict/transaction".into(),
            json!({"operations": [{"operation": "upsert", "request": {"key": k, "value": 1}}],
                   "metadata": {"outbox.projection": "true"}}),
            "unsupported-feature 'outbox.projection' in transaction",
        ),
        (
            "/v1.0/state/strict/transaction".into(),
            json!({"operations": [{"operation": "delete", "request": {"key": "x"}},
                                  {"operation": "upsert", "request": {"key": k, "value": 1,
                                   "metadata": {"ttlInSecond": "5"}}}]}),
            "unknown-key 'ttlInSecond' in operation[1]: did you mean 'ttlInSeconds'?",
        ),
        (
            "/v1.0/state/strict?metadata.keyPrefix=name".into(),
            json!([{"key": k, "value": 1}]),
            "component-level-key 'keyPrefix' in request",
        ),
    ];
    for (path, body, wanted) in cases {
        let (status, code, message, details) =
            error_of(m.post(&path, body.to_string()).await).await;
        assert_eq!(
            (status, code.as_str()),
            (400, "ERR_METADATA_LINT"),
            "{path}: {message}"
        );
        assert!(
            message.starts_with("state store strict rejected the "),
            "{message}"
        );
        assert!(message.contains(wanted), "{path}: {message}");
        assert!(
            details.iter().any(|d| d["reason"] == "MECHA_METADATA_LINT"),
            "{details:?}"
        );
        assert_eq!(
            status_of_get(&m, "strict", &k).await,
            204,
            "{path}: nothing written"
        );
    }
    // Reads and deletes too.
    let (status, code, message, _) = error_of(
        m.get(&format!("/v1.0/state/strict/{k}?metadata.metakey=v"))
            .await,
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (400, "ERR_METADATA_LINT"),
        "{message}"
    );
    assert!(
        message.contains("unknown-key 'metakey' in request"),
        "{message}"
    );
    let (status, code, _, _) = error_of(
        m.post(
            "/v1.0/state/strict/bulk",
            json!({"keys": [k], "metadata": {"partitionkey": "p"}}).to_string(),
        )
        .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (400, "ERR_METADATA_LINT"));
    m.running.stop(true).await;
}

/// `ttlInSeconds=abc` fails in every mode (the store would fail anyway), with the error the
/// TTL parse has always given (400, the operation's code), and nothing is written.
#[actix_rt::test]
async fn invalid_values_are_rejected_in_every_mode() {
    let m = mecha().await;
    let k = unique("i");
    for store in ["statestore", "strict", "quiet"] {
        for value in ["abc", "-5"] {
            let (status, code, message, _) = error_of(
                m.post(
                    &format!("/v1.0/state/{store}"),
                    json!([{"key": k, "value": 1, "metadata": {"ttlInSeconds": value}}])
                        .to_string(),
                )
                .await,
            )
            .await;
            assert_eq!((status, code.as_str()), (400, "ERR_STATE_SAVE"), "{store}");
            assert!(
                message.contains("invalid-value 'ttlInSeconds' in item[0]"),
                "{message}"
            );
            assert!(!message.contains("ERR_METADATA_LINT"));
        }
        let (status, code, _, _) = error_of(
            m.post(
                &format!("/v1.0/state/{store}/transaction?metadata.ttlInSeconds=abc"),
                json!({"operations": [{"operation": "upsert", "request": {"key": k, "value": 1}}]})
                    .to_string(),
            )
            .await,
        )
        .await;
        assert_eq!((status, code.as_str()), (400, "ERR_STATE_TRANSACTION"));
        assert_eq!(status_of_get(&m, store, &k).await, 204, "nothing written");
    }
    // gRPC: INVALID_ARGUMENT.
    let mut c = m.grpc().await;
    let st = c
        .save_state(SaveStateRequest {
            store_name: "quiet".into(),
            states: vec![StateItem {
                key: k.clone(),
                value: b"1".to_vec(),
                metadata: md(&[("ttlInSeconds", "abc")]),
                ..StateItem::default()
            }],
        })
        .await
        .unwrap_err();
    assert_eq!(st.code(), Code::InvalidArgument, "{st:?}");
    assert!(
        st.message().contains("invalid-value 'ttlInSeconds'"),
        "{st:?}"
    );
    m.running.stop(true).await;
}

/// `lint: off` reports nothing (but still refuses invalid values, above).
#[actix_rt::test]
async fn off_reports_nothing() {
    let m = mecha().await;
    let r = m
        .post(
            "/v1.0/state/quiet",
            json!([{"key": unique("o"), "value": 1, "metadata": {"ttlInSecond": "5", "keyPrefix": "x"}}])
                .to_string(),
        )
        .await;
    assert_eq!((r.status().as_u16(), lint_of(&r)), (204, None));
    m.running.stop(true).await;
}

/// `partitionKey`: the matrix decides. Ignored (the built-in compatible default, or a
/// policy): a receipt, and the lint reports `ignored-by-store` (a warning: `reject` mode
/// refuses it). Rejected by policy: negotiation answers and the lint does not repeat it. Same
/// for a positive TTL on a store whose policy ignores TTL.
#[actix_rt::test]
async fn partition_key_and_ttl_follow_the_matrix() {
    let m = mecha().await;
    let k = unique("pk");
    let r = m
        .get(&format!(
            "/v1.0/state/statestore/{k}?metadata.partitionKey=p1"
        ))
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(
        r.headers().get("mecha-receipt").unwrap(),
        "partition-key=ignored"
    );
    assert_eq!(
        lint_of(&r).as_deref(),
        Some("ignored-by-store;key=partitionKey;at=request")
    );
    let (status, code, message, _) = error_of(
        m.get(&format!("/v1.0/state/strict/{k}?metadata.partitionKey=p1"))
            .await,
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (400, "ERR_METADATA_LINT"),
        "{message}"
    );
    assert!(message.contains("partitionKey"), "{message}");
    let r = m
        .get(&format!("/v1.0/state/pinned/{k}?metadata.partitionKey=p1"))
        .await;
    assert_eq!(lint_of(&r), None);
    let (status, code, message, _) = error_of(r).await;
    assert_eq!(
        (status, code.as_str()),
        (400, "ERR_STATE_STORE_NOT_SUPPORTED"),
        "{message}"
    );
    assert!(message.contains("capability partitionKey"), "{message}");
    let r = m
        .post(
            "/v1.0/state/kv",
            json!([{"key": k, "value": 1, "metadata": {"partitionKey": "p1", "ttlInSeconds": "60"}}])
                .to_string(),
        )
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(
        r.headers().get("mecha-receipt").unwrap(),
        "ttl=ignored, partition-key=ignored"
    );
    assert_eq!(
        lint_of(&r).as_deref(),
        Some(
            "ignored-by-store;key=partitionKey;at=item[0], ignored-by-store;key=ttlInSeconds;at=item[0]"
        )
    );
    m.running.stop(true).await;
}

#[actix_rt::test]
async fn grpc_warn_and_reject_on_every_rpc() {
    let m = mecha().await;
    let mut c = m.grpc().await;
    let k = unique("g");
    let item = |key: &str, meta: &[(&str, &str)]| StateItem {
        key: key.to_owned(),
        value: b"1".to_vec(),
        metadata: md(meta),
        ..StateItem::default()
    };
    // SaveState item metadata.
    let resp = c
        .save_state(SaveStateRequest {
            store_name: "statestore".into(),
            states: vec![
                item(&k, &[]),
                item(&format!("{k}-2"), &[("ttlInSecond", "5")]),
            ],
        })
        .await
        .unwrap();
    assert_eq!(
        grpc_lint(resp.metadata()).as_deref(),
        Some("unknown-key;key=ttlInSecond;at=item[1];suggest=ttlInSeconds")
    );
    // GetState request metadata.
    let resp = c
        .get_state(GetStateRequest {
            store_name: "statestore".into(),
            key: k.clone(),
            metadata: md(&[("keyPrefix", "none")]),
            ..GetStateRequest::default()
        })
        .await
        .unwrap();
    assert_eq!(resp.get_ref().data, b"1");
    assert_eq!(
        grpc_lint(resp.metadata()).as_deref(),
        Some("component-level-key;key=keyPrefix;at=request")
    );
    // GetBulkState.
    let resp = c
        .get_bulk_state(GetBulkStateRequest {
            store_name: "statestore".into(),
            keys: vec![k.clone()],
            metadata: md(&[("metakey", "v")]),
            ..GetBulkStateRequest::default()
        })
        .await
        .unwrap();
    assert_eq!(
        grpc_lint(resp.metadata()).as_deref(),
        Some("unknown-key;key=metakey;at=request")
    );
    // Transaction: transaction-level and operation-level.
    let resp = c
        .execute_state_transaction(ExecuteStateTransactionRequest {
            store_name: "statestore".into(),
            operations: vec![TransactionalStateOperation {
                operation_type: "upsert".into(),
                request: Some(item(&k, &[("ttlInSecond", "5")])),
            }],
            metadata: md(&[("outbox.projection", "true")]),
        })
        .await
        .unwrap();
    assert_eq!(
        grpc_lint(resp.metadata()).as_deref(),
        Some(
            "unsupported-feature;key=outbox.projection;at=transaction, \
             unknown-key;key=ttlInSecond;at=operation[0];suggest=ttlInSeconds"
        )
    );
    // DeleteBulkState items.
    let resp = c
        .delete_bulk_state(DeleteBulkStateRequest {
            store_name: "statestore".into(),
            states: vec![
                item(&format!("{k}-2"), &[]),
                item(&k, &[("keyPrefix", "x")]),
            ],
        })
        .await
        .unwrap();
    assert_eq!(
        grpc_lint(resp.metadata()).as_deref(),
        Some("component-level-key;key=keyPrefix;at=item[1]")
    );

    // Reject: INVALID_ARGUMENT listing every finding, nothing written.
    let st = c
        .save_state(SaveStateRequest {
            store_name: "strict".into(),
            states: vec![item(&k, &[("ttlInSecond", "5"), ("partitionkey", "p")])],
        })
        .await
        .unwrap_err();
    assert_eq!(st.code(), Code::InvalidArgument);
    assert!(
        st.message()
            .contains("unknown-key 'partitionkey' in item[0]: did you mean 'partitionKey'?")
            && st
                .message()
                .contains("unknown-key 'ttlInSecond' in item[0]: did you mean 'ttlInSeconds'?"),
        "{st:?}"
    );
    let got = c
        .get_state(GetStateRequest {
            store_name: "strict".into(),
            key: k.clone(),
            ..GetStateRequest::default()
        })
        .await
        .unwrap();
    assert!(got.get_ref().data.is_empty(), "nothing written");
    for (rpc, st) in [
        (
            "get",
            c.get_state(GetStateRequest {
                store_name: "strict".into(),
                key: k.clone(),
                metadata: md(&[("keyPrefix", "x")]),
                ..GetStateRequest::default()
            })
            .await
            .map(|_| ())
            .unwrap_err(),
        ),
        (
            "transaction",
            c.execute_state_transaction(ExecuteStateTransactionRequest {
                store_name: "strict".into(),
                operations: vec![TransactionalStateOperation {
                    operation_type: "delete".into(),
                    request: Some(item(&k, &[("metakey", "v")])),
                }],
                metadata: HashMap::new(),
            })
            .await
            .map(|_| ())
            .unwrap_err(),
        ),
    ] {
        assert_eq!(st.code(), Code::InvalidArgument, "{rpc}: {st:?}");
        assert!(st.message().contains("(lint: reject)"), "{rpc}: {st:?}");
    }
    m.running.stop(true).await;
}

const APPS: &str = "apps:\n  - id: orders\n    token: t-orders\n    requires: [ETAG, TTL]\n    stores:\n      kv:\n        lint: reject\n        ttl: reject\n  - id: billing\n    token: t-billing\nstores:\n  kv:\n    ttl: emulate\n";

/// An app's tightenings apply to it alone; its requirements show in the metadata.
#[actix_rt::test]
async fn app_tightenings_and_requirements() {
    let m = TestMecha::memory()
        .custom("kv", KvFactory::fresh().1)
        .settings(
            &APPS
                .replace("ttl: emulate", "ttl: ignore")
                .replace("requires: [ETAG, TTL]", "requires: [ETAG]"),
        )
        .start()
        .await;
    let k = unique("a");
    let send = |token: &'static str, body: Value| {
        m.client
            .post(m.url("/v1.0/state/kv"))
            .header("dapr-api-token", token)
            .body(body.to_string())
            .send()
    };
    let body = json!([{"key": k, "value": 1, "metadata": {"ttlInSecond": "5"}}]);
    // billing: the store's warn.
    let r = send("t-billing", body.clone()).await.unwrap();
    assert_eq!(r.status(), 204);
    assert!(
        lint_of(&r)
            .unwrap()
            .starts_with("unknown-key;key=ttlInSecond")
    );
    // orders: its own reject.
    let (status, code, _, _) = error_of(send("t-orders", body).await.unwrap()).await;
    assert_eq!((status, code.as_str()), (400, "ERR_METADATA_LINT"));
    // orders rejects TTL for itself; billing gets the store's `ignore`.
    let ttl = json!([{"key": k, "value": 1, "metadata": {"ttlInSeconds": "60"}}]);
    let (status, code, message, _) = error_of(send("t-orders", ttl.clone()).await.unwrap()).await;
    assert_eq!(
        (status, code.as_str()),
        (400, "ERR_STATE_STORE_NOT_SUPPORTED")
    );
    assert!(
        message.contains("policy: reject (the app's own policy)"),
        "{message}"
    );
    let r = send("t-billing", ttl).await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers().get("mecha-receipt").unwrap(), "ttl=ignored");
    // Requirements in the metadata, for the calling app only.
    let meta: Value = m
        .client
        .get(m.url("/v1.0/metadata"))
        .header("dapr-api-token", "t-orders")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["extended"]["mecha.requires.kv"], "ETAG=met(native)");
    // The matrix an app is shown is its own, with its tightenings.
    let matrix = meta["extended"]["mecha.matrix.kv"].as_str().unwrap();
    assert!(matrix.contains("ttl=rejected"), "{matrix}");
    assert_eq!(
        meta["extended"]["mecha.requires.statestore"],
        "ETAG=met(native)"
    );
    let mut c = m.grpc().await;
    let mut req = tonic::Request::new(GetMetadataRequest::default());
    req.metadata_mut()
        .insert("dapr-api-token", "t-billing".parse().unwrap());
    let meta = c.get_metadata(req).await.unwrap().into_inner();
    assert!(!meta.extended_metadata.contains_key("mecha.requires.kv"));
    let matrix = &meta.extended_metadata["mecha.matrix.kv"];
    assert!(matrix.contains("ttl=ignored"), "{matrix}");
    let mut req = tonic::Request::new(GetMetadataRequest::default());
    req.metadata_mut()
        .insert("dapr-api-token", "t-orders".parse().unwrap());
    let meta = c.get_metadata(req).await.unwrap().into_inner();
    assert_eq!(
        meta.extended_metadata["mecha.requires.kv"],
        "ETAG=met(native)"
    );
    m.running.stop(true).await;
}

/// A requirement a store in the app's scope cannot meet, and a loosening, stop start-up with
/// every problem listed, naming app, store and capability.
#[actix_rt::test]
async fn unmet_requirements_and_loosenings_stop_start_up() {
    let settings = APPS
        .replace("[ETAG, TTL]", "[ETAG, TTL, TRANSACTIONAL]")
        .replace(
            "lint: reject\n        ttl: reject",
            "lint: off\n        ttl: reject\n        strongConsistency: ignore",
        );
    let err = TestMecha::empty()
        .custom("kv", KvFactory::fresh().1)
        .settings(&settings)
        .refused()
        .await;
    for wanted in [
        "app 'orders' requires TTL, but store 'kv' (state.test) in its scope has it rejected",
        "app 'orders' requires TRANSACTIONAL, but store 'kv' (state.test) in its scope has it rejected",
        "app 'orders': 'ignore' for capability strongConsistency on store 'kv' would loosen the operator's decision (rejected)",
        "app 'orders': lint 'off' on store 'kv' would loosen the operator's 'warn'",
    ] {
        assert!(err.contains(wanted), "{wanted}\n{err}");
    }
}

/// Query metadata on a store with the query API (PostgreSQL on the local server): `warn`
/// over HTTP reports `queryIndexName` (honoured by Dapr's Redis only) and answers; `reject`
/// over gRPC refuses it; portable `contentType` is silent.
#[actix_rt::test]
async fn query_metadata_on_postgresql() {
    let url = database_url();
    let table = format!("lint_{:016x}", rand::random::<u64>());
    let pg = |name: &str| {
        format!(
            "kind: Component\nmetadata:\n  name: {name}\nspec:\n  type: state.postgresql\n  metadata:\n  - name: connectionString\n    value: \"{url}\"\n  - name: tableName\n    value: {table}\n"
        )
    };
    let m = TestMecha::empty()
        .yaml(&pg("pg"))
        .yaml(&pg("pgstrict"))
        .settings("stores:\n  pgstrict:\n    lint: reject\n")
        .start()
        .await;
    m.save("pg", &unique("q"), json!({"a": 1})).await;
    let r = m
        .post(
            "/v1.0-alpha1/state/pg/query?metadata.queryIndexName=idx",
            r#"{"filter":{"EQ":{"a":1}}}"#,
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        lint_of(&r).as_deref(),
        Some("store-specific-key;key=queryIndexName;at=request")
    );
    let mut c = m.grpc().await;
    let resp = c
        .query_state_alpha1(QueryStateRequest {
            store_name: "pg".into(),
            query: r#"{"filter":{"EQ":{"a":1}}}"#.into(),
            metadata: md(&[("contentType", "application/json")]),
        })
        .await
        .unwrap();
    assert_eq!(grpc_lint(resp.metadata()), None);
    let st = c
        .query_state_alpha1(QueryStateRequest {
            store_name: "pgstrict".into(),
            query: r#"{"filter":{}}"#.into(),
            metadata: md(&[("queryIndexName", "idx")]),
        })
        .await
        .unwrap_err();
    assert_eq!(st.code(), Code::InvalidArgument, "{st:?}");
    assert!(
        st.message().contains(
            "store-specific-key 'queryIndexName' in request: only state.redis honours it"
        ),
        "{st:?}"
    );
    m.running.stop(true).await;
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let _ = client
        .batch_execute(&format!("DROP TABLE IF EXISTS \"{table}\""))
        .await;
}
