//! What the application's handles ([`Client`](crate::Client)) and the session's task
//! share: the commands and controls they send it, the capacities of those channels, and
//! the subscribers' state. Both sides depend on this module; neither on the other's
//! internals.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::channel::oneshot;
use tether_core::{CloseCode, EndReason, Event, MessageId, Protocol, RequestId, SendError, Status};

use crate::error::CallError;
use crate::mailbox::Mailbox;
use crate::stream_events::StreamSender;
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

pub(crate) type Reply<P> =
    oneshot::Sender<Result<<P as Protocol>::Response, CallError<<P as Protocol>::RemoteError>>>;
pub(crate) type Outcome<P> =
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
/// How many bytes of inbound frames the events an [`events`](crate::Client::events) subscriber
/// has not yet taken may stand for before the session stops reading from the socket until
/// it catches up: 8 MiB. An event is charged with the frames read to produce it (the
/// driver cannot see an event's own size; the frame's is a `Protocol`-independent hint,
/// and a decoded event may well take a few times as much memory as its frame). A
/// subscriber thus holds back at most this plus one frame (`max_inbound_frame`).
pub const SUBSCRIBER_BYTES: usize = 8 << 20;
/// How many stream events a stream consumer may have unread before its subscription ends
/// (its bytes are bounded too: see [`StreamCall::events`](crate::StreamCall::events)).
pub const STREAM_CAPACITY: usize = 4096;

/// State the loop publishes for handles to read without a round trip.
pub(crate) struct Shared<P: Protocol> {
    pub(crate) status: Mutex<Status>,
    pub(crate) last_activity: Mutex<Option<Instant>>,
    /// Messages and requests in the session's offline queue.
    pub(crate) queued: std::sync::atomic::AtomicUsize,
    pub(crate) events: Mutex<Vec<Arc<Mailbox<Event<P>>>>>,
    pub(crate) statuses: Mutex<Vec<Arc<Mailbox<Status>>>>,
    /// The subprotocol of the connection that opened last.
    pub(crate) subprotocol: Mutex<Option<String>>,
    /// [`Client::updates`](crate::Client::updates) subscribers: statuses and events in one order.
    pub(crate) updates: Mutex<UpdateSubs<P>>,
    pub(crate) now: Box<dyn Fn() -> Instant + Send + Sync>,
    /// Each `events()` subscriber's byte budget ([`Options::subscriber_bytes`]).
    pub(crate) subscriber_bytes: usize,
}

/// The [`Client::updates`](crate::Client::updates) subscribers, and the last status published to them: what a new
/// subscriber starts from, so that it sees neither a gap nor a change twice.
pub(crate) struct UpdateSubs<P: Protocol> {
    pub(crate) subs: Vec<Arc<Mailbox<Update<P>>>>,
    pub(crate) status: Status,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
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

    /// Hands every update of `updates` to every [`Client::updates`](crate::Client::updates) subscriber and every
    /// event among them to every [`Client::events`](crate::Client::events) subscriber, in order, one lock and
    /// one wake-up per subscriber, charging each with `bytes`, the inbound frames read to
    /// produce them; leaves `updates` empty.
    pub(crate) fn publish(&self, updates: &mut VecDeque<Update<P>>, bytes: usize) {
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
