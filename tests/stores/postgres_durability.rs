//! Durability: the real `mecha` binary on PostgreSQL is killed with SIGKILL in the middle of a
//! stream of writes; after a restart every write it acknowledged (single saves, bulk saves and
//! transactions) reads back with the acknowledged value. Needs PostgreSQL (`DATABASE_URL`).

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::json;
use support::binary::Process;
use support::writes::{Acked, writer};

fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/test".into())
}

fn spawn_mecha(resources: &std::path::Path) -> Process {
    Process::spawn(&["--resources-path", resources.to_str().unwrap()], &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_sigkill() {
    let table = format!("dur_{:016x}", rand::random::<u64>());
    let dir = tempfile::tempdir().unwrap();
    let component = format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: pg\nspec:\n  type: state.postgresql\n  version: v1\n  metadata:\n  - name: connectionString\n    value: {}\n  - name: tableName\n    value: {table}\n",
        serde_json::to_string(&database_url()).unwrap()
    );
    std::fs::write(dir.path().join("pg.yaml"), component).unwrap();

    let mut first = spawn_mecha(dir.path());
    let acked: Acked = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..8)
        .map(|id| {
            tokio::spawn(writer(
                id,
                first.base(),
                "pg",
                acked.clone(),
                stop.clone(),
                false,
            ))
        })
        .collect();
    // Let the stream run, then kill without warning while requests are in flight.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    first.kill();
    for w in writers {
        w.await.expect("writer");
    }
    let acked = std::mem::take(&mut *acked.lock());
    assert!(
        acked.len() > 50,
        "only {} writes were acknowledged before the kill",
        acked.len()
    );
    eprintln!("{} acknowledged writes before SIGKILL", acked.len());

    let second = spawn_mecha(dir.path());
    let client = reqwest::Client::new();
    for chunk in acked.chunks(200) {
        let keys: Vec<&str> = chunk.iter().map(|(k, _)| k.as_str()).collect();
        let r = client
            .post(format!("{}/v1.0/state/pg/bulk", second.base()))
            .body(json!({"keys": keys}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let items: Vec<serde_json::Value> = r.json().await.unwrap();
        for ((key, want), got) in chunk.iter().zip(&items) {
            assert_eq!(got["key"], json!(key));
            assert_eq!(
                &got["data"], want,
                "acknowledged write {key} lost or changed after SIGKILL"
            );
        }
    }
    drop(second);
    drop_table(&table).await;
}

async fn drop_table(table: &str) {
    let (client, conn) = tokio_postgres::connect(&database_url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS \"{table}\"; DROP SEQUENCE IF EXISTS \"{table}_version_seq\"; \
             DELETE FROM dapr_metadata WHERE key LIKE '%:{table}'"
        ))
        .await
        .unwrap();
}
