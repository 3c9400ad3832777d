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
    AcceptError, Broadcast, DeliveryError, Departure, GuardConfig, Guarded, Hub, HubConfig,
    HubStats, LeaveReason,
};

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
    let reset = tether_driver::Reset::of(socket2::SockRef::from(&stream));
    tether_driver::server::accept_ws_with(Tokio, TokioAdapter::new(stream), reset, peer, config)
        .await
}
