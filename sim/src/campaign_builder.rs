//! [`Campaign`]: a seed campaign for any protocol, built from closures.
//!
//! What the built-in profiles get from `tether-sim campaign`, a user's own protocol gets
//! from an ordinary `#[test]`: many seeds in parallel, each under a fault plan derived from
//! the seed and judged by every oracle, a summary, a replay line per failing seed, the
//! determinism check and the shrunk fault plan. Nothing here asks a user to implement a
//! trait of this crate on a type of theirs: the protocol, the peer, the configuration and
//! the workload are all closures.

use std::sync::Arc;
use std::time::Duration;

use tether_core::{Config, Protocol};

use crate::campaign::{self, CampaignConfig, CampaignReport, Scenario};
use crate::fault::FaultPlan;
use crate::oracle::{self, Violation};
use crate::scenario::{self, FaultMix, Outcome};
use crate::server::Server;
use crate::workload::{Command, Idle, Poisson, Workload};
use crate::world::{RunConfig, World};

type Make<T> = Arc<dyn Fn() -> T + Send + Sync>;
type Draw<T> = Arc<dyn Fn(&mut fastrand::Rng) -> T + Send + Sync>;

/// The mean gap between workload commands unless [`Campaign::every`] says otherwise.
pub const DEFAULT_MEAN_GAP: Duration = Duration::from_secs(10);

/// A seed campaign for a protocol `P` against a scripted peer `S`.
///
/// Every seed builds a fresh protocol and peer from the factories, draws the session
/// [`Config`] (or takes the fixed one), derives a fault plan from the seed and the
/// [`FaultMix`], and runs a [`World`] for [`duration`](Self::duration) with commands from
/// the workload closures at exponentially distributed gaps. [`oracle::check`] judges each
/// run. [`run`](Self::run) spreads the seeds over threads and returns a
/// [`CampaignReport`]: totals, failing seeds with their shrunk plans and replay lines, and
/// (on by default) whether every seed ran the same twice.
///
/// ```
/// use std::time::Duration;
/// use tether_core::profiles::Raw;
/// use tether_core::{DataFrame, Utf8Bytes};
/// use tether_sim::{Campaign, FnServer, ServerEvent, Wire};
///
/// let echo = || {
///     FnServer::new(|event, ctx| {
///         if let ServerEvent::Frame(conn, Wire::Text(t)) = event {
///             ctx.send(conn, Wire::Text(t));
///         }
///     })
/// };
/// let report = Campaign::new("raw-echo", || Raw, echo)
///     .send(|rng| DataFrame::Text(Utf8Bytes::from_string(format!("m{}", rng.u32(..)))))
///     .seeds(4)
///     .duration(Duration::from_secs(600))
///     .run();
/// assert!(report.passed(), "{report}");
/// ```
pub struct Campaign<P: Protocol, S: Server> {
    name: String,
    protocol: Make<P>,
    peer: Make<S>,
    config: Draw<Config>,
    commands: Vec<(u32, Draw<Command<P>>)>,
    mean_gap: Duration,
    settings: CampaignConfig,
    /// The world's own encoder of sent messages ([`World::identify_sends`]).
    identify: Option<Identify<P>>,
    identify_events: Option<IdentifyEvents>,
}

type Identify<P> =
    Arc<dyn Fn(&<P as Protocol>::Outbound) -> Option<(bool, bytes::Bytes)> + Send + Sync>;
/// The world's reading of the stream event a peer's frame carries, shared by every seed.
type IdentifyEvents = Arc<dyn Fn(&tether_core::InFrame) -> Option<(String, u64)> + Send + Sync>;

impl<P: Protocol + 'static, S: Server + 'static> Campaign<P, S> {
    /// A campaign called `name` (in its reports) for the protocol `protocol` makes,
    /// against the peer `peer` makes: a fresh pair per run.
    ///
    /// The defaults: [`scenario::config`] (the default `Config`, retrying the first
    /// connect, since a plan may start with the peer down), no workload (add one with
    /// [`send`](Self::send), [`request`](Self::request) or [`command`](Self::command)),
    /// seeds 0..1000, one simulated hour each, every fault kind, one thread per core, the
    /// determinism check on, the first 10 failing seeds shrunk.
    pub fn new(
        name: impl Into<String>,
        protocol: impl Fn() -> P + Send + Sync + 'static,
        peer: impl Fn() -> S + Send + Sync + 'static,
    ) -> Self {
        Campaign {
            name: name.into(),
            protocol: Arc::new(protocol),
            peer: Arc::new(peer),
            config: Arc::new(|_| scenario::config()),
            commands: Vec::new(),
            mean_gap: DEFAULT_MEAN_GAP,
            settings: CampaignConfig {
                check_determinism: true,
                ..CampaignConfig::default()
            },
            identify: None,
            identify_events: None,
        }
    }

    /// Gives the world its own encoding of each sent message (whether it is binary, and
    /// its payload), so that the oracles can follow every message to the peer: exactly
    /// once, in order ([`World::identify_sends`]). Without it, a message is judged by its
    /// confirmed write only.
    #[must_use]
    pub fn identify_sends(
        mut self,
        identify: impl Fn(&P::Outbound) -> Option<(bool, bytes::Bytes)> + Send + Sync + 'static,
    ) -> Self {
        self.identify = Some(Arc::new(identify));
        self
    }

    /// Gives the world its own reading of which stream event (`(key, seq)`, the stream as
    /// the peer names it) a frame from the peer carries, so that `stream_events_once`
    /// checks every event delivered while its stream was open reaches the application
    /// ([`World::identify_events`]). Without it, only duplicates and terminals are judged.
    #[must_use]
    pub fn identify_events(
        mut self,
        identify: impl Fn(&tether_core::InFrame) -> Option<(String, u64)> + Send + Sync + 'static,
    ) -> Self {
        self.identify_events = Some(Arc::new(identify));
        self
    }

    /// Every seed runs this session configuration.
    #[must_use]
    pub fn config(mut self, config: Config) -> Self {
        self.config = Arc::new(move |_| config.clone());
        self
    }

    /// Every seed draws its session configuration from `draw` (with a generator seeded
    /// from the seed). An invalid configuration is reported as a violation of the oracle
    /// `config`.
    #[must_use]
    pub fn configs(
        mut self,
        draw: impl Fn(&mut fastrand::Rng) -> Config + Send + Sync + 'static,
    ) -> Self {
        self.config = Arc::new(draw);
        self
    }

    /// Adds `send(draw(rng))` to the workload (weight 1 among the workload's commands).
    #[must_use]
    pub fn send(
        self,
        draw: impl Fn(&mut fastrand::Rng) -> P::Outbound + Send + Sync + 'static,
    ) -> Self {
        self.command(1, move |rng| Command::Send(draw(rng)))
    }

    /// Adds `request(draw(rng))` with the configured request timeout to the workload
    /// (weight 1).
    #[must_use]
    pub fn request(
        self,
        draw: impl Fn(&mut fastrand::Rng) -> P::Request + Send + Sync + 'static,
    ) -> Self {
        self.command(1, move |rng| Command::Request {
            request: draw(rng),
            timeout: None,
        })
    }

    /// Adds any command to the workload, drawn `weight` times as often as a command of
    /// weight 1 (a request with its own timeout, a `close`, a mix decided by one closure).
    #[must_use]
    pub fn command(
        mut self,
        weight: u32,
        draw: impl Fn(&mut fastrand::Rng) -> Command<P> + Send + Sync + 'static,
    ) -> Self {
        if weight > 0 {
            self.commands.push((weight, Arc::new(draw)));
        }
        self
    }

    /// Workload commands come `mean_gap` apart on average (default 10 s).
    #[must_use]
    pub fn every(mut self, mean_gap: Duration) -> Self {
        self.mean_gap = mean_gap;
        self
    }

    /// How many consecutive seeds (default 1000).
    #[must_use]
    pub fn seeds(mut self, seeds: u64) -> Self {
        self.settings.seeds = seeds;
        self
    }

    /// The first seed (default 0).
    #[must_use]
    pub fn start(mut self, start: u64) -> Self {
        self.settings.start = start;
        self
    }

    /// Simulated time per seed (default 1 h); the faults heal 5 minutes before the end.
    #[must_use]
    pub fn duration(mut self, duration: Duration) -> Self {
        self.settings.duration = duration;
        self
    }

    /// The faults plans draw from (default: every kind).
    #[must_use]
    pub fn faults(mut self, mix: FaultMix) -> Self {
        self.settings.mix = mix;
        self
    }

    /// Worker threads (default: one per core; at least 1).
    #[must_use]
    pub fn threads(mut self, threads: usize) -> Self {
        self.settings.threads = threads.max(1);
        self
    }

    /// Whether every seed runs twice and the two timelines are compared (default on).
    #[must_use]
    pub fn check_determinism(mut self, on: bool) -> Self {
        self.settings.check_determinism = on;
        self
    }

    /// Shrink the plans of at most this many failing seeds (default 10; 0: none).
    #[must_use]
    pub fn shrink(mut self, at_most: usize) -> Self {
        self.settings.shrink = at_most;
        self
    }

    /// The campaign's seeds, duration, faults and threads.
    pub fn settings(&self) -> &CampaignConfig {
        &self.settings
    }

    /// Runs every seed and returns the report. Deterministic: the report (but for its
    /// wall-clock times) depends only on the campaign, not on the thread count.
    pub fn run(&self) -> CampaignReport {
        let header = self.settings.header_naming("SCENARIO", &self.name);
        campaign::run_scenarios(&self.settings, header, self.name.clone(), &|_| self, false)
    }

    /// Runs one seed as the campaign does, under `plan` (as a failing seed's replay line
    /// prints it: `12.5s:drop,60s:restart:5s:graceful`, or `none`), keeping the rendered
    /// timeline in [`Outcome::timeline`].
    ///
    /// # Errors
    ///
    /// A malformed plan.
    pub fn replay(&self, seed: u64, plan: &str) -> Result<Outcome, String> {
        let plan = scenario::parse_plan(plan)?;
        let run = scenario::run_config(self.settings.duration);
        Ok(self.run_one(seed, plan, &run, true, false).0)
    }

    fn workload(&self) -> Box<dyn Workload<P>> {
        let commands = self.commands.clone();
        match commands.as_slice() {
            [] => Box::new(Idle),
            // One kind: no draw to pick it, so its own draws start the generator.
            [(_, only)] => {
                let only = Arc::clone(only);
                Box::new(Poisson::new(self.mean_gap, move |rng| only(rng)))
            }
            _ => {
                let total: u32 = commands.iter().map(|(w, _)| *w).sum();
                Box::new(Poisson::new(self.mean_gap, move |rng| {
                    let mut k = rng.u32(..total);
                    for (w, draw) in &commands {
                        if k < *w {
                            return draw(rng);
                        }
                        k -= w;
                    }
                    // Unreachable: k < total, the sum of the weights. The last one is a
                    // harmless answer all the same.
                    let (_, last) = &commands[commands.len() - 1];
                    last(rng)
                }))
            }
        }
    }

    fn run_one(
        &self,
        seed: u64,
        plan: FaultPlan,
        run: &RunConfig,
        keep_timeline: bool,
        twice: bool,
    ) -> (Outcome, Option<String>) {
        let config = (self.config)(&mut fastrand::Rng::with_seed(seed ^ 0xc0f1_6000));
        let world = || {
            World::new(config.clone(), (self.protocol)(), (self.peer)(), seed).map(|w| {
                let w = match &self.identify {
                    Some(identify) => {
                        let identify = identify.clone();
                        w.identify_sends(move |m| identify(m))
                    }
                    None => w,
                };
                let w = match &self.identify_events {
                    Some(identify) => {
                        let identify = identify.clone();
                        w.identify_events(move |f| identify(f))
                    }
                    None => w,
                };
                w.plan(plan.clone())
                    .workload(self.workload())
                    .run(run.clone())
            })
        };
        let mut outcome = Outcome {
            seed,
            scenario: self.name.clone(),
            plan: plan.clone(),
            stats: Default::default(),
            simulated: Duration::ZERO,
            violations: Vec::new(),
            timeline: None,
        };
        let first = match world() {
            Ok(run) => run,
            Err(e) => {
                outcome.violations.push(Violation {
                    oracle: "config",
                    step: 0,
                    at: Duration::ZERO,
                    detail: format!("the session configuration is invalid: {e}"),
                });
                return (outcome, None);
            }
        };
        let divergence = if twice {
            match world() {
                Ok(again) => scenario::first_divergence(&first.timeline, &again.timeline),
                Err(e) => Some(format!("the second run did not start: {e}")),
            }
        } else {
            None
        };
        outcome.stats = first.stats;
        outcome.simulated = first.simulated;
        outcome.violations = oracle::check(&first.timeline);
        outcome.timeline = keep_timeline.then(|| first.timeline.to_string());
        (outcome, divergence)
    }
}

impl<P: Protocol + 'static, S: Server + 'static> Scenario for Campaign<P, S> {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn run(
        &self,
        seed: u64,
        plan: FaultPlan,
        run: &RunConfig,
        keep_timeline: bool,
        twice: bool,
    ) -> (Outcome, Option<String>) {
        self.run_one(seed, plan, run, keep_timeline, twice)
    }

    fn replay_line(&self, cfg: &CampaignConfig, seed: u64, plan: Option<&FaultPlan>) -> String {
        let derived;
        let plan = match plan {
            Some(p) => p,
            None => {
                derived = scenario::derive_plan(&cfg.mix, seed, cfg.duration);
                &derived
            }
        };
        format!(
            "campaign.replay({seed}, \"{}\") (the timeline: print the outcome's `timeline`)",
            scenario::plan_spec(plan)
        )
    }

    fn shrink_line(&self, _: &CampaignConfig, seed: u64) -> String {
        format!("`.start({seed}).seeds(1)` on the campaign")
    }
}
