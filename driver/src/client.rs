//! The application's handle on a running session.

use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use futures::channel::{mpsc, oneshot};
use tether_core::{
    CloseCode, Config, EndReason, Event, MessageId, Protocol, RequestId, SendError, Session, Status,
};

use crate::error::{CallError, ConnectError};
use crate::mailbox::Mailbox;
use crate::record::Options;
use crate::runtime::Runtime;
use crate::shared::{
    CMD_CAPACITY, Cmd, Control, Outcome, STREAM_CAPACITY, SUBSCRIBER_CAPACITY, Shared, lock,
};
use crate::stream_events::{self, StreamEvents};
use crate::task::{Driver, Front};
use crate::transport::Transport;
use crate::update::Update;

/// A request that started a stream: its id, its response and its events.
pub struct StreamCall<P: Protocol> {
    /// The request's id.
    pub id: RequestId,
    response: Outcome<P>,
    /// The stream's events, ending after its terminal event. A consumer that falls
    /// [`STREAM_CAPACITY`] events behind, or holds more than the session's subscriber
    /// byte budget ([`Options::subscriber_bytes`](crate::record::Options::subscriber_bytes),
    /// [`SUBSCRIBER_BYTES`](crate::SUBSCRIBER_BYTES) by default: each event counts the bytes of the frame that
    /// produced it and the text it carries) gets, as its last item, an event of kind
    /// `StreamEventKind::Ended(StreamEnd::Lagged)` and misses the rest of the stream (the
    /// session goes on; the events still reach [`Client::events`]). For a request that
    /// started no stream, it ends at once.
    pub events: StreamEvents<P::Inbound>,
}

impl<P: Protocol> StreamCall<P> {
    /// Waits for the request's response (the stream may already be flowing).
    ///
    /// # Errors
    ///
    /// The request's failure, or [`CallError::Stopped`].
    pub async fn response(&mut self) -> Result<P::Response, CallError<P::RemoteError>> {
        (&mut self.response)
            .await
            .unwrap_or(Err(CallError::Stopped))
    }
}

/// A running session. Cheap to clone; every clone drives the same session. The session
/// closes when the last clone is dropped.
pub struct Client<P: Protocol> {
    cmds: crate::cmd_channel::CmdSender<Cmd<P>>,
    control: mpsc::UnboundedSender<Control>,
    shared: Arc<Shared<P>>,
}

impl<P: Protocol> Clone for Client<P> {
    fn clone(&self) -> Self {
        Client {
            cmds: self.cmds.clone(),
            control: self.control.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<P: Protocol> std::fmt::Debug for Client<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = *lock(&self.shared.status);
        f.debug_struct("Client")
            .field("status", &status)
            .finish_non_exhaustive()
    }
}

impl<P: crate::send_protocol::SendProtocol> Client<P> {
    /// Starts a session on `runtime` over `transport` and waits for the first connect's
    /// outcome. Later reconnects happen by themselves. A [lazy](Config::lazy) session
    /// returns at once: it connects on first use.
    ///
    /// # Errors
    ///
    /// [`ConnectError::Config`] for an invalid configuration, [`ConnectError::Ended`] when
    /// the session ended before it opened.
    pub async fn connect<R: Runtime>(
        runtime: R,
        transport: impl Transport,
        config: Config,
        protocol: P,
        seed: u64,
    ) -> Result<Self, ConnectError> {
        let lazy = config.lazy;
        let client = Self::start(runtime, transport, config, protocol, seed, "session")?;
        if !lazy {
            client
                .wait_open()
                .await
                .map_err(|reason| ConnectError::Ended {
                    target: "the transport".into(),
                    reason,
                })?;
        }
        Ok(client)
    }

    /// Starts a session without waiting for it to open. `label` names the tracing span
    /// (use the redacted URL).
    ///
    /// # Errors
    ///
    /// [`ConnectError::Config`] for an invalid configuration.
    pub fn start<R: Runtime>(
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

    /// [`start`](Self::start) with [`Options`]: a flight recorder
    /// ([`Options::record`], see `docs/recording.md`).
    ///
    /// ```no_run
    /// # fn demo<R: tether_driver::Runtime>(runtime: R, transport: impl tether_driver::Transport)
    /// # -> Result<(), Box<dyn std::error::Error>> {
    /// use tether_driver::Client;
    /// use tether_driver::record::{Options, Recorder};
    /// use tether_driver::tether_core::{Config, profiles::Raw};
    ///
    /// let trace = std::fs::File::create("session.trace.jsonl")?;
    /// let options = Options::new().record(Recorder::to_writer(trace));
    /// let client = Client::start_with(runtime, transport, Config::default(), Raw, 7, "demo", options)?;
    /// # let _ = client; Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConnectError::Config`] for an invalid configuration.
    pub fn start_with<R: Runtime>(
        runtime: R,
        transport: impl Transport,
        config: Config,
        protocol: P,
        seed: u64,
        label: &str,
        options: Options<P>,
    ) -> Result<Self, ConnectError> {
        let (cmds_tx, cmds_rx) = crate::cmd_channel::bounded(CMD_CAPACITY);
        let (control_tx, control_rx) = mpsc::unbounded();
        let front = Front::Handles {
            cmds: cmds_rx,
            control: control_rx,
        };
        let driver = assemble(
            runtime.clone(),
            transport,
            config,
            protocol,
            seed,
            options,
            front,
        )?;
        let shared = driver.shared.clone();
        runtime.spawn(Box::pin(tracing::Instrument::instrument(
            driver.run(),
            session_span(label),
        )));
        Ok(Client {
            cmds: cmds_tx,
            control: control_tx,
            shared,
        })
    }

    /// Waits until the session is open. Concurrent callers share one handshake.
    ///
    /// # Errors
    ///
    /// How the session ended, if it ended before opening (or has ended since).
    pub async fn wait_open(&self) -> Result<(), EndReason> {
        let (tx, rx) = oneshot::channel();
        if self.control.unbounded_send(Control::WaitOpen(tx)).is_err() {
            return Err(EndReason::ClosedByUser);
        }
        rx.await.unwrap_or(Err(EndReason::ClosedByUser))
    }

    /// Sends a message: written at once when open, otherwise queued or refused per the
    /// configuration.
    ///
    /// # Errors
    ///
    /// The session's [`SendError`]; [`SendError::Ended`] when the loop is gone.
    pub async fn send(&self, message: P::Outbound) -> Result<MessageId, SendError> {
        let (tx, rx) = oneshot::channel();
        if self.cmds.send(Cmd::Send(message, None, tx)).await.is_err() {
            return Err(SendError::Ended);
        }
        rx.await.unwrap_or(Err(SendError::Ended))
    }

    /// [`send`](Self::send) with a time-to-live of the message's own: queued while the
    /// session is not open, it is dropped after `ttl` (reported as
    /// [`Event::MessageDropped`] with `Expired`) instead of after the queue's TTL. For
    /// what is stale soon (a cursor position, a typing indicator). See
    /// [`Session::send_with_ttl`](tether_core::Session::send_with_ttl).
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    pub async fn send_with_ttl(
        &self,
        message: P::Outbound,
        ttl: Duration,
    ) -> Result<MessageId, SendError> {
        let (tx, rx) = oneshot::channel();
        if self
            .cmds
            .send(Cmd::Send(message, Some(ttl), tx))
            .await
            .is_err()
        {
            return Err(SendError::Ended);
        }
        rx.await.unwrap_or(Err(SendError::Ended))
    }

    /// Hands a message to the session without waiting for its verdict: the way to keep
    /// many messages in flight from one task. It waits only while the session loop has
    /// [`CMD_CAPACITY`] commands unread, which pushes back on a sender that outruns the
    /// socket. A message the session refuses (not open and configured to reject, queue
    /// full, too many writes pending, …) is reported as [`Event::SendRefused`], in order
    /// with the other events; a message it accepts is then exactly like one from
    /// [`send`](Self::send).
    ///
    /// # Errors
    ///
    /// [`SendError::Ended`] when the session loop is gone.
    pub async fn feed(&self, message: P::Outbound) -> Result<(), SendError> {
        self.cmds
            .send(Cmd::Feed(message))
            .await
            .map_err(|_| SendError::Ended)
    }

    /// Sends a request and waits for its outcome (the configured request timeout applies).
    ///
    /// # Errors
    ///
    /// A [`CallError`]: refused at once, or failed (remote error, timeout, disconnect, …).
    pub async fn request(
        &self,
        request: P::Request,
    ) -> Result<P::Response, CallError<P::RemoteError>> {
        self.call(request, None).await
    }

    /// [`request`](Self::request) with its own timeout instead of
    /// [`Config::request_timeout`]. A zero timeout is refused
    /// ([`RequestError::ZeroTimeout`](tether_core::RequestError::ZeroTimeout)), as
    /// `Config` refuses one. One so long that the deadline lies beyond what `Instant` can
    /// represent (such as `Duration::MAX`) means no deadline, as for
    /// [`Session::request`](tether_core::Session::request); the call then ends with the
    /// response, the connection's loss or the session's end.
    ///
    /// # Errors
    ///
    /// See [`request`](Self::request).
    pub async fn request_with_timeout(
        &self,
        request: P::Request,
        timeout: Duration,
    ) -> Result<P::Response, CallError<P::RemoteError>> {
        self.call(request, Some(timeout)).await
    }

    async fn call(
        &self,
        request: P::Request,
        timeout: Option<Duration>,
    ) -> Result<P::Response, CallError<P::RemoteError>> {
        let (reply_tx, reply) = oneshot::channel();
        let cmd = Cmd::Request {
            request,
            timeout,
            accepted: None,
            reply: reply_tx,
            events: None,
        };
        if self.cmds.send(cmd).await.is_err() {
            return Err(CallError::Stopped);
        }
        reply.await.unwrap_or(Err(CallError::Stopped))
    }

    /// Sends a request that starts a stream and returns at once with its events. If the
    /// protocol says the request starts no stream, [`StreamCall::events`] ends at once and
    /// only [`StreamCall::response`] is of interest. `timeout` is the request's own (see
    /// [`request_with_timeout`](Self::request_with_timeout)); `None`, the configured one.
    ///
    /// # Errors
    ///
    /// [`CallError::Refused`] when the session refused the request.
    pub async fn stream(
        &self,
        request: P::Request,
        timeout: Option<Duration>,
    ) -> Result<StreamCall<P>, CallError<P::RemoteError>> {
        let (events_tx, events) =
            stream_events::channel(STREAM_CAPACITY, self.shared.subscriber_bytes);
        let (accepted_tx, accepted) = oneshot::channel();
        let (reply_tx, mut response) = oneshot::channel();
        let cmd = Cmd::Request {
            request,
            timeout,
            accepted: Some(accepted_tx),
            reply: reply_tx,
            events: Some(events_tx),
        };
        if self.cmds.send(cmd).await.is_err() {
            return Err(CallError::Stopped);
        }
        match accepted.await {
            Ok(id) => Ok(StreamCall {
                id,
                response,
                events,
            }),
            // Not accepted: the refusal is the reply.
            Err(_) => Err(match (&mut response).await {
                Ok(Err(e)) => e,
                _ => CallError::Stopped,
            }),
        }
    }

    /// The subprotocol the server selected on the connection that opened last (`None`
    /// when it selected none of those offered, or before the first open). It is set
    /// before that open's [`Status::Open`] and `Opened` event are published.
    pub fn subprotocol(&self) -> Option<String> {
        lock(&self.shared.subprotocol).clone()
    }

    /// The current status.
    pub fn status(&self) -> Status {
        *lock(&self.shared.status)
    }

    /// Every status change from now on, in order, none skipped; the stream ends after the
    /// session loop is gone. Like [`events`](Self::events), a subscriber
    /// [`SUBSCRIBER_CAPACITY`] changes behind holds the session back (no reading, no
    /// commands, no timers) until it catches up, so drop a stream you no longer read.
    pub fn status_changes(&self) -> impl Stream<Item = Status> + Send + use<P> {
        // Status changes carry no frame: counted, never charged bytes.
        let (mailbox, subscription) = Mailbox::pair(SUBSCRIBER_CAPACITY, usize::MAX);
        lock(&self.shared.statuses).push(mailbox);
        subscription
    }

    /// Every session event from now on (messages, responses, stream events, violations,
    /// lifecycle), none missed. A subscriber [`SUBSCRIBER_CAPACITY`] events behind holds
    /// the session's sources back until it catches up: no reading from the socket, no
    /// timers (while the session is not over), and no new commands while its unread
    /// events plus the responses owed to the requests in flight reach the capacity. So
    /// its mailbox never holds more than the capacity plus one batch of one source (a
    /// read batch, one round of commands, or the timers due at one instant), whatever the
    /// event kind, and the peer feels the backpressure. Reading is also held back while
    /// its unread events stand for [`SUBSCRIBER_BYTES`](crate::SUBSCRIBER_BYTES) of inbound frames (or the budget
    /// [`Options::subscriber_bytes`] set; a read stops
    /// after the frame that crosses it), so it never holds more than that plus one frame
    /// of what it was sent. A subscriber that stops reading for longer than the liveness
    /// bound therefore makes the connection look stale. Drop a stream you no longer read.
    pub fn events(&self) -> impl Stream<Item = Event<P>> + Send + use<P>
    where
        Event<P>: Send,
    {
        let (mailbox, subscription) =
            Mailbox::pair(SUBSCRIBER_CAPACITY, self.shared.subscriber_bytes);
        lock(&self.shared.events).push(mailbox);
        subscription
    }

    /// Status changes and events in one stream, in the order the session decided them
    /// (the same on every runtime), none missed: what a UI that shows both wants. The
    /// first item is the status as of subscribing ([`Status::Idle`] before the session
    /// loop first ran), then every change and event after it, none twice. Its
    /// backpressure is that of [`events`](Self::events): a subscriber that falls behind
    /// holds the session back, so drop a stream you no longer read.
    ///
    /// ```no_run
    /// # async fn demo(client: tether_driver::Client<tether_driver::tether_core::profiles::Raw>) {
    /// use futures::StreamExt;
    /// use tether_driver::Update;
    /// let mut updates = client.updates();
    /// while let Some(update) = updates.next().await {
    ///     match update {
    ///         Update::Status(status) => println!("status: {status}"),
    ///         Update::Event(event) => println!("event: {event:?}"),
    ///         _ => {}
    ///     }
    /// }
    /// # }
    /// ```
    pub fn updates(&self) -> impl Stream<Item = Update<P>> + Send + use<P>
    where
        Event<P>: Send,
    {
        let (mailbox, subscription) =
            Mailbox::pair(SUBSCRIBER_CAPACITY, self.shared.subscriber_bytes);
        let mut subs = lock(&self.shared.updates);
        // The loop publishes under this lock: the snapshot is exactly what came before.
        mailbox.push_all([Update::Status(subs.status)], 0);
        subs.subs.push(mailbox);
        subscription
    }

    /// How long since the last activity (a send, a request, a message, a response).
    pub fn idle(&self) -> Duration {
        let now = (self.shared.now)();
        lock(&self.shared.last_activity)
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t))
    }

    /// Messages and requests waiting in the offline queue for the session to open
    /// (bounded by [`Config::offline`]).
    pub fn queued(&self) -> usize {
        self.shared
            .queued
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Pauses the session without ending it: the connection closes (1000 "paused"), no
    /// reconnect follows, and the status stays [`Status::Idle`] until
    /// [`resume`](Self::resume) or [`reconnect`](Self::reconnect). Requests on the
    /// connection fail with `Disconnected`, its streams end; what is sent meanwhile is
    /// queued per [`Config::offline`]. See
    /// [`Session::disconnect`](tether_core::Session::disconnect).
    pub fn disconnect(&self) {
        let _ = self.control.unbounded_send(Control::Disconnect);
    }

    /// Resumes a session paused by [`disconnect`](Self::disconnect) (or a lazy session
    /// dormant after its idle timeout): it dials at once.
    pub fn resume(&self) {
        let _ = self.control.unbounded_send(Control::Resume);
    }

    /// Drops the current connection and dials again at once, with no backoff wait: for
    /// an application that knows the network changed (a new Wi-Fi, a VPN that came up).
    /// See [`Session::reconnect`](tether_core::Session::reconnect).
    pub fn reconnect(&self) {
        let _ = self.control.unbounded_send(Control::Reconnect);
    }

    /// Closes the session (normal closure) and waits until its transport is closed.
    /// Idempotent: every caller returns once the session is closed.
    pub async fn close(&self) {
        self.close_with(CloseCode::NORMAL, "").await;
    }

    /// Closes with a code and reason; see [`close`](Self::close).
    pub async fn close_with(&self, code: CloseCode, reason: &'static str) {
        let (tx, rx) = oneshot::channel();
        if self
            .control
            .unbounded_send(Control::Close(code, reason, tx))
            .is_ok()
        {
            let _ = rx.await;
        }
    }

    /// Ends the session at once, aborting its transport (for a watchdog).
    pub fn terminate(&self) {
        let _ = self.control.unbounded_send(Control::Terminate);
    }
}

#[cfg(test)]
#[path = "client_tests.rs"]
pub(crate) mod tests;

/// The session on `transport` and the loop that will drive it behind `front`, not yet
/// connecting: what [`Client::start_with`] spawns and [`Inline`](crate::Inline) polls.
pub(crate) fn assemble<P: crate::send_protocol::SendProtocol, R: Runtime>(
    runtime: R,
    transport: impl Transport,
    config: Config,
    protocol: P,
    seed: u64,
    options: Options<P>,
    front: Front<P>,
) -> Result<Driver<P, R>, ConnectError> {
    let mut transport = transport;
    // The codec's limits are the session's: nothing is buffered past the size limit,
    // and no message stays unfinished past the message timeout.
    transport.set_inbound_limits(crate::InboundLimits::new(
        runtime.clone(),
        config.max_inbound_frame,
        config.liveness.message_timeout,
    ));
    let session = Session::new(config, protocol, seed)?;
    let rt = runtime.clone();
    let shared = Arc::new(Shared::new(
        Box::new(move || rt.now()),
        options.subscriber_bytes,
    ));
    Ok(Driver::new(
        session,
        options,
        seed,
        runtime,
        Arc::new(transport),
        shared,
        front,
    ))
}

/// The span a session's loop runs in, named by a fresh id and `label` (the redacted URL).
pub(crate) fn session_span(label: &str) -> tracing::Span {
    // Not the seed: jitter and idempotency keys derive from it (see `session_id`).
    let id = crate::session_id::SessionId::next();
    tracing::info_span!("tether", session = %id, url = %label)
}
