//! Server role, liveness: pings on the interval, any inbound frame counts as life, a
//! silent peer is aborted at exactly the stale threshold, and a clock jump probes the
//! peer instead of condemning it.

mod server_common;

use bytes::Bytes;
use server_common::*;
use tether_core::server::{EndCause, ServerOutput};
use tether_core::{DisconnectReason, InFrame, TimerKind, Utf8Bytes};

fn stale() -> EndCause {
    EndCause::Lost(DisconnectReason::Stale)
}

/// Reports every ping among `out` written at `d`.
fn ack_pings(h: &mut Harness, out: &[ServerOutput], d: std::time::Duration) {
    for p in pings(out) {
        assert!(h.written(p, d).is_empty());
    }
}

#[test]
fn pings_on_the_interval_and_aborts_a_silent_peer_at_the_stale_threshold() {
    let mut h = Harness::new(short());
    assert_eq!(h.deadline(), Some(secs(1)));
    assert_eq!(h.c.timeout_reason(), Some(TimerKind::Ping));
    let out = h.timeout(secs(1));
    assert_eq!(pings(&out).len(), 1, "{out:?}");
    ack_pings(&mut h, &out, secs(1) + ms(1));
    let out = h.timeout(secs(2));
    assert_eq!(pings(&out).len(), 1, "{out:?}");
    ack_pings(&mut h, &out, secs(2) + ms(1));
    assert_eq!(h.deadline(), Some(secs(3)));
    assert_eq!(h.c.timeout_reason(), Some(TimerKind::Liveness));
    assert!(h.timeout(secs(3) - ms(1)).is_empty(), "not a moment early");
    let out = h.timeout(secs(3));
    assert!(aborted(&out), "{out:?}");
    assert_eq!(ended(&out), stale());
    assert!(h.c.is_closed());
    assert_eq!(h.c.poll_timeout(), None);
    assert_eq!(h.c.stats().pings_sent, 2);
}

#[test]
fn pongs_pings_and_data_frames_all_count_as_life() {
    for frame in [
        InFrame::Pong(Bytes::new()),
        InFrame::Ping(Bytes::new()),
        InFrame::Text(Bytes::from_static(b"hello")),
        InFrame::Binary(Bytes::from_static(b"\x01")),
    ] {
        let mut h = Harness::new(short());
        for s in 1..=2 {
            let out = h.timeout(secs(s));
            ack_pings(&mut h, &out, secs(s));
        }
        h.frame(frame.clone(), secs(2) + ms(500));
        for s in 3..=5 {
            let out = h.timeout(secs(s));
            assert!(!aborted(&out), "{frame:?} kept it alive: {out:?}");
            ack_pings(&mut h, &out, secs(s));
        }
        assert!(h.timeout(secs(5) + ms(499)).is_empty());
        let out = h.timeout(secs(5) + ms(500));
        assert_eq!(ended(&out), stale(), "3 s after the {frame:?}");
    }
}

#[test]
fn without_pings_the_stale_threshold_stands_alone() {
    let mut cfg = short();
    cfg.liveness.ping_interval = None;
    let mut h = Harness::new(cfg);
    assert_eq!(h.deadline(), Some(secs(3)));
    h.frame(InFrame::Text(Bytes::from_static(b"x")), secs(2));
    let out = h.timeout(secs(5));
    assert_eq!(pings(&out).len(), 0);
    assert_eq!(ended(&out), stale());
}

#[test]
fn a_clock_jump_probes_the_peer_instead_of_condemning_it() {
    let mut h = Harness::new(short());
    let woke = secs(3600);
    let out = h.timeout(woke);
    assert!(
        !aborted(&out),
        "stale evidence from before the sleep: {out:?}"
    );
    assert!(
        out.iter().any(|o| matches!(
            o,
            ServerOutput::Event(tether_core::server::ServerEvent::ClockJump { .. })
        )),
        "{out:?}"
    );
    let probe = pings(&out);
    assert_eq!(probe.len(), 1, "a probe ping: {out:?}");
    ack_pings(&mut h, &out, woke + ms(1));
    // The probe gives the peer `probe_timeout` (1 s) to show life; it answers.
    h.pong(woke + ms(300));
    assert!(!aborted(&h.timeout(woke + secs(1))));
    assert_eq!(h.c.stats().clock_jumps, 1);

    // A peer that does not answer the probe is dead one probe timeout after the wake.
    let mut h = Harness::new(short());
    let out = h.timeout(woke);
    ack_pings(&mut h, &out, woke);
    assert!(h.timeout(woke + ms(999)).is_empty());
    let out = h.timeout(woke + secs(1));
    assert_eq!(ended(&out), stale());
}

#[test]
fn frames_of_another_connection_are_no_evidence_of_life() {
    let mut h = Harness::new(short());
    let other = tether_core::ConnId::from_raw(99);
    for s in 1..=2 {
        let out = h.timeout(secs(s));
        ack_pings(&mut h, &out, secs(s));
        let text = InFrame::Text(Bytes::from_static(b"imposter"));
        let out = h.input(
            tether_core::Input::FrameReceived {
                conn: other,
                frame: text,
            },
            secs(s) + ms(500),
        );
        assert!(out.is_empty());
    }
    assert_eq!(ended(&h.timeout(secs(3))), stale());
    assert_eq!(h.c.stats().stale_inputs, 2);
    // And a data frame of its own delivers a message.
    let mut h = Harness::new(short());
    let out = h.frame(InFrame::Text(Bytes::from_static(b"mine")), ms(10));
    assert_eq!(
        out,
        vec![ServerOutput::Event(
            tether_core::server::ServerEvent::Message(tether_core::DataFrame::Text(
                Utf8Bytes::from_static("mine")
            ))
        )]
    );
}

/// A `now` earlier than one already seen is treated as that one: a frame reported with a
/// stale timestamp cannot move the peer's last sign of life back and make it look dead.
#[test]
fn time_that_goes_backwards_is_clamped_to_the_latest_seen() {
    let mut config = short();
    config.liveness.ping_interval = None;
    let mut h = Harness::new(config);
    h.pong(ms(2500));
    // Reported at 1 s, after 2.5 s was seen: counted at 2.5 s.
    h.pong(ms(1000));
    assert_eq!(
        h.deadline(),
        Some(ms(5500)),
        "stale 3 s after the latest sign of life"
    );
    let out = h.timeout(ms(4500));
    assert!(!aborted(&out), "alive: the last frame was at 2.5 s");
    assert!(h.c.is_open());
}

/// A deadline passed by less than the clock-jump threshold (5 s here) is just late: it
/// fires as usual, no probe. Past the threshold it is a jump (`a_clock_jump_probes…`).
#[test]
fn a_timer_late_by_less_than_the_threshold_is_no_clock_jump() {
    let mut config = short();
    config.liveness.ping_interval = None;
    let mut h = Harness::new(config);
    // Stale at 3 s, handled at 7.9 s: 4.9 s late, under the 5 s threshold.
    let out = h.timeout(ms(7900));
    assert!(
        aborted(&out),
        "the silent peer is dead, not probed: {out:?}"
    );
    assert_eq!(h.c.stats().clock_jumps, 0);
}

#[test]
fn a_frame_that_ends_a_long_probe_brings_the_stale_deadline_forward() {
    // A probe (10 s) longer than the stale threshold (3 s): the pong that ends it puts
    // the stale deadline 3 s after the pong, 6.5 s before the probe's own.
    let mut cfg = short();
    cfg.liveness.ping_interval = None;
    cfg.liveness.probe_timeout = secs(10);
    // The probe ping's own send deadline comes after the stale one.
    cfg.send_deadline = secs(20);
    let mut h = Harness::new(cfg);
    let woke = secs(3600);
    let out = h.timeout(woke);
    ack_pings(&mut h, &out, woke);
    h.pong(woke + ms(500));
    // A frame 5 s after the pong: the peer went stale 2 s before it.
    let out = h.frame(InFrame::Text(Bytes::from_static(b"late")), woke + secs(5));
    assert!(aborted(&out), "stale before this frame: {out:?}");
    assert_eq!(ended(&out), stale());
    assert!(
        !out.iter().any(|o| matches!(
            o,
            ServerOutput::Event(tether_core::server::ServerEvent::Message(_))
        )),
        "the frame of a connection already given up is not delivered: {out:?}"
    );
}
