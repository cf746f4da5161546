//! MikroTik RouterOS (CHR): packages MikroTik does not publish (the
//! public CHR patch adds `option.npk`), `rc.local`-style scripts under
//! /rw run before the RouterOS loader, executables on the user disk.
//! The disk-level layout check (GPT or FAT where MikroTik ships MBR with
//! ext2/ext3) is [`LAYOUT`], applied by the audit runner.

use super::Guest;
use crate::finding::{Category, Confidence, Finding, Layer, Rule, Severity};

/// Foreign packages.
pub static FOREIGN_PACKAGE: Rule = Rule {
    id: "routeros-foreign-package",
    title: "RouterOS package MikroTik does not publish",
    severity: Severity::High,
    confidence: Confidence::Medium,
    category: Category::Integrity,
    layer: Layer::Packages,
    doc: "A .npk whose name is not one of MikroTik's packages. The public CHR patch installs \
          option.npk (top licence level and a `devel` user with a shell).",
};
/// rc scripts.
pub static RC_SCRIPT: Rule = Rule {
    id: "routeros-rc-script",
    title: "startup script under /rw",
    severity: Severity::High,
    confidence: Confidence::Medium,
    category: Category::Persistence,
    layer: Layer::Persistence,
    doc: "RouterOS has no rc.local; the public CHR patch adds /rw/disk/rc.local, run before the \
          RouterOS loader. Any such script is a persistence hook outside RouterOS's control.",
};
/// Executables on the user disk.
pub static DISK_EXECUTABLE: Rule = Rule {
    id: "routeros-disk-executable",
    title: "executable file on the RouterOS user disk",
    severity: Severity::Medium,
    confidence: Confidence::Low,
    category: Category::Content,
    layer: Layer::Content,
    doc:
        "Files with execute permission under /rw/disk (what RouterOS shows as its files): busybox, \
          keygen and loader replacements of patched images live there.",
};
/// Layout differs from MikroTik's.
pub static LAYOUT: Rule = Rule {
    id: "routeros-layout",
    title: "disk layout differs from MikroTik's CHR image",
    severity: Severity::Medium,
    confidence: Confidence::Medium,
    category: Category::Integrity,
    layer: Layer::Layout,
    doc: "MikroTik's chr-<ver>.img is MBR with an ext2 boot partition and an ext3 system partition. \
          The public CHR patch rebuilds it as GPT (with a copied hybrid MBR), a vfat boot partition \
          and ext4. A GPT table or a FAT partition on a RouterOS disk is that rebuild's tell.",
};

/// Every rule of this family.
pub static RULES: &[Rule] = &[FOREIGN_PACKAGE, RC_SCRIPT, DISK_EXECUTABLE, LAYOUT];

/// Runs the family on a RouterOS volume.
pub fn check(g: &Guest<'_, '_>) -> Vec<Finding> {
    let mut out = Vec::new();
    let Some(r) = &g.appliance.routeros else {
        return out;
    };
    for (path, name) in &r.packages {
        if !qvet_inspect::appliance::ROUTEROS_PACKAGES.contains(&name.as_str()) {
            out.push(
                g.at(
                    &FOREIGN_PACKAGE,
                    path,
                    format!("package {name} is not one of MikroTik's"),
                )
                .evidence("package", name.clone()),
            );
        }
    }
    for s in &r.rc_scripts {
        out.push(g.at(&RC_SCRIPT, s, format!("startup script {s}")));
    }
    for e in &r.disk_executables {
        if !r.rc_scripts.contains(e) {
            out.push(g.at(&DISK_EXECUTABLE, e, format!("executable {e}")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::{findings, ids, Fixture};

    #[test]
    fn vendor_packages_are_quiet_and_patch_is_not() {
        let mut f = Fixture::new();
        f.fs.mkdir("/var/pdb/system")
            .file("/var/pdb/routeros-7.11.2.npk", 0o644, b"x");
        assert!(findings(&f, check).is_empty());
        f.fs.file("/var/pdb/option-7.11.2.npk", 0o644, b"x")
            .file("/rw/disk/rc.local", 0o755, b"#!/bin/sh\n")
            .file("/rw/disk/busybox", 0o755, b"\x7fELF");
        let found = findings(&f, check);
        assert_eq!(
            ids(&found),
            [
                "routeros-foreign-package",
                "routeros-rc-script",
                "routeros-disk-executable"
            ]
        );
    }
}
