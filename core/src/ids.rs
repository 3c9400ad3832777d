//! Identities that tie every effect to the thing it belongs to.

use std::fmt;

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
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamKey(pub String);

impl StreamKey {
    /// The key as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StreamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for StreamKey {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl From<String> for StreamKey {
    fn from(s: String) -> Self {
        Self(s)
    }
}
