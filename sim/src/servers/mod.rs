//! Scripted servers for the ready profiles.

mod gateway;
mod hello_ack;

pub use gateway::GatewayServer;
pub use hello_ack::HelloAckServer;

use std::time::Duration;

/// Timer token for heartbeats.
pub(crate) const HEARTBEAT: u64 = 0;

/// A delay drawn uniformly in `[lo, hi]`.
pub(crate) fn between(rng: &mut fastrand::Rng, lo: Duration, hi: Duration) -> Duration {
    lo + (hi.saturating_sub(lo)).mul_f64(rng.f64())
}
