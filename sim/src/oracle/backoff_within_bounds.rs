//! Every backoff wait lies within the bounds the `Config` allows for the failures the
//! world saw, and the next attempt starts exactly when it ends.

use std::time::Duration;

use serde_json::Value;
use tether_core::{
    BackoffConfig, CloseClass, CloseCode, ConnId, DisconnectReason, Event, InFrame, Input, Jitter,
    Output, Protocol, Retry, Status,
};

use super::{First, Violation, secs, sleep_until};
use crate::timeline::{CommandRecord, Entry, Timeline};

pub(super) const NAME: &str = "backoff_within_bounds";

/// Capped waits needed before their spread is judged.
const SPREAD_SAMPLE: usize = 8;

/// Checks every [`Retry`] of [`Event::AttemptFailed`] and [`Event::Disconnected`] against
/// bounds the oracle recomputes itself — never from the `failures` and `floor` the
/// session reports:
///
/// - **failures**: the oracle counts them from the run: every retry (or give-up) counts
///   one, and the count starts again when a connection was lost at least
///   `backoff.stable_after` after its `Opened` (the session's stable reset). When a sleep
///   ([`Fault::ClockJump`](crate::Fault::ClockJump)) spans the instant the connection
///   became stable and the loss comes at the wake-up, both counts are allowed;
/// - **floor**: from what the world handed the session for that connection in the call
///   that produced the retry: a close frame's code or an HTTP failure (with its
///   `Retry-After`), classified by `config.close_policy`, or a handshake rejection frame's
///   `retryAfterMs`; capped at `backoff.max_floor` (zero: floors ignored). A retry caused
///   by a timer, or by an input for another connection, has no floor;
/// - **bounds**: from `backoff.schedule` and `backoff.jitter` as documented on
///   [`BackoffConfig::bounds`]: the step for the failure count (the last step repeats),
///   jittered (`None`: exactly the step; `Full`: `[0, step]`; `Equal`: `[step/2, step]`);
///   with a floor `f`, `[f, f + max(f, step)]` (`None` jitter: exactly `max(f, step)`);
/// - **spread**: with a jittering schedule, waits with no floor and an exactly known
///   failure count must not cluster: once there are 8 of them, their positions within
///   their own windows (0 at the window's start, 1 at its end) must span at least a
///   tenth; and waits at the schedule's last step, once there are 8, must span at least a
///   tenth of the cap's window. The chance that 8 honest uniform draws do not is below
///   10⁻⁶. A schedule with steps shorter than configured puts every full-jitter wait at
///   the bottom of its window, which no single wait shows;
/// - the next [`Output::OpenTransport`] comes exactly `wait` after the retry, unless the
///   session ends first. If the host was asleep at that instant (a
///   [`Fault::ClockJump`](crate::Fault::ClockJump) from before it until after it), the
///   session is not called until it wakes up (or the run's final close), so the attempt
///   comes with the first session call after the wait — a command, input or timer
///   record — and no later than the wake-up. A record later than the latest allowed
///   instant without the attempt is reported, and so is an attempt at any other instant;
/// - no second retry is announced before the attempt the first one scheduled;
/// - every attempt is either the first connect's (among the outputs of the `connect`
///   command), scheduled by a retry, or started by the application: among the outputs of
///   an accepted `resume` or `reconnect`, or of an accepted `send` or `request` of a lazy
///   session (`config.lazy`);
/// - the application's `reconnect` and `disconnect` cancel the retry scheduled before
///   them; a `reconnect` that drops an open connection announces a zero wait and counts
///   no failure; a session that goes back to `Idle` (paused, or lazy and idle) starts
///   counting failures afresh.
#[must_use]
pub fn backoff_within_bounds<P: Protocol>(tl: &Timeline<P>) -> Option<Violation> {
    let cfg = &tl.config;
    let backoff = &cfg.backoff;
    let mut first = First::new(NAME, tl);
    let mut pending: Option<Pending> = None;
    let mut asleep_until = Duration::ZERO;
    // Every sleep: (start, wake).
    let mut sleeps: Vec<(Duration, Duration)> = Vec::new();
    let mut in_connect = false;
    let mut connected = false;
    // The current call is the application's `resume`, `reconnect` or a lazy session's
    // use: it may start an attempt itself.
    let mut by_command = false;
    let mut reconnecting = false;
    // The failure counts the session may hold: [lo, hi].
    let (mut lo, mut hi) = (0u32, 0u32);
    // The open connection and when it opened.
    let mut open: Option<(ConnId, Duration)> = None;
    // The input whose effects are being read, and its instant.
    let mut cause: Option<(&Input, Duration)> = None;
    // Waits at the cap: (step, wait).
    let mut capped: Vec<(usize, Duration)> = Vec::new();
    let mut spread = Spread::default();
    let len = u32::try_from(backoff.schedule.len()).unwrap_or(u32::MAX);
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
        if !matches!(r.entry, Entry::Output(_) | Entry::Sizes(_)) {
            in_connect = matches!(r.entry, Entry::Command(CommandRecord::Connect));
            reconnecting = matches!(r.entry, Entry::Command(CommandRecord::Reconnect(Ok(()))));
            by_command = match &r.entry {
                Entry::Command(
                    CommandRecord::Resume(Ok(())) | CommandRecord::Reconnect(Ok(())),
                ) => true,
                Entry::Command(
                    CommandRecord::Send(Ok(_)) | CommandRecord::Request { result: Ok(_), .. },
                ) => cfg.lazy,
                _ => false,
            };
            if matches!(
                r.entry,
                Entry::Command(
                    CommandRecord::Reconnect(Ok(())) | CommandRecord::Disconnect(Ok(()))
                )
            ) {
                pending = None;
            }
            cause = match &r.entry {
                Entry::Input(input) => Some((input, r.at)),
                _ => None,
            };
        }
        match &r.entry {
            Entry::Fault(_) => {
                if let Some(wake) = sleep_until(r.at, &r.entry) {
                    sleeps.push((r.at, wake));
                    asleep_until = asleep_until.max(wake);
                    if let Some(p) = &mut pending {
                        // The fault starts at or before the due instant (else the check
                        // above fired), so the host sleeps through it.
                        p.latest = p.latest.max(wake);
                    }
                }
            }
            Entry::Output(Output::Event(Event::Opened { conn, .. })) => open = Some((*conn, r.at)),
            Entry::Output(Output::StatusChanged {
                to: Status::Idle, ..
            }) => {
                (lo, hi) = (0, 0);
                open = None;
                pending = None;
            }
            // The application's reconnect: no failure, no wait.
            Entry::Output(Output::Event(Event::Disconnected {
                reason: DisconnectReason::Reconnect,
                retry,
                ..
            })) if reconnecting => {
                open = None;
                if retry.map(|r| r.wait) != Some(Duration::ZERO) {
                    first.offer(i, || {
                        format!("the application's reconnect announced {retry:?}, not no wait")
                    });
                    break;
                }
            }
            Entry::Output(Output::Event(
                Event::AttemptFailed { conn, retry, .. } | Event::Disconnected { conn, retry, .. },
            )) => {
                // The stable reset: judged when the open connection is lost.
                if let Some((c, opened)) = open.take()
                    && c == *conn
                {
                    let stable = opened.saturating_add(backoff.stable_after);
                    if r.at >= stable {
                        // Asleep when it became stable and lost at the wake-up: the
                        // timers due during the sleep fire in one call, in an order the
                        // run does not show.
                        let woke_here = r.at == asleep_until
                            && sleeps.iter().any(|(s, w)| *s <= stable && stable < *w);
                        lo = 0;
                        if !woke_here {
                            hi = 0;
                        }
                    }
                }
                lo = lo.saturating_add(1);
                hi = hi.saturating_add(1);
                let Some(retry) = retry else {
                    continue;
                };
                let floors = floors(tl, cause, *conn, asleep_until);
                let mut fits = false;
                let mut shown = Vec::new();
                for floor in &floors {
                    let floor = floor.filter(|_| !backoff.max_floor.is_zero());
                    let floor = floor.map(|f| f.min(backoff.max_floor));
                    for n in lo..=hi.min(lo.saturating_add(len)) {
                        match allowed(backoff, n, floor) {
                            Some((a, b)) => {
                                fits |= (a..=b).contains(&retry.wait);
                                shown
                                    .push(format!("[{a:?}, {b:?}] (failure {n}, floor {floor:?})"));
                            }
                            None => fits = true,
                        }
                    }
                }
                if !fits {
                    first.offer(i, || {
                        format!(
                            "wait {:?} outside every allowed range: {}",
                            retry.wait,
                            shown.join(", ")
                        )
                    });
                    break;
                }
                // Where the wait fell within its window, when the failure count is
                // known exactly and no floor applies.
                if lo == hi
                    && floors == [None]
                    && let Some((a, b)) = allowed(backoff, lo, None)
                    && b > a
                    && matches!(backoff.jitter, Jitter::Full | Jitter::Equal)
                {
                    let u = (retry.wait - a).as_secs_f64() / (b - a).as_secs_f64();
                    spread.see(i, u);
                    if let Some(v) = spread.narrow() {
                        first.offer(i, || v);
                        break;
                    }
                }
                if lo >= len
                    && floors == [None]
                    && matches!(backoff.jitter, Jitter::Full | Jitter::Equal)
                {
                    capped.push((i, retry.wait));
                    if capped.len() >= SPREAD_SAMPLE
                        && let Some(v) = narrow(backoff, &capped)
                    {
                        first.offer(i, || v);
                        break;
                    }
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
                None if by_command => {}
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

/// The inclusive range the documentation allows for a wait after the `n`-th consecutive
/// failure with this (already capped) floor; `None` for a jitter this oracle does not
/// know (not judged).
fn allowed(b: &BackoffConfig, n: u32, floor: Option<Duration>) -> Option<(Duration, Duration)> {
    let index = usize::try_from(n.max(1) - 1).unwrap_or(usize::MAX);
    let step = b
        .schedule
        .get(index)
        .or(b.schedule.last())
        .copied()
        .unwrap_or_default();
    let (lo, hi) = match b.jitter {
        Jitter::None => (step, step),
        Jitter::Full => (Duration::ZERO, step),
        Jitter::Equal => (step / 2, step),
        _ => return None,
    };
    Some(match (floor, b.jitter) {
        (None, _) => (lo, hi),
        (Some(f), Jitter::None) => (f.max(step), f.max(step)),
        (Some(f), _) => (f, f.saturating_add(f.max(hi))),
    })
}

/// Where un-floored waits fell within their jitter windows (0: the window's start, 1: its
/// end): honest draws are uniform there, whatever the step.
#[derive(Default)]
struct Spread {
    count: usize,
    first: usize,
    min: f64,
    max: f64,
}

impl Spread {
    fn see(&mut self, step: usize, u: f64) {
        if self.count == 0 {
            (self.first, self.min, self.max) = (step, u, u);
        }
        self.count += 1;
        self.min = self.min.min(u);
        self.max = self.max.max(u);
    }

    /// Why the waits cluster, once there are enough of them to tell.
    fn narrow(&self) -> Option<String> {
        (self.count >= SPREAD_SAMPLE && self.max - self.min < 0.1).then(|| {
            format!(
                "{} waits all lie between {:.3} and {:.3} of their jitter windows: the \
                 schedule does not spread them as configured (first at step {})",
                self.count, self.min, self.max, self.first
            )
        })
    }
}

/// Why the capped waits are not spread over the jitter window, if they are not.
fn narrow(b: &BackoffConfig, capped: &[(usize, Duration)]) -> Option<String> {
    let cap = b.schedule.last().copied().unwrap_or_default();
    let window = match b.jitter {
        Jitter::Full => cap,
        Jitter::Equal => cap - cap / 2,
        _ => return None,
    };
    let min = capped.iter().map(|(_, w)| *w).min()?;
    let max = capped.iter().map(|(_, w)| *w).max()?;
    (max - min < window / 10).then(|| {
        format!(
            "{} waits at the capped step {cap:?} all lie within [{min:?}, {max:?}]: jitter \
             does not spread them over its {window:?} window (first at step {})",
            capped.len(),
            capped[0].0
        )
    })
}

/// The floors the world's input `cause` asks for on `conn` (several when a wake-up makes
/// the cause ambiguous).
fn floors<P: Protocol>(
    tl: &Timeline<P>,
    cause: Option<(&Input, Duration)>,
    conn: ConnId,
    wake: Duration,
) -> Vec<Option<Duration>> {
    let Some((input, at)) = cause else {
        return vec![None];
    };
    let policy = &tl.config.close_policy;
    let floor = match input {
        Input::TransportClosed { conn: c, code, .. } if *c == conn => {
            let code = code
                .filter(|c| c.is_valid_on_wire() || *c == CloseCode::NO_STATUS)
                .unwrap_or(CloseCode::ABNORMAL);
            class_floor(policy.classify_close(code))
        }
        Input::TransportFailed { conn: c, failure } if *c == conn => {
            class_floor(policy.classify_failure(failure))
        }
        Input::FrameReceived {
            conn: c,
            frame: InFrame::Text(bytes),
        } if *c == conn => serde_json::from_slice::<Value>(bytes)
            .ok()
            .and_then(|v| retry_after_ms(&v, 0))
            .map(Duration::from_millis),
        _ => None,
    };
    // On a wake-up the session first fires every timer due during the sleep: a retry
    // among this input's outputs may come from one of them.
    if floor.is_some() && at == wake {
        vec![floor, None]
    } else {
        vec![floor]
    }
}

fn class_floor(class: CloseClass) -> Option<Duration> {
    match class {
        CloseClass::Reconnect { min_delay } => min_delay,
        _ => None,
    }
}

/// A `retryAfterMs` field at any depth (a HelloAck `hello_error`, a Gateway error).
fn retry_after_ms(v: &Value, depth: usize) -> Option<u64> {
    if depth > 8 {
        return None;
    }
    match v {
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            if k == "retryAfterMs" {
                v.as_u64()
            } else {
                retry_after_ms(v, depth + 1)
            }
        }),
        Value::Array(items) => items.iter().find_map(|v| retry_after_ms(v, depth + 1)),
        _ => None,
    }
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
