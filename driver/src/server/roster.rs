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

    pub(crate) fn get(&self, id: ConnId) -> Option<&Guarded> {
        self.members.get(*self.index.get(&id)?)
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

/// The hub's members and its topics: each topic a roster of its own, and for each member
/// the topics it is in (so a leave takes it out of each in O(its topics)). A topic with
/// no member left is forgotten.
#[derive(Default)]
pub(crate) struct Members {
    pub(crate) all: Roster,
    topics: HashMap<Arc<str>, Roster>,
    of: HashMap<ConnId, Vec<Arc<str>>>,
}

impl Members {
    /// Puts member `id` (already in `all`) in `topic`; `Ok(false)` if it was in already,
    /// `Err(())` if it is in `max` topics.
    pub(crate) fn join_topic(&mut self, id: ConnId, topic: &str, max: usize) -> Result<bool, ()> {
        let Some(member) = self.all.get(id) else {
            return Ok(false);
        };
        let member = member.clone();
        let mine = self.of.entry(id).or_default();
        if mine.iter().any(|t| &**t == topic) {
            return Ok(false);
        }
        if mine.len() >= max {
            return Err(());
        }
        let name: Arc<str> = match self.topics.get_key_value(topic) {
            Some((name, _)) => name.clone(),
            None => Arc::from(topic),
        };
        mine.push(name.clone());
        self.topics.entry(name).or_default().insert(member);
        Ok(true)
    }

    /// Takes member `id` out of `topic`; whether it was in.
    pub(crate) fn leave_topic(&mut self, id: ConnId, topic: &str) -> bool {
        let Some(mine) = self.of.get_mut(&id) else {
            return false;
        };
        let Some(i) = mine.iter().position(|t| &**t == topic) else {
            return false;
        };
        mine.swap_remove(i);
        if mine.is_empty() {
            self.of.remove(&id);
        }
        self.out_of(id, topic);
        true
    }

    fn out_of(&mut self, id: ConnId, topic: &str) {
        if let Some(roster) = self.topics.get_mut(topic) {
            roster.remove(id);
            if roster.len() == 0 {
                self.topics.remove(topic);
            }
        }
    }

    /// Takes `id` out of the hub and every topic it is in; the member if it was in.
    pub(crate) fn remove(&mut self, id: ConnId) -> Option<Guarded> {
        let member = self.all.remove(id)?;
        for topic in self.of.remove(&id).unwrap_or_default() {
            self.out_of(id, &topic);
        }
        Some(member)
    }

    pub(crate) fn topic(&mut self, topic: &str) -> Option<&mut Roster> {
        self.topics.get_mut(topic)
    }

    pub(crate) fn topics_of(&self, id: ConnId) -> Vec<String> {
        self.of
            .get(&id)
            .map(|ts| ts.iter().map(|t| t.to_string()).collect())
            .unwrap_or_default()
    }

    pub(crate) fn topic_count(&self) -> usize {
        self.topics.len()
    }
}
