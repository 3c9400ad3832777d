//! Chat with an OpenClaw gateway: connect with a token, send one message, print the
//! reply as it streams, then read the transcript back.
//!
//! ```text
//! OPENCLAW_GATEWAY_TOKEN=… cargo run -p tether-tokio --example openclaw -- \
//!     [ws://127.0.0.1:18789] [session key] [message]
//! ```
//!
//! Prints the reply on stdout (nothing else); progress and errors go to stderr. Exits 0
//! when the run ends `final`, 1 when it fails or is aborted, 2 on a usage or connection
//! error.

use std::process::ExitCode;
use std::time::Duration;

use futures::StreamExt;
use tether_tokio::tether_core::profiles::{
    ChatHistory, ChatSendAck, Gateway, GatewayOptions, GatewayRequest,
};
use tether_tokio::tether_core::{Config, StreamEventKind};

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "ws://127.0.0.1:18789".to_owned());
    let session_key = args.next().unwrap_or_else(|| "agent:main:main".to_owned());
    let message = args
        .next()
        .unwrap_or_else(|| "Hello from tether".to_owned());
    let Ok(token) = std::env::var("OPENCLAW_GATEWAY_TOKEN") else {
        eprintln!("set OPENCLAW_GATEWAY_TOKEN to the gateway's token");
        return ExitCode::from(2);
    };

    // The gateway challenges; the profile answers with `connect` (client `cli`, the
    // operator read/write scopes, protocol 4) and opens on `hello-ok`.
    let gateway = Gateway::new(GatewayOptions {
        token: Some(token),
        ..GatewayOptions::default()
    });
    let config = Config::builder()
        // A gateway still starting answers UNAVAILABLE with retryAfterMs: retry.
        .retry_first_connect(true)
        .request_timeout(Duration::from_secs(30))
        .build()
        .expect("a valid configuration");
    let client = match tether_tokio::connect(&url, config, gateway).await {
        Ok(client) => client,
        Err(e) => {
            eprintln!("cannot connect to {url}: {e}");
            return ExitCode::from(2);
        }
    };

    // `chat.send` starts a run; its events arrive as a stream keyed by the run id (the
    // request's idempotency key), even those that beat the answer.
    let mut run = match client
        .stream(GatewayRequest::chat_send(&session_key, message), None)
        .await
    {
        Ok(run) => run,
        Err(e) => {
            eprintln!("chat.send refused: {e}");
            return ExitCode::from(2);
        }
    };
    match run.response().await.map(|p| p.decode::<ChatSendAck>()) {
        Ok(Ok(ack)) => eprintln!("run {} {}", ack.run_id, ack.status),
        other => eprintln!("chat.send: {other:?}"),
    }
    let mut status = ExitCode::from(1);
    while let Some(event) = run.events.next().await {
        match event.kind {
            // Only the new text: rebuilt from the gateway's cumulative message, so
            // coalesced or dropped deltas never garble it.
            StreamEventKind::Delta {
                text: Some(text), ..
            } => print!("{text}"),
            StreamEventKind::Final { .. } => {
                println!();
                status = ExitCode::SUCCESS;
            }
            StreamEventKind::Error { message, .. } => eprintln!("the run failed: {message}"),
            StreamEventKind::Aborted(_) => eprintln!("the run was aborted"),
            StreamEventKind::Ended(why) => eprintln!("the run ended: {why:?}"),
            _ => {} // status events, gaps
        }
    }

    match client
        .request(GatewayRequest::chat_history(&session_key, Some(20)))
        .await
        .map(|p| p.decode::<ChatHistory>())
    {
        Ok(Ok(history)) => eprintln!("{} messages in {session_key}", history.messages.len()),
        other => eprintln!("chat.history: {other:?}"),
    }
    client.close().await;
    status
}
