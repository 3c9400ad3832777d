//! A runtime for the driver's unit tests: time moves only when a test says so, and
//! spawned tasks run only when a test calls [`Manual::run`]. One piece for every unit test
//! that drives a task (the client's session loop, the hub's backplane).

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::task::noop_waker_ref;

use crate::runtime::Runtime;

/// How many times [`Manual::run`] polls every task: enough for a task to act on what a
/// test changed, bounded so a task that never settles cannot hang a test.
const POLLS: usize = 32;

struct RtState {
    now: Instant,
    spawned: Vec<BoxFuture<'static, ()>>,
}

fn lock(m: &Mutex<RtState>) -> MutexGuard<'_, RtState> {
    // Plain data; a panicking test leaves nothing to repair.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The manual runtime; clones share the clock and the tasks.
#[derive(Clone)]
pub(crate) struct Manual(Arc<Mutex<RtState>>);

impl Runtime for Manual {
    fn spawn(&self, future: BoxFuture<'static, ()>) {
        lock(&self.0).spawned.push(future);
    }

    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()> {
        let rt = self.clone();
        // Polled again by `run` after every clock move: no waker needed.
        Box::pin(futures::future::poll_fn(move |_| {
            if lock(&rt.0).now >= deadline {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }))
    }

    fn now(&self) -> Instant {
        lock(&self.0).now
    }
}

impl Manual {
    pub(crate) fn new() -> Self {
        // The one clock read: an arbitrary epoch, only offsets matter.
        let now = Instant::now();
        Manual(Arc::new(Mutex::new(RtState {
            now,
            spawned: Vec::new(),
        })))
    }

    /// Moves the clock; tasks see it on the next [`run`](Self::run).
    pub(crate) fn advance(&self, d: Duration) {
        lock(&self.0).now += d;
    }

    /// Polls every task [`POLLS`] times; a task's panic fails the test.
    pub(crate) fn run(&self) {
        self.poll_all(false);
    }

    /// [`run`](Self::run), dropping a task that panics as a runtime drops a panicked
    /// task, so a test can check what is left behind.
    pub(crate) fn run_dropping_panics(&self) {
        self.poll_all(true);
    }

    fn poll_all(&self, catch: bool) {
        let mut cx = Context::from_waker(noop_waker_ref());
        for _ in 0..POLLS {
            let mut tasks = std::mem::take(&mut lock(&self.0).spawned);
            tasks.retain_mut(|t| {
                if catch {
                    matches!(
                        std::panic::catch_unwind(AssertUnwindSafe(|| t.as_mut().poll(&mut cx))),
                        Ok(Poll::Pending)
                    )
                } else {
                    t.as_mut().poll(&mut cx).is_pending()
                }
            });
            lock(&self.0).spawned.extend(tasks);
        }
    }

    /// Tasks not yet finished.
    pub(crate) fn tasks(&self) -> usize {
        lock(&self.0).spawned.len()
    }
}
