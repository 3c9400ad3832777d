//! Byte-level faults in the wire mode, judged by what the client delivered (its events)
//! and what the peer read off its wire.

use std::time::Duration;

use serde_json::{Value, json};
use tether_core::profiles::{HelloAck, HelloAckRequest};
use tether_core::{
    CloseCode, Config, ConnId, DisconnectReason, EndReason, Event, FrameViolation, Violation,
};
use tether_sim::Command;
use tether_sim::driven::{WireRun, WireSetup, run_driver_wire};
use tether_sim::pipe::PipeConfig;
use tether_sim::servers::HelloAckServer;
use tether_sim::wire_peer::WireFault;
use tether_sim::ws_frames::{PeerRead, close_payload, opcode, server_frame};

const LATENCY: Duration = Duration::from_millis(10);
const FAULT_AT: Duration = Duration::from_secs(1);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn conn(n: u64) -> ConnId {
    ConnId::from_raw(n)
}

fn setup(faults: Vec<(Duration, WireFault)>) -> WireSetup {
    WireSetup {
        pipe: PipeConfig {
            latency: LATENCY,
            ..PipeConfig::default()
        },
        faults,
        ..WireSetup::default()
    }
}

fn run_with(
    config: Config,
    setup: WireSetup,
    commands: Vec<(Duration, Command<HelloAck>)>,
    duration: Duration,
) -> WireRun<HelloAck> {
    let hello = HelloAck::new(|| json!({"type": "hello", "client": "faults"}));
    run_driver_wire(
        config,
        hello,
        HelloAckServer::default(),
        1,
        setup,
        commands,
        duration,
    )
    .unwrap()
}

fn run(config: Config, faults: Vec<(Duration, WireFault)>) -> WireRun<HelloAck> {
    run_with(config, setup(faults), Vec::new(), Duration::from_secs(10))
}

/// The disconnects: when, which connection, why, and whether the session retries.
fn disconnects(run: &WireRun<HelloAck>) -> Vec<(Duration, ConnId, DisconnectReason, bool)> {
    run.events
        .iter()
        .filter_map(|(at, e)| match e {
            Event::Disconnected {
                conn,
                reason,
                retry,
            } => Some((*at, *conn, reason.clone(), retry.is_some())),
            _ => None,
        })
        .collect()
}

fn opened(run: &WireRun<HelloAck>) -> Vec<ConnId> {
    run.events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Opened { conn, .. } => Some(*conn),
            _ => None,
        })
        .collect()
}

/// The close frames the peer read on `conn`.
fn peer_closes(run: &WireRun<HelloAck>, conn: ConnId) -> Vec<(Option<u16>, String)> {
    run.peer_reads
        .iter()
        .filter(|r| r.conn == conn)
        .filter_map(|r| match &r.read {
            PeerRead::Close(code, reason) => Some((*code, reason.clone())),
            _ => None,
        })
        .collect()
}

fn messages(run: &WireRun<HelloAck>) -> Vec<(Duration, Value)> {
    run.events
        .iter()
        .filter_map(|(at, e)| match e {
            Event::Message(v) => Some((*at, v.value().expect("JSON"))),
            _ => None,
        })
        .collect()
}

/// Asserts that the first connection was lost at `at` for `reason`, that the session
/// retries, and that it opened a second connection.
fn assert_lost_and_reconnected(run: &WireRun<HelloAck>, at: Duration, reason: &DisconnectReason) {
    let d = disconnects(run);
    assert_eq!(
        d.first(),
        Some(&(at, conn(0), reason.clone(), true)),
        "{d:?}"
    );
    assert_eq!(
        opened(run),
        vec![conn(0), conn(1)],
        "reconnects: {:?}",
        run.events
    );
}

fn note() -> Value {
    json!({"type": "note", "text": "split across writes"})
}

fn note_frame() -> Vec<u8> {
    server_frame(opcode::TEXT, true, note().to_string().as_bytes()).to_vec()
}

#[test]
fn a_peer_close_code_is_reported_as_sent_or_as_a_violation_and_reconnects() {
    let violation = |v| DisconnectReason::ProtocolError(v);
    let closed = |code, reason: &str| DisconnectReason::Closed {
        code: Some(CloseCode(code)),
        reason: reason.into(),
    };
    let invalid = |code| violation(Violation::InvalidCloseCode(code));
    let tungstenite = (Some(1002), "Protocol violation".to_owned());
    let long = "r".repeat(124);
    // (close payload, what the session reports, what the peer reads back)
    let cases = [
        (
            close_payload(Some(1004), b""),
            invalid(1004),
            tungstenite.clone(),
        ),
        (
            close_payload(Some(1005), b""),
            invalid(1005),
            tungstenite.clone(),
        ),
        // 1014 is valid (bad gateway) and reported as sent, but tungstenite answers a
        // code it does not know with 1002: the peer reads 1002 for its valid 1014.
        (
            close_payload(Some(1014), b"bad gateway"),
            closed(1014, "bad gateway"),
            tungstenite.clone(),
        ),
        (close_payload(Some(0), b""), invalid(0), tungstenite.clone()),
        (
            close_payload(Some(999), b""),
            invalid(999),
            tungstenite.clone(),
        ),
        (
            close_payload(Some(4999), b"app"),
            closed(4999, "app"),
            (Some(4999), "app".to_owned()),
        ),
        (
            close_payload(Some(5000), b""),
            invalid(5000),
            tungstenite.clone(),
        ),
        // A close frame without a code is 1005 to the session; the answer carries none.
        (
            close_payload(None, b""),
            closed(1005, ""),
            (None, String::new()),
        ),
        // 2 + 124 bytes: a control frame over 125 bytes, refused by the codec, and the
        // link fails the connection with its own 1002.
        (
            close_payload(Some(1000), long.as_bytes()),
            violation(Violation::Frame(FrameViolation::ControlTooLong)),
            (Some(1002), "protocol error".to_owned()),
        ),
    ];
    for (payload, reason, answer) in cases {
        let code = payload.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]]));
        let r = run(
            Config::default(),
            vec![(FAULT_AT, WireFault::RawClose(payload))],
        );
        assert_lost_and_reconnected(&r, FAULT_AT + LATENCY, &reason);
        assert_eq!(
            peer_closes(&r, conn(0)),
            vec![answer],
            "close {code:?}: what the peer read back"
        );
    }
}

#[test]
fn a_close_code_the_policy_calls_fatal_ends_the_session() {
    // The control case for the table above: 1008 on the wire is the peer's own, fatal.
    let r = run(
        Config::default(),
        vec![(FAULT_AT, WireFault::close(1008, "policy"))],
    );
    let d = disconnects(&r);
    assert_eq!(d.len(), 1, "{d:?}");
    assert!(!d[0].3, "no retry after a fatal close");
    assert_eq!(opened(&r), vec![conn(0)]);
    assert_eq!(
        peer_closes(&r, conn(0)),
        vec![(Some(1008), "policy".to_owned())]
    );
}

#[test]
fn a_peer_that_never_answers_our_close_is_aborted_after_close_timeout() {
    let config = Config::default();
    let close_at = Duration::from_secs(10);
    let ended = |r: &WireRun<HelloAck>| {
        r.events
            .iter()
            .find(|(_, e)| matches!(e, Event::Ended(EndReason::ClosedByUser)))
            .map(|(at, _)| *at)
    };
    let answered = run(Config::default(), Vec::new());
    assert_eq!(ended(&answered), Some(close_at));
    assert_eq!(
        peer_closes(&answered, conn(0)),
        vec![(Some(1000), String::new())]
    );

    let r = run(Config::default(), vec![(ms(9_000), WireFault::Mute)]);
    assert_eq!(ended(&r), Some(close_at));
    assert!(disconnects(&r).is_empty());
    // The peer read our close and never answered it; the client let go of the
    // connection (the peer reads its end of stream) after close_timeout, not before.
    let on_first: Vec<_> = r
        .peer_reads
        .iter()
        .filter(|rec| rec.conn == conn(0))
        .map(|rec| (rec.at, rec.read.clone()))
        .skip_while(|(_, read)| !matches!(read, PeerRead::Close(..)))
        .collect();
    assert_eq!(
        on_first,
        vec![
            (
                close_at + LATENCY,
                PeerRead::Close(Some(1000), String::new())
            ),
            (close_at + config.close_timeout + LATENCY, PeerRead::Eof),
        ]
    );
}

#[test]
fn invalid_utf8_in_a_text_frame_is_a_violation_and_the_peer_reads_1007() {
    let frame = server_frame(
        opcode::TEXT,
        true,
        b"{\"type\":\"note\",\"x\":\"\xff\xfe\"}",
    );
    let r = run(Config::default(), vec![(FAULT_AT, WireFault::Raw(frame))]);
    assert_lost_and_reconnected(
        &r,
        FAULT_AT + LATENCY,
        &DisconnectReason::ProtocolError(Violation::InvalidUtf8),
    );
    let closes = peer_closes(&r, conn(0));
    assert_eq!(closes.len(), 1, "{closes:?}");
    assert_eq!(closes[0].0, Some(1007));
    assert!(messages(&r).is_empty());
}

#[test]
fn an_oversized_frame_is_a_violation_and_the_peer_reads_1009() {
    let config = Config::builder().max_inbound_frame(1024).build().unwrap();
    let frame = server_frame(opcode::BINARY, true, &[7; 4096]);
    let r = run(config, vec![(FAULT_AT, WireFault::Raw(frame))]);
    let d = disconnects(&r);
    assert!(
        matches!(
            d.first(),
            Some((at, c, DisconnectReason::ProtocolError(Violation::Oversized { max: 1024, .. }), true))
                if *at == FAULT_AT + LATENCY && *c == conn(0)
        ),
        "{d:?}"
    );
    assert_eq!(opened(&r), vec![conn(0), conn(1)]);
    assert_eq!(
        peer_closes(&r, conn(0)).first().map(|c| c.0),
        Some(Some(1009))
    );
}

#[test]
fn a_frame_stalled_in_the_middle_arrives_when_its_rest_does() {
    let frame = note_frame();
    let (head, tail) = frame.split_at(7);
    let rest_at = FAULT_AT + ms(500);
    let r = run(
        Config::default(),
        vec![
            (FAULT_AT, WireFault::Raw(head.to_vec().into())),
            (rest_at, WireFault::Raw(tail.to_vec().into())),
        ],
    );
    assert_eq!(messages(&r), vec![(rest_at + LATENCY, note())]);
    assert!(disconnects(&r).is_empty());
}

#[test]
fn a_stall_longer_than_the_message_timeout_fails_the_connection_with_1008() {
    let mut config = Config::default();
    config.liveness.message_timeout = Duration::from_secs(2);
    let frame = note_frame();
    let (head, _rest) = frame.split_at(7);
    let r = run(
        config,
        vec![
            // The rest never comes while the connection lasts (a fault after it would
            // land on the next connection).
            (FAULT_AT, WireFault::Raw(head.to_vec().into())),
        ],
    );
    assert_lost_and_reconnected(
        &r,
        FAULT_AT + LATENCY + Duration::from_secs(2),
        &DisconnectReason::ProtocolError(Violation::MessageTimeout),
    );
    assert_eq!(
        peer_closes(&r, conn(0)).first().map(|c| c.0),
        Some(Some(1008))
    );
    assert!(messages(&r).is_empty(), "the half frame is never delivered");
}

#[test]
fn truncation_then_reset_is_a_dropped_connection_and_reconnects() {
    let frame = note_frame();
    let r = run(
        Config::default(),
        vec![
            (FAULT_AT, WireFault::Raw(frame[..7].to_vec().into())),
            (FAULT_AT, WireFault::Reset),
        ],
    );
    assert_lost_and_reconnected(
        &r,
        FAULT_AT + LATENCY,
        &DisconnectReason::Closed {
            code: None,
            reason: String::new(),
        },
    );
    assert!(messages(&r).is_empty());
    assert!(
        peer_closes(&r, conn(0)).is_empty(),
        "nothing answers a reset"
    );
}

fn workload() -> Vec<(Duration, Command<HelloAck>)> {
    let s = Duration::from_secs;
    vec![
        (
            s(1),
            Command::Send(json!({"type": "note", "big": "x".repeat(3000)})),
        ),
        (
            s(2),
            Command::Request {
                request: HelloAckRequest::new("stream.words", json!({})).streaming(),
                timeout: None,
            },
        ),
        (
            s(3),
            Command::Request {
                request: HelloAckRequest::new("echo", json!({"n": 3})),
                timeout: None,
            },
        ),
    ]
}

#[test]
fn writes_accepted_partially_change_nothing_the_session_sees() {
    let whole = run_with(
        Config::default(),
        setup(Vec::new()),
        workload(),
        Duration::from_secs(10),
    );
    let mut partial = setup(Vec::new());
    partial.pipe.max_write = Some(3);
    let cut = run_with(
        Config::default(),
        partial,
        workload(),
        Duration::from_secs(10),
    );
    assert!(whole.events.len() > 8, "{:?}", whole.events);
    assert_eq!(whole.events, cut.events);
    assert_eq!(whole.peer_reads, cut.peer_reads);
}

#[test]
fn a_peer_that_stops_reading_pushes_back_until_the_send_deadline() {
    let mut small = setup(vec![(ms(500), WireFault::Deaf)]);
    small.pipe.capacity = 1024;
    let r = run_with(
        Config::default(),
        small,
        workload(),
        Duration::from_secs(30),
    );
    let d = disconnects(&r);
    let config = Config::default();
    assert!(
        matches!(
            d.first(),
            Some((at, c, DisconnectReason::SendDeadline, true))
                if *c == conn(0) && *at == Duration::from_secs(1) + config.send_deadline
        ),
        "{d:?}"
    );
    assert_eq!(opened(&r), vec![conn(0), conn(1)]);
}

#[test]
fn a_wire_run_is_the_same_every_time_for_a_seed() {
    let faults = || {
        vec![
            (FAULT_AT, WireFault::close(1014, "bad gateway")),
            (ms(3_000), WireFault::Raw(note_frame()[..5].to_vec().into())),
            (ms(3_000), WireFault::Reset),
        ]
    };
    let a = run_with(
        Config::default(),
        setup(faults()),
        workload(),
        Duration::from_secs(20),
    );
    let b = run_with(
        Config::default(),
        setup(faults()),
        workload(),
        Duration::from_secs(20),
    );
    assert!(disconnects(&a).len() >= 2, "{:?}", a.events);
    assert_eq!(a.events, b.events);
    assert_eq!(a.peer_reads, b.peer_reads);
}

/// A link gone half-open under both ends: the client's writes are accepted and go
/// nowhere, nothing more arrives, and nobody is told. Only the client's liveness can find
/// it: the connection is declared stale `stale_after` after the last frame the client
/// read, the session reconnects, and the peer reads nothing of the old connection after
/// the fault — not the messages, not the pings, not the close.
#[test]
fn a_half_open_link_is_found_by_liveness_and_the_peer_reads_nothing_more() {
    let config = Config::default();
    let at = ms(500);
    // A small pipe and a steady workload: a peer that merely stops reading would push
    // back and fail the send deadline (see above); into a half-open link every write
    // completes.
    let mut small = setup(vec![(at, WireFault::HalfOpen)]);
    small.pipe.capacity = 1024;
    let r = run_with(config.clone(), small, workload(), Duration::from_secs(120));
    let d = disconnects(&r);
    let Some((lost, c, DisconnectReason::Stale, true)) = d.first().cloned() else {
        panic!("the first connection is declared stale and retried: {d:?}");
    };
    assert_eq!(c, conn(0));
    // Within the threshold of the fault (the last frame read came before it), not before.
    assert!(
        lost > at && lost <= at + config.liveness.stale_after,
        "{lost:?}"
    );
    assert_eq!(opened(&r)[..2], [conn(0), conn(1)]);
    let after: Vec<_> = r
        .peer_reads
        .iter()
        .filter(|rec| rec.conn == conn(0) && rec.at > at)
        .collect();
    assert!(
        after.is_empty(),
        "the peer read after the link went half-open: {after:?}"
    );
}

/// Fragments out of order, as the codec sees them: a continuation with no message to
/// continue, and a new message inside an unfinished one. Each is the peer breaking the
/// protocol: the link fails the connection with 1002, the session reports the violation
/// and reconnects, and nothing of the broken message reaches the application.
#[test]
fn fragments_out_of_order_are_a_violation_and_the_peer_reads_1002() {
    let continuation = server_frame(opcode::CONTINUATION, true, b"{}");
    let mut interleaved = server_frame(opcode::TEXT, false, b"{\"type\":").to_vec();
    interleaved.extend_from_slice(&note_frame());
    let cases = [
        (continuation, FrameViolation::UnexpectedContinuation),
        (interleaved.into(), FrameViolation::ExpectedContinuation),
    ];
    for (bytes, violation) in cases {
        let r = run(Config::default(), vec![(FAULT_AT, WireFault::Raw(bytes))]);
        assert_lost_and_reconnected(
            &r,
            FAULT_AT + LATENCY,
            &DisconnectReason::ProtocolError(Violation::Frame(violation)),
        );
        let closes = peer_closes(&r, conn(0));
        assert_eq!(closes.iter().map(|c| c.0).collect::<Vec<_>>(), [Some(1002)]);
        assert!(messages(&r).is_empty(), "{:?}", messages(&r));
    }
}
