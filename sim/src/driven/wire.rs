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
use tether_core::{Config, ConfigError, ConnId, Event, TransportFailure};
use tether_driver::record::Options;
use tether_driver::{Dial, InboundLimits, Link, SendProtocol, Transport, WsTransport};

use super::{DrivenNet, NetEv, Run, SharedState, State, drive, lock, new_state};
use crate::pipe::{Clock, PipeConfig, PipeEnd, pipe};
use crate::server::{Accept, Action, Server};
use crate::wire::Wire;
use crate::wire_peer::{self, PeerCmd, PeerHost, PeerLog, PeerParts, PeerRecord, WireFault};
use crate::workload::Command;

/// The wire mode's part of a run's state.
pub(super) struct WireCtx {
    pipe: PipeConfig,
    log: PeerLog,
}

/// The network of a wire-mode run and the byte-level faults it suffers.
#[derive(Clone, Debug, Default)]
pub struct WireSetup {
    /// The pipes' latency, buffer size and partial writes.
    pub pipe: PipeConfig,
    /// Faults at their instants, each on the latest connection the peer has open then
    /// (none open: the fault is lost).
    pub faults: Vec<(Duration, WireFault)>,
}

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
    };
    let (state, session_seed) = new_state(server, seed, net, Some(ctx));
    {
        let mut st = lock(&state);
        for (at, fault) in setup.faults {
            st.schedule(at, NetEv::Fault(fault));
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
    let transport = WireTransport { ws, next };
    let run = Run {
        config,
        protocol,
        session_seed,
        commands,
        duration,
        options,
    };
    let events = drive(&state, transport, run)?;
    let peer_reads = std::mem::take(&mut *lock(&log));
    Ok(WireRun { events, peer_reads })
}

impl<S: Server> State<S> {
    /// Carries out a server's action through its connection's peer task.
    pub(super) fn peer_action(&mut self, action: Action) {
        let now = self.now;
        match action {
            // A close without a code is how a scripted server drops a connection.
            Action::Send {
                conn,
                wire: Wire::Close(None, _),
                after,
            } => self.schedule(
                now + after,
                NetEv::Peer(conn, PeerCmd::Fault(WireFault::Reset)),
            ),
            Action::Send { conn, wire, after } => {
                self.schedule(now + after, NetEv::Peer(conn, PeerCmd::Send(wire)));
            }
            Action::Close {
                conn,
                code,
                reason,
                after,
            } => {
                let wire = Wire::Close(Some(code), reason);
                self.schedule(now + after, NetEv::Peer(conn, PeerCmd::Send(wire)));
            }
            Action::Drop { conn } => {
                self.schedule(now, NetEv::Peer(conn, PeerCmd::Fault(WireFault::Reset)));
            }
            Action::Timer { conn, token, after } => {
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
        let mut accept = Accept::Accept;
        lock(&self.0).with_server(|s, ctx| accept = s.on_connect(conn, ctx));
        accept
    }
    fn opened(&self, conn: ConnId) {
        let mut st = lock(&self.0);
        if let Some(link) = st.links.get_mut(&conn) {
            link.server_open = true;
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
}

#[async_trait::async_trait]
impl<S: Server + Send + 'static> Transport for WireTransport<S> {
    async fn connect(&self, conn: ConnId) -> Result<Link, TransportFailure> {
        // The dial happens in this same poll (the executor is single-threaded), so no
        // other attempt can take the id in between.
        *lock(&self.next) = Some(conn);
        self.ws.connect(conn).await
    }

    fn set_inbound_limits(&mut self, limits: InboundLimits) {
        self.ws.set_inbound_limits(limits);
    }
}
