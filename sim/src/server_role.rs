//! The server role in the simulator: one [`ServerConn`] (an accepted connection) against a
//! simulated peer — a browser tab, say — that answers pings, sends messages, stops
//! reading, vanishes, closes or drops, while the server's application writes to it and
//! its host may sleep.
//!
//! A run is recorded as a [`Timeline`] in the client session's vocabulary (an
//! [`Output::SendFrame`] is a write, an [`Event::Disconnected`] a lost connection, an
//! [`Event::Ended`] the end), so the very oracles that judge client runs judge the server
//! role: [`ORACLES`] lists the ones that apply, and [`check`] runs them together with
//! [`ends_once`], which only a server connection needs. The connection is recorded as
//! opened (an [`Event::Opened`]) at the start of the run, when it was accepted.
//!
//! The peer's actions are scripted ([`PeerScript`]); each is recorded as the closest
//! [`Fault`] (the ones the oracles read — [`Fault::ClockJump`] — mean exactly what they
//! mean for a client run; the others are for the reader):
//!
//! | action | recorded as | what the peer does |
//! |---|---|---|
//! | [`PeerAction::StopReading`] | `StopReading(d)` | reads nothing for `d`: the server's writes do not complete |
//! | [`PeerAction::Vanish`] | `HalfOpen(MAX)` | is gone without a word: writes complete (the kernel buffers them), nothing comes back |
//! | [`PeerAction::Close`] | `ServerClose(code, _)` | sends a close frame |
//! | [`PeerAction::Drop`] | `Drop` | the socket drops without a close frame |
//! | [`PeerAction::Garbage`] | `Garbage(kind)` | sends one bad frame |
//! | [`PeerAction::ClockJump`] | `ClockJump(d)` | (the server's host sleeps for `d`) |
//! | [`PeerAction::FailWrite`] | — | the server's next write fails |
//! | [`PeerAction::AppClose`] | a `Close` command | (the server's application closes with a code) |
//! | [`PeerAction::AppTerminate`] | a `Terminate` command | (the server's application terminates) |
//!
//! ```
//! use std::time::Duration;
//! use tether_core::server::{EndCause, ServerConfig};
//! use tether_core::DisconnectReason;
//! use tether_sim::server_role::{self, PeerAction, PeerScript};
//!
//! let script = PeerScript::new(vec![(Duration::from_secs(30), PeerAction::Vanish)]);
//! let run = server_role::run(ServerConfig::default(), script, 7, Duration::from_secs(600));
//! assert_eq!(run.end, Some(EndCause::Lost(DisconnectReason::Stale)));
//! assert!(server_role::check(&run.timeline).is_empty());
//! ```

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tether_core::profiles::Raw;
use tether_core::server::{
    EndCause, ServerConfig, ServerConn, ServerEvent, ServerOutput, ServerStats,
};
use tether_core::{
    CloseCode, Config, ConnId, DataFrame, EndReason, Event, FrameId, InFrame, Input, MessageId,
    OfflinePolicy, Output, Status, Utf8Bytes,
};

use crate::fault::{Fault, Garbage};
use crate::host::Host;
use crate::link::{self, Lane, Latency, Write};
use crate::link_model::{Arrival, Reader};
use crate::oracle::{self, Violation};
use crate::queue::Queue;
use crate::timeline::{CommandRecord, Entry, Final, Sizes, Timeline};
use crate::wire::Wire;

/// The shared oracles that apply to a server connection, in the order [`check`] runs
/// them, followed by [`ends_once`].
pub const ORACLES: &[&str] = &[
    "silent_peer_detected",
    "send_deadline_kept",
    "deadlines_move",
    "clean_after_close",
    "bounds_kept",
    ENDS_ONCE,
];

const ENDS_ONCE: &str = "ends_once";

/// More steps than this means no progress.
const MAX_STEPS: u64 = 5_000_000;

/// One thing the peer (or the server's host or application) does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerAction {
    /// The peer reads nothing for this long.
    StopReading(Duration),
    /// The peer is gone without a word, for good.
    Vanish,
    /// The peer sends a close frame with this code.
    Close(u16),
    /// The socket drops without a close frame.
    Drop,
    /// The peer sends one bad frame.
    Garbage(Garbage),
    /// The server's host sleeps for this long.
    ClockJump(Duration),
    /// The server's next write fails.
    FailWrite,
    /// The server's application closes with this code.
    AppClose(u16),
    /// The server's application terminates the connection.
    AppTerminate,
}

/// Peer actions at simulated times.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerScript {
    /// The entries, in time order.
    pub entries: Vec<(Duration, PeerAction)>,
}

impl PeerScript {
    /// A script from entries in any order (a stable sort keeps equal times in order).
    pub fn new(mut entries: Vec<(Duration, PeerAction)>) -> Self {
        entries.sort_by_key(|(t, _)| *t);
        PeerScript { entries }
    }

    /// Zero to four actions at random times within `duration`, from `seed`.
    pub fn random(seed: u64, duration: Duration) -> Self {
        let mut rng = fastrand::Rng::with_seed(seed);
        let n = rng.usize(0..5);
        let secs = duration.as_secs().max(1);
        let entries = (0..n)
            .map(|_| {
                let at = Duration::from_millis(rng.u64(0..secs * 1000));
                let d = Duration::from_millis(rng.u64(100..120_000));
                let action = match rng.u32(0..100) {
                    0..18 => PeerAction::StopReading(d),
                    18..30 => PeerAction::Vanish,
                    30..38 => PeerAction::Close([1000, 1001, 4001, 1006][rng.usize(0..4)]),
                    38..46 => PeerAction::Drop,
                    46..60 => PeerAction::Garbage(
                        [
                            Garbage::Malformed,
                            Garbage::Oversized,
                            Garbage::InvalidUtf8,
                            Garbage::Binary,
                        ][rng.usize(0..4)],
                    ),
                    60..72 => PeerAction::ClockJump(d),
                    72..80 => PeerAction::FailWrite,
                    80..92 => PeerAction::AppClose([1000, 1001, 4000, 1013][rng.usize(0..4)]),
                    _ => PeerAction::AppTerminate,
                };
                (at, action)
            })
            .collect();
        PeerScript::new(entries)
    }
}

/// The result of a server-role run.
#[derive(Debug)]
pub struct ServerRun {
    /// The seed.
    pub seed: u64,
    /// Everything that happened, in the client session's vocabulary.
    pub timeline: Timeline<Raw>,
    /// How the connection ended (`None` only if the run broke off).
    pub end: Option<EndCause>,
    /// The connection's counters at the end.
    pub stats: ServerStats,
}

/// The client-session configuration whose fields the oracles read for a server
/// connection: its liveness, send deadline, slow-write warning, pending-write bound,
/// close timeout and inbound bound; offline sends rejected (a server has no queue).
pub fn timeline_config(cfg: &ServerConfig) -> Config {
    Config {
        liveness: cfg.liveness.clone(),
        send_deadline: cfg.send_deadline,
        slow_write_warning: cfg.slow_write_warning,
        max_pending_writes: cfg.max_pending_writes,
        close_timeout: cfg.close_timeout,
        max_inbound_frame: cfg.max_inbound_frame,
        offline: OfflinePolicy::Reject,
        ..Config::default()
    }
}

/// Runs the shared oracles of [`ORACLES`] and [`ends_once`] over a server-role timeline.
#[must_use]
pub fn check(tl: &Timeline<Raw>) -> Vec<Violation> {
    let mut found: Vec<Violation> = ORACLES
        .iter()
        .filter(|n| **n != ENDS_ONCE)
        .filter_map(|n| oracle::check_one(n, tl).flatten())
        .collect();
    found.extend(ends_once(tl));
    found
}

/// A server connection ends exactly once and then goes quiet: one [`Event::Ended`] in
/// the run, no write, close or abort asked after it, at most one close frame, and the
/// run's `Final` record shows it closed.
#[must_use]
pub fn ends_once(tl: &Timeline<Raw>) -> Option<Violation> {
    let report = |step: usize, detail: String| {
        Some(Violation {
            oracle: ENDS_ONCE,
            step,
            at: tl.records.get(step).map_or(Duration::ZERO, |r| r.at),
            detail,
        })
    };
    let mut ended: Option<usize> = None;
    let mut closes = 0;
    for (i, r) in tl.records.iter().enumerate() {
        match &r.entry {
            Entry::Output(Output::Event(Event::Ended(_))) => {
                if let Some(e) = ended {
                    return report(i, format!("ended again (first at step {e})"));
                }
                ended = Some(i);
            }
            Entry::Output(
                o @ (Output::SendFrame { .. }
                | Output::CloseTransport { .. }
                | Output::AbortTransport { .. }),
            ) => {
                if let Some(e) = ended {
                    return report(i, format!("{o:?} after the end at step {e}"));
                }
                if matches!(o, Output::CloseTransport { .. }) {
                    closes += 1;
                    if closes > 1 {
                        return report(i, "a second close frame".to_owned());
                    }
                }
            }
            Entry::Final(f) if ended.is_none() || !f.is_closed => {
                return report(
                    i,
                    format!("the run ended without the connection ending: {f:?}"),
                );
            }
            _ => {}
        }
    }
    None
}

/// Runs a server connection with `config` against a peer following `script` for
/// `duration` of simulated time, then closes it (1000) and lets the close finish. The
/// application writes a text frame every second on average; the peer sends a message
/// every 5 s on average and answers pings after a round trip. Deterministic for `seed`.
pub fn run(config: ServerConfig, script: PeerScript, seed: u64, duration: Duration) -> ServerRun {
    let mut w = RoleWorld::new(config, script, seed);
    w.run(duration);
    ServerRun {
        seed,
        end: w.conn.end_cause().cloned(),
        stats: w.conn.stats(),
        timeline: w.timeline,
    }
}

#[derive(Debug)]
enum Ev {
    Input(Input),
    Resume,
}

/// What the world does next; equal times are served in this order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Next {
    Script,
    Wire,
    AppSend,
    PeerMessage,
    Timer,
    End,
}

struct RoleWorld {
    conn: ServerConn,
    id: ConnId,
    epoch: Instant,
    now: Duration,
    rng: fastrand::Rng,
    /// The network's generator, for trips: the role's link has no jitter, so its draws
    /// change nothing, but trips are drawn as the world's are.
    net_rng: fastrand::Rng,
    script: VecDeque<(Duration, PeerAction)>,
    queue: Queue<Ev>,
    /// The server's host: it may sleep, holding what arrives meanwhile.
    host: Host,
    /// The peer reads nothing before this instant.
    reading_until: Duration,
    /// Writes the peer has not read (it stopped reading), with what it answers once it
    /// reads each (a pong to a ping).
    unread: Vec<(FrameId, Option<Wire>)>,
    /// The link is half-open for good: the peer is gone without a word.
    vanished: bool,
    /// The peer's side is closed or dropped: it sends nothing more.
    peer_done: bool,
    /// The server's end under the link model: once it refused what the peer sent, it
    /// reads nothing more.
    reader: Reader,
    fail_next_write: bool,
    next_send: Option<Duration>,
    next_message: Option<Duration>,
    timeline: Timeline<Raw>,
    last_sizes: Sizes,
    latency: Latency,
    /// The peer-to-server direction: TCP keeps its order, so a peer's message never
    /// overtakes a pong or a close the peer sent before it.
    to_server: Lane,
    write_latency: Duration,
}

impl RoleWorld {
    fn new(config: ServerConfig, script: PeerScript, seed: u64) -> Self {
        // The only clock read of a run: an arbitrary epoch; the timeline records offsets.
        #[allow(clippy::disallowed_methods)]
        let epoch = Instant::now();
        let id = ConnId::from_raw(1);
        let timeline = Timeline::new(timeline_config(&config));
        let conn = match ServerConn::new(config, id, epoch) {
            Ok(c) => c,
            // The simulator is handed configurations by tests and campaigns, which
            // validate them; an invalid one is a bug in the caller.
            Err(e) => panic!("invalid server configuration: {e}"),
        };
        let mut master = fastrand::Rng::with_seed(seed);
        // The run's generator is the first draw and the network's the second, so trips
        // never shift the run's draws (the application's sends, the peer's timing).
        let rng = fastrand::Rng::with_seed(master.u64(..));
        let net_rng = fastrand::Rng::with_seed(master.u64(..));
        let mut w = RoleWorld {
            conn,
            id,
            epoch,
            now: Duration::ZERO,
            rng,
            net_rng,
            script: script.entries.into(),
            queue: Queue::default(),
            host: Host::default(),
            reading_until: Duration::ZERO,
            unread: Vec::new(),
            vanished: false,
            peer_done: false,
            reader: Reader::default(),
            fail_next_write: false,
            next_send: None,
            next_message: None,
            timeline,
            last_sizes: Sizes::default(),
            latency: Latency {
                base: Duration::from_millis(20),
                jitter: Duration::ZERO,
            },
            to_server: Lane::default(),
            write_latency: Duration::from_micros(100),
        };
        w.next_send = Some(w.gap(Duration::from_secs(1)));
        w.next_message = Some(w.gap(Duration::from_secs(5)));
        w.timeline.push(
            Duration::ZERO,
            Entry::Output(Output::Event(Event::Opened {
                conn: id,
                attempt: 1,
                first: true,
            })),
        );
        w
    }

    /// A uniform gap in `[0, 2 × mean]` after now.
    fn gap(&mut self, mean: Duration) -> Duration {
        self.now + mean.mul_f64(2.0 * self.rng.f64())
    }

    fn instant(&self) -> Instant {
        self.epoch + self.now
    }

    fn schedule(&mut self, at: Duration, ev: Ev) {
        self.queue.push(at, ev);
    }

    /// One trip on the wire.
    fn trip(&mut self) -> Duration {
        self.latency.trip(&mut self.net_rng)
    }

    /// When the peer's answer to a frame the server wrote at `from` reaches the server: a
    /// trip there, the peer's own reaction (0–9 ms, whole milliseconds from the run's
    /// generator: a browser answers when its event loop gets to it), a trip back, in order
    /// behind what the peer sent before.
    fn answer_at(&mut self, from: Duration) -> Duration {
        let there = self.trip();
        let back = self.trip();
        let sent = from + there + Duration::from_millis(self.rng.u64(0..10));
        self.to_server.arrival(sent, back)
    }

    /// When a frame the peer sends now reaches the server: one trip, in order.
    fn peer_sends(&mut self) -> Duration {
        let trip = self.trip();
        self.to_server.arrival(self.now, trip)
    }

    fn run(&mut self, duration: Duration) {
        let mut steps = 0u64;
        loop {
            steps += 1;
            assert!(steps < MAX_STEPS, "no progress at +{:?}", self.now);
            let (at, what) = self.next_thing(duration, true);
            self.now = at;
            match what {
                Next::Script => {
                    if let Some((_, action)) = self.script.pop_front() {
                        self.action(action);
                    }
                }
                Next::Wire => self.deliver(),
                Next::AppSend => {
                    self.next_send = Some(self.gap(Duration::from_secs(1)));
                    // Any number that differs from message to message will do: the count
                    // of deliveries scheduled so far.
                    let n = self.queue.scheduled();
                    self.app_send(n);
                }
                Next::PeerMessage => {
                    self.next_message = Some(self.gap(Duration::from_secs(5)));
                    if !self.vanished && !self.peer_done {
                        let at = self.peer_sends();
                        let frame = InFrame::Text(Bytes::from_static(b"{\"type\":\"note\"}"));
                        self.schedule(
                            at,
                            Ev::Input(Input::FrameReceived {
                                conn: self.id,
                                frame,
                            }),
                        );
                    }
                }
                Next::Timer => self.timer(),
                Next::End => break,
            }
        }
        // The application closes at the end; the host is awake by then.
        self.host.wake_by(duration);
        self.release_held();
        self.script.clear();
        self.command(|c, now| {
            let _ = c.close(CloseCode::NORMAL, "end of run", now);
            CommandRecord::Close
        });
        let grace = duration + self.conn.config().close_timeout + Duration::from_secs(2);
        loop {
            steps += 1;
            assert!(steps < MAX_STEPS, "no progress at +{:?}", self.now);
            let (at, what) = self.next_thing(grace, false);
            self.now = at;
            match what {
                Next::Wire => self.deliver(),
                Next::Timer => self.timer(),
                Next::End => break,
                _ => {}
            }
        }
        let sizes = self.sizes();
        self.timeline.push(
            self.now,
            Entry::Final(Final {
                status: if self.conn.is_closed() {
                    Status::Closed
                } else {
                    Status::Open
                },
                is_closed: self.conn.is_closed(),
                timer_armed: self.conn.poll_timeout().is_some(),
                sizes,
            }),
        );
    }

    fn next_thing(&self, end: Duration, active: bool) -> (Duration, Next) {
        let thaw = |t: Duration| self.host.awake_at(t).max(self.now);
        let mut best = (end, Next::End);
        let mut offer = |at: Option<Duration>, what: Next| {
            if let Some(at) = at
                && (at, what) < best
            {
                best = (at, what);
            }
        };
        if active {
            offer(
                self.script.front().map(|(t, _)| (*t).max(self.now)),
                Next::Script,
            );
            offer(self.next_send.map(thaw), Next::AppSend);
            offer(
                self.next_message.map(|t| t.max(self.now)),
                Next::PeerMessage,
            );
        }
        offer(self.queue.next_at().map(|at| at.max(self.now)), Next::Wire);
        offer(self.host.release_at(self.now), Next::Wire);
        offer(
            self.conn
                .poll_timeout()
                .map(|t| thaw(t.saturating_duration_since(self.epoch))),
            Next::Timer,
        );
        best
    }

    fn frozen(&self) -> bool {
        self.host.asleep(self.now)
    }

    fn action(&mut self, action: PeerAction) {
        let fault = match &action {
            PeerAction::StopReading(d) => Some(Fault::StopReading(*d)),
            PeerAction::Vanish => Some(Fault::HalfOpen(Duration::MAX)),
            PeerAction::Close(code) => Some(Fault::ServerClose(*code, "peer close".into())),
            PeerAction::Drop => Some(Fault::Drop),
            PeerAction::Garbage(g) => Some(Fault::Garbage(*g)),
            PeerAction::ClockJump(d) => Some(Fault::ClockJump(*d)),
            _ => None,
        };
        if let Some(f) = fault {
            self.timeline.push(self.now, Entry::Fault(f));
        }
        let live = !self.vanished && !self.peer_done;
        match action {
            PeerAction::StopReading(d) => {
                let until = self.now + d;
                if until > self.reading_until {
                    self.reading_until = until;
                    self.schedule(until, Ev::Resume);
                }
            }
            PeerAction::Vanish => self.vanished = true,
            PeerAction::Close(code) if live => {
                self.peer_done = true;
                let at = self.peer_sends();
                let close = Wire::Close(Some(code), "peer close".into());
                self.schedule(at, Ev::Input(link::received(self.id, close)));
            }
            PeerAction::Drop if !self.peer_done => {
                self.peer_done = true;
                let at = self.peer_sends();
                let drop = Wire::Close(None, String::new());
                self.schedule(at, Ev::Input(link::received(self.id, drop)));
            }
            PeerAction::Garbage(g) if live => {
                let frame = g.frame(self.conn.config().max_inbound_frame);
                let at = self.peer_sends();
                self.schedule(
                    at,
                    Ev::Input(Input::FrameReceived {
                        conn: self.id,
                        frame,
                    }),
                );
            }
            PeerAction::ClockJump(d) => self.host.sleep(self.now, d),
            PeerAction::FailWrite => self.fail_next_write = true,
            PeerAction::AppClose(code) => self.command(|c, now| {
                let _ = c.close(CloseCode(code), "app close", now);
                CommandRecord::Close
            }),
            PeerAction::AppTerminate => self.command(|c, now| {
                c.terminate(now);
                CommandRecord::Terminate
            }),
            _ => {}
        }
    }

    fn app_send(&mut self, n: u64) {
        let text = Utf8Bytes::from_string(format!("{{\"type\":\"update\",\"n\":{n}}}"));
        self.command(|c, now| {
            let r = c.send(DataFrame::Text(text), now);
            CommandRecord::Send(r.map(|f| MessageId::from_raw(f.get())))
        });
    }

    /// Runs an application command, unless the host is asleep (then the application is
    /// asleep too and the command does not happen).
    fn command(&mut self, f: impl FnOnce(&mut ServerConn, Instant) -> CommandRecord) {
        if self.frozen() {
            return;
        }
        let now = self.instant();
        let record = f(&mut self.conn, now);
        self.timeline.push(self.now, Entry::Command(record));
        self.drain();
    }

    fn timer(&mut self) {
        if let Some(kind) = self.conn.timeout_reason() {
            self.timeline.push(self.now, Entry::Timer(kind));
        }
        let now = self.instant();
        self.conn.handle_timeout(now);
        self.drain();
    }

    fn deliver(&mut self) {
        if self.host.releases(self.now) {
            self.release_held();
            return;
        }
        let Some((_, ev)) = self.queue.pop() else {
            return;
        };
        match ev {
            Ev::Input(input) => self.arrive(input),
            Ev::Resume => {
                // The peer reads again: what waited goes through now.
                if self.now >= self.reading_until {
                    for (frame, reply) in std::mem::take(&mut self.unread) {
                        self.write(frame, reply);
                    }
                }
            }
        }
    }

    /// Hands the machine an input the peer's side delivered, as the driver's WebSocket
    /// link would (`link_model`): what the codec refuses fails the connection, and a
    /// failed link reads nothing more.
    fn arrive(&mut self, input: Input) {
        match self
            .reader
            .read(input, self.conn.config().max_inbound_frame)
        {
            None => {}
            Some(Arrival::Deliver(input) | Arrival::Fail { input, .. }) => self.give(input),
        }
    }

    fn give(&mut self, input: Input) {
        let Some(input) = self.host.admit(self.now, input) else {
            return;
        };
        self.timeline.push(self.now, Entry::Input(input.clone()));
        let now = self.instant();
        self.conn.handle_input(input, now);
        self.drain();
    }

    fn release_held(&mut self) {
        while let Some(input) = self.host.release() {
            self.timeline.push(self.now, Entry::Input(input.clone()));
            let now = self.instant();
            self.conn.handle_input(input, now);
            self.drain();
        }
    }

    fn sizes(&self) -> Sizes {
        Sizes {
            pending_writes: self.conn.pending_writes(),
            ..Sizes::default()
        }
    }

    fn drain(&mut self) {
        while let Some(out) = self.conn.poll_output() {
            self.act(&out);
            for entry in record(self.id, out) {
                self.timeline.push(self.now, Entry::Output(entry));
            }
        }
        let sizes = self.sizes();
        if sizes != self.last_sizes {
            self.last_sizes = sizes;
            self.timeline.push(self.now, Entry::Sizes(sizes));
        }
    }

    /// A frame the server writes to the peer, whose answer once it reads it is `reply`:
    /// it waits while the peer does not read; otherwise the write completes after the
    /// write latency and the peer answers after a round trip, unless it is gone.
    fn write(&mut self, frame: FrameId, reply: Option<Wire>) {
        // A vanished peer's kernel takes writes even if the peer had stopped reading
        // before it vanished (the value world's half-open link holds such writes instead).
        let reading = self.now >= self.reading_until || self.vanished;
        match link::write(self.now, self.write_latency, reading, self.vanished) {
            Write::Waits => self.unread.push((frame, reply)),
            Write::Taken { done, delivered } => {
                let conn = self.id;
                self.schedule(done, Ev::Input(Input::WriteCompleted { conn, frame }));
                if delivered
                    && !self.peer_done
                    && let Some(reply) = reply
                {
                    let at = self.answer_at(self.now);
                    self.schedule(at, Ev::Input(link::received(conn, reply)));
                }
            }
        }
    }

    /// Carries out what the connection asked, as an adapter would.
    fn act(&mut self, out: &ServerOutput) {
        match out {
            ServerOutput::SendFrame { frame, payload, .. } => {
                if self.fail_next_write {
                    self.fail_next_write = false;
                    let at = link::write_done(self.now, self.write_latency);
                    let input = Input::WriteFailed {
                        conn: self.id,
                        frame: *frame,
                    };
                    self.schedule(at, Ev::Input(input));
                } else {
                    self.write(*frame, link::answer(&Wire::sent(payload)));
                }
            }
            // A live peer answers the close frame once it reads it.
            ServerOutput::CloseTransport { code, reason, .. }
                if !self.vanished && !self.peer_done =>
            {
                self.peer_done = true;
                if let Some(reply) = link::answer(&Wire::Close(Some(code.0), reason.clone())) {
                    let at = self.answer_at(self.now.max(self.reading_until));
                    self.schedule(at, Ev::Input(link::received(self.id, reply)));
                }
            }
            ServerOutput::AbortTransport { .. } => {
                self.peer_done = true;
                self.unread.clear();
            }
            _ => {}
        }
    }
}

/// A server output in the client session's vocabulary, for the timeline.
fn record(conn: ConnId, out: ServerOutput) -> Vec<Output<Raw>> {
    match out {
        ServerOutput::SendFrame {
            conn,
            frame,
            payload,
        } => vec![Output::SendFrame {
            conn,
            frame,
            payload,
        }],
        ServerOutput::CloseTransport { conn, code, reason } => {
            vec![Output::CloseTransport { conn, code, reason }]
        }
        ServerOutput::AbortTransport { conn } => vec![Output::AbortTransport { conn }],
        ServerOutput::Event(ev) => match ev {
            ServerEvent::Message(m) => vec![Output::Event(Event::Message(m))],
            ServerEvent::Violation(violation) => {
                vec![Output::Event(Event::Violation { conn, violation })]
            }
            ServerEvent::SlowWrite { frame, elapsed } => vec![Output::Event(Event::SlowWrite {
                conn,
                frame,
                elapsed,
            })],
            ServerEvent::ClockJump { overshoot } => {
                vec![Output::Event(Event::ClockJump { overshoot })]
            }
            ServerEvent::Ended(EndCause::Lost(reason)) => {
                let (code, text) = match &reason {
                    tether_core::DisconnectReason::Closed { code, reason } => {
                        (code.unwrap_or(CloseCode::ABNORMAL), reason.clone())
                    }
                    _ => (CloseCode::ABNORMAL, String::new()),
                };
                vec![
                    Output::Event(Event::Disconnected {
                        conn,
                        reason,
                        retry: None,
                    }),
                    Output::Event(Event::Ended(EndReason::ClosedByPeer { code, reason: text })),
                ]
            }
            ServerEvent::Ended(_) => vec![Output::Event(Event::Ended(EndReason::ClosedByUser))],
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// TCP keeps the peer's frames in order: a message the peer sends just after it
    /// answered a ping arrives behind the pong, though its own trip is shorter than the
    /// pong's round trip.
    #[test]
    fn the_peer_frames_reach_the_server_in_the_order_sent() {
        let mut w = RoleWorld::new(ServerConfig::default(), PeerScript::default(), 7);
        let pong = w.answer_at(Duration::ZERO);
        w.now = Duration::from_millis(1);
        let message = w.peer_sends();
        assert!(
            message >= pong,
            "the message at {message:?} overtakes the pong at {pong:?}"
        );
        // Alone, the message takes one trip.
        let mut fresh = RoleWorld::new(ServerConfig::default(), PeerScript::default(), 7);
        fresh.now = Duration::from_millis(1);
        assert!(fresh.peer_sends() < pong);
    }
}
