//! Test support: a guest built in memory, its facts gathered, one rule
//! family run on it.

use qvet_inspect::memfs::MemFs;
use qvet_inspect::tree::Tree;

use super::Guest;
use crate::finding::Finding;

/// A guest under construction.
pub struct Fixture {
    /// Its files.
    pub fs: MemFs,
}

impl Fixture {
    /// An empty guest.
    pub fn new() -> Self {
        Self { fs: MemFs::new() }
    }
}

/// Runs `family` on the fixture's guest.
pub fn findings(f: &Fixture, family: fn(&Guest<'_, '_>) -> Vec<Finding>) -> Vec<Finding> {
    let tree = match Tree::walk(&f.fs) {
        Ok(t) => t,
        Err(e) => return vec![crate::rules::coverage::UNREADABLE.finding(e.to_string())],
    };
    let (facts, appliance) = crate::rules::gather(&tree, Some(1));
    family(&Guest {
        partition: Some(1),
        tree: &tree,
        facts: &facts,
        appliance: &appliance,
    })
}

/// The rule ids of `findings`, in order.
pub fn ids(findings: &[Finding]) -> Vec<&'static str> {
    findings.iter().map(|f| f.rule.id).collect()
}
