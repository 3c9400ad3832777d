//! What the logs show of a whole session, and what they must never show.
//!
//! A TRACE-level `fmt` subscriber writes into a buffer while a session opens, makes a
//! request, is closed by the server (1012), reconnects and is closed by the client. The
//! URL carries credentials and a query secret, the upgrade an `Authorization` header, the
//! hello a token and the server's acknowledgement one of its own: tether's logs must name
//! the session and the redacted URL and record every step, and hold none of the secrets.
//!
//! tungstenite's `log` records are bridged in (`tracing-log`) and checked too: at TRACE
//! they do hold secrets, and the test pins exactly which records (see docs/adapters.md,
//! "Logging", for the filter that keeps them out).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_tungstenite::tokio::accept_hdr_async;
use async_tungstenite::tungstenite::Message;
use async_tungstenite::tungstenite::handshake::server::{Request, Response};
use async_tungstenite::tungstenite::protocol::CloseFrame;
use futures::StreamExt;
use serde_json::{Value, json};
use tether_tokio::tether_core::profiles::{HelloAck, HelloAckRequest};
use tether_tokio::tether_core::{CloseClass, ClosePolicy, Config, Status};
use tether_tokio::{Client, TcpDial, Tokio, WsTransport};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;

mod common;
use common::Capture;

/// What the server saw of one connection: the request target, the `Authorization`
/// header and the hello.
#[derive(Debug, Default)]
struct Seen {
    target: String,
    authorization: String,
    hello: Value,
}

/// Serves one connection: acknowledges the hello, answers requests, and after the first
/// request closes with 1012 when `close_after_request`.
// The header callback's error type is tungstenite's (an HTTP response), not ours.
#[allow(clippy::result_large_err)]
async fn serve_once(listener: &tokio::net::TcpListener, close_after_request: bool) -> Seen {
    let (tcp, _) = listener.accept().await.unwrap();
    let mut seen = Seen::default();
    let head = Arc::new(Mutex::new((String::new(), String::new())));
    let h = head.clone();
    let mut ws = accept_hdr_async(tcp, move |req: &Request, resp: Response| {
        let auth = req.headers().get("authorization");
        *h.lock().unwrap() = (
            req.uri().to_string(),
            auth.and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned(),
        );
        Ok(resp)
    })
    .await
    .unwrap();
    (seen.target, seen.authorization) = head.lock().unwrap().clone();
    while let Some(Ok(msg)) = ws.next().await {
        let Message::Text(t) = msg else { continue };
        let v: Value = serde_json::from_str(t.as_str()).unwrap();
        match v["type"].as_str() {
            Some("hello") => {
                seen.hello = v.clone();
                // A secret of the server's (a session token), which the client must not log.
                let ack = json!({"type":"hello_ack","sessionToken":"ACK-SECRET-000"});
                ws.send(Message::text(ack.to_string())).await.unwrap();
            }
            Some("request") => {
                let r = json!({"type":"response","id":v["id"],"result":v["params"]});
                ws.send(Message::text(r.to_string())).await.unwrap();
                if close_after_request {
                    let _ = ws
                        .close(Some(CloseFrame {
                            code: 1012u16.into(),
                            reason: "restart".into(),
                        }))
                        .await;
                    return seen;
                }
            }
            _ => {}
        }
    }
    seen
}

#[tokio::test]
async fn logs_name_the_session_and_every_step_and_never_a_secret() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::NEW)
        .with_ansi(false)
        .with_writer(capture.clone())
        .finish();
    // This test binary holds one test, so the global default sees every task's events.
    tracing::subscriber::set_global_default(subscriber).unwrap();
    // tungstenite logs through the `log` facade: bridge it, so its records are checked
    // too (an application with `tracing-log` or `env_logger` sees them).
    tracing_log::LogTracer::init().unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let url = format!("ws://user:pass@{addr}/ws?token=SECRET123");
    let server = tokio::spawn(async move {
        let first = serve_once(&listener, true).await;
        let second = serve_once(&listener, false).await;
        (first, second)
    });

    let policy = ClosePolicy::default().with_code(1012, CloseClass::RECONNECT);
    let config = Config::builder()
        .close_policy(policy)
        .backoff_schedule(vec![Duration::from_millis(50)])
        .build()
        .unwrap();
    let hello = HelloAck::new(|| json!({"type": "hello", "token": "HELLO-SECRET-456"}));
    // As `tether_tokio::connect` does, plus an `Authorization` header.
    let transport = WsTransport::new(TcpDial, &url)
        .expect("a URL with user info and a query is accepted")
        .header("Authorization", "Bearer AUTH-SECRET-789")
        .unwrap();
    let label = transport.redacted_url();
    let client = Client::start(Tokio, transport, config, hello, SEED, &label).unwrap();
    tokio::time::timeout(Duration::from_secs(5), client.wait_open())
        .await
        .unwrap()
        .expect("opens");
    assert_eq!(client.status(), Status::Open);
    let mut statuses = client.status_changes();

    let r = client
        .request(HelloAckRequest::new("echo", json!({"n": 1})))
        .await
        .unwrap();
    assert_eq!(r, json!({"n": 1}));
    // The server closed with 1012: the session reconnects.
    for expected in [Status::Reconnecting, Status::Open] {
        let s = tokio::time::timeout(Duration::from_secs(5), statuses.next())
            .await
            .unwrap();
        assert_eq!(s, Some(expected));
    }
    let r = client
        .request(HelloAckRequest::new("echo", json!({"n": 2})))
        .await
        .unwrap();
    assert_eq!(r, json!({"n": 2}));
    tokio::time::timeout(Duration::from_secs(5), client.close())
        .await
        .unwrap();
    assert_eq!(client.status(), Status::Closed);
    let (first, second) = server.await.unwrap();
    drop(client);
    // Let the loop and connection tasks finish and log their last lines.
    tokio::time::sleep(Duration::from_millis(50)).await;

    // The secrets did reach the server: the query in the request target, the token in
    // every hello. The credentials are not forwarded (tungstenite drops user info).
    for seen in [&first, &second] {
        assert_eq!(seen.target, "/ws?token=SECRET123");
        assert_eq!(seen.hello["token"], "HELLO-SECRET-456");
        assert_eq!(seen.authorization, "Bearer AUTH-SECRET-789");
    }

    let logs = capture.text();
    if std::env::var_os("TETHER_SHOW_LOGS").is_some() {
        eprintln!("{logs}");
    }
    let redacted = format!("ws://{addr}/ws");
    let has = |needle: &str| logs.contains(needle);
    let dump = || format!("captured logs:\n{logs}");

    // The session span: its id and the redacted URL.
    let span = logs
        .lines()
        .find_map(|l| {
            let at = l.find("tether{session=")?;
            let rest = &l[at + "tether{session=".len()..];
            Some(rest.split(' ').next()?.to_owned())
        })
        .unwrap_or_else(|| panic!("no session span\n{}", dump()));
    // The id is a per-process random part and a counter (`8 hex digits-n`), never the
    // seed: jitter and idempotency keys derive from the seed.
    let (process, n) = span
        .split_once('-')
        .unwrap_or_else(|| panic!("session id {span:?}\n{}", dump()));
    assert!(
        process.len() == 8
            && process.chars().all(|c| c.is_ascii_hexdigit())
            && n.parse::<u64>().is_ok(),
        "session id {span:?}\n{}",
        dump()
    );
    for shown in [
        format!("{SEED:016x}"),
        format!("{SEED:x}"),
        format!("{SEED}"),
    ] {
        assert!(!has(&shown), "the seed {shown} is in the logs\n{}", dump());
    }
    assert!(
        has(&format!("tether{{session={span} url={redacted}}}")),
        "span with the redacted URL\n{}",
        dump()
    );
    // Each connection's span names its generation and attempt number.
    assert!(
        has(":conn{conn=conn#0 attempt=1}"),
        "first conn span\n{}",
        dump()
    );
    assert!(
        has(":conn{conn=conn#1 attempt="),
        "second conn span\n{}",
        dump()
    );
    for event in [
        ": connecting conn=conn#0 attempt=1",
        ": connecting conn=conn#1 attempt=",
        &format!(": dialing conn=conn#0 url={redacted}"),
        ": open conn=conn#0 attempt=1",
        ": open conn=conn#1 attempt=",
        ": disconnected reason=Closed { code: Some(CloseCode(1012))",
        ": status from=idle to=connecting",
        ": status from=connecting to=open",
        ": status from=open to=reconnecting",
        ": status from=reconnecting to=open",
        ": status from=open to=closed",
        ": ended reason=ClosedByUser",
    ] {
        assert!(has(event), "no {event:?} in the logs\n{}", dump());
    }

    let records = records(&logs);
    // Both halves are in the capture, or the checks below prove nothing.
    assert!(records.iter().any(|r| !r.tungstenite), "{}", dump());
    assert!(
        records.iter().any(|r| r.tungstenite && r.client),
        "{}",
        dump()
    );

    // tether's own records never hold a secret, in clear or hex-encoded.
    for r in records.iter().filter(|r| !r.tungstenite) {
        for secret in SECRETS.iter().chain(&["pass", "user:", "token"]) {
            assert!(
                !r.holds(secret),
                "{secret:?} leaked into tether's record:\n{}",
                r.text
            );
        }
    }

    // tungstenite's records on the client's side (inside the session span; the test
    // server's own tungstenite records are outside it) do hold secrets, all at TRACE and
    // in exactly these records (docs/adapters.md, "Logging"): the upgrade request (query
    // token and every header), each frame written (the hello: as text and as a hex
    // dump), and each frame and message received (the server's token).
    let leaks = |secret: &str| -> Vec<(String, String, String)> {
        let mut found: Vec<_> = records
            .iter()
            .filter(|r| r.tungstenite && r.client && r.holds(secret))
            .map(|r| (r.level.clone(), r.target.clone(), r.message.clone()))
            .collect();
        found.sort();
        found.dedup();
        found
    };
    let at_trace = |list: &[(&str, &str)]| -> Vec<(String, String, String)> {
        list.iter()
            .map(|(t, m)| ("TRACE".to_owned(), (*t).to_owned(), (*m).to_owned()))
            .collect()
    };
    let request = at_trace(&[("tungstenite::handshake::client", "Request")]);
    assert_eq!(leaks("SECRET123"), request, "the query token\n{}", dump());
    assert_eq!(
        leaks("AUTH-SECRET-789"),
        request,
        "the Authorization header"
    );
    assert_eq!(
        leaks("HELLO-SECRET-456"),
        at_trace(&[
            ("tungstenite::protocol", "Sending frame"),
            ("tungstenite::protocol::frame", "writing frame"),
        ]),
        "the hello token"
    );
    assert_eq!(
        leaks("ACK-SECRET-000"),
        at_trace(&[
            ("tungstenite::protocol", "Received message"),
            ("tungstenite::protocol::frame", "received frame"),
        ]),
        "the server's token"
    );
    // tungstenite drops the URL's user info before it builds the request.
    for secret in ["pass", "user:"] {
        assert!(leaks(secret).is_empty(), "{secret:?}: {:?}", leaks(secret));
    }

    // The recipe in docs/adapters.md keeps those records out: a `Targets` filter capping
    // tungstenite at DEBUG drops its TRACE records and keeps the rest.
    let filtered = Capture::default();
    let capped = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(filtered.clone())
        .finish()
        .with(
            Targets::new()
                .with_default(tracing::Level::TRACE)
                .with_target("tungstenite", tracing::Level::DEBUG),
        );
    tracing::subscriber::with_default(capped, || {
        tracing_log::log::trace!(target: "tungstenite::protocol", "Received message RECORD-1");
        tracing_log::log::debug!(target: "tungstenite::handshake::client", "RECORD-2");
        tracing::trace!("RECORD-3");
    });
    let kept = filtered.text();
    assert!(!kept.contains("RECORD-1"), "{kept}");
    assert!(
        kept.contains("RECORD-2") && kept.contains("RECORD-3"),
        "{kept}"
    );
}

/// The session's seed, which the logs must not show (see the session id's check).
const SEED: u64 = 0x0123_4567_89ab_cdef;

/// The test's secrets: the URL's query token, the `Authorization` header, the hello's
/// token and the token in the server's acknowledgement.
const SECRETS: [&str; 4] = [
    "SECRET123",
    "AUTH-SECRET-789",
    "HELLO-SECRET-456",
    "ACK-SECRET-000",
];

/// One formatted record.
struct Record {
    /// All its lines (tungstenite's frame dumps span several).
    text: String,
    level: String,
    /// Bridged from `log`: the `log.target` field.
    tungstenite: bool,
    target: String,
    /// The first words of the message, up to a `:`, `{` or line end.
    message: String,
    /// Inside tether's session span: the client's side.
    client: bool,
}

impl Record {
    /// Whether it holds `secret` as text or as the hex of its bytes (frame dumps).
    fn holds(&self, secret: &str) -> bool {
        let hex: String = secret.bytes().map(|b| format!("{b:02x}")).collect();
        self.text.contains(secret) || self.text.contains(&hex)
    }
}

/// Splits the capture into records: each starts with a timestamp (`2026-12-04T…`).
fn records(logs: &str) -> Vec<Record> {
    let starts = |l: &str| l.len() > 20 && l.as_bytes()[4] == b'-' && l.as_bytes()[10] == b'T';
    let mut texts: Vec<String> = Vec::new();
    for line in logs.lines() {
        match texts.last_mut() {
            Some(last) if !starts(line) => {
                last.push('\n');
                last.push_str(line);
            }
            _ => texts.push(line.to_owned()),
        }
    }
    texts
        .into_iter()
        .map(|text| {
            let first = text.lines().next().unwrap_or_default();
            let level = first
                .split_whitespace()
                .nth(1)
                .unwrap_or_default()
                .to_owned();
            let target = text
                .split_once("log.target=\"")
                .and_then(|(_, rest)| rest.split_once('"'))
                .map(|(t, _)| t.to_owned())
                .unwrap_or_default();
            let message = first
                .split_once(": log: ")
                .or_else(|| first.split_once(" log: "))
                .map(|(_, m)| {
                    m.split([':', '{'])
                        .next()
                        .unwrap_or_default()
                        .trim()
                        .to_owned()
                })
                .unwrap_or_default();
            Record {
                level,
                tungstenite: target.starts_with("tungstenite"),
                target,
                message,
                client: first.contains("tether{session="),
                text,
            }
        })
        .collect()
}
