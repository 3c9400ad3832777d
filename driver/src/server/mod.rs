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
//!  Guarded::send ──────────────────────────────►│ connection task         │──► writer: feed, flush, report
//!  Guarded::close / terminate ─────────────────►│  ServerConn (sans-IO)   │◄── reader: frames, pongs, close
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

mod accept;
mod backplane;
mod catch_up;
mod guard;
mod hub;
mod roster;
mod task;

pub use accept::{AcceptError, accept_ws, accept_ws_with, guard};
pub use backplane::{
    Backplane, BackplaneConfig, BackplaneError, BackplaneEvent, BackplaneStats, DialRedis,
    MAX_MESSAGE_BYTES, MAX_QUEUE_BYTES, MAX_QUEUE_LEN, RedisStream, Side, redis_addr,
};
pub use guard::{DeliveryError, GuardConfig, Guarded, MAX_INBOUND_BYTES, MAX_INBOUND_CAPACITY};
pub use hub::{
    Broadcast, DEFAULT_MAX_MEMBERS, Departure, Hub, HubConfig, HubStats, LeaveReason,
    MAX_DEPARTURE_CAPACITY, MAX_MEMBERS, MAX_TOPIC_LEN, MAX_TOPICS_PER_MEMBER, TopicError,
};
