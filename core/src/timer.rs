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
