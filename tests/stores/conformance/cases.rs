//! The behaviours. Each takes a fresh [`Backend`]; keys live under its random base.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use mecha::actors::StoreError;
use mecha::capabilities::Capability;
use mecha::model::{
    Concurrency, Consistency, DeleteRequest, GetRequest, Metadata, QueryRequest, QueryResponse,
    SetRequest, StateOptions, TTL_EXPIRE_TIME, TransactionOp, TransactionRequest, Ttl,
};

use super::harness::Backend;
pub use super::query_reference::{
    query_answers_like_the_reference, query_over_the_scan_limit_fails,
    query_pages_like_the_reference,
};

fn get_req(key: &str) -> GetRequest {
    GetRequest {
        key: key.to_owned(),
        consistency: Consistency::Unspecified,
        metadata: Metadata::new(),
    }
}

fn set_req(key: &str, value: &[u8]) -> SetRequest {
    SetRequest {
        key: key.to_owned(),
        value: Bytes::copy_from_slice(value),
        etag: None,
        options: StateOptions::default(),
        ttl: None,
        metadata: Metadata::new(),
    }
}

fn with_etag(mut r: SetRequest, etag: &str) -> SetRequest {
    r.etag = Some(etag.to_owned());
    r
}

fn first_write(mut r: SetRequest) -> SetRequest {
    r.options.concurrency = Concurrency::FirstWrite;
    r
}

fn del_req(key: &str, etag: Option<&str>) -> DeleteRequest {
    DeleteRequest {
        key: key.to_owned(),
        etag: etag.map(str::to_owned),
        options: StateOptions::default(),
        metadata: Metadata::new(),
    }
}

async fn value(b: &Backend, key: &str) -> Option<Bytes> {
    b.store
        .get(get_req(key))
        .await
        .expect("get")
        .map(|e| e.data)
}

async fn etag(b: &Backend, key: &str) -> String {
    b.store
        .get(get_req(key))
        .await
        .expect("get")
        .expect("present")
        .etag
        .expect("etag")
}

fn assert_mismatch<T: std::fmt::Debug>(r: Result<T, StoreError>) {
    assert!(
        matches!(r, Err(StoreError::EtagMismatch(_))),
        "expected an etag mismatch, got {r:?}"
    );
}

/// Skips the body when the store does not declare `cap` (after checking the refusal where
/// refusal is observable).
fn declares(b: &Backend, cap: Capability) -> bool {
    b.caps.has(cap)
}

pub async fn get_missing_is_none(b: &Backend) {
    assert_eq!(b.store.get(get_req(&b.key("missing"))).await.unwrap(), None);
}

pub async fn set_then_get_round_trips_bytes(b: &Backend) {
    for (i, v) in [
        &b"\"hello\""[..],
        b"{\"a\":1}",
        b"",
        &[0u8, 159, 146, 150, 255],
    ]
    .iter()
    .enumerate()
    {
        let k = b.key(&format!("v{i}"));
        b.store.set(set_req(&k, v)).await.unwrap();
        assert_eq!(value(b, &k).await.as_deref(), Some(*v), "value {i}");
    }
}

pub async fn every_write_changes_the_etag(b: &Backend) {
    if !declares(b, Capability::Etag) {
        return;
    }
    let k = b.key("etag");
    b.store.set(set_req(&k, b"1")).await.unwrap();
    let e1 = etag(b, &k).await;
    b.store.set(set_req(&k, b"1")).await.unwrap();
    let e2 = etag(b, &k).await;
    assert_ne!(e1, e2);
    b.store
        .set(with_etag(set_req(&k, b"2"), &e2))
        .await
        .unwrap();
    assert_ne!(etag(b, &k).await, e2);
}

pub async fn stale_etag_is_a_mismatch(b: &Backend) {
    if !declares(b, Capability::Etag) {
        return;
    }
    let k = b.key("stale");
    b.store.set(set_req(&k, b"1")).await.unwrap();
    let old = etag(b, &k).await;
    b.store.set(set_req(&k, b"2")).await.unwrap();
    assert_mismatch(b.store.set(with_etag(set_req(&k, b"3"), &old)).await);
    assert_mismatch(b.store.delete(del_req(&k, Some(&old))).await);
    assert_eq!(value(b, &k).await.as_deref(), Some(&b"2"[..]));
}

pub async fn invalid_etag_is_invalid(b: &Backend) {
    if !declares(b, Capability::Etag) {
        return;
    }
    let k = b.key("invalid");
    b.store.set(set_req(&k, b"1")).await.unwrap();
    let r = b
        .store
        .set(with_etag(set_req(&k, b"2"), "not-a-version"))
        .await;
    assert!(matches!(r, Err(StoreError::EtagInvalid(_))), "{r:?}");
    let r = b.store.delete(del_req(&k, Some("not-a-version"))).await;
    assert!(matches!(r, Err(StoreError::EtagInvalid(_))), "{r:?}");
}

pub async fn etag_on_missing_key_is_a_mismatch(b: &Backend) {
    if !declares(b, Capability::Etag) {
        return;
    }
    let k = b.key("nokey");
    assert_mismatch(b.store.set(with_etag(set_req(&k, b"1"), "1")).await);
    assert_mismatch(b.store.delete(del_req(&k, Some("1"))).await);
    assert_eq!(value(b, &k).await, None);
}

pub async fn empty_etag_is_normalised_by_the_gateway_not_the_store(b: &Backend) {
    // The gateway turns "" into None before a store sees it; a store only ever gets None.
    let k = b.key("noetag");
    b.store.set(set_req(&k, b"1")).await.unwrap();
    b.store.set(set_req(&k, b"2")).await.unwrap();
    assert_eq!(value(b, &k).await.as_deref(), Some(&b"2"[..]));
}

pub async fn last_write_without_etag_overwrites(b: &Backend) {
    let k = b.key("lw");
    let mut r = set_req(&k, b"1");
    r.options.concurrency = Concurrency::LastWrite;
    b.store.set(r.clone()).await.unwrap();
    r.value = Bytes::from_static(b"2");
    b.store.set(r).await.unwrap();
    assert_eq!(value(b, &k).await.as_deref(), Some(&b"2"[..]));
}

pub async fn first_write_is_create_only(b: &Backend) {
    if !declares(b, Capability::FirstWrite) {
        return;
    }
    let k = b.key("fw");
    b.store.set(first_write(set_req(&k, b"1"))).await.unwrap();
    assert_mismatch(b.store.set(first_write(set_req(&k, b"2"))).await);
    assert_eq!(value(b, &k).await.as_deref(), Some(&b"1"[..]));
}

pub async fn first_write_with_etag_is_a_normal_check(b: &Backend) {
    if !declares(b, Capability::FirstWrite) || !declares(b, Capability::Etag) {
        return;
    }
    let k = b.key("fwe");
    b.store.set(set_req(&k, b"1")).await.unwrap();
    let e = etag(b, &k).await;
    b.store
        .set(first_write(with_etag(set_req(&k, b"2"), &e)))
        .await
        .unwrap();
    assert_mismatch(
        b.store
            .set(first_write(with_etag(set_req(&k, b"3"), &e)))
            .await,
    );
    assert_eq!(value(b, &k).await.as_deref(), Some(&b"2"[..]));
}

pub async fn delete_missing_key_is_ok(b: &Backend) {
    b.store
        .delete(del_req(&b.key("never"), None))
        .await
        .unwrap();
}

pub async fn delete_with_etag_is_guarded(b: &Backend) {
    let k = b.key("del");
    b.store.set(set_req(&k, b"1")).await.unwrap();
    if declares(b, Capability::Etag) {
        let e = etag(b, &k).await;
        b.store.delete(del_req(&k, Some(&e))).await.unwrap();
    } else {
        b.store.delete(del_req(&k, None)).await.unwrap();
    }
    assert_eq!(value(b, &k).await, None);
}

pub async fn ttl_expires_and_reports_expire_time(b: &Backend) {
    if !declares(b, Capability::Ttl) {
        return;
    }
    let k = b.key("ttl");
    let mut r = set_req(&k, b"1");
    r.ttl = Some(Ttl::Seconds(1));
    b.store.set(r).await.unwrap();
    let e = b
        .store
        .get(get_req(&k))
        .await
        .unwrap()
        .expect("present before expiry");
    let at = e
        .metadata
        .get(TTL_EXPIRE_TIME)
        .expect("ttlExpireTime on read");
    let at = humantime::parse_rfc3339(at).expect("RFC 3339");
    let left = at
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    assert!(left <= Duration::from_secs(2), "expiry {left:?} away");
    // Bounded wait: the item must be gone within 2.5 s of a 1 s TTL.
    let deadline = std::time::Instant::now() + Duration::from_millis(2500);
    while value(b, &k).await.is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "item still readable after its TTL"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn ttl_never_and_plain_writes_clear_expiry(b: &Backend) {
    if !declares(b, Capability::Ttl) {
        return;
    }
    for (i, clear) in [Some(Ttl::Never), None].into_iter().enumerate() {
        let k = b.key(&format!("clear{i}"));
        let mut r = set_req(&k, b"1");
        r.ttl = Some(Ttl::Seconds(100));
        b.store.set(r.clone()).await.unwrap();
        r.ttl = clear;
        b.store.set(r).await.unwrap();
        let e = b.store.get(get_req(&k)).await.unwrap().expect("present");
        assert!(
            !e.metadata.contains_key(TTL_EXPIRE_TIME),
            "{clear:?} left an expiry: {:?}",
            e.metadata
        );
    }
}

pub async fn bulk_get_preserves_order_and_missing(b: &Backend) {
    let keys: Vec<String> = (0..5).map(|i| b.key(&format!("bulk{i}"))).collect();
    for (i, k) in keys.iter().enumerate() {
        if i != 2 {
            b.store
                .set(set_req(k, format!("{i}").as_bytes()))
                .await
                .unwrap();
        }
    }
    let reqs = keys.iter().rev().map(|k| get_req(k)).collect();
    let got = b.store.bulk_get(reqs, 3).await;
    let values: Vec<Option<Vec<u8>>> = got
        .into_iter()
        .map(|r| r.unwrap().map(|e| e.data.to_vec()))
        .collect();
    assert_eq!(
        values,
        [
            Some(b"4".to_vec()),
            Some(b"3".to_vec()),
            None,
            Some(b"1".to_vec()),
            Some(b"0".to_vec())
        ]
    );
}

pub async fn bulk_set_keeps_good_items_when_one_etag_fails(b: &Backend) {
    let (good, bad) = (b.key("bs-good"), b.key("bs-bad"));
    b.store.set(set_req(&bad, b"0")).await.unwrap();
    let bad_req = if declares(b, Capability::Etag) {
        with_etag(set_req(&bad, b"1"), "999999")
    } else {
        set_req(&bad, b"1")
    };
    let results = b.store.bulk_set(vec![set_req(&good, b"1"), bad_req]).await;
    assert!(results[0].is_ok());
    if declares(b, Capability::Etag) {
        assert!(
            results[1].as_ref().is_err_and(StoreError::is_etag),
            "{results:?}"
        );
        assert_eq!(value(b, &bad).await.as_deref(), Some(&b"0"[..]));
    }
    assert_eq!(value(b, &good).await.as_deref(), Some(&b"1"[..]));
}

pub async fn bulk_delete_reports_per_key(b: &Backend) {
    let keys: Vec<String> = (0..3).map(|i| b.key(&format!("bd{i}"))).collect();
    for k in &keys {
        b.store.set(set_req(k, b"x")).await.unwrap();
    }
    let results = b
        .store
        .bulk_delete(keys.iter().map(|k| del_req(k, None)).collect())
        .await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    for k in &keys {
        assert_eq!(value(b, k).await, None);
    }
}

fn upsert(key: &str, v: &[u8], etag: Option<&str>) -> TransactionOp {
    let mut r = set_req(key, v);
    r.etag = etag.map(str::to_owned);
    TransactionOp::Upsert(r)
}

pub async fn transaction_applies_every_operation(b: &Backend) {
    let (a, c) = (b.key("tx-a"), b.key("tx-c"));
    let tx = TransactionRequest {
        operations: vec![
            upsert(&a, b"1", None),
            TransactionOp::Delete(del_req(&c, None)),
        ],
        metadata: Metadata::new(),
    };
    if !declares(b, Capability::Transactional) {
        let r = b.store.transact(tx).await;
        assert_eq!(r, Err(StoreError::Unsupported(Capability::Transactional)));
        return;
    }
    b.store.set(set_req(&c, b"x")).await.unwrap();
    b.store.transact(tx).await.unwrap();
    assert_eq!(value(b, &a).await.as_deref(), Some(&b"1"[..]));
    assert_eq!(value(b, &c).await, None);
}

pub async fn transaction_is_all_or_nothing(b: &Backend) {
    if !declares(b, Capability::Transactional) || !declares(b, Capability::Etag) {
        return;
    }
    let (a, c, d) = (b.key("atom-a"), b.key("atom-c"), b.key("atom-d"));
    b.store.set(set_req(&c, b"c0")).await.unwrap();
    b.store.set(set_req(&d, b"d0")).await.unwrap();
    let tx = TransactionRequest {
        operations: vec![
            upsert(&a, b"1", None),
            TransactionOp::Delete(del_req(&d, None)),
            upsert(&c, b"c1", Some("999999")),
        ],
        metadata: Metadata::new(),
    };
    assert!(b.store.transact(tx).await.is_err());
    assert_eq!(value(b, &a).await, None, "first upsert must be rolled back");
    assert_eq!(
        value(b, &d).await.as_deref(),
        Some(&b"d0"[..]),
        "delete must be rolled back"
    );
    assert_eq!(value(b, &c).await.as_deref(), Some(&b"c0"[..]));
}

pub async fn transaction_sees_its_own_earlier_operations(b: &Backend) {
    if !declares(b, Capability::Transactional) {
        return;
    }
    let k = b.key("tx-seq");
    let tx = TransactionRequest {
        operations: vec![
            upsert(&k, b"1", None),
            TransactionOp::Delete(del_req(&k, None)),
            upsert(&k, b"3", None),
        ],
        metadata: Metadata::new(),
    };
    b.store.transact(tx).await.unwrap();
    assert_eq!(value(b, &k).await.as_deref(), Some(&b"3"[..]));
}

pub async fn concurrent_etag_increments_lose_nothing(b: &Backend) {
    if !declares(b, Capability::Etag) {
        return;
    }
    const TASKS: usize = 8;
    const EACH: usize = 25;
    let k = b.key("counter");
    b.store.set(set_req(&k, b"0")).await.unwrap();
    let mut joins = Vec::new();
    for _ in 0..TASKS {
        let store = Arc::clone(&b.store);
        let k = k.clone();
        joins.push(tokio::spawn(async move {
            for _ in 0..EACH {
                loop {
                    let e = store.get(get_req(&k)).await.unwrap().unwrap();
                    let n: usize = std::str::from_utf8(&e.data).unwrap().parse().unwrap();
                    let r = with_etag(
                        set_req(&k, (n + 1).to_string().as_bytes()),
                        &e.etag.unwrap(),
                    );
                    match store.set(r).await {
                        Ok(()) => break,
                        Err(StoreError::EtagMismatch(_)) => continue,
                        Err(other) => panic!("{other}"),
                    }
                }
            }
        }));
    }
    for j in joins {
        j.await.unwrap();
    }
    assert_eq!(
        value(b, &k).await.as_deref(),
        Some((TASKS * EACH).to_string().as_bytes())
    );
}

pub async fn racing_writers_with_one_etag_have_one_winner(b: &Backend) {
    if !declares(b, Capability::Etag) {
        return;
    }
    let k = b.key("race");
    b.store.set(set_req(&k, b"start")).await.unwrap();
    let e = etag(b, &k).await;
    let mut joins = Vec::new();
    for i in 0..16 {
        let store = Arc::clone(&b.store);
        let r = with_etag(set_req(&k, format!("w{i}").as_bytes()), &e);
        joins.push(tokio::spawn(async move { store.set(r).await }));
    }
    let mut winners = 0;
    for j in joins {
        match j.await.unwrap() {
            Ok(()) => winners += 1,
            Err(e) => assert!(matches!(e, StoreError::EtagMismatch(_)), "{e}"),
        }
    }
    assert_eq!(winners, 1);
}

pub async fn keys_with_unusual_characters(b: &Backend) {
    let mut seen = HashSet::new();
    for (i, suffix) in [
        "a b",
        "a/b",
        "ключ",
        "emoji-🦀",
        "quote'\"",
        "%2F",
        "x:y*z?",
    ]
    .iter()
    .enumerate()
    {
        let k = b.key(suffix);
        assert!(seen.insert(k.clone()));
        b.store
            .set(set_req(&k, i.to_string().as_bytes()))
            .await
            .unwrap();
    }
    for (i, suffix) in [
        "a b",
        "a/b",
        "ключ",
        "emoji-🦀",
        "quote'\"",
        "%2F",
        "x:y*z?",
    ]
    .iter()
    .enumerate()
    {
        assert_eq!(
            value(b, &b.key(suffix)).await.as_deref(),
            Some(i.to_string().as_bytes()),
            "{suffix}"
        );
    }
}

/// A store without native TTL refuses a write with `ttlInSeconds` instead of ignoring it
/// (the gateway decides whether to emulate), and writes nothing.
pub async fn undeclared_ttl_is_refused_not_ignored(b: &Backend) {
    if declares(b, Capability::Ttl) {
        return;
    }
    let k = b.key("ttl-refused");
    let mut r = set_req(&k, b"1");
    r.ttl = Some(Ttl::Seconds(60));
    assert_eq!(
        b.store.set(r).await,
        Err(StoreError::Unsupported(Capability::Ttl))
    );
    assert_eq!(value(b, &k).await, None);
}

/// Pages through every live key: each exactly once, deleted keys left out, the cursor valid
/// across pages. Other tests' keys may share the store (in-memory), so only this test's base
/// is checked.
pub async fn list_keys_pages_every_live_key(b: &Backend) {
    let mut want: Vec<String> = (0..12).map(|i| b.key(&format!("list {i:02}"))).collect();
    for k in &want {
        b.store.set(set_req(k, b"1")).await.unwrap();
    }
    let gone = b.key("list-gone");
    b.store.set(set_req(&gone, b"1")).await.unwrap();
    b.store.delete(del_req(&gone, None)).await.unwrap();
    let mut got = Vec::new();
    let mut cursor = None;
    for _ in 0..10_000 {
        let page = b.store.list_keys(cursor, 5).await.unwrap();
        assert!(page.keys.len() <= 5, "{page:?}");
        got.extend(page.keys.into_iter().filter(|k| k.starts_with(&b.base)));
        match page.next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    let unique: HashSet<&String> = got.iter().collect();
    assert_eq!(unique.len(), got.len(), "a key listed twice: {got:?}");
    got.sort();
    want.sort();
    assert_eq!(got, want);
}

// === query (QUERY_API) ===

/// Runs a query over this test's keys (as the gateway does for an app: the prefix is the
/// test's base). `None` when the store does not declare `QUERY_API`, after checking that it
/// refuses queries with `Unsupported`.
async fn query(b: &Backend, q: serde_json::Value) -> Option<Result<QueryResponse, StoreError>> {
    let req = QueryRequest {
        query: q.to_string(),
        metadata: Metadata::new(),
        key_prefix: format!("{}||", b.base),
    };
    let r = b.store.query(req).await;
    if declares(b, Capability::QueryApi) {
        Some(r)
    } else {
        assert_eq!(r, Err(StoreError::Unsupported(Capability::QueryApi)));
        None
    }
}

/// The sorted key suffixes of a response.
fn suffixes(b: &Backend, r: &QueryResponse) -> Vec<String> {
    let prefix = format!("{}||", b.base);
    let mut keys: Vec<String> = r
        .results
        .iter()
        .map(|i| {
            i.key
                .strip_prefix(&prefix)
                .expect("prefixed key")
                .to_owned()
        })
        .collect();
    keys.sort();
    keys
}

async fn save_json(b: &Backend, suffix: &str, v: serde_json::Value) {
    b.store
        .set(set_req(&b.key(suffix), v.to_string().as_bytes()))
        .await
        .unwrap();
}

/// Dapr's conformance queries (spec §5 #5 a–d).
pub async fn query_filters_like_dapr_conformance(b: &Backend) {
    let k = &b.base;
    if query(b, serde_json::json!({})).await.is_none() {
        return;
    }
    save_json(
        b,
        "struct",
        serde_json::json!({"message": format!("test{k}")}),
    )
    .await;
    save_json(
        b,
        "struct-operations",
        serde_json::json!({"product": {"value": 15}, "status": "ACTIVE", "message": format!("{k}message")}),
    )
    .await;
    save_json(
        b,
        "struct-operations-inactive",
        serde_json::json!({"product": {"value": 12}, "status": "INACTIVE", "message": format!("{k}message")}),
    )
    .await;
    save_json(
        b,
        "struct-2",
        serde_json::json!({"message": format!("{k}test")}),
    )
    .await;
    save_json(b, "struct-with-int", serde_json::json!({"message": 42})).await;
    b.store
        .set(set_req(&b.key("bytes"), &[0, 159, 255]))
        .await
        .unwrap();
    let msg = format!("{k}message");
    let cases = [
        (
            serde_json::json!({"filter": {"OR": [
                {"EQ": {"message": "dummy"}},
                {"IN": {"message": [format!("test{k}"), "dummy"]}}]}}),
            vec!["struct"],
        ),
        (
            serde_json::json!({"filter": {"AND": [
                {"EQ": {"message": msg}}, {"GTE": {"product.value": 10}},
                {"LT": {"product.value": 20}}, {"NEQ": {"status": "INACTIVE"}}]}}),
            vec!["struct-operations"],
        ),
        (
            serde_json::json!({"filter": {"OR": [
                {"AND": [{"EQ": {"message": msg}}, {"GT": {"product.value": 11.1}}, {"EQ": {"status": "INACTIVE"}}]},
                {"AND": [{"EQ": {"message": msg}}, {"LTE": {"product.value": 0.5}}, {"EQ": {"status": "ACTIVE"}}]}]}}),
            vec!["struct-operations-inactive"],
        ),
        (
            serde_json::json!({"filter": {"OR": [
                {"EQ": {"message": format!("{k}test")}},
                {"IN": {"message": [format!("test{k}"), "dummy"]}}]}}),
            vec!["struct", "struct-2"],
        ),
        (
            serde_json::json!({"filter": {"EQ": {"message": 42}}}),
            vec!["struct-with-int"],
        ),
        (
            serde_json::json!({"filter": {"EQ": {"message": "nothing"}}}),
            vec![],
        ),
    ];
    for (q, want) in cases {
        let r = query(b, q.clone())
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{q}: {e}"));
        assert_eq!(suffixes(b, &r), want, "{q}");
        assert_eq!(r.token, None, "{q}");
        for item in &r.results {
            let e = b.store.get(get_req(&item.key)).await.unwrap().unwrap();
            assert_eq!(item.data, e.data, "query data is the stored bytes");
            if declares(b, Capability::Etag) {
                assert_eq!(item.etag, e.etag, "query etag is the current etag");
            }
        }
    }
}

/// Numbers compare numerically (9 < 10 < 100), strings as text, and an ordering never holds
/// between values of different JSON types.
pub async fn query_compares_by_json_type(b: &Backend) {
    if query(b, serde_json::json!({})).await.is_none() {
        return;
    }
    for (suffix, v) in [("n9", 9.0), ("n10", 10.0), ("n100", 100.0), ("n-1", -1.5)] {
        save_json(b, suffix, serde_json::json!({"v": v})).await;
    }
    for (suffix, v) in [("sa", "a"), ("sb", "b"), ("s10", "10")] {
        save_json(b, suffix, serde_json::json!({"v": v})).await;
    }
    save_json(b, "true", serde_json::json!({"v": true})).await;
    save_json(b, "none", serde_json::json!({"w": 1})).await;
    let cases = [
        (serde_json::json!({"GT": {"v": 9}}), vec!["n10", "n100"]),
        (
            serde_json::json!({"GTE": {"v": 9}}),
            vec!["n10", "n100", "n9"],
        ),
        (serde_json::json!({"LT": {"v": 10}}), vec!["n-1", "n9"]),
        (serde_json::json!({"LTE": {"v": -1.5}}), vec!["n-1"]),
        (serde_json::json!({"GT": {"v": "a"}}), vec!["sb"]),
        (serde_json::json!({"LT": {"v": "b"}}), vec!["s10", "sa"]),
        (serde_json::json!({"EQ": {"v": 10}}), vec!["n10"]),
        (serde_json::json!({"EQ": {"v": "10"}}), vec!["s10"]),
        (serde_json::json!({"EQ": {"v": true}}), vec!["true"]),
        (
            serde_json::json!({"IN": {"v": [100, "a", false]}}),
            vec!["n100", "sa"],
        ),
    ];
    for (f, want) in cases {
        let r = query(b, serde_json::json!({"filter": f}))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(suffixes(b, &r), want, "{f}");
    }
}

/// `sort` orders (ties broken by key), `page.limit` pages, and following `token`s visits
/// every match exactly once; the last page carries no token.
pub async fn query_sorts_and_pages(b: &Backend) {
    if query(b, serde_json::json!({})).await.is_none() {
        return;
    }
    for i in 0..7 {
        save_json(
            b,
            &format!("p{i}"),
            serde_json::json!({"rank": i % 4, "kind": "page"}),
        )
        .await;
    }
    save_json(b, "other", serde_json::json!({"rank": 1, "kind": "other"})).await;
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    for round in 0.. {
        assert!(round < 10, "paging does not end");
        let mut q = serde_json::json!({
            "filter": {"EQ": {"kind": "page"}},
            "sort": [{"key": "rank", "order": "DESC"}],
            "page": {"limit": 3}});
        if let Some(t) = &token {
            q["page"]["token"] = serde_json::json!(t);
        }
        let r = query(b, q).await.unwrap().unwrap();
        assert!(r.results.len() <= 3);
        seen.extend(r.results.iter().map(|i| {
            let v: serde_json::Value = serde_json::from_slice(&i.data).unwrap();
            v["rank"].as_i64().unwrap()
        }));
        token = r.token;
        if token.is_none() {
            break;
        }
    }
    assert_eq!(
        seen,
        [3, 2, 2, 1, 1, 0, 0],
        "descending ranks, each item once"
    );

    let r = query(
        b,
        serde_json::json!({"sort": [{"key": "rank"}], "page": {"limit": 100}}),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(r.results.len(), 8);
    assert_eq!(r.token, None, "no token when everything fitted");
    let ranks: Vec<i64> = r
        .results
        .iter()
        .map(|i| {
            serde_json::from_slice::<serde_json::Value>(&i.data).unwrap()["rank"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(
        ranks,
        [0, 0, 1, 1, 1, 2, 2, 3],
        "ascending is the default order"
    );
}

/// A query sees only keys under its prefix, even when other keys match the filter, and
/// characters of the prefix are literal (no `LIKE` or glob wildcards leak through).
pub async fn query_sees_only_its_key_prefix(b: &Backend) {
    if query(b, serde_json::json!({})).await.is_none() {
        return;
    }
    let base = &b.base;
    let others = [
        format!("{base}-other||mine"),
        format!("{base}Xq%||mine"),
        format!("{base}_qXX||mine"),
        format!("{base}_q%|x"),
        base.to_uppercase() + "||mine",
    ];
    for k in [b.key("mine"), format!("{base}_q%||mine")]
        .iter()
        .chain(&others)
    {
        b.store.set(set_req(k, br#"{"owner":"x"}"#)).await.unwrap();
    }
    let r = query(b, serde_json::json!({"filter": {"EQ": {"owner": "x"}}}))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(suffixes(b, &r), ["mine"]);
    let r = query(b, serde_json::json!({})).await.unwrap().unwrap();
    assert_eq!(suffixes(b, &r), ["mine"]);
    let special = QueryRequest {
        query: "{}".into(),
        metadata: Metadata::new(),
        key_prefix: format!("{base}_q%||"),
    };
    let r = b.store.query(special).await.unwrap();
    let keys: Vec<&str> = r.results.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(keys, [format!("{base}_q%||mine")]);
    for k in others.iter().chain([&format!("{base}_q%||mine")]) {
        b.store.delete(del_req(k, None)).await.unwrap();
    }
}

/// Expired items are never returned by a query.
pub async fn query_skips_expired_items(b: &Backend) {
    if query(b, serde_json::json!({})).await.is_none() || !declares(b, Capability::Ttl) {
        return;
    }
    let mut r = set_req(&b.key("short"), br#"{"t":1}"#);
    r.ttl = Some(Ttl::Seconds(1));
    b.store.set(r).await.unwrap();
    save_json(b, "long", serde_json::json!({"t": 1})).await;
    let q = serde_json::json!({"filter": {"EQ": {"t": 1}}});
    assert_eq!(
        suffixes(b, &query(b, q.clone()).await.unwrap().unwrap()),
        ["long", "short"]
    );
    // Once the store has expired it (within 2.5 s of a 1 s TTL, as for reads), a query never
    // returns it.
    let deadline = std::time::Instant::now() + Duration::from_millis(2500);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    while value(b, &b.key("short")).await.is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "item readable after its TTL"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(suffixes(b, &query(b, q).await.unwrap().unwrap()), ["long"]);
}

/// A query that does not parse is an `InvalidQuery` naming the problem.
pub async fn query_rejects_invalid_queries(b: &Backend) {
    if query(b, serde_json::json!({})).await.is_none() {
        return;
    }
    let cases = [
        ("{", "failed to parse JSON query body"),
        (
            r#"{"filter":{"LIKE":{"a":"x"}}}"#,
            r#"unsupported filter "LIKE""#,
        ),
        (r#"{"filter":{"AND":[{"EQ":{"a":1}}]}}"#, "at least two"),
        (r#"{"filter":{"IN":{"a":1}}}"#, "array"),
        (r#"{"page":{"limit":2,"token":"not-a-token"}}"#, "token"),
    ];
    for (text, want) in cases {
        let req = QueryRequest {
            query: text.to_owned(),
            metadata: Metadata::new(),
            key_prefix: format!("{}||", b.base),
        };
        match b.store.query(req).await {
            Err(StoreError::InvalidQuery(msg)) => {
                assert!(msg.contains(want), "{text}: {msg:?} lacks {want:?}");
                assert!(
                    msg.starts_with("failed to parse JSON query body: "),
                    "{msg}"
                );
            }
            other => panic!("{text}: expected InvalidQuery, got {other:?}"),
        }
    }
}
