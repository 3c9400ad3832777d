//! Determinism: the same config, seed and timestamped inputs give the same outputs, byte
//! for byte; a different seed changes only what randomness decides.

mod common;
use common::*;
use tether_core::{Config, TransportFailure};

fn run(seed: u64) -> H {
    let cfg = Config::builder().retry_first_connect(true).build().unwrap();
    let mut h = H::with(cfg, Lines::default(), seed);
    h.connect();
    h.failed(TransportFailure::Refused);
    h.until_attempt();
    let out = h.opened();
    h.complete_writes(&out);
    h.frame("ack");
    let id = h.s.request(Req("chat", Some("k")), None, h.now).unwrap();
    let out = h.drain();
    h.complete_writes(&out);
    h.frame("ev k 1 delta a");
    h.frame(&format!("res {} ok x", id.get()));
    h.closed(Some(1011), "");
    h.until_attempt();
    h.advance(secs(100.0));
    h
}

fn scenario(seed: u64) -> String {
    let h = run(seed);
    // Offsets from t0, not Instants, so two runs compare equal as text.
    let t0 = h.t0;
    format!("{:?}", h.log).replace(&format!("{t0:?}"), "T0") + &format!("{:?}", h.elapsed())
}

#[test]
fn same_seed_same_outputs() {
    assert_eq!(scenario(5), scenario(5));
}

/// The seed decides the jitter: every backoff wait differs between seeds (comparing the
/// whole log would pass on any difference at all, such as a request nonce).
#[test]
fn different_seed_different_jitter() {
    let (a, b) = (retry_waits(&run(5).log), retry_waits(&run(6).log));
    assert!(a.len() >= 2, "{a:?}");
    assert_eq!(a.len(), b.len(), "{a:?} {b:?}");
    for (x, y) in a.iter().zip(&b) {
        assert_ne!(x, y, "seeds 5 and 6 drew the same wait: {a:?} {b:?}");
    }
}
