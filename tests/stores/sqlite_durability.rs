//! Durability: the real `mecha` binary on SQLite (a database file, WAL with synchronous=FULL,
//! the default) is killed with SIGKILL in the middle of a stream of writes; after a restart on
//! the same file every write it acknowledged (single saves, bulk saves and transactions) reads
//! back with the acknowledged value. No service needed.

use crate::support;

use support::binary::Process;
use support::writes::{acknowledged_before_sigkill, assert_all_present};

fn spawn_mecha(resources: &std::path::Path) -> Process {
    Process::spawn(&["--resources-path", resources.to_str().unwrap()], &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("durable.db");
    let component = format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: lite\nspec:\n  type: state.sqlite\n  version: v1\n  metadata:\n  - name: connectionString\n    value: {}\n",
        serde_json::to_string(db.to_str().unwrap()).unwrap()
    );
    std::fs::write(dir.path().join("lite.yaml"), component).unwrap();

    let mut first = spawn_mecha(dir.path());
    let acked = acknowledged_before_sigkill(&mut first, "lite").await;
    let second = spawn_mecha(dir.path());
    assert_all_present(&second.base(), "lite", &acked).await;
    drop(second);
}
