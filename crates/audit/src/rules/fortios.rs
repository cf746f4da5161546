//! FortiGate volumes: the paths published for COATHANGER and FortiGate
//! jailbreaks, hidden directories FortiOS does not create, and whether
//! `rootfs.gz` is readable (FortiOS 7.x encrypts it: said in coverage).

use qvet_inspect::appliance::Rootfs;

use super::Guest;
use crate::finding::{Category, Confidence, Finding, Layer, Rule, Severity};

/// Known-bad paths.
pub static IOC_PATH: Rule = Rule {
    id: "fortios-ioc-path",
    title: "file at a path published for FortiGate compromises",
    severity: Severity::Critical,
    confidence: Confidence::Medium,
    category: Category::Integrity,
    layer: Layer::Content,
    doc: "COATHANGER (JSCU-NL/NCSC-NL, 2024) drops authd, httpsd, newcli, preload.so and sh in a \
          hidden directory of /data2 and preloads /lib/liblog.so through ld.so.preload (critical); \
          public jailbreaks add busybox and gdbserver, which FortiOS does not ship (high). Inside \
          an unencrypted rootfs.gz these are read from its cpio listing.",
};
/// Hidden directories.
pub static HIDDEN_DIR: Rule = Rule {
    id: "fortios-hidden-directory",
    title: "hidden directory FortiOS does not create",
    severity: Severity::High,
    confidence: Confidence::Medium,
    category: Category::Content,
    layer: Layer::Content,
    doc: "At the root of a FortiGate volume FortiOS keeps .db, .db.x and .fgtsum; other hidden \
          directories are where COATHANGER hides (its checker flags them too).",
};
/// rootfs readability.
pub static ROOTFS: Rule = Rule {
    id: "fortios-rootfs",
    title: "FortiOS root filesystem archive",
    severity: Severity::Info,
    confidence: Confidence::High,
    category: Category::Provenance,
    layer: Layer::Content,
    doc:
        "rootfs.gz is a gzip'd cpio on older FortiOS (listed and checked for the indicator paths) \
          and encrypted on 7.x (its content is not audited: said in coverage). An unencrypted \
          rootfs on a release that ships it encrypted is a repack tell.",
};

/// Every rule of this family.
pub static RULES: &[Rule] = &[IOC_PATH, HIDDEN_DIR, ROOTFS];

/// Runs the family on a FortiGate volume.
pub fn check(g: &Guest<'_, '_>) -> Vec<Finding> {
    let mut out = Vec::new();
    let Some(f) = &g.appliance.forti else {
        return out;
    };
    for (path, why) in &f.ioc_paths {
        let high_only = ["busybox", "gdbserver"]
            .iter()
            .any(|n| path.ends_with(&format!("/{n}")));
        out.push(
            g.at(&IOC_PATH, path, format!("{path}: {why}"))
                .severity(if high_only {
                    Severity::High
                } else {
                    Severity::Critical
                })
                .evidence("why", *why),
        );
    }
    for d in &f.hidden_dirs {
        out.push(g.at(&HIDDEN_DIR, d, format!("hidden directory {d}")));
    }
    match &f.rootfs {
        Some(Rootfs::Cpio(entries, cut)) => out.push(
            g.at(
                &ROOTFS,
                "/rootfs.gz",
                format!(
                    "rootfs.gz is a readable cpio archive ({} entries)",
                    entries.len()
                ),
            )
            .evidence(
                "complete",
                if *cut {
                    "no (listing cut short)"
                } else {
                    "yes"
                },
            ),
        ),
        Some(Rootfs::Encrypted(why)) => out.push(
            g.at(
                &ROOTFS,
                "/rootfs.gz",
                format!("rootfs.gz not readable: {why}"),
            )
            .evidence("why", why.clone()),
        ),
        None => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::{findings, ids, Fixture};

    #[test]
    fn markers_alone_are_quiet_and_iocs_are_not() {
        let mut f = Fixture::new();
        f.fs.file("/flatkc", 0o644, b"k")
            .file("/rootfs.gz", 0o644, &[0x42; 512])
            .file("/.fgtsum", 0o644, b"s")
            .file("/.db/x", 0o644, b"x");
        let found = findings(&f, check);
        assert_eq!(ids(&found), ["fortios-rootfs"]);
        assert_eq!(found[0].severity, Severity::Info);
        f.fs.file("/.aa/authd", 0o755, b"x")
            .file("/etc/ld.so.preload", 0o644, b"/lib/liblog.so\n")
            .file("/bin/busybox", 0o755, b"x");
        let found = findings(&f, check);
        let got: Vec<_> = found
            .iter()
            .map(|x| (x.rule.id, x.path.clone().unwrap_or_default(), x.severity))
            .collect();
        assert!(
            got.contains(&("fortios-ioc-path", "/.aa/authd".into(), Severity::Critical)),
            "{got:?}"
        );
        assert!(got.contains(&(
            "fortios-ioc-path",
            "/etc/ld.so.preload".into(),
            Severity::Critical
        )));
        assert!(got.contains(&("fortios-ioc-path", "/bin/busybox".into(), Severity::High)));
        assert!(got.contains(&("fortios-hidden-directory", "/.aa".into(), Severity::High)));
    }
}
