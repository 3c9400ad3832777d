//! Memory per idle session: N idle tether client sessions, and N idle guarded server
//! connections, each next to raw async-tungstenite holding the same N idle connections.
//!
//! ```sh
//! cargo run --release -p tether-bench --bin memory
//! ```
//!
//! Every row runs in a fresh process (this binary re-executed with `TETHER_MEM_ROLE=row`),
//! so that no row inherits the allocator's free lists or the runtime's grown slabs of the
//! one before. The side under test is in that process; its peers (a raw echo server for
//! the client rows, N raw clients for the server rows) are in another one (this binary
//! again, `TETHER_MEM_ROLE=peer-server` or `peer-clients`), so each process holds about
//! N sockets and both fit under the open-file limit. Everything runs on 127.0.0.1. The
//! harness of every process is a current-thread tokio runtime; the tokio rows' connections
//! run on it, the smol rows' on smol's global executor (as `tether-smol` spawns them).
//!
//! A row first opens `WARMUP` (100) connections, so that one-time costs (runtime
//! drivers, lazily built statics, the first slab pages) are paid before the baseline; then
//! it reads the baseline, opens N more connections (64 at a time), waits until every one
//! of them is open, lets them settle for `SETTLE` (2 s) and reads again. Per connection:
//!
//! - **heap**: the growth of the bytes live in the heap, from a counting global allocator
//!   wrapped around `System`, divided by N. It counts capacity asked for, touched or not.
//! - **RSS**: the growth of `VmRSS` (`/proc/self/status`) divided by N: the pages
//!   actually resident, heap and stacks alike. A large allocation that is never written
//!   (glibc serves ≥ 128 KiB with `mmap`) counts fully in heap and barely in RSS. Kernel
//!   socket buffers are not in RSS at all, so RSS approximates user-space memory only.
//!
//! With `TETHER_MEM_CLASSES=1` each row also prints the heap growth per connection by
//! allocation size class (powers of two) and, from 128 B up, by exact size, which shows
//! where the bytes go; `TETHER_MEM_TRACE=<size>` prints a backtrace of the first three
//! (`TETHER_MEM_TRACE_COUNT`) allocations of exactly that size after the baseline (who
//! allocates a block).
//!
//! Environment: `TETHER_MEM_N` (10,000 connections, lowered to fit the open-file limit),
//! `TETHER_MEM_ONLY` (a row-key prefix: `client`, `client-raw`, `client-tether`,
//! `client-tether-helloack`, `client-smol`, `server`, `server-raw`, `server-tether`,
//! `server-smol`). Every wait is bounded; a row that cannot open its
//! connections in time exits non-zero, and so does the bench.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::Message;
use futures::StreamExt;
use tether_tokio::server::GuardConfig;
use tether_tokio::tether_core::profiles::HelloAck;

/// Connections opened before the baseline is read.
const WARMUP: usize = 100;
/// Connections being opened at once (well below the listener's backlog).
const PARALLEL: usize = 64;
/// Time the idle connections get between the last open and the second reading.
const SETTLE: Duration = Duration::from_secs(2);
/// Bound on opening all connections of a row.
const OPEN_BOUND: Duration = Duration::from_secs(180);
/// Bound on a whole row process.
const ROW_BOUND: Duration = Duration::from_secs(300);
/// Bound on a peer's reply (its address, or "opened k").
const PEER_BOUND: Duration = Duration::from_secs(180);

// ---------------------------------------------------------------------------------------
// The counting allocator
// ---------------------------------------------------------------------------------------

/// Counts the bytes and blocks live in the heap, in total and per size class (the
/// power of two at or above the size), then defers to [`System`].
struct Counting;

const CLASSES: usize = 48;
static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);
static CLASS_BYTES: [AtomicI64; CLASSES] = [const { AtomicI64::new(0) }; CLASSES];
static CLASS_BLOCKS: [AtomicI64; CLASSES] = [const { AtomicI64::new(0) }; CLASSES];

fn class(size: usize) -> usize {
    (size.max(1).next_power_of_two().trailing_zeros() as usize).min(CLASSES - 1)
}

/// Live blocks by exact size, for sizes of at least `SIZED_FROM` bytes: an open-addressed
/// table (key 0 = free) that never allocates.
const SIZED: usize = 1024;
const SIZED_FROM: usize = 128;
static SIZE_KEYS: [AtomicUsize; SIZED] = [const { AtomicUsize::new(0) }; SIZED];
static SIZE_BLOCKS: [AtomicI64; SIZED] = [const { AtomicI64::new(0) }; SIZED];

fn track_sized(size: usize, sign: i64) {
    let mut i = size.wrapping_mul(0x9E37_79B9) % SIZED;
    for _ in 0..SIZED {
        match SIZE_KEYS[i].compare_exchange(0, size, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => {}
            Err(k) if k == size => {}
            Err(_) => {
                i = (i + 1) % SIZED;
                continue;
            }
        }
        SIZE_BLOCKS[i].fetch_add(sign, Ordering::Relaxed);
        return;
    }
}

/// `TETHER_MEM_TRACE=<size>`: after the baseline, the first few allocations of exactly
/// that size print a backtrace (a debugging aid for finding who holds a block).
static TRACE_SIZE: AtomicUsize = AtomicUsize::new(0);
static TRACED: AtomicUsize = AtomicUsize::new(0);
static TRACE_COUNT: AtomicUsize = AtomicUsize::new(3);

thread_local! {
    // Const-initialised, no destructor: reading it never allocates, so the allocator may.
    static TRACING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn trace(size: usize) {
    if size != TRACE_SIZE.load(Ordering::Relaxed) || TRACING.try_with(|t| t.get()) != Ok(false) {
        return;
    }
    if TRACED.fetch_add(1, Ordering::Relaxed) >= TRACE_COUNT.load(Ordering::Relaxed) {
        return;
    }
    TRACING.with(|t| t.set(true));
    eprintln!(
        "allocation of {size} B:\n{}",
        std::backtrace::Backtrace::force_capture()
    );
    TRACING.with(|t| t.set(false));
}

fn track(size: usize, sign: i64) {
    if sign > 0 {
        trace(size);
    }
    if size >= SIZED_FROM {
        track_sized(size, sign);
    }
    let bytes = sign * size as i64;
    LIVE_BYTES.fetch_add(bytes, Ordering::Relaxed);
    let c = class(size);
    CLASS_BYTES[c].fetch_add(bytes, Ordering::Relaxed);
    CLASS_BLOCKS[c].fetch_add(sign, Ordering::Relaxed);
}

// SAFETY: every method forwards its arguments unchanged to `System`, which upholds the
// `GlobalAlloc` contract; the only addition is relaxed atomic arithmetic, which neither
// allocates nor unwinds.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's guarantees for `layout` are passed through unchanged.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            track(layout.size(), 1);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            track(layout.size(), 1);
        }
        p
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` was allocated by this allocator, i.e. by `System`, with `layout`.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            track(layout.size(), -1);
            track(new_size, 1);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        track(layout.size(), -1);
        // SAFETY: `ptr` was allocated by this allocator, i.e. by `System`, with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// One reading of the process's memory.
struct Reading {
    heap: i64,
    rss: i64,
    classes: [(i64, i64); CLASSES],
    sized: [(usize, i64); SIZED],
}

impl Reading {
    fn now() -> Self {
        let mut classes = [(0, 0); CLASSES];
        for (c, slot) in classes.iter_mut().enumerate() {
            *slot = (
                CLASS_BYTES[c].load(Ordering::Relaxed),
                CLASS_BLOCKS[c].load(Ordering::Relaxed),
            );
        }
        let mut sized = [(0, 0); SIZED];
        for (i, slot) in sized.iter_mut().enumerate() {
            *slot = (
                SIZE_KEYS[i].load(Ordering::Relaxed),
                SIZE_BLOCKS[i].load(Ordering::Relaxed),
            );
        }
        Reading {
            sized,
            heap: LIVE_BYTES.load(Ordering::Relaxed),
            rss: rss_bytes(),
            classes,
        }
    }
}

/// `VmRSS` of this process, in bytes.
fn rss_bytes() -> i64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let kib: i64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status");
    kib * 1024
}

// ---------------------------------------------------------------------------------------
// Limits, peers and bounded waits
// ---------------------------------------------------------------------------------------

/// Raises the soft open-file limit to the hard one; returns the soft limit in force.
fn raise_nofile() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    if lim.current != lim.maximum {
        lim.current = lim.maximum;
        let _ = setrlimit(Resource::Nofile, lim);
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// A peer process, killed when dropped (and exiting by itself when its stdin closes,
/// so that it does not outlive this process even on an abort).
struct Peer {
    child: Child,
    stdin: ChildStdin,
    lines: Lines,
}

type Lines = tokio::sync::mpsc::UnboundedReceiver<String>;

impl Peer {
    fn spawn(role: &str, args: &[String]) -> Peer {
        let exe = std::env::current_exe().expect("current executable");
        let mut child = Command::new(exe)
            .env("TETHER_MEM_ROLE", role)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn peer process");
        let stdin = child.stdin.take().expect("peer stdin is piped");
        let stdout = child.stdout.take().expect("peer stdout is piped");
        Peer {
            child,
            stdin,
            lines: lines_of(stdout),
        }
    }

    /// The peer's next line, within `PEER_BOUND`; exits the process if none comes.
    async fn line(&mut self) -> String {
        match tokio::time::timeout(PEER_BOUND, self.lines.recv()).await {
            Ok(Some(line)) => line,
            Ok(None) => fail("peer exited"),
            Err(_) => fail(&format!("peer said nothing within {PEER_BOUND:?}")),
        }
    }

    fn say(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").expect("write to peer");
        self.stdin.flush().expect("flush to peer");
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Forwards the lines of `out` to a channel from a thread, so reads can be bounded.
fn lines_of(out: ChildStdout) -> Lines {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Prints `why` and exits non-zero. Destructors do not run, but every peer exits on its
/// own when its stdin (held by this process) closes.
fn fail(why: &str) -> ! {
    eprintln!("memory bench: {why}");
    std::process::exit(2)
}

/// In a peer: exits when the parent closes stdin (or dies), and hands on the commands
/// it sends.
fn commands_from_parent() -> Lines {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
        std::process::exit(0)
    });
    rx
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

// ---------------------------------------------------------------------------------------
// Peers
// ---------------------------------------------------------------------------------------

/// The peer of the client rows: a raw async-tungstenite server that answers hellos with
/// `hello_ack`, echoes data frames, and otherwise just reads (so pings get their pongs).
fn peer_server() {
    raise_nofile();
    let _commands = commands_from_parent();
    runtime().block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1");
        println!("{}", listener.local_addr().expect("local address"));
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let Ok(mut ws) = async_tungstenite::tokio::accept_async(tcp).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    let reply = match msg {
                        Message::Text(t) if t.as_str().contains(r#""hello""#) => {
                            Message::text(r#"{"type":"hello_ack"}"#)
                        }
                        Message::Text(_) | Message::Binary(_) => msg,
                        _ => continue,
                    };
                    if ws.send(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
}

/// The peer of the server rows: on each `open k` from the parent, opens k raw
/// async-tungstenite clients to the address in its first argument (each read by its own
/// task, so pings get their pongs), then says `opened k`.
fn peer_clients() {
    raise_nofile();
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .expect("peer-clients: address argument");
    let mut commands = commands_from_parent();
    runtime().block_on(async move {
        loop {
            let line = commands
                .recv()
                .await
                .unwrap_or_else(|| std::process::exit(0));
            let Some(k) = line.strip_prefix("open ").and_then(|k| k.parse().ok()) else {
                continue;
            };
            let opened = open_all(k, || async move {
                let tcp = tokio::net::TcpStream::connect(addr)
                    .await
                    .map_err(|e| e.to_string())?;
                let url = format!("ws://{addr}/");
                let (mut ws, _) = async_tungstenite::tokio::client_async(url, tcp)
                    .await
                    .map_err(|e| e.to_string())?;
                tokio::spawn(async move { while let Some(Ok(_)) = ws.next().await {} });
                Ok(())
            })
            .await;
            println!("opened {}", opened.len());
        }
    });
}

/// Runs `open` `k` times, `PARALLEL` at a time, and returns what they gave; exits the
/// process if they do not all succeed within `OPEN_BOUND`.
async fn open_all<T, F, Fut>(k: usize, open: F) -> Vec<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let all = futures::stream::iter(0..k)
        .map(|_| open())
        .buffer_unordered(PARALLEL)
        .collect::<Vec<_>>();
    let Ok(all) = tokio::time::timeout(OPEN_BOUND, all).await else {
        fail(&format!(
            "{k} connections did not open within {OPEN_BOUND:?}"
        ));
    };
    let mut opened = Vec::with_capacity(k);
    let mut first_error = None;
    for one in all {
        match one {
            Ok(t) => opened.push(t),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_error {
        fail(&format!(
            "only {} of {k} connections opened; the first error: {e}",
            opened.len()
        ));
    }
    opened
}

// ---------------------------------------------------------------------------------------
// Rows
// ---------------------------------------------------------------------------------------

const ROWS: &[(&str, &str)] = &[
    (
        "client-raw",
        "client, raw async-tungstenite (a read task each)",
    ),
    ("client-tether", "client, tether `Raw` (default config)"),
    (
        "client-tether-helloack",
        "client, tether `HelloAck` (default config)",
    ),
    (
        "client-smol-raw",
        "client on smol, raw async-tungstenite (a read task each)",
    ),
    (
        "client-smol-tether",
        "client on smol, tether `Raw` (default config)",
    ),
    (
        "server-raw",
        "server, raw async-tungstenite `accept_async` (a read task each)",
    ),
    (
        "server-tether",
        "server, tether `server::accept` (`GuardConfig::default()`)",
    ),
    (
        "server-smol-raw",
        "server on smol, raw async-tungstenite `accept_async` (a read task each)",
    ),
    (
        "server-smol-tether",
        "server on smol, tether `server::accept` (`GuardConfig::default()`)",
    ),
];

/// What a row process reports on its last line.
struct RowResult {
    heap: f64,
    rss: f64,
}

/// Runs one row in this process and prints `RESULT <heap> <rss>` (bytes per connection).
fn row(key: &str, n: usize) {
    let rt = runtime();
    let (before, after) = rt.block_on(async {
        if let Some(kind) = key.strip_prefix("client-") {
            client_row(kind, n).await
        } else {
            server_row(key.strip_prefix("server-").unwrap_or(key), n).await
        }
    });
    let per = |a: i64, b: i64| (a - b) as f64 / n as f64;
    if std::env::var_os("TETHER_MEM_CLASSES").is_some() {
        eprintln!("  {key}: heap growth per connection by size class");
        for c in 0..CLASSES {
            let bytes = per(after.classes[c].0, before.classes[c].0);
            let blocks = per(after.classes[c].1, before.classes[c].1);
            if blocks.abs() >= 0.01 {
                eprintln!(
                    "    ≤ {:>8} B: {blocks:>6.2} blocks, {bytes:>9.1} B",
                    1u64 << c
                );
            }
        }
        eprintln!("  {key}: blocks of {SIZED_FROM} B or more per connection, by exact size");
        let mut sized: Vec<(usize, f64)> = after
            .sized
            .iter()
            .filter(|(size, _)| *size != 0)
            .map(|&(size, blocks)| {
                let was = before
                    .sized
                    .iter()
                    .find(|(s, _)| *s == size)
                    .map_or(0, |&(_, b)| b);
                (size, per(blocks, was))
            })
            .filter(|(_, blocks)| blocks.abs() >= 0.01)
            .collect();
        sized.sort_unstable_by_key(|&(size, _)| size);
        for (size, blocks) in sized {
            eprintln!("    {size:>8} B: {blocks:>6.2} blocks");
        }
    }
    println!(
        "RESULT {} {}",
        per(after.heap, before.heap),
        per(after.rss, before.rss)
    );
    // Skip tearing down 2N connections: the peer is killed when its handle drops (in
    // the row functions) and the process exits here.
    std::process::exit(0);
}

/// Arms `TETHER_MEM_TRACE` (after the baseline, so warm-up allocations are not traced).
fn arm_trace() {
    if let Some(size) = std::env::var("TETHER_MEM_TRACE")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        TRACE_SIZE.store(size, Ordering::Relaxed);
    }
    if let Some(count) = std::env::var("TETHER_MEM_TRACE_COUNT")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        TRACE_COUNT.store(count, Ordering::Relaxed);
    }
}

async fn client_row(kind: &str, n: usize) -> (Reading, Reading) {
    let mut peer = Peer::spawn("peer-server", &[]);
    let addr: SocketAddr = peer.line().await.parse().expect("peer address");
    let url = format!("ws://{addr}/");
    let open = |count: usize| {
        let url = url.clone();
        async move {
            match kind {
                "raw" => {
                    open_all(count, || async {
                        let tcp = tokio::net::TcpStream::connect(addr)
                            .await
                            .map_err(|e| e.to_string())?;
                        let (mut ws, _) = async_tungstenite::tokio::client_async(&url, tcp)
                            .await
                            .map_err(|e| e.to_string())?;
                        tokio::spawn(async move { while let Some(Ok(_)) = ws.next().await {} });
                        Ok(Box::new(()) as Box<dyn std::any::Any>)
                    })
                    .await
                }
                "tether" => {
                    open_all(count, || async {
                        let client = tether_tokio::builder(&url)
                            .connect()
                            .await
                            .map_err(|e| e.to_string())?;
                        Ok(Box::new(client) as Box<dyn std::any::Any>)
                    })
                    .await
                }
                "smol-raw" => {
                    open_all(count, || async {
                        let tcp = smol::net::TcpStream::connect(addr)
                            .await
                            .map_err(|e| e.to_string())?;
                        let (mut ws, _) = async_tungstenite::client_async(&url, tcp)
                            .await
                            .map_err(|e| e.to_string())?;
                        smol::spawn(async move { while let Some(Ok(_)) = ws.next().await {} })
                            .detach();
                        Ok(Box::new(()) as Box<dyn std::any::Any>)
                    })
                    .await
                }
                "smol-tether" => {
                    open_all(count, || async {
                        let client = tether_smol::builder(&url)
                            .connect()
                            .await
                            .map_err(|e| e.to_string())?;
                        Ok(Box::new(client) as Box<dyn std::any::Any>)
                    })
                    .await
                }
                "tether-helloack" => {
                    open_all(count, || async {
                        let client = tether_tokio::builder(&url)
                            .protocol(HelloAck::new(|| serde_json::json!({"type": "hello"})))
                            .connect()
                            .await
                            .map_err(|e| e.to_string())?;
                        Ok(Box::new(client) as Box<dyn std::any::Any>)
                    })
                    .await
                }
                other => fail(&format!("unknown client row {other}")),
            }
        }
    };
    let warm = open(WARMUP).await;
    tokio::time::sleep(SETTLE).await;
    let before = Reading::now();
    arm_trace();
    let held = open(n).await;
    tokio::time::sleep(SETTLE).await;
    let after = Reading::now();
    drop(peer);
    std::mem::forget((warm, held));
    (before, after)
}

async fn server_row(kind: &str, n: usize) -> (Reading, Reading) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    listener
        .set_nonblocking(true)
        .expect("non-blocking listener");
    let addr = listener.local_addr().expect("local address");
    let accepted = Arc::new(AtomicUsize::new(0));
    let held: Arc<Mutex<Vec<tether_tokio::server::Guarded>>> = Arc::default();
    let (tether, smol) = match kind {
        "raw" => (false, false),
        "tether" => (true, false),
        "smol-raw" => (false, true),
        "smol-tether" => (true, true),
        other => fail(&format!("unknown server row {other}")),
    };
    if smol {
        let listener = smol::net::TcpListener::try_from(listener).expect("smol listener");
        let accepted = accepted.clone();
        let held = held.clone();
        smol::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let accepted = accepted.clone();
                let held = held.clone();
                smol::spawn(async move {
                    if tether {
                        match tether_smol::server::accept(tcp, GuardConfig::default()).await {
                            Ok(conn) => {
                                held.lock().expect("held lock").push(conn);
                                accepted.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => fail(&format!("tether accept: {e}")),
                        }
                    } else {
                        match async_tungstenite::accept_async(tcp).await {
                            Ok(mut ws) => {
                                accepted.fetch_add(1, Ordering::Relaxed);
                                while let Some(Ok(_)) = ws.next().await {}
                            }
                            Err(e) => fail(&format!("raw accept: {e}")),
                        }
                    }
                })
                .detach();
            }
        })
        .detach();
    } else {
        let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
        let accepted = accepted.clone();
        let held = held.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let accepted = accepted.clone();
                let held = held.clone();
                tokio::spawn(async move {
                    if tether {
                        match tether_tokio::server::accept(tcp, GuardConfig::default()).await {
                            Ok(conn) => {
                                held.lock().expect("held lock").push(conn);
                                accepted.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => fail(&format!("tether accept: {e}")),
                        }
                    } else {
                        match async_tungstenite::tokio::accept_async(tcp).await {
                            Ok(mut ws) => {
                                accepted.fetch_add(1, Ordering::Relaxed);
                                while let Some(Ok(_)) = ws.next().await {}
                            }
                            Err(e) => fail(&format!("raw accept: {e}")),
                        }
                    }
                });
            }
        });
    }
    let mut peer = Peer::spawn("peer-clients", &[addr.to_string()]);
    let mut open = async |count: usize, total: usize| {
        peer.say(&format!("open {count}"));
        let line = peer.line().await;
        if line != format!("opened {count}") {
            fail(&format!("peer clients: {line}"));
        }
        let start = Instant::now();
        while accepted.load(Ordering::Relaxed) < total {
            if start.elapsed() > OPEN_BOUND {
                fail(&format!(
                    "{} of {total} connections accepted within {OPEN_BOUND:?}",
                    accepted.load(Ordering::Relaxed)
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    open(WARMUP, WARMUP).await;
    tokio::time::sleep(SETTLE).await;
    let before = Reading::now();
    arm_trace();
    open(n, WARMUP + n).await;
    tokio::time::sleep(SETTLE).await;
    let after = Reading::now();
    drop(peer);
    (before, after)
}

// ---------------------------------------------------------------------------------------
// The orchestrator
// ---------------------------------------------------------------------------------------

/// Runs one row in a fresh process, within `ROW_BOUND`.
fn run_row(key: &str, n: usize) -> RowResult {
    let exe = std::env::current_exe().expect("current executable");
    let mut child = Command::new(exe)
        .env("TETHER_MEM_ROLE", "row")
        .env("TETHER_MEM_ROW", key)
        .env("TETHER_MEM_N", n.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn row process");
    let mut lines = lines_of(child.stdout.take().expect("row stdout is piped"));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for row") {
            break status;
        }
        if start.elapsed() > ROW_BOUND {
            let _ = child.kill();
            let _ = child.wait();
            fail(&format!("row {key} did not finish within {ROW_BOUND:?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    if !status.success() {
        fail(&format!("row {key} failed: {status}"));
    }
    // The reader thread may still be handing on the last line after the exit.
    std::thread::sleep(Duration::from_millis(100));
    std::iter::from_fn(|| lines.try_recv().ok())
        .find_map(|l| {
            let mut f = l.strip_prefix("RESULT ")?.split(' ');
            Some(RowResult {
                heap: f.next()?.parse().ok()?,
                rss: f.next()?.parse().ok()?,
            })
        })
        .unwrap_or_else(|| fail(&format!("row {key} reported nothing")))
}

fn main() -> ExitCode {
    let n_asked: usize = std::env::var("TETHER_MEM_N")
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(10_000);
    match std::env::var("TETHER_MEM_ROLE").as_deref() {
        Ok("peer-server") => {
            peer_server();
            return ExitCode::SUCCESS;
        }
        Ok("peer-clients") => {
            peer_clients();
            return ExitCode::SUCCESS;
        }
        Ok("row") => {
            raise_nofile();
            let key = std::env::var("TETHER_MEM_ROW").expect("TETHER_MEM_ROW");
            row(&key, n_asked);
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    // A connection holds one descriptor, its socket (the reset handle holds none), so
    // each row process holds its N connections, the warm-up ones, and a few dozen others.
    let limit = raise_nofile();
    let fit = (limit as usize).saturating_sub(64).saturating_sub(WARMUP);
    let n = n_asked.min(fit);
    if n < n_asked {
        println!("note: open-file limit {limit}: N lowered from {n_asked} to {n}");
    }
    let only = std::env::var("TETHER_MEM_ONLY").unwrap_or_default();
    println!(
        "memory per idle connection: N = {n} (after {WARMUP} warm-up), {SETTLE:?} settle, \
         current-thread tokio, peers in another process, open-file limit {limit}"
    );
    println!();
    println!("| row | heap per connection | RSS per connection |");
    println!("|---|---:|---:|");
    for (key, label) in ROWS {
        if !key.starts_with(only.as_str()) {
            continue;
        }
        let r = run_row(key, n);
        println!(
            "| {label} | {:.0} B ({:.1} KiB) | {:.0} B ({:.1} KiB) |",
            r.heap,
            r.heap / 1024.0,
            r.rss,
            r.rss / 1024.0
        );
    }
    ExitCode::SUCCESS
}
