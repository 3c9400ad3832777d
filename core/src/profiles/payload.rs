//! [`JsonPayload`]: a JSON value kept as the text it arrived as, decoded only when the
//! application asks, into the application's own type.

use std::any::type_name;
use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

use crate::frame::Utf8Bytes;

/// A JSON value as the peer sent it: a slice of the received frame's buffer (no copy, no
/// parse), decoded only when the application asks for it.
///
/// The JSON profiles ([`HelloAck`](super::HelloAck), [`Gateway`](super::Gateway)) read
/// only the envelope of a frame (its `type`, `id`, `seq`, `stream`, `state`, …) to route
/// it, and hand its payload over as a `JsonPayload`:
///
/// - [`decode::<T>()`](Self::decode) deserializes it straight into any
///   `serde::Deserialize` type of the application's, with no `serde_json::Value` in
///   between; `T` may borrow from the payload (`&str` fields) to avoid copies.
/// - [`value()`](Self::value) builds a `serde_json::Value`, for those who want one.
/// - [`as_str()`](Self::as_str) and [`Display`](fmt::Display) give the JSON text as
///   received.
///
/// A payload that does not match `T` is a [`PayloadError`] returned by that call, and
/// nothing else: the session accepted the frame, delivered the event and stays open.
///
/// The text is valid JSON syntax (the profile checked it while reading the envelope, and
/// refused a frame nested deeper than a `Value` can be), but may still fail to become a
/// `Value`: a number out of range, or, in a payload of your own from
/// [`from_text`](Self::from_text), nesting deeper than 128 levels. Those are
/// `PayloadError`s too.
///
/// ```
/// use serde::{Deserialize, Serialize, Serializer};
/// use tether_core::profiles::JsonPayload;
///
/// #[derive(Debug, Deserialize)]
/// struct Chat<'a> {
///     n: u32,
///     body: &'a str, // borrowed from the frame: no copy
/// }
///
/// // As a profile hands it over (here built from a string).
/// let payload = JsonPayload::from_text(r#"{"type":"msg","n":1,"body":"hi"}"#.to_owned())?;
/// let chat: Chat<'_> = payload.decode()?;
/// assert_eq!((chat.n, chat.body), (1, "hi"));
///
/// // A payload that is not a `Chat` is an error on this call only.
/// let other = JsonPayload::from_text(r#"{"type":"msg","n":"one"}"#.to_owned())?;
/// let err = other.decode::<Chat<'_>>().unwrap_err();
/// assert!(err.to_string().contains("Chat"));
///
/// // The `Value` path is still there.
/// assert_eq!(payload.value()?["n"], 1);
/// assert_eq!(payload, serde_json::json!({"type": "msg", "n": 1, "body": "hi"}));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct JsonPayload {
    /// Invariant: valid UTF-8 holding one syntactically valid JSON value.
    text: Utf8Bytes,
}

impl JsonPayload {
    /// Wraps text the profile already checked as one JSON value.
    pub(crate) fn checked(text: Utf8Bytes) -> Self {
        JsonPayload { text }
    }

    /// `raw`, borrowed from `frame`'s bytes while reading it, as a slice of `frame`
    /// (no copy). Falls back to a copy if `raw` does not lie within `frame`, which a
    /// borrowed read of `frame` never produces.
    pub(crate) fn slice_of(frame: &Utf8Bytes, raw: super::json::Raw<'_>) -> Self {
        let text = frame
            .slice_ref(raw.get())
            .unwrap_or_else(|| Utf8Bytes::from_string(raw.get().to_owned()));
        JsonPayload { text }
    }

    /// A payload from JSON text, checked to be one JSON value (for tests, replays and
    /// payloads from elsewhere).
    ///
    /// # Errors
    ///
    /// A [`PayloadError`] when `text` is not one JSON value.
    pub fn from_text(text: String) -> Result<Self, PayloadError> {
        serde_json::from_str::<serde::de::IgnoredAny>(&text)
            .map_err(PayloadError::new::<serde::de::IgnoredAny>)?;
        Ok(JsonPayload {
            text: Utf8Bytes::from_string(text),
        })
    }

    /// A payload holding `value`, serialized.
    #[must_use]
    pub fn from_value(value: &Value) -> Self {
        JsonPayload {
            // `Value`'s `Serialize` cannot fail: its map keys are strings.
            text: Utf8Bytes::from_string(value.to_string()),
        }
    }

    /// Decodes the payload into `T`, straight from its text: no `serde_json::Value` is
    /// built unless `T` is one. `T` may borrow from the payload.
    ///
    /// # Errors
    ///
    /// A [`PayloadError`] when the payload does not match `T`. It concerns this call
    /// only: the event was delivered and the session is unaffected.
    ///
    /// ```
    /// use serde::{Deserialize, Serialize, Serializer};
    /// use tether_core::profiles::JsonPayload;
    ///
    /// #[derive(Debug, Deserialize, PartialEq)]
    /// struct Point { x: i32, y: i32 }
    ///
    /// let p = JsonPayload::from_text(r#"{"x":1,"y":2}"#.to_owned()).unwrap();
    /// assert_eq!(p.decode::<Point>().unwrap(), Point { x: 1, y: 2 });
    /// assert!(p.decode::<Vec<u8>>().is_err());
    /// ```
    pub fn decode<'de, T: Deserialize<'de>>(&'de self) -> Result<T, PayloadError> {
        serde_json::from_slice(self.text.as_bytes()).map_err(PayloadError::new::<T>)
    }

    /// The payload as a `serde_json::Value` (what the profiles handed over before typed
    /// payloads).
    ///
    /// # Errors
    ///
    /// A [`PayloadError`] for the rare JSON text that is no `Value`: nesting deeper than
    /// 128 levels, a number out of `f64` range.
    pub fn value(&self) -> Result<Value, PayloadError> {
        self.decode()
    }

    /// The JSON text, as received.
    #[must_use]
    pub fn as_str(&self) -> &str {
        self.text.as_str()
    }

    /// The JSON text's bytes, as received.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        self.text.as_bytes()
    }

    /// The shared buffer holding the JSON text (a slice of the frame), without a copy.
    #[must_use]
    pub fn into_bytes(self) -> Bytes {
        self.text.into_bytes()
    }

    /// Whether the payload is the JSON `null`.
    #[must_use]
    pub fn is_null(&self) -> bool {
        self.text.as_bytes().trim_ascii() == b"null"
    }
}

impl fmt::Debug for JsonPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("JsonPayload").field(&self.as_str()).finish()
    }
}

/// The JSON text, as received.
impl fmt::Display for JsonPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<Value> for JsonPayload {
    fn from(value: Value) -> Self {
        JsonPayload::from_value(&value)
    }
}

impl From<&Value> for JsonPayload {
    fn from(value: &Value) -> Self {
        JsonPayload::from_value(value)
    }
}

/// Equal when both hold the same JSON value, as `serde_json::Value`s compare (whatever the
/// whitespace and key order): the equality events had when payloads were `Value`s. Text
/// that is no `Value` (too deep) is equal only to the same text.
impl PartialEq for JsonPayload {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text || matches!((self.value(), other.value()), (Ok(a), Ok(b)) if a == b)
    }
}

/// Equal when the payload decodes to this `Value` (so `assert_eq!(payload, json!(…))`
/// reads as it did when payloads were `Value`s).
impl PartialEq<Value> for JsonPayload {
    fn eq(&self, other: &Value) -> bool {
        self.value().is_ok_and(|v| v == *other)
    }
}

impl PartialEq<JsonPayload> for Value {
    fn eq(&self, other: &JsonPayload) -> bool {
        other == self
    }
}

/// Serializes the JSON value the payload holds, through a `serde_json::Value` so that any
/// serializer (not only serde_json's) receives it as data. To write the text as received,
/// use [`as_str`](JsonPayload::as_str).
///
/// # Errors
///
/// The serializer's error when the text is no `Value` (nesting deeper than 128 levels, a
/// number out of `f64` range).
impl Serialize for JsonPayload {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.value()
            .map_err(serde::ser::Error::custom)?
            .serialize(serializer)
    }
}

/// A payload that does not decode into the type asked for
/// ([`JsonPayload::decode`]). An error of that call alone: the session delivered the
/// event and goes on.
///
/// Its `Display` names the type and where in the payload decoding stopped, never a
/// value from the payload (payloads may carry credentials, and errors end up in logs);
/// serde's own message, which may quote part of the payload, is the
/// [`source`](std::error::Error::source).
#[derive(Debug)]
pub struct PayloadError {
    target: &'static str,
    error: serde_json::Error,
}

impl PayloadError {
    fn new<T>(error: serde_json::Error) -> Self {
        PayloadError {
            target: type_name::<T>(),
            error,
        }
    }

    /// The type the payload was to be decoded into.
    #[must_use]
    pub fn target(&self) -> &'static str {
        self.target
    }

    /// Whether the payload is well-formed JSON of another shape than the type (a missing
    /// field, a wrong type), as opposed to JSON no type can read (too deep, a number
    /// out of range, or text that is not JSON at all).
    #[must_use]
    pub fn is_mismatch(&self) -> bool {
        self.error.is_data()
    }

    /// Line (1-based) where decoding stopped.
    #[must_use]
    pub fn line(&self) -> usize {
        self.error.line()
    }

    /// Column (1-based) where decoding stopped.
    #[must_use]
    pub fn column(&self) -> usize {
        self.error.column()
    }

    /// serde's error, whose message may quote part of the payload.
    #[must_use]
    pub fn serde_error(&self) -> &serde_json::Error {
        &self.error
    }
}

impl fmt::Display for PayloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.error.classify() {
            serde_json::error::Category::Data => "does not match",
            serde_json::error::Category::Syntax => "is not valid JSON for",
            serde_json::error::Category::Eof => "ends too early for",
            serde_json::error::Category::Io => "could not be read as",
        };
        write!(
            f,
            "the payload {what} `{}` (at line {}, column {})",
            self.target,
            self.error.line(),
            self.error.column()
        )
    }
}

impl std::error::Error for PayloadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}
