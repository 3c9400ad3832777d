//! Server role, send deadline: every frame handed to the adapter must be reported written
//! within the deadline, however many partial writes the adapter needs; a miss aborts the
//! connection, slow writes are reported, and pending writes are bounded.

mod server_common;

use server_common::*;
use tether_core::server::{EndCause, ServerEvent, ServerOutput};
use tether_core::{DataFrame, DisconnectReason, Input, SendError, TimerKind, Utf8Bytes};

fn missed() -> EndCause {
    EndCause::Lost(DisconnectReason::SendDeadline)
}

#[test]
fn a_write_never_reported_aborts_at_exactly_the_deadline() {
    let mut cfg = short();
    cfg.liveness.ping_interval = None;
    cfg.liveness.stale_after = secs(60);
    let mut h = Harness::new(cfg);
    h.send("stuck", ms(100));
    assert_eq!(h.deadline(), Some(ms(2100)));
    assert_eq!(h.c.timeout_reason(), Some(TimerKind::SendDeadline));
    assert!(h.timeout(ms(2099)).is_empty());
    let out = h.timeout(ms(2100));
    assert!(aborted(&out), "{out:?}");
    assert_eq!(ended(&out), missed());
    assert_eq!(h.c.pending_writes(), 0);
    assert_eq!(h.c.poll_timeout(), None);
}

#[test]
fn the_deadline_spans_the_whole_write_and_each_frame_has_its_own() {
    let mut cfg = short();
    cfg.liveness.ping_interval = None;
    cfg.liveness.stale_after = secs(60);
    let mut h = Harness::new(cfg);
    // A frame whose bytes trickle out in many partial writes is reported once, when the
    // last byte is on the wire: 1.9 s is within the 2 s deadline.
    let a = h.send("a", ms(0));
    let b = h.send("b", ms(1000));
    let out = h.written(a, ms(1900));
    assert!(
        out.iter()
            .any(|o| matches!(o, ServerOutput::Event(ServerEvent::SlowWrite { .. }))),
        "1.9 s is slow: {out:?}"
    );
    // The oldest pending frame is now `b`, written at 1 s: its deadline is 3 s, not 2 s.
    assert_eq!(h.deadline(), Some(secs(3)));
    assert!(h.timeout(ms(2999)).is_empty());
    let out = h.timeout(secs(3));
    assert_eq!(ended(&out), missed());
    let _ = b;
}

#[test]
fn slow_writes_are_reported_with_their_duration() {
    let mut cfg = short();
    cfg.liveness.ping_interval = None;
    let mut h = Harness::new(cfg);
    let quick = h.send("quick", ms(0));
    assert!(h.written(quick, ms(400)).is_empty());
    let slow = h.send("slow", ms(400));
    let out = h.written(slow, ms(1100));
    assert_eq!(
        out,
        vec![ServerOutput::Event(ServerEvent::SlowWrite {
            frame: slow,
            elapsed: ms(700)
        })]
    );
    assert_eq!(h.c.stats().slow_writes, 1);
    // A second report of the same frame is stale.
    assert!(h.written(slow, ms(1200)).is_empty());
    assert_eq!(h.c.stats().stale_inputs, 1);
}

#[test]
fn pending_writes_are_bounded() {
    let mut h = Harness::new(short());
    let first = h.send("0", ms(0));
    for _ in 1..8 {
        h.send("n", ms(1));
    }
    let text = || DataFrame::Text(Utf8Bytes::from_static("one too many"));
    assert_eq!(h.c.send(text(), h.at(ms(2))), Err(SendError::Backpressure));
    assert!(h.drain().is_empty(), "nothing written when refused");
    h.written(first, ms(3));
    assert!(h.c.send(text(), h.at(ms(4))).is_ok());
}

#[test]
fn a_failed_write_aborts() {
    let mut h = Harness::new(short());
    let f = h.send("x", ms(0));
    let out = h.input(
        Input::WriteFailed {
            conn: conn(),
            frame: f,
        },
        ms(5),
    );
    assert!(aborted(&out));
    assert_eq!(ended(&out), EndCause::Lost(DisconnectReason::WriteFailed));
}

#[test]
fn writes_pending_across_a_sleep_get_a_fresh_deadline() {
    let mut cfg = short();
    cfg.liveness.ping_interval = None;
    cfg.liveness.stale_after = secs(60);
    let mut h = Harness::new(cfg);
    h.send("before the sleep", ms(0));
    let woke = secs(3600);
    let out = h.timeout(woke);
    assert!(
        !aborted(&out),
        "the adapter could not report during the sleep: {out:?}"
    );
    // The probe ping goes out and the peer answers it; the frame from before the sleep
    // is judged from the wake-up.
    for p in pings(&out) {
        h.written(p, woke + ms(1));
    }
    h.pong(woke + ms(2));
    assert_eq!(h.deadline(), Some(woke + secs(2)));
    assert_eq!(h.c.timeout_reason(), Some(TimerKind::SendDeadline));
    assert_eq!(ended(&h.timeout(woke + secs(2))), missed());
}

#[test]
fn a_frame_after_a_missed_send_deadline_finds_the_connection_gone() {
    // No pings, a minute's stale threshold: the write below arms the earliest deadline.
    let mut cfg = short();
    cfg.liveness.ping_interval = None;
    cfg.liveness.stale_after = secs(60);
    let mut h = Harness::new(cfg);
    h.frame(
        tether_core::InFrame::Text(bytes::Bytes::from_static(b"hi")),
        ms(100),
    );
    h.send("stuck", ms(200));
    // Never reported written; a frame 100 ms past its deadline.
    let out = h.frame(
        tether_core::InFrame::Text(bytes::Bytes::from_static(b"late")),
        ms(2300),
    );
    assert!(aborted(&out), "{out:?}");
    assert_eq!(ended(&out), missed());
    assert!(
        !out.iter()
            .any(|o| matches!(o, ServerOutput::Event(ServerEvent::Message(_)))),
        "{out:?}"
    );
}
