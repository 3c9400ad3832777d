//! Invariant oracles: named checks over a timeline, each reporting the first step that
//! breaks it.
//!
//! Every oracle is a single linear pass over [`Timeline::records`] and returns the
//! violation with the smallest step index, or `None`. [`check`] runs them all; [`ORACLES`]
//! lists their names in the order `check` runs them.
//!
//! How the oracles read a timeline (see `world.rs`): a `Command`, `Input` or `Timer`
//! record is followed by the `Output`s the session emitted in that call, then possibly a
//! `Sizes` record; the outputs up to the next non-output record are that call's effects.
//! Every call first fires the timers due at or before its `now`, so the effects of an
//! input or command may begin with timer effects at the same instant. A
//! [`Fault::ClockJump`] at `t` freezes the session until `t + d`:
//! no session call happens in between, and everything due in between happens at `t + d`.
//!
//! **Outcomes, not self-reports.** Where the world can see it, an oracle judges from the
//! world's ledger ([`Entry::Fact`]: frames the server received or the
//! network lost, closes sent and received, the world's own encoding of each sent message)
//! and from bounds recomputed from the [`Config`](tether_core::Config), never from the
//! session's reported `Retry`, adopted heartbeat or table sizes. `docs/simulation.md`
//! says, per oracle, what it proves and what it cannot see.
//!
//! | oracle | DESIGN.md invariant | judged from |
//! |---|---|---|
//! | [`requests_resolve_once`](requests_resolve_once()) | every request resolves exactly once; one in flight on a lost connection fails `Disconnected` at once | responses; the connection each request was written on |
//! | [`stream_events_once`](stream_events_once()) | no `(stream, seq)` twice; a terminal event exactly once | stream events |
//! | [`no_attempt_after_end`](no_attempt_after_end()) | no connect attempt after a fatal close or a user close | attempts, the end |
//! | [`backoff_within_bounds`](backoff_within_bounds()) | every backoff wait lies within the schedule's bounds; capped waits spread | the `Config`, failures counted from the run, floors from the world's inputs |
//! | [`silent_peer_detected`](silent_peer_detected()) | a silent peer is declared dead in time | the `Config`, the heartbeat the world's server declared (capped), the world's frames |
//! | [`send_deadline_kept`](send_deadline_kept()) | no write outlives the send deadline without an abort | writes and the world's completions |
//! | [`status_transitions_legal`](status_transitions_legal()) | status changes are legal, each reported once | status changes |
//! | [`clean_after_close`](clean_after_close()) | after close: no timer, no request, no queued frame | the final state |
//! | [`old_generations_inert`](old_generations_inert()) | an older generation never changes a newer one | inputs and outputs |
//! | [`bounds_kept`](bounds_kept()) | queues and tables never exceed their bounds | the queue and writes the world counts; the session's sizes where the world cannot count |
//! | [`deadlines_move`](deadlines_move()) | a fired deadline never stays put (STYLE rule 4) | timer records |
//! | [`liveness_after_heal`](liveness_after_heal()) | after the heal the session gets back to `Open` (rule 11) | status changes, the `Config` |
//! | [`messages_accounted`](messages_accounted()) | every accepted message reaches the peer exactly once or is reported dropped; in order per connection | what the world's server received or the network lost |
//! | [`healthy_peer_opens`](healthy_peer_opens()) | a healthy peer leads to `Open` and to requests that succeed; an end has a confirmed cause | the fault records, the inputs the world delivered, the `Config` |
//! | [`closes_complete`](closes_complete()) | a close is confirmed or aborted within `close_timeout`; the peer's close is answered | closes, and the close frames the world's server received |
//! | [`idle_close_in_time`](idle_close_in_time()) | an idle session closes within `idle_timeout`, not before | commands, opens and the world's frames |

mod backoff_within_bounds;
mod bounds_kept;
mod clean_after_close;
mod closes_complete;
mod deadlines_move;
mod healthy_peer_opens;
mod idle_close_in_time;
mod liveness_after_heal;
mod messages_accounted;
mod no_attempt_after_end;
mod old_generations_inert;
mod requests_resolve_once;
mod send_deadline_kept;
mod silent_peer_detected;
mod status_transitions_legal;
mod stream_events_once;

use std::time::Duration;

use tether_core::Protocol;

use crate::fault::Fault;
use crate::timeline::{Entry, Timeline};

pub use backoff_within_bounds::backoff_within_bounds;
pub use bounds_kept::{bounds_kept, pending_writes_bound};
pub use clean_after_close::clean_after_close;
pub use closes_complete::closes_complete;
pub use deadlines_move::deadlines_move;
pub use healthy_peer_opens::healthy_peer_opens;
pub use idle_close_in_time::idle_close_in_time;
pub use liveness_after_heal::{liveness_after_heal, reopen_bound};
pub use messages_accounted::messages_accounted;
pub use no_attempt_after_end::no_attempt_after_end;
pub use old_generations_inert::old_generations_inert;
pub use requests_resolve_once::requests_resolve_once;
pub use send_deadline_kept::send_deadline_kept;
pub use silent_peer_detected::{declared_heartbeat, silent_peer_detected};
pub use status_transitions_legal::status_transitions_legal;
pub use stream_events_once::stream_events_once;

/// A broken invariant: which oracle, at which step of the timeline, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The oracle's name.
    pub oracle: &'static str,
    /// The index of the first offending record.
    pub step: usize,
    /// Its simulated time.
    pub at: Duration,
    /// What was wrong.
    pub detail: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} at step {} (+{:.3}s): {}",
            self.oracle,
            self.step,
            self.at.as_secs_f64(),
            self.detail
        )
    }
}

/// Every oracle's name, in the order [`check`] runs them.
pub const ORACLES: &[&str] = &[
    requests_resolve_once::NAME,
    stream_events_once::NAME,
    no_attempt_after_end::NAME,
    backoff_within_bounds::NAME,
    silent_peer_detected::NAME,
    send_deadline_kept::NAME,
    status_transitions_legal::NAME,
    clean_after_close::NAME,
    old_generations_inert::NAME,
    bounds_kept::NAME,
    deadlines_move::NAME,
    liveness_after_heal::NAME,
    messages_accounted::NAME,
    healthy_peer_opens::NAME,
    closes_complete::NAME,
    idle_close_in_time::NAME,
];

/// Runs every oracle over the timeline; at most one violation (the first) per oracle.
#[must_use]
pub fn check<P: Protocol>(timeline: &Timeline<P>) -> Vec<Violation> {
    [
        requests_resolve_once(timeline),
        stream_events_once(timeline),
        no_attempt_after_end(timeline),
        backoff_within_bounds(timeline),
        silent_peer_detected(timeline),
        send_deadline_kept(timeline),
        status_transitions_legal(timeline),
        clean_after_close(timeline),
        old_generations_inert(timeline),
        bounds_kept(timeline),
        deadlines_move(timeline),
        liveness_after_heal(timeline),
        messages_accounted(timeline),
        healthy_peer_opens(timeline),
        closes_complete(timeline),
        idle_close_in_time(timeline),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Runs the oracle called `name`; `None` if no oracle has that name.
#[must_use]
pub fn check_one<P: Protocol>(name: &str, timeline: &Timeline<P>) -> Option<Option<Violation>> {
    let f: fn(&Timeline<P>) -> Option<Violation> = match name {
        requests_resolve_once::NAME => requests_resolve_once,
        stream_events_once::NAME => stream_events_once,
        no_attempt_after_end::NAME => no_attempt_after_end,
        backoff_within_bounds::NAME => backoff_within_bounds,
        silent_peer_detected::NAME => silent_peer_detected,
        send_deadline_kept::NAME => send_deadline_kept,
        status_transitions_legal::NAME => status_transitions_legal,
        clean_after_close::NAME => clean_after_close,
        old_generations_inert::NAME => old_generations_inert,
        bounds_kept::NAME => bounds_kept,
        deadlines_move::NAME => deadlines_move,
        liveness_after_heal::NAME => liveness_after_heal,
        messages_accounted::NAME => messages_accounted,
        healthy_peer_opens::NAME => healthy_peer_opens,
        closes_complete::NAME => closes_complete,
        idle_close_in_time::NAME => idle_close_in_time,
        _ => return None,
    };
    Some(f(timeline))
}

/// Keeps the violation with the smallest step.
struct First<'a, P: Protocol> {
    oracle: &'static str,
    timeline: &'a Timeline<P>,
    best: Option<Violation>,
}

impl<'a, P: Protocol> First<'a, P> {
    fn new(oracle: &'static str, timeline: &'a Timeline<P>) -> Self {
        First {
            oracle,
            timeline,
            best: None,
        }
    }

    /// Offers a violation at `step`; the detail is only built if it is the earliest.
    fn offer(&mut self, step: usize, detail: impl FnOnce() -> String) {
        if self.best.as_ref().is_some_and(|b| b.step <= step) {
            return;
        }
        self.best = Some(violation(self.oracle, self.timeline, step, detail()));
    }

    /// Whether a violation at or before `step` is already known (no later one can win).
    fn settled(&self) -> bool {
        self.best.is_some()
    }

    fn into_inner(self) -> Option<Violation> {
        self.best
    }
}

fn violation<P: Protocol>(
    oracle: &'static str,
    timeline: &Timeline<P>,
    step: usize,
    detail: String,
) -> Violation {
    let at = timeline.records.get(step).map_or(Duration::ZERO, |r| r.at);
    Violation {
        oracle,
        step,
        at,
        detail,
    }
}

/// When the host wakes up from the sleep this record starts, if it is a clock jump.
fn sleep_until<P: Protocol>(at: Duration, entry: &Entry<P>) -> Option<Duration> {
    match entry {
        Entry::Fault(Fault::ClockJump(d)) => Some(at.saturating_add(*d)),
        _ => None,
    }
}

/// Whether the timeline ran to its end (it has a `Final` record).
fn finished<P: Protocol>(timeline: &Timeline<P>) -> Option<usize> {
    timeline
        .records
        .iter()
        .rposition(|r| matches!(r.entry, Entry::Final(_)))
}

fn secs(d: Duration) -> String {
    format!("{:.3}s", d.as_secs_f64())
}
