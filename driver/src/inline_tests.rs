//! The inline session on a manual clock: the test polls it as an application's task
//! would, the peer is a channel, and time moves only when the test says so.

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use futures::task::noop_waker_ref;
use tether_core::{Config, EndReason, Event, RequestFailure, Status};

use super::Inline;
use crate::client::tests::{Peer, T};
use crate::manual_rt::Manual;
use crate::record::Options;
use crate::shared::lock;

fn start(rt: &Manual, peer: &Peer, config: Config) -> Inline<T, Manual> {
    Inline::start(rt.clone(), peer.clone(), config, T, 1, "test").expect("valid config")
}

fn poll(s: &mut Inline<T, Manual>) -> Poll<Option<Event<T>>> {
    Pin::new(s).poll_next(&mut Context::from_waker(noop_waker_ref()))
}

/// Every event the session has for the taking now, driving it until it waits (bounded).
fn ready(s: &mut Inline<T, Manual>) -> Vec<Event<T>> {
    let mut got = Vec::new();
    for _ in 0..10_000 {
        match poll(s) {
            Poll::Ready(Some(ev)) => got.push(ev),
            Poll::Ready(None) | Poll::Pending => return got,
        }
    }
    panic!("the session never waited: {got:?}");
}

fn written(peer: &Peer) -> Vec<String> {
    lock(&peer.written).clone()
}

/// Polls until the session has opened.
fn open(s: &mut Inline<T, Manual>) {
    let events = ready(s);
    assert!(
        events.iter().any(|e| matches!(e, Event::Opened { .. })),
        "{events:?}"
    );
    assert_eq!(s.status(), Status::Open);
}

/// A send returns the session's verdict at once; its frame goes out on the next poll,
/// together with every other frame sent since, and not before.
#[test]
fn calls_act_at_once_and_write_on_the_next_poll() {
    let rt = Manual::new();
    let peer = Peer::default();
    let mut s = start(&rt, &peer, Config::default());
    // Before the first poll: queued, the session is connecting.
    s.send("early".into()).expect("queued while connecting");
    s.send("early too".into()).expect("queued while connecting");
    assert_eq!(s.queued(), 2);
    assert!(written(&peer).is_empty());
    open(&mut s);
    assert_eq!(s.queued(), 0);
    assert_eq!(written(&peer), ["early", "early too"]);
    let a = s.send("a".into()).expect("accepted");
    let b = s.send("b".into()).expect("accepted");
    assert!(b.get() > a.get());
    assert_eq!(
        written(&peer),
        ["early", "early too"],
        "nothing is written between polls"
    );
    assert!(ready(&mut s).is_empty());
    assert_eq!(written(&peer), ["early", "early too", "a", "b"]);
    peer.say("hi");
    assert_eq!(poll(&mut s), Poll::Ready(Some(Event::Message("hi".into()))));
    assert_eq!(poll(&mut s), Poll::Pending);
}

/// While events wait to be taken, nothing more is read: what the session holds for the
/// application never outgrows one read batch (the subscriber byte budget), and every
/// frame still arrives, in order.
#[test]
fn reading_waits_while_events_are_untaken() {
    let rt = Manual::new();
    let peer = Peer::default();
    let options = Options::new().subscriber_bytes(10);
    let mut s = Inline::start_with(
        rt.clone(),
        peer.clone(),
        Config::default(),
        T,
        1,
        "t",
        options,
    )
    .expect("valid config");
    open(&mut s);
    for i in 0..5 {
        peer.say(&format!("frame-{i}!"));
    }
    // 8 bytes each: the batch stops at the second, which reaches the budget.
    assert_eq!(
        poll(&mut s),
        Poll::Ready(Some(Event::Message("frame-0!".into())))
    );
    assert!(
        s.driver.published.len() <= 1,
        "{} events held",
        s.driver.published.len()
    );
    let rest = ready(&mut s);
    let expected: Vec<Event<T>> = (1..5)
        .map(|i| Event::Message(format!("frame-{i}!")))
        .collect();
    assert_eq!(rest, expected);
}

/// A request's id comes back at once and its outcome as the `Response` event with that id:
/// the peer's answer, or its timeout, which fires because the application polls.
#[test]
fn a_request_resolves_through_its_response_event() {
    let rt = Manual::new();
    let peer = Peer::default();
    let mut s = start(&rt, &peer, Config::default());
    open(&mut s);
    let id = s.request(None).expect("accepted");
    assert!(ready(&mut s).is_empty());
    assert_eq!(written(&peer).last().map(String::as_str), Some("req 0"));
    peer.say("res 0");
    assert_eq!(
        ready(&mut s),
        [Event::Response {
            id,
            result: Ok("res 0".into())
        }]
    );
    let late = s
        .request_with_timeout(None, Duration::from_millis(100))
        .expect("accepted");
    assert!(ready(&mut s).is_empty());
    rt.advance(Duration::from_millis(100));
    assert_eq!(
        ready(&mut s),
        [Event::Response {
            id: late,
            result: Err(RequestFailure::Timeout)
        }]
    );
}

/// `close` writes the close frame on the next poll; the stream ends once the peer has
/// finished the handshake, after the `Ended` event, and stays ended.
#[test]
fn close_ends_the_stream_after_the_handshake() {
    let rt = Manual::new();
    let peer = Peer::default();
    let mut s = start(&rt, &peer, Config::default());
    open(&mut s);
    s.close();
    s.close();
    let mut events = ready(&mut s);
    assert_eq!(
        written(&peer).last().map(String::as_str),
        Some("close 1000 ")
    );
    // The peer answers by closing its side: the link's stream ends.
    lock(&peer.links).clear();
    events.extend(ready(&mut s));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Ended(EndReason::ClosedByUser))),
        "{events:?}"
    );
    assert_eq!(poll(&mut s), Poll::Ready(None));
    assert_eq!(poll(&mut s), Poll::Ready(None));
    assert!(s.send("late".into()).is_err());
}

/// `terminate` ends the session at once, with no close frame.
#[test]
fn terminate_ends_the_stream_without_a_close_frame() {
    let rt = Manual::new();
    let peer = Peer::default();
    let mut s = start(&rt, &peer, Config::default());
    open(&mut s);
    s.terminate();
    let events = ready(&mut s);
    assert!(matches!(events.last(), Some(Event::Ended(_))), "{events:?}");
    assert_eq!(poll(&mut s), Poll::Ready(None));
    assert!(written(&peer).iter().all(|w| !w.starts_with("close")));
}

/// `flush` writes what was sent without taking events; the events wait, none is lost.
#[test]
fn flush_writes_without_taking_events() {
    let rt = Manual::new();
    let peer = Peer::default();
    let mut s = start(&rt, &peer, Config::default());
    open(&mut s);
    let mut cx = Context::from_waker(noop_waker_ref());
    assert_eq!(s.poll_flush(&mut cx), Poll::Ready(()), "nothing to write");
    peer.say("y");
    s.send("x".into()).expect("accepted");
    assert_eq!(s.poll_flush(&mut cx), Poll::Ready(()));
    assert_eq!(written(&peer).last().map(String::as_str), Some("x"));
    assert_eq!(ready(&mut s), [Event::Message("y".into())]);
}

/// A lazy session opens no connection until the first send, and then does.
#[test]
fn a_lazy_session_connects_on_first_use() {
    let rt = Manual::new();
    let peer = Peer::default();
    let config = Config::builder().lazy(true).build().expect("valid config");
    let mut s = start(&rt, &peer, config);
    assert!(ready(&mut s).is_empty());
    assert_eq!(peer.connects.load(Ordering::Relaxed), 0);
    s.send("wake".into()).expect("queued");
    open(&mut s);
    assert_eq!(peer.connects.load(Ordering::Relaxed), 1);
    assert_eq!(written(&peer), ["wake"]);
}

/// The session's own commands act at once: `disconnect` drops the connection and keeps it
/// down, `resume` connects again.
#[test]
fn disconnect_and_resume_act_at_once() {
    let rt = Manual::new();
    let peer = Peer::default();
    let mut s = start(&rt, &peer, Config::default());
    open(&mut s);
    s.disconnect();
    let events = ready(&mut s);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Disconnected { .. })),
        "{events:?}"
    );
    assert_ne!(s.status(), Status::Open);
    s.resume();
    open(&mut s);
    assert_eq!(peer.connects.load(Ordering::Relaxed), 2);
}

/// `reconnect` drops the connection and dials again at once; the session opens anew.
#[test]
fn reconnect_dials_again_at_once() {
    let rt = Manual::new();
    let peer = Peer::default();
    let mut s = start(&rt, &peer, Config::default());
    open(&mut s);
    s.reconnect();
    open(&mut s);
    assert_eq!(peer.connects.load(Ordering::Relaxed), 2);
}

/// `idle` is the time since the peer was last heard from, on the session's clock; the
/// `Debug` form names the status.
#[test]
fn idle_and_debug_read_the_session() {
    let rt = Manual::new();
    let peer = Peer::default();
    let mut s = start(&rt, &peer, Config::default());
    open(&mut s);
    rt.advance(Duration::from_secs(7));
    assert_eq!(s.idle(), Duration::from_secs(7));
    peer.say("hello");
    assert_eq!(ready(&mut s), [Event::Message("hello".into())]);
    rt.advance(Duration::from_secs(2));
    assert_eq!(s.idle(), Duration::from_secs(2), "a message is activity");
    let debug = format!("{s:?}");
    assert!(
        debug.contains("Inline") && debug.contains("Open"),
        "{debug}"
    );
}

/// `next_event` and `flush` are the async forms of the stream and of `poll_flush`.
#[test]
fn next_event_and_flush_are_the_async_forms() {
    use futures::FutureExt;
    let rt = Manual::new();
    let peer = Peer::default();
    let mut s = start(&rt, &peer, Config::default());
    open(&mut s);
    s.send("x".into()).expect("accepted");
    assert_eq!(s.flush().now_or_never(), Some(()));
    assert_eq!(written(&peer), ["x"]);
    peer.say("y");
    assert_eq!(
        s.next_event().now_or_never(),
        Some(Some(Event::Message("y".into())))
    );
    assert_eq!(s.next_event().now_or_never(), None, "nothing more yet");
}

/// An inline session moves between threads with the task that owns it (a multi-threaded
/// runtime may move that task).
#[test]
fn an_inline_session_is_send() {
    fn assert_send<T: Send>() {}
    assert_send::<Inline<T, Manual>>();
    assert_send::<Inline<tether_core::profiles::Raw, Manual>>();
}

/// Closed before it ever opened: the stream ends after `Ended`, with nothing written.
#[test]
fn a_session_closed_while_connecting_ends_its_stream() {
    let rt = Manual::new();
    let peer = Peer::default();
    let mut s = start(&rt, &peer, Config::default());
    s.close();
    let events = ready(&mut s);
    assert!(
        matches!(events.last(), Some(Event::Ended(EndReason::ClosedByUser))),
        "{events:?}"
    );
    assert_eq!(poll(&mut s), Poll::Ready(None));
    assert!(written(&peer).is_empty());
}
