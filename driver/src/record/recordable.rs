//! `Recordable`: what a protocol adds so that its sessions can be recorded and replayed,
//! and its implementations for the three ready profiles.

use std::convert::Infallible;
use std::io;

use bytes::Bytes;
use serde_json::{Value, json};
use tether_core::profiles::{Gateway, GatewayRequest, HelloAck, HelloAckRequest, Raw};
use tether_core::{ConnId, DataFrame, Decoded, OutFrame, Phase, Protocol, Utf8Bytes};

use super::format::{ReadError, frame_bytes};
use super::redact::{Direction, JsonWire, Redactor, Wire};

/// A protocol whose sessions can be recorded: how its commands' values are written to a
/// trace and read back, what its frames look like for redaction, and how to name it in
/// the trace header so a replayer can build it again.
///
/// Implemented for [`Raw`], [`HelloAck`] and [`Gateway`]. A protocol of your own
/// implements it to enable recording, and replays its traces with
/// `tether_sim::trace::replay_with`.
///
/// ```
/// use serde_json::{Value, json};
/// use tether_driver::record::{ReadError, Recordable, Redactor, Wire};
/// use tether_driver::tether_core::{
///     ConnId, DataFrame, Decoded, EncodeError, OutFrame, Opening, Phase, Protocol,
/// };
///
/// /// Sends strings as text frames; every frame received is a message.
/// struct Lines;
///
/// impl Protocol for Lines {
///     type Inbound = DataFrame;
///     type Outbound = String;
///     type Request = std::convert::Infallible;
///     type Response = std::convert::Infallible;
///     type RemoteError = std::convert::Infallible;
///     fn open(&mut self, _: ConnId) -> Result<Opening, EncodeError> { Ok(Opening::Ready) }
///     fn encode(&mut self, m: String) -> Result<OutFrame, EncodeError> { Ok(OutFrame::text(m)) }
///     fn decode(&mut self, f: DataFrame, _: Phase) -> Decoded<Self> { Decoded::Message(f) }
/// }
///
/// impl Recordable for Lines {
///     fn profile(&self) -> Value { json!({ "name": "lines" }) }
///     fn wire(&self) -> Wire { Wire::Opaque }
///     fn record_outbound(m: &String, r: &Redactor) -> Value {
///         // The session only cares about the length: redact through a frame record.
///         r.frame("text", m.as_bytes(), tether_driver::record::Direction::Outbound)
///     }
///     fn replay_outbound(v: &Value) -> Result<String, ReadError> {
///         let (_, bytes) = tether_driver::record::format::frame_bytes(v)?;
///         String::from_utf8(bytes).map_err(|e| e.to_string())
///     }
///     fn record_request(r: &Self::Request, _: &Redactor) -> Value { match *r {} }
///     fn replay_request(_: &Value) -> Result<Self::Request, ReadError> {
///         Err("this protocol has no requests".into())
///     }
/// }
/// ```
pub trait Recordable: Protocol {
    /// The header's `profile`: at least `{"name": …}`, plus whatever options change the
    /// session's decisions. Never credentials.
    fn profile(&self) -> Value;

    /// What this protocol's frames look like, for redaction.
    fn wire(&self) -> Wire;

    /// A message passed to `send` or `feed`, redacted by `r`.
    fn record_outbound(message: &Self::Outbound, r: &Redactor) -> Value;

    /// Writes [`record_outbound`](Self::record_outbound)'s JSON to `w`, byte for byte.
    /// The default renders that value; a protocol whose messages are frames writes them
    /// with [`Redactor::write_frame`] and builds no tree (a file recorder writes one per
    /// `send` and `feed`, on its writer thread).
    ///
    /// # Errors
    ///
    /// `w`'s.
    fn write_outbound(
        message: &Self::Outbound,
        r: &Redactor,
        w: &mut dyn io::Write,
    ) -> io::Result<()> {
        serde_json::to_writer(w, &Self::record_outbound(message, r)).map_err(io::Error::from)
    }

    /// Rebuilds a message from what [`record_outbound`](Self::record_outbound) wrote
    /// (redacted: a stand-in the session treats alike).
    ///
    /// # Errors
    ///
    /// A malformed record.
    fn replay_outbound(value: &Value) -> Result<Self::Outbound, ReadError>;

    /// A request, redacted by `r`.
    fn record_request(request: &Self::Request, r: &Redactor) -> Value;

    /// Rebuilds a request from what [`record_request`](Self::record_request) wrote.
    ///
    /// # Errors
    ///
    /// A malformed record.
    fn replay_request(value: &Value) -> Result<Self::Request, ReadError>;

    /// A copy of `message` for a file recorder to render on its writer thread rather than
    /// on the session's task, with the bytes the copy holds (charged against the
    /// recorder's channel bound, [`Recorder::channel_bytes`](super::Recorder::channel_bytes)).
    /// Worth it when copying is cheaper than [`record_outbound`](Self::record_outbound):
    /// a refcounted buffer, a JSON value (a copy costs no fingerprint).
    ///
    /// The default, `None`, renders the message on the session's task.
    fn copy_outbound(message: &Self::Outbound) -> Option<(Self::Outbound, usize)> {
        let _ = message;
        None
    }

    /// [`copy_outbound`](Self::copy_outbound) for a request. The default, `None`, renders
    /// the request on the session's task.
    fn copy_request(request: &Self::Request) -> Option<(Self::Request, usize)> {
        let _ = request;
        None
    }
}

/// About the bytes a JSON value holds: its strings and keys, and a word per value. Walks
/// the value once, which is cheaper than the copy it sizes.
fn json_bytes(v: &Value) -> usize {
    const WORD: usize = 8;
    match v {
        Value::String(s) => WORD + s.len(),
        Value::Array(a) => WORD + a.iter().map(json_bytes).sum::<usize>(),
        Value::Object(m) => {
            WORD + m
                .iter()
                .map(|(k, v)| k.len() + json_bytes(v))
                .sum::<usize>()
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => WORD,
    }
}

fn data_frame(f: &DataFrame, r: &Redactor) -> Value {
    match f {
        DataFrame::Text(t) => r.frame("text", t.as_bytes(), Direction::Outbound),
        DataFrame::Binary(b) => r.frame("binary", b, Direction::Outbound),
    }
}

fn write_data_frame(f: &DataFrame, r: &Redactor, w: &mut dyn io::Write) -> io::Result<()> {
    match f {
        DataFrame::Text(t) => r.write_frame("text", t.as_bytes(), Direction::Outbound, w),
        DataFrame::Binary(b) => r.write_frame("binary", b, Direction::Outbound, w),
    }
}

fn read_data_frame(v: &Value) -> Result<DataFrame, ReadError> {
    let (kind, bytes) = frame_bytes(v)?;
    match kind.as_str() {
        "text" => Utf8Bytes::try_from_bytes(Bytes::from(bytes))
            .map(DataFrame::Text)
            .map_err(|_| "a text message that is not UTF-8".to_owned()),
        "binary" => Ok(DataFrame::Binary(Bytes::from(bytes))),
        other => Err(format!("a message cannot be a {other} frame")),
    }
}

impl Recordable for Raw {
    fn profile(&self) -> Value {
        json!({ "name": "raw" })
    }

    fn wire(&self) -> Wire {
        Wire::Opaque
    }

    fn record_outbound(message: &DataFrame, r: &Redactor) -> Value {
        data_frame(message, r)
    }

    fn write_outbound(message: &DataFrame, r: &Redactor, w: &mut dyn io::Write) -> io::Result<()> {
        write_data_frame(message, r, w)
    }

    fn replay_outbound(value: &Value) -> Result<DataFrame, ReadError> {
        read_data_frame(value)
    }

    fn record_request(request: &Infallible, _: &Redactor) -> Value {
        match *request {}
    }

    fn replay_request(_: &Value) -> Result<Infallible, ReadError> {
        Err("the raw profile has no requests".to_owned())
    }

    /// A refcount: the payload is shared, not copied.
    fn copy_outbound(message: &DataFrame) -> Option<(DataFrame, usize)> {
        Some((message.clone(), message.as_bytes().len()))
    }
}

/// A JSON value under `"v"`.
fn read_value(v: &Value) -> Result<Value, ReadError> {
    v.get("v")
        .cloned()
        .ok_or_else(|| "missing field `v`".to_owned())
}

/// The fields [`HelloAck`]'s decisions read.
pub const HELLO_ACK_ENVELOPE: &[&str] = &["type", "id", "stream", "state", "method"];

fn hello_ack_secret(v: &Value, dir: Direction) -> bool {
    let kind = v.get("type").and_then(Value::as_str);
    match dir {
        Direction::Outbound => kind == Some("hello"),
        Direction::Inbound => matches!(kind, Some("hello_ack" | "hello_error")),
    }
}

impl Recordable for HelloAck {
    fn profile(&self) -> Value {
        json!({ "name": "hello-ack" })
    }

    fn wire(&self) -> Wire {
        Wire::Json(JsonWire {
            envelope: HELLO_ACK_ENVELOPE,
            secret: hello_ack_secret,
        })
    }

    fn record_outbound(message: &Value, r: &Redactor) -> Value {
        json!({ "v": r.json(message) })
    }

    fn replay_outbound(value: &Value) -> Result<Value, ReadError> {
        read_value(value)
    }

    fn record_request(request: &HelloAckRequest, r: &Redactor) -> Value {
        json!({ "method": request.method, "params": r.json(&request.params), "stream": request.stream })
    }

    fn replay_request(value: &Value) -> Result<HelloAckRequest, ReadError> {
        let method = value
            .get("method")
            .and_then(Value::as_str)
            .ok_or("a request needs a string `method`")?;
        let params = value.get("params").cloned().unwrap_or(Value::Null);
        let request = HelloAckRequest::new(method, params);
        Ok(
            if value.get("stream").and_then(Value::as_bool) == Some(true) {
                request.streaming()
            } else {
                request
            },
        )
    }

    fn copy_outbound(message: &Value) -> Option<(Value, usize)> {
        Some((message.clone(), json_bytes(message)))
    }

    fn copy_request(request: &HelloAckRequest) -> Option<(HelloAckRequest, usize)> {
        Some((request.clone(), json_bytes(&request.params)))
    }
}

/// The fields [`Gateway`]'s decisions read.
pub const GATEWAY_ENVELOPE: &[&str] = &[
    "type",
    "event",
    "id",
    "ok",
    "state",
    "runId",
    "method",
    "code",
    "idempotencyKey",
];

fn gateway_secret(v: &Value, dir: Direction) -> bool {
    let kind = v.get("type").and_then(Value::as_str);
    match dir {
        Direction::Outbound => {
            kind == Some("req") && v.get("method").and_then(Value::as_str) == Some("connect")
        }
        Direction::Inbound => match kind {
            Some("event") => v.get("event").and_then(Value::as_str) == Some("connect.challenge"),
            Some("res") => v
                .get("id")
                .and_then(Value::as_str)
                .is_some_and(|id| id.starts_with("connect-")),
            _ => false,
        },
    }
}

impl Recordable for Gateway {
    /// The option that changes decisions (`ticks_as_heartbeat`) and the client's
    /// introduction (`client`, `scopes`, protocol range); never the token. The options are
    /// private to the protocol, so they are read from what it does: a clone of it answers
    /// a probe challenge and a probe `hello-ok`.
    fn profile(&self) -> Value {
        let mut probe = self.clone();
        let conn = ConnId::from_raw(1);
        let _ = probe.open(conn);
        let challenge =
            r#"{"type":"event","event":"connect.challenge","payload":{"nonce":"probe"}}"#;
        let connect = match probe.decode(DataFrame::Text(challenge.into()), Phase::Handshake) {
            Decoded::Challenge(OutFrame::Text(t)) => {
                serde_json::from_slice::<Value>(t.as_bytes()).unwrap_or(Value::Null)
            }
            _ => Value::Null,
        };
        let hello_ok = json!({
            "type": "res", "id": format!("connect-{}", conn.get()), "ok": true,
            "payload": { "type": "hello-ok", "policy": { "tickIntervalMs": 1000 } },
        });
        let ticks = match probe.decode(
            DataFrame::Text(Utf8Bytes::from_string(hello_ok.to_string())),
            Phase::Handshake,
        ) {
            Decoded::Ack(acked) => acked.heartbeat.is_some(),
            _ => true,
        };
        let params = &connect["params"];
        json!({
            "name": "gateway",
            "ticks_as_heartbeat": ticks,
            "client": { "id": params["client"]["id"], "mode": params["client"]["mode"] },
            "scopes": params["scopes"],
            "min_protocol": params["minProtocol"],
            "max_protocol": params["maxProtocol"],
        })
    }

    fn wire(&self) -> Wire {
        Wire::Json(JsonWire {
            envelope: GATEWAY_ENVELOPE,
            secret: gateway_secret,
        })
    }

    fn record_outbound(message: &Value, r: &Redactor) -> Value {
        json!({ "v": r.json(message) })
    }

    fn replay_outbound(value: &Value) -> Result<Value, ReadError> {
        read_value(value)
    }

    fn record_request(request: &GatewayRequest, r: &Redactor) -> Value {
        json!({ "method": request.method, "params": request.params.as_ref().map(|p| r.json(p)) })
    }

    fn replay_request(value: &Value) -> Result<GatewayRequest, ReadError> {
        let method = value
            .get("method")
            .and_then(Value::as_str)
            .ok_or("a request needs a string `method`")?;
        let params = value.get("params").cloned().filter(|p| !p.is_null());
        Ok(GatewayRequest::new(method, params))
    }

    fn copy_outbound(message: &Value) -> Option<(Value, usize)> {
        Some((message.clone(), json_bytes(message)))
    }

    fn copy_request(request: &GatewayRequest) -> Option<(GatewayRequest, usize)> {
        let bytes = request.params.as_ref().map_or(0, json_bytes);
        Some((request.clone(), bytes))
    }
}
