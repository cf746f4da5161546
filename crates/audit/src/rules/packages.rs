//! Package integrity: every packaged file against its package's recorded
//! digest (dpkg md5sums and conffiles, apk sha1), missing files, and
//! executables in package territory that no package owns.

use std::collections::BTreeMap;

use qvet_inspect::linux::Ownership;
use qvet_inspect::tree::shown;

use super::Guest;
use crate::finding::{Category, Confidence, Finding, Layer, Rule, Severity};

/// A packaged file that fails its manifest.
pub static FILE_MODIFIED: Rule = Rule {
    id: "package-file-modified",
    title: "packaged file differs from its package's digest",
    severity: Severity::Critical,
    confidence: Confidence::High,
    category: Category::Integrity,
    layer: Layer::Packages,
    doc: "The file's md5 (dpkg, /var/lib/dpkg/info/PKG.md5sums) or sha1 (apk) is not the one its \
          package recorded: the binary or library was replaced or patched in place, even when size, \
          mode, owner and mtime were kept. This is how a trojaned sshd or libc is caught without a \
          reference. A repacker who also rewrote the md5sums line is only caught against a \
          reference or baseline.",
};
/// A conffile edited.
pub static CONFFILE_MODIFIED: Rule = Rule {
    id: "package-conffile-modified",
    title: "configuration file changed since its package installed it",
    severity: Severity::Low,
    confidence: Confidence::High,
    category: Category::Integrity,
    layer: Layer::Packages,
    doc: "A conffile whose md5 differs from the one in /var/lib/dpkg/status was edited after \
          installation (as `dpkg --verify` reports `??5?????? c`). Administrators edit these; the \
          other rules judge what the new content says.",
};
/// Packaged files missing.
pub static FILE_MISSING: Rule = Rule {
    id: "package-file-missing",
    title: "files listed by a package are missing",
    severity: Severity::Low,
    confidence: Confidence::High,
    category: Category::Integrity,
    layer: Layer::Packages,
    doc:
        "Files a package installed are gone (dpkg's path-exclude filters are honoured). Minimised \
          images delete documentation; a missing binary or security module is worth a look.",
};
/// Executables no package owns in package territory.
pub static UNOWNED_EXECUTABLE: Rule = Rule {
    id: "package-unowned-executable",
    title: "executable in a system directory that no package owns",
    severity: Severity::Medium,
    confidence: Confidence::Medium,
    category: Category::Integrity,
    layer: Layer::Packages,
    doc: "Every file in /bin, /sbin, /usr/bin, /usr/sbin, /usr/lib*/…/security and the systemd \
          directories comes from a package on a distribution with a package database. An \
          executable there that no package lists was added by hand (files in /usr/local are \
          reported as low).",
};
/// Packages recording no digests.
pub static NO_DIGESTS: Rule = Rule {
    id: "package-no-digests",
    title: "installed packages with no recorded digests",
    severity: Severity::Info,
    confidence: Confidence::High,
    category: Category::Coverage,
    layer: Layer::Packages,
    doc: "Packages without an md5sums file (`debsums -l`) cannot be verified; their files are \
          covered only by a reference or baseline.",
};

/// This family's rules.
pub static RULES: &[Rule] = &[
    FILE_MODIFIED,
    CONFFILE_MODIFIED,
    FILE_MISSING,
    UNOWNED_EXECUTABLE,
    NO_DIGESTS,
];

/// Directories whose every file a package owns on a packaged system.
const PACKAGE_DIRS: &[&str] = &[
    "/bin/",
    "/sbin/",
    "/usr/bin/",
    "/usr/sbin/",
    "/usr/libexec/",
    "/lib/systemd/system/",
    "/usr/lib/systemd/system/",
    "/lib/x86_64-linux-gnu/security/",
    "/usr/lib/x86_64-linux-gnu/security/",
    "/lib/security/",
    "/usr/lib/security/",
];
/// Directories for local additions.
const LOCAL_DIRS: &[&str] = &[
    "/usr/local/bin/",
    "/usr/local/sbin/",
    "/usr/local/lib/systemd/",
];

/// Runs the family.
pub fn check(g: &Guest<'_, '_>) -> Vec<Finding> {
    let p = &g.facts.packages;
    let Some(manager) = p.manager else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for m in &p.mismatches {
        let rule = if m.conffile {
            &CONFFILE_MODIFIED
        } else {
            &FILE_MODIFIED
        };
        let title = if m.conffile {
            format!("conffile {} of {} was edited", shown(&m.path), m.package)
        } else {
            format!(
                "{} of package {} does not match its {}",
                shown(&m.path),
                m.package,
                m.algorithm
            )
        };
        let mut f = g
            .at(rule, &shown(&m.found_at), title)
            .evidence("package", &m.package)
            .evidence("expected", format!("{}:{}", m.algorithm, m.expected))
            .evidence("actual", format!("{}:{}", m.algorithm, m.actual))
            .evidence("manifest", &m.source);
        if m.found_at != m.path {
            f = f.evidence("listed-as", shown(&m.path));
        }
        out.push(f);
    }
    let mut missing: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for m in &p.missing {
        missing.entry(&m.package).or_default().push(shown(&m.path));
    }
    for (package, paths) in missing {
        let sample: Vec<&str> = paths.iter().take(10).map(String::as_str).collect();
        let first = paths.first().cloned().unwrap_or_default();
        out.push(
            g.at(
                &FILE_MISSING,
                &first,
                format!("{} file(s) of {package} are missing", paths.len()),
            )
            .evidence("package", package)
            .evidence("count", paths.len().to_string())
            .evidence("files", sample.join(", ")),
        );
    }
    if !p.without_digests.is_empty() {
        out.push(
            g.at(
                &NO_DIGESTS,
                "/var/lib/dpkg/info",
                format!("{} package(s) record no digests", p.without_digests.len()),
            )
            .evidence("manager", manager.name())
            .evidence(
                "packages",
                p.without_digests
                    .iter()
                    .take(20)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
        );
    }
    for e in g.tree.entries() {
        if !e.is_file() || e.perm() & 0o111 == 0 {
            continue;
        }
        let path = shown(&e.path);
        let local = LOCAL_DIRS.iter().any(|d| path.starts_with(d));
        if !local && !PACKAGE_DIRS.iter().any(|d| path.starts_with(d)) {
            continue;
        }
        if let Ownership::Unowned = g.facts.owner(g.tree, &e.path) {
            let sev = if local {
                Severity::Low
            } else {
                Severity::Medium
            };
            out.push(
                g.at(
                    &UNOWNED_EXECUTABLE,
                    &path,
                    format!("{path} belongs to no {} package", manager.name()),
                )
                .severity(sev)
                .evidence("mode", format!("{:o}", e.perm()))
                .evidence("size", e.meta.size.to_string())
                .evidence("mtime", e.meta.mtime.to_string()),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::rules::testing::{findings, ids, Fixture};

    // md5("hello\n") and md5("conf\n").
    const HELLO_MD5: &str = "b1946ac92492d2347c6235b4d2611184";
    const CONF_MD5: &str = "4f9d3d8f0d8c4a2cb3c2f4e0f2a9c1aa";

    fn base(hello: &[u8], conf_md5: &str) -> Fixture {
        let mut f = Fixture::new();
        let status = format!(
            "Package: hello\nStatus: install ok installed\nVersion: 1\nConffiles:\n /etc/hello.conf {conf_md5}\n\n"
        );
        f.fs.file("/var/lib/dpkg/status", 0o644, status.as_bytes())
            .file(
                "/var/lib/dpkg/info/hello.md5sums",
                0o644,
                format!("{HELLO_MD5}  usr/bin/hello\n").as_bytes(),
            )
            .file(
                "/var/lib/dpkg/info/hello.list",
                0o644,
                b"/.\n/usr\n/usr/bin\n/usr/bin/hello\n/etc/hello.conf\n",
            )
            .file("/usr/bin/hello", 0o755, hello)
            .file("/etc/hello.conf", 0o644, b"conf\n")
            .symlink("/bin", "usr/bin");
        f
    }

    #[test]
    fn verified_packages_are_clean() {
        let conf = qvet_inspect::packages::hex(&{
            use md5::Digest;
            md5::Md5::digest(b"conf\n")
        });
        assert_ne!(conf, CONF_MD5);
        assert!(findings(&base(b"hello\n", &conf), check).is_empty());
    }

    #[test]
    fn patched_binary_edited_conffile_and_unowned_executable() {
        let mut f = base(b"hellO\n", CONF_MD5);
        f.fs.file("/usr/sbin/backdoor", 0o755, b"\x7fELF").file(
            "/usr/local/bin/tool",
            0o755,
            b"#!/bin/sh\n",
        );
        let got = findings(&f, check);
        assert_eq!(
            ids(&got),
            vec![
                "package-file-modified",
                "package-conffile-modified",
                "package-unowned-executable",
                "package-unowned-executable"
            ]
        );
        let m = &got[0];
        assert_eq!(m.path.as_deref(), Some("/usr/bin/hello"));
        assert!(m
            .evidence
            .iter()
            .any(|(k, v)| *k == "expected" && v.ends_with(HELLO_MD5)));
        assert_eq!(got[2].path.as_deref(), Some("/usr/local/bin/tool"));
        assert_eq!(got[2].severity, Severity::Low);
        assert_eq!(got[3].path.as_deref(), Some("/usr/sbin/backdoor"));
        assert_eq!(got[3].severity, Severity::Medium);
    }

    #[test]
    fn missing_files_grouped_per_package() {
        let mut f = Fixture::new();
        f.fs.file(
            "/var/lib/dpkg/status",
            0o644,
            b"Package: gone\nStatus: install ok installed\n\n",
        )
        .file(
            "/var/lib/dpkg/info/gone.md5sums",
            0o644,
            format!("{HELLO_MD5}  usr/bin/a\n{HELLO_MD5}  usr/share/doc/gone/README\n").as_bytes(),
        )
        .file(
            "/etc/dpkg/dpkg.cfg.d/excludes",
            0o644,
            b"path-exclude=/usr/share/doc/*\n",
        );
        let got = findings(&f, check);
        assert_eq!(ids(&got), vec!["package-file-missing"]);
        assert!(
            got[0]
                .evidence
                .iter()
                .any(|(k, v)| *k == "count" && v == "1"),
            "path-exclude honoured"
        );
    }
}
