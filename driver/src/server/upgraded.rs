//! Bring your own HTTP server: a connection that something else upgraded (hyper's
//! `upgrade::on`, axum, a hand-written HTTP exchange) becomes a [`Guarded`] connection
//! that behaves exactly like one from [`accept_ws`](super::accept_ws).

use std::net::SocketAddr;

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::protocol::Role;
use futures::io::{AsyncRead, AsyncWrite};
use tether_core::ConfigError;

use super::accept::{Upgrade, guard_ws};
use super::guard::{GuardConfig, Guarded};
use crate::runtime::Runtime;
use crate::sniff::Sniffed;

/// Starts guarding a WebSocket connection whose upgrade another HTTP server performed:
/// `io` is the raw byte stream right after the `101 Switching Protocols` response (its
/// next byte is the client's first frame header), for example hyper's upgraded
/// connection. The adapters' `guard_upgraded` is this with their runtime.
///
/// From here on the connection is the same as one from [`accept_ws`](super::accept_ws):
/// the same codec limits (`server.max_inbound_frame`, 1009 past it), the same inbound
/// limits (`server.liveness.message_timeout`), liveness, send deadline, close handshake,
/// and close codes read as the peer sent them. What differs:
///
/// - there is no [`Reset`](crate::Reset) handle on foreign I/O, so a connection the guard
///   gives up on is dropped (the HTTP server closes its socket) rather than reset;
/// - `config.upgrade_timeout` does not apply: the upgrade already happened, and bounding
///   it (and deciding whom to admit) was the HTTP server's job;
/// - socket options (`TCP_NODELAY`, keepalive) are the HTTP server's to set.
///
/// The 101 must not have accepted an extension (permessage-deflate): the codec speaks
/// none. [`upgrade_response`](super::upgrade_response) makes a 101 that accepts none.
///
/// # Errors
///
/// An invalid configuration; `io` is dropped then.
pub async fn guard_upgraded<R, S>(
    runtime: R,
    io: S,
    peer: Option<SocketAddr>,
    config: GuardConfig,
) -> Result<Guarded, ConfigError>
where
    R: Runtime,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    config.validate()?;
    let codec = crate::ws_link::codec_config(config.server.max_inbound_frame);
    let ws =
        WebSocketStream::from_raw_socket(Sniffed::upgraded(io), Role::Server, Some(codec)).await;
    tracing::debug!(peer = ?peer, "guarding a connection upgraded elsewhere");
    guard_ws(runtime, ws, peer, config, Upgrade::default())
}
