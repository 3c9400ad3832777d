//! Every failure step of a session's life is logged on tokio (`tether_tests::logs`). One
//! test in this binary: it installs the global subscriber.

use tether_tests::logs::{capture_globally, every_step_is_logged};
use tether_tests::runtimes::OnTokio;

#[tokio::test]
async fn every_failure_step_is_logged_on_tokio() {
    let capture = capture_globally();
    every_step_is_logged(&OnTokio, &capture).await;
}
