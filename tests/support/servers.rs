//! Private servers a fault test owns: started on free ports, frozen, killed and restarted by
//! the test, killed on drop. They fail (never skip) when the server binary is missing:
//! `scripts/test.sh` installs them.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free loopback port (bound and released; good enough for a test's own server).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process on a fixed port that can be frozen, killed and started again.
pub struct PrivateServer {
    /// Its port.
    pub port: u16,
    program: String,
    args: Vec<String>,
    child: Option<Child>,
    ready: fn(u16) -> bool,
    /// How [`PrivateServer::kill`] ends it.
    kill_signal: &'static str,
    /// Kept for the server's lifetime (data directory).
    _dir: Option<tempfile::TempDir>,
}

impl PrivateServer {
    /// Starts the server (again) on the same port and waits until it answers.
    pub fn restart(&mut self) {
        let child = Command::new(&self.program)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} ({e}); scripts/test.sh installs it",
                    self.program
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !(self.ready)(self.port) {
            assert!(
                Instant::now() < deadline,
                "{} on port {} did not come up",
                self.program,
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills it at once (SIGKILL, or the server's own crash signal) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args([self.kill_signal, &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
    }

    /// Sends a signal such as `-STOP` or `-CONT`.
    pub fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let ok = Command::new("kill")
            .args([sig, &pid])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill {sig} {pid}");
        if sig == "-STOP" {
            wait_stopped(&pid);
        }
    }

    /// `host:port`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        if let Some(c) = &self.child {
            // A frozen server must be thawed to die promptly; never panic while unwinding.
            let _ = Command::new("kill")
                .args(["-CONT", &c.id().to_string()])
                .status();
        }
        self.kill();
    }
}

fn redis_answers(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 7];
    s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

fn nats_answers(port: u16) -> bool {
    use std::io::Read;
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).is_ok() && &buf == b"INFO"
}

/// A `redis-server` that keeps nothing on disk: a kill loses everything.
pub fn redis() -> PrivateServer {
    redis_server(false)
}

/// A `redis-server` that writes every acknowledged write to its append-only file before
/// answering (`appendfsync always`), so a kill loses nothing it acknowledged.
pub fn durable_redis() -> PrivateServer {
    redis_server(true)
}

/// A `redis-server` that replicates `primary` (`--replicaof`), keeping nothing on disk.
pub fn redis_replica_of(primary: &PrivateServer) -> PrivateServer {
    let mut s = redis_server(false);
    s.kill();
    s.args.extend([
        "--replicaof".to_owned(),
        "127.0.0.1".to_owned(),
        primary.port.to_string(),
    ]);
    s.restart();
    s
}

fn redis_server(durable: bool) -> PrivateServer {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let mut args: Vec<String> = ["--port", &port.to_string(), "--bind", "127.0.0.1"]
        .map(String::from)
        .to_vec();
    let persistence: &[&str] = if durable {
        &[
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
        ]
    } else {
        &["--save", "", "--appendonly", "no"]
    };
    args.extend(persistence.iter().map(|a| (*a).to_owned()));
    args.extend(["--dir".to_owned(), dir.path().display().to_string()]);
    let mut s = PrivateServer {
        port,
        program: "redis-server".into(),
        args,
        child: None,
        ready: redis_answers,
        kill_signal: "-KILL",
        _dir: Some(dir),
    };
    s.restart();
    s
}

/// A `nats-server` with JetStream storing in its own directory.
pub fn jetstream() -> PrivateServer {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let store: PathBuf = dir.path().join("js");
    let args = [
        "-a",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-js",
        "-sd",
        &store.display().to_string(),
    ]
    .map(String::from)
    .to_vec();
    let mut s = PrivateServer {
        port,
        program: "nats-server".into(),
        args,
        child: None,
        ready: nats_answers,
        kill_signal: "-KILL",
        _dir: Some(dir),
    };
    s.restart();
    s
}

fn accepts(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// A PostgreSQL server of its own (`initdb` in a temporary directory, trust auth, user and
/// database `postgres`), run as the `postgres` user when the test runs as root. Its kill is
/// SIGQUIT to the postmaster: PostgreSQL's immediate shutdown, a crash without checkpoint
/// that the restart recovers from the WAL.
pub fn postgres() -> PrivateServer {
    let bin = std::fs::read_dir("/usr/lib/postgresql")
        .ok()
        .and_then(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path().join("bin"))
                .filter(|b| b.join("initdb").exists())
                .max()
        })
        .expect(
            "PostgreSQL server binaries under /usr/lib/postgresql (scripts/test.sh installs them)",
        );
    let dir = tempfile::tempdir().expect("temp dir");
    let root = running_as_root();
    let as_postgres = |program: &std::path::Path| -> Command {
        if root {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=postgres", "--regid=postgres", "--init-groups"])
                .arg(program);
            c
        } else {
            Command::new(program)
        }
    };
    if root {
        let ok = Command::new("chown")
            .args(["postgres:", &dir.path().display().to_string()])
            .status()
            .expect("chown")
            .success();
        assert!(ok, "chown the PostgreSQL data directory");
    }
    let data = dir.path().join("data");
    let ok = as_postgres(&bin.join("initdb"))
        .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
        .arg(&data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("initdb")
        .success();
    assert!(ok, "initdb failed");
    let port = free_port();
    let program = if root {
        "setpriv".to_owned()
    } else {
        bin.join("postgres").display().to_string()
    };
    let mut args: Vec<String> = Vec::new();
    if root {
        args.extend(["--reuid=postgres", "--regid=postgres", "--init-groups"].map(String::from));
        args.push(bin.join("postgres").display().to_string());
    }
    args.extend([
        "-D".to_owned(),
        data.display().to_string(),
        "-p".to_owned(),
        port.to_string(),
        "-k".to_owned(),
        dir.path().display().to_string(),
        "-c".to_owned(),
        "listen_addresses=127.0.0.1".to_owned(),
    ]);
    let mut s = PrivateServer {
        port,
        program,
        args,
        child: None,
        ready: accepts,
        kill_signal: "-QUIT",
        _dir: Some(dir),
    };
    s.restart();
    s
}

/// Whether this process runs as root (PostgreSQL refuses to run as root).
fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.trim_ascii() == b"0")
        .unwrap_or(false)
}

/// Waits until every thread of `pid` is stopped (`T` in `/proc`): `kill -STOP` returns
/// before a thread running on another core has stopped, and it may still answer a request.
pub fn wait_stopped(pid: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let states: Vec<char> = std::fs::read_dir(format!("/proc/{pid}/task"))
            .map(|d| {
                d.filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("stat")).ok())
                    .filter_map(|stat| stat.rsplit_once(") ")?.1.chars().next())
                    .collect()
            })
            .unwrap_or_default();
        if !states.is_empty() && states.iter().all(|c| matches!(c, 'T' | 't')) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{pid} did not stop: {states:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}
