//! What a backplane message carries: a fixed header naming the publishing process and
//! its sequence number, then the frame.
//!
//! ```text
//!  "TBP1" | origin: u64 BE | seq: u64 BE | kind: u8 (0 text, 1 binary) | payload
//! ```

use bytes::{BufMut, Bytes, BytesMut};
use tether_core::{DataFrame, Utf8Bytes};

const MAGIC: &[u8; 4] = b"TBP1";
/// The header's length.
pub(crate) const HEADER: usize = 4 + 8 + 8 + 1;

/// A decoded message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Message {
    pub(crate) origin: u64,
    pub(crate) seq: u64,
    pub(crate) frame: DataFrame,
}

fn payload(frame: &DataFrame) -> (u8, &[u8]) {
    match frame {
        DataFrame::Text(t) => (0, t.as_bytes()),
        DataFrame::Binary(b) => (1, b),
    }
}

/// The payload's length.
pub(crate) fn payload_len(frame: &DataFrame) -> usize {
    payload(frame).1.len()
}

/// Encodes a frame published by `origin` as its `seq`-th message.
pub(crate) fn encode(origin: u64, seq: u64, frame: &DataFrame) -> Bytes {
    let (kind, data) = payload(frame);
    let mut out = BytesMut::with_capacity(HEADER + data.len());
    out.put_slice(MAGIC);
    out.put_u64(origin);
    out.put_u64(seq);
    out.put_u8(kind);
    out.put_slice(data);
    out.freeze()
}

/// Decodes a message; `None` for anything that is not one (a short or foreign message,
/// an unknown kind, text that is not UTF-8).
pub(crate) fn decode(bytes: Bytes) -> Option<Message> {
    if bytes.len() < HEADER || &bytes[..4] != MAGIC {
        return None;
    }
    let word = |at: usize| -> Option<u64> {
        Some(u64::from_be_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
    };
    let origin = word(4)?;
    let seq = word(12)?;
    let data = bytes.slice(HEADER..);
    let frame = match bytes[20] {
        0 => DataFrame::Text(Utf8Bytes::try_from(data).ok()?),
        1 => DataFrame::Binary(data),
        _ => return None,
    };
    Some(Message { origin, seq, frame })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for frame in [
            DataFrame::Text(Utf8Bytes::from_static("héllo")),
            DataFrame::Binary(Bytes::from_static(&[0, 255, 1])),
            DataFrame::Text(Utf8Bytes::from_static("")),
        ] {
            let m = decode(encode(7, 9, &frame)).expect("decodes");
            assert_eq!(
                m,
                Message {
                    origin: 7,
                    seq: 9,
                    frame
                }
            );
        }
    }

    /// Whatever arrives, decoding never panics: every prefix of a valid message, bytes
    /// flipped anywhere, invalid UTF-8, an unknown kind.
    #[test]
    fn garbage_decodes_to_none_never_a_panic() {
        let good = encode(1, 2, &DataFrame::Text(Utf8Bytes::from_static("abc")));
        for n in 0..HEADER {
            assert_eq!(decode(good.slice(..n)), None, "prefix of {n}");
        }
        let mut bad_kind = good.to_vec();
        bad_kind[20] = 9;
        assert_eq!(decode(bad_kind.into()), None);
        let mut bad_utf8 = good.to_vec();
        bad_utf8[HEADER] = 0xff;
        assert_eq!(decode(bad_utf8.into()), None);
        assert_eq!(decode(Bytes::from_static(b"hello, world, not ours")), None);
        let mut rng = fastrand::Rng::with_seed(15);
        for _ in 0..2000 {
            let mut v = good.to_vec();
            let i = rng.usize(..v.len());
            v[i] = rng.u8(..);
            v.truncate(rng.usize(..=v.len()));
            let _ = decode(v.into());
        }
    }
}
