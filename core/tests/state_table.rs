//! The state × input table of `docs/state-machine.md`, checked row by row against a real
//! [`Session`].
//!
//! For every row the test drives a fresh session into the row's phase and status with
//! virtual time (one `Instant::now()` read, then offsets), applies the row's input, and
//! compares the resulting status, the kinds of the outputs, the command's return value and
//! the next armed timer with the row. It also checks that every `(phase, from, protocol,
//! config, input)` this file calls covered has a row, so deleting a row fails too, and
//! that the table of legal status transitions matches [`Status::can_become`].

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tether_core::profiles::Raw;
use tether_core::{
    Acked, CloseCode, Config, ConnId, DataFrame, Decoded, EncodeError, EncodedRequest, Event,
    FrameId, InFrame, Input, Opening, OutFrame, Output, Phase, Protocol, Rejection, RequestMeta,
    Session, Status, TransportFailure,
};

const DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/state-machine.md");

const COLUMNS: [&str; 10] = [
    "phase",
    "from",
    "protocol",
    "config",
    "input",
    "returns",
    "to",
    "outputs",
    "next timer",
    "note",
];

/// The step between two setup actions.
const STEP: Duration = Duration::from_millis(10);

// ---- the test-local handshake protocol -------------------------------------------------------

/// `hello` → `ack`: sends the text `hello` on open; the text `ack` acknowledges, `reject`
/// refuses fatally, any other frame is a message (in either phase).
#[derive(Clone, Copy, Debug, Default)]
struct Hello;

impl Protocol for Hello {
    type Inbound = DataFrame;
    type Outbound = DataFrame;
    type Request = Infallible;
    type Response = Infallible;
    type RemoteError = Infallible;

    fn open(&mut self, _conn: ConnId) -> Result<Opening, EncodeError> {
        Ok(Opening::Hello(OutFrame::text("hello")))
    }

    fn encode(&mut self, message: DataFrame) -> Result<OutFrame, EncodeError> {
        Ok(match message {
            DataFrame::Text(t) => OutFrame::Text(t),
            DataFrame::Binary(b) => OutFrame::Binary(b),
        })
    }

    fn encode_request(
        &mut self,
        _meta: RequestMeta,
        request: Infallible,
    ) -> Result<EncodedRequest, EncodeError> {
        match request {}
    }

    fn decode(&mut self, frame: DataFrame, _phase: Phase) -> Decoded<Self> {
        match &frame {
            DataFrame::Text(t) if t.as_str() == "ack" => Decoded::Ack(Acked::default()),
            DataFrame::Text(t) if t.as_str() == "reject" => Decoded::Rejected(Rejection {
                message: "go away".into(),
                fatal: true,
                retry_after: None,
            }),
            _ => Decoded::Message(frame),
        }
    }
}

// ---- the table -------------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct Row {
    line: usize,
    phase: String,
    from: String,
    protocol: String,
    config: String,
    input: String,
    returns: String,
    to: String,
    outputs: Vec<String>,
    next_timer: String,
}

impl Row {
    fn key(&self) -> Key {
        (
            self.phase.clone(),
            self.from.clone(),
            self.protocol.clone(),
            self.config.clone(),
            self.input.clone(),
        )
    }
}

type Key = (String, String, String, String, String);

fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    inner
        .split('|')
        .map(|c| c.replace('`', "").trim().to_owned())
        .collect()
}

/// The lines of the first pipe table whose header cells are `header`, with line numbers.
fn table<'a>(doc: &'a str, header: &[&str]) -> Vec<(usize, &'a str)> {
    let lines: Vec<&str> = doc.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.trim_start().starts_with('|') && cells(l) == header)
        .unwrap_or_else(|| panic!("{DOC}: no table with the header {header:?}"));
    assert!(
        lines
            .get(start + 1)
            .is_some_and(|l| l.trim_start().starts_with("|-") || l.trim_start().starts_with("| -")),
        "{DOC}:{}: the header must be followed by a separator row",
        start + 1
    );
    lines
        .iter()
        .enumerate()
        .skip(start + 2)
        .take_while(|(_, l)| l.trim_start().starts_with('|'))
        .map(|(i, l)| (i + 1, *l))
        .collect()
}

fn rows(doc: &str) -> Vec<Row> {
    table(doc, &COLUMNS)
        .into_iter()
        .map(|(line, text)| {
            let c = cells(text);
            assert_eq!(
                c.len(),
                COLUMNS.len(),
                "{DOC}:{line}: expected {} cells",
                COLUMNS.len()
            );
            let outputs = if c[7] == "—" {
                Vec::new()
            } else {
                c[7].split(',').map(|s| s.trim().to_owned()).collect()
            };
            Row {
                line,
                phase: c[0].clone(),
                from: c[1].clone(),
                protocol: c[2].clone(),
                config: c[3].clone(),
                input: c[4].clone(),
                returns: c[5].clone(),
                to: c[6].clone(),
                outputs,
                next_timer: c[8].clone(),
            }
        })
        .collect()
}

// ---- the rows this file promises are there ---------------------------------------------------

const COMMON_INPUTS: [&str; 13] = [
    "connect",
    "close",
    "terminate",
    "TransportOpened",
    "TransportFailed(refused)",
    "TransportFailed(http 401)",
    "FrameReceived(text)",
    "TransportClosed(1000)",
    "TransportClosed(1012)",
    "TransportClosed(1008)",
    "ProtocolError(utf8)",
    "WriteCompleted",
    "WriteFailed",
];

fn covered() -> BTreeSet<Key> {
    let key = |phase: &str, from: &str, protocol: &str, config: &str, input: &str| {
        (
            phase.to_owned(),
            from.to_owned(),
            protocol.to_owned(),
            config.to_owned(),
            input.to_owned(),
        )
    };
    let mut keys = BTreeSet::new();
    // Every input in every phase, each phase in its canonical status, plus the timers
    // that can be armed in that phase.
    let canonical: [(&str, &str, &str, &[&str]); 6] = [
        ("Idle", "Idle", "raw", &["jump(1h)"]),
        ("Opening", "Connecting", "raw", &["timer(connect)"]),
        (
            "Handshaking",
            "Connecting",
            "hello",
            &["timer(handshake)", "FrameReceived(ack)"],
        ),
        (
            "Open",
            "Open",
            "raw",
            &["timer(ping)", "timer(stale)", "timer(send)", "jump(1h)"],
        ),
        ("Backoff", "Reconnecting", "raw", &["timer(backoff)"]),
        ("Ended", "Closed", "raw", &["timer(close)"]),
    ];
    for (phase, from, protocol, extra) in canonical {
        for input in COMMON_INPUTS.iter().chain(extra) {
            keys.insert(key(phase, from, protocol, "default", input));
        }
    }
    // The variants that differ: reconnect attempts, retried first connects, a failed end.
    let variants: [(&str, &str, &str, &str, &[&str]); 8] = [
        ("Open", "Open", "hello", "default", &["FrameReceived(ack)"]),
        (
            "Opening",
            "Connecting",
            "raw",
            "retry_first_connect",
            &[
                "TransportFailed(refused)",
                "TransportFailed(http 401)",
                "TransportClosed(1000)",
                "timer(connect)",
            ],
        ),
        (
            "Handshaking",
            "Connecting",
            "hello",
            "retry_first_connect",
            &["timer(handshake)", "TransportClosed(1000)"],
        ),
        (
            "Backoff",
            "Connecting",
            "raw",
            "retry_first_connect",
            &["timer(backoff)", "close"],
        ),
        (
            "Opening",
            "Reconnecting",
            "raw",
            "default",
            &[
                "TransportOpened",
                "TransportFailed(refused)",
                "TransportFailed(http 401)",
                "TransportClosed(1000)",
                "timer(connect)",
                "TransportOpened@old",
                "TransportClosed(1008)@old",
            ],
        ),
        (
            "Handshaking",
            "Reconnecting",
            "hello",
            "default",
            &[
                "FrameReceived(ack)",
                "TransportClosed(1000)",
                "TransportClosed(1008)",
                "timer(handshake)",
            ],
        ),
        (
            "Opening",
            "Connecting",
            "hello",
            "default",
            &["TransportOpened"],
        ),
        (
            "Ended",
            "Failed",
            "raw",
            "default",
            &["connect", "close", "terminate", "TransportOpened"],
        ),
    ];
    for (phase, from, protocol, config, inputs) in variants {
        for input in inputs {
            keys.insert(key(phase, from, protocol, config, input));
        }
    }
    keys
}

// ---- the driver ------------------------------------------------------------------------------

/// Plays the adapter and the peer around one session, with virtual time.
struct Harness<P: Protocol> {
    s: Session<P>,
    now: Instant,
    /// The newest generation the session asked to open.
    last_conn: Option<ConnId>,
    /// The generation before it.
    old_conn: Option<ConnId>,
    /// The newest frame the session asked to write.
    last_frame: Option<FrameId>,
}

impl<P> Harness<P>
where
    P: Protocol<Outbound = DataFrame>,
{
    fn new(protocol: P, config: Config, t0: Instant) -> Self {
        Harness {
            s: Session::new(config, protocol, 1).expect("valid config"),
            now: t0,
            last_conn: None,
            old_conn: None,
            last_frame: None,
        }
    }

    fn drain(&mut self) -> Vec<Output<P>> {
        let mut out = Vec::new();
        while let Some(o) = self.s.poll_output() {
            match &o {
                Output::OpenTransport { conn, .. } => {
                    self.old_conn = self.last_conn.replace(*conn);
                }
                Output::SendFrame { frame, .. } => self.last_frame = Some(*frame),
                _ => {}
            }
            out.push(o);
        }
        out
    }

    /// The generation a transport input carries: the current one, else the newest issued
    /// (conn#0, never issued, in `Idle`).
    fn conn(&self) -> ConnId {
        self.s
            .current_conn()
            .or(self.last_conn)
            .unwrap_or(ConnId::from_raw(0))
    }

    fn input(&mut self, input: Input) -> Vec<Output<P>> {
        self.s.handle_input(input, self.now);
        self.drain()
    }

    /// The next setup action happens one step later.
    fn tick(&mut self) {
        self.now += STEP;
    }

    fn fire_next(&mut self) -> Result<Vec<Output<P>>, String> {
        let at = self.s.poll_timeout().ok_or("no timer armed")?;
        self.now = at;
        self.s.handle_timeout(at);
        Ok(self.drain())
    }

    /// Fires timers in order, acting as a healthy adapter (every write completes at once)
    /// and a silent peer, until `want` is the next one; then fires it and returns its
    /// outputs.
    fn fire(&mut self, want: &str) -> Result<Vec<Output<P>>, String> {
        for _ in 0..16 {
            let Some(kind) = self.s.timeout_reason() else {
                return Err(format!("{want} is never armed (no timer left)"));
            };
            if format!("{kind:?}") == want {
                return self.fire_next();
            }
            for o in self.fire_next()? {
                if let Output::SendFrame { conn, frame, .. } = o {
                    let _ = self.input(Input::WriteCompleted { conn, frame });
                }
            }
        }
        Err(format!("{want} did not come up within 16 timers"))
    }

    /// Drives a fresh session into `phase` with status `from`.
    fn reach(&mut self, phase: &str, from: &str) -> Result<(), String> {
        match (phase, from) {
            ("Idle", "Idle") => {}
            ("Opening", "Connecting") => self.connect()?,
            ("Handshaking", "Connecting") => {
                self.connect()?;
                self.open_transport();
            }
            ("Open", "Open") => {
                self.connect()?;
                self.open_transport();
                self.ack_if_needed();
            }
            ("Backoff", "Connecting") => {
                self.connect()?;
                self.tick();
                let conn = self.conn();
                let failure = TransportFailure::Refused;
                let _ = self.input(Input::TransportFailed { conn, failure });
            }
            ("Backoff", "Reconnecting") => {
                self.reach("Open", "Open")?;
                self.tick();
                let _ = self.input(Input::TransportClosed {
                    conn: self.conn(),
                    code: Some(CloseCode::SERVICE_RESTART),
                    reason: String::new(),
                });
            }
            ("Opening", "Reconnecting") => {
                self.reach("Backoff", "Reconnecting")?;
                let _ = self.fire("Backoff")?;
            }
            ("Handshaking", "Reconnecting") => {
                self.reach("Opening", "Reconnecting")?;
                self.open_transport();
            }
            ("Ended", "Closed") => {
                self.reach("Open", "Open")?;
                self.tick();
                self.s.close(CloseCode::NORMAL, "bye", self.now);
                let _ = self.drain();
            }
            ("Ended", "Failed") => {
                self.connect()?;
                self.tick();
                let conn = self.conn();
                let failure = TransportFailure::Http {
                    status: 401,
                    retry_after: None,
                };
                let _ = self.input(Input::TransportFailed { conn, failure });
            }
            _ => return Err(format!("no setup for phase {phase} with status {from}")),
        }
        let status = format!("{:?}", self.s.status());
        if status != from {
            return Err(format!("setup for {phase} reached {status}, not {from}"));
        }
        let actual = self.phase();
        if actual != phase {
            return Err(format!("setup for {phase} reached phase {actual}"));
        }
        Ok(())
    }

    /// The link phase, as far as the public surface shows it (reliable right after a
    /// setup, where no other timer competes with the phase's own).
    fn phase(&self) -> &'static str {
        let s = self.s.status();
        let timer = self.s.timeout_reason().map(|k| format!("{k:?}"));
        if s.is_terminal() {
            "Ended"
        } else if s == Status::Idle {
            "Idle"
        } else if s == Status::Open {
            "Open"
        } else if self.s.current_conn().is_none() {
            "Backoff"
        } else if timer.as_deref() == Some("HandshakeTimeout") {
            "Handshaking"
        } else {
            "Opening"
        }
    }

    fn connect(&mut self) -> Result<(), String> {
        self.s
            .connect(self.now)
            .map_err(|e| format!("connect: {e}"))?;
        let _ = self.drain();
        Ok(())
    }

    fn open_transport(&mut self) {
        self.tick();
        let conn = self.conn();
        let _ = self.input(Input::TransportOpened { conn });
    }

    fn ack_if_needed(&mut self) {
        if self.s.status() != Status::Open {
            self.tick();
            let conn = self.conn();
            let frame = InFrame::Text(Bytes::from_static(b"ack"));
            let _ = self.input(Input::FrameReceived { conn, frame });
        }
    }

    /// Leaves one write pending when the session is open (for the write and send-deadline
    /// rows); otherwise the newest write, if any, is the one reported.
    fn pending_write(&mut self) -> Result<FrameId, String> {
        if self.s.status() == Status::Open {
            let msg = DataFrame::Text("hi".into());
            self.s
                .send(msg, self.now)
                .map_err(|e| format!("send: {e}"))?;
            let _ = self.drain();
        }
        Ok(self.last_frame.unwrap_or(FrameId::from_raw(0)))
    }

    /// Applies the row's input; returns the command's result and the outputs.
    fn apply(&mut self, input: &str) -> Result<(String, Vec<Output<P>>), String> {
        let (name, old) = match input.strip_suffix("@old") {
            Some(name) => (name, true),
            None => (input, false),
        };
        let conn = if old {
            self.old_conn.ok_or("no older generation exists")?
        } else {
            self.conn()
        };
        let none = "—".to_owned();
        let closed = |code: u16| Input::TransportClosed {
            conn,
            code: Some(CloseCode(code)),
            reason: String::new(),
        };
        let frame = |text: &'static str| Input::FrameReceived {
            conn,
            frame: InFrame::Text(Bytes::from_static(text.as_bytes())),
        };
        let input = match name {
            "connect" => {
                let r = match self.s.connect(self.now) {
                    Ok(()) => "Ok".to_owned(),
                    Err(e) => format!("Err({e:?})"),
                };
                return Ok((r, self.drain()));
            }
            "close" => {
                self.s.close(CloseCode::NORMAL, "bye", self.now);
                return Ok((none, self.drain()));
            }
            "terminate" => {
                self.s.terminate(self.now);
                return Ok((none, self.drain()));
            }
            "jump(1h)" => {
                self.now += Duration::from_secs(3600);
                self.s.handle_timeout(self.now);
                return Ok((none, self.drain()));
            }
            _ if name.starts_with("timer(") => {
                let kind = match name {
                    "timer(connect)" => "ConnectTimeout",
                    "timer(handshake)" => "HandshakeTimeout",
                    "timer(backoff)" => "Backoff",
                    "timer(ping)" => "Ping",
                    "timer(stale)" => "Liveness",
                    "timer(send)" => {
                        self.pending_write()?;
                        "SendDeadline"
                    }
                    "timer(close)" => "CloseTimeout",
                    other => return Err(format!("unknown timer {other}")),
                };
                return Ok((none, self.fire(kind)?));
            }
            "TransportOpened" => Input::TransportOpened { conn },
            "TransportFailed(refused)" => Input::TransportFailed {
                conn,
                failure: TransportFailure::Refused,
            },
            "TransportFailed(http 401)" => Input::TransportFailed {
                conn,
                failure: TransportFailure::Http {
                    status: 401,
                    retry_after: None,
                },
            },
            "FrameReceived(text)" => frame("hi"),
            "FrameReceived(ack)" => frame("ack"),
            "FrameReceived(reject)" => frame("reject"),
            "TransportClosed(1000)" => closed(1000),
            "TransportClosed(1012)" => closed(1012),
            "TransportClosed(1008)" => closed(1008),
            "ProtocolError(utf8)" => Input::ProtocolError {
                conn,
                violation: tether_core::Violation::InvalidUtf8,
            },
            "WriteCompleted" => Input::WriteCompleted {
                conn,
                frame: self.pending_write()?,
            },
            "WriteFailed" => Input::WriteFailed {
                conn,
                frame: self.pending_write()?,
            },
            other => return Err(format!("unknown input {other}")),
        };
        Ok((none, self.input(input)))
    }
}

/// `OpenTransport`, `StatusChanged`, … or `Event::Opened`, …: the variant names.
fn kind<P: Protocol>(o: &Output<P>) -> String {
    fn variant(debug: String) -> String {
        debug
            .split(|c: char| !c.is_alphanumeric() && c != '_')
            .next()
            .unwrap_or_default()
            .to_owned()
    }
    match o {
        Output::Event(e) => format!("Event::{}", variant(format!("{e:?}"))),
        other => variant(format!("{other:?}")),
    }
}

fn check<P>(row: &Row, protocol: P, config: Config, t0: Instant) -> Result<(), String>
where
    P: Protocol<Outbound = DataFrame>,
{
    let mut h = Harness::new(protocol, config, t0);
    h.reach(&row.phase, &row.from)?;
    let (returns, outputs) = h.apply(&row.input)?;
    let kinds: Vec<String> = outputs.iter().map(kind).collect();
    let status = h.s.status();
    let next =
        h.s.timeout_reason()
            .map_or("—".to_owned(), |k| format!("{k:?}"));
    let mut problems = Vec::new();
    if format!("{status:?}") != row.to {
        problems.push(format!("to: table {}, session {status:?}", row.to));
    }
    if kinds != row.outputs {
        problems.push(format!(
            "outputs: table [{}], session [{}]",
            row.outputs.join(", "),
            kinds.join(", ")
        ));
    }
    if returns != row.returns {
        problems.push(format!("returns: table {}, session {returns}", row.returns));
    }
    if next != row.next_timer {
        problems.push(format!(
            "next timer: table {}, session {next}",
            row.next_timer
        ));
    }
    // Status changes chain from the row's status, follow the legal transitions and end at
    // the status the session reports; a session that just ended says so last.
    let mut current = status_named(&row.from)?;
    for o in &outputs {
        if let Output::StatusChanged { from, to } = o {
            if *from != current || !from.can_become(*to) {
                problems.push(format!(
                    "illegal StatusChanged {from:?} -> {to:?} after {current:?}"
                ));
            }
            current = *to;
        }
    }
    if current != status {
        problems.push(format!(
            "status changes end at {current:?}, session is {status:?}"
        ));
    }
    let just_ended = status.is_terminal() && !status_named(&row.from)?.is_terminal();
    if just_ended && !matches!(outputs.last(), Some(Output::Event(Event::Ended(_)))) {
        problems.push("the session ended but Event::Ended is not the last output".to_owned());
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

fn status_named(name: &str) -> Result<Status, String> {
    Ok(match name {
        "Idle" => Status::Idle,
        "Connecting" => Status::Connecting,
        "Open" => Status::Open,
        "Reconnecting" => Status::Reconnecting,
        "Closed" => Status::Closed,
        "Failed" => Status::Failed,
        other => return Err(format!("unknown status {other}")),
    })
}

fn config(name: &str) -> Result<Config, String> {
    let mut b = Config::builder();
    for part in name.split('+').map(str::trim) {
        b = match part {
            "default" => b,
            "retry_first_connect" => b.retry_first_connect(true),
            other => return Err(format!("unknown config {other}")),
        };
    }
    b.build().map_err(|e| e.to_string())
}

fn read_doc() -> String {
    std::fs::read_to_string(DOC).unwrap_or_else(|e| panic!("{DOC}: {e}"))
}

#[test]
fn every_row_of_the_table_matches_the_session() {
    let doc = read_doc();
    let rows = rows(&doc);
    // The one clock read: an arbitrary epoch; only offsets from it matter.
    #[allow(clippy::disallowed_methods)]
    let t0 = Instant::now();
    let mut failures = Vec::new();
    for row in &rows {
        let result = config(&row.config).and_then(|cfg| match row.protocol.as_str() {
            "raw" => check(row, Raw, cfg, t0),
            "hello" => check(row, Hello, cfg, t0),
            other => Err(format!("unknown protocol {other}")),
        });
        if let Err(e) = result {
            failures.push(format!(
                "docs/state-machine.md:{} ({} / {} / {} / {} / {}): {e}",
                row.line, row.phase, row.from, row.protocol, row.config, row.input
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows disagree with the session:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}

#[test]
fn the_table_covers_every_promised_pair_once() {
    let doc = read_doc();
    let rows = rows(&doc);
    let mut seen: BTreeMap<Key, usize> = BTreeMap::new();
    let mut problems = Vec::new();
    for row in &rows {
        if let Some(first) = seen.insert(row.key(), row.line) {
            problems.push(format!("line {}: duplicate of line {first}", row.line));
        }
    }
    for key in covered() {
        if !seen.contains_key(&key) {
            problems.push(format!("missing row: {key:?}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_transition_table_matches_can_become() {
    let doc = read_doc();
    let all = [
        "Idle",
        "Connecting",
        "Open",
        "Reconnecting",
        "Closed",
        "Failed",
    ];
    let mut listed = BTreeSet::new();
    for (line, text) in table(&doc, &["from", "may become"]) {
        let c = cells(text);
        assert_eq!(c.len(), 2, "{DOC}:{line}: expected 2 cells");
        let from = status_named(&c[0]).unwrap();
        if c[1] != "—" {
            for to in c[1].split(',').map(str::trim) {
                listed.insert((from, status_named(to).unwrap()));
            }
        }
    }
    for from in all {
        for to in all {
            let (from, to) = (status_named(from).unwrap(), status_named(to).unwrap());
            assert_eq!(
                listed.contains(&(from, to)),
                from.can_become(to),
                "{from:?} -> {to:?}: the table and Status::can_become disagree"
            );
        }
    }
}
