//! The Autobahn TestSuite harness's Rust half (see `docs/conformance.md`).
//!
//! Four echo peers, built as binaries of this crate, are what `scripts/autobahn.sh` runs
//! the suite against:
//!
//! | binary | role | built on |
//! |---|---|---|
//! | `echo-client-tether` | client, against the fuzzing server | `tether_tokio::Client`, profile `Raw` |
//! | `echo-client-raw` | client, the baseline | `async_tungstenite::tokio::connect_async` |
//! | `echo-server-tether` | server, against the fuzzing client | `tether_tokio::server::accept` |
//! | `echo-server-raw` | server, the baseline | `async_tungstenite::tokio::accept_async` |
//!
//! and `autobahn-report` reads the suite's JSON reports and compares tether with the
//! baseline ([`report`]). What the binaries share lives here: the command line
//! ([`args`]), the fuzzing server's URLs and the case loop ([`fuzzingserver`]), and the
//! servers' accept loop with its idle exit ([`serve`]).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod args;
pub mod fuzzingserver;
pub mod report;
pub mod serve;

/// Runs `main` to completion on a current-thread tokio runtime (one at a time, the same
/// for tether and the baseline) and maps the outcome to an exit code, printing an error
/// as `label: error`.
pub(crate) fn exit_code<T, E: std::fmt::Display>(
    label: &str,
    main: impl std::future::Future<Output = Result<T, E>>,
) -> std::process::ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tokio runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(main) {
        Ok(_) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{label}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
