//! Inbound throughput of an open session, per profile.
//!
//! ```text
//! cargo bench -p tether-core --bench inbound
//! cargo bench -p tether-core --bench inbound -- raw      # only profiles whose name contains "raw"
//! cargo bench -p tether-core --bench inbound -- =hello_ack   # that profile alone
//! ```
//!
//! For each profile the bench opens a session by playing both the adapter and the peer,
//! then feeds text frames one at a time — `handle_input(FrameReceived)` followed by
//! draining `poll_output()` to `None`, exactly what an adapter does per frame — while
//! `now` advances by a few microseconds per frame. The real clock is read only around a
//! whole batch. It prints the median throughput over several batches and the number of
//! heap allocations per message over every measured batch (after a warm-up), counted by
//! the global allocator below.
//!
//! The `hello_ack` and `gateway-*` rows measure the session alone: it reads each frame's
//! envelope and hands the payload over undecoded. `hello_ack-typed` adds what an
//! application decoding every message into its own struct pays (`JsonPayload::decode`),
//! and `hello_ack-value` what one reading every message as a `serde_json::Value` pays
//! (`JsonPayload::value`, what every message cost the session before typed payloads).
//!
//! Environment: `TETHER_BENCH_BATCHES` (default 7), `TETHER_BENCH_BATCH_MS` (default 250,
//! the target length of one batch).

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value;
use tether_core::profiles::{Gateway, GatewayOptions, GatewayRequest, HelloAck, Raw};
use tether_core::{
    Config, ConnId, Event, FrameId, InFrame, Input, OutFrame, Output, Protocol, Session, Status,
};

// ---- counting allocator ------------------------------------------------------------------

/// Counts allocations (`alloc`, `alloc_zeroed` and `realloc`), then defers to [`System`].
struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

/// Counts one allocation. A relaxed load and store, not a `fetch_add`: a locked
/// read-modify-write costs ~20 cycles per allocation, which the JSON profiles (6 to 23
/// allocations per message) would otherwise pay on top of the allocator itself. Exact
/// here because every allocation this bench measures happens on the main thread.
#[inline]
fn count() {
    ALLOCS.store(ALLOCS.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

// SAFETY: every method forwards its arguments unchanged to `System`, which upholds the
// `GlobalAlloc` contract; the only addition is a relaxed atomic load and store, which
// neither allocate nor unwind.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's guarantees for `layout` are passed through unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: `ptr` was allocated by this allocator, i.e. by `System`, with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by this allocator, i.e. by `System`, with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.load(Ordering::Relaxed)
}

// ---- driver ------------------------------------------------------------------------------

/// Simulated time between two inbound frames.
const STEP: Duration = Duration::from_micros(2);
/// Messages fed before anything is measured.
const WARMUP: u64 = 20_000;

/// An open session and what the adapter keeps about it.
struct Driver<P: Protocol> {
    session: Session<P>,
    conn: ConnId,
    now: Instant,
    /// Frames the session asked to write, reported written after each drain (a ping every
    /// 30 s of simulated time, or a handshake frame).
    written: Vec<FrameId>,
    /// Text frames written, kept only while `record` is on (during handshakes, to read a
    /// request id); steady state writes none.
    sent_text: Vec<String>,
    record: bool,
    /// Outputs seen, by kind.
    seen: Seen,
    /// What the application does with each message (nothing, by default).
    consume: fn(&P::Inbound),
    /// The application's answer to each message, sent back through the session (none, by
    /// default): the `raw-echo` profile's send, its frame written and reported written.
    echo: Option<Echo<P>>,
}

/// An application's answer to a message: it sends something back through the session.
type Echo<P> = fn(&mut Session<P>, <P as Protocol>::Inbound, Instant);

#[derive(Clone, Copy, Debug, Default)]
struct Seen {
    messages: u64,
    stream: u64,
    unsolicited: u64,
    frames: u64,
    other: u64,
}

impl Seen {
    fn delivered(&self) -> u64 {
        self.messages + self.stream + self.unsolicited
    }
}

impl<P: Protocol> Driver<P> {
    /// Starts `session` and reports its transport open.
    fn start(mut session: Session<P>, t0: Instant) -> Self {
        session.connect(t0).expect("a new session connects");
        let mut conn = None;
        while let Some(out) = session.poll_output() {
            if let Output::OpenTransport { conn: c, .. } = out {
                conn = Some(c);
            }
        }
        let conn = conn.expect("connect asks for a transport");
        let mut d = Driver {
            session,
            conn,
            now: t0,
            written: Vec::with_capacity(16),
            sent_text: Vec::new(),
            record: true,
            seen: Seen::default(),
            consume: |m| {
                black_box(m);
            },
            echo: None,
        };
        d.input(Input::TransportOpened { conn });
        d
    }

    /// Feeds one input at the next instant and drains the outputs.
    #[inline]
    fn input(&mut self, input: Input) {
        self.now += STEP;
        self.session.handle_input(input, self.now);
        self.drain();
    }

    /// Feeds one inbound text frame.
    #[inline]
    fn text(&mut self, payload: Bytes) {
        let conn = self.conn;
        self.input(Input::FrameReceived {
            conn,
            frame: InFrame::Text(payload),
        });
    }

    /// Drains `poll_output` to `None`, reporting every frame the session wrote as written.
    #[inline]
    fn drain(&mut self) {
        loop {
            while let Some(out) = self.session.poll_output() {
                match out {
                    Output::Event(Event::Message(m)) => {
                        self.seen.messages += 1;
                        (self.consume)(&m);
                        match self.echo {
                            Some(echo) => echo(&mut self.session, m, self.now),
                            None => {
                                black_box(m);
                            }
                        }
                    }
                    Output::Event(Event::Stream(e)) => {
                        self.seen.stream += 1;
                        black_box(e);
                    }
                    Output::Event(Event::Unsolicited(m)) => {
                        self.seen.unsolicited += 1;
                        black_box(m);
                    }
                    Output::SendFrame { frame, payload, .. } => {
                        self.seen.frames += 1;
                        self.written.push(frame);
                        if self.record
                            && let OutFrame::Text(t) = &payload
                        {
                            self.sent_text.push(t.as_str().to_owned());
                        }
                        black_box(payload);
                    }
                    other => {
                        self.seen.other += 1;
                        black_box(other);
                    }
                }
            }
            if self.written.is_empty() {
                return;
            }
            let conn = self.conn;
            for i in 0..self.written.len() {
                let frame = self.written[i];
                self.now += STEP;
                self.session
                    .handle_input(Input::WriteCompleted { conn, frame }, self.now);
            }
            self.written.clear();
        }
    }

    /// Feeds one inbound text frame from a string (handshakes).
    fn text_str(&mut self, json: &str) {
        self.text(Bytes::copy_from_slice(json.as_bytes()));
    }

    /// The `id` of the last JSON text frame written.
    fn last_sent_id(&self) -> String {
        let last = self.sent_text.last().expect("a text frame was written");
        let v: Value = serde_json::from_str(last).expect("the session writes JSON");
        match &v["id"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }

    /// Handshake over: stop recording written frames.
    fn steady(mut self) -> Self {
        assert_eq!(
            self.session.status(),
            Status::Open,
            "the handshake completed"
        );
        self.record = false;
        self.sent_text = Vec::new();
        self
    }
}

// ---- payloads ----------------------------------------------------------------------------

/// Where a profile's inbound frames come from.
enum Source {
    /// These static payloads, cycled (no copy, no allocation: `Bytes::from_static`).
    Static(&'static [&'static [u8]]),
    /// Built per message before each batch (outside the measured window) from a running
    /// counter, for payloads that must differ (stream sequence numbers).
    Generated(Box<dyn FnMut(u64) -> Bytes>),
}

/// One batch worth of payloads.
enum Batch {
    Static {
        list: &'static [&'static [u8]],
        next: usize,
        left: u64,
    },
    Built(std::vec::IntoIter<Bytes>),
}

impl Iterator for Batch {
    type Item = Bytes;

    #[inline]
    fn next(&mut self) -> Option<Bytes> {
        match self {
            Batch::Static { list, next, left } => {
                if *left == 0 {
                    return None;
                }
                *left -= 1;
                let b = Bytes::from_static(list[*next]);
                *next += 1;
                if *next == list.len() {
                    *next = 0;
                }
                Some(b)
            }
            Batch::Built(it) => it.next(),
        }
    }
}

impl Source {
    /// The mean payload length, in bytes.
    fn mean_len(&mut self) -> usize {
        match self {
            Source::Static(list) => list.iter().map(|p| p.len()).sum::<usize>() / list.len(),
            Source::Generated(f) => f(0).len(),
        }
    }

    /// Prepares `n` payloads starting at message number `first`.
    fn batch(&mut self, first: u64, n: u64) -> Batch {
        match self {
            Source::Static(list) => Batch::Static {
                list,
                next: (first % list.len() as u64) as usize,
                left: n,
            },
            Source::Generated(f) => Batch::Built(
                (first..first + n)
                    .map(&mut *f)
                    .collect::<Vec<_>>()
                    .into_iter(),
            ),
        }
    }
}

// ---- measurement -------------------------------------------------------------------------

struct Settings {
    batches: usize,
    batch_time: Duration,
}

struct Figures {
    name: &'static str,
    bytes: usize,
    batch: u64,
    measured: u64,
    msgs_per_sec: f64,
    ns_per_msg: f64,
    ns_min: f64,
    ns_max: f64,
    allocs: u64,
}

impl Figures {
    fn allocs_per_msg(&self) -> f64 {
        self.allocs as f64 / self.measured as f64
    }
}

/// Feeds one batch; returns the elapsed wall time. Reads the clock twice.
#[inline(never)]
fn run_batch<P: Protocol>(d: &mut Driver<P>, batch: Batch) -> Duration {
    // The bench's own clock, read around the whole batch, never by the session.
    #[allow(clippy::disallowed_methods)]
    let start = Instant::now();
    for payload in batch {
        d.text(payload);
    }
    start.elapsed()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn measure<P: Protocol>(
    name: &'static str,
    mut d: Driver<P>,
    mut source: Source,
    settings: &Settings,
) -> Figures {
    assert_eq!(d.session.status(), Status::Open, "{name}: session is open");
    let mut next = 0u64;
    let bytes = source.mean_len();

    // Warm-up, also used to size the batches.
    let batch = source.batch(next, WARMUP);
    let warm = run_batch(&mut d, batch);
    next += WARMUP;
    let per_msg = warm.as_secs_f64() / WARMUP as f64;
    let size = ((settings.batch_time.as_secs_f64() / per_msg) as u64).clamp(10_000, 10_000_000);

    let before = d.seen;
    let stats_before = d.session.stats();
    let mut ns = Vec::with_capacity(settings.batches);
    let mut allocs_total = 0;
    for _ in 0..settings.batches {
        let batch = source.batch(next, size);
        let a0 = allocs();
        let elapsed = run_batch(&mut d, batch);
        allocs_total += allocs() - a0;
        next += size;
        ns.push(elapsed.as_nanos() as f64 / size as f64);
    }
    let measured = size * settings.batches as u64;

    // The loop measured what it claims to: every frame was delivered, none was refused.
    let stats = d.session.stats();
    assert_eq!(d.session.status(), Status::Open, "{name}: still open");
    assert_eq!(stats.violations, 0, "{name}: no violation");
    assert_eq!(
        stats.frames_received - stats_before.frames_received,
        measured,
        "{name}: every frame received"
    );
    assert_eq!(
        d.seen.delivered() - before.delivered(),
        measured,
        "{name}: one event per frame ({:?})",
        d.seen
    );

    let ns_min = ns.iter().copied().fold(f64::INFINITY, f64::min);
    let ns_max = ns.iter().copied().fold(0.0, f64::max);
    let ns_per_msg = median(&mut ns);
    Figures {
        name,
        bytes,
        batch: size,
        measured,
        msgs_per_sec: 1e9 / ns_per_msg,
        ns_per_msg,
        ns_min,
        ns_max,
        allocs: allocs_total,
    }
}

// ---- profiles ----------------------------------------------------------------------------

const RAW_TEXT: &[&[u8]] = &[
    b"The quick brown fox jumps over the lazy dog; sphinx of black quartz, judge my vow! 0123456789 ab",
    b"Pack my box with five dozen liquor jugs. How vexingly quick daft zebras jump! 9876543210 abcdef",
    b"Jackdaws love my big sphinx of quartz; the five boxing wizards jump quickly. -- 0123456789 abcde",
    b"Waltz, bad nymph, for quick jigs vex. Glib jocks quiz nymph to vex dwarf. 0123456789 abcdefghij",
];

fn raw(t0: Instant) -> (Driver<Raw>, Source) {
    let session = Session::new(Config::default(), Raw, 1).expect("default config is valid");
    (
        Driver::start(session, t0).steady(),
        Source::Static(RAW_TEXT),
    )
}

/// `raw`, with every message sent back: what an echoing application costs the session per
/// message, in and out (the send, its frame, its `WriteCompleted`).
fn raw_echo(t0: Instant) -> (Driver<Raw>, Source) {
    let (mut d, src) = raw(t0);
    d.echo = Some(|session, m, now| {
        let _ = black_box(session.send(m, now));
    });
    (d, src)
}

const HELLO_ACK_MSGS: &[&[u8]] = &[
    br#"{"type":"msg","n":1,"body":"The quick brown fox jumps over the lazy dog, twice."}"#,
    br#"{"type":"msg","n":2,"body":"Pack my box with five dozen liquor jugs, said Ann."}"#,
    br#"{"type":"msg","n":3,"body":"How vexingly quick daft zebras jump over the moon!"}"#,
    br#"{"type":"msg","n":4,"body":"Sphinx of black quartz, judge my vow; judge it now."}"#,
];

fn hello_ack(t0: Instant) -> (Driver<HelloAck>, Source) {
    let protocol = HelloAck::new(|| serde_json::json!({ "type": "hello", "client": "bench" }));
    let session = Session::new(Config::default(), protocol, 1).expect("default config is valid");
    let mut d = Driver::start(session, t0);
    assert!(d.sent_text[0].contains("hello"), "the hello was sent");
    d.text_str(r#"{"type":"hello_ack"}"#);
    (d.steady(), Source::Static(HELLO_ACK_MSGS))
}

/// What a `HelloAck` bench message is to an application that decodes it: text borrowed
/// from the frame, no allocation.
#[derive(serde::Deserialize)]
struct Msg<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    n: u32,
    body: &'a str,
}

/// `hello_ack`, the application decoding every message into its own [`Msg`].
fn hello_ack_typed(t0: Instant) -> (Driver<HelloAck>, Source) {
    let (mut d, src) = hello_ack(t0);
    d.consume = |p| {
        let m: Msg<'_> = p.decode().expect("a bench message");
        black_box((m.kind, m.n, m.body));
    };
    (d, src)
}

/// `hello_ack`, the application reading every message as a `serde_json::Value` (what
/// every message cost before typed payloads).
fn hello_ack_value(t0: Instant) -> (Driver<HelloAck>, Source) {
    let (mut d, src) = hello_ack(t0);
    d.consume = |p| {
        black_box(p.value().expect("JSON"));
    };
    (d, src)
}

/// An open gateway session: challenge, `connect` (its id read from the frame), hello-ok.
///
/// The stream text budget is lifted: the chat row's one run grows by 13 bytes per delta,
/// and the default 1 MiB would end it (`TextTooLong`) after about 80,000 deltas, well
/// within one measurement.
fn gateway_open(t0: Instant) -> Driver<Gateway> {
    let mut config = Config::default();
    config.streams.max_text = usize::MAX;
    let session = Session::new(config, Gateway::new(GatewayOptions::default()), 1)
        .expect("the config is valid");
    let mut d = Driver::start(session, t0);
    d.text_str(r#"{"type":"event","event":"connect.challenge","payload":{"nonce":"n","ts":1}}"#);
    let id = d.last_sent_id();
    d.text_str(&format!(
        r#"{{"type":"res","id":"{id}","ok":true,"payload":{{"type":"hello-ok","policy":{{"tickIntervalMs":30000}}}}}}"#
    ));
    d
}

const PRESENCE: &[&[u8]] = &[
    br#"{"type":"event","event":"presence","payload":{"presence":[{"host":"a1","mode":"cli","ts":1}]},"seq":1}"#,
    br#"{"type":"event","event":"presence","payload":{"presence":[{"host":"b2","mode":"ui","ts":2}]},"seq":2}"#,
    br#"{"type":"event","event":"presence","payload":{"presence":[{"host":"c3","mode":"cli","ts":3}]},"seq":3}"#,
    br#"{"type":"event","event":"presence","payload":{"presence":[{"host":"d4","mode":"ui","ts":4}]},"seq":4}"#,
];

fn gateway_presence(t0: Instant) -> (Driver<Gateway>, Source) {
    (gateway_open(t0).steady(), Source::Static(PRESENCE))
}

/// A gateway session with one `chat.send` run open: every frame is the next `delta` of
/// that run (`deltaText`, numbered by `payload.seq`, so de-duplication is exercised).
fn gateway_chat(t0: Instant) -> (Driver<Gateway>, Source) {
    let mut d = gateway_open(t0);
    d.now += STEP;
    let request = GatewayRequest::chat_send_with_key("agent:main:main", "hi", "run-1");
    d.session
        .request(request, None, d.now)
        .expect("an open session takes a request");
    d.drain();
    let id = d.last_sent_id();
    d.text_str(&format!(
        r#"{{"type":"res","id":"{id}","ok":true,"payload":{{"runId":"run-1","status":"started"}}}}"#
    ));
    assert_eq!(d.session.open_streams(), 1, "the run is a stream");
    let source = Source::Generated(Box::new(|n| {
        Bytes::from(format!(
            r#"{{"type":"event","event":"chat","payload":{{"runId":"run-1","sessionKey":"agent:main:main","seq":{},"state":"delta","deltaText":"token {:06} "}}}}"#,
            n + 1,
            n % 1_000_000
        ))
    }));
    (d.steady(), source)
}

// ---- main --------------------------------------------------------------------------------

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    const COMMAND: &str = "cargo bench -p tether-core --bench inbound";
    // `cargo bench` passes `--bench`; any other free argument filters profiles by name.
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    // `=name` asks for that profile alone; any other filter for every name containing it.
    let wanted = |name: &str| {
        filters.is_empty()
            || filters.iter().any(|f| match f.strip_prefix('=') {
                Some(exact) => name == exact,
                None => name.contains(f.as_str()),
            })
    };
    let settings = Settings {
        batches: env_or("TETHER_BENCH_BATCHES", 7usize).max(1),
        batch_time: Duration::from_millis(env_or("TETHER_BENCH_BATCH_MS", 250u64)),
    };

    println!("tether-core inbound throughput");
    println!("reproduce: {COMMAND}");
    println!(
        "{} batches of ~{} ms per profile after {WARMUP} warm-up messages; now += {:?} per frame\n",
        settings.batches,
        settings.batch_time.as_millis(),
        STEP
    );

    // The driver's clock origin; the session only ever sees `t0` plus offsets.
    #[allow(clippy::disallowed_methods)]
    let t0 = Instant::now();
    let mut results = Vec::new();
    if wanted("raw") {
        let (d, src) = raw(t0);
        results.push(measure("raw", d, src, &settings));
    }
    if wanted("raw-echo") {
        let (d, src) = raw_echo(t0);
        results.push(measure("raw-echo", d, src, &settings));
    }
    if wanted("hello_ack") {
        let (d, src) = hello_ack(t0);
        results.push(measure("hello_ack", d, src, &settings));
    }
    if wanted("hello_ack-typed") {
        let (d, src) = hello_ack_typed(t0);
        results.push(measure("hello_ack-typed", d, src, &settings));
    }
    if wanted("hello_ack-value") {
        let (d, src) = hello_ack_value(t0);
        results.push(measure("hello_ack-value", d, src, &settings));
    }
    if wanted("gateway-presence") {
        let (d, src) = gateway_presence(t0);
        results.push(measure("gateway-presence", d, src, &settings));
    }
    if wanted("gateway-chat") {
        let (d, src) = gateway_chat(t0);
        results.push(measure("gateway-chat", d, src, &settings));
    }

    println!(
        "{:<16} {:>6} {:>10} {:>14} {:>9} {:>17} {:>11}",
        "profile", "bytes", "batch", "msgs/s", "ns/msg", "ns/msg min..max", "allocs/msg"
    );
    for f in &results {
        println!(
            "{:<16} {:>6} {:>10} {:>14.0} {:>9.1} {:>8.1}..{:<8.1} {:>11.3}",
            f.name,
            f.bytes,
            f.batch,
            f.msgs_per_sec,
            f.ns_per_msg,
            f.ns_min,
            f.ns_max,
            f.allocs_per_msg()
        );
    }
    println!();
    for f in &results {
        println!(
            "{}: {} allocations over {} measured messages",
            f.name, f.allocs, f.measured
        );
    }
    if let Some(f) = results.iter().find(|f| f.name == "raw") {
        let ok = f.msgs_per_sec >= 5_000_000.0 && f.allocs == 0;
        println!(
            "raw target (>= 5,000,000 msgs/s, 0 allocs/msg): {}",
            if ok { "met" } else { "MISSED" }
        );
    }
    println!("\nreproduce: {COMMAND}");
}
