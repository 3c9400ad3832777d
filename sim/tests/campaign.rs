//! Campaigns, shrinking and the text forms of durations and plans, at library level: the
//! report does not depend on the thread count, the JSON is numeric, shrinking keeps only
//! the faults that matter, and plans round-trip through their flag form.

use std::time::Duration;

use tether_sim::campaign::{self, CampaignConfig};
use tether_sim::scenario::{self, FaultMix, Profile};
use tether_sim::shrink::{self, shrink_with};
use tether_sim::{Fault, FaultPlan, Garbage};

fn small(threads: usize) -> CampaignConfig {
    CampaignConfig {
        start: 100,
        seeds: 12,
        duration: Duration::from_secs(600),
        threads,
        ..CampaignConfig::default()
    }
}

#[test]
fn totals_do_not_depend_on_the_thread_count() {
    let one = campaign::run_campaign(&small(1), false);
    let two = campaign::run_campaign(&small(2), false);
    assert_eq!(one.totals, two.totals);
    assert_eq!(one.totals.seeds, 12);
    assert!(
        one.totals.attempts >= 12,
        "every seed connects at least once"
    );
    let seeds =
        |r: &campaign::CampaignReport| r.failures.iter().map(|f| f.report.seed).collect::<Vec<_>>();
    assert_eq!(seeds(&one), seeds(&two));
    // The JSON differs only in wall-clock fields and the thread count.
    let strip = |r: &campaign::CampaignReport| {
        let mut v = r.json();
        let o = v.as_object_mut().unwrap();
        for k in [
            "wall_s",
            "shrink_wall_s",
            "seeds_per_s",
            "sim_hours_per_wall_s",
            "threads",
        ] {
            o.remove(k);
        }
        v
    };
    assert_eq!(strip(&one), strip(&two));
}

#[test]
fn a_seed_runs_the_same_alone_and_in_a_campaign() {
    let cfg = small(1);
    let alone = campaign::run_seed(&cfg, 104);
    let outcome = scenario::replay(cfg.profile_for(104), 104, &cfg.mix, cfg.duration, false);
    assert_eq!(alone.stats, outcome.stats);
    assert_eq!(alone.plan, outcome.plan);
    assert_eq!(alone.scenario, Profile::for_seed(104).to_string());
}

#[test]
fn the_json_report_is_numeric() {
    let cfg = CampaignConfig {
        seeds: 3,
        duration: Duration::from_secs(300),
        threads: 2,
        ..CampaignConfig::default()
    };
    let report = campaign::run_campaign(&cfg, false);
    let json = report.json();
    for key in [
        "violations",
        "seeds",
        "attempts",
        "opens",
        "reconnects",
        "requests_ok",
        "requests_remote_error",
        "requests_timed_out",
        "requests_disconnected",
        "requests_aborted",
        "stream_events",
        "duplicates_dropped",
        "gaps",
        "late_suppressed",
        "unsolicited",
        "protocol_violations",
        "clock_jumps",
    ] {
        assert!(json[key].is_u64(), "{key} is not a number: {}", json[key]);
    }
    for key in [
        "simulated_hours",
        "wall_s",
        "seeds_per_s",
        "sim_hours_per_wall_s",
    ] {
        assert!(json[key].is_f64(), "{key} is not a number: {}", json[key]);
    }
    assert_eq!(json["violations"].as_u64(), Some(report.totals.violations));
    assert!(json["failures"].is_array());
}

#[test]
fn the_determinism_check_finds_identical_runs_identical() {
    let cfg = CampaignConfig {
        check_determinism: true,
        ..small(2)
    };
    let cfg = CampaignConfig { seeds: 4, ..cfg };
    let report = campaign::run_campaign(&cfg, false);
    assert_eq!(report.totals.nondeterministic_seeds, 0);
    assert!(
        report
            .failures
            .iter()
            .all(|f| f.report.divergence.is_none())
    );
}

#[test]
fn first_difference_names_the_line() {
    assert_eq!(campaign::first_difference("a\nb\n", "a\nb\n"), None);
    let d = campaign::first_difference("a\nb\nc\n", "a\nB\nc\n").unwrap();
    assert!(d.starts_with("line 2 differs"), "{d}");
    assert!(
        d.contains("first run:  b") && d.contains("second run: B"),
        "{d}"
    );
    let d = campaign::first_difference("a\n", "a\nmore\n").unwrap();
    assert!(
        d.contains("line 2") && d.contains("(end of timeline)"),
        "{d}"
    );
}

#[test]
fn the_header_names_every_option() {
    let cfg = CampaignConfig {
        start: 7,
        seeds: 20,
        duration: Duration::from_secs(1800),
        profile: Some(Profile::Gateway),
        mix: FaultMix::parse("drop,restart").unwrap(),
        threads: 3,
        ..CampaignConfig::default()
    };
    assert_eq!(
        cfg.header(),
        "SEED=7 SEEDS=20 DURATION=30m PROFILE=gateway FAULTS=drop,restart THREADS=3"
    );
    assert_eq!(
        cfg.replay_command(9, None),
        "cargo run --release -p tether-sim -- replay --seed 9 --profile gateway \
         --duration 30m --faults drop,restart"
    );
    let plan = FaultPlan::new(vec![(Duration::from_millis(1500), Fault::Drop)]);
    assert!(
        cfg.replay_command(9, Some(&plan))
            .ends_with("--plan 1.5s:drop")
    );
}

/// A plan of many faults in which only two matter to the predicate below.
fn noisy_plan() -> FaultPlan {
    let mut entries: Vec<(Duration, Fault)> = (0..20u64)
        .map(|i| {
            let f = match i % 4 {
                0 => Fault::Duplicate(Duration::from_secs(30)),
                1 => Fault::Garbage(Garbage::Malformed),
                2 => Fault::ClockJump(Duration::from_secs(40)),
                _ => Fault::ServerClose(1011, "scripted".into()),
            };
            (Duration::from_secs(10 + i * 60), f)
        })
        .collect();
    entries.push((
        Duration::from_secs(333),
        Fault::Restart {
            down: Duration::from_secs(30),
            graceful: false,
        },
    ));
    entries.push((Duration::from_secs(900), Fault::Drop));
    FaultPlan::new(entries)
}

/// "Fails" when the plan holds an abrupt restart that stays down at least 2 s and a drop.
fn needs_restart_and_drop(plan: &FaultPlan) -> bool {
    let restart = plan.entries.iter().any(|(_, f)| {
        matches!(f, Fault::Restart { down, graceful: false } if *down >= Duration::from_secs(2))
    });
    let drop = plan.entries.iter().any(|(_, f)| *f == Fault::Drop);
    restart && drop
}

#[test]
fn shrinking_keeps_only_the_faults_that_matter() {
    let plan = noisy_plan();
    assert!(needs_restart_and_drop(&plan));
    let shrunk = shrink_with(&plan, shrink::MAX_RUNS, needs_restart_and_drop);
    assert!(!shrunk.exhausted);
    assert!(shrunk.runs <= shrink::MAX_RUNS);
    assert_eq!(
        shrunk.plan.entries,
        vec![
            (
                Duration::from_secs(333),
                // 30 s halves to 15, 7.5, 3.75; 1.875 s no longer fails.
                Fault::Restart {
                    down: Duration::from_millis(3750),
                    graceful: false,
                },
            ),
            (Duration::from_secs(900), Fault::Drop),
        ]
    );
    // Deterministic.
    assert_eq!(
        shrink_with(&plan, shrink::MAX_RUNS, needs_restart_and_drop),
        shrunk
    );
}

#[test]
fn shrinking_stays_within_its_budget() {
    let plan = noisy_plan();
    let mut calls = 0;
    let shrunk = shrink_with(&plan, 5, |_| {
        calls += 1;
        false
    });
    assert_eq!(calls, 5);
    assert_eq!(shrunk.runs, 5);
    assert!(shrunk.exhausted);
    assert_eq!(shrunk.plan, plan, "nothing removable, nothing removed");
}

#[test]
fn shrinking_an_always_failing_plan_empties_it() {
    let shrunk = shrink_with(&noisy_plan(), shrink::MAX_RUNS, |_| true);
    assert_eq!(shrunk.plan, FaultPlan::none());
    assert!(shrunk.runs <= 3, "halves go first: {} runs", shrunk.runs);
}

#[test]
fn derived_plans_round_trip_through_their_flag_form() {
    let mix = FaultMix::default();
    for seed in 0..200 {
        let plan = scenario::derive_plan(&mix, seed, Duration::from_secs(3600));
        let spec = scenario::plan_spec(&plan);
        assert!(
            !spec.contains([' ', ';', '(', ')', '"', '\'']),
            "not shell-safe: {spec}"
        );
        assert_eq!(scenario::parse_plan(&spec), Ok(plan), "seed {seed}: {spec}");
    }
    assert_eq!(scenario::parse_plan("none"), Ok(FaultPlan::none()));
    assert!(scenario::parse_plan("10s:teleport").is_err());
    assert!(scenario::parse_plan("10s:restart:5s").is_err());
    assert!(scenario::parse_plan("soon:drop").is_err());
}

#[test]
fn durations_parse_and_format() {
    let p = |s| scenario::parse_duration(s);
    assert_eq!(p("1h"), Ok(Duration::from_secs(3600)));
    assert_eq!(p("30m"), Ok(Duration::from_secs(1800)));
    assert_eq!(p("90s"), Ok(Duration::from_secs(90)));
    assert_eq!(p("1.5s"), Ok(Duration::from_millis(1500)));
    assert_eq!(p("250ms"), Ok(Duration::from_millis(250)));
    assert_eq!(p("1h30m"), Ok(Duration::from_secs(5400)));
    assert_eq!(p("12.000000001s"), Ok(Duration::new(12, 1)));
    for bad in ["", "10", "1x", "s", "1..5s", "-1s"] {
        assert!(p(bad).is_err(), "{bad:?} parsed");
    }
    let f = scenario::format_duration;
    assert_eq!(f(Duration::from_secs(3600)), "1h");
    assert_eq!(f(Duration::from_secs(600)), "10m");
    assert_eq!(f(Duration::from_secs(90)), "90s");
    assert_eq!(f(Duration::from_millis(250)), "250ms");
    assert_eq!(f(Duration::new(12, 1)), "12.000000001s");
    assert_eq!(f(Duration::ZERO), "0s");
}

#[test]
fn fault_lists_parse() {
    assert_eq!(FaultMix::parse("all"), Ok(FaultMix::default()));
    assert_eq!(FaultMix::parse("all").unwrap().spec(), "all");
    let mix = FaultMix::parse("drop, restart").unwrap();
    assert_eq!(mix.kinds, ["drop", "restart"]);
    assert_eq!(mix.spec(), "drop,restart");
    assert_eq!(FaultMix::parse("none").unwrap().spec(), "none");
    let err = FaultMix::parse("drop,teleport").unwrap_err();
    assert!(err.contains("teleport"), "{err}");
    assert!(FaultMix::parse(",").is_err());
}

#[test]
fn first_divergence_names_the_step() {
    use tether_core::profiles::Raw;
    use tether_sim::{Entry, Timeline};
    let mut a = Timeline::<Raw>::new(scenario::config());
    a.push(Duration::from_secs(1), Entry::Fault(Fault::Drop));
    a.push(Duration::from_secs(2), Entry::Heal);
    let b = a.clone();
    assert_eq!(scenario::first_divergence(&a, &b), None);
    let mut c = Timeline::<Raw>::new(scenario::config());
    c.push(Duration::from_secs(1), Entry::Fault(Fault::Drop));
    c.push(Duration::from_secs(3), Entry::Heal);
    let d = scenario::first_divergence(&a, &c).unwrap();
    assert!(d.starts_with("step 1 differs"), "{d}");
    assert!(d.contains("first run:       1  +     2.000s  HEAL"), "{d}");
    assert!(d.contains("second run:      1  +     3.000s  HEAL"), "{d}");
    let mut short = a.clone();
    short.records.pop();
    let d = scenario::first_divergence(&a, &short).unwrap();
    assert!(d.contains("end of timeline: 1 records"), "{d}");
}

#[test]
fn a_graceful_restart_spreads_reconnects_over_the_floor_window() {
    use tether_sim::storm::{self, StormConfig};
    let cfg = StormConfig {
        clients: 200,
        threads: 2,
        ..StormConfig::default()
    };
    let report = storm::run_storm(&cfg, false);
    assert_eq!(
        report.open_at_restart, 200,
        "every client is open before the restart"
    );
    assert_eq!(report.reopened, 200, "every client comes back");
    assert_eq!(report.violations, 0);
    let (lo, hi, floor) = cfg.expected_window();
    assert_eq!(floor, Some(Duration::from_secs(10)));
    assert_eq!((lo, hi), (Duration::from_secs(10), Duration::from_secs(20)));
    // Nobody comes back before the floor; everyone within the window (plus a round trip).
    let first = report.buckets.iter().position(|n| *n > 0).unwrap();
    let last = report.buckets.iter().rposition(|n| *n > 0).unwrap();
    assert!(first >= 100, "first attempt in bucket {first}");
    assert!(last <= 201, "last attempt in bucket {last}");
    assert_eq!(report.attempts, 200);
    // Same clients, same histogram, whatever the thread count.
    let one = storm::run_storm(&StormConfig { threads: 1, ..cfg }, false);
    assert_eq!(one.buckets, report.buckets);
}
