//! docs/simulation.md keeps up with the simulator: its fault table names every fault kind
//! and its oracle table every oracle. docs/protocols.md's complete OpenClaw program is the
//! example that builds (and that ./scripts/interop-openclaw.sh runs against the gateway).
//! docs/features.md names, for every behaviour, a test that exists.

const GUIDE: &str = include_str!("../../docs/simulation.md");

/// The first column of each row of the table under the heading `section`.
fn table_names(section: &str) -> Vec<&'static str> {
    let heading = format!("\n## {section}\n");
    let from = GUIDE.find(&heading).expect("the section exists") + heading.len();
    let body = &GUIDE[from..];
    let body = &body[..body.find("\n## ").unwrap_or(body.len())];
    body.lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`').map(|(name, _)| name))
        .collect()
}

#[test]
fn the_fault_table_lists_every_fault_kind_in_order() {
    assert_eq!(table_names("Faults"), tether_sim::Fault::NAMES);
}

#[test]
fn the_wire_fault_table_lists_every_wire_fault_in_order() {
    assert_eq!(
        table_names("The wire mode"),
        tether_sim::wire_peer::WireFault::NAMES
    );
}

/// The own-protocol campaign of `docs/simulation.md` is `sim/tests/own_campaign.rs`'s
/// example, and fits 40 non-blank lines.
#[test]
fn the_guide_shows_the_own_campaign_example_in_at_most_40_lines() {
    let example = tether_tests::guide::example(include_str!("../../sim/tests/own_campaign.rs"));
    let shown = tether_tests::guide::fenced_after(GUIDE, "<!-- sim/tests/own_campaign.rs -->");
    assert!(
        shown == example,
        "docs/simulation.md and sim/tests/own_campaign.rs disagree: copy the example between \
         the markers into the guide (or the other way round)"
    );
    let lines = example.lines().filter(|l| !l.trim().is_empty()).count();
    assert!(lines <= 40, "the example has {lines} non-blank lines");
}

#[test]
fn the_oracle_table_lists_every_oracle_in_order() {
    assert_eq!(table_names("Oracles"), tether_sim::oracle::ORACLES);
}

const PROTOCOLS: &str = include_str!("../../docs/protocols.md");
const OPENCLAW_EXAMPLE: &str = include_str!("../../transport-tokio/examples/openclaw.rs");

/// The body of the first ```` ```rust ```` block after the heading `heading`.
fn code_after(doc: &'static str, heading: &str) -> &'static str {
    let from = doc.find(heading).expect("the heading exists") + heading.len();
    let rest = &doc[from..];
    let open = rest.find("```rust").expect("a rust block follows");
    let body = &rest[open..];
    let body = &body[body.find('\n').expect("a fence line") + 1..];
    &body[..body.find("\n```\n").expect("a closing fence") + 1]
}

#[test]
fn the_openclaw_guide_shows_the_example_verbatim() {
    let shown = code_after(PROTOCOLS, "\n### A complete program\n");
    assert!(
        shown == OPENCLAW_EXAMPLE,
        "docs/protocols.md's complete program differs from transport-tokio/examples/openclaw.rs; \
         copy the file into the block"
    );
}

const FEATURES: &str = include_str!("../../docs/features.md");

/// Every `.rs` file of the workspace's crates, as text.
fn workspace_sources() -> Vec<String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut out = Vec::new();
    let mut dirs: Vec<std::path::PathBuf> = [
        "core",
        "driver",
        "sim",
        "tests",
        "transport-tokio",
        "transport-smol",
        "cat",
    ]
    .iter()
    .map(|d| root.join(d))
    .collect();
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs")
                && let Ok(text) = std::fs::read_to_string(&path)
            {
                out.push(text);
            }
        }
    }
    out
}

/// docs/features.md names, for every behaviour, the test that proves it: each of those
/// tests exists, so renaming or deleting one fails here until the page follows.
#[test]
fn every_test_the_feature_list_names_exists() {
    let sources = workspace_sources();
    let mut named = 0;
    for line in FEATURES.lines().filter(|l| l.starts_with('|')) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // `| # | behaviour | test | level |` or `| behaviour | test | level |`.
        let Some(tests) = cells.get(cells.len().saturating_sub(3)) else {
            continue;
        };
        for name in tests.split('`').skip(1).step_by(2) {
            if !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                continue;
            }
            named += 1;
            // A test declared by hand, or one of the pair `on_both_runtimes!` declares
            // (its names follow the scenario, each on a line of its own).
            let decl = [
                format!("fn {name}("),
                format!("fn {name}<"),
                format!("    {name},\n"),
                format!("    {name}\n);"),
            ];
            assert!(
                sources
                    .iter()
                    .any(|s| decl.iter().any(|d| s.contains(d.as_str()))),
                "docs/features.md names `{name}`, which no test defines"
            );
        }
    }
    assert!(
        named >= 80,
        "only {named} tests named: is the table still parsed?"
    );
}
