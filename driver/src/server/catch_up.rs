//! Whether the application has caught up with what a guarded connection delivered: every
//! buffered message taken, and a [`recv`](super::Guarded::recv) waiting for the next.
//!
//! The connection's task holds a protocol error back until then (bounded by the close
//! timeout), so the application's answers to the messages the peer sent before breaking
//! the protocol are written before the close frame that fails the connection, as a peer
//! that handles messages inline would write them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use futures::task::AtomicWaker;

/// Messages buffered for `recv`, `recv` calls waiting, and the task waiting for both to
/// say the application has caught up.
#[derive(Default)]
pub(crate) struct CatchUp {
    buffered: AtomicUsize,
    waiting: AtomicUsize,
    task: AtomicWaker,
}

/// A `recv` call in progress; counted as waiting until dropped.
pub(crate) struct Waiting<'a>(&'a CatchUp);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

impl CatchUp {
    /// A message is about to be buffered (counted before it is, so it is never visible
    /// to `recv` uncounted).
    pub(crate) fn buffering(&self) {
        self.buffered.fetch_add(1, Ordering::SeqCst);
    }

    /// A message counted by [`buffering`](Self::buffering) was taken by `recv` or was
    /// not buffered after all.
    pub(crate) fn taken(&self) {
        // Every call matches an earlier `buffering`; saturation only keeps a future bug
        // from wrapping.
        let _ = self
            .buffered
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                Some(n.saturating_sub(1))
            });
    }

    /// A `recv` call starts waiting: wakes the task if it waits for the application.
    pub(crate) fn enter(&self) -> Waiting<'_> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        self.task.wake();
        Waiting(self)
    }

    /// Ready once nothing is buffered and a `recv` is waiting; otherwise the task is
    /// woken when a `recv` starts.
    ///
    /// `recv` stops counting itself as waiting before it counts its message taken, so a
    /// task that reads "nothing buffered" after a message was taken also reads that the
    /// call that took it no longer waits.
    pub(crate) fn poll_caught_up(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.task.register(cx.waker());
        if self.buffered.load(Ordering::SeqCst) == 0 && self.waiting.load(Ordering::SeqCst) > 0 {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::task::noop_waker_ref;

    use super::*;

    #[test]
    fn caught_up_only_with_nothing_buffered_and_a_reader_waiting() {
        let c = CatchUp::default();
        let mut cx = Context::from_waker(noop_waker_ref());
        assert!(c.poll_caught_up(&mut cx).is_pending(), "nobody waiting");
        c.buffering();
        let waiting = c.enter();
        assert!(c.poll_caught_up(&mut cx).is_pending(), "a message to take");
        drop(waiting);
        c.taken();
        assert!(
            c.poll_caught_up(&mut cx).is_pending(),
            "taken, but the application has not come back"
        );
        let _waiting = c.enter();
        assert!(c.poll_caught_up(&mut cx).is_ready());
    }
}
