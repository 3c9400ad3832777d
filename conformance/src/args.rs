//! A minimal command line: positional arguments, `--name value` / `--name=value` options
//! and `--switch`es. The harness's binaries take a handful of flags each; a parser crate
//! would be a new dependency for the whole workspace's lockfile.

use std::collections::BTreeMap;
use std::time::Duration;

/// A parsed command line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Args {
    /// Arguments that are not options, in order.
    pub positional: Vec<String>,
    values: BTreeMap<String, String>,
    switches: Vec<String>,
}

impl Args {
    /// Parses `args` (without the program name). `valued` names the options that take a
    /// value, `switches` those that do not (both without the leading `--`).
    ///
    /// # Errors
    ///
    /// An unknown option, a valued option without its value, or a value given to a
    /// switch, as a message for the user.
    pub fn parse(
        args: impl IntoIterator<Item = String>,
        valued: &[&str],
        switches: &[&str],
    ) -> Result<Args, String> {
        let mut parsed = Args::default();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let Some(option) = arg.strip_prefix("--") else {
                parsed.positional.push(arg);
                continue;
            };
            let (name, inline) = match option.split_once('=') {
                Some((name, value)) => (name, Some(value.to_owned())),
                None => (option, None),
            };
            if valued.contains(&name) {
                let value = match inline {
                    Some(value) => value,
                    None => args
                        .next()
                        .ok_or_else(|| format!("--{name} needs a value"))?,
                };
                parsed.values.insert(name.to_owned(), value);
            } else if switches.contains(&name) {
                if inline.is_some() {
                    return Err(format!("--{name} takes no value"));
                }
                parsed.switches.push(name.to_owned());
            } else {
                return Err(format!("unknown option --{name}"));
            }
        }
        Ok(parsed)
    }

    /// The value of option `name`, if given.
    #[must_use]
    pub fn value(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// Whether switch `name` was given.
    #[must_use]
    pub fn switch(&self, name: &str) -> bool {
        self.switches.iter().any(|s| s == name)
    }

    /// Option `name` as a number, or `default` when absent.
    ///
    /// # Errors
    ///
    /// A value that is not a non-negative integer.
    pub fn number(&self, name: &str, default: u64) -> Result<u64, String> {
        match self.value(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| format!("--{name}: {v:?} is not a non-negative integer")),
        }
    }

    /// Option `name` as whole seconds, or `default` when absent.
    ///
    /// # Errors
    ///
    /// A value that is not a positive integer.
    pub fn seconds(&self, name: &str, default: Duration) -> Result<Duration, String> {
        match self.value(name) {
            None => Ok(default),
            Some(_) => match self.number(name, 0)? {
                0 => Err(format!("--{name} must be at least 1 second")),
                s => Ok(Duration::from_secs(s)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, String> {
        Args::parse(
            args.iter().map(|s| (*s).to_owned()),
            &["agent", "case-timeout"],
            &["verbose"],
        )
    }

    #[test]
    fn options_switches_and_positionals() {
        let a = parse(&[
            "ws://x",
            "--agent",
            "tether",
            "--case-timeout=7",
            "--verbose",
            "y",
        ])
        .unwrap();
        assert_eq!(a.positional, ["ws://x", "y"]);
        assert_eq!(a.value("agent"), Some("tether"));
        assert_eq!(
            a.seconds("case-timeout", Duration::ZERO),
            Ok(Duration::from_secs(7))
        );
        assert!(a.switch("verbose"));
        assert!(!a.switch("other"));
        assert_eq!(a.number("missing", 3), Ok(3));
    }

    #[test]
    fn mistakes_are_reported_not_ignored() {
        assert!(parse(&["--agent"]).unwrap_err().contains("needs a value"));
        assert!(parse(&["--nope"]).unwrap_err().contains("unknown option"));
        assert!(parse(&["--verbose=1"]).unwrap_err().contains("no value"));
        let a = parse(&["--case-timeout", "0"]).unwrap();
        assert!(a.seconds("case-timeout", Duration::ZERO).is_err());
        let a = parse(&["--case-timeout", "-1"]).unwrap();
        assert!(a.number("case-timeout", 0).is_err());
    }
}
