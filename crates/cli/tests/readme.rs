//! The README's rules tables list every audit rule `qvet audit --explain
//! list` knows, with its default severity, so the documentation cannot fall
//! behind the code.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::*;

#[test]
fn readme_lists_every_rule_with_its_severity() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let r = qvet(&["audit", "--explain", "list"]);
    assert_success(&r);
    let mut missing = Vec::new();
    for line in r.stdout_str().lines() {
        let mut w = line.split_whitespace();
        let (Some(id), Some(severity)) = (w.next(), w.next()) else {
            continue;
        };
        if !readme.contains(&format!("| `{id}` | {severity} |")) {
            missing.push(format!("{id} ({severity})"));
        }
    }
    assert!(r.stdout_str().lines().count() > 90, "{}", r.describe());
    assert!(missing.is_empty(), "README rules tables lack: {missing:?}");
}
