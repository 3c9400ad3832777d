//! From an accepted byte stream to a guarded connection: the WebSocket upgrade (bounded
//! in time), then the connection task.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_tungstenite::WebSocketStream;
use futures::FutureExt;
use futures::channel::mpsc;
use futures::io::{AsyncRead, AsyncWrite};
use tether_core::server::ServerConn;
use tether_core::{ConfigError, ConnId};

use async_tungstenite::tungstenite::protocol::Role;

use super::gate::{Limit, Outcome, Ticket};
use super::guard::{GuardConfig, Guarded, State};
use super::task::{self, Parts};
use super::upgrade::{self, Refused, Rules};
use crate::reset::Reset;
use crate::runtime::Runtime;
use crate::sniff::Sniffed;
use crate::transport::Link;

/// Ids of accepted connections, unique in the process.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Why an accepted socket did not become a guarded connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AcceptError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The socket closed or failed before its upgrade was answered; nothing was sent.
    #[error("websocket upgrade failed: {0}")]
    Upgrade(String),
    /// The upgrade did not complete within `upgrade_timeout`; the client was answered
    /// 408 (if it still read).
    #[error("websocket upgrade not completed within {0:?} (answered 408)")]
    Timeout(Duration),
    /// The request was not a valid WebSocket upgrade; the client was answered with
    /// `status`: 400 (malformed), 405 (not `GET`), 426 (not an upgrade to WebSocket
    /// version 13), 431 (head over `max_request_head`, or too many headers).
    #[error("upgrade request refused with HTTP {status}: {reason}")]
    BadRequest {
        /// The status sent.
        status: u16,
        /// Why, in words (also the response's body).
        reason: &'static str,
    },
    /// A limit of the [`Gate`](super::Gate): over `max_pending_upgrades` the socket was
    /// closed unanswered, over the others the client was answered 503 with `Retry-After`.
    #[error("upgrade refused: {0}")]
    Limited(Limit),
    /// The admission hook ([`GuardConfig::admit`]) refused the upgrade; the client was
    /// answered with this HTTP status.
    #[error("upgrade rejected by the admission hook with HTTP {status}")]
    Rejected {
        /// The status sent.
        status: u16,
    },
}

/// Performs the server side of the WebSocket upgrade on `io` (an accepted socket whose
/// options the adapter has set), within `config.upgrade_timeout`, then starts the
/// connection's task on `runtime`. The adapters' `accept` is this with their runtime.
///
/// # Errors
///
/// See [`AcceptError`]; the socket is dropped then.
pub async fn accept_ws<R, S>(
    runtime: R,
    io: S,
    peer: Option<SocketAddr>,
    config: GuardConfig,
) -> Result<Guarded, AcceptError>
where
    R: Runtime,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    accept_ws_with(runtime, io, None, peer, config).await
}

/// [`accept_ws`] with a [`Reset`] handle on the accepted socket, so a connection the
/// guard gives up on (silence, a missed send deadline, an eviction whose close went
/// unanswered) is reset rather than closed gracefully: the kernel then stops sending to a
/// peer that will never read. The adapters' `accept` makes the handle.
///
/// # Errors
///
/// See [`AcceptError`]; the socket is dropped then.
pub async fn accept_ws_with<R, S>(
    runtime: R,
    io: S,
    reset: Option<Reset>,
    peer: Option<SocketAddr>,
    config: GuardConfig,
) -> Result<Guarded, AcceptError>
where
    R: Runtime,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    config.validate()?;
    let ticket = match &config.gate {
        Some(gate) => match gate.arrive(peer) {
            Ok(ticket) => Some(ticket),
            Err(limit) => {
                tracing::debug!(peer = ?peer, %limit, "socket dropped unread");
                return Err(AcceptError::Limited(limit));
            }
        },
        None => None,
    };
    let mut ticket = ticket;
    let mut io = Sniffed::new(io);
    let rules = Rules {
        max_head: config.max_request_head,
        admit: config.admit.as_ref(),
        retry_after_secs: config.gate.as_ref().map_or(5, |g| {
            let d = g.config().retry_after;
            d.as_secs() + u64::from(d.subsec_nanos() > 0)
        }),
    };
    let outcome = {
        let upgrade = upgrade::upgrade(&mut io, peer, &rules, ticket.as_mut()).fuse();
        let timeout = runtime
            .sleep_until(runtime.now() + config.upgrade_timeout)
            .fuse();
        futures::pin_mut!(upgrade, timeout);
        futures::select_biased! {
            r = upgrade => Some(r),
            () = timeout => None,
        }
    };
    let accepted = match outcome {
        Some(Ok(accepted)) => accepted,
        Some(Err(refused)) => return Err(refused.into()),
        None => {
            if let Some(t) = ticket.as_mut() {
                t.count(Outcome::Timeout);
            }
            // A peer that does not read cannot hold the socket past the close timeout.
            let answer = upgrade::timeout_answer();
            let send = upgrade::send_refusal(&mut io, &answer).fuse();
            let limit = runtime
                .sleep_until(runtime.now() + config.server.close_timeout)
                .fuse();
            futures::pin_mut!(send, limit);
            futures::select_biased! {
                () = send => {},
                () = limit => {},
            }
            return Err(AcceptError::Timeout(config.upgrade_timeout));
        }
    };
    let codec = crate::ws_link::codec_config(config.server.max_inbound_frame);
    let ws =
        WebSocketStream::from_partially_read(io, accepted.rest, Role::Server, Some(codec)).await;
    let upgrade = Upgrade {
        reset,
        subprotocol: accepted.subprotocol,
        ticket,
    };
    Ok(guard_ws(runtime, ws, peer, config, upgrade)?)
}

/// What the upgrade leaves for the connection besides its WebSocket.
#[derive(Default)]
pub(super) struct Upgrade {
    /// Resets the socket when the guard gives up on it.
    pub(super) reset: Option<Reset>,
    /// The subprotocol the upgrade selected.
    pub(super) subprotocol: Option<String>,
    /// The connection's place at the gate, held until its task ends.
    pub(super) ticket: Option<Ticket>,
}

/// The tail every way in shares once the upgrade is done, however it was done: the
/// codec (made with [`codec_config`](crate::ws_link::codec_config) of
/// `max_inbound_frame`, over a byte stream wrapped in [`Sniffed`] before the upgrade, so
/// close codes are read as sent) becomes a link with the connection's inbound limits,
/// guarded by [`guard`]. [`accept_ws_with`] and
/// [`guard_upgraded`](super::guard_upgraded) both end here.
pub(super) fn guard_ws<R, S>(
    runtime: R,
    ws: WebSocketStream<Sniffed<S>>,
    peer: Option<SocketAddr>,
    config: GuardConfig,
    upgrade: Upgrade,
) -> Result<Guarded, ConfigError>
where
    R: Runtime,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let limits = crate::InboundLimits::new(
        runtime.clone(),
        config.server.max_inbound_frame,
        config.server.liveness.message_timeout,
    );
    let mut link = crate::ws_link::into_link(ws, upgrade.reset, Some(limits), None);
    link.subprotocol = upgrade.subprotocol;
    guard_with_ticket(runtime, link, peer, config, upgrade.ticket)
}

impl From<Refused> for AcceptError {
    fn from(refused: Refused) -> Self {
        match refused {
            Refused::BadRequest { status, reason } => AcceptError::BadRequest { status, reason },
            Refused::Limited(limit) => AcceptError::Limited(limit),
            Refused::Rejected { status } => AcceptError::Rejected { status },
            Refused::Failed(why) => AcceptError::Upgrade(why),
        }
    }
}

/// Starts guarding an already open connection (a [`Link`] from any transport: the
/// simulator's, a test's, a WebSocket upgraded elsewhere) and returns its handle.
///
/// # Errors
///
/// An invalid configuration.
pub fn guard<R: Runtime>(
    runtime: R,
    link: Link,
    peer: Option<SocketAddr>,
    config: GuardConfig,
) -> Result<Guarded, ConfigError> {
    guard_with_ticket(runtime, link, peer, config, None)
}

/// [`guard`], holding the connection's place at the gate until its task ends.
fn guard_with_ticket<R: Runtime>(
    runtime: R,
    link: Link,
    peer: Option<SocketAddr>,
    config: GuardConfig,
    ticket: Option<Ticket>,
) -> Result<Guarded, ConfigError> {
    config.validate()?;
    let id = ConnId::from_raw(NEXT_ID.fetch_add(1, Ordering::Relaxed));
    let machine = ServerConn::new(config.machine_config(), id, runtime.now())?;
    let clock = runtime.clone();
    let state = Arc::new(State::new(
        id,
        peer,
        config.server.max_pending_writes,
        config.inbound_bytes,
        Arc::new(move || clock.now()),
    ));
    let (cmds_tx, cmds_rx) = mpsc::unbounded();
    let (inbound_tx, inbound_rx) = mpsc::channel(config.inbound_capacity);
    // The connection's place at the gate is free once its task has ended. Not an `async`
    // block awaiting the task: that would hold the task's future twice, as the block's
    // capture and as the future it awaits.
    let task = task::run(Parts {
        rt: runtime.clone(),
        machine,
        link,
        state: state.clone(),
        cmds: cmds_rx,
        inbound: inbound_tx,
    })
    .map(move |()| drop(ticket));
    let span = tracing::debug_span!("server_conn", conn = %id, peer = ?peer);
    runtime.spawn(tracing::Instrument::instrument(task, span).boxed());
    tracing::debug!(conn = %id, peer = ?peer, "accepted");
    Ok(Guarded::new(state, cmds_tx, inbound_rx))
}
