//! Reads the suite's JSON reports (`index.json` and one file per case, Autobahn's
//! format as kosoku writes it), counts results per peer, and lists every case where
//! tether did worse than the raw async-tungstenite baseline.
//!
//! "Worse" compares two verdicts per case, each on its own scale:
//!
//! - the message exchange (`behavior`): OK > NON-STRICT = INFORMATIONAL > UNIMPLEMENTED >
//!   FAILED = anything else (ERROR: the case could not run);
//! - the closing handshake (`behaviorClose`): OK = INFORMATIONAL > WRONG CODE >
//!   UNCLEAN = FAILED = FAILED BY CLIENT = anything else.
//!
//! A case is worse when either verdict ranks lower than the baseline's, or when tether has
//! no result for a case the baseline ran.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// The message verdicts, in the order the tables show them.
pub const BEHAVIORS: [&str; 5] = [
    "OK",
    "NON-STRICT",
    "INFORMATIONAL",
    "UNIMPLEMENTED",
    "FAILED",
];

/// The closing-handshake verdicts, in the order the tables show them.
pub const CLOSES: [&str; 6] = [
    "OK",
    "INFORMATIONAL",
    "WRONG CODE",
    "UNCLEAN",
    "FAILED",
    "FAILED BY CLIENT",
];

/// A case id such as `5.15` or `9.1.6`, ordered numerically (1.2.10 after 1.2.9).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CaseId(Vec<u32>);

impl CaseId {
    /// Parses `1.2.3`.
    ///
    /// # Errors
    ///
    /// An id that is not dot-separated numbers.
    pub fn parse(id: &str) -> Result<CaseId, String> {
        id.split('.')
            .map(|p| p.parse().map_err(|_| format!("case id {id:?}")))
            .collect::<Result<Vec<_>, _>>()
            .map(CaseId)
    }

    /// The first component: `9` for `9.1.6`.
    #[must_use]
    pub fn major(&self) -> u32 {
        self.0.first().copied().unwrap_or(0)
    }
}

impl std::fmt::Display for CaseId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut first = true;
        for p in &self.0 {
            if !first {
                f.write_str(".")?;
            }
            first = false;
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// One case's result for one peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaseResult {
    /// The message verdict.
    pub behavior: String,
    /// The closing-handshake verdict.
    pub behavior_close: String,
    /// The close code the peer under test sent, if any.
    pub remote_close_code: Option<u64>,
    /// Whether the closing handshake completed cleanly (from the case's own report; `None`
    /// when that file is missing).
    pub was_clean: Option<bool>,
    /// Run time in milliseconds.
    pub duration_ms: u64,
}

impl CaseResult {
    /// The message verdict's rank (higher is better).
    #[must_use]
    pub fn behavior_rank(&self) -> u8 {
        match self.behavior.as_str() {
            "OK" => 3,
            "NON-STRICT" | "INFORMATIONAL" => 2,
            "UNIMPLEMENTED" => 1,
            _ => 0,
        }
    }

    /// The closing verdict's rank (higher is better).
    #[must_use]
    pub fn close_rank(&self) -> u8 {
        match self.behavior_close.as_str() {
            "OK" | "INFORMATIONAL" => 2,
            "WRONG CODE" => 1,
            _ => 0,
        }
    }

    /// `behavior/behaviorClose close=CODE`, for the lists.
    #[must_use]
    pub fn brief(&self) -> String {
        let code = self
            .remote_close_code
            .map_or_else(|| "none".to_owned(), |c| c.to_string());
        format!("{}/{} (sent {code})", self.behavior, self.behavior_close)
    }
}

/// Every case result of one peer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerReport {
    /// The peer's name in the tables (`client-tether`, …).
    pub name: String,
    /// The results by case.
    pub cases: BTreeMap<CaseId, CaseResult>,
}

fn read_json(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

impl PeerReport {
    /// Reads `dir/index.json` and the case files it names. The index has one entry per
    /// agent; the harness writes one agent per directory, and several are merged.
    ///
    /// # Errors
    ///
    /// A missing or malformed index.
    pub fn load(name: &str, dir: &Path) -> Result<PeerReport, String> {
        let index = read_json(&dir.join("index.json"))?;
        Self::from_index(name, &index, |file| read_json(&dir.join(file)).ok())
    }

    /// [`load`](Self::load) on an index already read; `case_file` reads a case's own
    /// report by file name.
    ///
    /// # Errors
    ///
    /// A malformed index.
    pub fn from_index(
        name: &str,
        index: &Value,
        case_file: impl Fn(&str) -> Option<Value>,
    ) -> Result<PeerReport, String> {
        let agents = index
            .as_object()
            .ok_or_else(|| format!("{name}: index.json is not an object"))?;
        let mut cases = BTreeMap::new();
        for (agent, entries) in agents {
            let entries = entries
                .as_object()
                .ok_or_else(|| format!("{name}: index.json: agent {agent:?} is not an object"))?;
            for (id, entry) in entries {
                let text = |key: &str| {
                    entry
                        .get(key)
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                        .ok_or_else(|| format!("{name}: case {id}: no {key}"))
                };
                let was_clean = entry
                    .get("reportfile")
                    .and_then(Value::as_str)
                    .and_then(&case_file)
                    .and_then(|c| c.get("wasClean").and_then(Value::as_bool));
                let result = CaseResult {
                    behavior: text("behavior")?,
                    behavior_close: text("behaviorClose")?,
                    remote_close_code: entry.get("remoteCloseCode").and_then(Value::as_u64),
                    was_clean,
                    duration_ms: entry.get("duration").and_then(Value::as_u64).unwrap_or(0),
                };
                cases.insert(CaseId::parse(id)?, result);
            }
        }
        Ok(PeerReport {
            name: name.to_owned(),
            cases,
        })
    }

    /// The counts for the tables.
    #[must_use]
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for r in self.cases.values() {
            c.cases += 1;
            *c.behavior
                .entry(bucket(&BEHAVIORS, &r.behavior))
                .or_default() += 1;
            *c.close
                .entry(bucket(&CLOSES, &r.behavior_close))
                .or_default() += 1;
            match r.was_clean {
                Some(true) => c.clean += 1,
                Some(false) => c.unclean += 1,
                None => {}
            }
            c.duration_ms += r.duration_ms;
            *c.codes.entry(r.remote_close_code).or_default() += 1;
        }
        c
    }
}

fn bucket(known: &[&str], verdict: &str) -> String {
    if known.contains(&verdict) {
        verdict.to_owned()
    } else {
        OTHER.to_owned()
    }
}

/// The column for verdicts outside [`BEHAVIORS`] / [`CLOSES`] (ERROR, a new label).
pub const OTHER: &str = "other";

/// One peer's totals.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Cases run.
    pub cases: usize,
    /// By message verdict ([`BEHAVIORS`] or [`OTHER`]).
    pub behavior: BTreeMap<String, usize>,
    /// By closing verdict ([`CLOSES`] or [`OTHER`]).
    pub close: BTreeMap<String, usize>,
    /// Closing handshakes that completed cleanly.
    pub clean: usize,
    /// Closing handshakes that did not.
    pub unclean: usize,
    /// The cases' run times added up.
    pub duration_ms: u64,
    /// By close code the peer sent (`None`: no close frame).
    pub codes: BTreeMap<Option<u64>, usize>,
}

impl Counts {
    fn behavior(&self, k: &str) -> usize {
        self.behavior.get(k).copied().unwrap_or(0)
    }

    fn close(&self, k: &str) -> usize {
        self.close.get(k).copied().unwrap_or(0)
    }
}

/// A case where tether did worse than the baseline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Worse {
    /// The case.
    pub id: CaseId,
    /// The baseline's result.
    pub raw: CaseResult,
    /// tether's result; `None` when tether has none for this case.
    pub tether: Option<CaseResult>,
}

impl Worse {
    /// How the two results differ, as a group key: `raw → tether`.
    #[must_use]
    pub fn kind(&self) -> String {
        let tether = self.tether.as_ref().map_or_else(
            || "no result".to_owned(),
            |t| format!("{}/{}", t.behavior, t.behavior_close),
        );
        format!(
            "{}/{} → {tether}",
            self.raw.behavior, self.raw.behavior_close
        )
    }
}

/// Every case where `tether` did worse than `raw`, in case order.
#[must_use]
pub fn worse(raw: &PeerReport, tether: &PeerReport) -> Vec<Worse> {
    raw.cases
        .iter()
        .filter_map(|(id, r)| {
            let t = tether.cases.get(id);
            let is_worse = t.is_none_or(|t| {
                t.behavior_rank() < r.behavior_rank() || t.close_rank() < r.close_rank()
            });
            is_worse.then(|| Worse {
                id: id.clone(),
                raw: r.clone(),
                tether: t.cloned(),
            })
        })
        .collect()
}

/// A tether peer and its baseline (`client-tether` and `client-raw`).
#[derive(Clone, Debug)]
pub struct Pair<'a> {
    /// The baseline.
    pub raw: &'a PeerReport,
    /// tether.
    pub tether: &'a PeerReport,
    /// The cases where tether did worse.
    pub worse: Vec<Worse>,
}

/// Writes case ids compactly: runs that are consecutive in `order` (every case the
/// baseline ran) become `first–last`.
#[must_use]
pub fn compress(ids: &[CaseId], order: &[CaseId]) -> String {
    let position: BTreeMap<&CaseId, usize> =
        order.iter().enumerate().map(|(i, c)| (c, i)).collect();
    let mut runs: Vec<(CaseId, CaseId, usize)> = Vec::new();
    for id in ids {
        let pos = position.get(id).copied();
        if let (Some(last), Some(pos)) = (runs.last_mut(), pos)
            && last.2.checked_add(1) == Some(pos)
        {
            last.1 = id.clone();
            last.2 = pos;
            continue;
        }
        runs.push((id.clone(), id.clone(), pos.unwrap_or(usize::MAX - 1)));
    }
    runs.iter()
        .map(|(a, b, _)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}–{b}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The text report: counts per peer, then every case where tether did worse.
#[must_use]
pub fn render_text(peers: &[PeerReport], pairs: &[Pair<'_>]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "results (behavior):");
    let _ = write!(out, "{:<15} {:>5}", "peer", "cases");
    for k in BEHAVIORS.iter().chain(&[OTHER]) {
        let _ = write!(out, " {k:>13}");
    }
    let _ = writeln!(out, " {:>14} {:>8}", "worse than raw", "time");
    for p in peers {
        let c = p.counts();
        let _ = write!(out, "{:<15} {:>5}", p.name, c.cases);
        for k in BEHAVIORS.iter().chain(&[OTHER]) {
            let _ = write!(out, " {:>13}", c.behavior(k));
        }
        let _ = writeln!(
            out,
            " {:>14} {:>7.1}s",
            worse_of(pairs, &p.name),
            secs(c.duration_ms)
        );
    }
    let _ = writeln!(
        out,
        "\nclosing handshake (behaviorClose; completed = wasClean):"
    );
    let _ = write!(out, "{:<15}", "peer");
    for k in CLOSES.iter().chain(&[OTHER]) {
        let _ = write!(out, " {k:>16}");
    }
    let _ = writeln!(out, " {:>10} {:>14}", "completed", "not completed");
    for p in peers {
        let c = p.counts();
        let _ = write!(out, "{:<15}", p.name);
        for k in CLOSES.iter().chain(&[OTHER]) {
            let _ = write!(out, " {:>16}", c.close(k));
        }
        let _ = writeln!(out, " {:>10} {:>14}", c.clean, c.unclean);
    }
    let codes = all_codes(peers);
    let _ = writeln!(out, "\nclose code sent by the peer under test (cases):");
    let _ = write!(out, "{:<15}", "peer");
    for code in &codes {
        let _ = write!(out, " {:>5}", code_label(*code));
    }
    out.push('\n');
    for p in peers {
        let c = p.counts();
        let _ = write!(out, "{:<15}", p.name);
        for code in &codes {
            let _ = write!(out, " {:>5}", c.codes.get(code).copied().unwrap_or(0));
        }
        out.push('\n');
    }
    for pair in pairs {
        let _ = writeln!(
            out,
            "\n{} worse than {} on {} of {} cases{}",
            pair.tether.name,
            pair.raw.name,
            pair.worse.len(),
            pair.raw.cases.len(),
            if pair.worse.is_empty() { "" } else { ":" }
        );
        for w in &pair.worse {
            let tether = w
                .tether
                .as_ref()
                .map_or_else(|| "no result".to_owned(), CaseResult::brief);
            let _ = writeln!(
                out,
                "  {:<8} raw {:<40} tether {tether}",
                w.id.to_string(),
                w.raw.brief()
            );
        }
    }
    out
}

/// Every close code any of `peers` sent, in order, no close frame (`None`) first.
fn all_codes(peers: &[PeerReport]) -> Vec<Option<u64>> {
    let mut codes: Vec<Option<u64>> = peers
        .iter()
        .flat_map(|p| p.counts().codes.into_keys())
        .collect();
    codes.sort_unstable();
    codes.dedup();
    codes
}

fn code_label(code: Option<u64>) -> String {
    code.map_or_else(|| "none".to_owned(), |c| c.to_string())
}

/// The "worse than raw" cell of a peer: the count for a tether peer, `—` otherwise.
fn worse_of(pairs: &[Pair<'_>], name: &str) -> String {
    pairs
        .iter()
        .find(|p| p.tether.name == name)
        .map_or_else(|| "—".to_owned(), |p| p.worse.len().to_string())
}

fn secs(ms: u64) -> f64 {
    // Precision is irrelevant for a table of seconds; u64 → f64 is exact below 2^53 ms.
    #[allow(clippy::cast_precision_loss)]
    let s = ms as f64 / 1000.0;
    s
}

/// The Markdown report for `docs/conformance.md`: the same counts as tables, and the
/// cases where tether did worse grouped by how (`raw verdicts → tether verdicts`), each
/// group's cases in compressed ranges.
#[must_use]
pub fn render_markdown(peers: &[PeerReport], pairs: &[Pair<'_>]) -> String {
    let mut out = String::new();
    let _ = write!(out, "| peer | cases |");
    for k in BEHAVIORS.iter().chain(&[OTHER]) {
        let _ = write!(out, " {k} |");
    }
    let _ = writeln!(out, " worse than raw |");
    let _ = write!(out, "|---|--:|");
    for _ in BEHAVIORS.iter().chain(&[OTHER]) {
        out.push_str("--:|");
    }
    out.push_str("--:|\n");
    for p in peers {
        let c = p.counts();
        let _ = write!(out, "| {} | {} |", p.name, c.cases);
        for k in BEHAVIORS.iter().chain(&[OTHER]) {
            let _ = write!(out, " {} |", c.behavior(k));
        }
        let _ = writeln!(out, " {} |", worse_of(pairs, &p.name));
    }
    let _ = writeln!(
        out,
        "\nClosing handshake (`behaviorClose`; completed: `wasClean`, both sides sent a close frame):\n"
    );
    let _ = write!(out, "| peer |");
    for k in CLOSES.iter().chain(&[OTHER]) {
        let _ = write!(out, " {k} |");
    }
    let _ = write!(out, " completed | not completed |\n|---|");
    for _ in CLOSES.iter().chain(&[OTHER]) {
        out.push_str("--:|");
    }
    out.push_str("--:|--:|\n");
    for p in peers {
        let c = p.counts();
        let _ = write!(out, "| {} |", p.name);
        for k in CLOSES.iter().chain(&[OTHER]) {
            let _ = write!(out, " {} |", c.close(k));
        }
        let _ = writeln!(out, " {} | {} |", c.clean, c.unclean);
    }
    let codes = all_codes(peers);
    let _ = writeln!(
        out,
        "\nClose code sent by the peer under test (`remoteCloseCode`; none: no close frame), in cases:\n"
    );
    let _ = write!(out, "| peer |");
    for code in &codes {
        let _ = write!(out, " {} |", code_label(*code));
    }
    let _ = write!(out, "\n|---|");
    for _ in &codes {
        out.push_str("--:|");
    }
    out.push('\n');
    for p in peers {
        let c = p.counts();
        let _ = write!(out, "| {} |", p.name);
        for code in &codes {
            let _ = write!(out, " {} |", c.codes.get(code).copied().unwrap_or(0));
        }
        out.push('\n');
    }
    for pair in pairs {
        let _ = writeln!(
            out,
            "\n`{}` worse than `{}`: {} of {} cases.",
            pair.tether.name,
            pair.raw.name,
            pair.worse.len(),
            pair.raw.cases.len()
        );
        if pair.worse.is_empty() {
            continue;
        }
        let order: Vec<CaseId> = pair.raw.cases.keys().cloned().collect();
        let mut groups: BTreeMap<String, Vec<&Worse>> = BTreeMap::new();
        for w in &pair.worse {
            groups.entry(w.kind()).or_default().push(w);
        }
        let _ = writeln!(
            out,
            "\n| raw → tether (`behavior/behaviorClose`) | close code sent (raw → tether) | n | cases |"
        );
        let _ = writeln!(out, "|---|---|--:|---|");
        for (kind, ws) in groups {
            let ids: Vec<CaseId> = ws.iter().map(|w| w.id.clone()).collect();
            let _ = writeln!(
                out,
                "| {kind} | {} | {} | {} |",
                group_codes(&ws),
                ws.len(),
                compress(&ids, &order)
            );
        }
    }
    out
}

/// The distinct `raw → tether` close-code pairs of a group, e.g. `1002 → none`.
fn group_codes(ws: &[&Worse]) -> String {
    let show = |c: Option<u64>| c.map_or_else(|| "none".to_owned(), |c| c.to_string());
    let mut pairs: Vec<String> = ws
        .iter()
        .map(|w| {
            format!(
                "{} → {}",
                show(w.raw.remote_close_code),
                show(w.tether.as_ref().and_then(|t| t.remote_close_code))
            )
        })
        .collect();
    pairs.sort();
    pairs.dedup();
    pairs.join(", ")
}

/// The command line of `autobahn-report`: `NAME=DIR` per peer; every `X-tether` is
/// compared with `X-raw`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// Peers in the order given.
    pub peers: Vec<(String, PathBuf)>,
    /// Markdown instead of text.
    pub markdown: bool,
}

impl Request {
    /// Parses `[--markdown] NAME=DIR...`.
    ///
    /// # Errors
    ///
    /// A usage message.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Request, String> {
        let a = crate::args::Args::parse(args, &[], &["markdown"])?;
        let peers = a
            .positional
            .iter()
            .map(|p| {
                p.split_once('=')
                    .filter(|(n, d)| !n.is_empty() && !d.is_empty())
                    .map(|(n, d)| (n.to_owned(), PathBuf::from(d)))
                    .ok_or_else(|| format!("{p:?}: expected NAME=DIR"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if peers.is_empty() {
            return Err(
                "usage: autobahn-report [--markdown] NAME=DIR... (X-tether is compared with X-raw)"
                    .to_owned(),
            );
        }
        Ok(Request {
            peers,
            markdown: a.switch("markdown"),
        })
    }
}

/// Pairs every `X-tether` with its `X-raw` among `peers`.
#[must_use]
pub fn pairs(peers: &[PeerReport]) -> Vec<Pair<'_>> {
    peers
        .iter()
        .filter_map(|t| {
            let role = t.name.strip_suffix("-tether")?;
            let raw = peers.iter().find(|r| r.name == format!("{role}-raw"))?;
            Some(Pair {
                raw,
                tether: t,
                worse: worse(raw, t),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn result(b: &str, c: &str, code: Option<u64>) -> CaseResult {
        CaseResult {
            behavior: b.to_owned(),
            behavior_close: c.to_owned(),
            remote_close_code: code,
            was_clean: Some(c == "OK"),
            duration_ms: 1,
        }
    }

    fn peer(name: &str, cases: &[(&str, &str, &str)]) -> PeerReport {
        PeerReport {
            name: name.to_owned(),
            cases: cases
                .iter()
                .map(|(id, b, c)| (CaseId::parse(id).unwrap(), result(b, c, Some(1000))))
                .collect(),
        }
    }

    #[test]
    fn case_ids_sort_numerically() {
        let mut ids: Vec<CaseId> = ["1.2.10", "1.2.9", "10.1.1", "9.1.1", "2.1"]
            .iter()
            .map(|s| CaseId::parse(s).unwrap())
            .collect();
        ids.sort();
        let shown: Vec<String> = ids.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["1.2.9", "1.2.10", "2.1", "9.1.1", "10.1.1"]);
        assert!(CaseId::parse("1.x").is_err());
        assert_eq!(CaseId::parse("9.1.6").unwrap().major(), 9);
    }

    #[test]
    fn the_index_and_case_files_are_read() {
        let index = json!({"tether": {
            "1.1.1": {"behavior": "OK", "behaviorClose": "UNCLEAN", "remoteCloseCode": null,
                      "duration": 3, "reportfile": "tether_case_1_1_1.json"},
            "7.5.1": {"behavior": "OK", "behaviorClose": "WRONG CODE", "remoteCloseCode": 1006,
                      "duration": 4, "reportfile": "missing.json"}
        }});
        let report = PeerReport::from_index("client-tether", &index, |f| {
            (f == "tether_case_1_1_1.json").then(|| json!({"wasClean": false}))
        })
        .unwrap();
        let r = &report.cases[&CaseId::parse("1.1.1").unwrap()];
        assert_eq!(r.was_clean, Some(false));
        assert_eq!(r.remote_close_code, None);
        let r = &report.cases[&CaseId::parse("7.5.1").unwrap()];
        assert_eq!((r.was_clean, r.remote_close_code), (None, Some(1006)));
        let c = report.counts();
        assert_eq!((c.cases, c.clean, c.unclean, c.duration_ms), (2, 0, 1, 7));
        assert_eq!(c.close["UNCLEAN"], 1);
        assert_eq!(c.close["WRONG CODE"], 1);

        let bad = json!({"a": {"1.1": {"behaviorClose": "OK"}}});
        assert!(PeerReport::from_index("x", &bad, |_| None).is_err());
        assert!(PeerReport::from_index("x", &json!([]), |_| None).is_err());
    }

    #[test]
    fn unknown_verdicts_are_counted_as_other() {
        let p = peer("p", &[("1.1", "ERROR", "WHATEVER"), ("1.2", "OK", "OK")]);
        let c = p.counts();
        assert_eq!(c.behavior[OTHER], 1);
        assert_eq!(c.close[OTHER], 1);
        assert_eq!(c.behavior["OK"], 1);
    }

    #[test]
    fn worse_means_a_lower_verdict_or_a_missing_case() {
        let raw = peer(
            "client-raw",
            &[
                ("1.1", "OK", "OK"),
                ("1.2", "OK", "OK"),
                ("1.3", "NON-STRICT", "OK"),
                ("1.4", "OK", "UNCLEAN"),
                ("1.5", "OK", "OK"),
                ("1.6", "INFORMATIONAL", "INFORMATIONAL"),
                ("1.7", "OK", "OK"),
            ],
        );
        let tether = peer(
            "client-tether",
            &[
                ("1.1", "OK", "OK"),         // same
                ("1.2", "OK", "UNCLEAN"),    // worse close
                ("1.3", "OK", "OK"),         // better
                ("1.4", "OK", "WRONG CODE"), // better close
                ("1.5", "NON-STRICT", "OK"), // worse behaviour
                ("1.6", "NON-STRICT", "OK"), // equal rank
                ("9.9", "FAILED", "FAILED"), // not in the baseline: not compared
            ],
        );
        let w = worse(&raw, &tether);
        let ids: Vec<String> = w.iter().map(|w| w.id.to_string()).collect();
        assert_eq!(ids, ["1.2", "1.5", "1.7"]);
        assert_eq!(w[0].kind(), "OK/OK → OK/UNCLEAN");
        assert_eq!(w[2].kind(), "OK/OK → no result");
        let both = [raw.clone(), tether.clone()];
        let p = pairs(&both);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].raw.name, "client-raw");
        assert_eq!(p[0].worse.len(), 3);
    }

    #[test]
    fn ranges_follow_the_baselines_order() {
        let order: Vec<CaseId> = ["1.1", "1.2", "1.3", "2.1", "2.2", "3.1"]
            .iter()
            .map(|s| CaseId::parse(s).unwrap())
            .collect();
        let pick = |ids: &[&str]| -> Vec<CaseId> {
            ids.iter().map(|s| CaseId::parse(s).unwrap()).collect()
        };
        assert_eq!(
            compress(&pick(&["1.1", "1.2", "1.3", "2.2"]), &order),
            "1.1–1.3, 2.2"
        );
        assert_eq!(
            compress(&pick(&["1.3", "2.1", "3.1"]), &order),
            "1.3–2.1, 3.1"
        );
        assert_eq!(compress(&pick(&["7.1", "7.2"]), &order), "7.1, 7.2");
        assert_eq!(compress(&[], &order), "");
    }

    #[test]
    fn reports_show_counts_and_the_worse_cases() {
        let raw = peer("server-raw", &[("1.1", "OK", "OK"), ("1.2", "OK", "OK")]);
        let tether = peer(
            "server-tether",
            &[("1.1", "OK", "OK"), ("1.2", "FAILED", "OK")],
        );
        let peers = [tether, raw];
        let p = pairs(&peers);
        let text = render_text(&peers, &p);
        assert!(text.contains("server-tether worse than server-raw on 1 of 2 cases:"));
        assert!(text.contains("1.2      raw OK/OK (sent 1000)"));
        let md = render_markdown(&peers, &p);
        assert!(md.contains("| server-tether | 2 | 1 | 0 | 0 | 0 | 1 | 0 | 1 |"));
        assert!(md.contains("| server-raw | 2 | 2 | 0 | 0 | 0 | 0 | 0 | — |"));
        assert!(md.contains("| server-tether | 2 | 0 | 0 | 0 | 0 | 0 | 0 | 2 | 0 |"));
        assert!(md.contains("| OK/OK → FAILED/OK | 1000 → 1000 | 1 | 1.2 |"));
        assert!(md.contains("| server-tether | 2 |\n"), "{md}");
    }

    #[test]
    fn the_command_line_names_each_directory() {
        let r = Request::parse(["--markdown".to_owned(), "client-raw=/tmp/a".to_owned()]).unwrap();
        assert!(r.markdown);
        assert_eq!(
            r.peers,
            [("client-raw".to_owned(), PathBuf::from("/tmp/a"))]
        );
        assert!(Request::parse(["client-raw".to_owned()]).is_err());
        assert!(Request::parse(["=x".to_owned()]).is_err());
        assert!(Request::parse(Vec::<String>::new()).is_err());
    }
}
