//! The tether echo client for the suite's fuzzing server: one tether session per case
//! (`tether_tokio::Client`, profile `Raw`), every text and binary message sent back as
//! it came, until the session ends.
//!
//! `echo-client-tether ws://127.0.0.1:PORT [--agent NAME] [--case-timeout SECS] [--verbose]`
//!
//! No reconnect between cases: with `max_attempts(Some(1))` the first lost connection
//! ends the session, and `stable_after` is set longer than any case so that a long case
//! (9.x) does not reset the attempt counter and earn a retry. Every other setting is
//! tether's default, so the suite sees what an application with the defaults would do
//! (pings every 30 s, 16 MiB inbound limit, 5 s close timeout).
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::time::Duration;

use futures::StreamExt;
use tether_conformance::fuzzingserver::{self, Outcome};
use tether_tokio::tether_core::profiles::Raw;
use tether_tokio::tether_core::{Config, DataFrame, Event};
use tether_tokio::{Client, TcpDial, Tokio, WsTransport};

/// The configuration of every session: tether's defaults, and one connection only.
fn config() -> Result<Config, String> {
    Config::builder()
        .max_attempts(Some(1))
        .stable_after(Duration::from_secs(24 * 3600))
        .build()
        .map_err(|e| format!("config: {e}"))
}

async fn session(url: String, echo: bool, timeout: Duration, seed: u64) -> Result<Outcome, String> {
    let transport = WsTransport::new(TcpDial, &url).map_err(|e| format!("{url}: {e}"))?;
    let client = Client::start(Tokio, transport, config()?, Raw, seed, "autobahn")
        .map_err(|e| format!("start: {e}"))?;
    // Subscribed before the first await: on this current-thread runtime the session task
    // has not run yet, so no message (the server sends right after the upgrade) is missed.
    let mut events = client.events();
    let mut outcome = Outcome::default();
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    loop {
        let event = tokio::select! {
            e = events.next() => e,
            () = &mut deadline => {
                client.terminate();
                outcome.end = format!("cut off after {timeout:?}");
                return Ok(outcome);
            }
        };
        match event {
            Some(Event::Message(frame)) => {
                if outcome.first_text.is_none()
                    && let DataFrame::Text(t) = &frame
                {
                    outcome.first_text = Some(t.as_str().to_owned());
                }
                if echo {
                    // A refusal (the session is closing) is part of what the suite judges;
                    // the loop goes on until the session ends.
                    if client.send(frame).await.is_ok() {
                        outcome.echoed += 1;
                    }
                }
            }
            Some(Event::Ended(reason)) => {
                outcome.end = format!("ended: {reason:?}");
                return Ok(outcome);
            }
            Some(Event::Disconnected { reason, .. }) => {
                outcome.end = format!("disconnected: {reason:?}; ");
            }
            Some(Event::Violation { violation, .. }) => {
                outcome.end.push_str(&format!("violation: {violation:?}; "));
            }
            Some(_) => {}
            None => {
                outcome.end.push_str("events ended");
                return Ok(outcome);
            }
        }
    }
}

fn main() -> ExitCode {
    let seed = std::cell::Cell::new(0x7e7e_0000_u64);
    fuzzingserver::main_with("tether", |url, echo, timeout| {
        // Seeds only draw jitter and idempotency keys; distinct per session is enough.
        seed.set(seed.get().wrapping_add(1));
        session(url, echo, timeout, seed.get())
    })
}
