//! docs/simulation.md keeps up with the simulator: its fault table names every fault kind
//! and its oracle table every oracle.

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
fn the_oracle_table_lists_every_oracle_in_order() {
    assert_eq!(table_names("Oracles"), tether_sim::oracle::ORACLES);
}
