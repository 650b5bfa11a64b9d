//! Durability: the real `mecha` binary on PostgreSQL is killed with SIGKILL in the middle of a
//! stream of writes; after a restart every write it acknowledged (single saves, bulk saves and
//! transactions) reads back with the acknowledged value. Needs PostgreSQL (`DATABASE_URL`).

use crate::support;
use crate::support::services::{database_url, drop_pg_table};

use support::binary::Process;
use support::writes::{acknowledged_before_sigkill, assert_all_present};

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
    let acked = acknowledged_before_sigkill(&mut first, "pg").await;
    let second = spawn_mecha(dir.path());
    assert_all_present(&second.base(), "pg", &acked).await;
    drop(second);
    drop_pg_table(&table);
}
