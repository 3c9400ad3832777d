//! The trace format: how each session call, output and the header are written as JSON,
//! and read back for replay. One definition for both directions, so the writer and the
//! replayer cannot drift apart. `docs/recording.md` documents every line kind.

use std::time::Duration;

use serde_json::{Map, Value, json};
use tether_core::{
    BackoffConfig, CloseClass, CloseCode, ClosePolicy, Config, Event, FailureKind, InFrame, Input,
    LivenessConfig, OfflinePolicy, Output, Overflow, Protocol, QueueConfig, RequestFailure, Status,
    StreamConfig, StreamEventKind, TransportFailure,
};
use tether_core::{ConnId, FrameId, FrameViolation, Violation};

use super::redact::{Direction, Redaction, Redactor, Wire, unhex};

/// The format version this build writes: 2 added the `lost` line (records the writer
/// dropped because it fell behind).
pub const FORMAT_VERSION: u64 = 2;

/// The oldest format version this build reads: every version from this one to
/// [`FORMAT_VERSION`] (a version-1 trace is a version-2 trace without `lost` lines).
pub const OLDEST_FORMAT_VERSION: u64 = 1;

/// Why a value could not be read back from a trace: a message for a human, turned into
/// a typed error with the line number by the replayer.
pub type ReadError = String;

// ---- durations and times --------------------------------------------------------------

/// A duration as whole nanoseconds (or `[secs, nanos]` beyond `u64` nanoseconds).
#[must_use]
pub fn duration(d: Duration) -> Value {
    match u64::try_from(d.as_nanos()) {
        Ok(n) => n.into(),
        Err(_) => json!([d.as_secs(), d.subsec_nanos()]),
    }
}

/// Reads what [`duration`] wrote.
///
/// # Errors
///
/// A value that is not a duration.
pub fn read_duration(v: &Value) -> Result<Duration, ReadError> {
    if let Some(n) = v.as_u64() {
        return Ok(Duration::from_nanos(n));
    }
    match v.as_array().map(Vec::as_slice) {
        Some([s, n]) => match (s.as_u64(), n.as_u64().and_then(|n| u32::try_from(n).ok())) {
            (Some(s), Some(n)) if n < 1_000_000_000 => Ok(Duration::new(s, n)),
            _ => Err(format!("bad duration {v}")),
        },
        _ => Err(format!("expected a duration in nanoseconds, got {v}")),
    }
}

fn opt_duration(d: Option<Duration>) -> Value {
    d.map_or(Value::Null, duration)
}

fn read_opt_duration(v: &Value) -> Result<Option<Duration>, ReadError> {
    if v.is_null() {
        Ok(None)
    } else {
        read_duration(v).map(Some)
    }
}

fn field<'a>(v: &'a Value, name: &str) -> Result<&'a Value, ReadError> {
    v.get(name).ok_or_else(|| format!("missing field `{name}`"))
}

fn u64_field(v: &Value, name: &str) -> Result<u64, ReadError> {
    field(v, name)?
        .as_u64()
        .ok_or_else(|| format!("field `{name}` must be a non-negative integer"))
}

fn u32_field(v: &Value, name: &str) -> Result<u32, ReadError> {
    u32::try_from(u64_field(v, name)?).map_err(|_| format!("field `{name}` is too large"))
}

fn usize_field(v: &Value, name: &str) -> Result<usize, ReadError> {
    usize::try_from(u64_field(v, name)?).map_err(|_| format!("field `{name}` is too large"))
}

fn bool_field(v: &Value, name: &str) -> Result<bool, ReadError> {
    field(v, name)?
        .as_bool()
        .ok_or_else(|| format!("field `{name}` must be a boolean"))
}

fn str_field<'a>(v: &'a Value, name: &str) -> Result<&'a str, ReadError> {
    field(v, name)?
        .as_str()
        .ok_or_else(|| format!("field `{name}` must be a string"))
}

fn dur_field(v: &Value, name: &str) -> Result<Duration, ReadError> {
    read_duration(field(v, name)?).map_err(|e| format!("field `{name}`: {e}"))
}

/// A duration field that older traces do not have: absent reads as `default`.
fn dur_field_or(v: &Value, name: &str, default: Duration) -> Result<Duration, ReadError> {
    match v.get(name) {
        None => Ok(default),
        Some(d) => read_duration(d).map_err(|e| format!("field `{name}`: {e}")),
    }
}

fn opt_dur_field(v: &Value, name: &str) -> Result<Option<Duration>, ReadError> {
    read_opt_duration(field(v, name)?).map_err(|e| format!("field `{name}`: {e}"))
}

// ---- configuration --------------------------------------------------------------------

fn class(c: CloseClass) -> Value {
    match c {
        CloseClass::Normal => "normal".into(),
        CloseClass::Fatal => "fatal".into(),
        CloseClass::Reconnect { min_delay } => json!({ "reconnect": opt_duration(min_delay) }),
        // A class this build does not know cannot be replayed; say so in the trace.
        _ => "unknown".into(),
    }
}

fn read_class(v: &Value) -> Result<CloseClass, ReadError> {
    match v.as_str() {
        Some("normal") => Ok(CloseClass::Normal),
        Some("fatal") => Ok(CloseClass::Fatal),
        _ => match v.get("reconnect") {
            Some(d) => Ok(CloseClass::Reconnect {
                min_delay: read_opt_duration(d)?,
            }),
            None => Err(format!("unknown close class {v}")),
        },
    }
}

/// Runs of equal classes over every `u16`: `[[first, last, class], …]`.
fn runs(runs: Vec<(u16, u16, CloseClass)>) -> Value {
    runs.into_iter()
        .map(|(first, last, c)| json!([first, last, class(c)]))
        .collect()
}

fn read_runs(v: &Value) -> Result<Vec<(u16, u16, CloseClass)>, ReadError> {
    let runs = v.as_array().ok_or("close policy runs must be an array")?;
    let mut out = Vec::with_capacity(runs.len());
    for r in runs {
        let (lo, hi, c) = match r.as_array().map(Vec::as_slice) {
            Some([lo, hi, c]) => (lo, hi, c),
            _ => return Err(format!("bad close policy run {r}")),
        };
        let code = |x: &Value| {
            x.as_u64()
                .and_then(|n| u16::try_from(n).ok())
                .ok_or_else(|| format!("bad code in run {r}"))
        };
        out.push((code(lo)?, code(hi)?, read_class(c)?));
    }
    Ok(out)
}

/// The close policy as what it does: the class of every close code and every HTTP
/// upgrade status, run-length encoded, and the class of TLS failures. Exact whatever the
/// policy was built from.
fn policy(p: &ClosePolicy) -> Value {
    json!({
        "codes": runs(p.close_runs()),
        "http": runs(p.http_runs()),
        "tls": class(p.classify_failure(&TransportFailure::Tls(String::new()))),
        "violation": class(p.classify_violation()),
        "failures": FailureKind::ALL
            .iter()
            .map(|k| (k.name().to_owned(), class(p.classify_kind(*k))))
            .collect::<Map<_, _>>(),
    })
}

fn read_policy(v: &Value) -> Result<ClosePolicy, ReadError> {
    // Traces written before the violation class existed used the default.
    let violation = match v.get("violation") {
        Some(c) => read_class(c)?,
        None => ClosePolicy::default().classify_violation(),
    };
    // The runs tile every code and status without overlap, so on a blank table each
    // range classifies exactly its codes: the rebuilt policy decides as the recorded one.
    let mut p = ClosePolicy::uniform(CloseClass::RECONNECT)
        .with_tls(read_class(field(v, "tls")?)?)
        .with_violation(violation);
    // Traces written before the failure kinds were classified used the default for each.
    for kind in FailureKind::ALL {
        let c = match v.get("failures").and_then(|f| f.get(kind.name())) {
            Some(c) => read_class(c)?,
            None => ClosePolicy::default().classify_kind(kind),
        };
        p = p.with_failure(kind, c);
    }
    for (lo, hi, c) in read_runs(field(v, "codes")?)? {
        p = p.with_range(lo..=hi, c);
    }
    for (lo, hi, c) in read_runs(field(v, "http")?)? {
        p = p.with_http_range(lo..=hi, c);
    }
    Ok(p)
}

/// The configuration as JSON. Exact: [`read_config`] rebuilds a configuration that
/// decides identically.
///
/// # Errors
///
/// A setting this build cannot write (a variant added to a non-exhaustive enum).
pub fn config(c: &Config) -> Result<Value, ReadError> {
    // Exhaustive destructuring: a field added to `Config` fails to compile here until the
    // format writes it.
    let Config {
        connect_timeout,
        handshake_timeout,
        retry_first_connect,
        close_policy,
        backoff,
        liveness,
        send_deadline,
        slow_write_warning,
        max_pending_writes,
        request_timeout,
        max_in_flight_requests,
        request_retries,
        streams,
        offline,
        close_timeout,
        idle_timeout,
        lazy,
        max_inbound_frame,
    } = c;
    let BackoffConfig {
        schedule,
        jitter,
        stable_after,
        max_attempts,
        max_floor,
    } = backoff;
    let jitter = match jitter {
        tether_core::Jitter::None => "none",
        tether_core::Jitter::Full => "full",
        tether_core::Jitter::Equal => "equal",
        other => return Err(format!("jitter {other:?} cannot be recorded")),
    };
    let LivenessConfig {
        ping_interval,
        stale_after,
        heartbeat_stale_factor,
        clock_jump_threshold,
        probe_timeout,
        max_heartbeat,
        message_timeout,
    } = liveness;
    let StreamConfig {
        max_streams,
        dedup_ttl,
        max_seen,
        completed_cooldown,
        idle_timeout: stream_idle,
        max_text,
    } = streams;
    let offline = match offline {
        OfflinePolicy::Reject => Value::from("reject"),
        OfflinePolicy::Queue(QueueConfig {
            max_messages,
            max_bytes,
            overflow,
            ttl,
        }) => json!({ "queue": {
            "max_messages": max_messages,
            "max_bytes": max_bytes,
            "overflow": match overflow {
                Overflow::RejectNew => "reject_new",
                Overflow::DropOldest => "drop_oldest",
                other => return Err(format!("overflow {other:?} cannot be recorded")),
            },
            "ttl": opt_duration(*ttl),
        }}),
        other => return Err(format!("offline policy {other:?} cannot be recorded")),
    };
    Ok(json!({
        "connect_timeout": duration(*connect_timeout),
        "handshake_timeout": duration(*handshake_timeout),
        "retry_first_connect": retry_first_connect,
        "close_policy": policy(close_policy),
        "backoff": {
            "schedule": schedule.iter().map(|d| duration(*d)).collect::<Vec<_>>(),
            "jitter": jitter,
            "stable_after": duration(*stable_after),
            "max_attempts": max_attempts,
            "max_floor": duration(*max_floor),
        },
        "liveness": {
            "ping_interval": opt_duration(*ping_interval),
            "stale_after": duration(*stale_after),
            "heartbeat_stale_factor": heartbeat_stale_factor,
            "clock_jump_threshold": duration(*clock_jump_threshold),
            "probe_timeout": duration(*probe_timeout),
            "max_heartbeat": duration(*max_heartbeat),
            "message_timeout": duration(*message_timeout),
        },
        "send_deadline": duration(*send_deadline),
        "slow_write_warning": duration(*slow_write_warning),
        "max_pending_writes": max_pending_writes,
        "request_timeout": duration(*request_timeout),
        "max_in_flight_requests": max_in_flight_requests,
        "request_retries": request_retries,
        "streams": {
            "max_streams": max_streams,
            "dedup_ttl": duration(*dedup_ttl),
            "max_seen": max_seen,
            "completed_cooldown": duration(*completed_cooldown),
            "idle_timeout": opt_duration(*stream_idle),
            "max_text": max_text,
        },
        "offline": offline,
        "close_timeout": duration(*close_timeout),
        "idle_timeout": opt_duration(*idle_timeout),
        "lazy": lazy,
        "max_inbound_frame": max_inbound_frame,
    }))
}

/// Reads what [`config`] wrote.
///
/// # Errors
///
/// A missing or malformed field, named.
pub fn read_config(v: &Value) -> Result<Config, ReadError> {
    let b = field(v, "backoff")?;
    let l = field(v, "liveness")?;
    let s = field(v, "streams")?;
    let o = field(v, "offline")?;
    let c = Config {
        connect_timeout: dur_field(v, "connect_timeout")?,
        handshake_timeout: dur_field(v, "handshake_timeout")?,
        retry_first_connect: bool_field(v, "retry_first_connect")?,
        close_policy: read_policy(field(v, "close_policy")?)?,
        backoff: BackoffConfig {
            schedule: field(b, "schedule")?
                .as_array()
                .ok_or("backoff.schedule must be an array")?
                .iter()
                .map(read_duration)
                .collect::<Result<_, _>>()?,
            jitter: match str_field(b, "jitter")? {
                "none" => tether_core::Jitter::None,
                "full" => tether_core::Jitter::Full,
                "equal" => tether_core::Jitter::Equal,
                other => return Err(format!("unknown jitter {other:?}")),
            },
            stable_after: dur_field(b, "stable_after")?,
            max_attempts: match field(b, "max_attempts")? {
                Value::Null => None,
                _ => Some(u32_field(b, "max_attempts")?),
            },
            // Traces written before the cap existed read back with its default.
            max_floor: dur_field_or(b, "max_floor", BackoffConfig::default().max_floor)?,
        },
        liveness: LivenessConfig {
            ping_interval: opt_dur_field(l, "ping_interval")?,
            stale_after: dur_field(l, "stale_after")?,
            heartbeat_stale_factor: u32_field(l, "heartbeat_stale_factor")?,
            clock_jump_threshold: dur_field(l, "clock_jump_threshold")?,
            probe_timeout: dur_field(l, "probe_timeout")?,
            max_heartbeat: dur_field_or(
                l,
                "max_heartbeat",
                LivenessConfig::default().max_heartbeat,
            )?,
            message_timeout: dur_field_or(
                l,
                "message_timeout",
                LivenessConfig::default().message_timeout,
            )?,
        },
        send_deadline: dur_field(v, "send_deadline")?,
        slow_write_warning: dur_field(v, "slow_write_warning")?,
        max_pending_writes: usize_field(v, "max_pending_writes")?,
        request_timeout: dur_field(v, "request_timeout")?,
        max_in_flight_requests: usize_field(v, "max_in_flight_requests")?,
        // Traces written before idempotent retries existed did not retry.
        request_retries: v
            .get("request_retries")
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0),
        streams: StreamConfig {
            max_streams: usize_field(s, "max_streams")?,
            dedup_ttl: dur_field(s, "dedup_ttl")?,
            max_seen: usize_field(s, "max_seen")?,
            completed_cooldown: dur_field(s, "completed_cooldown")?,
            idle_timeout: opt_dur_field(s, "idle_timeout")?,
            // Traces written before the field existed use the default.
            max_text: match s.get("max_text") {
                None => StreamConfig::default().max_text,
                Some(_) => usize_field(s, "max_text")?,
            },
        },
        offline: if o.as_str() == Some("reject") {
            OfflinePolicy::Reject
        } else {
            let q = field(o, "queue")?;
            OfflinePolicy::Queue(QueueConfig {
                max_messages: usize_field(q, "max_messages")?,
                max_bytes: usize_field(q, "max_bytes")?,
                overflow: match str_field(q, "overflow")? {
                    "reject_new" => Overflow::RejectNew,
                    "drop_oldest" => Overflow::DropOldest,
                    other => return Err(format!("unknown overflow {other:?}")),
                },
                ttl: opt_dur_field(q, "ttl")?,
            })
        },
        close_timeout: dur_field(v, "close_timeout")?,
        idle_timeout: opt_dur_field(v, "idle_timeout")?,
        // Traces written before lazy sessions existed are of eager ones.
        lazy: v.get("lazy").and_then(Value::as_bool).unwrap_or(false),
        max_inbound_frame: usize_field(v, "max_inbound_frame")?,
    };
    c.validate()
        .map_err(|e| format!("the recorded configuration is invalid: {e}"))?;
    Ok(c)
}

// ---- frames ---------------------------------------------------------------------------

fn in_frame(r: &Redactor, f: &InFrame) -> Value {
    let (kind, bytes) = match f {
        InFrame::Text(b) => ("text", b),
        InFrame::Binary(b) => ("binary", b),
        InFrame::Ping(b) => ("ping", b),
        InFrame::Pong(b) => ("pong", b),
    };
    r.frame(kind, bytes, Direction::Inbound)
}

fn out_frame(r: &Redactor, f: &tether_core::OutFrame) -> Value {
    match f {
        tether_core::OutFrame::Text(t) => r.frame("text", t.as_bytes(), Direction::Outbound),
        tether_core::OutFrame::Binary(b) => r.frame("binary", b, Direction::Outbound),
        tether_core::OutFrame::Ping(b) => r.frame("ping", b, Direction::Outbound),
    }
}

/// The bytes of a recorded frame as replay feeds them: the payload itself when it was
/// kept, else a stand-in that the session decides on exactly as on the original — the
/// redacted JSON padded with spaces to the recorded length, or filler of the recorded
/// length and UTF-8 validity. Returns the kind and the bytes.
///
/// # Errors
///
/// A malformed frame record.
pub fn frame_bytes(v: &Value) -> Result<(String, Vec<u8>), ReadError> {
    let kind = str_field(v, "k")?.to_owned();
    if !matches!(kind.as_str(), "text" | "binary" | "ping" | "pong") {
        return Err(format!("unknown frame kind {kind:?}"));
    }
    let len = usize_field(v, "len")?;
    if len > 1 << 30 {
        return Err(format!("frame length {len} is beyond any real frame"));
    }
    if let Some(s) = v.get("s") {
        let s = s.as_str().ok_or("field `s` must be a string")?;
        return Ok((kind, s.as_bytes().to_vec()));
    }
    if let Some(x) = v.get("x") {
        let bytes = x.as_str().and_then(unhex).ok_or("field `x` must be hex")?;
        return Ok((kind, bytes));
    }
    if let Some(j) = v.get("j") {
        let mut bytes = serde_json::to_vec(j).map_err(|e| e.to_string())?;
        if bytes.len() < len {
            bytes.resize(len, b' ');
        }
        return Ok((kind, bytes));
    }
    let valid = v.get("utf8").and_then(Value::as_bool).unwrap_or(true);
    let fill = match (kind.as_str(), valid) {
        ("text", true) => b'x',
        ("text", false) => 0xFF,
        _ => 0,
    };
    Ok((kind, vec![fill; len]))
}

fn read_in_frame(v: &Value) -> Result<InFrame, ReadError> {
    let (kind, bytes) = frame_bytes(v)?;
    let b = bytes::Bytes::from(bytes);
    Ok(match kind.as_str() {
        "text" => InFrame::Text(b),
        "binary" => InFrame::Binary(b),
        "ping" => InFrame::Ping(b),
        _ => InFrame::Pong(b),
    })
}

/// What of a frame record replay compares: in keep mode everything; in hash and drop
/// modes the kind and, for JSON, the structure with envelope strings (lengths and
/// fingerprints depend on payloads replay does not have); for secret frames (and a hello
/// written with secrets) the kind and the top-level envelope.
#[must_use]
pub fn frame_key(r: &Redactor, v: &Value) -> Value {
    let kind = v.get("k").cloned().unwrap_or(Value::Null);
    let parsed_keep = v
        .get("s")
        .and_then(Value::as_str)
        .and_then(|s| serde_json::from_str::<Value>(s).ok());
    if let Wire::Json(j) = r.wire() {
        let secret_doc = if v.get("secret").and_then(Value::as_bool) == Some(true) {
            v.get("j").cloned()
        } else {
            parsed_keep
                .clone()
                .filter(|p| (j.secret)(p, Direction::Outbound) || (j.secret)(p, Direction::Inbound))
        };
        if let Some(doc) = secret_doc {
            let mut env = Map::new();
            if let Some(m) = doc.as_object() {
                for k in j.envelope {
                    if let Some(x) = m.get(*k).filter(|x| !x.is_object() && !x.is_array()) {
                        env.insert((*k).to_owned(), x.clone());
                    }
                }
            }
            return json!({ "k": kind, "secret": env });
        }
    }
    match r.mode() {
        Redaction::Keep => v.clone(),
        _ => match v.get("j") {
            Some(j) => {
                let dropped = Redactor::new(Redaction::Drop, r.wire()).json(j);
                json!({ "k": kind, "j": dropped })
            }
            None => json!({ "k": kind, "len": v.get("len"), "utf8": v.get("utf8") }),
        },
    }
}

// ---- inputs ---------------------------------------------------------------------------

fn failure(f: &TransportFailure) -> Value {
    match f {
        TransportFailure::Refused => "refused".into(),
        TransportFailure::Dns => "dns".into(),
        TransportFailure::Tls(e) => json!({ "tls": e }),
        TransportFailure::Http {
            status,
            retry_after,
        } => json!({ "http": { "status": status, "retry_after": opt_duration(*retry_after) } }),
        TransportFailure::Io(e) => json!({ "io": e }),
        TransportFailure::Proxy {
            status,
            retry_after,
        } => json!({ "proxy": { "status": status, "retry_after": opt_duration(*retry_after) } }),
        other => json!({ "io": other.to_string() }),
    }
}

fn read_failure(v: &Value) -> Result<TransportFailure, ReadError> {
    match v.as_str() {
        Some("refused") => return Ok(TransportFailure::Refused),
        Some("dns") => return Ok(TransportFailure::Dns),
        _ => {}
    }
    if let Some(e) = v.get("tls") {
        return Ok(TransportFailure::Tls(
            e.as_str().unwrap_or_default().to_owned(),
        ));
    }
    if let Some(e) = v.get("io") {
        return Ok(TransportFailure::Io(
            e.as_str().unwrap_or_default().to_owned(),
        ));
    }
    if let Some(h) = v.get("http") {
        return Ok(TransportFailure::Http {
            status: u16::try_from(u64_field(h, "status")?)
                .map_err(|_| "http status out of range")?,
            retry_after: opt_dur_field(h, "retry_after")?,
        });
    }
    if let Some(h) = v.get("proxy") {
        return Ok(TransportFailure::Proxy {
            status: u16::try_from(u64_field(h, "status")?)
                .map_err(|_| "proxy status out of range")?,
            retry_after: opt_dur_field(h, "retry_after")?,
        });
    }
    Err(format!("unknown transport failure {v}"))
}

/// The frame violations the codec reports, by name.
const FRAME_VIOLATIONS: [(FrameViolation, &str); 9] = [
    (FrameViolation::ReservedBits, "reserved_bits"),
    (
        FrameViolation::UnexpectedContinuation,
        "unexpected_continuation",
    ),
    (
        FrameViolation::ExpectedContinuation,
        "expected_continuation",
    ),
    (FrameViolation::FragmentedControl, "fragmented_control"),
    (FrameViolation::ControlTooLong, "control_too_long"),
    (FrameViolation::Masking, "masking"),
    (FrameViolation::BadClosePayload, "bad_close_payload"),
    (FrameViolation::AfterClose, "after_close"),
    (FrameViolation::Other, "other"),
];

/// A violation the codec reported (the only kinds an `Input::ProtocolError` carries).
/// Exhaustive over those kinds; anything else is written as a framing error.
fn wire_violation(v: &Violation) -> Value {
    match v {
        Violation::InvalidUtf8 => json!("invalid_utf8"),
        Violation::MessageTimeout => json!("message_timeout"),
        Violation::InvalidCloseCode(c) => json!({ "invalid_close_code": c }),
        Violation::Oversized { len, max } => json!({ "oversized": [len, max] }),
        Violation::Frame(FrameViolation::ReservedOpcode(op)) => json!({ "reserved_opcode": op }),
        Violation::Frame(f) => json!({
            "frame": FRAME_VIOLATIONS
                .iter()
                .find(|(k, _)| k == f)
                .map_or("other", |(_, n)| *n)
        }),
        _ => json!({ "frame": "other" }),
    }
}

fn read_wire_violation(v: &Value) -> Result<Violation, ReadError> {
    match v.as_str() {
        Some("invalid_utf8") => return Ok(Violation::InvalidUtf8),
        Some("message_timeout") => return Ok(Violation::MessageTimeout),
        _ => {}
    }
    if let Some(pair) = v.get("oversized").and_then(Value::as_array) {
        let n = |i: usize| {
            pair.get(i)
                .and_then(Value::as_u64)
                .and_then(|n| usize::try_from(n).ok())
                .ok_or("oversized needs two sizes")
        };
        return Ok(Violation::Oversized {
            len: n(0)?,
            max: n(1)?,
        });
    }
    if let Some(c) = v.get("invalid_close_code") {
        let c = c
            .as_u64()
            .and_then(|c| u16::try_from(c).ok())
            .ok_or("close code out of range")?;
        return Ok(Violation::InvalidCloseCode(c));
    }
    if let Some(op) = v.get("reserved_opcode") {
        let op = op
            .as_u64()
            .and_then(|o| u8::try_from(o).ok())
            .ok_or("opcode out of range")?;
        return Ok(Violation::Frame(FrameViolation::ReservedOpcode(op)));
    }
    let name = v.get("frame").and_then(Value::as_str);
    FRAME_VIOLATIONS
        .iter()
        .find(|(_, n)| Some(*n) == name)
        .map(|(k, _)| Violation::Frame(*k))
        .ok_or_else(|| format!("unknown protocol error {v}"))
}

/// A transport input as JSON, its payloads redacted.
#[must_use]
pub fn input(r: &Redactor, i: &Input) -> Value {
    match i {
        Input::TransportOpened { conn } => json!({ "opened": { "conn": conn.get() } }),
        Input::TransportFailed { conn, failure: f } => {
            json!({ "failed": { "conn": conn.get(), "failure": failure(f) } })
        }
        Input::FrameReceived { conn, frame } => {
            json!({ "frame": { "conn": conn.get(), "f": in_frame(r, frame) } })
        }
        Input::TransportClosed { conn, code, reason } => json!({ "closed": {
            "conn": conn.get(),
            "code": code.map(|c| c.0),
            "reason": r.text(reason),
        }}),
        Input::WriteCompleted { conn, frame } => {
            json!({ "written": { "conn": conn.get(), "frame": frame.get() } })
        }
        Input::WriteFailed { conn, frame } => {
            json!({ "write_failed": { "conn": conn.get(), "frame": frame.get() } })
        }
        Input::ProtocolError { conn, violation } => json!({ "protocol_error": {
            "conn": conn.get(),
            "v": wire_violation(violation),
        }}),
        other => json!({ "unknown": format!("{:?}", other.conn()) }),
    }
}

/// Reads what [`input`] wrote.
///
/// # Errors
///
/// An unknown or malformed input.
pub fn read_input(v: &Value) -> Result<Input, ReadError> {
    let (name, body) = match v.as_object().map(|m| m.iter().next()) {
        Some(Some((k, b))) if v.as_object().is_some_and(|m| m.len() == 1) => (k.as_str(), b),
        _ => return Err(format!("an input is an object with one key, not {v}")),
    };
    let conn = ConnId::from_raw(u64_field(body, "conn")?);
    Ok(match name {
        "opened" => Input::TransportOpened { conn },
        "failed" => Input::TransportFailed {
            conn,
            failure: read_failure(field(body, "failure")?)?,
        },
        "frame" => Input::FrameReceived {
            conn,
            frame: read_in_frame(field(body, "f")?)?,
        },
        "closed" => Input::TransportClosed {
            conn,
            code: match field(body, "code")? {
                Value::Null => None,
                c => Some(CloseCode(
                    c.as_u64()
                        .and_then(|c| u16::try_from(c).ok())
                        .ok_or("close code out of range")?,
                )),
            },
            reason: str_field(body, "reason")?.to_owned(),
        },
        "written" => Input::WriteCompleted {
            conn,
            frame: FrameId::from_raw(u64_field(body, "frame")?),
        },
        "write_failed" => Input::WriteFailed {
            conn,
            frame: FrameId::from_raw(u64_field(body, "frame")?),
        },
        "protocol_error" => Input::ProtocolError {
            conn,
            violation: read_wire_violation(field(body, "v")?)?,
        },
        other => return Err(format!("unknown input {other:?}")),
    })
}

// ---- outputs --------------------------------------------------------------------------

/// `s` with the contents of every string literal removed: a `Debug` rendering that keeps
/// the shape of a value and none of its text.
fn strip_strings(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_str = false;
    let mut escaped = false;
    for ch in s.chars() {
        if in_str {
            if escaped {
                escaped = false;
            } else if ch == '\\' {
                escaped = true;
            } else if ch == '"' {
                in_str = false;
                out.push('"');
            }
        } else {
            out.push(ch);
            if ch == '"' {
                in_str = true;
            }
        }
    }
    out
}

/// An event as replay compares it: its kind and everything the session decided (ids,
/// sequence numbers, stream keys, reasons, retry waits), not the application payloads
/// it carries nor the text of strings.
#[must_use]
pub fn event_signature<P: Protocol>(e: &Event<P>) -> String {
    match e {
        Event::Message(_) => "Message".to_owned(),
        Event::Unsolicited(_) => "Unsolicited".to_owned(),
        Event::Response { id, result } => {
            let result = match result {
                Ok(_) => "Ok".to_owned(),
                Err(RequestFailure::Remote(_)) => "Remote".to_owned(),
                Err(other) => strip_strings(&format!("{other:?}")),
            };
            format!("Response {{ id: {}, result: {result} }}", id.get())
        }
        Event::Stream(ev) => {
            let kind = match &ev.kind {
                StreamEventKind::Status(_) => "Status".to_owned(),
                StreamEventKind::Delta { .. } => "Delta".to_owned(),
                StreamEventKind::Final { .. } => "Final".to_owned(),
                StreamEventKind::Error { .. } => "Error".to_owned(),
                StreamEventKind::Aborted(_) => "Aborted".to_owned(),
                StreamEventKind::Gap { expected, received } => {
                    format!("Gap {{ expected: {expected}, received: {received} }}")
                }
                StreamEventKind::Ended(end) => format!("Ended({end:?})"),
                _ => "Other".to_owned(),
            };
            format!(
                "Stream {{ key: {:?}, request: {:?}, seq: {:?}, kind: {kind} }}",
                ev.key.as_str(),
                ev.request.map(|r| r.get()),
                ev.seq
            )
        }
        other => strip_strings(&format!("{other:?}")),
    }
}

/// An output as JSON, its payloads redacted.
#[must_use]
pub fn output<P: Protocol>(r: &Redactor, o: &Output<P>) -> Value {
    match o {
        Output::OpenTransport { conn, attempt } => {
            json!({ "open": { "conn": conn.get(), "attempt": attempt } })
        }
        Output::SendFrame {
            conn,
            frame,
            payload,
        } => json!({ "send": {
            "conn": conn.get(),
            "frame": frame.get(),
            "p": out_frame(r, payload),
        }}),
        Output::CloseTransport { conn, code, reason } => json!({ "close": {
            "conn": conn.get(),
            "code": code.0,
            "reason": reason,
        }}),
        Output::AbortTransport { conn } => json!({ "abort": { "conn": conn.get() } }),
        Output::StatusChanged { from, to } => {
            json!({ "status": { "from": status_name(*from), "to": status_name(*to) } })
        }
        Output::Event(e) => json!({ "event": event_signature(e) }),
        other => json!({ "other": strip_strings(&format!("{other:?}")) }),
    }
}

/// What of an output record replay compares (see [`frame_key`] for frames).
#[must_use]
pub fn output_key(r: &Redactor, v: &Value) -> Value {
    match v.get("send") {
        Some(s) => json!({ "send": {
            "conn": s.get("conn"),
            "frame": s.get("frame"),
            "p": s.get("p").map(|p| frame_key(r, p)),
        }}),
        None => v.clone(),
    }
}

/// A status's name.
#[must_use]
pub fn status_name(s: Status) -> &'static str {
    match s {
        Status::Idle => "Idle",
        Status::Connecting => "Connecting",
        Status::Open => "Open",
        Status::Reconnecting => "Reconnecting",
        Status::Closed => "Closed",
        Status::Failed => "Failed",
        _ => "Unknown",
    }
}

/// The status called `name`.
#[must_use]
pub fn read_status(name: &str) -> Option<Status> {
    [
        Status::Idle,
        Status::Connecting,
        Status::Open,
        Status::Reconnecting,
        Status::Closed,
        Status::Failed,
    ]
    .into_iter()
    .find(|s| status_name(*s) == name)
}

/// A command's result as JSON: `{"ok": id}` (or `"ok"` for unit), or `{"err": debug}`.
#[must_use]
pub fn result<T, E: std::fmt::Debug>(r: &Result<T, E>, id: impl Fn(&T) -> Value) -> Value {
    match r {
        Ok(t) => json!({ "ok": id(t) }),
        Err(e) => json!({ "err": error_text(e) }),
    }
}

/// An error as [`result`] writes it: its `Debug` rendering with the text of strings removed.
pub(crate) fn error_text(e: &impl std::fmt::Debug) -> String {
    strip_strings(&format!("{e:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn config_round_trips_and_decides_alike() {
        let c = Config::builder()
            .max_attempts(Some(3))
            .ping_interval(None)
            .close_policy(
                ClosePolicy::default()
                    .with_code(4002, CloseClass::Fatal)
                    .with_range(
                        4500..=4599,
                        CloseClass::Reconnect {
                            min_delay: Some(Duration::from_millis(1500)),
                        },
                    )
                    .with_http_status(418, CloseClass::RECONNECT)
                    .with_failure(FailureKind::HandshakeTimeout, CloseClass::Fatal)
                    .with_failure(
                        FailureKind::Refused,
                        CloseClass::Reconnect {
                            min_delay: Some(Duration::from_secs(3)),
                        },
                    ),
            )
            .idle_timeout(Some(Duration::from_secs(90)))
            .lazy(true)
            .build()
            .unwrap();
        let v = config(&c).unwrap();
        let back = read_config(&serde_json::from_str(&v.to_string()).unwrap()).unwrap();
        assert_eq!(config(&back).unwrap(), v);
        for code in [1000, 1006, 1012, 4001, 4002, 4550, 4600] {
            assert_eq!(
                back.close_policy.classify_close(CloseCode(code)),
                c.close_policy.classify_close(CloseCode(code)),
                "{code}"
            );
        }
        for kind in FailureKind::ALL {
            assert_eq!(
                back.close_policy.classify_kind(kind),
                c.close_policy.classify_kind(kind),
                "{kind:?}"
            );
        }
        assert_eq!(back.backoff, c.backoff);
        assert_eq!(back.liveness, c.liveness);
        assert_eq!(back.offline, c.offline);
        assert!(back.lazy);
        let c = Config::builder().reject_while_offline().build().unwrap();
        let back = read_config(&config(&c).unwrap()).unwrap();
        assert_eq!(back.offline, c.offline);
        assert!(!back.lazy);
    }

    #[test]
    fn every_protocol_error_round_trips() {
        let conn = ConnId::from_raw(3);
        let mut all = vec![
            Violation::InvalidUtf8,
            Violation::MessageTimeout,
            Violation::Oversized {
                len: 1 << 30,
                max: 1 << 20,
            },
            Violation::InvalidCloseCode(5000),
            Violation::Frame(FrameViolation::ReservedOpcode(0xb)),
        ];
        all.extend(FRAME_VIOLATIONS.iter().map(|(f, _)| Violation::Frame(*f)));
        for violation in all {
            let i = Input::ProtocolError { conn, violation };
            let v = input(&Redactor::new(Redaction::Keep, Wire::Opaque), &i);
            let back = read_input(&serde_json::from_str(&v.to_string()).unwrap());
            assert_eq!(back, Ok(i), "{v}");
        }
        assert!(read_input(&json!({ "protocol_error": { "conn": 1, "v": "nonsense" } })).is_err());
    }

    #[test]
    fn durations_beyond_u64_nanos_round_trip() {
        for d in [Duration::ZERO, Duration::from_millis(1), Duration::MAX] {
            assert_eq!(read_duration(&duration(d)).unwrap(), d);
        }
        assert!(read_duration(&json!("1s")).is_err());
        assert!(read_duration(&json!([1, 2_000_000_000])).is_err());
    }

    #[test]
    fn every_transport_failure_round_trips() {
        let failures = [
            TransportFailure::Refused,
            TransportFailure::Dns,
            TransportFailure::Tls("certificate signed by an unknown authority".into()),
            TransportFailure::Io("reset".into()),
            TransportFailure::Http {
                status: 429,
                retry_after: Some(Duration::from_secs(3)),
            },
            TransportFailure::Proxy {
                status: 407,
                retry_after: None,
            },
            TransportFailure::Proxy {
                status: 503,
                retry_after: Some(Duration::from_secs(7)),
            },
        ];
        for f in failures {
            assert_eq!(read_failure(&failure(&f)).unwrap(), f, "{f}");
        }
    }

    #[test]
    fn strings_are_stripped_from_signatures() {
        assert_eq!(
            strip_strings(r#"Closed { reason: "a \"b\" c", code: 1 }"#),
            r#"Closed { reason: "", code: 1 }"#
        );
    }
}
