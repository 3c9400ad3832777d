//! A fired deadline never stays put.

use std::time::Duration;

use tether_core::{Protocol, TimerKind};

use super::{First, Violation};
use crate::timeline::{Entry, Timeline};

pub(super) const NAME: &str = "deadlines_move";

/// After `handle_timeout(t)` at a deadline the session asked for (a `Timer(kind)` record
/// at `t`), the session must not ask for the same `(t, kind)` again: a deadline that
/// stays put after firing makes every driver spin (STYLE rule 4). A second `Timer` record
/// with the same time and kind is reported unless an input or a command came in between.
#[must_use]
pub fn deadlines_move<P: Protocol>(tl: &Timeline<P>) -> Option<Violation> {
    let mut first = First::new(NAME, tl);
    let mut last: Option<(usize, Duration, TimerKind)> = None;
    for (i, r) in tl.records.iter().enumerate() {
        match &r.entry {
            Entry::Timer(kind) => {
                if let Some((s, t, k)) = last
                    && t == r.at
                    && k == *kind
                {
                    first.offer(i, || {
                        format!(
                            "{kind:?} at the same instant again (fired at step {s}): the \
                             deadline did not move"
                        )
                    });
                    break;
                }
                last = Some((i, r.at, *kind));
            }
            Entry::Input(_) | Entry::Command(_) => last = None,
            _ => {}
        }
    }
    first.into_inner()
}
