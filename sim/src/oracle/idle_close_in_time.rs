//! With an idle timeout, an idle session closes neither early nor late.

use std::time::Duration;

use tether_core::{EndReason, Event, InFrame, Input, Output, Protocol};

use super::{First, Violation, secs, sleep_until};
use crate::timeline::{CommandRecord, Entry, Timeline};

pub(super) const NAME: &str = "idle_close_in_time";

/// With `config.idle_timeout = Some(idle)`, the session ends with [`EndReason::Idle`]
/// within `idle` of its last activity, and not before. Activity is recomputed from the
/// run, not read from the session:
///
/// - **not late**: the latest of every user command and every data frame the world
///   delivered ([`Input::FrameReceived`] text or binary: a generous upper
///   bound, since not every frame counts as activity) — no record of a session that has
///   not ended may come later than that plus `idle` (a sleep over that instant moves it
///   to the wake-up);
/// - **not early**: an idle end comes no earlier than `idle` after the latest accepted
///   `connect`, `send` or `request` (each of which certainly counts).
///
/// A reconnect (`Opened`) is not activity: a flapping connection does not keep an unused
/// session alive.
///
/// Without an idle timeout there is nothing to judge.
#[must_use]
pub fn idle_close_in_time<P: Protocol>(tl: &Timeline<P>) -> Option<Violation> {
    let idle = tl.config.idle_timeout?;
    let mut first = First::new(NAME, tl);
    // Latest possible activity (upper bound) and surely counted activity (lower bound).
    let mut upper: Option<(Duration, usize)> = None;
    let mut sure: Option<Duration> = None;
    let mut sleeps: Vec<(Duration, Duration)> = Vec::new();
    for (i, r) in tl.records.iter().enumerate() {
        if let Some((last, step)) = upper {
            let deadline = woken(last.saturating_add(idle), &sleeps);
            if r.at > deadline {
                first.offer(i, || {
                    format!(
                        "idle since +{} (step {step}), past the idle deadline +{} \
                         (idle_timeout {idle:?}), still not closed",
                        secs(last),
                        secs(deadline)
                    )
                });
                break;
            }
        }
        match &r.entry {
            Entry::Command(c) => {
                upper = Some((r.at, i));
                let accepted = matches!(
                    c,
                    CommandRecord::Connect
                        | CommandRecord::Send(Ok(_))
                        | CommandRecord::Request { result: Ok(_), .. }
                );
                if accepted {
                    sure = Some(r.at);
                }
                if matches!(c, CommandRecord::Close | CommandRecord::Terminate) {
                    break;
                }
            }
            Entry::Input(Input::FrameReceived {
                frame: InFrame::Text(_) | InFrame::Binary(_),
                ..
            }) => upper = Some((r.at, i)),
            Entry::Output(Output::Event(Event::Ended(reason))) => {
                if *reason == EndReason::Idle
                    && let Some(s) = sure
                    && r.at < s.saturating_add(idle)
                {
                    first.offer(i, || {
                        format!(
                            "closed as idle at +{}, but it was active at +{} (idle_timeout \
                             {idle:?})",
                            secs(r.at),
                            secs(s)
                        )
                    });
                }
                break;
            }
            Entry::Fault(_) => {
                if let Some(w) = sleep_until(r.at, &r.entry) {
                    sleeps.push((r.at, w));
                }
            }
            _ => {}
        }
    }
    first.into_inner()
}

/// When the session can act on a deadline at `d`: `d`, or the wake-up of the sleeps it
/// falls in (overlapping sleeps wake at the latest of their ends).
fn woken(mut d: Duration, sleeps: &[(Duration, Duration)]) -> Duration {
    while let Some(w) = sleeps
        .iter()
        .filter(|(s, w)| *s <= d && d < *w)
        .map(|(_, w)| *w)
        .max()
    {
        d = w;
    }
    d
}
