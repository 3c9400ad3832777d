//! The hub backplane on smol: Redis reached over a smol TCP stream.

use std::sync::Arc;

use tether_driver::server::{
    Backplane, BackplaneConfig, BackplaneError, DialRedis, Hub, RedisStream, redis_addr,
};

use crate::Smol;

/// Attaches a backplane to `hub` through the Redis at `redis_url`
/// (`redis://host[:port]`, port 6379 by default) and starts it on smol's global
/// executor: from then on [`Hub::broadcast_to`] reaches the topic's members in every
/// process attached to the same Redis with the same
/// [`channel_prefix`](BackplaneConfig::channel_prefix). Returns at once; the
/// connections come up in the background (see [`Backplane::events`]). Keep the handle:
/// dropping it stops the backplane.
///
/// ```no_run
/// # fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use tether_smol::server::{BackplaneConfig, Hub, HubConfig, backplane};
///
/// let hub = Hub::new(HubConfig::default())?;
/// let _backplane = backplane(&hub, "redis://127.0.0.1:6379", BackplaneConfig::default())?;
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// A URL that is not `redis://host[:port]`, an invalid configuration, or a hub that has a
/// backplane already.
pub fn backplane(
    hub: &Hub,
    redis_url: &str,
    config: BackplaneConfig,
) -> Result<Backplane, BackplaneError> {
    let addr = redis_addr(redis_url)?;
    let dial: DialRedis = Arc::new(move || {
        let addr = addr.clone();
        Box::pin(async move {
            let stream = smol::net::TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            Ok(Box::new(stream) as Box<dyn RedisStream>)
        })
    });
    Backplane::start(hub, Smol, dial, config)
}
