//! The server side on tokio: accept a TCP connection as a guarded WebSocket connection.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use tether_tokio::server::{accept, GuardConfig, Hub, HubConfig};
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9000").await?;
//! let hub = Hub::new(HubConfig::default())?;
//! loop {
//!     let (stream, _) = listener.accept().await?;
//!     let hub = hub.clone();
//!     tokio::spawn(async move {
//!         if let Ok(conn) = accept(stream, GuardConfig::default()).await {
//!             let _ = hub.join(conn);
//!         }
//!     });
//! }
//! # }
//! ```

use async_tungstenite::tokio::TokioAdapter;
pub use tether_driver::server::{
    AcceptError, Admission, Admit, Broadcast, DeliveryError, Departure, Gate, GateConfig,
    GateStats, GuardConfig, Guarded, Hub, HubConfig, HubStats, LeaveReason, Limit, UpgradeRequest,
};
pub use tether_driver::server::{UpgradeRefusal, http, upgrade_headers, upgrade_response};

use crate::Tokio;
// Topics and the Redis backplane of a hub (see `docs/server.md`).
pub use crate::backplane::backplane;
pub use tether_driver::server::{
    Backplane, BackplaneConfig, BackplaneError, BackplaneEvent, BackplaneStats,
    DEFAULT_MAX_MEMBERS, MAX_MEMBERS, MAX_TOPIC_LEN, MAX_TOPICS_PER_MEMBER, Side, TopicError,
};

/// Sets `TCP_NODELAY` and keepalive on an accepted socket (see
/// [`configure`](crate::configure)), performs the WebSocket upgrade within
/// `config.upgrade_timeout`, and starts guarding the connection on the current tokio
/// runtime.
///
/// # Errors
///
/// See [`AcceptError`].
pub async fn accept(
    stream: tokio::net::TcpStream,
    config: GuardConfig,
) -> Result<Guarded, AcceptError> {
    crate::configure(&stream);
    let peer = stream.peer_addr().ok();
    let (io, reset) = tether_driver::Resettable::new(TokioAdapter::new(stream), |io| {
        tether_driver::linger_zero(socket2::SockRef::from(io.get_ref()));
    });
    tether_driver::server::accept_ws_with(Tokio, io, Some(reset), peer, config).await
}

/// Starts guarding, on the current tokio runtime, a WebSocket connection that another
/// HTTP server upgraded: `io` is the raw I/O right after the `101` (for hyper and axum,
/// `hyper_util::rt::TokioIo::new(hyper::upgrade::on(request).await?)`), `peer` the
/// client's address if the server knows it. Answer the request with
/// [`upgrade_response`] first.
///
/// The connection then behaves as one from [`accept`] (liveness, send deadline, close
/// handshake, inbound limits, close codes as sent), except that there is no reset
/// handle on foreign I/O, and the upgrade timeout, admission and socket options are the
/// HTTP server's business. See
/// [`tether_driver::server::guard_upgraded`].
///
/// ```no_run
/// # async fn demo(io: tokio::net::TcpStream) -> Result<(), Box<dyn std::error::Error>> {
/// // `io`: hyper's upgraded connection, or any tokio byte stream after a 101.
/// let conn = tether_tokio::server::guard_upgraded(io, None, Default::default()).await?;
/// while let Some(frame) = conn.recv().await {
///     conn.send(frame).await?;
/// }
/// # Ok(())
/// # }
/// ```
///
/// # Errors
///
/// An invalid configuration.
pub async fn guard_upgraded<S>(
    io: S,
    peer: Option<std::net::SocketAddr>,
    config: GuardConfig,
) -> Result<Guarded, tether_driver::tether_core::ConfigError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    tether_driver::server::guard_upgraded(Tokio, TokioAdapter::new(io), peer, config).await
}
