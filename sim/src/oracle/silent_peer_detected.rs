//! A silent peer is declared dead in time.

use std::time::Duration;

use serde_json::Value;
use tether_core::{
    ConnId, DisconnectReason, Event, InFrame, Input, LivenessConfig, Output, Protocol,
};

use super::{First, Violation, secs, sleep_until};
use crate::timeline::{Entry, Timeline};

pub(super) const NAME: &str = "silent_peer_detected";

/// Timer arithmetic in the session and the world is exact to the nanosecond; this only
/// absorbs rounding in a heartbeat parsed from milliseconds.
const SLACK: Duration = Duration::from_millis(1);

/// While a connection is open — from [`Event::Opened`] to its [`Event::Disconnected`] or
/// the session's [`Event::Ended`] — no record comes later than `last + stale + slack`,
/// where `last` is the time of the last [`Input::FrameReceived`] on that connection (any
/// frame: data, ping, pong) or of the `Opened`, and `stale` is the threshold in force.
///
/// The session checks staleness on its own deadline (`last + stale`), not on the next ping
/// tick, so this is tighter than DESIGN.md's "within ping interval + stale threshold".
///
/// **The threshold**, recomputed from the `Config` and what the world's server said —
/// never from the heartbeat the session says it adopted: `liveness.stale_after`, widened
/// to `min(heartbeat, liveness.max_heartbeat) × heartbeat_stale_factor` when the
/// handshake declared an application heartbeat (a `max_heartbeat` of zero ignores
/// declared heartbeats). The heartbeat is read from the frame the world delivered that
/// opened the connection (the input whose outputs contain the `Opened`) with
/// [`declared_heartbeat`]; a protocol that declares its heartbeat under another name is
/// judged against `stale_after` alone. A peer declaring a heartbeat of a thousand years
/// thus still gets a silent connection declared dead within
/// `max(stale_after, max_heartbeat × factor)`.
///
/// Nor is a connection declared dead too early: a [`DisconnectReason::Stale`] verdict
/// needs `liveness.stale_after` of silence (the threshold is never shorter), and after a
/// sleep that woke the host more than `liveness.clock_jump_threshold` past the
/// connection's stale deadline, the session must probe first: no stale verdict before
/// `wake + probe_timeout` (evidence from before a sleep says nothing about the peer now).
///
/// **Sleeps.** A [`Fault::ClockJump`](crate::Fault::ClockJump) freezes the session until
/// the host wakes up at `w`. Evidence older than `w` then counts for nothing either way:
/// the session either judges the old deadline at `w` or probes and waits
/// `liveness.probe_timeout`, so the bound for such evidence becomes
/// `max(last + stale, w + probe_timeout)`.
#[must_use]
pub fn silent_peer_detected<P: Protocol>(tl: &Timeline<P>) -> Option<Violation> {
    let lc = &tl.config.liveness;
    let mut first = First::new(NAME, tl);
    // The open connection: (conn, step of its Opened, last evidence of life, threshold).
    let mut open: Option<(ConnId, usize, Duration, Duration)> = None;
    let mut wake = Duration::ZERO;
    // The input whose outputs are being read.
    let mut cause: Option<&Input> = None;
    // A frame is evidence once its input's outputs are over: the session fires the
    // timers due at the input's instant before it applies the input, so a verdict among
    // those outputs was reached without the frame.
    let mut heard: Option<(ConnId, Duration)> = None;
    for (i, r) in tl.records.iter().enumerate() {
        if !matches!(r.entry, Entry::Output(_) | Entry::Sizes(_))
            && let Some((conn, at)) = heard.take()
            && let Some((open_conn, _, last, _)) = &mut open
            && *open_conn == conn
        {
            *last = at;
        }
        if let Some((conn, opened, last, stale)) = open {
            let mut deadline = last.saturating_add(stale);
            if last < wake {
                deadline = deadline.max(wake.saturating_add(lc.probe_timeout));
            }
            if r.at > deadline.saturating_add(SLACK) {
                first.offer(i, || {
                    format!(
                        "{conn} (opened at step {opened}) silent since +{}, past its stale \
                         deadline +{} (threshold {:?}), still not declared dead",
                        secs(last),
                        secs(deadline),
                        stale
                    )
                });
                break;
            }
        }
        match &r.entry {
            Entry::Input(input) => {
                cause = Some(input);
                if let Input::FrameReceived { conn, .. } = input {
                    heard = Some((*conn, r.at));
                }
            }
            Entry::Fault(_) => {
                if let Some(w) = sleep_until(r.at, &r.entry) {
                    wake = wake.max(w);
                }
            }
            Entry::Output(Output::Event(Event::Opened { conn, .. })) => {
                let heartbeat = cause.and_then(declared_heartbeat);
                open = Some((*conn, i, r.at, stale_threshold(lc, heartbeat)));
            }
            Entry::Output(Output::Event(Event::Disconnected { conn, reason, .. })) => {
                let Some((c, opened, last, stale)) = open else {
                    continue;
                };
                if c != *conn {
                    continue;
                }
                open = None;
                if *reason == DisconnectReason::Stale
                    && let Some(why) = premature(lc, last, stale, wake, r.at)
                {
                    first.offer(i, || {
                        format!("{conn} (opened at step {opened}) declared dead too early: {why}")
                    });
                    break;
                }
            }
            Entry::Output(Output::Event(Event::Ended(_))) => open = None,
            Entry::Output(_) | Entry::Sizes(_) | Entry::Heal => {}
            _ => cause = None,
        }
    }
    first.into_inner()
}

/// Why a stale verdict at `t` on a connection last heard from at `last` comes too early,
/// if it does.
fn premature(
    lc: &LivenessConfig,
    last: Duration,
    stale: Duration,
    wake: Duration,
    t: Duration,
) -> Option<String> {
    let slept = wake > last && wake <= t;
    if !slept {
        return (t < last.saturating_add(lc.stale_after)).then(|| {
            format!(
                "silent for {:?}, less than stale_after ({:?})",
                t.saturating_sub(last),
                lc.stale_after
            )
        });
    }
    // The liveness deadline is armed while the connection is open, so the session's
    // earliest deadline is no later than `last + stale`: waking more than the clock-jump
    // threshold past it, the session must probe rather than judge.
    let probe_until = wake.saturating_add(lc.probe_timeout);
    let overslept = wake.saturating_sub(last.saturating_add(stale)) > lc.clock_jump_threshold;
    if overslept && t < probe_until {
        return Some(format!(
            "on evidence from before the host slept (woke at +{}, silent since +{}); the \
             probe allows until +{}",
            secs(wake),
            secs(last),
            secs(probe_until)
        ));
    }
    let earliest = last.saturating_add(lc.stale_after).min(probe_until);
    (t < earliest).then(|| {
        format!(
            "woke at +{}, silent since +{}, neither stale_after nor the probe timeout over",
            secs(wake),
            secs(last)
        )
    })
}

/// The stale threshold of a connection whose handshake declared `heartbeat`.
pub(super) fn stale_threshold(lc: &LivenessConfig, heartbeat: Option<Duration>) -> Duration {
    let by_heartbeat = heartbeat.map_or(Duration::ZERO, |h| {
        h.min(lc.max_heartbeat)
            .saturating_mul(lc.heartbeat_stale_factor)
    });
    lc.stale_after.max(by_heartbeat)
}

/// The application heartbeat a handshake frame declares, read from any JSON field (at
/// any depth) whose name contains `heartbeat` or `tickInterval` and ends in `Ms`/`_ms`,
/// in milliseconds — `hello_ack.heartbeatMs` of `HelloAck`, `policy.tickIntervalMs` of
/// `Gateway`. The largest such value wins (a longer heartbeat only widens the threshold,
/// so erring long never reports a healthy run).
#[must_use]
pub fn declared_heartbeat(input: &Input) -> Option<Duration> {
    let Input::FrameReceived {
        frame: InFrame::Text(bytes),
        ..
    } = input
    else {
        return None;
    };
    let value: Value = serde_json::from_slice(bytes).ok()?;
    let mut best: Option<u64> = None;
    scan(&value, &mut best, 0);
    best.map(Duration::from_millis)
}

fn scan(value: &Value, best: &mut Option<u64>, depth: usize) {
    if depth > 8 {
        return;
    }
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let name = k.to_ascii_lowercase();
                let named = (name.contains("heartbeat") || name.contains("tickinterval"))
                    && name.ends_with("ms");
                if named && let Some(ms) = v.as_u64() {
                    *best = Some(best.map_or(ms, |b| b.max(ms)));
                }
                scan(v, best, depth + 1);
            }
        }
        Value::Array(items) => {
            for v in items {
                scan(v, best, depth + 1);
            }
        }
        _ => {}
    }
}
