//! No connect attempt after a fatal close or a user close.

use tether_core::{Event, Output, Protocol};

use super::{First, Violation};
use crate::timeline::{CommandRecord, Entry, Timeline};

pub(super) const NAME: &str = "no_attempt_after_end";

/// No [`Output::OpenTransport`] after the session ended ([`Event::Ended`]: a fatal close,
/// a user close, a normal close by the peer, the idle timeout, exhausted attempts) or
/// after a `close`/`terminate` command.
///
/// A command first fires the timers due at its instant (STYLE rule 5), so a backoff that
/// expires in the very instant of a `close` may open a transport among the close's own
/// outputs, before its `Ended` (the close aborts it at once). That attempt was due before
/// the close and is accepted; anything after the `Ended` — or after the close's outputs,
/// if it emitted no `Ended` — is reported.
#[must_use]
pub fn no_attempt_after_end<P: Protocol>(tl: &Timeline<P>) -> Option<Violation> {
    let mut first = First::new(NAME, tl);
    // Step of whatever ended the session.
    let mut ended: Option<usize> = None;
    // A close/terminate whose outputs are being read and have not ended the session yet.
    let mut closing: Option<usize> = None;
    for (i, r) in tl.records.iter().enumerate() {
        match &r.entry {
            Entry::Output(Output::Event(Event::Ended(_))) => {
                ended.get_or_insert(i);
                closing = None;
            }
            Entry::Output(Output::OpenTransport { conn, attempt }) => {
                if let Some(e) = ended {
                    first.offer(i, || {
                        format!(
                            "{conn} (attempt {attempt}) opened after the session ended at step {e}"
                        )
                    });
                    break;
                }
            }
            Entry::Output(_) => {}
            entry => {
                if let Some(c) = closing.take() {
                    ended.get_or_insert(c);
                }
                if let Entry::Command(CommandRecord::Close | CommandRecord::Terminate) = entry
                    && ended.is_none()
                {
                    closing = Some(i);
                }
            }
        }
    }
    first.into_inner()
}
