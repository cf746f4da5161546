//! What operating system a filesystem belongs to, with the evidence: Linux
//! distributions (os-release, lsb-release, debian_version, alpine-release,
//! redhat-release; hostname, architecture from ELF headers, package format
//! and count) and network appliances from their on-disk layouts — Cisco
//! IOS-XE bootflash (CSR1000v, Catalyst 8000V), NX-OS, IOSv, Arista EOS
//! flash, VyOS persistence partitions, FortiGate boot and data volumes,
//! MikroTik RouterOS — like libguestfs's inspector, without a VM.
//!
//! Facts only: each [`Os`] says what was seen where. Nothing is executed.

use crate::packages::Manager;
use crate::tree::{shown, Entry, Read, Tree};

/// Families with their own files and rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    /// A Linux root filesystem.
    Linux,
    /// Cisco IOS-XE (bootflash).
    IosXe,
    /// Cisco NX-OS (bootflash).
    NxOs,
    /// Cisco IOS (IOSv flash).
    Ios,
    /// VyOS / Vyatta.
    Vyos,
    /// Arista EOS (flash).
    Eos,
    /// Fortinet FortiOS.
    FortiOs,
    /// MikroTik RouterOS (CHR).
    RouterOs,
    /// Juniper Junos (FreeBSD, UFS).
    Junos,
}

impl Family {
    /// Name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Linux => "linux",
            Self::IosXe => "ios-xe",
            Self::NxOs => "nx-os",
            Self::Ios => "ios",
            Self::Vyos => "vyos",
            Self::Eos => "eos",
            Self::FortiOs => "fortios",
            Self::RouterOs => "routeros",
            Self::Junos => "junos",
        }
    }
}

/// One piece of evidence: a path and what it showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    /// Guest path (or a disk-level description).
    pub path: String,
    /// The value seen there.
    pub value: String,
}

/// An operating system found in one filesystem (or on the disk).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Os {
    /// The family.
    pub family: Family,
    /// The OS name (`Debian GNU/Linux`, `IOS-XE`, `VyOS` …).
    pub name: String,
    /// The product (`Cisco CSR1000v`, `Arista vEOS-lab` …).
    pub product: String,
    /// Version, when some file says it.
    pub version: Option<String>,
    /// The partition (None: the disk as a whole).
    pub partition: Option<u32>,
    /// What was seen, where.
    pub evidence: Vec<Evidence>,
    /// Other facts: hostname, architecture, package format and count.
    pub details: Vec<(&'static str, String)>,
}

impl Os {
    fn new(family: Family, name: &str, product: &str, partition: Option<u32>) -> Self {
        Self {
            family,
            name: name.into(),
            product: product.into(),
            version: None,
            partition,
            evidence: Vec::new(),
            details: Vec::new(),
        }
    }

    fn saw(&mut self, path: impl Into<String>, value: impl Into<String>) {
        if self.evidence.len() < 32 {
            self.evidence.push(Evidence {
                path: path.into(),
                value: value.into(),
            });
        }
    }
}

/// Junos (or another FreeBSD) on a UFS partition qvet cannot read: named
/// from the partition's superblock alone.
pub fn junos_on_ufs(partition: Option<u32>) -> Os {
    let mut os = Os::new(Family::Junos, "Junos", "Juniper Junos (FreeBSD)", partition);
    os.saw(
        partition.map_or("disk".to_string(), |n| format!("partition {n}")),
        "UFS superblock (FreeBSD, as Junos uses)",
    );
    os
}

/// Bytes read of a file identification looks into.
const MAX_READ: u64 = 256 << 10;

fn text(tree: &Tree<'_>, path: &[u8]) -> Option<String> {
    match tree.read(path, MAX_READ) {
        Read::Content(c) => Some(String::from_utf8_lossy(&c).into_owned()),
        _ => None,
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").trim().to_string()
}

/// Files at the root of the filesystem.
fn root_files<'a>(tree: &'a Tree<'_>) -> Vec<&'a Entry> {
    tree.children(b"/")
}

fn name_of(e: &Entry) -> String {
    let n = e.path.rsplit(|&b| b == b'/').next().unwrap_or(&e.path);
    String::from_utf8_lossy(n).into_owned()
}

/// Every operating system this filesystem shows, with its evidence.
/// `packages` is the package manager and count when the caller gathered
/// them (the Linux facts).
pub fn identify(
    tree: &Tree<'_>,
    partition: Option<u32>,
    packages: Option<(Manager, usize)>,
) -> Vec<Os> {
    let mut found = Vec::new();
    found.extend(linux(tree, partition, packages));
    found.extend(iosxe(tree, partition));
    found.extend(nxos_ios(tree, partition));
    found.extend(eos(tree, partition));
    found.extend(vyos(tree, partition));
    found.extend(fortios(tree, partition));
    found.extend(routeros(tree, partition));
    found
}

/// A Linux root: os-release and its older relatives.
fn linux(
    tree: &Tree<'_>,
    partition: Option<u32>,
    packages: Option<(Manager, usize)>,
) -> Option<Os> {
    let mut os = Os::new(Family::Linux, "Linux", "Linux", partition);
    let mut any = false;
    for path in ["/etc/os-release", "/usr/lib/os-release"] {
        let Some(t) = text(tree, path.as_bytes()) else {
            continue;
        };
        let get = |k: &str| {
            t.lines()
                .filter_map(|l| l.split_once('='))
                .find(|(key, _)| key.trim() == k)
                .map(|(_, v)| v.trim().trim_matches(['"', '\'']).to_string())
        };
        if let Some(n) = get("NAME") {
            os.name = n.clone();
            os.product = get("PRETTY_NAME").unwrap_or(n);
            os.version = get("VERSION_ID").or_else(|| get("VERSION"));
            os.saw(path, format!("NAME={}", os.name));
            any = true;
            break;
        }
    }
    if let Some(t) = text(tree, b"/etc/lsb-release") {
        let get = |k: &str| {
            t.lines()
                .filter_map(|l| l.split_once('='))
                .find(|(key, _)| key.trim() == k)
                .map(|(_, v)| v.trim().trim_matches('"').to_string())
        };
        if let Some(id) = get("DISTRIB_ID") {
            if !any {
                os.name = id.clone();
                os.product = get("DISTRIB_DESCRIPTION").unwrap_or(id.clone());
                os.version = get("DISTRIB_RELEASE");
            }
            os.saw("/etc/lsb-release", format!("DISTRIB_ID={id}"));
            any = true;
        }
    }
    for (path, name) in [
        ("/etc/debian_version", "Debian GNU/Linux"),
        ("/etc/alpine-release", "Alpine Linux"),
        ("/etc/redhat-release", ""),
    ] {
        let Some(t) = text(tree, path.as_bytes()) else {
            continue;
        };
        let line = first_line(&t);
        if line.is_empty() {
            continue;
        }
        if !any {
            if name.is_empty() {
                // "CentOS Linux release 7.9.2009 (Core)"
                let (n, v) = line
                    .split_once(" release ")
                    .map_or((line.as_str(), None), |(n, v)| {
                        (n, v.split_whitespace().next())
                    });
                os.name = n.to_string();
                os.product = line.clone();
                os.version = v.map(str::to_string);
            } else {
                os.name = name.into();
                os.product = format!("{name} {line}");
                os.version = Some(line.clone());
            }
        }
        os.saw(path, line);
        any = true;
    }
    if !any {
        return None;
    }
    if let Some(h) = text(tree, b"/etc/hostname").map(|t| first_line(&t)) {
        if !h.is_empty() {
            os.details.push(("hostname", h));
        }
    }
    for path in [
        "/bin/sh",
        "/sbin/init",
        "/usr/bin/env",
        "/bin/busybox",
        "/bin/ls",
    ] {
        if let Some(arch) = elf_arch(tree, path.as_bytes()) {
            os.details.push(("architecture", arch.to_string()));
            os.saw(path, format!("ELF {arch}"));
            break;
        }
    }
    match packages {
        Some((m, n)) => {
            os.details.push(("package_format", m.name().to_string()));
            os.details.push(("packages", n.to_string()));
        }
        None if tree.lookup(b"/var/lib/rpm").is_some()
            || tree.lookup(b"/usr/lib/sysimage/rpm").is_some() =>
        {
            os.details.push(("package_format", "rpm (not read)".into()));
        }
        None => {}
    }
    Some(os)
}

/// The architecture an ELF header names.
pub fn elf_arch(tree: &Tree<'_>, path: &[u8]) -> Option<&'static str> {
    let entry = tree.lookup(path)?;
    if !entry.is_file() || entry.meta.size < 20 {
        return None;
    }
    let mut head = [0u8; 20];
    let n = tree.fs().read(entry.meta.id, 0, &mut head).ok()?;
    if n < head.len() {
        return None;
    }
    if head.get(..4) != Some(b"\x7fELF") {
        return None;
    }
    let class64 = head.get(4) == Some(&2);
    let big = head.get(5) == Some(&2);
    let m = head.get(18..20)?;
    let machine = if big {
        u16::from_be_bytes([*m.first()?, *m.get(1)?])
    } else {
        u16::from_le_bytes([*m.first()?, *m.get(1)?])
    };
    Some(match (machine, class64) {
        (0x3e, _) => "x86_64",
        (0x03, _) => "i386",
        (0xb7, _) => "aarch64",
        (0x28, _) => "arm",
        (0x08, true) => "mips64",
        (0x08, false) => "mips",
        (0x14, _) => "ppc",
        (0x15, _) => "ppc64",
        (0xf3, true) => "riscv64",
        (0xf3, false) => "riscv32",
        (0x2b, _) => "sparc64",
        (0x16, _) => "s390x",
        _ => "unknown",
    })
}

/// The version in a Cisco image file name:
/// `csr1000v-mono-universalk9.16.12.01b.SPA.pkg` → `16.12.01b`,
/// `nxos64-cs.10.3.1.F.bin` → `10.3.1.F`.
pub fn cisco_version(file: &str) -> Option<String> {
    let (_, rest) = file.split_once('.')?;
    let rest = rest
        .strip_suffix(".pkg")
        .or_else(|| rest.strip_suffix(".bin"))?;
    let rest = rest.strip_suffix(".SPA").unwrap_or(rest);
    rest.starts_with(|c: char| c.is_ascii_digit())
        .then(|| rest.to_string())
}

/// The product an IOS-XE package or image name names.
pub fn iosxe_product(file: &str) -> Option<&'static str> {
    let f = file.to_ascii_lowercase();
    [
        ("csr1000v", "Cisco CSR1000v"),
        ("c8000v", "Cisco Catalyst 8000V"),
        ("c9800-cl", "Cisco Catalyst 9800-CL"),
        ("cat9k", "Cisco Catalyst 9000"),
        ("cat8k", "Cisco Catalyst 8000"),
        ("c8000be", "Cisco Catalyst 8000 Edge"),
        ("isr4", "Cisco ISR 4000"),
        ("isr1100", "Cisco ISR 1100"),
        ("asr1000", "Cisco ASR 1000"),
    ]
    .iter()
    .find(|(p, _)| f.starts_with(p))
    .map(|(_, name)| *name)
}

/// First-boot artefacts of IOS-XE bootflash (domain notes §3.1).
pub const IOSXE_FIRST_BOOT: &[&str] = &[
    ".installer",
    "core",
    ".prst_sync",
    ".rollback_timer",
    "tracelogs",
    ".dbpersist",
    "virtual-instance",
    "virtual-instance.conf",
    "throughput_monitor_params",
    "cvac.log",
    ".cvac_version",
    ".cvac_skip_once",
    "ovf-env.xml.md5",
    "csrlxc-cfg.log",
    "onep",
    "iox",
    "syslog",
    "pnp-info",
    "license_evlog",
    "mode_event_log",
    "bootlog_history",
    "gs_script",
    "guest-share",
    "iox_host_data_share",
    ".iox_dir_list",
    "ios_core.p7b",
    "iid_check.log",
    "vman_fdb",
    "appqoe-service",
    ".CsrLxc_LastInstall",
    ".super.iso.dir",
    "lost+found",
    "pnp-tech",
    "trustidrootx3_ca",
    "nvram_",
    ".ssh",
    "sysboot",
    ".sdwaninstallerfs",
    "crashinfo",
    "memleak.tcl",
    "tech_support",
    "SHARED-IOX",
    "dc_profile_dir",
    "ztp",
];

fn iosxe(tree: &Tree<'_>, partition: Option<u32>) -> Option<Os> {
    let files = root_files(tree);
    let images: Vec<String> = files
        .iter()
        .filter(|e| e.is_file())
        .map(|e| name_of(e))
        .filter(|n| (n.ends_with(".pkg") || n.ends_with(".bin")) && iosxe_product(n).is_some())
        .collect();
    let conf = tree.lookup(b"/packages.conf").filter(|e| e.is_file());
    if images.is_empty() && conf.is_none() {
        return None;
    }
    let conf_text = conf.and_then(|_| text(tree, b"/packages.conf"));
    // packages.conf alone is not enough: it must read like one.
    let conf_ok = conf_text.as_deref().is_some_and(|t| {
        t.contains("packages_conf")
            || t.lines().any(|l| l.trim_start().starts_with("sha1sum:"))
            || t.contains(".pkg")
    });
    if images.is_empty() && !conf_ok {
        return None;
    }
    let mut os = Os::new(Family::IosXe, "IOS-XE", "Cisco IOS-XE", partition);
    if conf_ok {
        os.saw("/packages.conf", "IOS-XE provisioning file");
    }
    // The version from the packages the provisioning file names, else from
    // the package files present.
    let named: Vec<String> = conf_text
        .as_deref()
        .map(|t| {
            t.lines()
                .filter(|l| !l.trim_start().starts_with('#'))
                .filter_map(|l| l.split_whitespace().last())
                .filter(|w| w.ends_with(".pkg"))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    for n in named.iter().chain(images.iter()) {
        if let Some(p) = iosxe_product(n) {
            os.product = p.to_string();
        }
        if os.version.is_none() {
            os.version = cisco_version(n);
            if let Some(v) = &os.version {
                os.saw(format!("/{n}"), format!("version {v}"));
            }
        }
    }
    for n in images.iter().take(8) {
        let path = format!("/{n}");
        if !os.evidence.iter().any(|e| e.path == path) {
            os.saw(path, "IOS-XE package or image");
        }
    }
    if let Some(t) = &conf_text {
        if let Some(build) = t
            .lines()
            .find(|l| l.contains("provisioned software file for build"))
        {
            os.saw(
                "/packages.conf",
                build.trim_start_matches(['#', ' ']).to_string(),
            );
        }
    }
    let booted: Vec<String> = files
        .iter()
        .map(|e| name_of(e))
        .filter(|n| IOSXE_FIRST_BOOT.iter().any(|a| n.starts_with(a)) && n != "lost+found")
        .collect();
    if !booted.is_empty() {
        os.details.push(("first_boot_artefacts", booted.join(", ")));
    }
    Some(os)
}

fn nxos_ios(tree: &Tree<'_>, partition: Option<u32>) -> Vec<Os> {
    let mut out = Vec::new();
    for e in root_files(tree).into_iter().filter(|e| e.is_file()) {
        let n = name_of(e);
        let lower = n.to_ascii_lowercase();
        if (lower.starts_with("nxos64") || lower.starts_with("nxos.") || lower.starts_with("nxosv"))
            && lower.ends_with(".bin")
            && !out.iter().any(|o: &Os| o.family == Family::NxOs)
        {
            let mut os = Os::new(Family::NxOs, "NX-OS", "Cisco Nexus 9000v", partition);
            os.version = cisco_version(&n);
            os.saw(format!("/{n}"), "NX-OS system image");
            out.push(os);
        } else if lower.starts_with("vios") && !out.iter().any(|o: &Os| o.family == Family::Ios) {
            let mut os = Os::new(
                Family::Ios,
                "IOS",
                if lower.starts_with("vios_l2") || lower.starts_with("viosl2") {
                    "Cisco IOSvL2"
                } else {
                    "Cisco IOSv"
                },
                partition,
            );
            // vios-adventerprisek9-m.spa.159-3.m6 → 159-3.m6
            os.version = lower.rsplit_once(".spa.").map(|(_, v)| v.to_string());
            os.saw(format!("/{n}"), "IOSv system image");
            out.push(os);
        }
    }
    out
}

fn eos(tree: &Tree<'_>, partition: Option<u32>) -> Option<Os> {
    let files = root_files(tree);
    let swis: Vec<String> = files
        .iter()
        .filter(|e| e.is_file())
        .map(|e| name_of(e))
        .filter(|n| n.to_ascii_lowercase().ends_with(".swi"))
        .collect();
    let boot_config = text(tree, b"/boot-config");
    let swi_line = boot_config.as_deref().and_then(|t| {
        t.lines()
            .find(|l| l.trim_start().starts_with("SWI="))
            .map(|l| l.trim().to_string())
    });
    if swis.is_empty() && swi_line.is_none() {
        return None;
    }
    let mut os = Os::new(Family::Eos, "EOS", "Arista EOS", partition);
    let booted = swi_line
        .as_deref()
        .and_then(|l| l.rsplit(['/', ':']).next())
        .map(str::to_string);
    if let Some(l) = &swi_line {
        os.saw("/boot-config", l.clone());
    }
    for n in booted.iter().chain(swis.iter()) {
        if n.to_ascii_lowercase().contains("veos") {
            os.product = "Arista vEOS-lab".into();
        }
        if os.version.is_none() {
            // vEOS-lab-4.28.3M.swi, EOS-4.30.1F.swi
            let stem = n.strip_suffix(".swi").unwrap_or(n);
            os.version = stem
                .rsplit('-')
                .next()
                .filter(|v| v.starts_with(|c: char| c.is_ascii_digit()))
                .map(str::to_string);
        }
    }
    for n in swis.iter().take(4) {
        os.saw(format!("/{n}"), "EOS software image");
    }
    for extra in [
        "/startup-config",
        "/zerotouch-config",
        "/boot-extensions",
        "/.extensions",
    ] {
        if tree.lookup(extra.as_bytes()).is_some() {
            os.saw(extra, "present");
        }
    }
    Some(os)
}

fn vyos(tree: &Tree<'_>, partition: Option<u32>) -> Option<Os> {
    let mut os = Os::new(Family::Vyos, "VyOS", "VyOS", partition);
    let mut images = Vec::new();
    for d in tree
        .children(b"/boot")
        .into_iter()
        .filter(|e| e.meta.kind == qvet_guestfs::FileType::Dir)
    {
        let name = name_of(d);
        let squash = tree
            .children(&d.path)
            .into_iter()
            .find(|e| e.is_file() && name_of(e).ends_with(".squashfs"));
        let rw = ["rw", "live-rw"].iter().find(|r| {
            tree.lookup(&[d.path.as_slice(), b"/", r.as_bytes()].concat())
                .is_some()
        });
        if squash.is_some() || rw.is_some() {
            if let Some(s) = squash {
                os.saw(shown(&s.path), "VyOS system image (squashfs)");
            }
            if let Some(r) = rw {
                os.saw(
                    format!("{}/{r}", shown(&d.path)),
                    "persistent overlay (rw layer)",
                );
            }
            images.push(name);
        }
    }
    if images.is_empty() {
        return None;
    }
    // The image GRUB boots by default, else the first.
    let grub = text(tree, b"/boot/grub/grub.cfg").unwrap_or_default();
    let default = images
        .iter()
        .find(|i| grub.contains(&format!("/boot/{i}/")))
        .or(images.first());
    os.version = default.cloned();
    if images.len() > 1 {
        os.details.push(("images", images.join(", ")));
    }
    if grub.to_ascii_lowercase().contains("vyos") {
        os.saw("/boot/grub/grub.cfg", "GRUB menu names VyOS");
    }
    Some(os)
}

/// FortiGate boot-volume markers (domain notes §3.5).
pub const FORTIOS_MARKERS: &[&str] = &[
    ".fgtsum",
    "flatkc",
    "flatkc.chk",
    "rootfs.gz",
    "rootfs.gz.chk",
    "filechecksum",
    "datafs.tar.gz",
    "extlinux.conf",
];

fn fortios(tree: &Tree<'_>, partition: Option<u32>) -> Option<Os> {
    let present: Vec<&str> = FORTIOS_MARKERS
        .iter()
        .copied()
        .filter(|m| tree.lookup(format!("/{m}").as_bytes()).is_some())
        .collect();
    let data = tree.lookup(b"/config/sys_global.conf.gz").is_some()
        || (tree.lookup(b"/.db").is_some() && tree.lookup(b"/config").is_some());
    let strong = present.contains(&"flatkc")
        || present.contains(&"rootfs.gz")
        || present.contains(&".fgtsum");
    if !(data || (strong && present.len() >= 2)) {
        return None;
    }
    let mut os = Os::new(
        Family::FortiOs,
        "FortiOS",
        "Fortinet FortiGate-VM",
        partition,
    );
    for m in &present {
        os.saw(format!("/{m}"), "FortiGate boot volume marker");
    }
    if data {
        os.saw("/config", "FortiGate data volume (configuration)");
    }
    if let Some(msg) = text(tree, b"/boot.msg") {
        // "FortiGate-VM64 v7.0.12,build0523,230921 (GA)"
        if let Some(v) = msg
            .split_whitespace()
            .find(|w| w.starts_with('v') && w.contains(",build"))
        {
            os.version = v
                .split(',')
                .next()
                .map(|s| s.trim_start_matches('v').to_string());
            os.saw("/boot.msg", v.to_string());
        }
    }
    Some(os)
}

fn routeros(tree: &Tree<'_>, partition: Option<u32>) -> Option<Os> {
    let mut os = Os::new(Family::RouterOs, "RouterOS", "MikroTik RouterOS", partition);
    for marker in ["/var/pdb", "/rw/disk", "/rw/store", "/nova", "/flash/rw"] {
        if tree.lookup(marker.as_bytes()).is_some() {
            os.saw(marker, "RouterOS directory");
        }
    }
    let npks: Vec<String> = tree
        .entries()
        .iter()
        .filter(|e| e.is_file() && e.path.ends_with(b".npk"))
        .take(64)
        .map(|e| shown(&e.path))
        .collect();
    for n in npks.iter().take(8) {
        os.saw(n.clone(), "RouterOS package");
    }
    // `routeros-7.11.2.npk`, `routeros-x86-6.49.10.npk`
    os.version = npks.iter().find_map(|n| {
        let file = n.rsplit('/').next()?;
        let stem = file.strip_suffix(".npk")?;
        stem.starts_with("routeros")
            .then(|| stem.rsplit('-').next())
            .flatten()
            .filter(|v| v.starts_with(|c: char| c.is_ascii_digit()))
            .map(str::to_string)
    });
    if os.evidence.is_empty() || (npks.is_empty() && os.evidence.len() < 2) {
        return None;
    }
    Some(os)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memfs::MemFs;

    fn ids(fs: &MemFs) -> Vec<(Family, String, Option<String>)> {
        let tree = Tree::walk(fs).unwrap();
        identify(&tree, Some(1), None)
            .into_iter()
            .map(|o| (o.family, o.product, o.version))
            .collect()
    }

    #[test]
    fn iosxe_bootflash() {
        let mut fs = MemFs::new();
        fs.file(
            "/packages.conf",
            0o644,
            b"#! /usr/binos/bin/packages_conf.sh\n\nsha1sum: 0000000000000000000000000000000000000000\n\
              boot  rp 0 0   rp_boot     csr1000v-rpboot.16.12.01b.SPA.pkg\n\
              iso   rp 0 0   rp_base     csr1000v-mono-universalk9.16.12.01b.SPA.pkg\n",
        )
        .file("/csr1000v-rpboot.16.12.01b.SPA.pkg", 0o644, b"x")
        .mkdir("/tracelogs");
        let got = ids(&fs);
        assert_eq!(
            got,
            vec![(
                Family::IosXe,
                "Cisco CSR1000v".into(),
                Some("16.12.01b".into())
            )]
        );
        // A packages.conf that is not one, alone, is nothing.
        let mut fs = MemFs::new();
        fs.file("/packages.conf", 0o644, b"QQQQ");
        assert!(ids(&fs).is_empty());
    }

    #[test]
    fn versions_from_names() {
        assert_eq!(
            cisco_version("c8000v-universalk9.17.06.01a.SPA.bin").as_deref(),
            Some("17.06.01a")
        );
        assert_eq!(
            cisco_version("nxos64-cs.10.3.1.F.bin").as_deref(),
            Some("10.3.1.F")
        );
        assert_eq!(cisco_version("nxos.9.3.9.bin").as_deref(), Some("9.3.9"));
        assert_eq!(cisco_version("packages.conf"), None);
        assert_eq!(
            iosxe_product("c8000v-rpboot.17.06.01a.SPA.pkg"),
            Some("Cisco Catalyst 8000V")
        );
    }

    #[test]
    fn eos_vyos_fortios_routeros() {
        let mut fs = MemFs::new();
        fs.file("/vEOS-lab-4.28.3M.swi", 0o644, b"PK")
            .file("/boot-config", 0o644, b"SWI=flash:/vEOS-lab-4.28.3M.swi\n")
            .file("/startup-config", 0o644, b"hostname x\n");
        assert_eq!(
            ids(&fs),
            vec![(
                Family::Eos,
                "Arista vEOS-lab".into(),
                Some("4.28.3M".into())
            )]
        );

        let mut fs = MemFs::new();
        fs.file("/boot/1.3.2/1.3.2.squashfs", 0o644, b"hsqs")
            .mkdir("/boot/1.3.2/rw/config")
            .file(
                "/boot/grub/grub.cfg",
                0o644,
                b"menuentry \"VyOS 1.3.2\" {\n linux /boot/1.3.2/vmlinuz\n}\n",
            );
        assert_eq!(
            ids(&fs),
            vec![(Family::Vyos, "VyOS".into(), Some("1.3.2".into()))]
        );

        let mut fs = MemFs::new();
        fs.file("/flatkc", 0o644, b"k")
            .file("/rootfs.gz", 0o644, b"\x1f\x8b")
            .file("/.fgtsum", 0o644, b"s")
            .file(
                "/boot.msg",
                0o644,
                b"FortiGate-VM64 v7.0.12,build0523,230921 (GA)\n",
            );
        assert_eq!(
            ids(&fs),
            vec![(
                Family::FortiOs,
                "Fortinet FortiGate-VM".into(),
                Some("7.0.12".into())
            )]
        );

        let mut fs = MemFs::new();
        fs.mkdir("/var/pdb/system")
            .file("/var/pdb/routeros-7.11.2.npk", 0o644, b"x");
        assert_eq!(
            ids(&fs),
            vec![(
                Family::RouterOs,
                "MikroTik RouterOS".into(),
                Some("7.11.2".into())
            )]
        );
    }

    #[test]
    fn linux_release_files() {
        let mut fs = MemFs::new();
        fs.file("/etc/os-release", 0o644, b"PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\n")
            .file("/etc/debian_version", 0o644, b"12.5\n")
            .file("/etc/hostname", 0o644, b"lab1\n");
        let tree = Tree::walk(&fs).unwrap();
        let os = identify(&tree, Some(2), None);
        assert_eq!(os.len(), 1);
        assert_eq!(os[0].product, "Debian GNU/Linux 12 (bookworm)");
        assert_eq!(os[0].version.as_deref(), Some("12"));
        assert_eq!(os[0].evidence.len(), 2);
        assert!(os[0].details.contains(&("hostname", "lab1".to_string())));

        let mut fs = MemFs::new();
        fs.file(
            "/etc/redhat-release",
            0o644,
            b"CentOS Linux release 7.9.2009 (Core)\n",
        );
        let tree = Tree::walk(&fs).unwrap();
        let os = identify(&tree, None, None);
        assert_eq!(os[0].name, "CentOS Linux");
        assert_eq!(os[0].version.as_deref(), Some("7.9.2009"));
    }
}
