//! A WebSocket peer that writes bytes, not messages: the hostile-peer suite's server (for
//! tether's client) and client (for tether's server). It does the HTTP upgrade by hand,
//! then sends whatever frames a case builds — invalid ones included, which no library
//! would send — and reports the close frame the other side answered with.
//!
//! Blocking std sockets on threads of their own, so the same peer serves both runtimes;
//! every read has a timeout, every loop a count.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

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
        if h[0] & 0x0f == 0x8 {
            return Answer::Close(
                (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]])),
            );
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
                if s.write_all(reply.as_bytes()).is_err() {
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
    Ok(read_answer(&mut s))
}
