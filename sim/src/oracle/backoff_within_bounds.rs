//! Every backoff wait lies within the schedule's jitter bounds, and the next attempt
//! starts exactly when it ends.

use std::time::Duration;

use tether_core::{Event, Output, Protocol, Retry};

use super::{First, Violation, secs, sleep_until};
use crate::timeline::{CommandRecord, Entry, Timeline};

pub(super) const NAME: &str = "backoff_within_bounds";

/// Checks every [`Retry`] of [`Event::AttemptFailed`] and [`Event::Disconnected`]:
///
/// - its `wait` lies within `config.backoff.bounds(retry.failures, retry.floor)`;
/// - the next [`Output::OpenTransport`] comes exactly `wait` after the retry, unless the
///   session ends first. If the host was asleep at that instant (a
///   [`Fault::ClockJump`](crate::Fault::ClockJump) from before it until after it), the
///   session is not called until it wakes up (or the run's final close), so the attempt
///   comes with the first session call after the wait — a command, input or timer
///   record — and no later than the wake-up. A record later than the latest allowed
///   instant without the attempt is reported, and so is an attempt at any other instant;
/// - no second retry is announced before the attempt the first one scheduled;
/// - every attempt is either the first connect's (among the outputs of the `connect`
///   command) or scheduled by a retry.
#[must_use]
pub fn backoff_within_bounds<P: Protocol>(tl: &Timeline<P>) -> Option<Violation> {
    let backoff = &tl.config.backoff;
    let mut first = First::new(NAME, tl);
    let mut pending: Option<Pending> = None;
    let mut asleep_until = Duration::ZERO;
    let mut in_connect = false;
    let mut connected = false;
    for (i, r) in tl.records.iter().enumerate() {
        if let Some(p) = &pending
            && r.at > p.latest
        {
            first.offer(i, || {
                format!(
                    "no attempt by +{} as the retry at step {} scheduled (now +{})",
                    secs(p.latest),
                    p.step,
                    secs(r.at)
                )
            });
            break;
        }
        if matches!(
            r.entry,
            Entry::Command(_) | Entry::Input(_) | Entry::Timer(_)
        ) && let Some(p) = &mut pending
            && r.at >= p.due
        {
            p.called.get_or_insert(r.at);
        }
        if !matches!(r.entry, Entry::Output(_)) {
            in_connect = matches!(r.entry, Entry::Command(CommandRecord::Connect));
        }
        match &r.entry {
            Entry::Fault(_) => {
                if let Some(wake) = sleep_until(r.at, &r.entry) {
                    asleep_until = asleep_until.max(wake);
                    if let Some(p) = &mut pending {
                        // The fault starts at or before the due instant (else the check
                        // above fired), so the host sleeps through it.
                        p.latest = p.latest.max(wake);
                    }
                }
            }
            Entry::Output(Output::Event(
                Event::AttemptFailed {
                    retry: Some(retry), ..
                }
                | Event::Disconnected {
                    retry: Some(retry), ..
                },
            )) => {
                let (lo, hi) = backoff.bounds(retry.failures, retry.floor);
                if retry.wait < lo || retry.wait > hi {
                    first.offer(i, || {
                        format!(
                            "wait {:?} outside [{lo:?}, {hi:?}] = bounds({}, {:?})",
                            retry.wait, retry.failures, retry.floor
                        )
                    });
                    break;
                }
                if let Some(p) = &pending {
                    first.offer(i, || {
                        format!(
                            "a second retry before the attempt the retry at step {} scheduled",
                            p.step
                        )
                    });
                    break;
                }
                let due = r.at.saturating_add(retry.wait);
                // Only the run's final close calls the session while the host sleeps.
                let latest = if asleep_until > r.at {
                    due.max(asleep_until)
                } else {
                    due
                };
                pending = Some(Pending {
                    step: i,
                    due,
                    latest,
                    called: None,
                    retry: *retry,
                });
            }
            Entry::Output(Output::Event(Event::Ended(_))) => pending = None,
            Entry::Output(Output::OpenTransport { conn, .. }) => match pending.take() {
                Some(p) => {
                    let asleep = p.latest > p.due;
                    let on_time = r.at == p.due || (asleep && p.called == Some(r.at));
                    if !on_time {
                        first.offer(i, || {
                            format!(
                                "{conn} opened at +{}, but the retry at step {} (wait {:?}) \
                                 scheduled it for +{}{}",
                                secs(r.at),
                                p.step,
                                p.retry.wait,
                                secs(p.due),
                                if asleep {
                                    format!(" (or the wake-up by +{})", secs(p.latest))
                                } else {
                                    String::new()
                                }
                            )
                        });
                        break;
                    }
                }
                None if in_connect && !connected => connected = true,
                None => {
                    first.offer(i, || format!("{conn} opened without a retry scheduling it"));
                    break;
                }
            },
            _ => {}
        }
    }
    first.into_inner()
}

/// A retry waiting for its attempt.
struct Pending {
    /// The step of the retry.
    step: usize,
    /// When the wait ends.
    due: Duration,
    /// The latest the attempt may come: `due`, or the wake-up if the host sleeps then.
    latest: Duration,
    /// When the session was first called at or after `due`: the attempt's instant if
    /// the host slept through `due`.
    called: Option<Duration>,
    retry: Retry,
}
