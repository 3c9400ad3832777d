//! Issue 13 item 1: recovery across reconnect. A resumable stream survives a lost
//! connection; its position and the server's session token go into the next hello; what
//! the server replays is de-duplicated; a server that cannot recover ends the stream with
//! a typed `Unrecoverable`; standing subscriptions are written again before queued
//! traffic; a token over the bound is a violation, never stored.

mod common;
use common::*;
use tether_core::{Config, Event, MAX_RESUME_TOKEN, StreamEnd, StreamEventKind, Violation};

/// Opens, starts the resumable stream `sub-1` and delivers its events 1 and 2.
fn streaming(h: &mut H) -> tether_core::RequestId {
    h.open();
    let id =
        h.s.request(Req("watch", Some("sub-1")), None, h.now)
            .unwrap();
    let out = h.drain();
    h.complete_writes(&out);
    h.frame("ev sub-1 1 delta a");
    h.frame("ev sub-1 2 delta ab");
    id
}

/// Reconnects after a loss; returns the hello of the new connection.
fn rehello(h: &mut H) -> String {
    h.until_attempt();
    let out = h.opened();
    h.complete_writes(&out);
    let hellos = sent_texts(&out);
    assert_eq!(hellos.len(), 1, "{out:?}");
    hellos[0].clone()
}

fn stream_kinds(h: &H) -> Vec<StreamEventKind<String>> {
    h.events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Stream(ev) if ev.key.as_str() == "sub-1" => Some(ev.kind),
            _ => None,
        })
        .collect()
}

#[test]
fn a_resumable_stream_carries_on_across_a_reconnect_without_duplicates() {
    let mut h = H::default_config();
    streaming(&mut h);
    let out = h.closed(Some(1012), "restart");
    assert!(
        !events(&out).iter().any(|e| matches!(e, Event::Stream(_))),
        "no terminal on the loss: {out:?}"
    );
    assert_eq!(h.s.open_streams(), 1);
    assert_eq!(rehello(&mut h), "hello resume sub-1=2");
    h.frame("ack recovered");
    // The server replays from an earlier point: what was delivered is dropped.
    h.frame("ev sub-1 1 delta a");
    h.frame("ev sub-1 2 delta ab");
    h.frame("ev sub-1 3 delta abc");
    h.frame("ev sub-1 4 final abc");
    // The two replayed behind the position are the server's mistake, and said so.
    let behind = h
        .events()
        .into_iter()
        .filter(|e| {
            matches!(
                e,
                Event::Violation { violation: Violation::Malformed { detail }, .. }
                    if detail.contains("behind the resume position 2")
            )
        })
        .count();
    assert_eq!(behind, 2);
    let kinds = stream_kinds(&h);
    let texts: Vec<String> = kinds
        .iter()
        .map(|k| match k {
            StreamEventKind::Delta { text, .. } => {
                format!("delta {}", text.clone().unwrap_or_default())
            }
            StreamEventKind::Final { text, .. } => {
                format!("final {}", text.clone().unwrap_or_default())
            }
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(texts, ["delta a", "delta b", "delta c", "final abc"]);
}

#[test]
fn the_servers_token_goes_into_the_next_hello_and_an_oversized_one_is_refused() {
    let mut h = H::default_config();
    h.connect();
    let out = h.opened();
    h.complete_writes(&out);
    h.frame("ack token=tok-77");
    h.closed(None, "");
    assert_eq!(rehello(&mut h), "hello resume token=tok-77");
    // A token over the bound is a violation and the old one stays.
    let long = "x".repeat(MAX_RESUME_TOKEN + 1);
    let out = h.frame(&format!("ack token={long}"));
    assert!(
        events(&out).iter().any(|e| matches!(
            e,
            Event::Violation {
                violation: Violation::Malformed { .. },
                ..
            }
        )),
        "{:?}",
        events(&out)
    );
    h.closed(None, "");
    assert_eq!(rehello(&mut h), "hello resume token=tok-77");
}

#[test]
fn a_server_that_cannot_recover_ends_the_stream_typed() {
    let mut h = H::default_config();
    let id = streaming(&mut h);
    h.closed(None, "");
    rehello(&mut h);
    let out = h.frame("ack unrecoverable");
    assert!(
        events(&out).iter().any(|e| matches!(
            e,
            Event::Stream(ev) if ev.request == Some(id)
                && ev.kind == StreamEventKind::Ended(StreamEnd::Unrecoverable)
        )),
        "{out:?}"
    );
    assert_eq!(h.s.open_streams(), 0);
}

#[test]
fn a_stream_that_is_not_resumable_still_ends_with_the_connection() {
    let mut h = H::default_config();
    h.open();
    h.s.request(Req("watch", Some("once")), None, h.now)
        .unwrap();
    let out = h.drain();
    h.complete_writes(&out);
    let out = h.closed(None, "");
    assert!(events(&out).iter().any(|e| matches!(
        e,
        Event::Stream(ev) if ev.kind == StreamEventKind::Ended(StreamEnd::Disconnected)
    )));
    assert_eq!(rehello(&mut h), "hello", "nothing to resume");
}

#[test]
fn standing_subscriptions_are_written_again_before_queued_traffic() {
    let mut h = H::with(
        Config::default(),
        Lines {
            resubscribe: true,
            ..Lines::default()
        },
        42,
    );
    streaming(&mut h);
    h.closed(None, "");
    h.s.send("queued".into(), h.now).unwrap();
    rehello(&mut h);
    let out = h.frame("ack");
    assert_eq!(sent_texts(&out), ["resub sub-1 2", "queued"]);
}

#[test]
fn a_paused_session_keeps_its_resumable_streams() {
    let mut h = H::default_config();
    streaming(&mut h);
    h.s.disconnect(h.now).unwrap();
    h.drain();
    assert_eq!(h.s.open_streams(), 1);
    h.s.resume(h.now).unwrap();
    h.drain();
    let out = h.opened();
    assert_eq!(sent_texts(&out), ["hello resume sub-1=2"]);
}
