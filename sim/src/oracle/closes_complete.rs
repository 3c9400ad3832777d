//! A close ends in a confirmed close or an abort within `close_timeout`, and a peer that
//! sent a close frame gets one back.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tether_core::{ConnId, Input, Output, Protocol};

use super::{First, Violation, finished, secs, sleep_until};
use crate::timeline::{Entry, Fact, Timeline};

pub(super) const NAME: &str = "closes_complete";

/// Two clauses, judged from what the world saw:
///
/// - every [`Output::CloseTransport`] on a connection at `t` is settled by
///   `t + close_timeout`: the world reported the connection closed or failed
///   ([`Input::TransportClosed`] / [`Input::TransportFailed`] for it, or
///   [`Input::ProtocolError`]: the link failed it), or the session
///   aborted it ([`Output::AbortTransport`]). A sleep
///   ([`Fault::ClockJump`](crate::Fault::ClockJump)) over that deadline moves it to the
///   wake-up. A record later than the deadline is reported at the close. (A close among
///   the outputs of the very input that reported its connection gone — a timer due in
///   that instant fired first — is settled by that input);
/// - every close frame of the peer that the world delivered to the session
///   ([`Input::TransportClosed`] with a code, before the session closed or aborted that
///   connection itself) is answered: by the end of a finished run the world's server has
///   received a close frame on that connection ([`Fact::CloseReceived`]). Reported at the
///   peer's close. Timelines without world facts (a replayed trace) skip this clause.
#[must_use]
pub fn closes_complete<P: Protocol>(tl: &Timeline<P>) -> Option<Violation> {
    let limit = tl.config.close_timeout;
    let mut first = First::new(NAME, tl);
    // Closes awaiting settlement: conn → (step, deadline).
    let mut closing: BTreeMap<ConnId, (usize, Duration)> = BTreeMap::new();
    // Connections the session closed or aborted.
    let mut ended_here: BTreeSet<ConnId> = BTreeSet::new();
    // Peer closes awaiting the server's receipt of an answer: conn → step.
    let mut unanswered: BTreeMap<ConnId, usize> = BTreeMap::new();
    let mut answered: BTreeSet<ConnId> = BTreeSet::new();
    let mut facts = false;
    // The connection the input under way reported closed or failed: a close among that
    // call's outputs (a timer that fired first in the call) is settled by the input.
    let mut gone_in_call: Option<ConnId> = None;
    for (i, r) in tl.records.iter().enumerate() {
        if !matches!(r.entry, Entry::Output(_) | Entry::Sizes(_)) {
            gone_in_call = None;
        }
        if let Some((conn, (step, deadline))) = closing.iter().min_by_key(|(_, (_, d))| *d)
            && r.at > *deadline
        {
            first.offer(*step, || {
                format!(
                    "the close of {conn} here was neither confirmed nor aborted by +{} \
                     (close_timeout {limit:?}); still open at +{}",
                    secs(*deadline),
                    secs(r.at)
                )
            });
            break;
        }
        match &r.entry {
            Entry::Output(Output::CloseTransport { conn, .. }) => {
                ended_here.insert(*conn);
                if gone_in_call != Some(*conn) {
                    closing.insert(*conn, (i, r.at.saturating_add(limit)));
                }
            }
            Entry::Output(Output::AbortTransport { conn }) => {
                ended_here.insert(*conn);
                closing.remove(conn);
            }
            Entry::Input(Input::TransportClosed { conn, code, .. }) => {
                gone_in_call = Some(*conn);
                closing.remove(conn);
                if code.is_some() && !ended_here.contains(conn) && !answered.contains(conn) {
                    unanswered.entry(*conn).or_insert(i);
                }
            }
            // The link refused what the peer sent and failed the connection itself.
            Entry::Input(
                Input::TransportFailed { conn, .. } | Input::ProtocolError { conn, .. },
            ) => {
                gone_in_call = Some(*conn);
                closing.remove(conn);
            }
            Entry::Fact(fact) => {
                facts = true;
                if let Fact::CloseReceived { conn, .. } = fact {
                    answered.insert(*conn);
                    unanswered.remove(conn);
                }
            }
            Entry::Fault(_) => {
                if let Some(wake) = sleep_until(r.at, &r.entry) {
                    for (_, deadline) in closing.values_mut() {
                        if *deadline >= r.at && *deadline < wake {
                            *deadline = wake;
                        }
                    }
                }
            }
            _ => {}
        }
    }
    if facts
        && finished(tl).is_some()
        && let Some((conn, step)) = unanswered.iter().min_by_key(|(_, s)| **s)
    {
        first.offer(*step, || {
            format!("the peer's close frame on {conn} here was never answered with a close frame")
        });
    }
    first.into_inner()
}
