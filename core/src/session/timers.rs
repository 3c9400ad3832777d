//! Deadlines: the next one, and what each does when it fires.

use std::time::Instant;

use super::{Link, Session, Teardown};
use crate::close::{CloseClass, CloseCode, FailureKind};
use crate::error::{AttemptError, DisconnectReason, RequestFailure};
use crate::event::{DropReason, EndReason, Event, Output};
use crate::frame::OutFrame;
use crate::liveness::LivenessAction;
use crate::protocol::Protocol;
use crate::status::Status;
use crate::timer::{Earliest, Timed, TimerKind, after};

impl<P: Protocol> Session<P> {
    /// Clamps `now` to the latest time seen and fires every timer due by then. The
    /// deadline floor is forgotten: what the caller does next may arm a deadline.
    pub(super) fn advance(&mut self, now: Instant) -> Instant {
        crate::timer::advance_forgetting(self, now)
    }

    /// [`advance`](Self::advance) for the frequent calls (a frame in, a write reported, a
    /// message out), which keep the deadline floor: what they arm lowers it (a write its
    /// send deadline), and they forget it on any path they have not accounted for.
    #[inline]
    pub(super) fn advance_keeping(&mut self, now: Instant) -> Instant {
        crate::timer::advance(self, now)
    }

    fn fire_liveness(&mut self, now: Instant) {
        let Link::Open { conn, liveness, .. } = &mut self.link else {
            return;
        };
        let conn = *conn;
        match liveness.on_timeout(&self.cfg.liveness, now) {
            LivenessAction::Nothing => {}
            LivenessAction::Ping => {
                self.write(conn, OutFrame::Ping(bytes::Bytes::new()), now);
            }
            LivenessAction::Dead => {
                tracing::warn!(%conn, "peer silent past the stale threshold; aborting");
                self.lost(
                    conn,
                    DisconnectReason::Stale,
                    CloseClass::RECONNECT,
                    Teardown::Abort,
                    now,
                );
            }
        }
    }

    fn fire_send_deadline(&mut self, now: Instant) {
        match self.link {
            Link::Open { conn, .. } => {
                tracing::warn!(%conn, "send deadline missed; aborting");
                self.lost(
                    conn,
                    DisconnectReason::SendDeadline,
                    CloseClass::RECONNECT,
                    Teardown::Abort,
                    now,
                );
            }
            Link::Handshaking { conn, .. } | Link::Opening { conn, .. } => self.attempt_failed(
                conn,
                AttemptError::SendDeadline,
                CloseClass::RECONNECT,
                Teardown::Abort,
                now,
            ),
            Link::Down => self.drop_unconfirmed(),
        }
    }
}

impl<P: Protocol> Timed for Session<P> {
    /// The earliest armed deadline and its kind.
    fn next_timer(&self) -> Option<(Instant, TimerKind)> {
        let mut e = Earliest::default();
        match &self.link {
            Link::Down => {}
            Link::Opening { deadline, .. } => e.offer(*deadline, TimerKind::ConnectTimeout),
            Link::Handshaking { deadline, .. } => {
                e.offer(*deadline, TimerKind::HandshakeTimeout);
            }
            Link::Open {
                liveness,
                stable_at,
                ..
            } => {
                e.offer(*stable_at, TimerKind::StableReset);
                if let Some((at, kind)) = liveness.next_deadline() {
                    e.offer(Some(at), kind);
                }
            }
        }
        e.offer(
            self.writes.next_deadline(self.cfg.send_deadline),
            TimerKind::SendDeadline,
        );
        e.offer(self.backoff_until, TimerKind::Backoff);
        e.offer(self.requests.next_deadline(), TimerKind::RequestTimeout);
        e.offer(
            self.closing.iter().map(|(_, t)| *t).min(),
            TimerKind::CloseTimeout,
        );
        // A dormant session (`Idle`) has nothing to close; its next use re-arms the timer.
        if !self.status.is_terminal()
            && self.status != Status::Idle
            && let (Some(idle), Some(last)) = (self.cfg.idle_timeout, self.last_activity)
        {
            e.offer(after(last, idle), TimerKind::Idle);
        }
        e.offer(
            self.streams.next_expiry(&self.cfg.streams),
            TimerKind::StreamExpiry,
        );
        e.offer(self.queue.next_expiry(), TimerKind::QueueExpiry);
        e.get()
    }

    /// `now` is far past the earliest deadline: the host slept, and so did the adapter.
    /// Evidence gathered before the sleep (silence, unreported writes) says nothing about
    /// the peer now, so an open connection is probed rather than condemned. Timers that do
    /// not judge the peer (requests, backoff, queue) fire as usual.
    fn clock_jumped(&mut self, overshoot: std::time::Duration, now: Instant) {
        let Link::Open { conn, liveness, .. } = &mut self.link else {
            return;
        };
        let conn = *conn;
        liveness.probe(&self.cfg.liveness, now);
        self.writes.rebase(now);
        self.stats.clock_jumps += 1;
        tracing::debug!(%conn, ?overshoot, "clock jump; probing the peer");
        self.emit(Event::ClockJump { overshoot });
        self.write(conn, OutFrame::Ping(bytes::Bytes::new()), now);
    }

    fn fire(&mut self, kind: TimerKind, now: Instant) {
        match kind {
            TimerKind::ConnectTimeout => {
                if let Link::Opening { conn, .. } = self.link {
                    self.attempt_failed(
                        conn,
                        AttemptError::ConnectTimeout,
                        self.cfg
                            .close_policy
                            .classify_kind(FailureKind::ConnectTimeout),
                        Teardown::Abort,
                        now,
                    );
                }
            }
            TimerKind::HandshakeTimeout => {
                if let Link::Handshaking { conn, .. } = self.link {
                    self.attempt_failed(
                        conn,
                        AttemptError::HandshakeTimeout,
                        self.cfg
                            .close_policy
                            .classify_kind(FailureKind::HandshakeTimeout),
                        Teardown::Close(CloseCode::NORMAL, "handshake timeout"),
                        now,
                    );
                }
            }
            TimerKind::Backoff => self.start_attempt(now),
            TimerKind::StableReset => {
                if let Link::Open { stable_at, .. } = &mut self.link {
                    *stable_at = None;
                    self.failures = 0;
                }
            }
            TimerKind::Ping | TimerKind::Liveness => self.fire_liveness(now),
            TimerKind::SendDeadline => self.fire_send_deadline(now),
            TimerKind::RequestTimeout => {
                // Every request due fires in this one firing, however many share the
                // deadline: a timer per request would exceed the firing limit.
                for id in self.requests.expired(now) {
                    self.resolve_request(id, Err(RequestFailure::Timeout), now);
                }
            }
            TimerKind::CloseTimeout => {
                let (due, keep): (Vec<_>, Vec<_>) =
                    self.closing.iter().partition(|(_, t)| *t <= now);
                self.closing = keep;
                for (conn, _) in due {
                    self.outputs.push_back(Output::AbortTransport { conn });
                }
            }
            TimerKind::Idle if self.cfg.lazy => {
                self.go_dormant(DisconnectReason::Idle, "idle", now);
            }
            TimerKind::Idle => {
                let how = Teardown::Close(CloseCode::NORMAL, "idle");
                self.shut(how, EndReason::Idle, now);
            }
            TimerKind::StreamExpiry => {
                for ev in self.streams.expire(&self.cfg.streams, now) {
                    self.stats.stream_events += 1;
                    self.emit(Event::Stream(ev));
                }
            }
            // Armed by the server role only.
            TimerKind::FirstMessage => {}
            TimerKind::QueueExpiry => {
                for owner in self.queue.take_expired(now) {
                    self.dropped_from_queue(owner, DropReason::Expired, now);
                }
            }
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
