//! `autobahn-report [--markdown] NAME=DIR...`: reads the suite's reports written by
//! `scripts/autobahn.sh` (one directory per peer), prints the counts per peer and every
//! case where `X-tether` did worse than `X-raw`.
//!
//! Exit status: 0 when every report was read and no tether peer did worse than its
//! baseline on any case, 1 otherwise, 2 for a usage error.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use tether_conformance::report::{self, PeerReport, Request};

fn main() -> ExitCode {
    let request = match Request::parse(std::env::args().skip(1)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let mut ok = true;
    let mut peers = Vec::new();
    for (name, dir) in &request.peers {
        match PeerReport::load(name, dir) {
            Ok(p) => peers.push(p),
            Err(e) => {
                eprintln!("autobahn-report: {name}: no report ({e})");
                ok = false;
            }
        }
    }
    let pairs = report::pairs(&peers);
    // Every tether peer asked for must have its baseline read, or nothing was proven.
    for p in &peers {
        if p.name.ends_with("-tether") && !pairs.iter().any(|pair| pair.tether.name == p.name) {
            eprintln!("autobahn-report: {}: no baseline to compare with", p.name);
            ok = false;
        }
    }
    let out = if request.markdown {
        report::render_markdown(&peers, &pairs)
    } else {
        report::render_text(&peers, &pairs)
    };
    print!("{out}");
    let worse: usize = pairs.iter().map(|p| p.worse.len()).sum();
    if ok && worse == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
