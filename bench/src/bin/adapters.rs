//! End-to-end adapter benchmarks: tether on tokio and on smol, side by side with raw
//! async-tungstenite over the same runtime and, on the tokio rows, with two peer clients
//! (tokio-tungstenite and ezsockets), all against one in-process echo server.
//!
//! ```sh
//! cargo run --release -p tether-bench --bin adapters
//! ```
//!
//! Two loops per runtime, each run once for every client of the row:
//!
//! - **throughput**: pipelined echo of 100-byte text frames with a fixed window in flight
//!   (a new frame goes out for every echo that comes back). Raw: `WebSocketStream::send`
//!   (which flushes) and `next()` on one stream. Tether: `Client<Raw>::feed(DataFrame::Text)`
//!   and `Event::Message` from `client.events()`.
//! - **latency**: one round trip at a time. Raw: send a text frame the size of tether's
//!   request frame and await its echo. Tether: `Client<HelloAck>::request`, which the server
//!   answers with a `response` frame.
//!
//! Tether runs twice per row: as a `Client` (its session loop a task of its own, reached
//! through a command channel and an event mailbox) and as an `Inline` session polled by
//! the measured loop itself (`send` out, `next()` for the `Event::Message` or the
//! `Event::Response` with the request's id).
//!
//! The peers, on the tokio rows only (both are tokio-only libraries):
//!
//! - **tokio-tungstenite** (0.30, the same tungstenite 0.30 as async-tungstenite 0.35, so
//!   the protocol code is one copy) runs the very same loop functions as raw
//!   async-tungstenite (they are generic over the stream): `send` per frame, `feed` plus
//!   `flush` when nothing is readable (batched), the echo and the JSON request round trips,
//!   over a `TcpStream` with `TCP_NODELAY` handed to `client_async`.
//! - **ezsockets** (0.7, default `ClientConfig`, `ezsockets::connect`) is driven the way
//!   its documentation shows: a `ClientExt` whose `on_text` forwards each frame into an
//!   unbounded tokio `mpsc` channel that the measuring loop reads, and `Client::text` per
//!   frame out. Throughput keeps the same window (a new `text` per echo received); latency
//!   sends one frame (the echo frame, or the JSON request encoded and its answer parsed and
//!   checked, as raw does) and awaits it from the channel. Per message ezsockets hops
//!   through its own tasks over unbounded `async_channel`s: outbound, `text` (which also
//!   allocates an `Arc<AtomicU8>` delivery signal) → channel → client actor → channel →
//!   sink actor, which `send`s (a flush, so a write call, per frame) on its half of a
//!   `split` tokio-tungstenite stream; inbound, a stream actor reads the frame, stamps
//!   `Instant::now()` into an `Arc<futures::lock::Mutex>` (the liveness clock of its 5 s
//!   heartbeat) and forwards it through a channel to the client actor, which calls
//!   `on_text`; the client actor's `select!` builds fresh receive futures on every turn.
//!   ezsockets uses tokio-tungstenite 0.26 with tungstenite 0.26 (a second copy of
//!   tungstenite in this binary), and its `connect` does not set `TCP_NODELAY` (only a
//!   `ClientConnector` of one's own could); every other client here sets it.
//!
//! Where things run. The echo server has its own thread and its own (current-thread) tokio
//! runtime, so it never shares an executor with the client being measured: every client of
//! a row talks to the same server, and server work can neither hide nor inflate a client's
//! cost. On the client side each row places the measured loop one way, for every client
//! alike (ezsockets' and tether's own tasks are spawned on the same runtime):
//!
//! - `tokio, task`: a current-thread runtime; the measured loop is a spawned task, next to
//!   tether's session-loop and connection tasks (the usual shape of an application).
//! - `tokio, block_on`: the same runtime with the loop as the `block_on` future itself. A
//!   current-thread runtime polls that future only after its task queue runs dry, and then
//!   checks the I/O driver first (an `epoll_wait`), so every hop back to it costs a system
//!   call: this row shows what that placement costs a multi-task client such as tether.
//! - `smol, task`: the loop runs on smol's global executor thread, where tether-smol spawns
//!   its tasks.
//! - `smol, block_on`: the loop runs under `smol::block_on` on the bench thread, as in
//!   tether-smol's example; every event and command then crosses threads.
//!
//! Every figure is the median over `TETHER_BENCH_ROUNDS` rounds (default 5); within a
//! round the clients take turns going first (the order rotates by one client per round).
//! Client CPU (Linux) is the CPU time of every thread but the server's over the measured
//! section, per frame or per round trip.
//!
//! Environment: `TETHER_BENCH_FRAMES` and `TETHER_BENCH_RUN_MS` (a throughput run stops
//! sending after 100,000 frames or 1,000 ms, whichever comes first, and waits for the
//! frames in flight),
//! `TETHER_BENCH_WINDOW` (64), `TETHER_BENCH_TRIPS` (5,000 round trips after 500 of
//! warm-up), `TETHER_BENCH_ROUNDS` (5), `TETHER_BENCH_ONLY` (a row-key prefix:
//! `tokio`, `tokio-task`, `tokio-block_on`, `smol`, `smol-task`, `smol-block_on`),
//! `TETHER_BENCH_CLIENT` (`raw`, `tether`, `inline`, `tokio-tungstenite` or `ezsockets`:
//! one client only, for profiling).

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::{self, Message, Utf8Bytes};
use futures::{FutureExt, Sink, SinkExt, Stream, StreamExt};
use serde_json::Value;
use tether_driver::Inline;
use tether_tokio::Client;
use tether_tokio::tether_core::profiles::{HelloAck, HelloAckRequest, Raw};
use tether_tokio::tether_core::{self as core, Config, DataFrame, Event};

/// Payload of the throughput frames: 100 bytes of text that is not JSON, so the server
/// echoes it without parsing.
const FRAME: &str = "tether-bench-frame-0123456789abcdefghijklmnopqrstuvwxyz-0123456789abcdefghijklmnopqrstuvwxyz-0123456";
const _: () = assert!(FRAME.len() == 100);
/// Frames sent (and echoed) before a throughput run's clock starts.
const WARMUP_FRAMES: usize = 2_000;
/// Round trips before a latency run's clock starts.
const WARMUP_TRIPS: usize = 500;

#[derive(Clone, Copy, Debug)]
struct Settings {
    frames: usize,
    budget: Duration,
    window: usize,
    trips: usize,
    rounds: usize,
}

impl Settings {
    fn from_env() -> Self {
        fn var(name: &str, default: usize) -> usize {
            std::env::var(name)
                .ok()
                .and_then(|v| v.replace('_', "").parse().ok())
                .filter(|&n| n > 0)
                .unwrap_or(default)
        }
        Settings {
            frames: var("TETHER_BENCH_FRAMES", 100_000),
            budget: Duration::from_millis(var("TETHER_BENCH_RUN_MS", 1_000) as u64),
            window: var("TETHER_BENCH_WINDOW", 64),
            trips: var("TETHER_BENCH_TRIPS", 5_000),
            rounds: var("TETHER_BENCH_ROUNDS", 5),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The echo server
// ---------------------------------------------------------------------------------------

/// The fields of a JSON frame the server looks at, borrowed from the frame.
#[derive(serde::Deserialize)]
struct Probe<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<&'a str>,
    id: Option<u64>,
}

/// The server's answer to one frame: hellos get a `hello_ack`, requests a `response` with a
/// `null` result, anything else comes back as it came.
fn answer(msg: Message) -> Option<Message> {
    match msg {
        Message::Text(t) if t.as_str().starts_with('{') => {
            let probe: Probe<'_> = serde_json::from_str(t.as_str()).ok()?;
            match (probe.kind, probe.id) {
                (Some("hello"), _) => Some(Message::text(r#"{"type":"hello_ack"}"#)),
                (Some("request"), Some(id)) => Some(Message::text(format!(
                    r#"{{"type":"response","id":{id},"result":null}}"#
                ))),
                _ => Some(Message::Text(t)),
            }
        }
        Message::Text(_) | Message::Binary(_) => Some(msg),
        _ => None,
    }
}

/// Serves one connection: answers every frame, and flushes once per batch of frames that
/// were already readable (so a pipelined client is not held to one write call per echo).
async fn serve(tcp: tokio::net::TcpStream) {
    let _ = tcp.set_nodelay(true);
    let Ok(ws) = async_tungstenite::tokio::accept_async(tcp).await else {
        return;
    };
    let (mut tx, mut rx) = ws.split();
    while let Some(Ok(msg)) = rx.next().await {
        if let Some(reply) = answer(msg)
            && tx.feed(reply).await.is_err()
        {
            return;
        }
        loop {
            match rx.next().now_or_never() {
                None => break,
                Some(Some(Ok(msg))) => {
                    if let Some(reply) = answer(msg)
                        && tx.feed(reply).await.is_err()
                    {
                        return;
                    }
                }
                Some(_) => return,
            }
        }
        if tx.flush().await.is_err() {
            return;
        }
    }
}

/// Starts the echo server on its own thread and runtime; returns its address.
fn start_server() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    listener
        .set_nonblocking(true)
        .expect("non-blocking listener");
    let addr = listener.local_addr().expect("local address");
    std::thread::Builder::new()
        .name("echo-server".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("server runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                loop {
                    if let Ok((tcp, _)) = listener.accept().await {
                        tokio::spawn(serve(tcp));
                    }
                }
            });
        })
        .expect("server thread");
    addr
}

// ---------------------------------------------------------------------------------------
// Client-side CPU time
// ---------------------------------------------------------------------------------------

/// CPU time so far of every thread of this process except the echo server's (Linux:
/// `/proc/self/task/*/schedstat`, nanoseconds on CPU). That is the measured client, the
/// runtime's helper threads (smol's executor and reactor threads) and the kernel work done
/// on their behalf, including loopback delivery on `send`. `None` elsewhere.
fn client_cpu() -> Option<Duration> {
    let mut total = 0u64;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let dir = task.ok()?.path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim() == "echo-server" {
            continue;
        }
        // A thread may exit between listing and reading: it then counts as zero.
        let Ok(stat) = std::fs::read_to_string(dir.join("schedstat")) else {
            continue;
        };
        total += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(Duration::from_nanos(total))
}

/// The wall-clock and client CPU time of a measured section.
struct Clock {
    wall: Instant,
    cpu: Option<Duration>,
}

impl Clock {
    fn start() -> Self {
        Clock {
            cpu: client_cpu(),
            wall: Instant::now(),
        }
    }

    fn stop(self, frames: usize) -> Measured {
        let wall = self.wall.elapsed();
        let cpu = match (self.cpu, client_cpu()) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a)),
            _ => None,
        };
        Measured { wall, cpu, frames }
    }
}

/// What one measured section took.
#[derive(Clone, Copy, Debug)]
struct Measured {
    wall: Duration,
    cpu: Option<Duration>,
    /// Frames (throughput) or round trips (latency) measured.
    frames: usize,
}

// ---------------------------------------------------------------------------------------
// Raw loops (generic over the WebSocket stream: async-tungstenite on either runtime's
// byte stream, or tokio-tungstenite)
// ---------------------------------------------------------------------------------------

/// A WebSocket stream of tungstenite 0.30 messages: async-tungstenite's `WebSocketStream`
/// over any byte stream, and tokio-tungstenite's.
trait Ws:
    Sink<Message, Error = tungstenite::Error>
    + Stream<Item = Result<Message, tungstenite::Error>>
    + Unpin
{
}

impl<W> Ws for W where
    W: Sink<Message, Error = tungstenite::Error>
        + Stream<Item = Result<Message, tungstenite::Error>>
        + Unpin
{
}

/// The bookkeeping of a pipelined run: up to `limit` frames, or fewer once the time budget
/// is spent (then nothing new goes out and the frames in flight are awaited).
struct Pipeline {
    limit: usize,
    sent: usize,
    got: usize,
    deadline: Option<Instant>,
}

impl Pipeline {
    fn new(limit: usize, budget: Option<Duration>) -> Self {
        Pipeline {
            limit,
            sent: 0,
            got: 0,
            deadline: budget.map(|b| Instant::now() + b),
        }
    }

    /// Whether the initial window is not yet all out.
    fn filling(&self, window: usize) -> bool {
        self.sent < window.min(self.limit)
    }

    /// Whether another frame goes out for the echo just received (the clock is read every
    /// 64 echoes).
    fn refill(&mut self) -> bool {
        if self.got.is_multiple_of(64) && self.deadline.is_some_and(|d| Instant::now() >= d) {
            self.limit = self.sent;
        }
        self.sent < self.limit
    }
}

/// Pipelined echo with `s.window` frames in flight for up to `s.frames` frames or
/// `s.budget`, after a warm-up. Plain: `send` per frame (a flush, so a write call, each).
/// Batched: `feed` per frame and one `flush` whenever no echo is ready to read, which is
/// what a hand-tuned client does and what tether's loop does for its writes.
async fn raw_throughput<W: Ws>(mut ws: W, s: Settings, batched: bool) -> Measured {
    let payload = Utf8Bytes::from_static(FRAME);
    let mut run = async |p: &mut Pipeline| {
        while p.filling(s.window) {
            let frame = Message::Text(payload.clone());
            if batched {
                ws.feed(frame).await.expect("raw feed");
            } else {
                ws.send(frame).await.expect("raw send");
            }
            p.sent += 1;
        }
        while p.got < p.sent {
            let next = match ws.next().now_or_never() {
                Some(next) => next,
                None => {
                    if batched {
                        ws.flush().await.expect("raw flush");
                    }
                    ws.next().await
                }
            };
            match next {
                Some(Ok(Message::Text(_))) => {
                    p.got += 1;
                    if p.refill() {
                        let frame = Message::Text(payload.clone());
                        if batched {
                            ws.feed(frame).await.expect("raw feed");
                        } else {
                            ws.send(frame).await.expect("raw send");
                        }
                        p.sent += 1;
                    }
                }
                Some(Ok(_)) => {}
                other => panic!("raw stream ended: {other:?}"),
            }
        }
    };
    run(&mut Pipeline::new(WARMUP_FRAMES, None)).await;
    let mut p = Pipeline::new(s.frames, Some(s.budget));
    let clock = Clock::start();
    run(&mut p).await;
    let measured = clock.stop(p.got);
    let _ = SinkExt::close(&mut ws).await;
    measured
}

/// One round trip at a time, after a warm-up; returns every measured round trip and the
/// client CPU time over all of them. Echo (`json` false): a text frame of `len` bytes and
/// its echo, nothing else. Request (`json` true): what the least a request client does
/// over raw async-tungstenite — encode a `HelloAck` request with serde_json, parse the
/// answer and check its id — so the difference to tether is tether's own machinery.
async fn raw_latency<W: Ws>(mut ws: W, s: Settings, len: usize, json: bool) -> Trips {
    let payload = Utf8Bytes::from("x".repeat(len));
    let mut samples = Vec::with_capacity(s.trips);
    let mut clock = None;
    for i in 0..WARMUP_TRIPS + s.trips {
        if i == WARMUP_TRIPS {
            clock = Some(Clock::start());
        }
        let start = Instant::now();
        let frame = if json {
            Utf8Bytes::from(json_request(1000 + i as u64))
        } else {
            payload.clone()
        };
        ws.send(Message::Text(frame)).await.expect("raw send");
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    if json {
                        check_answer(t.as_str(), 1000 + i as u64);
                    }
                    break;
                }
                Some(Ok(_)) => {}
                other => panic!("raw stream ended: {other:?}"),
            }
        }
        if i >= WARMUP_TRIPS {
            samples.push(start.elapsed());
        }
    }
    let cpu = clock.and_then(|c| c.stop(s.trips).cpu);
    let _ = SinkExt::close(&mut ws).await;
    Trips { samples, cpu }
}

/// A `HelloAck` request frame with this id, encoded with serde_json as a request client
/// over a raw stream would.
fn json_request(id: u64) -> String {
    serde_json::json!({"type": "request", "id": id, "method": "echo", "params": null}).to_string()
}

/// Parses the server's answer to a [`json_request`] and checks its id.
fn check_answer(text: &str, id: u64) {
    let answer: Value = serde_json::from_str(text).expect("JSON answer");
    assert_eq!(answer["id"], id, "answer id");
}

/// The round trips of a latency run.
struct Trips {
    samples: Vec<Duration>,
    cpu: Option<Duration>,
}

// ---------------------------------------------------------------------------------------
// Tether loops (the same `Client` type on every runtime)
// ---------------------------------------------------------------------------------------

/// Pipelined echo through `Client<Raw>`: `send` out, `Event::Message` back.
async fn tether_throughput(client: Client<Raw>, s: Settings) -> Measured {
    let mut events = client.events();
    let frame = DataFrame::Text(core::Utf8Bytes::from_static(FRAME));
    let mut run = async |p: &mut Pipeline| {
        while p.filling(s.window) {
            client.feed(frame.clone()).await.expect("tether feed");
            p.sent += 1;
        }
        while p.got < p.sent {
            match events.next().await {
                Some(Event::Message(_)) => {
                    p.got += 1;
                    if p.refill() {
                        client.feed(frame.clone()).await.expect("tether feed");
                        p.sent += 1;
                    }
                }
                Some(_) => {}
                None => panic!("tether events ended"),
            }
        }
    };
    run(&mut Pipeline::new(WARMUP_FRAMES, None)).await;
    let mut p = Pipeline::new(s.frames, Some(s.budget));
    let clock = Clock::start();
    run(&mut p).await;
    let measured = clock.stop(p.got);
    client.close().await;
    measured
}

/// One `HelloAck` request at a time, after a warm-up.
async fn tether_latency(client: Client<HelloAck>, s: Settings) -> Trips {
    let mut samples = Vec::with_capacity(s.trips);
    let mut clock = None;
    for i in 0..WARMUP_TRIPS + s.trips {
        if i == WARMUP_TRIPS {
            clock = Some(Clock::start());
        }
        let start = Instant::now();
        client
            .request(HelloAckRequest::new("echo", Value::Null))
            .await
            .expect("tether request");
        if i >= WARMUP_TRIPS {
            samples.push(start.elapsed());
        }
    }
    let cpu = clock.and_then(|c| c.stop(s.trips).cpu);
    client.close().await;
    Trips { samples, cpu }
}

/// Waits for an inline session's first connection to open.
async fn inline_open<P: tether_tokio::SendProtocol, R: tether_tokio::Runtime>(
    session: &mut Inline<P, R>,
) {
    loop {
        match session.next().await {
            Some(Event::Opened { .. }) => return,
            Some(_) => {}
            None => panic!("inline session ended before it opened"),
        }
    }
}

/// Closes an inline session and drives the close handshake to its end.
async fn inline_close<P: tether_tokio::SendProtocol, R: tether_tokio::Runtime>(
    mut session: Inline<P, R>,
) {
    session.close();
    while session.next().await.is_some() {}
}

/// Pipelined echo through `Inline<Raw>`, the session polled by the measured loop itself:
/// `send` out (its verdict at once; written on the next poll), `Event::Message` back.
async fn inline_throughput<R: tether_tokio::Runtime>(
    mut session: Inline<Raw, R>,
    s: Settings,
) -> Measured {
    inline_open(&mut session).await;
    let frame = DataFrame::Text(core::Utf8Bytes::from_static(FRAME));
    let mut run = async |p: &mut Pipeline| {
        while p.filling(s.window) {
            session.send(frame.clone()).expect("inline send");
            p.sent += 1;
        }
        while p.got < p.sent {
            match session.next().await {
                Some(Event::Message(_)) => {
                    p.got += 1;
                    if p.refill() {
                        session.send(frame.clone()).expect("inline send");
                        p.sent += 1;
                    }
                }
                Some(_) => {}
                None => panic!("inline session ended"),
            }
        }
    };
    run(&mut Pipeline::new(WARMUP_FRAMES, None)).await;
    let mut p = Pipeline::new(s.frames, Some(s.budget));
    let clock = Clock::start();
    run(&mut p).await;
    let measured = clock.stop(p.got);
    inline_close(session).await;
    measured
}

/// One `HelloAck` request at a time through `Inline<HelloAck>`: the id at once, the
/// response as the `Event::Response` with that id.
async fn inline_latency<R: tether_tokio::Runtime>(
    mut session: Inline<HelloAck, R>,
    s: Settings,
) -> Trips {
    inline_open(&mut session).await;
    let mut samples = Vec::with_capacity(s.trips);
    let mut clock = None;
    for i in 0..WARMUP_TRIPS + s.trips {
        if i == WARMUP_TRIPS {
            clock = Some(Clock::start());
        }
        let start = Instant::now();
        let id = session
            .request(HelloAckRequest::new("echo", Value::Null))
            .expect("inline request");
        loop {
            match session.next().await {
                Some(Event::Response { id: got, result }) if got == id => {
                    result.expect("inline response");
                    break;
                }
                Some(_) => {}
                None => panic!("inline session ended"),
            }
        }
        if i >= WARMUP_TRIPS {
            samples.push(start.elapsed());
        }
    }
    let cpu = clock.and_then(|c| c.stop(s.trips).cpu);
    inline_close(session).await;
    Trips { samples, cpu }
}

/// The length of the request frame tether writes (with a four-digit id), so the raw
/// latency loop moves frames of the same size.
fn request_frame_len() -> usize {
    json_request(1000).len()
}

fn hello() -> HelloAck {
    HelloAck::new(|| serde_json::json!({"type": "hello"}))
}

fn url(addr: SocketAddr) -> String {
    format!("ws://{addr}/")
}

// ---------------------------------------------------------------------------------------
// ezsockets loops (tokio only)
// ---------------------------------------------------------------------------------------

/// The `ClientExt` of the ezsockets rows: every text frame goes into a channel that the
/// measuring loop reads, and the first `on_connect` is signalled (ezsockets discards the
/// frames queued when a connection attempt begins, so the loop waits for it).
struct EzClient {
    echoes: tokio::sync::mpsc::UnboundedSender<ezsockets::Utf8Bytes>,
    connected: Option<tokio::sync::oneshot::Sender<()>>,
}

#[async_trait::async_trait]
impl ezsockets::ClientExt for EzClient {
    type Call = ();

    async fn on_text(&mut self, text: ezsockets::Utf8Bytes) -> Result<(), ezsockets::Error> {
        self.echoes
            .send(text)
            .map_err(|_| "the measuring loop is gone".into())
    }

    async fn on_binary(&mut self, _bytes: ezsockets::Bytes) -> Result<(), ezsockets::Error> {
        Ok(())
    }

    async fn on_call(&mut self, (): ()) -> Result<(), ezsockets::Error> {
        Ok(())
    }

    async fn on_connect(&mut self) -> Result<(), ezsockets::Error> {
        if let Some(connected) = self.connected.take() {
            let _ = connected.send(());
        }
        Ok(())
    }

    // A lost connection ends the run (the loop then sees its channel close) instead of
    // reconnecting after ezsockets' 5 s interval.
    async fn on_close(
        &mut self,
        _frame: Option<ezsockets::CloseFrame>,
    ) -> Result<ezsockets::client::ClientCloseMode, ezsockets::Error> {
        Ok(ezsockets::client::ClientCloseMode::Close)
    }

    async fn on_disconnect(
        &mut self,
    ) -> Result<ezsockets::client::ClientCloseMode, ezsockets::Error> {
        Ok(ezsockets::client::ClientCloseMode::Close)
    }
}

/// A connected ezsockets client: its handle, the channel of echoes and the actor's result.
struct Ez<F> {
    client: ezsockets::Client<EzClient>,
    echoes: tokio::sync::mpsc::UnboundedReceiver<ezsockets::Utf8Bytes>,
    done: F,
}

/// Connects with ezsockets' defaults and waits until the connection is up.
async fn ez_connect(
    addr: SocketAddr,
) -> Ez<impl Future<Output = Result<(), ezsockets::Error>> + Send + 'static> {
    let (tx, echoes) = tokio::sync::mpsc::unbounded_channel();
    let (connected, up) = tokio::sync::oneshot::channel();
    let config = ezsockets::ClientConfig::new(url(addr).as_str());
    let (client, done) = ezsockets::connect(
        |_| EzClient {
            echoes: tx,
            connected: Some(connected),
        },
        config,
    )
    .await;
    up.await.expect("ezsockets connect");
    Ez {
        client,
        echoes,
        done,
    }
}

impl<F: Future<Output = Result<(), ezsockets::Error>>> Ez<F> {
    fn text(&self, text: ezsockets::Utf8Bytes) {
        let _signal = self.client.text(text).expect("ezsockets text");
    }

    async fn echo(&mut self) -> ezsockets::Utf8Bytes {
        self.echoes.recv().await.expect("ezsockets ended")
    }

    async fn close(self) {
        let _ = self.client.close(None);
        let _ = self.done.await;
    }
}

/// Pipelined echo through ezsockets: `Client::text` out, `on_text` back through a channel.
async fn ez_throughput(addr: SocketAddr, s: Settings) -> Measured {
    let mut ez = ez_connect(addr).await;
    let payload = ezsockets::Utf8Bytes::from_static(FRAME);
    let mut run = async |p: &mut Pipeline| {
        while p.filling(s.window) {
            ez.text(payload.clone());
            p.sent += 1;
        }
        while p.got < p.sent {
            ez.echo().await;
            p.got += 1;
            if p.refill() {
                ez.text(payload.clone());
                p.sent += 1;
            }
        }
    };
    run(&mut Pipeline::new(WARMUP_FRAMES, None)).await;
    let mut p = Pipeline::new(s.frames, Some(s.budget));
    let clock = Clock::start();
    run(&mut p).await;
    let measured = clock.stop(p.got);
    ez.close().await;
    measured
}

/// One round trip at a time through ezsockets, after a warm-up: the echo frame, or the
/// JSON request with its answer parsed and checked, as [`raw_latency`] does.
async fn ez_latency(addr: SocketAddr, s: Settings, len: usize, json: bool) -> Trips {
    let mut ez = ez_connect(addr).await;
    let payload = ezsockets::Utf8Bytes::from("x".repeat(len));
    let mut samples = Vec::with_capacity(s.trips);
    let mut clock = None;
    for i in 0..WARMUP_TRIPS + s.trips {
        if i == WARMUP_TRIPS {
            clock = Some(Clock::start());
        }
        let start = Instant::now();
        if json {
            ez.text(json_request(1000 + i as u64).into());
            check_answer(ez.echo().await.as_str(), 1000 + i as u64);
        } else {
            ez.text(payload.clone());
            ez.echo().await;
        }
        if i >= WARMUP_TRIPS {
            samples.push(start.elapsed());
        }
    }
    let cpu = clock.and_then(|c| c.stop(s.trips).cpu);
    ez.close().await;
    Trips { samples, cpu }
}

// ---------------------------------------------------------------------------------------
// Runtimes and placements
// ---------------------------------------------------------------------------------------

/// The four loops of one row, on one runtime with one placement of the measured loop.
trait Bed {
    fn name(&self) -> &'static str;
    fn raw_throughput(&self, addr: SocketAddr, s: Settings, batched: bool) -> Measured;
    fn raw_latency(&self, addr: SocketAddr, s: Settings, len: usize, json: bool) -> Trips;
    fn tether_throughput(&self, addr: SocketAddr, s: Settings) -> Measured;
    fn tether_latency(&self, addr: SocketAddr, s: Settings) -> Trips;
    fn inline_throughput(&self, addr: SocketAddr, s: Settings) -> Measured;
    fn inline_latency(&self, addr: SocketAddr, s: Settings) -> Trips;
    /// Whether the row also measures the peers (the tokio rows).
    fn has_peers(&self) -> bool {
        false
    }
    /// A peer's throughput loop (`batched` only for tokio-tungstenite).
    fn peer_throughput(
        &self,
        _peer: Who,
        _addr: SocketAddr,
        _s: Settings,
        _batched: bool,
    ) -> Measured {
        unreachable!("no peers on this row")
    }
    /// A peer's latency loop.
    fn peer_latency(
        &self,
        _peer: Who,
        _addr: SocketAddr,
        _s: Settings,
        _len: usize,
        _json: bool,
    ) -> Trips {
        unreachable!("no peers on this row")
    }
}

/// Runs futures on one runtime: as a spawned task, or as the `block_on` future itself.
trait Exec {
    fn run<T: Send + 'static>(&self, f: impl Future<Output = T> + Send + 'static) -> T;
}

/// A current-thread tokio runtime: the measured loop and tether's tasks share one thread.
struct TokioExec {
    rt: tokio::runtime::Runtime,
    spawned: bool,
}

impl Exec for TokioExec {
    fn run<T: Send + 'static>(&self, f: impl Future<Output = T> + Send + 'static) -> T {
        if self.spawned {
            self.rt.block_on(self.rt.spawn(f)).expect("measured task")
        } else {
            self.rt.block_on(f)
        }
    }
}

/// smol: the measured loop runs on smol's global executor thread, where tether-smol spawns
/// its tasks, or under `smol::block_on` on the bench thread.
struct SmolExec {
    spawned: bool,
}

impl Exec for SmolExec {
    fn run<T: Send + 'static>(&self, f: impl Future<Output = T> + Send + 'static) -> T {
        if self.spawned {
            smol::block_on(smol::spawn(f))
        } else {
            smol::block_on(f)
        }
    }
}

async fn tokio_raw(
    addr: SocketAddr,
) -> WebSocketStream<async_tungstenite::tokio::TokioAdapter<tokio::net::TcpStream>> {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tcp.set_nodelay(true).expect("TCP_NODELAY");
    async_tungstenite::tokio::client_async(url(addr), tcp)
        .await
        .expect("raw handshake")
        .0
}

async fn smol_raw(addr: SocketAddr) -> WebSocketStream<smol::Async<std::net::TcpStream>> {
    let tcp = smol::Async::<std::net::TcpStream>::connect(addr)
        .await
        .expect("connect");
    tcp.get_ref().set_nodelay(true).expect("TCP_NODELAY");
    async_tungstenite::client_async(url(addr), tcp)
        .await
        .expect("raw handshake")
        .0
}

/// Implements [`Bed`] for an [`Exec`] with the runtime's raw connect and tether connect.
macro_rules! bed {
    ($ty:ty, $name:expr, $raw:path, $tether:path, $builder:path $(, { $($extra:tt)* })?) => {
        impl Bed for $ty {
            $($($extra)*)?

            fn name(&self) -> &'static str {
                $name(self.spawned)
            }
            fn raw_throughput(&self, addr: SocketAddr, s: Settings, batched: bool) -> Measured {
                self.run(async move { raw_throughput($raw(addr).await, s, batched).await })
            }
            fn raw_latency(&self, addr: SocketAddr, s: Settings, len: usize, json: bool) -> Trips {
                self.run(async move { raw_latency($raw(addr).await, s, len, json).await })
            }
            fn tether_throughput(&self, addr: SocketAddr, s: Settings) -> Measured {
                self.run(async move {
                    let client = $tether(&url(addr), Config::default(), Raw).await;
                    tether_throughput(client.expect("tether connect"), s).await
                })
            }
            fn tether_latency(&self, addr: SocketAddr, s: Settings) -> Trips {
                self.run(async move {
                    let client = $tether(&url(addr), Config::default(), hello()).await;
                    tether_latency(client.expect("tether connect"), s).await
                })
            }
            fn inline_throughput(&self, addr: SocketAddr, s: Settings) -> Measured {
                self.run(async move {
                    let session = $builder(url(addr)).inline().expect("inline start");
                    inline_throughput(session, s).await
                })
            }
            fn inline_latency(&self, addr: SocketAddr, s: Settings) -> Trips {
                self.run(async move {
                    let session = $builder(url(addr)).protocol(hello()).inline();
                    inline_latency(session.expect("inline start"), s).await
                })
            }
        }
    };
}

fn tokio_name(spawned: bool) -> &'static str {
    if spawned {
        "tokio, task"
    } else {
        "tokio, block_on"
    }
}

fn smol_name(spawned: bool) -> &'static str {
    if spawned {
        "smol, task"
    } else {
        "smol, block_on"
    }
}

async fn tokio_tungstenite(
    addr: SocketAddr,
) -> tokio_tungstenite::WebSocketStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tcp.set_nodelay(true).expect("TCP_NODELAY");
    tokio_tungstenite::client_async(url(addr), tcp)
        .await
        .expect("tokio-tungstenite handshake")
        .0
}

bed!(
    TokioExec,
    tokio_name,
    tokio_raw,
    tether_tokio::connect,
    tether_tokio::builder,
    {
        fn has_peers(&self) -> bool {
            true
        }
        fn peer_throughput(
            &self,
            peer: Who,
            addr: SocketAddr,
            s: Settings,
            batched: bool,
        ) -> Measured {
            match peer {
                Who::TokioTungstenite => self.run(async move {
                    raw_throughput(tokio_tungstenite(addr).await, s, batched).await
                }),
                Who::Ezsockets => self.run(ez_throughput(addr, s)),
                Who::Raw | Who::Tether | Who::Inline => unreachable!("not a peer"),
            }
        }
        fn peer_latency(
            &self,
            peer: Who,
            addr: SocketAddr,
            s: Settings,
            len: usize,
            json: bool,
        ) -> Trips {
            match peer {
                Who::TokioTungstenite => self.run(async move {
                    raw_latency(tokio_tungstenite(addr).await, s, len, json).await
                }),
                Who::Ezsockets => self.run(ez_latency(addr, s, len, json)),
                Who::Raw | Who::Tether | Who::Inline => unreachable!("not a peer"),
            }
        }
    }
);
bed!(
    SmolExec,
    smol_name,
    smol_raw,
    tether_smol::connect,
    tether_smol::builder
);

// ---------------------------------------------------------------------------------------
// Measuring and reporting
// ---------------------------------------------------------------------------------------

/// One round's figures for one client.
#[derive(Clone, Copy, Debug, Default)]
struct Figures {
    frames_per_s: f64,
    /// Client CPU per frame (throughput) in µs.
    cpu_per_frame: Option<f64>,
    /// The raw client's batched throughput (zero for tether).
    batched_per_s: f64,
    batched_cpu_per_frame: Option<f64>,
    p50: Duration,
    p99: Duration,
    /// Client CPU per round trip in µs.
    cpu_per_trip: Option<f64>,
    /// The raw client's JSON request round trip (zero for tether).
    json_p50: Duration,
    json_p99: Duration,
}

impl Figures {
    fn throughput(&mut self, m: Measured) {
        self.frames_per_s = m.frames as f64 / m.wall.as_secs_f64();
        self.cpu_per_frame = m.cpu.map(|c| c.as_secs_f64() * 1e6 / m.frames as f64);
    }

    fn batched(&mut self, m: Measured) {
        self.batched_per_s = m.frames as f64 / m.wall.as_secs_f64();
        self.batched_cpu_per_frame = m.cpu.map(|c| c.as_secs_f64() * 1e6 / m.frames as f64);
    }

    fn json_latency(&mut self, t: Trips) {
        let mut f = Figures::default();
        f.latency(t);
        self.json_p50 = f.p50;
        self.json_p99 = f.p99;
    }

    fn latency(&mut self, mut t: Trips) {
        self.cpu_per_trip = t
            .cpu
            .map(|c| c.as_secs_f64() * 1e6 / t.samples.len() as f64);
        t.samples.sort_unstable();
        let at = |p: usize| t.samples[(t.samples.len() * p / 100).min(t.samples.len() - 1)];
        self.p50 = at(50);
        self.p99 = at(99);
    }
}

fn median<T: Copy>(mut v: Vec<T>, cmp: impl Fn(&T, &T) -> std::cmp::Ordering) -> T {
    v.sort_by(cmp);
    v[v.len() / 2]
}

/// The per-figure medians over rounds.
fn medians(rounds: &[Figures]) -> Figures {
    let f = |get: fn(&Figures) -> f64| median(rounds.iter().map(get).collect(), f64::total_cmp);
    let d = |get: fn(&Figures) -> Duration| median(rounds.iter().map(get).collect(), Ord::cmp);
    let o = |get: fn(&Figures) -> Option<f64>| {
        let v: Option<Vec<f64>> = rounds.iter().map(get).collect();
        v.map(|v| median(v, f64::total_cmp))
    };
    Figures {
        frames_per_s: f(|x| x.frames_per_s),
        cpu_per_frame: o(|x| x.cpu_per_frame),
        batched_per_s: f(|x| x.batched_per_s),
        batched_cpu_per_frame: o(|x| x.batched_cpu_per_frame),
        p50: d(|x| x.p50),
        p99: d(|x| x.p99),
        cpu_per_trip: o(|x| x.cpu_per_trip),
        json_p50: d(|x| x.json_p50),
        json_p99: d(|x| x.json_p99),
    }
}

fn thousands(n: f64) -> String {
    let s = format!("{n:.0}");
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn micros(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e6)
}

fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_owned(), |v| format!("{v:.2}"))
}

/// The clients of a row, in the order of a round's turns before rotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    Raw,
    Tether,
    Inline,
    TokioTungstenite,
    Ezsockets,
}

impl Who {
    const ALL: [Who; 5] = [
        Who::Raw,
        Who::Tether,
        Who::Inline,
        Who::TokioTungstenite,
        Who::Ezsockets,
    ];

    fn key(self) -> &'static str {
        match self {
            Who::Raw => "raw",
            Who::Tether => "tether",
            Who::Inline => "inline",
            Who::TokioTungstenite => "tokio-tungstenite",
            Who::Ezsockets => "ezsockets",
        }
    }
}

/// Runs one client's loops once.
fn run_client(bed: &dyn Bed, who: Who, addr: SocketAddr, s: Settings, len: usize) -> Figures {
    let mut f = Figures::default();
    match who {
        Who::Raw => {
            f.throughput(bed.raw_throughput(addr, s, false));
            f.batched(bed.raw_throughput(addr, s, true));
            f.latency(bed.raw_latency(addr, s, len, false));
            f.json_latency(bed.raw_latency(addr, s, len, true));
        }
        Who::Tether => {
            f.throughput(bed.tether_throughput(addr, s));
            f.latency(bed.tether_latency(addr, s));
        }
        Who::Inline => {
            f.throughput(bed.inline_throughput(addr, s));
            f.latency(bed.inline_latency(addr, s));
        }
        Who::TokioTungstenite => {
            f.throughput(bed.peer_throughput(who, addr, s, false));
            f.batched(bed.peer_throughput(who, addr, s, true));
            f.latency(bed.peer_latency(who, addr, s, len, false));
            f.json_latency(bed.peer_latency(who, addr, s, len, true));
        }
        Who::Ezsockets => {
            f.throughput(bed.peer_throughput(who, addr, s, false));
            f.latency(bed.peer_latency(who, addr, s, len, false));
            f.json_latency(bed.peer_latency(who, addr, s, len, true));
        }
    }
    f
}

/// One row's medians per client (zero for a client the run left out; `None` for the peers
/// on a row without them).
struct Row {
    name: &'static str,
    raw: Figures,
    tether: Figures,
    inline: Figures,
    tokio_tungstenite: Option<Figures>,
    ezsockets: Option<Figures>,
}

/// Runs every round for one row.
fn measure(bed: &dyn Bed, addr: SocketAddr, s: Settings, len: usize, only: Option<Who>) -> Row {
    let peers = bed.has_peers();
    let mut turns: Vec<Who> = Who::ALL[..if peers { 5 } else { 3 }].to_vec();
    turns.retain(|&w| only.is_none_or(|o| o == w));
    let mut rounds: Vec<[Figures; 5]> = Vec::new();
    for round in 0..s.rounds {
        let mut f = [Figures::default(); 5];
        // Rotate which client goes first, so drift over a round hits all alike.
        for k in 0..turns.len() {
            let who = turns[(round + k) % turns.len()];
            f[who as usize] = run_client(bed, who, addr, s, len);
        }
        let mut line = format!("  {:<16} round {}:", bed.name(), round + 1);
        for who in &turns {
            let x = &f[*who as usize];
            line += &format!(
                " {} {} frames/s, {} µs p50;",
                who.key(),
                thousands(x.frames_per_s),
                micros(x.p50)
            );
        }
        eprintln!("{}", line.trim_end_matches(';'));
        rounds.push(f);
    }
    let med = |who: Who| medians(&rounds.iter().map(|f| f[who as usize]).collect::<Vec<_>>());
    Row {
        name: bed.name(),
        raw: med(Who::Raw),
        tether: med(Who::Tether),
        inline: med(Who::Inline),
        tokio_tungstenite: peers.then(|| med(Who::TokioTungstenite)),
        ezsockets: peers.then(|| med(Who::Ezsockets)),
    }
}

fn main() {
    let s = Settings::from_env();
    let only = std::env::var("TETHER_BENCH_ONLY").ok();
    let client = std::env::var("TETHER_BENCH_CLIENT").ok();
    let client = client.and_then(|c| Who::ALL.into_iter().find(|w| w.key() == c));
    let len = request_frame_len();
    let addr = start_server();
    println!("cargo run --release -p tether-bench --bin adapters");
    println!(
        "echo server {addr} on its own thread (current-thread tokio). Throughput: up to {} frames of {} bytes or {} ms per run, {} in flight, after {WARMUP_FRAMES} of warm-up. Latency: {} round trips after {WARMUP_TRIPS} of warm-up ({len}-byte text frames and JSON requests raw, tokio-tungstenite and ezsockets; HelloAck requests tether). Median of {} rounds.",
        s.frames,
        FRAME.len(),
        s.budget.as_millis(),
        s.window,
        s.trips,
        s.rounds
    );
    let rt = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
    };
    let beds: Vec<(&str, Box<dyn Bed>)> = vec![
        (
            "tokio-task",
            Box::new(TokioExec {
                rt: rt(),
                spawned: true,
            }),
        ),
        (
            "tokio-block_on",
            Box::new(TokioExec {
                rt: rt(),
                spawned: false,
            }),
        ),
        ("smol-task", Box::new(SmolExec { spawned: true })),
        ("smol-block_on", Box::new(SmolExec { spawned: false })),
    ];
    let started = Instant::now();
    let mut rows = Vec::new();
    for (key, bed) in &beds {
        if only.as_deref().is_some_and(|o| !key.starts_with(o)) {
            continue;
        }
        rows.push(measure(bed.as_ref(), addr, s, len, client));
    }
    println!();
    println!(
        "| runtime, measured loop | raw `send` frames/s | raw batched frames/s | tether frames/s | tether/raw `send` (target ≥ 0.90) | tether/raw batched | CPU µs/frame: raw `send`, batched, tether |"
    );
    println!("|---|---:|---:|---:|---:|---:|---|");
    for Row {
        name, raw, tether, ..
    } in &rows
    {
        println!(
            "| {name} | {} | {} | {} | {:.2}× | {:.2}× | {}, {}, {} |",
            thousands(raw.frames_per_s),
            thousands(raw.batched_per_s),
            thousands(tether.frames_per_s),
            tether.frames_per_s / raw.frames_per_s,
            tether.frames_per_s / raw.batched_per_s,
            opt(raw.cpu_per_frame),
            opt(raw.batched_cpu_per_frame),
            opt(tether.cpu_per_frame),
        );
    }
    println!();
    println!(
        "| runtime, measured loop | p50 µs: raw echo, raw JSON request, tether | tether/raw echo p50 | tether/raw request p50 (target ≤ 1.10) | p99 µs: raw echo, raw request, tether | raw echo CPU µs/trip | tether CPU µs/trip |"
    );
    println!("|---|---|---:|---:|---|---:|---:|");
    for Row {
        name, raw, tether, ..
    } in &rows
    {
        println!(
            "| {name} | {}, {}, {} | {:.2}× | {:.2}× | {}, {}, {} | {} | {} |",
            micros(raw.p50),
            micros(raw.json_p50),
            micros(tether.p50),
            tether.p50.as_secs_f64() / raw.p50.as_secs_f64(),
            tether.p50.as_secs_f64() / raw.json_p50.as_secs_f64(),
            micros(raw.p99),
            micros(raw.json_p99),
            micros(tether.p99),
            opt(raw.cpu_per_trip),
            opt(tether.cpu_per_trip),
        );
    }
    println!();
    println!(
        "| runtime, measured loop | raw batched frames/s | inline frames/s | inline/raw batched (target ≥ 0.95) | CPU µs/frame: raw batched, inline | inline/raw batched CPU (target ≤ 1.10) | p50 µs: raw JSON request, inline | inline/raw request p50 (target ≤ 1.05) | p99 µs: raw request, inline |"
    );
    println!("|---|---:|---:|---:|---|---:|---|---:|---|");
    for Row {
        name, raw, inline, ..
    } in &rows
    {
        let cpu = match (inline.cpu_per_frame, raw.batched_cpu_per_frame) {
            (Some(a), Some(b)) => format!("{:.2}×", a / b),
            _ => "–".to_owned(),
        };
        println!(
            "| {name} | {} | {} | {:.2}× | {}, {} | {cpu} | {}, {} | {:.2}× | {}, {} |",
            thousands(raw.batched_per_s),
            thousands(inline.frames_per_s),
            inline.frames_per_s / raw.batched_per_s,
            opt(raw.batched_cpu_per_frame),
            opt(inline.cpu_per_frame),
            micros(raw.json_p50),
            micros(inline.p50),
            inline.p50.as_secs_f64() / raw.json_p50.as_secs_f64(),
            micros(raw.json_p99),
            micros(inline.p99),
        );
    }
    let peers: Vec<(&str, &Figures, &Figures, &Figures)> = rows
        .iter()
        .filter_map(|r| {
            Some((
                r.name,
                r.tokio_tungstenite.as_ref()?,
                r.ezsockets.as_ref()?,
                &r.tether,
            ))
        })
        .collect();
    if !peers.is_empty() {
        println!();
        println!(
            "| runtime, measured loop | tokio-tungstenite `send` frames/s | tokio-tungstenite batched frames/s | ezsockets frames/s | tether frames/s | tether/tokio-tungstenite `send` | tether/tokio-tungstenite batched | tether/ezsockets | CPU µs/frame: tokio-tungstenite `send`, batched, ezsockets, tether |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---|");
        for (name, tt, ez, tether) in &peers {
            println!(
                "| {name} | {} | {} | {} | {} | {:.2}× | {:.2}× | {:.2}× | {}, {}, {}, {} |",
                thousands(tt.frames_per_s),
                thousands(tt.batched_per_s),
                thousands(ez.frames_per_s),
                thousands(tether.frames_per_s),
                tether.frames_per_s / tt.frames_per_s,
                tether.frames_per_s / tt.batched_per_s,
                tether.frames_per_s / ez.frames_per_s,
                opt(tt.cpu_per_frame),
                opt(tt.batched_cpu_per_frame),
                opt(ez.cpu_per_frame),
                opt(tether.cpu_per_frame),
            );
        }
        println!();
        println!(
            "| runtime, measured loop | p50 µs: tokio-tungstenite echo, request; ezsockets echo, request; tether | tether/tokio-tungstenite p50: echo, request | tether/ezsockets p50: echo, request | p99 µs: tokio-tungstenite echo, request; ezsockets echo, request; tether | CPU µs/trip: tokio-tungstenite echo, ezsockets echo, tether |"
        );
        println!("|---|---|---|---|---|---|");
        let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
        for (name, tt, ez, tether) in &peers {
            println!(
                "| {name} | {}, {}; {}, {}; {} | {:.2}×, {:.2}× | {:.2}×, {:.2}× | {}, {}; {}, {}; {} | {}, {}, {} |",
                micros(tt.p50),
                micros(tt.json_p50),
                micros(ez.p50),
                micros(ez.json_p50),
                micros(tether.p50),
                ratio(tether.p50, tt.p50),
                ratio(tether.p50, tt.json_p50),
                ratio(tether.p50, ez.p50),
                ratio(tether.p50, ez.json_p50),
                micros(tt.p99),
                micros(tt.json_p99),
                micros(ez.p99),
                micros(ez.json_p99),
                micros(tether.p99),
                opt(tt.cpu_per_trip),
                opt(ez.cpu_per_trip),
                opt(tether.cpu_per_trip),
            );
        }
    }
    println!();
    println!("total {:.1} s", started.elapsed().as_secs_f64());
}
