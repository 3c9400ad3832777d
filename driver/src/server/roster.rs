//! A set of guarded connections with O(1) insert and remove and a lazily rebuilt
//! snapshot for broadcasts.

use std::collections::HashMap;
use std::sync::Arc;

use tether_core::ConnId;

use super::guard::Guarded;

/// The members in a dense vector (removal swaps the last one into the gap) with an index
/// by id, and a shared snapshot built at most once per change, on the first broadcast
/// that needs it. Joining n members with no broadcast in between copies nothing: the
/// O(n) copy is paid by the broadcast, which is O(n) anyway.
#[derive(Default)]
pub(crate) struct Roster {
    members: Vec<Guarded>,
    index: HashMap<ConnId, usize>,
    /// `None` once the set has changed since the last snapshot.
    snapshot: Option<Arc<[Guarded]>>,
}

impl Roster {
    /// Adds `member`; `false` (and nothing changes) if it is in already.
    pub(crate) fn insert(&mut self, member: Guarded) -> bool {
        let id = member.id();
        if self.index.contains_key(&id) {
            return false;
        }
        self.index.insert(id, self.members.len());
        self.members.push(member);
        self.snapshot = None;
        true
    }

    /// Takes `id` out; the member if it was in.
    pub(crate) fn remove(&mut self, id: ConnId) -> Option<Guarded> {
        let pos = self.index.remove(&id)?;
        let member = self.members.swap_remove(pos);
        if let Some(moved) = self.members.get(pos) {
            self.index.insert(moved.id(), pos);
        }
        self.snapshot = None;
        Some(member)
    }

    pub(crate) fn contains(&self, id: ConnId) -> bool {
        self.index.contains_key(&id)
    }

    pub(crate) fn len(&self) -> usize {
        self.members.len()
    }

    pub(crate) fn ids(&self) -> Vec<ConnId> {
        self.members.iter().map(Guarded::id).collect()
    }

    /// The members as a shared slice, rebuilt only if the set changed since the last
    /// call; `built` is told when it was.
    pub(crate) fn snapshot(&mut self, built: impl FnOnce()) -> Arc<[Guarded]> {
        if let Some(s) = &self.snapshot {
            return s.clone();
        }
        built();
        let s: Arc<[Guarded]> = self.members.iter().cloned().collect();
        self.snapshot = Some(s.clone());
        s
    }
}
