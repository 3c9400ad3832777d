//! WebSocket frames as bytes: building a server's frames by hand (for faults that bypass
//! a codec) and parsing the client's frames from the bytes a peer reads (so a test sees
//! what crossed the wire, whatever either codec believes).

use bytes::Bytes;

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

/// The largest client frame the tap keeps whole; a larger one ends the tap's parsing
/// (the tests' frames are small, and a log is no place for megabytes).
const MAX_TAPPED: usize = 1 << 20;

/// Parses the client's bytes: the HTTP upgrade, then masked frames.
#[derive(Default)]
pub(crate) struct Scanner {
    http_done: bool,
    buf: Vec<u8>,
    /// Close frames parsed so far.
    pub(crate) closes: usize,
    lost: bool,
}

impl Scanner {
    pub(crate) fn feed(&mut self, bytes: &[u8], out: &mut Vec<PeerRead>) {
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
