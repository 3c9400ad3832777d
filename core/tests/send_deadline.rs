//! Behaviour 6: send deadlines — a write not reported complete in time means the peer is
//! dead; slow writes are reported; a failed write loses the connection.

mod common;
use common::*;
use tether_core::{Config, DisconnectReason, Event, Input, Output, RequestFailure, Status};

#[test]
fn a_stuck_write_aborts_fails_in_flight_requests_and_reconnects() {
    let mut h = H::default_config();
    h.open();
    let id = h.s.request(Req("slow", None), None, h.now).unwrap();
    let out = h.drain();
    assert_eq!(sent_texts(&out).len(), 1);
    // The adapter never reports the write: the peer stopped reading.
    let out = h.advance(secs(9.999));
    assert!(!has_abort(&out));
    let out = h.advance(secs(0.001));
    assert!(has_abort(&out));
    let ev = events(&out);
    assert!(ev.iter().any(|e| matches!(
        e,
        Event::Disconnected {
            reason: DisconnectReason::SendDeadline,
            ..
        }
    )));
    assert!(ev.contains(&Event::Response {
        id,
        result: Err(RequestFailure::Disconnected)
    }));
    assert_eq!(h.s.status(), Status::Reconnecting);
    assert_eq!(h.s.pending_writes(), 0);
}

#[test]
fn completed_writes_never_trip_the_deadline() {
    let mut h = H::default_config();
    h.open();
    for _ in 0..30 {
        h.s.send("x".into(), h.now).unwrap();
        let out = h.drain();
        h.advance(secs(1.0));
        h.complete_writes(&out);
        h.frame("keepalive");
    }
    assert_eq!(h.s.status(), Status::Open);
}

#[test]
fn slow_writes_are_reported() {
    let mut h = H::default_config();
    h.open();
    h.s.send("x".into(), h.now).unwrap();
    let out = h.drain();
    h.advance(secs(3.0));
    h.complete_writes(&out);
    assert!(h.events().iter().any(|e| matches!(
        e,
        Event::SlowWrite { elapsed, .. } if *elapsed == secs(3.0)
    )));
    assert_eq!(h.s.stats().slow_writes, 1);
}

/// The warning is for a write slower than `slow_write_warning` (2 s): one that takes
/// exactly that long is not reported.
#[test]
fn a_write_exactly_at_the_warning_is_not_slow() {
    let mut h = H::default_config();
    h.open();
    h.s.send("x".into(), h.now).unwrap();
    let out = h.drain();
    h.advance(secs(2.0));
    h.complete_writes(&out);
    assert!(
        !h.events()
            .iter()
            .any(|e| matches!(e, Event::SlowWrite { .. })),
        "a write of exactly 2 s is not slow"
    );
    assert_eq!(h.s.stats().slow_writes, 0);
}

#[test]
fn a_failed_write_loses_the_connection() {
    let mut h = H::default_config();
    h.open();
    h.s.send("x".into(), h.now).unwrap();
    let out = h.drain();
    let Some(Output::SendFrame { conn, frame, .. }) = out.first().cloned() else {
        panic!("{out:?}")
    };
    let out = h.input(Input::WriteFailed { conn, frame });
    assert!(has_abort(&out));
    assert_eq!(h.s.status(), Status::Reconnecting);
}

#[test]
fn pending_writes_are_bounded() {
    let cfg = Config::builder().max_pending_writes(3).build().unwrap();
    let mut h = H::new(cfg);
    h.open();
    for _ in 0..3 {
        h.s.send("x".into(), h.now).unwrap();
    }
    assert_eq!(
        h.s.send("x".into(), h.now),
        Err(tether_core::SendError::Backpressure)
    );
    let out = h.drain();
    h.complete_writes(&out);
    assert!(h.s.send("x".into(), h.now).is_ok());
}

#[test]
fn a_frame_after_a_missed_send_deadline_finds_the_connection_gone() {
    // No pings: once the connection is stable, the stale threshold (75 s) is the only
    // deadline, and the write below arms one before it.
    let cfg = Config::builder().ping_interval(None).build().unwrap();
    let mut h = H::new(cfg);
    h.open();
    h.run_for(secs(60.0));
    h.s.send("stuck".to_owned(), h.now).unwrap();
    assert_eq!(sent_texts(&h.drain()).len(), 1);
    // The write is never reported; a frame comes at its deadline, which is due then.
    h.now += secs(10.0);
    let out = h.frame("after");
    assert!(
        has_abort(&out),
        "the send deadline passed before this frame"
    );
    let ev = events(&out);
    assert!(ev.iter().any(|e| matches!(
        e,
        Event::Disconnected {
            reason: DisconnectReason::SendDeadline,
            ..
        }
    )));
    assert!(
        !ev.iter().any(|e| matches!(e, Event::Message(_))),
        "the frame of a connection already given up is not delivered"
    );
}
