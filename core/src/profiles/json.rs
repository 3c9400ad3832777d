//! Helpers shared by the JSON profiles: parsing a data frame without copying it, encoding
//! a text frame, reading optional fields strictly, and stream states.
//!
//! Every reader returns a [`Violation::Malformed`] for a field of the wrong type instead of
//! guessing, and never echoes field *values* into the violation's detail: payloads may
//! carry credentials, and violations end up in logs.

use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::{EncodeError, Violation};
use crate::frame::{DataFrame, OutFrame};
use crate::protocol::{StreamFrame, StreamState};

/// A [`Violation::Malformed`] with this detail.
pub(crate) fn malformed(detail: impl Into<String>) -> Violation {
    Violation::Malformed {
        detail: detail.into(),
    }
}

/// Parses a data frame as JSON, straight from the shared buffer (no UTF-8 re-check, no
/// copy). A binary frame is [`Violation::UnexpectedBinary`]; invalid JSON is malformed.
pub(crate) fn parse(frame: &DataFrame) -> Result<Value, Violation> {
    match frame {
        DataFrame::Text(text) => serde_json::from_slice(text.as_bytes())
            .map_err(|e| malformed(format!("invalid JSON: {e}"))),
        DataFrame::Binary(_) => Err(Violation::UnexpectedBinary),
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

/// The wire spelling of an id the session cannot map back to a request: a string as it
/// is, anything else as its JSON text.
pub(crate) fn wire_id(id: &Value) -> String {
    match id {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Utf8Bytes;
    use bytes::Bytes;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            other => panic!("not an object: {other}"),
        }
    }

    #[test]
    fn parse_reads_text_and_refuses_binary_and_garbage() {
        let ok = parse(&DataFrame::Text(Utf8Bytes::from_static(r#"{"a":1}"#)));
        assert_eq!(ok, Ok(json!({"a": 1})));
        assert_eq!(
            parse(&DataFrame::Binary(Bytes::from_static(b"{}"))),
            Err(Violation::UnexpectedBinary)
        );
        let bad = parse(&DataFrame::Text(Utf8Bytes::from_static("{nope")));
        assert!(
            matches!(bad, Err(Violation::Malformed { detail }) if detail.contains("invalid JSON"))
        );
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
    fn wire_ids_and_states() {
        assert_eq!(wire_id(&json!("abc")), "abc");
        assert_eq!(wire_id(&json!(-3)), "-3");
        assert_eq!(wire_id(&json!(null)), "null");
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
