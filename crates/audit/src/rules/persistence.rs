//! Persistence: everything that starts by itself. A packaged entry whose
//! file verifies is the vendor's (no finding); one no package owns (or in
//! an edited conffile) is named; without a package database, entries are
//! inventory unless what they run is risky (the content rules say so).
//! `ld.so.preload` is judged on its own: no distribution ships one.

use qvet_inspect::linux::{Ownership, Persist, PersistKind};

use super::Guest;
use crate::finding::{Category, Confidence, Finding, Layer, Rule, Severity};

/// `/etc/ld.so.preload` names a library.
pub static LD_PRELOAD: Rule = Rule {
    id: "persist-ld-preload",
    title: "library preloaded into every program",
    severity: Severity::Critical,
    confidence: Confidence::High,
    category: Category::Persistence,
    layer: Layer::Persistence,
    doc: "A library in /etc/ld.so.preload (or LD_PRELOAD in a unit or /etc/environment) is loaded into \
          every dynamically linked program, root's included: the standard userland rootkit hook \
          (COATHANGER on FortiGate, Jynx, Azazel). No distribution ships one.",
};
/// An autostart entry no verified package owns.
pub static ENTRY: Rule = Rule {
    id: "persist-entry",
    title: "autostart entry no verified package owns",
    severity: Severity::Medium,
    confidence: Confidence::Medium,
    category: Category::Persistence,
    layer: Layer::Persistence,
    doc: "A cron job, at job, systemd unit (system or user; enabled through .wants/.requires; \
          drop-ins), init script, rc.local, udev RUN+=, modprobe install command or motd script in a \
          file no package owns, or in a packaged file that was edited. Medium for scheduled and \
          boot-time execution that is enabled; low for shell start-up files, profile.d, motd \
          and disabled units. Where the image has no package database these are inventory (info) \
          and the coverage says ownership could not be decided.",
};
/// Extra library search paths.
pub static LD_SO_CONF: Rule = Rule {
    id: "persist-ld-so-conf",
    title: "library search path added",
    severity: Severity::Medium,
    confidence: Confidence::Medium,
    category: Category::Persistence,
    layer: Layer::Persistence,
    doc: "A directory added to the dynamic loader's path (/etc/ld.so.conf.d) by no package lets \
          libraries there shadow the system's.",
};

/// This family's rules.
pub static RULES: &[Rule] = &[LD_PRELOAD, ENTRY, LD_SO_CONF];

/// Meaningful lines of a text (no comments or blanks).
fn live_lines(text: &str) -> Vec<(usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
        .take(1000)
        .collect()
}

/// A shell start-up file identical to the distribution's skeleton.
fn skeleton_copy(g: &Guest<'_, '_>, p: &Persist) -> bool {
    let name = p.path.rsplit('/').next().unwrap_or_default();
    let candidates = [
        format!("/etc/skel/{name}"),
        format!("/usr/share/base-files/dot{name}"),
        format!("/usr/share/base-files/{}", name.trim_start_matches('.')),
    ];
    candidates
        .iter()
        .any(|c| g.tree.read(c.as_bytes(), 1 << 20).content() == Some(p.text.as_bytes()))
}

/// Runs the family.
pub fn check(g: &Guest<'_, '_>) -> Vec<Finding> {
    let mut out = Vec::new();
    let has_db = g.facts.packages.manager.is_some();
    for p in &g.facts.persistence {
        match p.kind {
            PersistKind::LdPreload => {
                for (n, line) in live_lines(&p.text) {
                    out.push(
                        g.at(&LD_PRELOAD, &p.path, format!("{} preloads {line}", p.path))
                            .line(Some(n))
                            .evidence("line", line)
                            .evidence("owner", p.owner.describe()),
                    );
                }
                continue;
            }
            PersistKind::Profile | PersistKind::Systemd if p.text.contains("LD_PRELOAD=") => {
                for (n, line) in live_lines(&p.text) {
                    if line.contains("LD_PRELOAD=") {
                        out.push(
                            g.at(&LD_PRELOAD, &p.path, format!("{} sets {line}", p.path))
                                .line(p.line.or(Some(n)))
                                .evidence("line", line),
                        );
                    }
                }
            }
            _ => {}
        }
        if p.verified {
            continue;
        }
        if p.kind == PersistKind::ShellRc && skeleton_copy(g, p) {
            continue;
        }
        let lines = match p.kind {
            // Whole files: only those with something in them count.
            PersistKind::CronScript
            | PersistKind::At
            | PersistKind::Init
            | PersistKind::RcLocal
            | PersistKind::Profile
            | PersistKind::ShellRc
            | PersistKind::Motd
            | PersistKind::LdSoConf => {
                let live = live_lines(&p.text);
                let body: Vec<&str> = live
                    .iter()
                    .map(|(_, l)| *l)
                    .filter(|l| !matches!(*l, "exit 0" | "exit" | ":"))
                    .collect();
                if body.is_empty() {
                    continue;
                }
                body.iter().take(5).copied().collect::<Vec<_>>().join(" ⏎ ")
            }
            _ => p.text.clone(),
        };
        let (rule, severity) = if !has_db {
            (&ENTRY, Severity::Info)
        } else if p.kind == PersistKind::LdSoConf {
            (&LD_SO_CONF, Severity::Medium)
        } else {
            let strong = match p.kind {
                PersistKind::Cron
                | PersistKind::CronScript
                | PersistKind::At
                | PersistKind::RcLocal
                | PersistKind::Udev
                | PersistKind::Modprobe => true,
                PersistKind::Systemd | PersistKind::Init => p.enabled != Some(false),
                _ => false,
            };
            (
                &ENTRY,
                if strong {
                    Severity::Medium
                } else {
                    Severity::Low
                },
            )
        };
        let why = match &p.owner {
            Ownership::Package(pkg) => format!("in {pkg}'s file, which was edited"),
            Ownership::Unowned => "no package owns it".to_string(),
            Ownership::Unknown => "ownership unknown (no package database)".to_string(),
        };
        let mut f = g
            .at(
                rule,
                &p.path,
                format!("{} {}: {}", p.kind.name(), p.path, why),
            )
            .line(p.line)
            .severity(severity)
            .evidence("kind", p.kind.name())
            .evidence("runs", lines)
            .evidence("owner", p.owner.describe());
        if let Some(e) = p.enabled {
            f = f.evidence("enabled", e.to_string());
        }
        if let Some(u) = &p.user {
            f = f.evidence("as-user", u);
        }
        if let Some(prog) = &p.program {
            // A program the image does not hold has no owner to look up.
            let owner = match prog.resolved {
                Some(_) => prog.owner.describe(),
                None => "not in the image".to_string(),
            };
            f = f.evidence("program", format!("{} ({owner})", prog.path));
        }
        out.push(f);
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::rules::testing::{findings, ids, Fixture};

    /// A guest with a (tiny) package database owning its cron files.
    fn base() -> Fixture {
        let mut f = Fixture::new();
        let crontab = b"17 * * * * root cd / && run-parts --report /etc/cron.hourly\n";
        let md5 = qvet_inspect::packages::hex(&{
            use md5::Digest;
            md5::Md5::digest(crontab)
        });
        f.fs.file(
            "/var/lib/dpkg/status",
            0o644,
            format!(
                "Package: cron\nStatus: install ok installed\nConffiles:\n /etc/crontab {md5}\n\n"
            )
            .as_bytes(),
        )
        .file(
            "/var/lib/dpkg/info/cron.list",
            0o644,
            b"/etc\n/etc/crontab\n/etc/ld.so.conf.d\n",
        )
        .file("/var/lib/dpkg/info/cron.md5sums", 0o644, b"")
        .file("/etc/crontab", 0o644, crontab)
        .file("/etc/skel/.bashrc", 0o644, b"# skel\nalias ll='ls -l'\n")
        .file("/etc/passwd", 0o644, b"root:x:0:0:root:/root:/bin/bash\n")
        .file("/root/.bashrc", 0o644, b"# skel\nalias ll='ls -l'\n")
        .file("/etc/rc.local", 0o755, b"#!/bin/sh\nexit 0\n")
        .file("/etc/ld.so.preload", 0o644, b"# nothing\n");
        f
    }

    #[test]
    fn packaged_and_skeleton_entries_are_clean() {
        assert_eq!(ids(&findings(&base(), check)), Vec::<&str>::new());
    }

    #[test]
    fn planted_entries_are_named() {
        let mut f = base();
        f.fs.file("/etc/ld.so.preload", 0o644, b"/lib/libhide.so\n")
            .file("/etc/cron.d/sync", 0o644, b"@reboot root /opt/sync\n")
            .file(
                "/etc/systemd/system/agent.service",
                0o644,
                b"[Service]\nExecStart=/opt/agent\n[Install]\nWantedBy=multi-user.target\n",
            )
            .symlink(
                "/etc/systemd/system/multi-user.target.wants/agent.service",
                "/etc/systemd/system/agent.service",
            )
            .file("/root/.bashrc", 0o644, b"# skel\nalias ls='ls --hide=x'\n")
            .file("/etc/ld.so.conf.d/x.conf", 0o644, b"/opt/lib\n");
        let got = findings(&f, check);
        let ids = ids(&got);
        assert_eq!(
            ids,
            vec![
                "persist-entry",
                "persist-ld-preload",
                "persist-ld-so-conf",
                "persist-entry",
                "persist-entry"
            ],
            "{got:#?}"
        );
        let preload = got
            .iter()
            .find(|f| f.rule.id == "persist-ld-preload")
            .unwrap();
        assert_eq!(preload.line, Some(1));
        let unit = got
            .iter()
            .find(|f| f.path.as_deref() == Some("/etc/systemd/system/agent.service"))
            .unwrap();
        assert_eq!(unit.severity, Severity::Medium);
        assert!(unit
            .evidence
            .iter()
            .any(|(k, v)| *k == "enabled" && v == "true"));
        let rc = got
            .iter()
            .find(|f| f.path.as_deref() == Some("/root/.bashrc"))
            .unwrap();
        assert_eq!(rc.severity, Severity::Low);
        // /opt/sync and /opt/agent are not in this image: said as such, not
        // as a missing package database (the image has one).
        let sync = got
            .iter()
            .find(|f| f.path.as_deref() == Some("/etc/cron.d/sync"))
            .unwrap();
        assert!(
            sync.evidence
                .iter()
                .any(|(k, v)| *k == "program" && v == "/opt/sync (not in the image)"),
            "{sync:#?}"
        );
    }

    #[test]
    fn without_a_package_database_entries_are_inventory() {
        let mut f = Fixture::new();
        f.fs.file("/etc/cron.d/sync", 0o644, b"@reboot root /opt/sync\n");
        let got = findings(&f, check);
        assert_eq!(ids(&got), vec!["persist-entry"]);
        assert_eq!(got[0].severity, Severity::Info);
    }
}
