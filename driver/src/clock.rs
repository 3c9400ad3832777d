//! The adapters' clock: monotonic like [`Instant`], but counting the time the host spent
//! suspended, so that a laptop's sleep reaches the session as a clock jump.
//!
//! `Instant::now()` reads `CLOCK_MONOTONIC` on Linux and `CLOCK_UPTIME_RAW` on macOS, and
//! neither advances while the system is suspended. A session fed those instants after a
//! resume sees only the few milliseconds it was awake: it cannot tell that its peer has
//! been silent for an hour, and finds a dead connection only by the ordinary ping and
//! stale path (up to `stale_after`, 75 s by default) instead of the clock-jump probe
//! (`probe_timeout`, 10 s).
//!
//! [`SuspendAwareClock`] keeps one pair of readings taken together, a monotonic
//! [`Instant`] and a clock that counts suspended time (`CLOCK_BOOTTIME` on Linux and
//! Android, `CLOCK_MONOTONIC` on Apple platforms, which keeps counting while asleep), and
//! returns `base + (since_boot_now - since_boot_base)`: an `Instant` that moves on by the
//! suspended time too. Elsewhere (Windows, where `Instant` reportedly counts suspend
//! already, the BSDs, WASI) it is `Instant::now()`.
//!
//! The runtimes' timers still run on the monotonic clock, so a deadline computed from
//! these instants is converted back before it is handed to a timer
//! ([`SuspendAwareClock::to_monotonic`]): minus the suspended time measured so far. What
//! happens on resume: the loop sleeps on its next monotonic timer (which did not count
//! the suspend either) and wakes when it expires, or sooner when a socket becomes
//! readable or writable; the first `now()` after that lies past the session's deadlines by
//! the suspended time, the session reports `Event::ClockJump` and probes the peer with a
//! ping, and the connection survives if the peer answers within `probe_timeout`.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Where [`SuspendAwareClock`] reads the time: the runtime's monotonic clock and a clock
/// that also counts suspended time. [`OsClock`] reads the operating system's; a test
/// supplies a fake pair to simulate a suspend.
pub trait ClockSource: Send + Sync + 'static {
    /// The monotonic clock the runtime's timers run on.
    fn monotonic(&self) -> Instant;

    /// The time since an arbitrary origin, suspended time included; `None` where the
    /// platform offers no such clock (the clock then follows [`monotonic`](Self::monotonic)).
    fn since_boot(&self) -> Option<Duration>;
}

/// The operating system's clocks: `Instant::now()`, and `CLOCK_BOOTTIME` on Linux and
/// Android or `CLOCK_MONOTONIC` on Apple platforms (both count suspended time); none
/// elsewhere.
#[derive(Clone, Copy, Debug, Default)]
pub struct OsClock;

impl ClockSource for OsClock {
    fn monotonic(&self) -> Instant {
        Instant::now()
    }

    fn since_boot(&self) -> Option<Duration> {
        since_boot()
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn since_boot() -> Option<Duration> {
    Some(timespec(rustix::time::clock_gettime(
        rustix::time::ClockId::Boottime,
    )))
}

#[cfg(target_vendor = "apple")]
fn since_boot() -> Option<Duration> {
    // Apple's clock_gettime(3): CLOCK_MONOTONIC "will continue to increment while the
    // system is asleep" (it is the continuous clock); `Instant` uses CLOCK_UPTIME_RAW.
    Some(timespec(rustix::time::clock_gettime(
        rustix::time::ClockId::Monotonic,
    )))
}

#[cfg(not(any(target_os = "linux", target_os = "android", target_vendor = "apple")))]
fn since_boot() -> Option<Duration> {
    None
}

#[cfg(any(target_os = "linux", target_os = "android", target_vendor = "apple"))]
fn timespec(t: rustix::time::Timespec) -> Duration {
    // The kernel's clock readings are never negative and nanoseconds stay below 10⁹.
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

/// A monotonic clock that counts suspended time (see the [module](self) documentation).
///
/// [`now`](Self::now) never goes backwards, and never runs behind the source's monotonic
/// clock by more than the skew of taking the two base readings one after the other.
#[derive(Debug)]
pub struct SuspendAwareClock<S = OsClock> {
    source: S,
    base: Instant,
    base_since_boot: Option<Duration>,
}

impl<S: ClockSource> SuspendAwareClock<S> {
    /// A clock that starts from the source's current readings.
    pub fn new(source: S) -> Self {
        // The two base readings cannot be taken at once: a thread preempted between them
        // would leave `now` behind the monotonic clock by the preemption. Take the pair
        // with the shortest gap of a few, and the monotonic reading from its middle.
        let mut best: Option<(Duration, Instant, Option<Duration>)> = None;
        for _ in 0..3 {
            let before = source.monotonic();
            let since_boot = source.since_boot();
            let gap = source.monotonic().saturating_duration_since(before);
            if best.as_ref().is_none_or(|(g, _, _)| gap < *g) {
                best = Some((gap, before + gap / 2, since_boot));
            }
        }
        // Three iterations ran.
        let (_, base, base_since_boot) = best.expect("a reading");
        SuspendAwareClock {
            source,
            base,
            base_since_boot,
        }
    }

    /// The source.
    pub fn source(&self) -> &S {
        &self.source
    }

    /// The current time: the base instant plus the time elapsed since, suspended time
    /// included (the monotonic clock where the source has no suspend-counting clock).
    pub fn now(&self) -> Instant {
        match (self.base_since_boot, self.source.since_boot()) {
            (Some(base), Some(now)) => {
                // The span is bounded by the machine's uptime; `Instant` can hold it.
                self.base
                    .checked_add(now.saturating_sub(base))
                    .unwrap_or_else(|| self.source.monotonic())
            }
            _ => self.source.monotonic(),
        }
    }

    /// How far [`now`](Self::now) is ahead of the monotonic clock: the time the host
    /// spent suspended since the clock was made (zero where it cannot be measured).
    pub fn suspended(&self) -> Duration {
        // Read the monotonic clock second, so that the difference errs towards zero.
        let now = self.now();
        now.saturating_duration_since(self.source.monotonic())
    }

    /// The monotonic instant at which this clock reads `deadline`, if the host does not
    /// suspend again before: what to hand to a timer that runs on the monotonic clock.
    /// A suspend while the timer waits delays it by that suspend; the loop then wakes at
    /// the converted deadline, or sooner on socket activity, and sees the jump.
    ///
    /// The conversion is exact in both directions (it errs late by the time between its
    /// two readings, never early): a clock a little behind the monotonic one (the skew of
    /// the base readings) must move its deadlines later, or a timer would fire before the
    /// clock reads its deadline, and a loop would wake, find nothing due, and spin until
    /// it did.
    pub fn to_monotonic(&self, deadline: Instant) -> Instant {
        let now = self.now();
        let monotonic = self.source.monotonic();
        let converted = if now >= monotonic {
            deadline.checked_sub(now - monotonic)
        } else {
            deadline.checked_add(monotonic - now)
        };
        converted.unwrap_or(deadline)
    }
}

/// The process-wide [`SuspendAwareClock`] over the OS's clocks, which the tokio and smol
/// adapters read for `Runtime::now` and convert timer deadlines with. Made at its first
/// use; every session of the process shares it, so their instants compare.
pub fn os_clock() -> &'static SuspendAwareClock<OsClock> {
    static CLOCK: OnceLock<SuspendAwareClock<OsClock>> = OnceLock::new();
    CLOCK.get_or_init(|| SuspendAwareClock::new(OsClock))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// A fake pair: both clocks advance together, and `suspend` advances only the one that
    /// counts suspended time, as a real suspend does.
    struct Fake {
        start: Instant,
        state: Mutex<(Duration, Duration)>,
        boot: bool,
    }

    impl Fake {
        fn new(boot: bool) -> Self {
            Fake {
                start: Instant::now(),
                state: Mutex::new((Duration::ZERO, Duration::from_secs(1000))),
                boot,
            }
        }

        fn run(&self, d: Duration) {
            let mut s = self.state.lock().unwrap();
            s.0 += d;
            s.1 += d;
        }

        fn suspend(&self, d: Duration) {
            self.state.lock().unwrap().1 += d;
        }
    }

    impl ClockSource for Fake {
        fn monotonic(&self) -> Instant {
            self.start + self.state.lock().unwrap().0
        }

        fn since_boot(&self) -> Option<Duration> {
            self.boot.then(|| self.state.lock().unwrap().1)
        }
    }

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn a_suspend_moves_now_on_by_the_suspended_time() {
        let clock = SuspendAwareClock::new(Fake::new(true));
        let t0 = clock.now();
        assert_eq!(t0, clock.source().monotonic());
        clock.source().run(2 * SEC);
        assert_eq!(clock.now() - t0, 2 * SEC);
        assert_eq!(clock.suspended(), Duration::ZERO);

        clock.source().suspend(3600 * SEC);
        assert_eq!(clock.now() - t0, 3602 * SEC, "the hour asleep counts");
        assert_eq!(clock.suspended(), 3600 * SEC);
        clock.source().run(SEC);
        assert_eq!(clock.now() - t0, 3603 * SEC);
    }

    #[test]
    fn a_deadline_converts_to_the_monotonic_instant_the_clock_reads_it() {
        let clock = SuspendAwareClock::new(Fake::new(true));
        clock.source().suspend(60 * SEC);
        let deadline = clock.now() + 5 * SEC;
        let timer = clock.to_monotonic(deadline);
        assert_eq!(timer, clock.source().monotonic() + 5 * SEC);
        clock.source().run(5 * SEC);
        assert_eq!(clock.source().monotonic(), timer);
        assert_eq!(
            clock.now(),
            deadline,
            "the timer fires when the clock reads it"
        );
    }

    /// The base readings were taken 5 ms apart (the thread was preempted between them):
    /// the clock runs 5 ms behind the monotonic one, and a deadline's timer must wait
    /// those 5 ms more, not fire while the clock still reads before the deadline.
    #[test]
    fn a_clock_behind_the_monotonic_one_converts_deadlines_later() {
        let clock = SuspendAwareClock::new(Fake::new(true));
        lock_monotonic_ahead(&clock, Duration::from_millis(5));
        let deadline = clock.now() + SEC;
        let timer = clock.to_monotonic(deadline);
        assert_eq!(timer, clock.source().monotonic() + SEC);
        let wait = timer - clock.source().monotonic();
        clock.source().run(wait);
        assert!(
            clock.now() >= deadline,
            "the timer fired before the deadline"
        );
    }

    /// Moves only the fake's monotonic clock on by `d`, as a base pair taken `d` apart
    /// leaves it.
    fn lock_monotonic_ahead(clock: &SuspendAwareClock<Fake>, d: Duration) {
        clock.source().state.lock().unwrap().0 += d;
    }

    #[test]
    fn without_a_suspend_counting_clock_it_is_the_monotonic_clock() {
        let clock = SuspendAwareClock::new(Fake::new(false));
        clock.source().run(SEC);
        clock.source().suspend(60 * SEC);
        assert_eq!(clock.now(), clock.source().monotonic());
        let d = clock.now() + SEC;
        assert_eq!(clock.to_monotonic(d), d);
    }

    /// On this machine's OS: the clock moves forward with real time and never runs
    /// backwards (suspends cannot be provoked here; the fakes above show them).
    #[test]
    fn the_os_clock_is_monotonic_and_keeps_up_with_instant() {
        let clock = os_clock();
        #[cfg(any(target_os = "linux", target_os = "android", target_vendor = "apple"))]
        assert!(OsClock.since_boot().is_some());
        let mut last = clock.now();
        for _ in 0..1000 {
            let now = clock.now();
            assert!(now >= last);
            last = now;
        }
        let before = Instant::now();
        std::thread::sleep(Duration::from_millis(20));
        let now = clock.now();
        assert!(now >= before, "{:?}", before - now);
        assert!(now - before >= Duration::from_millis(19));
    }
}
