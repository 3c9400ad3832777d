//! What the server role asks of its adapter and tells its application.

use std::time::Duration;

use crate::close::CloseCode;
use crate::error::{DisconnectReason, Violation};
use crate::event::{Output, Role};
use crate::frame::DataFrame;
use crate::ids::FrameId;

/// The server role of [`Output`]: its events are [`ServerEvent`]s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerRole;

impl Role for ServerRole {
    type Event = ServerEvent;
}

/// One thing the connection wants done or known: the same transport work as a client
/// session's ([`SendFrame`](Output::SendFrame), [`CloseTransport`](Output::CloseTransport),
/// [`AbortTransport`](Output::AbortTransport)) and [`Event`](Output::Event)s of its own;
/// never `OpenTransport` or `StatusChanged`. Drain with
/// [`ServerConn::poll_output`](super::ServerConn::poll_output) after every call.
///
/// A frame handed over with `SendFrame` is reported `WriteCompleted` (or `WriteFailed`);
/// after `CloseTransport`, frames handed over earlier and not yet on the wire may be
/// discarded: the connection no longer waits for them.
pub type ServerOutput = Output<ServerRole>;

/// Something the application should know about its connection.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerEvent {
    /// A data frame from the peer (text checked to be UTF-8, size within
    /// `max_inbound_frame`).
    Message(DataFrame),
    /// The peer broke the rules; the frame was dropped and the connection goes on.
    Violation(Violation),
    /// A write took longer than the slow-write warning.
    SlowWrite {
        /// The frame.
        frame: FrameId,
        /// How long the write took.
        elapsed: Duration,
    },
    /// `now` jumped far past a deadline (the host slept): the connection probes the peer
    /// instead of judging it on evidence from before the sleep.
    ClockJump {
        /// How far past the deadline `now` was.
        overshoot: Duration,
    },
    /// The connection has ended and its transport is gone (or told to go): reported
    /// exactly once, and nothing follows.
    Ended(EndCause),
}

/// How a server connection ended.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndCause {
    /// The application called [`close`](super::ServerConn::close). `confirmed` says
    /// whether the peer answered with its own close frame before the close timeout.
    Closed {
        /// The code sent.
        code: CloseCode,
        /// The reason sent.
        reason: String,
        /// Whether the peer completed the close handshake.
        confirmed: bool,
    },
    /// The application called [`terminate`](super::ServerConn::terminate).
    Terminated,
    /// The peer sent no data message within
    /// [`first_message_timeout`](super::ServerConfig::first_message_timeout): the
    /// connection was closed with 1008 (policy violation). `confirmed` as for `Closed`.
    NoFirstMessage {
        /// Whether the peer completed the close handshake.
        confirmed: bool,
    },
    /// The peer or the network ended it: the peer's close frame or a dropped socket, no
    /// sign of life within the stale threshold, a write that missed the send deadline,
    /// or a failed write. The same reasons the client session reports.
    Lost(DisconnectReason),
}

impl EndCause {
    /// Whether the connection was judged dead by the guard rather than closed by either
    /// side: stale, a missed send deadline, a failed write.
    #[must_use]
    pub fn is_failure(&self) -> bool {
        matches!(
            self,
            EndCause::Lost(
                DisconnectReason::Stale
                    | DisconnectReason::SendDeadline
                    | DisconnectReason::WriteFailed
            )
        )
    }
}

impl std::fmt::Display for EndCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EndCause::Closed {
                code, confirmed, ..
            } => {
                let how = if *confirmed {
                    "confirmed"
                } else {
                    "unconfirmed"
                };
                write!(f, "closed with {code} ({how})")
            }
            EndCause::Terminated => f.write_str("terminated"),
            EndCause::NoFirstMessage { .. } => {
                f.write_str("closed with 1008: no first message in time")
            }
            EndCause::Lost(DisconnectReason::Closed { code: Some(c), .. }) => {
                write!(f, "peer closed with {c}")
            }
            EndCause::Lost(DisconnectReason::Closed { code: None, .. }) => {
                f.write_str("peer dropped the connection")
            }
            EndCause::Lost(DisconnectReason::Stale) => f.write_str("peer went silent"),
            EndCause::Lost(DisconnectReason::SendDeadline) => f.write_str("send deadline missed"),
            EndCause::Lost(DisconnectReason::WriteFailed) => f.write_str("write failed"),
            // The client session's own steps (idle, pause, reconnect): a server connection
            // never ends with them.
            EndCause::Lost(
                DisconnectReason::Idle | DisconnectReason::Paused | DisconnectReason::Reconnect,
            ) => f.write_str("closed by this side"),
            EndCause::Lost(DisconnectReason::ProtocolError(v)) => {
                write!(
                    f,
                    "peer broke the protocol ({v}); failed with {}",
                    v.close_code()
                )
            }
        }
    }
}

/// Counters of what a server connection has done and dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerStats {
    /// Frames handed to the adapter (data and pings).
    pub frames_sent: u64,
    /// Pings among them.
    pub pings_sent: u64,
    /// Data frames delivered to the application.
    pub messages: u64,
    /// Frames dropped as violations.
    pub violations: u64,
    /// Writes slower than the warning.
    pub slow_writes: u64,
    /// Inputs of another connection, after the end, or reports of writes no longer
    /// pending, ignored.
    pub stale_inputs: u64,
    /// Clock jumps detected.
    pub clock_jumps: u64,
    /// Connections closed because the peer's first message did not come in time (0 or 1).
    pub first_message_timeouts: u64,
}
