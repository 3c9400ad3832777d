//! After close: no armed timer, no pending request, no queued frame.

use tether_core::Protocol;

use super::{First, Violation};
use crate::timeline::{Entry, Timeline};

pub(super) const NAME: &str = "clean_after_close";

/// The run's `Final` record (taken after the final `close` and its grace period) shows
/// the session closed ([`Session::is_closed`](tether_core::Session::is_closed): terminal
/// status, every transport closed or aborted), no armed timer, and every table empty:
/// no pending request, no queued frame, no open stream, no remembered `(stream, seq)`
/// pair, no pending write. A timeline without a `Final` record is reported at its last
/// record.
#[must_use]
pub fn clean_after_close<P: Protocol>(tl: &Timeline<P>) -> Option<Violation> {
    let mut first = First::new(NAME, tl);
    let found = tl
        .records
        .iter()
        .enumerate()
        .rev()
        .find_map(|(i, r)| match &r.entry {
            Entry::Final(f) => Some((i, *f)),
            _ => None,
        });
    let Some((i, f)) = found else {
        first.offer(tl.records.len().saturating_sub(1), || {
            "the run has no Final record".to_owned()
        });
        return first.into_inner();
    };
    let mut problems = Vec::new();
    if !f.is_closed {
        problems.push(format!("not closed (status {})", f.status));
    }
    if f.timer_armed {
        problems.push("a timer is still armed".to_owned());
    }
    let s = f.sizes;
    let tables = [
        ("pending requests", s.pending_requests),
        ("queued frames", s.queued),
        ("open streams", s.open_streams),
        ("remembered stream events", s.remembered),
        ("pending writes", s.pending_writes),
    ];
    for (what, n) in tables {
        if n > 0 {
            problems.push(format!("{n} {what}"));
        }
    }
    if !problems.is_empty() {
        first.offer(i, || {
            format!("after the final close: {}", problems.join(", "))
        });
    }
    first.into_inner()
}
