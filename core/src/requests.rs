//! Requests awaiting their response: each resolved exactly once.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use crate::frame::OutFrame;
use crate::ids::{ConnId, RequestId, StreamKey};

/// One request awaiting its outcome.
#[derive(Clone, Debug)]
pub(crate) struct Pending {
    /// When it times out; `None` for no deadline (one beyond the clock's range).
    pub(crate) deadline: Option<Instant>,
    /// The connection it was written on; `None` while it waits in the offline queue.
    pub(crate) sent_on: Option<ConnId>,
    /// The stream it pre-registered, if any.
    pub(crate) stream: Option<StreamKey>,
    /// An idempotent request's frame, to write again on the next connection if this one
    /// drops, and how many more times it may be.
    pub(crate) resend: Option<(OutFrame, u32)>,
}

/// The table of requests awaiting an outcome. Removal is the only way out, so a request
/// can be resolved only once: whoever removes it emits its outcome.
#[derive(Clone, Debug, Default)]
pub(crate) struct Requests {
    pending: BTreeMap<RequestId, Pending>,
    deadlines: BTreeSet<(Instant, RequestId)>,
}

impl Requests {
    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }

    pub(crate) fn insert(&mut self, id: RequestId, pending: Pending) {
        if let Some(at) = pending.deadline {
            self.deadlines.insert((at, id));
        }
        self.pending.insert(id, pending);
    }

    pub(crate) fn mark_sent(&mut self, id: RequestId, conn: ConnId) {
        if let Some(p) = self.pending.get_mut(&id) {
            p.sent_on = Some(conn);
        }
    }

    pub(crate) fn get(&self, id: RequestId) -> Option<&Pending> {
        self.pending.get(&id)
    }

    /// Takes one retry of request `id`, written on a connection that is gone: returns its
    /// frame and marks it unsent; `None` (nothing changed) if it may not be sent again.
    pub(crate) fn take_retry(&mut self, id: RequestId) -> Option<()> {
        let p = self.pending.get_mut(&id)?;
        let (_, left) = p.resend.as_mut().filter(|(_, left)| *left > 0)?;
        *left -= 1;
        p.sent_on = None;
        Some(())
    }

    /// The frame to write again for request `id`, if it is pending, unsent and
    /// idempotent.
    pub(crate) fn resend_frame(&self, id: RequestId) -> Option<OutFrame> {
        self.pending
            .get(&id)
            .filter(|p| p.sent_on.is_none())
            .and_then(|p| p.resend.as_ref())
            .map(|(frame, _)| frame.clone())
    }

    /// Takes the request out of the table; `None` if it was already resolved.
    pub(crate) fn take(&mut self, id: RequestId) -> Option<Pending> {
        let p = self.pending.remove(&id)?;
        if let Some(at) = p.deadline {
            self.deadlines.remove(&(at, id));
        }
        Some(p)
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|(t, _)| *t)
    }

    /// Every request whose deadline is at or before `now`, earliest first.
    pub(crate) fn expired(&self, now: Instant) -> Vec<RequestId> {
        self.deadlines
            .iter()
            .take_while(|(at, _)| *at <= now)
            .map(|(_, id)| *id)
            .collect()
    }

    /// The ids of requests written on `conn`, in id order.
    pub(crate) fn sent_on(&self, conn: ConnId) -> Vec<RequestId> {
        self.pending
            .iter()
            .filter(|(_, p)| p.sent_on == Some(conn))
            .map(|(id, _)| *id)
            .collect()
    }

    /// Every pending id, in id order.
    pub(crate) fn ids(&self) -> Vec<RequestId> {
        self.pending.keys().copied().collect()
    }
}
