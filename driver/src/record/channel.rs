//! The bounded channel from a session's task to its recorder's writer thread.
//!
//! Bounded in bytes (each record is charged its size and the payloads it keeps alive),
//! and never blocking the task: a record that does not fit is dropped and counted, and the
//! next record that fits is preceded by a [`Slot::Lost`] saying how many were dropped, so
//! the trace says where it has a hole. The last record (the session's end) is accepted
//! past the bound, so a trace always ends with what the session ended in.
//!
//! A mutex and a condition variable rather than a channel crate: the task gathers its
//! records in a batch of its own and hands the whole batch over (one lock per wake-up of
//! the session, and the batch moves in whole: no record is copied under the lock), the
//! writer takes every batch at once and hands the emptied ones back for reuse, and the
//! task wakes the writer only when it sleeps, so a busy session makes no system call per
//! record.

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

/// Records handed over together.
pub(crate) type Batch<T> = Vec<Slot<T>>;

/// The most records a [`Sender`] gathers before handing them over.
const BATCH: usize = 128;

/// Emptied batches kept for reuse.
const SPARES: usize = 4;

struct State<T> {
    batches: VecDeque<Batch<T>>,
    /// Emptied batches, for the task to fill again.
    spare: Vec<Batch<T>>,
    /// Bytes charged for the records in `batches`.
    bytes: usize,
    /// Records dropped since the last one accepted.
    lost: u64,
    /// The writer sleeps and must be woken for the next batch.
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

/// The task's end. Records are gathered here and handed to the channel together, once
/// per wake-up of the session's task ([`flush`](Self::flush)) or every [`BATCH`] records.
pub(crate) struct Sender<T> {
    channel: Arc<Channel<T>>,
    /// Only `Slot::Record`s.
    held: Batch<T>,
    /// Bytes charged for the records held.
    held_bytes: usize,
    /// What a record is charged: asked again only when a batch does not fit whole.
    cost: fn(&T) -> usize,
}

/// The writer's end.
pub(crate) struct Receiver<T>(Arc<Channel<T>>);

/// A channel holding at most `bound` bytes of records (one record at least), each
/// charged `cost` of it.
pub(crate) fn bounded<T>(bound: usize, cost: fn(&T) -> usize) -> (Sender<T>, Receiver<T>) {
    let channel = Arc::new(Channel {
        state: Mutex::new(State {
            batches: VecDeque::new(),
            spare: Vec::new(),
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
        held_bytes: 0,
        cost,
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
        if self.held.capacity() == 0 {
            self.held.reserve_exact(BATCH);
        }
        self.held.push(Slot::Record(record));
        self.held_bytes = self.held_bytes.saturating_add(bytes);
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
        let held_bytes = std::mem::take(&mut self.held_bytes);
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
        if s.bytes.saturating_add(held_bytes) <= self.channel.bound {
            // The usual case: the batch moves in whole, and an emptied one takes its place.
            if s.lost > 0 {
                let dropped = std::mem::take(&mut s.lost);
                s.batches.push_back(vec![Slot::Lost(dropped)]);
            }
            s.bytes += held_bytes;
            let empty = s.spare.pop().unwrap_or_default();
            let batch = std::mem::replace(&mut self.held, empty);
            s.batches.push_back(batch);
        } else {
            // Record by record: those that fit go in, in order, each run of those dropped
            // marked where it was.
            let mut kept = s.spare.pop().unwrap_or_default();
            for slot in self.held.drain(..) {
                let Slot::Record(record) = slot else {
                    continue;
                };
                let bytes = (self.cost)(&record);
                // An empty channel takes any record, however large: a bound below one
                // record would otherwise record nothing.
                let empty = s.batches.is_empty() && kept.is_empty();
                if empty || s.bytes.saturating_add(bytes) <= self.channel.bound {
                    if s.lost > 0 {
                        kept.push(Slot::Lost(std::mem::take(&mut s.lost)));
                    }
                    s.bytes = s.bytes.saturating_add(bytes);
                    kept.push(Slot::Record(record));
                } else {
                    s.lost += 1;
                    lost += 1;
                }
            }
            if !kept.is_empty() {
                s.batches.push_back(kept);
            }
        }
        // A writer that sleeps is woken once, after the lock is released; a busy one finds
        // the batch when it next looks, so a busy session makes no system call here.
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
            let mut last = Vec::with_capacity(2);
            if s.lost > 0 {
                last.push(Slot::Lost(std::mem::take(&mut s.lost)));
            }
            last.push(Slot::Record(record));
            s.batches.push_back(last);
        }
        // `Drop` closes and wakes.
        flushed
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        // Nothing is held after `send_last`; a sender dropped otherwise (a session loop
        // that never ended its recording) hands over what it holds still.
        let _ = self.flush();
        let mut s = self.channel.lock();
        s.closed = true;
        if s.lost > 0 {
            let lost = std::mem::take(&mut s.lost);
            s.batches.push_back(vec![Slot::Lost(lost)]);
        }
        drop(s);
        self.channel.wake.notify_one();
    }
}

/// What [`Receiver::take`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Take {
    /// Batches (moved out), charged this many bytes: how far behind the writer was.
    Records(usize),
    /// Nothing arrived for the idle time given.
    Idle,
    /// The task sent its last record and everything was taken.
    Closed,
}

impl<T> Receiver<T> {
    /// Gives the emptied batches in `spent` back for reuse, then moves every queued batch
    /// into `batches` (which must be empty), waiting for one if there is none; with
    /// `idle`, waits at most that long.
    pub(crate) fn take(
        &self,
        batches: &mut VecDeque<Batch<T>>,
        spent: &mut Vec<Batch<T>>,
        idle: Option<Duration>,
    ) -> Take {
        debug_assert!(batches.is_empty());
        let mut s = self.0.lock();
        while s.spare.len() < SPARES {
            match spent.pop() {
                Some(mut b) => {
                    b.clear();
                    s.spare.push(b);
                }
                None => break,
            }
        }
        loop {
            if !s.batches.is_empty() {
                std::mem::swap(&mut s.batches, batches);
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
                    if timeout.timed_out() && s.batches.is_empty() && !s.closed {
                        s.writer_waiting = false;
                        return Take::Idle;
                    }
                }
            }
            s.writer_waiting = false;
        }
    }

    /// The channel's bound, in bytes.
    pub(crate) fn bound(&self) -> usize {
        self.0.bound
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        // The writer is gone (done, failed or panicked): the task stops sending, and what
        // is queued is freed now rather than when the session ends.
        let (batches, spare) = {
            let mut s = self.0.lock();
            s.stopped = true;
            s.bytes = 0;
            (std::mem::take(&mut s.batches), std::mem::take(&mut s.spare))
        };
        drop((batches, spare));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(_: &u32) -> usize {
        1
    }

    fn ten(_: &u32) -> usize {
        10
    }

    fn drain(rx: &Receiver<u32>) -> Vec<String> {
        let (mut batches, mut spent) = (VecDeque::new(), Vec::new());
        let mut got = Vec::new();
        while let Take::Records(_) = rx.take(&mut batches, &mut spent, Some(Duration::ZERO)) {
            for mut b in batches.drain(..) {
                got.extend(b.drain(..).map(|s| match s {
                    Slot::Record(r) => r.to_string(),
                    Slot::Lost(n) => format!("lost {n}"),
                }));
                spent.push(b);
            }
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
        let (mut tx, rx) = bounded(30, ten);
        for i in 1..=5 {
            assert_eq!(tx.send(i, 10), Flushed::default(), "held until flushed");
        }
        assert_eq!(tx.flush(), lost(2));
        assert_eq!(drain(&rx), ["1", "2", "3"]);
        // Room again: the next record is preceded by the count of those dropped.
        let _ = tx.send(6, 10);
        assert_eq!(tx.flush(), lost(0));
        assert_eq!(drain(&rx), ["lost 2", "6"]);
    }

    #[test]
    fn a_batch_that_fits_counts_against_the_bound() {
        let (mut tx, rx) = bounded(30, ten);
        let _ = tx.send(1, 10);
        let _ = tx.send(2, 10);
        assert_eq!(tx.flush(), lost(0), "20 of 30 bytes");
        let _ = tx.send(3, 10);
        let _ = tx.send(4, 10);
        assert_eq!(tx.flush(), lost(1), "10 bytes left for 20");
        assert_eq!(drain(&rx), ["1", "2", "3"]);
    }

    #[test]
    fn a_sender_dropped_without_its_last_record_still_says_what_it_lost() {
        let (mut tx, rx) = bounded(10, ten);
        let _ = tx.send(1, 10);
        let _ = tx.send(2, 10);
        drop(tx);
        assert_eq!(drain(&rx), ["1", "lost 1"]);
    }

    #[test]
    fn a_record_dropped_within_a_batch_is_marked_there() {
        let (mut tx, rx) = bounded(25, |r: &u32| if *r == 2 { 20 } else { 10 });
        for (i, bytes) in [(1, 10), (2, 20), (3, 10)] {
            let _ = tx.send(i, bytes);
        }
        assert_eq!(tx.flush(), lost(1));
        assert_eq!(drain(&rx), ["1", "lost 1", "3"]);
    }

    #[test]
    fn records_are_handed_over_a_batch_at_a_time() {
        let (mut tx, rx) = bounded(usize::MAX, one);
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
        let (mut tx, rx) = bounded(10, ten);
        let _ = tx.send(1, 10);
        let _ = tx.send(2, 10);
        assert_eq!(tx.send_last(3), lost(1));
        assert_eq!(drain(&rx), ["1", "lost 1", "3"]);
        let (mut batches, mut spent) = (VecDeque::new(), Vec::new());
        assert_eq!(rx.take(&mut batches, &mut spent, None), Take::Closed);
    }

    #[test]
    fn an_empty_channel_takes_a_record_larger_than_the_bound() {
        let (mut tx, rx) = bounded(10, |r: &u32| if *r == 1 { 1000 } else { 1 });
        let _ = tx.send(1, 1000);
        let _ = tx.send(2, 1);
        assert_eq!(tx.flush(), lost(1));
        assert_eq!(drain(&rx), ["1"]);
    }

    #[test]
    fn a_gone_writer_stops_the_sender() {
        let (mut tx, rx) = bounded(10, one);
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
    fn a_sleeping_writer_is_woken_and_sees_the_close() {
        let (mut tx, rx) = bounded::<u32>(100, one);
        let (done_tx, done) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let (mut batches, mut spent) = (VecDeque::new(), Vec::new());
            let mut got = 0;
            while let Take::Records(_) = rx.take(&mut batches, &mut spent, None) {
                got += batches.drain(..).map(|b| b.len()).sum::<usize>();
            }
            let _ = done_tx.send(got);
        });
        for i in 0..3 {
            let _ = tx.send(i, 1);
            assert_eq!(tx.flush(), Flushed::default());
        }
        drop(tx);
        // Bounded: a writer never told of the close would wait for good.
        let got = done.recv_timeout(Duration::from_secs(10));
        assert_eq!(got, Ok(3), "the writer took three records and ended");
    }
}
