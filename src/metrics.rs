//! Metric names, labels and recording, in one place (Dapr's names, so existing dashboards work).
//!
//! A single Prometheus recorder is installed per process; several Mecha instances in one
//! process (tests) share it, and every series carries `app_id`.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::model::Operation;

/// API calls that reached a store: `app_id`, `component`, `namespace`, `operation`, `success`.
pub const STATE_COUNT: &str = "dapr_component_state_count";
/// Store call latency in milliseconds, same labels.
pub const STATE_LATENCY: &str = "dapr_component_state_latencies";
/// HTTP requests: `app_id`, `method`, `path`, `status`.
pub const HTTP_COUNT: &str = "dapr_http_server_request_count";
/// HTTP latency in milliseconds, same labels.
pub const HTTP_LATENCY: &str = "dapr_http_server_latency";
/// Completed gRPC calls: `app_id`, `grpc_server_method`, `grpc_server_status`.
pub const GRPC_COMPLETED: &str = "dapr_grpc_io_server_completed_rpcs";
/// gRPC latency in milliseconds, same labels.
pub const GRPC_LATENCY: &str = "dapr_grpc_io_server_server_latency";

/// Dapr's default latency buckets (ms).
const LATENCY_BUCKETS_MS: &[f64] = &[
    1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 13.0, 16.0, 20.0, 25.0, 30.0, 40.0, 50.0, 65.0, 80.0,
    100.0, 130.0, 160.0, 200.0, 250.0, 300.0, 400.0, 500.0, 650.0, 800.0, 1000.0, 2000.0, 5000.0,
    10000.0, 20000.0, 50000.0, 100000.0,
];

/// How often histogram samples are folded into their buckets.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(1);

/// Set once a recorder is installed: handles registered before that belong to the no-op
/// recorder and must not be cached.
static INSTALLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Installs the process-wide recorder (once) and returns the handle that renders it.
pub fn install() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("latencies".into()), LATENCY_BUCKETS_MS)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Suffix("latency".into()), LATENCY_BUCKETS_MS)
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
                })
                .expect("bucket list is non-empty");
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Histogram samples pile up in the recorder until upkeep folds them into the
            // buckets; without it memory grows with every request between scrapes (measured:
            // 10 MiB idle to 180 MiB after a few million requests). `install` would run it
            // for us, but we render through our own endpoint, so run it here.
            let upkeep = handle.clone();
            let spawned = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .stack_size(256 * 1024)
                .spawn(move || {
                    loop {
                        std::thread::sleep(UPKEEP_INTERVAL);
                        upkeep.run_upkeep();
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "cannot start the metrics upkeep thread");
            }
            // HELP text on every family, our recorder's whoever is global.
            metrics::with_local_recorder(&recorder, describe_all);
            // Another recorder may already be installed by an embedding program; then ours
            // still renders (empty) and theirs receives the data.
            let _ = metrics::set_global_recorder(recorder);
            metrics::gauge!(
                BUILD_INFO,
                "version" => env!("CARGO_PKG_VERSION"),
                "commit" => env!("MECHA_GIT_COMMIT"),
            )
            .set(1.0);
            INSTALLED.store(true, std::sync::atomic::Ordering::Release);
            handle
        })
        .clone()
}

/// Mecha's build, always 1: `version` (the crate's) and `commit` (git's at build time, or
/// `unknown` when built outside a git checkout).
pub const BUILD_INFO: &str = "mecha_build_info";

/// The process collector (`process_*` families: CPU, memory, descriptors, threads, start
/// time), read at every scrape.
fn process() -> &'static metrics_process::Collector {
    static PROCESS: OnceLock<metrics_process::Collector> = OnceLock::new();
    PROCESS.get_or_init(metrics_process::Collector::default)
}

/// The text of `/metrics`: the process metrics read now, then every family.
pub fn render(handle: &PrometheusHandle) -> String {
    process().collect();
    handle.render()
}

/// A family's kind, for its HELP text.
#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Every family Mecha declares: its type (`counter`, `gauge`, `histogram`), name and HELP
/// text, for the reference page.
pub fn families() -> impl Iterator<Item = (&'static str, &'static str, &'static str)> {
    HELP.iter().map(|(kind, name, help)| {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        (kind, *name, *help)
    })
}

/// The HELP text of every family Mecha records (`promtool check metrics` wants one each).
const HELP: &[(Kind, &str, &str)] = &[
    (
        Kind::Gauge,
        BUILD_INFO,
        "Mecha's version and git commit (always 1).",
    ),
    (
        Kind::Counter,
        STATE_COUNT,
        "State store calls by app, component, operation and success (daprd's).",
    ),
    (
        Kind::Histogram,
        STATE_LATENCY,
        "State store call latency in milliseconds (daprd's).",
    ),
    (
        Kind::Counter,
        HTTP_COUNT,
        "HTTP requests by app, method, path and status (daprd's).",
    ),
    (
        Kind::Histogram,
        HTTP_LATENCY,
        "HTTP request latency in milliseconds (daprd's).",
    ),
    (
        Kind::Counter,
        GRPC_COMPLETED,
        "Completed gRPC calls by app, method and status (daprd's).",
    ),
    (
        Kind::Histogram,
        GRPC_LATENCY,
        "gRPC call latency in milliseconds (daprd's).",
    ),
    (
        Kind::Counter,
        CAPABILITY_DECISIONS,
        "Capability decisions (native, emulated, ignored, rejected) per request.",
    ),
    (
        Kind::Histogram,
        REQUEST_DURATION,
        "State request duration in seconds, by protocol and whether it was all native.",
    ),
    (
        Kind::Gauge,
        STORE_UP,
        "Whether the store answers its health pings (1) or not (0).",
    ),
    (
        Kind::Counter,
        STORE_RESTARTS,
        "Restarts of the store's actors since start.",
    ),
    (
        Kind::Gauge,
        STORE_IN_FLIGHT,
        "State requests running on the store now.",
    ),
    (
        Kind::Histogram,
        STORE_ROUND_TRIP,
        "Round trip to the store (actor queue and backend) in seconds.",
    ),
    (
        Kind::Counter,
        CAPABILITY_USAGE,
        "Requests per app, store and capability they needed.",
    ),
    (
        Kind::Counter,
        METADATA_KEY_USAGE,
        "Requests per app, store and request-metadata name they carried.",
    ),
    (
        Kind::Counter,
        LINT_FINDINGS,
        "Request-metadata lint findings by code and severity.",
    ),
    (
        Kind::Gauge,
        RESILIENCY_CB_STATE,
        "Circuit breaker state: 1 for the current status, 0 for the others (daprd's).",
    ),
    (
        Kind::Counter,
        RESILIENCY_ACTIVATIONS,
        "Resiliency activations: breaker changes and calls' first retries (daprd's).",
    ),
    (
        Kind::Counter,
        RESILIENCY_COUNT,
        "Resiliency policy look-ups, one per store call and policy kind (daprd's).",
    ),
    (
        Kind::Counter,
        RESILIENCY_LOADED,
        "Resiliency resources loaded, per configuration applied (daprd's).",
    ),
    (
        Kind::Gauge,
        CONFIG_VERSION,
        "Version of the configuration serving new requests (1 at start, +1 per applied reload).",
    ),
    (
        Kind::Counter,
        CONFIG_RELOADS,
        "Configuration reloads by result (applied, refused).",
    ),
];

/// Gives every family its HELP text, the process families included.
fn describe_all() {
    process().describe();
    for &(kind, name, help) in HELP {
        match kind {
            Kind::Counter => metrics::describe_counter!(name, help),
            Kind::Gauge => metrics::describe_gauge!(name, help),
            Kind::Histogram => metrics::describe_histogram!(name, help),
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Handles of one label set: the count and the latency histogram.
#[derive(Clone)]
struct Handles {
    count: metrics::Counter,
    latency: metrics::Histogram,
}

/// Per-thread cache of registered handles, keyed by the label values joined with `\0`. The
/// label sets are few (apps × stores × operations × outcome, or routes × statuses), so
/// after warm-up a request only formats its key into a reused buffer and looks it up: no
/// allocation, no registry lock. The key is built in `key` (cleared first).
struct Cache {
    key: String,
    map: std::collections::HashMap<String, Handles>,
}

impl Cache {
    fn new() -> std::cell::RefCell<Cache> {
        std::cell::RefCell::new(Cache {
            key: String::new(),
            map: std::collections::HashMap::new(),
        })
    }
}

thread_local! {
    static STORE_CALLS: std::cell::RefCell<Cache> = Cache::new();
    static HTTP_CALLS: std::cell::RefCell<Cache> = Cache::new();
    static GRPC_CALLS: std::cell::RefCell<Cache> = Cache::new();
}

/// Looks up (or registers) the handles for `parts`, then runs `f` on them.
fn with_handles(
    cache: &'static std::thread::LocalKey<std::cell::RefCell<Cache>>,
    parts: &[&str],
    register: impl FnOnce() -> Handles,
    f: impl FnOnce(&Handles),
) {
    if !INSTALLED.load(std::sync::atomic::Ordering::Acquire) {
        f(&register());
        return;
    }
    cache.with(|c| {
        let c = &mut *c.borrow_mut();
        c.key.clear();
        for p in parts {
            c.key.push_str(p);
            c.key.push('\0');
        }
        if let Some(h) = c.map.get(c.key.as_str()) {
            f(h);
            return;
        }
        let h = register();
        f(&h);
        c.map.insert(c.key.clone(), h);
    });
}

fn bool_label(b: bool) -> &'static str {
    if b { "true" } else { "false" }
}

/// Records one store call.
pub fn record_store_call(app: &str, store: &str, op: Operation, success: bool, elapsed: Duration) {
    let op_label = op.metric_label();
    let success = bool_label(success);
    with_handles(
        &STORE_CALLS,
        &[app, store, op_label, success],
        || {
            let labels = [
                ("app_id", app.to_owned()),
                ("component", store.to_owned()),
                ("namespace", String::new()),
                ("operation", op_label.to_owned()),
                ("success", success.to_owned()),
            ];
            Handles {
                count: metrics::counter!(STATE_COUNT, &labels),
                latency: metrics::histogram!(STATE_LATENCY, &labels),
            }
        },
        |h| {
            h.count.increment(1);
            if !elapsed.is_zero() {
                h.latency.record(ms(elapsed));
            }
        },
    );
}

/// The one label value for anything outside the finite sets (unknown routes, stores
/// that are not configured, gRPC methods Mecha does not serve).
pub const UNKNOWN: &str = "_unknown";

/// The `path` label of an HTTP request: always from a finite set, so no request can add
/// series at will.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpPath<'a> {
    /// A state route on a configured store: `/<version>/state/<store>` (Dapr's label).
    State {
        /// `v1.0` or `v1.0-alpha1`.
        version: &'static str,
        /// A configured store's name.
        store: &'a str,
    },
    /// A route template (`/v1.0/healthz`, `/v1.0/metadata/{key}`) or [`UNKNOWN`].
    Fixed(&'static str),
}

impl HttpPath<'_> {
    /// The label text.
    pub fn label(&self) -> String {
        match self {
            HttpPath::State { version, store } => format!("/{version}/state/{store}"),
            HttpPath::Fixed(p) => (*p).to_owned(),
        }
    }
}

/// Records one HTTP request under its finite `path` label.
pub fn record_http_path(
    app: &str,
    method: &str,
    path: HttpPath<'_>,
    status: u16,
    elapsed: Duration,
) {
    let method = method_label(method);
    let mut status_buf = [0u8; 5];
    let status_str = status_text(status, &mut status_buf);
    let (a, b) = match path {
        HttpPath::State { version, store } => (version, store),
        HttpPath::Fixed(p) => (p, ""),
    };
    with_handles(
        &HTTP_CALLS,
        &[app, method, status_str, a, b],
        || http_handles(app, method, &path.label(), status),
        |h| {
            h.count.increment(1);
            h.latency.record(ms(elapsed));
        },
    );
}

/// The gRPC methods Mecha serves: the only values of `grpc_server_method` besides [`UNKNOWN`].
pub const GRPC_METHODS: &[&str] = &[
    "/dapr.proto.runtime.v1.Dapr/GetState",
    "/dapr.proto.runtime.v1.Dapr/GetBulkState",
    "/dapr.proto.runtime.v1.Dapr/SaveState",
    "/dapr.proto.runtime.v1.Dapr/DeleteState",
    "/dapr.proto.runtime.v1.Dapr/DeleteBulkState",
    "/dapr.proto.runtime.v1.Dapr/ExecuteStateTransaction",
    "/dapr.proto.runtime.v1.Dapr/QueryStateAlpha1",
    "/dapr.proto.runtime.v1.Dapr/GetMetadata",
    "/dapr.proto.runtime.v1.Dapr/SetMetadata",
];

/// The `grpc_server_method` label of a request path.
pub fn grpc_method_label(path: &str) -> &'static str {
    GRPC_METHODS
        .iter()
        .find(|m| **m == path)
        .copied()
        .unwrap_or(UNKNOWN)
}

fn method_label(method: &str) -> &str {
    match method {
        "GET" | "POST" | "PUT" | "DELETE" | "PATCH" | "HEAD" | "OPTIONS" | "CONNECT" | "TRACE" => {
            method
        }
        _ => "UNKNOWN",
    }
}

/// `status` in decimal, written into `buf`.
fn status_text(status: u16, buf: &mut [u8; 5]) -> &str {
    let mut n = status;
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    std::str::from_utf8(&buf[i..]).unwrap_or("0")
}

fn http_handles(app: &str, method: &str, path: &str, status: u16) -> Handles {
    let labels = [
        ("app_id", app.to_owned()),
        ("method", method.to_owned()),
        ("path", path.to_owned()),
        ("status", status.to_string()),
    ];
    Handles {
        count: metrics::counter!(HTTP_COUNT, &labels),
        latency: metrics::histogram!(HTTP_LATENCY, &labels),
    }
}

/// Records one gRPC call; `method` is the request path, labelled by [`grpc_method_label`].
pub fn record_grpc(app: &str, method: &str, status: &str, elapsed: Duration) {
    let method = grpc_method_label(method);
    with_handles(
        &GRPC_CALLS,
        &[app, method, status],
        || {
            let labels = [
                ("app_id", app.to_owned()),
                ("grpc_server_method", method.to_owned()),
                ("grpc_server_status", status.to_owned()),
            ];
            Handles {
                count: metrics::counter!(GRPC_COMPLETED, &labels),
                latency: metrics::histogram!(GRPC_LATENCY, &labels),
            }
        },
        |h| {
            h.count.increment(1);
            h.latency.record(ms(elapsed));
        },
    );
}

/// Capability decisions: `app_id`, `store`, `operation`, `capability`, `decision`
/// (`native`, `emulated`, `ignored` or `rejected`). One increment per capability a request
/// used; a request that used none (a plain get, save or delete) counts once as
/// `capability="basic"`, `decision="native"`.
pub const CAPABILITY_DECISIONS: &str = "mecha_capability_decisions_total";
/// State request duration in seconds: `app_id`, `store`, `operation`, `protocol` (`http`,
/// `grpc`), `native` (`true` when no capability was emulated, ignored or rejected).
pub const REQUEST_DURATION: &str = "mecha_request_duration_seconds";
/// Whether a store's backend answers its health pings (1) or not (0): `store`.
pub const STORE_UP: &str = "mecha_store_up";
/// Restarts of a store's actors since start: `store`.
pub const STORE_RESTARTS: &str = "mecha_store_actor_restarts_total";
/// State requests running on a store right now: `store`.
pub const STORE_IN_FLIGHT: &str = "mecha_store_in_flight_requests";
/// Round trip to the store (actor queue plus backend) in seconds: `store`.
pub const STORE_ROUND_TRIP: &str = "mecha_store_round_trip_seconds";
/// The capability label of a request that needed no capability.
pub const BASIC_CAPABILITY: &str = "basic";

/// Buckets of Mecha's own duration histograms (seconds).
const SECONDS_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

thread_local! {
    static DECISIONS: std::cell::RefCell<CounterCache> = CounterCache::new();
    static DURATIONS: std::cell::RefCell<HistogramCache> = HistogramCache::new();
}

/// Per-thread cache of one family's handles, keyed by the label values joined with `\0`.
struct LabelCache<T> {
    key: String,
    map: std::collections::HashMap<String, T>,
}

type CounterCache = LabelCache<metrics::Counter>;
type HistogramCache = LabelCache<metrics::Histogram>;

impl<T: Clone> LabelCache<T> {
    fn new() -> std::cell::RefCell<LabelCache<T>> {
        std::cell::RefCell::new(LabelCache {
            key: String::new(),
            map: std::collections::HashMap::new(),
        })
    }
}

fn cached<T: Clone>(
    cache: &'static std::thread::LocalKey<std::cell::RefCell<LabelCache<T>>>,
    parts: &[&str],
    register: impl FnOnce() -> T,
) -> T {
    if !installed() {
        return register();
    }
    cache.with(|c| {
        let c = &mut *c.borrow_mut();
        c.key.clear();
        for p in parts {
            c.key.push_str(p);
            c.key.push('\0');
        }
        if let Some(h) = c.map.get(c.key.as_str()) {
            return h.clone();
        }
        let h = register();
        c.map.insert(c.key.clone(), h.clone());
        h
    })
}

/// Records one capability decision of the negotiation.
pub fn record_capability_decision(
    app: &str,
    store: &str,
    op: Operation,
    capability: &str,
    decision: &str,
) {
    let op = op.metric_label();
    cached(&DECISIONS, &[app, store, op, capability, decision], || {
        let labels = [
            ("app_id", app.to_owned()),
            ("store", store.to_owned()),
            ("operation", op.to_owned()),
            ("capability", capability.to_owned()),
            ("decision", decision.to_owned()),
        ];
        metrics::counter!(CAPABILITY_DECISIONS, &labels)
    })
    .increment(1);
}

/// Records the duration of one state request that reached its store's pipeline.
pub fn record_request_duration(
    app: &str,
    store: &str,
    op: Operation,
    protocol: crate::model::Protocol,
    native: bool,
    elapsed: Duration,
) {
    let op = op.metric_label();
    let protocol = protocol.as_str();
    let native = bool_label(native);
    cached(&DURATIONS, &[app, store, op, protocol, native], || {
        let labels = [
            ("app_id", app.to_owned()),
            ("store", store.to_owned()),
            ("operation", op.to_owned()),
            ("protocol", protocol.to_owned()),
            ("native", native.to_owned()),
        ];
        metrics::histogram!(REQUEST_DURATION, &labels)
    })
    .record(elapsed.as_secs_f64());
}

/// The per-store handles: in-flight gauge and round-trip histogram (registered once per
/// store at start-up, after the recorder is installed).
#[derive(Clone)]
pub struct StoreMetrics {
    in_flight: metrics::Gauge,
    round_trip: metrics::Histogram,
}

impl StoreMetrics {
    /// The handles of `store`.
    pub fn new(store: &str) -> StoreMetrics {
        let labels = [("store", store.to_owned())];
        StoreMetrics {
            in_flight: metrics::gauge!(STORE_IN_FLIGHT, &labels),
            round_trip: metrics::histogram!(STORE_ROUND_TRIP, &labels),
        }
    }

    /// Marks a request as running on the store until the guard drops; the drop records the
    /// round trip.
    pub fn start(&self) -> InFlight {
        self.in_flight.increment(1.0);
        InFlight {
            metrics: self.clone(),
            start: std::time::Instant::now(),
        }
    }
}

/// A request running on a store (see [`StoreMetrics::start`]).
pub struct InFlight {
    metrics: StoreMetrics,
    start: std::time::Instant,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.metrics.in_flight.decrement(1.0);
        self.metrics
            .round_trip
            .record(self.start.elapsed().as_secs_f64());
    }
}

/// Publishes a store's health at scrape time: up/down and the restart count.
pub fn record_store_health(store: &str, up: bool, restarts: u64) {
    let labels = [("store", store.to_owned())];
    metrics::gauge!(STORE_UP, &labels).set(if up { 1.0 } else { 0.0 });
    metrics::counter!(STORE_RESTARTS, &labels).absolute(restarts);
}

/// Requests per app, store and capability they needed: `app_id`, `store`, `capability`
/// (the policy name, e.g. `ttl`). The portability report's usage, kept by Prometheus.
pub const CAPABILITY_USAGE: &str = "mecha_capability_usage_total";
/// Requests per app, store and request-metadata name they carried: `app_id`, `store`, `key`
/// (a known name such as `ttlInSeconds`, or `_other`).
pub const METADATA_KEY_USAGE: &str = "mecha_metadata_key_usage_total";

/// Whether the process-wide recorder is installed (handles registered before belong to the
/// no-op recorder and must not be cached).
pub fn installed() -> bool {
    INSTALLED.load(std::sync::atomic::Ordering::Acquire)
}

/// The usage counter of one capability.
pub fn capability_usage_counter(app: &str, store: &str, capability: &str) -> metrics::Counter {
    let labels = [
        ("app_id", app.to_owned()),
        ("store", store.to_owned()),
        ("capability", capability.to_owned()),
    ];
    metrics::counter!(CAPABILITY_USAGE, &labels)
}

/// The usage counter of one metadata bucket.
pub fn metadata_key_usage_counter(app: &str, store: &str, key: &str) -> metrics::Counter {
    let labels = [
        ("app_id", app.to_owned()),
        ("store", store.to_owned()),
        ("key", key.to_owned()),
    ];
    metrics::counter!(METADATA_KEY_USAGE, &labels)
}

/// Request-metadata lint findings: `app_id`, `store`, `code` (a [`LintCode`] name) and
/// `severity` (`info`, `warning`, `error`); every label comes from a finite set (configured
/// apps and stores, the code table). Mecha's own metric.
///
/// [`LintCode`]: crate::capabilities::lint::LintCode
pub const LINT_FINDINGS: &str = "mecha_lint_findings_total";

/// Records one lint finding.
pub fn record_lint_finding(app: &str, store: &str, code: &'static str, severity: &'static str) {
    let labels = [
        ("app_id", app.to_owned()),
        ("store", store.to_owned()),
        ("code", code.to_owned()),
        ("severity", severity.to_owned()),
    ];
    metrics::counter!(LINT_FINDINGS, &labels).increment(1);
}

/// Circuit breaker state per store, daprd's gauge: labels as [`ResiliencyTarget`] gives them
/// plus `policy` (`circuitbreaker`) and `status` (`closed`, `half-open`, `open`, `unknown`);
/// 1 for the current state, 0 for the others.
pub const RESILIENCY_CB_STATE: &str = "dapr_resiliency_cb_state";
/// Resiliency activations, daprd's counter: a breaker changing state (`policy` =
/// `circuitbreaker`, `status` = the new state) or a call's first retry being scheduled
/// (`policy` = `retry`).
pub const RESILIENCY_ACTIVATIONS: &str = "dapr_resiliency_activations_total";
/// Policy look-ups, daprd's counter: once per store call for each kind of policy the store
/// has (`timeout`, `retry`, `circuitbreaker`; `status` is the breaker's state, else empty).
pub const RESILIENCY_COUNT: &str = "dapr_resiliency_count";
/// Resiliency resources loaded, daprd's counter: `app_id`, `name`, `namespace`; once per
/// `kind: Resiliency` document of each configuration applied (start and every reload).
pub const RESILIENCY_LOADED: &str = "dapr_resiliency_loaded";

/// Whose resiliency series these are, in daprd's labels: `app_id` is the process's
/// `--app-id` (policies and breakers belong to the process and are shared by every app, as
/// daprd's belong to its sidecar), `name` the `metadata.name` of the last Resiliency
/// resource read (daprd's rule), and the store gives `target` (`Statestore_<store>`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResiliencyTarget {
    /// The process's app id.
    pub app_id: String,
    /// The Resiliency resource's name.
    pub name: String,
    /// The store's name.
    pub store: String,
}

impl ResiliencyTarget {
    fn labels(&self, policy: &str, status: &str) -> [(&'static str, String); 7] {
        [
            ("app_id", self.app_id.clone()),
            ("name", self.name.clone()),
            ("policy", policy.to_owned()),
            ("namespace", String::new()),
            ("flow_direction", "outbound".to_owned()),
            ("target", format!("Statestore_{}", self.store)),
            ("status", status.to_owned()),
        ]
    }

    /// Sets the breaker-state gauges to `state` (`None`: unknown).
    fn breaker_gauge(&self, state: Option<crate::resilience::BreakerState>) {
        use crate::resilience::BreakerState as B;
        for s in [Some(B::Closed), Some(B::HalfOpen), Some(B::Open), None] {
            let v = if s == state { 1.0 } else { 0.0 };
            let status = s.map_or("unknown", B::as_str);
            metrics::gauge!(RESILIENCY_CB_STATE, &self.labels("circuitbreaker", status)).set(v);
        }
    }

    /// Shows a new breaker as closed, so the gauge exists (and alerts on it work) before the
    /// breaker ever changes state. Not an activation.
    pub fn breaker_started(&self) {
        self.breaker_gauge(Some(crate::resilience::BreakerState::Closed));
    }

    /// Records the breaker changing to `state`: the gauge and one activation.
    pub fn breaker_state(&self, state: crate::resilience::BreakerState) {
        self.breaker_gauge(Some(state));
        metrics::counter!(
            RESILIENCY_ACTIVATIONS,
            &self.labels("circuitbreaker", state.as_str())
        )
        .increment(1);
    }

    /// Counts a call's first retry being scheduled.
    pub fn retry_scheduled(&self) {
        metrics::counter!(RESILIENCY_ACTIVATIONS, &self.labels("retry", "")).increment(1);
    }

    /// The look-up counters of the policy kinds present (registered once per store).
    pub fn lookups(&self, timeout: bool, retry: bool, breaker: bool) -> Lookups {
        let counter = |policy: &str, status: &str| {
            metrics::counter!(RESILIENCY_COUNT, &self.labels(policy, status))
        };
        use crate::resilience::BreakerState as B;
        Lookups {
            timeout: timeout.then(|| counter("timeout", "")),
            retry: retry.then(|| counter("retry", "")),
            breaker: breaker.then(|| {
                [B::Closed, B::HalfOpen, B::Open].map(|s| counter("circuitbreaker", s.as_str()))
            }),
        }
    }
}

/// A store's `dapr_resiliency_count` handles, one per policy kind it has.
#[derive(Debug, Clone, Default)]
pub struct Lookups {
    timeout: Option<metrics::Counter>,
    retry: Option<metrics::Counter>,
    breaker: Option<[metrics::Counter; 3]>,
}

impl Lookups {
    /// Counts one store call's look-up of each policy (`breaker`: its state now).
    pub fn record(&self, breaker: Option<crate::resilience::BreakerState>) {
        use crate::resilience::BreakerState as B;
        for c in [&self.timeout, &self.retry].into_iter().flatten() {
            c.increment(1);
        }
        if let (Some(cs), Some(state)) = (&self.breaker, breaker) {
            let i = match state {
                B::Closed => 0,
                B::HalfOpen => 1,
                B::Open => 2,
            };
            cs[i].increment(1);
        }
    }
}

/// Counts the Resiliency resources of a configuration just applied.
pub fn resiliency_loaded(app_id: &str, names: &[String]) {
    for name in names {
        let labels = [
            ("app_id", app_id.to_owned()),
            ("name", name.clone()),
            ("namespace", String::new()),
        ];
        metrics::counter!(RESILIENCY_LOADED, &labels).increment(1);
    }
}

/// The version of the configuration that serves new requests (1 at start, +1 per applied
/// reload). Mecha's own gauge, no labels.
pub const CONFIG_VERSION: &str = "mecha_config_version";
/// Configuration reloads: `result` (`applied`, `refused`). Mecha's own counter.
pub const CONFIG_RELOADS: &str = "mecha_config_reloads_total";

/// Publishes the live configuration version; at start (`version` 1) it also registers both
/// reload series at 0, so they are visible before the first reload.
pub fn config_version(version: u64) {
    metrics::gauge!(CONFIG_VERSION).set(version as f64);
    if version == 1 {
        for result in ["applied", "refused"] {
            metrics::counter!(CONFIG_RELOADS, "result" => result).increment(0);
        }
    }
}

/// Counts one reload attempt: applied, or refused (the old configuration keeps serving).
pub fn config_reload(applied: bool) {
    let result = if applied { "applied" } else { "refused" };
    metrics::counter!(CONFIG_RELOADS, "result" => result).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_come_from_finite_sets() {
        let p = HttpPath::State {
            version: "v1.0",
            store: "s",
        };
        assert_eq!(p.label(), "/v1.0/state/s");
        assert_eq!(
            grpc_method_label("/dapr.proto.runtime.v1.Dapr/GetState"),
            "/dapr.proto.runtime.v1.Dapr/GetState"
        );
        assert_eq!(grpc_method_label("/x.Y/Z"), UNKNOWN);
        assert_eq!(
            grpc_method_label("/dapr.proto.runtime.v1.Dapr/InvokeService"),
            UNKNOWN
        );
    }
}
