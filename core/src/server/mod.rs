//! The server role: one accepted WebSocket connection, guarded by the rules the client
//! session follows.
//!
//! A server never connects, reconnects or waits for a handshake acknowledgement, so
//! [`ServerConn`] is a sibling of [`Session`](crate::Session) rather than a mode of it.
//! What both roles need is written once and used by both: the liveness tracker (pings,
//! stale detection, the probe after a clock jump), the table of pending writes behind the
//! send deadline (with its re-basing after a sleep), close codes and the checks on an
//! outgoing close frame, the timer kinds, the [`Input`] enum, frames and violations.
//!
//! What a server connection decides:
//!
//! - **Liveness.** A ping every `liveness.ping_interval`; any inbound frame, ping or pong
//!   counts as life; none for `liveness.stale_after` means the peer is dead (its Wi-Fi
//!   died, its process froze): abort.
//! - **Send deadline.** Every frame handed to the adapter carries a [`FrameId`] and must
//!   be reported written within `send_deadline`, however many partial writes that takes;
//!   otherwise the peer is treated as dead and the connection aborted. Writes slower than
//!   `slow_write_warning` are reported. At most `max_pending_writes` frames are pending.
//! - **Closing.** [`close`](ServerConn::close) is idempotent: a close frame, then the
//!   peer's answer or an abort after `close_timeout`. [`terminate`](ServerConn::terminate)
//!   aborts at once (for a watchdog). Afterwards [`is_closed`](ServerConn::is_closed) is
//!   true and no timer is armed.
//! - **Bad input.** Oversized frames, invalid UTF-8 and invalid close codes become
//!   [`ServerEvent::Violation`]; nothing panics.
//!
//! The run loop is the client's: feed one thing (a command,
//! [`handle_input`](ServerConn::handle_input) or
//! [`handle_timeout`](ServerConn::handle_timeout)), drain
//! [`poll_output`](ServerConn::poll_output) to `None`, wait until
//! [`poll_timeout`](ServerConn::poll_timeout) or the next input.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use tether_core::server::{EndCause, ServerConfig, ServerConn, ServerEvent, ServerOutput};
//! use tether_core::{ConnId, DataFrame, DisconnectReason, Input, Utf8Bytes};
//!
//! let t0 = Instant::now(); // the driver's clock read, not the connection's
//! let conn = ConnId::from_raw(1);
//! let mut c = ServerConn::new(ServerConfig::default(), conn, t0).unwrap();
//!
//! let frame = c.send(DataFrame::Text(Utf8Bytes::from_static("hi")), t0).unwrap();
//! assert!(matches!(c.poll_output(), Some(ServerOutput::SendFrame { .. })));
//! // The adapter never reports the write: the peer stopped reading.
//! assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_secs(10)));
//! c.handle_timeout(t0 + Duration::from_secs(10));
//! assert_eq!(c.poll_output(), Some(ServerOutput::AbortTransport { conn }));
//! assert_eq!(
//!     c.poll_output(),
//!     Some(ServerOutput::Event(ServerEvent::Ended(EndCause::Lost(
//!         DisconnectReason::SendDeadline
//!     ))))
//! );
//! assert!(c.is_closed());
//! assert_eq!(c.poll_timeout(), None);
//! // A late report of that write is ignored.
//! c.handle_input(Input::WriteCompleted { conn, frame }, t0 + Duration::from_secs(11));
//! assert_eq!(c.poll_output(), None);
//! ```

mod config;
mod output;

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;

pub use crate::close::{CloseError, MAX_CLOSE_REASON};
pub use config::ServerConfig;
pub use output::{EndCause, ServerEvent, ServerOutput, ServerRole, ServerStats};

use crate::close::CloseCode;
use crate::error::{ConfigError, DisconnectReason, SendError, Violation};
use crate::frame::{DataFrame, InFrame, OutFrame, Utf8Bytes};
use crate::ids::{ConnId, FrameId};
use crate::input::Input;
use crate::liveness::{Liveness, LivenessAction};
use crate::timer::{Earliest, Timed, TimerKind};
use crate::writes::Writes;

/// Where the connection is. Every deadline lives inside its state, so leaving a state
/// disarms its timers.
#[derive(Debug)]
enum State {
    /// Frames flow both ways. `first_message` is the deadline of the peer's first data
    /// message while it has sent none and a timeout is configured.
    Open {
        liveness: Liveness,
        first_message: Option<Instant>,
    },
    /// A close frame was sent; waiting for the peer's until `deadline`.
    Closing {
        deadline: Instant,
        code: CloseCode,
        reason: String,
        /// Closed by the first-message timeout rather than the application.
        no_first_message: bool,
    },
    /// Ended; the transport is gone or told to go.
    Closed,
}

/// One accepted WebSocket connection as a pure state machine: the server role.
///
/// See the [module documentation](self) for what it decides and the run loop. Every
/// method that takes `now` first fires the timers due at or before `now`, then does its
/// own work; a `now` earlier than one already seen is treated as that one.
pub struct ServerConn {
    cfg: ServerConfig,
    conn: ConnId,
    state: State,
    writes: Writes,
    next_frame: u64,
    outputs: VecDeque<ServerOutput>,
    /// The latest `now` seen and the deadline floor (`timer::advance` keeps both).
    clock: crate::timer::Clock,
    stats: ServerStats,
    end: Option<EndCause>,
}

impl std::fmt::Debug for ServerConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConn")
            .field("conn", &self.conn)
            .field("state", &self.state)
            .field("pending_writes", &self.writes.len())
            .finish_non_exhaustive()
    }
}

impl ServerConn {
    /// A connection accepted (its WebSocket upgrade completed) at `now`, identified by
    /// `conn` in every input and output. Liveness counts from `now`.
    ///
    /// # Errors
    ///
    /// The [`ConfigError`] of an invalid configuration.
    pub fn new(config: ServerConfig, conn: ConnId, now: Instant) -> Result<Self, ConfigError> {
        config.validate()?;
        let liveness = Liveness::new(&config.liveness, now);
        let first_message = config
            .first_message_timeout
            .and_then(|d| crate::timer::after(now, d));
        Ok(ServerConn {
            cfg: config,
            conn,
            state: State::Open {
                liveness,
                first_message,
            },
            writes: Writes::with_capacity(16),
            next_frame: 0,
            outputs: VecDeque::with_capacity(8),
            clock: crate::timer::Clock {
                now: Some(now),
                floor: crate::timer::Floor::Unknown,
            },
            stats: ServerStats::default(),
            end: None,
        })
    }

    // ---- getters -------------------------------------------------------------------------

    /// The connection's id.
    #[must_use]
    pub fn conn(&self) -> ConnId {
        self.conn
    }

    /// Whether [`send`](Self::send) is accepted (neither closing nor ended).
    #[must_use]
    pub fn is_open(&self) -> bool {
        matches!(self.state, State::Open { .. })
    }

    /// Whether the connection has ended: [`ServerEvent::Ended`] was emitted, no timer is
    /// armed and nothing more will be asked of the adapter.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// How the connection ended, once it has.
    #[must_use]
    pub fn end_cause(&self) -> Option<&EndCause> {
        self.end.as_ref()
    }

    /// Frames handed to the adapter and not yet reported written.
    #[must_use]
    pub fn pending_writes(&self) -> usize {
        self.writes.len()
    }

    /// Counters.
    #[must_use]
    pub fn stats(&self) -> ServerStats {
        self.stats
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &ServerConfig {
        &self.cfg
    }

    // ---- polls ---------------------------------------------------------------------------

    /// The next thing to do or know, oldest first. Drain to `None` after every call that
    /// takes `now`.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<ServerOutput> {
        self.outputs.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next; `None` once the
    /// connection has ended. Changes after any call that takes `now`.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_timer().map(|(t, _)| t)
    }

    /// Which timer [`poll_timeout`](Self::poll_timeout) is waiting for: [`TimerKind::Ping`],
    /// [`TimerKind::Liveness`], [`TimerKind::SendDeadline`] or [`TimerKind::CloseTimeout`].
    #[must_use]
    pub fn timeout_reason(&self) -> Option<TimerKind> {
        self.next_timer().map(|(_, k)| k)
    }

    // ---- inputs --------------------------------------------------------------------------

    /// Fires every timer due at or before `now`. Safe to call early, late or spuriously;
    /// drain [`poll_output`](Self::poll_output) afterwards.
    pub fn handle_timeout(&mut self, now: Instant) {
        crate::timer::fire_due(self, now);
    }

    /// Applies one transport input. Never fails: peer and network faults become outputs
    /// and events. Drain [`poll_output`](Self::poll_output) afterwards; the deadline may
    /// have changed.
    ///
    /// An input of another connection, any input after the end, and a report of a write
    /// that is no longer pending are counted in [`ServerStats::stale_inputs`] and
    /// ignored. `TransportOpened` means nothing to an accepted connection (ignored);
    /// `TransportFailed` is treated as a dropped socket.
    pub fn handle_input(&mut self, input: Input, now: Instant) {
        let now = self.advance_keeping(now);
        if input.conn() != self.conn || self.is_closed() {
            self.stats.stale_inputs += 1;
            tracing::debug!(conn = %input.conn(), "input ignored");
            return;
        }
        // Whether the deadline floor still holds: a frame in and a write reported done
        // keep it (see `timer::Floor`); anything else forgets it.
        let floor_holds = matches!(
            input,
            Input::FrameReceived { .. } | Input::WriteCompleted { .. }
        );
        match input {
            Input::FrameReceived { frame, .. } => self.on_frame(frame, now),
            Input::TransportClosed { code, reason, .. } => self.on_closed(code, reason),
            Input::TransportFailed { .. } => self.on_closed(None, String::new()),
            Input::ProtocolError { violation, .. } => self.on_protocol_error(violation),
            Input::WriteCompleted { frame, .. } => {
                match self
                    .writes
                    .complete(frame, now, self.cfg.slow_write_warning)
                {
                    Some(Some(elapsed)) => {
                        self.stats.slow_writes += 1;
                        tracing::warn!(conn = %self.conn, %frame, ?elapsed, "slow write");
                        self.emit(ServerEvent::SlowWrite { frame, elapsed });
                    }
                    Some(None) => {}
                    None => self.stats.stale_inputs += 1,
                }
            }
            Input::WriteFailed { .. } => match self.state {
                State::Open { .. } => self.lose(DisconnectReason::WriteFailed, true),
                _ => self.finish_close(false, true),
            },
            Input::TransportOpened { .. } => self.stats.stale_inputs += 1,
        }
        if !floor_holds {
            self.clock.floor.forget();
        }
    }

    // ---- commands ------------------------------------------------------------------------

    /// Writes a data frame: [`ServerOutput::SendFrame`] follows, and the frame's send
    /// deadline starts now.
    ///
    /// # Errors
    ///
    /// [`SendError::Ended`] once the connection is closing or has ended,
    /// [`SendError::Backpressure`] when `max_pending_writes` frames are pending. Nothing
    /// was written then.
    pub fn send(&mut self, message: DataFrame, now: Instant) -> Result<FrameId, SendError> {
        let now = self.advance_keeping(now);
        if !self.is_open() {
            return Err(SendError::Ended);
        }
        if self.writes.len() >= self.cfg.max_pending_writes {
            return Err(SendError::Backpressure);
        }
        let payload = match message {
            DataFrame::Text(t) => OutFrame::Text(t),
            DataFrame::Binary(b) => OutFrame::Binary(b),
        };
        // Arms the write's send deadline, which lowers the floor.
        Ok(self.write(payload, now))
    }

    /// Closes the connection: a close frame with `code` and `reason`, then
    /// [`ServerEvent::Ended`] when the peer answers, or an abort after `close_timeout`.
    /// Frames still pending are no longer waited for. Idempotent: once the connection is
    /// closing or has ended, later calls do nothing.
    ///
    /// # Errors
    ///
    /// A [`CloseError`] for a code that may not be sent or a reason longer than
    /// [`MAX_CLOSE_REASON`] bytes; nothing happened then.
    pub fn close(&mut self, code: CloseCode, reason: &str, now: Instant) -> Result<(), CloseError> {
        CloseError::check(code, reason)?;
        let now = self.advance(now);
        self.start_close(code, reason, false, now);
        Ok(())
    }

    /// Starts the close handshake unless the connection is already closing or ended.
    fn start_close(&mut self, code: CloseCode, reason: &str, no_first_message: bool, now: Instant) {
        if !self.is_open() {
            return;
        }
        tracing::debug!(conn = %self.conn, %code, "closing");
        // The driver may discard frames not yet on the wire; their deadlines no longer
        // matter, the close timeout bounds what is left.
        self.writes.clear();
        self.state = State::Closing {
            // Waited for once and not re-armed, so the end of the clock's range will do
            // if the timeout reaches past it.
            deadline: crate::timer::saturating_after(now, self.cfg.close_timeout),
            code,
            reason: reason.to_owned(),
            no_first_message,
        };
        self.outputs.push_back(ServerOutput::CloseTransport {
            conn: self.conn,
            code,
            reason: reason.to_owned(),
        });
    }

    /// Ends the connection at once, without a close handshake (for a watchdog that finds
    /// the connection stuck, or a close that must not wait). Idempotent.
    pub fn terminate(&mut self, now: Instant) {
        self.advance(now);
        if self.is_closed() {
            return;
        }
        self.outputs
            .push_back(ServerOutput::AbortTransport { conn: self.conn });
        self.writes.clear();
        self.state = State::Closed;
        self.end(EndCause::Terminated);
    }

    // ---- internals -----------------------------------------------------------------------

    /// Clamps `now` to the latest time seen and fires every timer due by then. The
    /// deadline floor is forgotten: what the caller does next may arm a deadline.
    fn advance(&mut self, now: Instant) -> Instant {
        crate::timer::advance_forgetting(self, now)
    }

    /// [`advance`](Self::advance) for the frequent calls (a frame in, a write reported,
    /// a frame out), which keep the deadline floor: what they arm lowers it (a write its
    /// send deadline), and they forget it on any other input.
    #[inline]
    fn advance_keeping(&mut self, now: Instant) -> Instant {
        crate::timer::advance(self, now)
    }

    fn on_frame(&mut self, frame: InFrame, now: Instant) {
        // While closing, the peer may still send until it sees the close frame; the
        // application asked to stop, so those frames are dropped.
        let State::Open {
            liveness,
            first_message,
        } = &mut self.state
        else {
            return;
        };
        liveness.on_rx(now, &mut self.clock.floor);
        if matches!(frame, InFrame::Text(_) | InFrame::Binary(_)) {
            *first_message = None;
        }
        let data = match frame {
            InFrame::Ping(_) | InFrame::Pong(_) => return,
            InFrame::Text(b) | InFrame::Binary(b) if b.len() > self.cfg.max_inbound_frame => {
                let max = self.cfg.max_inbound_frame;
                self.violation(Violation::Oversized { len: b.len(), max });
                return;
            }
            InFrame::Text(b) => match Utf8Bytes::try_from(b) {
                Ok(t) => DataFrame::Text(t),
                Err(_) => {
                    self.violation(Violation::InvalidUtf8);
                    return;
                }
            },
            InFrame::Binary(b) => DataFrame::Binary(b),
        };
        self.stats.messages += 1;
        self.emit(ServerEvent::Message(data));
    }

    fn on_closed(&mut self, code: Option<CloseCode>, reason: String) {
        let mut code = code;
        if let Some(c) = code
            && !c.is_valid_on_wire()
            && c != CloseCode::NO_STATUS
        {
            self.violation(Violation::InvalidCloseCode(c.0));
            code = None;
        }
        match self.state {
            State::Open { .. } => self.lose(DisconnectReason::Closed { code, reason }, false),
            // A close frame answers ours; a socket that drops does not.
            _ => self.finish_close(code.is_some(), false),
        }
    }

    /// The codec failed the connection (it sends the close code itself): the peer broke
    /// the WebSocket protocol.
    fn on_protocol_error(&mut self, violation: Violation) {
        self.violation(violation.clone());
        match self.state {
            State::Open { .. } => self.lose(DisconnectReason::ProtocolError(violation), false),
            // Our close was under way; the peer never answered it properly.
            _ => self.finish_close(false, false),
        }
    }

    fn write(&mut self, payload: OutFrame, now: Instant) -> FrameId {
        let frame = FrameId(self.next_frame);
        self.next_frame += 1;
        self.writes.push(frame, now);
        // The write's send deadline.
        let due = crate::timer::after(now, self.cfg.send_deadline);
        self.clock.floor.lower(due);
        self.stats.frames_sent += 1;
        self.outputs.push_back(ServerOutput::SendFrame {
            conn: self.conn,
            frame,
            payload,
        });
        frame
    }

    fn ping(&mut self, now: Instant) {
        self.stats.pings_sent += 1;
        self.write(OutFrame::Ping(Bytes::new()), now);
    }

    /// The open connection was lost; `abort` when the transport must still be dropped.
    fn lose(&mut self, reason: DisconnectReason, abort: bool) {
        if abort {
            self.outputs
                .push_back(ServerOutput::AbortTransport { conn: self.conn });
        }
        self.writes.clear();
        self.state = State::Closed;
        self.end(EndCause::Lost(reason));
    }

    /// The close under way is over: answered (`confirmed`) or not.
    fn finish_close(&mut self, confirmed: bool, abort: bool) {
        let State::Closing {
            code,
            reason,
            no_first_message,
            ..
        } = std::mem::replace(&mut self.state, State::Closed)
        else {
            return;
        };
        if abort {
            self.outputs
                .push_back(ServerOutput::AbortTransport { conn: self.conn });
        }
        self.writes.clear();
        self.end(if no_first_message {
            EndCause::NoFirstMessage { confirmed }
        } else {
            EndCause::Closed {
                code,
                reason,
                confirmed,
            }
        });
    }

    fn end(&mut self, cause: EndCause) {
        tracing::debug!(conn = %self.conn, %cause, "connection ended");
        self.end = Some(cause.clone());
        self.emit(ServerEvent::Ended(cause));
    }

    fn emit(&mut self, event: ServerEvent) {
        self.outputs.push_back(ServerOutput::Event(event));
    }

    fn violation(&mut self, violation: Violation) {
        self.stats.violations += 1;
        tracing::debug!(conn = %self.conn, %violation, "protocol violation");
        self.emit(ServerEvent::Violation(violation));
    }
}

impl Timed for ServerConn {
    fn next_timer(&self) -> Option<(Instant, TimerKind)> {
        let mut e = Earliest::default();
        match &self.state {
            State::Open {
                liveness,
                first_message,
            } => {
                e.offer(*first_message, TimerKind::FirstMessage);
                if let Some((at, kind)) = liveness.next_deadline() {
                    e.offer(Some(at), kind);
                }
            }
            State::Closing { deadline, .. } => e.offer(Some(*deadline), TimerKind::CloseTimeout),
            State::Closed => return None,
        }
        e.offer(
            self.writes.next_deadline(self.cfg.send_deadline),
            TimerKind::SendDeadline,
        );
        e.get()
    }

    /// `now` is far past the earliest deadline: the host slept, and so did the adapter.
    /// Silence and unreported writes from before the sleep say nothing about the peer
    /// now, so it is probed, exactly as the client session does.
    fn clock_jumped(&mut self, overshoot: std::time::Duration, now: Instant) {
        let State::Open {
            liveness,
            first_message,
        } = &mut self.state
        else {
            return;
        };
        liveness.probe(&self.cfg.liveness, now);
        // The first message may be among what arrived while the host slept: it gets the
        // probe's time to be read, as the silence does.
        if let Some(at) = first_message {
            *at = (*at).max(crate::timer::saturating_after(
                now,
                self.cfg.liveness.probe_timeout,
            ));
        }
        self.writes.rebase(now);
        self.stats.clock_jumps += 1;
        tracing::debug!(conn = %self.conn, ?overshoot, "clock jump; probing the peer");
        self.emit(ServerEvent::ClockJump { overshoot });
        self.ping(now);
    }

    fn fire(&mut self, kind: TimerKind, now: Instant) {
        match kind {
            TimerKind::Ping | TimerKind::Liveness => {
                let State::Open { liveness, .. } = &mut self.state else {
                    return;
                };
                match liveness.on_timeout(&self.cfg.liveness, now) {
                    LivenessAction::Nothing => {}
                    LivenessAction::Ping => self.ping(now),
                    LivenessAction::Dead => {
                        tracing::info!(conn = %self.conn, "peer silent; aborting");
                        self.lose(DisconnectReason::Stale, true);
                    }
                }
            }
            TimerKind::SendDeadline => match self.state {
                State::Open { .. } => {
                    tracing::warn!(conn = %self.conn, "send deadline missed; aborting");
                    self.lose(DisconnectReason::SendDeadline, true);
                }
                State::Closing { .. } => self.finish_close(false, true),
                State::Closed => self.writes.clear(),
            },
            TimerKind::CloseTimeout => {
                if matches!(self.state, State::Closing { .. }) {
                    tracing::debug!(conn = %self.conn, "close not confirmed; aborting");
                    self.finish_close(false, true);
                }
            }
            TimerKind::FirstMessage => {
                if let State::Open { first_message, .. } = &mut self.state {
                    *first_message = None;
                    tracing::info!(conn = %self.conn, "no first message in time; closing");
                    self.stats.first_message_timeouts += 1;
                    self.start_close(CloseCode::POLICY, "no message in time", true, now);
                }
            }
            // No other timer is ever armed by the server role.
            _ => {}
        }
    }

    #[inline]
    fn clock_jump_threshold(&self) -> std::time::Duration {
        self.cfg.liveness.clock_jump_threshold
    }

    #[inline]
    fn clock(&mut self) -> &mut crate::timer::Clock {
        &mut self.clock
    }
}
