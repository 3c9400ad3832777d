//! Send deadlines: every frame handed to the adapter is tracked until the adapter reports
//! it written. Shared by every role that writes to a peer: the client
//! [`Session`](crate::Session) and the server role's
//! [`ServerConn`](crate::server::ServerConn).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::ids::FrameId;

/// Frames handed to the adapter and not yet reported written, oldest first.
///
/// A socket writes in order, so the oldest entry carries the earliest deadline and the
/// completed frame is almost always at the front: both operations are O(1) in practice.
#[derive(Clone, Debug, Default)]
pub(crate) struct Writes {
    pending: VecDeque<(FrameId, Instant)>,
}

impl Writes {
    pub(crate) fn with_capacity(n: usize) -> Self {
        Writes {
            pending: VecDeque::with_capacity(n),
        }
    }

    pub(crate) fn push(&mut self, frame: FrameId, now: Instant) {
        self.pending.push_back((frame, now));
    }

    /// Marks `frame` written; returns how long the write took, or `None` if the frame was
    /// not pending (a duplicate or stale report).
    pub(crate) fn complete(&mut self, frame: FrameId, now: Instant) -> Option<Duration> {
        let pos = self.pending.iter().position(|(f, _)| *f == frame)?;
        let (_, started) = self.pending.remove(pos)?;
        Some(now.saturating_duration_since(started))
    }

    /// When the oldest pending write misses `deadline`.
    pub(crate) fn next_deadline(&self, deadline: Duration) -> Option<Instant> {
        // Beyond the clock's range: that write can never miss its deadline.
        self.pending
            .front()
            .and_then(|(_, t)| crate::timer::after(*t, deadline))
    }

    /// Restarts every pending write's clock at `now` (the host slept: the adapter could
    /// not have reported them).
    pub(crate) fn rebase(&mut self, now: Instant) {
        for (_, started) in &mut self.pending {
            *started = now;
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }

    pub(crate) fn clear(&mut self) {
        self.pending.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_oldest_deadline_and_elapsed() {
        let t0 = crate::test_epoch();
        let d = Duration::from_secs(10);
        let mut w = Writes::default();
        assert_eq!(w.next_deadline(d), None);
        w.push(FrameId(1), t0);
        w.push(FrameId(2), t0 + Duration::from_secs(1));
        assert_eq!(w.next_deadline(d), Some(t0 + d));
        assert_eq!(
            w.complete(FrameId(1), t0 + Duration::from_secs(3)),
            Some(Duration::from_secs(3))
        );
        assert_eq!(w.complete(FrameId(1), t0), None, "second report is ignored");
        assert_eq!(w.next_deadline(d), Some(t0 + Duration::from_secs(11)));
        assert_eq!(w.len(), 1);
    }
}
