//! TLS options and the HTTP CONNECT proxy against peers this project did not write: the
//! Python `websockets` interop server (`interop/python_server.py`) serving `wss://` through
//! Python's `ssl` module, and `proxy.py` from PyPI (`interop/proxy_server.py` starts it
//! embedded), on the tokio and the smol adapters.
//!
//! The certificates are made here, per test, with `rcgen`: a private CA, a server
//! certificate it signs for `localhost` and `127.0.0.1`, and one for another host name.
//!
//! - a private CA through `Tls::config` opens and echoes; the default webpki roots refuse
//!   it with a fatal "unknown authority" TLS failure; a certificate for another host name
//!   is a fatal "not valid for host" TLS failure;
//! - through proxy.py with basic authentication a session opens and echoes, over `ws://`
//!   and `wss://`; wrong credentials are a fatal `Proxy { status: 407 }`; a proxy that
//!   cannot reach the server (502) and a proxy port that refuses are retried until the
//!   attempts run out.
//!
//! Every fatal case runs with `retry_first_connect`, so an end after one attempt is the
//! policy's fatal class, not the first-connect rule. The peers come from
//! `scripts/interop-setup.sh`, as for `tests/interop.rs`; `TETHER_SKIP_INTEROP=1` skips.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::json;
use tether_tests::runtimes::{OnSmol as SmolRt, OnTokio as TokioRt, TestRuntime as Rt, within};
use tether_tokio::tether_core::profiles::{HelloAck, HelloAckRequest};
use tether_tokio::tether_core::{
    AttemptError, CloseClass, ClosePolicy, Config, EndReason, Jitter, SessionError,
    TransportFailure,
};
use tether_tokio::{Client, Proxy, Tls, rustls};

// --- the peers ------------------------------------------------------------------------------

const SKIP_VAR: &str = "TETHER_SKIP_INTEROP";
const PYTHON_VAR: &str = "TETHER_INTEROP_PYTHON";

fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
}

/// The venv's python, or `None` when `TETHER_SKIP_INTEROP=1`. Runs
/// `scripts/interop-setup.sh` (once per test binary) when the environment does not name it.
fn python() -> Option<&'static Path> {
    if std::env::var(SKIP_VAR).is_ok_and(|v| v == "1") {
        eprintln!("{SKIP_VAR}=1: TLS and proxy interop test skipped");
        return None;
    }
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    Some(PYTHON.get_or_init(|| {
        if let Some(p) = std::env::var_os(PYTHON_VAR) {
            return p.into();
        }
        let script = workspace_root().join("scripts/interop-setup.sh");
        let out = Command::new("bash")
            .arg(&script)
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "{} failed; set {SKIP_VAR}=1 to skip",
            script.display()
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix(PYTHON_VAR)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("interop-setup.sh printed no {PYTHON_VAR}= line"))
            .into()
    }))
}

/// A peer process that prints `READY <port>` once listening. Dropping it kills its whole
/// process group (proxy.py forks an acceptor) with SIGKILL and reaps it, on every path; it
/// also exits when its stdin (held here) closes, should this process die without
/// unwinding.
struct Peer {
    name: &'static str,
    port: u16,
    child: Option<Child>,
    stderr: Arc<Mutex<String>>,
}

impl Peer {
    /// Starts `script` (in `interop/`) with `args` and waits up to 20 s for `READY`.
    fn start(python: &Path, name: &'static str, script: &str, args: &[&str]) -> Peer {
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
        let mut stderr_pipe = child.stderr.take().expect("piped stderr");
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
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = String::new();
            let _ = stderr_pipe.read_to_string(&mut buf);
            sink.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push_str(&buf);
        });
        let mut peer = Peer {
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

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // The group is the child's own (process_group(0)): its pid.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .stderr(Stdio::null())
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for Peer {
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
fn refused_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

// --- the certificates -----------------------------------------------------------------------

/// A private CA and two server certificates it signs, written as PEM for Python's `ssl`
/// into a directory removed on drop.
struct Certs {
    dir: PathBuf,
    ca: rustls::pki_types::CertificateDer<'static>,
}

impl Certs {
    fn new() -> Certs {
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
        Certs {
            ca: ca.der().clone(),
            dir,
        }
    }

    /// `--tls CERT KEY` for the Python server.
    fn server_args(&self, name: &str) -> [String; 3] {
        let path = |ext: &str| self.dir.join(format!("{name}.{ext}")).display().to_string();
        ["--tls".into(), path("pem"), path("key")]
    }

    /// Trusts the private CA, and nothing else.
    fn trust(&self) -> Tls {
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

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn python_server(python: &Path, args: &[String]) -> Peer {
    let mut all = vec!["0"];
    all.extend(args.iter().map(String::as_str));
    Peer::start(python, "python websockets", "python_server.py", &all)
}

fn proxy_py(python: &Path, auth: &str) -> Peer {
    Peer::start(
        python,
        "proxy.py",
        "proxy_server.py",
        &["--basic-auth", auth],
    )
}

// --- sessions -------------------------------------------------------------------------------

/// The bound on any one step.
const STEP: Duration = Duration::from_secs(10);

/// Retries the first connect (so only a fatal class ends a session after one attempt),
/// at most three attempts, short waits.
fn config() -> Config {
    let policy = ClosePolicy::default();
    assert_eq!(
        policy.classify_failure(&TransportFailure::Tls(String::new())),
        CloseClass::Fatal,
        "TLS failures are fatal by default"
    );
    Config::builder()
        .connect_timeout(Duration::from_secs(3))
        .handshake_timeout(Duration::from_secs(3))
        .retry_first_connect(true)
        .max_attempts(Some(3))
        .backoff_schedule(vec![Duration::from_millis(20)])
        .jitter(Jitter::None)
        .request_timeout(Duration::from_secs(3))
        .close_timeout(Duration::from_secs(1))
        .close_policy(policy)
        .build()
        .expect("valid config")
}

fn hello() -> HelloAck {
    HelloAck::new(|| json!({ "type": "hello", "client": "tether-tls" }))
}

/// Starts a session through the builder of the adapter under test, with the transport
/// options given.
fn session<R: Rt>(rt: &R, url: &str, tls: Option<Tls>, proxy: Option<Proxy>) -> Client<HelloAck> {
    let mut b = rt.builder(url).protocol(hello()).config(config()).seed(7);
    if let Some(tls) = tls {
        b = b.tls(tls);
    }
    if let Some(proxy) = proxy {
        b = b.proxy(proxy);
    }
    b.start().expect("start")
}

/// The session opens and a request is echoed.
async fn opens_and_echoes<R: Rt>(rt: R, client: Client<HelloAck>) {
    within(&rt, STEP, "open", client.wait_open())
        .await
        .unwrap_or_else(|e| panic!("[{}] did not open: {e:?}", rt.name()));
    let params = json!({ "text": "héllo through the tunnel" });
    let got = within(
        &rt,
        STEP,
        "echo",
        client.request(HelloAckRequest::new("echo", params.clone())),
    )
    .await;
    let got = got.unwrap_or_else(|e| panic!("[{}] echo: {e}", rt.name()));
    assert_eq!(got, params, "[{}] echo", rt.name());
    within(&rt, STEP, "close", client.close()).await;
}

/// The session ends without opening; the transport failure that ended it, and whether
/// it was fatal (one attempt) or retried until the attempts ran out.
async fn ends_with<R: Rt>(rt: R, client: Client<HelloAck>) -> (TransportFailure, bool) {
    let end = within(&rt, STEP, "end", client.wait_open()).await;
    match end {
        Err(EndReason::Failed(SessionError::FatalAttempt(AttemptError::Transport(f)))) => (f, true),
        Err(EndReason::Failed(SessionError::AttemptsExhausted {
            attempts,
            last: AttemptError::Transport(f),
        })) => {
            assert_eq!(attempts, 3, "[{}] every attempt made", rt.name());
            (f, false)
        }
        other => panic!("[{}] unexpected outcome {other:?}", rt.name()),
    }
}

// --- the scenarios --------------------------------------------------------------------------

async fn private_ca_opens<R: Rt>(rt: R) {
    let Some(python) = python() else { return };
    let certs = Certs::new();
    let server = python_server(python, &certs.server_args("good"));
    let url = format!("wss://127.0.0.1:{}/tether", server.port);
    opens_and_echoes(rt, session(&rt, &url, Some(certs.trust()), None)).await;
    // A DNS name the certificate holds verifies too.
    let url = format!("wss://localhost:{}/tether", server.port);
    opens_and_echoes(rt, session(&rt, &url, Some(certs.trust()), None)).await;
}

async fn webpki_roots_refuse_a_private_ca<R: Rt>(rt: R) {
    let Some(python) = python() else { return };
    let certs = Certs::new();
    let server = python_server(python, &certs.server_args("good"));
    let url = format!("wss://127.0.0.1:{}/tether", server.port);
    // No `.tls(..)`: the default, webpki roots.
    let (failure, fatal) = ends_with(rt, session(&rt, &url, None, None)).await;
    assert_eq!(
        failure,
        TransportFailure::Tls("certificate signed by an unknown authority".into()),
        "[{}]",
        rt.name()
    );
    assert!(fatal, "[{}] an unknown CA is fatal", rt.name());
    assert_eq!(
        failure.to_string(),
        "tls failed: certificate signed by an unknown authority"
    );
}

async fn another_hosts_certificate_is_refused<R: Rt>(rt: R) {
    let Some(python) = python() else { return };
    let certs = Certs::new();
    let server = python_server(python, &certs.server_args("other-host"));
    let url = format!("wss://127.0.0.1:{}/tether", server.port);
    let (failure, fatal) = ends_with(rt, session(&rt, &url, Some(certs.trust()), None)).await;
    assert!(fatal, "[{}] a wrong host name is fatal", rt.name());
    match &failure {
        TransportFailure::Tls(e) => assert!(
            e.starts_with("certificate not valid for host 127.0.0.1")
                && e.contains("other.example"),
            "[{}] {e}",
            rt.name()
        ),
        other => panic!("[{}] {other:?}", rt.name()),
    }
}

/// Through proxy.py with basic auth (a password that needs percent-encoding in the URL).
async fn through_proxy_opens<R: Rt>(rt: R, tls: bool) {
    let Some(python) = python() else { return };
    let certs = Certs::new();
    let args = if tls {
        certs.server_args("good").to_vec()
    } else {
        Vec::new()
    };
    let server = python_server(python, &args);
    let proxy_peer = proxy_py(python, "tether:p@ss:w0rd");
    let proxy = Proxy::http(&format!(
        "http://tether:p%40ss%3Aw0rd@127.0.0.1:{}",
        proxy_peer.port
    ))
    .expect("proxy url");
    let scheme = if tls { "wss" } else { "ws" };
    // `localhost` reaches the server only as the proxy resolves it: the tunnel is asked
    // for the name, and the certificate is checked against it.
    let url = format!("{scheme}://localhost:{}/tether", server.port);
    let trust = tls.then(|| certs.trust());
    opens_and_echoes(rt, session(&rt, &url, trust, Some(proxy))).await;
}

async fn wrong_proxy_credentials_are_fatal<R: Rt>(rt: R) {
    let Some(python) = python() else { return };
    let server = python_server(python, &[]);
    let proxy_peer = proxy_py(python, "tether:right");
    let proxy = Proxy::http(&format!("http://127.0.0.1:{}", proxy_peer.port))
        .expect("proxy url")
        .basic_auth("tether", "wrong");
    let url = format!("ws://127.0.0.1:{}/tether", server.port);
    let (failure, fatal) = ends_with(rt, session(&rt, &url, None, Some(proxy))).await;
    assert!(
        matches!(failure, TransportFailure::Proxy { status: 407, .. }),
        "[{}] {failure:?}",
        rt.name()
    );
    assert!(fatal, "[{}] 407 is fatal", rt.name());
    assert_eq!(failure.to_string(), "proxy answered 407");
}

async fn a_proxy_that_cannot_reach_the_server_is_retried<R: Rt>(rt: R) {
    let Some(python) = python() else { return };
    let proxy_peer = proxy_py(python, "tether:pw");
    let proxy =
        Proxy::http(&format!("http://tether:pw@127.0.0.1:{}", proxy_peer.port)).expect("proxy url");
    let url = format!("ws://127.0.0.1:{}/tether", refused_port());
    let (failure, fatal) = ends_with(rt, session(&rt, &url, None, Some(proxy))).await;
    assert!(
        matches!(failure, TransportFailure::Proxy { status: 502, .. }),
        "[{}] {failure:?}",
        rt.name()
    );
    assert!(!fatal, "[{}] 502 from the proxy is retried", rt.name());
}

async fn a_refused_proxy_port_is_retried<R: Rt>(rt: R) {
    // No process: the proxy's port refuses, which is a connect failure like any other.
    let proxy = Proxy::http(&format!("http://u:pw@127.0.0.1:{}", refused_port())).expect("url");
    let url = format!("ws://127.0.0.1:{}/tether", refused_port());
    let started = Instant::now();
    let (failure, fatal) = ends_with(rt, session(&rt, &url, None, Some(proxy))).await;
    assert_eq!(failure, TransportFailure::Refused, "[{}]", rt.name());
    assert!(!fatal, "[{}] a refused proxy is retried", rt.name());
    assert!(started.elapsed() < STEP);
}

// --- the tests ------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_wss_with_a_private_ca_opens_and_echoes() {
    private_ca_opens(TokioRt).await;
}

#[test]
fn smol_wss_with_a_private_ca_opens_and_echoes() {
    smol::block_on(private_ca_opens(SmolRt));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_webpki_roots_refuse_a_private_ca_fatally() {
    webpki_roots_refuse_a_private_ca(TokioRt).await;
}

#[test]
fn smol_webpki_roots_refuse_a_private_ca_fatally() {
    smol::block_on(webpki_roots_refuse_a_private_ca(SmolRt));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_a_certificate_for_another_host_is_fatal() {
    another_hosts_certificate_is_refused(TokioRt).await;
}

#[test]
fn smol_a_certificate_for_another_host_is_fatal() {
    smol::block_on(another_hosts_certificate_is_refused(SmolRt));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_ws_through_proxy_py_opens_and_echoes() {
    through_proxy_opens(TokioRt, false).await;
}

#[test]
fn smol_ws_through_proxy_py_opens_and_echoes() {
    smol::block_on(through_proxy_opens(SmolRt, false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_wss_through_proxy_py_opens_and_echoes() {
    through_proxy_opens(TokioRt, true).await;
}

#[test]
fn smol_wss_through_proxy_py_opens_and_echoes() {
    smol::block_on(through_proxy_opens(SmolRt, true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_wrong_proxy_credentials_are_a_fatal_407() {
    wrong_proxy_credentials_are_fatal(TokioRt).await;
}

#[test]
fn smol_wrong_proxy_credentials_are_a_fatal_407() {
    smol::block_on(wrong_proxy_credentials_are_fatal(SmolRt));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_a_proxy_answering_502_is_retried() {
    a_proxy_that_cannot_reach_the_server_is_retried(TokioRt).await;
}

#[test]
fn smol_a_proxy_answering_502_is_retried() {
    smol::block_on(a_proxy_that_cannot_reach_the_server_is_retried(SmolRt));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_a_refused_proxy_port_is_retried() {
    a_refused_proxy_port_is_retried(TokioRt).await;
}

#[test]
fn smol_a_refused_proxy_port_is_retried() {
    smol::block_on(a_refused_proxy_port_is_retried(SmolRt));
}

/// The OS store loads, or fails as a typed error: never a panic.
#[test]
fn native_roots_load_or_fail_typed() {
    match Tls::native_roots() {
        Ok(tls) => assert!(!tls.client_config().alpn_protocols.contains(&b"h2".to_vec())),
        Err(e) => assert!(e.to_string().contains("OS certificate store"), "{e}"),
    }
}
