//! What the driver's WebSocket link makes of what a peer sends, for the value-level
//! [`World`](crate::World) and the [`server_role`](crate::server_role), whose frames never
//! pass through a codec.
//!
//! Over real sockets (and in the wire mode of [`driven`](crate::driven)) the codec, not
//! the session, sees a frame first: it refuses a text frame that is not UTF-8 (the link
//! fails the connection with 1007), a frame over the session's `max_inbound_frame` (1009)
//! and a close frame whose code no peer may send or whose reason does not fit a control
//! frame (1002); the session learns each as [`Input::ProtocolError`]. A valid close code,
//! even one the codec does not know (1014, 4999), reaches the session as sent. The world
//! and the server role apply the same rules to every input they deliver ([`Reader`]), so
//! their verdicts are the wire's; `sim/tests/wire_equivalence.rs` checks that the world
//! and the wire mode agree on these inputs.

use tether_core::{CloseCode, FrameViolation, InFrame, Input, MAX_CLOSE_REASON, Violation};

/// What reaches the session of an input the network delivers.
#[derive(Debug)]
pub(crate) enum Arrival {
    /// The input as it is.
    Deliver(Input),
    /// The link refused what the peer sent: the session is told `input` (a
    /// [`Input::ProtocolError`]) and the connection fails; the peer receives a close frame
    /// with `answer` unless it had already closed.
    Fail {
        /// What the session is told.
        input: Input,
        /// The close code the peer receives.
        answer: CloseCode,
        /// The peer closed (its close frame is what was refused): nothing more to send.
        peer_closed: bool,
    },
}

/// Applies the link's rules to `input`, for a session whose inbound limit is
/// `max_inbound_frame`.
pub(crate) fn arrive(input: Input, max_inbound_frame: usize) -> Arrival {
    let fail = |conn, violation: Violation, peer_closed| {
        let answer = match &violation {
            // The codec answers a close frame it refuses with a protocol error.
            Violation::InvalidCloseCode(_) => CloseCode::PROTOCOL_ERROR,
            v => v.close_code(),
        };
        Arrival::Fail {
            input: Input::ProtocolError { conn, violation },
            answer,
            peer_closed,
        }
    };
    match input {
        Input::FrameReceived {
            conn,
            frame: InFrame::Text(ref b) | InFrame::Binary(ref b),
        } if b.len() > max_inbound_frame => fail(
            conn,
            Violation::Oversized {
                len: b.len(),
                max: max_inbound_frame,
            },
            false,
        ),
        Input::FrameReceived {
            conn,
            frame: InFrame::Text(ref b),
        } if std::str::from_utf8(b).is_err() => fail(conn, Violation::InvalidUtf8, false),
        Input::TransportClosed {
            conn,
            code: Some(_),
            ref reason,
        } if reason.len() > MAX_CLOSE_REASON => {
            fail(conn, Violation::Frame(FrameViolation::ControlTooLong), true)
        }
        Input::TransportClosed {
            conn,
            code: Some(code),
            ..
        } if !code.is_valid_on_wire() => fail(conn, Violation::InvalidCloseCode(code.0), true),
        other => Arrival::Deliver(other),
    }
}

/// The receiving end of one link under the model. Once it refused what the peer sent it
/// failed the connection, and it reads nothing more: a frame or close arriving after is
/// dropped unread, as a socket the codec gave up on is.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Reader {
    failed: bool,
}

impl Reader {
    /// What reaches the end of `input` ([`arrive`]), remembering a failure; `None` when the
    /// link already failed and `input` is a frame or close it no longer reads.
    pub(crate) fn read(&mut self, input: Input, max_inbound_frame: usize) -> Option<Arrival> {
        if self.failed
            && matches!(
                input,
                Input::FrameReceived { .. } | Input::TransportClosed { .. }
            )
        {
            return None;
        }
        let arrival = arrive(input, max_inbound_frame);
        if matches!(arrival, Arrival::Fail { .. }) {
            self.failed = true;
        }
        Some(arrival)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use tether_core::ConnId;

    use super::*;

    fn conn() -> ConnId {
        ConnId::from_raw(1)
    }

    fn text(b: &'static [u8]) -> Input {
        Input::FrameReceived {
            conn: conn(),
            frame: InFrame::Text(Bytes::from_static(b)),
        }
    }

    fn close(code: u16, reason: &str) -> Input {
        Input::TransportClosed {
            conn: conn(),
            code: Some(CloseCode(code)),
            reason: reason.to_owned(),
        }
    }

    fn failed(a: &Arrival) -> Option<(Violation, u16)> {
        match a {
            Arrival::Fail {
                input: Input::ProtocolError { violation, .. },
                answer,
                ..
            } => Some((violation.clone(), answer.0)),
            _ => None,
        }
    }

    #[test]
    fn the_codec_refuses_what_the_wire_refuses() {
        assert_eq!(
            failed(&arrive(text(b"\xff\xfe"), 16)),
            Some((Violation::InvalidUtf8, 1007))
        );
        assert_eq!(
            failed(&arrive(text(b"0123456789"), 4)),
            Some((Violation::Oversized { len: 10, max: 4 }, 1009))
        );
        assert_eq!(
            failed(&arrive(text(b"\xff"), 0)),
            Some((Violation::Oversized { len: 1, max: 0 }, 1009)),
            "the size is checked at the header, before the text"
        );
        for code in [0, 999, 1004, 1005, 1006, 1015, 2999, 5000] {
            assert_eq!(
                failed(&arrive(close(code, ""), 16)),
                Some((Violation::InvalidCloseCode(code), 1002)),
                "{code}"
            );
        }
        assert_eq!(
            failed(&arrive(close(1000, &"r".repeat(124)), 16)),
            Some((Violation::Frame(FrameViolation::ControlTooLong), 1002))
        );
    }

    #[test]
    fn what_the_wire_passes_reaches_the_session_as_it_is() {
        for code in [1000, 1001, 1011, 1014, 3000, 4999] {
            assert!(
                matches!(
                    arrive(close(code, &"r".repeat(123)), 16),
                    Arrival::Deliver(_)
                ),
                "{code}"
            );
        }
        assert!(matches!(arrive(text(b"ok"), 2), Arrival::Deliver(_)));
        let drop = Input::TransportClosed {
            conn: conn(),
            code: None,
            reason: String::new(),
        };
        assert!(matches!(arrive(drop, 16), Arrival::Deliver(_)));
    }

    #[test]
    fn a_failed_link_reads_nothing_more() {
        let mut reader = Reader::default();
        assert!(matches!(
            reader.read(text(b"ok"), 16),
            Some(Arrival::Deliver(_))
        ));
        assert!(matches!(
            reader.read(text(b"\xff"), 16),
            Some(Arrival::Fail { .. })
        ));
        assert!(reader.read(text(b"ok"), 16).is_none());
        assert!(reader.read(close(1000, ""), 16).is_none());
        let written = Input::WriteCompleted {
            conn: conn(),
            frame: tether_core::FrameId::from_raw(1),
        };
        assert!(
            matches!(reader.read(written, 16), Some(Arrival::Deliver(_))),
            "only what the peer sends is unread"
        );
    }
}
