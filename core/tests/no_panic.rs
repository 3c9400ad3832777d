//! Property: arbitrary sequences of inputs, commands and time never panic, keep every
//! table within its bound, and leave no request unresolved after close.

mod common;
use bytes::Bytes;
use common::*;
use proptest::prelude::*;
use std::collections::BTreeSet;
use std::time::Duration;
use tether_core::{
    CloseCode, Config, ConnId, Event, FrameId, InFrame, Input, OfflinePolicy, Output, QueueConfig,
    Status, TransportFailure,
};

#[derive(Clone, Debug)]
enum Step {
    Advance(u64),
    Fire,
    Connect,
    Send(u8),
    Request(bool),
    Close,
    Terminate,
    Opened(u8),
    Failed(u8, u16),
    Frame(u8, u8),
    Closed(u8, Option<u16>),
    WriteDone(u8, u8),
    WriteFailed(u8),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0u64..120_000).prop_map(Step::Advance),
        Just(Step::Fire),
        Just(Step::Connect),
        any::<u8>().prop_map(Step::Send),
        any::<bool>().prop_map(Step::Request),
        Just(Step::Close),
        Just(Step::Terminate),
        any::<u8>().prop_map(Step::Opened),
        (any::<u8>(), 100u16..600).prop_map(|(c, s)| Step::Failed(c, s)),
        (any::<u8>(), any::<u8>()).prop_map(|(c, f)| Step::Frame(c, f)),
        (any::<u8>(), proptest::option::of(0u16..5000)).prop_map(|(c, k)| Step::Closed(c, k)),
        (any::<u8>(), any::<u8>()).prop_map(|(c, f)| Step::WriteDone(c, f)),
        any::<u8>().prop_map(Step::WriteFailed),
    ]
}

const FRAMES: &[&[u8]] = &[
    b"ack",
    b"ack hb=1000",
    b"challenge",
    b"reject fatal",
    b"reject retry=500",
    b"res 0 ok a",
    b"res 1 err b",
    b"res 2 ok c",
    b"res x ok d",
    b"ev k 1 delta a",
    b"ev k 1 delta a",
    b"ev k 3 delta abc",
    b"ev k 4 final",
    b"ev k 5 error",
    b"ev j 1 delta z",
    b"tick",
    b"bad",
    b"plain",
    b"\xff\xfe",
    b"",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
    #[test]
    fn arbitrary_steps_never_panic_and_stay_bounded(
        steps in proptest::collection::vec(step(), 1..120),
        seed in any::<u64>(),
        server_first in any::<bool>(),
    ) {
        let cfg = Config::builder()
            .retry_first_connect(true)
            .max_in_flight_requests(8)
            .max_pending_writes(16)
            .offline(OfflinePolicy::Queue(QueueConfig { max_messages: 4, ..QueueConfig::default() }))
            .build()
            .unwrap();
        let mut streams_cfg = cfg.streams.clone();
        streams_cfg.max_streams = 2;
        let cfg = Config { streams: streams_cfg, ..cfg };
        let mut h = H::with(cfg, Lines { server_first, ..Lines::default() }, seed);
        let mut issued = BTreeSet::new();
        let mut frames: Vec<(ConnId, FrameId)> = Vec::new();
        let conn = |h: &H, c: u8| h.s.current_conn().filter(|_| !c.is_multiple_of(4)).unwrap_or(ConnId::from_raw(u64::from(c % 8)));
        for s in steps {
            match s {
                Step::Advance(ms) => { h.advance(Duration::from_millis(ms)); }
                Step::Fire => {
                    if let (Some(at), Some(why)) = (h.s.poll_timeout(), h.s.timeout_reason()) {
                        h.fire_next();
                        // A fired deadline must move: the same (instant, reason) again would
                        // make a driver spin.
                        prop_assert_ne!(Some((at, why)), h.s.poll_timeout().zip(h.s.timeout_reason()));
                    }
                }
                Step::Connect => { let _ = h.s.connect(h.now); }
                Step::Send(n) => { let _ = h.s.send(format!("m{n}"), h.now); }
                Step::Request(stream) => {
                    if let Ok(id) = h.s.request(Req("r", stream.then_some("k")), None, h.now) {
                        issued.insert(id);
                    }
                }
                Step::Close => h.s.close(CloseCode::NORMAL, "", h.now),
                Step::Terminate => h.s.terminate(h.now),
                Step::Opened(c) => { let conn = conn(&h, c); h.s.handle_input(Input::TransportOpened { conn }, h.now); }
                Step::Failed(c, status) => {
                    let conn = conn(&h, c);
                    let failure = if status < 200 { TransportFailure::Refused } else { TransportFailure::Http { status, retry_after: None } };
                    h.s.handle_input(Input::TransportFailed { conn, failure }, h.now);
                }
                Step::Frame(c, f) => {
                    let conn = conn(&h, c);
                    let frame = match f % 24 {
                        20 => InFrame::Binary(Bytes::from_static(b"bin")),
                        21 => InFrame::Ping(Bytes::new()),
                        22 => InFrame::Pong(Bytes::new()),
                        i => InFrame::Text(Bytes::from_static(FRAMES[usize::from(i) % FRAMES.len()])),
                    };
                    h.s.handle_input(Input::FrameReceived { conn, frame }, h.now);
                }
                Step::Closed(c, code) => {
                    let conn = conn(&h, c);
                    h.s.handle_input(Input::TransportClosed { conn, code: code.map(CloseCode), reason: String::new() }, h.now);
                }
                Step::WriteDone(c, f) => {
                    if let Some(&(conn, frame)) = frames.get(usize::from(f) % frames.len().max(1)) {
                        let conn = if c % 8 == 0 { ConnId::from_raw(99) } else { conn };
                        h.s.handle_input(Input::WriteCompleted { conn, frame }, h.now);
                    }
                }
                Step::WriteFailed(c) => {
                    if let Some(&(conn, frame)) = frames.last() {
                        let conn = if c % 2 == 0 { conn } else { ConnId::from_raw(77) };
                        h.s.handle_input(Input::WriteFailed { conn, frame }, h.now);
                    }
                }
            }
            for o in h.drain() {
                if let Output::SendFrame { conn, frame, .. } = o { frames.push((conn, frame)); }
            }
            prop_assert!(h.s.pending_requests() <= 8);
            prop_assert!(h.s.queued() <= 4);
            prop_assert!(h.s.open_streams() <= 2);
            prop_assert!(h.s.pending_writes() <= 16 + 4 + 2, "bounded by the write bound plus a flushed queue and handshake frames");
            prop_assert!(h.s.remembered_events() <= 4096);
            if let Some(t) = h.s.poll_timeout() { prop_assert!(t >= h.now || h.s.status() == Status::Idle); }
        }
        h.s.close(CloseCode::NORMAL, "", h.now);
        h.drain();
        h.advance(Duration::from_secs(10));
        prop_assert!(h.s.is_closed());
        prop_assert_eq!(h.s.poll_timeout(), None);
        prop_assert_eq!(h.s.pending_requests(), 0);
        prop_assert_eq!(h.s.queued(), 0);
        // Every issued request resolved exactly once.
        let mut resolved = BTreeSet::new();
        for e in h.events() {
            if let Event::Response { id, .. } = e {
                prop_assert!(resolved.insert(id), "{id} resolved twice");
            }
        }
        prop_assert_eq!(resolved, issued);
        // Status changes are legal and each reported once.
        let mut prev = Status::Idle;
        for o in &h.log {
            if let Output::StatusChanged { from, to } = o {
                prop_assert_eq!(*from, prev);
                prop_assert!(from.can_become(*to), "{from} -> {to}");
                prev = *to;
            }
        }
    }
}
