//! TLS for the HTTP and gRPC listeners (`server.tls`), with rustls and the `ring` provider.
//!
//! Both listeners share one [`CertStore`]: the certificate and key rustls presents come from
//! it on every handshake, so a renewed pair takes effect for the next connection while open
//! connections keep the session they negotiated. [`CertStore::refresh`] re-reads the files
//! and swaps the pair only when it is complete and consistent (parsable PEM, a key that
//! matches the leaf certificate); otherwise the previous pair keeps serving and the reason
//! is logged once per distinct file content. [`CertStore::check_files`] calls it, run by
//! [`crate::watch::Watcher`] every `checkInterval`; anything else may call it too.
//!
//! The client CA (`clientCaFile`) is read once at start.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use sha2::{Digest, Sha256};

/// `server.tls`: the certificate the HTTP and gRPC listeners present, and optionally the
/// CA that client certificates must chain to. The files are re-read when they change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM certificate chain, leaf first (`certFile`).
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of the leaf certificate (`keyFile`).
    pub key_file: PathBuf,
    /// PEM CA certificates client certificates are verified against (`clientCaFile`).
    pub client_ca_file: Option<PathBuf>,
    /// Refuse clients without a certificate signed by `client_ca_file` (`requireClientCert`).
    pub require_client_cert: bool,
    /// How often the files are checked for a change (`checkInterval`).
    pub check_interval: Duration,
}

impl TlsSettings {
    /// Default of `server.tls.checkInterval`.
    pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(1);
}

/// ALPN protocol of HTTP/2, the only one the gRPC listener speaks.
const ALPN_H2: &[u8] = b"h2";

/// The crypto provider of every TLS listener.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A problem with one `server.tls` field: the field's path and what is wrong.
pub type Problem = (String, String);

fn problem(field: &str, msg: String) -> Problem {
    (format!("server.tls.{field}"), msg)
}

fn read(field: &str, path: &Path) -> Result<Vec<u8>, Problem> {
    std::fs::read(path).map_err(|e| problem(field, format!("cannot read {}: {e}", path.display())))
}

/// The certificate chain of `cert` and the key of `key` (PEM bytes), checked to match.
fn certified_key(
    settings: &TlsSettings,
    cert: &[u8],
    key: &[u8],
    provider: &CryptoProvider,
) -> Result<CertifiedKey, Problem> {
    let chain = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            problem(
                "certFile",
                format!("{}: bad PEM: {e}", settings.cert_file.display()),
            )
        })?;
    if chain.is_empty() {
        return Err(problem(
            "certFile",
            format!("{} holds no PEM certificate", settings.cert_file.display()),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| {
        problem(
            "keyFile",
            format!(
                "{} holds no usable PEM private key: {e}",
                settings.key_file.display()
            ),
        )
    })?;
    let signing = provider.key_provider.load_private_key(key).map_err(|e| {
        problem(
            "keyFile",
            format!(
                "{}: unsupported private key: {e}",
                settings.key_file.display()
            ),
        )
    })?;
    let pair = CertifiedKey::new(chain, signing);
    match pair.keys_match() {
        // A key whose public half cannot be read is checked at the first handshake instead.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(pair)
        }
        Err(_) => Err(problem(
            "keyFile",
            format!(
                "{} does not belong to the certificate in {}",
                settings.key_file.display(),
                settings.cert_file.display()
            ),
        )),
    }
}

/// Reads the certificate and key files: their combined digest and the checked pair.
fn load_pair(
    settings: &TlsSettings,
    provider: &CryptoProvider,
) -> Result<([u8; 32], CertifiedKey), Problem> {
    let cert = read("certFile", &settings.cert_file)?;
    let key = read("keyFile", &settings.key_file)?;
    let digest = files_digest(&cert, &key);
    certified_key(settings, &cert, &key, provider).map(|pair| (digest, pair))
}

fn files_digest(cert: &[u8], key: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update((cert.len() as u64).to_be_bytes());
    h.update(cert);
    h.update(key);
    h.finalize().into()
}

/// The SHA-256 fingerprint (hex) of a pair's leaf certificate, for logs.
fn fingerprint(pair: &CertifiedKey) -> String {
    let leaf = pair.cert.first().map_or(&[][..], |c| c.as_ref());
    Sha256::digest(leaf)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The client certificate roots of `clientCaFile`.
fn client_roots(path: &Path) -> Result<RootCertStore, Problem> {
    let pem = read("clientCaFile", path)?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert =
            cert.map_err(|e| problem("clientCaFile", format!("{}: bad PEM: {e}", path.display())))?;
        roots.add(cert).map_err(|e| {
            problem(
                "clientCaFile",
                format!("{}: not a usable CA certificate: {e}", path.display()),
            )
        })?;
    }
    if roots.is_empty() {
        return Err(problem(
            "clientCaFile",
            format!("{} holds no PEM certificate", path.display()),
        ));
    }
    Ok(roots)
}

/// Every problem with the files of `settings` (what start-up and `mecha check` refuse).
pub fn check(settings: &TlsSettings) -> Vec<Problem> {
    match ServerTls::new(settings) {
        Ok(_) => Vec::new(),
        Err(problems) => problems,
    }
}

/// What a [`CertStore::refresh`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refresh {
    /// The files did not change since the last look.
    Unchanged,
    /// A new pair is served from the next handshake on; its leaf fingerprint.
    Renewed(String),
    /// The files changed but cannot be used; the previous pair keeps serving.
    Refused(String),
}

/// The certificate and key every TLS handshake uses, swapped atomically on renewal.
#[derive(Debug)]
pub struct CertStore {
    settings: TlsSettings,
    provider: Arc<CryptoProvider>,
    current: ArcSwap<CertifiedKey>,
    /// Digest of the file contents last looked at (served or refused).
    seen: Mutex<[u8; 32]>,
    /// The last refusal logged, so a broken file is reported once, not on every check.
    logged: Mutex<Option<String>>,
}

impl CertStore {
    /// The SHA-256 fingerprint (hex) of the leaf certificate now served.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.current.load())
    }

    /// Re-reads the files; serves their pair from now on if they changed and are usable.
    pub fn refresh(&self) -> Refresh {
        let cert = std::fs::read(&self.settings.cert_file);
        let key = std::fs::read(&self.settings.key_file);
        let (cert, key) = match (cert, key) {
            (Ok(c), Ok(k)) => (c, k),
            (Err(e), _) | (_, Err(e)) => {
                // A file being replaced may be missing for a moment: report, keep serving,
                // and look again next time (the digest is left as it was).
                return Refresh::Refused(format!("cannot read the certificate or key: {e}"));
            }
        };
        let digest = files_digest(&cert, &key);
        let mut seen = self.seen.lock();
        if *seen == digest {
            return Refresh::Unchanged;
        }
        *seen = digest;
        match certified_key(&self.settings, &cert, &key, &self.provider) {
            Ok(pair) => {
                let print = fingerprint(&pair);
                self.current.store(Arc::new(pair));
                Refresh::Renewed(print)
            }
            Err((field, msg)) => Refresh::Refused(format!("{field}: {msg}")),
        }
    }

    /// [`CertStore::refresh`], logging a renewal or a refusal.
    pub fn refresh_and_log(&self) -> Refresh {
        let r = self.refresh();
        let mut logged = self.logged.lock();
        match &r {
            Refresh::Unchanged => {}
            Refresh::Refused(why) if logged.as_deref() == Some(why.as_str()) => {}
            Refresh::Renewed(print) => tracing::info!(
                cert_file = %self.settings.cert_file.display(),
                fingerprint = %print,
                "TLS certificate renewed; new connections get it"
            ),
            Refresh::Refused(why) => tracing::warn!(
                fingerprint = %self.fingerprint(),
                "TLS certificate files changed but cannot be used, the previous certificate keeps serving: {why}"
            ),
        }
        match &r {
            Refresh::Unchanged => {}
            Refresh::Renewed(_) => *logged = None,
            Refresh::Refused(why) => *logged = Some(why.clone()),
        }
        drop(logged);
        r
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// The TLS configuration of the listeners, built from `server.tls`.
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// The shared, renewable certificate.
    pub certs: Arc<CertStore>,
    /// For the HTTP listener (actix-web adds its ALPN protocols).
    pub http: ServerConfig,
    /// For the gRPC listener (ALPN `h2`, which gRPC clients require).
    pub grpc: Arc<ServerConfig>,
    /// Whether clients must present a certificate.
    pub client_auth: ClientAuth,
}

/// How client certificates are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// Not asked for.
    Off,
    /// Verified when sent; clients without one are served too.
    Optional,
    /// Required and verified.
    Required,
}

impl std::fmt::Display for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ClientAuth::Off => "off",
            ClientAuth::Optional => "optional",
            ClientAuth::Required => "required",
        })
    }
}

impl ServerTls {
    /// Loads the files of `settings`; every problem names its `server.tls` field.
    pub fn new(settings: &TlsSettings) -> Result<ServerTls, Vec<Problem>> {
        let provider = provider();
        let mut problems = Vec::new();
        let pair = load_pair(settings, &provider)
            .map_err(|p| problems.push(p))
            .ok();
        let verifier = match &settings.client_ca_file {
            None => None,
            Some(path) => match client_roots(path) {
                Ok(roots) => {
                    let b = WebPkiClientVerifier::builder_with_provider(
                        Arc::new(roots),
                        provider.clone(),
                    );
                    let b = if settings.require_client_cert {
                        b
                    } else {
                        b.allow_unauthenticated()
                    };
                    match b.build() {
                        Ok(v) => Some(v),
                        Err(e) => {
                            problems
                                .push(problem("clientCaFile", format!("{}: {e}", path.display())));
                            None
                        }
                    }
                }
                Err(p) => {
                    problems.push(p);
                    None
                }
            },
        };
        let Some((digest, pair)) = pair else {
            return Err(problems);
        };
        if !problems.is_empty() {
            return Err(problems);
        }
        let client_auth = match (&verifier, settings.require_client_cert) {
            (None, _) => ClientAuth::Off,
            (Some(_), false) => ClientAuth::Optional,
            (Some(_), true) => ClientAuth::Required,
        };
        let certs = Arc::new(CertStore {
            settings: settings.clone(),
            provider: provider.clone(),
            current: ArcSwap::from_pointee(pair),
            seen: Mutex::new(digest),
            logged: Mutex::new(None),
        });
        let builder = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| vec![problem("certFile", format!("TLS setup failed: {e}"))])?;
        let builder = match verifier {
            Some(v) => builder.with_client_cert_verifier(v),
            None => builder.with_no_client_auth(),
        };
        let http = builder.with_cert_resolver(certs.clone());
        let mut grpc = http.clone();
        grpc.alpn_protocols = vec![ALPN_H2.to_vec()];
        Ok(ServerTls {
            certs,
            http,
            grpc: Arc::new(grpc),
            client_auth,
        })
    }

    /// The problems of [`ServerTls::new`] as one line.
    pub fn describe(problems: &[Problem]) -> String {
        problems
            .iter()
            .map(|(f, m)| format!("{f}: {m}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

impl CertStore {
    /// [`CertStore::refresh_and_log`] off the serving thread (file reads and the key check
    /// are blocking work). [`crate::watch::Watcher`] runs it every `server.tls.checkInterval`.
    pub async fn check_files(self: Arc<Self>) {
        let _ = tokio::task::spawn_blocking(move || self.refresh_and_log()).await;
    }
}
