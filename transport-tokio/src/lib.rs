//! tether on tokio: WebSocket sessions that stay healthy on their own. A session
//! reconnects with backoff and jitter, pings and detects a dead peer, bounds every write
//! and request in time, queues what is sent while offline, and closes cleanly.
//!
//! # Quick start
//!
//! [`builder`] is the front door: every option in one place, the same on `tether-smol`.
//! This example runs as it is: it starts an echo server of its own on loopback.
//!
//! ```
//! # async fn echo_server() -> String {
//! #     let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
//! #     let url = format!("ws://{}/", listener.local_addr().unwrap());
//! #     tokio::spawn(async move {
//! #         while let Ok((tcp, _)) = listener.accept().await {
//! #             tokio::spawn(async move {
//! #                 let Ok(conn) = tether_tokio::server::accept(tcp, Default::default()).await else { return };
//! #                 while let Some(frame) = conn.recv().await {
//! #                     if conn.send(frame).await.is_err() { break; }
//! #                 }
//! #             });
//! #         }
//! #     });
//! #     url
//! # }
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let url = echo_server().await;
//! use futures::StreamExt;
//! use tether_tokio::{DataFrame, Event, Update};
//!
//! let client = tether_tokio::builder(&url)          // ws://127.0.0.1:port/
//!     .header("authorization", "Bearer secret")      // on every upgrade
//!     .connect()                                     // waits for the first open
//!     .await?;
//! let mut updates = client.updates();                // statuses and events, in order
//! client.send(DataFrame::text("hello")).await?;
//! while let Some(update) = updates.next().await {
//!     if let Update::Event(Event::Message(frame)) = update {
//!         assert_eq!(frame.as_text(), Some("hello"));
//!         break;
//!     }
//! }
//! client.close().await;
//! # Ok(()) }
//! ```
//!
//! # What is here
//!
//! - [`builder`]: a session to a URL with a protocol ([`profiles`]: `Raw` frames, the
//!   `HelloAck` handshake-and-requests profile, the `Gateway` profile, or your own
//!   [`Protocol`](tether_core::Protocol)), a [`Config`], upgrade headers (fixed or
//!   computed per attempt, such as a refreshed token), subprotocols, a flight recorder;
//!   `connect` waits for the first open, `start` returns the handle at once.
//! - [`Client`]: the handle. `send`, `request`, `request_with_timeout`, `stream`,
//!   `updates` (statuses and events in one ordered stream), `events`, `status_changes`,
//!   `disconnect`/`resume`/`reconnect`, `close`. Cheap to clone.
//! - [`connect`] and [`connect_with`]: the builder's shortest paths.
//! - [`server`]: the server side: `accept` a TCP stream as a guarded connection
//!   (liveness, send deadline, close handshake), and a `Hub` to broadcast to many.
//! - With the `rustls` feature, `wss://` (rustls with the webpki roots).
//!
//! Errors print in plain words with the `host:port` they concern, for example
//! `could not connect to 127.0.0.1:9: connection refused (the first connect is not
//! retried)`. `docs/adapters.md` describes the handle and its backpressure in full.
//!
//! # The runtime
//!
//! This crate supplies the two things the runtime-agnostic driver needs: a [`Runtime`]
//! (spawn, sleep, now, on [`tether_driver::clock::os_clock`], which counts suspended time
//! so that a laptop's sleep reaches the session as a clock jump) and a [`Dial`] that opens
//! TCP connections with `TCP_NODELAY` and keepalive (idle 60 s, interval 10 s, 3 probes).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod backplane;
pub mod server;

use std::io;
use std::time::Instant;

use async_tungstenite::tokio::TokioAdapter;
use futures::future::BoxFuture;
pub use tether_driver::tether_core::profiles::{JsonPayload, PayloadError};
pub use tether_driver::tether_core::{
    Bytes, Config, DataFrame, Event, Status, profiles, serde_json,
};
// HTTP `CONNECT` proxies for `Builder::proxy`.
pub use tether_driver::Proxy;
// TLS options for `wss://` (`Builder::tls`), and the rustls crate they are built
// with (feature `rustls`; `native-roots` adds `Tls::native_roots`).
pub use tether_driver::{
    CMD_CAPACITY, CallError, Client, ConnectError, Dial, HeaderError, KEEPALIVE, Runtime,
    STREAM_CAPACITY, SUBSCRIBER_CAPACITY, SendProtocol, StreamCall, Update, UrlError, WsTransport,
    os_seed, record, redact, tether_core,
};
#[cfg(feature = "rustls")]
pub use tether_driver::{Tls, TlsError, rustls};

/// The builder [`builder`] returns: every option of a client session (see
/// [`tether_driver::Builder`] for each option and its default).
pub type Builder<P = profiles::Raw> = tether_driver::Builder<Tokio, TcpDial, P>;

/// A session driven by the application's own task (see [`tether_driver::Inline`]), as
/// [`Builder::inline`](tether_driver::Builder::inline) starts it.
pub type Inline<P = profiles::Raw> = tether_driver::Inline<P, Tokio>;

/// Starts building a session to `url` (`ws://`, or `wss://` with the `rustls` feature):
/// the front door. Set the protocol, configuration, headers, subprotocols and recording,
/// then [`connect`](tether_driver::Builder::connect) (wait for the first connect's
/// outcome) or [`start`](tether_driver::Builder::start) (the handle at once).
pub fn builder(url: impl Into<String>) -> Builder {
    tether_driver::Builder::new(Tokio, TcpDial, url)
}

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

    fn linger_zero(io: &Self::Io) {
        tether_driver::linger_zero(socket2::SockRef::from(io.get_ref()));
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
