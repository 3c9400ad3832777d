//! Session configuration: documented defaults, a builder, and validation.

use std::time::Duration;

use crate::backoff::{BackoffConfig, Jitter};
use crate::close::ClosePolicy;
use crate::error::ConfigError;
use crate::liveness::LivenessConfig;
use crate::queue::{OfflinePolicy, Overflow, QueueConfig};
use crate::streams::StreamConfig;

/// The ceiling of every duration in [`Config`] and
/// [`ServerConfig`](crate::server::ServerConfig): one year (365 days). A timeout, interval
/// or time to live longer than that is a mistake (`Duration::MAX` meant as "for ever"), and
/// with the ceiling every deadline the session computes stays far inside what the clock
/// can represent. [`Config::validate`] refuses longer values with
/// [`ConfigError::TooLong`]. Where "for ever" is meant, the `Option` fields take `None`.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// The ceiling of [`LivenessConfig::heartbeat_stale_factor`]: 1000. With
/// [`LivenessConfig::max_heartbeat`] at most [`MAX_DURATION`], a stale threshold widened
/// by a declared heartbeat stays a computable duration.
pub const MAX_HEARTBEAT_FACTOR: u32 = 1000;

/// The first of `fields` above [`MAX_DURATION`], as [`ConfigError::TooLong`].
pub(crate) fn check_ceiling(fields: &[(&'static str, Duration)]) -> Result<(), ConfigError> {
    match fields.iter().find(|(_, d)| *d > MAX_DURATION) {
        Some((field, _)) => Err(ConfigError::TooLong {
            field,
            max: MAX_DURATION,
        }),
        None => Ok(()),
    }
}

/// Everything a [`Session`](crate::Session) needs to decide. Every field has a documented
/// default; [`Config::builder`] sets them one by one and validates the result. Every
/// duration, here and in the sections, is at most [`MAX_DURATION`] (one year).
///
/// ```
/// use std::time::Duration;
/// use tether_core::Config;
///
/// let config = Config::builder()
///     .handshake_timeout(Duration::from_secs(3))
///     .ping_interval(Some(Duration::from_secs(10)))
///     .stale_after(Duration::from_secs(25))
///     .max_attempts(Some(8))
///     .build()
///     .expect("valid");
/// assert_eq!(config.backoff.max_attempts, Some(8));
///
/// let err = Config::builder().stale_after(Duration::from_secs(1)).build().unwrap_err();
/// assert!(err.to_string().contains("stale_after"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// How long the transport may take to open (TCP, TLS, HTTP upgrade). Default 10 s.
    pub connect_timeout: Duration,
    /// How long the handshake may take to be acknowledged after the transport opened.
    /// Default 5 s.
    pub handshake_timeout: Duration,
    /// Whether a failed first connect is retried like a reconnect (`true`) or ends the
    /// session as `Failed` at once (`false`, the default), so that a caller with a wrong
    /// URL hears about it instead of waiting for ever.
    pub retry_first_connect: bool,
    /// The close-code and upgrade-status table.
    pub close_policy: ClosePolicy,
    /// Reconnect waits.
    pub backoff: BackoffConfig,
    /// Ping/pong and stale detection.
    pub liveness: LivenessConfig,
    /// A written frame not reported complete within this time means the peer is dead.
    /// Default 10 s.
    pub send_deadline: Duration,
    /// Writes slower than this are reported as [`Event::SlowWrite`](crate::Event::SlowWrite).
    /// Default 2 s.
    pub slow_write_warning: Duration,
    /// At most this many frames handed to the adapter and not yet reported written.
    /// Default 4096.
    pub max_pending_writes: usize,
    /// Timeout of requests that do not set their own. Default 30 s.
    pub request_timeout: Duration,
    /// At most this many requests awaiting a response (sent or queued). Default 1024.
    pub max_in_flight_requests: usize,
    /// How many times an idempotent request
    /// ([`EncodedRequest::idempotent`](crate::EncodedRequest::idempotent)) in flight when
    /// its connection drops is written again on a later connection, once per connection,
    /// before it fails with `Disconnected`; its own timeout still bounds it. `0` turns
    /// the retry off. Other requests always fail at once. Default 3.
    pub request_retries: u32,
    /// Stream bookkeeping.
    pub streams: StreamConfig,
    /// What `send` and `request` do while the session is not open.
    pub offline: OfflinePolicy,
    /// How long `close` waits for the peer's close frame before aborting. Default 5 s.
    pub close_timeout: Duration,
    /// Close the session (1000) after this long without activity. Default `None`.
    /// Activity is what the application does (connect, send, request) or receives
    /// (messages, responses, stream events); pings, heartbeats and reconnects are not. A
    /// [`lazy`](Self::lazy) session does not end then: it closes the connection and
    /// waits, in [`Status::Idle`](crate::Status::Idle), for its next use.
    pub idle_timeout: Option<Duration>,
    /// Connect on first use instead of at once. Default `false`.
    ///
    /// A lazy session's [`connect`](crate::Session::connect) only starts it: the first
    /// connection attempt comes with the first [`send`](crate::Session::send) or
    /// [`request`](crate::Session::request), which is queued until the session opens (a
    /// lazy session needs [`OfflinePolicy::Queue`]). With an
    /// [`idle_timeout`](Self::idle_timeout) it goes back to idle after that long without
    /// activity (the connection closes with 1000 "idle", `Event::Disconnected` says
    /// [`DisconnectReason::Idle`](crate::DisconnectReason::Idle)) and reconnects on the
    /// next use, rather than ending.
    pub lazy: bool,
    /// Larger inbound frames are dropped as a violation. Default 16 MiB.
    pub max_inbound_frame: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            connect_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(5),
            retry_first_connect: false,
            close_policy: ClosePolicy::default(),
            backoff: BackoffConfig::default(),
            liveness: LivenessConfig::default(),
            send_deadline: Duration::from_secs(10),
            slow_write_warning: Duration::from_secs(2),
            max_pending_writes: 4096,
            request_timeout: Duration::from_secs(30),
            max_in_flight_requests: 1024,
            request_retries: 3,
            streams: StreamConfig::default(),
            offline: OfflinePolicy::Queue(QueueConfig::default()),
            close_timeout: Duration::from_secs(5),
            idle_timeout: None,
            lazy: false,
            max_inbound_frame: 16 << 20,
        }
    }
}

impl Config {
    /// A builder starting from the defaults.
    #[must_use]
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder(Config::default())
    }

    /// Checks the configuration for values that cannot work.
    ///
    /// # Errors
    ///
    /// The first problem found, as a [`ConfigError`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("connect_timeout", self.connect_timeout),
            ("handshake_timeout", self.handshake_timeout),
            ("send_deadline", self.send_deadline),
            ("request_timeout", self.request_timeout),
            ("close_timeout", self.close_timeout),
            ("streams.dedup_ttl", self.streams.dedup_ttl),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, d)| d.is_zero()) {
            return Err(ConfigError::Zero(name));
        }
        self.liveness.validate()?;
        self.backoff.validate()?;
        let queue_ttl = match &self.offline {
            OfflinePolicy::Queue(q) => q.ttl,
            _ => None,
        };
        let bounded = [
            ("connect_timeout", self.connect_timeout),
            ("handshake_timeout", self.handshake_timeout),
            ("send_deadline", self.send_deadline),
            ("slow_write_warning", self.slow_write_warning),
            ("request_timeout", self.request_timeout),
            ("close_timeout", self.close_timeout),
            ("idle_timeout", self.idle_timeout.unwrap_or_default()),
            ("streams.dedup_ttl", self.streams.dedup_ttl),
            (
                "streams.completed_cooldown",
                self.streams.completed_cooldown,
            ),
            (
                "streams.idle_timeout",
                self.streams.idle_timeout.unwrap_or_default(),
            ),
            ("offline.ttl", queue_ttl.unwrap_or_default()),
        ];
        check_ceiling(&bounded)?;
        if self.idle_timeout.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::Zero("idle_timeout"));
        }
        if self.streams.idle_timeout.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::Zero("streams.idle_timeout"));
        }
        if self.slow_write_warning >= self.send_deadline {
            return Err(ConfigError::SlowWarningAfterDeadline);
        }
        let bounds = [
            ("max_pending_writes", self.max_pending_writes),
            ("max_in_flight_requests", self.max_in_flight_requests),
            ("streams.max_streams", self.streams.max_streams),
            ("streams.max_seen", self.streams.max_seen),
            ("max_inbound_frame", self.max_inbound_frame),
        ];
        if let Some((name, _)) = bounds.iter().find(|(_, n)| *n == 0) {
            return Err(ConfigError::ZeroBound(name));
        }
        if self.lazy && matches!(self.offline, OfflinePolicy::Reject) {
            return Err(ConfigError::LazyWithoutQueue);
        }
        if let OfflinePolicy::Queue(q) = &self.offline {
            if q.max_messages == 0 {
                return Err(ConfigError::ZeroBound("offline.max_messages"));
            }
            if q.max_bytes == 0 {
                return Err(ConfigError::ZeroBound("offline.max_bytes"));
            }
            if q.ttl.is_some_and(|d| d.is_zero()) {
                return Err(ConfigError::Zero("offline.ttl"));
            }
        }
        Ok(())
    }
}

/// Builds a [`Config`] from the defaults; [`build`](Self::build) validates.
#[derive(Clone, Debug)]
pub struct ConfigBuilder(Config);

macro_rules! setter {
    ($(#[$doc:meta])* $name:ident : $ty:ty => $($path:ident).+) => {
        $(#[$doc])*
        #[must_use]
        pub fn $name(mut self, value: $ty) -> Self {
            self.0.$($path).+ = value;
            self
        }
    };
}

impl ConfigBuilder {
    setter!(/// Sets [`Config::connect_timeout`].
        connect_timeout: Duration => connect_timeout);
    setter!(/// Sets [`Config::handshake_timeout`].
        handshake_timeout: Duration => handshake_timeout);
    setter!(/// Sets [`Config::retry_first_connect`].
        retry_first_connect: bool => retry_first_connect);
    setter!(/// Sets [`Config::close_policy`].
        close_policy: ClosePolicy => close_policy);
    setter!(/// Sets the backoff schedule.
        backoff_schedule: Vec<Duration> => backoff.schedule);
    setter!(/// Sets the backoff jitter.
        jitter: Jitter => backoff.jitter);
    setter!(/// Sets how long a connection must stay open before the attempt counter resets.
        stable_after: Duration => backoff.stable_after);
    setter!(/// Sets the attempt limit.
        max_attempts: Option<u32> => backoff.max_attempts);
    setter!(/// Sets the ping interval (`None`: no pings).
        ping_interval: Option<Duration> => liveness.ping_interval);
    setter!(/// Sets the stale threshold.
        stale_after: Duration => liveness.stale_after);
    setter!(/// Sets [`Config::send_deadline`].
        send_deadline: Duration => send_deadline);
    setter!(/// Sets [`Config::slow_write_warning`].
        slow_write_warning: Duration => slow_write_warning);
    setter!(/// Sets [`Config::max_pending_writes`].
        max_pending_writes: usize => max_pending_writes);
    setter!(/// Sets [`Config::request_timeout`].
        request_timeout: Duration => request_timeout);
    setter!(/// Sets [`Config::max_in_flight_requests`].
        max_in_flight_requests: usize => max_in_flight_requests);
    setter!(/// Sets [`Config::request_retries`].
        request_retries: u32 => request_retries);
    setter!(/// Sets the stream bookkeeping.
        streams: StreamConfig => streams);
    setter!(/// Sets the offline policy.
        offline: OfflinePolicy => offline);
    setter!(/// Sets [`Config::close_timeout`].
        close_timeout: Duration => close_timeout);
    setter!(/// Sets [`Config::idle_timeout`].
        idle_timeout: Option<Duration> => idle_timeout);
    setter!(/// Sets [`Config::lazy`].
        lazy: bool => lazy);
    setter!(/// Sets [`Config::max_inbound_frame`].
        max_inbound_frame: usize => max_inbound_frame);
    setter!(/// Sets the whole liveness section.
        liveness: LivenessConfig => liveness);
    setter!(/// Sets the whole backoff section.
        backoff: BackoffConfig => backoff);

    /// Rejects sends while not open instead of queueing them.
    #[must_use]
    pub fn reject_while_offline(mut self) -> Self {
        self.0.offline = OfflinePolicy::Reject;
        self
    }

    /// Queues up to `max_messages` while not open, dropping per `overflow`. The byte
    /// limit and TTL stay as configured (the defaults after
    /// [`reject_while_offline`](Self::reject_while_offline)).
    #[must_use]
    pub fn queue_while_offline(mut self, max_messages: usize, overflow: Overflow) -> Self {
        let base = match &self.0.offline {
            OfflinePolicy::Queue(q) => q.clone(),
            _ => QueueConfig::default(),
        };
        self.0.offline = OfflinePolicy::Queue(QueueConfig {
            max_messages,
            overflow,
            ..base
        });
        self
    }

    /// Validates and returns the configuration.
    ///
    /// # Errors
    ///
    /// See [`Config::validate`].
    pub fn build(self) -> Result<Config, ConfigError> {
        self.0.validate()?;
        Ok(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_documented_values() {
        let c = Config::default();
        c.validate().unwrap();
        assert_eq!(c.handshake_timeout, Duration::from_secs(5));
        assert_eq!(c.liveness.ping_interval, Some(Duration::from_secs(30)));
        assert_eq!(c.liveness.stale_after, Duration::from_secs(75));
        assert_eq!(c.backoff.stable_after, Duration::from_secs(5));
    }

    #[test]
    fn validation_rejects_unworkable_values() {
        let b = Config::builder;
        assert_eq!(
            b().ping_interval(Some(Duration::ZERO)).build(),
            Err(ConfigError::Zero("ping_interval"))
        );
        assert!(matches!(
            b().stale_after(Duration::from_secs(30)).build(),
            Err(ConfigError::StaleBeforePing { .. })
        ));
        assert_eq!(
            b().backoff_schedule(vec![]).build(),
            Err(ConfigError::EmptyBackoff)
        );
        assert_eq!(
            b().slow_write_warning(Duration::from_secs(10)).build(),
            Err(ConfigError::SlowWarningAfterDeadline)
        );
        assert_eq!(
            b().max_in_flight_requests(0).build(),
            Err(ConfigError::ZeroBound("max_in_flight_requests"))
        );
        assert_eq!(
            b().max_attempts(Some(0)).build(),
            Err(ConfigError::ZeroBound("max_attempts"))
        );
        assert_eq!(
            b().queue_while_offline(0, Overflow::DropOldest).build(),
            Err(ConfigError::ZeroBound("offline.max_messages"))
        );
        assert_eq!(
            b().request_timeout(Duration::ZERO).build(),
            Err(ConfigError::Zero("request_timeout"))
        );
        // No pings at all is legal: the stale threshold then stands alone.
        assert!(b().ping_interval(None).build().is_ok());
    }
}
