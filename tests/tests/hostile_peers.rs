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
use std::time::Duration;

use futures::StreamExt;
use futures::channel::oneshot;
use tether_core::profiles::{HelloAck, Raw};
use tether_core::server::{EndCause, ServerConfig};
use tether_core::{
    ClosePolicy, Config, DisconnectReason, EndReason, Event, FrameViolation, Jitter, Violation,
};
use tether_driver::server::GuardConfig;
use tether_tests::raw_peer::{
    Answer, MASK, PEER_TIMEOUT, RawServer, client_case, close_payload, frame, header,
};
use tether_tests::runtimes::{OnSmol, OnTokio, TestRuntime, within};

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
        Case {
            name: "close with a 124-byte reason",
            bytes: close_frame(1000, &[b'r'; 124]),
            violation: Some(Violation::Frame(FrameViolation::ControlTooLong)),
            reason: broken(Violation::Frame(FrameViolation::ControlTooLong)),
            answer: Answer::Close(Some(1002)),
            next: Next::Reconnect,
        },
        Case {
            name: "close with a one-byte payload",
            bytes: frame(0x88, &[3], None),
            violation: Some(Violation::Frame(FrameViolation::BadClosePayload)),
            reason: broken(Violation::Frame(FrameViolation::BadClosePayload)),
            answer: Answer::Close(Some(1002)),
            next: Next::Reconnect,
        },
        Case {
            name: "close reason not utf-8",
            bytes: close_frame(1000, &[0xff, 0xfe]),
            violation: Some(Violation::InvalidUtf8),
            reason: broken(Violation::InvalidUtf8),
            answer: Answer::Close(Some(1007)),
            next: Next::Reconnect,
        },
        Case {
            name: "text not utf-8",
            bytes: frame(0x81, &[0x66, 0xff, 0xfe], None),
            violation: Some(Violation::InvalidUtf8),
            reason: broken(Violation::InvalidUtf8),
            answer: Answer::Close(Some(1007)),
            next: Next::Reconnect,
        },
        Case {
            name: "fragmented text not utf-8",
            bytes: [frame(0x01, b"ok", None), frame(0x80, &[0xc3, 0x28], None)].concat(),
            violation: Some(Violation::InvalidUtf8),
            reason: broken(Violation::InvalidUtf8),
            answer: Answer::Close(Some(1007)),
            next: Next::Reconnect,
        },
        Case {
            name: "a 20 MiB frame",
            bytes: [header(0x81, 20 * MIB, None), vec![b'x'; 4096]].concat(),
            violation: Some(Violation::Oversized {
                len: 20 << 20,
                max: 16 << 20,
            }),
            reason: broken(Violation::Oversized {
                len: 20 << 20,
                max: 16 << 20,
            }),
            answer: Answer::Close(Some(1009)),
            next: Next::Reconnect,
        },
        Case {
            name: "a 1 GiB declared frame",
            bytes: header(0x82, 1 << 30, None),
            violation: Some(Violation::Oversized {
                len: 1 << 30,
                max: 16 << 20,
            }),
            reason: broken(Violation::Oversized {
                len: 1 << 30,
                max: 16 << 20,
            }),
            answer: Answer::Close(Some(1009)),
            next: Next::Reconnect,
        },
        Case {
            name: "RSV1 set",
            bytes: frame(0xc1, b"hi", None),
            violation: Some(Violation::Frame(FrameViolation::ReservedBits)),
            reason: broken(Violation::Frame(FrameViolation::ReservedBits)),
            answer: Answer::Close(Some(1002)),
            next: Next::Reconnect,
        },
        Case {
            name: "reserved data opcode",
            bytes: frame(0x83, b"hi", None),
            violation: Some(Violation::Frame(FrameViolation::ReservedOpcode(3))),
            reason: broken(Violation::Frame(FrameViolation::ReservedOpcode(3))),
            answer: Answer::Close(Some(1002)),
            next: Next::Reconnect,
        },
        Case {
            name: "reserved control opcode",
            bytes: frame(0x8b, b"", None),
            violation: Some(Violation::Frame(FrameViolation::ReservedOpcode(0xb))),
            reason: broken(Violation::Frame(FrameViolation::ReservedOpcode(0xb))),
            answer: Answer::Close(Some(1002)),
            next: Next::Reconnect,
        },
        Case {
            name: "fragmented ping",
            bytes: frame(0x09, b"p", None),
            violation: Some(Violation::Frame(FrameViolation::FragmentedControl)),
            reason: broken(Violation::Frame(FrameViolation::FragmentedControl)),
            answer: Answer::Close(Some(1002)),
            next: Next::Reconnect,
        },
        Case {
            name: "ping of 126 bytes",
            bytes: frame(0x89, &[0; 126], None),
            violation: Some(Violation::Frame(FrameViolation::ControlTooLong)),
            reason: broken(Violation::Frame(FrameViolation::ControlTooLong)),
            answer: Answer::Close(Some(1002)),
            next: Next::Reconnect,
        },
        Case {
            name: "continuation without a start",
            bytes: frame(0x80, b"x", None),
            violation: Some(Violation::Frame(FrameViolation::UnexpectedContinuation)),
            reason: broken(Violation::Frame(FrameViolation::UnexpectedContinuation)),
            answer: Answer::Close(Some(1002)),
            next: Next::Reconnect,
        },
        Case {
            name: "new message inside a fragmented one",
            bytes: [frame(0x01, b"a", None), frame(0x81, b"b", None)].concat(),
            violation: Some(Violation::Frame(FrameViolation::ExpectedContinuation)),
            reason: broken(Violation::Frame(FrameViolation::ExpectedContinuation)),
            answer: Answer::Close(Some(1002)),
            next: Next::Reconnect,
        },
        Case {
            name: "masked frame from the server",
            bytes: frame(0x81, b"hi", Some(MASK)),
            violation: Some(Violation::Frame(FrameViolation::Masking)),
            reason: broken(Violation::Frame(FrameViolation::Masking)),
            answer: Answer::Close(Some(1002)),
            next: Next::Reconnect,
        },
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
trait Accept: TestRuntime {
    fn serve_one_with(&self, config: GuardConfig) -> (SocketAddr, oneshot::Receiver<EndCause>);
    fn serve_one(&self) -> (SocketAddr, oneshot::Receiver<EndCause>) {
        self.serve_one_with(guard_config())
    }
}

impl Accept for OnTokio {
    fn serve_one_with(&self, config: GuardConfig) -> (SocketAddr, oneshot::Receiver<EndCause>) {
        let std = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        std.set_nonblocking(true).expect("nonblocking");
        let addr = std.local_addr().expect("address");
        let (tx, rx) = oneshot::channel();
        tokio::spawn(async move {
            let listener = tokio::net::TcpListener::from_std(std).expect("listener");
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            if let Ok(conn) = tether_tokio::server::accept(stream, config).await {
                let _ = tx.send(conn.closed().await);
            }
        });
        (addr, rx)
    }
}

impl Accept for OnSmol {
    fn serve_one_with(&self, config: GuardConfig) -> (SocketAddr, oneshot::Receiver<EndCause>) {
        let std = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = std.local_addr().expect("address");
        let (tx, rx) = oneshot::channel();
        smol::spawn(async move {
            let listener = smol::net::TcpListener::try_from(std).expect("listener");
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            if let Ok(conn) = tether_smol::server::accept(stream, config).await {
                let _ = tx.send(conn.closed().await);
            }
        })
        .detach();
        (addr, rx)
    }
}

/// A client that never answers a ping is given up on as stale and its socket reset.
async fn a_silent_client_is_reset<A: Accept>(a: &A) {
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
    let (addr, ended) = a.serve_one_with(config);
    let peer = std::thread::spawn(move || client_case(addr, &[]));
    let end = within(a, PEER_TIMEOUT * 2, "stale", ended)
        .await
        .expect("reported");
    assert_eq!(end, lost(DisconnectReason::Stale), "[{}]", a.name());
    let answer = peer.join().expect("peer thread").expect("upgrade");
    assert_eq!(answer, Answer::Reset, "[{}]", a.name());
}

/// A client that starts a fragmented message and never finishes it gets 1008.
async fn an_unfinished_message_from_a_client_times_out<A: Accept>(a: &A) {
    let mut config = guard_config();
    config.server.liveness.message_timeout = Duration::from_millis(200);
    let (addr, ended) = a.serve_one_with(config);
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

async fn every_server_case<A: Accept>(a: &A) {
    an_unfinished_message_from_a_client_times_out(a).await;
    a_silent_client_is_reset(a).await;
    for case in server_cases() {
        let tag = format!("[{}] {}", a.name(), case.name);
        let (addr, ended) = a.serve_one();
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
