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

use std::time::{Duration, Instant};

use serde_json::json;
use tether_tests::runtimes::{OnSmol as SmolRt, OnTokio as TokioRt, TestRuntime as Rt, within};
use tether_tests::tls_peers::{Certs, proxy_py, python, python_server, refused_port};
use tether_tokio::tether_core::profiles::{HelloAck, HelloAckRequest};
use tether_tokio::tether_core::{
    AttemptError, CloseClass, ClosePolicy, Config, EndReason, Jitter, SessionError,
    TransportFailure,
};
use tether_tokio::{Client, Proxy, Tls};

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
