//! The record of one run: every command, input, timer, output and fault, with its
//! simulated time. Oracles judge runs by reading it.

use std::fmt;
use std::time::Duration;

use derive_where::derive_where;
use tether_core::{
    Config, ConnId, ConnectError, Input, MessageId, Output, Protocol, RequestError, RequestId,
    SendError, Status, TimerKind,
};

use crate::fault::Fault;

/// A user command the workload issued, with what the session answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandRecord {
    /// `connect`.
    Connect,
    /// `send`.
    Send(Result<MessageId, SendError>),
    /// `request`; `stream` says whether the request starts a stream.
    Request {
        /// The id, or the refusal.
        result: Result<RequestId, RequestError>,
        /// Whether it pre-registered a stream.
        stream: bool,
    },
    /// `close`.
    Close,
    /// `terminate`.
    Terminate,
    /// `disconnect` (pause), with the session's answer.
    Disconnect(Result<(), ConnectError>),
    /// `resume`, with the session's answer.
    Resume(Result<(), ConnectError>),
    /// `reconnect`, with the session's answer.
    Reconnect(Result<(), ConnectError>),
}

/// Table sizes after a step, for the bounds oracle.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sizes {
    /// Requests awaiting an outcome.
    pub pending_requests: usize,
    /// Frames in the offline queue.
    pub queued: usize,
    /// Open streams.
    pub open_streams: usize,
    /// Remembered `(stream, seq)` pairs.
    pub remembered: usize,
    /// Writes not yet reported complete.
    pub pending_writes: usize,
}

/// The session's state when the run ended (after the final close).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Final {
    /// Its status.
    pub status: Status,
    /// Whether every transport is closed.
    pub is_closed: bool,
    /// Whether a timer is still armed.
    pub timer_armed: bool,
    /// What its tables still hold.
    pub sizes: Sizes,
}

/// What the world itself saw happen, whatever the session reports: the ledger the outcome
/// oracles judge by. The world records a fact when it happens on its side of the wire —
/// never among the outputs of a session call, so a call's effects stay contiguous.
///
/// Frames are identified by a [`fingerprint`] of their kind and bytes (not by the
/// session's frame ids, which are the session's own bookkeeping).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fact {
    /// The message of the `send` command recorded next, as the world encodes it (only
    /// when the world was given an encoder with
    /// [`World::identify_sends`](crate::World::identify_sends)): its fingerprint and
    /// length in bytes.
    Message {
        /// The [`fingerprint`] of the frame it should travel in.
        fingerprint: u64,
        /// Its payload's length in bytes.
        len: usize,
    },
    /// The server received a data frame on `conn`.
    Received {
        /// The connection.
        conn: ConnId,
        /// The frame's [`fingerprint`].
        fingerprint: u64,
    },
    /// The network lost a data frame the session wrote on `conn` after accepting the
    /// write: the link was half-open, or the server's end was already closed when the
    /// frame arrived. The session cannot know of such a loss.
    Lost {
        /// The connection.
        conn: ConnId,
        /// The frame's [`fingerprint`].
        fingerprint: u64,
    },
    /// The server's end of `conn` closed: with a close frame carrying `code`, or with no
    /// close frame at all (`None`: a dropped connection).
    ServerClosed {
        /// The connection.
        conn: ConnId,
        /// The code of the close frame the server sent, if it sent one.
        code: Option<u16>,
        /// Whether the client can learn of it (the link was not half-open).
        delivered: bool,
    },
    /// The server received a close frame on `conn`: the client's close, or its answer
    /// to the server's.
    CloseReceived {
        /// The connection.
        conn: ConnId,
        /// Its code.
        code: Option<u16>,
    },
    /// The frame handed to the session next (the following [`Entry::Input`]) carries
    /// event `seq` of stream `key`, as the world reads it (only when the world was given
    /// a reader with [`World::identify_events`](crate::World::identify_events)).
    StreamEvent {
        /// The connection it arrived on.
        conn: ConnId,
        /// The stream, as the peer named it: the [`fingerprint`] of its name as text
        /// (`fingerprint(false, key.as_bytes())`), so that facts stay `Copy`.
        key: u64,
        /// The event's number.
        seq: u64,
    },
}

/// A frame's fingerprint: FNV-1a over a kind byte (`b't'` text, `b'b'` binary) and its
/// bytes. Deterministic across runs and platforms.
#[must_use]
pub fn fingerprint(binary: bool, bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in std::iter::once(if binary { b'b' } else { b't' }).chain(bytes.iter().copied()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// One entry of the timeline.
#[derive_where(Clone, Debug, PartialEq)]
pub enum Entry<P: Protocol> {
    /// A user command.
    Command(CommandRecord),
    /// A transport input handed to the session.
    Input(Input),
    /// `handle_timeout` at the deadline the session asked for, and why.
    Timer(TimerKind),
    /// Something the session emitted.
    Output(Output<P>),
    /// A fault the plan applied.
    Fault(Fault),
    /// The fault phase ended: every fault healed, the liveness phase begins.
    Heal,
    /// Table sizes after a step (recorded when they change).
    Sizes(Sizes),
    /// The run's end state.
    Final(Final),
    /// Something the world saw on its side of the wire.
    Fact(Fact),
}

/// An entry with its simulated time.
#[derive_where(Clone, Debug, PartialEq)]
pub struct Record<P: Protocol> {
    /// Time since the run started.
    pub at: Duration,
    /// What happened.
    pub entry: Entry<P>,
}

/// The timeline of one run.
#[derive_where(Clone, Debug)]
pub struct Timeline<P: Protocol> {
    /// The session's configuration.
    pub config: Config,
    /// When the fault phase ended.
    pub heal_at: Option<Duration>,
    /// The records, in order.
    pub records: Vec<Record<P>>,
}

impl<P: Protocol> Timeline<P> {
    /// An empty timeline for a session with this configuration.
    pub fn new(config: Config) -> Self {
        Timeline {
            config,
            heal_at: None,
            records: Vec::new(),
        }
    }

    /// Appends a record.
    pub fn push(&mut self, at: Duration, entry: Entry<P>) {
        self.records.push(Record { at, entry });
    }

    /// The outputs, with their step index.
    pub fn outputs(&self) -> impl Iterator<Item = (usize, Duration, &Output<P>)> {
        self.records
            .iter()
            .enumerate()
            .filter_map(|(i, r)| match &r.entry {
                Entry::Output(o) => Some((i, r.at, o)),
                _ => None,
            })
    }

    /// The final state, if the run reached its end.
    pub fn final_state(&self) -> Option<Final> {
        self.records.iter().rev().find_map(|r| match r.entry {
            Entry::Final(f) => Some(f),
            _ => None,
        })
    }
}

impl<P: Protocol> fmt::Display for Timeline<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.records.iter().enumerate() {
            let what = match &r.entry {
                Entry::Command(c) => format!("command  {c:?}"),
                Entry::Input(x) => format!("input    {x:?}"),
                Entry::Timer(k) => format!("timer    {k:?}"),
                Entry::Output(o) => format!("output   {o:?}"),
                Entry::Fault(x) => format!("FAULT    {x:?}"),
                Entry::Heal => "HEAL     faults healed; liveness phase".to_owned(),
                Entry::Sizes(s) => format!("sizes    {s:?}"),
                Entry::Final(x) => format!("final    {x:?}"),
                Entry::Fact(x) => format!("world    {x:?}"),
            };
            writeln!(f, "{i:>6}  +{:>10.3}s  {what}", r.at.as_secs_f64())?;
        }
        Ok(())
    }
}
