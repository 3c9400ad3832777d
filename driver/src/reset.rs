//! Resetting a socket the session gave up on.
//!
//! A socket dropped normally closes gracefully: the kernel keeps delivering what is still
//! buffered for the peer (up to the send buffer, megabytes for a peer that stopped
//! reading) from an orphaned socket. When the session aborts a connection (send deadline,
//! silence, an unanswered close, an eviction) the peer will never read that data, so the
//! driver resets the socket instead: `SO_LINGER` 0, then close, which sends RST and frees
//! the buffers at once.

use std::time::Duration;

/// A handle on a connection's socket that can reset it: a duplicate of its descriptor,
/// dropped with the connection. Adapters make one with [`Reset::of`] when they open or
/// accept a socket.
#[derive(Debug)]
pub struct Reset(socket2::Socket);

impl Reset {
    /// A handle on `socket`; `None` if the descriptor cannot be duplicated (the
    /// connection then closes gracefully on abort, as it would without a handle).
    #[must_use]
    pub fn of(socket: socket2::SockRef<'_>) -> Option<Reset> {
        match socket.try_clone() {
            Ok(dup) => Some(Reset(dup)),
            Err(e) => {
                tracing::debug!(error = %e, "socket not duplicated; aborts close gracefully");
                None
            }
        }
    }

    /// Arms the reset: when the last descriptor of the socket closes (the connection is
    /// dropped right after), the kernel sends RST and discards unsent data.
    pub fn now(self) {
        if let Err(e) = self.0.set_linger(Some(Duration::ZERO)) {
            tracing::debug!(error = %e, "SO_LINGER not set");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};

    use super::Reset;

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
        let reset = Reset::of(socket2::SockRef::from(&a)).unwrap();
        reset.now();
        drop(a);
        assert_eq!(ending(&mut b), std::io::ErrorKind::ConnectionReset);

        let (a, mut b) = pair();
        let reset = Reset::of(socket2::SockRef::from(&a)).unwrap();
        drop(reset);
        drop(a);
        assert_eq!(ending(&mut b), std::io::ErrorKind::UnexpectedEof);
    }
}
