//! Server role, the first-message timeout: a peer that upgrades and sends no data message
//! within `first_message_timeout` is closed with 1008; pings and pongs do not count, a
//! data message disarms it, and a clock jump gives the message the probe's time.

mod server_common;

use server_common::*;
use tether_core::server::{EndCause, ServerConfig, ServerOutput};
use tether_core::{Bytes, CloseCode, InFrame, Input, TimerKind};

fn config(timeout: u64) -> ServerConfig {
    ServerConfig {
        first_message_timeout: Some(ms(timeout)),
        ..short()
    }
}

fn close_1008(out: &[ServerOutput]) -> bool {
    out.iter().any(|o| {
        matches!(o, ServerOutput::CloseTransport { code, reason, .. }
            if *code == CloseCode::POLICY && reason == "no message in time")
    })
}

#[test]
fn a_peer_that_only_pongs_is_closed_with_1008_at_the_timeout() {
    let mut h = Harness::new(config(2500));
    assert_eq!(h.deadline(), Some(secs(1)), "the ping comes first");
    h.timeout(secs(1));
    h.pong(ms(1100));
    h.timeout(secs(2));
    h.frame(InFrame::Ping(Bytes::new()), ms(2100));
    assert_eq!(h.deadline(), Some(ms(2500)));
    assert_eq!(h.c.timeout_reason(), Some(TimerKind::FirstMessage));
    assert!(!close_1008(&h.timeout(ms(2499))));
    let out = h.timeout(ms(2500));
    assert!(close_1008(&out), "{out:?}");
    assert!(!aborted(&out));
    assert_eq!(h.c.stats().first_message_timeouts, 1);
    // The peer answers the close: a confirmed close, with its own cause.
    let out = h.input(
        Input::TransportClosed {
            conn: conn(),
            code: Some(CloseCode::POLICY),
            reason: String::new(),
        },
        ms(2600),
    );
    assert_eq!(ended(&out), EndCause::NoFirstMessage { confirmed: true });
    assert_eq!(h.c.poll_timeout(), None);
}

#[test]
fn an_unanswered_timeout_close_aborts_at_the_close_timeout() {
    let mut config = config(500);
    config.liveness.ping_interval = None;
    let mut h = Harness::new(config);
    assert!(close_1008(&h.timeout(ms(500))));
    assert_eq!(h.deadline(), Some(ms(4500)));
    let out = h.timeout(ms(4500));
    assert!(aborted(&out));
    assert_eq!(ended(&out), EndCause::NoFirstMessage { confirmed: false });
}

#[test]
fn a_data_message_disarms_the_timeout() {
    for frame in [
        InFrame::Text(Bytes::from_static(b"auth")),
        InFrame::Binary(Bytes::from_static(b"\x01")),
    ] {
        let mut config = config(500);
        config.liveness.ping_interval = None;
        let mut h = Harness::new(config);
        h.frame(frame, ms(499));
        assert_ne!(h.c.timeout_reason(), Some(TimerKind::FirstMessage));
        let out = h.timeout(ms(2000));
        assert!(!close_1008(&out), "{out:?}");
        assert!(h.c.is_open());
        assert_eq!(h.c.stats().first_message_timeouts, 0);
    }
}

#[test]
fn without_a_timeout_a_silent_peer_is_judged_by_liveness_only() {
    let mut h = Harness::new(short());
    for s in 1..=2 {
        h.timeout(secs(s));
        h.pong(secs(s) + ms(10));
    }
    assert!(h.c.is_open());
    assert_ne!(h.c.timeout_reason(), Some(TimerKind::FirstMessage));
}

#[test]
fn after_a_clock_jump_the_first_message_gets_the_probe_time() {
    let mut config = config(500);
    config.liveness.ping_interval = None;
    config.liveness.stale_after = secs(30);
    let mut h = Harness::new(config);
    // The host slept 10 s (past the 5 s jump threshold): the message may be waiting to be
    // read, so the deadline moves to the probe's (1 s later), not the past.
    let out = h.timeout(secs(10));
    assert!(!close_1008(&out), "{out:?}");
    assert_eq!(h.deadline(), Some(secs(11)));
    h.frame(InFrame::Text(Bytes::from_static(b"auth")), secs(10) + ms(5));
    assert!(h.c.is_open());
}

#[test]
fn the_application_closing_first_keeps_its_own_cause() {
    let mut h = Harness::new(config(500));
    h.c.close(CloseCode::NORMAL, "bye", h.at(ms(100))).unwrap();
    h.drain();
    let out = h.timeout(ms(600));
    assert!(!close_1008(&out));
    let out = h.input(
        Input::TransportClosed {
            conn: conn(),
            code: Some(CloseCode::NORMAL),
            reason: String::new(),
        },
        ms(700),
    );
    assert!(matches!(
        ended(&out),
        EndCause::Closed {
            confirmed: true,
            ..
        }
    ));
}
