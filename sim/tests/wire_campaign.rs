//! The campaign on the real wire: seeded runs of the driver's real WebSocket transport
//! under byte-level faults, each recorded, replayed and judged by every oracle.

use std::time::Duration;

use tether_core::CloseCode;
use tether_driver::Incoming;
use tether_sim::driven::Tamper;
use tether_sim::wire_campaign::{self, WireCampaign};

#[test]
fn a_wire_campaign_passes_every_oracle_and_replays_exactly() {
    let report = wire_campaign::run(&WireCampaign {
        start: 0,
        seeds: 60,
        duration: Duration::from_secs(600),
        threads: 2,
        ..WireCampaign::default()
    });
    assert!(report.passed(), "{report}");
    assert_eq!(report.seeds, 60);
    assert!(report.opens > 60, "{report}");
    for kind in ["raw", "raw-close", "reset", "mute", "deaf", "half-open"] {
        assert!(
            report.faults.contains_key(kind),
            "no {kind} fault drawn: {report}"
        );
    }
}

#[test]
fn a_wire_seed_runs_the_same_twice() {
    for seed in [1, 2, 3] {
        let a = wire_campaign::run_seed(seed, Duration::from_secs(300));
        let b = wire_campaign::run_seed(seed, Duration::from_secs(300));
        assert_eq!(a.verdict.events, b.verdict.events, "seed {seed}");
        assert_eq!(a.verdict.opens, b.verdict.opens, "seed {seed}");
        assert_eq!(a.plan, b.plan, "seed {seed}");
    }
}

/// The campaign finds, with no scenario written for it, a transport that reports its
/// codec's own close code instead of the peer's: tungstenite refuses the registered code
/// 1014 and answers 1002, and a transport that passes the 1002 on makes a reconnect a
/// fatal end (1002 is fatal by default). The world knows the peer sent 1014, so
/// `healthy_peer_opens` says so in the seeds that draw it (2 of these 150). The honest
/// transport passes the same seeds: CI's `tether-sim wire --seeds 1000` runs them.
#[test]
fn a_close_code_turned_fatal_by_the_codec_is_caught_by_healthy_peer_opens() {
    let campaign = |tamper| WireCampaign {
        start: 0,
        seeds: 150,
        duration: Duration::from_secs(600),
        threads: 2,
        tamper,
    };
    let broken = wire_campaign::run(&campaign(Tamper::new(|item| match item {
        Incoming::Closed(Some(CloseCode(1014)), reason) => {
            Incoming::Closed(Some(CloseCode(1002)), reason)
        }
        other => other,
    })));
    assert!(!broken.passed(), "no seed met a 1014: {broken}");
    for failed in &broken.failures {
        assert!(
            failed
                .verdict
                .violations
                .iter()
                .any(|v| v.oracle == "healthy_peer_opens"
                    && v.detail.contains("with 1002, but the peer sent 1014")),
            "{broken}"
        );
    }
}
