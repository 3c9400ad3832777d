//! The transport seam: opening a connection and exchanging frames over it.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use futures::{Sink, Stream};
use tether_core::{CloseCode, ConnId, InFrame, OutFrame, TransportFailure, Violation};

/// What the driver writes on a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outgoing {
    /// A data frame or ping.
    Frame(OutFrame),
    /// A close frame.
    Close(CloseCode, String),
}

/// What a connection yields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A frame.
    Frame(InFrame),
    /// The peer's close frame, with the code and reason as the peer sent them (a frame
    /// without a code arrives as `Some(1005)`). A socket that drops without a close frame
    /// ends the stream (or yields an error) instead.
    ///
    /// The stream goes on after this item until the close handshake is over (the answer
    /// to the peer's close is flushed, the peer dropped the socket): poll it to its end,
    /// bounded by a linger of your own, before dropping the link.
    Closed(Option<CloseCode>, String),
    /// The peer broke the WebSocket protocol (invalid UTF-8, a frame or message over the
    /// limit, broken framing). The stream goes on only to send the close frame
    /// [`Violation::close_code`] names, then ends: poll it to its end as after
    /// [`Closed`](Self::Closed).
    Violation(Violation),
}

impl Incoming {
    /// What the session is told of this item of connection `conn`.
    pub(crate) fn into_input(self, conn: ConnId) -> tether_core::Input {
        use tether_core::Input;
        match self {
            Incoming::Frame(frame) => Input::FrameReceived { conn, frame },
            Incoming::Closed(code, reason) => Input::TransportClosed { conn, code, reason },
            Incoming::Violation(violation) => {
                tracing::debug!(%conn, %violation, "peer broke the websocket protocol");
                Input::ProtocolError { conn, violation }
            }
        }
    }
}

impl Incoming {
    /// Whether this item is a protocol error the link has not answered yet: one the
    /// consumer may hold back (the stream unpolled, the session not yet told) until the
    /// application has answered the messages that came before it. A close frame with an
    /// invalid code is not one: the peer has closed, and the codec has queued its answer.
    pub(crate) fn is_unanswered_violation(&self) -> bool {
        matches!(self, Incoming::Violation(v) if unanswered(v))
    }
}

fn unanswered(violation: &Violation) -> bool {
    !matches!(violation, Violation::InvalidCloseCode(_))
}

/// What the session is told of a connection that dropped without a close frame (its
/// stream ended or failed).
pub(crate) fn dropped(conn: ConnId) -> tether_core::Input {
    tether_core::Input::TransportClosed {
        conn,
        code: None,
        reason: String::new(),
    }
}

/// The write half of an open connection. `send` completes when the frame is written to
/// the socket (flushed), which is what the driver reports as `WriteCompleted`.
pub type FrameSink = Pin<Box<dyn Sink<Outgoing, Error = std::io::Error> + Send>>;

/// The read half of an open connection. It ends (or yields an error) when the connection
/// drops without a close frame.
pub type FrameStream = Pin<Box<dyn Stream<Item = Result<Incoming, std::io::Error>> + Send>>;

/// An open connection, split so that a stuck write never stops reading.
pub struct Link {
    /// The write half.
    pub sink: FrameSink,
    /// The read half.
    pub stream: FrameStream,
    /// Resets the socket when the connection is aborted rather than closed (`None`: a
    /// transport without a socket, or one that closes gracefully either way).
    pub reset: Option<crate::Reset>,
    /// The subprotocol the upgrade negotiated, if any (reported on every open).
    pub subprotocol: Option<String>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Link")
    }
}

/// Opens connections. [`WsTransport`](crate::WsTransport) does it with async-tungstenite over
/// any byte stream; the simulator does it over its virtual network.
#[async_trait::async_trait]
pub trait Transport: Send + Sync + 'static {
    /// Opens the connection for generation `conn` (TCP, TLS, WebSocket upgrade). The
    /// session enforces the connect timeout by aborting this future.
    async fn connect(&self, conn: ConnId) -> Result<Link, TransportFailure>;

    /// Sets what the codec enforces on what the peer sends ([`InboundLimits`]).
    /// [`Client`](crate::Client) calls it with the session's `max_inbound_frame` and
    /// `liveness.message_timeout` before the first connection; a transport with no codec
    /// of its own ignores it.
    fn set_inbound_limits(&mut self, limits: InboundLimits) {
        let _ = limits;
    }
}

/// What a connection's codec enforces on what the peer sends, taken from the session's
/// (or the server connection's) configuration.
#[derive(Clone)]
pub struct InboundLimits {
    /// The largest frame or message; a larger one fails the connection with 1009 at its
    /// header, before any of it is buffered.
    pub max_message: usize,
    /// How long a frame or fragmented message may stay unfinished; then the connection is
    /// failed with 1008.
    pub message_timeout: Duration,
    sleep: Arc<dyn Fn(Duration) -> BoxFuture<'static, ()> + Send + Sync>,
}

impl InboundLimits {
    /// The limits, with `runtime`'s clock and sleep for the message timeout.
    pub fn new<R: crate::Runtime>(
        runtime: R,
        max_message: usize,
        message_timeout: Duration,
    ) -> Self {
        InboundLimits {
            max_message,
            message_timeout,
            // Validated configurations keep the timeout within a year, far inside the
            // clock's range; a larger one sleeps for ever rather than overflow.
            sleep: Arc::new(move |d| match runtime.now().checked_add(d) {
                Some(at) => runtime.sleep_until(at),
                None => Box::pin(futures::future::pending()),
            }),
        }
    }

    /// A sleep of `d` on the runtime the limits were made with.
    pub(crate) fn sleep(&self, d: Duration) -> BoxFuture<'static, ()> {
        (self.sleep)(d)
    }
}

impl std::fmt::Debug for InboundLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboundLimits")
            .field("max_message", &self.max_message)
            .field("message_timeout", &self.message_timeout)
            .finish_non_exhaustive()
    }
}
