//! Wiring: build the catalog, start the HTTP door (one gateway pipeline per worker thread),
//! the gRPC door (one more pipeline, on its own arbiter; see [`crate::gateway::grpc`]) and
//! the metrics endpoint; stop them gracefully, gRPC together with HTTP. With configuration
//! sources, reload on `SIGHUP` and on file change ([`crate::reload`]).
//!
//! Must run inside an actix system (`actix_rt::System`), which `main` and the test harness
//! provide.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpResponse, HttpServer, web};

use crate::config::{Config, ConfigSources, Settings};
use crate::gateway::grpc::GrpcServer;
use crate::gateway::http::{HttpState, dispatch};
use crate::gateway::{Catalog, Gateway, Live};
use crate::reload::{Outcome, Reloader, Trigger};

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
    /// Whether SIGINT/SIGTERM trigger a graceful shutdown (off for embedded use and tests);
    /// with `config_sources`, also whether SIGHUP reloads.
    pub handle_signals: bool,
    /// Where the configuration was loaded from: enables reloads ([`Running::reload`], the
    /// file check every `server.reloadInterval`, and SIGHUP with `handle_signals`).
    pub config_sources: Option<ConfigSources>,
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
            config_sources: None,
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
    live: Arc<Live>,
    reloader: Option<Arc<Reloader>>,
    http: ServerHandle,
    grpc: GrpcServer,
    metrics: ServerHandle,
    http_task: actix_rt::task::JoinHandle<io::Result<()>>,
    /// Background tasks (token file check, configuration watch, SIGHUP), aborted on stop.
    tasks: Vec<actix_rt::task::JoinHandle<()>>,
    /// The served TLS certificate, when `server.tls` is set (for a forced
    /// [`crate::tls::CertStore::refresh`], e.g. on `SIGHUP`).
    pub tls: Option<Arc<crate::tls::CertStore>>,
}

impl Running {
    /// The live catalog (the configuration version new requests use).
    pub fn catalog(&self) -> Arc<Catalog> {
        self.live.catalog()
    }

    /// Reloads the configuration from its sources now (as SIGHUP does). `None` when Mecha
    /// was started without `config_sources`.
    pub async fn reload(&self) -> Option<Outcome> {
        match &self.reloader {
            Some(r) => Some(r.reload(Trigger::Call).await),
            None => None,
        }
    }

    fn abort_tasks(&self) {
        for t in &self.tasks {
            t.abort();
        }
    }

    /// Stops every listener; `graceful` waits (up to the shutdown timeout) for in-flight requests.
    pub async fn stop(&self, graceful: bool) {
        self.abort_tasks();
        self.http.stop(graceful).await;
        self.grpc.stop(graceful).await;
        self.metrics.stop(graceful).await;
    }

    /// Waits until the HTTP server ends (on a signal, or after [`Running::stop`]), then
    /// stops the other listeners (gRPC gracefully).
    pub async fn wait(self) -> io::Result<()> {
        let Running {
            http_task,
            tasks,
            grpc,
            metrics,
            ..
        } = self;
        let result = http_task.await.map_err(io::Error::other);
        for t in &tasks {
            t.abort();
        }
        grpc.stop(true).await;
        metrics.stop(true).await;
        result?
    }
}

/// Starts Mecha with validated configuration: the live catalog, the three listeners, the
/// background tasks, then a bounded wait for each store's first ping.
pub async fn start(config: Config, opts: Options) -> io::Result<Running> {
    let file = opts
        .config_sources
        .as_ref()
        .and_then(|s| s.config_file.clone())
        .unwrap_or_else(|| std::path::PathBuf::from(crate::config::DEFAULT_CONFIG_FILE));
    let config = config.validate(&file, &opts.app_id).map_err(|problems| {
        let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("refused store policies: {}", problems.join("; ")),
        )
    })?;
    // Installed first, so the handles the catalog registers belong to the real recorder.
    let prometheus = crate::metrics::install();
    let catalog = Arc::new(Catalog::new(&config));
    let (settings, _) = config.into_parts();
    let live = Live::new(catalog.clone());
    crate::metrics::config_version(catalog.version());
    let tls = server_tls(&settings)?;

    let grpc_addr = SocketAddr::new(opts.listen_address, opts.grpc_port);
    let grpc_listener =
        GrpcServer::bind(grpc_addr).map_err(|e| bind_error("gRPC", grpc_addr, "--grpc-port", e))?;
    let (http, http_addr) = http_server(&live, &settings, &opts, tls.as_ref())?;
    let http_handle = http.handle();
    let (metrics, metrics_addr) = metrics_server(&live, prometheus, &settings, &opts)?;
    let metrics_handle = metrics.handle();
    actix_rt::spawn(metrics);
    let http_task = actix_rt::spawn(http);
    let grpc = GrpcServer::start(
        live.clone(),
        settings.actors.clone(),
        grpc_listener,
        settings.server.shutdown_timeout,
        serving_threads(settings.server.workers),
        tls.as_ref().map(|t| t.grpc.clone()),
    )?;
    let grpc_addr = grpc.local_addr();
    let (tasks, reloader) = background_tasks(&live, &settings, &opts, tls.as_ref());
    let addrs = [http_addr, grpc_addr, metrics_addr];
    log_listening(&catalog, &opts, tls.as_ref(), addrs);
    wait_first_pings(&catalog, settings.actors.request_timeout).await;
    if catalog.stores().is_empty() {
        tracing::warn!("no state store is configured: every state call will fail");
    }
    Ok(Running {
        http_addr,
        grpc_addr,
        metrics_addr,
        live,
        reloader,
        http: http_handle,
        grpc,
        metrics: metrics_handle,
        http_task,
        tasks,
        tls: tls.map(|t| t.certs),
    })
}

/// The server's TLS material, if `server.tls` is set; refused settings fail the start.
fn server_tls(settings: &Settings) -> io::Result<Option<crate::tls::ServerTls>> {
    let Some(t) = &settings.server.tls else {
        return Ok(None);
    };
    crate::tls::ServerTls::new(t).map(Some).map_err(|problems| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "refused TLS settings: {}",
                crate::tls::ServerTls::describe(&problems)
            ),
        )
    })
}

/// The HTTP listener, bound and ready to run: one gateway and one set of store shards per
/// worker thread, every connection tracked and bounded in number and time.
fn http_server(
    live: &Arc<Live>,
    settings: &Settings,
    opts: &Options,
    tls: Option<&crate::tls::ServerTls>,
) -> io::Result<(actix_web::dev::Server, SocketAddr)> {
    let actor_settings = settings.actors.clone();
    let limits = settings.limits.clone();
    let l = live.clone();
    let http_conns = crate::gateway::conns::ConnTracker::new(
        "http",
        limits.max_connections,
        limits.resources.max_connections_per_peer,
        limits.header_timeout,
        None,
    );
    let mut http = HttpServer::new(move || {
        // Runs once per worker thread: each worker gets its own gateway and store shards.
        let gateway = Gateway::start_local(l.clone(), &actor_settings);
        App::new()
            .app_data(web::Data::new(HttpState { gateway }))
            .default_service(web::to(dispatch))
    })
    .shutdown_timeout(settings.server.shutdown_timeout.as_secs().max(1))
    // Every connection is registered with the tracker (see `crate::gateway::conns`):
    // at most `maxConnections` and `maxConnectionsPerPeer`, unauthenticated ones closed
    // first for room, a first request within `headerTimeout` of the accept.
    .on_connect(move |io, ext| track_http_connection(&http_conns, io, ext))
    // Bounded connections and time: actix counts connections per worker thread; it
    // accepts up to the whole limit on each, so that the tracker (not a full worker that
    // stops accepting) decides which connection goes.
    .max_connections(limits.max_connections)
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
    let http = match tls {
        Some(tls) => http.bind_rustls_0_23(http_bind, tls.http.clone()),
        None => http.bind(http_bind),
    }
    .map_err(|e| bind_error("HTTP", http_bind, "--http-port", e))?;
    let addr = http.addrs()[0];
    Ok((http.run(), addr))
}

/// The metrics listener (`/metrics`, plain HTTP, one worker), bound and ready to run.
fn metrics_server(
    live: &Arc<Live>,
    prometheus: metrics_exporter_prometheus::PrometheusHandle,
    settings: &Settings,
    opts: &Options,
) -> io::Result<(actix_web::dev::Server, SocketAddr)> {
    let l = live.clone();
    let metrics = HttpServer::new(move || {
        let handle = prometheus.clone();
        let live = l.clone();
        App::new().route(
            "/metrics",
            web::get().to(move |req: actix_web::HttpRequest| {
                let catalog = live.catalog();
                let allowed = catalog
                    .apps()
                    .metrics_allowed(crate::gateway::http::portability::operator_token(&req));
                if allowed {
                    for s in catalog.stores() {
                        crate::metrics::record_store_health(
                            &s.name,
                            s.health.is_healthy(),
                            s.health.restarts(),
                        );
                    }
                }
                let body = allowed.then(|| crate::metrics::render(&handle));
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
    let addr = metrics.addrs()[0];
    Ok((metrics.run(), addr))
}

/// The tasks that run beside the listeners: the file watcher (token files, the
/// configuration files for a reload, the certificate files) and the SIGHUP reload.
fn background_tasks(
    live: &Arc<Live>,
    settings: &Settings,
    opts: &Options,
    tls: Option<&crate::tls::ServerTls>,
) -> (Vec<actix_rt::task::JoinHandle<()>>, Option<Arc<Reloader>>) {
    let mut tasks = Vec::new();
    let mut watcher = crate::watch::Watcher::new();
    // Token files are checked for changes, so a rotated token needs no restart (whichever
    // configuration version is live, and whether or not it has token files).
    let l = live.clone();
    watcher.subscribe(settings.server.token_file_check_interval, move || {
        let catalog = l.catalog();
        if catalog.apps().has_token_files() {
            catalog.apps().reload_tokens();
        }
        std::future::ready(())
    });
    let reloader = opts
        .config_sources
        .clone()
        .map(|sources| Arc::new(Reloader::new(sources, live.clone(), settings.clone())));
    if let Some(r) = &reloader {
        // A zero interval subscribes nothing: reload on SIGHUP only.
        let r = r.clone();
        watcher.subscribe(settings.server.reload_interval, move || {
            let r = r.clone();
            async move { r.check_files().await }
        });
    }
    // Renewed certificate files are picked up without a restart.
    if let (Some(t), Some(s)) = (tls, &settings.server.tls) {
        let certs = t.certs.clone();
        watcher.subscribe(s.check_interval, move || certs.clone().check_files());
    }
    tasks.push(actix_rt::spawn(watcher.run()));
    #[cfg(unix)]
    if let Some(r) = &reloader
        && opts.handle_signals
    {
        match crate::reload::sighup() {
            Ok(hup) => tasks.push(actix_rt::spawn(r.clone().on_sighup(hup))),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP: reload on file change only")
            }
        }
    }
    (tasks, reloader)
}

/// The start-up lines: where Mecha listens, and every configured store.
fn log_listening(
    catalog: &Catalog,
    opts: &Options,
    tls: Option<&crate::tls::ServerTls>,
    [http_addr, grpc_addr, metrics_addr]: [SocketAddr; 3],
) {
    // `tls` says whether HTTP and gRPC serve TLS (the metrics listener stays plain).
    match tls {
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
}

/// Names the listener, the address and the flag to change in a bind failure: the port's
/// flag, or `--listen-address` when the address is not one of this machine's.
fn bind_error(listener: &str, addr: SocketAddr, port_flag: &str, e: io::Error) -> io::Error {
    let flag = if e.kind() == io::ErrorKind::AddrNotAvailable {
        "--listen-address: not an address of this machine"
    } else {
        port_flag
    };
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

/// Registers a new HTTP connection with the listener's tracker (its handle lives in the
/// connection's data); a connection that gets no room is shut down at once.
fn track_http_connection(
    tracker: &std::sync::Arc<crate::gateway::conns::ConnTracker>,
    io: &dyn std::any::Any,
    ext: &mut actix_web::dev::Extensions,
) {
    use actix_web::rt::net::TcpStream;
    use std::os::fd::AsFd;
    let tcp = io.downcast_ref::<TcpStream>().or_else(|| {
        io.downcast_ref::<actix_tls::accept::rustls_0_23::TlsStream<TcpStream>>()
            .map(|tls| tls.get_ref().0)
    });
    let Some(tcp) = tcp else { return };
    let Ok(peer) = tcp.peer_addr() else { return };
    match tracker.admit(tcp.as_fd(), peer.ip()) {
        Some(handle) => {
            ext.insert(crate::gateway::http::ConnSlot(std::rc::Rc::new(handle)));
        }
        None => {
            if let Ok(fd) = tcp.as_fd().try_clone_to_owned() {
                let _ = std::net::TcpStream::from(fd).shutdown(std::net::Shutdown::Both);
            }
        }
    }
}

/// Threads per door: the configured worker count, or one per CPU (actix-web's default).
pub fn serving_threads(workers: usize) -> usize {
    if workers > 0 {
        workers
    } else {
        std::thread::available_parallelism().map_or(1, usize::from)
    }
}
