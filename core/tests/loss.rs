//! No silent loss: every message `send`/`feed` accepted ends in exactly one of a confirmed
//! write, the offline queue, or an `Event::MessageDropped` naming its id.

mod common;
use common::*;
use tether_core::{
    CloseCode, Config, DropReason, Event, Input, MessageId, Output, SendError, Status,
};

/// The ids of every `MessageDropped { reason: Disconnected }` among `out`.
fn disconnected(out: &[Output<Lines>]) -> Vec<MessageId> {
    events(out)
        .into_iter()
        .filter_map(|e| match e {
            Event::MessageDropped {
                id,
                reason: DropReason::Disconnected,
            } => Some(id),
            _ => None,
        })
        .collect()
}

/// Opens, sends `n` messages, confirms the first `confirmed` of them; returns their ids.
fn sent(h: &mut H, n: usize, confirmed: usize) -> Vec<MessageId> {
    h.open();
    let ids: Vec<MessageId> = (0..n)
        .map(|i| h.s.send(format!("m{i}"), h.now).expect("accepted"))
        .collect();
    let out = h.drain();
    let writes: Vec<_> = out
        .iter()
        .filter(|o| matches!(o, Output::SendFrame { .. }))
        .take(confirmed)
        .cloned()
        .collect();
    h.complete_writes(&writes);
    ids
}

#[test]
fn a_lost_connection_reports_every_unconfirmed_message() {
    let mut h = H::default_config();
    let ids = sent(&mut h, 4, 1);
    let out = h.closed(Some(1011), "");
    assert_eq!(disconnected(&out), ids[1..], "{out:?}");
    assert_eq!(h.s.stats().messages_dropped, 3);
    // Reported before the disconnect itself, so the application learns of the loss first.
    let evs = events(&out);
    let drop_at = evs
        .iter()
        .position(|e| matches!(e, Event::MessageDropped { .. }));
    let disc_at = evs
        .iter()
        .position(|e| matches!(e, Event::Disconnected { .. }));
    assert!(drop_at < disc_at, "{evs:?}");
}

#[test]
fn a_missed_send_deadline_reports_the_unconfirmed_messages() {
    let mut h = H::default_config();
    let ids = sent(&mut h, 3, 0);
    let out = h.advance(h.s.config().send_deadline);
    assert!(has_abort(&out));
    assert_eq!(disconnected(&out), ids);
}

#[test]
fn a_stale_connection_reports_the_unconfirmed_messages() {
    let cfg = Config::builder()
        .send_deadline(secs(3600.0))
        .slow_write_warning(secs(1.0))
        .build()
        .unwrap();
    let mut h = H::new(cfg);
    let ids = sent(&mut h, 2, 0);
    let out = h.run_for(h.s.config().liveness.stale_after + secs(1.0));
    assert!(
        events(&out).iter().any(|e| matches!(
            e,
            Event::Disconnected {
                reason: tether_core::DisconnectReason::Stale,
                ..
            }
        )),
        "{out:?}"
    );
    assert_eq!(disconnected(&out), ids);
}

#[test]
fn terminate_and_close_report_the_unconfirmed_messages_before_ended() {
    for close in [false, true] {
        let mut h = H::default_config();
        let ids = sent(&mut h, 2, 1);
        if close {
            h.s.close(CloseCode::NORMAL, "bye", h.now);
        } else {
            h.s.terminate(h.now);
        }
        let out = h.drain();
        assert_eq!(disconnected(&out), ids[1..], "close={close}: {out:?}");
        assert!(
            matches!(events(&out).last(), Some(Event::Ended(_))),
            "Ended stays last: {out:?}"
        );
    }
}

#[test]
fn a_write_confirmed_is_never_reported_dropped() {
    let mut h = H::default_config();
    sent(&mut h, 3, 3);
    let out = h.closed(Some(1011), "");
    assert!(disconnected(&out).is_empty(), "{out:?}");
    assert_eq!(h.s.stats().messages_dropped, 0);
}

#[test]
fn a_message_flushed_from_the_queue_keeps_its_id() {
    let mut h = H::default_config();
    h.open();
    h.closed(Some(1011), "");
    let queued = h.s.send("offline".into(), h.now).expect("queued");
    h.until_attempt();
    let out = h.opened();
    h.complete_writes(&out);
    let out = h.frame("ack");
    assert_eq!(sent_texts(&out), ["offline"], "flushed after the ack");
    assert_eq!(h.s.status(), Status::Open);
    // The flushed write is not confirmed: losing the connection names the queued id.
    let out = h.closed(Some(1011), "");
    assert_eq!(disconnected(&out), [queued]);
}

#[test]
fn a_flushed_message_whose_write_is_confirmed_is_not_dropped() {
    let mut h = H::default_config();
    h.open();
    h.closed(Some(1011), "");
    h.s.send("offline".into(), h.now).expect("queued");
    h.until_attempt();
    let out = h.opened();
    h.complete_writes(&out);
    let out = h.frame("ack");
    h.complete_writes(&out);
    let out = h.closed(Some(1011), "");
    assert!(disconnected(&out).is_empty(), "{out:?}");
}

#[test]
fn every_accepted_message_ends_exactly_once() {
    // A mixed life: messages written and confirmed, in flight when the connection dies,
    // queued while down and flushed, queued and still waiting at close.
    let mut h = H::default_config();
    let mut accepted = Vec::new();
    accepted.extend(sent(&mut h, 3, 2));
    h.closed(Some(1011), "");
    accepted.push(h.s.send("queued".into(), h.now).unwrap());
    h.until_attempt();
    let out = h.opened();
    h.complete_writes(&out);
    h.frame("ack");
    h.closed(Some(1011), "");
    accepted.push(h.s.send("still queued".into(), h.now).unwrap());
    h.s.close(CloseCode::NORMAL, "", h.now);
    h.drain();

    // Only the first two sends were confirmed (`sent(.., 3, 2)`).
    let confirmed = &accepted[..2];
    let dropped: Vec<MessageId> = h
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::MessageDropped { id, .. } => Some(id),
            _ => None,
        })
        .collect();
    for id in &accepted {
        let n = confirmed.iter().filter(|c| *c == id).count()
            + dropped.iter().filter(|d| *d == id).count();
        assert_eq!(n, 1, "{id:?}: confirmed {confirmed:?}, dropped {dropped:?}");
    }
}

#[test]
fn a_refused_feed_names_its_id_and_an_accepted_one_is_tracked() {
    let mut h = H::default_config();
    h.open();
    h.s.feed("a".into(), h.now);
    h.drain();
    h.s.terminate(h.now);
    let out = h.drain();
    let lost = disconnected(&out);
    assert_eq!(
        lost.len(),
        1,
        "the fed message is tracked like a sent one: {out:?}"
    );
    h.s.feed("late".into(), h.now);
    match &events(&h.drain())[..] {
        [
            Event::SendRefused {
                id,
                error: SendError::Ended,
            },
        ] => assert_ne!(*id, lost[0], "a refusal gets an id of its own"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_write_failure_reports_the_unconfirmed_messages() {
    let mut h = H::default_config();
    let ids = sent(&mut h, 2, 0);
    let conn = h.conn();
    let frame = h
        .log
        .iter()
        .rev()
        .find_map(|o| match o {
            Output::SendFrame { frame, .. } => Some(*frame),
            _ => None,
        })
        .unwrap();
    let out = h.input(Input::WriteFailed { conn, frame });
    assert_eq!(disconnected(&out), ids);
}
