//! A broadcast server on tether's server side: it accepts WebSocket connections, speaks
//! the `HelloAck` profile (each client's `hello` is answered with a `hello_ack`), then
//! adds the connection to a `Hub` that broadcasts an update every interval. Slow or dead
//! clients are evicted by their guards, never waited on. The way in is guarded too: an
//! admission hook refuses browser pages of other origins (403), a `Gate` bounds
//! connections, pending upgrades and connections per address (503 with `Retry-After`),
//! and a client that does not say hello within 5 s is closed with 1008.
//!
//! ```text
//! cargo run -p tether-tokio --example hub_server -- 127.0.0.1:9000   # serve until Ctrl-C
//! cargo run -p tether-tokio --example hub_server -- --demo           # bounded self-test
//! ```
//!
//! `--demo` serves on a free loopback port, connects three tether clients (the `HelloAck`
//! profile, so each session opens only once its hello is acknowledged), broadcasts 10
//! updates, checks that every client received all of them in order and that a page of
//! another origin is refused with 403, closes, and exits 0 (1 if anything goes wrong or
//! takes longer than 20 s).
//!
//! Greeted clients join the topic `updates`, and updates go to that topic. With
//! `TETHER_REDIS_URL=redis://host:port` set, the hub gets a Redis backplane: run two
//! servers against the same Redis and every client of either receives the updates of
//! both (each says which server sent it). Without it (as in CI's `--demo`) the topic is
//! local and nothing needs Redis.
//!
//! ```text
//! TETHER_REDIS_URL=redis://127.0.0.1:6379 cargo run -p tether-tokio --example hub_server -- 127.0.0.1:9000
//! TETHER_REDIS_URL=redis://127.0.0.1:6379 cargo run -p tether-tokio --example hub_server -- 127.0.0.1:9001
//! ```

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use tether_tokio::server::{
    Admission, Admit, Backplane, BackplaneConfig, BackplaneEvent, Gate, GateConfig, GuardConfig,
    Guarded, Hub, HubConfig, UpgradeRequest,
};
use tether_tokio::tether_core::profiles::HelloAck;
use tether_tokio::tether_core::{CloseCode, Config, DataFrame, Event, Utf8Bytes};
use tokio::net::TcpListener;

/// The topic every greeted client joins and every update goes to.
const TOPIC: &str = "updates";
/// How often the server broadcasts.
const EVERY: Duration = Duration::from_millis(200);
/// How long a new connection has to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// Clients and updates of the demo.
const DEMO_CLIENTS: usize = 3;
const DEMO_UPDATES: u64 = 10;

/// The pages allowed to open a connection. Browsers send their page's `Origin`; a page of
/// any other site could otherwise open a socket carrying its visitor's cookies
/// (cross-site WebSocket hijacking). Clients that are not browsers send none.
const ALLOWED_ORIGINS: &[&str] = &["http://localhost:8080", "https://app.example"];

/// The admission hook: an upgrade from a page of another origin is refused with 403.
fn admit(request: &UpgradeRequest<'_>) -> Admission {
    match request.origin() {
        Some(origin) if !ALLOWED_ORIGINS.contains(&origin) => {
            Admission::reject(403, "origin not allowed")
        }
        _ => Admission::accept(),
    }
}

/// The limits of the way in: 10,000 connections, 256 upgrades under way, 100 connections
/// per address; over them, 503 with `Retry-After: 5`.
fn gate() -> Gate {
    Gate::new(GateConfig {
        max_connections: Some(10_000),
        max_pending_upgrades: Some(256),
        max_per_ip: Some(100),
        retry_after: Duration::from_secs(5),
    })
    .expect("the limits are valid")
}

/// The guard of every connection: the admission hook and the gate, pings every 10 s, dead
/// after 25 s of silence, a frame not written within 5 s means the client is gone, at
/// most 256 frames queued, and the hello due within 5 s.
fn guard_config(gate: &Gate) -> GuardConfig {
    let mut config = GuardConfig {
        admit: Some(Admit::new(admit)),
        gate: Some(gate.clone()),
        ..GuardConfig::default()
    };
    config.server.first_message_timeout = Some(HELLO_TIMEOUT);
    config.server.liveness.ping_interval = Some(Duration::from_secs(10));
    config.server.liveness.stale_after = Duration::from_secs(25);
    config.server.send_deadline = Duration::from_secs(5);
    config.server.slow_write_warning = Duration::from_secs(1);
    config.server.max_pending_writes = 256;
    config
}

fn text(value: &Value) -> DataFrame {
    DataFrame::Text(Utf8Bytes::from_string(value.to_string()))
}

/// The `HelloAck` handshake, server side: the first frame must be `{"type":"hello",…}`;
/// it is answered with `{"type":"hello_ack"}` and the connection joins the hub. Anything
/// else is closed with 1008 (policy violation), which tether's clients treat as fatal; no
/// message at all within `HELLO_TIMEOUT` is closed the same way by the guard
/// (`first_message_timeout`), and `recv` then returns `None`.
async fn greet(conn: Guarded, hub: Hub) {
    let hello = match conn.recv().await {
        Some(DataFrame::Text(t)) => serde_json::from_slice::<Value>(t.as_bytes()).ok(),
        _ => None,
    };
    if hello.as_ref().and_then(|v| v["type"].as_str()) != Some("hello") {
        let _ = conn.close(CloseCode::POLICY, "expected hello");
        return;
    }
    if conn
        .send(text(&json!({"type": "hello_ack"})))
        .await
        .is_err()
    {
        return;
    }
    let client = hello.and_then(|v| v["client"].as_str().map(str::to_owned));
    match hub.join(conn.clone()) {
        Ok(id) => {
            println!("{id} joined ({})", client.as_deref().unwrap_or("anonymous"));
            if let Err(e) = hub.join_topic(id, TOPIC) {
                println!("{id} could not join {TOPIC}: {e}");
            }
        }
        Err(e) => println!("{} could not join: {e}", conn.id()),
    }
    // The clients have nothing more to say; reading keeps the inbound queue drained.
    while conn.recv().await.is_some() {}
}

/// Accepts forever, greeting each connection in its own task.
async fn accept_loop(listener: TcpListener, hub: Hub, gate: Gate) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                eprintln!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (hub, config) = (hub.clone(), guard_config(&gate));
        tokio::spawn(async move {
            match tether_tokio::server::accept(stream, config).await {
                Ok(conn) => greet(conn, hub).await,
                Err(e) => eprintln!("{peer}: {e}"),
            }
        });
    }
}

/// Broadcasts update `n` to the topic: this process's members at once, and those of every
/// other process through the backplane, if there is one.
fn broadcast(hub: &Hub, n: u64) {
    let server = std::process::id();
    let report = hub.broadcast_to(
        TOPIC,
        text(&json!({"type": "update", "n": n, "server": server})),
    );
    if report.evicted > 0 {
        println!("update {n}: {} evicted (queue full)", report.evicted);
    }
}

/// A Redis backplane for `hub` when `TETHER_REDIS_URL` names one; its outages and
/// recoveries are logged. Keep the handle: dropping it stops the backplane.
fn backplane(hub: &Hub) -> Result<Option<Backplane>, String> {
    let Ok(url) = std::env::var("TETHER_REDIS_URL") else {
        return Ok(None);
    };
    let backplane = tether_tokio::server::backplane(hub, &url, BackplaneConfig::default())
        .map_err(|e| e.to_string())?;
    println!("backplane through {url}");
    let mut events = backplane.events();
    tokio::spawn(async move {
        while let Some(e) = events.next().await {
            match e {
                BackplaneEvent::Up { side } => println!("backplane {side} up"),
                BackplaneEvent::Down {
                    side,
                    error,
                    retry_in,
                    ..
                } => println!("backplane {side} down ({error}); retrying in {retry_in:?}"),
                _ => {}
            }
        }
    });
    Ok(Some(backplane))
}

/// Logs every departure with its reason.
fn log_departures(hub: &Hub) {
    let mut departures = hub.departures();
    tokio::spawn(async move {
        while let Some(d) = departures.next().await {
            let kind = if d.reason.is_eviction() {
                "evicted"
            } else {
                "left"
            };
            println!("{} {kind}: {:?}", d.member, d.reason);
        }
    });
}

async fn serve(addr: SocketAddr) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    println!("serving on ws://{}/", listener.local_addr()?);
    let hub = Hub::new(HubConfig::default()).expect("the default close code is valid");
    let _backplane = backplane(&hub).map_err(std::io::Error::other)?;
    log_departures(&hub);
    let gate = gate();
    tokio::spawn(accept_loop(listener, hub.clone(), gate.clone()));
    let mut tick = tokio::time::interval(EVERY);
    for n in 0.. {
        tokio::select! {
            _ = tick.tick() => broadcast(&hub, n),
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    let _ = hub.close_all(CloseCode::GOING_AWAY, "server stopping");
    println!("{:?}", gate.stats());
    Ok(())
}

/// One demo client: opens a `HelloAck` session and collects the updates it receives.
async fn demo_client(
    url: String,
    i: usize,
    ready: tokio::sync::mpsc::Sender<()>,
) -> Result<Vec<u64>, String> {
    let hello = HelloAck::new(move || json!({"type": "hello", "client": format!("demo-{i}")}));
    let client = tether_tokio::connect(&url, Config::default(), hello)
        .await
        .map_err(|e| format!("client {i}: {e}"))?;
    let mut events = client.events();
    // Subscribed: from here on no update can pass it by.
    let _ = ready.send(()).await;
    let mut got = Vec::new();
    while got.len() < DEMO_UPDATES as usize {
        match events.next().await {
            Some(Event::Message(m)) => {
                let v = m.value().unwrap_or_default();
                // Only this server's: with a backplane, others' come too.
                if v["type"] == "update" && v["server"] == std::process::id() {
                    got.extend(v["n"].as_u64());
                }
            }
            Some(_) => {}
            None => return Err(format!("client {i}: session ended early")),
        }
    }
    client.close().await;
    Ok(got)
}

async fn demo() -> Result<(), String> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let url = format!("ws://{addr}/");
    println!("demo: serving on {url}");
    let hub = Hub::new(HubConfig::default()).map_err(|e| e.to_string())?;
    let _backplane = backplane(&hub)?;
    log_departures(&hub);
    let gate = gate();
    tokio::spawn(accept_loop(listener, hub.clone(), gate.clone()));
    // A page of another site is turned away at the door.
    match tether_tokio::builder(&url)
        .header("origin", "https://elsewhere.example")
        .connect()
        .await
    {
        Err(e) if e.to_string().contains("403") => println!("another origin: {e}"),
        other => return Err(format!("another origin was not refused: {other:?}")),
    }
    let (ready_tx, mut ready) = tokio::sync::mpsc::channel(DEMO_CLIENTS);
    let clients: Vec<_> = (0..DEMO_CLIENTS)
        .map(|i| tokio::spawn(demo_client(url.clone(), i, ready_tx.clone())))
        .collect();
    // Every session is open (its hello acknowledged) and listening...
    for _ in 0..DEMO_CLIENTS {
        ready
            .recv()
            .await
            .ok_or("a client failed before it was ready")?;
    }
    // ...and has joined the hub and the topic (just after its acknowledgement was written).
    while hub.topic_members(TOPIC).len() < DEMO_CLIENTS {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for n in 0..DEMO_UPDATES {
        broadcast(&hub, n);
        tokio::time::sleep(EVERY / 4).await;
    }
    for (i, c) in clients.into_iter().enumerate() {
        let got = c.await.map_err(|e| e.to_string())??;
        if got != (0..DEMO_UPDATES).collect::<Vec<_>>() {
            return Err(format!("client {i} received {got:?}"));
        }
        println!("client {i}: all {DEMO_UPDATES} updates, in order");
    }
    // The clients closed (1000); their connections leave the hub.
    while !hub.is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stats = gate.stats();
    if (stats.admitted, stats.rejected) != (DEMO_CLIENTS as u64, 1) {
        return Err(format!("the gate counted {stats:?}"));
    }
    println!("demo: ok");
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let arg = std::env::args().nth(1);
    if arg.as_deref() == Some("--demo") {
        return match tokio::time::timeout(Duration::from_secs(20), demo()).await {
            Ok(Ok(())) => ExitCode::SUCCESS,
            Ok(Err(e)) => {
                eprintln!("demo failed: {e}");
                ExitCode::FAILURE
            }
            Err(_) => {
                eprintln!("demo failed: not done within 20 s");
                ExitCode::FAILURE
            }
        };
    }
    let addr = arg.as_deref().unwrap_or("127.0.0.1:9000");
    let addr: SocketAddr = match addr.parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("usage: hub_server [ADDR | --demo] ({addr}: {e})");
            return ExitCode::FAILURE;
        }
    };
    match serve(addr).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
