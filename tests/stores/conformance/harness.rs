//! Builds backends for the conformance suite from Dapr component metadata.

use std::path::Path;
use std::sync::Arc;

use mecha::actors::emulation;
use mecha::actors::{StateStore, StoreFactory};
use mecha::capabilities::{Capability, CapabilitySet, Feature, Matrix, Status, StoreTraits};
use mecha::config::parse_components;

use crate::support::KvFactory;
use crate::support::services::{
    database_url, delete_kv_bucket, drop_pg_table, etcd_endpoints, nats_url, redis_cluster_nodes,
    redis_url,
};
use crate::support::sql::mysql_dsn;

/// A store under test, its declared capabilities and a key base unique to this test.
pub struct Backend {
    pub store: Arc<dyn StateStore>,
    pub caps: CapabilitySet,
    pub base: String,
    /// The most keys an emulated query examines (`None`: native query, or none).
    pub query_scan_limit: Option<usize>,
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

/// `limits.maxQueryScan` of the suite's stores: low, so the over-the-limit case stays quick.
pub const CONFORMANCE_MAX_QUERY_SCAN: usize = 300;

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
    let factory = emulation::wrap(
        factory,
        &matrix,
        emulation::DEFAULT_SWEEP_INTERVAL,
        emulation::QueryLimits {
            max_scan: CONFORMANCE_MAX_QUERY_SCAN,
            ..emulation::QueryLimits::default()
        },
    );
    let emulated_query = matrix.status(Feature::Query) == Status::Emulated;
    Backend {
        query_scan_limit: emulated_query.then_some(CONFORMANCE_MAX_QUERY_SCAN),
        store: factory.create().expect("store instance"),
        caps: matrix.effective(),
        base: format!("conf-{:016x}", rand::random::<u64>()),
        teardown: None,
    }
}

/// The in-memory backend declared as a key-value store with compare-and-set and key listing
/// only (the shape of NATS JetStream KV): TTL and bulk are emulated by Mecha.
pub async fn kv_in_memory() -> Backend {
    let b = effective(KvFactory::fresh().1);
    assert!(b.caps.has(Capability::Ttl), "TTL is emulated on a kv store");
    b
}

/// The in-memory store.
pub async fn in_memory() -> Backend {
    from_component("state.in-memory", &[("sweepInterval", "100ms".into())])
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

/// A store on the test Redis Cluster with `clusterKeyPlacement: prefix`: the key prefix is
/// the hash tag (`{conf-…}||key` in Redis), which listings must undo.
pub async fn redis_cluster_by_prefix() -> Backend {
    from_component(
        "state.redis",
        &[
            ("redisHost", redis_cluster_nodes()),
            ("redisType", "cluster".into()),
            ("clusterKeyPlacement", "prefix".into()),
        ],
    )
}

/// The same store with every key of the test under one hash tag (`{conf-…}||key`), so the
/// multi-key transaction cases run too: on Redis Cluster a transaction is atomic (and
/// accepted) only within one hash slot.
pub async fn redis_cluster() -> Backend {
    let mut backend = redis_cluster_spread().await;
    backend.base = format!("{{{}}}", backend.base);
    backend
}

/// PostgreSQL on a table of its own, dropped when the test ends. An unreachable database fails
/// the test (the store's errors surface in the first assertion).
pub async fn postgresql() -> Backend {
    let table = format!("conf_{:016x}", rand::random::<u64>());
    let mut b = from_component(
        "state.postgresql",
        &[
            ("connectionString", database_url()),
            ("tableName", table.clone()),
            ("cleanupInterval", "1s".into()),
        ],
    );
    b.teardown = Some(Box::new(move || drop_pg_table(&table)));
    b
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
    b.teardown = Some(Box::new(move || delete_kv_bucket(&bucket)));
    b
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
