//! Property: whatever the seed, session configuration, fault plan and workload, a
//! simulated run of each built-in profile breaks none of the invariant oracles, and the
//! same inputs give the same run byte for byte — over frames as values (the world's
//! fault plans) and on the real wire (the driver's WebSocket transport and
//! async-tungstenite on both ends of simulated byte pipes, under byte-level faults).
//!
//! Each case is a 10-minute simulated run (faults during the first 5 minutes, then the
//! liveness phase; on the wire, during the first three quarters). `TETHER_PROPTEST_CASES=1000 cargo test --release -p tether-tests
//! --test properties` runs more cases; failures shrink to a minimal plan and workload,
//! are saved to `tests/proptest-regressions/properties.txt` (commit it) and replay first
//! on the next run.

use std::time::Duration;

use proptest::prelude::*;
use serde_json::json;
use tether_core::profiles::{Gateway, GatewayOptions, HelloAck, Raw};
use tether_core::{Config, Protocol};
use tether_sim::driven::{self, WireSetup};
use tether_sim::scenario::{self, Profile};
use tether_sim::servers::{GatewayServer, HelloAckServer};
use tether_sim::strategy::{self, StepCommand, WorkloadPlan, plan_code, workload_code};
use tether_sim::{
    FaultPlan, FnServer, Run, RunConfig, Server, ServerEvent, Wire, World, oracle, wire_campaign,
};
use tether_tests::{proptest_config, report};

const REGRESSIONS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/proptest-regressions/properties.txt"
);

/// Cases per property by default: keeps `cargo test --workspace` quick in debug builds
/// (about 10 ms of a debug build per case; `TETHER_PROPTEST_CASES` overrides both).
const CASES: u32 = 64;
const DETERMINISM_CASES: u32 = 16;
/// A wire case runs two codecs, records the run and replays the trace.
const WIRE_CASES: u32 = 48;

const RUN: Duration = Duration::from_secs(600);

fn run_config() -> RunConfig {
    RunConfig::lasting(RUN)
}

fn plan() -> impl Strategy<Value = FaultPlan> {
    strategy::fault_plan(run_config().heal_time(), 8)
}

fn workload() -> impl Strategy<Value = WorkloadPlan> {
    strategy::workload(24, Duration::from_secs(40))
}

fn echo() -> impl Server {
    FnServer::new(|ev, ctx| {
        if let ServerEvent::Frame(conn, Wire::Text(t)) = ev {
            ctx.send(conn, Wire::Text(t));
        }
    })
}

fn hello() -> HelloAck {
    HelloAck::new(|| json!({"type": "hello", "client": "proptest"}))
}

fn gateway() -> Gateway {
    Gateway::new(GatewayOptions::default())
}

fn simulate<P: StepCommand + 'static, S: Server>(
    config: &Config,
    protocol: P,
    server: S,
    seed: u64,
    plan: &FaultPlan,
    work: &WorkloadPlan,
) -> Run<P> {
    World::new(config.clone(), protocol, server, seed)
        .expect("strategy::config() draws valid configurations")
        // HelloAck's stream events, so that every one delivered is followed to the
        // application; the other profiles' frames carry none of that shape.
        .identify_events(scenario::hello_ack_event)
        .plan(plan.clone())
        .workload(work.clone())
        .run(run_config())
}

/// Fails the case with a report naming the seed, the plan and how to replay it.
fn check<P: Protocol>(
    test: &str,
    profile: Profile,
    run: &Run<P>,
    config: &Config,
    plan: &FaultPlan,
    work: &WorkloadPlan,
) -> Result<(), TestCaseError> {
    let violations = oracle::check(&run.timeline);
    if violations.is_empty() {
        return Ok(());
    }
    let case = format!(
        "profile: {profile}\nseed: {}\nconfig: {config:?}\nplan: {plan}\nworkload: {work}",
        run.seed
    );
    let replay = format!(
        "the shrunk case is saved in {REGRESSIONS} and runs first on \
         `cargo test -p tether-tests --test properties {test}`; \
         to pin it as a test, run World::new(config, <{profile}>, <server>, {seed}) with\n\
         .plan({plan})\n.workload({work})\n.run(RunConfig::lasting(Duration::from_secs({secs})))\n\
         the same seed and plan under the campaign's config and workload (may not fail): \
         cargo run --release -p tether-sim -- replay --seed {seed} --profile {profile} \
         --duration {secs}s --plan {spec} --verbose",
        seed = run.seed,
        plan = plan_code(plan),
        spec = scenario::plan_spec(plan),
        work = workload_code(work),
        secs = RUN.as_secs(),
    );
    Err(TestCaseError::fail(report(
        &violations,
        &run.timeline,
        case,
        replay,
    )))
}

proptest! {
    #![proptest_config(proptest_config(CASES, REGRESSIONS))]

    #[test]
    fn raw_sessions_keep_every_invariant(
        seed in any::<u64>(),
        config in strategy::config(),
        plan in plan(),
        work in strategy::send_workload(24, Duration::from_secs(40)),
    ) {
        let run = simulate(&config, Raw, echo(), seed, &plan, &work);
        check("raw_sessions_keep_every_invariant", Profile::Raw, &run, &config, &plan, &work)?;
    }

    #[test]
    fn hello_ack_sessions_keep_every_invariant(
        seed in any::<u64>(),
        config in strategy::config(),
        plan in plan(),
        work in workload(),
    ) {
        let run = simulate(&config, hello(), HelloAckServer::default(), seed, &plan, &work);
        check("hello_ack_sessions_keep_every_invariant", Profile::HelloAck, &run, &config, &plan, &work)?;
    }

    #[test]
    fn gateway_sessions_keep_every_invariant(
        seed in any::<u64>(),
        config in strategy::config(),
        plan in plan(),
        work in workload(),
    ) {
        let run = simulate(&config, gateway(), GatewayServer::default(), seed, &plan, &work);
        check("gateway_sessions_keep_every_invariant", Profile::Gateway, &run, &config, &plan, &work)?;
    }
}

proptest! {
    // Fewer cases: rendering two timelines per case dominates in debug builds.
    #![proptest_config(proptest_config(DETERMINISM_CASES, REGRESSIONS))]

    #[test]
    fn the_same_inputs_give_byte_identical_timelines(
        seed in any::<u64>(),
        profile in prop::sample::select(Profile::ALL.to_vec()),
        config in strategy::config(),
        plan in plan(),
        work in workload(),
    ) {
        let render = || match profile {
            Profile::Raw => {
                let run = simulate(&config, Raw, echo(), seed, &plan, &work);
                (run.timeline.to_string(), run.stats)
            }
            Profile::HelloAck => {
                let run = simulate(&config, hello(), HelloAckServer::default(), seed, &plan, &work);
                (run.timeline.to_string(), run.stats)
            }
            Profile::Gateway => {
                let run = simulate(&config, gateway(), GatewayServer::default(), seed, &plan, &work);
                (run.timeline.to_string(), run.stats)
            }
        };
        let (first, second) = (render(), render());
        let diverged = first.0.lines().zip(second.0.lines()).find(|(a, b)| a != b);
        prop_assert!(
            first == second,
            "{profile} seed {seed} under plan {plan} with workload {work} ran differently \
             twice; first difference: {diverged:?}\n\
             replay: the case is saved in {REGRESSIONS}; \
             `cargo test -p tether-tests --test properties the_same_inputs`",
        );
    }
}

proptest! {
    #![proptest_config(proptest_config(WIRE_CASES, REGRESSIONS))]

    /// The seed picks the profile (`seed % 3`), the workload and up to six byte-level
    /// faults (close frames with any code and reasons up to 124 bytes, invalid UTF-8, a
    /// frame over the inbound limit, a frame stalled in the middle, truncation, resets,
    /// a peer that stops writing or reading); the configuration is drawn as above. The
    /// run is recorded, replayed, and the replay must decide as the run did.
    #[test]
    fn sessions_on_the_wire_keep_every_invariant(
        seed in any::<u64>(),
        config in strategy::config(),
    ) {
        let config = wire_campaign::fit(config);
        let run = wire_campaign::run_seed_with(seed, config.clone(), RUN);
        prop_assert!(
            !run.failed(),
            "{profile} seed {seed} on the wire failed\nconfig: {config:?}\nfaults: {faults:?}\n\
             violations: {violations:#?}\ndivergence: {divergence:?}\nerror: {error:?}\n\
             replay: the case is saved in {REGRESSIONS} and runs first on `cargo test -p \
             tether-tests --test properties sessions_on_the_wire`; \
             tether_sim::wire_campaign::run_seed_with({seed}, fit(config), 600 s) reruns it",
            profile = run.profile,
            faults = run.plan,
            violations = run.verdict.violations,
            divergence = run.verdict.divergence,
            error = run.verdict.error,
        );
    }
}

/// A wire case under a value fault plan: two codecs, the recorder and a replay (about
/// 35 ms of a debug build each).
const WIRE_PLAN_CASES: u32 = 64;

#[allow(clippy::too_many_arguments)] // One case's parts, as the property draws them.
fn wire_plan<P, S>(
    test: &str,
    profile: Profile,
    protocol: fn() -> P,
    server: S,
    seed: u64,
    config: Config,
    plan: &FaultPlan,
    work: &WorkloadPlan,
) -> Result<(), TestCaseError>
where
    P: StepCommand + tether_driver::SendProtocol + tether_driver::record::Recordable + 'static,
    S: Server + Send + 'static,
{
    // An inbound limit of 4 MiB: past the longest frame a hostile server sends (a
    // `Hostile::LongText` run of 1 MiB + 1 byte of text, which the gateway's chat events
    // carry with their envelope, and which must reach the session as the value suites
    // deliver it, not fail the link), and a `Garbage::Oversized` frame one byte over it
    // is cheap enough to write. (The wire campaign's 64 KiB limit would turn that text
    // into a lost connection no fault in the plan explains.)
    let mut config = config;
    config.max_inbound_frame = config.max_inbound_frame.min(4 << 20);
    let setup = WireSetup {
        pipe: wire_campaign::pipe_for(seed),
        plan: plan.clone(),
        ..WireSetup::default()
    };
    let verdict = wire_campaign::judge(
        config.clone(),
        protocol,
        server,
        seed,
        setup,
        &plan.entries,
        work.schedule::<P>(RUN),
        RUN,
    );
    prop_assert!(
        !verdict.failed(),
        "{profile} seed {seed} on the wire failed\nconfig: {config:?}\nplan: {plan}\n\
         workload: {work}\nviolations: {violations:#?}\ndivergence: {divergence:?}\n\
         error: {error:?}\nreplay: the case is saved in {REGRESSIONS} and runs first on \
         `cargo test -p tether-tests --test properties {test}`; to pin it, run \
         wire_campaign::judge(config, <{profile}>, <server>, {seed}, WireSetup {{ pipe: \
         pipe_for({seed}), plan: {code}, .. }}, &plan.entries, {work_code}.schedule(600 s), \
         600 s)",
        violations = verdict.violations,
        divergence = verdict.divergence,
        error = verdict.error,
        code = plan_code(plan),
        work_code = workload_code(work),
    );
    Ok(())
}

fn wire_plan_faults() -> impl Strategy<Value = FaultPlan> {
    strategy::fault_plan_of(strategy::faults_of(driven::PLAN_FAULTS), RUN * 3 / 4, 8)
}

proptest! {
    #![proptest_config(proptest_config(WIRE_PLAN_CASES, REGRESSIONS))]

    // The value property suites' fault plans, on the real wire: up to eight faults of
    // every kind the wire mode takes (`driven::PLAN_FAULTS`: the connection-level ones)
    // in the first three quarters of the run, a drawn configuration and workload, for
    // each profile. The run is recorded and replayed; the replay must decide as the run
    // did, and the replayed timeline, with the plan's faults recorded, must keep every
    // invariant.

    #[test]
    fn raw_sessions_on_the_wire_keep_every_invariant_under_fault_plans(
        seed in any::<u64>(),
        config in strategy::config(),
        plan in wire_plan_faults(),
        work in strategy::send_workload(24, Duration::from_secs(40)),
    ) {
        let test = "raw_sessions_on_the_wire_keep_every_invariant_under_fault_plans";
        wire_plan(test, Profile::Raw, || Raw, echo(), seed, config, &plan, &work)?;
    }

    #[test]
    fn hello_ack_sessions_on_the_wire_keep_every_invariant_under_fault_plans(
        seed in any::<u64>(),
        config in strategy::config(),
        plan in wire_plan_faults(),
        work in workload(),
    ) {
        let test = "hello_ack_sessions_on_the_wire_keep_every_invariant_under_fault_plans";
        let server = HelloAckServer::default();
        wire_plan(test, Profile::HelloAck, hello, server, seed, config, &plan, &work)?;
    }

    #[test]
    fn gateway_sessions_on_the_wire_keep_every_invariant_under_fault_plans(
        seed in any::<u64>(),
        config in strategy::config(),
        plan in wire_plan_faults(),
        work in workload(),
    ) {
        let test = "gateway_sessions_on_the_wire_keep_every_invariant_under_fault_plans";
        let server = GatewayServer::default();
        wire_plan(test, Profile::Gateway, gateway, server, seed, config, &plan, &work)?;
    }
}
