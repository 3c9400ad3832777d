//! The application's handle on a running session.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::Stream;
use futures::channel::{mpsc, oneshot};
use tether_core::{
    CloseCode, Config, ConfigError, EndReason, Event, MessageId, Protocol, RequestError,
    RequestFailure, RequestId, SendError, Session, Status,
};

use crate::mailbox::Mailbox;
use crate::record::Options;
use crate::runtime::Runtime;
use crate::stream_events::{self, StreamEvents, StreamSender};
use crate::task::Driver;
use crate::transport::Transport;
use crate::update::Update;

/// Commands that carry application data: bounded, so a flood waits instead of growing.
pub(crate) enum Cmd<P: Protocol> {
    /// A message, with its own queue TTL if it has one.
    Send(
        P::Outbound,
        Option<Duration>,
        oneshot::Sender<Result<MessageId, SendError>>,
    ),
    Feed(P::Outbound),
    Request {
        request: P::Request,
        timeout: Option<Duration>,
        /// The id, for a caller that wants it before the response (a stream).
        accepted: Option<oneshot::Sender<RequestId>>,
        /// The outcome, including a refusal.
        reply: Reply<P>,
        events: Option<StreamSender<P::Inbound>>,
    },
}

type Reply<P> =
    oneshot::Sender<Result<<P as Protocol>::Response, CallError<<P as Protocol>::RemoteError>>>;
type Outcome<P> =
    oneshot::Receiver<Result<<P as Protocol>::Response, CallError<<P as Protocol>::RemoteError>>>;

/// Lifecycle commands: never blocked behind data, so `close` and `terminate` always get
/// through.
pub(crate) enum Control {
    Close(CloseCode, &'static str, oneshot::Sender<()>),
    Terminate,
    WaitOpen(oneshot::Sender<Result<(), EndReason>>),
    /// `Client::disconnect`, `resume` and `reconnect`: the session's own commands.
    Disconnect,
    Resume,
    Reconnect,
}

/// How many data commands may wait for the session loop.
pub const CMD_CAPACITY: usize = 1024;
/// How many events a subscriber may have unread before the session stops reading from the
/// socket until it catches up.
pub const SUBSCRIBER_CAPACITY: usize = 1024;
/// How many bytes of inbound frames the events an [`events`](Client::events) subscriber
/// has not yet taken may stand for before the session stops reading from the socket until
/// it catches up: 8 MiB. An event is charged with the frames read to produce it (the
/// driver cannot see an event's own size; the frame's is a `Protocol`-independent hint,
/// and a decoded event may well take a few times as much memory as its frame). A
/// subscriber thus holds back at most this plus one frame (`max_inbound_frame`).
pub const SUBSCRIBER_BYTES: usize = 8 << 20;
/// How many stream events a stream consumer may have unread before its subscription ends
/// (its bytes are bounded too: see [`StreamCall::events`]).
pub const STREAM_CAPACITY: usize = 4096;

/// State the loop publishes for handles to read without a round trip.
pub(crate) struct Shared<P: Protocol> {
    status: Mutex<Status>,
    last_activity: Mutex<Option<Instant>>,
    /// Messages and requests in the session's offline queue.
    queued: std::sync::atomic::AtomicUsize,
    events: Mutex<Vec<Arc<Mailbox<Event<P>>>>>,
    statuses: Mutex<Vec<Arc<Mailbox<Status>>>>,
    /// The subprotocol of the connection that opened last.
    subprotocol: Mutex<Option<String>>,
    /// [`Client::updates`] subscribers: statuses and events in one order.
    updates: Mutex<UpdateSubs<P>>,
    now: Box<dyn Fn() -> Instant + Send + Sync>,
    /// Each `events()` subscriber's byte budget ([`Options::subscriber_bytes`]).
    subscriber_bytes: usize,
}

/// The [`Client::updates`] subscribers, and the last status published to them: what a new
/// subscriber starts from, so that it sees neither a gap nor a change twice.
pub(crate) struct UpdateSubs<P: Protocol> {
    subs: Vec<Arc<Mailbox<Update<P>>>>,
    status: Status,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these short locks cannot leave the data inconsistent
    // (each critical section is a single assignment or push), so poisoning is ignored.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl<P: Protocol> Shared<P> {
    /// Nothing published yet: `Idle`, no activity, no subscriber.
    pub(crate) fn new(
        now: Box<dyn Fn() -> Instant + Send + Sync>,
        subscriber_bytes: usize,
    ) -> Self {
        Shared {
            status: Mutex::new(Status::Idle),
            last_activity: Mutex::new(None),
            queued: std::sync::atomic::AtomicUsize::new(0),
            events: Mutex::new(Vec::new()),
            statuses: Mutex::new(Vec::new()),
            updates: Mutex::new(UpdateSubs {
                subs: Vec::new(),
                status: Status::Idle,
            }),
            subprotocol: Mutex::new(None),
            now,
            subscriber_bytes,
        }
    }

    pub(crate) fn set_status(&self, to: Status) {
        *lock(&self.status) = to;
        // Never dropped for a slow subscriber: its full mailbox holds the loop's sources
        // back instead (see `has_room`), so no change is skipped.
        lock(&self.statuses).retain(|sub| sub.push_all([to], 0));
    }

    pub(crate) fn set_subprotocol(&self, subprotocol: Option<&str>) {
        let mut current = lock(&self.subprotocol);
        if current.as_deref() != subprotocol {
            *current = subprotocol.map(str::to_owned);
        }
    }

    pub(crate) fn touch(&self, last: Option<Instant>, queued: usize) {
        *lock(&self.last_activity) = last;
        self.queued
            .store(queued, std::sync::atomic::Ordering::Relaxed);
    }

    /// Hands every update of `updates` to every [`Client::updates`] subscriber and every
    /// event among them to every [`Client::events`] subscriber, in order, one lock and
    /// one wake-up per subscriber, charging each with `bytes`, the inbound frames read to
    /// produce them; leaves `updates` empty.
    pub(crate) fn publish(&self, updates: &mut Vec<Update<P>>, bytes: usize) {
        if updates.is_empty() {
            return;
        }
        {
            let mut subs = lock(&self.updates);
            if let Some(status) = updates.iter().rev().find_map(Update::status) {
                subs.status = status;
            }
            let mut gone = false;
            for sub in &subs.subs {
                gone |= !sub.push_all(updates.iter().cloned(), bytes);
            }
            if gone {
                subs.subs.retain(|sub| !sub.is_abandoned());
            }
        }
        // A batch of status changes alone wakes no event subscriber.
        if updates.iter().all(|u| u.event().is_none()) {
            updates.clear();
            return;
        }
        let mut subs = lock(&self.events);
        if let Some((last, rest)) = subs.split_last() {
            let mut gone = false;
            for sub in rest {
                gone |= !sub.push_all(updates.iter().filter_map(|u| u.event().cloned()), bytes);
            }
            gone |= !last.push_all(updates.drain(..).filter_map(Update::into_event), bytes);
            if gone {
                subs.retain(|sub| !sub.is_abandoned());
            }
        }
        updates.clear();
    }

    /// Whether every subscriber (events and status changes) has room for more, counting
    /// `owed` events already promised to each event subscriber (the responses of the
    /// requests in flight); if not, the loop is woken when they have.
    pub(crate) fn have_room(&self, cx: &mut std::task::Context<'_>, owed: usize) -> bool {
        lock(&self.events)
            .iter()
            .all(|sub| sub.has_room_for(cx, owed))
            && lock(&self.updates)
                .subs
                .iter()
                .all(|sub| sub.has_room_for(cx, owed))
            && lock(&self.statuses).iter().all(|sub| sub.has_room(cx))
    }

    /// How many bytes of frames the loop may read now: the least any event subscriber
    /// has room for ([`SUBSCRIBER_BYTES`] less what it holds), zero while any subscriber
    /// (events or status changes) is full in count; the loop is woken when that changes.
    pub(crate) fn read_allowance(&self, cx: &mut std::task::Context<'_>) -> usize {
        if !lock(&self.statuses).iter().all(|sub| sub.has_room(cx)) {
            return 0;
        }
        let mut allowance = usize::MAX;
        for sub in lock(&self.events).iter() {
            allowance = allowance.min(sub.read_allowance(cx));
            if allowance == 0 {
                return 0;
            }
        }
        for sub in &lock(&self.updates).subs {
            allowance = allowance.min(sub.read_allowance(cx));
            if allowance == 0 {
                return 0;
            }
        }
        allowance
    }

    /// Whether every event subscriber has taken every event published to it and is
    /// waiting for the next one (a dropped subscription counts as caught up); if not, the
    /// loop is woken when one comes back for more.
    pub(crate) fn caught_up(&self, cx: &mut std::task::Context<'_>) -> bool {
        lock(&self.events).iter().all(|sub| sub.is_caught_up(cx))
            && lock(&self.updates)
                .subs
                .iter()
                .all(|sub| sub.is_caught_up(cx))
    }

    /// Ends every subscription after what it has queued: the session loop is gone.
    pub(crate) fn close_events(&self) {
        for sub in lock(&self.events).drain(..) {
            sub.close();
        }
        for sub in lock(&self.statuses).drain(..) {
            sub.close();
        }
        for sub in lock(&self.updates).subs.drain(..) {
            sub.close();
        }
    }
}

/// Why [`Client::connect`] did not produce an open session.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The URL is not usable.
    #[error(transparent)]
    Url(#[from] crate::ws::UrlError),
    /// A header or a subprotocol is not valid.
    #[error(transparent)]
    Header(#[from] crate::ws::HeaderError),
    /// The session ended before it opened: the first connect's outcome.
    #[error("could not connect to {target}: {reason}")]
    Ended {
        /// Where the session was connecting: `host:port` for a WebSocket URL.
        target: String,
        /// How the session ended.
        reason: EndReason,
    },
}

impl ConnectError {
    /// How the session ended, for [`ConnectError::Ended`].
    pub fn end_reason(&self) -> Option<&EndReason> {
        match self {
            ConnectError::Ended { reason, .. } => Some(reason),
            _ => None,
        }
    }
}

/// Why a request through [`Client::request`] produced no response.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallError<E> {
    /// The session refused the request at once.
    #[error(transparent)]
    Refused(#[from] RequestError),
    /// The request was sent (or queued) but failed.
    #[error(transparent)]
    Failed(RequestFailure<E>),
    /// The session loop is gone (the runtime shut down).
    #[error("the session loop has stopped")]
    Stopped,
}

/// A request that started a stream: its id, its response and its events.
pub struct StreamCall<P: Protocol> {
    /// The request's id.
    pub id: RequestId,
    response: Outcome<P>,
    /// The stream's events, ending after its terminal event. A consumer that falls
    /// [`STREAM_CAPACITY`] events behind, or holds more than the session's subscriber
    /// byte budget ([`Options::subscriber_bytes`](crate::record::Options::subscriber_bytes),
    /// [`SUBSCRIBER_BYTES`] by default: each event counts the bytes of the frame that
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
    cmds: async_channel::Sender<Cmd<P>>,
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

impl<P: crate::connect::SendProtocol> Client<P> {
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
        let mut transport = transport;
        // The codec's limits are the session's: nothing is buffered past the size limit,
        // and no message stays unfinished past the message timeout.
        transport.set_inbound_limits(crate::InboundLimits::new(
            runtime.clone(),
            config.max_inbound_frame,
            config.liveness.message_timeout,
        ));
        let session = Session::new(config, protocol, seed)?;
        let (cmds_tx, cmds_rx) = async_channel::bounded(CMD_CAPACITY);
        let (control_tx, control_rx) = mpsc::unbounded();
        let rt = runtime.clone();
        let shared = Arc::new(Shared::new(
            Box::new(move || rt.now()),
            options.subscriber_bytes,
        ));
        let driver = Driver::new(
            session,
            options,
            seed,
            runtime.clone(),
            Arc::new(transport),
            shared.clone(),
            cmds_rx,
            control_rx,
        );
        // Not the seed: jitter and idempotency keys derive from it (see `session_id`).
        let id = crate::session_id::SessionId::next();
        let span = tracing::info_span!("tether", session = %id, url = %label);
        runtime.spawn(Box::pin(tracing::Instrument::instrument(
            driver.run(),
            span,
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
    /// its unread events stand for [`SUBSCRIBER_BYTES`] of inbound frames (or the budget
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
mod tests;
