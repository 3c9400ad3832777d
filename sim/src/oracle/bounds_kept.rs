//! Queues and tables never exceed their configured bounds.

use std::collections::{BTreeMap, BTreeSet};

use tether_core::{
    Config, ConnId, Event, Input, MessageId, OfflinePolicy, Output, Protocol, RequestId,
};

use super::{First, Violation};
use crate::timeline::{CommandRecord, Entry, Fact, Timeline};

pub(super) const NAME: &str = "bounds_kept";

/// Frames a handshake may write besides the guarded ones: the hello and a challenge
/// reply, with room for one more challenge round.
const HANDSHAKE_FRAMES: usize = 3;

/// **Counted by the world.** After every session call, what the oracle counts from the
/// run itself — not from the session's own sizes — lies within the bounds:
///
/// | counted | bound |
/// |---|---|
/// | frames in the offline queue: accepted `send`s and `request`s whose call wrote nothing, until dropped, resolved or flushed by an `Opened` | the queue's `max_messages` |
/// | bytes in the offline queue: the lengths the world's encoder gave those messages ([`Fact::Message`]; requests not counted) | the queue's `max_bytes` |
/// | writes in flight: data frames and pings the world was asked to write and has not reported complete or failed, on connections not torn down | [`pending_writes_bound`] |
///
/// **Reported by the session.** Every `Sizes` record also lies within the bounds (for
/// the tables the world cannot see):
///
/// | size | bound |
/// |---|---|
/// | `pending_requests` | `max_in_flight_requests` |
/// | `queued` | the offline queue's `max_messages` (0 when offline sends are rejected) |
/// | `open_streams` | `streams.max_streams` |
/// | `remembered` | `streams.max_seen` |
/// | `pending_writes` | [`pending_writes_bound`] |
#[must_use]
pub fn bounds_kept<P: Protocol>(tl: &Timeline<P>) -> Option<Violation> {
    let c = &tl.config;
    let mut first = First::new(NAME, tl);
    let bounds = [
        c.max_in_flight_requests,
        queue_max(c),
        c.streams.max_streams,
        c.streams.max_seen,
        pending_writes_bound(c),
    ];
    let names = [
        "pending requests",
        "queued frames",
        "open streams",
        "remembered stream events",
        "pending writes",
    ];
    let mut world = WorldCount::default();
    for (i, r) in tl.records.iter().enumerate() {
        if !matches!(r.entry, Entry::Output(_) | Entry::Sizes(_)) {
            world.call_over();
            if let Some(why) = world.excess(c) {
                // The call that broke the bound is the last one before this record.
                let at = world.call_step.unwrap_or(i);
                first.offer(at, || why);
                break;
            }
            world.call_step = Some(i);
        }
        world.see(&r.entry);
        let Entry::Sizes(s) = &r.entry else {
            continue;
        };
        let sizes = [
            s.pending_requests,
            s.queued,
            s.open_streams,
            s.remembered,
            s.pending_writes,
        ];
        if let Some(k) = (0..sizes.len()).find(|&k| sizes[k] > bounds[k]) {
            first.offer(i, || {
                format!("{} {} exceed the bound {}", sizes[k], names[k], bounds[k])
            });
            break;
        }
    }
    first.into_inner()
}

/// What the oracle counts from the run.
#[derive(Default)]
struct WorldCount {
    /// The step of the call whose effects are being read.
    call_step: Option<usize>,
    /// The world's length of the next `send`'s message.
    tag: Option<usize>,
    /// The command being read: a message (with its length) or a request, and whether
    /// its call wrote a data frame.
    sending: Option<(MessageId, Option<usize>, bool)>,
    requesting: Option<(RequestId, bool)>,
    queued_messages: BTreeMap<MessageId, Option<usize>>,
    queued_requests: BTreeSet<RequestId>,
    /// Writes in flight: frame id → connection.
    writes: BTreeMap<u64, ConnId>,
}

impl WorldCount {
    fn see<P: Protocol>(&mut self, entry: &Entry<P>) {
        match entry {
            Entry::Fact(Fact::Message { len, .. }) => self.tag = Some(*len),
            Entry::Command(CommandRecord::Send(Ok(id))) => {
                self.sending = Some((*id, self.tag.take(), false));
            }
            Entry::Command(CommandRecord::Request { result: Ok(id), .. }) => {
                self.tag = None;
                self.requesting = Some((*id, false));
            }
            Entry::Command(_) => self.tag = None,
            Entry::Output(Output::SendFrame { conn, frame, .. }) => {
                self.writes.insert(frame.get(), *conn);
                if let Some((_, _, w @ false)) = &mut self.sending {
                    *w = true;
                } else if let Some((_, w @ false)) = &mut self.requesting {
                    *w = true;
                }
            }
            Entry::Input(
                Input::WriteCompleted { frame, .. } | Input::WriteFailed { frame, .. },
            ) => {
                self.writes.remove(&frame.get());
            }
            Entry::Input(
                Input::TransportClosed { conn, .. } | Input::TransportFailed { conn, .. },
            )
            | Entry::Output(
                Output::AbortTransport { conn }
                | Output::CloseTransport { conn, .. }
                | Output::Event(Event::Disconnected { conn, .. } | Event::AttemptFailed { conn, .. }),
            ) => self.writes.retain(|_, c| c != conn),
            Entry::Output(Output::Event(Event::Opened { .. })) => {
                // The whole queue is flushed onto the new connection.
                self.queued_messages.clear();
                self.queued_requests.clear();
            }
            Entry::Output(Output::Event(Event::MessageDropped { id, .. })) => {
                self.queued_messages.remove(id);
            }
            Entry::Output(Output::Event(Event::Response { id, .. })) => {
                self.queued_requests.remove(id);
            }
            Entry::Output(Output::Event(Event::Ended(_))) => self.writes.clear(),
            _ => {}
        }
    }

    /// The call whose effects were being read is over: what it did not write, it queued.
    fn call_over(&mut self) {
        if let Some((id, len, false)) = self.sending.take() {
            self.queued_messages.insert(id, len);
        }
        if let Some((id, false)) = self.requesting.take() {
            self.queued_requests.insert(id);
        }
    }

    fn excess(&self, c: &Config) -> Option<String> {
        let frames = self.queued_messages.len() + self.queued_requests.len();
        if frames > queue_max(c) {
            return Some(format!(
                "the world counts {frames} queued frames ({} messages, {} requests), over \
                 the bound {}",
                self.queued_messages.len(),
                self.queued_requests.len(),
                queue_max(c)
            ));
        }
        let bytes: usize = self.queued_messages.values().flatten().sum();
        let max_bytes = match &c.offline {
            OfflinePolicy::Queue(q) => q.max_bytes,
            _ => 0,
        };
        if bytes > max_bytes {
            return Some(format!(
                "the world counts {bytes} bytes of queued messages, over the bound {max_bytes}"
            ));
        }
        let writes = self.writes.len();
        let bound = pending_writes_bound(c);
        (writes > bound)
            .then(|| format!("the world counts {writes} writes in flight, over the bound {bound}"))
    }
}

fn queue_max(c: &Config) -> usize {
    match &c.offline {
        OfflinePolicy::Queue(q) => q.max_messages,
        _ => 0,
    }
}

/// The most writes the session may have pending: `max_pending_writes`, which `send` and
/// `request` check before writing, plus what the session writes without that check —
///
/// - the offline queue, flushed whole right after the handshake (`max_messages`);
/// - the handshake's own frames (a hello, a challenge reply: 3 allowed);
/// - pings: a write older than `send_deadline` kills the connection, so at most
///   `send_deadline / ping_interval + 1` periodic pings are pending, plus the probe ping
///   after a clock jump.
#[must_use]
pub fn pending_writes_bound(c: &Config) -> usize {
    let pings = c.liveness.ping_interval.map_or(0, |p| {
        let per = c.send_deadline.as_nanos() / p.as_nanos().max(1);
        usize::try_from(per).unwrap_or(usize::MAX).saturating_add(1)
    });
    c.max_pending_writes
        .saturating_add(queue_max(c))
        .saturating_add(HANDSHAKE_FRAMES)
        .saturating_add(pings)
        .saturating_add(1)
}
