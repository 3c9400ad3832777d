//! A WebSocket peer that writes bytes, not messages: the hostile-peer suite's server (for
//! tether's client) and client (for tether's server). It does the HTTP upgrade by hand,
//! then sends whatever frames a case builds — invalid ones included, which no library
//! would send — and reports the close frame the other side answered with.
//! [`Scripted`] goes one level up: a script reads the client's frames and answers as a
//! profile's server would (a hello acknowledged, a request id echoed in hostile events).
//!
//! Blocking std sockets on threads of their own, so the same peer serves both runtimes;
//! every read has a timeout, every loop a count.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::handshake::derive_accept_key;

/// How long the peer waits for anything.
pub const PEER_TIMEOUT: Duration = Duration::from_secs(5);

/// A frame: `first` is the first header byte (FIN, RSV bits, opcode), then the length
/// and, for a client, the mask. The payload is masked when `mask` is given.
#[must_use]
pub fn frame(first: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut f = header(first, payload.len() as u64, mask);
    match mask {
        Some(k) => f.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4])),
        None => f.extend_from_slice(payload),
    }
    f
}

/// A frame header declaring `len` bytes of payload (which may never follow).
#[must_use]
pub fn header(first: u8, len: u64, mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut f = vec![first];
    let m = if mask.is_some() { 0x80 } else { 0 };
    match len {
        n if n < 126 => f.push(m | n as u8),
        n if n < 65_536 => {
            f.push(m | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(m | 127);
            f.extend_from_slice(&n.to_be_bytes());
        }
    }
    if let Some(k) = mask {
        f.extend_from_slice(&k);
    }
    f
}

/// A close frame payload: the code, then the reason.
#[must_use]
pub fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason);
    p
}

/// What the peer saw after sending a case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// A close frame with this code (`None`: an empty close frame).
    Close(Option<u16>),
    /// The socket closed (FIN) with no close frame.
    Dropped,
    /// The socket was reset (RST): the other side gave up on the connection.
    Reset,
    /// Nothing within [`PEER_TIMEOUT`].
    Silent,
}

/// Reads frames (skipping data, pings and pongs) until a close frame or the end.
///
/// # Errors
///
/// Never on a dropped or silent socket (those are answers); only on a frame it cannot
/// parse.
pub fn read_answer(s: &mut TcpStream) -> Answer {
    read_texts_and_answer(s).1
}

/// Reads frames until a close frame or the end, like [`read_answer`], and also returns
/// the text frames read before it, in order.
pub fn read_texts_and_answer(s: &mut TcpStream) -> (Vec<String>, Answer) {
    let mut texts = Vec::new();
    let answer = read_frames(s, &mut texts);
    (texts, answer)
}

fn read_frames(s: &mut TcpStream, texts: &mut Vec<String>) -> Answer {
    s.set_read_timeout(Some(PEER_TIMEOUT)).ok();
    for _ in 0..10_000 {
        let mut h = [0u8; 2];
        match s.read_exact(&mut h) {
            Ok(()) => {}
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut =>
            {
                return Answer::Silent;
            }
            Err(e) => return ended(&e),
        }
        let masked = h[1] & 0x80 != 0;
        let len = match h[1] & 0x7f {
            126 => {
                let mut b = [0; 2];
                if let Err(e) = s.read_exact(&mut b) {
                    return ended(&e);
                }
                u64::from(u16::from_be_bytes(b))
            }
            127 => {
                let mut b = [0; 8];
                if let Err(e) = s.read_exact(&mut b) {
                    return ended(&e);
                }
                u64::from_be_bytes(b)
            }
            n => u64::from(n),
        };
        let mut key = [0u8; 4];
        if masked && let Err(e) = s.read_exact(&mut key) {
            return ended(&e);
        }
        let mut payload = vec![0; usize::try_from(len.min(1 << 20)).unwrap_or(1 << 20)];
        if let Err(e) = s.read_exact(&mut payload) {
            return ended(&e);
        }
        if masked {
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= key[i % 4];
            }
        }
        match h[0] & 0x0f {
            0x8 => {
                return Answer::Close(
                    (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]])),
                );
            }
            0x1 => texts.push(String::from_utf8_lossy(&payload).into_owned()),
            _ => {}
        }
    }
    Answer::Silent
}

/// How a socket that failed to read ended.
fn ended(e: &io::Error) -> Answer {
    if e.kind() == io::ErrorKind::ConnectionReset {
        Answer::Reset
    } else {
        Answer::Dropped
    }
}

/// Reads an HTTP head (to the blank line), bounded.
fn read_head(s: &mut TcpStream) -> io::Result<String> {
    s.set_read_timeout(Some(PEER_TIMEOUT))?;
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 << 10 {
            return Err(io::Error::other("head too long"));
        }
        s.read_exact(&mut b)?;
        head.push(b[0]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// A server that upgrades every connection and runs `case` on the first; later ones
/// (the client's reconnects) are upgraded and held open. The answer to the first arrives
/// on [`RawServer::answer`].
pub struct RawServer {
    addr: SocketAddr,
    answers: mpsc::Receiver<Answer>,
    connections: Arc<AtomicUsize>,
}

impl RawServer {
    /// Serves on 127.0.0.1, on a free port; stops after `max` connections or when a
    /// connection has waited [`PEER_TIMEOUT`] for the next.
    ///
    /// # Panics
    ///
    /// If it cannot bind.
    #[must_use]
    pub fn start(case: Vec<u8>, max: usize) -> Self {
        Self::serve(case, None, max)
    }

    /// A server that answers every upgrade with `reply` (an HTTP response of its own, such
    /// as a 429) and closes.
    #[must_use]
    pub fn refusing(reply: &str, max: usize) -> Self {
        Self::serve(Vec::new(), Some(reply.to_owned()), max)
    }

    fn serve(case: Vec<u8>, refusal: Option<String>, max: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local address");
        let (tx, answers) = mpsc::channel();
        let connections = Arc::new(AtomicUsize::new(0));
        let count = connections.clone();
        std::thread::spawn(move || {
            listener.set_nonblocking(false).ok();
            let mut held = Vec::new();
            for i in 0..max {
                let Ok((mut s, _)) = listener.accept() else {
                    return;
                };
                count.fetch_add(1, Ordering::SeqCst);
                let Ok(head) = read_head(&mut s) else {
                    continue;
                };
                if let Some(refusal) = &refusal {
                    let _ = s.write_all(refusal.as_bytes());
                    continue;
                }
                if accept_upgrade(&mut s, &head).is_err() {
                    continue;
                }
                if i == 0 {
                    // The client may refuse the case before it is all written (a huge
                    // frame is refused at its header): a failed write is part of it.
                    let _ = s.write_all(&case);
                    let _ = tx.send(read_answer(&mut s));
                } else {
                    held.push(s);
                }
            }
        });
        RawServer {
            addr,
            answers,
            connections,
        }
    }

    /// The URL to connect to.
    #[must_use]
    pub fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }

    /// What the first connection answered the case with, waiting up to twice
    /// [`PEER_TIMEOUT`] (the peer's own wait is bounded by it).
    #[must_use]
    pub fn answer(&self) -> Option<Answer> {
        self.answers.recv_timeout(PEER_TIMEOUT * 2).ok()
    }

    /// Connections accepted so far.
    #[must_use]
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// A client's mask: fixed, so cases replay byte for byte.
pub const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// Connects to `addr` as a WebSocket client, upgrades, sends `case` and reports the
/// answer. Blocking; run it on a thread.
///
/// # Errors
///
/// A failed connect or upgrade.
pub fn client_case(addr: SocketAddr, case: &[u8]) -> io::Result<Answer> {
    Ok(client_case_texts(addr, case)?.1)
}

/// [`client_case`], also returning the text frames the server sent before its answer.
///
/// # Errors
///
/// A failed connect or upgrade.
pub fn client_case_texts(addr: SocketAddr, case: &[u8]) -> io::Result<(Vec<String>, Answer)> {
    let mut s = TcpStream::connect(addr)?;
    s.write_all(
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )?;
    let head = read_head(&mut s)?;
    if !head.starts_with("HTTP/1.1 101") {
        return Err(io::Error::other(format!("upgrade refused: {head}")));
    }
    let _ = s.write_all(case);
    Ok(read_texts_and_answer(&mut s))
}

/// Answers the HTTP upgrade already read as `head` with a 101.
fn accept_upgrade(s: &mut TcpStream, head: &str) -> io::Result<()> {
    let key = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("sec-websocket-key")
                .then(|| v.trim().to_owned())
        })
        .unwrap_or_default();
    let reply = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        derive_accept_key(key.as_bytes())
    );
    s.write_all(reply.as_bytes())
}

/// The largest client frame a [`RawConn`] reads: the scripts' clients send small JSON.
const MAX_READ: u64 = 1 << 20;

/// What a [`RawConn`] read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A text frame (a single-frame message: tether's client does not fragment).
    Text(String),
    /// A close frame.
    Close,
    /// The socket ended, or sent what the peer cannot read.
    Ended,
    /// Nothing before the deadline.
    Silent,
}

/// One upgraded connection, driven by a script: it reads the client's text frames and
/// writes frames of its own, so a case can answer what the client sent (a hello, a
/// request id) and count what it sent in a window.
pub struct RawConn {
    s: TcpStream,
}

impl RawConn {
    /// Writes `text` as one unmasked text frame.
    ///
    /// # Errors
    ///
    /// The write failed (the client went away, or stopped reading for [`PEER_TIMEOUT`]).
    pub fn send_text(&mut self, text: &str) -> io::Result<()> {
        self.s.write_all(&frame(0x81, text.as_bytes(), None))
    }

    /// Writes bytes as they are (several frames at once, say).
    ///
    /// # Errors
    ///
    /// As for [`send_text`](Self::send_text).
    pub fn write_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.s.write_all(bytes)
    }

    /// The next text or close frame before `deadline`, skipping pings, pongs and binary
    /// frames (pings are not answered: the scripts are shorter than any stale threshold).
    pub fn next_text(&mut self, deadline: Instant) -> Incoming {
        for _ in 0..100_000 {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return Incoming::Silent;
            };
            if left.is_zero() || self.s.set_read_timeout(Some(left)).is_err() {
                return Incoming::Silent;
            }
            let mut h = [0u8; 2];
            match self.s.read_exact(&mut h) {
                Ok(()) => {}
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::TimedOut =>
                {
                    return Incoming::Silent;
                }
                Err(_) => return Incoming::Ended,
            }
            // The rest of a frame whose header arrived follows at once on loopback.
            self.s.set_read_timeout(Some(PEER_TIMEOUT)).ok();
            let Some(payload) = self.read_payload(h) else {
                return Incoming::Ended;
            };
            match h[0] & 0x0f {
                0x1 => return Incoming::Text(String::from_utf8_lossy(&payload).into_owned()),
                0x8 => return Incoming::Close,
                _ => {}
            }
        }
        Incoming::Silent
    }

    /// The text frames the client sends until its close frame (whose code is the answer)
    /// or the end of the connection.
    pub fn texts_and_answer(&mut self) -> (Vec<String>, Answer) {
        read_texts_and_answer(&mut self.s)
    }

    /// The text frames the client sent within `window` (at most 100,000).
    pub fn texts_within(&mut self, window: Duration) -> Vec<String> {
        let deadline = Instant::now() + window;
        let mut texts = Vec::new();
        while texts.len() < 100_000 {
            match self.next_text(deadline) {
                Incoming::Text(t) => texts.push(t),
                _ => break,
            }
        }
        texts
    }

    /// Reads the length, mask and payload of a frame whose first two bytes are `h`.
    fn read_payload(&mut self, h: [u8; 2]) -> Option<Vec<u8>> {
        let len = match h[1] & 0x7f {
            126 => {
                let mut b = [0; 2];
                self.s.read_exact(&mut b).ok()?;
                u64::from(u16::from_be_bytes(b))
            }
            127 => {
                let mut b = [0; 8];
                self.s.read_exact(&mut b).ok()?;
                u64::from_be_bytes(b)
            }
            n => u64::from(n),
        };
        if len > MAX_READ {
            return None;
        }
        let mut key = [0u8; 4];
        if h[1] & 0x80 != 0 {
            self.s.read_exact(&mut key).ok()?;
        }
        // `len` is at most `MAX_READ`, which fits any usize.
        let mut payload = vec![0; usize::try_from(len).ok()?];
        self.s.read_exact(&mut payload).ok()?;
        if h[1] & 0x80 != 0 {
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= key[i % 4];
            }
        }
        Some(payload)
    }
}

/// A server whose first connection is driven by a script (see [`RawConn`]); later ones
/// (the client's reconnects) are upgraded and held open. The script's result arrives on
/// [`Scripted::result`].
pub struct Scripted<T> {
    addr: SocketAddr,
    results: mpsc::Receiver<T>,
    connections: Arc<AtomicUsize>,
}

impl<T: Send + 'static> Scripted<T> {
    /// Serves on 127.0.0.1, on a free port, at most `max` connections; `script` runs on
    /// the first, on a thread of its own. Every write has a timeout of [`PEER_TIMEOUT`].
    ///
    /// # Panics
    ///
    /// If it cannot bind.
    #[must_use]
    pub fn start(max: usize, script: impl FnOnce(&mut RawConn) -> T + Send + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local address");
        let (tx, results) = mpsc::channel();
        let connections = Arc::new(AtomicUsize::new(0));
        let count = connections.clone();
        std::thread::spawn(move || {
            let mut script = Some(script);
            let mut held = Vec::new();
            for _ in 0..max {
                let Ok((mut s, _)) = listener.accept() else {
                    return;
                };
                count.fetch_add(1, Ordering::SeqCst);
                let Ok(head) = read_head(&mut s) else {
                    continue;
                };
                if accept_upgrade(&mut s, &head).is_err() {
                    continue;
                }
                s.set_write_timeout(Some(PEER_TIMEOUT)).ok();
                match script.take() {
                    Some(script) => {
                        let mut conn = RawConn { s };
                        let _ = tx.send(script(&mut conn));
                        held.push(conn.s);
                    }
                    None => held.push(s),
                }
            }
        });
        Scripted {
            addr,
            results,
            connections,
        }
    }

    /// The URL to connect to.
    #[must_use]
    pub fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }

    /// The script's result, waiting up to `limit`.
    #[must_use]
    pub fn result(&self, limit: Duration) -> Option<T> {
        self.results.recv_timeout(limit).ok()
    }

    /// Connections accepted so far.
    #[must_use]
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}
