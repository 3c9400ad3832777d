//! Boundary values from configuration, callers and peers: each reproduction of the
//! reliability review (`reliability-review.md` §7 C1, C2, C3, C5, C6, C10, C11) as a named
//! regression test. Before the fixes each of these panicked or left the session in a
//! state a peer had chosen (stale detection off, reconnects parked for centuries).

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use tether_core::profiles::{Gateway, GatewayOptions, HelloAck, HelloAckRequest, JsonPayload};
use tether_core::server::{ServerConfig, ServerConn};
use tether_core::{
    BackoffConfig, Config, ConfigError, DisconnectReason, Event, Input, Jitter, LivenessConfig,
    MAX_DURATION, MAX_HEARTBEAT_FACTOR, OfflinePolicy, Output, QueueConfig, RequestFailure, Status,
    StreamConfig, StreamEventKind, TransportFailure,
};

const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

fn hello_ack() -> HelloAck {
    HelloAck::new(|| json!({ "client": "boundaries" }))
}

/// A `HelloAck` session opened with `ack` as the server's acknowledgement.
fn open_hello_ack(config: Config, ack: &Value) -> H<HelloAck> {
    let mut h = H::with(config, hello_ack(), 3);
    h.connect();
    let out = h.input(Input::TransportOpened { conn: h.conn() });
    h.complete_writes(&out);
    h.frame(&ack.to_string());
    assert_eq!(h.s.status(), Status::Open, "{} outputs", h.log.len());
    h
}

/// Lets `d` pass as a punctual driver whose writes all complete: waking at every deadline,
/// reporting every frame written at once. Returns every output.
fn run_writing<P: tether_core::Protocol>(h: &mut H<P>, d: Duration) -> Vec<Output<P>> {
    let end = h.now + d;
    let mut all = Vec::new();
    for _ in 0..100_000 {
        let Some(at) = h.s.poll_timeout().filter(|t| *t <= end) else {
            break;
        };
        h.now = at.max(h.now);
        h.s.handle_timeout(h.now);
        let out = h.drain();
        h.complete_writes(&out);
        all.extend(out);
    }
    h.now = end;
    h.s.handle_timeout(end);
    all.extend(h.drain());
    all
}

fn disconnects<P: tether_core::Protocol>(out: &[Output<P>]) -> Vec<DisconnectReason> {
    events(out)
        .into_iter()
        .filter_map(|e| match e {
            Event::Disconnected { reason, .. } => Some(reason),
            _ => None,
        })
        .collect()
}

// ---- C1: a request timeout of Duration::MAX ---------------------------------------------

/// C1: `request(.., Some(Duration::MAX))` panicked at `now + timeout`. It now means no
/// deadline: a century later the request is still pending, and its answer resolves it.
#[test]
fn c1_a_request_timeout_of_duration_max_means_no_deadline() {
    // No pings and a stale threshold of a year: the connection lives as long as the
    // peer sends something twice a year, so only a request timeout could end the wait.
    let config = Config::builder()
        .ping_interval(None)
        .stale_after(MAX_DURATION)
        .build()
        .unwrap();
    let mut h = open_hello_ack(config, &json!({ "type": "hello_ack" }));
    let req = HelloAckRequest::new("slow", json!(null));
    let id =
        h.s.request(req, Some(Duration::MAX), h.now)
            .expect("accepted");
    let out = h.drain();
    h.complete_writes(&out);
    // A punctual driver for a century: no timeout fires.
    for _ in 0..200 {
        h.run_for(YEAR / 2);
        h.frame(r#"{"type":"tick"}"#);
    }
    assert_eq!(h.s.status(), Status::Open);
    assert_eq!(h.s.pending_requests(), 1);
    assert!(!h.events().iter().any(|e| matches!(
        e,
        Event::Response {
            result: Err(RequestFailure::Timeout),
            ..
        }
    )));
    let reply = json!({ "type": "response", "id": id.get(), "result": 1 });
    h.frame(&reply.to_string());
    assert!(h.events().contains(&Event::Response {
        id,
        result: Ok(json!(1).into())
    }));
    assert_eq!(h.s.pending_requests(), 0);
}

/// C1 at the edges: the longest timeout still representable, and one just past the
/// configured ceiling, both work as deadlines; neither panics.
#[test]
fn c1_long_request_timeouts_are_deadlines_and_never_panic() {
    let mut h = H::new(Config::default());
    h.open();
    let id =
        h.s.request(Req("r", None), Some(YEAR * 200), h.now)
            .unwrap();
    assert!(h.s.poll_timeout().is_some());
    h.drain();
    h.s.terminate(h.now);
    h.drain();
    assert!(h.events().iter().any(|e| matches!(
        e,
        Event::Response { id: i, result: Err(RequestFailure::Closed) } if *i == id
    )));
}

// ---- C2: every timeout field of Duration::MAX --------------------------------------------

/// Every duration field of `Config`, set one at a time.
fn with_each_duration(d: Duration) -> Vec<(&'static str, Config)> {
    let base = Config::default;
    let mut out: Vec<(&'static str, Config)> = Vec::new();
    let mut push = |name, f: &dyn Fn(&mut Config)| {
        let mut c = base();
        f(&mut c);
        out.push((name, c));
    };
    push("connect_timeout", &|c| c.connect_timeout = d);
    push("handshake_timeout", &|c| c.handshake_timeout = d);
    push("send_deadline", &|c| c.send_deadline = d);
    push("request_timeout", &|c| c.request_timeout = d);
    push("close_timeout", &|c| c.close_timeout = d);
    push("idle_timeout", &|c| c.idle_timeout = Some(d));
    push("stale_after", &|c| c.liveness.stale_after = d);
    push("ping_interval", &|c| {
        c.liveness.ping_interval = Some(d);
        c.liveness.stale_after = MAX_DURATION;
    });
    push("probe_timeout", &|c| c.liveness.probe_timeout = d);
    push("clock_jump_threshold", &|c| {
        c.liveness.clock_jump_threshold = d
    });
    push("max_heartbeat", &|c| c.liveness.max_heartbeat = d);
    push("backoff.schedule", &|c| c.backoff.schedule = vec![d]);
    push("backoff.stable_after", &|c| c.backoff.stable_after = d);
    push("backoff.max_floor", &|c| c.backoff.max_floor = d);
    push("streams.dedup_ttl", &|c| c.streams.dedup_ttl = d);
    push("streams.completed_cooldown", &|c| {
        c.streams.completed_cooldown = d;
    });
    push("streams.idle_timeout", &|c| {
        c.streams.idle_timeout = Some(d)
    });
    push("offline.ttl", &|c| {
        c.offline = OfflinePolicy::Queue(QueueConfig {
            ttl: Some(d),
            ..QueueConfig::default()
        });
    });
    out
}

/// C2: each timeout of `Duration::MAX` validated and then panicked on first use. Each is
/// now refused by name with its ceiling.
#[test]
fn c2_every_duration_above_its_ceiling_is_refused_by_name() {
    for (field, config) in with_each_duration(Duration::MAX) {
        // The stale threshold must exceed the ping interval: a ping interval of
        // Duration::MAX is caught either way, so accept either complaint for it.
        match config.validate() {
            Err(ConfigError::TooLong { field: f, max }) => {
                assert_eq!(max, MAX_DURATION);
                assert!(
                    field == f || field == "ping_interval",
                    "{field}: refused as {f}"
                );
            }
            Err(ConfigError::StaleBeforePing { .. }) if field == "ping_interval" => {}
            other => panic!("{field}: {other:?}"),
        }
        assert!(
            tether_core::Session::new(config, Lines::default(), 1).is_err(),
            "{field}"
        );
    }
    for (field, config) in with_each_duration(MAX_DURATION + Duration::from_nanos(1)) {
        assert!(config.validate().is_err(), "{field} just above the ceiling");
    }
}

/// C2, the other side: every duration at its ceiling is valid, and a session with all of
/// them at once runs through connect, open, requests, a close and a century of time.
#[test]
#[allow(clippy::needless_update)] // A field added later takes its default.
fn c2_every_duration_at_its_ceiling_is_accepted_and_runs() {
    for (field, config) in with_each_duration(MAX_DURATION) {
        let ok = config.validate();
        if field == "ping_interval" {
            // A ping interval of a year needs a stale threshold above it, which the
            // ceiling leaves no room for.
            assert!(
                matches!(ok, Err(ConfigError::StaleBeforePing { .. })),
                "{ok:?}"
            );
        } else {
            assert!(ok.is_ok(), "{field}: {ok:?}");
        }
    }
    let config = Config {
        connect_timeout: MAX_DURATION,
        handshake_timeout: MAX_DURATION,
        send_deadline: MAX_DURATION,
        slow_write_warning: MAX_DURATION - Duration::from_nanos(1),
        request_timeout: MAX_DURATION,
        close_timeout: MAX_DURATION,
        idle_timeout: Some(MAX_DURATION),
        liveness: LivenessConfig {
            ping_interval: Some(MAX_DURATION - Duration::from_nanos(1)),
            stale_after: MAX_DURATION,
            heartbeat_stale_factor: MAX_HEARTBEAT_FACTOR,
            clock_jump_threshold: MAX_DURATION,
            probe_timeout: MAX_DURATION,
            max_heartbeat: MAX_DURATION,
            message_timeout: MAX_DURATION,
            ..LivenessConfig::default()
        },
        backoff: BackoffConfig {
            schedule: vec![MAX_DURATION],
            stable_after: MAX_DURATION,
            max_floor: MAX_DURATION,
            jitter: Jitter::Full,
            ..BackoffConfig::default()
        },
        streams: StreamConfig {
            dedup_ttl: MAX_DURATION,
            completed_cooldown: MAX_DURATION,
            idle_timeout: Some(MAX_DURATION),
            ..StreamConfig::default()
        },
        offline: OfflinePolicy::Queue(QueueConfig {
            ttl: Some(MAX_DURATION),
            max_bytes: usize::MAX,
            max_messages: usize::MAX,
            ..QueueConfig::default()
        }),
        retry_first_connect: true,
        max_pending_writes: usize::MAX,
        max_in_flight_requests: usize::MAX,
        max_inbound_frame: usize::MAX,
        ..Config::default()
    };
    config.validate().expect("every value at its ceiling");
    let mut h = H::new(config);
    let _ = h.s.send("queued".into(), h.now);
    let _ = h.s.request(Req("r", Some("k")), None, h.now);
    h.open();
    h.frame("ack hb=18446744073709551615");
    h.frame("ev k 18446744073709551615 delta x");
    h.frame("ev k 1 final");
    let _ = h.s.send("m".into(), h.now);
    for round in 0..100 {
        h.advance(YEAR);
        if let Some(conn) = h.s.current_conn() {
            let code = Some(tether_core::CloseCode(if round % 2 == 0 {
                1013
            } else {
                1001
            }));
            h.input(Input::TransportClosed {
                conn,
                code,
                reason: String::new(),
            });
        }
        let _ = h.s.connect(h.now);
        h.drain();
    }
    h.s.close(tether_core::CloseCode::NORMAL, "", h.now);
    h.advance(YEAR);
    assert!(h.s.status().is_terminal());
}

// ---- C3: seq = u64::MAX -----------------------------------------------------------------

/// C3: a HelloAck event with `seq = u64::MAX`, then the stream's final: `last + 1`
/// overflowed (a panic in debug builds, `Gap { expected: 0 }` in release).
#[test]
fn c3_seq_u64_max_then_a_final_is_no_gap_and_no_panic() {
    let mut h = open_hello_ack(Config::default(), &json!({ "type": "hello_ack" }));
    let req = HelloAckRequest::new("gen", json!(null)).streaming();
    let id = h.s.request(req, None, h.now).unwrap();
    let key = id.get().to_string();
    let events = [
        json!({ "type": "event", "stream": key, "seq": u64::MAX, "state": "delta", "text": "a" }),
        // A terminal with a lower seq is not stale: it reached `last + 1`.
        json!({ "type": "event", "stream": key, "seq": 1, "state": "final" }),
    ];
    for e in events {
        h.frame(&e.to_string());
    }
    let kinds: Vec<StreamEventKind<JsonPayload>> = h
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Stream(s) => Some(s.kind),
            _ => None,
        })
        .collect();
    assert!(
        !kinds
            .iter()
            .any(|k| matches!(k, StreamEventKind::Gap { .. })),
        "{kinds:?}"
    );
    assert!(
        matches!(kinds.last(), Some(StreamEventKind::Final { .. })),
        "{kinds:?}"
    );
}

/// C3 with the gap arithmetic at the top of the range: a jump to `u64::MAX` is a gap that
/// expected the next seq, and nothing can follow `u64::MAX`.
#[test]
fn c3_a_gap_up_to_u64_max_names_the_next_seq() {
    let mut h = H::new(Config::default());
    h.open();
    h.s.request(Req("r", Some("k")), None, h.now).unwrap();
    h.frame("ev k 7 delta a");
    h.frame("ev k 18446744073709551615 final");
    let gaps: Vec<_> = h
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Stream(s) => match s.kind {
                StreamEventKind::Gap { expected, received } => Some((expected, received)),
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert_eq!(gaps, vec![(8, u64::MAX)]);
}

// ---- C5, C10: the peer's declared heartbeat ----------------------------------------------

/// C5: a `hello_ack` declaring a heartbeat of 1,000 years turned stale detection off: the
/// session was still `Open` after a day of silence. The declared heartbeat is capped at
/// `max_heartbeat` (5 minutes), so silence is detected after 5 min × 2.
#[test]
fn c5_a_thousand_year_heartbeat_does_not_turn_stale_detection_off() {
    let ack = json!({ "type": "hello_ack", "heartbeatMs": 31_536_000_000_000u64 });
    let mut h = open_hello_ack(Config::default(), &ack);
    let out = run_writing(&mut h, Duration::from_secs(24 * 3600));
    assert_eq!(disconnects(&out).first(), Some(&DisconnectReason::Stale));
    assert_ne!(h.s.status(), Status::Open);
}

/// C5, the time it takes: exactly `max_heartbeat × heartbeat_stale_factor` of silence.
#[test]
fn c5_a_capped_heartbeat_is_detected_at_max_heartbeat_times_factor() {
    let ack = json!({ "type": "hello_ack", "heartbeatMs": u64::MAX });
    let mut h = open_hello_ack(Config::default(), &ack);
    let start = h.now;
    let mut detected = None;
    for _ in 0..2_000 {
        let Some(at) = h.s.poll_timeout() else { break };
        h.now = at;
        h.s.handle_timeout(at);
        let out = h.drain();
        h.complete_writes(&out);
        if !disconnects(&out).is_empty() {
            detected = Some(h.now - start);
            break;
        }
    }
    assert_eq!(detected, Some(Duration::from_secs(600)));
}

/// C10: `heartbeatMs = u64::MAX` with a valid `heartbeat_stale_factor` of 1000 panicked
/// at `last_rx + stale_after` on every later call.
#[test]
fn c10_a_u64_max_heartbeat_with_factor_1000_does_not_panic() {
    let mut config = Config::default();
    config.liveness.heartbeat_stale_factor = 1000;
    config.liveness.max_heartbeat = MAX_DURATION;
    let ack = json!({ "type": "hello_ack", "heartbeatMs": u64::MAX });
    let mut h = open_hello_ack(config, &ack);
    assert!(h.s.poll_timeout().is_some());
    let _ = h.s.send(json!({ "x": 1 }), h.now);
    h.advance(YEAR);
    h.frame(r#"{"type":"tick"}"#);
    run_writing(&mut h, YEAR);
    assert!(h.s.poll_timeout().is_some());
}

/// A Gateway session whose challenge has been answered: the session and the id of the
/// `connect` request it wrote.
fn challenged(config: Config) -> (H<Gateway>, Value) {
    let mut h = H::with(config, Gateway::new(GatewayOptions::default()), 9);
    h.connect();
    h.input(Input::TransportOpened { conn: h.conn() });
    let challenge =
        r#"{"type":"event","event":"connect.challenge","payload":{"nonce":"n","ts":1}}"#;
    let out = h.frame(challenge);
    h.complete_writes(&out);
    let connect_id = sent_texts(&out)
        .iter()
        .find_map(|t| serde_json::from_str::<Value>(t).ok())
        .and_then(|v| v.get("id").cloned())
        .expect("a connect request");
    (h, connect_id)
}

/// C5 and C10 over the Gateway: `policy.tickIntervalMs` of `u64::MAX`.
#[test]
fn c5_c10_a_gateway_tick_interval_of_u64_max_is_capped() {
    let mut config = Config::default();
    config.liveness.heartbeat_stale_factor = 1000;
    let (mut h, connect_id) = challenged(config);
    let ok = json!({
        "type": "res", "id": connect_id, "ok": true,
        "payload": { "type": "hello-ok", "protocol": 4, "policy": { "tickIntervalMs": u64::MAX } },
    });
    h.frame(&ok.to_string());
    assert_eq!(h.s.status(), Status::Open, "{} outputs", h.log.len());
    // Capped at 5 minutes × 1000: stale after 83 h 20 min of silence, not never.
    let out = run_writing(&mut h, Duration::from_secs(83 * 3600));
    assert_eq!(disconnects(&out).first(), None);
    let out = run_writing(&mut h, Duration::from_secs(3600));
    assert_eq!(disconnects(&out).first(), Some(&DisconnectReason::Stale));
}

// ---- C6: the peer's retry floor ----------------------------------------------------------

fn max_wait<P: tether_core::Protocol>(out: &[Output<P>]) -> Duration {
    retry_waits(out).into_iter().max().expect("a retry")
}

/// C6: `hello_error` with `retryAfterMs = u64::MAX` parked reconnects for 584 years. The
/// floor is capped at `max_floor` (10 minutes); the wait is spread over at most twice it.
#[test]
fn c6_a_hello_error_retry_after_of_u64_max_is_capped() {
    let config = Config {
        retry_first_connect: true,
        ..Config::default()
    };
    let mut h = H::with(config, hello_ack(), 3);
    h.connect();
    let out = h.input(Input::TransportOpened { conn: h.conn() });
    h.complete_writes(&out);
    let refusal = json!({ "type": "hello_error", "message": "busy", "retryAfterMs": u64::MAX });
    let out = h.frame(&refusal.to_string());
    let wait = max_wait(&out);
    let floor = BackoffConfig::default().max_floor;
    assert!(wait >= floor && wait <= floor * 2, "{wait:?}");
    let retry = events(&out).into_iter().find_map(|e| match e {
        Event::AttemptFailed { retry, .. } => retry,
        _ => None,
    });
    assert_eq!(
        retry.and_then(|r| r.floor),
        Some(floor),
        "the floor reported is the one applied"
    );
}

/// C6: HTTP 429 with `Retry-After: u64::MAX` seconds, after the session had been open.
#[test]
fn c6_an_http_retry_after_of_u64_max_is_capped() {
    let mut h = H::new(Config::default());
    h.open();
    h.closed(Some(1001), "going away");
    let (_, _) = h.until_attempt();
    let out = h.failed(TransportFailure::Http {
        status: 429,
        retry_after: Some(Duration::from_secs(u64::MAX)),
    });
    let wait = max_wait(&out);
    assert!(wait <= Duration::from_secs(1200), "{wait:?}");
    let (_, waited) = h.until_attempt();
    assert!(waited <= Duration::from_secs(1200), "{waited:?}");
}

/// C6 over the Gateway: a refused `connect` with `retryAfterMs = u64::MAX`.
#[test]
fn c6_a_gateway_retry_after_of_u64_max_is_capped() {
    let config = Config {
        retry_first_connect: true,
        ..Config::default()
    };
    let (mut h, connect_id) = challenged(config);
    let refused = json!({
        "type": "res", "id": connect_id, "ok": false,
        "error": { "code": "UNAVAILABLE", "message": "later", "retryable": true, "retryAfterMs": u64::MAX },
    });
    let out = h.frame(&refused.to_string());
    assert!(
        max_wait(&out) <= Duration::from_secs(1200),
        "{} outputs",
        out.len()
    );
}

// ---- C11: many requests on one deadline ---------------------------------------------------

/// C11: 100,500 requests sharing one deadline fired one per timer firing and tripped the
/// firing limit's `debug_assert`. They now all time out in one call.
#[test]
fn c11_a_hundred_thousand_requests_on_one_deadline_all_time_out_at_once() {
    let n = 100_500;
    let config = Config::builder()
        .max_in_flight_requests(150_000)
        .max_pending_writes(150_000)
        .build()
        .unwrap();
    let mut h = H::new(config);
    h.open();
    for _ in 0..n {
        h.s.request(Req("r", None), Some(Duration::from_secs(5)), h.now)
            .unwrap();
    }
    let out = h.drain();
    h.complete_writes(&out);
    let out = h.advance(Duration::from_secs(5));
    let timeouts = events(&out)
        .iter()
        .filter(|e| {
            matches!(
                e,
                Event::Response {
                    result: Err(RequestFailure::Timeout),
                    ..
                }
            )
        })
        .count();
    assert_eq!(timeouts, n);
    assert_eq!(h.s.pending_requests(), 0);
}

// ---- the server role ---------------------------------------------------------------------

/// The server role's close timeout of `Duration::MAX` panicked at `now + close_timeout`;
/// validation now refuses it, and the ceiling value runs.
#[test]
#[allow(clippy::needless_update)] // A field added later takes its default.
fn the_server_role_refuses_durations_above_the_ceiling_and_runs_at_it() {
    let forever = ServerConfig {
        close_timeout: Duration::MAX,
        ..ServerConfig::default()
    };
    assert!(matches!(
        forever.validate(),
        Err(ConfigError::TooLong {
            field: "close_timeout",
            ..
        })
    ));
    let ceiling = ServerConfig {
        close_timeout: MAX_DURATION,
        send_deadline: MAX_DURATION,
        slow_write_warning: MAX_DURATION - Duration::from_nanos(1),
        liveness: LivenessConfig {
            ping_interval: Some(MAX_DURATION - Duration::from_nanos(1)),
            stale_after: MAX_DURATION,
            probe_timeout: MAX_DURATION,
            clock_jump_threshold: MAX_DURATION,
            ..LivenessConfig::default()
        },
        max_pending_writes: usize::MAX,
        max_inbound_frame: usize::MAX,
        ..ServerConfig::default()
    };
    #[allow(clippy::disallowed_methods)] // One arbitrary epoch; only offsets matter.
    let t0 = std::time::Instant::now();
    let mut c = ServerConn::new(ceiling, tether_core::ConnId::from_raw(1), t0).unwrap();
    let _ = c.send(
        tether_core::DataFrame::Text(tether_core::Utf8Bytes::from_static("x")),
        t0,
    );
    c.close(tether_core::CloseCode::NORMAL, "", t0 + YEAR)
        .unwrap();
    c.handle_timeout(t0 + YEAR * 3);
    while c.poll_output().is_some() {}
    assert!(c.is_closed());
}
