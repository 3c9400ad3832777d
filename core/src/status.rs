//! The session's externally visible status.

use std::fmt;

/// Where the session is in its life. Reported through
/// [`Output::StatusChanged`](crate::Output::StatusChanged) only on change, in order.
///
/// Legal transitions (anything else is a bug the simulator's oracle reports):
///
/// | from | to |
/// |---|---|
/// | `Idle` | `Connecting`, `Reconnecting`, `Closed` |
/// | `Connecting` | `Open`, `Idle`, `Closed`, `Failed` |
/// | `Open` | `Reconnecting`, `Idle`, `Closed`, `Failed` |
/// | `Reconnecting` | `Open`, `Idle`, `Closed`, `Failed` |
///
/// A session goes back to `Idle` only when paused ([`Session::disconnect`](crate::Session::disconnect))
/// or, when lazy ([`Config::lazy`](crate::Config::lazy)), after its idle timeout; it leaves
/// `Idle` for `Reconnecting` when it had opened before.
/// | `Closed`, `Failed` | (terminal) |
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Status {
    /// No connection and none being made: created and `connect` not called yet, or
    /// dormant (paused, or a lazy session waiting for its next use).
    Idle,
    /// The first connection is being established (and, if configured, retried).
    Connecting,
    /// The handshake is acknowledged; requests and messages flow.
    Open,
    /// A connection that was open is being re-established: waiting out a backoff or
    /// attempting.
    Reconnecting,
    /// Ended without error: the user closed, the peer closed normally, or the session was
    /// idle too long.
    Closed,
    /// Ended by an error: a fatal close or upgrade status, or the attempt limit.
    Failed,
}

impl Status {
    /// Whether no further transition is possible.
    #[must_use]
    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Closed | Status::Failed)
    }

    /// Whether `self → to` is a legal transition.
    #[must_use]
    pub fn can_become(self, to: Status) -> bool {
        use Status::*;
        matches!(
            (self, to),
            (Idle, Connecting | Reconnecting | Closed)
                | (Connecting, Open | Idle | Closed | Failed)
                | (Open, Reconnecting | Idle | Closed | Failed)
                | (Reconnecting, Open | Idle | Closed | Failed)
        )
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Status::Idle => "idle",
            Status::Connecting => "connecting",
            Status::Open => "open",
            Status::Reconnecting => "reconnecting",
            Status::Closed => "closed",
            Status::Failed => "failed",
        };
        f.write_str(s)
    }
}
