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
//! When on, the session's task only copies what it records (refcounted payloads, ids,
//! the session time) and, for a file, hands the copies to a writer thread through a
//! channel bounded in bytes ([`CHANNEL_BYTES`]); rendering (JSON, SHA-1 fingerprints) and
//! writing happen there, so a slow disk never holds the session back. A full channel
//! drops records and the trace says so (a `lost` line). A ring buffer is rendered on the
//! task, so that a dump is exact up to the moment it is taken.
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

mod capture;
mod channel;
pub mod format;
mod progress;
mod recordable;
mod redact;
mod render;
mod ring;
#[cfg(test)]
mod tests;
mod writer;

use std::io::{BufWriter, Write};
use std::ops::Deref;
use std::time::{Duration, Instant};

use serde_json::Value;
use tether_core::{
    CloseCode, ConnectError, Input, MessageId, Output, Protocol, RequestError, RequestId,
    SendError, Session,
};

use crate::SendProtocol;
use capture::{Call, Capture, Final, Msg, ret};
use channel::{Flushed, Sender};
use render::Renderer;

pub use format::{FORMAT_VERSION, OLDEST_FORMAT_VERSION, ReadError};
pub use progress::Progress;
pub use recordable::{GATEWAY_ENVELOPE, HELLO_ACK_ENVELOPE, Recordable};
pub use redact::{Direction, JsonWire, Redaction, Redactor, Wire, fingerprint};
pub use ring::RingBuffer;

/// The default bound of a file recorder's channel, in bytes: what the session's task may
/// have handed its writer thread and the writer not yet written (each record is charged
/// its size in memory, 100 to 160 bytes by protocol, plus the payload bytes it keeps
/// alive). 8 MiB holds some 9,000 echoed frames of 100 bytes (five records each): seconds
/// of a session exchanging a thousand frames a second, 50 ms of the busiest one the
/// benchmark runs. Set per recorder with [`Recorder::channel_bytes`].
pub const CHANNEL_BYTES: usize = 8 << 20;

/// Where a [`Recorder`] writes.
enum Sink {
    Writer(writer::Sink),
    Ring(RingBuffer),
}

/// Where and how a session is recorded: a writer (a file, a socket, anything
/// `std::io::Write + Send`) or a [`RingBuffer`], a [`Redaction`] mode (default
/// [`Redaction::Hash`]) and whether secrets may be written (default never).
///
/// A writer is written by a thread of the recorder's own, fed through a channel bounded
/// in bytes ([`channel_bytes`](Self::channel_bytes)): a slow or stalled writer never
/// stalls the session. When the channel is full, records are dropped, counted
/// ([`Progress::lost`]) and marked in the trace by a `lost` line, which the replayer
/// refuses to replay past. A writer's error or panic stops the recording (logged once);
/// the session goes on.
pub struct Recorder {
    sink: Sink,
    mode: Redaction,
    secrets: bool,
    channel_bytes: usize,
    progress: Progress,
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
            .field("channel_bytes", &self.channel_bytes)
            .finish_non_exhaustive()
    }
}

impl Recorder {
    fn new(sink: Sink) -> Self {
        Recorder {
            sink,
            mode: Redaction::default(),
            secrets: false,
            channel_bytes: CHANNEL_BYTES,
            progress: Progress::new(),
        }
    }

    /// Records to `writer`, on a thread of its own (buffered; flushed at least every
    /// 200 ms of session time while records come, 200 ms after the last one, and when the
    /// session loop ends). The thread ends once the trace is complete
    /// ([`Progress::wait`]).
    #[must_use]
    pub fn to_writer(writer: impl Write + Send + 'static) -> Self {
        Recorder::new(Sink::Writer(BufWriter::with_capacity(
            64 << 10,
            Box::new(writer),
        )))
    }

    /// Records into `ring` (which it shares; keep a clone to dump it). Lines are rendered
    /// on the session's task, so a dump holds every record up to the moment it is taken.
    #[must_use]
    pub fn to_ring(ring: &RingBuffer) -> Self {
        Recorder::new(Sink::Ring(ring.clone()))
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

    /// The bound of a writer's channel, in bytes (default [`CHANNEL_BYTES`]): how far the
    /// writer may fall behind the session before records are dropped. A record larger
    /// than the bound is taken when the channel is empty. `usize::MAX` never drops, and
    /// then holds whatever a stalled writer has not written: for tests and simulations,
    /// whose runs are short and must record every call. A ring buffer has no channel.
    #[must_use]
    pub fn channel_bytes(mut self, bytes: usize) -> Self {
        self.channel_bytes = bytes;
        self
    }

    /// A handle on this recording: records lost, and whether the trace is complete.
    #[must_use]
    pub fn progress(&self) -> Progress {
        self.progress.clone()
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
        P: Recordable + SendProtocol,
    {
        let progress = recorder.progress();
        self.hook = Some(Box::new(Rec::<P> {
            route: Route::Unstarted(recorder),
            redactor: Redactor::new(Redaction::default(), Wire::Opaque),
            progress,
            warned: false,
        }));
        self
    }
}

/// What the session loop tells a recording. Object-safe, so that the loop only holds an
/// `Option<Box<dyn Hook<P>>>` and a session without recording pays one check per call.
pub(crate) trait Hook<P: Protocol>: Send {
    /// The session starts: the header.
    fn begin(&mut self, session: &Session<P>, seed: u64);
    /// A message about to be sent, taken before the session consumes it.
    fn outbound(&self, message: &P::Outbound) -> Msg<P::Outbound>;
    /// A request about to be made, taken before the session consumes it.
    fn request(&self, request: &P::Request) -> Msg<P::Request>;
    /// A call or an output.
    fn record(&mut self, capture: Capture<P>);
    /// The loop is about to wait: hand over what is held.
    fn flush(&mut self);
    /// The loop ended at session time `t`: the last record.
    fn end(&mut self, t: Duration, session: &Session<P>);
}

/// Where a recording's records go.
enum Route<P: Protocol> {
    /// Before the session starts.
    Unstarted(Recorder),
    /// Rendered on the task into a ring buffer.
    Ring {
        ring: RingBuffer,
        renderer: Renderer,
    },
    /// Sent to the writer thread.
    Writer(Sender<Capture<P>>),
    /// Over, or stopped.
    Off,
}

struct Rec<P: Protocol> {
    route: Route<P>,
    /// For the messages a protocol does not copy, rendered on the task.
    redactor: Redactor,
    progress: Progress,
    /// Whether dropping records was logged.
    warned: bool,
}

impl<P: Recordable + SendProtocol> Hook<P> for Rec<P> {
    fn begin(&mut self, session: &Session<P>, seed: u64) {
        let Route::Unstarted(recorder) = std::mem::replace(&mut self.route, Route::Off) else {
            return;
        };
        let redactor =
            Redactor::new(recorder.mode, session.protocol().wire()).with_secrets(recorder.secrets);
        self.redactor = redactor;
        let header = match render::header(session, seed, &redactor) {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(error = %e, "flight recorder off: configuration not recordable");
                self.progress.finish(true);
                return;
            }
        };
        self.route = match recorder.sink {
            Sink::Ring(ring) => {
                ring.begin(header);
                Route::Ring {
                    ring,
                    renderer: Renderer::new(redactor),
                }
            }
            Sink::Writer(w) => {
                let (tx, rx) = channel::bounded(recorder.channel_bytes, Capture::bytes);
                let started = writer::spawn(
                    w,
                    Renderer::new(redactor),
                    header,
                    rx,
                    self.progress.clone(),
                );
                match started {
                    Ok(()) => Route::Writer(tx),
                    Err(e) => {
                        tracing::warn!(error = %e, "flight recorder off: cannot start its writer thread");
                        self.progress.finish(true);
                        Route::Off
                    }
                }
            }
        };
    }

    fn outbound(&self, message: &P::Outbound) -> Msg<P::Outbound> {
        render::outbound::<P>(message, &self.redactor)
    }

    fn request(&self, request: &P::Request) -> Msg<P::Request> {
        render::request::<P>(request, &self.redactor)
    }

    fn record(&mut self, capture: Capture<P>) {
        match &mut self.route {
            Route::Writer(tx) => {
                let bytes = capture.bytes();
                let flushed = tx.send(capture, bytes);
                self.flushed(flushed);
            }
            Route::Ring { ring, renderer } => {
                let mut line = Vec::new();
                // Into a `Vec`: cannot fail.
                let _ = renderer.render(&capture, &mut line);
                ring.push(renderer.last_t(), line);
            }
            Route::Unstarted(_) | Route::Off => {}
        }
    }

    fn flush(&mut self) {
        if let Route::Writer(tx) = &mut self.route {
            let flushed = tx.flush();
            self.flushed(flushed);
        }
    }

    fn end(&mut self, t: Duration, session: &Session<P>) {
        let last = Capture::End(Final::of(t, session));
        match std::mem::replace(&mut self.route, Route::Off) {
            // The writer writes it after everything accepted, flushes, and says it is done.
            Route::Writer(tx) => {
                let flushed = tx.send_last(last);
                self.flushed(flushed);
            }
            Route::Ring { ring, mut renderer } => {
                let mut line = Vec::new();
                // Into a `Vec`: cannot fail.
                let _ = renderer.render(&last, &mut line);
                ring.push(renderer.last_t(), line);
                self.progress.finish(false);
            }
            Route::Unstarted(_) | Route::Off => {}
        }
    }
}

impl<P: Protocol> Rec<P> {
    /// Counts what the channel dropped; stops sending once the writer is gone.
    fn flushed(&mut self, f: Flushed) {
        if f.lost > 0 {
            self.progress.lose(f.lost);
            if !std::mem::replace(&mut self.warned, true) {
                tracing::warn!("flight recorder behind: dropping records (the trace says where)");
            }
        }
        if f.stopped {
            // The writer failed and said so.
            self.route = Route::Off;
        }
    }
}

fn at(start: Instant, now: Instant) -> Duration {
    now.saturating_duration_since(start)
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

    fn call(&mut self, now: Instant, call: Call<P>) {
        if let Some(h) = &mut self.hook {
            h.record(Capture::Call(at(self.start, now), call));
        }
    }

    pub(crate) fn connect(&mut self, now: Instant) -> Result<(), ConnectError> {
        let r = self.session.connect(now);
        if self.hook.is_some() {
            self.call(now, Call::Connect(ret(&r, |_| Value::Null)));
        }
        r
    }

    pub(crate) fn handle_input(&mut self, input: Input, now: Instant) {
        if self.hook.is_some() {
            // A frame's payload is shared, not copied.
            self.call(now, Call::Input(input.clone()));
        }
        self.session.handle_input(input, now);
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        self.call(now, Call::Timeout);
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
        let Some(h) = &self.hook else {
            return send(&mut self.session, message);
        };
        let msg = h.outbound(&message);
        let r = send(&mut self.session, message);
        let ret = ret(&r, |id| id.get().into());
        self.call(now, Call::Send { msg, ttl, ret });
        r
    }

    pub(crate) fn feed(&mut self, message: P::Outbound, now: Instant) {
        if let Some(h) = &self.hook {
            let msg = h.outbound(&message);
            self.call(now, Call::Feed(msg));
        }
        self.session.feed(message, now);
    }

    pub(crate) fn request(
        &mut self,
        request: P::Request,
        timeout: Option<Duration>,
        now: Instant,
    ) -> Result<RequestId, RequestError> {
        let Some(h) = &self.hook else {
            return self.session.request(request, timeout, now);
        };
        let req = h.request(&request);
        let r = self.session.request(request, timeout, now);
        let ret = ret(&r, |id| id.get().into());
        self.call(now, Call::Request { req, timeout, ret });
        r
    }

    pub(crate) fn close(&mut self, code: CloseCode, reason: &'static str, now: Instant) {
        self.call(now, Call::Close { code, reason });
        self.session.close(code, reason, now);
    }

    /// `disconnect`, `resume` or `reconnect` (`kind`), recorded with its result.
    pub(crate) fn on_demand(&mut self, kind: OnDemand, now: Instant) -> Result<(), ConnectError> {
        let r = match kind {
            OnDemand::Disconnect => self.session.disconnect(now),
            OnDemand::Resume => self.session.resume(now),
            OnDemand::Reconnect => self.session.reconnect(now),
        };
        if self.hook.is_some() {
            self.call(now, Call::OnDemand(kind, ret(&r, |_| Value::Null)));
        }
        r
    }

    pub(crate) fn terminate(&mut self, now: Instant) {
        self.call(now, Call::Terminate);
        self.session.terminate(now);
    }

    /// The session's next output, recorded.
    #[must_use]
    pub(crate) fn poll_output(&mut self) -> Option<Output<P>> {
        let out = self.session.poll_output();
        if let (Some(h), Some(o)) = (&mut self.hook, &out) {
            h.record(Capture::output(o));
        }
        out
    }

    /// Hands the records of this wake-up to the recorder's writer: the loop is about to
    /// wait.
    pub(crate) fn flush_records(&mut self) {
        if let Some(h) = &mut self.hook {
            h.flush();
        }
    }

    /// Records the `end` (once): the loop is done with the session. A file recorder's
    /// writer then writes what it still holds, the `end` line last, and flushes.
    pub(crate) fn end(&mut self, now: Instant) {
        if self.ended {
            return;
        }
        self.ended = true;
        let t = at(self.start, now);
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
