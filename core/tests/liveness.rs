//! Behaviour 5: liveness — pings, stale detection, application heartbeats, and the probe
//! after a clock jump.

mod common;
use common::*;
use tether_core::{Config, DisconnectReason, Event, InFrame, Input, Status, TimerKind};

#[test]
fn pings_every_interval_and_declares_a_silent_peer_dead() {
    let mut h = H::default_config();
    h.open();
    h.advance(secs(5.0)); // stable
    let out = h.advance(secs(25.0));
    assert_eq!(pings(&out), 1, "ping at +30 s");
    h.complete_writes(&out);
    let out = h.advance(secs(30.0));
    assert_eq!(pings(&out), 1, "ping at +60 s");
    h.complete_writes(&out);
    assert_eq!(h.s.timeout_reason(), Some(TimerKind::Liveness));
    let out = h.advance(secs(14.999));
    assert!(out.is_empty());
    let out = h.advance(secs(0.001));
    assert!(has_abort(&out), "dead at +75 s");
    assert!(events(&out).iter().any(|e| matches!(
        e,
        Event::Disconnected {
            reason: DisconnectReason::Stale,
            retry: Some(_),
            ..
        }
    )));
    assert_eq!(h.s.status(), Status::Reconnecting);
}

#[test]
fn any_inbound_frame_counts_as_life() {
    let mut h = H::default_config();
    h.open();
    let conn = h.conn();
    for i in 1..=10 {
        let out = h.advance(secs(20.0));
        h.complete_writes(&out);
        let frame = match i % 3 {
            0 => InFrame::Pong(bytes::Bytes::new()),
            1 => InFrame::Ping(bytes::Bytes::new()),
            _ => text("tick"),
        };
        let out = h.input(Input::FrameReceived { conn, frame });
        h.complete_writes(&out);
    }
    assert_eq!(
        h.s.status(),
        Status::Open,
        "200 s alive on frames every 20 s"
    );
}

#[test]
fn an_application_heartbeat_sets_the_stale_threshold() {
    let cfg = Config::builder().ping_interval(None).build().unwrap();
    let mut h = H::new(cfg);
    h.connect();
    let out = h.opened();
    h.complete_writes(&out);
    h.frame("ack hb=60000");
    // Stale after 2 x 60 s, not the default 75 s.
    h.run_for(secs(119.0));
    assert_eq!(h.s.status(), Status::Open);
    h.frame("tick");
    h.run_for(secs(119.0));
    assert_eq!(h.s.status(), Status::Open);
    let out = h.run_for(secs(1.0));
    assert!(has_abort(&out));
}

#[test]
fn a_clock_jump_probes_instead_of_killing_a_live_connection() {
    let mut h = H::default_config();
    h.open();
    h.advance(secs(5.0));
    // The laptop sleeps for an hour.
    let out = h.advance(secs(3600.0));
    assert!(!has_abort(&out), "{out:?}");
    assert!(
        events(&out)
            .iter()
            .any(|e| matches!(e, Event::ClockJump { .. }))
    );
    assert_eq!(pings(&out), 1, "probe sent at once");
    h.complete_writes(&out);
    // The peer answers: the connection survives.
    let conn = h.conn();
    h.input(Input::FrameReceived {
        conn,
        frame: InFrame::Pong(bytes::Bytes::new()),
    });
    h.advance(secs(10.0));
    assert_eq!(h.s.status(), Status::Open);
}

#[test]
fn a_write_pending_across_a_sleep_is_not_a_missed_deadline() {
    let mut h = H::default_config();
    h.open();
    h.s.send("before the lid closed".into(), h.now).unwrap();
    let before = h.drain();
    let out = h.advance(secs(3600.0));
    assert!(!has_abort(&out), "{out:?}");
    assert!(
        events(&out)
            .iter()
            .any(|e| matches!(e, Event::ClockJump { .. }))
    );
    // The adapter wakes too and reports both writes; the peer answers the probe.
    h.complete_writes(&before);
    h.complete_writes(&out);
    let conn = h.conn();
    h.input(Input::FrameReceived {
        conn,
        frame: InFrame::Pong(bytes::Bytes::new()),
    });
    h.run_for(secs(20.0));
    assert_eq!(h.s.status(), Status::Open);
}

#[test]
fn a_sleep_is_noticed_against_any_deadline_not_only_the_stale_one() {
    let mut h = H::default_config();
    h.open();
    h.run_for(secs(5.0));
    // 44 s past the ping deadline, 1 s short of the stale one.
    let out = h.advance(secs(69.0));
    assert!(
        events(&out)
            .iter()
            .any(|e| matches!(e, Event::ClockJump { .. }))
    );
    h.complete_writes(&out);
    assert_eq!(h.s.timeout_reason(), Some(TimerKind::Liveness));
    assert_eq!(
        h.s.poll_timeout(),
        Some(h.now + secs(10.0)),
        "a full probe, not 1 s"
    );
}

#[test]
fn a_clock_jump_to_a_dead_peer_aborts_after_the_probe_timeout() {
    let mut h = H::default_config();
    h.open();
    let out = h.advance(secs(7200.0));
    h.complete_writes(&out);
    assert_eq!(h.s.status(), Status::Open);
    let out = h.advance(secs(10.0));
    assert!(has_abort(&out));
    assert_eq!(h.s.status(), Status::Reconnecting);
}

#[test]
fn a_driver_exactly_the_threshold_late_is_not_a_clock_jump_and_past_it_is() {
    for (late, jump) in [(15.0, false), (15.001, true)] {
        let mut h = H::default_config();
        h.open();
        // The first deadline (the first ping), reached `late` seconds late: the jump
        // threshold is 15 s, and only a delay past it is a jump.
        let at = h.s.poll_timeout().unwrap();
        h.now = at + secs(late);
        h.s.handle_timeout(h.now);
        h.drain();
        let jumped = h
            .events()
            .iter()
            .any(|e| matches!(e, Event::ClockJump { .. }));
        assert_eq!(jumped, jump, "{late} s late");
    }
}

#[test]
fn a_driver_a_little_late_is_not_a_clock_jump() {
    let mut h = H::default_config();
    h.open();
    // A driver 5 s late for every deadline (under the jump threshold): dead, no probe.
    let mut out = Vec::new();
    while h.s.status() == Status::Open {
        let at = h.s.poll_timeout().unwrap();
        h.now = at + secs(5.0);
        h.s.handle_timeout(h.now);
        let o = h.drain();
        h.complete_writes(&o);
        out.extend(o);
    }
    assert!(has_abort(&out));
    assert_eq!(h.s.status(), Status::Reconnecting);
    assert!(
        !h.events()
            .iter()
            .any(|e| matches!(e, Event::ClockJump { .. }))
    );
}

#[test]
fn a_frame_that_ends_a_long_probe_brings_the_stale_deadline_forward() {
    // A probe longer than the stale threshold: the frame that ends it puts the stale
    // deadline back at 10 s after that frame, 50 s before the probe's own.
    let cfg = Config::builder()
        .ping_interval(None)
        .stale_after(secs(10.0))
        .build()
        .unwrap();
    let mut cfg = cfg;
    cfg.liveness.probe_timeout = secs(60.0);
    // No other deadline before the probe's: the stale one is the only early one.
    cfg.send_deadline = secs(120.0);
    let mut h = H::new(cfg);
    h.open();
    let conn = h.conn();
    // The host slept: a probe, due 60 s from now.
    let out = h.advance(secs(7200.0));
    h.complete_writes(&out);
    assert!(
        h.events()
            .iter()
            .any(|e| matches!(e, Event::ClockJump { .. }))
    );
    h.now += secs(1.0);
    h.input(Input::FrameReceived {
        conn,
        frame: InFrame::Pong(bytes::Bytes::new()),
    });
    // 20 s on, a message: the peer went stale 9 s ago (1 + 10 s after the probe
    // started), which the session acts on before it reads anything more.
    h.now += secs(20.0);
    let out = h.input(Input::FrameReceived {
        conn,
        frame: text("late"),
    });
    assert!(has_abort(&out), "stale at +11 s, before the frame at +21 s");
    assert!(
        !events(&out).iter().any(|e| matches!(e, Event::Message(_))),
        "the frame of a connection already given up is not delivered"
    );
    assert!(events(&out).iter().any(|e| matches!(
        e,
        Event::Disconnected {
            reason: DisconnectReason::Stale,
            ..
        }
    )));
}
