//! The baseline echo server for the suite's fuzzing client: async-tungstenite's
//! `accept_async` (tungstenite's default limits: 64 MiB messages, 16 MiB frames) and the
//! idiomatic echo loop (read a message, send it back; stop at the end of the stream or
//! an error).
//!
//! `echo-server-raw [--idle-exit SECS] [--verbose]`
//!
//! Serves on a free port of 127.0.0.1, prints `ws://127.0.0.1:PORT` as its first line,
//! and exits after `--idle-exit` seconds (default 20) with no connection open.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use async_tungstenite::tokio::accept_async;
use async_tungstenite::tungstenite::Message;
use futures::StreamExt;
use tether_conformance::serve;

fn main() -> ExitCode {
    serve::main_with(&[], |args| {
        let verbose = args.switch("verbose");
        Ok(move |stream: tokio::net::TcpStream, peer| async move {
            // NODELAY like tether's accept, so the comparison is about the protocol.
            let _ = stream.set_nodelay(true);
            let mut ws = match accept_async(stream).await {
                Ok(ws) => ws,
                Err(e) => {
                    eprintln!("{peer}: accept: {e}");
                    return;
                }
            };
            let mut echoed = 0u64;
            let mut end = String::from("end of stream");
            while let Some(message) = ws.next().await {
                match message {
                    Ok(m @ (Message::Text(_) | Message::Binary(_))) => {
                        if let Err(e) = ws.send(m).await {
                            end = format!("send: {e}");
                            break;
                        }
                        echoed += 1;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        end = format!("read: {e}");
                        break;
                    }
                }
            }
            if verbose {
                eprintln!("{peer}: echoed {echoed}, {end}");
            }
        })
    })
}
