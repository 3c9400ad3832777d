//! Every request resolves exactly once.

use std::collections::BTreeMap;

use tether_core::{Event, Output, Protocol, RequestId};

use super::{First, Violation, finished};
use crate::timeline::{CommandRecord, Entry, Timeline};

pub(super) const NAME: &str = "requests_resolve_once";

/// Every id a `request` returned (`CommandRecord::Request { result: Ok(id) }`) gets exactly
/// one [`Event::Response`] by the end of the run; no response names an id that was never
/// issued; no id is issued twice.
///
/// Reports the response that is one too many or unknown, or — for an id that never
/// resolved — the request that issued it (checked only if the run reached its `Final`
/// record).
#[must_use]
pub fn requests_resolve_once<P: Protocol>(tl: &Timeline<P>) -> Option<Violation> {
    let mut first = First::new(NAME, tl);
    // Issued and unresolved: id → step of the request.
    let mut open: BTreeMap<RequestId, usize> = BTreeMap::new();
    // Resolved: id → step of its response.
    let mut resolved: BTreeMap<RequestId, usize> = BTreeMap::new();
    for (i, r) in tl.records.iter().enumerate() {
        match &r.entry {
            Entry::Command(CommandRecord::Request { result: Ok(id), .. }) => {
                if let Some(prev) = open.get(id).or_else(|| resolved.get(id)).copied() {
                    first.offer(i, || {
                        format!("{id} issued again (first issued at step {prev})")
                    });
                } else {
                    open.insert(*id, i);
                }
            }
            Entry::Output(Output::Event(Event::Response { id, .. })) => {
                if open.remove(id).is_some() {
                    resolved.insert(*id, i);
                } else if let Some(prev) = resolved.get(id).copied() {
                    first.offer(i, || {
                        format!("second response for {id} (first at step {prev})")
                    });
                } else {
                    first.offer(i, || format!("response for {id}, which was never issued"));
                }
            }
            _ => {}
        }
    }
    if let Some(end) = finished(tl)
        && let Some((id, step)) = open.iter().min_by_key(|(_, s)| **s)
    {
        first.offer(*step, || {
            format!("{id} issued here never resolved (the run ended at step {end})")
        });
    }
    first.into_inner()
}
