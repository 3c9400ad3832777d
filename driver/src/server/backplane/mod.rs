//! A [`Hub`]'s backplane: topic broadcasts shared with the hubs of other processes through
//! Redis pub/sub.
//!
//! ```text
//!  Hub::broadcast_to ─┬─► local members of the topic (at once)
//!                     └─► outbox: bounded in messages and bytes ─► publisher task ─► PUBLISH prefix+topic
//!                                                                                    │ Redis
//!  local members ◄── Hub (topic members) ◄── decode, skip own origin ◄── subscriber task ◄── PSUBSCRIBE prefix*
//! ```
//!
//! Two connections to Redis, each in a task of its own spawned through the hub's
//! [`Runtime`]: a subscriber (a subscribed Redis connection cannot publish) and a
//! publisher that pipelines whatever the outbox holds. Each reconnects on its own after a
//! failure, waiting as tether's sessions do ([`BackoffConfig`]: its schedule, jitter and
//! `stable_after`). While the publisher is down, topic broadcasts reach local members
//! only and are counted as [`BackplaneStats::dropped_down`]: nothing is replayed later.
//!
//! The Redis client is a small RESP2 one written here over any
//! `AsyncRead + AsyncWrite` stream the adapter dials, so the same code runs on tokio and
//! smol and every length Redis sends is capped before anything is buffered.

mod resp;
pub(crate) mod wire;

use std::io;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::channel::mpsc;
use futures::future::{BoxFuture, Either, select};
use futures::{AsyncRead, AsyncWrite, FutureExt, Stream};
use tether_core::{BackoffConfig, ConfigError, DataFrame, MAX_DURATION};

use super::hub::{Hub, MAX_TOPIC_LEN, WeakHub, check_topic};
use crate::runtime::Runtime;
use resp::{Reader, Value};

/// A byte stream to Redis, as the adapter's dialer opens it.
pub trait RedisStream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> RedisStream for T {}

/// Opens a connection to Redis: the adapters dial TCP on their runtime
/// (`tether_tokio::server::backplane`, `tether_smol::server::backplane`).
pub type DialRedis =
    Arc<dyn Fn() -> BoxFuture<'static, io::Result<Box<dyn RedisStream>>> + Send + Sync>;

/// How a backplane behaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackplaneConfig {
    /// Prepended to a topic to make its Redis channel. Processes share topics when they
    /// share the prefix (and the Redis). Default `"tether:hub:"`; at most 256 bytes, not
    /// empty, no `*`, `?`, `[`, `]` or `\` (it is also a pattern).
    pub channel_prefix: String,
    /// Messages waiting to be published, at most. Default 65,536; at most
    /// [`MAX_QUEUE_LEN`].
    pub queue_len: usize,
    /// Encoded bytes waiting to be published, at most. Default 16 MiB; at most
    /// [`MAX_QUEUE_BYTES`]. A broadcast that does not fit is not published (counted in
    /// [`BackplaneStats::queue_full`]); its local members have it anyway.
    pub queue_bytes: usize,
    /// The largest frame payload published or accepted from Redis. Default 1 MiB; at most
    /// [`MAX_MESSAGE_BYTES`]. A larger broadcast reaches local members only
    /// ([`BackplaneStats::too_large`]); a larger message from Redis is skipped without
    /// being buffered ([`BackplaneStats::oversized`]).
    pub max_message_bytes: usize,
    /// The wait between reconnects: tether's session rules (schedule, jitter, the attempt
    /// counter reset after `stable_after` connected). `max_attempts` is ignored: a
    /// backplane retries for as long as it lives. Default
    /// [`BackoffConfig::default`] (1, 2, 4, 8, 16, 30 s with full jitter).
    pub backoff: BackoffConfig,
    /// A connect, or a reply to a batch of publishes, must come within this. Default 5 s.
    pub io_timeout: Duration,
    /// The subscriber pings Redis this often, and reconnects after three periods without
    /// a byte from it (a Redis that vanished without closing). Default 10 s.
    pub ping_interval: Duration,
    /// Events buffered for each [`events`](Backplane::events) subscriber; a lagging one
    /// misses events (counted in [`BackplaneStats::events_dropped`]). Default 64, at most
    /// 4096.
    pub event_capacity: usize,
    /// Seeds the jitter of the reconnect waits (`None`: the process's random source).
    pub seed: Option<u64>,
}

/// The ceiling of [`BackplaneConfig::queue_len`].
pub const MAX_QUEUE_LEN: usize = 1 << 20;
/// The ceiling of [`BackplaneConfig::queue_bytes`]: 1 GiB.
pub const MAX_QUEUE_BYTES: usize = 1 << 30;
/// The ceiling of [`BackplaneConfig::max_message_bytes`]: 64 MiB (Redis's own limit on a
/// bulk string is 512 MiB).
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;
const MAX_PREFIX: usize = 256;
const MAX_EVENT_CAPACITY: usize = 4096;
/// Publishes pipelined in one write, at most (and at most `queue_bytes` of them).
const BATCH: usize = 256;

impl Default for BackplaneConfig {
    fn default() -> Self {
        BackplaneConfig {
            channel_prefix: "tether:hub:".to_owned(),
            queue_len: 65_536,
            queue_bytes: 16 << 20,
            max_message_bytes: 1 << 20,
            backoff: BackoffConfig::default(),
            io_timeout: Duration::from_secs(5),
            ping_interval: Duration::from_secs(10),
            event_capacity: 64,
            seed: None,
        }
    }
}

impl BackplaneConfig {
    /// Checks every value against its bounds.
    ///
    /// # Errors
    ///
    /// A [`BackplaneError::Config`] naming the first value out of bounds.
    pub fn validate(&self) -> Result<(), BackplaneError> {
        let p = &self.channel_prefix;
        if p.is_empty() || p.len() > MAX_PREFIX || p.contains(['*', '?', '[', ']', '\\']) {
            return Err(BackplaneError::Prefix);
        }
        let counts = [
            ("queue_len", self.queue_len, MAX_QUEUE_LEN),
            ("queue_bytes", self.queue_bytes, MAX_QUEUE_BYTES),
            (
                "max_message_bytes",
                self.max_message_bytes,
                MAX_MESSAGE_BYTES,
            ),
            ("event_capacity", self.event_capacity, MAX_EVENT_CAPACITY),
        ];
        for (field, value, max) in counts {
            if value == 0 {
                return Err(ConfigError::ZeroBound(field).into());
            }
            if value > max {
                return Err(ConfigError::TooLarge {
                    field,
                    max: max as u64,
                }
                .into());
            }
        }
        if self.backoff.schedule.is_empty() {
            return Err(ConfigError::EmptyBackoff.into());
        }
        let durations = self
            .backoff
            .schedule
            .iter()
            .map(|d| ("backoff.schedule", *d));
        for (field, d) in durations.chain([
            ("backoff.stable_after", self.backoff.stable_after),
            ("io_timeout", self.io_timeout),
            ("ping_interval", self.ping_interval),
        ]) {
            if d > MAX_DURATION {
                return Err(ConfigError::TooLong {
                    field,
                    max: MAX_DURATION,
                }
                .into());
            }
        }
        for (field, d) in [
            ("io_timeout", self.io_timeout),
            ("ping_interval", self.ping_interval),
        ] {
            if d.is_zero() {
                return Err(ConfigError::ZeroBound(field).into());
            }
        }
        Ok(())
    }
}

/// Why a backplane could not start.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BackplaneError {
    /// A value of the configuration is out of bounds.
    #[error("invalid backplane configuration: {0}")]
    Config(#[from] ConfigError),
    /// The channel prefix is empty, too long or contains a pattern character.
    #[error("the channel prefix must be 1 to 256 bytes without * ? [ ] or \\")]
    Prefix,
    /// The hub already has a backplane.
    #[error("the hub already has a backplane")]
    AlreadyAttached,
    /// The Redis URL is not `redis://host[:port][/]` or `host[:port]`.
    #[error("not a redis://host:port URL: {0}")]
    Url(String),
}

/// Which of the two connections to Redis an event is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Side {
    /// The connection that publishes this process's topic broadcasts.
    Publisher,
    /// The connection that receives the other processes' broadcasts.
    Subscriber,
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Side::Publisher => "publisher",
            Side::Subscriber => "subscriber",
        })
    }
}

/// A change in the backplane's connections to Redis.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackplaneEvent {
    /// Connected (the subscriber: and subscribed). Broadcasts cross processes again.
    Up {
        /// Which connection.
        side: Side,
    },
    /// The connection failed or could not be opened; the next attempt comes after
    /// `retry_in`. Meanwhile topic broadcasts reach local members only.
    Down {
        /// Which connection.
        side: Side,
        /// What went wrong.
        error: String,
        /// Consecutive failures so far.
        failures: u32,
        /// The wait before the next attempt.
        retry_in: Duration,
    },
}

/// Counters of a backplane's life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackplaneStats {
    /// Messages published to Redis (acknowledged by it).
    pub published: u64,
    /// Broadcasts not published: the outbox was full (in messages or bytes).
    pub queue_full: u64,
    /// Broadcasts not published: the publisher was disconnected (during an outage, or
    /// queued when the connection failed).
    pub dropped_down: u64,
    /// Broadcasts not published: larger than `max_message_bytes`.
    pub too_large: u64,
    /// Messages from other processes handed to local members.
    pub received: u64,
    /// This process's own messages, back from Redis and skipped (their local members had
    /// them at once).
    pub own: u64,
    /// Messages from Redis that did not decode (not a backplane message, a bad topic):
    /// dropped.
    pub undecodable: u64,
    /// Messages from Redis over `max_message_bytes`: skipped unread.
    pub oversized: u64,
    /// Connections to Redis lost or not opened, both sides.
    pub failures: u64,
    /// Events a lagging [`events`](Backplane::events) subscriber missed.
    pub events_dropped: u64,
    /// Whether the publisher is connected now.
    pub publisher_up: bool,
    /// Whether the subscriber is connected and subscribed now.
    pub subscriber_up: bool,
    /// Encoded bytes waiting in the outbox now.
    pub queued_bytes: usize,
}

#[derive(Default)]
struct Counters {
    published: AtomicU64,
    queue_full: AtomicU64,
    dropped_down: AtomicU64,
    too_large: AtomicU64,
    received: AtomicU64,
    own: AtomicU64,
    undecodable: AtomicU64,
    oversized: AtomicU64,
    failures: AtomicU64,
    events_dropped: AtomicU64,
    publisher_up: AtomicBool,
    subscriber_up: AtomicBool,
    queued_bytes: AtomicUsize,
}

/// The hub's side of the backplane: encodes a topic broadcast and queues it for the
/// publisher without waiting.
pub(crate) struct Outbox {
    origin: u64,
    seq: AtomicU64,
    prefix: String,
    max_message: usize,
    max_bytes: usize,
    tx: async_channel::Sender<(Bytes, Bytes)>,
    counters: Arc<Counters>,
}

impl Outbox {
    /// Queues `frame` for `topic`'s members in other processes, or counts why not.
    pub(crate) fn publish(&self, topic: &str, frame: &DataFrame) {
        let c = &self.counters;
        if wire::payload_len(frame) > self.max_message {
            c.too_large.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(topic, "broadcast larger than max_message_bytes; local only");
            return;
        }
        if !c.publisher_up.load(Ordering::Relaxed) {
            c.dropped_down.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let message = wire::encode(self.origin, seq, frame);
        let channel = Bytes::from(format!("{}{topic}", self.prefix));
        let size = message.len() + channel.len();
        let before = c.queued_bytes.fetch_add(size, Ordering::AcqRel);
        if before + size > self.max_bytes {
            c.queued_bytes.fetch_sub(size, Ordering::AcqRel);
            c.queue_full.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(topic, "backplane outbox full (bytes); local only");
            return;
        }
        if self.tx.try_send((channel, message)).is_err() {
            c.queued_bytes.fetch_sub(size, Ordering::AcqRel);
            c.queue_full.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(topic, "backplane outbox full (messages); local only");
        }
    }
}

/// State the tasks and the handle share.
struct Shared<R> {
    rt: R,
    dial: DialRedis,
    cfg: BackplaneConfig,
    origin: u64,
    hub: WeakHub,
    counters: Arc<Counters>,
    /// The handle's subscribers to events.
    events: Arc<Mutex<Vec<mpsc::Sender<BackplaneEvent>>>>,
    /// Closed when the handle is dropped: every wait of the tasks ends with it.
    stop: async_channel::Receiver<()>,
    rng: Mutex<fastrand::Rng>,
}

/// A running backplane. Dropping it (or [`shutdown`](Self::shutdown)) stops both tasks
/// and detaches it from the hub; topic broadcasts are local from then on.
#[must_use = "dropping the Backplane stops it"]
pub struct Backplane {
    counters: Arc<Counters>,
    origin: u64,
    hub: WeakHub,
    outbox: Arc<Outbox>,
    events: Arc<Mutex<Vec<mpsc::Sender<BackplaneEvent>>>>,
    event_capacity: usize,
    _stop: async_channel::Sender<()>,
}

impl std::fmt::Debug for Backplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backplane")
            .field("origin", &self.origin)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Critical sections push or retain senders, or draw a number: nothing a panic can
    // leave half-done.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Backplane {
    /// Attaches a backplane to `hub` and starts its two tasks on `runtime`; `dial` opens
    /// a connection to Redis. Returns at once: the connections come up in the
    /// background ([`events`](Self::events) reports when), and until the publisher is up
    /// topic broadcasts are local only.
    ///
    /// # Errors
    ///
    /// An invalid configuration, or a hub that has a backplane already.
    pub fn start<R: Runtime>(
        hub: &Hub,
        runtime: R,
        dial: DialRedis,
        config: BackplaneConfig,
    ) -> Result<Backplane, BackplaneError> {
        config.validate()?;
        let mut rng = match config.seed {
            Some(seed) => fastrand::Rng::with_seed(seed),
            None => fastrand::Rng::new(),
        };
        let origin = rng.u64(..);
        let counters = Arc::new(Counters::default());
        let (tx, rx) = async_channel::bounded(config.queue_len);
        let outbox = Arc::new(Outbox {
            origin,
            seq: AtomicU64::new(0),
            prefix: config.channel_prefix.clone(),
            max_message: config.max_message_bytes,
            max_bytes: config.queue_bytes,
            tx,
            counters: counters.clone(),
        });
        if !hub.attach(outbox.clone()) {
            return Err(BackplaneError::AlreadyAttached);
        }
        let (stop_tx, stop_rx) = async_channel::bounded(1);
        let events = Arc::new(Mutex::new(Vec::new()));
        let event_capacity = config.event_capacity;
        let shared = Arc::new(Shared {
            rt: runtime.clone(),
            dial,
            cfg: config,
            origin,
            hub: hub.downgrade(),
            counters: counters.clone(),
            events: events.clone(),
            stop: stop_rx,
            rng: Mutex::new(rng),
        });
        let handle = Backplane {
            counters,
            origin,
            hub: hub.downgrade(),
            outbox,
            events,
            event_capacity,
            _stop: stop_tx,
        };
        let span = tracing::info_span!("backplane", origin = format_args!("{origin:016x}"));
        runtime.spawn(
            tracing::Instrument::instrument(publisher(shared.clone(), rx), span.clone()).boxed(),
        );
        runtime.spawn(tracing::Instrument::instrument(subscriber(shared), span).boxed());
        Ok(handle)
    }

    /// This process's origin id, carried by every message it publishes.
    #[must_use]
    pub fn origin(&self) -> u64 {
        self.origin
    }

    /// Counters.
    #[must_use]
    pub fn stats(&self) -> BackplaneStats {
        let c = &self.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        BackplaneStats {
            published: l(&c.published),
            queue_full: l(&c.queue_full),
            dropped_down: l(&c.dropped_down),
            too_large: l(&c.too_large),
            received: l(&c.received),
            own: l(&c.own),
            undecodable: l(&c.undecodable),
            oversized: l(&c.oversized),
            failures: l(&c.failures),
            events_dropped: l(&c.events_dropped),
            publisher_up: c.publisher_up.load(Ordering::Relaxed),
            subscriber_up: c.subscriber_up.load(Ordering::Relaxed),
            queued_bytes: c.queued_bytes.load(Ordering::Relaxed),
        }
    }

    /// A stream of every change in the connections to Redis from now on, starting with
    /// an [`Up`](BackplaneEvent::Up) for each connection up at the call (bounded; see
    /// [`BackplaneConfig::event_capacity`]).
    pub fn events(&self) -> impl Stream<Item = BackplaneEvent> + Send + Unpin + 'static {
        let (mut tx, rx) = mpsc::channel(self.event_capacity);
        // Under the lock the tasks change the flags under: no change is missed or seen
        // twice.
        let mut subscribers = lock(&self.events);
        for (side, up) in [
            (Side::Publisher, &self.counters.publisher_up),
            (Side::Subscriber, &self.counters.subscriber_up),
        ] {
            if up.load(Ordering::Relaxed) {
                // The capacity is at least 1 and each sender has a slot of its own.
                let _ = tx.try_send(BackplaneEvent::Up { side });
            }
        }
        subscribers.push(tx);
        rx
    }

    /// Stops the backplane (as dropping it does).
    pub fn shutdown(self) {}
}

impl Drop for Backplane {
    fn drop(&mut self) {
        if let Some(hub) = self.hub.upgrade() {
            hub.detach(&self.outbox);
        }
        // Dropping `_stop` closes the channel every task waits on.
    }
}

impl<R: Runtime> Shared<R> {
    /// Sets `side`'s flag and tells every subscriber, under the subscribers' lock (see
    /// [`Backplane::events`]).
    fn emit(&self, side: Side, up: bool, event: BackplaneEvent) {
        let mut subscribers = lock(&self.events);
        self.flag(side).store(up, Ordering::Relaxed);
        subscribers.retain_mut(|tx| match tx.try_send(event.clone()) {
            Ok(()) => true,
            Err(e) if e.is_disconnected() => false,
            Err(_) => {
                self.counters.events_dropped.fetch_add(1, Ordering::Relaxed);
                true
            }
        });
    }

    fn flag(&self, side: Side) -> &AtomicBool {
        match side {
            Side::Publisher => &self.counters.publisher_up,
            Side::Subscriber => &self.counters.subscriber_up,
        }
    }

    fn up(&self, side: Side) {
        tracing::info!(%side, "backplane connected");
        self.emit(side, true, BackplaneEvent::Up { side });
    }

    /// Reports a failure and returns the wait before the next attempt.
    fn down(&self, side: Side, error: &io::Error, failures: u32) -> Duration {
        self.counters.failures.fetch_add(1, Ordering::Relaxed);
        let (lo, hi) = self.cfg.backoff.bounds(failures, None);
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let wait = Duration::from_nanos(lock(&self.rng).u64(nanos(lo)..=nanos(hi)));
        tracing::warn!(%side, %error, failures, retry_in = ?wait, "backplane disconnected");
        self.emit(
            side,
            false,
            BackplaneEvent::Down {
                side,
                error: error.to_string(),
                failures,
                retry_in: wait,
            },
        );
        wait
    }

    fn stopped(&self) -> bool {
        self.stop.is_closed() || self.hub.upgrade().is_none()
    }

    /// Runs `work` until it completes, the backplane stops (`None`), or `timeout` passes
    /// (a timed-out error).
    async fn bounded<T>(
        &self,
        work: impl Future<Output = io::Result<T>>,
        timeout: Option<Duration>,
    ) -> Option<io::Result<T>> {
        let stop = pin!(self.stop.recv());
        let deadline = match timeout {
            Some(t) => self.rt.sleep_until(self.rt.now() + t),
            None => futures::future::pending().boxed(),
        };
        let guard = select(stop, deadline);
        match select(pin!(work), guard).await {
            Either::Left((r, _)) => Some(r),
            Either::Right((Either::Left(_), _)) => None,
            Either::Right((Either::Right(_), _)) => {
                Some(Err(io::Error::new(io::ErrorKind::TimedOut, "timed out")))
            }
        }
    }

    /// Sleeps `wait`; `false` if the backplane stopped meanwhile.
    async fn pause(&self, wait: Duration) -> bool {
        let stop = pin!(self.stop.recv());
        let sleep = self.rt.sleep_until(self.rt.now() + wait);
        matches!(select(stop, sleep).await, Either::Right(_)) && !self.stopped()
    }

    async fn connect(&self) -> Option<io::Result<Box<dyn RedisStream>>> {
        self.bounded((self.dial)(), Some(self.cfg.io_timeout)).await
    }

    /// The failure count after one more failure on a connection open since `since`
    /// (`None`: never opened): reset first if it had been up for `stable_after`.
    fn count(&self, failures: u32, since: Option<Instant>) -> u32 {
        let stable = since.is_some_and(|t| {
            self.rt.now().saturating_duration_since(t) >= self.cfg.backoff.stable_after
        });
        if stable {
            1
        } else {
            failures.saturating_add(1)
        }
    }
}

/// The publisher: connects, then pipelines what the outbox holds, a batch at a time.
async fn publisher<R: Runtime>(s: Arc<Shared<R>>, rx: async_channel::Receiver<(Bytes, Bytes)>) {
    let mut failures = 0u32;
    while !s.stopped() {
        let mut since = None;
        let error = match s.connect().await {
            None => break,
            Some(Err(e)) => e,
            Some(Ok(io)) => {
                since = Some(s.rt.now());
                s.up(Side::Publisher);
                match publish_loop(&s, io, &rx).await {
                    None => break,
                    Some(e) => e,
                }
            }
        };
        failures = s.count(failures, since);
        let wait = s.down(Side::Publisher, &error, failures);
        // What was queued when the connection failed is dropped, not sent late.
        drain(&s, &rx);
        if !s.pause(wait).await {
            break;
        }
        drain(&s, &rx);
    }
    s.counters.publisher_up.store(false, Ordering::Relaxed);
    tracing::debug!("backplane publisher stopped");
}

fn drain<R>(s: &Shared<R>, rx: &async_channel::Receiver<(Bytes, Bytes)>) {
    while let Ok((channel, message)) = rx.try_recv() {
        let c = &s.counters;
        c.queued_bytes
            .fetch_sub(channel.len() + message.len(), Ordering::AcqRel);
        c.dropped_down.fetch_add(1, Ordering::Relaxed);
    }
}

/// Publishes until the connection fails (the error) or the backplane stops (`None`).
async fn publish_loop<R: Runtime>(
    s: &Shared<R>,
    io: Box<dyn RedisStream>,
    rx: &async_channel::Receiver<(Bytes, Bytes)>,
) -> Option<io::Error> {
    let (read, mut write) = futures::AsyncReadExt::split(io);
    // Replies to PUBLISH are integers: a small cap.
    let mut replies = Reader::new(read, 1024);
    let mut buf = Vec::new();
    loop {
        // While idle, watch the connection: Redis sends nothing unasked on it, so a byte
        // is a broken protocol and the end of the stream an outage, reported at once
        // rather than at the next broadcast.
        let next = async {
            match select(pin!(rx.recv()), pin!(replies.idle())).await {
                Either::Left((Ok(m), _)) => Ok(Some(m)),
                // Every sender is gone: the hub and the handle were dropped.
                Either::Left((Err(_), _)) => Ok(None),
                Either::Right((e, _)) => Err(e),
            }
        };
        let first = match s.bounded(next, None).await {
            None | Some(Ok(None)) => return None,
            Some(Ok(Some(m))) => m,
            Some(Err(e)) => return Some(e),
        };
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        buf.clear();
        let mut bytes = 0;
        for (channel, message) in &batch {
            resp::encode(&mut buf, &[b"PUBLISH", channel, message]);
            bytes += channel.len() + message.len();
        }
        let n = batch.len();
        drop(batch);
        let exchange = async {
            resp::send(&mut write, &buf).await?;
            for _ in 0..n {
                match replies.value().await? {
                    Value::Int(_) => {}
                    Value::Error(e) => tracing::warn!(error = %e, "redis refused a PUBLISH"),
                    other => {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("unexpected reply to PUBLISH: {other:?}"),
                        ));
                    }
                }
            }
            Ok(())
        };
        let outcome = s.bounded(exchange, Some(s.cfg.io_timeout)).await;
        s.counters.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
        match outcome {
            None => return None,
            Some(Ok(())) => {
                s.counters.published.fetch_add(n as u64, Ordering::Relaxed);
            }
            Some(Err(e)) => {
                // At most once: a batch whose replies did not all come may or may not
                // have reached Redis; it is counted as dropped, never sent again.
                s.counters
                    .dropped_down
                    .fetch_add(n as u64, Ordering::Relaxed);
                return Some(e);
            }
        }
    }
}

/// The subscriber: connects, subscribes to every topic under the prefix, and hands what
/// comes to the local members.
async fn subscriber<R: Runtime>(s: Arc<Shared<R>>) {
    let mut failures = 0u32;
    while !s.stopped() {
        let mut since = None;
        let error = match s.connect().await {
            None => break,
            Some(Err(e)) => e,
            Some(Ok(io)) => match subscribe_loop(&s, io, &mut since).await {
                None => break,
                Some(e) => e,
            },
        };
        failures = s.count(failures, since);
        let wait = s.down(Side::Subscriber, &error, failures);
        if !s.pause(wait).await {
            break;
        }
    }
    s.counters.subscriber_up.store(false, Ordering::Relaxed);
    tracing::debug!("backplane subscriber stopped");
}

/// Receives until the connection fails (the error) or the backplane stops (`None`).
/// `since` is set once subscribed.
async fn subscribe_loop<R: Runtime>(
    s: &Shared<R>,
    io: Box<dyn RedisStream>,
    since: &mut Option<Instant>,
) -> Option<io::Error> {
    let (read, mut write) = futures::AsyncReadExt::split(io);
    let max_bulk = s.cfg.max_message_bytes + wire::HEADER;
    let mut reader = Reader::new(
        read,
        max_bulk.max(s.cfg.channel_prefix.len() + MAX_TOPIC_LEN),
    );
    let pattern = format!("{}*", s.cfg.channel_prefix);
    let mut cmd = Vec::new();
    resp::encode(&mut cmd, &[b"PSUBSCRIBE", pattern.as_bytes()]);
    let subscribe = async {
        resp::send(&mut write, &cmd).await?;
        match reader.value().await? {
            Value::Array(Some(v)) if matches!(v.first(), Some(Value::Bulk(Some(k))) if &k[..] == b"psubscribe") => {
                Ok(())
            }
            other => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unexpected reply to PSUBSCRIBE: {other:?}"),
            )),
        }
    };
    match s.bounded(subscribe, Some(s.cfg.io_timeout)).await? {
        Ok(()) => {}
        Err(e) => return Some(e),
    }
    *since = Some(s.rt.now());
    s.up(Side::Subscriber);
    // Liveness: any byte from Redis counts; a ping every interval makes sure some come.
    let heard = AtomicU64::new(0);
    let read = async {
        loop {
            let value = reader.value().await?;
            heard.fetch_add(1, Ordering::Relaxed);
            handle_push(s, value);
        }
    };
    let ping = async {
        let mut cmd = Vec::new();
        resp::encode(&mut cmd, &[b"PING"]);
        let mut silent = 0u32;
        let mut last = 0;
        loop {
            let at = s.rt.now() + s.cfg.ping_interval;
            s.rt.sleep_until(at).await;
            let now_heard = heard.load(Ordering::Relaxed);
            silent = if now_heard == last { silent + 1 } else { 0 };
            last = now_heard;
            if silent >= 3 {
                return Err::<(), _>(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "redis silent for three ping intervals",
                ));
            }
            resp::send(&mut write, &cmd).await?;
        }
    };
    let both = async {
        match select(pin!(read), pin!(ping)).await {
            Either::Left((r, _)) | Either::Right((r, _)) => r,
        }
    };
    // Neither half ends but with an error.
    s.bounded(both, None).await?.err()
}

/// One push from Redis on the subscribed connection.
fn handle_push<R: Runtime>(s: &Shared<R>, value: Value) {
    let c = &s.counters;
    let Value::Array(Some(items)) = value else {
        return;
    };
    let mut items = items.into_iter();
    let kind = items.next();
    if !matches!(&kind, Some(Value::Bulk(Some(k))) if &k[..] == b"pmessage") {
        // A subscription confirmation or the answer to a ping.
        return;
    }
    let (_pattern, channel, payload) = (items.next(), items.next(), items.next());
    let payload = match payload {
        Some(Value::Bulk(Some(p))) => p,
        Some(Value::TooBig(n)) => {
            c.oversized.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                size = n,
                "backplane message over max_message_bytes; skipped"
            );
            return;
        }
        _ => {
            c.undecodable.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    let topic = match channel {
        Some(Value::Bulk(Some(ch))) => ch
            .strip_prefix(s.cfg.channel_prefix.as_bytes())
            .and_then(|t| std::str::from_utf8(t).ok())
            .filter(|t| check_topic(t).is_ok())
            .map(str::to_owned),
        _ => None,
    };
    let (Some(topic), Some(message)) = (topic, wire::decode(payload)) else {
        c.undecodable.fetch_add(1, Ordering::Relaxed);
        tracing::debug!("backplane message did not decode; dropped");
        return;
    };
    if message.origin == s.origin {
        c.own.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let Some(hub) = s.hub.upgrade() else {
        return;
    };
    c.received.fetch_add(1, Ordering::Relaxed);
    let report = hub.broadcast_local(&topic, &message.frame);
    tracing::trace!(
        topic,
        origin = message.origin,
        seq = message.seq,
        queued = report.queued,
        "backplane message delivered"
    );
}

/// The `host:port` of a Redis URL (`redis://host[:port][/]`, or `host[:port]`); the port
/// defaults to 6379. Neither a password nor a database number is supported.
///
/// # Errors
///
/// [`BackplaneError::Url`] for anything else.
pub fn redis_addr(url: &str) -> Result<String, BackplaneError> {
    let bad = || BackplaneError::Url(url.chars().take(200).collect());
    let rest = url.strip_prefix("redis://").unwrap_or(url);
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() || rest.contains(['/', '@', '?', '#']) || rest.len() > 300 {
        return Err(bad());
    }
    let has_port = match rest.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(':') || host.starts_with('[') => {
            port.parse::<u16>().map_err(|_| bad())?;
            true
        }
        _ => false,
    };
    Ok(if has_port {
        rest.to_owned()
    } else {
        format!("{rest}:6379")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_core::Utf8Bytes;

    fn outbox(
        queue_len: usize,
        max_bytes: usize,
    ) -> (Outbox, async_channel::Receiver<(Bytes, Bytes)>) {
        let (tx, rx) = async_channel::bounded(queue_len);
        let counters = Arc::new(Counters::default());
        counters.publisher_up.store(true, Ordering::Relaxed);
        let outbox = Outbox {
            origin: 1,
            seq: AtomicU64::new(0),
            prefix: "p:".to_owned(),
            max_message: 100,
            max_bytes,
            tx,
            counters,
        };
        (outbox, rx)
    }

    fn frame(n: usize) -> DataFrame {
        DataFrame::Text(Utf8Bytes::from_string("x".repeat(n)))
    }

    /// The outbox never waits and never grows past its bounds: a frame that does not fit
    /// in messages or bytes, or is over the size limit, or comes while the publisher is
    /// down, is counted and dropped.
    #[test]
    fn the_outbox_is_bounded_and_counts_what_it_drops() {
        let (o, rx) = outbox(3, 200);
        let one = "p:t".len() + wire::HEADER + 50;
        o.publish("t", &frame(50));
        o.publish("t", &frame(50));
        assert_eq!(o.counters.queued_bytes.load(Ordering::Relaxed), 2 * one);
        o.publish("t", &frame(50));
        assert_eq!(o.counters.queue_full.load(Ordering::Relaxed), 1, "bytes");
        o.publish("t", &frame(1));
        o.publish("t", &frame(1));
        assert_eq!(o.counters.queue_full.load(Ordering::Relaxed), 2, "messages");
        o.publish("t", &frame(101));
        assert_eq!(o.counters.too_large.load(Ordering::Relaxed), 1);
        o.counters.publisher_up.store(false, Ordering::Relaxed);
        o.publish("t", &frame(1));
        assert_eq!(o.counters.dropped_down.load(Ordering::Relaxed), 1);
        assert_eq!(rx.len(), 3);
        let (channel, message) = rx.try_recv().expect("queued");
        assert_eq!(&channel[..], b"p:t");
        let decoded = wire::decode(message).expect("decodes");
        assert_eq!((decoded.origin, decoded.seq), (1, 0));
    }

    #[test]
    fn configs_out_of_bounds_are_refused() {
        let d = BackplaneConfig::default();
        d.validate().expect("the default is valid");
        for prefix in ["", "a*", "a?", "[x]", "a\\b"] {
            let c = BackplaneConfig {
                channel_prefix: prefix.to_owned(),
                ..d.clone()
            };
            assert_eq!(c.validate(), Err(BackplaneError::Prefix), "{prefix:?}");
        }
        let c = BackplaneConfig {
            queue_bytes: MAX_QUEUE_BYTES + 1,
            ..d.clone()
        };
        assert!(matches!(c.validate(), Err(BackplaneError::Config(_))));
        let c = BackplaneConfig {
            max_message_bytes: 0,
            ..d.clone()
        };
        assert!(matches!(c.validate(), Err(BackplaneError::Config(_))));
        let mut c = d.clone();
        c.backoff.schedule.clear();
        assert!(matches!(c.validate(), Err(BackplaneError::Config(_))));
        let c = BackplaneConfig {
            ping_interval: Duration::MAX,
            ..d
        };
        assert!(matches!(c.validate(), Err(BackplaneError::Config(_))));
    }

    #[test]
    fn redis_urls() {
        assert_eq!(
            redis_addr("redis://127.0.0.1:7000").as_deref(),
            Ok("127.0.0.1:7000")
        );
        assert_eq!(redis_addr("redis://cache/").as_deref(), Ok("cache:6379"));
        assert_eq!(redis_addr("cache:1").as_deref(), Ok("cache:1"));
        assert_eq!(redis_addr("[::1]:7000").as_deref(), Ok("[::1]:7000"));
        for bad in [
            "",
            "redis://",
            "redis://u:p@host",
            "redis://h:99999",
            "redis://h/0",
        ] {
            assert!(redis_addr(bad).is_err(), "{bad:?}");
        }
    }

    // ---- the tasks on a manual clock, against a Redis the test plays -------------------

    use std::task::{Context, Poll};

    use futures::StreamExt;

    use crate::manual_rt::Manual;
    use crate::server::HubConfig;

    fn lock_t<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Moves the clock and lets every task act on it.
    fn advance(rt: &Manual, d: Duration) {
        rt.advance(d);
        rt.run();
    }

    /// One end of an in-memory byte stream.
    struct End {
        rx: mpsc::UnboundedReceiver<Vec<u8>>,
        pending: Vec<u8>,
        tx: mpsc::UnboundedSender<Vec<u8>>,
    }

    fn pipe() -> (End, End) {
        let (a_tx, a_rx) = mpsc::unbounded();
        let (b_tx, b_rx) = mpsc::unbounded();
        let a = End {
            rx: a_rx,
            pending: Vec::new(),
            tx: b_tx,
        };
        let b = End {
            rx: b_rx,
            pending: Vec::new(),
            tx: a_tx,
        };
        (a, b)
    }

    impl AsyncRead for End {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            if self.pending.is_empty() {
                match self.rx.poll_next_unpin(cx) {
                    Poll::Ready(Some(v)) => self.pending = v,
                    Poll::Ready(None) => return Poll::Ready(Ok(0)),
                    Poll::Pending => return Poll::Pending,
                }
            }
            let n = buf.len().min(self.pending.len());
            buf[..n].copy_from_slice(&self.pending[..n]);
            self.pending.drain(..n);
            Poll::Ready(Ok(n))
        }
    }

    impl AsyncWrite for End {
        fn poll_write(
            self: std::pin::Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            match self.tx.unbounded_send(buf.to_vec()) {
                Ok(()) => Poll::Ready(Ok(buf.len())),
                Err(_) => Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
            }
        }
        fn poll_flush(self: std::pin::Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: std::pin::Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.tx.close_channel();
            Poll::Ready(Ok(()))
        }
    }

    impl End {
        /// Everything the other side wrote so far.
        fn written(&mut self) -> Vec<u8> {
            let mut out = Vec::new();
            while let Ok(v) = self.rx.try_recv() {
                out.extend(v);
            }
            out
        }
        fn say(&self, bytes: &[u8]) {
            let _ = self.tx.unbounded_send(bytes.to_vec());
        }
    }

    /// The Redis side of every connection the backplane opened, in order.
    type Server = Arc<Mutex<Vec<End>>>;

    fn start(rt: &Manual, hub: &Hub) -> (Backplane, Server) {
        let server: Server = Arc::default();
        let accepted = server.clone();
        let dial: DialRedis = Arc::new(move || {
            let (client, redis) = pipe();
            lock_t(&accepted).push(redis);
            async move { Ok(Box::new(client) as Box<dyn RedisStream>) }.boxed()
        });
        let config = BackplaneConfig {
            backoff: BackoffConfig {
                schedule: vec![Duration::from_secs(1), Duration::from_secs(2)],
                jitter: tether_core::Jitter::None,
                ..BackoffConfig::default()
            },
            ping_interval: Duration::from_secs(10),
            seed: Some(7),
            ..BackplaneConfig::default()
        };
        let backplane = Backplane::start(hub, rt.clone(), dial, config).expect("valid config");
        (backplane, server)
    }

    fn events(stream: &mut (impl Stream<Item = BackplaneEvent> + Unpin)) -> Vec<BackplaneEvent> {
        let mut out = Vec::new();
        while let Some(Some(e)) = stream.next().now_or_never() {
            out.push(e);
        }
        out
    }

    const SUBSCRIBED: &[u8] = b"*3\r\n$10\r\npsubscribe\r\n$12\r\ntether:hub:*\r\n:1\r\n";

    /// A Redis that accepts the subscription and then says nothing, not even to pings:
    /// the subscriber pings every interval and gives up after three silent ones — not
    /// before — reports it, and dials again after the backoff schedule's first step. A
    /// Redis that answers the pings keeps the subscription up.
    #[test]
    fn a_silent_redis_is_given_up_after_three_pings_and_dialled_again_after_the_backoff() {
        let rt = Manual::new();
        let hub = Hub::new(HubConfig::default()).expect("valid close code");
        let (backplane, server) = start(&rt, &hub);
        let mut stream = backplane.events();
        rt.run();
        assert_eq!(lock_t(&server).len(), 2, "publisher and subscriber dialled");
        let sub = {
            let mut conns = lock_t(&server);
            let i = (0..2)
                .find(|&i| conns[i].written().starts_with(b"*2\r\n$10\r\nPSUBSCRIBE"))
                .expect("a PSUBSCRIBE");
            conns[i].say(SUBSCRIBED);
            i
        };
        rt.run();
        let up = events(&mut stream);
        assert!(
            up.contains(&BackplaneEvent::Up {
                side: Side::Subscriber
            }),
            "{up:?}"
        );
        assert!(
            up.contains(&BackplaneEvent::Up {
                side: Side::Publisher
            }),
            "{up:?}"
        );

        // Answered pings keep it up.
        for _ in 0..5 {
            advance(&rt, Duration::from_secs(10));
            let mut conns = lock_t(&server);
            assert_eq!(conns[sub].written(), b"*1\r\n$4\r\nPING\r\n");
            conns[sub].say(b"*2\r\n$4\r\npong\r\n$0\r\n\r\n");
        }
        rt.run();
        assert!(events(&mut stream).is_empty());
        assert!(backplane.stats().subscriber_up);

        // Silence from now on. The interval the last pong came in was heard from; two
        // silent intervals after it are not yet an outage, the third is.
        for _ in 0..3 {
            advance(&rt, Duration::from_secs(10));
        }
        assert!(
            events(&mut stream).is_empty(),
            "not before three silent intervals"
        );
        advance(&rt, Duration::from_secs(10));
        let down = events(&mut stream);
        assert!(
            matches!(
                down.as_slice(),
                [BackplaneEvent::Down { side: Side::Subscriber, failures: 1, retry_in, .. }]
                    if *retry_in == Duration::from_secs(1)
            ),
            "{down:?}"
        );
        assert!(!backplane.stats().subscriber_up);
        assert_eq!(backplane.stats().failures, 1);
        assert!(
            backplane.stats().publisher_up,
            "the publisher is not concerned"
        );

        // The backoff's first step, then a new connection and subscription.
        advance(&rt, Duration::from_millis(999));
        assert_eq!(lock_t(&server).len(), 2, "not before the wait");
        advance(&rt, Duration::from_millis(1));
        assert_eq!(lock_t(&server).len(), 3, "dialled again");
        {
            let mut conns = lock_t(&server);
            assert!(conns[2].written().starts_with(b"*2\r\n$10\r\nPSUBSCRIBE"));
            conns[2].say(SUBSCRIBED);
        }
        rt.run();
        assert_eq!(
            events(&mut stream),
            [BackplaneEvent::Up {
                side: Side::Subscriber
            }]
        );
        drop(backplane);
        rt.run();
        assert!(rt.tasks() == 0, "dropping the handle ends both tasks");
    }

    fn manual() -> Manual {
        Manual::new()
    }

    /// The publisher sees a closed connection at once, while idle (not at the next
    /// broadcast); broadcasts meanwhile are local and counted; its waits follow the
    /// backoff schedule (1 s, then 2 s), and the attempt counter resets after a connection
    /// that stayed up for `stable_after` (5 s).
    #[test]
    fn a_closed_publisher_is_seen_at_once_and_its_waits_follow_the_schedule() {
        let rt = manual();
        let hub = Hub::new(HubConfig::default()).expect("valid close code");
        let (backplane, server) = start(&rt, &hub);
        let mut stream = backplane.events();
        rt.run();
        let publisher = {
            let mut conns = lock_t(&server);
            let sub = (0..2)
                .find(|&i| conns[i].written().starts_with(b"*2\r\n$10\r\nPSUBSCRIBE"))
                .expect("a PSUBSCRIBE");
            conns[sub].say(SUBSCRIBED);
            1 - sub
        };
        rt.run();
        let frame = DataFrame::Text(Utf8Bytes::from_static("hi"));
        hub.broadcast_to("t", frame.clone());
        rt.run();
        {
            let mut conns = lock_t(&server);
            let written = conns[publisher].written();
            assert!(written.starts_with(b"*3\r\n$7\r\nPUBLISH\r\n$12\r\ntether:hub:t\r\n"));
            conns[publisher].say(b":1\r\n");
        }
        rt.run();
        assert_eq!(backplane.stats().published, 1);
        let _ = events(&mut stream);

        let close = |i: usize| lock_t(&server)[i].tx.close_channel();
        let retry = |events: Vec<BackplaneEvent>| match events.as_slice() {
            [
                BackplaneEvent::Down {
                    side: Side::Publisher,
                    failures,
                    retry_in,
                    ..
                },
            ] => (*failures, *retry_in),
            other => panic!("{other:?}"),
        };
        close(publisher);
        rt.run();
        assert_eq!(retry(events(&mut stream)), (1, Duration::from_secs(1)));
        hub.broadcast_to("t", frame.clone());
        assert_eq!(backplane.stats().dropped_down, 1, "local only meanwhile");

        advance(&rt, Duration::from_secs(1));
        assert_eq!(lock_t(&server).len(), 3);
        assert_eq!(
            events(&mut stream),
            [BackplaneEvent::Up {
                side: Side::Publisher
            }]
        );
        close(2);
        rt.run();
        assert_eq!(retry(events(&mut stream)), (2, Duration::from_secs(2)));
        advance(&rt, Duration::from_millis(1999));
        assert_eq!(lock_t(&server).len(), 3, "not before the second step");
        advance(&rt, Duration::from_millis(1));
        assert_eq!(lock_t(&server).len(), 4);
        // Up for stable_after: the next failure counts as the first again.
        advance(&rt, Duration::from_secs(5));
        close(3);
        rt.run();
        let got = events(&mut stream);
        assert_eq!(
            retry(got[1..].to_vec()),
            (1, Duration::from_secs(1)),
            "{got:?}"
        );
    }
}
