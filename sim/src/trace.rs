//! Replaying a flight-recorder trace: the calls a real session loop made, fed to a fresh
//! [`Session`] built from the recorded seed, configuration and profile, with every output
//! compared to the recorded one and the invariant oracles ([`crate::oracle`]) run over
//! the replay.
//!
//! ```no_run
//! let file = std::fs::File::open("session.trace.jsonl").unwrap();
//! match tether_sim::trace::replay(std::io::BufReader::new(file)) {
//!     Ok(report) if report.is_clean() => println!("{report}"),
//!     Ok(report) => eprintln!("{report}"), // first differing step, oracle violations
//!     Err(e) => eprintln!("unreadable trace: {e}"), // with its line number
//! }
//! ```
//!
//! The format and what each redaction mode guarantees are in `docs/recording.md`.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::io::BufRead;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tether_core::profiles::{Gateway, GatewayOptions, HelloAck, Raw};
use tether_core::{CloseCode, Output, Session};
use tether_driver::record::format::{self, FORMAT_VERSION, OLDEST_FORMAT_VERSION};
use tether_driver::record::{Recordable, Redaction, Redactor};

use crate::fault::Fault;
use crate::oracle::{self, Violation};
use crate::timeline::{CommandRecord, Entry, Final, Sizes, Timeline};

/// Why a trace could not be replayed. Every variant that concerns a line names it
/// (1-based).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TraceError {
    /// Reading failed.
    #[error("line {line}: cannot read the trace: {source}")]
    Io {
        /// The line being read.
        line: usize,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The trace is empty.
    #[error("the trace is empty (no header line)")]
    Empty,
    /// A line is not JSON (a corrupted line, or a line cut short by a truncated file).
    #[error("line {line}: not a JSON object ({detail}); the trace is corrupted or truncated")]
    NotJson {
        /// The line.
        line: usize,
        /// The parser's complaint.
        detail: String,
    },
    /// The first line is not a header.
    #[error("line {line}: expected the header line (`\"k\":\"header\"`)")]
    NoHeader {
        /// The line.
        line: usize,
    },
    /// The trace was written in a format version this build does not read.
    #[error(
        "line {line}: trace format version {found} is not supported (this build reads versions {OLDEST_FORMAT_VERSION} to {supported})"
    )]
    Version {
        /// The line (the header).
        line: usize,
        /// The version found (`null` if missing).
        found: Value,
        /// The newest version this build reads (it reads every one from
        /// [`OLDEST_FORMAT_VERSION`] to this).
        supported: u64,
    },
    /// The profile is not one this replayer can build.
    #[error(
        "line {line}: unknown profile {name:?} (raw, hello-ack and gateway replay with `replay`; a protocol of your own with `replay_with`)"
    )]
    UnknownProfile {
        /// The line (the header).
        line: usize,
        /// The profile's name.
        name: String,
    },
    /// A line is JSON but not a valid record.
    #[error("line {line}: {detail}")]
    Malformed {
        /// The line.
        line: usize,
        /// What is wrong.
        detail: String,
    },
    /// The session panicked while replaying a call: a bug in the core, reported instead of
    /// taking the replayer down. The replay stops at that line.
    #[error("line {line}: the session panicked replaying this call: {detail}")]
    Panicked {
        /// The line of the call.
        line: usize,
        /// The panic's message.
        detail: String,
    },
    /// Lines were evicted from a ring buffer before it was dumped: the session's start is
    /// missing, so it cannot be replayed.
    #[error(
        "line {line}: {dropped} lines were evicted before this dump; a replay needs the session from its start"
    )]
    Gap {
        /// The line of the `gap` record.
        line: usize,
        /// How many lines were evicted.
        dropped: u64,
    },
    /// The recorder's writer fell behind the session and dropped records here: the trace
    /// is incomplete from this line on, so a replay past it would report a divergence
    /// that never happened. Everything before it was checked (a divergence there is
    /// reported as such).
    #[error(
        "line {line}: the trace is incomplete: {dropped} records were dropped here (the recorder's writer fell behind the session); a replay needs every record"
    )]
    Lost {
        /// The line of the `lost` record.
        line: usize,
        /// How many records were dropped.
        dropped: u64,
    },
}

/// The first step where the replay decided differently from the recording.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Divergence {
    /// The trace line (1-based) of the recorded step.
    pub line: usize,
    /// What the trace recorded there (as compared, per the redaction mode).
    pub expected: String,
    /// What the replay produced instead.
    pub got: String,
}

impl fmt::Display for Divergence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}: expected {}; got {}",
            self.line, self.expected, self.got
        )
    }
}

/// What a replay found.
#[derive(Clone, Debug)]
pub struct ReplayReport {
    /// The profile's name.
    pub profile: String,
    /// The recorded seed.
    pub seed: u64,
    /// The redaction mode the trace was written in.
    pub redaction: Redaction,
    /// Lines read.
    pub lines: usize,
    /// Session calls replayed.
    pub calls: usize,
    /// Outputs compared.
    pub outputs: usize,
    /// Session time covered.
    pub span: Duration,
    /// Whether the trace ends with its `end` line (a ring-buffer dump taken while the
    /// session ran has none; its last step is then compared as far as it was written).
    pub complete: bool,
    /// The first differing step, if any; the replay stops there.
    pub divergence: Option<Divergence>,
    /// Invariant violations the oracles found in the replay (the first per oracle).
    /// `clean_after_close` is judged only when the trace ends with the session closed.
    pub violations: Vec<Violation>,
}

impl ReplayReport {
    /// Whether the replay matched the recording and no invariant was broken.
    #[must_use]
    pub fn is_clean(&self) -> bool {
        self.divergence.is_none() && self.violations.is_empty()
    }
}

impl fmt::Display for ReplayReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "trace: profile {}, seed {}, redaction {}, {} lines, {} calls, {} outputs over {:.3}s{}",
            self.profile,
            self.seed,
            self.redaction.name(),
            self.lines,
            self.calls,
            self.outputs,
            self.span.as_secs_f64(),
            if self.complete || self.divergence.is_some() {
                ""
            } else {
                " (no end line: compared as far as written)"
            }
        )?;
        match &self.divergence {
            None => writeln!(f, "replay: identical")?,
            Some(d) => {
                writeln!(f, "replay: DIVERGED at line {}", d.line)?;
                writeln!(f, "  expected {}", d.expected)?;
                writeln!(f, "  got      {}", d.got)?;
            }
        }
        if self.violations.is_empty() {
            writeln!(f, "oracles: {} passed", oracle::ORACLES.len())
        } else {
            for v in &self.violations {
                writeln!(f, "oracle violated: {v}")?;
            }
            Ok(())
        }
    }
}

/// Replays a trace of one of the ready profiles (`raw`, `hello-ack`, `gateway`).
///
/// The hello the user's protocol built cannot be rebuilt (it may carry credentials and
/// is never written by default): the replay's `HelloAck` says `{"type":"hello"}` and its
/// `Gateway` has no token, and secret frames are compared by envelope only.
///
/// # Errors
///
/// A [`TraceError`] when the trace cannot be read; a trace that reads but replays
/// differently is an `Ok` report with a [`Divergence`].
pub fn replay(reader: impl BufRead) -> Result<ReplayReport, TraceError> {
    let mut lines = Lines::new(reader);
    let header = lines.header()?;
    let line = 1;
    let name = header
        .get("profile")
        .and_then(|p| p.get("name"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    match name.as_str() {
        "raw" => run(lines, &header, Raw),
        "hello-ack" => run(lines, &header, HelloAck::new(|| json!({ "type": "hello" }))),
        "gateway" => {
            let p = &header["profile"];
            let mut o = GatewayOptions {
                token: None,
                ..GatewayOptions::default()
            };
            if let Some(t) = p.get("ticks_as_heartbeat").and_then(Value::as_bool) {
                o.ticks_as_heartbeat = t;
            }
            if let Some(id) = p["client"]["id"].as_str() {
                o.client_id = id.to_owned();
            }
            if let Some(mode) = p["client"]["mode"].as_str() {
                o.mode = mode.to_owned();
            }
            if let Some(scopes) = p["scopes"].as_array() {
                o.scopes = scopes
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect();
            }
            let num = |k: &str| p[k].as_u64().and_then(|n| u32::try_from(n).ok());
            if let Some(n) = num("min_protocol") {
                o.min_protocol = n;
            }
            if let Some(n) = num("max_protocol") {
                o.max_protocol = n;
            }
            run(lines, &header, Gateway::new(o))
        }
        _ => Err(TraceError::UnknownProfile { line, name }),
    }
}

/// Replays a trace of any [`Recordable`] protocol, built by the caller (as the recorded
/// header's `profile` describes it).
///
/// # Errors
///
/// See [`replay`].
pub fn replay_with<P: Recordable>(
    reader: impl BufRead,
    protocol: P,
) -> Result<ReplayReport, TraceError> {
    let mut lines = Lines::new(reader);
    let header = lines.header()?;
    run(lines, &header, protocol)
}

/// [`replay_with`], also returning the replay's timeline, so that a caller who knows more
/// of the world than the trace does (the faults a simulated peer was put through) can add
/// it and judge the timeline again.
///
/// # Errors
///
/// See [`replay`].
pub fn replay_timeline<P: Recordable>(
    reader: impl BufRead,
    protocol: P,
) -> Result<(ReplayReport, Timeline<P>), TraceError> {
    let mut lines = Lines::new(reader);
    let header = lines.header()?;
    run_timeline(lines, &header, protocol)
}

/// The trace's lines, numbered, each parsed as a JSON object.
struct Lines<R> {
    reader: R,
    number: usize,
    buf: String,
}

impl<R: BufRead> Lines<R> {
    fn new(reader: R) -> Self {
        Lines {
            reader,
            number: 0,
            buf: String::new(),
        }
    }

    fn next(&mut self) -> Result<Option<(usize, Value)>, TraceError> {
        loop {
            self.buf.clear();
            self.number += 1;
            let line = self.number;
            let n = self
                .reader
                .read_line(&mut self.buf)
                .map_err(|source| TraceError::Io { line, source })?;
            if n == 0 {
                self.number -= 1;
                return Ok(None);
            }
            let text = self.buf.trim_end_matches(['\n', '\r']);
            if text.trim().is_empty() {
                continue;
            }
            let v: Value = serde_json::from_str(text).map_err(|e| TraceError::NotJson {
                line,
                detail: e.to_string(),
            })?;
            if !v.is_object() {
                return Err(TraceError::NotJson {
                    line,
                    detail: "a JSON value that is not an object".to_owned(),
                });
            }
            return Ok(Some((line, v)));
        }
    }

    fn header(&mut self) -> Result<Value, TraceError> {
        let Some((line, h)) = self.next()? else {
            return Err(TraceError::Empty);
        };
        if h.get("k").and_then(Value::as_str) != Some("header") {
            return Err(TraceError::NoHeader { line });
        }
        match h.get("version") {
            Some(v)
                if v.as_u64()
                    .is_some_and(|v| (OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&v)) =>
            {
                Ok(h)
            }
            found => Err(TraceError::Version {
                line,
                found: found.cloned().unwrap_or(Value::Null),
                supported: FORMAT_VERSION,
            }),
        }
    }
}

fn malformed(line: usize) -> impl Fn(String) -> TraceError {
    move |detail| TraceError::Malformed { line, detail }
}

/// The replay of one trace.
struct Replay<P: Recordable> {
    session: Session<P>,
    redactor: Redactor,
    epoch: Instant,
    timeline: Timeline<P>,
    /// Outputs of the current call not yet matched with a recorded `out` line.
    pending: VecDeque<Output<P>>,
    last_sizes: Sizes,
    reasons: BTreeMap<String, &'static str>,
    calls: usize,
    outputs: usize,
    span: Duration,
    closed_by_user: bool,
}

fn run<P: Recordable>(
    lines: Lines<impl BufRead>,
    header: &Value,
    protocol: P,
) -> Result<ReplayReport, TraceError> {
    run_timeline(lines, header, protocol).map(|(report, _)| report)
}

fn run_timeline<P: Recordable>(
    mut lines: Lines<impl BufRead>,
    header: &Value,
    protocol: P,
) -> Result<(ReplayReport, Timeline<P>), TraceError> {
    let bad = malformed(1);
    let seed = header
        .get("seed")
        .and_then(Value::as_u64)
        .ok_or_else(|| bad("the header has no numeric `seed`".to_owned()))?;
    let config = format::read_config(
        header
            .get("config")
            .ok_or_else(|| bad("the header has no `config`".to_owned()))?,
    )
    .map_err(|e| bad(format!("config: {e}")))?;
    let mode = header
        .get("redaction")
        .and_then(Value::as_str)
        .and_then(Redaction::from_name)
        .ok_or_else(|| bad("the header's `redaction` must be keep, hash or drop".to_owned()))?;
    let secrets = header.get("secrets").and_then(Value::as_bool) == Some(true);
    let profile = header["profile"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let redactor = Redactor::new(mode, protocol.wire()).with_secrets(secrets);
    let session =
        Session::new(config.clone(), protocol, seed).map_err(|e| bad(format!("config: {e}")))?;
    #[allow(clippy::disallowed_methods)] // The replay's one clock read: an arbitrary epoch.
    let epoch = Instant::now();
    let mut r = Replay {
        session,
        redactor,
        epoch,
        timeline: Timeline::new(config),
        pending: VecDeque::new(),
        last_sizes: Sizes::default(),
        reasons: BTreeMap::new(),
        calls: 0,
        outputs: 0,
        span: Duration::ZERO,
        closed_by_user: false,
    };
    let mut complete = false;
    let mut divergence = None;
    let mut count = 1;
    while let Some((line, v)) = lines.next()? {
        count = line;
        if complete {
            return Err(TraceError::Malformed {
                line,
                detail: "a line after the `end` line".to_owned(),
            });
        }
        let kind = v.get("k").and_then(Value::as_str).unwrap_or_default();
        let step = match kind {
            "out" => r.recorded_output(line, &v)?,
            "end" => {
                complete = true;
                r.end(line, &v)?
            }
            "gap" => {
                return Err(TraceError::Gap {
                    line,
                    dropped: v.get("dropped").and_then(Value::as_u64).unwrap_or(0),
                });
            }
            "lost" => {
                return Err(TraceError::Lost {
                    line,
                    dropped: v.get("dropped").and_then(Value::as_u64).unwrap_or(0),
                });
            }
            "header" => {
                return Err(TraceError::Malformed {
                    line,
                    detail: "a second header".to_owned(),
                });
            }
            _ => {
                // The core does not panic on any input; should a bug make it, the replayer
                // (often run on a trace from the field) reports the line instead of dying.
                let call = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    r.call(line, kind, &v)
                }));
                match call {
                    Ok(step) => step?,
                    Err(panic) => {
                        let detail = panic
                            .downcast_ref::<&str>()
                            .map(|s| (*s).to_owned())
                            .or_else(|| panic.downcast_ref::<String>().cloned())
                            .unwrap_or_else(|| "a panic without a message".to_owned());
                        return Err(TraceError::Panicked { line, detail });
                    }
                }
            }
        };
        if let Err(d) = step {
            divergence = Some(d);
            break;
        }
    }
    let timeline_closed = r.closed_by_user || r.session.is_closed();
    let mut violations = oracle::check(&r.timeline);
    if !(complete && timeline_closed) || divergence.is_some() {
        // No `Final` record: the session was still running when the trace was cut.
        violations.retain(|v| v.oracle != "clean_after_close");
    }
    let report = ReplayReport {
        profile,
        seed,
        redaction: mode,
        lines: count,
        calls: r.calls,
        outputs: r.outputs,
        span: r.span,
        complete,
        divergence,
        violations,
    };
    Ok((report, r.timeline))
}

type Step = Result<(), Divergence>;

impl<P: Recordable> Replay<P> {
    fn at(&self, line: usize, v: &Value) -> Result<(Duration, Instant), TraceError> {
        let t = v
            .get("t")
            .and_then(Value::as_u64)
            .map(Duration::from_nanos)
            .ok_or_else(|| malformed(line)("missing numeric `t`".to_owned()))?;
        let now = self
            .epoch
            .checked_add(t)
            .ok_or_else(|| malformed(line)(format!("time {t:?} out of range")))?;
        Ok((t, now))
    }

    /// Every output produced so far must have been recorded.
    fn all_recorded(&mut self, line: usize) -> Step {
        match self.pending.pop_front() {
            None => Ok(()),
            Some(extra) => Err(Divergence {
                line,
                expected: "no further output".to_owned(),
                got: format::output(&self.redactor, &extra).to_string(),
            }),
        }
    }

    fn recorded_output(&mut self, line: usize, v: &Value) -> Result<Step, TraceError> {
        let o = v
            .get("o")
            .ok_or_else(|| malformed(line)("an `out` line needs `o`".to_owned()))?;
        let expected = format::output_key(&self.redactor, o);
        let Some(out) = self.pending.pop_front() else {
            return Ok(Err(Divergence {
                line,
                expected: expected.to_string(),
                got: "no output".to_owned(),
            }));
        };
        self.outputs += 1;
        let got = format::output_key(&self.redactor, &format::output(&self.redactor, &out));
        Ok(if got == expected {
            Ok(())
        } else {
            Err(Divergence {
                line,
                expected: expected.to_string(),
                got: got.to_string(),
            })
        })
    }

    fn reason(&mut self, s: &str) -> &'static str {
        if let Some(r) = self.reasons.get(s) {
            return r;
        }
        // `Session::close` takes a `&'static str`; each distinct reason of the trace is
        // leaked once (a trace holds a handful: the application's close calls).
        let leaked: &'static str = Box::leak(s.to_owned().into_boxed_str());
        self.reasons.insert(s.to_owned(), leaked);
        leaked
    }

    fn call(&mut self, line: usize, kind: &str, v: &Value) -> Result<Step, TraceError> {
        // Outputs are not checked off here: the session loop feeds every command and
        // input that is ready before it drains the outputs, so a call's outputs may be
        // recorded after later calls. The session's outputs are first in, first out
        // whenever they are polled, so the replay polls after each call (which keeps the
        // timeline's attribution exact for the oracles) and checks the recorded `out`
        // lines against that queue in order.
        let bad = malformed(line);
        let (t, now) = self.at(line, v)?;
        self.span = self.span.max(t);
        // A deadline already past: the host ran late (scheduling, a busy runtime, a
        // sleep). The timeline says so the way the simulator does, as the host being
        // asleep from the deadline until this call.
        if let Some(deadline) = self.session.poll_timeout()
            && deadline < now
        {
            let d = deadline.saturating_duration_since(self.epoch);
            self.timeline
                .push(d, Entry::Fault(Fault::ClockJump(t.saturating_sub(d))));
        }
        let recorded_ret = v.get("ret").cloned();
        let got_ret: Option<Value> = match kind {
            "connect" => {
                let r = self.session.connect(now);
                self.timeline
                    .push(t, Entry::Command(CommandRecord::Connect));
                Some(format::result(&r, |_| Value::Null))
            }
            "in" => {
                let input = format::read_input(
                    v.get("in")
                        .ok_or_else(|| bad("an `in` line needs `in`".to_owned()))?,
                )
                .map_err(&bad)?;
                self.timeline.push(t, Entry::Input(input.clone()));
                self.session.handle_input(input, now);
                None
            }
            "timeout" => {
                if self.session.poll_timeout().is_some_and(|d| d <= now)
                    && let Some(kind) = self.session.timeout_reason()
                {
                    self.timeline.push(t, Entry::Timer(kind));
                }
                self.session.handle_timeout(now);
                None
            }
            "send" | "feed" => {
                let msg = P::replay_outbound(
                    v.get("msg")
                        .ok_or_else(|| bad(format!("a `{kind}` line needs `msg`")))?,
                )
                .map_err(&bad)?;
                if kind == "send" {
                    let r = match v.get("ttl") {
                        None | Some(Value::Null) => self.session.send(msg, now),
                        Some(ttl) => {
                            let ttl = format::read_duration(ttl).map_err(&bad)?;
                            self.session.send_with_ttl(msg, ttl, now)
                        }
                    };
                    let got = format::result(&r, |id| id.get().into());
                    self.timeline
                        .push(t, Entry::Command(CommandRecord::Send(r)));
                    Some(got)
                } else {
                    // `feed` reports a refusal as an event, not a result.
                    self.session.feed(msg, now);
                    self.timeline.push(
                        t,
                        Entry::Command(CommandRecord::Send(Ok(tether_core::MessageId::from_raw(
                            0,
                        )))),
                    );
                    None
                }
            }
            "request" => {
                let req = P::replay_request(
                    v.get("req")
                        .ok_or_else(|| bad("a `request` line needs `req`".to_owned()))?,
                )
                .map_err(&bad)?;
                let timeout = match v.get("timeout") {
                    None | Some(Value::Null) => None,
                    Some(d) => Some(format::read_duration(d).map_err(&bad)?),
                };
                let before = self.session.open_streams();
                let r = self.session.request(req, timeout, now);
                let got = format::result(&r, |id| id.get().into());
                let stream = r.is_ok() && self.session.open_streams() > before;
                self.timeline.push(
                    t,
                    Entry::Command(CommandRecord::Request { result: r, stream }),
                );
                Some(got)
            }
            "close" => {
                let code = v
                    .get("code")
                    .and_then(Value::as_u64)
                    .and_then(|c| u16::try_from(c).ok())
                    .ok_or_else(|| bad("a `close` line needs a close `code`".to_owned()))?;
                let reason = v.get("reason").and_then(Value::as_str).unwrap_or_default();
                let reason = self.reason(reason);
                self.session.close(CloseCode(code), reason, now);
                self.closed_by_user = true;
                self.timeline.push(t, Entry::Command(CommandRecord::Close));
                None
            }
            "disconnect" | "resume" | "reconnect" => {
                let (r, record): (_, fn(_) -> CommandRecord) = match kind {
                    "disconnect" => (self.session.disconnect(now), CommandRecord::Disconnect),
                    "resume" => (self.session.resume(now), CommandRecord::Resume),
                    _ => (self.session.reconnect(now), CommandRecord::Reconnect),
                };
                let got = format::result(&r, |()| Value::Null);
                self.timeline.push(t, Entry::Command(record(r)));
                Some(got)
            }
            "terminate" => {
                self.session.terminate(now);
                self.closed_by_user = true;
                self.timeline
                    .push(t, Entry::Command(CommandRecord::Terminate));
                None
            }
            other => return Err(bad(format!("unknown line kind {other:?}"))),
        };
        self.calls += 1;
        while let Some(out) = self.session.poll_output() {
            self.timeline.push(t, Entry::Output(out.clone()));
            self.pending.push_back(out);
        }
        let sizes = self.sizes();
        if sizes != self.last_sizes {
            self.last_sizes = sizes;
            self.timeline.push(t, Entry::Sizes(sizes));
        }
        if let (Some(expected), Some(got)) = (recorded_ret, got_ret)
            && expected != got
        {
            return Ok(Err(Divergence {
                line,
                expected: format!("{kind} returning {expected}"),
                got: format!("{kind} returning {got}"),
            }));
        }
        Ok(Ok(()))
    }

    fn sizes(&self) -> Sizes {
        Sizes {
            pending_requests: self.session.pending_requests(),
            queued: self.session.queued(),
            open_streams: self.session.open_streams(),
            remembered: self.session.remembered_events(),
            pending_writes: self.session.pending_writes(),
        }
    }

    fn end(&mut self, line: usize, v: &Value) -> Result<Step, TraceError> {
        if let Err(d) = self.all_recorded(line) {
            return Ok(Err(d));
        }
        let (t, _) = self.at(line, v)?;
        self.span = self.span.max(t);
        let status = self.session.status();
        let got = json!({
            "status": format::status_name(status),
            "closed": self.session.is_closed(),
            "timer": self.session.poll_timeout().is_some(),
        });
        let expected = json!({
            "status": v.get("status"),
            "closed": v.get("closed"),
            "timer": v.get("timer"),
        });
        if got != expected {
            return Ok(Err(Divergence {
                line,
                expected: format!("end state {expected}"),
                got: format!("end state {got}"),
            }));
        }
        if self.closed_by_user || self.session.is_closed() {
            let sizes = self.sizes();
            self.timeline.push(
                t,
                Entry::Final(Final {
                    status,
                    is_closed: self.session.is_closed(),
                    timer_armed: self.session.poll_timeout().is_some(),
                    sizes,
                }),
            );
        }
        Ok(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_trace_and_a_headless_one_are_refused() {
        assert!(matches!(replay(&b""[..]), Err(TraceError::Empty)));
        assert!(matches!(
            replay(&b"{\"k\":\"in\"}\n"[..]),
            Err(TraceError::NoHeader { line: 1 })
        ));
        let e = replay(&b"{\"k\":\"header\",\"version\":99}\n"[..]).unwrap_err();
        assert!(matches!(e, TraceError::Version { line: 1, .. }), "{e}");
        assert!(e.to_string().contains("version 99"), "{e}");
    }

    /// A header for the HelloAck profile with `config`, then `lines`.
    fn trace(config: Value, lines: &[Value]) -> Vec<u8> {
        let header = json!({
            "k": "header", "version": FORMAT_VERSION, "seed": 7,
            "profile": { "name": "hello-ack" }, "config": config,
            "redaction": "keep", "secrets": false,
        });
        let mut out = String::new();
        for l in std::iter::once(&header).chain(lines) {
            out.push_str(&l.to_string());
            out.push('\n');
        }
        out.into_bytes()
    }

    fn default_config() -> Value {
        format::config(&tether_core::Config::default()).expect("the defaults can be written")
    }

    /// A trace with a `lost` line (its writer fell behind) is refused at that line, as
    /// incomplete, not replayed into a divergence that never happened; the calls before
    /// it are replayed (a divergence there is still reported as one).
    #[test]
    fn a_trace_with_lost_records_is_refused_as_incomplete() {
        let connect = json!({ "k": "connect", "t": 0, "ret": { "ok": null } });
        let lost = json!({ "k": "lost", "dropped": 12 });
        let t = trace(default_config(), &[connect.clone(), lost.clone()]);
        let e = replay(&t[..]).unwrap_err();
        assert!(
            matches!(
                e,
                TraceError::Lost {
                    line: 3,
                    dropped: 12
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().contains("incomplete"), "{e}");
        let refused = json!({ "k": "connect", "t": 0, "ret": { "err": "NotIdle" } });
        let t = trace(default_config(), &[refused, lost]);
        let report = replay(&t[..]).expect("a divergence before the hole");
        assert_eq!(report.divergence.map(|d| d.line), Some(2));
    }

    /// A trace written before the `lost` line existed (version 1) is still read.
    #[test]
    fn a_version_1_trace_is_read() {
        let mut t = String::from_utf8(trace(default_config(), &[])).expect("UTF-8");
        t = t.replace(&format!("\"version\":{FORMAT_VERSION}"), "\"version\":1");
        assert!(t.contains("\"version\":1"), "{t}");
        let report = replay(t.as_bytes()).expect("a version-1 trace");
        assert!(!report.complete);
    }

    /// Reliability review §7 T1: a `connect_timeout` of `Duration::MAX` in the header used
    /// to pass into the session and panic at the `connect` line.
    #[test]
    fn t1_a_header_with_an_absurd_timeout_is_a_trace_error() {
        let mut config = default_config();
        config["connect_timeout"] = json!([u64::MAX, 0]);
        let t = trace(config, &[json!({ "k": "connect", "t": 0 })]);
        let e = replay(&t[..]).unwrap_err();
        assert!(matches!(e, TraceError::Malformed { line: 1, .. }), "{e}");
        assert!(e.to_string().contains("connect_timeout"), "{e}");
    }

    /// A request line whose `timeout` is `Duration::MAX` replays (as a request with no
    /// deadline) instead of panicking.
    #[test]
    fn a_request_with_a_huge_timeout_replays() {
        let t = trace(
            default_config(),
            &[
                json!({ "k": "connect", "t": 0, "ret": { "ok": null } }),
                json!({
                    "k": "request", "t": 1_000,
                    "req": { "method": "echo", "params": null, "stream": false },
                    "timeout": [u64::MAX, 999_999_999],
                    "ret": { "ok": 0 },
                }),
                json!({ "k": "timeout", "t": 4_000_000_000_000_000_000u64 }),
            ],
        );
        let report = replay(&t[..]).expect("replays");
        assert_eq!(report.calls, 3, "{report}");
        // The trace records no outputs and the replay has none to compare: identical.
        assert!(report.divergence.is_none(), "{report}");
    }
}
