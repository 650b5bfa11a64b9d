//! Wiring: build the catalog, start the HTTP door (one gateway pipeline per worker thread),
//! the gRPC door (one more pipeline, on its own arbiter; see [`crate::gateway::grpc`]) and
//! the metrics endpoint; stop them gracefully, gRPC together with HTTP.
//!
//! Must run inside an actix system (`actix_rt::System`), which `main` and the test harness
//! provide.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpResponse, HttpServer, web};

use crate::config::Config;
use crate::gateway::grpc::GrpcServer;
use crate::gateway::http::{HttpState, dispatch};
use crate::gateway::{Catalog, Gateway};

/// Where and as whom to serve.
#[derive(Debug, Clone)]
pub struct Options {
    /// Address every listener binds.
    pub listen_address: IpAddr,
    /// HTTP API port (0 = any free port).
    pub http_port: u16,
    /// gRPC API port (0 = any free port).
    pub grpc_port: u16,
    /// Prometheus metrics port (0 = any free port).
    pub metrics_port: u16,
    /// The app id used when no apps are configured.
    pub app_id: String,
    /// Whether SIGINT/SIGTERM trigger a graceful shutdown (off for embedded use and tests).
    pub handle_signals: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            listen_address: IpAddr::from([127, 0, 0, 1]),
            http_port: 3500,
            grpc_port: 50001,
            metrics_port: 9090,
            app_id: "default".into(),
            handle_signals: true,
        }
    }
}

/// A running Mecha.
pub struct Running {
    /// Where the HTTP API listens.
    pub http_addr: SocketAddr,
    /// Where the gRPC API listens.
    pub grpc_addr: SocketAddr,
    /// Where `/metrics` listens.
    pub metrics_addr: SocketAddr,
    /// The shared catalog.
    pub catalog: Arc<Catalog>,
    http: ServerHandle,
    grpc: GrpcServer,
    metrics: ServerHandle,
    http_task: actix_rt::task::JoinHandle<io::Result<()>>,
    token_reload: Option<actix_rt::task::JoinHandle<()>>,
    tls_watch: Option<actix_rt::task::JoinHandle<()>>,
    /// The served TLS certificate, when `server.tls` is set (for a forced
    /// [`crate::tls::CertStore::refresh`], e.g. on `SIGHUP`).
    pub tls: Option<Arc<crate::tls::CertStore>>,
}

impl Running {
    /// Stops every listener; `graceful` waits (up to the shutdown timeout) for in-flight requests.
    pub async fn stop(&self, graceful: bool) {
        self.stop_watchers();
        self.http.stop(graceful).await;
        self.grpc.stop(graceful).await;
        self.metrics.stop(graceful).await;
    }

    /// Waits until the HTTP server ends (on a signal, or after [`Running::stop`]), then
    /// stops the other listeners (gRPC gracefully).
    pub async fn wait(mut self) -> io::Result<()> {
        let result = (&mut self.http_task).await.map_err(io::Error::other)?;
        self.stop_watchers();
        self.grpc.stop(true).await;
        self.metrics.stop(true).await;
        result
    }

    fn stop_watchers(&self) {
        for t in [&self.token_reload, &self.tls_watch].into_iter().flatten() {
            t.abort();
        }
    }
}

/// Starts Mecha with validated configuration.
pub async fn start(config: Config, opts: Options) -> io::Result<Running> {
    let settings = config.settings;
    // Installed first, so the handles the catalog registers belong to the real recorder.
    let prometheus = crate::metrics::install();
    let catalog =
        Catalog::new(&config.components, &settings, &opts.app_id).map_err(|problems| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("refused store policies: {}", problems.join("; ")),
            )
        })?;
    let catalog = Arc::new(catalog);

    let tls = match &settings.server.tls {
        None => None,
        Some(t) => Some(crate::tls::ServerTls::new(t).map_err(|problems| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "refused TLS settings: {}",
                    crate::tls::ServerTls::describe(&problems)
                ),
            )
        })?),
    };

    let grpc_addr = SocketAddr::new(opts.listen_address, opts.grpc_port);
    let grpc_listener =
        GrpcServer::bind(grpc_addr).map_err(|e| bind_error("gRPC", grpc_addr, "--grpc-port", e))?;
    let actor_settings = settings.actors.clone();
    let limits = settings.limits.clone();
    let threads = serving_threads(settings.server.workers);
    let c = catalog.clone();
    let mut http = HttpServer::new(move || {
        // Runs once per worker thread: each worker gets its own gateway and store shards.
        let gateway = Gateway::start_local(c.clone(), &actor_settings);
        App::new()
            .app_data(web::Data::new(HttpState { gateway }))
            .default_service(web::to(dispatch))
    })
    .shutdown_timeout(settings.server.shutdown_timeout.as_secs().max(1))
    // Bounded connections and time: actix counts connections per worker thread.
    .max_connections(per_thread(limits.max_connections, threads))
    .backlog(u32::try_from(limits.max_connections.min(4096)).unwrap_or(1024))
    .client_request_timeout(limits.header_timeout)
    .client_disconnect_timeout(std::time::Duration::from_secs(1))
    // A TLS handshake gets the time the headers get (counted before them).
    .tls_handshake_timeout(limits.header_timeout)
    .keep_alive(limits.idle_timeout);
    if settings.server.workers > 0 {
        http = http.workers(settings.server.workers);
    }
    if !opts.handle_signals {
        http = http.disable_signals();
    }
    let http_bind = SocketAddr::new(opts.listen_address, opts.http_port);
    let http = match &tls {
        Some(tls) => http.bind_rustls_0_23(http_bind, tls.http.clone()),
        None => http.bind(http_bind),
    }
    .map_err(|e| bind_error("HTTP", http_bind, "--http-port", e))?;
    let http_addr = http.addrs()[0];
    let http = http.run();
    let http_handle = http.handle();

    let c = catalog.clone();
    let metrics = HttpServer::new(move || {
        let handle = prometheus.clone();
        let catalog = c.clone();
        App::new().route(
            "/metrics",
            web::get().to(move |req: actix_web::HttpRequest| {
                let allowed = catalog.metrics_allowed(metrics_token(&req));
                if allowed {
                    for s in catalog.stores() {
                        crate::metrics::record_store_health(
                            &s.name,
                            s.health.is_healthy(),
                            s.health.restarts(),
                        );
                    }
                }
                let body = allowed.then(|| handle.render());
                async move {
                    match body {
                        Some(body) => HttpResponse::Ok()
                            .content_type("text/plain; version=0.0.4")
                            .body(body),
                        None => HttpResponse::Unauthorized()
                            .insert_header(("www-authenticate", "Bearer"))
                            .body("invalid metrics token\n"),
                    }
                }
            }),
        )
    })
    .workers(1)
    .max_connections(256)
    .client_request_timeout(settings.limits.header_timeout)
    .keep_alive(settings.limits.idle_timeout)
    .disable_signals();
    let metrics_bind = SocketAddr::new(opts.listen_address, opts.metrics_port);
    let metrics = metrics
        .bind(metrics_bind)
        .map_err(|e| bind_error("metrics", metrics_bind, "--metrics-port", e))?;
    let metrics_addr = metrics.addrs()[0];
    let metrics = metrics.run();
    let metrics_handle = metrics.handle();
    actix_rt::spawn(metrics);
    let http_task = actix_rt::spawn(http);
    let grpc = GrpcServer::start(
        catalog.clone(),
        settings.actors.clone(),
        grpc_listener,
        settings.server.shutdown_timeout,
        serving_threads(settings.server.workers),
        tls.as_ref().map(|t| t.grpc.clone()),
    )?;
    let grpc_addr = grpc.local_addr();
    // Token files are checked for changes, so a rotated token needs no restart.
    let token_reload = catalog.has_token_files().then(|| {
        let catalog = catalog.clone();
        let every = settings.server.token_file_check_interval;
        actix_rt::spawn(async move {
            let mut tick = actix_rt::time::interval(every);
            loop {
                tick.tick().await;
                catalog.reload_tokens();
            }
        })
    });

    // Renewed certificate files are picked up without a restart.
    let tls_watch = match (&tls, &settings.server.tls) {
        (Some(t), Some(s)) => Some(crate::tls::spawn_watcher(t.certs.clone(), s.check_interval)),
        _ => None,
    };

    // `tls` says whether HTTP and gRPC serve TLS (the metrics listener stays plain).
    match &tls {
        Some(t) => tracing::info!(
            http = %http_addr, grpc = %grpc_addr, metrics = %metrics_addr, app_id = %opts.app_id,
            tls = "on", client_certs = %t.client_auth, fingerprint = %t.certs.fingerprint(),
            "mecha listening"
        ),
        None => tracing::info!(
            http = %http_addr, grpc = %grpc_addr, metrics = %metrics_addr, app_id = %opts.app_id,
            tls = "off", "mecha listening"
        ),
    }
    for s in catalog.stores() {
        tracing::info!(
            store = %s.name, r#type = %s.component_type, version = %s.version,
            capabilities = %s.capabilities.to_list_string(), matrix = %s.matrix.describe(), "state store configured"
        );
    }
    wait_first_pings(&catalog, settings.actors.request_timeout).await;
    if catalog.stores().is_empty() {
        tracing::warn!("no state store is configured: every state call will fail");
    }
    Ok(Running {
        http_addr,
        grpc_addr,
        metrics_addr,
        catalog,
        http: http_handle,
        grpc,
        metrics: metrics_handle,
        http_task,
        token_reload,
        tls_watch,
        tls: tls.map(|t| t.certs),
    })
}

/// Names the listener, the address and the flag that sets it in a bind failure.
fn bind_error(listener: &str, addr: SocketAddr, flag: &str, e: io::Error) -> io::Error {
    io::Error::new(
        e.kind(),
        format!("cannot listen for {listener} on {addr} (set with {flag}): {e}"),
    )
}

/// Waits (at most `limit`) until every store has answered its first ping, so the log says
/// at start-up which stores are reachable; a store that is not stays unhealthy either way.
async fn wait_first_pings(catalog: &Catalog, limit: std::time::Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline
        && !catalog.stores().iter().all(|s| s.health.is_checked())
    {
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
}

/// A per-listener maximum split over `threads` threads (rounded up, at least 1).
fn per_thread(total: usize, threads: usize) -> usize {
    total.div_ceil(threads.max(1)).max(1)
}

/// The token of a `/metrics` request: `Authorization: Bearer <token>` (what Prometheus
/// sends with `authorization.credentials`), or the `dapr-api-token` header.
fn metrics_token(req: &actix_web::HttpRequest) -> Option<&str> {
    let h = req.headers();
    h.get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| h.get("dapr-api-token").and_then(|v| v.to_str().ok()))
}

/// Threads per door: the configured worker count, or one per CPU (actix-web's default).
pub fn serving_threads(workers: usize) -> usize {
    if workers > 0 {
        workers
    } else {
        std::thread::available_parallelism().map_or(1, usize::from)
    }
}
