//! Behaviour 1: connect and handshake — connect timeout, hello/ack, server-first
//! challenge, ack timeout, rejection, and the first connect's outcome.

mod common;
use common::*;
use tether_core::{
    AttemptError, CloseCode, Config, ConnectError, EndReason, Event, Output, SessionError, Status,
};

#[test]
fn hello_then_ack_opens_and_reports_the_first_outcome() {
    let mut h = H::default_config();
    let conn = h.connect();
    assert_eq!(h.s.status(), Status::Connecting);
    let out = h.opened();
    assert_eq!(sent_texts(&out), ["hello"]);
    assert_eq!(h.s.status(), Status::Connecting, "not open before the ack");
    let out = h.frame("ack");
    assert_eq!(h.s.status(), Status::Open);
    assert!(events(&out).contains(&Event::Opened {
        conn,
        attempt: 1,
        first: true
    }));
}

#[test]
fn server_first_challenge_is_answered_then_acked() {
    let mut h = H::with(
        Config::default(),
        Lines {
            server_first: true,
            ..Lines::default()
        },
        1,
    );
    h.connect();
    let out = h.opened();
    assert!(sent_texts(&out).is_empty(), "client waits for the server");
    let out = h.frame("challenge");
    assert_eq!(sent_texts(&out), ["answer"]);
    h.frame("ack");
    assert_eq!(h.s.status(), Status::Open);
}

#[test]
fn connect_timeout_aborts_and_is_a_failed_attempt() {
    let cfg = Config::builder()
        .connect_timeout(secs(3.0))
        .retry_first_connect(true)
        .build()
        .unwrap();
    let mut h = H::new(cfg);
    h.connect();
    let out = h.advance(secs(2.999));
    assert!(out.is_empty());
    let out = h.advance(secs(0.001));
    assert!(has_abort(&out));
    assert!(events(&out).iter().any(|e| matches!(
        e,
        Event::AttemptFailed {
            error: AttemptError::ConnectTimeout,
            retry: Some(_),
            ..
        }
    )));
    assert_eq!(h.s.status(), Status::Connecting);
}

#[test]
fn ack_timeout_closes_the_socket_and_counts_as_failed_attempt() {
    let cfg = Config::builder().retry_first_connect(true).build().unwrap();
    let mut h = H::new(cfg);
    h.connect();
    let out = h.opened();
    h.complete_writes(&out);
    let out = h.advance(secs(5.0));
    assert_eq!(
        close_frame(&out),
        Some((CloseCode::NORMAL, "handshake timeout".into()))
    );
    assert!(events(&out).iter().any(|e| matches!(
        e,
        Event::AttemptFailed {
            error: AttemptError::HandshakeTimeout,
            ..
        }
    )));
    assert_eq!(h.s.failures(), 1);
    // The next attempt comes after a backoff.
    let (_, wait) = h.until_attempt();
    assert!(wait <= secs(1.0));
}

#[test]
fn first_connect_failure_ends_the_session_by_default() {
    let mut h = H::default_config();
    h.connect();
    let out = h.failed(tether_core::TransportFailure::Refused);
    assert_eq!(h.s.status(), Status::Failed);
    assert!(events(&out).contains(&Event::Ended(EndReason::Failed(
        SessionError::FirstConnect(AttemptError::Transport(
            tether_core::TransportFailure::Refused
        ))
    ))));
    assert_eq!(h.s.poll_timeout(), None);
    assert_eq!(h.s.connect(h.now), Err(ConnectError::Ended));
}

#[test]
fn first_connect_retries_when_configured_and_reports_success_once() {
    let cfg = Config::builder().retry_first_connect(true).build().unwrap();
    let mut h = H::new(cfg);
    h.connect();
    h.failed(tether_core::TransportFailure::Refused);
    assert_eq!(h.s.status(), Status::Connecting);
    h.until_attempt();
    let out = h.opened();
    h.complete_writes(&out);
    h.frame("ack");
    let opened: Vec<_> = h
        .events()
        .into_iter()
        .filter(|e| matches!(e, Event::Opened { .. }))
        .collect();
    assert!(matches!(
        opened.as_slice(),
        [Event::Opened {
            attempt: 2,
            first: true,
            ..
        }]
    ));
    assert_eq!(h.statuses(), [Status::Connecting, Status::Open]);
}

#[test]
fn connect_twice_is_refused() {
    let mut h = H::default_config();
    h.connect();
    assert_eq!(h.s.connect(h.now), Err(ConnectError::AlreadyActive));
}

#[test]
fn fatal_rejection_fails_without_retry() {
    let cfg = Config::builder().retry_first_connect(true).build().unwrap();
    let mut h = H::new(cfg);
    h.connect();
    h.opened();
    let out = h.frame("reject fatal");
    assert!(close_frame(&out).is_some());
    assert_eq!(h.s.status(), Status::Failed);
    assert!(matches!(
        h.events().last(),
        Some(Event::Ended(EndReason::Failed(SessionError::FatalAttempt(
            AttemptError::HandshakeRejected { .. }
        ))))
    ));
}

#[test]
fn retryable_rejection_honours_the_peers_retry_after() {
    let cfg = Config::builder().retry_first_connect(true).build().unwrap();
    let mut h = H::new(cfg);
    h.connect();
    h.opened();
    let out = h.frame("reject retry=12000");
    let announced = retry_waits(&out)[0];
    assert!(
        secs(12.0) <= announced && announced <= secs(24.0),
        "{out:?}"
    );
    let (_, wait) = h.until_attempt();
    assert_eq!(wait, announced);
}

#[test]
fn a_close_during_the_handshake_is_a_failed_attempt_not_a_normal_end() {
    let cfg = Config::builder().retry_first_connect(true).build().unwrap();
    let mut h = H::new(cfg);
    h.connect();
    h.opened();
    let out = h.closed(Some(1000), "");
    assert_eq!(h.s.status(), Status::Connecting);
    assert!(events(&out).iter().any(|e| matches!(
        e,
        Event::AttemptFailed {
            error: AttemptError::ClosedDuringHandshake { .. },
            retry: Some(_),
            ..
        }
    )));
    assert!(!h.events().iter().any(|e| matches!(e, Event::Ended(_))));
}

#[test]
fn outputs_of_an_attempt_carry_its_generation() {
    let cfg = Config::builder().retry_first_connect(true).build().unwrap();
    let mut h = H::new(cfg);
    let c1 = h.connect();
    h.failed(tether_core::TransportFailure::Refused);
    let (c2, _) = h.until_attempt();
    assert!(c2 > c1);
    let out = h.opened();
    assert!(out.iter().all(|o| match o {
        Output::SendFrame { conn, .. } => *conn == c2,
        _ => true,
    }));
}
