//! `audit`: every layer over one image in one pass — identity, container,
//! layout, each filesystem walked once with its facts gathered and every
//! guest rule run, the reference diff, the policy — then the verdict.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use qvet_catalog::verify::{Report as Identity, Verdict as IdentityVerdict};
use qvet_guestfs::{ext::Ext, FileSystem, FsError};
use qvet_image::disk::BackingLink;
use qvet_image::{ByteSource, Disk};
use qvet_inspect::linux::LinuxFacts;
use qvet_inspect::os::{Family, Os};
use qvet_inspect::tree::{SubFs, Tree};
use qvet_volume::{FsKind, Partition, Window};

use crate::baseline::{self, Baseline, PartitionRecord};
use crate::diff::{self, ChangeKind};
use crate::finding::{Finding, Severity};
use crate::policy::Policy;
use crate::rules::{self, container, coverage, filesystem, identity, reference, routeros, Guest};
use crate::verdict::{self, Anchors, Verdict};

/// Bytes examined per gap for non-zero content.
pub const GAP_SCAN_LIMIT: u64 = 64 << 20;

/// How to audit.
#[derive(Default)]
pub struct Options<'a> {
    /// The original to compare with, file by file.
    pub reference: Option<&'a Arc<Disk>>,
    /// A file-level baseline of the original (used when there is no
    /// reference image).
    pub baseline: Option<&'a Baseline>,
    /// What the lab allows.
    pub policy: Option<&'a Policy>,
}

/// What one readable filesystem held.
#[derive(Debug, Clone)]
pub struct PartitionSummary {
    /// Partition number.
    pub number: u32,
    /// Filesystem kind (`ext4`, `vfat` …) or what was detected.
    pub filesystem: String,
    /// `PRETTY_NAME` of the OS, when it is a Linux root.
    pub os: Option<String>,
    /// Entries walked.
    pub entries: usize,
    /// Package manager and installed packages.
    pub packages: Option<(String, usize)>,
    /// Packaged files verified.
    pub verified_files: usize,
    /// Accounts in passwd.
    pub accounts: usize,
    /// Authorized keys found.
    pub keys: usize,
    /// Autostart entries found.
    pub persistence: usize,
    /// Accounts: (name, uid, shell).
    pub users: Vec<(String, u32, String)>,
    /// Authorized keys: (file, accounts, key type, fingerprint).
    pub authorized_keys: Vec<(String, String, String, String)>,
    /// Autostart entries: (kind, file, what it runs), at most [`LISTED`].
    pub services: Vec<(String, String, String)>,
}

/// Inventory items listed per partition (accounts, keys, services).
pub const LISTED: usize = 500;

/// What was read and what was not.
#[derive(Debug, Clone, Default)]
pub struct Coverage {
    /// Parts read ("partition 1 ext4: 7,512 entries, dpkg 115 packages verified").
    pub read: Vec<String>,
    /// Parts not read, with why.
    pub not_read: Vec<String>,
}

/// The audit of one image.
#[derive(Debug, Clone)]
pub struct Report {
    /// The image path as given.
    pub filename: String,
    /// The verdict.
    pub verdict: Verdict,
    /// Why, in one line.
    pub reason: String,
    /// Every finding, worst first.
    pub findings: Vec<Finding>,
    /// Coverage.
    pub coverage: Coverage,
    /// What each filesystem held.
    pub partitions: Vec<PartitionSummary>,
    /// The reference diff's change count, when one was used.
    pub reference_changes: Option<usize>,
    /// The operating systems found, per partition, with their evidence.
    pub os: Vec<Os>,
    /// The changes against the reference or baseline, as the diff found them.
    pub changes: Vec<diff::Change>,
}

impl Report {
    /// The worst severity that counts (not suppressed).
    pub fn worst(&self) -> Option<Severity> {
        self.findings.iter().filter_map(Finding::effective).max()
    }
}

/// Why an audit could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// Comparing with the reference failed.
    #[error("comparing with the reference: {0}")]
    Reference(#[source] diff::DiffError),
    /// Reading the disk failed.
    #[error("reading the disk: {0}")]
    Image(#[source] qvet_image::ImageError),
}

/// Audits `disk` (opened from `path`), with what `verify` said about the
/// file (`identity`).
///
/// # Errors
/// Only when the reference comparison fails or the disk cannot be read at
/// all; everything else unreadable is a coverage finding.
pub fn audit(
    path: &Path,
    disk: &Arc<Disk>,
    identity_report: Option<&Identity>,
    opts: &Options<'_>,
) -> Result<Report, AuditError> {
    let shown_path = path.display().to_string();
    let mut findings = Vec::new();
    let mut cov = Coverage::default();
    let mut anchors = Anchors::default();

    // 1. identity
    if let Some(id) = identity_report {
        findings.extend(identity::check(id));
        anchors.genuine = id.verdict == IdentityVerdict::Genuine;
        anchors.content_identical = id.verdict == IdentityVerdict::ContentIdentical;
        if id.digests.is_empty() {
            cov.not_read.push(
                "file digests: not computed, as no catalog entry has this file's size or name"
                    .into(),
            );
        } else {
            cov.read.push(format!(
                "file digests ({})",
                id.digests
                    .keys()
                    .map(|a| a.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }

    findings.extend(identity::name_tell(&shown_path));

    // 2. container
    let check_report = disk
        .top()
        .filter(|l| l.qcow2().is_some())
        .and_then(|l| crate::check::check(l.driver.file().as_ref(), &l.path).ok());
    if check_report.is_some() {
        cov.read
            .push("qcow2 structure (every cluster's references)".into());
    }
    findings.extend(container::check(&shown_path, disk, check_report.as_ref()));
    for layer in disk.layers() {
        if let BackingLink::Missing { name, why } = &layer.backing {
            cov.not_read.push(format!(
                "backing file {name}: {why}; guest ranges it provides were not audited"
            ));
            findings.push(
                coverage::UNREADABLE
                    .finding(format!(
                        "backing file {name} not opened: content from it is not audited"
                    ))
                    .path(&layer.filename)
                    .evidence("why", why),
            );
        }
    }

    // 3. layout
    let src: Arc<dyn ByteSource> = disk.clone();
    let mut partitions = Vec::new();
    let mut dirs = HashSet::new();
    let mut os = Vec::new();
    // The audited image's own baseline, when a stored one is to be compared.
    let mut current = opts
        .reference
        .is_none()
        .then_some(())
        .and(opts.baseline)
        .map(|b| Baseline {
            label: b.label.clone(),
            virtual_size: disk.size(),
            ..Baseline::default()
        });
    match qvet_volume::scan(src.as_ref()) {
        Ok(map) => {
            let gaps: Vec<container::GapContent> = map
                .gaps
                .iter()
                .map(|g| container::GapContent {
                    start: g.start,
                    len: g.len,
                    first_nonzero: scan_gap(disk, g.start, g.len, GAP_SCAN_LIMIT)
                        .ok()
                        .and_then(|g| g.first_nonzero),
                })
                .collect();
            findings.extend(container::layout(&shown_path, &map, &gaps));
            cov.read.push(format!(
                "partition table ({}, {} partition(s))",
                map.scheme.name(),
                map.partitions.len()
            ));
            for p in &map.partitions {
                let files = partition(
                    disk,
                    p,
                    &mut Collected {
                        findings: &mut findings,
                        cov: &mut cov,
                        out: &mut partitions,
                        dirs: &mut dirs,
                        os: &mut os,
                    },
                    current.is_some(),
                );
                if let Some(c) = current.as_mut() {
                    c.partitions.push(PartitionRecord {
                        number: p.number,
                        start: p.start,
                        length: p.len,
                        filesystem: files.as_ref().map(|(k, _)| k.clone()),
                        files: files.map(|(_, f)| f).unwrap_or_default(),
                    });
                }
            }
            if os.iter().any(|o| o.family == Family::RouterOs) {
                findings.extend(routeros_layout(disk, &map));
            }
        }
        Err(e) => {
            cov.not_read.push(format!("partition table: {e}"));
            findings.push(
                coverage::UNREADABLE
                    .finding(format!("partition table unreadable: {e}"))
                    .path(&shown_path),
            );
        }
    }

    // 4. reference
    let mut reference_changes = None;
    let mut changes = Vec::new();
    if let Some(reference_disk) = opts.reference {
        let d = diff::diff(reference_disk, disk, &|_| {}).map_err(AuditError::Reference)?;
        anchors.compared = true;
        anchors.differs = !d.identical();
        if d.identical() {
            anchors.content_identical = true;
        }
        reference_changes = Some(d.changes.len());
        cov.read
            .push(format!("reference diff ({} change(s))", d.changes.len()));
        attach_changes(&mut findings, &d.changes, &dirs);
        changes = d.changes;
    } else if let (Some(base), Some(cur)) = (opts.baseline, current.as_ref()) {
        changes = baseline::compare(base, cur);
        anchors.compared = true;
        anchors.differs = !changes.is_empty();
        reference_changes = Some(changes.len());
        cov.read.push(format!(
            "baseline '{}' ({} change(s))",
            base.label,
            changes.len()
        ));
        attach_changes(&mut findings, &changes, &dirs);
    }

    // 5. policy, order, verdict
    if let Some(p) = opts.policy {
        p.apply(&mut findings);
    }
    findings.sort_by(|a, b| {
        b.effective()
            .cmp(&a.effective())
            .then(a.rule.layer.cmp(&b.rule.layer))
            .then(a.partition.cmp(&b.partition))
            .then(a.path.cmp(&b.path))
            .then(a.line.cmp(&b.line))
    });
    let (verdict, reason) = verdict::decide(&findings, anchors);
    Ok(Report {
        filename: shown_path,
        verdict,
        reason,
        findings,
        coverage: cov,
        partitions,
        reference_changes,
        os,
        changes,
    })
}

/// MikroTik's CHR image is MBR with ext2 and ext3; a GPT table or a FAT
/// partition on a RouterOS disk is the public patch's rebuild.
fn routeros_layout(disk: &Disk, map: &qvet_volume::VolumeMap) -> Vec<Finding> {
    let mut why = Vec::new();
    if map.scheme.name() == "gpt" {
        why.push("GPT partition table".to_string());
    }
    for p in &map.partitions {
        if let Ok(Some(FsKind::Fat)) = qvet_volume::detect_filesystem(disk, p.start, p.len) {
            why.push(format!("partition {} is FAT", p.number));
        }
    }
    if why.is_empty() {
        return Vec::new();
    }
    vec![routeros::LAYOUT
        .finding(format!(
            "RouterOS disk laid out unlike MikroTik's: {}",
            why.join(", ")
        ))
        .evidence(
            "expected",
            "MBR, ext2 boot partition, ext3 system partition",
        )
        .evidence("actual", why.join(", "))]
}

/// What a gap between partitions holds, from reading only the ranges the
/// allocation map does not already know to be zero, at most `limit` bytes
/// (the audit reads [`GAP_SCAN_LIMIT`]); `qvet fs` and the audit's
/// `layout-gap-data` use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GapScan {
    /// First non-zero byte.
    pub first_nonzero: Option<u64>,
    /// Non-zero bytes seen.
    pub nonzero_bytes: u64,
    /// The scan stopped at its limit.
    pub capped: bool,
}

/// Scans `len` bytes of `disk` at `start` for non-zero content.
///
/// # Errors
/// Reading the disk fails.
pub fn scan_gap(
    disk: &Disk,
    start: u64,
    len: u64,
    limit: u64,
) -> Result<GapScan, qvet_image::ImageError> {
    let mut scan = GapScan::default();
    let mut read = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    for (s, l) in disk.non_zero_ranges(start, len)? {
        let mut pos = s;
        while pos < s + l {
            if read >= limit {
                scan.capped = true;
                return Ok(scan);
            }
            let n = (s + l - pos).min(1 << 20);
            let chunk = buf
                .get_mut(..usize::try_from(n).unwrap_or(0))
                .unwrap_or_default();
            disk.read_at(pos, chunk)?;
            if let Some(i) = chunk.iter().position(|&b| b != 0) {
                scan.first_nonzero.get_or_insert(pos + i as u64);
            }
            scan.nonzero_bytes += chunk.iter().filter(|&&b| b != 0).count() as u64;
            read += n;
            pos += n;
        }
    }
    Ok(scan)
}

/// Where the per-partition audit puts what it finds.
struct Collected<'a> {
    findings: &'a mut Vec<Finding>,
    cov: &'a mut Coverage,
    out: &'a mut Vec<PartitionSummary>,
    dirs: &'a mut HashSet<(Option<u32>, String)>,
    os: &'a mut Vec<Os>,
}

/// Audits one partition: opens its filesystem, walks it, gathers the facts,
/// runs the rules; what cannot be read becomes coverage.
fn partition(
    disk: &Arc<Disk>,
    p: &Partition,
    c: &mut Collected<'_>,
    want_files: bool,
) -> Option<(String, Vec<baseline::FileRecord>)> {
    let src: Arc<dyn ByteSource> = disk.clone();
    let window: Arc<dyn ByteSource> = Arc::new(Window::new(src, p.start, p.len));
    let n = Some(p.number);
    let label = format!("partition {}", p.number);
    let unreadable = |findings: &mut Vec<Finding>, cov: &mut Coverage, why: String| {
        cov.not_read.push(format!("{label}: {why}"));
        findings.push(
            coverage::UNREADABLE
                .finding(format!("{label}: {why}"))
                .partition(n),
        );
    };
    let kind = qvet_volume::detect_filesystem(disk.as_ref(), p.start, p.len)
        .ok()
        .flatten();
    // A LUKS1 container opens with the disk's passphrase, when it has one.
    let window = match qvet_image::crypt::volume::open_if_luks(
        window,
        disk.key(),
        std::path::Path::new(&label),
    ) {
        Ok(w) => w,
        Err(e) => {
            unreadable(c.findings, c.cov, format!("LUKS-encrypted: {e}"));
            return None;
        }
    };
    let fs: Arc<dyn FileSystem> = match Ext::open(Arc::clone(&window)) {
        Ok(ext) => {
            c.findings
                .extend(filesystem::superblock(n, &ext.superblock_facts()));
            for problem in ext.findings() {
                c.findings.push(
                    filesystem::ERRORS
                        .finding(format!("{label}: {problem}"))
                        .partition(n)
                        .evidence("problem", problem),
                );
            }
            Arc::new(ext)
        }
        Err(FsError::NotThisFs(_)) => match qvet_guestfs::open(window) {
            Ok(fs) => Arc::from(fs),
            Err(e) => {
                match kind {
                    None => c
                        .cov
                        .not_read
                        .push(format!("{label}: empty (all zeros at its start)")),
                    Some(FsKind::Swap) => c.cov.read.push(format!("{label}: swap (no files)")),
                    Some(FsKind::Luks) => unreadable(
                        c.findings,
                        c.cov,
                        "LUKS-encrypted: its content is not audited".into(),
                    ),
                    Some(FsKind::Ufs) => {
                        // FreeBSD UFS: Junos (vSRX, vMX, vJunos) keeps its
                        // configuration and scripts there.
                        unreadable(
                            c.findings,
                            c.cov,
                            "UFS (FreeBSD, as Junos uses) is not readable by qvet: its configuration and scripts are not audited".into(),
                        );
                        c.os.push(qvet_inspect::os::junos_on_ufs(n));
                    }
                    Some(k) => unreadable(
                        c.findings,
                        c.cov,
                        format!("{} is not readable by qvet ({e})", k.name()),
                    ),
                }
                return None;
            }
        },
        Err(e) => {
            unreadable(c.findings, c.cov, format!("ext filesystem unreadable: {e}"));
            return None;
        }
    };
    let tree = match Tree::walk(fs.as_ref()) {
        Ok(t) => t,
        Err(e) => {
            unreadable(
                c.findings,
                c.cov,
                format!("{} root unreadable: {e}", fs.kind()),
            );
            return None;
        }
    };
    let (facts, appliance) = rules::gather(&tree, n);
    c.dirs.extend(
        tree.entries()
            .iter()
            .filter(|e| e.meta.kind == qvet_guestfs::FileType::Dir)
            .map(|e| (n, qvet_inspect::tree::shown(&e.path))),
    );
    let guest = Guest {
        partition: n,
        tree: &tree,
        facts: &facts,
        appliance: &appliance,
    };
    let mut found = rules::guest(&guest);
    found.extend(filesystem::late_changes(&guest));
    let linux_root = LinuxFacts::is_linux_root(&tree);
    if linux_root && facts.packages.manager.is_none() {
        found.push(
            coverage::NO_PACKAGE_DB
                .finding(format!("{label}: Linux root without a package database"))
                .partition(n),
        );
        c.cov.not_read.push(format!(
            "{label}: no package database, so packaged files were not verified"
        ));
    }
    appliance_coverage(&label, n, &appliance, &mut found, c.cov);
    for img in &appliance.vyos {
        found.extend(vyos_system(&fs, &tree, n, img, &label, c.cov));
    }
    for why in tree
        .incomplete
        .iter()
        .chain(facts.unread.iter())
        .chain(facts.packages.problems.iter())
        .chain(appliance.unread.iter())
        .take(200)
    {
        found.push(
            coverage::UNREAD_FILE
                .finding(format!("{label}: {why}"))
                .partition(n)
                .evidence("why", why),
        );
        c.cov.not_read.push(format!("{label}: {why}"));
    }
    let os_name = appliance
        .os
        .first()
        .map(|o| match &o.version {
            Some(v) if !o.product.contains(v.as_str()) => format!("{} {v}", o.product),
            _ => o.product.clone(),
        })
        .or_else(|| facts.os.as_ref().map(|o| o.pretty_name.clone()));
    let summary = PartitionSummary {
        number: p.number,
        filesystem: fs.kind().to_string(),
        os: os_name,
        entries: tree.entries().len(),
        packages: facts
            .packages
            .manager
            .map(|m| (m.name().to_string(), facts.packages.count)),
        verified_files: facts.packages.verified,
        accounts: facts.users().len(),
        keys: facts.key_files.iter().map(|k| k.keys.keys.len()).sum(),
        persistence: facts.persistence.len(),
        users: facts
            .users()
            .iter()
            .take(LISTED)
            .map(|u| (u.name.clone(), u.uid, u.shell.clone()))
            .collect(),
        authorized_keys: facts
            .key_files
            .iter()
            .flat_map(|k| {
                k.keys.keys.iter().map(move |key| {
                    (
                        k.path.clone(),
                        k.users.join(", "),
                        key.blob_type
                            .clone()
                            .unwrap_or_else(|| key.key_type.clone()),
                        key.fingerprint.clone().unwrap_or_default(),
                    )
                })
            })
            .take(LISTED)
            .collect(),
        services: facts
            .persistence
            .iter()
            .take(LISTED)
            .map(|p| {
                (
                    p.kind.name().to_string(),
                    p.path.clone(),
                    p.text.chars().take(200).collect(),
                )
            })
            .collect(),
    };
    c.cov.read.push(format!(
        "{label} {}: {} entries walked{}",
        summary.filesystem,
        summary.entries,
        match &summary.packages {
            Some((m, c)) => format!(
                ", {m} database: {c} packages, {} files verified",
                summary.verified_files
            ),
            None => String::new(),
        }
    ));
    for conf in &appliance.configs {
        c.cov.read.push(format!(
            "{label}: configuration {} ({} lines{})",
            conf.path,
            conf.config.all().len(),
            if conf.from_nvram {
                ", from an NVRAM image"
            } else {
                ""
            }
        ));
    }
    c.out.push(summary);
    c.os.extend(appliance.os.iter().cloned());
    c.findings.extend(found);
    want_files.then(|| (fs.kind().to_string(), baseline::records(&tree)))
}

/// What an appliance's filesystem could not show: an encrypted FortiOS
/// root, an IOS-XE bootflash without any configuration.
fn appliance_coverage(
    label: &str,
    n: Option<u32>,
    a: &qvet_inspect::appliance::ApplianceFacts,
    found: &mut Vec<Finding>,
    cov: &mut Coverage,
) {
    let mut not_read = Vec::new();
    if let Some(qvet_inspect::appliance::Rootfs::Encrypted(why)) =
        a.forti.as_ref().and_then(|f| f.rootfs.as_ref())
    {
        not_read.push(format!(
            "FortiOS rootfs.gz {why}: the FortiOS root filesystem is not audited"
        ));
    }
    if a.is(Family::IosXe) && a.configs.is_empty() {
        not_read.push(
            "IOS-XE bootflash holds no configuration (NVRAM file, *.cfg, startup-config): the device configuration was not audited".into(),
        );
    }
    for why in not_read {
        found.push(
            coverage::UNREADABLE
                .finding(format!("{label}: {why}"))
                .partition(n),
        );
        cov.not_read.push(format!("{label}: {why}"));
    }
}

/// Audits a VyOS image as the system it boots: the rw layer over the
/// read-only squashfs (the overlay VyOS mounts as `/`), so packaged files are
/// verified against the squashfs's own dpkg database and a file the rw layer
/// replaces is judged against it. A finding's path says where the file
/// lives: `/boot/<image>/rw/…` in the rw layer, `/boot/<image>/<image>.squashfs:/…`
/// inside the system image. Without a readable squashfs the rw layer is
/// audited alone (and coverage says so); without an rw layer, the squashfs.
fn vyos_system(
    fs: &Arc<dyn FileSystem>,
    tree: &Tree<'_>,
    n: Option<u32>,
    img: &qvet_inspect::appliance::VyosImage,
    label: &str,
    cov: &mut Coverage,
) -> Vec<Finding> {
    let rw_node = img
        .rw
        .as_deref()
        .and_then(|rw| tree.get(rw.as_bytes()))
        .map(|e| e.meta.id);
    let squashfs = img.squashfs.as_deref().map(|sq| {
        qvet_guestfs::node_source::NodeSource::open_path(Arc::clone(fs), sq.as_bytes())
            .and_then(|src| qvet_guestfs::squashfs::Squashfs::open(Arc::new(src)))
    });
    let squashfs = match squashfs {
        Some(Ok(sq)) => Some(sq),
        Some(Err(e)) => {
            let why = format!(
                "VyOS system image {} (squashfs) not readable ({e}): only the rw layer over it was audited",
                img.squashfs.as_deref().unwrap_or_default()
            );
            cov.not_read.push(format!("{label}: {why}"));
            None
        }
        None => None,
    };
    let sub;
    let overlay;
    let (root, what): (&dyn FileSystem, String) = match (rw_node, &squashfs) {
        (Some(rw), Some(sq)) => {
            overlay = qvet_inspect::overlay::OverlayFs::new(fs.as_ref(), rw, sq);
            (&overlay, "the rw layer over the squashfs".to_string())
        }
        (Some(rw), None) => {
            sub = SubFs::new(fs.as_ref(), rw);
            (
                &sub,
                "the rw layer alone (package digests not verified)".to_string(),
            )
        }
        (None, Some(sq)) => (sq, "the squashfs (no rw layer)".to_string()),
        (None, None) => return Vec::new(),
    };
    let Ok(system) = Tree::walk(root) else {
        return Vec::new();
    };
    let (facts, appliance) = rules::gather(&system, n);
    let guest = Guest {
        partition: n,
        tree: &system,
        facts: &facts,
        appliance: &appliance,
    };
    let mut found = rules::guest(&guest);
    // Where each path lives on the partition.
    let rw = img.rw.as_deref().unwrap_or_default();
    let sq = img.squashfs.as_deref().unwrap_or_default();
    for f in &mut found {
        if let Some(p) = &f.path {
            let in_rw = rw_node.is_some() && tree.get(format!("{rw}{p}").as_bytes()).is_some();
            f.path = Some(if in_rw || squashfs.is_none() {
                format!("{rw}{p}")
            } else {
                format!("{sq}:{p}")
            });
        }
    }
    if LinuxFacts::is_linux_root(&system) && facts.packages.manager.is_none() {
        cov.not_read.push(format!(
            "{label}: VyOS image {}: no package database, so packaged files were not verified",
            img.name
        ));
    }
    cov.read.push(format!(
        "{label}: VyOS image {} audited as a Linux root from {what}: {} entries{}",
        img.name,
        system.entries().len(),
        facts.packages.manager.map_or(String::new(), |m| format!(
            ", {} database: {} packages, {} files verified",
            m.name(),
            facts.packages.count,
            facts.packages.verified
        ))
    ));
    found
}

/// Attaches reference changes to the findings on their paths, downgrades
/// findings on unchanged files (the vendor shipped them), and adds a
/// finding for each change no rule explained.
fn attach_changes(
    findings: &mut Vec<Finding>,
    changes: &[diff::Change],
    dirs: &HashSet<(Option<u32>, String)>,
) {
    let key = |partition: Option<u32>, path: &str| (partition, path.to_string());
    let changed: std::collections::HashMap<(Option<u32>, String), &diff::Change> = changes
        .iter()
        .filter_map(|c| reference::change_path(c).map(|p| (key(c.partition, &p), c)))
        .collect();
    let mut explained = HashSet::new();
    for f in findings.iter_mut() {
        let (Some(part), Some(path)) = (f.partition, f.path.clone()) else {
            continue;
        };
        match changed.get(&key(Some(part), &path)) {
            Some(c) => {
                f.change = Some((*c).clone());
                explained.insert(key(Some(part), &path));
            }
            None if f.rule.category != crate::finding::Category::Coverage => {
                f.in_reference = true;
                if f.severity > Severity::Info {
                    f.evidence.push((
                        "reference",
                        format!("unchanged from the reference (was {})", f.severity.name()),
                    ));
                    f.severity = Severity::Info;
                }
            }
            None => {}
        }
    }
    let mut churn = Vec::new();
    let mut timestamps = Vec::new();
    for c in changes {
        let path = reference::change_path(c);
        if let Some(p) = &path {
            if explained.contains(&key(c.partition, p)) {
                continue;
            }
            if reference::timestamps_only(c, dirs.contains(&key(c.partition, p))) {
                timestamps.push(c);
                continue;
            }
            if reference::is_churn(p) {
                churn.push(c);
                continue;
            }
        }
        let executable = c.kind == ChangeKind::Added || c.kind == ChangeKind::Modified;
        let exec = executable
            && path.as_deref().is_some_and(|p| {
                [
                    "/bin/",
                    "/sbin/",
                    "/usr/bin/",
                    "/usr/sbin/",
                    "/usr/local/",
                    "/lib",
                    "/usr/lib",
                    "/etc/init.d/",
                    "/opt/",
                ]
                .iter()
                .any(|d| p.starts_with(d))
            });
        if let Some(f) = reference::unexplained(c, exec) {
            findings.push(f);
        }
    }
    if let Some(f) = reference::churn(&churn) {
        findings.push(f);
    }
    if let Some(f) = reference::timestamps(&timestamps) {
        findings.push(f);
    }
}
