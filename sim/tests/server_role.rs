//! The server role under the simulator: a guarded server connection against a peer that
//! vanishes, stops reading, closes, drops, sends garbage, while the server's host sleeps
//! and its application closes or terminates. The shared oracles judge every run, each
//! scenario's end is the one the guard must reach, a deliberately corrupted timeline is
//! reported, and a sweep of random scripts stays clean and deterministic (200 seeds by
//! default; `TETHER_SIM_SEEDS` changes it).

use std::time::Duration;

use tether_core::profiles::Raw;
use tether_core::server::{EndCause, ServerConfig};
use tether_core::{CloseCode, DisconnectReason, Event, Output};
use tether_sim::oracle::Violation;
use tether_sim::server_role::{self, PeerAction, PeerScript, ServerRun};
use tether_sim::{Entry, Garbage, Timeline};

fn s(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Ping 5 s, stale 15 s, send deadline 4 s (slow-write warning 1 s), close timeout 3 s,
/// at most 32 pending writes.
fn config() -> ServerConfig {
    let mut c = ServerConfig {
        send_deadline: s(4),
        slow_write_warning: s(1),
        close_timeout: s(3),
        max_pending_writes: 32,
        ..ServerConfig::default()
    };
    c.liveness.ping_interval = Some(s(5));
    c.liveness.stale_after = s(15);
    c
}

fn run(script: Vec<(u64, PeerAction)>, seed: u64) -> ServerRun {
    let script = PeerScript::new(script.into_iter().map(|(t, a)| (s(t), a)).collect());
    let run = server_role::run(config(), script, seed, s(600));
    let found = server_role::check(&run.timeline);
    assert!(found.is_empty(), "{}", report(&found, &run.timeline));
    run
}

fn report(found: &[Violation], tl: &Timeline<Raw>) -> String {
    let around = found.first().map_or(String::new(), |v| {
        let lo = v.step.saturating_sub(12);
        let hi = (v.step + 4).min(tl.records.len());
        (lo..hi)
            .map(|i| {
                format!(
                    "{i:>6} +{:.3}s {:?}",
                    tl.records[i].at.as_secs_f64(),
                    tl.records[i].entry
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    format!("{found:?}\n{around}")
}

/// When the run's `Ended` was recorded.
fn ended_at(tl: &Timeline<Raw>) -> (usize, Duration) {
    tl.records
        .iter()
        .enumerate()
        .find(|(_, r)| matches!(r.entry, Entry::Output(Output::Event(Event::Ended(_)))))
        .map(|(i, r)| (i, r.at))
        .expect("the connection ended")
}

#[test]
fn a_vanished_peer_is_aborted_as_stale_within_the_threshold() {
    let r = run(vec![(100, PeerAction::Vanish)], 1);
    assert_eq!(r.end, Some(EndCause::Lost(DisconnectReason::Stale)));
    let (_, at) = ended_at(&r.timeline);
    // The last pong came at most one ping interval before the peer vanished.
    assert!(
        at >= s(100) + s(15) - s(5) && at <= s(100) + s(15),
        "ended at {at:?}"
    );
}

#[test]
fn a_peer_that_stops_reading_trips_the_send_deadline() {
    let r = run(vec![(100, PeerAction::StopReading(s(3600)))], 2);
    assert_eq!(r.end, Some(EndCause::Lost(DisconnectReason::SendDeadline)));
    let (_, at) = ended_at(&r.timeline);
    // The application writes about every second, so the first unread write goes out
    // within a few seconds of the stop and is judged 4 s later.
    assert!(at >= s(104) && at < s(112), "ended at {at:?}");
    // A pause shorter than the deadline is only slow.
    let r = run(
        vec![(100, PeerAction::StopReading(Duration::from_millis(2500)))],
        2,
    );
    assert_eq!(
        r.end,
        Some(EndCause::Closed {
            code: CloseCode::NORMAL,
            reason: "end of run".into(),
            confirmed: true
        })
    );
    assert!(r.stats.slow_writes >= 1);
}

#[test]
fn closes_are_confirmed_or_time_out_and_terminate_is_immediate() {
    let r = run(vec![(50, PeerAction::AppClose(4000))], 3);
    assert_eq!(
        r.end,
        Some(EndCause::Closed {
            code: CloseCode(4000),
            reason: "app close".into(),
            confirmed: true
        })
    );
    let r = run(
        vec![(50, PeerAction::Vanish), (51, PeerAction::AppClose(1001))],
        3,
    );
    assert!(
        matches!(
            r.end,
            Some(EndCause::Closed {
                confirmed: false,
                ..
            })
        ),
        "{:?}",
        r.end
    );
    let (_, at) = ended_at(&r.timeline);
    assert_eq!(at, s(51) + s(3), "aborted at the close timeout");
    let r = run(vec![(50, PeerAction::AppTerminate)], 3);
    assert_eq!(r.end, Some(EndCause::Terminated));
    assert_eq!(ended_at(&r.timeline).1, s(50));
}

#[test]
fn the_peer_closing_dropping_or_failing_a_write_ends_the_connection() {
    let r = run(vec![(20, PeerAction::Close(4001))], 4);
    assert!(matches!(
        r.end,
        Some(EndCause::Lost(DisconnectReason::Closed {
            code: Some(CloseCode(4001)),
            ..
        }))
    ));
    let r = run(vec![(20, PeerAction::Drop)], 4);
    assert!(matches!(
        r.end,
        Some(EndCause::Lost(DisconnectReason::Closed { code: None, .. }))
    ));
    let r = run(vec![(20, PeerAction::FailWrite)], 4);
    assert_eq!(r.end, Some(EndCause::Lost(DisconnectReason::WriteFailed)));
}

/// What the codec refuses ends the connection as on the wire (the simulated network
/// applies the link's rules, `link_model`): a frame over `max_inbound_frame` and invalid
/// UTF-8 are protocol errors, not violations on a connection that goes on.
#[test]
fn garbage_the_codec_refuses_ends_the_connection() {
    let r = run(vec![(10, PeerAction::Garbage(Garbage::Oversized))], 5);
    assert!(
        matches!(
            r.end,
            Some(EndCause::Lost(DisconnectReason::ProtocolError(
                tether_core::Violation::Oversized { .. }
            )))
        ),
        "{:?}",
        r.end
    );
    let r = run(vec![(10, PeerAction::Garbage(Garbage::InvalidUtf8))], 5);
    assert_eq!(
        r.end,
        Some(EndCause::Lost(DisconnectReason::ProtocolError(
            tether_core::Violation::InvalidUtf8
        )))
    );
}

#[test]
fn binary_is_accepted_and_a_sleep_probes_instead_of_condemning() {
    let r = run(
        vec![
            (12, PeerAction::Garbage(Garbage::Binary)),
            (100, PeerAction::ClockJump(s(3600))),
        ],
        5,
    );
    assert_eq!(r.stats.violations, 0);
    assert_eq!(r.stats.clock_jumps, 1);
    assert!(
        matches!(
            r.end,
            Some(EndCause::Closed {
                confirmed: true,
                ..
            })
        ),
        "the peer answered the probe: {:?}",
        r.end
    );
}

// ---- the oracles see the server role ---------------------------------------------------

/// Removes the records from the end verdict (its abort, disconnect and end) on, keeping
/// only later non-output records: a machine that never reached the verdict.
fn without_verdict(tl: &Timeline<Raw>) -> Timeline<Raw> {
    let (i, _) = ended_at(tl);
    let mut out = tl.clone();
    let mut start = i;
    while start > 0 && matches!(out.records[start - 1].entry, Entry::Output(_)) {
        start -= 1;
    }
    out.records = out
        .records
        .iter()
        .enumerate()
        .filter(|(k, r)| *k < start || !matches!(r.entry, Entry::Output(_)))
        .map(|(_, r)| r.clone())
        .collect();
    out
}

fn oracle_names(found: &[Violation]) -> Vec<&'static str> {
    found.iter().map(|v| v.oracle).collect()
}

#[test]
fn a_guard_that_missed_a_silent_peer_is_reported() {
    let r = run(vec![(100, PeerAction::Vanish)], 6);
    let found = server_role::check(&without_verdict(&r.timeline));
    let names = oracle_names(&found);
    assert!(names.contains(&"silent_peer_detected"), "{found:?}");
    assert!(names.contains(&"ends_once"), "{found:?}");
}

#[test]
fn a_guard_that_missed_a_send_deadline_is_reported() {
    let r = run(vec![(100, PeerAction::StopReading(s(3600)))], 7);
    let found = server_role::check(&without_verdict(&r.timeline));
    assert!(
        oracle_names(&found).contains(&"send_deadline_kept"),
        "{found:?}"
    );
}

#[test]
fn a_second_end_or_a_write_after_the_end_is_reported() {
    let r = run(vec![(50, PeerAction::AppTerminate)], 8);
    let (i, at) = ended_at(&r.timeline);
    let mut twice = r.timeline.clone();
    let end = twice.records[i].clone();
    twice.records.insert(i + 1, end);
    let found = server_role::ends_once(&twice).expect("reported");
    assert_eq!(found.step, i + 1);
    let mut late = r.timeline.clone();
    let write = r
        .timeline
        .records
        .iter()
        .find(|r| matches!(r.entry, Entry::Output(Output::SendFrame { .. })))
        .expect("a write")
        .clone();
    late.records
        .insert(i + 1, tether_sim::Record { at, ..write });
    assert_eq!(server_role::ends_once(&late).map(|v| v.step), Some(i + 1));
}

// ---- the sweep ---------------------------------------------------------------------------

#[test]
fn random_scripts_keep_every_invariant_and_replay_exactly() {
    let seeds: u64 = std::env::var("TETHER_SIM_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    for seed in 0..seeds {
        let script = PeerScript::random(seed, s(600));
        let a = server_role::run(config(), script.clone(), seed, s(600));
        let found = server_role::check(&a.timeline);
        assert!(
            found.is_empty(),
            "seed {seed}, script {script:?}:\n{}\nreplay: TETHER_SIM_SEEDS={} cargo test -p tether-sim --test server_role",
            report(&found, &a.timeline),
            seed + 1
        );
        assert!(a.end.is_some(), "seed {seed}: never ended");
        if seed % 20 == 0 {
            let b = server_role::run(config(), script, seed, s(600));
            assert_eq!(
                a.timeline.records, b.timeline.records,
                "seed {seed} is not deterministic"
            );
        }
    }
}
