//! Behaviour 10: closing — idempotent, a close frame then an abort after the close
//! timeout, every pending request failed, and no timer left armed.

mod common;
use common::*;
use tether_core::{CloseCode, EndReason, Event, Input, Output, Status};

#[test]
fn close_sends_a_close_frame_and_waits_for_the_peer() {
    let mut h = H::default_config();
    let conn = h.open();
    h.s.close(CloseCode::NORMAL, "bye", h.now);
    let out = h.drain();
    assert_eq!(close_frame(&out), Some((CloseCode::NORMAL, "bye".into())));
    assert_eq!(h.s.status(), Status::Closed);
    assert!(events(&out).contains(&Event::Ended(EndReason::ClosedByUser)));
    assert!(!h.s.is_closed(), "the transport is still closing");
    assert!(h.s.poll_timeout().is_some());
    h.input(Input::TransportClosed {
        conn,
        code: Some(CloseCode::NORMAL),
        reason: String::new(),
    });
    assert!(h.s.is_closed());
    assert_eq!(h.s.poll_timeout(), None);
}

#[test]
fn an_unresponsive_peer_is_aborted_after_the_close_timeout() {
    let mut h = H::default_config();
    let conn = h.open();
    h.s.close(CloseCode::NORMAL, "bye", h.now);
    h.drain();
    let out = h.advance(secs(5.0));
    assert_eq!(out, [Output::AbortTransport { conn }]);
    assert_eq!(h.s.poll_timeout(), None);
    assert!(h.s.is_closed());
}

#[test]
fn close_is_idempotent() {
    let mut h = H::default_config();
    h.open();
    h.s.close(CloseCode::NORMAL, "bye", h.now);
    let first = h.drain();
    h.s.close(CloseCode::NORMAL, "again", h.now);
    h.s.close(CloseCode(4000), "and again", h.now);
    assert!(h.drain().is_empty());
    assert_eq!(
        first
            .iter()
            .filter(|o| matches!(o, Output::CloseTransport { .. }))
            .count(),
        1
    );
}

#[test]
fn close_stops_reconnecting() {
    let mut h = H::default_config();
    h.open();
    h.closed(Some(1011), "");
    assert!(h.s.poll_timeout().is_some(), "backoff armed");
    h.s.close(CloseCode::NORMAL, "", h.now);
    h.drain();
    assert_eq!(h.s.poll_timeout(), None);
    let out = h.advance(secs(3600.0));
    assert!(open_transport(&out).is_none());
}

#[test]
fn close_while_opening_aborts_the_attempt() {
    let mut h = H::default_config();
    let conn = h.connect();
    h.s.close(CloseCode::NORMAL, "", h.now);
    let out = h.drain();
    assert!(out.contains(&Output::AbortTransport { conn }));
    assert_eq!(h.s.poll_timeout(), None);
}

#[test]
fn terminate_aborts_at_once_and_cuts_a_close_short() {
    let mut h = H::default_config();
    let conn = h.open();
    h.s.terminate(h.now);
    let out = h.drain();
    assert!(out.contains(&Output::AbortTransport { conn }));
    assert!(close_frame(&out).is_none());
    assert!(h.s.is_closed());

    let mut h = H::default_config();
    let conn = h.open();
    h.s.close(CloseCode::NORMAL, "", h.now);
    h.drain();
    h.s.terminate(h.now);
    assert_eq!(h.drain(), [Output::AbortTransport { conn }]);
    assert_eq!(h.s.poll_timeout(), None);
}

#[test]
fn close_before_connect_just_ends() {
    let mut h = H::default_config();
    h.s.close(CloseCode::NORMAL, "", h.now);
    assert_eq!(h.s.status(), Status::Closed);
    assert_eq!(h.statuses(), [] as [Status; 0], "nothing drained yet");
    h.drain();
    assert_eq!(h.statuses(), [Status::Closed]);
    assert!(h.s.is_closed());
}

#[test]
fn terminate_also_aborts_sockets_still_closing_from_earlier_attempts() {
    let cfg = tether_core::Config::builder()
        .retry_first_connect(true)
        .build()
        .unwrap();
    let mut h = H::new(cfg);
    let first = h.connect();
    h.opened();
    h.advance(secs(5.0)); // handshake timeout: conn#0 is told to close
    let (second, _) = h.until_attempt();
    h.s.terminate(h.now);
    let out = h.drain();
    assert!(out.contains(&Output::AbortTransport { conn: first }));
    assert!(out.contains(&Output::AbortTransport { conn: second }));
    assert!(h.s.is_closed());
    assert_eq!(h.s.poll_timeout(), None);
    h.s.terminate(h.now);
    assert!(h.drain().is_empty(), "a second terminate does nothing");
}
