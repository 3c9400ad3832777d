//! The scripted server's end of a simulated byte pipe, speaking through a real codec.
//!
//! One task per connection accepts the upgrade with `async_tungstenite` (so the client's
//! handshake meets a real server handshake), turns the codec's messages into [`Wire`]
//! values for the scripted [`Server`](crate::Server), and the server's actions back into
//! messages. The codec answers pings and close frames itself, as a real server's does.
//! A [`WireFault`] writes bytes straight into the pipe instead, bypassing the codec.
//!
//! Every byte the peer reads passes a tap that parses the client's frames independently
//! of the codec ([`ws_frames`](crate::ws_frames)): [`PeerRecord`]s say what the peer read off its wire (a close code the
//! client answered with, a data frame it never sent twice), for oracles and tests to judge.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use async_tungstenite::tungstenite::Message;
use async_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use async_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCode;
use async_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use bytes::Bytes;
use futures::channel::mpsc;
use futures::future::{Either, select};
use futures::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use futures::{SinkExt, StreamExt};
use tether_core::ConnId;

use crate::pipe::{Clock, PipeEnd};
use crate::server::Accept;
use crate::wire::Wire;
use crate::ws_frames::{PeerRead, Scanner, close_payload, opcode, server_frame};

/// A byte-level fault on the wire mode's current connection (the latest one the peer
/// has open), applied at its instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WireFault {
    /// These bytes, written straight into the pipe, bypassing the peer's codec (a frame
    /// from [`server_frame`], part of one, or anything at all).
    Raw(Bytes),
    /// A close frame with this payload (code and reason, as [`close_payload`] builds it,
    /// or anything else), written straight into the pipe. The peer then writes nothing
    /// more, reads on, and drops the connection once it reads a close frame back.
    RawClose(Bytes),
    /// The peer stops writing for good (it never answers a close, a ping or a request)
    /// and reads on, keeping the connection open.
    Mute,
    /// The peer stops reading and writing for good, keeping the connection open: what
    /// the client writes piles up in the pipe until its buffer is full and the client's
    /// writes wait (backpressure).
    Deaf,
    /// The peer resets the connection: the client reads `ConnectionReset` after whatever
    /// was written before.
    Reset,
    /// The connection goes half-open ([`PipeEnd::sever`](crate::pipe::PipeEnd::sever)):
    /// what is in flight is lost, nothing crosses in either direction from now on, and
    /// neither end is told — the client's writes are accepted and go nowhere, as when a
    /// NAT forgets the connection. The peer stops reading and writing.
    HalfOpen,
}

impl WireFault {
    /// Every wire fault's name, in declaration order.
    pub const NAMES: &'static [&'static str] =
        &["raw", "raw-close", "mute", "deaf", "reset", "half-open"];

    /// The fault's name, as [`NAMES`](Self::NAMES) lists it.
    pub fn name(&self) -> &'static str {
        match self {
            WireFault::Raw(_) => "raw",
            WireFault::RawClose(_) => "raw-close",
            WireFault::Mute => "mute",
            WireFault::Deaf => "deaf",
            WireFault::Reset => "reset",
            WireFault::HalfOpen => "half-open",
        }
    }

    /// A raw close frame with `code` and `reason` (any code, any reason length: the codec
    /// is not asked).
    pub fn close(code: u16, reason: &str) -> Self {
        WireFault::RawClose(close_payload(Some(code), reason.as_bytes()))
    }
}

/// What the peer read on a connection, and when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerRecord {
    /// The virtual instant the bytes were read.
    pub at: Duration,
    /// The connection.
    pub conn: ConnId,
    /// The frame.
    pub read: PeerRead,
}

/// The records of a run, shared by every connection's tap.
pub(crate) type PeerLog = Arc<Mutex<Vec<PeerRecord>>>;

/// The peer's end of the pipe with the tap on its reads.
struct Tap {
    io: PipeEnd,
    conn: ConnId,
    scanner: Scanner,
    log: PeerLog,
    clock: Arc<dyn Clock>,
}

impl AsyncRead for Tap {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = futures::ready!(Pin::new(&mut this.io).poll_read(cx, buf));
        let mut reads = Vec::new();
        match &result {
            Ok(0) if !buf.is_empty() => reads.push(PeerRead::Eof),
            Ok(n) => this.scanner.feed(&buf[..*n], &mut reads),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => reads.push(PeerRead::Reset),
            Err(_) => {}
        }
        if !reads.is_empty() {
            let at = this.clock.now();
            let mut log = this.log.lock().unwrap_or_else(|e| e.into_inner());
            log.extend(reads.into_iter().map(|read| PeerRecord {
                at,
                conn: this.conn,
                read,
            }));
        }
        Poll::Ready(result)
    }
}

impl futures::io::AsyncWrite for Tap {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_close(cx)
    }
}

/// What a peer asks of the run: the scripted server's callbacks.
pub(crate) trait PeerHost: Send + Sync {
    /// The upgrade request arrived.
    fn accept(&self, conn: ConnId) -> Accept;
    /// The upgrade was answered with 101.
    fn opened(&self, conn: ConnId);
    /// A data frame arrived.
    fn frame(&self, conn: ConnId, wire: Wire);
    /// The connection is gone.
    fn closed(&self, conn: ConnId);
}

/// What the run asks of a peer.
#[derive(Debug)]
pub(crate) enum PeerCmd {
    /// A frame through the codec (a text frame that is not UTF-8 goes raw).
    Send(Wire),
    /// A fault.
    Fault(WireFault),
    /// Stop reading (`Fault::StopReading`), writing on: what the client writes piles up
    /// in the pipe until its buffer is full and the client's writes wait.
    StopReading,
    /// Read again, beginning with what piled up (the end of a `Fault::StopReading`).
    ResumeReading,
}

/// Everything a peer task needs besides its commands.
pub(crate) struct PeerParts {
    pub(crate) io: PipeEnd,
    pub(crate) conn: ConnId,
    pub(crate) host: Arc<dyn PeerHost>,
    pub(crate) log: PeerLog,
    pub(crate) clock: Arc<dyn Clock>,
    /// Answer the upgrade with this status (and `Retry-After` in seconds) without asking
    /// the server: a `Fault::RejectUpgrade` in force when the connection was dialed.
    pub(crate) reject: Option<(u16, Option<Duration>)>,
}

/// How the peer reads.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Through its codec, answering what the codec answers.
    Codec,
    /// Not at all, but writing through its codec as in `Codec` (a server that stopped
    /// reading).
    NotReading,
    /// Raw bytes, never writing; the connection is dropped once a close frame is read
    /// (after this many were read) when `Some`.
    Drain(Option<usize>),
    /// Neither reading nor writing.
    Deaf,
}

fn status_response(status: u16, retry_after: Option<Duration>) -> ErrorResponse {
    let mut r = ErrorResponse::new(None);
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    if let Some(after) = retry_after {
        r.headers_mut()
            .insert("retry-after", HeaderValue::from(after.as_secs()));
    }
    r
}

/// Serves one connection until it ends; then tells the host it is gone (if it opened).
pub(crate) async fn serve(parts: PeerParts, mut cmds: mpsc::UnboundedReceiver<PeerCmd>) {
    let PeerParts {
        io,
        conn,
        host,
        log,
        clock,
        reject,
    } = parts;
    let mut raw = io.clone();
    let tap = Tap {
        io,
        conn,
        scanner: Scanner::default(),
        log,
        clock,
    };
    let answer = host.clone();
    // The callback's signature is tungstenite's: its error is an HTTP response.
    #[allow(clippy::result_large_err)]
    let callback = move |_: &Request, response: Response| {
        if let Some((status, retry_after)) = reject {
            return Err(status_response(status, retry_after));
        }
        match answer.accept(conn) {
            Accept::Accept => Ok(response),
            Accept::Reject(status) => Err(status_response(status, None)),
        }
    };
    // A small read chunk: tungstenite zeroes the whole chunk before every read, and at
    // its 128 KiB default that zeroing was the simulator's largest single cost. The chunk
    // size changes how many bytes one read takes, never what the codec decides.
    let mut config = WebSocketConfig::default();
    config.read_buffer_size = 4 << 10;
    let Ok(mut ws) =
        async_tungstenite::accept_hdr_async_with_config(tap, callback, Some(config)).await
    else {
        return;
    };
    host.opened(conn);
    let mut mode = Mode::Codec;
    let mut scratch = vec![0u8; 4096];
    loop {
        let cmd = match mode {
            Mode::Codec => match select(cmds.next(), ws.next()).await {
                Either::Left((cmd, _)) => cmd,
                Either::Right((msg, _)) => {
                    match msg {
                        Some(Ok(Message::Text(t))) => host.frame(conn, Wire::Text(t.into())),
                        Some(Ok(Message::Binary(b))) => host.frame(conn, Wire::Binary(b)),
                        // The codec answers pings and closes itself; reading on sends the
                        // answer and then ends the stream.
                        Some(Ok(_)) => {}
                        Some(Err(_)) | None => break,
                    }
                    continue;
                }
            },
            Mode::Deaf | Mode::NotReading => cmds.next().await,
            Mode::Drain(close_after) => {
                let read = ws.get_mut().read(&mut scratch);
                match select(cmds.next(), read).await {
                    Either::Left((cmd, _)) => cmd,
                    Either::Right((Ok(n), _)) if n > 0 => {
                        let closes = ws.get_ref().scanner.closes;
                        if close_after.is_some_and(|c| closes > c) {
                            break;
                        }
                        continue;
                    }
                    Either::Right(_) => break,
                }
            }
        };
        // The run is over when its commands end.
        let Some(cmd) = cmd else { break };
        // Whatever the peer is doing, it can reset, go deaf or lose the link.
        match cmd {
            PeerCmd::Fault(WireFault::Reset) => {
                raw.reset();
                break;
            }
            PeerCmd::Fault(WireFault::Deaf) => {
                mode = Mode::Deaf;
                continue;
            }
            PeerCmd::Fault(WireFault::HalfOpen) => {
                raw.sever();
                mode = Mode::Deaf;
                continue;
            }
            // A peer that stopped writing ignores everything else.
            _ if !matches!(mode, Mode::Codec | Mode::NotReading) => continue,
            _ => {}
        }
        match cmd {
            PeerCmd::Send(wire) => match to_message(wire) {
                Ok(msg) => {
                    let _ = ws.send(msg).await;
                }
                Err(frame) => {
                    let _ = ws.flush().await;
                    let _ = raw.write_all(&frame).await;
                }
            },
            PeerCmd::Fault(WireFault::Raw(bytes)) => {
                let _ = ws.flush().await;
                let _ = raw.write_all(&bytes).await;
            }
            PeerCmd::Fault(WireFault::RawClose(payload)) => {
                let _ = ws.flush().await;
                let _ = raw
                    .write_all(&server_frame(opcode::CLOSE, true, &payload))
                    .await;
                mode = Mode::Drain(Some(ws.get_ref().scanner.closes));
            }
            PeerCmd::Fault(WireFault::Mute) => mode = Mode::Drain(None),
            // Handled above, whatever the mode.
            PeerCmd::Fault(WireFault::Deaf | WireFault::HalfOpen | WireFault::Reset) => {}
            PeerCmd::StopReading => mode = Mode::NotReading,
            PeerCmd::ResumeReading => mode = Mode::Codec,
        }
    }
    host.closed(conn);
}

/// The codec's message for `wire`; a raw frame for what the codec cannot carry (a text
/// frame that is not UTF-8), and an empty one for a close without a code that means
/// "drop" (handled by the caller before this).
fn to_message(wire: Wire) -> Result<Message, Bytes> {
    Ok(match wire {
        Wire::Text(b) => {
            if std::str::from_utf8(&b).is_err() {
                return Err(server_frame(opcode::TEXT, true, &b));
            }
            match async_tungstenite::tungstenite::Utf8Bytes::try_from(b) {
                Ok(t) => Message::Text(t),
                // Invariant: checked to be UTF-8 just above; an empty frame is the
                // harmless fallback rather than a panic.
                Err(_) => Message::Text("".into()),
            }
        }
        Wire::Binary(b) => Message::Binary(b),
        Wire::Ping => Message::Ping(Bytes::new()),
        Wire::Pong => Message::Pong(Bytes::new()),
        Wire::Close(Some(code), reason) => Message::Close(Some(CloseFrame {
            code: WsCode::from(code),
            reason: reason.into(),
        })),
        Wire::Close(None, _) => Message::Close(None),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_wire_fault_is_named_in_order() {
        let all = [
            WireFault::Raw(Bytes::new()),
            WireFault::RawClose(Bytes::new()),
            WireFault::Mute,
            WireFault::Deaf,
            WireFault::Reset,
            WireFault::HalfOpen,
        ];
        let names: Vec<_> = all.iter().map(WireFault::name).collect();
        assert_eq!(names, WireFault::NAMES);
    }
}
