//! Ready protocols: [`Raw`], [`HelloAck`] and [`Gateway`].
//!
//! - [`Raw`]: no handshake, no requests; every data frame is a message.
//! - [`HelloAck`]: JSON, the client speaks first (`hello` → `hello_ack`), numeric request
//!   ids, stream events keyed by the request id.
//! - [`Gateway`]: the OpenClaw gateway protocol, the server speaks first
//!   (`connect.challenge` → `connect` → `hello-ok`), `req`/`res`/`event` frames, chat
//!   runs as streams.
//!
//! The JSON profiles read only a frame's envelope (its `type`, ids, sequence numbers,
//! stream keys and states) to route it, and hand payloads to the application as
//! [`JsonPayload`]s: slices of the received frame, decoded on demand into the
//! application's own `serde::Deserialize` types ([`JsonPayload::decode`]) or into a
//! `serde_json::Value` ([`JsonPayload::value`]). A payload that does not match the type
//! asked for is a [`PayloadError`] of that call, never a violation of the session.
//!
//! The wire formats are described in `docs/protocols.md`, with a guide to writing a
//! [`Protocol`](crate::Protocol) of your own.

mod gateway;
mod hello_ack;
mod json;
mod payload;
mod raw;
mod scan;

pub use gateway::{
    ChatAbortResult, ChatHistory, ChatInjectAck, ChatMessage, ChatSendAck, Gateway, GatewayError,
    GatewayEvent, GatewayOptions, GatewayRequest, UnexpectedPayload,
};
pub use hello_ack::{HelloAck, HelloAckRequest};
pub use payload::{JsonPayload, PayloadError};
pub use raw::Raw;
