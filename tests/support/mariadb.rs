//! A MariaDB server of a test's own: `mariadb-install-db` into a temporary directory (root
//! with no password), `mariadbd` on a fixed loopback port the test chooses, optionally with
//! TLS from a certificate authority made here with rcgen. It can be killed (SIGKILL, a crash
//! InnoDB recovers from) and started again on the same data directory and port, and is
//! killed on drop. A missing binary fails the test: `scripts/test.sh` installs MariaDB.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use sqlx::Connection;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlSslMode};

/// A certificate authority for test servers.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    /// A fresh self-signed CA.
    pub fn new(name: &str) -> TestCa {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        TestCa {
            issuer: CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    /// The CA certificate in PEM.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A server certificate and its key (PEM) for `localhost` and `127.0.0.1`.
    pub fn server_cert(&self) -> (String, String) {
        let mut p =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        p.distinguished_name.push(DnType::CommonName, "localhost");
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// A private `mariadbd`.
pub struct MariaDb {
    /// Its port.
    pub port: u16,
    program: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

/// `name` on the `PATH`, else in `/usr/sbin` or `/usr/bin`; panics when absent.
fn binary(name: &str) -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} not found (scripts/test.sh installs MariaDB)"))
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.trim_ascii() == b"0")
        .unwrap_or(false)
}

/// Whether a MariaDB handshake (protocol version 10) arrives on the port.
fn greets(port: u16) -> bool {
    use std::io::Read;
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut head = [0u8; 5];
    s.read_exact(&mut head).is_ok() && head[4] == 10
}

impl MariaDb {
    /// Installs a data directory and starts the server on `port`, with TLS from `ca` when
    /// given (a server certificate for localhost and 127.0.0.1), else with TLS disabled.
    pub fn start(port: u16, ca: Option<&TestCa>) -> MariaDb {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "port {port} is already in use"
        );
        let program = binary("mariadbd");
        let install = binary("mariadb-install-db");
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        // A temporary directory of its own: servers sharing /tmp collide on temporary table
        // names (mariadb-install-db then fails at random).
        let tmp = dir.path().join("tmp");
        std::fs::create_dir(&tmp).unwrap();
        let root = running_as_root();
        let mut cmd = Command::new(&install);
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"]);
        if root {
            cmd.arg("--user=root");
        }
        let out = cmd.output().expect("mariadb-install-db");
        assert!(
            out.status.success(),
            "mariadb-install-db failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let path = |p: &Path| p.display().to_string();
        let mut args = vec![
            "--no-defaults".to_owned(),
            format!("--datadir={}", path(&data)),
            format!("--tmpdir={}", path(&tmp)),
            format!("--port={port}"),
            "--bind-address=127.0.0.1".to_owned(),
            format!("--socket={}", path(&dir.path().join("sock"))),
            format!("--pid-file={}", path(&dir.path().join("pid"))),
            format!("--log-error={}", path(&dir.path().join("error.log"))),
            "--innodb-buffer-pool-size=32M".to_owned(),
        ];
        if root {
            args.push("--user=root".to_owned());
        }
        match ca {
            Some(ca) => {
                let (cert, key) = ca.server_cert();
                for (name, pem) in [
                    ("ca.pem", ca.pem()),
                    ("server.pem", cert),
                    ("server-key.pem", key),
                ] {
                    std::fs::write(dir.path().join(name), pem).unwrap();
                }
                args.extend([
                    format!("--ssl-ca={}", path(&dir.path().join("ca.pem"))),
                    format!("--ssl-cert={}", path(&dir.path().join("server.pem"))),
                    format!("--ssl-key={}", path(&dir.path().join("server-key.pem"))),
                ]);
            }
            None => args.push("--skip-ssl".to_owned()),
        }
        let mut s = MariaDb {
            port,
            program,
            args,
            child: None,
            dir,
        };
        s.restart();
        s
    }

    /// Starts the server (again) on the same data directory and port and waits (up to
    /// 60 s, crash recovery included) until it greets.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new(&self.program)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} ({e})", self.program.display()));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !greets(self.port) {
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            assert!(
                Instant::now() < deadline && exited.is_none(),
                "mariadbd on port {} did not come up ({exited:?}):\n{}",
                self.port,
                self.error_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills it at once (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The server's error log so far.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    /// A Go driver DSN for `user_password` (`user:password`) with the query `params`.
    pub fn dsn(&self, user_password: &str, params: &str) -> String {
        format!("{user_password}@tcp(127.0.0.1:{})/?{params}", self.port)
    }

    /// A plaintext connection as root.
    pub async fn admin(&self) -> MySqlConnection {
        let opts = MySqlConnectOptions::new()
            .host("127.0.0.1")
            .port(self.port)
            .username("root")
            .ssl_mode(MySqlSslMode::Disabled);
        MySqlConnection::connect_with(&opts)
            .await
            .unwrap_or_else(|e| panic!("root on port {}: {e}", self.port))
    }

    /// Runs statements as root.
    pub async fn exec(&self, statements: &[&str]) {
        let mut c = self.admin().await;
        for s in statements {
            sqlx::query(s)
                .execute(&mut c)
                .await
                .unwrap_or_else(|e| panic!("{s}: {e}"));
        }
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        self.kill();
    }
}
