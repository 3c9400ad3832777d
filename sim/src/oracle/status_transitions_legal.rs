//! Status changes follow the legal transitions, each reported once.

use tether_core::{Output, Protocol, Status};

use super::{First, Violation};
use crate::timeline::{Entry, Timeline};

pub(super) const NAME: &str = "status_transitions_legal";

/// Every [`Output::StatusChanged`] `{from, to}` continues the previous one (`from` is the
/// previous `to`, starting at [`Status::Idle`]), changes something (`from != to`) and is
/// legal ([`Status::can_become`]); the `Final` record's status is the last one reported
/// (no change went unreported).
#[must_use]
pub fn status_transitions_legal<P: Protocol>(tl: &Timeline<P>) -> Option<Violation> {
    let mut first = First::new(NAME, tl);
    let mut status = Status::Idle;
    let mut since: Option<usize> = None;
    let name = |s: Option<usize>| s.map_or_else(|| "the start".to_owned(), |s| format!("step {s}"));
    for (i, r) in tl.records.iter().enumerate() {
        match &r.entry {
            Entry::Output(Output::StatusChanged { from, to }) => {
                if *from != status {
                    first.offer(i, || {
                        format!(
                            "{from} -> {to}, but the status was {status} (since {})",
                            name(since)
                        )
                    });
                } else if from == to {
                    first.offer(i, || format!("{from} -> {to} changes nothing"));
                } else if !from.can_become(*to) {
                    first.offer(i, || format!("{from} -> {to} is not a legal transition"));
                }
                if first.settled() {
                    break;
                }
                status = *to;
                since = Some(i);
            }
            Entry::Final(f) if f.status != status => {
                first.offer(i, || {
                    format!(
                        "the session ended {}, but the last reported status was {status} ({})",
                        f.status,
                        name(since)
                    )
                });
                break;
            }
            _ => {}
        }
    }
    first.into_inner()
}
