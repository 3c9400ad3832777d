//! No timer or input of an older connection generation changes a newer one.

use tether_core::{
    AttemptError, ConnId, DisconnectReason, DropReason, EndReason, Event, OutFrame, Output,
    Protocol, RequestFailure, SessionError, Status, StreamEventKind,
};

use super::{First, Violation};
use crate::timeline::{Entry, Timeline};

pub(super) const NAME: &str = "old_generations_inert";

/// An input whose connection is not the session's current one — the current connection
/// is the one of the latest [`Output::OpenTransport`], until its
/// [`Event::AttemptFailed`] / [`Event::Disconnected`] or the session's [`Event::Ended`] —
/// produces no output except [`Output::AbortTransport`] (the answer to a late
/// `TransportOpened`). The outputs that follow an input record up to the next non-output
/// record are that input's effects.
///
/// Every call first fires the timers due at its instant, so a stale input that arrives in
/// the instant a deadline expires (or the first input after the host slept) is followed
/// by that timer's effects. The timeline does not record deadlines, so outputs a timer can
/// produce are let through; reported are the outputs only an input can cause:
///
/// - anything naming the stale connection except `AbortTransport`;
/// - `StatusChanged` to `Open`, `Opened`, `Message`, `Unsolicited`, `Violation`,
///   `SlowWrite`, a stream event other than `Ended`, a response other than a local
///   failure (timeout, disconnect, drop, close, failure), a non-ping `SendFrame`, a
///   `MessageDropped` for overflow;
/// - a disconnect, failed attempt or end whose reason only a transport input gives (a
///   close, a failed write, a transport failure, a rejected handshake, a peer's close).
#[must_use]
pub fn old_generations_inert<P: Protocol>(tl: &Timeline<P>) -> Option<Violation> {
    let mut first = First::new(NAME, tl);
    let mut current: Option<ConnId> = None;
    // The stale input whose outputs are being read: (step, its connection).
    let mut stale: Option<(usize, ConnId)> = None;
    for (i, r) in tl.records.iter().enumerate() {
        match &r.entry {
            Entry::Output(out) => {
                if let Some((s, conn)) = stale
                    && let Some(why) = input_only(out, conn)
                {
                    first.offer(i, || {
                        format!(
                            "{why} after an input of {conn} (step {s}), which is not the \
                             current connection ({})",
                            current.map_or_else(|| "none".to_owned(), |c| c.to_string())
                        )
                    });
                    break;
                }
                match out {
                    Output::OpenTransport { conn, .. } => current = Some(*conn),
                    Output::Event(
                        Event::AttemptFailed { conn, .. } | Event::Disconnected { conn, .. },
                    ) if current == Some(*conn) => current = None,
                    Output::Event(Event::Ended(_)) => current = None,
                    _ => {}
                }
            }
            Entry::Input(input) => {
                let conn = input.conn();
                stale = (current != Some(conn)).then_some((i, conn));
            }
            Entry::Sizes(_) => {}
            _ => stale = None,
        }
    }
    first.into_inner()
}

/// Why `out` cannot be an effect of a timer, given that the input being applied belongs
/// to `stale`.
fn input_only<P: Protocol>(out: &Output<P>, stale: ConnId) -> Option<String> {
    let names_stale = |conn: &ConnId| *conn == stale;
    let what = match out {
        Output::AbortTransport { .. } | Output::OpenTransport { .. } => return None,
        Output::SendFrame { conn, .. } if names_stale(conn) => "a write on it",
        Output::SendFrame {
            payload: OutFrame::Ping(_),
            ..
        } => return None,
        Output::SendFrame { .. } => "a data frame written",
        Output::CloseTransport { conn, .. } if names_stale(conn) => "a close of it",
        Output::CloseTransport { .. } => return None,
        Output::StatusChanged { to, .. } if *to == Status::Open => "the status turning open",
        Output::StatusChanged { .. } => return None,
        Output::Event(ev) => return event_input_only(ev, stale),
        _ => return None,
    };
    Some(what.to_owned())
}

fn event_input_only<P: Protocol>(ev: &Event<P>, stale: ConnId) -> Option<String> {
    let what = match ev {
        Event::Opened { conn, .. } => format!("Opened({conn})"),
        Event::Disconnected { conn, .. } if *conn == stale => format!("Disconnected({conn})"),
        Event::Disconnected { reason, .. } if !timer_disconnect(reason) => {
            format!("a disconnect ({reason:?})")
        }
        Event::AttemptFailed { conn, .. } if *conn == stale => format!("AttemptFailed({conn})"),
        Event::AttemptFailed { error, .. } if !timer_attempt_error(error) => {
            format!("a failed attempt ({error})")
        }
        Event::Ended(reason) if !timer_end(reason) => format!("Ended({reason:?})"),
        Event::Message(_) => "a message".to_owned(),
        Event::Unsolicited(_) => "an unsolicited stream event".to_owned(),
        Event::Violation { conn, .. } => format!("a protocol violation on {conn}"),
        Event::SlowWrite { conn, .. } => format!("a slow write on {conn}"),
        Event::Stream(s) if !matches!(s.kind, StreamEventKind::Ended(_)) => {
            format!("a stream event of {:?}", s.key.as_str())
        }
        Event::Response { id, result } => match result {
            Err(
                RequestFailure::Timeout
                | RequestFailure::Disconnected
                | RequestFailure::Dropped
                | RequestFailure::Closed
                | RequestFailure::Failed,
            ) => return None,
            _ => format!("an answer to {id}"),
        },
        Event::MessageDropped {
            id,
            reason: DropReason::Overflow,
        } => format!("{id} dropped for overflow"),
        _ => return None,
    };
    Some(what)
}

fn timer_disconnect(reason: &DisconnectReason) -> bool {
    matches!(
        reason,
        DisconnectReason::Stale | DisconnectReason::SendDeadline
    )
}

fn timer_attempt_error(error: &AttemptError) -> bool {
    match error {
        AttemptError::ConnectTimeout
        | AttemptError::HandshakeTimeout
        | AttemptError::SendDeadline => true,
        AttemptError::Disconnected(reason) => timer_disconnect(reason),
        _ => false,
    }
}

fn timer_end(reason: &EndReason) -> bool {
    match reason {
        EndReason::Idle | EndReason::ClosedByUser => true,
        EndReason::Failed(SessionError::AttemptsExhausted { last, .. }) => {
            timer_attempt_error(last)
        }
        EndReason::Failed(SessionError::FirstConnect(error)) => timer_attempt_error(error),
        _ => false,
    }
}
