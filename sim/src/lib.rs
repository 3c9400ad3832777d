//! tether-sim: a deterministic simulator for tether sessions.
//!
//! A virtual clock and a seeded, faulty network drive the very same
//! [`Session`](tether_core::Session) the adapters run, against a scripted server, through
//! a [`FaultPlan`]. Every run is recorded as a [`Timeline`] and judged by the invariant
//! [`oracle`]s. Runs take microseconds of real time per simulated minute, so a campaign
//! covers thousands of seeded hours in seconds — and any failing seed replays exactly.
//!
//! [`Campaign`] runs such a campaign for any protocol from an ordinary `#[test]`: the
//! protocol, the peer, the configuration and the workload are closures, and the report
//! carries the summary, each failing seed's shrunk plan and replay line, and the
//! determinism check. The built-in profiles and the `tether-sim` command run on it too.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod campaign;
mod campaign_builder;
pub mod driven;
mod fault;
mod host;
mod link;
mod link_model;
mod net;
pub mod oracle;
pub mod pipe;
mod queue;
pub mod scenario;
mod server;
pub mod server_role;
pub mod servers;
pub mod shrink;
pub mod storm;
pub mod strategy;
mod timeline;
pub mod trace;
mod wire;
pub mod wire_campaign;
pub mod wire_peer;
mod workload;
mod world;
pub mod ws_frames;

pub use campaign_builder::{Campaign, DEFAULT_MEAN_GAP};
pub use fault::{Fault, FaultPlan, Garbage, Hostile};
pub use net::NetConfig;
pub use server::{Accept, FnServer, Server, ServerCtx, ServerEvent, ServerFlags};
pub use timeline::{CommandRecord, Entry, Fact, Final, Record, Sizes, Timeline, fingerprint};
pub use wire::Wire;
pub use workload::{Command, Idle, Poisson, Script, Workload};
pub use world::{Run, RunConfig, World};
