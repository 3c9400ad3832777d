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
    AcceptError, Admission, Admit, Broadcast, DeliveryError, Departure, Gate, GateConfig,
    GateStats, GuardConfig, Guarded, Hub, HubConfig, HubStats, LeaveReason, Limit, UpgradeRequest,
};
pub use tether_driver::server::{UpgradeRefusal, http, upgrade_headers, upgrade_response};

use crate::Smol;
// Topics and the Redis backplane of a hub (see `docs/server.md`).
pub use crate::backplane::backplane;
pub use tether_driver::server::{
    Backplane, BackplaneConfig, BackplaneError, BackplaneEvent, BackplaneStats,
    DEFAULT_MAX_MEMBERS, MAX_MEMBERS, MAX_TOPIC_LEN, MAX_TOPICS_PER_MEMBER, Side, TopicError,
};

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
    let (io, reset) = tether_driver::Resettable::new(stream, |s| {
        tether_driver::linger_zero(socket2::SockRef::from(s));
    });
    tether_driver::server::accept_ws_with(Smol, io, Some(reset), peer, config).await
}

/// Starts guarding, on smol's global executor, a WebSocket connection that another HTTP
/// server upgraded: `io` is the raw I/O right after the `101` (any futures
/// `AsyncRead + AsyncWrite`), `peer` the client's address if the server knows it.
/// Answer the request with [`upgrade_response`] first.
///
/// The connection then behaves as one from [`accept`] (liveness, send deadline, close
/// handshake, inbound limits, close codes as sent), except that there is no reset
/// handle on foreign I/O, and the upgrade timeout, admission and socket options are the
/// HTTP server's business. See
/// [`tether_driver::server::guard_upgraded`].
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
    S: futures::io::AsyncRead + futures::io::AsyncWrite + Unpin + Send + 'static,
{
    tether_driver::server::guard_upgraded(Smol, io, peer, config).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// B5: the accepted socket has `TCP_NODELAY` and keepalive, set before the upgrade
    /// (the peer hangs up at once, so the upgrade fails after the options were set).
    #[test]
    fn accept_sets_nodelay_and_keepalive() {
        smol::block_on(async {
            let listener = smol::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let client = smol::net::TcpStream::connect(addr).await.unwrap();
            let (stream, _) = listener.accept().await.unwrap();
            // A clone shares the socket: its options can be read after `accept` took it.
            let same = stream.clone();
            let sock = socket2::SockRef::from(&same);
            assert!(
                !sock.tcp_nodelay().unwrap(),
                "the OS default, or the test proves nothing"
            );
            drop(client);
            assert!(accept(stream, GuardConfig::default()).await.is_err());
            assert!(sock.tcp_nodelay().unwrap(), "TCP_NODELAY");
            assert!(sock.keepalive().unwrap(), "SO_KEEPALIVE");
            #[cfg(any(target_os = "linux", target_os = "android"))]
            {
                let (idle, interval, retries) = tether_driver::KEEPALIVE;
                assert_eq!(sock.tcp_keepalive_time().unwrap(), idle);
                assert_eq!(sock.tcp_keepalive_interval().unwrap(), interval);
                assert_eq!(sock.tcp_keepalive_retries().unwrap(), retries);
            }
        });
    }
}
