//! The kinds of deadline a session can be waiting for.

/// Why the session wants to be woken. Returned by
/// [`Session::timeout_reason`](crate::Session::timeout_reason).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum TimerKind {
    /// The transport has not opened yet.
    ConnectTimeout,
    /// The handshake has not been acknowledged yet.
    HandshakeTimeout,
    /// The wait before the next connection attempt.
    Backoff,
    /// The open connection will count as stable (attempt counter reset).
    StableReset,
    /// The next ping is due.
    Ping,
    /// Nothing has arrived for the stale threshold (or a probe is waiting).
    Liveness,
    /// The oldest pending write misses its send deadline.
    SendDeadline,
    /// A request times out.
    RequestTimeout,
    /// A closing connection has not confirmed the close.
    CloseTimeout,
    /// The session has been idle for the idle timeout.
    Idle,
    /// Stream bookkeeping expires (dedup memory, cooldown, idle stream).
    StreamExpiry,
    /// A queued message reaches its time to live.
    QueueExpiry,
    /// A server connection's peer has not sent its first data message yet
    /// ([`ServerConfig::first_message_timeout`](crate::server::ServerConfig::first_message_timeout)).
    FirstMessage,
}

/// Keeps the earliest of a set of candidate deadlines; ties keep the first offered, so the
/// order of `offer` calls is the tie-break order.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Earliest(Option<(std::time::Instant, TimerKind)>);

impl Earliest {
    #[inline]
    pub(crate) fn offer(&mut self, at: Option<std::time::Instant>, kind: TimerKind) {
        if let Some(at) = at {
            match self.0 {
                Some((best, _)) if best <= at => {}
                _ => self.0 = Some((at, kind)),
            }
        }
    }

    pub(crate) fn get(self) -> Option<(std::time::Instant, TimerKind)> {
        self.0
    }
}

/// The instant `d` after `now`, or `None` when the clock cannot represent it: such a
/// deadline lies beyond the end of time and never fires. Every deadline of the core is
/// computed with this, so no duration (a configured timeout, a caller's request timeout,
/// a heartbeat a peer declared) and no `now` can make `Instant + Duration` overflow.
///
/// The configured durations are bounded by [`Config::validate`](crate::Config::validate)
/// (at most [`MAX_DURATION`](crate::MAX_DURATION)), so for them `None` is only reached
/// when `now` itself is near the end of the clock's range.
#[inline]
#[must_use]
pub(crate) fn after(now: std::time::Instant, d: std::time::Duration) -> Option<std::time::Instant> {
    now.checked_add(d)
}

/// The instant `d` after `now`, or the farthest instant short of it the clock can
/// represent. For bookkeeping that expires once and is then forgotten (stream dedup memory,
/// cooldowns), where "at the end of time" and "never" come to the same.
#[must_use]
pub(crate) fn saturating_after(
    now: std::time::Instant,
    d: std::time::Duration,
) -> std::time::Instant {
    let mut d = d;
    loop {
        if let Some(t) = now.checked_add(d) {
            return t;
        }
        // Halving reaches zero after at most 97 steps, and `now + 0` always exists.
        d /= 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn an_unrepresentable_deadline_is_never() {
        let t0 = crate::test_epoch();
        assert_eq!(
            after(t0, Duration::from_secs(1)),
            Some(t0 + Duration::from_secs(1))
        );
        assert_eq!(after(t0, Duration::MAX), None);
        let far = saturating_after(t0, Duration::MAX);
        assert!(far > t0 + Duration::from_secs(1_000_000_000));
        assert_eq!(
            saturating_after(t0, Duration::from_secs(1)),
            t0 + Duration::from_secs(1)
        );
    }
}
