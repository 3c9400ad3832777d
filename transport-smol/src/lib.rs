//! tether on smol.
//!
//! Supplies the two things the runtime-agnostic driver needs — a [`Runtime`] (spawn on
//! smol's global executor, sleep with [`smol::Timer`], now) and a [`Dial`] that opens TCP
//! connections with `TCP_NODELAY` and keepalive (idle 60 s, interval 10 s, 3 probes) — and
//! re-exports the driver's [`Client`]. async-tungstenite speaks WebSocket directly over
//! [`smol::Async`]`<TcpStream>`, so there is no adapter layer in between.
//!
//! Every session loop and connection task runs on smol's global executor, which has
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

use std::io;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;
use smol::Async;
use tether_driver::tether_core::{Config, Protocol};
pub use tether_driver::{
    CallError, Client, ConnectError, Dial, Runtime, StreamCall, WsTransport, tether_core,
};

/// The smol runtime: tasks go to smol's global executor, timers to async-io's reactor.
#[derive(Clone, Copy, Debug, Default)]
pub struct Smol;

impl Runtime for Smol {
    fn spawn(&self, future: BoxFuture<'static, ()>) {
        smol::spawn(future).detach();
    }

    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()> {
        smol::Timer::at(deadline).map(|_| ()).boxed()
    }

    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// TCP keepalive the adapters set on every socket: detect a dead peer in about 90 s
/// where the OS default would take hours.
pub const KEEPALIVE: (Duration, Duration, u32) =
    (Duration::from_secs(60), Duration::from_secs(10), 3);

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
}

/// Sets `TCP_NODELAY` and keepalive where the platform allows; failures are logged and
/// ignored (a socket without keepalive still works, it just detects death later).
pub fn configure(stream: &Async<TcpStream>) {
    let socket = socket2::SockRef::from(stream.get_ref());
    if let Err(e) = socket.set_tcp_nodelay(true) {
        tracing::debug!(error = %e, "TCP_NODELAY not set");
    }
    let (idle, interval, retries) = KEEPALIVE;
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(idle)
        .with_interval(interval)
        .with_retries(retries);
    if let Err(e) = socket.set_tcp_keepalive(&keepalive) {
        tracing::debug!(error = %e, "TCP keepalive not set");
    }
}

/// Connects to `url` with `protocol` and waits for the first connect's outcome. The
/// seed (jitter, idempotency keys) comes from the OS.
///
/// # Errors
///
/// See [`ConnectError`].
pub async fn connect<P>(url: &str, config: Config, protocol: P) -> Result<Client<P>, ConnectError>
where
    P: Protocol + Send + 'static,
    P::Inbound: Send,
    P::Outbound: Send,
    P::Request: Send,
    P::Response: Send,
    P::RemoteError: Send,
{
    let transport = WsTransport::new(TcpDial, url)?;
    let label = transport.redacted_url();
    let client = Client::start(Smol, transport, config, protocol, os_seed(), &label)?;
    client.wait_open().await.map_err(ConnectError::Ended)?;
    Ok(client)
}

/// A seed from the OS's randomness (via std's randomly keyed hasher).
fn os_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x7e7e);
    h.finish()
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
