//! Bring your own HTTP server: one axum router on one port serves a web page at `GET /`
//! and a WebSocket echo endpoint at `GET /ws`. The handler answers the upgrade with
//! tether's `upgrade_response`, and once hyper hands over the upgraded connection,
//! `guard_upgraded` makes it a guarded connection — the same liveness, send deadline
//! and close behaviour as `tether_tokio::server::accept`.
//!
//! ```text
//! cargo run -p tether-tokio --example axum_server -- 127.0.0.1:9000   # serve until Ctrl-C
//! cargo run -p tether-tokio --example axum_server -- --demo           # bounded self-test
//! ```
//!
//! `--demo` serves on a free loopback port, fetches the page over plain HTTP, checks that
//! a plain `GET /ws` is told to upgrade (426), connects a tether client to `/ws`,
//! exchanges messages with the echo, closes, and exits 0 (1 if anything goes wrong or
//! takes longer than 20 s). `transport-tokio/tests/axum_server.rs` runs the demo as a
//! test.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::response::{Html, Response};
use axum::routing::get;
use axum::serve::ListenerExt;
use futures::StreamExt;
use hyper_util::rt::TokioIo;
use tether_tokio::server::{GuardConfig, Guarded, guard_upgraded, upgrade_response};
use tether_tokio::tether_core::{DataFrame, Event, Utf8Bytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The page: a text box whose lines go to `/ws` and come back.
const PAGE: &str = r#"<!doctype html>
<html lang="en">
<meta charset="utf-8">
<title>tether echo</title>
<h1>tether echo</h1>
<form id="f"><input id="m" autocomplete="off" autofocus> <button>send</button></form>
<pre id="log"></pre>
<script>
  const log = (line) => { document.getElementById("log").textContent += line + "\n"; };
  const ws = new WebSocket(`ws://${location.host}/ws`);
  ws.onopen = () => log("open");
  ws.onmessage = (e) => log("< " + e.data);
  ws.onclose = (e) => log(`closed ${e.code} ${e.reason}`);
  document.getElementById("f").onsubmit = (e) => {
    e.preventDefault();
    const m = document.getElementById("m");
    ws.send(m.value);
    log("> " + m.value);
    m.value = "";
  };
</script>
</html>
"#;

/// Messages the demo client exchanges.
const DEMO_MESSAGES: usize = 5;

/// The guard of every connection: pings every 10 s, dead after 25 s of silence, a frame
/// not written within 5 s means the client is gone, messages of at most 64 KiB.
fn guard_config() -> GuardConfig {
    let mut config = GuardConfig::default();
    config.server.liveness.ping_interval = Some(Duration::from_secs(10));
    config.server.liveness.stale_after = Duration::from_secs(25);
    config.server.send_deadline = Duration::from_secs(5);
    config.server.max_inbound_frame = 64 << 10;
    config
}

/// The router: the page and the WebSocket endpoint.
fn app() -> Router {
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/ws", get(websocket))
}

/// `GET /ws`: a valid upgrade is answered with tether's 101 and guarded once hyper hands
/// the connection over; anything else gets the refusal's status (426 or 400).
async fn websocket(ConnectInfo(peer): ConnectInfo<SocketAddr>, mut request: Request) -> Response {
    let response = match upgrade_response(&request) {
        Ok(response) => response,
        Err(refusal) => {
            println!("{peer}: {refusal}");
            return refusal.response().map(Body::from);
        }
    };
    // Resolves once the 101 below has been written and the connection is hyper's no more.
    let upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        let io = match upgrade.await {
            Ok(upgraded) => TokioIo::new(upgraded),
            Err(e) => return println!("{peer}: upgrade failed: {e}"),
        };
        match guard_upgraded(io, Some(peer), guard_config()).await {
            Ok(conn) => echo(conn).await,
            Err(e) => println!("{peer}: {e}"),
        }
    });
    response.map(|()| Body::empty())
}

/// Sends every message back until the connection ends.
async fn echo(conn: Guarded) {
    println!("{} connected from {:?}", conn.id(), conn.peer_addr());
    while let Some(frame) = conn.recv().await {
        if conn.send(frame).await.is_err() {
            break;
        }
    }
    println!("{} ended: {:?}", conn.id(), conn.closed().await);
}

/// Serves `app` on `listener` with each accepted socket's options set as tether's own
/// `accept` sets them (`TCP_NODELAY`, keepalive).
async fn serve(listener: TcpListener) -> std::io::Result<()> {
    let listener = listener.tap_io(|tcp| tether_tokio::configure(tcp));
    axum::serve(
        listener,
        app().into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
}

/// `GET path` over plain HTTP/1.1 (the connection closed after the answer): the status
/// code and the body.
async fn fetch(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let mut tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    // Bounded by the page's size: a server that sends more is broken.
    (&mut tcp)
        .take(1 << 20)
        .read_to_end(&mut answer)
        .await
        .map_err(|e| e.to_string())?;
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no HTTP head in {answer:?}"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status in {head:?}"))?;
    Ok((status, body.to_owned()))
}

/// The demo: the page, a refused plain request, then a tether client's echoes. Public
/// for `transport-tokio/tests/axum_server.rs`, which includes this file as a module.
pub async fn demo() -> Result<(), String> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    println!("demo: serving on http://{addr}/");
    tokio::spawn(serve(listener));

    let (status, body) = fetch(addr, "/").await?;
    if status != 200 || !body.contains("new WebSocket") {
        return Err(format!("GET /: {status}, {body:?}"));
    }
    println!("demo: GET / -> {status}, the page ({} bytes)", body.len());
    let (status, body) = fetch(addr, "/ws").await?;
    if status != 426 {
        return Err(format!("plain GET /ws: {status}, {body:?}"));
    }
    println!("demo: plain GET /ws -> {status} ({})", body.trim());

    let client = tether_tokio::builder(format!("ws://{addr}/ws"))
        .connect()
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let mut events = client.events();
    for i in 0..DEMO_MESSAGES {
        let sent = format!("hello {i}");
        let frame = DataFrame::Text(Utf8Bytes::from_string(sent.clone()));
        client.send(frame).await.map_err(|e| format!("send: {e}"))?;
        let echoed = loop {
            match events.next().await {
                Some(Event::Message(DataFrame::Text(t))) => break t.as_str().to_owned(),
                Some(_) => {}
                None => return Err("the session ended early".into()),
            }
        };
        if echoed != sent {
            return Err(format!("sent {sent:?}, echoed {echoed:?}"));
        }
        println!("demo: {sent:?} echoed");
    }
    client.close().await;
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
            eprintln!("usage: axum_server [ADDR | --demo] ({addr}: {e})");
            return ExitCode::FAILURE;
        }
    };
    let listener = match TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("serving on http://{addr}/ (the WebSocket at ws://{addr}/ws)");
    tokio::select! {
        r = serve(listener) => {
            if let Err(e) = r {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        }
        _ = tokio::signal::ctrl_c() => {}
    }
    ExitCode::SUCCESS
}
