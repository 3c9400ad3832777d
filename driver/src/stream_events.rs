//! The events of one stream, for the caller of [`Client::stream`](crate::Client::stream):
//! bounded in events ([`STREAM_CAPACITY`](crate::STREAM_CAPACITY)) and in bytes (the
//! session's subscriber budget, [`Options::subscriber_bytes`](crate::record::Options)).
//!
//! A stream consumer is never waited for: a session carries many streams and its other
//! subscribers, and one caller that stopped reading must not stall them. The loop charges
//! each event with the bytes of the frame that produced it plus the text it carries; an
//! event that would take the consumer past either bound ends its stream with a last
//! `Ended(Lagged)` item instead (the events still reach `Client::events`).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Stream;
use tether_core::{StreamEnd, StreamEvent, StreamEventKind};

use crate::mailbox::{Mailbox, Pushed, Subscription};

/// The events of a stream started by [`Client::stream`](crate::Client::stream), ending
/// after its terminal event (or after `Ended(Lagged)` for a consumer that fell behind).
pub struct StreamEvents<I> {
    sub: Subscription<StreamEvent<I>>,
}

impl<I> std::fmt::Debug for StreamEvents<I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamEvents").finish_non_exhaustive()
    }
}

impl<I> Stream for StreamEvents<I> {
    type Item = StreamEvent<I>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.sub).poll_next(cx)
    }
}

/// The loop's end of one stream's events; dropping it ends the consumer's stream after
/// what is queued.
pub(crate) struct StreamSender<I> {
    mailbox: Arc<Mailbox<StreamEvent<I>>>,
}

impl<I> Drop for StreamSender<I> {
    fn drop(&mut self) {
        self.mailbox.close();
    }
}

/// A stream's two ends, bounded at `capacity` events and `byte_budget` bytes.
pub(crate) fn channel<I>(
    capacity: usize,
    byte_budget: usize,
) -> (StreamSender<I>, StreamEvents<I>) {
    let (mailbox, sub) = Mailbox::pair(capacity, byte_budget);
    (StreamSender { mailbox }, StreamEvents { sub })
}

/// What became of an event handed to a [`StreamSender`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sent {
    /// Queued for the consumer.
    Queued,
    /// The consumer was behind: it gets `Ended(Lagged)` as its last event instead, and
    /// the sender must be dropped.
    Lagged,
    /// The consumer dropped its events.
    Gone,
}

impl<I: Clone> StreamSender<I> {
    /// Queues `event`, charged with `frame_bytes` (the frame that produced it) plus the
    /// text it carries.
    pub(crate) fn send(&self, event: &StreamEvent<I>, frame_bytes: usize) -> Sent {
        let bytes = frame_bytes.saturating_add(text_len(&event.kind));
        match self.mailbox.try_push(event.clone(), bytes) {
            Pushed::Queued => Sent::Queued,
            Pushed::Gone => Sent::Gone,
            Pushed::Full => {
                let lagged = StreamEvent {
                    key: event.key.clone(),
                    request: event.request,
                    seq: None,
                    kind: StreamEventKind::Ended(StreamEnd::Lagged),
                };
                // Past the bounds on purpose: the one item that tells the consumer why
                // its stream ends.
                self.mailbox.push_all([lagged], 0);
                Sent::Lagged
            }
        }
    }
}

/// The bytes of text an event carries beside its payload.
fn text_len<I>(kind: &StreamEventKind<I>) -> usize {
    match kind {
        StreamEventKind::Delta { text, .. } | StreamEventKind::Final { text, .. } => {
            text.as_ref().map_or(0, String::len)
        }
        StreamEventKind::Error { message, .. } => message.len(),
        _ => 0,
    }
}
