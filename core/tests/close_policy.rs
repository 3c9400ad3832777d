//! Behaviour 3: the close-code policy — normal, reconnect and fatal closes while open,
//! upgrade statuses and network failures before the WebSocket opens, per-code floors.

mod common;
use common::*;
use tether_core::{
    AttemptError, CloseClass, ClosePolicy, Config, DisconnectReason, EndReason, Event, FailureKind,
    Output, SessionError, Status, TransportFailure,
};

#[test]
fn normal_close_ends_without_error() {
    let mut h = H::default_config();
    h.open();
    let out = h.closed(Some(1000), "bye");
    assert_eq!(h.s.status(), Status::Closed);
    assert!(
        events(&out).contains(&Event::Ended(EndReason::ClosedByPeer {
            code: tether_core::CloseCode(1000),
            reason: "bye".into()
        }))
    );
    assert_eq!(h.s.poll_timeout(), None);
}

#[test]
fn reconnect_codes_back_off_and_retry() {
    for code in [Some(1001), Some(1006), Some(1011), None] {
        let mut h = H::default_config();
        h.open();
        let out = h.closed(code, "");
        assert_eq!(h.s.status(), Status::Reconnecting, "{code:?}");
        let waits = retry_waits(&out);
        assert_eq!(waits.len(), 1, "{code:?}");
        assert!(waits[0] <= secs(1.0));
        let (_, wait) = h.until_attempt();
        assert_eq!(wait, waits[0]);
    }
}

#[test]
fn fatal_codes_stop_for_good_and_report_the_error() {
    for code in [1002, 1003, 1007, 1008, 1009, 1010, 4001, 4003] {
        let mut h = H::default_config();
        h.open();
        let out = h.closed(Some(code), "auth");
        assert_eq!(h.s.status(), Status::Failed, "{code}");
        assert!(events(&out).contains(&Event::Ended(EndReason::Failed(
            SessionError::FatalClose {
                code: tether_core::CloseCode(code),
                reason: "auth".into()
            }
        ))));
        assert_eq!(h.s.poll_timeout(), None, "no attempt is ever scheduled");
        let out = h.advance(secs(3600.0));
        assert!(open_transport(&out).is_none());
    }
}

#[test]
fn service_restart_spreads_clients_over_ten_to_twenty_seconds() {
    let mut waits = Vec::new();
    for seed in 0..200 {
        let mut h = H::with(Config::default(), Lines::default(), seed);
        h.open();
        let out = h.closed(Some(1012), "restart");
        assert_eq!(h.s.status(), Status::Reconnecting);
        waits.push(retry_waits(&out)[0]);
    }
    assert!(waits.iter().all(|w| secs(10.0) <= *w && *w <= secs(20.0)));
    let first_half = waits.iter().filter(|w| **w < secs(15.0)).count();
    assert!(
        (60..140).contains(&first_half),
        "spread, not piled up: {first_half}"
    );
}

#[test]
fn try_again_later_waits_at_least_thirty_seconds() {
    let mut h = H::default_config();
    h.open();
    let out = h.closed(Some(1013), "starting");
    assert!(retry_waits(&out)[0] >= secs(30.0));
    let (_, wait) = h.until_attempt();
    assert!(wait >= secs(30.0));
}

#[test]
fn upgrade_statuses_are_classified() {
    let cfg = || Config::builder().retry_first_connect(true).build().unwrap();
    for status in [401, 403] {
        let mut h = H::new(cfg());
        h.connect();
        h.failed(TransportFailure::Http {
            status,
            retry_after: None,
        });
        assert_eq!(h.s.status(), Status::Failed, "{status}");
    }
    for status in [500, 502, 503] {
        let mut h = H::new(cfg());
        h.connect();
        let out = h.failed(TransportFailure::Http {
            status,
            retry_after: None,
        });
        assert_eq!(h.s.status(), Status::Connecting, "{status}");
        assert!(retry_waits(&out)[0] <= secs(1.0));
    }
    let mut h = H::new(cfg());
    h.connect();
    let out = h.failed(TransportFailure::Http {
        status: 429,
        retry_after: Some(secs(45.0)),
    });
    let w = retry_waits(&out)[0];
    assert!(secs(45.0) <= w && w <= secs(90.0), "{w:?}");
    for failure in [TransportFailure::Refused, TransportFailure::Dns] {
        let mut h = H::new(cfg());
        h.connect();
        h.failed(failure);
        assert_eq!(h.s.status(), Status::Connecting);
    }
}

#[test]
fn the_table_is_configurable_per_code_and_range() {
    let policy = ClosePolicy::default()
        .with_code(1000, CloseClass::RECONNECT)
        .with_range(4400..=4499, CloseClass::Fatal);
    let cfg = Config::builder().close_policy(policy).build().unwrap();
    let mut h = H::new(cfg.clone());
    h.open();
    h.closed(Some(1000), "");
    assert_eq!(h.s.status(), Status::Reconnecting);
    let mut h = H::new(cfg);
    h.open();
    h.closed(Some(4420), "");
    assert_eq!(h.s.status(), Status::Failed);
}

#[test]
fn a_stable_connection_lost_reports_why() {
    let mut h = H::default_config();
    let conn = h.open();
    h.advance(secs(6.0));
    let out = h.closed(Some(1012), "restart");
    assert!(events(&out).iter().any(|e| matches!(
        e,
        Event::Disconnected {
            conn: c,
            reason: DisconnectReason::Closed { .. },
            retry: Some(_),
        } if *c == conn
    )));
}

/// Row 8: the failures that carry no code (refused, DNS, I/O, the connect timeout and the
/// handshake timeout) are classified by the same policy, each with its own floor or made
/// fatal, and reconnect with no floor by default.
#[test]
fn failures_without_a_code_are_classified_by_the_policy_with_floors() {
    let floor = |s: f64| CloseClass::Reconnect {
        min_delay: Some(secs(s)),
    };
    let kinds = [
        (FailureKind::Refused, 11.0),
        (FailureKind::Dns, 12.0),
        (FailureKind::Io, 13.0),
        (FailureKind::ConnectTimeout, 14.0),
        (FailureKind::HandshakeTimeout, 15.0),
    ];
    let mut policy = ClosePolicy::default();
    for (kind, s) in kinds {
        policy = policy.with_failure(kind, floor(s));
    }
    let cfg = |policy: ClosePolicy| {
        Config::builder()
            .retry_first_connect(true)
            .close_policy(policy)
            .build()
            .unwrap()
    };
    // Fails the first attempt the way `kind` names; returns the wait it was given.
    let fail = |h: &mut H, kind: FailureKind| -> Vec<Output<Lines>> {
        h.connect();
        match kind {
            FailureKind::Refused => h.failed(TransportFailure::Refused),
            FailureKind::Dns => h.failed(TransportFailure::Dns),
            FailureKind::Io => h.failed(TransportFailure::Io("reset".into())),
            FailureKind::ConnectTimeout => h.advance(secs(10.0)),
            FailureKind::HandshakeTimeout => {
                h.opened();
                h.advance(secs(5.0))
            }
            _ => unreachable!("every kind is listed above"),
        }
    };
    for (kind, s) in kinds {
        let mut h = H::new(cfg(policy.clone()));
        let out = fail(&mut h, kind);
        let waits = retry_waits(&out);
        assert_eq!(waits.len(), 1, "{kind:?}: {out:?}");
        // The floor spreads the wait over [floor, 2 × floor].
        assert!(
            secs(s) <= waits[0] && waits[0] <= secs(2.0 * s),
            "{kind:?}: {:?}",
            waits[0]
        );
        let (_, wait) = h.until_attempt();
        assert_eq!(wait, waits[0], "{kind:?}");
        // The default: reconnect at the first step of the schedule.
        let mut h = H::new(cfg(ClosePolicy::default()));
        let waits = retry_waits(&fail(&mut h, kind));
        assert!(waits[0] <= secs(1.0), "{kind:?}: {waits:?}");
        // Fatal: the session ends with the attempt's error, and never dials again.
        let mut h = H::new(cfg(
            ClosePolicy::default().with_failure(kind, CloseClass::Fatal)
        ));
        fail(&mut h, kind);
        assert_eq!(h.s.status(), Status::Failed, "{kind:?}");
        assert!(
            h.events().iter().any(|e| matches!(
                e,
                Event::Ended(EndReason::Failed(SessionError::FatalAttempt(_)))
            )),
            "{kind:?}"
        );
        let later = h.run_for(secs(600.0));
        assert_eq!(open_transport(&later), None, "{kind:?}: dialled again");
    }
    let mut h = H::new(cfg(
        ClosePolicy::default().with_failure(FailureKind::HandshakeTimeout, CloseClass::Fatal)
    ));
    fail(&mut h, FailureKind::HandshakeTimeout);
    assert!(h.events().iter().any(|e| matches!(
        e,
        Event::AttemptFailed {
            error: AttemptError::HandshakeTimeout,
            retry: None,
            ..
        }
    )));
}
