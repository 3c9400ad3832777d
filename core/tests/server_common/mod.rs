//! Helpers shared by the server-role tests (`server_*.rs`): a connection on a virtual
//! clock, output draining, and domain assertions.
#![allow(dead_code)] // Each test file uses a different subset.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tether_core::server::{EndCause, ServerConfig, ServerConn, ServerEvent, ServerOutput};
use tether_core::{ConnId, DataFrame, FrameId, InFrame, Input, Utf8Bytes};

/// The id of the connection under test.
pub fn conn() -> ConnId {
    ConnId::from_raw(7)
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A connection accepted at `t0` with `config`, and the virtual clock's epoch.
pub struct Harness {
    pub c: ServerConn,
    pub t0: Instant,
}

impl Harness {
    pub fn new(config: ServerConfig) -> Self {
        #[allow(clippy::disallowed_methods)] // One arbitrary epoch; only offsets matter.
        let t0 = Instant::now();
        let c = ServerConn::new(config, conn(), t0).expect("valid config");
        Harness { c, t0 }
    }

    pub fn at(&self, d: Duration) -> Instant {
        self.t0 + d
    }

    /// Every output queued so far.
    pub fn drain(&mut self) -> Vec<ServerOutput> {
        std::iter::from_fn(|| self.c.poll_output()).collect()
    }

    pub fn input(&mut self, input: Input, d: Duration) -> Vec<ServerOutput> {
        self.c.handle_input(input, self.t0 + d);
        self.drain()
    }

    pub fn timeout(&mut self, d: Duration) -> Vec<ServerOutput> {
        self.c.handle_timeout(self.t0 + d);
        self.drain()
    }

    /// Sends a text frame at `d` and returns its id (after checking the write was asked).
    pub fn send(&mut self, text: &'static str, d: Duration) -> FrameId {
        let id = self
            .c
            .send(DataFrame::Text(Utf8Bytes::from_static(text)), self.t0 + d)
            .expect("open");
        let out = self.drain();
        assert!(
            out.iter()
                .any(|o| matches!(o, ServerOutput::SendFrame { frame, .. } if *frame == id)),
            "no SendFrame for {id}: {out:?}"
        );
        id
    }

    pub fn frame(&mut self, frame: InFrame, d: Duration) -> Vec<ServerOutput> {
        self.input(
            Input::FrameReceived {
                conn: conn(),
                frame,
            },
            d,
        )
    }

    pub fn pong(&mut self, d: Duration) -> Vec<ServerOutput> {
        self.frame(InFrame::Pong(Bytes::new()), d)
    }

    pub fn written(&mut self, frame: FrameId, d: Duration) -> Vec<ServerOutput> {
        self.input(
            Input::WriteCompleted {
                conn: conn(),
                frame,
            },
            d,
        )
    }

    /// Deadline as an offset from `t0`.
    pub fn deadline(&self) -> Option<Duration> {
        self.c.poll_timeout().map(|t| t - self.t0)
    }
}

/// The frame ids of the pings among `out`.
pub fn pings(out: &[ServerOutput]) -> Vec<FrameId> {
    out.iter()
        .filter_map(|o| match o {
            ServerOutput::SendFrame {
                frame,
                payload: tether_core::OutFrame::Ping(_),
                ..
            } => Some(*frame),
            _ => None,
        })
        .collect()
}

/// The end cause among `out`, asserting there is exactly one.
#[track_caller]
pub fn ended(out: &[ServerOutput]) -> EndCause {
    let ends: Vec<&EndCause> = out
        .iter()
        .filter_map(|o| match o {
            ServerOutput::Event(ServerEvent::Ended(c)) => Some(c),
            _ => None,
        })
        .collect();
    assert_eq!(ends.len(), 1, "expected exactly one Ended in {out:?}");
    ends[0].clone()
}

#[track_caller]
pub fn aborted(out: &[ServerOutput]) -> bool {
    out.iter()
        .any(|o| matches!(o, ServerOutput::AbortTransport { conn: c } if *c == conn()))
}

/// A configuration with short, distinct timers: ping 1 s, stale 3 s, send deadline 2 s,
/// slow-write warning 500 ms, close timeout 4 s, probe 1 s, clock jump 5 s.
pub fn short() -> ServerConfig {
    let mut c = ServerConfig {
        send_deadline: secs(2),
        slow_write_warning: ms(500),
        close_timeout: secs(4),
        max_pending_writes: 8,
        max_inbound_frame: 64,
        ..ServerConfig::default()
    };
    c.liveness.ping_interval = Some(secs(1));
    c.liveness.stale_after = secs(3);
    c.liveness.probe_timeout = secs(1);
    c.liveness.clock_jump_threshold = secs(5);
    c
}
