//! Real sockets, real faults: an in-process WebSocket server with fault controls, and the
//! fault scenarios every runtime adapter must pass over loopback.
//!
//! [`Server`] runs on its own OS thread with its own smol executor, bound to
//! `127.0.0.1:0`, so it works whatever runtime the client under test uses. It speaks the
//! [`HelloAck`] profile: `{"type":"hello",…}` is answered with `{"type":"hello_ack"}`, a
//! request `{"type":"request","id":n,"method":m,"params":p}` with
//! `{"type":"response","id":n,"result":p}` (method `stream`: three `event` frames of a
//! stream keyed by the request id first), and anything else is counted and ignored. Its
//! controls inject the faults a real server produces: dying ([`Server::kill`], then
//! [`Server::restart`] on the same port), closing with a code ([`Server::close_all`]),
//! ceasing to read ([`Server::stop_reading`]), going silent on an open socket
//! ([`Server::stop_answering`]), accepting then closing at once and never acknowledging
//! hellos ([`Mode`]), and answering late ([`Server::set_response_delay`]).
//!
//! The scenarios are async functions generic over an [`Adapter`]: `tests/faults_tokio.rs`
//! and `tests/faults_smol.rs` run each of them on their runtime. Every one uses the
//! shortened timeouts of [`config`] and bounds every wait, so a broken driver fails a
//! test instead of hanging it.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::Message;
use async_tungstenite::tungstenite::protocol::CloseFrame;
use futures::channel::oneshot;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{AsyncReadExt, FutureExt, Stream, StreamExt};
use serde_json::{Value, json};
use smol::channel::{Receiver, Sender};
use smol::lock::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use smol::{Async, Executor, Task, Timer};
use tether_core::profiles::{HelloAck, HelloAckRequest};
use tether_core::{
    AttemptError, CloseClass, CloseCode, ClosePolicy, Config, ConfigBuilder, DisconnectReason,
    DropReason, EndReason, Event, Jitter, RequestError, RequestFailure, SessionError, Status,
    TransportFailure,
};
use tether_driver::{CallError, Client, ConnectError};

/// The receive buffer of every server socket. Small, so that a server that stops reading
/// pushes back on the client after a few megabytes at most instead of the tens of
/// megabytes loopback's autotuning would absorb.
pub const SERVER_RECV_BUFFER: usize = 32 << 10;

/// How the server treats the connections it accepts from now on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Acknowledge hellos, echo requests.
    Normal,
    /// Complete the upgrade and keep reading (pings are answered), but never acknowledge
    /// the hello.
    NoAck,
    /// Complete the upgrade, then close at once with this code.
    AcceptThenClose(u16),
}

/// What a connection task is told.
enum Ctl {
    Close(u16, String),
    StopReading(oneshot::Sender<()>),
    StopAnswering(oneshot::Sender<()>),
}

/// A connection as the controls see it.
struct Conn {
    ctl: Sender<Ctl>,
    task: Task<()>,
    /// A second descriptor of the socket, so that `kill` can set `SO_LINGER 0` and make
    /// the close a reset. The task shuts the socket down itself when it ends normally.
    socket: Option<TcpStream>,
}

struct State {
    mode: Mode,
    delay: Duration,
    listener: Option<Task<()>>,
    conns: Vec<Conn>,
    accepted: Vec<Instant>,
    hellos: usize,
    requests: usize,
    messages: usize,
}

struct Shared {
    port: u16,
    ex: Executor<'static>,
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A test that panicked while holding the lock left consistent counters behind.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// An in-process HelloAck WebSocket server with fault controls. Dropping it kills every
/// connection and stops its thread.
pub struct Server {
    shared: Arc<Shared>,
    stop: Sender<()>,
    thread: Option<JoinHandle<()>>,
}

/// A listening socket on `127.0.0.1:port` with `SO_REUSEADDR` (a restart binds the port
/// again at once) and a small receive buffer, which accepted sockets inherit.
fn bind(port: u16) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_recv_buffer_size(SERVER_RECV_BUFFER)?;
    socket.bind(&SocketAddr::from(([127, 0, 0, 1], port)).into())?;
    socket.listen(128)?;
    Ok(socket.into())
}

impl Server {
    /// Starts a server in [`Mode::Normal`] on a fresh loopback port.
    ///
    /// # Panics
    ///
    /// If no loopback port can be bound or the thread cannot start.
    #[must_use]
    pub fn start() -> Server {
        let listener = bind(0).expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local address").port();
        let shared = Arc::new(Shared {
            port,
            ex: Executor::new(),
            state: Mutex::new(State {
                mode: Mode::Normal,
                delay: Duration::ZERO,
                listener: None,
                conns: Vec::new(),
                accepted: Vec::new(),
                hellos: 0,
                requests: 0,
                messages: 0,
            }),
        });
        let (stop, stopped) = smol::channel::bounded::<()>(1);
        let thread = std::thread::Builder::new()
            .name(format!("loopback-{port}"))
            .spawn({
                let shared = shared.clone();
                move || {
                    smol::block_on(shared.ex.run(async move {
                        let _ = stopped.recv().await;
                    }));
                }
            })
            .expect("spawn the server thread");
        let server = Server {
            shared,
            stop,
            thread: Some(thread),
        };
        server.listen(listener).expect("register the listener");
        server
    }

    fn listen(&self, listener: TcpListener) -> io::Result<()> {
        let listener = Async::new(listener)?;
        let task = self
            .shared
            .ex
            .spawn(accept_loop(self.shared.clone(), listener));
        self.shared.lock().listener = Some(task);
        Ok(())
    }

    /// The port, the same across restarts.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.shared.port
    }

    /// `ws://127.0.0.1:<port>/`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/", self.shared.port)
    }

    /// How connections accepted from now on are treated.
    pub fn set_mode(&self, mode: Mode) {
        self.shared.lock().mode = mode;
    }

    /// Requests read from now on are answered after `delay` (the connection goes on
    /// reading meanwhile).
    pub fn set_response_delay(&self, delay: Duration) {
        self.shared.lock().delay = delay;
    }

    /// Stops listening (connects are refused from here on) and drops every connection
    /// with a reset, without a close frame. Returns once all of it is done.
    pub async fn kill(&self) {
        let (listener, conns) = {
            let mut st = self.shared.lock();
            (st.listener.take(), std::mem::take(&mut st.conns))
        };
        if let Some(listener) = listener {
            listener.cancel().await;
        }
        for conn in conns {
            if let Some(socket) = &conn.socket {
                let _ = socket2::SockRef::from(socket).set_linger(Some(Duration::ZERO));
            }
            conn.task.cancel().await;
            // The last descriptor: with a zero linger, closing it sends a reset.
            drop(conn.socket);
        }
    }

    /// Listens again on the same port (a no-op while listening).
    ///
    /// # Errors
    ///
    /// The bind error if the port stays unavailable for a second.
    pub async fn restart(&self) -> io::Result<()> {
        if self.shared.lock().listener.is_some() {
            return Ok(());
        }
        let mut last = None;
        for _ in 0..50 {
            match bind(self.shared.port) {
                Ok(listener) => return self.listen(listener),
                Err(e) => last = Some(e),
            }
            Timer::after(Duration::from_millis(20)).await;
        }
        Err(last.unwrap_or_else(|| io::Error::other("bind failed")))
    }

    fn tell(&self, ctl: impl Fn() -> Ctl) {
        for conn in &self.shared.lock().conns {
            let _ = conn.ctl.try_send(ctl());
        }
    }

    /// Closes every open connection with `code` (a proper close handshake).
    pub fn close_all(&self, code: u16, reason: &str) {
        self.tell(|| Ctl::Close(code, reason.to_owned()));
    }

    async fn stall(&self, ctl: fn(oneshot::Sender<()>) -> Ctl) {
        let mut acks = Vec::new();
        for conn in &self.shared.lock().conns {
            let (tx, rx) = oneshot::channel();
            if conn.ctl.try_send(ctl(tx)).is_ok() {
                acks.push(rx);
            }
        }
        let all = futures::future::join_all(acks);
        // A connection busy writing acknowledges late; a second is plenty on loopback.
        let _ = smol::future::or(all.map(|_| ()), async {
            Timer::after(Duration::from_secs(1)).await;
        })
        .await;
    }

    /// Every open connection stops reading its socket (and so stops answering pings):
    /// the client's writes back up once the socket buffers are full. Connections accepted
    /// later are served normally.
    pub async fn stop_reading(&self) {
        self.stall(Ctl::StopReading).await;
    }

    /// Every open connection swallows whatever arrives without answering anything (no
    /// pongs, no responses), reading raw bytes so the client's writes never block: only
    /// the client's stale detection can notice. Connections accepted later are served
    /// normally.
    pub async fn stop_answering(&self) {
        self.stall(Ctl::StopAnswering).await;
    }

    /// Connections still being served: a connection ends when the client closes or
    /// drops it (except one that stopped reading, which cannot notice).
    #[must_use]
    pub fn open_connections(&self) -> usize {
        let st = self.shared.lock();
        st.conns.iter().filter(|c| !c.task.is_finished()).count()
    }

    /// TCP connections accepted so far.
    #[must_use]
    pub fn accepted(&self) -> usize {
        self.shared.lock().accepted.len()
    }

    /// When each TCP connection was accepted.
    #[must_use]
    pub fn accept_times(&self) -> Vec<Instant> {
        self.shared.lock().accepted.clone()
    }

    /// Hellos read so far.
    #[must_use]
    pub fn hellos(&self) -> usize {
        self.shared.lock().hellos
    }

    /// Requests read so far.
    #[must_use]
    pub fn requests(&self) -> usize {
        self.shared.lock().requests
    }

    /// Other application messages read so far.
    #[must_use]
    pub fn messages(&self) -> usize {
        self.shared.lock().messages
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Cancelling the tasks also breaks the cycle executor → task → shared → executor.
        smol::block_on(self.kill());
        self.stop.close();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept_loop(shared: Arc<Shared>, listener: Async<TcpListener>) {
    loop {
        let tcp = match listener.accept().await {
            Ok((tcp, _)) => tcp,
            Err(_) => {
                // Out of descriptors or a connection reset in the backlog: try again.
                Timer::after(Duration::from_millis(10)).await;
                continue;
            }
        };
        let (ctl, ctl_rx) = smol::channel::unbounded();
        let socket = tcp.get_ref().try_clone().ok();
        let mut st = shared.lock();
        st.accepted.push(Instant::now());
        let task = shared.ex.spawn(serve(shared.clone(), tcp, st.mode, ctl_rx));
        st.conns.retain(|c| !c.task.is_finished());
        st.conns.push(Conn { ctl, task, socket });
    }
}

type Ws = WebSocketStream<Async<TcpStream>>;

fn close_message(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code: code.into(),
        reason: reason.to_owned().into(),
    }))
}

/// What woke a connection task.
enum Wake {
    Ctl(Option<Ctl>),
    Reply(Message),
    Frame(Option<Result<Message, async_tungstenite::tungstenite::Error>>),
}

async fn serve(shared: Arc<Shared>, tcp: Async<TcpStream>, mode: Mode, ctl: Receiver<Ctl>) {
    let Ok(mut ws) = async_tungstenite::accept_async(tcp).await else {
        return;
    };
    if let Mode::AcceptThenClose(code) = mode {
        let _ = ws.send(close_message(code, "accept-then-close")).await;
    }
    let mut delayed: FuturesUnordered<BoxFuture<'static, Message>> = FuturesUnordered::new();
    loop {
        let wake = smol::future::or(
            smol::future::or(async { Wake::Ctl(ctl.recv().await.ok()) }, async {
                match delayed.next().await {
                    Some(reply) => Wake::Reply(reply),
                    None => std::future::pending().await,
                }
            }),
            async { Wake::Frame(ws.next().await) },
        )
        .await;
        match wake {
            Wake::Ctl(Some(Ctl::Close(code, reason))) => {
                // The client's answering close frame ends the stream below.
                let _ = ws.send(close_message(code, &reason)).await;
            }
            Wake::Ctl(Some(Ctl::StopReading(ack))) => {
                let _ = ack.send(());
                stalled(&ctl).await;
                return;
            }
            Wake::Ctl(Some(Ctl::StopAnswering(ack))) => {
                let _ = ack.send(());
                swallow(&mut ws, &ctl).await;
                break;
            }
            Wake::Ctl(None) => return,
            Wake::Reply(reply) => {
                if ws.send(reply).await.is_err() {
                    break;
                }
            }
            Wake::Frame(Some(Ok(Message::Text(text)))) => {
                let Some(reply) = answer(&shared, mode, text.as_str()) else {
                    continue;
                };
                if let Reply::Stream(frames) = reply {
                    let mut sent = true;
                    for frame in frames {
                        sent = sent && ws.send(frame).await.is_ok();
                    }
                    if !sent {
                        break;
                    }
                    continue;
                }
                let delay = match reply {
                    Reply::Ack(_) | Reply::Stream(_) => Duration::ZERO,
                    Reply::Response(_) => shared.lock().delay,
                };
                let reply = reply.into_message();
                if delay.is_zero() {
                    if ws.send(reply).await.is_err() {
                        break;
                    }
                } else {
                    delayed.push(Box::pin(async move {
                        Timer::after(delay).await;
                        reply
                    }));
                }
            }
            Wake::Frame(Some(Ok(_))) => {}
            Wake::Frame(None | Some(Err(_))) => break,
        }
    }
    // Close the socket for real: `kill`'s second descriptor would otherwise keep it open.
    let _ = ws.get_ref().get_ref().shutdown(std::net::Shutdown::Both);
}

/// What the server answers.
enum Reply {
    Ack(Message),
    Response(Message),
    /// A `stream` request's events and response, sent at once in order.
    Stream(Vec<Message>),
}

impl Reply {
    fn into_message(self) -> Message {
        match self {
            Reply::Ack(m) | Reply::Response(m) => m,
            // Streams are sent frame by frame where they are answered.
            Reply::Stream(mut frames) => frames.pop().unwrap_or_else(|| Message::text("")),
        }
    }
}

/// The reply to one text frame, counting what arrived.
fn answer(shared: &Shared, mode: Mode, text: &str) -> Option<Reply> {
    let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let mut st = shared.lock();
    match v["type"].as_str() {
        Some("hello") => {
            st.hellos += 1;
            (mode == Mode::Normal)
                .then(|| Reply::Ack(Message::text(json!({"type": "hello_ack"}).to_string())))
        }
        Some("request") if v["method"] == "stream" => {
            // Three events of a stream keyed by the request id (`delta`, `delta`,
            // `final`, accumulated text), then the response.
            st.requests += 1;
            let key = v["id"].to_string();
            let event = |seq: u64, state: &str, text: &str| {
                Message::text(
                    json!({"type": "event", "stream": key, "seq": seq, "state": state,
                        "accumulated": text})
                    .to_string(),
                )
            };
            let r = json!({"type": "response", "id": v["id"], "result": v["params"]});
            Some(Reply::Stream(vec![
                event(1, "delta", "Hel"),
                event(2, "delta", "Hello"),
                event(3, "final", "Hello!"),
                Message::text(r.to_string()),
            ]))
        }
        Some("request") => {
            st.requests += 1;
            let r = json!({"type": "response", "id": v["id"], "result": v["params"]});
            Some(Reply::Response(Message::text(r.to_string())))
        }
        _ => {
            st.messages += 1;
            None
        }
    }
}

/// Neither reads nor writes until the server kills the connection.
async fn stalled(ctl: &Receiver<Ctl>) {
    while let Ok(c) = ctl.recv().await {
        if let Ctl::StopReading(ack) | Ctl::StopAnswering(ack) = c {
            let _ = ack.send(());
        }
    }
}

/// Reads and discards raw bytes (no WebSocket processing, so no pongs and no close
/// frames) until the peer goes away or the server kills the connection.
async fn swallow(ws: &mut Ws, ctl: &Receiver<Ctl>) {
    let mut buf = vec![0; 64 << 10];
    loop {
        let go_on = smol::future::or(
            async { matches!(ws.get_mut().read(&mut buf).await, Ok(n) if n > 0) },
            async {
                match ctl.recv().await {
                    Ok(Ctl::StopReading(ack) | Ctl::StopAnswering(ack)) => {
                        let _ = ack.send(());
                        true
                    }
                    // Silent means silent: no close frame either.
                    Ok(Ctl::Close(..)) => true,
                    Err(_) => false,
                }
            },
        )
        .await;
        if !go_on {
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------
// The scenarios.
// ---------------------------------------------------------------------------------------

pub use crate::runtimes::TestRuntime as Adapter;
use crate::runtimes::within;

/// Interval between pings.
pub const PING: Duration = Duration::from_millis(200);
/// Silence after which the peer counts as dead.
pub const STALE: Duration = Duration::from_millis(600);
/// How long a write may stay unfinished.
pub const SEND_DEADLINE: Duration = Duration::from_millis(500);
/// How long the hello may go unacknowledged.
pub const HANDSHAKE: Duration = Duration::from_millis(300);
/// The reconnect schedule, without jitter.
pub const SCHEDULE: [Duration; 4] = [
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_millis(200),
    Duration::from_millis(400),
];
/// The floor a 1012 (service restart) close imposes, shortened from the default 10 s.
pub const RESTART_FLOOR: Duration = Duration::from_millis(150);
/// Requests time out after this: far longer than any fault takes to detect, so a request
/// that fails early failed because of the fault.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// "At once": how soon after a connection dies its requests must fail.
pub const AT_ONCE: Duration = Duration::from_millis(100);
/// Scheduling slack on top of a configured deadline (timers, a loaded CI machine).
pub const MARGIN: Duration = Duration::from_millis(300);
/// Upper bound on any single wait of a scenario: a hang fails, it never blocks.
pub const LIMIT: Duration = Duration::from_secs(3);

/// The shortened configuration every scenario starts from: pings every 200 ms, stale
/// after 600 ms, send deadline 500 ms, handshake 300 ms, backoff 50/100/200/400 ms
/// without jitter, 1012 reconnecting after at least 150 ms.
#[must_use]
pub fn config() -> ConfigBuilder {
    let policy = ClosePolicy::default().with_code(
        1012,
        CloseClass::Reconnect {
            min_delay: Some(RESTART_FLOOR),
        },
    );
    Config::builder()
        .connect_timeout(Duration::from_secs(1))
        .handshake_timeout(HANDSHAKE)
        .ping_interval(Some(PING))
        .stale_after(STALE)
        .send_deadline(SEND_DEADLINE)
        .slow_write_warning(SEND_DEADLINE / 2)
        .request_timeout(REQUEST_TIMEOUT)
        .backoff_schedule(SCHEDULE.to_vec())
        .jitter(Jitter::None)
        .close_timeout(Duration::from_millis(300))
        .close_policy(policy)
}

fn build(builder: ConfigBuilder) -> Config {
    builder.build().expect("valid test configuration")
}

fn hello() -> HelloAck {
    HelloAck::new(|| json!({"type": "hello", "client": "loopback"}))
}

fn echo(n: usize) -> HelloAckRequest {
    HelloAckRequest::new("echo", json!({ "n": n }))
}

/// Polls `cond` every 5 ms until it holds, or panics after `limit`.
async fn until<A: Adapter>(a: &A, limit: Duration, what: &str, cond: impl Fn() -> bool) {
    let start = a.now();
    while !cond() {
        assert!(
            a.now() - start < limit,
            "[{}] {what}: not within {limit:?}",
            a.name()
        );
        a.sleep(Duration::from_millis(5)).await;
    }
}

type Statuses = Pin<Box<dyn Stream<Item = Status> + Send>>;
type Events = Pin<Box<dyn Stream<Item = Event<HelloAck>> + Send>>;

/// The next status change.
async fn next_status<A: Adapter>(a: &A, statuses: &mut Statuses) -> Status {
    within(a, LIMIT, "next status change", statuses.next())
        .await
        .expect("the status stream ended")
}

/// The first event `pick` selects, skipping the others.
async fn find_event<A: Adapter, T>(
    a: &A,
    events: &mut Events,
    what: &str,
    pick: impl Fn(&Event<HelloAck>) -> Option<T>,
) -> T {
    within(a, LIMIT, what, async {
        while let Some(ev) = events.next().await {
            if let Some(t) = pick(&ev) {
                return t;
            }
        }
        panic!("[{}] {what}: the event stream ended", a.name())
    })
    .await
}

async fn open<A: Adapter>(a: &A, server: &Server, config: Config) -> Client<HelloAck> {
    let client = within(
        a,
        LIMIT,
        "connect",
        a.connect(&server.url(), config, hello()),
    )
    .await
    .unwrap_or_else(|e| panic!("[{}] connect: {e}", a.name()));
    assert_eq!(client.status(), Status::Open);
    client
}

async fn echo_works<A: Adapter>(a: &A, client: &Client<HelloAck>, n: usize) {
    let r = within(a, LIMIT, "echo", client.request(echo(n))).await;
    assert_eq!(
        r,
        Ok(json!({ "n": n }).into()),
        "[{}] echo after recovery",
        a.name()
    );
}

async fn shut<A: Adapter>(a: &A, client: Client<HelloAck>) {
    within(a, LIMIT, "close", client.close()).await;
    assert!(client.status().is_terminal());
}

/// Scenario 4 pushes megabytes through JSON encoding and masking. On smol every session
/// of every test in the binary shares one executor thread, and on two cores even
/// separate runtimes share the CPU, so while it runs the other scenarios' timing checks
/// would measure its CPU use rather than the driver. It runs alone; the others run side
/// by side.
static SLOTS: RwLock<()> = RwLock::new(());

async fn timing_slot() -> RwLockReadGuard<'static, ()> {
    SLOTS.read().await
}

async fn heavy_slot() -> RwLockWriteGuard<'static, ()> {
    SLOTS.write().await
}

/// The gaps between consecutive instants.
fn gaps(times: &[Instant]) -> Vec<Duration> {
    times.windows(2).map(|w| w[1] - w[0]).collect()
}

/// 1. The server dies with requests in flight: every one fails with `Disconnected` at
///    once (not at its timeout); after a restart on the same port the session reconnects
///    by itself, a request made while down is delivered, and new requests succeed.
pub async fn server_killed_with_requests_in_flight<A: Adapter>(a: &A) {
    const N: usize = 8;
    let _slot = timing_slot().await;
    let server = Server::start();
    // No response can arrive before the kill.
    server.set_response_delay(REQUEST_TIMEOUT);
    // Slow liveness: a driver that missed the reset would only notice seconds later.
    let config = config()
        .ping_interval(Some(Duration::from_secs(1)))
        .stale_after(Duration::from_secs(3));
    let client = open(a, &server, build(config)).await;
    let mut statuses: Statuses = Box::pin(client.status_changes());
    let mut events: Events = Box::pin(client.events());
    let calls = futures::future::join_all((0..N).map(|n| {
        let client = client.clone();
        async move {
            let r = client.request(echo(n)).await;
            (r, a.now())
        }
    }));
    let kill = async {
        until(a, LIMIT, "the server reads every request", || {
            server.requests() >= N
        })
        .await;
        let at = a.now();
        server.kill().await;
        at
    };
    let (results, killed_at) = within(
        a,
        LIMIT,
        "in-flight requests resolve",
        futures::future::join(calls, kill),
    )
    .await;
    for (r, at) in results {
        assert_eq!(
            r,
            Err(CallError::Failed(RequestFailure::Disconnected)),
            "[{}] in-flight request",
            a.name()
        );
        let late = at.saturating_duration_since(killed_at);
        assert!(
            late < AT_ONCE,
            "[{}] a request failed {late:?} after the kill",
            a.name()
        );
    }
    assert_eq!(next_status(a, &mut statuses).await, Status::Reconnecting);

    // Down: attempts are refused and the session keeps trying.
    let refused = find_event(a, &mut events, "a refused attempt", |ev| match ev {
        Event::AttemptFailed { error, retry, .. } => Some((error.clone(), *retry)),
        _ => None,
    })
    .await;
    assert!(
        matches!(
            refused,
            (AttemptError::Transport(TransportFailure::Refused), Some(_))
        ),
        "[{}] while down: {refused:?}",
        a.name()
    );
    assert_eq!(client.status(), Status::Reconnecting);
    server.set_response_delay(Duration::ZERO);
    let queued = client.request(echo(100));
    let back = async {
        server.restart().await.expect("restart on the same port");
        next_status(a, &mut statuses).await
    };
    let (queued, back) = within(a, LIMIT, "recovery", futures::future::join(queued, back)).await;
    assert_eq!(back, Status::Open, "[{}] after restart", a.name());
    assert_eq!(
        queued,
        Ok(json!({"n": 100}).into()),
        "[{}] request made while down",
        a.name()
    );
    echo_works(a, &client, 101).await;
    shut(a, client).await;
}

/// 2. A 4001 close is fatal: the session ends `Failed` with the code, and no further
///    connection attempt reaches the server. The same code during the handshake fails the
///    first connect even with `retry_first_connect`.
pub async fn close_4001_is_fatal<A: Adapter>(a: &A) {
    let _slot = timing_slot().await;
    let server = Server::start();
    let client = open(a, &server, build(config())).await;
    let mut statuses: Statuses = Box::pin(client.status_changes());
    let before = server.accepted();
    server.close_all(4001, "auth revoked");
    assert_eq!(next_status(a, &mut statuses).await, Status::Failed);
    match within(a, LIMIT, "wait_open", client.wait_open()).await {
        Err(EndReason::Failed(SessionError::FatalClose { code, reason })) => {
            assert_eq!(
                (code, reason.as_str()),
                (CloseCode::AUTH_FAILED, "auth revoked")
            );
        }
        other => panic!("[{}] after 4001: {other:?}", a.name()),
    }
    let r = within(a, LIMIT, "request after the end", client.request(echo(1))).await;
    assert_eq!(r, Err(CallError::Refused(RequestError::Ended)));
    // Longer than the whole schedule: a retry would have come by now.
    let all: Duration = SCHEDULE.iter().sum();
    a.sleep(all + SCHEDULE[0]).await;
    assert_eq!(
        server.accepted(),
        before,
        "[{}] reconnected after 4001",
        a.name()
    );
    assert_eq!(client.status(), Status::Failed);

    assert_eq!(
        server.open_connections(),
        0,
        "[{}] socket left open",
        a.name()
    );
    server.set_mode(Mode::AcceptThenClose(4001));
    let config = build(config().retry_first_connect(true));
    let r = within(
        a,
        LIMIT,
        "connect",
        a.connect(&server.url(), config, hello()),
    )
    .await;
    match r {
        Err(ConnectError::Ended {
            reason:
                EndReason::Failed(SessionError::FatalAttempt(AttemptError::ClosedDuringHandshake {
                    code,
                    ..
                })),
            ..
        }) => assert_eq!(code, Some(CloseCode::AUTH_FAILED)),
        other => panic!(
            "[{}] connect against 4001: {:?}",
            a.name(),
            other.map(|_| ())
        ),
    }
    a.sleep(SCHEDULE[0] + SCHEDULE[1] + SCHEDULE[2]).await;
    assert_eq!(
        server.accepted(),
        before + 1,
        "[{}] retried after 4001",
        a.name()
    );
}

/// 3. A 1012 close reconnects after the policy's (shortened) floor, and requests work
///    afterwards.
pub async fn close_1012_reconnects<A: Adapter>(a: &A) {
    let _slot = timing_slot().await;
    let server = Server::start();
    let client = open(a, &server, build(config())).await;
    let mut statuses: Statuses = Box::pin(client.status_changes());
    let mut events: Events = Box::pin(client.events());
    let before = server.accepted();
    let closed_at = a.now();
    server.close_all(1012, "restarting");
    assert_eq!(next_status(a, &mut statuses).await, Status::Reconnecting);
    let (reason, retry) = find_event(a, &mut events, "disconnect", |ev| match ev {
        Event::Disconnected { reason, retry, .. } => Some((reason.clone(), *retry)),
        _ => None,
    })
    .await;
    assert_eq!(
        reason,
        DisconnectReason::Closed {
            code: Some(CloseCode::SERVICE_RESTART),
            reason: "restarting".into()
        }
    );
    let retry = retry.expect("1012 reconnects");
    assert_eq!(retry.floor, Some(RESTART_FLOOR));
    assert_eq!(retry.wait, RESTART_FLOOR.max(SCHEDULE[0]));
    assert_eq!(next_status(a, &mut statuses).await, Status::Open);
    let times = server.accept_times();
    assert_eq!(times.len(), before + 1, "[{}] one reconnect", a.name());
    let waited = times[before] - closed_at;
    assert!(
        waited >= retry.wait && waited < retry.wait + MARGIN,
        "[{}] reconnected {waited:?} after the close, floor {RESTART_FLOOR:?}",
        a.name()
    );
    echo_works(a, &client, 2).await;
    shut(a, client).await;
}

/// 4. The server stops reading: the client's socket buffers fill, its writer blocks, and
///    the send deadline aborts the connection. No `send` caller waits on the stuck socket,
///    a request queued behind it is released by the abort within the deadline (not by
///    its own timeout), and the session reconnects.
pub async fn stopped_reader_trips_the_send_deadline<A: Adapter>(a: &A) {
    let _slot = heavy_slot().await;
    /// 24 × 256 KiB = 6 MiB: more than loopback holds (≈ 4 MiB of autotuned client send
    /// buffer plus the server's small receive buffer), so the writer blocks.
    const BLOBS: usize = 24;
    /// This scenario's deadline: longer than the shared one, because pushing megabytes
    /// through JSON encoding and masking in a debug build takes a few hundred
    /// milliseconds of its own, and the request must be asked while the connection is
    /// still stuck rather than already aborted.
    const DEADLINE: Duration = Duration::from_secs(1);
    let server = Server::start();
    // No pings, a long stale threshold: only the send deadline can notice.
    let config = build(
        config()
            .ping_interval(None)
            .stale_after(Duration::from_secs(5))
            .send_deadline(DEADLINE)
            .slow_write_warning(DEADLINE / 2),
    );
    let client = open(a, &server, config).await;
    let mut statuses: Statuses = Box::pin(client.status_changes());
    let mut events: Events = Box::pin(client.events());
    server.stop_reading().await;

    let blob = json!({"type": "blob", "data": "x".repeat(256 << 10)});
    let started = a.now();
    let mut accepted = Vec::with_capacity(BLOBS);
    for _ in 0..BLOBS {
        let t = a.now();
        let r = within(a, LIMIT, "send", client.send(blob.clone())).await;
        match r {
            Ok(id) => accepted.push(id),
            Err(e) => panic!("[{}] send refused: {e:?}", a.name()),
        }
        let waited = a.now() - t;
        assert!(waited < MARGIN, "[{}] send waited {waited:?}", a.name());
    }
    let pushed = a.now() - started;
    assert_eq!(
        client.status(),
        Status::Open,
        "[{}] pushing took {pushed:?}: the deadline tripped before the request",
        a.name()
    );
    // A request behind the blobs: released by the abort, not by its own timeout.
    let asked = a.now();
    let r = within(a, LIMIT, "request", client.request(echo(7))).await;
    let waited = a.now() - asked;
    assert_eq!(
        r,
        Err(CallError::Failed(RequestFailure::Disconnected)),
        "[{}] request behind the stuck writes",
        a.name()
    );
    assert!(
        waited < DEADLINE + MARGIN,
        "[{}] request waited {waited:?}",
        a.name()
    );
    // Every accepted blob ends written or reported: the ones whose writes the abort cut
    // off come back as `MessageDropped { Disconnected }` before the disconnect.
    let mut dropped = Vec::new();
    let reason = within(a, LIMIT, "disconnect", async {
        while let Some(ev) = events.next().await {
            match ev {
                Event::MessageDropped { id, reason } => {
                    assert_eq!(reason, DropReason::Disconnected, "[{}]", a.name());
                    dropped.push(id);
                }
                Event::Disconnected { reason, .. } => return reason,
                _ => {}
            }
        }
        panic!("[{}] disconnect: the event stream ended", a.name())
    })
    .await;
    assert_eq!(reason, DisconnectReason::SendDeadline, "[{}]", a.name());
    // A socket writes in order: the confirmed blobs are a prefix of the accepted ones,
    // the dropped ones the rest, and the stuck socket cannot have taken all 24.
    assert!(
        !dropped.is_empty(),
        "[{}] the abort lost nothing?",
        a.name()
    );
    let written = BLOBS - dropped.len();
    assert_eq!(
        dropped,
        accepted[written..],
        "[{}] dropped ids are not the unconfirmed tail of {accepted:?}",
        a.name()
    );
    // The stuck frame was handed over somewhere during the push.
    let detected = asked + waited - started;
    assert!(
        detected >= DEADLINE && detected < DEADLINE + pushed + MARGIN,
        "[{}] send deadline tripped {detected:?} after the push began ({pushed:?} long)",
        a.name()
    );
    assert_eq!(next_status(a, &mut statuses).await, Status::Reconnecting);
    assert_eq!(next_status(a, &mut statuses).await, Status::Open);
    echo_works(a, &client, 8).await;
    shut(a, client).await;
}

/// 5. The server keeps the socket but answers nothing (no pongs): stale detection
///    aborts the connection no sooner than `stale_after` after the last frame received,
///    and not much later, and the session reconnects.
pub async fn silent_server_goes_stale<A: Adapter>(a: &A) {
    let _slot = timing_slot().await;
    let server = Server::start();
    let client = open(a, &server, build(config())).await;
    let mut statuses: Statuses = Box::pin(client.status_changes());
    let mut events: Events = Box::pin(client.events());
    // Let a ping and its pong pass first, so liveness has seen traffic.
    a.sleep(PING + PING / 2).await;
    // The last frames the server sends are the answer to this request (and perhaps a
    // pong just after it): sent after `asked`, so the client's last receipt is no earlier.
    // Once `stop_answering` returns the server sends nothing, so it is no later than
    // `silent_at`. The threshold is measured from both ends of that window.
    let asked = a.now();
    echo_works(a, &client, 1).await;
    server.stop_answering().await;
    let silent_at = a.now();
    let reason = find_event(a, &mut events, "disconnect", |ev| match ev {
        Event::Disconnected { reason, .. } => Some(reason.clone()),
        _ => None,
    })
    .await;
    let detected = a.now();
    assert_eq!(reason, DisconnectReason::Stale, "[{}]", a.name());
    // Never before the threshold has passed since the last frame received: measured from
    // a time that precedes it, with nothing taken off.
    assert!(
        detected - asked >= STALE,
        "[{}] stale {:?} after the last answer was asked for ({:?} of silence)",
        a.name(),
        detected - asked,
        detected - silent_at
    );
    // And within the threshold plus one ping interval (the check may wait for the next
    // tick) and a scheduling margin after the last frame that could have arrived.
    assert!(
        detected - silent_at < STALE + PING + MARGIN,
        "[{}] stale only {:?} after the server went silent",
        a.name(),
        detected - silent_at
    );
    assert_eq!(next_status(a, &mut statuses).await, Status::Reconnecting);
    assert_eq!(next_status(a, &mut statuses).await, Status::Open);
    // The stale socket was dropped, not leaked: the server sees it go.
    until(a, LIMIT, "the stale connection is released", || {
        server.open_connections() == 1
    })
    .await;
    echo_works(a, &client, 5).await;
    shut(a, client).await;
}

/// 6. A server that accepts then closes at once (1011): attempts are spaced by the
///    backoff schedule (no jitter), growing step by step and capped at the last step; no
///    hot loop.
pub async fn accept_then_close_backs_off<A: Adapter>(a: &A) {
    let _slot = timing_slot().await;
    let server = Server::start();
    server.set_mode(Mode::AcceptThenClose(1011));
    let config = build(config().retry_first_connect(true));
    let client = a
        .start(&server.url(), config, hello())
        .expect("valid session");
    // Attempts at 0, 50, 150, 350, 750, 1150 ms (plus connection setup each).
    let want = SCHEDULE.len() + 2;
    until(a, LIMIT, "attempts", || server.accepted() >= want).await;
    let window = a.now();
    client.terminate();
    let times = server.accept_times();
    let gaps = gaps(&times[..want]);
    let expected: Vec<Duration> = (0..want - 1)
        .map(|i| SCHEDULE[i.min(SCHEDULE.len() - 1)])
        .collect();
    for (gap, step) in gaps.iter().zip(&expected) {
        assert!(
            gap >= step && *gap < *step + MARGIN,
            "[{}] attempt gaps {gaps:?}, schedule {expected:?}",
            a.name()
        );
    }
    // The lower bounds grow with the schedule, so the spacing does; and no hot loop: in
    // the time the attempts took, the schedule allows no more than were made.
    let elapsed = window - times[0];
    let mut allowed = 1;
    let mut spent = Duration::ZERO;
    for step in (0..).map(|i: usize| SCHEDULE[i.min(SCHEDULE.len() - 1)]) {
        spent += step;
        if spent > elapsed {
            break;
        }
        allowed += 1;
    }
    let in_window = times.iter().filter(|t| **t <= window).count();
    assert!(
        in_window <= allowed,
        "[{}] {in_window} attempts in {elapsed:?}, the schedule allows {allowed}",
        a.name()
    );
    until(a, LIMIT, "terminate", || client.status() == Status::Closed).await;
    until(a, LIMIT, "terminate releases the socket", || {
        server.open_connections() == 0
    })
    .await;
}

/// 7. A hello never acknowledged: `connect` fails with the handshake timeout when the
///    first connect is not retried (and nothing retries); with `retry_first_connect`,
///    attempts repeat at handshake timeout plus backoff.
pub async fn hello_never_acked<A: Adapter>(a: &A) {
    let _slot = timing_slot().await;
    let server = Server::start();
    server.set_mode(Mode::NoAck);
    let started = a.now();
    let r = within(
        a,
        LIMIT,
        "connect",
        a.connect(&server.url(), build(config()), hello()),
    )
    .await;
    let took = a.now() - started;
    match r {
        Err(ConnectError::Ended {
            reason: EndReason::Failed(SessionError::FirstConnect(AttemptError::HandshakeTimeout)),
            ..
        }) => {}
        other => panic!("[{}] connect: {:?}", a.name(), other.map(|_| ())),
    }
    assert!(
        took >= HANDSHAKE && took < HANDSHAKE + MARGIN,
        "[{}] handshake timeout after {took:?}",
        a.name()
    );
    assert_eq!(server.hellos(), 1);
    a.sleep(SCHEDULE[0] + SCHEDULE[1]).await;
    assert_eq!(
        server.accepted(),
        1,
        "[{}] retried without retry_first_connect",
        a.name()
    );

    let config = build(config().retry_first_connect(true));
    let client = a
        .start(&server.url(), config, hello())
        .expect("valid session");
    // Attempts at 0, 350, 750, 1250 ms: each waits out the handshake, then the backoff.
    let want = 1 + 4;
    until(a, LIMIT, "attempts", || server.accepted() >= want).await;
    client.terminate();
    let times = server.accept_times();
    let gaps = gaps(&times[1..want]);
    for (gap, step) in gaps.iter().zip(SCHEDULE) {
        let expected = HANDSHAKE + step;
        assert!(
            *gap >= expected && *gap < expected + MARGIN,
            "[{}] attempt gaps {gaps:?}, expected handshake + {SCHEDULE:?}",
            a.name()
        );
    }
    until(a, LIMIT, "terminate", || client.status() == Status::Closed).await;
    until(a, LIMIT, "terminate releases the socket", || {
        server.open_connections() == 0
    })
    .await;
}
