//! Every message `send` accepted reaches the peer exactly once or is reported dropped;
//! what reaches the peer on one connection arrives in the order it was sent.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use tether_core::{
    ConnId, DropReason, Event, FrameId, Input, MessageId, OutFrame, Output, Protocol, RequestId,
};

use super::{First, Violation, finished};
use crate::timeline::{CommandRecord, Entry, Fact, Timeline, fingerprint};

pub(super) const NAME: &str = "messages_accounted";

/// One accepted message and what the world saw of it.
struct Msg {
    id: MessageId,
    /// The step of its `send`.
    step: usize,
    /// The fingerprint of the frame it travels in, once known.
    fp: Option<u64>,
    /// The step that reported it dropped, and why.
    dropped: Option<(usize, DropReason)>,
    /// The step at which the server received it.
    received: Option<usize>,
    /// The network lost its frame (a world fact).
    lost: bool,
    /// The step of its confirmed write.
    written: Option<usize>,
}

/// Who owns a frame in the offline queue.
#[derive(Clone, Copy, Debug)]
enum Owner {
    Message(usize),
    Request(RequestId),
}

/// The world keeps the ledger: it records every data frame its server received
/// ([`Fact::Received`]) and every frame the network lost after the write was accepted
/// ([`Fact::Lost`]: a half-open link, a connection the server had already closed). Every
/// id a `send` returned (`CommandRecord::Send(Ok(id))`) must then
///
/// - reach the server **exactly once**, or be reported by an [`Event::MessageDropped`]
///   (a message dropped as [`DropReason::Disconnected`] may have reached the peer — its
///   write was not confirmed — but one dropped from the queue (overflow, expiry, end)
///   must never reach it), or have been lost by the network in a fault the world
///   injected. A finished run with a message that did none of these is reported at its
///   `send` (a lost send);
/// - reach the server, on each connection, **in the order it was sent**: a message
///   received after a later one on the same connection (a reversed queue flush) is
///   reported at its receipt;
/// - not be reported dropped twice, nor dropped after its write was confirmed.
///
/// **Which frame is which message.** With [`World::identify_sends`](crate::World::identify_sends)
/// the world records the frame each message should travel in ([`Fact::Message`]), and
/// the server's receipts are matched to messages by content alone. Without it the
/// oracle falls back on the session's writes: the data frame a `send` wrote at once, or,
/// for a queued message, the data frame written for it when the queue is flushed after
/// `Opened` in the queue's order — which cannot see a reversed flush. Frames that match
/// no message (handshakes, requests) are not judged. Ids issued twice (a replayed trace
/// records every `feed` as one id) are not judged. A timeline with no world facts at all
/// (a replayed flight-recorder trace) accepts a confirmed write as the message's end.
#[must_use]
pub fn messages_accounted<P: Protocol>(tl: &Timeline<P>) -> Option<Violation> {
    let mut first = First::new(NAME, tl);
    let mut msgs: Vec<Msg> = Vec::new();
    let mut by_id: BTreeMap<MessageId, usize> = BTreeMap::new();
    let mut ambiguous: BTreeSet<MessageId> = BTreeSet::new();
    // Messages with a known frame not yet received or lost, by fingerprint, in order.
    let mut unmatched: BTreeMap<u64, VecDeque<usize>> = BTreeMap::new();
    // Fingerprints whose every message was received: a further receipt is a duplicate.
    let mut received_fps: BTreeMap<u64, usize> = BTreeMap::new();
    // The last message received on each connection (index into `msgs`).
    let mut last_on: BTreeMap<ConnId, usize> = BTreeMap::new();
    let mut frames: BTreeMap<FrameId, usize> = BTreeMap::new();
    let mut queue: VecDeque<Owner> = VecDeque::new();
    // The world's encoding of the message of the next `send`.
    let mut tag: Option<u64> = None;
    // The command whose effects are being read, and whether it wrote its frame yet.
    let mut sending: Option<(usize, bool)> = None;
    let mut requesting: Option<(RequestId, bool)> = None;
    // Inside the effects of a call that opened the session: data frames are the flush.
    let mut flushing = false;
    for (i, r) in tl.records.iter().enumerate() {
        if !matches!(r.entry, Entry::Output(_) | Entry::Sizes(_)) {
            // The previous call's effects are over: a command that wrote nothing queued.
            if let Some((k, false)) = sending.take() {
                queue.push_back(Owner::Message(k));
            }
            if let Some((id, false)) = requesting.take() {
                queue.push_back(Owner::Request(id));
            }
            flushing = false;
        }
        match &r.entry {
            Entry::Fact(Fact::Message { fingerprint, .. }) => tag = Some(*fingerprint),
            Entry::Command(CommandRecord::Send(Ok(id))) => {
                let k = msgs.len();
                if by_id.insert(*id, k).is_some() {
                    ambiguous.insert(*id);
                }
                msgs.push(Msg {
                    id: *id,
                    step: i,
                    fp: None,
                    dropped: None,
                    received: None,
                    lost: false,
                    written: None,
                });
                if let Some(fp) = tag.take() {
                    know(&mut msgs, &mut unmatched, k, fp);
                }
                sending = Some((k, false));
            }
            Entry::Command(c) => {
                tag = None;
                if let CommandRecord::Request { result: Ok(id), .. } = c {
                    requesting = Some((*id, false));
                }
            }
            Entry::Output(Output::Event(Event::Opened { .. })) => flushing = true,
            Entry::Output(Output::SendFrame { frame, payload, .. }) => {
                let Some(fp) = payload_fingerprint(payload) else {
                    continue;
                };
                let owner = if flushing {
                    match queue.pop_front() {
                        Some(Owner::Message(k)) => Some(k),
                        Some(Owner::Request(_)) | None => None,
                    }
                } else if let Some((k, written @ false)) = &mut sending {
                    *written = true;
                    Some(*k)
                } else {
                    if let Some((_, written @ false)) = &mut requesting {
                        *written = true;
                    }
                    None
                };
                if let Some(k) = owner {
                    frames.insert(*frame, k);
                    know(&mut msgs, &mut unmatched, k, fp);
                }
            }
            Entry::Output(Output::Event(Event::MessageDropped { id, reason })) => {
                let Some(&k) = by_id.get(id) else {
                    // Not issued by a recorded `send` (a `feed`).
                    continue;
                };
                queue.retain(|o| !matches!(o, Owner::Message(m) if *m == k));
                if ambiguous.contains(id) {
                    continue;
                }
                let m = &mut msgs[k];
                if let Some((at, _)) = m.dropped {
                    first.offer(i, || format!("{id} dropped again (first at step {at})"));
                    continue;
                }
                if let Some(at) = m.written {
                    first.offer(i, || {
                        format!("{id} dropped after its write was confirmed at step {at}")
                    });
                }
                if let Some(at) = m.received
                    && *reason != DropReason::Disconnected
                {
                    first.offer(i, || {
                        format!("{id} dropped ({reason:?}), but the peer received it at step {at}")
                    });
                }
                m.dropped = Some((i, *reason));
            }
            Entry::Output(Output::Event(Event::Response { id, .. })) => {
                queue.retain(|o| !matches!(o, Owner::Request(q) if q == id));
            }
            Entry::Input(Input::WriteCompleted { frame, .. }) => {
                if let Some(k) = frames.remove(frame)
                    && msgs[k].dropped.is_none()
                {
                    msgs[k].written.get_or_insert(i);
                }
            }
            Entry::Fact(Fact::Lost { fingerprint, .. }) => {
                if let Some(k) = take_match(&mut unmatched, &msgs, *fingerprint) {
                    msgs[k].lost = true;
                }
            }
            Entry::Fact(Fact::Received { conn, fingerprint }) => {
                let Some(k) = take_match(&mut unmatched, &msgs, *fingerprint) else {
                    if let Some(&k) = received_fps.get(fingerprint) {
                        let m = &msgs[k];
                        if !ambiguous.contains(&m.id) {
                            let (id, at) = (m.id, m.received.unwrap_or(i));
                            first.offer(i, || {
                                format!(
                                    "the peer received {id} a second time on {conn} (first \
                                     at step {at})"
                                )
                            });
                        }
                    }
                    continue;
                };
                received_fps.insert(*fingerprint, k);
                let m = &mut msgs[k];
                m.received = Some(i);
                if ambiguous.contains(&m.id) {
                    continue;
                }
                let id = m.id;
                if let Some((at, reason)) = m.dropped
                    && reason != DropReason::Disconnected
                {
                    first.offer(i, || {
                        format!(
                            "the peer received {id}, which was dropped ({reason:?}) at step {at}"
                        )
                    });
                }
                if let Some(&before) = last_on.get(conn)
                    && before > k
                {
                    let later = msgs[before].id;
                    let sent = msgs[before].step;
                    first.offer(i, || {
                        format!(
                            "the peer received {id} on {conn} after {later}, which was sent \
                             later (step {sent}): not in the order sent"
                        )
                    });
                }
                let best = last_on.entry(*conn).or_insert(k);
                *best = (*best).max(k);
            }
            _ => {}
        }
    }
    // A timeline without the world's ledger (a replayed trace) falls back on the
    // session's confirmed writes.
    let ledger = tl.records.iter().any(|r| matches!(r.entry, Entry::Fact(_)));
    if let Some(end) = finished(tl)
        && let Some(m) = msgs.iter().find(|m| {
            !ambiguous.contains(&m.id)
                && m.dropped.is_none()
                && m.received.is_none()
                && !m.lost
                && (ledger || m.written.is_none())
        })
    {
        let (id, step) = (m.id, m.step);
        let written = m.written.map_or_else(String::new, |w| {
            format!(" (its write was confirmed at step {w})")
        });
        first.offer(step, || {
            format!(
                "{id} accepted here never reached the peer{written} and was never reported \
                 dropped (the run ended at step {end})"
            )
        });
    }
    first.into_inner()
}

/// Learns the frame message `k` travels in (the first one known wins).
fn know(msgs: &mut [Msg], unmatched: &mut BTreeMap<u64, VecDeque<usize>>, k: usize, fp: u64) {
    if msgs[k].fp.is_none() {
        msgs[k].fp = Some(fp);
        unmatched.entry(fp).or_default().push_back(k);
    }
}

/// The earliest unreceived message travelling in a frame with this fingerprint,
/// preferring one that was not dropped from the queue.
fn take_match(
    unmatched: &mut BTreeMap<u64, VecDeque<usize>>,
    msgs: &[Msg],
    fp: u64,
) -> Option<usize> {
    let q = unmatched.get_mut(&fp)?;
    let queue_dropped =
        |k: &usize| matches!(msgs[*k].dropped, Some((_, r)) if r != DropReason::Disconnected);
    let pos = q.iter().position(|k| !queue_dropped(k)).unwrap_or(0);
    let k = q.remove(pos);
    if q.is_empty() {
        unmatched.remove(&fp);
    }
    k
}

/// The fingerprint of a data frame the session writes; `None` for pings.
fn payload_fingerprint(payload: &OutFrame) -> Option<u64> {
    match payload {
        OutFrame::Text(t) => Some(fingerprint(false, t.as_bytes())),
        OutFrame::Binary(b) => Some(fingerprint(true, b)),
        OutFrame::Ping(_) => None,
    }
}
