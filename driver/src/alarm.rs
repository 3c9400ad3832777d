//! The one sleep a loop keeps for its machine's next deadline, shared by the client's
//! session loop and the server's connection task.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use futures::future::{BoxFuture, FusedFuture};

use crate::runtime::Runtime;

/// A sleep aimed at a deadline. As a future it completes when the deadline passes, and
/// is terminated (a `select!` skips it) while nothing is armed.
pub(crate) struct Alarm {
    armed: Option<(Instant, BoxFuture<'static, ()>)>,
}

impl Alarm {
    pub(crate) fn new() -> Self {
        Alarm { armed: None }
    }

    /// Aims at `deadline`, or disarms for `None`. An armed sleep is kept while it fires no
    /// later than the deadline: deadlines move later on almost every frame (liveness, send
    /// deadline), and a sleep that fires early is only a spurious `handle_timeout`, which
    /// the machines allow; re-arming per frame would cost a timer each.
    pub(crate) fn aim<R: Runtime>(&mut self, deadline: Option<Instant>, rt: &R) {
        match deadline {
            None => self.armed = None,
            Some(deadline)
                if self
                    .armed
                    .as_ref()
                    .is_none_or(|(armed, _)| *armed > deadline) =>
            {
                self.armed = Some((deadline, rt.sleep_until(deadline)));
            }
            Some(_) => {}
        }
    }
}

impl Future for Alarm {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let Some((_, sleep)) = &mut this.armed else {
            return Poll::Pending;
        };
        if sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        this.armed = None;
        Poll::Ready(())
    }
}

impl FusedFuture for Alarm {
    fn is_terminated(&self) -> bool {
        self.armed.is_none()
    }
}
