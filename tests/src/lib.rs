//! tether-tests: workspace-level tests of tether. The tests live in `tests/`; this library
//! holds what they share: the proptest configuration (case counts, committed
//! regressions), the report printed when a simulated run breaks an invariant, and the
//! check that a guide shows an example as it compiles.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod guide;
pub mod logs;
pub mod loopback;
pub mod peers;
pub mod raw_peer;
#[cfg(unix)]
pub mod redis;
pub mod runtimes;
#[cfg(unix)]
pub mod tls_peers;

use std::fmt::Display;

use proptest::test_runner::{Config, FileFailurePersistence};
use tether_core::Protocol;
use tether_sim::Timeline;
use tether_sim::oracle::Violation;

/// The environment variable that raises (or lowers) the number of cases per property.
pub const CASES_VAR: &str = "TETHER_PROPTEST_CASES";

/// Cases per property: `TETHER_PROPTEST_CASES` if set to a number, else `default`.
pub fn cases(default: u32) -> u32 {
    std::env::var(CASES_VAR)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// A proptest configuration with [`cases`]`(default)` cases whose failures are saved to
/// (and replayed first from) `regressions`, an absolute path: pass
/// `concat!(env!("CARGO_MANIFEST_DIR"), "/proptest-regressions/<test>.txt")`, and commit
/// the file.
pub fn proptest_config(default: u32, regressions: &'static str) -> Config {
    Config {
        cases: cases(default),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(regressions))),
        // Each case is a whole simulated run; shrinking a failure must not take forever.
        max_shrink_iters: 2048,
        ..Config::default()
    }
}

/// The lines of a rendered timeline around record `step` (`radius` each side).
pub fn excerpt<P: Protocol>(timeline: &Timeline<P>, step: usize, radius: usize) -> String {
    let rendered = timeline.to_string();
    let lines: Vec<&str> = rendered.lines().collect();
    let lo = step.saturating_sub(radius);
    let hi = (step + radius + 1).min(lines.len());
    lines.get(lo..hi).unwrap_or_default().join("\n")
}

/// A failure report: the broken invariants, the timeline around the first, and how to
/// replay the case. `case` describes the inputs (seed, config, plan, workload) and
/// `replay` says how to run it again.
pub fn report<P: Protocol>(
    violations: &[Violation],
    timeline: &Timeline<P>,
    case: impl Display,
    replay: impl Display,
) -> String {
    let list: Vec<String> = violations.iter().map(|v| format!("  - {v}")).collect();
    let around = violations
        .first()
        .map(|v| excerpt(timeline, v.step, 12))
        .unwrap_or_default();
    format!(
        "{} invariant(s) broken:\n{}\n\n{case}\n\ntimeline around the first:\n{around}\n\nreplay: {replay}",
        violations.len(),
        list.join("\n"),
    )
}
