//! In-memory store tests with a manual clock (no sleeping).

use std::sync::atomic::{AtomicU64, Ordering};

use super::*;
use crate::model::{Consistency, StateOptions, Ttl};

/// A clock that moves only when told to.
struct ManualClock(AtomicU64);

impl ManualClock {
    fn advance(&self, secs: u64) {
        self.0.fetch_add(secs * 1000, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(self.0.load(Ordering::SeqCst))
    }
}

fn store() -> (InMemoryStore, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock(AtomicU64::new(1_700_000_000_000)));
    (
        InMemoryStore::new(clock.clone(), Duration::from_secs(1)),
        clock,
    )
}

fn set(key: &str, ttl: Option<Ttl>) -> SetRequest {
    SetRequest {
        key: key.into(),
        value: bytes::Bytes::from_static(b"\"v\""),
        etag: None,
        options: StateOptions::default(),
        ttl,
        metadata: Metadata::new(),
    }
}

fn get(key: &str) -> GetRequest {
    GetRequest {
        key: key.into(),
        consistency: Consistency::Unspecified,
        metadata: Metadata::new(),
    }
}

#[tokio::test]
async fn expired_items_are_invisible_at_once_and_swept_later() {
    let (s, clock) = store();
    s.set(set("a", Some(Ttl::Seconds(10)))).await.unwrap();
    s.set(set("b", None)).await.unwrap();
    let entry = s.get(get("a")).await.unwrap().unwrap();
    assert_eq!(entry.metadata[TTL_EXPIRE_TIME], "2023-11-14T22:13:30Z");
    clock.advance(9);
    assert!(s.get(get("a")).await.unwrap().is_some());
    clock.advance(1);
    assert_eq!(
        s.get(get("a")).await.unwrap(),
        None,
        "expired exactly at its TTL"
    );
    assert_eq!(s.bulk_get(vec![get("a"), get("b")], 1).await[0], Ok(None));
    assert_eq!(s.len(), 2, "not freed until the sweep");
    assert_eq!(s.sweep(), 1);
    assert_eq!(s.len(), 1);
}

#[tokio::test]
async fn rewriting_moves_the_expiry_and_the_sweep_respects_it() {
    let (s, clock) = store();
    s.set(set("a", Some(Ttl::Seconds(5)))).await.unwrap();
    s.set(set("a", Some(Ttl::Seconds(50)))).await.unwrap();
    clock.advance(10);
    assert_eq!(
        s.sweep(),
        0,
        "the stale index entry must not delete the rewritten item"
    );
    assert!(s.get(get("a")).await.unwrap().is_some());
    clock.advance(50);
    assert_eq!(s.sweep(), 1);
}

#[tokio::test]
async fn first_write_over_an_expired_item_succeeds() {
    let (s, clock) = store();
    s.set(set("a", Some(Ttl::Seconds(1)))).await.unwrap();
    clock.advance(2);
    let mut r = set("a", None);
    r.options.concurrency = Concurrency::FirstWrite;
    s.set(r).await.unwrap();
}

#[tokio::test]
async fn etags_never_repeat_after_delete_and_recreate() {
    let (s, _) = store();
    s.set(set("a", None)).await.unwrap();
    let old = s.get(get("a")).await.unwrap().unwrap().etag.unwrap();
    s.delete(DeleteRequest {
        key: "a".into(),
        etag: None,
        options: StateOptions::default(),
        metadata: Metadata::new(),
    })
    .await
    .unwrap();
    s.set(set("a", None)).await.unwrap();
    let mut r = set("a", None);
    r.etag = Some(old);
    assert!(matches!(s.set(r).await, Err(StoreError::EtagMismatch(_))));
}

#[tokio::test]
async fn transaction_ttl_applies_and_failure_leaves_no_trace() {
    let (s, clock) = store();
    let mut with_ttl = set("t", Some(Ttl::Seconds(3)));
    with_ttl.value = bytes::Bytes::from_static(b"1");
    s.transact(TransactionRequest {
        operations: vec![TransactionOp::Upsert(with_ttl)],
        metadata: Metadata::new(),
    })
    .await
    .unwrap();
    clock.advance(3);
    assert_eq!(s.get(get("t")).await.unwrap(), None);
    let mut bad = set("x", None);
    bad.etag = Some("12345".into());
    let r = s
        .transact(TransactionRequest {
            operations: vec![
                TransactionOp::Upsert(set("y", None)),
                TransactionOp::Upsert(bad),
            ],
            metadata: Metadata::new(),
        })
        .await;
    assert!(r.is_err());
    assert_eq!(s.get(get("y")).await.unwrap(), None);
}

#[test]
fn build_rejects_a_zero_sweep_interval() {
    let cfg = ComponentConfig {
        name: "s".into(),
        component_type: "state.in-memory".into(),
        version: "v1".into(),
        metadata: [("sweepInterval".to_owned(), "0s".to_owned())].into(),
    };
    assert!(build(&cfg).is_err());
}

#[tokio::test]
async fn list_keys_pages_in_order_and_leaves_out_expired_items() {
    let (s, clock) = store();
    for k in ["c", "a", "e", "b", "d"] {
        s.set(set(k, None)).await.unwrap();
    }
    s.set(set("bb", Some(Ttl::Seconds(1)))).await.unwrap();
    clock.advance(1);
    let p1 = s.list_keys(None, 2).await.unwrap();
    assert_eq!(
        (p1.keys.clone(), p1.next.as_deref()),
        (vec!["a".to_owned(), "b".into()], Some("b"))
    );
    let p2 = s.list_keys(p1.next, 2).await.unwrap();
    assert_eq!(p2.keys, ["c", "d"]);
    let p3 = s.list_keys(p2.next, 2).await.unwrap();
    assert_eq!((p3.keys, p3.next), (vec!["e".to_owned()], None));
}
