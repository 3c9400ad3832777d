//! Send deadlines: every frame handed to the adapter is tracked until the adapter reports
//! it written. Shared by every role that writes to a peer: the client
//! [`Session`](crate::Session) and the server role's
//! [`ServerConn`](crate::server::ServerConn).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::ids::{FrameId, MessageId};

/// Frames handed to the adapter and not yet reported written, oldest first, each with the
/// application message it carries (if any), so a connection that goes before the write is
/// confirmed can say which messages it took with it.
///
/// A socket writes in order, so the oldest entry carries the earliest deadline and the
/// completed frame is almost always at the front: both operations are O(1) in practice.
#[derive(Clone, Debug, Default)]
pub(crate) struct Writes {
    pending: VecDeque<(FrameId, Instant, Option<MessageId>)>,
}

impl Writes {
    pub(crate) fn with_capacity(n: usize) -> Self {
        Writes {
            pending: VecDeque::with_capacity(n),
        }
    }

    /// Tracks a frame that carries no application message (handshake, ping, request).
    pub(crate) fn push(&mut self, frame: FrameId, now: Instant) {
        self.pending.push_back((frame, now, None));
    }

    /// Tracks a frame that carries the application message `message`.
    pub(crate) fn push_message(&mut self, frame: FrameId, message: MessageId, now: Instant) {
        self.pending.push_back((frame, now, Some(message)));
    }

    /// Marks `frame` written. `None` if the frame was not pending (a duplicate or stale
    /// report); otherwise `Some(None)` for a write that took at most `slow_after`, and
    /// `Some(Some(elapsed))` for one that took longer.
    pub(crate) fn complete(
        &mut self,
        frame: FrameId,
        now: Instant,
        slow_after: Duration,
    ) -> Option<Option<Duration>> {
        // The front, almost always: a socket writes in order.
        let started = if self.pending.front().is_some_and(|(f, _, _)| *f == frame) {
            self.pending.pop_front()?.1
        } else {
            let pos = self.pending.iter().position(|(f, _, _)| *f == frame)?;
            self.pending.remove(pos)?.1
        };
        // `started + slow_after` against `now`, rather than `now - started` against
        // `slow_after`: the same verdict (a limit beyond the clock's range is never
        // passed), for about half the instructions on every frame written; only a slow
        // write needs its duration.
        let slow = crate::timer::after(started, slow_after).is_some_and(|limit| now > limit);
        Some(slow.then(|| now.saturating_duration_since(started)))
    }

    /// When the oldest pending write misses `deadline`.
    pub(crate) fn next_deadline(&self, deadline: Duration) -> Option<Instant> {
        // Beyond the clock's range: that write can never miss its deadline.
        self.pending
            .front()
            .and_then(|(_, t, _)| crate::timer::after(*t, deadline))
    }

    /// Restarts every pending write's clock at `now` (the host slept: the adapter could
    /// not have reported them).
    pub(crate) fn rebase(&mut self, now: Instant) {
        for (_, started, _) in &mut self.pending {
            *started = now;
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }

    pub(crate) fn clear(&mut self) {
        self.pending.clear();
    }

    /// Forgets every pending write and returns the messages they carried, oldest first:
    /// the connection went before these writes were confirmed.
    pub(crate) fn take_messages(&mut self) -> Vec<MessageId> {
        self.pending.drain(..).filter_map(|(_, _, m)| m).collect()
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
        let slow = Duration::from_secs(2);
        assert_eq!(
            w.complete(FrameId(1), t0 + Duration::from_secs(3), slow),
            Some(Some(Duration::from_secs(3)))
        );
        assert_eq!(
            w.complete(FrameId(1), t0, slow),
            None,
            "second report is ignored"
        );
        assert_eq!(w.next_deadline(d), Some(t0 + Duration::from_secs(11)));
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn a_write_is_slow_only_past_the_warning() {
        let t0 = crate::test_epoch();
        let slow = Duration::from_secs(2);
        let mut w = Writes::default();
        for f in 1..=4 {
            w.push(FrameId(f), t0);
        }
        assert_eq!(
            w.complete(FrameId(1), t0 + slow, slow),
            Some(None),
            "exactly"
        );
        let past = slow + Duration::from_nanos(1);
        assert_eq!(w.complete(FrameId(2), t0 + past, slow), Some(Some(past)));
        // Out of order (not the front): found all the same.
        assert_eq!(w.complete(FrameId(4), t0, slow), Some(None));
        // A warning beyond the clock's range is never reached.
        assert_eq!(w.complete(FrameId(3), t0 + past, Duration::MAX), Some(None));
        assert_eq!(w.len(), 0);
    }

    #[test]
    fn taking_returns_the_unconfirmed_messages_in_order() {
        let t0 = crate::test_epoch();
        let mut w = Writes::default();
        w.push_message(FrameId(1), MessageId(7), t0);
        w.push(FrameId(2), t0);
        w.push_message(FrameId(3), MessageId(8), t0);
        w.push_message(FrameId(4), MessageId(9), t0);
        w.complete(FrameId(3), t0, Duration::from_secs(1));
        assert_eq!(w.take_messages(), [MessageId(7), MessageId(9)]);
        assert_eq!(w.len(), 0);
    }
}
