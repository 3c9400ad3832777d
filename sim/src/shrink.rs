//! Shrinking a failing fault plan: the smallest plan (found greedily) that still breaks
//! the same invariants, so a failure report names the faults that matter.
//!
//! Shrinking is deterministic: the same failing run and predicate always shrink to the
//! same plan. It works in two passes, within a fixed budget of re-runs:
//!
//! 1. remove entries — first in halves, then quarters, … then one at a time, keeping
//!    every removal after which the run still fails;
//! 2. shorten what is left — halve each duration inside a fault (down to 1 ms) while the
//!    run still fails.
//!
//! Every other input of the run (the seed, and so the network, server, workload and
//! session draws) stays fixed: sub-seeds are independent of the plan.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::campaign::Scenario;
use crate::fault::{Fault, FaultPlan};
use crate::oracle::Violation;
use crate::scenario::{self, Profile};
use crate::world::RunConfig;

/// The default bound on re-runs.
pub const MAX_RUNS: usize = 200;

/// The oracle name a panic during a run is reported under.
pub const PANIC: &str = "panic";

thread_local! {
    /// Where the last panic on this thread happened, recorded by
    /// [`quiet_worker_panics`](crate::campaign::quiet_worker_panics)' hook.
    pub(crate) static PANIC_AT: std::cell::RefCell<Option<String>> =
        const { std::cell::RefCell::new(None) };
}

/// The result of shrinking.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shrunk {
    /// The smallest failing plan found.
    pub plan: FaultPlan,
    /// Re-runs spent.
    pub runs: usize,
    /// Whether the budget ran out before both passes finished.
    pub exhausted: bool,
}

/// Shrinks `plan` against `fails`, which re-runs a candidate plan and says whether it
/// still fails. `plan` itself is assumed to fail. At most `max_runs` calls of `fails`.
pub fn shrink_with(
    plan: &FaultPlan,
    max_runs: usize,
    mut fails: impl FnMut(&FaultPlan) -> bool,
) -> Shrunk {
    let mut entries = plan.entries.clone();
    let mut runs = 0usize;
    let mut exhausted = false;
    let mut attempt = |candidate: &[(Duration, Fault)], runs: &mut usize| -> Option<bool> {
        if *runs >= max_runs {
            return None;
        }
        *runs += 1;
        Some(fails(&FaultPlan::new(candidate.to_vec())))
    };

    // Pass 1: remove chunks, halving the chunk size down to single entries; repeat while
    // single removals still make progress.
    'remove: loop {
        let mut chunk = entries.len().div_ceil(2).max(1);
        let mut progress = false;
        loop {
            let mut i = 0;
            while i < entries.len() {
                let end = (i + chunk).min(entries.len());
                let mut candidate = entries.clone();
                candidate.drain(i..end);
                match attempt(&candidate, &mut runs) {
                    None => {
                        exhausted = true;
                        break 'remove;
                    }
                    Some(true) => {
                        entries = candidate;
                        progress = true;
                    }
                    Some(false) => i = end,
                }
            }
            if chunk == 1 {
                break;
            }
            chunk = chunk.div_ceil(2);
        }
        if !progress || entries.is_empty() {
            break;
        }
    }

    // Pass 2: shorten durations inside faults.
    if !exhausted {
        'shorten: for i in 0..entries.len() {
            let mut slot = 0;
            while let Some(shorter) = shorten(&entries[i].1, slot) {
                let mut candidate = entries.clone();
                candidate[i].1 = shorter;
                match attempt(&candidate, &mut runs) {
                    None => {
                        exhausted = true;
                        break 'shorten;
                    }
                    Some(true) => entries = candidate,
                    Some(false) => slot += 1,
                }
            }
        }
    }
    Shrunk {
        plan: FaultPlan::new(entries),
        runs,
        exhausted,
    }
}

/// Shrinks the plan of a failing seed of a built-in profile: a candidate fails when its
/// run breaks at least one of the oracles named in `violated` (a panic counts as the
/// oracle [`PANIC`]).
pub fn shrink(
    profile: Profile,
    seed: u64,
    plan: &FaultPlan,
    cfg: &RunConfig,
    violated: &BTreeSet<&'static str>,
    max_runs: usize,
) -> Shrunk {
    shrink_scenario(
        scenario::builtin(profile),
        seed,
        plan,
        cfg,
        violated,
        max_runs,
    )
}

/// [`shrink`] for any scenario (a [`Campaign`](crate::Campaign)'s protocol and peer).
pub(crate) fn shrink_scenario(
    scenario: &dyn Scenario,
    seed: u64,
    plan: &FaultPlan,
    cfg: &RunConfig,
    violated: &BTreeSet<&'static str>,
    max_runs: usize,
) -> Shrunk {
    shrink_with(plan, max_runs, |candidate| {
        broken_by(scenario, seed, candidate.clone(), cfg)
            .iter()
            .any(|v| violated.contains(v.oracle))
    })
}

/// Runs a seed of a built-in profile and returns its violations, turning a panic into a
/// violation of [`PANIC`] (with the panic message as its detail).
pub fn oracles_broken(
    profile: Profile,
    seed: u64,
    plan: FaultPlan,
    cfg: &RunConfig,
) -> Vec<Violation> {
    broken_by(scenario::builtin(profile), seed, plan, cfg)
}

/// [`oracles_broken`] for any scenario.
pub(crate) fn broken_by(
    scenario: &dyn Scenario,
    seed: u64,
    plan: FaultPlan,
    cfg: &RunConfig,
) -> Vec<Violation> {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        scenario.run(seed, plan, cfg, false, false).0
    }));
    match result {
        Ok(outcome) => outcome.violations,
        Err(payload) => vec![panic_violation(payload.as_ref())],
    }
}

/// A panic payload as a violation of [`PANIC`].
pub fn panic_violation(payload: &(dyn std::any::Any + Send)) -> Violation {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(non-string panic payload)".to_owned());
    let detail = match PANIC_AT.with(|p| p.borrow_mut().take()) {
        Some(at) => format!("{message} (at {at})"),
        None => message,
    };
    Violation {
        oracle: PANIC,
        step: 0,
        at: Duration::ZERO,
        detail,
    }
}

/// Builds a fault from new values of its durations.
type Rebuild = Box<dyn Fn(&[Duration]) -> Fault>;

/// The fault with its `slot`-th duration halved, if that duration can still shrink
/// (above 1 ms). Slots count the durations inside the fault in declaration order; `None`
/// once `slot` passes the last shrinkable one.
fn shorten(fault: &Fault, slot: usize) -> Option<Fault> {
    const FLOOR: Duration = Duration::from_millis(1);
    let half = |d: Duration| (d > FLOOR).then(|| (d / 2).max(FLOOR));
    // For each fault, the durations in order, and a constructor from new durations.
    let (durations, rebuild): (Vec<Duration>, Rebuild) = match fault {
        Fault::RefuseConnects(d) => (vec![*d], Box::new(|v| Fault::RefuseConnects(v[0]))),
        Fault::BlackholeConnects(d) => (vec![*d], Box::new(|v| Fault::BlackholeConnects(v[0]))),
        Fault::HalfOpen(d) => (vec![*d], Box::new(|v| Fault::HalfOpen(v[0]))),
        Fault::StopReading(d) => (vec![*d], Box::new(|v| Fault::StopReading(v[0]))),
        Fault::Duplicate(d) => (vec![*d], Box::new(|v| Fault::Duplicate(v[0]))),
        Fault::NeverAck(d) => (vec![*d], Box::new(|v| Fault::NeverAck(v[0]))),
        Fault::DoubleAck(d) => (vec![*d], Box::new(|v| Fault::DoubleAck(v[0]))),
        Fault::AcceptThenClose(d) => (vec![*d], Box::new(|v| Fault::AcceptThenClose(v[0]))),
        Fault::ClockJump(d) => (vec![*d], Box::new(|v| Fault::ClockJump(v[0]))),
        Fault::SlowConnects { extra, lasts } => (
            vec![*extra, *lasts],
            Box::new(|v| Fault::SlowConnects {
                extra: v[0],
                lasts: v[1],
            }),
        ),
        Fault::RejectUpgrade { status, lasts } => {
            let status = *status;
            (
                vec![*lasts],
                Box::new(move |v| Fault::RejectUpgrade {
                    status,
                    lasts: v[0],
                }),
            )
        }
        Fault::Latency {
            base,
            jitter,
            lasts,
        } => (
            vec![*base, *jitter, *lasts],
            Box::new(|v| Fault::Latency {
                base: v[0],
                jitter: v[1],
                lasts: v[2],
            }),
        ),
        Fault::Reorder { window, lasts } => (
            vec![*window, *lasts],
            Box::new(|v| Fault::Reorder {
                window: v[0],
                lasts: v[1],
            }),
        ),
        Fault::Restart { down, graceful } => {
            let graceful = *graceful;
            (
                vec![*down],
                Box::new(move |v| Fault::Restart {
                    down: v[0],
                    graceful,
                }),
            )
        }
        Fault::Drop
        | Fault::ServerClose(..)
        | Fault::Garbage(_)
        | Fault::UnknownResponse
        | Fault::Hostile(_) => {
            return None;
        }
    };
    let mut seen = 0;
    for (i, d) in durations.iter().enumerate() {
        if let Some(h) = half(*d) {
            if seen == slot {
                let mut v = durations.clone();
                v[i] = h;
                return Some(rebuild(&v));
            }
            seen += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shorten_walks_every_duration() {
        let f = Fault::Latency {
            base: Duration::from_millis(100),
            jitter: Duration::from_millis(1),
            lasts: Duration::from_secs(10),
        };
        assert_eq!(
            shorten(&f, 0),
            Some(Fault::Latency {
                base: Duration::from_millis(50),
                jitter: Duration::from_millis(1),
                lasts: Duration::from_secs(10),
            })
        );
        // The 1 ms jitter cannot shrink, so slot 1 is `lasts`.
        assert_eq!(
            shorten(&f, 1),
            Some(Fault::Latency {
                base: Duration::from_millis(100),
                jitter: Duration::from_millis(1),
                lasts: Duration::from_secs(5),
            })
        );
        assert_eq!(shorten(&f, 2), None);
        assert_eq!(shorten(&Fault::Drop, 0), None);
    }
}
