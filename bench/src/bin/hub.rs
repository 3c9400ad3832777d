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
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Clients {
    fn start(addr: SocketAddr, n: usize, stalled: usize) -> (Self, std::sync::mpsc::Receiver<()>) {
        let delivered = Arc::new(AtomicU64::new(0));
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
                        tokio::spawn(async move {
                            let mut ws = ws;
                            while let Some(Ok(m)) = ws.next().await {
                                if matches!(m, Message::Text(_)) {
                                    count.fetch_add(1, Ordering::Relaxed);
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
                stop: Some(stop),
                thread: Some(thread),
            },
            ready,
        )
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
        let mut config = GuardConfig::default();
        config.server.send_deadline = DEADLINE;
        config.server.slow_write_warning = DEADLINE / 5;
        config.server.max_pending_writes = 1024;
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
        if kind == Server::Tether {
            while let Some(Some(d)) = departures.next().now_or_never() {
                if d.reason.is_eviction() && d.reason != LeaveReason::Overflow {
                    dropped += 1;
                }
            }
        }
        let delivered = clients.delivered.load(Ordering::Relaxed);
        drop(clients);
        calls.sort();
        Row {
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

fn main() {
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
}
