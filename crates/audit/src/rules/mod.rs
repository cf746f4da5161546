//! Every audit rule, one module per family, each with its ids, its
//! documentation and its tests. Rules read facts (the container's check
//! report, the partition table, [`qvet_inspect::linux::LinuxFacts`]) and
//! return findings; they never read the image themselves.

use qvet_inspect::appliance::ApplianceFacts;
use qvet_inspect::linux::LinuxFacts;
use qvet_inspect::tree::Tree;

use crate::finding::{Finding, Rule};

pub mod accounts;
pub mod container;
pub mod content;
pub mod coverage;
pub mod eos;
pub mod filesystem;
pub mod fortios;
pub mod identity;
pub mod ios;
pub mod iosxe;
pub mod packages;
pub mod persistence;
pub mod reference;
pub mod remote;
pub mod routeros;
#[cfg(test)]
mod testing;
pub mod vyos;

/// What a guest rule sees: one filesystem, walked, and its facts.
pub struct Guest<'a, 't> {
    /// Partition number.
    pub partition: Option<u32>,
    /// The walk.
    pub tree: &'a Tree<'t>,
    /// The facts.
    pub facts: &'a LinuxFacts,
    /// What an appliance keeps here (OS, configurations, bootflash …).
    pub appliance: &'a ApplianceFacts,
}

impl Guest<'_, '_> {
    /// A finding of `rule` in this partition at `path`.
    pub fn at(&self, rule: &'static Rule, path: &str, title: impl Into<String>) -> Finding {
        rule.finding(title).partition(self.partition).path(path)
    }
}

/// Every rule, in report order.
pub fn all() -> Vec<&'static Rule> {
    let families: [&'static [Rule]; 16] = [
        identity::RULES,
        container::RULES,
        filesystem::RULES,
        packages::RULES,
        accounts::RULES,
        remote::RULES,
        persistence::RULES,
        content::RULES,
        ios::RULES,
        iosxe::RULES,
        eos::RULES,
        vyos::RULES,
        fortios::RULES,
        routeros::RULES,
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
    out.extend(ios::check(g));
    out.extend(iosxe::check(g));
    out.extend(eos::check(g));
    out.extend(vyos::check(g));
    out.extend(fortios::check(g));
    out.extend(routeros::check(g));
    out
}

/// Gathers every fact of a walked filesystem: the Linux facts, then the
/// OS identification and the appliance facts.
pub fn gather(tree: &Tree<'_>, partition: Option<u32>) -> (LinuxFacts, ApplianceFacts) {
    let facts = qvet_inspect::linux::gather(tree);
    let packages = facts.packages.manager.map(|m| (m, facts.packages.count));
    let os = qvet_inspect::os::identify(tree, partition, packages);
    let appliance = qvet_inspect::appliance::gather(tree, os);
    (facts, appliance)
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
