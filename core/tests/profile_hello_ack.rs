//! Behaviours 1, 7, 8 and 13 through the `HelloAck` profile: the client's hello and the
//! server's `hello_ack` / `hello_error`, numeric request ids and their responses, stream
//! events in both text modes, heartbeats, application messages, and every malformed
//! frame class as a violation; then a real `Session` driven end to end.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{Value, json};
use tether_core::profiles::{HelloAck, HelloAckRequest, JsonPayload};
use tether_core::{
    Acked, AttemptError, Config, ConnId, DataFrame, Decoded, EncodeError, Event, InFrame, Input,
    Opening, OutFrame, Output, Phase, Protocol, Rejection, RequestFailure, RequestId, RequestMeta,
    Session, Status, StreamEvent, StreamEventKind, StreamKey, StreamState, TextMode, Utf8Bytes,
    Violation,
};

// ---- helpers -----------------------------------------------------------------------------

fn text(s: &str) -> DataFrame {
    DataFrame::Text(Utf8Bytes::from_string(s.to_owned()))
}

fn protocol() -> HelloAck {
    HelloAck::new(|| json!({ "client": "test" }))
}

fn decode(p: &mut HelloAck, frame: &str) -> Decoded<HelloAck> {
    p.decode(text(frame), Phase::Open)
}

/// The JSON of a text frame.
fn frame_json(frame: &OutFrame) -> Value {
    match frame {
        OutFrame::Text(t) => serde_json::from_slice(t.as_bytes()).expect("the profile writes JSON"),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

fn malformed(d: Decoded<HelloAck>) -> String {
    match d {
        Decoded::Violation(Violation::Malformed { detail }) => detail,
        other => panic!("expected a malformed violation, got {other:?}"),
    }
}

fn stream_frame(d: Decoded<HelloAck>) -> tether_core::StreamFrame<JsonPayload> {
    match d {
        Decoded::Stream(f) => f,
        other => panic!("expected a stream frame, got {other:?}"),
    }
}

fn meta(id: u64) -> RequestMeta {
    RequestMeta {
        id: RequestId::from_raw(id),
        nonce: 0x0123_4567_89ab_cdef_0123_4567_89ab_cdef,
    }
}

// ---- opening -----------------------------------------------------------------------------

#[test]
fn every_open_calls_the_hello_callback_and_types_untyped_hellos() {
    let calls = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&calls);
    let mut p = HelloAck::new(move || {
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        json!({ "client": "test", "n": n })
    });
    let mut hellos = Vec::new();
    for conn in 0..2 {
        let Ok(Opening::Hello(frame)) = p.open(ConnId::from_raw(conn)) else {
            panic!("HelloAck speaks first");
        };
        hellos.push(frame_json(&frame));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(
        hellos[0],
        json!({ "type": "hello", "client": "test", "n": 1 })
    );
    assert_eq!(
        hellos[1],
        json!({ "type": "hello", "client": "test", "n": 2 })
    );
}

#[test]
fn a_hello_with_its_own_type_is_sent_unchanged() {
    let mut p = HelloAck::new(|| json!({ "type": "auth", "token": "t" }));
    let Ok(Opening::Hello(frame)) = p.open(ConnId::from_raw(0)) else {
        panic!("HelloAck speaks first");
    };
    assert_eq!(frame_json(&frame), json!({ "type": "auth", "token": "t" }));
}

#[test]
fn a_hello_that_is_not_an_object_fails_without_echoing_it() {
    for (hello, kind) in [
        (json!("tok-secret"), "a string"),
        (json!(["tok-secret"]), "an array"),
        (json!(7), "a number"),
        (Value::Null, "null"),
    ] {
        let mut p = HelloAck::new(move || hello.clone());
        let Err(EncodeError(msg)) = p.open(ConnId::from_raw(0)) else {
            panic!("a non-object hello must not be sent");
        };
        assert!(msg.contains(kind), "{msg}");
        assert!(!msg.contains("tok-secret"), "{msg}");
    }
}

#[test]
fn debug_prints_neither_the_callback_nor_the_hello() {
    let mut p = HelloAck::new(|| json!({ "token": "tok-secret" }));
    let _ = p.open(ConnId::from_raw(0));
    let debug = format!("{p:?}");
    assert!(debug.starts_with("HelloAck"), "{debug}");
    assert!(!debug.contains("tok-secret"), "{debug}");
}

// ---- encoding ----------------------------------------------------------------------------

#[test]
fn messages_are_sent_verbatim_as_text() {
    let mut p = protocol();
    let frame = p.encode(json!({ "type": "chat", "text": "hi" })).unwrap();
    assert!(matches!(frame, OutFrame::Text(_)));
    assert_eq!(frame_json(&frame), json!({ "type": "chat", "text": "hi" }));
    let frame = p.encode(json!([1, 2])).unwrap();
    assert_eq!(frame_json(&frame), json!([1, 2]));
}

#[test]
fn requests_carry_the_numeric_id_and_stream_under_its_decimal_string() {
    let mut p = protocol();
    let plain = p
        .encode_request(meta(41), HelloAckRequest::new("sum", json!([1, 2])))
        .unwrap();
    assert_eq!(
        frame_json(&plain.frame),
        json!({ "type": "request", "id": 41, "method": "sum", "params": [1, 2] })
    );
    assert_eq!(plain.stream, None);

    let req = HelloAckRequest::new("generate", json!({ "prompt": "hi" })).streaming();
    assert!(req.stream);
    let streaming = p.encode_request(meta(u64::MAX), req).unwrap();
    assert_eq!(
        frame_json(&streaming.frame),
        json!({ "type": "request", "id": u64::MAX, "method": "generate", "params": { "prompt": "hi" } })
    );
    assert_eq!(
        streaming.stream,
        Some(StreamKey::from(u64::MAX.to_string()))
    );
    assert!(!plain.idempotent && !streaming.idempotent);
}

/// Row 20: an idempotent request carries an `idempotencyKey` (generated from its nonce,
/// or the caller's) and says so to the session.
#[test]
fn idempotent_requests_carry_their_key() {
    let mut p = protocol();
    let generated = p
        .encode_request(meta(7), HelloAckRequest::new("put", json!(1)).idempotent())
        .unwrap();
    assert!(generated.idempotent);
    assert_eq!(
        frame_json(&generated.frame),
        json!({ "type": "request", "id": 7, "method": "put", "params": 1,
                "idempotencyKey": meta(7).nonce_uuid() })
    );
    let own = p
        .encode_request(
            meta(8),
            HelloAckRequest::new("put", json!(1)).idempotency_key("k-1"),
        )
        .unwrap();
    assert!(own.idempotent);
    assert_eq!(frame_json(&own.frame)["idempotencyKey"], json!("k-1"));
}

// ---- handshake ---------------------------------------------------------------------------

#[test]
fn hello_ack_is_an_ack_with_an_optional_heartbeat_in_any_phase() {
    let mut p = protocol();
    for phase in [Phase::Handshake, Phase::Open] {
        let d = p.decode(text(r#"{"type":"hello_ack"}"#), phase);
        assert!(
            matches!(
                d,
                Decoded::Ack(Acked {
                    heartbeat: None,
                    ..
                })
            ),
            "{d:?}"
        );
    }
    let d = decode(&mut p, r#"{"type":"hello_ack","heartbeatMs":15000}"#);
    let Decoded::Ack(acked) = d else {
        panic!("expected an ack, got {d:?}")
    };
    assert_eq!(acked.heartbeat, Some(Duration::from_secs(15)));
    let d = decode(&mut p, r#"{"type":"hello_ack","heartbeatMs":null}"#);
    assert!(
        matches!(
            d,
            Decoded::Ack(Acked {
                heartbeat: None,
                ..
            })
        ),
        "{d:?}"
    );
}

#[test]
fn a_hello_ack_with_a_bad_heartbeat_is_malformed() {
    let mut p = protocol();
    for bad in [
        r#"{"type":"hello_ack","heartbeatMs":"15000"}"#,
        r#"{"type":"hello_ack","heartbeatMs":-1}"#,
        r#"{"type":"hello_ack","heartbeatMs":1.5}"#,
    ] {
        let detail = malformed(decode(&mut p, bad));
        assert!(detail.contains("heartbeatMs"), "{detail}");
    }
}

#[test]
fn hello_error_is_a_rejection() {
    let mut p = protocol();
    let d = p.decode(
        text(r#"{"type":"hello_error","message":"bad token","fatal":true,"retryAfterMs":2500}"#),
        Phase::Handshake,
    );
    let Decoded::Rejected(r) = d else {
        panic!("expected a rejection, got {d:?}")
    };
    assert_eq!(
        r,
        Rejection {
            message: "bad token".into(),
            fatal: true,
            retry_after: Some(Duration::from_millis(2500)),
        }
    );
    let d = decode(&mut p, r#"{"type":"hello_error","message":"busy"}"#);
    let Decoded::Rejected(r) = d else {
        panic!("expected a rejection, got {d:?}")
    };
    assert_eq!(
        r,
        Rejection {
            message: "busy".into(),
            fatal: false,
            retry_after: None,
        }
    );
}

#[test]
fn a_hello_error_with_missing_or_mistyped_fields_is_malformed() {
    let mut p = protocol();
    for (bad, field) in [
        (r#"{"type":"hello_error"}"#, "message"),
        (r#"{"type":"hello_error","message":3}"#, "message"),
        (
            r#"{"type":"hello_error","message":"x","fatal":"yes"}"#,
            "fatal",
        ),
        (
            r#"{"type":"hello_error","message":"x","retryAfterMs":"1"}"#,
            "retryAfterMs",
        ),
    ] {
        let detail = malformed(decode(&mut p, bad));
        assert!(detail.contains(field), "{bad}: {detail}");
    }
}

// ---- responses ---------------------------------------------------------------------------

/// A payload as a `Value` (the migration from `Value` payloads: `payload.value()`).
fn value(payload: JsonPayload) -> Value {
    payload.value().expect("the payload is JSON")
}

fn response(d: Decoded<HelloAck>) -> (Result<RequestId, String>, Result<Value, Value>) {
    match d {
        Decoded::Response { id, result } => (id, result.map(value).map_err(value)),
        other => panic!("expected a response, got {other:?}"),
    }
}

#[test]
fn responses_map_back_to_request_ids() {
    let mut p = protocol();
    let (id, result) = response(decode(
        &mut p,
        r#"{"type":"response","id":3,"result":{"sum":3}}"#,
    ));
    assert_eq!(id, Ok(RequestId::from_raw(3)));
    assert_eq!(result, Ok(json!({ "sum": 3 })));

    let (id, result) = response(decode(
        &mut p,
        r#"{"type":"response","id":4,"error":{"code":"nope"}}"#,
    ));
    assert_eq!(id, Ok(RequestId::from_raw(4)));
    assert_eq!(result, Err(json!({ "code": "nope" })));

    // A null result is still a result; a null error next to a result is a success.
    let (_, result) = response(decode(
        &mut p,
        r#"{"type":"response","id":5,"result":null}"#,
    ));
    assert_eq!(result, Ok(Value::Null));
    let (_, result) = response(decode(
        &mut p,
        r#"{"type":"response","id":6,"result":1,"error":null}"#,
    ));
    assert_eq!(result, Ok(json!(1)));
}

#[test]
fn a_request_id_round_trips_through_the_wire() {
    let mut p = protocol();
    let id = u64::MAX - 1;
    let encoded = p
        .encode_request(meta(id), HelloAckRequest::new("m", Value::Null))
        .unwrap();
    let wire = frame_json(&encoded.frame)["id"].clone();
    let reply = json!({ "type": "response", "id": wire, "result": true }).to_string();
    let (decoded, _) = response(decode(&mut p, &reply));
    assert_eq!(decoded, Ok(RequestId::from_raw(id)));
}

#[test]
fn ids_that_are_not_u64_come_back_as_their_wire_text() {
    let mut p = protocol();
    for (id, wire) in [
        (r#""7""#, "7"),
        ("-1", "-1"),
        ("1.5", "1.5"),
        ("null", "null"),
        (r#"{"n":1}"#, r#"{"n":1}"#),
    ] {
        let frame = format!(r#"{{"type":"response","id":{id},"result":0}}"#);
        let (decoded, result) = response(decode(&mut p, &frame));
        assert_eq!(decoded, Err(wire.to_owned()), "{frame}");
        assert_eq!(result, Ok(json!(0)));
    }
    // Beyond u64 the number is parsed as a float: still unknown, never a wrapped id.
    let frame = r#"{"type":"response","id":18446744073709551616,"result":0}"#;
    let (decoded, _) = response(decode(&mut p, frame));
    assert!(decoded.is_err(), "{decoded:?}");
}

#[test]
fn a_response_without_id_or_outcome_is_malformed() {
    let mut p = protocol();
    let d = malformed(decode(&mut p, r#"{"type":"response","result":1}"#));
    assert!(d.contains("id"), "{d}");
    let d = malformed(decode(&mut p, r#"{"type":"response","id":1}"#));
    assert!(d.contains("result"), "{d}");
    let d = malformed(decode(&mut p, r#"{"type":"response","id":1,"error":null}"#));
    assert!(d.contains("error"), "{d}");
}

// ---- stream events -----------------------------------------------------------------------

#[test]
fn events_with_text_are_incremental_deltas() {
    let mut p = protocol();
    let raw = r#"{"type":"event","stream":"9","seq":2,"state":"delta","text":"lo"}"#;
    let f = stream_frame(decode(&mut p, raw));
    assert_eq!(f.key, StreamKey::from("9"));
    assert_eq!(f.seq, Some(2));
    assert_eq!(f.state, StreamState::Delta);
    assert_eq!(f.text.as_deref(), Some("lo"));
    assert_eq!(f.text_mode, TextMode::Incremental);
    // The payload is the whole event.
    assert_eq!(f.payload, serde_json::from_str::<Value>(raw).unwrap());
}

#[test]
fn events_with_accumulated_text_say_so() {
    let mut p = protocol();
    let f = stream_frame(decode(
        &mut p,
        r#"{"type":"event","stream":"9","state":"delta","accumulated":"Hello","text":"lo"}"#,
    ));
    assert_eq!(f.seq, None);
    assert_eq!(f.text.as_deref(), Some("Hello"));
    assert_eq!(f.text_mode, TextMode::Accumulated);
}

#[test]
fn every_state_decodes() {
    let mut p = protocol();
    for (state, expected) in [
        ("status", StreamState::Status),
        ("delta", StreamState::Delta),
        ("final", StreamState::Final),
        ("aborted", StreamState::Aborted),
    ] {
        let raw = format!(r#"{{"type":"event","stream":"s","state":"{state}"}}"#);
        let f = stream_frame(decode(&mut p, &raw));
        assert_eq!(f.state, expected);
        assert_eq!(f.text, None);
    }
}

#[test]
fn error_events_take_their_message_from_message_or_error() {
    let mut p = protocol();
    let cases = [
        (r#""message":"overloaded","error":"other""#, "overloaded"),
        (r#""error":"quota""#, "quota"),
        (r#""error":{"message":"nested"}"#, "nested"),
        (r#""error":42"#, "unknown error"),
        ("", "unknown error"),
    ];
    for (fields, message) in cases {
        let sep = if fields.is_empty() { "" } else { "," };
        let raw = format!(r#"{{"type":"event","stream":"s","state":"error"{sep}{fields}}}"#);
        let f = stream_frame(decode(&mut p, &raw));
        assert_eq!(
            f.state,
            StreamState::Error {
                message: message.into()
            },
            "{raw}"
        );
    }
}

#[test]
fn malformed_events_are_violations() {
    let mut p = protocol();
    for (bad, field) in [
        (r#"{"type":"event","state":"delta"}"#, "stream"),
        (r#"{"type":"event","stream":7,"state":"delta"}"#, "stream"),
        (r#"{"type":"event","stream":"s"}"#, "state"),
        // The unknown value itself is not echoed.
        (
            r#"{"type":"event","stream":"s","state":"done"}"#,
            "stream state",
        ),
        (
            r#"{"type":"event","stream":"s","state":"delta","seq":"1"}"#,
            "seq",
        ),
        (
            r#"{"type":"event","stream":"s","state":"delta","seq":-1}"#,
            "seq",
        ),
        (
            r#"{"type":"event","stream":"s","state":"delta","text":5}"#,
            "text",
        ),
        (
            r#"{"type":"event","stream":"s","state":"delta","accumulated":[]}"#,
            "accumulated",
        ),
    ] {
        let detail = malformed(decode(&mut p, bad));
        assert!(detail.contains(field), "{bad}: {detail}");
    }
}

// ---- heartbeats, messages, bad frames ----------------------------------------------------

#[test]
fn tick_and_heartbeat_are_heartbeats() {
    let mut p = protocol();
    for raw in [r#"{"type":"tick"}"#, r#"{"type":"heartbeat","ts":1}"#] {
        assert!(matches!(decode(&mut p, raw), Decoded::Heartbeat), "{raw}");
    }
}

#[test]
fn any_other_json_value_is_a_message() {
    let mut p = protocol();
    for raw in [
        r#"{"type":"chat","text":"hi"}"#,
        r#"{"type":"request","id":1}"#,
        r#"{"type":5}"#,
        r#"{"text":"no type"}"#,
        "[1,2,3]",
        "42",
        r#""just a string""#,
        "null",
    ] {
        let d = decode(&mut p, raw);
        let Decoded::Message(v) = d else {
            panic!("{raw} should be a message, got {d:?}")
        };
        assert_eq!(v, serde_json::from_str::<Value>(raw).unwrap());
    }
}

#[test]
fn binary_and_invalid_json_are_violations() {
    let mut p = protocol();
    let d = p.decode(DataFrame::Binary(Bytes::from_static(b"{}")), Phase::Open);
    assert!(
        matches!(d, Decoded::Violation(Violation::UnexpectedBinary)),
        "{d:?}"
    );
    for bad in [
        "",
        "{",
        "hello",
        r#"{"type":"hello_ack"} trailing"#,
        "\u{feff}{}",
    ] {
        let detail = malformed(decode(&mut p, bad));
        assert!(detail.contains("invalid JSON"), "{bad:?}: {detail}");
    }
}

#[test]
fn a_frame_nested_deeper_than_a_value_can_be_is_malformed() {
    let mut p = protocol();
    // The envelope is the first level: 127 in all is what a `Value` can hold.
    let nested = |levels: usize| {
        format!(
            r#"{{"type":"msg","p":{}{}}}"#,
            "[".repeat(levels - 1),
            "]".repeat(levels - 1)
        )
    };
    let ok = nested(127);
    assert!(serde_json::from_str::<Value>(&ok).is_ok());
    assert!(
        matches!(decode(&mut p, &ok), Decoded::Message(_)),
        "127 levels are a message"
    );
    let deep = nested(128);
    assert!(serde_json::from_str::<Value>(&deep).is_err());
    let detail = malformed(decode(&mut p, &deep));
    assert!(detail.contains("invalid JSON"), "{detail}");
}

// ---- end to end --------------------------------------------------------------------------

/// Drives a session by hand with virtual time.
struct Driver {
    s: Session<HelloAck>,
    now: Instant,
    conn: ConnId,
}

impl Driver {
    fn new(protocol: HelloAck) -> Self {
        let s = Session::new(Config::default(), protocol, 11).unwrap();
        // The origin of virtual time: the only clock read, the driver's, not the session's.
        #[allow(clippy::disallowed_methods)]
        let now = Instant::now();
        Driver {
            s,
            now,
            conn: ConnId::from_raw(u64::MAX),
        }
    }

    fn tick(&mut self) {
        self.now += Duration::from_millis(10);
    }

    /// Drains the outputs, reporting every write as completed.
    fn drain(&mut self) -> Vec<Output<HelloAck>> {
        let mut outs = Vec::new();
        while let Some(o) = self.s.poll_output() {
            outs.push(o);
        }
        for o in &outs {
            if let Output::SendFrame { conn, frame, .. } = o {
                let (conn, frame) = (*conn, *frame);
                self.s
                    .handle_input(Input::WriteCompleted { conn, frame }, self.now);
            }
        }
        outs
    }

    fn receive(&mut self, frame: &str) -> Vec<Output<HelloAck>> {
        self.tick();
        let frame = InFrame::Text(Bytes::copy_from_slice(frame.as_bytes()));
        let conn = self.conn;
        self.s
            .handle_input(Input::FrameReceived { conn, frame }, self.now);
        self.drain()
    }

    /// connect → OpenTransport → TransportOpened; returns the hello frame.
    fn open_transport(&mut self) -> Value {
        self.s.connect(self.now).unwrap();
        let outs = self.drain();
        self.conn = outs
            .iter()
            .find_map(|o| match o {
                Output::OpenTransport { conn, .. } => Some(*conn),
                _ => None,
            })
            .expect("connect opens a transport");
        self.tick();
        let conn = self.conn;
        self.s
            .handle_input(Input::TransportOpened { conn }, self.now);
        let sent = sent_frames(&self.drain());
        assert_eq!(sent.len(), 1, "exactly the hello");
        sent.into_iter().next().unwrap()
    }
}

fn sent_frames(outs: &[Output<HelloAck>]) -> Vec<Value> {
    outs.iter()
        .filter_map(|o| match o {
            Output::SendFrame { payload, .. } => Some(frame_json(payload)),
            _ => None,
        })
        .collect()
}

fn events(outs: Vec<Output<HelloAck>>) -> Vec<Event<HelloAck>> {
    outs.into_iter()
        .filter_map(|o| match o {
            Output::Event(e) => Some(e),
            _ => None,
        })
        .collect()
}

fn stream_events(outs: Vec<Output<HelloAck>>) -> Vec<StreamEvent<JsonPayload>> {
    events(outs)
        .into_iter()
        .filter_map(|e| match e {
            Event::Stream(s) => Some(s),
            _ => None,
        })
        .collect()
}

#[test]
fn a_session_opens_requests_and_streams_over_hello_ack() {
    let mut d = Driver::new(HelloAck::new(|| json!({ "client": "e2e" })));
    let hello = d.open_transport();
    assert_eq!(hello, json!({ "type": "hello", "client": "e2e" }));
    assert_eq!(d.s.status(), Status::Connecting);

    let outs = d.receive(r#"{"type":"hello_ack","heartbeatMs":20000}"#);
    assert_eq!(d.s.status(), Status::Open);
    assert!(
        events(outs)
            .iter()
            .any(|e| matches!(e, Event::Opened { first: true, .. }))
    );

    // A second ack is the session's to report.
    let outs = d.receive(r#"{"type":"hello_ack"}"#);
    assert!(events(outs).iter().any(|e| matches!(
        e,
        Event::Violation {
            violation: Violation::DuplicateAck,
            ..
        }
    )));

    // A streaming request: events before the response are caught under the id.
    let req = HelloAckRequest::new("generate", json!({ "prompt": "hi" })).streaming();
    let id = d.s.request(req, None, d.now).unwrap();
    let sent = sent_frames(&d.drain());
    assert_eq!(
        sent,
        vec![
            json!({ "type": "request", "id": id.get(), "method": "generate", "params": { "prompt": "hi" } })
        ]
    );
    let key = id.get().to_string();
    let mut texts = String::new();
    let mut terminals = 0;
    for frame in [
        json!({ "type": "event", "stream": key, "seq": 1, "state": "delta", "text": "Hel" }),
        json!({ "type": "event", "stream": key, "seq": 1, "state": "delta", "text": "Hel" }),
        json!({ "type": "event", "stream": key, "seq": 2, "state": "delta", "text": "lo" }),
        json!({ "type": "event", "stream": key, "seq": 3, "state": "final" }),
    ] {
        for ev in stream_events(d.receive(&frame.to_string())) {
            assert_eq!(ev.request, Some(id));
            match ev.kind {
                StreamEventKind::Delta { text: Some(t), .. } => texts.push_str(&t),
                StreamEventKind::Final { text, .. } => {
                    terminals += 1;
                    assert_eq!(text.as_deref(), Some("Hello"));
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert_eq!(texts, "Hello");
    assert_eq!(terminals, 1);
    assert_eq!(d.s.stats().duplicates_dropped, 1);

    let reply = json!({ "type": "response", "id": id.get(), "result": { "done": true } });
    let evs = events(d.receive(&reply.to_string()));
    assert!(
        evs.contains(&Event::Response {
            id,
            result: Ok(json!({ "done": true }).into())
        }),
        "{evs:?}"
    );

    // An error response resolves its request as a remote failure.
    let id2 =
        d.s.request(HelloAckRequest::new("x", json!(null)), None, d.now)
            .unwrap();
    let _ = d.drain();
    let reply = json!({ "type": "response", "id": id2.get(), "error": "no such method" });
    let evs = events(d.receive(&reply.to_string()));
    assert!(evs.contains(&Event::Response {
        id: id2,
        result: Err(RequestFailure::Remote(json!("no such method").into()))
    }));

    // Messages and heartbeats.
    let evs = events(d.receive(r#"{"type":"tick"}"#));
    assert!(evs.is_empty(), "{evs:?}");
    let evs = events(d.receive(r#"{"type":"notice","text":"hi"}"#));
    assert_eq!(
        evs,
        vec![Event::Message(
            json!({ "type": "notice", "text": "hi" }).into()
        )]
    );
    assert_eq!(d.s.pending_requests(), 0);
}

#[test]
fn a_fatal_hello_error_fails_the_first_connect() {
    let mut d = Driver::new(protocol());
    let _ = d.open_transport();
    let outs = d.receive(r#"{"type":"hello_error","message":"bad token","fatal":true}"#);
    let evs = events(outs);
    let failed = evs.iter().any(|e| {
        matches!(
            e,
            Event::AttemptFailed {
                error: AttemptError::HandshakeRejected { message },
                ..
            } if message == "bad token"
        )
    });
    assert!(failed, "{evs:?}");
    assert_eq!(d.s.status(), Status::Failed);
}

// ---- the recovery dialect --------------------------------------------------------------------

/// Issue 13 item 1: a recovering `HelloAck` puts the session token and every resumable
/// stream's position in the hello after a reconnect, reads `session` and `recovered`
/// from the ack, and marks resumable requests on the wire.
#[test]
fn the_recovery_dialect_round_trips_through_a_session() {
    use tether_core::{Input, Output, Session};
    // The one clock read of the test: an arbitrary epoch, only offsets matter.
    #[allow(clippy::disallowed_methods)]
    let t0 = Instant::now();
    let protocol = HelloAck::new(|| json!({ "client": "r" })).recovering();
    let mut s = Session::new(tether_core::Config::default(), protocol, 3).unwrap();
    let drain =
        |s: &mut Session<HelloAck>| std::iter::from_fn(|| s.poll_output()).collect::<Vec<_>>();
    let sent = |out: &[Output<HelloAck>]| -> Vec<Value> {
        out.iter()
            .filter_map(|o| match o {
                Output::SendFrame { payload, .. } => Some(frame_json(payload)),
                _ => None,
            })
            .collect()
    };
    s.connect(t0).unwrap();
    drain(&mut s);
    let conn = s.current_conn().unwrap();
    s.handle_input(Input::TransportOpened { conn }, t0);
    let out = drain(&mut s);
    assert_eq!(
        sent(&out),
        [json!({ "type": "hello", "client": "r" })],
        "nothing to resume yet"
    );
    let frame = |t: &str| Input::FrameReceived {
        conn,
        frame: tether_core::InFrame::Text(Bytes::copy_from_slice(t.as_bytes())),
    };
    s.handle_input(frame(r#"{"type":"hello_ack","session":"s-9"}"#), t0);
    s.request(
        HelloAckRequest::new("watch", json!({})).resumable(),
        None,
        t0,
    )
    .unwrap();
    let out = drain(&mut s);
    assert_eq!(
        sent(&out),
        [json!({ "type": "request", "id": 0, "method": "watch", "params": {}, "resumable": true })]
    );
    s.handle_input(
        frame(r#"{"type":"event","stream":"0","seq":5,"state":"delta"}"#),
        t0,
    );
    s.handle_input(
        Input::TransportClosed {
            conn,
            code: None,
            reason: String::new(),
        },
        t0,
    );
    drain(&mut s);
    assert_eq!(
        s.open_streams(),
        1,
        "the stream waits for the next connection"
    );
    let later = t0 + Duration::from_secs(60);
    s.handle_timeout(later);
    drain(&mut s);
    let conn = s.current_conn().unwrap();
    s.handle_input(Input::TransportOpened { conn }, later);
    let out = drain(&mut s);
    assert_eq!(
        sent(&out),
        [json!({ "type": "hello", "client": "r",
                 "resume": { "session": "s-9", "streams": { "0": 5 } } })]
    );
    let frame = |t: &str| Input::FrameReceived {
        conn,
        frame: tether_core::InFrame::Text(Bytes::copy_from_slice(t.as_bytes())),
    };
    s.handle_input(frame(r#"{"type":"hello_ack","recovered":false}"#), later);
    let out = drain(&mut s);
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Event(tether_core::Event::Stream(ev))
            if ev.kind == tether_core::StreamEventKind::Ended(tether_core::StreamEnd::Unrecoverable)
    )), "{out:?}");
}

#[test]
fn a_bad_session_token_in_the_ack_is_a_violation() {
    let mut p = protocol();
    let d = decode(&mut p, r#"{"type":"hello_ack","session":42}"#);
    assert!(malformed(d).contains("session"));
    let d = decode(&mut p, r#"{"type":"hello_ack","recovered":"yes"}"#);
    assert!(matches!(d, Decoded::Violation(_)));
}
