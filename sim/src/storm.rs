//! Reconnect storms: a server restart under many clients, and how their reconnect
//! attempts spread over time.
//!
//! Each client is an independent [`World`] (the `HelloAck` profile against
//! [`HelloAckServer`], seed = client index, no workload). Client `i` starts at a small
//! random offset `o_i` within the first few seconds; the server restarts at a fixed time
//! `R` for all of them. Since worlds are independent, client `i` is simulated on its own
//! clock starting at 0 with the restart at `R − o_i`, and every attempt is recorded
//! relative to the restart.

use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use serde_json::json;
use tether_core::profiles::HelloAck;
use tether_core::{CloseClass, CloseCode, Event, Output, Status};

use crate::campaign::{fold_parallel, with_progress};
use crate::fault::{Fault, FaultPlan};
use crate::oracle;
use crate::scenario::{self, format_duration};
use crate::servers::HelloAckServer;
use crate::world::{RunConfig, World};

/// What a storm simulates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StormConfig {
    /// Clients.
    pub clients: u64,
    /// How long the server refuses connections.
    pub down: Duration,
    /// Whether the server says goodbye with 1012 (graceful) or just drops (1006).
    pub graceful: bool,
    /// When the server restarts. Default 60 s.
    pub restart_at: Duration,
    /// Clients start at a random offset in `[0, spread)`. Default 5 s.
    pub spread: Duration,
    /// How long to simulate after the restart. Default 2 min.
    pub after: Duration,
    /// Histogram bucket width. Default 100 ms.
    pub bucket: Duration,
    /// Worker threads.
    pub threads: usize,
}

impl Default for StormConfig {
    fn default() -> Self {
        StormConfig {
            clients: 10_000,
            down: Duration::from_secs(5),
            graceful: true,
            restart_at: Duration::from_secs(60),
            spread: Duration::from_secs(5),
            after: Duration::from_secs(120),
            bucket: Duration::from_millis(100),
            threads: crate::campaign::default_threads(),
        }
    }
}

/// The graceful peak target: at most this fraction of clients in one bucket.
pub const GRACEFUL_PEAK_TARGET: f64 = 0.02;

impl StormConfig {
    /// The close code clients see at the restart.
    pub fn close_code(&self) -> CloseCode {
        if self.graceful {
            CloseCode::SERVICE_RESTART
        } else {
            CloseCode::ABNORMAL
        }
    }

    /// The window the session's default policy draws the first reconnect wait from after
    /// this restart's close code, and the floor that applies.
    pub fn expected_window(&self) -> (Duration, Duration, Option<Duration>) {
        let config = scenario::config();
        let floor = match config.close_policy.classify_close(self.close_code()) {
            CloseClass::Reconnect { min_delay } => min_delay,
            _ => None,
        };
        let (lo, hi) = config.backoff.bounds(1, floor);
        (lo, hi, floor)
    }
}

/// What one client did around the restart.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientRun {
    /// Whether the session was open when the server restarted.
    pub open_at_restart: bool,
    /// Whether it opened again after the restart.
    pub reopened: bool,
    /// Connect attempts (`OpenTransport`) after the restart, as offsets from it.
    pub attempts: Vec<Duration>,
    /// Invariant violations in its timeline.
    pub violations: usize,
}

/// Simulates client `index`.
pub fn run_client(cfg: &StormConfig, index: u64) -> ClientRun {
    let mut rng = fastrand::Rng::with_seed(index ^ 0x5707_3a11);
    let spread = u64::try_from(cfg.spread.as_nanos()).unwrap_or(u64::MAX);
    let offset = Duration::from_nanos(rng.u64(..spread.max(1)));
    let restart = cfg.restart_at.saturating_sub(offset);
    let duration = restart + cfg.after;
    let plan = FaultPlan::new(vec![(
        restart,
        Fault::Restart {
            down: cfg.down,
            graceful: cfg.graceful,
        },
    )]);
    let hello = HelloAck::new(|| json!({"type": "hello", "client": "storm"}));
    // Invariant: scenario::config() is the validated default with one boolean changed.
    let world = World::new(scenario::config(), hello, HelloAckServer::default(), index)
        .expect("scenario config is valid");
    let run = world.plan(plan).run(RunConfig {
        duration,
        heal_at: Some(duration),
        ..RunConfig::default()
    });
    let mut out = ClientRun {
        violations: oracle::check(&run.timeline).len(),
        ..ClientRun::default()
    };
    let mut status = Status::Idle;
    for (_, at, o) in run.timeline.outputs() {
        if at < restart {
            if let Output::StatusChanged { to, .. } = o {
                status = *to;
            }
            continue;
        }
        match o {
            Output::OpenTransport { .. } => out.attempts.push(at - restart),
            Output::Event(Event::Opened { .. }) => out.reopened = true,
            _ => {}
        }
    }
    out.open_at_restart = status == Status::Open;
    out
}

/// The outcome of a storm.
#[derive(Clone, Debug, PartialEq)]
pub struct StormReport {
    /// What ran.
    pub config: StormConfig,
    /// Attempts per bucket after the restart (bucket `i` covers `[i, i + 1) × bucket`).
    pub buckets: Vec<u64>,
    /// Attempts after the restart, in total.
    pub attempts: u64,
    /// Clients open when the server restarted.
    pub open_at_restart: u64,
    /// Clients that opened again.
    pub reopened: u64,
    /// Invariant violations across all clients.
    pub violations: u64,
    /// Real time taken.
    pub wall: Duration,
}

impl StormReport {
    /// The busiest bucket: its index and count.
    pub fn peak(&self) -> (usize, u64) {
        self.buckets
            .iter()
            .copied()
            .enumerate()
            .fold(
                (0, 0),
                |best, (i, n)| if n > best.1 { (i, n) } else { best },
            )
    }

    /// The busiest bucket's count as a fraction of the clients.
    pub fn peak_fraction(&self) -> f64 {
        self.peak().1 as f64 / self.config.clients.max(1) as f64
    }

    /// Whether the storm meets its target (graceful restarts only; abrupt ones pass).
    pub fn meets_target(&self) -> bool {
        !self.config.graceful || self.peak_fraction() <= GRACEFUL_PEAK_TARGET
    }

    /// The human report: policy facts, the histogram grouped per second, the peak.
    pub fn render(&self) -> String {
        let c = &self.config;
        let mut s = String::new();
        let bucket_ms = c.bucket.as_secs_f64() * 1000.0;
        let (lo, hi, floor) = c.expected_window();
        let expected = c.bucket.as_secs_f64() / (hi - lo).as_secs_f64().max(1e-9);
        s += &format!(
            "close {} → {}: first reconnect wait drawn uniformly from [{}, {}] → expected \
             ≈ {:.1}% of clients per {bucket_ms:.0} ms bucket\n",
            c.close_code(),
            match floor {
                Some(f) => format!("reconnect with a {} floor", format_duration(f)),
                None => "reconnect, no floor".to_owned(),
            },
            format_duration(lo),
            format_duration(hi),
            (expected * 100.0).min(100.0),
        );
        s += &format!(
            "clients open at the restart: {}/{}; reopened after it: {}/{}; invariant \
             violations: {}\n",
            self.open_at_restart, c.clients, self.reopened, c.clients, self.violations
        );
        let last = self.buckets.iter().rposition(|n| *n > 0);
        s += &format!(
            "connect attempts after the restart: {} ({:.2} per client){}\n",
            self.attempts,
            self.attempts as f64 / c.clients.max(1) as f64,
            last.map_or(String::new(), |i| format!(
                ", the last within +{:.1}s",
                (i + 1) as f64 * c.bucket.as_secs_f64()
            )),
        );
        // Group buckets per second.
        let per_sec = (1.0 / c.bucket.as_secs_f64()).round().max(1.0) as usize;
        let rows: Vec<(usize, u64, u64)> = self
            .buckets
            .chunks(per_sec)
            .enumerate()
            .map(|(sec, b)| (sec, b.iter().sum(), b.iter().copied().max().unwrap_or(0)))
            .filter(|(_, total, _)| *total > 0)
            .collect();
        let widest = rows.iter().map(|r| r.1).max().unwrap_or(1).max(1);
        s += &format!(
            "attempts per second after the restart (total | busiest {bucket_ms:.0} ms bucket):\n"
        );
        for (sec, total, max) in &rows {
            let bar = ((*total as f64 / widest as f64) * 40.0).ceil() as usize;
            s += &format!(
                "  +{sec:>3}s {total:>7} | {max:>6}  {}\n",
                "█".repeat(bar.max(1))
            );
        }
        let (i, n) = self.peak();
        s += &format!(
            "peak: {n} attempts in one {bucket_ms:.0} ms bucket (+{:.1}s after the restart) \
             = {:.2}% of {} clients\n",
            i as f64 * c.bucket.as_secs_f64(),
            self.peak_fraction() * 100.0,
            c.clients
        );
        let per_bucket = expected * c.clients as f64;
        if per_bucket < 50.0 {
            s += &format!(
                "note: {} clients put ≈{per_bucket:.1} attempts in a bucket of the window; with \
                 so few, the busiest bucket is mostly sampling noise — judge the target with \
                 ≥ 5,000 clients\n",
                c.clients
            );
        }
        if c.graceful {
            s += &format!(
                "target (graceful restart): peak ≤ {:.0}% of clients — {}\n",
                GRACEFUL_PEAK_TARGET * 100.0,
                if self.meets_target() { "met" } else { "MISSED" }
            );
        } else {
            s += "abrupt restart (1006): no floor, so the whole fleet retries within the first \
                  backoff step, and attempts refused while the server is down retry again \
                  within the next steps, stacking onto that wave; reported only, no target\n";
        }
        s += &format!(
            "wall time {:.2} s for {} clients × {} simulated\n",
            self.wall.as_secs_f64(),
            c.clients,
            format_duration(c.restart_at + c.after)
        );
        s
    }
}

/// Runs a storm. `progress` shows a progress bar on stderr when it is a terminal.
pub fn run_storm(cfg: &StormConfig, progress: bool) -> StormReport {
    let started = Instant::now();
    let n_buckets = cfg.after.as_nanos().div_ceil(cfg.bucket.as_nanos().max(1)) as usize;
    #[derive(Default)]
    struct Acc {
        buckets: Vec<u64>,
        attempts: u64,
        open: u64,
        reopened: u64,
        violations: u64,
    }
    let parts = with_progress("clients", cfg.clients, progress, |done: &AtomicU64| {
        fold_parallel(
            cfg.clients,
            cfg.threads,
            done,
            || Acc {
                buckets: vec![0; n_buckets],
                ..Acc::default()
            },
            |acc: &mut Acc, i| {
                let r = run_client(cfg, i);
                for t in &r.attempts {
                    let b = (t.as_nanos() / cfg.bucket.as_nanos().max(1)) as usize;
                    if let Some(slot) = acc.buckets.get_mut(b) {
                        *slot += 1;
                    }
                }
                acc.attempts += r.attempts.len() as u64;
                acc.open += u64::from(r.open_at_restart);
                acc.reopened += u64::from(r.reopened);
                acc.violations += r.violations as u64;
            },
        )
    });
    let mut report = StormReport {
        config: cfg.clone(),
        buckets: vec![0; n_buckets],
        attempts: 0,
        open_at_restart: 0,
        reopened: 0,
        violations: 0,
        wall: Duration::ZERO,
    };
    for a in parts {
        for (x, y) in report.buckets.iter_mut().zip(&a.buckets) {
            *x += y;
        }
        report.attempts += a.attempts;
        report.open_at_restart += a.open;
        report.reopened += a.reopened;
        report.violations += a.violations;
    }
    report.wall = started.elapsed();
    report
}
