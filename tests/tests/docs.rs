//! docs/simulation.md keeps up with the simulator: its fault table names every fault kind
//! and its oracle table every oracle. docs/protocols.md's complete OpenClaw program is the
//! example that builds (and that ./scripts/interop-openclaw.sh runs against the gateway).

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
