//! The flight recorder: every call the session loop makes on its [`Session`] — `connect`,
//! `handle_input`, `handle_timeout`, `send`, `feed`, `request`, `close`, `terminate` —
//! with its time since the session started, and every output, written as JSON lines
//! after a header naming the seed, configuration and profile. Because the session is
//! deterministic, that is a complete record of it: `tether-sim replay-trace` (or
//! `tether_sim::trace::replay`) feeds the calls to a fresh session and checks that it
//! decides exactly alike.
//!
//! Off by default, and nearly free when off (one `Option` check per call). Turn it on
//! per session with [`Options::record`]; `docs/recording.md` is the guide.
//!
//! ```
//! use tether_driver::record::{Options, Recorder, Redaction, RingBuffer};
//! use tether_driver::tether_core::profiles::Raw;
//!
//! // To a file (any `std::io::Write + Send`), payloads fingerprinted:
//! let file = std::fs::File::create(std::env::temp_dir().join("doc.trace.jsonl")).unwrap();
//! let options: Options<Raw> =
//!     Options::new().record(Recorder::to_writer(file).redaction(Redaction::Hash));
//! // Then `Client::start_with(runtime, transport, config, Raw, seed, label, options)`
//! // or `tether_tokio::connect_with(url, config, Raw, options)`.
//!
//! // Or the last 10 minutes in memory, to dump after a failure:
//! let ring = RingBuffer::new(std::time::Duration::from_secs(600), 16 << 20);
//! let options: Options<Raw> = Options::new().record(Recorder::to_ring(&ring));
//! # let _ = (options, ring.dump());
//! ```

pub mod format;
mod recordable;
mod redact;
mod ring;

use std::io::{self, BufWriter, Write};
use std::ops::Deref;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tether_core::{
    CloseCode, ConnectError, Input, MessageId, Output, Protocol, RequestError, RequestId,
    SendError, Session,
};

pub use format::{FORMAT_VERSION, OLDEST_FORMAT_VERSION, ReadError};
pub use recordable::{GATEWAY_ENVELOPE, HELLO_ACK_ENVELOPE, Recordable};
pub use redact::{Direction, JsonWire, Redaction, Redactor, Wire, fingerprint};
pub use ring::RingBuffer;

/// How often (in session time) a file recorder flushes its buffer at the latest.
const FLUSH_EVERY: Duration = Duration::from_millis(200);

/// Where a [`Recorder`] writes.
enum Sink {
    Writer(BufWriter<Box<dyn Write + Send>>),
    Ring(RingBuffer),
}

/// Where and how a session is recorded: a writer (a file, a socket, anything
/// `std::io::Write + Send`) or a [`RingBuffer`], a [`Redaction`] mode (default
/// [`Redaction::Hash`]) and whether secrets may be written (default never).
///
/// A writer's error stops the recording (logged once); the session goes on.
pub struct Recorder {
    sink: Sink,
    mode: Redaction,
    secrets: bool,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sink = match self.sink {
            Sink::Writer(_) => "writer",
            Sink::Ring(_) => "ring",
        };
        f.debug_struct("Recorder")
            .field("sink", &sink)
            .field("mode", &self.mode)
            .field("secrets", &self.secrets)
            .finish()
    }
}

impl Recorder {
    /// Records to `writer` (buffered; flushed at least every 200 ms of session time and
    /// when the session loop ends).
    #[must_use]
    pub fn to_writer(writer: impl Write + Send + 'static) -> Self {
        Recorder {
            sink: Sink::Writer(BufWriter::with_capacity(64 << 10, Box::new(writer))),
            mode: Redaction::default(),
            secrets: false,
        }
    }

    /// Records into `ring` (which it shares; keep a clone to dump it).
    #[must_use]
    pub fn to_ring(ring: &RingBuffer) -> Self {
        Recorder {
            sink: Sink::Ring(ring.clone()),
            mode: Redaction::default(),
            secrets: false,
        }
    }

    /// Sets the redaction mode.
    #[must_use]
    pub fn redaction(mut self, mode: Redaction) -> Self {
        self.mode = mode;
        self
    }

    /// Writes secret frames (the hello, the `connect` request with its token, the
    /// challenge and the acknowledgement) in full. Only in [`Redaction::Keep`] mode, and
    /// only when you mean to: the trace then holds credentials.
    #[must_use]
    pub fn with_secrets(mut self, yes: bool) -> Self {
        self.secrets = yes;
        self
    }
}

/// Options of a session started with [`Client::start_with`](crate::Client::start_with)
/// or an adapter's `connect_with`. `Options::default()` is what `start` uses: no
/// recording, and a [`SUBSCRIBER_BYTES`](crate::SUBSCRIBER_BYTES) budget per `events()`
/// subscriber.
pub struct Options<P: Protocol> {
    pub(crate) hook: Option<Box<dyn Hook<P>>>,
    pub(crate) subscriber_bytes: usize,
}

impl<P: Protocol> Default for Options<P> {
    fn default() -> Self {
        Options {
            hook: None,
            subscriber_bytes: crate::SUBSCRIBER_BYTES,
        }
    }
}

impl<P: Protocol> std::fmt::Debug for Options<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("recording", &self.hook.is_some())
            .field("subscriber_bytes", &self.subscriber_bytes)
            .finish()
    }
}

impl<P: Protocol> Options<P> {
    /// No recording.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The byte budget of each [`Client::events`](crate::Client::events) subscriber: reading
    /// from the socket is held back while a subscriber's unread events stand for this many
    /// bytes of inbound frames (default [`SUBSCRIBER_BYTES`](crate::SUBSCRIBER_BYTES),
    /// 8 MiB). At least one byte; a subscriber always takes at least one frame.
    #[must_use]
    pub fn subscriber_bytes(mut self, bytes: usize) -> Self {
        self.subscriber_bytes = bytes.max(1);
        self
    }

    /// Whether a recorder is set.
    pub fn is_recording(&self) -> bool {
        self.hook.is_some()
    }

    /// Records the session with `recorder`.
    #[must_use]
    pub fn record(mut self, recorder: Recorder) -> Self
    where
        P: Recordable + Send + 'static,
    {
        self.hook = Some(Box::new(Rec::<P> {
            recorder,
            redactor: None,
            failed: false,
            last_t: Duration::ZERO,
            flushed_at: Duration::ZERO,
            _p: std::marker::PhantomData,
        }));
        self
    }
}

/// What the session loop tells a recording. Object-safe, so that the loop only holds an
/// `Option<Box<dyn Hook<P>>>` and a session without recording pays one check per call.
pub(crate) trait Hook<P: Protocol>: Send {
    fn begin(&mut self, session: &Session<P>, seed: u64);
    fn outbound(&self, message: &P::Outbound) -> Value;
    fn request(&self, request: &P::Request) -> Value;
    /// An `in` line at session time `t`.
    fn input(&mut self, t: Duration, input: &Input);
    /// A call line at session time `t`.
    fn call(&mut self, t: Duration, line: Value);
    fn output(&mut self, out: &Output<P>);
    fn end(&mut self, t: Duration, session: &Session<P>);
}

struct Rec<P> {
    recorder: Recorder,
    redactor: Option<Redactor>,
    failed: bool,
    last_t: Duration,
    flushed_at: Duration,
    _p: std::marker::PhantomData<fn() -> P>,
}

impl<P> Rec<P> {
    fn redactor(&self) -> Redactor {
        // `begin` sets it before any other call; a trace without it would be headless.
        self.redactor
            .unwrap_or_else(|| Redactor::new(self.recorder.mode, Wire::Opaque))
    }

    fn write(&mut self, line: &Value, header: bool) {
        if self.failed {
            return;
        }
        if let (Sink::Writer(w), false) = (&mut self.recorder.sink, header) {
            // Straight into the buffer: no intermediate string.
            let r = serde_json::to_writer(&mut *w, line)
                .map_err(io::Error::from)
                .and_then(|()| w.write_all(b"\n"));
            if let Err(e) = r {
                self.fail(&e);
            } else {
                self.maybe_flush();
            }
            return;
        }
        let mut text = line.to_string();
        text.push('\n');
        self.write_text(text, header);
    }

    /// Writes a line already rendered (with its newline).
    fn write_str(&mut self, text: String) {
        self.write_text(text, false);
    }

    fn maybe_flush(&mut self) {
        if let Sink::Writer(w) = &mut self.recorder.sink
            && self.last_t >= self.flushed_at + FLUSH_EVERY
        {
            self.flushed_at = self.last_t;
            if let Err(e) = w.flush() {
                self.fail(&e);
            }
        }
    }

    fn write_text(&mut self, text: String, header: bool) {
        if self.failed {
            return;
        }
        let result = match &mut self.recorder.sink {
            Sink::Writer(w) => {
                let mut r = w.write_all(text.as_bytes());
                if r.is_ok() && (header || self.last_t >= self.flushed_at + FLUSH_EVERY) {
                    self.flushed_at = self.last_t;
                    r = w.flush();
                }
                r
            }
            Sink::Ring(ring) if header => {
                ring.begin(text);
                Ok(())
            }
            Sink::Ring(ring) => {
                ring.push(self.last_t, text);
                Ok(())
            }
        };
        if let Err(e) = result {
            self.fail(&e);
        }
    }

    fn fail(&mut self, e: &io::Error) {
        tracing::warn!(error = %e, "flight recorder stopped: cannot write the trace");
        self.failed = true;
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl<P: Recordable + Send> Hook<P> for Rec<P> {
    fn begin(&mut self, session: &Session<P>, seed: u64) {
        let protocol = session.protocol();
        let redactor =
            Redactor::new(self.recorder.mode, protocol.wire()).with_secrets(self.recorder.secrets);
        self.redactor = Some(redactor);
        let config = match format::config(session.config()) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "flight recorder off: configuration not recordable");
                self.failed = true;
                return;
            }
        };
        let wall_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let header = json!({
            "k": "header",
            "version": FORMAT_VERSION,
            "tether": env!("CARGO_PKG_VERSION"),
            "seed": seed,
            "profile": protocol.profile(),
            "redaction": redactor.mode().name(),
            "secrets": redactor.secrets(),
            "started_unix_ms": wall_ms,
            "config": config,
        });
        self.write(&header, true);
    }

    fn outbound(&self, message: &P::Outbound) -> Value {
        P::record_outbound(message, &self.redactor())
    }

    fn request(&self, request: &P::Request) -> Value {
        P::record_request(request, &self.redactor())
    }

    fn input(&mut self, t: Duration, input: &Input) {
        if self.failed {
            return;
        }
        self.last_t = t;
        // The most frequent line of a busy session, written without building a tree.
        if let Input::WriteCompleted { conn, frame } = input {
            let line = format!(
                "{{\"in\":{{\"written\":{{\"conn\":{},\"frame\":{}}}}},\"k\":\"in\",\"t\":{}}}\n",
                conn.get(),
                frame.get(),
                nanos(t)
            );
            self.write_str(line);
            return;
        }
        let line =
            json!({ "k": "in", "in": format::input(&self.redactor(), input), "t": nanos(t) });
        self.write(&line, false);
    }

    fn call(&mut self, t: Duration, mut line: Value) {
        self.last_t = t;
        if let Value::Object(m) = &mut line {
            m.insert("t".into(), nanos(t).into());
        }
        self.write(&line, false);
    }

    fn output(&mut self, out: &Output<P>) {
        if self.failed {
            return;
        }
        if let Output::Event(tether_core::Event::Message(_)) = out {
            self.write_str("{\"k\":\"out\",\"o\":{\"event\":\"Message\"}}\n".to_owned());
            return;
        }
        let line = json!({ "k": "out", "o": format::output(&self.redactor(), out) });
        self.write(&line, false);
    }

    fn end(&mut self, t: Duration, session: &Session<P>) {
        self.last_t = t;
        let line = json!({
            "k": "end",
            "t": nanos(t),
            "status": format::status_name(session.status()),
            "closed": session.is_closed(),
            "timer": session.poll_timeout().is_some(),
            "sizes": {
                "pending_requests": session.pending_requests(),
                "queued": session.queued(),
                "open_streams": session.open_streams(),
                "remembered": session.remembered_events(),
                "pending_writes": session.pending_writes(),
            },
        });
        self.write(&line, false);
        if let Sink::Writer(w) = &mut self.recorder.sink
            && !self.failed
            && let Err(e) = w.flush()
        {
            self.fail(&e);
        }
    }
}

/// The session as the loop sees it: every mutating call goes through here, so a recording
/// misses none. Reads go straight to the session (`Deref`); there is deliberately no
/// `DerefMut`, so a call that bypassed the recording would not compile.
pub(crate) struct Tap<P: Protocol> {
    session: Session<P>,
    hook: Option<Box<dyn Hook<P>>>,
    start: Instant,
    ended: bool,
}

impl<P: Protocol> Deref for Tap<P> {
    type Target = Session<P>;

    fn deref(&self) -> &Session<P> {
        &self.session
    }
}

impl<P: Protocol> Tap<P> {
    pub(crate) fn new(session: Session<P>, options: Options<P>, seed: u64, start: Instant) -> Self {
        let mut hook = options.hook;
        if let Some(h) = &mut hook {
            h.begin(&session, seed);
        }
        Tap {
            session,
            hook,
            start,
            ended: false,
        }
    }

    fn at(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.start)
    }

    pub(crate) fn connect(&mut self, now: Instant) -> Result<(), ConnectError> {
        let r = self.session.connect(now);
        if let Some(h) = &mut self.hook {
            let t = now.saturating_duration_since(self.start);
            h.call(
                t,
                json!({ "k": "connect", "ret": format::result(&r, |_| Value::Null) }),
            );
        }
        r
    }

    pub(crate) fn handle_input(&mut self, input: Input, now: Instant) {
        if let Some(h) = &mut self.hook {
            h.input(now.saturating_duration_since(self.start), &input);
        }
        self.session.handle_input(input, now);
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if let Some(h) = &mut self.hook {
            h.call(
                now.saturating_duration_since(self.start),
                json!({ "k": "timeout" }),
            );
        }
        self.session.handle_timeout(now);
    }

    /// `send`, or `send_with_ttl` when `ttl` is given (recorded as `"ttl"`).
    pub(crate) fn send(
        &mut self,
        message: P::Outbound,
        ttl: Option<Duration>,
        now: Instant,
    ) -> Result<MessageId, SendError> {
        let send = |s: &mut Session<P>, message| match ttl {
            Some(ttl) => s.send_with_ttl(message, ttl, now),
            None => s.send(message, now),
        };
        let Some(h) = &mut self.hook else {
            return send(&mut self.session, message);
        };
        let msg = h.outbound(&message);
        let r = send(&mut self.session, message);
        let ret = format::result(&r, |id| id.get().into());
        let mut line = json!({ "k": "send", "msg": msg, "ret": ret });
        if let Some(ttl) = ttl {
            line["ttl"] = format::duration(ttl);
        }
        h.call(now.saturating_duration_since(self.start), line);
        r
    }

    pub(crate) fn feed(&mut self, message: P::Outbound, now: Instant) {
        if let Some(h) = &mut self.hook {
            let msg = h.outbound(&message);
            h.call(
                now.saturating_duration_since(self.start),
                json!({ "k": "feed", "msg": msg }),
            );
        }
        self.session.feed(message, now);
    }

    pub(crate) fn request(
        &mut self,
        request: P::Request,
        timeout: Option<Duration>,
        now: Instant,
    ) -> Result<RequestId, RequestError> {
        let Some(h) = &mut self.hook else {
            return self.session.request(request, timeout, now);
        };
        let req = h.request(&request);
        let r = self.session.request(request, timeout, now);
        let ret = format::result(&r, |id| id.get().into());
        h.call(
            now.saturating_duration_since(self.start),
            json!({
                "k": "request",
                "req": req,
                "timeout": timeout.map(format::duration),
                "ret": ret,
            }),
        );
        r
    }

    pub(crate) fn close(&mut self, code: CloseCode, reason: &'static str, now: Instant) {
        if let Some(h) = &mut self.hook {
            h.call(
                now.saturating_duration_since(self.start),
                json!({ "k": "close", "code": code.0, "reason": reason }),
            );
        }
        self.session.close(code, reason, now);
    }

    /// `disconnect`, `resume` or `reconnect` (`kind`), recorded with its result.
    pub(crate) fn on_demand(&mut self, kind: OnDemand, now: Instant) -> Result<(), ConnectError> {
        let r = match kind {
            OnDemand::Disconnect => self.session.disconnect(now),
            OnDemand::Resume => self.session.resume(now),
            OnDemand::Reconnect => self.session.reconnect(now),
        };
        if let Some(h) = &mut self.hook {
            h.call(
                now.saturating_duration_since(self.start),
                json!({ "k": kind.name(), "ret": format::result(&r, |_| Value::Null) }),
            );
        }
        r
    }

    pub(crate) fn terminate(&mut self, now: Instant) {
        if let Some(h) = &mut self.hook {
            h.call(
                now.saturating_duration_since(self.start),
                json!({ "k": "terminate" }),
            );
        }
        self.session.terminate(now);
    }

    /// The session's next output, recorded.
    #[must_use]
    pub(crate) fn poll_output(&mut self) -> Option<Output<P>> {
        let out = self.session.poll_output();
        if let (Some(h), Some(o)) = (&mut self.hook, &out) {
            h.output(o);
        }
        out
    }

    /// Writes the `end` line (once) and flushes: the loop is done with the session.
    pub(crate) fn end(&mut self, now: Instant) {
        if self.ended {
            return;
        }
        self.ended = true;
        let t = self.at(now);
        if let Some(h) = &mut self.hook {
            h.end(t, &self.session);
        }
    }
}

/// The application's connection commands beyond connect and close.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OnDemand {
    Disconnect,
    Resume,
    Reconnect,
}

impl OnDemand {
    /// The name a trace line carries (`"k"`).
    pub(crate) fn name(self) -> &'static str {
        match self {
            OnDemand::Disconnect => "disconnect",
            OnDemand::Resume => "resume",
            OnDemand::Reconnect => "reconnect",
        }
    }
}
