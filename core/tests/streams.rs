//! Behaviour 8: streams through the session — pre-registration, events before the
//! response, de-duplication, exactly one terminal, late-event cooldown, gaps, increments
//! from accumulated text, unsolicited events, and streams ending with their connection.

mod common;
use common::*;
use tether_core::{Event, StreamEnd, StreamEvent, StreamEventKind};

fn stream_events(h: &H) -> Vec<StreamEvent<String>> {
    h.events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Stream(s) => Some(s),
            _ => None,
        })
        .collect()
}

#[test]
fn a_run_streams_exactly_once_even_when_events_precede_the_response() {
    let mut h = H::default_config();
    h.open();
    let id =
        h.s.request(Req("chat.send", Some("run-1")), None, h.now)
            .unwrap();
    let out = h.drain();
    h.complete_writes(&out);
    // Events before the response, a duplicate, a gap, a coalesced delta, two terminals.
    for f in [
        "ev run-1 1 delta He",
        "ev run-1 1 delta He",
        "ev run-1 2 delta Hello",
        "ev run-1 4 delta Hello, world",
        &format!("res {} ok started", id.get()),
        "ev run-1 5 error",
        "ev run-1 6 error",
        "ev run-1 3 delta Hello, w",
    ] {
        h.frame(f);
    }
    let evs = stream_events(&h);
    let kinds: Vec<String> = evs
        .iter()
        .map(|e| match &e.kind {
            StreamEventKind::Delta { text, .. } => {
                format!("delta:{}", text.clone().unwrap_or_default())
            }
            StreamEventKind::Gap { expected, received } => format!("gap:{expected}->{received}"),
            StreamEventKind::Error { .. } => "error".into(),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "delta:He",
            "delta:llo",
            "gap:3->4",
            "delta:, world",
            "error"
        ]
    );
    assert!(evs.iter().all(|e| e.request == Some(id)));
    let rebuilt: String = evs
        .iter()
        .filter_map(|e| match &e.kind {
            StreamEventKind::Delta { text, .. } => text.clone(),
            _ => None,
        })
        .collect();
    assert_eq!(rebuilt, "Hello, world");
    let st = h.s.stats();
    assert_eq!(st.duplicates_dropped, 1);
    assert_eq!(st.late_events, 2, "second terminal and the straggler");
    assert_eq!(st.gaps, 1);
    assert_eq!(h.s.open_streams(), 0);
}

#[test]
fn events_of_no_stream_are_unsolicited_and_still_deduplicated() {
    let mut h = H::default_config();
    h.open();
    h.frame("ev proactive 1 delta hi");
    h.frame("ev proactive 1 delta hi");
    let unsolicited = h
        .events()
        .into_iter()
        .filter(|e| matches!(e, Event::Unsolicited(_)))
        .count();
    assert_eq!(unsolicited, 1);
}

#[test]
fn a_lost_connection_ends_open_streams_once() {
    let mut h = H::default_config();
    h.open();
    h.s.request(Req("chat.send", Some("r")), None, h.now)
        .unwrap();
    let out = h.drain();
    h.complete_writes(&out);
    h.frame("ev r 1 delta a");
    h.closed(None, "");
    let ends: Vec<_> = stream_events(&h)
        .into_iter()
        .filter(|e| e.kind.is_terminal())
        .collect();
    assert_eq!(ends.len(), 1);
    assert_eq!(
        ends[0].kind,
        StreamEventKind::Ended(StreamEnd::Disconnected)
    );
}

#[test]
fn a_failed_request_ends_its_stream() {
    let mut h = H::default_config();
    h.open();
    let id =
        h.s.request(Req("chat.send", Some("r")), None, h.now)
            .unwrap();
    h.drain();
    h.frame(&format!("res {} err busy", id.get()));
    let ends: Vec<_> = stream_events(&h)
        .into_iter()
        .filter(|e| e.kind.is_terminal())
        .collect();
    assert_eq!(ends.len(), 1);
    assert_eq!(
        ends[0].kind,
        StreamEventKind::Ended(StreamEnd::RequestFailed)
    );
}

#[test]
fn idle_streams_end_after_the_stream_idle_timeout() {
    let mut h = H::default_config();
    h.open();
    let id =
        h.s.request(Req("chat.send", Some("r")), None, h.now)
            .unwrap();
    let out = h.drain();
    h.complete_writes(&out);
    h.frame(&format!("res {} ok started", id.get()));
    // Keep the connection alive, but the stream says nothing for 5 minutes.
    for _ in 0..10 {
        let out = h.advance(secs(30.0));
        h.complete_writes(&out);
        h.frame("tick");
    }
    let ends: Vec<_> = stream_events(&h)
        .into_iter()
        .filter(|e| e.kind.is_terminal())
        .collect();
    assert_eq!(ends.len(), 1, "{ends:?}");
    assert_eq!(ends[0].kind, StreamEventKind::Ended(StreamEnd::IdleTimeout));
}
