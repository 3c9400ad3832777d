//! Boundary values through the real driver, on tokio and smol (reliability review §7 D1):
//! `Client::request_with_timeout(.., Duration::MAX)` used to panic inside the
//! session task, so that call and every later call on any clone returned `Stopped` while
//! `status()` still said `Open`. Such a timeout now means no deadline.

use std::time::Duration;

use serde_json::json;
use tether_core::Status;
use tether_core::profiles::{HelloAck, HelloAckRequest};
use tether_tests::loopback::{self, LIMIT, Server};
use tether_tests::runtimes::{OnSmol, OnTokio, TestRuntime, within};

fn echo(n: u64) -> HelloAckRequest {
    HelloAckRequest::new("echo", json!({ "n": n }))
}

async fn a_request_without_a_deadline_is_answered<A: TestRuntime>(a: &A) {
    let server = Server::start();
    let config = loopback::config().build().expect("valid");
    let hello = HelloAck::new(|| json!({ "type": "hello", "client": "boundaries" }));
    let client = within(a, LIMIT, "connect", a.connect(&server.url(), config, hello))
        .await
        .unwrap_or_else(|e| panic!("[{}] connect: {e}", a.name()));
    let r = within(
        a,
        LIMIT,
        "a request with a Duration::MAX timeout",
        client.request_with_timeout(echo(1), Duration::MAX),
    )
    .await;
    assert_eq!(r, Ok(json!({ "n": 1 }).into()), "[{}]", a.name());
    // The session task is alive: a clone's call is answered too.
    let other = client.clone();
    let r = within(a, LIMIT, "a later request", other.request(echo(2))).await;
    assert_eq!(r, Ok(json!({ "n": 2 }).into()), "[{}]", a.name());
    assert_eq!(client.status(), Status::Open);
    within(a, LIMIT, "close", client.close()).await;
    assert!(client.status().is_terminal());
}

#[tokio::test]
async fn a_request_without_a_deadline_is_answered_on_tokio() {
    a_request_without_a_deadline_is_answered(&OnTokio).await;
}

#[test]
fn a_request_without_a_deadline_is_answered_on_smol() {
    smol::block_on(a_request_without_a_deadline_is_answered(&OnSmol));
}
