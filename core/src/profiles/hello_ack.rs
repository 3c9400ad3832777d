//! `HelloAck`: the client speaks first with a JSON `hello` and waits for `hello_ack`.
//!
//! The wire format is described in `docs/protocols.md`; in short, every frame is a JSON
//! object with a `type`: the client sends `hello` and `request`, the server answers with
//! `hello_ack` or `hello_error`, `response`, `event` (stream events), `tick` or
//! `heartbeat`, and anything else is an application message.

use std::borrow::Cow;
use std::fmt;

use serde::Serialize;
use serde_json::{Map, Value};

use super::json::{self, Raw, Scalar, Top};
use super::payload::JsonPayload;
use crate::error::{EncodeError, Violation};
use crate::frame::{DataFrame, OutFrame, Utf8Bytes};
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
/// | `{"type":"response","id":n,"result":v}` / `"error":v` | [`Decoded::Response`] with `v` |
/// | `{"type":"event","stream":k,"seq"?:n,"state":s,…}` | [`Decoded::Stream`] with the whole event |
/// | `{"type":"tick"}`, `{"type":"heartbeat"}` | [`Decoded::Heartbeat`] |
/// | any other JSON value | [`Decoded::Message`] with the whole frame |
/// | binary, invalid JSON, a known type with bad fields | [`Decoded::Violation`] |
///
/// Messages, stream events, results and errors are [`JsonPayload`]s: slices of the
/// received frame, which the profile does not parse beyond the fields above. Decode
/// them into your own types with [`JsonPayload::decode`] (no `serde_json::Value` in
/// between), or into a `Value` with [`JsonPayload::value`]. A payload that does not match
/// your type is an error of that call: the session delivered the event and stays open.
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
///
/// Typed messages and responses:
///
/// ```
/// use serde::Deserialize;
/// use tether_core::profiles::HelloAck;
/// use tether_core::{DataFrame, Decoded, Phase, Protocol, Utf8Bytes};
///
/// #[derive(Debug, Deserialize, PartialEq)]
/// struct Quote<'a> {
///     symbol: &'a str, // borrowed from the frame
///     price: f64,
/// }
///
/// let mut protocol = HelloAck::new(|| serde_json::json!({}));
/// let frame = |s: &'static str| DataFrame::Text(Utf8Bytes::from_static(s));
///
/// // In an application: `Event::Message(payload)` from the session.
/// let Decoded::Message(payload) =
///     protocol.decode(frame(r#"{"type":"quote","symbol":"ACME","price":12.5}"#), Phase::Open)
/// else { panic!() };
/// let quote: Quote<'_> = payload.decode()?;
/// assert_eq!(quote, Quote { symbol: "ACME", price: 12.5 });
///
/// // `Event::Response { result: Ok(payload), .. }`: the `result` alone.
/// let Decoded::Response { result: Ok(result), .. } =
///     protocol.decode(frame(r#"{"type":"response","id":1,"result":{"symbol":"X","price":1}}"#), Phase::Open)
/// else { panic!() };
/// assert_eq!(result.decode::<Quote<'_>>()?.symbol, "X");
///
/// // A message of another shape is still a message; decoding it is what fails.
/// let Decoded::Message(other) = protocol.decode(frame(r#"{"type":"quote","symbol":7}"#), Phase::Open)
/// else { panic!() };
/// assert!(other.decode::<Quote<'_>>().is_err());
/// assert_eq!(other.value()?["symbol"], 7);
/// # Ok::<(), tether_core::profiles::PayloadError>(())
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
    type Inbound = JsonPayload;
    type Outbound = Value;
    type Request = HelloAckRequest;
    type Response = JsonPayload;
    type RemoteError = JsonPayload;

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
                .map(|(key, seq)| {
                    (
                        key.as_str().to_owned(),
                        seq.map_or(Value::Null, Value::from),
                    )
                })
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
            stream: request.stream.then(|| StreamKey::from(id.to_string())),
            idempotent: key.is_some(),
            resumable: request.resumable && request.stream,
        })
    }

    fn decode(&mut self, frame: DataFrame, _phase: Phase) -> Decoded<Self> {
        let DataFrame::Text(text) = frame else {
            return Decoded::Violation(Violation::UnexpectedBinary);
        };
        let fields = match json::pick(text.as_str(), &KEYS) {
            Ok(Top::Object(fields)) => Fields(fields),
            // An array, a string, a number, null: an application message.
            Ok(Top::Other(_)) => return Decoded::Message(JsonPayload::checked(text)),
            Err(e) => return Decoded::Violation(json::malformed(format!("invalid JSON: {e}"))),
        };
        let kind = match Scalar::of(fields.get(TYPE)) {
            Scalar::Str(kind) => Some(kind),
            _ => None,
        };
        // Each arm builds its `Decoded` in place: a `Result` around it would be copied
        // out again, on every message's path.
        let decoded = match kind.as_deref() {
            Some("hello_ack") => ack(&fields),
            Some("hello_error") => rejection(&fields),
            Some("response") => response(&text, &fields),
            Some("event") => match stream_parts(&text, &fields) {
                Ok(parts) => {
                    return Decoded::Stream(json::with_payload(parts, JsonPayload::checked(text)));
                }
                Err(violation) => Err(violation),
            },
            Some("tick" | "heartbeat") => return Decoded::Heartbeat,
            _ => return Decoded::Message(JsonPayload::checked(text)),
        };
        decoded.unwrap_or_else(Decoded::Violation)
    }
}

// The envelope fields a decision reads, by index into `KEYS`.
const TYPE: usize = 0;
const HEARTBEAT_MS: usize = 1;
const SESSION: usize = 2;
const RECOVERED: usize = 3;
const MESSAGE: usize = 4;
const FATAL: usize = 5;
const RETRY_AFTER_MS: usize = 6;
const ID: usize = 7;
const RESULT: usize = 8;
const ERROR: usize = 9;
const STREAM: usize = 10;
const SEQ: usize = 11;
const STATE: usize = 12;
const ACCUMULATED: usize = 13;
const TEXT: usize = 14;

/// Every top-level field any frame type's decision reads; all others are skipped unread.
const KEYS: [&str; 15] = [
    "type",
    "heartbeatMs",
    "session",
    "recovered",
    "message",
    "fatal",
    "retryAfterMs",
    "id",
    "result",
    "error",
    "stream",
    "seq",
    "state",
    "accumulated",
    "text",
];

/// A frame's envelope: the raw values of `KEYS`, borrowed from the frame.
struct Fields<'a>([Option<Raw<'a>>; KEYS.len()]);

impl<'a> Fields<'a> {
    fn get(&self, i: usize) -> Option<Raw<'a>> {
        self.0.get(i).copied().flatten()
    }
}

fn ack(f: &Fields<'_>) -> Result<Decoded<HelloAck>, Violation> {
    let recovery = match json::raw_opt_bool(f.get(RECOVERED), "recovered")? {
        None => Recovery::NotAsked,
        Some(true) => Recovery::Recovered,
        Some(false) => Recovery::Unrecoverable,
    };
    let resume_token = match Scalar::of(f.get(SESSION)) {
        Scalar::Null => None,
        Scalar::Str(s) => Some(s.into_owned()),
        _ => return Err(json::malformed("`session` must be a string")),
    };
    Ok(Decoded::Ack(Acked {
        heartbeat: json::raw_opt_millis(f.get(HEARTBEAT_MS), "heartbeatMs")?,
        resume_token,
        recovery,
    }))
}

fn rejection(f: &Fields<'_>) -> Result<Decoded<HelloAck>, Violation> {
    Ok(Decoded::Rejected(Rejection {
        message: json::raw_req_str(f.get(MESSAGE), "message")?.into_owned(),
        fatal: json::raw_opt_bool(f.get(FATAL), "fatal")?.unwrap_or(false),
        retry_after: json::raw_opt_millis(f.get(RETRY_AFTER_MS), "retryAfterMs")?,
    }))
}

/// A response; its `result` or `error` is handed over as a slice of `frame`.
fn response(frame: &Utf8Bytes, f: &Fields<'_>) -> Result<Decoded<HelloAck>, Violation> {
    let Some(raw_id) = f.get(ID) else {
        return Err(json::malformed("response without `id`"));
    };
    let id = match Scalar::of(Some(raw_id)) {
        Scalar::U64(n) => Ok(RequestId::from_raw(n)),
        _ => Err(json::raw_wire_id(raw_id)),
    };
    // `"error": null` next to a result is a success (JSON-RPC style).
    let result = match (f.get(RESULT), f.get(ERROR)) {
        (_, Some(error)) if !error.is_null() => Err(JsonPayload::slice_of(frame, error)),
        (Some(result), _) => Ok(JsonPayload::slice_of(frame, result)),
        _ => return Err(json::malformed("response without `result` or `error`")),
    };
    Ok(Decoded::Response { id, result })
}

/// Everything of a stream event but its payload (the whole event, put in afterwards).
fn stream_parts(frame: &Utf8Bytes, f: &Fields<'_>) -> Result<StreamFrame<()>, Violation> {
    let key = json::key_of(frame, json::raw_req_str(f.get(STREAM), "stream")?);
    let seq = json::raw_opt_u64(f.get(SEQ), "seq")?;
    let state = json::stream_state(&json::raw_req_str(f.get(STATE), "state")?, || {
        error_message(f).map_or_else(|| "unknown error".to_owned(), Cow::into_owned)
    })?;
    let (text, text_mode) = match json::raw_opt_str(f.get(ACCUMULATED), "accumulated")? {
        Some(acc) => (Some(acc), TextMode::Accumulated),
        None => (
            json::raw_opt_str(f.get(TEXT), "text")?,
            TextMode::Incremental,
        ),
    };
    Ok(StreamFrame {
        key,
        seq,
        state,
        text: text.map(Cow::into_owned),
        text_mode,
        payload: (),
    })
}

/// An error event's message: `message`, else `error` as a string or an object's
/// `message`. Lenient on purpose: a terminal must end its stream even when oddly shaped.
fn error_message<'a>(f: &Fields<'a>) -> Option<Cow<'a, str>> {
    if let Scalar::Str(m) = Scalar::of(f.get(MESSAGE)) {
        return Some(m);
    }
    let error = f.get(ERROR)?;
    match Scalar::of(Some(error)) {
        Scalar::Str(m) => Some(m),
        Scalar::Other("an object") => {
            let [message] = error.pick(&["message"])?;
            match Scalar::of(message) {
                Scalar::Str(m) => Some(m),
                _ => None,
            }
        }
        _ => None,
    }
}
