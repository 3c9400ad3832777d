//! Generation-scoped inputs and timers: nothing of an older connection attempt can touch
//! a newer one.

mod common;
use common::*;
use tether_core::{
    CloseCode, Config, DropReason, Event, InFrame, Input, Output, Status, TransportFailure,
};

#[test]
fn inputs_of_an_old_generation_are_ignored_and_counted() {
    let mut h = H::default_config();
    let old = h.open();
    h.closed(None, "");
    let (new, _) = h.until_attempt();
    let out = h.opened();
    h.complete_writes(&out);
    h.frame("ack");
    let before = h.s.stats().stale_inputs;
    for input in [
        Input::FrameReceived {
            conn: old,
            frame: text("message from the past"),
        },
        Input::TransportClosed {
            conn: old,
            code: Some(CloseCode(4001)),
            reason: "old".into(),
        },
        Input::TransportFailed {
            conn: old,
            failure: TransportFailure::Refused,
        },
        Input::FrameReceived {
            conn: old,
            frame: InFrame::Pong(bytes::Bytes::new()),
        },
    ] {
        let out = h.input(input);
        assert!(out.is_empty(), "{out:?}");
    }
    assert_eq!(h.s.stats().stale_inputs, before + 4);
    assert_eq!(h.s.status(), Status::Open);
    assert_eq!(h.s.current_conn(), Some(new));
}

#[test]
fn a_late_open_of_an_abandoned_attempt_is_aborted() {
    let cfg = Config::builder()
        .retry_first_connect(true)
        .connect_timeout(secs(1.0))
        .build()
        .unwrap();
    let mut h = H::new(cfg);
    let old = h.connect();
    h.advance(secs(1.0)); // connect timeout
    let out = h.input(Input::TransportOpened { conn: old });
    assert_eq!(out, [Output::AbortTransport { conn: old }]);
    assert_eq!(h.s.status(), Status::Connecting);
}

#[test]
fn an_old_connections_timers_die_with_it() {
    let mut h = H::default_config();
    h.open();
    let id = h.s.send("never written".into(), h.now).unwrap();
    h.drain(); // a pending write with a send deadline at +10 s
    let out = h.closed(Some(1011), "");
    // The unconfirmed write dies with its connection, and says so under its id.
    assert!(
        events(&out).contains(&Event::MessageDropped {
            id,
            reason: DropReason::Disconnected
        }),
        "{out:?}"
    );
    let (_, wait) = h.until_attempt();
    let out = h.opened();
    h.complete_writes(&out);
    h.frame("ack");
    // Past the old write's deadline: the new connection must be untouched.
    let out = h.advance(secs(10.0) - wait + secs(1.0));
    assert!(!has_abort(&out), "{out:?}");
    assert_eq!(h.s.status(), Status::Open);
}

#[test]
fn a_backwards_clock_is_clamped() {
    let mut h = H::default_config();
    h.open();
    h.advance(secs(10.0));
    let late = h.now;
    // An input stamped in the past behaves as if stamped at the latest time seen.
    let conn = h.conn();
    h.s.handle_input(
        Input::FrameReceived {
            conn,
            frame: text("hello again"),
        },
        late - secs(5.0),
    );
    h.drain();
    assert_eq!(h.s.last_activity(), Some(late));
}
