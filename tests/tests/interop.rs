//! Interop with WebSocket servers this project did not write: a Python `websockets` 17.x
//! server (`interop/python_server.py`) and a Node `ws` 8.x server (`interop/node/server.js`),
//! each speaking the HelloAck profile, driven by the tokio and the smol adapters.
//!
//! Each test starts a real server process on a free 127.0.0.1 port and walks one session
//! through its life: handshake, sequential and concurrent requests, the server killed
//! (SIGKILL) with a request in flight, the server restarted on the same port, the session
//! reconnecting by itself, requests again, and finally a fatal close 4001 after which the
//! session ends `Failed` and never dials again.
//!
//! A second scenario proves recovery across reconnect (issue 13, item 1): a resumable
//! stream of 40 events, the server killed (SIGKILL) part way and restarted on the same
//! port; the session resumes with the recovery dialect and the stream carries on to its
//! final with no duplicate and no hole.
//!
//! The peers come from `scripts/interop-setup.sh` (a venv in `.interop/venv`, `npm ci` in
//! `interop/node`). `./scripts/test.sh` runs it and exports `TETHER_INTEROP_PYTHON` and
//! `TETHER_INTEROP_NODE_DIR`; when they are unset the tests run the script themselves.
//! `TETHER_SKIP_INTEROP=1` skips these tests (they print that they did).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::future::join_all;
use serde_json::{Value, json};
use tether_tests::peers::{Peer, Server, free_port, peers, ready_items};
use tether_tests::runtimes::{OnSmol as SmolRt, OnTokio as TokioRt, TestRuntime as Rt, within};
use tether_tokio::tether_core::profiles::{HelloAck, HelloAckRequest};
use tether_tokio::tether_core::{
    AttemptError, CloseClass, CloseCode, ClosePolicy, Config, DisconnectReason, EndReason, Event,
    Jitter, RequestError, RequestFailure, SessionError, Status, StreamEventKind, TransportFailure,
};
use tether_tokio::{CallError, Client};

// --- the scenario ---------------------------------------------------------------------------

/// The bound on any one step of the scenario.
const STEP: Duration = Duration::from_secs(5);
/// The bound on starting a server (an interpreter's cold start on a busy machine).
const START: Duration = Duration::from_secs(20);

fn config() -> Config {
    let policy = ClosePolicy::default();
    // The scenario ends on 4001; the default table must keep it fatal.
    assert_eq!(
        policy.classify_close(CloseCode::AUTH_FAILED),
        CloseClass::Fatal
    );
    Config::builder()
        .connect_timeout(Duration::from_secs(2))
        .handshake_timeout(Duration::from_secs(2))
        .ping_interval(Some(Duration::from_millis(200)))
        .stale_after(Duration::from_millis(800))
        .backoff_schedule(vec![
            Duration::from_millis(100),
            Duration::from_millis(200),
            Duration::from_millis(300),
        ])
        .jitter(Jitter::Equal)
        .stable_after(Duration::from_millis(300))
        .request_timeout(Duration::from_secs(3))
        .close_timeout(Duration::from_secs(1))
        .close_policy(policy)
        .build()
        .expect("valid config")
}

fn req(method: &str, params: Value) -> HelloAckRequest {
    HelloAckRequest::new(method, params)
}

/// Sequential echoes, then a concurrent batch of slow and fast requests.
async fn exercise<R: Rt>(rt: R, client: &Client<HelloAck>, round: &str) {
    for n in 0..5 {
        let params = json!({ "round": round, "n": n, "text": "héllo \u{1F600}" });
        let got = within(
            &rt,
            STEP,
            "echo",
            client.request(req("echo", params.clone())),
        )
        .await;
        assert_eq!(got, Ok(params.into()), "sequential echo {n} ({round})");
    }
    // Eight slow requests (200 ms each on the server) and eight fast ones at once: if the
    // session or the server serialised them this would take at least 1.6 s.
    let started = Instant::now();
    let calls = (0..16).map(|n| {
        let method = if n % 2 == 0 { "slow" } else { "echo" };
        let params = json!({ "round": round, "n": n, "method": method });
        async move { (params.clone(), client.request(req(method, params)).await) }
    });
    let results = within(&rt, STEP, "concurrent batch", join_all(calls)).await;
    for (params, got) in results {
        assert_eq!(got, Ok(params.into()), "concurrent request ({round})");
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_millis(1600),
        "concurrent requests took {elapsed:?}: were they serialised?"
    );
}

async fn scenario<R: Rt>(rt: R, peer: Peer) {
    let Some(peers) = peers() else { return };
    let port = free_port();
    let url = format!("ws://127.0.0.1:{port}/tether");
    let mut server = within(
        &rt,
        START,
        "server start",
        Server::start(rt, peers, peer, port),
    )
    .await;

    // 1. Handshake: the hello carries no secret worth hiding here, but is built per attempt.
    let hellos = Arc::new(Mutex::new(0u32));
    let counter = hellos.clone();
    let hello = HelloAck::new(move || {
        let mut n = counter.lock().unwrap_or_else(|e| e.into_inner());
        *n += 1;
        json!({ "type": "hello", "client": "tether-interop", "attempt": *n })
    });
    let client = within(&rt, STEP, "connect", rt.connect(&url, config(), hello))
        .await
        .unwrap_or_else(|e| panic!("connect to the {peer:?} server: {e}"));
    assert_eq!(client.status(), Status::Open);
    let mut statuses = client.status_changes();
    let mut events = client.events();
    assert_eq!(server.connections(rt, 1).await, 1);

    // 2. Requests, one by one and many at once.
    exercise(rt, &client, "first").await;

    // 3. SIGKILL with a request in flight: the server answers "slow" after 200 ms, and dies
    //    100 ms after the request went out.
    let inflight = client.request(req("slow", json!({ "doomed": true })));
    let killer = async {
        rt.sleep(Duration::from_millis(100)).await;
        server.kill();
    };
    let (result, ()) = within(
        &rt,
        STEP,
        "in-flight request",
        futures::future::join(inflight, killer),
    )
    .await;
    assert_eq!(
        result,
        Err(CallError::Failed(RequestFailure::Disconnected)),
        "the request in flight when the server died"
    );
    let s = within(&rt, STEP, "Reconnecting", statuses.next()).await;
    assert_eq!(s, Some(Status::Reconnecting));

    // 4. Down for a while (refused dials), then back on the same port.
    rt.sleep(Duration::from_millis(400)).await;
    assert_eq!(client.status(), Status::Reconnecting);
    server = within(
        &rt,
        START,
        "server restart",
        Server::start(rt, peers, peer, port),
    )
    .await;
    let s = within(&rt, STEP, "Open again", statuses.next()).await;
    assert_eq!(s, Some(Status::Open));
    assert_eq!(client.status(), Status::Open);

    // The status is published a moment before the event that goes with it.
    let seen = within(&rt, STEP, "Opened event", async {
        let mut seen = Vec::new();
        while let Some(event) = events.next().await {
            let reopened = matches!(event, Event::Opened { first: false, .. });
            if !matches!(event, Event::Response { .. }) {
                seen.push(event);
            }
            if reopened {
                break;
            }
        }
        seen
    })
    .await;
    let disconnected = seen.iter().position(|e| {
        matches!(
            e,
            Event::Disconnected {
                reason: DisconnectReason::Closed { code: None, .. },
                retry: Some(_),
                ..
            }
        )
    });
    let refused = seen.iter().position(|e| {
        matches!(
            e,
            Event::AttemptFailed {
                error: AttemptError::Transport(TransportFailure::Refused),
                retry: Some(_),
                ..
            }
        )
    });
    let reopened = seen
        .iter()
        .position(|e| matches!(e, Event::Opened { first: false, .. }));
    assert!(
        matches!((disconnected, refused, reopened), (Some(d), Some(r), Some(o)) if d < r && r < o),
        "expected Disconnected (no close frame), a refused attempt, then Opened; got {seen:#?}"
    );
    assert!(
        *hellos.lock().unwrap() >= 2,
        "each connection sends a fresh hello"
    );
    assert_eq!(
        server.connections(rt, 1).await,
        1,
        "the restarted server saw one connection"
    );

    // 5. The session serves again, and stays open through a quiet spell longer than the
    //    stale threshold: the peer's library answers the session's pings.
    exercise(rt, &client, "after restart").await;
    rt.sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        client.status(),
        Status::Open,
        "pongs keep the connection alive"
    );
    let quiet: Vec<_> = ready_items(&mut events)
        .into_iter()
        .filter(|e| !matches!(e, Event::Response { .. }))
        .collect();
    assert!(quiet.is_empty(), "events in the quiet spell: {quiet:#?}");
    assert_eq!(
        ready_items(&mut statuses),
        [],
        "no status change while quiet"
    );

    // 6. A fatal close: the server answers, then closes with 4001 "auth revoked".
    let got = within(
        &rt,
        STEP,
        "close4001",
        client.request(req("close4001", json!({ "bye": 1 }))),
    )
    .await;
    assert_eq!(
        got,
        Ok(json!({ "bye": 1 }).into()),
        "close4001 is answered before the close"
    );
    let s = within(&rt, STEP, "Failed", statuses.next()).await;
    assert_eq!(s, Some(Status::Failed));
    assert_eq!(client.status(), Status::Failed);
    let ended = within(&rt, STEP, "Ended event", async {
        while let Some(event) = events.next().await {
            if let Event::Ended(reason) = event {
                return reason;
            }
        }
        panic!("the event stream ended without Event::Ended");
    })
    .await;
    assert_eq!(
        ended,
        EndReason::Failed(SessionError::FatalClose {
            code: CloseCode::AUTH_FAILED,
            reason: "auth revoked".into(),
        })
    );
    assert_eq!(
        within(&rt, STEP, "wait_open after Failed", client.wait_open()).await,
        Err(ended)
    );
    // The client answered the server's close frame: the server saw 4001 back, not 1006.
    let closed = server.closed_with(rt, 4001).await;
    assert!(
        closed.iter().any(|c| c.ends_with(" 4001")),
        "[{peer:?}] the server's view of its closes: {closed:?}"
    );

    // 7. No further attempt: longer than the whole backoff schedule, nothing happens.
    let connections = server.count_connections();
    rt.sleep(Duration::from_millis(800)).await;
    assert_eq!(
        server.count_connections(),
        connections,
        "a failed session must not dial again"
    );
    assert_eq!(
        ready_items(&mut statuses),
        [],
        "no status change after Failed"
    );
    let late: Vec<_> = ready_items(&mut events);
    assert!(
        !late
            .iter()
            .any(|e| matches!(e, Event::AttemptFailed { .. } | Event::Opened { .. })),
        "events after the end: {late:#?}"
    );
    assert_eq!(
        within(
            &rt,
            STEP,
            "request after Failed",
            client.request(req("echo", json!(1)))
        )
        .await,
        Err(CallError::Refused(RequestError::Ended))
    );
}

/// The count stream's length on both servers.
const COUNT: u64 = 40;

/// Recovery: a resumable `count` stream, the server killed after event 10 and restarted
/// on the same port; the session resumes it and the application sees events 1..=40 and
/// the final exactly once, in order, with no gap and no terminal before the final.
async fn recovery<R: Rt>(rt: R, peer: Peer) {
    let Some(peers) = peers() else { return };
    let port = free_port();
    let url = format!("ws://127.0.0.1:{port}/tether");
    let mut server = within(
        &rt,
        START,
        "server start",
        Server::start(rt, peers, peer, port),
    )
    .await;
    let hello = HelloAck::new(|| json!({ "client": "tether-interop" })).recovering();
    let client = within(&rt, STEP, "connect", rt.connect(&url, config(), hello))
        .await
        .unwrap_or_else(|e| panic!("connect to the {peer:?} server: {e}"));
    let mut statuses = client.status_changes();
    let mut call = within(
        &rt,
        STEP,
        "stream",
        client.stream(req("count", json!({})).resumable(), None),
    )
    .await
    .expect("the stream starts");
    let mut seen = Vec::new();
    // Part way: at event 10, the server dies.
    within(&rt, STEP, "ten events", async {
        while let Some(ev) = call.events.next().await {
            let ten = ev.seq == Some(10);
            seen.push(ev);
            if ten {
                return;
            }
        }
        panic!("the stream ended early");
    })
    .await;
    server.kill();
    let s = within(&rt, STEP, "Reconnecting", statuses.next()).await;
    assert_eq!(s, Some(Status::Reconnecting));
    rt.sleep(Duration::from_millis(200)).await;
    let _server = within(
        &rt,
        START,
        "server restart",
        Server::start(rt, peers, peer, port),
    )
    .await;
    within(&rt, STEP, "the rest of the stream", async {
        while let Some(ev) = call.events.next().await {
            let terminal = ev.kind.is_terminal();
            seen.push(ev);
            if terminal {
                return;
            }
        }
        panic!("the stream ended without a terminal");
    })
    .await;
    let seqs: Vec<u64> = seen.iter().filter_map(|ev| ev.seq).collect();
    let expected: Vec<u64> = (1..=COUNT + 1).collect();
    assert_eq!(seqs, expected, "[{peer:?}] every event once, in order");
    assert!(
        !seen
            .iter()
            .any(|ev| matches!(ev.kind, StreamEventKind::Gap { .. })),
        "[{peer:?}] no gap"
    );
    let whole: String = (1..=COUNT).map(|k| format!("{k} ")).collect();
    match seen.last().map(|ev| &ev.kind) {
        Some(StreamEventKind::Final { text, .. }) => {
            assert_eq!(text.as_deref(), Some(whole.as_str()), "[{peer:?}]");
        }
        other => panic!("[{peer:?}] ended with {other:?}"),
    }
    assert_eq!(client.status(), Status::Open);
    within(&rt, STEP, "close", client.close()).await;
}

// --- the tests ------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_recovers_a_stream_from_python_websockets() {
    recovery(TokioRt, Peer::Python).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_recovers_a_stream_from_node_ws() {
    recovery(TokioRt, Peer::Node).await;
}

#[test]
fn smol_recovers_a_stream_from_python_websockets() {
    smol::block_on(recovery(SmolRt, Peer::Python));
}

#[test]
fn smol_recovers_a_stream_from_node_ws() {
    smol::block_on(recovery(SmolRt, Peer::Node));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_with_python_websockets() {
    scenario(TokioRt, Peer::Python).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_with_node_ws() {
    scenario(TokioRt, Peer::Node).await;
}

#[test]
fn smol_with_python_websockets() {
    smol::block_on(scenario(SmolRt, Peer::Python));
}

#[test]
fn smol_with_node_ws() {
    smol::block_on(scenario(SmolRt, Peer::Node));
}
