//! The client session: one deterministic machine for a WebSocket session's whole life.

mod inbound;
mod lifecycle;
mod on_demand;
mod timers;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::close::CloseCode;
use crate::config::Config;
use crate::error::{ConfigError, ConnectError, RequestError, RequestFailure, SendError};
use crate::event::{DropReason, EndReason, Event, Output};
use crate::frame::OutFrame;
use crate::ids::{ConnId, FrameId, MessageId, RequestId};
use crate::liveness::Liveness;
use crate::protocol::{Protocol, RequestMeta};
use crate::queue::{Admit, Entry, OfflinePolicy, OfflineQueue, Queued};
use crate::requests::{Pending, Requests};
use crate::stats::SessionStats;
use crate::status::Status;
use crate::streams::Streams;
use crate::timer::{Timed, TimerKind, after};
use crate::writes::Writes;

/// The state of the current connection generation. Every deadline that belongs to a
/// connection lives inside its variant, so replacing the link drops them all: a timer of
/// an older generation cannot exist, let alone fire.
#[derive(Debug)]
enum Link {
    /// No transport.
    Down,
    /// The adapter is opening the transport. A `deadline` of `None` lies beyond the
    /// clock's range.
    Opening {
        conn: ConnId,
        deadline: Option<Instant>,
    },
    /// The transport is open; the handshake is not acknowledged.
    Handshaking {
        conn: ConnId,
        deadline: Option<Instant>,
    },
    /// The handshake is acknowledged.
    Open {
        conn: ConnId,
        liveness: Liveness,
        /// When the attempt counter resets; `None` once it has.
        stable_at: Option<Instant>,
    },
}

impl Link {
    fn conn(&self) -> Option<ConnId> {
        match self {
            Link::Down => None,
            Link::Opening { conn, .. }
            | Link::Handshaking { conn, .. }
            | Link::Open { conn, .. } => Some(*conn),
        }
    }
}

/// How to get rid of a connection's transport.
#[derive(Clone, Copy, Debug)]
enum Teardown {
    /// It is already gone.
    Gone,
    /// Drop it now.
    Abort,
    /// Send a close frame; abort after the close timeout.
    Close(CloseCode, &'static str),
}

/// A WebSocket session as a pure state machine.
///
/// See the [crate documentation](crate) for the run loop. In short: call a command or
/// `handle_*`, drain [`poll_output`](Self::poll_output) to empty, then wait until
/// [`poll_timeout`](Self::poll_timeout) or the next input, whichever comes first.
///
/// Every method that takes `now` first fires the timers due at or before `now`, then does
/// its own work, so outputs do not depend on whether the driver called
/// [`handle_timeout`](Self::handle_timeout) just before. A `now` earlier than one already
/// seen is treated as that one: time never runs backwards inside the session.
pub struct Session<P: Protocol> {
    cfg: Config,
    protocol: P,
    rng: fastrand::Rng,
    status: Status,
    link: Link,
    backoff_until: Option<Instant>,
    /// Consecutive failed attempts since the last stable connection.
    failures: u32,
    /// The current (or last) attempt's number, `failures + 1` when it started.
    attempt: u32,
    ever_opened: bool,
    /// `connect` was called: the session is the application's to run.
    started: bool,
    /// The application paused the session; it stays `Idle` until resumed.
    paused: bool,
    next_conn: u64,
    next_frame: u64,
    next_request: u64,
    next_message: u64,
    writes: Writes,
    requests: Requests,
    streams: Streams,
    queue: OfflineQueue,
    /// Idempotent requests whose connection dropped, to write again (in this order) on
    /// the next connection, before the queue.
    retrying: Vec<RequestId>,
    /// Connections told to close, with the deadline after which they are aborted.
    closing: Vec<(ConnId, Instant)>,
    /// The session token the server issued, presented on the next connection.
    resume_token: Option<String>,
    /// The positions the current connection's handshake resumed from: a stream event at
    /// or behind one is a violation.
    replay_floor: Vec<(crate::ids::StreamKey, u64)>,
    /// The connection whose handshake challenge was answered (one answer per connection).
    challenged: Option<ConnId>,
    outputs: VecDeque<Output<P>>,
    /// The latest `now` seen and the deadline floor (`timer::advance` keeps both).
    clock: crate::timer::Clock,
    last_activity: Option<Instant>,
    stats: SessionStats,
}

impl<P: Protocol> std::fmt::Debug for Session<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("status", &self.status)
            .field("link", &self.link)
            .field("failures", &self.failures)
            .field("requests", &self.requests.len())
            .field("streams", &self.streams.len())
            .field("queued", &self.queue.len())
            .finish_non_exhaustive()
    }
}

/// The seed of the session's hash tables, derived from its own seed (one SplitMix64
/// step) rather than drawn from its generator, so that the jitter and nonces a seed gives
/// stay what they were.
fn hash_seed(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl<P: Protocol> Session<P> {
    /// Creates a session in [`Status::Idle`]. `seed` drives backoff jitter and request
    /// nonces: the same config, seed and timestamped inputs give the same outputs.
    /// Production code should seed from the OS (idempotency keys derive from it).
    ///
    /// # Errors
    ///
    /// The [`ConfigError`] of an invalid configuration.
    pub fn new(config: Config, protocol: P, seed: u64) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Session {
            cfg: config,
            protocol,
            rng: fastrand::Rng::with_seed(seed),
            status: Status::Idle,
            link: Link::Down,
            backoff_until: None,
            failures: 0,
            attempt: 0,
            ever_opened: false,
            started: false,
            paused: false,
            next_conn: 0,
            next_frame: 0,
            next_request: 0,
            next_message: 0,
            // Both queues start small and grow to the session's busiest moment, then keep
            // that capacity (steady state does not allocate): reserving 64 entries up
            // front cost every session 10.5 KiB (8 KiB for `Raw`'s outputs), most of what
            // an idle one held besides the socket's buffers (`bench/src/bin/memory.rs`).
            // Four write entries (160 B) let a session that has written nothing yet (`Raw`
            // opens without a frame) write its first ping without allocating.
            writes: Writes::with_capacity(4),
            requests: Requests::default(),
            streams: Streams::new(hash_seed(seed)),
            queue: OfflineQueue::default(),
            retrying: Vec::new(),
            closing: Vec::new(),
            resume_token: None,
            replay_floor: Vec::new(),
            challenged: None,
            outputs: VecDeque::new(),
            clock: crate::timer::Clock::default(),
            last_activity: None,
            stats: SessionStats::default(),
        })
    }

    // ---- getters -------------------------------------------------------------------------

    /// The current status.
    #[must_use]
    pub fn status(&self) -> Status {
        self.status
    }

    /// The current connection generation, if a transport is being opened or is open.
    #[must_use]
    pub fn current_conn(&self) -> Option<ConnId> {
        self.link.conn()
    }

    /// When the application last did something (connect, send, request) or received
    /// something (message, response, stream event). Pings, heartbeats and reconnects are
    /// not activity: a flapping connection does not keep an unused session alive.
    #[must_use]
    pub fn last_activity(&self) -> Option<Instant> {
        self.last_activity
    }

    /// How long the session has been idle at `now` (zero before any activity).
    #[must_use]
    pub fn idle_for(&self, now: Instant) -> Duration {
        self.last_activity
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t))
    }

    /// Counters.
    #[must_use]
    pub fn stats(&self) -> SessionStats {
        self.stats
    }

    /// Whether the session has ended and every transport it opened is closed or aborted.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.status.is_terminal() && self.closing.is_empty()
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The protocol.
    #[must_use]
    pub fn protocol(&self) -> &P {
        &self.protocol
    }

    /// Requests awaiting an outcome (sent or queued).
    #[must_use]
    pub fn pending_requests(&self) -> usize {
        self.requests.len()
    }

    /// Frames in the offline queue.
    #[must_use]
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Streams open.
    #[must_use]
    pub fn open_streams(&self) -> usize {
        self.streams.len()
    }

    /// Whether request `id` is awaiting its outcome and started a stream that is still
    /// open. A driver that hands a request's stream events to a caller uses it to end the
    /// caller's stream at once for a request that started none.
    #[must_use]
    pub fn request_has_stream(&self, id: RequestId) -> bool {
        self.requests
            .get(id)
            .and_then(|p| p.stream.as_ref())
            .is_some_and(|key| self.streams.in_use(key))
    }

    /// Bytes of stream text held across every open stream (each stream's at most
    /// [`StreamConfig::max_text`](crate::StreamConfig::max_text)).
    #[must_use]
    pub fn stream_text_bytes(&self) -> usize {
        self.streams.text_len()
    }

    /// `(stream, seq)` pairs remembered for de-duplication.
    #[must_use]
    pub fn remembered_events(&self) -> usize {
        self.streams.seen_len()
    }

    /// Frames handed to the adapter and not yet reported written.
    #[must_use]
    pub fn pending_writes(&self) -> usize {
        self.writes.len()
    }

    /// Consecutive failed attempts since the last stable connection.
    #[must_use]
    pub fn failures(&self) -> u32 {
        self.failures
    }

    // ---- polls ---------------------------------------------------------------------------

    /// The next thing to do or know, oldest first. Drain to `None` after every call that
    /// takes `now`.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output<P>> {
        self.outputs.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next; `None` when no
    /// timer is armed (always the case once a closed session's transports are gone).
    /// Changes after any call that takes `now`.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_timer().map(|(t, _)| t)
    }

    /// Which timer [`poll_timeout`](Self::poll_timeout) is waiting for.
    #[must_use]
    pub fn timeout_reason(&self) -> Option<TimerKind> {
        self.next_timer().map(|(_, k)| k)
    }

    /// Fires every timer due at or before `now`. Safe to call early, late or spuriously;
    /// drain [`poll_output`](Self::poll_output) afterwards.
    pub fn handle_timeout(&mut self, now: Instant) {
        crate::timer::fire_due(self, now);
    }

    // ---- commands ------------------------------------------------------------------------

    /// Starts the session: the first connection attempt ([`Output::OpenTransport`]
    /// follows), unless the session is [lazy](Config::lazy) (the first `send` or
    /// `request` makes it) or [paused](Self::disconnect) (it waits for
    /// [`resume`](Self::resume)).
    ///
    /// # Errors
    ///
    /// [`ConnectError::AlreadyActive`] after the first call, [`ConnectError::Ended`] once
    /// the session has ended.
    pub fn connect(&mut self, now: Instant) -> Result<(), ConnectError> {
        let now = self.advance(now);
        if self.status.is_terminal() {
            return Err(ConnectError::Ended);
        }
        if self.started {
            return Err(ConnectError::AlreadyActive);
        }
        self.started = true;
        self.last_activity = Some(now);
        if !self.cfg.lazy && !self.paused {
            self.begin(now);
        }
        Ok(())
    }

    /// Sends a message: written at once when open, otherwise queued or refused per
    /// [`Config::offline`].
    ///
    /// # Errors
    ///
    /// A [`SendError`] when refused; nothing was written or queued then.
    pub fn send(&mut self, message: P::Outbound, now: Instant) -> Result<MessageId, SendError> {
        self.send_inner(message, None, now)
    }

    /// [`send`](Self::send) with a time-to-live of the message's own: if it is queued
    /// (the session is not open), it is dropped after `ttl` instead of after the queue's
    /// [`QueueConfig::ttl`](crate::QueueConfig::ttl), and reported as
    /// [`Event::MessageDropped`] with [`DropReason::Expired`]. A message written at once
    /// is unaffected. A `ttl` beyond the clock's range means none.
    ///
    /// ```
    /// # use std::time::{Duration, Instant};
    /// use tether_core::{profiles::Raw, Config, DataFrame, DropReason, Event, Output, Session};
    ///
    /// let t0 = Instant::now();
    /// let mut session = Session::new(Config::default(), Raw, 7).unwrap();
    /// // Not connected: queued, for 2 s at most.
    /// let id = session.send_with_ttl(DataFrame::Text("cursor 10,20".into()), Duration::from_secs(2), t0).unwrap();
    /// session.handle_timeout(t0 + Duration::from_secs(2));
    /// let dropped = std::iter::from_fn(|| session.poll_output()).any(|o| {
    ///     matches!(o, Output::Event(Event::MessageDropped { id: d, reason: DropReason::Expired }) if d == id)
    /// });
    /// assert!(dropped);
    /// ```
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    pub fn send_with_ttl(
        &mut self,
        message: P::Outbound,
        ttl: Duration,
        now: Instant,
    ) -> Result<MessageId, SendError> {
        self.send_inner(message, Some(ttl), now)
    }

    fn send_inner(
        &mut self,
        message: P::Outbound,
        ttl: Option<Duration>,
        now: Instant,
    ) -> Result<MessageId, SendError> {
        let now = self.advance_keeping(now);
        if self.status.is_terminal() {
            return Err(SendError::Ended);
        }
        let frame = self.protocol.encode(message)?;
        let id = MessageId(self.next_message);
        match self.link {
            Link::Open { conn, .. } => {
                if self.writes.len() >= self.cfg.max_pending_writes {
                    return Err(SendError::Backpressure);
                }
                // Arms the write's send deadline, which lowers the floor; the idle
                // deadline below only moves later.
                self.write_message(conn, frame, id, now);
            }
            _ => {
                self.clock.floor.forget();
                self.enqueue(Queued::Message(id), frame, ttl, now)?;
            }
        }
        self.next_message += 1;
        self.last_activity = Some(now);
        self.wake_for_use(now);
        Ok(id)
    }

    /// [`send`](Self::send) for a caller that does not wait for the verdict (a driver
    /// pipelining sends): a refusal becomes an [`Event::SendRefused`] among the outputs,
    /// in order with everything else, instead of an error nobody reads. Every `feed` uses
    /// up a [`MessageId`], so a refusal names the message it refused; an accepted message
    /// is then exactly like one from `send` (see [`Event::MessageDropped`]).
    ///
    /// ```
    /// # use std::time::Instant;
    /// use tether_core::{profiles::Raw, Config, DataFrame, Event, Output, SendError, Session};
    ///
    /// let now = Instant::now();
    /// let mut session = Session::new(Config::default(), Raw, 7).unwrap();
    /// session.terminate(now);
    /// session.feed(DataFrame::Text("late".into()), now);
    /// let refused = std::iter::from_fn(|| session.poll_output()).any(|o| {
    ///     matches!(o, Output::Event(Event::SendRefused { error: SendError::Ended, .. }))
    /// });
    /// assert!(refused);
    /// ```
    pub fn feed(&mut self, message: P::Outbound, now: Instant) {
        if let Err(error) = self.send(message, now) {
            // The refused message still gets an id of its own, so the application can tell
            // which of its pipelined messages this refusal is about (ids count every
            // `feed`, accepted or not).
            let id = MessageId(self.next_message);
            self.next_message += 1;
            self.emit(Event::SendRefused { id, error });
        }
    }

    /// Sends a request and returns its id at once. The id is resolved exactly once, by an
    /// [`Event::Response`]: the peer's answer, a timeout (`timeout`, or
    /// [`Config::request_timeout`]), a lost connection, a queue drop, or the session ending.
    ///
    /// Any `timeout` but zero is accepted. One so long that `now + timeout` lies beyond what
    /// [`Instant`] can represent (such as `Duration::MAX`) means *no deadline*: the request
    /// waits for its response, its connection's loss or the session's end, and never
    /// fails with [`RequestFailure::Timeout`].
    /// If the protocol says the request starts a stream, the stream is registered before
    /// the request is written, so no early event is missed.
    ///
    /// # Errors
    ///
    /// A [`RequestError`] when refused; nothing was written, queued or registered then.
    pub fn request(
        &mut self,
        request: P::Request,
        timeout: Option<Duration>,
        now: Instant,
    ) -> Result<RequestId, RequestError> {
        let now = self.advance(now);
        if self.status.is_terminal() {
            return Err(RequestError::Ended);
        }
        if timeout == Some(Duration::ZERO) {
            return Err(RequestError::ZeroTimeout);
        }
        if self.requests.len() >= self.cfg.max_in_flight_requests {
            return Err(RequestError::TooManyInFlight);
        }
        let id = RequestId(self.next_request);
        let meta = RequestMeta {
            id,
            nonce: self.rng.u128(..),
        };
        let encoded = self.protocol.encode_request(meta, request)?;
        if let Some(key) = &encoded.stream {
            // A second request on a live stream key would take the first one's stream
            // over and leave its caller waiting for a terminal that never comes.
            if self.streams.in_use(key) {
                return Err(RequestError::StreamKeyInUse);
            }
            if self.streams.len() >= self.cfg.streams.max_streams {
                return Err(RequestError::TooManyStreams);
            }
        }
        let sent_on = match self.link {
            Link::Open { conn, .. } => {
                if self.writes.len() >= self.cfg.max_pending_writes {
                    return Err(RequestError::Backpressure);
                }
                Some(conn)
            }
            _ => None,
        };
        if let Some(key) = &encoded.stream {
            self.streams.register_with(
                &self.cfg.streams,
                key.clone(),
                Some(id),
                encoded.resumable,
                now,
            );
        }
        // A request with a stream is not sent again: its stream ends with the connection.
        let resend =
            (encoded.idempotent && encoded.stream.is_none() && self.cfg.request_retries > 0)
                .then(|| (encoded.frame.clone(), self.cfg.request_retries));
        match sent_on {
            Some(conn) => {
                self.write(conn, encoded.frame, now);
            }
            None => {
                if let Err(e) = self.enqueue(Queued::Request(id), encoded.frame, None, now) {
                    if let Some(key) = &encoded.stream {
                        let _ = self.streams.end::<P::Inbound>(
                            &self.cfg.streams,
                            key,
                            crate::event::StreamEnd::RequestFailed,
                            now,
                        );
                    }
                    return Err(e.into());
                }
            }
        }
        self.next_request += 1;
        self.requests.insert(
            id,
            Pending {
                // A deadline the clock cannot represent (`Duration::MAX`) is none at all.
                deadline: after(now, timeout.unwrap_or(self.cfg.request_timeout)),
                sent_on,
                stream: encoded.stream,
                resend,
            },
        );
        self.last_activity = Some(now);
        self.wake_for_use(now);
        Ok(id)
    }

    /// Closes the session: stops reconnecting, fails every pending request with
    /// [`RequestFailure::Closed`], sends a close frame and aborts the transport if the peer
    /// has not confirmed within [`Config::close_timeout`]. Idempotent: later calls do
    /// nothing.
    pub fn close(&mut self, code: CloseCode, reason: &'static str, now: Instant) {
        let now = self.advance(now);
        if self.status.is_terminal() {
            return;
        }
        self.shut(Teardown::Close(code, reason), EndReason::ClosedByUser, now);
    }

    /// Ends the session at once: aborts the transport without a close handshake (for a
    /// watchdog that finds the session stuck). Idempotent.
    pub fn terminate(&mut self, now: Instant) {
        let now = self.advance(now);
        if self.status.is_terminal() {
            // A close already under way is cut short.
            for (conn, _) in std::mem::take(&mut self.closing) {
                self.outputs.push_back(Output::AbortTransport { conn });
            }
            return;
        }
        self.shut(Teardown::Abort, EndReason::ClosedByUser, now);
        // Sockets still closing from earlier attempts go too: after terminate nothing
        // lingers.
        for (conn, _) in std::mem::take(&mut self.closing) {
            self.outputs.push_back(Output::AbortTransport { conn });
        }
    }

    // ---- shared helpers ------------------------------------------------------------------

    fn shut(&mut self, teardown: Teardown, reason: EndReason, now: Instant) {
        if let Some(conn) = self.link.conn() {
            let teardown = match self.link {
                // No WebSocket yet: nothing to close politely.
                Link::Opening { .. } => Teardown::Abort,
                _ => teardown,
            };
            self.teardown(conn, teardown, now);
        }
        self.end(reason, now);
    }

    fn set_status(&mut self, to: Status) {
        let from = self.status;
        if from == to {
            return;
        }
        debug_assert!(from.can_become(to), "illegal status change {from} -> {to}");
        tracing::debug!(%from, %to, "status");
        self.status = to;
        self.outputs.push_back(Output::StatusChanged { from, to });
    }

    fn emit(&mut self, event: Event<P>) {
        self.outputs.push_back(Output::Event(event));
    }

    fn write(&mut self, conn: ConnId, payload: OutFrame, now: Instant) -> FrameId {
        self.write_owned(conn, payload, None, now)
    }

    /// [`write`](Self::write) for a frame that carries the application message `id`.
    fn write_message(
        &mut self,
        conn: ConnId,
        payload: OutFrame,
        id: MessageId,
        now: Instant,
    ) -> FrameId {
        self.write_owned(conn, payload, Some(id), now)
    }

    fn write_owned(
        &mut self,
        conn: ConnId,
        payload: OutFrame,
        message: Option<MessageId>,
        now: Instant,
    ) -> FrameId {
        let frame = FrameId(self.next_frame);
        self.next_frame += 1;
        match message {
            Some(id) => self.writes.push_message(frame, id, now),
            None => self.writes.push(frame, now),
        }
        // The write's send deadline.
        let due = crate::timer::after(now, self.cfg.send_deadline);
        self.clock.floor.lower(due);
        self.stats.frames_sent += 1;
        self.outputs.push_back(Output::SendFrame {
            conn,
            frame,
            payload,
        });
        frame
    }

    /// Queues `frame` for the next connection; it expires after `ttl`, or the queue's
    /// TTL when `None`. A request expires from the queue like a message (failing with
    /// [`RequestFailure::Dropped`]), or earlier by its own timeout.
    fn enqueue(
        &mut self,
        owner: Queued,
        frame: OutFrame,
        ttl: Option<Duration>,
        now: Instant,
    ) -> Result<(), SendError> {
        let cfg = match &self.cfg.offline {
            OfflinePolicy::Reject => return Err(SendError::NotOpen),
            OfflinePolicy::Queue(q) => q.clone(),
        };
        let expires = ttl.or(cfg.ttl).and_then(|t| after(now, t));
        let size = frame.len();
        match self.queue.push(
            &cfg,
            Entry {
                owner,
                frame,
                expires,
            },
        ) {
            Admit::Full => Err(SendError::QueueFull),
            Admit::TooLarge => Err(SendError::TooLarge(size)),
            Admit::Queued { evicted } => {
                for e in evicted {
                    self.dropped_from_queue(e, DropReason::Overflow, now);
                }
                Ok(())
            }
        }
    }

    fn dropped_from_queue(&mut self, owner: Queued, reason: DropReason, now: Instant) {
        match owner {
            Queued::Message(id) => {
                self.stats.messages_dropped += 1;
                self.emit(Event::MessageDropped { id, reason });
            }
            Queued::Request(id) => {
                self.resolve_request(id, Err(RequestFailure::Dropped), now);
            }
        }
    }
}
