//! Behaviour 4: backoff — the schedule with jitter, the stable-period reset, no hot loop
//! for accept-then-close, and the attempt limit.

mod common;
use common::*;
use std::time::Duration;
use tether_core::{
    AttemptError, Config, EndReason, Event, Jitter, SessionError, Status, TransportFailure,
};

fn refusing(h: &mut H) -> Vec<Duration> {
    let mut waits = Vec::new();
    for _ in 0..8 {
        h.failed(TransportFailure::Refused);
        let (_, wait) = h.until_attempt();
        waits.push(wait);
    }
    waits
}

#[test]
fn waits_follow_the_schedule_without_jitter() {
    let cfg = Config::builder()
        .retry_first_connect(true)
        .jitter(Jitter::None)
        .build()
        .unwrap();
    let mut h = H::new(cfg);
    h.connect();
    let waits: Vec<u64> = refusing(&mut h).iter().map(Duration::as_secs).collect();
    assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30, 30]);
}

#[test]
fn full_jitter_keeps_every_wait_within_its_step() {
    let cfg = Config::builder().retry_first_connect(true).build().unwrap();
    let steps = cfg.backoff.clone();
    for seed in 0..20 {
        let mut h = H::with(cfg.clone(), Lines::default(), seed);
        h.connect();
        for (i, wait) in refusing(&mut h).into_iter().enumerate() {
            let (lo, hi) = steps.bounds(i as u32 + 1, None);
            assert!(
                lo <= wait && wait <= hi,
                "seed {seed} attempt {i}: {wait:?}"
            );
        }
    }
}

#[test]
fn the_same_seed_gives_the_same_waits_and_seeds_differ() {
    let cfg = Config::builder().retry_first_connect(true).build().unwrap();
    let run = |seed| {
        let mut h = H::with(cfg.clone(), Lines::default(), seed);
        h.connect();
        refusing(&mut h)
    };
    assert_eq!(run(9), run(9));
    assert_ne!(run(9), run(10));
}

#[test]
fn accept_then_close_grows_the_backoff_instead_of_looping() {
    let cfg = Config::builder().jitter(Jitter::None).build().unwrap();
    let mut h = H::new(cfg);
    h.open();
    let mut waits = Vec::new();
    for _ in 0..5 {
        // Open, acked, and closed at once: never stable.
        let out = h.closed(Some(1011), "");
        waits.push(retry_waits(&out)[0].as_secs());
        h.until_attempt();
        let out = h.opened();
        h.complete_writes(&out);
        h.frame("ack");
    }
    assert_eq!(waits, [1, 2, 4, 8, 16]);
}

#[test]
fn the_counter_resets_only_after_the_stable_period() {
    let cfg = Config::builder().jitter(Jitter::None).build().unwrap();
    let mut h = H::new(cfg);
    h.open();
    h.closed(Some(1011), "");
    h.until_attempt();
    let out = h.opened();
    h.complete_writes(&out);
    h.frame("ack");
    assert_eq!(h.s.failures(), 1);
    h.advance(secs(4.9));
    assert_eq!(h.s.failures(), 1, "not stable yet");
    h.advance(secs(0.1));
    assert_eq!(h.s.failures(), 0, "stable after 5 s");
    let out = h.closed(Some(1011), "");
    assert_eq!(retry_waits(&out), [secs(1.0)]);
}

#[test]
fn the_attempt_limit_turns_retry_into_failed() {
    let cfg = Config::builder()
        .retry_first_connect(true)
        .max_attempts(Some(3))
        .build()
        .unwrap();
    let mut h = H::new(cfg);
    h.connect();
    h.failed(TransportFailure::Refused);
    h.until_attempt();
    h.failed(TransportFailure::Refused);
    h.until_attempt();
    let out = h.failed(TransportFailure::Refused);
    assert_eq!(h.s.status(), Status::Failed);
    assert!(events(&out).contains(&Event::Ended(EndReason::Failed(
        SessionError::AttemptsExhausted {
            attempts: 3,
            last: AttemptError::Transport(TransportFailure::Refused)
        }
    ))));
    assert_eq!(h.s.poll_timeout(), None);
    assert_eq!(h.s.stats().attempts, 3);
}

/// A connection lost before it proved stable counts against the attempt limit, so
/// accept-then-close ends instead of looping for ever; one lost after it proved stable
/// does not.
#[test]
fn unstable_losses_count_against_the_attempt_limit_and_stable_ones_do_not() {
    let cfg = Config::builder().max_attempts(Some(3)).build().unwrap();
    let mut h = H::new(cfg.clone());
    h.open();
    for _ in 0..2 {
        h.closed(Some(1011), "");
        h.until_attempt();
        let o = h.opened();
        h.complete_writes(&o);
        h.frame("ack");
    }
    h.closed(Some(1011), "");
    assert_eq!(h.s.status(), Status::Failed, "accept-then-close ends");
    let mut h = H::new(cfg);
    h.open();
    for round in 0..5 {
        let out = h.run_for(secs(6.0));
        h.complete_writes(&out);
        h.closed(Some(1011), "");
        assert_eq!(h.s.status(), Status::Reconnecting, "round {round}");
        h.until_attempt();
        let o = h.opened();
        h.complete_writes(&o);
        h.frame("ack");
    }
}

#[test]
fn every_retry_describes_its_own_bounds_and_is_kept() {
    let cfg = Config::builder().retry_first_connect(true).build().unwrap();
    let mut h = H::with(cfg.clone(), Lines::default(), 77);
    h.connect();
    for n in 1..=7u32 {
        let out = if n % 2 == 0 {
            h.failed(TransportFailure::Http {
                status: 429,
                retry_after: None,
            })
        } else {
            h.failed(TransportFailure::Refused)
        };
        let retry = events(&out)
            .into_iter()
            .find_map(|e| match e {
                Event::AttemptFailed { retry, .. } => retry,
                _ => None,
            })
            .expect("a retry");
        assert_eq!(retry.failures, n);
        assert_eq!(retry.floor.is_some(), n % 2 == 0, "429 carries its floor");
        let (lo, hi) = cfg.backoff.bounds(retry.failures, retry.floor);
        assert!(lo <= retry.wait && retry.wait <= hi);
        let (_, waited) = h.until_attempt();
        assert_eq!(waited, retry.wait, "the next attempt starts exactly then");
    }
}
