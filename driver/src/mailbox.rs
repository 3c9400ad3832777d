//! The event subscriptions' queues: one per subscriber, filled by the session loop, which
//! stops reading from the socket while any of them is full instead of dropping events.
//!
//! A channel that refuses a send when full would force a choice between losing the event
//! and buffering without bound. Here the loop asks [`Mailbox::has_room`] before each source
//! of events: before reading a batch of frames, before firing the session's timers, and
//! (counting the responses the requests in flight still owe, see
//! [`Mailbox::has_room_for`]) before taking a batch of commands. A full mailbox holds
//! those sources back (the peer then sees TCP backpressure) and wakes the loop once its
//! reader has caught up. A mailbox therefore holds at most its capacity plus what one
//! batch of one source produces.
//!
//! Beside the count, a byte budget: the loop charges each batch of events it publishes
//! with the bytes of the inbound frames it read to produce them (the driver never sees an
//! event's own size; the frame's is a `Protocol`-independent hint of it), and the bytes are
//! released when the subscriber takes the batch's last event. Before reading, the loop
//! asks [`Mailbox::read_allowance`] how many bytes it may read; it stops a batch of reads
//! after the frame that reaches it. Charged bytes therefore stay below the budget plus one
//! frame.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use futures::Stream;

/// A queued event and the bytes it releases when taken: the bytes of its batch's frames
/// on the batch's last event, zero on the others.
struct Item<T> {
    value: T,
    bytes: usize,
}

struct Inner<T> {
    queue: VecDeque<Item<T>>,
    /// Bytes charged for the events queued here or taken into the subscription's own
    /// buffer and not yet handed out.
    bytes: usize,
    /// The subscriber waiting for an item.
    reader: Option<Waker>,
    /// The session loop waiting for room.
    writer: Option<Waker>,
    /// The subscription was dropped: the loop forgets the mailbox.
    reader_gone: bool,
    /// The session loop is gone: the subscription ends once the queue is empty.
    writer_gone: bool,
}

/// One subscriber's queue, shared by the session loop and the [`Subscription`].
pub(crate) struct Mailbox<T> {
    inner: Mutex<Inner<T>>,
    capacity: usize,
    /// The byte budget: reading stops while `bytes` reach it.
    byte_budget: usize,
}

fn lock<T>(m: &Mutex<Inner<T>>) -> MutexGuard<'_, Inner<T>> {
    // Every critical section is a push, a pop or a flag: a panic inside one cannot leave
    // the queue inconsistent, so poisoning is ignored.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<T> Mailbox<T> {
    /// A mailbox and its subscription, holding back reads at `capacity` items or
    /// `byte_budget` bytes charged.
    pub(crate) fn pair(capacity: usize, byte_budget: usize) -> (Arc<Self>, Subscription<T>) {
        let mailbox = Arc::new(Mailbox {
            inner: Mutex::new(Inner {
                queue: VecDeque::new(),
                bytes: 0,
                reader: None,
                writer: None,
                reader_gone: false,
                writer_gone: false,
            }),
            capacity,
            byte_budget,
        });
        (mailbox.clone(), Subscription::new(mailbox))
    }

    /// Queues every item of `items` in order under one lock, with one wake-up (past the
    /// capacity and the budget too: they gate the sources, never an event already
    /// produced), charging `bytes` to the batch until its last item is taken (nothing if
    /// the batch is empty: nothing is held then). Returns `false` when the subscription is
    /// gone, so the loop can forget the mailbox.
    pub(crate) fn push_all(&self, items: impl IntoIterator<Item = T>, bytes: usize) -> bool {
        let reader = {
            let mut inner = lock(&self.inner);
            if inner.reader_gone {
                return false;
            }
            let start = inner.queue.len();
            inner
                .queue
                .extend(items.into_iter().map(|value| Item { value, bytes: 0 }));
            if inner.queue.len() > start
                && let Some(last) = inner.queue.back_mut()
            {
                last.bytes = bytes;
                inner.bytes = inner.bytes.saturating_add(bytes);
            }
            inner.reader.take()
        };
        if let Some(w) = reader {
            w.wake();
        }
        true
    }

    /// Queues `item`, charged `bytes`, unless the subscriber is behind: the mailbox holds
    /// `capacity` items, or the bytes would take it over its budget (an item larger than
    /// the whole budget still fits an empty mailbox). For a consumer that is dropped
    /// rather than waited for. Returns what happened.
    pub(crate) fn try_push(&self, item: T, bytes: usize) -> Pushed {
        let reader = {
            let mut inner = lock(&self.inner);
            if inner.reader_gone {
                return Pushed::Gone;
            }
            let over_budget =
                inner.bytes > 0 && inner.bytes.saturating_add(bytes) > self.byte_budget;
            if inner.queue.len() >= self.capacity || over_budget {
                return Pushed::Full;
            }
            inner.queue.push_back(Item { value: item, bytes });
            inner.bytes = inner.bytes.saturating_add(bytes);
            inner.reader.take()
        };
        if let Some(w) = reader {
            w.wake();
        }
        Pushed::Queued
    }

    /// Whether the mailbox is below its capacity; if not, the loop is woken when it is.
    pub(crate) fn has_room(&self, cx: &mut Context<'_>) -> bool {
        self.has_room_for(cx, 0)
    }

    /// Whether the mailbox stays below its capacity with `reserved` more items that are
    /// already owed (one response per request in flight); if not, the loop is woken when
    /// the reader takes what is queued.
    pub(crate) fn has_room_for(&self, cx: &mut Context<'_>, reserved: usize) -> bool {
        let mut inner = lock(&self.inner);
        if inner.reader_gone || inner.queue.len().saturating_add(reserved) < self.capacity {
            return true;
        }
        inner.writer = Some(cx.waker().clone());
        false
    }

    /// How many bytes of frames the loop may read before this mailbox is over its budget:
    /// zero (and the loop is woken when that changes) while it is full in count or in
    /// bytes; unlimited once the subscription is gone.
    pub(crate) fn read_allowance(&self, cx: &mut Context<'_>) -> usize {
        let mut inner = lock(&self.inner);
        if inner.reader_gone {
            return usize::MAX;
        }
        if inner.queue.len() < self.capacity && inner.bytes < self.byte_budget {
            return self.byte_budget - inner.bytes;
        }
        inner.writer = Some(cx.waker().clone());
        0
    }

    /// Whether the subscriber has taken everything queued and is waiting for more (or is
    /// gone); if not, the loop is woken when it comes back for more.
    pub(crate) fn is_caught_up(&self, cx: &mut Context<'_>) -> bool {
        let mut inner = lock(&self.inner);
        // The reader's waker is set only by a poll that found nothing, and taken by the
        // next push: set with an empty queue, the subscriber is waiting.
        if inner.reader_gone || (inner.queue.is_empty() && inner.reader.is_some()) {
            return true;
        }
        inner.writer = Some(cx.waker().clone());
        false
    }

    /// Items queued and not yet taken by the subscription.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        lock(&self.inner).queue.len()
    }

    /// Bytes charged and not yet released.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        lock(&self.inner).bytes
    }

    /// Whether the subscription has been dropped.
    pub(crate) fn is_abandoned(&self) -> bool {
        lock(&self.inner).reader_gone
    }

    /// The session loop is gone: the subscription ends after what is queued.
    pub(crate) fn close(&self) {
        let reader = {
            let mut inner = lock(&self.inner);
            inner.writer_gone = true;
            inner.reader.take()
        };
        if let Some(w) = reader {
            w.wake();
        }
    }
}

/// What [`Mailbox::try_push`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// The item is queued.
    Queued,
    /// The subscriber is behind: nothing was queued.
    Full,
    /// The subscription was dropped.
    Gone,
}

/// The subscriber's end of a [`Mailbox`]: a stream of what the loop queued, ending after
/// the loop is gone. It takes the whole queue at once (one lock per batch, not per item),
/// so it holds at most what the mailbox held. The bytes of a batch are released (and the
/// loop woken) when the batch's last item is handed out, not when it is swapped in here.
pub(crate) struct Subscription<T> {
    mailbox: Arc<Mailbox<T>>,
    taken: VecDeque<Item<T>>,
}

impl<T> Subscription<T> {
    fn new(mailbox: Arc<Mailbox<T>>) -> Self {
        Subscription {
            mailbox,
            taken: VecDeque::new(),
        }
    }

    /// Hands out the next taken item, releasing its bytes first.
    fn hand_out(&mut self) -> Option<T> {
        let item = self.taken.pop_front()?;
        if item.bytes > 0 {
            let writer = {
                let mut inner = lock(&self.mailbox.inner);
                inner.bytes = inner.bytes.saturating_sub(item.bytes);
                inner.writer.take()
            };
            if let Some(w) = writer {
                w.wake();
            }
        }
        Some(item.value)
    }
}

impl<T> Unpin for Subscription<T> {}

impl<T> Stream for Subscription<T> {
    type Item = T;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let this = self.get_mut();
        if let Some(item) = this.hand_out() {
            return Poll::Ready(Some(item));
        }
        let writer = {
            let mut inner = lock(&this.mailbox.inner);
            if inner.queue.is_empty() {
                if inner.writer_gone {
                    return Poll::Ready(None);
                }
                inner.reader = Some(cx.waker().clone());
                // Waiting for more: a loop waiting for this subscriber to catch up (see
                // `is_caught_up`) may go on.
                inner.writer.take()
            } else {
                // Swap rather than drain: the loop gets an empty queue with the old
                // allocation, and this side keeps its own for the next batch.
                std::mem::swap(&mut inner.queue, &mut this.taken);
                inner.writer.take()
            }
        };
        if let Some(w) = writer {
            w.wake();
        }
        match this.hand_out() {
            Some(item) => Poll::Ready(Some(item)),
            None => Poll::Pending,
        }
    }
}

impl<T> Drop for Subscription<T> {
    fn drop(&mut self) {
        let writer = {
            let mut inner = lock(&self.mailbox.inner);
            inner.reader_gone = true;
            inner.queue.clear();
            inner.bytes = 0;
            inner.writer.take()
        };
        if let Some(w) = writer {
            w.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;
    use futures::task::noop_waker_ref;

    use super::*;

    #[test]
    fn a_full_mailbox_holds_the_writer_back_and_loses_nothing() {
        let (mailbox, mut sub) = Mailbox::pair(4, usize::MAX);
        let mut cx = Context::from_waker(noop_waker_ref());
        assert!(mailbox.push_all(0..4, 0));
        assert!(mailbox.push_all([4, 5], 0));
        assert!(!mailbox.has_room(&mut cx), "six queued, capacity four");
        let got: Vec<i32> = (0..6)
            .map(|_| match sub.poll_next_unpin(&mut cx) {
                Poll::Ready(Some(i)) => i,
                other => panic!("expected an item, got {other:?}"),
            })
            .collect();
        assert_eq!(got, [0, 1, 2, 3, 4, 5]);
        assert!(mailbox.has_room(&mut cx));
        assert!(sub.poll_next_unpin(&mut cx).is_pending());
    }

    #[test]
    fn a_dropped_subscription_never_holds_the_writer_back() {
        let (mailbox, sub) = Mailbox::pair(1, usize::MAX);
        let mut cx = Context::from_waker(noop_waker_ref());
        assert!(mailbox.push_all([1], 0));
        drop(sub);
        assert!(mailbox.is_abandoned());
        assert!(mailbox.has_room(&mut cx));
        assert!(!mailbox.push_all([2], 0), "the loop learns to forget it");
    }

    #[test]
    fn the_subscription_ends_after_the_queue_once_the_writer_is_gone() {
        let (mailbox, sub) = Mailbox::pair(8, usize::MAX);
        assert!(mailbox.push_all(["last"], 0));
        mailbox.close();
        let rest: Vec<_> = futures::executor::block_on(sub.collect());
        assert_eq!(rest, ["last"]);
    }

    /// Brief E: bytes charged to a batch hold reading back until the subscriber has taken
    /// the batch's last item, even once the batch is swapped into the subscription.
    #[test]
    fn charged_bytes_hold_reading_back_until_the_batch_is_taken() {
        let (mailbox, mut sub) = Mailbox::pair(1024, 100);
        let mut cx = Context::from_waker(noop_waker_ref());
        assert_eq!(mailbox.read_allowance(&mut cx), 100);
        assert!(mailbox.push_all([1, 2], 60));
        assert_eq!(mailbox.read_allowance(&mut cx), 40);
        assert!(mailbox.push_all([3], 50));
        assert_eq!(mailbox.bytes(), 110);
        assert_eq!(mailbox.read_allowance(&mut cx), 0, "over the budget");
        assert!(mailbox.push_all(std::iter::empty(), 70), "an empty batch");
        assert_eq!(mailbox.bytes(), 110, "holds nothing, is charged nothing");
        let next = |sub: &mut Subscription<i32>| {
            let mut cx = Context::from_waker(noop_waker_ref());
            match sub.poll_next_unpin(&mut cx) {
                Poll::Ready(Some(i)) => i,
                other => panic!("expected an item, got {other:?}"),
            }
        };
        assert_eq!(next(&mut sub), 1);
        assert_eq!(
            mailbox.len(),
            0,
            "the queue is swapped into the subscription"
        );
        assert_eq!(
            mailbox.read_allowance(&mut cx),
            0,
            "its bytes are still held"
        );
        assert_eq!(next(&mut sub), 2);
        assert_eq!(mailbox.bytes(), 50);
        assert_eq!(mailbox.read_allowance(&mut cx), 50);
        assert_eq!(next(&mut sub), 3);
        assert_eq!(mailbox.read_allowance(&mut cx), 100);
        assert!(mailbox.push_all([4], 500));
        drop(sub);
        assert_eq!(
            mailbox.read_allowance(&mut cx),
            usize::MAX,
            "nobody to wait for"
        );
    }

    /// A full count holds reading back whatever the bytes.
    #[test]
    fn a_full_count_allows_no_read() {
        let (mailbox, _sub) = Mailbox::pair(2, 100);
        let mut cx = Context::from_waker(noop_waker_ref());
        assert!(mailbox.push_all([1, 2], 0));
        assert_eq!(mailbox.read_allowance(&mut cx), 0);
    }
}
