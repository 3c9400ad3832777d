//! A strict JSON scanner that reads a frame's envelope in one pass: it checks that the
//! text is one JSON value, keeps the raw text of the top-level fields asked for, and
//! skips everything else without building it.
//!
//! Why not serde: reading an envelope through `serde_json`'s `Deserializer` with
//! `RawValue` and `IgnoredAny` costs most of a JSON profile's time per frame (a visitor
//! call per token, a UTF-8 check of every string the frame already passed, a second parse
//! of each field read). This scanner does one pass over bytes, allocates nothing, and
//! hands back slices of the frame. It accepts exactly the texts `serde_json` accepts when
//! it skips a value, and refuses nesting deeper than [`MAX_DEPTH`], as `serde_json` does
//! when it builds one (tests compare the two on generated texts).

use std::fmt;

/// The deepest nesting of arrays and objects a frame may have, counting the envelope
/// itself: `serde_json`'s own recursion limit when it builds a `Value`, so that every
/// payload the scanner passes can be decoded by the application.
pub(crate) const MAX_DEPTH: usize = 127;

/// The text of one JSON value, checked by the scanner, borrowed from the frame, without
/// the whitespace around it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Raw<'a>(&'a str);

impl<'a> Raw<'a> {
    /// The value's text.
    pub(crate) fn get(self) -> &'a str {
        self.0
    }

    /// Whether the value is `null`.
    pub(crate) fn is_null(self) -> bool {
        self.0 == "null"
    }

    /// A string value's text when it is written without escapes (so the frame's own
    /// bytes are the string); `None` for any other value.
    pub(crate) fn plain_str(self) -> Option<&'a str> {
        let inner = self.0.strip_prefix('"')?.strip_suffix('"')?;
        (!inner.contains('\\')).then_some(inner)
    }

    /// Reads this value as an object, keeping the raw values of `keys`; `None` when it
    /// is not an object.
    pub(crate) fn pick<const N: usize>(self, keys: &[&str; N]) -> Option<[Option<Raw<'a>>; N]> {
        pick_object(self.0, keys)
    }
}

/// Reads `text` as an object, as [`pick`] does; `None` when it is not one (or not JSON).
pub(crate) fn pick_object<'a, const N: usize>(
    text: &'a str,
    keys: &[&str; N],
) -> Option<[Option<Raw<'a>>; N]> {
    match pick(text, keys) {
        Ok(Top::Object(fields)) => Some(fields),
        Ok(Top::Other(_)) | Err(_) => None,
    }
}

/// The top level of a text read by [`pick`].
pub(crate) enum Top<'a, const N: usize> {
    /// An object: the raw value of each key asked for (absent: `None`; the last one when
    /// a key repeats, as `serde_json::Value` keeps it).
    Object([Option<Raw<'a>>; N]),
    /// Another JSON value, of this kind (`"an array"`, `"a string"`, `"a number"`,
    /// `"a boolean"` or `"null"`).
    Other(&'static str),
}

/// Why a text is not one JSON value, and where the scanner stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ScanError {
    what: &'static str,
    at: usize,
}

impl fmt::Display for ScanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.what, self.at)
    }
}

impl std::error::Error for ScanError {}

/// Reads `text` as one JSON value, keeping the raw values of `keys` if it is an object.
/// Nothing is allocated unless a key is written with escapes.
///
/// # Errors
///
/// The text is not one JSON value, or nests deeper than [`MAX_DEPTH`].
#[inline]
pub(crate) fn pick<'a, const N: usize>(
    text: &'a str,
    keys: &[&str; N],
) -> Result<Top<'a, N>, ScanError> {
    Ok(read::<N, 0>(text, keys, None)?.0)
}

/// What [`pick_nested`] reads: the top level, and the fields of the nested object.
pub(crate) type Nested<'a, const N: usize, const M: usize> =
    (Top<'a, N>, Option<[Option<Raw<'a>>; M]>);

/// [`pick`], and when the member `keys[inner]` is an object, the raw values of its own
/// `inner_keys`, in the same pass (`None` when it is absent or not an object).
///
/// # Errors
///
/// As [`pick`].
#[inline]
pub(crate) fn pick_nested<'a, const N: usize, const M: usize>(
    text: &'a str,
    keys: &[&str; N],
    inner: usize,
    inner_keys: &[&str; M],
) -> Result<Nested<'a, N, M>, ScanError> {
    read(text, keys, Some((inner, inner_keys)))
}

#[inline]
fn read<'a, const N: usize, const M: usize>(
    text: &'a str,
    keys: &[&str; N],
    nest: Option<(usize, &[&str; M])>,
) -> Result<Nested<'a, N, M>, ScanError> {
    let mut s = Scanner::new(text);
    // The fields are written in place: arrays of them moved through `Result`s were a
    // copy per call on every frame's path.
    let mut fields = [None; N];
    let mut inner = None;
    match s.top(keys, nest, &mut fields, &mut inner) {
        Ok(None) => Ok((Top::Object(fields), inner)),
        Ok(Some(kind)) => Ok((Top::Other(kind), None)),
        Err(Stop) => Err(ScanError {
            what: s.why,
            at: s.at,
        }),
    }
}

/// A scan stopped: [`Scanner::why`] says why, [`Scanner::at`] where. A unit, so that
/// every step returns in a register.
struct Stop;

/// What a step of the scanner returns.
type Step<T = ()> = Result<T, Stop>;

struct Scanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
    why: &'static str,
    /// String bytes read one at a time, so that tests can check the fast path takes the
    /// rest (the slow path alone would give the same results, only slower).
    #[cfg(test)]
    slow_bytes: usize,
}

/// One word of eight `b` bytes.
const fn splat(b: u8) -> u64 {
    u64::from_le_bytes([b; 8])
}

/// The high bit of each byte of `w` (read little-endian) that is below `n` (`n` ≤ 128).
/// A borrow can flag a byte above a flagged one, never below it, so the lowest flag is
/// exact: it marks the first such byte.
const fn below(w: u64, n: u8) -> u64 {
    w.wrapping_sub(splat(n)) & !w & splat(0x80)
}

/// The bytes of eight that end a string's fast path (`"`, a backslash or a control
/// character); the lowest flag marks the first of them.
const fn special(w: u64) -> u64 {
    below(w ^ splat(b'"'), 1) | below(w ^ splat(b'\\'), 1) | below(w, 0x20)
}

/// The index of `key` in `keys`. Length and first byte before the bytes: most keys
/// differ in one of them, and a comparison of slices is a call.
#[inline]
fn position<const N: usize>(keys: &[&str; N], key: &str) -> Option<usize> {
    keys.iter().position(|k| {
        k.len() == key.len() && k.as_bytes().first() == key.as_bytes().first() && *k == key
    })
}

impl<'a> Scanner<'a> {
    fn new(text: &'a str) -> Self {
        Scanner {
            text,
            bytes: text.as_bytes(),
            at: 0,
            why: "",
            #[cfg(test)]
            slow_bytes: 0,
        }
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    /// Stops the scan here, for `why`.
    #[cold]
    fn fail<T>(&mut self, why: &'static str) -> Step<T> {
        self.why = why;
        Err(Stop)
    }

    #[inline]
    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    /// The whole text: `None` when it is an object (its fields are in `fields` and
    /// `inner`), the kind of value it is otherwise.
    fn top<const N: usize, const M: usize>(
        &mut self,
        keys: &[&str; N],
        nest: Option<(usize, &[&str; M])>,
        fields: &mut [Option<Raw<'a>>; N],
        inner: &mut Option<[Option<Raw<'a>>; M]>,
    ) -> Step<Option<&'static str>> {
        self.skip_ws();
        let kind = match self.peek() {
            Some(b'{') => {
                self.object(keys, 0, nest, fields, inner)?;
                None
            }
            first => {
                self.value(0)?;
                Some(match first {
                    Some(b'[') => "an array",
                    Some(b'"') => "a string",
                    Some(b't' | b'f') => "a boolean",
                    Some(b'n') => "null",
                    _ => "a number",
                })
            }
        };
        self.skip_ws();
        if self.at != self.bytes.len() {
            return self.fail("trailing characters");
        }
        Ok(kind)
    }

    /// An object `depth` levels deep (the envelope is 0), at its `{`: the raw values of
    /// `keys` go to `fields`; when `nest` names one of them and that member is an
    /// object, the raw values of its own keys go to `inner` (read in the same pass, not
    /// a second one).
    fn object<const N: usize, const M: usize>(
        &mut self,
        keys: &[&str; N],
        depth: usize,
        nest: Option<(usize, &[&str; M])>,
        fields: &mut [Option<Raw<'a>>; N],
        inner: &mut Option<[Option<Raw<'a>>; M]>,
    ) -> Step {
        self.at += 1;
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Ok(());
        }
        loop {
            self.skip_ws();
            let index = self.key(keys)?;
            self.colon()?;
            self.skip_ws();
            let start = self.at;
            match nest {
                Some((n, inner_keys)) if index == Some(n) => {
                    // The last of a repeated member wins, object or not.
                    *inner = None;
                    if self.peek() == Some(b'{') {
                        if depth + 1 >= MAX_DEPTH {
                            return self.fail("nested too deep");
                        }
                        let mut nested = [None; M];
                        self.object::<M, 0>(inner_keys, depth + 1, None, &mut nested, &mut None)?;
                        *inner = Some(nested);
                    } else {
                        self.value(depth + 1)?;
                    }
                }
                _ => self.value(depth + 1)?,
            }
            if let Some(slot) = index.and_then(|i| fields.get_mut(i)) {
                *slot = Some(Raw(&self.text[start..self.at]));
            }
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b'}') => {
                    self.at += 1;
                    return Ok(());
                }
                _ => return self.fail("expected `,` or `}`"),
            }
        }
    }

    /// An object key, at its `"`: its index in `keys`. A key written with escapes is
    /// decoded first.
    #[inline]
    fn key<const N: usize>(&mut self, keys: &[&str; N]) -> Step<Option<usize>> {
        if self.peek() != Some(b'"') {
            return self.fail("expected a key");
        }
        let start = self.at;
        let escaped = self.string()?;
        let quoted = &self.text[start..self.at];
        if !escaped {
            return Ok(position(keys, &quoted[1..quoted.len() - 1]));
        }
        // Rare: let serde_json decode the escapes, refusing a lone surrogate as it does.
        match serde_json::from_str::<String>(quoted) {
            Ok(key) => Ok(position(keys, &key)),
            Err(_) => {
                self.at = start;
                self.fail("invalid escape in a key")
            }
        }
    }

    /// The `:` after a key.
    #[inline]
    fn colon(&mut self) -> Step {
        self.skip_ws();
        if self.peek() == Some(b':') {
            self.at += 1;
            Ok(())
        } else {
            self.fail("expected `:`")
        }
    }

    /// Skips one value, at its first byte, `depth` levels deep.
    fn value(&mut self, depth: usize) -> Step {
        // One bit per open container, set for an object: the depth is bounded, so a
        // `u128` holds the whole stack and nothing is allocated.
        let mut stack: u128 = 0;
        let mut open = 0usize;
        loop {
            // A value is expected here.
            let mut closed = true;
            match self.peek() {
                Some(c @ (b'{' | b'[')) => {
                    if depth + open >= MAX_DEPTH {
                        return self.fail("nested too deep");
                    }
                    self.at += 1;
                    self.skip_ws();
                    let object = c == b'{';
                    let end = if object { b'}' } else { b']' };
                    if self.peek() == Some(end) {
                        self.at += 1;
                    } else {
                        if object {
                            stack |= 1 << open;
                            self.member_key()?;
                        } else {
                            stack &= !(1 << open);
                        }
                        open += 1;
                        closed = false;
                    }
                }
                Some(b'"') => {
                    self.string()?;
                }
                Some(b'-' | b'0'..=b'9') => self.number()?,
                Some(b't') => self.literal(b"true")?,
                Some(b'f') => self.literal(b"false")?,
                Some(b'n') => self.literal(b"null")?,
                _ => return self.fail("expected a value"),
            }
            if !closed {
                self.skip_ws();
                continue;
            }
            // A value ended: close what it ends, or go on to the next element.
            loop {
                if open == 0 {
                    return Ok(());
                }
                let object = stack & (1 << (open - 1)) != 0;
                self.skip_ws();
                match self.peek() {
                    Some(b',') => {
                        self.at += 1;
                        self.skip_ws();
                        if object {
                            self.member_key()?;
                            self.skip_ws();
                        }
                        break;
                    }
                    Some(b'}') if object => {
                        self.at += 1;
                        open -= 1;
                    }
                    Some(b']') if !object => {
                        self.at += 1;
                        open -= 1;
                    }
                    _ => {
                        return self.fail(if object {
                            "expected `,` or `}`"
                        } else {
                            "expected `,` or `]`"
                        });
                    }
                }
            }
        }
    }

    /// A nested object's key and its `:`, skipped.
    #[inline]
    fn member_key(&mut self) -> Step {
        if self.peek() != Some(b'"') {
            return self.fail("expected a key");
        }
        self.string()?;
        self.colon()
    }

    /// Skips a string, at its `"`; returns whether it holds escapes. Control characters
    /// are refused, as JSON requires; the text is already UTF-8.
    #[inline]
    fn string(&mut self) -> Step<bool> {
        // The common string: no escape, closed within the frame. Its own short loop,
        // inlined where it is called; anything else goes the long way.
        let bytes = self.bytes;
        let mut i = self.at + 1;
        while let Some(chunk) = bytes.get(i..).and_then(<[u8]>::first_chunk::<8>) {
            let flags = special(u64::from_le_bytes(*chunk));
            if flags == 0 {
                i += 8;
                continue;
            }
            i += (flags.trailing_zeros() / 8) as usize;
            if bytes.get(i) == Some(&b'"') {
                self.at = i + 1;
                return Ok(false);
            }
            break;
        }
        self.string_slow(i)
    }

    /// [`string`](Self::string) from byte `i` on: escapes, control characters, the
    /// frame's last bytes.
    #[cold]
    #[inline(never)]
    fn string_slow(&mut self, mut i: usize) -> Step<bool> {
        let bytes = self.bytes;
        let mut escaped = false;
        loop {
            // Eight bytes at a time while none of them needs a look.
            while let Some(chunk) = bytes.get(i..).and_then(<[u8]>::first_chunk::<8>) {
                let flags = special(u64::from_le_bytes(*chunk));
                if flags != 0 {
                    // Straight to the first byte that needs a look.
                    i += (flags.trailing_zeros() / 8) as usize;
                    break;
                }
                i += 8;
            }
            #[cfg(test)]
            {
                self.slow_bytes += 1;
            }
            match bytes.get(i) {
                Some(b'"') => {
                    self.at = i + 1;
                    return Ok(escaped);
                }
                Some(b'\\') => {
                    escaped = true;
                    self.at = i + 1;
                    self.escape()?;
                    i = self.at;
                }
                Some(0..=0x1f) => {
                    self.at = i;
                    return self.fail("control character in a string");
                }
                Some(_) => i += 1,
                None => {
                    self.at = i;
                    return self.fail("unterminated string");
                }
            }
        }
    }

    /// An escape, after its `\`.
    fn escape(&mut self) -> Step {
        match self.peek() {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                self.at += 1;
                Ok(())
            }
            Some(b'u') => {
                self.at += 1;
                for _ in 0..4 {
                    match self.peek() {
                        Some(b) if b.is_ascii_hexdigit() => self.at += 1,
                        _ => return self.fail("invalid \\u escape"),
                    }
                }
                Ok(())
            }
            _ => self.fail("invalid escape"),
        }
    }

    /// A number: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
    #[inline]
    fn number(&mut self) -> Step {
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.peek() {
            Some(b'0') => {
                self.at += 1;
                if let Some(b'0'..=b'9') = self.peek() {
                    return self.fail("invalid number");
                }
            }
            Some(b'1'..=b'9') => self.digits(),
            _ => return self.fail("invalid number"),
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            self.some_digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            self.some_digits()?;
        }
        Ok(())
    }

    #[inline]
    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.at += 1;
        }
    }

    /// One digit or more.
    fn some_digits(&mut self) -> Step {
        if !matches!(self.peek(), Some(b'0'..=b'9')) {
            return self.fail("invalid number");
        }
        self.digits();
        Ok(())
    }

    fn literal(&mut self, word: &'static [u8]) -> Step {
        if self
            .bytes
            .get(self.at..)
            .is_some_and(|rest| rest.starts_with(word))
        {
            self.at += word.len();
            Ok(())
        } else {
            self.fail("expected a value")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde::de::IgnoredAny;
    use serde_json::Value;
    use serde_json::value::RawValue;

    const KEYS: [&str; 4] = ["type", "n", "p", "ü"];

    /// What `serde_json` makes of `text` as an envelope: `Err` when it is not one JSON
    /// value (as skipping reads it, or deeper than its recursion limit as building reads
    /// it); the raw values of `KEYS` when it is an object; its kind otherwise.
    fn oracle(text: &str) -> Result<Result<Vec<Option<String>>, &'static str>, ()> {
        serde_json::from_str::<IgnoredAny>(text).map_err(|_| ())?;
        if depth(text) > MAX_DEPTH {
            return Err(());
        }
        match serde_json::from_str::<Value>(text) {
            // Building can also fail for what skipping passes (a lone surrogate, a number
            // beyond `f64`); read the kind from the first character then.
            Ok(Value::Object(_)) | Err(_) if text.trim_start().starts_with('{') => {}
            Ok(v) => {
                return Ok(Err(match v {
                    Value::Array(_) => "an array",
                    Value::String(_) => "a string",
                    Value::Bool(_) => "a boolean",
                    Value::Null => "null",
                    _ => "a number",
                }));
            }
            Err(_) => {
                return Ok(Err(match text.trim_start().as_bytes()[0] {
                    b'[' => "an array",
                    b'"' => "a string",
                    b't' | b'f' => "a boolean",
                    b'n' => "null",
                    _ => "a number",
                }));
            }
        }
        // The object's fields as `serde_json` reads them, in order, the last repeat
        // winning.
        let fields: Vec<(String, &RawValue)> = {
            let map: Vec<(String, &RawValue)> =
                serde_json::from_str::<Pairs<'_>>(text).map_err(|_| ())?.0;
            map
        };
        Ok(Ok(KEYS
            .iter()
            .map(|k| {
                fields
                    .iter()
                    .rev()
                    .find(|(key, _)| key == k)
                    .map(|(_, v)| v.get().to_owned())
            })
            .collect()))
    }

    /// An object's fields in order, keys decoded, values raw.
    struct Pairs<'a>(Vec<(String, &'a RawValue)>);

    impl<'de> serde::Deserialize<'de> for Pairs<'de> {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = Pairs<'de>;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    mut map: A,
                ) -> Result<Self::Value, A::Error> {
                    let mut v = Vec::new();
                    while let Some(kv) = map.next_entry::<String, &'de RawValue>()? {
                        v.push(kv);
                    }
                    Ok(Pairs(v))
                }
            }
            d.deserialize_map(V)
        }
    }

    /// The deepest nesting of brackets outside strings.
    fn depth(text: &str) -> usize {
        let (mut d, mut max, mut in_str, mut esc) = (0usize, 0, false, false);
        for b in text.bytes() {
            if in_str {
                match (esc, b) {
                    (true, _) => esc = false,
                    (false, b'\\') => esc = true,
                    (false, b'"') => in_str = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' => in_str = true,
                b'[' | b'{' => {
                    d += 1;
                    max = max.max(d);
                }
                b']' | b'}' => d = d.saturating_sub(1),
                _ => {}
            }
        }
        max
    }

    fn scanned(text: &str) -> Result<Result<Vec<Option<String>>, &'static str>, ()> {
        match pick(text, &KEYS) {
            Ok(Top::Object(f)) => Ok(Ok(f
                .iter()
                .map(|r| r.map(|r| r.get().to_owned()))
                .collect())),
            Ok(Top::Other(kind)) => Ok(Err(kind)),
            Err(_) => Err(()),
        }
    }

    fn agree(text: &str) {
        assert_eq!(scanned(text), oracle(text), "{text:?}");
        // Reading the member `p`'s fields in the same pass gives what a second pass over
        // its raw value gives, and changes nothing else.
        let nested = pick_nested(text, &KEYS, 2, &KEYS);
        match (pick(text, &KEYS), nested) {
            (Ok(Top::Object(fields)), Ok((Top::Object(same), inner))) => {
                assert_eq!(fields, same, "{text:?}");
                assert_eq!(inner, fields[2].and_then(|p| p.pick(&KEYS)), "{text:?}");
            }
            (Ok(Top::Other(kind)), Ok((Top::Other(same), None))) => assert_eq!(kind, same),
            (Err(_), Err(_)) => {}
            _ => panic!("pick and pick_nested disagree on {text:?}"),
        }
    }

    #[test]
    fn reads_what_serde_json_reads() {
        for text in [
            r#"{"x":[1,{"y":2}],"type":"a","p": {"deep":[null]} ,"q":"s"}"#,
            r#"{"n":1,"n":2}"#,
            r#"{"\u0074ype":"b"}"#,
            r#"{"\ud800":1}"#,
            r#"{"p":"\ud800"}"#,
            r#"{"ü":"ä\"\\\/\b\f\n\r\t\u00e9"}"#,
            r#" { "type" : "x" } "#,
            "{}",
            "[]",
            "[1,[2]]",
            r#""s""#,
            "-1.5e+3",
            "1e400",
            "123456789012345678901234567890",
            "null",
            "true",
            "false",
            "{nope",
            "{\"a\":1} x",
            "",
            "   ",
            "[1,]",
            "{\"a\":}",
            "{\"a\":1,}",
            "{,}",
            "[,1]",
            "01",
            "-",
            "1.",
            ".5",
            "1e",
            "+1",
            "tru",
            "nulll",
            "\"a\tb\"",
            "\"\\x\"",
            "\"\\u12g4\"",
            "\"unterminated",
            "{\"a\" 1}",
            "{\"a\":1 \"b\":2}",
            "[1 2]",
            "[}",
            "{]",
            "{1:2}",
            "\u{feff}{}",
        ] {
            agree(text);
        }
    }

    #[test]
    fn nesting_is_bounded_as_serde_json_bounds_it() {
        for n in [1, 2, 126, 127, 128, 129, 1000] {
            let arrays = format!("{}{}", "[".repeat(n), "]".repeat(n));
            agree(&arrays);
            let inner = n.saturating_sub(1);
            let value = if inner == 0 {
                "0".to_owned()
            } else {
                format!("{}{}", "[".repeat(inner), "]".repeat(inner))
            };
            let in_envelope = format!(r#"{{"p":{value}}}"#);
            assert_eq!(
                pick(&in_envelope, &KEYS).is_ok(),
                n <= MAX_DEPTH,
                "{n} levels"
            );
            assert_eq!(
                serde_json::from_str::<Value>(&in_envelope).is_ok(),
                n <= MAX_DEPTH,
                "{n} levels, as serde_json builds them"
            );
        }
    }

    #[test]
    fn a_nested_object_is_read_in_the_same_pass() {
        let text = r#"{"p":{"n":1,"type":"t","p":{"deep":1}},"type":"ev"}"#;
        let Ok((Top::Object(f), Some(inner))) = pick_nested(text, &KEYS, 2, &KEYS) else {
            panic!("an object with an object `p`")
        };
        assert_eq!(f[0].map(Raw::get), Some(r#""ev""#));
        assert_eq!(
            f[2].map(Raw::get),
            Some(r#"{"n":1,"type":"t","p":{"deep":1}}"#)
        );
        assert_eq!(
            inner.map(|r| r.map(Raw::get)),
            [Some(r#""t""#), Some("1"), Some(r#"{"deep":1}"#), None]
        );
        // The last `p` wins: when it is not an object, there are no inner fields.
        let Ok((_, inner)) = pick_nested(r#"{"p":{"n":1},"p":[1]}"#, &KEYS, 2, &KEYS) else {
            panic!("valid")
        };
        assert_eq!(inner, None);
        let Ok((_, inner)) = pick_nested(r#"{"p":[1],"p":{"n":1}}"#, &KEYS, 2, &KEYS) else {
            panic!("valid")
        };
        assert_eq!(inner.map(|f| f[1].map(Raw::get)), Some(Some("1")));
        // The nested object counts toward the depth as any other.
        for n in [126, 127, 128] {
            let text = format!(
                r#"{{"p":{{"n":{}0{}}}}}"#,
                "[".repeat(n - 2),
                "]".repeat(n - 2)
            );
            assert_eq!(
                pick_nested(&text, &KEYS, 2, &KEYS).is_ok(),
                n <= MAX_DEPTH,
                "{n} levels"
            );
            assert_eq!(pick(&text, &KEYS).is_ok(), n <= MAX_DEPTH, "{n} levels");
        }
        // A nested member that is not an object counts alike.
        for n in [127, 128] {
            let text = format!(r#"{{"p":{}{}}}"#, "[".repeat(n - 1), "]".repeat(n - 1));
            assert_eq!(
                pick_nested(&text, &KEYS, 2, &KEYS).is_ok(),
                n <= MAX_DEPTH,
                "{n} levels, arrays"
            );
        }
        assert!(pick_nested(r#"{"p":{"n":}}"#, &KEYS, 2, &KEYS).is_err());
    }

    #[test]
    fn plain_strings_take_the_fast_path() {
        // Strings without escapes, each with eight bytes or more after it: the eight-byte
        // path reads every one of them to its end.
        let text = format!(
            r#"{{"type":"{}","p":["a","bc","def","ghij"],"n":"x"}}{}"#,
            "plain text, no escapes: ".repeat(3),
            " ".repeat(16)
        );
        let mut s = Scanner::new(&text);
        let (mut fields, mut inner) = ([None; 4], None);
        assert!(s.top::<4, 0>(&KEYS, None, &mut fields, &mut inner).is_ok());
        assert_eq!(s.slow_bytes, 0, "every string on the fast path");
        // An escape, or the text's last bytes, take the slow path.
        for text in [r#"{"p":"a\nb"}        "#, r#"{"p":"x"}"#] {
            let mut s = Scanner::new(text);
            assert!(s.top::<4, 0>(&KEYS, None, &mut fields, &mut inner).is_ok());
            assert!(s.slow_bytes > 0, "{text:?}");
        }
    }

    #[test]
    fn raw_values_borrow_the_text() {
        let text = r#"{"type":"ev","p":{"a":[1,2]},"n":"x\ny"}"#;
        let Ok(Top::Object([t, n, p, _])) = pick(text, &KEYS) else {
            panic!("an object")
        };
        let t = t.expect("type");
        assert_eq!(t.plain_str(), Some("ev"));
        assert!(std::ptr::eq(t.get().as_ptr(), text[8..].as_ptr()));
        assert_eq!(n.expect("n").plain_str(), None, "written with escapes");
        let p = p.expect("p");
        assert_eq!(p.get(), r#"{"a":[1,2]}"#);
        assert_eq!(
            p.pick(&["a"]).map(|[a]| a.map(Raw::get)),
            Some(Some("[1,2]"))
        );
        assert_eq!(t.pick(&["a"]), None, "a string is not an object");
        assert!(!p.is_null());
        assert!(Raw("null").is_null());
        let err = pick("[1,", &KEYS).err().expect("invalid");
        assert_eq!(err.to_string(), "expected a value at byte 3");
    }

    /// Texts built from JSON's own tokens and a few stray characters, so that most are
    /// nearly valid.
    fn jsonish() -> impl Strategy<Value = String> {
        let token = prop_oneof![
            Just("{"),
            Just("}"),
            Just("["),
            Just("]"),
            Just(","),
            Just(":"),
            Just(" "),
            Just("\t"),
            Just("\n"),
            Just("\"type\""),
            Just("\"n\""),
            Just("\"p\""),
            Just("\"ü\""),
            Just("\"\\u0074ype\""),
            Just("\"a\\\"b\""),
            Just("\"\\ud83d\\ude00\""),
            Just("\"\\ud800\""),
            Just("\"x"),
            Just("\""),
            Just("\\"),
            Just("\u{1}"),
            Just("0"),
            Just("12"),
            Just("-3"),
            Just("4.5"),
            Just("6e7"),
            Just("1E-2"),
            Just("-"),
            Just("."),
            Just("e"),
            Just("true"),
            Just("false"),
            Just("null"),
            Just("nul"),
            Just("é"),
        ];
        prop::collection::vec(token, 0..40).prop_map(|t| t.concat())
    }

    /// Valid JSON values built from a tree, so that the accepting paths are exercised
    /// as often as the refusing ones.
    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            ".{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(5, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec(
                    (
                        prop_oneof![
                            Just("type".to_owned()),
                            Just("n".to_owned()),
                            Just("p".to_owned()),
                            ".{0,6}".prop_map(|s| s)
                        ],
                        inner
                    ),
                    0..6
                )
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        #[test]
        fn generated_texts_read_as_serde_json_reads_them(text in jsonish()) {
            agree(&text);
        }

        #[test]
        fn generated_values_read_as_serde_json_reads_them(v in json_value(), pretty in any::<bool>()) {
            let text = if pretty {
                serde_json::to_string_pretty(&v).expect("a Value serializes")
            } else {
                v.to_string()
            };
            agree(&text);
            // Cut anywhere (on a character boundary), it must still agree.
            for cut in (0..text.len()).filter(|i| text.is_char_boundary(*i)).step_by(7) {
                agree(&text[..cut]);
            }
        }
    }
}
