//! Backend tests: metadata and value encoding in isolation, and the store against a real etcd
//! cluster (`ETCD_ENDPOINTS`, default the three-member cluster `scripts/services.sh` starts on
//! 127.0.0.1:23791-23793). The server tests fail, never skip, when etcd is unreachable. Each
//! test works under a `keyPrefixPath` of its own.

use std::collections::HashMap;
use std::time::Instant;

use super::*;
use crate::model::StateOptions;

fn endpoints() -> String {
    std::env::var("ETCD_ENDPOINTS").unwrap_or_else(|_| {
        "http://127.0.0.1:23791,http://127.0.0.1:23792,http://127.0.0.1:23793".into()
    })
}

fn config(version: &str, extra: &[(&str, &str)]) -> ComponentConfig {
    let mut metadata: HashMap<String, String> = extra
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    metadata.entry("endpoints".into()).or_insert_with(endpoints);
    ComponentConfig {
        name: "etcd-test".into(),
        component_type: "state.etcd".into(),
        version: version.into(),
        metadata,
    }
}

fn prefix() -> String {
    format!("mecha-unit-{:016x}", rand::random::<u64>())
}

/// A store under a fresh prefix path of the test cluster, and a raw client to look under it.
async fn store_v(version: &str, extra: &[(&str, &str)]) -> (Arc<dyn StateStore>, String, Client) {
    let p = prefix();
    let mut all = vec![("keyPrefixPath", p.as_str())];
    all.extend_from_slice(extra);
    let store = build(&config(version, &all)).unwrap().create().unwrap();
    if let Err(e) = store.ping().await {
        panic!(
            "etcd at {} is unreachable ({e}); run scripts/test.sh, which starts a cluster",
            endpoints()
        );
    }
    let eps: Vec<String> = endpoints().split(',').map(str::to_owned).collect();
    let raw = Client::connect(eps, None).await.unwrap();
    (store, p, raw)
}

async fn store() -> (Arc<dyn StateStore>, String, Client) {
    store_v("v1", &[]).await
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
        value: Bytes::copy_from_slice(value.as_bytes()),
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

fn with_ttl(mut r: SetRequest, ttl: Ttl) -> SetRequest {
    r.ttl = Some(ttl);
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

async fn raw_get(raw: &Client, key: &str) -> Option<KeyValue> {
    raw.kv_client()
        .get(key, None)
        .await
        .unwrap()
        .kvs()
        .first()
        .cloned()
}

// === metadata and encoding ===

#[test]
fn bad_metadata_is_refused_at_load() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("endpoints", " , ")], "endpoints required"),
        (
            &[("tlsEnable", "true")],
            "TLS to etcd is not built into Mecha",
        ),
        (&[("ca", "-----BEGIN CERTIFICATE-----")], "ca: TLS"),
        (&[("cert", "x")], "cert: TLS"),
        (&[("key", "x")], "key: TLS"),
        (
            &[("requestTimeout", "0s")],
            "requestTimeout must be greater",
        ),
    ];
    for (extra, want) in cases {
        let err = build(&config("v1", extra)).err().unwrap_or_default();
        assert!(err.contains(want), "{extra:?}: {err}");
    }
    assert!(build(&config("v2", &[("tlsEnable", "false")])).is_ok());
    let f = build(&config("v1", &[("maxTxnOps", "7")])).unwrap();
    assert_eq!(f.max_transaction_ops(), Some(7));
    assert_eq!(
        build(&config("v1", &[])).unwrap().max_transaction_ops(),
        Some(DEFAULT_MAX_TXN_OPS)
    );
}

#[test]
fn v2_values_round_trip_and_report_expiry_only_with_a_ttl() {
    let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let data = Bytes::from_static(b"{\"a\":1}");
    let enc = encode_value(Format::V2, &data, 0, now);
    assert_eq!(
        decode_value(Format::V2, "k", &enc).unwrap(),
        (data.clone(), None)
    );
    let enc = encode_value(Format::V2, &data, 30, now);
    assert_eq!(
        decode_value(Format::V2, "k", &enc).unwrap(),
        (data.clone(), Some(now + Duration::from_secs(30)))
    );
    assert_eq!(encode_value(Format::V1, &data, 30, now), data.to_vec());
    let err = decode_value(Format::V2, "k", &[0xff, 0xff, 0xff]).unwrap_err();
    assert!(err.to_string().contains("not a v2 state value"), "{err}");
}

#[test]
fn prefix_ends_and_etags_parse() {
    assert_eq!(prefix_end(b"a/"), b"a0".to_vec());
    assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
    assert_eq!(prefix_end(b"\xff"), vec![0]);
    assert_eq!(parse_etag("12").unwrap(), Some(12));
    assert_eq!(parse_etag("0").unwrap(), None);
    assert!(matches!(parse_etag("-3"), Err(StoreError::EtagInvalid(_))));
    assert!(matches!(parse_etag("abc"), Err(StoreError::EtagInvalid(_))));
}

// === against the cluster ===

#[tokio::test]
async fn keys_are_laid_out_as_dapr_does_and_etags_are_mod_revisions() {
    let (s, p, raw) = store().await;
    s.set(set("app||k 1", "v1")).await.unwrap();
    let kv = raw_get(&raw, &format!("{p}/app||k 1"))
        .await
        .expect("stored under prefix/key");
    assert_eq!(kv.value(), b"v1");
    let (v, etag) = read(&s, "app||k 1").await.unwrap();
    assert_eq!(v, "v1");
    assert_eq!(etag, kv.mod_revision().to_string());
    assert_eq!(read(&s, "app||missing").await, None);
    // Eventual reads are served serializably and see the same committed value.
    let mut g = get("app||k 1");
    g.consistency = Consistency::Eventual;
    assert_eq!(
        s.get(g).await.unwrap().unwrap().data,
        Bytes::from_static(b"v1")
    );
}

#[tokio::test]
async fn etags_guard_writes_and_deletes() {
    let (s, _p, _raw) = store().await;
    s.set(set("k", "a")).await.unwrap();
    let (_, e1) = read(&s, "k").await.unwrap();
    s.set(guarded("k", "b", &e1)).await.unwrap();
    let (v, e2) = read(&s, "k").await.unwrap();
    assert_eq!(v, "b");
    assert_ne!(e1, e2);
    assert!(matches!(
        s.set(guarded("k", "c", &e1)).await,
        Err(StoreError::EtagMismatch(_))
    ));
    assert!(matches!(
        s.set(guarded("k", "c", "0")).await,
        Err(StoreError::EtagMismatch(_))
    ));
    assert!(matches!(
        s.set(guarded("k", "c", "not-a-number")).await,
        Err(StoreError::EtagInvalid(_))
    ));
    assert!(matches!(
        s.delete(del("k", Some(&e1))).await,
        Err(StoreError::EtagMismatch(_))
    ));
    assert_eq!(read(&s, "k").await.unwrap().0, "b");
    s.delete(del("k", Some(&e2))).await.unwrap();
    assert_eq!(read(&s, "k").await, None);
    // A guarded write or delete of a missing key is a mismatch, even with the old ETag.
    assert!(matches!(
        s.set(guarded("k", "d", &e2)).await,
        Err(StoreError::EtagMismatch(_))
    ));
    assert!(matches!(
        s.delete(del("k", Some(&e2))).await,
        Err(StoreError::EtagMismatch(_))
    ));
    assert_eq!(read(&s, "k").await, None);
    // Deleting a missing key without an ETag succeeds.
    s.delete(del("k", None)).await.unwrap();
}

#[tokio::test]
async fn first_write_creates_only_once() {
    let (s, _p, _raw) = store().await;
    s.set(first_write("fw", "1")).await.unwrap();
    let err = s.set(first_write("fw", "2")).await.unwrap_err();
    assert!(matches!(err, StoreError::EtagMismatch(_)), "{err}");
    assert_eq!(read(&s, "fw").await.unwrap().0, "1");
    // After a delete, the key can be created again.
    s.delete(del("fw", None)).await.unwrap();
    s.set(first_write("fw", "3")).await.unwrap();
    // First-write with an ETag is an ordinary guarded write.
    let (_, e) = read(&s, "fw").await.unwrap();
    let mut r = first_write("fw", "4");
    r.etag = Some(e);
    s.set(r).await.unwrap();
    assert_eq!(read(&s, "fw").await.unwrap().0, "4");
}

#[tokio::test]
async fn a_same_etag_race_has_exactly_one_winner() {
    let (s, _p, _raw) = store().await;
    s.set(set("race", "0")).await.unwrap();
    let (_, etag) = read(&s, "race").await.unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let (s, etag) = (s.clone(), etag.clone());
            tokio::spawn(async move { s.set(guarded("race", &format!("w{i}"), &etag)).await })
        })
        .collect();
    let mut wins = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        match t.await.unwrap() {
            Ok(()) => wins.push(i),
            Err(StoreError::EtagMismatch(_)) => {}
            Err(e) => panic!("writer {i}: {e}"),
        }
    }
    assert_eq!(wins.len(), 1, "{wins:?}");
    assert_eq!(read(&s, "race").await.unwrap().0, format!("w{}", wins[0]));
    // Twenty concurrent first-writes of a new key: one creates it.
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move { s.set(first_write("race-fw", &format!("w{i}"))).await })
        })
        .collect();
    let mut created = 0;
    for t in tasks {
        if t.await.unwrap().is_ok() {
            created += 1;
        }
    }
    assert_eq!(created, 1);
}

#[tokio::test]
async fn ttl_uses_leases_reports_expiry_and_can_be_cleared() {
    for version in ["v1", "v2"] {
        let (s, p, raw) = store_v(version, &[]).await;
        let before = SystemTime::now();
        s.set(with_ttl(set("t", "x"), Ttl::Seconds(2)))
            .await
            .unwrap();
        let e = s
            .get(get("t"))
            .await
            .unwrap()
            .expect("readable before expiry");
        let at = humantime::parse_rfc3339(&e.metadata[TTL_EXPIRE_TIME]).unwrap();
        assert!(
            at >= before && at <= before + Duration::from_secs(5),
            "{version}: {:?}",
            e.metadata
        );
        let kv = raw_get(&raw, &format!("{p}/t")).await.unwrap();
        assert_ne!(kv.lease(), 0, "{version}: the key is attached to a lease");

        // A key written again without TTL (or with -1) loses its expiry.
        s.set(with_ttl(set("keep", "x"), Ttl::Seconds(2)))
            .await
            .unwrap();
        s.set(with_ttl(set("keep", "y"), Ttl::Never)).await.unwrap();
        let e = s.get(get("keep")).await.unwrap().unwrap();
        assert!(
            !e.metadata.contains_key(TTL_EXPIRE_TIME),
            "{version}: {:?}",
            e.metadata
        );

        tokio::time::sleep(Duration::from_millis(4500)).await;
        assert_eq!(read(&s, "t").await, None, "{version}: expired");
        assert_eq!(read(&s, "keep").await.unwrap().0, "y", "{version}");
    }
}

#[tokio::test]
async fn a_failed_guarded_write_leaves_no_lease_behind() {
    let (s, _p, raw) = store().await;
    s.set(set("l", "a")).await.unwrap();
    let before: Vec<i64> = raw
        .lease_client()
        .leases()
        .await
        .unwrap()
        .leases()
        .iter()
        .map(|l| l.id())
        .collect();
    let err = s
        .set(with_ttl(guarded("l", "b", "999999999"), Ttl::Seconds(97)))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::EtagMismatch(_)));
    let after: Vec<i64> = raw
        .lease_client()
        .leases()
        .await
        .unwrap()
        .leases()
        .iter()
        .map(|l| l.id())
        .filter(|id| !before.contains(id))
        .collect();
    // Other tests may grant leases concurrently: none of the new ones has the 97 s TTL.
    for id in after {
        let ttl = raw
            .lease_client()
            .time_to_live(id, None)
            .await
            .unwrap()
            .granted_ttl();
        assert_ne!(ttl, 97, "lease {id} of the failed write was left behind");
    }
}

fn upsert(r: SetRequest) -> TransactionOp {
    TransactionOp::Upsert(r)
}

fn txn(ops: Vec<TransactionOp>) -> TransactionRequest {
    TransactionRequest {
        operations: ops,
        metadata: Metadata::new(),
    }
}

#[tokio::test]
async fn transactions_are_all_or_nothing_with_every_etag_compared() {
    let (s, _p, _raw) = store().await;
    s.set(set("a", "a0")).await.unwrap();
    s.set(set("b", "b0")).await.unwrap();
    let (_, ea) = read(&s, "a").await.unwrap();
    let (_, eb) = read(&s, "b").await.unwrap();
    // One stale ETag (b's) fails the whole transaction.
    s.set(set("b", "b1")).await.unwrap();
    let err = s
        .transact(txn(vec![
            upsert(guarded("a", "a2", &ea)),
            upsert(guarded("b", "b2", &eb)),
            upsert(set("c", "c2")),
            TransactionOp::Delete(del("x", None)),
        ]))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::EtagMismatch(_)), "{err}");
    assert_eq!(read(&s, "a").await.unwrap().0, "a0");
    assert_eq!(read(&s, "b").await.unwrap().0, "b1");
    assert_eq!(read(&s, "c").await, None);
    // A first-write on an existing key fails it too.
    let err = s
        .transact(txn(vec![
            upsert(set("c", "c3")),
            upsert(first_write("a", "a3")),
        ]))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::EtagMismatch(_)), "{err}");
    assert_eq!(read(&s, "c").await, None);
    // With current ETags everything applies, deletes included.
    let (_, eb) = read(&s, "b").await.unwrap();
    s.transact(txn(vec![
        upsert(guarded("a", "a4", &ea)),
        TransactionOp::Delete(del("b", Some(&eb))),
        upsert(with_ttl(first_write("c", "c4"), Ttl::Seconds(60))),
    ]))
    .await
    .unwrap();
    assert_eq!(read(&s, "a").await.unwrap().0, "a4");
    assert_eq!(read(&s, "b").await, None);
    let c = s.get(get("c")).await.unwrap().unwrap();
    assert!(c.metadata.contains_key(TTL_EXPIRE_TIME));
}

#[tokio::test]
async fn transactions_fold_repeated_keys_and_respect_max_ops() {
    let (s, _p, _raw) = store_v("v1", &[("maxTxnOps", "3")]).await;
    // etcd refuses two operations on one key in a Txn: they are folded, the last wins.
    s.transact(txn(vec![
        upsert(set("r", "1")),
        upsert(set("r", "2")),
        TransactionOp::Delete(del("q", None)),
    ]))
    .await
    .unwrap();
    assert_eq!(read(&s, "r").await.unwrap().0, "2");
    s.transact(txn(vec![
        TransactionOp::Delete(del("r", None)),
        upsert(first_write("r", "3")),
    ]))
    .await
    .unwrap();
    assert_eq!(read(&s, "r").await.unwrap().0, "3");
    // A later ETag on a key the transaction already wrote can never hold.
    let (_, e) = read(&s, "r").await.unwrap();
    let err = s
        .transact(txn(vec![
            upsert(set("r", "4")),
            upsert(guarded("r", "5", &e)),
        ]))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::EtagMismatch(_)), "{err}");
    assert_eq!(read(&s, "r").await.unwrap().0, "3");
    let err = s
        .transact(txn((0..4)
            .map(|i| upsert(set(&format!("m{i}"), "x")))
            .collect()))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::InvalidRequest(m) if m.contains("at most 3")),
        "{err}"
    );
    assert_eq!(read(&s, "m0").await, None);
}

#[tokio::test]
async fn the_server_max_txn_ops_is_the_real_bound() {
    // Declaring more than the server allows gets the server's refusal, as a clear error, and
    // writes nothing.
    let (s, _p, _raw) = store_v("v1", &[("maxTxnOps", "500")]).await;
    let err = s
        .transact(txn((0..200)
            .map(|i| upsert(set(&format!("n{i}"), "x")))
            .collect()))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::InvalidRequest(m) if m.contains("too many operations")),
        "{err}"
    );
    assert_eq!(read(&s, "n0").await, None);
}

#[tokio::test]
async fn v2_values_are_daprs_protobuf_and_v1_reads_are_raw() {
    let (s, p, raw) = store_v("v2", &[]).await;
    s.set(set("k", "{\"x\":1}")).await.unwrap();
    let kv = raw_get(&raw, &format!("{p}/k")).await.unwrap();
    let v = V2Value::decode(kv.value()).unwrap();
    assert_eq!(&v.data[..], b"{\"x\":1}");
    assert_eq!(v.ttl.unwrap().seconds, 0);
    assert_eq!(read(&s, "k").await.unwrap().0, "{\"x\":1}");
    // A value v2 cannot decode is an error naming the key, never garbage.
    raw.kv_client()
        .put(format!("{p}/junk"), vec![0xffu8, 0xff, 0xff], None)
        .await
        .unwrap();
    let err = s.get(get("junk")).await.unwrap_err();
    assert!(err.to_string().contains("junk"), "{err}");
}

#[tokio::test]
async fn bulk_get_reads_every_key_in_order() {
    let (s, _p, _raw) = store_v("v1", &[("maxTxnOps", "2")]).await;
    for k in ["b1", "b3", "b4"] {
        s.set(set(k, k)).await.unwrap();
    }
    let out = s
        .bulk_get(
            ["b1", "b2", "b3", "", "b4"]
                .iter()
                .map(|k| get(k))
                .collect(),
            4,
        )
        .await;
    let shown: Vec<String> = out
        .iter()
        .map(|r| match r {
            Ok(Some(e)) => String::from_utf8(e.data.to_vec()).unwrap(),
            Ok(None) => "-".into(),
            Err(_) => "err".into(),
        })
        .collect();
    assert_eq!(shown, ["b1", "-", "b3", "err", "b4"]);
}

#[tokio::test]
async fn list_keys_pages_through_the_prefix_only() {
    let (s, p, raw) = store().await;
    for i in 0..7 {
        s.set(set(&format!("app||k{i}"), "x")).await.unwrap();
    }
    // A key of another prefix path (a sibling with a longer name) is not listed.
    raw.kv_client()
        .put(format!("{p}x/app||k0"), "y", None)
        .await
        .unwrap();
    let mut all = Vec::new();
    let mut cursor = None;
    loop {
        let page = s.list_keys(cursor, 3).await.unwrap();
        assert!(page.keys.len() <= 3);
        all.extend(page.keys);
        cursor = page.next;
        if cursor.is_none() {
            break;
        }
    }
    let want: Vec<String> = (0..7).map(|i| format!("app||k{i}")).collect();
    assert_eq!(all, want);
    raw.kv_client()
        .delete(format!("{p}x/app||k0"), None)
        .await
        .unwrap();
}

#[tokio::test]
async fn an_unreachable_cluster_fails_fast_and_clearly() {
    let f = build(&config(
        "v1",
        &[
            ("endpoints", "http://127.0.0.1:1"),
            ("connectTimeout", "300ms"),
            ("requestTimeout", "300ms"),
        ],
    ))
    .unwrap();
    let s = f.create().unwrap();
    let t = Instant::now();
    let err = s.get(get("k")).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::NotSent(_) | StoreError::Unavailable(_) | StoreError::Timeout(_)
        ),
        "{err}"
    );
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
}

#[tokio::test]
async fn a_member_that_is_down_is_skipped_for_every_call() {
    // The first endpoint refuses connections (a member that is down): every call still
    // succeeds on the others, reads and guarded writes alike, none answering an error.
    let p = prefix();
    let eps = format!("http://127.0.0.1:1,{}", endpoints());
    let f = build(&config("v1", &[("endpoints", &eps), ("keyPrefixPath", &p)])).unwrap();
    let s = f.create().unwrap();
    for i in 0..30 {
        s.set(set("k", &i.to_string())).await.unwrap();
        let (v, etag) = read(&s, "k").await.unwrap();
        assert_eq!(v, i.to_string());
        s.set(guarded("k", "g", &etag)).await.unwrap();
        s.ping().await.unwrap();
    }
}

#[tokio::test]
async fn a_value_larger_than_the_server_takes_is_a_clear_error() {
    // etcd refuses requests over --max-request-bytes (1.5 MiB by default).
    let (s, _p, _raw) = store().await;
    for size in [1600 * 1024, 3 * 1024 * 1024] {
        let big = "x".repeat(size);
        let err = s.set(set("big", &big)).await.unwrap_err();
        assert!(
            matches!(&err, StoreError::InvalidRequest(m) if m.contains("too large")),
            "{size}: {err}"
        );
        assert_eq!(read(&s, "big").await, None);
    }
}
