//! Behaviours 1, 7, 8 and 13 through the `Gateway` profile (OpenClaw gateway protocol,
//! version 4): the server's `connect.challenge` answered by an exact `connect` request,
//! `hello-ok` and rejections, `t<n>` request ids, `chat.send` idempotency keys as stream
//! keys, chat events with cumulative text in every `message` shape, ticks, other events
//! as messages, every malformed frame class as a violation; then a real `Session` driven
//! end to end, with a chat run whose events race its response.

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{Value, json};
use tether_core::profiles::{
    ChatAbortResult, ChatHistory, ChatInjectAck, ChatMessage, ChatSendAck, Gateway, GatewayError,
    GatewayEvent, GatewayOptions, GatewayRequest, JsonPayload, UnexpectedPayload,
};
use tether_core::{
    Acked, AttemptError, Config, ConnId, DataFrame, Decoded, EncodeError, EncodedRequest, Event,
    InFrame, Input, Opening, OutFrame, Output, Phase, Protocol, Rejection, RequestFailure,
    RequestId, RequestMeta, Session, Status, StreamEvent, StreamEventKind, StreamFrame, StreamKey,
    StreamState, TextMode, Utf8Bytes, Violation,
};

// ---- helpers -----------------------------------------------------------------------------

fn text(s: &str) -> DataFrame {
    DataFrame::Text(Utf8Bytes::from_string(s.to_owned()))
}

fn options() -> GatewayOptions {
    GatewayOptions {
        client_version: "1.2.3".into(),
        platform: "linux".into(),
        token: Some("tok-secret".into()),
        ..GatewayOptions::default()
    }
}

/// A gateway whose connection 1 is open and whose challenge was answered.
fn opened() -> Gateway {
    let mut g = Gateway::new(options());
    assert_eq!(g.open(ConnId::from_raw(1)), Ok(Opening::AwaitServer));
    assert!(matches!(
        decode_in(&mut g, CHALLENGE, Phase::Handshake),
        Decoded::Challenge(_)
    ));
    g
}

const CHALLENGE: &str = r#"{"type":"event","event":"connect.challenge","payload":{"nonce":"n-1","ts":1737264000000,"capabilities":["chat"]}}"#;

fn decode_in(g: &mut Gateway, frame: &str, phase: Phase) -> Decoded<Gateway> {
    g.decode(text(frame), phase)
}

fn decode(g: &mut Gateway, frame: &str) -> Decoded<Gateway> {
    decode_in(g, frame, Phase::Open)
}

fn frame_json(frame: &OutFrame) -> Value {
    match frame {
        OutFrame::Text(t) => serde_json::from_slice(t.as_bytes()).expect("the profile writes JSON"),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

fn malformed(d: Decoded<Gateway>) -> String {
    match d {
        Decoded::Violation(Violation::Malformed { detail }) => detail,
        other => panic!("expected a malformed violation, got {other:?}"),
    }
}

fn meta(id: u64) -> RequestMeta {
    RequestMeta {
        id: RequestId::from_raw(id),
        nonce: 0x0123_4567_89ab_cdef_0123_4567_89ab_cdef,
    }
}

fn encode(g: &mut Gateway, id: u64, req: GatewayRequest) -> EncodedRequest {
    g.encode_request(meta(id), req).expect("encodable")
}

/// A payload as a `Value` (the migration from `Value` payloads: `payload.value()`).
fn value(payload: JsonPayload) -> Value {
    payload.value().expect("the payload is JSON")
}

fn response(d: Decoded<Gateway>) -> (Result<RequestId, String>, Result<Value, GatewayError>) {
    match d {
        Decoded::Response { id, result } => (id, result.map(value)),
        other => panic!("expected a response, got {other:?}"),
    }
}

fn chat(d: Decoded<Gateway>) -> StreamFrame<GatewayEvent> {
    match d {
        Decoded::Stream(f) => f,
        other => panic!("expected a chat stream frame, got {other:?}"),
    }
}

fn chat_event(payload: Value) -> String {
    json!({ "type": "event", "event": "chat", "payload": payload, "seq": 900 }).to_string()
}

const HELLO_OK: &str = r#"{"type":"res","id":"connect-1","ok":true,"payload":{"type":"hello-ok","protocol":4,"policy":{"tickIntervalMs":30000,"maxPayload":1048576}}}"#;

// ---- options -----------------------------------------------------------------------------

#[test]
fn options_have_the_documented_defaults_and_hide_the_token() {
    let o = GatewayOptions::default();
    assert_eq!(o.client_id, "cli");
    assert_eq!(o.client_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(o.platform, std::env::consts::OS);
    assert_eq!(o.mode, "cli");
    assert_eq!(o.token, None);
    assert_eq!(o.scopes, ["operator.read", "operator.write"]);
    assert_eq!((o.min_protocol, o.max_protocol), (4, 4));

    let debug = format!("{:?}", options());
    assert!(!debug.contains("tok-secret"), "{debug}");
    assert!(debug.contains("redacted"), "{debug}");
}

#[test]
fn gateway_debug_hides_the_token_and_the_hello() {
    let mut g = opened();
    let hello = r#"{"type":"res","id":"connect-1","ok":true,"payload":{"type":"hello-ok","auth":{"deviceToken":"dev-secret"}}}"#;
    assert!(matches!(
        decode_in(&mut g, hello, Phase::Handshake),
        Decoded::Ack(_)
    ));
    let debug = format!("{g:?}");
    assert!(!debug.contains("tok-secret"), "{debug}");
    assert!(!debug.contains("dev-secret"), "{debug}");
}

// ---- handshake ---------------------------------------------------------------------------

#[test]
fn the_challenge_is_answered_with_the_exact_connect_request() {
    let mut g = Gateway::new(options());
    assert_eq!(g.open(ConnId::from_raw(7)), Ok(Opening::AwaitServer));
    let Decoded::Challenge(frame) = decode_in(&mut g, CHALLENGE, Phase::Handshake) else {
        panic!("a challenge in the handshake is answered");
    };
    // Object equality: no field more, no field less (the server rejects unknown fields).
    assert_eq!(
        frame_json(&frame),
        json!({
            "type": "req",
            "id": "connect-7",
            "method": "connect",
            "params": {
                "minProtocol": 4,
                "maxProtocol": 4,
                "client": { "id": "cli", "version": "1.2.3", "platform": "linux", "mode": "cli" },
                "auth": { "token": "tok-secret" },
                "scopes": ["operator.read", "operator.write"],
            },
        })
    );
}

#[test]
fn without_a_token_the_connect_request_has_no_auth() {
    let mut g = Gateway::new(GatewayOptions {
        client_id: "gateway-client".into(),
        client_version: "9".into(),
        platform: "darwin".into(),
        mode: "backend".into(),
        token: None,
        scopes: vec!["operator.read".into()],
        min_protocol: 3,
        max_protocol: 4,
        ticks_as_heartbeat: true,
    });
    g.open(ConnId::from_raw(0)).unwrap();
    let Decoded::Challenge(frame) = decode_in(&mut g, CHALLENGE, Phase::Handshake) else {
        panic!("a challenge in the handshake is answered");
    };
    assert_eq!(
        frame_json(&frame),
        json!({
            "type": "req",
            "id": "connect-0",
            "method": "connect",
            "params": {
                "minProtocol": 3,
                "maxProtocol": 4,
                "client": { "id": "gateway-client", "version": "9", "platform": "darwin", "mode": "backend" },
                "scopes": ["operator.read"],
            },
        })
    );
}

#[test]
fn the_connect_id_is_unique_per_connection() {
    let mut g = Gateway::new(options());
    let mut ids = Vec::new();
    for conn in [3, 4] {
        g.open(ConnId::from_raw(conn)).unwrap();
        let Decoded::Challenge(frame) = decode_in(&mut g, CHALLENGE, Phase::Handshake) else {
            panic!("a challenge in the handshake is answered");
        };
        ids.push(frame_json(&frame)["id"].clone());
    }
    assert_eq!(ids, [json!("connect-3"), json!("connect-4")]);
}

#[test]
fn a_challenge_after_the_handshake_is_unexpected() {
    let mut g = opened();
    assert!(matches!(
        decode(&mut g, CHALLENGE),
        Decoded::Violation(Violation::UnexpectedHandshake)
    ));
}

#[test]
fn hello_ok_acknowledges_with_the_tick_interval_and_is_kept() {
    let mut g = opened();
    assert_eq!(g.hello(), None);
    let d = decode_in(&mut g, HELLO_OK, Phase::Handshake);
    let Decoded::Ack(acked) = d else {
        panic!("expected an ack, got {d:?}")
    };
    assert_eq!(acked.heartbeat, Some(Duration::from_secs(30)));
    let hello = g.hello().expect("the hello-ok payload is kept");
    assert_eq!(hello["policy"]["maxPayload"], json!(1_048_576));

    // Without a policy there is no heartbeat.
    let mut g = opened();
    let d = decode_in(
        &mut g,
        r#"{"type":"res","id":"connect-1","ok":true,"payload":{"type":"hello-ok"}}"#,
        Phase::Handshake,
    );
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
fn a_repeated_hello_ok_is_an_ack_again_and_does_not_replace_the_hello() {
    let mut g = opened();
    let _ = decode_in(&mut g, HELLO_OK, Phase::Handshake);
    let again = r#"{"type":"res","id":"connect-1","ok":true,"payload":{"type":"hello-ok","policy":{"tickIntervalMs":5}}}"#;
    assert!(matches!(decode(&mut g, again), Decoded::Ack(_)));
    assert_eq!(g.hello().unwrap()["policy"]["tickIntervalMs"], json!(30000));
}

#[test]
fn a_bad_hello_ok_is_malformed() {
    for (payload, field) in [
        (r#"{"type":"welcome"}"#, "hello-ok"),
        (r#""hello-ok""#, "hello-ok"),
        ("null", "hello-ok"),
        (r#"{"type":"hello-ok","policy":3}"#, "policy"),
        (
            r#"{"type":"hello-ok","policy":{"tickIntervalMs":"30000"}}"#,
            "tickIntervalMs",
        ),
    ] {
        let mut g = opened();
        let frame = format!(r#"{{"type":"res","id":"connect-1","ok":true,"payload":{payload}}}"#);
        let detail = malformed(decode_in(&mut g, &frame, Phase::Handshake));
        assert!(detail.contains(field), "{frame}: {detail}");
        assert_eq!(g.hello(), None);
    }
}

#[test]
fn a_refused_connect_is_a_rejection_fatal_unless_retryable() {
    let cases = [
        (
            r#"{"code":"UNAVAILABLE","message":"starting","retryable":true,"retryAfterMs":2000}"#,
            Rejection {
                message: "starting".into(),
                fatal: false,
                retry_after: Some(Duration::from_secs(2)),
            },
        ),
        (
            r#"{"code":"UNAUTHORIZED","message":"bad token"}"#,
            Rejection {
                message: "bad token".into(),
                fatal: true,
                retry_after: None,
            },
        ),
        (
            r#"{"code":"INVALID_REQUEST","message":"protocol","retryable":false,"details":{"min":5}}"#,
            Rejection {
                message: "protocol".into(),
                fatal: true,
                retry_after: None,
            },
        ),
    ];
    for (error, expected) in cases {
        let mut g = opened();
        let frame = format!(r#"{{"type":"res","id":"connect-1","ok":false,"error":{error}}}"#);
        let d = decode_in(&mut g, &frame, Phase::Handshake);
        let Decoded::Rejected(r) = d else {
            panic!("expected a rejection, got {d:?}")
        };
        assert_eq!(r, expected);
    }
}

#[test]
fn a_connect_id_is_only_the_connect_response_once_the_challenge_is_answered() {
    // Before the challenge: not our connect yet, so an unknown response.
    let mut g = Gateway::new(options());
    g.open(ConnId::from_raw(1)).unwrap();
    let (id, _) = response(decode_in(&mut g, HELLO_OK, Phase::Handshake));
    assert_eq!(id, Err("connect-1".to_owned()));

    // After a reconnect, the old connection's connect id means nothing.
    let mut g = opened();
    g.open(ConnId::from_raw(2)).unwrap();
    let _ = decode_in(&mut g, CHALLENGE, Phase::Handshake);
    let (id, _) = response(decode_in(&mut g, HELLO_OK, Phase::Handshake));
    assert_eq!(id, Err("connect-1".to_owned()));
}

// ---- requests ----------------------------------------------------------------------------

#[test]
fn requests_are_encoded_with_exactly_the_documented_fields() {
    let mut g = opened();
    let cases = [
        (
            GatewayRequest::new("health", None),
            json!({ "type": "req", "id": "t0", "method": "health" }),
        ),
        (
            GatewayRequest::new("sessions.list", json!({})),
            json!({ "type": "req", "id": "t0", "method": "sessions.list", "params": {} }),
        ),
        (
            GatewayRequest::chat_history("main", Some(20)),
            json!({ "type": "req", "id": "t0", "method": "chat.history", "params": { "sessionKey": "main", "limit": 20 } }),
        ),
        (
            GatewayRequest::chat_history("main", None),
            json!({ "type": "req", "id": "t0", "method": "chat.history", "params": { "sessionKey": "main" } }),
        ),
        (
            GatewayRequest::chat_abort("main", Some("run-1".into())),
            json!({ "type": "req", "id": "t0", "method": "chat.abort", "params": { "sessionKey": "main", "runId": "run-1" } }),
        ),
        (
            GatewayRequest::chat_abort("main", None),
            json!({ "type": "req", "id": "t0", "method": "chat.abort", "params": { "sessionKey": "main" } }),
        ),
        (
            GatewayRequest::chat_inject("main", "note", Some("seed".into())),
            json!({ "type": "req", "id": "t0", "method": "chat.inject", "params": { "sessionKey": "main", "message": "note", "label": "seed" } }),
        ),
        (
            GatewayRequest::chat_inject("main", "note", None),
            json!({ "type": "req", "id": "t0", "method": "chat.inject", "params": { "sessionKey": "main", "message": "note" } }),
        ),
    ];
    for (req, expected) in cases {
        let encoded = encode(&mut g, 0, req);
        assert_eq!(frame_json(&encoded.frame), expected);
        assert_eq!(encoded.stream, None, "only chat.send starts a stream");
    }
}

#[test]
fn chat_send_gets_an_idempotency_key_that_is_its_stream_key() {
    let mut g = opened();
    let encoded = encode(&mut g, 12, GatewayRequest::chat_send("main", "hi"));
    let key = meta(12).nonce_uuid();
    assert_eq!(
        frame_json(&encoded.frame),
        json!({
            "type": "req",
            "id": "t12",
            "method": "chat.send",
            "params": { "sessionKey": "main", "message": "hi", "idempotencyKey": key },
        })
    );
    assert_eq!(encoded.stream, Some(StreamKey::from(key)));

    // A null key is replaced too.
    let req = GatewayRequest::new(
        "chat.send",
        json!({ "sessionKey": "main", "message": "hi", "idempotencyKey": null }),
    );
    let encoded = encode(&mut g, 13, req);
    assert_eq!(encoded.stream, Some(StreamKey::from(meta(13).nonce_uuid())));
}

#[test]
fn chat_send_keeps_the_callers_idempotency_key() {
    let mut g = opened();
    let encoded = encode(
        &mut g,
        3,
        GatewayRequest::chat_send_with_key("main", "hi", "idem-1"),
    );
    assert_eq!(
        frame_json(&encoded.frame)["params"],
        json!({ "sessionKey": "main", "message": "hi", "idempotencyKey": "idem-1" })
    );
    assert_eq!(encoded.stream, Some(StreamKey::from("idem-1")));
}

#[test]
fn chat_send_without_object_params_or_with_a_bad_key_is_refused() {
    let mut g = opened();
    for req in [
        GatewayRequest::new("chat.send", None),
        GatewayRequest::new("chat.send", json!("hi")),
        GatewayRequest::new(
            "chat.send",
            json!({ "sessionKey": "main", "idempotencyKey": 7 }),
        ),
    ] {
        let r = g.encode_request(meta(0), req.clone());
        assert!(matches!(r, Err(EncodeError(_))), "{req:?}: {r:?}");
    }
}

#[test]
fn request_ids_round_trip_and_foreign_ids_are_reported_as_sent() {
    let mut g = opened();
    for id in [0, 1, 42, u64::MAX] {
        let encoded = encode(&mut g, id, GatewayRequest::new("health", None));
        let wire = frame_json(&encoded.frame)["id"].clone();
        let reply = json!({ "type": "res", "id": wire, "ok": true, "payload": id.to_string() });
        let (decoded, result) = response(decode(&mut g, &reply.to_string()));
        assert_eq!(decoded, Ok(RequestId::from_raw(id)));
        assert_eq!(result, Ok(json!(id.to_string())));
    }
    for (id, wire) in [
        (r#""t05""#, "t05"),
        (r#""t+5""#, "t+5"),
        (r#""t-5""#, "t-5"),
        (r#""t""#, "t"),
        (r#""5""#, "5"),
        (r#""x5""#, "x5"),
        (r#""t5 ""#, "t5 "),
        (r#""t18446744073709551616""#, "t18446744073709551616"),
        ("5", "5"),
        ("null", "null"),
    ] {
        let frame = format!(r#"{{"type":"res","id":{id},"ok":true}}"#);
        let (decoded, _) = response(decode(&mut g, &frame));
        assert_eq!(decoded, Err(wire.to_owned()), "{frame}");
    }
}

#[test]
fn responses_carry_the_payload_or_the_gateway_error() {
    let mut g = opened();
    let (_, result) = response(decode(
        &mut g,
        r#"{"type":"res","id":"t1","ok":true,"payload":{"runId":"r","status":"started"}}"#,
    ));
    assert_eq!(result, Ok(json!({ "runId": "r", "status": "started" })));

    let (_, result) = response(decode(&mut g, r#"{"type":"res","id":"t1","ok":true}"#));
    assert_eq!(result, Ok(Value::Null));

    let (_, result) = response(decode(
        &mut g,
        r#"{"type":"res","id":"t1","ok":false,"error":{"code":"UNAVAILABLE","message":"busy","details":{"q":3},"retryable":true,"retryAfterMs":500}}"#,
    ));
    let error = result.unwrap_err();
    assert_eq!(
        error,
        GatewayError {
            code: "UNAVAILABLE".into(),
            message: "busy".into(),
            details: Some(json!({ "q": 3 })),
            retryable: Some(true),
            retry_after_ms: Some(500),
        }
    );
    assert_eq!(error.to_string(), "UNAVAILABLE: busy");
    let as_std: &dyn std::error::Error = &error;
    assert_eq!(as_std.to_string(), "UNAVAILABLE: busy");

    let (_, result) = response(decode(
        &mut g,
        r#"{"type":"res","id":"t1","ok":false,"error":{"code":"X","message":"m"}}"#,
    ));
    let error = result.unwrap_err();
    assert_eq!(
        (error.details, error.retryable, error.retry_after_ms),
        (None, None, None)
    );
}

#[test]
fn malformed_responses_are_violations() {
    let mut g = opened();
    for (bad, field) in [
        (r#"{"type":"res","ok":true}"#, "id"),
        (r#"{"type":"res","id":"t1"}"#, "ok"),
        (r#"{"type":"res","id":"t1","ok":"yes"}"#, "ok"),
        (r#"{"type":"res","id":"t1","ok":false}"#, "error"),
        (
            r#"{"type":"res","id":"t1","ok":false,"error":"busy"}"#,
            "error",
        ),
        (
            r#"{"type":"res","id":"t1","ok":false,"error":{"message":"m"}}"#,
            "code",
        ),
        (
            r#"{"type":"res","id":"t1","ok":false,"error":{"code":"C"}}"#,
            "message",
        ),
        (
            r#"{"type":"res","id":"t1","ok":false,"error":{"code":"C","message":"m","retryable":"no"}}"#,
            "retryable",
        ),
        (
            r#"{"type":"res","id":"t1","ok":false,"error":{"code":"C","message":"m","retryAfterMs":-5}}"#,
            "retryAfterMs",
        ),
    ] {
        let detail = malformed(decode(&mut g, bad));
        assert!(detail.contains(field), "{bad}: {detail}");
    }
}

#[test]
fn response_stream_names_the_run_id() {
    let g = opened();
    assert_eq!(
        g.response_stream(&json!({ "runId": "run-9", "status": "started" }).into()),
        Some(StreamKey::from("run-9"))
    );
    assert_eq!(
        g.response_stream(&json!({ "status": "started" }).into()),
        None
    );
    assert_eq!(g.response_stream(&json!({ "runId": 9 }).into()), None);
    assert_eq!(g.response_stream(&Value::Null.into()), None);
}

// ---- chat events -------------------------------------------------------------------------

#[test]
fn chat_text_is_cumulative_in_all_three_message_shapes() {
    let mut g = opened();
    for message in [
        json!("Hello world"),
        json!({ "role": "assistant", "content": "Hello world" }),
        json!({ "role": "assistant", "content": [
            { "type": "text", "text": "Hello " },
            { "type": "toolCall", "name": "search" },
            { "type": "text", "text": "world" },
        ] }),
        json!({ "role": "assistant", "text": "Hello world" }),
    ] {
        let frame = chat_event(json!({
            "runId": "r", "sessionKey": "main", "seq": 4, "state": "delta",
            "deltaText": "world", "message": message,
        }));
        let f = chat(decode(&mut g, &frame));
        assert_eq!(f.text.as_deref(), Some("Hello world"), "{message}");
        assert_eq!(f.text_mode, TextMode::Accumulated);
    }
}

#[test]
fn without_a_usable_message_chat_text_is_the_delta() {
    let mut g = opened();
    for message in [
        None,
        Some(Value::Null),
        Some(json!(12)),
        Some(json!({ "role": "assistant", "content": [{ "type": "toolCall" }] })),
        Some(json!({ "role": "assistant" })),
    ] {
        let mut payload = json!({ "runId": "r", "seq": 2, "state": "delta", "deltaText": "lo" });
        if let Some(m) = message.clone() {
            payload["message"] = m;
        }
        let f = chat(decode(&mut g, &chat_event(payload)));
        assert_eq!(f.text.as_deref(), Some("lo"), "{message:?}");
        assert_eq!(f.text_mode, TextMode::Incremental);
    }
    // No text at all.
    let f = chat(decode(
        &mut g,
        &chat_event(json!({ "runId": "r", "state": "status" })),
    ));
    assert_eq!(f.text, None);
    assert_eq!(f.seq, None);
}

#[test]
fn chat_events_decode_every_state_keyed_by_run_with_the_run_seq() {
    let mut g = opened();
    // Terminal events carry no seq: the gateway gives a run's final the seq of the last
    // delta it flushed (see `a_real_run_whose_final_shares_the_last_deltas_seq_ends`).
    for (state, expected, seq) in [
        ("status", StreamState::Status, Some(3)),
        ("delta", StreamState::Delta, Some(3)),
        ("final", StreamState::Final, None),
        ("aborted", StreamState::Aborted, None),
    ] {
        let payload = json!({ "runId": "run-1", "sessionKey": "main", "seq": 3, "state": state });
        let raw = json!({ "type": "event", "event": "chat", "payload": payload, "seq": 77, "stateVersion": { "presence": 2 } });
        let f = chat(decode(&mut g, &raw.to_string()));
        assert_eq!(f.key, StreamKey::from("run-1"));
        assert_eq!(f.seq, seq, "the run's seq, not the connection's");
        assert_eq!(f.state, expected);
        assert_eq!(
            f.payload,
            GatewayEvent {
                event: "chat".into(),
                payload: payload.into(),
                seq: Some(77),
                state_version: Some(json!({ "presence": 2 }).into()),
            }
        );
    }
}

#[test]
fn chat_errors_carry_the_error_message() {
    let mut g = opened();
    let f = chat(decode(
        &mut g,
        &chat_event(json!({ "runId": "r", "state": "error", "errorMessage": "overloaded" })),
    ));
    assert_eq!(
        f.state,
        StreamState::Error {
            message: "overloaded".into()
        }
    );
    for odd in [
        json!({ "runId": "r", "state": "error" }),
        json!({ "runId": "r", "state": "error", "errorMessage": 5 }),
    ] {
        let f = chat(decode(&mut g, &chat_event(odd)));
        assert_eq!(
            f.state,
            StreamState::Error {
                message: "unknown error".into()
            }
        );
    }
}

#[test]
fn malformed_chat_events_are_violations() {
    let mut g = opened();
    for (payload, field) in [
        (json!({ "state": "delta" }), "runId"),
        (json!({ "runId": 5, "state": "delta" }), "runId"),
        (json!({ "runId": "r" }), "state"),
        // The unknown value itself is not echoed (a peer could send anything).
        (json!({ "runId": "r", "state": "started" }), "stream state"),
        (json!({ "runId": "r", "state": "delta", "seq": "3" }), "seq"),
        (json!("r"), "payload"),
        (Value::Null, "payload"),
    ] {
        let frame = json!({ "type": "event", "event": "chat", "payload": payload });
        let detail = malformed(decode(&mut g, &frame.to_string()));
        assert!(detail.contains(field), "{frame}: {detail}");
    }
}

// ---- other events and bad frames ---------------------------------------------------------

#[test]
fn tick_is_a_heartbeat_and_other_events_are_messages() {
    let mut g = opened();
    let tick = r#"{"type":"event","event":"tick","payload":{"ts":1},"seq":5}"#;
    assert!(matches!(decode(&mut g, tick), Decoded::Heartbeat));
    for (raw, expected) in [
        (
            r#"{"type":"event","event":"presence","payload":{"online":2},"seq":6,"stateVersion":{"presence":7}}"#,
            GatewayEvent {
                event: "presence".into(),
                payload: json!({ "online": 2 }).into(),
                seq: Some(6),
                state_version: Some(json!({ "presence": 7 }).into()),
            },
        ),
        (
            r#"{"type":"event","event":"shutdown"}"#,
            GatewayEvent {
                event: "shutdown".into(),
                payload: Value::Null.into(),
                seq: None,
                state_version: None,
            },
        ),
        (
            r#"{"type":"event","event":"health","payload":null,"seq":null,"stateVersion":null}"#,
            GatewayEvent {
                event: "health".into(),
                payload: Value::Null.into(),
                seq: None,
                state_version: None,
            },
        ),
    ] {
        let d = decode(&mut g, raw);
        let Decoded::Message(ev) = d else {
            panic!("{raw} should be a message, got {d:?}")
        };
        assert_eq!(ev, expected);
    }
    // Events are messages in the handshake too.
    let d = decode_in(
        &mut g,
        r#"{"type":"event","event":"agent"}"#,
        Phase::Handshake,
    );
    assert!(matches!(d, Decoded::Message(_)), "{d:?}");
}

#[test]
fn every_malformed_frame_class_is_a_violation() {
    let mut g = opened();
    for (bad, needle) in [
        (r#"{"type":"req","id":"s1","method":"ping"}"#, "request"),
        (r#"{"type":"evt","event":"tick"}"#, "unknown"),
        (r#"{"type":7}"#, "type"),
        (r#"{"event":"tick"}"#, "type"),
        ("[1,2]", "an array"),
        ("42", "a number"),
        (r#""res""#, "a string"),
        ("null", "null"),
        (r#"{"type":"event"}"#, "event"),
        (r#"{"type":"event","event":5}"#, "event"),
        (r#"{"type":"event","event":"tick","seq":"1"}"#, "seq"),
        ("{", "invalid JSON"),
        ("", "invalid JSON"),
    ] {
        let detail = malformed(decode(&mut g, bad));
        assert!(detail.contains(needle), "{bad:?}: {detail}");
    }
    let d = g.decode(DataFrame::Binary(Bytes::from_static(b"{}")), Phase::Open);
    assert!(
        matches!(d, Decoded::Violation(Violation::UnexpectedBinary)),
        "{d:?}"
    );
}

// ---- end to end --------------------------------------------------------------------------

/// Drives a session by hand with virtual time, playing adapter and gateway.
struct Driver {
    s: Session<Gateway>,
    now: Instant,
    conn: ConnId,
}

impl Driver {
    fn new(config: Config) -> Self {
        let s = Session::new(config, Gateway::new(options()), 5).unwrap();
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

    /// Drains the outputs, reporting every write as completed and following every
    /// `OpenTransport`.
    fn drain(&mut self) -> Vec<Output<Gateway>> {
        let mut outs = Vec::new();
        while let Some(o) = self.s.poll_output() {
            outs.push(o);
        }
        for o in &outs {
            match o {
                Output::SendFrame { conn, frame, .. } => {
                    let (conn, frame) = (*conn, *frame);
                    self.s
                        .handle_input(Input::WriteCompleted { conn, frame }, self.now);
                }
                Output::OpenTransport { conn, .. } => self.conn = *conn,
                _ => {}
            }
        }
        outs
    }

    fn receive(&mut self, frame: &str) -> Vec<Output<Gateway>> {
        self.tick();
        let frame = InFrame::Text(Bytes::copy_from_slice(frame.as_bytes()));
        let conn = self.conn;
        self.s
            .handle_input(Input::FrameReceived { conn, frame }, self.now);
        self.drain()
    }

    fn transport_opened(&mut self) -> Vec<Output<Gateway>> {
        self.tick();
        let conn = self.conn;
        self.s
            .handle_input(Input::TransportOpened { conn }, self.now);
        self.drain()
    }

    /// Challenge → connect; returns the connect frame.
    fn challenge(&mut self) -> Value {
        let sent = sent_frames(&self.receive(CHALLENGE));
        assert_eq!(sent.len(), 1, "the challenge is answered by one connect");
        sent.into_iter().next().unwrap()
    }

    fn hello_ok(&mut self, connect_id: &Value) -> Vec<Output<Gateway>> {
        let res = json!({
            "type": "res", "id": connect_id, "ok": true,
            "payload": { "type": "hello-ok", "protocol": 4, "policy": { "tickIntervalMs": 30000, "maxPayload": 1_048_576 } },
        });
        self.receive(&res.to_string())
    }
}

fn sent_frames(outs: &[Output<Gateway>]) -> Vec<Value> {
    outs.iter()
        .filter_map(|o| match o {
            Output::SendFrame { payload, .. } => Some(frame_json(payload)),
            _ => None,
        })
        .collect()
}

fn events(outs: Vec<Output<Gateway>>) -> Vec<Event<Gateway>> {
    outs.into_iter()
        .filter_map(|o| match o {
            Output::Event(e) => Some(e),
            _ => None,
        })
        .collect()
}

#[test]
fn a_chat_run_streams_exactly_once_though_its_events_race_the_response() {
    let mut d = Driver::new(Config::default());
    d.s.connect(d.now).unwrap();
    let _ = d.drain();
    let outs = d.transport_opened();
    assert!(sent_frames(&outs).is_empty(), "the server speaks first");
    assert_eq!(d.s.status(), Status::Connecting);

    let connect = d.challenge();
    assert_eq!(connect["method"], "connect");
    assert_eq!(connect["id"], json!(format!("connect-{}", d.conn.get())));
    let outs = d.hello_ok(&connect["id"]);
    assert_eq!(d.s.status(), Status::Open);
    assert!(
        events(outs)
            .iter()
            .any(|e| matches!(e, Event::Opened { .. }))
    );
    assert_eq!(
        d.s.protocol().hello().unwrap()["policy"]["tickIntervalMs"],
        30000
    );

    // chat.send: the idempotency key is the run id, and events come before the response.
    let id =
        d.s.request(GatewayRequest::chat_send("main", "hi"), None, d.now)
            .unwrap();
    let sent = sent_frames(&d.drain());
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["id"], json!(format!("t{}", id.get())));
    let run = sent[0]["params"]["idempotencyKey"]
        .as_str()
        .expect("a key was inserted")
        .to_owned();

    let chat_frame = |seq: u64, conn_seq: u64, state: &str, extra: Value| {
        let mut payload = json!({ "runId": run, "sessionKey": "main", "seq": seq, "state": state });
        if let (Value::Object(p), Value::Object(e)) = (&mut payload, extra) {
            p.extend(e);
        }
        json!({ "type": "event", "event": "chat", "payload": payload, "seq": conn_seq }).to_string()
    };
    let frames = [
        chat_frame(1, 10, "delta", json!({ "message": "Hel", "deltaText": "Hel" })),
        // The same run event again (broadcast + node send), under another connection seq.
        chat_frame(1, 11, "delta", json!({ "message": "Hel", "deltaText": "Hel" })),
        chat_frame(2, 12, "delta", json!({ "message": { "content": "Hello" }, "deltaText": "lo" })),
        // seq 3 never arrives; seq 4 coalesces two deltas into its cumulative message.
        chat_frame(4, 13, "delta", json!({ "message": { "content": [
            { "type": "text", "text": "Hello, " }, { "type": "text", "text": "wor" }
        ] }, "deltaText": "wor" })),
        json!({ "type": "res", "id": format!("t{}", id.get()), "ok": true, "payload": { "runId": run, "status": "started" } }).to_string(),
        r#"{"type":"event","event":"tick","payload":{"ts":1},"seq":14}"#.to_owned(),
        r#"{"type":"event","event":"presence","payload":{"online":1},"seq":15}"#.to_owned(),
        chat_frame(5, 16, "delta", json!({ "message": { "text": "Hello, world" }, "deltaText": "ld" })),
        chat_frame(6, 17, "error", json!({ "errorMessage": "model crashed" })),
        // A second terminal for the same run.
        chat_frame(7, 18, "error", json!({ "errorMessage": "model crashed again" })),
    ];
    let mut all = Vec::new();
    for frame in &frames {
        all.extend(events(d.receive(frame)));
    }

    let mut rebuilt = String::new();
    let mut terminals = Vec::new();
    let mut gaps = Vec::new();
    let mut responses = Vec::new();
    let mut messages = Vec::new();
    for e in all {
        match e {
            Event::Stream(StreamEvent {
                key, request, kind, ..
            }) => {
                assert_eq!(key.as_str(), run);
                assert_eq!(request, Some(id));
                match kind {
                    StreamEventKind::Delta { text, .. } => {
                        rebuilt.push_str(&text.unwrap_or_default())
                    }
                    StreamEventKind::Gap { expected, received } => gaps.push((expected, received)),
                    k if k.is_terminal() => terminals.push(k),
                    other => panic!("unexpected {other:?}"),
                }
            }
            Event::Response { id: rid, result } => responses.push((rid, result)),
            Event::Message(ev) => messages.push(ev.event),
            other => panic!("unexpected event {other:?}"),
        }
    }
    assert_eq!(rebuilt, "Hello, world");
    assert_eq!(gaps, [(3, 4)]);
    assert_eq!(terminals.len(), 1, "{terminals:?}");
    assert!(matches!(
        &terminals[0],
        StreamEventKind::Error { message, .. } if message == "model crashed"
    ));
    assert_eq!(
        responses,
        [(id, Ok(json!({ "runId": run, "status": "started" }).into()))]
    );
    assert_eq!(messages, ["presence"]);
    let stats = d.s.stats();
    assert_eq!(stats.duplicates_dropped, 1);
    assert_eq!(stats.late_events, 1);
    assert_eq!(d.s.open_streams(), 0);
    assert_eq!(d.s.pending_requests(), 0);

    // An error response resolves its request as a remote failure.
    let id2 =
        d.s.request(GatewayRequest::chat_history("main", Some(5)), None, d.now)
            .unwrap();
    let _ = d.drain();
    let res = json!({ "type": "res", "id": format!("t{}", id2.get()), "ok": false, "error": { "code": "NOT_FOUND", "message": "no session" } });
    let evs = events(d.receive(&res.to_string()));
    assert_eq!(
        evs,
        [Event::Response {
            id: id2,
            result: Err(RequestFailure::Remote(GatewayError {
                code: "NOT_FOUND".into(),
                message: "no session".into(),
                details: None,
                retryable: None,
                retry_after_ms: None,
            })),
        }]
    );

    // Responses to nobody are reported, with the wire id.
    let evs = events(d.receive(r#"{"type":"res","id":"t999","ok":true}"#));
    assert!(
        matches!(
            &evs[..],
            [Event::Violation { violation: Violation::UnknownResponse { wire_id }, .. }] if wire_id == "999"
        ),
        "{evs:?}"
    );
    let evs = events(d.receive(r#"{"type":"res","id":"abc","ok":true}"#));
    assert!(
        matches!(
            &evs[..],
            [Event::Violation { violation: Violation::UnknownResponse { wire_id }, .. }] if wire_id == "abc"
        ),
        "{evs:?}"
    );

    // A repeated hello-ok is a duplicate ack; a server request is malformed.
    let evs = events(d.hello_ok(&connect["id"]));
    assert!(
        matches!(
            &evs[..],
            [Event::Violation {
                violation: Violation::DuplicateAck,
                ..
            }]
        ),
        "{evs:?}"
    );
    let evs = events(d.receive(r#"{"type":"req","id":"s1","method":"ping"}"#));
    assert!(
        matches!(
            &evs[..],
            [Event::Violation {
                violation: Violation::Malformed { .. },
                ..
            }]
        ),
        "{evs:?}"
    );
    assert_eq!(d.s.status(), Status::Open);
}

#[test]
fn a_gateway_still_starting_is_retried_after_its_retry_after() {
    let config = Config {
        retry_first_connect: true,
        ..Config::default()
    };
    let mut d = Driver::new(config);
    d.s.connect(d.now).unwrap();
    let _ = d.drain();
    let first_conn = d.conn;
    let _ = d.transport_opened();
    let connect = d.challenge();
    let res = json!({
        "type": "res", "id": connect["id"], "ok": false,
        "error": { "code": "UNAVAILABLE", "message": "gateway starting", "retryable": true, "retryAfterMs": 2000 },
    });
    let evs = events(d.receive(&res.to_string()));
    let rejected_at = d.now;
    assert!(
        evs.iter().any(|e| matches!(
            e,
            Event::AttemptFailed { error: AttemptError::HandshakeRejected { message }, .. }
                if message == "gateway starting"
        )),
        "{evs:?}"
    );
    assert!(!d.s.status().is_terminal(), "{:?}", d.s.status());

    // Follow the timers to the next attempt: not before the gateway's retryAfterMs.
    let reopened_at = loop {
        let at = d.s.poll_timeout().expect("a timer until the next attempt");
        d.now = at;
        d.s.handle_timeout(at);
        let outs = d.drain();
        if outs
            .iter()
            .any(|o| matches!(o, Output::OpenTransport { .. }))
        {
            break at;
        }
    };
    assert!(reopened_at - rejected_at >= Duration::from_secs(2));

    // The next attempt gets a fresh connect id, and its hello-ok opens the session.
    assert_ne!(d.conn, first_conn);
    let _ = d.transport_opened();
    let connect2 = d.challenge();
    assert_eq!(connect2["id"], json!(format!("connect-{}", d.conn.get())));
    assert_ne!(connect2["id"], connect["id"]);
    assert_eq!(connect2["params"], connect["params"]);
    let _ = d.hello_ok(&connect2["id"]);
    assert_eq!(d.s.status(), Status::Open);
}

// ---- frames captured from the real gateway (openclaw 2026.9.6, protocol 4) ---------------
//
// Captured on loopback by tests/tests/openclaw.rs (`./scripts/interop-openclaw.sh -- --nocapture`).
// Secrets are redacted; hello-ok's long lists (`features.methods`, `features.events`,
// `snapshot`, …) are cut down, every other field is as sent.

const REAL_CHALLENGE: &str = r#"{"type":"event","event":"connect.challenge","payload":{"nonce":"01e5111e-c162-4f51-bb96-3e63899a65be","ts":1795453702402,"capabilities":["model-catalog-snapshot"]}}"#;

const REAL_HELLO_OK: &str = r#"{"type":"res","id":"connect-1","ok":true,"payload":{"type":"hello-ok","protocol":4,"server":{"version":"2026.9.6","buildId":"2026.9.6-release-eb377ac59e6c-2026-09-23T16-33-12.144Z","bootId":"f1acd293-89d0-42fe-941b-d7782ab6f7c3","controlUiBuildSource":"bundled","connId":"b17415a8-8164-4d91-b066-1e0c618e0f01"},"features":{"methods":["health","chat.history","chat.abort","chat.send"],"events":["connect.challenge","chat","presence","tick","shutdown","health"],"capabilities":["chat-send-routing-contract","model-catalog-snapshot"]},"snapshot":{"suspension":{"phase":"accepting"},"stateVersion":{"presence":1,"health":2},"uptimeMs":25393,"sessionDefaults":{"defaultAgentId":"main","modelConfigured":false,"mainKey":"main","mainSessionKey":"agent:main:main","scope":"per-sender"}},"pluginSurfaceUrls":{"canvas":"http://127.0.0.1:18789/__openclaw__/cap/REDACTED"},"auth":{"method":"token","role":"operator","scopes":["operator.read","operator.write"],"recoveryScope":"REDACTED"},"policy":{"maxPayload":26214400,"maxBufferedBytes":52428800,"tickIntervalMs":30000,"attachments":{"maxBytes":19464192,"maxImageBytes":6291456},"allowedSessionVisibilities":["shared","read-only","suggest","draft"],"hasMultipleSessionSharingIdentities":false}}}"#;

const REAL_STARTING: &str = r#"{"type":"res","id":"connect-1","ok":false,"error":{"code":"UNAVAILABLE","message":"gateway starting; retry shortly","retryable":true,"retryAfterMs":500,"details":{"reason":"startup-sidecars"}}}"#;

const REAL_TOKEN_MISMATCH: &str = r#"{"type":"res","id":"connect-1","ok":false,"error":{"code":"INVALID_REQUEST","message":"unauthorized: gateway token mismatch (use this gateway's gateway.auth.token or pair the device)","details":{"code":"AUTH_TOKEN_MISMATCH","authReason":"token_mismatch","canRetryWithDeviceToken":false,"recommendedNextStep":"update_auth_credentials"}}}"#;

const REAL_PROTOCOL_MISMATCH: &str = r#"{"type":"res","id":"connect-1","ok":false,"error":{"code":"INVALID_REQUEST","message":"protocol mismatch","details":{"code":"PROTOCOL_MISMATCH","clientMinProtocol":3,"clientMaxProtocol":3,"expectedProtocol":4,"minimumProbeProtocol":3}}}"#;

fn rejection(d: Decoded<Gateway>) -> Rejection {
    match d {
        Decoded::Rejected(r) => r,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

/// A real gateway opened with the real challenge answered.
fn real_opened() -> Gateway {
    let mut g = Gateway::new(options());
    assert_eq!(g.open(ConnId::from_raw(1)), Ok(Opening::AwaitServer));
    let Decoded::Challenge(reply) = decode_in(&mut g, REAL_CHALLENGE, Phase::Handshake) else {
        panic!("the real challenge must be answered");
    };
    // Exactly the shape the real gateway accepted (its connect schema is closed; `role`
    // is optional, the default `operator` role is what `cli`/`cli` gets).
    assert_eq!(
        frame_json(&reply),
        json!({
            "type": "req", "id": "connect-1", "method": "connect",
            "params": {
                "minProtocol": 4, "maxProtocol": 4,
                "client": { "id": "cli", "version": "1.2.3", "platform": "linux", "mode": "cli" },
                "auth": { "token": "tok-secret" },
                "scopes": ["operator.read", "operator.write"],
            },
        })
    );
    g
}

#[test]
fn the_real_hello_ok_acknowledges_with_a_30_s_tick() {
    let mut g = real_opened();
    let d = decode_in(&mut g, REAL_HELLO_OK, Phase::Handshake);
    assert!(
        matches!(&d, Decoded::Ack(Acked { heartbeat: Some(t), .. }) if *t == Duration::from_secs(30)),
        "{d:?}"
    );
    let hello = g.hello().expect("kept");
    assert_eq!(hello["policy"]["maxPayload"], 26_214_400);
    assert_eq!(hello["auth"]["role"], "operator");
}

#[test]
fn the_real_startup_answer_is_a_retryable_rejection_with_its_floor() {
    let mut g = real_opened();
    assert_eq!(
        rejection(decode_in(&mut g, REAL_STARTING, Phase::Handshake)),
        (Rejection {
            message: "gateway starting; retry shortly".into(),
            fatal: false,
            retry_after: Some(Duration::from_millis(500)),
        })
    );
}

#[test]
fn the_real_auth_and_protocol_mismatches_are_fatal() {
    for (frame, message) in [
        (
            REAL_TOKEN_MISMATCH,
            "unauthorized: gateway token mismatch (use this gateway's gateway.auth.token or pair the device)",
        ),
        (REAL_PROTOCOL_MISMATCH, "protocol mismatch"),
    ] {
        let mut g = real_opened();
        assert_eq!(
            rejection(decode_in(&mut g, frame, Phase::Handshake)),
            (Rejection {
                message: message.into(),
                fatal: true,
                retry_after: None,
            })
        );
    }
}

#[test]
fn real_ticks_are_heartbeats_and_shutdown_is_a_message() {
    let mut g = real_opened();
    let tick = r#"{"type":"event","event":"tick","payload":{"ts":1795453734219},"seq":9}"#;
    assert!(matches!(decode(&mut g, tick), Decoded::Heartbeat));
    let shutdown =
        r#"{"type":"event","event":"shutdown","payload":{"reason":"gateway stopping"},"seq":5}"#;
    let Decoded::Message(ev) = decode(&mut g, shutdown) else {
        panic!("shutdown is a message");
    };
    assert_eq!(ev.event, "shutdown");
    assert_eq!(ev.seq, Some(5));
    assert_eq!(ev.payload, json!({ "reason": "gateway stopping" }));
}

#[test]
fn a_real_scope_error_is_the_gateway_error() {
    let mut g = real_opened();
    let frame = r#"{"type":"res","id":"t1","ok":false,"error":{"code":"FORBIDDEN","message":"missing scope: operator.admin","details":{"code":"MISSING_SCOPE","missingScope":"operator.admin","requiredScopes":["operator.admin"]}}}"#;
    let (id, result) = response(decode(&mut g, frame));
    assert_eq!(id, Ok(RequestId::from_raw(1)));
    let error = result.expect_err("an error");
    assert_eq!(error.code, "FORBIDDEN");
    assert_eq!(
        error.details.as_ref().unwrap()["missingScope"],
        "operator.admin"
    );
}

/// A run on a gateway without a model: two status events (run seq 1, 2), then the run's
/// first `error` (run seq 5: 3 and 4 went to `agent` events), then a second `error` whose
/// run seq starts again at 1. Extra fields (`agentId`, `phase`) are ignored.
#[test]
fn a_real_failed_run_decodes_every_event() {
    let mut g = real_opened();
    let run = "idem-probe-1";
    let frames = [
        (
            r#"{"type":"event","event":"chat","payload":{"runId":"idem-probe-1","sessionKey":"agent:main:main","agentId":"main","seq":1,"state":"status","phase":"preparing_workspace"},"seq":3}"#,
            Some(1),
        ),
        (
            r#"{"type":"event","event":"chat","payload":{"runId":"idem-probe-1","sessionKey":"agent:main:main","agentId":"main","seq":2,"state":"status","phase":"preparing_context"},"seq":6}"#,
            Some(2),
        ),
    ];
    for (frame, seq) in frames {
        let f = chat(decode(&mut g, frame));
        assert_eq!(f.key, StreamKey::from(run));
        assert_eq!(f.seq, seq);
        assert_eq!(f.state, StreamState::Status);
        assert_eq!(f.text, None);
    }
    let first = chat(decode(
        &mut g,
        r#"{"type":"event","event":"chat","payload":{"runId":"idem-probe-1","sessionKey":"agent:main:main","agentId":"main","seq":5,"state":"error","errorMessage":"No route-compatible authentication source is configured for openai."},"seq":11}"#,
    ));
    // A terminal's seq identifies nothing (the second error restarts at 1).
    assert_eq!(first.seq, None);
    assert_eq!(
        first.state,
        StreamState::Error {
            message: "No route-compatible authentication source is configured for openai.".into()
        }
    );
    let second = chat(decode(
        &mut g,
        r#"{"type":"event","event":"chat","payload":{"runId":"idem-probe-1","sessionKey":"agent:main:main","seq":1,"state":"error","errorMessage":"⚠️ Agent failed before reply: No route-compatible authentication source is configured for openai.\nTo view logs, run `openclaw logs --follow` in a terminal."},"seq":12}"#,
    ));
    assert_eq!(second.key, StreamKey::from(run));
    assert!(matches!(second.state, StreamState::Error { .. }));
}

// ---- real runs streamed from a model (openclaw 2026.9.6 with the fake model of
// interop/openclaw/fake-model.mjs), and the chat answers ---------------------------------
//
// The run below answered "Ünïcode ✓ — tether streams 🦀 fine." two code points per model
// chunk: the gateway coalesced the chunks into fewer deltas, skipped run seqs (agent
// events share the counter), sent the response first, and gave the `final` the seq of
// the last delta it flushed (26). The response id is `r1` as captured; the test rewrites
// it to the request's wire id. Two of the interleaved `agent` events are kept.

const REAL_RUN: [&str; 17] = [
    r#"{"type":"res","id":"r1","ok":true,"payload":{"runId":"idem-cap-1","status":"started"}}"#,
    r#"{"type":"event","event":"chat","payload":{"runId":"idem-cap-1","sessionKey":"agent:main:cap1","agentId":"main","seq":1,"state":"status","phase":"preparing_workspace"},"seq":2}"#,
    r#"{"type":"event","event":"agent","payload":{"runId":"idem-cap-1","stream":"run_status","data":{"phase":"preparing_workspace"},"sessionKey":"agent:main:cap1","agentId":"main","seq":1,"ts":1795455965838,"isHeartbeat":false},"seq":3}"#,
    r#"{"type":"event","event":"chat","payload":{"runId":"idem-cap-1","sessionKey":"agent:main:cap1","agentId":"main","seq":2,"state":"status","phase":"preparing_context"},"seq":4}"#,
    r#"{"type":"event","event":"chat","payload":{"runId":"idem-cap-1","sessionKey":"agent:main:cap1","agentId":"main","seq":4,"state":"status","phase":"starting_model"},"seq":7}"#,
    r#"{"type":"event","event":"agent","payload":{"runId":"idem-cap-1","stream":"assistant","data":{"text":"Ün","delta":"Ün","itemId":"bbd130ec-746c-4b17-8597-6e04f2919cd9:1"},"sessionKey":"agent:main:cap1","agentId":"main","seq":6,"ts":1795455967434,"isHeartbeat":false},"seq":10}"#,
    r#"{"type":"event","event":"chat","payload":{"runId":"idem-cap-1","sessionKey":"agent:main:cap1","agentId":"main","seq":6,"state":"delta","deltaText":"Ün","message":{"role":"assistant","content":[{"type":"text","text":"Ün"}],"timestamp":1795455967435}},"seq":11}"#,
    r#"{"type":"event","event":"chat","payload":{"runId":"idem-cap-1","sessionKey":"agent:main:cap1","agentId":"main","seq":8,"state":"delta","deltaText":"ïcod","message":{"role":"assistant","content":[{"type":"text","text":"Ünïcod"}],"timestamp":1795455967511}},"seq":13}"#,
    r#"{"type":"event","event":"chat","payload":{"runId":"idem-cap-1","sessionKey":"agent:main:cap1","agentId":"main","seq":10,"state":"delta","deltaText":"e ✓","message":{"role":"assistant","content":[{"type":"text","text":"Ünïcode ✓"}],"timestamp":1795455967590}},"seq":15}"#,
    r#"{"type":"event","event":"chat","payload":{"runId":"idem-cap-1","sessionKey":"agent:main:cap1","agentId":"main","seq":11,"state":"delta","deltaText":" —","message":{"role":"assistant","content":[{"type":"text","text":"Ünïcode ✓ —"}],"timestamp":1795455967667}},"seq":17}"#,
    r#"{"type":"event","event":"chat","payload":{"runId":"idem-cap-1","sessionKey":"agent:main:cap1","agentId":"main","seq":13,"state":"delta","deltaText":" teth","message":{"role":"assistant","content":[{"type":"text","text":"Ünïcode ✓ — teth"}],"timestamp":1795455967742}},"seq":19}"#,
    r#"{"type":"event","event":"chat","payload":{"runId":"idem-cap-1","sessionKey":"agent:main:cap1","agentId":"main","seq":15,"state":"delta","deltaText":"er s","message":{"role":"assistant","content":[{"type":"text","text":"Ünïcode ✓ — tether s"}],"timestamp":1795455967817}},"seq":21}"#,
    r#"{"type":"event","event":"chat","payload":{"runId":"idem-cap-1","sessionKey":"agent:main:cap1","agentId":"main","seq":17,"state":"delta","deltaText":"trea","message":{"role":"assistant","content":[{"type":"text","text":"Ünïcode ✓ — tether strea"}],"timestamp":1795455967892}},"seq":23}"#,
    r#"{"type":"event","event":"chat","payload":{"runId":"idem-cap-1","sessionKey":"agent:main:cap1","agentId":"main","seq":19,"state":"delta","deltaText":"ms 🦀","message":{"role":"assistant","content":[{"type":"text","text":"Ünïcode ✓ — tether streams 🦀"}],"timestamp":1795455967968}},"seq":25}"#,
    r#"{"type":"event","event":"chat","payload":{"runId":"idem-cap-1","sessionKey":"agent:main:cap1","agentId":"main","seq":21,"state":"delta","deltaText":" fin","message":{"role":"assistant","content":[{"type":"text","text":"Ünïcode ✓ — tether streams 🦀 fin"}],"timestamp":1795455968043}},"seq":27}"#,
    r#"{"type":"event","event":"chat","payload":{"runId":"idem-cap-1","sessionKey":"agent:main:cap1","agentId":"main","seq":26,"state":"delta","deltaText":"e.","message":{"role":"assistant","content":[{"type":"text","text":"Ünïcode ✓ — tether streams 🦀 fine."}],"timestamp":1795455968199}},"seq":33}"#,
    r#"{"type":"event","event":"chat","payload":{"runId":"idem-cap-1","sessionKey":"agent:main:cap1","agentId":"main","seq":26,"state":"final","stopReason":"stop","message":{"role":"assistant","content":[{"type":"text","text":"Ünïcode ✓ — tether streams 🦀 fine."}],"timestamp":1795455968199}},"seq":34}"#,
];

const REAL_REPLY: &str = "Ünïcode ✓ — tether streams 🦀 fine.";

/// Opens a driver's session against the synthetic challenge and hello-ok.
fn open_driver() -> Driver {
    let mut d = Driver::new(Config::default());
    d.s.connect(d.now).unwrap();
    let _ = d.drain();
    let _ = d.transport_opened();
    let connect = d.challenge();
    let _ = d.hello_ok(&connect["id"]);
    assert_eq!(d.s.status(), Status::Open);
    d
}

/// Sends `request` and returns its id and wire id.
fn send_request(d: &mut Driver, request: GatewayRequest) -> (RequestId, String) {
    let id = d.s.request(request, None, d.now).unwrap();
    let sent = sent_frames(&d.drain());
    assert_eq!(sent.len(), 1);
    (id, sent[0]["id"].as_str().unwrap().to_owned())
}

#[test]
fn a_real_run_whose_final_shares_the_last_deltas_seq_ends_with_the_whole_text() {
    let mut d = open_driver();
    let (id, wire) = send_request(
        &mut d,
        GatewayRequest::chat_send_with_key("agent:main:cap1", "stream", "idem-cap-1"),
    );
    let mut all = Vec::new();
    for frame in REAL_RUN {
        all.extend(events(d.receive(
            &frame.replace(r#""id":"r1""#, &format!(r#""id":"{wire}""#)),
        )));
    }
    let mut rebuilt = String::new();
    let mut finals = Vec::new();
    let mut gaps = 0;
    let mut statuses = 0;
    let mut agent_events = 0;
    let mut ack = None;
    for e in all {
        match e {
            Event::Stream(StreamEvent { kind, request, .. }) => {
                assert_eq!(request, Some(id));
                match kind {
                    StreamEventKind::Status(_) => statuses += 1,
                    StreamEventKind::Delta { text, .. } => rebuilt.push_str(&text.unwrap()),
                    StreamEventKind::Gap { .. } => gaps += 1,
                    StreamEventKind::Final { text, .. } => finals.push(text),
                    other => panic!("unexpected {other:?}"),
                }
            }
            Event::Response { id: rid, result } => {
                assert_eq!(rid, id);
                ack = Some(result.unwrap().decode::<ChatSendAck>().unwrap());
            }
            Event::Message(ev) => {
                assert_eq!(ev.event, "agent");
                agent_events += 1;
            }
            other => panic!("unexpected event {other:?}"),
        }
    }
    assert_eq!(rebuilt, REAL_REPLY, "the deltas rebuild the reply exactly");
    assert_eq!(
        finals,
        [Some(REAL_REPLY.to_owned())],
        "one final, though it shares seq 26 with the last delta"
    );
    assert_eq!(statuses, 3);
    assert!(gaps > 0, "the real run skips seqs");
    assert_eq!(agent_events, 2);
    assert_eq!(
        ack,
        Some(ChatSendAck {
            run_id: "idem-cap-1".into(),
            status: "started".into()
        })
    );
    assert_eq!(d.s.open_streams(), 0);
    assert_eq!(d.s.stats().duplicates_dropped, 0);
}

const REAL_ABORT_DELTA: &str = r#"{"type":"event","event":"chat","payload":{"runId":"run-5","sessionKey":"agent:main:s3","agentId":"main","seq":18,"state":"delta","deltaText":"ord","message":{"role":"assistant","content":[{"type":"text","text":"word word word word word word word word"}],"timestamp":1795455506234}},"seq":32}"#;
const REAL_ABORTED: &str = r#"{"type":"event","event":"chat","payload":{"runId":"run-5","sessionKey":"agent:main:s3","agentId":"main","seq":19,"state":"aborted","stopReason":"rpc","message":{"role":"assistant","content":[{"type":"text","text":"word word word word word word word word"}],"timestamp":1795455506382}},"seq":33}"#;
const REAL_AGENT_WAIT: &str = r#"{"type":"res","id":"r2","ok":true,"payload":{"runId":"run-5","status":"error","startedAt":1795455503330,"endedAt":1795455506383,"stopReason":"rpc"}}"#;
const REAL_ABORT_ANSWER: &str =
    r#"{"type":"res","id":"r4","ok":true,"payload":{"ok":true,"aborted":true,"runIds":["run-5"]}}"#;

/// `chat.abort` mid-run: the `aborted` event (with the text so far) arrives before the
/// abort's answer, and a pending `agent.wait` on the run is answered `error`/`rpc`.
#[test]
fn a_real_aborted_run_ends_aborted_before_the_abort_answer() {
    let mut d = open_driver();
    let (run, _) = send_request(
        &mut d,
        GatewayRequest::chat_send_with_key("agent:main:s3", "stream slowly", "run-5"),
    );
    let (wait, wait_wire) = send_request(
        &mut d,
        GatewayRequest::agent_wait("run-5", Duration::from_secs(30)),
    );
    let (abort, abort_wire) = send_request(
        &mut d,
        GatewayRequest::chat_abort("agent:main:s3", Some("run-5".into())),
    );
    let mut all = Vec::new();
    all.extend(events(d.receive(REAL_ABORT_DELTA)));
    all.extend(events(d.receive(REAL_ABORTED)));
    all.extend(events(
        d.receive(&REAL_AGENT_WAIT.replace("r2", &wait_wire)),
    ));
    all.extend(events(
        d.receive(&REAL_ABORT_ANSWER.replace("r4", &abort_wire)),
    ));
    let kinds: Vec<&str> = all
        .iter()
        .map(|e| match e {
            Event::Stream(StreamEvent {
                kind: StreamEventKind::Delta { .. },
                ..
            }) => "delta",
            Event::Stream(StreamEvent {
                kind: StreamEventKind::Aborted(_),
                request,
                ..
            }) => {
                assert_eq!(*request, Some(run));
                "aborted"
            }
            Event::Response { id, .. } if *id == wait => "wait",
            Event::Response { id, .. } if *id == abort => "abort",
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(kinds, ["delta", "aborted", "wait", "abort"]);
    let answer = |id: RequestId| {
        all.iter()
            .find_map(|e| match e {
                Event::Response { id: rid, result } if *rid == id => result.clone().ok().map(value),
                _ => None,
            })
            .unwrap()
    };
    assert_eq!(answer(wait)["status"], "error");
    assert_eq!(answer(wait)["stopReason"], "rpc");
    assert_eq!(
        ChatAbortResult::from_payload(&answer(abort)),
        Ok(ChatAbortResult {
            aborted: true,
            run_ids: vec!["run-5".into()]
        })
    );
    assert_eq!(d.s.open_streams(), 0);
    assert_eq!(
        d.s.pending_requests(),
        1,
        "chat.send was never answered here"
    );
}

const REAL_INJECTED: &str = r#"{"type":"event","event":"chat","payload":{"runId":"inject-66dec7d7-5f17-4ab0-9195-b4be8d2b220a","sessionKey":"agent:main:s2","agentId":"main","seq":0,"state":"final","message":{"role":"assistant","content":[{"type":"text","text":"[tether]\n\ninjected text"}],"timestamp":1795455903822,"stopReason":"stop","usage":{"input":0,"output":0,"totalTokens":0,"cacheRead":0,"cacheWrite":0,"cost":{"input":0,"output":0,"cacheRead":0,"cacheWrite":0,"total":0}},"api":"openai-responses","provider":"openclaw","model":"gateway-injected"}},"seq":1}"#;
const REAL_INJECT_ANSWER: &str = r#"{"type":"res","id":"r1","ok":true,"payload":{"ok":true,"messageId":"66dec7d7-5f17-4ab0-9195-b4be8d2b220a"}}"#;

/// `chat.inject` (scope `operator.admin`): a `final` chat event under a run of its own
/// comes first, unsolicited, then the answer with the message id.
#[test]
fn a_real_injected_message_is_an_unsolicited_final_then_the_answer() {
    let mut d = open_driver();
    let (id, wire) = send_request(
        &mut d,
        GatewayRequest::chat_inject("agent:main:s2", "injected text", Some("tether".into())),
    );
    let evs = events(d.receive(REAL_INJECTED));
    let [Event::Unsolicited(ev)] = &evs[..] else {
        panic!("expected one unsolicited event, got {evs:?}");
    };
    let payload = ev.payload.value().expect("JSON");
    assert_eq!(payload["state"], "final");
    assert_eq!(
        ChatMessage::text_of(&payload["message"]).as_deref(),
        Some("[tether]\n\ninjected text")
    );
    let evs = events(d.receive(&REAL_INJECT_ANSWER.replace("r1", &wire)));
    let [
        Event::Response {
            id: rid,
            result: Ok(payload),
        },
    ] = &evs[..]
    else {
        panic!("expected the answer, got {evs:?}");
    };
    assert_eq!(*rid, id);
    assert_eq!(
        ChatInjectAck::from_payload(&payload.value().expect("JSON")),
        Ok(ChatInjectAck {
            message_id: "66dec7d7-5f17-4ab0-9195-b4be8d2b220a".into()
        })
    );
}

// ---- typed requests and answers ----------------------------------------------------------

#[test]
fn agent_wait_is_encoded_with_exactly_the_documented_fields() {
    let mut g = opened();
    let encoded = encode(
        &mut g,
        4,
        GatewayRequest::agent_wait("run-1", Duration::from_millis(1500)),
    );
    assert_eq!(encoded.stream, None);
    assert_eq!(
        frame_json(&encoded.frame),
        json!({ "type": "req", "id": "t4", "method": "agent.wait",
                "params": { "runId": "run-1", "timeoutMs": 1500 } })
    );
}

/// A real `chat.history` answer, cut down (`defaults`, `sessionInfo` and the message
/// bookkeeping under `__openclaw` are left out).
const REAL_HISTORY: &str = r#"{"sessionKey":"agent:main:s2","sessionId":"48c19ba6-c0b6-46e7-b572-d8d5b7eaca02","messages":[{"role":"user","content":"TETHER-STREAM {\"reply\":\"Hello\"}","timestamp":1795455491100},{"role":"assistant","content":[{"type":"text","text":"Hello from the fake model: one two three four five six seven."}],"api":"openai-completions","provider":"tether","model":"fake","stopReason":"stop","timestamp":1795455491348,"responseId":"chatcmpl-tether-1"}],"pendingInputs":{"items":[],"total":0},"hasMore":false,"totalMessages":2}"#;

#[test]
fn the_chat_answers_are_read_into_their_types() {
    let history = ChatHistory::from_payload(&serde_json::from_str(REAL_HISTORY).unwrap()).unwrap();
    assert_eq!(history.session_key, "agent:main:s2");
    assert_eq!(history.has_more, Some(false));
    assert_eq!(history.messages.len(), 2);
    assert_eq!(history.messages[0].role.as_deref(), Some("user"));
    assert_eq!(
        history.last_text("assistant"),
        Some("Hello from the fake model: one two three four five six seven.")
    );
    assert_eq!(history.last_text("system"), None);
    assert_eq!(
        history.messages[1].message["responseId"], "chatcmpl-tether-1",
        "the whole entry is kept"
    );

    let empty = ChatHistory::from_payload(&json!({"sessionKey": "k", "messages": []})).unwrap();
    assert!(empty.messages.is_empty());
    assert_eq!(empty.has_more, None);

    let nothing =
        ChatAbortResult::from_payload(&json!({"ok": true, "aborted": false, "runIds": []}));
    assert_eq!(
        nothing,
        Ok(ChatAbortResult {
            aborted: false,
            run_ids: vec![]
        })
    );
    let no_ids = ChatAbortResult::from_payload(&json!({"aborted": true}));
    assert_eq!(no_ids.map(|r| r.run_ids), Ok(vec![]));
}

#[test]
fn answers_of_the_wrong_shape_name_the_field_and_never_its_value() {
    let secret = "s3cret-value";
    let cases: Vec<(Result<(), UnexpectedPayload>, &str, &str)> = vec![
        (
            ChatSendAck::from_payload(&json!({"runId": 5, "status": secret})).map(drop),
            "chat.send",
            "`runId` is a number, not a string",
        ),
        (
            ChatSendAck::from_payload(&json!({"runId": secret})).map(drop),
            "chat.send",
            "no `status`",
        ),
        (
            ChatSendAck::from_payload(&json!(secret)).map(drop),
            "chat.send",
            "the payload is a string, not an object",
        ),
        (
            ChatHistory::from_payload(&json!({"sessionKey": "k", "messages": secret})).map(drop),
            "chat.history",
            "`messages` is a string, not an array",
        ),
        (
            ChatHistory::from_payload(&json!({"sessionKey": "k"})).map(drop),
            "chat.history",
            "no `messages`",
        ),
        (
            ChatAbortResult::from_payload(&json!({"aborted": secret})).map(drop),
            "chat.abort",
            "`aborted` is missing or not a boolean",
        ),
        (
            ChatAbortResult::from_payload(&json!({"aborted": true, "runIds": [1]})).map(drop),
            "chat.abort",
            "`runIds` holds something other than strings",
        ),
        (
            ChatInjectAck::from_payload(&json!({"ok": true})).map(drop),
            "chat.inject",
            "no `messageId`",
        ),
    ];
    for (result, method, detail) in cases {
        let e = result.expect_err("the wrong shape is refused");
        assert_eq!(e.method, method);
        assert_eq!(e.detail, detail);
        assert!(!e.to_string().contains(secret), "{e}");
    }
}

#[test]
fn without_ticks_as_heartbeat_the_real_hello_ok_declares_no_heartbeat() {
    let mut g = Gateway::new(GatewayOptions {
        ticks_as_heartbeat: false,
        ..options()
    });
    g.open(ConnId::from_raw(1)).unwrap();
    assert!(matches!(
        decode_in(&mut g, REAL_CHALLENGE, Phase::Handshake),
        Decoded::Challenge(_)
    ));
    let d = decode_in(&mut g, REAL_HELLO_OK, Phase::Handshake);
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
    // The interval is still there for whoever wants it, and ticks are still life.
    assert_eq!(g.hello().unwrap()["policy"]["tickIntervalMs"], 30000);
    let tick = r#"{"type":"event","event":"tick","payload":{"ts":1795453734219},"seq":9}"#;
    assert!(matches!(decode(&mut g, tick), Decoded::Heartbeat));
}

/// In a session: with ticks as the heartbeat, a silent gateway is declared dead after
/// 2 × 30 s; without, after the configured `stale_after`.
#[test]
fn ticks_as_heartbeat_decides_how_long_a_silent_gateway_lives() {
    for (ticks, dead_after) in [(true, 60), (false, 3)] {
        let config = Config::builder()
            .ping_interval(Some(Duration::from_secs(1)))
            .stale_after(Duration::from_secs(3))
            .build()
            .unwrap();
        let s = Session::new(
            config,
            Gateway::new(GatewayOptions {
                ticks_as_heartbeat: ticks,
                ..options()
            }),
            5,
        )
        .unwrap();
        #[allow(clippy::disallowed_methods)]
        let now = Instant::now();
        let mut d = Driver {
            s,
            now,
            conn: ConnId::from_raw(u64::MAX),
        };
        d.s.connect(d.now).unwrap();
        let _ = d.drain();
        let _ = d.transport_opened();
        let connect = d.challenge();
        let _ = d.hello_ok(&connect["id"]);
        let opened_at = d.now;
        // No frame ever arrives again (pings go unanswered): follow the timers.
        let died_at = (0..1000)
            .find_map(|_| {
                let at = d.s.poll_timeout().expect("a liveness timer");
                d.now = at;
                d.s.handle_timeout(at);
                d.drain()
                    .iter()
                    .any(|o| matches!(o, Output::AbortTransport { .. }))
                    .then_some(at)
            })
            .expect("declared dead");
        assert_eq!(
            died_at - opened_at,
            Duration::from_secs(dead_after),
            "ticks_as_heartbeat: {ticks}"
        );
    }
}

// ---- stream keys, run ids and challenges through the session (issue 11) -----------------

impl Driver {
    /// Connects, answers the challenge and opens.
    fn open(config: Config) -> Self {
        let mut d = Driver::new(config);
        d.s.connect(d.now).unwrap();
        let _ = d.drain();
        let _ = d.transport_opened();
        let connect = d.challenge();
        let _ = d.hello_ok(&connect["id"]);
        assert_eq!(d.s.status(), Status::Open);
        d
    }

    fn chat(&mut self, run: &str, seq: u64, state: &str, extra: Value) -> Vec<Event<Gateway>> {
        let mut payload = json!({ "runId": run, "sessionKey": "main", "seq": seq, "state": state });
        if let (Value::Object(p), Value::Object(e)) = (&mut payload, extra) {
            p.extend(e);
        }
        let frame = json!({ "type": "event", "event": "chat", "payload": payload });
        events(self.receive(&frame.to_string()))
    }

    fn answer(&mut self, id: RequestId, run: &str) -> Vec<Event<Gateway>> {
        let res = json!({ "type": "res", "id": format!("t{}", id.get()), "ok": true, "payload": { "runId": run, "status": "started" } });
        events(self.receive(&res.to_string()))
    }
}

fn stream_of(evs: &[Event<Gateway>]) -> Vec<(Option<RequestId>, StreamEventKind<GatewayEvent>)> {
    evs.iter()
        .filter_map(|e| match e {
            Event::Stream(s) => Some((s.request, s.kind.clone())),
            _ => None,
        })
        .collect()
}

/// C7 / L2: a second `chat_send_with_key` on a key whose stream is open is refused, typed;
/// the first request keeps its stream and gets its terminal. Once it has ended, the key
/// can be used again.
#[test]
fn a_second_request_on_an_open_stream_key_is_refused() {
    let mut d = Driver::open(Config::default());
    let first =
        d.s.request(
            GatewayRequest::chat_send_with_key("main", "a", "k1"),
            None,
            d.now,
        )
        .unwrap();
    let _ = d.drain();
    assert_eq!(
        d.s.request(
            GatewayRequest::chat_send_with_key("main", "b", "k1"),
            None,
            d.now
        ),
        Err(tether_core::RequestError::StreamKeyInUse)
    );
    let _ = d.answer(first, "k1");
    let mut evs = d.chat("k1", 1, "delta", json!({ "message": "He" }));
    evs.extend(d.chat("k1", 2, "final", json!({ "message": "Hey" })));
    let got = stream_of(&evs);
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got.iter().all(|(r, _)| *r == Some(first)), "{got:?}");
    assert!(matches!(got[1].1, StreamEventKind::Final { .. }));
    // Ended: the key is free again.
    d.s.request(
        GatewayRequest::chat_send_with_key("main", "c", "k1"),
        None,
        d.now,
    )
    .expect("the key is free once its stream ended");
}

/// A key a response aliased to a live stream (its run id) is in use too.
#[test]
fn a_run_id_aliased_to_an_open_stream_is_in_use() {
    let mut d = Driver::open(Config::default());
    let first =
        d.s.request(
            GatewayRequest::chat_send_with_key("main", "a", "idem"),
            None,
            d.now,
        )
        .unwrap();
    let _ = d.drain();
    let _ = d.answer(first, "run-9");
    assert_eq!(
        d.s.request(
            GatewayRequest::chat_send_with_key("main", "b", "run-9"),
            None,
            d.now
        ),
        Err(tether_core::RequestError::StreamKeyInUse)
    );
}

/// C8 / L3: the terminal arrives under the key before the response, and the response then
/// names another run id. No alias stream is registered, so nothing ends a second time,
/// not even by idle timeout.
#[test]
fn a_run_id_answered_after_the_terminal_starts_no_second_stream() {
    let mut d = Driver::open(Config::default());
    let id =
        d.s.request(
            GatewayRequest::chat_send_with_key("main", "a", "idem"),
            None,
            d.now,
        )
        .unwrap();
    let _ = d.drain();
    let mut evs = d.chat("idem", 1, "final", json!({ "message": "done" }));
    evs.extend(d.answer(id, "other"));
    assert_eq!(d.s.open_streams(), 0, "no alias stream");
    // 400 s of ticks (the stream idle timeout is 5 min).
    for _ in 0..400 {
        d.now += Duration::from_secs(1);
        evs.extend(events(
            d.receive(r#"{"type":"event","event":"tick","payload":{"ts":1}}"#),
        ));
    }
    let terminals: Vec<_> = stream_of(&evs)
        .into_iter()
        .filter(|(_, k)| k.is_terminal())
        .collect();
    assert_eq!(terminals.len(), 1, "{terminals:?}");
    assert!(matches!(terminals[0], (Some(r), StreamEventKind::Final { .. }) if r == id));
}

/// B1: `chat.send` answered with a `runId` that differs from its idempotency key: every
/// event under the run id reaches the caller's stream (the remap), none is unsolicited.
#[test]
fn events_under_the_answered_run_id_reach_the_callers_stream() {
    let mut d = Driver::open(Config::default());
    let id =
        d.s.request(
            GatewayRequest::chat_send_with_key("main", "a", "idem-7"),
            None,
            d.now,
        )
        .unwrap();
    let _ = d.drain();
    let mut evs = d.answer(id, "run-7");
    evs.extend(d.chat("run-7", 1, "delta", json!({ "message": "Hel" })));
    evs.extend(d.chat("run-7", 2, "delta", json!({ "message": "Hello" })));
    evs.extend(d.chat("run-7", 3, "final", json!({ "message": "Hello!" })));
    assert!(
        !evs.iter().any(|e| matches!(e, Event::Unsolicited(_))),
        "{evs:?}"
    );
    let got = stream_of(&evs);
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(got.iter().all(|(r, _)| *r == Some(id)));
    assert!(matches!(
        &got[2].1,
        StreamEventKind::Final { text: Some(t), .. } if t == "Hello!"
    ));
    assert_eq!(d.s.open_streams(), 0);
}

/// C9 / U4: 10,000 `connect.challenge` frames during the handshake. The first is
/// answered; every repeat is a violation, not another `connect` write, so pending writes
/// stay within `max_pending_writes`.
#[test]
fn only_one_challenge_is_answered_per_connection() {
    let cfg = Config::builder().max_pending_writes(8).build().unwrap();
    let mut d = Driver::new(cfg);
    d.s.connect(d.now).unwrap();
    let _ = d.drain();
    let _ = d.transport_opened();
    let mut connects = 0;
    let mut violations = 0;
    // All within the handshake timeout: a flood, not a slow drip.
    for _ in 0..10_000 {
        let frame = InFrame::Text(Bytes::from_static(CHALLENGE.as_bytes()));
        let conn = d.conn;
        d.s.handle_input(Input::FrameReceived { conn, frame }, d.now);
        // Writes are not completed here: a stuck socket is the worst case.
        while let Some(o) = d.s.poll_output() {
            match o {
                Output::SendFrame { .. } => connects += 1,
                Output::Event(Event::Violation {
                    violation: Violation::UnexpectedHandshake,
                    ..
                }) => violations += 1,
                _ => {}
            }
        }
        assert!(d.s.pending_writes() <= 1, "{}", d.s.pending_writes());
    }
    assert_eq!(connects, 1);
    assert_eq!(violations, 9_999);
    assert_eq!(d.s.status(), Status::Connecting);
}

/// A new connection's challenge is answered again.
#[test]
fn the_next_connection_answers_its_own_challenge() {
    let mut d = Driver::open(Config::default());
    let conn = d.conn;
    d.s.handle_input(
        Input::TransportClosed {
            conn,
            code: Some(tether_core::CloseCode(1012)),
            reason: String::new(),
        },
        d.now,
    );
    let _ = d.drain();
    d.now += Duration::from_secs(60);
    d.s.handle_timeout(d.now);
    let _ = d.drain();
    assert_ne!(d.conn, conn, "a new attempt");
    let _ = d.transport_opened();
    let connect = d.challenge();
    let _ = d.hello_ok(&connect["id"]);
    assert_eq!(d.s.status(), Status::Open);
}
