//! The axum example (`examples/axum_server.rs`, included here as a module) runs its demo:
//! one port serves the page over plain HTTP, answers a plain `GET /ws` with 426, and
//! upgrades `/ws` for a tether client whose messages are echoed by a connection guarded
//! with `guard_upgraded`.

#[allow(dead_code)]
#[path = "../examples/axum_server.rs"]
mod example;

use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_axum_example_serves_its_page_and_echoes_over_its_websocket() {
    match tokio::time::timeout(Duration::from_secs(20), example::demo()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("the demo failed: {e}"),
        Err(_) => panic!("the demo did not finish within 20 s"),
    }
}
