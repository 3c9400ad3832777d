//! Transport inputs: generation checks, frame checks, and what each decoded frame does.

use std::time::Instant;

use super::{Link, Session, Teardown};
use crate::close::{CloseClass, CloseCode};
use crate::error::{AttemptError, DisconnectReason, RequestFailure, Violation};
use crate::event::StreamEventKind;
use crate::event::{Event, Output};
use crate::frame::{DataFrame, InFrame, Utf8Bytes};
use crate::ids::ConnId;
use crate::input::Input;
use crate::protocol::{Decoded, Phase, Protocol};
use crate::resume::Resume;
use crate::streams::Routed;
use crate::timer::after;

impl<P: Protocol> Session<P> {
    /// Applies one transport input. Never fails: peer and network faults become outputs
    /// and events. Drain [`poll_output`](Self::poll_output) afterwards; the deadline may
    /// have changed.
    ///
    /// An input whose generation is not the current one is counted in
    /// [`SessionStats::stale_inputs`](crate::SessionStats::stale_inputs) and ignored (a
    /// late `TransportOpened` of an abandoned attempt is answered with `AbortTransport`, so
    /// the socket does not leak).
    pub fn handle_input(&mut self, input: Input, now: Instant) {
        let now = self.advance_keeping(now);
        let conn = input.conn();
        if self.link.conn() != Some(conn) {
            // Disarms a closing connection's timer at most: the floor holds.
            self.foreign_input(input);
            return;
        }
        // Whether the deadline floor still holds after this input (see `timer::Floor`):
        // only the inputs of an open connection's steady state keep it.
        let floor_holds = match input {
            Input::FrameReceived { conn, frame } => self.on_frame(conn, frame, now),
            Input::WriteCompleted { conn, frame } => {
                self.write_completed(conn, frame, now);
                true
            }
            Input::TransportOpened { conn } => {
                self.on_transport_opened(conn, now);
                false
            }
            Input::TransportFailed { conn, failure } => {
                if matches!(self.link, Link::Opening { .. }) {
                    let class = self.cfg.close_policy.classify_failure(&failure);
                    let error = AttemptError::Transport(failure);
                    self.attempt_failed(conn, error, class, Teardown::Gone, now);
                } else {
                    self.on_closed(conn, None, String::new(), now);
                }
                false
            }
            Input::TransportClosed { conn, code, reason } => {
                self.on_closed(conn, code, reason, now);
                false
            }
            Input::ProtocolError { conn, violation } => {
                self.on_protocol_error(conn, violation, now);
                false
            }
            Input::WriteFailed { conn, .. } => {
                self.on_write_failed(conn, now);
                false
            }
        };
        if !floor_holds {
            self.clock.floor.forget();
        }
    }

    /// A write reported done: it no longer has a send deadline.
    fn write_completed(&mut self, conn: ConnId, frame: crate::ids::FrameId, now: Instant) {
        match self
            .writes
            .complete(frame, now, self.cfg.slow_write_warning)
        {
            Some(Some(elapsed)) => {
                self.stats.slow_writes += 1;
                tracing::warn!(%conn, %frame, ?elapsed, "slow write");
                self.emit(Event::SlowWrite {
                    conn,
                    frame,
                    elapsed,
                });
            }
            Some(None) => {}
            None => self.stats.stale_inputs += 1,
        }
    }

    /// A write failed: the connection is lost, or the attempt failed.
    fn on_write_failed(&mut self, conn: ConnId, now: Instant) {
        match self.link {
            Link::Open { .. } => self.lost(
                conn,
                DisconnectReason::WriteFailed,
                CloseClass::RECONNECT,
                Teardown::Abort,
                now,
            ),
            _ => self.attempt_failed(
                conn,
                AttemptError::Transport(crate::close::TransportFailure::Io("write failed".into())),
                CloseClass::RECONNECT,
                Teardown::Abort,
                now,
            ),
        }
    }

    fn foreign_input(&mut self, input: Input) {
        let conn = input.conn();
        if let Some(pos) = self.closing.iter().position(|(c, _)| *c == conn) {
            // A transport failing the connection over a protocol error ends it as surely
            // as a close frame does.
            if matches!(
                input,
                Input::TransportClosed { .. } | Input::ProtocolError { .. }
            ) {
                self.closing.remove(pos);
            }
            return;
        }
        self.stats.stale_inputs += 1;
        tracing::debug!(%conn, "input of an old generation ignored");
        if matches!(input, Input::TransportOpened { .. }) {
            self.outputs.push_back(Output::AbortTransport { conn });
        }
    }

    fn on_transport_opened(&mut self, conn: ConnId, now: Instant) {
        if !matches!(self.link, Link::Opening { .. }) {
            self.stats.stale_inputs += 1;
            return;
        }
        let resume = Resume {
            token: self.resume_token.clone(),
            streams: self.streams.positions(),
        };
        self.replay_floor = resume
            .streams
            .iter()
            .filter_map(|(key, seq)| seq.map(|s| (key.clone(), s)))
            .collect();
        match self.protocol.open_resuming(conn, &resume) {
            Ok(crate::protocol::Opening::Ready) => self.opened(conn, Default::default(), now),
            Ok(crate::protocol::Opening::Hello(frame)) => {
                self.link = Link::Handshaking {
                    conn,
                    deadline: after(now, self.cfg.handshake_timeout),
                };
                self.write(conn, frame, now);
            }
            Ok(crate::protocol::Opening::AwaitServer) => {
                self.link = Link::Handshaking {
                    conn,
                    deadline: after(now, self.cfg.handshake_timeout),
                };
            }
            Err(e) => self.attempt_failed(
                conn,
                AttemptError::Encode(e),
                CloseClass::Fatal,
                Teardown::Close(CloseCode::NORMAL, "cannot build handshake"),
                now,
            ),
        }
    }

    fn on_closed(&mut self, conn: ConnId, code: Option<CloseCode>, reason: String, now: Instant) {
        let mut effective = code;
        if let Some(c) = code
            && !c.is_valid_on_wire()
            && c != CloseCode::NO_STATUS
        {
            self.violation(conn, Violation::InvalidCloseCode(c.0));
            effective = None;
        }
        let class = self
            .cfg
            .close_policy
            .classify_close(effective.unwrap_or(CloseCode::ABNORMAL));
        match self.link {
            Link::Open { .. } => {
                let reason = DisconnectReason::Closed { code, reason };
                self.lost(conn, reason, class, Teardown::Gone, now);
            }
            _ => {
                let error = AttemptError::ClosedDuringHandshake { code, reason };
                self.attempt_failed(conn, error, class, Teardown::Gone, now);
            }
        }
    }

    /// The codec failed the connection because the peer broke the WebSocket protocol; it
    /// sends the close frame itself, so the transport is already on its way out.
    fn on_protocol_error(&mut self, conn: ConnId, violation: Violation, now: Instant) {
        self.violation(conn, violation.clone());
        let class = self.cfg.close_policy.classify_violation();
        match self.link {
            Link::Open { .. } => {
                let reason = DisconnectReason::ProtocolError(violation);
                self.lost(conn, reason, class, Teardown::Gone, now);
            }
            _ => {
                let error = AttemptError::ProtocolError(violation);
                self.attempt_failed(conn, error, class, Teardown::Gone, now);
            }
        }
    }

    /// A frame of the current connection; returns whether the deadline floor still holds.
    fn on_frame(&mut self, conn: ConnId, frame: InFrame, now: Instant) -> bool {
        let phase = match &mut self.link {
            Link::Open { liveness, .. } => {
                liveness.on_rx(now, &mut self.clock.floor);
                Phase::Open
            }
            Link::Handshaking { .. } => Phase::Handshake,
            // A frame before the transport reported open: the adapter broke its contract.
            _ => {
                self.stats.stale_inputs += 1;
                return true;
            }
        };
        let data = match frame {
            InFrame::Ping(_) | InFrame::Pong(_) => return true,
            InFrame::Text(b) | InFrame::Binary(b) if b.len() > self.cfg.max_inbound_frame => {
                let max = self.cfg.max_inbound_frame;
                self.violation(conn, Violation::Oversized { len: b.len(), max });
                return true;
            }
            InFrame::Text(b) => match Utf8Bytes::try_from(b) {
                Ok(t) => DataFrame::Text(t),
                Err(_) => {
                    self.violation(conn, Violation::InvalidUtf8);
                    return true;
                }
            },
            InFrame::Binary(b) => DataFrame::Binary(b),
        };
        self.stats.frames_received += 1;
        let decoded = self.protocol.decode(data, phase);
        self.dispatch(conn, decoded, now)
    }

    /// Acts on a decoded frame; returns whether the deadline floor still holds: yes for
    /// messages, stream events (which lower it for what they arm), heartbeats and
    /// violations, no for anything that resolves a request or moves the handshake.
    fn dispatch(&mut self, conn: ConnId, decoded: Decoded<P>, now: Instant) -> bool {
        let handshaking = matches!(self.link, Link::Handshaking { .. });
        match decoded {
            Decoded::Message(m) => {
                self.stats.messages += 1;
                self.last_activity = Some(now);
                self.emit(Event::Message(m));
                true
            }
            Decoded::Response { id, result } => {
                let known = id
                    .as_ref()
                    .ok()
                    .and_then(|id| self.requests.get(*id))
                    .is_some_and(|p| p.sent_on == Some(conn));
                match id {
                    Ok(id) if known => {
                        self.last_activity = Some(now);
                        self.resolve_request(id, result.map_err(RequestFailure::Remote), now);
                    }
                    Ok(id) => self.violation(
                        conn,
                        Violation::UnknownResponse {
                            wire_id: id.get().to_string(),
                        },
                    ),
                    Err(wire_id) => self.violation(
                        conn,
                        Violation::UnknownResponse {
                            wire_id: shown(wire_id),
                        },
                    ),
                }
                false
            }
            Decoded::Stream(frame) => {
                self.last_activity = Some(now);
                // A server that resumed a stream replays what follows the position the
                // hello named: an event at or behind it is the server's mistake (still
                // dropped as a duplicate or stale below).
                if let Some(seq) = frame.seq
                    && let Some((_, floor)) =
                        self.replay_floor.iter().find(|(key, _)| *key == frame.key)
                    && seq <= *floor
                {
                    let floor = *floor;
                    self.violation(
                        conn,
                        Violation::Malformed {
                            detail: format!(
                                "stream {} replayed seq {seq}, at or behind the resume \
                                 position {floor}",
                                frame.key
                            ),
                        },
                    );
                }
                match self.streams.route(&self.cfg.streams, frame, now) {
                    Routed::Deliver { gap, event } => {
                        for ev in gap.into_iter().chain([event]) {
                            if matches!(ev.kind, StreamEventKind::Gap { .. }) {
                                self.stats.gaps += 1;
                            }
                            self.stats.stream_events += 1;
                            self.emit(Event::Stream(ev));
                        }
                    }
                    Routed::Duplicate => self.stats.duplicates_dropped += 1,
                    Routed::Stale => self.stats.stale_stream_events += 1,
                    Routed::Late => self.stats.late_events += 1,
                    Routed::Unsolicited(payload) => {
                        self.stats.unsolicited += 1;
                        self.emit(Event::Unsolicited(payload));
                    }
                }
                // Routing arms the streams' own expiries (de-duplication memory,
                // cooldown, an idle stream), and nothing else.
                let expiry = self.streams.next_expiry(&self.cfg.streams);
                self.clock.floor.lower(expiry);
                true
            }
            Decoded::Heartbeat | Decoded::Ignore => true,
            // One challenge answered per connection: a peer repeating it would otherwise
            // make the session write a reply for each, past `max_pending_writes`.
            Decoded::Challenge(reply) if handshaking && self.challenged != Some(conn) => {
                self.challenged = Some(conn);
                self.write(conn, reply, now);
                false
            }
            Decoded::Ack(acked) if handshaking => {
                self.opened(conn, acked, now);
                false
            }
            Decoded::Rejected(r) if handshaking => {
                let class = if r.fatal {
                    CloseClass::Fatal
                } else {
                    CloseClass::Reconnect {
                        min_delay: r.retry_after,
                    }
                };
                let error = AttemptError::HandshakeRejected { message: r.message };
                let how = Teardown::Close(CloseCode::NORMAL, "handshake rejected");
                self.attempt_failed(conn, error, class, how, now);
                false
            }
            // A violation is reported, and arms nothing.
            Decoded::Ack(_) => {
                self.violation(conn, Violation::DuplicateAck);
                true
            }
            Decoded::Challenge(_) | Decoded::Rejected(_) => {
                self.violation(conn, Violation::UnexpectedHandshake);
                true
            }
            Decoded::Violation(v) => {
                self.violation(conn, v);
                true
            }
        }
    }

    pub(super) fn violation(&mut self, conn: ConnId, violation: Violation) {
        self.stats.violations += 1;
        tracing::debug!(%conn, %violation, "protocol violation");
        self.emit(Event::Violation { conn, violation });
    }
}

/// The longest peer-sent id a violation carries, in bytes: enough to recognise it, not
/// enough for a peer to make every log line megabytes long.
pub(crate) const MAX_SHOWN_ID: usize = 64;

/// `id` cut to [`MAX_SHOWN_ID`] bytes (at a character boundary), marked when cut.
fn shown(mut id: String) -> String {
    if id.len() > MAX_SHOWN_ID {
        let mut end = MAX_SHOWN_ID;
        while !id.is_char_boundary(end) {
            end -= 1;
        }
        id.truncate(end);
        id.push('…');
    }
    id
}
