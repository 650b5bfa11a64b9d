//! `state.redis` with `redisType: cluster`, through Mecha's HTTP door, against real Redis
//! Clusters:
//!
//! * on the shared cluster `scripts/test.sh` starts (`REDIS_CLUSTER_NODES`, default ports
//!   27001-27006): transactions across hash slots are refused before anything is written,
//!   same-slot transactions (hash tags, or `clusterKeyPlacement: prefix`) are atomic, bulk
//!   operations over keys of many slots are correct, and `consistency: strong` waits for a
//!   replica with `WAIT`;
//! * on a private six-node cluster of its own (ports 21101-21106, cluster bus +10000 so
//!   below Linux's ephemeral range, where a test's passing connection could hold it; node
//!   timeout 1 s): a primary is killed under bounded load, its replica is promoted, requests
//!   fail fast during the election and recover without restarting Mecha, and writes
//!   acknowledged with `consistency: strong` (WAIT 1) survive.
//!
//! They fail (never skip) when `redis-server`/`redis-cli` are missing or the shared cluster
//! is unreachable: `scripts/test.sh` installs and starts them.

use crate::support;
use crate::support::services::redis_cluster_nodes;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use redis::cluster_routing::Slot;
use serde_json::{Value, json};
use support::{Mecha, TestMecha, error_of, unique};

fn component(name: &str, nodes: &str, extra: &str) -> String {
    format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n  type: state.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    value: \"{nodes}\"\n  - name: redisType\n    value: cluster\n{extra}"
    )
}

/// Mecha with one cluster store `rc` under a key prefix of its own (`<prefix>||key`).
async fn mecha(extra: &str) -> (Mecha, String) {
    let prefix = unique("rc");
    let yaml = component(
        "rc",
        &redis_cluster_nodes(),
        &format!("  - name: keyPrefix\n    value: {prefix}\n{extra}"),
    );
    let m = TestMecha::empty().yaml(&yaml).start().await;
    (m, prefix)
}

/// Two keys whose stored names (`<prefix>||key`) are in different hash slots.
fn keys_in_two_slots(prefix: &str) -> (String, String) {
    let slot = |k: &str| Slot::for_key(format!("{prefix}||{k}"));
    let a = "alpha".to_owned();
    let b = (0..)
        .map(|i| format!("beta{i}"))
        .find(|b| slot(b) != slot(&a))
        .unwrap();
    (a, b)
}

async fn value(m: &Mecha, store: &str, key: &str) -> Option<(Value, String)> {
    let r = m.get(&format!("/v1.0/state/{store}/{key}")).await;
    if r.status() == 204 {
        return None;
    }
    assert_eq!(r.status(), 200, "{key}");
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    Some((r.json().await.unwrap(), etag))
}

fn upsert(key: &str, value: Value, etag: Option<&str>) -> Value {
    let mut req = json!({"key": key, "value": value});
    if let Some(e) = etag {
        req["etag"] = json!(e);
    }
    json!({"operation": "upsert", "request": req})
}

#[actix_rt::test]
async fn transactions_across_hash_slots_are_refused_and_write_nothing() {
    let (m, prefix) = mecha("").await;
    let (a, b) = keys_in_two_slots(&prefix);
    m.save("rc", &a, json!("a0")).await;
    let tx = json!({"operations": [upsert(&a, json!("a1"), None), upsert(&b, json!("b1"), None)]});
    let (status, code, message, _) =
        error_of(m.post("/v1.0/state/rc/transaction", tx.to_string()).await).await;
    assert_eq!((status, code.as_str()), (500, "ERR_STATE_TRANSACTION"));
    for needle in [
        "different hash slots",
        "nothing was written",
        "hash tag",
        "clusterKeyPlacement",
    ] {
        assert!(message.contains(needle), "{needle}: {message}");
    }
    assert_eq!(value(&m, "rc", &a).await.unwrap().0, json!("a0"));
    assert!(value(&m, "rc", &b).await.is_none());

    // The same keys under one hash tag: atomic, and all-or-nothing on a stale ETag.
    let (ta, tb) = ("{order42}:a".to_owned(), "{order42}:b".to_owned());
    m.save("rc", &tb, json!("b0")).await;
    let stale = json!({"operations": [
        upsert(&ta, json!("a1"), None),
        upsert(&tb, json!("b1"), Some("999999")),
    ]});
    let (status, code, _, _) = error_of(
        m.post("/v1.0/state/rc/transaction", stale.to_string())
            .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (500, "ERR_STATE_TRANSACTION"));
    assert!(value(&m, "rc", &ta).await.is_none(), "half a transaction");
    let (_, etag) = value(&m, "rc", &tb).await.unwrap();
    let good = json!({"operations": [
        upsert(&ta, json!("a1"), None),
        upsert(&tb, json!("b1"), Some(&etag)),
        {"operation": "delete", "request": {"key": a}},
    ]});
    // `a` is in another slot: still refused, even though the rest shares a tag.
    let r = m.post("/v1.0/state/rc/transaction", good.to_string()).await;
    assert_eq!(r.status(), 500);
    let good = json!({"operations": [upsert(&ta, json!("a1"), None), upsert(&tb, json!("b1"), Some(&etag))]});
    let r = m.post("/v1.0/state/rc/transaction", good.to_string()).await;
    assert_eq!(r.status(), 204, "{:?}", r.text().await);
    assert_eq!(value(&m, "rc", &ta).await.unwrap().0, json!("a1"));
    assert_eq!(value(&m, "rc", &tb).await.unwrap().0, json!("b1"));
}

#[actix_rt::test]
async fn key_placement_by_prefix_makes_every_transaction_of_an_app_atomic() {
    let (m, prefix) = mecha("  - name: clusterKeyPlacement\n    value: prefix\n").await;
    let (a, b) = keys_in_two_slots(&prefix);
    let tx = json!({"operations": [upsert(&a, json!(1), None), upsert(&b, json!(2), None)]});
    let r = m.post("/v1.0/state/rc/transaction", tx.to_string()).await;
    assert_eq!(r.status(), 204, "{:?}", r.text().await);
    assert_eq!(value(&m, "rc", &a).await.unwrap().0, json!(1));
    assert_eq!(value(&m, "rc", &b).await.unwrap().0, json!(2));
    // Stored under the prefix as hash tag, so one slot holds them all.
    let mut conn = redis::cluster::ClusterClient::new(
        redis_cluster_nodes()
            .split(',')
            .map(|h| format!("redis://{h}"))
            .collect::<Vec<_>>(),
    )
    .unwrap()
    .get_async_connection()
    .await
    .unwrap();
    let stored: Option<String> = redis::cmd("HGET")
        .arg(format!("{{{prefix}}}||{a}"))
        .arg("data")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(stored.as_deref(), Some("1"));
}

#[actix_rt::test]
async fn bulk_operations_over_many_slots_are_correct() {
    let (m, _) = mecha("").await;
    let keys: Vec<String> = (0..300).map(|i| format!("bulk{i}")).collect();
    let items: Vec<Value> = keys
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 7 != 3)
        .map(|(i, k)| json!({"key": k, "value": i}))
        .collect();
    let r = m
        .post("/v1.0/state/rc", Value::Array(items).to_string())
        .await;
    assert_eq!(r.status(), 204);
    let body = json!({"keys": keys, "parallelism": 4});
    let r = m.post("/v1.0/state/rc/bulk", body.to_string()).await;
    assert_eq!(r.status(), 200);
    let got: Vec<Value> = r.json().await.unwrap();
    assert_eq!(got.len(), keys.len());
    let by_key: HashMap<String, &Value> = got
        .iter()
        .map(|g| (g["key"].as_str().unwrap().to_owned(), g))
        .collect();
    for (i, k) in keys.iter().enumerate() {
        let item = by_key[k];
        if i % 7 == 3 {
            assert!(item.get("data").is_none(), "{k}: {item}");
        } else {
            assert_eq!(item["data"], json!(i), "{k}: {item}");
            assert!(item["etag"].as_str().is_some_and(|e| !e.is_empty()));
        }
    }
    // A bulk save with one stale ETag among many slots fails only that item.
    let (_, etag0) = value(&m, "rc", "bulk0").await.unwrap();
    let items = json!([
        {"key": "bulk0", "value": "new", "etag": etag0},
        {"key": "bulk1", "value": "new", "etag": "999999"},
        {"key": "bulk2", "value": "new"},
    ]);
    let r = m.post("/v1.0/state/rc", items.to_string()).await;
    assert_eq!(r.status(), 409);
    assert_eq!(value(&m, "rc", "bulk0").await.unwrap().0, json!("new"));
    assert_eq!(value(&m, "rc", "bulk1").await.unwrap().0, json!(1));
    assert_eq!(value(&m, "rc", "bulk2").await.unwrap().0, json!("new"));
    // A transaction deleting keys of two slots is refused; deleting them one by one works
    // (bulk delete over slots is in the conformance suite, `redis_cluster_spread`).
    let deletes: Vec<Value> = keys
        .iter()
        .take(2)
        .map(|k| json!({"operation": "delete", "request": {"key": k}}))
        .collect();
    let r = m
        .post(
            "/v1.0/state/rc/transaction",
            json!({ "operations": deletes }).to_string(),
        )
        .await;
    assert_eq!(r.status(), 500);
    assert_eq!(value(&m, "rc", "bulk0").await.unwrap().0, json!("new"));
}

#[actix_rt::test]
async fn strong_consistency_waits_for_a_replica_of_the_slot() {
    // Every primary of the test cluster has one replica: WAIT 1 is met, WAIT 2 is not.
    let (m, _) = mecha("  - name: redisReplicas\n    value: \"1\"\n").await;
    let body = json!([{"key": "s", "value": 1, "options": {"consistency": "strong"}}]);
    let r = m.post("/v1.0/state/rc", body.to_string()).await;
    assert_eq!(r.status(), 204, "{:?}", r.text().await);
    let (m2, _) = mecha(
        "  - name: redisReplicas\n    value: \"2\"\n  - name: waitTimeout\n    value: 200ms\n",
    )
    .await;
    let r = m2.post("/v1.0/state/rc", body.to_string()).await;
    let (status, _, message, _) = error_of(r).await;
    assert_eq!(status, 500);
    assert!(message.contains("1 of 2 replicas"), "{message}");
}

/// A six-node Redis Cluster this test owns (3 primaries, 3 replicas), cluster node timeout
/// 1 s; every node is killed on drop.
struct PrivateCluster {
    ports: Vec<u16>,
    nodes: HashMap<u16, Child>,
    dir: tempfile::TempDir,
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        for (_, mut c) in self.nodes.drain() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run redis-cli ({e}); scripts/test.sh installs it"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl PrivateCluster {
    fn start(base: u16) -> PrivateCluster {
        let dir = tempfile::tempdir().unwrap();
        let ports: Vec<u16> = (1..=6).map(|i| base + i).collect();
        let mut nodes = HashMap::new();
        for &port in &ports {
            let d = dir.path().join(port.to_string());
            std::fs::create_dir_all(&d).unwrap();
            let child = Command::new("redis-server")
                .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
                .args(["--dir", d.to_str().unwrap()])
                .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "1000"])
                // Replicas sync at once (the default waits 5 s to batch diskless syncs), and
                // a replica that never synced cannot be promoted.
                .args(["--repl-diskless-sync-delay", "0"])
                .args(["--save", "", "--appendonly", "no"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("cannot start redis-server ({e}); scripts/test.sh installs it")
                });
            nodes.insert(port, child);
        }
        let cluster = PrivateCluster { ports, nodes, dir };
        for &p in &cluster.ports {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !redis_cli(p, &["ping"]).contains("PONG") {
                assert!(Instant::now() < deadline, "node {p} did not come up");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let addrs: Vec<String> = cluster
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        cluster.wait_ok(&cluster.ports.clone(), Duration::from_secs(20));
        // Every replica attached to its primary.
        let deadline = Instant::now() + Duration::from_secs(20);
        while cluster.replicas().len() < 3 {
            assert!(Instant::now() < deadline, "replicas did not attach");
            std::thread::sleep(Duration::from_millis(100));
        }
        for r in cluster.replicas() {
            while !redis_cli(r, &["info", "replication"]).contains("master_link_status:up") {
                assert!(Instant::now() < deadline, "replica {r} did not sync");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        cluster
    }

    fn seeds(&self) -> String {
        self.ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn wait_ok(&self, ports: &[u16], within: Duration) {
        let deadline = Instant::now() + within;
        for &p in ports {
            while !redis_cli(p, &["cluster", "info"]).contains("cluster_state:ok") {
                assert!(Instant::now() < deadline, "cluster not ok on {p}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// `(port, role)` of every live node as node `from` sees it: role "master" or "slave".
    fn roles(&self, from: u16) -> Vec<(u16, String)> {
        redis_cli(from, &["cluster", "nodes"])
            .lines()
            .filter(|l| !l.contains("fail"))
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let port = f
                    .get(1)?
                    .split('@')
                    .next()?
                    .rsplit(':')
                    .next()?
                    .parse()
                    .ok()?;
                let role = if f.get(2)?.contains("master") {
                    "master"
                } else {
                    "slave"
                };
                Some((port, role.to_owned()))
            })
            .collect()
    }

    fn replicas(&self) -> Vec<u16> {
        self.roles(self.ports[0])
            .into_iter()
            .filter(|(_, r)| r == "slave")
            .map(|(p, _)| p)
            .collect()
    }

    /// The first node still running.
    fn live(&self) -> u16 {
        *self
            .ports
            .iter()
            .find(|p| self.nodes.contains_key(p))
            .unwrap()
    }

    /// The primary serving the slot of `key` (a stored Redis key), as a live node sees it.
    fn primary_of(&self, key: &str) -> u16 {
        self.owner_of(key).expect("a primary serves the key's slot")
    }

    /// The primary serving the slot of `key`, if any primary does.
    fn owner_of(&self, key: &str) -> Option<u16> {
        let from = self.live();
        let slot: u16 = redis_cli(from, &["cluster", "keyslot", key])
            .trim()
            .parse()
            .unwrap();
        // CLUSTER NODES lines: "<id> <host:port@bus> <flags> <primary> <ping> <pong> <epoch> <link> <ranges…>".
        for line in redis_cli(from, &["cluster", "nodes"]).lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if !f
                .get(2)
                .is_some_and(|r| r.contains("master") && !r.contains("fail"))
            {
                continue;
            }
            for range in f.iter().skip(8) {
                let (lo, hi) = range.split_once('-').unwrap_or((range, range));
                if let (Ok(lo), Ok(hi)) = (lo.parse::<u16>(), hi.parse::<u16>())
                    && (lo..=hi).contains(&slot)
                {
                    return f[1].split('@').next()?.rsplit(':').next()?.parse().ok();
                }
            }
        }
        None
    }

    fn kill(&mut self, port: u16) {
        let mut c = self.nodes.remove(&port).expect("a live node");
        c.kill().unwrap();
        c.wait().unwrap();
    }
}

#[actix_rt::test]
async fn a_primary_failover_under_load_fails_fast_recovers_and_keeps_acknowledged_strong_writes() {
    let mut cluster = PrivateCluster::start(21100);
    let yaml = component(
        "rc",
        &cluster.seeds(),
        "  - name: keyPrefix\n    value: none\n  - name: dialTimeout\n    value: 500ms\n  - name: readTimeout\n    value: 1s\n  - name: redisReplicas\n    value: \"1\"\n  - name: waitTimeout\n    value: 1s\n",
    );
    let m = Arc::new(
        TestMecha::empty()
            .yaml(&yaml)
            .settings("actors:\n  requestTimeout: 3s\n  healthInterval: 200ms\n")
            .start()
            .await,
    );
    // Keys over every slot range; the victim is the primary of the first key.
    const KEYS: usize = 12;
    let keys: Vec<String> = (0..KEYS).map(|i| format!("ctr{i}")).collect();
    for k in &keys {
        m.save("rc", k, json!(0)).await;
    }
    let victim = cluster.primary_of(&keys[0]);
    let victim_keys: Vec<&String> = keys
        .iter()
        .filter(|k| cluster.primary_of(k) == victim)
        .collect();

    // Bounded load: one worker per key, each incrementing its counter with ETag-guarded,
    // strong writes; it records the highest value Mecha acknowledged.
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicUsize::new(0));
    let slowest_ms = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for k in keys.clone() {
        let (m, stop, errors, slowest_ms) =
            (m.clone(), stop.clone(), errors.clone(), slowest_ms.clone());
        workers.push(actix_rt::spawn(async move {
            let mut acked = 0i64;
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let r = m.get(&format!("/v1.0/state/rc/{k}")).await;
                let ok = if r.status() == 200 {
                    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
                    let n: i64 = r.json().await.unwrap();
                    let body = json!([{"key": k, "value": n + 1, "etag": etag, "options": {"consistency": "strong"}}]);
                    let s = m.post("/v1.0/state/rc", body.to_string()).await.status();
                    if s == 204 {
                        acked = n + 1;
                    }
                    s == 204 || s == 409
                } else {
                    false
                };
                let took = started.elapsed();
                slowest_ms.fetch_max(took.as_millis() as u64, Ordering::Relaxed);
                if !ok {
                    errors.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            (k, acked)
        }));
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    let errors_before = errors.load(Ordering::Relaxed);
    assert_eq!(errors_before, 0, "errors before the failover");

    cluster.kill(victim);
    let killed = Instant::now();
    // The victim's replica is promoted (the survivors see it serve the victim's slots).
    let survivors: Vec<u16> = cluster
        .ports
        .iter()
        .copied()
        .filter(|p| *p != victim)
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    while cluster.owner_of(&keys[0]).is_none_or(|p| p == victim) {
        assert!(Instant::now() < deadline, "no replica was promoted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cluster.wait_ok(&survivors, Duration::from_secs(20));
    let elected = killed.elapsed();
    // Mecha recovers by itself: a write to a key of the killed primary succeeds again.
    let probe = victim_keys[0].clone();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = m.get(&format!("/v1.0/state/rc/{probe}")).await;
        if r.status() == 200 {
            // A key of the same slot (hash tag), so the counter itself is left alone.
            let body = json!([{"key": format!("{{{probe}}}-probe"), "value": 1}]);
            let r = m.post("/v1.0/state/rc", body.to_string()).await;
            if r.status() == 204 {
                break;
            }
            eprintln!(
                "{:?} write: {} {:?}",
                killed.elapsed(),
                r.status(),
                r.text().await
            );
        } else {
            eprintln!(
                "{:?} read: {} {:?}",
                killed.elapsed(),
                r.status(),
                r.text().await
            );
        }
        assert!(
            Instant::now() < deadline,
            "no recovery {:?} after the election",
            killed.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let recovered = killed.elapsed();
    // Health follows: healthy again with the dead primary still listed as failed.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = m.get("/v1.0/healthz").await;
        if r.status() == 204 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still unhealthy: {:?}",
            r.text().await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut acked = Vec::new();
    for w in workers {
        acked.push(w.await.unwrap());
    }
    let errors_during = errors.load(Ordering::Relaxed);
    let slowest = Duration::from_millis(slowest_ms.load(Ordering::Relaxed));
    eprintln!(
        "failover: election {elected:?}, Mecha recovered {recovered:?} after the kill, {errors_during} failed requests, slowest request {slowest:?}"
    );
    assert!(
        errors_during > 0,
        "the kill caused no failed request at all"
    );
    // Fail fast: no request waited for the election to end (read 1 s + write 1 s + WAIT 1 s).
    assert!(slowest < Duration::from_millis(3500), "{slowest:?}");
    // Every write acknowledged with WAIT 1 survives the failover: each counter is at least
    // the highest value acknowledged for it, and the workers kept going afterwards.
    for (k, n) in &acked {
        let r = m.get(&format!("/v1.0/state/rc/{k}")).await;
        assert_eq!(r.status(), 200);
        let now: i64 = r.json().await.unwrap();
        assert!(now >= *n, "{k}: acknowledged {n}, now {now}");
        assert!(*n > 0, "{k}: no write acknowledged at all");
    }
    // The old primary's keys were served by the promoted replica.
    assert!(
        victim_keys.iter().all(|k| cluster.primary_of(k) != victim),
        "{victim} still serves its slots"
    );
    assert!(cluster.dir.path().exists());
}
