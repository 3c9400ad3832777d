//! The part of RESP2 (the Redis serialization protocol) a pub/sub client needs: commands
//! out as arrays of bulk strings, replies in with every peer-controlled length capped.

use std::io;

use bytes::Bytes;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The longest header line accepted (`+OK`, `-ERR …`, `$123`, `*4`): Redis's own error
/// messages are well under this.
const MAX_LINE: usize = 4096;
/// The most elements of an array reply accepted: a pub/sub push has 3 or 4, a
/// `SUBSCRIBE` reply 3.
const MAX_ARRAY: usize = 16;

/// A reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Value {
    /// `+…`
    Simple(String),
    /// `-…`
    Error(String),
    /// `:…`
    Int(i64),
    /// `$…` (`None`: the null bulk string).
    Bulk(Option<Bytes>),
    /// A bulk string over the size limit, skipped unread: its length.
    TooBig(usize),
    /// `*…` (`None`: the null array). Nested arrays are refused.
    Array(Option<Vec<Value>>),
}

/// Writes one command (an array of bulk strings) into `out`.
pub(crate) fn encode(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// Writes `buf` and flushes.
pub(crate) async fn send<W: AsyncWrite + Unpin>(io: &mut W, buf: &[u8]) -> io::Result<()> {
    io.write_all(buf).await?;
    io.flush().await
}

fn bad(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

/// Reads replies from a byte stream through a buffer that never grows beyond
/// `max_bulk` plus a header line: a larger bulk string is skipped as it streams by.
pub(crate) struct Reader<R> {
    io: R,
    buf: Vec<u8>,
    /// Start of the unread bytes in `buf`.
    pos: usize,
    max_bulk: usize,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    pub(crate) fn new(io: R, max_bulk: usize) -> Self {
        Reader {
            io,
            buf: Vec::with_capacity(8192),
            pos: 0,
            max_bulk,
        }
    }

    /// Reads more bytes; an error at the end of the stream.
    async fn fill(&mut self) -> io::Result<()> {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let mut chunk = [0u8; 8192];
        let n = self.io.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    /// Waits for bytes on a connection that should be silent: the error to report when
    /// some come (or the stream ends). Cancel-safe: bytes read stay in the buffer.
    pub(crate) async fn idle(&mut self) -> io::Error {
        if self.buf.len() > self.pos {
            return bad("unsolicited data from redis");
        }
        match self.fill().await {
            Ok(()) => bad("unsolicited data from redis"),
            Err(e) => e,
        }
    }

    /// One line without its CRLF, at most `MAX_LINE` bytes.
    async fn line(&mut self) -> io::Result<String> {
        loop {
            let unread = &self.buf[self.pos..];
            if let Some(i) = unread.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&unread[..i]).into_owned();
                self.pos += i + 2;
                return Ok(line);
            }
            if unread.len() > MAX_LINE {
                return Err(bad("reply line too long"));
            }
            self.fill().await?;
        }
    }

    /// Exactly `n` bytes followed by CRLF.
    async fn exact(&mut self, n: usize) -> io::Result<Bytes> {
        while self.buf.len() - self.pos < n + 2 {
            self.fill().await?;
        }
        let start = self.pos;
        if &self.buf[start + n..start + n + 2] != b"\r\n" {
            return Err(bad("bulk string not followed by CRLF"));
        }
        self.pos += n + 2;
        Ok(Bytes::copy_from_slice(&self.buf[start..start + n]))
    }

    /// Skips `n` bytes and the CRLF after them, never buffering more than a chunk.
    async fn skip(&mut self, mut n: usize) -> io::Result<()> {
        n += 2;
        loop {
            let take = n.min(self.buf.len() - self.pos);
            self.pos += take;
            n -= take;
            if n == 0 {
                return Ok(());
            }
            self.fill().await?;
        }
    }

    fn len_of(line: &str) -> io::Result<Option<usize>> {
        let n: i64 = line[1..]
            .parse()
            .map_err(|_| bad(format!("bad length in {line:?}")))?;
        match n {
            -1 => Ok(None),
            n if n < -1 => Err(bad(format!("negative length {n}"))),
            n => usize::try_from(n)
                .map(Some)
                .map_err(|_| bad("length too large")),
        }
    }

    async fn scalar(&mut self, line: String) -> io::Result<Value> {
        match line.as_bytes().first() {
            Some(b'+') => Ok(Value::Simple(line[1..].to_owned())),
            Some(b'-') => Ok(Value::Error(line[1..].to_owned())),
            Some(b':') => line[1..]
                .parse()
                .map(Value::Int)
                .map_err(|_| bad(format!("bad integer {line:?}"))),
            Some(b'$') => match Self::len_of(&line)? {
                None => Ok(Value::Bulk(None)),
                Some(n) if n > self.max_bulk => {
                    self.skip(n).await?;
                    Ok(Value::TooBig(n))
                }
                Some(n) => Ok(Value::Bulk(Some(self.exact(n).await?))),
            },
            _ => Err(bad(format!("unexpected reply {:?}", truncate(&line)))),
        }
    }

    /// One reply. An error is a broken stream (the connection must be dropped): the
    /// caller cannot find the next reply's start after it.
    pub(crate) async fn value(&mut self) -> io::Result<Value> {
        let line = self.line().await?;
        if !line.starts_with('*') {
            return self.scalar(line).await;
        }
        let Some(n) = Self::len_of(&line)? else {
            return Ok(Value::Array(None));
        };
        if n > MAX_ARRAY {
            return Err(bad(format!("array of {n} elements")));
        }
        let mut items = Vec::with_capacity(n);
        for _ in 0..n {
            let line = self.line().await?;
            if line.starts_with('*') {
                return Err(bad("nested array"));
            }
            items.push(self.scalar(line).await?);
        }
        Ok(Value::Array(Some(items)))
    }
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(input: &[u8], max_bulk: usize) -> Vec<io::Result<Value>> {
        let mut r = Reader::new(futures::io::Cursor::new(input.to_vec()), max_bulk);
        let mut out = Vec::new();
        futures::executor::block_on(async {
            for _ in 0..8 {
                let v = r.value().await;
                let end = v.is_err();
                out.push(v);
                if end {
                    break;
                }
            }
        });
        out
    }

    #[test]
    fn replies_parse_and_big_bulks_are_skipped() {
        let input = b"+OK\r\n:3\r\n$3\r\nabc\r\n$10\r\n0123456789\r\n*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$2\r\nhi\r\n$-1\r\n";
        let out = read_all(input, 8);
        let ok: Vec<Value> = out.into_iter().map_while(Result::ok).collect();
        assert_eq!(
            ok,
            vec![
                Value::Simple("OK".into()),
                Value::Int(3),
                Value::Bulk(Some(Bytes::from_static(b"abc"))),
                Value::TooBig(10),
                Value::Array(Some(vec![
                    Value::Bulk(Some(Bytes::from_static(b"message"))),
                    Value::Bulk(Some(Bytes::from_static(b"c"))),
                    Value::Bulk(Some(Bytes::from_static(b"hi"))),
                ])),
                Value::Bulk(None),
            ]
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for input in [
            &b"?what\r\n"[..],
            b"$-7\r\n",
            b"$99999999999999999999999\r\n",
            b"*100\r\n",
            b"*1\r\n*1\r\n:1\r\n",
            b"$2\r\nabcd",
            b":x\r\n",
            b"$",
            b"*-1\r\n$1",
        ] {
            let out = read_all(input, 16);
            assert!(out.last().is_some_and(Result::is_err), "{input:?}: {out:?}");
        }
        let long = vec![b'+'; MAX_LINE * 3];
        assert!(read_all(&long, 16)[0].is_err());
    }

    #[test]
    fn commands_encode_as_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        encode(&mut out, &[b"PUBLISH", b"ch", b"x\r\ny"]);
        assert_eq!(out, b"*3\r\n$7\r\nPUBLISH\r\n$2\r\nch\r\n$4\r\nx\r\ny\r\n");
    }
}
