//! Server role, closing: `close` is idempotent and bounded by the close timeout,
//! `terminate` aborts at once, the peer's close or drop ends the connection, and after the
//! end nothing is armed and nothing is accepted.

mod server_common;

use server_common::*;
use tether_core::server::{CloseError, EndCause, ServerOutput};
use tether_core::{CloseCode, DataFrame, DisconnectReason, Input, SendError, Utf8Bytes};

fn text() -> DataFrame {
    DataFrame::Text(Utf8Bytes::from_static("late"))
}

#[test]
fn close_sends_the_code_once_and_ends_when_the_peer_answers() {
    let mut h = Harness::new(short());
    h.c.close(CloseCode(4321), "bye", h.at(ms(10))).unwrap();
    assert_eq!(
        h.drain(),
        vec![ServerOutput::CloseTransport {
            conn: conn(),
            code: CloseCode(4321),
            reason: "bye".into()
        }]
    );
    assert!(!h.c.is_open() && !h.c.is_closed());
    assert_eq!(h.c.send(text(), h.at(ms(11))), Err(SendError::Ended));
    // Idempotent: a second close (any code) does nothing.
    h.c.close(CloseCode::GOING_AWAY, "again", h.at(ms(12)))
        .unwrap();
    assert!(h.drain().is_empty());
    let out = h.input(
        Input::TransportClosed {
            conn: conn(),
            code: Some(CloseCode(4321)),
            reason: "bye".into(),
        },
        ms(40),
    );
    assert!(!aborted(&out), "the peer answered: nothing to abort");
    assert_eq!(
        ended(&out),
        EndCause::Closed {
            code: CloseCode(4321),
            reason: "bye".into(),
            confirmed: true
        }
    );
    assert!(h.c.is_closed());
    assert_eq!(h.c.poll_timeout(), None);
}

#[test]
fn an_unanswered_close_aborts_at_the_close_timeout() {
    let mut h = Harness::new(short());
    h.send("pending", ms(0));
    h.c.close(CloseCode::NORMAL, "", h.at(ms(100))).unwrap();
    h.drain();
    // The pending write no longer has a deadline of its own: the close timeout (4 s)
    // bounds everything left, even past the 2 s send deadline and the stale threshold.
    assert_eq!(h.deadline(), Some(ms(4100)));
    assert!(h.timeout(ms(4099)).is_empty());
    let out = h.timeout(ms(4100));
    assert!(aborted(&out));
    assert_eq!(
        ended(&out),
        EndCause::Closed {
            code: CloseCode::NORMAL,
            reason: String::new(),
            confirmed: false
        }
    );
    assert_eq!(h.c.poll_timeout(), None);
}

#[test]
fn invalid_close_frames_are_refused_and_change_nothing() {
    let mut h = Harness::new(short());
    for bad in [1005, 1006, 1015, 999, 5000] {
        assert_eq!(
            h.c.close(CloseCode(bad), "", h.at(ms(1))),
            Err(CloseError::InvalidCode(bad))
        );
    }
    let long = "x".repeat(124);
    assert_eq!(
        h.c.close(CloseCode::NORMAL, &long, h.at(ms(1))),
        Err(CloseError::ReasonTooLong(124))
    );
    assert!(h.drain().is_empty());
    assert!(h.c.is_open());
    h.c.close(CloseCode::NORMAL, &"x".repeat(123), h.at(ms(2)))
        .unwrap();
}

#[test]
fn terminate_aborts_at_once_and_is_idempotent() {
    let mut h = Harness::new(short());
    h.send("pending", ms(0));
    h.c.terminate(h.at(ms(5)));
    let out = h.drain();
    assert!(aborted(&out));
    assert_eq!(ended(&out), EndCause::Terminated);
    assert!(h.c.is_closed());
    assert_eq!(h.c.poll_timeout(), None);
    h.c.terminate(h.at(ms(6)));
    h.c.close(CloseCode::NORMAL, "", h.at(ms(6))).unwrap();
    assert!(h.drain().is_empty());

    // A close under way is cut short.
    let mut h = Harness::new(short());
    h.c.close(CloseCode::NORMAL, "", h.at(ms(1))).unwrap();
    h.drain();
    h.c.terminate(h.at(ms(2)));
    let out = h.drain();
    assert!(aborted(&out));
    assert_eq!(ended(&out), EndCause::Terminated);
}

#[test]
fn the_peer_closing_or_dropping_ends_the_connection() {
    let mut h = Harness::new(short());
    let out = h.input(
        Input::TransportClosed {
            conn: conn(),
            code: Some(CloseCode::GOING_AWAY),
            reason: "tab closed".into(),
        },
        ms(50),
    );
    assert!(!aborted(&out));
    assert_eq!(
        ended(&out),
        EndCause::Lost(DisconnectReason::Closed {
            code: Some(CloseCode::GOING_AWAY),
            reason: "tab closed".into()
        })
    );
    let mut h = Harness::new(short());
    let out = h.input(
        Input::TransportClosed {
            conn: conn(),
            code: None,
            reason: String::new(),
        },
        ms(50),
    );
    assert_eq!(
        ended(&out),
        EndCause::Lost(DisconnectReason::Closed {
            code: None,
            reason: String::new()
        })
    );
}

#[test]
fn after_the_end_inputs_are_ignored_and_commands_refused() {
    let mut h = Harness::new(short());
    let f = h.send("x", ms(0));
    h.c.terminate(h.at(ms(1)));
    h.drain();
    let out = h.written(f, ms(2));
    assert!(out.is_empty());
    let out = h.pong(ms(3));
    assert!(out.is_empty());
    assert_eq!(h.c.stats().stale_inputs, 2);
    assert_eq!(h.c.send(text(), h.at(ms(4))), Err(SendError::Ended));
    assert!(
        h.timeout(secs(3600)).is_empty(),
        "no timer fires after the end"
    );
}

/// Every end cause reads in plain words, the first-message timeout's included.
#[test]
fn end_causes_read_in_plain_words() {
    let cases = [
        (
            EndCause::Closed {
                code: CloseCode::NORMAL,
                reason: "bye".into(),
                confirmed: true,
            },
            "closed with 1000 (confirmed)",
        ),
        (EndCause::Terminated, "terminated"),
        (
            EndCause::NoFirstMessage { confirmed: false },
            "closed with 1008: no first message in time",
        ),
        (EndCause::Lost(DisconnectReason::Stale), "peer went silent"),
    ];
    for (cause, words) in cases {
        assert_eq!(cause.to_string(), words);
    }
}
