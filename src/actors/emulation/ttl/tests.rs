//! Emulated TTL over the in-memory backend (which has compare-and-set and lists keys), with a
//! manual clock: no sleeping.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::*;
use crate::actors::backends::in_memory::InMemoryStore;
use crate::model::{Consistency, Metadata, Ttl};

struct ManualClock(AtomicU64);

impl ManualClock {
    fn advance(&self, secs: u64) {
        self.0.fetch_add(secs * 1000, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.0.load(Ordering::SeqCst))
    }
}

/// The in-memory store, whose guarded delete first lets a concurrent writer rewrite the key
/// (once), to stage the race between the sweep's read and its delete.
struct Racing {
    store: Arc<InMemoryStore>,
    rewrite_before_guarded_delete: AtomicBool,
}

#[async_trait]
impl StateStore for Racing {
    async fn get(&self, req: GetRequest) -> Result<Option<StateEntry>, StoreError> {
        self.store.get(req).await
    }
    async fn set(&self, req: SetRequest) -> Result<(), StoreError> {
        self.store.set(req).await
    }
    async fn delete(&self, req: DeleteRequest) -> Result<(), StoreError> {
        if req.etag.is_some()
            && self
                .rewrite_before_guarded_delete
                .swap(false, Ordering::SeqCst)
        {
            let rewrite = set_req(&req.key, b"\"new\"", None);
            let rewrite = SetRequest {
                value: Envelope::encode(&rewrite.value, None),
                ..rewrite
            };
            self.store.set(rewrite).await?;
        }
        self.store.delete(req).await
    }
    async fn list_keys(&self, cursor: Option<String>, limit: usize) -> Result<KeyPage, StoreError> {
        self.store.list_keys(cursor, limit).await
    }
}

fn setup() -> (TtlEmulation, Arc<Racing>, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock(AtomicU64::new(1_700_000_000_000)));
    // The backend's own clock never moves: only the emulation may expire anything.
    let frozen = Arc::new(ManualClock(AtomicU64::new(1_700_000_000_000)));
    let racing = Arc::new(Racing {
        store: Arc::new(InMemoryStore::new(frozen, Duration::from_secs(3600))),
        rewrite_before_guarded_delete: AtomicBool::new(false),
    });
    let emu = TtlEmulation::new(racing.clone(), clock.clone(), Duration::from_secs(1));
    (emu, racing, clock)
}

fn set_req(key: &str, value: &'static [u8], ttl: Option<Ttl>) -> SetRequest {
    SetRequest {
        key: key.into(),
        value: Bytes::from_static(value),
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

fn del(key: &str, etag: Option<String>) -> DeleteRequest {
    DeleteRequest {
        key: key.into(),
        etag,
        options: StateOptions::default(),
        metadata: Metadata::new(),
    }
}

#[test]
fn envelope_round_trips_and_plain_bytes_have_no_expiry() {
    let t = UNIX_EPOCH + Duration::from_millis(1_700_000_010_000);
    let enc = Envelope::encode(b"{\"a\":1}", Some(t));
    assert_eq!(&enc[..], b"\0mecha-ttl/1 1700000010000\n{\"a\":1}");
    let dec = Envelope::decode(&enc).unwrap();
    assert_eq!(dec.expires_at, Some(t));
    assert_eq!(&dec.value[..], b"{\"a\":1}");
    assert_eq!(&Envelope::encode(b"x", None)[..], b"\0mecha-ttl/1 -\nx");
    let plain = Envelope::decode(&Bytes::from_static(b"\"legacy\"")).unwrap();
    assert_eq!(
        (plain.expires_at, &plain.value[..]),
        (None, &b"\"legacy\""[..])
    );
    assert!(Envelope::decode(&Bytes::from_static(b"\0mecha-ttl/1 soon\nx")).is_err());
}

#[tokio::test]
async fn expired_items_are_never_returned_and_report_their_expiry_while_live() {
    let (s, _, clock) = setup();
    s.set(set_req("a", b"1", Some(Ttl::Seconds(10))))
        .await
        .unwrap();
    s.set(set_req("b", b"2", None)).await.unwrap();
    let a = s.get(get("a")).await.unwrap().unwrap();
    assert_eq!(&a.data[..], b"1");
    assert_eq!(a.metadata[TTL_EXPIRE_TIME], "2023-11-14T22:13:30Z");
    assert!(a.etag.is_some());
    assert!(s.get(get("b")).await.unwrap().unwrap().metadata.is_empty());
    clock.advance(10);
    assert_eq!(s.get(get("a")).await.unwrap(), None);
    let bulk = s.bulk_get(vec![get("a"), get("b")], 4).await;
    assert_eq!(bulk[0], Ok(None));
    assert_eq!(&bulk[1].as_ref().unwrap().as_ref().unwrap().data[..], b"2");
}

#[tokio::test]
async fn expired_items_count_as_absent_for_etag_and_first_write() {
    let (s, _, clock) = setup();
    s.set(set_req("k", b"1", Some(Ttl::Seconds(5))))
        .await
        .unwrap();
    let etag = s.get(get("k")).await.unwrap().unwrap().etag;
    // While live: first-write fails, the ETag works.
    let mut fw = set_req("k", b"2", None);
    fw.options.concurrency = Concurrency::FirstWrite;
    assert!(s.set(fw.clone()).await.unwrap_err().is_etag());
    clock.advance(5);
    // Expired: its ETag is a mismatch for writes and deletes...
    let mut guarded = set_req("k", b"3", None);
    guarded.etag = etag.clone();
    assert!(matches!(
        s.set(guarded).await,
        Err(StoreError::EtagMismatch(_))
    ));
    assert!(matches!(
        s.delete(del("k", etag)).await,
        Err(StoreError::EtagMismatch(_))
    ));
    // ...and first-write succeeds, once.
    s.set(fw.clone()).await.unwrap();
    assert_eq!(&s.get(get("k")).await.unwrap().unwrap().data[..], b"2");
    assert!(s.set(fw).await.unwrap_err().is_etag());
}

#[tokio::test]
async fn a_write_without_ttl_clears_the_expiry() {
    let (s, _, clock) = setup();
    s.set(set_req("k", b"1", Some(Ttl::Seconds(5))))
        .await
        .unwrap();
    s.set(set_req("k", b"2", None)).await.unwrap();
    clock.advance(60);
    let e = s.get(get("k")).await.unwrap().unwrap();
    assert_eq!(&e.data[..], b"2");
    assert!(e.metadata.is_empty());
}

#[tokio::test]
async fn the_sweep_deletes_expired_items_only() {
    let (s, racing, clock) = setup();
    for i in 0..2400 {
        let ttl = (i % 2 == 0).then_some(Ttl::Seconds(1));
        s.set(set_req(&format!("k{i:04}"), b"1", ttl))
            .await
            .unwrap();
    }
    assert_eq!(s.sweep().await.unwrap(), 0, "nothing has expired yet");
    clock.advance(1);
    // Several pages.
    assert_eq!(s.sweep().await.unwrap(), 1200);
    assert_eq!(racing.store.len(), 1200);
    assert!(s.get(get("k0001")).await.unwrap().is_some());
}

#[tokio::test]
async fn the_sweep_never_deletes_a_rewrite() {
    let (s, racing, clock) = setup();
    s.set(set_req("k", b"\"old\"", Some(Ttl::Seconds(1))))
        .await
        .unwrap();
    clock.advance(2);
    // The sweep reads the expired item; before its guarded delete, a writer rewrites the key.
    racing
        .rewrite_before_guarded_delete
        .store(true, Ordering::SeqCst);
    assert_eq!(s.sweep().await.unwrap(), 0);
    let e = s
        .get(get("k"))
        .await
        .unwrap()
        .expect("the rewrite survives the sweep");
    assert_eq!(&e.data[..], b"\"new\"");
}
