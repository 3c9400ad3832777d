//! The campaign on the real wire: seeded runs of the driver's real WebSocket transport
//! under byte-level faults, each recorded, replayed and judged by every oracle.

use std::time::Duration;

use tether_sim::wire_campaign::{self, WireCampaign};

#[test]
fn a_wire_campaign_passes_every_oracle_and_replays_exactly() {
    let report = wire_campaign::run(&WireCampaign {
        start: 0,
        seeds: 60,
        duration: Duration::from_secs(600),
        threads: 2,
    });
    assert!(report.passed(), "{report}");
    assert_eq!(report.seeds, 60);
    assert!(report.opens > 60, "{report}");
    for kind in ["raw", "raw-close", "reset", "mute", "deaf"] {
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
        assert_eq!(a.events, b.events, "seed {seed}");
        assert_eq!(a.opens, b.opens, "seed {seed}");
        assert_eq!(a.plan, b.plan, "seed {seed}");
    }
}
