//! The application's handle on one guarded server connection.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::channel::{mpsc, oneshot};
use futures::future::{FutureExt, Shared};
use tether_core::server::{CloseError, EndCause, ServerConfig};
use tether_core::{CloseCode, ConfigError, ConnId, DataFrame};

/// How a guarded connection behaves: the core's [`ServerConfig`] (liveness, send
/// deadline, close timeout, the bound on queued frames) and what only the driver needs.
///
/// ```
/// use std::time::Duration;
/// use tether_driver::server::GuardConfig;
///
/// let mut config = GuardConfig::default();
/// config.server.send_deadline = Duration::from_secs(2);
/// config.server.slow_write_warning = Duration::from_millis(500);
/// config.server.max_pending_writes = 256; // the outbound queue of each connection
/// assert!(config.validate().is_ok());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuardConfig {
    /// The connection's rules. `max_pending_writes` bounds the frames the application
    /// has queued and not yet seen written ([`Guarded::try_send`] refuses more with
    /// [`DeliveryError::Full`]); pings come on top.
    pub server: ServerConfig,
    /// How long the WebSocket upgrade of an accepted socket may take. Default 10 s: a
    /// client that opens a socket and never upgrades must not hold it for ever. At most
    /// [`MAX_DURATION`](tether_core::MAX_DURATION) (one year).
    pub upgrade_timeout: Duration,
    /// Inbound messages buffered for [`Guarded::recv`]; when the application does not
    /// keep up, further messages are dropped and counted
    /// ([`Guarded::dropped_inbound`]) rather than stopping reads, which would starve
    /// liveness. Default 256; at most [`MAX_INBOUND_CAPACITY`].
    pub inbound_capacity: usize,
    /// Bytes of inbound messages (their payloads) buffered for [`Guarded::recv`] and not
    /// yet taken, beside the count above: a message that would take the buffer over it
    /// is dropped and counted in [`Guarded::dropped_inbound`], exactly as when the count
    /// is full, never buffered. Taking a message with `recv` frees its bytes.
    ///
    /// A message larger than the whole budget is still taken when nothing else is
    /// buffered, so every message the codec admits (`server.max_inbound_frame`) can
    /// reach the application: at most `max(inbound_bytes, server.max_inbound_frame)`
    /// bytes are held per connection. Default 4 MiB; at most [`MAX_INBOUND_BYTES`].
    pub inbound_bytes: usize,
    /// The admission hook: sees each upgrade request (path, headers, `Origin`, offered
    /// subprotocols, peer address) and accepts it, optionally with a subprotocol and
    /// response headers, or rejects it with an HTTP status and body. Default `None`:
    /// every well-formed upgrade is accepted, with no subprotocol.
    pub admit: Option<super::admission::Admit>,
    /// Limits on connections and pending upgrades, shared with every accept given a clone
    /// of the same [`Gate`](super::Gate), and its counters of refusals. Default `None`:
    /// no limit, nothing counted.
    pub gate: Option<super::gate::Gate>,
    /// The longest upgrade request head read (request line and headers): a longer one is
    /// answered 431 and nothing more of it is held. Default 16 KiB; at most
    /// [`MAX_REQUEST_HEAD`].
    pub max_request_head: usize,
}

impl Default for GuardConfig {
    fn default() -> Self {
        GuardConfig {
            server: ServerConfig::default(),
            upgrade_timeout: Duration::from_secs(10),
            inbound_capacity: 256,
            inbound_bytes: 4 << 20,
            admit: None,
            gate: None,
            max_request_head: 16 * 1024,
        }
    }
}

/// The ceiling of [`GuardConfig::inbound_capacity`]: 1,048,576 messages. The channel
/// behind it cannot be built with a capacity near `usize::MAX`, and a buffer of a million
/// messages is already more than a connection should hold.
pub const MAX_INBOUND_CAPACITY: usize = 1 << 20;

/// The ceiling of [`GuardConfig::max_request_head`]: 1 MiB, beyond any browser's request.
pub const MAX_REQUEST_HEAD: usize = 1 << 20;

/// The ceiling of [`GuardConfig::inbound_bytes`]: 1 GiB. More than that per connection is
/// a mistake, and the ceiling keeps the byte accounting far from overflow.
pub const MAX_INBOUND_BYTES: usize = 1 << 30;

impl GuardConfig {
    /// Checks the configuration: the [`ServerConfig`] rules, then a zero or longer than
    /// one year ([`MAX_DURATION`](tether_core::MAX_DURATION)) `upgrade_timeout`, and an
    /// `inbound_capacity` of zero or above [`MAX_INBOUND_CAPACITY`], an `inbound_bytes` of
    /// zero or above [`MAX_INBOUND_BYTES`].
    ///
    /// # Errors
    ///
    /// The first problem found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate()?;
        if self.upgrade_timeout.is_zero() {
            return Err(ConfigError::Zero("upgrade_timeout"));
        }
        if self.upgrade_timeout > tether_core::MAX_DURATION {
            return Err(ConfigError::TooLong {
                field: "upgrade_timeout",
                max: tether_core::MAX_DURATION,
            });
        }
        if self.inbound_capacity == 0 {
            return Err(ConfigError::ZeroBound("inbound_capacity"));
        }
        if self.inbound_capacity > MAX_INBOUND_CAPACITY {
            return Err(ConfigError::TooLarge {
                field: "inbound_capacity",
                max: MAX_INBOUND_CAPACITY as u64,
            });
        }
        if self.max_request_head < 64 {
            return Err(ConfigError::TooSmall {
                field: "max_request_head",
                min: 64,
            });
        }
        if self.max_request_head > MAX_REQUEST_HEAD {
            return Err(ConfigError::TooLarge {
                field: "max_request_head",
                max: MAX_REQUEST_HEAD as u64,
            });
        }
        if self.inbound_bytes == 0 {
            return Err(ConfigError::ZeroBound("inbound_bytes"));
        }
        if self.inbound_bytes > MAX_INBOUND_BYTES {
            return Err(ConfigError::TooLarge {
                field: "inbound_bytes",
                max: MAX_INBOUND_BYTES as u64,
            });
        }
        Ok(())
    }

    /// The configuration the connection's machine runs with: room for the pings that may
    /// be pending on top of the application's frames (one per ping interval within a send
    /// deadline, plus the probe after a clock jump), so the machine never refuses a
    /// frame the handle admitted.
    pub(crate) fn machine_config(&self) -> ServerConfig {
        let s = &self.server;
        let pings = s.liveness.ping_interval.map_or(0, |p| {
            let per = s.send_deadline.as_nanos() / p.as_nanos().max(1);
            usize::try_from(per).unwrap_or(usize::MAX).saturating_add(2)
        });
        ServerConfig {
            max_pending_writes: s.max_pending_writes.saturating_add(pings),
            ..s.clone()
        }
    }
}

/// Why a frame was not (or may not have been) delivered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeliveryError {
    /// The connection's outbound queue holds `max_pending_writes` frames not yet written:
    /// nothing was queued. The connection itself is still up.
    #[error("the outbound queue is full")]
    Full,
    /// The connection has ended (or ended before the frame was written).
    #[error("the connection is dead: {0}")]
    Dead(EndCause),
    /// [`Hub::join`](super::Hub::join) refused a new member: the hub already has its
    /// [`max_members`](super::HubConfig::max_members). The connection is left as it is.
    #[error("the hub is full: it already has its maximum of {max} members")]
    HubFull {
        /// The hub's limit.
        max: usize,
    },
}

pub(crate) type Reply = oneshot::Sender<Result<(), DeliveryError>>;

/// What a handle asks of the connection task.
pub(crate) enum Cmd {
    Send {
        frame: DataFrame,
        reply: Option<Reply>,
    },
    Close(CloseCode, String),
    Terminate,
}

type EndHook = Box<dyn FnOnce(&EndCause, Instant) + Send>;

/// How the connection ended, and who wants to know.
struct End {
    cause: Option<EndCause>,
    hooks: Vec<EndHook>,
    /// Fires once, at the end; every `closed()` awaits a clone of its receiver.
    notify: Option<oneshot::Sender<EndCause>>,
}

/// State the task and the handles share.
pub(crate) struct State {
    pub(crate) id: ConnId,
    peer: Option<SocketAddr>,
    pub(crate) capacity: usize,
    /// Frames admitted by `try_send`/`send` and not yet written or refused.
    pub(crate) outstanding: AtomicUsize,
    ended: AtomicBool,
    end: Mutex<End>,
    pub(crate) inbound_dropped: AtomicU64,
    /// Payload bytes of the messages buffered for `recv` and not yet taken: charged by
    /// the task when it buffers one, released by `recv` when it hands one over.
    inbound_bytes: AtomicUsize,
    /// [`GuardConfig::inbound_bytes`].
    inbound_budget: usize,
    pub(crate) now: Arc<dyn Fn() -> Instant + Send + Sync>,
    closed: Shared<oneshot::Receiver<EndCause>>,
    /// Whether the application has taken what was buffered and waits for more.
    pub(crate) catch_up: super::catch_up::CatchUp,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every critical section is a few assignments or pushes; a panic inside one cannot
    // leave the data half-updated, so poisoning is ignored.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl State {
    pub(crate) fn new(
        id: ConnId,
        peer: Option<SocketAddr>,
        capacity: usize,
        inbound_budget: usize,
        now: Arc<dyn Fn() -> Instant + Send + Sync>,
    ) -> Self {
        let (notify, closed) = oneshot::channel();
        State {
            id,
            peer,
            capacity,
            outstanding: AtomicUsize::new(0),
            ended: AtomicBool::new(false),
            end: Mutex::new(End {
                cause: None,
                hooks: Vec::new(),
                notify: Some(notify),
            }),
            inbound_dropped: AtomicU64::new(0),
            inbound_bytes: AtomicUsize::new(0),
            inbound_budget,
            now,
            closed: closed.shared(),
            catch_up: super::catch_up::CatchUp::default(),
        }
    }

    /// Charges `size` bytes to the inbound buffer if they fit the budget (or if nothing is
    /// buffered: a message larger than the budget must still be deliverable); `false`
    /// means the message must be dropped. Only the task charges, but `recv` releases
    /// concurrently, hence the compare-and-swap loop: the total never exceeds the budget,
    /// not even for an instant.
    pub(crate) fn charge_inbound(&self, size: usize) -> bool {
        self.inbound_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                let total = held.checked_add(size)?;
                (held == 0 || total <= self.inbound_budget).then_some(total)
            })
            .is_ok()
    }

    /// Payload bytes buffered for `recv` and not yet taken.
    pub(crate) fn inbound_buffered(&self) -> usize {
        self.inbound_bytes.load(Ordering::Acquire)
    }

    /// Gives back the bytes of a message taken by `recv` (or never buffered after all).
    pub(crate) fn release_inbound(&self, size: usize) {
        // Saturating: every release matches an earlier charge of the same size, so this
        // never goes below zero; saturation only keeps a future bug from wrapping.
        let _ = self
            .inbound_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                Some(held.saturating_sub(size))
            });
    }

    pub(crate) fn cause(&self) -> Option<EndCause> {
        if !self.ended.load(Ordering::Acquire) {
            return None;
        }
        lock(&self.end).cause.clone()
    }

    /// Records the end and runs every hook (outside the lock: a hook may take others).
    pub(crate) fn finish(&self, cause: EndCause, at: Instant) {
        let hooks = {
            let mut end = lock(&self.end);
            if end.cause.is_some() {
                return;
            }
            end.cause = Some(cause.clone());
            self.ended.store(true, Ordering::Release);
            if let Some(notify) = end.notify.take() {
                let _ = notify.send(cause.clone());
            }
            std::mem::take(&mut end.hooks)
        };
        for hook in hooks {
            hook(&cause, at);
        }
    }

    /// Registers `hook` to run when the connection ends; the cause if it already has.
    pub(crate) fn on_end(&self, hook: EndHook) -> Result<(), EndCause> {
        let mut end = lock(&self.end);
        match &end.cause {
            Some(cause) => Err(cause.clone()),
            None => {
                end.hooks.push(hook);
                Ok(())
            }
        }
    }
}

/// What every clone of a handle shares; when the last one goes, the command channel
/// closes and the task closes the connection (1001).
struct HandleInner {
    shared: Arc<State>,
    cmds: mpsc::UnboundedSender<Cmd>,
    inbound: futures::lock::Mutex<mpsc::Receiver<DataFrame>>,
}

/// A guarded server connection: an accepted WebSocket whose task enforces liveness, the
/// send deadline and the close timeout, and whose sends never wait on the peer for
/// longer than the send deadline.
///
/// Cheap to clone; every clone is the same connection. When the last clone is dropped
/// the connection is closed with 1001 (going away).
///
/// ```no_run
/// # async fn demo(conn: tether_driver::server::Guarded) {
/// use tether_driver::server::DeliveryError;
/// use tether_driver::tether_core::{CloseCode, DataFrame, Utf8Bytes};
///
/// let frame = DataFrame::Text(Utf8Bytes::from_static(r#"{"type":"update"}"#));
/// match conn.send(frame).await {
///     Ok(()) => {}                                   // on the wire
///     Err(DeliveryError::Full) => {}                 // its queue is full; nothing queued
///     Err(DeliveryError::Dead(cause)) => eprintln!("gone: {cause}"),
///     Err(_) => {}
/// }
/// conn.close(CloseCode::NORMAL, "bye").unwrap();
/// let cause = conn.closed().await;
/// # let _ = cause; }
/// ```
#[derive(Clone)]
pub struct Guarded {
    inner: Arc<HandleInner>,
}

impl std::fmt::Debug for Guarded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guarded")
            .field("id", &self.id())
            .field("peer", &self.inner.shared.peer)
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

impl Guarded {
    pub(crate) fn new(
        shared: Arc<State>,
        cmds: mpsc::UnboundedSender<Cmd>,
        inbound: mpsc::Receiver<DataFrame>,
    ) -> Self {
        Guarded {
            inner: Arc::new(HandleInner {
                shared,
                cmds,
                inbound: futures::lock::Mutex::new(inbound),
            }),
        }
    }

    /// The connection's id (unique in the process).
    #[must_use]
    pub fn id(&self) -> ConnId {
        self.inner.shared.id
    }

    /// The peer's address, if the accept helper knew it.
    #[must_use]
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.inner.shared.peer
    }

    /// Queues a frame without waiting: it is written in order after the frames queued
    /// before it, and the connection is aborted if it is not on the wire within the send
    /// deadline. This is what a [`Hub`](super::Hub) broadcast does for every member.
    ///
    /// # Errors
    ///
    /// [`DeliveryError::Full`] when `max_pending_writes` frames are queued and not yet
    /// written (nothing was queued), [`DeliveryError::Dead`] once the connection has
    /// ended.
    pub fn try_send(&self, frame: DataFrame) -> Result<(), DeliveryError> {
        self.submit(frame, None)
    }

    /// Sends a frame and waits until it is written. The wait ends with the write, or with
    /// the connection: one that cannot write the frame within the send deadline (counted
    /// from the moment its task takes the frame, immediately unless the runtime is
    /// starved) is aborted, and `send` returns [`DeliveryError::Dead`]. It never panics
    /// and never waits for the peer beyond that.
    ///
    /// # Errors
    ///
    /// See [`try_send`](Self::try_send); [`DeliveryError::Dead`] also when the connection
    /// ended before the frame was written.
    pub async fn send(&self, frame: DataFrame) -> Result<(), DeliveryError> {
        let (tx, rx) = oneshot::channel();
        self.submit(frame, Some(tx))?;
        match rx.await {
            Ok(result) => result,
            // The task dropped the reply without answering: it is gone.
            Err(_) => Err(DeliveryError::Dead(self.cause_or_terminated())),
        }
    }

    fn submit(&self, frame: DataFrame, reply: Option<Reply>) -> Result<(), DeliveryError> {
        let shared = &self.inner.shared;
        if let Some(cause) = shared.cause() {
            return Err(DeliveryError::Dead(cause));
        }
        // Reserve a slot first, so that concurrent senders never exceed the bound.
        if shared.outstanding.fetch_add(1, Ordering::AcqRel) >= shared.capacity {
            shared.outstanding.fetch_sub(1, Ordering::AcqRel);
            return Err(DeliveryError::Full);
        }
        if self
            .inner
            .cmds
            .unbounded_send(Cmd::Send { frame, reply })
            .is_err()
        {
            shared.outstanding.fetch_sub(1, Ordering::AcqRel);
            return Err(DeliveryError::Dead(self.cause_or_terminated()));
        }
        Ok(())
    }

    fn cause_or_terminated(&self) -> EndCause {
        self.inner.shared.cause().unwrap_or(EndCause::Terminated)
    }

    /// Closes the connection with `code` and `reason`: frames not yet written are
    /// dropped, a close frame goes out, and the connection is aborted if the peer does not
    /// answer within the close timeout. Returns at once; [`closed`](Self::closed) waits.
    /// Idempotent.
    ///
    /// # Errors
    ///
    /// A [`CloseError`] for a code that may not be sent or a reason over 123 bytes;
    /// nothing happened then.
    pub fn close(&self, code: CloseCode, reason: &str) -> Result<(), CloseError> {
        CloseError::check(code, reason)?;
        let _ = self
            .inner
            .cmds
            .unbounded_send(Cmd::Close(code, reason.to_owned()));
        Ok(())
    }

    /// Aborts the connection at once, without a close handshake. Idempotent.
    pub fn terminate(&self) {
        let _ = self.inner.cmds.unbounded_send(Cmd::Terminate);
    }

    /// Whether the connection has ended.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.inner.shared.cause().is_some()
    }

    /// How the connection ended, once it has.
    #[must_use]
    pub fn end_cause(&self) -> Option<EndCause> {
        self.inner.shared.cause()
    }

    /// Waits until the connection has ended and returns how.
    pub async fn closed(&self) -> EndCause {
        let closed = self.inner.shared.closed.clone();
        // The sender lives as long as the shared state and fires at the end; a dropped
        // sender means the task is gone without reporting (its runtime shut down).
        closed.await.unwrap_or(EndCause::Terminated)
    }

    /// The next data frame from the peer; `None` once the connection has ended and every
    /// buffered frame was taken.
    ///
    /// Taking a message frees its bytes in the [`GuardConfig::inbound_bytes`] budget, so
    /// an application that reads keeps receiving.
    pub async fn recv(&self) -> Option<DataFrame> {
        let shared = &self.inner.shared;
        let waiting = shared.catch_up.enter();
        let frame = self.inner.inbound.lock().await.next().await;
        // No await between taking the message and releasing its bytes: a cancelled
        // `recv` either took nothing or released what it took. The call stops waiting
        // before its message counts as taken (see `CatchUp::poll_caught_up`).
        drop(waiting);
        if let Some(frame) = &frame {
            shared.release_inbound(payload_len(frame));
            shared.catch_up.taken();
        }
        frame
    }

    /// Frames queued and not yet written.
    #[must_use]
    pub fn queued(&self) -> usize {
        self.inner.shared.outstanding.load(Ordering::Acquire)
    }

    /// Inbound messages dropped because [`recv`](Self::recv) did not keep up: the buffer
    /// held [`GuardConfig::inbound_capacity`] messages, or the message would have taken
    /// it over [`GuardConfig::inbound_bytes`].
    #[must_use]
    pub fn dropped_inbound(&self) -> u64 {
        self.inner.shared.inbound_dropped.load(Ordering::Relaxed)
    }

    /// Payload bytes of the inbound messages buffered for [`recv`](Self::recv) and not yet
    /// taken; at most [`GuardConfig::inbound_bytes`], or one message larger than that.
    #[must_use]
    pub fn inbound_bytes(&self) -> usize {
        self.inner.shared.inbound_buffered()
    }

    /// The connection's clock (its runtime's).
    pub(crate) fn now(&self) -> Instant {
        (self.inner.shared.now)()
    }

    /// Runs `hook` when the connection ends, or returns how it already did.
    pub(crate) fn on_end(
        &self,
        hook: impl FnOnce(&EndCause, Instant) + Send + 'static,
    ) -> Result<(), EndCause> {
        self.inner.shared.on_end(Box::new(hook))
    }
}

/// What a message costs in the inbound byte budget: its payload.
pub(crate) fn payload_len(frame: &DataFrame) -> usize {
    match frame {
        DataFrame::Text(t) => t.len(),
        DataFrame::Binary(b) => b.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reliability review §2: `upgrade_timeout = Duration::MAX` passed validation and
    /// overflowed `now + upgrade_timeout` at the first accept; a capacity near
    /// `usize::MAX` panics in the channel constructor.
    #[test]
    fn values_above_the_ceilings_are_refused() {
        let d = GuardConfig::default();
        d.validate().unwrap();
        let forever = GuardConfig {
            upgrade_timeout: Duration::MAX,
            ..d.clone()
        };
        assert_eq!(
            forever.validate(),
            Err(ConfigError::TooLong {
                field: "upgrade_timeout",
                max: tether_core::MAX_DURATION
            })
        );
        let huge = GuardConfig {
            inbound_capacity: usize::MAX,
            ..d.clone()
        };
        assert!(matches!(
            huge.validate(),
            Err(ConfigError::TooLarge {
                field: "inbound_capacity",
                ..
            })
        ));
        let no_bytes = GuardConfig {
            inbound_bytes: 0,
            ..d.clone()
        };
        assert_eq!(
            no_bytes.validate(),
            Err(ConfigError::ZeroBound("inbound_bytes"))
        );
        let many_bytes = GuardConfig {
            inbound_bytes: MAX_INBOUND_BYTES + 1,
            ..d.clone()
        };
        assert_eq!(
            many_bytes.validate(),
            Err(ConfigError::TooLarge {
                field: "inbound_bytes",
                max: MAX_INBOUND_BYTES as u64
            })
        );
        let mut server = d;
        server.server.send_deadline = Duration::MAX;
        assert!(matches!(
            server.validate(),
            Err(ConfigError::TooLong {
                field: "send_deadline",
                ..
            })
        ));
    }
}
