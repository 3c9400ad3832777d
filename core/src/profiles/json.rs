//! Helpers shared by the JSON profiles: reading a frame's envelope in one pass with
//! borrowed fields ([`pick`]), parsing a data frame without copying it, encoding a text
//! frame, reading optional fields strictly, and stream states.
//!
//! Every reader returns a [`Violation::Malformed`] for a field of the wrong type instead of
//! guessing, and never echoes field *values* into the violation's detail: payloads may
//! carry credentials, and violations end up in logs.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{EncodeError, Violation};
use crate::frame::{OutFrame, Utf8Bytes};
use crate::ids::StreamKey;
use crate::protocol::{StreamFrame, StreamState};

/// A [`Violation::Malformed`] with this detail.
pub(crate) fn malformed(detail: impl Into<String>) -> Violation {
    Violation::Malformed {
        detail: detail.into(),
    }
}

/// Serializes `value` into a text frame.
pub(crate) fn text_frame<T: Serialize + ?Sized>(value: &T) -> Result<OutFrame, EncodeError> {
    serde_json::to_string(value)
        .map(OutFrame::text)
        .map_err(|e| EncodeError(format!("cannot serialize JSON: {e}")))
}

/// The kind of a JSON value, for error details that must not echo the value itself.
pub(crate) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A field that is absent or `null` is `None`; a field of another type than `T` is
/// malformed.
fn optional<'a, T>(
    map: &'a Map<String, Value>,
    key: &str,
    expected: &str,
    read: impl FnOnce(&'a Value) -> Option<T>,
) -> Result<Option<T>, Violation> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => read(v)
            .map(Some)
            .ok_or_else(|| malformed(format!("`{key}` must be {expected}, not {}", kind(v)))),
    }
}

/// An optional string field.
pub(crate) fn opt_str<'a>(
    map: &'a Map<String, Value>,
    key: &str,
) -> Result<Option<&'a str>, Violation> {
    optional(map, key, "a string", Value::as_str)
}

/// A required string field.
pub(crate) fn req_str<'a>(map: &'a Map<String, Value>, key: &str) -> Result<&'a str, Violation> {
    opt_str(map, key)?.ok_or_else(|| malformed(format!("missing string `{key}`")))
}

/// An optional non-negative integer field.
pub(crate) fn opt_u64(map: &Map<String, Value>, key: &str) -> Result<Option<u64>, Violation> {
    optional(map, key, "a non-negative integer", Value::as_u64)
}

/// An optional boolean field.
pub(crate) fn opt_bool(map: &Map<String, Value>, key: &str) -> Result<Option<bool>, Violation> {
    optional(map, key, "a boolean", Value::as_bool)
}

/// An optional duration in milliseconds.
pub(crate) fn opt_millis(
    map: &Map<String, Value>,
    key: &str,
) -> Result<Option<Duration>, Violation> {
    Ok(opt_u64(map, key)?.map(Duration::from_millis))
}

/// A stream state from its wire name (`status`, `delta`, `final`, `error`, `aborted`);
/// `error_message` is asked for only when the state is `error`.
pub(crate) fn stream_state(
    state: &str,
    error_message: impl FnOnce() -> String,
) -> Result<StreamState, Violation> {
    Ok(match state {
        "status" => StreamState::Status,
        "delta" => StreamState::Delta,
        "final" => StreamState::Final,
        "error" => StreamState::Error {
            message: error_message(),
        },
        "aborted" => StreamState::Aborted,
        // The peer's value is not echoed (it could be anything, of any length).
        _ => return Err(malformed("unknown stream state".to_owned())),
    })
}

/// A stream frame decoded without its payload, with the payload put in.
/// Text read from `frame`: a slice of it, shared without a copy, when the text is
/// borrowed from it (written without escapes); a buffer of its own otherwise.
pub(crate) fn text_of(frame: &Utf8Bytes, text: Cow<'_, str>) -> Utf8Bytes {
    match text {
        Cow::Borrowed(s) => frame
            .slice_ref(s)
            .unwrap_or_else(|| Utf8Bytes::from_string(s.to_owned())),
        Cow::Owned(s) => Utf8Bytes::from_string(s),
    }
}

/// A stream key read from `frame`, as [`text_of`] reads text.
pub(crate) fn key_of(frame: &Utf8Bytes, text: Cow<'_, str>) -> StreamKey {
    StreamKey::from(text_of(frame, text))
}

pub(crate) fn with_payload<I>(parts: StreamFrame<()>, payload: I) -> StreamFrame<I> {
    StreamFrame {
        key: parts.key,
        seq: parts.seq,
        state: parts.state,
        text: parts.text,
        text_mode: parts.text_mode,
        payload,
    }
}

// ---- envelopes: borrowed, one pass, no `Value` ------------------------------------------

pub(crate) use super::scan::{Raw, Top, pick, pick_nested, pick_object};

/// A raw field as a `Value` (absent: `null`), for the rare frames whose fields are read
/// as values (a handshake's acknowledgement, an error).
pub(crate) fn raw_value(raw: Option<Raw<'_>>) -> Result<Value, Violation> {
    raw.map_or(Ok(Value::Null), |raw| {
        serde_json::from_str(raw.get()).map_err(|e| malformed(format!("invalid JSON: {e}")))
    })
}

/// A field's value, read leniently: its type is judged by the caller.
#[derive(Debug, PartialEq)]
pub(crate) enum Scalar<'a> {
    Null,
    Bool(bool),
    U64(u64),
    /// Borrowed from the frame unless written with escapes.
    Str(Cow<'a, str>),
    /// Anything else, by kind (for error details that must not echo the value).
    Other(&'static str),
}

impl<'a> Scalar<'a> {
    /// Reads `raw` (absent reads as `null`). The common fields (a string without
    /// escapes, a small non-negative integer, a literal) are read straight off the
    /// scanned text; anything else goes through `serde_json`.
    pub(crate) fn of(raw: Option<Raw<'a>>) -> Self {
        let Some(raw) = raw else {
            return Scalar::Null;
        };
        let text = raw.get();
        if let Some(s) = raw.plain_str() {
            return Scalar::Str(Cow::Borrowed(s));
        }
        match text.as_bytes() {
            b"null" => return Scalar::Null,
            b"true" => return Scalar::Bool(true),
            b"false" => return Scalar::Bool(false),
            [b'[', ..] => return Scalar::Other("an array"),
            [b'{', ..] => return Scalar::Other("an object"),
            // Up to 19 digits always fit a `u64`; the scanner refused leading zeros.
            digits if digits.len() <= 19 && digits.iter().all(u8::is_ascii_digit) => {
                // At most 19 digits: below 10^19 < 2^64, so this cannot overflow.
                let n = digits
                    .iter()
                    .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
                return Scalar::U64(n);
            }
            _ => {}
        }
        // The value is valid JSON syntax (the scanner checked it); what can still fail
        // is a number beyond `f64` (`1e400`), which `Value` refuses too, or a string
        // with a lone surrogate escape.
        serde_json::from_str(text).unwrap_or(if text.starts_with('"') {
            Scalar::Other("a string with an invalid escape")
        } else {
            Scalar::Other("a number out of range")
        })
    }

    /// The kind of value, for error details.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Scalar::Null => "null",
            Scalar::Bool(_) => "a boolean",
            Scalar::U64(_) => "a number",
            Scalar::Str(_) => "a string",
            Scalar::Other(kind) => kind,
        }
    }
}

impl<'de> Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Null)
    }

    fn visit_bool<E>(self, b: bool) -> Result<Self::Value, E> {
        Ok(Scalar::Bool(b))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Self::Value, E> {
        Ok(Scalar::U64(n))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Self::Value, E> {
        // serde_json calls this for negative integers only.
        Ok(u64::try_from(n).map_or(Scalar::Other("a number"), Scalar::U64))
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Scalar::Other("a number"))
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Borrowed(s)))
    }

    fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(s.to_owned())))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other("an array"))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other("an object"))
    }
}

/// A raw field that is absent or `null` is `None`; one of another type than `T` is
/// malformed. `key` names the field in the error.
fn raw_optional<'a, T>(
    raw: Option<Raw<'a>>,
    key: &str,
    expected: &str,
    read: impl FnOnce(Scalar<'a>) -> Result<T, Scalar<'a>>,
) -> Result<Option<T>, Violation> {
    match Scalar::of(raw) {
        Scalar::Null => Ok(None),
        s => read(s)
            .map(Some)
            .map_err(|s| malformed(format!("`{key}` must be {expected}, not {}", s.kind()))),
    }
}

/// An optional string field, borrowed from the frame when it can be.
pub(crate) fn raw_opt_str<'a>(
    raw: Option<Raw<'a>>,
    key: &str,
) -> Result<Option<Cow<'a, str>>, Violation> {
    raw_optional(raw, key, "a string", |s| match s {
        Scalar::Str(s) => Ok(s),
        other => Err(other),
    })
}

/// A required string field.
pub(crate) fn raw_req_str<'a>(raw: Option<Raw<'a>>, key: &str) -> Result<Cow<'a, str>, Violation> {
    raw_opt_str(raw, key)?.ok_or_else(|| malformed(format!("missing string `{key}`")))
}

/// An optional non-negative integer field.
pub(crate) fn raw_opt_u64(raw: Option<Raw<'_>>, key: &str) -> Result<Option<u64>, Violation> {
    raw_optional(raw, key, "a non-negative integer", |s| match s {
        Scalar::U64(n) => Ok(n),
        other => Err(other),
    })
}

/// An optional boolean field.
pub(crate) fn raw_opt_bool(raw: Option<Raw<'_>>, key: &str) -> Result<Option<bool>, Violation> {
    raw_optional(raw, key, "a boolean", |s| match s {
        Scalar::Bool(b) => Ok(b),
        other => Err(other),
    })
}

/// An optional duration in milliseconds.
pub(crate) fn raw_opt_millis(
    raw: Option<Raw<'_>>,
    key: &str,
) -> Result<Option<Duration>, Violation> {
    Ok(raw_opt_u64(raw, key)?.map(Duration::from_millis))
}

/// The wire spelling of a raw id the session cannot map back to a request: a string as
/// it is, anything else as its JSON text.
pub(crate) fn raw_wire_id(raw: Raw<'_>) -> String {
    match Scalar::of(Some(raw)) {
        Scalar::Str(s) => s.into_owned(),
        // As `Value` prints it, whatever whitespace the peer put in.
        _ => serde_json::from_str::<Value>(raw.get())
            .map_or_else(|_| raw.get().to_owned(), |v| v.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            other => panic!("not an object: {other}"),
        }
    }

    /// The raw values `pick` keeps for `KEYS`, as text.
    fn picked(text: &str) -> Result<Vec<Option<&str>>, &'static str> {
        const KEYS: [&str; 3] = ["type", "n", "p"];
        match pick(text, &KEYS) {
            Ok(Top::Object(f)) => Ok(f.iter().map(|r| r.map(Raw::get)).collect()),
            Ok(Top::Other(kind)) => Err(kind),
            Err(_) => Err("invalid"),
        }
    }

    #[test]
    fn pick_keeps_asked_fields_raw_and_skips_the_rest() {
        assert_eq!(
            picked(r#"{"x":[1,{"y":2}],"type":"a","p": {"deep":[null]} ,"q":"s"}"#),
            Ok(vec![Some(r#""a""#), None, Some(r#"{"deep":[null]}"#)])
        );
        // The last of a repeated key wins, as in a `Value`.
        assert_eq!(picked(r#"{"n":1,"n":2}"#), Ok(vec![None, Some("2"), None]));
        // A key written with escapes is still recognised.
        assert_eq!(
            picked(r#"{"\u0074ype":"b"}"#),
            Ok(vec![Some(r#""b""#), None, None])
        );
        assert_eq!(picked("[1,[2]]"), Err("an array"));
        assert_eq!(picked(r#""s""#), Err("a string"));
        assert_eq!(picked("-1.5"), Err("a number"));
        assert_eq!(picked("null"), Err("null"));
        assert_eq!(picked("true"), Err("a boolean"));
        for garbage in ["{nope", "{\"a\":1} x", "", "[1,]", "{\"a\":}"] {
            assert_eq!(picked(garbage), Err("invalid"), "{garbage}");
        }
    }

    #[test]
    fn scalars_borrow_plain_strings_and_judge_kinds() {
        // A scanned value, as the profiles get it.
        let raw = |s: &str| -> Raw<'static> {
            let text: &'static str = Box::leak(format!(r#"{{"v":{s}}}"#).into_boxed_str());
            match pick(text, &["v"]) {
                Ok(Top::Object([Some(v)])) => v,
                _ => panic!("valid JSON: {s}"),
            }
        };
        assert!(matches!(
            Scalar::of(Some(raw(r#""plain""#))),
            Scalar::Str(Cow::Borrowed("plain"))
        ));
        assert_eq!(
            Scalar::of(Some(raw(r#""tab\t""#))),
            Scalar::Str(Cow::Owned("tab\t".to_owned()))
        );
        assert_eq!(Scalar::of(None), Scalar::Null);
        assert_eq!(Scalar::of(Some(raw("null"))), Scalar::Null);
        assert_eq!(Scalar::of(Some(raw("7"))), Scalar::U64(7));
        assert_eq!(Scalar::of(Some(raw("0"))), Scalar::U64(0));
        // Read off the text up to 19 digits, by serde_json beyond: the same numbers.
        for n in [
            "9999999999999999999",
            "10000000000000000000",
            "18446744073709551615",
        ] {
            assert_eq!(
                Scalar::of(Some(raw(n))),
                Scalar::U64(n.parse().expect("a u64")),
                "{n}"
            );
        }
        assert_eq!(
            Scalar::of(Some(raw("18446744073709551616"))).kind(),
            "a number"
        );
        assert_eq!(Scalar::of(Some(raw("-7"))).kind(), "a number");
        assert_eq!(Scalar::of(Some(raw("7.5"))).kind(), "a number");
        assert_eq!(
            Scalar::of(Some(raw("1e400"))).kind(),
            "a number out of range"
        );
        assert_eq!(Scalar::of(Some(raw(r#"{"a":[1]}"#))).kind(), "an object");
        assert_eq!(Scalar::of(Some(raw("[[]]"))).kind(), "an array");
        assert_eq!(raw_opt_u64(Some(raw("5")), "n"), Ok(Some(5)));
        assert_eq!(raw_opt_bool(Some(raw("null")), "b"), Ok(None));
        let Err(Violation::Malformed { detail }) = raw_opt_u64(Some(raw(r#""secret-token""#)), "n")
        else {
            panic!("a string is not a number")
        };
        assert!(detail.contains("`n`") && detail.contains("a string"));
        assert!(!detail.contains("secret-token"));
        assert!(raw_req_str(None, "s").is_err());
        assert_eq!(raw_wire_id(raw(r#""abc""#)), "abc");
        assert_eq!(raw_wire_id(raw("-3")), "-3");
        assert_eq!(raw_wire_id(raw("{ \"a\" : 1 }")), r#"{"a":1}"#);
    }

    #[test]
    fn optional_fields_are_strict_about_types_and_do_not_leak_values() {
        let m = map(json!({"n": 5, "s": "secret-token", "b": true, "z": null, "neg": -1}));
        assert_eq!(opt_u64(&m, "n"), Ok(Some(5)));
        assert_eq!(opt_u64(&m, "z"), Ok(None));
        assert_eq!(opt_u64(&m, "absent"), Ok(None));
        assert!(opt_u64(&m, "neg").is_err());
        assert_eq!(opt_bool(&m, "b"), Ok(Some(true)));
        assert_eq!(opt_millis(&m, "n"), Ok(Some(Duration::from_millis(5))));
        let Err(Violation::Malformed { detail }) = opt_u64(&m, "s") else {
            panic!("a string is not a number")
        };
        assert!(detail.contains("`s`") && detail.contains("a string"));
        assert!(!detail.contains("secret-token"));
        assert_eq!(req_str(&m, "s"), Ok("secret-token"));
        assert!(req_str(&m, "absent").is_err());
        assert!(req_str(&m, "z").is_err());
    }

    #[test]
    fn stream_states() {
        assert_eq!(
            stream_state("final", || unreachable!()),
            Ok(StreamState::Final)
        );
        assert_eq!(
            stream_state("error", || "boom".into()),
            Ok(StreamState::Error {
                message: "boom".into()
            })
        );
        assert!(stream_state("done", String::new).is_err());
    }
}
