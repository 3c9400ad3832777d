//! `HelloAck`: the client speaks first with a JSON `hello` and waits for `hello_ack`.
//!
//! The wire format is described in `docs/protocols.md`; in short, every frame is a JSON
//! object with a `type`: the client sends `hello` and `request`, the server answers with
//! `hello_ack` or `hello_error`, `response`, `event` (stream events), `tick` or
//! `heartbeat`, and anything else is an application message.

use std::fmt;

use serde::Serialize;
use serde_json::{Map, Value};

use super::json;
use crate::error::{EncodeError, Violation};
use crate::frame::{DataFrame, OutFrame};
use crate::ids::{ConnId, RequestId, StreamKey};
use crate::protocol::{
    Acked, Decoded, EncodedRequest, Opening, Phase, Protocol, Rejection, RequestMeta, StreamFrame,
    TextMode,
};
use crate::resume::{Recovery, Resume};

/// The callback that builds each connection's hello.
type HelloFn = Box<dyn FnMut() -> Value + Send>;

/// A JSON protocol where the client speaks first: `hello` → `hello_ack`.
///
/// The hello callback runs on every [`open`](Protocol::open), so each connection sends a
/// fresh hello (a new token, a new timestamp). An object without a `"type"` gets
/// `"type": "hello"`; anything but an object fails the attempt as fatal.
///
/// | inbound frame | decoded as |
/// |---|---|
/// | `{"type":"hello_ack","heartbeatMs"?:n,"session"?:s,"recovered"?:b}` | [`Decoded::Ack`] |
/// | `{"type":"hello_error","message":s,"fatal"?:b,"retryAfterMs"?:n}` | [`Decoded::Rejected`] |
/// | `{"type":"response","id":n,"result":v}` / `"error":v` | [`Decoded::Response`] |
/// | `{"type":"event","stream":k,"seq"?:n,"state":s,…}` | [`Decoded::Stream`] |
/// | `{"type":"tick"}`, `{"type":"heartbeat"}` | [`Decoded::Heartbeat`] |
/// | any other JSON value | [`Decoded::Message`] |
/// | binary, invalid JSON, a known type with bad fields | [`Decoded::Violation`] |
///
/// ```
/// use tether_core::profiles::{HelloAck, HelloAckRequest};
/// use tether_core::{Config, Session};
/// use serde_json::json;
///
/// let mut n = 0;
/// let protocol = HelloAck::new(move || {
///     n += 1;
///     json!({ "client": "example", "attempt": n }) // "type": "hello" is added
/// });
/// let session = Session::new(Config::default(), protocol, 1).unwrap();
///
/// // A request whose stream events are keyed by the request id.
/// let request = HelloAckRequest::new("generate", json!({ "prompt": "hi" })).streaming();
/// assert!(request.stream);
/// # let _ = session;
/// ```
pub struct HelloAck {
    hello: HelloFn,
    recovering: bool,
}

impl HelloAck {
    /// A protocol whose hello is built by `hello` on every connection.
    #[must_use]
    pub fn new(hello: impl FnMut() -> Value + Send + 'static) -> Self {
        HelloAck {
            hello: Box::new(hello),
            recovering: false,
        }
    }

    /// The same protocol speaking the recovery dialect (`docs/protocols.md`, "Recovery"):
    /// after a reconnect, the hello carries
    /// `"resume": {"session": <token or null>, "streams": {"<key>": <last seq or null>}}`
    /// for the server's session token and every live resumable stream
    /// ([`HelloAckRequest::resumable`]); the `hello_ack` answers with `"recovered"`. A
    /// first connection (nothing to resume) sends the plain hello.
    #[must_use]
    pub fn recovering(mut self) -> Self {
        self.recovering = true;
        self
    }
}

impl fmt::Debug for HelloAck {
    // The hello may carry credentials: never print it, nor the callback.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HelloAck").finish_non_exhaustive()
    }
}

/// A [`HelloAck`] request: `{"type":"request","id":<request id>,"method":…,"params":…}`.
#[derive(Clone, Debug, PartialEq)]
pub struct HelloAckRequest {
    /// The method name.
    pub method: String,
    /// The parameters, sent as they are.
    pub params: Value,
    /// Whether the request starts a stream keyed by its request id (in decimal), so that
    /// `event` frames with that `stream` are routed to it.
    pub stream: bool,
    /// Whether the stream it starts survives a lost connection and is resumed by the
    /// recovery dialect ([`HelloAck::recovering`]); sent as `"resumable": true`.
    pub resumable: bool,
    /// `Some`: the request is idempotent and carries this `idempotencyKey` (an empty key
    /// is generated from the request's nonce), so the session may send it again after a
    /// reconnect ([`EncodedRequest::idempotent`]).
    pub idempotency_key: Option<String>,
}

impl HelloAckRequest {
    /// A request that starts no stream.
    #[must_use]
    pub fn new(method: impl Into<String>, params: Value) -> Self {
        HelloAckRequest {
            method: method.into(),
            params,
            stream: false,
            resumable: false,
            idempotency_key: None,
        }
    }

    /// The same request, starting a stream (as [`streaming`](Self::streaming)) that
    /// survives a lost connection: the server replays what was missed after the position
    /// the next hello names, or says it cannot and the stream ends as
    /// [`StreamEnd::Unrecoverable`](crate::StreamEnd::Unrecoverable).
    #[must_use]
    pub fn resumable(mut self) -> Self {
        self.stream = true;
        self.resumable = true;
        self
    }

    /// The same request, idempotent: it carries an `idempotencyKey` generated from its
    /// nonce, and a reconnect sends it again rather than failing it.
    #[must_use]
    pub fn idempotent(mut self) -> Self {
        self.idempotency_key = Some(String::new());
        self
    }

    /// The same request, idempotent under the caller's own key.
    #[must_use]
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// The same request, starting a stream keyed by its request id.
    #[must_use]
    pub fn streaming(mut self) -> Self {
        self.stream = true;
        self
    }
}

/// The request frame, serialized from borrowed parts (no copy of the params).
#[derive(Serialize)]
struct WireRequest<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: u64,
    method: &'a str,
    params: &'a Value,
    #[serde(rename = "idempotencyKey", skip_serializing_if = "Option::is_none")]
    idempotency_key: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    resumable: bool,
}

impl Protocol for HelloAck {
    type Inbound = Value;
    type Outbound = Value;
    type Request = HelloAckRequest;
    type Response = Value;
    type RemoteError = Value;

    fn open(&mut self, conn: ConnId) -> Result<Opening, EncodeError> {
        self.open_resuming(conn, &Resume::default())
    }

    fn open_resuming(&mut self, _conn: ConnId, resume: &Resume) -> Result<Opening, EncodeError> {
        let mut hello = (self.hello)();
        let Value::Object(map) = &mut hello else {
            // The kind only: the value may hold a token.
            return Err(EncodeError(format!(
                "the hello must be a JSON object, not {}",
                json::kind(&hello)
            )));
        };
        if self.recovering && !resume.is_empty() {
            let streams: Map<String, Value> = resume
                .streams()
                .iter()
                .map(|(key, seq)| (key.0.clone(), seq.map_or(Value::Null, Value::from)))
                .collect();
            map.insert(
                "resume".to_owned(),
                serde_json::json!({ "session": resume.token(), "streams": streams }),
            );
        }
        map.entry("type")
            .or_insert_with(|| Value::String("hello".to_owned()));
        json::text_frame(&hello).map(Opening::Hello)
    }

    fn encode(&mut self, message: Value) -> Result<OutFrame, EncodeError> {
        json::text_frame(&message)
    }

    fn encode_request(
        &mut self,
        meta: RequestMeta,
        request: HelloAckRequest,
    ) -> Result<EncodedRequest, EncodeError> {
        let id = meta.id.get();
        let generated;
        let key = match request.idempotency_key.as_deref() {
            Some("") => {
                generated = meta.nonce_uuid();
                Some(generated.as_str())
            }
            other => other,
        };
        let frame = json::text_frame(&WireRequest {
            kind: "request",
            id,
            method: &request.method,
            params: &request.params,
            idempotency_key: key,
            resumable: request.resumable && request.stream,
        })?;
        Ok(EncodedRequest {
            frame,
            stream: request.stream.then(|| StreamKey(id.to_string())),
            idempotent: key.is_some(),
            resumable: request.resumable && request.stream,
        })
    }

    fn decode(&mut self, frame: DataFrame, _phase: Phase) -> Decoded<Self> {
        let value = match json::parse(&frame) {
            Ok(v) => v,
            Err(v) => return Decoded::Violation(v),
        };
        let kind = match &value {
            Value::Object(map) => map.get("type").and_then(Value::as_str),
            _ => None,
        };
        let decoded = match kind {
            Some("hello_ack") => ack(&value),
            Some("hello_error") => rejection(&value),
            Some("response") => return response(value),
            Some("event") => return stream(value),
            Some("tick" | "heartbeat") => Ok(Decoded::Heartbeat),
            _ => Ok(Decoded::Message(value)),
        };
        decoded.unwrap_or_else(Decoded::Violation)
    }
}

/// The object behind a value whose `type` was read, so it is an object.
fn fields(value: &Value) -> Result<&Map<String, Value>, Violation> {
    value
        .as_object()
        .ok_or_else(|| json::malformed("expected a JSON object"))
}

fn ack(value: &Value) -> Result<Decoded<HelloAck>, Violation> {
    let map = fields(value)?;
    let recovery = match json::opt_bool(map, "recovered")? {
        None => Recovery::NotAsked,
        Some(true) => Recovery::Recovered,
        Some(false) => Recovery::Unrecoverable,
    };
    let resume_token = match map.get("session") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(json::malformed("`session` must be a string")),
    };
    Ok(Decoded::Ack(Acked {
        heartbeat: json::opt_millis(map, "heartbeatMs")?,
        resume_token,
        recovery,
    }))
}

fn rejection(value: &Value) -> Result<Decoded<HelloAck>, Violation> {
    let map = fields(value)?;
    Ok(Decoded::Rejected(Rejection {
        message: json::req_str(map, "message")?.to_owned(),
        fatal: json::opt_bool(map, "fatal")?.unwrap_or(false),
        retry_after: json::opt_millis(map, "retryAfterMs")?,
    }))
}

fn response(value: Value) -> Decoded<HelloAck> {
    let Value::Object(mut map) = value else {
        return Decoded::Violation(json::malformed("expected a JSON object"));
    };
    let id = match map.get("id") {
        None => return Decoded::Violation(json::malformed("response without `id`")),
        Some(id) => id
            .as_u64()
            .map(RequestId::from_raw)
            .ok_or_else(|| json::wire_id(id)),
    };
    // `"error": null` next to a result is a success (JSON-RPC style).
    let result = match (map.remove("result"), map.remove("error")) {
        (_, Some(error)) if !error.is_null() => Err(error),
        (Some(result), _) => Ok(result),
        _ => {
            return Decoded::Violation(json::malformed("response without `result` or `error`"));
        }
    };
    Decoded::Response { id, result }
}

fn stream(value: Value) -> Decoded<HelloAck> {
    match stream_parts(&value) {
        Ok(parts) => Decoded::Stream(json::with_payload(parts, value)),
        Err(v) => Decoded::Violation(v),
    }
}

/// Everything of a stream event but its payload (the whole event, moved in afterwards).
fn stream_parts(value: &Value) -> Result<StreamFrame<()>, Violation> {
    let map = fields(value)?;
    let key = StreamKey(json::req_str(map, "stream")?.to_owned());
    let seq = json::opt_u64(map, "seq")?;
    let state = json::stream_state(json::req_str(map, "state")?, || {
        error_message(map).unwrap_or("unknown error").to_owned()
    })?;
    let (text, text_mode) = match json::opt_str(map, "accumulated")? {
        Some(acc) => (Some(acc), TextMode::Accumulated),
        None => (json::opt_str(map, "text")?, TextMode::Incremental),
    };
    Ok(StreamFrame {
        key,
        seq,
        state,
        text: text.map(str::to_owned),
        text_mode,
        payload: (),
    })
}

/// An error event's message: `message`, else `error` as a string or an object's
/// `message`. Lenient on purpose: a terminal must end its stream even when oddly shaped.
fn error_message(map: &Map<String, Value>) -> Option<&str> {
    fn text(v: &Value) -> Option<&str> {
        match v {
            Value::String(s) => Some(s),
            Value::Object(o) => o.get("message").and_then(Value::as_str),
            _ => None,
        }
    }
    map.get("message")
        .and_then(Value::as_str)
        .or_else(|| map.get("error").and_then(text))
}
