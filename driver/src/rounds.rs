//! The shape of a task's wake-up, shared by the client session's task and a guarded server
//! connection's: rounds of taking whatever is ready and acting on it, until a round finds
//! nothing (every source has registered the waker), the task is done, or the round budget
//! is spent (the task then wakes itself and yields, so one busy connection cannot hold a
//! runtime thread).

use std::task::{Context, Poll};

/// Rounds in one wake-up before the task yields to the runtime, so a busy session or
/// connection cannot monopolise its thread.
const ROUND_BUDGET: usize = 16;

/// What one round found.
pub(crate) enum Round {
    /// Something happened: another round may find more.
    Progressed,
    /// Nothing was ready: every source has registered the waker.
    Idle,
    /// The task has nothing left to do.
    Done,
}

impl Round {
    /// `Progressed` or `Idle`.
    pub(crate) fn progressed(progressed: bool) -> Self {
        if progressed {
            Round::Progressed
        } else {
            Round::Idle
        }
    }
}

/// Runs `round` until it is idle or done, at most [`ROUND_BUDGET`] times.
#[inline]
pub(crate) fn poll_rounds(
    cx: &mut Context<'_>,
    mut round: impl FnMut(&mut Context<'_>) -> Round,
) -> Poll<()> {
    for _ in 0..ROUND_BUDGET {
        match round(cx) {
            Round::Progressed => {}
            Round::Idle => return Poll::Pending,
            Round::Done => return Poll::Ready(()),
        }
    }
    cx.waker().wake_by_ref();
    Poll::Pending
}
