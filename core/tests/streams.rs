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

/// How many events of no stream the session delivered.
fn unsolicited(h: &H) -> usize {
    h.events()
        .into_iter()
        .filter(|e| matches!(e, Event::Unsolicited(_)))
        .count()
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
    let unsolicited = unsolicited(&h);
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
    // The expiry's terminal is counted like any other stream event.
    assert_eq!(h.s.stats().stream_events, 1);
}

/// C4: 2,000 incremental deltas of 64 KiB on one stream. The text held stays within
/// `StreamConfig::max_text` and the stream ends with `Ended(TextTooLong)` at the delta
/// that would pass it; later deltas are late, not a second stream.
#[test]
fn stream_text_is_held_within_its_byte_budget() {
    use serde_json::json;
    use tether_core::profiles::{HelloAck, HelloAckRequest};
    use tether_core::{Config, Input, StreamConfig};

    const CHUNK: usize = 64 << 10;
    let budget = StreamConfig::default().max_text;
    assert_eq!(budget, 1 << 20, "the documented default");
    let mut h = H::with(
        Config::default(),
        HelloAck::new(|| json!({ "type": "hello" })),
        3,
    );
    h.connect();
    let out = h.opened();
    h.complete_writes(&out);
    let conn = h.conn();
    let ack = |h: &mut H<HelloAck>, s: String| {
        h.input(Input::FrameReceived {
            conn,
            frame: text(&s),
        })
    };
    ack(&mut h, json!({ "type": "hello_ack" }).to_string());
    let id =
        h.s.request(
            HelloAckRequest::new("generate", json!({})).streaming(),
            None,
            h.now,
        )
        .unwrap();
    let out = h.drain();
    h.complete_writes(&out);
    let key = id.get().to_string();
    let chunk = "x".repeat(CHUNK);
    let mut ended_at = None;
    let mut deltas = 0;
    let mut max_held = 0;
    for seq in 1..=2_000u64 {
        let frame =
            json!({ "type": "event", "stream": key, "seq": seq, "state": "delta", "text": chunk });
        for e in events(&ack(&mut h, frame.to_string())) {
            match e {
                Event::Stream(StreamEvent {
                    kind: StreamEventKind::Delta { .. },
                    ..
                }) => deltas += 1,
                Event::Stream(StreamEvent {
                    kind: StreamEventKind::Ended(why),
                    request,
                    ..
                }) => {
                    assert_eq!(why, StreamEnd::TextTooLong);
                    assert_eq!(request, Some(id));
                    assert!(ended_at.is_none(), "a second terminal at {seq}");
                    ended_at = Some(seq);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        max_held = max_held.max(h.s.stream_text_bytes());
    }
    let fin = json!({ "type": "event", "stream": key, "seq": 2_001, "state": "final" });
    assert!(events(&ack(&mut h, fin.to_string())).is_empty());
    assert_eq!(
        deltas,
        budget / CHUNK,
        "every delta within the budget is delivered"
    );
    assert_eq!(ended_at, Some((budget / CHUNK) as u64 + 1));
    // The session reports what it holds: the deltas within the budget fill it exactly.
    assert_eq!(max_held, budget, "held {max_held} bytes, budget {budget}");
    assert_eq!(h.s.stream_text_bytes(), 0, "the text is freed");
    assert_eq!(h.s.open_streams(), 0);
}

/// Accumulated text is budgeted by its whole length; a final within the budget keeps it.
#[test]
fn accumulated_text_past_the_budget_ends_the_stream() {
    use tether_core::{Config, StreamConfig};
    let streams = StreamConfig {
        max_text: 8,
        ..StreamConfig::default()
    };
    let cfg = Config::builder().streams(streams).build().unwrap();
    let mut h = H::new(cfg.clone());
    h.open();
    h.s.request(Req("chat.send", Some("a")), None, h.now)
        .unwrap();
    h.s.request(Req("chat.send", Some("b")), None, h.now)
        .unwrap();
    h.drain();
    h.frame("ev a 1 delta 12345678");
    h.frame("ev a 2 final 12345678");
    h.frame("ev b 1 delta 1234");
    h.frame("ev b 2 delta 123456789");
    h.frame("ev b 3 final 123456789");
    let kinds: Vec<_> = stream_events(&h)
        .into_iter()
        .map(|e| (e.key.as_str().to_owned(), e.kind))
        .collect();
    assert_eq!(
        kinds,
        [
            (
                "a".to_owned(),
                StreamEventKind::Delta {
                    text: Some("12345678".into()),
                    payload: "ev a 1 delta 12345678".into()
                }
            ),
            (
                "a".to_owned(),
                StreamEventKind::Final {
                    text: Some("12345678".into()),
                    payload: "ev a 2 final 12345678".into()
                }
            ),
            (
                "b".to_owned(),
                StreamEventKind::Delta {
                    text: Some("1234".into()),
                    payload: "ev b 1 delta 1234".into()
                }
            ),
            (
                "b".to_owned(),
                StreamEventKind::Ended(StreamEnd::TextTooLong)
            ),
        ]
    );
}

#[test]
fn an_event_repeated_after_the_dedup_memory_expired_is_delivered_again() {
    // No pings: the stale threshold (75 s after the last frame) is the only other
    // deadline, so the de-duplication memory (30 s) is the first to come due, and the
    // session must see it pass before it reads the repeat.
    let cfg = tether_core::Config::builder()
        .ping_interval(None)
        .build()
        .unwrap();
    let mut h = H::new(cfg);
    h.open();
    h.run_for(secs(40.0));
    h.frame("ev proactive 1 delta hi");
    h.now += secs(29.0);
    h.frame("ev proactive 1 delta hi");
    h.now += secs(2.0);
    h.frame("ev proactive 1 delta hi");
    let unsolicited = unsolicited(&h);
    assert_eq!(
        unsolicited, 2,
        "dropped once within 30 s, delivered again after"
    );
    assert_eq!(h.s.stats().duplicates_dropped, 1);
}
