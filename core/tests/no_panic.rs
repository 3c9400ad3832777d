//! Property: arbitrary sequences of inputs, commands and time never panic, keep every
//! table within its bound, and leave no request unresolved after close. The boundary
//! properties below draw every config field, every number a HelloAck or Gateway peer
//! sends, request timeouts and time steps from boundary values up to `Duration::MAX` and
//! `u64::MAX`.

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

// ---- boundary values: every config field, every number a peer sends, any time ----------

use serde_json::{Value, json};
use tether_core::profiles::{Gateway, GatewayOptions, GatewayRequest, HelloAck, HelloAckRequest};
use tether_core::{MAX_DURATION, Protocol};

/// Durations at and around every edge: zero, the smallest, ordinary values, the ceiling
/// and just past it, and the largest a `Duration` holds.
fn boundary_duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::from_nanos(1)),
        Just(Duration::from_millis(1)),
        (1u64..120_000).prop_map(Duration::from_millis),
        Just(MAX_DURATION),
        Just(MAX_DURATION + Duration::from_nanos(1)),
        Just(Duration::from_secs(u64::MAX)),
        Just(Duration::MAX),
        any::<u64>().prop_map(Duration::from_millis),
        any::<u64>().prop_map(Duration::from_nanos),
    ]
}

fn boundary_usize() -> impl Strategy<Value = usize> {
    prop_oneof![
        Just(0),
        Just(1),
        Just(2),
        3usize..64,
        Just(usize::MAX - 1),
        Just(usize::MAX)
    ]
}

fn boundary_u64() -> impl Strategy<Value = u64> {
    prop_oneof![
        1 => Just(0),
        1 => Just(1),
        2 => 0u64..8,
        1 => Just(u64::MAX - 1),
        3 => Just(u64::MAX),
        1 => Just(i64::MAX as u64),
        2 => any::<u64>(),
    ]
}

/// A JSON value where a peer should send a non-negative integer: boundary integers, and
/// the shapes a hostile peer may send instead.
fn boundary_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => boundary_u64().prop_map(Value::from),
        1 => Just(json!(-1)),
        1 => Just(json!(i64::MIN)),
        1 => Just(json!(1.5)),
        1 => Just(json!(1e300)),
        1 => Just(json!("12")),
        1 => Just(Value::Null),
    ]
}

fn boundary_string() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("0".to_owned()),
        Just("0".to_owned()),
        Just("k0".to_owned()),
        Just("1".to_owned()),
        Just("k".to_owned()),
        Just("t0".to_owned()),
        Just("\u{0}\u{fffd}é".to_owned()),
        "[a-z0-9]{0,6}",
    ]
}

/// Every field of a `Config`: half the time its default, otherwise a boundary value.
#[derive(Debug, Clone)]
struct Fields {
    durations: Vec<Option<Duration>>,
    counts: Vec<Option<usize>>,
    factor: Option<u32>,
    max_attempts: Option<Option<u32>>,
    optional_off: Vec<bool>,
}

fn fields() -> impl Strategy<Value = Fields> {
    (
        proptest::collection::vec(proptest::option::weighted(0.05, boundary_duration()), 22),
        proptest::collection::vec(proptest::option::weighted(0.05, boundary_usize()), 7),
        proptest::option::weighted(
            0.1,
            prop_oneof![
                Just(0u32),
                Just(1),
                Just(2),
                Just(1000),
                Just(1001),
                Just(u32::MAX)
            ],
        ),
        proptest::option::weighted(
            0.1,
            proptest::option::of(prop_oneof![Just(0u32), Just(1), Just(u32::MAX)]),
        ),
        proptest::collection::vec(any::<bool>(), 4),
    )
        .prop_map(
            |(durations, counts, factor, max_attempts, optional_off)| Fields {
                durations,
                counts,
                factor,
                max_attempts,
                optional_off,
            },
        )
}

fn build_config(f: &Fields) -> Config {
    let mut c = Config::builder().retry_first_connect(true).build().unwrap();
    let d = |i: usize, default: Duration| f.durations[i].unwrap_or(default);
    let n = |i: usize, default: usize| f.counts[i].unwrap_or(default);
    c.connect_timeout = d(0, c.connect_timeout);
    c.handshake_timeout = d(1, c.handshake_timeout);
    c.send_deadline = d(2, c.send_deadline);
    c.slow_write_warning = d(3, c.slow_write_warning);
    c.request_timeout = d(4, c.request_timeout);
    c.close_timeout = d(5, c.close_timeout);
    c.idle_timeout = f.durations[6].filter(|_| !f.optional_off[0]);
    c.liveness.ping_interval = if f.optional_off[1] {
        None
    } else {
        Some(d(7, Duration::from_secs(30)))
    };
    c.liveness.stale_after = d(8, c.liveness.stale_after);
    c.liveness.clock_jump_threshold = d(9, c.liveness.clock_jump_threshold);
    c.liveness.probe_timeout = d(10, c.liveness.probe_timeout);
    c.liveness.max_heartbeat = d(11, c.liveness.max_heartbeat);
    c.liveness.heartbeat_stale_factor = f.factor.unwrap_or(2);
    c.backoff.schedule = vec![
        d(12, Duration::from_secs(1)),
        d(13, Duration::from_secs(30)),
    ];
    c.backoff.stable_after = d(14, c.backoff.stable_after);
    c.backoff.max_floor = d(15, c.backoff.max_floor);
    if let Some(m) = f.max_attempts {
        c.backoff.max_attempts = m;
    }
    c.streams.dedup_ttl = d(16, c.streams.dedup_ttl);
    c.streams.completed_cooldown = d(17, c.streams.completed_cooldown);
    c.streams.idle_timeout = f.durations[18].filter(|_| !f.optional_off[2]);
    c.streams.max_streams = n(0, c.streams.max_streams);
    c.streams.max_seen = n(1, c.streams.max_seen);
    c.max_pending_writes = n(2, c.max_pending_writes);
    c.max_in_flight_requests = n(3, c.max_in_flight_requests);
    c.max_inbound_frame = n(4, c.max_inbound_frame);
    c.offline = if f.optional_off[3] {
        OfflinePolicy::Reject
    } else {
        OfflinePolicy::Queue(QueueConfig {
            max_messages: n(5, 16),
            max_bytes: n(6, 1 << 20),
            ttl: f.durations[19],
            ..QueueConfig::default()
        })
    };
    c
}

/// What a peer sends, as JSON templates with boundary numbers and strings filled in.
#[derive(Debug, Clone)]
enum Peer {
    HelloAck(Value),
    HelloError(Value, bool),
    Response(Value, bool),
    Event(String, Value, u8, String),
    Tick(Value),
    Challenge,
    HelloOk(Value),
    Refused(Value, bool),
    GatewayRes(Value),
    Chat(String, Value, u8, String),
    Garbage(String),
}

/// A stream key: mostly that of the first request (HelloAck keys streams by request
/// id), so that events reach an open stream.
fn stream_key() -> impl Strategy<Value = String> {
    prop_oneof![3 => Just("0".to_owned()), 1 => Just("k0".to_owned()), 1 => boundary_string()]
}

fn peer() -> impl Strategy<Value = Peer> {
    let event = || {
        (
            stream_key(),
            boundary_number(),
            any::<u8>(),
            boundary_string(),
        )
    };
    prop_oneof![
        1 => boundary_number().prop_map(Peer::HelloAck),
        1 => (boundary_number(), any::<bool>()).prop_map(|(n, f)| Peer::HelloError(n, f)),
        1 => (boundary_number(), any::<bool>()).prop_map(|(n, ok)| Peer::Response(n, ok)),
        3 => event().prop_map(|(k, s, st, t)| Peer::Event(k, s, st, t)),
        1 => boundary_number().prop_map(Peer::Tick),
        1 => Just(Peer::Challenge),
        1 => boundary_number().prop_map(Peer::HelloOk),
        1 => (boundary_number(), any::<bool>()).prop_map(|(n, r)| Peer::Refused(n, r)),
        1 => boundary_number().prop_map(Peer::GatewayRes),
        3 => event().prop_map(|(k, s, st, t)| Peer::Chat(k, s, st, t)),
        1 => "\\PC{0,12}".prop_map(Peer::Garbage),
    ]
}

const STATES: &[&str] = &[
    "delta", "final", "error", "aborted", "status", "started", "",
];

impl Peer {
    /// The frame's text; `connect_id` is the id of the last `connect` the session sent.
    fn text(&self, connect_id: &Value) -> String {
        let state = |s: &u8| STATES[usize::from(*s) % STATES.len()];
        match self {
            Peer::HelloAck(n) => json!({ "type": "hello_ack", "heartbeatMs": n }),
            Peer::HelloError(n, fatal) => {
                json!({ "type": "hello_error", "message": "m", "fatal": fatal, "retryAfterMs": n })
            }
            Peer::Response(id, true) => json!({ "type": "response", "id": id, "result": id }),
            Peer::Response(id, false) => json!({ "type": "response", "id": id, "error": "e" }),
            Peer::Event(key, seq, s, text) => {
                json!({ "type": "event", "stream": key, "seq": seq, "state": state(s), "text": text })
            }
            Peer::Tick(seq) => json!({ "type": "event", "event": "tick", "seq": seq }),
            Peer::Challenge => json!({
                "type": "event", "event": "connect.challenge", "payload": { "nonce": "n", "ts": 1 },
            }),
            Peer::HelloOk(tick) => json!({
                "type": "res", "id": connect_id, "ok": true,
                "payload": { "type": "hello-ok", "protocol": 4, "policy": { "tickIntervalMs": tick } },
            }),
            Peer::Refused(after, retryable) => json!({
                "type": "res", "id": connect_id, "ok": false,
                "error": { "code": "X", "message": "m", "retryable": retryable, "retryAfterMs": after },
            }),
            Peer::GatewayRes(n) => {
                let id = n.as_u64().map_or_else(|| n.to_string(), |n| format!("t{n}"));
                json!({ "type": "res", "id": id, "ok": true, "payload": { "runId": "r", "status": "started" } })
            }
            Peer::Chat(run, seq, s, text) => json!({
                "type": "event", "event": "chat", "seq": seq,
                "payload": { "runId": run, "seq": seq, "state": state(s), "deltaText": text },
            }),
            Peer::Garbage(s) => return s.clone(),
        }
        .to_string()
    }
}

#[derive(Debug, Clone)]
enum JStep {
    /// Let time pass; the harness goes as far as the clock can represent.
    Advance(Duration),
    Fire,
    Connect,
    Send,
    Request(u8, Option<Duration>),
    Close,
    Terminate,
    Opened,
    Failed(u16, Option<Duration>),
    Frame(Peer),
    Closed(Option<u16>),
    WriteAll,
}

fn jstep() -> impl Strategy<Value = JStep> {
    prop_oneof![
        1 => boundary_duration().prop_map(JStep::Advance),
        1 => Just(JStep::Fire),
        1 => Just(JStep::Connect),
        1 => Just(JStep::Send),
        1 => (any::<u8>(), proptest::option::of(boundary_duration())).prop_map(|(k, t)| JStep::Request(k, t)),
        1 => Just(JStep::Close),
        1 => Just(JStep::Terminate),
        1 => Just(JStep::Opened),
        1 => (prop_oneof![Just(429u16), Just(503), Just(401), 100u16..600], proptest::option::of(boundary_duration()))
            .prop_map(|(s, r)| JStep::Failed(s, r)),
        8 => peer().prop_map(JStep::Frame),
        1 => proptest::option::of(prop_oneof![Just(1000u16), Just(1013), Just(4000), any::<u16>()]).prop_map(JStep::Closed),
        1 => Just(JStep::WriteAll),
    ]
}

/// `now + d`, or as far towards it as the clock can represent.
fn later(now: std::time::Instant, d: Duration) -> std::time::Instant {
    let mut d = d;
    loop {
        if let Some(t) = now.checked_add(d) {
            return t;
        }
        d /= 2;
    }
}

/// Runs `steps` against a session of `protocol` built from `config` (when valid); every
/// call must return without panicking, and the session must stay consistent.
fn run_boundaries<P: Protocol>(
    config: Config,
    protocol: P,
    prelude: &[JStep],
    steps: Vec<JStep>,
    request: impl Fn(u8) -> P::Request,
    message: impl Fn() -> P::Outbound,
) -> Result<(), TestCaseError> {
    let Ok(mut s) = tether_core::Session::new(config, protocol, 11) else {
        return Ok(());
    };
    #[allow(clippy::disallowed_methods)] // The test's one clock read: an arbitrary epoch.
    let mut now = std::time::Instant::now();
    let mut unwritten: Vec<(ConnId, FrameId)> = Vec::new();
    let mut connect_id = json!("connect-0");
    for step in prelude.iter().cloned().chain(steps) {
        let conn = s.current_conn().unwrap_or(ConnId::from_raw(0));
        match step {
            JStep::Advance(d) => {
                now = later(now, d);
                s.handle_timeout(now);
            }
            JStep::Fire => {
                if let Some(at) = s.poll_timeout() {
                    now = now.max(at);
                    s.handle_timeout(now);
                }
            }
            JStep::Connect => {
                let _ = s.connect(now);
            }
            JStep::Send => {
                let _ = s.send(message(), now);
            }
            JStep::Request(k, timeout) => {
                let _ = s.request(request(k), timeout, now);
            }
            JStep::Close => s.close(CloseCode::NORMAL, "", now),
            JStep::Terminate => s.terminate(now),
            JStep::Opened => s.handle_input(Input::TransportOpened { conn }, now),
            JStep::Failed(status, retry_after) => {
                let failure = TransportFailure::Http {
                    status,
                    retry_after,
                };
                s.handle_input(Input::TransportFailed { conn, failure }, now);
            }
            JStep::Frame(p) => {
                let frame = InFrame::Text(Bytes::from(p.text(&connect_id)));
                s.handle_input(Input::FrameReceived { conn, frame }, now);
            }
            JStep::Closed(code) => s.handle_input(
                Input::TransportClosed {
                    conn,
                    code: code.map(CloseCode),
                    reason: String::new(),
                },
                now,
            ),
            JStep::WriteAll => {
                for (conn, frame) in unwritten.drain(..) {
                    s.handle_input(Input::WriteCompleted { conn, frame }, now);
                }
            }
        }
        while let Some(o) = s.poll_output() {
            if let Output::SendFrame {
                conn,
                frame,
                payload,
            } = o
            {
                unwritten.push((conn, frame));
                if let tether_core::OutFrame::Text(t) = &payload
                    && let Ok(v) = serde_json::from_slice::<Value>(t.as_bytes())
                    && v.get("method").and_then(Value::as_str) == Some("connect")
                    && let Some(id) = v.get("id")
                {
                    connect_id = id.clone();
                }
            }
        }
        if let Some(at) = s.poll_timeout() {
            prop_assert!(
                at >= now || s.status() == Status::Idle,
                "a deadline left in the past"
            );
        }
    }
    s.terminate(now);
    while s.poll_output().is_some() {}
    prop_assert!(s.status().is_terminal());
    prop_assert_eq!(s.pending_requests(), 0);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Every config field drawn from its boundary values (validation may refuse; then
    /// no panic either), HelloAck frames with arbitrary numbers and strings, request
    /// timeouts and time steps up to `Duration::MAX`.
    #[test]
    fn hello_ack_with_boundary_values_never_panics(
        f in fields(),
        open_first in any::<bool>(),
        steps in proptest::collection::vec(jstep(), 1..80),
    ) {
        // Half the runs start open, so that stream and liveness arithmetic is reached.
        let prelude = [
            JStep::Connect,
            JStep::Opened,
            JStep::WriteAll,
            JStep::Frame(Peer::HelloAck(json!(1000))),
            JStep::Request(0, None),
        ];
        let config = build_config(&f);
        let valid = config.validate().is_ok();
        prop_assert_eq!(valid, tether_core::Session::new(config.clone(), HelloAck::new(|| json!({})), 1).is_ok());
        run_boundaries(
            config,
            HelloAck::new(|| json!({ "client": "p" })),
            if open_first { &prelude } else { &[] },
            steps,
            |k| {
                let r = HelloAckRequest::new("m", json!(k));
                if k % 2 == 0 { r.streaming() } else { r }
            },
            || json!({ "type": "msg" }),
        )?;
    }

    /// The same over the Gateway profile: challenges, `hello-ok` with any
    /// `tickIntervalMs`, refusals with any `retryAfterMs`, chat events with any `seq`.
    #[test]
    fn gateway_with_boundary_values_never_panics(
        f in fields(),
        open_first in any::<bool>(),
        steps in proptest::collection::vec(jstep(), 1..80),
    ) {
        let prelude = [
            JStep::Connect,
            JStep::Opened,
            JStep::Frame(Peer::Challenge),
            JStep::WriteAll,
            JStep::Frame(Peer::HelloOk(json!(30_000))),
            JStep::Request(0, None),
        ];
        let config = build_config(&f);
        run_boundaries(
            config,
            Gateway::new(GatewayOptions::default()),
            if open_first { &prelude } else { &[] },
            steps,
            |k| {
                if k % 2 == 0 {
                    GatewayRequest::chat_send_with_key("s", "hi", format!("k{}", k % 3))
                } else {
                    GatewayRequest::new("health", None)
                }
            },
            || json!({ "type": "event", "event": "x" }),
        )?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Stream events on an open stream with any `seq` (`u64::MAX` included) and any
    /// state, in any order: the gap and duplicate arithmetic never overflows (C3).
    #[test]
    fn stream_events_with_any_seq_never_panic(
        events in proptest::collection::vec((proptest::option::of(boundary_u64()), 0u8..5), 1..24),
    ) {
        let config = Config::default();
        let prelude = [
            JStep::Connect,
            JStep::Opened,
            JStep::WriteAll,
            JStep::Frame(Peer::HelloAck(json!(1000))),
            JStep::Request(0, None),
        ];
        let steps: Vec<JStep> = events
            .iter()
            .map(|(seq, state)| {
                let seq = seq.map_or(Value::Null, Value::from);
                JStep::Frame(Peer::Event("0".to_owned(), seq, *state, "t".to_owned()))
            })
            .collect();
        run_boundaries(
            config,
            HelloAck::new(|| json!({ "client": "p" })),
            &prelude,
            steps,
            |_| HelloAckRequest::new("m", json!(null)).streaming(),
            || json!({ "type": "msg" }),
        )?;
    }
}
