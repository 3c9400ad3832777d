//! The tether echo server for the suite's fuzzing client: every accepted socket goes
//! through `tether_tokio::server::accept` (a guarded connection), and every inbound
//! message is sent back with the guarded connection's `send`, until the connection ends.
//!
//! `echo-server-tether [--max-inbound-frame BYTES] [--idle-exit SECS] [--verbose]`
//!
//! Serves on a free port of 127.0.0.1, prints `ws://127.0.0.1:PORT` as its first line,
//! and exits after `--idle-exit` seconds (default 20) with no connection open. Every
//! setting is `GuardConfig::default()` except `server.max_inbound_frame` (default 1 MiB;
//! the 9.x cases need 16 MiB, `--max-inbound-frame 16777216`).
#![forbid(unsafe_code)]

use std::process::ExitCode;

use tether_conformance::args::Args;
use tether_conformance::serve;
use tether_tokio::server::{GuardConfig, accept};

fn guard_config(args: &Args) -> Result<GuardConfig, String> {
    let mut config = GuardConfig::default();
    if let Some(v) = args.value("max-inbound-frame") {
        config.server.max_inbound_frame = v
            .parse()
            .map_err(|_| format!("--max-inbound-frame: {v:?} is not a byte count"))?;
    }
    config.validate().map_err(|e| format!("config: {e}"))?;
    Ok(config)
}

fn main() -> ExitCode {
    serve::main_with(&["max-inbound-frame"], |args| {
        let config = guard_config(args)?;
        let verbose = args.switch("verbose");
        Ok(move |stream, peer| {
            let config = config.clone();
            async move {
                let conn = match accept(stream, config).await {
                    Ok(conn) => conn,
                    Err(e) => {
                        eprintln!("{peer}: accept: {e}");
                        return;
                    }
                };
                let mut echoed = 0u64;
                while let Some(frame) = conn.recv().await {
                    if conn.send(frame).await.is_err() {
                        break;
                    }
                    echoed += 1;
                }
                let cause = conn.closed().await;
                if verbose {
                    eprintln!(
                        "{peer}: echoed {echoed}, dropped inbound {}, ended: {cause:?}",
                        conn.dropped_inbound()
                    );
                }
            }
        })
    })
}
