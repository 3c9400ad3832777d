//! tether-driver: runs a [`tether_core::Session`] on any async runtime.
//!
//! The session decides; this crate carries its decisions out. One task owns the session
//! and its connections: each wake-up it takes whatever is ready — commands from a
//! [`Client`], frames and write completions from its sockets, an expired deadline — feeds
//! it to the session in order, and carries out the outputs: open a connection, write
//! frames (one flush per batch, each reported written), close or drop a connection,
//! publish events. A connection's reading and writing are polled independently, so a write
//! the peer never drains does not stop reading, and the session's send deadline drops the
//! connection. `docs/adapters.md` describes the loop and its backpressure.
//!
//! A runtime supplies three things through [`Runtime`] (spawn, sleep until an instant,
//! now; the [`clock`] module has the clock that counts suspended time, which the tokio and
//! smol adapters use) and a way to open byte streams through [`Dial`]; [`WsTransport`] turns those into
//! WebSocket connections with async-tungstenite (and rustls, with the `rustls` feature:
//! `Tls` chooses what `wss://` trusts), directly or through an HTTP [`Proxy`].
//! `tether-tokio` and `tether-smol` are exactly that, and the simulator supplies a virtual
//! [`Transport`] and clock to run this same driver.
//!
//! The [`record`] module is the flight recorder: every call the loop makes on its session,
//! written as JSON lines for `tether-sim replay-trace` (`docs/recording.md`).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod alarm;
mod builder;
mod client;
pub mod clock;
mod cmd_channel;
mod conn;
mod connect;
mod error;
mod http_head;
mod inline;
mod mailbox;
#[cfg(test)]
mod manual_rt;
mod proxy;
pub mod record;
mod reset;
mod rounds;
mod runtime;
mod send_protocol;
pub mod server;
mod session_id;
mod shared;
mod sniff;
mod stream_events;
mod task;
#[cfg(test)]
mod test_peer;
#[cfg(feature = "rustls")]
mod tls;
mod transport;
mod update;
mod upgrade;
mod ws;
mod ws_link;

pub use builder::Builder;
pub use client::{Client, StreamCall};
pub use connect::{KEEPALIVE, configure_socket, connect_ws, connect_ws_with, os_seed};
pub use error::{CallError, ConnectError};
#[cfg(feature = "rustls")]
pub use futures_rustls::rustls;
pub use inline::Inline;
pub use proxy::{MAX_CONNECT_HEAD, Proxy};
pub use reset::{Reset, Resettable, linger_zero};
pub use runtime::Runtime;
pub use send_protocol::SendProtocol;
pub use shared::{CMD_CAPACITY, STREAM_CAPACITY, SUBSCRIBER_BYTES, SUBSCRIBER_CAPACITY};
pub use stream_events::StreamEvents;
pub use tether_core;
#[cfg(feature = "rustls")]
pub use tls::{Tls, TlsError};
pub use transport::{FrameSink, FrameStream, InboundLimits, Incoming, Link, Outgoing, Transport};
pub use update::Update;
pub use ws::{Dial, HeaderError, HeaderFn, UrlError, WsTransport, redact};
