//! The `tether-sim` command: seed campaigns, single-seed replays and reconnect storms.
//! Run `tether-sim --help` for usage. A front end: the built-in profiles are
//! [`tether_sim::Campaign`]s, run by the library's campaign engine
//! ([`campaign::run_campaign`]) and replayed through the same scenarios.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use tether_sim::campaign::{self, CampaignConfig};
use tether_sim::scenario::{self, FaultMix, Profile, format_duration, parse_duration};
use tether_sim::shrink;
use tether_sim::storm::{self, StormConfig};
use tether_sim::wire_campaign;

const HELP: &str = "\
tether-sim: a deterministic simulator for tether sessions

USAGE:
    tether-sim [campaign] [OPTIONS]     run many seeds (the default command)
    tether-sim replay --seed N [OPTIONS]
    tether-sim storm [OPTIONS]
    tether-sim wire [OPTIONS]           the campaign on the real wire (real codec, byte faults)
    tether-sim replay-trace FILE        replay a flight-recorder trace (docs/recording.md)
    tether-sim --help

CAMPAIGN OPTIONS (defaults: 1000 seeds from 0, 1 h each, every profile, every fault):
    --seeds N              how many consecutive seeds [1000]
    --start S              the first seed [0]
    --duration D           simulated time per seed: 1h, 30m, 90s, 1.5s, 250ms, 1h30m [1h]
    --profile P            raw, hello-ack, gateway, or all (seed % 3 picks one) [all]
    --faults F             all, none, or a comma list of fault kinds [all]
    --threads N            worker threads [available parallelism]
    --json                 print one JSON object instead of the summary
    --check-determinism    run every seed twice and compare the timelines (slower)
    --shrink N             shrink the fault plans of the first N failing seeds [10]
    --no-shrink            same as --shrink 0

REPLAY OPTIONS (the run is derived exactly as in a campaign):
    --seed N               the seed (required)
    --profile P            raw, hello-ack or gateway [the campaign's pick: seed % 3]
    --duration D           [1h]
    --faults F             [all]
    --plan SPEC            run this plan instead of the derived one (as printed for a
                           shrunk failure: 12.5s:drop,60s:restart:5s:graceful; or none)
    --verbose              print the timeline step by step
    --check-determinism    run twice and report the first differing timeline line

STORM OPTIONS (a server restart at t = 60 s under many HelloAck clients):
    --clients N            clients [10000]
    --down D               how long the server refuses connections [5s]
    --abrupt               drop connections (1006) instead of closing with 1012
    --threads N            worker threads [available parallelism]

WIRE OPTIONS (the driver's real WebSocket transport over simulated byte pipes, byte-level
faults, every run recorded, replayed and judged by every oracle):
    --seeds N              how many consecutive seeds [200]
    --start S              the first seed [0]
    --duration D           simulated time per seed [10m]
    --threads N            worker threads [available parallelism]

REPLAY-TRACE:
    FILE is a trace written by the flight recorder (a file, or a ring buffer's dump;
    - reads standard input). The recorded calls are fed to a fresh session built from
    the recorded seed, configuration and profile; every output is compared with the
    recorded one (per the trace's redaction mode) and the invariant oracles judge the
    replay. Prints the first differing step (line, expected, got) and every violation.

FAULT KINDS:
    refuse, blackhole, slow-connect, reject-upgrade, drop, server-close, half-open,
    stop-reading, latency, duplicate, reorder, garbage, never-ack, double-ack,
    unknown-response, restart, accept-then-close, clock-jump, hostile

EXIT STATUS:
    0  success
    1  an invariant was violated, a run was not deterministic, the storm missed its
       target (graceful restarts only), or a trace diverged or could not be read
    2  bad command line
";

/// A command-line mistake: printed with a hint, exit status 2.
struct Usage(String);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match cli(args) {
        Ok(code) => code,
        Err(Usage(msg)) => {
            eprintln!("error: {msg}");
            eprintln!("run `tether-sim --help` for usage");
            ExitCode::from(2)
        }
    }
}

fn cli(mut args: Vec<String>) -> Result<ExitCode, Usage> {
    let command = match args.first().map(String::as_str) {
        None => "campaign".to_owned(),
        Some(a) if a.starts_with('-') => "campaign".to_owned(),
        Some(_) => args.remove(0),
    };
    if args.iter().any(|a| a == "--help" || a == "-h") || command == "help" {
        print!("{HELP}");
        return Ok(ExitCode::SUCCESS);
    }
    match command.as_str() {
        "campaign" => campaign_cmd(&args),
        "replay" => replay_cmd(&args),
        "storm" => storm_cmd(&args),
        "wire" => wire_cmd(&args),
        "replay-trace" => replay_trace_cmd(&args),
        other => Err(Usage(format!(
            "unknown command {other:?} (campaign, replay, storm, wire, replay-trace)"
        ))),
    }
}

/// Flags as given: name → value (`None` for switches).
struct Flags {
    command: &'static str,
    given: BTreeMap<String, Option<String>>,
}

impl Flags {
    /// Parses `--name value`, `--name=value` and `--switch`. `spec` lists each known flag
    /// and whether it takes a value.
    fn parse(command: &'static str, args: &[String], spec: &[(&str, bool)]) -> Result<Self, Usage> {
        let mut given = BTreeMap::new();
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let Some(body) = arg.strip_prefix("--") else {
                return Err(Usage(format!(
                    "unexpected argument {arg:?} for {command} (flags start with --)"
                )));
            };
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_owned())),
                None => (body, None),
            };
            let Some((_, takes_value)) = spec.iter().find(|(n, _)| *n == name) else {
                let known: Vec<String> = spec.iter().map(|(n, _)| format!("--{n}")).collect();
                return Err(Usage(format!(
                    "unknown flag --{name} for {command} (known: {})",
                    known.join(", ")
                )));
            };
            let value = match (takes_value, inline) {
                (true, Some(v)) => Some(v),
                (true, None) => Some(
                    it.next()
                        .ok_or_else(|| Usage(format!("--{name} needs a value")))?
                        .clone(),
                ),
                (false, Some(_)) => return Err(Usage(format!("--{name} takes no value"))),
                (false, None) => None,
            };
            if given.insert(name.to_owned(), value).is_some() {
                return Err(Usage(format!("--{name} given twice")));
            }
        }
        Ok(Flags { command, given })
    }

    fn has(&self, name: &str) -> bool {
        self.given.contains_key(name)
    }

    fn value(&self, name: &str) -> Option<&str> {
        self.given.get(name).and_then(|v| v.as_deref())
    }

    fn get<T>(
        &self,
        name: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, Usage> {
        self.value(name)
            .map(|v| parse(v).map_err(|e| Usage(format!("--{name}: {e}"))))
            .transpose()
    }

    fn number(&self, name: &str, min: u64) -> Result<Option<u64>, Usage> {
        let command = self.command;
        self.get(name, |v| {
            let n: u64 = v
                .replace('_', "")
                .parse()
                .map_err(|_| format!("expected a number, got {v:?}"))?;
            if n < min {
                return Err(format!("must be at least {min} for {command}"));
            }
            Ok(n)
        })
    }

    fn duration(&self, name: &str) -> Result<Option<Duration>, Usage> {
        self.get(name, |v| {
            let d = parse_duration(v)?;
            if d.is_zero() {
                return Err("must be longer than zero".to_owned());
            }
            Ok(d)
        })
    }

    fn threads(&self) -> Result<usize, Usage> {
        Ok(self
            .number("threads", 1)?
            .map_or_else(campaign::default_threads, |n| {
                usize::try_from(n).unwrap_or(usize::MAX)
            }))
    }
}

fn parse_profile(v: &str) -> Result<Profile, String> {
    v.parse()
}

// ---- campaign ---------------------------------------------------------------------------

fn campaign_cmd(args: &[String]) -> Result<ExitCode, Usage> {
    let flags = Flags::parse(
        "campaign",
        args,
        &[
            ("seeds", true),
            ("start", true),
            ("duration", true),
            ("profile", true),
            ("faults", true),
            ("threads", true),
            ("json", false),
            ("check-determinism", false),
            ("shrink", true),
            ("no-shrink", false),
        ],
    )?;
    let mut cfg = CampaignConfig::default();
    if let Some(n) = flags.number("seeds", 1)? {
        cfg.seeds = n;
    }
    if let Some(s) = flags.number("start", 0)? {
        cfg.start = s;
    }
    if cfg.start.checked_add(cfg.seeds).is_none() {
        return Err(Usage("--start + --seeds overflows a u64".to_owned()));
    }
    if let Some(d) = flags.duration("duration")? {
        cfg.duration = d;
    }
    cfg.profile = flags
        .get("profile", |v| match v {
            "all" => Ok(None),
            p => parse_profile(p).map(Some),
        })?
        .flatten();
    if let Some(mix) = flags.get("faults", FaultMix::parse)? {
        cfg.mix = mix;
    }
    cfg.threads = flags.threads()?;
    cfg.check_determinism = flags.has("check-determinism");
    if flags.has("shrink") && flags.has("no-shrink") {
        return Err(Usage("give either --shrink N or --no-shrink".to_owned()));
    }
    if let Some(n) = flags.number("shrink", 0)? {
        cfg.shrink = usize::try_from(n).unwrap_or(usize::MAX);
    }
    if flags.has("no-shrink") {
        cfg.shrink = 0;
    }
    let json = flags.has("json");

    // Seeds are the user interface: say exactly what runs before running it.
    if json {
        eprintln!("{}", cfg.header());
    } else {
        println!("{}", cfg.header());
    }
    campaign::quiet_worker_panics();
    let report = campaign::run_campaign(&cfg, true);
    if json {
        println!("{}", report.json());
    } else {
        print!("{}", report.summary());
        print!("{}", report.failure_details());
    }
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

// ---- replay-trace -----------------------------------------------------------------------

fn replay_trace_cmd(args: &[String]) -> Result<ExitCode, Usage> {
    let [path] = args else {
        return Err(Usage(
            "replay-trace takes one argument: the trace file".to_owned(),
        ));
    };
    let result = if path == "-" {
        tether_sim::trace::replay(std::io::stdin().lock())
    } else {
        match std::fs::File::open(path) {
            Ok(f) => tether_sim::trace::replay(std::io::BufReader::new(f)),
            Err(e) => {
                eprintln!("error: cannot open {path}: {e}");
                return Ok(ExitCode::FAILURE);
            }
        }
    };
    match result {
        Ok(report) => {
            print!("{report}");
            Ok(if report.is_clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Err(e) => {
            eprintln!("error: {path}: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

// ---- replay -----------------------------------------------------------------------------

fn replay_cmd(args: &[String]) -> Result<ExitCode, Usage> {
    let flags = Flags::parse(
        "replay",
        args,
        &[
            ("seed", true),
            ("profile", true),
            ("duration", true),
            ("faults", true),
            ("plan", true),
            ("verbose", false),
            ("check-determinism", false),
        ],
    )?;
    let seed = flags
        .number("seed", 0)?
        .ok_or_else(|| Usage("replay needs --seed N".to_owned()))?;
    let profile = flags
        .get("profile", parse_profile)?
        .unwrap_or_else(|| Profile::for_seed(seed));
    let duration = flags
        .duration("duration")?
        .unwrap_or(Duration::from_secs(3600));
    if flags.has("plan") && flags.has("faults") {
        return Err(Usage("give either --faults or --plan, not both".to_owned()));
    }
    let mix = flags.get("faults", FaultMix::parse)?.unwrap_or_default();
    let plan = match flags.get("plan", scenario::parse_plan)? {
        Some(plan) => plan,
        None => scenario::derive_plan(&mix, seed, duration),
    };
    let verbose = flags.has("verbose");
    let determinism = flags.has("check-determinism");

    let faults = if flags.has("plan") {
        "(explicit plan)".to_owned()
    } else {
        mix.spec()
    };
    println!(
        "SEED={seed} PROFILE={profile} DURATION={} FAULTS={faults}",
        format_duration(duration)
    );
    println!(
        "plan ({} faults): {}",
        plan.entries.len(),
        scenario::plan_spec(&plan)
    );
    for (t, f) in &plan.entries {
        println!("  +{:>10.3}s  {f:?}", t.as_secs_f64());
    }
    let cfg = scenario::run_config(duration);
    let keep = verbose || determinism;
    let run = || {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            scenario::run(profile, seed, plan.clone(), &cfg, keep)
        }))
    };
    let outcome = match run() {
        Ok(o) => o,
        Err(payload) => {
            println!(
                "PANIC: {}",
                shrink::panic_violation(payload.as_ref()).detail
            );
            return Ok(ExitCode::FAILURE);
        }
    };
    if verbose && let Some(t) = &outcome.timeline {
        print!("{t}");
    }
    let s = &outcome.stats;
    println!(
        "seed {seed} {profile}: {} simulated; {} attempts, {} opens, {} reconnects; requests \
         {} ok, {} remote error, {} timed out, {} disconnected, {} aborted; stream events {} \
         delivered, {} duplicates, {} gaps, {} late; {} unsolicited; {} protocol violations; \
         {} clock jumps",
        format_duration(outcome.simulated),
        s.attempts,
        s.opens,
        s.disconnects,
        s.requests_ok,
        s.requests_remote_error,
        s.requests_timed_out,
        s.requests_disconnected,
        s.requests_aborted,
        s.stream_events,
        s.duplicates_dropped,
        s.gaps,
        s.late_events,
        s.unsolicited,
        s.violations,
        s.clock_jumps,
    );
    let mut failed = false;
    if outcome.violations.is_empty() {
        println!("no invariant violations");
    } else {
        failed = true;
        println!("INVARIANT VIOLATIONS ({}):", outcome.violations.len());
        for v in &outcome.violations {
            println!("  {v}");
        }
    }
    if determinism {
        let again = match run() {
            Ok(o) => o,
            Err(payload) => {
                println!(
                    "NONDETERMINISTIC: the second run panicked: {}",
                    shrink::panic_violation(payload.as_ref()).detail
                );
                return Ok(ExitCode::FAILURE);
            }
        };
        let a = outcome.timeline.unwrap_or_default();
        let b = again.timeline.unwrap_or_default();
        match campaign::first_difference(&a, &b) {
            None => println!(
                "determinism: two runs gave identical timelines ({} lines)",
                a.lines().count()
            ),
            Some(d) => {
                failed = true;
                println!("NONDETERMINISTIC: {d}");
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

// ---- wire -------------------------------------------------------------------------------

fn wire_cmd(args: &[String]) -> Result<ExitCode, Usage> {
    let flags = Flags::parse(
        "wire",
        args,
        &[
            ("seeds", true),
            ("start", true),
            ("duration", true),
            ("threads", true),
        ],
    )?;
    let mut cfg = wire_campaign::WireCampaign::default();
    if let Some(n) = flags.number("seeds", 1)? {
        cfg.seeds = n;
    }
    if let Some(n) = flags.number("start", 0)? {
        cfg.start = n;
    }
    if let Some(d) = flags.duration("duration")? {
        cfg.duration = d;
    }
    cfg.threads = flags.threads()?;
    println!(
        "WIRE SEED={} SEEDS={} DURATION={} THREADS={}",
        cfg.start,
        cfg.seeds,
        format_duration(cfg.duration),
        cfg.threads
    );
    let started = std::time::Instant::now();
    let report = wire_campaign::run(&cfg);
    print!("{report}");
    let wall = started.elapsed().as_secs_f64();
    let hours = cfg.duration.as_secs_f64() * report.seeds as f64 / 3600.0;
    println!(
        "wire simulated       {hours:.1} h in {wall:.2} s wall: {:.1} seeds/s",
        report.seeds as f64 / wall.max(1e-9)
    );
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

// ---- storm ------------------------------------------------------------------------------

fn storm_cmd(args: &[String]) -> Result<ExitCode, Usage> {
    let flags = Flags::parse(
        "storm",
        args,
        &[
            ("clients", true),
            ("down", true),
            ("abrupt", false),
            ("threads", true),
        ],
    )?;
    let mut cfg = StormConfig::default();
    if let Some(n) = flags.number("clients", 1)? {
        cfg.clients = n;
    }
    if let Some(d) = flags.duration("down")? {
        cfg.down = d;
    }
    cfg.graceful = !flags.has("abrupt");
    cfg.threads = flags.threads()?;
    println!(
        "STORM CLIENTS={} RESTART={} DOWN={} AT={} THREADS={} (client i: seed i, HelloAck \
         profile, starts within the first {})",
        cfg.clients,
        if cfg.graceful {
            "graceful(1012)"
        } else {
            "abrupt(1006)"
        },
        format_duration(cfg.down),
        format_duration(cfg.restart_at),
        cfg.threads,
        format_duration(cfg.spread),
    );
    let report = storm::run_storm(&cfg, true);
    print!("{}", report.render());
    Ok(if report.meets_target() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
