//! Every failure step of a session's life is logged on smol (`tether_tests::logs`). One
//! test in this binary: it installs the global subscriber.

use tether_tests::logs::{capture_globally, every_step_is_logged};
use tether_tests::runtimes::OnSmol;

#[test]
fn every_failure_step_is_logged_on_smol() {
    let capture = capture_globally();
    smol::block_on(every_step_is_logged(&OnSmol, &capture));
}
