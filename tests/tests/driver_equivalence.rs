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
use tether_sim::wire_peer::WireFault;
use tether_sim::ws_frames::{opcode, server_frame};
use tether_sim::{
    Command, Entry, Fault, FaultPlan, Garbage, NetConfig, RunConfig, Script, Server, World,
};

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
    world_events_with(
        Config::default(),
        FaultPlan::none(),
        protocol,
        server,
        seed,
        commands,
        duration,
    )
}

fn world_events_with<P, S>(
    config: Config,
    plan: FaultPlan,
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
    let run = World::new(config, protocol, server, seed)
        .unwrap()
        .plan(plan)
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
        ..WireSetup::default()
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

/// The world's value-level link model agrees with the real codec on what a peer may not
/// send: a close frame with any code of the registry (valid ones, unknown to tungstenite
/// or not, reach the session as sent; the rest fail the connection), a 124-byte close
/// reason, invalid UTF-8 and a frame over the inbound limit. The same events at the same
/// instants, the world's fault against the same bytes written raw into the wire.
#[test]
fn the_world_fails_connections_as_the_codec_does() {
    let at = Duration::from_secs(2);
    let duration = Duration::from_secs(30);
    let config = Config {
        max_inbound_frame: 1024,
        ..Config::default()
    };
    let longest = "r".repeat(tether_core::MAX_CLOSE_REASON);
    let long = "r".repeat(tether_core::MAX_CLOSE_REASON + 1);
    // Every fault kind both modes have, each as the value world applies it and as bytes
    // on the wire: close frames with every code of the registry's edges and the common
    // valid ones, reasons at the limit and one byte over, the bad frames the world sends,
    // a reset, and a peer gone silent (a half-open link in the world; on the wire a peer
    // that stops writing, or stops reading and writing, or a severed pipe).
    let mut codes: Vec<u16> = tether_sim::scenario::EDGE_CLOSE_CODES.to_vec();
    codes.extend([
        1000, 1001, 1002, 1003, 1007, 1008, 1009, 1011, 1012, 1013, 4000, 4001, 4500,
    ]);
    let mut cases: Vec<(String, Fault, WireFault)> = codes
        .into_iter()
        .map(|code| {
            (
                format!("close {code}"),
                Fault::ServerClose(code, "x".into()),
                WireFault::close(code, "x"),
            )
        })
        .collect();
    for reason in [&longest, &long] {
        cases.push((
            format!("a {}-byte reason", reason.len()),
            Fault::ServerClose(1001, reason.clone()),
            WireFault::close(1001, reason),
        ));
    }
    let frames: [(&str, Garbage, u8, &[u8]); 4] = [
        (
            "invalid UTF-8",
            Garbage::InvalidUtf8,
            opcode::TEXT,
            b"\xff\xfe\xfd",
        ),
        (
            "a frame over the limit",
            Garbage::Oversized,
            opcode::TEXT,
            &[b'x'; 1025],
        ),
        (
            "text that is not JSON",
            Garbage::Malformed,
            opcode::TEXT,
            b"{not json",
        ),
        (
            "a binary frame",
            Garbage::Binary,
            opcode::BINARY,
            b"\x00\x01\x02",
        ),
    ];
    for (name, garbage, op, payload) in frames {
        cases.push((
            name.into(),
            Fault::Garbage(garbage),
            WireFault::Raw(server_frame(op, true, payload)),
        ));
    }
    cases.push(("a reset".into(), Fault::Drop, WireFault::Reset));
    let silent = Fault::HalfOpen(Duration::from_secs(20));
    cases.push((
        "a peer that stops writing".into(),
        silent.clone(),
        WireFault::Mute,
    ));
    cases.push((
        "a peer that stops reading and writing".into(),
        silent.clone(),
        WireFault::Deaf,
    ));
    cases.push(("a half-open link".into(), silent, WireFault::HalfOpen));
    for (name, fault, wire_fault) in cases {
        let world = world_events_with(
            config.clone(),
            FaultPlan::new(vec![(at, fault)]),
            hello(),
            HelloAckServer::default(),
            5,
            Vec::new(),
            duration,
        );
        let wire = run_driver_wire(
            config.clone(),
            hello(),
            HelloAckServer::default(),
            5,
            WireSetup {
                faults: vec![(at, wire_fault)],
                ..wire_setup()
            },
            Vec::new(),
            duration,
        )
        .unwrap();
        assert!(
            world.iter().any(|(t, _)| *t >= at),
            "{name}: the fault has an effect the session reports: {world:?}"
        );
        for (i, (w, v)) in world.iter().zip(&wire.events).enumerate() {
            assert_eq!(w, v, "{name}: event {i} differs");
        }
        assert_eq!(
            world.len(),
            wire.events.len(),
            "{name}: {world:?} vs {:?}",
            wire.events
        );
    }
}
