//! A scripted session with virtual time: the project's main job until the simulator exists.
//!
//! ```text
//! cargo run -p tether-core --example scripted            # seed 42
//! cargo run -p tether-core --example scripted -- 7       # another seed, other jitter
//! ```
//!
//! The program plays the adapter, the peer and the clock around one [`Session`] of the
//! `Raw` profile, following the run loop of the crate documentation: feed one thing, drain
//! every output, fire the deadlines that fall due before the next scripted input. Time is
//! virtual (one `Instant::now()` read, then offsets), so a run takes milliseconds and the
//! same seed prints the same lines. Each step is one line:
//!
//! ```text
//! +12.345s  <input, command or timer>  ->  <outputs>
//! ```
//!
//! The scenario: connect and open; a message each way; the server restarts (close 1012,
//! a jittered backoff); the first attempt is refused; the next one opens; the peer goes
//! silent (pings, no answer, stale, abort, reconnect); the user closes. The program exits
//! 1 unless the session ends `Closed` with no timer armed.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tether_core::profiles::Raw;
use tether_core::{
    CloseCode, Config, ConnId, DataFrame, DisconnectReason, Event, InFrame, Input, OutFrame,
    Output, Retry, Session, Status, TransportFailure,
};

/// Plays the adapter and the clock around one session.
struct Script {
    s: Session<Raw>,
    t0: Instant,
    now: Instant,
}

impl Script {
    fn at(&self, offset: Duration) -> Instant {
        self.t0 + offset
    }

    /// Fires every deadline due before `until` (each is one step), then moves the clock
    /// to `until`.
    fn run_until(&mut self, until: Instant) {
        while let Some(deadline) = self.s.poll_timeout().filter(|d| *d <= until) {
            self.timer(deadline);
        }
        self.now = self.now.max(until);
    }

    /// Fires the next deadline; returns its outputs after printing them.
    fn next_timer(&mut self) -> Vec<Output<Raw>> {
        let deadline = self
            .s
            .poll_timeout()
            .expect("the scenario only waits when a timer is armed");
        self.timer(deadline)
    }

    fn timer(&mut self, deadline: Instant) -> Vec<Output<Raw>> {
        let reason = self.s.timeout_reason();
        self.now = deadline;
        self.s.handle_timeout(deadline);
        let label = match reason {
            Some(kind) => format!("timer {kind:?}"),
            None => "timer".to_owned(),
        };
        self.step(&label)
    }

    fn input(&mut self, after: Duration, label: &str, input: Input) -> Vec<Output<Raw>> {
        self.run_until(self.now + after);
        self.s.handle_input(input, self.now);
        self.step(label)
    }

    /// Drains the outputs and prints the step.
    fn step(&mut self, label: &str) -> Vec<Output<Raw>> {
        let mut outputs = Vec::new();
        while let Some(o) = self.s.poll_output() {
            outputs.push(o);
        }
        let shown: Vec<String> = outputs.iter().map(describe).collect();
        let shown = if shown.is_empty() {
            "(nothing)".to_owned()
        } else {
            shown.join("; ")
        };
        let elapsed = self.now.duration_since(self.t0).as_secs_f64();
        println!(
            "{:>10}  {label:<38}  ->  {shown}",
            format!("+{elapsed:.3}s")
        );
        outputs
    }

    /// Writes complete at once: the adapter reports each `SendFrame` written 1 ms later.
    fn complete_writes(&mut self, outputs: &[Output<Raw>]) {
        for o in outputs {
            if let Output::SendFrame { conn, frame, .. } = o {
                let label = format!("WriteCompleted {conn} {frame}");
                let input = Input::WriteCompleted {
                    conn: *conn,
                    frame: *frame,
                };
                self.input(Duration::from_millis(1), &label, input);
            }
        }
    }

    /// The generation of the transport the session asked to open in `outputs`.
    fn opened_conn(outputs: &[Output<Raw>]) -> ConnId {
        outputs
            .iter()
            .find_map(|o| match o {
                Output::OpenTransport { conn, .. } => Some(*conn),
                _ => None,
            })
            .expect("the step asked for a transport")
    }
}

fn describe(o: &Output<Raw>) -> String {
    match o {
        Output::OpenTransport { conn, attempt } => format!("open {conn} (attempt {attempt})"),
        Output::SendFrame {
            conn,
            frame,
            payload,
        } => match payload {
            OutFrame::Text(t) => format!("send {frame} on {conn}: {:?}", t.as_str()),
            OutFrame::Binary(b) => format!("send {frame} on {conn}: {} bytes", b.len()),
            OutFrame::Ping(_) => format!("send {frame} on {conn}: ping"),
        },
        Output::CloseTransport { conn, code, reason } => {
            format!("close {conn} ({code} {reason:?})")
        }
        Output::AbortTransport { conn } => format!("abort {conn}"),
        Output::StatusChanged { from, to } => format!("status {from} -> {to}"),
        Output::Event(e) => event(e),
        other => format!("{other:?}"),
    }
}

fn retry(r: Option<&Retry>) -> String {
    match r {
        Some(r) => {
            let mut s = format!("retry in {:.3}s", r.wait.as_secs_f64());
            if let Some(floor) = r.floor {
                let _ = write!(s, ", floor {}s", floor.as_secs());
            }
            s
        }
        None => "no retry".to_owned(),
    }
}

fn event(e: &Event<Raw>) -> String {
    match e {
        Event::Opened {
            conn,
            attempt,
            first,
        } => format!("Opened {conn} (attempt {attempt}, first: {first})"),
        Event::Message(DataFrame::Text(t)) => format!("Message {:?}", t.as_str()),
        Event::AttemptFailed {
            conn,
            attempt,
            error,
            retry: r,
        } => format!(
            "AttemptFailed {conn} (attempt {attempt}: {error}; {})",
            retry(r.as_ref())
        ),
        Event::Disconnected {
            conn,
            reason,
            retry: r,
        } => {
            let why = match reason {
                DisconnectReason::Closed {
                    code: Some(code),
                    reason,
                } => format!("closed {code} {reason:?}"),
                DisconnectReason::Closed { code: None, .. } => "dropped".to_owned(),
                DisconnectReason::Stale => "stale".to_owned(),
                other => format!("{other:?}"),
            };
            format!("Disconnected {conn} ({why}; {})", retry(r.as_ref()))
        }
        Event::Ended(reason) => format!("Ended({reason:?})"),
        other => format!("{other:?}"),
    }
}

fn main() -> ExitCode {
    let seed = match std::env::args().nth(1).map(|a| a.parse::<u64>()) {
        None => 42,
        Some(Ok(seed)) => seed,
        Some(Err(e)) => {
            eprintln!("usage: scripted [SEED]  ({e})");
            return ExitCode::from(2);
        }
    };
    let ms = Duration::from_millis;
    let session = Session::new(Config::default(), Raw, seed).expect("the defaults are valid");
    // The driver's one clock read: an arbitrary epoch; only offsets from it matter.
    #[allow(clippy::disallowed_methods)]
    let t0 = Instant::now();
    let mut sc = Script {
        s: session,
        t0,
        now: t0,
    };
    println!("seed {seed}; Raw profile, default config; virtual time from t0");

    // Connect and open.
    sc.s.connect(sc.now).expect("a new session connects");
    let out = sc.step("connect");
    let conn = Script::opened_conn(&out);
    sc.input(
        ms(120),
        &format!("TransportOpened {conn}"),
        Input::TransportOpened { conn },
    );

    // A message each way.
    sc.run_until(sc.at(ms(200)));
    let hello = DataFrame::Text("hello".into());
    sc.s.send(hello, sc.now).expect("open sessions send");
    let out = sc.step("send \"hello\"");
    sc.complete_writes(&out);
    let welcome = InFrame::Text(Bytes::from_static(b"welcome"));
    let input = Input::FrameReceived {
        conn,
        frame: welcome,
    };
    sc.input(ms(150), &format!("FrameReceived {conn} \"welcome\""), input);

    // The server restarts: 1012 reconnects after a jittered backoff of at least 10 s.
    sc.run_until(sc.at(Duration::from_secs(12)));
    let input = Input::TransportClosed {
        conn,
        code: Some(CloseCode::SERVICE_RESTART),
        reason: "service restart".into(),
    };
    sc.input(ms(0), &format!("TransportClosed {conn} 1012"), input);
    let out = sc.next_timer();

    // The first attempt is refused; the next one opens.
    let conn = Script::opened_conn(&out);
    let input = Input::TransportFailed {
        conn,
        failure: TransportFailure::Refused,
    };
    sc.input(ms(30), &format!("TransportFailed {conn} refused"), input);
    let out = sc.next_timer();
    let conn = Script::opened_conn(&out);
    sc.input(
        ms(80),
        &format!("TransportOpened {conn}"),
        Input::TransportOpened { conn },
    );

    // The peer goes silent: pings go out (and are written), nothing comes back, the
    // connection is declared stale and aborted, and the session reconnects.
    while sc.s.status() == Status::Open {
        let out = sc.next_timer();
        sc.complete_writes(&out);
    }
    let out = sc.next_timer();
    let conn = Script::opened_conn(&out);
    sc.input(
        ms(60),
        &format!("TransportOpened {conn}"),
        Input::TransportOpened { conn },
    );

    // The user closes; the peer confirms.
    sc.run_until(sc.now + Duration::from_secs(2));
    sc.s.close(CloseCode::NORMAL, "bye", sc.now);
    sc.step("close(1000, \"bye\")");
    let input = Input::TransportClosed {
        conn,
        code: Some(CloseCode::NORMAL),
        reason: "bye".into(),
    };
    sc.input(ms(40), &format!("TransportClosed {conn} 1000"), input);

    let status = sc.s.status();
    let timer = sc.s.poll_timeout();
    let stats = sc.s.stats();
    println!(
        "final status {status}; next timer {:?}; {} attempts, {} opens, {} disconnects",
        sc.s.timeout_reason(),
        stats.attempts,
        stats.opens,
        stats.disconnects
    );
    if status == Status::Closed && timer.is_none() && sc.s.is_closed() {
        ExitCode::SUCCESS
    } else {
        eprintln!("expected the session closed with no timer armed");
        ExitCode::FAILURE
    }
}
