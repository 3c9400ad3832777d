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

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use futures::Stream;

struct Inner<T> {
    queue: VecDeque<T>,
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
}

fn lock<T>(m: &Mutex<Inner<T>>) -> MutexGuard<'_, Inner<T>> {
    // Every critical section is a push, a pop or a flag: a panic inside one cannot leave
    // the queue inconsistent, so poisoning is ignored.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<T> Mailbox<T> {
    /// A mailbox and its subscription.
    pub(crate) fn pair(capacity: usize) -> (Arc<Self>, Subscription<T>) {
        let mailbox = Arc::new(Mailbox {
            inner: Mutex::new(Inner {
                queue: VecDeque::new(),
                reader: None,
                writer: None,
                reader_gone: false,
                writer_gone: false,
            }),
            capacity,
        });
        (mailbox.clone(), Subscription::new(mailbox))
    }

    /// Queues every item of `items` in order under one lock, with one wake-up (past the
    /// capacity too: the capacity gates the sources, never an event already produced).
    /// Returns `false` when the subscription is gone, so the loop can forget the mailbox.
    pub(crate) fn push_all(&self, items: impl IntoIterator<Item = T>) -> bool {
        let reader = {
            let mut inner = lock(&self.inner);
            if inner.reader_gone {
                return false;
            }
            inner.queue.extend(items);
            inner.reader.take()
        };
        if let Some(w) = reader {
            w.wake();
        }
        true
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

    /// Items queued and not yet taken by the subscription.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        lock(&self.inner).queue.len()
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

/// The subscriber's end of a [`Mailbox`]: a stream of what the loop queued, ending after
/// the loop is gone. It takes the whole queue at once (one lock per batch, not per item),
/// so it holds at most what the mailbox held.
pub(crate) struct Subscription<T> {
    mailbox: Arc<Mailbox<T>>,
    taken: VecDeque<T>,
}

impl<T> Subscription<T> {
    fn new(mailbox: Arc<Mailbox<T>>) -> Self {
        Subscription {
            mailbox,
            taken: VecDeque::new(),
        }
    }
}

impl<T> Unpin for Subscription<T> {}

impl<T> Stream for Subscription<T> {
    type Item = T;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let this = self.get_mut();
        if let Some(item) = this.taken.pop_front() {
            return Poll::Ready(Some(item));
        }
        let writer = {
            let mut inner = lock(&this.mailbox.inner);
            if inner.queue.is_empty() {
                if inner.writer_gone {
                    return Poll::Ready(None);
                }
                inner.reader = Some(cx.waker().clone());
                return Poll::Pending;
            }
            // Swap rather than drain: the loop gets an empty queue with the old
            // allocation, and this side keeps its own for the next batch.
            std::mem::swap(&mut inner.queue, &mut this.taken);
            inner.writer.take()
        };
        if let Some(w) = writer {
            w.wake();
        }
        Poll::Ready(this.taken.pop_front())
    }
}

impl<T> Drop for Subscription<T> {
    fn drop(&mut self) {
        let writer = {
            let mut inner = lock(&self.mailbox.inner);
            inner.reader_gone = true;
            inner.queue.clear();
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
        let (mailbox, mut sub) = Mailbox::pair(4);
        let mut cx = Context::from_waker(noop_waker_ref());
        assert!(mailbox.push_all(0..4));
        assert!(mailbox.push_all([4, 5]));
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
        let (mailbox, sub) = Mailbox::pair(1);
        let mut cx = Context::from_waker(noop_waker_ref());
        assert!(mailbox.push_all([1]));
        drop(sub);
        assert!(mailbox.is_abandoned());
        assert!(mailbox.has_room(&mut cx));
        assert!(!mailbox.push_all([2]), "the loop learns to forget it");
    }

    #[test]
    fn the_subscription_ends_after_the_queue_once_the_writer_is_gone() {
        let (mailbox, sub) = Mailbox::pair(8);
        assert!(mailbox.push_all(["last"]));
        mailbox.close();
        let rest: Vec<_> = futures::executor::block_on(sub.collect());
        assert_eq!(rest, ["last"]);
    }
}
