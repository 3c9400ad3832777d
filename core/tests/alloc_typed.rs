//! Allocation test for typed payloads: a `HelloAck` message decoded into a small struct
//! of the application's builds no `serde_json::Value` and allocates nothing, where the
//! `Value` path allocates for every field; and the session's own inbound path for JSON
//! profiles allocates no `Value` either (it reads only the envelope).
//!
//! The counting allocator counts only allocations made by a thread that switched
//! counting on (a thread-local flag), as in `alloc.rs`. Allocation counts are
//! deterministic, so the assertions are exact. Nothing here measures time.

mod counting;

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Deserialize;
use tether_core::profiles::{Gateway, GatewayOptions, GatewayRequest, HelloAck, JsonPayload};
use tether_core::{
    Config, ConnId, Event, FrameId, InFrame, Input, OutFrame, Output, Protocol, Session, Status,
};

use counting::counted;

const STEP: Duration = Duration::from_micros(2);

/// `HelloAck` application messages (static: no allocation to build the frame).
const MESSAGES: &[&[u8]] = &[
    br#"{"type":"msg","n":1,"body":"The quick brown fox jumps over the lazy dog, twice."}"#,
    br#"{"type":"msg","n":2,"body":"Pack my box with five dozen liquor jugs, said Ann."}"#,
    br#"{"type":"msg","n":3,"body":"How vexingly quick daft zebras jump over the moon!"}"#,
];

/// Gateway presence events (static).
const PRESENCE: &[&[u8]] = &[
    br#"{"type":"event","event":"presence","payload":{"presence":[{"host":"a1","mode":"cli","ts":1}]},"seq":1}"#,
    br#"{"type":"event","event":"presence","payload":{"presence":[{"host":"b2","mode":"ui","ts":2}]},"seq":2}"#,
];

/// The application's message type: borrows its text from the frame.
#[derive(Deserialize)]
struct Msg<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    n: u32,
    body: &'a str,
}

/// Plays the adapter for an open session; keeps every delivered message.
struct Driver<P: Protocol> {
    session: Session<P>,
    conn: ConnId,
    now: Instant,
    written: Vec<FrameId>,
    messages: Vec<P::Inbound>,
    violations: u64,
    streamed: usize,
    /// The `id` of the last request frame written (read from its JSON).
    last_request_id: Option<String>,
}

impl<P: Protocol> Driver<P> {
    fn start(mut session: Session<P>, t0: Instant) -> Self {
        session.connect(t0).expect("a new session connects");
        let mut conn = None;
        while let Some(out) = session.poll_output() {
            if let Output::OpenTransport { conn: c, .. } = out {
                conn = Some(c);
            }
        }
        let conn = conn.expect("connect asks for a transport");
        let mut d = Driver {
            session,
            conn,
            now: t0,
            written: Vec::with_capacity(16),
            messages: Vec::with_capacity(4_096),
            violations: 0,
            streamed: 0,
            last_request_id: None,
        };
        d.input(Input::TransportOpened { conn });
        d
    }

    fn input(&mut self, input: Input) {
        self.now += STEP;
        self.session.handle_input(input, self.now);
        self.drain();
    }

    /// Carries out what the session queued, reporting every write completed at once.
    fn drain(&mut self) {
        loop {
            while let Some(out) = self.session.poll_output() {
                match out {
                    Output::Event(Event::Message(m)) => self.messages.push(m),
                    Output::Event(Event::Violation { .. }) => self.violations += 1,
                    Output::Event(Event::Stream(ev)) => {
                        self.streamed += 1;
                        black_box(ev);
                    }
                    Output::SendFrame { frame, payload, .. } => {
                        if let OutFrame::Text(t) = &payload
                            && let Ok(v) = serde_json::from_slice::<serde_json::Value>(t.as_bytes())
                            && v["type"] == "req"
                        {
                            self.last_request_id = v["id"].as_str().map(str::to_owned);
                        }
                        self.written.push(frame);
                    }
                    other => {
                        black_box(other);
                    }
                }
            }
            if self.written.is_empty() {
                return;
            }
            for i in 0..self.written.len() {
                let frame = self.written[i];
                let conn = self.conn;
                self.now += STEP;
                self.session
                    .handle_input(Input::WriteCompleted { conn, frame }, self.now);
            }
            self.written.clear();
        }
    }

    fn text(&mut self, payload: Bytes) {
        let conn = self.conn;
        self.input(Input::FrameReceived {
            conn,
            frame: InFrame::Text(payload),
        });
    }

    fn feed(&mut self, frames: &'static [&'static [u8]], n: usize) {
        for i in 0..n {
            self.text(Bytes::from_static(frames[i % frames.len()]));
        }
    }
}

fn hello_ack(t0: Instant) -> Driver<HelloAck> {
    let protocol = HelloAck::new(|| serde_json::json!({ "client": "alloc" }));
    let session = Session::new(Config::default(), protocol, 7).expect("default config is valid");
    let mut d = Driver::start(session, t0);
    d.text(Bytes::from_static(br#"{"type":"hello_ack"}"#));
    assert_eq!(d.session.status(), Status::Open);
    d
}

fn gateway(t0: Instant) -> Driver<Gateway> {
    let session = Session::new(
        Config::default(),
        Gateway::new(GatewayOptions::default()),
        7,
    )
    .expect("default config is valid");
    let mut d = Driver::start(session, t0);
    d.text(Bytes::from_static(
        br#"{"type":"event","event":"connect.challenge","payload":{"nonce":"n"}}"#,
    ));
    // The connect request of the first connection is `connect-<conn>`.
    let ack = format!(
        r#"{{"type":"res","id":"connect-{}","ok":true,"payload":{{"type":"hello-ok"}}}}"#,
        d.conn.get()
    );
    d.text(Bytes::from(ack));
    assert_eq!(d.session.status(), Status::Open);
    d
}

#[test]
fn a_typed_decode_builds_no_value_and_the_session_reads_only_the_envelope() {
    // The counter works, and only on this thread.
    let (v, n) = counted(|| black_box(Vec::<u8>::with_capacity(100)));
    drop(v);
    assert!(n >= 1, "a Vec::with_capacity(100) was not counted");
    let ((), n) = counted(|| ());
    assert_eq!(n, 0, "doing nothing allocated");

    #[allow(clippy::disallowed_methods)]
    let t0 = Instant::now();
    const N: usize = 1_000;

    // HelloAck: the session delivers messages without building anything.
    let mut d = hello_ack(t0);
    d.feed(MESSAGES, 100); // warm-up: buffers reach their steady-state capacity
    d.messages.clear();
    let ((), session_allocs) = counted(|| d.feed(MESSAGES, N));
    assert_eq!(d.messages.len(), N, "every frame became a message");
    assert_eq!(d.violations, 0);
    assert_eq!(
        session_allocs, 0,
        "the HelloAck inbound path allocated {session_allocs} times over {N} messages"
    );

    // The application decodes them into its own type: not one allocation.
    let payloads: Vec<JsonPayload> = std::mem::take(&mut d.messages);
    let (sum, typed_allocs) = counted(|| {
        let mut sum = 0u64;
        for p in &payloads {
            let m: Msg<'_> = p.decode().expect("a Msg");
            sum += u64::from(m.n) + (m.kind.len() + m.body.len()) as u64;
        }
        sum
    });
    assert!(sum > 0);
    assert_eq!(
        typed_allocs, 0,
        "decoding {N} messages into a borrowed struct allocated {typed_allocs} times"
    );

    // The `Value` path builds a map, its keys and its strings: several allocations each.
    let (values, value_allocs) = counted(|| {
        payloads
            .iter()
            .map(|p| p.value().expect("JSON"))
            .collect::<Vec<_>>()
    });
    assert_eq!(values.len(), N);
    let per_value = value_allocs / N as u64;
    assert!(
        per_value >= 5,
        "a Value of 3 fields should cost at least 5 allocations, counted {value_allocs} over {N}"
    );
    drop(values);

    // Gateway: the session reads the envelope and keeps the payload and the event's name
    // as slices of the frame. A presence event costs no allocation: the envelope scanner
    // keeps its stack of open brackets in a word.
    let mut g = gateway(t0);
    g.feed(PRESENCE, 100);
    g.messages.clear();
    let ((), gateway_allocs) = counted(|| g.feed(PRESENCE, N));
    assert_eq!(g.messages.len(), N);
    assert_eq!(g.violations, 0);
    assert_eq!(
        gateway_allocs, 0,
        "a Gateway presence event should cost no allocation, counted {gateway_allocs} over {N}"
    );

    // A chat run's deltas: the run id is a slice of the frame, shared by the session's maps
    // and events; the de-duplication memory keeps the run's own key. What is left is the
    // delta's text (a `String`, one per frame), the run's accumulated text growing now and
    // then, and the ordered de-duplication map's nodes: at most two per delta.
    let mut c = gateway_chat(t0);
    let deltas = |from: usize, n: usize| -> Vec<Bytes> {
        (from..from + n).map(|i| Bytes::from(format!(
            r#"{{"type":"event","event":"chat","payload":{{"runId":"run-1","sessionKey":"agent:main:main","seq":{},"state":"delta","deltaText":"token {i:06} "}}}}"#,
            i + 1
        ))).collect()
    };
    for frame in deltas(0, 100) {
        c.text(frame);
    }
    let frames = deltas(100, N);
    let ((), chat_allocs) = counted(|| {
        for frame in frames {
            c.text(frame);
        }
    });
    assert_eq!(c.streamed, 100 + N, "every delta became a stream event");
    assert_eq!(c.violations, 0);
    assert!(
        chat_allocs <= 2 * N as u64,
        "a Gateway chat delta should cost at most two allocations, counted {chat_allocs} over {N}"
    );
    assert!(
        chat_allocs >= N as u64,
        "the delta's text is its own String: at least one per delta, counted {chat_allocs}"
    );
}

/// A gateway session with one `chat.send` run open, as the inbound bench's chat row.
fn gateway_chat(t0: Instant) -> Driver<Gateway> {
    let mut d = gateway(t0);
    let request = GatewayRequest::chat_send_with_key("agent:main:main", "hi", "run-1");
    d.now += STEP;
    d.session
        .request(request, None, d.now)
        .expect("an open session takes a request");
    d.drain();
    let id = d.last_request_id.clone().expect("the request was written");
    d.text(Bytes::from(format!(
        r#"{{"type":"res","id":"{id}","ok":true,"payload":{{"runId":"run-1","status":"started"}}}}"#
    )));
    assert_eq!(d.session.open_streams(), 1, "the run is a stream");
    d
}
