//! No write outlives the send deadline without the connection being aborted.

use std::collections::BTreeMap;
use std::time::Duration;

use tether_core::{ConnId, Event, Input, Output, Protocol};

use super::{First, Violation, secs, sleep_until};
use crate::timeline::{Entry, Timeline};

pub(super) const NAME: &str = "send_deadline_kept";

/// Every [`Output::SendFrame`] `{conn, frame}` at `t` is settled by `t + send_deadline`:
/// reported written ([`Input::WriteCompleted`]) or failed ([`Input::WriteFailed`]), or its
/// connection torn down — [`Output::AbortTransport`], [`Output::CloseTransport`],
/// [`Input::TransportClosed`] / [`Input::TransportFailed`] for that connection,
/// [`Event::Disconnected`] / [`Event::AttemptFailed`] for it, or [`Event::Ended`]. A record
/// later than the oldest unsettled write's deadline is reported.
///
/// A write pending when the host slept ([`Fault::ClockJump`](crate::Fault::ClockJump),
/// waking at `w`) gets the deadline `w + send_deadline`: the adapter could not report it
/// during the sleep, and the session re-bases pending writes at the wake-up (or judges
/// them at `w`, which is earlier).
#[must_use]
pub fn send_deadline_kept<P: Protocol>(tl: &Timeline<P>) -> Option<Violation> {
    let limit = tl.config.send_deadline;
    let mut first = First::new(NAME, tl);
    // Unsettled writes by frame id (ids grow with time, so the first is the oldest):
    // frame → (conn, written at, step).
    let mut pending: BTreeMap<u64, (ConnId, Duration, usize)> = BTreeMap::new();
    // Each connection's unsettled frame ids (possibly already settled: removal is lazy).
    let mut by_conn: BTreeMap<ConnId, Vec<u64>> = BTreeMap::new();
    let mut wake = Duration::ZERO;
    for (i, r) in tl.records.iter().enumerate() {
        if let Some((frame, (conn, written, step))) = pending.first_key_value() {
            let start = if *written < wake { wake } else { *written };
            let deadline = start.saturating_add(limit);
            if r.at > deadline {
                first.offer(i, || {
                    format!(
                        "frame#{frame} written on {conn} at step {step} (+{}) neither \
                         completed nor aborted by its deadline +{}",
                        secs(*written),
                        secs(deadline)
                    )
                });
                break;
            }
        }
        let mut teardown = |conn: ConnId| {
            for f in by_conn.remove(&conn).unwrap_or_default() {
                pending.remove(&f);
            }
        };
        match &r.entry {
            Entry::Output(Output::SendFrame { conn, frame, .. }) => {
                pending.insert(frame.get(), (*conn, r.at, i));
                by_conn.entry(*conn).or_default().push(frame.get());
            }
            Entry::Input(
                Input::WriteCompleted { frame, .. } | Input::WriteFailed { frame, .. },
            ) => {
                pending.remove(&frame.get());
            }
            Entry::Input(
                Input::TransportClosed { conn, .. } | Input::TransportFailed { conn, .. },
            )
            | Entry::Output(
                Output::AbortTransport { conn }
                | Output::CloseTransport { conn, .. }
                | Output::Event(Event::Disconnected { conn, .. } | Event::AttemptFailed { conn, .. }),
            ) => teardown(*conn),
            Entry::Output(Output::Event(Event::Ended(_))) => {
                pending.clear();
                by_conn.clear();
            }
            Entry::Fault(_) => {
                if let Some(w) = sleep_until(r.at, &r.entry) {
                    wake = wake.max(w);
                }
            }
            _ => {}
        }
    }
    first.into_inner()
}
