//! The record of one run: every command, input, timer, output and fault, with its
//! simulated time. Oracles judge runs by reading it.

use std::fmt;
use std::time::Duration;

use derive_where::derive_where;
use tether_core::{
    Config, Input, MessageId, Output, Protocol, RequestError, RequestId, SendError, Status,
    TimerKind,
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
            };
            writeln!(f, "{i:>6}  +{:>10.3}s  {what}", r.at.as_secs_f64())?;
        }
        Ok(())
    }
}
