//! The hub backplane on tokio: Redis reached over a tokio TCP stream.

use std::sync::Arc;

use async_tungstenite::tokio::TokioAdapter;
use tether_driver::server::{
    Backplane, BackplaneConfig, BackplaneError, DialRedis, Hub, RedisStream, redis_addr,
};

use crate::Tokio;

/// Attaches a backplane to `hub` through the Redis at `redis_url`
/// (`redis://host[:port]`, port 6379 by default) and starts it on the current tokio
/// runtime: from then on [`Hub::broadcast_to`] reaches the topic's members in every
/// process attached to the same Redis with the same
/// [`channel_prefix`](BackplaneConfig::channel_prefix). Returns at once; the
/// connections come up in the background (see [`Backplane::events`]). Keep the handle:
/// dropping it stops the backplane.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use tether_tokio::server::{BackplaneConfig, Hub, HubConfig, backplane};
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
            let stream = tokio::net::TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            Ok(Box::new(TokioAdapter::new(stream)) as Box<dyn RedisStream>)
        })
    });
    Backplane::start(hub, Tokio, dial, config)
}
