//! The `tether-sim` command line: campaign, replay and storm exit codes and output, and
//! clear errors (exit status 2) for bad flags.

use std::process::{Command, Output};

fn sim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tether-sim"))
        .args(args)
        .output()
        .expect("run tether-sim")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_json_campaign_passes_with_zero_violations() {
    let o = sim(&["campaign", "--seeds", "30", "--duration", "10m", "--json"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}\n{}", stderr(&o));
    assert!(out.contains("\"violations\":0"), "{out}");
    let json: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON object");
    assert_eq!(json["seeds"], 30);
    assert!(json["attempts"].as_u64().unwrap() >= 30);
    // The seed line goes to stderr so stdout stays one JSON object.
    assert!(
        stderr(&o).contains("SEED=0 SEEDS=30 DURATION=10m PROFILE=all FAULTS=all"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_human_campaign_prints_the_seed_line_and_the_summary() {
    let o = sim(&[
        "--seeds",
        "3",
        "--start",
        "5",
        "--duration",
        "5m",
        "--threads",
        "1",
    ]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}\n{}", stderr(&o));
    assert!(
        out.starts_with("SEED=5 SEEDS=3 DURATION=5m PROFILE=all FAULTS=all THREADS=1"),
        "{out}"
    );
    for line in ["connects", "requests", "stream events", "clock jumps"] {
        assert!(out.contains(line), "no {line:?} line: {out}");
    }
    assert!(out.contains("INVARIANT VIOLATIONS 0"), "{out}");
}

#[test]
fn replay_is_deterministic() {
    let o = sim(&[
        "replay",
        "--seed",
        "4",
        "--duration",
        "5m",
        "--check-determinism",
    ]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}\n{}", stderr(&o));
    assert!(
        out.starts_with("SEED=4 PROFILE=hello-ack DURATION=5m"),
        "{out}"
    );
    assert!(out.contains("identical timelines"), "{out}");
}

#[test]
fn replay_runs_an_explicit_plan_verbosely() {
    let o = sim(&[
        "replay",
        "--seed",
        "2",
        "--duration",
        "2m",
        "--plan",
        "10s:drop,20s:restart:2s:graceful",
        "--verbose",
    ]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}\n{}", stderr(&o));
    assert!(
        out.contains("plan (2 faults): 10s:drop,20s:restart:2s:graceful"),
        "{out}"
    );
    assert!(out.contains("FAULT    Drop"), "no timeline: {out}");
    assert!(out.contains("no invariant violations"), "{out}");
}

#[test]
fn storm_prints_the_peak() {
    let o = sim(&["storm", "--clients", "300"]);
    let out = stdout(&o);
    // A 300-client fleet is too small to judge the 2% target, so either verdict is fine.
    assert!(
        matches!(o.status.code(), Some(0 | 1)),
        "{out}\n{}",
        stderr(&o)
    );
    assert!(out.contains("peak: "), "{out}");
    assert!(out.contains("% of 300 clients"), "{out}");
    assert!(out.contains("close 1012"), "{out}");
}

#[test]
fn help_lists_the_commands() {
    let o = sim(&["--help"]);
    assert_eq!(o.status.code(), Some(0));
    let out = stdout(&o);
    for word in [
        "campaign",
        "replay",
        "storm",
        "--check-determinism",
        "--abrupt",
    ] {
        assert!(out.contains(word), "help lacks {word}: {out}");
    }
}

#[test]
fn bad_command_lines_exit_2_with_a_clear_message() {
    let cases: &[(&[&str], &str)] = &[
        (&["campaign", "--bogus"], "unknown flag --bogus"),
        (&["--seeds", "many"], "--seeds: expected a number"),
        (&["--seeds"], "--seeds needs a value"),
        (&["--duration", "10"], "bad duration"),
        (&["--profile", "ftp"], "unknown profile"),
        (&["--faults", "drop,teleport"], "teleport"),
        (&["--threads", "0"], "--threads: must be at least 1"),
        (&["--json=yes"], "--json takes no value"),
        (&["replay"], "replay needs --seed"),
        (
            &["replay", "--seed", "1", "--plan", "5s:warp"],
            "unknown fault",
        ),
        (&["storm", "--clients", "-3"], "--clients"),
        (&["frobnicate"], "unknown command"),
        (&["campaign", "stray"], "unexpected argument"),
    ];
    for (args, needle) in cases {
        let o = sim(args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(needle),
            "{args:?}: expected {needle:?} in {err:?}"
        );
        assert!(err.contains("--help"), "{args:?}: no hint: {err:?}");
    }
}
