//! Behaviour 9: sending while not open — reject at once, or a bounded queue with a drop
//! policy and a time to live, flushed in order after the handshake.

mod common;
use common::*;
use tether_core::{
    Config, DropReason, Event, OfflinePolicy, Overflow, QueueConfig, RequestFailure, SendError,
    Status,
};

#[test]
fn reject_mode_refuses_at_once() {
    let cfg = Config::builder().reject_while_offline().build().unwrap();
    let mut h = H::new(cfg);
    h.connect();
    assert_eq!(h.s.send("x".into(), h.now), Err(SendError::NotOpen));
    assert_eq!(
        h.s.request(Req("r", None), None, h.now),
        Err(tether_core::RequestError::NotOpen)
    );
}

#[test]
fn queued_frames_flush_in_order_after_the_ack_not_before() {
    let mut h = H::default_config();
    h.s.send("before-connect".into(), h.now).unwrap();
    h.connect();
    h.s.send("m1".into(), h.now).unwrap();
    let id = h.s.request(Req("r1", None), None, h.now).unwrap();
    h.s.send("m2".into(), h.now).unwrap();
    let out = h.opened();
    assert_eq!(sent_texts(&out), ["hello"], "nothing before the ack");
    h.complete_writes(&out);
    let out = h.frame("ack");
    assert_eq!(
        sent_texts(&out),
        [
            "before-connect",
            "m1",
            &format!("req {} r1", id.get()),
            "m2"
        ]
    );
    assert_eq!(h.s.queued(), 0);
    // The flushed request is now in flight on this connection.
    h.complete_writes(&out);
    h.frame(&format!("res {} ok done", id.get()));
    assert!(h.events().contains(&Event::Response {
        id,
        result: Ok("done".into())
    }));
}

#[test]
fn a_full_queue_rejects_new_frames_by_default() {
    let cfg = Config::builder()
        .queue_while_offline(2, Overflow::RejectNew)
        .build()
        .unwrap();
    let mut h = H::new(cfg);
    h.s.send("a".into(), h.now).unwrap();
    h.s.send("b".into(), h.now).unwrap();
    assert_eq!(h.s.send("c".into(), h.now), Err(SendError::QueueFull));
    assert_eq!(h.s.queued(), 2);
}

#[test]
fn drop_oldest_reports_what_it_dropped() {
    let cfg = Config::builder()
        .queue_while_offline(2, Overflow::DropOldest)
        .build()
        .unwrap();
    let mut h = H::new(cfg);
    let a = h.s.request(Req("a", None), None, h.now).unwrap();
    let b = h.s.send("b".into(), h.now).unwrap();
    h.s.send("c".into(), h.now).unwrap();
    h.s.send("d".into(), h.now).unwrap();
    h.drain();
    let ev = h.events();
    assert!(ev.contains(&Event::Response {
        id: a,
        result: Err(RequestFailure::Dropped)
    }));
    assert!(ev.contains(&Event::MessageDropped {
        id: b,
        reason: DropReason::Overflow
    }));
    assert_eq!(h.s.queued(), 2);
    assert_eq!(h.s.pending_requests(), 0);
}

#[test]
fn queued_messages_expire_after_their_ttl() {
    let cfg = Config::builder()
        .offline(OfflinePolicy::Queue(QueueConfig {
            ttl: Some(secs(10.0)),
            ..QueueConfig::default()
        }))
        .build()
        .unwrap();
    let mut h = H::new(cfg);
    let m = h.s.send("old".into(), h.now).unwrap();
    h.advance(secs(5.0));
    h.s.send("new".into(), h.now).unwrap();
    let out = h.advance(secs(5.0));
    assert_eq!(
        events(&out),
        [Event::MessageDropped {
            id: m,
            reason: DropReason::Expired
        }]
    );
    assert_eq!(h.s.queued(), 1);
}

/// An expired message gives back its bytes along with its place: a queue that once held
/// a full budget of messages nobody sent in time must still take new ones.
#[test]
fn expired_messages_give_back_their_bytes() {
    let cfg = Config::builder()
        .offline(OfflinePolicy::Queue(QueueConfig {
            max_bytes: 8,
            ttl: Some(secs(10.0)),
            ..QueueConfig::default()
        }))
        .build()
        .unwrap();
    let mut h = H::new(cfg);
    let old = h.s.send("12345678".into(), h.now).unwrap();
    let out = h.advance(secs(10.0));
    assert_eq!(
        events(&out),
        [Event::MessageDropped {
            id: old,
            reason: DropReason::Expired
        }]
    );
    assert_eq!(h.s.queued(), 0);
    h.s.send("abcdefgh".into(), h.now).unwrap();
    assert_eq!(h.s.queued(), 1);
}

#[test]
fn the_queue_is_bounded_in_bytes() {
    let cfg = Config::builder()
        .offline(OfflinePolicy::Queue(QueueConfig {
            max_bytes: 8,
            ..QueueConfig::default()
        }))
        .build()
        .unwrap();
    let mut h = H::new(cfg);
    assert_eq!(
        h.s.send("123456789".into(), h.now),
        Err(SendError::TooLarge(9))
    );
    h.s.send("12345".into(), h.now).unwrap();
    assert_eq!(h.s.send("12345".into(), h.now), Err(SendError::QueueFull));
}

/// The byte bound is inclusive: a frame of exactly `max_bytes` is queued and flushed, not
/// refused as too large, so the documented limit is the largest frame that fits.
#[test]
fn a_frame_of_exactly_max_bytes_is_queued_and_flushed() {
    let cfg = Config::builder()
        .offline(OfflinePolicy::Queue(QueueConfig {
            max_bytes: 8,
            ..QueueConfig::default()
        }))
        .build()
        .unwrap();
    let mut h = H::new(cfg);
    h.s.send("12345678".into(), h.now).unwrap();
    assert_eq!(h.s.queued(), 1);
    h.connect();
    let out = h.opened();
    h.complete_writes(&out);
    assert_eq!(sent_texts(&h.frame("ack")), ["12345678"]);
}

/// A request resolved while still queued (here by its timeout) leaves the queue and gives
/// back its bytes: otherwise every such request would shrink the queue's byte budget for
/// good, until a queue holding nothing refused everything as full.
#[test]
fn a_request_resolved_while_queued_gives_back_its_bytes() {
    let cfg = Config::builder()
        .offline(OfflinePolicy::Queue(QueueConfig {
            max_bytes: 12,
            ..QueueConfig::default()
        }))
        .build()
        .unwrap();
    let mut h = H::new(cfg);
    h.connect();
    let r = h.s.request(Req("r", None), Some(secs(1.0)), h.now).unwrap();
    h.advance(secs(1.0));
    assert!(h.events().contains(&Event::Response {
        id: r,
        result: Err(RequestFailure::Timeout)
    }));
    assert_eq!(h.s.queued(), 0);
    h.s.send("123456789012".into(), h.now).unwrap();
    assert_eq!(h.s.queued(), 1);
}

#[test]
fn closing_drops_the_queue_and_fails_queued_requests() {
    let mut h = H::default_config();
    h.connect();
    let m = h.s.send("m".into(), h.now).unwrap();
    let r = h.s.request(Req("r", None), None, h.now).unwrap();
    h.s.close(tether_core::CloseCode::NORMAL, "", h.now);
    h.drain();
    let ev = h.events();
    assert!(ev.contains(&Event::MessageDropped {
        id: m,
        reason: DropReason::Ended
    }));
    assert!(ev.contains(&Event::Response {
        id: r,
        result: Err(RequestFailure::Closed)
    }));
    assert_eq!(h.s.queued(), 0);
    assert_eq!(h.s.status(), Status::Closed);
}

#[test]
fn a_queued_request_times_out_and_leaves_the_queue() {
    let mut h = H::default_config();
    h.connect();
    let r = h.s.request(Req("r", None), Some(secs(1.0)), h.now).unwrap();
    h.advance(secs(1.0));
    assert!(h.events().contains(&Event::Response {
        id: r,
        result: Err(RequestFailure::Timeout)
    }));
    assert_eq!(h.s.queued(), 0);
}

#[test]
fn feed_reports_a_refusal_as_an_event_and_otherwise_sends_like_send() {
    let cfg = Config::builder().reject_while_offline().build().unwrap();
    let mut h = H::new(cfg);
    h.connect();
    h.s.feed("early".into(), h.now);
    let refused = events(&h.drain());
    let first = match &refused[..] {
        [
            Event::SendRefused {
                id,
                error: SendError::NotOpen,
            },
        ] => *id,
        other => panic!("{other:?}"),
    };
    // The refusal used up its id: the next message gets a fresh one.
    h.s.feed("refused too".into(), h.now);
    match &events(&h.drain())[..] {
        [Event::SendRefused { id, .. }] => assert!(id.get() > first.get()),
        other => panic!("{other:?}"),
    }
    let out = h.opened();
    h.complete_writes(&out);
    h.frame("ack");
    assert_eq!(h.s.status(), Status::Open);
    h.s.feed("now".into(), h.now);
    let out = h.drain();
    assert_eq!(sent_texts(&out), ["now"]);
    assert!(events(&out).is_empty(), "an accepted message is no event");
}

/// Row 27: a message carries a TTL of its own, shorter or longer than the queue's.
#[test]
fn a_message_can_carry_its_own_ttl() {
    let cfg = Config::builder()
        .offline(OfflinePolicy::Queue(QueueConfig {
            ttl: Some(secs(10.0)),
            ..QueueConfig::default()
        }))
        .build()
        .unwrap();
    let mut h = H::new(cfg);
    let short = h.s.send_with_ttl("short".into(), secs(2.0), h.now).unwrap();
    let long = h.s.send_with_ttl("long".into(), secs(30.0), h.now).unwrap();
    let plain = h.s.send("plain".into(), h.now).unwrap();
    let expired = |out: &[tether_core::Output<Lines>]| -> Vec<tether_core::MessageId> {
        events(out)
            .into_iter()
            .filter_map(|e| match e {
                Event::MessageDropped {
                    id,
                    reason: DropReason::Expired,
                } => Some(id),
                _ => None,
            })
            .collect()
    };
    assert_eq!(expired(&h.run_for(secs(2.0))), [short]);
    assert_eq!(expired(&h.run_for(secs(8.0))), [plain]);
    assert_eq!(expired(&h.run_for(secs(20.0))), [long]);
    assert_eq!(h.s.queued(), 0);
}

/// Row 27: a queued request leaves the queue at the queue's TTL too, failing as dropped,
/// not at its (longer) request timeout.
#[test]
fn a_queued_request_respects_the_queue_ttl() {
    let cfg = Config::builder()
        .offline(OfflinePolicy::Queue(QueueConfig {
            ttl: Some(secs(10.0)),
            ..QueueConfig::default()
        }))
        .request_timeout(secs(30.0))
        .build()
        .unwrap();
    let mut h = H::new(cfg);
    let id = h.s.request(Req("get", None), None, h.now).unwrap();
    let out = h.run_for(secs(10.0));
    assert_eq!(
        events(&out),
        [Event::Response {
            id,
            result: Err(RequestFailure::Dropped)
        }]
    );
    assert_eq!((h.s.queued(), h.s.pending_requests()), (0, 0));
}

/// Row 27: `queue_while_offline` changes the count and the overflow, and keeps the byte
/// limit and the TTL configured before it.
#[test]
fn queue_while_offline_keeps_the_byte_limit_and_ttl() {
    let cfg = Config::builder()
        .offline(OfflinePolicy::Queue(QueueConfig {
            max_bytes: 8,
            ttl: Some(secs(5.0)),
            ..QueueConfig::default()
        }))
        .queue_while_offline(3, Overflow::DropOldest)
        .build()
        .unwrap();
    assert_eq!(
        cfg.offline,
        OfflinePolicy::Queue(QueueConfig {
            max_messages: 3,
            max_bytes: 8,
            overflow: Overflow::DropOldest,
            ttl: Some(secs(5.0)),
        })
    );
    let fresh = Config::builder()
        .reject_while_offline()
        .queue_while_offline(3, Overflow::RejectNew)
        .build()
        .unwrap();
    let OfflinePolicy::Queue(q) = fresh.offline else {
        panic!("queued")
    };
    assert_eq!(
        (q.max_bytes, q.ttl),
        (QueueConfig::default().max_bytes, QueueConfig::default().ttl)
    );
}
