//! No `(stream, seq)` reaches the application twice; a terminal event exactly once.

use std::collections::{BTreeMap, BTreeSet};

use tether_core::{Event, Output, Protocol, RequestId, StreamEventKind, StreamKey};

use super::{First, Violation, finished, secs};
use crate::timeline::{CommandRecord, Entry, Fact, Timeline, fingerprint};

pub(super) const NAME: &str = "stream_events_once";

/// Checks every [`Event::Stream`]:
///
/// - no `(key, seq)` pair is delivered twice within one registration (a registration is
///   the pair `(key, request)`: a key re-registered by a later request may legitimately
///   start its numbering again). `Gap` events are ignored here: they carry the received
///   seq of the event that follows them;
/// - nothing of a registration is delivered after its terminal event
///   ([`StreamEventKind::is_terminal`]);
/// - no hole without a typed gap: an event numbered past the next one expected (the
///   highest delivered plus one) is announced by a `Gap` received at its seq, across
///   reconnects too (a resumable stream carries on over them);
/// - a request's stream gets at most one terminal event, whatever key it was delivered
///   under (an alias key named by the response counts as the same stream);
/// - every stream a request registered (`CommandRecord::Request { stream: true, result:
///   Ok(id) }`, matched by `StreamEvent::request == Some(id)`) has exactly one terminal
///   event by the end of the run — reported at the request if missing, and checked only
///   if the run reached its `Final` record;
/// - **at least once**, when the world reads its frames ([`Fact::StreamEvent`], from
///   [`World::identify_events`](crate::World::identify_events)): an event `(key, seq)`
///   the world delivered while its stream was open reaches the application in the call
///   that delivered it (as an event with that seq, or a terminal that ends the stream
///   there), unless the world had delivered the same pair before (a duplicate), or it is
///   late: a `Gap` the session reported covers it, or an event numbered at or above it
///   was already delivered (late events are dropped and counted, as designed). The stream is
///   open if the last event the session emitted under that key was not terminal, or if
///   the next one belongs to a streaming request issued before the frame arrived. Judged
///   from what the world delivered, never from the session's own stream table.
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
                    last: None,
                    gap_to: None,
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
        // No hole without a typed gap: an event numbered past the next one expected is
        // announced by a `Gap` up to it (across reconnects too, where a resumable stream
        // carries on).
        match (&ev.kind, ev.seq) {
            (StreamEventKind::Gap { received, .. }, _) => reg.gap_to = Some(*received),
            (_, Some(seq)) => {
                if let Some(last) = reg.last
                    && last.checked_add(1).is_some_and(|next| seq > next)
                    && reg.gap_to != Some(seq)
                {
                    first.offer(i, || {
                        format!(
                            "({:?}, seq {seq}) of {} delivered after seq {last} with no gap \
                             announced for what is missing",
                            ev.key.as_str(),
                            request_name(ev.request),
                        )
                    });
                }
                reg.last = Some(reg.last.map_or(seq, |l| l.max(seq)));
                reg.gap_to = None;
            }
            _ => {}
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
    every_event_delivered(tl, &mut first);
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
    /// The highest seq delivered (not counting gaps), and the `received` of the last
    /// `Gap` announced since.
    last: Option<u64>,
    gap_to: Option<u64>,
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

/// A stream event the session emitted, under the fingerprint of its key.
struct Emitted {
    step: usize,
    request: Option<RequestId>,
    seq: Option<u64>,
    terminal: bool,
    /// `[expected, received)` of a `Gap`.
    gap: Option<(u64, u64)>,
}

/// A frame the world delivered that carries stream event `seq` of `key`.
struct Delivery {
    input: usize,
    key: u64,
    seq: u64,
    /// The call that took it emitted that seq or a terminal.
    handled: bool,
    /// The world had delivered the same pair before.
    again: bool,
}

/// The "at least once" half of [`stream_events_once`].
fn every_event_delivered<P: Protocol>(tl: &Timeline<P>, first: &mut First<'_, P>) {
    let mut emitted: BTreeMap<u64, Vec<Emitted>> = BTreeMap::new();
    let mut registered_at: BTreeMap<RequestId, usize> = BTreeMap::new();
    let mut deliveries: Vec<Delivery> = Vec::new();
    let mut delivered_pairs: BTreeSet<(u64, u64)> = BTreeSet::new();
    // The identified event the next input carries, and the delivery whose call is under way.
    let mut next: Option<(u64, u64)> = None;
    let mut open_call: Option<usize> = None;
    for (i, r) in tl.records.iter().enumerate() {
        match &r.entry {
            Entry::Fact(Fact::StreamEvent { key, seq, .. }) => next = Some((*key, *seq)),
            Entry::Input(_) => {
                open_call = next.take().map(|(key, seq)| {
                    let again = !delivered_pairs.insert((key, seq));
                    deliveries.push(Delivery {
                        input: i,
                        key,
                        seq,
                        handled: false,
                        again,
                    });
                    deliveries.len() - 1
                });
            }
            Entry::Command(c) => {
                open_call = None;
                if let CommandRecord::Request {
                    result: Ok(id),
                    stream: true,
                } = c
                {
                    registered_at.insert(*id, i);
                }
            }
            Entry::Timer(_) | Entry::Fault(_) | Entry::Heal => open_call = None,
            Entry::Output(Output::Event(Event::Stream(ev))) => {
                let terminal = ev.kind.is_terminal();
                if let Some(d) = open_call.and_then(|c| deliveries.get_mut(c))
                    && (terminal || ev.seq == Some(d.seq))
                {
                    d.handled = true;
                }
                let gap = match ev.kind {
                    StreamEventKind::Gap { expected, received } => Some((expected, received)),
                    _ => None,
                };
                emitted
                    .entry(fingerprint(false, ev.key.as_str().as_bytes()))
                    .or_default()
                    .push(Emitted {
                        step: i,
                        request: ev.request,
                        seq: ev.seq,
                        terminal,
                        gap,
                    });
            }
            _ => {}
        }
    }
    for d in deliveries.iter().filter(|d| !d.handled && !d.again) {
        let events = emitted.get(&d.key).map_or(&[][..], Vec::as_slice);
        let split = events.partition_point(|e| e.step < d.input);
        let (before, after) = events.split_at(split);
        // The registration the frame arrived in, if its stream was open then.
        let request = match (before.last(), after.first()) {
            (Some(prev), _) if !prev.terminal => prev.request,
            (_, Some(next))
                if next
                    .request
                    .and_then(|id| registered_at.get(&id))
                    .is_some_and(|at| *at < d.input) =>
            {
                next.request
            }
            _ => continue,
        };
        // A late event is dropped (and counted in the session's stats), as designed: one
        // a reported `Gap` covers, or any numbered below an event already delivered.
        let covered = before
            .iter()
            .rev()
            .take_while(|e| !e.terminal)
            .filter(|e| e.request == request)
            .any(|e| {
                e.gap.is_some_and(|(lo, hi)| (lo..hi).contains(&d.seq))
                    || e.seq.is_some_and(|s| s >= d.seq)
            });
        if !covered {
            let at = tl.records[d.input].at;
            first.offer(d.input, || {
                format!(
                    "the peer's stream event seq {} delivered at +{} while its stream ({}) \
                     was open never reached the application",
                    d.seq,
                    secs(at),
                    request_name(request),
                )
            });
        }
    }
}
