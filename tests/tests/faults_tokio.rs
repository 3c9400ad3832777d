//! The loopback fault suite (`tether_tests::loopback`) on tokio: real sockets, a server
//! that dies, closes with codes, stops reading, goes silent, accepts then closes, never
//! acknowledges — each scenario on its own server with shortened timeouts.

use tether_tests::loopback;
use tether_tests::runtimes::OnTokio;

#[tokio::test]
async fn server_killed_with_requests_in_flight() {
    loopback::server_killed_with_requests_in_flight(&OnTokio).await;
}

#[tokio::test]
async fn close_4001_is_fatal() {
    loopback::close_4001_is_fatal(&OnTokio).await;
}

#[tokio::test]
async fn close_1012_reconnects() {
    loopback::close_1012_reconnects(&OnTokio).await;
}

#[tokio::test]
async fn stopped_reader_trips_the_send_deadline() {
    loopback::stopped_reader_trips_the_send_deadline(&OnTokio).await;
}

#[tokio::test]
async fn silent_server_goes_stale() {
    loopback::silent_server_goes_stale(&OnTokio).await;
}

#[tokio::test]
async fn accept_then_close_backs_off() {
    loopback::accept_then_close_backs_off(&OnTokio).await;
}

#[tokio::test]
async fn hello_never_acked() {
    loopback::hello_never_acked(&OnTokio).await;
}
