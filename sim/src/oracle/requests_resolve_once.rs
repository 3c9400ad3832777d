//! Every request resolves exactly once.

use std::collections::{BTreeMap, BTreeSet};

use tether_core::{ConnId, Event, OutFrame, Output, Protocol, RequestFailure, RequestId};

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
///
/// **At once on a lost connection.** A request is in flight on the connection its frame
/// was written to: the data frame among its `request` command's outputs, or — for a
/// request queued while the session was not open — the connection whose `Opened` flushed
/// the queue. When the session reports that connection lost ([`Event::Disconnected`]),
/// every request still in flight on it must resolve with
/// [`RequestFailure::Disconnected`] among the outputs of that same call (the instant the
/// session learns of the loss): its answer can no longer come. Reported at the
/// `Disconnected`.
///
/// **Or sent again, unchanged.** With `config.request_retries > 0`, a request written
/// directly (not flushed from the queue) may instead stay unresolved, at most
/// `request_retries` times: its frame, byte for byte as first written, must then be
/// written again among the outputs of the next `Opened` (an idempotent request's retry),
/// unless it resolves before that by its timeout or the session's end. Otherwise the loss
/// is reported as above. Whether the request was idempotent is the protocol's to say
/// and is not judged here.
#[must_use]
pub fn requests_resolve_once<P: Protocol>(tl: &Timeline<P>) -> Option<Violation> {
    let mut first = First::new(NAME, tl);
    // Issued and unresolved: id → step of the request.
    let mut open: BTreeMap<RequestId, usize> = BTreeMap::new();
    // Resolved: id → step of its response.
    let mut resolved: BTreeMap<RequestId, usize> = BTreeMap::new();
    // Which connection each unresolved written request is in flight on.
    let mut sent_on: BTreeMap<RequestId, ConnId> = BTreeMap::new();
    // Issued while not open: written by the next flush.
    let mut queued: BTreeSet<RequestId> = BTreeSet::new();
    // The request whose command's outputs are being read, and whether it was written.
    let mut requesting: Option<(RequestId, bool)> = None;
    // A loss whose in-flight requests must resolve within its call: (step, conn, ids).
    let mut loss: Option<(usize, ConnId, Vec<RequestId>)> = None;
    // Requests resolved as `Disconnected`.
    let mut disconnected: BTreeSet<RequestId> = BTreeSet::new();
    // The frame each directly written request was first written as.
    let mut frames: BTreeMap<RequestId, OutFrame> = BTreeMap::new();
    // Retries taken per request, and the requests lost and owed a rewrite.
    let mut retries: BTreeMap<RequestId, u32> = BTreeMap::new();
    let mut retrying: BTreeSet<RequestId> = BTreeSet::new();
    for (i, r) in tl.records.iter().enumerate() {
        if !matches!(r.entry, Entry::Output(_) | Entry::Sizes(_)) {
            if let Some((id, false)) = requesting.take()
                && open.contains_key(&id)
            {
                queued.insert(id);
            }
            if let Some((step, conn, ids)) = loss.take()
                && let Some(id) = ids.iter().find(|id| {
                    if disconnected.contains(id) {
                        return false;
                    }
                    // Sent again on the next connection, if it may be.
                    let taken = retries.entry(**id).or_default();
                    if open.contains_key(id)
                        && *taken < tl.config.request_retries
                        && frames
                            .get(id)
                            .is_some_and(|frame| sent_again(tl, i, **id, frame))
                    {
                        *taken += 1;
                        retrying.insert(**id);
                        return false;
                    }
                    true
                })
            {
                let how = resolved.get(id).map_or_else(
                    || "is still unresolved".to_owned(),
                    |at| format!("resolved otherwise (step {at})"),
                );
                first.offer(step, || {
                    format!(
                        "{id} was in flight on {conn}, lost here, but {how} instead of failing \
                         Disconnected at once"
                    )
                });
            }
        }
        match &r.entry {
            Entry::Output(Output::SendFrame { conn, payload, .. })
                if !matches!(payload, OutFrame::Ping(_)) =>
            {
                if let Some((id, written @ false)) = &mut requesting {
                    *written = true;
                    sent_on.insert(*id, *conn);
                    frames.insert(*id, payload.clone());
                }
            }
            Entry::Output(Output::Event(Event::Opened { conn, .. })) => {
                for id in std::mem::take(&mut retrying) {
                    if open.contains_key(&id) {
                        sent_on.insert(id, *conn);
                    }
                }
                for id in std::mem::take(&mut queued) {
                    if open.contains_key(&id) {
                        sent_on.insert(id, *conn);
                    }
                }
            }
            Entry::Output(Output::Event(Event::Disconnected { conn, .. })) => {
                let ids: Vec<RequestId> = sent_on
                    .iter()
                    .filter(|(id, c)| *c == conn && open.contains_key(id))
                    .map(|(id, _)| *id)
                    .collect();
                sent_on.retain(|_, c| c != conn);
                if !ids.is_empty() {
                    loss = Some((i, *conn, ids));
                }
            }
            Entry::Command(CommandRecord::Request { result: Ok(id), .. }) => {
                requesting = Some((*id, false));
                if let Some(prev) = open.get(id).or_else(|| resolved.get(id)).copied() {
                    first.offer(i, || {
                        format!("{id} issued again (first issued at step {prev})")
                    });
                } else {
                    open.insert(*id, i);
                }
            }
            Entry::Output(Output::Event(Event::Response { id, result })) => {
                if loss.is_some() && matches!(result, Err(RequestFailure::Disconnected)) {
                    disconnected.insert(*id);
                }
                sent_on.remove(id);
                queued.remove(id);
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

/// Whether request `id`, lost with its connection before step `from`, is accounted for as
/// a retry: the next `Opened` call writes `frame` again, unchanged, or before any
/// `Opened` it resolves by its timeout or the session's end (not `Disconnected`, which
/// belongs to a loss). A run that ends first leaves it to the unresolved check.
fn sent_again<P: Protocol>(tl: &Timeline<P>, from: usize, id: RequestId, frame: &OutFrame) -> bool {
    let mut records = tl.records.iter().skip(from);
    while let Some(r) = records.next() {
        match &r.entry {
            Entry::Output(Output::Event(Event::Response { id: rid, result })) if *rid == id => {
                return !matches!(result, Err(RequestFailure::Disconnected));
            }
            Entry::Output(Output::Event(Event::Opened { .. })) => {
                return records
                    .take_while(|r| matches!(r.entry, Entry::Output(_) | Entry::Sizes(_)))
                    .any(|r| {
                        matches!(&r.entry, Entry::Output(Output::SendFrame { payload, .. }) if payload == frame)
                    });
            }
            _ => {}
        }
    }
    true
}
