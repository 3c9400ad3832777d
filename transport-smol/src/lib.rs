//! tether on smol.
//!
//! Supplies the two things the runtime-agnostic driver needs — a [`Runtime`] (spawn on
//! smol's global executor, sleep with [`smol::Timer`], now on
//! [`tether_driver::clock::os_clock`], which counts suspended time so that a laptop's
//! sleep reaches the session as a clock jump) and a [`Dial`] that opens TCP
//! connections with `TCP_NODELAY` and keepalive (idle 60 s, interval 10 s, 3 probes) — and
//! re-exports the driver's [`Client`]. async-tungstenite speaks WebSocket directly over
//! [`smol::Async`]`<TcpStream>`, so there is no adapter layer in between.
//!
//! Every session loop runs on smol's global executor, which has
//! `SMOL_THREADS` threads (default 1) for the whole process: a session that spends long
//! stretches of CPU (encoding multi-megabyte messages) delays the timers — pings, send
//! deadlines, backoffs — of every other session there. Raise `SMOL_THREADS` if that
//! matters.
//!
//! ```no_run
//! # fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use tether_smol::{connect, tether_core::{Config, profiles::HelloAck}};
//! smol::block_on(async {
//!     let hello = HelloAck::new(|| serde_json::json!({"type": "hello"}));
//!     let client = connect("ws://127.0.0.1:9000/ws", Config::default(), hello).await?;
//!     client.close().await;
//!     Ok(())
//! })
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod server;

use std::io;
use std::net::TcpStream;
use std::time::Instant;

use futures::FutureExt;
use futures::future::BoxFuture;
use smol::Async;
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

    fn reset_handle(&self, io: &Self::Io) -> Option<tether_driver::Reset> {
        tether_driver::Reset::of(socket2::SockRef::from(io.get_ref()))
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
