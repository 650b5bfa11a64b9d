//! `consistency: strong` on a Redis primary with a replica, on the built-in defaults (no
//! `redisReplicas`, no `stores:` section): Mecha learns the replicas from the primary, a
//! strong write waits for them (`WAIT`, counted in the primary's `INFO commandstats`), an
//! eventual write does not, and with the replica gone a strong write fails within the
//! wait timeout with an error saying the write is applied but not replicated, while
//! eventual writes go on. Private `redis-server`s on free ports; fails when it is missing.

use crate::support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::servers::{PrivateServer, redis as private_redis, redis_replica_of};
use support::{Mecha, TestMecha, error_of};

fn redis_cmd(server: &PrivateServer, args: &[&str]) -> String {
    let client = redis::Client::open(format!("redis://{}", server.addr())).unwrap();
    let mut conn = client.get_connection().unwrap();
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query::<String>(&mut conn).unwrap()
}

/// `WAIT` calls the server has answered so far.
fn waits(server: &PrivateServer) -> u64 {
    let stats = redis_cmd(server, &["INFO", "commandstats"]);
    stats
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_wait:calls="))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

async fn save(m: &Mecha, key: &str, value: u32, strong: bool) -> reqwest::Response {
    let consistency = if strong { "strong" } else { "eventual" };
    let body = json!([{"key": key, "value": value, "options": {"consistency": consistency}}]);
    m.post("/v1.0/state/cache", body.to_string()).await
}

/// The wait timeout is 1s (below the 2s read timeout that bounds the `WAIT` command): long
/// enough for a replica on a busy machine (tests and builds side by side on two cores) to
/// acknowledge, short enough to measure its expiry.
#[actix_rt::test]
async fn a_strong_write_waits_for_the_replicas_mecha_has_seen() {
    let primary = private_redis();
    let yaml = format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: cache\nspec:\n  type: state.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    value: \"{}\"\n  - name: waitTimeout\n    value: 1s\n",
        primary.addr()
    );
    let m = TestMecha::empty()
        .yaml(&yaml)
        .settings("actors:\n  healthInterval: 100ms\n")
        .start()
        .await;

    // No replica: strong is native, there is nothing to wait for.
    let r = save(&m, "k", 1, true).await;
    assert_eq!(r.status(), 204, "{:?}", error_of(r).await);
    assert_eq!(waits(&primary), 0, "no WAIT without replicas");

    // A replica joins; Mecha sees it at its next health ping, and strong writes wait for it.
    let replica = redis_replica_of(&primary);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let info = redis_cmd(&primary, &["INFO", "replication"]);
        if info.contains("state=online") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the replica never came online: {info}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut n = 2;
    loop {
        let before = waits(&primary);
        let r = save(&m, "k", n, true).await;
        assert_eq!(r.status(), 204, "{:?}", error_of(r).await);
        if waits(&primary) > before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "strong writes never waited for the replica"
        );
        n += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Once acknowledged, the replica has it.
    let stored = redis_cmd(&replica, &["HGET", "testapp||k", "data"]);
    assert_eq!(stored, n.to_string());

    // Eventual writes do not wait.
    let before = waits(&primary);
    let r = save(&m, "k", 100, false).await;
    assert_eq!(r.status(), 204);
    assert_eq!(waits(&primary), before, "an eventual write sent WAIT");

    // The replica goes away: it is still expected, so a strong write fails within the wait
    // timeout and says what happened; eventual writes go on.
    drop(replica);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let r = save(&m, "k", 7, true).await;
    let elapsed = started.elapsed();
    let (status, code, message, _) = error_of(r).await;
    assert_eq!(
        (status, code.as_str()),
        (500, "ERR_STATE_SAVE"),
        "{message}"
    );
    assert!(
        message.contains("applied on the primary but not yet replicated")
            && message.contains("0 of 1 replicas"),
        "{message}"
    );
    assert!(
        elapsed >= Duration::from_secs(1) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
    let r = save(&m, "k", 8, false).await;
    assert_eq!(r.status(), 204, "{:?}", error_of(r).await);
}
