//! Reading an HTTP head (request or response) up to its blank line, bounded: the one piece
//! of code the client's upgrade and the server's accept both read with.

use futures::io::{AsyncRead, AsyncReadExt};

/// Why no head was read.
#[derive(Debug)]
pub(crate) enum HeadError {
    /// The peer closed the connection before the blank line.
    Closed,
    /// More than the bound arrived without a blank line.
    TooLarge,
    /// Reading failed.
    Io(std::io::Error),
}

/// Reads up to the blank line that ends the head, holding at most `max` bytes plus one
/// read's worth; returns the head and what was read past it (the first frames, if the
/// peer wrote them at once).
pub(crate) async fn read_head<S: AsyncRead + Unpin>(
    io: &mut S,
    max: usize,
) -> Result<(Vec<u8>, Vec<u8>), HeadError> {
    let mut buf = Vec::with_capacity(1024.min(max));
    let mut chunk = [0u8; 1024];
    loop {
        let n = io.read(&mut chunk).await.map_err(HeadError::Io)?;
        if n == 0 {
            return Err(HeadError::Closed);
        }
        let from = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = find_blank_line(&buf[from..]) {
            let rest = buf.split_off(from + end);
            if buf.len() > max {
                return Err(HeadError::TooLarge);
            }
            return Ok((buf, rest));
        }
        if buf.len() > max {
            return Err(HeadError::TooLarge);
        }
    }
}

/// The index just past the first `\r\n\r\n` in `bytes`.
fn find_blank_line(bytes: &[u8]) -> Option<usize> {
    bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8], max: usize) -> Result<(Vec<u8>, Vec<u8>), HeadError> {
        futures::executor::block_on(read_head(&mut futures::io::Cursor::new(bytes), max))
    }

    #[test]
    fn the_head_ends_at_the_blank_line_and_keeps_what_follows() {
        let (head, rest) = read(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\x81\x00", 64).unwrap();
        assert_eq!(head, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(rest, b"\x81\x00");
    }

    #[test]
    fn a_head_over_the_bound_is_refused_even_when_it_ends() {
        let head = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        assert!(read(head, head.len()).is_ok());
        assert!(matches!(
            read(head, head.len() - 1),
            Err(HeadError::TooLarge)
        ));
        // A bound that no number of whole reads lands on exactly.
        let mut io = futures::io::Cursor::new(vec![b'a'; 40_000]);
        let endless = futures::executor::block_on(read_head(&mut io, 4000));
        assert!(matches!(endless, Err(HeadError::TooLarge)));
        assert!(io.position() <= 4000 + 1024, "read past the bound");
        assert!(matches!(
            read(b"GET / HTTP/1.1\r\n", 4096),
            Err(HeadError::Closed)
        ));
    }
}
