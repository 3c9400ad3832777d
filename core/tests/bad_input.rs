//! Behaviour 13: bad input — every class gets a typed violation and a defined outcome
//! (the frame is dropped, the session stays open), and nothing panics.
//!
//! These are the machine's own defences, fed frames as values. Over a real socket the
//! codec refuses invalid UTF-8, oversized frames and invalid close codes first and the
//! session sees `Input::ProtocolError` instead (`core/tests/protocol_error.rs`); what the
//! wire does is proven by `tests/tests/hostile_peers.rs`.

mod common;
use bytes::Bytes;
use common::*;
use tether_core::{CloseCode, Config, Event, InFrame, Input, Status, Violation};

fn violations(h: &H) -> Vec<Violation> {
    h.events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Violation { violation, .. } => Some(violation),
            _ => None,
        })
        .collect()
}

#[test]
fn each_bad_frame_class_is_a_typed_violation_and_the_session_stays_open() {
    let cfg = Config::builder().max_inbound_frame(64).build().unwrap();
    let mut h = H::new(cfg);
    let conn = h.open();
    let frames = [
        InFrame::Text(Bytes::from_static(b"bad")),
        InFrame::Text(Bytes::from_static(&[0x66, 0xff, 0xfe])),
        InFrame::Text(Bytes::from(vec![b'a'; 65])),
        // Exactly the bound: a message, not a violation.
        InFrame::Text(Bytes::from(vec![b'a'; 64])),
        InFrame::Binary(Bytes::from_static(b"\x00\x01")),
        InFrame::Text(Bytes::from_static(b"ack")),
        InFrame::Text(Bytes::from_static(b"res 999 ok nobody")),
        InFrame::Text(Bytes::from_static(b"res zzz ok nobody")),
        InFrame::Text(Bytes::from_static(b"challenge")),
        InFrame::Text(Bytes::from_static(b"reject retry=5")),
    ];
    for frame in frames {
        h.input(Input::FrameReceived { conn, frame });
    }
    assert_eq!(
        violations(&h),
        [
            Violation::Malformed {
                detail: "bad".into()
            },
            Violation::InvalidUtf8,
            Violation::Oversized { len: 65, max: 64 },
            Violation::UnexpectedBinary,
            Violation::DuplicateAck,
            Violation::UnknownResponse {
                wire_id: "999".into()
            },
            Violation::UnknownResponse {
                wire_id: "zzz".into()
            },
            Violation::UnexpectedHandshake,
            Violation::UnexpectedHandshake,
        ]
    );
    assert_eq!(h.s.status(), Status::Open);
    assert_eq!(h.s.stats().violations, 9);
}

#[test]
fn an_invalid_close_code_is_a_violation_and_an_abnormal_close() {
    let mut h = H::default_config();
    h.open();
    let out = h.closed(Some(1005 + 1), "reserved"); // 1006 may never be sent on the wire
    assert!(events(&out).iter().any(|e| matches!(
        e,
        Event::Violation {
            violation: Violation::InvalidCloseCode(1006),
            ..
        }
    )));
    assert_eq!(h.s.status(), Status::Reconnecting);
    let mut h = H::default_config();
    h.open();
    h.closed(Some(0), "");
    assert_eq!(
        h.s.status(),
        Status::Reconnecting,
        "code 0 is treated as abnormal"
    );
}

#[test]
fn encode_errors_are_returned_to_the_caller_and_nothing_is_sent() {
    let mut h = H::default_config();
    h.open();
    assert!(matches!(
        h.s.send("unencodable".into(), h.now),
        Err(tether_core::SendError::Encode(_))
    ));
    assert!(h.drain().is_empty());
}

#[test]
fn a_frame_before_the_transport_opened_is_ignored() {
    let mut h = H::default_config();
    let conn = h.connect();
    let out = h.input(Input::FrameReceived {
        conn,
        frame: InFrame::Text(Bytes::from_static(b"ack")),
    });
    assert!(out.is_empty());
    assert_eq!(h.s.status(), Status::Connecting);
    let _ = CloseCode::NORMAL;
}

#[test]
fn a_peer_sent_id_is_cut_short_in_the_violation() {
    let mut h = H::default_config();
    let conn = h.open();
    let long = format!("res {} ok nobody", "é".repeat(100_000));
    h.input(Input::FrameReceived {
        conn,
        frame: InFrame::Text(Bytes::from(long)),
    });
    let seen = violations(&h);
    let [Violation::UnknownResponse { wire_id }] = seen.as_slice() else {
        panic!("{seen:?}");
    };
    assert!(
        wire_id.len() <= 64 + '…'.len_utf8(),
        "{} bytes",
        wire_id.len()
    );
    assert!(wire_id.starts_with('é') && wire_id.ends_with('…'));
    // Exactly the bound: shown whole. One past it, with a character across the cut: cut
    // before that character.
    for (id, shown) in [
        ("a".repeat(64), "a".repeat(64)),
        (
            format!("{}é{}", "a".repeat(63), "b".repeat(10)),
            format!("{}…", "a".repeat(63)),
        ),
    ] {
        let mut h = H::default_config();
        let conn = h.open();
        h.input(Input::FrameReceived {
            conn,
            frame: InFrame::Text(Bytes::from(format!("res {id} ok nobody"))),
        });
        let seen = violations(&h);
        assert_eq!(
            seen,
            [Violation::UnknownResponse { wire_id: shown }],
            "{id}"
        );
    }
}
