//! Queues and tables never exceed their configured bounds.

use tether_core::{Config, OfflinePolicy, Protocol};

use super::{First, Violation};
use crate::timeline::{Entry, Timeline};

pub(super) const NAME: &str = "bounds_kept";

/// Frames a handshake may write besides the guarded ones: the hello and a challenge
/// reply, with room for one more challenge round.
const HANDSHAKE_FRAMES: usize = 3;

/// Every `Sizes` record lies within the configuration's bounds:
///
/// | size | bound |
/// |---|---|
/// | `pending_requests` | `max_in_flight_requests` |
/// | `queued` | the offline queue's `max_messages` (0 when offline sends are rejected) |
/// | `open_streams` | `streams.max_streams` |
/// | `remembered` | `streams.max_seen` |
/// | `pending_writes` | [`pending_writes_bound`] |
#[must_use]
pub fn bounds_kept<P: Protocol>(tl: &Timeline<P>) -> Option<Violation> {
    let c = &tl.config;
    let mut first = First::new(NAME, tl);
    let bounds = [
        c.max_in_flight_requests,
        queue_max(c),
        c.streams.max_streams,
        c.streams.max_seen,
        pending_writes_bound(c),
    ];
    let names = [
        "pending requests",
        "queued frames",
        "open streams",
        "remembered stream events",
        "pending writes",
    ];
    for (i, r) in tl.records.iter().enumerate() {
        let Entry::Sizes(s) = &r.entry else {
            continue;
        };
        let sizes = [
            s.pending_requests,
            s.queued,
            s.open_streams,
            s.remembered,
            s.pending_writes,
        ];
        if let Some(k) = (0..sizes.len()).find(|&k| sizes[k] > bounds[k]) {
            first.offer(i, || {
                format!("{} {} exceed the bound {}", sizes[k], names[k], bounds[k])
            });
            break;
        }
    }
    first.into_inner()
}

fn queue_max(c: &Config) -> usize {
    match &c.offline {
        OfflinePolicy::Queue(q) => q.max_messages,
        _ => 0,
    }
}

/// The most writes the session may have pending: `max_pending_writes`, which `send` and
/// `request` check before writing, plus what the session writes without that check —
///
/// - the offline queue, flushed whole right after the handshake (`max_messages`);
/// - the handshake's own frames (a hello, a challenge reply: 3 allowed);
/// - pings: a write older than `send_deadline` kills the connection, so at most
///   `send_deadline / ping_interval + 1` periodic pings are pending, plus the probe ping
///   after a clock jump.
#[must_use]
pub fn pending_writes_bound(c: &Config) -> usize {
    let pings = c.liveness.ping_interval.map_or(0, |p| {
        let per = c.send_deadline.as_nanos() / p.as_nanos().max(1);
        usize::try_from(per).unwrap_or(usize::MAX).saturating_add(1)
    });
    c.max_pending_writes
        .saturating_add(queue_max(c))
        .saturating_add(HANDSHAKE_FRAMES)
        .saturating_add(pings)
        .saturating_add(1)
}
