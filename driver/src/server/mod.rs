//! The server side: accepted WebSocket connections guarded by the rules tether's clients
//! follow, and a [`Hub`] that broadcasts to many of them without ever waiting on the
//! slowest.
//!
//! Each accepted connection runs the core's server role
//! ([`ServerConn`](tether_core::server::ServerConn)) in a task of its own: pings and stale
//! detection, a send deadline on every frame, slow-write warnings, a close with a
//! timeout. The application holds a [`Guarded`] handle whose sends never wait on the
//! peer for longer than the send deadline and end with a typed result — written, queue
//! full, or the connection dead and why — never a panic.
//!
//! ```text
//!  Hub::broadcast ─► try_send ─► bounded queue ─►┌─────────────────────────┐
//!  Guarded::send ──────────────────────────────►│ connection task         │──► Conn: write, one flush, report
//!  Guarded::close / terminate ─────────────────►│  ServerConn (sans-IO)   │◄── Conn: read frames, pongs, close
//!  Guarded::recv ◄── bounded inbound ◄──────────│  sleeps until its       │──► abort: stale, deadline, close timeout
//!  departures ◄── end hook ◄────────────────────└──── poll_timeout() ─────┘
//! ```
//!
//! A hub has topics ([`Hub::join_topic`], [`Hub::broadcast_to`]), and a [`Backplane`]
//! makes a topic broadcast reach the topic's members in every process attached to the same
//! Redis (pub/sub through a small RESP client of its own, spawned on the hub's
//! [`Runtime`](crate::Runtime); local members never wait on it).
//!
//! The runtime adapters accept on their own sockets (`tether_tokio::server::accept`,
//! `tether_smol::server::accept`): socket options through
//! [`configure_socket`](crate::configure_socket), then [`accept_ws`] with their
//! [`Runtime`](crate::Runtime). [`guard`] starts the same task over any [`Link`](crate::Link).
//!
//! An application with an HTTP server of its own (axum, hyper) answers the upgrade with
//! [`upgrade_response`] and hands the upgraded I/O to [`guard_upgraded`]: the same
//! connection from there on, minus the reset handle (see `docs/server.md`).

mod accept;
mod admission;
mod backplane;
mod catch_up;
mod gate;
mod guard;
mod handshake;
mod hub;
mod roster;
mod task;
mod upgrade;
mod upgraded;

pub use accept::{AcceptError, accept_ws, accept_ws_with, guard};
pub use admission::{Admission, Admit, UpgradeRequest};
pub use async_tungstenite::tungstenite::http;
pub use backplane::{
    Backplane, BackplaneConfig, BackplaneError, BackplaneEvent, BackplaneStats, DialRedis,
    MAX_MESSAGE_BYTES, MAX_QUEUE_BYTES, MAX_QUEUE_LEN, RedisStream, Side, redis_addr,
};
pub use gate::{Gate, GateConfig, GateStats, Limit, MAX_RETRY_AFTER};
pub use guard::{
    DeliveryError, GuardConfig, Guarded, MAX_INBOUND_BYTES, MAX_INBOUND_CAPACITY, MAX_REQUEST_HEAD,
};
pub use handshake::{UpgradeRefusal, upgrade_headers, upgrade_response};
pub use hub::{
    Broadcast, DEFAULT_MAX_MEMBERS, Departure, Hub, HubConfig, HubStats, LeaveReason,
    MAX_DEPARTURE_CAPACITY, MAX_MEMBERS, MAX_TOPIC_LEN, MAX_TOPICS_PER_MEMBER, TopicError,
};
pub use upgraded::guard_upgraded;
