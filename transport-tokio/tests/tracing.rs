//! What the logs show of a whole session, and what they must never show.
//!
//! A TRACE-level `fmt` subscriber writes into a buffer while a session opens, makes a
//! request, is closed by the server (1012), reconnects and is closed by the client. The
//! URL carries credentials and a query secret and the hello carries a token: the logs must
//! name the session and the redacted URL and record every step, and none of the secrets.

use std::io::Write;
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

/// A `MakeWriter` that appends every formatted line to a shared buffer.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Capture {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

/// What the server saw of one connection: the request target and the hello.
#[derive(Debug, Default)]
struct Seen {
    target: String,
    hello: Value,
}

/// Serves one connection: acknowledges the hello, answers requests, and after the first
/// request closes with 1012 when `close_after_request`.
// The header callback's error type is tungstenite's (an HTTP response), not ours.
#[allow(clippy::result_large_err)]
async fn serve_once(listener: &tokio::net::TcpListener, close_after_request: bool) -> Seen {
    let (tcp, _) = listener.accept().await.unwrap();
    let mut seen = Seen::default();
    let target = Arc::new(Mutex::new(String::new()));
    let t = target.clone();
    let mut ws = accept_hdr_async(tcp, move |req: &Request, resp: Response| {
        *t.lock().unwrap() = req.uri().to_string();
        Ok(resp)
    })
    .await
    .unwrap();
    seen.target = target.lock().unwrap().clone();
    while let Some(Ok(msg)) = ws.next().await {
        let Message::Text(t) = msg else { continue };
        let v: Value = serde_json::from_str(t.as_str()).unwrap();
        match v["type"].as_str() {
            Some("hello") => {
                seen.hello = v.clone();
                ws.send(Message::text(json!({"type":"hello_ack"}).to_string()))
                    .await
                    .unwrap();
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
    let client = tokio::time::timeout(
        Duration::from_secs(5),
        tether_tokio::connect(&url, config, hello),
    )
    .await
    .unwrap()
    .expect("a URL with user info and a query connects");
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
    }

    let logs = capture.text();
    if std::env::var_os("TETHER_SHOW_LOGS").is_some() {
        eprintln!("{logs}");
    }
    let redacted = format!("ws://{addr}/ws");
    let has = |needle: &str| logs.contains(needle);
    let dump = || format!("captured logs:\n{logs}");

    // The session span: its id (the seed, 16 hex digits) and the redacted URL.
    let span = logs
        .lines()
        .find_map(|l| {
            let at = l.find("tether{session=")?;
            let rest = &l[at + "tether{session=".len()..];
            Some(rest.split(' ').next()?.to_owned())
        })
        .unwrap_or_else(|| panic!("no session span\n{}", dump()));
    assert!(
        span.len() == 16 && span.chars().all(|c| c.is_ascii_hexdigit()),
        "session id {span:?}\n{}",
        dump()
    );
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

    for secret in ["SECRET123", "pass", "HELLO-SECRET-456", "user:", "token"] {
        assert!(!has(secret), "{secret:?} leaked into the logs\n{}", dump());
    }
}
