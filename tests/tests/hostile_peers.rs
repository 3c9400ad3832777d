//! Hostile peers over real loopback sockets, on tokio and smol: a raw peer
//! (`tether_tests::raw_peer`) writes bytes no library would send — close codes from the
//! whole registry and beyond, over-long close reasons, invalid UTF-8, frames and messages
//! over the size limit, reserved bits and opcodes, broken fragmentation — at tether's
//! client and at tether's server. Each case asserts the typed outcome the application
//! sees, the close frame the peer received (the RFC 6455 §7.4.1 code, read off the wire),
//! and what the session does next under the default policy.
//!
//! Size cases are sent as a header declaring the size and at most a little payload: the
//! codec refuses them at the header, so the answer proves nothing was buffered.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::channel::oneshot;
use serde_json::{Value, json};
use tether_core::profiles::{
    Gateway, GatewayOptions, GatewayRequest, HelloAck, HelloAckRequest, Raw,
};
use tether_core::server::{EndCause, ServerConfig};
use tether_core::{
    ClosePolicy, Config, DisconnectReason, EndReason, Event, FrameViolation, Jitter, Status,
    StreamEnd, StreamEventKind, Violation,
};
use tether_driver::server::GuardConfig;
use tether_tests::raw_peer::{
    Answer, Incoming, MASK, PEER_TIMEOUT, RawConn, RawServer, Scripted, client_case, close_payload,
    frame, header,
};
use tether_tests::runtimes::{AcceptOne, OnSmol, OnTokio, TestRuntime, within};

const LIMIT: Duration = Duration::from_secs(10);
const MIB: u64 = 1 << 20;

/// What the session does after the case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Next {
    /// Reconnects (the peer sees a second connection).
    Reconnect,
    /// Reconnects, after a floor too long to wait for here.
    ReconnectLater,
    /// Ends normally.
    Ends,
    /// Fails for good.
    Fails,
}

struct Case {
    name: &'static str,
    bytes: Vec<u8>,
    violation: Option<Violation>,
    reason: DisconnectReason,
    answer: Answer,
    next: Next,
}

fn close_frame(code: u16, reason: &[u8]) -> Vec<u8> {
    frame(0x88, &close_payload(code, reason), None)
}

fn closed(code: u16, reason: &str) -> DisconnectReason {
    DisconnectReason::Closed {
        code: Some(tether_core::CloseCode(code)),
        reason: reason.to_owned(),
    }
}

fn broken(v: Violation) -> DisconnectReason {
    DisconnectReason::ProtocolError(v)
}

/// A case the link refuses: the violation is reported, the connection fails with `code`,
/// and the session reconnects.
fn refused(name: &'static str, bytes: Vec<u8>, violation: Violation, code: u16) -> Case {
    Case {
        name,
        bytes,
        violation: Some(violation.clone()),
        reason: broken(violation),
        answer: Answer::Close(Some(code)),
        next: Next::Reconnect,
    }
}

/// Every case a server can throw at tether's client.
fn client_cases() -> Vec<Case> {
    let mut cases = vec![
        Case {
            name: "close 1000",
            bytes: close_frame(1000, b"bye"),
            violation: None,
            reason: closed(1000, "bye"),
            answer: Answer::Close(Some(1000)),
            next: Next::Ends,
        },
        Case {
            name: "close 4001",
            bytes: close_frame(4001, b"auth"),
            violation: None,
            reason: closed(4001, "auth"),
            answer: Answer::Close(Some(4001)),
            next: Next::Fails,
        },
        Case {
            name: "close 1012",
            bytes: close_frame(1012, b"restart"),
            violation: None,
            reason: closed(1012, "restart"),
            answer: Answer::Close(Some(1012)),
            next: Next::ReconnectLater,
        },
        Case {
            name: "close 1011",
            bytes: close_frame(1011, b""),
            violation: None,
            reason: closed(1011, ""),
            answer: Answer::Close(Some(1011)),
            next: Next::Reconnect,
        },
        Case {
            name: "close 1001",
            bytes: close_frame(1001, b"going"),
            violation: None,
            reason: closed(1001, "going"),
            answer: Answer::Close(Some(1001)),
            next: Next::Reconnect,
        },
        Case {
            name: "close 4999",
            bytes: close_frame(4999, b"app"),
            violation: None,
            reason: closed(4999, "app"),
            answer: Answer::Close(Some(4999)),
            next: Next::Reconnect,
        },
        Case {
            // Valid (IANA: bad gateway) but unknown to tungstenite, which answers 1002;
            // the session sees 1014 as sent and reconnects.
            name: "close 1014",
            bytes: close_frame(1014, b"bad gateway"),
            violation: None,
            reason: closed(1014, "bad gateway"),
            answer: Answer::Close(Some(1002)),
            next: Next::Reconnect,
        },
        Case {
            name: "close with no code",
            bytes: frame(0x88, b"", None),
            violation: None,
            reason: closed(1005, ""),
            answer: Answer::Close(None),
            next: Next::Reconnect,
        },
        Case {
            name: "close with a 123-byte reason",
            bytes: close_frame(1000, &[b'r'; 123]),
            violation: None,
            reason: closed(1000, &"r".repeat(123)),
            answer: Answer::Close(Some(1000)),
            next: Next::Ends,
        },
        refused(
            "close with a 124-byte reason",
            close_frame(1000, &[b'r'; 124]),
            Violation::Frame(FrameViolation::ControlTooLong),
            1002,
        ),
        refused(
            "close with a one-byte payload",
            frame(0x88, &[3], None),
            Violation::Frame(FrameViolation::BadClosePayload),
            1002,
        ),
        refused(
            "close reason not utf-8",
            close_frame(1000, &[0xff, 0xfe]),
            Violation::InvalidUtf8,
            1007,
        ),
        refused(
            "text not utf-8",
            frame(0x81, &[0x66, 0xff, 0xfe], None),
            Violation::InvalidUtf8,
            1007,
        ),
        refused(
            "fragmented text not utf-8",
            [frame(0x01, b"ok", None), frame(0x80, &[0xc3, 0x28], None)].concat(),
            Violation::InvalidUtf8,
            1007,
        ),
        refused(
            "a 20 MiB frame",
            [header(0x81, 20 * MIB, None), vec![b'x'; 4096]].concat(),
            Violation::Oversized {
                len: 20 << 20,
                max: 16 << 20,
            },
            1009,
        ),
        refused(
            "a 1 GiB declared frame",
            header(0x82, 1 << 30, None),
            Violation::Oversized {
                len: 1 << 30,
                max: 16 << 20,
            },
            1009,
        ),
        refused(
            "RSV1 set",
            frame(0xc1, b"hi", None),
            Violation::Frame(FrameViolation::ReservedBits),
            1002,
        ),
        refused(
            "reserved data opcode",
            frame(0x83, b"hi", None),
            Violation::Frame(FrameViolation::ReservedOpcode(3)),
            1002,
        ),
        refused(
            "reserved control opcode",
            frame(0x8b, b"", None),
            Violation::Frame(FrameViolation::ReservedOpcode(0xb)),
            1002,
        ),
        refused(
            "fragmented ping",
            frame(0x09, b"p", None),
            Violation::Frame(FrameViolation::FragmentedControl),
            1002,
        ),
        refused(
            "ping of 126 bytes",
            frame(0x89, &[0; 126], None),
            Violation::Frame(FrameViolation::ControlTooLong),
            1002,
        ),
        refused(
            "continuation without a start",
            frame(0x80, b"x", None),
            Violation::Frame(FrameViolation::UnexpectedContinuation),
            1002,
        ),
        refused(
            "new message inside a fragmented one",
            [frame(0x01, b"a", None), frame(0x81, b"b", None)].concat(),
            Violation::Frame(FrameViolation::ExpectedContinuation),
            1002,
        ),
        refused(
            "masked frame from the server",
            frame(0x81, b"hi", Some(MASK)),
            Violation::Frame(FrameViolation::Masking),
            1002,
        ),
    ];
    // Codes no peer may send, 1005/1006/1015 inside a close frame among them: a
    // violation (never a fatal 1002 the peer did not send), answered with 1002, and a
    // reconnect.
    for code in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
        cases.push(Case {
            name: "close with an invalid code",
            bytes: close_frame(code, b"x"),
            violation: Some(Violation::InvalidCloseCode(code)),
            reason: broken(Violation::InvalidCloseCode(code)),
            answer: Answer::Close(Some(1002)),
            next: Next::Reconnect,
        });
    }
    cases
}

/// The shortened configuration: reconnect after 20 ms, no jitter; a 2 s close timeout
/// bounds any close handshake.
fn client_config() -> Config {
    Config::builder()
        .backoff_schedule(vec![Duration::from_millis(20)])
        .jitter(Jitter::None)
        .close_timeout(Duration::from_secs(2))
        .close_policy(ClosePolicy::default())
        .build()
        .expect("valid test configuration")
}

async fn client_sees<A: TestRuntime>(a: &A, case: &Case) {
    let server = RawServer::start(case.bytes.clone(), 3);
    let client = a
        .start(&server.url(), client_config(), Raw)
        .unwrap_or_else(|e| panic!("[{}] {}: start: {e}", a.name(), case.name));
    let mut events = Box::pin(client.events());
    let what = format!("{}: the disconnect", case.name);
    let (violations, reason, retry, end) = within(a, LIMIT, &what, async {
        let mut violations = Vec::new();
        while let Some(ev) = events.next().await {
            match ev {
                Event::Violation { violation, .. } => violations.push(violation),
                Event::Disconnected { reason, retry, .. } => {
                    // Without a retry, the end follows at once.
                    let end = match retry {
                        None => match events.next().await {
                            Some(Event::Ended(r)) => Some(r),
                            _ => None,
                        },
                        Some(_) => None,
                    };
                    return (violations, reason, retry, end);
                }
                Event::AttemptFailed { error, .. } => {
                    panic!("[{}] {}: attempt failed: {error}", a.name(), case.name)
                }
                _ => {}
            }
        }
        panic!("[{}] {}: events ended", a.name(), case.name)
    })
    .await;
    let tag = format!("[{}] {}", a.name(), case.name);
    assert_eq!(
        violations,
        case.violation.iter().cloned().collect::<Vec<_>>(),
        "{tag}"
    );
    assert_eq!(reason, case.reason, "{tag}");
    match case.next {
        Next::Reconnect | Next::ReconnectLater => {
            assert!(retry.is_some(), "{tag}: reconnects");
            assert_eq!(end, None, "{tag}");
        }
        Next::Ends => {
            assert!(retry.is_none(), "{tag}");
            assert!(
                matches!(end, Some(EndReason::ClosedByPeer { .. })),
                "{tag}: {end:?}"
            );
        }
        Next::Fails => {
            assert!(retry.is_none(), "{tag}");
            assert!(matches!(end, Some(EndReason::Failed(_))), "{tag}: {end:?}");
        }
    }
    let answer = server.answer();
    assert_eq!(
        answer,
        Some(case.answer.clone()),
        "{tag}: the peer's answer"
    );
    if case.next == Next::Reconnect {
        within(a, LIMIT, &format!("{tag}: reconnect"), async {
            while server.connections() < 2 {
                a.sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
    }
    client.terminate();
}

/// A server that never answers a ping is given up on as stale: the socket is reset, so the
/// kernel stops sending to it.
async fn a_silent_server_is_reset<A: TestRuntime>(a: &A) {
    let server = RawServer::start(Vec::new(), 1);
    let config = Config::builder()
        .ping_interval(Some(Duration::from_millis(50)))
        .stale_after(Duration::from_millis(200))
        .backoff_schedule(vec![Duration::from_secs(60)])
        .build()
        .expect("valid test configuration");
    let client = a.start(&server.url(), config, Raw).expect("start");
    let mut events = Box::pin(client.events());
    let reason = within(a, LIMIT, "stale", async {
        while let Some(ev) = events.next().await {
            if let Event::Disconnected { reason, .. } = ev {
                return reason;
            }
        }
        panic!("events ended")
    })
    .await;
    assert_eq!(reason, DisconnectReason::Stale, "[{}]", a.name());
    assert_eq!(server.answer(), Some(Answer::Reset), "[{}]", a.name());
    client.terminate();
}

/// A peer that declares a heartbeat of 1,000 years cannot turn dead-peer detection off:
/// the declared value is capped by `LivenessConfig::max_heartbeat`.
async fn a_thousand_year_heartbeat_is_capped<A: TestRuntime>(a: &A) {
    let ack = br#"{"type":"hello_ack","heartbeatMs":31536000000000}"#;
    let server = RawServer::start(frame(0x81, ack, None), 1);
    let mut config = Config::builder()
        .ping_interval(Some(Duration::from_millis(50)))
        .stale_after(Duration::from_millis(200))
        .backoff_schedule(vec![Duration::from_secs(60)])
        .build()
        .expect("valid test configuration");
    config.liveness.max_heartbeat = Duration::from_millis(300);
    let hello = HelloAck::new(|| serde_json::json!({ "type": "hello" }));
    let client = a.start(&server.url(), config, hello).expect("start");
    let mut events = Box::pin(client.events());
    let start = a.now();
    let reason = within(a, LIMIT, "a capped heartbeat goes stale", async {
        while let Some(ev) = events.next().await {
            if let Event::Disconnected { reason, .. } = ev {
                return reason;
            }
        }
        panic!("events ended")
    })
    .await;
    assert_eq!(reason, DisconnectReason::Stale, "[{}]", a.name());
    // Stale at the capped heartbeat × the stale factor (2): 600 ms after the ack.
    assert!(
        a.now() - start >= Duration::from_millis(600),
        "[{}]",
        a.name()
    );
    client.terminate();
}

/// A `Retry-After` of `u64::MAX` seconds cannot park the client for 584 years: the floor
/// is capped by `BackoffConfig::max_floor`.
async fn an_endless_retry_after_is_capped<A: TestRuntime>(a: &A) {
    let server = RawServer::refusing(
        "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 18446744073709551615\r\n\
         Content-Length: 0\r\n\r\n",
        3,
    );
    let mut config = Config::builder()
        .retry_first_connect(true)
        .backoff_schedule(vec![Duration::from_millis(10)])
        .jitter(Jitter::None)
        .build()
        .expect("valid test configuration");
    config.backoff.max_floor = Duration::from_millis(300);
    let client = a.start(&server.url(), config, Raw).expect("start");
    let mut events = Box::pin(client.events());
    let (error, retry) = within(a, LIMIT, "the refused attempt", async {
        while let Some(ev) = events.next().await {
            if let Event::AttemptFailed { error, retry, .. } = ev {
                return (error, retry);
            }
        }
        panic!("events ended")
    })
    .await;
    let tag = format!("[{}] {error}", a.name());
    let retry = retry.expect("a 429 is retried");
    assert_eq!(retry.floor, Some(Duration::from_millis(300)), "{tag}");
    // A floor spreads the wait over [floor, 2 × floor].
    let floor = Duration::from_millis(300);
    assert!(
        retry.wait >= floor && retry.wait <= 2 * floor,
        "{tag}: {retry:?}"
    );
    // And it does come back.
    within(a, LIMIT, &format!("{tag}: the next attempt"), async {
        while server.connections() < 2 {
            a.sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    client.terminate();
}

/// A server that starts a fragmented message and never finishes it gets 1008 after the
/// message timeout, though it is otherwise alive (the stale threshold is far off).
async fn an_unfinished_message_times_out<A: TestRuntime>(a: &A) {
    let server = RawServer::start(frame(0x01, b"never finished", None), 1);
    let mut config = Config::builder()
        .ping_interval(None)
        .stale_after(Duration::from_secs(60))
        .backoff_schedule(vec![Duration::from_secs(60)])
        .build()
        .expect("valid test configuration");
    config.liveness.message_timeout = Duration::from_millis(200);
    let client = a.start(&server.url(), config, Raw).expect("start");
    let mut events = Box::pin(client.events());
    let start = a.now();
    let reason = within(a, LIMIT, "the message timeout", async {
        while let Some(ev) = events.next().await {
            if let Event::Disconnected { reason, .. } = ev {
                return reason;
            }
        }
        panic!("events ended")
    })
    .await;
    let tag = format!("[{}]", a.name());
    assert_eq!(reason, broken(Violation::MessageTimeout), "{tag}");
    assert!(a.now() - start >= Duration::from_millis(200), "{tag}");
    assert_eq!(server.answer(), Some(Answer::Close(Some(1008))), "{tag}");
    client.terminate();
}

// ---- protocol-level cases: a raw server speaking the profile ---------------------------

/// The next JSON text frame the client sent, within `deadline`.
fn next_json(c: &mut RawConn, deadline: Instant) -> Result<Value, String> {
    match c.next_text(deadline) {
        Incoming::Text(t) => serde_json::from_str(&t).map_err(|e| format!("not JSON: {e}")),
        other => Err(format!("expected a text frame, got {other:?}")),
    }
}

/// Reads the hello, acknowledges it, and returns the id of the next request.
fn hello_then_request(c: &mut RawConn, deadline: Instant) -> Result<u64, String> {
    let hello = next_json(c, deadline)?;
    if hello["type"] != "hello" {
        return Err(format!("expected the hello, got type {}", hello["type"]));
    }
    c.send_text(r#"{"type":"hello_ack"}"#)
        .map_err(|e| e.to_string())?;
    request_id(c, deadline)
}

/// The id of the next request frame.
fn request_id(c: &mut RawConn, deadline: Instant) -> Result<u64, String> {
    let req = next_json(c, deadline)?;
    if req["type"] != "request" {
        return Err(format!("expected a request, got type {}", req["type"]));
    }
    req["id"].as_u64().ok_or_else(|| "a request id".to_owned())
}

fn respond(c: &mut RawConn, id: u64, result: &Value) -> Result<(), String> {
    let res = json!({ "type": "response", "id": id, "result": result });
    c.send_text(&res.to_string()).map_err(|e| e.to_string())
}

fn hello_ack() -> HelloAck {
    HelloAck::new(|| json!({ "type": "hello" }))
}

/// A stream event numbered `u64::MAX`, then its terminal (and two late ones): no panic, no
/// gap computed past the last seq, exactly one terminal; the request's response arrives
/// and the next request succeeds.
async fn a_last_seq_then_its_terminal<A: TestRuntime>(a: &A) {
    let server = Scripted::start(2, |c| -> Result<(), String> {
        let deadline = Instant::now() + PEER_TIMEOUT;
        let id = hello_then_request(c, deadline)?;
        let key = id.to_string();
        let write =
            |c: &mut RawConn, v: Value| c.send_text(&v.to_string()).map_err(|e| e.to_string());
        write(
            c,
            json!({"type":"event","stream":key,"seq":u64::MAX,"state":"delta","text":"a"}),
        )?;
        write(
            c,
            json!({"type":"event","stream":key,"seq":1,"state":"final"}),
        )?;
        write(c, json!({"type":"event","stream":key,"state":"final"}))?;
        write(
            c,
            json!({"type":"event","stream":key,"seq":u64::MAX,"state":"error","message":"late"}),
        )?;
        write(c, json!({"type":"marker"}))?;
        respond(c, id, &json!({ "done": true }))?;
        let next = request_id(c, deadline)?;
        respond(c, next, &json!(3))
    });
    let tag = format!("[{}] seq u64::MAX", a.name());
    let client = a
        .start(&server.url(), client_config(), hello_ack())
        .expect("start");
    let mut events = Box::pin(client.events());
    let (key, stream, response, next, seen) = within(a, LIMIT, &tag, async {
        let mut call = client
            .stream(
                HelloAckRequest::new("generate", json!({})).streaming(),
                None,
            )
            .await
            .expect("the stream request is accepted");
        let key = call.id.get().to_string();
        let mut stream = Vec::new();
        while let Some(ev) = call.events.next().await {
            stream.push(ev.kind);
        }
        let response = call.response().await;
        let next = client
            .request(HelloAckRequest::new("sum", json!([1, 2])))
            .await;
        // Everything the session reported up to the marker the server wrote after the
        // stream's frames.
        let mut seen = Vec::new();
        while let Some(ev) = events.next().await {
            if matches!(&ev, Event::Message(m) if m.value().is_ok_and(|v| v["type"] == "marker")) {
                break;
            }
            seen.push(ev);
        }
        (key, stream, response, next, seen)
    })
    .await;
    assert_eq!(
        stream,
        vec![
            StreamEventKind::Delta {
                text: Some("a".to_owned()),
                payload:
                    json!({"type":"event","stream":key,"seq":u64::MAX,"state":"delta","text":"a"})
                        .into(),
            },
            StreamEventKind::Final {
                text: Some("a".to_owned()),
                payload: json!({"type":"event","stream":key,"seq":1,"state":"final"}).into(),
            },
        ],
        "{tag}: the stream"
    );
    let kinds: Vec<_> = seen
        .iter()
        .filter_map(|ev| match ev {
            Event::Stream(s) => Some(&s.kind),
            _ => None,
        })
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| k.is_terminal()).count(),
        1,
        "{tag}: exactly one terminal: {kinds:?}"
    );
    assert!(
        !kinds
            .iter()
            .any(|k| matches!(k, StreamEventKind::Gap { .. })),
        "{tag}: no gap: {kinds:?}"
    );
    assert!(
        !seen
            .iter()
            .any(|ev| matches!(ev, Event::Disconnected { .. } | Event::Violation { .. })),
        "{tag}: {seen:?}"
    );
    assert_eq!(
        response.expect("the response"),
        json!({ "done": true }),
        "{tag}"
    );
    assert_eq!(next.expect("the next request"), json!(3), "{tag}");
    assert_eq!(
        server.result(LIMIT),
        Some(Ok(())),
        "{tag}: the server's script"
    );
    assert_eq!(server.connections(), 1, "{tag}: no reconnect");
    client.terminate();
}

/// The gateway's challenge, as the real one sends it.
const CHALLENGE: &str = r#"{"type":"event","event":"connect.challenge","payload":{"nonce":"n-1","ts":1737264000000,"capabilities":["chat"]}}"#;

/// How many challenges the flooding gateway writes in one go.
const CHALLENGES: usize = 10_000;

/// A gateway that writes 10,000 `connect.challenge` frames at once gets exactly one
/// `connect` request, then opens the session with its `hello-ok`; each repeated challenge
/// is a violation, reported (none lost) through the bounded event mailbox.
async fn a_challenge_flood_gets_one_connect<A: TestRuntime>(a: &A) {
    let server = Scripted::start(2, |c| -> Result<Vec<Value>, String> {
        let flood = frame(0x81, CHALLENGE.as_bytes(), None).repeat(CHALLENGES);
        c.write_raw(&flood).map_err(|e| e.to_string())?;
        let deadline = Instant::now() + LIMIT;
        let connect = next_json(c, deadline)?;
        let res = json!({
            "type": "res", "id": connect["id"], "ok": true,
            "payload": { "type": "hello-ok", "protocol": 4, "policy": { "tickIntervalMs": 30000 } },
        });
        c.send_text(&res.to_string()).map_err(|e| e.to_string())?;
        // Every frame up to the request the test sends once open: any second `connect`
        // (written for a later challenge, all of which precede the `hello-ok`) is here.
        let mut sent = vec![connect];
        for _ in 0..CHALLENGES {
            let f = next_json(c, deadline)?;
            let done = f["method"] == "health";
            if done {
                let ok =
                    json!({ "type": "res", "id": f["id"], "ok": true, "payload": { "ok": true } });
                c.send_text(&ok.to_string()).map_err(|e| e.to_string())?;
            }
            sent.push(f);
            if done {
                break;
            }
        }
        Ok(sent)
    });
    let tag = format!("[{}] {CHALLENGES} challenges", a.name());
    let gateway = Gateway::new(GatewayOptions::default());
    let client = a
        .start(&server.url(), client_config(), gateway)
        .expect("start");
    let mut events = Box::pin(client.events());
    let (violations, others) = within(a, LIMIT, &format!("{tag}: open"), async {
        let mut violations = Vec::new();
        let mut others = Vec::new();
        while let Some(ev) = events.next().await {
            match ev {
                Event::Opened { .. } => return (violations, others),
                Event::Violation { violation, .. } => violations.push(violation),
                other => others.push(format!("{other:?}")),
            }
        }
        panic!("{tag}: events ended")
    })
    .await;
    assert_eq!(
        violations.len(),
        CHALLENGES - 1,
        "{tag}: one violation per repeat"
    );
    assert!(
        violations
            .iter()
            .all(|v| *v == Violation::UnexpectedHandshake),
        "{tag}"
    );
    assert!(others.is_empty(), "{tag}: {others:?}");
    let health = within(a, LIMIT, &format!("{tag}: a request"), async {
        client.request(GatewayRequest::new("health", None)).await
    })
    .await;
    assert_eq!(health.expect("health"), json!({ "ok": true }), "{tag}");
    let sent = server
        .result(LIMIT)
        .expect("the script ends")
        .unwrap_or_else(|e| panic!("{tag}: {e}"));
    let methods: Vec<_> = sent.iter().map(|f| f["method"].clone()).collect();
    assert_eq!(
        methods,
        vec![json!("connect"), json!("health")],
        "{tag}: what the peer received"
    );
    assert_eq!(server.connections(), 1, "{tag}: no reconnect");
    client.terminate();
}

/// Stream text the peer sends in all: 100 MiB.
const FLOOD_TEXT: usize = 100 << 20;
/// The text of each delta: 64 KiB.
const DELTA_TEXT: usize = 64 << 10;

/// 100 MiB of deltas on one stream against the default 1 MiB `max_text`: the stream ends
/// with `Ended(TextTooLong)` at the delta that would pass the budget, the rest is dropped
/// as late, and the session stays open: the stream's response and a next request succeed.
async fn a_hundred_mib_stream_ends_too_long<A: TestRuntime>(a: &A) {
    let server = Scripted::start(2, |c| -> Result<usize, String> {
        // Writing 100 MiB takes a second or two on a quiet machine and several times that
        // on a loaded one: the server waits for the next request as long as the client
        // waits for the whole case, not the per-step limit.
        let deadline = Instant::now() + LIMIT * 5;
        let id = hello_then_request(c, deadline)?;
        let text = "x".repeat(DELTA_TEXT);
        let mut written = 0;
        for seq in 1..=(FLOOD_TEXT / DELTA_TEXT) as u64 {
            let ev = json!({"type":"event","stream":id.to_string(),"seq":seq,"state":"delta","text":text});
            c.send_text(&ev.to_string())
                .map_err(|e| format!("after {written} bytes: {e}"))?;
            written += DELTA_TEXT;
        }
        let end = json!({"type":"event","stream":id.to_string(),"state":"final"});
        c.send_text(&end.to_string()).map_err(|e| e.to_string())?;
        respond(c, id, &json!({ "done": true }))?;
        let next = request_id(c, deadline)?;
        respond(c, next, &json!(3))?;
        Ok(written)
    });
    let tag = format!("[{}] 100 MiB of stream text", a.name());
    // Requests wait as long as the case may take, for the same reason.
    let config = Config {
        request_timeout: LIMIT * 5,
        ..client_config()
    };
    let client = a.start(&server.url(), config, hello_ack()).expect("start");
    let (deltas, end, response, next) = within(a, LIMIT * 6, &tag, async {
        client.wait_open().await.expect("opens");
        let mut call = client
            .stream(
                HelloAckRequest::new("generate", json!({})).streaming(),
                None,
            )
            .await
            .expect("the stream request is accepted");
        let mut deltas = 0;
        let mut end = None;
        while let Some(ev) = call.events.next().await {
            match ev.kind {
                StreamEventKind::Delta { .. } if end.is_none() => deltas += 1,
                other => {
                    assert!(end.is_none(), "nothing after the terminal: {other:?}");
                    end = Some(other);
                }
            }
        }
        let response = call.response().await;
        let next = client
            .request(HelloAckRequest::new("sum", json!([1, 2])))
            .await;
        (deltas, end, response, next)
    })
    .await;
    // 16 deltas of 64 KiB make exactly 1 MiB; the 17th would pass it.
    assert_eq!(
        deltas,
        (1 << 20) / DELTA_TEXT,
        "{tag}: deltas within the budget"
    );
    assert_eq!(
        end,
        Some(StreamEventKind::Ended(StreamEnd::TextTooLong)),
        "{tag}"
    );
    assert_eq!(
        response.expect("the response"),
        json!({ "done": true }),
        "{tag}"
    );
    assert_eq!(next.expect("the next request"), json!(3), "{tag}");
    assert_eq!(client.status(), Status::Open, "{tag}");
    assert_eq!(
        server.result(LIMIT),
        Some(Ok(FLOOD_TEXT)),
        "{tag}: all of it written"
    );
    assert_eq!(server.connections(), 1, "{tag}: no reconnect");
    client.terminate();
}

async fn every_client_case<A: TestRuntime>(a: &A) {
    an_unfinished_message_times_out(a).await;
    a_silent_server_is_reset(a).await;
    a_thousand_year_heartbeat_is_capped(a).await;
    an_endless_retry_after_is_capped(a).await;
    for case in client_cases() {
        client_sees(a, &case).await;
    }
}

#[tokio::test]
async fn a_hostile_server_gets_typed_outcomes_and_rfc_close_codes_on_tokio() {
    every_client_case(&OnTokio).await;
}

#[test]
fn a_hostile_server_gets_typed_outcomes_and_rfc_close_codes_on_smol() {
    smol::block_on(every_client_case(&OnSmol));
}

async fn every_protocol_case<A: TestRuntime>(a: &A) {
    a_last_seq_then_its_terminal(a).await;
    a_challenge_flood_gets_one_connect(a).await;
    a_hundred_mib_stream_ends_too_long(a).await;
}

#[tokio::test]
async fn a_hostile_server_speaking_the_profiles_is_survived_on_tokio() {
    every_protocol_case(&OnTokio).await;
}

#[test]
fn a_hostile_server_speaking_the_profiles_is_survived_on_smol() {
    smol::block_on(every_protocol_case(&OnSmol));
}

// ---- tether's server against a hostile client ------------------------------------------

struct ServerCase {
    name: &'static str,
    bytes: Vec<u8>,
    end: EndCause,
    answer: Answer,
}

fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
    frame(first, payload, Some(MASK))
}

fn lost(reason: DisconnectReason) -> EndCause {
    EndCause::Lost(reason)
}

/// The server's inbound limit in these cases.
const SERVER_MAX: usize = 64 << 10;

fn server_cases() -> Vec<ServerCase> {
    let v = |v: Violation| lost(DisconnectReason::ProtocolError(v));
    let f = |f: FrameViolation| v(Violation::Frame(f));
    let mut cases = vec![
        ServerCase {
            name: "close 1000",
            bytes: masked(0x88, &close_payload(1000, b"bye")),
            end: lost(closed(1000, "bye")),
            answer: Answer::Close(Some(1000)),
        },
        ServerCase {
            name: "close 4000",
            bytes: masked(0x88, &close_payload(4000, b"app")),
            end: lost(closed(4000, "app")),
            answer: Answer::Close(Some(4000)),
        },
        ServerCase {
            name: "close 1014",
            bytes: masked(0x88, &close_payload(1014, b"")),
            end: lost(closed(1014, "")),
            answer: Answer::Close(Some(1002)),
        },
        ServerCase {
            name: "text not utf-8",
            bytes: masked(0x81, &[0xff]),
            end: v(Violation::InvalidUtf8),
            answer: Answer::Close(Some(1007)),
        },
        ServerCase {
            name: "close reason not utf-8",
            bytes: masked(0x88, &close_payload(1000, &[0xff])),
            end: v(Violation::InvalidUtf8),
            answer: Answer::Close(Some(1007)),
        },
        ServerCase {
            // Just above the limit: refused with 1009, never discarded silently.
            name: "a frame one byte over the limit",
            bytes: header(0x82, SERVER_MAX as u64 + 1, Some(MASK)),
            end: v(Violation::Oversized {
                len: SERVER_MAX + 1,
                max: SERVER_MAX,
            }),
            answer: Answer::Close(Some(1009)),
        },
        ServerCase {
            name: "a 1 GiB declared frame",
            bytes: header(0x82, 1 << 30, Some(MASK)),
            end: v(Violation::Oversized {
                len: 1 << 30,
                max: SERVER_MAX,
            }),
            answer: Answer::Close(Some(1009)),
        },
        ServerCase {
            name: "a message over the limit in fragments",
            bytes: [
                masked(0x02, &vec![1; SERVER_MAX / 2]),
                masked(0x00, &vec![2; SERVER_MAX / 2]),
                masked(0x80, &[3; 16]),
            ]
            .concat(),
            end: v(Violation::Oversized {
                len: SERVER_MAX + 16,
                max: SERVER_MAX,
            }),
            answer: Answer::Close(Some(1009)),
        },
        ServerCase {
            name: "RSV2 set",
            bytes: masked(0xa1, b"x"),
            end: f(FrameViolation::ReservedBits),
            answer: Answer::Close(Some(1002)),
        },
        ServerCase {
            name: "reserved opcode",
            bytes: masked(0x84, b"x"),
            end: f(FrameViolation::ReservedOpcode(4)),
            answer: Answer::Close(Some(1002)),
        },
        ServerCase {
            name: "unmasked frame from a client",
            bytes: frame(0x81, b"x", None),
            end: f(FrameViolation::Masking),
            answer: Answer::Close(Some(1002)),
        },
        ServerCase {
            name: "continuation without a start",
            bytes: masked(0x80, b"x"),
            end: f(FrameViolation::UnexpectedContinuation),
            answer: Answer::Close(Some(1002)),
        },
        ServerCase {
            name: "fragmented ping",
            bytes: masked(0x09, b"x"),
            end: f(FrameViolation::FragmentedControl),
            answer: Answer::Close(Some(1002)),
        },
    ];
    for code in [0, 1005, 1006, 5000] {
        cases.push(ServerCase {
            name: "close with an invalid code",
            bytes: masked(0x88, &close_payload(code, b"")),
            end: v(Violation::InvalidCloseCode(code)),
            answer: Answer::Close(Some(1002)),
        });
    }
    cases
}

fn guard_config() -> GuardConfig {
    GuardConfig {
        server: ServerConfig {
            max_inbound_frame: SERVER_MAX,
            close_timeout: Duration::from_secs(2),
            ..ServerConfig::default()
        },
        ..GuardConfig::default()
    }
}

/// Accepts one connection through the adapter and reports how it ended.
fn serve_one_with<A: AcceptOne>(
    a: &A,
    config: GuardConfig,
) -> (SocketAddr, oneshot::Receiver<EndCause>) {
    let (tx, rx) = oneshot::channel();
    let addr = a.accept_one(config, |conn| async move {
        let _ = tx.send(conn.closed().await);
    });
    (addr, rx)
}

/// A client that never answers a ping is given up on as stale and its socket reset.
async fn a_silent_client_is_reset<A: AcceptOne>(a: &A) {
    let config = GuardConfig {
        server: ServerConfig {
            liveness: tether_core::LivenessConfig {
                ping_interval: Some(Duration::from_millis(50)),
                stale_after: Duration::from_millis(200),
                ..tether_core::LivenessConfig::default()
            },
            ..guard_config().server
        },
        ..guard_config()
    };
    let (addr, ended) = serve_one_with(a, config);
    let peer = std::thread::spawn(move || client_case(addr, &[]));
    let end = within(a, PEER_TIMEOUT * 2, "stale", ended)
        .await
        .expect("reported");
    assert_eq!(end, lost(DisconnectReason::Stale), "[{}]", a.name());
    let answer = peer.join().expect("peer thread").expect("upgrade");
    assert_eq!(answer, Answer::Reset, "[{}]", a.name());
}

/// A client that starts a fragmented message and never finishes it gets 1008.
async fn an_unfinished_message_from_a_client_times_out<A: AcceptOne>(a: &A) {
    let mut config = guard_config();
    config.server.liveness.message_timeout = Duration::from_millis(200);
    let (addr, ended) = serve_one_with(a, config);
    let peer = std::thread::spawn(move || client_case(addr, &masked(0x02, &[7; 1000])));
    let end = within(a, PEER_TIMEOUT * 2, "the message timeout", ended)
        .await
        .expect("reported");
    let tag = format!("[{}]", a.name());
    assert_eq!(
        end,
        lost(DisconnectReason::ProtocolError(Violation::MessageTimeout)),
        "{tag}"
    );
    let answer = peer.join().expect("peer thread").expect("upgrade");
    assert_eq!(answer, Answer::Close(Some(1008)), "{tag}");
}

async fn every_server_case<A: AcceptOne>(a: &A) {
    an_unfinished_message_from_a_client_times_out(a).await;
    a_silent_client_is_reset(a).await;
    for case in server_cases() {
        let tag = format!("[{}] {}", a.name(), case.name);
        let (addr, ended) = serve_one_with(a, guard_config());
        let bytes = case.bytes.clone();
        let peer = std::thread::spawn(move || client_case(addr, &bytes));
        let end = within(a, PEER_TIMEOUT * 2, &tag, ended)
            .await
            .unwrap_or_else(|_| panic!("{tag}: the connection task ended unreported"));
        assert_eq!(end, case.end, "{tag}");
        let answer = peer
            .join()
            .expect("peer thread")
            .unwrap_or_else(|e| panic!("{tag}: {e}"));
        assert_eq!(answer, case.answer, "{tag}: the peer's answer");
    }
}

#[tokio::test]
async fn a_hostile_client_gets_rfc_close_codes_from_the_server_on_tokio() {
    every_server_case(&OnTokio).await;
}

#[test]
fn a_hostile_client_gets_rfc_close_codes_from_the_server_on_smol() {
    smol::block_on(every_server_case(&OnSmol));
}
