//! The command channel from a session's handles to its loop: bounded at
//! [`CMD_CAPACITY`](crate::CMD_CAPACITY) unread commands, but holding memory only for the
//! commands actually in it.
//!
//! `async_channel::bounded` allocates (and writes) every slot up front: 1,024 slots of
//! `Cmd<P>` are 72 KiB per session for `Raw` and 136 KiB for `HelloAck`, held by every
//! idle session (`bench/src/bin/memory.rs`). Here the commands travel through an unbounded
//! `async_channel`, whose queue grows and shrinks in blocks of 31 slots, and a counter of
//! unread commands with an [`Event`] to wake senders keeps the bound: a sender waits while
//! [`CMD_CAPACITY`](crate::CMD_CAPACITY) commands are unread, exactly as on the bounded
//! channel.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use event_listener::Event;
use futures::Stream;

/// What the senders and the receiver share: how many commands are unread, and the
/// senders waiting for one to be read.
#[derive(Debug)]
struct Room {
    capacity: usize,
    unread: AtomicUsize,
    freed: Event,
}

impl Room {
    /// Takes a place for one command; `false` when `capacity` are unread.
    fn reserve(&self) -> bool {
        self.unread
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < self.capacity).then_some(n + 1)
            })
            .is_ok()
    }

    /// Gives back a place and wakes one waiting sender.
    fn release(&self) {
        self.unread.fetch_sub(1, Ordering::SeqCst);
        self.freed.notify(1);
    }
}

/// A channel of at most `capacity` unread commands (`capacity` ≥ 1).
pub(crate) fn bounded<T>(capacity: usize) -> (CmdSender<T>, CmdReceiver<T>) {
    let (tx, rx) = async_channel::unbounded();
    let room = Arc::new(Room {
        capacity: capacity.max(1),
        unread: AtomicUsize::new(0),
        freed: Event::new(),
    });
    (
        CmdSender {
            tx,
            room: room.clone(),
        },
        CmdReceiver {
            rx: Box::pin(rx),
            room,
        },
    )
}

/// The sending side; the channel closes when every clone is gone.
#[derive(Debug)]
pub(crate) struct CmdSender<T> {
    tx: async_channel::Sender<T>,
    room: Arc<Room>,
}

impl<T> Clone for CmdSender<T> {
    fn clone(&self) -> Self {
        CmdSender {
            tx: self.tx.clone(),
            room: self.room.clone(),
        }
    }
}

/// The receiver is gone: the command was not delivered.
#[derive(Debug)]
pub(crate) struct Closed;

impl<T> CmdSender<T> {
    /// Sends `cmd`, waiting while the channel holds its capacity of unread commands.
    ///
    /// # Errors
    ///
    /// [`Closed`] when the receiver is gone (then or while waiting).
    pub(crate) async fn send(&self, cmd: T) -> Result<(), Closed> {
        loop {
            if self.tx.is_closed() {
                return Err(Closed);
            }
            if self.room.reserve() {
                break;
            }
            // Listen before looking again, so a place freed in between is not missed.
            let freed = self.room.freed.listen();
            if self.tx.is_closed() {
                return Err(Closed);
            }
            if self.room.reserve() {
                break;
            }
            // A dropped (cancelled) listener that was notified passes the notification on
            // to another one, so a cancelled send does not strand a waiting one.
            freed.await;
        }
        // Never full (the channel is unbounded): only a closed channel refuses.
        self.tx.try_send(cmd).map_err(|_| {
            self.room.release();
            Closed
        })
    }
}

/// The receiving side, owned by the session loop.
#[derive(Debug)]
pub(crate) struct CmdReceiver<T> {
    // Boxed: `async_channel::Receiver` is not `Unpin`.
    rx: Pin<Box<async_channel::Receiver<T>>>,
    room: Arc<Room>,
}

impl<T> CmdReceiver<T> {
    /// The next command; `None` once every sender is gone and the channel is empty.
    pub(crate) fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let next = self.rx.as_mut().poll_next(cx);
        if let Poll::Ready(Some(_)) = next {
            self.room.release();
        }
        next
    }

    /// Whether no command is unread.
    pub(crate) fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }
}

impl<T> Drop for CmdReceiver<T> {
    /// Closes the channel and wakes every waiting sender, which then finds it closed.
    fn drop(&mut self) {
        self.rx.close();
        self.room.freed.notify(usize::MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;
    use futures::task::noop_waker_ref;

    /// The bound holds: a sender waits at `capacity` unread, and a read lets it through.
    #[test]
    fn a_sender_waits_at_capacity_until_a_command_is_read() {
        let (tx, mut rx) = bounded::<u32>(2);
        assert!(tx.send(1).now_or_never().is_some());
        assert!(tx.send(2).now_or_never().is_some());
        let mut third = Box::pin(tx.send(3));
        let mut cx = Context::from_waker(noop_waker_ref());
        assert!(third.as_mut().poll(&mut cx).is_pending());
        assert_eq!(rx.poll_next(&mut cx), Poll::Ready(Some(1)));
        assert!(matches!(third.as_mut().poll(&mut cx), Poll::Ready(Ok(()))));
        assert_eq!(rx.poll_next(&mut cx), Poll::Ready(Some(2)));
        assert_eq!(rx.poll_next(&mut cx), Poll::Ready(Some(3)));
        assert!(rx.is_empty());
    }

    /// A sender waiting for room learns that the receiver is gone.
    #[test]
    fn a_waiting_sender_fails_when_the_receiver_goes() {
        let (tx, rx) = bounded::<u32>(1);
        assert!(tx.send(1).now_or_never().is_some());
        let mut second = Box::pin(tx.send(2));
        let mut cx = Context::from_waker(noop_waker_ref());
        assert!(second.as_mut().poll(&mut cx).is_pending());
        drop(rx);
        assert!(matches!(
            second.as_mut().poll(&mut cx),
            Poll::Ready(Err(Closed))
        ));
    }

    /// A cancelled waiting sender does not strand another waiting one.
    #[test]
    fn a_cancelled_sender_passes_the_room_on() {
        let (tx, mut rx) = bounded::<u32>(1);
        assert!(tx.send(1).now_or_never().is_some());
        let mut cx = Context::from_waker(noop_waker_ref());
        let mut a = Box::pin(tx.send(2));
        let mut b = Box::pin(tx.send(3));
        assert!(a.as_mut().poll(&mut cx).is_pending());
        assert!(b.as_mut().poll(&mut cx).is_pending());
        assert_eq!(rx.poll_next(&mut cx), Poll::Ready(Some(1)));
        drop(a);
        assert!(matches!(b.as_mut().poll(&mut cx), Poll::Ready(Ok(()))));
        assert_eq!(rx.poll_next(&mut cx), Poll::Ready(Some(3)));
    }

    /// Every sender gone: the receiver drains what is left, then ends.
    #[test]
    fn the_receiver_ends_after_the_last_sender() {
        let (tx, mut rx) = bounded::<u32>(4);
        assert!(tx.send(7).now_or_never().is_some());
        drop(tx);
        let mut cx = Context::from_waker(noop_waker_ref());
        assert_eq!(rx.poll_next(&mut cx), Poll::Ready(Some(7)));
        assert_eq!(rx.poll_next(&mut cx), Poll::Ready(None));
    }
}
