//! Accounts and privilege: `passwd`/`shadow`/`group`, sudoers, PAM.

use std::collections::BTreeMap;

use qvet_inspect::accounts::HashKind;
use qvet_inspect::linux::Ownership;

use super::Guest;
use crate::finding::{Category, Confidence, Finding, Layer, Rule, Severity};

/// A non-root account with uid 0.
pub static UID0: Rule = Rule {
    id: "account-uid0",
    title: "account other than root with uid 0",
    severity: Severity::Critical,
    confidence: Confidence::High,
    category: Category::Account,
    layer: Layer::Accounts,
    doc:
        "Every account with uid 0 is root, whatever its name. A second uid-0 entry in /etc/passwd \
          (toor, a random name) is the oldest backdoor there is; no distribution ships one.",
};
/// A non-root account whose primary group is 0.
pub static GID0: Rule = Rule {
    id: "account-gid0",
    title: "account other than root in group 0",
    severity: Severity::Medium,
    confidence: Confidence::Medium,
    category: Category::Account,
    layer: Layer::Accounts,
    doc: "An account whose primary gid is 0 can read and write root-group files (many of /etc). \
          Distributions give no account but root gid 0.",
};
/// Two accounts share a uid.
pub static DUPLICATE_UID: Rule = Rule {
    id: "account-duplicate-uid",
    title: "accounts sharing a uid",
    severity: Severity::High,
    confidence: Confidence::High,
    category: Category::Account,
    layer: Layer::Accounts,
    doc: "Two passwd entries with the same uid are the same user to the kernel: a second name for \
          an existing account, with its own password, hides who logs in.",
};
/// An account that logs in without a password.
pub static EMPTY_PASSWORD: Rule = Rule {
    id: "account-empty-password",
    title: "account with an empty password",
    severity: Severity::High,
    confidence: Confidence::High,
    category: Category::Account,
    layer: Layer::Accounts,
    doc: "An empty password field in /etc/shadow (or /etc/passwd) lets anyone log in as that account \
          wherever empty passwords are accepted (console, su with nullok, sshd with \
          PermitEmptyPasswords). Critical for uid 0.",
};
/// DES or MD5-crypt hashes.
pub static WEAK_HASH: Rule = Rule {
    id: "account-weak-hash",
    title: "password hashed with DES or MD5-crypt",
    severity: Severity::Medium,
    confidence: Confidence::High,
    category: Category::Account,
    layer: Layer::Accounts,
    doc:
        "Traditional DES crypt and $1$ MD5-crypt are cracked in minutes; current distributions use \
          yescrypt or SHA-512. A weak hash is a password someone set by hand, often a default.",
};
/// A system account with a usable password or a login shell.
pub static SYSTEM_LOGIN: Rule = Rule {
    id: "account-system-login",
    title: "system account that can log in",
    severity: Severity::Medium,
    confidence: Confidence::Medium,
    category: Category::Account,
    layer: Layer::Accounts,
    doc: "Service accounts (uid 1–999) normally have a locked password (`*`, `!`) and a nologin \
          shell. A usable password hash on one is high; a login shell alone is medium: both turn \
          a daemon's identity into a way in. A login shell an installed package gives its account \
          by design (Debian's `postgres`, `/bin/bash`, when `postgresql-common` owns its home) is \
          info.",
};
/// passwd and shadow disagree.
pub static SHADOW_MISMATCH: Rule = Rule {
    id: "account-shadow-mismatch",
    title: "passwd and shadow disagree",
    severity: Severity::Low,
    confidence: Confidence::High,
    category: Category::Account,
    layer: Layer::Accounts,
    doc:
        "An account in /etc/shadow but not /etc/passwd (or the reverse) is a sign of hand editing: \
          tools keep the two in step.",
};
/// A human account (uid ≥ 1000) that can log in, as inventory.
pub static LOGIN_USER: Rule = Rule {
    id: "account-login-user",
    title: "user account that can log in",
    severity: Severity::Low,
    confidence: Confidence::High,
    category: Category::Account,
    layer: Layer::Accounts,
    doc: "Lists every regular account (uid ≥ 1000) with a usable password. Pristine images rarely \
          ship one; lab images add `lab`/`admin` on purpose (allow them with `[allow] users`).",
};
/// A member of sudo, wheel or admin.
pub static ADMIN_GROUP: Rule = Rule {
    id: "account-admin-group",
    title: "member of an administrative group",
    severity: Severity::Medium,
    confidence: Confidence::High,
    category: Category::Privilege,
    layer: Layer::Accounts,
    doc: "Members of sudo, wheel, admin (and root) get root through sudo or su. Pristine images list \
          nobody there; allow the accounts your lab adds with `[allow] users`.",
};
/// sudo rules without password for every command.
pub static SUDO_NOPASSWD_ALL: Rule = Rule {
    id: "sudo-nopasswd-all",
    title: "sudo grants every command without a password",
    severity: Severity::High,
    confidence: Confidence::High,
    category: Category::Privilege,
    layer: Layer::Accounts,
    doc: "`who ALL=(ALL) NOPASSWD: ALL` in sudoers or sudoers.d makes the account root without \
          knowing any password. Cloud images write one at first boot for the cloud user; a \
          pristine image should not carry it.",
};
/// sudo rules granting ALL.
pub static SUDO_ALL: Rule = Rule {
    id: "sudo-all",
    title: "sudo grants every command",
    severity: Severity::Medium,
    confidence: Confidence::High,
    category: Category::Privilege,
    layer: Layer::Accounts,
    doc:
        "A sudoers rule giving ALL commands to an account or group other than root, %sudo, %admin \
          and %wheel (the distribution defaults) adds an administrator.",
};
/// pam_permit where it accepts anyone.
pub static PAM_PERMIT: Rule = Rule {
    id: "pam-permit",
    title: "PAM accepts authentication unconditionally",
    severity: Severity::Critical,
    confidence: Confidence::High,
    category: Category::Privilege,
    layer: Layer::Accounts,
    doc: "`auth sufficient pam_permit.so` (or pam_permit first in an auth stack, or with a \
          success=done jump) lets any password through. Debian's own `auth required pam_permit.so` \
          after `pam_deny.so` is the normal ending of common-auth and is not reported.",
};
/// pam_exec runs a program.
pub static PAM_EXEC: Rule = Rule {
    id: "pam-exec",
    title: "PAM runs a program on login",
    severity: Severity::High,
    confidence: Confidence::Medium,
    category: Category::Privilege,
    layer: Layer::Accounts,
    doc: "pam_exec.so runs a program at authentication or session start, with the typed password \
          on stdin when `expose_authtok` is given: a credential stealer or a root hook.",
};
/// A PAM module no package owns.
pub static PAM_UNOWNED_MODULE: Rule = Rule {
    id: "pam-unowned-module",
    title: "PAM module no package owns",
    severity: Severity::Critical,
    confidence: Confidence::Medium,
    category: Category::Privilege,
    layer: Layer::Accounts,
    doc:
        "A PAM module file that no installed package lists is code every login loads: the classic \
          place for a skeleton-key backdoor. Only reported when the guest has a package database.",
};

/// This family's rules.
pub static RULES: &[Rule] = &[
    UID0,
    GID0,
    DUPLICATE_UID,
    EMPTY_PASSWORD,
    WEAK_HASH,
    SYSTEM_LOGIN,
    SHADOW_MISMATCH,
    LOGIN_USER,
    ADMIN_GROUP,
    SUDO_NOPASSWD_ALL,
    SUDO_ALL,
    PAM_PERMIT,
    PAM_EXEC,
    PAM_UNOWNED_MODULE,
];

/// Service accounts that an installed package creates with a login shell
/// by design: (account, shell, the package that creates it and ships its
/// home directory). Debian's `postgresql-common` makes `postgres` with
/// `/bin/bash` so that `su - postgres` works.
const PACKAGED_LOGIN_ACCOUNTS: &[(&str, &str, &str)] =
    &[("postgres", "/bin/bash", "postgresql-common")];

/// The package that created `u` with its shell, when the account, its shell
/// and the package owning its home directory are as
/// [`PACKAGED_LOGIN_ACCOUNTS`] says.
fn packaged_login(g: &Guest<'_, '_>, u: &qvet_inspect::accounts::User) -> Option<&'static str> {
    PACKAGED_LOGIN_ACCOUNTS
        .iter()
        .find(|(name, shell, package)| {
            u.name == *name
                && u.shell == *shell
                && g.facts.packages.owner(g.tree, u.home.as_bytes()) == Some(*package)
        })
        .map(|(_, _, package)| *package)
}

/// Shells that do not give a session.
pub fn is_nologin(shell: &str) -> bool {
    let name = shell.rsplit('/').next().unwrap_or(shell);
    shell.is_empty()
        || matches!(
            name,
            "nologin" | "false" | "sync" | "halt" | "shutdown" | "true"
        )
}

/// Runs the family.
pub fn check(g: &Guest<'_, '_>) -> Vec<Finding> {
    let mut out = Vec::new();
    passwd_rules(g, &mut out);
    sudo_rules(g, &mut out);
    pam_rules(g, &mut out);
    out
}

fn passwd_rules(g: &Guest<'_, '_>, out: &mut Vec<Finding>) {
    let Some(passwd) = &g.facts.passwd else {
        return;
    };
    let shadow: BTreeMap<&str, &qvet_inspect::accounts::Shadow> = g
        .facts
        .shadow
        .iter()
        .flat_map(|s| s.records.iter())
        .map(|s| (s.name.as_str(), s))
        .collect();
    let mut by_uid: BTreeMap<u32, Vec<&str>> = BTreeMap::new();
    for u in &passwd.records {
        by_uid.entry(u.uid).or_default().push(&u.name);
        let line = format!(
            "{}:{}:{}:{}:{}:{}:{}",
            u.name, u.password, u.uid, u.gid, u.gecos, u.home, u.shell
        );
        if u.uid == 0 && u.name != "root" {
            out.push(
                g.at(
                    &UID0,
                    &passwd.path,
                    format!("'{}' has uid 0 (a second root)", u.name),
                )
                .line(Some(u.line))
                .evidence("line", line.clone())
                .user(&u.name),
            );
        } else if u.gid == 0 && u.name != "root" && u.uid != 0 {
            out.push(
                g.at(
                    &GID0,
                    &passwd.path,
                    format!("'{}' has primary group 0", u.name),
                )
                .line(Some(u.line))
                .evidence("line", line.clone())
                .user(&u.name),
            );
        }
        // The effective hash: shadow's when passwd defers to it.
        let (hash, hash_path, hash_line) = match (u.password.as_str(), shadow.get(u.name.as_str()))
        {
            ("x", Some(s)) => (
                s.hash.clone(),
                g.facts.shadow.as_ref().map(|s| s.path.clone()),
                Some(s.line),
            ),
            ("x", None) => {
                if g.facts.shadow.is_some() {
                    out.push(
                        g.at(
                            &SHADOW_MISMATCH,
                            &passwd.path,
                            format!("'{}' defers to shadow but has no shadow entry", u.name),
                        )
                        .line(Some(u.line))
                        .evidence("line", line.clone())
                        .user(&u.name),
                    );
                }
                continue;
            }
            (pw, _) => (pw.to_string(), Some(passwd.path.clone()), Some(u.line)),
        };
        let hash_path = hash_path.unwrap_or_else(|| passwd.path.clone());
        let kind = HashKind::of(&hash);
        let usable = !matches!(kind, HashKind::Locked);
        match kind {
            HashKind::Empty => {
                let sev = if u.uid == 0 {
                    Severity::Critical
                } else {
                    Severity::High
                };
                out.push(
                    g.at(
                        &EMPTY_PASSWORD,
                        &hash_path,
                        format!("'{}' (uid {}) has an empty password", u.name, u.uid),
                    )
                    .line(hash_line)
                    .severity(sev)
                    .evidence("account", &u.name)
                    .evidence("hash", "(empty)")
                    .user(&u.name),
                );
            }
            HashKind::Des | HashKind::Md5 => out.push(
                g.at(
                    &WEAK_HASH,
                    &hash_path,
                    format!("'{}' has a {} password hash", u.name, kind.name()),
                )
                .line(hash_line)
                .evidence("account", &u.name)
                .evidence("scheme", kind.name())
                .user(&u.name),
            ),
            _ => {}
        }
        let system = (1..1000).contains(&u.uid) && u.uid != 65534;
        if system && usable && kind != HashKind::Empty {
            out.push(
                g.at(
                    &SYSTEM_LOGIN,
                    &hash_path,
                    format!(
                        "service account '{}' (uid {}) has a usable password",
                        u.name, u.uid
                    ),
                )
                .line(hash_line)
                .severity(Severity::High)
                .evidence("account", &u.name)
                .evidence("scheme", kind.name())
                .user(&u.name),
            );
        } else if system && !is_nologin(&u.shell) {
            let mut f = g
                .at(
                    &SYSTEM_LOGIN,
                    &passwd.path,
                    format!(
                        "service account '{}' (uid {}) has login shell {}",
                        u.name, u.uid, u.shell
                    ),
                )
                .line(Some(u.line))
                .evidence("line", line.clone())
                .user(&u.name);
            if let Some(package) = packaged_login(g, u) {
                // As the installed package creates it: inventory.
                f = f.severity(Severity::Info).evidence(
                    "created-by",
                    format!(
                        "{package} (installed; it owns the home directory {})",
                        u.home
                    ),
                );
            }
            out.push(f);
        }
        if u.uid >= 1000 && u.uid != 65534 && usable {
            out.push(
                g.at(
                    &LOGIN_USER,
                    &passwd.path,
                    format!("'{}' (uid {}) can log in with a password", u.name, u.uid),
                )
                .line(Some(u.line))
                .evidence("line", line)
                .evidence("scheme", kind.name())
                .user(&u.name),
            );
        }
    }
    for (uid, names) in &by_uid {
        if names.len() > 1 {
            let mut f = g
                .at(
                    &DUPLICATE_UID,
                    &passwd.path,
                    format!("uid {uid} is shared by {}", names.join(", ")),
                )
                .evidence("uid", uid.to_string())
                .evidence("accounts", names.join(", "));
            if let Some(second) = names.get(1) {
                f = f.user(*second);
            }
            // uid 0 duplicates are already critical under account-uid0.
            if *uid != 0 {
                out.push(f);
            }
        }
    }
    if let Some(shadow) = &g.facts.shadow {
        for s in &shadow.records {
            if !passwd.records.iter().any(|u| u.name == s.name) {
                out.push(
                    g.at(
                        &SHADOW_MISMATCH,
                        &shadow.path,
                        format!("'{}' is in shadow but not in passwd", s.name),
                    )
                    .line(Some(s.line))
                    .user(&s.name),
                );
            }
        }
    }
    if let Some(group) = &g.facts.group {
        for gr in &group.records {
            if !matches!(gr.name.as_str(), "sudo" | "wheel" | "admin" | "root") {
                continue;
            }
            for m in &gr.members {
                if m == "root" {
                    continue;
                }
                out.push(
                    g.at(
                        &ADMIN_GROUP,
                        &group.path,
                        format!("'{m}' is a member of {}", gr.name),
                    )
                    .line(Some(gr.line))
                    .evidence("group", &gr.name)
                    .evidence("member", m)
                    .user(m),
                );
            }
        }
        // Primary-group membership of sudo/wheel/admin counts too.
        for gr in &group.records {
            if !matches!(gr.name.as_str(), "sudo" | "wheel" | "admin") {
                continue;
            }
            for u in passwd
                .records
                .iter()
                .filter(|u| u.gid == gr.gid && u.uid != 0)
            {
                out.push(
                    g.at(
                        &ADMIN_GROUP,
                        &passwd.path,
                        format!("'{}' has {} as primary group", u.name, gr.name),
                    )
                    .line(Some(u.line))
                    .evidence("group", &gr.name)
                    .user(&u.name),
                );
            }
        }
    }
}

/// Who sudoers rules grant by default on Debian, Ubuntu, RHEL, Alpine.
fn default_sudo_subject(who: &str) -> bool {
    matches!(who.trim(), "root" | "%sudo" | "%admin" | "%wheel")
}

fn sudo_rules(g: &Guest<'_, '_>, out: &mut Vec<Finding>) {
    let Some(s) = &g.facts.sudoers else {
        return;
    };
    for r in &s.rules {
        if default_sudo_subject(&r.who) && !r.nopasswd_all {
            continue;
        }
        let user = r.who.trim().to_string();
        if r.nopasswd_all {
            out.push(
                g.at(
                    &SUDO_NOPASSWD_ALL,
                    &r.file,
                    format!("{} may run every command as root without a password", r.who),
                )
                .line(Some(r.line))
                .evidence("line", &r.text)
                .user(user),
            );
        } else if r.all_commands {
            out.push(
                g.at(
                    &SUDO_ALL,
                    &r.file,
                    format!("{} may run every command as root", r.who),
                )
                .line(Some(r.line))
                .evidence("line", &r.text)
                .user(user),
            );
        }
    }
}

fn pam_rules(g: &Guest<'_, '_>, out: &mut Vec<Finding>) {
    for file in &g.facts.pam {
        let mut first_auth = true;
        for r in &file.rules {
            if r.kind == "@include" {
                continue;
            }
            let name = r.module_name();
            if r.kind == "auth" && name == "pam_permit.so" {
                let control = r.control.to_ascii_lowercase();
                let bypass = control == "sufficient"
                    || control.contains("success=done")
                    || (first_auth && control != "required" && control != "requisite")
                    || (first_auth && file.rules.iter().filter(|x| x.kind == "auth").count() == 1);
                if bypass {
                    out.push(
                        g.at(
                            &PAM_PERMIT,
                            &file.path,
                            format!("{} lets any password through", file.path),
                        )
                        .line(Some(r.line))
                        .evidence("line", r.text()),
                    );
                }
            }
            if name == "pam_exec.so" {
                out.push(
                    g.at(
                        &PAM_EXEC,
                        &file.path,
                        format!("{} runs {}", file.path, r.args),
                    )
                    .line(Some(r.line))
                    .evidence("line", r.text()),
                );
            }
            if r.kind == "auth" {
                first_auth = false;
            }
        }
    }
    for m in &g.facts.pam_modules {
        if let (Some(path), Ownership::Unowned) = (&m.path, &m.owner) {
            out.push(
                g.at(
                    &PAM_UNOWNED_MODULE,
                    path,
                    format!("PAM module {} belongs to no package", m.name),
                )
                .evidence("module", &m.name),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::rules::testing::{findings, ids, Fixture};

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\nsync:x:4:65534:sync:/bin:/bin/sync\n";
    const SHADOW: &str =
        "root:*:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\nsync:*:19000:0:99999:7:::\n";
    const GROUP: &str = "root:x:0:\nsudo:x:27:\n";

    fn base() -> Fixture {
        let mut f = Fixture::new();
        f.fs.file("/etc/passwd", 0o644, PASSWD.as_bytes())
            .file("/etc/shadow", 0o640, SHADOW.as_bytes())
            .file("/etc/group", 0o644, GROUP.as_bytes())
            .file("/etc/pam.d/common-auth", 0o644, b"auth [success=1 default=ignore] pam_unix.so nullok\nauth requisite pam_deny.so\nauth required pam_permit.so\n")
            .file("/etc/sudoers", 0o440, b"root ALL=(ALL:ALL) ALL\n%sudo ALL=(ALL:ALL) ALL\n@includedir /etc/sudoers.d\n");
        f
    }

    #[test]
    fn clean_accounts_have_no_findings() {
        assert_eq!(ids(&findings(&base(), check)), Vec::<&str>::new());
    }

    #[test]
    fn planted_accounts_are_found() {
        let mut f = base();
        f.fs.file(
            "/etc/passwd",
            0o644,
            format!("{PASSWD}toor:x:0:0::/root:/bin/bash\nbackup:x:34:34:backup:/var/backups:/bin/sh\nlab:x:1000:1000::/home/lab:/bin/bash\ntwin:x:1000:1000::/home/t:/bin/bash\n").as_bytes(),
        )
        .file(
            "/etc/shadow",
            0o640,
            format!("{SHADOW}toor::19000::::::\nbackup:$1$ab$cdefgh:19000::::::\nlab:$y$j9T$x$y:19000::::::\ntwin:*:1::::::\nghost:*:1::::::\n").as_bytes(),
        )
        .file("/etc/group", 0o644, b"root:x:0:\nsudo:x:27:lab\n");
        let got = findings(&f, check);
        let ids = ids(&got);
        for want in [
            "account-uid0",
            "account-empty-password",
            "account-weak-hash",
            "account-system-login",
            "account-login-user",
            "account-duplicate-uid",
            "account-shadow-mismatch",
            "account-admin-group",
        ] {
            assert!(ids.contains(&want), "{want} missing from {ids:?}");
        }
        let empty = got
            .iter()
            .find(|f| f.rule.id == "account-empty-password")
            .unwrap();
        assert_eq!(empty.severity, Severity::Critical, "uid 0 with no password");
        assert_eq!(empty.path.as_deref(), Some("/etc/shadow"));
        assert_eq!(empty.line, Some(4));
        let uid0 = got.iter().find(|f| f.rule.id == "account-uid0").unwrap();
        assert_eq!(uid0.user.as_deref(), Some("toor"));
    }

    /// Debian's `postgres` account has `/bin/bash` by design: info when
    /// `postgresql-common` is installed and owns its home; medium when the
    /// package is not there or the shell is another.
    #[test]
    fn a_packaged_service_shell_is_inventory() {
        let with = |installed: bool, shell: &str| {
            let mut f = base();
            f.fs.file(
                "/etc/passwd",
                0o644,
                format!("{PASSWD}postgres:x:101:104:PostgreSQL administrator,,,:/var/lib/postgresql:{shell}\n").as_bytes(),
            )
            .file(
                "/etc/shadow",
                0o640,
                format!("{SHADOW}postgres:*:19000:0:99999:7:::\n").as_bytes(),
            )
            .mkdir("/var/lib/postgresql");
            if installed {
                f.fs.file(
                    "/var/lib/dpkg/status",
                    0o644,
                    b"Package: postgresql-common\nStatus: install ok installed\nVersion: 248\n\n",
                )
                .file(
                    "/var/lib/dpkg/info/postgresql-common.list",
                    0o644,
                    b"/.\n/var\n/var/lib\n/var/lib/postgresql\n",
                );
            }
            findings(&f, check)
                .into_iter()
                .find(|x| x.rule.id == "account-system-login")
                .unwrap()
        };
        let packaged = with(true, "/bin/bash");
        assert_eq!(packaged.severity, Severity::Info);
        assert!(packaged
            .evidence
            .iter()
            .any(|(k, v)| *k == "created-by" && v.contains("postgresql-common")));
        assert_eq!(with(false, "/bin/bash").severity, Severity::Medium);
        assert_eq!(with(true, "/bin/sh").severity, Severity::Medium);
    }

    #[test]
    fn sudo_and_pam_plants_are_found() {
        let mut f = base();
        f.fs.file("/etc/sudoers.d/90-x", 0o440, b"svc ALL=(ALL) NOPASSWD: ALL\nops ALL=(ALL) ALL\n")
            .file("/etc/pam.d/sshd", 0o644, b"auth sufficient pam_permit.so\n@include common-auth\nsession optional pam_exec.so /usr/local/bin/log.sh\n");
        let got = findings(&f, check);
        let ids = ids(&got);
        assert_eq!(
            ids,
            vec!["sudo-nopasswd-all", "sudo-all", "pam-permit", "pam-exec"]
        );
        assert_eq!(got[0].path.as_deref(), Some("/etc/sudoers.d/90-x"));
        assert_eq!(got[0].line, Some(1));
    }
}
