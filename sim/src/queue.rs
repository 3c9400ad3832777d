//! The simulated network's deliveries in time order: the one queue the value world, the
//! driven world and the server role each keep. Deliveries due at the same instant come
//! out in the order they were scheduled, so a run never depends on how a heap breaks
//! ties.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::time::Duration;

/// Events of type `E`, each due at an instant.
pub(crate) struct Queue<E> {
    heap: BinaryHeap<Reverse<Due<E>>>,
    /// How many events were ever scheduled: each one's place among equals.
    scheduled: u64,
}

/// One event, ordered by its instant, then by when it was scheduled.
struct Due<E> {
    at: Duration,
    seq: u64,
    ev: E,
}

impl<E> PartialEq for Due<E> {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl<E> Eq for Due<E> {}
impl<E> PartialOrd for Due<E> {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl<E> Ord for Due<E> {
    fn cmp(&self, o: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

impl<E> Default for Queue<E> {
    fn default() -> Self {
        Queue {
            heap: BinaryHeap::new(),
            scheduled: 0,
        }
    }
}

impl<E> Queue<E> {
    /// Schedules `ev` at `at`, after everything already scheduled for that instant.
    pub(crate) fn push(&mut self, at: Duration, ev: E) {
        self.scheduled += 1;
        self.heap.push(Reverse(Due {
            at,
            seq: self.scheduled,
            ev,
        }));
    }

    /// When the next event is due.
    pub(crate) fn next_at(&self) -> Option<Duration> {
        self.heap.peek().map(|Reverse(d)| d.at)
    }

    /// The next event, with the instant it was due.
    pub(crate) fn pop(&mut self) -> Option<(Duration, E)> {
        self.heap.pop().map(|Reverse(d)| (d.at, d.ev))
    }

    /// How many events were ever scheduled.
    pub(crate) fn scheduled(&self) -> u64 {
        self.scheduled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_instants_come_out_in_scheduling_order() {
        let ms = Duration::from_millis;
        let mut q = Queue::default();
        q.push(ms(5), 'a');
        q.push(ms(1), 'b');
        q.push(ms(5), 'c');
        q.push(ms(1), 'd');
        assert_eq!(q.next_at(), Some(ms(1)));
        let order: Vec<char> = std::iter::from_fn(|| q.pop().map(|(_, e)| e)).collect();
        assert_eq!(order, ['b', 'd', 'a', 'c']);
        assert_eq!(q.scheduled(), 4);
    }
}
