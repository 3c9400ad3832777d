//! The way in, over real loopback sockets on tokio and on smol: the admission hook
//! (`Origin`, subprotocol, response headers, rejection with a status), HTTP answers to
//! malformed and slow upgrades (400, 405, 426, 431, 408), the gate's limits (pending
//! upgrades, connections, per address) and the first-message timeout. Clients are raw
//! sockets writing HTTP by hand (the bytes on the wire are what is judged), tether's own
//! client, and Python `websockets` 17, a client this project did not write.
//!
//! The slowloris and connection-flood attacks of the hostile-client review run here with
//! the limits on. Every wait is bounded (`within`), every loop counted; nothing sleeps to
//! wait for a timer except through the configured timeouts.

use std::net::SocketAddr;
use std::time::Duration;

use futures::channel::mpsc;
use futures::future::BoxFuture;
use futures::{AsyncReadExt, AsyncWriteExt, FutureExt, StreamExt};
use tether_core::server::EndCause;
use tether_core::{CloseCode, DataFrame};
use tether_driver::server::{
    AcceptError, Admission, Admit, Gate, GateConfig, GuardConfig, Guarded, Limit, UpgradeRequest,
};
use tether_tests::runtimes::{OnSmol, OnTokio, TestRuntime, within};

const STEP: Duration = Duration::from_secs(10);

/// Any byte stream.
trait Io: futures::AsyncRead + futures::AsyncWrite + Send + Unpin {}
impl<T: futures::AsyncRead + futures::AsyncWrite + Send + Unpin> Io for T {}

/// Serving through the adapter's `server::accept`, and raw client sockets.
trait Net: TestRuntime {
    /// Accepts up to `max` sockets on 127.0.0.1 through the adapter's `accept`, each in a
    /// task of its own, and reports every outcome.
    fn serve(
        &self,
        config: GuardConfig,
        max: usize,
    ) -> (
        SocketAddr,
        mpsc::UnboundedReceiver<Result<Guarded, AcceptError>>,
    );
    /// A raw socket connected to `addr`.
    fn dial(&self, addr: SocketAddr) -> BoxFuture<'static, Box<dyn Io>>;
}

impl Net for OnTokio {
    fn serve(
        &self,
        config: GuardConfig,
        max: usize,
    ) -> (
        SocketAddr,
        mpsc::UnboundedReceiver<Result<Guarded, AcceptError>>,
    ) {
        let std = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std.set_nonblocking(true).unwrap();
        let addr = std.local_addr().unwrap();
        let (tx, rx) = mpsc::unbounded();
        tokio::spawn(async move {
            let listener = tokio::net::TcpListener::from_std(std).unwrap();
            for _ in 0..max {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (tx, config) = (tx.clone(), config.clone());
                tokio::spawn(async move {
                    let _ = tx.unbounded_send(tether_tokio::server::accept(stream, config).await);
                });
            }
        });
        (addr, rx)
    }

    fn dial(&self, addr: SocketAddr) -> BoxFuture<'static, Box<dyn Io>> {
        async move {
            let s = tokio::net::TcpStream::connect(addr).await.unwrap();
            Box::new(async_tungstenite::tokio::TokioAdapter::new(s)) as Box<dyn Io>
        }
        .boxed()
    }
}

impl Net for OnSmol {
    fn serve(
        &self,
        config: GuardConfig,
        max: usize,
    ) -> (
        SocketAddr,
        mpsc::UnboundedReceiver<Result<Guarded, AcceptError>>,
    ) {
        let std = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = std.local_addr().unwrap();
        let (tx, rx) = mpsc::unbounded();
        smol::spawn(async move {
            let listener = smol::net::TcpListener::try_from(std).unwrap();
            for _ in 0..max {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (tx, config) = (tx.clone(), config.clone());
                smol::spawn(async move {
                    let _ = tx.unbounded_send(tether_smol::server::accept(stream, config).await);
                })
                .detach();
            }
        })
        .detach();
        (addr, rx)
    }

    fn dial(&self, addr: SocketAddr) -> BoxFuture<'static, Box<dyn Io>> {
        async move { Box::new(smol::net::TcpStream::connect(addr).await.unwrap()) as Box<dyn Io> }
            .boxed()
    }
}

/// A well-formed upgrade request with `extra` header lines (each ending in `\r\n`).
fn upgrade_request(extra: &str) -> String {
    format!(
        "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// Writes `request` on a fresh socket and reads everything until the server closes (at
/// most 64 KiB): the server's answer as text.
async fn exchange<R: Net>(rt: &R, addr: SocketAddr, request: &[u8]) -> String {
    let mut io = rt.dial(addr).await;
    let _ = io.write_all(request).await;
    read_to_close(rt, &mut io).await
}

async fn read_to_close<R: Net>(rt: &R, io: &mut Box<dyn Io>) -> String {
    let mut got = Vec::new();
    within(rt, STEP, "the server's answer and close", async {
        let mut buf = [0u8; 4096];
        while got.len() < 64 * 1024 {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    String::from_utf8_lossy(&got).into_owned()
}

/// The status code of an HTTP answer, 0 if there is none.
fn status(answer: &str) -> u16 {
    answer
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// A header's value in an HTTP answer.
fn header<'a>(answer: &'a str, name: &str) -> Option<&'a str> {
    let head = answer.split("\r\n\r\n").next()?;
    head.lines().skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

async fn next_outcome<R: Net>(
    rt: &R,
    outcomes: &mut mpsc::UnboundedReceiver<Result<Guarded, AcceptError>>,
) -> Result<Guarded, AcceptError> {
    within(rt, STEP, "an accept outcome", outcomes.next())
        .await
        .expect("the server reports every socket")
}

// ---- the admission hook -----------------------------------------------------------------

/// Only pages of `https://app.example` may connect (cross-site WebSocket hijacking is a
/// page elsewhere opening a socket with the user's cookies); `chat.v2` is selected when
/// offered; every acceptance carries `x-served-by`.
fn origin_check() -> Admit {
    Admit::new(|req: &UpgradeRequest<'_>| {
        if req.origin() != Some("https://app.example") {
            return Admission::reject(403, "unknown origin").header("x-why", "origin");
        }
        let accepted = Admission::accept().header("x-served-by", "tether");
        match req.subprotocols().contains(&"chat.v2") {
            true => accepted.subprotocol("chat.v2"),
            false => accepted,
        }
    })
}

async fn the_hook_checks_origin_and_picks_a_subprotocol<R: Net>(rt: R) {
    let gate = Gate::new(GateConfig::default()).unwrap();
    let config = GuardConfig {
        admit: Some(origin_check()),
        gate: Some(gate.clone()),
        ..GuardConfig::default()
    };
    let (addr, mut outcomes) = rt.serve(config, 4);

    // A raw request from another origin: 403 with the hook's body and header.
    let answer = exchange(
        &rt,
        addr,
        upgrade_request("Origin: https://evil.example\r\n").as_bytes(),
    )
    .await;
    assert_eq!(status(&answer), 403, "{answer}");
    assert_eq!(header(&answer, "x-why"), Some("origin"));
    assert!(answer.ends_with("unknown origin"), "{answer}");
    assert!(matches!(
        next_outcome(&rt, &mut outcomes).await,
        Err(AcceptError::Rejected { status: 403 })
    ));

    // tether's client from the wrong origin: a typed, readable refusal.
    let url = format!("ws://{addr}/ws");
    let err = rt
        .builder(&url)
        .header("origin", "https://evil.example")
        .connect()
        .await
        .expect_err("refused");
    assert!(
        err.to_string().contains("answered 403"),
        "[{}] {err}",
        rt.name()
    );
    assert!(next_outcome(&rt, &mut outcomes).await.is_err());

    // From the right origin, offering chat.v1 and chat.v2: accepted with chat.v2.
    let client = rt
        .builder(&url)
        .header("origin", "https://app.example")
        .subprotocols(["chat.v1", "chat.v2"])
        .connect()
        .await
        .expect("admitted");
    assert_eq!(client.subprotocol().as_deref(), Some("chat.v2"));
    let conn = next_outcome(&rt, &mut outcomes).await.expect("guarded");
    client.send(DataFrame::text("hi")).await.expect("sent");
    let got = within(&rt, STEP, "the message", conn.recv()).await;
    assert_eq!(got.as_ref().and_then(DataFrame::as_text), Some("hi"));
    client.close().await;

    // The raw 101 carries the hook's header and the subprotocol.
    let mut io = rt.dial(addr).await;
    io.write_all(
        upgrade_request("Origin: https://app.example\r\nSec-WebSocket-Protocol: chat.v2\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut head = vec![0u8; 1024];
    let n = within(&rt, STEP, "the 101", io.read(&mut head))
        .await
        .unwrap();
    let head = String::from_utf8_lossy(&head[..n]).into_owned();
    assert_eq!(status(&head), 101, "{head}");
    assert_eq!(header(&head, "x-served-by"), Some("tether"));
    assert_eq!(header(&head, "sec-websocket-protocol"), Some("chat.v2"));
    assert!(next_outcome(&rt, &mut outcomes).await.is_ok());

    let s = gate.stats();
    assert_eq!((s.rejected, s.admitted), (2, 2), "{s:?}");
}

tether_tests::on_both_runtimes!(
    the_hook_checks_origin_and_picks_a_subprotocol:
    tokio_the_hook_checks_origin_and_picks_a_subprotocol,
    smol_the_hook_checks_origin_and_picks_a_subprotocol
);

/// Python `websockets` as the browser: refused from another origin with the status it
/// reports, accepted from the right one with the subprotocol it reports.
async fn a_foreign_client_sees_the_hook<R: Net>(rt: R) {
    let Some(python) = tether_tests::tls_peers::python() else {
        return;
    };
    let config = GuardConfig {
        admit: Some(origin_check()),
        ..GuardConfig::default()
    };
    let (addr, mut outcomes) = rt.serve(config, 2);
    let script = r#"
import sys
from websockets.sync.client import connect
from websockets.exceptions import InvalidStatus
url, origin = sys.argv[1], sys.argv[2]
try:
    with connect(url, origin=origin, subprotocols=["chat.v1", "chat.v2"], open_timeout=10) as ws:
        ws.send("hello")
        print("open", ws.subprotocol)
except InvalidStatus as e:
    print("status", e.response.status_code)
"#;
    let url = format!("ws://{addr}/ws");
    for (origin, expect) in [
        ("https://evil.example", "status 403"),
        ("https://app.example", "open chat.v2"),
    ] {
        let (python, url, origin) = (python.to_owned(), url.clone(), origin.to_owned());
        let run = blocking(move || {
            std::process::Command::new("timeout")
                .arg("20")
                .arg(python)
                .args(["-c", script, &url, &origin])
                .output()
                .expect("python runs")
        });
        let out = within(&rt, Duration::from_secs(30), "python client", run).await;
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            stdout.trim(),
            expect,
            "[{}] stderr: {}",
            rt.name(),
            String::from_utf8_lossy(&out.stderr)
        );
        let outcome = next_outcome(&rt, &mut outcomes).await;
        if expect.starts_with("open") {
            let conn = outcome.expect("guarded");
            let got = within(&rt, STEP, "python's message", conn.recv()).await;
            assert_eq!(got.as_ref().and_then(DataFrame::as_text), Some("hello"));
        } else {
            assert!(matches!(
                outcome,
                Err(AcceptError::Rejected { status: 403 })
            ));
        }
    }
}

/// Runs `f` on a thread of its own; its result as a future.
fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> BoxFuture<'static, T> {
    let (tx, rx) = futures::channel::oneshot::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    async move { rx.await.expect("the thread reports") }.boxed()
}

tether_tests::on_both_runtimes!(
    a_foreign_client_sees_the_hook:
    tokio_a_foreign_client_sees_the_hook,
    smol_a_foreign_client_sees_the_hook
);

// ---- malformed and slow upgrades ------------------------------------------------------

/// A bad request: what it is, its bytes, the status expected and a header the answer must
/// carry.
type Case<'a> = (&'a str, &'a [u8], u16, Option<(&'a str, &'a str)>);

async fn bad_upgrades_get_an_http_answer<R: Net>(rt: R) {
    let gate = Gate::new(GateConfig::default()).unwrap();
    let config = GuardConfig {
        gate: Some(gate.clone()),
        upgrade_timeout: Duration::from_millis(500),
        max_request_head: 4096,
        ..GuardConfig::default()
    };
    let (addr, mut outcomes) = rt.serve(config, 16);
    let plain_get = "GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_owned();
    let post = upgrade_request("").replacen("GET", "POST", 1);
    let no_key = upgrade_request("").replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "");
    let version_8 = upgrade_request("").replace("Version: 13", "Version: 8");
    let huge = upgrade_request(&format!("X-Filler: {}\r\n", "a".repeat(8192)));
    let cases: [Case<'_>; 6] = [
        (
            "a plain GET",
            plain_get.as_bytes(),
            426,
            Some(("upgrade", "websocket")),
        ),
        (
            "version 8",
            version_8.as_bytes(),
            426,
            Some(("sec-websocket-version", "13")),
        ),
        ("a POST", post.as_bytes(), 405, Some(("allow", "GET"))),
        ("no key", no_key.as_bytes(), 400, None),
        ("not HTTP", b"\x16\x03\x01\x02\x00\x01\r\n\r\n", 400, None),
        ("a head over max_request_head", huge.as_bytes(), 431, None),
    ];
    for (what, request, expect, with) in cases {
        let answer = exchange(&rt, addr, request).await;
        assert_eq!(status(&answer), expect, "[{}] {what}: {answer}", rt.name());
        assert_eq!(header(&answer, "connection"), Some("close"), "{what}");
        if let Some((name, value)) = with {
            assert_eq!(header(&answer, name), Some(value), "{what}: {answer}");
        }
        match next_outcome(&rt, &mut outcomes).await {
            Err(AcceptError::BadRequest { status, .. }) => assert_eq!(status, expect, "{what}"),
            other => panic!("{what}: {other:?}"),
        }
    }
    // A head that never ends (a trickle, then silence): 408 at the upgrade timeout.
    let answer = exchange(&rt, addr, b"GET / HTTP/1.1\r\nHost: x\r\nUpgr").await;
    assert_eq!(status(&answer), 408, "{answer}");
    assert!(matches!(
        next_outcome(&rt, &mut outcomes).await,
        Err(AcceptError::Timeout(_))
    ));
    let s = gate.stats();
    assert_eq!(
        (s.bad_requests, s.timeouts, s.pending_upgrades),
        (6, 1, 0),
        "{s:?}"
    );
}

tether_tests::on_both_runtimes!(
    bad_upgrades_get_an_http_answer:
    tokio_bad_upgrades_get_an_http_answer,
    smol_bad_upgrades_get_an_http_answer
);

// ---- the gate's limits -----------------------------------------------------------------

/// The slowloris attack with the limits on: 30 sockets send half a request head and
/// nothing more. With `max_pending_upgrades` 10, ten are held until the upgrade timeout
/// and answered 408; the twenty beyond the limit are closed at once without a byte read
/// or written. Afterwards the gate is empty and a real client upgrades.
async fn slowloris_is_bounded_by_pending_upgrades<R: Net>(rt: R) {
    const HALF: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n";
    let gate = Gate::new(GateConfig {
        max_pending_upgrades: Some(10),
        ..GateConfig::default()
    })
    .unwrap();
    let config = GuardConfig {
        gate: Some(gate.clone()),
        upgrade_timeout: Duration::from_secs(3),
        ..GuardConfig::default()
    };
    let (addr, mut outcomes) = rt.serve(config, 40);
    let mut socks = Vec::new();
    for _ in 0..30 {
        let mut io = rt.dial(addr).await;
        io.write_all(HALF).await.unwrap();
        socks.push(io);
    }
    let mut dropped = 0;
    for _ in 0..30 {
        match next_outcome(&rt, &mut outcomes).await {
            Err(AcceptError::Limited(Limit::PendingUpgrades)) => dropped += 1,
            Err(AcceptError::Timeout(_)) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(dropped, 20);
    let mut answered = 0;
    for mut io in socks {
        let answer = read_to_close(&rt, &mut io).await;
        match status(&answer) {
            408 => answered += 1,
            0 => assert!(answer.is_empty(), "{answer}"),
            other => panic!("{other}: {answer}"),
        }
    }
    assert_eq!(answered, 10);
    let s = gate.stats();
    assert_eq!(
        (s.dropped_pending, s.timeouts, s.pending_upgrades),
        (20, 10, 0),
        "{s:?}"
    );
    let client = rt
        .builder(&format!("ws://{addr}/"))
        .connect()
        .await
        .expect("the gate is open again");
    assert!(next_outcome(&rt, &mut outcomes).await.is_ok());
    client.close().await;
}

tether_tests::on_both_runtimes!(
    slowloris_is_bounded_by_pending_upgrades:
    tokio_slowloris_is_bounded_by_pending_upgrades,
    smol_slowloris_is_bounded_by_pending_upgrades
);

/// A connection flood with the limits on: 60 upgrades against `max_connections` 50. The
/// first 50 are guarded, the 10 beyond are answered 503 with `Retry-After` (which tether's
/// client reports); once a connection ends, its place is free.
async fn a_connection_flood_is_answered_503<R: Net>(rt: R) {
    let gate = Gate::new(GateConfig {
        max_connections: Some(50),
        retry_after: Duration::from_millis(1500),
        ..GateConfig::default()
    })
    .unwrap();
    let config = GuardConfig {
        gate: Some(gate.clone()),
        ..GuardConfig::default()
    };
    let (addr, mut outcomes) = rt.serve(config, 80);
    let mut conns = Vec::new();
    let mut open = Vec::new();
    for _ in 0..50 {
        let mut io = rt.dial(addr).await;
        io.write_all(upgrade_request("").as_bytes()).await.unwrap();
        conns.push(
            next_outcome(&rt, &mut outcomes)
                .await
                .expect("within the limit"),
        );
        open.push(io);
    }
    for _ in 0..10 {
        let answer = exchange(&rt, addr, upgrade_request("").as_bytes()).await;
        assert_eq!(status(&answer), 503, "{answer}");
        assert_eq!(header(&answer, "retry-after"), Some("2"), "rounded up");
        assert!(matches!(
            next_outcome(&rt, &mut outcomes).await,
            Err(AcceptError::Limited(Limit::Connections))
        ));
    }
    let err = rt
        .builder(&format!("ws://{addr}/"))
        .connect()
        .await
        .expect_err("full");
    assert!(err.to_string().contains("503"), "[{}] {err}", rt.name());
    assert!(next_outcome(&rt, &mut outcomes).await.is_err());
    let s = gate.stats();
    assert_eq!((s.connections, s.refused_connections), (50, 11), "{s:?}");

    // One connection ends: its place is free once its task has.
    let first = conns.remove(0);
    first.terminate();
    within(&rt, STEP, "the place freed", async {
        for _ in 0..1000 {
            if gate.stats().connections == 49 {
                return;
            }
            rt.sleep(Duration::from_millis(5)).await;
        }
        panic!("still {:?}", gate.stats());
    })
    .await;
    let client = rt
        .builder(&format!("ws://{addr}/"))
        .connect()
        .await
        .expect("a place is free");
    assert!(next_outcome(&rt, &mut outcomes).await.is_ok());
    client.close().await;
    drop(open);
}

tether_tests::on_both_runtimes!(
    a_connection_flood_is_answered_503:
    tokio_a_connection_flood_is_answered_503,
    smol_a_connection_flood_is_answered_503
);

/// `max_per_ip` 2: from one address, the third connection is answered 503 while two are
/// open (loopback clients all come from 127.0.0.1).
async fn one_address_is_capped<R: Net>(rt: R) {
    let gate = Gate::new(GateConfig {
        max_per_ip: Some(2),
        ..GateConfig::default()
    })
    .unwrap();
    let config = GuardConfig {
        gate: Some(gate.clone()),
        ..GuardConfig::default()
    };
    let (addr, mut outcomes) = rt.serve(config, 8);
    let url = format!("ws://{addr}/");
    let a = rt.builder(&url).connect().await.expect("first");
    let b = rt.builder(&url).connect().await.expect("second");
    let err = rt.builder(&url).connect().await.expect_err("third");
    assert!(err.to_string().contains("503"), "{err}");
    let mut limited = 0;
    for _ in 0..3 {
        if let Err(AcceptError::Limited(Limit::PerIp)) = next_outcome(&rt, &mut outcomes).await {
            limited += 1;
        }
    }
    assert_eq!(limited, 1);
    assert_eq!(gate.stats().refused_per_ip, 1);
    a.close().await;
    b.close().await;
}

tether_tests::on_both_runtimes!(
    one_address_is_capped:
    tokio_one_address_is_capped,
    smol_one_address_is_capped
);

// ---- the first-message timeout ---------------------------------------------------------

/// `first_message_timeout` 300 ms: a client that upgrades and only answers pings is closed
/// with 1008; one that speaks at once is not.
async fn a_silent_client_is_closed_by_the_first_message_timeout<R: Net>(rt: R) {
    let mut config = GuardConfig::default();
    config.server.first_message_timeout = Some(Duration::from_millis(300));
    config.server.liveness.ping_interval = Some(Duration::from_millis(100));
    let (addr, mut outcomes) = rt.serve(config, 2);
    let url = format!("ws://{addr}/");

    let speaker = rt.builder(&url).connect().await.expect("speaker");
    speaker.send(DataFrame::text("auth")).await.expect("sent");
    let talking = next_outcome(&rt, &mut outcomes).await.expect("guarded");

    let io = rt.dial(addr).await;
    let (mut silent, _) = async_tungstenite::client_async(url.as_str(), io)
        .await
        .expect("upgraded");
    let quiet = next_outcome(&rt, &mut outcomes).await.expect("guarded");
    // The raw client answers pings and the close as it reads (reading on to the end sends
    // its answer), and sends nothing else.
    let close = within(&rt, STEP, "the server's close", async {
        let mut close = None;
        while let Some(msg) = silent.next().await {
            if let Ok(async_tungstenite::tungstenite::Message::Close(frame)) = msg {
                close = frame;
            }
        }
        close
    })
    .await
    .expect("a close frame");
    assert_eq!(u16::from(close.code), 1008);
    assert_eq!(close.reason.as_str(), "no message in time");
    within(&rt, STEP, "the end", quiet.closed()).await;
    assert_eq!(
        quiet.end_cause(),
        Some(EndCause::NoFirstMessage { confirmed: true })
    );
    // The speaker outlived the timeout.
    assert!(
        !talking.is_closed(),
        "[{}] {:?}",
        rt.name(),
        talking.end_cause()
    );
    talking.close(CloseCode::NORMAL, "bye").unwrap();
    within(&rt, STEP, "the speaker's end", talking.closed()).await;
    drop(speaker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_a_silent_client_is_closed_by_the_first_message_timeout() {
    a_silent_client_is_closed_by_the_first_message_timeout(OnTokio).await;
}

#[test]
fn smol_a_silent_client_is_closed_by_the_first_message_timeout() {
    smol::block_on(a_silent_client_is_closed_by_the_first_message_timeout(
        OnSmol,
    ));
}
