//! tether on tokio.
//!
//! Supplies the two things the runtime-agnostic driver needs — a [`Runtime`] (spawn, sleep,
//! now, on [`tether_driver::clock::os_clock`], which counts suspended time so that a
//! laptop's sleep reaches the session as a clock jump) and a [`Dial`] that opens TCP connections with `TCP_NODELAY` and keepalive (idle
//! 60 s, interval 10 s, 3 probes) — and re-exports the driver's [`Client`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use tether_tokio::{connect, tether_core::{Config, profiles::HelloAck}};
//! let hello = HelloAck::new(|| serde_json::json!({"type": "hello"}));
//! let client = connect("ws://127.0.0.1:9000/ws", Config::default(), hello).await?;
//! client.close().await;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod server;

use std::io;
use std::time::Instant;

use async_tungstenite::tokio::TokioAdapter;
use futures::future::BoxFuture;
use tether_driver::tether_core::Config;
pub use tether_driver::{
    CMD_CAPACITY, CallError, Client, ConnectError, Dial, KEEPALIVE, Runtime, STREAM_CAPACITY,
    SUBSCRIBER_CAPACITY, SendProtocol, StreamCall, WsTransport, record, tether_core,
};
// HTTP `CONNECT` proxies for `WsTransport::proxy`.
pub use tether_driver::{Proxy, UrlError};
// TLS options for `wss://` (`WsTransport::tls`), and the rustls crate they are built
// with (feature `rustls`; `native-roots` adds `Tls::native_roots`).
#[cfg(feature = "rustls")]
pub use tether_driver::{Tls, TlsError, rustls};

/// The tokio runtime (the one the caller is running in).
#[derive(Clone, Copy, Debug, Default)]
pub struct Tokio;

impl Runtime for Tokio {
    fn spawn(&self, future: BoxFuture<'static, ()>) {
        tokio::spawn(future);
    }

    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()> {
        // tokio's timers run on the monotonic clock, which skips suspended time.
        let at = tether_driver::clock::os_clock().to_monotonic(deadline);
        Box::pin(tokio::time::sleep_until(at.into()))
    }

    /// Reads [`os_clock`](tether_driver::clock::os_clock), which counts the time the host
    /// was suspended, so that a resume is a clock jump to the session.
    fn now(&self) -> Instant {
        tether_driver::clock::os_clock().now()
    }
}

/// Dials TCP with `TCP_NODELAY` and keepalive set before the WebSocket handshake.
#[derive(Clone, Copy, Debug, Default)]
pub struct TcpDial;

#[async_trait::async_trait]
impl Dial for TcpDial {
    type Io = TokioAdapter<tokio::net::TcpStream>;

    async fn dial(&self, host: &str, port: u16) -> io::Result<Self::Io> {
        let stream = tokio::net::TcpStream::connect((host, port)).await?;
        configure(&stream);
        Ok(TokioAdapter::new(stream))
    }

    fn reset_handle(&self, io: &Self::Io) -> Option<tether_driver::Reset> {
        tether_driver::Reset::of(socket2::SockRef::from(io.get_ref()))
    }
}

/// Sets `TCP_NODELAY` and [`KEEPALIVE`] on a tokio socket (see
/// [`configure_socket`](tether_driver::configure_socket)).
pub fn configure(stream: &tokio::net::TcpStream) {
    tether_driver::configure_socket(socket2::SockRef::from(stream));
}

/// Connects to `url` with `protocol` and waits for the first connect's outcome. The
/// seed (jitter, idempotency keys) comes from the OS.
///
/// # Errors
///
/// See [`ConnectError`].
pub async fn connect<P: SendProtocol>(
    url: &str,
    config: Config,
    protocol: P,
) -> Result<Client<P>, ConnectError> {
    tether_driver::connect_ws(Tokio, TcpDial, url, config, protocol).await
}

/// [`connect`] with [`Options`](tether_driver::record::Options): a flight recorder that
/// writes every session call to a file or a ring buffer (`docs/recording.md`).
///
/// # Errors
///
/// See [`ConnectError`].
pub async fn connect_with<P: SendProtocol>(
    url: &str,
    config: Config,
    protocol: P,
    options: tether_driver::record::Options<P>,
) -> Result<Client<P>, ConnectError> {
    tether_driver::connect_ws_with(Tokio, TcpDial, url, config, protocol, options).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads back what `configure` must have set on `sock`.
    fn assert_configured(sock: socket2::SockRef<'_>) {
        assert!(sock.tcp_nodelay().unwrap(), "TCP_NODELAY");
        assert!(sock.keepalive().unwrap(), "SO_KEEPALIVE");
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            assert_eq!(sock.tcp_keepalive_time().unwrap(), KEEPALIVE.0);
            assert_eq!(sock.tcp_keepalive_interval().unwrap(), KEEPALIVE.1);
            assert_eq!(sock.tcp_keepalive_retries().unwrap(), KEEPALIVE.2);
        }
    }

    /// B5: the dialed socket has `TCP_NODELAY` and keepalive.
    #[tokio::test]
    async fn dial_sets_nodelay_and_keepalive() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let stream = TcpDial.dial("127.0.0.1", port).await.unwrap();
        assert_configured(socket2::SockRef::from(stream.get_ref()));
    }

    /// B5: the accepted socket has them too, set before the upgrade (here the peer hangs
    /// up at once, so the upgrade fails, after the options were set).
    #[cfg(unix)]
    #[tokio::test]
    async fn accept_sets_nodelay_and_keepalive() {
        use std::os::fd::AsFd;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        // A second descriptor of the same socket, to read its options after `accept`
        // has taken the stream.
        let dup = socket2::Socket::from(stream.as_fd().try_clone_to_owned().unwrap());
        assert!(
            !dup.tcp_nodelay().unwrap(),
            "the OS default, or the test proves nothing"
        );
        drop(client);
        let r = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            server::accept(stream, server::GuardConfig::default()),
        )
        .await
        .expect("the upgrade fails at once on a closed peer");
        assert!(r.is_err());
        assert_configured(socket2::SockRef::from(&dup));
    }
}
