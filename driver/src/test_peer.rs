//! What the unit tests' scripted peers share: a link whose reads are a channel the test
//! speaks into, and speaking on the newest connection. Each test's `Transport` decides what
//! its sink does with the session's writes.

use std::io;
use std::sync::Mutex;

use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender};
use tether_core::InFrame;

use crate::shared::lock;
use crate::transport::{Incoming, Link, Outgoing};

/// The test's side of a connection's reads.
pub(crate) type PeerTx = UnboundedSender<Result<Incoming, io::Error>>;

/// A link that writes into `sink` and reads what the test sends on `rx`'s sender.
pub(crate) fn link<S>(sink: S, rx: UnboundedReceiver<Result<Incoming, io::Error>>) -> Link
where
    S: futures::Sink<Outgoing, Error = io::Error> + Send + 'static,
{
    Link {
        sink: Box::pin(sink),
        stream: Box::pin(rx),
        reset: None,
        subprotocol: None,
    }
}

/// Sends `text` as a text frame on the newest connection of `links`.
pub(crate) fn say(links: &Mutex<Vec<PeerTx>>, text: &str) {
    let links = lock(links);
    let tx = links.last().expect("a connection");
    let frame = InFrame::Text(bytes::Bytes::copy_from_slice(text.as_bytes()));
    let _ = tx.unbounded_send(Ok(Incoming::Frame(frame)));
}
