//! Filesystem provenance from the ext superblock: mounted after it was
//! built, last mounted somewhere other than its place in the guest,
//! errors recorded, a journal that needed replaying; files changed after
//! the package manager last installed anything.

use qvet_guestfs::ext::SuperblockFacts;

use super::Guest;
use crate::finding::{Category, Confidence, Finding, Layer, Rule, Severity};

/// Mount history.
pub static MOUNTED: Rule = Rule {
    id: "fs-mount-history",
    title: "filesystem mount history",
    severity: Severity::Info,
    confidence: Confidence::High,
    category: Category::Provenance,
    layer: Layer::Filesystem,
    doc: "Mount count, last mount and write times and the creating OS from the ext superblock: a \
          filesystem mounted after mkfs was booted or edited. Reported as low when it was last \
          mounted on a path no guest mounts it at (`/mnt/x`, `/tmp/…`): someone mounted it on \
          another machine to edit it.",
};
/// Errors recorded.
pub static ERRORS: Rule = Rule {
    id: "fs-errors",
    title: "filesystem recorded errors or was not cleanly unmounted",
    severity: Severity::Low,
    confidence: Confidence::High,
    category: Category::Integrity,
    layer: Layer::Filesystem,
    doc:
        "The superblock state says `not clean` or `errors`: the image was copied while mounted, or \
          the kernel found damage. A journal that needed recovery was replayed in memory.",
};
/// Files changed after the last package installation.
pub static LATE_CHANGES: Rule = Rule {
    id: "fs-changed-after-install",
    title: "system files changed after the last package installation",
    severity: Severity::Info,
    confidence: Confidence::Low,
    category: Category::Provenance,
    layer: Layer::Filesystem,
    doc:
        "Files under /bin, /sbin, /usr, /lib and /etc whose ctime is later than the newest package \
          list (the last time dpkg or apk installed anything). Booted systems change some of /etc; \
          a binary changed after every installation is worth comparing with a reference.",
};

/// This family's rules.
pub static RULES: &[Rule] = &[MOUNTED, ERRORS, LATE_CHANGES];

/// Mount points a guest uses for its own filesystems.
fn ordinary_mount(path: &str) -> bool {
    path.is_empty()
        || matches!(
            path,
            "/" | "/boot"
                | "/boot/efi"
                | "/home"
                | "/var"
                | "/usr"
                | "/opt"
                | "/srv"
                | "/bootflash"
                | "/flash"
                | "/config"
        )
        || path.starts_with("/var/")
        || path.starts_with("/boot/")
        || path.starts_with("/sysroot")
}

/// Findings from an ext superblock.
pub fn superblock(partition: Option<u32>, sb: &SuperblockFacts) -> Vec<Finding> {
    let mut out = Vec::new();
    let at = format!(
        "partition {}",
        partition
            .map(|p| p.to_string())
            .unwrap_or_else(|| "whole disk".into())
    );
    let mut f = MOUNTED
        .finding(format!(
            "{} {}: mounted {} time(s) since the last check, last at '{}'",
            sb.kind, at, sb.mount_count, sb.last_mounted
        ))
        .partition(partition)
        .evidence("mount-count", sb.mount_count.to_string())
        .evidence("last-mounted", &sb.last_mounted)
        .evidence("creator-os", &sb.creator_os)
        .evidence("uuid", &sb.uuid)
        .evidence("label", &sb.label);
    for (k, v) in [
        ("created", sb.creation_time),
        ("last-mount", sb.last_mount_time),
        ("last-write", sb.last_write_time),
    ] {
        if let Some(t) = v {
            f = f.evidence(k, t.to_string());
        }
    }
    if !ordinary_mount(&sb.last_mounted) {
        f = f.severity(Severity::Low).confidence(Confidence::Medium);
    }
    out.push(f);
    if sb.state != "clean" {
        out.push(
            ERRORS
                .finding(format!("{} {at}: state '{}'", sb.kind, sb.state))
                .partition(partition)
                .evidence("state", &sb.state)
                .evidence(
                    "journal-replayed",
                    sb.journal
                        .as_ref()
                        .map(|j| format!("{j:?}"))
                        .unwrap_or_else(|| "no".into()),
                ),
        );
    }
    out
}

/// Files changed after the last package installation.
pub fn late_changes(g: &Guest<'_, '_>) -> Vec<Finding> {
    let Some(last) = g.facts.packages.last_install else {
        return Vec::new();
    };
    // A minute of slack: postinst scripts run right after the list is written.
    let cutoff = last.saturating_add(60);
    let dirs: &[&[u8]] = &[
        b"/bin/",
        b"/sbin/",
        b"/usr/bin/",
        b"/usr/sbin/",
        b"/usr/lib/",
        b"/lib/",
    ];
    let late: Vec<String> = g
        .tree
        .entries()
        .iter()
        .filter(|e| e.is_file() && dirs.iter().any(|d| e.path.starts_with(d)))
        .filter(|e| e.meta.ctime.unwrap_or(e.meta.mtime) > cutoff)
        .map(|e| qvet_inspect::tree::shown(&e.path))
        .collect();
    if late.is_empty() {
        return Vec::new();
    }
    vec![g
        .at(
            &LATE_CHANGES,
            late.first().map(String::as_str).unwrap_or("/"),
            format!(
                "{} system file(s) changed after the last package installation",
                late.len()
            ),
        )
        .evidence("last-install", last.to_string())
        .evidence("count", late.len().to_string())
        .evidence(
            "files",
            late.iter().take(10).cloned().collect::<Vec<_>>().join(", "),
        )]
}
