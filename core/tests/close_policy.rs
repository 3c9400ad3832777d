//! Behaviour 3: the close-code policy — normal, reconnect and fatal closes while open,
//! upgrade statuses and network failures before the WebSocket opens, per-code floors.

mod common;
use common::*;
use tether_core::{
    CloseClass, ClosePolicy, Config, DisconnectReason, EndReason, Event, SessionError, Status,
    TransportFailure,
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
