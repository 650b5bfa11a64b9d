//! Many Mecha replicas on the same stores: three `mecha` processes (the real binary) serve one
//! etcd cluster (`ETCD_ENDPOINTS`, default the three-member cluster `scripts/test.sh` starts),
//! one PostgreSQL (`DATABASE_URL`) and one Redis Cluster (`REDIS_CLUSTER_NODES`, default the
//! six-node cluster `scripts/test.sh` starts), and the tests drive them together. Every guarantee
//! that must hold across replicas is decided in the store: ETag-guarded counters end exact, a
//! same-ETag race has one winner, transactions stay all-or-nothing, and killing a replica (and
//! an etcd member of a private cluster) loses no acknowledged write.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support;
use crate::support::services::{database_url, etcd_endpoints, redis_cluster_nodes};

use support::binary::Process;

fn unique(prefix: &str) -> String {
    format!("{prefix}_{:016x}", rand::random::<u64>())
}

/// One `mecha` process; killed (SIGKILL) when dropped.
struct Replica {
    process: Process,
    base: String,
}

/// A components directory with an etcd store `etcd` and a PostgreSQL store `pg`, each under
/// names of its own, and the PostgreSQL table dropped at the end.
struct Setup {
    dir: tempfile::TempDir,
    table: String,
}

impl Drop for Setup {
    fn drop(&mut self) {
        let (url, table) = (database_url(), self.table.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                    .await
                    .ok()?;
                tokio::spawn(conn);
                c.batch_execute(&format!("DROP TABLE IF EXISTS \"{table}\""))
                    .await
                    .ok()
            })
        })
        .join();
    }
}

fn setup(etcd: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let table = unique("replicas");
    let prefix = unique("mecha-replicas");
    std::fs::write(
        dir.path().join("stores.yaml"),
        format!(
            "kind: Component\nmetadata:\n  name: etcd\nspec:\n  type: state.etcd\n  version: v2\n  metadata:\n  - name: endpoints\n    value: {etcd}\n  - name: keyPrefixPath\n    value: {prefix}\n  - name: requestTimeout\n    value: 2s\n  - name: connectTimeout\n    value: 2s\n---\nkind: Component\nmetadata:\n  name: pg\nspec:\n  type: state.postgresql\n  metadata:\n  - name: connectionString\n    value: {}\n  - name: tableName\n    value: {table}\n",
            database_url()
        ),
    )
    .unwrap();
    // Redis Cluster twice under a key prefix of this run: `rc` keeps all keys of the prefix
    // in one hash slot (clusterKeyPlacement: prefix, so transactions work), `rcs` spreads
    // them over slots by their own names (the default).
    let redis_prefix = unique("replicas");
    let nodes = redis_cluster_nodes();
    std::fs::write(
        dir.path().join("redis.yaml"),
        format!(
            "kind: Component\nmetadata:\n  name: rc\nspec:\n  type: state.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    value: \"{nodes}\"\n  - name: redisType\n    value: cluster\n  - name: clusterKeyPlacement\n    value: prefix\n  - name: keyPrefix\n    value: {redis_prefix}\n---\nkind: Component\nmetadata:\n  name: rcs\nspec:\n  type: state.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    value: \"{nodes}\"\n  - name: redisType\n    value: cluster\n  - name: keyPrefix\n    value: {redis_prefix}s\n"
        ),
    )
    .unwrap();
    Setup { dir, table }
}

/// Starts one replica on free ports and waits until it serves.
fn spawn(setup: &Setup) -> Replica {
    let process = Process::spawn(
        &[
            "run",
            "--resources-path",
            setup.dir.path().to_str().unwrap(),
        ],
        &[],
    );
    Replica {
        base: process.base(),
        process,
    }
}

fn replicas(setup: &Setup) -> Vec<Replica> {
    (0..3).map(|_| spawn(setup)).collect()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Reads a JSON number and its ETag; `None` when missing.
async fn read(c: &reqwest::Client, base: &str, store: &str, key: &str) -> Option<(i64, String)> {
    let r = c
        .get(format!("{base}/v1.0/state/{store}/{key}"))
        .send()
        .await
        .unwrap();
    if r.status() == 204 {
        return None;
    }
    assert_eq!(r.status(), 200, "{base} {store}/{key}");
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    Some((r.json::<i64>().await.unwrap(), etag))
}

async fn save(c: &reqwest::Client, base: &str, store: &str, body: Value) -> u16 {
    c.post(format!("{base}/v1.0/state/{store}"))
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Every shared store: etcd, PostgreSQL and Redis Cluster (one hash slot per key prefix, and
/// keys spread over slots).
const STORES: [&str; 4] = ["etcd", "pg", "rc", "rcs"];

/// The stores where transactions over any keys are atomic (`rcs` refuses keys of two slots).
const TX_STORES: [&str; 3] = ["etcd", "pg", "rc"];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn guarded_counters_through_all_replicas_end_exact() {
    let setup = setup(&etcd_endpoints());
    let rs = replicas(&setup);
    let bases: Vec<String> = rs.iter().map(|r| r.base.clone()).collect();
    let c = client();
    const WORKERS_PER_REPLICA: usize = 3;
    const INCREMENTS: i64 = 8;
    for store in STORES {
        assert_eq!(
            save(&c, &bases[0], store, json!([{"key": "ctr", "value": 0}])).await,
            204
        );
        let conflicts = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for base in &bases {
            for _ in 0..WORKERS_PER_REPLICA {
                let (c, base, conflicts) = (c.clone(), base.clone(), conflicts.clone());
                tasks.push(tokio::spawn(async move {
                    let mut done = 0;
                    while done < INCREMENTS {
                        let (n, etag) = read(&c, &base, store, "ctr").await.unwrap();
                        let body = json!([{"key": "ctr", "value": n + 1, "etag": etag}]);
                        match save(&c, &base, store, body).await {
                            204 => done += 1,
                            409 => {
                                conflicts.fetch_add(1, Ordering::Relaxed);
                            }
                            other => panic!("{store} via {base}: status {other}"),
                        }
                    }
                }));
            }
        }
        for t in tasks {
            t.await.unwrap();
        }
        let want = (bases.len() * WORKERS_PER_REPLICA) as i64 * INCREMENTS;
        for base in &bases {
            let (n, _) = read(&c, base, store, "ctr").await.unwrap();
            assert_eq!(n, want, "{store} via {base}");
        }
        // The replicas really did race: some guarded writes lost and were retried.
        assert!(
            conflicts.load(Ordering::Relaxed) > 0,
            "{store}: no contention"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_twenty_way_same_etag_race_across_replicas_has_one_winner() {
    let setup = setup(&etcd_endpoints());
    let rs = replicas(&setup);
    let c = client();
    for store in STORES {
        for round in 0..3 {
            let key = format!("race{round}");
            assert_eq!(
                save(&c, &rs[0].base, store, json!([{"key": key, "value": 0}])).await,
                204
            );
            let (_, etag) = read(&c, &rs[1].base, store, &key).await.unwrap();
            let tasks: Vec<_> = (0..20)
                .map(|i| {
                    let (c, base, etag, key) =
                        (c.clone(), rs[i % 3].base.clone(), etag.clone(), key.clone());
                    tokio::spawn(async move {
                        save(
                            &c,
                            &base,
                            store,
                            json!([{"key": key, "value": i + 1, "etag": etag}]),
                        )
                        .await
                    })
                })
                .collect();
            let mut statuses = Vec::new();
            for t in tasks {
                statuses.push(t.await.unwrap());
            }
            let winners: Vec<usize> = (0..20).filter(|i| statuses[*i] == 204).collect();
            assert_eq!(winners.len(), 1, "{store}: {statuses:?}");
            assert!(
                statuses.iter().all(|s| *s == 204 || *s == 409),
                "{statuses:?}"
            );
            for r in &rs {
                let (v, _) = read(&c, &r.base, store, &key).await.unwrap();
                assert_eq!(v, winners[0] as i64 + 1, "{store}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transfers_in_transactions_across_replicas_stay_all_or_nothing() {
    let setup = setup(&etcd_endpoints());
    let rs = replicas(&setup);
    let bases: Vec<String> = rs.iter().map(|r| r.base.clone()).collect();
    let c = client();
    const ACCOUNTS: usize = 4;
    for store in TX_STORES {
        let init: Vec<Value> = (0..ACCOUNTS)
            .map(|i| json!({"key": format!("acct{i}"), "value": 100}))
            .collect();
        assert_eq!(save(&c, &bases[0], store, Value::Array(init)).await, 204);
        let failed = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for (w, base) in bases.iter().cycle().take(9).enumerate() {
            let (c, base, failed) = (c.clone(), base.clone(), failed.clone());
            tasks.push(tokio::spawn(async move {
                let mut done = 0;
                let mut i = w;
                while done < 6 {
                    i += 1;
                    // An offset of 1..ACCOUNTS-1: never the same account.
                    let (from, to) = (
                        format!("acct{}", i % ACCOUNTS),
                        format!("acct{}", (i + 1 + w % (ACCOUNTS - 1)) % ACCOUNTS),
                    );
                    let (a, ea) = read(&c, &base, store, &from).await.unwrap();
                    let (b, eb) = read(&c, &base, store, &to).await.unwrap();
                    let tx = json!({"operations": [
                        {"operation": "upsert", "request": {"key": from, "value": a - 7, "etag": ea}},
                        {"operation": "upsert", "request": {"key": to, "value": b + 7, "etag": eb}}
                    ]});
                    let r = c
                        .post(format!("{base}/v1.0/state/{store}/transaction"))
                        .body(tx.to_string())
                        .send()
                        .await
                        .unwrap();
                    match r.status().as_u16() {
                        204 => done += 1,
                        // A stale ETag fails the whole transaction (Dapr's ERR_STATE_TRANSACTION).
                        500 => {
                            let e: Value = r.json().await.unwrap();
                            assert_eq!(e["errorCode"], "ERR_STATE_TRANSACTION", "{e}");
                            failed.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(rand::random_range(0..20))).await;
                        }
                        other => panic!("{store}: status {other}: {:?}", r.text().await),
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        for base in &bases {
            let mut sum = 0;
            for i in 0..ACCOUNTS {
                sum += read(&c, base, store, &format!("acct{i}")).await.unwrap().0;
            }
            assert_eq!(
                sum,
                100 * ACCOUNTS as i64,
                "{store} via {base}: money appeared or vanished"
            );
        }
        assert!(
            failed.load(Ordering::Relaxed) > 0,
            "{store}: no transaction ever conflicted"
        );
    }
}

// === failure: a private etcd cluster whose member the test kills ===

/// A three-member etcd cluster on private ports, in a temp dir; killed when dropped.
struct PrivateEtcd {
    members: Vec<Option<Child>>,
    endpoints: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Drop for PrivateEtcd {
    fn drop(&mut self) {
        for m in self.members.iter_mut().flatten() {
            let _ = m.kill();
            let _ = m.wait();
        }
    }
}

async fn private_etcd(client_base: u16, peer_base: u16) -> PrivateEtcd {
    let dir = tempfile::tempdir().unwrap();
    let cluster: Vec<String> = (1..=3)
        .map(|i| format!("r{i}=http://127.0.0.1:{}", peer_base + i))
        .collect();
    let mut members = Vec::new();
    let mut endpoints = Vec::new();
    for i in 1..=3u16 {
        let client = format!("http://127.0.0.1:{}", client_base + i);
        let peer = format!("http://127.0.0.1:{}", peer_base + i);
        let log = std::fs::File::create(dir.path().join(format!("r{i}.log"))).unwrap();
        let child = Command::new("etcd")
            .args([
                "--name",
                &format!("r{i}"),
                "--data-dir",
                dir.path().join(format!("r{i}")).to_str().unwrap(),
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
                "--initial-cluster",
                &cluster.join(","),
                "--initial-cluster-token",
                "mecha-replicas",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd is installed (scripts/test.sh installs etcd-server)");
        members.push(Some(child));
        endpoints.push(client);
    }
    let c = client();
    let deadline = Instant::now() + Duration::from_secs(30);
    for e in &endpoints {
        loop {
            let ok = match c.get(format!("{e}/health")).send().await {
                Ok(r) => r.text().await.unwrap_or_default().contains("\"true\""),
                Err(_) => false,
            };
            if ok {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "private etcd member {e} did not come up"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    PrivateEtcd {
        members,
        endpoints,
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_a_replica_and_an_etcd_member_loses_no_acknowledged_write() {
    let etcd = private_etcd(24790, 24800).await;
    let mut etcd = etcd;
    let setup = setup(&etcd.endpoints.join(","));
    let mut rs = replicas(&setup);
    let bases: Vec<String> = rs.iter().map(|r| r.base.clone()).collect();
    let c = client();
    let stop = Arc::new(AtomicBool::new(false));
    let killed = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..6usize {
        let (c, bases, stop, killed) = (c.clone(), bases.clone(), stop.clone(), killed.clone());
        let store = STORES[w % 2];
        writers.push(tokio::spawn(async move {
            let mut acked: Vec<(String, i64)> = Vec::new();
            let mut acked_after_kill = 0;
            let mut i = 0i64;
            let mut target = w;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("w{w}-{i}");
                let base = &bases[target % bases.len()];
                let body = json!([{"key": key, "value": i}]);
                let sent = c
                    .post(format!("{base}/v1.0/state/{store}"))
                    .body(body.to_string())
                    .send()
                    .await;
                match sent.map(|r| r.status().as_u16()) {
                    Ok(204) => {
                        acked.push((key, i));
                        if killed.load(Ordering::Relaxed) {
                            acked_after_kill += 1;
                        }
                        i += 1;
                    }
                    // A dead replica or a store error during the election: not acknowledged,
                    // so nothing is promised; the client moves to another replica.
                    _ => {
                        target += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
                target += 1;
            }
            (store, acked, acked_after_kill)
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // SIGKILL: no graceful shutdown for replica 0; and etcd member 1 dies too.
    let mut dead = rs.remove(0);
    dead.process.kill();
    if let Some(mut m) = etcd.members[0].take() {
        m.kill().unwrap();
        m.wait().unwrap();
    }
    killed.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for w in writers {
        let (store, acked, after) = w.await.unwrap();
        assert!(!acked.is_empty(), "{store}: no write was acknowledged");
        assert!(after > 0, "{store}: no write succeeded after the kill");
        for r in &rs {
            for (key, v) in &acked {
                let got = read(&c, &r.base, store, key).await;
                assert_eq!(got.map(|g| g.0), Some(*v), "{store}/{key} via {}", r.base);
            }
        }
        total += acked.len();
    }
    assert!(total > 20, "too few writes to mean anything: {total}");
}
