//! The session's read-only views: what a driver, a health check or a log line reads to
//! learn the session's state without changing it. Each is checked against a state in
//! which it must show something other than its resting value, since a view that always
//! answered zero (or `false`, or the default) would pass every test that only looks at a
//! fresh session.

mod common;
use common::*;
use tether_core::{Config, StreamConfig};

/// `config()` is the configuration the session was built with, not a default: a driver
/// reads its deadlines (the send deadline, the stale threshold) from it.
#[test]
fn config_is_the_one_the_session_was_built_with() {
    let cfg = Config::builder()
        .request_timeout(secs(7.0))
        .build()
        .unwrap();
    assert_ne!(cfg, Config::default());
    let h = H::new(cfg.clone());
    assert_eq!(h.s.config(), &cfg);
}

/// The `Debug` form is what a log line shows of a session: its status and how much it
/// holds, so that a stuck session can be told from an idle one.
#[test]
fn debug_shows_the_status_and_what_the_session_holds() {
    let mut h = H::default_config();
    h.s.send("a".into(), h.now).unwrap();
    h.s.send("b".into(), h.now).unwrap();
    let shown = format!("{:?}", h.s);
    assert!(shown.starts_with("Session"), "{shown}");
    assert!(shown.contains("status: Idle"), "{shown}");
    assert!(shown.contains("queued: 2"), "{shown}");
}

/// `pending_writes` counts the frames handed to the adapter and not yet reported
/// written: a driver applying backpressure, or a test waiting for a flush, reads it.
#[test]
fn pending_writes_counts_frames_until_they_are_reported_written() {
    let mut h = H::default_config();
    h.open();
    assert_eq!(h.s.pending_writes(), 0);
    h.s.send("x".into(), h.now).unwrap();
    h.s.send("y".into(), h.now).unwrap();
    let out = h.drain();
    assert_eq!(h.s.pending_writes(), 2);
    h.complete_writes(&out);
    assert_eq!(h.s.pending_writes(), 0);
}

/// `remembered_events` counts the `(stream, seq)` pairs held for de-duplication, and
/// falls back to zero once their time to live has passed: the memory a peer's stream
/// events cost is visible, and visibly returned.
#[test]
fn remembered_events_counts_the_pairs_held_until_they_expire() {
    let mut h = H::default_config();
    h.open();
    h.frame("ev proactive 1 delta a");
    h.frame("ev proactive 2 delta ab");
    h.frame("ev proactive 2 delta ab");
    assert_eq!(
        h.s.remembered_events(),
        2,
        "a duplicate is not remembered twice"
    );
    h.run_for(StreamConfig::default().dedup_ttl);
    assert_eq!(h.s.remembered_events(), 0);
}

/// `request_has_stream` is true exactly while a pending request's stream is open: a
/// driver ends a caller's stream at once for a request that started none, or whose
/// stream already ended before its response came.
#[test]
fn request_has_stream_follows_the_requests_stream() {
    let mut h = H::default_config();
    h.open();
    let streaming =
        h.s.request(Req("chat.send", Some("run")), None, h.now)
            .unwrap();
    let plain = h.s.request(Req("ping", None), None, h.now).unwrap();
    let out = h.drain();
    h.complete_writes(&out);
    assert!(h.s.request_has_stream(streaming));
    assert!(!h.s.request_has_stream(plain), "a request without a stream");
    h.frame("ev run 1 final done");
    assert_eq!(h.s.pending_requests(), 2, "the request itself still waits");
    assert!(
        !h.s.request_has_stream(streaming),
        "its stream ended before the response"
    );
}
