//! `Progress`: how a recording is going, seen from outside the session.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// A handle on a recording (from [`Recorder::progress`](super::Recorder::progress)): how
/// many records were lost because the writer fell behind, and whether the trace is
/// complete.
///
/// A file recorder writes on a thread of its own, which finishes the trace (the `end`
/// line, then a flush) shortly after the session loop ends. A program that reads the
/// trace, or exits, right after its session ended waits for it:
///
/// ```no_run
/// use std::time::Duration;
/// use tether_driver::record::Recorder;
///
/// let recorder = Recorder::to_writer(std::fs::File::create("session.trace.jsonl")?);
/// let progress = recorder.progress();
/// // … run a session recorded by `recorder`, close it, then:
/// if !progress.wait(Duration::from_secs(5)) || progress.lost() > 0 {
///     eprintln!("the trace is incomplete");
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Progress {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    lost: AtomicU64,
    state: Mutex<Finish>,
    done: Condvar,
}

#[derive(Clone, Copy, Debug, Default)]
struct Finish {
    done: bool,
    failed: bool,
}

impl Progress {
    pub(crate) fn new() -> Self {
        Progress {
            inner: Arc::new(Inner {
                lost: AtomicU64::new(0),
                state: Mutex::new(Finish::default()),
                done: Condvar::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Finish> {
        // Two flags set under the lock; a panic elsewhere cannot leave them half-set.
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts `n` records dropped because the writer's channel was full.
    pub(crate) fn lose(&self, n: u64) {
        // A counter read by the application, ordered with nothing else.
        self.inner.lost.fetch_add(n, Ordering::Relaxed);
    }

    /// The recording is over: complete, or stopped early (`failed`).
    pub(crate) fn finish(&self, failed: bool) {
        let mut f = self.lock();
        f.done = true;
        f.failed |= failed;
        drop(f);
        self.inner.done.notify_all();
    }

    /// Records dropped so far because the writer fell behind (its channel was full). The
    /// trace has a `lost` line where each run of them was.
    #[must_use]
    pub fn lost(&self) -> u64 {
        self.inner.lost.load(Ordering::Relaxed)
    }

    /// Whether the recording is over: the session loop ended and the trace is written and
    /// flushed to its last line, or the recording stopped early ([`failed`](Self::failed)).
    #[must_use]
    pub fn is_done(&self) -> bool {
        self.lock().done
    }

    /// Whether the recording stopped early: the writer failed or panicked, or the
    /// configuration could not be recorded (each logged at `warn`).
    #[must_use]
    pub fn failed(&self) -> bool {
        self.lock().failed
    }

    /// Blocks the calling thread until the recording [is done](Self::is_done), at most
    /// `timeout`; returns whether it is. Not for an async task of the session's runtime:
    /// call it once the session is over, or from a blocking context.
    #[must_use]
    pub fn wait(&self, timeout: Duration) -> bool {
        let deadline = Instant::now().checked_add(timeout);
        let mut f = self.lock();
        while !f.done {
            let left = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                // A timeout beyond the clock's range: wait as long as it takes.
                None => Duration::MAX,
            };
            if left.is_zero() {
                break;
            }
            f = self
                .inner
                .done
                .wait_timeout(f, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        f.done
    }
}
