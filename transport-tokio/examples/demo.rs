//! A session that survives its server: an embedded HelloAck server on 127.0.0.1, a client
//! asking it something every 300 ms, the server killed with a request in flight and
//! restarted on the same port 1.5 s later. Every step is narrated on one line.
//!
//! ```text
//! cargo run -p tether-tokio --example demo
//! ```
//!
//! Exits 0 once the session has recovered and a few more requests succeeded (about 5 s),
//! 1 if anything does not go as narrated within 15 s.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use async_tungstenite::tokio::accept_async;
use async_tungstenite::tungstenite::Message;
use futures::StreamExt;
use serde_json::{Value, json};
use tether_tokio::tether_core::profiles::{HelloAck, HelloAckRequest};
use tether_tokio::tether_core::{Config, DisconnectReason, Event, Jitter, Status};
use tether_tokio::{CallError, Client};
use tokio::net::{TcpListener, TcpSocket};
use tokio::task::JoinSet;

/// How long the server stays down.
const OUTAGE: Duration = Duration::from_millis(1500);
/// How often the client asks.
const EVERY: Duration = Duration::from_millis(300);
/// Successful requests after the recovery before the demo ends.
const AFTER_RECOVERY: u32 = 4;

fn say(t0: Instant, what: impl std::fmt::Display) {
    println!("[{:>5.2}s] {what}", t0.elapsed().as_secs_f64());
}

// --- the embedded server -------------------------------------------------------------------

/// The server: an accept loop whose task owns every connection's task, so aborting it
/// drops the listener and every connection at once, like a crashed process.
struct Server {
    accept: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Listens on `127.0.0.1:port` (0: any free port) with `SO_REUSEADDR`, so a restart
    /// can take the port back while old connections linger in TIME_WAIT.
    async fn start(port: u16) -> std::io::Result<(Server, u16)> {
        let socket = TcpSocket::new_v4()?;
        socket.set_reuseaddr(true)?;
        socket.bind(([127, 0, 0, 1], port).into())?;
        let listener = socket.listen(64)?;
        let port = listener.local_addr()?.port();
        let accept = tokio::spawn(accept_loop(listener));
        Ok((Server { accept }, port))
    }

    /// Drops the listener and every connection, without a close frame.
    async fn kill(self) {
        self.accept.abort();
        let _ = self.accept.await;
    }
}

async fn accept_loop(listener: TcpListener) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((tcp, _)) = accepted {
                    // Without it, Nagle holds a response back until the client's delayed
                    // ACK of the previous one (40 ms on Linux).
                    let _ = tcp.set_nodelay(true);
                    connections.spawn(serve(tcp));
                }
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// HelloAck: `hello` → `hello_ack`; `request` → a `response` echoing its params, 400 ms
/// later for the method "slow".
async fn serve(tcp: tokio::net::TcpStream) {
    let Ok(mut ws) = accept_async(tcp).await else {
        return;
    };
    while let Some(Ok(msg)) = ws.next().await {
        let Message::Text(text) = msg else { continue };
        let Ok(frame) = serde_json::from_str::<Value>(text.as_str()) else {
            continue;
        };
        let reply = match frame["type"].as_str() {
            Some("hello") => json!({ "type": "hello_ack" }),
            Some("request") => {
                if frame["method"] == "slow" {
                    tokio::time::sleep(Duration::from_millis(400)).await;
                }
                json!({ "type": "response", "id": frame["id"], "result": frame["params"] })
            }
            _ => continue,
        };
        if ws.send(Message::text(reply.to_string())).await.is_err() {
            return;
        }
    }
}

// --- the client ----------------------------------------------------------------------------

fn config() -> Config {
    Config::builder()
        .ping_interval(Some(Duration::from_millis(500)))
        .stale_after(Duration::from_millis(1500))
        .backoff_schedule(vec![
            Duration::from_millis(200),
            Duration::from_millis(400),
            Duration::from_millis(800),
        ])
        .jitter(Jitter::Equal)
        .stable_after(Duration::from_secs(1))
        .request_timeout(Duration::from_secs(4))
        .build()
        .expect("a valid configuration")
}

/// Narrates status changes and the connection's life from the session's event stream.
fn narrate(client: &Client<HelloAck>, t0: Instant) {
    let mut statuses = client.status_changes();
    let mut events = client.events();
    let mut previous = client.status();
    tokio::spawn(async move {
        while let Some(status) = statuses.next().await {
            say(t0, format_args!("status: {previous} -> {status}"));
            previous = status;
        }
    });
    tokio::spawn(async move {
        while let Some(event) = events.next().await {
            match event {
                Event::Disconnected { reason, retry, .. } => {
                    let how = match reason {
                        DisconnectReason::Closed { code: None, .. } => {
                            "the socket dropped without a close frame".to_owned()
                        }
                        other => format!("{other:?}"),
                    };
                    let next = retry.map_or("none".into(), |r| format!("{:?}", r.wait));
                    say(
                        t0,
                        format_args!("event: disconnected: {how}; next attempt in {next}"),
                    );
                }
                Event::AttemptFailed {
                    attempt,
                    error,
                    retry,
                    ..
                } => {
                    let next = retry.map_or("none".into(), |r| format!("{:?}", r.wait));
                    say(
                        t0,
                        format_args!("event: attempt {attempt} failed ({error}); next in {next}"),
                    );
                }
                // The first opening is the `client: open` line.
                Event::Opened {
                    attempt,
                    first: false,
                    ..
                } => say(t0, format_args!("event: reopened (attempt {attempt})")),
                Event::Ended(reason) => say(t0, format_args!("event: ended: {reason:?}")),
                _ => {}
            }
        }
    });
}

/// Sends request `n` and narrates its outcome; returns whether it succeeded.
async fn ask(client: Client<HelloAck>, t0: Instant, n: u32, method: &'static str) -> bool {
    let sent = Instant::now();
    let status = client.status();
    let params = json!({ "n": n });
    match client
        .request(HelloAckRequest::new(method, params.clone()))
        .await
    {
        Ok(result) if result == params => {
            let late = if status == Status::Open {
                String::new()
            } else {
                format!(" (asked while {status}: queued, sent after the reconnect)")
            };
            say(
                t0,
                format_args!(
                    "request #{n} ({method}) answered in {:.1?}{late}",
                    sent.elapsed()
                ),
            );
            true
        }
        Ok(other) => {
            say(
                t0,
                format_args!("request #{n} answered with something else: {other}"),
            );
            false
        }
        Err(CallError::Failed(failure)) => {
            say(
                t0,
                format_args!("request #{n} ({method}) failed: {failure}"),
            );
            false
        }
        Err(e) => {
            say(t0, format_args!("request #{n} ({method}) refused: {e}"));
            false
        }
    }
}

async fn demo(t0: Instant) -> Result<(), String> {
    let (server, port) = Server::start(0).await.map_err(|e| format!("listen: {e}"))?;
    say(t0, format_args!("server: listening on 127.0.0.1:{port}"));

    let hello = HelloAck::new(|| json!({ "type": "hello", "client": "demo" }));
    let url = format!("ws://127.0.0.1:{port}/");
    say(t0, format_args!("client: connecting to {url}"));
    let client = tether_tokio::connect(&url, config(), hello)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    say(t0, "client: open");
    narrate(&client, t0);

    let mut n = 0;
    let mut requests = JoinSet::new();
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    // 1. A few requests against a healthy server.
    for _ in 0..4 {
        tick.tick().await;
        n += 1;
        requests.spawn(ask(client.clone(), t0, n, "echo"));
    }

    // 2. A slow request, and the server dies while it is in flight.
    tick.tick().await;
    n += 1;
    let doomed = n;
    let in_flight = tokio::spawn(ask(client.clone(), t0, doomed, "slow"));
    say(
        t0,
        format_args!("request #{doomed} (slow) sent: the server answers it in 400 ms"),
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    say(
        t0,
        "server: killed (listener and connections dropped, no close frame)",
    );
    server.kill().await;
    if in_flight.await.unwrap_or(true) {
        return Err(format!(
            "request #{doomed} should have failed with the connection"
        ));
    }

    // 3. The outage: requests keep coming and wait in the session's offline queue.
    let down = Instant::now();
    while down.elapsed() + EVERY < OUTAGE {
        tick.tick().await;
        n += 1;
        requests.spawn(ask(client.clone(), t0, n, "echo"));
    }
    tokio::time::sleep(OUTAGE.saturating_sub(down.elapsed())).await;

    // 4. The server comes back on the same port; the session finds it by itself.
    let (server, _) = Server::start(port)
        .await
        .map_err(|e| format!("restart on port {port}: {e}"))?;
    say(t0, format_args!("server: restarted on 127.0.0.1:{port}"));
    tokio::time::timeout(Duration::from_secs(5), client.wait_open())
        .await
        .map_err(|_| "no reconnect within 5 s after the restart".to_owned())?
        .map_err(|e| format!("the session ended: {e:?}"))?;

    // 5. The queued requests complete; a few more for good measure.
    let successes = Arc::new(AtomicU32::new(0));
    for _ in 0..AFTER_RECOVERY {
        tick.tick().await;
        n += 1;
        let (client, successes) = (client.clone(), successes.clone());
        requests.spawn(async move {
            let ok = ask(client, t0, n, "echo").await;
            if ok {
                successes.fetch_add(1, Ordering::Relaxed);
            }
            ok
        });
    }
    let mut failed = 0;
    while let Some(ok) = requests.join_next().await {
        if !ok.unwrap_or(false) {
            failed += 1;
        }
    }
    let after = successes.load(Ordering::Relaxed);
    say(
        t0,
        format_args!(
            "summary: {n} requests, #{doomed} lost with the connection, {failed} other failures, \
             {after}/{AFTER_RECOVERY} succeeded after the recovery"
        ),
    );
    client.close().await;
    say(t0, format_args!("client: closed ({})", client.status()));
    server.kill().await;
    if failed > 0 || after < AFTER_RECOVERY {
        return Err("some requests after the recovery failed".into());
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let t0 = Instant::now();
    match tokio::time::timeout(Duration::from_secs(15), demo(t0)).await {
        Ok(Ok(())) => {
            say(t0, "done: the session rode out the restart");
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            say(t0, format_args!("demo failed: {e}"));
            ExitCode::FAILURE
        }
        Err(_) => {
            say(t0, "demo failed: it took longer than 15 s");
            ExitCode::FAILURE
        }
    }
}
