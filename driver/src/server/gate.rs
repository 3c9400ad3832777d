//! The way in: limits on connections and pending upgrades, shared by every accept that
//! goes through one [`Gate`], and counters of what it let in and turned away.
//!
//! Over `max_pending_upgrades` a socket is closed at once, unread and unanswered:
//! answering would mean holding it while its request arrives, the very thing that limit
//! bounds (a slowloris flood). Over `max_connections` or `max_per_ip`, the request head is
//! read (within `upgrade_timeout` and `max_request_head`, as for every upgrade) and
//! answered `503 Service Unavailable` with `Retry-After`, so a well-behaved client learns
//! to come back later instead of seeing a reset it would retry at once.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tether_core::ConfigError;

/// The limits of a [`Gate`]. `None` is no limit.
///
/// ```
/// use std::time::Duration;
/// use tether_driver::server::{Gate, GateConfig};
///
/// let gate = Gate::new(GateConfig {
///     max_connections: Some(10_000),
///     max_pending_upgrades: Some(512),
///     max_per_ip: Some(32),
///     retry_after: Duration::from_secs(10),
/// })?;
/// assert_eq!(gate.stats().connections, 0);
/// # Ok::<(), tether_core::ConfigError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GateConfig {
    /// Connections open at once (from the `101` until the connection's task ends).
    /// Beyond it an upgrade is answered 503. Default `None`.
    pub max_connections: Option<usize>,
    /// Sockets whose upgrade is under way (accepted, `101` not yet sent). Beyond it a
    /// socket is closed at once, unanswered. Default 1024.
    pub max_pending_upgrades: Option<usize>,
    /// Connections and pending upgrades from one address (an IPv4 address, or the `/64`
    /// prefix of an IPv6 one: a single host has a whole `/64`). Beyond it an upgrade is
    /// answered 503. Default `None`. Sockets without a known peer address are not counted
    /// against it.
    pub max_per_ip: Option<usize>,
    /// The `Retry-After` of a 503, rounded up to whole seconds. Default 5 s; at most one
    /// day.
    pub retry_after: Duration,
}

impl Default for GateConfig {
    fn default() -> Self {
        GateConfig {
            max_connections: None,
            max_pending_upgrades: Some(1024),
            max_per_ip: None,
            retry_after: Duration::from_secs(5),
        }
    }
}

/// The longest [`GateConfig::retry_after`]: one day.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

impl GateConfig {
    /// Checks the configuration: a limit of zero (nothing could ever get in) and a zero or
    /// longer than [`MAX_RETRY_AFTER`] `retry_after`.
    ///
    /// # Errors
    ///
    /// The first problem found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (name, limit) in [
            ("max_connections", self.max_connections),
            ("max_pending_upgrades", self.max_pending_upgrades),
            ("max_per_ip", self.max_per_ip),
        ] {
            if limit == Some(0) {
                return Err(ConfigError::ZeroBound(name));
            }
        }
        if self.retry_after.is_zero() {
            return Err(ConfigError::Zero("retry_after"));
        }
        if self.retry_after > MAX_RETRY_AFTER {
            return Err(ConfigError::TooLong {
                field: "retry_after",
                max: MAX_RETRY_AFTER,
            });
        }
        Ok(())
    }
}

/// What a [`Gate`] has let in and turned away so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GateStats {
    /// Connections open now.
    pub connections: usize,
    /// Upgrades under way now.
    pub pending_upgrades: usize,
    /// Upgrades completed (a `101` sent), in all.
    pub admitted: u64,
    /// Sockets closed at once because `max_pending_upgrades` were under way.
    pub dropped_pending: u64,
    /// Upgrades answered 503 because `max_connections` were open.
    pub refused_connections: u64,
    /// Upgrades answered 503 because of `max_per_ip`.
    pub refused_per_ip: u64,
    /// Upgrades refused as malformed (400, 405, 426, 431), in all.
    pub bad_requests: u64,
    /// Upgrades answered 408: not complete within `upgrade_timeout`.
    pub timeouts: u64,
    /// Upgrades the admission hook rejected.
    pub rejected: u64,
    /// Sockets that failed or closed before their upgrade was answered.
    pub failed: u64,
}

/// Which limit turned an upgrade away.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Limit {
    /// `max_pending_upgrades`: the socket was closed unanswered.
    #[error("too many upgrades under way")]
    PendingUpgrades,
    /// `max_connections`: answered 503.
    #[error("too many connections")]
    Connections,
    /// `max_per_ip`: answered 503.
    #[error("too many connections from this address")]
    PerIp,
}

/// Limits and counters shared by every accept whose [`GuardConfig::gate`] is a clone of
/// this one (a handle: clones share the counts).
///
/// Over `max_pending_upgrades` a socket is closed at once, unread and unanswered:
/// answering would mean holding it while its request arrives, the very thing that limit
/// bounds (a slowloris flood). Over `max_connections` or `max_per_ip`, the request head is
/// read (within `upgrade_timeout` and `max_request_head`, as for every upgrade) and
/// answered `503 Service Unavailable` with `Retry-After`, so a well-behaved client learns
/// to come back later instead of seeing a reset it would retry at once.
///
/// [`GuardConfig::gate`]: super::GuardConfig::gate
#[derive(Clone)]
pub struct Gate {
    inner: Arc<Inner>,
}

struct Inner {
    config: GateConfig,
    counts: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    stats: GateStats,
    /// Pending upgrades and connections per address; entries at zero are removed, so the
    /// map holds at most one entry per pending upgrade or connection.
    per_ip: HashMap<IpAddr, usize>,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("config", &self.inner.config)
            .field("stats", &self.stats())
            .finish()
    }
}

/// Two gates are equal when they are the same gate (clones of one `Gate`).
impl PartialEq for Gate {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl Eq for Gate {}

/// How a finished upgrade is counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    BadRequest,
    Timeout,
    Rejected,
    Failed,
}

impl Gate {
    /// A gate with `config`'s limits.
    ///
    /// # Errors
    ///
    /// An invalid configuration (see [`GateConfig::validate`]).
    pub fn new(config: GateConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Gate {
            inner: Arc::new(Inner {
                config,
                counts: Mutex::new(Counts::default()),
            }),
        })
    }

    /// The gate's limits.
    pub fn config(&self) -> &GateConfig {
        &self.inner.config
    }

    /// What the gate has let in and turned away so far.
    pub fn stats(&self) -> GateStats {
        self.counts().stats
    }

    fn counts(&self) -> MutexGuard<'_, Counts> {
        // The counts are plain numbers, consistent after every statement: a panic
        // elsewhere while the lock was held leaves nothing to repair.
        self.inner
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A socket arrives: a pending upgrade, unless `max_pending_upgrades` are under way.
    pub(crate) fn arrive(&self, peer: Option<SocketAddr>) -> Result<Ticket, Limit> {
        let mut c = self.counts();
        if self
            .inner
            .config
            .max_pending_upgrades
            .is_some_and(|max| c.stats.pending_upgrades >= max)
        {
            c.stats.dropped_pending += 1;
            return Err(Limit::PendingUpgrades);
        }
        c.stats.pending_upgrades += 1;
        let ip = peer.map(|p| key(p.ip()));
        if let Some(ip) = ip {
            *c.per_ip.entry(ip).or_insert(0) += 1;
        }
        Ok(Ticket {
            gate: self.clone(),
            ip,
            open: false,
            done: false,
        })
    }
}

/// The address a per-IP limit counts: IPv4 (an IPv4-mapped IPv6 address as IPv4), or the
/// `/64` of IPv6.
fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// One socket's place at the gate: a pending upgrade, then (once admitted) a connection,
/// released when dropped.
pub(crate) struct Ticket {
    gate: Gate,
    ip: Option<IpAddr>,
    open: bool,
    /// The upgrade's outcome was counted.
    done: bool,
}

impl Ticket {
    /// The request head is read: whether the connection limits let it in. Counts a
    /// refusal.
    pub(crate) fn check(&mut self) -> Result<(), Limit> {
        let config = &self.gate.inner.config;
        let mut c = self.gate.counts();
        if config
            .max_connections
            .is_some_and(|max| c.stats.connections >= max)
        {
            c.stats.refused_connections += 1;
            self.done = true;
            return Err(Limit::Connections);
        }
        if let (Some(max), Some(ip)) = (config.max_per_ip, self.ip) {
            // This upgrade is counted in its address's entry already.
            if c.per_ip.get(&ip).copied().unwrap_or(0) > max {
                c.stats.refused_per_ip += 1;
                self.done = true;
                return Err(Limit::PerIp);
            }
        }
        Ok(())
    }

    /// The `101` is on its way: the pending upgrade becomes a connection.
    pub(crate) fn admit(&mut self) {
        let mut c = self.gate.counts();
        c.stats.pending_upgrades -= 1;
        c.stats.connections += 1;
        c.stats.admitted += 1;
        self.open = true;
        self.done = true;
    }

    /// The upgrade ended without a connection, for this reason.
    pub(crate) fn count(&mut self, outcome: Outcome) {
        if self.done {
            return;
        }
        self.done = true;
        let mut c = self.gate.counts();
        let s = &mut c.stats;
        match outcome {
            Outcome::BadRequest => s.bad_requests += 1,
            Outcome::Timeout => s.timeouts += 1,
            Outcome::Rejected => s.rejected += 1,
            Outcome::Failed => s.failed += 1,
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.done {
            self.count(Outcome::Failed);
        }
        let mut c = self.gate.counts();
        if self.open {
            c.stats.connections -= 1;
        } else {
            c.stats.pending_upgrades -= 1;
        }
        if let Some(ip) = self.ip
            && let Some(n) = c.per_ip.get_mut(&ip)
        {
            *n -= 1;
            if *n == 0 {
                c.per_ip.remove(&ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Option<SocketAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn pending_upgrades_over_the_limit_are_dropped_and_freed_on_drop() {
        let gate = Gate::new(GateConfig {
            max_pending_upgrades: Some(2),
            ..GateConfig::default()
        })
        .unwrap();
        let a = gate.arrive(addr("10.0.0.1:1")).unwrap();
        let _b = gate.arrive(None).unwrap();
        assert_eq!(gate.arrive(None).err(), Some(Limit::PendingUpgrades));
        assert_eq!(gate.stats().dropped_pending, 1);
        drop(a);
        let s = gate.stats();
        assert_eq!((s.pending_upgrades, s.failed), (1, 1));
        assert!(gate.arrive(None).is_ok());
    }

    #[test]
    fn connections_count_from_admission_to_drop() {
        let gate = Gate::new(GateConfig {
            max_connections: Some(1),
            ..GateConfig::default()
        })
        .unwrap();
        let mut a = gate.arrive(None).unwrap();
        a.check().unwrap();
        a.admit();
        let s = gate.stats();
        assert_eq!((s.connections, s.pending_upgrades, s.admitted), (1, 0, 1));
        let mut b = gate.arrive(None).unwrap();
        assert_eq!(b.check(), Err(Limit::Connections));
        drop(b);
        assert_eq!(gate.stats().refused_connections, 1);
        assert_eq!(gate.stats().failed, 0, "a refusal is counted once");
        drop(a);
        let mut c = gate.arrive(None).unwrap();
        assert_eq!(c.check(), Ok(()));
        assert_eq!(gate.stats().connections, 0);
    }

    #[test]
    fn the_per_ip_limit_counts_pending_and_open_and_groups_ipv6_by_64() {
        let gate = Gate::new(GateConfig {
            max_per_ip: Some(2),
            ..GateConfig::default()
        })
        .unwrap();
        let mut one = gate.arrive(addr("[2001:db8::1]:1")).unwrap();
        one.check().unwrap();
        one.admit();
        let mut two = gate.arrive(addr("[2001:db8::ffff]:2")).unwrap();
        two.check().unwrap();
        let mut three = gate.arrive(addr("[2001:db8:0:0:1::1]:3")).unwrap();
        assert_eq!(three.check(), Err(Limit::PerIp), "same /64");
        let mut other = gate.arrive(addr("[2001:db8:0:1::1]:4")).unwrap();
        assert_eq!(other.check(), Ok(()), "another /64");
        let mut v4 = gate.arrive(addr("[::ffff:10.0.0.1]:5")).unwrap();
        v4.check().unwrap();
        let mut v4b = gate.arrive(addr("10.0.0.1:6")).unwrap();
        v4b.check().unwrap();
        let mut v4c = gate.arrive(addr("10.0.0.1:7")).unwrap();
        assert_eq!(v4c.check(), Err(Limit::PerIp), "mapped counts as IPv4");
        drop((three, v4c, two, other, v4, v4b));
        let mut back = gate.arrive(addr("[2001:db8::2]:8")).unwrap();
        assert_eq!(back.check(), Ok(()));
        drop((one, back));
        assert!(
            gate.counts().per_ip.is_empty(),
            "no entry outlives its sockets"
        );
        assert_eq!(gate.stats().refused_per_ip, 2);
    }

    #[test]
    fn outcomes_are_counted_once() {
        let gate = Gate::new(GateConfig::default()).unwrap();
        for outcome in [Outcome::BadRequest, Outcome::Timeout, Outcome::Rejected] {
            let mut t = gate.arrive(None).unwrap();
            t.count(outcome);
            t.count(Outcome::Failed);
        }
        let s = gate.stats();
        assert_eq!(
            (s.bad_requests, s.timeouts, s.rejected, s.failed),
            (1, 1, 1, 0)
        );
        assert_eq!(s.pending_upgrades, 0);
    }

    #[test]
    fn a_gate_shows_its_config_and_counts_and_equals_only_its_clones() {
        let config = GateConfig {
            max_per_ip: Some(7),
            ..GateConfig::default()
        };
        let gate = Gate::new(config.clone()).unwrap();
        assert_eq!(gate.config(), &config);
        let _pending = gate.arrive(None).unwrap();
        let shown = format!("{gate:?}");
        assert!(shown.contains("max_per_ip: Some(7)"), "{shown}");
        assert!(shown.contains("pending_upgrades: 1"), "{shown}");
        assert_eq!(gate, gate.clone());
        assert_ne!(
            gate,
            Gate::new(config).unwrap(),
            "same limits, other counts"
        );
    }

    #[test]
    fn a_retry_after_of_up_to_a_day_is_taken() {
        for hours in [2, 24] {
            let config = GateConfig {
                retry_after: Duration::from_secs(hours * 3600),
                ..GateConfig::default()
            };
            assert!(Gate::new(config).is_ok(), "{hours} h");
        }
    }

    #[test]
    fn zero_limits_and_retry_afters_are_refused() {
        for bad in [
            GateConfig {
                max_connections: Some(0),
                ..GateConfig::default()
            },
            GateConfig {
                max_per_ip: Some(0),
                ..GateConfig::default()
            },
            GateConfig {
                retry_after: Duration::ZERO,
                ..GateConfig::default()
            },
            GateConfig {
                retry_after: MAX_RETRY_AFTER + Duration::from_secs(1),
                ..GateConfig::default()
            },
        ] {
            assert!(Gate::new(bad).is_err());
        }
    }
}
