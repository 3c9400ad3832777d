//! Row 20 in the simulator: an idempotent request in flight when the server closes is
//! written again, unchanged, on the next connection and answered once; a plain one fails
//! at once. The oracle notices a retry that was owed and never written.

use std::time::Duration;

use serde_json::json;
use tether_core::profiles::{HelloAck, HelloAckRequest, JsonPayload};
use tether_core::{Config, Event, OutFrame, Output, RequestFailure};
use tether_sim::servers::HelloAckServer;
use tether_sim::{Command, Entry, Fault, FaultPlan, Run, RunConfig, Script, World, oracle};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A request at 1 s, the server closing (1011) 1 ms later, before its 40–50 ms answer.
fn run(request: HelloAckRequest) -> Run<HelloAck> {
    let mut server = HelloAckServer::default();
    server.response_delay = (ms(40), ms(50));
    let hello = HelloAck::new(|| json!({"type": "hello"}));
    World::new(Config::default(), hello, server, 5)
        .expect("valid config")
        .plan(FaultPlan::new(vec![(
            ms(1001),
            Fault::ServerClose(1011, "oops".into()),
        )]))
        .workload(Script::new(vec![(
            ms(1000),
            Command::Request {
                request,
                timeout: None,
            },
        )]))
        .run(RunConfig::lasting(Duration::from_secs(30)))
}

fn request_frames(run: &Run<HelloAck>) -> Vec<String> {
    run.timeline
        .outputs()
        .filter_map(|(_, _, o)| match o {
            Output::SendFrame {
                payload: OutFrame::Text(t),
                ..
            } if t.as_str().contains("\"request\"") => Some(t.as_str().to_owned()),
            _ => None,
        })
        .collect()
}

fn responses(run: &Run<HelloAck>) -> Vec<Result<(), RequestFailure<JsonPayload>>> {
    run.timeline
        .outputs()
        .filter_map(|(_, _, o)| match o {
            Output::Event(Event::Response { result, .. }) => Some(result.clone().map(|_| ())),
            _ => None,
        })
        .collect()
}

#[test]
fn an_idempotent_request_survives_the_servers_close_and_is_answered_once() {
    let run = run(HelloAckRequest::new("echo", json!({"n": 1})).idempotent());
    let frames = request_frames(&run);
    assert_eq!(
        frames.len(),
        2,
        "written again after the reconnect: {frames:?}"
    );
    assert_eq!(frames[0], frames[1], "unchanged");
    assert!(frames[0].contains("idempotencyKey"));
    assert_eq!(responses(&run), [Ok(())]);
    let broken = oracle::check(&run.timeline);
    assert!(broken.is_empty(), "{broken:#?}");
}

#[test]
fn a_plain_request_fails_at_once_and_is_not_sent_again() {
    let run = run(HelloAckRequest::new("echo", json!({"n": 1})));
    assert_eq!(request_frames(&run).len(), 1);
    assert_eq!(responses(&run), [Err(RequestFailure::Disconnected)]);
    let broken = oracle::check(&run.timeline);
    assert!(broken.is_empty(), "{broken:#?}");
}

/// The oracle judges the rewrite from the run: with the second write removed, the loss
/// that left the request unresolved is reported.
#[test]
fn a_retry_owed_and_never_written_is_reported() {
    let mut run = run(HelloAckRequest::new("echo", json!({"n": 1})).idempotent());
    let second = run
        .timeline
        .records
        .iter()
        .enumerate()
        .filter(|(_, r)| {
            matches!(&r.entry, Entry::Output(Output::SendFrame { payload: OutFrame::Text(t), .. })
                if t.as_str().contains("\"request\""))
        })
        .map(|(i, _)| i)
        .nth(1)
        .expect("a second write");
    run.timeline.records.remove(second);
    let v = oracle::requests_resolve_once(&run.timeline).expect("reported");
    assert!(
        v.detail.contains("instead of failing Disconnected at once"),
        "{v}"
    );
}
