//! Connections on the application's terms (issue 13, items 3 and 5, row 29): a reconnect
//! is not activity; a lazy session connects on first use and goes dormant when unused;
//! `disconnect`/`resume` pause a session without ending it; `reconnect` dials at once.

mod common;
use common::*;
use tether_core::{
    CloseCode, Config, ConfigError, ConnectError, DisconnectReason, EndReason, Event,
    RequestFailure, Status,
};

fn lazy(idle: Option<f64>) -> Config {
    Config::builder()
        .lazy(true)
        .idle_timeout(idle.map(secs))
        // No pings to confirm: only what the test sends is written.
        .ping_interval(None)
        .build()
        .unwrap()
}

/// Completes the transport and the hello/ack handshake of the attempt `out` started.
fn open_attempt(h: &mut H, out: &[tether_core::Output<Lines>]) -> Vec<tether_core::Output<Lines>> {
    assert!(open_transport(out).is_some(), "an attempt: {out:?}");
    let o = h.opened();
    h.complete_writes(&o);
    let o = h.frame("ack");
    assert_eq!(h.s.status(), Status::Open, "{o:?}");
    h.complete_writes(&o.clone());
    o
}

/// Row 29: reconnects are not activity. With a 60 s idle timeout, a session whose
/// connection dropped and came back at 30 s still closes as idle at 60 s.
#[test]
fn a_reconnect_is_not_activity() {
    let cfg = Config::builder()
        .idle_timeout(Some(secs(60.0)))
        .ping_interval(None)
        .build()
        .unwrap();
    let mut h = H::new(cfg);
    h.open();
    let started = h.now;
    h.run_for(secs(30.0));
    h.closed(Some(1001), "going away");
    let (_, _) = h.until_attempt();
    let o = h.opened();
    h.complete_writes(&o);
    h.frame("ack");
    assert_eq!(h.s.status(), Status::Open);
    assert_eq!(
        h.s.last_activity(),
        Some(started),
        "the reopen is not activity"
    );
    let out = h.run_for(started + secs(60.0) - h.now);
    assert_eq!(close_frame(&out), Some((CloseCode::NORMAL, "idle".into())));
    assert!(h.events().contains(&Event::Ended(EndReason::Idle)));
}

#[test]
fn a_lazy_session_needs_an_offline_queue() {
    assert_eq!(
        Config::builder().lazy(true).reject_while_offline().build(),
        Err(ConfigError::LazyWithoutQueue)
    );
}

/// Item 3: `connect` starts nothing; the first send dials, is queued, and is written
/// after the ack.
#[test]
fn a_lazy_session_connects_on_first_use() {
    let mut h = H::new(lazy(None));
    h.s.connect(h.now).unwrap();
    let out = h.drain();
    assert_eq!(open_transport(&out), None, "connect dials nothing: {out:?}");
    assert_eq!(h.s.status(), Status::Idle);
    let out = h.run_for(secs(3600.0));
    assert_eq!(open_transport(&out), None, "nor does time");
    assert_eq!(h.s.poll_timeout(), None, "nothing is armed while dormant");
    assert_eq!(h.s.connect(h.now), Err(ConnectError::AlreadyActive));
    h.s.send("first".into(), h.now).unwrap();
    let out = h.drain();
    assert_eq!(h.s.status(), Status::Connecting);
    let out = open_attempt(&mut h, &out);
    assert_eq!(sent_texts(&out), ["first"], "flushed after the ack");
    // A request wakes it the same way.
    let mut h = H::new(lazy(None));
    h.s.connect(h.now).unwrap();
    h.s.request(Req("ping", None), None, h.now).unwrap();
    let out = h.drain();
    let out = open_attempt(&mut h, &out);
    assert_eq!(sent_texts(&out), ["req 0 ping"]);
}

/// Item 3: with an idle timeout, a lazy session goes back to idle instead of ending, and
/// the next use reconnects.
#[test]
fn a_lazy_session_sleeps_when_idle_and_wakes_on_the_next_use() {
    let mut h = H::new(lazy(Some(60.0)));
    h.s.connect(h.now).unwrap();
    h.s.send("one".into(), h.now).unwrap();
    let out = h.drain();
    open_attempt(&mut h, &out);
    let conn = h.conn();
    let used = h.now;
    let out = h.run_for(secs(59.0));
    assert_eq!(h.s.status(), Status::Open, "{out:?}");
    h.complete_writes(&out);
    let out = h.run_for(used + secs(60.0) - h.now);
    assert_eq!(close_frame(&out), Some((CloseCode::NORMAL, "idle".into())));
    assert!(events(&out).contains(&Event::Disconnected {
        conn,
        reason: DisconnectReason::Idle,
        retry: None
    }));
    assert_eq!(h.s.status(), Status::Idle, "dormant, not ended");
    assert!(!h.events().iter().any(|e| matches!(e, Event::Ended(_))));
    // The peer confirms the close; then nothing happens, however long.
    h.input(tether_core::Input::TransportClosed {
        conn,
        code: Some(CloseCode::NORMAL),
        reason: "idle".into(),
    });
    let out = h.run_for(secs(3600.0));
    assert_eq!(open_transport(&out), None, "{out:?}");
    h.s.send("two".into(), h.now).unwrap();
    let out = h.drain();
    assert_eq!(h.s.status(), Status::Reconnecting, "it had opened before");
    let out = open_attempt(&mut h, &out);
    assert_eq!(sent_texts(&out), ["two"]);
}

/// Item 5: `disconnect` closes the connection (1000 "paused") and waits; the requests it
/// carried fail, sends are queued; `resume` dials at once and flushes them.
#[test]
fn disconnect_pauses_the_session_and_resume_picks_it_up() {
    let mut h = H::default_config();
    let conn = h.open();
    let req = h.s.request(Req("slow", None), None, h.now).unwrap();
    let out = h.drain();
    h.complete_writes(&out);
    h.s.disconnect(h.now).unwrap();
    let out = h.drain();
    assert_eq!(
        close_frame(&out),
        Some((CloseCode::NORMAL, "paused".into()))
    );
    let evs = events(&out);
    assert!(evs.contains(&Event::Response {
        id: req,
        result: Err(RequestFailure::Disconnected)
    }));
    assert!(evs.contains(&Event::Disconnected {
        conn,
        reason: DisconnectReason::Paused,
        retry: None
    }));
    assert_eq!(h.s.status(), Status::Idle);
    h.s.disconnect(h.now).unwrap();
    assert!(h.drain().is_empty(), "a second disconnect does nothing");
    h.s.send("while paused".into(), h.now).unwrap();
    // Within the queue's TTL (60 s), which still runs while paused.
    let out = h.run_for(secs(50.0));
    assert_eq!(open_transport(&out), None, "paused: no reconnect");
    assert_eq!(h.s.queued(), 1);
    h.s.resume(h.now).unwrap();
    let out = h.drain();
    assert_eq!(h.s.status(), Status::Reconnecting);
    let out = open_attempt(&mut h, &out);
    assert_eq!(sent_texts(&out), ["while paused"]);
    assert!(!h.events().iter().any(|e| matches!(e, Event::Ended(_))));
    // Once ended, neither command does anything but say so.
    h.s.close(CloseCode::NORMAL, "", h.now);
    assert_eq!(h.s.disconnect(h.now), Err(ConnectError::Ended));
    assert_eq!(h.s.resume(h.now), Err(ConnectError::Ended));
    assert_eq!(h.s.reconnect(h.now), Err(ConnectError::Ended));
}

/// Item 5: `reconnect` drops an open connection and dials in the same call, with no
/// backoff and no failure counted; during a backoff it cuts the wait short.
#[test]
fn reconnect_dials_at_once() {
    let mut h = H::default_config();
    let conn = h.open();
    h.s.reconnect(h.now).unwrap();
    let out = h.drain();
    assert_eq!(
        close_frame(&out),
        Some((CloseCode::NORMAL, "reconnect".into()))
    );
    let next = open_transport(&out).expect("dials in the same call");
    assert_ne!(next, conn);
    let disconnected = events(&out).into_iter().find_map(|e| match e {
        Event::Disconnected { reason, retry, .. } => Some((reason, retry)),
        _ => None,
    });
    let (reason, retry) = disconnected.expect("the application is told");
    assert_eq!(reason, DisconnectReason::Reconnect);
    assert_eq!(retry.map(|r| r.wait), Some(std::time::Duration::ZERO));
    assert_eq!(h.s.failures(), 0, "not a failure");
    assert_eq!(h.s.status(), Status::Reconnecting);
    let o = h.opened();
    h.complete_writes(&o);
    h.frame("ack");
    assert_eq!(h.s.status(), Status::Open);
    // Lost, waiting out a backoff: reconnect dials now.
    h.closed(Some(1011), "oops");
    assert!(h.s.poll_timeout().is_some_and(|t| t > h.now), "backing off");
    h.s.reconnect(h.now).unwrap();
    assert!(
        open_transport(&h.drain()).is_some(),
        "the wait is cut short"
    );
}
