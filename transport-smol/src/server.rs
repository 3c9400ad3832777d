//! The server side on smol: accept a TCP connection as a guarded WebSocket connection.
//!
//! ```no_run
//! # fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use tether_smol::server::{accept, GuardConfig, Hub, HubConfig};
//!
//! smol::block_on(async {
//!     let listener = smol::net::TcpListener::bind("127.0.0.1:9000").await?;
//!     let hub = Hub::new(HubConfig::default())?;
//!     loop {
//!         let (stream, _) = listener.accept().await?;
//!         let hub = hub.clone();
//!         smol::spawn(async move {
//!             if let Ok(conn) = accept(stream, GuardConfig::default()).await {
//!                 let _ = hub.join(conn);
//!             }
//!         })
//!         .detach();
//!     }
//! })
//! # }
//! ```

pub use tether_driver::server::{
    AcceptError, Broadcast, DeliveryError, Departure, GuardConfig, Guarded, Hub, HubConfig,
    HubStats, LeaveReason,
};

use crate::Smol;

/// Sets `TCP_NODELAY` and keepalive on an accepted socket (through
/// [`configure_socket`](tether_driver::configure_socket)), performs the WebSocket upgrade
/// within `config.upgrade_timeout`, and starts guarding the connection on smol's global
/// executor.
///
/// # Errors
///
/// See [`AcceptError`].
pub async fn accept(
    stream: smol::net::TcpStream,
    config: GuardConfig,
) -> Result<Guarded, AcceptError> {
    tether_driver::configure_socket(socket2::SockRef::from(&stream));
    let peer = stream.peer_addr().ok();
    let reset = tether_driver::Reset::of(socket2::SockRef::from(&stream));
    tether_driver::server::accept_ws_with(Smol, stream, reset, peer, config).await
}
