//! Examples the guides show, kept in step with the files that compile and run them: a
//! file marks its example with `// --- example start ---` and `// --- example end ---`,
//! and the guide shows it in the fenced block after an HTML comment naming the file.

/// The example between the markers of `file` (a test's own source, `include_str!`-ed).
///
/// # Panics
///
/// When a marker is missing: the test that calls this is the check.
#[must_use]
pub fn example(file: &str) -> &str {
    let (start, end) = ("// --- example start ---\n", "// --- example end ---\n");
    let from = file.find(start).expect("start marker") + start.len();
    let to = file.find(end).expect("end marker");
    &file[from..to]
}

/// The body of the fenced `rust` block that follows `marker` in `guide`.
///
/// # Panics
///
/// When the marker or the block is missing.
#[must_use]
pub fn fenced_after<'a>(guide: &'a str, marker: &str) -> &'a str {
    let from = guide.find(marker).expect("the marker is in the guide") + marker.len();
    let rest = &guide[from..];
    let open = rest
        .find("```rust\n")
        .expect("a rust block follows the marker")
        + 8;
    let len = rest[open..].find("```\n").expect("the block is closed");
    &rest[open..open + len]
}
