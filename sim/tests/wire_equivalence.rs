//! The wire mode (the driver's real WebSocket transport over simulated byte pipes, to a
//! peer behind a real codec) and the value mode (frames as values) agree on fault-free
//! scenarios: the same events at the same instants.

use std::time::Duration;

use serde_json::json;
use tether_core::profiles::{Gateway, GatewayOptions, GatewayRequest, HelloAck, HelloAckRequest};
use tether_core::{Config, Event, Protocol};
use tether_sim::Command;
use tether_sim::driven::{DrivenNet, WireSetup, run_driver, run_driver_inline, run_driver_wire};
use tether_sim::pipe::PipeConfig;
use tether_sim::servers::{GatewayServer, HelloAckServer};
use tether_sim::ws_frames::PeerRead;

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
        ..WireSetup::default()
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

/// A HelloAck peer that acknowledges every hello and, on its first connection only,
/// ends it `after` the upgrade the way `end` says; connections whose number is in
/// `reject` are refused with HTTP 503.
struct Ending {
    end: fn(&mut tether_sim::ServerCtx<'_>, tether_core::ConnId),
    reject: Vec<u64>,
    attempts: u64,
    ended: bool,
}

impl tether_sim::Server for Ending {
    fn on_connect(
        &mut self,
        _conn: tether_core::ConnId,
        _ctx: &mut tether_sim::ServerCtx<'_>,
    ) -> tether_sim::Accept {
        self.attempts += 1;
        if self.reject.contains(&self.attempts) {
            tether_sim::Accept::Reject(503)
        } else {
            tether_sim::Accept::Accept
        }
    }
    fn on_open(&mut self, conn: tether_core::ConnId, ctx: &mut tether_sim::ServerCtx<'_>) {
        if !self.ended {
            self.ended = true;
            ctx.timer(conn, 1, Duration::from_secs(2));
        }
    }
    fn on_frame(
        &mut self,
        conn: tether_core::ConnId,
        frame: tether_sim::Wire,
        ctx: &mut tether_sim::ServerCtx<'_>,
    ) {
        let Some(v) = frame.as_json() else { return };
        match v["type"].as_str() {
            Some("hello") => ctx.send(conn, tether_sim::Wire::json(&json!({"type": "hello_ack"}))),
            Some("request") => ctx.send_after(
                conn,
                tether_sim::Wire::json(
                    &json!({"type": "response", "id": v["id"], "result": v["params"]}),
                ),
                Duration::from_millis(20),
            ),
            _ => {}
        }
    }
    fn on_timer(
        &mut self,
        conn: tether_core::ConnId,
        _token: u64,
        ctx: &mut tether_sim::ServerCtx<'_>,
    ) {
        (self.end)(ctx, conn);
    }
}

fn ending(
    end: fn(&mut tether_sim::ServerCtx<'_>, tether_core::ConnId),
    reject: Vec<u64>,
) -> Ending {
    Ending {
        end,
        reject,
        attempts: 0,
        ended: false,
    }
}

fn requests() -> Vec<(Duration, Command<HelloAck>)> {
    (1..8)
        .map(|n| {
            (
                Duration::from_secs(n),
                Command::Request {
                    request: HelloAckRequest::new("echo", json!({ "n": n })),
                    timeout: None,
                },
            )
        })
        .collect()
}

#[test]
fn server_closes_drops_and_refusals_are_the_same_on_the_wire_as_by_value() {
    let duration = Duration::from_secs(30);
    type End = fn(&mut tether_sim::ServerCtx<'_>, tether_core::ConnId);
    let ends: Vec<(&str, End, Vec<u64>)> = vec![
        (
            "close 1001",
            |ctx, c| ctx.close(c, 1001, "going away"),
            vec![],
        ),
        ("close 1011", |ctx, c| ctx.close(c, 1011, "oops"), vec![]),
        ("close 1012", |ctx, c| ctx.close(c, 1012, "restart"), vec![]),
        ("close 1013", |ctx, c| ctx.close(c, 1013, "later"), vec![]),
        (
            "close 1014",
            |ctx, c| ctx.close(c, 1014, "bad gateway"),
            vec![],
        ),
        ("close 4000", |ctx, c| ctx.close(c, 4000, "stale"), vec![]),
        ("close 4999", |ctx, c| ctx.close(c, 4999, ""), vec![]),
        (
            "close 1002 (fatal)",
            |ctx, c| ctx.close(c, 1002, "no"),
            vec![],
        ),
        (
            "close 1000 (normal)",
            |ctx, c| ctx.close(c, 1000, "done"),
            vec![],
        ),
        ("drop", |ctx, c| ctx.drop_conn(c), vec![]),
        (
            "drop, then 503 twice",
            |ctx, c| ctx.drop_conn(c),
            vec![2, 3],
        ),
        ("503 first", |ctx, c| ctx.close(c, 1001, ""), vec![1]),
    ];
    for (name, end, reject) in ends {
        for seed in [4, 5] {
            let value = run_driver(
                Config::default(),
                hello(),
                ending(end, reject.clone()),
                seed,
                value_net(),
                requests(),
                duration,
            )
            .unwrap();
            let wire = run_driver_wire(
                Config::default(),
                hello(),
                ending(end, reject.clone()),
                seed,
                wire_setup(),
                requests(),
                duration,
            )
            .unwrap();
            assert!(
                value.iter().any(|(_, e)| matches!(
                    e,
                    Event::Disconnected { .. } | Event::AttemptFailed { .. }
                )),
                "{name}: the connection ends: {value:?}"
            );
            for (i, (v, w)) in value.iter().zip(&wire.events).enumerate() {
                assert_eq!(v, w, "{name}, seed {seed}: event {i} differs");
            }
            // The same through an inline session, polled by the application's task.
            let inline = run_driver_inline(
                Config::default(),
                hello(),
                ending(end, reject.clone()),
                seed,
                value_net(),
                requests(),
                duration,
            )
            .unwrap();
            assert_eq!(
                value, inline,
                "{name}, seed {seed}: Client and Inline differ"
            );
            assert_eq!(value.len(), wire.events.len(), "{name}, seed {seed}");
        }
    }
}
