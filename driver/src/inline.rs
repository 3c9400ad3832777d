//! A session driven by the application's own task: the same loop a [`Client`] spawns,
//! polled by the application instead, with no channel between them.
//!
//! A [`Client`] runs its session in a task of its own; every call crosses to it through
//! a command channel and every event comes back through a subscriber's mailbox, two
//! hand-offs between tasks per message. [`Inline`] is that loop handed to the
//! application: its calls reach the session at once (a send returns its verdict, not a
//! future), the events come out of [`Inline::poll_next`], and the sockets, timers and
//! reconnects advance while, and only while, the application polls it.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tether_core::{
    CloseCode, Config, Event, MessageId, RequestError, RequestId, SendError, Status,
};

use crate::client::{assemble, session_span};
use crate::error::ConnectError;
use crate::record::Options;
use crate::runtime::Runtime;
use crate::send_protocol::SendProtocol;
use crate::shared::{Control, lock};
use crate::task::{Driver, Front};
use crate::transport::Transport;
use crate::update::Update;

/// A session the application drives from its own task: the fastest way to run one, and
/// the one to choose when a single task owns the session anyway.
///
/// Calls act at once: [`send`](Self::send) returns the session's verdict and
/// [`request`](Self::request) the request's id, and what they write goes out the next time
/// the session is polled, in one batch with everything else written since. Events,
/// responses and stream events included (an [`Event::Response`] resolves each request),
/// come from the [`Stream`] implementation (or [`next_event`](Self::next_event)); the
/// stream ends once the session has ended and its last connection has finished closing.
///
/// **The session lives while it is polled.** Reading, writing, pings, timeouts and
/// reconnects all happen inside [`poll_next`](Self::poll_next) (and
/// [`flush`](Self::flush)): an application that stops polling stops its session, and a
/// peer that expects pings will drop it. Poll it in a loop, or in a `select!` beside the
/// application's other sources, as one polls a socket. While events are waiting to be
/// taken, nothing more is read, so they never outgrow one read batch (the session's
/// subscriber byte budget, [`SUBSCRIBER_BYTES`](crate::SUBSCRIBER_BYTES) by default).
///
/// Dropping it drops its connection without a close handshake; for a clean close, call
/// [`close`](Self::close) and poll until the stream ends.
///
/// Use a [`Client`](crate::Client) instead when several tasks share the session, or when
/// it must stay alive while the application is busy elsewhere.
///
/// ```no_run
/// # async fn demo<R: tether_driver::Runtime>(runtime: R, transport: impl tether_driver::Transport)
/// # -> Result<(), Box<dyn std::error::Error>> {
/// use futures::StreamExt;
/// use tether_driver::Inline;
/// use tether_driver::tether_core::{Config, DataFrame, Event, profiles::Raw};
///
/// let mut session = Inline::start(runtime, transport, Config::default(), Raw, 7, "demo")?;
/// session.send(DataFrame::Text("hello".into()))?; // queued until the session opens
/// while let Some(event) = session.next().await {
///     match event {
///         Event::Message(DataFrame::Text(text)) => {
///             session.send(DataFrame::Text(text))?; // an echo, written on the next poll
///         }
///         Event::Ended(reason) => println!("ended: {reason:?}"),
///         _ => {}
///     }
/// }
/// # Ok(()) }
/// ```
pub struct Inline<P: SendProtocol, R: Runtime> {
    driver: Driver<P, R>,
    /// The loop has nothing left to do: the stream ends once its events are taken.
    done: bool,
    span: tracing::Span,
}

// Nothing in it is pinned: the loop is polled through `&mut` (its futures are boxed), so
// the stream can be polled wherever it lives, whatever the protocol and runtime types.
impl<P: SendProtocol, R: Runtime> Unpin for Inline<P, R> {}

impl<P: SendProtocol, R: Runtime> std::fmt::Debug for Inline<P, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inline")
            .field("status", &self.driver.session.status())
            .finish_non_exhaustive()
    }
}

impl<P: SendProtocol, R: Runtime> Inline<P, R> {
    /// Starts a session on `runtime` over `transport`: it begins connecting (a
    /// [lazy](Config::lazy) session waits for its first send or request) and makes progress
    /// as it is polled. `label` names the tracing span (use the redacted URL).
    ///
    /// # Errors
    ///
    /// [`ConnectError::Config`] for an invalid configuration.
    pub fn start(
        runtime: R,
        transport: impl Transport,
        config: Config,
        protocol: P,
        seed: u64,
        label: &str,
    ) -> Result<Self, ConnectError> {
        Self::start_with(
            runtime,
            transport,
            config,
            protocol,
            seed,
            label,
            Options::default(),
        )
    }

    /// [`start`](Self::start) with [`Options`]: a flight recorder, the event byte budget.
    ///
    /// # Errors
    ///
    /// [`ConnectError::Config`] for an invalid configuration.
    pub fn start_with(
        runtime: R,
        transport: impl Transport,
        config: Config,
        protocol: P,
        seed: u64,
        label: &str,
        options: Options<P>,
    ) -> Result<Self, ConnectError> {
        let mut driver = assemble(
            runtime,
            transport,
            config,
            protocol,
            seed,
            options,
            Front::Inline,
        )?;
        let span = session_span(label);
        {
            let _entered = span.enter();
            driver.connect();
            driver.drain();
        }
        Ok(Inline {
            driver,
            done: false,
            span,
        })
    }

    /// Runs `f` on the session at the current time, then hands what it decided to the
    /// connections (written on the next poll).
    fn call<T>(&mut self, f: impl FnOnce(&mut Driver<P, R>, std::time::Instant) -> T) -> T {
        let _entered = self.span.enter();
        let now = self.driver.tick();
        let out = f(&mut self.driver, now);
        self.driver.drain();
        out
    }

    /// Sends a message: queued while disconnected, written on the next poll when open.
    ///
    /// # Errors
    ///
    /// The session's refusal ([`SendError`]): nothing was queued or written then.
    pub fn send(&mut self, message: P::Outbound) -> Result<MessageId, SendError> {
        self.call(|d, now| d.session.send(message, None, now))
    }

    /// [`send`](Self::send) with a queue TTL of its own.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    pub fn send_with_ttl(
        &mut self,
        message: P::Outbound,
        ttl: Duration,
    ) -> Result<MessageId, SendError> {
        self.call(|d, now| d.session.send(message, Some(ttl), now))
    }

    /// Sends a request with the configured timeout and returns its id at once. The
    /// request is resolved exactly once, by an [`Event::Response`] with this id; its
    /// stream's events, if it started one, come as [`Event::Stream`] events.
    ///
    /// # Errors
    ///
    /// The session's refusal ([`RequestError`]): nothing was written or registered then.
    pub fn request(&mut self, request: P::Request) -> Result<RequestId, RequestError> {
        self.call(|d, now| d.session.request(request, None, now))
    }

    /// [`request`](Self::request) with a timeout of its own.
    ///
    /// # Errors
    ///
    /// As [`request`](Self::request).
    pub fn request_with_timeout(
        &mut self,
        request: P::Request,
        timeout: Duration,
    ) -> Result<RequestId, RequestError> {
        self.call(|d, now| d.session.request(request, Some(timeout), now))
    }

    /// Closes the session with `1000 Normal`: the stream ends once the close handshake is
    /// done (or its timeout has passed). Idempotent.
    pub fn close(&mut self) {
        self.close_with(CloseCode::NORMAL, "");
    }

    /// Closes the session with a code and reason of the application's choosing.
    pub fn close_with(&mut self, code: CloseCode, reason: &'static str) {
        self.call(|d, now| d.session.close(code, reason, now));
    }

    /// Ends the session at once: connections are dropped without a close handshake.
    pub fn terminate(&mut self) {
        self.call(|d, _| d.control(Control::Terminate));
    }

    /// Drops the connection and stays disconnected until [`resume`](Self::resume) or
    /// [`reconnect`](Self::reconnect); sends queue meanwhile.
    pub fn disconnect(&mut self) {
        self.call(|d, _| d.control(Control::Disconnect));
    }

    /// Connects again after [`disconnect`](Self::disconnect) (or while waiting to retry).
    pub fn resume(&mut self) {
        self.call(|d, _| d.control(Control::Resume));
    }

    /// Drops the current connection and connects again at once.
    pub fn reconnect(&mut self) {
        self.call(|d, _| d.control(Control::Reconnect));
    }

    /// The session's status now.
    pub fn status(&self) -> Status {
        self.driver.session.status()
    }

    /// The subprotocol the server chose on the connection that opened last.
    pub fn subprotocol(&self) -> Option<String> {
        lock(&self.driver.shared.subprotocol).clone()
    }

    /// Messages and requests waiting in the session's offline queue.
    pub fn queued(&self) -> usize {
        self.driver.session.queued()
    }

    /// How long since the peer was last heard from (zero before any connection).
    pub fn idle(&self) -> Duration {
        let now = self.driver.rt.now();
        self.driver
            .session
            .last_activity()
            .map_or(Duration::ZERO, |last| now.saturating_duration_since(last))
    }

    /// The next event; `None` once the session has ended and its connections are done.
    /// Drives the session while it waits (see [`Inline`]).
    pub async fn next_event(&mut self) -> Option<Event<P>> {
        futures::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    /// Drives the session until everything handed to the open connection has been
    /// written and flushed, without taking events (they wait, and reading stops while
    /// they do). Messages queued while disconnected wait for the next connection; a
    /// write that stalls past the send deadline drops the connection, which ends the
    /// wait.
    pub async fn flush(&mut self) {
        futures::future::poll_fn(|cx| self.poll_flush(cx)).await;
    }

    /// The poll behind [`flush`](Self::flush).
    pub fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let _entered = self.span.enter();
        if self.done || self.driver.is_written() {
            return Poll::Ready(());
        }
        if self.driver.poll(cx).is_ready() {
            self.done = true;
        }
        if self.done || self.driver.is_written() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl<P: SendProtocol, R: Runtime> Stream for Inline<P, R> {
    type Item = Event<P>;

    /// Takes the next event, driving the session (its sockets, timers and reconnects)
    /// while there is none.
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event<P>>> {
        let this = self.get_mut();
        let _entered = this.span.enter();
        loop {
            while let Some(update) = this.driver.published.pop_front() {
                if let Update::Event(event) = update {
                    return Poll::Ready(Some(event));
                }
                // A status change: the application reads `status()` when it cares.
            }
            if this.done {
                return Poll::Ready(None);
            }
            match this.driver.poll(cx) {
                Poll::Ready(()) => this.done = true,
                // Reading stops while events wait; with none left, every source has
                // registered the waker (or the loop woke itself to yield).
                Poll::Pending if this.driver.published.is_empty() => return Poll::Pending,
                // Status changes alone: take them, and let reading go on.
                Poll::Pending => {}
            }
        }
    }
}

#[cfg(test)]
#[path = "inline_tests.rs"]
mod tests;
