//! Against a reference: the exact file-level diff, each change classified.
//! Findings of the other rules on a changed path get the change attached
//! (done by the audit); findings on paths the reference holds unchanged
//! are the vendor's and drop to info. What remains here: changes no other
//! rule explained, and expected churn grouped as benign.

use crate::diff::{Change, ChangeKind};
use crate::finding::{Category, Confidence, Finding, Layer, Rule, Severity};

/// A change no other rule explains.
pub static CHANGE: Rule = Rule {
    id: "reference-change",
    title: "differs from the reference",
    severity: Severity::Low,
    confidence: Confidence::High,
    category: Category::Integrity,
    layer: Layer::Reference,
    doc: "A file added, removed or modified (content or metadata) against the reference, that no \
          other rule explains. Added or modified executables are medium; partition table, boot \
          sector, gap and unreadable-partition changes are medium too.",
};
/// Expected churn.
pub static CHURN: Rule = Rule {
    id: "reference-churn",
    title: "expected churn against the reference",
    severity: Severity::Info,
    confidence: Confidence::Medium,
    category: Category::Provenance,
    layer: Layer::Reference,
    doc:
        "Changes a booted system makes by itself (logs, caches, journals, machine-id, random seed, \
          DHCP leases, package lists, first-boot host keys), grouped as benign.",
};

/// This family's rules.
pub static RULES: &[Rule] = &[CHANGE, CHURN];

/// Paths a running system rewrites by itself.
pub fn is_churn(path: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "/var/log/",
        "/var/cache/",
        "/var/lib/apt/lists/",
        "/var/lib/dhcp/",
        "/var/lib/systemd/",
        "/var/tmp/systemd-",
        "/var/lib/cloud/",
        "/var/lib/logrotate/",
        "/var/lib/private/",
        "/run/",
        "/tmp/systemd-",
        "/var/spool/postfix/",
        "/var/lib/dbus/",
        "/var/lib/NetworkManager/",
        "/var/lib/chrony/",
        "/var/backups/",
        "/var/lib/ucf/",
    ];
    const FILES: &[&str] = &[
        "/etc/machine-id",
        "/etc/adjtime",
        "/etc/resolv.conf",
        "/etc/hostname",
        "/etc/mtab",
        "/etc/ld.so.cache",
        "/etc/.pwd.lock",
        "/var/lib/dpkg/lock",
        "/var/lib/dpkg/lock-frontend",
        "/root/.bash_history",
        "/root/.lesshst",
        "/root/.viminfo",
        "/var/log",
        "/etc/ssh/ssh_host_rsa_key",
        "/etc/ssh/ssh_host_rsa_key.pub",
        "/etc/ssh/ssh_host_ecdsa_key",
        "/etc/ssh/ssh_host_ecdsa_key.pub",
        "/etc/ssh/ssh_host_ed25519_key",
        "/etc/ssh/ssh_host_ed25519_key.pub",
    ];
    PREFIXES.iter().any(|p| path.starts_with(p)) || FILES.contains(&path)
}

/// A guest path for a change.
pub fn change_path(c: &Change) -> Option<String> {
    c.path
        .as_deref()
        .map(|p| String::from_utf8_lossy(p).into_owned())
}

/// The finding for a change no other rule explained (`None` for churn,
/// which [`churn`] groups).
pub fn unexplained(c: &Change, executable: bool) -> Option<Finding> {
    let path = change_path(c);
    if path.as_deref().is_some_and(is_churn) {
        return None;
    }
    let what = match c.kind {
        ChangeKind::Added => "added",
        ChangeKind::Removed => "removed",
        ChangeKind::Modified => "modified",
        ChangeKind::Metadata => "metadata changed",
        _ => c.kind.name(),
    };
    let severity = match c.kind {
        ChangeKind::PartitionTable
        | ChangeKind::BootSector
        | ChangeKind::Gap
        | ChangeKind::PartitionData => Severity::Medium,
        ChangeKind::Added | ChangeKind::Modified if executable => Severity::Medium,
        _ => Severity::Low,
    };
    let mut f = CHANGE
        .finding(format!(
            "{what}: {}",
            path.clone()
                .or_else(|| c.detail.clone())
                .unwrap_or_else(|| c.kind.name().into())
        ))
        .partition(c.partition)
        .severity(severity)
        .evidence("change", c.kind.name());
    if let Some(p) = path {
        f = f.path(p);
    }
    if let Some(d) = &c.detail {
        f = f.evidence("detail", d);
    }
    for fc in &c.fields {
        f = f.evidence("field", format!("{}: {} → {}", fc.name, fc.a, fc.b));
    }
    f.change = Some(c.clone());
    Some(f)
}

/// A metadata change that touches only times: ctime, crtime, atime (and
/// the link count) for any entry, mtime too for directories (`is_dir`),
/// whose mtime moves when an entry is added — and that entry is reported
/// itself. The bytes, owner and mode are the reference's; images rebuilt
/// from the same tree differ this way in every inode.
pub fn timestamps_only(c: &Change, is_dir: bool) -> bool {
    c.kind == ChangeKind::Metadata
        && !c.fields.is_empty()
        && c.fields.iter().all(|f| {
            matches!(f.name, "ctime" | "crtime" | "atime" | "nlink")
                || (is_dir && f.name == "mtime")
        })
}

/// One finding grouping every timestamps-only change.
pub fn timestamps(changes: &[&Change]) -> Option<Finding> {
    if changes.is_empty() {
        return None;
    }
    let paths: Vec<String> = changes.iter().filter_map(|c| change_path(c)).collect();
    Some(
        CHURN
            .finding(format!(
                "{} entr(y/ies) differ from the reference only in their times",
                changes.len()
            ))
            .path(paths.first().cloned().unwrap_or_default())
            .evidence("count", changes.len().to_string())
            .evidence(
                "files",
                paths
                    .iter()
                    .take(10)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
    )
}

/// One finding grouping every churn change.
pub fn churn(changes: &[&Change]) -> Option<Finding> {
    let paths: Vec<String> = changes
        .iter()
        .filter_map(|c| change_path(c))
        .filter(|p| is_churn(p))
        .collect();
    if paths.is_empty() {
        return None;
    }
    Some(
        CHURN
            .finding(format!(
                "{} change(s) a running system makes by itself",
                paths.len()
            ))
            .path(paths.first().cloned().unwrap_or_default())
            .evidence("count", paths.len().to_string())
            .evidence(
                "files",
                paths
                    .iter()
                    .take(20)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn churn_paths() {
        assert!(is_churn("/var/log/syslog"));
        assert!(is_churn("/etc/machine-id"));
        assert!(!is_churn("/etc/passwd"));
        assert!(!is_churn("/usr/bin/ls"));
    }
}
