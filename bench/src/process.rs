//! The Mecha process under test: a generated resources directory, start-up to healthy,
//! resident memory and CPU time from `/proc`, and a clean stop.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free loopback port (bound and released; Mecha binds it right after).
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Where the benchmark's stores keep their data: one key prefix and one table name for the
/// whole run.
pub struct Stores<'a> {
    pub redis_host: &'a str,
    pub prefix: &'a str,
    pub pg_url: &'a str,
    /// The table, in PostgreSQL and in MySQL (the metadata tables add `_meta`) and SQLite.
    pub table: &'a str,
    /// Go DSN of `state.mysql`.
    pub mysql_dsn: &'a str,
    /// The MySQL database (`schemaName`): the DSN's own.
    pub mysql_schema: &'a str,
    pub sqlite_file: &'a Path,
}

/// Writes the components: `mem` (in-memory), `redis`, `pg`, `mysql` and `sqlite`, with
/// run-unique key prefix and tables.
pub fn write_resources(dir: &Path, st: &Stores<'_>) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let component = |name: &str, ty: &str, meta: &[(&str, &str)]| {
        let mut s = format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n  type: {ty}\n  version: v1\n  metadata:\n"
        );
        for (k, v) in meta {
            s.push_str(&format!("    - name: {k}\n      value: {v:?}\n"));
        }
        s
    };
    let prefix = st.prefix;
    std::fs::write(
        dir.join("mem.yaml"),
        component("mem", "state.in-memory", &[("keyPrefix", prefix)]),
    )?;
    std::fs::write(
        dir.join("redis.yaml"),
        component(
            "redis",
            "state.redis",
            &[("redisHost", st.redis_host), ("keyPrefix", prefix)],
        ),
    )?;
    let meta_table = format!("{}_meta", st.table);
    std::fs::write(
        dir.join("pg.yaml"),
        component(
            "pg",
            "state.postgresql",
            &[
                ("connectionString", st.pg_url),
                ("tableName", st.table),
                ("metadataTableName", &meta_table),
                ("keyPrefix", prefix),
            ],
        ),
    )?;
    std::fs::write(
        dir.join("mysql.yaml"),
        component(
            "mysql",
            "state.mysql",
            &[
                ("connectionString", st.mysql_dsn),
                ("schemaName", st.mysql_schema),
                ("tableName", st.table),
                ("metadataTableName", &meta_table),
                ("keyPrefix", prefix),
            ],
        ),
    )?;
    std::fs::write(
        dir.join("sqlite.yaml"),
        component(
            "sqlite",
            "state.sqlite",
            &[
                ("connectionString", &st.sqlite_file.to_string_lossy()),
                ("tableName", st.table),
                ("metadataTableName", &meta_table),
                ("keyPrefix", prefix),
            ],
        ),
    )?;
    Ok(())
}

/// A running Mecha child process.
pub struct Mecha {
    child: Child,
    pub http: SocketAddr,
    pub grpc: SocketAddr,
    /// Exec to the first `204` from `/v1.0/healthz`.
    pub startup: Duration,
    pub log: PathBuf,
}

/// One HTTP/1.0 GET on a fresh connection; the status code.
fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(100)).ok()?;
    s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut buf = [0u8; 12];
    s.read_exact(&mut buf).ok()?;
    std::str::from_utf8(&buf[9..12]).ok()?.parse().ok()
}

impl Mecha {
    /// Starts `bin` with `resources` and `config` on free ports and waits (polling every
    /// 0.5 ms) until it is healthy.
    pub fn start(
        bin: &Path,
        resources: &Path,
        config: &Path,
        log: PathBuf,
    ) -> Result<Mecha, String> {
        Mecha::start_with(bin, Some((resources, config)), log)
    }

    /// Starts `bin` on its embedded default configuration (one in-memory store; what
    /// `mecha` runs with no arguments), on free ports.
    pub fn start_default(bin: &Path, log: PathBuf) -> Result<Mecha, String> {
        Mecha::start_with(bin, None, log)
    }

    fn start_with(
        bin: &Path,
        files: Option<(&Path, &Path)>,
        log: PathBuf,
    ) -> Result<Mecha, String> {
        let (h, g, m) = (
            free_port().map_err(|e| e.to_string())?,
            free_port().map_err(|e| e.to_string())?,
            free_port().map_err(|e| e.to_string())?,
        );
        let http = SocketAddr::from(([127, 0, 0, 1], h));
        let grpc = SocketAddr::from(([127, 0, 0, 1], g));
        let logfile = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        let started = Instant::now();
        let mut command = Command::new(bin);
        if let Some((resources, config)) = files {
            command
                .arg("--resources-path")
                .arg(resources)
                .arg("--config")
                .arg(config);
        }
        let mut child = command
            .args(["--http-port", &h.to_string()])
            .args(["--grpc-port", &g.to_string()])
            .args(["--metrics-port", &m.to_string()])
            .args(["--app-id", "bench"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(logfile)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        loop {
            if http_status(http, "/v1.0/healthz") == Some(204) {
                break;
            }
            if let Ok(Some(st)) = child.try_wait() {
                return Err(format!(
                    "mecha exited with {st} before becoming healthy; log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                ));
            }
            if started.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                return Err("mecha did not become healthy within 20 s".into());
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        let startup = started.elapsed();
        Ok(Mecha {
            child,
            http,
            grpc,
            startup,
            log,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then SIGKILL after 5 s.
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The empty tonic `Dapr` server (`mecha-empty-tonic`, next to this executable), a process
/// of its own on a free loopback port; killed when dropped.
pub struct EmptyTonic {
    child: Child,
    pub addr: SocketAddr,
}

impl EmptyTonic {
    /// Starts it with `threads` serving threads, answering values of `value_size` bytes.
    pub fn start(value_size: usize, threads: usize) -> Result<EmptyTonic, String> {
        use std::io::BufRead;
        let bin = std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name("mecha-empty-tonic");
        let mut child = Command::new(&bin)
            .args([value_size.to_string(), threads.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| {
                format!(
                    "{}: {e} (run scripts/bench.sh, which builds it)",
                    bin.display()
                )
            })?;
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            let _ = std::io::BufReader::new(out).read_line(&mut line);
        }
        let addr = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|a| a.parse().ok());
        match addr {
            Some(addr) => Ok(EmptyTonic { child, addr }),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                Err(format!("mecha-empty-tonic did not start: {line:?}"))
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for EmptyTonic {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `kB` field of `/proc/<pid>/status` (`VmRSS`, `VmHWM`), in MiB.
pub fn status_mib(pid: u32, field: &str) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// User + system CPU seconds of the process (all threads), from `/proc/<pid>/stat`.
pub fn cpu_seconds(pid: u32) -> f64 {
    stat_seconds(pid, &[14, 15])
}

/// The `/proc/<pid>/stat` fields `fields` (1-based, as in proc(5)), summed, in seconds.
fn stat_seconds(pid: u32, fields: &[usize]) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        f.get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    // `rest` starts at field 3 (state), so field N is index N - 3.
    fields.iter().map(|n| ticks(n - 3)).sum::<f64>() / clock_ticks()
}

/// `sysconf(_SC_CLK_TCK)` via `getconf` (the crate forbids `unsafe`); 100 on failure.
fn clock_ticks() -> f64 {
    static HZ: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *HZ.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// CPU seconds used so far by the processes a measurement involves, by role, and by the
/// whole machine: what a request costs each party on shared cores.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuSnapshot {
    /// The Mecha processes under test.
    pub mecha: f64,
    /// Store servers: every `redis-server`, `postgres` and `mariadbd` (or `mysqld`) process.
    /// SQLite has no server: its work is inside Mecha, or inside the direct client (the load
    /// generator).
    pub store: f64,
    /// The load generators: this process, `wrk`, `h2load` and `redis-benchmark`.
    pub client: f64,
    /// Every CPU of the machine, busy time (user, nice, system, irq, softirq, steal).
    pub machine: f64,
}

impl std::ops::Sub for CpuSnapshot {
    type Output = CpuSnapshot;

    fn sub(self, o: CpuSnapshot) -> CpuSnapshot {
        CpuSnapshot {
            mecha: self.mecha - o.mecha,
            store: self.store - o.store,
            client: self.client - o.client,
            machine: self.machine - o.machine,
        }
    }
}

/// Reads `/proc` once: the CPU time of `mecha` (its pids), of the store servers, of the
/// load generators and of the machine.
pub fn cpu_snapshot(mecha: &[u32]) -> CpuSnapshot {
    let me = std::process::id();
    let mut snap = CpuSnapshot::default();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return snap;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let comm = stat
            .split_once('(')
            .and_then(|(_, r)| r.rsplit_once(')'))
            .map_or("", |(c, _)| c);
        let slot = if mecha.contains(&pid) {
            &mut snap.mecha
        } else if pid == me || matches!(comm, "redis-benchmark" | "wrk" | "h2load") {
            &mut snap.client
        } else if matches!(comm, "redis-server" | "postgres" | "mariadbd" | "mysqld") {
            &mut snap.store
        } else {
            continue;
        };
        // This process also counts its children that ended (`wrk`, `h2load` and
        // `redis-benchmark` runs).
        *slot += if pid == me {
            stat_seconds(pid, &[14, 15, 16, 17])
        } else {
            cpu_seconds(pid)
        };
    }
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    if let Some(cpu) = stat.lines().next().and_then(|l| l.strip_prefix("cpu ")) {
        let f: Vec<f64> = cpu
            .split_whitespace()
            .map(|v| v.parse().unwrap_or(0.0))
            .collect();
        // user nice system idle iowait irq softirq steal
        let busy: f64 = [0, 1, 2, 5, 6, 7].iter().filter_map(|i| f.get(*i)).sum();
        snap.machine = busy / clock_ticks();
    }
    snap
}
