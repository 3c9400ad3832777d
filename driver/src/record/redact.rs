//! Redaction: what of a payload reaches a trace, and the protocol knowledge that keeps a
//! redacted trace replayable.

use std::io;

use serde_json::{Map, Value};
use sha1::{Digest, Sha1};

/// What a trace keeps of payloads (frames, messages, request parameters, close reasons).
///
/// Whatever the mode, the *secret* frames a protocol names (see [`JsonWire::secret`]:
/// the hello, the `connect` request, the challenge and its acknowledgement) are written
/// as their envelope only, with every other string emptied, unless
/// [`Redactor::with_secrets`] asks for them; `docs/recording.md` says what each mode
/// guarantees for replay.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Redaction {
    /// Payloads as they were: replay reproduces every byte the session wrote.
    Keep,
    /// Payloads as their length and a fingerprint (the first 8 bytes of their SHA-1, in
    /// hex); JSON frames keep their envelope and structure, other strings are
    /// fingerprinted one by one. Replay reproduces every decision, not the bytes.
    #[default]
    Hash,
    /// Payloads as their length only; JSON frames keep their envelope and structure,
    /// other strings are emptied. Replay reproduces every decision, not the bytes.
    Drop,
}

impl Redaction {
    /// The mode's name in a trace header: `keep`, `hash` or `drop`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Redaction::Keep => "keep",
            Redaction::Hash => "hash",
            Redaction::Drop => "drop",
        }
    }

    /// The mode called `name` (as [`name`](Self::name) writes it).
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "keep" => Some(Redaction::Keep),
            "hash" => Some(Redaction::Hash),
            "drop" => Some(Redaction::Drop),
            _ => None,
        }
    }
}

/// Which way a frame went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// From the peer to the session.
    Inbound,
    /// From the session to the peer.
    Outbound,
}

/// What a protocol's frames look like, for redaction.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum Wire {
    /// Frames are opaque bytes whose content the session's decisions do not depend on
    /// beyond their kind, length and UTF-8 validity: redaction keeps exactly those.
    Opaque,
    /// Frames are JSON: redaction keeps the envelope the session decides on.
    Json(JsonWire),
}

/// How a JSON protocol's frames are redacted.
#[derive(Clone, Copy, Debug)]
pub struct JsonWire {
    /// Object keys whose string values are kept in every mode (at any depth): the fields
    /// the session decides on (`type`, `id`, `state`, …). Numbers, booleans, `null`,
    /// object keys and the shape of arrays and objects are always kept.
    pub envelope: &'static [&'static str],
    /// Whether a frame (parsed) carries credentials or handshake data: written as its
    /// envelope only unless secrets are asked for.
    pub secret: fn(&Value, Direction) -> bool,
}

/// Redacts payloads for one trace: a [`Redaction`] mode, whether secrets may be written,
/// and the protocol's [`Wire`].
#[derive(Clone, Copy, Debug)]
pub struct Redactor {
    mode: Redaction,
    secrets: bool,
    wire: Wire,
}

impl Redactor {
    /// A redactor in `mode` for frames shaped like `wire`; secrets are never written.
    #[must_use]
    pub fn new(mode: Redaction, wire: Wire) -> Self {
        Redactor {
            mode,
            secrets: false,
            wire,
        }
    }

    /// The same redactor, writing secret frames (hellos, tokens) in full when `yes` and
    /// the mode is [`Redaction::Keep`].
    #[must_use]
    pub fn with_secrets(mut self, yes: bool) -> Self {
        self.secrets = yes;
        self
    }

    /// The mode.
    #[must_use]
    pub fn mode(&self) -> Redaction {
        self.mode
    }

    /// Whether secret frames are written in full.
    #[must_use]
    pub fn secrets(&self) -> bool {
        self.secrets && self.mode == Redaction::Keep
    }

    /// The protocol's wire.
    #[must_use]
    pub fn wire(&self) -> Wire {
        self.wire
    }

    /// A JSON value (a message, request parameters) redacted per the mode: kept as it is,
    /// or with every string outside the envelope fingerprinted or emptied.
    #[must_use]
    pub fn json(&self, value: &Value) -> Value {
        let envelope = match self.wire {
            Wire::Json(j) => j.envelope,
            Wire::Opaque => &[],
        };
        match self.mode {
            Redaction::Keep => value.clone(),
            Redaction::Hash => structure(value, envelope, Strings::Hash),
            Redaction::Drop => structure(value, envelope, Strings::Drop),
        }
    }

    /// A free-form string (a close reason): kept, fingerprinted or emptied.
    #[must_use]
    pub fn text(&self, s: &str) -> String {
        match self.mode {
            Redaction::Keep => s.to_owned(),
            Redaction::Hash if s.is_empty() => String::new(),
            Redaction::Hash => fingerprint_str(s.as_bytes()),
            Redaction::Drop => String::new(),
        }
    }

    /// A frame: `kind` is `text`, `binary`, `ping` or `pong`. See `docs/recording.md` for
    /// the fields.
    #[must_use]
    pub fn frame(&self, kind: &'static str, bytes: &[u8], dir: Direction) -> Value {
        let mut m = Map::new();
        m.insert("k".into(), kind.into());
        m.insert("len".into(), bytes.len().into());
        let text = std::str::from_utf8(bytes).ok();
        if kind == "text" && text.is_none() {
            m.insert("utf8".into(), false.into());
        }
        let parsed = match (self.wire, kind, text) {
            (Wire::Json(j), "text", Some(_)) => {
                serde_json::from_slice::<Value>(bytes).ok().map(|v| (j, v))
            }
            _ => None,
        };
        let secret = parsed
            .as_ref()
            .is_some_and(|(j, v)| (j.secret)(v, dir) && !self.secrets());
        if secret {
            m.insert("secret".into(), true.into());
        }
        match (self.mode, &parsed) {
            (Redaction::Keep, _) if !secret => match text.filter(|_| kind == "text") {
                Some(t) => m.insert("s".into(), t.into()),
                None => m.insert("x".into(), hex(bytes).into()),
            },
            (Redaction::Hash, _) if !secret => m.insert("h".into(), fingerprint(bytes).into()),
            _ => None,
        };
        if let Some((j, v)) = parsed {
            let strings = if secret || self.mode == Redaction::Drop {
                Some(Strings::Drop)
            } else if self.mode == Redaction::Hash {
                Some(Strings::Hash)
            } else {
                None
            };
            if let Some(strings) = strings {
                m.insert("j".into(), structure(&v, j.envelope, strings));
            }
        }
        Value::Object(m)
    }
}

impl Redactor {
    /// Writes [`frame`](Self::frame)'s JSON to `w`, byte for byte, without building a
    /// tree when the frame is not read as JSON (an opaque wire, a binary or control
    /// frame): what a busy session's recorder writes most.
    ///
    /// # Errors
    ///
    /// `w`'s.
    pub fn write_frame(
        &self,
        kind: &'static str,
        bytes: &[u8],
        dir: Direction,
        w: &mut (impl io::Write + ?Sized),
    ) -> io::Result<()> {
        let text = std::str::from_utf8(bytes).ok();
        let is_text = kind == "text";
        if let (Wire::Json(_), true, Some(_)) = (self.wire, is_text, text) {
            return serde_json::to_writer(w, &self.frame(kind, bytes, dir))
                .map_err(io::Error::from);
        }
        // Keys in `frame`'s (sorted) order: h, k, len, s, utf8, x.
        w.write_all(b"{")?;
        if self.mode == Redaction::Hash {
            w.write_all(b"\"h\":\"")?;
            write_hex(w, &digest8(bytes))?;
            w.write_all(b"\",")?;
        }
        w.write_all(b"\"k\":\"")?;
        w.write_all(kind.as_bytes())?;
        w.write_all(b"\",\"len\":")?;
        w.write_all(itoa::Buffer::new().format(bytes.len()).as_bytes())?;
        let kept_text = text.filter(|_| is_text && self.mode == Redaction::Keep);
        if let Some(t) = kept_text {
            w.write_all(b",\"s\":")?;
            serde_json::to_writer(&mut *w, t).map_err(io::Error::from)?;
        }
        if is_text && text.is_none() {
            w.write_all(b",\"utf8\":false")?;
        }
        if self.mode == Redaction::Keep && kept_text.is_none() {
            w.write_all(b",\"x\":\"")?;
            write_hex(w, bytes)?;
            w.write_all(b"\"")?;
        }
        w.write_all(b"}")
    }
}

/// How strings outside the envelope are replaced.
#[derive(Clone, Copy)]
enum Strings {
    Hash,
    Drop,
}

/// `value` with its shape, numbers, booleans and envelope strings kept and every other
/// string replaced.
fn structure(value: &Value, envelope: &[&str], strings: Strings) -> Value {
    fn walk(v: &Value, keep: bool, envelope: &[&str], strings: Strings) -> Value {
        match v {
            Value::String(s) if keep => Value::String(s.clone()),
            Value::String(s) => match strings {
                Strings::Hash => Value::String(fingerprint_str(s.as_bytes())),
                Strings::Drop => Value::String(String::new()),
            },
            Value::Array(a) => {
                Value::Array(a.iter().map(|x| walk(x, keep, envelope, strings)).collect())
            }
            Value::Object(m) => Value::Object(
                m.iter()
                    .map(|(k, x)| {
                        let keep = envelope.contains(&k.as_str());
                        (k.clone(), walk(x, keep, envelope, strings))
                    })
                    .collect(),
            ),
            other => other.clone(),
        }
    }
    walk(value, false, envelope, strings)
}

/// The first 8 bytes of the SHA-1 of `bytes`, in hex.
#[must_use]
pub fn fingerprint(bytes: &[u8]) -> String {
    hex(&digest8(bytes))
}

/// Payloads up to this long are remembered by [`digest8`]: a copy this size is what the
/// memo holds at most, and comparing it costs far less than hashing it again.
const MEMO_MAX: usize = 4 << 10;

thread_local! {
    /// The payload [`digest8`] hashed last on this thread, and its digest.
    static MEMO: std::cell::RefCell<(Vec<u8>, [u8; 8])> =
        const { std::cell::RefCell::new((Vec::new(), [0; 8])) };
}

/// The first 8 bytes of the SHA-1 of `bytes`. A busy trace fingerprints most payloads twice
/// in a row (a message fed, then the frame that carries it), so the last payload hashed on
/// this thread is kept, by its content, and its digest reused when the next is the same.
fn digest8(bytes: &[u8]) -> [u8; 8] {
    let hash = |bytes: &[u8]| {
        let mut d = [0; 8];
        d.copy_from_slice(&Sha1::digest(bytes)[..8]);
        d
    };
    if bytes.len() > MEMO_MAX {
        return hash(bytes);
    }
    MEMO.with(|memo| {
        // A fingerprint asked for while another is being computed on this thread cannot
        // happen (hashing calls nothing back); if it did, it would simply not be memoized.
        let Ok(mut memo) = memo.try_borrow_mut() else {
            return hash(bytes);
        };
        let (last, digest) = &mut *memo;
        if !last.is_empty() && last.as_slice() == bytes {
            return *digest;
        }
        *digest = hash(bytes);
        last.clear();
        last.extend_from_slice(bytes);
        *digest
    })
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// The two lower-case hex digits of `b`.
fn hex_pair(b: u8) -> [u8; 2] {
    [
        HEX_DIGITS[usize::from(b >> 4)],
        HEX_DIGITS[usize::from(b & 0xf)],
    ]
}

/// [`hex`] straight into `w`.
fn write_hex(w: &mut (impl io::Write + ?Sized), bytes: &[u8]) -> io::Result<()> {
    let mut chunk = [0u8; 64];
    for part in bytes.chunks(chunk.len() / 2) {
        for (i, b) in part.iter().enumerate() {
            chunk[2 * i..2 * i + 2].copy_from_slice(&hex_pair(*b));
        }
        w.write_all(&chunk[..2 * part.len()])?;
    }
    Ok(())
}

/// A fingerprinted string: `#` and its [`fingerprint`].
fn fingerprint_str(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(17);
    s.push('#');
    s.push_str(&fingerprint(bytes));
    s
}

/// Lower-case hex.
#[must_use]
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let [hi, lo] = hex_pair(*b);
        s.push(char::from(hi));
        s.push(char::from(lo));
    }
    s
}

/// The bytes of lower- or upper-case hex, or `None` if `s` is not hex.
#[must_use]
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|d| u8::from_str_radix(d, 16).ok()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The memo gives every payload its own digest: the same bytes again, other bytes of
    /// the same length right after them, the first again, and a payload past the memo's
    /// size all match SHA-1 computed afresh.
    #[test]
    fn a_remembered_digest_is_only_reused_for_the_same_bytes() {
        let direct = |b: &[u8]| hex(&Sha1::digest(b)[..8]);
        let big = vec![7u8; MEMO_MAX + 1];
        let mut big_other = big.clone();
        big_other[MEMO_MAX] = 8;
        let payloads: [&[u8]; 8] = [
            b"hello", b"hello", b"jello", b"hello", b"", b"", &big, &big_other,
        ];
        for p in payloads {
            assert_eq!(fingerprint(p), direct(p), "{:?}", &p[..p.len().min(8)]);
        }
    }
    use serde_json::json;

    const WIRE: JsonWire = JsonWire {
        envelope: &["type", "id"],
        secret: |v, _| v["type"] == "hello",
    };

    #[test]
    fn hash_keeps_the_envelope_and_fingerprints_the_rest() {
        let r = Redactor::new(Redaction::Hash, Wire::Json(WIRE));
        let frame = br#"{"type":"msg","id":"a1","body":{"text":"private","n":3}}"#;
        let v = r.frame("text", frame, Direction::Inbound);
        let j = &v["j"];
        assert_eq!(j["type"], "msg");
        assert_eq!(j["id"], "a1");
        assert_eq!(j["body"]["n"], 3);
        assert_ne!(j["body"]["text"], "private");
        assert!(j["body"]["text"].as_str().unwrap().starts_with('#'));
        assert_eq!(v["len"], frame.len());
        assert!(!v.to_string().contains("private"));
    }

    #[test]
    fn secret_frames_keep_only_their_envelope_unless_asked() {
        let hello = br#"{"type":"hello","token":"tok-123"}"#;
        for mode in [Redaction::Keep, Redaction::Hash, Redaction::Drop] {
            let r = Redactor::new(mode, Wire::Json(WIRE));
            let v = r.frame("text", hello, Direction::Outbound);
            assert_eq!(v["secret"], true, "{mode:?}");
            assert_eq!(v["j"]["type"], "hello");
            assert_eq!(v["j"]["token"], "");
            assert!(!v.to_string().contains("tok-123"), "{mode:?}: {v}");
        }
        let r = Redactor::new(Redaction::Keep, Wire::Json(WIRE)).with_secrets(true);
        let v = r.frame("text", hello, Direction::Outbound);
        assert!(v.to_string().contains("tok-123"));
        // Secrets are only ever written in keep mode.
        let r = Redactor::new(Redaction::Hash, Wire::Json(WIRE)).with_secrets(true);
        assert!(
            !r.frame("text", hello, Direction::Outbound)
                .to_string()
                .contains("tok-123")
        );
    }

    /// The hand-written frame is `frame`'s JSON, byte for byte, in every mode, for every
    /// kind, valid UTF-8 or not, opaque or JSON.
    #[test]
    fn a_written_frame_is_the_frame_rendered() {
        let payloads: [&[u8]; 5] = [
            b"",
            b"plain \"quoted\" text\n\t\\ \x01",
            "caf\u{e9} \u{1f600}".as_bytes(),
            b"\xff\xfe not utf-8",
            br#"{"type":"msg","id":"a1","body":"private"}"#,
        ];
        for wire in [Wire::Opaque, Wire::Json(WIRE)] {
            for mode in [Redaction::Keep, Redaction::Hash, Redaction::Drop] {
                let r = Redactor::new(mode, wire);
                for kind in ["text", "binary", "ping", "pong"] {
                    for bytes in payloads {
                        let mut written = Vec::new();
                        r.write_frame(kind, bytes, Direction::Inbound, &mut written)
                            .expect("into a Vec");
                        let rendered = r.frame(kind, bytes, Direction::Inbound).to_string();
                        assert_eq!(
                            String::from_utf8(written).expect("JSON is UTF-8"),
                            rendered,
                            "{mode:?} {kind} {bytes:?}"
                        );
                    }
                }
            }
        }
        assert_eq!(hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
    }

    #[test]
    fn opaque_frames_keep_kind_length_and_validity() {
        let r = Redactor::new(Redaction::Drop, Wire::Opaque);
        let v = r.frame("text", b"\xff\xfe", Direction::Inbound);
        assert_eq!(v, json!({"k": "text", "len": 2, "utf8": false}));
        let r = Redactor::new(Redaction::Keep, Wire::Opaque);
        assert_eq!(
            r.frame("binary", &[1, 2], Direction::Inbound),
            json!({"k": "binary", "len": 2, "x": "0102"})
        );
        assert_eq!(unhex("0102"), Some(vec![1, 2]));
        assert_eq!(unhex("0g"), None);
        assert_eq!(unhex("012"), None);
    }
}
