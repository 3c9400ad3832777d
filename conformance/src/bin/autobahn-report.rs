//! `autobahn-report [--markdown] NAME=DIR...`: reads the suite's reports written by
//! `scripts/autobahn.sh` (one directory per peer), prints the counts per peer and every
//! case where `X-tether` did worse than `X-raw`.
//!
//! Exit status: 0 when every report was read and no tether peer did worse than its
//! baseline (apart from the deviations `--known FILE` lists, each only in its one
//! accepted form, [`report::is_known`]), 1 otherwise, 2 for a usage error.
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
    let known = match &request.known {
        None => Vec::new(),
        Some(path) => match std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|t| report::read_known(&t))
        {
            Ok(k) => k,
            Err(e) => {
                eprintln!("autobahn-report: {}: {e}", path.display());
                return ExitCode::from(2);
            }
        },
    };
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
    let mut unexplained = 0;
    for p in &pairs {
        let (accepted, other): (Vec<_>, Vec<_>) =
            p.worse.iter().partition(|w| report::is_known(w, &known));
        if !accepted.is_empty() {
            let ids: Vec<String> = accepted.iter().map(|w| w.id.to_string()).collect();
            eprintln!(
                "{}: {} known deviation(s) (docs/conformance.md): {}",
                p.tether.name,
                accepted.len(),
                ids.join(" ")
            );
        }
        unexplained += other.len();
    }
    if ok && unexplained == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
