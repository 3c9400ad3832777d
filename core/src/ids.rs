//! Identities that tie every effect to the thing it belongs to.

use std::fmt;

use crate::frame::Utf8Bytes;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub(crate) u64);

        impl $name {
            /// The raw number, for logs and wire encodings.
            #[must_use]
            pub fn get(self) -> u64 {
                self.0
            }

            /// Builds an id from its raw number (for protocols that decode ids from the wire,
            /// and for tests).
            #[must_use]
            pub fn from_raw(raw: u64) -> Self {
                Self(raw)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }
    };
}

id_type!(
    /// One transport attempt (a connection generation). Every transport input echoes the
    /// `ConnId` of the attempt it belongs to; inputs of an older generation are ignored.
    ConnId,
    "conn#"
);
id_type!(
    /// One frame handed to the adapter. The adapter reports its write completion by this id.
    FrameId,
    "frame#"
);
id_type!(
    /// A request, returned by [`Session::request`](crate::Session::request) and resolved
    /// exactly once.
    RequestId,
    "req#"
);
id_type!(
    /// A message accepted by [`Session::send`](crate::Session::send), written or queued.
    MessageId,
    "msg#"
);

/// The key that groups the events of one stream (a gateway run id, an idempotency key).
///
/// Shared text: a clone is a reference count, never a copy, so the session can key its
/// maps, its de-duplication memory and every event with it at no cost per frame. A
/// protocol may build it from a slice of the frame it decodes
/// ([`From<Utf8Bytes>`](#impl-From%3CUtf8Bytes%3E-for-StreamKey)); the session keeps
/// such a key only while the frame is alive, and stores its own copy (or the stream's
/// registered key) in anything that outlives it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamKey(Utf8Bytes);

impl StreamKey {
    /// The key as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The key as shared bytes.
    #[must_use]
    pub fn as_utf8(&self) -> &Utf8Bytes {
        &self.0
    }

    /// The same key in a buffer of its own: what is stored beyond the life of the frame a
    /// key was sliced from, so a short key never pins a large frame in memory.
    #[must_use]
    pub(crate) fn detached(&self) -> Self {
        Self(Utf8Bytes::from_string(self.as_str().to_owned()))
    }
}

impl fmt::Display for StreamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for StreamKey {
    fn from(s: &str) -> Self {
        Self(Utf8Bytes::from_string(s.to_owned()))
    }
}

impl From<String> for StreamKey {
    fn from(s: String) -> Self {
        Self(Utf8Bytes::from_string(s))
    }
}

impl From<Utf8Bytes> for StreamKey {
    fn from(s: Utf8Bytes) -> Self {
        Self(s)
    }
}
