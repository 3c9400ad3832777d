//! What the session reports about itself: the read-only accessors a driver relies on (to
//! end a caller's stream at once, to size its buffers, to show the configuration in use)
//! answer with what the session holds.

mod common;
use std::time::Duration;

use common::*;
use tether_core::Config;

#[test]
fn the_configuration_is_the_one_given() {
    let config = Config {
        request_timeout: Duration::from_secs(7),
        ..Config::default()
    };
    let h = H::new(config);
    assert_eq!(h.s.config().request_timeout, Duration::from_secs(7));
    assert!(format!("{:?}", h.s).contains("Session"), "{:?}", h.s);
}

#[test]
fn a_request_has_a_stream_while_its_stream_is_open() {
    let mut h = H::default_config();
    h.open();
    let streaming =
        h.s.request(Req("chat.send", Some("run-1")), None, h.now)
            .unwrap();
    let plain = h.s.request(Req("ping", None), None, h.now).unwrap();
    let out = h.drain();
    h.complete_writes(&out);
    assert!(h.s.request_has_stream(streaming));
    assert!(!h.s.request_has_stream(plain));
    h.frame("ev run-1 1 delta He");
    h.frame("ev run-1 2 delta Hello");
    assert_eq!(h.s.remembered_events(), 2);
    h.frame("ev run-1 3 final");
    assert!(!h.s.request_has_stream(streaming), "the stream has ended");
}

#[test]
fn writes_are_pending_until_reported_written() {
    let mut h = H::default_config();
    h.open();
    h.s.send("one".into(), h.now).unwrap();
    h.s.send("two".into(), h.now).unwrap();
    let out = h.drain();
    assert_eq!(h.s.pending_writes(), 2);
    h.complete_writes(&out);
    assert_eq!(h.s.pending_writes(), 0);
}
