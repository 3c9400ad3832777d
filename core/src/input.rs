//! What the adapter reports about the transport.

use crate::close::{CloseCode, TransportFailure};
use crate::frame::InFrame;
use crate::ids::{ConnId, FrameId};

/// A transport-level fact, reported by the adapter with the generation it belongs to.
/// Inputs of a generation other than the current one are counted and ignored.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Input {
    /// The WebSocket upgrade succeeded.
    TransportOpened {
        /// The generation.
        conn: ConnId,
    },
    /// The transport could not be opened.
    TransportFailed {
        /// The generation.
        conn: ConnId,
        /// Why.
        failure: TransportFailure,
    },
    /// A frame arrived.
    FrameReceived {
        /// The generation.
        conn: ConnId,
        /// The frame.
        frame: InFrame,
    },
    /// The transport closed: a close frame (`code: Some`) or a drop (`None`, i.e. 1006).
    TransportClosed {
        /// The generation.
        conn: ConnId,
        /// The peer's close code.
        code: Option<CloseCode>,
        /// The peer's close reason.
        reason: String,
    },
    /// The codec refused what the peer sent (invalid UTF-8, a frame or message over the
    /// size limit, broken framing) and is failing the connection: it sends the close
    /// frame [`Violation::close_code`](crate::Violation::close_code) names and drops the
    /// socket. No other input of the connection follows.
    ProtocolError {
        /// The generation.
        conn: ConnId,
        /// What the peer did.
        violation: crate::error::Violation,
    },
    /// A frame was fully written.
    WriteCompleted {
        /// The generation.
        conn: ConnId,
        /// The frame.
        frame: FrameId,
    },
    /// A write failed (the socket is broken).
    WriteFailed {
        /// The generation.
        conn: ConnId,
        /// The frame.
        frame: FrameId,
    },
}

impl Input {
    /// The generation this input belongs to.
    #[must_use]
    pub fn conn(&self) -> ConnId {
        match self {
            Input::TransportOpened { conn }
            | Input::TransportFailed { conn, .. }
            | Input::FrameReceived { conn, .. }
            | Input::TransportClosed { conn, .. }
            | Input::ProtocolError { conn, .. }
            | Input::WriteCompleted { conn, .. }
            | Input::WriteFailed { conn, .. } => *conn,
        }
    }
}
