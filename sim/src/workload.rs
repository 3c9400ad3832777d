//! Workloads: the user commands a simulated application issues.

use std::time::Duration;

use tether_core::Protocol;

/// A user command to issue at some simulated time.
pub enum Command<P: Protocol> {
    /// `connect` (the world issues it at t = 0).
    Connect,
    /// `send`.
    Send(P::Outbound),
    /// `request`; `stream` records whether the request starts a stream.
    Request {
        /// The request.
        request: P::Request,
        /// Its timeout (`None`: the configured default).
        timeout: Option<Duration>,
    },
    /// `close` (normal closure).
    Close,
    /// `terminate`.
    Terminate,
}

/// Produces commands over time. The world asks for the next one each time the previous
/// one was issued.
pub trait Workload<P: Protocol> {
    /// The gap before the next command (from now) and the command; `None` when done.
    fn next(&mut self, now: Duration, rng: &mut fastrand::Rng) -> Option<(Duration, Command<P>)>;
}

/// A boxed workload is a workload (so one chosen at run time can be handed to a
/// [`World`](crate::World)).
impl<P: Protocol, W: Workload<P> + ?Sized> Workload<P> for Box<W> {
    fn next(&mut self, now: Duration, rng: &mut fastrand::Rng) -> Option<(Duration, Command<P>)> {
        (**self).next(now, rng)
    }
}

/// Commands from a closure at exponentially distributed gaps with a given mean.
///
/// ```
/// use std::time::Duration;
/// use tether_core::profiles::Raw;
/// use tether_core::{DataFrame, Utf8Bytes};
/// use tether_sim::{Command, Poisson};
/// let work = Poisson::<Raw, _>::new(Duration::from_secs(5), |_rng| {
///     Command::Send(DataFrame::Text(Utf8Bytes::from_static("hi")))
/// });
/// # let _ = work;
/// ```
pub struct Poisson<P: Protocol, F> {
    mean_gap: Duration,
    make: F,
    _p: std::marker::PhantomData<fn() -> P>,
}

impl<P: Protocol, F: FnMut(&mut fastrand::Rng) -> Command<P>> Poisson<P, F> {
    /// Commands from `make`, `mean_gap` apart on average.
    pub fn new(mean_gap: Duration, make: F) -> Self {
        Poisson {
            mean_gap,
            make,
            _p: std::marker::PhantomData,
        }
    }
}

impl<P: Protocol, F: FnMut(&mut fastrand::Rng) -> Command<P>> Workload<P> for Poisson<P, F> {
    fn next(&mut self, _now: Duration, rng: &mut fastrand::Rng) -> Option<(Duration, Command<P>)> {
        // Inverse-CDF sampling; 1 - f64() lies in (0, 1], so ln is finite.
        let gap = self.mean_gap.mul_f64(-(1.0 - rng.f64()).ln());
        Some((gap, (self.make)(rng)))
    }
}

/// No commands at all.
pub struct Idle;

impl<P: Protocol> Workload<P> for Idle {
    fn next(&mut self, _now: Duration, _rng: &mut fastrand::Rng) -> Option<(Duration, Command<P>)> {
        None
    }
}

/// Commands at fixed times (offsets from the start of the run), in order.
pub struct Script<P: Protocol> {
    commands: std::collections::VecDeque<(Duration, Command<P>)>,
}

impl<P: Protocol> Script<P> {
    /// A script from `(time, command)` pairs; they are issued in time order.
    pub fn new(mut commands: Vec<(Duration, Command<P>)>) -> Self {
        commands.sort_by_key(|(t, _)| *t);
        Script {
            commands: commands.into(),
        }
    }
}

impl<P: Protocol> Workload<P> for Script<P> {
    fn next(&mut self, now: Duration, _rng: &mut fastrand::Rng) -> Option<(Duration, Command<P>)> {
        let (at, cmd) = self.commands.pop_front()?;
        Some((at.saturating_sub(now), cmd))
    }
}
