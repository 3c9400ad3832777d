//! Liveness: periodic pings, stale detection, application heartbeats and the probe after
//! a clock jump. Shared by every role that holds a connection open: the client
//! [`Session`](crate::Session) and the server role's
//! [`ServerConn`](crate::server::ServerConn).

use std::time::{Duration, Instant};

use crate::config::{MAX_HEARTBEAT_FACTOR, check_ceiling};
use crate::error::ConfigError;
use crate::timer::{Floor, TimerKind, after};

/// The liveness part of [`Config`](crate::Config).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LivenessConfig {
    /// Send a WebSocket ping this often while open. Default 30 s; `None` sends none.
    pub ping_interval: Option<Duration>,
    /// No inbound frame (of any kind) for this long means the peer is dead. Default 75 s.
    pub stale_after: Duration,
    /// When the protocol declares an application heartbeat of interval `t`, the stale
    /// threshold becomes `t × factor` (if that is longer). Default 2; at most
    /// [`MAX_HEARTBEAT_FACTOR`](crate::MAX_HEARTBEAT_FACTOR) (1000).
    pub heartbeat_stale_factor: u32,
    /// The longest application heartbeat a peer may declare (`heartbeatMs` of a HelloAck
    /// `hello_ack`, `policy.tickIntervalMs` of a Gateway `hello-ok`): a longer one counts as
    /// this long, so a peer cannot switch dead-peer detection off by declaring a heartbeat
    /// of a thousand years. The stale threshold is therefore at most
    /// `max(stale_after, max_heartbeat × heartbeat_stale_factor)`. Default 5 minutes; at
    /// most [`MAX_DURATION`](crate::MAX_DURATION). Zero ignores declared heartbeats.
    pub max_heartbeat: Duration,
    /// A `now` this far past the session's earliest deadline means the host slept (or the
    /// driver stalled): instead of condemning the connection on stale evidence (no frame
    /// for ages, a write never reported), probe the peer. Default 15 s.
    pub clock_jump_threshold: Duration,
    /// How long the probe after a clock jump waits for any frame. Default 10 s.
    pub probe_timeout: Duration,
    /// An inbound frame or fragmented message must arrive whole within this of the moment
    /// its first bytes were seen; otherwise the driver's WebSocket link fails the
    /// connection with 1008 (`Violation::MessageTimeout`). Without it a peer could keep a
    /// connection open, and up to `max_inbound_frame` bytes of it buffered, by sending an
    /// unfinished message and answering pings. Default 2 minutes (16 MiB at about 1 Mbit/s);
    /// at most [`MAX_DURATION`](crate::MAX_DURATION).
    pub message_timeout: Duration,
}

impl Default for LivenessConfig {
    fn default() -> Self {
        LivenessConfig {
            ping_interval: Some(Duration::from_secs(30)),
            stale_after: Duration::from_secs(75),
            heartbeat_stale_factor: 2,
            max_heartbeat: Duration::from_secs(5 * 60),
            clock_jump_threshold: Duration::from_secs(15),
            probe_timeout: Duration::from_secs(10),
            message_timeout: Duration::from_secs(120),
        }
    }
}

impl LivenessConfig {
    /// Checks the values that cannot work: a zero threshold or interval, a stale
    /// threshold that does not exceed the ping interval (every connection would be
    /// declared dead between two pings), a heartbeat factor below 1, and any value above
    /// its ceiling (every duration at most [`MAX_DURATION`](crate::MAX_DURATION), the factor at most
    /// [`MAX_HEARTBEAT_FACTOR`]). The client's [`Config::validate`](crate::Config::validate)
    /// and the server role's validation both check their liveness section with this.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("stale_after", self.stale_after),
            ("probe_timeout", self.probe_timeout),
            ("clock_jump_threshold", self.clock_jump_threshold),
            ("message_timeout", self.message_timeout),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, d)| d.is_zero()) {
            return Err(ConfigError::Zero(name));
        }
        let bounded = [
            ("ping_interval", self.ping_interval.unwrap_or_default()),
            ("stale_after", self.stale_after),
            ("probe_timeout", self.probe_timeout),
            ("clock_jump_threshold", self.clock_jump_threshold),
            ("max_heartbeat", self.max_heartbeat),
            ("message_timeout", self.message_timeout),
        ];
        check_ceiling(&bounded)?;
        if self.heartbeat_stale_factor > MAX_HEARTBEAT_FACTOR {
            return Err(ConfigError::TooLarge {
                field: "heartbeat_stale_factor",
                max: MAX_HEARTBEAT_FACTOR.into(),
            });
        }
        if let Some(ping) = self.ping_interval {
            if ping.is_zero() {
                return Err(ConfigError::Zero("ping_interval"));
            }
            if self.stale_after <= ping {
                return Err(ConfigError::StaleBeforePing {
                    ping_interval: ping,
                    stale_after: self.stale_after,
                });
            }
        }
        if self.heartbeat_stale_factor < 1 {
            return Err(ConfigError::HeartbeatFactor);
        }
        Ok(())
    }
}

/// What a liveness deadline asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LivenessAction {
    /// Nothing is due.
    Nothing,
    /// Send a ping now.
    Ping,
    /// The peer is dead.
    Dead,
}

/// Liveness of one open connection.
#[derive(Clone, Debug)]
pub(crate) struct Liveness {
    last_rx: Instant,
    next_ping: Option<Instant>,
    stale_after: Duration,
    probe_deadline: Option<Instant>,
}

impl Liveness {
    /// Starts tracking a connection that just opened at `now`.
    pub(crate) fn new(cfg: &LivenessConfig, now: Instant) -> Self {
        Liveness {
            last_rx: now,
            next_ping: cfg.ping_interval.and_then(|p| after(now, p)),
            stale_after: cfg.stale_after,
            probe_deadline: None,
        }
    }

    /// Any inbound frame is evidence of life. A frame that ends a probe forgets `floor`:
    /// the stale deadline goes back to `now + stale_after`, which can be earlier than the
    /// probe's own deadline (a probe timeout longer than the stale threshold).
    #[inline]
    pub(crate) fn on_rx(&mut self, now: Instant, floor: &mut Floor) {
        self.last_rx = now;
        if self.probe_deadline.take().is_some() {
            floor.forget();
        }
    }

    /// The protocol declared an application heartbeat of this interval (the peer's word,
    /// so capped at [`LivenessConfig::max_heartbeat`]).
    pub(crate) fn set_heartbeat(&mut self, cfg: &LivenessConfig, interval: Duration) {
        let interval = interval.min(cfg.max_heartbeat);
        let by_heartbeat = interval.saturating_mul(cfg.heartbeat_stale_factor);
        self.stale_after = cfg.stale_after.max(by_heartbeat);
    }

    /// The stale threshold in force.
    #[cfg(test)]
    pub(crate) fn stale_after(&self) -> Duration {
        self.stale_after
    }

    /// When the peer counts as dead; `None` when that lies beyond the clock's range.
    fn stale_deadline(&self) -> Option<Instant> {
        self.probe_deadline
            .or_else(|| after(self.last_rx, self.stale_after))
    }

    /// The next liveness deadline and its kind, as both roles arm it: the ping
    /// ([`TimerKind::Ping`]) or the stale threshold ([`TimerKind::Liveness`]); `None` when
    /// neither can come due (both lie beyond the clock's range).
    pub(crate) fn next_deadline(&self) -> Option<(Instant, TimerKind)> {
        match (self.next_ping, self.stale_deadline()) {
            (Some(p), Some(stale)) if p < stale => Some((p, TimerKind::Ping)),
            (Some(p), None) => Some((p, TimerKind::Ping)),
            (_, Some(stale)) => Some((stale, TimerKind::Liveness)),
            (None, None) => None,
        }
    }

    /// Starts a probe at `now` (the host slept): whatever the evidence before, the peer
    /// has `probe_timeout` to show life.
    pub(crate) fn probe(&mut self, cfg: &LivenessConfig, now: Instant) {
        // A probe deadline beyond the clock's range leaves the ordinary stale deadline.
        self.probe_deadline = after(now, cfg.probe_timeout);
        self.next_ping = cfg.ping_interval.and_then(|p| after(now, p));
    }

    /// Fires whatever is due at `now`.
    pub(crate) fn on_timeout(&mut self, cfg: &LivenessConfig, now: Instant) -> LivenessAction {
        if self.stale_deadline().is_some_and(|d| d <= now) {
            return LivenessAction::Dead;
        }
        match self.next_ping {
            Some(p) if p <= now => {
                // Schedule from `now`, not from `p`, so a late driver does not get a burst
                // of catch-up pings.
                self.next_ping = cfg.ping_interval.and_then(|i| after(now, i));
                LivenessAction::Ping
            }
            _ => LivenessAction::Nothing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn pings_on_interval_and_dies_after_stale_threshold() {
        let cfg = LivenessConfig::default();
        let t0 = crate::test_epoch();
        let mut l = Liveness::new(&cfg, t0);
        assert_eq!(l.next_deadline(), Some((t0 + secs(30), TimerKind::Ping)));
        assert_eq!(l.on_timeout(&cfg, t0 + secs(30)), LivenessAction::Ping);
        assert_eq!(l.on_timeout(&cfg, t0 + secs(60)), LivenessAction::Ping);
        assert_eq!(
            l.next_deadline(),
            Some((t0 + secs(75), TimerKind::Liveness))
        );
        assert_eq!(l.on_timeout(&cfg, t0 + secs(75)), LivenessAction::Dead);
    }

    #[test]
    fn inbound_frames_postpone_staleness() {
        let cfg = LivenessConfig::default();
        let t0 = crate::test_epoch();
        let mut l = Liveness::new(&cfg, t0);
        l.on_rx(t0 + secs(70), &mut Floor::Unknown);
        assert_eq!(l.on_timeout(&cfg, t0 + secs(75)), LivenessAction::Ping);
        assert_eq!(l.next_deadline().map(|d| d.0), Some(t0 + secs(105)));
    }

    #[test]
    fn heartbeat_widens_the_threshold() {
        let cfg = LivenessConfig::default();
        let t0 = crate::test_epoch();
        let mut l = Liveness::new(&cfg, t0);
        l.set_heartbeat(&cfg, secs(60));
        assert_eq!(l.stale_after(), secs(120));
        l.set_heartbeat(&cfg, secs(10));
        assert_eq!(
            l.stale_after(),
            secs(75),
            "never shorter than the configured one"
        );
    }

    #[test]
    fn a_declared_heartbeat_is_capped_at_max_heartbeat() {
        let cfg = LivenessConfig::default();
        let mut l = Liveness::new(&cfg, crate::test_epoch());
        l.set_heartbeat(&cfg, Duration::MAX);
        assert_eq!(l.stale_after(), secs(600), "5 minutes × 2");
        let ignore = LivenessConfig {
            max_heartbeat: Duration::ZERO,
            ..cfg
        };
        l.set_heartbeat(&ignore, secs(3600));
        assert_eq!(
            l.stale_after(),
            secs(75),
            "a zero cap ignores the heartbeat"
        );
    }

    /// The factor's floor is 1, not 2: a factor of 1 (dead after one declared heartbeat
    /// of silence, for a peer that beats like clockwork) is a legitimate choice and must
    /// validate and take effect, while 0 (dead at once) is refused by name.
    #[test]
    fn a_heartbeat_factor_of_one_is_valid_and_zero_is_refused() {
        let with = |factor| LivenessConfig {
            heartbeat_stale_factor: factor,
            ..LivenessConfig::default()
        };
        assert_eq!(with(0).validate(), Err(ConfigError::HeartbeatFactor));
        let one = with(1);
        assert_eq!(one.validate(), Ok(()));
        let mut l = Liveness::new(&one, crate::test_epoch());
        l.set_heartbeat(&one, secs(100));
        assert_eq!(l.stale_after(), secs(100), "one heartbeat of silence");
    }

    #[test]
    fn a_probe_gives_the_peer_a_fresh_deadline() {
        let cfg = LivenessConfig::default();
        let t0 = crate::test_epoch();
        let mut l = Liveness::new(&cfg, t0);
        let woke = t0 + secs(3600);
        l.probe(&cfg, woke);
        assert_eq!(
            l.next_deadline(),
            Some((woke + secs(10), TimerKind::Liveness))
        );
        assert_eq!(l.on_timeout(&cfg, woke + secs(10)), LivenessAction::Dead);
        // Any frame during the probe keeps the connection.
        let mut l = Liveness::new(&cfg, t0);
        l.probe(&cfg, woke);
        l.on_rx(woke + secs(1), &mut Floor::Unknown);
        assert_eq!(l.on_timeout(&cfg, woke + secs(10)), LivenessAction::Nothing);
    }
}
