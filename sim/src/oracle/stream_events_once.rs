//! No `(stream, seq)` reaches the application twice; a terminal event exactly once.

use std::collections::{BTreeMap, BTreeSet};

use tether_core::{Event, Output, Protocol, RequestId, StreamEventKind, StreamKey};

use super::{First, Violation, finished};
use crate::timeline::{CommandRecord, Entry, Timeline};

pub(super) const NAME: &str = "stream_events_once";

/// Checks every [`Event::Stream`]:
///
/// - no `(key, seq)` pair is delivered twice within one registration (a registration is
///   the pair `(key, request)`: a key re-registered by a later request may legitimately
///   start its numbering again). `Gap` events are ignored here: they carry the received
///   seq of the event that follows them;
/// - nothing of a registration is delivered after its terminal event
///   ([`StreamEventKind::is_terminal`]);
/// - a request's stream gets at most one terminal event, whatever key it was delivered
///   under (an alias key named by the response counts as the same stream);
/// - every stream a request registered (`CommandRecord::Request { stream: true, result:
///   Ok(id) }`, matched by `StreamEvent::request == Some(id)`) has exactly one terminal
///   event by the end of the run — reported at the request if missing, and checked only
///   if the run reached its `Final` record.
#[must_use]
pub fn stream_events_once<P: Protocol>(tl: &Timeline<P>) -> Option<Violation> {
    let mut first = First::new(NAME, tl);
    // Registrations by key (keys are cloned once, not per event).
    let mut streams: BTreeMap<StreamKey, Vec<Registration>> = BTreeMap::new();
    // Request → step of its stream's terminal event.
    let mut terminal_of: BTreeMap<RequestId, usize> = BTreeMap::new();
    // Streaming requests in issue order: (id, step).
    let mut registered: Vec<(RequestId, usize)> = Vec::new();
    for (i, r) in tl.records.iter().enumerate() {
        let ev = match &r.entry {
            Entry::Command(CommandRecord::Request {
                result: Ok(id),
                stream: true,
            }) => {
                registered.push((*id, i));
                continue;
            }
            Entry::Output(Output::Event(Event::Stream(ev))) => ev,
            _ => continue,
        };
        let regs = match streams.get_mut(&ev.key) {
            Some(regs) => regs,
            None => streams.entry(ev.key.clone()).or_default(),
        };
        let at = regs
            .iter()
            .position(|g| g.request == ev.request)
            .unwrap_or_else(|| {
                regs.push(Registration {
                    request: ev.request,
                    seqs: BTreeSet::new(),
                    ended: None,
                });
                regs.len() - 1
            });
        let reg = &mut regs[at];
        if let Some(t) = reg.ended {
            first.offer(i, || {
                format!(
                    "{:?} of stream {:?} ({}) after its terminal event at step {t}",
                    kind_name(&ev.kind),
                    ev.key.as_str(),
                    request_name(ev.request),
                )
            });
        }
        if !matches!(ev.kind, StreamEventKind::Gap { .. })
            && let Some(seq) = ev.seq
            && !reg.seqs.insert(seq)
        {
            first.offer(i, || {
                format!(
                    "({:?}, seq {seq}) of {} delivered twice",
                    ev.key.as_str(),
                    request_name(ev.request),
                )
            });
        }
        if ev.kind.is_terminal() {
            reg.ended.get_or_insert(i);
            if let Some(id) = ev.request
                && let Some(t) = terminal_of.insert(id, i)
            {
                first.offer(i, || {
                    format!(
                        "second terminal event ({}) for the stream of {id} (first at step {t})",
                        kind_name(&ev.kind)
                    )
                });
            }
        }
    }
    if finished(tl).is_some()
        && let Some((id, step)) = registered
            .iter()
            .find(|(id, _)| !terminal_of.contains_key(id))
    {
        first.offer(*step, || {
            format!("the stream of {id} registered here never got a terminal event")
        });
    }
    first.into_inner()
}

/// One registration of a stream key: the request that registered it, the sequence
/// numbers delivered, and the step of its terminal event.
struct Registration {
    request: Option<RequestId>,
    seqs: BTreeSet<u64>,
    ended: Option<usize>,
}

fn kind_name<I>(kind: &StreamEventKind<I>) -> &'static str {
    match kind {
        StreamEventKind::Status(_) => "status",
        StreamEventKind::Delta { .. } => "delta",
        StreamEventKind::Final { .. } => "final",
        StreamEventKind::Error { .. } => "error",
        StreamEventKind::Aborted(_) => "aborted",
        StreamEventKind::Gap { .. } => "gap",
        StreamEventKind::Ended(_) => "ended",
        _ => "event",
    }
}

fn request_name(request: Option<RequestId>) -> String {
    request.map_or_else(|| "no request".to_owned(), |id| id.to_string())
}
