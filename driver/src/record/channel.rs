//! The bounded channel from a session's task to its recorder's writer thread.
//!
//! Bounded in bytes (each record is charged its slot and the payloads it keeps alive), and
//! never blocking the task: a record that does not fit is dropped and counted, and the
//! next record that fits is preceded by a [`Slot::Lost`] saying how many were dropped, so
//! the trace says where it has a hole. The last record (the session's end) is accepted
//! past the bound, so a trace always ends with what the session ended in.
//!
//! A mutex and a condition variable rather than a channel crate: the task hands its
//! records over a batch at a time and the writer takes the whole queue at once (one lock
//! per batch on either side, not per record), and the task wakes the writer only when it
//! sleeps, so a busy session makes no system call per record.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// What the writer finds in the channel.
pub(crate) enum Slot<T> {
    /// A record.
    Record(T),
    /// This many records were dropped here: the channel was full.
    Lost(u64),
}

struct State<T> {
    slots: VecDeque<Slot<T>>,
    /// Bytes charged for the records in `slots`.
    bytes: usize,
    /// Records dropped since the last one accepted.
    lost: u64,
    /// The writer sleeps and must be woken for the next record.
    writer_waiting: bool,
    /// The task sent its last record (or is gone).
    closed: bool,
    /// The writer is gone: nothing more is taken.
    stopped: bool,
}

struct Channel<T> {
    state: Mutex<State<T>>,
    wake: Condvar,
    bound: usize,
}

impl<T> Channel<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // No user code runs under the lock (records are moved in and out, never rendered
        // there), and every critical section leaves the state consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The task's end. Records are held here and handed to the channel together, once per
/// wake-up of the session's task ([`flush`](Self::flush)) or every [`BATCH`] records: one
/// lock per batch, not per record, and no cache line shared with the writer touched in
/// between.
pub(crate) struct Sender<T> {
    channel: Arc<Channel<T>>,
    held: Vec<(T, usize)>,
}

/// The writer's end.
pub(crate) struct Receiver<T>(Arc<Channel<T>>);

/// The most records a [`Sender`] holds before handing them over.
const BATCH: usize = 128;

/// A channel holding at most `bound` bytes of records (one record at least).
pub(crate) fn bounded<T>(bound: usize) -> (Sender<T>, Receiver<T>) {
    let channel = Arc::new(Channel {
        state: Mutex::new(State {
            slots: VecDeque::new(),
            bytes: 0,
            lost: 0,
            writer_waiting: false,
            closed: false,
            stopped: false,
        }),
        wake: Condvar::new(),
        bound,
    });
    let sender = Sender {
        channel: channel.clone(),
        held: Vec::new(),
    };
    (sender, Receiver(channel))
}

/// What became of the records handed over.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Flushed {
    /// Records dropped: the channel was full. Counted; the trace will say so.
    pub(crate) lost: u64,
    /// The writer is gone (it failed and said so): nothing more is taken.
    pub(crate) stopped: bool,
}

impl<T> Sender<T> {
    /// Sends `record`, charged `bytes`: held until the next flush, which drops it if the
    /// channel is full then. Reports a flush made because [`BATCH`] records were held.
    pub(crate) fn send(&mut self, record: T, bytes: usize) -> Flushed {
        self.held.push((record, bytes));
        if self.held.len() >= BATCH {
            self.flush()
        } else {
            Flushed::default()
        }
    }

    /// Hands the held records to the channel: each that fits goes in, the others are
    /// dropped and counted. Never blocks beyond the lock, which the writer holds only to
    /// swap the queue out.
    pub(crate) fn flush(&mut self) -> Flushed {
        if self.held.is_empty() {
            return Flushed::default();
        }
        let mut s = self.channel.lock();
        if s.stopped {
            drop(s);
            self.held.clear();
            return Flushed {
                lost: 0,
                stopped: true,
            };
        }
        let mut lost = 0;
        for (record, bytes) in self.held.drain(..) {
            // An empty channel takes any record, however large: a bound below one record
            // would otherwise record nothing.
            if !s.slots.is_empty() && s.bytes.saturating_add(bytes) > self.channel.bound {
                s.lost += 1;
                lost += 1;
                continue;
            }
            s.bytes = s.bytes.saturating_add(bytes);
            push(&mut s, record);
        }
        // A writer that sleeps is woken once, after the lock is released; a busy one finds
        // the records in its next batch, so a busy session makes no system call here.
        let wake = std::mem::take(&mut s.writer_waiting);
        drop(s);
        if wake {
            self.channel.wake.notify_one();
        }
        Flushed {
            lost,
            stopped: false,
        }
    }

    /// Sends the last record, past the bound, after those held, and closes the channel.
    /// Reports what became of those held.
    pub(crate) fn send_last(mut self, record: T) -> Flushed {
        let flushed = self.flush();
        let mut s = self.channel.lock();
        if !s.stopped {
            push(&mut s, record);
        }
        // `Drop` closes and wakes.
        flushed
    }
}

fn push<T>(s: &mut State<T>, record: T) {
    if s.lost > 0 {
        s.slots.push_back(Slot::Lost(std::mem::take(&mut s.lost)));
    }
    s.slots.push_back(Slot::Record(record));
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        // Unreachable with records held after `send_last`; a sender dropped otherwise
        // (a session loop that never ended its recording) hands them over still.
        let _ = self.flush();
        let mut s = self.channel.lock();
        s.closed = true;
        if s.lost > 0 {
            let lost = std::mem::take(&mut s.lost);
            s.slots.push_back(Slot::Lost(lost));
        }
        drop(s);
        self.channel.wake.notify_one();
    }
}

/// What [`Receiver::take`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Take {
    /// Records (moved into the batch), charged this many bytes: how far behind the
    /// writer was.
    Records(usize),
    /// Nothing arrived for the idle time given.
    Idle,
    /// The task sent its last record and everything was taken.
    Closed,
}

impl<T> Receiver<T> {
    /// Moves every queued record into `batch` (which must be empty), waiting for one if
    /// there is none; with `idle`, waits at most that long.
    pub(crate) fn take(&self, batch: &mut VecDeque<Slot<T>>, idle: Option<Duration>) -> Take {
        debug_assert!(batch.is_empty());
        let mut s = self.0.lock();
        loop {
            if !s.slots.is_empty() {
                std::mem::swap(&mut s.slots, batch);
                return Take::Records(std::mem::take(&mut s.bytes));
            }
            if s.closed {
                return Take::Closed;
            }
            s.writer_waiting = true;
            match idle {
                None => {
                    s = self.0.wake.wait(s).unwrap_or_else(PoisonError::into_inner);
                }
                Some(d) => {
                    let (guard, timeout) = self
                        .0
                        .wake
                        .wait_timeout(s, d)
                        .unwrap_or_else(PoisonError::into_inner);
                    s = guard;
                    if timeout.timed_out() && s.slots.is_empty() && !s.closed {
                        s.writer_waiting = false;
                        return Take::Idle;
                    }
                }
            }
            s.writer_waiting = false;
        }
    }
}

impl<T> Receiver<T> {
    /// The channel's bound, in bytes.
    pub(crate) fn bound(&self) -> usize {
        self.0.bound
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        // The writer is gone (done, failed or panicked): the task stops sending, and what
        // is queued is freed now rather than when the session ends.
        let slots = {
            let mut s = self.0.lock();
            s.stopped = true;
            s.bytes = 0;
            std::mem::take(&mut s.slots)
        };
        drop(slots);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(rx: &Receiver<u32>) -> Vec<String> {
        let mut batch = VecDeque::new();
        let mut got = Vec::new();
        while let Take::Records(_) = rx.take(&mut batch, Some(Duration::ZERO)) {
            got.extend(batch.drain(..).map(|s| match s {
                Slot::Record(r) => r.to_string(),
                Slot::Lost(n) => format!("lost {n}"),
            }));
        }
        got
    }

    fn lost(n: u64) -> Flushed {
        Flushed {
            lost: n,
            stopped: false,
        }
    }

    #[test]
    fn a_full_channel_drops_counts_and_says_where() {
        let (mut tx, rx) = bounded(30);
        for (i, bytes) in [(1, 10), (2, 10), (3, 10), (4, 10), (5, 1)] {
            assert_eq!(tx.send(i, bytes), Flushed::default(), "held until flushed");
        }
        assert_eq!(tx.flush(), lost(2));
        assert_eq!(drain(&rx), ["1", "2", "3"]);
        // Room again: the next record is preceded by the count of those dropped.
        let _ = tx.send(6, 10);
        assert_eq!(tx.flush(), lost(0));
        assert_eq!(drain(&rx), ["lost 2", "6"]);
    }

    #[test]
    fn records_are_handed_over_a_batch_at_a_time() {
        let (mut tx, rx) = bounded(usize::MAX);
        for i in 0..BATCH - 1 {
            assert_eq!(
                tx.send(u32::try_from(i).unwrap_or(0), 1),
                Flushed::default()
            );
        }
        assert!(drain(&rx).is_empty(), "held");
        let _ = tx.send(0, 1);
        assert_eq!(
            drain(&rx).len(),
            BATCH,
            "handed over when the batch is full"
        );
    }

    #[test]
    fn the_last_record_passes_the_bound_after_the_count() {
        let (mut tx, rx) = bounded(10);
        let _ = tx.send(1, 10);
        let _ = tx.send(2, 10);
        assert_eq!(tx.send_last(3), lost(1));
        assert_eq!(drain(&rx), ["1", "lost 1", "3"]);
        let mut batch = VecDeque::new();
        assert_eq!(rx.take(&mut batch, None), Take::Closed);
    }

    #[test]
    fn an_empty_channel_takes_a_record_larger_than_the_bound() {
        let (mut tx, rx) = bounded(10);
        let _ = tx.send(1, 1000);
        let _ = tx.send(2, 1);
        assert_eq!(tx.flush(), lost(1));
        assert_eq!(drain(&rx), ["1"]);
    }

    #[test]
    fn a_gone_writer_stops_the_sender() {
        let (mut tx, rx) = bounded(10);
        drop(rx);
        let _ = tx.send(1, 1);
        assert_eq!(
            tx.flush(),
            Flushed {
                lost: 0,
                stopped: true
            }
        );
    }

    #[test]
    fn a_sleeping_writer_is_woken() {
        let (mut tx, rx) = bounded::<u32>(100);
        let writer = std::thread::spawn(move || {
            let mut batch = VecDeque::new();
            let mut got = 0;
            // Bounded: the sender closes after three records.
            while let Take::Records(_) = rx.take(&mut batch, None) {
                got += batch.drain(..).count();
            }
            got
        });
        for i in 0..3 {
            let _ = tx.send(i, 1);
            assert_eq!(tx.flush(), Flushed::default());
        }
        drop(tx);
        assert_eq!(writer.join().expect("the writer"), 3);
    }
}
