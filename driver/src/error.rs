//! The driver's errors for a client: why a session did not open, why a request produced no
//! response.

use tether_core::{ConfigError, EndReason, RequestError, RequestFailure};

/// Why [`Client::connect`](crate::Client::connect) did not produce an open session.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The URL is not usable.
    #[error(transparent)]
    Url(#[from] crate::ws::UrlError),
    /// A header or a subprotocol is not valid.
    #[error(transparent)]
    Header(#[from] crate::ws::HeaderError),
    /// The session ended before it opened: the first connect's outcome.
    #[error("could not connect to {target}: {reason}")]
    Ended {
        /// Where the session was connecting: `host:port` for a WebSocket URL.
        target: String,
        /// How the session ended.
        reason: EndReason,
    },
}

impl ConnectError {
    /// How the session ended, for [`ConnectError::Ended`].
    pub fn end_reason(&self) -> Option<&EndReason> {
        match self {
            ConnectError::Ended { reason, .. } => Some(reason),
            _ => None,
        }
    }
}

/// Why a request through [`Client::request`](crate::Client::request) produced no response.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallError<E> {
    /// The session refused the request at once.
    #[error(transparent)]
    Refused(#[from] RequestError),
    /// The request was sent (or queued) but failed.
    #[error(transparent)]
    Failed(RequestFailure<E>),
    /// The session loop is gone (the runtime shut down).
    #[error("the session loop has stopped")]
    Stopped,
}
