//! Connections on the application's terms: lazy sessions that connect on first use and go
//! dormant when unused, and the `disconnect`, `resume` and `reconnect` commands.
//!
//! A dormant session is `Idle` with no link and no backoff: nothing is armed but the
//! timers that do not judge a connection (requests, queue and stream expiry). What is
//! sent meanwhile is queued under [`Config::offline`](crate::Config::offline).

use std::time::{Duration, Instant};

use super::{Link, Session, Teardown};
use crate::close::CloseCode;
use crate::error::{ConnectError, DisconnectReason};
use crate::event::{Event, Retry};
use crate::ids::ConnId;
use crate::protocol::Protocol;
use crate::status::Status;

impl<P: Protocol> Session<P> {
    /// Pauses the session without ending it (disconnects and stays disconnected): the connection (or the attempt under way)
    /// closes with 1000 "paused", no reconnect follows, and the session waits in
    /// [`Status::Idle`] until [`resume`](Self::resume) or [`reconnect`](Self::reconnect).
    /// As for a lost connection, requests written on it fail with
    /// [`RequestFailure::Disconnected`](crate::RequestFailure::Disconnected), its streams
    /// end and unconfirmed messages are reported dropped; what is queued stays queued
    /// (its TTL still runs). Disconnecting a paused session does nothing.
    ///
    /// # Errors
    ///
    /// [`ConnectError::Ended`] once the session has ended.
    pub fn disconnect(&mut self, now: Instant) -> Result<(), ConnectError> {
        let now = self.advance(now);
        if self.status.is_terminal() {
            return Err(ConnectError::Ended);
        }
        self.paused = true;
        if self.status != Status::Idle {
            self.go_dormant(DisconnectReason::Paused, "paused", now);
        }
        Ok(())
    }

    /// Resumes a [paused](Self::disconnect) session: a connection attempt starts at once (once
    /// [`connect`](Self::connect) was called; before that, `connect` will start it).
    /// A lazy session dormant after its idle timeout wakes the same way. Resuming a
    /// session that is connecting or open does nothing.
    ///
    /// # Errors
    ///
    /// [`ConnectError::Ended`] once the session has ended.
    pub fn resume(&mut self, now: Instant) -> Result<(), ConnectError> {
        let now = self.advance(now);
        if self.status.is_terminal() {
            return Err(ConnectError::Ended);
        }
        self.paused = false;
        if self.started && self.status == Status::Idle {
            self.begin(now);
        }
        Ok(())
    }

    /// Drops the current connection and dials again at once, without a backoff wait:
    /// for an application that knows the network changed. An open connection closes with
    /// 1000 "reconnect" and `Event::Disconnected` says [`DisconnectReason::Reconnect`]
    /// with a zero wait; an attempt under way is abandoned; a backoff wait is cut short;
    /// a paused or dormant session resumes. It counts as no failure: the backoff
    /// schedule stays where it was.
    ///
    /// # Errors
    ///
    /// [`ConnectError::Ended`] once the session has ended.
    pub fn reconnect(&mut self, now: Instant) -> Result<(), ConnectError> {
        let now = self.advance(now);
        if self.status.is_terminal() {
            return Err(ConnectError::Ended);
        }
        self.paused = false;
        self.started = true;
        if self.status == Status::Idle {
            self.begin(now);
            return Ok(());
        }
        if let Some(conn) = self.drop_link("reconnect", now) {
            self.emit(Event::Disconnected {
                conn,
                reason: DisconnectReason::Reconnect,
                retry: Some(Retry {
                    wait: Duration::ZERO,
                    failures: self.failures,
                    floor: None,
                }),
            });
        }
        self.set_status(if self.ever_opened {
            Status::Reconnecting
        } else {
            Status::Connecting
        });
        self.start_attempt(now);
        Ok(())
    }

    /// Starts attempting from `Idle`: the first connect, or a wake from dormancy.
    pub(super) fn begin(&mut self, now: Instant) {
        self.set_status(if self.ever_opened {
            Status::Reconnecting
        } else {
            Status::Connecting
        });
        self.start_attempt(now);
    }

    /// A lazy session used while dormant (or not yet connected) starts connecting.
    pub(super) fn wake_for_use(&mut self, now: Instant) {
        if self.cfg.lazy && self.started && !self.paused && self.status == Status::Idle {
            self.clock.floor.forget();
            self.begin(now);
        }
    }

    /// Closes the link and everything tied to it, and waits in `Idle`: `reason` goes to
    /// the application when an open connection closes, `close_reason` to the peer.
    pub(super) fn go_dormant(
        &mut self,
        reason: DisconnectReason,
        close_reason: &'static str,
        now: Instant,
    ) {
        if let Some(conn) = self.drop_link(close_reason, now) {
            self.emit(Event::Disconnected {
                conn,
                reason,
                retry: None,
            });
        }
        self.backoff_until = None;
        // A fresh start: the attempts before the pause say nothing about the next ones.
        self.failures = 0;
        self.set_status(Status::Idle);
    }

    /// Tears the current link down on this side's initiative, failing what depended on
    /// it as a lost connection does. Returns the connection if it was open (the only
    /// case the application was told of: an attempt had not opened yet).
    fn drop_link(&mut self, close_reason: &'static str, now: Instant) -> Option<ConnId> {
        let conn = self.link.conn()?;
        let (how, open) = match self.link {
            // No WebSocket yet: nothing to close politely.
            Link::Opening { .. } => (Teardown::Abort, false),
            Link::Handshaking { .. } => (Teardown::Close(CloseCode::NORMAL, close_reason), false),
            _ => (Teardown::Close(CloseCode::NORMAL, close_reason), true),
        };
        if open {
            self.stats.disconnects += 1;
        }
        self.leave(conn, how, now);
        open.then_some(conn)
    }
}
