//! Peers for TLS and proxy tests: processes of `interop/` that print `READY <port>`
//! (the Python server serving `wss://`, proxy.py), run in a process group of their own,
//! and the certificates they serve, made at run time with `rcgen`.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tether_tokio::{Tls, rustls};

use crate::peers::{collect, peers, workspace_root};

/// The venv's Python, or `None` when `TETHER_SKIP_INTEROP=1` (see [`peers`]).
pub fn python() -> Option<&'static Path> {
    peers().map(|p| p.python.as_path())
}

/// A peer process that prints `READY <port>` once listening. Dropping it kills its whole
/// process group (proxy.py forks an acceptor) with SIGKILL and reaps it, on every path; it
/// also exits when its stdin (held here) closes, should this process die without
/// unwinding.
pub struct Script {
    name: &'static str,
    /// The port it listens on.
    pub port: u16,
    child: Option<Child>,
    stderr: Arc<Mutex<String>>,
}

impl Script {
    /// Starts `script` (in `interop/`) with `args` and waits up to 20 s for `READY`.
    pub fn start(python: &Path, name: &'static str, script: &str, args: &[&str]) -> Script {
        let mut child = Command::new(python)
            .arg(workspace_root().join("interop").join(script))
            .args(args)
            .arg("--exit-with-stdin")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {script}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr_pipe = child.stderr.take().expect("piped stderr");
        let (tx, ready) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(port) = line.strip_prefix("READY ") {
                    let _ = tx.send(port.trim().parse::<u16>().ok());
                }
            }
            let _ = tx.send(None);
        });
        let stderr = collect(stderr_pipe);
        let mut peer = Script {
            name,
            port: 0,
            child: Some(child),
            stderr,
        };
        // Waits for a line from the process, not for a timer: the bound only ends a peer
        // that never starts.
        match ready.recv_timeout(Duration::from_secs(20)) {
            Ok(Some(port)) => peer.port = port,
            Ok(None) | Err(RecvTimeoutError::Disconnected) => {
                peer.kill();
                panic!("{name} exited before READY: {}", peer.stderr());
            }
            Err(RecvTimeoutError::Timeout) => panic!("{name}: no READY within 20 s"),
        }
        peer
    }

    /// Kills the whole process group with SIGKILL and reaps the child.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // The group is the child's own (process_group(0)): its pid.
            if let Some(group) = i32::try_from(child.id())
                .ok()
                .and_then(rustix::process::Pid::from_raw)
            {
                let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// What the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            // Give the reader thread a moment to collect what the process wrote last.
            std::thread::sleep(Duration::from_millis(50));
            eprintln!("--- {} stderr ---\n{}", self.name, self.stderr());
        }
    }
}

/// A port on 127.0.0.1 nothing listens on (bound, then released).
pub fn refused_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

// --- the certificates -----------------------------------------------------------------------

/// A private CA and two server certificates it signs, written as PEM for Python's `ssl`
/// into a directory removed on drop.
pub struct Certs {
    dir: PathBuf,
    ca: rustls::pki_types::CertificateDer<'static>,
}

impl Certs {
    /// Makes the CA and the certificates.
    #[must_use]
    pub fn new() -> Certs {
        use rcgen::{
            BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
            KeyUsagePurpose,
        };
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("tether-tls-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "tether test CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key"))
            .expect("CA certificate");
        for (name, hosts) in [
            ("good", vec!["localhost".to_owned(), "127.0.0.1".to_owned()]),
            ("other-host", vec!["other.example".to_owned()]),
        ] {
            let key = KeyPair::generate().expect("server key");
            let cert = CertificateParams::new(hosts)
                .expect("server params")
                .signed_by(&key, &ca)
                .expect("server certificate");
            std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).expect("write cert");
            std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem())
                .expect("write key");
        }
        std::fs::write(dir.join("ca.pem"), ca.pem()).expect("write CA");
        Certs {
            ca: ca.der().clone(),
            dir,
        }
    }

    /// The CA certificate as a PEM file.
    #[must_use]
    pub fn ca_pem(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// `--tls CERT KEY` for the Python server.
    #[must_use]
    pub fn server_args(&self, name: &str) -> [String; 3] {
        let path = |ext: &str| self.dir.join(format!("{name}.{ext}")).display().to_string();
        ["--tls".into(), path("pem"), path("key")]
    }

    /// Trusts the private CA, and nothing else.
    #[must_use]
    pub fn trust(&self) -> Tls {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(self.ca.clone())
            .expect("the CA certificate parses");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the defaults")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Tls::config(Arc::new(config))
    }
}

impl Default for Certs {
    fn default() -> Self {
        Certs::new()
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The Python interop server on a free port, with `args` (such as `--tls CERT KEY`).
pub fn python_server(python: &Path, args: &[String]) -> Script {
    let mut all = vec!["0"];
    all.extend(args.iter().map(String::as_str));
    Script::start(python, "python websockets", "python_server.py", &all)
}

/// proxy.py on a free port, with basic authentication `user:password`.
pub fn proxy_py(python: &Path, auth: &str) -> Script {
    Script::start(
        python,
        "proxy.py",
        "proxy_server.py",
        &["--basic-auth", auth],
    )
}
