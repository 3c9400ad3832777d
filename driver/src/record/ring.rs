//! An in-memory trace that keeps the last minutes of a session, bounded in time and bytes.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// A bounded in-memory trace: the header plus the most recent lines, no older than
/// `window` (in session time) and no more than `max_bytes` in all. Clone it to keep a
/// handle; [`dump`](Self::dump) it when something went wrong.
///
/// A dump whose oldest lines were evicted starts with a `gap` line after the header: it
/// reads as a log of the last minutes, but cannot be replayed (a replay needs every call
/// from the session's start). Size the window to cover whole sessions where replay
/// matters, or record to a file.
///
/// ```
/// use std::time::Duration;
/// use tether_driver::record::{Recorder, RingBuffer};
///
/// let ring = RingBuffer::new(Duration::from_secs(10 * 60), 8 << 20);
/// let recorder = Recorder::to_ring(&ring);
/// // … start a session with `Options::new().record(recorder)`; after a failure:
/// let trace: Vec<u8> = ring.dump();
/// # let _ = (recorder, trace);
/// ```
#[derive(Clone, Debug)]
pub struct RingBuffer {
    inner: Arc<Mutex<Ring>>,
}

#[derive(Debug)]
struct Ring {
    window: Duration,
    max_bytes: usize,
    header: Option<Vec<u8>>,
    lines: VecDeque<(Duration, Vec<u8>)>,
    bytes: usize,
    dropped: u64,
}

impl RingBuffer {
    /// A ring keeping lines no older than `window` and at most `max_bytes` of them.
    #[must_use]
    pub fn new(window: Duration, max_bytes: usize) -> Self {
        RingBuffer {
            inner: Arc::new(Mutex::new(Ring {
                window,
                max_bytes,
                header: None,
                lines: VecDeque::new(),
                bytes: 0,
                dropped: 0,
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ring> {
        // Every critical section leaves the ring consistent (a push or pops), so a panic
        // elsewhere while holding the lock cannot corrupt it.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts a new trace: a header line (with its newline); earlier lines are gone.
    pub(crate) fn begin(&self, header: Vec<u8>) {
        let mut r = self.lock();
        r.header = Some(header);
        r.lines.clear();
        r.bytes = 0;
        r.dropped = 0;
    }

    /// Appends a line (with its newline) written at session time `at`, evicting what the
    /// bounds no longer allow.
    pub(crate) fn push(&self, at: Duration, line: Vec<u8>) {
        let mut r = self.lock();
        r.bytes += line.len();
        r.lines.push_back((at, line));
        let window = r.window;
        while let Some((t, l)) = r.lines.front() {
            let too_old = at.saturating_sub(*t) > window;
            if !too_old && r.bytes <= r.max_bytes {
                break;
            }
            let len = l.len();
            r.lines.pop_front();
            r.bytes -= len;
            r.dropped += 1;
        }
    }

    /// The trace as it stands: the header, a `gap` line if lines were evicted, then the
    /// lines kept, oldest first.
    #[must_use]
    pub fn dump(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Writing to a Vec cannot fail.
        let _ = self.write_to(&mut out);
        out
    }

    /// Writes [`dump`](Self::dump)'s bytes to `w`.
    ///
    /// # Errors
    ///
    /// `w`'s error.
    pub fn write_to(&self, mut w: impl Write) -> io::Result<()> {
        let r = self.lock();
        if let Some(h) = &r.header {
            w.write_all(h)?;
        }
        if r.dropped > 0 {
            writeln!(w, "{{\"k\":\"gap\",\"dropped\":{}}}", r.dropped)?;
        }
        for (_, l) in &r.lines {
            w.write_all(l)?;
        }
        Ok(())
    }

    /// How many lines were evicted so far.
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.lock().dropped
    }

    /// How many bytes of lines are kept (the header aside).
    #[must_use]
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_by_time_and_by_bytes() {
        let ring = RingBuffer::new(Duration::from_secs(60), 100);
        ring.begin(b"{\"k\":\"header\"}\n".to_vec());
        for s in 0..10u64 {
            ring.push(
                Duration::from_secs(s * 20),
                format!("{{\"t\":{s}}}\n").into(),
            );
        }
        // 180 s: lines from before 120 s are too old.
        let dump = String::from_utf8(ring.dump()).unwrap();
        assert!(dump.starts_with("{\"k\":\"header\"}\n{\"k\":\"gap\",\"dropped\":6}\n"));
        assert!(dump.ends_with("{\"t\":9}\n"));
        assert_eq!(ring.dropped(), 6);
        for _ in 0..20 {
            ring.push(Duration::from_secs(200), b"0123456789\n".to_vec());
        }
        assert!(ring.bytes() <= 100);
    }
}
