//! docs/simulation.md's own-protocol campaign: the example between the markers is the
//! guide's code block, verbatim (checked below); it runs a 1,000-seed campaign of a
//! protocol of the user's own through `tether_sim::Campaign`. The same protocol with its
//! ack broken is caught by `healthy_peer_opens`.

// --- example start ---
use std::convert::Infallible;
use tether_core::*;
use tether_sim::*;

struct Lines; // one line of text per frame; the peer's `ready` opens the session

impl Protocol for Lines {
    type Inbound = String;
    type Outbound = String;
    type Request = Infallible;
    type Response = Infallible;
    type RemoteError = Infallible;
    fn open(&mut self, _: ConnId) -> Result<Opening, EncodeError> {
        Ok(Opening::AwaitServer)
    }
    fn encode(&mut self, line: String) -> Result<OutFrame, EncodeError> {
        Ok(OutFrame::text(line))
    }
    fn decode(&mut self, frame: DataFrame, _: Phase) -> Decoded<Self> {
        match frame {
            DataFrame::Text(t) if t.as_str() == "ready" => Decoded::Ack(Acked::default()),
            DataFrame::Text(t) => Decoded::Message(t.as_str().to_owned()),
            DataFrame::Binary(_) => Decoded::Violation(Violation::UnexpectedBinary),
        }
    }
}

fn peer() -> impl Server {
    FnServer::new(|event, ctx| match event {
        ServerEvent::Open(conn) => ctx.send(conn, Wire::text("ready")),
        ServerEvent::Frame(conn, frame) => ctx.send(conn, frame),
        _ => {}
    })
}

#[test]
fn lines_hold_over_a_thousand_seeds() {
    let report = Campaign::new("lines", || Lines, peer)
        .send(|rng| format!("n{}", rng.u32(..)))
        .seeds(1000)
        .run();
    assert!(report.passed(), "{report}");
}
// --- example end ---

use std::time::Duration;

/// [`Lines`] with its ack broken: the peer's `ready` is taken for a message, so the session
/// never opens. Every other oracle lets this pass (a session that ends is exempt from
/// liveness); `healthy_peer_opens` does not.
struct NeverAcked(Lines);

impl Protocol for NeverAcked {
    type Inbound = String;
    type Outbound = String;
    type Request = Infallible;
    type Response = Infallible;
    type RemoteError = Infallible;
    fn open(&mut self, conn: ConnId) -> Result<Opening, EncodeError> {
        self.0.open(conn)
    }
    fn encode(&mut self, line: String) -> Result<OutFrame, EncodeError> {
        self.0.encode(line)
    }
    fn decode(&mut self, frame: DataFrame, phase: Phase) -> Decoded<Self> {
        match self.0.decode(frame, phase) {
            Decoded::Ack(_) => Decoded::Message("ready".to_owned()),
            Decoded::Message(m) => Decoded::Message(m),
            Decoded::Violation(v) => Decoded::Violation(v),
            _ => Decoded::Ignore,
        }
    }
}

/// A small campaign of the broken protocol, by default (retrying the first connect) or
/// with `retry_first_connect: false` (the session then ends at its first handshake
/// timeout, which no fault explains).
fn broken(retry_first_connect: bool) -> Campaign<NeverAcked, impl Server> {
    let config = Config {
        retry_first_connect,
        ..Config::default()
    };
    Campaign::new("lines-never-acked", || NeverAcked(Lines), peer)
        .config(config)
        .send(|rng| format!("n{}", rng.u32(..)))
        .seeds(20)
        .duration(std::time::Duration::from_secs(600))
        .shrink(2)
}

#[test]
fn a_broken_ack_is_caught_by_healthy_peer_opens() {
    for retry_first_connect in [true, false] {
        let campaign = broken(retry_first_connect);
        let report = campaign.run();
        assert!(!report.passed(), "{report}");
        // Retrying, every seed is caught. Not retrying, a seed whose first attempt met a
        // fault (seed 19: slow connects) ends with a cause the world confirms.
        let caught = report.failing_oracles().get("healthy_peer_opens").copied();
        let want = if retry_first_connect { 20 } else { 19 };
        assert_eq!(caught, Some(want), "{report}");
        if !retry_first_connect {
            // No other oracle sees it: the session ended, so liveness does not apply.
            assert_eq!(report.failing_oracles().len(), 1, "{report}");
        }
        let shown = report.to_string();
        assert!(shown.contains("healthy_peer_opens at step"), "{shown}");
        assert!(shown.contains("replay: campaign.replay("), "{shown}");
        assert!(shown.contains("SHRUNK plan"), "{shown}");
        // A failing seed replays from its plan: the same violations, and the timeline.
        let first = &report.failures[0];
        let again = campaign
            .replay(first.report.seed, &scenario::plan_spec(&first.report.plan))
            .expect("the printed plan parses");
        assert_eq!(again.violations, first.report.violations);
        assert!(again.timeline.is_some_and(|t| t.contains("StatusChanged")));
    }
}

/// A protocol with requests: `ask <id> <n>` is answered `ans <id> <n>`. With `off_by_one`
/// it reads every answer as the answer to the next request.
struct Asks {
    off_by_one: bool,
}

impl Protocol for Asks {
    type Inbound = String;
    type Outbound = String;
    type Request = u64;
    type Response = u64;
    type RemoteError = String;
    fn open(&mut self, conn: ConnId) -> Result<Opening, EncodeError> {
        Lines.open(conn)
    }
    fn encode(&mut self, line: String) -> Result<OutFrame, EncodeError> {
        Lines.encode(line)
    }
    fn encode_request(&mut self, m: RequestMeta, n: u64) -> Result<EncodedRequest, EncodeError> {
        let frame = OutFrame::text(format!("ask {} {n}", m.id.get()));
        Ok(EncodedRequest {
            frame,
            stream: None,
            idempotent: false,
            resumable: false,
        })
    }
    fn decode(&mut self, frame: DataFrame, phase: Phase) -> Decoded<Self> {
        let skew = u64::from(self.off_by_one);
        if let DataFrame::Text(t) = &frame
            && let ["ans", id, n] = t.as_str().split(' ').collect::<Vec<_>>()[..]
            && let (Ok(id), Ok(n)) = (id.parse::<u64>(), n.parse())
        {
            let id = Ok(RequestId::from_raw(id + skew));
            return Decoded::Response { id, result: Ok(n) };
        }
        match Lines.decode(frame, phase) {
            Decoded::Ack(a) => Decoded::Ack(a),
            Decoded::Message(m) => Decoded::Message(m),
            _ => Decoded::Ignore,
        }
    }
}

/// The peer of [`Asks`]: `ready` on open, answering `ask <id> <n>` with `ans <id> <n>`.
fn asks_peer() -> impl Server {
    FnServer::new(|event, ctx| match event {
        ServerEvent::Open(conn) => ctx.send(conn, Wire::text("ready")),
        ServerEvent::Frame(conn, frame) => {
            let answer = frame.as_text().unwrap_or("").replacen("ask", "ans", 1);
            ctx.send(conn, Wire::text(answer));
        }
        _ => {}
    })
}

fn asks(off_by_one: bool) -> campaign::CampaignReport {
    Campaign::new("asks", move || Asks { off_by_one }, asks_peer)
        .send(|rng| format!("n{}", rng.u32(..)))
        .request(|rng| rng.u64(..1000))
        .seeds(30)
        .duration(std::time::Duration::from_secs(900))
        .run()
}

#[test]
fn requests_from_closures_succeed_against_a_healthy_peer() {
    let report = asks(false);
    assert!(report.passed(), "{report}");
    assert!(report.totals.requests_ok > 1000, "{report}");
}

/// Answers matched to the wrong request: nearly every request times out, including those
/// made while the peer is healthy, and `healthy_peer_opens` says so in every seed.
#[test]
fn responses_matched_off_by_one_are_caught_by_healthy_peer_opens() {
    let report = asks(true);
    assert!(!report.passed(), "{report}");
    assert_eq!(
        report.failing_oracles().get("healthy_peer_opens"),
        Some(&30),
        "{report}"
    );
    assert!(
        report
            .to_string()
            .contains("timed out though the session was open")
    );
}

/// A configuration drawn per seed: each seed runs its own, and an invalid one is reported
/// under the oracle `config` instead of panicking.
#[test]
fn configs_drawn_per_seed_run_and_invalid_ones_are_reported() {
    let report = Campaign::new("lines-drawn-configs", || Lines, peer)
        .configs(|rng| Config {
            connect_timeout: std::time::Duration::from_secs(rng.u64(0..4)),
            retry_first_connect: true,
            ..Config::default()
        })
        .send(|rng| format!("n{}", rng.u32(..)))
        .seeds(40)
        .duration(std::time::Duration::from_secs(600))
        .shrink(0)
        .run();
    let by_oracle = report.failing_oracles();
    let invalid = by_oracle.get("config").copied().unwrap_or(0);
    assert!((1..40).contains(&invalid), "{report}");
    assert_eq!(
        by_oracle.len(),
        1,
        "only the invalid configs fail: {report}"
    );
    assert!(
        report
            .to_string()
            .contains("connect_timeout must be greater than zero"),
        "{report}"
    );
}

/// [`Lines`] with a buffering bug: each line is held back and the one before it is written
/// in its place, so the line written last before a disconnect (or the run's end) never
/// reaches the peer, and the first goes out empty. The session accepts every `send` and
/// its writes complete; only the world's ledger, which follows each message to the peer,
/// can see the loss.
struct OneBehind {
    held: Option<String>,
}

impl Protocol for OneBehind {
    type Inbound = String;
    type Outbound = String;
    type Request = Infallible;
    type Response = Infallible;
    type RemoteError = Infallible;
    fn open(&mut self, conn: ConnId) -> Result<Opening, EncodeError> {
        Lines.open(conn)
    }
    fn encode(&mut self, line: String) -> Result<OutFrame, EncodeError> {
        Ok(OutFrame::text(self.held.replace(line).unwrap_or_default()))
    }
    fn decode(&mut self, frame: DataFrame, phase: Phase) -> Decoded<Self> {
        match Lines.decode(frame, phase) {
            Decoded::Ack(a) => Decoded::Ack(a),
            Decoded::Message(m) => Decoded::Message(m),
            _ => Decoded::Ignore,
        }
    }
}

/// The line as the world expects it on the wire: one text frame holding it.
#[allow(clippy::ptr_arg)] // The protocol's `Outbound` is `String`.
fn as_sent(line: &String) -> Option<(bool, bytes::Bytes)> {
    Some((false, bytes::Bytes::from(line.clone())))
}

#[test]
fn a_lost_send_is_caught_by_messages_accounted() {
    let campaign = |name| {
        Campaign::new(name, || OneBehind { held: None }, peer)
            .identify_sends(as_sent)
            .send(|rng| format!("n{}", rng.u32(..)))
            .seeds(20)
            .duration(std::time::Duration::from_secs(600))
            .shrink(0)
    };
    let report = campaign("lines-one-behind").run();
    assert!(!report.passed(), "{report}");
    let lost = report.failing_oracles().get("messages_accounted").copied();
    assert_eq!(lost, Some(20), "{report}");
    // The same ledger passes the protocol without the bug.
    let sound = Campaign::new("lines", || Lines, peer)
        .identify_sends(as_sent)
        .send(|rng| format!("n{}", rng.u32(..)))
        .seeds(20)
        .duration(std::time::Duration::from_secs(600))
        .run();
    assert!(sound.passed(), "{sound}");
}

/// [`Lines`] whose peer is sometimes busy: on every third connection it answers
/// `{"busy":true,"retryAfterMs":<ms>}` instead of `ready`, asking the client to come back
/// after that many milliseconds. With `seconds_bug` the protocol reads the number as seconds, so the
/// session waits a thousand times longer than the peer asked (up to `max_floor`).
struct Busy {
    seconds_bug: bool,
}

impl Protocol for Busy {
    type Inbound = String;
    type Outbound = String;
    type Request = Infallible;
    type Response = Infallible;
    type RemoteError = Infallible;
    fn open(&mut self, conn: ConnId) -> Result<Opening, EncodeError> {
        Lines.open(conn)
    }
    fn encode(&mut self, line: String) -> Result<OutFrame, EncodeError> {
        Lines.encode(line)
    }
    fn decode(&mut self, frame: DataFrame, phase: Phase) -> Decoded<Self> {
        if let DataFrame::Text(t) = &frame
            && let Ok(v) = serde_json::from_str::<serde_json::Value>(t.as_str())
            && let Some(n) = v.get("retryAfterMs").and_then(serde_json::Value::as_u64)
        {
            let retry_after = if self.seconds_bug {
                Duration::from_secs(n)
            } else {
                Duration::from_millis(n)
            };
            return Decoded::Rejected(Rejection {
                message: "busy".into(),
                fatal: false,
                retry_after: Some(retry_after),
            });
        }
        match Lines.decode(frame, phase) {
            Decoded::Ack(a) => Decoded::Ack(a),
            Decoded::Message(m) => Decoded::Message(m),
            _ => Decoded::Ignore,
        }
    }
}

/// The peer of [`Busy`]: the `retryAfterMs` field is the protocol-agnostic name the
/// oracles read a requested wait under.
fn busy_peer() -> impl Server {
    let mut opened = 0u64;
    FnServer::new(move |event, ctx| match event {
        ServerEvent::Open(conn) => {
            opened += 1;
            if opened.is_multiple_of(3) {
                ctx.send(conn, Wire::text(r#"{"busy":true,"retryAfterMs":2000}"#));
            } else {
                ctx.send(conn, Wire::text("ready"));
            }
        }
        ServerEvent::Frame(conn, frame) => ctx.send(conn, frame),
        _ => {}
    })
}

fn busy(seconds_bug: bool) -> campaign::CampaignReport {
    Campaign::new("lines-busy", move || Busy { seconds_bug }, busy_peer)
        .send(|rng| format!("n{}", rng.u32(..)))
        .seeds(20)
        .duration(Duration::from_secs(1800))
        .shrink(0)
        .run()
}

/// The campaign finds a wrong backoff schedule with no scenario written for it: the
/// oracle reads the wait the peer asked for off the wire (`retryAfterMs`) and recomputes
/// the allowed waits from the config, so a protocol that misreads the unit waits far
/// outside them; the sound protocol passes the same campaign.
#[test]
fn a_misread_retry_after_is_caught_by_backoff_within_bounds() {
    let sound = busy(false);
    assert!(sound.passed(), "{sound}");
    let broken = busy(true);
    assert!(!broken.passed(), "{broken}");
    let caught = broken
        .failing_oracles()
        .get("backoff_within_bounds")
        .copied();
    // 16 of the 20 seeds; the others met no busy answer they could misread in time.
    assert!(caught.is_some_and(|n| n >= 15), "{broken}");
    assert_eq!(
        broken.failing_oracles().len(),
        1,
        "only the schedule is wrong: {broken}"
    );
    assert!(
        broken.to_string().contains("backoff_within_bounds"),
        "{broken}"
    );
}
