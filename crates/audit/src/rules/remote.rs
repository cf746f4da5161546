//! Remote access: authorized keys wherever the effective sshd
//! configuration reads them, risky sshd settings, host keys shipped.

use super::Guest;
use crate::finding::{Category, Confidence, Finding, Layer, Rule, Severity};

/// A key that can log in.
pub static AUTHORIZED_KEY: Rule = Rule {
    id: "ssh-authorized-key",
    title: "SSH key authorized to log in",
    severity: Severity::High,
    confidence: Confidence::High,
    category: Category::Key,
    layer: Layer::Remote,
    doc:
        "Each key in an authorized_keys file sshd reads (every account's AuthorizedKeysFile, with \
          %h/%u/%% expanded, Include and Match followed) is a way in for whoever holds the private \
          key. High for root and uid-0 accounts, medium for others; key files no account's \
          configuration names are low. Allow your own keys by fingerprint with `[allow] keys`.",
};
/// `AuthorizedKeysCommand` runs a program to find keys.
pub static KEYS_COMMAND: Rule = Rule {
    id: "ssh-authorized-keys-command",
    title: "sshd asks a program for authorized keys",
    severity: Severity::Medium,
    confidence: Confidence::High,
    category: Category::Key,
    layer: Layer::Remote,
    doc: "AuthorizedKeysCommand makes sshd run a program, as AuthorizedKeysCommandUser, whose output \
          is trusted as keys: whoever controls the program controls logins. Legitimate with LDAP or \
          cloud key services; check what it runs.",
};
/// Risky sshd settings.
pub static SSHD_SETTING: Rule = Rule {
    id: "sshd-risky-setting",
    title: "sshd setting that weakens access control",
    severity: Severity::Medium,
    confidence: Confidence::High,
    category: Category::Exposure,
    layer: Layer::Remote,
    doc: "PermitRootLogin yes (password logins as root), PermitEmptyPasswords yes (high), \
          StrictModes no (key files anyone can write are trusted), PermitUserEnvironment yes \
          (LD_PRELOAD through ~/.ssh/environment), GatewayPorts yes; the first value sshd reads \
          wins, and Match blocks are reported with their criteria.",
};
/// Host keys shipped in the image.
pub static HOST_KEYS: Rule = Rule {
    id: "ssh-host-keys-shipped",
    title: "SSH host keys shipped inside the image",
    severity: Severity::Low,
    confidence: Confidence::High,
    category: Category::Provenance,
    layer: Layer::Remote,
    doc: "Private host keys in /etc/ssh mean every copy of the image shares them, so one copy's \
          owner can impersonate all others. Many genuine appliance and cloud images ship them: a \
          provenance fact, not tampering.",
};
/// A private user key inside a home.
pub static PRIVATE_KEY: Rule = Rule {
    id: "ssh-private-key",
    title: "private SSH key left in a home directory",
    severity: Severity::Low,
    confidence: Confidence::High,
    category: Category::Key,
    layer: Layer::Remote,
    doc: "A private key in ~/.ssh (id_rsa, id_ed25519 …) lets the image log in elsewhere; images \
          that circulate should not carry their builder's credentials.",
};

/// This family's rules.
pub static RULES: &[Rule] = &[
    AUTHORIZED_KEY,
    KEYS_COMMAND,
    SSHD_SETTING,
    HOST_KEYS,
    PRIVATE_KEY,
];

/// Runs the family.
pub fn check(g: &Guest<'_, '_>) -> Vec<Finding> {
    let mut out = Vec::new();
    let root_like =
        |user: &str| user == "root" || g.facts.users().iter().any(|u| u.name == user && u.uid == 0);
    for kf in &g.facts.key_files {
        for k in &kf.keys.keys {
            let fp = k
                .fingerprint
                .clone()
                .unwrap_or_else(|| "(undecodable key)".into());
            let who = if kf.users.is_empty() {
                "no account (sshd does not read this file)".to_string()
            } else {
                kf.users.join(", ")
            };
            let severity = if kf.users.is_empty() {
                Severity::Low
            } else if kf.users.iter().any(|u| root_like(u)) {
                Severity::High
            } else {
                Severity::Medium
            };
            let mut f = g
                .at(
                    &AUTHORIZED_KEY,
                    &kf.path,
                    format!("{} key {} lets {} log in", k.key_type, fp, who),
                )
                .line(Some(k.line))
                .severity(severity)
                .evidence("type", &k.key_type)
                .evidence("fingerprint", &fp)
                .evidence("comment", &k.comment)
                .evidence("accounts", who);
            if let Some(bits) = k.bits {
                f = f.evidence("bits", bits.to_string());
            }
            if !k.options.is_empty() {
                f = f.evidence("options", k.options.join(","));
            }
            if let Some(u) = kf.users.first() {
                f = f.user(u);
            }
            if let Some(fp) = &k.fingerprint {
                f = f.key(fp);
            }
            out.push(f);
        }
    }
    if let Some(cfg) = &g.facts.sshd {
        if let Some(s) = cfg
            .get("authorizedkeyscommand")
            .filter(|s| !s.value.eq_ignore_ascii_case("none"))
        {
            out.push(
                g.at(
                    &KEYS_COMMAND,
                    &s.file,
                    format!("sshd runs {} to find keys", s.value),
                )
                .line(Some(s.line))
                .evidence("line", format!("AuthorizedKeysCommand {}", s.value)),
            );
        }
        let risky: &[(&str, &str, Severity)] = &[
            ("permitrootlogin", "yes", Severity::Medium),
            ("permitemptypasswords", "yes", Severity::High),
            ("strictmodes", "no", Severity::Medium),
            ("permituserenvironment", "yes", Severity::Medium),
            ("gatewayports", "yes", Severity::Low),
        ];
        for (kw, bad, sev) in risky {
            if let Some(s) = cfg.get(kw).filter(|s| s.value.eq_ignore_ascii_case(bad)) {
                out.push(
                    g.at(
                        &SSHD_SETTING,
                        &s.file,
                        format!("sshd: {} {}", s.keyword, s.value),
                    )
                    .line(Some(s.line))
                    .severity(*sev)
                    .evidence("setting", format!("{} {}", s.keyword, s.value)),
                );
            }
            for m in &cfg.matches {
                if let Some(s) = m
                    .settings
                    .iter()
                    .find(|s| s.keyword == *kw && s.value.eq_ignore_ascii_case(bad))
                {
                    out.push(
                        g.at(
                            &SSHD_SETTING,
                            &s.file,
                            format!("sshd: {} {} for Match {}", s.keyword, s.value, m.criteria),
                        )
                        .line(Some(s.line))
                        .severity(*sev)
                        .evidence("setting", format!("{} {}", s.keyword, s.value))
                        .evidence("match", &m.criteria),
                    );
                }
            }
        }
    }
    if !g.facts.host_keys.is_empty() {
        out.push(
            g.at(
                &HOST_KEYS,
                "/etc/ssh",
                format!("{} private host key(s) shipped", g.facts.host_keys.len()),
            )
            .evidence("files", g.facts.host_keys.join(", ")),
        );
    }
    for u in g.facts.users() {
        for name in ["id_rsa", "id_dsa", "id_ecdsa", "id_ed25519"] {
            let path = format!("{}/.ssh/{name}", u.home.trim_end_matches('/'));
            if let Some(data) = g.tree.read(path.as_bytes(), 64 << 10).content() {
                if qvet_inspect::ssh::is_private_key(data) {
                    out.push(
                        g.at(&PRIVATE_KEY, &path, format!("private key of '{}'", u.name))
                            .user(&u.name),
                    );
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::rules::testing::{findings, ids, Fixture};

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl planted@evil";

    fn base() -> Fixture {
        let mut f = Fixture::new();
        f.fs.file(
            "/etc/passwd",
            0o644,
            b"root:x:0:0:root:/root:/bin/bash\nops:x:1001:1001::/srv/ops:/bin/bash\n",
        )
        .file(
            "/etc/ssh/sshd_config",
            0o644,
            b"Include /etc/ssh/sshd_config.d/*.conf\nPermitRootLogin prohibit-password\n",
        )
        .mkdir("/root/.ssh");
        f
    }

    #[test]
    fn default_configuration_is_clean() {
        assert!(findings(&base(), check).is_empty());
    }

    #[test]
    fn keys_follow_the_effective_authorized_keys_file() {
        let mut f = base();
        f.fs.file(
            "/etc/ssh/sshd_config.d/10-keys.conf",
            0o644,
            b"AuthorizedKeysFile /etc/ssh/keys/%u .ssh/authorized_keys\nPermitRootLogin yes\n",
        )
        .file("/etc/ssh/keys/root", 0o600, KEY.as_bytes())
        .file("/srv/ops/.ssh/authorized_keys", 0o600, KEY.as_bytes())
        .file("/root/.ssh/authorized_keys2", 0o600, KEY.as_bytes());
        let got = findings(&f, check);
        assert_eq!(
            ids(&got),
            vec![
                "ssh-authorized-key",
                "ssh-authorized-key",
                "ssh-authorized-key",
                "sshd-risky-setting"
            ]
        );
        let root = got
            .iter()
            .find(|f| f.path.as_deref() == Some("/etc/ssh/keys/root"))
            .unwrap();
        assert_eq!(root.severity, Severity::High);
        assert!(root.key.as_deref().unwrap().starts_with("SHA256:"));
        let ops = got
            .iter()
            .find(|f| f.path.as_deref() == Some("/srv/ops/.ssh/authorized_keys"))
            .unwrap();
        assert_eq!(ops.severity, Severity::Medium);
        // authorized_keys2 is no longer read once AuthorizedKeysFile is set.
        let stray = got
            .iter()
            .find(|f| f.path.as_deref() == Some("/root/.ssh/authorized_keys2"))
            .unwrap();
        assert_eq!(stray.severity, Severity::Low);
        let setting = got
            .iter()
            .find(|f| f.rule.id == "sshd-risky-setting")
            .unwrap();
        assert_eq!(
            setting.path.as_deref(),
            Some("/etc/ssh/sshd_config.d/10-keys.conf")
        );
        assert_eq!(setting.line, Some(2));
    }
}
