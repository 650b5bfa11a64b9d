//! Emulated query over the in-memory backend, with a manual clock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::*;
use crate::actors::backends::in_memory::{Clock, InMemoryStore};
use crate::model::{StateOptions, Ttl};

struct ManualClock(AtomicU64);

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.0.load(Ordering::SeqCst))
    }
}

fn limits(max_scan: usize) -> QueryLimits {
    QueryLimits {
        max_scan,
        ..QueryLimits::default()
    }
}

fn setup(max_scan: usize) -> (QueryEmulation, Arc<InMemoryStore>, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock(AtomicU64::new(1_700_000_000_000)));
    let store = Arc::new(InMemoryStore::new(clock.clone(), Duration::from_secs(3600)));
    (
        QueryEmulation::new(store.clone(), limits(max_scan)),
        store,
        clock,
    )
}

async fn put(s: &dyn StateStore, key: &str, value: String, ttl: Option<Ttl>) {
    s.set(SetRequest {
        key: key.into(),
        value: Bytes::from(value),
        etag: None,
        options: StateOptions::default(),
        ttl,
        metadata: Metadata::new(),
    })
    .await
    .unwrap();
}

async fn query(s: &QueryEmulation, prefix: &str, text: &str) -> Result<QueryResponse, StoreError> {
    s.query(QueryRequest {
        query: text.into(),
        metadata: Metadata::new(),
        key_prefix: prefix.into(),
    })
    .await
}

fn keys(r: &QueryResponse) -> Vec<&str> {
    r.results.iter().map(|i| i.key.as_str()).collect()
}

#[tokio::test]
async fn only_the_apps_live_matching_items_in_order_with_etags() {
    let (q, store, clock) = setup(100);
    for i in 0..5 {
        put(
            &q,
            &format!("a||k{i}"),
            format!(r#"{{"n":{i},"c":"x"}}"#),
            None,
        )
        .await;
    }
    put(&q, "b||k9", r#"{"n":1,"c":"x"}"#.into(), None).await;
    put(&q, "a||raw", "not json".into(), None).await;
    put(
        &q,
        "a||soon",
        r#"{"n":2,"c":"x"}"#.into(),
        Some(Ttl::Seconds(5)),
    )
    .await;
    let text = r#"{"filter":{"EQ":{"c":"x"}},"sort":[{"key":"n","order":"DESC"}]}"#;
    let r = query(&q, "a||", text).await.unwrap();
    assert_eq!(
        keys(&r),
        ["a||k4", "a||k3", "a||k2", "a||soon", "a||k1", "a||k0"]
    );
    assert!(r.results.iter().all(|i| i.etag.is_some()));
    assert_eq!(r.token, None);
    clock.0.fetch_add(6_000, Ordering::SeqCst);
    let r = query(&q, "a||", text).await.unwrap();
    assert_eq!(keys(&r), ["a||k4", "a||k3", "a||k2", "a||k1", "a||k0"]);
    // Without a filter, a value that is not JSON is listed (last under a sort).
    let all = query(&q, "a||", r#"{"sort":[{"key":"n"}]}"#).await.unwrap();
    assert_eq!(keys(&all).last(), Some(&"a||raw"));
    assert_eq!(&all.results.last().unwrap().data[..], b"not json");
    assert!(store.len() >= 7);
}

#[tokio::test]
async fn pages_over_many_batches_resume_after_their_token() {
    let (q, _, _) = setup(10_000);
    let n = KEY_PAGE + QUERY_BATCH + 7;
    for i in 0..n {
        put(
            &q,
            &format!("a||{i:05}"),
            format!(r#"{{"g":{}}}"#, i % 3),
            None,
        )
        .await;
    }
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = match &token {
            None => r#"{"sort":[{"key":"g"}],"page":{"limit":100}}"#.to_owned(),
            Some(t) => {
                format!(r#"{{"sort":[{{"key":"g"}}],"page":{{"limit":100,"token":"{t}"}}}}"#)
            }
        };
        let r = query(&q, "a||", &page).await.unwrap();
        assert!(r.results.len() <= 100);
        seen.extend(r.results.into_iter().map(|i| i.key));
        token = r.token;
        if token.is_none() {
            break;
        }
    }
    let mut want: Vec<String> = (0..n).map(|i| format!("a||{i:05}")).collect();
    want.sort_by_key(|k| (k[3..].parse::<usize>().unwrap() % 3, k.clone()));
    assert_eq!(seen, want);
}

#[tokio::test]
async fn a_query_over_the_scan_limit_fails_naming_it() {
    let (q, _, _) = setup(10);
    for i in 0..11 {
        put(&q, &format!("a||{i}"), "{}".into(), None).await;
    }
    put(&q, "b||0", "{}".into(), None).await;
    let e = query(&q, "a||", r#"{"page":{"limit":1}}"#)
        .await
        .unwrap_err();
    match e {
        StoreError::InvalidQuery(m) => {
            assert!(m.contains("limits.maxQueryScan") && m.contains("10"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    // Another app's keys do not count against it.
    q.delete(DeleteRequest {
        key: "a||0".into(),
        etag: None,
        options: StateOptions::default(),
        metadata: Metadata::new(),
    })
    .await
    .unwrap();
    assert_eq!(query(&q, "a||", "{}").await.unwrap().results.len(), 10);
}

#[tokio::test]
async fn malformed_queries_and_foreign_tokens_are_invalid() {
    let (q, _, _) = setup(10);
    for text in [
        r#"{"filter":{"LIKE":{"a":1}}}"#,
        r#"{"page":{"token":"4"}}"#,
        "[",
    ] {
        let e = query(&q, "a||", text).await.unwrap_err();
        assert!(
            matches!(&e, StoreError::InvalidQuery(m) if m.starts_with("failed to parse JSON query body")),
            "{text}: {e:?}"
        );
    }
}

/// A store whose listing gives every key twice (as Redis SCAN may).
struct Repeating(Arc<InMemoryStore>);

#[async_trait]
impl StateStore for Repeating {
    async fn get(&self, req: GetRequest) -> Result<Option<StateEntry>, StoreError> {
        self.0.get(req).await
    }
    async fn set(&self, req: SetRequest) -> Result<(), StoreError> {
        self.0.set(req).await
    }
    async fn delete(&self, req: DeleteRequest) -> Result<(), StoreError> {
        self.0.delete(req).await
    }
    async fn list_keys_with_prefix(
        &self,
        prefix: &str,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<KeyPage, StoreError> {
        let mut page = self.0.list_keys_with_prefix(prefix, cursor, limit).await?;
        page.keys.extend(page.keys.clone());
        Ok(page)
    }
}

#[tokio::test]
async fn a_key_listed_twice_is_returned_and_counted_once() {
    let (_, store, _) = setup(3);
    let q = QueryEmulation::new(Arc::new(Repeating(store)), limits(3));
    for i in 0..3 {
        put(&q, &format!("a||{i}"), "{}".into(), None).await;
    }
    let r = query(&q, "a||", "{}").await.unwrap();
    assert_eq!(keys(&r), ["a||0", "a||1", "a||2"]);
}

/// A store whose listing never ends in time.
struct Stalled;

#[async_trait]
impl StateStore for Stalled {
    async fn get(&self, _: GetRequest) -> Result<Option<StateEntry>, StoreError> {
        Ok(None)
    }
    async fn set(&self, _: SetRequest) -> Result<(), StoreError> {
        Ok(())
    }
    async fn delete(&self, _: DeleteRequest) -> Result<(), StoreError> {
        Ok(())
    }
    async fn list_keys_with_prefix(
        &self,
        _: &str,
        _: Option<String>,
        _: usize,
    ) -> Result<KeyPage, StoreError> {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok(KeyPage::default())
    }
}

#[tokio::test(start_paused = true)]
async fn a_scan_stops_at_the_request_deadline() {
    let limits = QueryLimits {
        max_scan: 10,
        timeout: Duration::from_secs(5),
    };
    let q = QueryEmulation::new(Arc::new(Stalled), limits);
    let started = tokio::time::Instant::now();
    let e = query(&q, "a||", "{}").await.unwrap_err();
    assert_eq!(e, StoreError::Timeout(Duration::from_secs(5)));
    assert_eq!(started.elapsed(), Duration::from_secs(5));
}

#[tokio::test]
async fn a_large_batch_is_filtered_off_the_serving_thread_with_the_same_answer() {
    let (q, _, _) = setup(100);
    let pad = "x".repeat(100 * 1024);
    for i in 0..4 {
        put(
            &q,
            &format!("a||{i}"),
            format!(r#"{{"n":{i},"pad":"{pad}"}}"#),
            None,
        )
        .await;
    }
    let r = query(
        &q,
        "a||",
        r#"{"filter":{"GTE":{"n":2}},"sort":[{"key":"n","order":"DESC"}]}"#,
    )
    .await
    .unwrap();
    assert_eq!(keys(&r), ["a||3", "a||2"]);
    assert_eq!(r.results[0].data.len(), 100 * 1024 + 16);
}
