//! `Gateway`: the OpenClaw gateway protocol (version 4), where the server speaks first.
//!
//! Frames are JSON objects with a `type`: the client sends `req`, the server sends `res`
//! and `event`. The server's schemas are closed (unknown fields are rejected), so every
//! frame this module writes carries exactly the documented fields. See
//! `docs/protocols.md` for the full wire format.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::json::{self, Raw, Scalar, Top};
use super::payload::{JsonPayload, PayloadError};
use crate::error::{EncodeError, Violation};
use crate::frame::{DataFrame, OutFrame, Utf8Bytes};
use crate::ids::{ConnId, RequestId, StreamKey};
use crate::protocol::{
    Acked, Decoded, EncodedRequest, Opening, Phase, Protocol, Rejection, RequestMeta, StreamFrame,
    TextMode,
};

/// The gateway protocol version this profile speaks.
const PROTOCOL_VERSION: u32 = 4;

/// How a [`Gateway`] introduces itself in its `connect` request.
///
/// ```
/// use tether_core::profiles::GatewayOptions;
///
/// let options = GatewayOptions {
///     token: Some("s3cret".into()),
///     ..GatewayOptions::default()
/// };
/// assert_eq!(options.client_id, "cli");
/// assert_eq!(options.scopes, ["operator.read", "operator.write"]);
/// // The token never reaches a log line.
/// assert!(!format!("{options:?}").contains("s3cret"));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct GatewayOptions {
    /// `client.id`; the server accepts only known ids. Default `"cli"`.
    pub client_id: String,
    /// `client.version`. Default: this crate's version.
    pub client_version: String,
    /// `client.platform`. Default: [`std::env::consts::OS`].
    pub platform: String,
    /// `client.mode`; the server accepts only known modes. Default `"cli"`.
    pub mode: String,
    /// `auth.token`; `auth` is left out when `None`. Default `None`.
    pub token: Option<String>,
    /// `scopes`. Default `["operator.read", "operator.write"]`.
    pub scopes: Vec<String>,
    /// `minProtocol`. Default 4.
    pub min_protocol: u32,
    /// `maxProtocol`. Default 4.
    pub max_protocol: u32,
    /// Whether `hello-ok`'s `policy.tickIntervalMs` is the connection's application
    /// heartbeat, which widens the stale threshold to `tickIntervalMs ×
    /// heartbeat_stale_factor` (60 s against a real gateway). Default `true`. Turn it
    /// off to detect a dead gateway through the session's own pings within
    /// `ping_interval` + `stale_after`; ticks still count as life either way.
    pub ticks_as_heartbeat: bool,
}

impl Default for GatewayOptions {
    fn default() -> Self {
        GatewayOptions {
            client_id: "cli".to_owned(),
            client_version: env!("CARGO_PKG_VERSION").to_owned(),
            platform: std::env::consts::OS.to_owned(),
            mode: "cli".to_owned(),
            token: None,
            scopes: vec!["operator.read".to_owned(), "operator.write".to_owned()],
            min_protocol: PROTOCOL_VERSION,
            max_protocol: PROTOCOL_VERSION,
            ticks_as_heartbeat: true,
        }
    }
}

impl fmt::Debug for GatewayOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GatewayOptions")
            .field("client_id", &self.client_id)
            .field("client_version", &self.client_version)
            .field("platform", &self.platform)
            .field("mode", &self.mode)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("scopes", &self.scopes)
            .field("min_protocol", &self.min_protocol)
            .field("max_protocol", &self.max_protocol)
            .field("ticks_as_heartbeat", &self.ticks_as_heartbeat)
            .finish()
    }
}

/// A server event: `{"type":"event","event":…,"payload"?:…,"seq"?:n,"stateVersion"?:…}`.
///
/// Delivered as [`Event::Message`](crate::Event::Message) (presence, health, shutdown,
/// agent, …) or as the payload of a `chat` stream event. The payload is kept as the text
/// the gateway sent: [`decode`](Self::decode) it into a type of your own, or read it as
/// a `serde_json::Value` with [`JsonPayload::value`].
///
/// ```
/// use serde::Deserialize;
/// use tether_core::profiles::{Gateway, GatewayOptions};
/// use tether_core::{DataFrame, Decoded, Phase, Protocol, Utf8Bytes};
///
/// #[derive(Deserialize)]
/// struct Presence {
///     presence: Vec<Entry>,
/// }
/// #[derive(Deserialize)]
/// struct Entry {
///     host: String,
/// }
///
/// let mut gateway = Gateway::new(GatewayOptions::default());
/// let frame = r#"{"type":"event","event":"presence","payload":{"presence":[{"host":"a1"}]},"seq":7}"#;
/// let Decoded::Message(event) = gateway.decode(DataFrame::Text(Utf8Bytes::from_static(frame)), Phase::Open)
/// else { panic!() };
/// assert_eq!((event.event.as_str(), event.seq), ("presence", Some(7)));
/// let presence: Presence = event.decode()?;
/// assert_eq!(presence.presence[0].host, "a1");
/// // Another shape is an error of this call only.
/// assert!(event.decode::<Vec<String>>().is_err());
/// # Ok::<(), tether_core::profiles::PayloadError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct GatewayEvent {
    /// The event name (`"chat"`, `"presence"`, …): a slice of the frame, shared without a
    /// copy. Compares with a `&str` (`event.event == "presence"`); `event.event.as_str()`
    /// reads it.
    pub event: Utf8Bytes,
    /// The payload as sent (a slice of the frame), `null` when absent.
    pub payload: JsonPayload,
    /// The per-connection event sequence number.
    pub seq: Option<u64>,
    /// The server's state version, as sent.
    pub state_version: Option<JsonPayload>,
}

impl GatewayEvent {
    /// Decodes the payload into `T` without building a `serde_json::Value`
    /// ([`JsonPayload::decode`]).
    ///
    /// # Errors
    ///
    /// A [`PayloadError`] when the payload does not match `T`; the session is unaffected.
    pub fn decode<'de, T: Deserialize<'de>>(&'de self) -> Result<T, PayloadError> {
        self.payload.decode()
    }
}

/// A gateway request: `{"type":"req","id":"t<n>","method":…,"params"?:…}`.
///
/// The constructors build the chat methods' params with exactly the fields the server
/// accepts; [`GatewayRequest::new`] sends any method.
///
/// ```
/// use tether_core::profiles::GatewayRequest;
/// use serde_json::json;
///
/// let send = GatewayRequest::chat_send("agent:main:main", "hello");
/// assert_eq!(send.params, Some(json!({ "sessionKey": "agent:main:main", "message": "hello" })));
///
/// let history = GatewayRequest::chat_history("agent:main:main", Some(20));
/// assert_eq!(history.method, "chat.history");
///
/// let health = GatewayRequest::new("health", None);
/// assert_eq!(health.params, None);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct GatewayRequest {
    /// The method name.
    pub method: String,
    /// The params, left out of the frame when `None`.
    pub params: Option<Value>,
}

impl GatewayRequest {
    /// Any method, with params sent as they are.
    #[must_use]
    pub fn new(method: impl Into<String>, params: impl Into<Option<Value>>) -> Self {
        GatewayRequest {
            method: method.into(),
            params: params.into(),
        }
    }

    /// `chat.send {sessionKey, message}`; the idempotency key (which is also the run's
    /// stream key) is drawn from the session's seeded generator when the request is
    /// encoded.
    #[must_use]
    pub fn chat_send(session_key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(
            "chat.send",
            json!({ "sessionKey": session_key.into(), "message": message.into() }),
        )
    }

    /// `chat.send {sessionKey, message, idempotencyKey}` with a key of the caller's choice
    /// (to retry a send without running it twice).
    #[must_use]
    pub fn chat_send_with_key(
        session_key: impl Into<String>,
        message: impl Into<String>,
        idempotency_key: impl Into<String>,
    ) -> Self {
        Self::new(
            "chat.send",
            json!({
                "sessionKey": session_key.into(),
                "message": message.into(),
                "idempotencyKey": idempotency_key.into(),
            }),
        )
    }

    /// `chat.history {sessionKey, limit?}`.
    #[must_use]
    pub fn chat_history(session_key: impl Into<String>, limit: Option<u32>) -> Self {
        let mut params = Map::new();
        params.insert("sessionKey".to_owned(), Value::String(session_key.into()));
        if let Some(limit) = limit {
            params.insert("limit".to_owned(), Value::from(limit));
        }
        Self::new("chat.history", Value::Object(params))
    }

    /// `chat.abort {sessionKey, runId?}`.
    #[must_use]
    pub fn chat_abort(session_key: impl Into<String>, run_id: Option<String>) -> Self {
        let mut params = Map::new();
        params.insert("sessionKey".to_owned(), Value::String(session_key.into()));
        if let Some(run_id) = run_id {
            params.insert("runId".to_owned(), Value::String(run_id));
        }
        Self::new("chat.abort", Value::Object(params))
    }

    /// `chat.inject {sessionKey, message, label?}`: adds an assistant message to the
    /// transcript without starting a run.
    #[must_use]
    pub fn chat_inject(
        session_key: impl Into<String>,
        message: impl Into<String>,
        label: Option<String>,
    ) -> Self {
        let mut params = Map::new();
        params.insert("sessionKey".to_owned(), Value::String(session_key.into()));
        params.insert("message".to_owned(), Value::String(message.into()));
        if let Some(label) = label {
            params.insert("label".to_owned(), Value::String(label));
        }
        Self::new("chat.inject", Value::Object(params))
    }

    /// `agent.wait {runId, timeoutMs}`: answered when the run ends (`status` `"ok"` or
    /// `"error"`) or after `timeout` (`status` `"timeout"`; the run goes on). The
    /// gateway drains such waits before it shuts down.
    #[must_use]
    pub fn agent_wait(run_id: impl Into<String>, timeout: Duration) -> Self {
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        Self::new(
            "agent.wait",
            json!({ "runId": run_id.into(), "timeoutMs": timeout_ms }),
        )
    }
}

/// A response payload without the documented shape, from one of the typed readers
/// ([`ChatSendAck::from_payload`], …). Names the field, never its value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnexpectedPayload {
    /// The method whose answer it was.
    pub method: &'static str,
    /// What is wrong.
    pub detail: String,
}

impl fmt::Display for UnexpectedPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unexpected {} answer: {}", self.method, self.detail)
    }
}

impl std::error::Error for UnexpectedPayload {}

/// The object of a response payload, or why it is not one.
fn payload_object<'a>(
    method: &'static str,
    payload: &'a Value,
) -> Result<&'a Map<String, Value>, UnexpectedPayload> {
    payload.as_object().ok_or_else(|| UnexpectedPayload {
        method,
        detail: format!("the payload is {}, not an object", json::kind(payload)),
    })
}

/// A string field of a response payload.
fn payload_str(
    method: &'static str,
    map: &Map<String, Value>,
    key: &str,
) -> Result<String, UnexpectedPayload> {
    match map.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        other => Err(UnexpectedPayload {
            method,
            detail: match other {
                None => format!("no `{key}`"),
                Some(v) => format!("`{key}` is {}, not a string", json::kind(v)),
            },
        }),
    }
}

/// The answer to `chat.send`: `{runId, status}`.
///
/// ```
/// use serde_json::json;
/// use tether_core::StreamKey;
/// use tether_core::profiles::ChatSendAck;
///
/// let ack = ChatSendAck::from_payload(&json!({"runId": "r-1", "status": "started"})).unwrap();
/// assert_eq!(ack.run_id, "r-1");
/// assert_eq!(ack.stream_key(), StreamKey::from("r-1"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatSendAck {
    /// The run's id: the request's idempotency key, which is also its stream key.
    pub run_id: String,
    /// `"started"` for a new run; a repeated key reports the run's state instead.
    pub status: String,
}

impl ChatSendAck {
    /// Reads a `chat.send` response payload.
    ///
    /// # Errors
    ///
    /// [`UnexpectedPayload`] when `runId` or `status` is missing or not a string.
    pub fn from_payload(payload: &Value) -> Result<Self, UnexpectedPayload> {
        const METHOD: &str = "chat.send";
        let map = payload_object(METHOD, payload)?;
        Ok(ChatSendAck {
            run_id: payload_str(METHOD, map, "runId")?,
            status: payload_str(METHOD, map, "status")?,
        })
    }

    /// The key the run's events arrive under.
    #[must_use]
    pub fn stream_key(&self) -> StreamKey {
        StreamKey::from(self.run_id.clone())
    }
}

/// One transcript entry of a [`ChatHistory`].
#[derive(Clone, Debug, PartialEq)]
pub struct ChatMessage {
    /// `role` (`"user"`, `"assistant"`, …), when present.
    pub role: Option<String>,
    /// The message's text, read as a `chat` event's cumulative `message` is (see
    /// [`ChatMessage::text_of`]).
    pub text: Option<String>,
    /// The whole entry, as sent.
    pub message: Value,
}

impl ChatMessage {
    /// The entry `message`, with its role and text read out.
    #[must_use]
    pub fn new(message: Value) -> Self {
        ChatMessage {
            role: message
                .get("role")
                .and_then(Value::as_str)
                .map(str::to_owned),
            text: cumulative_text(&message),
            message,
        }
    }

    /// The text of a chat message as the gateway sends it: a string; an object whose
    /// `content` is a string or an array of parts whose `text` fields concatenate; or an
    /// object with a `text` field. `None` when it carries no text (tool calls only).
    ///
    /// ```
    /// use serde_json::json;
    /// use tether_core::profiles::ChatMessage;
    ///
    /// let m = json!({"role": "assistant", "content": [{"type": "text", "text": "Hel"}, {"type": "text", "text": "lo"}]});
    /// assert_eq!(ChatMessage::text_of(&m).as_deref(), Some("Hello"));
    /// assert_eq!(ChatMessage::text_of(&json!({"content": [{"type": "toolCall"}]})), None);
    /// ```
    #[must_use]
    pub fn text_of(message: &Value) -> Option<String> {
        cumulative_text(message)
    }
}

/// The answer to `chat.history`: `{sessionKey, messages, …}`, oldest message first.
///
/// ```
/// use serde_json::json;
/// use tether_core::profiles::ChatHistory;
///
/// let history = ChatHistory::from_payload(&json!({
///     "sessionKey": "agent:main:main",
///     "messages": [
///         {"role": "user", "content": "hi"},
///         {"role": "assistant", "content": [{"type": "text", "text": "hello"}]},
///     ],
///     "hasMore": false,
/// }))
/// .unwrap();
/// assert_eq!(history.messages[1].text.as_deref(), Some("hello"));
/// assert_eq!(history.last_text("assistant"), Some("hello"));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct ChatHistory {
    /// The session the transcript belongs to.
    pub session_key: String,
    /// The transcript page, oldest first.
    pub messages: Vec<ChatMessage>,
    /// Whether older messages exist (`hasMore`), when the gateway says.
    pub has_more: Option<bool>,
}

impl ChatHistory {
    /// Reads a `chat.history` response payload.
    ///
    /// # Errors
    ///
    /// [`UnexpectedPayload`] when `sessionKey` is not a string or `messages` not an
    /// array.
    pub fn from_payload(payload: &Value) -> Result<Self, UnexpectedPayload> {
        const METHOD: &str = "chat.history";
        let map = payload_object(METHOD, payload)?;
        let messages = match map.get("messages") {
            Some(Value::Array(items)) => items.iter().cloned().map(ChatMessage::new).collect(),
            other => {
                return Err(UnexpectedPayload {
                    method: METHOD,
                    detail: match other {
                        None => "no `messages`".to_owned(),
                        Some(v) => format!("`messages` is {}, not an array", json::kind(v)),
                    },
                });
            }
        };
        Ok(ChatHistory {
            session_key: payload_str(METHOD, map, "sessionKey")?,
            messages,
            has_more: map.get("hasMore").and_then(Value::as_bool),
        })
    }

    /// The text of the newest message with this role.
    #[must_use]
    pub fn last_text(&self, role: &str) -> Option<&str> {
        self.messages
            .iter()
            .rev()
            .find(|m| m.role.as_deref() == Some(role))
            .and_then(|m| m.text.as_deref())
    }
}

/// Reads a `chat.history` payload as [`ChatHistory::from_payload`] does (the entries are
/// kept as `Value`s, as [`ChatMessage::message`] is), so that a response decodes straight
/// into it: `payload.decode::<ChatHistory>()`.
impl<'de> Deserialize<'de> for ChatHistory {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Wire {
            session_key: String,
            messages: Vec<Value>,
            #[serde(default)]
            has_more: Option<Value>,
        }
        let wire = Wire::deserialize(d)?;
        Ok(ChatHistory {
            session_key: wire.session_key,
            messages: wire.messages.into_iter().map(ChatMessage::new).collect(),
            has_more: wire.has_more.as_ref().and_then(Value::as_bool),
        })
    }
}

/// The answer to `chat.abort`: `{ok, aborted, runIds}`.
///
/// ```
/// use serde_json::json;
/// use tether_core::profiles::ChatAbortResult;
///
/// let r = ChatAbortResult::from_payload(&json!({"ok": true, "aborted": true, "runIds": ["r-1"]})).unwrap();
/// assert!(r.aborted);
/// assert_eq!(r.run_ids, ["r-1"]);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatAbortResult {
    /// Whether a run was aborted (`false`: nothing was running).
    pub aborted: bool,
    /// The runs that were aborted.
    pub run_ids: Vec<String>,
}

impl ChatAbortResult {
    /// Reads a `chat.abort` response payload.
    ///
    /// # Errors
    ///
    /// [`UnexpectedPayload`] when `aborted` is not a boolean or `runIds` (when present)
    /// not an array of strings.
    pub fn from_payload(payload: &Value) -> Result<Self, UnexpectedPayload> {
        const METHOD: &str = "chat.abort";
        let map = payload_object(METHOD, payload)?;
        let unexpected = |detail: &str| UnexpectedPayload {
            method: METHOD,
            detail: detail.to_owned(),
        };
        let aborted = map
            .get("aborted")
            .and_then(Value::as_bool)
            .ok_or_else(|| unexpected("`aborted` is missing or not a boolean"))?;
        let run_ids = match map.get("runIds") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(ids)) => ids
                .iter()
                .map(|id| id.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| unexpected("`runIds` holds something other than strings"))?,
            Some(_) => return Err(unexpected("`runIds` is not an array")),
        };
        Ok(ChatAbortResult { aborted, run_ids })
    }
}

/// Reads a `chat.abort` payload as [`ChatAbortResult::from_payload`] does: `payload.decode::<ChatAbortResult>()`.
impl<'de> Deserialize<'de> for ChatAbortResult {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Wire {
            aborted: bool,
            #[serde(default)]
            run_ids: Option<Vec<String>>,
        }
        let wire = Wire::deserialize(d)?;
        Ok(ChatAbortResult {
            aborted: wire.aborted,
            run_ids: wire.run_ids.unwrap_or_default(),
        })
    }
}

/// The answer to `chat.inject`: `{ok, messageId}`. The injected message also arrives as
/// a `chat` event in state `final` under a run id of its own (`inject-<messageId>`),
/// before this answer; no stream was registered for it, so it is
/// [`Event::Unsolicited`](crate::Event::Unsolicited).
///
/// ```
/// use serde_json::json;
/// use tether_core::profiles::ChatInjectAck;
///
/// let ack = ChatInjectAck::from_payload(&json!({"ok": true, "messageId": "m-1"})).unwrap();
/// assert_eq!(ack.message_id, "m-1");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatInjectAck {
    /// The id of the transcript entry written.
    pub message_id: String,
}

impl ChatInjectAck {
    /// Reads a `chat.inject` response payload.
    ///
    /// # Errors
    ///
    /// [`UnexpectedPayload`] when `messageId` is missing or not a string.
    pub fn from_payload(payload: &Value) -> Result<Self, UnexpectedPayload> {
        const METHOD: &str = "chat.inject";
        let map = payload_object(METHOD, payload)?;
        Ok(ChatInjectAck {
            message_id: payload_str(METHOD, map, "messageId")?,
        })
    }
}

/// The error of a `res` with `ok: false`.
#[derive(Clone, Debug, PartialEq)]
pub struct GatewayError {
    /// The error code (`"UNAVAILABLE"`, `"INVALID_REQUEST"`, …).
    pub code: String,
    /// The server's message.
    pub message: String,
    /// Extra details, as sent.
    pub details: Option<Value>,
    /// Whether retrying may succeed.
    pub retryable: Option<bool>,
    /// How long the server asks to wait before retrying.
    pub retry_after_ms: Option<u64>,
}

impl fmt::Display for GatewayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for GatewayError {}

/// The OpenClaw gateway protocol, version 4: the server challenges, the client answers
/// with `connect`, the server acknowledges with `hello-ok`.
///
/// | inbound frame | decoded as |
/// |---|---|
/// | event `connect.challenge` (handshake) | [`Decoded::Challenge`] with the `connect` request |
/// | `res` to `connect`, `ok: true` | [`Decoded::Ack`], heartbeat = `policy.tickIntervalMs` (unless [`GatewayOptions::ticks_as_heartbeat`] is off) |
/// | `res` to `connect`, `ok: false` | [`Decoded::Rejected`] (fatal unless `retryable`) |
/// | `res` to `t<n>` | [`Decoded::Response`] for request `n` |
/// | event `tick` | [`Decoded::Heartbeat`] |
/// | event `chat` | [`Decoded::Stream`] keyed by `payload.runId`, with the run's `seq` (none for terminal states: the gateway reuses the last delta's) |
/// | any other event | [`Decoded::Message`] |
/// | `req`, unknown `type`, binary, invalid JSON | [`Decoded::Violation`] |
///
/// ```
/// use tether_core::profiles::{Gateway, GatewayOptions, GatewayRequest};
/// use tether_core::{Config, Session};
///
/// let gateway = Gateway::new(GatewayOptions {
///     token: Some("token".into()),
///     ..GatewayOptions::default()
/// });
/// let mut session = Session::new(Config::default(), gateway, 42).unwrap();
/// // Once open: `session.request(GatewayRequest::chat_send("agent:main:main", "hi"), None, now)`;
/// // the run's events arrive as `Event::Stream`, keyed by the idempotency key.
/// # let _ = (&mut session, GatewayRequest::chat_send("k", "m"));
/// ```
#[derive(Clone)]
pub struct Gateway {
    options: GatewayOptions,
    /// The current connection's `connect` request id and frame, built at `open`.
    connect_id: String,
    connect_frame: Option<OutFrame>,
    /// Whether the current connection's challenge was answered (so a `res` with
    /// `connect_id` is the connect response).
    answered: bool,
    hello: Option<Value>,
}

impl fmt::Debug for Gateway {
    // The hello-ok payload may carry a device token, and the connect frame the token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gateway")
            .field("options", &self.options)
            .field("connect_id", &self.connect_id)
            .field("answered", &self.answered)
            .field("hello", &self.hello.as_ref().map(|_| "<hello-ok>"))
            .finish()
    }
}

/// A `req` frame, serialized from borrowed parts.
#[derive(Serialize)]
struct WireRequest<'a, P: Serialize> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: &'a str,
    method: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    params: Option<P>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ConnectParams<'a> {
    min_protocol: u32,
    max_protocol: u32,
    client: ClientInfo<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    auth: Option<Auth<'a>>,
    scopes: &'a [String],
}

#[derive(Serialize)]
struct ClientInfo<'a> {
    id: &'a str,
    version: &'a str,
    platform: &'a str,
    mode: &'a str,
}

#[derive(Serialize)]
struct Auth<'a> {
    token: &'a str,
}

impl Gateway {
    /// A gateway protocol that introduces itself with `options`.
    #[must_use]
    pub fn new(options: GatewayOptions) -> Self {
        Gateway {
            options,
            connect_id: String::new(),
            connect_frame: None,
            answered: false,
            hello: None,
        }
    }

    /// The payload of the last `hello-ok` (protocol, features, `policy.tickIntervalMs`,
    /// `policy.maxPayload`, …), kept across reconnects until the next one replaces it;
    /// `None` before the first handshake completes.
    #[must_use]
    pub fn hello(&self) -> Option<&Value> {
        self.hello.as_ref()
    }

    fn build_connect(&self) -> Result<OutFrame, EncodeError> {
        let o = &self.options;
        json::text_frame(&WireRequest {
            kind: "req",
            id: &self.connect_id,
            method: "connect",
            params: Some(ConnectParams {
                min_protocol: o.min_protocol,
                max_protocol: o.max_protocol,
                client: ClientInfo {
                    id: &o.client_id,
                    version: &o.client_version,
                    platform: &o.platform,
                    mode: &o.mode,
                },
                auth: o.token.as_deref().map(|token| Auth { token }),
                scopes: &o.scopes,
            }),
        })
    }

    fn event(
        &mut self,
        frame: &Utf8Bytes,
        f: &Fields<'_>,
        phase: Phase,
    ) -> Result<Decoded<Self>, Violation> {
        let Scalar::Str(name) = Scalar::of(f.get(EVENT)) else {
            return Err(json::malformed("event without a string `event` name"));
        };
        let seq = json::raw_opt_u64(f.get(SEQ), "seq")?;
        let payload = f.get(PAYLOAD);
        let event = |name: Cow<'_, str>| GatewayEvent {
            event: json::text_of(frame, name),
            payload: payload.map_or_else(
                || JsonPayload::checked(Utf8Bytes::from_static("null")),
                |raw| JsonPayload::slice_of(frame, raw),
            ),
            seq,
            state_version: f
                .get(STATE_VERSION)
                .filter(|raw| !raw.is_null())
                .map(|raw| JsonPayload::slice_of(frame, raw)),
        };
        Ok(match &*name {
            "connect.challenge" => match (phase, &self.connect_frame) {
                (Phase::Handshake, Some(connect)) => {
                    self.answered = true;
                    Decoded::Challenge(connect.clone())
                }
                _ => Decoded::Violation(Violation::UnexpectedHandshake),
            },
            "tick" => Decoded::Heartbeat,
            "chat" => {
                let parts = chat_parts(frame, f.payload)?;
                Decoded::Stream(json::with_payload(parts, event(name)))
            }
            _ => Decoded::Message(event(name)),
        })
    }

    fn response(
        &mut self,
        frame: &Utf8Bytes,
        f: &Fields<'_>,
        phase: Phase,
    ) -> Result<Decoded<Self>, Violation> {
        let Some(raw_id) = f.get(ID) else {
            return Err(json::malformed("res without `id`"));
        };
        let ok = json::raw_opt_bool(f.get(OK), "ok")?
            .ok_or_else(|| json::malformed("res without `ok`"))?;
        let wire = match Scalar::of(Some(raw_id)) {
            Scalar::Str(s) => Some(s),
            _ => None,
        };
        if self.answered && wire.as_deref() == Some(self.connect_id.as_str()) {
            return self.connect_response(f, ok, phase);
        }
        let id = wire
            .as_deref()
            .and_then(request_id)
            .ok_or_else(|| json::raw_wire_id(raw_id));
        let result = if ok {
            Ok(f.get(PAYLOAD).map_or_else(
                || JsonPayload::checked(Utf8Bytes::from_static("null")),
                |raw| JsonPayload::slice_of(frame, raw),
            ))
        } else {
            Err(gateway_error(f.get(ERROR))?)
        };
        Ok(Decoded::Response { id, result })
    }

    fn connect_response(
        &mut self,
        f: &Fields<'_>,
        ok: bool,
        phase: Phase,
    ) -> Result<Decoded<Self>, Violation> {
        if !ok {
            let error = gateway_error(f.get(ERROR))?;
            return Ok(Decoded::Rejected(Rejection {
                message: error.message,
                fatal: error.retryable != Some(true),
                retry_after: error.retry_after_ms.map(Duration::from_millis),
            }));
        }
        // The handshake's payload is kept as a `Value` (`Gateway::hello`): once per
        // connection, not worth a lazy form.
        let payload = json::raw_value(f.get(PAYLOAD))?;
        let hello = payload
            .as_object()
            .filter(|p| p.get("type").and_then(Value::as_str) == Some("hello-ok"))
            .ok_or_else(|| json::malformed("connect answered without a hello-ok payload"))?;
        let tick = match hello.get("policy") {
            None | Some(Value::Null) => None,
            Some(Value::Object(policy)) => json::opt_millis(policy, "tickIntervalMs")?,
            Some(other) => {
                return Err(json::malformed(format!(
                    "`policy` must be an object, not {}",
                    json::kind(other)
                )));
            }
        };
        let heartbeat = tick.filter(|_| self.options.ticks_as_heartbeat);
        // A second acknowledgement is the session's to report (a duplicate ack); it must
        // not replace the payload of the handshake that opened the connection.
        if phase == Phase::Handshake {
            self.hello = Some(payload);
        }
        Ok(Decoded::Ack(Acked {
            heartbeat,
            ..Acked::default()
        }))
    }
}

// The envelope fields a decision reads, by index into `KEYS`.
const TYPE: usize = 0;
const EVENT: usize = 1;
const PAYLOAD: usize = 2;
const SEQ: usize = 3;
const STATE_VERSION: usize = 4;
const ID: usize = 5;
const OK: usize = 6;
const ERROR: usize = 7;

/// Every top-level field a decision reads; all others are skipped unread.
const KEYS: [&str; 8] = [
    "type",
    "event",
    "payload",
    "seq",
    "stateVersion",
    "id",
    "ok",
    "error",
];

/// The fields of an object `payload` a `chat` event reads, read with the envelope.
const CHAT_KEYS: [&str; 6] = [
    "runId",
    "seq",
    "state",
    "errorMessage",
    "message",
    "deltaText",
];

/// A frame's envelope: the raw values of `KEYS`, and of `CHAT_KEYS` in an object
/// `payload`, borrowed from the frame.
struct Fields<'a> {
    envelope: [Option<Raw<'a>>; KEYS.len()],
    payload: Option<[Option<Raw<'a>>; CHAT_KEYS.len()]>,
}

impl<'a> Fields<'a> {
    fn get(&self, i: usize) -> Option<Raw<'a>> {
        self.envelope.get(i).copied().flatten()
    }
}

impl Protocol for Gateway {
    type Inbound = GatewayEvent;
    type Outbound = Value;
    type Request = GatewayRequest;
    type Response = JsonPayload;
    type RemoteError = GatewayError;

    fn open(&mut self, conn: ConnId) -> Result<Opening, EncodeError> {
        self.connect_id = format!("connect-{}", conn.get());
        self.answered = false;
        // Cleared first: if the frame cannot be built, no stale one answers a challenge.
        self.connect_frame = None;
        self.connect_frame = Some(self.build_connect()?);
        Ok(Opening::AwaitServer)
    }

    fn encode(&mut self, message: Value) -> Result<OutFrame, EncodeError> {
        json::text_frame(&message)
    }

    fn encode_request(
        &mut self,
        meta: RequestMeta,
        request: GatewayRequest,
    ) -> Result<EncodedRequest, EncodeError> {
        let GatewayRequest { method, mut params } = request;
        let mut stream = None;
        if method == "chat.send" {
            let Some(Value::Object(p)) = &mut params else {
                return Err(EncodeError("chat.send params must be a JSON object".into()));
            };
            let key = match p.get("idempotencyKey") {
                None | Some(Value::Null) => {
                    let key = meta.nonce_uuid();
                    p.insert("idempotencyKey".to_owned(), Value::String(key.clone()));
                    key
                }
                Some(Value::String(key)) => key.clone(),
                Some(other) => {
                    return Err(EncodeError(format!(
                        "chat.send idempotencyKey must be a string, not {}",
                        json::kind(other)
                    )));
                }
            };
            stream = Some(StreamKey::from(key));
        }
        let frame = json::text_frame(&WireRequest {
            kind: "req",
            id: &format!("t{}", meta.id.get()),
            method: &method,
            params: params.as_ref(),
        })?;
        Ok(EncodedRequest {
            frame,
            stream,
            idempotent: false,
            resumable: false,
        })
    }

    fn decode(&mut self, frame: DataFrame, phase: Phase) -> Decoded<Self> {
        let DataFrame::Text(text) = frame else {
            return Decoded::Violation(Violation::UnexpectedBinary);
        };
        // Every event's object payload is read for the chat fields in the same pass: the
        // event's name may come after it.
        let fields = match json::pick_nested(text.as_str(), &KEYS, PAYLOAD, &CHAT_KEYS) {
            Ok((Top::Object(envelope), payload)) => Fields { envelope, payload },
            Ok((Top::Other(kind), _)) => {
                return Decoded::Violation(json::malformed(format!(
                    "a frame must be a JSON object, not {kind}"
                )));
            }
            Err(e) => return Decoded::Violation(json::malformed(format!("invalid JSON: {e}"))),
        };
        let decoded = match Scalar::of(fields.get(TYPE)) {
            Scalar::Str(kind) => match &*kind {
                "event" => self.event(&text, &fields, phase),
                "res" => self.response(&text, &fields, phase),
                "req" => Err(json::malformed("the server sent a request")),
                _ => Err(json::malformed("unknown frame type")),
            },
            _ => Err(json::malformed("frame without a string `type`")),
        };
        decoded.unwrap_or_else(Decoded::Violation)
    }

    fn response_stream(&self, response: &JsonPayload) -> Option<StreamKey> {
        let [run] = json::pick_object(response.as_str(), &["runId"])?;
        match Scalar::of(run) {
            Scalar::Str(run) => Some(StreamKey::from(run.into_owned())),
            _ => None,
        }
    }
}

/// Maps a wire id `t<decimal>` back to the request id it was encoded from. Only the
/// exact spelling `encode_request` produces is accepted (no sign, no leading zero).
fn request_id(wire: &str) -> Option<RequestId> {
    let digits = wire.strip_prefix('t')?;
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    if !canonical {
        return None;
    }
    digits.parse().ok().map(RequestId::from_raw)
}

/// The `error` object of a `res` with `ok: false` (read as a `Value`: errors are rare).
fn gateway_error(error: Option<Raw<'_>>) -> Result<GatewayError, Violation> {
    let Value::Object(mut map) = json::raw_value(error)? else {
        return Err(json::malformed(
            "res with ok: false without an `error` object",
        ));
    };
    Ok(GatewayError {
        code: json::req_str(&map, "code")?.to_owned(),
        message: json::req_str(&map, "message")?.to_owned(),
        retryable: json::opt_bool(&map, "retryable")?,
        retry_after_ms: json::opt_u64(&map, "retryAfterMs")?,
        details: map.remove("details").filter(|v| !v.is_null()),
    })
}

/// A `chat` event's stream fields. Only `runId` and `state` are required; text fields of
/// an unexpected shape are ignored, so a terminal event always ends its run.
fn chat_parts(
    frame: &Utf8Bytes,
    payload: Option<[Option<Raw<'_>>; CHAT_KEYS.len()]>,
) -> Result<StreamFrame<()>, Violation> {
    let [run_id, seq, state, error_message, message, delta_text] =
        payload.ok_or_else(|| json::malformed("chat event without an object payload"))?;
    let key = json::key_of(frame, json::raw_req_str(run_id, "runId")?);
    let seq = json::raw_opt_u64(seq, "seq")?;
    let state = json::stream_state(&json::raw_req_str(state, "state")?, || {
        match Scalar::of(error_message) {
            Scalar::Str(m) => m.into_owned(),
            _ => "unknown error".to_owned(),
        }
    })?;
    // A cumulative `message` has many shapes (see `cumulative_text`): read as a `Value`.
    let cumulative = message.and_then(|raw| serde_json::from_str::<Value>(raw.get()).ok());
    let (text, text_mode) = match cumulative.as_ref().and_then(cumulative_text) {
        Some(text) => (Some(text), TextMode::Accumulated),
        None => (
            match Scalar::of(delta_text) {
                Scalar::Str(t) => Some(t.into_owned()),
                _ => None,
            },
            TextMode::Incremental,
        ),
    };
    // The gateway numbers a run's terminal event with the seq of the last delta it
    // flushes (a `delta` and the `final` both carry seq 26), and a second `error` starts
    // again at 1: a terminal's seq identifies nothing, so it takes part in neither
    // de-duplication nor gap detection. The first terminal ends the run; later ones are
    // suppressed by the session's cooldown.
    let seq = if state.is_terminal() { None } else { seq };
    Ok(StreamFrame {
        key,
        seq,
        state,
        text,
        text_mode,
        payload: (),
    })
}

/// The text of a cumulative chat `message`: a string; an object whose `content` is a
/// string or an array of parts whose `text` fields concatenate; or an object with a
/// `text` field. `None` when the message carries no text (a content array of tool calls
/// only), so that an empty string does not read as the peer rewriting its text.
fn cumulative_text(message: &Value) -> Option<String> {
    match message {
        Value::String(s) => Some(s.clone()),
        Value::Object(m) => match m.get("content") {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Array(parts)) => {
                let mut texts = parts
                    .iter()
                    .filter_map(|p| p.get("text").and_then(Value::as_str))
                    .peekable();
                texts.peek()?;
                Some(texts.collect())
            }
            _ => m.get("text").and_then(Value::as_str).map(str::to_owned),
        },
        _ => None,
    }
}
