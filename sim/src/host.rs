//! The host a simulated end runs on, which may sleep (`Fault::ClockJump`, the server
//! role's `PeerAction::ClockJump`): the network goes on, but the machine is not called.
//! Inputs that arrive meanwhile are held and handed over, in order, when the host wakes.
//! The value world's session and the server role's connection run on one.

use std::collections::VecDeque;
use std::time::Duration;

use tether_core::Input;

/// A host's sleep and the inputs it holds meanwhile.
#[derive(Debug, Default)]
pub(crate) struct Host {
    /// Asleep before this instant.
    asleep_until: Duration,
    /// Inputs that arrived while asleep, oldest first.
    held: VecDeque<Input>,
}

impl Host {
    /// The host sleeps from `now` for `d` (a sleep already longer goes on).
    pub(crate) fn sleep(&mut self, now: Duration, d: Duration) {
        self.asleep_until = self.asleep_until.max(now + d);
    }

    /// The host is awake by `at` at the latest, whatever sleep is under way.
    pub(crate) fn wake_by(&mut self, at: Duration) {
        self.asleep_until = self.asleep_until.min(at);
    }

    /// Whether the host sleeps at `now`.
    pub(crate) fn asleep(&self, now: Duration) -> bool {
        now < self.asleep_until
    }

    /// When something due at `at` can happen on this host: once it is awake.
    pub(crate) fn awake_at(&self, at: Duration) -> Duration {
        at.max(self.asleep_until)
    }

    /// `input` if the host is awake at `now` to take it; otherwise the host holds it and
    /// there is nothing to hand over yet.
    pub(crate) fn admit(&mut self, now: Duration, input: Input) -> Option<Input> {
        if self.asleep(now) {
            self.held.push_back(input);
            None
        } else {
            Some(input)
        }
    }

    /// When the held inputs are due to be handed over (`None`: none held).
    pub(crate) fn release_at(&self, now: Duration) -> Option<Duration> {
        (!self.held.is_empty()).then(|| self.awake_at(now))
    }

    /// Whether held inputs wait for a host awake at `now`.
    pub(crate) fn releases(&self, now: Duration) -> bool {
        !self.asleep(now) && !self.held.is_empty()
    }

    /// The oldest held input, to hand over now.
    pub(crate) fn release(&mut self) -> Option<Input> {
        self.held.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use tether_core::ConnId;

    use super::*;

    #[test]
    fn a_sleeping_host_holds_inputs_and_hands_them_over_in_order() {
        let s = Duration::from_secs;
        let opened = |n| Input::TransportOpened {
            conn: ConnId::from_raw(n),
        };
        let mut host = Host::default();
        assert_eq!(host.admit(s(0), opened(1)), Some(opened(1)));
        host.sleep(s(1), s(10));
        host.sleep(s(2), s(3));
        assert!(
            host.asleep(s(10)) && !host.asleep(s(11)),
            "the longer sleep wins"
        );
        assert_eq!(host.admit(s(4), opened(2)), None);
        assert_eq!(host.admit(s(5), opened(3)), None);
        assert_eq!(host.release_at(s(5)), Some(s(11)));
        assert!(!host.releases(s(5)));
        host.wake_by(s(8));
        assert!(host.releases(s(8)));
        assert_eq!(host.release(), Some(opened(2)));
        assert_eq!(host.release(), Some(opened(3)));
        assert_eq!(host.release(), None);
        assert_eq!(host.release_at(s(8)), None);
    }
}
