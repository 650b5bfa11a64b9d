//! TLS on the HTTP and gRPC listeners (`server.tls`): certificates made here with rcgen (a CA,
//! server certificates for 127.0.0.1/localhost, client certificates), clients with rustls.
//!
//! Covered: HTTP (hyper on tokio-rustls) and gRPC (tonic) over TLS; a certificate renewed under load with no
//! failed request and new connections getting the new certificate; a broken renewal keeping
//! the old one; required client certificates; handshakes bounded by `limits.headerTimeout`
//! and counted against `limits.maxConnections`.

use crate::support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mecha::gateway::grpc::proto::common::StateItem;
use mecha::gateway::grpc::proto::runtime::dapr_client::DaprClient;
use mecha::gateway::grpc::proto::runtime::{GetStateRequest, SaveStateRequest};
use mecha::tls::Refresh;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use support::{Mecha, TestMecha};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// A test certificate authority.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate with its key, as PEM and DER.
struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        Ca {
            issuer: CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// A server certificate for localhost and 127.0.0.1.
    fn server(&self, cn: &str) -> Leaf {
        self.leaf(
            cn,
            vec!["localhost".into(), "127.0.0.1".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    /// A client certificate.
    fn client(&self, cn: &str) -> Leaf {
        self.leaf(cn, vec![], ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn leaf(&self, cn: &str, names: Vec<String>, usage: ExtendedKeyUsagePurpose) -> Leaf {
        let mut p = CertificateParams::new(names).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }
}

impl Leaf {
    fn chain(&self) -> Vec<CertificateDer<'static>> {
        vec![self.der.clone()]
    }

    fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).unwrap()
    }
}

use rustls::pki_types::pem::PemObject;

/// Files of one test: `cert.pem`, `key.pem`, `ca.pem`.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new(leaf: &Leaf, client_ca: Option<&Ca>) -> Files {
        let f = Files {
            dir: tempfile::tempdir().unwrap(),
        };
        f.install(leaf);
        if let Some(ca) = client_ca {
            std::fs::write(f.path("ca.pem"), ca.pem()).unwrap();
        }
        f
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Replaces the certificate, then the key (not atomically, as a copy would).
    fn install(&self, leaf: &Leaf) {
        std::fs::write(self.path("cert.pem"), &leaf.cert_pem).unwrap();
        std::fs::write(self.path("key.pem"), &leaf.key_pem).unwrap();
    }

    fn settings(&self, extra_tls: &str, rest: &str) -> String {
        format!(
            "server:\n  tls:\n    certFile: {}\n    keyFile: {}\n    checkInterval: 50ms\n{extra_tls}{rest}",
            yaml_path(&self.path("cert.pem")),
            yaml_path(&self.path("key.pem")),
        )
    }
}

fn yaml_path(p: &Path) -> String {
    format!("'{}'", p.display())
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A rustls client trusting `ca`, presenting `identity` if given.
fn client_config(ca: &Ca, identity: Option<&Leaf>, alpn: &[&[u8]]) -> ClientConfig {
    let mut roots = RootCertStore::empty();
    roots.add(ca.der()).unwrap();
    let b = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut c = match identity {
        Some(id) => b.with_client_auth_cert(id.chain(), id.key()).unwrap(),
        None => b.with_no_client_auth(),
    };
    c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    c
}

/// One HTTP/1.1 connection over TLS (hyper on tokio-rustls). reqwest is not used here: its
/// rustls feature without a default crypto provider makes every plain `Client::new()` of the
/// other tests panic, and the one with a provider builds aws-lc.
struct Https {
    sender: hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>,
    /// The server's leaf certificate.
    peer: Vec<u8>,
}

impl Https {
    async fn connect(addr: SocketAddr, cfg: ClientConfig) -> Result<Https, String> {
        let (tls, peer) = handshake(addr, cfg)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let (sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .map_err(|e| format!("http handshake: {e}"))?;
        tokio::spawn(conn);
        Ok(Https { sender, peer })
    }

    /// Sends one request; the status and body.
    async fn send(
        &mut self,
        method: &str,
        path: &str,
        body: &str,
    ) -> Result<(u16, String), String> {
        use http_body_util::BodyExt;
        let req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost")
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(
                body.to_owned(),
            )))
            .unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(10), self.sender.send_request(req))
            .await
            .map_err(|_| "timed out".to_string())?
            .map_err(|e| format!("request: {e}"))?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }
}

/// One request on a new connection.
async fn once(
    addr: SocketAddr,
    cfg: ClientConfig,
    method: &str,
    path: &str,
    body: &str,
) -> Result<(u16, String, Vec<u8>), String> {
    let mut c = Https::connect(addr, cfg).await?;
    let (status, body) = c.send(method, path, body).await?;
    Ok((status, body, c.peer))
}

/// A TLS connection to `addr` (name `localhost`); returns the stream and the server's leaf.
async fn handshake(
    addr: std::net::SocketAddr,
    cfg: ClientConfig,
) -> std::io::Result<(tokio_rustls::client::TlsStream<TcpStream>, Vec<u8>)> {
    let tcp = TcpStream::connect(addr).await?;
    let tls = TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await?;
    let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    Ok((tls, leaf))
}

/// A tonic channel over TLS to the gRPC port.
async fn grpc(
    m: &Mecha,
    ca: &Ca,
    identity: Option<&Leaf>,
) -> Result<DaprClient<tonic::transport::Channel>, tonic::transport::Error> {
    let mut tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(ca.pem()))
        .domain_name("localhost");
    if let Some(id) = identity {
        tls = tls.identity(tonic::transport::Identity::from_pem(
            &id.cert_pem,
            &id.key_pem,
        ));
    }
    let channel =
        tonic::transport::Channel::from_shared(format!("https://{}", m.running.grpc_addr))
            .unwrap()
            .tls_config(tls)?
            .connect()
            .await?;
    Ok(DaprClient::new(channel))
}

fn save_req(key: &str, value: &str) -> SaveStateRequest {
    SaveStateRequest {
        store_name: "statestore".into(),
        states: vec![StateItem {
            key: key.into(),
            value: value.as_bytes().to_vec(),
            ..Default::default()
        }],
    }
}

fn get_req(key: &str) -> GetStateRequest {
    GetStateRequest {
        store_name: "statestore".into(),
        key: key.into(),
        ..Default::default()
    }
}

async fn start(settings: &str) -> Mecha {
    TestMecha::memory().settings(settings).start().await
}

#[actix_rt::test]
async fn http_and_grpc_serve_tls() {
    let ca = Ca::new("ca-1");
    let leaf = ca.server("server-1");
    let files = Files::new(&leaf, None);
    let m = start(&files.settings("", "")).await;

    // HTTP: save and read back; the certificate is the configured one.
    let mut c = Https::connect(m.running.http_addr, client_config(&ca, None, &[]))
        .await
        .unwrap();
    assert_eq!(c.peer, leaf.der.to_vec());
    let (status, body) = c
        .send(
            "POST",
            "/v1.0/state/statestore",
            r#"[{"key":"h1","value":"over-tls"}]"#,
        )
        .await
        .unwrap();
    assert_eq!(status, 204, "{body}");
    let got = c
        .send("GET", "/v1.0/state/statestore/h1", "")
        .await
        .unwrap();
    assert_eq!(got, (200, "\"over-tls\"".to_string()));
    // HTTP/2 is offered too.
    let (tls, _) = handshake(
        m.running.http_addr,
        client_config(&ca, None, &[b"h2", b"http/1.1"]),
    )
    .await
    .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));

    // gRPC: the same store through tonic over TLS.
    let mut g = grpc(&m, &ca, None).await.expect("gRPC TLS connect");
    g.save_state(save_req("g1", "grpc-tls")).await.unwrap();
    let got = g.get_state(get_req("h1")).await.unwrap().into_inner();
    assert_eq!(got.data, b"\"over-tls\"");
    let got = g.get_state(get_req("g1")).await.unwrap().into_inner();
    assert_eq!(got.data, b"grpc-tls");

    // The gRPC listener negotiates h2 with ALPN (gRPC clients insist on it).
    let (tls, cert) = handshake(m.running.grpc_addr, client_config(&ca, None, &[b"h2"]))
        .await
        .unwrap();
    assert_eq!(cert, leaf.der.to_vec());
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));

    // Plain HTTP to the TLS port gets no API answer.
    let plain = reqwest::Client::new()
        .get(format!("http://{}/v1.0/healthz", m.running.http_addr))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(
        plain.as_ref().map_or(true, |r| !r.status().is_success()),
        "plain HTTP served on the TLS port: {plain:?}"
    );
    m.running.stop(false).await;
}

#[actix_rt::test]
async fn certificate_renewed_under_load_without_failures() {
    let ca = Ca::new("ca-renew");
    let old = ca.server("old");
    let new = ca.server("new");
    let files = Files::new(&old, None);
    let m = start(&files.settings("", "")).await;
    let (http, grpc_addr) = (m.running.http_addr, m.running.grpc_addr);

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(parking_lot::Mutex::new(Vec::<String>::new()));
    let mut tasks = Vec::new();
    // Kept-alive HTTP connections, fresh HTTP connections (a handshake per request), a
    // long-lived gRPC channel and fresh gRPC channels.
    for kind in 0..4 {
        let (stop, ok, failures) = (stop.clone(), ok.clone(), failures.clone());
        let ca_pem = ca.pem();
        let ca_der = ca.der();
        tasks.push(tokio::spawn(async move {
            let ca = CaTrust {
                pem: ca_pem,
                der: ca_der,
            };
            let mut kept = match kind {
                0 => Some(Https::connect(http, ca.config(&[])).await.unwrap()),
                _ => None,
            };
            let mut channel = None;
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let key = format!("r{kind}-{i}");
                let result: Result<(), String> = match kind {
                    0 | 1 => {
                        let body = format!(r#"[{{"key":"{key}","value":{i}}}]"#);
                        let sent = match kept.as_mut() {
                            Some(c) => c.send("POST", "/v1.0/state/statestore", &body).await,
                            None => once(
                                http,
                                ca.config(&[]),
                                "POST",
                                "/v1.0/state/statestore",
                                &body,
                            )
                            .await
                            .map(|(s, b, _)| (s, b)),
                        };
                        match sent {
                            Ok((204, _)) => Ok(()),
                            Ok((s, b)) => Err(format!("HTTP status {s}: {b}")),
                            Err(e) => Err(format!("HTTP: {e}")),
                        }
                    }
                    _ => {
                        if kind == 3 || channel.is_none() {
                            channel = Some(ca.grpc(grpc_addr).await);
                        }
                        match channel.as_mut().unwrap() {
                            Err(e) => Err(format!("gRPC connect: {e:?}")),
                            Ok(g) => g
                                .save_state(save_req(&key, "v"))
                                .await
                                .map(|_| ())
                                .map_err(|e| format!("gRPC: {e:?}")),
                        }
                    }
                };
                match result {
                    Ok(()) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => failures.lock().push(e),
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = ok.load(Ordering::Relaxed);
    files.install(&new);
    // New connections get the new certificate within a few check intervals.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, _, peer) = once(
            http,
            client_config(&ca, None, &[]),
            "GET",
            "/v1.0/healthz",
            "",
        )
        .await
        .unwrap();
        assert_eq!(status, 204);
        if peer == new.der.to_vec() {
            break;
        }
        assert_eq!(peer, old.der.to_vec(), "neither certificate");
        assert!(
            Instant::now() < deadline,
            "the renewed certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, grpc_cert) = handshake(m.running.grpc_addr, client_config(&ca, None, &[b"h2"]))
        .await
        .unwrap();
    assert_eq!(
        grpc_cert,
        new.der.to_vec(),
        "gRPC still serves the old certificate"
    );
    // Load continues on the new certificate.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let failures = failures.lock().clone();
    assert!(
        failures.is_empty(),
        "{} failed requests: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    let total = ok.load(Ordering::Relaxed);
    assert!(
        before > 20 && total > before + 20,
        "too little load: {before} then {total}"
    );
    m.running.stop(false).await;
}

/// What the load tasks need of the CA (rcgen's issuer is not `Send`).
struct CaTrust {
    pem: String,
    der: CertificateDer<'static>,
}

impl CaTrust {
    fn config(&self, alpn: &[&[u8]]) -> ClientConfig {
        let mut roots = RootCertStore::empty();
        roots.add(self.der.clone()).unwrap();
        let mut c = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        c
    }

    async fn grpc(
        &self,
        addr: SocketAddr,
    ) -> Result<DaprClient<tonic::transport::Channel>, tonic::transport::Error> {
        let tls = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(&self.pem))
            .domain_name("localhost");
        let channel = tonic::transport::Channel::from_shared(format!("https://{addr}"))
            .unwrap()
            .tls_config(tls)?
            .connect()
            .await?;
        Ok(DaprClient::new(channel))
    }
}

#[actix_rt::test]
async fn a_broken_renewal_keeps_the_old_certificate() {
    let ca = Ca::new("ca-bad");
    let good = ca.server("good");
    let other = ca.server("other");
    let files = Files::new(&good, None);
    let m = start(&files.settings("", "")).await;
    let certs = m.running.tls.clone().expect("TLS is on");
    let served = || async {
        let (_, cert) = handshake(m.running.http_addr, client_config(&ca, None, &[]))
            .await
            .unwrap();
        cert
    };
    assert_eq!(served().await, good.der.to_vec());

    // Not PEM at all.
    std::fs::write(files.path("cert.pem"), "not a certificate\n").unwrap();
    match certs.refresh() {
        Refresh::Refused(why) => assert!(why.contains("certFile"), "{why}"),
        r => panic!("garbage accepted: {r:?}"),
    }
    // A certificate with somebody else's key.
    std::fs::write(files.path("cert.pem"), &other.cert_pem).unwrap();
    match certs.refresh() {
        Refresh::Refused(why) => assert!(why.contains("does not belong"), "{why}"),
        r => panic!("mismatched key accepted: {r:?}"),
    }
    // A truncated key.
    std::fs::write(files.path("key.pem"), &other.key_pem[..40]).unwrap();
    assert!(matches!(certs.refresh(), Refresh::Refused(_)));
    // A missing file.
    std::fs::remove_file(files.path("key.pem")).unwrap();
    assert!(matches!(certs.refresh(), Refresh::Refused(_)));
    // The background check saw the same files; both listeners still serve the old pair.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(served().await, good.der.to_vec());
    let (_, cert) = handshake(m.running.grpc_addr, client_config(&ca, None, &[b"h2"]))
        .await
        .unwrap();
    assert_eq!(cert, good.der.to_vec());
    let (status, ..) = once(
        m.running.http_addr,
        client_config(&ca, None, &[]),
        "GET",
        "/v1.0/healthz",
        "",
    )
    .await
    .unwrap();
    assert_eq!(status, 204);

    // A good pair afterwards is taken.
    files.install(&other);
    let deadline = Instant::now() + Duration::from_secs(5);
    while served().await != other.der.to_vec() {
        assert!(
            Instant::now() < deadline,
            "a good renewal after a bad one was not taken"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    m.running.stop(false).await;
}

#[actix_rt::test]
async fn client_certificates_can_be_required() {
    let ca = Ca::new("server-ca");
    let client_ca = Ca::new("client-ca");
    let stranger_ca = Ca::new("stranger-ca");
    let leaf = ca.server("server");
    let files = Files::new(&leaf, Some(&client_ca));
    let extra = format!(
        "    clientCaFile: {}\n    requireClientCert: true\n",
        yaml_path(&files.path("ca.pem"))
    );
    let m = start(&files.settings(&extra, "")).await;
    let trusted = client_ca.client("trusted-app");
    let stranger = stranger_ca.client("stranger-app");

    // HTTP without a certificate, and with one from another CA: refused.
    let http = m.running.http_addr;
    for id in [None, Some(&stranger)] {
        let r = once(
            http,
            client_config(&ca, id, &[]),
            "GET",
            "/v1.0/healthz",
            "",
        )
        .await;
        assert!(
            r.is_err(),
            "served without a valid client certificate: {r:?}"
        );
    }
    // With a certificate of the client CA: served.
    let (status, ..) = once(
        http,
        client_config(&ca, Some(&trusted), &[]),
        "GET",
        "/v1.0/healthz",
        "",
    )
    .await
    .unwrap();
    assert_eq!(status, 204);

    // gRPC the same way.
    for id in [None, Some(&stranger)] {
        let refused = match grpc(&m, &ca, id).await {
            Err(_) => true,
            Ok(mut g) => g.get_state(get_req("k")).await.is_err(),
        };
        assert!(refused, "gRPC served without a valid client certificate");
    }
    let mut g = grpc(&m, &ca, Some(&trusted)).await.unwrap();
    g.save_state(save_req("mtls", "yes")).await.unwrap();
    assert_eq!(
        g.get_state(get_req("mtls"))
            .await
            .unwrap()
            .into_inner()
            .data,
        b"yes"
    );
    m.running.stop(false).await;
}

#[actix_rt::test]
async fn optional_client_certificates_are_verified_when_sent() {
    let ca = Ca::new("server-ca");
    let client_ca = Ca::new("client-ca");
    let stranger_ca = Ca::new("stranger-ca");
    let files = Files::new(&ca.server("server"), Some(&client_ca));
    let extra = format!("    clientCaFile: {}\n", yaml_path(&files.path("ca.pem")));
    let m = start(&files.settings(&extra, "")).await;
    let http = m.running.http_addr;
    let get = |id: Option<&Leaf>| {
        once(
            http,
            client_config(&ca, id, &[]),
            "GET",
            "/v1.0/healthz",
            "",
        )
    };
    assert_eq!(get(None).await.unwrap().0, 204);
    assert_eq!(get(Some(&client_ca.client("a"))).await.unwrap().0, 204);
    assert!(get(Some(&stranger_ca.client("b"))).await.is_err());
    m.running.stop(false).await;
}

/// Reads until the server closes (or the read fails); `None` if it stays open past `limit`.
async fn closed_within<S: tokio::io::AsyncRead + Unpin>(
    s: &mut S,
    limit: Duration,
) -> Option<Duration> {
    let t = Instant::now();
    let mut buf = [0u8; 512];
    loop {
        match tokio::time::timeout(limit.saturating_sub(t.elapsed()), s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(t.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

#[actix_rt::test]
async fn a_stalled_handshake_is_closed_after_the_header_timeout() {
    let ca = Ca::new("ca-slow");
    let files = Files::new(&ca.server("s"), None);
    let m = start(&files.settings("", "limits:\n  headerTimeout: 500ms\n")).await;
    for addr in [m.running.http_addr, m.running.grpc_addr] {
        // The start of a ClientHello record that never completes.
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
            .await
            .unwrap();
        let closed = closed_within(&mut s, Duration::from_secs(5)).await;
        let closed = closed.unwrap_or_else(|| panic!("{addr}: stalled handshake kept open"));
        assert!(
            closed >= Duration::from_millis(300) && closed < Duration::from_millis(2500),
            "{addr}: closed after {closed:?}"
        );
        // A silent connection too.
        let mut s = TcpStream::connect(addr).await.unwrap();
        assert!(
            closed_within(&mut s, Duration::from_secs(5))
                .await
                .is_some(),
            "{addr}: silent connection kept open"
        );
    }
    m.running.stop(false).await;
}

#[actix_rt::test]
async fn tls_connections_count_against_max_connections() {
    let ca = Ca::new("ca-limit");
    let files = Files::new(&ca.server("s"), None);
    let m = start(&files.settings(
        "",
        "  workers: 1\nlimits:\n  maxConnections: 2\n  headerTimeout: 20s\n",
    ))
    .await;

    // gRPC: two TLS connections hold both slots; a third makes room by closing the oldest
    // one that has sent no request (see `gateway::conns`).
    let cfg = || client_config(&ca, None, &[b"h2"]);
    let mut a = handshake(m.running.grpc_addr, cfg()).await.unwrap();
    let b = handshake(m.running.grpc_addr, cfg()).await.unwrap();
    let third = handshake(m.running.grpc_addr, cfg()).await.unwrap();
    assert!(
        closed_within(&mut a.0, Duration::from_secs(2))
            .await
            .is_some(),
        "the oldest unproven gRPC connection was kept beyond maxConnections"
    );
    drop(third);
    drop((a, b));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut g = grpc(&m, &ca, None).await.expect("a slot is free again");
    g.get_state(get_req("k")).await.unwrap();
    drop(g);

    // HTTP: with both slots held the third handshake does not complete, and does once one
    // is released.
    let cfg = || client_config(&ca, None, &[]);
    let a = handshake(m.running.http_addr, cfg()).await.unwrap();
    let b = handshake(m.running.http_addr, cfg()).await.unwrap();
    let third = tokio::spawn(handshake(m.running.http_addr, cfg()));
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        !third.is_finished(),
        "third HTTP TLS connection handled beyond maxConnections"
    );
    drop(a);
    let (mut s, _) = tokio::time::timeout(Duration::from_secs(5), third)
        .await
        .expect("released slot not reused")
        .unwrap()
        .unwrap();
    s.write_all(b"GET /v1.0/healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).await.ok();
    assert!(resp.starts_with("HTTP/1.1 204"), "{resp}");
    drop(b);
    m.running.stop(false).await;
}

#[test]
fn bad_tls_settings_are_reported_with_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mecha.yaml");
    let missing = dir.path().join("missing.pem");
    std::fs::write(
        &config,
        format!(
            "server:\n  tls:\n    certFile: {}\n    keyFile: {}\n    clientCaFile: {}\n",
            yaml_path(&missing),
            yaml_path(&missing),
            yaml_path(&missing)
        ),
    )
    .unwrap();
    let sources = mecha::config::ConfigSources {
        config_file: Some(config.clone()),
        resources_path: Some(dir.path().join("none")),
        tls_flags: Default::default(),
    };
    let errors = mecha::config::Config::load(&sources)
        .err()
        .expect("refused");
    let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    for field in ["server.tls.certFile", "server.tls.clientCaFile"] {
        assert!(
            errors.iter().any(|e| e.field == field && e.file == config),
            "no {field} error: {text:?}"
        );
    }

    // Shape errors: a key without a certificate, a required client cert without a CA.
    std::fs::write(
        &config,
        "server:\n  tls:\n    keyFile: k.pem\n    requireClientCert: true\n    checkInterval: 0s\n",
    )
    .unwrap();
    let errors = mecha::config::Config::load(&sources)
        .err()
        .expect("refused");
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    for field in [
        "server.tls.certFile",
        "server.tls.requireClientCert",
        "server.tls.checkInterval",
    ] {
        assert!(fields.contains(&field), "no {field} error: {fields:?}");
    }
}

/// `mecha portability` over HTTPS: it trusts the CA given with `--cacert` and reads the
/// app's report (after a transaction over TLS); without it, the test CA is not among the
/// system's roots and the command says so and exits 2 (could not tell), never 0.
#[actix_rt::test]
async fn the_portability_command_speaks_https_with_cacert() {
    let ca = Ca::new("ca-portability");
    let leaf = ca.server("server-portability");
    let files = Files::new(&leaf, Some(&ca));
    let m = start(&files.settings("", "")).await;
    let mut c = Https::connect(m.running.http_addr, client_config(&ca, None, &[]))
        .await
        .unwrap();
    let tx = r#"{"operations":[{"operation":"upsert","request":{"key":"t1","value":3}}]}"#;
    let (status, body) = c
        .send("POST", "/v1.0/state/statestore/transaction", tx)
        .await
        .unwrap();
    assert_eq!(status, 204, "{body}");

    let url = format!("https://localhost:{}", m.running.http_addr.port());
    let ca_file = files.path("ca.pem");
    let run = |extra: &[&str]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_mecha"));
        cmd.args(["portability", "--url", &url, "--target", "state.jetstream"]);
        cmd.args(extra);
        cmd.output().unwrap()
    };
    let out = run(&["--cacert", ca_file.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.starts_with("app testapp -> state.jetstream: 1 request(s)"),
        "{text}"
    );
    assert!(text.contains("transactions"), "{text}");

    let out = run(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("certificate") || err.contains("Certificate"),
        "{err}"
    );
    m.running.stop(false).await;
}
