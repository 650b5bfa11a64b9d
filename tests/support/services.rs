//! The shared services the tests use: the addresses `scripts/test.sh` exports (`REDIS_URL`,
//! `DATABASE_URL`, `NATS_URL`, `ETCD_ENDPOINTS`, `REDIS_CLUSTER_NODES`), or the local
//! defaults it starts, and the clean-up of what a test created on them. A test that needs an
//! unreachable service fails, never skips.

/// `REDIS_URL`, or the local default.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// `REDIS_URL` as a `redisHost` value (`host:port`).
pub fn redis_host() -> String {
    let url = redis_url();
    url.strip_prefix("redis://").unwrap_or(&url).to_owned()
}

/// The seed nodes of the test Redis Cluster: `REDIS_CLUSTER_NODES`, or the private cluster
/// `scripts/services.sh` starts (ports 27001-27006).
pub fn redis_cluster_nodes() -> String {
    std::env::var("REDIS_CLUSTER_NODES").unwrap_or_else(|_| {
        (1..=6)
            .map(|i| format!("127.0.0.1:2700{i}"))
            .collect::<Vec<_>>()
            .join(",")
    })
}

/// `DATABASE_URL`, or the local PostgreSQL.
pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/test".into())
}

/// `NATS_URL`, or the local nats-server with JetStream.
pub fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// `ETCD_ENDPOINTS`, or the three-member cluster `scripts/test.sh` starts.
pub fn etcd_endpoints() -> String {
    std::env::var("ETCD_ENDPOINTS").unwrap_or_else(|_| {
        "http://127.0.0.1:23791,http://127.0.0.1:23792,http://127.0.0.1:23793".into()
    })
}

/// Runs `job` on a thread and runtime of its own and waits for it: the clean-ups below are
/// called from `Drop`, maybe inside a test's runtime. Best effort.
fn on_own_runtime<F: std::future::Future + Send + 'static>(
    job: impl FnOnce() -> F + Send + 'static,
) {
    let _ = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        rt.block_on(job());
        Some(())
    })
    .join();
}

/// Drops a PostgreSQL test table of `DATABASE_URL`, its sequence and its metadata rows.
pub fn drop_pg_table(table: &str) {
    let (url, table) = (database_url(), table.to_owned());
    on_own_runtime(move || async move {
        let Ok((client, conn)) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await else {
            return;
        };
        tokio::spawn(conn);
        let _ = client
            .batch_execute(&format!(
                "DROP TABLE IF EXISTS \"{table}\"; DROP SEQUENCE IF EXISTS \"{table}_version_seq\"; \
                 DELETE FROM dapr_metadata WHERE key LIKE '%:{table}'"
            ))
            .await;
    });
}

/// Deletes a JetStream KV bucket of `NATS_URL`.
pub fn delete_kv_bucket(bucket: &str) {
    let (url, bucket) = (nats_url(), bucket.to_owned());
    on_own_runtime(move || async move {
        if let Ok(client) = async_nats::connect(url).await {
            let _ = async_nats::jetstream::new(client)
                .delete_key_value(&bucket)
                .await;
        }
    });
}
