//! Ready scenarios: the built-in profiles with their scripted servers, standard
//! workloads, and random fault plans drawn from a seed.

use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;
use std::time::Duration;

use serde_json::json;
use tether_core::profiles::{
    Gateway, GatewayOptions, GatewayRequest, HelloAck, HelloAckRequest, Raw,
};
use tether_core::{Config, DataFrame, MAX_CLOSE_REASON, Protocol, SessionStats, Utf8Bytes};

use crate::campaign::{CampaignConfig, Scenario};
use crate::campaign_builder::Campaign;
use crate::fault::{Fault, FaultPlan, Garbage, Hostile};
use crate::oracle::Violation;
use crate::servers::{GatewayServer, HelloAckServer};
use crate::timeline::Timeline;
use crate::workload::Command;
use crate::world::RunConfig;
use crate::{FnServer, ServerEvent, Wire};

/// A built-in profile with its scripted server and workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Profile {
    /// [`Raw`] against an echo server.
    Raw,
    /// [`HelloAck`] against [`HelloAckServer`].
    HelloAck,
    /// [`Gateway`] against [`GatewayServer`].
    Gateway,
}

impl Profile {
    /// Every profile.
    pub const ALL: [Profile; 3] = [Profile::Raw, Profile::HelloAck, Profile::Gateway];

    /// The profile a seed runs when a campaign mixes profiles.
    pub fn for_seed(seed: u64) -> Profile {
        Profile::ALL[(seed % 3) as usize]
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Profile::Raw => "raw",
            Profile::HelloAck => "hello-ack",
            Profile::Gateway => "gateway",
        })
    }
}

impl FromStr for Profile {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "raw" => Ok(Profile::Raw),
            "hello-ack" | "helloack" | "hello_ack" => Ok(Profile::HelloAck),
            "gateway" | "openclaw" => Ok(Profile::Gateway),
            other => Err(format!(
                "unknown profile {other:?} (raw, hello-ack, gateway)"
            )),
        }
    }
}

/// Which faults a random plan may draw, and how often.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultMix {
    /// Fault names (see [`Fault::NAMES`]) that may be drawn.
    pub kinds: Vec<&'static str>,
    /// Mean simulated time between faults. Default 3 min.
    pub mean_gap: Duration,
    /// Probability that a server close uses a fatal code (ends the session). Default 0.02.
    pub fatal: f64,
}

impl Default for FaultMix {
    fn default() -> Self {
        FaultMix {
            kinds: Fault::NAMES.to_vec(),
            mean_gap: Duration::from_secs(180),
            fatal: 0.02,
        }
    }
}

impl FaultMix {
    /// Only these fault kinds.
    ///
    /// # Errors
    ///
    /// An unknown name.
    pub fn only(names: &[&str]) -> Result<Self, String> {
        let mut kinds = Vec::new();
        for n in names {
            let k = Fault::NAMES.iter().find(|k| **k == *n).ok_or_else(|| {
                format!("unknown fault {n:?}; known: {}", Fault::NAMES.join(", "))
            })?;
            kinds.push(*k);
        }
        Ok(FaultMix {
            kinds,
            ..FaultMix::default()
        })
    }

    /// A random plan over `[0, until)`, from `seed`.
    pub fn plan(&self, seed: u64, until: Duration) -> FaultPlan {
        let mut rng = fastrand::Rng::with_seed(seed ^ 0x5eed_fa17);
        let mut entries = Vec::new();
        if self.kinds.is_empty() {
            return FaultPlan::none();
        }
        let mut t = Duration::ZERO;
        loop {
            t += self.mean_gap.mul_f64(-(1.0 - rng.f64()).ln());
            if t >= until {
                break;
            }
            let kind = self.kinds[rng.usize(..self.kinds.len())];
            entries.push((t, self.draw(kind, &mut rng)));
        }
        FaultPlan::new(entries)
    }

    fn draw(&self, kind: &str, rng: &mut fastrand::Rng) -> Fault {
        let secs =
            |rng: &mut fastrand::Rng, lo: u64, hi: u64| Duration::from_secs(rng.u64(lo..=hi));
        let ms =
            |rng: &mut fastrand::Rng, lo: u64, hi: u64| Duration::from_millis(rng.u64(lo..=hi));
        match kind {
            "refuse" => Fault::RefuseConnects(secs(rng, 1, 60)),
            "blackhole" => Fault::BlackholeConnects(secs(rng, 5, 60)),
            "slow-connect" => Fault::SlowConnects {
                extra: ms(rng, 100, 8000),
                lasts: secs(rng, 10, 120),
            },
            "reject-upgrade" => {
                let fatal = rng.f64() < self.fatal;
                let status = if fatal {
                    [401, 403][rng.usize(..2)]
                } else {
                    [429, 500, 502, 503][rng.usize(..4)]
                };
                Fault::RejectUpgrade {
                    status,
                    lasts: secs(rng, 1, 60),
                }
            }
            "drop" => Fault::Drop,
            "server-close" => {
                let code = if rng.f64() < self.fatal {
                    [1008, 4001, 4003][rng.usize(..3)]
                } else if rng.f64() < 0.3 {
                    // The edges of the registry: valid codes the codec does not know, and
                    // codes no peer may send (the link fails the connection).
                    EDGE_CLOSE_CODES[rng.usize(..EDGE_CLOSE_CODES.len())]
                } else {
                    [1001, 1011, 1012, 1013, 4000, 4500][rng.usize(..6)]
                };
                // Now and then the longest reason a close frame holds, or one byte more.
                let reason = match rng.u8(..10) {
                    0 => "r".repeat(MAX_CLOSE_REASON),
                    1 => "r".repeat(MAX_CLOSE_REASON + 1),
                    _ => "scripted".to_owned(),
                };
                Fault::ServerClose(code, reason)
            }
            "half-open" => Fault::HalfOpen(secs(rng, 10, 300)),
            "stop-reading" => Fault::StopReading(secs(rng, 5, 120)),
            "latency" => Fault::Latency {
                base: ms(rng, 50, 2000),
                jitter: ms(rng, 0, 1000),
                lasts: secs(rng, 10, 300),
            },
            "duplicate" => Fault::Duplicate(secs(rng, 10, 300)),
            "reorder" => Fault::Reorder {
                window: ms(rng, 5, 200),
                lasts: secs(rng, 10, 300),
            },
            "garbage" => Fault::Garbage(
                [
                    Garbage::Malformed,
                    Garbage::Oversized,
                    Garbage::InvalidUtf8,
                    Garbage::Binary,
                ][rng.usize(..4)],
            ),
            "never-ack" => Fault::NeverAck(secs(rng, 5, 60)),
            "double-ack" => Fault::DoubleAck(secs(rng, 5, 60)),
            "unknown-response" => Fault::UnknownResponse,
            "hostile" => Fault::Hostile(Hostile::ALL[rng.usize(..Hostile::ALL.len())]),
            "restart" => Fault::Restart {
                down: secs(rng, 1, 30),
                graceful: rng.bool(),
            },
            "accept-then-close" => Fault::AcceptThenClose(secs(rng, 5, 60)),
            _ => Fault::ClockJump(secs(rng, 20, 600)),
        }
    }
}

/// Close codes at the edges of the registry that a hostile or buggy server may send:
/// valid ones tungstenite does not know (1014, 3000, 4999) and ones no peer may send (0,
/// 999, 1004–1006, 1015, 2999, 5000, 65535), which the driver's link refuses.
pub const EDGE_CLOSE_CODES: &[u16] = &[
    0, 999, 1004, 1005, 1006, 1014, 1015, 2999, 3000, 4999, 5000, 65535,
];

/// What a scenario run produced, independent of the protocol's types.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The seed.
    pub seed: u64,
    /// What ran: the built-in profile's name or the [`Campaign`]'s.
    pub scenario: String,
    /// The fault plan.
    pub plan: FaultPlan,
    /// The session's counters.
    pub stats: SessionStats,
    /// Simulated time covered.
    pub simulated: Duration,
    /// Broken invariants.
    pub violations: Vec<Violation>,
    /// The rendered timeline, when asked for.
    pub timeline: Option<String>,
}

/// The session configuration scenarios use: the defaults, except that the first connect
/// retries (a plan may start with the server down).
pub fn config() -> Config {
    Config {
        retry_first_connect: true,
        ..Config::default()
    }
}

/// Runs `profile` for `seed` under `plan`.
pub fn run(
    profile: Profile,
    seed: u64,
    plan: FaultPlan,
    cfg: &RunConfig,
    keep_timeline: bool,
) -> Outcome {
    run_checked(profile, seed, plan, cfg, keep_timeline, false).0
}

/// Runs `profile` for `seed` under `plan`; with `twice`, runs it a second time and
/// compares the two timelines record by record, returning the first difference (`None`
/// when identical, or when not checked).
pub fn run_checked(
    profile: Profile,
    seed: u64,
    plan: FaultPlan,
    cfg: &RunConfig,
    keep_timeline: bool,
    twice: bool,
) -> (Outcome, Option<String>) {
    builtin(profile).run(seed, plan, cfg, keep_timeline, twice)
}

/// A built-in profile as a [`Campaign`]'s scenario, replayed by the CLI.
struct Builtin {
    profile: Profile,
    campaign: Box<dyn Scenario + Send>,
}

impl Scenario for Builtin {
    fn name(&self) -> String {
        self.profile.to_string()
    }

    fn run(
        &self,
        seed: u64,
        plan: FaultPlan,
        run: &RunConfig,
        keep_timeline: bool,
        twice: bool,
    ) -> (Outcome, Option<String>) {
        self.campaign.run(seed, plan, run, keep_timeline, twice)
    }

    fn replay_line(&self, cfg: &CampaignConfig, seed: u64, plan: Option<&FaultPlan>) -> String {
        cfg.replay_command(seed, plan)
    }

    fn shrink_line(&self, cfg: &CampaignConfig, seed: u64) -> String {
        format!(
            "`campaign --start {seed} --seeds 1{}`",
            cfg.flags_for_one_seed()
        )
    }
}

/// The built-in profiles, each a [`Campaign`] of its protocol, scripted server and
/// standard workload, in [`Profile::ALL`] order.
static BUILTIN: LazyLock<[Builtin; 3]> = LazyLock::new(|| {
    [
        Builtin {
            profile: Profile::Raw,
            campaign: Box::new(raw()),
        },
        Builtin {
            profile: Profile::HelloAck,
            campaign: Box::new(hello_ack()),
        },
        Builtin {
            profile: Profile::Gateway,
            campaign: Box::new(gateway()),
        },
    ]
});

/// The built-in profile as the campaign engine runs it.
pub(crate) fn builtin(profile: Profile) -> &'static dyn Scenario {
    let i = match profile {
        Profile::Raw => 0,
        Profile::HelloAck => 1,
        Profile::Gateway => 2,
    };
    &BUILTIN[i]
}

/// [`Raw`] against an echo server, a message every 10 s on average.
fn raw() -> impl Scenario + Send {
    let echo = || {
        FnServer::new(|ev, ctx| {
            if let ServerEvent::Frame(conn, Wire::Text(t)) = ev {
                ctx.send(conn, Wire::Text(t));
            }
        })
    };
    Campaign::new("raw", || Raw, echo)
        .identify_sends(identify_raw)
        .send(|rng| {
            let n = rng.u32(..);
            DataFrame::Text(Utf8Bytes::from_string(format!("m{n}")))
        })
}

/// [`HelloAck`] against [`HelloAckServer`], both speaking the recovery dialect: notes,
/// echo requests (some idempotent), streams (some resumable across reconnects) and
/// failing requests, a command every 10 s on average.
fn hello_ack() -> impl Scenario + Send {
    let hello = || HelloAck::new(|| json!({"type": "hello", "client": "sim"})).recovering();
    Campaign::new("hello-ack", hello, HelloAckServer::recovering)
        .identify_sends(identify_json)
        .identify_events(hello_ack_event)
        .command(1, |rng| match rng.u32(..100) {
            0..40 => Command::Send(json!({"type": "note", "n": rng.u32(..)})),
            40..65 => Command::Request {
                request: HelloAckRequest::new("echo", json!({"n": rng.u32(..)})),
                timeout: None,
            },
            65..75 => Command::Request {
                request: HelloAckRequest::new("echo", json!({"n": rng.u32(..)})).idempotent(),
                timeout: None,
            },
            75..85 => Command::Request {
                request: HelloAckRequest::new("stream.words", json!({})).streaming(),
                timeout: None,
            },
            85..95 => Command::Request {
                request: HelloAckRequest::new("stream.words", json!({})).resumable(),
                timeout: None,
            },
            _ => Command::Request {
                request: HelloAckRequest::new("fail", json!({})),
                timeout: Some(Duration::from_secs(5)),
            },
        })
}

/// [`Gateway`] against [`GatewayServer`]: chat runs, history, health and failing
/// requests, a command every 15 s on average.
fn gateway() -> impl Scenario + Send {
    let gw = || Gateway::new(GatewayOptions::default());
    Campaign::new("gateway", gw, GatewayServer::default)
        .every(Duration::from_secs(15))
        .command(1, |rng| match rng.u32(..100) {
            0..45 => Command::Request {
                request: GatewayRequest::chat_send("agent:main:main", "hello"),
                timeout: None,
            },
            45..75 => Command::Request {
                request: GatewayRequest::chat_history("agent:main:main", Some(20)),
                timeout: None,
            },
            75..95 => Command::Request {
                request: GatewayRequest::new("health", None),
                timeout: Some(Duration::from_secs(10)),
            },
            _ => Command::Request {
                request: GatewayRequest::new("fail", None),
                timeout: None,
            },
        })
}

/// The frame a [`Raw`] message travels in, for
/// [`World::identify_sends`](crate::World::identify_sends).
#[must_use]
pub fn identify_raw(m: &DataFrame) -> Option<(bool, bytes::Bytes)> {
    Some(match m {
        DataFrame::Text(t) => (false, t.clone().into_bytes()),
        DataFrame::Binary(b) => (true, b.clone()),
    })
}

/// The frame a JSON message (a [`HelloAck`] message) travels in: its compact
/// serialisation, for [`World::identify_sends`](crate::World::identify_sends).
#[must_use]
pub fn identify_json(m: &serde_json::Value) -> Option<(bool, bytes::Bytes)> {
    Some((false, bytes::Bytes::from(m.to_string())))
}

/// The stream event a [`HelloAck`] frame carries (`{"type":"event","stream":k,"seq":n,…}`),
/// for [`World::identify_events`](crate::World::identify_events).
#[must_use]
pub fn hello_ack_event(frame: &tether_core::InFrame) -> Option<(String, u64)> {
    let tether_core::InFrame::Text(bytes) = frame else {
        return None;
    };
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    if v.get("type")?.as_str()? != "event" {
        return None;
    }
    Some((
        v.get("stream")?.as_str()?.to_owned(),
        v.get("seq")?.as_u64()?,
    ))
}

/// The first record where two timelines differ, rendered as [`Timeline`]'s `Display`
/// renders it (step index, simulated time, entry), or `None` when they are identical.
pub fn first_divergence<P: Protocol>(a: &Timeline<P>, b: &Timeline<P>) -> Option<String> {
    let render = |t: &Timeline<P>, i: usize| -> String {
        match t.records.get(i) {
            None => format!("{i:>6}  (end of timeline: {} records)", t.records.len()),
            Some(r) => {
                let mut one = Timeline::new(t.config.clone());
                one.push(r.at, r.entry.clone());
                let line = one.to_string();
                // The one-record timeline numbers its record 0; put the real index back.
                let body = line.trim_start().trim_start_matches('0').trim();
                format!("{i:>6}  {body}")
            }
        }
    };
    let n = a.records.len().max(b.records.len());
    let i = (0..n).find(|&i| a.records.get(i) != b.records.get(i))?;
    Some(format!(
        "step {i} differs:\n  first run:  {}\n  second run: {}",
        render(a, i),
        render(b, i)
    ))
}

impl FaultMix {
    /// Parses a flag value: `all`, `none`, or a comma list of fault names (see
    /// [`Fault::NAMES`]), e.g. `drop,restart,clock-jump`.
    ///
    /// # Errors
    ///
    /// An empty list or an unknown name.
    pub fn parse(spec: &str) -> Result<Self, String> {
        match spec.trim() {
            "all" => return Ok(FaultMix::default()),
            "none" => return FaultMix::only(&[]),
            _ => {}
        }
        let names: Vec<&str> = spec
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .collect();
        if names.is_empty() {
            return Err(format!(
                "empty fault list; use all, none or some of: {}",
                Fault::NAMES.join(", ")
            ));
        }
        FaultMix::only(&names)
    }

    /// The fault kinds as a flag value: `all`, `none`, or the comma list.
    pub fn spec(&self) -> String {
        if self.kinds.is_empty() {
            "none".to_owned()
        } else if self.kinds == Fault::NAMES {
            "all".to_owned()
        } else {
            self.kinds.join(",")
        }
    }
}

/// The run configuration a campaign uses for one seed.
pub fn run_config(duration: Duration) -> RunConfig {
    RunConfig::lasting(duration)
}

/// The fault plan a campaign derives for `seed` from `mix`: faults over the fault phase.
pub fn derive_plan(mix: &FaultMix, seed: u64, duration: Duration) -> FaultPlan {
    mix.plan(seed, run_config(duration).heal_time())
}

/// Runs one seed exactly as a campaign does: the plan from `mix` and the seed, the
/// standard run configuration for `duration`.
pub fn replay(
    profile: Profile,
    seed: u64,
    mix: &FaultMix,
    duration: Duration,
    keep_timeline: bool,
) -> Outcome {
    let plan = derive_plan(mix, seed, duration);
    run(profile, seed, plan, &run_config(duration), keep_timeline)
}

// ---- durations and plans as text ---------------------------------------------------------

/// Parses a duration such as `1h`, `30m`, `90s`, `1.5s`, `250ms`, `10us`, `7ns` or a
/// concatenation (`1h30m`). A unit is required.
///
/// # Errors
///
/// Anything else.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("bad duration {text:?} (examples: 1h, 30m, 90s, 1.5s, 250ms)");
    let s = text.trim();
    if s.is_empty() {
        return Err(bad());
    }
    let mut total: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let (num, tail) = rest.split_at(num_len);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale: u128 = match unit {
            "h" => 3_600_000_000_000,
            "m" | "min" => 60_000_000_000,
            "s" => 1_000_000_000,
            "ms" => 1_000_000,
            "us" | "µs" => 1_000,
            "ns" => 1,
            _ => return Err(bad()),
        };
        let (int, frac) = num.split_once('.').unwrap_or((num, ""));
        if int.is_empty() && frac.is_empty() || frac.contains('.') || frac.len() > 18 {
            return Err(bad());
        }
        let int: u128 = if int.is_empty() {
            0
        } else {
            int.parse().map_err(|_| bad())?
        };
        let mut part = int.checked_mul(scale).ok_or_else(bad)?;
        if !frac.is_empty() {
            let digits: u128 = frac.parse().map_err(|_| bad())?;
            part += digits * scale / 10u128.pow(frac.len() as u32);
        }
        total = total.checked_add(part).ok_or_else(bad)?;
        rest = tail;
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| bad())?;
    Ok(Duration::new(secs, (total % 1_000_000_000) as u32))
}

/// Formats a duration exactly, in the form [`parse_duration`] reads: `1h`, `30m`, `90s`,
/// `250ms`, `12.000345s`.
pub fn format_duration(d: Duration) -> String {
    let (secs, nanos) = (d.as_secs(), d.subsec_nanos());
    if nanos == 0 {
        if secs > 0 && secs.is_multiple_of(3600) {
            format!("{}h", secs / 3600)
        } else if secs > 0 && secs.is_multiple_of(60) {
            format!("{}m", secs / 60)
        } else {
            format!("{secs}s")
        }
    } else if secs == 0 && nanos.is_multiple_of(1_000_000) {
        format!("{}ms", nanos / 1_000_000)
    } else {
        let frac = format!("{nanos:09}");
        format!("{secs}.{}s", frac.trim_end_matches('0'))
    }
}

fn garbage_name(g: Garbage) -> &'static str {
    match g {
        Garbage::Malformed => "malformed",
        Garbage::Oversized => "oversized",
        Garbage::InvalidUtf8 => "invalid-utf8",
        Garbage::Binary => "binary",
    }
}

/// Formats one fault as `name[:arg…]`, the form [`parse_plan`] reads.
pub fn fault_spec(fault: &Fault) -> String {
    let d = format_duration;
    let args = match fault {
        Fault::RefuseConnects(x)
        | Fault::BlackholeConnects(x)
        | Fault::HalfOpen(x)
        | Fault::StopReading(x)
        | Fault::Duplicate(x)
        | Fault::NeverAck(x)
        | Fault::DoubleAck(x)
        | Fault::AcceptThenClose(x)
        | Fault::ClockJump(x) => vec![d(*x)],
        Fault::SlowConnects { extra, lasts } => vec![d(*extra), d(*lasts)],
        Fault::RejectUpgrade { status, lasts } => vec![status.to_string(), d(*lasts)],
        Fault::Drop | Fault::UnknownResponse => vec![],
        Fault::ServerClose(code, reason) if reason == "scripted" => vec![code.to_string()],
        Fault::ServerClose(code, reason) => vec![code.to_string(), reason.clone()],
        Fault::Latency {
            base,
            jitter,
            lasts,
        } => vec![d(*base), d(*jitter), d(*lasts)],
        Fault::Reorder { window, lasts } => vec![d(*window), d(*lasts)],
        Fault::Garbage(g) => vec![garbage_name(*g).to_owned()],
        Fault::Hostile(h) => vec![h.name().to_owned()],
        Fault::Restart { down, graceful } => vec![
            d(*down),
            if *graceful { "graceful" } else { "abrupt" }.to_owned(),
        ],
    };
    let mut s = fault.name().to_owned();
    for a in args {
        s.push(':');
        s.push_str(&a);
    }
    s
}

/// Formats a plan as a shell-safe flag value: `none`, or comma-separated
/// `time:name[:arg…]` entries, e.g. `12.5s:drop,60s:restart:5s:graceful`. Exact:
/// [`parse_plan`] gives the same plan back.
pub fn plan_spec(plan: &FaultPlan) -> String {
    if plan.entries.is_empty() {
        return "none".to_owned();
    }
    plan.entries
        .iter()
        .map(|(t, f)| format!("{}:{}", format_duration(*t), fault_spec(f)))
        .collect::<Vec<_>>()
        .join(",")
}

/// Parses a plan written by [`plan_spec`].
///
/// # Errors
///
/// A malformed entry, with the reason.
pub fn parse_plan(spec: &str) -> Result<FaultPlan, String> {
    let spec = spec.trim();
    if spec == "none" || spec.is_empty() {
        return Ok(FaultPlan::none());
    }
    let mut entries = Vec::new();
    for entry in spec.split(',') {
        let bad = |why: &str| format!("bad plan entry {entry:?}: {why}");
        let mut parts = entry.trim().split(':');
        let at = parse_duration(parts.next().unwrap_or("")).map_err(|e| bad(&e))?;
        let name = parts.next().ok_or_else(|| bad("missing fault name"))?;
        let args: Vec<&str> = parts.collect();
        let want = |n: usize| {
            if args.len() == n {
                Ok(())
            } else {
                Err(bad(&format!("{name} takes {n} argument(s)")))
            }
        };
        let dur = |i: usize| parse_duration(args[i]).map_err(|e| bad(&e));
        let fault = match name {
            "refuse" | "blackhole" | "half-open" | "stop-reading" | "duplicate" | "never-ack"
            | "double-ack" | "accept-then-close" | "clock-jump" => {
                want(1)?;
                let x = dur(0)?;
                match name {
                    "refuse" => Fault::RefuseConnects(x),
                    "blackhole" => Fault::BlackholeConnects(x),
                    "half-open" => Fault::HalfOpen(x),
                    "stop-reading" => Fault::StopReading(x),
                    "duplicate" => Fault::Duplicate(x),
                    "never-ack" => Fault::NeverAck(x),
                    "double-ack" => Fault::DoubleAck(x),
                    "accept-then-close" => Fault::AcceptThenClose(x),
                    _ => Fault::ClockJump(x),
                }
            }
            "slow-connect" => {
                want(2)?;
                Fault::SlowConnects {
                    extra: dur(0)?,
                    lasts: dur(1)?,
                }
            }
            "reject-upgrade" => {
                want(2)?;
                Fault::RejectUpgrade {
                    status: args[0].parse().map_err(|_| bad("bad status"))?,
                    lasts: dur(1)?,
                }
            }
            "drop" => {
                want(0)?;
                Fault::Drop
            }
            "unknown-response" => {
                want(0)?;
                Fault::UnknownResponse
            }
            "server-close" => {
                if args.is_empty() || args.len() > 2 {
                    return Err(bad("server-close takes a code and an optional reason"));
                }
                let code = args[0].parse().map_err(|_| bad("bad close code"))?;
                let reason = args.get(1).copied().unwrap_or("scripted").to_owned();
                Fault::ServerClose(code, reason)
            }
            "latency" => {
                want(3)?;
                Fault::Latency {
                    base: dur(0)?,
                    jitter: dur(1)?,
                    lasts: dur(2)?,
                }
            }
            "reorder" => {
                want(2)?;
                Fault::Reorder {
                    window: dur(0)?,
                    lasts: dur(1)?,
                }
            }
            "garbage" => {
                want(1)?;
                Fault::Garbage(match args[0] {
                    "malformed" => Garbage::Malformed,
                    "oversized" => Garbage::Oversized,
                    "invalid-utf8" => Garbage::InvalidUtf8,
                    "binary" => Garbage::Binary,
                    _ => return Err(bad("malformed, oversized, invalid-utf8 or binary")),
                })
            }
            "hostile" => {
                want(1)?;
                let kind = Hostile::ALL.into_iter().find(|h| h.name() == args[0]);
                Fault::Hostile(kind.ok_or_else(|| {
                    let names: Vec<_> = Hostile::ALL.iter().map(|h| h.name()).collect();
                    bad(&names.join(", "))
                })?)
            }
            "restart" => {
                want(2)?;
                let graceful = match args[1] {
                    "graceful" => true,
                    "abrupt" => false,
                    _ => return Err(bad("restart mode is graceful or abrupt")),
                };
                Fault::Restart {
                    down: dur(0)?,
                    graceful,
                }
            }
            other => {
                return Err(bad(&format!(
                    "unknown fault {other:?}; known: {}",
                    Fault::NAMES.join(", ")
                )));
            }
        };
        entries.push((at, fault));
    }
    Ok(FaultPlan::new(entries))
}
