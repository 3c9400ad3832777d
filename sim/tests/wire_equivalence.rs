//! The wire mode (the driver's real WebSocket transport over simulated byte pipes, to a
//! peer behind a real codec) and the value mode (frames as values) agree on fault-free
//! scenarios: the same events at the same instants.

use std::time::Duration;

use serde_json::json;
use tether_core::profiles::{Gateway, GatewayOptions, GatewayRequest, HelloAck, HelloAckRequest};
use tether_core::{Config, Event, Protocol};
use tether_sim::Command;
use tether_sim::driven::{DrivenNet, WireSetup, run_driver, run_driver_wire};
use tether_sim::pipe::PipeConfig;
use tether_sim::servers::{GatewayServer, HelloAckServer};
use tether_sim::wire_peer::PeerRead;

const LATENCY: Duration = Duration::from_millis(10);

fn value_net() -> DrivenNet {
    DrivenNet {
        latency: LATENCY,
        write_latency: Duration::ZERO,
    }
}

fn wire_setup() -> WireSetup {
    WireSetup {
        pipe: PipeConfig {
            latency: LATENCY,
            ..PipeConfig::default()
        },
        faults: Vec::new(),
    }
}

fn assert_same<P: Protocol>(value: &[(Duration, Event<P>)], wire: &[(Duration, Event<P>)]) {
    for (i, (v, w)) in value.iter().zip(wire).enumerate() {
        assert_eq!(v, w, "event {i} differs");
    }
    assert_eq!(value.len(), wire.len(), "different number of events");
}

fn hello() -> HelloAck {
    HelloAck::new(|| json!({"type": "hello", "client": "wire"}))
}

fn hello_script() -> Vec<(Duration, Command<HelloAck>)> {
    let s = Duration::from_secs;
    let req = |m: &str, p| Command::Request {
        request: HelloAckRequest::new(m, p),
        timeout: None,
    };
    vec![
        (s(1), Command::Send(json!({"type": "note", "n": 1}))),
        (s(2), req("echo", json!({"n": 2}))),
        (
            s(3),
            Command::Request {
                request: HelloAckRequest::new("stream.words", json!({})).streaming(),
                timeout: None,
            },
        ),
        (s(4), req("fail", json!({}))),
        (s(95), req("echo", json!({"late": true}))),
    ]
}

#[test]
fn hello_ack_events_are_the_same_on_the_wire_as_by_value() {
    let duration = Duration::from_secs(120);
    for seed in [1, 2, 3] {
        let value = run_driver(
            Config::default(),
            hello(),
            HelloAckServer::default(),
            seed,
            value_net(),
            hello_script(),
            duration,
        )
        .unwrap();
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
        assert!(value.len() > 10, "a substantial scenario: {}", value.len());
        assert!(value.iter().any(|(_, e)| matches!(e, Event::Stream(_))));
        assert_same(&value, &wire.events);
        // The peer read the client's frames off the wire: its hello first, and the
        // client's close at the end, answered.
        let first = wire.peer_reads.first().map(|r| &r.read);
        assert!(
            matches!(first, Some(PeerRead::Text(t)) if t.windows(7).any(|w| w == b"\"hello\"")),
            "{first:?}"
        );
        assert!(
            wire.peer_reads
                .iter()
                .any(|r| matches!(&r.read, PeerRead::Close(Some(1000), _))),
            "the peer read the client's close 1000: {:?}",
            wire.peer_reads.last()
        );
    }
}

fn gateway_script() -> Vec<(Duration, Command<Gateway>)> {
    let s = Duration::from_secs;
    let req = |r| Command::Request {
        request: r,
        timeout: None,
    };
    vec![
        (
            s(1),
            req(GatewayRequest::chat_send("agent:main:main", "hi")),
        ),
        (
            s(5),
            req(GatewayRequest::chat_history("agent:main:main", Some(5))),
        ),
        (
            s(70),
            req(GatewayRequest::chat_send("agent:main:main", "again")),
        ),
    ]
}

#[test]
fn gateway_events_are_the_same_on_the_wire_as_by_value() {
    let duration = Duration::from_secs(100);
    let gw = || Gateway::new(GatewayOptions::default());
    let value = run_driver(
        Config::default(),
        gw(),
        GatewayServer::default(),
        9,
        value_net(),
        gateway_script(),
        duration,
    )
    .unwrap();
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
    assert!(
        value
            .iter()
            .filter(|(_, e)| matches!(e, Event::Stream(_)))
            .count()
            > 5
    );
    assert_same(&value, &wire.events);
}
