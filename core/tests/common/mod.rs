//! Test harness: a tiny text protocol and a session driver with virtual time.
#![allow(dead_code, unreachable_pub)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use tether_core::{
    Acked, CloseCode, Config, ConnId, DataFrame, Decoded, EncodeError, EncodedRequest, Event,
    InFrame, Input, Opening, OutFrame, Output, Phase, Protocol, Rejection, RequestMeta, Session,
    Status, StreamFrame, StreamKey, StreamState, TextMode, TransportFailure, Violation,
};

/// A line protocol for tests. Inbound text:
/// `ack [hb=MS]`, `challenge`, `reject fatal`, `reject retry=MS`, `res ID ok|err BODY`,
/// `ev KEY SEQ|- STATE [TEXT]` (accumulated text), `tick`, `bad`, anything else = message.
#[derive(Clone, Debug, Default)]
pub struct Lines {
    /// Wait for the server's `challenge` instead of sending `hello`.
    pub server_first: bool,
    /// No handshake at all.
    pub no_handshake: bool,
    /// Write `resub KEY SEQ` for each resumable stream after a reconnect.
    pub resubscribe: bool,
}

/// A request: method name and an optional stream key it starts.
#[derive(Clone, Debug)]
pub struct Req(pub &'static str, pub Option<&'static str>);

impl Protocol for Lines {
    type Inbound = String;
    type Outbound = String;
    type Request = Req;
    type Response = String;
    type RemoteError = String;

    fn open(&mut self, _conn: ConnId) -> Result<Opening, EncodeError> {
        Ok(if self.no_handshake {
            Opening::Ready
        } else if self.server_first {
            Opening::AwaitServer
        } else {
            Opening::Hello(OutFrame::text("hello"))
        })
    }

    /// `hello` alone, or `hello resume [token=T] KEY=SEQ…` (`-` for no event yet).
    fn open_resuming(
        &mut self,
        conn: ConnId,
        resume: &tether_core::Resume,
    ) -> Result<Opening, EncodeError> {
        let opening = self.open(conn)?;
        if resume.is_empty() || !matches!(opening, Opening::Hello(_)) {
            return Ok(opening);
        }
        let mut hello = "hello resume".to_owned();
        if let Some(t) = resume.token() {
            hello.push_str(&format!(" token={t}"));
        }
        for (key, seq) in resume.streams() {
            let seq = seq.map_or("-".to_owned(), |s| s.to_string());
            hello.push_str(&format!(" {}={seq}", key));
        }
        Ok(Opening::Hello(OutFrame::text(hello)))
    }

    fn resubscribe(
        &mut self,
        key: &StreamKey,
        last_seq: Option<u64>,
    ) -> Result<Option<OutFrame>, EncodeError> {
        Ok(self.resubscribe.then(|| {
            let seq = last_seq.map_or("-".to_owned(), |s| s.to_string());
            OutFrame::text(format!("resub {} {seq}", key))
        }))
    }

    fn encode(&mut self, message: String) -> Result<OutFrame, EncodeError> {
        if message == "unencodable" {
            return Err(EncodeError("nope".into()));
        }
        Ok(OutFrame::text(message))
    }

    fn encode_request(&mut self, meta: RequestMeta, r: Req) -> Result<EncodedRequest, EncodeError> {
        Ok(EncodedRequest {
            frame: OutFrame::text(format!("req {} {}", meta.id.get(), r.0)),
            stream: r.1.map(StreamKey::from),
            // `idem…` methods may be sent again after a reconnect.
            idempotent: r.0.starts_with("idem"),
            // Streams keyed `sub…` survive a reconnect.
            resumable: r.1.is_some_and(|k| k.starts_with("sub")),
        })
    }

    fn decode(&mut self, frame: DataFrame, _phase: Phase) -> Decoded<Self> {
        let DataFrame::Text(t) = frame else {
            return Decoded::Violation(Violation::UnexpectedBinary);
        };
        let s = t.as_str();
        let w: Vec<&str> = s.splitn(5, ' ').collect();
        match w.as_slice() {
            ["ack"] => Decoded::Ack(Acked::default()),
            ["ack", rest @ ..] => {
                // `ack [hb=MS] [token=T] [recovered|unrecoverable]`, in any order.
                let mut acked = Acked::default();
                for word in rest.iter().flat_map(|w| w.split(' ')) {
                    if let Some(ms) = word.strip_prefix("hb=") {
                        acked.heartbeat = ms.parse().ok().map(Duration::from_millis);
                    } else if let Some(t) = word.strip_prefix("token=") {
                        acked.resume_token = Some(t.to_owned());
                    } else if word == "recovered" {
                        acked.recovery = tether_core::Recovery::Recovered;
                    } else if word == "unrecoverable" {
                        acked.recovery = tether_core::Recovery::Unrecoverable;
                    }
                }
                Decoded::Ack(acked)
            }
            ["challenge"] => Decoded::Challenge(OutFrame::text("answer")),
            ["reject", "fatal"] => Decoded::Rejected(Rejection {
                message: "no".into(),
                fatal: true,
                retry_after: None,
            }),
            ["reject", r] => Decoded::Rejected(Rejection {
                message: "later".into(),
                fatal: false,
                retry_after: r
                    .strip_prefix("retry=")
                    .and_then(|m| m.parse().ok())
                    .map(Duration::from_millis),
            }),
            ["res", id, kind, rest @ ..] => {
                let body = rest.join(" ");
                let id = id
                    .parse::<u64>()
                    .map(tether_core::RequestId::from_raw)
                    .map_err(|_| (*id).to_owned());
                let result = if *kind == "ok" { Ok(body) } else { Err(body) };
                Decoded::Response { id, result }
            }
            ["ev", key, seq, state, rest @ ..] => {
                let state = match *state {
                    "status" => StreamState::Status,
                    "delta" => StreamState::Delta,
                    "final" => StreamState::Final,
                    "error" => StreamState::Error {
                        message: "boom".into(),
                    },
                    "aborted" => StreamState::Aborted,
                    _ => {
                        return Decoded::Violation(Violation::Malformed {
                            detail: "state".into(),
                        });
                    }
                };
                Decoded::Stream(StreamFrame {
                    key: (*key).into(),
                    seq: seq.parse().ok(),
                    state,
                    text: rest.first().map(|t| (*t).to_owned()),
                    text_mode: TextMode::Accumulated,
                    payload: s.to_owned(),
                })
            }
            ["tick"] => Decoded::Heartbeat,
            ["bad"] => Decoded::Violation(Violation::Malformed {
                detail: "bad".into(),
            }),
            _ => Decoded::Message(s.to_owned()),
        }
    }
}

/// A session with a virtual clock and a log of every output.
pub struct H<P: Protocol = Lines> {
    pub s: Session<P>,
    pub t0: Instant,
    pub now: Instant,
    pub log: Vec<Output<P>>,
}

pub fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

pub fn text(s: &str) -> InFrame {
    InFrame::Text(Bytes::copy_from_slice(s.as_bytes()))
}

impl H<Lines> {
    pub fn new(config: Config) -> Self {
        H::with(config, Lines::default(), 42)
    }

    pub fn default_config() -> Self {
        H::new(Config::default())
    }
}

impl<P: Protocol> H<P> {
    pub fn with(config: Config, protocol: P, seed: u64) -> Self {
        // The one clock read of a test: an arbitrary epoch, only offsets matter.
        #[allow(clippy::disallowed_methods)]
        let t0 = Instant::now();
        H {
            s: Session::new(config, protocol, seed).expect("valid config"),
            t0,
            now: t0,
            log: Vec::new(),
        }
    }

    /// Seconds since t0.
    pub fn elapsed(&self) -> Duration {
        self.now - self.t0
    }

    /// Drains outputs into the log and returns them.
    pub fn drain(&mut self) -> Vec<Output<P>> {
        let mut out = Vec::new();
        while let Some(o) = self.s.poll_output() {
            out.push(o);
        }
        self.log.extend(out.iter().cloned());
        out
    }

    pub fn advance(&mut self, d: Duration) -> Vec<Output<P>> {
        self.now += d;
        self.s.handle_timeout(self.now);
        self.drain()
    }

    /// Lets `d` pass as a punctual driver would: waking at every deadline on the way
    /// (a single leap past a deadline reads as the host sleeping).
    pub fn run_for(&mut self, d: Duration) -> Vec<Output<P>> {
        let end = self.now + d;
        let mut out = Vec::new();
        while let Some(at) = self.s.poll_timeout().filter(|t| *t <= end) {
            self.now = at.max(self.now);
            self.s.handle_timeout(self.now);
            out.extend(self.drain());
        }
        self.now = end;
        self.s.handle_timeout(end);
        out.extend(self.drain());
        out
    }

    /// Jumps to the next deadline and fires it.
    pub fn fire_next(&mut self) -> Vec<Output<P>> {
        let at = self.s.poll_timeout().expect("a timer is armed");
        assert!(at >= self.now, "deadline in the past");
        self.now = at;
        self.s.handle_timeout(at);
        self.drain()
    }

    pub fn input(&mut self, input: Input) -> Vec<Output<P>> {
        self.s.handle_input(input, self.now);
        self.drain()
    }

    pub fn conn(&self) -> ConnId {
        self.s.current_conn().expect("a current connection")
    }

    pub fn connect(&mut self) -> ConnId {
        self.s.connect(self.now).expect("connect");
        let out = self.drain();
        open_transport(&out).expect("OpenTransport")
    }

    pub fn opened(&mut self) -> Vec<Output<P>> {
        let conn = self.conn();
        self.input(Input::TransportOpened { conn })
    }

    pub fn frame(&mut self, s: &str) -> Vec<Output<P>> {
        let conn = self.conn();
        self.input(Input::FrameReceived {
            conn,
            frame: text(s),
        })
    }

    pub fn closed(&mut self, code: Option<u16>, reason: &str) -> Vec<Output<P>> {
        let conn = self.conn();
        self.input(Input::TransportClosed {
            conn,
            code: code.map(CloseCode),
            reason: reason.into(),
        })
    }

    pub fn failed(&mut self, failure: TransportFailure) -> Vec<Output<P>> {
        let conn = self.conn();
        self.input(Input::TransportFailed { conn, failure })
    }

    /// Reports every frame written so far on the current connection as completed.
    pub fn complete_writes(&mut self, outs: &[Output<P>]) {
        for o in outs {
            if let Output::SendFrame { conn, frame, .. } = o {
                self.s.handle_input(
                    Input::WriteCompleted {
                        conn: *conn,
                        frame: *frame,
                    },
                    self.now,
                );
            }
        }
        self.drain();
    }

    /// Waits out backoffs until the next OpenTransport; returns it and the wait.
    pub fn until_attempt(&mut self) -> (ConnId, Duration) {
        let start = self.now;
        for _ in 0..100 {
            let out = self.fire_next();
            if let Some(c) = open_transport(&out) {
                return (c, self.now - start);
            }
        }
        panic!("no attempt within 100 timer firings");
    }

    pub fn events(&self) -> Vec<Event<P>> {
        events(&self.log)
    }

    pub fn statuses(&self) -> Vec<Status> {
        self.log
            .iter()
            .filter_map(|o| match o {
                Output::StatusChanged { to, .. } => Some(*to),
                _ => None,
            })
            .collect()
    }
}

impl H<Lines> {
    /// Connects and completes the hello/ack handshake; returns the connection.
    pub fn open(&mut self) -> ConnId {
        let conn = self.connect();
        let out = self.opened();
        self.complete_writes(&out);
        let out = self.frame("ack");
        assert_eq!(self.s.status(), Status::Open, "{out:?}");
        conn
    }
}

pub fn open_transport<P: Protocol>(out: &[Output<P>]) -> Option<ConnId> {
    out.iter().find_map(|o| match o {
        Output::OpenTransport { conn, .. } => Some(*conn),
        _ => None,
    })
}

pub fn events<P: Protocol>(out: &[Output<P>]) -> Vec<Event<P>> {
    out.iter()
        .filter_map(|o| match o {
            Output::Event(e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

pub fn sent_texts<P: Protocol>(out: &[Output<P>]) -> Vec<String> {
    out.iter()
        .filter_map(|o| match o {
            Output::SendFrame {
                payload: OutFrame::Text(t),
                ..
            } => Some(t.as_str().to_owned()),
            _ => None,
        })
        .collect()
}

pub fn has_abort<P: Protocol>(out: &[Output<P>]) -> bool {
    out.iter()
        .any(|o| matches!(o, Output::AbortTransport { .. }))
}

pub fn close_frame<P: Protocol>(out: &[Output<P>]) -> Option<(CloseCode, String)> {
    out.iter().find_map(|o| match o {
        Output::CloseTransport { code, reason, .. } => Some((*code, reason.clone())),
        _ => None,
    })
}

pub fn pings<P: Protocol>(out: &[Output<P>]) -> usize {
    out.iter()
        .filter(|o| {
            matches!(
                o,
                Output::SendFrame {
                    payload: OutFrame::Ping(_),
                    ..
                }
            )
        })
        .count()
}

/// Every attempt failure's retry wait, in order.
pub fn retry_waits<P: Protocol>(out: &[Output<P>]) -> Vec<Duration> {
    events(out)
        .into_iter()
        .filter_map(|e| match e {
            Event::AttemptFailed { retry, .. } | Event::Disconnected { retry, .. } => {
                retry.map(|r| r.wait)
            }
            _ => None,
        })
        .collect()
}
