//! The writer thread of a file recorder: takes the records the session's task sent
//! through the bounded channel, renders them and writes them, so neither rendering (JSON,
//! SHA-1 fingerprints) nor a slow disk costs the session's task anything but the copy.
//!
//! A plain thread rather than a task: the driver does not know its runtime's blocking
//! pool, and a `Write` blocks. One per recorded session; it ends once the session's end is
//! written and flushed. The user's `Write` runs only here, under `catch_unwind`: its
//! panic, like its error, stops the recording (logged once) and never reaches the session.

use std::collections::VecDeque;
use std::io::{self, BufWriter, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use super::capture::Capture;
use super::channel::{Batch, Receiver, Slot, Take};
use super::progress::Progress;
use super::recordable::Recordable;
use super::render::Renderer;
use crate::SendProtocol;

/// How often (in session time) the writer flushes its buffer at the latest while records
/// keep coming; an idle writer flushes after this long without one.
pub(crate) const FLUSH_EVERY: Duration = Duration::from_millis(200);

/// How long a writer that keeps up waits before taking the next batch. A writer faster
/// than its session would otherwise find a few records each time, wait for more, and be
/// woken by the session's next batch: a system call on the session's task per wake-up
/// of it. Gathering, it is woken at most about once per this period, and a busy session
/// finds it awake, or asleep without waiting to be woken. A writer that fell behind (its
/// batch filled a quarter of the channel) takes the next one at once.
const GATHER: Duration = Duration::from_millis(1);

pub(crate) type Sink = BufWriter<Box<dyn Write + Send>>;

/// Starts the writer of one session: writes `header` (flushed at once), then every record
/// from `rx` until the session's end.
///
/// # Errors
///
/// The thread could not be started (the recording is then off).
pub(crate) fn spawn<P: Recordable + SendProtocol>(
    sink: Sink,
    renderer: Renderer,
    header: Vec<u8>,
    rx: Receiver<Capture<P>>,
    progress: Progress,
) -> io::Result<()> {
    let writer = Writer {
        sink: Some(sink),
        renderer,
        flushed_at: Duration::ZERO,
        dirty: false,
        progress,
    };
    std::thread::Builder::new()
        .name("tether-recorder".to_owned())
        .spawn(move || writer.run(&header, &rx))
        .map(drop)
}

struct Writer {
    /// `None` once the recording stopped.
    sink: Option<Sink>,
    renderer: Renderer,
    /// The session time of the last flush.
    flushed_at: Duration,
    /// Lines written since the last flush.
    dirty: bool,
    progress: Progress,
}

impl Writer {
    fn run<P: Recordable>(mut self, header: &[u8], rx: &Receiver<Capture<P>>) {
        self.guarded(|w| w.write_all(header).and_then(|()| w.flush()));
        let (mut batches, mut spent) = (VecDeque::new(), Vec::new());
        while self.sink.is_some() {
            let idle = self.dirty.then_some(FLUSH_EVERY);
            let taken = rx.take(&mut batches, &mut spent, idle);
            match taken {
                Take::Records(bytes) => {
                    self.write_batches(&mut batches, &mut spent);
                    if bytes < rx.bound() / 4 && self.sink.is_some() {
                        std::thread::sleep(GATHER);
                    }
                }
                Take::Idle => self.flush(),
                Take::Closed => break,
            }
        }
        self.finish();
    }

    /// Writes `batches`, leaving each emptied one in `spent` for reuse.
    fn write_batches<P: Recordable>(
        &mut self,
        batches: &mut VecDeque<Batch<Capture<P>>>,
        spent: &mut Vec<Batch<Capture<P>>>,
    ) {
        let Writer { sink, renderer, .. } = self;
        let Some(w) = sink.as_mut() else {
            batches.clear();
            return;
        };
        // Rendering runs the protocol's `Recordable` code; writing, the user's `Write`.
        let r = catch_unwind(AssertUnwindSafe(|| -> io::Result<()> {
            while let Some(mut batch) = batches.pop_front() {
                for slot in batch.drain(..) {
                    match slot {
                        Slot::Record(c) => renderer.render(&c, w)?,
                        Slot::Lost(n) => Renderer::lost(n, w)?,
                    }
                }
                spent.push(batch);
            }
            Ok(())
        }));
        batches.clear();
        self.dirty = true;
        self.outcome(r);
        if self.sink.is_some() && self.renderer.last_t() >= self.flushed_at + FLUSH_EVERY {
            self.flush();
        }
    }

    fn flush(&mut self) {
        self.flushed_at = self.renderer.last_t();
        self.dirty = false;
        self.guarded(Write::flush);
    }

    /// Runs `f` on the sink, stopping the recording if it fails or panics.
    fn guarded(&mut self, f: impl FnOnce(&mut Sink) -> io::Result<()>) {
        if let Some(w) = self.sink.as_mut() {
            let r = catch_unwind(AssertUnwindSafe(|| f(w)));
            self.outcome(r);
        }
    }

    fn outcome(&mut self, r: std::thread::Result<io::Result<()>>) {
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "flight recorder stopped: cannot write the trace");
                self.stop();
            }
            Err(_) => {
                tracing::warn!("flight recorder stopped: the trace writer panicked");
                self.stop();
            }
        }
    }

    /// Stops the recording: the buffer is discarded, not flushed into a writer that failed.
    fn stop(&mut self) {
        if let Some(w) = self.sink.take() {
            let (inner, _unwritten) = w.into_parts();
            // Dropping the user's writer runs its code too.
            let _ = catch_unwind(AssertUnwindSafe(move || drop(inner)));
        }
        self.progress.finish(true);
    }

    /// The session ended: everything it sent is written; flush and close the writer.
    fn finish(&mut self) {
        if self.sink.is_some() {
            self.flush();
        }
        if let Some(w) = self.sink.take() {
            // Flushed above; dropping runs the user's code (a file's close).
            let _ = catch_unwind(AssertUnwindSafe(move || drop(w)));
            self.progress.finish(false);
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Only reached with the sink still set if the thread unwinds from a panic outside
        // the guarded calls (a bug here): the recording is over either way.
        if self.sink.is_some() {
            self.progress.finish(true);
        }
    }
}
