//! Backend tests: the key encoding and metadata validation in isolation, and the store against
//! a real nats-server with JetStream (`NATS_URL`, default `nats://127.0.0.1:4222`). The
//! server tests fail, never skip, when NATS is unreachable: `scripts/test.sh` starts one.
//! Each test works on a bucket of its own, deleted when the test ends.

use std::collections::HashMap;
use std::time::Instant;

use proptest::prelude::*;

use super::*;
use crate::model::{Consistency, StateOptions};

fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

fn config(extra: &[(&str, &str)]) -> ComponentConfig {
    let mut metadata: HashMap<String, String> = extra
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    metadata.entry("natsURL".into()).or_insert_with(nats_url);
    metadata
        .entry("bucket".into())
        .or_insert_with(|| "unused".into());
    ComponentConfig {
        name: "js-test".into(),
        component_type: "state.jetstream".into(),
        version: "v1".into(),
        metadata,
    }
}

/// A bucket name unique to one test.
fn bucket() -> String {
    format!("mecha-unit-{:016x}", rand::random::<u64>())
}

/// Deletes the test's bucket when dropped (pass or panic).
struct Bucket(String);

impl Drop for Bucket {
    fn drop(&mut self) {
        let name = self.0.clone();
        // Called inside the test's runtime: use a runtime of our own on another thread.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let client = async_nats::connect(nats_url()).await.ok()?;
                jetstream::new(client).delete_key_value(&name).await.ok()
            })
        })
        .join();
    }
}

/// A store on a fresh bucket of the test NATS.
async fn store(extra: &[(&str, &str)]) -> (Arc<dyn StateStore>, Bucket) {
    let name = bucket();
    let mut all = vec![("bucket", name.as_str())];
    all.extend_from_slice(extra);
    let store = build(&config(&all)).unwrap().create().unwrap();
    if let Err(e) = store.ping().await {
        panic!(
            "NATS at {} is unreachable ({e}); run scripts/test.sh, which starts one",
            nats_url()
        );
    }
    (store, Bucket(name))
}

/// A raw handle on the test's bucket, to look under the store.
async fn raw(b: &Bucket) -> kv::Store {
    let client = async_nats::connect(nats_url()).await.unwrap();
    jetstream::new(client).get_key_value(&b.0).await.unwrap()
}

fn get(key: &str) -> GetRequest {
    GetRequest {
        key: key.into(),
        consistency: Consistency::Unspecified,
        metadata: Metadata::new(),
    }
}

fn set(key: &str, value: &str) -> SetRequest {
    SetRequest {
        key: key.into(),
        value: bytes::Bytes::copy_from_slice(value.as_bytes()),
        etag: None,
        options: StateOptions::default(),
        ttl: None,
        metadata: Metadata::new(),
    }
}

fn guarded(key: &str, value: &str, etag: &str) -> SetRequest {
    SetRequest {
        etag: Some(etag.into()),
        ..set(key, value)
    }
}

fn first_write(key: &str, value: &str) -> SetRequest {
    let mut r = set(key, value);
    r.options.concurrency = Concurrency::FirstWrite;
    r
}

fn del(key: &str, etag: Option<&str>) -> DeleteRequest {
    DeleteRequest {
        key: key.into(),
        etag: etag.map(str::to_owned),
        options: StateOptions::default(),
        metadata: Metadata::new(),
    }
}

async fn read(s: &Arc<dyn StateStore>, key: &str) -> Option<(String, String)> {
    s.get(get(key)).await.unwrap().map(|e| {
        (
            String::from_utf8(e.data.to_vec()).unwrap(),
            e.etag.expect("every read has an etag"),
        )
    })
}

// === key encoding ===

#[test]
fn keys_encode_readably_and_reversibly() {
    let cases = [
        ("myapp||order-1", "myapp.order-1"),
        ("myapp||order_1", "myapp.order_5F1"),
        ("app||a b", "app.a_20b"),
        ("app||a.b", "app.a_2Eb"),
        ("app||é", "app._C3_A9"),
        ("app||x|y", "app.x_7Cy"),
        ("||x", "_7C_7Cx"),
        ("x||", "x_7C_7C"),
        ("a||||b", "a._7C_7Cb"),
        ("a|||b", "a._7Cb"),
        ("a/b=c", "a/b=c"),
    ];
    for (key, stored) in cases {
        assert_eq!(encode_key(key).as_deref(), Some(stored), "{key}");
        assert_eq!(decode_key(stored).as_deref(), Some(key), "{stored}");
    }
    assert_eq!(encode_key(""), None);
}

#[test]
fn foreign_or_non_canonical_keys_do_not_decode() {
    for stored in [
        "a_7c", "a_", "a_4", "a.", ".a", "a..b", "a*b", "a_5Z", "_FF",
    ] {
        assert_eq!(decode_key(stored), None, "{stored}");
    }
}

/// NATS KV's own rule for keys, restated.
fn valid_nats_key(k: &str) -> bool {
    !k.is_empty()
        && !k.starts_with('.')
        && !k.ends_with('.')
        && !k.contains("..")
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-/_=.".contains(&b))
}

proptest! {
    #[test]
    fn every_key_round_trips_into_a_valid_nats_key(key in "\\PC{1,40}|[|a_.]{1,12}") {
        let enc = encode_key(&key).unwrap();
        prop_assert!(valid_nats_key(&enc), "{enc}");
        prop_assert_eq!(decode_key(&enc), Some(key));
    }
}

#[test]
fn server_versions_compare() {
    assert!(!version_at_least("2.9.10", 2, 11));
    assert!(version_at_least("2.11.0", 2, 11));
    assert!(version_at_least("v2.12.1-RC.2", 2, 11));
    assert!(version_at_least("3.0.0", 2, 11));
    assert!(!version_at_least("garbage", 2, 11));
}

// === metadata ===

#[test]
fn bad_metadata_is_refused_at_load() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("natsURL", " ")], "natsURL must not be empty"),
        (&[("natsURL", "nats://a:b:c:4222")], "natsURL entry 1"),
        (&[("bucket", "has.dot")], "not a valid KV bucket name"),
        (&[("bucket", "")], "not a valid KV bucket name"),
        (&[("jwt", "eyJ")], "missing seedKey"),
        (&[("seedKey", "SUAX")], "missing jwt"),
        (
            &[("jwt", "eyJ"), ("seedKey", "not-a-seed")],
            "not a valid user nkey seed",
        ),
        (&[("credsFile", "/nonexistent/x.creds")], "credsFile"),
        (
            &[("requestTimeout", "0s")],
            "requestTimeout must be greater",
        ),
        (
            &[("bucket", &"b".repeat(1000)), ("maxKeyLength", "3072")],
            "exceeds",
        ),
    ];
    for (meta, want) in cases {
        let err = match build(&config(meta)) {
            Ok(_) => panic!("{meta:?} was accepted"),
            Err(e) => e,
        };
        assert!(err.contains(want), "{meta:?}: {err}");
    }
    // The schema bounds the integers (component loading checks them before `build`).
    let history = DESCRIPTOR.field("history").unwrap();
    assert!(history.validate("0").is_err() && history.validate("65").is_err());
    assert!(DESCRIPTOR.field("replicas").unwrap().validate("6").is_err());
    assert!(DESCRIPTOR.field("natsurl").unwrap().sensitive);
}

#[test]
fn valid_credentials_and_server_lists_load() {
    // A syntactically valid user seed (from the nkeys documentation's format: 'SU' prefix).
    let kp_seed = "SUAMLK2ZNL35WSMW37E7UD4VZ7ELPKW7DHC3BWBSD2GCZ7IUQQXZIORRBU";
    let f = build(&config(&[
        (
            "natsURL",
            "nats://127.0.0.1:4222, nats://user:pw@127.0.0.1:4223",
        ),
        ("jwt", "eyJhbGciOiJlZDI1NTE5In0.e30.x"),
        ("seedKey", kp_seed),
    ]));
    assert!(f.is_ok(), "{:?}", f.err());
}

// === against the real server ===

#[tokio::test]
async fn factory_does_not_connect_and_unreachable_server_is_unavailable_fast() {
    // Nothing listens on port 1.
    let f = build(&config(&[("natsURL", "nats://127.0.0.1:1")])).unwrap();
    let s = f.create().unwrap();
    let started = Instant::now();
    let e = s.get(get("k")).await.unwrap_err();
    // The connect failed: nothing was sent, so even a write could be retried.
    assert!(matches!(e, StoreError::NotSent(_)), "{e:?}");
    // A second call within reconnectWait fails at once with the remembered error.
    let e2 = s.set(set("k", "v")).await.unwrap_err();
    assert!(matches!(e2, StoreError::NotSent(_)), "{e2:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(s.ping().await.is_err());
}

#[tokio::test]
async fn values_round_trip_with_revision_etags() {
    let (s, b) = store(&[]).await;
    assert_eq!(read(&s, "app||missing").await, None);
    s.set(set("app||k", "\"v1\"")).await.unwrap();
    let (v, e1) = read(&s, "app||k").await.unwrap();
    assert_eq!(v, "\"v1\"");
    let raw = raw(&b).await;
    let entry = raw.entry("app.k").await.unwrap().unwrap();
    assert_eq!(
        entry.revision.to_string(),
        e1,
        "the etag is the KV revision"
    );
    s.set(guarded("app||k", "v2", &e1)).await.unwrap();
    let (v, e2) = read(&s, "app||k").await.unwrap();
    assert_eq!(v, "v2");
    assert_ne!(e1, e2);
    // A stale, a zero and a never-issued revision are mismatches; garbage is invalid.
    for bad in [e1.as_str(), "0", "999999999"] {
        let r = s.set(guarded("app||k", "x", bad)).await;
        assert!(
            matches!(r, Err(StoreError::EtagMismatch(_))),
            "{bad}: {r:?}"
        );
    }
    let r = s.set(guarded("app||k", "x", "abc")).await;
    assert!(matches!(r, Err(StoreError::EtagInvalid(_))), "{r:?}");
    // An ETag on a missing key is a mismatch and creates nothing.
    let r = s.set(guarded("app||nope", "x", &e2)).await;
    assert!(matches!(r, Err(StoreError::EtagMismatch(_))), "{r:?}");
    assert_eq!(read(&s, "app||nope").await, None);
    assert_eq!(read(&s, "app||k").await.unwrap().0, "v2");
    // Binary and empty values are stored as they are.
    let mut bin = set("app||bin", "");
    bin.value = bytes::Bytes::from_static(&[0, 159, 255]);
    s.set(bin).await.unwrap();
    assert_eq!(
        &s.get(get("app||bin")).await.unwrap().unwrap().data[..],
        &[0, 159, 255]
    );
}

#[tokio::test]
async fn first_write_creates_only_and_works_over_deleted_keys() {
    let (s, _b) = store(&[]).await;
    s.set(first_write("a||k", "1")).await.unwrap();
    let r = s.set(first_write("a||k", "2")).await;
    assert!(matches!(r, Err(StoreError::EtagMismatch(_))), "{r:?}");
    assert_eq!(read(&s, "a||k").await.unwrap().0, "1");
    // After a delete (a purge marker is the key's last entry) a create succeeds again.
    s.delete(del("a||k", None)).await.unwrap();
    assert_eq!(read(&s, "a||k").await, None);
    s.set(first_write("a||k", "3")).await.unwrap();
    assert_eq!(read(&s, "a||k").await.unwrap().0, "3");
    // With an ETag, first-write is a plain ETag check.
    let (_, e) = read(&s, "a||k").await.unwrap();
    s.set({
        let mut r = first_write("a||k", "4");
        r.etag = Some(e.clone());
        r
    })
    .await
    .unwrap();
    let r = s
        .set({
            let mut r = first_write("a||k", "5");
            r.etag = Some(e);
            r
        })
        .await;
    assert!(matches!(r, Err(StoreError::EtagMismatch(_))), "{r:?}");
}

#[tokio::test]
async fn deletes_are_guarded_and_missing_keys_write_nothing() {
    let (s, b) = store(&[]).await;
    s.set(set("a||k", "1")).await.unwrap();
    let (_, e) = read(&s, "a||k").await.unwrap();
    let r = s.delete(del("a||k", Some("999999"))).await;
    assert!(matches!(r, Err(StoreError::EtagMismatch(_))), "{r:?}");
    let r = s.delete(del("a||k", Some("0"))).await;
    assert!(matches!(r, Err(StoreError::EtagMismatch(_))), "{r:?}");
    let r = s.delete(del("a||k", Some("x"))).await;
    assert!(matches!(r, Err(StoreError::EtagInvalid(_))), "{r:?}");
    assert!(read(&s, "a||k").await.is_some());
    s.delete(del("a||k", Some(&e))).await.unwrap();
    assert_eq!(read(&s, "a||k").await, None);
    // Deleting again, with or without the old ETag.
    let r = s.delete(del("a||k", Some(&e))).await;
    assert!(matches!(r, Err(StoreError::EtagMismatch(_))), "{r:?}");
    s.delete(del("a||k", None)).await.unwrap();
    // A delete of a key that never existed leaves no marker behind.
    s.delete(del("a||never", None)).await.unwrap();
    let raw = raw(&b).await;
    assert!(raw.entry("a.never").await.unwrap().is_none());
    // The delete purged the key's history: only the purge marker is left.
    let last = raw.entry("a.k").await.unwrap().unwrap();
    assert_eq!(last.operation, Operation::Purge);
}

#[tokio::test]
async fn ttl_is_refused_but_no_expiry_is_accepted() {
    let (s, _b) = store(&[]).await;
    let mut r = set("a||t", "1");
    r.ttl = Some(Ttl::Seconds(5));
    assert_eq!(
        s.set(r).await,
        Err(StoreError::Unsupported(Capability::Ttl))
    );
    assert_eq!(read(&s, "a||t").await, None, "nothing written");
    let mut r = set("a||t", "1");
    r.ttl = Some(Ttl::Never);
    s.set(r).await.unwrap();
    assert!(read(&s, "a||t").await.is_some());
    assert!(!DESCRIPTOR.capabilities.has(Capability::Ttl));
    assert_eq!(
        s.transact(Default::default()).await,
        Err(StoreError::Unsupported(Capability::Transactional))
    );
}

#[tokio::test]
async fn unusual_keys_are_stored_encoded() {
    let (s, b) = store(&[]).await;
    let keys = [
        "app||a b",
        "app||ключ",
        "app||x:y*z?>",
        "app||.dot.",
        "app||_",
        "app||||",
    ];
    for (i, k) in keys.iter().enumerate() {
        s.set(set(k, &i.to_string())).await.unwrap();
    }
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(read(&s, k).await.unwrap().0, i.to_string(), "{k}");
    }
    let raw = raw(&b).await;
    assert!(raw.get("app.a_20b").await.unwrap().is_some());
}

#[tokio::test]
async fn long_keys_are_refused_before_sending() {
    let (s, _b) = store(&[("maxKeyLength", "64")]).await;
    s.set(set(&format!("a||{}", "k".repeat(62)), "1"))
        .await
        .unwrap();
    let r = s.set(set(&format!("a||{}", "k".repeat(63)), "1")).await;
    assert!(
        matches!(&r, Err(StoreError::InvalidRequest(m)) if m.contains("maxKeyLength")),
        "{r:?}"
    );
    // Escapes count: 22 spaces are 66 encoded bytes.
    let r = s.get(get(&format!("a||{}", " ".repeat(22)))).await;
    assert!(matches!(r, Err(StoreError::InvalidRequest(_))), "{r:?}");
}

#[tokio::test]
async fn oversized_values_get_a_clear_error() {
    let (s, _b) = store(&[]).await;
    let mut r = set("a||big", "");
    r.value = bytes::Bytes::from(vec![b'x'; 2 * 1024 * 1024]);
    let e = s.set(r).await.unwrap_err();
    assert!(
        matches!(&e, StoreError::InvalidRequest(m) if m.contains("max_payload")),
        "{e:?}"
    );
}

#[tokio::test]
async fn bucket_is_created_with_history_and_replicas_or_refused() {
    let (s, b) = store(&[("history", "5")]).await;
    s.set(set("a||k", "1")).await.unwrap();
    let raw = raw(&b).await;
    let mut stream = raw.stream.clone();
    let info = stream.info().await.unwrap();
    assert_eq!(info.config.max_messages_per_subject, 5);
    assert_eq!(info.config.num_replicas, 1);

    let name = bucket();
    let s = build(&config(&[("bucket", &name), ("createBucket", "false")]))
        .unwrap()
        .create()
        .unwrap();
    let e = s.ping().await.unwrap_err();
    assert!(
        matches!(&e, StoreError::Unavailable(m) if m.contains(&name)),
        "{e:?}"
    );
}

#[tokio::test]
async fn list_keys_pages_through_decoded_live_keys() {
    let (s, b) = store(&[]).await;
    assert_eq!(s.list_keys(None, 5).await.unwrap(), KeyPage::default());
    let mut want: Vec<String> = (0..23).map(|i| format!("app||k {i:02}")).collect();
    for k in &want {
        s.set(set(k, "v")).await.unwrap();
    }
    s.set(set("app||gone", "v")).await.unwrap();
    s.delete(del("app||gone", None)).await.unwrap();
    // A key Mecha did not write (not canonical) is left out.
    raw(&b).await.put("foreign_x", "v".into()).await.unwrap();
    let mut got = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = s.list_keys(cursor, 5).await.unwrap();
        assert!(page.keys.len() <= 5);
        pages += 1;
        got.extend(page.keys);
        match page.next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    assert_eq!(pages, 5);
    want.sort_by_key(|k| encode_key(k).unwrap());
    assert_eq!(got, want);
    // An exact fit ends without an extra empty page.
    let all = s.list_keys(None, 23).await.unwrap();
    assert_eq!((all.keys.len(), all.next), (23, None));
}

/// Many writers race with the same ETag, round after round: each revision has exactly one
/// winner, and the value is the winner's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_etag_updates_have_one_winner_per_revision() {
    let (s, _b) = store(&[]).await;
    s.set(set("a||race", "start")).await.unwrap();
    for round in 0..10 {
        let (_, etag) = read(&s, "a||race").await.unwrap();
        let mut joins = Vec::new();
        for w in 0..24 {
            let s = s.clone();
            let r = guarded("a||race", &format!("r{round}w{w}"), &etag);
            joins.push(tokio::spawn(async move { (w, s.set(r).await) }));
        }
        let mut winners = Vec::new();
        for j in joins {
            match j.await.unwrap() {
                (w, Ok(())) => winners.push(w),
                (_, Err(StoreError::EtagMismatch(_))) => {}
                (_, Err(e)) => panic!("round {round}: {e}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
        let (v, e2) = read(&s, "a||race").await.unwrap();
        assert_eq!(v, format!("r{round}w{}", winners[0]));
        assert_ne!(e2, etag);
    }
    // Racing creates: one winner too.
    let mut joins = Vec::new();
    for w in 0..16 {
        let s = s.clone();
        joins.push(tokio::spawn(async move {
            s.set(first_write("a||once", &w.to_string())).await
        }));
    }
    let mut ok = 0;
    for j in joins {
        match j.await.unwrap() {
            Ok(()) => ok += 1,
            Err(StoreError::EtagMismatch(_)) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(ok, 1);
}

#[tokio::test]
async fn a_bucket_deleted_underneath_is_created_again() {
    let (s, b) = store(&[("requestTimeout", "500ms")]).await;
    s.set(set("a||k", "1")).await.unwrap();
    let client = async_nats::connect(nats_url()).await.unwrap();
    jetstream::new(client).delete_key_value(&b.0).await.unwrap();
    // A read of a deleted bucket gets no answer: it times out, and a background check
    // makes the next call reopen (and re-create) the bucket.
    let e = s.get(get("a||k")).await.unwrap_err();
    assert!(matches!(e, StoreError::Timeout(_)), "{e:?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match s.get(get("a||k")).await {
            Ok(v) => {
                assert_eq!(v, None, "re-created empty");
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "not reopened: {e:?}"),
        }
    }
    jetstream::new(async_nats::connect(nats_url()).await.unwrap())
        .delete_key_value(&b.0)
        .await
        .unwrap();
    let e = s.set(set("a||k", "2")).await.unwrap_err();
    assert!(
        matches!(&e, StoreError::Unavailable(m) if m.contains("no longer exists")),
        "{e:?}"
    );
    // The next call reopens (and re-creates) the bucket.
    s.set(set("a||k", "3")).await.unwrap();
    assert_eq!(read(&s, "a||k").await.unwrap().0, "3");
}

/// A private nats-server that the test stops and starts again.
struct PrivateServer {
    child: std::process::Child,
    port: u16,
    monitor: u16,
    dir: Option<tempfile::TempDir>,
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl PrivateServer {
    fn start(port: u16, dir: tempfile::TempDir) -> PrivateServer {
        let monitor = free_port();
        let child = std::process::Command::new("nats-server")
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-m",
                &monitor.to_string(),
            ])
            .args(["-js", "-sd"])
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nats-server on PATH (scripts/test.sh installs it)");
        PrivateServer {
            child,
            port,
            monitor,
            dir: Some(dir),
        }
    }

    fn stop(mut self) -> (u16, tempfile::TempDir) {
        let dir = self.dir.take().expect("data directory");
        (self.port, dir)
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_loss_is_unavailable_and_the_store_recovers() {
    let server = PrivateServer::start(free_port(), tempfile::tempdir().unwrap());
    let url = format!("nats://127.0.0.1:{}", server.port);
    let s = build(&config(&[
        ("natsURL", &url),
        ("bucket", "recover"),
        ("name", "mecha-js-conn-name"),
    ]))
    .unwrap()
    .create()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Err(e) = s.set(set("a||k", "1")).await {
        assert!(
            Instant::now() < deadline,
            "private server did not come up: {e}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The connection carries the configured name (daprd's `name` is the connection name).
    let connz = reqwest::get(format!("http://127.0.0.1:{}/connz", server.monitor))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(connz.contains("\"mecha-js-conn-name\""), "{connz}");
    let (port, dir) = server.stop();
    // Within the request timeout every call fails as unavailable or timed out, never hangs.
    let started = Instant::now();
    let e = s.get(get("a||k")).await.unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::Unavailable(_) | StoreError::NotSent(_) | StoreError::Timeout(_)
        ),
        "{e:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    // The same data directory comes back: the client reconnects and the data is there.
    let server = PrivateServer::start(port, dir);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match s.get(get("a||k")).await {
            Ok(Some(e)) => {
                assert_eq!(&e.data[..], b"1");
                break;
            }
            other => {
                assert!(Instant::now() < deadline, "no recovery: {other:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    drop(server.stop());
}

/// Sends a signal to a process with the `kill` command.
fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

/// Waits until every thread of `pid` is in the stopped state (`T` in `/proc`).
fn wait_stopped(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let states: Vec<char> = std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("stat")).ok())
            .filter_map(|stat| stat.rsplit_once(") ")?.1.chars().next())
            .collect();
        if !states.is_empty() && states.iter().all(|c| matches!(c, 'T' | 't')) {
            return;
        }
        assert!(Instant::now() < deadline, "{pid} did not stop: {states:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_server_times_out_within_the_request_timeout() {
    let server = PrivateServer::start(free_port(), tempfile::tempdir().unwrap());
    let url = format!("nats://127.0.0.1:{}", server.port);
    let s = build(&config(&[
        ("natsURL", &url),
        ("bucket", "frozen"),
        ("requestTimeout", "500ms"),
    ]))
    .unwrap()
    .create()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Err(e) = s.set(set("a||k", "1")).await {
        assert!(
            Instant::now() < deadline,
            "private server did not come up: {e}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pid = server.child.id();
    signal(pid, "-STOP");
    // `kill` returns before every thread has stopped: a thread running on another core may
    // still answer a request. Wait until each thread is seen stopped.
    wait_stopped(pid);
    let started = Instant::now();
    let r = s.get(get("a||k")).await;
    let w = s.set(set("a||k", "2")).await;
    signal(pid, "-CONT");
    assert!(
        matches!(r, Err(StoreError::Timeout(_) | StoreError::Unavailable(_))),
        "{r:?}"
    );
    assert!(
        matches!(w, Err(StoreError::Timeout(_) | StoreError::Unavailable(_))),
        "{w:?}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "two calls took {:?}",
        started.elapsed()
    );
    // Thawed, the server answers again on the same connection.
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.get(get("a||k")).await.is_err() {
        assert!(Instant::now() < deadline, "no recovery after SIGCONT");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shards_share_one_connection_opened_once() {
    let server = PrivateServer::start(free_port(), tempfile::tempdir().unwrap());
    let url = format!("nats://127.0.0.1:{}", server.port);
    let factory = build(&config(&[("natsURL", &url), ("bucket", "shared")])).unwrap();
    // Wait for the server with a throwaway connection, then close it.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(c) = async_nats::connect(&url).await {
            drop(c);
            break;
        }
        assert!(Instant::now() < deadline, "private server did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Several instances (one per shard) and many first calls at once.
    let stores: Vec<_> = (0..4).map(|_| factory.create().unwrap()).collect();
    let mut joins = Vec::new();
    for i in 0..32 {
        let s = stores[i % 4].clone();
        joins.push(tokio::spawn(async move {
            s.set(set(&format!("a||k{i}"), "1")).await
        }));
    }
    for j in joins {
        j.await.unwrap().unwrap();
    }
    let connz: serde_json::Value =
        reqwest::get(format!("http://127.0.0.1:{}/connz", server.monitor))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    // Only Mecha's connections (the throwaway one may linger for a moment).
    let ours = connz["connections"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"] == "mecha - state.jetstream/js-test")
        .count();
    assert_eq!(ours, 1, "{connz}");
}

#[tokio::test]
async fn a_localhost_url_and_a_server_list_connect() {
    let port = nats_url()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or(4222);
    // The first server of the list is down; the client moves on to the next.
    let list = format!("nats://127.0.0.1:1,nats://localhost:{port}");
    let (s, _b) = store(&[("natsURL", &list)]).await;
    s.set(set("a||k", "1")).await.unwrap();
    assert_eq!(read(&s, "a||k").await.unwrap().0, "1");
}

#[test]
fn an_app_prefix_encodes_to_the_start_of_its_keys() {
    assert_eq!(encoded_prefix(""), "");
    assert_eq!(encoded_prefix("app||"), "app.");
    for (prefix, key) in [("app||", "k"), ("my.app||", "a b"), ("a_b||", "x||")] {
        let enc = encoded_prefix(prefix);
        let stored = encode_key(&format!("{prefix}{key}")).unwrap();
        assert!(stored.starts_with(&enc), "{stored} lacks {enc}");
    }
    // Another app whose id starts like this one's is not under its prefix.
    assert!(
        !encode_key("app2||k")
            .unwrap()
            .starts_with(&encoded_prefix("app||"))
    );
}
