//! Broadcast benchmark: tether's `Hub` against a naive loop over async-tungstenite sinks,
//! 100-byte text frames to 1,000 loopback clients, with and without 1% stalled clients.
//!
//! ```sh
//! cargo run --release -p tether-bench --bin hub
//! ```
//!
//! Four rows, in one run: {raw, tether} × {no stalled client, 10 stalled clients}.
//!
//! - **tether**: every accepted socket goes through `tether_tokio::server::accept` and
//!   joins a `Hub`; the broadcaster calls `hub.broadcast(frame)` (it queues the shared
//!   frame for every member without waiting; each connection's task writes it).
//! - **raw**: every accepted socket is upgraded with async-tungstenite's `accept_async`;
//!   the broadcaster loops over the streams and awaits `send` on each in turn — the
//!   obvious code — with the same send deadline as a per-send timeout (a sink that misses
//!   it is dropped), since without one a stalled client blocks the loop for ever.
//!
//! Stalled clients connect with a 4 KiB receive buffer and never read; every accepted
//! socket, on both servers, gets a 4 KiB send buffer (Linux would otherwise let the
//! kernel buffer megabytes for a client that reads nothing). Everything else
//! reads and counts. The broadcaster sends bursts of `TETHER_BENCH_BURST` frames (32) and
//! after each burst waits until every healthy client has received all of them (a closed
//! loop, so neither side can run ahead and the figure is what was delivered), for
//! `TETHER_BENCH_BROADCASTS` frames (3,000) or `TETHER_BENCH_RUN_MS` (6,000 ms),
//! whichever ends first. Reported per row: deliveries per second to healthy clients
//! (frames × healthy clients ÷ elapsed), the broadcaster's median and worst single call
//! (one `broadcast`, or one pass of the raw loop over every sink), and how many stalled
//! clients were dropped; then tether ÷ raw ratios.
//!
//! Then two rows of topic broadcasts, local and across processes through Redis
//! (`Hub::broadcast_to` with a backplane):
//!
//! - **local**: the row above with no stalled client also measures delivery latency: 200
//!   single broadcasts, each timed from the call until every client has the frame.
//! - **redis**: this binary starts a `redis-server` (`TETHER_REDIS_SERVER`, or what
//!   `scripts/redis-setup.sh` sets up) on a free loopback port and a second process (itself,
//!   with `TETHER_BENCH_PEER_REDIS` set) whose hub has a backplane and puts every accepted
//!   client in topic `bench`; the clients connect to that process, and this process's hub,
//!   with a backplane and no member, calls `broadcast_to("bench", frame)`. Same bursts, same
//!   closed loop, same latency probe; the difference of the latencies is the hop through
//!   Redis (publisher task, Redis, the other process's subscriber task). Skipped, with a
//!   note, when `TETHER_SKIP_REDIS=1` or no Redis can be set up.
//! - Then both again with one client, where no fan-out to 1,000 sockets hides the hop:
//!   the difference of their latencies is what the hop through Redis adds.
//!
//! Where things run: the server side (hub, connection tasks, broadcaster) on one
//! current-thread tokio runtime and thread, the 1,000 clients on another, so each side
//! has one of the machine's two cores. `TETHER_BENCH_CLIENTS` (1,000) changes the client
//! count; if the open-file limit cannot hold two sockets per client, the count is lowered
//! to fit and the output says so (raise it with `ulimit -n 4096`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_tungstenite::WebSocketStream;
use async_tungstenite::tokio::TokioAdapter;
use async_tungstenite::tungstenite::{Message, Utf8Bytes};
use futures::{FutureExt, StreamExt};
use tether_tokio::server::{GuardConfig, Hub, HubConfig, LeaveReason};
use tether_tokio::tether_core::{DataFrame, Utf8Bytes as CoreUtf8};

/// 100 bytes of text.
const FRAME: &str = "tether-hub-bench-0123456789abcdefghijklmnopqrstuvwxyz-0123456789abcdefghijklmnopqrstuvwxyz-012345678";
const _: () = assert!(FRAME.len() == 100);
/// The send deadline of both servers.
const DEADLINE: Duration = Duration::from_millis(500);
/// Receive buffer of a stalled client.
const STALLED_RCVBUF: usize = 4096;
/// Send buffer of every accepted socket, for both servers: without it Linux grows the
/// buffer of a socket nobody reads to megabytes, and a stall would not show within a
/// run (the naive loop sends only ~100 frames a second). 4 KiB (the kernel doubles it)
/// still holds two bursts of frames, so healthy clients never wait on it.
const SERVER_SNDBUF: u32 = 4 << 10;

#[derive(Clone, Copy, Debug)]
struct Settings {
    clients: usize,
    burst: usize,
    broadcasts: usize,
    budget: Duration,
}

fn var(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// The soft open-file limit, where the platform says (Linux: /proc).
fn nofile_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Server {
    Raw,
    Tether,
}

#[derive(Clone, Copy, Debug, Default)]
struct Row {
    /// The latency probe's figures, when it ran.
    latency: Option<Latency>,
    deliveries_per_s: f64,
    worst_call: Duration,
    median_call: Duration,
    broadcasts: usize,
    healthy: usize,
    dropped: usize,
    elapsed: Duration,
}

/// The clients' side: connects `n` clients (`stalled` of them never read) and counts
/// what the healthy ones receive. Runs on its own thread and runtime until `stop`.
struct Clients {
    delivered: Arc<AtomicU64>,
    /// The latency probe: `notify` fires when `delivered` reaches `target`.
    probe: Arc<Probe>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Clients {
    fn start(addr: SocketAddr, n: usize, stalled: usize) -> (Self, std::sync::mpsc::Receiver<()>) {
        let delivered = Arc::new(AtomicU64::new(0));
        let probe = Arc::new(Probe {
            target: AtomicU64::new(u64::MAX),
            notify: tokio::sync::Notify::new(),
        });
        let tell = probe.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let count = delivered.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("client runtime");
            rt.block_on(async move {
                let mut held = Vec::new();
                let every = n.checked_div(stalled).unwrap_or(usize::MAX);
                for i in 0..n {
                    let is_stalled = stalled > 0 && i % every == 0 && i / every < stalled;
                    let ws = connect(addr, is_stalled.then_some(STALLED_RCVBUF)).await;
                    if is_stalled {
                        held.push(ws);
                    } else {
                        let count = count.clone();
                        let tell = tell.clone();
                        tokio::spawn(async move {
                            let mut ws = ws;
                            while let Some(Ok(m)) = ws.next().await {
                                if matches!(m, Message::Text(_)) {
                                    let now = count.fetch_add(1, Ordering::AcqRel) + 1;
                                    if now >= tell.target.load(Ordering::Acquire) {
                                        tell.notify.notify_one();
                                    }
                                }
                            }
                        });
                    }
                }
                let _ = ready_tx.send(());
                let _ = stopped.await;
                drop(held);
            });
        });
        (
            Clients {
                delivered,
                probe,
                stop: Some(stop),
                thread: Some(thread),
            },
            ready,
        )
    }
}

/// Median and 99th percentile of the time from a broadcast call until the first client
/// has the frame, and until every client has it.
#[derive(Clone, Copy, Debug, Default)]
struct Latency {
    first: (Duration, Duration),
    all: (Duration, Duration),
}

/// Wakes the broadcaster when the clients have received `target` frames in all.
struct Probe {
    target: AtomicU64,
    notify: tokio::sync::Notify,
}

impl Clients {
    /// Waits (woken by the clients, not polling) until they have received `want`.
    async fn reach(&self, want: u64) {
        self.probe.target.store(want, Ordering::Release);
        while self.delivered.load(Ordering::Acquire) < want {
            let notified = self.probe.notify.notified();
            if self.delivered.load(Ordering::Acquire) >= want {
                break;
            }
            tokio::time::timeout(Duration::from_secs(30), notified)
                .await
                .expect("healthy clients stopped receiving");
        }
    }

    /// Broadcasts one frame at a time with `send`, `rounds` times, each time timing the
    /// wait until the first and until all `healthy` clients have it.
    async fn latency(&self, healthy: usize, rounds: usize, send: impl Fn()) -> Latency {
        let (mut first, mut all) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            let before = self.delivered.load(Ordering::Acquire);
            let t = Instant::now();
            send();
            self.reach(before + 1).await;
            first.push(t.elapsed());
            self.reach(before + healthy as u64).await;
            all.push(t.elapsed());
        }
        self.probe.target.store(u64::MAX, Ordering::Release);
        let quantiles = |mut waits: Vec<Duration>| {
            waits.sort();
            let at = |q: f64| waits[((waits.len() - 1) as f64 * q).round() as usize];
            (at(0.5), at(0.99))
        };
        Latency {
            first: quantiles(first),
            all: quantiles(all),
        }
    }
}

impl Drop for Clients {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn connect(
    addr: SocketAddr,
    rcvbuf: Option<usize>,
) -> WebSocketStream<TokioAdapter<tokio::net::TcpStream>> {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    if let Some(n) = rcvbuf {
        socket.set_recv_buffer_size(n as u32).expect("SO_RCVBUF");
    }
    let stream = socket.connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let (ws, _) =
        async_tungstenite::client_async(format!("ws://{addr}/"), TokioAdapter::new(stream))
            .await
            .expect("upgrade");
    ws
}

fn listener() -> std::net::TcpListener {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.set_nonblocking(true).expect("nonblocking");
    l
}

/// One row: a server of `kind`, `s.clients` clients of which `stalled` never read.
fn run(kind: Server, s: Settings, stalled: usize) -> Row {
    let std_listener = listener();
    let addr = std_listener.local_addr().expect("addr");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("server runtime");
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(std_listener).expect("listener");
        let (clients, ready) = Clients::start(addr, s.clients, stalled);
        let healthy = s.clients - stalled;
        let mut raw: Vec<Option<WebSocketStream<TokioAdapter<tokio::net::TcpStream>>>> = Vec::new();
        let hub = Hub::new(HubConfig::default()).expect("hub config");
        let config = guard_config();
        for _ in 0..s.clients {
            let (stream, _) = listener.accept().await.expect("accept");
            socket2::SockRef::from(&stream)
                .set_send_buffer_size(SERVER_SNDBUF as usize)
                .expect("SO_SNDBUF");
            match kind {
                Server::Tether => {
                    let conn = tether_tokio::server::accept(stream, config.clone())
                        .await
                        .expect("tether accept");
                    hub.join(conn).expect("join");
                }
                Server::Raw => {
                    stream.set_nodelay(true).expect("nodelay");
                    let ws = async_tungstenite::accept_async(TokioAdapter::new(stream))
                        .await
                        .expect("raw accept");
                    raw.push(Some(ws));
                }
            }
        }
        // Every client is connected (and the stalled ones hold their sockets).
        tokio::task::spawn_blocking(move || ready.recv())
            .await
            .expect("join")
            .expect("clients ready");

        let mut departures = hub.departures();
        let core_frame = DataFrame::Text(CoreUtf8::from_static(FRAME));
        let raw_frame = Utf8Bytes::from_static(FRAME);
        let start = Instant::now();
        let mut calls: Vec<Duration> = Vec::with_capacity(s.broadcasts);
        let mut sent = 0usize;
        let mut dropped = 0usize;
        while sent < s.broadcasts && start.elapsed() < s.budget {
            for _ in 0..s.burst {
                let t = Instant::now();
                match kind {
                    Server::Tether => {
                        let r = hub.broadcast(core_frame.clone());
                        dropped += r.evicted;
                    }
                    Server::Raw => {
                        for slot in raw.iter_mut() {
                            let Some(ws) = slot else { continue };
                            let send = ws.send(Message::Text(raw_frame.clone()));
                            match tokio::time::timeout(DEADLINE, send).await {
                                Ok(Ok(())) => {}
                                _ => {
                                    *slot = None;
                                    dropped += 1;
                                }
                            }
                        }
                    }
                }
                calls.push(t.elapsed());
                sent += 1;
            }
            // Closed loop: wait until every healthy client has everything sent so far.
            let want = (sent * healthy) as u64;
            let waited = Instant::now();
            while clients.delivered.load(Ordering::Relaxed) < want {
                assert!(
                    waited.elapsed() < Duration::from_secs(30),
                    "healthy clients stopped receiving"
                );
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        }
        let elapsed = start.elapsed();
        let delivered = clients.delivered.load(Ordering::Relaxed);
        let latency = if kind == Server::Tether && stalled == 0 {
            Some(
                clients
                    .latency(healthy, LATENCY_ROUNDS, || {
                        hub.broadcast(core_frame.clone());
                    })
                    .await,
            )
        } else {
            None
        };
        if kind == Server::Tether {
            while let Some(Some(d)) = departures.next().now_or_never() {
                if d.reason.is_eviction() && d.reason != LeaveReason::Overflow {
                    dropped += 1;
                }
            }
        }
        drop(clients);
        calls.sort();
        Row {
            latency,
            deliveries_per_s: delivered as f64 / elapsed.as_secs_f64(),
            worst_call: calls.last().copied().unwrap_or_default(),
            median_call: calls.get(calls.len() / 2).copied().unwrap_or_default(),
            broadcasts: sent,
            healthy,
            dropped,
            elapsed,
        }
    })
}

/// Single broadcasts timed by the latency probe.
const LATENCY_ROUNDS: usize = 200;
/// The topic of the backplane rows.
const TOPIC: &str = "bench";
/// Names the peer process's Redis (and makes this binary the peer).
const PEER_VAR: &str = "TETHER_BENCH_PEER_REDIS";

/// The guard of every tether connection of the bench.
fn guard_config() -> GuardConfig {
    let mut config = GuardConfig::default();
    config.server.send_deadline = DEADLINE;
    config.server.slow_write_warning = DEADLINE / 5;
    config.server.max_pending_writes = 1024;
    config
}

/// A `redis-server` on a free loopback port, killed on drop.
struct Redis {
    child: std::process::Child,
    url: String,
}

impl Redis {
    /// Starts one, or says why not.
    fn start() -> Result<Redis, String> {
        if std::env::var("TETHER_SKIP_REDIS").is_ok_and(|v| v == "1") {
            return Err("TETHER_SKIP_REDIS=1".into());
        }
        let bin = match std::env::var("TETHER_REDIS_SERVER") {
            Ok(bin) => bin,
            Err(_) => {
                let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/redis-setup.sh");
                let out = std::process::Command::new("bash")
                    .arg(script)
                    .stderr(std::process::Stdio::inherit())
                    .output()
                    .map_err(|e| format!("cannot run {script}: {e}"))?;
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .find_map(|l| l.strip_prefix("TETHER_REDIS_SERVER="))
                    .map(str::to_owned)
                    .ok_or_else(|| format!("{script} failed ({})", out.status))?
            }
        };
        let port = listener().local_addr().map_err(|e| e.to_string())?.port();
        let child = std::process::Command::new(&bin)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--loglevel", "warning"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {bin}: {e}"))?;
        let redis = Redis {
            child,
            url: format!("redis://127.0.0.1:{port}"),
        };
        // Bounded readiness polling: a connection is accepted once it listens.
        for _ in 0..500 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(redis);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!("{bin} never listened on port {port}"))
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for `side` to report up on `events`.
async fn wait_up(
    events: &mut (impl futures::Stream<Item = tether_tokio::server::BackplaneEvent> + Unpin),
    mut publisher: bool,
    mut subscriber: bool,
) {
    use tether_tokio::server::{BackplaneEvent, Side};
    while !(publisher && subscriber) {
        let event = tokio::time::timeout(Duration::from_secs(30), events.next())
            .await
            .expect("the backplane came up in time")
            .expect("the backplane runs");
        if let BackplaneEvent::Up { side } = event {
            match side {
                Side::Publisher => publisher = true,
                Side::Subscriber => subscriber = true,
                _ => {}
            }
        }
    }
}

/// The peer process: a hub with a backplane that puts every accepted connection in
/// topic `bench`. Prints `PORT <port>` once its backplane is up; exits when stdin closes.
fn peer(url: &str) {
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(0);
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("peer runtime");
    rt.block_on(async move {
        let hub = Hub::new(HubConfig::default()).expect("hub config");
        let backplane =
            tether_tokio::server::backplane(&hub, url, Default::default()).expect("backplane");
        let mut events = backplane.events();
        wait_up(&mut events, true, false).await;
        let listener = tokio::net::TcpListener::from_std(listener()).expect("listener");
        println!("PORT {}", listener.local_addr().expect("addr").port());
        loop {
            let (stream, _) = listener.accept().await.expect("accept");
            socket2::SockRef::from(&stream)
                .set_send_buffer_size(SERVER_SNDBUF as usize)
                .expect("SO_SNDBUF");
            let conn = tether_tokio::server::accept(stream, guard_config())
                .await
                .expect("tether accept");
            let id = hub.join(conn).expect("join");
            hub.join_topic(id, TOPIC).expect("topic");
        }
    });
}

/// The backplane row: clients of a peer process, frames from this one through Redis.
fn run_backplane(s: Settings, redis: &Redis) -> Row {
    use std::io::BufRead;
    let exe = std::env::current_exe().expect("own path");
    let mut child = std::process::Command::new(exe)
        .env(PEER_VAR, &redis.url)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the peer process");
    let stdout = child.stdout.take().expect("piped");
    let port: u16 = std::io::BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("PORT ").and_then(|p| p.parse().ok()))
        .expect("the peer's port");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("server runtime");
    let row = rt.block_on(async move {
        let hub = Hub::new(HubConfig::default()).expect("hub config");
        let backplane = tether_tokio::server::backplane(&hub, &redis.url, Default::default())
            .expect("backplane");
        let mut events = backplane.events();
        wait_up(&mut events, false, false).await;
        let (clients, ready) = Clients::start(addr, s.clients, 0);
        tokio::task::spawn_blocking(move || ready.recv())
            .await
            .expect("join")
            .expect("clients ready");
        let frame = DataFrame::Text(CoreUtf8::from_static(FRAME));
        let start = Instant::now();
        let mut calls: Vec<Duration> = Vec::with_capacity(s.broadcasts);
        let mut sent = 0usize;
        while sent < s.broadcasts && start.elapsed() < s.budget {
            for _ in 0..s.burst {
                let t = Instant::now();
                hub.broadcast_to(TOPIC, frame.clone());
                calls.push(t.elapsed());
                sent += 1;
            }
            let want = (sent * s.clients) as u64;
            let waited = Instant::now();
            while clients.delivered.load(Ordering::Relaxed) < want {
                assert!(
                    waited.elapsed() < Duration::from_secs(30),
                    "clients stopped receiving through the backplane: {:?}",
                    backplane.stats()
                );
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        }
        let elapsed = start.elapsed();
        let delivered = clients.delivered.load(Ordering::Relaxed);
        let latency = clients
            .latency(s.clients, LATENCY_ROUNDS, || {
                hub.broadcast_to(TOPIC, frame.clone());
            })
            .await;
        let stats = backplane.stats();
        assert_eq!(
            (stats.queue_full, stats.dropped_down),
            (0, 0),
            "nothing lost on the way"
        );
        drop(clients);
        calls.sort();
        Row {
            latency: Some(latency),
            deliveries_per_s: delivered as f64 / elapsed.as_secs_f64(),
            worst_call: calls.last().copied().unwrap_or_default(),
            median_call: calls.get(calls.len() / 2).copied().unwrap_or_default(),
            broadcasts: sent,
            healthy: s.clients,
            dropped: 0,
            elapsed,
        }
    });
    drop(child.stdin.take());
    let _ = child.kill();
    let _ = child.wait();
    row
}

fn main() {
    if let Ok(url) = std::env::var(PEER_VAR) {
        peer(&url);
        return;
    }
    let mut s = Settings {
        clients: var("TETHER_BENCH_CLIENTS", 1000),
        burst: var("TETHER_BENCH_BURST", 32).max(1),
        broadcasts: var("TETHER_BENCH_BROADCASTS", 3000),
        budget: Duration::from_millis(var("TETHER_BENCH_RUN_MS", 6000) as u64),
    };
    if let Some(limit) = nofile_limit() {
        // Two sockets per client in this process, plus room for everything else.
        let fit = limit.saturating_sub(64) / 2;
        if fit < s.clients {
            println!(
                "open-file limit {limit} holds {fit} clients, not {}: running with {fit} \
                 (raise it with `ulimit -n 4096`)",
                s.clients
            );
            s.clients = fit;
        }
    }
    let stalled = (s.clients / 100).max(1);
    println!(
        "hub broadcast: {} clients, 100-byte text frames, bursts of {}, up to {} broadcasts \
         or {:?} per row, send deadline {DEADLINE:?}",
        s.clients, s.burst, s.broadcasts, s.budget
    );
    println!(
        "{:<8} {:>8} {:>9} {:>14} {:>13} {:>13} {:>8} {:>8}",
        "server",
        "stalled",
        "healthy",
        "deliveries/s",
        "median call",
        "worst call",
        "dropped",
        "frames"
    );
    let mut rows = Vec::new();
    for stalled in [0, stalled] {
        for kind in [Server::Raw, Server::Tether] {
            let row = run(kind, s, stalled);
            println!(
                "{:<8} {:>8} {:>9} {:>14.0} {:>13} {:>13} {:>8} {:>8}",
                format!("{kind:?}").to_lowercase(),
                stalled,
                row.healthy,
                row.deliveries_per_s,
                format!("{:.3} ms", row.median_call.as_secs_f64() * 1e3),
                format!("{:.3} ms", row.worst_call.as_secs_f64() * 1e3),
                row.dropped,
                row.broadcasts,
            );
            let _ = row.elapsed;
            rows.push((kind, stalled, row));
        }
    }
    println!();
    for stalled in [0, stalled] {
        let get = |k| {
            rows.iter()
                .find(|(kind, st, _)| *kind == k && *st == stalled)
                .map(|(_, _, r)| *r)
                .unwrap_or_default()
        };
        let (raw, tether) = (get(Server::Raw), get(Server::Tether));
        println!(
            "stalled {stalled:>3}: deliveries/s tether ÷ raw = {:.2}; worst call tether ÷ raw = {:.4}",
            tether.deliveries_per_s / raw.deliveries_per_s.max(1.0),
            tether.worst_call.as_secs_f64() / raw.worst_call.as_secs_f64().max(1e-9),
        );
    }

    println!();
    let local = rows
        .iter()
        .find(|(kind, st, _)| *kind == Server::Tether && *st == 0)
        .map(|(_, _, r)| *r)
        .unwrap_or_default();
    let ms = |d: Duration| format!("{:.3} ms", d.as_secs_f64() * 1e3);
    let show = |name: &str, row: &Row| {
        let l = row.latency.unwrap_or_default();
        println!(
            "{:<8} {:>8} {:>13.0} {:>12} {:>11} {:>11} {:>11} {:>11} {:>11}",
            name,
            row.healthy,
            row.deliveries_per_s,
            ms(row.median_call),
            ms(row.worst_call),
            ms(l.first.0),
            ms(l.first.1),
            ms(l.all.0),
            ms(l.all.1),
        );
    };
    match Redis::start() {
        Err(why) => println!("backplane rows skipped: {why}"),
        Ok(redis) => {
            println!(
                "topic broadcast, local and across two processes through Redis; latency: \
                 {LATENCY_ROUNDS} single broadcasts, from the call until the first and until \
                 every client has the frame"
            );
            println!(
                "{:<8} {:>8} {:>13} {:>12} {:>11} {:>11} {:>11} {:>11} {:>11}",
                "path",
                "clients",
                "deliveries/s",
                "median call",
                "worst call",
                "first p50",
                "first p99",
                "all p50",
                "all p99"
            );
            show("local", &local);
            let via = run_backplane(s, &redis);
            show("redis", &via);
            // The hop itself, without a fan-out to 1,000 sockets around it: one client.
            let one = Settings {
                clients: 1,
                broadcasts: 32 * 20,
                ..s
            };
            let local_one = run(Server::Tether, one, 0);
            show("local", &local_one);
            let via_one = run_backplane(one, &redis);
            show("redis", &via_one);
            let (l, r) = (
                local_one.latency.unwrap_or_default(),
                via_one.latency.unwrap_or_default(),
            );
            let diff = |a: Duration, b: Duration| {
                format!("{:+.3} ms", (a.as_secs_f64() - b.as_secs_f64()) * 1e3)
            };
            println!(
                "the hop through Redis adds {} (p50), {} (p99) to a frame's way to a client; \
                 deliveries/s to 1,000 clients redis ÷ local = {:.2}",
                diff(r.first.0, l.first.0),
                diff(r.first.1, l.first.1),
                via.deliveries_per_s / local.deliveries_per_s.max(1.0)
            );
        }
    }
}
