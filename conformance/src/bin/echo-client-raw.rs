//! The baseline echo client for the suite's fuzzing server: async-tungstenite's
//! `connect_async` and the idiomatic echo loop (read a message, send it back; stop at the
//! end of the stream or an error). tungstenite answers pings and the peer's close frame
//! by itself while the loop keeps reading, and ends the stream after the close.
//!
//! `echo-client-raw ws://127.0.0.1:PORT [--agent NAME] [--case-timeout SECS] [--verbose]`
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::time::Duration;

use async_tungstenite::tokio::connect_async;
use async_tungstenite::tungstenite::Message;
use futures::StreamExt;
use tether_conformance::fuzzingserver::{self, Outcome};

async fn session(url: String, echo: bool, timeout: Duration) -> Result<Outcome, String> {
    let run = async {
        let (mut ws, _) = connect_async(url.as_str())
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        let mut outcome = Outcome::default();
        while let Some(message) = ws.next().await {
            match message {
                Ok(m @ (Message::Text(_) | Message::Binary(_))) => {
                    if outcome.first_text.is_none()
                        && let Message::Text(t) = &m
                    {
                        outcome.first_text = Some(t.as_str().to_owned());
                    }
                    if echo {
                        if let Err(e) = ws.send(m).await {
                            outcome.end = format!("send: {e}");
                            return Ok(outcome);
                        }
                        outcome.echoed += 1;
                    }
                }
                Ok(Message::Close(frame)) => outcome.end = format!("close {frame:?}"),
                Ok(_) => {}
                Err(e) => {
                    outcome.end = format!("read: {e}");
                    return Ok(outcome);
                }
            }
        }
        Ok(outcome)
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(r) => r,
        Err(_) => Ok(Outcome {
            end: format!("cut off after {timeout:?}"),
            ..Outcome::default()
        }),
    }
}

fn main() -> ExitCode {
    fuzzingserver::main_with("raw", session)
}
