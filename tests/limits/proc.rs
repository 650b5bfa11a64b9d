//! The `mecha` binary as a child process, and what the tests measure of it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use mecha::gateway::grpc::proto::common::StateItem;
use mecha::gateway::grpc::proto::runtime::dapr_client::DaprClient;
use mecha::gateway::grpc::proto::runtime::{GetStateRequest, SaveStateRequest};
use tonic::transport::Channel;

pub const BIN: &str = env!("CARGO_BIN_EXE_mecha");

/// The tests that load the machine on purpose (the flood, the red-team bursts of bodies and
/// connections) run alone; the others run beside each other, never beside one of those.
static MACHINE: RwLock<()> = RwLock::new(());

/// Held by a test that loads the machine on purpose: no other test of this binary runs.
pub fn alone() -> RwLockWriteGuard<'static, ()> {
    MACHINE.write().unwrap_or_else(|e| e.into_inner())
}

/// Held by every other test: it runs beside the others, never beside one that runs alone.
pub fn beside_others() -> RwLockReadGuard<'static, ()> {
    MACHINE.read().unwrap_or_else(|e| e.into_inner())
}

/// The descriptor limit every server runs with.
pub const FD_LIMIT: usize = 4096;

/// A running `mecha` child; killed on drop.
pub struct Mecha {
    child: Child,
    pub http: String,
    pub grpc: String,
    pub metrics: String,
    log: Arc<Mutex<String>>,
    _dir: Option<tempfile::TempDir>,
}

impl Mecha {
    /// Starts with `config` as mecha.yaml and `components` as the only component file.
    pub fn start(config: &str, components: &str) -> Mecha {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("mecha.yaml"), config).unwrap();
        std::fs::create_dir(dir.path().join("components")).unwrap();
        std::fs::write(dir.path().join("components/store.yaml"), components).unwrap();
        let mut m = Mecha::spawn_in(
            dir.path(),
            &[
                "--config",
                "mecha.yaml",
                "--resources-path",
                "components",
                "--http-port",
                "0",
                "--grpc-port",
                "0",
                "--metrics-port",
                "0",
            ],
            &[],
        );
        m._dir = Some(dir);
        m
    }

    /// Starts the binary in `dir` with `args` and `envs`, under [`FD_LIMIT`].
    pub fn spawn_in(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Mecha {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(format!("ulimit -n {FD_LIMIT} && exec \"$0\" \"$@\""))
            .arg(BIN)
            .args(args)
            .envs(envs.iter().copied())
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn mecha");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("mecha listening") {
                    let _ = tx.send(line.clone());
                }
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let Ok(line) = rx.recv_timeout(Duration::from_secs(15)) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("mecha did not start:\n{}", log.lock().unwrap());
        };
        let field = |name: &str| {
            line.split(&format!("{name}="))
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .unwrap_or_else(|| panic!("no {name}= in {line}"))
                .to_owned()
        };
        Mecha {
            http: field("http"),
            grpc: field("grpc"),
            metrics: field("metrics"),
            child,
            log,
            _dir: None,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Mecha {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn status_field(pid: u32, name: &str) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
}

/// Resident memory in KiB.
pub fn rss_kib(pid: u32) -> usize {
    status_field(pid, "VmRSS:")
}

/// Peak resident memory in KiB.
pub fn peak_rss_kib(pid: u32) -> usize {
    status_field(pid, "VmHWM:")
}

/// Open descriptors.
pub fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// One HTTP/1.1 exchange on a fresh connection (`raw` without `Connection`; it is added):
/// the status and the whole response.
pub fn http(addr: &str, raw: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw, ""));
    let req = format!("{head}\r\nHost: x\r\nConnection: close\r\n\r\n{body}");
    if s.write_all(req.as_bytes()).is_err() {
        return (0, String::new());
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// `GET /metrics`.
pub fn scrape(addr: &str) -> String {
    let (status, text) = http(addr, "GET /metrics HTTP/1.1\r\n\r\n");
    assert_eq!(status, 200, "{text:.500}");
    text
}

/// A connected gRPC client.
pub async fn grpc_client(addr: &str) -> DaprClient<Channel> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    DaprClient::new(channel)
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX)
}

/// gRPC GetState of `key` on `statestore`.
pub async fn grpc_get(c: &mut DaprClient<Channel>, key: &str) -> Result<(), tonic::Status> {
    c.get_state(GetStateRequest {
        store_name: "statestore".into(),
        key: key.into(),
        ..Default::default()
    })
    .await
    .map(drop)
}

/// SaveState of `n` empty items; the status it gets.
pub async fn grpc_save_empty_items(addr: &str, n: usize) -> tonic::Status {
    // The message is built before connecting: a connection must carry its first call
    // within headerTimeout of the accept, and building two million items can take longer
    // on a loaded machine.
    let req = SaveStateRequest {
        store_name: "statestore".into(),
        states: vec![StateItem::default(); n],
    };
    let mut c = grpc_client(addr).await;
    match c.save_state(req).await {
        Ok(_) => tonic::Status::ok(""),
        Err(s) => s,
    }
}

/// `n` calls to made-up methods (all refused: UNIMPLEMENTED, UNAUTHENTICATED when apps are
/// configured, or a transport error while the server sheds connections).
pub async fn grpc_made_up_methods(addr: &str, n: usize) {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    for i in 0..n {
        if grpc.ready().await.is_err() {
            continue;
        }
        let path: tonic::codegen::http::uri::PathAndQuery =
            format!("/made.Up{i}/Method{i}").parse().unwrap();
        let codec: tonic_prost::ProstCodec<GetStateRequest, GetStateRequest> =
            tonic_prost::ProstCodec::default();
        let r = grpc
            .unary(tonic::Request::new(GetStateRequest::default()), path, codec)
            .await;
        assert!(r.is_err(), "a made-up method answered");
    }
}

/// Latencies of sequential HTTP GETs on one kept-alive connection while `until` holds.
pub fn quiet_http_client(addr: &str, stop: Arc<std::sync::atomic::AtomicBool>) -> Vec<Duration> {
    let mut lat = Vec::new();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = vec![0u8; 4096];
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let t = Instant::now();
        s.write_all(b"GET /v1.0/state/statestore/quiet HTTP/1.1\r\nHost: x\r\ndapr-api-token: quiet-token\r\n\r\n")
            .expect("quiet app's connection kept");
        let n = s.read(&mut buf).expect("quiet app answered");
        let head = String::from_utf8_lossy(&buf[..n]);
        assert!(head.starts_with("HTTP/1.1 200"), "quiet app: {head}");
        // The whole answer is small and arrives in one read.
        lat.push(t.elapsed());
        std::thread::sleep(Duration::from_millis(10));
    }
    lat
}

/// Latencies of sequential gRPC GetState calls of `quiet` on one channel while `stop` is unset.
pub async fn quiet_grpc_client(
    addr: &str,
    token: &str,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Vec<Duration> {
    let mut c = grpc_client(addr).await;
    let mut lat = Vec::new();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let t = Instant::now();
        let mut req = tonic::Request::new(GetStateRequest {
            store_name: "statestore".into(),
            key: "quiet".into(),
            ..Default::default()
        });
        req.metadata_mut()
            .insert("dapr-api-token", token.parse().unwrap());
        let r = c.get_state(req).await.expect("quiet app over gRPC");
        assert_eq!(&r.into_inner().data[..], b"1");
        lat.push(t.elapsed());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    lat
}

/// A 4 MB save body of `[{},{},...]`.
pub fn amplifying_body() -> String {
    let n = (4 * 1024 * 1024 - 8) / 3;
    let mut b = String::with_capacity(4 * 1024 * 1024);
    b.push('[');
    for i in 0..n {
        if i > 0 {
            b.push(',');
        }
        b.push_str("{}");
    }
    b.push(']');
    b
}

/// POST with an API token.
pub fn post_as(addr: &str, token: &str, path: &str, body: &str) -> (u16, String) {
    http(
        addr,
        &format!(
            "POST {path} HTTP/1.1\r\ndapr-api-token: {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
}

/// POST without a token.
pub fn post(addr: &str, path: &str, body: &str) -> (u16, String) {
    http(
        addr,
        &format!(
            "POST {path} HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
}
