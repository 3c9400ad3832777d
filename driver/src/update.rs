//! One ordered feed of a session's life: status changes and events together.

use tether_core::{Event, Protocol, Status};

/// One item of [`Client::updates`](crate::Client::updates): a status change or an event,
/// in the order the session decided them. A status change comes before the events it
/// explains (`Reconnecting` before the `Disconnected` event's retry runs out, `Open`
/// before the first message of the new connection), on every runtime alike.
#[non_exhaustive]
pub enum Update<P: Protocol> {
    /// The session's status changed to this.
    Status(Status),
    /// A session event (see [`Client::events`](crate::Client::events)).
    Event(Event<P>),
}

impl<P: Protocol> Update<P> {
    /// The event, if this is one.
    pub fn event(&self) -> Option<&Event<P>> {
        match self {
            Update::Event(e) => Some(e),
            Update::Status(_) => None,
        }
    }

    /// The event, if this is one, by value.
    pub fn into_event(self) -> Option<Event<P>> {
        match self {
            Update::Event(e) => Some(e),
            Update::Status(_) => None,
        }
    }

    /// The new status, if this is a status change.
    pub fn status(&self) -> Option<Status> {
        match self {
            Update::Status(s) => Some(*s),
            Update::Event(_) => None,
        }
    }
}

impl<P: Protocol> Clone for Update<P> {
    fn clone(&self) -> Self {
        match self {
            Update::Status(s) => Update::Status(*s),
            Update::Event(e) => Update::Event(e.clone()),
        }
    }
}

impl<P: Protocol> std::fmt::Debug for Update<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Update::Status(s) => f.debug_tuple("Status").field(s).finish(),
            Update::Event(e) => f.debug_tuple("Event").field(e).finish(),
        }
    }
}

impl<P: Protocol> PartialEq for Update<P> {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Update::Status(a), Update::Status(b)) => a == b,
            (Update::Event(a), Update::Event(b)) => a == b,
            _ => false,
        }
    }
}
