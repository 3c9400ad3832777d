//! The two clients of `docs/from-tokio-tungstenite.md`, run against the same server this
//! project did not write (Python `websockets`, `interop/python_server.py`): a request, the
//! server killed and restarted, a request again. Both must answer both times; the guide
//! shows each client verbatim (checked here).

use std::time::Duration;

use serde_json::json;
use tether_tests::guide::{example, fenced_after};
use tether_tests::peers::{Peer, Server, free_port, peers};
use tether_tests::runtimes::{OnTokio, within};

const GUIDE: &str = include_str!("../../docs/from-tokio-tungstenite.md");
const STEP: Duration = Duration::from_secs(10);

mod raw {
    // --- example start ---
    use std::collections::HashMap;
    use std::time::{Duration, Instant};

    use futures::{SinkExt, StreamExt};
    use serde_json::{Value, json};
    use tokio::sync::{mpsc, oneshot};
    use tokio_tungstenite::{connect_async, tungstenite::Message};

    pub type Call = (Value, oneshot::Sender<Value>);

    /// Connects, says hello, answers `calls` with the server's responses, pings, and
    /// reconnects with capped exponential backoff when the connection is lost.
    pub async fn run(url: String, mut calls: mpsc::Receiver<Call>) {
        let mut backoff = Duration::from_millis(100);
        let mut next_id = 0u64;
        loop {
            let Ok((ws, _)) = connect_async(url.as_str()).await else {
                tokio::time::sleep(backoff).await; // no jitter: a fleet retries in step
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            };
            backoff = Duration::from_millis(100);
            let (mut tx, mut rx) = ws.split();
            let hello = json!({ "type": "hello" }).to_string();
            if tx.send(Message::text(hello)).await.is_err() {
                continue;
            }
            // Requests wait for the next connection in `calls`; those in flight fail when
            // `pending` is dropped. Nothing times out a request, the hello's ack or a write.
            let mut pending: HashMap<u64, oneshot::Sender<Value>> = HashMap::new();
            let mut ping = tokio::time::interval(Duration::from_secs(15));
            let mut last_seen = Instant::now();
            loop {
                tokio::select! {
                    Some((params, reply)) = calls.recv() => {
                        next_id += 1;
                        pending.insert(next_id, reply);
                        let frame = json!({ "type": "request", "id": next_id,
                                            "method": "echo", "params": params });
                        if tx.send(Message::text(frame.to_string())).await.is_err() {
                            break;
                        }
                    }
                    msg = rx.next() => {
                        let Some(Ok(msg)) = msg else { break };
                        last_seen = Instant::now();
                        let Message::Text(text) = msg else { continue };
                        let Ok(frame) = serde_json::from_str::<Value>(&text) else { continue };
                        if frame["type"] == "response"
                            && let Some(reply) = frame["id"].as_u64().and_then(|id| pending.remove(&id))
                        {
                            let _ = reply.send(frame["result"].clone());
                        }
                    }
                    _ = ping.tick() => {
                        if last_seen.elapsed() > Duration::from_secs(45) {
                            break; // half-open: nothing heard for three pings
                        }
                        if tx.send(Message::Ping(Vec::new().into())).await.is_err() {
                            break;
                        }
                    }
                }
            }
        }
    }
    // --- example end ---
}

mod with_tether {
    // --- example start ---
    use tether_tokio::profiles::{HelloAck, HelloAckRequest};
    use tether_tokio::serde_json::json;
    use tether_tokio::{Client, ConnectError};

    /// Connects and says hello; reconnects, pings, times out and fails requests by itself.
    pub async fn connect(url: &str) -> Result<Client<HelloAck>, ConnectError> {
        tether_tokio::builder(url)
            .protocol(HelloAck::new(|| json!({ "type": "hello" })))
            .connect()
            .await
    }

    /// The answer, decoded straight into the application's type.
    #[derive(Debug, PartialEq, serde::Deserialize)]
    pub struct Echo {
        pub n: u32,
    }

    pub async fn echo(
        client: &Client<HelloAck>,
        n: u32,
    ) -> Result<Echo, Box<dyn std::error::Error>> {
        let answer = client
            .request(HelloAckRequest::new("echo", json!({ "n": n })))
            .await?;
        Ok(answer.decode::<Echo>()?)
    }
    // --- example end ---
}

#[test]
fn the_guide_shows_both_clients_verbatim() {
    let shown = fenced_after(GUIDE, "<!-- tokio-tungstenite client -->");
    assert_eq!(shown, unindent(example(include_str!("guide_migration.rs"))));
    let file = include_str!("guide_migration.rs");
    let second = &file[file.find("mod with_tether").expect("the module")..];
    let shown = fenced_after(GUIDE, "<!-- tether client -->");
    assert_eq!(shown, unindent(example(second)));
}

/// The example's lines without the module's indentation.
fn unindent(code: &str) -> String {
    code.trim_end()
        .lines()
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .map(|l| format!("{l}\n"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_clients_answer_across_a_server_restart() {
    let Some(peers) = peers() else { return };
    let rt = OnTokio;
    let port = free_port();
    let url = format!("ws://127.0.0.1:{port}/");
    let mut server = within(
        &rt,
        STEP,
        "server",
        Server::start(rt, peers, Peer::Python, port),
    )
    .await;

    let (calls, rx) = tokio::sync::mpsc::channel(16);
    let raw_client = tokio::spawn(raw::run(url.clone(), rx));
    let raw_echo = |n: u32| {
        let calls = calls.clone();
        async move {
            let (tx, answer) = tokio::sync::oneshot::channel();
            calls
                .send((json!({ "n": n }), tx))
                .await
                .expect("the client runs");
            answer.await
        }
    };
    let client = within(&rt, STEP, "connect", with_tether::connect(&url))
        .await
        .expect("opens");

    assert_eq!(
        within(&rt, STEP, "raw 1", raw_echo(1)).await,
        Ok(json!({ "n": 1 }))
    );
    let got = within(&rt, STEP, "tether 1", with_tether::echo(&client, 1)).await;
    assert_eq!(got.expect("an answer"), with_tether::Echo { n: 1 });

    server.kill();
    let _server = within(
        &rt,
        STEP,
        "restart",
        Server::start(rt, peers, Peer::Python, port),
    )
    .await;

    // The raw client's call made while it reconnects waits for the new connection.
    assert_eq!(
        within(&rt, STEP, "raw 2", raw_echo(2)).await,
        Ok(json!({ "n": 2 }))
    );
    within(&rt, STEP, "tether reopens", client.wait_open())
        .await
        .expect("reopens");
    let got = within(&rt, STEP, "tether 2", with_tether::echo(&client, 2)).await;
    assert_eq!(got.expect("an answer"), with_tether::Echo { n: 2 });

    raw_client.abort();
    within(&rt, STEP, "close", client.close()).await;
}
