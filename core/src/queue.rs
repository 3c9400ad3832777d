//! The bounded offline queue: what `send` and `request` do while the session is not open.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::frame::OutFrame;
use crate::ids::{MessageId, RequestId};

/// What `send` and `request` do while the session is not open.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OfflinePolicy {
    /// Refuse at once with `NotOpen`.
    Reject,
    /// Queue, bounded, and flush in order right after the next handshake.
    Queue(QueueConfig),
}

/// Bounds of the offline queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueConfig {
    /// At most this many queued frames. Default 256.
    pub max_messages: usize,
    /// At most this many queued payload bytes. Default 1 MiB.
    pub max_bytes: usize,
    /// What a full queue does with a new frame. Default [`Overflow::RejectNew`].
    pub overflow: Overflow,
    /// Queued messages and requests older than this are dropped instead of sent
    /// ([`Event::MessageDropped`](crate::Event::MessageDropped) with `Expired`; a request
    /// fails with [`RequestFailure::Dropped`](crate::RequestFailure::Dropped), or earlier
    /// by its own timeout). A message can carry its own
    /// ([`Session::send_with_ttl`](crate::Session::send_with_ttl)). Default 60 s.
    pub ttl: Option<Duration>,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            max_messages: 256,
            max_bytes: 1 << 20,
            overflow: Overflow::RejectNew,
            ttl: Some(Duration::from_secs(60)),
        }
    }
}

/// What a full offline queue does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Overflow {
    /// Refuse the new frame with `QueueFull`.
    RejectNew,
    /// Drop the oldest queued frames to make room (each reported as dropped).
    DropOldest,
}

/// What a queued frame belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Queued {
    Message(MessageId),
    Request(RequestId),
}

#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub(crate) owner: Queued,
    pub(crate) frame: OutFrame,
    pub(crate) expires: Option<Instant>,
}

/// Outcome of offering a frame to the queue.
#[derive(Debug)]
pub(crate) enum Admit {
    Queued { evicted: Vec<Queued> },
    Full,
    TooLarge,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct OfflineQueue {
    entries: VecDeque<Entry>,
    bytes: usize,
}

impl OfflineQueue {
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    pub(crate) fn push(&mut self, cfg: &QueueConfig, entry: Entry) -> Admit {
        let size = entry.frame.len();
        if size > cfg.max_bytes {
            return Admit::TooLarge;
        }
        let fits = |q: &Self| {
            q.entries.len() < cfg.max_messages && q.bytes.saturating_add(size) <= cfg.max_bytes
        };
        let mut evicted = Vec::new();
        while !fits(self) {
            match cfg.overflow {
                Overflow::RejectNew => return Admit::Full,
                Overflow::DropOldest => match self.pop() {
                    Some(old) => evicted.push(old.owner),
                    None => return Admit::Full,
                },
            }
        }
        self.bytes += size;
        self.entries.push_back(entry);
        Admit::Queued { evicted }
    }

    pub(crate) fn pop(&mut self) -> Option<Entry> {
        let e = self.entries.pop_front()?;
        self.bytes -= e.frame.len();
        Some(e)
    }

    /// Removes the entry of a request (resolved while still queued).
    pub(crate) fn remove_request(&mut self, id: RequestId) {
        if let Some(pos) = self
            .entries
            .iter()
            .position(|e| e.owner == Queued::Request(id))
            && let Some(e) = self.entries.remove(pos)
        {
            self.bytes -= e.frame.len();
        }
    }

    /// The earliest message expiry.
    pub(crate) fn next_expiry(&self) -> Option<Instant> {
        if self.entries.is_empty() {
            return None;
        }
        self.entries.iter().filter_map(|e| e.expires).min()
    }

    /// Removes and returns every entry expired at `now`.
    pub(crate) fn take_expired(&mut self, now: Instant) -> Vec<Queued> {
        let mut out = Vec::new();
        let mut bytes = self.bytes;
        self.entries.retain(|e| {
            let keep = e.expires.is_none_or(|t| t > now);
            if !keep {
                bytes -= e.frame.len();
                out.push(e.owner);
            }
            keep
        });
        self.bytes = bytes;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u64, text: &'static str) -> Entry {
        Entry {
            owner: Queued::Message(MessageId(n)),
            frame: OutFrame::Text(text.into()),
            expires: None,
        }
    }

    #[test]
    fn reject_new_when_full() {
        let cfg = QueueConfig {
            max_messages: 2,
            ..QueueConfig::default()
        };
        let mut q = OfflineQueue::default();
        assert!(matches!(q.push(&cfg, entry(1, "a")), Admit::Queued { .. }));
        assert!(matches!(q.push(&cfg, entry(2, "b")), Admit::Queued { .. }));
        assert!(matches!(q.push(&cfg, entry(3, "c")), Admit::Full));
        assert_eq!(q.len(), 2);
    }

    #[test]
    fn drop_oldest_evicts_in_order_and_respects_bytes() {
        let cfg = QueueConfig {
            max_messages: 10,
            max_bytes: 6,
            overflow: Overflow::DropOldest,
            ttl: None,
        };
        let mut q = OfflineQueue::default();
        let _ = q.push(&cfg, entry(1, "aaa"));
        let _ = q.push(&cfg, entry(2, "bbb"));
        match q.push(&cfg, entry(3, "cc")) {
            Admit::Queued { evicted } => assert_eq!(evicted, vec![Queued::Message(MessageId(1))]),
            other => panic!("{other:?}"),
        }
        assert_eq!(q.bytes(), 5);
        assert!(matches!(q.push(&cfg, entry(4, "toolong")), Admit::TooLarge));
    }
}
