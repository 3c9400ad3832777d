//! Typed payloads (issue 14, item 3): `HelloAck` and `Gateway` messages, stream events
//! and responses decode into the application's own `serde::Deserialize` types, and a
//! payload of another shape is an error of that decode alone: the session delivers the
//! event, reports no violation, stays open and goes on delivering.

mod common;

use common::*;
use serde::Deserialize;
use serde_json::json;
use tether_core::profiles::{
    ChatSendAck, Gateway, GatewayEvent, GatewayOptions, GatewayRequest, HelloAck, HelloAckRequest,
    JsonPayload,
};
use tether_core::{Config, Event, Output, Protocol, RequestFailure, Status, StreamEventKind};

/// An application's message type, borrowing its text from the frame.
#[derive(Debug, Deserialize, PartialEq)]
struct Quote<'a> {
    symbol: &'a str,
    price: f64,
}

/// An application's response type, owning its fields.
#[derive(Debug, Deserialize, PartialEq)]
struct Balance {
    account: String,
    cents: u64,
}

fn violations<P: Protocol>(h: &H<P>) -> usize {
    h.events()
        .iter()
        .filter(|e| matches!(e, Event::Violation { .. }))
        .count()
}

fn messages<P: Protocol>(out: &[Output<P>]) -> Vec<P::Inbound> {
    events(out)
        .into_iter()
        .filter_map(|e| match e {
            Event::Message(m) => Some(m),
            _ => None,
        })
        .collect()
}

fn response<P: Protocol>(out: &[Output<P>]) -> Result<P::Response, RequestFailure<P::RemoteError>> {
    events(out)
        .into_iter()
        .find_map(|e| match e {
            Event::Response { result, .. } => Some(result),
            _ => None,
        })
        .expect("a response event")
}

// ---- HelloAck ----------------------------------------------------------------------------

fn hello_ack_open() -> H<HelloAck> {
    let mut h = H::with(
        Config::default(),
        HelloAck::new(|| json!({ "client": "typed" })),
        7,
    );
    h.connect();
    h.opened();
    h.frame(r#"{"type":"hello_ack"}"#);
    assert_eq!(h.s.status(), Status::Open);
    h
}

#[test]
fn hello_ack_message_and_response_decode_into_the_applications_types() {
    let mut h = hello_ack_open();

    let out = h.frame(r#"{"type":"quote","symbol":"ACME","price":12.5}"#);
    let [quote] = messages(&out).try_into().expect("one message");
    assert_eq!(
        quote.decode::<Quote<'_>>().expect("a quote"),
        Quote {
            symbol: "ACME",
            price: 12.5
        }
    );
    // The `Value` path is kept.
    assert_eq!(quote.value().expect("JSON")["symbol"], "ACME");

    let id =
        h.s.request(HelloAckRequest::new("balance", json!({})), None, h.now)
            .expect("an open session takes a request");
    h.drain();
    let out = h.frame(&format!(
        r#"{{"type":"response","id":{},"result":{{"account":"a-1","cents":1250}},"error":null}}"#,
        id.get()
    ));
    let result = response(&out).expect("a success");
    assert_eq!(
        result.decode::<Balance>().expect("a balance"),
        Balance {
            account: "a-1".into(),
            cents: 1250
        }
    );
    assert_eq!(violations(&h), 0);
}

#[test]
fn hello_ack_payload_of_another_shape_is_an_error_of_that_decode_not_a_violation() {
    let mut h = hello_ack_open();

    // A quote whose price is a string: the session delivers it as a message…
    let out = h.frame(r#"{"type":"quote","symbol":"ACME","price":"12.5"}"#);
    let [bad] = messages(&out).try_into().expect("the message is delivered");
    // …and decoding it is what fails, with a typed error naming the type, not the value.
    let err = bad.decode::<Quote<'_>>().expect_err("a string is no price");
    assert!(err.is_mismatch());
    assert!(err.target().contains("Quote"), "{}", err.target());
    assert!(err.to_string().contains("Quote"), "{err}");
    assert!(!err.to_string().contains("12.5"), "the value leaked: {err}");

    // A response whose result is of another shape: the request is answered all the same.
    let id =
        h.s.request(HelloAckRequest::new("balance", json!({})), None, h.now)
            .expect("an open session takes a request");
    h.drain();
    let out = h.frame(&format!(
        r#"{{"type":"response","id":{},"result":[1,2,3]}}"#,
        id.get()
    ));
    let result = response(&out).expect("the peer answered with a success");
    assert!(result.decode::<Balance>().is_err());
    assert_eq!(result, json!([1, 2, 3]));

    // No violation, the session is open, and the next message flows.
    assert_eq!(violations(&h), 0);
    assert_eq!(h.s.stats().violations, 0);
    assert_eq!(h.s.status(), Status::Open);
    let out = h.frame(r#"{"type":"quote","symbol":"XYZ","price":1}"#);
    let [good] = messages(&out)
        .try_into()
        .expect("the next message is delivered");
    assert_eq!(good.decode::<Quote<'_>>().expect("a quote").symbol, "XYZ");
}

#[test]
fn hello_ack_stream_events_and_remote_errors_decode_too() {
    #[derive(Debug, Deserialize, PartialEq)]
    struct Token {
        seq: u64,
        text: String,
    }
    #[derive(Debug, Deserialize, PartialEq)]
    struct Failure {
        code: u16,
    }
    let mut h = hello_ack_open();
    let id =
        h.s.request(
            HelloAckRequest::new("generate", json!({})).streaming(),
            None,
            h.now,
        )
        .expect("an open session takes a request");
    h.drain();
    let out = h.frame(&format!(
        r#"{{"type":"event","stream":"{}","seq":1,"state":"delta","text":"hel"}}"#,
        id.get()
    ));
    let payload = events(&out)
        .into_iter()
        .find_map(|e| match e {
            Event::Stream(ev) => match ev.kind {
                StreamEventKind::Delta { payload, .. } => Some(payload),
                _ => None,
            },
            _ => None,
        })
        .expect("a delta");
    assert_eq!(
        payload.decode::<Token>().expect("a token"),
        Token {
            seq: 1,
            text: "hel".into()
        }
    );
    assert!(payload.decode::<Balance>().is_err());

    let id =
        h.s.request(HelloAckRequest::new("fail", json!({})), None, h.now)
            .expect("an open session takes a request");
    h.drain();
    let out = h.frame(&format!(
        r#"{{"type":"response","id":{},"error":{{"code":429}}}}"#,
        id.get()
    ));
    let Err(RequestFailure::Remote(error)) = response(&out) else {
        panic!("a remote error")
    };
    assert_eq!(
        error.decode::<Failure>().expect("a failure"),
        Failure { code: 429 }
    );
    assert_eq!(violations(&h), 0);
    assert_eq!(h.s.status(), Status::Open);
}

// ---- Gateway -----------------------------------------------------------------------------

fn gateway_open() -> H<Gateway> {
    let mut h = H::with(
        Config::default(),
        Gateway::new(GatewayOptions::default()),
        7,
    );
    h.connect();
    h.opened();
    let out = h.frame(r#"{"type":"event","event":"connect.challenge","payload":{"nonce":"n"}}"#);
    let connect: serde_json::Value =
        serde_json::from_str(&sent_texts(&out)[0]).expect("the connect request is JSON");
    h.frame(&format!(
        r#"{{"type":"res","id":{},"ok":true,"payload":{{"type":"hello-ok","policy":{{"tickIntervalMs":30000}}}}}}"#,
        connect["id"]
    ));
    assert_eq!(h.s.status(), Status::Open);
    h
}

#[derive(Debug, Deserialize, PartialEq)]
struct Presence<'a> {
    #[serde(borrow)]
    presence: Vec<Host<'a>>,
}

#[derive(Debug, Deserialize, PartialEq)]
struct Host<'a> {
    host: &'a str,
    ts: u64,
}

#[test]
fn gateway_event_and_response_decode_into_the_applications_types() {
    let mut h = gateway_open();
    let out = h.frame(
        r#"{"type":"event","event":"presence","payload":{"presence":[{"host":"a1","ts":1}]},"seq":1,"stateVersion":{"presence":3}}"#,
    );
    let [event]: [GatewayEvent; 1] = messages(&out).try_into().expect("one event");
    assert_eq!(event.event, "presence");
    assert_eq!(
        event.decode::<Presence<'_>>().expect("a presence"),
        Presence {
            presence: vec![Host { host: "a1", ts: 1 }]
        }
    );
    assert_eq!(
        event.state_version.as_ref().map(JsonPayload::as_str),
        Some(r#"{"presence":3}"#)
    );

    // A chat.send answer, typed by the profile's own `ChatSendAck`.
    let id =
        h.s.request(
            GatewayRequest::chat_send_with_key("agent:main:main", "hi", "run-1"),
            None,
            h.now,
        )
        .expect("an open session takes a request");
    h.drain();
    let out = h.frame(&format!(
        r#"{{"type":"res","id":"t{}","ok":true,"payload":{{"runId":"run-1","status":"started"}}}}"#,
        id.get()
    ));
    let ack = response(&out).expect("a success");
    assert_eq!(
        ack.decode::<ChatSendAck>().expect("a chat.send answer"),
        ChatSendAck {
            run_id: "run-1".into(),
            status: "started".into()
        }
    );
    assert_eq!(violations(&h), 0);
}

#[test]
fn gateway_payload_of_another_shape_is_an_error_of_that_decode_not_a_violation() {
    let mut h = gateway_open();
    let out =
        h.frame(r#"{"type":"event","event":"presence","payload":{"presence":"everyone"},"seq":1}"#);
    let [event]: [GatewayEvent; 1] = messages(&out).try_into().expect("the event is delivered");
    let err = event
        .decode::<Presence<'_>>()
        .expect_err("a string is no list");
    assert!(err.is_mismatch() && err.target().contains("Presence"));
    assert!(
        !err.to_string().contains("everyone"),
        "the value leaked: {err}"
    );

    let id =
        h.s.request(GatewayRequest::new("health", None), None, h.now)
            .expect("an open session takes a request");
    h.drain();
    let out = h.frame(&format!(
        r#"{{"type":"res","id":"t{}","ok":true,"payload":{{"runId":5}}}}"#,
        id.get()
    ));
    let answer = response(&out).expect("the gateway answered with a success");
    assert!(answer.decode::<ChatSendAck>().is_err());

    assert_eq!(violations(&h), 0);
    assert_eq!(h.s.stats().violations, 0);
    assert_eq!(h.s.status(), Status::Open);
    let out = h.frame(
        r#"{"type":"event","event":"presence","payload":{"presence":[{"host":"b2","ts":2}]},"seq":2}"#,
    );
    let [next]: [GatewayEvent; 1] = messages(&out).try_into().expect("the next event flows");
    assert_eq!(
        next.decode::<Presence<'_>>().expect("a presence").presence[0].host,
        "b2"
    );
}
