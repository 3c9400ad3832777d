//! The server side over real loopback sockets, on tokio and on smol: accepted connections
//! guarded by `tether_tokio::server::accept` / `tether_smol::server::accept`, a `Hub`
//! broadcasting to them, and raw async-tungstenite clients playing browsers — healthy
//! ones, ones that stop reading (small `SO_RCVBUF`, so backpressure shows within a few
//! kilobytes), one that freezes, one that reads slowly.
//!
//! Timing bounds are correctness bounds, not speed: each is the configured (shortened)
//! timeout plus [`MARGIN`], the scheduling slack a shared 2-core CI machine needs. Every
//! wait is bounded (`within`), every loop counted, and nothing sleeps to wait for a timer
//! except through the configured timeouts themselves.
//!
//! File descriptors: the largest test holds 200 client and 200 server sockets (about 410
//! descriptors), within the common default soft limit of 1024, so no limit is raised.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::Message;
use futures::channel::{mpsc, oneshot};
use futures::future::BoxFuture;
use futures::{FutureExt, SinkExt, StreamExt};
use tether_core::server::EndCause;
use tether_core::{CloseCode, DataFrame, DisconnectReason, Utf8Bytes};
use tether_driver::server::{
    DeliveryError, Departure, GuardConfig, Guarded, Hub, HubConfig, LeaveReason,
};
use tether_tests::runtimes::{OnSmol, OnTokio, TestRuntime, within};

/// Scheduling slack on top of a configured deadline: how late a timer may fire and a
/// task be polled on a loaded shared CI machine. It bounds lateness only; nothing in
/// this file asserts that anything is fast.
const MARGIN: Duration = Duration::from_millis(500);

/// Receive buffer of the clients that stop reading, and send buffer of the server's
/// accepted sockets: small, so a stalled client backs up after a few frames instead of
/// after megabytes of kernel buffering.
const SMALL_BUF: usize = 4096;

// ---- the runtimes ------------------------------------------------------------------------

/// Any byte stream a client can speak WebSocket over.
trait Io: futures::AsyncRead + futures::AsyncWrite + Send + Unpin {}
impl<T: futures::AsyncRead + futures::AsyncWrite + Send + Unpin> Io for T {}

type Ws = WebSocketStream<Box<dyn Io>>;

/// A raw client and its local address (the server's `peer_addr` of its connection).
struct Client {
    ws: Ws,
    local: SocketAddr,
}

/// What the scenarios need beyond [`TestRuntime`]: spawning, a guarded server, raw
/// clients.
trait Net: TestRuntime {
    fn spawn(&self, f: BoxFuture<'static, ()>);
    /// Accepts up to `max` connections on 127.0.0.1 through the adapter's `accept`
    /// (after shrinking each accepted socket's send buffer to `sndbuf`), handing each
    /// guarded connection over in accept order.
    fn serve(
        &self,
        config: GuardConfig,
        sndbuf: Option<usize>,
        max: usize,
    ) -> (SocketAddr, mpsc::UnboundedReceiver<Guarded>);
    /// Wraps a connected std socket in the runtime's async socket.
    fn wrap(&self, s: std::net::TcpStream) -> Box<dyn Io>;
}

/// A listener with a deep backlog: 200 clients connect at once.
fn listener() -> std::net::TcpListener {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.set_reuse_address(true).unwrap();
    s.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    s.listen(1024).unwrap();
    s.set_nonblocking(true).unwrap();
    s.into()
}

impl Net for OnTokio {
    fn spawn(&self, f: BoxFuture<'static, ()>) {
        tokio::spawn(f);
    }

    fn serve(
        &self,
        config: GuardConfig,
        sndbuf: Option<usize>,
        max: usize,
    ) -> (SocketAddr, mpsc::UnboundedReceiver<Guarded>) {
        let std = listener();
        let addr = std.local_addr().unwrap();
        let listener = tokio::net::TcpListener::from_std(std).unwrap();
        let (tx, rx) = mpsc::unbounded();
        tokio::spawn(async move {
            for _ in 0..max {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                if let Some(n) = sndbuf {
                    socket2::SockRef::from(&stream)
                        .set_send_buffer_size(n)
                        .unwrap();
                }
                let tx = tx.clone();
                let config = config.clone();
                tokio::spawn(async move {
                    if let Ok(conn) = tether_tokio::server::accept(stream, config).await {
                        let _ = tx.unbounded_send(conn);
                    }
                });
            }
        });
        (addr, rx)
    }

    fn wrap(&self, s: std::net::TcpStream) -> Box<dyn Io> {
        Box::new(async_tungstenite::tokio::TokioAdapter::new(
            tokio::net::TcpStream::from_std(s).unwrap(),
        ))
    }
}

impl Net for OnSmol {
    fn spawn(&self, f: BoxFuture<'static, ()>) {
        smol::spawn(f).detach();
    }

    fn serve(
        &self,
        config: GuardConfig,
        sndbuf: Option<usize>,
        max: usize,
    ) -> (SocketAddr, mpsc::UnboundedReceiver<Guarded>) {
        let std = listener();
        let addr = std.local_addr().unwrap();
        let listener = smol::net::TcpListener::try_from(std).unwrap();
        let (tx, rx) = mpsc::unbounded();
        smol::spawn(async move {
            for _ in 0..max {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                if let Some(n) = sndbuf {
                    socket2::SockRef::from(&stream)
                        .set_send_buffer_size(n)
                        .unwrap();
                }
                let tx = tx.clone();
                let config = config.clone();
                smol::spawn(async move {
                    if let Ok(conn) = tether_smol::server::accept(stream, config).await {
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
        Box::new(smol::Async::new(s).unwrap())
    }
}

/// A raw WebSocket client of `addr`, with a receive buffer of `rcvbuf` bytes if given
/// (set before connecting, so the advertised window stays small).
async fn connect<R: Net>(rt: &R, addr: SocketAddr, rcvbuf: Option<usize>) -> Client {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    if let Some(n) = rcvbuf {
        s.set_recv_buffer_size(n).unwrap();
    }
    // A loopback connect completes in the kernel (the listener's backlog is deep), so the
    // blocking call returns at once.
    s.connect(&addr.into()).unwrap();
    s.set_nonblocking(true).unwrap();
    let std: std::net::TcpStream = s.into();
    let local = std.local_addr().unwrap();
    let io = rt.wrap(std);
    let (ws, _) = async_tungstenite::client_async(format!("ws://{addr}/"), io)
        .await
        .unwrap();
    Client { ws, local }
}

/// The next `n` guarded connections, by their peer address.
async fn accepted<R: Net>(
    rt: &R,
    rx: &mut mpsc::UnboundedReceiver<Guarded>,
    n: usize,
) -> Vec<Guarded> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let conn = within(rt, Duration::from_secs(20), "accept", rx.next()).await;
        out.push(conn.expect("the accept loop runs"));
    }
    out
}

fn by_peer(conns: &[Guarded], peer: SocketAddr) -> Guarded {
    conns
        .iter()
        .find(|c| c.peer_addr() == Some(peer))
        .cloned()
        .expect("the client's connection was accepted")
}

/// A text frame carrying its sequence number, padded to `size` bytes.
fn frame(seq: usize, size: usize) -> DataFrame {
    let mut s = format!("{seq:08}");
    s.extend(std::iter::repeat_n('.', size.saturating_sub(8)));
    DataFrame::Text(Utf8Bytes::from_string(s))
}

fn seq_of(msg: &Message) -> Option<usize> {
    match msg {
        Message::Text(t) => t.as_str().get(..8)?.parse().ok(),
        _ => None,
    }
}

/// What a reading client saw: the sequence numbers of its data frames, and the close
/// frame that ended them (`None` if the connection ended without one).
#[derive(Debug, Default)]
struct Seen {
    seqs: Vec<usize>,
    close: Option<(u16, String)>,
}

/// Reads until `stop` data frames arrived, a close frame, or the end of the stream.
async fn read_all(ws: &mut Ws, stop: usize) -> Seen {
    let mut seen = Seen::default();
    while seen.seqs.len() < stop {
        match ws.next().await {
            Some(Ok(Message::Close(frame))) => {
                seen.close = frame.map(|f| (u16::from(f.code), f.reason.to_string()));
                // Keep polling: that is what sends tungstenite's answering close frame,
                // as a browser does at once. The stream ends when the server hangs up.
                while let Some(Ok(_)) = ws.next().await {}
                break;
            }
            Some(Ok(m)) => seen.seqs.extend(seq_of(&m)),
            Some(Err(_)) | None => break,
        }
    }
    seen
}

#[track_caller]
fn assert_consecutive(seqs: &[usize], what: &str) {
    for w in seqs.windows(2) {
        assert_eq!(w[1], w[0] + 1, "{what}: gap or reordering in {seqs:?}");
    }
}

/// Collects a hub's departures in the background.
fn collect<R: Net>(rt: &R, hub: &Hub) -> Arc<Mutex<Vec<Departure>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let mut departures = hub.departures();
    rt.spawn(
        async move {
            while let Some(d) = departures.next().await {
                sink.lock().unwrap().push(d);
            }
        }
        .boxed(),
    );
    seen
}

/// Waits (bounded) until `n` departures were collected.
async fn departed<R: Net>(
    rt: &R,
    seen: &Arc<Mutex<Vec<Departure>>>,
    n: usize,
    limit: Duration,
) -> Vec<Departure> {
    let start = rt.now();
    loop {
        let got = seen.lock().unwrap().clone();
        if got.len() >= n {
            return got;
        }
        assert!(
            rt.now() - start < limit,
            "[{}] {} of {n} departures within {limit:?}: {got:?}",
            rt.name(),
            got.len()
        );
        rt.sleep(Duration::from_millis(10)).await;
    }
}

fn config(send_deadline: Duration, max_pending: usize) -> GuardConfig {
    let mut c = GuardConfig::default();
    c.server.send_deadline = send_deadline;
    c.server.slow_write_warning = send_deadline / 4;
    c.server.max_pending_writes = max_pending;
    c.server.close_timeout = Duration::from_secs(2);
    c.server.liveness.ping_interval = Some(Duration::from_secs(2));
    c.server.liveness.stale_after = Duration::from_secs(30);
    c
}

// ---- 200 clients, 10 stop reading ------------------------------------------------------

/// 200 clients; 10 stop reading after the upgrade. 300 broadcasts of 1 KiB, one every
/// 4 ms. The queue bound (4096) exceeds the broadcasts, so only the send deadline (1 s)
/// can evict: every healthy client gets all 300 frames in order, exactly the 10 stalled
/// ones are evicted by the deadline — each no later than the deadline after the first
/// frame it never received was broadcast — and no broadcast call takes longer than the
/// deadline.
async fn two_hundred_clients_ten_stop_reading<R: Net>(rt: &R) {
    const N: usize = 200;
    const STALLED: usize = 10;
    const K: usize = 300;
    const SIZE: usize = 1024;
    let deadline = Duration::from_secs(1);
    let hub = Hub::new(HubConfig::default()).unwrap();
    let departures = collect(rt, &hub);
    let (addr, mut rx) = rt.serve(config(deadline, 4096), Some(SMALL_BUF), N);

    let mut clients = Vec::with_capacity(N);
    for i in 0..N {
        let rcvbuf = (i % (N / STALLED) == 0).then_some(SMALL_BUF);
        clients.push(
            within(
                rt,
                Duration::from_secs(10),
                "connect",
                connect(rt, addr, rcvbuf),
            )
            .await,
        );
    }
    let conns = accepted(rt, &mut rx, N).await;
    for c in &conns {
        hub.join(c.clone()).unwrap();
    }
    assert_eq!(hub.len(), N);

    let mut healthy = Vec::new();
    let mut stalled = Vec::new();
    for (i, client) in clients.into_iter().enumerate() {
        if i % (N / STALLED) == 0 {
            // Stops reading: holds its socket without polling it until told to drain.
            let (go, wait) = oneshot::channel::<()>();
            let (tx, done) = oneshot::channel();
            let Client { mut ws, local } = client;
            rt.spawn(
                async move {
                    let _ = wait.await;
                    let _ = tx.send(read_all(&mut ws, K).await);
                }
                .boxed(),
            );
            stalled.push((local, go, done));
        } else {
            let (tx, done) = oneshot::channel();
            let Client { mut ws, local } = client;
            rt.spawn(
                async move {
                    let _ = tx.send(read_all(&mut ws, K).await);
                    // Stays connected (and answering pings) until the server closes.
                    read_all(&mut ws, usize::MAX).await;
                }
                .boxed(),
            );
            healthy.push((local, done));
        }
    }

    let mut sent_at: Vec<Instant> = Vec::with_capacity(K);
    let mut worst = Duration::ZERO;
    for k in 0..K {
        let t = rt.now();
        let report = hub.broadcast(frame(k, SIZE));
        worst = worst.max(rt.now() - t);
        sent_at.push(t);
        assert_eq!(report.evicted, 0, "the queue bound is never reached");
        rt.sleep(Duration::from_millis(4)).await;
    }
    assert!(
        worst <= deadline + MARGIN,
        "[{}] a broadcast call blocked for {worst:?}",
        rt.name()
    );

    for (local, done) in healthy {
        let seen = within(rt, Duration::from_secs(20), "healthy client", done)
            .await
            .unwrap();
        assert_eq!(
            seen.seqs,
            (0..K).collect::<Vec<_>>(),
            "[{}] healthy {local} missed broadcasts",
            rt.name()
        );
    }

    let gone = departed(rt, &departures, STALLED, deadline * 3 + MARGIN).await;
    assert_eq!(
        gone.len(),
        STALLED,
        "only the stalled clients left: {gone:?}"
    );
    assert_eq!(hub.len(), N - STALLED);
    for (local, go, done) in stalled {
        let conn = by_peer(&conns, local);
        let d = gone
            .iter()
            .find(|d| d.member == conn.id())
            .unwrap_or_else(|| panic!("stalled {local} was not evicted: {gone:?}"));
        assert_eq!(
            d.reason,
            LeaveReason::Ended(EndCause::Lost(DisconnectReason::SendDeadline)),
            "[{}]",
            rt.name()
        );
        assert!(d.reason.is_eviction());
        // Drain what the kernel buffered for it: the frames written before the abort.
        let _ = go.send(());
        let seen = within(rt, Duration::from_secs(10), "stalled drain", done)
            .await
            .unwrap();
        let got = seen.seqs.len();
        assert!(got < K, "a stalled client cannot have received everything");
        assert_eq!(seen.seqs, (0..got).collect::<Vec<_>>());
        // Frame `got` never made it: it was on its way no later than when it was
        // broadcast, so the eviction came within the deadline of that.
        let bound = sent_at[got] + deadline + MARGIN;
        assert!(
            d.at <= bound,
            "[{}] {local} evicted {:?} after frame {got} was broadcast (deadline {deadline:?})",
            rt.name(),
            d.at - sent_at[got]
        );
    }
    hub.close_all(CloseCode::NORMAL, "end of test").unwrap();
    let all = departed(rt, &departures, N, Duration::from_secs(10)).await;
    assert!(all[STALLED..].iter().all(|d| !d.reason.is_eviction()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_clients_ten_stop_reading_tokio() {
    two_hundred_clients_ten_stop_reading(&OnTokio).await;
}

#[test]
fn two_hundred_clients_ten_stop_reading_smol() {
    smol::block_on(two_hundred_clients_ten_stop_reading(&OnSmol));
}

// ---- a client that vanishes ------------------------------------------------------------

/// A client that stops answering while keeping its socket: what a browser whose machine
/// froze, slept or lost its network looks like to the server (no FIN, no RST; the kernel
/// even keeps acknowledging bytes). Killing a process would not test this: its kernel
/// closes the socket and the server sees a FIN or a RST at once. Pings every 400 ms,
/// stale after 2 s. A healthy client beside it stays up for well over two stale
/// thresholds (its pongs count as life); the frozen one is aborted as stale within the
/// threshold of its freeze, and no earlier than the threshold after the last ping it
/// read (and so answered).
async fn a_vanished_client_is_detected_by_liveness<R: Net>(rt: &R) {
    let ping = Duration::from_millis(400);
    let stale = Duration::from_secs(2);
    let mut cfg = config(Duration::from_secs(5), 64);
    cfg.server.liveness.ping_interval = Some(ping);
    cfg.server.liveness.stale_after = stale;
    let (addr, mut rx) = rt.serve(cfg, None, 2);

    let healthy = connect(rt, addr, None).await;
    let frozen = connect(rt, addr, None).await;
    let conns = accepted(rt, &mut rx, 2).await;
    let healthy_conn = by_peer(&conns, healthy.local);
    let frozen_conn = by_peer(&conns, frozen.local);

    // Both read (and so answer pings) until told to freeze; each records when it last
    // answered a ping (the pong flushed).
    let reader = |rt: R,
                  mut ws: Ws,
                  stop: oneshot::Receiver<()>,
                  last: Arc<Mutex<Option<Instant>>>| async move {
        let mut stop = stop.fuse();
        loop {
            futures::select! {
                _ = stop => break,
                m = ws.next().fuse() => match m {
                    Some(Ok(Message::Ping(_))) => {
                        // tungstenite only queues the pong; flush it before recording, or a
                        // freeze right after this read would leave the last pong unsent
                        // and the verdict would rightly come a ping interval "early".
                        if ws.flush().await.is_err() {
                            return;
                        }
                        *last.lock().unwrap() = Some(rt.now());
                    }
                    Some(Ok(_)) => {}
                    _ => return,
                },
            }
        }
        // Frozen: the socket stays open and unread, well past the server's verdict.
        rt.sleep(Duration::from_secs(6)).await;
        drop(ws);
    };
    let healthy_ping = Arc::new(Mutex::new(None));
    let frozen_ping = Arc::new(Mutex::new(None));
    let (_keep, healthy_stop) = oneshot::channel::<()>();
    rt.spawn(reader(*rt, healthy.ws, healthy_stop, healthy_ping.clone()).boxed());
    let (freeze, frozen_stop) = oneshot::channel::<()>();
    rt.spawn(reader(*rt, frozen.ws, frozen_stop, frozen_ping.clone()).boxed());

    rt.sleep(Duration::from_millis(1200)).await;
    assert!(!frozen_conn.is_closed(), "answering pings keeps it alive");
    let frozen_at = rt.now();
    freeze.send(()).unwrap();
    let cause = within(rt, stale + MARGIN, "stale verdict", frozen_conn.closed()).await;
    let verdict = rt.now();
    assert_eq!(
        cause,
        EndCause::Lost(DisconnectReason::Stale),
        "[{}]",
        rt.name()
    );
    let last_ping = frozen_ping
        .lock()
        .unwrap()
        .expect("the frozen client read pings");
    assert!(last_ping <= frozen_at + MARGIN);
    // Its pong went out after it read that ping: silence began no earlier.
    assert!(
        verdict >= last_ping + stale,
        "[{}] declared dead {:?} after the last answered ping, before the threshold",
        rt.name(),
        verdict - last_ping
    );
    // The healthy one has now lived well past two stale thresholds on its pongs alone.
    rt.sleep(stale).await;
    assert!(
        !healthy_conn.is_closed(),
        "[{}] {:?}",
        rt.name(),
        healthy_conn.end_cause()
    );
    assert!(healthy_ping.lock().unwrap().is_some());
    healthy_conn.close(CloseCode::NORMAL, "").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_client_is_detected_by_liveness_tokio() {
    a_vanished_client_is_detected_by_liveness(&OnTokio).await;
}

#[test]
fn a_vanished_client_is_detected_by_liveness_smol() {
    smol::block_on(a_vanished_client_is_detected_by_liveness(&OnSmol));
}

// ---- close codes -----------------------------------------------------------------------

/// Close codes reach the client as configured: an explicit `close(4321, …)`, the hub's
/// `close_all(1001, …)`, and the hub's overflow code (4008 here) for a client that paused
/// reading long enough to overflow its queue of 16 and then read again. And a client that
/// closes first gets its close answered at once (a clean close), not after a timeout.
async fn close_codes_are_sent_as_configured<R: Net>(rt: &R) {
    let mut cfg = config(Duration::from_secs(20), 16);
    cfg.server.close_timeout = Duration::from_secs(20);
    let (addr, mut rx) = rt.serve(cfg, Some(SMALL_BUF), 4);
    let mut explicit = connect(rt, addr, None).await;
    let mut everyone = connect(rt, addr, None).await;
    let mut slow = connect(rt, addr, Some(SMALL_BUF)).await;
    let mut leaving = connect(rt, addr, None).await;
    let conns = accepted(rt, &mut rx, 4).await;

    // 0. The client closes: the server answers with the same code well before any of
    // its timeouts (20 s here).
    use async_tungstenite::tungstenite::protocol::CloseFrame;
    leaving
        .ws
        .close(Some(CloseFrame {
            code: 4100.into(),
            reason: "tab closed".into(),
        }))
        .await
        .unwrap();
    let seen = within(
        rt,
        Duration::from_secs(2),
        "close answered",
        read_all(&mut leaving.ws, usize::MAX),
    )
    .await;
    assert_eq!(
        seen.close,
        Some((4100, "tab closed".to_owned())),
        "[{}]",
        rt.name()
    );
    let cause = within(
        rt,
        Duration::from_secs(2),
        "peer close",
        by_peer(&conns, leaving.local).closed(),
    )
    .await;
    assert_eq!(
        cause,
        EndCause::Lost(DisconnectReason::Closed {
            code: Some(CloseCode(4100)),
            reason: "tab closed".into()
        })
    );

    // 1. An explicit close with an application code.
    let conn = by_peer(&conns, explicit.local);
    conn.close(CloseCode(4321), "shutting down").unwrap();
    let seen = within(
        rt,
        Duration::from_secs(5),
        "explicit close",
        read_all(&mut explicit.ws, usize::MAX),
    )
    .await;
    assert_eq!(
        seen.close,
        Some((4321, "shutting down".to_owned())),
        "[{}]",
        rt.name()
    );
    let cause = within(rt, Duration::from_secs(5), "closed", conn.closed()).await;
    assert_eq!(
        cause,
        EndCause::Closed {
            code: CloseCode(4321),
            reason: "shutting down".into(),
            confirmed: true
        }
    );

    // 2. Overflow: the slow client does not read while the hub broadcasts.
    let hub = Hub::new(HubConfig {
        overflow_code: CloseCode(4008),
        overflow_reason: "too slow".into(),
        ..HubConfig::default()
    })
    .unwrap();
    let departures = collect(rt, &hub);
    let slow_conn = by_peer(&conns, slow.local);
    let everyone_conn = by_peer(&conns, everyone.local);
    hub.join(slow_conn.clone()).unwrap();
    let mut sent = 0;
    for k in 0..20_000 {
        if !hub.contains(slow_conn.id()) {
            break;
        }
        hub.broadcast(frame(k, 1024));
        sent += 1;
        if k % 8 == 7 {
            // Let the connection task write what it can.
            rt.sleep(Duration::from_millis(1)).await;
        }
    }
    let gone = departed(rt, &departures, 1, Duration::from_secs(5)).await;
    assert_eq!(gone[0].member, slow_conn.id());
    assert_eq!(gone[0].reason, LeaveReason::Overflow);
    // It reads again: the frames written before the eviction, then the close frame.
    let seen = within(
        rt,
        Duration::from_secs(10),
        "slow close",
        read_all(&mut slow.ws, usize::MAX),
    )
    .await;
    assert_eq!(
        seen.close,
        Some((4008, "too slow".to_owned())),
        "[{}]",
        rt.name()
    );
    assert!(seen.seqs.len() < sent);
    assert_eq!(seen.seqs, (0..seen.seqs.len()).collect::<Vec<_>>());

    // 3. Closing everyone.
    hub.join(everyone_conn.clone()).unwrap();
    hub.close_all(CloseCode::GOING_AWAY, "restarting").unwrap();
    let seen = within(
        rt,
        Duration::from_secs(5),
        "close_all",
        read_all(&mut everyone.ws, usize::MAX),
    )
    .await;
    assert_eq!(seen.close, Some((1001, "restarting".to_owned())));
    let gone = departed(rt, &departures, 2, Duration::from_secs(5)).await;
    assert!(matches!(
        &gone[1].reason,
        LeaveReason::Ended(EndCause::Closed {
            code: CloseCode::GOING_AWAY,
            confirmed: true,
            ..
        })
    ));
    assert!(hub.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_codes_are_sent_as_configured_tokio() {
    close_codes_are_sent_as_configured(&OnTokio).await;
}

#[test]
fn close_codes_are_sent_as_configured_smol() {
    smol::block_on(close_codes_are_sent_as_configured(&OnSmol));
}

// ---- one guarded connection's send -----------------------------------------------------

/// `send` to a client that stopped reading: every call returns within the send deadline
/// (500 ms) plus the margin, the last one with the connection dead of a missed deadline;
/// later sends fail at once. `try_send` to another stalled client reports a full queue
/// (4 frames) while the connection is still up, and never blocks.
async fn send_never_blocks_past_the_deadline<R: Net>(rt: &R) {
    let deadline = Duration::from_millis(500);
    let mut cfg = config(deadline, 4);
    cfg.server.liveness.ping_interval = None;
    let (addr, mut rx) = rt.serve(cfg, Some(SMALL_BUF), 2);
    let stalled = connect(rt, addr, Some(SMALL_BUF)).await;
    let stalled2 = connect(rt, addr, Some(SMALL_BUF)).await;
    let conns = accepted(rt, &mut rx, 2).await;
    let conn = by_peer(&conns, stalled.local);

    let mut outcome = None;
    for k in 0..10_000 {
        let t = rt.now();
        let r = conn.send(frame(k, 1024)).await;
        let took = rt.now() - t;
        assert!(
            took <= deadline + MARGIN,
            "[{}] send {k} blocked for {took:?}",
            rt.name()
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
        "[{}]",
        rt.name()
    );
    assert!(conn.is_closed());
    assert!(matches!(
        conn.try_send(frame(0, 8)),
        Err(DeliveryError::Dead(_))
    ));

    let conn2 = by_peer(&conns, stalled2.local);
    let mut full = false;
    for k in 0..10_000 {
        let t = rt.now();
        let r = conn2.try_send(frame(k, 1024));
        assert!(rt.now() - t <= MARGIN);
        match r {
            Ok(()) => {}
            Err(DeliveryError::Full) => {
                full = true;
                break;
            }
            Err(e) => panic!("[{}] {e}", rt.name()),
        }
        if k % 4 == 3 {
            rt.sleep(Duration::from_millis(1)).await;
        }
    }
    assert!(full, "the queue bound was reported");
    assert!(
        !conn2.is_closed(),
        "a full queue alone does not end a connection"
    );
    assert_eq!(conn2.queued(), 4);
    drop((stalled, stalled2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_never_blocks_past_the_deadline_tokio() {
    send_never_blocks_past_the_deadline(&OnTokio).await;
}

#[test]
fn send_never_blocks_past_the_deadline_smol() {
    smol::block_on(send_never_blocks_past_the_deadline(&OnSmol));
}

// ---- joining and leaving while broadcasts run ------------------------------------------

/// A broadcaster sends 1,500 numbered frames while 24 clients join one after another and
/// every third member is removed (and closed) a little later. Every client receives a
/// gap-free, ordered run of broadcasts from its join to its leave; members that stay
/// receive through to the last frame; the removed ones are reported as removed and
/// nobody is evicted.
async fn join_and_leave_during_broadcasts<R: Net>(rt: &R) {
    const K: usize = 1500;
    const CLIENTS: usize = 24;
    let (addr, mut rx) = rt.serve(config(Duration::from_secs(5), 4096), None, CLIENTS);
    let hub = Hub::new(HubConfig::default()).unwrap();
    let departures = collect(rt, &hub);
    let (done_tx, done_rx) = oneshot::channel();
    {
        let hub = hub.clone();
        let rt2 = *rt;
        rt.spawn(
            async move {
                for k in 0..K {
                    hub.broadcast(frame(k, 64));
                    if k % 10 == 9 {
                        rt2.sleep(Duration::from_millis(1)).await;
                    }
                }
                let _ = done_tx.send(());
            }
            .boxed(),
        );
    }
    let mut readers = Vec::new();
    let mut removed = Vec::new();
    for i in 0..CLIENTS {
        let Client { mut ws, local } = connect(rt, addr, None).await;
        let conn = accepted(rt, &mut rx, 1).await.remove(0);
        assert_eq!(conn.peer_addr(), Some(local));
        hub.join(conn.clone()).unwrap();
        let (tx, seen) = oneshot::channel();
        rt.spawn(
            async move {
                let _ = tx.send(read_all(&mut ws, usize::MAX).await);
            }
            .boxed(),
        );
        rt.sleep(Duration::from_millis(5)).await;
        if i % 3 == 0 {
            assert!(hub.remove(conn.id()).is_some());
            conn.close(CloseCode::NORMAL, "removed").unwrap();
            removed.push(conn.id());
        }
        readers.push((i, seen));
    }
    within(rt, Duration::from_secs(20), "broadcaster", done_rx)
        .await
        .unwrap();
    hub.close_all(CloseCode::NORMAL, "done").unwrap();
    for (i, seen) in readers {
        let seen = within(rt, Duration::from_secs(10), "reader", seen)
            .await
            .unwrap();
        assert_consecutive(&seen.seqs, &format!("[{}] client {i}", rt.name()));
        if i % 3 == 0 {
            assert_eq!(seen.close, Some((1000, "removed".to_owned())));
        } else {
            assert_eq!(seen.close, Some((1000, "done".to_owned())));
            assert_eq!(
                seen.seqs.last(),
                Some(&(K - 1)),
                "[{}] client {i}",
                rt.name()
            );
        }
    }
    let gone = departed(rt, &departures, CLIENTS, Duration::from_secs(10)).await;
    for d in &gone {
        assert!(!d.reason.is_eviction(), "{d:?}");
        assert_eq!(
            removed.contains(&d.member),
            d.reason == LeaveReason::Removed,
            "{d:?}"
        );
    }
    assert!(hub.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_and_leave_during_broadcasts_tokio() {
    join_and_leave_during_broadcasts(&OnTokio).await;
}

#[test]
fn join_and_leave_during_broadcasts_smol() {
    smol::block_on(join_and_leave_during_broadcasts(&OnSmol));
}

// ---- the inbound byte budget -------------------------------------------------------------

/// Reliability review U3: a client sends 64 messages of 512 KiB (32 MiB) to a connection
/// whose application does not read. The count (256 messages) would buffer them all; the
/// byte budget (4 MiB, the default) keeps 8, and the other 56 are dropped and counted —
/// while the bytes buffered never exceed the budget. Once the application reads, new
/// messages arrive again.
async fn inbound_bytes_stay_within_the_budget<R: Net>(rt: &R) {
    const SIZE: usize = 512 << 10;
    const SENT: usize = 64;
    let cfg = config(Duration::from_secs(20), 16);
    let budget = cfg.inbound_bytes;
    assert_eq!(budget, 4 << 20, "the documented default");
    let kept = budget / SIZE;
    let (addr, mut rx) = rt.serve(cfg, None, 1);
    let mut client = connect(rt, addr, None).await;
    let conn = accepted(rt, &mut rx, 1).await.remove(0);
    let message = |tag: u8| Message::Binary(vec![tag; SIZE].into());

    for tag in 0..SENT {
        let tag = u8::try_from(tag).unwrap();
        within(
            rt,
            Duration::from_secs(10),
            "send",
            client.ws.send(message(tag)),
        )
        .await
        .unwrap();
    }
    // Bounded wait for the server to have read them all; the budget holds at every look.
    let start = rt.now();
    let limit = Duration::from_secs(20);
    while conn.dropped_inbound() < (SENT - kept) as u64 {
        assert!(
            conn.inbound_bytes() <= budget,
            "[{}] {} bytes buffered",
            rt.name(),
            conn.inbound_bytes()
        );
        assert!(
            rt.now() - start < limit,
            "[{}] {} dropped within {limit:?}",
            rt.name(),
            conn.dropped_inbound()
        );
        rt.sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        conn.dropped_inbound(),
        (SENT - kept) as u64,
        "[{}]",
        rt.name()
    );
    assert_eq!(conn.inbound_bytes(), kept * SIZE, "[{}]", rt.name());
    assert!(
        !conn.is_closed(),
        "[{}] dropping is not a reason to end",
        rt.name()
    );

    // The application reads one message: its bytes are free, and the next one is kept.
    let first = within(rt, Duration::from_secs(5), "recv", conn.recv()).await;
    assert_eq!(first, Some(DataFrame::Binary(vec![0; SIZE].into())));
    within(
        rt,
        Duration::from_secs(10),
        "send",
        client.ws.send(message(200)),
    )
    .await
    .unwrap();
    let mut tags = Vec::new();
    for _ in 0..kept {
        match within(rt, Duration::from_secs(10), "recv", conn.recv()).await {
            Some(DataFrame::Binary(b)) => tags.push(b[0]),
            other => panic!("[{}] {other:?}", rt.name()),
        }
    }
    let expected: Vec<u8> = (1..u8::try_from(kept).unwrap()).chain([200]).collect();
    assert_eq!(tags, expected, "[{}]", rt.name());
    assert_eq!(
        conn.dropped_inbound(),
        (SENT - kept) as u64,
        "[{}]",
        rt.name()
    );
    assert_eq!(conn.inbound_bytes(), 0, "[{}]", rt.name());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_bytes_stay_within_the_budget_tokio() {
    inbound_bytes_stay_within_the_budget(&OnTokio).await;
}

#[test]
fn inbound_bytes_stay_within_the_budget_smol() {
    smol::block_on(inbound_bytes_stay_within_the_budget(&OnSmol));
}
