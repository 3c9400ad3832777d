//! Scripted servers: the peer a simulated session talks to.

use std::time::Duration;

use tether_core::ConnId;

use crate::wire::Wire;

/// What a server does with a connection attempt that reached it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Accept {
    /// Complete the WebSocket upgrade.
    Accept,
    /// Answer the upgrade with this HTTP status.
    Reject(u16),
}

/// Switches the built-in servers consult, set by the fault plan. A user's server may
/// honour or ignore them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerFlags {
    /// Do not acknowledge handshakes.
    pub never_ack: bool,
    /// Acknowledge each handshake twice.
    pub double_ack: bool,
    /// The server just restarted: refuse handshakes as "starting" (1013).
    pub starting: bool,
}

/// An action a server asks the world to carry out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    Send {
        conn: ConnId,
        wire: Wire,
        after: Duration,
    },
    Close {
        conn: ConnId,
        code: u16,
        reason: String,
        after: Duration,
    },
    Drop {
        conn: ConnId,
    },
    Timer {
        conn: ConnId,
        token: u64,
        after: Duration,
    },
}

/// What a server may do while handling an event.
#[derive(Debug)]
pub struct ServerCtx<'a> {
    pub(crate) now: Duration,
    pub(crate) rng: &'a mut fastrand::Rng,
    pub(crate) flags: ServerFlags,
    pub(crate) actions: &'a mut Vec<Action>,
}

impl ServerCtx<'_> {
    /// Simulated time since the start of the run.
    pub fn now(&self) -> Duration {
        self.now
    }

    /// The server's own seeded generator.
    pub fn rng(&mut self) -> &mut fastrand::Rng {
        self.rng
    }

    /// The fault switches in force.
    pub fn flags(&self) -> ServerFlags {
        self.flags
    }

    /// Sends a frame now.
    pub fn send(&mut self, conn: ConnId, wire: Wire) {
        self.send_after(conn, wire, Duration::ZERO);
    }

    /// Sends a frame after a processing delay.
    pub fn send_after(&mut self, conn: ConnId, wire: Wire, after: Duration) {
        self.actions.push(Action::Send { conn, wire, after });
    }

    /// Closes the connection with a close frame.
    pub fn close(&mut self, conn: ConnId, code: u16, reason: &str) {
        self.close_after(conn, code, reason, Duration::ZERO);
    }

    /// Closes the connection with a close frame after a delay.
    pub fn close_after(&mut self, conn: ConnId, code: u16, reason: &str, after: Duration) {
        self.actions.push(Action::Close {
            conn,
            code,
            reason: reason.to_owned(),
            after,
        });
    }

    /// Drops the connection without a close frame.
    pub fn drop_conn(&mut self, conn: ConnId) {
        self.actions.push(Action::Drop { conn });
    }

    /// Calls [`Server::on_timer`] for `conn` with `token` after `after`.
    pub fn timer(&mut self, conn: ConnId, token: u64, after: Duration) {
        self.actions.push(Action::Timer { conn, token, after });
    }
}

/// A scripted peer. Connections are identified by the session's generation ids (the
/// simulated network keeps them the same on both ends, which makes timelines readable).
pub trait Server {
    /// An upgrade request arrived.
    fn on_connect(&mut self, conn: ConnId, ctx: &mut ServerCtx<'_>) -> Accept {
        let _ = (conn, ctx);
        Accept::Accept
    }

    /// The upgrade completed; the server may speak first.
    fn on_open(&mut self, conn: ConnId, ctx: &mut ServerCtx<'_>) {
        let _ = (conn, ctx);
    }

    /// A frame arrived from the client.
    fn on_frame(&mut self, conn: ConnId, frame: Wire, ctx: &mut ServerCtx<'_>);

    /// The connection is gone (closed or dropped).
    fn on_closed(&mut self, conn: ConnId, ctx: &mut ServerCtx<'_>) {
        let _ = (conn, ctx);
    }

    /// A timer the server armed with [`ServerCtx::timer`] fired.
    fn on_timer(&mut self, conn: ConnId, token: u64, ctx: &mut ServerCtx<'_>) {
        let _ = (conn, token, ctx);
    }

    /// A protocol-level fault asks the server to misbehave on `conn` now
    /// ([`Fault::UnknownResponse`](crate::Fault::UnknownResponse),
    /// [`Fault::DoubleAck`](crate::Fault::DoubleAck)), or the server is about to restart
    /// ([`Fault::Restart`](crate::Fault::Restart), called for each open connection
    /// before the world drops or closes it: a last frame sent now arrives before the
    /// close). Servers that cannot ignore it.
    fn on_fault(&mut self, conn: ConnId, fault: &crate::Fault, ctx: &mut ServerCtx<'_>) {
        let _ = (conn, fault, ctx);
    }
}

/// A server made of one closure over [`ServerEvent`]s: the quickest way to script a peer.
///
/// ```
/// use tether_sim::{FnServer, ServerEvent, Wire};
/// let echo = FnServer::new(|event, ctx| {
///     if let ServerEvent::Frame(conn, Wire::Text(t)) = event {
///         ctx.send(conn, Wire::Text(t));
///     }
/// });
/// # let _ = echo;
/// ```
pub struct FnServer<F>(F);

/// What happened at a [`FnServer`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerEvent {
    /// The upgrade completed.
    Open(ConnId),
    /// A frame arrived.
    Frame(ConnId, Wire),
    /// The connection is gone.
    Closed(ConnId),
    /// A timer fired.
    Timer(ConnId, u64),
}

impl<F: FnMut(ServerEvent, &mut ServerCtx<'_>)> FnServer<F> {
    /// Wraps the closure.
    pub fn new(f: F) -> Self {
        FnServer(f)
    }
}

impl<F: FnMut(ServerEvent, &mut ServerCtx<'_>)> Server for FnServer<F> {
    fn on_open(&mut self, conn: ConnId, ctx: &mut ServerCtx<'_>) {
        (self.0)(ServerEvent::Open(conn), ctx);
    }
    fn on_frame(&mut self, conn: ConnId, frame: Wire, ctx: &mut ServerCtx<'_>) {
        (self.0)(ServerEvent::Frame(conn, frame), ctx);
    }
    fn on_closed(&mut self, conn: ConnId, ctx: &mut ServerCtx<'_>) {
        (self.0)(ServerEvent::Closed(conn), ctx);
    }
    fn on_timer(&mut self, conn: ConnId, token: u64, ctx: &mut ServerCtx<'_>) {
        (self.0)(ServerEvent::Timer(conn, token), ctx);
    }
}
