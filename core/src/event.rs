//! What the session asks of its adapter and tells its application.

use std::fmt;
use std::time::Duration;

use derive_where::derive_where;

use crate::close::CloseCode;
use crate::error::{
    AttemptError, DisconnectReason, RequestFailure, SendError, SessionError, Violation,
};
use crate::frame::OutFrame;
use crate::ids::{ConnId, FrameId, MessageId, RequestId, StreamKey};
use crate::protocol::Protocol;
use crate::status::Status;

/// Whose outputs an [`Output`] carries, and so what its [`Output::Event`] holds: a
/// client [`Session`](crate::Session) of a protocol `P` (every [`Protocol`] is a role,
/// its events are [`Event<P>`]) or the server role
/// ([`ServerRole`](crate::server::ServerRole), events
/// [`ServerEvent`](crate::server::ServerEvent)). The transport work both sides ask of
/// their adapter is one set of variants, carried out by one piece of code.
pub trait Role {
    /// The events of this role.
    type Event: Clone + fmt::Debug + PartialEq;
}

impl<P: Protocol> Role for P {
    type Event = Event<P>;
}

/// One thing the machine wants done or known. Drain with
/// [`Session::poll_output`](crate::Session::poll_output) (or the server role's
/// [`ServerConn::poll_output`](crate::server::ServerConn::poll_output), where `Output`
/// is [`ServerOutput`](crate::server::ServerOutput)) after every call.
#[derive_where(Clone, Debug, PartialEq; R::Event)]
#[non_exhaustive]
pub enum Output<R: Role> {
    /// Open a transport (TCP, TLS, HTTP upgrade) for this connection generation. Report
    /// `TransportOpened` or `TransportFailed`; the session enforces the connect timeout.
    /// A client session's only: a server connection is open from the start.
    OpenTransport {
        /// The generation the transport belongs to.
        conn: ConnId,
        /// 1-based attempt counter since the session last stood stable.
        attempt: u32,
    },
    /// Write this frame; report `WriteCompleted` (or `WriteFailed`) with its id.
    SendFrame {
        /// The connection to write on.
        conn: ConnId,
        /// The id to echo back.
        frame: FrameId,
        /// The frame.
        payload: OutFrame,
    },
    /// Send a close frame and keep reading until the peer closes or the session says
    /// `AbortTransport`; report `TransportClosed`.
    CloseTransport {
        /// The connection to close.
        conn: ConnId,
        /// The close code.
        code: CloseCode,
        /// The close reason.
        reason: String,
    },
    /// Drop the socket now, without a close handshake.
    AbortTransport {
        /// The connection to drop.
        conn: ConnId,
    },
    /// The status changed (reported once per change, in order). A client session's only.
    StatusChanged {
        /// The previous status.
        from: Status,
        /// The new status.
        to: Status,
    },
    /// Something for the application.
    Event(R::Event),
}

/// Something the application should know.
#[derive_where(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Event<P: Protocol> {
    /// The handshake was acknowledged: the session is open on `conn`.
    Opened {
        /// The connection.
        conn: ConnId,
        /// The attempt that succeeded.
        attempt: u32,
        /// Whether this is the first connect's outcome.
        first: bool,
    },
    /// A connection attempt failed; `retry` is the backoff before the next one (`None` when
    /// the session gives up; [`Event::Ended`] follows).
    AttemptFailed {
        /// The attempt's connection.
        conn: ConnId,
        /// The attempt counter.
        attempt: u32,
        /// What went wrong.
        error: AttemptError,
        /// The backoff before the next attempt.
        retry: Option<Retry>,
    },
    /// An open connection was lost; `retry` is the backoff before reconnecting.
    Disconnected {
        /// The connection.
        conn: ConnId,
        /// What happened.
        reason: DisconnectReason,
        /// The backoff before the next attempt: `None` when no attempt follows by itself,
        /// because the session ends or goes dormant ([`DisconnectReason::Idle`] of a lazy
        /// session, [`DisconnectReason::Paused`]); a zero wait after
        /// [`DisconnectReason::Reconnect`].
        retry: Option<Retry>,
    },
    /// The session ended; nothing follows. For a session that never opened this is the
    /// first connect's failure.
    Ended(EndReason),
    /// An application message.
    Message(P::Inbound),
    /// A request's outcome (exactly one per request id).
    Response {
        /// The request.
        id: RequestId,
        /// The peer's answer, or why there is none.
        result: Result<P::Response, RequestFailure<P::RemoteError>>,
    },
    /// An event of a stream the application started.
    Stream(StreamEvent<P::Inbound>),
    /// A stream event that belongs to no stream the application started.
    Unsolicited(P::Inbound),
    /// A message accepted by `send` (or `feed`) will not be written, or its write was not
    /// confirmed before its connection went.
    ///
    /// Every accepted message ends in exactly one of: its write is confirmed (the adapter
    /// reported `WriteCompleted`), it waits in the offline queue (and is written after a
    /// reconnect), or this event names it. The reason says which case it is:
    /// [`DropReason::Overflow`], [`DropReason::Expired`] and [`DropReason::Ended`] are
    /// queued messages that were never handed to a transport;
    /// [`DropReason::Disconnected`] is a message handed to a transport whose connection
    /// was lost, aborted (send deadline, stale, `terminate`) or closed before the write
    /// was confirmed. The session does not resend those: the peer may have received one
    /// already, and resending could deliver it twice.
    MessageDropped {
        /// The message.
        id: MessageId,
        /// Why.
        reason: DropReason,
    },
    /// A message handed over with [`Session::feed`](crate::Session::feed) was refused:
    /// nothing was written or queued.
    SendRefused {
        /// The id the message was given (ids count every `feed`, accepted or not).
        id: MessageId,
        /// Why.
        error: SendError,
    },
    /// The peer broke the protocol; the frame was dropped.
    Violation {
        /// The connection.
        conn: ConnId,
        /// What was wrong.
        violation: Violation,
    },
    /// A write took longer than the slow-write warning.
    SlowWrite {
        /// The connection.
        conn: ConnId,
        /// The frame.
        frame: FrameId,
        /// How long the write took.
        elapsed: Duration,
    },
    /// `now` jumped far past a liveness deadline (the host slept): the session probes the
    /// peer instead of trusting or condemning the connection.
    ClockJump {
        /// How far past the deadline `now` was.
        overshoot: Duration,
    },
}

/// A backoff the session armed: the next attempt starts exactly `wait` later. The wait
/// lies within [`BackoffConfig::bounds`](crate::BackoffConfig::bounds)`(failures, floor)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retry {
    /// The wait.
    pub wait: Duration,
    /// Consecutive failures counted so far (selects the schedule's step).
    pub failures: u32,
    /// The floor the close class or the peer imposed, if any, as applied: capped at
    /// [`BackoffConfig::max_floor`](crate::BackoffConfig::max_floor).
    pub floor: Option<Duration>,
}

impl fmt::Display for Retry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "retrying in {:?}", self.wait)?;
        let plural = if self.failures == 1 { "" } else { "s" };
        write!(f, " after {} failure{plural}", self.failures)?;
        if let Some(floor) = self.floor {
            write!(f, " (waiting at least {floor:?}, as the peer asked)")?;
        }
        Ok(())
    }
}

/// How the session ended.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndReason {
    /// The user called `close` or `terminate`.
    ClosedByUser,
    /// The peer closed with a code the policy calls normal.
    ClosedByPeer {
        /// The close code.
        code: CloseCode,
        /// The close reason.
        reason: String,
    },
    /// The idle timeout expired.
    Idle,
    /// An error ended the session ([`Status::Failed`]).
    Failed(SessionError),
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndReason::ClosedByUser => f.write_str("closed by the application"),
            EndReason::ClosedByPeer { code, reason } => write!(
                f,
                "the peer closed the session ({})",
                crate::error::ShowClose(Some(code), reason)
            ),
            EndReason::Idle => f.write_str("closed after the idle timeout"),
            EndReason::Failed(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for EndReason {}

/// Why an accepted message was dropped (see [`Event::MessageDropped`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DropReason {
    /// The queue overflowed and dropped its oldest entries.
    Overflow,
    /// It outlived the queue's time to live.
    Expired,
    /// The session ended while the message was still queued.
    Ended,
    /// It was handed to a transport, and the connection went (lost, aborted, closed, or the
    /// session ended) before the write was confirmed. The peer may or may not have it.
    Disconnected,
}

/// An event of one stream.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamEvent<I> {
    /// The stream (as registered by its request).
    pub key: StreamKey,
    /// The request that started it, if any.
    pub request: Option<RequestId>,
    /// The event's sequence number, if the protocol numbers events.
    pub seq: Option<u64>,
    /// What happened.
    pub kind: StreamEventKind<I>,
}

/// What happened in a stream. `Final`, `Error`, `Aborted` and `Ended` are terminal:
/// exactly one of them ends every stream.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum StreamEventKind<I> {
    /// Progress without text.
    Status(I),
    /// New text: only the increment, even when the peer sends accumulated text.
    Delta {
        /// The new text.
        text: Option<String>,
        /// The whole event.
        payload: I,
    },
    /// The stream completed.
    Final {
        /// The complete text, as rebuilt from the deltas or sent by the peer.
        text: Option<String>,
        /// The whole event.
        payload: I,
    },
    /// The stream failed.
    Error {
        /// The peer's message.
        message: String,
        /// The whole event.
        payload: I,
    },
    /// The stream was aborted.
    Aborted(I),
    /// Sequence numbers were skipped: events may be missing, resync if it matters.
    Gap {
        /// The number that was expected.
        expected: u64,
        /// The number that arrived.
        received: u64,
    },
    /// The stream ended without a terminal event from the peer.
    Ended(StreamEnd),
}

impl<I> StreamEventKind<I> {
    /// Whether this event ends its stream.
    #[must_use]
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            StreamEventKind::Final { .. }
                | StreamEventKind::Error { .. }
                | StreamEventKind::Aborted(_)
                | StreamEventKind::Ended(_)
        )
    }
}

/// Why a stream ended without a terminal event from the peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamEnd {
    /// The request that started it failed.
    RequestFailed,
    /// The connection was lost.
    Disconnected,
    /// Nothing arrived for the stream idle timeout.
    IdleTimeout,
    /// The session ended.
    SessionEnded,
    /// The stream's text grew past [`StreamConfig::max_text`](crate::StreamConfig::max_text):
    /// the event that would have taken it past the budget was not delivered, and the
    /// text rebuilt so far was freed.
    TextTooLong,
    /// The server could not recover a resumable stream after a reconnect
    /// ([`Recovery::Unrecoverable`](crate::Recovery::Unrecoverable), or its resubscription
    /// could not be built): what it sent meanwhile is lost; rebuild from scratch.
    Unrecoverable,
    /// Not from the session: a driver that hands one stream's events to a bounded consumer
    /// ends that consumer's copy of the stream with this when it falls too far behind
    /// (the rest of the stream is not delivered to it).
    Lagged,
}
