//! Frames as they cross the simulated wire.

use bytes::Bytes;
use tether_core::{InFrame, OutFrame};

/// A WebSocket frame on the simulated wire, in either direction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wire {
    /// A text frame (its bytes may be invalid UTF-8 when a fault says so).
    Text(Bytes),
    /// A binary frame.
    Binary(Bytes),
    /// A ping.
    Ping,
    /// A pong.
    Pong,
    /// A close frame with its code (`None`: no code) and reason.
    Close(Option<u16>, String),
}

impl Wire {
    /// A text frame from a string.
    pub fn text(s: impl Into<String>) -> Self {
        Wire::Text(Bytes::from(s.into()))
    }

    /// A text frame holding this JSON value.
    pub fn json(v: &serde_json::Value) -> Self {
        Wire::text(v.to_string())
    }

    /// The frame's text, when it is a UTF-8 text frame.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Wire::Text(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// The frame parsed as JSON, when it is a text frame holding JSON.
    pub fn as_json(&self) -> Option<serde_json::Value> {
        match self {
            Wire::Text(b) => serde_json::from_slice(b).ok(),
            _ => None,
        }
    }

    /// The frame a writer's codec puts on the wire for `frame` (a ping's payload is not
    /// carried: nothing in the simulator reads it).
    pub(crate) fn sent(frame: &OutFrame) -> Self {
        match frame {
            OutFrame::Text(t) => Wire::Text(t.clone().into_bytes()),
            OutFrame::Binary(b) => Wire::Binary(b.clone()),
            OutFrame::Ping(_) => Wire::Ping,
        }
    }

    /// The frame as the receiving codec hands it over, or, for a close frame, its code and
    /// reason (`Err`): a close is not a frame to the reader but the end of the transport.
    pub(crate) fn into_frame(self) -> Result<InFrame, (Option<u16>, String)> {
        match self {
            Wire::Text(b) => Ok(InFrame::Text(b)),
            Wire::Binary(b) => Ok(InFrame::Binary(b)),
            Wire::Ping => Ok(InFrame::Ping(Bytes::new())),
            Wire::Pong => Ok(InFrame::Pong(Bytes::new())),
            Wire::Close(code, reason) => Err((code, reason)),
        }
    }
}
