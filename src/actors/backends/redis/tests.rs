//! Backend tests against a real Redis (`REDIS_URL`, default `redis://127.0.0.1:6379`). They
//! fail, never skip, when Redis is unreachable: `scripts/test.sh` starts one.

use std::collections::HashMap;
use std::time::SystemTime;

use bytes::Bytes;
use redis::ConnectionAddr;

use super::*;
use crate::model::{Metadata, StateOptions, TTL_EXPIRE_TIME};

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn config(extra: &[(&str, &str)]) -> ComponentConfig {
    let mut metadata: HashMap<String, String> = extra
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    metadata.entry("redisHost".into()).or_insert_with(redis_url);
    ComponentConfig {
        name: "redis-test".into(),
        component_type: "state.redis".into(),
        version: "v1".into(),
        metadata,
    }
}

fn factory(extra: &[(&str, &str)]) -> Arc<dyn StoreFactory> {
    build(&config(extra)).expect("valid component")
}

fn shared(extra: &[(&str, &str)]) -> Arc<Shared> {
    let cfg = config(extra);
    Arc::new(Shared::new(connection_infos(&cfg).unwrap(), settings(&cfg).unwrap()).unwrap())
}

/// A store on the test Redis, and a key base unique to the test.
async fn store(extra: &[(&str, &str)]) -> (Arc<dyn StateStore>, String) {
    let store = factory(extra).create().unwrap();
    if let Err(e) = store.ping().await {
        panic!(
            "Redis at {} is unreachable ({e}); run scripts/test.sh, which starts one",
            redis_url()
        );
    }
    (store, format!("unit-{:016x}", rand::random::<u64>()))
}

async fn raw() -> MultiplexedConnection {
    Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("redis")
}

fn get(key: &str) -> GetRequest {
    GetRequest {
        key: key.into(),
        consistency: Consistency::Unspecified,
        metadata: Metadata::new(),
    }
}

fn set(key: &str, v: &str) -> SetRequest {
    SetRequest {
        key: key.into(),
        value: Bytes::copy_from_slice(v.as_bytes()),
        etag: None,
        options: StateOptions::default(),
        ttl: None,
        metadata: Metadata::new(),
    }
}

fn etagged(mut r: SetRequest, etag: &str) -> SetRequest {
    r.etag = Some(etag.into());
    r
}

fn del(key: &str, etag: Option<&str>) -> DeleteRequest {
    DeleteRequest {
        key: key.into(),
        etag: etag.map(Into::into),
        options: StateOptions::default(),
        metadata: Metadata::new(),
    }
}

async fn etag_of(s: &Arc<dyn StateStore>, key: &str) -> String {
    s.get(get(key))
        .await
        .unwrap()
        .expect("present")
        .etag
        .expect("etag")
}

#[test]
fn settings_reject_what_is_not_supported() {
    for (field, value, needle) in [
        ("failover", "true", "Sentinel"),
        ("sentinelMasterName", "mymaster", "Sentinel"),
        ("clusterKeyPlacement", "prefix", "redisType: cluster"),
        ("enableTLS", "true", "TLS"),
        ("clientCert", "-----BEGIN", "TLS"),
        ("useEntraID", "true", "useEntraID"),
        ("redisHost", "a:6379,b:6379", "redisType: cluster"),
        ("redisHost", "rediss://h:6380", "TLS"),
        ("redisHost", "h:port", "host:port"),
        ("dialTimeout", "0s", "dialTimeout"),
    ] {
        let err = build(&config(&[(field, value)]))
            .err()
            .unwrap_or_else(|| panic!("{field}={value} accepted"));
        assert!(err.contains(needle), "{field}={value}: {err}");
    }
    // Accepted: a warning only.
    assert!(build(&config(&[("queryIndexes", "[]"), ("redisType", "node")])).is_ok());
}

#[test]
fn host_forms() {
    assert_eq!(split_host_port("h:1").unwrap(), ("h".into(), 1));
    assert_eq!(split_host_port("h").unwrap(), ("h".into(), 6379));
    assert_eq!(split_host_port("[::1]:7000").unwrap(), ("::1".into(), 7000));
    assert_eq!(split_host_port("[::1]").unwrap(), ("::1".into(), 6379));
    assert!(split_host_port(":1").is_err());
    let info = connection_infos(&config(&[
        ("redisHost", "example:6380"),
        ("redisUsername", "u"),
        ("redisPassword", "p"),
        ("redisDB", "3"),
    ]))
    .unwrap()
    .remove(0);
    assert_eq!(info.addr(), &ConnectionAddr::Tcp("example".into(), 6380));
    assert_eq!(info.redis_settings().db(), 3);
    assert_eq!(info.redis_settings().username(), Some("u"));
    assert_eq!(info.redis_settings().password(), Some("p"));
    // A cluster takes a list of seed nodes, database 0 only.
    let seeds = connection_infos(&config(&[
        ("redisType", "cluster"),
        ("redisHost", "a:7000, b:7001,,c"),
    ]))
    .unwrap();
    let addrs: Vec<_> = seeds.iter().map(|i| i.addr().clone()).collect();
    assert_eq!(
        addrs,
        [
            ConnectionAddr::Tcp("a".into(), 7000),
            ConnectionAddr::Tcp("b".into(), 7001),
            ConnectionAddr::Tcp("c".into(), 6379)
        ]
    );
    let err = connection_infos(&config(&[("redisType", "cluster"), ("redisDB", "2")])).unwrap_err();
    assert!(err.contains("database 0"), "{err}");
}

#[test]
fn every_slot_has_its_own_version_counter() {
    let mut seen = std::collections::HashSet::new();
    for i in 0..2000 {
        let key = format!("app||key-{i}");
        let counter = slot_counter_key(&key);
        assert_eq!(
            HashSlot::for_key(counter.as_bytes()),
            HashSlot::for_key(key.as_bytes()),
            "{counter} is not in the slot of {key}"
        );
        assert!(counter.starts_with(VERSION_COUNTER_KEY));
        seen.insert(counter);
    }
    // Distinct slots get distinct counters; a hash tag picks the tag's slot.
    assert!(seen.len() > 1800, "{}", seen.len());
    assert_eq!(slot_counter_key("a{x}1"), slot_counter_key("b{x}2"));
}

/// A read sends plain `HMGET`s, one per key, in one pipeline: no script, no `MULTI`, no
/// `PTTL` (the expiry comes from the hash). Only keys written by Dapr take the second read.
#[test]
fn a_read_is_one_hmget_per_key() {
    let packed = String::from_utf8(read_pipeline(&["a", "b", "c"]).get_packed_pipeline()).unwrap();
    let one = |k: &str| {
        format!("*5\r\n$5\r\nHMGET\r\n$1\r\n{k}\r\n$4\r\ndata\r\n$7\r\nversion\r\n$6\r\nexpiry\r\n")
    };
    assert_eq!(packed, format!("{}{}{}", one("a"), one("b"), one("c")));
    let fallback = String::from_utf8(ttl_read_pipeline(&["a"]).get_packed_pipeline()).unwrap();
    assert!(fallback.contains("MULTI") && fallback.contains("PTTL") && fallback.contains("EXEC"));
}

#[test]
fn retry_intervals_parse_like_dapr() {
    assert_eq!(parse_interval("-1").unwrap(), Duration::ZERO);
    assert_eq!(parse_interval("250ms").unwrap(), Duration::from_millis(250));
    assert_eq!(parse_interval("2").unwrap(), Duration::from_secs(2));
    assert_eq!(
        parse_interval("3000000000").unwrap(),
        Duration::from_secs(3)
    );
    assert!(parse_interval("soon").is_err());
}

#[test]
fn capabilities_and_limits_follow_metadata() {
    let plain = factory(&[]);
    assert!(!plain.capabilities().has(Capability::QueryApi));
    // Strong consistency with or without `redisReplicas`: with it the count is fixed,
    // without it Mecha waits for the replicas it sees.
    for c in [
        Capability::Etag,
        Capability::Transactional,
        Capability::Ttl,
        Capability::FirstWrite,
        Capability::BulkNative,
        Capability::StrongConsistency,
    ] {
        assert!(plain.capabilities().has(c), "{c:?}");
    }
    assert_eq!(
        plain.max_transaction_ops(),
        Some(DEFAULT_MAX_TRANSACTION_OPS)
    );
    let replicated = factory(&[("redisReplicas", "2"), ("maxTransactionOps", "7")]);
    assert!(replicated.capabilities().has(Capability::StrongConsistency));
    assert_eq!(replicated.max_transaction_ops(), Some(7));
    assert!(DESCRIPTOR.capabilities.has(Capability::StrongConsistency));
}

#[tokio::test]
async fn create_does_not_connect_and_unreachable_is_unavailable() {
    // Port 1 on loopback refuses at once.
    let f = factory(&[("redisHost", "127.0.0.1:1"), ("dialTimeout", "1s")]);
    let store = f.create().expect("create never connects");
    let started = Instant::now();
    // Nothing was written: the errors say so, so the gateway may repeat even a write.
    let r = store.get(get("k")).await;
    assert!(matches!(r, Err(StoreError::NotSent(_))), "{r:?}");
    assert!(matches!(
        store.ping().await,
        Err(StoreError::NotSent(_) | StoreError::Unavailable(_))
    ));
    let r = store.set(set("k", "1")).await;
    assert!(matches!(r, Err(StoreError::NotSent(_))), "{r:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn unanswered_connect_is_a_timeout() {
    // A listener that never answers the handshake: connect succeeds at TCP level, then hangs.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let host = addr.to_string();
    let store = factory(&[
        ("redisHost", &host),
        ("dialTimeout", "300ms"),
        ("readTimeout", "300ms"),
    ])
    .create()
    .unwrap();
    let started = Instant::now();
    let r = store.get(get("k")).await;
    assert!(matches!(r, Err(StoreError::Timeout(_))), "{r:?}");
    assert!(matches!(store.ping().await, Err(StoreError::Timeout(_))));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn invalid_etags_are_rejected_before_redis() {
    let (s, base) = store(&[]).await;
    let k = format!("{base}||k");
    s.set(set(&k, "1")).await.unwrap();
    for bad in ["x", "-1", "1.0", " 1", "18446744073709551616"] {
        let r = s.set(etagged(set(&k, "2"), bad)).await;
        assert!(matches!(r, Err(StoreError::EtagInvalid(_))), "{bad}: {r:?}");
        let r = s.delete(del(&k, Some(bad))).await;
        assert!(matches!(r, Err(StoreError::EtagInvalid(_))), "{bad}: {r:?}");
    }
    // In a bulk write only the item with the bad etag fails.
    let k2 = format!("{base}||k2");
    let r = s
        .bulk_set(vec![etagged(set(&k, "3"), "nope"), set(&k2, "ok")])
        .await;
    assert!(
        matches!(r[0], Err(StoreError::EtagInvalid(_))) && r[1].is_ok(),
        "{r:?}"
    );
    // A transaction with one fails as a whole, before anything is written.
    let k3 = format!("{base}||k3");
    let tx = TransactionRequest {
        operations: vec![
            TransactionOp::Upsert(set(&k3, "1")),
            TransactionOp::Upsert(etagged(set(&k, "4"), "nope")),
        ],
        metadata: Metadata::new(),
    };
    assert!(matches!(
        s.transact(tx).await,
        Err(StoreError::EtagInvalid(_))
    ));
    assert_eq!(s.get(get(&k3)).await.unwrap(), None);
    assert_eq!(
        s.get(get(&k)).await.unwrap().unwrap().data,
        Bytes::from_static(b"1")
    );
    // Leading zeros name the same version.
    let e = etag_of(&s, &k).await;
    s.set(etagged(set(&k, "5"), &format!("00{e}")))
        .await
        .unwrap();
}

#[tokio::test]
async fn etag_on_missing_key_and_first_write() {
    let (s, base) = store(&[]).await;
    let k = format!("{base}||k");
    let r = s.set(etagged(set(&k, "1"), "1")).await;
    assert!(
        matches!(&r, Err(StoreError::EtagMismatch(Some(m))) if m.contains("does not exist")),
        "{r:?}"
    );
    let r = s.delete(del(&k, Some("1"))).await;
    assert!(matches!(r, Err(StoreError::EtagMismatch(_))), "{r:?}");
    let mut fw = set(&k, "first");
    fw.options.concurrency = Concurrency::FirstWrite;
    s.set(fw.clone()).await.unwrap();
    let r = s.set(fw.clone()).await;
    assert!(
        matches!(&r, Err(StoreError::EtagMismatch(Some(m))) if m.contains("first-write")),
        "{r:?}"
    );
    // An ETag with last-write is enforced (Dapr's Redis would ignore it).
    let mut lw = etagged(set(&k, "x"), "1");
    lw.options.concurrency = Concurrency::LastWrite;
    assert!(matches!(s.set(lw).await, Err(StoreError::EtagMismatch(_))));
    // First-write after the key expired or was deleted creates it again.
    s.delete(del(&k, None)).await.unwrap();
    s.set(fw).await.unwrap();
}

#[tokio::test]
async fn delete_and_recreate_never_reuses_an_etag() {
    let (s, base) = store(&[]).await;
    let k = format!("{base}||k");
    let mut seen = std::collections::HashSet::new();
    for _ in 0..5 {
        s.set(set(&k, "v")).await.unwrap();
        let e = etag_of(&s, &k).await;
        assert!(seen.insert(e.clone()), "etag {e} issued twice");
        s.delete(del(&k, Some(&e))).await.unwrap();
        s.set(set(&k, "v")).await.unwrap();
        let r = s.set(etagged(set(&k, "w"), &e)).await;
        assert!(
            matches!(r, Err(StoreError::EtagMismatch(_))),
            "old etag matched a new value: {r:?}"
        );
        s.delete(del(&k, None)).await.unwrap();
    }
}

#[tokio::test]
async fn default_ttl_comes_from_component_metadata() {
    let (s, base) = store(&[("ttlInSeconds", "100")]).await;
    let k = format!("{base}||k");
    s.set(set(&k, "1")).await.unwrap();
    let e = s.get(get(&k)).await.unwrap().unwrap();
    let at = humantime::parse_rfc3339(
        e.metadata
            .get(TTL_EXPIRE_TIME)
            .expect("default ttl applied"),
    )
    .unwrap();
    let left = at.duration_since(SystemTime::now()).unwrap();
    assert!(
        left > Duration::from_secs(95) && left <= Duration::from_secs(100),
        "{left:?}"
    );
    // -1 overrides the default; an explicit TTL wins over it.
    let mut r = set(&k, "2");
    r.ttl = Some(Ttl::Never);
    s.set(r.clone()).await.unwrap();
    assert!(
        !s.get(get(&k))
            .await
            .unwrap()
            .unwrap()
            .metadata
            .contains_key(TTL_EXPIRE_TIME)
    );
    r.ttl = Some(Ttl::Seconds(5));
    s.set(r).await.unwrap();
    let mut conn = raw().await;
    let pttl: i64 = redis::cmd("PTTL")
        .arg(&k)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(pttl > 0 && pttl <= 5000, "{pttl}");
    // Without a component default, a plain write persists.
    let (plain, _) = store(&[]).await;
    plain.set(set(&k, "3")).await.unwrap();
    let pttl: i64 = redis::cmd("PTTL")
        .arg(&k)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(pttl, -1);
}

#[tokio::test]
async fn transaction_limit_is_enforced_by_the_store_too() {
    let (s, base) = store(&[("maxTransactionOps", "2")]).await;
    let ops = (0..3)
        .map(|i| TransactionOp::Upsert(set(&format!("{base}||{i}"), "v")))
        .collect();
    let r = s
        .transact(TransactionRequest {
            operations: ops,
            metadata: Metadata::new(),
        })
        .await;
    assert!(
        matches!(&r, Err(StoreError::InvalidRequest(m)) if m.contains("at most 2")),
        "{r:?}"
    );
    assert_eq!(s.get(get(&format!("{base}||0"))).await.unwrap(), None);
}

#[tokio::test]
async fn transaction_with_a_failing_later_check_writes_nothing() {
    let (s, base) = store(&[]).await;
    let (a, b) = (format!("{base}||a"), format!("{base}||b"));
    s.set(set(&b, "b0")).await.unwrap();
    let eb = etag_of(&s, &b).await;
    // The etag of b is right, but the first op already rewrote b, so the check must fail.
    let tx = TransactionRequest {
        operations: vec![
            TransactionOp::Upsert(set(&a, "a1")),
            TransactionOp::Upsert(set(&b, "b1")),
            TransactionOp::Upsert(etagged(set(&b, "b2"), &eb)),
        ],
        metadata: Metadata::new(),
    };
    let r = s.transact(tx).await;
    assert!(
        matches!(&r, Err(StoreError::EtagMismatch(Some(m))) if m.contains("operation 3")),
        "{r:?}"
    );
    assert_eq!(s.get(get(&a)).await.unwrap(), None);
    assert_eq!(etag_of(&s, &b).await, eb);
    // A delete then first-write of the same key in one transaction is fine.
    let mut fw = set(&b, "b3");
    fw.options.concurrency = Concurrency::FirstWrite;
    let tx = TransactionRequest {
        operations: vec![
            TransactionOp::Delete(del(&b, Some(&eb))),
            TransactionOp::Upsert(fw),
        ],
        metadata: Metadata::new(),
    };
    s.transact(tx).await.unwrap();
    assert_eq!(
        s.get(get(&b)).await.unwrap().unwrap().data,
        Bytes::from_static(b"b3")
    );
}

#[tokio::test]
async fn foreign_values_fail_per_key_and_never_half_apply() {
    let (s, base) = store(&[]).await;
    let (plain, good) = (format!("{base}||plain"), format!("{base}||good"));
    let mut conn = raw().await;
    let _: () = redis::cmd("SET")
        .arg(&plain)
        .arg("not a hash")
        .query_async(&mut conn)
        .await
        .unwrap();
    s.set(set(&good, "g")).await.unwrap();
    let r = s.bulk_get(vec![get(&good), get(&plain)], 1).await;
    assert!(r[0].as_ref().unwrap().is_some());
    assert!(
        matches!(&r[1], Err(StoreError::Internal(m)) if m.contains("WRONGTYPE")),
        "{r:?}"
    );
    let r = s.bulk_set(vec![set(&plain, "x"), set(&good, "g2")]).await;
    assert!(r[0].is_err() && r[1].is_ok(), "{r:?}");
    let tx = TransactionRequest {
        operations: vec![
            TransactionOp::Upsert(set(&good, "g3")),
            TransactionOp::Upsert(set(&plain, "x")),
        ],
        metadata: Metadata::new(),
    };
    assert!(matches!(s.transact(tx).await, Err(StoreError::Internal(_))));
    assert_eq!(
        s.get(get(&good)).await.unwrap().unwrap().data,
        Bytes::from_static(b"g2")
    );
    // An unguarded delete removes it like any key.
    s.delete(del(&plain, None)).await.unwrap();
}

#[tokio::test]
async fn data_written_by_dapr_is_read_and_versions_keep_rising() {
    let (s, base) = store(&[]).await;
    let k = format!("{base}||dapr");
    let mut conn = raw().await;
    let high = 1u64 << 40;
    let _: () = redis::cmd("HSET")
        .arg(&k)
        .arg("data")
        .arg("\"from dapr\"")
        .arg("version")
        .arg(high)
        .query_async(&mut conn)
        .await
        .unwrap();
    let e = s.get(get(&k)).await.unwrap().unwrap();
    assert_eq!(
        (e.data.as_ref(), e.etag.as_deref()),
        (&b"\"from dapr\""[..], Some(&*high.to_string()))
    );
    s.set(etagged(set(&k, "mine"), &high.to_string()))
        .await
        .unwrap();
    let next: u64 = etag_of(&s, &k).await.parse().unwrap();
    assert!(next > high, "{next} <= {high}");
}

/// The expiry an entry reports, as seconds from now.
fn seconds_left(e: &StateEntry) -> Option<u64> {
    let at = humantime::parse_rfc3339(e.metadata.get(TTL_EXPIRE_TIME)?).unwrap();
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or_default()
            .as_secs(),
    )
}

/// The expiry a read of `key` reports, as seconds from now.
async fn expires_in(s: &Arc<dyn StateStore>, key: &str) -> Option<u64> {
    seconds_left(&s.get(get(key)).await.unwrap().unwrap())
}

/// A read is one `HMGET`: the expiry comes from the field the write script sets, and a key
/// whose field is missing (written by Dapr) or stale (rewritten by Dapr after Mecha, which
/// changes the version but not the field) is read with `PTTL` instead, in one step with
/// its value.
#[tokio::test]
async fn the_expiry_field_is_used_only_for_its_own_version() {
    let (s, base) = store(&[]).await;
    let k = format!("{base}||ttl");
    let mut conn = raw().await;
    let mut r = set(&k, "1");
    r.ttl = Some(Ttl::Seconds(1000));
    s.set(r).await.unwrap();
    let version = etag_of(&s, &k).await;
    let field: String = redis::cmd("HGET")
        .arg(&k)
        .arg(EXPIRY_FIELD)
        .query_async(&mut conn)
        .await
        .unwrap();
    let (of, ms) = field.split_once(':').unwrap();
    assert_eq!(of, version);
    let ms: u64 = ms.parse().unwrap();
    let now_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(ms > now_ms + 990_000 && ms <= now_ms + 1_000_000, "{ms}");
    let left = expires_in(&s, &k).await.expect("ttl reported");
    assert!((990..=1000).contains(&left), "{left}");

    // Dapr rewrites the value: new version, its own TTL, the field left behind.
    let _: () = redis::pipe()
        .cmd("HSET")
        .arg(&k)
        .arg("data")
        .arg("2")
        .ignore()
        .cmd("HINCRBY")
        .arg(&k)
        .arg("version")
        .arg(1)
        .ignore()
        .cmd("EXPIRE")
        .arg(&k)
        .arg(50)
        .ignore()
        .query_async(&mut conn)
        .await
        .unwrap();
    let left = expires_in(&s, &k).await.expect("Dapr's ttl reported");
    assert!((45..=50).contains(&left), "{left}");
    // Dapr rewrites it without a TTL.
    let _: () = redis::pipe()
        .cmd("HINCRBY")
        .arg(&k)
        .arg("version")
        .arg(1)
        .ignore()
        .cmd("PERSIST")
        .arg(&k)
        .ignore()
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(expires_in(&s, &k).await, None);

    // A key only Dapr ever wrote (no field at all), with and without a TTL, in one bulk
    // read with Mecha's own keys.
    let dapr = format!("{base}||dapr-ttl");
    let _: () = redis::pipe()
        .cmd("HSET")
        .arg(&dapr)
        .arg("data")
        .arg("3")
        .arg("version")
        .arg(7)
        .ignore()
        .cmd("EXPIRE")
        .arg(&dapr)
        .arg(30)
        .ignore()
        .query_async(&mut conn)
        .await
        .unwrap();
    let mine = format!("{base}||mine");
    let mut r = set(&mine, "4");
    r.ttl = Some(Ttl::Seconds(60));
    s.set(r).await.unwrap();
    let missing = format!("{base}||missing");
    let items = s
        .bulk_get(vec![get(&mine), get(&dapr), get(&missing), get(&k)], 4)
        .await;
    let expiry = |i: usize| seconds_left(items[i].as_ref().unwrap().as_ref().unwrap());
    assert!(matches!(expiry(0), Some(55..=60)), "{:?}", expiry(0));
    assert!(matches!(expiry(1), Some(25..=30)), "{:?}", expiry(1));
    assert!(matches!(items[2], Ok(None)));
    assert_eq!(expiry(3), None);
    let e = items[1].as_ref().unwrap().as_ref().unwrap();
    assert_eq!((e.data.as_ref(), e.etag.as_deref()), (&b"3"[..], Some("7")));
}

#[tokio::test]
async fn a_killed_connection_is_replaced() {
    let (s, base) = store(&[]).await;
    let k = format!("{base}||k");
    s.set(set(&k, "1")).await.unwrap();
    let redis_store = RedisStore::new(shared(&[]));
    redis_store.set(set(&k, "2")).await.unwrap();
    let (_, mut conn) = redis_store.connection(Kind::Read).await.unwrap();
    let id: i64 = redis::cmd("CLIENT")
        .arg("ID")
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut admin = raw().await;
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(id)
        .query_async(&mut admin)
        .await
        .unwrap();
    assert_eq!(killed, 1);
    // A read retries on a fresh connection; a write may fail once, then works.
    let v = redis_store.get(get(&k)).await.unwrap().unwrap();
    assert_eq!(v.data, Bytes::from_static(b"2"));
    if redis_store.set(set(&k, "3")).await.is_err() {
        redis_store.set(set(&k, "3")).await.unwrap();
    }
    let (_, mut conn) = redis_store.connection(Kind::Read).await.unwrap();
    let new_id: i64 = redis::cmd("CLIENT")
        .arg("ID")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_ne!(id, new_id);
    redis_store.ping().await.unwrap();
}

#[tokio::test]
async fn strong_consistency_waits_for_replicas() {
    // The test Redis has no replicas, so WAIT 1 times out and the strong write fails clearly.
    let (s, base) = store(&[("redisReplicas", "1"), ("waitTimeout", "100ms")]).await;
    let k = format!("{base}||k");
    s.set(set(&k, "eventual")).await.unwrap();
    let mut r = set(&k, "strong");
    r.options.consistency = Consistency::Strong;
    let started = Instant::now();
    let res = s.set(r).await;
    assert!(
        matches!(&res, Err(StoreError::Internal(m)) if m.contains("not yet replicated: 0 of 1 replicas")),
        "{res:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(100));
    // The write itself is applied on the primary (WAIT cannot undo it), as the error says.
    assert_eq!(
        s.get(get(&k)).await.unwrap().unwrap().data,
        Bytes::from_static(b"strong")
    );
    // WAIT 0 with replicas configured is satisfied at once.
    let (s0, _) = store(&[("redisReplicas", "0")]).await;
    let mut r = set(&k, "strong0");
    r.options.consistency = Consistency::Strong;
    s0.set(r).await.unwrap();
}

/// Compares a pool checkout per request with one multiplexed connection per worker (the
/// figures are in README, "Benchmarks"). Run with `cargo test --release --lib connection_strategies -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "timing measurement, not a test"]
async fn connection_strategies() {
    const TASKS: usize = 64;
    const CALLS: usize = 20_000;
    let shared = shared(&[("poolSize", "64")]);
    let key = format!("bench-{:016x}", rand::random::<u64>());
    let store = RedisStore::new(shared.clone());
    store.set(set(&key, "v")).await.unwrap();
    let read = Arc::new(read_pipeline(&[&key]));
    let _: Vec<Value> = read
        .query_async(&mut store.connection(Kind::Read).await.unwrap().1)
        .await
        .unwrap();

    async fn timed<F, Fut>(name: &str, f: F) -> f64
    where
        F: Fn() -> Fut + Send + Sync + 'static + Clone,
        Fut: Future<Output = ()> + Send,
    {
        let started = Instant::now();
        let mut joins = Vec::new();
        for _ in 0..TASKS {
            let f = f.clone();
            joins.push(tokio::spawn(async move {
                for _ in 0..CALLS / TASKS {
                    f().await;
                }
            }));
        }
        for j in joins {
            j.await.unwrap();
        }
        let rate = CALLS as f64 / started.elapsed().as_secs_f64();
        println!("{name:<40} {rate:>10.0} calls/s");
        rate
    }

    let direct = {
        let (_, conn) = store.connection(Kind::Read).await.unwrap();
        let read = read.clone();
        timed("one multiplexed connection (direct)", move || {
            let mut conn = conn.clone();
            let read = read.clone();
            async move {
                let _: Vec<Value> = read.query_async(&mut conn).await.unwrap();
            }
        })
        .await
    };
    let store = Arc::new(store);
    let shard = {
        let store = store.clone();
        let key = key.clone();
        timed("RedisStore::get (multiplexed, per shard)", move || {
            let store = store.clone();
            let key = key.clone();
            async move {
                store.get(get(&key)).await.unwrap();
            }
        })
        .await
    };
    let pooled = {
        let Mode::Node { pool, .. } = &shared.mode else {
            unreachable!("a node store")
        };
        let pool = pool.clone();
        let read = read.clone();
        timed("deadpool checkout per request", move || {
            let pool = pool.clone();
            let read = read.clone();
            async move {
                let mut conn = pool.get().await.unwrap();
                let _: Vec<Value> = read.query_async(&mut conn).await.unwrap();
            }
        })
        .await
    };
    println!(
        "store/direct {:.2}x, pool/direct {:.2}x",
        shard / direct,
        pooled / direct
    );
}

/// A TCP proxy to the test Redis that breaks the connection once: after forwarding the first
/// command containing `marker` and reading Redis's reply, it drops the connection instead of
/// passing the reply on. Counts how often a command with `marker` reached Redis.
async fn breaking_proxy(marker: String) -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicBool, AtomicUsize};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let upstream = match Client::open(redis_url())
        .unwrap()
        .get_connection_info()
        .addr()
    {
        ConnectionAddr::Tcp(h, p) => format!("{h}:{p}"),
        other => panic!("REDIS_URL must be TCP: {other:?}"),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let sent = Arc::new(AtomicUsize::new(0));
    let armed = Arc::new(AtomicBool::new(true));
    let counter = sent.clone();
    tokio::spawn(async move {
        while let Ok((mut down, _)) = listener.accept().await {
            let mut up = tokio::net::TcpStream::connect(&upstream).await.unwrap();
            let (marker, sent, armed) = (marker.clone(), counter.clone(), armed.clone());
            tokio::spawn(async move {
                let (mut a, mut b) = ([0u8; 65536], [0u8; 65536]);
                let mut saw = false;
                loop {
                    tokio::select! {
                        n = down.read(&mut a) => {
                            let Ok(n @ 1..) = n else { return };
                            if String::from_utf8_lossy(&a[..n]).contains(&marker) {
                                saw = true;
                                sent.fetch_add(1, Ordering::SeqCst);
                            }
                            if up.write_all(&a[..n]).await.is_err() { return }
                        }
                        n = up.read(&mut b) => {
                            let Ok(n @ 1..) = n else { return };
                            if saw && armed.swap(false, Ordering::SeqCst) {
                                // The command ran; its client never hears so.
                                return;
                            }
                            if down.write_all(&b[..n]).await.is_err() { return }
                        }
                    }
                }
            });
        }
    });
    (port, sent)
}

#[tokio::test]
async fn a_write_is_never_resent_after_its_connection_broke() {
    // Every write kind: unguarded set, guarded set, unguarded delete.
    for case in ["set", "etag", "delete"] {
        let (s, base) = store(&[]).await;
        let k = format!("{base}||k");
        // Loads the scripts, so the write below is one EVALSHA.
        s.set(set(&k, "before")).await.unwrap();
        let etag = etag_of(&s, &k).await;
        let marker = format!("resend-probe-{:016x}", rand::random::<u64>());
        let (port, sent) = breaking_proxy(marker.clone()).await;
        let host = format!("127.0.0.1:{port}");
        let via_proxy = factory(&[("redisHost", host.as_str())]).create().unwrap();
        via_proxy.get(get(&k)).await.unwrap();
        let r = match case {
            "set" => via_proxy.set(set(&k, &marker)).await,
            "etag" => via_proxy.set(etagged(set(&k, &marker), &etag)).await,
            _ => {
                // The marker rides in the key of a delete.
                let mk = format!("{k}-{marker}");
                s.set(set(&mk, "x")).await.unwrap();
                via_proxy.delete(del(&mk, None)).await
            }
        };
        assert!(
            matches!(r, Err(StoreError::Unavailable(_))),
            "{case}: a write whose reply was lost must fail, not be re-sent: {r:?}"
        );
        assert_eq!(
            sent.load(Ordering::SeqCst),
            1,
            "{case}: the write was re-sent"
        );
        // It was applied exactly once, and the store works again on a fresh connection.
        if case != "delete" {
            let v = s.get(get(&k)).await.unwrap().unwrap();
            assert_eq!(v.data, Bytes::from(marker.clone()), "{case}");
            let version: u64 = v.etag.unwrap().parse().unwrap();
            assert!(version > etag.parse::<u64>().unwrap(), "{case}");
        }
        via_proxy.set(set(&k, "after")).await.unwrap();
    }
}
