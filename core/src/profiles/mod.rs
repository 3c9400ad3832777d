//! Ready protocols: [`Raw`], [`HelloAck`] and [`Gateway`].
//!
//! - [`Raw`]: no handshake, no requests; every data frame is a message.
//! - [`HelloAck`]: JSON, the client speaks first (`hello` → `hello_ack`), numeric request
//!   ids, stream events keyed by the request id.
//! - [`Gateway`]: the OpenClaw gateway protocol, the server speaks first
//!   (`connect.challenge` → `connect` → `hello-ok`), `req`/`res`/`event` frames, chat
//!   runs as streams.
//!
//! The wire formats are described in `docs/protocols.md`, with a guide to writing a
//! [`Protocol`](crate::Protocol) of your own.

mod gateway;
mod hello_ack;
mod json;
mod raw;

pub use gateway::{
    ChatAbortResult, ChatHistory, ChatInjectAck, ChatMessage, ChatSendAck, Gateway, GatewayError,
    GatewayEvent, GatewayOptions, GatewayRequest, UnexpectedPayload,
};
pub use hello_ack::{HelloAck, HelloAckRequest};
pub use raw::Raw;
