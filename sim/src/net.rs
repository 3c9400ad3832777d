//! The value world's network: its configuration, its per-connection links and the
//! faults in force on the wire. The rules a frame follows on a link are
//! [`link`](crate::link)'s, shared with the driven world and the server role.

use std::time::Duration;

use tether_core::TransportFailure;

use crate::fault::Fault;
use crate::link::{Lane, Latency};
use crate::link_model::Reader;
use crate::server::ServerFlags;

/// Network defaults of a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetConfig {
    /// One-way latency. Default 20 ms.
    pub latency: Duration,
    /// Uniform extra one-way delay in `[0, jitter]`. Default 10 ms.
    pub jitter: Duration,
    /// How long a write takes to be accepted by the (simulated) kernel. Default 100 µs.
    pub write_latency: Duration,
    /// How long a restarted server answers "starting" after it comes back. Default 3 s.
    pub starting_period: Duration,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            latency: Duration::from_millis(20),
            jitter: Duration::from_millis(10),
            write_latency: Duration::from_micros(100),
            starting_period: Duration::from_secs(3),
        }
    }
}

/// One connection as the network sees it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Link {
    /// The server completed the upgrade and has not closed.
    pub(crate) server_open: bool,
    /// The server has been told the connection is gone.
    pub(crate) server_notified: bool,
    /// The client closed or aborted its end.
    pub(crate) client_done: bool,
    /// Nothing crosses this link any more, and nobody is told.
    pub(crate) half_open: bool,
    /// The client's end under the link model: once it refused what the server sent, it
    /// reads nothing more.
    pub(crate) reader: Reader,
    /// The server does not read from this link until then.
    pub(crate) stop_reading_until: Duration,
    /// The server sent a close frame the client has not answered yet.
    pub(crate) awaiting_close_reply: bool,
    /// Client to server: frames stay in order (TCP).
    pub(crate) to_server: Lane,
    /// Server to client: frames stay in order, unless `Fault::Reorder` is in force.
    pub(crate) to_client: Lane,
}

/// Faults in force on the wire, each until a time.
#[derive(Clone, Debug, Default)]
pub(crate) struct NetState {
    pub(crate) refuse_until: Duration,
    pub(crate) blackhole_until: Duration,
    pub(crate) slow: (Duration, Duration),
    pub(crate) reject: (u16, Duration),
    pub(crate) latency: Option<(Duration, Duration, Duration)>,
    pub(crate) duplicate_until: Duration,
    pub(crate) reorder: (Duration, Duration),
    pub(crate) never_ack_until: Duration,
    pub(crate) double_ack_until: Duration,
    pub(crate) down_until: Duration,
    pub(crate) starting_until: Duration,
    pub(crate) accept_then_close_until: Duration,
}

/// What becomes of a connection attempt dialed while some faults are in force: the
/// world's rule, which the wire mode's dial follows too.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Dialed {
    /// Refused (the server is down, or `RefuseConnects`): the failure comes back after a
    /// round trip.
    Refused,
    /// Never completes (`BlackholeConnects`): the session's connect timeout must fire.
    Blackholed,
    /// The upgrade is answered with this failure (`RejectUpgrade`) after a round trip.
    Rejected(TransportFailure),
    /// Goes through, `extra` later than it would (`SlowConnects`).
    Proceeds {
        /// The extra delay before the attempt reaches the server.
        extra: Duration,
    },
}

impl NetState {
    /// What becomes of an attempt dialed at `now`. A rejected upgrade's 429 asks for a
    /// 5 s wait (`Retry-After`), as throttling servers do.
    pub(crate) fn dial(&self, now: Duration) -> Dialed {
        if now < self.down_until || now < self.refuse_until {
            Dialed::Refused
        } else if now < self.blackhole_until {
            Dialed::Blackholed
        } else if now < self.reject.1 {
            let status = self.reject.0;
            let retry_after = (status == 429).then(|| Duration::from_secs(5));
            Dialed::Rejected(TransportFailure::Http {
                status,
                retry_after,
            })
        } else {
            let extra = if now < self.slow.1 {
                self.slow.0
            } else {
                Duration::ZERO
            };
            Dialed::Proceeds { extra }
        }
    }

    /// Whether the server closes every connection it accepts at `now` with 1011 at once
    /// (`AcceptThenClose`), without opening it.
    pub(crate) fn accepts_then_closes(&self, now: Duration) -> bool {
        now < self.accept_then_close_until
    }

    /// Whether the server is down at `now` (`Restart`): it refuses connections.
    pub(crate) fn down(&self, now: Duration) -> bool {
        now < self.down_until
    }

    /// The server restarts at `now` and is down for `down`, then answers "starting" for
    /// `starting_period` more.
    pub(crate) fn restart(&mut self, now: Duration, down: Duration, starting_period: Duration) {
        self.down_until = now + down;
        self.starting_until = now + down + starting_period;
    }

    pub(crate) fn flags(&self, now: Duration) -> ServerFlags {
        ServerFlags {
            never_ack: now < self.never_ack_until,
            double_ack: now < self.double_ack_until,
            starting: now < self.starting_until,
        }
    }

    /// Applies a timed fault that only changes wire state.
    pub(crate) fn apply(&mut self, fault: &Fault, now: Duration) {
        match fault {
            Fault::RefuseConnects(d) => self.refuse_until = now + *d,
            Fault::BlackholeConnects(d) => self.blackhole_until = now + *d,
            Fault::SlowConnects { extra, lasts } => self.slow = (*extra, now + *lasts),
            Fault::RejectUpgrade { status, lasts } => self.reject = (*status, now + *lasts),
            Fault::Latency {
                base,
                jitter,
                lasts,
            } => self.latency = Some((*base, *jitter, now + *lasts)),
            Fault::Duplicate(d) => self.duplicate_until = now + *d,
            Fault::Reorder { window, lasts } => self.reorder = (*window, now + *lasts),
            Fault::NeverAck(d) => self.never_ack_until = now + *d,
            Fault::DoubleAck(d) => self.double_ack_until = now + *d,
            Fault::AcceptThenClose(d) => self.accept_then_close_until = now + *d,
            _ => {}
        }
    }

    /// Heals everything (the liveness phase). A sleep already under way is the host's,
    /// not the wire's, and goes on.
    pub(crate) fn heal(&mut self) {
        *self = NetState::default();
    }

    /// The one-way latency in force at `now`: a `Latency` fault's, or the configured one.
    pub(crate) fn latency(&self, cfg: &NetConfig, now: Duration) -> Latency {
        match self.latency {
            Some((base, jitter, until)) if now < until => Latency { base, jitter },
            _ => Latency {
                base: cfg.latency,
                jitter: cfg.jitter,
            },
        }
    }
}
