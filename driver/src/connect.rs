//! What every runtime adapter shares: the socket options, the seed, and `connect`.

use std::time::Duration;

use tether_core::Config;

use crate::client::Client;
use crate::error::ConnectError;
use crate::record::Options;
use crate::runtime::Runtime;
use crate::send_protocol::SendProtocol;
use crate::ws::{Dial, WsTransport};

/// TCP keepalive set on every socket: idle 60 s, interval 10 s, 3 probes, so a dead peer
/// is detected in about 90 s where the OS default would take hours.
pub const KEEPALIVE: (Duration, Duration, u32) =
    (Duration::from_secs(60), Duration::from_secs(10), 3);

/// Sets `TCP_NODELAY` and [`KEEPALIVE`] where the platform allows. Failures are logged and
/// ignored: a socket without keepalive still works, it only detects death later.
pub fn configure_socket(socket: socket2::SockRef<'_>) {
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

/// A seed from the OS's randomness (std's randomly keyed hasher): idempotency keys derive
/// from the seed, so production sessions must not share one.
pub fn os_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x7e7e);
    h.finish()
}

/// Connects to a WebSocket `url` over `dial` on `runtime` and waits for the first
/// connect's outcome; the adapters' `connect` is this with their runtime and dialer.
///
/// # Errors
///
/// See [`ConnectError`].
pub async fn connect_ws<R: Runtime, D: Dial, P: SendProtocol>(
    runtime: R,
    dial: D,
    url: &str,
    config: Config,
    protocol: P,
) -> Result<Client<P>, ConnectError> {
    connect_ws_with(runtime, dial, url, config, protocol, Options::default()).await
}

/// [`connect_ws`] with [`Options`] (a flight recorder); the adapters' `connect_with`.
///
/// # Errors
///
/// See [`ConnectError`].
pub async fn connect_ws_with<R: Runtime, D: Dial, P: SendProtocol>(
    runtime: R,
    dial: D,
    url: &str,
    config: Config,
    protocol: P,
    options: Options<P>,
) -> Result<Client<P>, ConnectError> {
    let transport = WsTransport::new(dial, url)?;
    let label = transport.redacted_url();
    let target = transport.target();
    let client = Client::start_with(
        runtime,
        transport,
        config,
        protocol,
        os_seed(),
        &label,
        options,
    )?;
    client
        .wait_open()
        .await
        .map_err(|reason| ConnectError::Ended { target, reason })?;
    Ok(client)
}
