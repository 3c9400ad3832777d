//! The session's read-only views: what a driver, a health check or a log line reads to
//! learn the session's state without changing it. Each is checked against a state in
//! which it must show something other than its resting value, since a view that always
//! answered zero (or `false`, or the default) would pass every test that only looks at a
//! fresh session.

mod common;
use common::*;
use tether_core::{Config, Event, StreamConfig};

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

/// The counters count what happened, each once (mutation testing found several that no
/// test read): messages, stream events and what routing dropped, unsolicited events,
/// gaps, disconnects and dropped messages.
#[test]
fn the_counters_count_what_happened() {
    let cfg = Config::builder()
        .queue_while_offline(1, tether_core::Overflow::DropOldest)
        .build()
        .unwrap();
    let mut h = H::new(cfg);
    h.open();
    h.frame("hello there");
    h.frame("and again");
    h.s.request(Req("watch", Some("k")), None, h.now).unwrap();
    let out = h.drain();
    h.complete_writes(&out);
    h.frame("ev k 1 delta a");
    h.frame("ev k 1 delta a"); // a duplicate
    h.frame("ev k 3 delta abc"); // a gap, then the event
    h.frame("ev k 2 delta ab"); // stale: older than the last delivered
    h.frame("ev k 4 final abc");
    h.frame("ev k 5 delta abcd"); // late: the stream completed
    h.frame("ev other 1 delta x"); // unsolicited
    h.closed(None, "");
    h.s.send("one".into(), h.now).unwrap();
    h.s.send("two".into(), h.now).unwrap(); // drops "one"
    let s = h.s.stats();
    assert_eq!(s.messages, 2);
    assert_eq!(s.duplicates_dropped, 1);
    assert_eq!(s.gaps, 1);
    assert_eq!(s.stale_stream_events, 1);
    assert_eq!(s.late_events, 1);
    assert_eq!(s.unsolicited, 1);
    // delta 1, the gap, delta 3, final 4.
    assert_eq!(s.stream_events, 4);
    assert_eq!(s.disconnects, 1);
    assert_eq!(s.messages_dropped, 1);
    assert_eq!(s.requests_disconnected, 1);
}

/// A second `ack` on an open connection is a violation, not a second opening.
#[test]
fn an_ack_on_an_open_connection_is_a_duplicate() {
    let mut h = H::default_config();
    h.open();
    let out = h.frame("ack");
    let evs = events(&out);
    assert!(
        evs.iter().any(|e| matches!(
            e,
            Event::Violation {
                violation: tether_core::Violation::DuplicateAck,
                ..
            }
        )),
        "{evs:?}"
    );
    assert!(!evs.iter().any(|e| matches!(e, Event::Opened { .. })));
    assert_eq!(h.s.stats().opens, 1);
}

/// Each request outcome has its counter: answered, answered with an error, timed out,
/// lost with its connection, and ended with the session.
#[test]
fn request_counters_count_each_outcome() {
    let mut h = H::default_config();
    h.open();
    let ok = h.s.request(Req("a", None), None, h.now).unwrap();
    let err = h.s.request(Req("b", None), None, h.now).unwrap();
    h.s.request(Req("c", None), Some(secs(1.0)), h.now).unwrap();
    let out = h.drain();
    h.complete_writes(&out);
    h.frame(&format!("res {} ok fine", ok.get()));
    h.frame(&format!("res {} err nope", err.get()));
    let out = h.advance(secs(1.0));
    h.complete_writes(&out);
    h.s.request(Req("d", None), None, h.now).unwrap();
    let out = h.drain();
    h.complete_writes(&out);
    h.closed(None, "");
    h.s.request(Req("e", None), None, h.now).unwrap();
    h.s.close(tether_core::CloseCode::NORMAL, "", h.now);
    let s = h.s.stats();
    assert_eq!(
        (
            s.requests_ok,
            s.requests_remote_error,
            s.requests_timed_out,
            s.requests_disconnected,
            s.requests_aborted
        ),
        (1, 1, 1, 1, 1)
    );
}

/// A completion for a frame the session never wrote (or already settled) is a stale
/// input, counted.
#[test]
fn a_completion_for_an_unknown_frame_is_a_stale_input() {
    let mut h = H::default_config();
    let conn = h.open();
    let before = h.s.stats().stale_inputs;
    h.input(tether_core::Input::WriteCompleted {
        conn,
        frame: tether_core::FrameId::from_raw(9_999),
    });
    assert_eq!(h.s.stats().stale_inputs, before + 1);
    // So is a second `TransportOpened` for a connection already open.
    h.input(tether_core::Input::TransportOpened { conn });
    assert_eq!(h.s.stats().stale_inputs, before + 2);
    // And a frame on a connection the transport has not reported open.
    let mut h = H::default_config();
    let conn = h.connect();
    h.input(tether_core::Input::FrameReceived {
        conn,
        frame: text("early"),
    });
    assert_eq!(h.s.stats().stale_inputs, 1);
}

/// A message still queued when the session ends is dropped, and counted.
#[test]
fn a_message_queued_at_the_end_is_counted_dropped() {
    let mut h = H::default_config();
    h.s.send("never sent".into(), h.now).unwrap();
    h.s.close(tether_core::CloseCode::NORMAL, "", h.now);
    assert_eq!(h.s.stats().messages_dropped, 1);
}

/// A stream whose request failed ends with a terminal event, counted like any other.
#[test]
fn a_stream_ended_by_its_failed_request_is_counted() {
    let mut h = H::default_config();
    h.open();
    let id = h.s.request(Req("w", Some("k")), None, h.now).unwrap();
    let out = h.drain();
    h.complete_writes(&out);
    h.frame(&format!("res {} err no", id.get()));
    assert_eq!(h.s.stats().stream_events, 1);
    assert_eq!(h.s.open_streams(), 0);
    // So does one ended by a lost connection.
    h.s.request(Req("w", Some("k3")), None, h.now).unwrap();
    let out = h.drain();
    h.complete_writes(&out);
    h.closed(None, "");
    assert_eq!(h.s.stats().stream_events, 2);
    // And one ended by the session's end.
    h.s.request(Req("w", Some("k2")), None, h.now).unwrap();
    h.s.close(tether_core::CloseCode::NORMAL, "", h.now);
    assert_eq!(h.s.stats().stream_events, 3);
}

/// Every data frame that reaches the protocol is counted, the ack included.
#[test]
fn frames_received_counts_each_data_frame() {
    let mut h = H::default_config();
    h.open();
    assert_eq!(h.s.stats().frames_received, 1, "the ack");
    h.frame("one");
    h.frame("two");
    assert_eq!(h.s.stats().frames_received, 3);
}
