//! The wire mode of a driven run: the driver's real [`WsTransport`] (client handshake,
//! async-tungstenite codec, the close-code watcher, the link's close handshake and
//! message timeout) over [simulated byte pipes](crate::pipe) to a scripted server whose
//! end speaks through a real codec too ([`wire_peer`](crate::wire_peer)).
//!
//! The network rules are the value mode's (one-way latency, order kept, pings and
//! closes answered), but the codecs carry them out: a close code the codec rewrites, a
//! frame it refuses, a close it must answer, all happen here as on a socket.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Waker;
use std::time::Duration;

use futures::channel::mpsc;
use tether_core::{
    CloseCode, Config, ConfigError, ConnId, Event, MAX_CLOSE_REASON, TransportFailure,
};
use tether_driver::record::Options;
use tether_driver::{Dial, InboundLimits, Incoming, Link, SendProtocol, Transport, WsTransport};

use super::{DrivenNet, NetEv, Run, SharedState, Sleep, State, drive, lock, new_state};
use crate::fault::{Fault, FaultPlan};
use crate::net::{Dialed, NetConfig};
use crate::pipe::{Clock, PipeConfig, PipeEnd, pipe};
use crate::server::{Accept, Action, Server};
use crate::wire::Wire;
use crate::wire_peer::{self, PeerCmd, PeerHost, PeerLog, PeerParts, PeerRecord, WireFault};
use crate::workload::Command;
use crate::ws_frames::{opcode, server_frame};

/// The wire mode's part of a run's state.
pub(super) struct WireCtx {
    pipe: PipeConfig,
    log: PeerLog,
    /// The session's inbound limit: a `Garbage::Oversized` frame is one byte over it.
    max_inbound: usize,
}

/// The network of a wire-mode run and the faults it suffers.
#[derive(Clone, Debug, Default)]
pub struct WireSetup {
    /// The pipes' latency, buffer size and partial writes.
    pub pipe: PipeConfig,
    /// Byte-level faults at their instants, each on the latest connection the peer has
    /// open then (none open: the fault is lost).
    pub faults: Vec<(Duration, WireFault)>,
    /// Value-level faults, each meaning what it means in the [`World`](crate::World):
    /// the connection-level ones are carried out by the dial, the peer's codec and the
    /// pipes (`docs/simulation.md`, "The wire mode", says how each maps); `Latency`, `Duplicate`,
    /// `Reorder` and `ClockJump` are not taken and do nothing.
    pub plan: FaultPlan,
    /// Rewrites what the transport hands the session: a model of a transport bug, to show
    /// that the oracles catch one. Passes everything through by default.
    pub tamper: Tamper,
}

/// A rewrite of every item the transport hands the session ([`WireSetup::tamper`]), for
/// tests that break the transport on purpose, e.g. reporting the codec's own 1002 for
/// the close code the peer sent, as a transport that trusts tungstenite's rewrite would.
#[derive(Clone, Default)]
pub struct Tamper(Option<Arc<TamperFn>>);

type TamperFn = dyn Fn(Incoming) -> Incoming + Send + Sync;

impl Tamper {
    /// A tamper that passes each item through `f`.
    pub fn new(f: impl Fn(Incoming) -> Incoming + Send + Sync + 'static) -> Self {
        Tamper(Some(Arc::new(f)))
    }
}

impl std::fmt::Debug for Tamper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Tamper(on)"
        } else {
            "Tamper(off)"
        })
    }
}

/// The names ([`Fault::NAMES`]) of the value-level faults a wire-mode run takes in
/// [`WireSetup::plan`]: every connection-level fault. Not taken: `latency` (the pipes'
/// latency is fixed per run), `duplicate` and `reorder` (TCP neither duplicates nor
/// reorders), `clock-jump` (the driver's host does not sleep on virtual time).
pub const PLAN_FAULTS: &[&str] = &[
    "refuse",
    "blackhole",
    "slow-connect",
    "reject-upgrade",
    "drop",
    "server-close",
    "half-open",
    "stop-reading",
    "garbage",
    "never-ack",
    "double-ack",
    "unknown-response",
    "restart",
    "accept-then-close",
    "hostile",
];

/// What a wire-mode run produced.
#[derive(Debug)]
pub struct WireRun<P: tether_core::Protocol> {
    /// Every session event with the instant it was published.
    pub events: Vec<(Duration, Event<P>)>,
    /// Every frame the peer read off its wire, parsed from the bytes.
    pub peer_reads: Vec<PeerRecord>,
}

/// Runs `protocol` through `tether-driver`'s real WebSocket transport against `server` on
/// virtual time, as [`run_driver`](super::run_driver) does over frames as values: connects
/// at t = 0, issues `commands` at their times, applies `setup`'s faults, closes at
/// `duration`. `seed` is derived as a [`World`](crate::World) derives it.
///
/// # Errors
///
/// The session's [`ConfigError`].
pub fn run_driver_wire<P, S>(
    config: Config,
    protocol: P,
    server: S,
    seed: u64,
    setup: WireSetup,
    commands: Vec<(Duration, Command<P>)>,
    duration: Duration,
) -> Result<WireRun<P>, ConfigError>
where
    P: SendProtocol,
    S: Server + Send + 'static,
{
    run_driver_wire_with(
        config,
        protocol,
        server,
        seed,
        setup,
        commands,
        duration,
        Options::default(),
    )
}

/// [`run_driver_wire`] with the session's [`Options`]: a flight recorder, so that the run
/// can be replayed and judged by the oracles (`wire_campaign`), or a subscriber budget.
///
/// # Errors
///
/// The session's [`ConfigError`].
#[allow(clippy::too_many_arguments)] // The run's parts, as `run_driver_wire` takes them.
pub fn run_driver_wire_with<P, S>(
    config: Config,
    protocol: P,
    server: S,
    seed: u64,
    setup: WireSetup,
    commands: Vec<(Duration, Command<P>)>,
    duration: Duration,
    options: Options<P>,
) -> Result<WireRun<P>, ConfigError>
where
    P: SendProtocol,
    S: Server + Send + 'static,
{
    let log = PeerLog::default();
    let net = DrivenNet {
        latency: setup.pipe.latency,
        write_latency: Duration::ZERO,
    };
    let ctx = WireCtx {
        pipe: setup.pipe,
        log: log.clone(),
        max_inbound: config.max_inbound_frame,
    };
    let (state, session_seed) = new_state(server, seed, net, Some(ctx));
    {
        let mut st = lock(&state);
        for (at, fault) in setup.faults {
            st.schedule(at, NetEv::Fault(fault));
        }
        for (at, fault) in setup.plan.entries {
            st.schedule(at, NetEv::Plan(fault));
        }
    }
    let next = Arc::new(Mutex::new(None));
    let dial = SimDial {
        state: state.clone(),
        next: next.clone(),
    };
    // Invariant: the URL is a constant, valid `ws://` URL.
    let ws = WsTransport::new(dial, "ws://sim.invalid/")
        .map_err(|_| ConfigError::Zero("simulated url"))?;
    let transport = WireTransport {
        ws,
        next,
        tamper: setup.tamper,
    };
    let run = Run {
        config,
        protocol,
        session_seed,
        commands,
        duration,
        options,
        inline: false,
    };
    let events = drive(&state, transport, run)?;
    let peer_reads = std::mem::take(&mut *lock(&log));
    Ok(WireRun { events, peer_reads })
}

/// How long a restarted server answers "starting", as the world's default
/// [`NetConfig::starting_period`].
fn starting_period() -> Duration {
    NetConfig::default().starting_period
}

/// What the peer sends for a server's close with `code` and `reason`: a close frame
/// through its codec when the code may be sent and the reason fits, otherwise the same
/// frame written raw (the codec is not asked to send what a peer may not).
fn close_cmd(code: u16, reason: &str) -> PeerCmd {
    if CloseCode(code).is_valid_on_wire() && reason.len() <= MAX_CLOSE_REASON {
        PeerCmd::Send(Wire::Close(Some(code), reason.to_owned()))
    } else {
        PeerCmd::Fault(WireFault::close(code, reason))
    }
}

impl<S: Server> State<S> {
    /// Applies a value-level fault of the plan at its instant, meaning what the
    /// [`World`](crate::World) means by it, under the same rules ([`NetState`]):
    ///
    /// - `RefuseConnects`, `BlackholeConnects`, `SlowConnects`, `RejectUpgrade`: what a
    ///   dial meets while they are in force ([`SimDial`]);
    /// - `NeverAck`, `DoubleAck`, a restart's "starting" period: the server's flags;
    ///   `AcceptThenClose`: the peer answers a completed upgrade with a 1011 close;
    /// - on every connection the server has open: `Drop` resets it; `ServerClose` sends
    ///   the close frame (through the codec, or raw when a codec would not send it);
    ///   `Garbage` writes the bad frame raw; `HalfOpen` severs the pipe (for good, as the
    ///   world's half-open link lasts until the heal, which a wire run does not have);
    ///   `StopReading(d)` stops the peer reading for `d` (it writes on);
    ///   `UnknownResponse`, `DoubleAck`, `Hostile` and `Restart` are told to the server;
    /// - `Restart` then closes (1012) or resets every connection and refuses dials while
    ///   down.
    ///
    /// Every peer command goes through the event queue, after what the server sent
    /// before on the connection (a goodbye before a restart, a delayed answer before a
    /// drop), as the world's lane delivers them.
    pub(super) fn plan_fault(&mut self, fault: Fault) {
        let now = self.now;
        self.faults.apply(&fault, now);
        match &fault {
            Fault::Drop => {
                for conn in self.open_conns() {
                    self.server_ends(conn, PeerCmd::Fault(WireFault::Reset));
                }
            }
            Fault::ServerClose(code, reason) => {
                for conn in self.open_conns() {
                    self.server_ends(conn, close_cmd(*code, reason));
                }
            }
            Fault::Garbage(kind) => {
                let max = self.wire.as_ref().map_or(usize::MAX - 1, |w| w.max_inbound);
                let (binary, payload) = kind.payload(max);
                let op = if binary { opcode::BINARY } else { opcode::TEXT };
                let frame = server_frame(op, true, &payload);
                for conn in self.open_conns() {
                    let cmd = PeerCmd::Fault(WireFault::Raw(frame.clone()));
                    self.send_peer(conn, Duration::ZERO, cmd);
                }
            }
            Fault::HalfOpen(_) => {
                // What the server already sent is on its way, as in the world.
                for conn in self.open_conns() {
                    self.send_peer(conn, Duration::ZERO, PeerCmd::Fault(WireFault::HalfOpen));
                }
            }
            Fault::StopReading(d) => {
                for conn in self.open_conns() {
                    self.schedule(now, NetEv::Peer(conn, PeerCmd::StopReading));
                    self.schedule(now + *d, NetEv::Peer(conn, PeerCmd::ResumeReading));
                }
            }
            Fault::UnknownResponse | Fault::DoubleAck(_) | Fault::Hostile(_) => {
                for conn in self.open_conns() {
                    self.with_server(|s, ctx| s.on_fault(conn, &fault, ctx));
                }
            }
            Fault::Restart { down, graceful } => {
                // The server hears of its restart first: a graceful one may say goodbye
                // before the close below.
                for conn in self.open_conns() {
                    self.with_server(|s, ctx| s.on_fault(conn, &fault, ctx));
                }
                for conn in self.open_conns() {
                    let cmd = if *graceful {
                        PeerCmd::Send(Wire::Close(Some(1012), "restart".into()))
                    } else {
                        PeerCmd::Fault(WireFault::Reset)
                    };
                    self.server_ends(conn, cmd);
                }
                self.faults.restart(now, *down, starting_period());
            }
            _ => {}
        }
    }

    /// The connections the server has open, oldest first.
    fn open_conns(&self) -> Vec<ConnId> {
        self.links
            .iter()
            .filter(|(_, l)| l.server_open)
            .map(|(c, _)| *c)
            .collect()
    }

    /// The server ends `conn` with `cmd` (a close frame or a reset) now: as in the world,
    /// it reads nothing more from it and hears at once that it is gone, while its peer
    /// task carries the ending out on the wire.
    fn server_ends(&mut self, conn: ConnId, cmd: PeerCmd) {
        let now = self.now;
        if let Some(link) = self.links.get_mut(&conn) {
            link.server_open = false;
        }
        self.send_peer(conn, Duration::ZERO, cmd);
        self.schedule(now, NetEv::ServerGone(conn));
    }

    /// Hands `cmd` to `conn`'s peer task `after` from now, in order behind what the
    /// server sent before on it ([`peer_at`](Self::peer_at)).
    fn send_peer(&mut self, conn: ConnId, after: Duration, cmd: PeerCmd) {
        let at = self.peer_at(conn, after);
        self.schedule(at, NetEv::Peer(conn, cmd));
    }

    /// When the peer writes what the server sends `after` from now on `conn`: then, but
    /// never before what the server sent earlier on it (the world's lane rule: the server
    /// writes in the order it sends, whatever the processing delay of each).
    fn peer_at(&mut self, conn: ConnId, after: Duration) -> Duration {
        let sent = self.now + after;
        match self.links.get_mut(&conn) {
            Some(link) => link.to_client.arrival(sent, Duration::ZERO),
            None => sent,
        }
    }

    /// Carries out a server's action through its connection's peer task.
    pub(super) fn peer_action(&mut self, action: Action) {
        match action {
            // A close without a code is how a scripted server drops a connection.
            Action::Send {
                conn,
                wire: Wire::Close(None, _),
                after,
            } => self.send_peer(conn, after, PeerCmd::Fault(WireFault::Reset)),
            Action::Send { conn, wire, after } => self.send_peer(conn, after, PeerCmd::Send(wire)),
            Action::Close {
                conn,
                code,
                reason,
                after,
            } => {
                let wire = Wire::Close(Some(code), reason);
                self.send_peer(conn, after, PeerCmd::Send(wire));
            }
            Action::Drop { conn } => {
                self.send_peer(conn, Duration::ZERO, PeerCmd::Fault(WireFault::Reset));
            }
            Action::Timer { conn, token, after } => {
                let now = self.now;
                self.schedule(now + after, NetEv::Timer(conn, token));
            }
        }
    }
}

/// The run's clock as pipes see it.
struct VClock<S> {
    now: Arc<AtomicU64>,
    state: SharedState<S>,
}

impl<S: Server + Send + 'static> Clock for VClock<S> {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.now.load(Ordering::SeqCst))
    }
    fn wake_at(&self, at: Duration, waker: Waker) {
        lock(&self.state).timers.push((at, waker));
    }
}

/// The scripted server, as a peer task reaches it.
struct Peers<S>(SharedState<S>);

impl<S: Server + Send + 'static> PeerHost for Peers<S> {
    fn accept(&self, conn: ConnId) -> Accept {
        let mut st = lock(&self.0);
        if st.faults.down(st.now) {
            // Dialed before a restart, arriving while the server is down: the world
            // refuses it; here the connection is already made, so the upgrade is
            // answered "unavailable" instead.
            return Accept::Reject(503);
        }
        let mut accept = Accept::Accept;
        st.with_server(|s, ctx| accept = s.on_connect(conn, ctx));
        accept
    }
    fn opened(&self, conn: ConnId) {
        let mut st = lock(&self.0);
        if let Some(link) = st.links.get_mut(&conn) {
            link.server_open = true;
        }
        if st.faults.accepts_then_closes(st.now) {
            // As in the world: the server never hears of the opening, only of the end.
            let close = Wire::Close(Some(1011), "accept then close".into());
            st.server_ends(conn, PeerCmd::Send(close));
            return;
        }
        st.with_server(|s, ctx| s.on_open(conn, ctx));
    }
    fn frame(&self, conn: ConnId, wire: Wire) {
        let mut st = lock(&self.0);
        if st.links.get(&conn).is_some_and(|l| l.server_open) {
            st.with_server(|s, ctx| s.on_frame(conn, wire, ctx));
        }
    }
    fn closed(&self, conn: ConnId) {
        let mut st = lock(&self.0);
        if let Some(link) = st.links.get_mut(&conn)
            && std::mem::take(&mut link.server_open)
        {
            link.peer = None;
            st.with_server(|s, ctx| s.on_closed(conn, ctx));
        }
    }
}

/// Opens a pipe to a new peer task for the connection [`WireTransport`] is opening.
struct SimDial<S> {
    state: SharedState<S>,
    next: Arc<Mutex<Option<ConnId>>>,
}

#[async_trait::async_trait]
impl<S: Server + Send + 'static> Dial for SimDial<S> {
    type Io = PipeEnd;

    async fn dial(&self, _host: &str, _port: u16) -> io::Result<PipeEnd> {
        let conn = lock(&self.next)
            .take()
            .ok_or_else(|| io::Error::other("dialed outside a connection attempt"))?;
        // What the plan's faults in force make of the attempt, by the world's rule.
        let (now, dialed, latency) = {
            let st = lock(&self.state);
            let latency = st.wire.as_ref().map_or(Duration::ZERO, |w| w.pipe.latency);
            (st.now, st.faults.dial(st.now), latency)
        };
        let sleep = |at| Sleep {
            state: self.state.clone(),
            at,
        };
        let mut reject = None;
        match dialed {
            // The refusal comes back after a round trip, as in the world.
            Dialed::Refused => {
                sleep(now + 2 * latency).await;
                return Err(io::ErrorKind::ConnectionRefused.into());
            }
            // Never completes: the session's connect timeout fires and drops the attempt.
            Dialed::Blackholed => {
                futures::future::pending::<()>().await;
                return Err(io::ErrorKind::TimedOut.into());
            }
            // The peer's codec answers the upgrade with the status (a round trip, as the
            // request and its answer cross the pipe).
            Dialed::Rejected(TransportFailure::Http {
                status,
                retry_after,
            }) => reject = Some((status, retry_after)),
            Dialed::Rejected(_) => return Err(io::ErrorKind::ConnectionRefused.into()),
            // The upgrade request leaves `extra` later.
            Dialed::Proceeds { extra } => {
                if !extra.is_zero() {
                    sleep(now + extra).await;
                }
            }
        }
        let clock: Arc<dyn Clock> = Arc::new(VClock {
            now: lock(&self.state).now_mirror.clone(),
            state: self.state.clone(),
        });
        let host: Arc<dyn PeerHost> = Arc::new(Peers(self.state.clone()));
        let mut st = lock(&self.state);
        let Some(wire) = &st.wire else {
            return Err(io::Error::other("not a wire-mode run"));
        };
        let (client, server) = pipe(clock.clone(), wire.pipe);
        let log = wire.log.clone();
        let (tx, rx) = mpsc::unbounded();
        st.links.insert(
            conn,
            super::LinkState {
                peer: Some(tx),
                ..super::LinkState::default()
            },
        );
        let parts = PeerParts {
            io: server,
            conn,
            host,
            log,
            clock,
            reject,
        };
        st.spawned.push(Box::pin(wire_peer::serve(parts, rx)));
        Ok(client)
    }
}

/// The driver's [`WsTransport`], told which connection each dial is for (the scripted
/// server knows connections by the session's ids).
struct WireTransport<S> {
    ws: WsTransport<SimDial<S>>,
    next: Arc<Mutex<Option<ConnId>>>,
    tamper: Tamper,
}

#[async_trait::async_trait]
impl<S: Server + Send + 'static> Transport for WireTransport<S> {
    async fn connect(&self, conn: ConnId) -> Result<Link, TransportFailure> {
        // The dial happens in this same poll (the executor is single-threaded), so no
        // other attempt can take the id in between.
        *lock(&self.next) = Some(conn);
        let mut link = self.ws.connect(conn).await?;
        if let Some(f) = self.tamper.0.clone() {
            link.stream = Box::pin(futures::StreamExt::map(link.stream, move |item| {
                item.map(|i| f(i))
            }));
        }
        Ok(link)
    }

    fn set_inbound_limits(&mut self, limits: InboundLimits) {
        self.ws.set_inbound_limits(limits);
    }
}
