//! The server role's configuration: the client's liveness section and send-deadline
//! fields, nothing about connecting.

use std::time::Duration;

use crate::config::check_ceiling;
use crate::error::ConfigError;
use crate::liveness::LivenessConfig;

/// Everything a [`ServerConn`](super::ServerConn) needs to decide. The fields mean what
/// the [`Config`](crate::Config) fields of the same name mean for the client session.
///
/// | field | default |
/// |---|---|
/// | `liveness` | ping every 30 s, dead after 75 s of silence ([`LivenessConfig`]) |
/// | `send_deadline` | 10 s |
/// | `slow_write_warning` | 2 s |
/// | `max_pending_writes` | 1024 |
/// | `close_timeout` | 5 s |
/// | `max_inbound_frame` | 1 MiB |
///
/// Every duration is at most [`MAX_DURATION`](crate::MAX_DURATION) (one year).
/// `liveness.heartbeat_stale_factor` and `liveness.max_heartbeat` have no effect here: a
/// server learns of no application heartbeat.
///
/// ```
/// use std::time::Duration;
/// use tether_core::server::ServerConfig;
///
/// let config = ServerConfig {
///     send_deadline: Duration::from_secs(2),
///     slow_write_warning: Duration::from_millis(500),
///     max_pending_writes: 64,
///     ..ServerConfig::default()
/// };
/// assert!(config.validate().is_ok());
///
/// let late = ServerConfig { slow_write_warning: Duration::from_secs(3), ..config };
/// assert!(late.validate().is_err(), "a warning after the deadline could never fire");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// Ping/pong and stale detection.
    pub liveness: LivenessConfig,
    /// A frame handed to the adapter and not reported written within this time means the
    /// peer is dead: the connection is aborted. Default 10 s.
    pub send_deadline: Duration,
    /// Writes slower than this are reported as
    /// [`ServerEvent::SlowWrite`](super::ServerEvent::SlowWrite). Default 2 s.
    pub slow_write_warning: Duration,
    /// At most this many frames handed to the adapter and not yet reported written;
    /// [`ServerConn::send`](super::ServerConn::send) refuses more with
    /// [`SendError::Backpressure`](crate::SendError::Backpressure). The driver's hub
    /// evicts a member that reaches it. Default 1024.
    pub max_pending_writes: usize,
    /// How long a close waits for the peer's close frame before aborting. Default 5 s.
    pub close_timeout: Duration,
    /// Larger inbound data frames are dropped as a
    /// [`Violation::Oversized`](crate::Violation::Oversized). Default 1 MiB: a server
    /// reads from peers it does not control.
    pub max_inbound_frame: usize,
    /// The peer's first data message (its authentication, typically) must arrive within
    /// this time of the upgrade, or the connection is closed with 1008 (policy violation)
    /// and ends with [`EndCause::NoFirstMessage`](super::EndCause::NoFirstMessage): a
    /// peer that upgrades and then only answers pings does not hold a connection for
    /// ever. Pings and pongs do not count. Default `None` (no limit); at most
    /// [`MAX_DURATION`](crate::MAX_DURATION).
    pub first_message_timeout: Option<Duration>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            liveness: LivenessConfig::default(),
            send_deadline: Duration::from_secs(10),
            slow_write_warning: Duration::from_secs(2),
            max_pending_writes: 1024,
            close_timeout: Duration::from_secs(5),
            max_inbound_frame: 1 << 20,
            first_message_timeout: None,
        }
    }
}

impl ServerConfig {
    /// Checks the configuration for values that cannot work (the same rules as
    /// [`Config::validate`](crate::Config::validate) for the fields both share): zero
    /// durations and bounds, a slow-write warning not before the send deadline, and any
    /// duration above [`MAX_DURATION`](crate::MAX_DURATION) (one year).
    ///
    /// # Errors
    ///
    /// The first problem found, as a [`ConfigError`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.liveness.validate()?;
        let positive = [
            ("send_deadline", self.send_deadline),
            ("close_timeout", self.close_timeout),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, d)| d.is_zero()) {
            return Err(ConfigError::Zero(name));
        }
        if self.first_message_timeout == Some(Duration::ZERO) {
            return Err(ConfigError::Zero("first_message_timeout"));
        }
        check_ceiling(&[
            ("send_deadline", self.send_deadline),
            ("slow_write_warning", self.slow_write_warning),
            ("close_timeout", self.close_timeout),
            (
                "first_message_timeout",
                self.first_message_timeout.unwrap_or_default(),
            ),
        ])?;
        if self.slow_write_warning >= self.send_deadline {
            return Err(ConfigError::SlowWarningAfterDeadline);
        }
        let bounds = [
            ("max_pending_writes", self.max_pending_writes),
            ("max_inbound_frame", self.max_inbound_frame),
        ];
        if let Some((name, _)) = bounds.iter().find(|(_, n)| *n == 0) {
            return Err(ConfigError::ZeroBound(name));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_unworkable_values_are_refused() {
        let d = ServerConfig::default();
        d.validate().unwrap();
        let zero = ServerConfig {
            send_deadline: Duration::ZERO,
            ..d.clone()
        };
        assert_eq!(zero.validate(), Err(ConfigError::Zero("send_deadline")));
        let mut stale = d.clone();
        stale.liveness.stale_after = Duration::from_secs(30);
        assert!(matches!(
            stale.validate(),
            Err(ConfigError::StaleBeforePing { .. })
        ));
        let unbounded = ServerConfig {
            max_pending_writes: 0,
            ..d.clone()
        };
        assert_eq!(
            unbounded.validate(),
            Err(ConfigError::ZeroBound("max_pending_writes"))
        );
        let mut no_pings = d.clone();
        no_pings.liveness.ping_interval = None;
        assert!(no_pings.validate().is_ok());
        let no_wait = ServerConfig {
            first_message_timeout: Some(Duration::ZERO),
            ..d.clone()
        };
        assert_eq!(
            no_wait.validate(),
            Err(ConfigError::Zero("first_message_timeout"))
        );
        let patient = ServerConfig {
            first_message_timeout: Some(crate::MAX_DURATION + Duration::from_secs(1)),
            ..d.clone()
        };
        assert!(matches!(
            patient.validate(),
            Err(ConfigError::TooLong {
                field: "first_message_timeout",
                ..
            })
        ));
        let forever = ServerConfig {
            close_timeout: Duration::MAX,
            ..d.clone()
        };
        assert_eq!(
            forever.validate(),
            Err(ConfigError::TooLong {
                field: "close_timeout",
                max: crate::MAX_DURATION
            })
        );
        let mut factor = d;
        factor.liveness.heartbeat_stale_factor = u32::MAX;
        assert!(matches!(
            factor.validate(),
            Err(ConfigError::TooLarge {
                field: "heartbeat_stale_factor",
                ..
            })
        ));
    }
}
