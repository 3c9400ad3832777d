//! A client under test against the suite's fuzzing server: the case count first, then one
//! session per case (`/runCase?case=N&agent=A`), then `/updateReports`, which ends the
//! run and makes the server write its reports.
//!
//! Both echo clients share this loop and differ only in the session they run per URL.

use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

use crate::args::Args;

/// What one session did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The first text message received (the case count, on `/getCaseCount`).
    pub first_text: Option<String>,
    /// Messages sent back.
    pub echoed: u64,
    /// How the session ended, for `--verbose`.
    pub end: String,
}

/// The fuzzing server's URL that answers with the number of cases it serves.
#[must_use]
pub fn case_count_url(base: &str) -> String {
    format!("{}/getCaseCount", base.trim_end_matches('/'))
}

/// The URL of case `case` (1-based, in the server's order) for `agent`.
#[must_use]
pub fn run_case_url(base: &str, case: u32, agent: &str) -> String {
    format!(
        "{}/runCase?case={case}&agent={agent}",
        base.trim_end_matches('/')
    )
}

/// The URL that tells the server the run is over.
#[must_use]
pub fn update_reports_url(base: &str, agent: &str) -> String {
    format!("{}/updateReports?agent={agent}", base.trim_end_matches('/'))
}

/// Whether `agent` can go into a query string as it is (and into a report file name).
#[must_use]
pub fn valid_agent(agent: &str) -> bool {
    !agent.is_empty()
        && agent
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// Whether `url` is a `ws://` URL on this machine's loopback: the harness only ever talks
/// to the suite it started itself.
#[must_use]
pub fn is_loopback_url(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("ws://") else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => host,
        _ => authority,
    };
    matches!(host, "127.0.0.1" | "localhost" | "[::1]")
}

/// Parses the case count the server sends on `/getCaseCount`.
///
/// # Errors
///
/// No message, or one that is not a number.
pub fn parse_case_count(text: Option<&str>) -> Result<u32, String> {
    let text = text.ok_or("the server sent no case count")?;
    text.trim()
        .parse()
        .map_err(|_| format!("the case count {text:?} is not a number"))
}

/// The options every echo client takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// The fuzzing server, `ws://127.0.0.1:PORT`.
    pub base: String,
    /// The agent name the cases are reported under.
    pub agent: String,
    /// How long one session may take before it is cut off (then the next case runs).
    pub case_timeout: Duration,
    /// Print every case's outcome to stderr.
    pub verbose: bool,
}

const USAGE: &str =
    "usage: BIN ws://127.0.0.1:PORT [--agent NAME] [--case-timeout SECS] [--verbose]";

impl Options {
    /// Reads the options from the command line (without the program name).
    ///
    /// # Errors
    ///
    /// A usage message.
    pub fn parse(args: impl IntoIterator<Item = String>, agent: &str) -> Result<Self, String> {
        let a = Args::parse(args, &["agent", "case-timeout"], &["verbose"])?;
        let [base] = a.positional.as_slice() else {
            return Err(USAGE.to_owned());
        };
        if !is_loopback_url(base) {
            return Err(format!("{base}: expected ws://127.0.0.1:PORT\n{USAGE}"));
        }
        let agent = a.value("agent").unwrap_or(agent).to_owned();
        if !valid_agent(&agent) {
            return Err(format!(
                "--agent {agent:?}: use letters, digits, '-', '_', '.'"
            ));
        }
        Ok(Options {
            base: base.clone(),
            agent,
            // The 9.x cases move up to 16 MiB per message, 1000 messages in some; a minute
            // is far above what they take on loopback, and still ends a hung session.
            case_timeout: a.seconds("case-timeout", Duration::from_secs(60))?,
            verbose: a.switch("verbose"),
        })
    }
}

/// Runs the whole client side of the suite: `session(url, echo, timeout)` runs one
/// session to its end (echoing every message when `echo`), cut off after `timeout`.
///
/// # Errors
///
/// The case count could not be read, or `/updateReports` failed; a failed case is only
/// reported (the server judges it).
pub async fn run<F, Fut>(options: &Options, session: F) -> Result<u32, String>
where
    F: Fn(String, bool, Duration) -> Fut,
    Fut: Future<Output = Result<Outcome, String>>,
{
    let counted = session(case_count_url(&options.base), false, options.case_timeout)
        .await
        .map_err(|e| format!("getCaseCount: {e}"))?;
    let count = parse_case_count(counted.first_text.as_deref())?;
    eprintln!("{}: {count} cases", options.agent);
    for case in 1..=count {
        let url = run_case_url(&options.base, case, &options.agent);
        match session(url, true, options.case_timeout).await {
            Ok(outcome) if options.verbose => eprintln!(
                "{}: case {case}: echoed {}, {}",
                options.agent, outcome.echoed, outcome.end
            ),
            Ok(_) => {}
            Err(e) => eprintln!("{}: case {case}: {e}", options.agent),
        }
    }
    session(
        update_reports_url(&options.base, &options.agent),
        false,
        options.case_timeout,
    )
    .await
    .map_err(|e| format!("updateReports: {e}"))?;
    Ok(count)
}

/// The `main` of an echo client: parses the command line, runs [`run`] on a
/// current-thread tokio runtime (one session at a time; the same runtime for tether and
/// the baseline), and maps the result to an exit code.
pub fn main_with<F, Fut>(default_agent: &str, session: F) -> ExitCode
where
    F: Fn(String, bool, Duration) -> Fut,
    Fut: Future<Output = Result<Outcome, String>>,
{
    let options = match Options::parse(std::env::args().skip(1), default_agent) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    crate::exit_code(&options.agent, run(&options, session))
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    #[test]
    fn urls_follow_the_fuzzing_servers_paths() {
        assert_eq!(
            case_count_url("ws://127.0.0.1:9001/"),
            "ws://127.0.0.1:9001/getCaseCount"
        );
        assert_eq!(
            run_case_url("ws://127.0.0.1:9001", 7, "tether"),
            "ws://127.0.0.1:9001/runCase?case=7&agent=tether"
        );
        assert_eq!(
            update_reports_url("ws://127.0.0.1:9001", "raw"),
            "ws://127.0.0.1:9001/updateReports?agent=raw"
        );
    }

    #[test]
    fn agents_and_counts_are_checked() {
        assert!(valid_agent("tether-client_1.0"));
        assert!(!valid_agent(""));
        assert!(!valid_agent("a&case=1"));
        assert_eq!(parse_case_count(Some(" 301\n")), Ok(301));
        assert!(parse_case_count(Some("many")).is_err());
        assert!(parse_case_count(None).is_err());
    }

    #[test]
    fn options_need_a_ws_url() {
        let o = Options::parse(
            ["ws://127.0.0.1:1".to_owned(), "--verbose".to_owned()],
            "tether",
        )
        .unwrap();
        assert_eq!(o.agent, "tether");
        assert_eq!(o.case_timeout, Duration::from_secs(60));
        assert!(o.verbose);
        assert!(Options::parse(["http://127.0.0.1:1".to_owned()], "a").is_err());
        assert!(Options::parse(["ws://10.0.0.1:9001".to_owned()], "a").is_err());
        assert!(is_loopback_url("ws://localhost:9001/"));
        assert!(is_loopback_url("ws://[::1]:9001"));
        assert!(!is_loopback_url("ws://127.0.0.1.example:80"));
        assert!(Options::parse(Vec::<String>::new(), "a").is_err());
        let bad_agent = ["ws://127.0.0.1:1".to_owned(), "--agent=a b".to_owned()];
        assert!(Options::parse(bad_agent, "a").is_err());
    }

    /// The loop asks for the count, runs every case with echo on, then updates the
    /// reports, and goes on after a failed case.
    #[test]
    fn the_loop_runs_count_cases_then_update_reports() {
        let seen = RefCell::new(Vec::new());
        let options = Options {
            base: "ws://h:1".to_owned(),
            agent: "t".to_owned(),
            case_timeout: Duration::from_secs(1),
            verbose: false,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let count = runtime
            .block_on(run(&options, |url: String, echo, _| {
                seen.borrow_mut().push((url.clone(), echo));
                async move {
                    if url.ends_with("case=1&agent=t") {
                        return Err("refused".to_owned());
                    }
                    Ok(Outcome {
                        first_text: Some("2".to_owned()),
                        ..Outcome::default()
                    })
                }
            }))
            .unwrap();
        assert_eq!(count, 2);
        let urls: Vec<_> = seen.into_inner();
        assert_eq!(
            urls,
            [
                ("ws://h:1/getCaseCount".to_owned(), false),
                ("ws://h:1/runCase?case=1&agent=t".to_owned(), true),
                ("ws://h:1/runCase?case=2&agent=t".to_owned(), true),
                ("ws://h:1/updateReports?agent=t".to_owned(), false),
            ]
        );
    }
}
