//! [proptest](mod@proptest) strategies for fault plans, session configurations, run lengths and
//! workloads, so that property tests (this project's, and users' tests of their own
//! protocols) draw whole simulated runs and shrink a failure to a minimal one.
//!
//! The strategies compose: draw a [`Config`] from [`config`], a [`FaultPlan`] from
//! [`fault_plan`], a [`WorkloadPlan`] from [`workload`] (or [`send_workload`] for
//! protocols without requests), a seed from `any::<u64>()`, and hand them to a
//! [`World`](crate::World):
//!
//! ```
//! use std::time::Duration;
//! use proptest::prelude::*;
//! use proptest::test_runner::{Config as Cases, TestRunner};
//! use tether_core::profiles::HelloAck;
//! use tether_sim::{oracle, servers::HelloAckServer, strategy, RunConfig, World};
//!
//! let minutes = Duration::from_secs(600);
//! let case = (
//!     any::<u64>(),
//!     strategy::config(),
//!     strategy::fault_plan(minutes / 2, 6),
//!     strategy::workload(10, Duration::from_secs(60)),
//! );
//! TestRunner::new(Cases::with_cases(2))
//!     .run(&case, |(seed, config, plan, work)| {
//!         let hello = HelloAck::new(|| serde_json::json!({"type": "hello"}));
//!         let run = World::new(config, hello, HelloAckServer::default(), seed)
//!             .expect("strategy::config() is valid")
//!             .plan(plan.clone())
//!             .workload(work)
//!             .run(RunConfig::lasting(minutes));
//!         let broken = oracle::check(&run.timeline);
//!         prop_assert!(broken.is_empty(), "seed {seed}, plan {plan}: {broken:?}");
//!         Ok(())
//!     })
//!     .unwrap();
//! ```
//!
//! Every strategy shrinks toward a smaller case: fewer faults, earlier and shorter
//! faults, fewer commands and smaller gaps, and each configuration value toward the low
//! end of its range.

use std::fmt;
use std::ops::RangeInclusive;
use std::time::Duration;

use proptest::prelude::*;
use serde_json::json;
use tether_core::profiles::{Gateway, GatewayRequest, HelloAck, HelloAckRequest, Raw};
use tether_core::{
    Config, DataFrame, Jitter, MAX_CLOSE_REASON, OfflinePolicy, Overflow, Protocol, QueueConfig,
    Utf8Bytes,
};

use crate::fault::{Fault, FaultPlan, Garbage, Hostile};
use crate::net::NetConfig;
use crate::workload::{Command, Workload};
use crate::world::RunConfig;

// ---- small helpers --------------------------------------------------------------------------

fn secs(range: RangeInclusive<u64>) -> impl Strategy<Value = Duration> + Clone {
    range.prop_map(Duration::from_secs)
}

fn millis(range: RangeInclusive<u64>) -> impl Strategy<Value = Duration> + Clone {
    range.prop_map(Duration::from_millis)
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

// ---- faults ---------------------------------------------------------------------------------

/// Close codes a server may send that the default policy retries, with the fatal ones
/// (which end a session) drawn once in `1 + nonfatal_weight` times.
fn close_code(nonfatal_weight: u32) -> impl Strategy<Value = u16> + Clone {
    prop_oneof![
        nonfatal_weight => prop::sample::select(vec![1001u16, 1011, 1012, 1013, 4000, 4500]),
        nonfatal_weight / 2 => prop::sample::select(crate::scenario::EDGE_CLOSE_CODES.to_vec()),
        1 => prop::sample::select(vec![1008u16, 4001, 4003]),
    ]
}

/// A close reason: mostly short, sometimes the longest a close frame holds (123 bytes) or
/// one byte more, which the link refuses.
fn close_reason() -> impl Strategy<Value = String> + Clone {
    prop_oneof![
        8 => Just("scripted".to_owned()),
        1 => Just("r".repeat(MAX_CLOSE_REASON)),
        1 => Just("r".repeat(MAX_CLOSE_REASON + 1)),
    ]
}

/// HTTP statuses an upgrade may be answered with, fatal ones (401, 403) rarely.
fn upgrade_status(nonfatal_weight: u32) -> impl Strategy<Value = u16> + Clone {
    prop_oneof![
        nonfatal_weight => prop::sample::select(vec![429u16, 500, 502, 503]),
        1 => prop::sample::select(vec![401u16, 403]),
    ]
}

/// Any [`Garbage`] kind.
pub fn garbage() -> impl Strategy<Value = Garbage> + Clone {
    prop::sample::select(vec![
        Garbage::Malformed,
        Garbage::Oversized,
        Garbage::InvalidUtf8,
        Garbage::Binary,
    ])
}

/// One fault of the kind `name` (one of [`Fault::NAMES`]), with parameters in the same
/// ranges as [`FaultMix`](crate::scenario::FaultMix) draws them. Fatal close codes and
/// upgrade statuses come up once in twenty draws.
///
/// # Panics
///
/// On a name that is not in [`Fault::NAMES`].
pub fn fault_of(name: &str) -> BoxedStrategy<Fault> {
    const NONFATAL: u32 = 19;
    match name {
        "refuse" => secs(1..=60).prop_map(Fault::RefuseConnects).boxed(),
        "blackhole" => secs(5..=60).prop_map(Fault::BlackholeConnects).boxed(),
        "slow-connect" => (millis(100..=8000), secs(10..=120))
            .prop_map(|(extra, lasts)| Fault::SlowConnects { extra, lasts })
            .boxed(),
        "reject-upgrade" => (upgrade_status(NONFATAL), secs(1..=60))
            .prop_map(|(status, lasts)| Fault::RejectUpgrade { status, lasts })
            .boxed(),
        "drop" => Just(Fault::Drop).boxed(),
        "server-close" => (close_code(NONFATAL), close_reason())
            .prop_map(|(code, reason)| Fault::ServerClose(code, reason))
            .boxed(),
        "half-open" => secs(10..=300).prop_map(Fault::HalfOpen).boxed(),
        "stop-reading" => secs(5..=120).prop_map(Fault::StopReading).boxed(),
        "latency" => (millis(50..=2000), millis(0..=1000), secs(10..=300))
            .prop_map(|(base, jitter, lasts)| Fault::Latency {
                base,
                jitter,
                lasts,
            })
            .boxed(),
        "duplicate" => secs(10..=300).prop_map(Fault::Duplicate).boxed(),
        "reorder" => (millis(5..=200), secs(10..=300))
            .prop_map(|(window, lasts)| Fault::Reorder { window, lasts })
            .boxed(),
        "garbage" => garbage().prop_map(Fault::Garbage).boxed(),
        "never-ack" => secs(5..=60).prop_map(Fault::NeverAck).boxed(),
        "double-ack" => secs(5..=60).prop_map(Fault::DoubleAck).boxed(),
        "unknown-response" => Just(Fault::UnknownResponse).boxed(),
        "hostile" => prop::sample::select(Hostile::ALL.to_vec())
            .prop_map(Fault::Hostile)
            .boxed(),
        "restart" => (secs(1..=30), any::<bool>())
            .prop_map(|(down, graceful)| Fault::Restart { down, graceful })
            .boxed(),
        "accept-then-close" => secs(5..=60).prop_map(Fault::AcceptThenClose).boxed(),
        "clock-jump" => secs(20..=600).prop_map(Fault::ClockJump).boxed(),
        other => panic!(
            "unknown fault {other:?}; known: {}",
            Fault::NAMES.join(", ")
        ),
    }
}

/// Any fault, every kind of [`Fault::NAMES`] equally likely.
pub fn fault() -> impl Strategy<Value = Fault> + Clone {
    faults_of(Fault::NAMES)
}

/// Faults of these kinds only (names from [`Fault::NAMES`]), equally likely.
///
/// # Panics
///
/// On an empty list or an unknown name.
pub fn faults_of(names: &[&str]) -> impl Strategy<Value = Fault> + Clone {
    assert!(!names.is_empty(), "faults_of needs at least one fault kind");
    let arms: Vec<(u32, BoxedStrategy<Fault>)> = names.iter().map(|n| (1, fault_of(n))).collect();
    prop::strategy::Union::new_weighted(arms)
}

/// A plan of up to `max_faults` faults of any kind at times in `[0, horizon)`. Use the
/// run's heal time as the horizon: the world drops what the plan holds after it.
pub fn fault_plan(horizon: Duration, max_faults: usize) -> impl Strategy<Value = FaultPlan> {
    fault_plan_of(fault(), horizon, max_faults)
}

/// A plan of up to `max_faults` faults drawn from `faults`, at times in `[0, horizon)`.
/// Shrinks by dropping faults, moving them earlier and simplifying each.
pub fn fault_plan_of(
    faults: impl Strategy<Value = Fault>,
    horizon: Duration,
    max_faults: usize,
) -> impl Strategy<Value = FaultPlan> {
    let last = nanos(horizon).saturating_sub(1) / 1_000_000;
    let at = (0..=last).prop_map(Duration::from_millis);
    prop::collection::vec((at, faults), 0..=max_faults).prop_map(FaultPlan::new)
}

// ---- runs -----------------------------------------------------------------------------------

/// A network: one-way latency 1–200 ms, jitter 0–100 ms, the rest default.
pub fn net_config() -> impl Strategy<Value = NetConfig> {
    (millis(1..=200), millis(0..=100)).prop_map(|(latency, jitter)| NetConfig {
        latency,
        jitter,
        ..NetConfig::default()
    })
}

/// A run lasting a whole number of seconds in `duration` (healing at the default time),
/// over the default network.
pub fn run_config(duration: RangeInclusive<Duration>) -> impl Strategy<Value = RunConfig> {
    let (lo, hi) = (duration.start().as_secs(), duration.end().as_secs());
    secs(lo..=hi.max(lo)).prop_map(RunConfig::lasting)
}

// ---- session configurations -----------------------------------------------------------------

/// Ping interval and stale threshold: no pings and a lone threshold, or a ping every
/// 1–60 s and a threshold 1–90 s longer (so [`Config::validate`] holds).
fn liveness() -> impl Strategy<Value = (Option<Duration>, Duration)> {
    prop_oneof![
        4 => (1u64..=60, 1u64..=90).prop_map(|(ping, extra)| {
            (Some(Duration::from_secs(ping)), Duration::from_secs(ping + extra))
        }),
        1 => secs(5..=120).prop_map(|stale| (None, stale)),
    ]
}

fn offline() -> impl Strategy<Value = OfflinePolicy> {
    let overflow = prop_oneof![Just(Overflow::RejectNew), Just(Overflow::DropOldest)];
    let ttl = prop::option::weighted(0.7, secs(1..=120));
    // Sometimes a byte bound small enough that a few messages reach it.
    let max_bytes = prop_oneof![3 => Just(QueueConfig::default().max_bytes), 1 => 16usize..=512];
    let queue = (1usize..=300, max_bytes, overflow, ttl).prop_map(
        |(max_messages, max_bytes, overflow, ttl)| {
            OfflinePolicy::Queue(QueueConfig {
                max_messages,
                max_bytes,
                overflow,
                ttl,
            })
        },
    );
    prop_oneof![3 => queue, 1 => Just(OfflinePolicy::Reject)]
}

fn jitter() -> impl Strategy<Value = Jitter> {
    prop_oneof![Just(Jitter::Full), Just(Jitter::Equal), Just(Jitter::None)]
}

/// Session configurations that [`Config::validate`] accepts: ping interval and stale
/// threshold pairs (or no pings), connect and handshake timeouts, send deadlines,
/// request timeouts, offline policy (reject, or a queue of 1–300 frames and sometimes
/// only 16–512 bytes, either overflowing policy), in-flight, pending-write, remembered-pair
/// and stream-text bounds (sometimes tiny, to reach them), an attempt limit (mostly none), jitter kind and stable period, an idle timeout
/// (rarely), and whether the first connect retries (mostly yes, so a plan that starts
/// with the server down does not end the run at once).
pub fn config() -> impl Strategy<Value = Config> {
    let timeouts = (
        liveness(),
        secs(1..=20),         // connect
        secs(1..=10),         // handshake
        secs(2..=30),         // send deadline
        1u32..=9,             // slow-write warning, in tenths of the send deadline
        secs(1..=60),         // request timeout
        millis(100..=10_000), // close timeout
    );
    let backoff = (
        prop::option::weighted(0.25, 1u32..=20),
        jitter(),
        secs(1..=30),
        prop::bool::weighted(0.8),
        prop::option::weighted(0.1, secs(30..=600)),
    );
    let bounds = (
        offline(),
        prop_oneof![3 => Just(1024usize), 1 => 1usize..=8],
        prop_oneof![3 => Just(4096usize), 1 => 2usize..=32],
        prop_oneof![3 => Just(256usize), 1 => 1usize..=4],
        // Remembered (stream, seq) pairs and rebuilt stream text: tiny now and then, so
        // runs reach the bounds (forgotten pairs, `TextTooLong`).
        prop_oneof![3 => Just(4096usize), 1 => 1usize..=16],
        prop_oneof![3 => Just(1usize << 20), 1 => 8usize..=256],
    );
    (timeouts, backoff, bounds).prop_map(
        |(
            ((ping, stale), connect, handshake, deadline, warn, request, close),
            (max_attempts, jitter, stable_after, retry_first_connect, idle_timeout),
            (offline, in_flight, pending_writes, streams, max_seen, max_text),
        )| {
            let mut c = Config {
                connect_timeout: connect,
                handshake_timeout: handshake,
                retry_first_connect,
                send_deadline: deadline,
                slow_write_warning: deadline * warn / 10,
                request_timeout: request,
                max_in_flight_requests: in_flight,
                max_pending_writes: pending_writes,
                offline,
                close_timeout: close,
                idle_timeout,
                ..Config::default()
            };
            c.liveness.ping_interval = ping;
            c.liveness.stale_after = stale;
            c.backoff.max_attempts = max_attempts;
            c.backoff.jitter = jitter;
            c.backoff.stable_after = stable_after;
            c.streams.max_streams = streams;
            c.streams.max_seen = max_seen;
            c.streams.max_text = max_text;
            c
        },
    )
}

// ---- workloads ------------------------------------------------------------------------------

/// One user command, independent of the protocol: [`StepCommand`] turns it into the
/// protocol's [`Command`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// `send` an application message numbered `n`.
    Send(u32),
    /// A plain request numbered `n`; `fail` asks the server to answer with an error.
    Request {
        /// Its number (in the payload, so requests differ).
        n: u32,
        /// Ask the scripted server for an error response.
        fail: bool,
        /// Its own timeout, or the configured default.
        timeout: Option<Duration>,
    },
    /// A request that starts a stream.
    Stream {
        /// Its own timeout, or the configured default.
        timeout: Option<Duration>,
    },
    /// `close` (normal closure). The session ends; later steps are refused.
    Close,
}

/// How a protocol carries out a [`Step`]: implemented for the built-in profiles. For your
/// own protocol, [`WorkloadPlan::commands`] takes a closure instead (implementing this
/// trait in an integration test breaks the orphan rule).
pub trait StepCommand: Protocol {
    /// The command for `step`, or `None` to skip it (a protocol without requests).
    fn command(step: &Step) -> Option<Command<Self>>
    where
        Self: Sized;
}

impl StepCommand for Raw {
    fn command(step: &Step) -> Option<Command<Raw>> {
        match step {
            Step::Send(n) => Some(Command::Send(DataFrame::Text(Utf8Bytes::from_string(
                format!("m{n}"),
            )))),
            Step::Close => Some(Command::Close),
            Step::Request { .. } | Step::Stream { .. } => None,
        }
    }
}

impl StepCommand for HelloAck {
    fn command(step: &Step) -> Option<Command<HelloAck>> {
        Some(match step {
            Step::Send(n) => Command::Send(json!({"type": "note", "n": n})),
            Step::Request { n, fail, timeout } => Command::Request {
                request: HelloAckRequest::new(if *fail { "fail" } else { "echo" }, json!({"n": n})),
                timeout: *timeout,
            },
            Step::Stream { timeout } => Command::Request {
                request: HelloAckRequest::new("stream.words", json!({})).streaming(),
                timeout: *timeout,
            },
            Step::Close => Command::Close,
        })
    }
}

impl StepCommand for Gateway {
    fn command(step: &Step) -> Option<Command<Gateway>> {
        Some(match step {
            // The gateway ignores frames that are not requests.
            Step::Send(n) => Command::Send(json!({"type": "note", "n": n})),
            Step::Request { n, fail, timeout } => Command::Request {
                request: if *fail {
                    GatewayRequest::new("fail", None)
                } else {
                    GatewayRequest::chat_history("agent:main:main", Some(*n % 50 + 1))
                },
                timeout: *timeout,
            },
            Step::Stream { timeout } => Command::Request {
                request: GatewayRequest::chat_send("agent:main:main", "hello"),
                timeout: *timeout,
            },
            Step::Close => Command::Close,
        })
    }
}

/// A fixed list of steps, each after a gap from the previous one (the first from the
/// start of the run): a [`Workload`] that proptest shrinks step by step.
///
/// ```
/// use std::time::Duration;
/// use tether_sim::strategy::{Step, WorkloadPlan};
/// let work = WorkloadPlan::new(vec![
///     (Duration::from_secs(1), Step::Send(1)),
///     (Duration::from_secs(2), Step::Stream { timeout: None }),
/// ]);
/// assert_eq!(work.to_string(), "+1.000s Send(1); +2.000s Stream { timeout: None }");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkloadPlan {
    /// The steps, each with the gap before it.
    pub steps: Vec<(Duration, Step)>,
    next: usize,
}

impl WorkloadPlan {
    /// A plan of these steps.
    pub fn new(steps: Vec<(Duration, Step)>) -> Self {
        WorkloadPlan { steps, next: 0 }
    }
}

impl fmt::Display for WorkloadPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.steps.is_empty() {
            return f.write_str("(no commands)");
        }
        for (i, (gap, step)) in self.steps.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "+{:.3}s {step:?}", gap.as_secs_f64())?;
        }
        Ok(())
    }
}

impl WorkloadPlan {
    /// The plan as a workload of any protocol, each step made a command by `command`
    /// (`None` skips the step; its gap still counts): no trait to implement, so it works
    /// for your protocol in your own integration tests.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tether_core::profiles::Raw;
    /// use tether_core::{DataFrame, Utf8Bytes};
    /// use tether_sim::strategy::{Step, WorkloadPlan};
    /// use tether_sim::{Command, Workload};
    /// let plan = WorkloadPlan::new(vec![(Duration::from_secs(1), Step::Send(7))]);
    /// let mut work = plan.commands(|step| match step {
    ///     Step::Send(n) => Some(Command::<Raw>::Send(DataFrame::Text(Utf8Bytes::from_string(
    ///         format!("m{n}"),
    ///     )))),
    ///     _ => None,
    /// });
    /// let mut rng = fastrand::Rng::with_seed(0);
    /// assert!(work.next(Duration::ZERO, &mut rng).is_some());
    /// ```
    pub fn commands<P, F>(self, command: F) -> StepsAs<F>
    where
        P: Protocol,
        F: FnMut(&Step) -> Option<Command<P>>,
    {
        StepsAs {
            plan: self,
            command,
        }
    }

    /// The plan's commands for protocol `P` at their instants (each step's gap after the
    /// one before, as the world issues them), up to `until`: what a driven or wire-mode
    /// run takes instead of a workload.
    pub fn schedule<P: StepCommand>(&self, until: Duration) -> Vec<(Duration, Command<P>)> {
        let mut plan = WorkloadPlan::new(self.steps.clone());
        let mut at = Duration::ZERO;
        let mut out = Vec::new();
        while let Some((gap, command)) = plan.next_with(P::command) {
            at += gap;
            if at > until {
                break;
            }
            out.push((at, command));
        }
        out
    }

    /// The next step `command` makes a command of, with the gaps of the skipped ones.
    fn next_with<P: Protocol>(
        &mut self,
        mut command: impl FnMut(&Step) -> Option<Command<P>>,
    ) -> Option<(Duration, Command<P>)> {
        let mut gap = Duration::ZERO;
        while let Some((g, step)) = self.steps.get(self.next) {
            self.next += 1;
            gap += *g;
            if let Some(command) = command(step) {
                return Some((gap, command));
            }
        }
        None
    }
}

impl<P: StepCommand> Workload<P> for WorkloadPlan {
    fn next(&mut self, _now: Duration, _rng: &mut fastrand::Rng) -> Option<(Duration, Command<P>)> {
        self.next_with(P::command)
    }
}

/// A [`WorkloadPlan`] whose steps a closure turns into commands
/// ([`WorkloadPlan::commands`]).
pub struct StepsAs<F> {
    plan: WorkloadPlan,
    command: F,
}

impl<P: Protocol, F: FnMut(&Step) -> Option<Command<P>>> Workload<P> for StepsAs<F> {
    fn next(&mut self, _now: Duration, _rng: &mut fastrand::Rng) -> Option<(Duration, Command<P>)> {
        self.plan.next_with(&mut self.command)
    }
}

fn request_timeout() -> impl Strategy<Value = Option<Duration>> + Clone {
    prop::option::weighted(0.3, secs(1..=60))
}

fn step(requests: bool) -> BoxedStrategy<Step> {
    let send = any::<u32>().prop_map(Step::Send);
    if !requests {
        return send.boxed();
    }
    let request = (any::<u32>(), prop::bool::weighted(0.15), request_timeout())
        .prop_map(|(n, fail, timeout)| Step::Request { n, fail, timeout });
    let stream = request_timeout().prop_map(|timeout| Step::Stream { timeout });
    prop_oneof![4 => send, 4 => request, 3 => stream].boxed()
}

fn steps(
    requests: bool,
    max_steps: usize,
    max_gap: Duration,
) -> impl Strategy<Value = WorkloadPlan> {
    let gap = (0..=nanos(max_gap) / 1_000_000).prop_map(Duration::from_millis);
    let body = prop::collection::vec((gap.clone(), step(requests)), 0..=max_steps);
    // Sometimes the application closes the session itself, after its last command.
    let close = prop::option::weighted(0.2, gap);
    (body, close).prop_map(|(mut steps, close)| {
        if let Some(gap) = close {
            steps.push((gap, Step::Close));
        }
        WorkloadPlan::new(steps)
    })
}

/// Up to `max_steps` sends, requests (some asking for an error, some with their own
/// timeout) and streaming requests, `max_gap` apart at most, sometimes ending with a
/// `close`.
pub fn workload(max_steps: usize, max_gap: Duration) -> impl Strategy<Value = WorkloadPlan> {
    steps(true, max_steps, max_gap)
}

/// Like [`workload`], with sends only: for protocols without requests ([`Raw`]).
pub fn send_workload(max_steps: usize, max_gap: Duration) -> impl Strategy<Value = WorkloadPlan> {
    steps(false, max_steps, max_gap)
}

// ---- replay ---------------------------------------------------------------------------------

fn duration_code(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("Duration::from_secs({})", d.as_secs())
    } else if d.subsec_nanos().is_multiple_of(1_000_000) {
        format!("Duration::from_millis({})", d.as_millis())
    } else {
        format!("Duration::from_nanos({})", d.as_nanos())
    }
}

fn fault_code(fault: &Fault) -> String {
    let d = |d: &Duration| duration_code(*d);
    match fault {
        Fault::RefuseConnects(x) => format!("Fault::RefuseConnects({})", d(x)),
        Fault::BlackholeConnects(x) => format!("Fault::BlackholeConnects({})", d(x)),
        Fault::SlowConnects { extra, lasts } => format!(
            "Fault::SlowConnects {{ extra: {}, lasts: {} }}",
            d(extra),
            d(lasts)
        ),
        Fault::RejectUpgrade { status, lasts } => format!(
            "Fault::RejectUpgrade {{ status: {status}, lasts: {} }}",
            d(lasts)
        ),
        Fault::Drop => "Fault::Drop".to_owned(),
        Fault::ServerClose(code, reason) => {
            format!("Fault::ServerClose({code}, {reason:?}.into())")
        }
        Fault::HalfOpen(x) => format!("Fault::HalfOpen({})", d(x)),
        Fault::StopReading(x) => format!("Fault::StopReading({})", d(x)),
        Fault::Latency {
            base,
            jitter,
            lasts,
        } => format!(
            "Fault::Latency {{ base: {}, jitter: {}, lasts: {} }}",
            d(base),
            d(jitter),
            d(lasts)
        ),
        Fault::Duplicate(x) => format!("Fault::Duplicate({})", d(x)),
        Fault::Reorder { window, lasts } => format!(
            "Fault::Reorder {{ window: {}, lasts: {} }}",
            d(window),
            d(lasts)
        ),
        Fault::Garbage(g) => format!("Fault::Garbage(Garbage::{g:?})"),
        Fault::Hostile(h) => format!("Fault::Hostile(Hostile::{h:?})"),
        Fault::NeverAck(x) => format!("Fault::NeverAck({})", d(x)),
        Fault::DoubleAck(x) => format!("Fault::DoubleAck({})", d(x)),
        Fault::UnknownResponse => "Fault::UnknownResponse".to_owned(),
        Fault::Restart { down, graceful } => format!(
            "Fault::Restart {{ down: {}, graceful: {graceful} }}",
            d(down)
        ),
        Fault::AcceptThenClose(x) => format!("Fault::AcceptThenClose({})", d(x)),
        Fault::ClockJump(x) => format!("Fault::ClockJump({})", d(x)),
    }
}

/// The plan as Rust source (`FaultPlan::new(vec![…])`), to paste into a regression test.
///
/// ```
/// use std::time::Duration;
/// use tether_sim::{strategy, Fault, FaultPlan};
/// let plan = FaultPlan::new(vec![(Duration::from_millis(1500), Fault::HalfOpen(Duration::from_secs(30)))]);
/// assert_eq!(
///     strategy::plan_code(&plan),
///     "FaultPlan::new(vec![\n    (Duration::from_millis(1500), Fault::HalfOpen(Duration::from_secs(30))),\n])"
/// );
/// ```
pub fn plan_code(plan: &FaultPlan) -> String {
    let mut s = String::from("FaultPlan::new(vec![\n");
    for (at, fault) in &plan.entries {
        s.push_str(&format!(
            "    ({}, {}),\n",
            duration_code(*at),
            fault_code(fault)
        ));
    }
    s.push_str("])");
    s
}

/// The workload as Rust source (`WorkloadPlan::new(vec![…])`).
pub fn workload_code(work: &WorkloadPlan) -> String {
    let mut s = String::from("WorkloadPlan::new(vec![\n");
    for (gap, step) in &work.steps {
        let step = match step {
            Step::Send(n) => format!("Step::Send({n})"),
            Step::Request { n, fail, timeout } => format!(
                "Step::Request {{ n: {n}, fail: {fail}, timeout: {} }}",
                option_code(*timeout)
            ),
            Step::Stream { timeout } => {
                format!("Step::Stream {{ timeout: {} }}", option_code(*timeout))
            }
            Step::Close => "Step::Close".to_owned(),
        };
        s.push_str(&format!("    ({}, {step}),\n", duration_code(*gap)));
    }
    s.push_str("])");
    s
}

fn option_code(d: Option<Duration>) -> String {
    d.map_or_else(
        || "None".to_owned(),
        |d| format!("Some({})", duration_code(d)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    #[test]
    fn every_fault_kind_is_drawn_with_its_own_name() {
        let mut runner = TestRunner::deterministic();
        for name in Fault::NAMES {
            for _ in 0..20 {
                let f = fault_of(name).new_tree(&mut runner).unwrap().current();
                assert_eq!(f.name(), *name);
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..2000 {
            seen.insert(fault().new_tree(&mut runner).unwrap().current().name());
        }
        assert_eq!(seen.len(), Fault::NAMES.len());
    }

    #[test]
    fn fatal_codes_are_rare() {
        let mut runner = TestRunner::deterministic();
        let fatal = (0..2000)
            .filter(|_| {
                let code = close_code(19).new_tree(&mut runner).unwrap().current();
                [1008, 4001, 4003].contains(&code)
            })
            .count();
        assert!((40..200).contains(&fatal), "{fatal} fatal codes in 2000");
    }

    proptest! {
        #[test]
        fn configs_are_valid(c in config()) {
            prop_assert_eq!(c.validate(), Ok(()));
        }

        #[test]
        fn plans_stay_within_the_horizon_and_in_order(
            plan in fault_plan(Duration::from_secs(300), 8)
        ) {
            prop_assert!(plan.entries.len() <= 8);
            prop_assert!(plan.entries.iter().all(|(t, _)| *t < Duration::from_secs(300)));
            prop_assert!(plan.entries.windows(2).all(|w| w[0].0 <= w[1].0));
        }

        #[test]
        fn workloads_close_only_at_the_end(w in workload(12, Duration::from_secs(30))) {
            let closes: Vec<usize> = w.steps.iter().enumerate()
                .filter(|(_, (_, s))| *s == Step::Close).map(|(i, _)| i).collect();
            prop_assert!(closes.is_empty() || closes == [w.steps.len() - 1]);
            prop_assert!(w.steps.len() <= 13);
        }

        #[test]
        fn send_workloads_only_send(w in send_workload(12, Duration::from_secs(30))) {
            prop_assert!(w.steps.iter().all(|(_, s)| matches!(s, Step::Send(_) | Step::Close)));
        }
    }

    #[test]
    fn raw_skips_what_it_cannot_do_and_keeps_the_gaps() {
        let mut w = WorkloadPlan::new(vec![
            (Duration::from_secs(1), Step::Stream { timeout: None }),
            (Duration::from_secs(2), Step::Send(7)),
        ]);
        let mut rng = fastrand::Rng::with_seed(0);
        let (gap, cmd) = Workload::<Raw>::next(&mut w, Duration::ZERO, &mut rng).unwrap();
        assert_eq!(gap, Duration::from_secs(3));
        assert!(matches!(cmd, Command::Send(_)));
        assert!(Workload::<Raw>::next(&mut w, Duration::ZERO, &mut rng).is_none());
    }

    #[test]
    fn a_closure_makes_the_same_commands_as_step_command() {
        let plan = WorkloadPlan::new(vec![
            (Duration::from_secs(1), Step::Stream { timeout: None }),
            (Duration::from_secs(2), Step::Send(7)),
            (Duration::from_secs(3), Step::Close),
        ]);
        let mut rng = fastrand::Rng::with_seed(0);
        let mut by_trait = plan.clone();
        let mut by_closure = plan.commands(<Raw as StepCommand>::command);
        loop {
            let a = Workload::<Raw>::next(&mut by_trait, Duration::ZERO, &mut rng);
            let b = by_closure.next(Duration::ZERO, &mut rng);
            match (a, b) {
                (None, None) => break,
                (Some((ga, ca)), Some((gb, cb))) => {
                    assert_eq!(ga, gb);
                    assert_eq!(std::mem::discriminant(&ca), std::mem::discriminant(&cb));
                }
                _ => panic!("one workload ended before the other"),
            }
        }
    }

    #[test]
    fn plans_print_as_rust() {
        let plan = FaultPlan::new(vec![
            (
                Duration::from_secs(2),
                Fault::ServerClose(4001, "bye".into()),
            ),
            (
                Duration::from_nanos(5),
                Fault::Restart {
                    down: Duration::from_secs(3),
                    graceful: true,
                },
            ),
        ]);
        assert_eq!(
            plan_code(&plan),
            "FaultPlan::new(vec![\n    (Duration::from_nanos(5), Fault::Restart { down: Duration::from_secs(3), graceful: true }),\n    (Duration::from_secs(2), Fault::ServerClose(4001, \"bye\".into())),\n])"
        );
    }
}
