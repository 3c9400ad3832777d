//! A set of guarded connections and a broadcast that never waits on the slowest one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use futures::Stream;
use futures::channel::mpsc;
use tether_core::server::{CloseError, EndCause};
use tether_core::{CloseCode, ConnId, DataFrame};

use super::backplane::Outbox;
use super::guard::{DeliveryError, Guarded};
use super::roster::Members;

/// How a [`Hub`] treats its members.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubConfig {
    /// The close code sent to a member evicted because its outbound queue overflowed.
    /// Default 1013 (try again later): the member was too slow for this hub's rate, and a
    /// client that reconnects later gets a fresh start (tether's own client waits at least
    /// 30 s before it does).
    pub overflow_code: CloseCode,
    /// The reason sent with it. Default `"slow consumer"`.
    pub overflow_reason: String,
    /// Departures buffered per [`departures`](Hub::departures) subscriber; a subscriber
    /// that does not keep up misses departures (counted in
    /// [`HubStats::departures_dropped`]). Default 1024; a larger value than
    /// [`MAX_DEPARTURE_CAPACITY`] counts as that ceiling.
    pub departure_capacity: usize,
    /// The most members the hub holds; a [`join`](Hub::join) beyond it is refused with
    /// [`DeliveryError::HubFull`]. Default [`DEFAULT_MAX_MEMBERS`] (100,000); a larger
    /// value than [`MAX_MEMBERS`] counts as that ceiling, and 0 refuses every join.
    ///
    /// A limit by default, not an unbounded set: a server that joins every accepted
    /// connection would otherwise grow its hub (and the cost of each broadcast, a few
    /// atomic operations per member) with whatever the internet sends. 100,000 is well
    /// above what one process serves with the usual file-descriptor limits, so only a
    /// runaway hits it; split larger audiences into topics or processes.
    pub max_members: usize,
    /// The most topics one member is in at a time; a
    /// [`join_topic`](Hub::join_topic) beyond it is refused with
    /// [`TopicError::TooMany`]. Default 64; a larger value than
    /// [`MAX_TOPICS_PER_MEMBER`] counts as that ceiling. Topics are often named by what
    /// clients ask for, so a client must not be able to put itself in millions of them.
    pub max_topics_per_member: usize,
}

/// The ceiling of [`HubConfig::max_topics_per_member`].
pub const MAX_TOPICS_PER_MEMBER: usize = 4096;

/// The longest topic name, in bytes. Names travel in the backplane's channel names and
/// often come from clients, so they are bounded.
pub const MAX_TOPIC_LEN: usize = 256;

/// Why a member could not join a topic.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TopicError {
    /// The connection is not a member of the hub (join it first).
    #[error("not a member of the hub")]
    NotMember,
    /// The topic's name is empty.
    #[error("the topic name is empty")]
    Empty,
    /// The topic's name is longer than [`MAX_TOPIC_LEN`].
    #[error("the topic name is {len} bytes long, more than {max}")]
    TooLong {
        /// The name's length.
        len: usize,
        /// [`MAX_TOPIC_LEN`].
        max: usize,
    },
    /// The member is already in [`HubConfig::max_topics_per_member`] topics.
    #[error("the member is already in its maximum of {max} topics")]
    TooMany {
        /// The limit.
        max: usize,
    },
}

/// Checks a topic's name.
pub(crate) fn check_topic(topic: &str) -> Result<(), TopicError> {
    if topic.is_empty() {
        return Err(TopicError::Empty);
    }
    if topic.len() > MAX_TOPIC_LEN {
        return Err(TopicError::TooLong {
            len: topic.len(),
            max: MAX_TOPIC_LEN,
        });
    }
    Ok(())
}

/// The default of [`HubConfig::max_members`].
pub const DEFAULT_MAX_MEMBERS: usize = 100_000;

/// The ceiling of [`HubConfig::max_members`]: 16,777,216 members. A broadcast to more
/// would take a noticeable fraction of a second of one core.
pub const MAX_MEMBERS: usize = 1 << 24;

/// The ceiling of [`HubConfig::departure_capacity`]: 1,048,576 departures per subscriber.
/// The channel behind a subscription cannot be made arbitrarily large, and a subscriber
/// that far behind has stopped reading.
pub const MAX_DEPARTURE_CAPACITY: usize = 1 << 20;

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            overflow_code: CloseCode::TRY_AGAIN_LATER,
            overflow_reason: "slow consumer".to_owned(),
            departure_capacity: 1024,
            max_members: DEFAULT_MAX_MEMBERS,
            max_topics_per_member: 64,
        }
    }
}

/// Why a member left the hub.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeaveReason {
    /// Evicted: its outbound queue was full when a broadcast came. It was closed with the
    /// hub's `overflow_code`.
    Overflow,
    /// Its connection ended: a missed send deadline or a silent peer (evictions by the
    /// connection's guard), a failed write, the peer's close or drop, or the application's
    /// own close.
    Ended(EndCause),
    /// [`Hub::remove`] took it out (its connection is left as it is).
    Removed,
}

impl LeaveReason {
    /// Whether the member was thrown out for being slow or dead (overflow, missed send
    /// deadline, silence, failed write) rather than leaving or being removed.
    #[must_use]
    pub fn is_eviction(&self) -> bool {
        match self {
            LeaveReason::Overflow => true,
            LeaveReason::Ended(cause) => cause.is_failure(),
            LeaveReason::Removed => false,
        }
    }
}

/// A member left the hub.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Departure {
    /// The member's connection id.
    pub member: ConnId,
    /// Why.
    pub reason: LeaveReason,
    /// When (the member's runtime clock).
    pub at: Instant,
}

/// What one [`Hub::broadcast`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Broadcast {
    /// Members the frame was queued for.
    pub queued: usize,
    /// Members evicted because their queue was full.
    pub evicted: usize,
    /// Members whose connection had already ended (they leave through their own
    /// departure).
    pub dead: usize,
}

/// Counters of a hub's life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HubStats {
    /// Members now.
    pub members: usize,
    /// Topics with at least one member now.
    pub topics: usize,
    /// Broadcasts so far.
    pub broadcasts: u64,
    /// Frames queued for members so far.
    pub queued: u64,
    /// Members evicted for a full queue.
    pub evicted_overflow: u64,
    /// Members that left because their connection ended (any cause).
    pub ended: u64,
    /// Departures a lagging subscriber missed.
    pub departures_dropped: u64,
    /// Joins refused because the hub had [`HubConfig::max_members`] members.
    pub refused_full: u64,
    /// Member snapshots built for broadcasts: at most one per broadcast, and only after
    /// the membership changed (joins and leaves copy nothing).
    pub snapshots: u64,
}

struct Inner {
    cfg: HubConfig,
    /// O(1) join and leave; a broadcast takes the lock only to fetch (or, after a change,
    /// build) a shared snapshot and iterates it without the lock, so joins and leaves
    /// never wait for a broadcast under way and never disturb one.
    members: Mutex<Members>,
    /// Where [`Hub::broadcast_to`] hands frames for other processes, when a backplane is
    /// attached.
    pub(crate) outbox: Mutex<Option<Arc<Outbox>>>,
    subscribers: Mutex<Vec<mpsc::Sender<Departure>>>,
    broadcasts: AtomicU64,
    queued: AtomicU64,
    evicted_overflow: AtomicU64,
    ended: AtomicU64,
    departures_dropped: AtomicU64,
    refused_full: AtomicU64,
    snapshots: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Each critical section pushes or swaps an entry and its index, or pushes a sender;
    // none calls out to code that can panic between the two, so poisoning is ignored.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A set of guarded connections with a broadcast that never waits on the slowest member.
///
/// Each member has a bounded outbound queue (its `max_pending_writes`). A broadcast
/// queues the frame for every member without waiting — the payload is shared, not copied
/// per member — and evicts a member whose queue is full: it is removed and closed with
/// the configured code. A member whose connection misses its send deadline, goes silent
/// or fails a write is aborted by its own guard and leaves the hub. Every departure is
/// reported on [`departures`](Self::departures) with its reason. Joining, leaving and
/// evictions are O(1), and safe while broadcasts run, from any number of tasks or
/// threads; the frames of one broadcaster reach each member in order. Members may also
/// join topics ([`join_topic`](Self::join_topic), [`broadcast_to`](Self::broadcast_to)),
/// which a [`Backplane`](super::Backplane) extends across processes.
///
/// ```no_run
/// # async fn demo(accepted: tether_driver::server::Guarded) {
/// use futures::StreamExt;
/// use tether_driver::server::{Hub, HubConfig};
/// use tether_driver::tether_core::{DataFrame, Utf8Bytes};
///
/// let hub = Hub::new(HubConfig::default()).unwrap();
/// let mut departures = hub.departures();
/// hub.join(accepted).unwrap();
/// let report = hub.broadcast(DataFrame::Text(Utf8Bytes::from_static(r#"{"delta":"hi"}"#)));
/// assert_eq!(report.queued, 1);
/// while let Some(d) = departures.next().await {
///     eprintln!("{} left: {:?} (evicted: {})", d.member, d.reason, d.reason.is_eviction());
/// }
/// # }
/// ```
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("members", &self.len())
            .finish_non_exhaustive()
    }
}

impl Hub {
    /// An empty hub.
    ///
    /// # Errors
    ///
    /// A [`CloseError`] when the overflow close code or reason cannot be sent.
    pub fn new(config: HubConfig) -> Result<Self, CloseError> {
        CloseError::check(config.overflow_code, &config.overflow_reason)?;
        Ok(Hub {
            inner: Arc::new(Inner {
                cfg: config,
                members: Mutex::new(Members::default()),
                outbox: Mutex::new(None),
                subscribers: Mutex::new(Vec::new()),
                broadcasts: AtomicU64::new(0),
                queued: AtomicU64::new(0),
                evicted_overflow: AtomicU64::new(0),
                ended: AtomicU64::new(0),
                departures_dropped: AtomicU64::new(0),
                refused_full: AtomicU64::new(0),
                snapshots: AtomicU64::new(0),
            }),
        })
    }

    /// Adds a connection; it receives every broadcast from now on, until it leaves.
    /// Joining a member twice does nothing. O(1) (amortized): nothing is copied until
    /// the next broadcast.
    ///
    /// # Errors
    ///
    /// [`DeliveryError::Dead`] if the connection has already ended;
    /// [`DeliveryError::HubFull`] if the hub has [`HubConfig::max_members`] members.
    pub fn join(&self, member: Guarded) -> Result<ConnId, DeliveryError> {
        let id = member.id();
        {
            let mut members = lock(&self.inner.members);
            if members.all.contains(id) {
                return Ok(id);
            }
            let max = self.inner.cfg.max_members.min(MAX_MEMBERS);
            if members.all.len() >= max {
                drop(members);
                self.inner.refused_full.fetch_add(1, Ordering::Relaxed);
                tracing::info!(member = %id, max, "hub full; join refused");
                return Err(DeliveryError::HubFull { max });
            }
            members.all.insert(member.clone());
        }
        // Registered after the member is in the set, so a departure can always find it;
        // a connection that ended in between is taken out again here.
        let hub: Weak<Inner> = Arc::downgrade(&self.inner);
        let hooked = member.on_end(move |cause, at| {
            if let Some(inner) = hub.upgrade() {
                Hub { inner }.depart(id, LeaveReason::Ended(cause.clone()), at);
            }
        });
        if let Err(cause) = hooked {
            self.take(id);
            return Err(DeliveryError::Dead(cause));
        }
        tracing::debug!(member = %id, "joined");
        Ok(id)
    }

    /// Takes a member out without touching its connection; `None` if it is not a member.
    /// Reported as [`LeaveReason::Removed`]. O(1).
    pub fn remove(&self, id: ConnId) -> Option<Guarded> {
        let member = self.take(id)?;
        let at = member.now();
        self.publish(Departure {
            member: id,
            reason: LeaveReason::Removed,
            at,
        });
        Some(member)
    }

    /// Queues `frame` for every member without waiting on any of them, and evicts every
    /// member whose queue is full. The payload is shared by all members (a reference
    /// count, not a copy). Never blocks: its cost is a few atomic operations per member,
    /// plus one copy of the member list (reference counts) if it changed since the last
    /// broadcast.
    pub fn broadcast(&self, frame: DataFrame) -> Broadcast {
        let members = self.snapshot();
        self.deliver(&members, &frame)
    }

    /// Puts member `id` in `topic`: it receives every [`broadcast_to`](Self::broadcast_to)
    /// that topic from now on, from this process or (with a backplane) any other, until it
    /// leaves the topic or the hub. A member may be in several topics; joining one twice
    /// does nothing. O(its topics).
    ///
    /// # Errors
    ///
    /// See [`TopicError`].
    pub fn join_topic(&self, id: ConnId, topic: &str) -> Result<(), TopicError> {
        check_topic(topic)?;
        let max = self
            .inner
            .cfg
            .max_topics_per_member
            .min(MAX_TOPICS_PER_MEMBER);
        let mut members = lock(&self.inner.members);
        if !members.all.contains(id) {
            return Err(TopicError::NotMember);
        }
        match members.join_topic(id, topic, max) {
            Ok(joined) => {
                if joined {
                    tracing::debug!(member = %id, topic, "joined topic");
                }
                Ok(())
            }
            Err(()) => Err(TopicError::TooMany { max }),
        }
    }

    /// Takes member `id` out of `topic`; whether it was in. Leaving the hub leaves every
    /// topic.
    pub fn leave_topic(&self, id: ConnId, topic: &str) -> bool {
        lock(&self.inner.members).leave_topic(id, topic)
    }

    /// The topics member `id` is in.
    #[must_use]
    pub fn topics_of(&self, id: ConnId) -> Vec<String> {
        lock(&self.inner.members).topics_of(id)
    }

    /// The members of `topic` in this process.
    #[must_use]
    pub fn topic_members(&self, topic: &str) -> Vec<ConnId> {
        lock(&self.inner.members)
            .topic(topic)
            .map(|r| r.ids())
            .unwrap_or_default()
    }

    /// Queues `frame` for every member of `topic` in this process, as
    /// [`broadcast`](Self::broadcast) does for the whole hub (a full member is evicted from
    /// the hub), and, when a backplane is attached, hands it to the backplane for the
    /// members of `topic` in every other process. Never blocks and never waits on the
    /// backplane: local members have the frame at once, and the backplane's queue is
    /// bounded (a frame that does not fit, or comes while Redis is unreachable, is counted
    /// in [`BackplaneStats`](super::BackplaneStats) and reaches only the local members).
    /// An invalid topic name reaches no one.
    pub fn broadcast_to(&self, topic: &str, frame: DataFrame) -> Broadcast {
        if check_topic(topic).is_err() {
            return Broadcast::default();
        }
        let outbox = lock(&self.inner.outbox).clone();
        if let Some(outbox) = outbox {
            outbox.publish(topic, &frame);
        }
        self.broadcast_local(topic, &frame)
    }

    /// Queues `frame` for the members of `topic` in this process only.
    pub(crate) fn broadcast_local(&self, topic: &str, frame: &DataFrame) -> Broadcast {
        let members = {
            let mut members = lock(&self.inner.members);
            let snapshots = &self.inner.snapshots;
            match members.topic(topic) {
                Some(roster) => roster.snapshot(|| {
                    snapshots.fetch_add(1, Ordering::Relaxed);
                }),
                None => return Broadcast::default(),
            }
        };
        self.deliver(&members, frame)
    }

    /// Queues `frame` for `members`, evicting those whose queue is full.
    fn deliver(&self, members: &[Guarded], frame: &DataFrame) -> Broadcast {
        let mut report = Broadcast::default();
        let mut full = Vec::new();
        for m in members.iter() {
            match m.try_send(frame.clone()) {
                Ok(()) => report.queued += 1,
                Err(DeliveryError::Full) => full.push(m),
                Err(_) => report.dead += 1,
            }
        }
        for m in full {
            // Out of the set first, so the end of its connection is not reported again.
            if self.take(m.id()).is_some() {
                report.evicted += 1;
                self.inner.evicted_overflow.fetch_add(1, Ordering::Relaxed);
                tracing::info!(member = %m.id(), "queue full; evicting");
                let cfg = &self.inner.cfg;
                // Validated by `Hub::new`.
                let _ = m.close(cfg.overflow_code, &cfg.overflow_reason);
                self.publish(Departure {
                    member: m.id(),
                    reason: LeaveReason::Overflow,
                    at: m.now(),
                });
            }
        }
        self.inner.broadcasts.fetch_add(1, Ordering::Relaxed);
        self.inner
            .queued
            .fetch_add(report.queued as u64, Ordering::Relaxed);
        report
    }

    /// Closes every member with `code` and `reason` (each leaves with
    /// [`LeaveReason::Ended`] once its close completes).
    ///
    /// # Errors
    ///
    /// A [`CloseError`] for a code or reason that cannot be sent; nothing happened then.
    pub fn close_all(&self, code: CloseCode, reason: &str) -> Result<(), CloseError> {
        CloseError::check(code, reason)?;
        let members = self.snapshot();
        for m in members.iter() {
            let _ = m.close(code, reason);
        }
        Ok(())
    }

    /// A stream of every departure from now on (bounded; see
    /// [`HubConfig::departure_capacity`]).
    pub fn departures(&self) -> impl Stream<Item = Departure> + Send + Unpin + 'static {
        let capacity = self
            .inner
            .cfg
            .departure_capacity
            .min(MAX_DEPARTURE_CAPACITY);
        let (tx, rx) = mpsc::channel(capacity);
        lock(&self.inner.subscribers).push(tx);
        rx
    }

    /// The members' ids.
    #[must_use]
    pub fn members(&self) -> Vec<ConnId> {
        lock(&self.inner.members).all.ids()
    }

    /// Whether `id` is a member.
    #[must_use]
    pub fn contains(&self, id: ConnId) -> bool {
        lock(&self.inner.members).all.contains(id)
    }

    /// How many members there are.
    #[must_use]
    pub fn len(&self) -> usize {
        lock(&self.inner.members).all.len()
    }

    /// Whether there are no members.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Counters.
    #[must_use]
    pub fn stats(&self) -> HubStats {
        let i = &self.inner;
        HubStats {
            members: self.len(),
            topics: lock(&self.inner.members).topic_count(),
            broadcasts: i.broadcasts.load(Ordering::Relaxed),
            queued: i.queued.load(Ordering::Relaxed),
            evicted_overflow: i.evicted_overflow.load(Ordering::Relaxed),
            ended: i.ended.load(Ordering::Relaxed),
            departures_dropped: i.departures_dropped.load(Ordering::Relaxed),
            refused_full: i.refused_full.load(Ordering::Relaxed),
            snapshots: i.snapshots.load(Ordering::Relaxed),
        }
    }

    /// A reference that does not keep the hub alive (the backplane's tasks hold one).
    pub(crate) fn downgrade(&self) -> WeakHub {
        WeakHub(Arc::downgrade(&self.inner))
    }

    /// Attaches a backplane's outbox; `false` if one is attached already.
    pub(crate) fn attach(&self, outbox: Arc<Outbox>) -> bool {
        let mut slot = lock(&self.inner.outbox);
        if slot.is_some() {
            return false;
        }
        *slot = Some(outbox);
        true
    }

    /// Detaches `outbox` if it is the one attached.
    pub(crate) fn detach(&self, outbox: &Arc<Outbox>) {
        let mut slot = lock(&self.inner.outbox);
        if slot.as_ref().is_some_and(|o| Arc::ptr_eq(o, outbox)) {
            *slot = None;
        }
    }

    /// The members now, shared: built once after each change in membership.
    fn snapshot(&self) -> Arc<[Guarded]> {
        lock(&self.inner.members).all.snapshot(|| {
            self.inner.snapshots.fetch_add(1, Ordering::Relaxed);
        })
    }

    /// Takes `id` out of the set; the member if it was in.
    fn take(&self, id: ConnId) -> Option<Guarded> {
        lock(&self.inner.members).remove(id)
    }

    /// A member's connection ended.
    fn depart(&self, id: ConnId, reason: LeaveReason, at: Instant) {
        if self.take(id).is_none() {
            return;
        }
        self.inner.ended.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(member = %id, ?reason, "left");
        self.publish(Departure {
            member: id,
            reason,
            at,
        });
    }

    fn publish(&self, departure: Departure) {
        let mut subs = lock(&self.inner.subscribers);
        subs.retain_mut(|tx| match tx.try_send(departure.clone()) {
            Ok(()) => true,
            Err(e) if e.is_disconnected() => false,
            Err(_) => {
                self.inner
                    .departures_dropped
                    .fetch_add(1, Ordering::Relaxed);
                true
            }
        });
    }
}

/// A [`Hub`] that may have been dropped.
pub(crate) struct WeakHub(Weak<Inner>);

impl WeakHub {
    pub(crate) fn upgrade(&self) -> Option<Hub> {
        self.0.upgrade().map(|inner| Hub { inner })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::convert::Infallible;

    use futures::SinkExt;
    use futures::future::BoxFuture;

    use super::*;
    use crate::runtime::Runtime;
    use crate::server::{GuardConfig, guard};
    use crate::transport::Link;

    /// A runtime whose clock stands still and whose tasks are kept but never run:
    /// members that are never written to and never end.
    #[derive(Clone)]
    pub(crate) struct Still(Instant, Arc<Mutex<Vec<BoxFuture<'static, ()>>>>);

    impl Runtime for Still {
        fn spawn(&self, future: BoxFuture<'static, ()>) {
            lock(&self.1).push(future);
        }
        fn sleep_until(&self, _deadline: Instant) -> BoxFuture<'static, ()> {
            Box::pin(futures::future::pending())
        }
        fn now(&self) -> Instant {
            self.0
        }
    }

    /// `n` guarded connections over links that never yield and swallow writes.
    pub(crate) fn members(n: usize) -> Vec<Guarded> {
        // The one clock read: an arbitrary epoch for a clock that never moves.
        let rt = Still(Instant::now(), Arc::default());
        (0..n)
            .map(|_| {
                let sink = futures::sink::drain()
                    .sink_map_err(|never: Infallible| -> std::io::Error { match never {} });
                let link = Link {
                    sink: Box::pin(sink),
                    stream: Box::pin(futures::stream::pending()),
                    reset: None,
                    subprotocol: None,
                };
                guard(rt.clone(), link, None, GuardConfig::default()).expect("valid config")
            })
            .collect()
    }

    fn text() -> DataFrame {
        DataFrame::Text(tether_core::Utf8Bytes::from_static("x"))
    }

    /// No panic from any config: a departure capacity the channel cannot hold counts as
    /// the ceiling.
    #[test]
    fn an_absurd_departure_capacity_is_capped() {
        let hub = Hub::new(HubConfig {
            departure_capacity: usize::MAX,
            ..HubConfig::default()
        })
        .expect("valid close code");
        let _departures = hub.departures();
    }

    /// Building a hub of n members copies nothing (the old copy-on-write set cloned the
    /// whole vector on every join: n²/2 clones); the first broadcast builds one snapshot,
    /// a second with no change in between none, and a change makes the next build one.
    #[test]
    fn joins_and_leaves_build_no_snapshot_and_broadcasts_at_most_one() {
        const N: usize = 2000;
        let hub = Hub::new(HubConfig::default()).expect("valid close code");
        let conns = members(N);
        for c in &conns {
            hub.join(c.clone()).expect("room for all");
        }
        assert_eq!(hub.len(), N);
        assert_eq!(hub.stats().snapshots, 0, "joins must not copy the set");
        assert_eq!(hub.broadcast(text()).queued, N);
        assert_eq!(hub.broadcast(text()).queued, N);
        assert_eq!(hub.stats().snapshots, 1);
        // Leaves from the middle, the front and the back keep the index right.
        for c in [&conns[N / 2], &conns[0], &conns[N - 1]] {
            assert!(hub.remove(c.id()).is_some());
            assert!(hub.remove(c.id()).is_none());
        }
        assert_eq!(hub.stats().snapshots, 1, "leaves must not copy the set");
        for (i, c) in conns.iter().enumerate() {
            assert_eq!(hub.contains(c.id()), ![0, N / 2, N - 1].contains(&i), "{i}");
        }
        assert_eq!(hub.broadcast(text()).queued, N - 3);
        assert_eq!(hub.stats().snapshots, 2);
        let mut ids = hub.members();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), N - 3);
    }

    /// A join beyond `max_members` is refused with a typed error and counted, the member
    /// set unchanged; a leave makes room again. Joining a member twice is not a new
    /// member, even at the limit.
    #[test]
    fn a_join_beyond_max_members_is_refused() {
        let hub = Hub::new(HubConfig {
            max_members: 2,
            ..HubConfig::default()
        })
        .expect("valid close code");
        let conns = members(3);
        hub.join(conns[0].clone()).expect("room");
        hub.join(conns[1].clone()).expect("room");
        hub.join(conns[1].clone()).expect("already a member");
        let refused = hub.join(conns[2].clone());
        assert_eq!(refused, Err(DeliveryError::HubFull { max: 2 }));
        assert_eq!(
            refused.unwrap_err().to_string(),
            "the hub is full: it already has its maximum of 2 members"
        );
        assert!(!hub.contains(conns[2].id()));
        assert_eq!((hub.len(), hub.stats().refused_full), (2, 1));
        assert!(!conns[2].is_closed(), "a refused member is left as it is");
        hub.remove(conns[0].id());
        hub.join(conns[2].clone()).expect("room again");
        assert_eq!(hub.len(), 2);
    }

    /// The ceiling: an absurd `max_members` counts as `MAX_MEMBERS`, and 0 refuses all.
    #[test]
    fn max_members_is_capped_and_zero_refuses_all() {
        let conns = members(1);
        let none = Hub::new(HubConfig {
            max_members: 0,
            ..HubConfig::default()
        })
        .expect("valid close code");
        assert_eq!(
            none.join(conns[0].clone()),
            Err(DeliveryError::HubFull { max: 0 })
        );
        let huge = Hub::new(HubConfig {
            max_members: usize::MAX,
            ..HubConfig::default()
        })
        .expect("valid close code");
        huge.join(conns[0].clone()).expect("room");
        assert_eq!(HubConfig::default().max_members, DEFAULT_MAX_MEMBERS);
    }

    /// Topics: a member may be in several; a topic broadcast reaches exactly its members;
    /// leaving the hub leaves every topic, and an empty topic is forgotten. Names and
    /// counts are bounded, and only members can join.
    #[test]
    fn topics_reach_their_members_only() {
        let hub = Hub::new(HubConfig {
            max_topics_per_member: 2,
            ..HubConfig::default()
        })
        .expect("valid close code");
        let conns = members(4);
        for c in &conns[..3] {
            hub.join(c.clone()).expect("room");
        }
        let [a, b, c, outsider] = [0, 1, 2, 3].map(|i| conns[i].id());
        hub.join_topic(a, "red").expect("ok");
        hub.join_topic(a, "blue").expect("ok");
        hub.join_topic(a, "blue").expect("twice is once");
        hub.join_topic(b, "red").expect("ok");
        assert_eq!(
            hub.join_topic(a, "green"),
            Err(TopicError::TooMany { max: 2 })
        );
        assert_eq!(hub.join_topic(outsider, "red"), Err(TopicError::NotMember));
        assert_eq!(hub.join_topic(c, ""), Err(TopicError::Empty));
        let long = "x".repeat(MAX_TOPIC_LEN + 1);
        assert_eq!(
            hub.join_topic(c, &long),
            Err(TopicError::TooLong {
                len: MAX_TOPIC_LEN + 1,
                max: MAX_TOPIC_LEN
            })
        );
        assert_eq!(hub.broadcast_to("red", text()).queued, 2);
        assert_eq!(hub.broadcast_to("blue", text()).queued, 1);
        assert_eq!(hub.broadcast_to("nobody", text()).queued, 0);
        assert_eq!(hub.broadcast_to(&long, text()).queued, 0);
        assert_eq!(
            (conns[0].queued(), conns[1].queued(), conns[2].queued()),
            (2, 1, 0)
        );
        let mut topics = hub.topics_of(a);
        topics.sort();
        assert_eq!(topics, ["blue", "red"]);
        assert!(hub.leave_topic(a, "red"));
        assert!(!hub.leave_topic(a, "red"));
        assert_eq!(hub.topic_members("red"), [b]);
        hub.remove(a);
        assert!(hub.topics_of(a).is_empty());
        assert!(hub.topic_members("blue").is_empty());
        assert_eq!(hub.stats().topics, 1, "blue is forgotten, red has b");
        assert_eq!(hub.broadcast_to("blue", text()).queued, 0);
        assert_eq!(hub.broadcast_to("red", text()).queued, 1);
    }

    /// Topic broadcasts build their snapshot lazily too: joining a topic copies nothing.
    #[test]
    fn topic_joins_build_no_snapshot() {
        const N: usize = 1000;
        let hub = Hub::new(HubConfig::default()).expect("valid close code");
        for c in members(N) {
            let id = hub.join(c).expect("room");
            hub.join_topic(id, "t").expect("ok");
        }
        assert_eq!(hub.stats().snapshots, 0);
        assert_eq!(hub.broadcast_to("t", text()).queued, N);
        assert_eq!(hub.broadcast_to("t", text()).queued, N);
        assert_eq!(hub.stats().snapshots, 1);
    }
}
