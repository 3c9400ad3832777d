//! Reconnect backoff: a schedule of base waits with jitter, a floor per close class, and an
//! attempt counter that resets only after a connection proved stable.

use std::time::Duration;

use crate::config::check_ceiling;
use crate::error::ConfigError;

/// How a wait is randomised within its step of the schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Jitter {
    /// Exactly the schedule's step (for tests; a fleet of clients would reconnect in step).
    None,
    /// Uniform in `[0, step]` ("full jitter"), also at the capped last step.
    Full,
    /// Uniform in `[step / 2, step]`.
    Equal,
}

/// The backoff part of [`Config`](crate::Config).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackoffConfig {
    /// Base wait per failed attempt; the last step repeats. Default 1, 2, 4, 8, 16, 30 s.
    pub schedule: Vec<Duration>,
    /// Randomisation within a step. Default [`Jitter::Full`].
    pub jitter: Jitter,
    /// How long a connection must stay open after its handshake before the attempt
    /// counter resets. Default 5 s, so accept-then-close servers cannot cause a hot loop.
    pub stable_after: Duration,
    /// Consecutive failed attempts after which the session gives up as `Failed`.
    /// Default `None` (retry for ever).
    pub max_attempts: Option<u32>,
    /// The longest retry floor honoured. A floor comes from the peer (HTTP `Retry-After`,
    /// a HelloAck `hello_error`'s or a Gateway error's `retryAfterMs`) or from the close
    /// policy (1013); a longer one counts as this long, so a peer cannot park reconnects
    /// for centuries. Default 10 minutes; at most [`MAX_DURATION`](crate::MAX_DURATION).
    /// Zero ignores every floor.
    pub max_floor: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            schedule: [1, 2, 4, 8, 16, 30]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
            jitter: Jitter::Full,
            stable_after: Duration::from_secs(5),
            max_attempts: None,
            max_floor: Duration::from_secs(10 * 60),
        }
    }
}

impl BackoffConfig {
    /// Checks the values that cannot work: an empty schedule, an attempt limit of zero,
    /// and a step, `stable_after` or `max_floor` above
    /// [`MAX_DURATION`](crate::MAX_DURATION).
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.schedule.is_empty() {
            return Err(ConfigError::EmptyBackoff);
        }
        if self.max_attempts == Some(0) {
            return Err(ConfigError::ZeroBound("max_attempts"));
        }
        let steps = self.schedule.iter().map(|d| ("backoff.schedule", *d));
        let bounded: Vec<_> = steps
            .chain([
                ("backoff.stable_after", self.stable_after),
                ("backoff.max_floor", self.max_floor),
            ])
            .collect();
        check_ceiling(&bounded)
    }

    /// The floor actually applied: `floor` capped at [`max_floor`](Self::max_floor), or
    /// none at all when `max_floor` is zero (every floor ignored).
    #[must_use]
    pub fn capped_floor(&self, floor: Option<Duration>) -> Option<Duration> {
        if self.max_floor.is_zero() {
            return None;
        }
        floor.map(|f| f.min(self.max_floor))
    }

    /// The base step for the `failures`-th consecutive failure (1-based).
    #[must_use]
    pub fn step(&self, failures: u32) -> Duration {
        let i = (failures.max(1) - 1) as usize;
        self.schedule
            .get(i)
            .or(self.schedule.last())
            .copied()
            .unwrap_or_default()
    }

    /// The inclusive bounds a wait after the `failures`-th failure must lie in, given a
    /// floor. The simulator's oracle checks every wait against these.
    ///
    /// Without a floor the wait is jittered within the schedule's step. A floor (1013,
    /// HTTP 429, a server's `retryAfterMs`) does not clamp the wait onto itself — a fleet
    /// told "30 s" would then return in the same instant — but spreads it over
    /// `[floor, floor + max(floor, step)]`. The floor is first capped at
    /// [`max_floor`](Self::max_floor).
    #[must_use]
    pub fn bounds(&self, failures: u32, floor: Option<Duration>) -> (Duration, Duration) {
        let floor = self.capped_floor(floor);
        let step = self.step(failures);
        let (lo, hi) = match self.jitter {
            Jitter::None => (step, step),
            Jitter::Full => (Duration::ZERO, step),
            Jitter::Equal => (step / 2, step),
        };
        match (floor, self.jitter) {
            (None, _) => (lo, hi),
            (Some(f), Jitter::None) => (f.max(step), f.max(step)),
            (Some(f), _) => (f, f.saturating_add(f.max(hi))),
        }
    }

    /// Draws the wait after the `failures`-th failure.
    pub(crate) fn draw(
        &self,
        failures: u32,
        floor: Option<Duration>,
        rng: &mut fastrand::Rng,
    ) -> Duration {
        let (lo, hi) = self.bounds(failures, floor);
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rng.u64(nanos(lo)..=nanos(hi)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_caps_at_last_step() {
        let c = BackoffConfig::default();
        let secs: Vec<u64> = (1..=8).map(|n| c.step(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30, 30]);
    }

    #[test]
    fn full_jitter_survives_the_cap() {
        let c = BackoffConfig::default();
        let mut rng = fastrand::Rng::with_seed(7);
        let draws: Vec<Duration> = (0..200).map(|_| c.draw(12, None, &mut rng)).collect();
        assert!(draws.iter().all(|d| *d <= Duration::from_secs(30)));
        let distinct: std::collections::BTreeSet<_> = draws.iter().collect();
        assert!(distinct.len() > 150, "capped waits must still be spread");
        assert!(draws.iter().any(|d| *d < Duration::from_secs(15)));
    }

    #[test]
    fn a_floor_spreads_waits_instead_of_clamping_them() {
        let c = BackoffConfig::default();
        let mut rng = fastrand::Rng::with_seed(1);
        let floor = Some(Duration::from_secs(30));
        assert_eq!(
            c.bounds(1, floor),
            (Duration::from_secs(30), Duration::from_secs(60))
        );
        let draws: Vec<Duration> = (0..500).map(|_| c.draw(1, floor, &mut rng)).collect();
        assert!(draws.iter().all(|d| (30..=60).contains(&d.as_secs())));
        // Spread across the window, not piled on the floor.
        let early = draws.iter().filter(|d| d.as_secs() < 45).count();
        assert!((150..350).contains(&early), "{early}");
        let none = BackoffConfig {
            jitter: Jitter::None,
            ..c
        };
        assert_eq!(none.draw(2, floor, &mut rng), Duration::from_secs(30));
    }

    #[test]
    fn a_floor_is_capped_at_max_floor() {
        let c = BackoffConfig::default();
        let ten_min = Duration::from_secs(600);
        assert_eq!(
            c.bounds(1, Some(Duration::MAX)),
            (ten_min, ten_min + ten_min)
        );
        let mut rng = fastrand::Rng::with_seed(5);
        assert!(c.draw(1, Some(Duration::MAX), &mut rng) <= ten_min * 2);
        let none = BackoffConfig {
            jitter: Jitter::None,
            ..c
        };
        assert_eq!(none.bounds(1, Some(Duration::MAX)), (ten_min, ten_min));
    }

    #[test]
    fn a_zero_max_floor_ignores_every_floor() {
        // A zero floor would widen equal jitter's window down to 0: "ignored" means the
        // wait is drawn as if no floor had been asked for.
        let c = BackoffConfig {
            jitter: Jitter::Equal,
            max_floor: Duration::ZERO,
            ..BackoffConfig::default()
        };
        let floor = Some(Duration::from_secs(30));
        assert_eq!(c.capped_floor(floor), None);
        assert_eq!(c.bounds(3, floor), c.bounds(3, None));
        assert_eq!(
            c.bounds(3, floor),
            (Duration::from_secs(2), Duration::from_secs(4))
        );
    }

    #[test]
    fn equal_and_no_jitter_bounds() {
        let mut c = BackoffConfig {
            jitter: Jitter::Equal,
            ..BackoffConfig::default()
        };
        assert_eq!(
            c.bounds(3, None),
            (Duration::from_secs(2), Duration::from_secs(4))
        );
        c.jitter = Jitter::None;
        let mut rng = fastrand::Rng::with_seed(3);
        assert_eq!(c.draw(2, None, &mut rng), Duration::from_secs(2));
    }
}
