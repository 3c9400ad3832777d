//! `Raw`: no handshake, no requests; every data frame is a message.

use std::convert::Infallible;

use crate::error::EncodeError;
use crate::frame::{DataFrame, OutFrame};
use crate::ids::ConnId;
use crate::protocol::{Decoded, Opening, Phase, Protocol};

/// No handshake and no requests: the session is open as soon as the WebSocket is, and
/// every data frame is delivered as it came, without a copy.
///
/// ```
/// use tether_core::{profiles::Raw, Config, Session};
/// let session = Session::new(Config::default(), Raw, 1).unwrap();
/// # let _ = session;
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Raw;

impl Protocol for Raw {
    type Inbound = DataFrame;
    type Outbound = DataFrame;
    type Request = Infallible;
    type Response = Infallible;
    type RemoteError = Infallible;

    fn open(&mut self, _conn: ConnId) -> Result<Opening, EncodeError> {
        Ok(Opening::Ready)
    }

    fn encode(&mut self, message: DataFrame) -> Result<OutFrame, EncodeError> {
        Ok(match message {
            DataFrame::Text(t) => OutFrame::Text(t),
            DataFrame::Binary(b) => OutFrame::Binary(b),
        })
    }

    #[inline]
    fn decode(&mut self, frame: DataFrame, _phase: Phase) -> Decoded<Self> {
        Decoded::Message(frame)
    }
}
