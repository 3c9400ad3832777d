//! tether-core: a sans-IO state machine that keeps a long-lived WebSocket session healthy.
//!
//! [`Session`] decides everything in a session's life — connecting, the application
//! handshake and its timeout, the close-code policy, backoff with jitter, liveness, send
//! deadlines, request/response correlation, streams with de-duplication, the offline
//! queue, closing — and does none of it itself. It never reads the clock (time is the
//! `now` argument of every call), never touches a socket, never spawns, and draws
//! randomness only from a generator seeded at construction. The same configuration,
//! seed and timestamped inputs always produce the same outputs, which is what lets the
//! simulator replay a seed and the adapters stay thin.
//!
//! A wire format is a [`Protocol`]; three ship in [`profiles`]: [`Raw`](profiles::Raw),
//! [`HelloAck`](profiles::HelloAck) and [`Gateway`](profiles::Gateway).
//!
//! # Example
//!
//! Driving a session by hand, playing both the adapter and the peer:
//!
//! ```
//! use std::time::{Duration, Instant};
//! use bytes::Bytes;
//! use tether_core::{profiles::HelloAck, Config, Event, InFrame, Input, Output, Session, Status};
//!
//! let t0 = Instant::now(); // the only clock read: the driver's, not the session's
//! let hello = HelloAck::new(|| serde_json::json!({ "type": "hello", "client": "doc" }));
//! let mut s = Session::new(Config::default(), hello, 7).unwrap();
//!
//! s.connect(t0).unwrap();
//! assert_eq!(
//!     s.poll_output(),
//!     Some(Output::StatusChanged { from: Status::Idle, to: Status::Connecting })
//! );
//! let Some(Output::OpenTransport { conn, .. }) = s.poll_output() else { panic!() };
//!
//! s.handle_input(Input::TransportOpened { conn }, t0 + Duration::from_millis(20));
//! let Some(Output::SendFrame { payload, .. }) = s.poll_output() else { panic!() };
//! assert!(format!("{payload:?}").contains("hello"));
//!
//! let ack = InFrame::Text(Bytes::from_static(br#"{"type":"hello_ack"}"#));
//! s.handle_input(Input::FrameReceived { conn, frame: ack }, t0 + Duration::from_millis(40));
//! assert_eq!(s.status(), Status::Open);
//! while let Some(out) = s.poll_output() {
//!     if let Output::Event(Event::Opened { first, .. }) = out {
//!         assert!(first);
//!     }
//! }
//! // Next deadline: the connection counts as stable 5 s after the ack.
//! assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_millis(40) + Duration::from_secs(5)));
//! assert_eq!(s.timeout_reason(), Some(tether_core::TimerKind::StableReset));
//! ```
//!
//! # Run loop
//!
//! Every driver (the tokio and smol adapters, the simulator) runs the same loop:
//!
//! 1. Feed **one** thing: a command ([`Session::connect`], [`send`](Session::send),
//!    [`request`](Session::request), [`close`](Session::close),
//!    [`terminate`](Session::terminate)), a transport [`Input`] through
//!    [`Session::handle_input`], or an expired deadline through
//!    [`Session::handle_timeout`].
//! 2. Drain [`Session::poll_output`] until it returns `None`, carrying out each
//!    [`Output`]: open, write, close or abort a transport, report a status change, hand
//!    an [`Event`] to the application.
//! 3. Read [`Session::poll_timeout`] and wait until that instant, a transport input or a
//!    command, whichever comes first.
//! 4. Repeat.
//!
//! Every write carries a [`FrameId`]; report [`Input::WriteCompleted`] when it is on the
//! wire, or the send deadline will declare the peer dead.
//!
//! # Time
//!
//! `now` is an [`Instant`](std::time::Instant) supplied by the caller. Each call first
//! fires the timers due at or before `now`, then does its own work. A `now` earlier than
//! one already seen is clamped. A `now` far beyond a liveness deadline (the laptop slept)
//! does not condemn the connection on stale evidence: the session sends a probe ping and
//! waits [`LivenessConfig::probe_timeout`] for any frame.
//!
//! # Generations
//!
//! Every transport attempt gets a new [`ConnId`]. Every deadline that belongs to a
//! connection lives inside that connection's state, and every transport input carries its
//! `ConnId`: an input of an older generation is counted and ignored, so a stale timer or
//! a late frame from an old socket can never touch a new connection.
//!
//! # Errors, bugs and panics
//!
//! - Caller misuse returns a typed error at once ([`SendError`], [`RequestError`],
//!   [`ConnectError`], [`ConfigError`]).
//! - Peer and network faults never return an error: they become outputs and events
//!   ([`Event::Violation`], [`Event::Disconnected`], a request's [`RequestFailure`]).
//! - No input panics. The only `expect`s guard invariants of the session's own making,
//!   each with a comment naming it.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

mod backoff;
mod close;
mod config;
mod error;
mod event;
mod frame;
mod ids;
mod input;
mod liveness;
pub mod profiles;
mod protocol;
mod queue;
mod requests;
mod resume;
pub mod server;
mod session;
mod stats;
mod status;
mod streams;
mod timer;
mod writes;

pub use backoff::{BackoffConfig, Jitter};
/// The byte buffer of binary frames, re-exported so that no `bytes` dependency of one's
/// own is needed.
pub use bytes::Bytes;
pub use close::{
    CloseClass, CloseCode, ClosePolicy, FailureKind, MAX_CLOSE_REASON, SERVICE_RESTART_FLOOR,
    TRY_AGAIN_LATER_FLOOR, TransportFailure,
};
pub use config::{Config, ConfigBuilder, MAX_DURATION, MAX_HEARTBEAT_FACTOR};
pub use error::{
    AttemptError, ConfigError, ConnectError, DisconnectReason, EncodeError, FrameViolation,
    RequestError, RequestFailure, SendError, SessionError, Violation,
};
pub use event::{
    DropReason, EndReason, Event, Output, Retry, Role, StreamEnd, StreamEvent, StreamEventKind,
};
pub use frame::{DataFrame, InFrame, OutFrame, Utf8Bytes};
pub use ids::{ConnId, FrameId, MessageId, RequestId, StreamKey};
pub use input::Input;
pub use liveness::LivenessConfig;
pub use protocol::{
    Acked, Decoded, EncodedRequest, Opening, Phase, Protocol, Rejection, RequestMeta, StreamFrame,
    StreamState, TextMode,
};
pub use queue::{OfflinePolicy, Overflow, QueueConfig};
pub use resume::{MAX_RESUME_TOKEN, Recovery, Resume};
/// The JSON library of the built-in profiles (`HelloAck`, `Gateway`), re-exported so that
/// their payloads can be built and read without a dependency of one's own.
pub use serde_json;
pub use session::Session;
pub use stats::SessionStats;
pub use status::Status;
pub use streams::StreamConfig;
pub use timer::TimerKind;

/// The epoch unit tests measure from.
#[cfg(test)]
#[allow(clippy::disallowed_methods)] // Tests need one arbitrary epoch; only offsets from it matter.
pub(crate) fn test_epoch() -> std::time::Instant {
    std::time::Instant::now()
}
