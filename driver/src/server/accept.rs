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

use super::guard::{GuardConfig, Guarded, State};
use super::task::{self, Parts};
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
    /// The WebSocket upgrade failed (not an upgrade request, a bad header, I/O).
    #[error("websocket upgrade failed: {0}")]
    Upgrade(String),
    /// The upgrade did not complete within `upgrade_timeout`.
    #[error("websocket upgrade not completed within {0:?}")]
    Timeout(Duration),
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
    let ws = crate::ws_link::codec_config(config.server.max_inbound_frame);
    let upgrade =
        async_tungstenite::accept_async_with_config(crate::sniff::Sniffed::new(io), Some(ws))
            .fuse();
    let deadline = runtime.now() + config.upgrade_timeout;
    let timeout = runtime.sleep_until(deadline).fuse();
    futures::pin_mut!(upgrade, timeout);
    let ws = futures::select_biased! {
        r = upgrade => r.map_err(|e| AcceptError::Upgrade(e.to_string()))?,
        () = timeout => return Err(AcceptError::Timeout(config.upgrade_timeout)),
    };
    Ok(guard_ws(runtime, ws, reset, peer, config)?)
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
    reset: Option<Reset>,
    peer: Option<SocketAddr>,
    config: GuardConfig,
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
    let link = crate::ws_link::into_link(ws, reset, Some(limits), None);
    guard(runtime, link, peer, config)
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
    let task = task::run(Parts {
        rt: runtime.clone(),
        machine,
        link,
        state: state.clone(),
        cmds: cmds_rx,
        inbound: inbound_tx,
    });
    let span = tracing::debug_span!("server_conn", conn = %id, peer = ?peer);
    runtime.spawn(tracing::Instrument::instrument(task, span).boxed());
    tracing::debug!(conn = %id, peer = ?peer, "accepted");
    Ok(Guarded::new(state, cmds_tx, inbound_rx))
}
