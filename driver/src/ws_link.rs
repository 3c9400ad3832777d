//! An open WebSocket as a [`Link`]: the client transport's connections and the server
//! side's accepted ones alike, so both roles behave the same on the wire.
//!
//! What the link does on its own, because the codec's state decides it:
//! - **The peer's close code as sent.** The close frame is reported with the code and
//!   reason the peer put on the wire ([`Sniffed`]), not tungstenite's 1002 substitute.
//! - **The close handshake completes.** After the peer's close frame (or the answer to
//!   ours), the stream keeps driving the codec: tungstenite's answering close frame goes
//!   out, and the stream ends when the peer drops the socket (a server drops it at
//!   once, as RFC 6455 §7.1.1 asks). The consumer keeps polling until the stream ends,
//!   bounded by its own linger.
//! - **Protocol errors are typed and answered.** When the codec refuses what the peer
//!   sent (invalid UTF-8, a frame or message over the limit, broken framing), the stream
//!   yields [`Incoming::Violation`], then sends the close frame the violation calls for
//!   (1007, 1009, 1002) and ends once it is flushed.
//!
//! - **No message stays unfinished for ever.** A frame or fragmented message that is not
//!   whole within [`InboundLimits::message_timeout`] of being found unfinished fails the
//!   connection with 1008 (`Violation::MessageTimeout`), pings and pongs between its
//!   fragments notwithstanding.
//!
//! Both halves share the codec behind a mutex that each poll holds only briefly, so a
//! write the peer never drains still never stops reading.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::error::{CapacityError, ProtocolError};
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCode;
use async_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use async_tungstenite::tungstenite::{Error as WsError, Message};
use futures::future::BoxFuture;
use futures::io::{AsyncRead, AsyncWrite};
use futures::{Sink, Stream};
use tether_core::{CloseCode, FrameViolation, InFrame, OutFrame, Violation};

use crate::sniff::Sniffed;
use crate::transport::{InboundLimits, Incoming, Link, Outgoing};

type Shared<S> = Arc<Mutex<WebSocketStream<Sniffed<S>>>>;

/// Locks the codec. A poisoned lock only means another poll panicked mid-call; the codec
/// itself is still consistent between calls, so the link goes on with it.
fn lock<S>(ws: &Shared<S>) -> MutexGuard<'_, WebSocketStream<Sniffed<S>>> {
    ws.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The codec's configuration for a connection that accepts frames and messages of at
/// most `max_message` bytes: the codec refuses a larger one at its header, before
/// buffering any of it, and the link fails the connection with 1009. The same for both
/// roles.
pub(crate) fn codec_config(max_message: usize) -> WebSocketConfig {
    let mut config = WebSocketConfig::default();
    config.max_message_size = Some(max_message);
    config.max_frame_size = Some(max_message);
    // tungstenite zeroes its whole read chunk before every read, including reads that
    // find nothing; at the 128 KiB default that cost ~1.6 µs per round trip, and a hub
    // holds thousands of connections. The buffer is also allocated up front and written
    // by the first read, so every idle connection keeps all of it resident: 8 KiB halves
    // what 16 KiB cost each idle session and server connection (`bench/src/bin/memory.rs`)
    // and still takes the adapters bench's 64-frame window (~6.8 KiB) in one read, while
    // 4 KiB needed two and cost ~60% more CPU per frame there. A larger frame still
    // grows the buffer to its length; only each read is capped at 8 KiB.
    config.read_buffer_size = 8 << 10;
    config
}

/// The link of an upgraded WebSocket whose byte stream was wrapped in [`Sniffed`] before
/// the upgrade.
pub(crate) fn into_link<S>(
    ws: WebSocketStream<Sniffed<S>>,
    reset: Option<crate::Reset>,
    limits: Option<InboundLimits>,
    subprotocol: Option<String>,
) -> Link
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let shared = Arc::new(Mutex::new(ws));
    Link {
        sink: Box::pin(LinkSink(shared.clone())),
        stream: Box::pin(LinkStream {
            ws: shared,
            state: ReadState::Open,
            limits,
            unfinished: None,
        }),
        reset,
        subprotocol,
    }
}

struct LinkSink<S>(Shared<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Outgoing> for LinkSink<S> {
    type Error = io::Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut ws = lock(&self.0);
        Pin::new(&mut *ws).poll_ready(cx).map_err(ws_io)
    }

    fn start_send(self: Pin<&mut Self>, item: Outgoing) -> io::Result<()> {
        let mut ws = lock(&self.0);
        Pin::new(&mut *ws)
            .start_send(to_message(item))
            .map_err(ws_io)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut ws = lock(&self.0);
        Pin::new(&mut *ws).poll_flush(cx).map_err(ws_io)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut ws = lock(&self.0);
        Pin::new(&mut *ws).poll_close(cx).map_err(ws_io)
    }
}

enum ReadState {
    /// Frames flow.
    Open,
    /// A close frame was received: the codec answers it as it is driven on.
    Closing,
    /// The peer broke the protocol: the close frame `code` (with `reason`) is still to
    /// be sent (`queued` once handed to the codec).
    Failing {
        code: CloseCode,
        reason: &'static str,
        queued: bool,
    },
    /// Nothing more.
    Done,
}

struct LinkStream<S> {
    ws: Shared<S>,
    state: ReadState,
    /// Bounds an unfinished message, when the transport was given limits.
    limits: Option<InboundLimits>,
    /// The message (by the number of messages completed before it) whose time is
    /// running, and its deadline.
    unfinished: Option<(u64, BoxFuture<'static, ()>)>,
}

/// Whether the message the peer left unfinished has used up its time: arms a deadline
/// when a new message is found unfinished, drops it once none is.
fn overdue(
    limits: Option<&InboundLimits>,
    unfinished: &mut Option<(u64, BoxFuture<'static, ()>)>,
    now_unfinished: Option<u64>,
    cx: &mut Context<'_>,
) -> bool {
    let (Some(limits), Some(message)) = (limits, now_unfinished) else {
        *unfinished = None;
        return false;
    };
    let deadline = match unfinished {
        Some((m, deadline)) if *m == message => deadline,
        _ => {
            &mut unfinished
                .insert((message, limits.sleep(limits.message_timeout)))
                .1
        }
    };
    deadline.as_mut().poll(cx).is_ready()
}

impl<S: AsyncRead + AsyncWrite + Unpin> Stream for LinkStream<S> {
    type Item = io::Result<Incoming>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let mut ws = lock(&this.ws);
        loop {
            match &mut this.state {
                ReadState::Done => return Poll::Ready(None),
                ReadState::Open => {
                    let Poll::Ready(next) = Pin::new(&mut *ws).poll_next(cx) else {
                        let now_unfinished = ws.get_ref().unfinished();
                        if overdue(
                            this.limits.as_ref(),
                            &mut this.unfinished,
                            now_unfinished,
                            cx,
                        ) {
                            let v = Violation::MessageTimeout;
                            this.state = ReadState::Failing {
                                code: v.close_code(),
                                reason: v.close_reason(),
                                queued: false,
                            };
                            return Poll::Ready(Some(Ok(Incoming::Violation(v))));
                        }
                        return Poll::Pending;
                    };
                    let item = match next {
                        None => None,
                        Some(Ok(Message::Close(frame))) => {
                            // tungstenite has queued its answer (1002 for a code it does
                            // not know); reading on sends it.
                            this.state = ReadState::Closing;
                            Some(Ok(peer_close(&ws, frame)))
                        }
                        Some(Ok(msg)) => match from_message(msg) {
                            Some(incoming) => Some(Ok(incoming)),
                            None => continue,
                        },
                        Some(Err(e)) => match classify(e) {
                            ReadEnd::Violation(v) => {
                                this.state = ReadState::Failing {
                                    code: v.close_code(),
                                    reason: v.close_reason(),
                                    queued: false,
                                };
                                Some(Ok(Incoming::Violation(v)))
                            }
                            ReadEnd::Closed => None,
                            ReadEnd::Io(e) => Some(Err(e)),
                        },
                    };
                    if item.as_ref().is_none_or(Result::is_err) {
                        this.state = ReadState::Done;
                    }
                    return Poll::Ready(item);
                }
                ReadState::Closing => {
                    // Reading on flushes the answering close frame and then waits for the
                    // peer to drop the socket; whatever else arrives is discarded.
                    match futures::ready!(Pin::new(&mut *ws).poll_next(cx)) {
                        Some(Ok(_)) => {}
                        None | Some(Err(_)) => this.state = ReadState::Done,
                    }
                }
                ReadState::Failing {
                    code,
                    reason,
                    queued,
                } => {
                    let mut sink = Pin::new(&mut *ws);
                    if !*queued {
                        if futures::ready!(sink.as_mut().poll_ready(cx)).is_err() {
                            this.state = ReadState::Done;
                            continue;
                        }
                        let close = Message::Close(Some(CloseFrame {
                            code: WsCode::from(code.0),
                            reason: (*reason).into(),
                        }));
                        if sink.as_mut().start_send(close).is_err() {
                            this.state = ReadState::Done;
                            continue;
                        }
                        *queued = true;
                    }
                    // Flushed or failed, the connection is over: the peer broke it.
                    let _ = futures::ready!(sink.poll_flush(cx));
                    this.state = ReadState::Done;
                }
            }
        }
    }
}

/// The peer's close frame as it sent it, falling back to what tungstenite reports if the
/// watcher lost track.
fn peer_close<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &WebSocketStream<Sniffed<S>>,
    frame: Option<CloseFrame>,
) -> Incoming {
    if let Some(raw) = ws.get_ref().close_frame() {
        return match raw.code().map(CloseCode) {
            // A code no peer may send (1005 on the wire among them, which would otherwise
            // read as a close frame without a code) is the peer breaking the protocol.
            Some(code) if !code.is_valid_on_wire() => {
                Incoming::Violation(Violation::InvalidCloseCode(code.0))
            }
            Some(code) => Incoming::Closed(Some(code), raw.reason()),
            None => Incoming::Closed(Some(CloseCode::NO_STATUS), String::new()),
        };
    }
    match frame {
        Some(f) => Incoming::Closed(Some(CloseCode(u16::from(f.code))), f.reason.to_string()),
        None => Incoming::Closed(Some(CloseCode::NO_STATUS), String::new()),
    }
}

/// How reading ended.
enum ReadEnd {
    /// The peer broke the protocol.
    Violation(Violation),
    /// The socket closed after a completed close handshake.
    Closed,
    /// The socket failed or dropped.
    Io(io::Error),
}

fn classify(e: WsError) -> ReadEnd {
    let frame = |f| ReadEnd::Violation(Violation::Frame(f));
    match e {
        WsError::ConnectionClosed | WsError::AlreadyClosed => ReadEnd::Closed,
        WsError::Io(e) => ReadEnd::Io(e),
        WsError::Utf8(_) => ReadEnd::Violation(Violation::InvalidUtf8),
        WsError::Capacity(CapacityError::MessageTooLong { size, max_size }) => {
            ReadEnd::Violation(Violation::Oversized {
                len: size,
                max: max_size,
            })
        }
        WsError::Protocol(p) => match p {
            ProtocolError::ResetWithoutClosingHandshake => ReadEnd::Io(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "connection dropped without a close frame",
            )),
            ProtocolError::NonZeroReservedBits => frame(FrameViolation::ReservedBits),
            ProtocolError::UnknownControlFrameType(op)
            | ProtocolError::UnknownDataFrameType(op)
            | ProtocolError::InvalidOpcode(op) => frame(FrameViolation::ReservedOpcode(op)),
            ProtocolError::UnexpectedContinueFrame => frame(FrameViolation::UnexpectedContinuation),
            ProtocolError::ExpectedFragment(_) => frame(FrameViolation::ExpectedContinuation),
            ProtocolError::FragmentedControlFrame => frame(FrameViolation::FragmentedControl),
            ProtocolError::ControlFrameTooBig => frame(FrameViolation::ControlTooLong),
            ProtocolError::UnmaskedFrameFromClient | ProtocolError::MaskedFrameFromServer => {
                frame(FrameViolation::Masking)
            }
            ProtocolError::InvalidCloseSequence => frame(FrameViolation::BadClosePayload),
            ProtocolError::ReceivedAfterClosing => frame(FrameViolation::AfterClose),
            _ => frame(FrameViolation::Other),
        },
        WsError::Capacity(_) | WsError::AttackAttempt => frame(FrameViolation::Other),
        other => ReadEnd::Io(io::Error::other(other.to_string())),
    }
}

fn to_message(out: Outgoing) -> Message {
    match out {
        Outgoing::Frame(OutFrame::Text(t)) => {
            match async_tungstenite::tungstenite::Utf8Bytes::try_from(t.into_bytes()) {
                Ok(t) => Message::Text(t),
                // Invariant: Utf8Bytes only holds UTF-8, so the conversion cannot fail; an
                // empty text frame is the harmless fallback rather than a panic.
                Err(_) => Message::Text("".into()),
            }
        }
        Outgoing::Frame(OutFrame::Binary(b)) => Message::Binary(b),
        Outgoing::Frame(OutFrame::Ping(b)) => Message::Ping(b),
        Outgoing::Close(code, reason) => Message::Close(Some(CloseFrame {
            code: WsCode::from(code.0),
            reason: reason.into(),
        })),
    }
}

/// A data or control frame; `None` for what the driver never sees (raw frames, and close
/// frames, which the stream handles itself).
fn from_message(msg: Message) -> Option<Incoming> {
    Some(match msg {
        Message::Text(t) => Incoming::Frame(InFrame::Text(t.into())),
        Message::Binary(b) => Incoming::Frame(InFrame::Binary(b)),
        Message::Ping(b) => Incoming::Frame(InFrame::Ping(b)),
        Message::Pong(b) => Incoming::Frame(InFrame::Pong(b)),
        Message::Close(_) | Message::Frame(_) => return None,
    })
}

fn ws_io(e: WsError) -> io::Error {
    match e {
        WsError::Io(e) => e,
        other => io::Error::other(other.to_string()),
    }
}
