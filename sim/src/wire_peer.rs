//! The scripted server's end of a simulated byte pipe, speaking through a real codec.
//!
//! One task per connection accepts the upgrade with `async_tungstenite` (so the client's
//! handshake meets a real server handshake), turns the codec's messages into [`Wire`]
//! values for the scripted [`Server`](crate::Server), and the server's actions back into
//! messages. The codec answers pings and close frames itself, as a real server's does.
//! A [`WireFault`] writes bytes straight into the pipe instead, bypassing the codec.
//!
//! Every byte the peer reads passes a tap that parses the client's frames independently
//! of the codec: [`PeerRecord`]s say what the peer read off its wire (a close code the
//! client answered with, a data frame it never sent twice), for oracles and tests to judge.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use async_tungstenite::tungstenite::Message;
use async_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use async_tungstenite::tungstenite::http::StatusCode;
use async_tungstenite::tungstenite::protocol::CloseFrame;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCode;
use bytes::Bytes;
use futures::channel::mpsc;
use futures::future::{Either, select};
use futures::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use futures::{SinkExt, StreamExt};
use tether_core::ConnId;

use crate::pipe::{Clock, PipeEnd};
use crate::server::Accept;
use crate::wire::Wire;

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
}

impl WireFault {
    /// Every wire fault's name, in declaration order.
    pub const NAMES: &'static [&'static str] = &["raw", "raw-close", "mute", "deaf", "reset"];

    /// The fault's name, as [`NAMES`](Self::NAMES) lists it.
    pub fn name(&self) -> &'static str {
        match self {
            WireFault::Raw(_) => "raw",
            WireFault::RawClose(_) => "raw-close",
            WireFault::Mute => "mute",
            WireFault::Deaf => "deaf",
            WireFault::Reset => "reset",
        }
    }

    /// A raw close frame with `code` and `reason` (any code, any reason length: the codec
    /// is not asked).
    pub fn close(code: u16, reason: &str) -> Self {
        WireFault::RawClose(close_payload(Some(code), reason.as_bytes()))
    }
}

/// A close frame's payload: the code (big-endian), then the reason; empty without a code.
pub fn close_payload(code: Option<u16>, reason: &[u8]) -> Bytes {
    let mut p = Vec::with_capacity(2 + reason.len());
    if let Some(code) = code {
        p.extend_from_slice(&code.to_be_bytes());
        p.extend_from_slice(reason);
    }
    Bytes::from(p)
}

/// Opcodes (RFC 6455 §5.2).
pub mod opcode {
    /// A continuation frame.
    pub const CONTINUATION: u8 = 0x0;
    /// A text frame.
    pub const TEXT: u8 = 0x1;
    /// A binary frame.
    pub const BINARY: u8 = 0x2;
    /// A close frame.
    pub const CLOSE: u8 = 0x8;
    /// A ping.
    pub const PING: u8 = 0x9;
    /// A pong.
    pub const PONG: u8 = 0xA;
}

/// A server frame as a server writes it (unmasked): FIN bit, `opcode` (see [`opcode`]),
/// and the payload with its length in the shortest form.
pub fn server_frame(opcode: u8, fin: bool, payload: &[u8]) -> Bytes {
    let mut f = Vec::with_capacity(payload.len() + 10);
    f.push(if fin { 0x80 } else { 0 } | (opcode & 0x0F));
    match payload.len() {
        n @ 0..=125 => f.push(n as u8),
        n @ 126..=0xFFFF => {
            f.push(126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(payload);
    Bytes::from(f)
}

/// A frame the peer read off its wire, parsed from the bytes (unmasked).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerRead {
    /// A text frame (a fragment's first frame included).
    Text(Bytes),
    /// A binary frame.
    Binary(Bytes),
    /// A continuation frame.
    Continuation(Bytes),
    /// A ping.
    Ping(Bytes),
    /// A pong.
    Pong(Bytes),
    /// A close frame: its code (`None`: no payload) and reason.
    Close(Option<u16>, String),
    /// A frame with a reserved opcode.
    Other(u8),
    /// The end of the stream: the client let go of the connection.
    Eof,
    /// The connection was reset under the peer's read.
    Reset,
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

/// The largest client frame the tap keeps whole; a larger one ends the tap's parsing
/// (the tests' frames are small, and a log is no place for megabytes).
const MAX_TAPPED: usize = 1 << 20;

/// Parses the client's bytes: the HTTP upgrade, then masked frames.
#[derive(Default)]
struct Scanner {
    http_done: bool,
    buf: Vec<u8>,
    /// Close frames parsed so far.
    closes: usize,
    lost: bool,
}

impl Scanner {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<PeerRead>) {
        if self.lost {
            return;
        }
        self.buf.extend_from_slice(bytes);
        if !self.http_done {
            let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                return;
            };
            self.buf.drain(..end + 4);
            self.http_done = true;
        }
        while let Some((read, used)) = self.frame() {
            self.buf.drain(..used);
            if matches!(read, PeerRead::Close(..)) {
                self.closes += 1;
            }
            out.push(read);
        }
    }

    /// The first whole frame in the buffer and its length in bytes.
    fn frame(&mut self) -> Option<(PeerRead, usize)> {
        let b = &self.buf;
        let (&b0, &b1) = (b.first()?, b.get(1)?);
        let (mut pos, len7) = (2usize, u64::from(b1 & 0x7F));
        let len = match len7 {
            126 => {
                let v = u16::from_be_bytes([*b.get(2)?, *b.get(3)?]);
                pos += 2;
                u64::from(v)
            }
            127 => {
                let mut v = [0u8; 8];
                v.copy_from_slice(b.get(2..10)?);
                pos += 8;
                u64::from_be_bytes(v)
            }
            n => n,
        };
        let Ok(len) = usize::try_from(len) else {
            self.lost = true;
            return None;
        };
        if len > MAX_TAPPED {
            self.lost = true;
            return None;
        }
        let mask = if b1 & 0x80 != 0 {
            let m = b.get(pos..pos + 4)?;
            pos += 4;
            Some([m[0], m[1], m[2], m[3]])
        } else {
            None
        };
        let body = b.get(pos..pos + len)?;
        let payload: Vec<u8> = match mask {
            Some(m) => body.iter().enumerate().map(|(i, x)| x ^ m[i % 4]).collect(),
            None => body.to_vec(),
        };
        let payload = Bytes::from(payload);
        let read = match b0 & 0x0F {
            opcode::CONTINUATION => PeerRead::Continuation(payload),
            opcode::TEXT => PeerRead::Text(payload),
            opcode::BINARY => PeerRead::Binary(payload),
            opcode::PING => PeerRead::Ping(payload),
            opcode::PONG => PeerRead::Pong(payload),
            opcode::CLOSE => match payload.as_ref() {
                [hi, lo, reason @ ..] => PeerRead::Close(
                    Some(u16::from_be_bytes([*hi, *lo])),
                    String::from_utf8_lossy(reason).into_owned(),
                ),
                _ => PeerRead::Close(None, String::new()),
            },
            op => PeerRead::Other(op),
        };
        Some((read, pos + len))
    }
}

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
}

/// Everything a peer task needs besides its commands.
pub(crate) struct PeerParts {
    pub(crate) io: PipeEnd,
    pub(crate) conn: ConnId,
    pub(crate) host: Arc<dyn PeerHost>,
    pub(crate) log: PeerLog,
    pub(crate) clock: Arc<dyn Clock>,
}

/// How the peer reads.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Through its codec, answering what the codec answers.
    Codec,
    /// Raw bytes, never writing; the connection is dropped once a close frame is read
    /// (after this many were read) when `Some`.
    Drain(Option<usize>),
    /// Neither reading nor writing.
    Deaf,
}

fn status_response(status: u16) -> ErrorResponse {
    let mut r = ErrorResponse::new(None);
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
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
    let callback = move |_: &Request, response: Response| match answer.accept(conn) {
        Accept::Accept => Ok(response),
        Accept::Reject(status) => Err(status_response(status)),
    };
    let Ok(mut ws) = async_tungstenite::accept_hdr_async(tap, callback).await else {
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
            Mode::Deaf => cmds.next().await,
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
        if mode != Mode::Codec {
            // A peer that stopped writing ignores everything but a reset, or going deaf.
            match cmd {
                PeerCmd::Fault(WireFault::Reset) => {
                    raw.reset();
                    break;
                }
                PeerCmd::Fault(WireFault::Deaf) => mode = Mode::Deaf,
                _ => {}
            }
            continue;
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
            PeerCmd::Fault(WireFault::Deaf) => mode = Mode::Deaf,
            PeerCmd::Fault(WireFault::Reset) => {
                raw.reset();
                break;
            }
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
    fn the_scanner_reads_masked_frames_after_the_upgrade() {
        let mut s = Scanner::default();
        let mut out = Vec::new();
        s.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", &mut out);
        // A masked close 1007 with an all-zero mask, split across two reads.
        let frame = [0x88, 0x82, 0, 0, 0, 0, 0x03, 0xEF];
        s.feed(&frame[..3], &mut out);
        assert!(out.is_empty());
        s.feed(&frame[3..], &mut out);
        assert_eq!(out, vec![PeerRead::Close(Some(1007), String::new())]);
        assert_eq!(s.closes, 1);
    }

    #[test]
    fn every_wire_fault_is_named_in_order() {
        let all = [
            WireFault::Raw(Bytes::new()),
            WireFault::RawClose(Bytes::new()),
            WireFault::Mute,
            WireFault::Deaf,
            WireFault::Reset,
        ];
        let names: Vec<_> = all.iter().map(WireFault::name).collect();
        assert_eq!(names, WireFault::NAMES);
    }

    #[test]
    fn server_frames_use_the_shortest_length() {
        assert_eq!(
            server_frame(opcode::TEXT, true, b"hi").as_ref(),
            b"\x81\x02hi"
        );
        assert_eq!(
            server_frame(opcode::BINARY, false, &[0; 200])[..4],
            [0x02, 126, 0, 200]
        );
    }
}
