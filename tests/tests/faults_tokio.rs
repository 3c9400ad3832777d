//! The loopback fault suite (`tether_tests::loopback`) on tokio: real sockets, a server
//! that dies, closes with codes, stops reading, goes silent, accepts then closes, never
//! acknowledges — each scenario on its own server with shortened timeouts.

use std::time::Duration;

use futures::future::BoxFuture;
use tether_core::Config;
use tether_core::profiles::HelloAck;
use tether_tests::loopback::{self, Adapter};
use tether_tokio::{Client, ConnectError, TcpDial, Tokio, WsTransport};

struct OnTokio;

impl Adapter for OnTokio {
    fn name(&self) -> &'static str {
        "tokio"
    }

    fn connect(
        &self,
        url: &str,
        config: Config,
        protocol: HelloAck,
    ) -> BoxFuture<'static, Result<Client<HelloAck>, ConnectError>> {
        let url = url.to_owned();
        Box::pin(async move { tether_tokio::connect(&url, config, protocol).await })
    }

    fn start(
        &self,
        url: &str,
        config: Config,
        protocol: HelloAck,
    ) -> Result<Client<HelloAck>, ConnectError> {
        let transport = WsTransport::new(TcpDial, url)?;
        Client::start(Tokio, transport, config, protocol, 0x7e7e, "loopback")
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(duration))
    }
}

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
