//! B3: a failed connection attempt is logged, by the session (debug, with the attempt and
//! the error) and by the driver (info, with the error and the retry), so an operator can
//! see why a client is not connecting.

use std::time::Duration;

use tether_tokio::tether_core::profiles::Raw;
use tether_tokio::tether_core::{Config, EndReason, SessionError};
use tether_tokio::{Client, TcpDial, Tokio, WsTransport};

mod common;
use common::Capture;

#[tokio::test]
async fn a_failed_attempt_is_logged_with_its_cause() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(capture.clone())
        .finish();
    // This test binary holds one test, so the global default sees every task's events.
    tracing::subscriber::set_global_default(subscriber).unwrap();

    // A port nothing listens on: bound, then released.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let transport = WsTransport::new(TcpDial, &format!("ws://127.0.0.1:{port}/")).unwrap();
    let client = Client::start(Tokio, transport, Config::default(), Raw, 7, "refused").unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(5), client.wait_open())
        .await
        .expect("the first connect's outcome");
    assert!(
        matches!(ended, Err(EndReason::Failed(SessionError::FirstConnect(_)))),
        "{ended:?}"
    );
    let text = capture.text();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("attempt failed"))
        .collect();
    let core = lines
        .iter()
        .find(|l| l.contains("DEBUG") && l.contains("tether_core"))
        .unwrap_or_else(|| panic!("no session line in {text}"));
    assert!(core.contains("attempt=1"), "{core}");
    assert!(core.contains("refused"), "the cause: {core}");
    let driver = lines
        .iter()
        .find(|l| l.contains("INFO") && l.contains("tether_driver"))
        .unwrap_or_else(|| panic!("no driver line in {text}"));
    assert!(driver.contains("refused"), "the cause: {driver}");
    assert!(driver.contains("retry_in=None"), "no retry: {driver}");
}
