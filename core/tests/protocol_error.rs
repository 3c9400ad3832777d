//! A protocol error the codec found (`Input::ProtocolError`): the session reports the
//! violation, treats the connection as lost per the policy's violation class (reconnect by
//! default, never the fatal class of the 1002 this side sends), and a handshake it breaks
//! is a failed attempt. The server machine ends the connection with the cause.

mod common;
mod server_common;

use common::*;
use tether_core::server::{EndCause, ServerEvent, ServerOutput};
use tether_core::{
    AttemptError, CloseClass, ClosePolicy, Config, DisconnectReason, EndReason, Event,
    FrameViolation, Input, SessionError, Status, Violation,
};

fn protocol_error(h: &mut H, violation: Violation) -> Vec<tether_core::Output<Lines>> {
    let conn = h.conn();
    h.input(Input::ProtocolError { conn, violation })
}

#[test]
fn a_protocol_error_on_an_open_connection_reconnects_by_default() {
    let mut h = H::default_config();
    h.open();
    let out = protocol_error(&mut h, Violation::InvalidUtf8);
    let evs = events(&out);
    assert!(matches!(
        &evs[0],
        Event::Violation {
            violation: Violation::InvalidUtf8,
            ..
        }
    ));
    assert!(
        evs.iter().any(|e| matches!(
            e,
            Event::Disconnected {
                reason: DisconnectReason::ProtocolError(Violation::InvalidUtf8),
                retry: Some(_),
                ..
            }
        )),
        "{evs:?}"
    );
    // The transport already failed the connection: nothing to close or abort.
    assert!(!has_abort(&out));
    assert_eq!(close_frame(&out), None);
    assert_eq!(h.s.status(), Status::Reconnecting);
    assert_eq!(h.s.stats().violations, 1);
}

#[test]
fn the_violation_class_is_configurable() {
    let policy = ClosePolicy::default().with_violation(CloseClass::Fatal);
    let cfg = Config::builder().close_policy(policy).build().unwrap();
    let mut h = H::new(cfg);
    h.open();
    let v = Violation::Frame(FrameViolation::ReservedBits);
    let out = protocol_error(&mut h, v.clone());
    assert_eq!(h.s.status(), Status::Failed);
    assert!(events(&out).iter().any(|e| matches!(
        e,
        Event::Ended(EndReason::Failed(SessionError::FatalClose { code, .. }))
            if *code == tether_core::CloseCode::PROTOCOL_ERROR
    )));
    assert_eq!(
        ClosePolicy::default().classify_violation(),
        CloseClass::RECONNECT
    );
}

#[test]
fn a_protocol_error_during_the_handshake_is_a_failed_attempt() {
    let cfg = Config::builder().retry_first_connect(true).build().unwrap();
    let mut h = H::new(cfg);
    h.connect();
    h.opened();
    let v = Violation::Oversized { len: 10, max: 1 };
    let out = protocol_error(&mut h, v.clone());
    assert!(
        events(&out).iter().any(|e| matches!(
            e,
            Event::AttemptFailed {
                error: AttemptError::ProtocolError(got),
                retry: Some(_),
                ..
            } if *got == v
        )),
        "{out:?}"
    );
    assert_eq!(h.s.status(), Status::Connecting);
}

#[test]
fn each_violation_names_its_rfc_close_code() {
    use tether_core::CloseCode;
    assert_eq!(Violation::InvalidUtf8.close_code(), CloseCode(1007));
    assert_eq!(
        Violation::Oversized { len: 2, max: 1 }.close_code(),
        CloseCode(1009)
    );
    for v in [
        Violation::InvalidCloseCode(5000),
        Violation::Frame(FrameViolation::ReservedOpcode(3)),
        Violation::Frame(FrameViolation::Masking),
    ] {
        assert_eq!(v.close_code(), CloseCode(1002), "{v}");
        assert!(!v.close_reason().is_empty());
    }
}

#[test]
fn the_server_machine_ends_the_connection_with_the_violation() {
    let mut h = server_common::Harness::new(server_common::short());
    let v = Violation::InvalidUtf8;
    let conn = server_common::conn();
    let out = h.input(
        Input::ProtocolError {
            conn,
            violation: v.clone(),
        },
        server_common::ms(5),
    );
    assert!(
        out.iter()
            .any(|o| matches!(o, ServerOutput::Event(ServerEvent::Violation(got)) if *got == v))
    );
    assert_eq!(
        server_common::ended(&out),
        EndCause::Lost(DisconnectReason::ProtocolError(v))
    );
    assert!(!server_common::aborted(&out));
}
