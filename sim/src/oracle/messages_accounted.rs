//! Every message `send` accepted ends exactly once: written, or reported dropped.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use tether_core::{Event, FrameId, Input, MessageId, OutFrame, Output, Protocol, RequestId};

use super::{First, Violation, finished};
use crate::timeline::{CommandRecord, Entry, Timeline};

pub(super) const NAME: &str = "messages_accounted";

/// What became of one accepted message so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    /// Handed over; neither written nor dropped yet.
    Pending,
    /// Its write was confirmed (`WriteCompleted` for its frame) at this step.
    Written(usize),
    /// `MessageDropped` named it at this step.
    Dropped(usize),
}

/// Who owns a frame in the offline queue.
#[derive(Clone, Copy, Debug)]
enum Owner {
    Message(MessageId),
    Request(RequestId),
}

/// Every id a `send` returned (`CommandRecord::Send(Ok(id))`) ends in exactly one of: a
/// confirmed write (a `WriteCompleted` input for the frame that carried it, before any
/// drop) or an [`Event::MessageDropped`] naming it; by the end of a finished run (which
/// closes the session) every one has ended. Reported: a second drop, a drop after the
/// write was confirmed, and — at the send that issued it — an id that never ended.
///
/// The frame of a message is the data frame its `send` wrote (an open session writes at
/// once), or, for a message that was queued, the data frame written for it when the queue
/// is flushed after `Opened`: the oracle keeps the queue's order (messages and requests)
/// and takes owners off it as they are written, dropped or resolved. Ids issued twice
/// (a replayed trace records every `feed` as one id) are not judged.
#[must_use]
pub fn messages_accounted<P: Protocol>(tl: &Timeline<P>) -> Option<Violation> {
    let mut first = First::new(NAME, tl);
    let mut issued: BTreeMap<MessageId, usize> = BTreeMap::new();
    let mut ambiguous: BTreeSet<MessageId> = BTreeSet::new();
    let mut fate: BTreeMap<MessageId, Fate> = BTreeMap::new();
    let mut frames: BTreeMap<FrameId, MessageId> = BTreeMap::new();
    let mut queue: VecDeque<Owner> = VecDeque::new();
    // The command whose effects are being read, and whether it wrote its frame yet.
    let mut sending: Option<(MessageId, bool)> = None;
    let mut requesting: Option<(RequestId, bool)> = None;
    // Inside the effects of a call that opened the session: data frames are the flush.
    let mut flushing = false;
    for (i, r) in tl.records.iter().enumerate() {
        if !matches!(r.entry, Entry::Output(_) | Entry::Sizes(_)) {
            // The previous call's effects are over: a command that wrote nothing queued.
            if let Some((id, false)) = sending.take() {
                queue.push_back(Owner::Message(id));
            }
            if let Some((id, false)) = requesting.take() {
                queue.push_back(Owner::Request(id));
            }
            flushing = false;
        }
        match &r.entry {
            Entry::Command(CommandRecord::Send(Ok(id))) => {
                if issued.insert(*id, i).is_some() {
                    ambiguous.insert(*id);
                }
                fate.insert(*id, Fate::Pending);
                sending = Some((*id, false));
            }
            Entry::Command(CommandRecord::Request { result: Ok(id), .. }) => {
                requesting = Some((*id, false));
            }
            Entry::Output(Output::Event(Event::Opened { .. })) => flushing = true,
            Entry::Output(Output::SendFrame { frame, payload, .. }) if is_data(payload) => {
                if flushing {
                    match queue.pop_front() {
                        Some(Owner::Message(id)) => {
                            frames.insert(*frame, id);
                        }
                        Some(Owner::Request(_)) | None => {}
                    }
                } else if let Some((id, written @ false)) = &mut sending {
                    frames.insert(*frame, *id);
                    *written = true;
                } else if let Some((_, written @ false)) = &mut requesting {
                    *written = true;
                }
            }
            Entry::Output(Output::Event(Event::MessageDropped { id, .. })) => {
                queue.retain(|o| !matches!(o, Owner::Message(m) if m == id));
                match fate.get(id).copied() {
                    _ if ambiguous.contains(id) => {}
                    Some(Fate::Pending) => {
                        fate.insert(*id, Fate::Dropped(i));
                    }
                    Some(Fate::Dropped(at)) => {
                        first.offer(i, || format!("{id} dropped again (first at step {at})"));
                    }
                    Some(Fate::Written(at)) => first.offer(i, || {
                        format!("{id} dropped after its write was confirmed at step {at}")
                    }),
                    // Not issued by a recorded `send` (a `feed`).
                    None => {}
                }
            }
            Entry::Output(Output::Event(Event::Response { id, .. })) => {
                queue.retain(|o| !matches!(o, Owner::Request(q) if q == id));
            }
            Entry::Input(Input::WriteCompleted { frame, .. }) => {
                if let Some(id) = frames.remove(frame)
                    && fate.get(&id) == Some(&Fate::Pending)
                {
                    fate.insert(id, Fate::Written(i));
                }
            }
            _ => {}
        }
    }
    if let Some(end) = finished(tl)
        && let Some((id, step)) = issued
            .iter()
            .filter(|(id, _)| !ambiguous.contains(id) && fate.get(id) == Some(&Fate::Pending))
            .min_by_key(|(_, s)| **s)
    {
        first.offer(*step, || {
            format!(
                "{id} accepted here was neither written nor dropped (the run ended at step {end})"
            )
        });
    }
    first.into_inner()
}

fn is_data(payload: &OutFrame) -> bool {
    !matches!(payload, OutFrame::Ping(_))
}
