//! Typed errors: caller misuse (returned at once), request failures and session failures
//! (delivered as events), and peer misbehaviour (violations).

use std::time::Duration;

use crate::close::{CloseCode, TransportFailure};

/// Why a [`Config`](crate::Config) was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A duration that must be positive is zero.
    #[error("{0} must be greater than zero")]
    Zero(&'static str),
    /// The backoff schedule has no steps.
    #[error("the backoff schedule is empty")]
    EmptyBackoff,
    /// The stale threshold does not exceed the ping interval, so every connection would be
    /// declared dead between two pings.
    #[error("stale_after ({stale_after:?}) must exceed ping_interval ({ping_interval:?})")]
    StaleBeforePing {
        /// The configured ping interval.
        ping_interval: Duration,
        /// The configured stale threshold.
        stale_after: Duration,
    },
    /// The slow-write warning is not shorter than the send deadline, so it could never fire.
    #[error("slow_write_warning must be shorter than send_deadline")]
    SlowWarningAfterDeadline,
    /// A lazy session ([`Config::lazy`](crate::Config::lazy)) queues what starts it, so
    /// it cannot reject sends while offline.
    #[error("a lazy session needs an offline queue (offline: Reject would refuse its first send)")]
    LazyWithoutQueue,
    /// A bound that must be at least one is zero.
    #[error("{0} must be at least 1")]
    ZeroBound(&'static str),
    /// The heartbeat stale factor is below 1.
    #[error("heartbeat_stale_factor must be at least 1")]
    HeartbeatFactor,
    /// A duration exceeds its documented ceiling (for most fields
    /// [`MAX_DURATION`](crate::MAX_DURATION), one year): a deadline that far away is a
    /// mistake, and a ceiling keeps every deadline computable.
    #[error("{field} must be at most {max:?}")]
    TooLong {
        /// The field, as named in the configuration.
        field: &'static str,
        /// Its ceiling.
        max: Duration,
    },
    /// A number is below its documented floor.
    #[error("{field} must be at least {min}")]
    TooSmall {
        /// The field, as named in the configuration.
        field: &'static str,
        /// Its floor.
        min: u64,
    },
    /// A number exceeds its documented ceiling.
    #[error("{field} must be at most {max}")]
    TooLarge {
        /// The field, as named in the configuration.
        field: &'static str,
        /// Its ceiling.
        max: u64,
    },
}

/// Why a protocol could not encode an outbound message or request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cannot encode: {0}")]
pub struct EncodeError(pub String);

/// Why [`Session::connect`](crate::Session::connect) was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// `connect` was already called; the session reconnects by itself.
    #[error("the session is already connecting or connected")]
    AlreadyActive,
    /// The session has ended; create a new one.
    #[error("the session has ended")]
    Ended,
}

/// Why [`Session::send`](crate::Session::send) was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The session is not open and is configured to reject rather than queue.
    #[error("the session is not open")]
    NotOpen,
    /// The offline queue is full and configured to refuse new messages.
    #[error("the offline queue is full")]
    QueueFull,
    /// Too many frames are waiting for the adapter to write them.
    #[error("too many writes are pending")]
    Backpressure,
    /// The message is larger than the offline queue's byte bound.
    #[error("message of {0} bytes exceeds the queue's byte bound")]
    TooLarge(usize),
    /// The session has ended.
    #[error("the session has ended")]
    Ended,
    /// The protocol could not encode the message.
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

/// Why [`Session::request`](crate::Session::request) was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The session is not open and is configured to reject rather than queue.
    #[error("the session is not open")]
    NotOpen,
    /// The offline queue is full.
    #[error("the offline queue is full")]
    QueueFull,
    /// The in-flight request table is at its bound.
    #[error("too many requests in flight")]
    TooManyInFlight,
    /// Too many frames are waiting for the adapter to write them.
    #[error("too many writes are pending")]
    Backpressure,
    /// The session has ended.
    #[error("the session has ended")]
    Ended,
    /// The stream table is full, so the request's stream could not be registered.
    #[error("too many streams are open")]
    TooManyStreams,
    /// A stream with the request's stream key (for example the idempotency key of
    /// `GatewayRequest::chat_send_with_key`) is still open: wait for its terminal event,
    /// or use another key.
    #[error("a stream with this key is still open")]
    StreamKeyInUse,
    /// The request's own timeout is zero: it could only time out. A zero timeout is
    /// refused here as [`Config`](crate::Config) refuses a zero `request_timeout`.
    #[error("a request timeout must be greater than zero")]
    ZeroTimeout,
    /// The protocol could not encode the request.
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

impl From<SendError> for RequestError {
    fn from(e: SendError) -> Self {
        match e {
            SendError::NotOpen => RequestError::NotOpen,
            SendError::QueueFull | SendError::TooLarge(_) => RequestError::QueueFull,
            SendError::Backpressure => RequestError::Backpressure,
            SendError::Ended => RequestError::Ended,
            SendError::Encode(e) => RequestError::Encode(e),
        }
    }
}

/// How a request ended when it did not get a successful response.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestFailure<E> {
    /// The peer answered with an error.
    #[error("the peer answered with an error: {0:?}")]
    Remote(E),
    /// No response within the request's timeout.
    #[error("the request timed out")]
    Timeout,
    /// The connection it was sent on was lost.
    #[error("the connection was lost before the response")]
    Disconnected,
    /// The offline queue dropped it before it was sent.
    #[error("the offline queue dropped the request")]
    Dropped,
    /// The user closed the session.
    #[error("the session was closed")]
    Closed,
    /// The session failed (fatal close, attempt limit).
    #[error("the session failed")]
    Failed,
}

/// Why one connection attempt failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AttemptError {
    /// The transport could not be opened.
    #[error("{0}")]
    Transport(TransportFailure),
    /// The transport did not open within the connect timeout.
    #[error("connect timed out")]
    ConnectTimeout,
    /// The handshake was not acknowledged within the handshake timeout.
    #[error("handshake not acknowledged in time")]
    HandshakeTimeout,
    /// The peer rejected the handshake.
    #[error("handshake rejected: {message}")]
    HandshakeRejected {
        /// The peer's explanation.
        message: String,
    },
    /// The peer closed before the handshake completed.
    #[error("the peer closed during the handshake ({})", ShowClose(code.as_ref(), reason))]
    ClosedDuringHandshake {
        /// The close code, `None` when the connection dropped without one.
        code: Option<CloseCode>,
        /// The close reason.
        reason: String,
    },
    /// The connection could not be written to in time during the handshake.
    #[error("write deadline missed during the handshake")]
    SendDeadline,
    /// The protocol could not build its handshake.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The peer broke the WebSocket protocol during the handshake; the connection was
    /// failed with [`Violation::close_code`].
    #[error("the peer broke the websocket protocol: {0}")]
    ProtocolError(Violation),
    /// A connection that had not yet proved stable was lost.
    #[error("the connection was lost before it proved stable: {0}")]
    Disconnected(DisconnectReason),
}

/// Why an open connection was lost.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// The peer closed (or the socket dropped, `code: None`).
    Closed {
        /// The close code, `None` when the connection dropped without one (1006).
        code: Option<CloseCode>,
        /// The close reason.
        reason: String,
    },
    /// Nothing arrived within the stale threshold.
    Stale,
    /// A write did not complete within the send deadline.
    SendDeadline,
    /// A write failed.
    WriteFailed,
    /// The peer broke the WebSocket protocol (invalid UTF-8, an oversized message, a bad
    /// frame): the connection was failed with [`Violation::close_code`].
    ProtocolError(Violation),
    /// A lazy session ([`Config::lazy`](crate::Config::lazy)) went unused for its idle
    /// timeout and closed the connection (1000 "idle"); the next use reconnects.
    Idle,
    /// The application paused the session ([`Session::disconnect`](crate::Session::disconnect)):
    /// the connection was closed (1000 "paused") until it resumes.
    Paused,
    /// The application asked for a new connection now
    /// ([`Session::reconnect`](crate::Session::reconnect)): the connection was closed
    /// (1000 "reconnect") and the next attempt starts without a backoff wait.
    Reconnect,
}

impl std::fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DisconnectReason::Closed { code, reason } => {
                write!(f, "the peer closed ({})", ShowClose(code.as_ref(), reason))
            }
            DisconnectReason::Stale => f.write_str("nothing arrived from the peer in time (stale)"),
            DisconnectReason::SendDeadline => {
                f.write_str("a write did not complete within the send deadline")
            }
            DisconnectReason::WriteFailed => f.write_str("a write failed"),
            DisconnectReason::ProtocolError(v) => {
                write!(f, "the peer broke the websocket protocol: {v}")
            }
            DisconnectReason::Idle => f.write_str("closed after the idle timeout"),
            DisconnectReason::Paused => f.write_str("paused by the application"),
            DisconnectReason::Reconnect => f.write_str("reconnecting at the application's request"),
        }
    }
}

/// A close as words: `code 1012 "restarting"`, `code 1000`, or no close frame at all.
pub(crate) struct ShowClose<'a>(pub(crate) Option<&'a CloseCode>, pub(crate) &'a str);

impl std::fmt::Display for ShowClose<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.0, self.1) {
            (None, _) => f.write_str("the connection dropped without a close frame"),
            (Some(code), "") => write!(f, "code {code}"),
            (Some(code), reason) => write!(f, "code {code} {reason:?}"),
        }
    }
}

/// Why the session ended in [`Status::Failed`](crate::Status::Failed).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The peer closed with a code the policy calls fatal.
    #[error(
        "the peer closed with a fatal code ({})",
        ShowClose(Some(code), reason)
    )]
    FatalClose {
        /// The close code.
        code: CloseCode,
        /// The close reason.
        reason: String,
    },
    /// A connection attempt failed in a way the policy calls fatal.
    #[error("{0} (fatal: not retried)")]
    FatalAttempt(AttemptError),
    /// The attempt limit was reached.
    #[error("gave up after {attempts} attempts; last: {last}")]
    AttemptsExhausted {
        /// Consecutive failed attempts.
        attempts: u32,
        /// The last attempt's error.
        last: AttemptError,
    },
    /// The first connect failed and the session is configured not to retry it.
    #[error("{0} (the first connect is not retried)")]
    FirstConnect(AttemptError),
    /// Not from the session: the loop driving it stopped before the session ended (it
    /// panicked, or its runtime shut down). Nothing more happens on the session.
    #[error("the session loop stopped")]
    Stopped,
}

/// Something the peer sent that breaks the rules. The frame is dropped and the session
/// goes on unless the variant says otherwise.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Violation {
    /// A frame the protocol could not parse.
    Malformed {
        /// What was wrong.
        detail: String,
    },
    /// A text frame that is not UTF-8.
    InvalidUtf8,
    /// A frame larger than `max_inbound_frame`.
    Oversized {
        /// Its length.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// A binary frame where the protocol expects text (or the reverse).
    UnexpectedBinary,
    /// A handshake acknowledgement after the session was already open.
    DuplicateAck,
    /// A handshake frame (challenge) outside the handshake.
    UnexpectedHandshake,
    /// A response whose id matches no request in flight.
    UnknownResponse {
        /// The id as the wire carried it.
        wire_id: String,
    },
    /// A close frame with a code no peer may send.
    InvalidCloseCode(u16),
    /// A frame that breaks the WebSocket framing rules (RFC 6455 §5): the codec refused
    /// it and the connection is failed with close code 1002.
    Frame(FrameViolation),
    /// An inbound frame or fragmented message did not arrive whole within
    /// [`LivenessConfig::message_timeout`](crate::LivenessConfig::message_timeout): the
    /// connection is failed with 1008.
    MessageTimeout,
}

impl Violation {
    /// The close code an endpoint fails the connection with when the codec finds this
    /// violation on the wire (RFC 6455 §7.4.1): 1007 for invalid UTF-8, 1009 for an
    /// oversized frame or message, 1008 for a message that never finished, 1002 for
    /// everything else.
    ///
    /// ```
    /// use tether_core::{CloseCode, Violation};
    /// assert_eq!(Violation::InvalidUtf8.close_code(), CloseCode::INVALID_PAYLOAD);
    /// assert_eq!(Violation::Oversized { len: 2, max: 1 }.close_code(), CloseCode::TOO_BIG);
    /// ```
    #[must_use]
    pub fn close_code(&self) -> CloseCode {
        match self {
            Violation::InvalidUtf8 => CloseCode::INVALID_PAYLOAD,
            Violation::Oversized { .. } => CloseCode::TOO_BIG,
            Violation::MessageTimeout => CloseCode::POLICY,
            _ => CloseCode::PROTOCOL_ERROR,
        }
    }

    /// The close reason sent with [`close_code`](Self::close_code): a fixed phrase, never
    /// anything the peer sent.
    #[must_use]
    pub fn close_reason(&self) -> &'static str {
        match self {
            Violation::InvalidUtf8 => "invalid utf-8",
            Violation::Oversized { .. } => "message too big",
            Violation::InvalidCloseCode(_) => "invalid close code",
            Violation::MessageTimeout => "message not finished in time",
            _ => "protocol error",
        }
    }
}

/// How a frame broke the WebSocket framing rules, as the codec reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameViolation {
    /// A reserved bit (RSV1–3) was set with no extension negotiated.
    ReservedBits,
    /// A reserved opcode (data 0x3–0x7, control 0xB–0xF).
    ReservedOpcode(u8),
    /// A continuation frame with no message to continue.
    UnexpectedContinuation,
    /// A new data frame while a fragmented message was unfinished.
    ExpectedContinuation,
    /// A fragmented control frame.
    FragmentedControl,
    /// A control frame with more than 125 bytes of payload.
    ControlTooLong,
    /// A masked frame from a server, or an unmasked one from a client.
    Masking,
    /// A close frame whose payload is not a code and a UTF-8 reason.
    BadClosePayload,
    /// A frame after the close frame.
    AfterClose,
    /// Any other framing error the codec reported.
    Other,
}

impl std::fmt::Display for FrameViolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameViolation::ReservedBits => f.write_str("reserved bits set"),
            FrameViolation::ReservedOpcode(op) => write!(f, "reserved opcode {op:#x}"),
            FrameViolation::UnexpectedContinuation => f.write_str("continuation without a start"),
            FrameViolation::ExpectedContinuation => {
                f.write_str("new message inside a fragmented one")
            }
            FrameViolation::FragmentedControl => f.write_str("fragmented control frame"),
            FrameViolation::ControlTooLong => f.write_str("control frame over 125 bytes"),
            FrameViolation::Masking => f.write_str("wrong masking"),
            FrameViolation::BadClosePayload => f.write_str("malformed close frame"),
            FrameViolation::AfterClose => f.write_str("frame after close"),
            FrameViolation::Other => f.write_str("framing error"),
        }
    }
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Violation::Malformed { detail } => write!(f, "malformed frame: {detail}"),
            Violation::InvalidUtf8 => f.write_str("text frame is not utf-8"),
            Violation::Oversized { len, max } => write!(f, "frame of {len} bytes exceeds {max}"),
            Violation::UnexpectedBinary => f.write_str("unexpected binary frame"),
            Violation::DuplicateAck => f.write_str("second handshake acknowledgement"),
            Violation::UnexpectedHandshake => f.write_str("handshake frame outside the handshake"),
            Violation::UnknownResponse { wire_id } => {
                write!(f, "response for unknown id {wire_id}")
            }
            Violation::InvalidCloseCode(c) => write!(f, "invalid close code {c}"),
            Violation::Frame(v) => write!(f, "bad frame: {v}"),
            Violation::MessageTimeout => f.write_str("message not finished in time"),
        }
    }
}
