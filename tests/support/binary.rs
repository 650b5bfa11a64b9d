//! The real `mecha` binary as a child process: started on free ports, its log collected
//! line by line (ANSI colours stripped), its addresses read from the `mecha listening` line
//! (text or JSON log format), killed on drop.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running `mecha` process.
pub struct Process {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
    /// `host:port` of the HTTP API.
    pub http: String,
    /// `host:port` of the gRPC API.
    pub grpc: String,
    /// `host:port` of `/metrics`.
    pub metrics: String,
}

/// Removes ANSI escape sequences (colours) from a log line.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The listener addresses of a `mecha listening` line, in the text or the JSON format.
fn addresses(line: &str) -> Option<(String, String, String)> {
    if !line.contains("mecha listening") {
        return None;
    }
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
        let f = |n: &str| v["fields"][n].as_str().map(str::to_owned);
        return Some((f("http")?, f("grpc")?, f("metrics")?));
    }
    let f = |n: &str| {
        let rest = line.split(&format!(" {n}=")).nth(1)?;
        Some(rest.split_whitespace().next()?.to_owned())
    };
    Some((f("http")?, f("grpc")?, f("metrics")?))
}

/// The binary under test: `MECHA_BIN_UNDER_TEST` when set (the test command sets it to the
/// release build it has just built, so the red-team suites replay their attacks against
/// what ships), else the debug build of this test run.
pub fn bin() -> String {
    std::env::var("MECHA_BIN_UNDER_TEST").unwrap_or_else(|_| env!("CARGO_BIN_EXE_mecha").to_owned())
}

impl Process {
    /// Starts `mecha` with `args` (the three ports are added, as 0) and `env`, without the
    /// caller's `DAPR_API_TOKEN` and `MECHA_LOG_FORMAT` unless `env` sets them, and waits
    /// (up to 20 s) until it listens.
    pub fn spawn(args: &[&str], env: &[(&str, &str)]) -> Process {
        let mut cmd = Command::new(bin());
        cmd.args(args)
            .args([
                "--http-port",
                "0",
                "--grpc-port",
                "0",
                "--metrics-port",
                "0",
            ])
            .env_remove("DAPR_API_TOKEN")
            .env_remove("MECHA_LOG_FORMAT")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn mecha");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("piped stderr");
        let reader = {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(strip_ansi(&line));
                }
            })
        };
        let mut p = Process {
            child,
            lines,
            reader: Some(reader),
            http: String::new(),
            grpc: String::new(),
            metrics: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let found = p.lines.lock().unwrap().iter().find_map(|l| addresses(l));
            if let Some((http, grpc, metrics)) = found {
                (p.http, p.grpc, p.metrics) = (http, grpc, metrics);
                return p;
            }
            assert!(
                Instant::now() < deadline && p.child.try_wait().ok().flatten().is_none(),
                "mecha did not start:\n{}",
                p.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every log line so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// The log so far, one line per line.
    pub fn log(&self) -> String {
        self.lines().join("\n")
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills it at once (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }

    /// `http://` and the HTTP API's address.
    pub fn base(&self) -> String {
        format!("http://{}", self.http)
    }

    /// Sends SIGTERM and waits (up to 15 s, then SIGKILL) until it exits and its whole log
    /// has been read.
    pub fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
