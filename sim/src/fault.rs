//! Faults a plan can schedule, each at a simulated time.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;

/// Bad frames the server can be made to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Garbage {
    /// Text that is not JSON (or not the protocol's shape).
    Malformed,
    /// A text frame larger than the session's inbound bound.
    Oversized,
    /// A text frame whose bytes are not UTF-8.
    InvalidUtf8,
    /// A binary frame where the protocol expects text.
    Binary,
}

impl Garbage {
    /// The bad frame's payload, and whether it is binary, for a session whose inbound
    /// limit is `max_inbound_frame`: what the value world delivers and what the wire mode
    /// writes raw into the pipe.
    pub fn payload(self, max_inbound_frame: usize) -> (bool, Bytes) {
        match self {
            Garbage::Malformed => (false, Bytes::from_static(b"{not json")),
            Garbage::Oversized => (false, oversized(max_inbound_frame.saturating_add(1))),
            Garbage::InvalidUtf8 => (false, Bytes::from_static(b"\xff\xfe\xfd")),
            Garbage::Binary => (true, Bytes::from_static(b"\x00\x01\x02")),
        }
    }

    /// The bad frame as a machine is handed it (see [`payload`](Self::payload)): one
    /// definition for every role that sends garbage (the world's server, the server
    /// role's peer, the wire mode's peer).
    pub(crate) fn frame(self, max_inbound_frame: usize) -> tether_core::InFrame {
        match self.payload(max_inbound_frame) {
            (true, b) => tether_core::InFrame::Binary(b),
            (false, b) => tether_core::InFrame::Text(b),
        }
    }
}

thread_local! {
    /// One shared buffer for oversized frames: filling a fresh 16 MiB buffer per fault
    /// cost a campaign more than the session did.
    static BIG: std::cell::RefCell<Bytes> = const { std::cell::RefCell::new(Bytes::new()) };
}

/// A text frame of `n` spaces, sliced from the shared buffer (no copy).
fn oversized(n: usize) -> Bytes {
    BIG.with(|b| {
        let mut b = b.borrow_mut();
        if b.len() < n {
            *b = Bytes::from(vec![b' '; n]);
        }
        b.slice(..n)
    })
}

/// Values the peer controls, at their extremes: what a hostile or broken server may
/// announce. Servers that speak a profile act on them (`HelloAckServer`,
/// `GatewayServer`); others ignore them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Hostile {
    /// Event numbers at the top of `u64`: the gateway's event `seq` jumps to
    /// `u64::MAX - 1`; the HelloAck server sends a stream event numbered `u64::MAX`.
    SeqMax,
    /// The next handshake's answer declares a heartbeat (HelloAck `heartbeatMs`, the
    /// gateway's `tickIntervalMs`) of `u64::MAX` ms.
    Heartbeat,
    /// The next "starting" answer asks for a wait of `u64::MAX` ms (`retryAfterMs`).
    RetryAfter,
    /// The next connection is sent 100 `connect.challenge` frames (gateway).
    Challenges,
    /// The next stream's first delta carries 1 MiB + 1 byte of text, past the default
    /// `StreamConfig::max_text` (HelloAck).
    LongText,
}

impl Hostile {
    /// Every kind, in a fixed order.
    pub const ALL: [Hostile; 5] = [
        Hostile::SeqMax,
        Hostile::Heartbeat,
        Hostile::RetryAfter,
        Hostile::Challenges,
        Hostile::LongText,
    ];

    /// The kind's name in plan specs.
    pub fn name(self) -> &'static str {
        match self {
            Hostile::SeqMax => "seq-max",
            Hostile::Heartbeat => "heartbeat",
            Hostile::RetryAfter => "retry-after",
            Hostile::Challenges => "challenges",
            Hostile::LongText => "long-text",
        }
    }
}

/// One fault. Faults with a duration heal by themselves; the liveness phase heals all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// New connections are refused.
    RefuseConnects(Duration),
    /// New connections never complete (the session's connect timeout must fire).
    BlackholeConnects(Duration),
    /// New connections take this much longer to open.
    SlowConnects {
        /// Extra delay per connect.
        extra: Duration,
        /// How long the fault lasts.
        lasts: Duration,
    },
    /// The HTTP upgrade is answered with this status.
    RejectUpgrade {
        /// 401, 403, 429, 503, …
        status: u16,
        /// How long the fault lasts.
        lasts: Duration,
    },
    /// The current connection drops without a close frame (1006).
    Drop,
    /// The server closes the current connection with this code and reason.
    ServerClose(u16, String),
    /// Nothing arrives in either direction, and nobody closes.
    HalfOpen(Duration),
    /// The server stops reading: the client's writes never complete.
    StopReading(Duration),
    /// Latency per direction (client→server, server→client) with jitter.
    Latency {
        /// Base one-way delay.
        base: Duration,
        /// Uniform extra delay in `[0, jitter]`.
        jitter: Duration,
        /// How long the fault lasts.
        lasts: Duration,
    },
    /// Every server→client data frame is delivered twice.
    Duplicate(Duration),
    /// Server→client frames may overtake each other within this window.
    Reorder {
        /// The window.
        window: Duration,
        /// How long the fault lasts.
        lasts: Duration,
    },
    /// The server sends one bad frame.
    Garbage(Garbage),
    /// The server does not acknowledge handshakes.
    NeverAck(Duration),
    /// The server acknowledges each handshake twice.
    DoubleAck(Duration),
    /// The server sends a response for an id nobody asked about.
    UnknownResponse,
    /// The server restarts: drops everyone (gracefully with 1012, or abruptly), refuses
    /// connections while down, then answers "starting" (1013) for a while.
    Restart {
        /// How long it refuses connections.
        down: Duration,
        /// Whether it says goodbye with 1012 first.
        graceful: bool,
    },
    /// The server accepts connections and closes them at once (1011).
    AcceptThenClose(Duration),
    /// The host sleeps: the session is not called for this long.
    ClockJump(Duration),
    /// The server sends (or arms for its next handshake) a value at its extreme.
    Hostile(Hostile),
}

impl Fault {
    /// A short name for summaries.
    pub fn name(&self) -> &'static str {
        match self {
            Fault::RefuseConnects(_) => "refuse",
            Fault::BlackholeConnects(_) => "blackhole",
            Fault::SlowConnects { .. } => "slow-connect",
            Fault::RejectUpgrade { .. } => "reject-upgrade",
            Fault::Drop => "drop",
            Fault::ServerClose(..) => "server-close",
            Fault::HalfOpen(_) => "half-open",
            Fault::StopReading(_) => "stop-reading",
            Fault::Latency { .. } => "latency",
            Fault::Duplicate(_) => "duplicate",
            Fault::Reorder { .. } => "reorder",
            Fault::Garbage(_) => "garbage",
            Fault::NeverAck(_) => "never-ack",
            Fault::DoubleAck(_) => "double-ack",
            Fault::UnknownResponse => "unknown-response",
            Fault::Restart { .. } => "restart",
            Fault::AcceptThenClose(_) => "accept-then-close",
            Fault::ClockJump(_) => "clock-jump",
            Fault::Hostile(_) => "hostile",
        }
    }

    /// Every fault name, in a fixed order.
    pub const NAMES: &'static [&'static str] = &[
        "refuse",
        "blackhole",
        "slow-connect",
        "reject-upgrade",
        "drop",
        "server-close",
        "half-open",
        "stop-reading",
        "latency",
        "duplicate",
        "reorder",
        "garbage",
        "never-ack",
        "double-ack",
        "unknown-response",
        "restart",
        "accept-then-close",
        "clock-jump",
        "hostile",
    ];
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

/// Faults at simulated times (offsets from the start of the run), in time order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultPlan {
    /// The entries; [`FaultPlan::new`] sorts them.
    pub entries: Vec<(Duration, Fault)>,
}

impl FaultPlan {
    /// A plan from entries in any order (a stable sort keeps equal times in given order).
    pub fn new(mut entries: Vec<(Duration, Fault)>) -> Self {
        entries.sort_by_key(|(t, _)| *t);
        FaultPlan { entries }
    }

    /// A plan without faults.
    pub fn none() -> Self {
        FaultPlan::default()
    }
}

impl fmt::Display for FaultPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.entries.is_empty() {
            return f.write_str("(no faults)");
        }
        for (i, (t, fault)) in self.entries.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "+{:.3}s {fault:?}", t.as_secs_f64())?;
        }
        Ok(())
    }
}
