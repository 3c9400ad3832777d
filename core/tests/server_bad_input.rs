//! Server role, bad input: oversized frames, invalid UTF-8, invalid close codes, time
//! running backwards, inputs that make no sense for an accepted connection — each has a
//! defined outcome, and no sequence of inputs and commands panics or breaks the
//! connection's invariants.
//!
//! Oversized frames, invalid UTF-8 and invalid close codes are fed here as values: the
//! machine's own defence, for a transport without a codec. Over a real socket the link
//! fails such a connection first, with 1009 / 1007 / 1002, and the machine sees
//! `Input::ProtocolError` (`core/tests/protocol_error.rs`; on the wire,
//! `tests/tests/hostile_peers.rs`).

mod server_common;

use bytes::Bytes;
use proptest::prelude::*;
use server_common::*;
use tether_core::server::{EndCause, ServerEvent, ServerOutput};
use tether_core::{
    CloseCode, DataFrame, DisconnectReason, InFrame, Input, OutFrame, Utf8Bytes, Violation,
};

fn violation(out: &[ServerOutput]) -> Option<Violation> {
    out.iter().find_map(|o| match o {
        ServerOutput::Event(ServerEvent::Violation(v)) => Some(v.clone()),
        _ => None,
    })
}

#[test]
fn oversized_and_non_utf8_frames_are_violations_and_the_connection_goes_on() {
    let mut h = Harness::new(short());
    let big = InFrame::Text(Bytes::from(vec![b'a'; 65]));
    assert_eq!(
        violation(&h.frame(big, ms(1))),
        Some(Violation::Oversized { len: 65, max: 64 })
    );
    let bad = InFrame::Text(Bytes::from_static(b"\xff\xfe"));
    assert_eq!(
        violation(&h.frame(bad, ms(2))),
        Some(Violation::InvalidUtf8)
    );
    let ok = h.frame(InFrame::Binary(Bytes::from_static(b"\x00")), ms(3));
    assert_eq!(
        ok,
        vec![ServerOutput::Event(ServerEvent::Message(
            DataFrame::Binary(Bytes::from_static(b"\x00"))
        ))]
    );
    assert!(h.c.is_open());
    assert_eq!(h.c.stats().violations, 2);
    assert_eq!(h.c.stats().messages, 1);
}

#[test]
fn an_invalid_close_code_from_the_peer_is_a_violation_and_reads_as_a_drop() {
    let mut h = Harness::new(short());
    let out = h.input(
        Input::TransportClosed {
            conn: conn(),
            code: Some(CloseCode(1006)),
            reason: String::new(),
        },
        ms(1),
    );
    assert_eq!(violation(&out), Some(Violation::InvalidCloseCode(1006)));
    assert_eq!(
        ended(&out),
        EndCause::Lost(DisconnectReason::Closed {
            code: None,
            reason: String::new()
        })
    );
}

#[test]
fn time_never_runs_backwards_and_meaningless_inputs_are_ignored() {
    let mut h = Harness::new(short());
    h.timeout(ms(900));
    // An input stamped earlier than a time already seen is applied at that time.
    h.pong(ms(100));
    assert_eq!(h.deadline(), Some(secs(1)), "the ping is still due at 1 s");
    assert_eq!(h.c.stats().stale_inputs, 0);
    let out = h.input(Input::TransportOpened { conn: conn() }, ms(950));
    assert!(out.is_empty());
    assert_eq!(h.c.stats().stale_inputs, 1);
    // `TransportFailed` on an open connection is a dropped socket.
    let out = h.input(
        Input::TransportFailed {
            conn: conn(),
            failure: tether_core::TransportFailure::Io("reset".into()),
        },
        ms(960),
    );
    assert_eq!(
        ended(&out),
        EndCause::Lost(DisconnectReason::Closed {
            code: None,
            reason: String::new()
        })
    );
}

// ---- no sequence panics or breaks the invariants ---------------------------------------

#[derive(Clone, Debug)]
enum Step {
    Advance(u64),
    ToDeadline,
    Send,
    Close(u16),
    Terminate,
    Frame(u8, usize),
    ReportOldest(bool),
    ReportAny(u64),
    PeerClosed(Option<u16>),
    Foreign,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0u64..5_000).prop_map(Step::Advance),
        Just(Step::ToDeadline),
        Just(Step::Send),
        prop_oneof![Just(1000u16), Just(1006), Just(4000), Just(0)].prop_map(Step::Close),
        Just(Step::Terminate),
        (0u8..4, 0usize..100).prop_map(|(k, n)| Step::Frame(k, n)),
        any::<bool>().prop_map(Step::ReportOldest),
        (0u64..40).prop_map(Step::ReportAny),
        proptest::option::of(prop_oneof![
            Just(1000u16),
            Just(1005),
            Just(1006),
            Just(4001)
        ])
        .prop_map(Step::PeerClosed),
        Just(Step::Foreign),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn no_sequence_panics_or_breaks_the_invariants(steps in proptest::collection::vec(step(), 1..120)) {
        let cfg = short();
        let bound = cfg.max_pending_writes;
        let mut h = Harness::new(cfg);
        let mut now = ms(0);
        let mut pending: Vec<tether_core::FrameId> = Vec::new();
        let mut ends = 0;
        for s in steps {
            let before_end = ends;
            let out = match s {
                Step::Advance(d) => { now += ms(d); h.timeout(now) }
                Step::ToDeadline => match h.deadline() {
                    Some(d) => { now = now.max(d); h.timeout(now) }
                    None => Vec::new(),
                },
                Step::Send => {
                    let _ = h.c.send(DataFrame::Text(Utf8Bytes::from_static("p")), h.at(now));
                    h.drain()
                }
                Step::Close(code) => {
                    let _ = h.c.close(CloseCode(code), "r", h.at(now));
                    h.drain()
                }
                Step::Terminate => { h.c.terminate(h.at(now)); h.drain() }
                Step::Frame(k, n) => {
                    let body = Bytes::from(vec![b'z'; n]);
                    let f = match k { 0 => InFrame::Text(body), 1 => InFrame::Binary(body), 2 => InFrame::Ping(body), _ => InFrame::Pong(body) };
                    h.frame(f, now)
                }
                Step::ReportOldest(ok) => match (!pending.is_empty()).then(|| pending.remove(0)) {
                    Some(frame) => {
                        let input = if ok { Input::WriteCompleted { conn: conn(), frame } } else { Input::WriteFailed { conn: conn(), frame } };
                        h.input(input, now)
                    }
                    None => Vec::new(),
                },
                Step::ReportAny(n) => h.written(tether_core::FrameId::from_raw(n), now),
                Step::PeerClosed(code) => h.input(Input::TransportClosed { conn: conn(), code: code.map(CloseCode), reason: String::new() }, now),
                Step::Foreign => h.input(Input::WriteFailed { conn: tether_core::ConnId::from_raw(1), frame: tether_core::FrameId::from_raw(0) }, now),
            };
            for o in &out {
                prop_assert_eq!(before_end, 0, "output after the end: {:?}", o);
                match o {
                    ServerOutput::SendFrame { frame, payload, .. } => {
                        pending.push(*frame);
                        prop_assert!(!matches!(payload, OutFrame::Ping(p) if !p.is_empty()));
                    }
                    ServerOutput::Event(ServerEvent::Ended(_)) => ends += 1,
                    _ => {}
                }
            }
            if h.c.pending_writes() == 0 {
                pending.clear();
            }
            prop_assert!(ends <= 1, "ended twice");
            // User frames are bounded; pings add at most one per interval in a deadline.
            prop_assert!(h.c.pending_writes() <= bound + 3, "{} pending", h.c.pending_writes());
            if h.c.is_closed() {
                prop_assert_eq!(ends, 1);
                prop_assert_eq!(h.c.poll_timeout(), None);
                prop_assert_eq!(h.c.pending_writes(), 0);
            } else {
                prop_assert!(h.c.poll_timeout().is_some(), "an open connection always has a deadline");
            }
        }
    }
}

// ---- boundary values: every config field, any time ------------------------------------

use std::time::{Duration, Instant};
use tether_core::MAX_DURATION;
use tether_core::server::{ServerConfig, ServerConn};

fn boundary_duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::from_nanos(1)),
        (1u64..10_000).prop_map(Duration::from_millis),
        Just(MAX_DURATION),
        Just(MAX_DURATION + Duration::from_nanos(1)),
        Just(Duration::from_secs(u64::MAX)),
        Just(Duration::MAX),
        any::<u64>().prop_map(Duration::from_nanos),
    ]
}

fn boundary_usize() -> impl Strategy<Value = usize> {
    prop_oneof![Just(0), Just(1), 2usize..64, Just(usize::MAX)]
}

/// `now + d`, or as far towards it as the clock can represent.
fn later(now: Instant, d: Duration) -> Instant {
    let mut d = d;
    loop {
        if let Some(t) = now.checked_add(d) {
            return t;
        }
        d /= 2;
    }
}

#[derive(Clone, Debug)]
enum BStep {
    Advance(Duration),
    ToDeadline,
    Send,
    Close,
    Terminate,
    Frame(usize),
    WriteAll,
    PeerClosed(Option<u16>),
}

fn bstep() -> impl Strategy<Value = BStep> {
    prop_oneof![
        3 => boundary_duration().prop_map(BStep::Advance),
        2 => Just(BStep::ToDeadline),
        2 => Just(BStep::Send),
        1 => Just(BStep::Close),
        1 => Just(BStep::Terminate),
        2 => (0usize..100).prop_map(BStep::Frame),
        2 => Just(BStep::WriteAll),
        1 => proptest::option::of(any::<u16>()).prop_map(BStep::PeerClosed),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Every `ServerConfig` field drawn from boundary values (validation may refuse; then
    /// no panic either) and time steps up to `Duration::MAX`: no call panics, the
    /// connection ends at most once, and a closed connection holds no deadline.
    #[test]
    fn boundary_configs_and_time_never_panic(
        durations in proptest::collection::vec(proptest::option::weighted(0.15, boundary_duration()), 7),
        counts in proptest::collection::vec(proptest::option::weighted(0.15, boundary_usize()), 2),
        pings in any::<bool>(),
        steps in proptest::collection::vec(bstep(), 1..60),
    ) {
        let mut cfg = ServerConfig::default();
        let d = |i: usize, default: Duration| durations[i].unwrap_or(default);
        cfg.send_deadline = d(0, cfg.send_deadline);
        cfg.slow_write_warning = d(1, cfg.slow_write_warning);
        cfg.close_timeout = d(2, cfg.close_timeout);
        cfg.liveness.ping_interval = pings.then(|| d(3, Duration::from_secs(30)));
        cfg.liveness.stale_after = d(4, cfg.liveness.stale_after);
        cfg.liveness.probe_timeout = d(5, cfg.liveness.probe_timeout);
        cfg.liveness.clock_jump_threshold = d(6, cfg.liveness.clock_jump_threshold);
        cfg.max_pending_writes = counts[0].unwrap_or(cfg.max_pending_writes);
        cfg.max_inbound_frame = counts[1].unwrap_or(cfg.max_inbound_frame);
        #[allow(clippy::disallowed_methods)] // One arbitrary epoch; only offsets matter.
        let mut now = Instant::now();
        let valid = cfg.validate().is_ok();
        let Ok(mut c) = ServerConn::new(cfg, conn(), now) else {
            prop_assert!(!valid);
            return Ok(());
        };
        let mut unwritten = Vec::new();
        let mut ends = 0;
        for s in steps {
            match s {
                BStep::Advance(d) => { now = later(now, d); c.handle_timeout(now); }
                BStep::ToDeadline => if let Some(at) = c.poll_timeout() { now = now.max(at); c.handle_timeout(now); },
                BStep::Send => { let _ = c.send(DataFrame::Text(Utf8Bytes::from_static("p")), now); }
                BStep::Close => { let _ = c.close(CloseCode::NORMAL, "", now); }
                BStep::Terminate => c.terminate(now),
                BStep::Frame(n) => c.handle_input(Input::FrameReceived { conn: conn(), frame: InFrame::Text(Bytes::from(vec![b'z'; n])) }, now),
                BStep::WriteAll => for frame in unwritten.drain(..) { c.handle_input(Input::WriteCompleted { conn: conn(), frame }, now); },
                BStep::PeerClosed(code) => c.handle_input(Input::TransportClosed { conn: conn(), code: code.map(CloseCode), reason: String::new() }, now),
            }
            while let Some(o) = c.poll_output() {
                match o {
                    ServerOutput::SendFrame { frame, .. } => unwritten.push(frame),
                    ServerOutput::Event(ServerEvent::Ended(_)) => ends += 1,
                    _ => {}
                }
            }
            prop_assert!(ends <= 1, "ended twice");
            if c.is_closed() {
                prop_assert_eq!(c.poll_timeout(), None);
            }
            if let Some(at) = c.poll_timeout() {
                prop_assert!(at >= now, "a deadline left in the past");
            }
        }
    }
}
