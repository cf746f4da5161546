//! Everything an audit asks of a Linux (or Linux-based appliance) root
//! filesystem, gathered once from a walked [`Tree`]: OS release, accounts,
//! SSH keys and the effective sshd configuration, sudoers, PAM stacks,
//! every autostart location (persistence), setuid/setgid files,
//! executables in hidden or temporary places, and the package database
//! with every packaged file verified.

use std::collections::BTreeSet;

use qvet_guestfs::FileType;
use sha2::{Digest, Sha256};

use crate::accounts::{self, Group, Shadow, User};
use crate::cron::{self, Dialect};
use crate::packages::{self, Packages};
use crate::pam;
use crate::ssh::{self, AuthorizedKeys, SshdConfig};
use crate::sudoers::{self, Sudoers};
use crate::systemd;
use crate::tree::{shown, Entry, Read, Tree};

/// Largest configuration file or script read whole; bigger ones are named
/// in [`LinuxFacts::unread`].
pub const MAX_CONFIG: u64 = 1 << 20;
/// Files read per persistence directory (a 100,000-entry `cron.d` costs
/// bounded time; the rest is named as unread).
pub const MAX_PER_DIR: usize = 2_000;
/// Largest file hashed to compare setuid files with shells.
pub const MAX_HASHED: u64 = 16 << 20;

/// `/etc/os-release` facts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OsRelease {
    /// `ID`.
    pub id: String,
    /// `VERSION_ID`.
    pub version_id: String,
    /// `PRETTY_NAME`.
    pub pretty_name: String,
}

/// Parsed records of one file, with where they came from.
#[derive(Debug, Clone, Default)]
pub struct Records<T> {
    /// Guest path.
    pub path: String,
    /// Records.
    pub records: Vec<T>,
    /// Malformed line numbers.
    pub malformed: Vec<usize>,
}

/// An `authorized_keys` file.
#[derive(Debug, Clone)]
pub struct KeyFile {
    /// Guest path.
    pub path: String,
    /// Accounts sshd would read it for (empty: no account's
    /// AuthorizedKeysFile names it).
    pub users: Vec<String>,
    /// Its keys.
    pub keys: AuthorizedKeys,
}

/// Who owns a file, as far as the package database knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ownership {
    /// Listed by this package.
    Package(String),
    /// No package lists it.
    Unowned,
    /// The guest has no package database: ownership cannot be decided.
    Unknown,
}

impl Ownership {
    /// Text for evidence.
    pub fn describe(&self) -> String {
        match self {
            Self::Package(p) => format!("package {p}"),
            Self::Unowned => "no package".into(),
            Self::Unknown => "unknown (no package database)".into(),
        }
    }
}

/// Where something starts automatically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PersistKind {
    /// `/etc/crontab`, `cron.d`, spool crontabs, anacrontab.
    Cron,
    /// Scripts in `/etc/cron.{hourly,daily,weekly,monthly}`.
    CronScript,
    /// `at` jobs.
    At,
    /// systemd system or user units and drop-ins.
    Systemd,
    /// SysV init scripts.
    Init,
    /// `/etc/rc.local`.
    RcLocal,
    /// `/etc/profile`, `profile.d`, `bash.bashrc`, `/etc/environment`.
    Profile,
    /// Shell start-up files in homes.
    ShellRc,
    /// `/etc/ld.so.preload`.
    LdPreload,
    /// `/etc/ld.so.conf` and `ld.so.conf.d`.
    LdSoConf,
    /// udev rules with `RUN`/`PROGRAM`.
    Udev,
    /// `modprobe.d` `install`/`remove` commands.
    Modprobe,
    /// `update-motd.d` scripts.
    Motd,
}

impl PersistKind {
    /// Name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Cron => "cron",
            Self::CronScript => "cron-script",
            Self::At => "at",
            Self::Systemd => "systemd",
            Self::Init => "init",
            Self::RcLocal => "rc-local",
            Self::Profile => "profile",
            Self::ShellRc => "shell-rc",
            Self::LdPreload => "ld-preload",
            Self::LdSoConf => "ld-so-conf",
            Self::Udev => "udev",
            Self::Modprobe => "modprobe",
            Self::Motd => "motd",
        }
    }
}

/// A program a persistence entry runs, resolved inside the guest.
#[derive(Debug, Clone)]
pub struct Program {
    /// The path as written.
    pub path: String,
    /// The walked path it resolves to (`None`: not in the guest).
    pub resolved: Option<Vec<u8>>,
    /// Its owner.
    pub owner: Ownership,
    /// Its text when it is a script (starts with `#!`) no larger than [`MAX_CONFIG`].
    pub script: Option<String>,
}

/// One autostart entry.
#[derive(Debug, Clone)]
pub struct Persist {
    /// Kind.
    pub kind: PersistKind,
    /// File holding it.
    pub path: String,
    /// Line (for line-based entries).
    pub line: Option<usize>,
    /// What it says: the cron line, `ExecStart=…`, the script's text.
    pub text: String,
    /// Who owns the file holding it.
    pub owner: Ownership,
    /// Whether the packaged file verified (owned, digest matched).
    pub verified: bool,
    /// Whether it is enabled (systemd: linked from a `.wants`/`.requires`
    /// directory; init scripts: an `rc?.d/S*` link), when that applies.
    pub enabled: Option<bool>,
    /// The user it runs as, when known.
    pub user: Option<String>,
    /// The program it runs, when it names one.
    pub program: Option<Program>,
}

/// A setuid or setgid file.
#[derive(Debug, Clone)]
pub struct SetId {
    /// Guest path.
    pub path: String,
    /// `st_mode & 0o7777`.
    pub mode: u32,
    /// Owner uid.
    pub uid: u32,
    /// Owner.
    pub owner: Ownership,
    /// sha256, when at most [`MAX_HASHED`] bytes.
    pub sha256: Option<String>,
}

/// A file with capabilities (`security.capability`): privilege without
/// the setuid bit.
#[derive(Debug, Clone)]
pub struct FileCap {
    /// Guest path.
    pub path: String,
    /// Permitted capability names.
    pub permitted: Vec<String>,
    /// Effective at exec.
    pub effective: bool,
    /// Owner.
    pub owner: Ownership,
    /// Owned and its digest verified.
    pub verified: bool,
}

/// An executable found where executables do not belong.
#[derive(Debug, Clone)]
pub struct Stray {
    /// Guest path.
    pub path: String,
    /// `elf`, `script` or `exec-bit`.
    pub what: &'static str,
    /// Why the place is odd: `hidden directory`, `temporary directory`.
    pub place: &'static str,
    /// Size.
    pub size: u64,
    /// Mode.
    pub mode: u32,
}

/// A PAM service file.
#[derive(Debug, Clone)]
pub struct PamFile {
    /// Guest path.
    pub path: String,
    /// Rules.
    pub rules: Vec<pam::Rule>,
    /// Owner of the file.
    pub owner: Ownership,
}

/// A module named by a PAM rule and where it lives.
#[derive(Debug, Clone)]
pub struct PamModule {
    /// Module name as written.
    pub name: String,
    /// Guest path found.
    pub path: Option<String>,
    /// Owner.
    pub owner: Ownership,
}

/// Everything gathered.
#[derive(Debug, Clone, Default)]
pub struct LinuxFacts {
    /// `/etc/os-release`.
    pub os: Option<OsRelease>,
    /// `/etc/passwd`.
    pub passwd: Option<Records<User>>,
    /// `/etc/shadow`.
    pub shadow: Option<Records<Shadow>>,
    /// `/etc/group`.
    pub group: Option<Records<Group>>,
    /// Effective sshd configuration.
    pub sshd: Option<SshdConfig>,
    /// Every `authorized_keys*` file found.
    pub key_files: Vec<KeyFile>,
    /// Private host keys shipped in `/etc/ssh`.
    pub host_keys: Vec<String>,
    /// sudoers with its includes.
    pub sudoers: Option<Sudoers>,
    /// PAM service files.
    pub pam: Vec<PamFile>,
    /// PAM modules referenced, located.
    pub pam_modules: Vec<PamModule>,
    /// Autostart entries.
    pub persistence: Vec<Persist>,
    /// setuid/setgid files.
    pub setid: Vec<SetId>,
    /// Files with capabilities.
    pub caps: Vec<FileCap>,
    /// sha256 of the shells and interpreters present (path, sha256).
    pub interpreters: Vec<(String, String)>,
    /// Executables in hidden or temporary places.
    pub strays: Vec<Stray>,
    /// Package database and verification.
    pub packages: Packages,
    /// Files not read, with why (too large, unreadable, bounds).
    pub unread: Vec<String>,
}

impl LinuxFacts {
    /// Whether this looks like a Linux root filesystem at all.
    pub fn is_linux_root(tree: &Tree<'_>) -> bool {
        tree.lookup(b"/etc/passwd").is_some()
            || tree.lookup(b"/etc/os-release").is_some()
            || (tree.lookup(b"/etc").is_some() && tree.lookup(b"/bin").is_some())
    }

    /// The owner of `path`.
    pub fn owner(&self, tree: &Tree<'_>, path: &[u8]) -> Ownership {
        if self.packages.manager.is_none() {
            return Ownership::Unknown;
        }
        match self.packages.owner(tree, path) {
            Some(p) => Ownership::Package(p.to_string()),
            None => Ownership::Unowned,
        }
    }

    /// Whether `path` is owned and its digest verified (not among the mismatches).
    pub fn verified(&self, tree: &Tree<'_>, path: &[u8]) -> bool {
        let resolved = tree.resolve(path).unwrap_or_else(|| path.to_vec());
        matches!(self.owner(tree, path), Ownership::Package(_))
            && !self
                .packages
                .mismatches
                .iter()
                .any(|m| m.found_at == resolved || m.path == path)
    }

    /// Users as parsed (empty without a passwd).
    pub fn users(&self) -> &[User] {
        self.passwd.as_ref().map_or(&[], |p| p.records.as_slice())
    }
}

/// Gathers every fact from `tree`.
pub fn gather(tree: &Tree<'_>) -> LinuxFacts {
    let mut f = LinuxFacts {
        packages: packages::gather(tree),
        ..LinuxFacts::default()
    };
    f.os = read_text(tree, b"/etc/os-release", &mut f.unread).map(|t| parse_os_release(&t));
    f.passwd = records(tree, "/etc/passwd", accounts::parse_passwd, &mut f.unread);
    f.shadow = records(tree, "/etc/shadow", accounts::parse_shadow, &mut f.unread);
    f.group = records(tree, "/etc/group", accounts::parse_group, &mut f.unread);
    gather_ssh(tree, &mut f);
    gather_sudoers(tree, &mut f);
    gather_pam(tree, &mut f);
    gather_persistence(tree, &mut f);
    gather_files(tree, &mut f);
    f
}

fn read_text(tree: &Tree<'_>, path: &[u8], unread: &mut Vec<String>) -> Option<Vec<u8>> {
    match tree.read(path, MAX_CONFIG) {
        Read::Content(c) => Some(c),
        Read::Missing => None,
        Read::TooLarge(n) => {
            unread.push(format!(
                "{}: {n} bytes, over the {MAX_CONFIG}-byte bound",
                shown(path)
            ));
            None
        }
        Read::Failed(e) => {
            unread.push(format!("{}: {e}", shown(path)));
            None
        }
    }
}

/// A parser of one account file: records and malformed line numbers.
type Parser<T> = fn(&[u8]) -> (Vec<T>, Vec<usize>);

fn records<T>(
    tree: &Tree<'_>,
    path: &str,
    parse: Parser<T>,
    unread: &mut Vec<String>,
) -> Option<Records<T>> {
    let data = read_text(tree, path.as_bytes(), unread)?;
    let (records, malformed) = parse(&data);
    Some(Records {
        path: path.to_string(),
        records,
        malformed,
    })
}

fn parse_os_release(data: &[u8]) -> OsRelease {
    let mut os = OsRelease::default();
    for line in String::from_utf8_lossy(data).lines().take(1000) {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim().trim_matches(['"', '\'']).to_string();
        match k.trim() {
            "ID" => os.id = v,
            "VERSION_ID" => os.version_id = v,
            "PRETTY_NAME" => os.pretty_name = v,
            _ => {}
        }
    }
    os
}

/// A resolver for include directives: every walked file matching the
/// pattern, read (bounded).
fn resolver<'a>(
    tree: &'a Tree<'_>,
    unread: &'a mut Vec<String>,
) -> impl FnMut(&str) -> Vec<(String, Vec<u8>)> + 'a {
    move |pattern: &str| {
        let mut out = Vec::new();
        for path in tree.glob(pattern.as_bytes()).into_iter().take(MAX_PER_DIR) {
            if tree.lookup(&path).is_some_and(Entry::is_file) {
                if let Some(data) = read_text(tree, &path, unread) {
                    out.push((shown(&path), data));
                }
            }
        }
        out
    }
}

fn gather_ssh(tree: &Tree<'_>, f: &mut LinuxFacts) {
    if let Some(main) = read_text(tree, b"/etc/ssh/sshd_config", &mut f.unread) {
        let mut unread = Vec::new();
        let cfg = ssh::parse_sshd_config(
            "/etc/ssh/sshd_config",
            &main,
            &mut resolver(tree, &mut unread),
        );
        f.unread.extend(unread);
        f.sshd = Some(cfg);
    }
    // Every file sshd would read for every account.
    let patterns: Vec<String> = match &f.sshd {
        Some(cfg) => cfg
            .authorized_keys_files()
            .into_iter()
            .map(|(p, _)| p)
            .collect(),
        None => vec![
            ".ssh/authorized_keys".into(),
            ".ssh/authorized_keys2".into(),
        ],
    };
    let mut files: Vec<(Vec<u8>, Vec<String>)> = Vec::new();
    for u in f.users() {
        for pat in &patterns {
            let path = ssh::expand_tokens(pat, &u.name, &u.home, u.uid);
            let Some(resolved) = tree.resolve(path.as_bytes()) else {
                continue;
            };
            match files.iter_mut().find(|(p, _)| *p == resolved) {
                Some((_, users)) => users.push(u.name.clone()),
                None => files.push((resolved, vec![u.name.clone()])),
            }
        }
    }
    // Key files sshd's configuration does not name are still reported.
    for e in tree.entries() {
        let name = e.path.rsplit(|&b| b == b'/').next().unwrap_or_default();
        if e.is_file()
            && name.starts_with(b"authorized_keys")
            && !files.iter().any(|(p, _)| *p == e.path)
        {
            files.push((e.path.clone(), Vec::new()));
        }
    }
    for (path, users) in files {
        if let Some(data) = read_text(tree, &path, &mut f.unread) {
            f.key_files.push(KeyFile {
                path: shown(&path),
                users,
                keys: ssh::parse_authorized_keys(&data),
            });
        }
    }
    for e in tree.children(b"/etc/ssh") {
        let name = e.path.rsplit(|&b| b == b'/').next().unwrap_or_default();
        if e.is_file() && name.starts_with(b"ssh_host_") && name.ends_with(b"_key") {
            f.host_keys.push(shown(&e.path));
        }
    }
}

fn gather_sudoers(tree: &Tree<'_>, f: &mut LinuxFacts) {
    if let Some(main) = read_text(tree, b"/etc/sudoers", &mut f.unread) {
        let mut unread = Vec::new();
        let s = sudoers::parse_sudoers("/etc/sudoers", &main, &mut resolver(tree, &mut unread));
        f.unread.extend(unread);
        f.sudoers = Some(s);
    } else if !tree.children(b"/etc/sudoers.d").is_empty() {
        // No main file: read the directory as sudo's default would include it.
        let mut unread = Vec::new();
        let s = sudoers::parse_sudoers(
            "/etc/sudoers",
            b"@includedir /etc/sudoers.d\n",
            &mut resolver(tree, &mut unread),
        );
        f.unread.extend(unread);
        f.sudoers = Some(s);
    }
}

fn gather_pam(tree: &Tree<'_>, f: &mut LinuxFacts) {
    let mut names = BTreeSet::new();
    for e in tree.children(b"/etc/pam.d").into_iter().take(MAX_PER_DIR) {
        if !e.is_file() {
            continue;
        }
        let Some(data) = read_text(tree, &e.path, &mut f.unread) else {
            continue;
        };
        let rules = pam::parse(&data);
        names.extend(
            rules
                .iter()
                .filter(|r| r.kind != "@include")
                .map(|r| r.module.clone()),
        );
        f.pam.push(PamFile {
            path: shown(&e.path),
            rules,
            owner: f.owner(tree, &e.path),
        });
    }
    let dirs: &[&[u8]] = &[
        b"/lib/security",
        b"/lib64/security",
        b"/usr/lib/security",
        b"/lib/x86_64-linux-gnu/security",
        b"/usr/lib/x86_64-linux-gnu/security",
        b"/lib/aarch64-linux-gnu/security",
        b"/usr/lib/aarch64-linux-gnu/security",
    ];
    for name in names.into_iter().take(1000) {
        let path = if name.starts_with('/') {
            tree.resolve(name.as_bytes())
        } else {
            dirs.iter().find_map(|d| {
                let mut p = d.to_vec();
                p.push(b'/');
                p.extend_from_slice(name.as_bytes());
                tree.resolve(&p)
            })
        };
        let owner = match &path {
            Some(p) => f.owner(tree, p),
            None => Ownership::Unknown,
        };
        f.pam_modules.push(PamModule {
            name,
            path: path.as_deref().map(shown),
            owner,
        });
    }
}

/// A persistence entry of file `path`.
fn entry(tree: &Tree<'_>, f: &LinuxFacts, kind: PersistKind, path: &[u8], text: String) -> Persist {
    Persist {
        kind,
        path: shown(path),
        line: None,
        text,
        owner: f.owner(tree, path),
        verified: f.verified(tree, path),
        enabled: None,
        user: None,
        program: None,
    }
}

/// The program a command line runs: its first absolute path that is a
/// command, not an argument of `cd` and not `/` itself.
fn program_word(command: &str) -> Option<&str> {
    let mut after_cd = false;
    for w in command
        .split(|c: char| c.is_whitespace() || matches!(c, ';' | '&' | '|' | '(' | ')'))
        .filter(|w| !w.is_empty())
    {
        let w = w.trim_start_matches(['-', '@', ':', '+', '!']);
        if after_cd {
            after_cd = false;
            continue;
        }
        if w == "cd" {
            after_cd = true;
            continue;
        }
        if w.starts_with('/') && w.len() > 1 {
            return Some(w);
        }
    }
    None
}

/// The program a command line runs, resolved inside the guest.
fn program(tree: &Tree<'_>, f: &LinuxFacts, command: &str) -> Option<Program> {
    let word = program_word(command)?;
    let resolved = tree.resolve(word.as_bytes());
    let script = resolved.as_ref().and_then(|r| {
        let e = tree.get(r)?;
        let data = tree.read_entry(e, MAX_CONFIG).content()?.to_vec();
        data.starts_with(b"#!")
            .then(|| String::from_utf8_lossy(&data).into_owned())
    });
    Some(Program {
        path: word.to_string(),
        owner: match &resolved {
            Some(r) => f.owner(tree, r),
            None => Ownership::Unknown,
        },
        resolved,
        script,
    })
}

fn files_in<'t>(tree: &'t Tree<'_>, dir: &[u8], unread: &mut Vec<String>) -> Vec<&'t Entry> {
    let all: Vec<&Entry> = tree
        .children(dir)
        .into_iter()
        .filter(|e| e.is_file() || e.link.is_some())
        .collect();
    if all.len() > MAX_PER_DIR {
        unread.push(format!(
            "{}: {} entries, only the first {MAX_PER_DIR} read",
            shown(dir),
            all.len()
        ));
    }
    all.into_iter().take(MAX_PER_DIR).collect()
}

fn gather_persistence(tree: &Tree<'_>, f: &mut LinuxFacts) {
    let mut out = Vec::new();
    let mut unread = Vec::new();
    // cron
    let mut crontabs: Vec<(Vec<u8>, Dialect, Option<String>)> = vec![
        (b"/etc/crontab".to_vec(), Dialect::System, None),
        (b"/etc/anacrontab".to_vec(), Dialect::Anacron, None),
    ];
    for e in files_in(tree, b"/etc/cron.d", &mut unread) {
        crontabs.push((e.path.clone(), Dialect::System, None));
    }
    for dir in [
        &b"/var/spool/cron/crontabs"[..],
        b"/var/spool/cron",
        b"/var/spool/cron/tabs",
    ] {
        for e in files_in(tree, dir, &mut unread) {
            let user = shown(e.path.rsplit(|&b| b == b'/').next().unwrap_or_default());
            crontabs.push((e.path.clone(), Dialect::User, Some(user)));
        }
    }
    for (path, dialect, user) in crontabs {
        let Some(data) = read_text(tree, &path, &mut unread) else {
            continue;
        };
        for job in cron::parse(&data, dialect) {
            let mut p = entry(
                tree,
                f,
                PersistKind::Cron,
                &path,
                format!("{} {}", job.schedule, job.command),
            );
            p.line = Some(job.line);
            p.user = job.user.or_else(|| user.clone());
            p.program = program(tree, f, &job.command);
            out.push(p);
        }
    }
    // Scripts run by run-parts and at jobs: the file is the command.
    let script_dirs: &[(&[u8], PersistKind)] = &[
        (b"/etc/cron.hourly", PersistKind::CronScript),
        (b"/etc/cron.daily", PersistKind::CronScript),
        (b"/etc/cron.weekly", PersistKind::CronScript),
        (b"/etc/cron.monthly", PersistKind::CronScript),
        (b"/etc/cron.yearly", PersistKind::CronScript),
        (b"/var/spool/cron/atjobs", PersistKind::At),
        (b"/var/spool/at", PersistKind::At),
        (b"/etc/update-motd.d", PersistKind::Motd),
        (b"/etc/profile.d", PersistKind::Profile),
    ];
    for (dir, kind) in script_dirs {
        for e in files_in(tree, dir, &mut unread) {
            let name = e.path.rsplit(|&b| b == b'/').next().unwrap_or_default();
            if name.starts_with(b".") {
                continue;
            }
            let text = read_text(tree, &e.path, &mut unread)
                .map(|d| String::from_utf8_lossy(&d).into_owned())
                .unwrap_or_default();
            out.push(entry(tree, f, *kind, &e.path, text));
        }
    }
    // Single files that run at start-up or login.
    let singles: &[(&[u8], PersistKind)] = &[
        (b"/etc/rc.local", PersistKind::RcLocal),
        (b"/etc/rc.d/rc.local", PersistKind::RcLocal),
        (b"/etc/profile", PersistKind::Profile),
        (b"/etc/bash.bashrc", PersistKind::Profile),
        (b"/etc/environment", PersistKind::Profile),
        (b"/etc/zsh/zshrc", PersistKind::Profile),
        (b"/etc/ld.so.preload", PersistKind::LdPreload),
        (b"/etc/ld.so.conf", PersistKind::LdSoConf),
    ];
    for (path, kind) in singles {
        if let Some(data) = read_text(tree, path, &mut unread) {
            out.push(entry(
                tree,
                f,
                *kind,
                path,
                String::from_utf8_lossy(&data).into_owned(),
            ));
        }
    }
    for e in files_in(tree, b"/etc/ld.so.conf.d", &mut unread) {
        if let Some(data) = read_text(tree, &e.path, &mut unread) {
            out.push(entry(
                tree,
                f,
                PersistKind::LdSoConf,
                &e.path,
                String::from_utf8_lossy(&data).into_owned(),
            ));
        }
    }
    // Line-based: udev RUN/PROGRAM, modprobe install/remove.
    let line_dirs: &[(&[u8], PersistKind, &[&str])] = &[
        (
            b"/etc/udev/rules.d",
            PersistKind::Udev,
            &["RUN", "PROGRAM", "IMPORT{program}"],
        ),
        (
            b"/usr/lib/udev/rules.d",
            PersistKind::Udev,
            &["RUN", "PROGRAM", "IMPORT{program}"],
        ),
        (
            b"/lib/udev/rules.d",
            PersistKind::Udev,
            &["RUN", "PROGRAM", "IMPORT{program}"],
        ),
        (
            b"/etc/modprobe.d",
            PersistKind::Modprobe,
            &["install ", "remove "],
        ),
        (
            b"/usr/lib/modprobe.d",
            PersistKind::Modprobe,
            &["install ", "remove "],
        ),
        (
            b"/lib/modprobe.d",
            PersistKind::Modprobe,
            &["install ", "remove "],
        ),
    ];
    for (dir, kind, needles) in line_dirs {
        for e in files_in(tree, dir, &mut unread) {
            let Some(data) = read_text(tree, &e.path, &mut unread) else {
                continue;
            };
            for (i, line) in String::from_utf8_lossy(&data)
                .lines()
                .enumerate()
                .take(100_000)
            {
                let t = line.trim();
                if t.starts_with('#') || !needles.iter().any(|n| t.contains(n)) {
                    continue;
                }
                let mut p = entry(tree, f, *kind, &e.path, t.to_string());
                p.line = Some(i + 1);
                out.push(p);
            }
        }
    }
    gather_systemd(tree, f, &mut out, &mut unread);
    gather_init(tree, f, &mut out, &mut unread);
    // Shell start-up files of every account with a home.
    let rc_names: &[&[u8]] = &[
        b".bashrc",
        b".bash_profile",
        b".bash_login",
        b".profile",
        b".bash_logout",
        b".zshrc",
        b".zprofile",
        b".cshrc",
        b".tcshrc",
    ];
    let mut homes: Vec<(String, Vec<u8>)> = f
        .users()
        .iter()
        .filter(|u| !u.home.is_empty() && u.home != "/" && u.home != "/nonexistent")
        .filter_map(|u| tree.resolve(u.home.as_bytes()).map(|h| (u.name.clone(), h)))
        .collect();
    homes.sort_by(|a, b| a.1.cmp(&b.1));
    homes.dedup_by(|a, b| a.1 == b.1);
    for (user, home) in homes.iter().take(MAX_PER_DIR) {
        for name in rc_names {
            let mut path = home.clone();
            path.push(b'/');
            path.extend_from_slice(name);
            if let Some(data) = read_text(tree, &path, &mut unread) {
                let mut p = entry(
                    tree,
                    f,
                    PersistKind::ShellRc,
                    &path,
                    String::from_utf8_lossy(&data).into_owned(),
                );
                p.user = Some(user.clone());
                out.push(p);
            }
        }
        let mut units = home.clone();
        units.extend_from_slice(b"/.config/systemd/user");
        for e in tree.under(&units).into_iter().take(MAX_PER_DIR) {
            if e.is_file() {
                if let Some(data) = read_text(tree, &e.path, &mut unread) {
                    out.extend(unit_entries(tree, f, e, &data, Some(user.clone())));
                }
            }
        }
    }
    f.persistence = out;
    f.unread.extend(unread);
}

/// Entries for one unit file: one per command it runs, or one for the file.
fn unit_entries(
    tree: &Tree<'_>,
    f: &LinuxFacts,
    e: &Entry,
    data: &[u8],
    user: Option<String>,
) -> Vec<Persist> {
    let unit = systemd::parse(data);
    let mut out = Vec::new();
    for x in &unit.execs {
        let mut p = entry(
            tree,
            f,
            PersistKind::Systemd,
            &e.path,
            format!("{}={}", x.key, x.command),
        );
        p.line = Some(x.line);
        p.user.clone_from(&user);
        p.program = program(tree, f, &x.command);
        out.push(p);
    }
    for (line, env) in &unit.loader_env {
        let mut p = entry(
            tree,
            f,
            PersistKind::Systemd,
            &e.path,
            format!("Environment={env}"),
        );
        p.line = Some(*line);
        out.push(p);
    }
    if out.is_empty() && !unit.schedules.is_empty() {
        out.push(entry(
            tree,
            f,
            PersistKind::Systemd,
            &e.path,
            unit.schedules.join(" "),
        ));
    }
    out
}

fn gather_systemd(
    tree: &Tree<'_>,
    f: &LinuxFacts,
    out: &mut Vec<Persist>,
    unread: &mut Vec<String>,
) {
    // Enablement: every link in a *.wants / *.requires directory, by unit name.
    let mut enabled: BTreeSet<Vec<u8>> = BTreeSet::new();
    let mut dirs: Vec<&[u8]> = systemd::SYSTEM_UNIT_DIRS
        .iter()
        .map(|d| d.as_bytes())
        .collect();
    dirs.extend(systemd::USER_UNIT_DIRS.iter().map(|d| d.as_bytes()));
    for dir in &dirs {
        for e in tree.under(dir) {
            let parent = e.path.rsplitn(2, |&b| b == b'/').nth(1).unwrap_or_default();
            if parent.ends_with(b".wants") || parent.ends_with(b".requires") {
                if let Some(name) = e.path.rsplit(|&b| b == b'/').next() {
                    enabled.insert(name.to_vec());
                }
            }
        }
    }
    for dir in &dirs {
        let all = tree.under(dir);
        if all.len() > 20 * MAX_PER_DIR {
            unread.push(format!(
                "{}: {} entries, only the first {} read",
                shown(dir),
                all.len(),
                20 * MAX_PER_DIR
            ));
        }
        for e in all.into_iter().take(20 * MAX_PER_DIR) {
            if !e.is_file() {
                continue;
            }
            // Packaged units that verify are the vendor's: not read again.
            let vendor_dir = !dir.starts_with(b"/etc")
                && !dir.starts_with(b"/usr/local")
                && !dir.starts_with(b"/run");
            if vendor_dir && f.verified(tree, &e.path) {
                continue;
            }
            let Some(data) = read_text(tree, &e.path, unread) else {
                continue;
            };
            let name = e
                .path
                .rsplit(|&b| b == b'/')
                .next()
                .unwrap_or_default()
                .to_vec();
            let is_dropin = e
                .path
                .rsplitn(2, |&b| b == b'/')
                .nth(1)
                .is_some_and(|p| p.ends_with(b".d"));
            for mut p in unit_entries(tree, f, e, &data, None) {
                p.enabled = (!is_dropin).then(|| enabled.contains(&name));
                out.push(p);
            }
        }
    }
}

fn gather_init(tree: &Tree<'_>, f: &LinuxFacts, out: &mut Vec<Persist>, unread: &mut Vec<String>) {
    let mut started: BTreeSet<Vec<u8>> = BTreeSet::new();
    for rc in [
        &b"/etc/rc2.d"[..],
        b"/etc/rc3.d",
        b"/etc/rc4.d",
        b"/etc/rc5.d",
        b"/etc/rcS.d",
        b"/etc/rc.d/rc3.d",
    ] {
        for e in tree.children(rc) {
            let name = e.path.rsplit(|&b| b == b'/').next().unwrap_or_default();
            if name.starts_with(b"S") {
                if let Some(t) = tree.resolve(&e.path) {
                    started.insert(t);
                }
            }
        }
    }
    for dir in [&b"/etc/init.d"[..], b"/etc/rc.d/init.d"] {
        for e in files_in(tree, dir, unread) {
            if !e.is_file() || f.verified(tree, &e.path) {
                continue;
            }
            let text = read_text(tree, &e.path, unread)
                .map(|d| String::from_utf8_lossy(&d).into_owned())
                .unwrap_or_default();
            let mut p = entry(tree, f, PersistKind::Init, &e.path, text);
            p.enabled = Some(started.contains(&e.path));
            out.push(p);
        }
    }
}

/// Shells and interpreters whose bytes a setuid copy would share.
const INTERPRETERS: &[&[u8]] = &[
    b"/bin/sh",
    b"/bin/bash",
    b"/bin/dash",
    b"/bin/zsh",
    b"/bin/ash",
    b"/bin/busybox",
    b"/usr/bin/python3",
    b"/usr/bin/perl",
    b"/usr/bin/env",
    b"/bin/ksh",
    b"/usr/bin/find",
    b"/usr/bin/vim.basic",
];

fn sha256_of(tree: &Tree<'_>, e: &Entry) -> Option<String> {
    if e.meta.size > MAX_HASHED {
        return None;
    }
    let mut h = Sha256::new();
    tree.stream(e, &mut |b| h.update(b)).ok()?;
    Some(packages::hex(&h.finalize()))
}

/// Places whose executables are odd.
fn odd_place(path: &[u8]) -> Option<&'static str> {
    const TMP: &[&[u8]] = &[b"/tmp/", b"/var/tmp/", b"/dev/shm/", b"/run/shm/"];
    if TMP.iter().any(|t| path.starts_with(t)) {
        return Some("temporary directory");
    }
    let comps: Vec<&[u8]> = path
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty())
        .collect();
    let dirs = comps.len().saturating_sub(1);
    let hidden = comps
        .iter()
        .take(dirs)
        .any(|c| c.starts_with(b".") && !matches!(*c, b".git" | b".cache"));
    hidden.then_some("hidden directory")
}

fn gather_files(tree: &Tree<'_>, f: &mut LinuxFacts) {
    for p in INTERPRETERS {
        if let Some(e) = tree.lookup(p).filter(|e| e.is_file()) {
            if let Some(h) = sha256_of(tree, e) {
                f.interpreters.push((shown(p), h));
            }
        }
    }
    let mut strays = Vec::new();
    let mut setid = Vec::new();
    for e in tree.entries() {
        if e.meta.kind != FileType::File {
            continue;
        }
        if e.perm() & 0o6000 != 0 {
            setid.push(SetId {
                path: shown(&e.path),
                mode: e.perm(),
                uid: e.meta.uid,
                owner: f.owner(tree, &e.path),
                sha256: sha256_of(tree, e),
            });
        }
        if let Some(place) = odd_place(&e.path) {
            let mut head = [0u8; 4];
            let n = tree.fs().read(e.meta.id, 0, &mut head).unwrap_or(0);
            let head = head.get(..n).unwrap_or_default();
            let what = if head.starts_with(b"\x7fELF") {
                Some("elf")
            } else if head.starts_with(b"#!") {
                Some("script")
            } else if e.perm() & 0o111 != 0 {
                Some("exec-bit")
            } else {
                None
            };
            if let Some(what) = what {
                strays.push(Stray {
                    path: shown(&e.path),
                    what,
                    place,
                    size: e.meta.size,
                    mode: e.perm(),
                });
            }
        }
    }
    f.setid = setid;
    f.strays = strays;
    let (caps, unreadable) = file_caps(tree, f);
    f.caps = caps;
    f.unread.extend(unreadable);
}

/// Files whose `security.capability` grants something. Filesystems that
/// keep no extended attributes (FAT, ISO) are skipped after the first
/// refusal.
fn file_caps(tree: &Tree<'_>, f: &LinuxFacts) -> (Vec<FileCap>, Vec<String>) {
    let mut out = Vec::new();
    let mut unreadable = Vec::new();
    for e in tree.entries().iter().filter(|e| e.is_file()) {
        let attrs = match tree.fs().xattrs(e.meta.id) {
            Ok(a) => a,
            Err(qvet_guestfs::FsError::Unsupported(_)) => return (out, unreadable),
            Err(err) => {
                // Capabilities could not be checked: said, not passed.
                if unreadable.len() < 100 {
                    unreadable.push(format!("{}: extended attributes: {err}", shown(&e.path)));
                }
                continue;
            }
        };
        for a in attrs.iter().filter(|a| a.name == b"security.capability") {
            let Some(c) = qvet_guestfs::xattr::decode_capability(&a.value) else {
                continue;
            };
            if c.permitted | c.inheritable == 0 {
                continue;
            }
            out.push(FileCap {
                path: shown(&e.path),
                permitted: qvet_guestfs::xattr::capability_names(c.permitted | c.inheritable),
                effective: c.effective,
                owner: f.owner(tree, &e.path),
                verified: f.verified(tree, &e.path),
            });
        }
    }
    (out, unreadable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_places() {
        assert_eq!(odd_place(b"/tmp/x"), Some("temporary directory"));
        assert_eq!(odd_place(b"/root/.x/y"), Some("hidden directory"));
        assert_eq!(odd_place(b"/root/.bashrc"), None);
        assert_eq!(odd_place(b"/usr/bin/ls"), None);
        assert_eq!(odd_place(b"/home/a/.cache/x"), None);
    }

    #[test]
    fn program_words() {
        assert_eq!(
            program_word("cd / && run-parts --report /etc/cron.hourly"),
            Some("/etc/cron.hourly")
        );
        assert_eq!(program_word("-/usr/bin/agent --x"), Some("/usr/bin/agent"));
        assert_eq!(
            program_word("test -x /usr/sbin/anacron || ( cd / && run-parts /etc/cron.daily )"),
            Some("/usr/sbin/anacron")
        );
        assert_eq!(program_word("true"), None);
    }

    #[test]
    fn os_release_fields() {
        let os = parse_os_release(
            b"PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n",
        );
        assert_eq!(os.id, "debian");
        assert_eq!(os.version_id, "12");
        assert_eq!(os.pretty_name, "Debian GNU/Linux 12 (bookworm)");
    }
}
