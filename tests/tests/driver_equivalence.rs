//! The simulator runs the same driver the adapters run: a scripted scenario yields the same
//! event sequence, at the same instants, through `tether-driver` on virtual time as through
//! `Session` driven directly by the world — and through the driver's real WebSocket
//! transport over the simulated wire (`run_driver_wire`) too.

use std::time::Duration;

use serde_json::json;
use tether_core::profiles::{Gateway, GatewayOptions, GatewayRequest, HelloAck, HelloAckRequest};
use tether_core::{Config, Event, Output, Protocol};
use tether_sim::driven::{DrivenNet, WireSetup, run_driver, run_driver_wire};
use tether_sim::pipe::PipeConfig;
use tether_sim::servers::{GatewayServer, HelloAckServer};
use tether_sim::{Command, Entry, FaultPlan, NetConfig, RunConfig, Script, Server, World};

const NET: DrivenNet = DrivenNet {
    latency: Duration::from_millis(10),
    write_latency: Duration::ZERO,
};

fn world_events<P, S>(
    protocol: P,
    server: S,
    seed: u64,
    commands: Vec<(Duration, Command<P>)>,
    duration: Duration,
) -> Vec<(Duration, Event<P>)>
where
    P: Protocol + 'static,
    S: Server,
{
    let run = World::new(Config::default(), protocol, server, seed)
        .unwrap()
        .plan(FaultPlan::none())
        .workload(Script::new(commands))
        .run(RunConfig {
            duration,
            heal_at: Some(duration),
            net: NetConfig {
                latency: NET.latency,
                jitter: Duration::ZERO,
                write_latency: NET.write_latency,
                ..NetConfig::default()
            },
        });
    run.timeline
        .records
        .into_iter()
        .filter_map(|r| match r.entry {
            Entry::Output(Output::Event(e)) => Some((r.at, e)),
            _ => None,
        })
        .collect()
}

fn wire_setup() -> WireSetup {
    WireSetup {
        pipe: PipeConfig {
            latency: NET.latency,
            ..PipeConfig::default()
        },
        faults: Vec::new(),
    }
}

fn assert_same<P: Protocol>(direct: &[(Duration, Event<P>)], driven: &[(Duration, Event<P>)]) {
    for (i, (d, v)) in direct.iter().zip(driven).enumerate() {
        assert_eq!(d, v, "event {i} differs");
    }
    assert_eq!(direct.len(), driven.len(), "different number of events");
}

fn hello() -> HelloAck {
    HelloAck::new(|| json!({"type": "hello", "client": "equivalence"}))
}

fn hello_script() -> Vec<(Duration, Command<HelloAck>)> {
    let s = Duration::from_secs;
    vec![
        (s(1), Command::Send(json!({"type": "note", "n": 1}))),
        (
            s(2),
            Command::Request {
                request: HelloAckRequest::new("echo", json!({"n": 2})),
                timeout: None,
            },
        ),
        (
            s(3),
            Command::Request {
                request: HelloAckRequest::new("stream.words", json!({})).streaming(),
                timeout: None,
            },
        ),
        (
            s(4),
            Command::Request {
                request: HelloAckRequest::new("fail", json!({})),
                timeout: None,
            },
        ),
        (
            s(95),
            Command::Request {
                request: HelloAckRequest::new("echo", json!({"late": true})),
                timeout: None,
            },
        ),
    ]
}

#[test]
fn hello_ack_scenario_is_identical_through_the_driver() {
    let duration = Duration::from_secs(120);
    for seed in [1, 2, 3] {
        let direct = world_events(
            hello(),
            HelloAckServer::default(),
            seed,
            hello_script(),
            duration,
        );
        let driven = run_driver(
            Config::default(),
            hello(),
            HelloAckServer::default(),
            seed,
            NET,
            hello_script(),
            duration,
        )
        .unwrap();
        assert!(
            direct.len() > 10,
            "a substantial scenario: {}",
            direct.len()
        );
        assert!(direct.iter().any(|(_, e)| matches!(e, Event::Stream(_))));
        assert_same(&direct, &driven);
        let wire = run_driver_wire(
            Config::default(),
            hello(),
            HelloAckServer::default(),
            seed,
            wire_setup(),
            hello_script(),
            duration,
        )
        .unwrap();
        assert_same(&direct, &wire.events);
    }
}

fn gateway_script() -> Vec<(Duration, Command<Gateway>)> {
    let s = Duration::from_secs;
    vec![
        (
            s(1),
            Command::Request {
                request: GatewayRequest::chat_send("agent:main:main", "hi"),
                timeout: None,
            },
        ),
        (
            s(5),
            Command::Request {
                request: GatewayRequest::chat_history("agent:main:main", Some(5)),
                timeout: None,
            },
        ),
        (
            s(70),
            Command::Request {
                request: GatewayRequest::chat_send("agent:main:main", "again"),
                timeout: None,
            },
        ),
    ]
}

#[test]
fn gateway_scenario_is_identical_through_the_driver() {
    let duration = Duration::from_secs(100);
    let gw = || Gateway::new(GatewayOptions::default());
    let direct = world_events(
        gw(),
        GatewayServer::default(),
        9,
        gateway_script(),
        duration,
    );
    let driven = run_driver(
        Config::default(),
        gw(),
        GatewayServer::default(),
        9,
        NET,
        gateway_script(),
        duration,
    )
    .unwrap();
    assert!(
        direct
            .iter()
            .filter(|(_, e)| matches!(e, Event::Stream(_)))
            .count()
            > 5
    );
    assert_same(&direct, &driven);
    let wire = run_driver_wire(
        Config::default(),
        gw(),
        GatewayServer::default(),
        9,
        wire_setup(),
        gateway_script(),
        duration,
    )
    .unwrap();
    assert_same(&direct, &wire.events);
}
