//! The peer's close frame as it was sent.
//!
//! tungstenite hands the application a close frame whose code it does not know as
//! `1002 "Protocol violation"`, the code it answers with; 1014 (bad gateway) and every
//! invalid code (0, 999, 1004, ≥ 5000) look alike, and all of them look like a peer that
//! sent 1002 itself, which the close policy calls fatal. [`Sniffed`] watches the bytes the
//! codec reads, follows the frame boundaries (a header's length, masked or not) and keeps
//! the payload of the first close frame, so the session classifies the code the peer
//! actually sent. It copies at most one close payload (≤ 125 bytes) per connection and
//! otherwise only counts bytes.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::io::{AsyncRead, AsyncWrite};

/// The largest control frame payload (RFC 6455 §5.5).
const MAX_CONTROL: usize = 125;
/// The opcode of a close frame.
const CLOSE: u8 = 0x8;

/// A peer's close frame payload, exactly as sent (unmasked).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RawClose(pub(crate) Vec<u8>);

impl RawClose {
    /// The code: `None` for an empty payload; a one-byte payload is refused by the codec
    /// before anyone asks.
    pub(crate) fn code(&self) -> Option<u16> {
        match self.0.as_slice() {
            [hi, lo, ..] => Some(u16::from_be_bytes([*hi, *lo])),
            _ => None,
        }
    }

    /// The reason (the codec has already refused one that is not UTF-8).
    pub(crate) fn reason(&self) -> String {
        String::from_utf8_lossy(self.0.get(2..).unwrap_or_default()).into_owned()
    }
}

/// Where the watcher is in the inbound byte stream.
#[derive(Debug)]
enum Stage {
    /// In the HTTP upgrade: waiting for the blank line that ends its headers
    /// (`matched` bytes of `\r\n\r\n` seen so far).
    Http { matched: usize },
    /// Reading a frame header.
    Header { buf: [u8; 14], len: usize },
    /// Inside a payload of `left` more bytes; a close payload is copied. `data` is the FIN
    /// bit of a data frame (text, binary, continuation), `None` for a control frame.
    Payload {
        left: u64,
        close: Option<Capture>,
        data: Option<bool>,
    },
    /// A close frame was kept (or the stream lost sync): nothing more to watch.
    Done,
}

#[derive(Debug)]
struct Capture {
    mask: Option<[u8; 4]>,
    data: Vec<u8>,
}

/// A byte stream whose inbound WebSocket frames are watched for the peer's close frame.
/// Writing passes straight through.
#[derive(Debug)]
pub(crate) struct Sniffed<S> {
    inner: S,
    stage: Stage,
    close: Option<RawClose>,
    /// A data frame without FIN was read and its message has not finished.
    fragmented: bool,
    /// Data messages read whole so far.
    completed: u64,
}

impl<S> Sniffed<S> {
    /// Watches `inner` from its first byte, the HTTP upgrade (request or response).
    pub(crate) fn new(inner: S) -> Self {
        Sniffed {
            inner,
            stage: Stage::Http { matched: 0 },
            close: None,
            fragmented: false,
            completed: 0,
        }
    }

    /// Watches `inner` from its first byte, the first frame header: a stream that
    /// something else upgraded (the HTTP exchange is behind it), so there is no blank line
    /// to wait for and the frames are followed from the start.
    pub(crate) fn upgraded(inner: S) -> Self {
        Sniffed {
            stage: Stage::Header {
                buf: [0; 14],
                len: 0,
            },
            ..Sniffed::new(inner)
        }
    }

    /// Whether the bytes read so far end inside a frame or a fragmented message, and how
    /// many data messages were read whole before it: a link bounds how long one message
    /// may stay unfinished.
    pub(crate) fn unfinished(&self) -> Option<u64> {
        let inside = match &self.stage {
            Stage::Header { len, .. } => *len > 0,
            Stage::Payload { .. } => true,
            Stage::Http { .. } | Stage::Done => return None,
        };
        (inside || self.fragmented).then_some(self.completed)
    }

    /// The peer's first close frame, once the codec has read it.
    pub(crate) fn close_frame(&self) -> Option<&RawClose> {
        self.close.as_ref()
    }

    fn observe(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match &mut self.stage {
                Stage::Done => return,
                Stage::Http { matched } => {
                    let end = b"\r\n\r\n";
                    let mut used = 0;
                    for &b in bytes {
                        used += 1;
                        *matched = if b == end[*matched] {
                            *matched + 1
                        } else if b == b'\r' {
                            1
                        } else {
                            0
                        };
                        if *matched == end.len() {
                            self.stage = Stage::Header {
                                buf: [0; 14],
                                len: 0,
                            };
                            break;
                        }
                    }
                    bytes = &bytes[used..];
                }
                Stage::Header { buf, len } => {
                    let Some(&b) = bytes.first() else { return };
                    buf[*len] = b;
                    *len += 1;
                    bytes = &bytes[1..];
                    if let Some(next) = header(buf, *len) {
                        self.stage = next;
                        self.finish_empty();
                    }
                }
                Stage::Payload { left, close, .. } => {
                    // Invariant: `left` > 0 in this stage (an empty payload moves on at
                    // once), so `take` is at least 1 and the loop advances.
                    let take = usize::try_from(*left)
                        .unwrap_or(usize::MAX)
                        .min(bytes.len());
                    if let Some(c) = close {
                        for &b in &bytes[..take] {
                            let i = c.data.len();
                            c.data.push(c.mask.map_or(b, |m| b ^ m[i % 4]));
                        }
                    }
                    *left -= take as u64;
                    bytes = &bytes[take..];
                    if *left == 0 {
                        self.end_payload();
                    }
                }
            }
        }
    }

    /// A header with an empty payload is a whole frame.
    fn finish_empty(&mut self) {
        if matches!(self.stage, Stage::Payload { left: 0, .. }) {
            self.end_payload();
        }
    }

    fn end_payload(&mut self) {
        let stage = std::mem::replace(
            &mut self.stage,
            Stage::Header {
                buf: [0; 14],
                len: 0,
            },
        );
        match stage {
            Stage::Payload { close: Some(c), .. } => {
                self.close = Some(RawClose(c.data));
                self.stage = Stage::Done;
            }
            Stage::Payload {
                data: Some(fin), ..
            } => {
                self.fragmented = !fin;
                if fin {
                    self.completed += 1;
                }
            }
            _ => {}
        }
    }
}

/// The stage after a header of `len` bytes, once it is complete.
fn header(buf: &[u8; 14], len: usize) -> Option<Stage> {
    if len < 2 {
        return None;
    }
    let masked = buf[1] & 0x80 != 0;
    let ext = match buf[1] & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let need = 2 + ext + if masked { 4 } else { 0 };
    if len < need {
        return None;
    }
    let payload = match ext {
        2 => u64::from(u16::from_be_bytes([buf[2], buf[3]])),
        8 => u64::from_be_bytes([
            buf[2], buf[3], buf[4], buf[5], buf[6], buf[7], buf[8], buf[9],
        ]),
        _ => u64::from(buf[1] & 0x7f),
    };
    let mask = masked.then(|| {
        let at = 2 + ext;
        [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]
    });
    let opcode = buf[0] & 0x0f;
    let data = (opcode < CLOSE).then_some(buf[0] & 0x80 != 0);
    let close = (opcode == CLOSE && payload <= MAX_CONTROL as u64).then(|| Capture {
        mask,
        data: Vec::with_capacity(payload as usize),
    });
    if opcode == CLOSE && close.is_none() {
        // An oversized close frame: the codec refuses it; nothing to keep.
        return Some(Stage::Done);
    }
    Some(Stage::Payload {
        left: payload,
        close,
        data,
    })
}

impl<S: AsyncRead + Unpin> AsyncRead for Sniffed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let read = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(n)) = read {
            this.observe(&buf[..n]);
        }
        read
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Sniffed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::{RawClose, Sniffed};

    fn frame(opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
        raw(0x80 | opcode, payload, mask)
    }

    /// A frame whose first byte (FIN, RSV, opcode) is `first`.
    fn raw(first: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
        let mut f = vec![first];
        let m = if mask.is_some() { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => f.push(m | n as u8),
            n if n < 65536 => {
                f.push(m | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(m | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        match mask {
            Some(k) => {
                f.extend_from_slice(&k);
                f.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
            }
            None => f.extend_from_slice(payload),
        }
        f
    }

    fn watch(chunks: &[&[u8]]) -> Option<RawClose> {
        let mut s = Sniffed::new(());
        for c in chunks {
            s.observe(c);
        }
        s.close.clone()
    }

    fn close_payload(code: u16, reason: &str) -> Vec<u8> {
        let mut p = code.to_be_bytes().to_vec();
        p.extend_from_slice(reason.as_bytes());
        p
    }

    #[test]
    fn keeps_the_close_frame_after_the_upgrade_and_other_frames() {
        let mut bytes = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n".to_vec();
        bytes.extend(frame(0x1, b"hello", None));
        bytes.extend(frame(0x2, &vec![7; 70_000], None));
        bytes.extend(frame(0x9, b"", None));
        bytes.extend(frame(0x8, &close_payload(1014, "bad gateway"), None));
        bytes.extend(frame(0x8, &close_payload(1000, "second"), None));
        // Every split point: the watcher follows frames across reads of any size.
        for split in [1, 2, 3, 7, 100, 4096, bytes.len()] {
            let chunks: Vec<&[u8]> = bytes.chunks(split).collect();
            let close = watch(&chunks).expect("close kept");
            assert_eq!(close.code(), Some(1014), "split {split}");
            assert_eq!(close.reason(), "bad gateway");
        }
    }

    /// A stream upgraded elsewhere starts at its first frame: waiting for a blank line
    /// there would follow no frame and never keep the close.
    #[test]
    fn an_upgraded_stream_is_followed_from_its_first_byte() {
        let mut bytes = frame(0x1, b"hi", Some([1, 2, 3, 4]));
        bytes.extend(frame(
            0x8,
            &close_payload(1014, "gateway"),
            Some([5, 6, 7, 8]),
        ));
        let mut s = Sniffed::upgraded(());
        s.observe(&bytes);
        let close = s.close.clone().expect("close kept");
        assert_eq!(close.code(), Some(1014));
        assert_eq!(close.reason(), "gateway");
        assert_eq!(
            watch(&[&bytes]),
            None,
            "read as an HTTP head, nothing is kept"
        );
    }

    #[test]
    fn unmasks_a_client_close_and_keeps_invalid_codes_as_sent() {
        let mut bytes = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        bytes.extend(frame(0x1, b"hi", Some([1, 2, 3, 4])));
        // A masked frame with a 16-bit length, then one with a 64-bit length: the mask
        // follows the extended length.
        bytes.extend(frame(0x2, &[5; 300], Some([4, 3, 2, 1])));
        bytes.extend(frame(0x2, &[6; 70_000], Some([7, 7, 7, 7])));
        bytes.extend(frame(
            0x8,
            &close_payload(5000, "going away"),
            Some([9, 8, 7, 6]),
        ));
        let close = watch(&[&bytes]).expect("close kept");
        assert_eq!(close.code(), Some(5000));
        assert_eq!(close.reason(), "going away");
    }

    #[test]
    fn an_empty_close_has_no_code_and_an_oversized_one_is_not_kept() {
        let mut bytes = b"HTTP/1.1 101 OK\r\n\r\n".to_vec();
        bytes.extend(frame(0x8, b"", None));
        assert_eq!(watch(&[&bytes]), Some(RawClose(Vec::new())));
        let mut bytes = b"HTTP/1.1 101 OK\r\n\r\n".to_vec();
        bytes.extend(frame(0x8, &[0; 200], None));
        assert_eq!(watch(&[&bytes]), None);
    }

    #[test]
    fn tells_whether_a_frame_or_a_fragmented_message_is_unfinished() {
        let mut s = Sniffed::new(());
        assert_eq!(s.unfinished(), None, "in the upgrade");
        s.observe(b"HTTP/1.1 101 OK\r\n\r\n");
        assert_eq!(s.unfinished(), None);
        s.observe(&raw(0x81, b"whole", None));
        assert_eq!(s.unfinished(), None);
        let big = raw(0x82, &[0; 300], None);
        s.observe(&big[..1]);
        assert_eq!(s.unfinished(), Some(1), "inside a header");
        s.observe(&big[1..100]);
        assert_eq!(s.unfinished(), Some(1), "inside a payload");
        s.observe(&big[100..]);
        assert_eq!(s.unfinished(), None);
        // A fragmented text with a ping between its fragments.
        s.observe(&raw(0x01, b"a", None));
        assert_eq!(s.unfinished(), Some(2), "between fragments");
        s.observe(&raw(0x89, b"", None));
        assert_eq!(s.unfinished(), Some(2), "a ping does not finish it");
        s.observe(&raw(0x80, b"b", None));
        assert_eq!(s.unfinished(), None);
        s.observe(&raw(0x01, b"c", None));
        assert_eq!(s.unfinished(), Some(3), "the next message counts on");
    }

    #[test]
    fn a_huge_declared_length_is_only_counted() {
        let mut bytes = b"HTTP/1.1 101 OK\r\n\r\n".to_vec();
        bytes.extend_from_slice(&[0x82, 127]);
        bytes.extend_from_slice(&u64::MAX.to_be_bytes());
        bytes.extend_from_slice(&[0; 1000]);
        assert_eq!(watch(&[&bytes]), None);
    }
}
