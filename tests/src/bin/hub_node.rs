//! One hub process of the backplane tests (`tests/tests/backplane.rs`): a `Hub` with a
//! Redis backplane, serving WebSocket clients on a free loopback port, on tokio or smol.
//!
//! ```text
//! TETHER_REDIS_URL=redis://127.0.0.1:6379 hub_node tokio|smol
//! ```
//!
//! Prints `LISTEN <port>` once it serves, then `EVENT up|down publisher|subscriber` for
//! each backplane event. A client that sends `join <topic>` joins the hub and the topic
//! and is answered `joined <topic>`. Commands on stdin, one a line:
//!
//! - `pub <topic> <count> <tag>`: broadcasts `<tag> 0` … `<tag> <count-1>` to the topic,
//!   then prints `DONE <tag>`;
//! - `pubslow <topic> <count> <tag>`: the same, one message a millisecond;
//! - `stats`: prints `STATS {json}` (the hub's and the backplane's counters).
//!
//! Exits when stdin closes. `HUB_NODE_MAX_MESSAGE` sets the backplane's
//! `max_message_bytes`.

use std::io::BufRead;
use std::process::ExitCode;
use std::time::Duration;

use futures::channel::mpsc;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use serde_json::json;
use tether_core::{BackoffConfig, DataFrame, Jitter, Utf8Bytes};
use tether_driver::server::{
    Backplane, BackplaneConfig, BackplaneEvent, GuardConfig, Guarded, Hub, HubConfig,
};

/// What differs between the runtimes.
trait Node: Clone + Send + Sync + 'static {
    fn spawn(&self, f: BoxFuture<'static, ()>);
    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()>;
    fn backplane(&self, hub: &Hub, url: &str, config: BackplaneConfig) -> Backplane;
    /// Serves on a free loopback port: prints `LISTEN <port>`, runs `client` on every
    /// accepted connection.
    fn serve(&self, hub: Hub) -> BoxFuture<'static, ()>;
}

#[derive(Clone)]
struct OnTokio;

impl Node for OnTokio {
    fn spawn(&self, f: BoxFuture<'static, ()>) {
        tokio::spawn(f);
    }
    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()> {
        tokio::time::sleep(d).boxed()
    }
    fn backplane(&self, hub: &Hub, url: &str, config: BackplaneConfig) -> Backplane {
        tether_tokio::server::backplane(hub, url, config).expect("valid backplane")
    }
    fn serve(&self, hub: Hub) -> BoxFuture<'static, ()> {
        async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            println!("LISTEN {}", listener.local_addr().expect("addr").port());
            while let Ok((stream, _)) = listener.accept().await {
                let hub = hub.clone();
                tokio::spawn(async move {
                    if let Ok(conn) = tether_tokio::server::accept(stream, guard()).await {
                        client(conn, hub).await;
                    }
                });
            }
        }
        .boxed()
    }
}

#[derive(Clone)]
struct OnSmol;

impl Node for OnSmol {
    fn spawn(&self, f: BoxFuture<'static, ()>) {
        smol::spawn(f).detach();
    }
    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()> {
        FutureExt::map(smol::Timer::after(d), |_| ()).boxed()
    }
    fn backplane(&self, hub: &Hub, url: &str, config: BackplaneConfig) -> Backplane {
        tether_smol::server::backplane(hub, url, config).expect("valid backplane")
    }
    fn serve(&self, hub: Hub) -> BoxFuture<'static, ()> {
        async move {
            let listener = smol::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            println!("LISTEN {}", listener.local_addr().expect("addr").port());
            while let Ok((stream, _)) = listener.accept().await {
                let hub = hub.clone();
                smol::spawn(async move {
                    if let Ok(conn) = tether_smol::server::accept(stream, guard()).await {
                        client(conn, hub).await;
                    }
                })
                .detach();
            }
        }
        .boxed()
    }
}

/// Room for bursts: the test clients read as fast as they can.
fn guard() -> GuardConfig {
    let mut config = GuardConfig::default();
    config.server.max_pending_writes = 1 << 16;
    config
}

fn text(s: String) -> DataFrame {
    DataFrame::Text(Utf8Bytes::from_string(s))
}

/// `join <topic>` joins the hub and the topic; the answer is `joined <topic>`.
async fn client(conn: Guarded, hub: Hub) {
    while let Some(frame) = conn.recv().await {
        let DataFrame::Text(t) = frame else { continue };
        if let Some(topic) = t.as_str().strip_prefix("join ") {
            let joined = hub
                .join(conn.clone())
                .map_err(|e| e.to_string())
                .and_then(|id| hub.join_topic(id, topic).map_err(|e| e.to_string()));
            let answer = match joined {
                Ok(()) => format!("joined {topic}"),
                Err(e) => format!("refused {e}"),
            };
            let _ = conn.send(text(answer)).await;
        }
    }
}

async fn run<N: Node>(node: N, url: String) {
    let hub = Hub::new(HubConfig::default()).expect("valid config");
    let max_message = std::env::var("HUB_NODE_MAX_MESSAGE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1 << 20);
    let config = BackplaneConfig {
        // Quick reconnects for the outage test; the rules are the session's own.
        backoff: BackoffConfig {
            schedule: [50, 100, 200]
                .into_iter()
                .map(Duration::from_millis)
                .collect(),
            jitter: Jitter::Full,
            stable_after: Duration::from_secs(1),
            ..BackoffConfig::default()
        },
        io_timeout: Duration::from_secs(2),
        max_message_bytes: max_message,
        ..BackplaneConfig::default()
    };
    let backplane = node.backplane(&hub, &url, config);
    let mut events = backplane.events();
    node.spawn(
        async move {
            while let Some(e) = events.next().await {
                match e {
                    BackplaneEvent::Up { side } => println!("EVENT up {side}"),
                    BackplaneEvent::Down { side, error, .. } => {
                        println!("EVENT down {side}");
                        eprintln!("{side} down: {error}");
                    }
                    _ => {}
                }
            }
        }
        .boxed(),
    );
    node.spawn(node.serve(hub.clone()));

    // Commands from a thread reading stdin; its end ends the process.
    let (tx, mut rx) = mpsc::unbounded::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.unbounded_send(line).is_err() {
                break;
            }
        }
    });
    while let Some(line) = rx.next().await {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            [cmd @ ("pub" | "pubslow"), topic, count, tag] => {
                let count: u64 = count.parse().expect("a count");
                for i in 0..count {
                    hub.broadcast_to(topic, text(format!("{tag} {i}")));
                    if *cmd == "pubslow" {
                        node.sleep(Duration::from_millis(1)).await;
                    }
                }
                println!("DONE {tag}");
            }
            ["stats"] => {
                let b = backplane.stats();
                let h = hub.stats();
                let stats = json!({
                    "members": h.members,
                    "topics": h.topics,
                    "published": b.published,
                    "queue_full": b.queue_full,
                    "dropped_down": b.dropped_down,
                    "too_large": b.too_large,
                    "received": b.received,
                    "own": b.own,
                    "undecodable": b.undecodable,
                    "oversized": b.oversized,
                    "failures": b.failures,
                    "publisher_up": b.publisher_up,
                    "subscriber_up": b.subscriber_up,
                });
                println!("STATS {stats}");
            }
            _ => eprintln!("unknown command {line:?}"),
        }
    }
    drop(backplane);
}

fn main() -> ExitCode {
    let runtime = std::env::args().nth(1).unwrap_or_default();
    let Ok(url) = std::env::var("TETHER_REDIS_URL") else {
        eprintln!("TETHER_REDIS_URL is not set");
        return ExitCode::FAILURE;
    };
    match runtime.as_str() {
        "tokio" => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a tokio runtime");
            rt.block_on(run(OnTokio, url));
        }
        "smol" => smol::block_on(run(OnSmol, url)),
        other => {
            eprintln!("usage: hub_node tokio|smol (not {other:?})");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
