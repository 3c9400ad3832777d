//! The driver on virtual time: the same `tether-driver` the tokio and smol adapters run,
//! executed by a deterministic single-threaded executor whose clock moves only when every
//! task is idle, over a virtual transport to a scripted [`Server`].
//!
//! The network is the fault-free core of the [`World`](crate::World)'s, with the same
//! rules from the same code (`sim/src/link.rs`, `sim/src/queue.rs`): one event queue
//! ordered by (time, sequence), fixed one-way latency, frames in order, writes complete
//! after `write_latency`, pings answered, closes echoed; at equal times network events
//! come before workload commands, which come before session timers.
//! With the same seed, server, commands and latencies, a `World` (no faults, no jitter) and
//! [`run_driver`] hand the session the same inputs at the same instants, so it emits the
//! same events — `tests/tests/driver_equivalence.rs` checks exactly that.
//!
//! [`run_driver_wire`] is the wire mode: the same executor and network rules, but the
//! client runs the driver's real `WsTransport` over [byte pipes](crate::pipe) to a peer
//! behind a real codec ([`wire_peer`](crate::wire_peer)), with byte-level
//! [`WireFault`]s and the world's connection-level [`Fault`]s ([`PLAN_FAULTS`]). On
//! fault-free scenarios both modes deliver the same events at the same instants
//! (`sim/tests/wire_equivalence.rs`), and under the world's fault plans too
//! (`tests/tests/driver_equivalence.rs`).

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use futures::channel::{mpsc, oneshot};
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::task::ArcWake;
use futures::{Sink, StreamExt};
use tether_core::{CloseCode, Config, ConfigError, ConnId, Event, TransportFailure};
use tether_driver::record::Options;
use tether_driver::{Client, Incoming, Inline, Link, Outgoing, Runtime, SendProtocol, Transport};

use crate::fault::Fault;
use crate::link::{self, Lane, Latency};
use crate::net::NetState;
use crate::queue::Queue;
use crate::server::{Accept, Action, Server, ServerCtx};
use crate::wire::Wire;
use crate::wire_peer::{PeerCmd, WireFault};
use crate::workload::Command;

mod wire;

pub use wire::{PLAN_FAULTS, Tamper, WireRun, WireSetup, run_driver_wire, run_driver_wire_with};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Single-threaded: a poisoned lock can only follow a panic that already fails the run.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Something that happens on the virtual network at an instant.
enum NetEv {
    Connect(ConnId),
    ToServer(ConnId, Wire),
    ServerGone(ConnId),
    Timer(ConnId, u64),
    Opened(ConnId),
    ToClient(ConnId, Incoming),
    Dropped(ConnId),
    Rejected(ConnId, u16),
    /// Wire mode: a command for the peer task of a connection.
    Peer(ConnId, PeerCmd),
    /// Wire mode: a fault for the latest connection the peer has open.
    Fault(WireFault),
    /// Wire mode: a value-level fault of the plan, applied as the world applies it.
    Plan(Fault),
}

#[derive(Default)]
struct LinkState {
    tx: Option<mpsc::UnboundedSender<Result<Incoming, std::io::Error>>>,
    opened: Option<oneshot::Sender<Result<Link, TransportFailure>>>,
    server_open: bool,
    /// Client to server: frames stay in order (TCP).
    to_server: Lane,
    /// Server to client: frames stay in order.
    to_client: Lane,
    /// Wire mode: the connection's peer task.
    peer: Option<mpsc::UnboundedSender<PeerCmd>>,
}

struct State<S> {
    epoch: Instant,
    now: Duration,
    timers: Vec<(Duration, Waker)>,
    net: Queue<NetEv>,
    links: BTreeMap<ConnId, LinkState>,
    server: S,
    server_rng: fastrand::Rng,
    /// The network's generator, for trips: a driven run's latency has no jitter, so its
    /// draws change nothing, but the trips are drawn as the world's are.
    net_rng: fastrand::Rng,
    latency: Latency,
    write_latency: Duration,
    spawned: Vec<BoxFuture<'static, ()>>,
    /// `now` in nanoseconds, readable without the lock (pipes read it).
    now_mirror: Arc<AtomicU64>,
    /// Wire mode: frames cross byte pipes through real codecs.
    wire: Option<wire::WireCtx>,
    /// The plan's faults in force (wire mode; a value-mode driven run has none), under
    /// the world's rules: what a dial meets, the server's flags.
    faults: NetState,
}

type SharedState<S> = Arc<Mutex<State<S>>>;

impl<S: Server> State<S> {
    fn schedule(&mut self, at: Duration, ev: NetEv) {
        self.net.push(at, ev);
    }

    /// One trip on the wire.
    fn trip(&mut self) -> Duration {
        self.latency.trip(&mut self.net_rng)
    }

    fn with_server(&mut self, f: impl FnOnce(&mut S, &mut ServerCtx<'_>)) {
        let mut actions = Vec::new();
        let mut ctx = ServerCtx {
            now: self.now,
            rng: &mut self.server_rng,
            flags: self.faults.flags(self.now),
            actions: &mut actions,
        };
        f(&mut self.server, &mut ctx);
        for a in actions {
            self.server_action(a);
        }
    }

    fn send_to_client(&mut self, conn: ConnId, ev: NetEv, after: Duration, closes: bool) {
        let now = self.now;
        let trip = self.trip();
        let Some(link) = self.links.get_mut(&conn) else {
            return;
        };
        if !link.server_open {
            return;
        }
        let at = link.to_client.arrival(now + after, trip);
        if closes {
            link.server_open = false;
        }
        self.schedule(at, ev);
        if closes {
            self.schedule(now + after, NetEv::ServerGone(conn));
        }
    }

    fn server_action(&mut self, action: Action) {
        if self.wire.is_some() {
            self.peer_action(action);
            return;
        }
        match action {
            Action::Send { conn, wire, after } => self.server_sends(conn, wire, after),
            Action::Close {
                conn,
                code,
                reason,
                after,
            } => self.send_to_client(conn, close_ev(conn, Some(code), reason), after, true),
            Action::Drop { conn } => {
                self.send_to_client(conn, NetEv::Dropped(conn), Duration::ZERO, true)
            }
            Action::Timer { conn, token, after } => {
                let at = self.now + after;
                self.schedule(at, NetEv::Timer(conn, token));
            }
        }
    }

    /// The server sends `wire` `after` from now: a close frame ends its side of the link.
    fn server_sends(&mut self, conn: ConnId, wire: Wire, after: Duration) {
        match wire.into_frame() {
            Ok(frame) => {
                let ev = NetEv::ToClient(conn, Incoming::Frame(frame));
                self.send_to_client(conn, ev, after, false);
            }
            Err((code, reason)) => {
                self.send_to_client(conn, close_ev(conn, code, reason), after, true);
            }
        }
    }

    fn event(&mut self, ev: NetEv) {
        match ev {
            NetEv::Connect(conn) => {
                let mut accept = Accept::Accept;
                self.with_server(|s, ctx| accept = s.on_connect(conn, ctx));
                let (now, trip) = (self.now, self.trip());
                match accept {
                    Accept::Accept => {
                        // The upgrade's answer is the first thing the server sends: what
                        // it sends next arrives after it.
                        let at = match self.links.get_mut(&conn) {
                            Some(link) => {
                                link.server_open = true;
                                link.to_client.arrival(now, trip)
                            }
                            None => now + trip,
                        };
                        self.schedule(at, NetEv::Opened(conn));
                        self.with_server(|s, ctx| s.on_open(conn, ctx));
                    }
                    Accept::Reject(status) => {
                        self.schedule(now + trip, NetEv::Rejected(conn, status));
                    }
                }
            }
            NetEv::ToServer(conn, wire) => {
                if !self.links.get(&conn).is_some_and(|l| l.server_open) {
                    return;
                }
                // The server's WebSocket library answers pings and closes; the server
                // never sees them.
                match link::answer(&wire) {
                    Some(reply) => self.server_sends(conn, reply, Duration::ZERO),
                    None if matches!(wire, Wire::Pong) => {}
                    None => self.with_server(|s, ctx| s.on_frame(conn, wire, ctx)),
                }
            }
            NetEv::ServerGone(conn) => self.with_server(|s, ctx| s.on_closed(conn, ctx)),
            NetEv::Timer(conn, token) => {
                if self.links.get(&conn).is_some_and(|l| l.server_open) {
                    self.with_server(|s, ctx| s.on_timer(conn, token, ctx));
                }
            }
            NetEv::Opened(conn) => {
                let Some(link) = self.links.get_mut(&conn) else {
                    return;
                };
                let (tx, rx) = mpsc::unbounded();
                link.tx = Some(tx);
                if let Some(opened) = link.opened.take() {
                    let _ = opened.send(Ok(Link {
                        sink: Box::pin(VirtualSink {
                            conn,
                            done_at: None,
                        }),
                        stream: Box::pin(rx),
                        reset: None,
                        subprotocol: None,
                    }));
                }
            }
            NetEv::Rejected(conn, status) => {
                if let Some(opened) = self.links.get_mut(&conn).and_then(|l| l.opened.take()) {
                    let _ = opened.send(Err(TransportFailure::Http {
                        status,
                        retry_after: None,
                    }));
                }
            }
            NetEv::ToClient(conn, item) => {
                if let Some(tx) = self.links.get(&conn).and_then(|l| l.tx.as_ref()) {
                    let closes = matches!(item, Incoming::Closed(..));
                    let _ = tx.unbounded_send(Ok(item));
                    if closes {
                        tx.close_channel();
                    }
                }
            }
            NetEv::Dropped(conn) => {
                if let Some(tx) = self.links.get(&conn).and_then(|l| l.tx.as_ref()) {
                    let _ = tx.unbounded_send(Err(std::io::ErrorKind::ConnectionReset.into()));
                    tx.close_channel();
                }
            }
            NetEv::Peer(conn, cmd) => {
                if let Some(peer) = self.links.get(&conn).and_then(|l| l.peer.as_ref()) {
                    let _ = peer.unbounded_send(cmd);
                }
            }
            NetEv::Fault(fault) => {
                let open = self.links.values().rev().find(|l| l.server_open);
                if let Some(peer) = open.and_then(|l| l.peer.as_ref()) {
                    let _ = peer.unbounded_send(PeerCmd::Fault(fault));
                }
            }
            NetEv::Plan(fault) => self.plan_fault(fault),
        }
    }
}

fn close_ev(conn: ConnId, code: Option<u16>, reason: String) -> NetEv {
    match code {
        Some(c) => NetEv::ToClient(conn, Incoming::Closed(Some(CloseCode(c)), reason)),
        None => NetEv::Dropped(conn),
    }
}

thread_local! {
    /// The run's state, reachable from sinks that cannot carry a typed handle (the sink
    /// is boxed before the run's server type is known to it).
    static CURRENT: std::cell::RefCell<Option<Box<dyn SinkHost>>> = const { std::cell::RefCell::new(None) };
}

/// The part of the state a sink needs, without the server's type.
trait SinkHost {
    fn write(&self, conn: ConnId, out: Outgoing) -> Duration;
    fn now(&self) -> Duration;
    fn wait_until(&self, at: Duration, waker: Waker);
}

struct Host<S>(SharedState<S>);

impl<S: Server> SinkHost for Host<S> {
    fn write(&self, conn: ConnId, out: Outgoing) -> Duration {
        let mut st = lock(&self.0);
        let (now, wl) = (st.now, st.write_latency);
        let wire = match out {
            Outgoing::Frame(frame) => Wire::sent(&frame),
            Outgoing::Close(code, reason) => Wire::Close(Some(code.0), reason),
        };
        let trip = st.trip();
        if let Some(link) = st.links.get_mut(&conn) {
            let at = link.to_server.arrival(now, trip);
            st.schedule(at, NetEv::ToServer(conn, wire));
        }
        // The virtual kernel takes every write: no fault here stops the server reading.
        link::write_done(now, wl)
    }
    fn now(&self) -> Duration {
        lock(&self.0).now
    }
    fn wait_until(&self, at: Duration, waker: Waker) {
        lock(&self.0).timers.push((at, waker));
    }
}

/// A connection's write half: a write is accepted at once and completes after the write
/// latency; the frame reaches the server one latency later.
struct VirtualSink {
    conn: ConnId,
    done_at: Option<Duration>,
}

impl Sink<Outgoing> for VirtualSink {
    type Error = std::io::Error;
    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.poll_flush(cx)
    }
    fn start_send(mut self: Pin<&mut Self>, item: Outgoing) -> Result<(), Self::Error> {
        let conn = self.conn;
        let done = CURRENT.with(|c| c.borrow().as_ref().map(|h| h.write(conn, item)));
        self.done_at = done;
        Ok(())
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let Some(at) = self.done_at else {
            return Poll::Ready(Ok(()));
        };
        let now = CURRENT.with(|c| c.borrow().as_ref().map_or(at, |h| h.now()));
        if now >= at {
            self.done_at = None;
            return Poll::Ready(Ok(()));
        }
        let waker = cx.waker().clone();
        CURRENT.with(|c| {
            if let Some(h) = c.borrow().as_ref() {
                h.wait_until(at, waker);
            }
        });
        Poll::Pending
    }
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.poll_flush(cx)
    }
}

/// A [`Runtime`] on virtual time.
struct VirtualRuntime<S>(SharedState<S>);

impl<S> Clone for VirtualRuntime<S> {
    fn clone(&self) -> Self {
        VirtualRuntime(self.0.clone())
    }
}

struct Sleep<S> {
    state: SharedState<S>,
    at: Duration,
}

impl<S> Future for Sleep<S> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut st = lock(&self.state);
        if st.now >= self.at {
            Poll::Ready(())
        } else {
            st.timers.push((self.at, cx.waker().clone()));
            Poll::Pending
        }
    }
}

impl<S: Server + Send + 'static> Runtime for VirtualRuntime<S> {
    fn spawn(&self, future: BoxFuture<'static, ()>) {
        lock(&self.0).spawned.push(future);
    }

    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()> {
        let at = deadline.saturating_duration_since(lock(&self.0).epoch);
        Box::pin(Sleep {
            state: self.0.clone(),
            at,
        })
    }

    fn now(&self) -> Instant {
        let st = lock(&self.0);
        st.epoch + st.now
    }
}

/// A [`Transport`] over the virtual network.
struct VirtualTransport<S>(SharedState<S>);

#[async_trait::async_trait]
impl<S: Server + Send + 'static> Transport for VirtualTransport<S> {
    async fn connect(&self, conn: ConnId) -> Result<Link, TransportFailure> {
        let (tx, rx) = oneshot::channel();
        {
            let mut st = lock(&self.0);
            let at = st.now + st.trip();
            st.links.insert(
                conn,
                LinkState {
                    opened: Some(tx),
                    ..LinkState::default()
                },
            );
            st.schedule(at, NetEv::Connect(conn));
        }
        rx.await.unwrap_or(Err(TransportFailure::Refused))
    }
}

struct Flag(AtomicBool);

impl ArcWake for Flag {
    fn wake_by_ref(arc_self: &Arc<Self>) {
        arc_self.0.store(true, Ordering::SeqCst);
    }
}

/// Events with the instant they were published.
type Timed<P> = Vec<(Duration, Event<P>)>;

/// Network parameters of a driven run (fault-free).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DrivenNet {
    /// One-way latency.
    pub latency: Duration,
    /// Time for a write to complete.
    pub write_latency: Duration,
}

/// Runs `protocol` through `tether-driver` against `server` on virtual time: connects at
/// t = 0, issues `commands` at their times, closes at `duration`, and returns every
/// session event with its time. `seed` is derived as a [`World`](crate::World) derives it.
///
/// # Errors
///
/// The session's [`ConfigError`].
pub fn run_driver<P, S>(
    config: Config,
    protocol: P,
    server: S,
    seed: u64,
    net: DrivenNet,
    commands: Vec<(Duration, Command<P>)>,
    duration: Duration,
) -> Result<Vec<(Duration, Event<P>)>, ConfigError>
where
    P: SendProtocol,
    S: Server + Send + 'static,
{
    run_virtual(
        config, protocol, server, seed, net, commands, duration, false,
    )
}

/// [`run_driver`] with the session an [`Inline`] one: a task of the run's own polls it for
/// events and makes the commands' calls on it directly, as an application that drives its
/// session from its own task does. The same scenario yields the same events at the same
/// instants as through a [`Client`] (`tests/tests/driver_equivalence.rs`).
///
/// # Errors
///
/// The session's [`ConfigError`].
pub fn run_driver_inline<P, S>(
    config: Config,
    protocol: P,
    server: S,
    seed: u64,
    net: DrivenNet,
    commands: Vec<(Duration, Command<P>)>,
    duration: Duration,
) -> Result<Vec<(Duration, Event<P>)>, ConfigError>
where
    P: SendProtocol,
    S: Server + Send + 'static,
{
    run_virtual(
        config, protocol, server, seed, net, commands, duration, true,
    )
}

/// [`run_driver`] or [`run_driver_inline`], by `inline`.
#[allow(clippy::too_many_arguments)] // The two public entry points' arguments and the mode.
fn run_virtual<P, S>(
    config: Config,
    protocol: P,
    server: S,
    seed: u64,
    net: DrivenNet,
    commands: Vec<(Duration, Command<P>)>,
    duration: Duration,
    inline: bool,
) -> Result<Vec<(Duration, Event<P>)>, ConfigError>
where
    P: SendProtocol,
    S: Server + Send + 'static,
{
    let (state, session_seed) = new_state(server, seed, net, None);
    let transport = VirtualTransport(state.clone());
    let run = Run {
        config,
        protocol,
        session_seed,
        commands,
        duration,
        options: Options::default(),
        inline,
    };
    drive(&state, transport, run)
}

/// A run's state, and the session's seed, derived from `seed` as a
/// [`World`](crate::World) derives them.
fn new_state<S: Server>(
    server: S,
    seed: u64,
    net: DrivenNet,
    wire: Option<wire::WireCtx>,
) -> (SharedState<S>, u64) {
    let mut master = fastrand::Rng::with_seed(seed);
    let session_seed = master.u64(..);
    // The network's seed, then the server's, drawn in the world's order so the scripted
    // servers behave identically.
    let net_rng = fastrand::Rng::with_seed(master.u64(..));
    let server_rng = fastrand::Rng::with_seed(master.u64(..));
    // The only clock read: an arbitrary epoch; everything is an offset from it.
    #[allow(clippy::disallowed_methods)]
    let epoch = Instant::now();
    let state = Arc::new(Mutex::new(State {
        epoch,
        now: Duration::ZERO,
        timers: Vec::new(),
        net: Queue::default(),
        links: BTreeMap::new(),
        server,
        server_rng,
        net_rng,
        latency: Latency {
            base: net.latency,
            jitter: Duration::ZERO,
        },
        write_latency: net.write_latency,
        spawned: Vec::new(),
        now_mirror: Arc::default(),
        wire,
        faults: NetState::default(),
    }));
    (state, session_seed)
}

/// What a driven run does, besides its network.
struct Run<P: SendProtocol> {
    config: Config,
    protocol: P,
    session_seed: u64,
    commands: Vec<(Duration, Command<P>)>,
    duration: Duration,
    /// The session's options (a flight recorder, say).
    options: Options<P>,
    /// Whether the session is an [`Inline`] one, polled by a task of the run's own,
    /// rather than a [`Client`] with a task of its own.
    inline: bool,
}

/// Runs the client over `transport` on the virtual clock of `state`: connects at t = 0,
/// issues the commands at their times, closes at the run's duration, and returns every
/// session event with its time.
fn drive<P, S, T>(
    state: &SharedState<S>,
    transport: T,
    run: Run<P>,
) -> Result<Vec<(Duration, Event<P>)>, ConfigError>
where
    P: SendProtocol,
    S: Server + Send + 'static,
    T: Transport,
{
    let Run {
        config,
        protocol,
        session_seed,
        commands,
        duration,
        options,
        inline,
    } = run;
    CURRENT.with(|c| *c.borrow_mut() = Some(Box::new(Host(state.clone()))));
    let rt = VirtualRuntime(state.clone());
    let events: Arc<Mutex<Timed<P>>> = Arc::default();
    let not_config = |e| match e {
        tether_driver::ConnectError::Config(c) => c,
        // Invariant: starting fails only on configuration.
        _ => ConfigError::Zero("unexpected"),
    };
    let mut front = if inline {
        let session = Inline::start_with(
            rt.clone(),
            transport,
            config.clone(),
            protocol,
            session_seed,
            "sim",
            options,
        )
        .map_err(not_config)?;
        let (tx, rx) = mpsc::unbounded();
        rt.spawn(Box::pin(poll_inline(
            session,
            rx,
            events.clone(),
            state.clone(),
        )));
        Front::Inline(tx)
    } else {
        let client = Client::start_with(
            rt.clone(),
            transport,
            config.clone(),
            protocol,
            session_seed,
            "sim",
            options,
        )
        .map_err(not_config)?;
        let sink = events.clone();
        let clock = state.clone();
        let mut subscription = client.events();
        rt.spawn(Box::pin(async move {
            while let Some(e) = subscription.next().await {
                let now = lock(&clock).now;
                lock(&sink).push((now, e));
            }
        }));
        Front::Client(Some(client))
    };
    let mut commands: VecDeque<(Duration, Command<P>)> = commands.into();
    let mut tasks: FuturesUnordered<BoxFuture<'static, ()>> = FuturesUnordered::new();
    let flag = Arc::new(Flag(AtomicBool::new(true)));
    let waker = futures::task::waker(flag.clone());
    let grace = duration + config.close_timeout + Duration::from_secs(2);
    let mut closed = false;
    loop {
        // Run every task until none can make progress.
        loop {
            let spawned = std::mem::take(&mut lock(state).spawned);
            let any_new = !spawned.is_empty();
            tasks.extend(spawned);
            if !any_new && !flag.0.swap(false, Ordering::SeqCst) {
                break;
            }
            let mut cx = Context::from_waker(&waker);
            while let Poll::Ready(Some(())) = tasks.poll_next_unpin(&mut cx) {}
        }
        // The next instant: network, then commands, then timers, as the world orders them.
        let (next_net, next_timer) = {
            let st = lock(state);
            (st.net.next_at(), st.timers.iter().map(|(t, _)| *t).min())
        };
        let next_cmd = commands.front().map(|(t, _)| *t);
        let close_at = (!closed).then_some(duration);
        let Some(next) = [next_net, next_cmd, next_timer, close_at]
            .into_iter()
            .flatten()
            .min()
        else {
            break;
        };
        if next > grace {
            break;
        }
        let mut st = lock(state);
        st.now = st.now.max(next);
        let now = st.now;
        st.now_mirror.store(
            u64::try_from(now.as_nanos()).unwrap_or(u64::MAX),
            Ordering::SeqCst,
        );
        if next_net == Some(next)
            && let Some((_, ev)) = st.net.pop()
        {
            st.event(ev);
            continue;
        }
        drop(st);
        if next_cmd == Some(next) && next_cmd <= close_at.or(Some(next)) {
            if let Some((_, cmd)) = commands.pop_front() {
                front.command(state, cmd);
            }
            continue;
        }
        if close_at == Some(next) {
            closed = true;
            commands.clear();
            front.close(state);
            continue;
        }
        let due: Vec<Waker> = {
            let mut st = lock(state);
            let (due, keep): (Vec<_>, Vec<_>) = st.timers.drain(..).partition(|(t, _)| *t <= now);
            st.timers = keep;
            due.into_iter().map(|(_, w)| w).collect()
        };
        for w in due {
            w.wake();
        }
    }
    CURRENT.with(|c| *c.borrow_mut() = None);
    // The tasks (the client's, the peers') end here, before the state they point to.
    drop(tasks);
    let out = std::mem::take(&mut *lock(&events));
    Ok(out)
}

/// How the run reaches its session.
enum Front<P: SendProtocol> {
    /// A [`Client`]: each command a task of its own, as an application's would be.
    Client(Option<Client<P>>),
    /// An [`Inline`] session, owned by [`poll_inline`]'s task: commands go to it.
    Inline(mpsc::UnboundedSender<Command<P>>),
}

impl<P: SendProtocol> Front<P> {
    fn command<S: Server>(&mut self, state: &SharedState<S>, cmd: Command<P>) {
        match self {
            Front::Client(Some(c)) => lock(state).spawned.push(Box::pin(command(c.clone(), cmd))),
            Front::Client(None) => {}
            Front::Inline(tx) => {
                let _ = tx.unbounded_send(cmd);
            }
        }
    }

    fn close<S: Server>(&mut self, state: &SharedState<S>) {
        match self {
            Front::Client(c) => {
                if let Some(c) = c.take() {
                    lock(state)
                        .spawned
                        .push(Box::pin(async move { c.close().await }));
                }
            }
            Front::Inline(tx) => {
                let _ = tx.unbounded_send(Command::Close);
                tx.close_channel();
            }
        }
    }
}

/// The application's task of an inline run: polls the session for events (recording each
/// with its instant) and carries out the run's commands as they come, until the session's
/// events end.
async fn poll_inline<P: SendProtocol, S: Server + Send + 'static>(
    mut session: Inline<P, VirtualRuntime<S>>,
    mut commands: mpsc::UnboundedReceiver<Command<P>>,
    events: Arc<Mutex<Timed<P>>>,
    clock: SharedState<S>,
) {
    let mut commands_open = true;
    loop {
        let next = if commands_open {
            match futures::future::select(session.next(), commands.next()).await {
                futures::future::Either::Left((ev, _)) => Ok(ev),
                futures::future::Either::Right((cmd, _)) => Err(cmd),
            }
        } else {
            Ok(session.next().await)
        };
        match next {
            Ok(Some(e)) => {
                let now = lock(&clock).now;
                lock(&events).push((now, e));
            }
            Ok(None) => return,
            Err(None) => commands_open = false,
            Err(Some(cmd)) => match cmd {
                Command::Send(m) => {
                    let _ = session.send(m);
                }
                Command::Request { request, timeout } => {
                    let _ = match timeout {
                        Some(t) => session.request_with_timeout(request, t),
                        None => session.request(request),
                    };
                }
                Command::Close => session.close(),
                Command::Terminate => session.terminate(),
                Command::Connect => {}
            },
        }
    }
}

async fn command<P: SendProtocol>(client: Client<P>, cmd: Command<P>) {
    match cmd {
        Command::Send(m) => {
            let _ = client.send(m).await;
        }
        Command::Request { request, timeout } => {
            let _ = match timeout {
                Some(t) => client.request_with_timeout(request, t).await,
                None => client.request(request).await,
            };
        }
        Command::Close => client.close().await,
        Command::Terminate => client.terminate(),
        Command::Connect => {}
    }
}
