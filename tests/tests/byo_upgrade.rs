//! Bring your own HTTP server, over real loopback sockets on tokio and on smol: a
//! connection upgraded by another HTTP server and handed to `guard_upgraded` behaves as
//! one from the adapter's `accept`. On tokio, hyper's HTTP/1 server performs the upgrade
//! (`hyper::upgrade::on`); on smol, a minimal hand-written HTTP exchange over
//! `smol::net::TcpStream` does. Both answer with `upgrade_response`.
//!
//! The scenarios run both ways in ([`Way::Accept`] and [`Way::Upgraded`]) and assert the
//! same outcome — echo, close codes both ways, liveness, the send deadline, 1009 — but
//! for one documented difference: a connection the guard gives up on is reset by
//! `accept` (it holds a reset handle on its socket) and closed by `guard_upgraded`
//! (foreign I/O has none). Two are for the upgraded way alone: the HTTP server's
//! refusals, and a frame sent with the request (which tungstenite's accept refuses).
//!
//! The clients are clients this project did not write — async-tungstenite's, and Python
//! `websockets`' (`interop/python_client.py`, from the interop venv; skipped with
//! `TETHER_SKIP_INTEROP=1`) — and a raw peer that writes frames no library would
//! (`tether_tests::raw_peer`).
//!
//! Timing bounds are correctness bounds: the configured (shortened) timeout plus
//! [`MARGIN`]. Every wait is bounded, every loop counted, nothing sleeps to wait for a
//! timer.

use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::Message;
use async_tungstenite::tungstenite::protocol::CloseFrame;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCode;
use futures::channel::{mpsc, oneshot};
use futures::future::BoxFuture;
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use tether_core::server::EndCause;
use tether_core::{CloseCode, DataFrame, DisconnectReason, Utf8Bytes, Violation};
use tether_driver::server::{DeliveryError, GuardConfig, Guarded, http, upgrade_response};
use tether_tests::raw_peer::{
    Answer, MASK, client_case, close_payload, frame, header, read_answer,
};
use tether_tests::runtimes::{OnSmol, OnTokio, TestRuntime, within};

/// Scheduling slack on top of a configured deadline on a loaded shared machine.
const MARGIN: Duration = Duration::from_millis(500);
/// The bound on any wait for an outcome that has no configured deadline.
const LIMIT: Duration = Duration::from_secs(10);
/// The largest HTTP head the hand-written server reads.
const MAX_HEAD: usize = 8 << 10;

/// How a connection came to be guarded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Way {
    /// The adapter's `server::accept`: tether performs the upgrade.
    Accept,
    /// Another HTTP server performs it; `server::guard_upgraded` takes over after the 101.
    Upgraded,
}

/// Any byte stream a client can speak WebSocket over.
trait Io: futures::AsyncRead + futures::AsyncWrite + Send + Unpin {}
impl<T: futures::AsyncRead + futures::AsyncWrite + Send + Unpin> Io for T {}

type Ws = WebSocketStream<Box<dyn Io>>;

/// What the scenarios need beyond [`TestRuntime`].
trait Byo: TestRuntime {
    /// Serves on a free port of 127.0.0.1, guarding each connection `way` with `config`
    /// and handing it over; each accepted socket's send buffer is shrunk to `sndbuf`
    /// bytes if given.
    fn serve_with(
        &self,
        way: Way,
        config: GuardConfig,
        sndbuf: Option<usize>,
    ) -> (SocketAddr, mpsc::UnboundedReceiver<Guarded>);
    /// [`serve_with`](Self::serve_with) with the system's buffers.
    fn serve(
        &self,
        way: Way,
        config: GuardConfig,
    ) -> (SocketAddr, mpsc::UnboundedReceiver<Guarded>) {
        self.serve_with(way, config, None)
    }
    /// Wraps a connected std socket in the runtime's async socket.
    fn wrap(&self, s: std::net::TcpStream) -> Box<dyn Io>;
    /// Runs `f` in a task of the runtime.
    fn spawn(&self, f: BoxFuture<'static, ()>);
}

fn listener() -> std::net::TcpListener {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    l.set_nonblocking(true).expect("nonblocking");
    l
}

/// hyper's answer to one request: tether's 101 (then the upgraded connection guarded
/// and sent to `tx`) or its refusal.
async fn hyper_upgrade(
    mut request: http::Request<hyper::body::Incoming>,
    peer: SocketAddr,
    config: GuardConfig,
    tx: mpsc::UnboundedSender<Guarded>,
) -> Result<http::Response<String>, Infallible> {
    let response = match upgrade_response(&request) {
        Ok(response) => response,
        Err(refusal) => return Ok(refusal.response()),
    };
    let upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let io = hyper_util::rt::TokioIo::new(upgraded);
        if let Ok(conn) = tether_tokio::server::guard_upgraded(io, Some(peer), config).await {
            let _ = tx.unbounded_send(conn);
        }
    });
    Ok(response.map(|()| String::new()))
}

impl Byo for OnTokio {
    fn serve_with(
        &self,
        way: Way,
        config: GuardConfig,
        sndbuf: Option<usize>,
    ) -> (SocketAddr, mpsc::UnboundedReceiver<Guarded>) {
        let std = listener();
        let addr = std.local_addr().expect("address");
        let (tx, rx) = mpsc::unbounded();
        tokio::spawn(async move {
            let listener = tokio::net::TcpListener::from_std(std).expect("listener");
            for _ in 0..16 {
                let Ok((tcp, peer)) = listener.accept().await else {
                    return;
                };
                if let Some(n) = sndbuf {
                    socket2::SockRef::from(&tcp)
                        .set_send_buffer_size(n)
                        .expect("SO_SNDBUF");
                }
                let (tx, config) = (tx.clone(), config.clone());
                tokio::spawn(async move {
                    match way {
                        Way::Accept => {
                            if let Ok(conn) = tether_tokio::server::accept(tcp, config).await {
                                let _ = tx.unbounded_send(conn);
                            }
                        }
                        Way::Upgraded => {
                            let service = hyper::service::service_fn(move |request| {
                                hyper_upgrade(request, peer, config.clone(), tx.clone())
                            });
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                                .with_upgrades()
                                .await;
                        }
                    }
                });
            }
        });
        (addr, rx)
    }

    fn wrap(&self, s: std::net::TcpStream) -> Box<dyn Io> {
        s.set_nonblocking(true).expect("nonblocking");
        Box::new(async_tungstenite::tokio::TokioAdapter::new(
            tokio::net::TcpStream::from_std(s).expect("tokio socket"),
        ))
    }

    fn spawn(&self, f: BoxFuture<'static, ()>) {
        tokio::spawn(f);
    }
}

/// A minimal HTTP server's upgrade, by hand: reads the request head (at most
/// [`MAX_HEAD`] bytes, one at a time so nothing after it is consumed), and answers with
/// `upgrade_response`'s 101 (true) or its refusal (false).
async fn upgrade_by_hand(tcp: &mut smol::net::TcpStream) -> std::io::Result<bool> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_HEAD {
            return Err(std::io::Error::other("request head too long"));
        }
        tcp.read_exact(&mut byte).await?;
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    let mut lines = head.split("\r\n");
    let mut start = lines.next().unwrap_or_default().split(' ');
    let (method, path, version) = (start.next(), start.next(), start.next());
    let mut request = http::Request::builder()
        .method(method.unwrap_or_default())
        .uri(path.unwrap_or("/"))
        .version(match version {
            Some("HTTP/1.1") => http::Version::HTTP_11,
            _ => http::Version::HTTP_10,
        });
    for line in lines.filter(|l| !l.is_empty()) {
        if let Some((name, value)) = line.split_once(':') {
            request = request.header(name.trim(), value.trim());
        }
    }
    let request = request.body(()).map_err(std::io::Error::other)?;
    let (answer, upgraded) = match upgrade_response(&request) {
        Ok(response) => (response.map(|()| String::new()), true),
        Err(refusal) => (refusal.response(), false),
    };
    let mut out = format!(
        "HTTP/1.1 {} {}\r\n",
        answer.status().as_u16(),
        answer.status().canonical_reason().unwrap_or_default()
    );
    for (name, value) in answer.headers() {
        out.push_str(&format!(
            "{name}: {}\r\n",
            value.to_str().unwrap_or_default()
        ));
    }
    if !upgraded {
        out.push_str(&format!("content-length: {}\r\n", answer.body().len()));
    }
    out.push_str("\r\n");
    out.push_str(answer.body());
    tcp.write_all(out.as_bytes()).await?;
    tcp.flush().await?;
    Ok(upgraded)
}

impl Byo for OnSmol {
    fn serve_with(
        &self,
        way: Way,
        config: GuardConfig,
        sndbuf: Option<usize>,
    ) -> (SocketAddr, mpsc::UnboundedReceiver<Guarded>) {
        let std = listener();
        let addr = std.local_addr().expect("address");
        let (tx, rx) = mpsc::unbounded();
        smol::spawn(async move {
            let listener = smol::net::TcpListener::try_from(std).expect("listener");
            for _ in 0..16 {
                let Ok((mut tcp, peer)) = listener.accept().await else {
                    return;
                };
                if let Some(n) = sndbuf {
                    socket2::SockRef::from(&tcp)
                        .set_send_buffer_size(n)
                        .expect("SO_SNDBUF");
                }
                let (tx, config) = (tx.clone(), config.clone());
                smol::spawn(async move {
                    let conn = match way {
                        Way::Accept => tether_smol::server::accept(tcp, config).await.ok(),
                        Way::Upgraded => {
                            // The HTTP server's own bound on the exchange.
                            let upgraded = {
                                let exchange = upgrade_by_hand(&mut tcp);
                                let timeout = async {
                                    smol::Timer::after(LIMIT).await;
                                    Ok(false)
                                };
                                smol::future::or(exchange, timeout).await
                            };
                            match upgraded {
                                Ok(true) => {
                                    tether_smol::server::guard_upgraded(tcp, Some(peer), config)
                                        .await
                                        .ok()
                                }
                                _ => None,
                            }
                        }
                    };
                    if let Some(conn) = conn {
                        let _ = tx.unbounded_send(conn);
                    }
                })
                .detach();
            }
        })
        .detach();
        (addr, rx)
    }

    fn wrap(&self, s: std::net::TcpStream) -> Box<dyn Io> {
        Box::new(smol::Async::new(s).expect("smol socket"))
    }

    fn spawn(&self, f: BoxFuture<'static, ()>) {
        smol::spawn(f).detach();
    }
}

/// An async-tungstenite client of `addr`'s `/ws`.
async fn connect<R: Byo>(rt: &R, addr: SocketAddr) -> Ws {
    let s = std::net::TcpStream::connect(addr).expect("connect");
    let io = rt.wrap(s);
    let (ws, _) = within(
        rt,
        LIMIT,
        "the client's upgrade",
        async_tungstenite::client_async(format!("ws://{addr}/ws"), io),
    )
    .await
    .expect("upgraded");
    ws
}

/// The next guarded connection.
async fn accepted<R: Byo>(rt: &R, rx: &mut mpsc::UnboundedReceiver<Guarded>) -> Guarded {
    within(rt, LIMIT, "the guarded connection", rx.next())
        .await
        .expect("the server runs")
}

/// Runs a blocking raw peer on a thread of its own, waiting for it without blocking the
/// runtime.
async fn on_thread<R: Byo, T: Send + 'static>(
    rt: &R,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = oneshot::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    within(rt, LIMIT * 2, what, rx)
        .await
        .expect("the peer's thread")
}

fn tag<R: Byo>(rt: &R, way: Way) -> String {
    format!("[{} {way:?}]", rt.name())
}

/// Echoes until the connection ends.
async fn echo(conn: Guarded) {
    for _ in 0..1_000 {
        let Some(frame) = conn.recv().await else {
            return;
        };
        if conn.send(frame).await.is_err() {
            return;
        }
    }
}

/// Messages are echoed; the client's close code reaches the application as the client
/// sent it — 4001, and 1014, a valid code tungstenite's codec does not know (only the
/// sniffed bytes keep it; `Sniffed::upgraded` is what follows the frames of a stream
/// upgraded elsewhere) — and the client gets its close answered at once (the same code
/// for 4001; 1002 for 1014, as tungstenite answers, the same both ways).
async fn echo_then_the_peers_close_code<R: Byo>(rt: &R, way: Way) {
    let tag = tag(rt, way);
    let (addr, mut conns) = rt.serve(way, GuardConfig::default());
    for (code, reason, answer) in [(4001, "auth", 4001), (1014, "bad gateway", 1002)] {
        let mut ws = connect(rt, addr).await;
        let conn = accepted(rt, &mut conns).await;
        rt.spawn(Box::pin(echo(conn.clone())));
        for i in 0..3 {
            let text = format!("{code} #{i}");
            within(rt, LIMIT, "send", ws.send(Message::text(text.clone())))
                .await
                .expect("sent");
            let back = within(rt, LIMIT, "the echo", ws.next()).await;
            match back {
                Some(Ok(Message::Text(t))) => assert_eq!(t.as_str(), text, "{tag}"),
                other => panic!("{tag}: expected the echo of {text:?}, got {other:?}"),
            }
        }
        let close = CloseFrame {
            code: WsCode::from(code),
            reason: reason.into(),
        };
        within(rt, LIMIT, "the client's close", ws.close(Some(close)))
            .await
            .expect("close sent");
        let cause = within(rt, LIMIT, "the end", conn.closed()).await;
        assert_eq!(
            cause,
            EndCause::Lost(DisconnectReason::Closed {
                code: Some(CloseCode(code)),
                reason: reason.to_owned(),
            }),
            "{tag} close {code}"
        );
        let mut got = None;
        for _ in 0..16 {
            match within(rt, LIMIT, "the answering close", ws.next()).await {
                Some(Ok(Message::Close(frame))) => {
                    got = frame.map(|f| u16::from(f.code));
                    break;
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            }
        }
        assert_eq!(got, Some(answer), "{tag} close {code}: the answer");
    }
}

/// A peer that upgrades and then never answers a ping is given up on as stale, no
/// earlier than `stale_after` and within it plus the margin. What the peer then sees is
/// the one documented difference: `accept` resets the socket, `guard_upgraded` has no
/// reset handle and the socket is closed.
async fn a_silent_peer_is_dropped_by_liveness<R: Byo>(rt: &R, way: Way) {
    let tag = tag(rt, way);
    let stale = Duration::from_millis(600);
    let mut config = GuardConfig::default();
    config.server.liveness.ping_interval = Some(Duration::from_millis(100));
    config.server.liveness.stale_after = stale;
    let (addr, mut conns) = rt.serve(way, config);
    // Upgrades, sends nothing, reads (and never answers) pings until the end.
    let (peer_tx, peer_rx) = oneshot::channel();
    std::thread::spawn(move || {
        let _ = peer_tx.send(client_case(addr, &[]));
    });
    let conn = accepted(rt, &mut conns).await;
    let start = rt.now();
    let cause = within(rt, stale + MARGIN, "stale", conn.closed()).await;
    assert!(
        rt.now() - start >= stale - Duration::from_millis(50),
        "{tag}"
    );
    assert_eq!(cause, EndCause::Lost(DisconnectReason::Stale), "{tag}");
    let answer = within(rt, LIMIT * 2, "the silent peer's answer", peer_rx)
        .await
        .expect("the peer's thread")
        .expect("the peer upgraded");
    let expected = match way {
        Way::Accept => Answer::Reset,
        Way::Upgraded => Answer::Dropped,
    };
    assert_eq!(answer, expected, "{tag}");
}

/// A frame over `max_inbound_frame` is refused at its header: the peer gets close 1009
/// and the application sees the violation, without the payload ever being sent.
async fn an_oversized_frame_is_refused_with_1009<R: Byo>(rt: &R, way: Way) {
    let tag = tag(rt, way);
    let mut config = GuardConfig::default();
    config.server.max_inbound_frame = 64 << 10;
    let (addr, mut conns) = rt.serve(way, config);
    let case = [header(0x82, 1 << 20, Some(MASK)), vec![0; 1024]].concat();
    let peer = on_thread(rt, "the oversized case", move || client_case(addr, &case));
    let conn = accepted(rt, &mut conns);
    let conn = async {
        let conn = conn.await;
        // The application reads: a violation waits for it to take what came before.
        rt.spawn(Box::pin(echo(conn.clone())));
        conn
    };
    let start = rt.now();
    let (answer, conn) = futures::join!(peer, conn);
    let cause = within(rt, LIMIT, "the end", conn.closed()).await;
    // Refused at the header, not after the close timeout (5 s) for want of a reader.
    assert!(rt.now() - start < Duration::from_secs(4), "{tag}");
    assert_eq!(
        cause,
        EndCause::Lost(DisconnectReason::ProtocolError(Violation::Oversized {
            len: 1 << 20,
            max: 64 << 10,
        })),
        "{tag}"
    );
    assert_eq!(
        answer.expect("the peer upgraded"),
        Answer::Close(Some(1009)),
        "{tag}"
    );
}

/// The application's `close(4321, …)` reaches the client with its code, and the
/// client's answer completes the handshake: the connection ends `Closed { confirmed }`.
async fn the_applications_close_is_answered<R: Byo>(rt: &R, way: Way) {
    let tag = tag(rt, way);
    let (addr, mut conns) = rt.serve(way, GuardConfig::default());
    let mut ws = connect(rt, addr).await;
    let conn = accepted(rt, &mut conns).await;
    conn.close(CloseCode(4321), "bye").expect("a valid close");
    let mut got = None;
    for _ in 0..16 {
        // Reading also sends tungstenite's answering close frame.
        match within(rt, LIMIT, "the close frame", ws.next()).await {
            Some(Ok(Message::Close(frame))) => {
                got = frame.map(|f| (u16::from(f.code), f.reason.as_str().to_owned()));
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => break,
        }
    }
    assert_eq!(got, Some((4321, "bye".to_owned())), "{tag}");
    let cause = within(rt, LIMIT, "the end", conn.closed()).await;
    assert_eq!(
        cause,
        EndCause::Closed {
            code: CloseCode(4321),
            reason: "bye".to_owned(),
            confirmed: true,
        },
        "{tag}"
    );
}

/// A client that stops reading (4 KiB receive buffer; the server's send buffer is 4 KiB
/// too): every `send` returns within the send deadline plus the margin, the last with
/// the connection dead of the missed deadline.
async fn a_stalled_reader_misses_the_send_deadline<R: Byo>(rt: &R, way: Way) {
    const SMALL_BUF: usize = 4096;
    let tag = tag(rt, way);
    let deadline = Duration::from_millis(400);
    let mut config = GuardConfig::default();
    config.server.send_deadline = deadline;
    config.server.slow_write_warning = deadline / 4;
    config.server.liveness.ping_interval = None;
    let (addr, mut conns) = rt.serve_with(way, config, Some(SMALL_BUF));
    let s =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    s.set_recv_buffer_size(SMALL_BUF).expect("SO_RCVBUF");
    // A loopback connect completes in the kernel at once.
    s.connect(&addr.into()).expect("connect");
    let io = rt.wrap(s.into());
    let (stalled, _) = within(
        rt,
        LIMIT,
        "the client's upgrade",
        async_tungstenite::client_async(format!("ws://{addr}/ws"), io),
    )
    .await
    .expect("upgraded");
    let conn = accepted(rt, &mut conns).await;
    let payload = "x".repeat(16 << 10);
    let mut outcome = None;
    for _ in 0..1_000 {
        let start = rt.now();
        let r = conn
            .send(DataFrame::Text(Utf8Bytes::from_string(payload.clone())))
            .await;
        let took = rt.now() - start;
        assert!(
            took <= deadline + MARGIN,
            "{tag}: a send blocked for {took:?}"
        );
        if let Err(e) = r {
            outcome = Some(e);
            break;
        }
    }
    assert_eq!(
        outcome,
        Some(DeliveryError::Dead(EndCause::Lost(
            DisconnectReason::SendDeadline
        ))),
        "{tag}"
    );
    drop(stalled);
}

/// A client that writes its first frame in the same packet as its upgrade request
/// (before the 101, which RFC 6455 §4.1 forbids, and tungstenite's own accept refuses as
/// junk after the request, so only the upgraded way is tried): an HTTP server may read
/// past the request's head (hyper does, and hands those bytes back first from its
/// upgraded connection), and the frame is still read and echoed, and the frames after
/// it followed: a close 1014 sent next is seen as sent.
async fn a_frame_sent_with_the_request_is_not_lost<R: Byo>(rt: &R) {
    let way = Way::Upgraded;
    let tag = tag(rt, way);
    let (addr, mut conns) = rt.serve(way, GuardConfig::default());
    let peer = on_thread(rt, "the eager client", move || -> std::io::Result<_> {
        let mut s = std::net::TcpStream::connect(addr)?;
        s.set_read_timeout(Some(LIMIT))?;
        let mut out = b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
            Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
            Sec-WebSocket-Version: 13\r\n\r\n"
            .to_vec();
        out.extend(frame(0x81, b"early", Some(MASK)));
        s.write_all(&out)?;
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && head.len() < MAX_HEAD {
            s.read_exact(&mut byte)?;
            head.push(byte[0]);
        }
        // The echo: an unmasked text frame of 5 bytes.
        let mut echo = [0u8; 7];
        s.read_exact(&mut echo)?;
        s.write_all(&frame(0x88, &close_payload(1014, b"late"), Some(MASK)))?;
        Ok((
            String::from_utf8_lossy(&head).into_owned(),
            echo,
            read_answer(&mut s),
        ))
    });
    let conn = async {
        let conn = accepted(rt, &mut conns).await;
        rt.spawn(Box::pin(echo(conn.clone())));
        conn
    };
    let (peer, conn) = futures::join!(peer, conn);
    let (head, echoed, answer) = peer.unwrap_or_else(|e| panic!("{tag}: {e}"));
    assert!(head.starts_with("HTTP/1.1 101"), "{tag}: {head}");
    assert_eq!(&echoed, b"\x81\x05early", "{tag}");
    let cause = within(rt, LIMIT, "the end", conn.closed()).await;
    assert_eq!(
        cause,
        EndCause::Lost(DisconnectReason::Closed {
            code: Some(CloseCode(1014)),
            reason: "late".to_owned(),
        }),
        "{tag}"
    );
    assert_eq!(
        answer,
        Answer::Close(Some(1002)),
        "{tag}: tungstenite's answer to 1014"
    );
}

/// Python `websockets`' client, an implementation this project did not write (which
/// offers permessage-deflate, declined by the 101 both ways): its messages are echoed,
/// and its close 1014 is seen as sent and answered (with tungstenite's 1002, the same
/// both ways). Skipped with `TETHER_SKIP_INTEROP=1`.
async fn python_websockets_client<R: Byo>(rt: &R, way: Way) {
    let Some(peers) = tether_tests::peers::peers() else {
        return;
    };
    let tag = tag(rt, way);
    let (addr, mut conns) = rt.serve(way, GuardConfig::default());
    let python = peers.python.clone();
    let script = tether_tests::peers::workspace_root().join("interop/python_client.py");
    let client = on_thread(rt, "the python client", move || {
        std::process::Command::new(python)
            .arg(script)
            .arg(format!("ws://{addr}/ws"))
            .args(["1014", "bad gateway"])
            .output()
    });
    let conn = async {
        let conn = accepted(rt, &mut conns).await;
        rt.spawn(Box::pin(echo(conn.clone())));
        conn
    };
    let (out, conn) = futures::join!(client, conn);
    let out = out.unwrap_or_else(|e| panic!("{tag}: cannot run python: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{tag}: {stdout}\n{stderr}");
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        ["ECHOED 3", "CLOSED 1002"],
        "{tag}: {stderr}"
    );
    let cause = within(rt, LIMIT, "the end", conn.closed()).await;
    assert_eq!(
        cause,
        EndCause::Lost(DisconnectReason::Closed {
            code: Some(CloseCode(1014)),
            reason: "bad gateway".to_owned(),
        }),
        "{tag}"
    );
}

/// Sends `request` on a fresh socket and returns the response head (bounded).
fn http_head(addr: SocketAddr, request: &str) -> std::io::Result<String> {
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(LIMIT))?;
    s.write_all(request.as_bytes())?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < MAX_HEAD {
        s.read_exact(&mut byte)?;
        head.push(byte[0]);
    }
    Ok(String::from_utf8_lossy(&head).to_lowercase())
}

/// The HTTP server's answer to requests `upgrade_response` refuses, read off the wire: a
/// plain request and one of another WebSocket version get 426 with
/// `Sec-WebSocket-Version: 13`; a malformed key gets 400; and no connection is guarded.
async fn bad_upgrades_are_refused_with_their_status<R: Byo>(rt: &R) {
    let tag = tag(rt, Way::Upgraded);
    let (addr, mut conns) = rt.serve(Way::Upgraded, GuardConfig::default());
    let upgrade = |version: &str, key: &str| {
        format!(
            "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Version: {version}\r\nSec-WebSocket-Key: {key}\r\n\r\n"
        )
    };
    let cases = [
        (
            "plain",
            "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".to_owned(),
            426,
        ),
        ("version 8", upgrade("8", "dGhlIHNhbXBsZSBub25jZQ=="), 426),
        ("bad key", upgrade("13", "not-a-key"), 400),
    ];
    for (name, request, status) in cases {
        let head = on_thread(rt, name, move || http_head(addr, &request))
            .await
            .unwrap_or_else(|e| panic!("{tag} {name}: {e}"));
        assert!(
            head.starts_with(&format!("http/1.1 {status} ")),
            "{tag} {name}: {head}"
        );
        let asks_version = head.contains("\r\nsec-websocket-version: 13\r\n");
        assert_eq!(asks_version, status == 426, "{tag} {name}: {head}");
    }
    // A good one still goes through on the same server, and is the first guarded.
    let mut ws = connect(rt, addr).await;
    let conn = accepted(rt, &mut conns).await;
    conn.try_send(DataFrame::Text(Utf8Bytes::from_static("hi")))
        .expect("queued");
    match within(rt, LIMIT, "the frame", ws.next()).await {
        Some(Ok(Message::Text(t))) => assert_eq!(t.as_str(), "hi", "{tag}"),
        other => panic!("{tag}: {other:?}"),
    }
    assert!(conns.try_recv().is_err(), "{tag}: nothing else was guarded");
}

/// Runs `scenario` both ways in.
async fn both_ways<R: Byo, F: Future<Output = ()>>(rt: R, scenario: impl Fn(R, Way) -> F) {
    for way in [Way::Accept, Way::Upgraded] {
        scenario(rt, way).await;
    }
}

/// Declares `scenario` as a tokio test and a smol test: run both ways in (`both ways`),
/// or once (`once`) for a scenario of one way only.
macro_rules! byo_tests {
    (both ways $scenario:ident: $tokio:ident, $smol:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $tokio() {
            both_ways(OnTokio, |rt, way| async move { $scenario(&rt, way).await }).await;
        }

        #[test]
        fn $smol() {
            smol::block_on(both_ways(OnSmol, |rt, way| async move {
                $scenario(&rt, way).await;
            }));
        }
    };
    (once $scenario:ident: $tokio:ident, $smol:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $tokio() {
            $scenario(&OnTokio).await;
        }

        #[test]
        fn $smol() {
            smol::block_on($scenario(&OnSmol));
        }
    };
}

byo_tests!(
    both ways echo_then_the_peers_close_code:
    echo_then_the_peers_close_code_tokio,
    echo_then_the_peers_close_code_smol
);

byo_tests!(
    both ways a_silent_peer_is_dropped_by_liveness:
    a_silent_peer_is_dropped_by_liveness_tokio,
    a_silent_peer_is_dropped_by_liveness_smol
);

byo_tests!(
    both ways an_oversized_frame_is_refused_with_1009:
    an_oversized_frame_is_refused_with_1009_tokio,
    an_oversized_frame_is_refused_with_1009_smol
);

byo_tests!(
    both ways the_applications_close_is_answered:
    the_applications_close_is_answered_tokio,
    the_applications_close_is_answered_smol
);

byo_tests!(
    both ways a_stalled_reader_misses_the_send_deadline:
    a_stalled_reader_misses_the_send_deadline_tokio,
    a_stalled_reader_misses_the_send_deadline_smol
);

byo_tests!(
    once a_frame_sent_with_the_request_is_not_lost:
    a_frame_sent_with_the_request_is_not_lost_tokio,
    a_frame_sent_with_the_request_is_not_lost_smol
);

byo_tests!(
    both ways python_websockets_client:
    python_websockets_client_tokio,
    python_websockets_client_smol
);

byo_tests!(
    once bad_upgrades_are_refused_with_their_status:
    bad_upgrades_are_refused_with_their_status_tokio,
    bad_upgrades_are_refused_with_their_status_smol
);
