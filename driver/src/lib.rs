//! tether-driver: runs a [`tether_core::Session`] on any async runtime.
//!
//! The session decides; this crate carries its decisions out. One task owns the session
//! and feeds it one thing at a time — a command from a [`Client`], a transport input from
//! a connection task, or an expired deadline — then drains its outputs: open a connection,
//! write a frame (and report when it is written), close or abort a connection, publish an
//! event. Each connection runs in its own task with independent reading and writing, so a
//! write the peer never drains does not stop reading, and the session's send deadline
//! aborts the connection.
//!
//! A runtime supplies three things through [`Runtime`] (spawn, sleep until an instant,
//! now) and a way to open byte streams through [`Dial`]; [`WsTransport`] turns those into
//! WebSocket connections with async-tungstenite (and rustls, with the `rustls` feature).
//! `tether-tokio` and `tether-smol` are exactly that, and the simulator supplies a virtual
//! [`Transport`] and clock to run this same driver.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod client;
mod conn;
mod connect;
mod runtime;
mod task;
mod transport;
mod ws;

pub use client::{
    CallError, Client, ConnectError, STREAM_CAPACITY, SUBSCRIBER_CAPACITY, StreamCall,
};
pub use connect::{KEEPALIVE, SendProtocol, configure_socket, connect_ws, os_seed};
pub use runtime::Runtime;
pub use tether_core;
pub use transport::{FrameSink, FrameStream, Incoming, Link, Outgoing, Transport};
pub use ws::{Dial, UrlError, WsTransport, redact};
