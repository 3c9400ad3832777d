//! Issue 13 item 1 in the simulator: a resumable stream of a recovering `HelloAck`
//! session carries on across a dropped connection with no duplicate and no hole, and
//! ends as `Unrecoverable` when a restart made the server forget it; the oracle reports a
//! hole that no gap announced.

use std::time::Duration;

use serde_json::json;
use tether_core::profiles::{HelloAck, HelloAckRequest, JsonPayload};
use tether_core::{Config, Event, OutFrame, Output, StreamEnd, StreamEventKind};
use tether_sim::servers::HelloAckServer;
use tether_sim::{Command, Entry, Fault, FaultPlan, Run, RunConfig, Script, World, oracle};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A resumable stream requested at 1 s, and `fault` 30 ms later (mid-stream), against a
/// recovering server that keeps sessions across connections, or not.
fn run(fault: Fault, forget_on_close: bool) -> Run<HelloAck> {
    let mut server = HelloAckServer::recovering();
    server.response_delay = (ms(5), ms(5));
    server.forget_on_close = forget_on_close;
    let hello = HelloAck::new(|| json!({"type": "hello"})).recovering();
    World::new(Config::default(), hello, server, 9)
        .expect("valid config")
        .plan(FaultPlan::new(vec![(ms(1030), fault)]))
        .workload(Script::new(vec![(
            ms(1000),
            Command::Request {
                request: HelloAckRequest::new("stream.words", json!({})).resumable(),
                timeout: None,
            },
        )]))
        .run(RunConfig::lasting(Duration::from_secs(120)))
}

fn stream_events(run: &Run<HelloAck>) -> Vec<(Option<u64>, StreamEventKind<JsonPayload>)> {
    run.timeline
        .outputs()
        .filter_map(|(_, _, o)| match o {
            Output::Event(Event::Stream(ev)) => Some((ev.seq, ev.kind.clone())),
            _ => None,
        })
        .collect()
}

fn hellos(run: &Run<HelloAck>) -> Vec<serde_json::Value> {
    run.timeline
        .outputs()
        .filter_map(|(_, _, o)| match o {
            Output::SendFrame {
                payload: OutFrame::Text(t),
                ..
            } => serde_json::from_str::<serde_json::Value>(t.as_str()).ok(),
            _ => None,
        })
        .filter(|v| v["type"] == "hello")
        .collect()
}

#[test]
fn a_resumable_stream_carries_on_across_a_drop_with_no_duplicate_and_no_hole() {
    let run = run(Fault::Drop, false);
    let hellos = hellos(&run);
    assert!(hellos.len() >= 2, "reconnected: {hellos:?}");
    assert_eq!(
        hellos[1]["resume"]["session"], "sim-session-0",
        "{hellos:?}"
    );
    assert!(
        hellos[1]["resume"]["streams"]["0"]
            .as_u64()
            .is_some_and(|p| p < 5),
        "resumed mid-stream: {hellos:?}"
    );
    let events = stream_events(&run);
    let seqs: Vec<u64> = events.iter().filter_map(|(s, _)| *s).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5], "{events:?}");
    assert!(matches!(
        events.last(),
        Some((_, StreamEventKind::Final { .. }))
    ));
    assert!(
        !events
            .iter()
            .any(|(_, k)| matches!(k, StreamEventKind::Gap { .. } | StreamEventKind::Ended(_))),
        "{events:?}"
    );
    let broken = oracle::check(&run.timeline);
    assert!(broken.is_empty(), "{broken:#?}");
}

#[test]
fn a_server_that_forgot_the_session_ends_the_stream_unrecoverable() {
    let run = run(Fault::Drop, true);
    let events = stream_events(&run);
    assert!(
        matches!(
            events.last(),
            Some((_, StreamEventKind::Ended(StreamEnd::Unrecoverable)))
        ),
        "{events:?}"
    );
    let broken = oracle::check(&run.timeline);
    assert!(broken.is_empty(), "{broken:#?}");
}

/// The oracle judges the numbering the application saw: with one delivered event taken
/// out, the next one arrives after a hole no gap announced.
#[test]
fn a_hole_with_no_gap_is_reported() {
    let mut run = run(Fault::Drop, false);
    let third = run
        .timeline
        .records
        .iter()
        .position(|r| {
            matches!(&r.entry, Entry::Output(Output::Event(Event::Stream(ev))) if ev.seq == Some(3))
        })
        .expect("seq 3 delivered");
    run.timeline.records.remove(third);
    let v = oracle::stream_events_once(&run.timeline).expect("reported");
    assert!(v.detail.contains("no gap announced"), "{v}");
}
