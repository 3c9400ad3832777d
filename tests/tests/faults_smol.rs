//! The loopback fault suite (`tether_tests::loopback`) on smol: real sockets, a server
//! that dies, closes with codes, stops reading, goes silent, accepts then closes, never
//! acknowledges — each scenario on its own server with shortened timeouts.

use tether_tests::loopback;
use tether_tests::runtimes::OnSmol;

#[test]
fn server_killed_with_requests_in_flight() {
    smol::block_on(loopback::server_killed_with_requests_in_flight(&OnSmol));
}

#[test]
fn close_4001_is_fatal() {
    smol::block_on(loopback::close_4001_is_fatal(&OnSmol));
}

#[test]
fn close_1012_reconnects() {
    smol::block_on(loopback::close_1012_reconnects(&OnSmol));
}

#[test]
fn stopped_reader_trips_the_send_deadline() {
    smol::block_on(loopback::stopped_reader_trips_the_send_deadline(&OnSmol));
}

#[test]
fn silent_server_goes_stale() {
    smol::block_on(loopback::silent_server_goes_stale(&OnSmol));
}

#[test]
fn accept_then_close_backs_off() {
    smol::block_on(loopback::accept_then_close_backs_off(&OnSmol));
}

#[test]
fn hello_never_acked() {
    smol::block_on(loopback::hello_never_acked(&OnSmol));
}
