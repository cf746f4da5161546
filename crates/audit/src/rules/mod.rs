//! Every audit rule, one module per family, each with its ids, its
//! documentation and its tests. Rules read facts (the container's check
//! report, the partition table, [`qvet_inspect::linux::LinuxFacts`]) and
//! return findings; they never read the image themselves.

use qvet_inspect::linux::LinuxFacts;
use qvet_inspect::tree::Tree;

use crate::finding::{Finding, Rule};

pub mod accounts;
pub mod container;
pub mod content;
pub mod coverage;
pub mod filesystem;
pub mod identity;
pub mod packages;
pub mod persistence;
pub mod reference;
pub mod remote;
#[cfg(test)]
mod testing;

/// What a guest rule sees: one filesystem, walked, and its facts.
pub struct Guest<'a, 't> {
    /// Partition number.
    pub partition: Option<u32>,
    /// The walk.
    pub tree: &'a Tree<'t>,
    /// The facts.
    pub facts: &'a LinuxFacts,
}

impl Guest<'_, '_> {
    /// A finding of `rule` in this partition at `path`.
    pub fn at(&self, rule: &'static Rule, path: &str, title: impl Into<String>) -> Finding {
        rule.finding(title).partition(self.partition).path(path)
    }
}

/// Every rule, in report order.
pub fn all() -> Vec<&'static Rule> {
    let families: [&'static [Rule]; 10] = [
        identity::RULES,
        container::RULES,
        filesystem::RULES,
        packages::RULES,
        accounts::RULES,
        remote::RULES,
        persistence::RULES,
        content::RULES,
        reference::RULES,
        coverage::RULES,
    ];
    families.iter().flat_map(|f| f.iter()).collect()
}

/// The rule with id `id`.
pub fn find(id: &str) -> Option<&'static Rule> {
    all().into_iter().find(|r| r.id == id)
}

/// Runs every guest rule family on one filesystem.
pub fn guest(g: &Guest<'_, '_>) -> Vec<Finding> {
    let mut out = Vec::new();
    out.extend(packages::check(g));
    out.extend(accounts::check(g));
    out.extend(remote::check(g));
    out.extend(persistence::check(g));
    out.extend(content::check(g));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn rule_ids_are_unique_and_documented() {
        let mut seen = HashSet::new();
        for r in all() {
            assert!(seen.insert(r.id), "duplicate rule id {}", r.id);
            assert!(r.doc.len() > 40, "rule {} lacks documentation", r.id);
            assert!(
                r.id.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                "rule id {} is not kebab-case",
                r.id
            );
        }
        assert!(find("account-uid0").is_some());
    }
}
