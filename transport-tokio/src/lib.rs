//! tether on tokio.
//!
//! Supplies the two things the runtime-agnostic driver needs — a [`Runtime`] (spawn, sleep,
//! now) and a [`Dial`] that opens TCP connections with `TCP_NODELAY` and keepalive (idle
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

use std::io;
use std::time::{Duration, Instant};

use async_tungstenite::tokio::TokioAdapter;
use futures::future::BoxFuture;
use tether_driver::tether_core::{Config, Protocol};
pub use tether_driver::{
    CallError, Client, ConnectError, Dial, Runtime, StreamCall, WsTransport, tether_core,
};

/// The tokio runtime (the one the caller is running in).
#[derive(Clone, Copy, Debug, Default)]
pub struct Tokio;

impl Runtime for Tokio {
    fn spawn(&self, future: BoxFuture<'static, ()>) {
        tokio::spawn(future);
    }

    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep_until(deadline.into()))
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
    type Io = TokioAdapter<tokio::net::TcpStream>;

    async fn dial(&self, host: &str, port: u16) -> io::Result<Self::Io> {
        let stream = tokio::net::TcpStream::connect((host, port)).await?;
        configure(&stream);
        Ok(TokioAdapter::new(stream))
    }
}

/// Sets `TCP_NODELAY` and keepalive where the platform allows; failures are logged and
/// ignored (a socket without keepalive still works, it just detects death later).
pub fn configure(stream: &tokio::net::TcpStream) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "TCP_NODELAY not set");
    }
    let (idle, interval, retries) = KEEPALIVE;
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(idle)
        .with_interval(interval)
        .with_retries(retries);
    if let Err(e) = socket2::SockRef::from(stream).set_tcp_keepalive(&keepalive) {
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
    let client = Client::start(Tokio, transport, config, protocol, os_seed(), &label)?;
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
