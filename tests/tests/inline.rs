//! The inline session (`Builder::inline`) against servers this project did not write: a
//! Python `websockets` 17 server and a Node `ws` 8 server speaking the HelloAck profile,
//! on tokio and on smol. The application's own task polls the session; nothing else
//! drives it.
//!
//! One walk through a session's life per peer and runtime: the handshake; requests one at
//! a time and sixteen at once, each resolved by the `Response` event with its id; a
//! stream of 40 events and its final; the server killed (SIGKILL) with a request in
//! flight, which fails as lost; the server restarted on the same port and the session
//! reconnecting by itself while it is polled; requests again; and a clean close that the
//! server sees as 1000, after which the stream of events ends.
//!
//! The peers come from `scripts/interop-setup.sh`, as for `tests/interop.rs`;
//! `TETHER_SKIP_INTEROP=1` skips these tests.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use tether_driver::{Inline, SendProtocol};
use tether_tests::peers::{Peer, Server, free_port, peers};
use tether_tests::runtimes::{OnSmol, OnTokio, TestRuntime as Rt, within};
use tether_tokio::tether_core::profiles::{HelloAck, HelloAckRequest, JsonPayload};
use tether_tokio::tether_core::{
    Config, EndReason, Event, Jitter, RequestFailure, RequestId, Status, StreamEventKind,
};

/// The bound on any one step.
const STEP: Duration = Duration::from_secs(5);
/// The bound on starting a server (an interpreter's cold start on a busy machine).
const START: Duration = Duration::from_secs(20);
/// The events of the server's `count` stream before its final.
const COUNT: u64 = 40;

fn config() -> Config {
    Config::builder()
        .connect_timeout(Duration::from_secs(2))
        .handshake_timeout(Duration::from_secs(2))
        .ping_interval(Some(Duration::from_millis(200)))
        .stale_after(Duration::from_millis(800))
        .backoff_schedule(vec![Duration::from_millis(100), Duration::from_millis(200)])
        .jitter(Jitter::Equal)
        .request_timeout(Duration::from_secs(3))
        .close_timeout(Duration::from_secs(1))
        .build()
        .expect("valid config")
}

type Session<R> = Inline<HelloAck, <R as Rt>::Runtime>;

/// Polls until `done` says an event was the one awaited; every event seen is returned.
async fn until<R: Rt, P: SendProtocol>(
    rt: &R,
    what: &str,
    session: &mut Inline<P, R::Runtime>,
    mut done: impl FnMut(&Event<P>) -> bool,
) -> Vec<Event<P>> {
    within(rt, STEP, what, async {
        let mut seen = Vec::new();
        while let Some(ev) = session.next().await {
            let stop = done(&ev);
            seen.push(ev);
            if stop {
                return seen;
            }
        }
        panic!("the session ended while waiting for {what}: {seen:?}")
    })
    .await
}

/// Sends `requests` at once and waits for every response; returns them by id.
async fn requests<R: Rt>(
    rt: &R,
    session: &mut Session<R>,
    requests: Vec<(&str, Value)>,
) -> HashMap<RequestId, (Value, Result<JsonPayload, RequestFailure<JsonPayload>>)> {
    let mut pending = HashMap::new();
    for (method, params) in requests {
        let id = session
            .request(HelloAckRequest::new(method, params.clone()))
            .expect("accepted");
        pending.insert(id, params);
    }
    let mut done = HashMap::new();
    let mut left = pending.len();
    until(rt, "responses", session, |ev| {
        if let Event::Response { id, .. } = ev
            && pending.contains_key(id)
        {
            left -= 1;
        }
        left == 0
    })
    .await
    .into_iter()
    .for_each(|ev| {
        if let Event::Response { id, result } = ev
            && let Some(params) = pending.remove(&id)
        {
            done.insert(id, (params, result));
        }
    });
    done
}

/// Requests one at a time, then sixteen at once (slow and fast mixed): each answer is
/// its own request's.
async fn exercise<R: Rt>(rt: &R, session: &mut Session<R>, round: &str) {
    for n in 0..3 {
        let params = json!({ "round": round, "n": n, "text": "héllo \u{1F600}" });
        for (_, (sent, got)) in requests(rt, session, vec![("echo", params)]).await {
            assert_eq!(
                got,
                Ok(sent.into()),
                "[{}] sequential echo ({round})",
                rt.name()
            );
        }
    }
    let batch = (0..16)
        .map(|n| {
            let method = if n % 2 == 0 { "slow" } else { "echo" };
            (method, json!({ "round": round, "n": n, "method": method }))
        })
        .collect();
    let answers = requests(rt, session, batch).await;
    assert_eq!(answers.len(), 16);
    for (sent, got) in answers.into_values() {
        assert_eq!(
            got,
            Ok(sent.into()),
            "[{}] concurrent request ({round})",
            rt.name()
        );
    }
}

async fn inline_session<R: Rt>(rt: R, peer: Peer) {
    let Some(peers) = peers() else { return };
    let tag = format!("[{} {peer:?}]", rt.name());
    let port = free_port();
    let url = format!("ws://127.0.0.1:{port}/tether");
    let mut server = within(
        &rt,
        START,
        "server start",
        Server::start(rt, peers, peer, port),
    )
    .await;
    let hello = HelloAck::new(|| json!({ "type": "hello", "client": "tether-inline" }));
    let mut session: Session<R> = rt
        .builder(&url)
        .protocol(hello)
        .config(config())
        .subprotocols(["chat.v2"])
        .inline()
        .expect("valid options");

    // 1. The handshake happens while the application polls.
    until(&rt, "open", &mut session, |ev| {
        matches!(ev, Event::Opened { .. })
    })
    .await;
    assert_eq!(session.status(), Status::Open, "{tag}");
    assert_eq!(session.subprotocol().as_deref(), Some("chat.v2"), "{tag}");
    assert_eq!(server.connections(rt, 1).await, 1, "{tag}");

    // 2. Requests.
    exercise(&rt, &mut session, "first").await;

    // 3. A stream: every event once, in order, then its final; its response on the way.
    let stream = session
        .request(HelloAckRequest::new("count", json!({})).streaming())
        .expect("accepted");
    let mut seqs = Vec::new();
    let mut responded = false;
    until(&rt, "the stream", &mut session, |ev| match ev {
        Event::Stream(s) if s.request == Some(stream) => {
            seqs.extend(s.seq);
            matches!(s.kind, StreamEventKind::Final { .. })
        }
        Event::Response { id, result } if *id == stream => {
            assert!(result.is_ok(), "{result:?}");
            responded = true;
            false
        }
        _ => false,
    })
    .await;
    assert!(responded, "{tag}: the stream's request got its response");
    assert_eq!(seqs, (1..=COUNT + 1).collect::<Vec<_>>(), "{tag}");

    // 4. SIGKILL with a slow request in flight: it fails as lost, the session reconnects
    //    by itself once the server is back, and requests work again.
    let doomed = session
        .request(HelloAckRequest::new("slow", json!({ "doomed": true })))
        .expect("accepted");
    session.flush().await;
    server.kill();
    let seen = until(
        &rt,
        "the doomed request",
        &mut session,
        |ev| matches!(ev, Event::Response { id, .. } if *id == doomed),
    )
    .await;
    match seen.last() {
        Some(Event::Response { result, .. }) => {
            assert!(
                matches!(result, Err(RequestFailure::Disconnected)),
                "{tag}: {result:?}"
            );
        }
        other => panic!("{tag}: {other:?}"),
    }
    let mut restarted = within(
        &rt,
        START,
        "server restart",
        Server::start(rt, peers, peer, port),
    )
    .await;
    until(&rt, "reopen", &mut session, |ev| {
        matches!(ev, Event::Opened { .. })
    })
    .await;
    exercise(&rt, &mut session, "second").await;

    // 5. A clean close: the server sees 1000, and the events end after `Ended`.
    session.close();
    let rest = within(&rt, STEP, "the close", async {
        let mut rest = Vec::new();
        while let Some(ev) = session.next().await {
            rest.push(ev);
        }
        rest
    })
    .await;
    assert!(
        matches!(rest.last(), Some(Event::Ended(EndReason::ClosedByUser))),
        "{tag}: {rest:?}"
    );
    let closed = restarted.closed_with(rt, 1000).await;
    assert!(
        closed.iter().any(|c| c.ends_with(" 1000")),
        "{tag}: the server saw {closed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_against_python_on_tokio() {
    inline_session(OnTokio, Peer::Python).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_against_node_on_tokio() {
    inline_session(OnTokio, Peer::Node).await;
}

#[test]
fn inline_against_python_on_smol() {
    smol::block_on(inline_session(OnSmol, Peer::Python));
}

#[test]
fn inline_against_node_on_smol() {
    smol::block_on(inline_session(OnSmol, Peer::Node));
}
