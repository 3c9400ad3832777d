//! Resetting a socket the session gave up on.
//!
//! A socket dropped normally closes gracefully: the kernel keeps delivering what is still
//! buffered for the peer (up to the send buffer, megabytes for a peer that stopped
//! reading) from an orphaned socket. When the session aborts a connection (send deadline,
//! silence, an unanswered close, an eviction) the peer will never read that data, so the
//! driver resets the socket instead: `SO_LINGER` 0, then close, which sends RST and frees
//! the buffers at once.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::io::{AsyncRead, AsyncWrite};

/// Arms the reset of one connection's socket. Made with its stream by
/// [`Resettable::new`]; the session calls [`now`](Self::now) when it aborts the
/// connection, and the socket is reset as the stream is dropped right after.
///
/// It holds no descriptor of its own (an earlier version kept a duplicate, which halved
/// how many connections fit under a process's open-file limit).
#[derive(Debug)]
pub struct Reset(Arc<AtomicBool>);

impl Reset {
    /// Arms the reset: when the connection's stream is dropped (right after), its socket
    /// gets `SO_LINGER` 0 first, so the kernel sends RST and discards unsent data.
    pub fn now(self) {
        self.0.store(true, Ordering::Release);
    }
}

/// A byte stream whose socket is reset, rather than closed gracefully, when it is dropped
/// after its [`Reset`] was armed. Reads and writes go straight through.
pub struct Resettable<S> {
    io: S,
    armed: Arc<AtomicBool>,
    linger: fn(&S),
}

impl<S> std::fmt::Debug for Resettable<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resettable")
            .field("armed", &self.armed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl<S> Resettable<S> {
    /// Wraps `io`; `linger` sets `SO_LINGER` 0 on its socket (see [`linger_zero`]) and is
    /// called as the stream is dropped, once the returned [`Reset`] is armed.
    pub fn new(io: S, linger: fn(&S)) -> (Self, Reset) {
        let armed = Arc::new(AtomicBool::new(false));
        (
            Resettable {
                io,
                armed: armed.clone(),
                linger,
            },
            Reset(armed),
        )
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &S {
        &self.io
    }
}

impl<S> Drop for Resettable<S> {
    fn drop(&mut self) {
        // Before the stream's own drop closes the descriptor.
        if self.armed.load(Ordering::Acquire) {
            (self.linger)(&self.io);
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Resettable<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Resettable<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_close(cx)
    }
}

/// Sets `SO_LINGER` 0 on `socket`: closing it then sends RST and frees its buffers at
/// once. A failure is logged; the socket then closes gracefully.
pub fn linger_zero(socket: socket2::SockRef<'_>) {
    if let Err(e) = socket.set_linger(Some(Duration::ZERO)) {
        tracing::debug!(error = %e, "SO_LINGER not set");
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};

    use super::{Resettable, linger_zero};

    fn resettable(s: TcpStream) -> (Resettable<TcpStream>, super::Reset) {
        Resettable::new(s, |s| linger_zero(socket2::SockRef::from(s)))
    }

    /// Reads until the socket ends: how it ended.
    fn ending(s: &mut TcpStream) -> std::io::ErrorKind {
        let mut buf = [0u8; 64];
        loop {
            match s.read(&mut buf) {
                Ok(0) => return std::io::ErrorKind::UnexpectedEof,
                Ok(_) => {}
                Err(e) => return e.kind(),
            }
        }
    }

    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        b.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        (a, b)
    }

    #[test]
    fn a_reset_socket_ends_with_rst_and_a_dropped_one_with_fin() {
        let (a, mut b) = pair();
        let (a, reset) = resettable(a);
        reset.now();
        drop(a);
        assert_eq!(ending(&mut b), std::io::ErrorKind::ConnectionReset);

        let (a, mut b) = pair();
        let (a, reset) = resettable(a);
        drop(reset);
        drop(a);
        assert_eq!(ending(&mut b), std::io::ErrorKind::UnexpectedEof);
    }
}
