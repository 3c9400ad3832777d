//! Behaviour 11: idle time is observable; an optional idle timeout closes an unused
//! session.

mod common;
use common::*;
use tether_core::{CloseCode, Config, EndReason, Event, Status};

#[test]
fn idle_time_counts_from_the_last_activity() {
    let mut h = H::default_config();
    h.open();
    h.advance(secs(20.0));
    assert_eq!(h.s.idle_for(h.now), secs(20.0));
    h.s.send("x".into(), h.now).unwrap();
    assert_eq!(h.s.idle_for(h.now), secs(0.0));
    h.advance(secs(3.0));
    h.frame("a message");
    assert_eq!(h.s.last_activity(), Some(h.now));
}

#[test]
fn pings_and_heartbeats_are_not_activity() {
    let mut h = H::default_config();
    h.open();
    let opened = h.now;
    let out = h.advance(secs(30.0));
    h.complete_writes(&out);
    h.frame("tick");
    assert_eq!(h.s.last_activity(), Some(opened));
}

#[test]
fn the_idle_timeout_closes_the_session() {
    let cfg = Config::builder()
        .idle_timeout(Some(secs(60.0)))
        .build()
        .unwrap();
    let mut h = H::new(cfg);
    h.open();
    let out = h.advance(secs(30.0));
    h.complete_writes(&out);
    h.s.send("keep".into(), h.now).unwrap();
    let out = h.drain();
    h.complete_writes(&out);
    // The peer stays alive (heartbeats are not activity), the application says nothing.
    for _ in 0..59 {
        let out = h.advance(secs(1.0));
        h.complete_writes(&out);
        h.frame("tick");
    }
    assert_eq!(h.s.status(), Status::Open);
    let out = h.advance(secs(1.0));
    assert_eq!(close_frame(&out), Some((CloseCode::NORMAL, "idle".into())));
    assert!(events(&out).contains(&Event::Ended(EndReason::Idle)));
    assert_eq!(h.s.status(), Status::Closed);
}
