//! The world: one session, one scripted server and a faulty network, driven through
//! virtual time by jumping to the next thing that happens.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tether_core::{
    CloseCode, Config, ConfigError, ConnId, InFrame, Input, Output, Protocol, Session,
    SessionStats, TransportFailure,
};

use crate::fault::{Fault, FaultPlan};
use crate::host::Host;
use crate::link::{self, Write};
use crate::link_model::Arrival;
use crate::net::{Dialed, Link, NetConfig, NetState};
use crate::queue::Queue;
use crate::server::{Accept, Action, Server, ServerCtx};
use crate::timeline::{CommandRecord, Entry, Fact, Final, Sizes, Timeline, fingerprint};
use crate::wire::Wire;
use crate::workload::{Command, Idle, Workload};

/// How long a run lasts and when its faults heal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunConfig {
    /// Simulated time until the final `close`. Default 1 h.
    pub duration: Duration,
    /// When every fault heals and the liveness phase starts. Default: 5 min before the end.
    pub heal_at: Option<Duration>,
    /// The network.
    pub net: NetConfig,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            duration: Duration::from_secs(3600),
            heal_at: None,
            net: NetConfig::default(),
        }
    }
}

impl RunConfig {
    /// A run of this duration, healing 5 minutes before the end (or at half time for runs
    /// shorter than 10 minutes).
    pub fn lasting(duration: Duration) -> Self {
        RunConfig {
            duration,
            ..RunConfig::default()
        }
    }

    /// When the faults heal.
    pub fn heal_time(&self) -> Duration {
        self.heal_at.unwrap_or_else(|| {
            let five = Duration::from_secs(300);
            if self.duration >= 2 * five {
                self.duration - five
            } else {
                self.duration / 2
            }
        })
    }
}

/// The result of a run.
pub struct Run<P: Protocol> {
    /// The master seed.
    pub seed: u64,
    /// Everything that happened.
    pub timeline: Timeline<P>,
    /// The session's counters at the end.
    pub stats: SessionStats,
    /// Simulated time covered.
    pub simulated: Duration,
}

#[derive(Debug)]
enum Ev {
    Client(Input),
    ConnectArrive(ConnId),
    ServerFrame(ConnId, Wire),
    ServerGone(ConnId),
    ServerTimer(ConnId, u64),
}

/// More steps than this in one run means no progress (a million per simulated hour is
/// far above any real workload).
const MAX_STEPS: u64 = 20_000_000;

/// What the world does next; equal times are served in this order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Next {
    Fault,
    Heal,
    Wire,
    Workload,
    SessionTimer,
    End,
}

/// One session against one scripted server through a simulated network under a fault
/// plan, with a workload of user commands. Deterministic for a seed.
///
/// ```
/// use std::time::Duration;
/// use tether_core::{Config, profiles::HelloAck};
/// use tether_sim::{servers::HelloAckServer, FaultPlan, Fault, RunConfig, World, oracle};
///
/// let run = World::new(
///     Config::default(),
///     HelloAck::new(|| serde_json::json!({"type": "hello"})),
///     HelloAckServer::default(),
///     7,
/// )
/// .unwrap()
/// .plan(FaultPlan::new(vec![(Duration::from_secs(60), Fault::Drop)]))
/// .run(RunConfig::lasting(Duration::from_secs(600)));
/// assert!(oracle::check(&run.timeline).is_empty());
/// assert_eq!(run.stats.opens, 2);
/// ```
pub struct World<P: Protocol, S: Server> {
    seed: u64,
    epoch: Instant,
    now: Duration,
    session: Session<P>,
    server: S,
    net_rng: fastrand::Rng,
    server_rng: fastrand::Rng,
    work_rng: fastrand::Rng,
    plan: VecDeque<(Duration, Fault)>,
    workload: Box<dyn Workload<P>>,
    next_command: Option<(Duration, Command<P>)>,
    queue: Queue<Ev>,
    /// The session's host: it may sleep, holding what arrives meanwhile.
    host: Host,
    links: BTreeMap<ConnId, Link>,
    state: NetState,
    net: NetConfig,
    timeline: Timeline<P>,
    last_sizes: Sizes,
    actions: Vec<Action>,
    healed: bool,
    /// The world's own encoder of sent messages, for the ledger.
    identify: Option<Identify<P>>,
    /// The world's own reading of the stream events in the frames it delivers.
    identify_events: Option<IdentifyEvents>,
    /// Inside a session call: facts wait until its outputs are recorded.
    draining: bool,
    facts: Vec<Fact>,
}

/// How the world encodes a message for its ledger: the frame it should travel in, as
/// `(binary, bytes)`.
type Identify<P> = Box<dyn FnMut(&<P as Protocol>::Outbound) -> Option<(bool, Bytes)>>;
/// The world's reading of the stream event a delivered frame carries.
type IdentifyEvents = Box<dyn FnMut(&InFrame) -> Option<(String, u64)>>;

impl<P: Protocol, S: Server> World<P, S> {
    /// A world whose session, network, server and workload draw from sub-seeds of `seed`
    /// (so extra draws in one never perturb another).
    ///
    /// # Errors
    ///
    /// The session's [`ConfigError`].
    pub fn new(config: Config, protocol: P, server: S, seed: u64) -> Result<Self, ConfigError> {
        let mut master = fastrand::Rng::with_seed(seed);
        let session_seed = master.u64(..);
        let session = Session::new(config.clone(), protocol, session_seed)?;
        // The only clock read of a run: an arbitrary epoch. Everything is recorded as
        // offsets from it, so timelines are identical across runs.
        #[allow(clippy::disallowed_methods)]
        let epoch = Instant::now();
        Ok(World {
            seed,
            epoch,
            now: Duration::ZERO,
            session,
            server,
            net_rng: fastrand::Rng::with_seed(master.u64(..)),
            server_rng: fastrand::Rng::with_seed(master.u64(..)),
            work_rng: fastrand::Rng::with_seed(master.u64(..)),
            plan: VecDeque::new(),
            workload: Box::new(Idle),
            next_command: None,
            queue: Queue::default(),
            host: Host::default(),
            links: BTreeMap::new(),
            state: NetState::default(),
            net: NetConfig::default(),
            timeline: Timeline::new(config),
            last_sizes: Sizes::default(),
            actions: Vec::new(),
            healed: false,
            identify: None,
            identify_events: None,
            draining: false,
            facts: Vec::new(),
        })
    }

    /// Schedules these faults.
    #[must_use]
    pub fn plan(mut self, plan: FaultPlan) -> Self {
        self.plan = plan.entries.into();
        self
    }

    /// Issues commands from this workload.
    #[must_use]
    pub fn workload(mut self, workload: impl Workload<P> + 'static) -> Self {
        self.workload = Box::new(workload);
        self
    }

    /// Gives the world its own encoding of the messages the workload sends: the frame each
    /// should travel in, as `(binary, bytes)` (`None`: not known). The world records it
    /// as a [`Fact::Message`] before each `send`, so the oracles can tell which frame the
    /// server received belongs to which message — and whether the offline queue was
    /// flushed in order — without asking the session. Without it the oracles attribute
    /// frames to messages in the order the session wrote them.
    ///
    /// ```
    /// # use tether_core::{Config, profiles::HelloAck};
    /// # use tether_sim::{servers::HelloAckServer, World};
    /// let world = World::new(
    ///     Config::default(),
    ///     HelloAck::new(|| serde_json::json!({"type": "hello"})),
    ///     HelloAckServer::default(),
    ///     7,
    /// )
    /// .unwrap()
    /// .identify_sends(|m: &serde_json::Value| Some((false, m.to_string().into())));
    /// # let _ = world;
    /// ```
    #[must_use]
    pub fn identify_sends(
        mut self,
        f: impl FnMut(&P::Outbound) -> Option<(bool, Bytes)> + 'static,
    ) -> Self {
        self.identify = Some(Box::new(f));
        self
    }

    /// Gives the world its own reading of the frames its server sends: which stream event
    /// (`(key, seq)`, the stream as the peer names it) a frame carries, if any. The world
    /// then records a [`Fact::StreamEvent`] before handing such a frame to the session,
    /// and `stream_events_once` checks that every event delivered while its stream was
    /// open reaches the application.
    ///
    /// ```
    /// # use tether_core::{Config, InFrame, profiles::HelloAck};
    /// # use tether_sim::{servers::HelloAckServer, World};
    /// let world = World::new(
    ///     Config::default(),
    ///     HelloAck::new(|| serde_json::json!({"type": "hello"})),
    ///     HelloAckServer::default(),
    ///     7,
    /// )
    /// .unwrap()
    /// .identify_events(tether_sim::scenario::hello_ack_event);
    /// # let _ = world;
    /// ```
    #[must_use]
    pub fn identify_events(
        mut self,
        f: impl FnMut(&InFrame) -> Option<(String, u64)> + 'static,
    ) -> Self {
        self.identify_events = Some(Box::new(f));
        self
    }

    /// The session (for inspection).
    pub fn session(&self) -> &Session<P> {
        &self.session
    }

    /// Runs to the end: connect at t = 0, faults until the heal time, then the liveness
    /// phase, then a final `close` and enough time for it to complete.
    pub fn run(mut self, cfg: RunConfig) -> Run<P> {
        self.net = cfg.net.clone();
        let heal_at = cfg.heal_time();
        self.timeline.heal_at = Some(heal_at);
        self.next_command = self.workload.next(Duration::ZERO, &mut self.work_rng);
        self.command(Command::Connect);
        let end = cfg.duration;
        let mut steps = 0u64;
        loop {
            steps += 1;
            if steps > MAX_STEPS {
                self.stuck(steps);
            }
            let (at, what) = self.next_thing(heal_at, end);
            self.now = at;
            match what {
                Next::Fault => {
                    if let Some((_, fault)) = self.plan.pop_front() {
                        self.fault(fault);
                    }
                }
                Next::Heal => self.heal(),
                Next::Wire => self.deliver_one(),
                Next::Workload => {
                    if let Some((_, cmd)) = self.next_command.take() {
                        self.command(cmd);
                        self.next_command = self
                            .workload
                            .next(self.now, &mut self.work_rng)
                            .map(|(gap, c)| (self.now + gap, c));
                    }
                }
                Next::SessionTimer => self.session_timer(),
                Next::End => break,
            }
        }
        self.now = end;
        // The application closes at the end: the host is awake by then, whatever sleep a
        // fault had started.
        self.host.wake_by(end);
        self.release_held();
        // The application stops, and so do the faults.
        self.next_command = None;
        self.plan.clear();
        self.command(Command::Close);
        // Let the close handshake finish (or time out) and the network drain.
        let grace = end + self.timeline.config.close_timeout + Duration::from_secs(2);
        loop {
            steps += 1;
            if steps > MAX_STEPS {
                self.stuck(steps);
            }
            let (at, what) = self.next_thing(Duration::MAX, grace);
            self.now = at;
            match what {
                Next::Wire => self.deliver_one(),
                Next::SessionTimer => self.session_timer(),
                Next::End => break,
                _ => {}
            }
        }
        let sizes = self.sizes();
        self.timeline.push(
            self.now,
            Entry::Final(Final {
                status: self.session.status(),
                is_closed: self.session.is_closed(),
                timer_armed: self.session.poll_timeout().is_some(),
                sizes,
            }),
        );
        Run {
            seed: self.seed,
            stats: self.session.stats(),
            simulated: self.now,
            timeline: self.timeline,
        }
    }

    /// A run that takes this many steps is looping without progress: a bug in the world
    /// or the session, reported with the tail of the timeline.
    fn stuck(&self, steps: u64) -> ! {
        let tail: Vec<String> = self
            .timeline
            .records
            .iter()
            .rev()
            .take(20)
            .map(|r| format!("+{:.6}s {:?}", r.at.as_secs_f64(), r.entry))
            .collect();
        panic!(
            "seed {}: no progress after {steps} steps at +{:?}; last records (newest first):\n{}",
            self.seed,
            self.now,
            tail.join("\n")
        );
    }

    fn next_thing(&self, heal_at: Duration, end: Duration) -> (Duration, Next) {
        let thaw = |t: Duration| self.host.awake_at(t);
        let mut best = (end, Next::End);
        let mut offer = |at: Option<Duration>, what: Next| {
            if let Some(at) = at
                && (at, what) < best
            {
                best = (at, what);
            }
        };
        offer(
            self.plan.front().map(|(t, _)| (*t).max(self.now)),
            Next::Fault,
        );
        if !self.healed {
            offer(Some(heal_at.max(self.now)), Next::Heal);
        }
        offer(self.queue.next_at().map(|at| at.max(self.now)), Next::Wire);
        offer(self.host.release_at(self.now), Next::Wire);
        offer(
            self.next_command
                .as_ref()
                .map(|(t, _)| thaw((*t).max(self.now))),
            Next::Workload,
        );
        offer(
            self.session
                .poll_timeout()
                .map(|t| thaw(self.offset(t).max(self.now))),
            Next::SessionTimer,
        );
        best
    }

    fn offset(&self, t: Instant) -> Duration {
        t.saturating_duration_since(self.epoch)
    }

    fn instant(&self) -> Instant {
        self.epoch + self.now
    }

    fn schedule(&mut self, at: Duration, ev: Ev) {
        self.queue.push(at, ev);
    }

    /// One trip on the wire, at the latency in force now.
    fn delay(&mut self) -> Duration {
        self.state
            .latency(&self.net, self.now)
            .trip(&mut self.net_rng)
    }

    // ---- the session side ---------------------------------------------------------------

    fn command(&mut self, cmd: Command<P>) {
        let now = self.instant();
        let record = match cmd {
            Command::Connect => {
                let _ = self.session.connect(now);
                CommandRecord::Connect
            }
            Command::Send(m) => {
                if let Some(identify) = &mut self.identify
                    && let Some((binary, bytes)) = identify(&m)
                {
                    let fact = Fact::Message {
                        fingerprint: fingerprint(binary, &bytes),
                        len: bytes.len(),
                    };
                    self.timeline.push(self.now, Entry::Fact(fact));
                }
                CommandRecord::Send(self.session.send(m, now))
            }
            Command::Request { request, timeout } => {
                let before = self.session.open_streams();
                let result = self.session.request(request, timeout, now);
                let stream = result.is_ok() && self.session.open_streams() > before;
                CommandRecord::Request { result, stream }
            }
            Command::Close => {
                self.session.close(CloseCode::NORMAL, "end of run", now);
                CommandRecord::Close
            }
            Command::Terminate => {
                self.session.terminate(now);
                CommandRecord::Terminate
            }
        };
        self.timeline.push(self.now, Entry::Command(record));
        self.drain();
    }

    fn session_timer(&mut self) {
        if let Some(kind) = self.session.timeout_reason() {
            self.timeline.push(self.now, Entry::Timer(kind));
        }
        let now = self.instant();
        self.session.handle_timeout(now);
        self.drain();
    }

    fn give(&mut self, input: Input) {
        if let Some(input) = self.host.admit(self.now, input) {
            self.hand_over(input);
        }
    }

    fn release_held(&mut self) {
        while let Some(input) = self.host.release() {
            self.hand_over(input);
        }
    }

    /// Hands an input to the session. A close frame from the peer is answered first, as
    /// the WebSocket codec of an adapter does when it reads one (`link::answer`).
    fn hand_over(&mut self, input: Input) {
        if let Input::TransportClosed {
            conn,
            code: Some(code),
            reason,
        } = &input
            && let Some(link) = self.links.get_mut(conn)
            && !link.client_done
            && let Some(reply) = link::answer(&Wire::Close(Some(code.0), reason.clone()))
        {
            link.client_done = true;
            self.send_to_server(*conn, reply);
        }
        if let Input::FrameReceived { conn, frame } = &input
            && let Some(identify) = &mut self.identify_events
            && let Some((key, seq)) = identify(frame)
        {
            let conn = *conn;
            let key = crate::timeline::fingerprint(false, key.as_bytes());
            // Straight onto the timeline, never deferred: the fact names the input
            // recorded next.
            let fact = Fact::StreamEvent { conn, key, seq };
            self.timeline.push(self.now, Entry::Fact(fact));
        }
        self.timeline.push(self.now, Entry::Input(input.clone()));
        let now = self.instant();
        self.session.handle_input(input, now);
        self.drain();
    }

    /// Records a fact now, or after the outputs of the session call under way.
    fn fact(&mut self, fact: Fact) {
        if self.draining {
            self.facts.push(fact);
        } else {
            self.timeline.push(self.now, Entry::Fact(fact));
        }
    }

    fn sizes(&self) -> Sizes {
        Sizes {
            pending_requests: self.session.pending_requests(),
            queued: self.session.queued(),
            open_streams: self.session.open_streams(),
            remembered: self.session.remembered_events(),
            pending_writes: self.session.pending_writes(),
        }
    }

    fn drain(&mut self) {
        self.draining = true;
        while let Some(out) = self.session.poll_output() {
            self.act(&out);
            self.timeline.push(self.now, Entry::Output(out));
        }
        self.draining = false;
        let sizes = self.sizes();
        if sizes != self.last_sizes {
            self.last_sizes = sizes;
            self.timeline.push(self.now, Entry::Sizes(sizes));
        }
        for fact in std::mem::take(&mut self.facts) {
            self.timeline.push(self.now, Entry::Fact(fact));
        }
    }

    /// Carries out what the session asked, as an adapter would.
    fn act(&mut self, out: &Output<P>) {
        match out {
            Output::OpenTransport { conn, .. } => self.open_transport(*conn),
            Output::SendFrame {
                conn,
                frame,
                payload,
            } => {
                let (conn, frame) = (*conn, *frame);
                let now = self.now;
                let Some(link) = self.links.get(&conn) else {
                    return;
                };
                if link.client_done {
                    // The client closed its end: nothing leaves it any more.
                    return;
                }
                let reading = now >= link.stop_reading_until;
                let written = link::write(now, self.net.write_latency, reading, link.half_open);
                // A server that stopped reading: the write never completes (`Waits`).
                let Write::Taken { done, delivered } = written else {
                    return;
                };
                self.schedule(done, Ev::Client(Input::WriteCompleted { conn, frame }));
                let wire = Wire::sent(payload);
                if !delivered {
                    if let Some(fingerprint) = data_fingerprint(&wire) {
                        self.fact(Fact::Lost { conn, fingerprint });
                    }
                    return;
                }
                self.send_to_server(conn, wire);
            }
            Output::CloseTransport { conn, code, reason } => {
                let conn = *conn;
                let Some(link) = self.links.get_mut(&conn) else {
                    return;
                };
                let deliver = !link.client_done && !link.half_open;
                link.client_done = true;
                if deliver {
                    self.send_to_server(conn, Wire::Close(Some(code.0), reason.clone()));
                }
            }
            Output::AbortTransport { conn } => {
                let conn = *conn;
                if let Some(link) = self.links.get_mut(&conn) {
                    link.client_done = true;
                    if link.server_open {
                        link.server_open = false;
                        let at = self.now + self.delay();
                        self.schedule(at, Ev::ServerGone(conn));
                    }
                }
            }
            _ => {}
        }
    }

    fn open_transport(&mut self, conn: ConnId) {
        self.links.insert(conn, Link::default());
        let now = self.now;
        let rtt = self.delay() + self.delay();
        match self.state.dial(now) {
            Dialed::Refused => {
                let failure = TransportFailure::Refused;
                self.schedule(
                    now + rtt,
                    Ev::Client(Input::TransportFailed { conn, failure }),
                );
            }
            // Never completes: the session's connect timeout must fire.
            Dialed::Blackholed => {}
            Dialed::Rejected(failure) => {
                self.schedule(
                    now + rtt,
                    Ev::Client(Input::TransportFailed { conn, failure }),
                );
            }
            Dialed::Proceeds { extra } => {
                let at = now + self.delay() + extra;
                self.schedule(at, Ev::ConnectArrive(conn));
            }
        }
    }

    // ---- the wire -----------------------------------------------------------------------

    fn send_to_server(&mut self, conn: ConnId, wire: Wire) {
        let d = self.delay();
        let Some(link) = self.links.get_mut(&conn) else {
            return;
        };
        let at = link.to_server.arrival(self.now, d);
        self.schedule(at, Ev::ServerFrame(conn, wire));
    }

    fn send_to_client(&mut self, conn: ConnId, frame: InFrame, after: Duration) {
        let d = self.delay();
        let reorder = self.now < self.state.reorder.1;
        let window = self.state.reorder.0;
        let dup = self.now < self.state.duplicate_until
            && matches!(frame, InFrame::Text(_) | InFrame::Binary(_));
        let extra = if reorder {
            window.mul_f64(self.net_rng.f64())
        } else {
            Duration::ZERO
        };
        let Some(link) = self.links.get_mut(&conn) else {
            return;
        };
        let sent = self.now + after;
        let at = if reorder {
            link.to_client.overtaking(sent, d + extra)
        } else {
            link.to_client.arrival(sent, d)
        };
        if dup {
            self.schedule(
                at,
                Ev::Client(Input::FrameReceived {
                    conn,
                    frame: frame.clone(),
                }),
            );
        }
        self.schedule(at, Ev::Client(Input::FrameReceived { conn, frame }));
    }

    fn close_to_client(
        &mut self,
        conn: ConnId,
        code: Option<u16>,
        reason: String,
        after: Duration,
    ) {
        let d = self.delay();
        let Some(link) = self.links.get_mut(&conn) else {
            return;
        };
        let was_open = link.server_open;
        link.server_open = false;
        if !was_open {
            return;
        }
        let at = link.to_client.arrival(self.now + after, d);
        let half_open = link.half_open;
        link.awaiting_close_reply = code.is_some() && !half_open;
        self.fact(Fact::ServerClosed {
            conn,
            code,
            delivered: !half_open,
        });
        if !half_open {
            let input = link::received(conn, Wire::Close(code, reason));
            self.schedule(at, Ev::Client(input));
        }
        self.schedule(self.now + after, Ev::ServerGone(conn));
    }

    fn deliver_one(&mut self) {
        if self.host.releases(self.now) {
            self.release_held();
            return;
        }
        let Some((_, ev)) = self.queue.pop() else {
            return;
        };
        match ev {
            Ev::Client(input) => self.arrive(input),
            Ev::ConnectArrive(conn) => self.connect_arrives(conn),
            Ev::ServerFrame(conn, wire) => self.server_frame(conn, wire),
            Ev::ServerGone(conn) => {
                if let Some(link) = self.links.get_mut(&conn)
                    && !link.server_notified
                {
                    link.server_notified = true;
                    link.server_open = false;
                    self.with_server(|s, ctx| s.on_closed(conn, ctx));
                }
            }
            Ev::ServerTimer(conn, token) => {
                if self.links.get(&conn).is_some_and(|l| l.server_open) {
                    self.with_server(|s, ctx| s.on_timer(conn, token, ctx));
                }
            }
        }
    }

    /// Hands the session an input the network delivered, as the driver's WebSocket link
    /// would (`link_model`): what the codec refuses fails the connection, and the server
    /// receives the close frame the link sends; a failed link reads nothing more.
    fn arrive(&mut self, input: Input) {
        let max = self.timeline.config.max_inbound_frame;
        let conn = input.conn();
        // Every input the network delivers is for a link `open_transport` made, and links
        // are never removed.
        let Some(link) = self.links.get_mut(&conn) else {
            return;
        };
        match link.reader.read(input, max) {
            None => {}
            Some(Arrival::Deliver(input)) => self.give(input),
            Some(Arrival::Fail {
                input,
                answer,
                peer_closed,
            }) => {
                let answered = !link.client_done && !link.half_open && !peer_closed;
                link.client_done = true;
                if answered && let Input::ProtocolError { violation, .. } = &input {
                    let reason = violation.close_reason().to_owned();
                    self.send_to_server(conn, Wire::Close(Some(answer.0), reason));
                }
                self.give(input);
            }
        }
    }

    fn connect_arrives(&mut self, conn: ConnId) {
        let now = self.now;
        let client_gone = self.links.get(&conn).is_none_or(|l| l.client_done);
        if client_gone {
            return;
        }
        if self.state.down(now) {
            let at = now + self.delay();
            let failure = TransportFailure::Refused;
            self.schedule(at, Ev::Client(Input::TransportFailed { conn, failure }));
            return;
        }
        match self.with_server(|s, ctx| s.on_connect(conn, ctx)) {
            Accept::Reject(status) => {
                let at = now + self.delay();
                let failure = TransportFailure::Http {
                    status,
                    retry_after: None,
                };
                self.schedule(at, Ev::Client(Input::TransportFailed { conn, failure }));
            }
            Accept::Accept => {
                let d = self.delay();
                // The upgrade's answer is the first thing the server sends: what it sends
                // next arrives after it.
                let at = match self.links.get_mut(&conn) {
                    Some(link) => {
                        link.server_open = true;
                        link.to_client.arrival(now, d)
                    }
                    None => now + d,
                };
                self.schedule(at, Ev::Client(Input::TransportOpened { conn }));
                if self.state.accepts_then_closes(now) {
                    self.close_to_client(
                        conn,
                        Some(1011),
                        "accept then close".into(),
                        Duration::ZERO,
                    );
                } else {
                    self.with_server(|s, ctx| s.on_open(conn, ctx));
                }
            }
        }
    }

    fn server_frame(&mut self, conn: ConnId, wire: Wire) {
        let Some(link) = self.links.get_mut(&conn) else {
            return;
        };
        if !link.server_open || link.half_open {
            // The answer to the server's own close frame still reaches it.
            if let Wire::Close(code, _) = &wire
                && link.awaiting_close_reply
                && !link.half_open
            {
                link.awaiting_close_reply = false;
                let code = *code;
                self.fact(Fact::CloseReceived { conn, code });
            } else if let Some(fingerprint) = data_fingerprint(&wire) {
                self.fact(Fact::Lost { conn, fingerprint });
            }
            return;
        }
        if let Wire::Close(code, _) = &wire {
            self.fact(Fact::CloseReceived { conn, code: *code });
        }
        // The server's WebSocket library answers pings and closes; the server never sees
        // them.
        if let Some(reply) = link::answer(&wire) {
            self.server_sends(conn, reply, Duration::ZERO);
        } else if let Some(fingerprint) = data_fingerprint(&wire) {
            self.fact(Fact::Received { conn, fingerprint });
            self.with_server(|s, ctx| s.on_frame(conn, wire, ctx));
        }
    }

    /// The server sends `wire` on an open link `after` from now: a close frame ends its
    /// side of the link.
    fn server_sends(&mut self, conn: ConnId, wire: Wire, after: Duration) {
        match wire.into_frame() {
            Ok(frame) => self.send_to_client(conn, frame, after),
            Err((code, reason)) => self.close_to_client(conn, code, reason, after),
        }
    }

    fn with_server<R>(&mut self, f: impl FnOnce(&mut S, &mut ServerCtx<'_>) -> R) -> R {
        let mut actions = std::mem::take(&mut self.actions);
        let r = {
            let mut ctx = ServerCtx {
                now: self.now,
                rng: &mut self.server_rng,
                flags: self.state.flags(self.now),
                actions: &mut actions,
            };
            f(&mut self.server, &mut ctx)
        };
        for action in actions.drain(..) {
            self.server_action(action);
        }
        self.actions = actions;
        r
    }

    fn server_action(&mut self, action: Action) {
        match action {
            Action::Send { conn, wire, after } => {
                let ok = self
                    .links
                    .get(&conn)
                    .is_some_and(|l| l.server_open && !l.half_open);
                if ok {
                    self.server_sends(conn, wire, after);
                }
            }
            Action::Close {
                conn,
                code,
                reason,
                after,
            } => self.close_to_client(conn, Some(code), reason, after),
            Action::Drop { conn } => {
                self.close_to_client(conn, None, String::new(), Duration::ZERO)
            }
            Action::Timer { conn, token, after } => {
                self.schedule(self.now + after, Ev::ServerTimer(conn, token));
            }
        }
    }

    // ---- faults -------------------------------------------------------------------------

    fn open_links(&self) -> Vec<ConnId> {
        self.links
            .iter()
            .filter(|(_, l)| l.server_open)
            .map(|(c, _)| *c)
            .collect()
    }

    fn fault(&mut self, fault: Fault) {
        self.timeline.push(self.now, Entry::Fault(fault.clone()));
        let now = self.now;
        self.state.apply(&fault, now);
        match &fault {
            Fault::ClockJump(d) => self.host.sleep(now, *d),
            Fault::Drop => {
                for conn in self.open_links() {
                    self.close_to_client(conn, None, String::new(), Duration::ZERO);
                }
            }
            Fault::ServerClose(code, reason) => {
                for conn in self.open_links() {
                    self.close_to_client(conn, Some(*code), reason.clone(), Duration::ZERO);
                }
            }
            Fault::HalfOpen(_) => {
                for link in self.links.values_mut().filter(|l| l.server_open) {
                    link.half_open = true;
                }
            }
            Fault::StopReading(d) => {
                for link in self.links.values_mut().filter(|l| l.server_open) {
                    link.stop_reading_until = now + *d;
                }
            }
            Fault::Garbage(kind) => {
                let frame = kind.frame(self.timeline.config.max_inbound_frame);
                for conn in self.open_links() {
                    if !self.links[&conn].half_open {
                        self.send_to_client(conn, frame.clone(), Duration::ZERO);
                    }
                }
            }
            Fault::UnknownResponse | Fault::DoubleAck(_) | Fault::Hostile(_) => {
                for conn in self.open_links() {
                    let f = fault.clone();
                    self.with_server(|s, ctx| s.on_fault(conn, &f, ctx));
                }
            }
            Fault::Restart { down, graceful } => {
                // The server hears of its restart first: a graceful one may say goodbye
                // (the OpenClaw gateway's `shutdown` event) before the close below.
                for conn in self.open_links() {
                    let f = fault.clone();
                    self.with_server(|s, ctx| s.on_fault(conn, &f, ctx));
                }
                for conn in self.open_links() {
                    let code = graceful.then_some(1012);
                    self.close_to_client(conn, code, "restart".into(), Duration::ZERO);
                }
                self.state.restart(now, *down, self.net.starting_period);
            }
            _ => {}
        }
    }

    fn heal(&mut self) {
        self.healed = true;
        self.timeline.push(self.now, Entry::Heal);
        self.plan.clear();
        self.state.heal();
        for link in self.links.values_mut() {
            link.half_open = false;
            link.stop_reading_until = Duration::ZERO;
        }
    }
}

/// The fingerprint of a data frame; `None` for control frames.
fn data_fingerprint(wire: &Wire) -> Option<u64> {
    match wire {
        Wire::Text(b) => Some(fingerprint(false, b)),
        Wire::Binary(b) => Some(fingerprint(true, b)),
        _ => None,
    }
}
