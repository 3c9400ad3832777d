//! The handles against the session loop on a manual clock: a tiny executor polls the
//! spawned loop, time moves only when a test says so, and the peer is a channel.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use futures::task::noop_waker_ref;
use futures::{FutureExt, StreamExt};
use tether_core::{
    ConnId, DataFrame, Decoded, EncodeError, EncodedRequest, Opening, OutFrame, Phase,
    RequestFailure, RequestMeta, SessionError, StreamEnd, StreamEventKind, StreamFrame, StreamKey,
    StreamState, TextMode, TransportFailure,
};

use super::*;
use crate::manual_rt::Manual;
use crate::shared::SUBSCRIBER_BYTES;
use crate::transport::Link;

// ---- a peer that is a channel ------------------------------------------------------------

use crate::test_peer::PeerTx;

/// Every connection's inbound side, for the test to speak as the peer. With `drop_at_once`
/// every connection drops as soon as it is open (a flapping peer).
#[derive(Clone, Default)]
pub(crate) struct Peer {
    pub(crate) links: Arc<Mutex<Vec<PeerTx>>>,
    drop_at_once: bool,
    pub(crate) connects: Arc<AtomicUsize>,
    /// Every text frame written to any connection, and close frames as `close CODE
    /// REASON`, in order.
    pub(crate) written: Arc<Mutex<Vec<String>>>,
}

#[async_trait::async_trait]
impl Transport for Peer {
    async fn connect(&self, _conn: ConnId) -> Result<Link, TransportFailure> {
        self.connects.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = futures::channel::mpsc::unbounded();
        if !self.drop_at_once {
            lock(&self.links).push(tx);
        }
        let written = self.written.clone();
        let sink = futures::sink::unfold((), move |(), out: crate::transport::Outgoing| {
            let written = written.clone();
            async move {
                let line = match out {
                    crate::transport::Outgoing::Frame(OutFrame::Text(t)) => t.as_str().to_owned(),
                    crate::transport::Outgoing::Frame(_) => return Ok(()),
                    crate::transport::Outgoing::Close(code, reason) => {
                        format!("close {} {reason}", code.0)
                    }
                };
                lock(&written).push(line);
                Ok::<_, std::io::Error>(())
            }
        });
        Ok(crate::test_peer::link(sink, rx))
    }
}

impl Peer {
    pub(crate) fn say(&self, text: &str) {
        crate::test_peer::say(&self.links, text);
    }
}

// ---- a line protocol ---------------------------------------------------------------------

/// No handshake. Requests are `req ID`; a `Some(key)` request starts stream `key`.
/// Inbound: `res ID`, `delta KEY [padding]`, `final KEY`, `boom` (decode panics: a protocol bug),
/// anything else a message.
#[derive(Clone, Debug, Default)]
pub(crate) struct T;

impl Protocol for T {
    type Inbound = String;
    type Outbound = String;
    type Request = Option<&'static str>;
    type Response = String;
    type RemoteError = String;

    fn open(&mut self, _conn: ConnId) -> Result<Opening, EncodeError> {
        Ok(Opening::Ready)
    }

    fn encode(&mut self, message: String) -> Result<OutFrame, EncodeError> {
        Ok(OutFrame::text(message))
    }

    fn encode_request(
        &mut self,
        meta: RequestMeta,
        stream: Option<&'static str>,
    ) -> Result<EncodedRequest, EncodeError> {
        Ok(EncodedRequest {
            frame: OutFrame::text(format!("req {}", meta.id.get())),
            stream: stream.map(StreamKey::from),
            idempotent: false,
            resumable: false,
        })
    }

    fn decode(&mut self, frame: DataFrame, _phase: Phase) -> Decoded<Self> {
        let DataFrame::Text(t) = frame else {
            return Decoded::Ignore;
        };
        let s = t.as_str();
        let stream = |key: &str, state| {
            Decoded::Stream(StreamFrame {
                key: key.into(),
                seq: None,
                state,
                text: None,
                text_mode: TextMode::Incremental,
                payload: s.to_owned(),
            })
        };
        if s == "boom" {
            panic!("a protocol bug");
        } else if let Some(rest) = s.strip_prefix("delta ") {
            // `delta KEY [padding]`
            stream(rest.split(' ').next().unwrap_or(rest), StreamState::Delta)
        } else if let Some(key) = s.strip_prefix("final ") {
            stream(key, StreamState::Final)
        } else if let Some(id) = s.strip_prefix("res ") {
            Decoded::Response {
                id: id
                    .parse::<u64>()
                    .map(RequestId::from_raw)
                    .map_err(|_| id.to_owned()),
                result: Ok(s.to_owned()),
            }
        } else {
            Decoded::Message(s.to_owned())
        }
    }
}

/// Drives `f` to completion on `rt` (bounded): the future and the loop take turns.
fn finish<F: Future + Unpin>(rt: &Manual, mut f: F) -> F::Output {
    let mut cx = Context::from_waker(noop_waker_ref());
    for _ in 0..16 {
        if let Poll::Ready(out) = Pin::new(&mut f).poll(&mut cx) {
            return out;
        }
        rt.run_dropping_panics();
    }
    panic!("the future did not complete");
}

fn start(rt: &Manual, peer: &Peer, config: Config) -> Client<T> {
    let client = Client::start(rt.clone(), peer.clone(), config, T, 1, "test").unwrap();
    rt.run_dropping_panics();
    client
}

/// [`start`] with a subscriber byte budget of `bytes`.
fn start_with_budget(rt: &Manual, peer: &Peer, bytes: usize) -> Client<T> {
    let options = crate::record::Options::new().subscriber_bytes(bytes);
    let client = Client::start_with(
        rt.clone(),
        peer.clone(),
        Config::default(),
        T,
        1,
        "test",
        options,
    )
    .unwrap();
    rt.run_dropping_panics();
    client
}

/// Everything a subscription holds right now, without waiting.
fn take_ready<S: futures::Stream + Unpin>(s: &mut S) -> Vec<S::Item> {
    let mut got = Vec::new();
    while let Some(Some(item)) = s.next().now_or_never() {
        got.push(item);
    }
    got
}

fn mailbox_len<P: Protocol>(client: &Client<P>) -> usize {
    lock(&client.shared.events)
        .iter()
        .map(|m| m.len())
        .max()
        .unwrap_or(0)
}

// ---- the tests ---------------------------------------------------------------------------

/// M1: 5,000 requests that all time out, with an `events()` subscription nobody polls.
/// The mailbox never holds more than its capacity plus one round of commands: the loop
/// stops taking requests while the responses it owes would not fit. Once the subscriber
/// reads, every request resolves and nothing is lost.
#[test]
fn an_unpolled_subscriber_bounds_every_event_kind() {
    const REQUESTS: usize = 5_000;
    let rt = Manual::new();
    let peer = Peer::default();
    let config = Config::builder()
        .max_in_flight_requests(REQUESTS)
        .build()
        .unwrap();
    let client = start(&rt, &peer, config);
    assert_eq!(client.status(), Status::Open);
    let mut events = client.events();
    let done = Arc::new(AtomicUsize::new(0));
    for _ in 0..REQUESTS {
        let (c, done) = (client.clone(), done.clone());
        rt.spawn(Box::pin(async move {
            let r = c
                .request_with_timeout(None, Duration::from_millis(100))
                .await;
            assert_eq!(r, Err(CallError::Failed(RequestFailure::Timeout)));
            done.fetch_add(1, Ordering::Relaxed);
        }));
    }
    let bound = SUBSCRIBER_CAPACITY + crate::task::CMD_BUDGET;
    let mut max_held = 0;
    for _ in 0..20 {
        rt.run_dropping_panics();
        rt.advance(Duration::from_millis(100));
        rt.run_dropping_panics();
        max_held = max_held.max(mailbox_len(&client));
    }
    assert!(
        max_held <= bound,
        "an unpolled subscriber holds {max_held} events (bound {bound})"
    );
    assert!(
        done.load(Ordering::Relaxed) < REQUESTS,
        "the loop held requests back"
    );
    // Reading releases the rest; every request resolves exactly once.
    let mut responses = 0;
    for _ in 0..1_000 {
        responses += take_ready(&mut events)
            .iter()
            .filter(|e| matches!(e, Event::Response { .. }))
            .count();
        if done.load(Ordering::Relaxed) == REQUESTS && responses == REQUESTS {
            break;
        }
        rt.run_dropping_panics();
        rt.advance(Duration::from_millis(100));
        rt.run_dropping_panics();
        max_held = max_held.max(mailbox_len(&client));
    }
    assert_eq!(done.load(Ordering::Relaxed), REQUESTS);
    assert_eq!(responses, REQUESTS);
    assert!(max_held <= bound, "{max_held} > {bound}");
}

/// L5: a `status_changes()` subscriber that reads nothing while the peer flaps (a
/// session left alone would make thousands of changes) misses no change: the loop waits
/// for it once it is `SUBSCRIBER_CAPACITY` behind, and every change of every connection
/// reaches it, in order, over 1,100 of them.
#[test]
fn a_status_subscriber_far_behind_misses_no_change() {
    let rt = Manual::new();
    let peer = Peer {
        drop_at_once: true,
        ..Peer::default()
    };
    let config = Config::builder()
        .backoff_schedule(vec![Duration::from_millis(10)])
        .jitter(tether_core::Jitter::None)
        .build()
        .unwrap();
    let client = Client::start(rt.clone(), peer.clone(), config, T, 1, "test").unwrap();
    let mut statuses = client.status_changes();
    let mut seen = Vec::new();
    // Every 10 ms a connection opens and drops: two changes. Read only twice.
    for round in 0..3_000 {
        rt.advance(Duration::from_millis(10));
        rt.run_dropping_panics();
        if round == 1_499 {
            let got = take_ready(&mut statuses);
            assert!(got.len() >= SUBSCRIBER_CAPACITY, "{} behind", got.len());
            seen.extend(got);
        }
    }
    seen.extend(take_ready(&mut statuses));
    let connects = peer.connects.load(Ordering::Relaxed);
    assert!(seen.len() > 1_100, "{}", seen.len());
    // Connecting, then Open and Reconnecting for every connection: nothing skipped.
    assert_eq!(seen.len(), 1 + 2 * connects, "{connects} connections");
    assert_eq!(seen[0], Status::Connecting);
    for pair in seen[1..].chunks(2) {
        assert_eq!(pair, [Status::Open, Status::Reconnecting]);
    }
}

/// L6 / D1: the session loop panics (here in the protocol's `decode`). The handles see
/// `Failed`, subscribers get `Ended(Failed(Stopped))` and then their streams end, and a
/// later call says `Stopped`.
#[test]
fn a_panicking_loop_leaves_the_handles_failed_with_an_ended_event() {
    let rt = Manual::new();
    let peer = Peer::default();
    let client = start(&rt, &peer, Config::default());
    let mut events = client.events();
    let mut statuses = client.status_changes();
    assert_eq!(client.status(), Status::Open);
    peer.say("boom");
    rt.run_dropping_panics();
    assert_eq!(rt.tasks(), 0, "the loop is gone");
    assert_eq!(client.status(), Status::Failed);
    let got = take_ready(&mut events);
    assert!(
        matches!(
            got.last(),
            Some(Event::Ended(EndReason::Failed(SessionError::Stopped)))
        ),
        "{got:?}"
    );
    assert_eq!(events.next().now_or_never(), Some(None), "then it ends");
    assert_eq!(take_ready(&mut statuses), [Status::Failed]);
    assert_eq!(statuses.next().now_or_never(), Some(None));
    let r = client.request(None).now_or_never();
    assert_eq!(r, Some(Err(CallError::Stopped)));
}

/// A session that ended normally reports nothing more when its loop goes.
#[test]
fn a_loop_that_ends_normally_adds_no_failure() {
    let rt = Manual::new();
    let peer = Peer::default();
    let client = start(&rt, &peer, Config::default());
    let mut events = client.events();
    client.terminate();
    rt.run_dropping_panics();
    drop(client);
    rt.run_dropping_panics();
    let got = take_ready(&mut events);
    let ended: Vec<_> = got
        .iter()
        .filter(|e| matches!(e, Event::Ended(_)))
        .collect();
    assert_eq!(ended, [&Event::Ended(EndReason::ClosedByUser)], "{got:?}");
}

/// Friction 2: `stream()` with a request that starts no stream: its events end at once,
/// and the response still arrives.
#[test]
fn a_stream_call_without_a_stream_does_not_hang() {
    let rt = Manual::new();
    let peer = Peer::default();
    let client = start(&rt, &peer, Config::default());
    let mut call = finish(&rt, Box::pin(client.stream(None, None))).expect("accepted");
    rt.run_dropping_panics();
    assert_eq!(call.events.next().now_or_never(), Some(None), "no stream");
    peer.say(&format!("res {}", call.id.get()));
    rt.run_dropping_panics();
    let r = call.response().now_or_never();
    assert_eq!(r, Some(Ok(format!("res {}", call.id.get()))));
}

/// A stream call whose stream ends (here with the session closing) ends its events too.
#[test]
fn a_stream_call_ends_when_the_session_closes() {
    let rt = Manual::new();
    let peer = Peer::default();
    let client = start(&rt, &peer, Config::default());
    let mut call = finish(&rt, Box::pin(client.stream(Some("s"), None))).expect("accepted");
    peer.say("delta s");
    rt.run_dropping_panics();
    client.terminate();
    rt.run_dropping_panics();
    let got = take_ready(&mut call.events);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(
        got[1].kind,
        StreamEventKind::Ended(StreamEnd::SessionEnded),
        "{got:?}"
    );
    assert_eq!(call.events.next().now_or_never(), Some(None));
}

/// L4: a stream consumer `STREAM_CAPACITY` events behind gets a final `Ended(Lagged)`
/// instead of a channel that just ends.
#[test]
fn a_lagging_stream_consumer_gets_a_final_lagged_event() {
    let rt = Manual::new();
    let peer = Peer::default();
    let client = start(&rt, &peer, Config::default());
    let mut call = finish(&rt, Box::pin(client.stream(Some("s"), None))).expect("accepted");
    for _ in 0..STREAM_CAPACITY + 10 {
        peer.say("delta s");
    }
    peer.say("final s");
    rt.run_dropping_panics();
    let got = take_ready(&mut call.events);
    assert_eq!(
        call.events.next().now_or_never(),
        Some(None),
        "then it ends"
    );
    let last = got.last().expect("events");
    assert_eq!(last.kind, StreamEventKind::Ended(StreamEnd::Lagged));
    assert_eq!(last.request, Some(call.id));
    let deltas = got
        .iter()
        .filter(|e| matches!(e.kind, StreamEventKind::Delta { .. }))
        .count();
    assert!(deltas >= STREAM_CAPACITY, "{deltas}");
    assert_eq!(
        got.iter().filter(|e| e.kind.is_terminal()).count(),
        1,
        "exactly one terminal"
    );
}

/// Reliability review U3: a stream consumer is bounded in bytes as well as in events.
/// 64 deltas of 64 KiB to a stream nobody reads, with a 256 KiB budget: the consumer
/// holds the deltas that fit (each charged with its frame), then `Ended(Lagged)`, and its
/// events end; the session goes on.
#[test]
fn a_stream_consumer_is_bounded_in_bytes() {
    const PAD: usize = 64 << 10;
    const BUDGET: usize = 256 << 10;
    let rt = Manual::new();
    let peer = Peer::default();
    let client = start_with_budget(&rt, &peer, BUDGET);
    let mut call = finish(&rt, Box::pin(client.stream(Some("s"), None))).expect("accepted");
    let frame = format!("delta s {}", "x".repeat(PAD));
    for _ in 0..64 {
        peer.say(&frame);
    }
    rt.run_dropping_panics();
    let got = take_ready(&mut call.events);
    let deltas = got
        .iter()
        .filter(|e| matches!(e.kind, StreamEventKind::Delta { .. }))
        .count();
    assert_eq!(deltas, BUDGET / frame.len(), "what fits the budget");
    assert_eq!(got.len(), deltas + 1, "{got:?}");
    assert_eq!(
        got.last().map(|e| &e.kind),
        Some(&StreamEventKind::Ended(StreamEnd::Lagged))
    );
    assert_eq!(
        call.events.next().now_or_never(),
        Some(None),
        "then it ends"
    );
    assert_eq!(client.status(), Status::Open, "the session goes on");
}

/// B2: several tasks waiting for the session to open at once all get the outcome, on
/// success and on failure.
#[test]
fn every_concurrent_wait_open_gets_the_outcome() {
    for refuse in [false, true] {
        let rt = Manual::new();
        let gate = Gated {
            open: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            refuse,
        };
        let client =
            Client::start(rt.clone(), gate.clone(), Config::default(), T, 1, "test").unwrap();
        let answered = Arc::new(AtomicUsize::new(0));
        for _ in 0..5 {
            let (c, answered) = (client.clone(), answered.clone());
            rt.spawn(Box::pin(async move {
                let r = c.wait_open().await;
                if refuse {
                    assert!(
                        matches!(r, Err(EndReason::Failed(SessionError::FirstConnect(_)))),
                        "{r:?}"
                    );
                } else {
                    assert_eq!(r, Ok(()));
                }
                answered.fetch_add(1, Ordering::Relaxed);
            }));
        }
        // Every waiter is registered while the connect is still under way.
        rt.run_dropping_panics();
        assert_eq!(answered.load(Ordering::Relaxed), 0);
        gate.open.store(true, Ordering::Relaxed);
        rt.run_dropping_panics();
        assert_eq!(answered.load(Ordering::Relaxed), 5, "refuse={refuse}");
    }
}

/// A transport whose connect completes once `open` is set: refused, or as a silent peer.
#[derive(Clone)]
struct Gated {
    open: Arc<std::sync::atomic::AtomicBool>,
    refuse: bool,
}

#[async_trait::async_trait]
impl Transport for Gated {
    async fn connect(&self, conn: ConnId) -> Result<Link, TransportFailure> {
        let open = self.open.clone();
        futures::future::poll_fn(move |_| {
            if open.load(Ordering::Relaxed) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
        if self.refuse {
            return Err(TransportFailure::Refused);
        }
        Peer::default().connect(conn).await
    }
}

/// B4: `idle()` reports the time since the last activity, not zero.
#[test]
fn idle_reports_the_time_since_the_last_activity() {
    let rt = Manual::new();
    let peer = Peer::default();
    let client = start(&rt, &peer, Config::default());
    rt.advance(Duration::from_secs(7));
    assert_eq!(client.idle(), Duration::from_secs(7));
    peer.say("hello");
    rt.run_dropping_panics();
    rt.advance(Duration::from_secs(2));
    assert_eq!(
        client.idle(),
        Duration::from_secs(2),
        "a message is activity"
    );
}

/// Brief E / reliability review U3: 64 messages of 1 MiB to an `events()` subscriber
/// nobody polls. The count (1,024) would let the loop read them all (64 MiB held); the
/// byte budget stops reading once the unread events stand for `SUBSCRIBER_BYTES` of
/// frames (plus the one frame that crossed it). Once the subscriber reads, the rest
/// arrives, in order, none lost.
#[test]
fn an_unpolled_subscriber_holds_reading_back_by_bytes() {
    const SIZE: usize = 1 << 20;
    const SENT: usize = 64;
    let rt = Manual::new();
    let peer = Peer::default();
    let client = start(&rt, &peer, Config::default());
    assert_eq!(client.status(), Status::Open);
    let mut events = client.events();
    for i in 0..SENT {
        let mut text = format!("{i:04}");
        text.extend(std::iter::repeat_n('x', SIZE - 4));
        peer.say(&text);
    }
    let bytes = || {
        lock(&client.shared.events)
            .iter()
            .map(|m| m.bytes())
            .max()
            .unwrap_or(0)
    };
    let bound = SUBSCRIBER_BYTES + SIZE;
    for _ in 0..4 {
        rt.run_dropping_panics();
        assert!(bytes() <= bound, "{} bytes held (bound {bound})", bytes());
    }
    assert!(
        mailbox_len(&client) < SENT,
        "reading was held back: {} events queued",
        mailbox_len(&client)
    );
    let mut seen = Vec::new();
    for _ in 0..1_000 {
        for event in take_ready(&mut events) {
            if let Event::Message(m) = event {
                seen.push(m[..4].parse::<usize>().unwrap());
            }
        }
        if seen.len() == SENT {
            break;
        }
        rt.run_dropping_panics();
        assert!(bytes() <= bound, "{} bytes held (bound {bound})", bytes());
    }
    assert_eq!(seen, (0..SENT).collect::<Vec<_>>());
}

/// The subscriber byte budget is the session's to set (`Options::subscriber_bytes`): 64
/// messages of 64 KiB to an unpolled subscriber with a 256 KiB budget hold at most the
/// budget plus one frame, and all arrive once it reads.
#[test]
fn the_subscriber_byte_budget_is_configurable() {
    const SIZE: usize = 64 << 10;
    const SENT: usize = 64;
    const BUDGET: usize = 256 << 10;
    let rt = Manual::new();
    let peer = Peer::default();
    let client = start_with_budget(&rt, &peer, BUDGET);
    let mut events = client.events();
    for i in 0..SENT {
        let mut text = format!("{i:04}");
        text.extend(std::iter::repeat_n('x', SIZE - 4));
        peer.say(&text);
    }
    let bytes = || {
        lock(&client.shared.events)
            .iter()
            .map(|m| m.bytes())
            .max()
            .unwrap_or(0)
    };
    let bound = BUDGET + SIZE;
    let mut seen = Vec::new();
    for round in 0..1_000 {
        rt.run_dropping_panics();
        assert!(bytes() <= bound, "{} bytes held (bound {bound})", bytes());
        if round < 4 {
            // Nobody reads yet: reading is held back well below the 4 MiB sent.
            continue;
        }
        for event in take_ready(&mut events) {
            if let Event::Message(m) = event {
                seen.push(m[..4].parse::<usize>().unwrap());
            }
        }
        if seen.len() == SENT {
            break;
        }
    }
    assert_eq!(seen, (0..SENT).collect::<Vec<_>>());
}

// ---- connections on the application's terms ----------------------------------------------

impl Peer {
    fn connects(&self) -> usize {
        self.connects.load(Ordering::Relaxed)
    }

    fn written(&self) -> Vec<String> {
        lock(&self.written).clone()
    }
}

/// Row 29 through the driver: the idle timeout closes an unused session (1000 "idle"),
/// and a reconnect in between does not count as activity.
#[test]
fn the_idle_timeout_closes_an_unused_session_through_the_driver() {
    let rt = Manual::new();
    let peer = Peer::default();
    let config = Config::builder()
        .idle_timeout(Some(Duration::from_secs(60)))
        .ping_interval(None)
        .build()
        .unwrap();
    let client = start(&rt, &peer, config);
    let mut events = client.events();
    assert_eq!(client.status(), Status::Open);
    rt.advance(Duration::from_secs(30));
    client.reconnect();
    rt.run_dropping_panics();
    assert_eq!(peer.connects(), 2, "reconnected");
    assert_eq!(client.status(), Status::Open);
    assert_eq!(
        client.idle(),
        Duration::from_secs(30),
        "the reconnect is not activity"
    );
    rt.advance(Duration::from_secs(30));
    rt.run_dropping_panics();
    assert_eq!(client.status(), Status::Closed);
    assert!(peer.written().contains(&"close 1000 idle".to_owned()));
    let got = take_ready(&mut events);
    assert!(
        got.iter()
            .any(|e| matches!(e, Event::Ended(EndReason::Idle))),
        "{got:?}"
    );
}

/// Item 3 through the driver: a lazy client's `connect` returns at once without dialling;
/// the first send dials and is written once open; after the idle timeout the session
/// sleeps (status `Idle`, not ended) and the next send wakes it.
#[test]
fn a_lazy_client_connects_on_first_use_and_sleeps_when_idle() {
    let rt = Manual::new();
    let peer = Peer::default();
    let config = Config::builder()
        .lazy(true)
        .idle_timeout(Some(Duration::from_secs(60)))
        .ping_interval(None)
        .build()
        .unwrap();
    let connect = Client::connect(rt.clone(), peer.clone(), config, T, 1);
    let client = finish(&rt, Box::pin(connect)).expect("returns at once");
    rt.run_dropping_panics();
    assert_eq!(peer.connects(), 0, "no dial before first use");
    assert_eq!(client.status(), Status::Idle);
    assert_eq!(
        finish(&rt, Box::pin(client.send("one".into()))),
        Ok(MessageId::from_raw(0))
    );
    rt.run_dropping_panics();
    assert_eq!(peer.connects(), 1);
    assert_eq!(client.status(), Status::Open);
    assert_eq!(peer.written(), ["one"]);
    rt.advance(Duration::from_secs(60));
    rt.run_dropping_panics();
    assert_eq!(client.status(), Status::Idle, "asleep, not ended");
    assert_eq!(peer.written(), ["one", "close 1000 idle"]);
    rt.advance(Duration::from_secs(3600));
    rt.run_dropping_panics();
    assert_eq!(peer.connects(), 1, "asleep until used");
    let _ = finish(&rt, Box::pin(client.send("two".into())));
    rt.run_dropping_panics();
    assert_eq!(peer.connects(), 2);
    assert_eq!(client.status(), Status::Open);
    assert_eq!(peer.written(), ["one", "close 1000 idle", "two"]);
}

/// Item 5 and row 27 through the driver: `disconnect` pauses (1000 "paused", status
/// `Idle`, no redial), sends are queued and `queued()` counts them, `resume` dials at once
/// and flushes them; `reconnect` dials at once without a backoff.
#[test]
fn disconnect_resume_and_reconnect_through_the_driver() {
    let rt = Manual::new();
    let peer = Peer::default();
    let client = start(&rt, &peer, Config::default());
    assert_eq!(client.status(), Status::Open);
    client.disconnect();
    rt.run_dropping_panics();
    assert_eq!(client.status(), Status::Idle);
    assert_eq!(peer.written(), ["close 1000 paused"]);
    for m in ["a", "b", "c"] {
        finish(&rt, Box::pin(client.send(m.into()))).unwrap();
    }
    rt.advance(Duration::from_secs(30));
    rt.run_dropping_panics();
    assert_eq!(peer.connects(), 1, "paused: no redial");
    assert_eq!(client.queued(), 3);
    client.resume();
    rt.run_dropping_panics();
    assert_eq!(peer.connects(), 2, "resume dials at once");
    assert_eq!(client.status(), Status::Open);
    assert_eq!(client.queued(), 0);
    assert_eq!(peer.written(), ["close 1000 paused", "a", "b", "c"]);
    client.reconnect();
    rt.run_dropping_panics();
    assert_eq!(peer.connects(), 3, "reconnect dials at once");
    assert_eq!(client.status(), Status::Open);
    assert_eq!(
        peer.written().last().map(String::as_str),
        Some("close 1000 reconnect")
    );
}

/// Row 6: `wait_open` callers that gave up (their futures dropped) are pruned, so a caller
/// retrying `wait_open` with a timeout while the session cannot open holds a bounded list.
#[test]
fn dropped_wait_open_callers_are_pruned() {
    let rt = Manual::new();
    let session = Session::new(Config::default(), T, 1).unwrap();
    let (_cmds_tx, cmds_rx) = crate::cmd_channel::bounded(CMD_CAPACITY);
    let (_control_tx, control_rx) = mpsc::unbounded();
    let now_rt = rt.clone();
    let shared = Arc::new(Shared::new(
        Box::new(move || now_rt.now()),
        SUBSCRIBER_BYTES,
    ));
    let gate = Gated {
        open: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        refuse: false,
    };
    let mut driver = Driver::new(
        session,
        crate::record::Options::default(),
        1,
        rt.clone(),
        Arc::new(gate),
        shared,
        crate::task::Front::Handles {
            cmds: cmds_rx,
            control: control_rx,
        },
    );
    let mut live = Vec::new();
    for i in 0..10_000 {
        let (tx, rx) = oneshot::channel();
        driver.control(Control::WaitOpen(tx));
        // Every hundredth caller keeps waiting; the others give up.
        if i % 100 == 0 {
            live.push(rx);
        }
    }
    assert!(
        driver.open_waiters() <= 2 * live.len() + 16,
        "{} waiters held for {} live callers",
        driver.open_waiters(),
        live.len()
    );
}
