//! A session driven by the application's own task (`Inline`): an embedded echo server on
//! 127.0.0.1, and one task that keeps 64 messages in flight, answers each echo with the
//! next message, prints its progress from a ticker in the same `select!`, and closes
//! cleanly after 20,000 echoes. No task of tether's runs: the session advances while this
//! loop polls it.
//!
//! ```text
//! cargo run -p tether-tokio --example inline
//! ```
//!
//! Exits 0 once every echo came back and the close handshake finished (about a second),
//! 1 if that does not happen within 15 s.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use async_tungstenite::tokio::accept_async;
use futures::StreamExt;
use tether_tokio::{DataFrame, Event};
use tokio::net::TcpListener;

/// Messages in flight at once.
const WINDOW: u32 = 64;
/// Echoes before the session closes.
const TOTAL: u32 = 20_000;

/// Echoes every text frame of every connection, until the peer closes.
async fn echo_server(listener: TcpListener) {
    while let Ok((tcp, _)) = listener.accept().await {
        tokio::spawn(async move {
            let Ok(mut ws) = accept_async(tcp).await else {
                return;
            };
            while let Some(Ok(msg)) = ws.next().await {
                if msg.is_text() && ws.send(msg).await.is_err() {
                    return;
                }
            }
        });
    }
}

fn message(n: u32) -> DataFrame {
    DataFrame::Text(format!("message {n}").into())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let listener = match TcpListener::bind("127.0.0.1:0").await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on 127.0.0.1: {e}");
            return ExitCode::FAILURE;
        }
    };
    let url = match listener.local_addr() {
        Ok(addr) => format!("ws://{addr}/"),
        Err(e) => {
            eprintln!("no local address: {e}");
            return ExitCode::FAILURE;
        }
    };
    tokio::spawn(echo_server(listener));

    let run = async {
        let mut session = tether_tokio::builder(url).inline()?;
        // Sent before the session is open: queued, and written once it is.
        for n in 0..WINDOW {
            session.send(message(n))?;
        }
        let (mut sent, mut echoed) = (WINDOW, 0u32);
        let started = Instant::now();
        let mut ticker = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                event = session.next() => match event {
                    Some(Event::Opened { .. }) => println!("open: {:?}", session.status()),
                    Some(Event::Message(_)) => {
                        echoed += 1;
                        if sent < TOTAL {
                            // Written on the next poll, with every other answer of this read.
                            session.send(message(sent))?;
                            sent += 1;
                        } else if echoed == TOTAL {
                            let rate = f64::from(TOTAL) / started.elapsed().as_secs_f64();
                            println!("{TOTAL} echoes, {rate:.0} per second; closing");
                            session.close();
                        }
                    }
                    Some(Event::Ended(reason)) => println!("ended: {reason:?}"),
                    Some(_) => {}
                    // The close handshake is over.
                    None => break,
                },
                // The application's other work, in the same task: while it runs, the
                // session waits; it must come back to `next()` soon (pings, deadlines).
                _ = ticker.tick() => println!("{echoed} echoes so far"),
            }
        }
        Ok::<u32, Box<dyn std::error::Error>>(echoed)
    };
    match tokio::time::timeout(Duration::from_secs(15), run).await {
        Ok(Ok(echoed)) if echoed == TOTAL => ExitCode::SUCCESS,
        Ok(Ok(echoed)) => {
            eprintln!("only {echoed} of {TOTAL} echoes came back");
            ExitCode::FAILURE
        }
        Ok(Err(e)) => {
            eprintln!("failed: {e}");
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!("not done within 15 s");
            ExitCode::FAILURE
        }
    }
}
