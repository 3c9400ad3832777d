//! The kinds of deadline a session can be waiting for.

/// Why the session wants to be woken. Returned by
/// [`Session::timeout_reason`](crate::Session::timeout_reason).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum TimerKind {
    /// The transport has not opened yet.
    ConnectTimeout,
    /// The handshake has not been acknowledged yet.
    HandshakeTimeout,
    /// The wait before the next connection attempt.
    Backoff,
    /// The open connection will count as stable (attempt counter reset).
    StableReset,
    /// The next ping is due.
    Ping,
    /// Nothing has arrived for the stale threshold (or a probe is waiting).
    Liveness,
    /// The oldest pending write misses its send deadline.
    SendDeadline,
    /// A request times out.
    RequestTimeout,
    /// A closing connection has not confirmed the close.
    CloseTimeout,
    /// The session has been idle for the idle timeout.
    Idle,
    /// Stream bookkeeping expires (dedup memory, cooldown, idle stream).
    StreamExpiry,
    /// A queued message reaches its time to live.
    QueueExpiry,
    /// A server connection's peer has not sent its first data message yet
    /// ([`ServerConfig::first_message_timeout`](crate::server::ServerConfig::first_message_timeout)).
    FirstMessage,
}

/// A machine driven by deadlines (the client session, the server connection): what
/// [`advance`] needs of it. One piece of code clamps time, detects a clock jump and fires
/// what is due, for both.
pub(crate) trait Timed {
    /// The earliest armed deadline and its kind.
    fn next_timer(&self) -> Option<(std::time::Instant, TimerKind)>;
    /// Acts on a deadline that is due; it must disarm or move that deadline.
    fn fire(&mut self, kind: TimerKind, now: std::time::Instant);
    /// `now` is more than the clock-jump threshold past the earliest deadline: the host
    /// slept, so evidence from before the sleep is re-examined instead of acted on.
    fn clock_jumped(&mut self, overshoot: std::time::Duration, now: std::time::Instant);
    /// How far past a deadline `now` must be to count as a clock jump.
    fn clock_jump_threshold(&self) -> std::time::Duration;
    /// The latest `now` seen and the deadline floor, both kept by [`advance`].
    fn clock(&mut self) -> &mut Clock;
}

/// What [`advance`] keeps of a machine between calls.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Clock {
    /// The latest `now` seen.
    pub(crate) now: Option<std::time::Instant>,
    /// A lower bound on the earliest armed deadline, or `Unknown`.
    pub(crate) floor: Floor,
}

/// A lower bound on a machine's earliest armed deadline, kept from one call to the next
/// so that a call whose `now` lies before it knows nothing is due without looking at every
/// timer: on the path of every frame, that look was half of what a `Raw` message cost.
///
/// [`advance`] sets it from the deadlines it has just looked at. A call that then arms a
/// deadline must lower it ([`lower`](Self::lower)) or forget it
/// ([`forget`](Self::forget)); moving a deadline later or disarming one needs neither.
/// The machines forget it after every call but the few frequent ones that keep it, each of
/// which lowers it for what it arms (see `Session::advance_keeping`), so a path no one
/// reviewed only costs the full look. `handle_timeout` always takes the full look and
/// `poll_timeout` never reads the floor, so even a deadline armed below it without lowering
/// it fires when the driver next wakes. Debug builds check the bound against every timer
/// each time a call relies on it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Floor {
    /// Not known: the next call looks at every timer.
    #[default]
    Unknown,
    /// No deadline is armed before this instant.
    At(std::time::Instant),
    /// No deadline is armed at all.
    Unarmed,
}

impl Floor {
    /// Forgets the bound: the next call looks at every timer.
    #[inline]
    pub(crate) fn forget(&mut self) {
        *self = Floor::Unknown;
    }

    /// A deadline at `at` was armed (`None`: beyond the clock's range, so never).
    #[inline]
    pub(crate) fn lower(&mut self, at: Option<std::time::Instant>) {
        let Some(at) = at else { return };
        match *self {
            Floor::At(floor) if floor <= at => {}
            Floor::Unknown => {}
            Floor::At(_) | Floor::Unarmed => *self = Floor::At(at),
        }
    }

    /// Whether no deadline can be due at `now`.
    #[inline]
    fn holds_at(self, now: std::time::Instant) -> bool {
        match self {
            Floor::At(floor) => now < floor,
            Floor::Unarmed => true,
            Floor::Unknown => false,
        }
    }

    /// Whether `next`, the earliest armed deadline, respects the bound.
    fn bounds(self, next: Option<(std::time::Instant, TimerKind)>) -> bool {
        match (self, next) {
            (Floor::Unknown, _) | (_, None) => true,
            (Floor::At(floor), Some((at, _))) => floor <= at,
            (Floor::Unarmed, Some(_)) => false,
        }
    }
}

/// [`advance`], then the floor forgotten: for every call but the few frequent ones that
/// account for what they arm (`advance` itself keeps it for those).
pub(crate) fn advance_forgetting<T: Timed>(
    machine: &mut T,
    now: std::time::Instant,
) -> std::time::Instant {
    let now = advance(machine, now);
    machine.clock().floor.forget();
    now
}

/// [`advance`] with a full look at every timer, whatever the floor says: `handle_timeout`.
/// The driver calls it when `poll_timeout` (which never reads the floor) says a deadline
/// is due, so a deadline armed below the floor by a path that failed to lower it still
/// fires on time. Firing re-reads the deadlines after each timer, so the floor it leaves
/// holds.
pub(crate) fn fire_due<T: Timed>(machine: &mut T, now: std::time::Instant) {
    machine.clock().floor.forget();
    advance(machine, now);
}

/// More timers than this firing in one call means a timer that does not move its own
/// deadline: a bug, stopped here instead of spinning. Far above what a real call fires
/// (every request of a session can share one deadline, and fires in one firing).
const MAX_FIRINGS_PER_CALL: usize = 100_000;

/// Clamps `now` to the latest time `machine` has seen (a `now` earlier than one already
/// seen is treated as that one), then fires every timer due by then, probing first when
/// `now` is far past the earliest deadline. Returns the clamped `now`.
#[inline]
pub(crate) fn advance<T: Timed>(machine: &mut T, now: std::time::Instant) -> std::time::Instant {
    let clock = machine.clock();
    let now = match clock.now {
        Some(last) if now < last => {
            tracing::debug!(behind = ?(last - now), "time went backwards; clamped");
            last
        }
        _ => now,
    };
    clock.now = Some(now);
    let floor = clock.floor;
    if floor.holds_at(now) {
        debug_assert!(
            floor.bounds(machine.next_timer()),
            "a deadline was armed below the floor {floor:?} without lowering it: {:?}",
            machine.next_timer()
        );
        return now;
    }
    // The next deadline is computed once per firing, not once more for the jump check:
    // this is the hot path of every inbound frame.
    let mut next = machine.next_timer();
    if let Some((at, _)) = next
        && at < now
        && now - at > machine.clock_jump_threshold()
    {
        machine.clock_jumped(now - at, now);
        next = machine.next_timer();
    }
    for _ in 0..MAX_FIRINGS_PER_CALL {
        match next {
            Some((at, kind)) if at <= now => {
                machine.fire(kind, now);
                next = machine.next_timer();
            }
            _ => {
                machine.clock().floor = next.map_or(Floor::Unarmed, |(at, _)| Floor::At(at));
                return now;
            }
        }
    }
    debug_assert!(false, "a timer did not move its deadline");
    machine.clock().floor = Floor::Unknown;
    now
}

/// Keeps the earliest of a set of candidate deadlines; ties keep the first offered, so the
/// order of `offer` calls is the tie-break order.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Earliest(Option<(std::time::Instant, TimerKind)>);

impl Earliest {
    #[inline]
    pub(crate) fn offer(&mut self, at: Option<std::time::Instant>, kind: TimerKind) {
        if let Some(at) = at {
            match self.0 {
                Some((best, _)) if best <= at => {}
                _ => self.0 = Some((at, kind)),
            }
        }
    }

    pub(crate) fn get(self) -> Option<(std::time::Instant, TimerKind)> {
        self.0
    }
}

/// The instant `d` after `now`, or `None` when the clock cannot represent it: such a
/// deadline lies beyond the end of time and never fires. Every deadline of the core is
/// computed with this, so no duration (a configured timeout, a caller's request timeout,
/// a heartbeat a peer declared) and no `now` can make `Instant + Duration` overflow.
///
/// The configured durations are bounded by [`Config::validate`](crate::Config::validate)
/// (at most [`MAX_DURATION`](crate::MAX_DURATION)), so for them `None` is only reached
/// when `now` itself is near the end of the clock's range.
#[inline]
#[must_use]
pub(crate) fn after(now: std::time::Instant, d: std::time::Duration) -> Option<std::time::Instant> {
    now.checked_add(d)
}

/// The instant `d` after `now`, or the farthest instant short of it the clock can
/// represent. For bookkeeping that expires once and is then forgotten (stream dedup memory,
/// cooldowns), where "at the end of time" and "never" come to the same.
#[must_use]
pub(crate) fn saturating_after(
    now: std::time::Instant,
    d: std::time::Duration,
) -> std::time::Instant {
    let mut d = d;
    loop {
        if let Some(t) = now.checked_add(d) {
            return t;
        }
        // Halving reaches zero after at most 97 steps, and `now + 0` always exists.
        d /= 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn an_unrepresentable_deadline_is_never() {
        let t0 = crate::test_epoch();
        assert_eq!(
            after(t0, Duration::from_secs(1)),
            Some(t0 + Duration::from_secs(1))
        );
        assert_eq!(after(t0, Duration::MAX), None);
        let far = saturating_after(t0, Duration::MAX);
        assert!(far > t0 + Duration::from_secs(1_000_000_000));
        assert_eq!(
            saturating_after(t0, Duration::from_secs(1)),
            t0 + Duration::from_secs(1)
        );
    }

    #[test]
    fn the_floor_holds_strictly_before_itself_and_only_while_known() {
        let t0 = crate::test_epoch();
        let ns = Duration::from_nanos(1);
        let floor = Floor::At(t0);
        assert!(floor.holds_at(t0 - ns));
        // A deadline at the floor is due at the floor.
        assert!(!floor.holds_at(t0));
        assert!(!floor.holds_at(t0 + ns));
        assert!(Floor::Unarmed.holds_at(t0 + Duration::from_secs(1_000_000)));
        assert!(!Floor::Unknown.holds_at(t0 - ns));
    }

    #[test]
    fn lowering_keeps_the_earliest_and_never_makes_an_unknown_floor_known() {
        let t0 = crate::test_epoch();
        let s = Duration::from_secs(1);
        let mut floor = Floor::At(t0 + s);
        floor.lower(Some(t0 + s + s));
        assert_eq!(floor, Floor::At(t0 + s), "a later deadline leaves it");
        floor.lower(Some(t0));
        assert_eq!(floor, Floor::At(t0), "an earlier one lowers it");
        floor.lower(None);
        assert_eq!(
            floor,
            Floor::At(t0),
            "a deadline beyond the clock's range never fires"
        );
        let mut unarmed = Floor::Unarmed;
        unarmed.lower(Some(t0 + s));
        assert_eq!(unarmed, Floor::At(t0 + s));
        let mut unknown = Floor::Unknown;
        unknown.lower(Some(t0));
        assert_eq!(unknown, Floor::Unknown);
        floor.forget();
        assert_eq!(floor, Floor::Unknown);
    }

    #[test]
    fn the_bound_check_accepts_only_a_floor_at_or_under_the_next_deadline() {
        let t0 = crate::test_epoch();
        let s = Duration::from_secs(1);
        let next = Some((t0 + s, TimerKind::Ping));
        assert!(Floor::At(t0).bounds(next));
        assert!(Floor::At(t0 + s).bounds(next));
        assert!(!Floor::At(t0 + s + s).bounds(next));
        assert!(!Floor::Unarmed.bounds(next));
        assert!(Floor::Unarmed.bounds(None));
        assert!(Floor::Unknown.bounds(next));
    }
}
