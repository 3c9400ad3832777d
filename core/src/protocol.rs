//! The `Protocol` trait: the only place that knows a wire format.

use std::fmt::Debug;
use std::time::Duration;

use crate::error::{EncodeError, Violation};
use crate::frame::{DataFrame, OutFrame};
use crate::ids::{ConnId, RequestId, StreamKey};
use crate::resume::{Recovery, Resume};

/// A wire format, seen from the session: how to open, how to encode what the application
/// sends, and what each inbound frame means.
///
/// A protocol is stateful per connection ([`open`](Self::open) starts each one afresh) and
/// must never panic on peer input: anything it cannot make sense of is
/// [`Decoded::Violation`].
///
/// The associated types reach the application inside [`Event`](crate::Event)s, so they
/// must be `Debug + Clone + PartialEq` (the simulator compares timelines).
pub trait Protocol {
    /// Messages and event payloads delivered to the application.
    type Inbound: Debug + Clone + PartialEq;
    /// What [`Session::send`](crate::Session::send) takes.
    type Outbound;
    /// What [`Session::request`](crate::Session::request) takes. Protocols without
    /// requests use [`std::convert::Infallible`].
    type Request;
    /// A successful response's payload.
    type Response: Debug + Clone + PartialEq;
    /// An error response's payload.
    type RemoteError: Debug + Clone + PartialEq;

    /// A transport opened: reset per-connection state and say how the handshake starts.
    ///
    /// # Errors
    ///
    /// An [`EncodeError`] if the hello cannot be built; the attempt then fails as fatal,
    /// since retrying would build the same broken hello.
    fn open(&mut self, conn: ConnId) -> Result<Opening, EncodeError>;

    /// [`open`](Self::open) with what the session can resume: the server's session token
    /// and the last delivered position of every resumable stream
    /// ([`EncodedRequest::resumable`]). A protocol with a recovery dialect puts them in
    /// its hello (a Discord-style resume, centrifuge's `recover`, socket.io's connection
    /// state recovery) and reports the server's verdict in [`Acked::recovery`]. The
    /// default ignores them and calls `open`. Never log the token.
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    fn open_resuming(&mut self, conn: ConnId, resume: &Resume) -> Result<Opening, EncodeError> {
        let _ = resume;
        self.open(conn)
    }

    /// A standing subscription to write again, right after each reconnect's
    /// acknowledgement and before queued traffic, for the resumable stream `key` whose
    /// last delivered event was `last_seq`: the way to resume a stream one subscription
    /// at a time rather than in the hello. The default, `None`, writes nothing.
    ///
    /// # Errors
    ///
    /// An [`EncodeError`]: the stream then ends as
    /// [`StreamEnd::Unrecoverable`](crate::StreamEnd::Unrecoverable).
    fn resubscribe(
        &mut self,
        key: &StreamKey,
        last_seq: Option<u64>,
    ) -> Result<Option<OutFrame>, EncodeError> {
        let _ = (key, last_seq);
        Ok(None)
    }

    /// Encodes an application message.
    ///
    /// # Errors
    ///
    /// An [`EncodeError`], returned to the caller of `send`.
    fn encode(&mut self, message: Self::Outbound) -> Result<OutFrame, EncodeError>;

    /// Encodes a request under `meta.id`, and names the stream it starts, if any, so the
    /// session can catch that stream's events even before the response arrives.
    ///
    /// Protocols without requests need not implement it (declare `type Request =
    /// Infallible` so `request` cannot even be called); the default refuses.
    ///
    /// # Errors
    ///
    /// An [`EncodeError`], returned to the caller of `request`.
    fn encode_request(
        &mut self,
        meta: RequestMeta,
        request: Self::Request,
    ) -> Result<EncodedRequest, EncodeError> {
        let _ = (meta, request);
        Err(EncodeError("this protocol has no requests".into()))
    }

    /// Says what an inbound data frame means.
    fn decode(&mut self, frame: DataFrame, phase: Phase) -> Decoded<Self>;

    /// The stream a successful response names (a gateway's `runId`), when it may differ from
    /// the key the request pre-registered.
    fn response_stream(&self, _response: &Self::Response) -> Option<StreamKey> {
        None
    }
}

/// Where the connection is, for [`Protocol::decode`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// The transport is open; the handshake is not acknowledged yet.
    Handshake,
    /// The handshake is acknowledged.
    Open,
}

/// How a connection's handshake starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Opening {
    /// No handshake: the session is open as soon as the transport is.
    Ready,
    /// Send this hello, then wait for [`Decoded::Ack`].
    Hello(OutFrame),
    /// Wait for the server to speak first ([`Decoded::Challenge`], then [`Decoded::Ack`]).
    AwaitServer,
}

/// What the session hands a protocol to encode a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestMeta {
    /// The request's id; the response must map back to it.
    pub id: RequestId,
    /// 128 bits from the session's seeded generator, for idempotency keys.
    pub nonce: u128,
}

impl RequestMeta {
    /// The nonce formatted as a version-4-shaped UUID.
    #[must_use]
    pub fn nonce_uuid(&self) -> String {
        let n = (self.nonce & !(0xF000 << 64) | (0x4000 << 64)) & !(0xC000 << 48) | (0x8000 << 48);
        format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            (n >> 96) as u32,
            (n >> 80) as u16,
            (n >> 64) as u16,
            (n >> 48) as u16,
            n & 0xFFFF_FFFF_FFFF
        )
    }
}

/// An encoded request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedRequest {
    /// The frame to write.
    pub frame: OutFrame,
    /// The stream this request starts, pre-registered before the frame is written.
    pub stream: Option<StreamKey>,
    /// Whether the peer may safely receive this frame twice (it carries an idempotency
    /// key the peer de-duplicates by, or does nothing twice): in flight when its
    /// connection drops, it is then written again, unchanged, on the next connection
    /// instead of failing with `Disconnected`, at most
    /// [`Config::request_retries`](crate::Config::request_retries) times and within its
    /// own timeout. A request that starts a stream is not sent again: its stream ends with
    /// the connection.
    pub idempotent: bool,
    /// Whether the stream this request starts survives a lost connection: it does not
    /// end with `Disconnected`; its position goes into the next handshake's
    /// [`Resume`] (and to [`Protocol::resubscribe`]), and it ends only by its own
    /// terminal, the server's [`Recovery::Unrecoverable`], its idle timeout or the
    /// session's end.
    pub resumable: bool,
}

/// What a handshake acknowledgement tells the session.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Acked {
    /// The peer's application heartbeat interval (a gateway's `tickIntervalMs`): stale
    /// detection then waits `interval × heartbeat_stale_factor`.
    pub heartbeat: Option<Duration>,
    /// A session token to present on the next connection ([`Resume::token`]); at most
    /// [`MAX_RESUME_TOKEN`](crate::MAX_RESUME_TOKEN) bytes (a longer one is a violation
    /// and is dropped). `None` keeps the one the session holds.
    pub resume_token: Option<String>,
    /// What the server made of the resume this handshake carried.
    pub recovery: Recovery,
}

/// A handshake the peer refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// The peer's explanation.
    pub message: String,
    /// Whether retrying cannot help (bad credentials).
    pub fatal: bool,
    /// The peer's requested wait before retrying.
    pub retry_after: Option<Duration>,
}

/// How a stream event's text relates to the ones before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextMode {
    /// Each event carries the whole text so far; the session derives the increment.
    Accumulated,
    /// Each event carries only the new text.
    Incremental,
}

/// The state a stream event reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamState {
    /// Progress without text.
    Status,
    /// More text.
    Delta,
    /// The stream completed (terminal).
    Final,
    /// The stream failed (terminal).
    Error {
        /// The peer's message.
        message: String,
    },
    /// The stream was aborted (terminal).
    Aborted,
}

impl StreamState {
    /// Whether this state ends the stream.
    #[must_use]
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            StreamState::Final | StreamState::Error { .. } | StreamState::Aborted
        )
    }
}

/// A decoded stream event.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamFrame<I> {
    /// The stream it belongs to.
    pub key: StreamKey,
    /// Its sequence number within the stream, if the protocol numbers events.
    pub seq: Option<u64>,
    /// What it reports.
    pub state: StreamState,
    /// Text it carries.
    pub text: Option<String>,
    /// How `text` relates to earlier events.
    pub text_mode: TextMode,
    /// The whole decoded event, for the application.
    pub payload: I,
}

/// What an inbound frame means.
#[derive(Debug)]
pub enum Decoded<P: Protocol + ?Sized> {
    /// An application message.
    Message(P::Inbound),
    /// A response. `id` is `Err(wire id)` when the wire id is not one this session issued.
    Response {
        /// The request it answers.
        id: Result<RequestId, String>,
        /// Success or the peer's error.
        result: Result<P::Response, P::RemoteError>,
    },
    /// An event of some stream.
    Stream(StreamFrame<P::Inbound>),
    /// An application heartbeat (counts as life, nothing else).
    Heartbeat,
    /// The server's challenge: answer with this frame.
    Challenge(OutFrame),
    /// The handshake is acknowledged.
    Ack(Acked),
    /// The handshake is refused.
    Rejected(Rejection),
    /// The frame breaks the protocol.
    Violation(Violation),
    /// Nothing the session needs to act on.
    Ignore,
}
