//! Builds backends for the conformance suite from Dapr component metadata.

use std::path::Path;
use std::sync::Arc;

use mecha::actors::backends::in_memory::{InMemoryStore, SystemClock};
use mecha::actors::emulation;
use mecha::actors::{StateStore, StoreError, StoreFactory};
use mecha::capabilities::{Capability, CapabilitySet, Matrix, StoreTraits};
use mecha::config::parse_components;

/// A store under test, its declared capabilities and a key base unique to this test.
pub struct Backend {
    pub store: Arc<dyn StateStore>,
    pub caps: CapabilitySet,
    pub base: String,
    /// Runs when the test ends (pass or panic), e.g. to drop the test's table.
    pub teardown: Option<Box<dyn FnOnce() + Send>>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Some(f) = self.teardown.take() {
            f();
        }
    }
}

impl Backend {
    /// A key under this test's base.
    pub fn key(&self, suffix: &str) -> String {
        format!("{}||{suffix}", self.base)
    }
}

/// Builds a backend from a component type and `(name, value)` metadata, as a user's
/// component file would.
pub fn from_component(component_type: &str, metadata: &[(&str, String)]) -> Backend {
    let mut yaml = format!(
        "kind: Component\nmetadata:\n  name: conformance\nspec:\n  type: {component_type}\n  metadata:\n"
    );
    for (k, v) in metadata {
        yaml.push_str(&format!(
            "  - name: {k}\n    value: {}\n",
            serde_json::to_string(v).unwrap()
        ));
    }
    yaml.push_str("  - name: keyPrefix\n    value: none\n");
    let (components, _) = parse_components(&[(Path::new("conformance.yaml"), &yaml)], &|_| None)
        .unwrap_or_else(|e| panic!("component for {component_type} is invalid: {e:?}"));
    effective(components[0].factory.clone())
}

/// A backend as Mecha runs it: wrapped in the emulations its effective matrix (no policy:
/// emulate what is correct, reject the rest) decides, and judged by its effective
/// capabilities (native or emulated), so the suite proves emulations as well.
pub fn effective(factory: Arc<dyn StoreFactory>) -> Backend {
    let traits = StoreTraits {
        native: factory.capabilities(),
        lists_keys: factory.lists_keys(),
        max_transaction_ops: factory.max_transaction_ops().unwrap_or(1000),
    };
    let matrix = Matrix::without_policy(traits, mecha::capabilities::Baseline::Compatible);
    let factory = emulation::wrap(factory, &matrix, emulation::DEFAULT_SWEEP_INTERVAL);
    Backend {
        store: factory.create().expect("store instance"),
        caps: matrix.effective(),
        base: format!("conf-{:016x}", rand::random::<u64>()),
        teardown: None,
    }
}

/// The in-memory backend declared as a key-value store with compare-and-set and key listing
/// only (the shape of NATS JetStream KV): TTL and bulk are emulated by Mecha.
pub async fn kv_in_memory() -> Backend {
    struct Kv(Arc<InMemoryStore>);
    impl StoreFactory for Kv {
        fn create(&self) -> Result<Arc<dyn StateStore>, StoreError> {
            Ok(self.0.clone())
        }
        fn capabilities(&self) -> CapabilitySet {
            CapabilitySet::of(&[Capability::Etag, Capability::FirstWrite])
        }
        fn lists_keys(&self) -> bool {
            true
        }
    }
    let store = InMemoryStore::new(Arc::new(SystemClock), std::time::Duration::from_secs(3600));
    let b = effective(Arc::new(Kv(Arc::new(store))));
    assert!(b.caps.has(Capability::Ttl), "TTL is emulated on a kv store");
    b
}

/// The in-memory store.
pub async fn in_memory() -> Backend {
    from_component("state.in-memory", &[("sweepInterval", "100ms".into())])
}

/// The Redis URL tests use: `REDIS_URL`, or the local default.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A Redis store on `REDIS_URL`. Fails (never skips) when Redis is unreachable:
/// `scripts/test.sh` starts one.
pub async fn redis() -> Backend {
    let backend = from_component("state.redis", &[("redisHost", redis_url())]);
    if let Err(e) = backend.store.ping().await {
        panic!(
            "Redis at {} is unreachable ({e}); run scripts/test.sh, which starts one",
            redis_url()
        );
    }
    backend
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

/// A store on the test Redis Cluster (`redisType: cluster`), keys spread over hash slots by
/// their own names. Fails (never skips) when the cluster is unreachable.
pub async fn redis_cluster_spread() -> Backend {
    let backend = from_component(
        "state.redis",
        &[
            ("redisHost", redis_cluster_nodes()),
            ("redisType", "cluster".into()),
        ],
    );
    if let Err(e) = backend.store.ping().await {
        panic!(
            "Redis Cluster at {} is unreachable ({e}); run scripts/test.sh, which starts one",
            redis_cluster_nodes()
        );
    }
    backend
}

/// The same store with every key of the test under one hash tag (`{conf-…}||key`), so the
/// multi-key transaction cases run too: on Redis Cluster a transaction is atomic (and
/// accepted) only within one hash slot.
pub async fn redis_cluster() -> Backend {
    let mut backend = redis_cluster_spread().await;
    backend.base = format!("{{{}}}", backend.base);
    backend
}

/// `DATABASE_URL`, or the local default `scripts/test.sh` provides.
pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/test".into())
}

/// PostgreSQL on a table of its own, dropped when the test ends. An unreachable database fails
/// the test (the store's errors surface in the first assertion).
pub async fn postgresql() -> Backend {
    let url = database_url();
    let table = format!("conf_{:016x}", rand::random::<u64>());
    let mut b = from_component(
        "state.postgresql",
        &[
            ("connectionString", url.clone()),
            ("tableName", table.clone()),
            ("cleanupInterval", "1s".into()),
        ],
    );
    b.teardown = Some(Box::new(move || drop_pg_table(url, table)));
    b
}

/// Drops a test table, its sequence and its metadata rows. Runs on its own thread and runtime,
/// because it is called from `Drop` inside the test's runtime. Best effort.
pub fn drop_pg_table(url: String, table: String) {
    let job = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        rt.block_on(async {
            let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.ok()?;
            tokio::spawn(conn);
            let sql = format!(
                "DROP TABLE IF EXISTS \"{table}\"; DROP SEQUENCE IF EXISTS \"{table}_version_seq\"; \
                 DELETE FROM dapr_metadata WHERE key LIKE '%:{table}'"
            );
            client.batch_execute(&sql).await.ok()
        })
    });
    let _ = job.join();
}

/// `NATS_URL`, or the local default `scripts/test.sh` provides.
pub fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// JetStream KV on a bucket of its own (created by the store), deleted when the test ends.
/// Fails (never skips) when NATS is unreachable.
pub async fn jetstream() -> Backend {
    let bucket = format!("conf-{:016x}", rand::random::<u64>());
    let mut b = from_component(
        "state.jetstream",
        &[("natsURL", nats_url()), ("bucket", bucket.clone())],
    );
    if let Err(e) = b.store.ping().await {
        panic!(
            "NATS at {} is unreachable ({e}); run scripts/test.sh, which starts one",
            nats_url()
        );
    }
    b.teardown = Some(Box::new(move || delete_kv_bucket(nats_url(), bucket)));
    b
}

/// Deletes a KV bucket, on its own thread and runtime (called from `Drop`). Best effort.
pub fn delete_kv_bucket(url: String, bucket: String) {
    let job = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        rt.block_on(async {
            let client = async_nats::connect(url).await.ok()?;
            async_nats::jetstream::new(client)
                .delete_key_value(&bucket)
                .await
                .ok()
        })
    });
    let _ = job.join();
}

/// `ETCD_ENDPOINTS`, or the three-member cluster `scripts/test.sh` starts.
pub fn etcd_endpoints() -> String {
    std::env::var("ETCD_ENDPOINTS").unwrap_or_else(|_| {
        "http://127.0.0.1:23791,http://127.0.0.1:23792,http://127.0.0.1:23793".into()
    })
}

/// etcd under a `keyPrefixPath` of its own (keys with a lease expire by themselves; the rest
/// stay under that prefix). Fails (never skips) when etcd is unreachable.
pub async fn etcd() -> Backend {
    let prefix = format!("conf-{:016x}", rand::random::<u64>());
    let b = from_component(
        "state.etcd",
        &[("endpoints", etcd_endpoints()), ("keyPrefixPath", prefix)],
    );
    if let Err(e) = b.store.ping().await {
        panic!(
            "etcd at {} is unreachable ({e}); run scripts/test.sh, which starts a cluster",
            etcd_endpoints()
        );
    }
    b
}

/// SQLite on a private in-memory database (one connection, gone when the test ends).
pub async fn sqlite() -> Backend {
    from_component(
        "state.sqlite",
        &[
            ("connectionString", ":memory:".into()),
            ("cleanupInterval", "1s".into()),
        ],
    )
}

/// `MYSQL_URL` (a Go DSN), or the local MariaDB `scripts/test.sh` provides.
pub fn mysql_dsn() -> String {
    std::env::var("MYSQL_URL").unwrap_or_else(|_| "root:@tcp(127.0.0.1:3306)/test".into())
}

/// MySQL / MariaDB on a database (schema) of its own, dropped when the test ends. An
/// unreachable server fails the test.
pub async fn mysql() -> Backend {
    let schema = format!("conf_{:016x}", rand::random::<u64>());
    let mut b = from_component(
        "state.mysql",
        &[
            ("connectionString", mysql_dsn()),
            ("schemaName", schema.clone()),
            ("cleanupInterval", "1s".into()),
        ],
    );
    b.teardown = Some(Box::new(move || drop_mysql_schema(schema)));
    b
}

/// Drops a test schema. Runs on its own thread and runtime (called from `Drop`). Best effort.
pub fn drop_mysql_schema(schema: String) {
    let job = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        rt.block_on(async {
            use sqlx::Connection;
            let opts = sqlx::mysql::MySqlConnectOptions::new()
                .host("127.0.0.1")
                .port(3306)
                .username("root")
                .ssl_mode(sqlx::mysql::MySqlSslMode::Disabled);
            let mut conn = sqlx::mysql::MySqlConnection::connect_with(&opts)
                .await
                .ok()?;
            sqlx::query(&format!("DROP DATABASE IF EXISTS `{schema}`"))
                .execute(&mut conn)
                .await
                .ok()
        })
    });
    let _ = job.join();
}
