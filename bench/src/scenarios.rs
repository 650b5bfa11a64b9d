//! The scenario table: every scenario the benchmark runs, as data. A scenario names its
//! sides (Mecha and the baselines it is compared with), each side the client it uses
//! (protocol, store, operation), and [`CHECKS`] names the ratios between sides that the
//! report shows, with their targets. `setup` turns each [`Client`] into requests.

/// The stores of the generated resources directory (`process::write_resources`), all
/// seeded through Mecha before the first scenario: keys `k0..` (`--quick`: 100, else 1000)
/// for reads, and `e0..` (one per concurrent worker) for the ETag scenario.
pub const SEEDED_STORES: [&str; 5] = ["mem", "redis", "pg", "mysql", "sqlite"];

/// Concurrent requests of the noisy app in the noisy-neighbour scenario, whatever
/// `--concurrency`.
pub const NOISY_FLOOD_CONCURRENCY: usize = 128;

/// Added p99 latency target (ms) for the latency scenarios with a direct baseline.
pub const ADDED_P99_TARGET_MS: f64 = 0.1;

/// A direct client of a store, sending what Mecha sends (same commands or prepared
/// statements, same keys with Mecha's prefix).
#[derive(Debug, Clone, Copy)]
pub enum Direct {
    /// Multiplexed redis-rs connections: `HMGET key data version expiry`, `EVALSHA` of the
    /// write script.
    Redis,
    /// tokio-postgres connections with Mecha's statements prepared.
    Postgres,
    /// An sqlx pool of the size of Mecha's; a save is `BEGIN`, the upsert, `COMMIT`.
    MySql,
    /// An sqlx pool of the size of Mecha's on the same file; a save as for MySQL.
    Sqlite,
}

/// What one side of a scenario sends, and to whom. `&'static str` fields are Mecha's store
/// (component) names.
#[derive(Debug, Clone, Copy)]
pub enum Client {
    /// HTTP GetState of the seeded keys `k..` on this build of Mecha.
    HttpGet(&'static str),
    /// HTTP SaveState of one item (keys `w..`) on this build of Mecha.
    HttpSave(&'static str),
    /// HTTP bulk get of 10 seeded keys (parallelism 10); counts 10 keys per request.
    HttpBulkGet(&'static str),
    /// HTTP GetState of the worker's own key `e<worker>`, then SaveState of it: with the
    /// ETag just read (`If-Match`) or plainly.
    HttpReadThenSave {
        /// The store.
        store: &'static str,
        /// Whether the save carries the ETag.
        etag: bool,
    },
    /// gRPC GetState of the seeded keys on this build of Mecha.
    GrpcGet(&'static str),
    /// HTTP GetState on the `--baseline-mecha` build (the side is absent without it).
    BaselineHttpGet(&'static str),
    /// gRPC GetState against the empty tonic `Dapr` handler (the framework ceiling), a
    /// process of its own with Mecha's threading.
    EmptyTonicGet,
    /// The direct client's read of the seeded keys.
    DirectGet(Direct),
    /// The direct client's save of one item, as Mecha writes it.
    DirectSave(Direct),
    /// `redis-benchmark -t get` on the same Redis, as a process of its own (throughput only).
    RedisBenchmarkGet,
}

impl Client {
    /// Whether Mecha serves this side (its CPU is measured in the latency runs).
    pub fn served_by_mecha(self) -> bool {
        match self {
            Client::HttpGet(_)
            | Client::HttpSave(_)
            | Client::HttpBulkGet(_)
            | Client::HttpReadThenSave { .. }
            | Client::GrpcGet(_)
            | Client::BaselineHttpGet(_) => true,
            Client::EmptyTonicGet
            | Client::DirectGet(_)
            | Client::DirectSave(_)
            | Client::RedisBenchmarkGet => false,
        }
    }
}

/// One side of a scenario: its label in the report and its client.
#[derive(Debug)]
pub struct SideSpec {
    /// The label in the report.
    pub label: &'static str,
    /// What the side sends.
    pub client: Client,
}

/// A scenario: its sides run alternately, several rounds; side 0 is the one measured, the
/// others are what it is compared with.
#[derive(Debug)]
pub struct Scenario {
    /// Stable id (`--only` matches it; the JSON carries it).
    pub id: &'static str,
    /// The report's title.
    pub title: &'static str,
    /// Throughput unit: requests (`false`) or keys (`true`) per second.
    pub keys: bool,
    /// The sides, in report order.
    pub sides: &'static [SideSpec],
}

impl Scenario {
    /// Whether the report shows the latency Mecha adds: side 0 against a direct client.
    pub fn added_latency(&self) -> bool {
        matches!(
            self.sides,
            [
                _,
                SideSpec {
                    client: Client::DirectGet(_),
                    ..
                }
            ]
        )
    }
}

const fn side(label: &'static str, client: Client) -> SideSpec {
    SideSpec { label, client }
}

const fn scenario(id: &'static str, title: &'static str, sides: &'static [SideSpec]) -> Scenario {
    Scenario {
        id,
        title,
        keys: false,
        sides,
    }
}

/// The throughput scenarios (closed loop), in report order.
pub static THROUGHPUT: &[Scenario] = &[
    scenario(
        "redis_get_http",
        "HTTP GetState via Redis",
        &[
            side("Mecha HTTP", Client::HttpGet("redis")),
            side("direct Redis (HMGET)", Client::DirectGet(Direct::Redis)),
            side("redis-benchmark -t get", Client::RedisBenchmarkGet),
            side("Mecha HTTP, in-memory store", Client::HttpGet("mem")),
        ],
    ),
    scenario(
        "redis_save_http",
        "HTTP SaveState via Redis",
        &[
            side("Mecha HTTP", Client::HttpSave("redis")),
            side(
                "direct Redis (EVALSHA write script)",
                Client::DirectSave(Direct::Redis),
            ),
        ],
    ),
    scenario(
        "redis_get_grpc",
        "gRPC GetState via Redis",
        &[
            side("Mecha gRPC", Client::GrpcGet("redis")),
            side("direct Redis (HMGET)", Client::DirectGet(Direct::Redis)),
            side("Mecha gRPC, in-memory store", Client::GrpcGet("mem")),
            side("empty tonic handler", Client::EmptyTonicGet),
        ],
    ),
    scenario(
        "pg_get_http",
        "HTTP GetState via PostgreSQL",
        &[
            side("Mecha HTTP", Client::HttpGet("pg")),
            side(
                "direct prepared SELECT",
                Client::DirectGet(Direct::Postgres),
            ),
        ],
    ),
    scenario(
        "pg_save_http",
        "HTTP SaveState via PostgreSQL",
        &[
            side("Mecha HTTP", Client::HttpSave("pg")),
            side(
                "direct prepared upsert",
                Client::DirectSave(Direct::Postgres),
            ),
        ],
    ),
    scenario(
        "mysql_get_http",
        "HTTP GetState via MySQL",
        &[
            side("Mecha HTTP", Client::HttpGet("mysql")),
            side("direct prepared SELECT", Client::DirectGet(Direct::MySql)),
        ],
    ),
    scenario(
        "mysql_save_http",
        "HTTP SaveState via MySQL",
        &[
            side("Mecha HTTP", Client::HttpSave("mysql")),
            side("direct prepared upsert", Client::DirectSave(Direct::MySql)),
        ],
    ),
    scenario(
        "sqlite_get_http",
        "HTTP GetState via SQLite",
        &[
            side("Mecha HTTP", Client::HttpGet("sqlite")),
            side("direct prepared SELECT", Client::DirectGet(Direct::Sqlite)),
        ],
    ),
    scenario(
        "sqlite_save_http",
        "HTTP SaveState via SQLite",
        &[
            side("Mecha HTTP", Client::HttpSave("sqlite")),
            side("direct prepared upsert", Client::DirectSave(Direct::Sqlite)),
        ],
    ),
    scenario(
        "mem_get",
        "in-memory GetState",
        &[
            side("Mecha HTTP", Client::HttpGet("mem")),
            side("Mecha gRPC", Client::GrpcGet("mem")),
        ],
    ),
    Scenario {
        id: "bulk_get",
        title: "Redis GetState, keys/s: bulk of 10 vs single (HTTP)",
        keys: true,
        sides: &[
            side("bulk get of 10 keys", Client::HttpBulkGet("redis")),
            side("single gets", Client::HttpGet("redis")),
        ],
    },
    scenario(
        "etag_save",
        "Redis SaveState after a read: ETag'd (CAS) vs plain (HTTP)",
        &[
            side(
                "read + ETag'd save",
                Client::HttpReadThenSave {
                    store: "redis",
                    etag: true,
                },
            ),
            side(
                "read + plain save",
                Client::HttpReadThenSave {
                    store: "redis",
                    etag: false,
                },
            ),
        ],
    ),
    scenario(
        "before_after",
        "HTTP GetState via Redis: this build vs --baseline-mecha",
        &[
            side("this build", Client::HttpGet("redis")),
            side("baseline build", Client::BaselineHttpGet("redis")),
        ],
    ),
];

/// The latency scenarios (open loop at `--rate`), in report order.
pub static LATENCY: &[Scenario] = &[
    scenario(
        "redis_get_http",
        "HTTP GetState via Redis",
        &[
            side("Mecha HTTP", Client::HttpGet("redis")),
            side("direct Redis", Client::DirectGet(Direct::Redis)),
        ],
    ),
    scenario(
        "redis_get_grpc",
        "gRPC GetState via Redis",
        &[
            side("Mecha gRPC", Client::GrpcGet("redis")),
            side("direct Redis", Client::DirectGet(Direct::Redis)),
        ],
    ),
    scenario(
        "pg_get_http",
        "HTTP GetState via PostgreSQL",
        &[
            side("Mecha HTTP", Client::HttpGet("pg")),
            side(
                "direct prepared SELECT",
                Client::DirectGet(Direct::Postgres),
            ),
        ],
    ),
    scenario(
        "mysql_get_http",
        "HTTP GetState via MySQL",
        &[
            side("Mecha HTTP", Client::HttpGet("mysql")),
            side("direct prepared SELECT", Client::DirectGet(Direct::MySql)),
        ],
    ),
    scenario(
        "sqlite_get_http",
        "HTTP GetState via SQLite",
        &[
            side("Mecha HTTP", Client::HttpGet("sqlite")),
            side("direct prepared SELECT", Client::DirectGet(Direct::Sqlite)),
        ],
    ),
    scenario(
        "mem_get",
        "in-memory GetState",
        &[
            side("Mecha HTTP", Client::HttpGet("mem")),
            side("Mecha gRPC", Client::GrpcGet("mem")),
        ],
    ),
];

/// A throughput ratio the report shows: `scenario`'s side `num` / side `den`, with the
/// target it should reach (≥), if any.
pub struct Check {
    /// The report's row name.
    pub what: &'static str,
    /// The throughput scenario's id.
    pub scenario: &'static str,
    /// Index of the measured side.
    pub num: usize,
    /// Index of the side it is compared with.
    pub den: usize,
    /// The ratio's target, if it has one.
    pub target: Option<f64>,
}

const fn check(
    what: &'static str,
    scenario: &'static str,
    (num, den): (usize, usize),
    target: Option<f64>,
) -> Check {
    Check {
        what,
        scenario,
        num,
        den,
        target,
    }
}

/// The ratios, in report order.
pub const CHECKS: &[Check] = &[
    check(
        "HTTP GetState via Redis / redis-benchmark -t get",
        "redis_get_http",
        (0, 2),
        Some(0.85),
    ),
    check(
        "HTTP GetState via Redis / the same Mecha's in-memory GetState",
        "redis_get_http",
        (0, 3),
        Some(0.85),
    ),
    check(
        "HTTP GetState via Redis / direct Redis (same commands)",
        "redis_get_http",
        (0, 1),
        None,
    ),
    check(
        "HTTP SaveState via Redis / direct Redis",
        "redis_save_http",
        (0, 1),
        None,
    ),
    check(
        "gRPC GetState via Redis / the same Mecha's in-memory gRPC GetState",
        "redis_get_grpc",
        (0, 2),
        Some(0.85),
    ),
    check(
        "gRPC GetState, in-memory / empty tonic handler (same threading)",
        "redis_get_grpc",
        (2, 3),
        Some(0.85),
    ),
    check(
        "gRPC GetState via Redis / direct Redis",
        "redis_get_grpc",
        (0, 1),
        None,
    ),
    check(
        "HTTP GetState via PostgreSQL / direct prepared statement",
        "pg_get_http",
        (0, 1),
        Some(0.8),
    ),
    check(
        "HTTP SaveState via PostgreSQL / direct prepared statement",
        "pg_save_http",
        (0, 1),
        None,
    ),
    check(
        "HTTP GetState via MySQL / direct prepared statement",
        "mysql_get_http",
        (0, 1),
        None,
    ),
    check(
        "HTTP SaveState via MySQL / direct prepared statement",
        "mysql_save_http",
        (0, 1),
        None,
    ),
    check(
        "HTTP GetState via SQLite / direct prepared statement",
        "sqlite_get_http",
        (0, 1),
        None,
    ),
    check(
        "HTTP SaveState via SQLite / direct prepared statement",
        "sqlite_save_http",
        (0, 1),
        None,
    ),
    check("in-memory GetState: gRPC / HTTP", "mem_get", (1, 0), None),
    check(
        "bulk get of 10 keys / single gets (keys/s)",
        "bulk_get",
        (0, 1),
        Some(7.0),
    ),
    check(
        "HTTP GetState via Redis: this build / the --baseline-mecha build (no regression)",
        "before_after",
        (0, 1),
        Some(0.95),
    ),
    check(
        "read + ETag'd save / read + plain save",
        "etag_save",
        (0, 1),
        None,
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Every ratio names a throughput scenario and two of its sides.
    #[test]
    fn checks_name_existing_sides() {
        for c in CHECKS {
            let sc = THROUGHPUT.iter().find(|s| s.id == c.scenario);
            let sc = sc.unwrap_or_else(|| panic!("{}: no scenario {}", c.what, c.scenario));
            assert!(
                c.num < sc.sides.len() && c.den < sc.sides.len(),
                "{}",
                c.what
            );
            assert_ne!(c.num, c.den, "{}", c.what);
        }
    }

    /// Ids are unique within each table (`--only` and the JSON rely on them).
    #[test]
    fn scenario_ids_are_unique() {
        for table in [THROUGHPUT, LATENCY] {
            let mut ids: Vec<&str> = table.iter().map(|s| s.id).collect();
            ids.sort_unstable();
            ids.dedup();
            assert_eq!(ids.len(), table.len());
        }
    }

    /// Latency sides send requests from this process: no `redis-benchmark` there.
    #[test]
    fn latency_sides_are_request_sides() {
        for s in LATENCY.iter().flat_map(|s| s.sides) {
            assert!(
                !matches!(s.client, Client::RedisBenchmarkGet),
                "{}",
                s.label
            );
        }
    }

    /// The added-latency rows: every latency scenario but the in-memory one (which
    /// compares Mecha's two doors, not Mecha with a direct client).
    #[test]
    fn added_latency_rows_are_the_direct_comparisons() {
        let ids: Vec<&str> = LATENCY
            .iter()
            .filter(|s| s.added_latency())
            .map(|s| s.id)
            .collect();
        assert_eq!(
            ids,
            [
                "redis_get_http",
                "redis_get_grpc",
                "pg_get_http",
                "mysql_get_http",
                "sqlite_get_http"
            ]
        );
    }
}
