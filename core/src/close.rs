//! Close-code policy: every way a connection ends is classified as normal, reconnect or
//! fatal, including failures before the WebSocket opened. Close codes, their validity on
//! the wire and the checks on an outgoing close frame are shared with the server role.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::RangeInclusive;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

/// A WebSocket close code (RFC 6455 §7.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: normal closure.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: going away.
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: protocol error.
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// 1003: unsupported data.
    pub const UNSUPPORTED: CloseCode = CloseCode(1003);
    /// 1005: no status received (never sent on the wire).
    pub const NO_STATUS: CloseCode = CloseCode(1005);
    /// 1006: abnormal closure, no close frame (never sent on the wire).
    pub const ABNORMAL: CloseCode = CloseCode(1006);
    /// 1007: invalid payload data.
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    /// 1008: policy violation.
    pub const POLICY: CloseCode = CloseCode(1008);
    /// 1009: message too big.
    pub const TOO_BIG: CloseCode = CloseCode(1009);
    /// 1010: mandatory extension missing.
    pub const EXTENSION: CloseCode = CloseCode(1010);
    /// 1011: internal server error.
    pub const INTERNAL_ERROR: CloseCode = CloseCode(1011);
    /// 1012: service restart.
    pub const SERVICE_RESTART: CloseCode = CloseCode(1012);
    /// 1013: try again later.
    pub const TRY_AGAIN_LATER: CloseCode = CloseCode(1013);
    /// 4000: application-level "peer went silent" (used by the gateway's reference client).
    pub const STALE: CloseCode = CloseCode(4000);
    /// 4001: authentication failed or revoked.
    pub const AUTH_FAILED: CloseCode = CloseCode(4001);
    /// 4003: forbidden.
    pub const FORBIDDEN: CloseCode = CloseCode(4003);

    /// Whether a peer may send this code in a close frame (RFC 6455 §7.4.1–7.4.2).
    #[must_use]
    pub fn is_valid_on_wire(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

/// The longest close reason a close frame can carry, in bytes: a control frame's payload
/// is at most 125 bytes, two of which are the code (RFC 6455 §5.5).
pub const MAX_CLOSE_REASON: usize = 123;

/// Why a close frame could not be sent as asked.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CloseError {
    /// The code may not appear in a close frame (1005, 1006, 1015, anything outside
    /// 1000–1014 and 3000–4999): the peer would fail the connection with 1002.
    #[error("close code {0} may not be sent on the wire")]
    InvalidCode(u16),
    /// The reason is longer than [`MAX_CLOSE_REASON`] bytes.
    #[error("close reason of {0} bytes exceeds 123")]
    ReasonTooLong(usize),
}

impl CloseError {
    /// Checks a close frame this side is about to send: a code valid on the wire and a
    /// reason of at most [`MAX_CLOSE_REASON`] bytes.
    ///
    /// ```
    /// use tether_core::{CloseCode, server::CloseError};
    /// assert_eq!(CloseError::check(CloseCode(4000), "bye"), Ok(()));
    /// assert_eq!(CloseError::check(CloseCode::ABNORMAL, ""), Err(CloseError::InvalidCode(1006)));
    /// ```
    ///
    /// # Errors
    ///
    /// The first problem found.
    pub fn check(code: CloseCode, reason: &str) -> Result<(), CloseError> {
        if !code.is_valid_on_wire() {
            return Err(CloseError::InvalidCode(code.0));
        }
        if reason.len() > MAX_CLOSE_REASON {
            return Err(CloseError::ReasonTooLong(reason.len()));
        }
        Ok(())
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What a close (or a failure to open) means for the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseClass {
    /// Stop without error.
    Normal,
    /// Back off and try again, waiting at least `min_delay` if given.
    Reconnect {
        /// A floor on the next backoff wait (1013 "try again later", HTTP 429).
        min_delay: Option<Duration>,
    },
    /// Stop, report the error, never retry.
    Fatal,
}

impl CloseClass {
    /// Reconnect with no floor on the wait.
    pub const RECONNECT: CloseClass = CloseClass::Reconnect { min_delay: None };
}

/// Why a transport attempt failed before the WebSocket opened.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportFailure {
    /// The TCP connection was refused.
    Refused,
    /// The host name did not resolve.
    Dns,
    /// TLS failed (certificate, protocol).
    Tls(String),
    /// The HTTP upgrade was answered with a non-101 status.
    Http {
        /// The status code.
        status: u16,
        /// The server's `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
    },
    /// Any other I/O failure.
    Io(String),
    /// The HTTP proxy answered the `CONNECT` with a non-2xx status: the proxy refused the
    /// tunnel (407 for missing or wrong credentials, 502/503 when it cannot reach the
    /// server), so the server itself was never asked. Classified by the same status table
    /// as [`Http`](Self::Http) ([`ClosePolicy::with_http_status`]).
    Proxy {
        /// The proxy's status code.
        status: u16,
        /// The proxy's `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
    },
}

impl fmt::Display for TransportFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportFailure::Refused => f.write_str("connection refused"),
            TransportFailure::Dns => f.write_str("host name did not resolve"),
            TransportFailure::Tls(e) => write!(f, "tls failed: {e}"),
            TransportFailure::Http {
                status,
                retry_after: None,
            } => write!(f, "the server answered {status} to the upgrade"),
            TransportFailure::Http {
                status,
                retry_after: Some(after),
            } => write!(
                f,
                "the server answered {status} to the upgrade (retry after {}s)",
                after.as_secs()
            ),
            TransportFailure::Io(e) => write!(f, "i/o failure: {e}"),
            TransportFailure::Proxy { status, .. } => write!(f, "proxy answered {status}"),
        }
    }
}

/// A failure to open a connection that carries no code or status of its own: what the
/// policy classifies besides close codes, HTTP statuses and TLS failures
/// ([`ClosePolicy::with_failure`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum FailureKind {
    /// The TCP connection was refused ([`TransportFailure::Refused`]).
    Refused,
    /// The host name did not resolve ([`TransportFailure::Dns`]).
    Dns,
    /// Any other I/O failure while opening ([`TransportFailure::Io`]).
    Io,
    /// The transport did not open within [`Config::connect_timeout`](crate::Config::connect_timeout).
    ConnectTimeout,
    /// The handshake was not acknowledged within
    /// [`Config::handshake_timeout`](crate::Config::handshake_timeout).
    HandshakeTimeout,
}

impl FailureKind {
    /// Every kind, in a fixed order (a recording writes the policy in it).
    pub const ALL: [FailureKind; 5] = [
        FailureKind::Refused,
        FailureKind::Dns,
        FailureKind::Io,
        FailureKind::ConnectTimeout,
        FailureKind::HandshakeTimeout,
    ];

    /// The kind's name: `refused`, `dns`, `io`, `connect_timeout`, `handshake_timeout`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            FailureKind::Refused => "refused",
            FailureKind::Dns => "dns",
            FailureKind::Io => "io",
            FailureKind::ConnectTimeout => "connect_timeout",
            FailureKind::HandshakeTimeout => "handshake_timeout",
        }
    }

    fn index(self) -> usize {
        match self {
            FailureKind::Refused => 0,
            FailureKind::Dns => 1,
            FailureKind::Io => 2,
            FailureKind::ConnectTimeout => 3,
            FailureKind::HandshakeTimeout => 4,
        }
    }
}

/// A table from close codes (and HTTP upgrade statuses) to [`CloseClass`].
///
/// Exact entries win over ranges; among ranges the one added last wins; anything
/// unmatched gets the default class. Defaults (`ClosePolicy::default()`):
///
/// | close code | class |
/// |---|---|
/// | 1000 | normal |
/// | 1001, 1005 (close frame without a code), 1006, 1011 | reconnect |
/// | 1012 (service restart) | reconnect, at least 10 s |
/// | 1013 (try again later) | reconnect, at least 30 s |
/// | 1002, 1003, 1007, 1008, 1009, 1010, 4001, 4003 | fatal |
/// | anything else | reconnect |
///
/// | HTTP status | class |
/// |---|---|
/// | 401, 403 | fatal |
/// | 408, 5xx | reconnect |
/// | 429 | reconnect, at least 30 s (or `Retry-After` if longer) |
/// | other 4xx, 3xx | fatal |
///
/// A proxy's answer to `CONNECT` ([`TransportFailure::Proxy`]) is looked up in the same
/// status table: 407 (proxy credentials missing or wrong) is fatal, 502 and 503 (the proxy
/// cannot reach the server) reconnect.
///
/// A floor spreads the wait over `[floor, 2 × floor]` (see
/// [`BackoffConfig::bounds`](crate::BackoffConfig::bounds)), so a fleet of clients told to
/// come back later does not come back in one instant. 1012's floor follows the IANA
/// registry's advice for it (reconnect after a randomized 5–30 s): a restarting server
/// refuses connections for a while anyway, and 10,000 clients spread over 10 s reach it
/// at ≈1% per 100 ms instead of 10%.
///
/// Refused, DNS and I/O failures, connect and handshake timeouts reconnect with no floor
/// ([`with_failure`](Self::with_failure) changes each, floor included); TLS failures are
/// fatal (a bad certificate does not heal by retrying).
///
/// A peer that breaks the WebSocket protocol itself (invalid UTF-8, an oversized message,
/// broken framing: [`Input::ProtocolError`](crate::Input::ProtocolError)) gets the
/// violation class, reconnect by default ([`with_violation`](Self::with_violation)). The
/// close code the connection is failed with (1002, 1007, 1009) is this side's, so it is
/// not looked up in the code table, where the peer's 1002 is fatal. A close frame whose
/// code no peer may send (0, 999, 1004–1006, 1015, ≥ 5000) is such a violation too.
///
/// ```
/// use std::time::Duration;
/// use tether_core::{CloseClass, CloseCode, ClosePolicy};
///
/// let policy = ClosePolicy::default()
///     .with_code(4002, CloseClass::Fatal)
///     .with_range(4500..=4599, CloseClass::Reconnect { min_delay: Some(Duration::from_secs(5)) });
/// assert_eq!(policy.classify_close(CloseCode(4002)), CloseClass::Fatal);
/// assert_eq!(policy.classify_close(CloseCode::NORMAL), CloseClass::Normal);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClosePolicy {
    /// The exact entries and ranges, shared: every session of the default policy points
    /// at one copy (about 1 KiB saved per session), and a builder copies them on write.
    tables: Arc<Tables>,
    default_class: CloseClass,
    http_default: CloseClass,
    tls: CloseClass,
    violation: CloseClass,
    /// The class of each [`FailureKind`], by its index.
    failures: [CloseClass; FailureKind::ALL.len()],
}

/// The exact entries and ranges of a [`ClosePolicy`], close codes and HTTP statuses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Tables {
    codes: BTreeMap<u16, CloseClass>,
    ranges: Vec<(RangeInclusive<u16>, CloseClass)>,
    http: BTreeMap<u16, CloseClass>,
    http_ranges: Vec<(RangeInclusive<u16>, CloseClass)>,
}

/// The default policy's tables, built once per process.
static DEFAULT_TABLES: LazyLock<Arc<Tables>> = LazyLock::new(|| Arc::new(default_tables()));

/// The floor the defaults put on 1013 and 429.
pub const TRY_AGAIN_LATER_FLOOR: Duration = Duration::from_secs(30);

/// The floor the defaults put on 1012 (service restart).
pub const SERVICE_RESTART_FLOOR: Duration = Duration::from_secs(10);

impl Default for ClosePolicy {
    fn default() -> Self {
        ClosePolicy {
            tables: DEFAULT_TABLES.clone(),
            default_class: CloseClass::RECONNECT,
            http_default: CloseClass::Fatal,
            tls: CloseClass::Fatal,
            violation: CloseClass::RECONNECT,
            failures: [CloseClass::RECONNECT; FailureKind::ALL.len()],
        }
    }
}

/// The table of the default policy (see [`ClosePolicy`]).
fn default_tables() -> Tables {
    let later = CloseClass::Reconnect {
        min_delay: Some(TRY_AGAIN_LATER_FLOOR),
    };
    let mut codes = BTreeMap::new();
    codes.insert(1000, CloseClass::Normal);
    for c in [1001, 1005, 1006, 1011] {
        codes.insert(c, CloseClass::RECONNECT);
    }
    codes.insert(
        1012,
        CloseClass::Reconnect {
            min_delay: Some(SERVICE_RESTART_FLOOR),
        },
    );
    codes.insert(1013, later);
    for c in [1002, 1003, 1007, 1008, 1009, 1010, 4001, 4003] {
        codes.insert(c, CloseClass::Fatal);
    }
    let mut http = BTreeMap::new();
    http.insert(401, CloseClass::Fatal);
    http.insert(403, CloseClass::Fatal);
    http.insert(408, CloseClass::RECONNECT);
    http.insert(429, later);
    Tables {
        codes,
        ranges: Vec::new(),
        http,
        http_ranges: vec![
            (300..=499, CloseClass::Fatal),
            (500..=599, CloseClass::RECONNECT),
        ],
    }
}

impl ClosePolicy {
    /// A policy that gives every close code, HTTP status, TLS failure, protocol violation
    /// and [`FailureKind`] the same class, with no exact entries: a blank table to build on with
    /// [`with_range`](Self::with_range) and the other builders, where
    /// [`default`](Self::default) starts from the table above.
    ///
    /// ```
    /// use tether_core::{CloseClass, CloseCode, ClosePolicy};
    ///
    /// // Reconnect on anything, except the application's own "banned" range.
    /// let policy = ClosePolicy::uniform(CloseClass::RECONNECT)
    ///     .with_range(4100..=4199, CloseClass::Fatal);
    /// assert_eq!(policy.classify_close(CloseCode(1002)), CloseClass::RECONNECT);
    /// assert_eq!(policy.classify_close(CloseCode(4150)), CloseClass::Fatal);
    /// ```
    #[must_use]
    pub fn uniform(class: CloseClass) -> Self {
        ClosePolicy {
            tables: Arc::default(),
            default_class: class,
            http_default: class,
            tls: class,
            violation: class,
            failures: [class; FailureKind::ALL.len()],
        }
    }

    /// The class of every close code, as runs of consecutive codes that share one:
    /// `(first, last, class)` in order, covering `0..=u16::MAX` without gaps, no two
    /// neighbours of the same class. Exactly what [`classify_close`](Self::classify_close)
    /// answers, however the policy was built (a recording writes the policy this way).
    #[must_use]
    pub fn close_runs(&self) -> Vec<(u16, u16, CloseClass)> {
        runs(&self.tables.codes, &self.tables.ranges, self.default_class)
    }

    /// The class of every HTTP upgrade status without `Retry-After`, as runs like
    /// [`close_runs`](Self::close_runs).
    #[must_use]
    pub fn http_runs(&self) -> Vec<(u16, u16, CloseClass)> {
        runs(
            &self.tables.http,
            &self.tables.http_ranges,
            self.http_default,
        )
    }

    /// Classifies one close code.
    pub fn with_code(mut self, code: u16, class: CloseClass) -> Self {
        Arc::make_mut(&mut self.tables).codes.insert(code, class);
        self
    }

    /// Classifies a range of close codes (exact codes still win).
    pub fn with_range(mut self, range: RangeInclusive<u16>, class: CloseClass) -> Self {
        Arc::make_mut(&mut self.tables).ranges.push((range, class));
        self
    }

    /// The class of close codes nothing else matches.
    pub fn with_default(mut self, class: CloseClass) -> Self {
        self.default_class = class;
        self
    }

    /// Classifies one HTTP upgrade status.
    pub fn with_http_status(mut self, status: u16, class: CloseClass) -> Self {
        Arc::make_mut(&mut self.tables).http.insert(status, class);
        self
    }

    /// Classifies a range of HTTP upgrade statuses (exact statuses still win).
    pub fn with_http_range(mut self, range: RangeInclusive<u16>, class: CloseClass) -> Self {
        Arc::make_mut(&mut self.tables)
            .http_ranges
            .push((range, class));
        self
    }

    /// Classifies TLS failures.
    pub fn with_tls(mut self, class: CloseClass) -> Self {
        self.tls = class;
        self
    }

    /// Classifies connections failed because the peer broke the WebSocket protocol
    /// (reconnect by default).
    pub fn with_violation(mut self, class: CloseClass) -> Self {
        self.violation = class;
        self
    }

    /// Classifies one kind of failure to open: refused, DNS, I/O, connect timeout or
    /// handshake timeout. A floor spreads the retries as a code's does.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tether_core::{CloseClass, ClosePolicy, FailureKind};
    ///
    /// // A server that does not answer the hello in time is overloaded: give it 20 s.
    /// let later = CloseClass::Reconnect { min_delay: Some(Duration::from_secs(20)) };
    /// let policy = ClosePolicy::default().with_failure(FailureKind::HandshakeTimeout, later);
    /// assert_eq!(policy.classify_kind(FailureKind::HandshakeTimeout), later);
    /// assert_eq!(policy.classify_kind(FailureKind::ConnectTimeout), CloseClass::RECONNECT);
    /// ```
    #[must_use]
    pub fn with_failure(mut self, kind: FailureKind, class: CloseClass) -> Self {
        self.failures[kind.index()] = class;
        self
    }

    /// The class of one kind of failure to open.
    #[must_use]
    pub fn classify_kind(&self, kind: FailureKind) -> CloseClass {
        self.failures[kind.index()]
    }

    /// The class of a connection the peer broke the WebSocket protocol on.
    #[must_use]
    pub fn classify_violation(&self) -> CloseClass {
        self.violation
    }

    /// The class of a close code.
    #[must_use]
    pub fn classify_close(&self, code: CloseCode) -> CloseClass {
        lookup(
            &self.tables.codes,
            &self.tables.ranges,
            self.default_class,
            code.0,
        )
    }

    /// The class of a failure before the WebSocket opened. A server's `Retry-After` raises
    /// the floor; it never lowers the configured one.
    #[must_use]
    pub fn classify_failure(&self, failure: &TransportFailure) -> CloseClass {
        match failure {
            TransportFailure::Refused => self.classify_kind(FailureKind::Refused),
            TransportFailure::Dns => self.classify_kind(FailureKind::Dns),
            TransportFailure::Io(_) => self.classify_kind(FailureKind::Io),
            TransportFailure::Tls(_) => self.tls,
            TransportFailure::Http {
                status,
                retry_after,
            }
            | TransportFailure::Proxy {
                status,
                retry_after,
            } => {
                let t = &self.tables;
                let class = lookup(&t.http, &t.http_ranges, self.http_default, *status);
                match class {
                    CloseClass::Reconnect { min_delay } => CloseClass::Reconnect {
                        min_delay: max_opt(min_delay, *retry_after),
                    },
                    other => other,
                }
            }
        }
    }
}

fn lookup(
    exact: &BTreeMap<u16, CloseClass>,
    ranges: &[(RangeInclusive<u16>, CloseClass)],
    default: CloseClass,
    key: u16,
) -> CloseClass {
    if let Some(c) = exact.get(&key) {
        return *c;
    }
    ranges
        .iter()
        .rev()
        .find(|(r, _)| r.contains(&key))
        .map_or(default, |(_, c)| *c)
}

/// The runs of [`lookup`] over every `u16`. The class can change only where an exact
/// entry or a range starts or ends, so only those points are looked up: a handful of
/// lookups rather than 65,536.
fn runs(
    exact: &BTreeMap<u16, CloseClass>,
    ranges: &[(RangeInclusive<u16>, CloseClass)],
    default: CloseClass,
) -> Vec<(u16, u16, CloseClass)> {
    let mut starts: Vec<u16> = vec![0];
    let mut edge = |first: u16, last: u16| {
        starts.push(first);
        if let Some(next) = last.checked_add(1) {
            starts.push(next);
        }
    };
    for &k in exact.keys() {
        edge(k, k);
    }
    for (r, _) in ranges {
        edge(*r.start(), *r.end());
    }
    starts.sort_unstable();
    starts.dedup();
    let mut out: Vec<(u16, u16, CloseClass)> = Vec::new();
    for (i, &first) in starts.iter().enumerate() {
        // `next` follows `first` in a sorted, deduplicated list, so it is at least 1.
        let last = starts.get(i + 1).map_or(u16::MAX, |next| next - 1);
        let class = lookup(exact, ranges, default, first);
        match out.last_mut() {
            Some(prev) if prev.2 == class => prev.1 = last,
            _ => out.push((first, last, class)),
        }
    }
    out
}

pub(crate) fn max_opt(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builders_change_what_they_name() {
        let p = ClosePolicy::default()
            .with_default(CloseClass::Fatal)
            .with_http_range(520..=529, CloseClass::Normal)
            .with_http_status(503, CloseClass::Fatal);
        assert_eq!(p.classify_close(CloseCode(4999)), CloseClass::Fatal);
        let http = |status| TransportFailure::Http {
            status,
            retry_after: None,
        };
        assert_eq!(p.classify_failure(&http(525)), CloseClass::Normal);
        assert_eq!(p.classify_failure(&http(503)), CloseClass::Fatal);
        assert_eq!(p.classify_failure(&http(502)), CloseClass::RECONNECT);
    }

    #[test]
    fn transport_failures_read_well() {
        let cases = [
            (TransportFailure::Refused, "connection refused"),
            (TransportFailure::Dns, "host name did not resolve"),
            (
                TransportFailure::Tls("bad cert".into()),
                "tls failed: bad cert",
            ),
            (
                TransportFailure::Http {
                    status: 503,
                    retry_after: None,
                },
                "the server answered 503 to the upgrade",
            ),
            (
                TransportFailure::Http {
                    status: 429,
                    retry_after: Some(std::time::Duration::from_secs(30)),
                },
                "the server answered 429 to the upgrade (retry after 30s)",
            ),
            (TransportFailure::Io("reset".into()), "i/o failure: reset"),
            (
                TransportFailure::Proxy {
                    status: 407,
                    retry_after: None,
                },
                "proxy answered 407",
            ),
        ];
        for (failure, text) in cases {
            assert_eq!(failure.to_string(), text);
        }
    }

    #[test]
    fn default_table_matches_the_design() {
        let p = ClosePolicy::default();
        assert_eq!(p.classify_close(CloseCode(1000)), CloseClass::Normal);
        for c in [1001, 1006, 1011] {
            assert_eq!(p.classify_close(CloseCode(c)), CloseClass::RECONNECT, "{c}");
        }
        assert_eq!(
            p.classify_close(CloseCode(1012)),
            CloseClass::Reconnect {
                min_delay: Some(Duration::from_secs(10))
            }
        );
        assert_eq!(
            p.classify_close(CloseCode(1013)),
            CloseClass::Reconnect {
                min_delay: Some(Duration::from_secs(30))
            }
        );
        for c in [1002, 1003, 1007, 1008, 1009, 1010, 4001, 4003] {
            assert_eq!(p.classify_close(CloseCode(c)), CloseClass::Fatal, "{c}");
        }
        assert_eq!(p.classify_close(CloseCode(4999)), CloseClass::RECONNECT);
    }

    #[test]
    fn exact_codes_beat_ranges_and_later_ranges_beat_earlier() {
        let p = ClosePolicy::default()
            .with_range(4000..=4999, CloseClass::Normal)
            .with_range(4100..=4199, CloseClass::Fatal);
        assert_eq!(p.classify_close(CloseCode(4001)), CloseClass::Fatal);
        assert_eq!(p.classify_close(CloseCode(4150)), CloseClass::Fatal);
        assert_eq!(p.classify_close(CloseCode(4200)), CloseClass::Normal);
    }

    #[test]
    fn upgrade_statuses_and_network_failures() {
        let p = ClosePolicy::default();
        let http = |status| TransportFailure::Http {
            status,
            retry_after: None,
        };
        assert_eq!(p.classify_failure(&http(401)), CloseClass::Fatal);
        assert_eq!(p.classify_failure(&http(403)), CloseClass::Fatal);
        assert_eq!(p.classify_failure(&http(404)), CloseClass::Fatal);
        assert_eq!(p.classify_failure(&http(503)), CloseClass::RECONNECT);
        assert_eq!(
            p.classify_failure(&http(429)),
            CloseClass::Reconnect {
                min_delay: Some(Duration::from_secs(30))
            }
        );
        assert_eq!(
            p.classify_failure(&TransportFailure::Http {
                status: 429,
                retry_after: Some(Duration::from_secs(90))
            }),
            CloseClass::Reconnect {
                min_delay: Some(Duration::from_secs(90))
            }
        );
        assert_eq!(
            p.classify_failure(&TransportFailure::Refused),
            CloseClass::RECONNECT
        );
        assert_eq!(
            p.classify_failure(&TransportFailure::Dns),
            CloseClass::RECONNECT
        );
        assert_eq!(
            p.classify_failure(&TransportFailure::Tls("bad cert".into())),
            CloseClass::Fatal
        );
    }

    #[test]
    fn proxy_statuses_use_the_status_table() {
        let p = ClosePolicy::default();
        let proxy = |status, retry_after| TransportFailure::Proxy {
            status,
            retry_after,
        };
        assert_eq!(p.classify_failure(&proxy(407, None)), CloseClass::Fatal);
        assert_eq!(p.classify_failure(&proxy(403, None)), CloseClass::Fatal);
        assert_eq!(p.classify_failure(&proxy(502, None)), CloseClass::RECONNECT);
        assert_eq!(p.classify_failure(&proxy(503, None)), CloseClass::RECONNECT);
        assert_eq!(
            p.classify_failure(&proxy(503, Some(Duration::from_secs(40)))),
            CloseClass::Reconnect {
                min_delay: Some(Duration::from_secs(40))
            }
        );
        let p = p.with_http_status(407, CloseClass::RECONNECT);
        assert_eq!(p.classify_failure(&proxy(407, None)), CloseClass::RECONNECT);
    }

    /// Expands runs back to one class per `u16`, checking they tile it in order.
    fn expand(runs: &[(u16, u16, CloseClass)]) -> Vec<CloseClass> {
        let mut out = Vec::with_capacity(1 << 16);
        for (i, &(first, last, class)) in runs.iter().enumerate() {
            assert_eq!(
                usize::from(first),
                out.len(),
                "run {i} leaves a gap or overlaps"
            );
            assert!(first <= last);
            if i > 0 {
                assert_ne!(runs[i - 1].2, class, "neighbouring runs {i} share a class");
            }
            out.extend(std::iter::repeat_n(class, usize::from(last - first) + 1));
        }
        assert_eq!(out.len(), 1 << 16, "the runs stop short of u16::MAX");
        out
    }

    #[test]
    fn runs_answer_exactly_as_the_lookups() {
        let floor = CloseClass::Reconnect {
            min_delay: Some(Duration::from_secs(7)),
        };
        let policies = [
            ClosePolicy::default(),
            ClosePolicy::uniform(CloseClass::Fatal),
            ClosePolicy::default()
                .with_range(0..=10, CloseClass::Normal)
                .with_range(4000..=4999, floor)
                .with_range(4500..=u16::MAX, CloseClass::Fatal)
                .with_code(u16::MAX, CloseClass::Normal)
                .with_code(4001, CloseClass::RECONNECT)
                .with_http_range(0..=u16::MAX, floor)
                .with_http_status(0, CloseClass::Normal)
                .with_http_status(u16::MAX, CloseClass::Normal),
        ];
        for p in &policies {
            let codes = expand(&p.close_runs());
            let http = expand(&p.http_runs());
            for k in 0..=u16::MAX {
                let i = usize::from(k);
                assert_eq!(codes[i], p.classify_close(CloseCode(k)), "code {k}");
                let status = TransportFailure::Http {
                    status: k,
                    retry_after: None,
                };
                assert_eq!(http[i], p.classify_failure(&status), "status {k}");
            }
        }
    }

    #[test]
    fn a_uniform_policy_classes_everything_alike() {
        let p = ClosePolicy::uniform(CloseClass::Normal);
        assert_eq!(p.close_runs(), vec![(0, u16::MAX, CloseClass::Normal)]);
        assert_eq!(p.http_runs(), vec![(0, u16::MAX, CloseClass::Normal)]);
        assert_eq!(p.classify_violation(), CloseClass::Normal);
        assert_eq!(
            p.classify_failure(&TransportFailure::Tls(String::new())),
            CloseClass::Normal
        );
    }

    #[test]
    fn wire_validity_of_codes() {
        for ok in [1000, 1001, 1003, 1007, 1011, 1014, 3000, 4999] {
            assert!(CloseCode(ok).is_valid_on_wire(), "{ok}");
        }
        for bad in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
            assert!(!CloseCode(bad).is_valid_on_wire(), "{bad}");
        }
    }
}
