//! The `mecha` binary: parse the command line, load configuration, run or check.

use std::io::IsTerminal;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use mecha::capabilities::{Matrix, render_effective};
use mecha::config::{Config, ConfigSources};

/// jemalloc instead of glibc's malloc: its background thread gives the memory of a burst of
/// large request bodies back within seconds, where glibc's malloc keeps most of it
/// (per-thread arenas, fragmentation) (README, "Security model"; `tests/limits/redteam_resources.rs`).
/// Built with `percpu_arena:percpu` (`.cargo/config.toml`): one arena per CPU rather than
/// four, which an idle process's scattered first allocations would each touch.
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Mecha: a Dapr State API proxy with explicit portability.
#[derive(Parser)]
#[command(name = "mecha", version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the Dapr state API (the default).
    Run(RunArgs),
    /// Load and validate the configuration, print the stores and exit (1 on any problem).
    Check(CheckArgs),
    /// Ask a running Mecha whether an app's traffic could move to another store type.
    Portability(PortabilityArgs),
    /// Write the book's generated reference pages (CLI, stores, errors, metrics) to a
    /// directory.
    #[command(hide = true)]
    Reference(ReferenceArgs),
}

#[derive(Args, Clone)]
struct ReferenceArgs {
    /// The directory (docs/src/reference in the repository).
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args, Clone)]
struct CheckArgs {
    #[command(flatten)]
    run: RunArgs,
    /// Also exit 1 when there are warnings (an ignored metadata field, a skipped document).
    #[arg(long)]
    strict: bool,
}

#[derive(Args, Clone)]
struct PortabilityArgs {
    /// The app (the token, when Mecha requires one, must be this app's; required with
    /// --metrics-token).
    #[arg(long)]
    app: Option<String>,
    /// The target store type, e.g. `state.jetstream`; without it, every registered type is
    /// listed with its verdict, most portable first.
    #[arg(long)]
    target: Option<String>,
    /// Mecha's HTTP address (`http://` or `https://`).
    #[arg(long, env = "MECHA_URL", default_value = "http://127.0.0.1:3500")]
    url: String,
    /// The app's API token.
    #[arg(long, env = "DAPR_API_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The operator's metrics token: reads any app's report (with --app).
    #[arg(long, env = "MECHA_METRICS_TOKEN", hide_env_values = true)]
    metrics_token: Option<String>,
    /// PEM file of the certificate authorities that sign Mecha's certificate (https only;
    /// default: the system's).
    #[arg(long)]
    cacert: Option<PathBuf>,
    /// `text` (default) or `json` (the endpoint's answer as Mecha sent it).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

/// How `mecha portability` prints its answer.
#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// Lines for humans.
    Text,
    /// The JSON report.
    Json,
}

#[derive(Args, Clone)]
struct RunArgs {
    /// Directory of Dapr component files [default: config/components, or the embedded
    /// in-memory store when that directory does not exist].
    #[arg(long, env = "MECHA_RESOURCES_PATH")]
    resources_path: Option<PathBuf>,
    /// Mecha's own configuration file [default: config/mecha.yaml, optional].
    #[arg(long, env = "MECHA_CONFIG")]
    config: Option<PathBuf>,
    /// HTTP API port (0 picks a free port). daprd's `--dapr-http-port` and `DAPR_HTTP_PORT`
    /// are accepted too; precedence: the flag (either name), `MECHA_HTTP_PORT`,
    /// `DAPR_HTTP_PORT`, the default.
    #[arg(
        long,
        visible_alias = "dapr-http-port",
        env = "MECHA_HTTP_PORT",
        default_value_t = 3500
    )]
    http_port: u16,
    /// gRPC API port (0 picks a free port). daprd's `--dapr-grpc-port` and `DAPR_GRPC_PORT`
    /// are accepted too; precedence: the flag (either name), `MECHA_GRPC_PORT`,
    /// `DAPR_GRPC_PORT`, the default.
    #[arg(
        long,
        visible_alias = "dapr-grpc-port",
        env = "MECHA_GRPC_PORT",
        default_value_t = 50001
    )]
    grpc_port: u16,
    /// Prometheus metrics port (0 picks a free port).
    #[arg(long, env = "MECHA_METRICS_PORT", default_value_t = 9090)]
    metrics_port: u16,
    /// Address to listen on.
    #[arg(long, env = "MECHA_LISTEN_ADDRESS", default_value = "127.0.0.1")]
    listen_address: IpAddr,
    /// App id of callers when no apps are configured (used in key prefixes and metrics).
    #[arg(long, env = "MECHA_APP_ID", default_value = "default")]
    app_id: String,
    /// Log filter (tracing syntax, e.g. `info` or `mecha=debug`).
    #[arg(long, env = "MECHA_LOG_LEVEL", default_value = "info")]
    log_level: String,
    /// Log format: `text` (human-readable) or `json` (one JSON object per line, with the
    /// request's span fields: protocol, trace_id, app, store, operation).
    #[arg(long, env = "MECHA_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// daprd's `--log-as-json`: the same as `--log-format json`, and it wins over
    /// `--log-format` and `MECHA_LOG_FORMAT` (`--log-as-json=false` changes nothing).
    #[arg(
        long,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        default_value_t = false
    )]
    log_as_json: bool,
    /// PEM certificate chain for TLS on the HTTP and gRPC listeners (replaces
    /// `server.tls.certFile`); TLS needs `--tls-key-file` too.
    #[arg(long, env = "MECHA_TLS_CERT_FILE")]
    tls_cert_file: Option<PathBuf>,
    /// PEM private key of the TLS certificate (replaces `server.tls.keyFile`).
    #[arg(long, env = "MECHA_TLS_KEY_FILE")]
    tls_key_file: Option<PathBuf>,
    /// PEM CA certificates that client certificates are verified against (replaces
    /// `server.tls.clientCaFile`).
    #[arg(long, env = "MECHA_TLS_CLIENT_CA_FILE")]
    tls_client_ca_file: Option<PathBuf>,
    /// Refuse TLS clients without a certificate signed by the client CA (replaces
    /// `server.tls.requireClientCert`).
    #[arg(long, env = "MECHA_TLS_REQUIRE_CLIENT_CERT")]
    tls_require_client_cert: Option<bool>,
}

/// How log lines are written.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// daprd's environment variables for the ports, read when neither the flag nor Mecha's own
/// variable set the port (the value still holds clap's default).
const DAPR_PORT_VARS: [(&str, &str); 2] = [
    ("http_port", "DAPR_HTTP_PORT"),
    ("grpc_port", "DAPR_GRPC_PORT"),
];

impl RunArgs {
    /// Applies daprd's conventions: `DAPR_HTTP_PORT` and `DAPR_GRPC_PORT` below the flags
    /// and Mecha's variables, and `--log-as-json` over `--log-format`. `Err` names the
    /// variable whose value is not a port.
    fn apply_dapr_conventions(&mut self, matches: &clap::ArgMatches) -> Result<(), String> {
        use clap::parser::ValueSource;
        for (id, var) in DAPR_PORT_VARS {
            if matches.value_source(id) != Some(ValueSource::DefaultValue) {
                continue;
            }
            let Some(text) = std::env::var_os(var) else {
                continue;
            };
            let text = text.to_string_lossy();
            let port: u16 = text
                .trim()
                .parse()
                .map_err(|e| format!("invalid value '{text}' for {var}: {e}"))?;
            match id {
                "http_port" => self.http_port = port,
                _ => self.grpc_port = port,
            }
        }
        if self.log_as_json {
            self.log_format = LogFormat::Json;
        }
        Ok(())
    }

    fn sources(&self) -> ConfigSources {
        ConfigSources {
            config_file: self.config.clone(),
            resources_path: self.resources_path.clone(),
            tls_flags: mecha::config::RawTls {
                cert_file: self.tls_cert_file.clone(),
                key_file: self.tls_key_file.clone(),
                client_ca_file: self.tls_client_ca_file.clone(),
                require_client_cert: self.tls_require_client_cert,
                check_interval: None,
            },
        }
    }
}

fn main() -> ExitCode {
    // jemalloc's background thread purges pages left unused for its decay time (10 s), so
    // an idle process gives a burst's memory back instead of keeping it until the next
    // allocation. Without it (a build that cannot start threads) memory is still bounded.
    let _ = tikv_jemalloc_ctl::background_thread::write(true);
    let matches = <Cli as clap::CommandFactory>::command().get_matches();
    let cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let run_matches = match matches.subcommand() {
        Some((_, m)) => m,
        None => &matches,
    };
    let with_conventions = |mut args: RunArgs| match args.apply_dapr_conventions(run_matches) {
        Ok(()) => Ok(args),
        Err(e) => {
            eprintln!("mecha: {e}");
            Err(ExitCode::from(2))
        }
    };
    let outcome = match cli.command {
        Some(Command::Check(CheckArgs { run, strict })) => {
            with_conventions(run).map(|run| check(&CheckArgs { run, strict }))
        }
        Some(Command::Run(args)) => with_conventions(args).map(run),
        Some(Command::Portability(args)) => Ok(portability(&args)),
        Some(Command::Reference(args)) => Ok(reference(&args)),
        None => with_conventions(cli.run).map(run),
    };
    outcome.unwrap_or_else(|code| code)
}

fn load(args: &RunArgs) -> Result<Config, ExitCode> {
    let report = Config::load_report(&args.sources());
    if let Some(config) = report.config {
        return Ok(config);
    }
    eprintln!("configuration has {} problem(s):", report.errors.len());
    for e in &report.errors {
        eprintln!("  - {e}");
    }
    if !report.warnings.is_empty() {
        eprintln!("and {} warning(s):", report.warnings.len());
        for w in &report.warnings {
            eprintln!("  - {w}");
        }
    }
    Err(ExitCode::FAILURE)
}

fn check(args: &CheckArgs) -> ExitCode {
    let config = match load(&args.run) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Err(code) = check_namespaces(&args.run, &config) {
        return code;
    }
    print_capabilities(&config);
    print_app_requirements(&config);
    print_app_targets(&config);
    print_resiliency(&config);
    print_tls(&config);
    print_tracing(&config);
    for w in &config.warnings {
        println!("warning: {w}");
    }
    if args.strict && !config.warnings.is_empty() {
        eprintln!(
            "configuration has {} warning(s) and --strict was given",
            config.warnings.len()
        );
        return ExitCode::FAILURE;
    }
    println!(
        "configuration OK: {} state store(s)",
        config.components.len()
    );
    ExitCode::SUCCESS
}

/// Refuses key namespaces that could meet on one physical store (start-up refuses them too).
fn check_namespaces(args: &RunArgs, config: &Config) -> Result<(), ExitCode> {
    let file = args
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(mecha::config::DEFAULT_CONFIG_FILE));
    let clashes = mecha::config::namespace_problems(
        &file,
        &config.settings,
        &config.components,
        &args.app_id,
    );
    if clashes.is_empty() {
        return Ok(());
    }
    eprintln!("configuration has {} problem(s):", clashes.len());
    for e in &clashes {
        eprintln!("  - {e}");
    }
    Err(ExitCode::FAILURE)
}

/// The capability matrix of each store, after policy.
fn print_capabilities(config: &Config) {
    // `load` has refused every policy that would break a guarantee, so each matrix builds.
    let stores: Vec<(String, String, Matrix)> = config
        .components
        .iter()
        .filter_map(|c| {
            let m = c.matrix(&config.settings).ok()?;
            Some((
                c.name.clone(),
                format!("{} {}", c.component_type, c.version),
                m,
            ))
        })
        .collect();
    println!("Effective capabilities per store (after policy):\n");
    println!("{}", render_effective(&stores));
}

/// Each app's lint mode and requirements on each store it sees (all met: `load` refused
/// any that is not).
fn print_app_requirements(config: &Config) {
    for app in &config.settings.apps {
        for c in config.components.iter().filter(|c| c.visible_to(&app.id)) {
            let Ok(m) = c.app_matrix(&config.settings, app) else {
                continue;
            };
            let reqs: Vec<String> = app
                .requires
                .iter()
                .filter_map(|r| m.requirement_status(r).map(|s| format!("{r}={s}")))
                .collect();
            println!(
                "app '{}' on store '{}': lint {}{}",
                app.id,
                c.name,
                c.lint_mode(&config.settings, Some(app)).as_str(),
                if reqs.is_empty() {
                    String::new()
                } else {
                    format!(", requires {} (met)", reqs.join(", "))
                }
            );
        }
    }
}

/// Each app's portability targets and what each allows (the type's default configuration
/// under the configured baseline, as the gateway checks every call of the app against it).
fn print_app_targets(config: &Config) {
    let settings = &config.settings;
    let targets = mecha::gateway::Targets::build(settings);
    for app in settings.apps.iter() {
        let Some(mine) = targets.of_app(&app.id) else {
            continue;
        };
        println!(
            "app '{}' must stay portable to {} (portability: {}):",
            app.id,
            app.portable_to.join(", "),
            mine.mode.as_str()
        );
        for t in mine.iter() {
            println!("  {}: {}", t.component_type, t.matrix.describe());
        }
    }
}

/// The resiliency policy of each store.
fn print_resiliency(config: &Config) {
    println!(
        "Effective resiliency per store (Dapr `kind: Resiliency`; retry -> breaker -> timeout):\n"
    );
    for c in &config.components {
        println!("{}:", c.name);
        print!("{}", c.resiliency.describe());
    }
    println!();
}

/// Whether the listeners serve TLS, and with which files.
fn print_tracing(config: &Config) {
    match &config.settings.tracing {
        None => {
            println!("Traces: not exported (set tracing.endpoint or OTEL_EXPORTER_OTLP_ENDPOINT)")
        }
        Some(t) => println!("Traces: {}", t.describe()),
    }
}

fn print_tls(config: &Config) {
    match &config.settings.server.tls {
        None => println!("TLS: off (HTTP and gRPC serve plain TCP)"),
        Some(t) => println!(
            "TLS: on for HTTP and gRPC (certificate {}, key {}, client certificates {}, files checked every {}); metrics stays plain",
            t.cert_file.display(),
            t.key_file.display(),
            match (&t.client_ca_file, t.require_client_cert) {
                (None, _) => "off".to_string(),
                (Some(ca), false) => format!("optional, verified against {}", ca.display()),
                (Some(ca), true) => format!("required, verified against {}", ca.display()),
            },
            humantime::format_duration(t.check_interval),
        ),
    }
}

/// `mecha reference --out DIR`: the generated pages of the book's reference.
fn reference(args: &ReferenceArgs) -> ExitCode {
    let cli = format!(
        "{}\n\n{}",
        mecha::reference::GENERATED,
        clap_markdown::help_markdown::<Cli>()
    );
    let mut pages = vec![mecha::reference::Page {
        path: "cli.md".into(),
        text: cli,
    }];
    pages.extend(mecha::reference::pages());
    for page in pages {
        let path = args.out.join(&page.path);
        let written = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&path, page.text));
        if let Err(e) = written {
            eprintln!("mecha reference: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

/// `mecha portability`: exits 0 when portable, 1 when not, 2 when it could not tell.
fn portability(args: &PortabilityArgs) -> ExitCode {
    use mecha::portability_client::{self as client, Outcome};
    let could_not_tell = |e: &dyn std::fmt::Display| {
        eprintln!("mecha portability: {e}");
        ExitCode::from(Outcome::Unknown as u8)
    };
    let query = client::Query {
        url: args.url.clone(),
        app: args.app.clone(),
        target: args.target.clone(),
        token: args.token.clone(),
        metrics_token: args.metrics_token.clone(),
        cacert: args.cacert.clone(),
    };
    let body = match client::fetch(&query) {
        Ok(body) => body,
        Err(e) => return could_not_tell(&e),
    };
    let outcome = client::outcome(&body);
    match args.format {
        Format::Json => println!("{body}"),
        Format::Text => match client::render(&body) {
            Ok(text) => print!("{text}"),
            Err(e) => return could_not_tell(&e),
        },
    }
    ExitCode::from(outcome as u8)
}

/// Libraries whose debug and trace lines can carry keys, values, statement parameters or
/// request headers (tokens): capped at `info` whatever `--log-level` says (and, like every
/// dependency, at `warn` unless the filter asks for debug).
const TALKATIVE_TARGETS: &[&str] = &[
    "tokio_postgres",
    "postgres_protocol",
    "deadpool",
    "deadpool_postgres",
    "deadpool_redis",
    "redis",
    "async_nats",
    "h2",
    "hyper",
    "hyper_util",
    "ureq",
    "ureq_proto",
    "tonic",
    "tower",
    "actix_http",
    "actix_web",
    "actix_server",
    "actix_router",
    "actix_codec",
    "tokio_util",
    "want",
    "mio",
];

/// The log subscriber, with the OTLP trace exporter when `tracing` configures one; the
/// exporter returned must live as long as the process (dropping it sends what is buffered).
fn init_logging(
    level: &str,
    format: LogFormat,
    tracing: Option<&mecha::telemetry::TracingSettings>,
) -> Result<Option<mecha::telemetry::Exporter>, String> {
    use tracing_subscriber::Layer;
    use tracing_subscriber::filter::{FilterExt, LevelFilter, Targets};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Dependencies' own lines (a driver's `NOTICE: relation ... skipping`, a server's
    // "starting workers") are chatter: shown only when the filter asks for debug somewhere;
    // at `info` only their warnings and errors pass. Mecha's own lines follow the filter.
    let verbose = filter
        .max_level_hint()
        .is_some_and(|l| l >= LevelFilter::DEBUG);
    let deps = if verbose {
        LevelFilter::TRACE
    } else {
        LevelFilter::WARN
    };
    let capped = TALKATIVE_TARGETS.iter().fold(
        Targets::new()
            .with_default(deps)
            .with_target("mecha", LevelFilter::TRACE),
        |t, name| t.with_target(*name, deps.min(LevelFilter::INFO)),
    );
    let layer = tracing_subscriber::fmt::layer()
        .with_target(false)
        .with_writer(std::io::stderr);
    let layer = match format {
        LogFormat::Text => layer
            .with_ansi(std::io::stderr().is_terminal())
            .with_filter(filter.and(capped))
            .boxed(),
        // The current span and the list of its parents, each with its fields.
        LogFormat::Json => layer
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_filter(filter.and(capped))
            .boxed(),
    };
    // Exported: Mecha's own spans (request, state, store_call), whatever the log level.
    let (otlp, exporter) = match tracing {
        Some(t) => {
            let (layer, exporter) = mecha::telemetry::otlp_layer(t)?;
            let spans = Targets::new().with_target("mecha", LevelFilter::DEBUG);
            (Some(layer.with_filter(spans)), Some(exporter))
        }
        None => (None, None),
    };
    tracing_subscriber::registry().with(layer).with(otlp).init();
    Ok(exporter)
}

fn run(args: RunArgs) -> ExitCode {
    let config = match load(&args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let _exporter = match init_logging(
        &args.log_level,
        args.log_format,
        config.settings.tracing.as_ref(),
    ) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("mecha: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(t) = &config.settings.tracing {
        tracing::info!(export = %t.describe(), "exporting traces");
    }
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    let opts = mecha::app::Options {
        listen_address: args.listen_address,
        http_port: args.http_port,
        grpc_port: args.grpc_port,
        metrics_port: args.metrics_port,
        config_sources: Some(args.sources()),
        app_id: args.app_id,
        handle_signals: true,
    };
    let result = actix_rt::System::new().block_on(async move {
        let running = mecha::app::start(config, opts).await?;
        running.wait().await
    });
    match result {
        Ok(()) => {
            tracing::info!("mecha stopped");
            ExitCode::SUCCESS
        }
        // Once, as a log line (in the chosen format): the error names what failed.
        Err(e) => {
            tracing::error!(error = %e, "mecha failed");
            ExitCode::FAILURE
        }
    }
}
