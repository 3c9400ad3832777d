//! The front door (issue 14) against a server this project did not write: the builder of
//! each adapter, its upgrade headers (fixed and computed per attempt), subprotocols as RFC
//! 6455 says, the ordered stream of statuses and events, and errors that read well. Each
//! test runs on tokio and on smol against the Python `websockets` 17 peer
//! (`interop/python_server.py`), started on a free loopback port and killed on every path.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use tether_tests::peers::{Peer, Server, free_port, peers};
use tether_tests::runtimes::{OnSmol, OnTokio, TestRuntime as Rt, within};
use tether_tokio::tether_core::profiles::{HelloAck, HelloAckRequest};
use tether_tokio::tether_core::{Config, Event, RequestError, Status};
use tether_tokio::{CallError, Client, ConnectError, Update};

const STEP: Duration = Duration::from_secs(5);
const START: Duration = Duration::from_secs(20);

fn hello() -> HelloAck {
    HelloAck::new(|| json!({ "client": "tether-front-door" }))
}

/// The upgrade request's headers and the subprotocol, as the server saw them.
async fn seen_by_server<R: Rt>(rt: &R, client: &Client<HelloAck>) -> Value {
    within(
        rt,
        STEP,
        "headers request",
        client.request(HelloAckRequest::new("headers", json!(null))),
    )
    .await
    .expect("the server answers")
    .value()
    .expect("JSON")
}

/// Waits for the next `Status::Open` on `updates`.
async fn next_open<R: Rt>(
    rt: &R,
    updates: &mut (impl futures::Stream<Item = Update<HelloAck>> + Unpin),
) {
    within(rt, STEP, "open", async {
        while let Some(u) = updates.next().await {
            if u.status() == Some(Status::Open) {
                return;
            }
        }
        panic!("updates ended before Open");
    })
    .await;
}

/// Fixed headers go on every upgrade; computed ones are computed afresh for each attempt
/// (a token refreshed on reconnect), and each attempt has a key of its own.
async fn headers_per_attempt<R: Rt>(rt: R) {
    let Some(peers) = peers() else { return };
    let port = free_port();
    let _server = within(
        &rt,
        START,
        "server",
        Server::start(rt, peers, Peer::Python, port),
    )
    .await;
    let attempts = Arc::new(AtomicU32::new(0));
    let counter = attempts.clone();
    let client = rt
        .builder(&format!("ws://127.0.0.1:{port}/"))
        .protocol(hello())
        .header("x-tenant", "blue")
        .headers_with(move |_conn| {
            let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
            vec![("authorization".into(), format!("Bearer token-{n}"))]
        })
        .start()
        .expect("valid options");
    let mut updates = client.updates();
    next_open(&rt, &mut updates).await;
    let first = seen_by_server(&rt, &client).await;
    assert_eq!(first["headers"]["x-tenant"], "blue", "[{}]", rt.name());
    assert_eq!(first["headers"]["authorization"], "Bearer token-1");
    client.reconnect();
    next_open(&rt, &mut updates).await;
    let second = seen_by_server(&rt, &client).await;
    assert_eq!(second["headers"]["x-tenant"], "blue");
    assert_eq!(second["headers"]["authorization"], "Bearer token-2");
    assert_ne!(
        first["headers"]["sec-websocket-key"], second["headers"]["sec-websocket-key"],
        "a fresh key per attempt"
    );
    assert_eq!(attempts.load(Ordering::Relaxed), 2);
    within(&rt, STEP, "close", client.close()).await;
}

/// Subprotocols as RFC 6455 §4.1 says: the server selects one of those offered (reported
/// on the open), or none (the session opens without one), and one not offered fails the
/// attempt with words that say so.
async fn subprotocols<R: Rt>(rt: R) {
    let Some(peers) = peers() else { return };
    let port = free_port();
    let _server = within(
        &rt,
        START,
        "server",
        Server::start(rt, peers, Peer::Python, port),
    )
    .await;
    let offer = ["chat.v1", "chat.v2"];

    let connect = |path: &str| {
        let url = format!("ws://127.0.0.1:{port}{path}");
        let builder = rt.builder(&url).protocol(hello()).subprotocols(offer);
        within(&rt, STEP, "connect", builder.connect())
    };
    let client = connect("/").await.expect("opens");
    // The server prefers chat.v2 among those offered.
    assert_eq!(
        client.subprotocol().as_deref(),
        Some("chat.v2"),
        "[{}]",
        rt.name()
    );
    let seen = seen_by_server(&rt, &client).await;
    assert_eq!(seen["subprotocol"], "chat.v2");
    assert_eq!(
        seen["headers"]["sec-websocket-protocol"],
        "chat.v1, chat.v2"
    );
    within(&rt, STEP, "close", client.close()).await;

    let client = connect("/sub/none")
        .await
        .expect("a server that selects none is accepted");
    assert_eq!(client.subprotocol(), None);
    assert_eq!(
        seen_by_server(&rt, &client).await["subprotocol"],
        Value::Null
    );
    within(&rt, STEP, "close", client.close()).await;

    let err = connect("/sub/bogus")
        .await
        .expect_err("a subprotocol not offered fails the attempt");
    let text = err.to_string();
    assert!(text.contains("\"bogus\", which was not offered"), "{text}");
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");

    let err = rt
        .builder(&format!("ws://127.0.0.1:{port}/"))
        .subprotocols(["has space"])
        .start()
        .expect_err("not a token");
    assert!(matches!(err, ConnectError::Header(_)), "{err}");
}

/// Errors name the `host:port` and the cause in plain words.
async fn errors_read_well<R: Rt>(rt: R) {
    let Some(peers) = peers() else { return };
    let port = free_port();
    let _server = within(
        &rt,
        START,
        "server",
        Server::start(rt, peers, Peer::Python, port),
    )
    .await;
    let err = within(
        &rt,
        STEP,
        "connect",
        rt.builder(&format!("ws://127.0.0.1:{port}/reject/401"))
            .connect(),
    )
    .await
    .expect_err("401");
    assert_eq!(
        err.to_string(),
        format!(
            "could not connect to 127.0.0.1:{port}: the server answered 401 to the upgrade \
             (fatal: not retried)"
        ),
        "[{}]",
        rt.name()
    );

    let closed = free_port();
    let err = within(
        &rt,
        STEP,
        "connect",
        rt.builder(&format!("ws://127.0.0.1:{closed}/")).connect(),
    )
    .await
    .expect_err("nothing listens");
    assert_eq!(
        err.to_string(),
        format!(
            "could not connect to 127.0.0.1:{closed}: connection refused (the first connect \
             is not retried)"
        )
    );

    let err = rt
        .builder(&format!("ws://127.0.0.1:{port}/"))
        .header("bad header", "x")
        .start()
        .expect_err("bad name");
    assert_eq!(err.to_string(), "invalid header name \"bad header\"");

    let client = within(
        &rt,
        STEP,
        "connect",
        rt.builder(&format!("ws://127.0.0.1:{port}/"))
            .protocol(hello())
            .connect(),
    )
    .await
    .expect("opens");
    let r = client
        .request_with_timeout(HelloAckRequest::new("echo", json!(1)), Duration::ZERO)
        .await;
    assert_eq!(r, Err(CallError::Refused(RequestError::ZeroTimeout)));
    within(&rt, STEP, "close", client.close()).await;
}

/// What one update is, in words that compare across runtimes.
fn label(u: &Update<HelloAck>) -> String {
    match u {
        Update::Status(s) => format!("status {s}"),
        Update::Event(Event::Opened { first, .. }) => format!("opened first={first}"),
        Update::Event(Event::Response { result, .. }) => format!("response ok={}", result.is_ok()),
        Update::Event(Event::Disconnected { .. }) => "disconnected".into(),
        Update::Event(Event::Ended(_)) => "ended".into(),
        Update::Event(e) => format!("{e:?}"),
        other => format!("{other:?}"),
    }
}

/// Statuses and events come in one stream, in the order the session decided them: the
/// same list on tokio and smol, from the first `connecting` to the fatal close's end.
async fn ordered_updates<R: Rt>(rt: R) -> Vec<String> {
    let Some(peers) = peers() else {
        return Vec::new();
    };
    let port = free_port();
    let _server = within(
        &rt,
        START,
        "server",
        Server::start(rt, peers, Peer::Python, port),
    )
    .await;
    let client = rt
        .builder(&format!("ws://127.0.0.1:{port}/"))
        .protocol(hello())
        .config(Config::default())
        .start()
        .expect("valid");
    let mut updates = client.updates();
    let mut seen = Vec::new();
    within(&rt, STEP, "open", async {
        while let Some(u) = updates.next().await {
            seen.push(label(&u));
            if u.status() == Some(Status::Open) {
                return;
            }
        }
    })
    .await;
    // The server answers, then closes 4001, which the default policy calls fatal.
    let _ = within(
        &rt,
        STEP,
        "close4001",
        client.request(HelloAckRequest::new("close4001", json!(null))),
    )
    .await;
    within(&rt, STEP, "the end", async {
        while let Some(u) = updates.next().await {
            seen.push(label(&u));
            if matches!(u, Update::Event(Event::Ended(_))) {
                return;
            }
        }
    })
    .await;
    seen
}

/// The builder's recorder writes the session's trace (here into a ring buffer), and its
/// seed is the one given.
async fn records<R: Rt>(rt: R) {
    use tether_tokio::record::{Recorder, RingBuffer};
    let Some(peers) = peers() else { return };
    let port = free_port();
    let _server = within(
        &rt,
        START,
        "server",
        Server::start(rt, peers, Peer::Python, port),
    )
    .await;
    let ring = RingBuffer::new(Duration::from_secs(600), 1 << 20);
    let client = within(
        &rt,
        STEP,
        "connect",
        rt.builder(&format!("ws://127.0.0.1:{port}/"))
            .protocol(hello())
            .record(Recorder::to_ring(&ring))
            .seed(42)
            .connect(),
    )
    .await
    .expect("opens");
    let _ = seen_by_server(&rt, &client).await;
    within(&rt, STEP, "close", client.close()).await;
    drop(client);
    let trace = String::from_utf8(ring.dump()).expect("JSON lines");
    let header = trace.lines().next().expect("a header line");
    assert!(header.contains("\"seed\":42"), "{header}");
    assert!(
        header.contains(r#""profile":{"name":"hello-ack"}"#),
        "{header}"
    );
    assert!(trace.lines().count() > 5, "{trace}");
}

tether_tests::on_both_runtimes!(
    records:
    tokio_the_builder_records_a_session,
    smol_the_builder_records_a_session
);

tether_tests::on_both_runtimes!(
    headers_per_attempt:
    tokio_headers_are_computed_per_attempt,
    smol_headers_are_computed_per_attempt
);

tether_tests::on_both_runtimes!(
    subprotocols:
    tokio_subprotocols_as_the_rfc_says,
    smol_subprotocols_as_the_rfc_says
);

tether_tests::on_both_runtimes!(
    errors_read_well:
    tokio_errors_read_well,
    smol_errors_read_well
);

#[test]
fn updates_come_in_the_session_order_on_both_runtimes() {
    let on_tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(ordered_updates(OnTokio));
    let on_smol = smol::block_on(ordered_updates(OnSmol));
    if on_tokio.is_empty() {
        return; // skipped
    }
    // The first item is the status as of subscribing: the loop may have begun.
    for seen in [&on_tokio, &on_smol] {
        let at = seen
            .iter()
            .position(|s| s == "status open")
            .expect("opened");
        let start = ["status idle".to_owned(), "status connecting".to_owned()];
        assert!(start.ends_with(&seen[..at]), "{seen:?}");
        assert_eq!(
            seen[at..],
            [
                "status open",
                "opened first=true",
                "response ok=true",
                "disconnected",
                "status failed",
                "ended",
            ],
            "the order the session decided"
        );
    }
}
