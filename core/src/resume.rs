//! What a session carries into a new connection's handshake to pick up where the last
//! one left off: the server's session token and the last delivered position of every
//! resumable stream.

use crate::ids::StreamKey;

/// The longest session token a server may issue, in bytes. A longer one is a
/// [`Violation`](crate::Violation) and is not kept: the session never stores more than
/// this for it.
pub const MAX_RESUME_TOKEN: usize = 4096;

/// Resume state for one connection's handshake, handed to
/// [`Protocol::open_resuming`](crate::Protocol::open_resuming).
///
/// Bounded: the token by [`MAX_RESUME_TOKEN`], the positions by
/// [`StreamConfig::max_streams`](crate::StreamConfig::max_streams). Its `Debug` shows the
/// token's length, never the token (the session never logs it either).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Resume {
    pub(crate) token: Option<String>,
    pub(crate) streams: Vec<(StreamKey, Option<u64>)>,
}

impl Resume {
    /// The session token the server issued on an earlier connection
    /// ([`Acked::resume_token`](crate::Acked::resume_token)), if any.
    #[must_use]
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// Every live resumable stream with the `seq` of its last delivered event (`None`:
    /// none delivered yet), in key order.
    #[must_use]
    pub fn streams(&self) -> &[(StreamKey, Option<u64>)] {
        &self.streams
    }

    /// Whether there is nothing to resume (a first connection, or nothing resumable).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.token.is_none() && self.streams.is_empty()
    }
}

impl std::fmt::Debug for Resume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resume")
            .field("token_len", &self.token.as_ref().map(String::len))
            .field("streams", &self.streams)
            .finish()
    }
}

/// What the server said of a resume, in its handshake acknowledgement.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Recovery {
    /// Nothing said (or nothing was asked): resumable streams carry on, and events the
    /// server sends again are de-duplicated.
    #[default]
    NotAsked,
    /// The server recovered the session: it replays what was missed after each
    /// stream's position.
    Recovered,
    /// The server cannot recover: every resumable stream ends with
    /// [`StreamEnd::Unrecoverable`](crate::StreamEnd::Unrecoverable), so the application
    /// can rebuild its state.
    Unrecoverable,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_the_tokens_length_not_the_token() {
        let r = Resume {
            token: Some("tok-secret".into()),
            streams: vec![(StreamKey::from("s"), Some(3))],
        };
        let shown = format!("{r:?}");
        assert!(!shown.contains("tok-secret"), "{shown}");
        assert!(shown.contains("token_len: Some(10)"), "{shown}");
        assert!(!r.is_empty() && Resume::default().is_empty());
        assert_eq!(r.token(), Some("tok-secret"));
        assert_eq!(r.streams(), [(StreamKey::from("s"), Some(3))]);
    }
}
