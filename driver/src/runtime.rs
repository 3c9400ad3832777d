//! The runtime seam: spawning, sleeping until an instant, reading the clock.

use std::time::Instant;

use futures::future::BoxFuture;

/// What the driver needs from an async runtime. The tokio and smol adapters implement it
/// in a few lines; the simulator implements it with a virtual clock.
pub trait Runtime: Clone + Send + Sync + 'static {
    /// Runs a future in the background.
    fn spawn(&self, future: BoxFuture<'static, ()>);
    /// A future that completes at `deadline`.
    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()>;
    /// The current time (the one clock read the session's time comes from).
    fn now(&self) -> Instant;
}
