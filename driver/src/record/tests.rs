//! The flight recorder through the session loop, on a manual clock: a trace writer that
//! stalls does not stall the session (pings, deadlines, messages); a full channel drops,
//! counts and says so in the trace; a writer that panics stops the recording, not the
//! session; a trace is complete, its `end` line last, once its session ended.
//!
//! Time moves only when a test says so. The writer is a real thread, so the tests wait
//! for it on condition variables, each wait bounded by [`GUARD`] of real time: a guard
//! against a hang, never a wait for a timer.

use std::io::{self, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::ThreadId;

use futures::channel::mpsc::unbounded;
use futures::{FutureExt, StreamExt};
use tether_core::profiles::Raw;
use tether_core::{Config, ConnId, DataFrame, Event, InFrame, OutFrame, Status, TransportFailure};

use super::*;
use crate::Client;
use crate::manual_rt::Manual;
use crate::transport::{Incoming, Link, Outgoing, Transport};

/// The longest a test waits for the writer thread (real time).
const GUARD: Duration = Duration::from_secs(10);

/// How often the sessions ping, and the slack they give a peer.
const PING: Duration = Duration::from_secs(1);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain data; a panicking test leaves nothing to repair.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

// ---- a peer that answers pings -----------------------------------------------------------

use crate::test_peer::PeerTx;

/// Every connection's inbound side, for the test to speak as the peer; every ping the
/// session writes is counted and answered with a pong.
#[derive(Clone, Default)]
struct Peer {
    links: Arc<Mutex<Vec<PeerTx>>>,
    pings: Arc<AtomicUsize>,
}

#[async_trait::async_trait]
impl Transport for Peer {
    async fn connect(&self, _conn: ConnId) -> Result<Link, TransportFailure> {
        let (tx, rx) = unbounded();
        lock(&self.links).push(tx.clone());
        let pings = self.pings.clone();
        let sink = futures::sink::unfold((), move |(), out: Outgoing| {
            if let Outgoing::Frame(OutFrame::Ping(payload)) = out {
                pings.fetch_add(1, Ordering::Relaxed);
                let _ = tx.unbounded_send(Ok(Incoming::Frame(InFrame::Pong(payload))));
            }
            async { Ok::<_, io::Error>(()) }
        });
        Ok(crate::test_peer::link(sink, rx))
    }
}

impl Peer {
    fn say(&self, text: &str) {
        crate::test_peer::say(&self.links, text);
    }

    fn pings(&self) -> usize {
        self.pings.load(Ordering::Relaxed)
    }
}

// ---- a trace writer the test controls ----------------------------------------------------

#[derive(Default)]
struct GateState {
    /// The thread of the first write.
    entered: Option<ThreadId>,
    released: bool,
    /// Panic on the first write instead of blocking.
    panics: bool,
    written: Vec<u8>,
    /// The writer was dropped: its thread is past the last of the user's code.
    dropped: bool,
}

#[derive(Default)]
struct GateInner {
    state: Mutex<GateState>,
    changed: Condvar,
}

/// The test's side of a trace writer whose writes block until [`release`](Self::release).
#[derive(Clone, Default)]
struct Gate(Arc<GateInner>);

/// The recorder's side.
struct GateWriter(Arc<GateInner>);

impl Gate {
    fn writer(&self) -> GateWriter {
        GateWriter(self.0.clone())
    }

    fn panicking() -> Self {
        let gate = Gate::default();
        lock(&gate.0.state).panics = true;
        gate
    }

    /// Waits until `done` holds of the state (bounded by [`GUARD`]).
    fn wait_for(&self, what: &str, done: impl Fn(&GateState) -> bool) -> MutexGuard<'_, GateState> {
        let (s, timeout) = self
            .0
            .changed
            .wait_timeout_while(lock(&self.0.state), GUARD, |s| !done(s))
            .unwrap_or_else(PoisonError::into_inner);
        assert!(!timeout.timed_out(), "{what} within {GUARD:?}");
        s
    }

    /// The thread that made the first write, once it made it.
    fn entered(&self) -> ThreadId {
        self.wait_for("a first write", |s| s.entered.is_some())
            .entered
            .expect("waited for")
    }

    fn release(&self) {
        lock(&self.0.state).released = true;
        self.0.changed.notify_all();
    }

    fn trace(&self) -> String {
        String::from_utf8(lock(&self.0.state).written.clone()).expect("a UTF-8 trace")
    }

    fn dropped(&self) -> bool {
        lock(&self.0.state).dropped
    }
}

impl Write for GateWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut s = lock(&self.0.state);
        if s.entered.is_none() {
            s.entered = Some(std::thread::current().id());
            self.0.changed.notify_all();
            if s.panics {
                drop(s);
                panic!("a trace writer that panics");
            }
        }
        // Bounded: a write made on the session's own thread would block the test here,
        // and fails instead once the guard is over.
        let (mut s, timeout) = self
            .0
            .changed
            .wait_timeout_while(s, GUARD, |s| !s.released)
            .unwrap_or_else(PoisonError::into_inner);
        if timeout.timed_out() {
            return Err(io::Error::other("the gate was never released"));
        }
        s.written.extend_from_slice(buf);
        self.0.changed.notify_all();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for GateWriter {
    fn drop(&mut self) {
        lock(&self.0.state).dropped = true;
        self.0.changed.notify_all();
    }
}

// ---- driving a session ------------------------------------------------------------------

fn config() -> Config {
    Config::builder()
        .ping_interval(Some(PING))
        .stale_after(3 * PING)
        .build()
        .expect("a valid configuration")
}

fn start(rt: &Manual, peer: &Peer, recorder: Recorder) -> Client<Raw> {
    let options = Options::new().record(recorder);
    let client = Client::start_with(rt.clone(), peer.clone(), config(), Raw, 7, "rec", options)
        .expect("a valid session");
    rt.run();
    assert_eq!(client.status(), Status::Open);
    client
}

/// A second of the session: the peer says `n` messages, the clock moves a second.
/// Returns the messages delivered.
fn second(
    rt: &Manual,
    peer: &Peer,
    events: &mut (impl futures::Stream<Item = Event<Raw>> + Unpin),
    n: usize,
) -> usize {
    let text = "x".repeat(100);
    for _ in 0..n {
        peer.say(&text);
    }
    rt.run();
    rt.advance(PING);
    rt.run();
    let mut got = 0;
    while let Some(Some(e)) = events.next().now_or_never() {
        if matches!(e, Event::Message(DataFrame::Text(_))) {
            got += 1;
        }
    }
    got
}

/// Closes the session and drops it; its loop has ended when this returns.
fn end(rt: &Manual, client: Client<Raw>) {
    let mut closed = Box::pin(client.close());
    // Bounded: the close handshake takes a few rounds with a peer that never answers
    // the close, then the close timeout (advanced past) ends it.
    for _ in 0..8 {
        if closed.as_mut().now_or_never().is_some() {
            break;
        }
        rt.run();
        rt.advance(Duration::from_secs(10));
    }
    drop(closed);
    drop(client);
    rt.run();
    assert_eq!(rt.tasks(), 0, "the session loop ended");
}

fn lines(trace: &str) -> Vec<serde_json::Value> {
    trace
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn kind(v: &serde_json::Value) -> &str {
    v["k"].as_str().unwrap_or_default()
}

// ---- the tests ---------------------------------------------------------------------------

/// Issue 16, item 5: a trace writer that blocks from its first write (a stalled disk)
/// does not stop the session: it keeps pinging on time, hears the pongs, stays open and
/// delivers every message, while its writer thread waits.
#[test]
fn a_stalled_trace_writer_does_not_stall_the_session() {
    let rt = Manual::new();
    let peer = Peer::default();
    let gate = Gate::default();
    let client = start(&rt, &peer, Recorder::to_writer(gate.writer()));
    // The header's write blocks: on the recorder's thread, not this one (which runs the
    // session's loop).
    assert_ne!(gate.entered(), std::thread::current().id());
    let mut events = Box::pin(client.events());
    let mut delivered = 0;
    for s in 1..=10 {
        delivered += second(&rt, &peer, &mut events, 100);
        assert!(
            peer.pings() >= s,
            "a ping each second: {} after {s} s",
            peer.pings()
        );
        assert_eq!(client.status(), Status::Open, "after {s} s");
    }
    assert_eq!(delivered, 1_000);
    assert!(
        gate.trace().is_empty(),
        "nothing written while the writer is stalled"
    );
    gate.release();
    end(&rt, client);
}

/// Issue 16, item 5: with the writer stalled, the channel fills; later records are dropped
/// and counted, and once the writer catches up the trace says where and how many, with
/// the `end` line still last.
#[test]
fn a_full_channel_drops_counts_and_the_trace_says_so() {
    let rt = Manual::new();
    let peer = Peer::default();
    let gate = Gate::default();
    let recorder = Recorder::to_writer(gate.writer()).channel_bytes(16 << 10);
    let progress = recorder.progress();
    let client = start(&rt, &peer, recorder);
    let _ = gate.entered();
    let mut events = Box::pin(client.events());
    let mut delivered = 0;
    for _ in 0..3 {
        delivered += second(&rt, &peer, &mut events, 100);
    }
    assert_eq!(delivered, 300);
    let lost = progress.lost();
    assert!(lost > 0, "16 KiB cannot hold 300 frames' records");
    gate.release();
    // The writer takes the backlog at once, and writes it out when idle.
    drop(gate.wait_for("the backlog written", |s| {
        s.written.iter().filter(|b| **b == b'\n').count() > 1
    }));
    // Room again: records of the fourth second go in, after a `lost` line.
    delivered += second(&rt, &peer, &mut events, 10);
    assert_eq!(delivered, 310);
    end(&rt, client);
    assert!(progress.wait(GUARD), "the trace is finished");
    assert!(!progress.failed());
    assert_eq!(
        progress.lost(),
        lost,
        "nothing lost once the writer caught up"
    );

    let trace = lines(&gate.trace());
    assert_eq!(kind(&trace[0]), "header");
    assert_eq!(trace[0]["version"], FORMAT_VERSION);
    assert_eq!(kind(trace.last().expect("lines")), "end");
    let gaps: Vec<usize> = (0..trace.len())
        .filter(|i| kind(&trace[*i]) == "lost")
        .collect();
    assert_eq!(gaps.len(), 1, "one run of drops, one line");
    let said: u64 = gaps
        .iter()
        .map(|i| trace[*i]["dropped"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(said, lost, "the trace counts what was dropped");
    // Records of the fourth second follow it: the messages received after the release.
    let after = trace[gaps[0]..]
        .iter()
        .filter(|l| l["in"]["frame"]["f"]["k"] == "text")
        .count();
    assert_eq!(after, 10);
}

/// Issue 16, item 5: a session recorded by a writer that keeps up leaves a whole trace:
/// the header, every frame received, no `lost` line, the `end` line last, and the writer
/// (and so its thread's work) done once the session is.
#[test]
fn a_trace_is_complete_when_its_session_ends() {
    let rt = Manual::new();
    let peer = Peer::default();
    let gate = Gate::default();
    gate.release();
    let recorder = Recorder::to_writer(gate.writer());
    let progress = recorder.progress();
    let client = start(&rt, &peer, recorder);
    let mut events = Box::pin(client.events());
    let mut delivered = 0;
    for _ in 0..3 {
        delivered += second(&rt, &peer, &mut events, 100);
    }
    assert_eq!(delivered, 300);
    assert!(!progress.is_done(), "not before the session ends");
    end(&rt, client);
    assert!(progress.wait(GUARD), "the trace is finished");
    assert!(progress.is_done());
    assert!(gate.dropped(), "the writer thread let go of the writer");
    assert_eq!((progress.lost(), progress.failed()), (0, false));
    let trace = lines(&gate.trace());
    assert_eq!(kind(&trace[0]), "header");
    assert_eq!(kind(trace.last().expect("lines")), "end");
    assert_eq!(trace.iter().filter(|l| kind(l) == "lost").count(), 0);
    let messages = trace
        .iter()
        .filter(|l| l["in"]["frame"]["f"]["k"] == "text")
        .count();
    assert_eq!(messages, 300, "every message received is recorded");
}

/// Issue 16, item 5: a trace writer that panics stops the recording (reported as failed)
/// and nothing else: the session goes on delivering messages.
#[test]
fn a_panicking_trace_writer_stops_the_recording_not_the_session() {
    let rt = Manual::new();
    let peer = Peer::default();
    let gate = Gate::panicking();
    let recorder = Recorder::to_writer(gate.writer());
    let progress = recorder.progress();
    let client = start(&rt, &peer, recorder);
    let _ = gate.entered();
    assert!(progress.wait(GUARD), "the recording stopped");
    assert!(progress.failed());
    drop(gate.wait_for("the writer dropped", |s| s.dropped));
    let mut events = Box::pin(client.events());
    let mut delivered = 0;
    for _ in 0..3 {
        delivered += second(&rt, &peer, &mut events, 100);
    }
    assert_eq!(delivered, 300);
    assert_eq!(client.status(), Status::Open);
    end(&rt, client);
}
