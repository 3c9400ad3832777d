//! WebSocket frames as the session sees them: payloads are shared byte buffers.

use bytes::Bytes;
use bytestring::ByteString;

/// A frame the adapter received from the peer.
///
/// Text arrives as bytes so that the session, not the adapter, decides what invalid
/// UTF-8 means (a [`Violation::InvalidUtf8`](crate::Violation::InvalidUtf8)), and so that
/// a payload reaches the application without a copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InFrame {
    /// A text frame (expected to be UTF-8; the session checks).
    Text(Bytes),
    /// A binary frame.
    Binary(Bytes),
    /// A ping. The WebSocket library answers it; the session counts it as life.
    Ping(Bytes),
    /// A pong. The session counts it as life.
    Pong(Bytes),
}

/// A data frame after the session's checks, as a [`Protocol`](crate::Protocol) decodes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataFrame {
    /// A text frame whose payload is valid UTF-8.
    Text(Utf8Bytes),
    /// A binary frame.
    Binary(Bytes),
}

impl DataFrame {
    /// A text frame.
    ///
    /// ```
    /// use tether_core::DataFrame;
    /// let frame = DataFrame::text(format!("hello #{}", 1));
    /// assert_eq!(frame.as_text(), Some("hello #1"));
    /// ```
    pub fn text(s: impl Into<String>) -> Self {
        DataFrame::Text(Utf8Bytes::from(s.into()))
    }

    /// A binary frame.
    pub fn binary(b: impl Into<Bytes>) -> Self {
        DataFrame::Binary(b.into())
    }

    /// The text of a text frame.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            DataFrame::Text(t) => Some(t.as_str()),
            DataFrame::Binary(_) => None,
        }
    }

    /// The payload's bytes, text or binary.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            DataFrame::Text(t) => t.as_str().as_bytes(),
            DataFrame::Binary(b) => b,
        }
    }
}

/// Bytes known to be valid UTF-8: checked once, when built, and read as `&str` for free
/// after that.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Utf8Bytes(ByteString);

impl Utf8Bytes {
    /// Checks `bytes` and wraps them, or gives them back if they are not UTF-8. When the
    /// bytes are not wanted back, `Utf8Bytes::try_from(bytes)` does the same without the
    /// second handle this keeps on the buffer meanwhile.
    ///
    /// # Errors
    ///
    /// Returns the bytes unchanged when they are not valid UTF-8.
    pub fn try_from_bytes(bytes: Bytes) -> Result<Self, Bytes> {
        // The check consumes what it checks; a second handle on the buffer (a count, not
        // a copy) gives the bytes back when it fails.
        let back = bytes.clone();
        ByteString::try_from(bytes).map(Self).map_err(|_| back)
    }

    /// Wraps a string without copying it.
    #[must_use]
    pub fn from_string(s: String) -> Self {
        Self(ByteString::from(s))
    }

    /// Wraps a static string.
    #[must_use]
    pub const fn from_static(s: &'static str) -> Self {
        Self(ByteString::from_static(s))
    }

    /// The text, without checking it again.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The raw bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// The shared buffer, without a copy.
    #[must_use]
    pub fn into_bytes(self) -> Bytes {
        self.0.into_bytes()
    }

    /// The part of this buffer that `sub` is, shared without a copy; `None` when `sub`
    /// does not lie within it. Any `&str` is whole UTF-8, so the slice is too.
    pub(crate) fn slice_ref(&self, sub: &str) -> Option<Self> {
        // Addresses only, compared as integers: no pointer is dereferenced.
        let start = (sub.as_ptr() as usize).checked_sub(self.as_bytes().as_ptr() as usize)?;
        let end = start.checked_add(sub.len())?;
        // Checked to lie within, so `ByteString::slice_ref` (which panics otherwise)
        // cannot panic.
        (end <= self.len()).then(|| Self(self.0.slice_ref(sub)))
    }

    /// Length in bytes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the text is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Checks `bytes` and wraps them: every text frame the session and the server read
/// goes through this once.
impl TryFrom<Bytes> for Utf8Bytes {
    type Error = std::str::Utf8Error;

    #[inline]
    fn try_from(bytes: Bytes) -> Result<Self, std::str::Utf8Error> {
        ByteString::try_from(bytes).map(Self)
    }
}

impl From<String> for Utf8Bytes {
    fn from(s: String) -> Self {
        Self::from_string(s)
    }
}

/// Byte order, which for UTF-8 is the order of the texts' code points.
impl PartialOrd for Utf8Bytes {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Utf8Bytes {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl std::hash::Hash for Utf8Bytes {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // As `str` hashes, so a `Utf8Bytes` and the same `&str` hash alike.
        self.as_bytes().hash(state);
        state.write_u8(0xff);
    }
}

impl PartialEq<str> for Utf8Bytes {
    fn eq(&self, other: &str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl PartialEq<&str> for Utf8Bytes {
    fn eq(&self, other: &&str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

/// As the text it holds.
impl serde::Serialize for Utf8Bytes {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl std::fmt::Display for Utf8Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&'static str> for Utf8Bytes {
    fn from(s: &'static str) -> Self {
        Self::from_static(s)
    }
}

/// A frame the session asks the adapter to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutFrame {
    /// A text frame.
    Text(Utf8Bytes),
    /// A binary frame.
    Binary(Bytes),
    /// A ping with this payload.
    Ping(Bytes),
}

impl OutFrame {
    /// Payload length in bytes.
    #[must_use]
    pub fn len(&self) -> usize {
        match self {
            OutFrame::Text(t) => t.len(),
            OutFrame::Binary(b) | OutFrame::Ping(b) => b.len(),
        }
    }

    /// Whether the payload is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A text frame from a string.
    #[must_use]
    pub fn text(s: impl Into<String>) -> Self {
        OutFrame::Text(Utf8Bytes::from_string(s.into()))
    }
}
