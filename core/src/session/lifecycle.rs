//! Connection lifecycle: attempts, handshake completion, losses, retries and the end.

use std::time::{Duration, Instant};

use super::{Link, Session, Teardown};
use crate::close::{CloseClass, CloseCode};
use crate::error::Violation;
use crate::error::{AttemptError, DisconnectReason, RequestFailure, SessionError};
use crate::event::{DropReason, EndReason, Event, Output, Retry, StreamEnd};
use crate::ids::{ConnId, RequestId};
use crate::liveness::Liveness;
use crate::protocol::{Acked, Protocol};
use crate::queue::Queued;
use crate::resume::{MAX_RESUME_TOKEN, Recovery};
use crate::status::Status;
use crate::timer::{after, saturating_after};

impl<P: Protocol> Session<P> {
    pub(super) fn start_attempt(&mut self, now: Instant) {
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        self.attempt = self.failures.saturating_add(1);
        self.stats.attempts += 1;
        self.backoff_until = None;
        self.link = Link::Opening {
            conn,
            deadline: after(now, self.cfg.connect_timeout),
        };
        tracing::debug!(%conn, attempt = self.attempt, "connecting");
        self.outputs.push_back(Output::OpenTransport {
            conn,
            attempt: self.attempt,
        });
    }

    pub(super) fn teardown(&mut self, conn: ConnId, how: Teardown, now: Instant) {
        match how {
            Teardown::Gone => {}
            Teardown::Abort => self.outputs.push_back(Output::AbortTransport { conn }),
            Teardown::Close(code, reason) => {
                self.outputs.push_back(Output::CloseTransport {
                    conn,
                    code,
                    reason: reason.to_owned(),
                });
                // A close that cannot wait (the clock's range ends first) aborts at the
                // end of that range: it is waited for once, not re-armed.
                let deadline = saturating_after(now, self.cfg.close_timeout);
                self.closing.push((conn, deadline));
            }
        }
    }

    /// The handshake of `conn` is acknowledged.
    pub(super) fn opened(&mut self, conn: ConnId, acked: Acked, now: Instant) {
        if let Some(token) = acked.resume_token.clone() {
            if token.len() <= MAX_RESUME_TOKEN {
                self.resume_token = Some(token);
            } else {
                // Not kept: the session holds at most the bound for it.
                self.violation(
                    conn,
                    Violation::Malformed {
                        detail: format!(
                            "resume token of {} bytes, over {MAX_RESUME_TOKEN}",
                            token.len()
                        ),
                    },
                );
            }
        }
        let mut liveness = Liveness::new(&self.cfg.liveness, now);
        if let Some(hb) = acked.heartbeat {
            liveness.set_heartbeat(&self.cfg.liveness, hb);
        }
        self.link = Link::Open {
            conn,
            liveness,
            // Beyond the clock's range (only when `now` is near its end) the counter never
            // resets; `None` then reads as stable, which at worst spares one attempt.
            stable_at: after(now, self.cfg.backoff.stable_after),
        };
        let first = !self.ever_opened;
        self.ever_opened = true;
        self.stats.opens += 1;
        tracing::debug!(%conn, attempt = self.attempt, "open");
        self.set_status(Status::Open);
        self.emit(Event::Opened {
            conn,
            attempt: self.attempt,
            first,
        });
        self.resume_streams(conn, acked.recovery, now);
        // Requests lost with the last connection go first: they were sent before anything
        // queued since. One that resolved meanwhile (its timeout) is skipped.
        for id in std::mem::take(&mut self.retrying) {
            if let Some(frame) = self.requests.resend_frame(id) {
                self.write(conn, frame, now);
                self.requests.mark_sent(id, conn);
            }
        }
        while let Some(entry) = self.queue.pop() {
            match entry.owner {
                Queued::Request(id) => {
                    self.write(conn, entry.frame, now);
                    self.requests.mark_sent(id, conn);
                }
                // The message keeps its id in flight: if this connection goes before the
                // write is confirmed, the loss is reported under the id `send` returned.
                Queued::Message(id) => {
                    self.write_message(conn, entry.frame, id, now);
                }
            }
        }
    }

    /// An attempt (`Opening` or `Handshaking`) failed.
    pub(super) fn attempt_failed(
        &mut self,
        conn: ConnId,
        error: AttemptError,
        class: CloseClass,
        how: Teardown,
        now: Instant,
    ) {
        tracing::debug!(%conn, attempt = self.attempt, %error, "attempt failed");
        self.teardown(conn, how, now);
        self.link = Link::Down;
        self.drop_unconfirmed();
        self.fail_sent_on(conn, now);
        let floor = match class {
            CloseClass::Fatal => {
                self.give_up(conn, error.clone(), SessionError::FatalAttempt(error), now);
                return;
            }
            CloseClass::Reconnect { min_delay } => min_delay,
            // A close before the handshake completed is a failed attempt, whatever its
            // code says about an established connection.
            CloseClass::Normal => None,
        };
        if !self.ever_opened && !self.cfg.retry_first_connect {
            self.give_up(conn, error.clone(), SessionError::FirstConnect(error), now);
            return;
        }
        match self.schedule_retry(floor, true, now) {
            Some(retry) => self.emit(Event::AttemptFailed {
                conn,
                attempt: self.attempt,
                error,
                retry: Some(retry),
            }),
            None => {
                let attempts = self.failures;
                self.give_up(
                    conn,
                    error.clone(),
                    SessionError::AttemptsExhausted {
                        attempts,
                        last: error,
                    },
                    now,
                );
            }
        }
    }

    fn give_up(&mut self, conn: ConnId, error: AttemptError, why: SessionError, now: Instant) {
        self.emit(Event::AttemptFailed {
            conn,
            attempt: self.attempt,
            error,
            retry: None,
        });
        self.end(EndReason::Failed(why), now);
    }

    /// An open connection was lost.
    pub(super) fn lost(
        &mut self,
        conn: ConnId,
        reason: DisconnectReason,
        class: CloseClass,
        how: Teardown,
        now: Instant,
    ) {
        let stable = matches!(
            self.link,
            Link::Open {
                stable_at: None,
                ..
            }
        );
        tracing::debug!(%conn, ?reason, "connection lost");
        self.stats.disconnects += 1;
        self.leave(conn, how, now);
        let (code, text) = match &reason {
            DisconnectReason::Closed { code, reason } => {
                (code.unwrap_or(CloseCode::ABNORMAL), reason.clone())
            }
            // The close this side failed the connection with.
            DisconnectReason::ProtocolError(v) => (v.close_code(), v.close_reason().to_owned()),
            _ => (CloseCode::ABNORMAL, String::new()),
        };
        match class {
            CloseClass::Normal => {
                self.emit(Event::Disconnected {
                    conn,
                    reason,
                    retry: None,
                });
                self.end(EndReason::ClosedByPeer { code, reason: text }, now);
            }
            CloseClass::Fatal => {
                self.emit(Event::Disconnected {
                    conn,
                    reason,
                    retry: None,
                });
                let why = SessionError::FatalClose { code, reason: text };
                self.end(EndReason::Failed(why), now);
            }
            CloseClass::Reconnect { min_delay } => {
                // Losing a connection that never became stable counts against the attempt
                // limit: accept-then-close must not loop for ever.
                let retry = self.schedule_retry(min_delay, !stable, now);
                self.emit(Event::Disconnected {
                    conn,
                    reason: reason.clone(),
                    retry,
                });
                if retry.is_none() {
                    let why = SessionError::AttemptsExhausted {
                        attempts: self.failures,
                        last: AttemptError::Disconnected(reason),
                    };
                    self.end(EndReason::Failed(why), now);
                }
            }
        }
    }

    /// Tears `conn` down and lets go of what depended on it, as for a lost connection:
    /// unconfirmed messages are reported dropped, streams that are not resumable end
    /// `Disconnected` (resumable ones wait for the next connection), and requests written
    /// on it fail or, if idempotent, wait to be written again.
    pub(super) fn leave(&mut self, conn: ConnId, how: Teardown, now: Instant) {
        self.teardown(conn, how, now);
        self.link = Link::Down;
        self.drop_unconfirmed();
        let ended = self
            .streams
            .end_unresumable(&self.cfg.streams, StreamEnd::Disconnected, now);
        for ev in ended {
            self.stats.stream_events += 1;
            self.emit(Event::Stream(ev));
        }
        self.fail_sent_on(conn, now);
    }

    /// Forgets the writes of the connection that just went and reports every application
    /// message among them as [`DropReason::Disconnected`]: its write was never confirmed,
    /// so the session cannot say it was delivered, and it does not resend it (the peer may
    /// have received it; resending could deliver it twice).
    pub(super) fn drop_unconfirmed(&mut self) {
        for id in self.writes.take_messages() {
            self.stats.messages_dropped += 1;
            self.emit(Event::MessageDropped {
                id,
                reason: DropReason::Disconnected,
            });
        }
    }

    /// Counts a failure and arms the backoff; `None` when the attempt limit is reached.
    fn schedule_retry(
        &mut self,
        floor: Option<Duration>,
        counts: bool,
        now: Instant,
    ) -> Option<Retry> {
        self.failures = self.failures.saturating_add(1);
        if counts
            && self
                .cfg
                .backoff
                .max_attempts
                .is_some_and(|m| self.failures >= m)
        {
            return None;
        }
        // The peer's floor is capped here, so the `Retry` reported is the one applied.
        let floor = self.cfg.backoff.capped_floor(floor);
        let wait = self.cfg.backoff.draw(self.failures, floor, &mut self.rng);
        self.backoff_until = after(now, wait);
        self.set_status(if self.ever_opened {
            Status::Reconnecting
        } else {
            Status::Connecting
        });
        Some(Retry {
            wait,
            failures: self.failures,
            floor,
        })
    }

    /// Fails the requests written on `conn` (their responses can no longer arrive),
    /// except idempotent ones with retries left: those are written again on the next
    /// connection.
    pub(super) fn fail_sent_on(&mut self, conn: ConnId, now: Instant) {
        for id in self.requests.sent_on(conn) {
            if self.requests.take_retry(id).is_some() {
                tracing::debug!(request = %id, %conn, "idempotent request to be sent again");
                self.retrying.push(id);
            } else {
                self.resolve_request(id, Err(RequestFailure::Disconnected), now);
            }
        }
    }

    /// Resolves a request exactly once; `false` if it was already resolved.
    pub(super) fn resolve_request(
        &mut self,
        id: RequestId,
        result: Result<P::Response, RequestFailure<P::RemoteError>>,
        now: Instant,
    ) -> bool {
        let Some(pending) = self.requests.take(id) else {
            return false;
        };
        if pending.sent_on.is_none() {
            self.queue.remove_request(id);
        }
        match &result {
            Ok(resp) => {
                self.stats.requests_ok += 1;
                // Events for the stream may come under the id the response names (a run
                // id for an idempotency key): route them to the request's stream. If that
                // stream has already ended (its terminal came before the response), the
                // alias is not registered: a new stream under it would end a second time.
                if let (Some(key), Some(alias)) =
                    (&pending.stream, self.protocol.response_stream(resp))
                {
                    self.streams.alias(key, alias);
                }
            }
            Err(failure) => {
                match failure {
                    RequestFailure::Remote(_) => self.stats.requests_remote_error += 1,
                    RequestFailure::Timeout => self.stats.requests_timed_out += 1,
                    RequestFailure::Disconnected => self.stats.requests_disconnected += 1,
                    _ => self.stats.requests_aborted += 1,
                }
                // A resumable stream outlives the connection its request was lost with.
                let keep = matches!(failure, RequestFailure::Disconnected)
                    && pending
                        .stream
                        .as_ref()
                        .is_some_and(|key| self.streams.is_resumable(key));
                if let Some(key) = &pending.stream
                    && !keep
                    && let Some(ev) =
                        self.streams
                            .end(&self.cfg.streams, key, StreamEnd::RequestFailed, now)
                {
                    self.stats.stream_events += 1;
                    self.emit(Event::Stream(ev));
                }
            }
        }
        self.emit(Event::Response { id, result });
        true
    }

    /// Ends the session. The caller has already torn the transport down.
    pub(super) fn end(&mut self, reason: EndReason, now: Instant) {
        let failed = matches!(reason, EndReason::Failed(_));
        tracing::debug!(?reason, "session ended");
        self.link = Link::Down;
        self.backoff_until = None;
        self.drop_unconfirmed();
        self.set_status(if failed {
            Status::Failed
        } else {
            Status::Closed
        });
        let ended = self
            .streams
            .end_all(&self.cfg.streams, StreamEnd::SessionEnded, now);
        for ev in ended {
            self.stats.stream_events += 1;
            self.emit(Event::Stream(ev));
        }
        let failure = if failed {
            RequestFailure::Failed
        } else {
            RequestFailure::Closed
        };
        self.retrying.clear();
        for id in self.requests.ids() {
            self.resolve_request(id, Err(failure.clone()), now);
        }
        while let Some(entry) = self.queue.pop() {
            if let Queued::Message(id) = entry.owner {
                self.stats.messages_dropped += 1;
                self.emit(Event::MessageDropped {
                    id,
                    reason: DropReason::Ended,
                });
            }
        }
        self.streams.clear();
        self.emit(Event::Ended(reason));
    }

    /// Carries the resumable streams into connection `conn`: ended as unrecoverable if
    /// the server said so, otherwise each standing subscription the protocol rebuilds is
    /// written (before anything queued).
    fn resume_streams(&mut self, conn: ConnId, recovery: Recovery, now: Instant) {
        if recovery == Recovery::Unrecoverable {
            let ended =
                self.streams
                    .end_resumable(&self.cfg.streams, StreamEnd::Unrecoverable, now);
            for ev in ended {
                self.stats.stream_events += 1;
                self.emit(Event::Stream(ev));
            }
            return;
        }
        for (key, seq) in self.streams.positions() {
            match self.protocol.resubscribe(&key, seq) {
                Ok(Some(frame)) => {
                    self.write(conn, frame, now);
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(stream = %key, error = %e, "resubscription not built");
                    if let Some(ev) =
                        self.streams
                            .end(&self.cfg.streams, &key, StreamEnd::Unrecoverable, now)
                    {
                        self.stats.stream_events += 1;
                        self.emit(Event::Stream(ev));
                    }
                }
            }
        }
    }
}
