//! Hot reload of the configuration: `config/mecha.yaml`, the component files of the
//! resources path and their `kind: Resiliency` documents.
//!
//! A reload is triggered by `SIGHUP` or by a change of the files' contents (a SHA-256 over
//! every file, checked every `server.reloadInterval` by [`crate::watch::Watcher`]). It is all-or-nothing: the files are
//! loaded and validated exactly as at start-up, plus a check that no setting that needs a
//! restart changed ([`restart_only_changes`]); any problem refuses the whole reload, every
//! problem is logged, and the running version keeps serving. Otherwise the next
//! [`Catalog`] version is built ([`Catalog::next`], which keeps unchanged stores running)
//! and published through [`Live`]: new requests use it at once, requests in flight finish
//! on the version they started with, and a removed store's shards stop once their last
//! in-flight call has finished.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::Digest;

use crate::config::{Config, ConfigSources, DEFAULT_CONFIG_FILE, DEFAULT_RESOURCES_PATH, Settings};
use crate::gateway::{Catalog, Live};

/// What started a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// `SIGHUP`.
    Signal,
    /// A configuration file changed.
    FileChange,
    /// A direct call ([`Reloader::reload`] from an embedding program or a test).
    Call,
}

impl Trigger {
    /// The name used in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Signal => "SIGHUP",
            Trigger::FileChange => "file change",
            Trigger::Call => "call",
        }
    }
}

/// The result of one reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The new configuration serves new requests.
    Applied {
        /// Its version.
        version: u64,
        /// What changed, one entry per store, app or section (empty: nothing).
        changes: Vec<String>,
    },
    /// Refused: the previous version keeps serving.
    Refused {
        /// The version that keeps serving.
        version: u64,
        /// Every problem found.
        problems: Vec<String>,
    },
}

/// How long changed files must stay unchanged before a file-change reload reads them.
pub const SETTLE: std::time::Duration = std::time::Duration::from_millis(500);
/// The longest a file-change reload waits for files that keep changing; it then loads what
/// is there (and refuses it if it does not validate).
pub const SETTLE_MAX: std::time::Duration = std::time::Duration::from_secs(10);

/// Loads, validates and publishes configuration versions. One reload runs at a time.
pub struct Reloader {
    sources: ConfigSources,
    live: Arc<Live>,
    state: tokio::sync::Mutex<State>,
}

struct State {
    /// The settings of the live version.
    settings: Settings,
    /// The digest of the files the last reload (or the start) read.
    digest: [u8; 32],
}

impl Reloader {
    /// A reloader of `sources` for `live`, whose current version was loaded with `settings`.
    pub fn new(sources: ConfigSources, live: Arc<Live>, settings: Settings) -> Reloader {
        let digest = files_digest(&sources);
        Reloader {
            sources,
            live,
            state: tokio::sync::Mutex::new(State { settings, digest }),
        }
    }

    /// Whether the files changed since the last reload (or the start).
    pub async fn files_changed(&self) -> bool {
        self.digest().await != self.state.lock().await.digest
    }

    /// Reloads now: loads and validates every file, then applies all of it or nothing.
    /// Logs the outcome and counts it in `mecha_config_reloads_total`.
    pub async fn reload(&self, trigger: Trigger) -> Outcome {
        let mut state = self.state.lock().await;
        let sources = self.sources.clone();
        // File reads (and building factories, which never connect) off the serving thread.
        let loaded = tokio::task::spawn_blocking(move || {
            let digest = files_digest(&sources);
            (digest, Config::load(&sources))
        })
        .await;
        let current = self.live.catalog();
        let (digest, loaded) = match loaded {
            Ok(ok) => ok,
            Err(e) => {
                return self.refused(
                    trigger,
                    &current,
                    vec![format!("loading the configuration failed: {e}")],
                );
            }
        };
        // A refused version is not retried until the files change again.
        state.digest = digest;
        let config = match loaded {
            Ok(c) => c,
            Err(errors) => {
                let problems = errors.iter().map(ToString::to_string).collect();
                return self.refused(trigger, &current, problems);
            }
        };
        let restart = restart_only_changes(&state.settings, &config.settings);
        if !restart.is_empty() {
            return self.refused(trigger, &current, restart);
        }
        let file = self
            .sources
            .config_file
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_FILE));
        let config = match config.validate(&file, current.apps().default_app()) {
            Ok(c) => c,
            Err(errors) => {
                let problems = errors.iter().map(ToString::to_string).collect();
                return self.refused(trigger, &current, problems);
            }
        };
        let next = Arc::new(current.next(&config));
        for w in config.warnings() {
            tracing::warn!("{w}");
        }
        let changes = describe_changes(&current, &next, &state.settings, config.settings());
        let version = next.version();
        self.live.publish(next);
        state.settings = config.into_parts().0;
        crate::metrics::config_reload(true);
        crate::metrics::config_version(version);
        tracing::info!(
            version,
            previous = current.version(),
            trigger = trigger.as_str(),
            changes = %if changes.is_empty() { "none".to_owned() } else { changes.join("; ") },
            "configuration reloaded: version {version} is live"
        );
        Outcome::Applied { version, changes }
    }

    fn refused(&self, trigger: Trigger, current: &Catalog, problems: Vec<String>) -> Outcome {
        let version = current.version();
        crate::metrics::config_reload(false);
        for p in &problems {
            tracing::error!(trigger = trigger.as_str(), problem = %p, "configuration reload problem");
        }
        tracing::error!(
            version,
            trigger = trigger.as_str(),
            problems = problems.len(),
            "configuration reload refused: version {version} keeps serving"
        );
        Outcome::Refused { version, problems }
    }

    /// Reloads if the files changed since the last reload (or the start), once they have
    /// settled. [`crate::watch::Watcher`] runs it every `server.reloadInterval`.
    pub async fn check_files(&self) {
        if self.files_changed().await {
            self.settle().await;
            self.reload(Trigger::FileChange).await;
        }
    }

    /// Waits until the files have stayed the same for [`SETTLE`] (at most [`SETTLE_MAX`]),
    /// so that a file still being written in place (an editor's save, `cp`, a config agent
    /// writing in chunks) is never loaded half-written: a component cut at a line boundary
    /// parses, and would lose its last lines (`scopes:`, say).
    async fn settle(&self) {
        let started = tokio::time::Instant::now();
        let mut last = self.digest().await;
        loop {
            tokio::time::sleep(SETTLE).await;
            let now = self.digest().await;
            if now == last || started.elapsed() >= SETTLE_MAX {
                return;
            }
            last = now;
        }
    }

    async fn digest(&self) -> [u8; 32] {
        let sources = self.sources.clone();
        tokio::task::spawn_blocking(move || files_digest(&sources))
            .await
            .unwrap_or([0; 32])
    }

    /// Reloads on every `SIGHUP` received by `hup`, forever (spawn it; abort to stop).
    /// Create `hup` with [`sighup`] before announcing the server, so that no SIGHUP can
    /// arrive unhandled (its default action ends the process).
    #[cfg(unix)]
    pub async fn on_sighup(self: Arc<Self>, mut hup: tokio::signal::unix::Signal) {
        while hup.recv().await.is_some() {
            self.reload(Trigger::Signal).await;
        }
    }
}

/// Starts listening for `SIGHUP` (must run inside the tokio runtime).
#[cfg(unix)]
pub fn sighup() -> std::io::Result<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
}

/// The files a load reads, as [`Config::load`] picks them.
fn watched_files(sources: &ConfigSources) -> Vec<PathBuf> {
    let mut files = vec![
        sources
            .config_file
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_FILE)),
    ];
    let dir = match &sources.resources_path {
        Some(d) => Some(d.clone()),
        None => Some(PathBuf::from(DEFAULT_RESOURCES_PATH)).filter(|d| d.is_dir()),
    };
    if let Some(dir) = dir
        && let Ok(entries) = std::fs::read_dir(&dir)
    {
        let mut yaml: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
            .collect();
        yaml.sort();
        files.extend(yaml);
    }
    files
}

/// SHA-256 over the name and contents of every watched file (a missing or unreadable file
/// counts as its error text, so its appearance is a change).
fn files_digest(sources: &ConfigSources) -> [u8; 32] {
    let mut h = sha2::Sha256::new();
    for f in watched_files(sources) {
        let name = f.to_string_lossy();
        h.update((name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        match std::fs::read(&f) {
            Ok(bytes) => {
                h.update(b"\x01");
                h.update((bytes.len() as u64).to_le_bytes());
                h.update(&bytes);
            }
            Err(e) => {
                h.update(b"\x00");
                h.update(e.kind().to_string().as_bytes());
            }
        }
    }
    h.finalize().into()
}

/// Every setting that changed between `old` and `new` but only takes effect at start-up
/// (listeners, thread counts, actor tunables, limits read when the servers start), each
/// naming its `mecha.yaml` field. Ports, the listen address and the app id are command-line
/// flags and never reload.
pub fn restart_only_changes(old: &Settings, new: &Settings) -> Vec<String> {
    RESTART_ONLY
        .iter()
        .filter_map(|(field, show)| {
            let (a, b) = (show(old), show(new));
            (a != b).then(|| {
                format!(
                    "{}: {field} changed ({a} -> {b}): this setting needs a restart, so the reload is refused (restore it, or restart Mecha)",
                    Path::new(DEFAULT_CONFIG_FILE).display()
                )
            })
        })
        .collect()
}

/// The restart-only settings: each `mecha.yaml` field and how its value is shown.
type Shown = fn(&Settings) -> String;
const RESTART_ONLY: &[(&str, Shown)] = &[
    ("server.workers", |s| s.server.workers.to_string()),
    ("server.shutdownTimeout", |s| dur(s.server.shutdown_timeout)),
    ("server.tokenFileCheckInterval", |s| {
        dur(s.server.token_file_check_interval)
    }),
    ("server.reloadInterval", |s| dur(s.server.reload_interval)),
    // The listeners are built with or without TLS at start; renewed certificate files (same
    // paths) are picked up without a reload (`server.tls.checkInterval`).
    ("server.tls", |s| tls(s.server.tls.as_ref())),
    // The exporter is installed with the log subscriber, once per process.
    ("tracing", |s| {
        s.tracing
            .as_ref()
            .map_or_else(|| "off".to_owned(), |t| t.describe())
    }),
    ("actors.mailboxCapacity", |s| {
        s.actors.mailbox_capacity.to_string()
    }),
    ("actors.requestTimeout", |s| dur(s.actors.request_timeout)),
    ("actors.healthInterval", |s| dur(s.actors.health_interval)),
    ("actors.restartAfterFailedPings", |s| {
        s.actors.restart_after_failed_pings.to_string()
    }),
    ("actors.ttlSweepInterval", |s| {
        dur(s.actors.ttl_sweep_interval)
    }),
    ("limits.maxBodySize", |s| s.limits.max_body_size.to_string()),
    ("limits.maxBulkItems", |s| {
        s.limits.max_bulk_items.to_string()
    }),
    ("limits.maxTransactionOps", |s| {
        s.limits.max_transaction_ops.to_string()
    }),
    // Baked into the emulated query's wrapper when the store is built.
    ("limits.maxQueryScan", |s| {
        s.limits.max_query_scan.to_string()
    }),
    ("limits.maxConnections", |s| {
        s.limits.max_connections.to_string()
    }),
    ("limits.headerTimeout", |s| dur(s.limits.header_timeout)),
    ("limits.idleTimeout", |s| dur(s.limits.idle_timeout)),
    ("limits.maxConcurrentStreams", |s| {
        s.limits.max_concurrent_streams.to_string()
    }),
    ("limits.maxMetadataEntries", |s| {
        s.limits.max_metadata_entries.to_string()
    }),
    ("limits.maxMetadataKeyLength", |s| {
        s.limits.max_metadata_key_length.to_string()
    }),
    ("limits.maxMetadataBytes", |s| {
        s.limits.max_metadata_bytes.to_string()
    }),
];

fn dur(d: std::time::Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// A summary of what a reload changes: stores added, removed (draining), replaced (a new
/// backend definition) or changed (policy, lint, scopes, key prefix, resiliency); apps
/// added, removed or changed; other sections. Names only, never a value (tokens).
fn describe_changes(
    old: &Catalog,
    new: &Catalog,
    old_settings: &Settings,
    new_settings: &Settings,
) -> Vec<String> {
    let mut out = Vec::new();
    for s in new.stores() {
        match old.store_named(&s.name) {
            None => out.push(format!("store {} added", s.name)),
            Some(o) if o.definition != s.definition => {
                out.push(format!("store {} replaced (new definition)", s.name))
            }
            Some(o) => {
                let mut what = Vec::new();
                if o.matrix != s.matrix {
                    what.push("policy");
                }
                if o.lint_mode != s.lint_mode || o.per_app.len() != s.per_app.len() {
                    what.push("lint");
                }
                if o.resiliency != s.resiliency {
                    what.push("resiliency");
                }
                if o.scopes != s.scopes {
                    what.push("scopes");
                }
                if o.key_prefix != s.key_prefix {
                    what.push("keyPrefix");
                }
                if !what.is_empty() {
                    out.push(format!("store {} changed ({})", s.name, what.join(", ")));
                }
            }
        }
    }
    for o in old.stores() {
        if new.store_named(&o.name).is_none() {
            out.push(format!("store {} removed (draining)", o.name));
        }
    }
    for a in &new_settings.apps {
        match old_settings.apps.iter().find(|o| o.id == a.id) {
            None => out.push(format!("app {} added", a.id)),
            Some(o) if o != a => out.push(format!("app {} changed", a.id)),
            Some(_) => {}
        }
    }
    for o in &old_settings.apps {
        if !new_settings.apps.iter().any(|a| a.id == o.id) {
            out.push(format!("app {} removed", o.id));
        }
    }
    if old_settings.limits != new_settings.limits {
        out.push("limits changed".into());
    }
    if old_settings.quota != new_settings.quota {
        out.push("quotas changed".into());
    }
    if old_settings.metrics_token != new_settings.metrics_token {
        out.push("metrics token changed".into());
    }
    out
}

/// `server.tls` in one line, for a restart-only change.
fn tls(t: Option<&crate::config::TlsSettings>) -> String {
    match t {
        None => "off".to_owned(),
        Some(t) => format!(
            "certFile {}, keyFile {}, clientCaFile {}, requireClientCert {}, checkInterval {}",
            t.cert_file.display(),
            t.key_file.display(),
            t.client_ca_file
                .as_deref()
                .map_or_else(|| "none".to_owned(), |p| p.display().to_string()),
            t.require_client_cert,
            dur(t.check_interval)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_only_fields_are_named() {
        let old = Settings::default();
        let mut new = Settings::default();
        assert!(restart_only_changes(&old, &new).is_empty());
        new.server.workers = 3;
        new.limits.max_connections = 10;
        new.limits.max_key_length = 10; // live: not listed
        let got = restart_only_changes(&old, &new);
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(
            got[0].contains("server.workers changed (0 -> 3)"),
            "{got:?}"
        );
        assert!(got[1].contains("limits.maxConnections"), "{got:?}");
        // Turning TLS on needs new listeners.
        let mut tls = Settings::default();
        tls.server.tls = Some(crate::config::TlsSettings {
            cert_file: "c.pem".into(),
            key_file: "k.pem".into(),
            client_ca_file: None,
            require_client_cert: false,
            check_interval: std::time::Duration::from_secs(1),
        });
        let got = restart_only_changes(&old, &tls);
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(
            got[0].contains("server.tls changed (off -> certFile c.pem, keyFile k.pem"),
            "{got:?}"
        );
    }
}
