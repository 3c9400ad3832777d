//! The simulator runs the same driver the adapters run: a scripted scenario yields the same
//! event sequence, at the same instants, through `tether-driver` on virtual time as through
//! `Session` driven directly by the world — through a `Client` and through an `Inline`
//! session polled by the application's task (`run_driver_inline`) alike, and through the
//! driver's real WebSocket transport over the simulated wire (`run_driver_wire`) too.

use std::time::Duration;

use serde_json::json;
use tether_core::profiles::{Gateway, GatewayOptions, GatewayRequest, HelloAck, HelloAckRequest};
use tether_core::{Config, Event, Output, Protocol};
use tether_sim::driven::{DrivenNet, WireSetup, run_driver, run_driver_inline, run_driver_wire};
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

/// HelloAck echo requests at these seconds, each carrying its time.
fn echo_requests(secs: &[u64]) -> Vec<(Duration, Command<HelloAck>)> {
    secs.iter()
        .map(|&t| {
            let request = HelloAckRequest::new("echo", json!({ "t": t }));
            let command = Command::Request {
                request,
                timeout: None,
            };
            (Duration::from_secs(t), command)
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
        assert!(
            direct.len() > 10,
            "a substantial scenario: {}",
            direct.len()
        );
        assert!(direct.iter().any(|(_, e)| matches!(e, Event::Stream(_))));
        // Through a `Client`, and through an `Inline` session.
        for run in [run_driver, run_driver_inline] {
            let driven = run(
                Config::default(),
                hello(),
                HelloAckServer::default(),
                seed,
                NET,
                hello_script(),
                duration,
            )
            .unwrap();
            assert_same(&direct, &driven);
        }
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
    assert!(
        direct
            .iter()
            .filter(|(_, e)| matches!(e, Event::Stream(_)))
            .count()
            > 5
    );
    // Through a `Client`, and through an `Inline` session.
    for run in [run_driver, run_driver_inline] {
        let driven = run(
            Config::default(),
            gw(),
            GatewayServer::default(),
            9,
            NET,
            gateway_script(),
            duration,
        )
        .unwrap();
        assert_same(&direct, &driven);
    }
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

/// Every value-level fault the wire mode takes, as one `FaultPlan` given to both the value
/// world and the wire: the same events at the same instants. Faults that act on the next
/// connection (the dial's, the server's flags) come with a drop at the same instant, so
/// that the session reconnects while they are in force.
#[test]
fn the_wire_takes_the_worlds_fault_plans() {
    let s = Duration::from_secs;
    let at = s(2);
    let duration = s(60);
    let config = Config {
        max_inbound_frame: 1024,
        ..Config::default()
    };
    let script = || echo_requests(&[3, 9, 20, 40]);
    let then_drop = |f: Fault| vec![(at, f), (at, Fault::Drop)];
    let mut cases: Vec<(String, Vec<(Duration, Fault)>)> = vec![
        ("refuse".into(), then_drop(Fault::RefuseConnects(s(10)))),
        (
            "blackhole".into(),
            then_drop(Fault::BlackholeConnects(s(15))),
        ),
        (
            "slow connects".into(),
            then_drop(Fault::SlowConnects {
                extra: s(3),
                lasts: s(10),
            }),
        ),
        ("drop".into(), vec![(at, Fault::Drop)]),
        ("half-open".into(), vec![(at, Fault::HalfOpen(s(20)))]),
        ("never-ack".into(), then_drop(Fault::NeverAck(s(10)))),
        ("double-ack".into(), then_drop(Fault::DoubleAck(s(10)))),
        (
            "unknown response".into(),
            vec![(at, Fault::UnknownResponse)],
        ),
        (
            "accept then close".into(),
            then_drop(Fault::AcceptThenClose(s(5))),
        ),
    ];
    for status in [401, 429, 503] {
        let f = Fault::RejectUpgrade {
            status,
            lasts: s(10),
        };
        cases.push((format!("reject {status}"), then_drop(f)));
    }
    for (code, reason) in [
        (1001, "x".to_owned()),
        (1012, "x".to_owned()),
        (4000, "x".to_owned()),
        (1005, "x".to_owned()),
        (1001, "r".repeat(tether_core::MAX_CLOSE_REASON + 1)),
    ] {
        let name = format!("close {code} ({} bytes)", reason.len());
        cases.push((name, vec![(at, Fault::ServerClose(code, reason))]));
    }
    for g in [
        Garbage::Malformed,
        Garbage::Oversized,
        Garbage::InvalidUtf8,
        Garbage::Binary,
    ] {
        cases.push((format!("garbage {g:?}"), vec![(at, Fault::Garbage(g))]));
    }
    for h in tether_sim::Hostile::ALL {
        cases.push((format!("hostile {h:?}"), then_drop(Fault::Hostile(h))));
    }
    for graceful in [true, false] {
        let f = Fault::Restart {
            down: s(5),
            graceful,
        };
        cases.push((format!("restart graceful={graceful}"), vec![(at, f)]));
    }
    let mut differ = Vec::new();
    for (name, entries) in cases {
        let plan = FaultPlan::new(entries);
        let world = world_events_with(
            config.clone(),
            plan.clone(),
            hello(),
            HelloAckServer::default(),
            5,
            script(),
            duration,
        );
        let wire = run_driver_wire(
            config.clone(),
            hello(),
            HelloAckServer::default(),
            5,
            WireSetup {
                plan,
                ..wire_setup()
            },
            script(),
            duration,
        )
        .unwrap();
        // An abrupt restart drops the connection: the world's drop carries the reason
        // "restart" in its `TransportClosed`, a reset on the wire carries none.
        let wire = if name == "restart graceful=false" {
            without_drop_reasons(wire.events)
        } else {
            wire.events
        };
        let world = if name == "restart graceful=false" {
            without_drop_reasons(world)
        } else {
            world
        };
        if world != wire {
            differ.push(format!("{name}:\n  world {world:?}\n  wire  {wire:?}"));
        }
    }
    assert!(differ.is_empty(), "{}", differ.join("\n"));
}

/// Events with the reason of every drop (a disconnect without a close code) left out.
fn without_drop_reasons<P: Protocol>(
    events: Vec<(Duration, Event<P>)>,
) -> Vec<(Duration, Event<P>)> {
    events
        .into_iter()
        .map(|(t, e)| match e {
            Event::Disconnected {
                conn,
                reason: tether_core::DisconnectReason::Closed { code: None, .. },
                retry,
            } => (
                t,
                Event::Disconnected {
                    conn,
                    reason: tether_core::DisconnectReason::Closed {
                        code: None,
                        reason: String::new(),
                    },
                    retry,
                },
            ),
            e => (t, e),
        })
        .collect()
}

/// A server that stops reading for a while: the one fault whose wire version means
/// something else than the world's. In the world the server's end takes no write while
/// it does not read (no kernel buffer), and a write it did not take never completes, so
/// the session's send deadline fails the connection. On the wire the peer's socket
/// buffer (the pipe's capacity) takes the client's small writes as a kernel does: they
/// complete, wait in the buffer, and are read and answered once the peer reads again.
#[test]
fn a_server_that_stops_reading_buffers_on_the_wire_and_holds_writes_in_the_world() {
    let s = Duration::from_secs;
    let (at, lasts, duration) = (s(2), s(10), s(40));
    let script = || echo_requests(&[3, 9, 20]);
    let plan = FaultPlan::new(vec![(at, Fault::StopReading(lasts))]);
    let world = world_events_with(
        Config::default(),
        plan.clone(),
        hello(),
        HelloAckServer::default(),
        5,
        script(),
        duration,
    );
    let wire = run_driver_wire(
        Config::default(),
        hello(),
        HelloAckServer::default(),
        5,
        WireSetup {
            plan,
            ..wire_setup()
        },
        script(),
        duration,
    )
    .unwrap()
    .events;
    let before = |es: &[(Duration, Event<HelloAck>)]| {
        es.iter()
            .filter(|(t, _)| *t < at)
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(
        before(&world),
        before(&wire),
        "the same run until the fault"
    );
    let deadline = world.iter().find_map(|(t, e)| match e {
        Event::Disconnected {
            reason: tether_core::DisconnectReason::SendDeadline,
            ..
        } => Some(*t),
        _ => None,
    });
    let send_deadline = Config::default().send_deadline;
    assert_eq!(
        deadline,
        Some(s(3) + send_deadline),
        "the world holds the first write: {world:?}"
    );
    assert!(
        !wire
            .iter()
            .any(|(_, e)| matches!(e, Event::Disconnected { .. })),
        "the wire's buffer takes the writes: {wire:?}"
    );
    // Both requests written meanwhile are answered once the peer reads again.
    let answered: Vec<Duration> = wire
        .iter()
        .filter(|(_, e)| matches!(e, Event::Response { result: Ok(_), .. }))
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(answered.len(), 3, "{wire:?}");
    assert!(answered[..2].iter().all(|t| *t > at + lasts), "{wire:?}");
}
