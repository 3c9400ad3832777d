//! After the faults heal, the session gets back to `Open` in bounded time.

use std::time::Duration;

use tether_core::{
    Config, Event, Output, Protocol, SERVICE_RESTART_FLOOR, Status, TRY_AGAIN_LATER_FLOOR,
};

use super::{First, Violation, secs, sleep_until};
use crate::timeline::{Entry, Timeline};

pub(super) const NAME: &str = "liveness_after_heal";

/// Room for network latency and the handshake's round trips on a healed network
/// (delays a latency fault scheduled before the heal last up to 3 s).
const SLACK: Duration = Duration::from_secs(5);

/// After [`Entry::Heal`] at `h`, unless the session has ended, it is never un-open for
/// longer than [`reopen_bound`]: every stretch in which the status is not
/// [`Status::Open`] — the one under way at the heal, measured from `h`, and any that
/// starts later, measured from its `StatusChanged` — ends with a `StatusChanged { to:
/// Open }` (or the session's end) within the bound. A record later than that is reported.
/// A sleep ([`Fault::ClockJump`](crate::Fault::ClockJump)) that lasts past the start of a
/// stretch moves its start to the wake-up.
///
/// Measuring from the status change rather than from the heal leaves out stale
/// detection: a half-open connection keeps the status `Open` until the session declares
/// it dead, and [`silent_peer_detected`](super::silent_peer_detected()) bounds that.
#[must_use]
pub fn liveness_after_heal<P: Protocol>(tl: &Timeline<P>) -> Option<Violation> {
    let mut first = First::new(NAME, tl);
    let mut status = Status::Idle;
    let mut healed = false;
    let mut wake = Duration::ZERO;
    let mut floor: Option<Duration> = None;
    let mut bound = reopen_bound(&tl.config, floor);
    // The un-open stretch under way after the heal: (start, step).
    let mut unopen: Option<(Duration, usize)> = None;
    for (i, r) in tl.records.iter().enumerate() {
        if let Some((start, s)) = unopen {
            let from = start.max(wake);
            let deadline = from.saturating_add(bound);
            if r.at > deadline {
                first.offer(i, || {
                    format!(
                        "not open since +{} (step {s}); the bound {} after +{} has passed",
                        secs(start),
                        secs(bound),
                        secs(from)
                    )
                });
                break;
            }
        }
        match &r.entry {
            Entry::Heal => {
                healed = true;
                if status != Status::Open && !status.is_terminal() {
                    unopen = Some((r.at, i));
                }
            }
            Entry::Fault(_) => {
                if let Some(w) = sleep_until(r.at, &r.entry) {
                    wake = wake.max(w);
                }
            }
            Entry::Output(Output::StatusChanged { to, .. }) => {
                status = *to;
                if to.is_terminal() {
                    if healed {
                        break;
                    }
                } else if *to == Status::Open {
                    unopen = None;
                } else if healed && unopen.is_none() {
                    unopen = Some((r.at, i));
                }
            }
            Entry::Output(Output::Event(Event::Ended(_))) if healed => break,
            Entry::Output(Output::Event(
                Event::AttemptFailed {
                    retry: Some(retry), ..
                }
                | Event::Disconnected {
                    retry: Some(retry), ..
                },
            )) => {
                if let Some(f) = retry.floor
                    && floor.is_none_or(|g| f > g)
                {
                    floor = Some(f);
                    bound = reopen_bound(&tl.config, floor);
                }
            }
            _ => {}
        }
    }
    first.into_inner()
}

/// How long the session may stay un-open on a healed network: an attempt under way
/// fails by its connect timeout and then its handshake timeout at the latest, the
/// session waits out the longest backoff it can draw, and the next attempt succeeds:
/// `connect_timeout + handshake_timeout + longest wait + 5 s` of network slack.
///
/// The longest wait is the largest upper bound of
/// [`BackoffConfig::bounds`](tether_core::BackoffConfig::bounds) over the schedule, with no
/// floor and with the largest floor in play: the default policy's 30 s (1013, HTTP 429),
/// or a larger one the peer asked for (`largest_floor`, as seen in the run's retries).
/// With the defaults: 10 + 5 + 60 + 5 = 80 s.
#[must_use]
pub fn reopen_bound(config: &Config, largest_floor: Option<Duration>) -> Duration {
    let b = &config.backoff;
    let floor = TRY_AGAIN_LATER_FLOOR
        .max(SERVICE_RESTART_FLOOR)
        .max(largest_floor.unwrap_or_default());
    let steps = u32::try_from(b.schedule.len()).unwrap_or(u32::MAX).max(1);
    let longest = (1..=steps)
        .map(|n| b.bounds(n, None).1.max(b.bounds(n, Some(floor)).1))
        .max()
        .unwrap_or_default();
    config
        .connect_timeout
        .saturating_add(config.handshake_timeout)
        .saturating_add(longest)
        .saturating_add(SLACK)
}
