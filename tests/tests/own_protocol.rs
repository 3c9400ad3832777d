//! The guide's example: a user testing their own `Protocol` under faults. The code between
//! the markers is shown verbatim in `docs/simulation.md` ("Testing your own protocol");
//! `the_guide_shows_this_example` fails when the two differ.

// --- example start ---
use std::{convert::Infallible, time::Duration};
use tether_core::*;
use tether_sim::*;

/// One line of text per frame; the server's `ready` opens the session.
struct Lines;

impl Protocol for Lines {
    type Inbound = String;
    type Outbound = String;
    type Request = Infallible;
    type Response = Infallible;
    type RemoteError = Infallible;
    fn open(&mut self, _: ConnId) -> Result<Opening, EncodeError> {
        Ok(Opening::AwaitServer)
    }
    fn encode(&mut self, line: String) -> Result<OutFrame, EncodeError> {
        Ok(OutFrame::text(line))
    }
    fn decode(&mut self, frame: DataFrame, _: Phase) -> Decoded<Self> {
        match frame {
            DataFrame::Text(t) if t.as_str() == "ready" => Decoded::Ack(Acked::default()),
            DataFrame::Text(t) => Decoded::Message(t.as_str().to_owned()),
            DataFrame::Binary(_) => Decoded::Violation(Violation::UnexpectedBinary),
        }
    }
}

#[test]
fn lines_survive_drops_half_open_links_and_restarts() {
    let echo = FnServer::new(|event, ctx| match event {
        ServerEvent::Open(conn) => ctx.send(conn, Wire::text("ready")),
        ServerEvent::Frame(conn, frame) => ctx.send(conn, frame),
        _ => {}
    });
    let secs = Duration::from_secs;
    let plan = FaultPlan::new(vec![
        (secs(60), Fault::Drop),
        (secs(120), Fault::HalfOpen(secs(90))),
        (secs(240), Fault::ServerClose(1012, "restart".into())),
    ]);
    let chatter = Poisson::new(secs(5), |r| Command::Send(format!("n{}", r.u32(..))));
    let run = World::new(Config::default(), Lines, echo, 42)
        .unwrap()
        .plan(plan)
        .workload(chatter)
        .run(RunConfig::lasting(secs(600)));
    assert_eq!(oracle::check(&run.timeline), []);
    assert_eq!(run.stats.opens, 4);
    assert!(run.stats.messages > 50);
}
// --- example end ---

#[test]
fn the_guide_shows_this_example() {
    let guide = include_str!("../../docs/simulation.md");
    let example = tether_tests::guide::example(include_str!("own_protocol.rs"));
    let shown = tether_tests::guide::fenced_after(guide, "<!-- tests/tests/own_protocol.rs -->");
    assert!(
        shown == example,
        "docs/simulation.md and tests/tests/own_protocol.rs disagree: copy the example \
         between the markers into the guide (or the other way round)"
    );
}
