//! Seed campaigns: many consecutive seeds, each an independent deterministic run, spread
//! over threads, summed into one report; failing seeds are shrunk and come with a
//! one-line replay command.
//!
//! The report does not depend on the thread count: every seed's run depends only on the
//! seed and the options, the totals are integer sums, and failures are listed in seed
//! order.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tether_core::SessionStats;

use crate::fault::FaultPlan;
use crate::oracle::Violation;
use crate::scenario::{self, FaultMix, Outcome, Profile};
use crate::shrink::{self, Shrunk};
use crate::world::RunConfig;

/// How many failing seeds a campaign shrinks by default (the rest are listed).
pub const SHRINK_AT_MOST: usize = 10;

/// What a campaign runs.
#[derive(Clone, Debug, PartialEq)]
pub struct CampaignConfig {
    /// The first seed.
    pub start: u64,
    /// How many consecutive seeds.
    pub seeds: u64,
    /// Simulated time per seed.
    pub duration: Duration,
    /// One profile for every seed, or `None` to pick one per seed
    /// ([`Profile::for_seed`]).
    pub profile: Option<Profile>,
    /// The faults plans draw from.
    pub mix: FaultMix,
    /// Worker threads (at least 1).
    pub threads: usize,
    /// Run every seed twice and compare the rendered timelines.
    pub check_determinism: bool,
    /// Shrink the plans of at most this many failing seeds (the first ones); 0: none.
    pub shrink: usize,
}

impl Default for CampaignConfig {
    /// The embedded defaults: seeds 0..1000, one simulated hour each, every profile,
    /// every fault, one thread per core.
    fn default() -> Self {
        CampaignConfig {
            start: 0,
            seeds: 1000,
            duration: Duration::from_secs(3600),
            profile: None,
            mix: FaultMix::default(),
            threads: default_threads(),
            check_determinism: false,
            shrink: SHRINK_AT_MOST,
        }
    }
}

/// One thread per available core.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

impl CampaignConfig {
    /// The profile `seed` runs.
    pub fn profile_for(&self, seed: u64) -> Profile {
        self.profile.unwrap_or_else(|| Profile::for_seed(seed))
    }

    /// The profile option as a flag value (`all` when mixed).
    pub fn profile_spec(&self) -> String {
        self.profile
            .map_or_else(|| "all".to_owned(), |p| p.to_string())
    }

    /// The line printed before running: the seed and every option derived from it.
    pub fn header(&self) -> String {
        self.header_naming("PROFILE", &self.profile_spec())
    }

    /// [`header`](Self::header) with another name for what runs (`SCENARIO=lines`).
    pub(crate) fn header_naming(&self, key: &str, what: &str) -> String {
        format!(
            "SEED={} SEEDS={} DURATION={} {key}={what} FAULTS={} THREADS={}{}",
            self.start,
            self.seeds,
            scenario::format_duration(self.duration),
            self.mix.spec(),
            self.threads,
            if self.check_determinism {
                " CHECK_DETERMINISM=1"
            } else {
                ""
            },
        )
    }

    /// The options besides the seeds, as flags (for a one-seed campaign command).
    pub(crate) fn flags_for_one_seed(&self) -> String {
        let mut f = String::new();
        if self.duration != Duration::from_secs(3600) {
            f += &format!(" --duration {}", scenario::format_duration(self.duration));
        }
        if let Some(p) = self.profile {
            f += &format!(" --profile {p}");
        }
        if self.mix != FaultMix::default() {
            f += &format!(" --faults {}", self.mix.spec());
        }
        f
    }

    /// A one-line command that replays `seed` exactly; with `plan`, under that plan
    /// instead of the derived one.
    pub fn replay_command(&self, seed: u64, plan: Option<&FaultPlan>) -> String {
        let mut cmd = format!(
            "cargo run --release -p tether-sim -- replay --seed {seed} --profile {}",
            self.profile_for(seed)
        );
        if self.duration != Duration::from_secs(3600) {
            cmd += &format!(" --duration {}", scenario::format_duration(self.duration));
        }
        match plan {
            Some(plan) => cmd += &format!(" --plan {}", scenario::plan_spec(plan)),
            None if self.mix != FaultMix::default() => {
                cmd += &format!(" --faults {}", self.mix.spec());
            }
            None => {}
        }
        cmd
    }
}

/// What one seed produced.
#[derive(Clone, Debug)]
pub struct SeedReport {
    /// The seed.
    pub seed: u64,
    /// What ran: the built-in profile's name (`raw`, `hello-ack`, `gateway`) or the
    /// name given to [`Campaign::new`](crate::Campaign::new).
    pub scenario: String,
    /// The session's counters.
    pub stats: SessionStats,
    /// Simulated time covered.
    pub simulated: Duration,
    /// Broken invariants (a panic is reported as the oracle [`shrink::PANIC`]).
    pub violations: Vec<Violation>,
    /// The derived plan.
    pub plan: FaultPlan,
    /// With the determinism check: the first difference between two runs.
    pub divergence: Option<String>,
}

impl SeedReport {
    /// Whether the seed broke an invariant or ran differently twice.
    pub fn failed(&self) -> bool {
        !self.violations.is_empty() || self.divergence.is_some()
    }

    /// The oracles it broke.
    pub fn oracles(&self) -> BTreeSet<&'static str> {
        self.violations.iter().map(|v| v.oracle).collect()
    }
}

/// One seed's run, whatever the protocol: what the campaign engine needs of a scenario.
/// [`Campaign`](crate::Campaign) implements it, for the built-in profiles and for users'.
pub(crate) trait Scenario: Sync {
    /// Its name in reports.
    fn name(&self) -> String;

    /// Runs `seed` under `plan`; with `twice`, runs it again and returns the first
    /// difference between the two timelines (`None` when identical or not checked).
    fn run(
        &self,
        seed: u64,
        plan: FaultPlan,
        run: &RunConfig,
        keep_timeline: bool,
        twice: bool,
    ) -> (Outcome, Option<String>);

    /// A one-line command that replays `seed` exactly as `cfg` ran it: under `plan`, or
    /// under the plan the campaign derived for it (`None`).
    fn replay_line(&self, cfg: &CampaignConfig, seed: u64, plan: Option<&FaultPlan>) -> String;

    /// What runs `seed` alone as a campaign (and so shrinks it).
    fn shrink_line(&self, cfg: &CampaignConfig, seed: u64) -> String;
}

/// Runs one seed of a built-in profile as the campaign does, catching panics. With the
/// determinism check the seed runs twice and the timelines are compared record by record.
pub fn run_seed(cfg: &CampaignConfig, seed: u64) -> SeedReport {
    seed_report(scenario::builtin(cfg.profile_for(seed)), cfg, seed)
}

/// Runs one seed of `scenario` as the campaign does, catching panics.
pub(crate) fn seed_report(scenario: &dyn Scenario, cfg: &CampaignConfig, seed: u64) -> SeedReport {
    let plan = scenario::derive_plan(&cfg.mix, seed, cfg.duration);
    let run_cfg = scenario::run_config(cfg.duration);
    let twice = cfg.check_determinism;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        scenario.run(seed, plan.clone(), &run_cfg, false, twice)
    }));
    let mut report = SeedReport {
        seed,
        scenario: scenario.name(),
        stats: SessionStats::default(),
        simulated: Duration::ZERO,
        violations: Vec::new(),
        plan,
        divergence: None,
    };
    match result {
        Ok((outcome, divergence)) => {
            report.stats = outcome.stats;
            report.simulated = outcome.simulated;
            report.violations = outcome.violations;
            report.divergence = divergence;
        }
        Err(payload) => report.violations = vec![shrink::panic_violation(payload.as_ref())],
    }
    report
}

/// The first line where two rendered timelines differ, described, or `None` when they
/// are identical.
pub fn first_difference(a: &str, b: &str) -> Option<String> {
    if a == b {
        return None;
    }
    let mut la = a.lines();
    let mut lb = b.lines();
    let mut n = 1usize;
    loop {
        match (la.next(), lb.next()) {
            (Some(x), Some(y)) if x == y => n += 1,
            (x, y) => {
                return Some(format!(
                    "line {n} differs:\n  first run:  {}\n  second run: {}",
                    x.unwrap_or("(end of timeline)"),
                    y.unwrap_or("(end of timeline)")
                ));
            }
        }
    }
}

/// Counters summed over seeds. Integer sums only, so the totals do not depend on the
/// order in which threads finish.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Seeds run.
    pub seeds: u64,
    /// Simulated time, summed.
    pub simulated: Duration,
    /// Connection attempts.
    pub attempts: u64,
    /// Handshakes acknowledged.
    pub opens: u64,
    /// Open connections lost (each a reconnect).
    pub disconnects: u64,
    /// Requests answered successfully.
    pub requests_ok: u64,
    /// Requests answered with an error.
    pub requests_remote_error: u64,
    /// Requests timed out.
    pub requests_timed_out: u64,
    /// Requests failed by a lost connection.
    pub requests_disconnected: u64,
    /// Requests aborted.
    pub requests_aborted: u64,
    /// Stream events delivered.
    pub stream_events: u64,
    /// Stream events dropped as duplicates.
    pub duplicates_dropped: u64,
    /// Stream gaps.
    pub gaps: u64,
    /// Stream events suppressed after their stream completed.
    pub late_events: u64,
    /// Stream events for no known stream.
    pub unsolicited: u64,
    /// Protocol violations the sessions saw (the peer's, not invariant violations).
    pub protocol_violations: u64,
    /// Clock jumps the sessions detected.
    pub clock_jumps: u64,
    /// Invariant violations (including panics).
    pub violations: u64,
    /// Seeds with at least one invariant violation.
    pub failing_seeds: u64,
    /// Seeds that ran differently twice (determinism check only).
    pub nondeterministic_seeds: u64,
}

impl Totals {
    /// Adds one seed.
    pub fn add(&mut self, r: &SeedReport) {
        let s = &r.stats;
        self.seeds += 1;
        self.simulated += r.simulated;
        self.attempts += s.attempts;
        self.opens += s.opens;
        self.disconnects += s.disconnects;
        self.requests_ok += s.requests_ok;
        self.requests_remote_error += s.requests_remote_error;
        self.requests_timed_out += s.requests_timed_out;
        self.requests_disconnected += s.requests_disconnected;
        self.requests_aborted += s.requests_aborted;
        self.stream_events += s.stream_events;
        self.duplicates_dropped += s.duplicates_dropped;
        self.gaps += s.gaps;
        self.late_events += s.late_events;
        self.unsolicited += s.unsolicited;
        self.protocol_violations += s.violations;
        self.clock_jumps += s.clock_jumps;
        self.violations += r.violations.len() as u64;
        self.failing_seeds += u64::from(!r.violations.is_empty());
        self.nondeterministic_seeds += u64::from(r.divergence.is_some());
    }

    /// Adds another total.
    pub fn merge(&mut self, o: &Totals) {
        self.seeds += o.seeds;
        self.simulated += o.simulated;
        self.attempts += o.attempts;
        self.opens += o.opens;
        self.disconnects += o.disconnects;
        self.requests_ok += o.requests_ok;
        self.requests_remote_error += o.requests_remote_error;
        self.requests_timed_out += o.requests_timed_out;
        self.requests_disconnected += o.requests_disconnected;
        self.requests_aborted += o.requests_aborted;
        self.stream_events += o.stream_events;
        self.duplicates_dropped += o.duplicates_dropped;
        self.gaps += o.gaps;
        self.late_events += o.late_events;
        self.unsolicited += o.unsolicited;
        self.protocol_violations += o.protocol_violations;
        self.clock_jumps += o.clock_jumps;
        self.violations += o.violations;
        self.failing_seeds += o.failing_seeds;
        self.nondeterministic_seeds += o.nondeterministic_seeds;
    }

    /// Simulated hours.
    pub fn simulated_hours(&self) -> f64 {
        self.simulated.as_secs_f64() / 3600.0
    }
}

/// A failing seed with its shrunk plan.
#[derive(Clone, Debug)]
pub struct Failure {
    /// The seed's report.
    pub report: SeedReport,
    /// The shrunk plan, if the seed was shrunk (invariant violations only).
    pub shrunk: Option<Shrunk>,
    /// A one-line command that replays the seed under its derived plan.
    pub replay: String,
    /// The same under the shrunk plan, if it was shrunk.
    pub replay_shrunk: Option<String>,
    /// What runs this seed alone, which shrinks its plan (for seeds past the shrink
    /// limit).
    pub shrink_line: String,
}

/// The outcome of a campaign.
#[derive(Clone, Debug)]
pub struct CampaignReport {
    /// What ran.
    pub config: CampaignConfig,
    /// The line naming every option (printed before running by the CLI; first in
    /// [`Display`](std::fmt::Display)).
    pub header: String,
    /// What ran, as a flag value: a built-in profile, `all`, or a campaign's name.
    pub scenario: String,
    /// The sums.
    pub totals: Totals,
    /// Failing seeds, in seed order.
    pub failures: Vec<Failure>,
    /// Real time taken running the seeds.
    pub wall: Duration,
    /// Real time taken shrinking failing seeds afterwards.
    pub shrink_wall: Duration,
}

impl CampaignReport {
    /// Whether every seed kept every invariant (and ran identically twice, if checked).
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    /// Seeds per wall-clock second.
    pub fn seeds_per_sec(&self) -> f64 {
        self.totals.seeds as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    /// Simulated hours per wall-clock second.
    pub fn sim_hours_per_sec(&self) -> f64 {
        self.totals.simulated_hours() / self.wall.as_secs_f64().max(1e-9)
    }

    /// The report as one JSON object with numeric counters.
    pub fn json(&self) -> Value {
        let t = &self.totals;
        let c = &self.config;
        let failures: Vec<Value> = self
            .failures
            .iter()
            .map(|f| {
                let r = &f.report;
                json!({
                    "seed": r.seed,
                    "profile": r.scenario,
                    "violations": r.violations.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "divergence": r.divergence,
                    "plan": scenario::plan_spec(&r.plan),
                    "shrunk_plan": f.shrunk.as_ref().map(|s| scenario::plan_spec(&s.plan)),
                    "replay": f.replay,
                    "replay_shrunk": f.replay_shrunk,
                })
            })
            .collect();
        json!({
            "seed": c.start,
            "seeds": t.seeds,
            "duration_s": c.duration.as_secs_f64(),
            "profile": self.scenario,
            "faults": c.mix.spec(),
            "threads": c.threads,
            "simulated_hours": t.simulated_hours(),
            "wall_s": self.wall.as_secs_f64(),
            "shrink_wall_s": self.shrink_wall.as_secs_f64(),
            "seeds_per_s": self.seeds_per_sec(),
            "sim_hours_per_wall_s": self.sim_hours_per_sec(),
            "attempts": t.attempts,
            "opens": t.opens,
            "reconnects": t.disconnects,
            "requests_ok": t.requests_ok,
            "requests_remote_error": t.requests_remote_error,
            "requests_timed_out": t.requests_timed_out,
            "requests_disconnected": t.requests_disconnected,
            "requests_aborted": t.requests_aborted,
            "stream_events": t.stream_events,
            "duplicates_dropped": t.duplicates_dropped,
            "gaps": t.gaps,
            "late_suppressed": t.late_events,
            "unsolicited": t.unsolicited,
            "protocol_violations": t.protocol_violations,
            "clock_jumps": t.clock_jumps,
            "violations": t.violations,
            "failing_seeds": t.failing_seeds,
            "nondeterministic_seeds": t.nondeterministic_seeds,
            "failures": failures,
        })
    }

    /// The human summary (without failure details).
    pub fn summary(&self) -> String {
        let t = &self.totals;
        let mut s = String::new();
        let mut line = |k: &str, v: String| s.push_str(&format!("{k:<21}{v}\n"));
        line(
            "seeds",
            format!(
                "{} ({} with invariant violations)",
                t.seeds, t.failing_seeds
            ),
        );
        line(
            "simulated",
            format!(
                "{:.1} h in {:.2} s wall: {:.0} seeds/s, {:.0} simulated h per wall s",
                t.simulated_hours(),
                self.wall.as_secs_f64(),
                self.seeds_per_sec(),
                self.sim_hours_per_sec()
            ),
        );
        line(
            "connects",
            format!(
                "{} attempts, {} opens, {} reconnects (disconnects)",
                t.attempts, t.opens, t.disconnects
            ),
        );
        line(
            "requests",
            format!(
                "{} ok, {} remote error, {} timed out, {} disconnected, {} aborted",
                t.requests_ok,
                t.requests_remote_error,
                t.requests_timed_out,
                t.requests_disconnected,
                t.requests_aborted
            ),
        );
        line(
            "stream events",
            format!(
                "{} delivered, {} duplicates dropped, {} gaps, {} late suppressed",
                t.stream_events, t.duplicates_dropped, t.gaps, t.late_events
            ),
        );
        line("unsolicited", t.unsolicited.to_string());
        line(
            "violations",
            format!(
                "{} (protocol violations by the peer)",
                t.protocol_violations
            ),
        );
        line("clock jumps", t.clock_jumps.to_string());
        if self.config.check_determinism {
            line(
                "determinism",
                format!(
                    "{} of {} seeds ran differently twice",
                    t.nondeterministic_seeds, t.seeds
                ),
            );
        }
        let shrunk = self.failures.iter().filter(|f| f.shrunk.is_some()).count();
        if shrunk > 0 {
            let runs: usize = self
                .failures
                .iter()
                .filter_map(|f| f.shrunk.as_ref())
                .map(|s| s.runs)
                .sum();
            line(
                "shrinking",
                format!(
                    "{shrunk} failing seeds, {runs} re-runs, {:.2} s wall",
                    self.shrink_wall.as_secs_f64()
                ),
            );
        }
        line("INVARIANT VIOLATIONS", t.violations.to_string());
        s
    }

    /// Every failing seed: its violations, plan, shrunk plan and replay commands.
    pub fn failure_details(&self) -> String {
        let mut s = String::new();
        for f in &self.failures {
            let r = &f.report;
            s += &format!("\nFAILED seed {} profile {}", r.seed, r.scenario);
            if f.shrunk.is_none() && !r.violations.is_empty() {
                s += &format!(" (not shrunk: {} shrinks it)", f.shrink_line);
            }
            s += "\n";
            for v in &r.violations {
                s += &format!("  violation: {v}\n");
            }
            if let Some(d) = &r.divergence {
                s += &format!("  NONDETERMINISTIC: {d}\n");
            }
            if let Some(sh) = &f.shrunk {
                s += &format!(
                    "  plan ({} faults): {}\n",
                    r.plan.entries.len(),
                    scenario::plan_spec(&r.plan)
                );
                s += &format!(
                    "  SHRUNK plan ({} of {} faults, {} re-runs{}): {}\n",
                    sh.plan.entries.len(),
                    r.plan.entries.len(),
                    sh.runs,
                    if sh.exhausted {
                        ", budget exhausted"
                    } else {
                        ""
                    },
                    sh.plan
                );
                if let Some(line) = &f.replay_shrunk {
                    s += &format!("  replay shrunk: {line}\n");
                }
            }
            s += &format!("  replay: {}\n", f.replay);
        }
        let by_oracle = self.failing_oracles();
        if !by_oracle.is_empty() {
            let parts: Vec<String> = by_oracle.iter().map(|(o, n)| format!("{o} {n}")).collect();
            s += &format!("\nfailing seeds by oracle: {}\n", parts.join(", "));
        }
        s
    }

    /// How many failing seeds broke each oracle (`nondeterminism` for seeds that ran
    /// differently twice, [`shrink::PANIC`] for panics).
    pub fn failing_oracles(&self) -> BTreeMap<&'static str, u64> {
        let mut by_oracle: BTreeMap<&'static str, u64> = BTreeMap::new();
        for f in &self.failures {
            for o in f.report.oracles() {
                *by_oracle.entry(o).or_default() += 1;
            }
            if f.report.divergence.is_some() {
                *by_oracle.entry("nondeterminism").or_default() += 1;
            }
        }
        by_oracle
    }
}

/// The header line, the summary and every failing seed with its replay lines: what the
/// CLI prints, and what a failing `assert!(report.passed(), "{report}")` shows.
impl std::fmt::Display for CampaignReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{}", self.header)?;
        f.write_str(&self.summary())?;
        f.write_str(&self.failure_details())
    }
}

/// Runs `f(i)` for `i` in `0..n` over `threads` scoped threads, each folding into its own
/// accumulator from `init`; returns the accumulators (one per thread). `done` counts
/// finished items, for a progress display.
pub fn fold_parallel<A: Send>(
    n: u64,
    threads: usize,
    done: &AtomicU64,
    init: impl Fn() -> A + Sync,
    step: impl Fn(&mut A, u64) + Sync,
) -> Vec<A> {
    let next = AtomicU64::new(0);
    let threads = threads.clamp(1, n.max(1).try_into().unwrap_or(usize::MAX));
    let results = Mutex::new(Vec::with_capacity(threads));
    std::thread::scope(|s| {
        for t in 0..threads {
            let (next, init, step, results) = (&next, &init, &step, &results);
            std::thread::Builder::new()
                .name(format!("tether-sim-{t}"))
                .spawn_scoped(s, move || {
                    let mut acc = init();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            break;
                        }
                        step(&mut acc, i);
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    // Invariant: no thread panics while holding the lock (it only pushes).
                    results.lock().expect("results lock").push(acc);
                })
                // Invariant: spawning a thread fails only when the OS is out of resources.
                .expect("spawn a worker thread");
        }
    });
    // Invariant: every worker has finished (the scope joined them).
    results.into_inner().expect("results lock")
}

/// Runs `work` while a progress bar for `total` items, fed by the counter it is given,
/// redraws on stderr — only when `show` is set and stderr is a terminal.
pub fn with_progress<R>(
    label: &str,
    total: u64,
    show: bool,
    work: impl FnOnce(&AtomicU64) -> R,
) -> R {
    let done = AtomicU64::new(0);
    let show = show && std::io::stderr().is_terminal();
    if !show {
        return work(&done);
    }
    let finished = std::sync::atomic::AtomicBool::new(false);
    let start = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| {
            let draw = || {
                let d = done.load(Ordering::Relaxed).min(total);
                let width = 30usize;
                let filled = (d as f64 / total.max(1) as f64 * width as f64) as usize;
                let mut err = std::io::stderr().lock();
                let _ = write!(
                    err,
                    "\r{label} [{}{}] {d}/{total} {:.1}s ",
                    "#".repeat(filled),
                    " ".repeat(width - filled),
                    start.elapsed().as_secs_f64()
                );
                let _ = err.flush();
            };
            while !finished.load(Ordering::Relaxed) {
                draw();
                std::thread::sleep(Duration::from_millis(100));
            }
            draw();
            let _ = writeln!(std::io::stderr());
        });
        let r = work(&done);
        finished.store(true, Ordering::Relaxed);
        r
    })
}

/// Runs a campaign of the built-in profiles. `progress` shows a progress bar on stderr
/// when it is a terminal.
pub fn run_campaign(cfg: &CampaignConfig, progress: bool) -> CampaignReport {
    run_scenarios(
        cfg,
        cfg.header(),
        cfg.profile_spec(),
        &|seed| scenario::builtin(cfg.profile_for(seed)),
        progress,
    )
}

/// Runs `cfg`'s seeds, each with the scenario `pick` gives it: the engine behind
/// [`run_campaign`] and [`Campaign::run`](crate::Campaign::run).
pub(crate) fn run_scenarios<'a, F>(
    cfg: &CampaignConfig,
    header: String,
    name: String,
    pick: &F,
    progress: bool,
) -> CampaignReport
where
    F: Sync + Fn(u64) -> &'a dyn Scenario,
{
    let started = Instant::now();
    let parts = with_progress("seeds", cfg.seeds, progress, |done| {
        fold_parallel(
            cfg.seeds,
            cfg.threads,
            done,
            || (Totals::default(), Vec::new()),
            |(totals, failed): &mut (Totals, Vec<SeedReport>), i| {
                let seed = cfg.start + i;
                let r = seed_report(pick(seed), cfg, seed);
                totals.add(&r);
                if r.failed() {
                    failed.push(r);
                }
            },
        )
    });
    let mut totals = Totals::default();
    let mut failed = Vec::new();
    for (t, f) in parts {
        totals.merge(&t);
        failed.extend(f);
    }
    failed.sort_by_key(|r| r.seed);
    let wall = started.elapsed();
    let shrinking = Instant::now();
    let failures = shrink_failures(cfg, pick, failed);
    CampaignReport {
        config: cfg.clone(),
        header,
        scenario: name,
        totals,
        failures,
        wall,
        shrink_wall: shrinking.elapsed(),
    }
}

/// Shrinks the first `cfg.shrink` seeds with invariant violations, in parallel, and
/// writes every failing seed's replay lines.
fn shrink_failures<'a, F>(cfg: &CampaignConfig, pick: &F, failed: Vec<SeedReport>) -> Vec<Failure>
where
    F: Sync + Fn(u64) -> &'a dyn Scenario,
{
    let to_shrink: Vec<usize> = failed
        .iter()
        .enumerate()
        .filter(|(_, r)| !r.violations.is_empty())
        .map(|(i, _)| i)
        .take(cfg.shrink)
        .collect();
    let run_cfg = scenario::run_config(cfg.duration);
    let done = AtomicU64::new(0);
    let shrunk = fold_parallel(
        to_shrink.len() as u64,
        cfg.threads,
        &done,
        Vec::new,
        |acc: &mut Vec<(usize, Shrunk)>, k| {
            let i = to_shrink[k as usize];
            let r = &failed[i];
            let s = shrink::shrink_scenario(
                pick(r.seed),
                r.seed,
                &r.plan,
                &run_cfg,
                &r.oracles(),
                shrink::MAX_RUNS,
            );
            acc.push((i, s));
        },
    );
    let mut by_index: Vec<Option<Shrunk>> = vec![None; failed.len()];
    for (i, s) in shrunk.into_iter().flatten() {
        by_index[i] = Some(s);
    }
    failed
        .into_iter()
        .zip(by_index)
        .map(|(report, shrunk)| {
            let scenario = pick(report.seed);
            Failure {
                replay: scenario.replay_line(cfg, report.seed, None),
                shrink_line: scenario.shrink_line(cfg, report.seed),
                replay_shrunk: shrunk
                    .as_ref()
                    .map(|s| scenario.replay_line(cfg, report.seed, Some(&s.plan))),
                report,
                shrunk,
            }
        })
        .collect()
}

/// Makes panics inside campaign worker threads quiet (they are caught and reported as
/// violations of [`shrink::PANIC`]); panics elsewhere print as before.
pub fn quiet_worker_panics() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let worker = std::thread::current()
            .name()
            .is_some_and(|n| n.starts_with("tether-sim-"));
        if worker {
            let at = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()));
            shrink::PANIC_AT.with(|p| *p.borrow_mut() = at);
        } else {
            previous(info);
        }
    }));
}
