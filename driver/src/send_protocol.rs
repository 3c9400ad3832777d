//! What the driver needs of a protocol: values that can cross to the session's task.

use tether_core::Protocol;

/// A protocol whose values can cross to the session loop's task: what the driver needs of
/// a [`Protocol`] (implemented for every protocol that qualifies).
pub trait SendProtocol:
    Protocol<Inbound: Send, Outbound: Send, Request: Send, Response: Send, RemoteError: Send>
    + Send
    + 'static
{
}

impl<P> SendProtocol for P where
    P: Protocol<Inbound: Send, Outbound: Send, Request: Send, Response: Send, RemoteError: Send>
        + Send
        + 'static
{
}
