//! Behaviour 7: requests — ids returned at once, each resolved exactly once by a
//! response, a timeout, a lost connection or the session ending.

mod common;
use common::*;
use std::collections::BTreeMap;
use tether_core::{Config, Event, RequestError, RequestFailure, RequestId, Violation};

fn outcomes(h: &H) -> BTreeMap<RequestId, Vec<String>> {
    let mut m: BTreeMap<RequestId, Vec<String>> = BTreeMap::new();
    for e in h.events() {
        if let Event::Response { id, result } = e {
            m.entry(id).or_default().push(format!("{result:?}"));
        }
    }
    m
}

#[test]
fn responses_resolve_their_request_once_even_when_repeated() {
    let mut h = H::default_config();
    h.open();
    let a = h.s.request(Req("a", None), None, h.now).unwrap();
    let b = h.s.request(Req("b", None), None, h.now).unwrap();
    h.drain();
    // Out of order, and the server answers `a` twice.
    h.frame(&format!("res {} ok B", b.get()));
    h.frame(&format!("res {} err nope", a.get()));
    let out = h.frame(&format!("res {} ok again", a.get()));
    assert!(events(&out).iter().any(|e| matches!(
        e,
        Event::Violation {
            violation: Violation::UnknownResponse { .. },
            ..
        }
    )));
    let o = outcomes(&h);
    assert_eq!(
        o[&a],
        [format!(
            "{:?}",
            Err::<String, _>(RequestFailure::Remote("nope".to_string()))
        )]
    );
    assert_eq!(
        o[&b],
        [format!(
            "{:?}",
            Ok::<_, RequestFailure<String>>("B".to_string())
        )]
    );
    assert_eq!(h.s.pending_requests(), 0);
}

#[test]
fn timeouts_resolve_and_a_late_response_is_unknown() {
    let mut h = H::default_config();
    h.open();
    let id = h.s.request(Req("a", None), Some(secs(2.0)), h.now).unwrap();
    let out = h.drain();
    h.complete_writes(&out);
    let out = h.advance(secs(2.0));
    assert!(events(&out).contains(&Event::Response {
        id,
        result: Err(RequestFailure::Timeout)
    }));
    let out = h.frame(&format!("res {} ok late", id.get()));
    assert!(matches!(events(&out)[..], [Event::Violation { .. }]));
    assert_eq!(outcomes(&h)[&id].len(), 1);
}

#[test]
fn the_default_timeout_applies() {
    let cfg = Config::builder()
        .request_timeout(secs(7.0))
        .build()
        .unwrap();
    let mut h = H::new(cfg);
    h.open();
    let id = h.s.request(Req("a", None), None, h.now).unwrap();
    let out = h.drain();
    h.complete_writes(&out);
    h.advance(secs(6.9));
    assert!(!outcomes(&h).contains_key(&id));
    h.advance(secs(0.1));
    assert!(outcomes(&h).contains_key(&id));
}

#[test]
fn a_lost_connection_fails_every_request_in_flight_at_once() {
    let mut h = H::default_config();
    h.open();
    let ids: Vec<_> = (0..5)
        .map(|_| h.s.request(Req("x", None), None, h.now).unwrap())
        .collect();
    let out = h.drain();
    h.complete_writes(&out);
    h.closed(None, "");
    let o = outcomes(&h);
    for id in ids {
        assert_eq!(
            o[&id],
            [format!(
                "{:?}",
                Err::<String, _>(RequestFailure::<String>::Disconnected)
            )]
        );
    }
}

#[test]
fn a_response_on_another_connection_does_not_resolve() {
    let mut h = H::default_config();
    h.open();
    let id = h.s.request(Req("x", None), None, h.now).unwrap();
    let out = h.drain();
    h.complete_writes(&out);
    h.closed(Some(1011), "");
    h.until_attempt();
    let out = h.opened();
    h.complete_writes(&out);
    h.frame("ack");
    let out = h.frame(&format!("res {} ok stale", id.get()));
    assert!(matches!(events(&out)[..], [Event::Violation { .. }]));
}

#[test]
fn in_flight_requests_are_bounded() {
    let cfg = Config::builder().max_in_flight_requests(2).build().unwrap();
    let mut h = H::new(cfg);
    h.open();
    h.s.request(Req("a", None), None, h.now).unwrap();
    h.s.request(Req("b", None), None, h.now).unwrap();
    assert_eq!(
        h.s.request(Req("c", None), None, h.now),
        Err(RequestError::TooManyInFlight)
    );
}

#[test]
fn close_fails_pending_requests_with_closed() {
    let mut h = H::default_config();
    h.open();
    let id = h.s.request(Req("a", None), None, h.now).unwrap();
    h.s.close(tether_core::CloseCode::NORMAL, "bye", h.now);
    h.drain();
    assert_eq!(
        outcomes(&h)[&id],
        [format!(
            "{:?}",
            Err::<String, _>(RequestFailure::<String>::Closed)
        )]
    );
    assert_eq!(
        h.s.request(Req("b", None), None, h.now),
        Err(RequestError::Ended)
    );
}

/// Reconnects and completes the hello/ack handshake; returns what the ack produced.
fn reopen(h: &mut H) -> Vec<tether_core::Output<Lines>> {
    h.until_attempt();
    let o = h.opened();
    h.complete_writes(&o);
    h.frame("ack")
}

/// Row 20: an idempotent request in flight when its connection drops is written again,
/// unchanged and before anything queued since, on the next connection; its answer
/// resolves it once, and a second answer (to the first attempt) is ignored. Other
/// requests still fail at once.
#[test]
fn an_idempotent_request_is_sent_again_after_a_reconnect() {
    let mut h = H::default_config();
    h.open();
    let idem = h.s.request(Req("idem-put", None), None, h.now).unwrap();
    let plain = h.s.request(Req("post", None), None, h.now).unwrap();
    let out = h.drain();
    let first = sent_texts(&out);
    assert_eq!(first, ["req 0 idem-put", "req 1 post"]);
    h.complete_writes(&out);
    let out = h.closed(None, "");
    let evs = events(&out);
    assert!(evs.contains(&Event::Response {
        id: plain,
        result: Err(RequestFailure::Disconnected)
    }));
    assert!(
        !evs.iter()
            .any(|e| matches!(e, Event::Response { id, .. } if *id == idem)),
        "{evs:?}"
    );
    h.s.send("queued".into(), h.now).unwrap();
    let out = reopen(&mut h);
    assert_eq!(sent_texts(&out), ["req 0 idem-put", "queued"]);
    h.complete_writes(&out);
    let out = h.frame("res 0 ok done");
    assert_eq!(
        events(&out),
        [Event::Response {
            id: idem,
            result: Ok("done".into())
        }]
    );
    let out = h.frame("res 0 ok again");
    assert!(
        !events(&out)
            .iter()
            .any(|e| matches!(e, Event::Response { .. })),
        "answered once"
    );
}

/// Row 20: the retry limit and the request's own timeout bound the retries.
#[test]
fn idempotent_retries_are_bounded_by_the_limit_and_the_timeout() {
    let cfg = Config::builder().request_retries(2).build().unwrap();
    let mut h = H::new(cfg);
    h.open();
    let id = h.s.request(Req("idem", None), None, h.now).unwrap();
    let out = h.drain();
    h.complete_writes(&out);
    for retry in 0..2 {
        let out = h.closed(None, "");
        assert!(
            !events(&out)
                .iter()
                .any(|e| matches!(e, Event::Response { .. })),
            "retry {retry}"
        );
        let out = reopen(&mut h);
        assert_eq!(sent_texts(&out), ["req 0 idem"], "retry {retry}");
        h.complete_writes(&out);
    }
    let out = h.closed(None, "");
    assert!(
        events(&out).contains(&Event::Response {
            id,
            result: Err(RequestFailure::Disconnected)
        }),
        "the limit reached: fails as any other"
    );
    // The timeout: lost, and the next connection comes after the request's deadline.
    let mut h = H::default_config();
    h.open();
    let id =
        h.s.request(Req("idem", None), Some(secs(0.5)), h.now)
            .unwrap();
    let out = h.drain();
    h.complete_writes(&out);
    h.closed(None, "");
    h.advance(secs(0.5));
    assert!(h.events().contains(&Event::Response {
        id,
        result: Err(RequestFailure::Timeout)
    }));
    let out = reopen(&mut h);
    assert!(
        sent_texts(&out).is_empty(),
        "not written once resolved: {out:?}"
    );
    // Off: fails at once.
    let mut h = H::new(Config::builder().request_retries(0).build().unwrap());
    h.open();
    let id = h.s.request(Req("idem", None), None, h.now).unwrap();
    let out = h.drain();
    h.complete_writes(&out);
    let out = h.closed(None, "");
    assert!(events(&out).contains(&Event::Response {
        id,
        result: Err(RequestFailure::Disconnected)
    }));
}
