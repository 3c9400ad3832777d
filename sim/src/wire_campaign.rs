//! The campaign on the real wire: seeded runs of the driver's real WebSocket transport
//! (the upgrade, async-tungstenite's codec, the link's close handshake) over simulated
//! byte pipes ([`driven::run_driver_wire_with`](crate::driven::run_driver_wire_with)),
//! under a plan of byte-level faults, each run recorded by the flight recorder, replayed
//! into a timeline and judged by every invariant oracle.
//!
//! What a seed draws (from the seed alone, so it replays): a profile (`seed % 3`: raw,
//! hello-ack, gateway, as the value campaign picks), a workload (sends, requests, streams,
//! chat runs every few seconds), and up to [`MAX_FAULTS`] [`WireFault`]s at random
//! instants: close frames with any code of the registry (valid, unknown to the codec,
//! invalid) and reasons of up to 124 bytes, invalid UTF-8, fragments out of order, a
//! frame one byte over the
//! inbound limit, a frame stalled in the middle (briefly, or past the message timeout), a
//! truncated frame then a reset, a reset, a peer that stops writing, a peer that stops
//! reading and writing, a link gone half-open. Each seed also draws its network: a latency
//! of 1–80 ms and, on half the seeds, up to 40 ms of jitter.
//!
//! What a seed is judged by: the oracles over the replayed timeline (what the session
//! decided, call by call, as the driver made the calls), and the replay itself, which
//! must decide exactly as the recorded run did.

use std::fmt;
use std::io::Write;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tether_core::profiles::Raw;
use tether_core::profiles::{Gateway, GatewayOptions, GatewayRequest, HelloAck, HelloAckRequest};
use tether_core::{Config, DataFrame, Event, MAX_CLOSE_REASON, Utf8Bytes};
use tether_driver::SendProtocol;
use tether_driver::record::{Options, Recordable, Recorder, Redaction};

use crate::driven::{Tamper, WireSetup, run_driver_wire_with};
use crate::fault::{Fault, FaultPlan, Garbage};
use crate::oracle::{self, Violation};
use crate::pipe::PipeConfig;
use crate::scenario::{EDGE_CLOSE_CODES, Profile};
use crate::server::{FnServer, Server, ServerEvent};
use crate::servers::{GatewayServer, HelloAckServer};
use crate::timeline::{Entry, Record, Timeline};
use crate::trace::{self, Divergence};
use crate::wire::Wire;
use crate::wire_peer::WireFault;
use crate::workload::Command;
use crate::ws_frames::{opcode, server_frame};

/// The most faults one seed draws.
pub const MAX_FAULTS: usize = 6;

/// The inbound limit of the wire campaign's sessions: small, so that a frame one byte
/// over it costs little to write.
pub const MAX_INBOUND: usize = 64 << 10;

/// The message timeout of the wire campaign's sessions: short, so that a stall past it
/// fits a run.
pub const MESSAGE_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a judged run waits for the recorder's writer thread to finish the trace
/// after the session loop ended (real time: the writer is a thread, not a task of the
/// virtual runtime). Generous: it renders a short run in milliseconds.
const TRACE_WAIT: Duration = Duration::from_secs(30);

/// A wire campaign: `seeds` consecutive seeds from `start`, each `duration` long.
#[derive(Clone, Debug)]
pub struct WireCampaign {
    /// The first seed.
    pub start: u64,
    /// How many seeds.
    pub seeds: u64,
    /// Simulated time per seed.
    pub duration: Duration,
    /// Worker threads.
    pub threads: usize,
    /// Rewrites what the transport hands the session (off by default): a transport
    /// broken on purpose.
    pub tamper: Tamper,
}

impl Default for WireCampaign {
    fn default() -> Self {
        WireCampaign {
            start: 0,
            seeds: 200,
            duration: Duration::from_secs(600),
            threads: crate::campaign::default_threads(),
            tamper: Tamper::default(),
        }
    }
}

/// How one seed went.
#[derive(Clone, Debug)]
pub struct WireSeed {
    /// The seed.
    pub seed: u64,
    /// The profile it ran.
    pub profile: Profile,
    /// The faults it drew, at their instants.
    pub plan: Vec<(Duration, WireFault)>,
    /// The same faults as the oracles read them: each wire fault as the value-level fault
    /// with the same effect on the peer's health.
    pub judged: Vec<(Duration, Fault)>,
    /// What the run came to, as [`judge`] found it.
    pub verdict: WireVerdict,
}

impl WireSeed {
    /// Whether the seed broke an invariant, replayed differently or failed.
    #[must_use]
    pub fn failed(&self) -> bool {
        self.verdict.failed()
    }
}

/// What a wire campaign found.
#[derive(Clone, Debug, Default)]
pub struct WireReport {
    /// Seeds run.
    pub seeds: u64,
    /// Faults applied, by kind.
    pub faults: std::collections::BTreeMap<&'static str, u64>,
    /// Events delivered, over all seeds.
    pub events: u64,
    /// Connections opened, over all seeds.
    pub opens: u64,
    /// The seeds that failed, in seed order.
    pub failures: Vec<WireSeed>,
}

impl WireReport {
    /// Whether every seed passed.
    #[must_use]
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    fn add(&mut self, s: WireSeed) {
        self.seeds += 1;
        self.events += s.verdict.events as u64;
        self.opens += s.verdict.opens as u64;
        for (_, f) in &s.plan {
            *self.faults.entry(f.name()).or_default() += 1;
        }
        if s.failed() {
            self.failures.push(s);
        }
    }

    fn merge(&mut self, o: WireReport) {
        self.seeds += o.seeds;
        self.events += o.events;
        self.opens += o.opens;
        for (k, n) in o.faults {
            *self.faults.entry(k).or_default() += n;
        }
        self.failures.extend(o.failures);
    }
}

impl fmt::Display for WireReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "wire seeds           {} ({} failed)",
            self.seeds,
            self.failures.len()
        )?;
        writeln!(
            f,
            "wire traffic         {} events delivered, {} connections opened",
            self.events, self.opens
        )?;
        let faults: Vec<String> = self
            .faults
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        writeln!(f, "wire faults          {}", faults.join(", "))?;
        for s in &self.failures {
            writeln!(
                f,
                "FAILED seed {} ({}): replay with `tether-sim wire --start {} --seeds 1`",
                s.seed, s.profile, s.seed
            )?;
            for v in &s.verdict.violations {
                writeln!(f, "  oracle violated: {v}")?;
            }
            if let Some(d) = &s.verdict.divergence {
                writeln!(f, "  replay diverged: {d}")?;
            }
            if let Some(e) = &s.verdict.error {
                writeln!(f, "  error: {e}")?;
            }
        }
        Ok(())
    }
}

/// Runs the campaign.
#[must_use]
pub fn run(campaign: &WireCampaign) -> WireReport {
    let done = AtomicU64::new(0);
    let parts = crate::campaign::fold_parallel(
        campaign.seeds,
        campaign.threads,
        &done,
        WireReport::default,
        |acc, i| {
            let seed = campaign.start.wrapping_add(i);
            let tamper = campaign.tamper.clone();
            acc.add(run_seed_tampered(seed, config(), campaign.duration, tamper))
        },
    );
    let mut report = WireReport::default();
    for p in parts {
        report.merge(p);
    }
    report.failures.sort_by_key(|s| s.seed);
    report
}

/// The session configuration of the wire campaign: the scenarios' (the defaults, the first
/// connect retried) with a small inbound limit and message timeout.
#[must_use]
pub fn config() -> Config {
    let mut c = crate::scenario::config();
    c.max_inbound_frame = MAX_INBOUND;
    c.liveness.message_timeout = MESSAGE_TIMEOUT;
    c
}

/// Runs one seed of `duration` under the campaign's [`config`].
#[must_use]
pub fn run_seed(seed: u64, duration: Duration) -> WireSeed {
    run_seed_with(seed, config(), duration)
}

/// Fits any session configuration to the wire campaign's faults: the campaign's inbound
/// limit (a frame one byte over it is one of the faults) and message timeout (a stall past
/// it is another). The rest of `config` stays as it is.
#[must_use]
pub fn fit(mut config: Config) -> Config {
    config.max_inbound_frame = MAX_INBOUND;
    config.liveness.message_timeout = MESSAGE_TIMEOUT;
    config
}

/// Runs one seed of `duration` as [`run_seed`] does, under `config` (pass it through
/// [`fit`] first, so that the faults the seed draws mean what they should): what a property
/// test drawing configurations calls.
#[must_use]
pub fn run_seed_with(seed: u64, config: Config, duration: Duration) -> WireSeed {
    run_seed_tampered(seed, config, duration, Tamper::default())
}

/// Runs one seed as [`run_seed_with`] does, with the transport's items rewritten by
/// `tamper`: a transport broken on purpose, to show the campaign finds it.
#[must_use]
pub fn run_seed_tampered(
    seed: u64,
    config: Config,
    duration: Duration,
    tamper: Tamper,
) -> WireSeed {
    let profile = Profile::for_seed(seed);
    let mut rng = fastrand::Rng::with_seed(seed ^ 0x7769_7265);
    let drawn = draw_plan(&mut rng, duration);
    match profile {
        Profile::Raw => {
            let echo = FnServer::new(|ev, ctx| {
                if let ServerEvent::Frame(conn, Wire::Text(t)) = ev {
                    ctx.send(conn, Wire::Text(t));
                }
            });
            let commands = commands(&mut rng, duration, |rng| {
                let n = rng.u32(..);
                Command::Send(DataFrame::Text(Utf8Bytes::from(format!("m{n}"))))
            });
            one(
                seed,
                profile,
                config,
                tamper.clone(),
                || Raw,
                echo,
                drawn,
                commands,
                duration,
            )
        }
        Profile::HelloAck => {
            let hello = || HelloAck::new(|| json!({"type": "hello", "client": "sim"}));
            let mut server = HelloAckServer::default();
            server.heartbeat = Some(Duration::from_secs(15));
            let commands = commands(&mut rng, duration, |rng| {
                let request = match rng.u8(..4) {
                    0 => HelloAckRequest::new("stream.words", json!({})).streaming(),
                    1 => HelloAckRequest::new("fail", json!({})),
                    _ => HelloAckRequest::new("echo", json!({ "n": rng.u32(..) })),
                };
                Command::Request {
                    request,
                    timeout: None,
                }
            });
            one(
                seed, profile, config, tamper, hello, server, drawn, commands, duration,
            )
        }
        Profile::Gateway => {
            let gw = || Gateway::new(GatewayOptions::default());
            let commands = commands(&mut rng, duration, |rng| {
                let request = if rng.bool() {
                    GatewayRequest::chat_send("agent:main:main", "hi")
                } else {
                    GatewayRequest::chat_history("agent:main:main", Some(5))
                };
                Command::Request {
                    request,
                    timeout: None,
                }
            });
            one(
                seed,
                profile,
                config,
                tamper.clone(),
                gw,
                GatewayServer::default(),
                drawn,
                commands,
                duration,
            )
        }
    }
}

/// A command every 2–20 s.
fn commands<P: tether_core::Protocol>(
    rng: &mut fastrand::Rng,
    duration: Duration,
    mut make: impl FnMut(&mut fastrand::Rng) -> Command<P>,
) -> Vec<(Duration, Command<P>)> {
    let mut out = Vec::new();
    let mut at = Duration::from_secs(1);
    while at < duration {
        out.push((at, make(rng)));
        at += Duration::from_millis(rng.u64(2_000..=20_000));
    }
    out
}

/// A drawn plan: the wire faults the peer applies, and the same faults as the oracles
/// read them. The oracles know the value-level [`Fault`]s; each wire fault is recorded as
/// the one whose effect on the peer's health is the same: a close frame as
/// `ServerClose`, a refused frame as `Garbage`, a reset as `Drop`, a peer that stops
/// writing (or a frame stalled in the middle) as `HalfOpen` of the connection, a peer
/// that stops reading as `StopReading` of it.
#[derive(Default)]
struct Drawn {
    wire: Vec<(Duration, WireFault)>,
    judged: Vec<(Duration, Fault)>,
}

/// A plan of up to [`MAX_FAULTS`] wire faults in the run's first three quarters.
fn draw_plan(rng: &mut fastrand::Rng, duration: Duration) -> Drawn {
    let horizon = u64::try_from((duration * 3 / 4).as_millis()).unwrap_or(u64::MAX);
    let mut plan = Drawn::default();
    for _ in 0..rng.usize(0..=MAX_FAULTS) {
        let at = Duration::from_millis(rng.u64(0..horizon.max(1)));
        draw_fault(rng, at, &mut plan);
    }
    plan.wire.sort_by_key(|(at, _)| *at);
    plan.judged.sort_by_key(|(at, _)| *at);
    plan
}

/// One fault at `at`: one or two wire faults (a stall is the two halves of a frame), and
/// the fault the oracles read.
fn draw_fault(rng: &mut fastrand::Rng, at: Duration, plan: &mut Drawn) {
    let text = |payload: &[u8]| server_frame(opcode::TEXT, true, payload);
    let (wire, judged) = match rng.u8(..10) {
        0 | 1 => {
            let code = if rng.u8(..20) == 0 {
                [1008u16, 4001, 4003][rng.usize(..3)]
            } else if rng.bool() {
                EDGE_CLOSE_CODES[rng.usize(..EDGE_CLOSE_CODES.len())]
            } else {
                [1001u16, 1011, 1012, 1013, 4000, 4500][rng.usize(..6)]
            };
            let reason = match rng.u8(..6) {
                0 => "r".repeat(MAX_CLOSE_REASON),
                1 => "r".repeat(MAX_CLOSE_REASON + 1),
                _ => "scripted".to_owned(),
            };
            let wire = vec![(at, WireFault::close(code, &reason))];
            (wire, Fault::ServerClose(code, reason))
        }
        2 => {
            // Invalid UTF-8, or fragments out of order: a continuation with no message
            // to continue, or a new message inside an unfinished one. The codec refuses
            // each and the link fails the connection, as it does an oversized frame.
            let bytes = match rng.u8(..3) {
                0 => text(b"\xff\xfe\xfd"),
                1 => server_frame(opcode::CONTINUATION, true, b"{}"),
                _ => {
                    let mut b = server_frame(opcode::TEXT, false, b"{\"type\":").to_vec();
                    b.extend_from_slice(&text(b"{}"));
                    b.into()
                }
            };
            (
                vec![(at, WireFault::Raw(bytes))],
                Fault::Garbage(Garbage::InvalidUtf8),
            )
        }
        3 => (
            vec![(at, WireFault::Raw(text(&vec![b'x'; MAX_INBOUND + 1])))],
            Fault::Garbage(Garbage::Oversized),
        ),
        4 => {
            // A frame stalled in the middle: briefly, or past the message timeout.
            let frame = text(br#"{"type":"note","stalled":true}"#);
            let cut = rng.usize(1..frame.len());
            let stall = if rng.bool() {
                Duration::from_millis(rng.u64(10..=2_000))
            } else {
                MESSAGE_TIMEOUT + Duration::from_millis(rng.u64(1..=10_000))
            };
            let wire = vec![
                (at, WireFault::Raw(frame.slice(..cut))),
                (at + stall, WireFault::Raw(frame.slice(cut..))),
            ];
            // If the stall outlived its connection (the message timeout failed it), the
            // rest lands on the next one as a broken frame: that connection is sick too.
            plan.judged
                .push((at + stall, Fault::HalfOpen(Duration::ZERO)));
            (wire, Fault::HalfOpen(stall))
        }
        5 => {
            // Truncation, then a reset.
            let frame = text(br#"{"type":"note","truncated":true}"#);
            let cut = rng.usize(1..frame.len());
            let wire = vec![
                (at, WireFault::Raw(frame.slice(..cut))),
                (at, WireFault::Reset),
            ];
            (wire, Fault::Drop)
        }
        6 | 7 => (vec![(at, WireFault::Reset)], Fault::Drop),
        8 => {
            // A peer that stops writing, or a link that goes half-open under both ends.
            let fault = if rng.bool() {
                WireFault::Mute
            } else {
                WireFault::HalfOpen
            };
            (vec![(at, fault)], Fault::HalfOpen(Duration::ZERO))
        }
        _ => (
            vec![(at, WireFault::Deaf)],
            Fault::StopReading(Duration::ZERO),
        ),
    };
    plan.wire.extend(wire);
    plan.judged.push((at, judged));
}

/// Adds the faults the peer was put through to a replayed timeline, each before the first
/// record at or after its instant (the trace knows only the session's side).
fn with_faults<P: tether_core::Protocol>(
    mut tl: Timeline<P>,
    faults: &[(Duration, Fault)],
    duration: Duration,
) -> Timeline<P> {
    // Every fault is known now: the oracles that judge the peer's health may.
    tl.heal_at = Some(duration);
    let mut records = Vec::with_capacity(tl.records.len() + faults.len());
    let mut faults = faults.iter().peekable();
    for r in tl.records.drain(..) {
        while let Some((at, f)) = faults.next_if(|(at, _)| *at <= r.at) {
            records.push(Record {
                at: *at,
                entry: Entry::Fault(f.clone()),
            });
        }
        records.push(r);
    }
    tl.records = records;
    tl
}

/// The seed's network: a one-way latency of 1–80 ms, and on half the seeds up to 40 ms of
/// jitter per write (order kept, as TCP keeps it). Drawn from its own stream of the seed,
/// so the fault plan and workload a seed draws do not change with it.
#[must_use]
pub fn pipe_for(seed: u64) -> PipeConfig {
    let mut rng = fastrand::Rng::with_seed(seed ^ 0x7069_7065);
    PipeConfig {
        latency: Duration::from_millis(rng.u64(1..=80)),
        jitter: if rng.bool() {
            Duration::from_millis(rng.u64(1..=40))
        } else {
            Duration::ZERO
        },
        seed,
        ..PipeConfig::default()
    }
}

/// A shared buffer the recorder writes the trace into.
#[derive(Clone, Default)]
struct Trace(Arc<Mutex<Vec<u8>>>);

impl Write for Trace {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[allow(clippy::too_many_arguments)] // One seed's parts, as `run_seed_with` draws them.
fn one<P, S>(
    seed: u64,
    profile: Profile,
    config: Config,
    tamper: Tamper,
    protocol: impl Fn() -> P,
    server: S,
    plan: Drawn,
    commands: Vec<(Duration, Command<P>)>,
    duration: Duration,
) -> WireSeed
where
    P: SendProtocol + Recordable,
    S: Server + Send + 'static,
{
    let setup = WireSetup {
        pipe: pipe_for(seed),
        faults: plan.wire.clone(),
        plan: FaultPlan::none(),
        tamper,
    };
    let verdict = judge(
        config,
        protocol,
        server,
        seed,
        setup,
        &plan.judged,
        commands,
        duration,
    );
    WireSeed {
        seed,
        profile,
        plan: plan.wire,
        judged: plan.judged,
        verdict,
    }
}

/// What [`judge`] found of one wire run.
#[derive(Clone, Debug, Default)]
pub struct WireVerdict {
    /// Events the session delivered.
    pub events: usize,
    /// Connections opened.
    pub opens: usize,
    /// Broken invariants (the first per oracle), over the replayed timeline.
    pub violations: Vec<Violation>,
    /// Where the replay decided differently from the recorded run, if it did.
    pub divergence: Option<Divergence>,
    /// The run or its trace failed outright.
    pub error: Option<String>,
}

impl WireVerdict {
    /// Whether the run broke an invariant, replayed differently or failed.
    #[must_use]
    pub fn failed(&self) -> bool {
        !self.violations.is_empty() || self.divergence.is_some() || self.error.is_some()
    }
}

/// Runs `protocol` on the wire against `server` under `setup` (byte-level faults, a
/// value-level plan, or both) with the flight recorder on, replays the trace, and judges
/// the replayed timeline by every oracle with `judged` recorded as the faults the peer
/// applied (`Entry::Fault`, each before the first record at or after its instant) and
/// the heal time at `duration`: every fault is known, so the oracles that judge the
/// peer's health may. Pass a value plan's own entries as `judged`; a byte-level fault
/// as the value fault with the same effect on the peer's health (as the campaign's
/// draws do).
#[allow(clippy::too_many_arguments)] // A run's parts, as `run_driver_wire_with` takes them.
pub fn judge<P, S>(
    config: Config,
    protocol: impl Fn() -> P,
    server: S,
    seed: u64,
    setup: WireSetup,
    judged: &[(Duration, Fault)],
    commands: Vec<(Duration, Command<P>)>,
    duration: Duration,
) -> WireVerdict
where
    P: SendProtocol + Recordable,
    S: Server + Send + 'static,
{
    let trace = Trace::default();
    // Unbounded: a virtual run is short and records faster than any writer, and a judged
    // run must record every call.
    let recorder = Recorder::to_writer(trace.clone())
        .redaction(Redaction::Keep)
        .with_secrets(true)
        .channel_bytes(usize::MAX);
    let progress = recorder.progress();
    let mut report = WireVerdict::default();
    let run = run_driver_wire_with(
        config,
        protocol(),
        server,
        seed,
        setup,
        commands,
        duration,
        Options::new().record(recorder),
    );
    match run {
        Ok(run) => {
            report.events = run.events.len();
            report.opens = run
                .events
                .iter()
                .filter(|(_, e)| matches!(e, Event::Opened { .. }))
                .count();
        }
        Err(e) => {
            report.error = Some(format!("the run: {e}"));
            return report;
        }
    }
    // The recorder's writer finishes the trace on its own thread once the loop ended.
    if !progress.wait(TRACE_WAIT) {
        report.error = Some(format!("the trace was not finished within {TRACE_WAIT:?}"));
        return report;
    }
    let bytes = std::mem::take(
        &mut *trace
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    match trace::replay_timeline(bytes.as_slice(), protocol()) {
        Ok((replayed, timeline)) => {
            report.divergence = replayed.divergence;
            if !replayed.complete {
                report.error = Some("the trace has no end line".to_owned());
            }
            // Judged with the faults the peer applied, which the trace cannot know.
            report.violations = oracle::check(&with_faults(timeline, judged, duration));
        }
        Err(e) => report.error = Some(format!("the trace: {e}")),
    }
    report
}
