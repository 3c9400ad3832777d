//! tether on smol: WebSocket sessions that stay healthy on their own. A session
//! reconnects with backoff and jitter, pings and detects a dead peer, bounds every write
//! and request in time, queues what is sent while offline, and closes cleanly.
//!
//! # Quick start
//!
//! [`builder`] is the front door: every option in one place, the same on `tether-tokio`.
//! This example runs as it is: it starts an echo server of its own on loopback.
//!
//! ```
//! # async fn echo_server() -> String {
//! #     let listener = smol::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
//! #     let url = format!("ws://{}/", listener.local_addr().unwrap());
//! #     smol::spawn(async move {
//! #         while let Ok((tcp, _)) = listener.accept().await {
//! #             smol::spawn(async move {
//! #                 let Ok(conn) = tether_smol::server::accept(tcp, Default::default()).await else { return };
//! #                 while let Some(frame) = conn.recv().await {
//! #                     if conn.send(frame).await.is_err() { break; }
//! #                 }
//! #             }).detach();
//! #         }
//! #     }).detach();
//! #     url
//! # }
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! smol::block_on(async {
//! #   let url = echo_server().await;
//!     use futures::StreamExt;
//!     use tether_smol::{DataFrame, Event, Update};
//!
//!     let client = tether_smol::builder(&url)           // ws://127.0.0.1:port/
//!         .header("authorization", "Bearer secret")       // on every upgrade
//!         .connect()                                      // waits for the first open
//!         .await?;
//!     let mut updates = client.updates();                 // statuses and events, in order
//!     client.send(DataFrame::text("hello")).await?;
//!     while let Some(update) = updates.next().await {
//!         if let Update::Event(Event::Message(frame)) = update {
//!             assert_eq!(frame.as_text(), Some("hello"));
//!             break;
//!         }
//!     }
//!     client.close().await;
//!     Ok(())
//! })
//! # }
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
//! Errors print in plain words with the `host:port` they concern. `docs/adapters.md`
//! describes the handle and its backpressure in full.
//!
//! # The runtime
//!
//! This crate supplies the two things the runtime-agnostic driver needs: a [`Runtime`]
//! (spawn on smol's global executor, sleep with [`smol::Timer`], now on
//! [`tether_driver::clock::os_clock`], which counts suspended time so that a laptop's
//! sleep reaches the session as a clock jump) and a [`Dial`] that opens TCP connections
//! with `TCP_NODELAY` and keepalive (idle 60 s, interval 10 s, 3 probes).
//! async-tungstenite speaks WebSocket directly over [`smol::Async`]`<TcpStream>`.
//!
//! Every session loop runs on smol's global executor, which has `SMOL_THREADS` threads
//! (default 1) for the whole process: a session that spends long stretches of CPU
//! (encoding multi-megabyte messages) delays the timers — pings, send deadlines,
//! backoffs — of every other session there. Raise `SMOL_THREADS` if that matters.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod backplane;
pub mod server;

use std::io;
use std::net::TcpStream;
use std::time::Instant;

use futures::FutureExt;
use futures::future::BoxFuture;
use smol::Async;
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
pub type Builder<P = profiles::Raw> = tether_driver::Builder<Smol, TcpDial, P>;

/// A session driven by the application's own task (see [`tether_driver::Inline`]), as
/// [`Builder::inline`](tether_driver::Builder::inline) starts it.
pub type Inline<P = profiles::Raw> = tether_driver::Inline<P, Smol>;

/// Starts building a session to `url` (`ws://`, or `wss://` with the `rustls` feature):
/// the front door. Set the protocol, configuration, headers, subprotocols and recording,
/// then [`connect`](tether_driver::Builder::connect) (wait for the first connect's
/// outcome) or [`start`](tether_driver::Builder::start) (the handle at once).
pub fn builder(url: impl Into<String>) -> Builder {
    tether_driver::Builder::new(Smol, TcpDial, url)
}

/// The smol runtime: tasks go to smol's global executor, timers to async-io's reactor.
#[derive(Clone, Copy, Debug, Default)]
pub struct Smol;

impl Runtime for Smol {
    fn spawn(&self, future: BoxFuture<'static, ()>) {
        smol::spawn(future).detach();
    }

    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()> {
        // async-io's timers run on the monotonic clock, which skips suspended time.
        let at = tether_driver::clock::os_clock().to_monotonic(deadline);
        smol::Timer::at(at).map(|_| ()).boxed()
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
    type Io = Async<TcpStream>;

    async fn dial(&self, host: &str, port: u16) -> io::Result<Self::Io> {
        // Resolution blocks (getaddrinfo): async-net runs it on smol's blocking pool unless
        // the host is an IP literal.
        let addrs = smol::net::resolve((host, port)).await?;
        let mut last = None;
        for addr in addrs {
            match Async::<TcpStream>::connect(addr).await {
                Ok(stream) => {
                    configure(&stream);
                    return Ok(stream);
                }
                Err(e) => last = Some(e),
            }
        }
        // Same wording as std and tokio, which the driver classifies as a DNS failure.
        Err(last.unwrap_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "could not resolve to any address",
            )
        }))
    }

    fn linger_zero(io: &Self::Io) {
        tether_driver::linger_zero(socket2::SockRef::from(io.get_ref()));
    }
}

/// Sets `TCP_NODELAY` and [`KEEPALIVE`] on a smol socket (see
/// [`configure_socket`](tether_driver::configure_socket)).
pub fn configure(stream: &Async<TcpStream>) {
    tether_driver::configure_socket(socket2::SockRef::from(stream.get_ref()));
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
    tether_driver::connect_ws(Smol, TcpDial, url, config, protocol).await
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
    tether_driver::connect_ws_with(Smol, TcpDial, url, config, protocol, options).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dial_sets_nodelay_and_keepalive() {
        smol::block_on(async {
            let listener = Async::<std::net::TcpListener>::bind(([127, 0, 0, 1], 0)).unwrap();
            let port = listener.get_ref().local_addr().unwrap().port();
            let stream = TcpDial.dial("127.0.0.1", port).await.unwrap();
            let sock = socket2::SockRef::from(stream.get_ref());
            assert!(sock.tcp_nodelay().unwrap());
            assert!(sock.keepalive().unwrap());
            #[cfg(any(target_os = "linux", target_os = "android"))]
            {
                assert_eq!(sock.tcp_keepalive_time().unwrap(), KEEPALIVE.0);
                assert_eq!(sock.tcp_keepalive_interval().unwrap(), KEEPALIVE.1);
                assert_eq!(sock.tcp_keepalive_retries().unwrap(), KEEPALIVE.2);
            }
        });
    }

    #[test]
    fn names_resolve_and_refusals_surface() {
        smol::block_on(async {
            let listener = Async::<std::net::TcpListener>::bind(([127, 0, 0, 1], 0)).unwrap();
            let port = listener.get_ref().local_addr().unwrap().port();
            // A name goes through the resolver (localhost: /etc/hosts, no network).
            // If it resolves to ::1 first, the dial falls through to 127.0.0.1.
            TcpDial.dial("localhost", port).await.unwrap();
            drop(listener);
            // Nothing listens on the port any more.
            let e = TcpDial.dial("127.0.0.1", port).await.unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
        });
    }
}
