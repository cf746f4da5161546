//! `check`: structural integrity of a qcow2 image, counted like
//! `qemu-img check` and reported in more detail.
//!
//! The walk follows qemu's `qcow2_check_refcounts` step by step (header,
//! active L1 and its L2 tables, snapshot L1/L2 tables, snapshot table,
//! refcount table, LUKS header, bitmaps, refcount blocks; then the comparison
//! with stored refcounts and the COPIED flags), so that the numbers agree
//! with qemu's. qvet's own findings (undecodable compressed clusters, data
//! overlapping metadata, leaked clusters that still hold data) are kept apart
//! from qemu's counts.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use qvet_format::bitmap;
use qvet_format::bytes::{be_u64, be_u64_table, usize_from};
use qvet_format::header::{autoclear, compat, incompat, CryptMethod, FeatureKind, Header};
use qvet_format::l2::{self, ClusterType, CompressedDescriptor};
use qvet_format::refcount::{REFTABLE_OFFSET_MASK, REFTABLE_RESERVED_MASK};
use qvet_format::snapshot::{self, Snapshot};
use qvet_format::{limits, FormatError};
use qvet_image::decompress::decompress_cluster;
use qvet_image::qcow2::load_table;
use qvet_image::refcounts::Refcounts;
use qvet_image::{ByteSource, ImageError};
use rayon::prelude::*;

use crate::imrt::{Imrt, ROLE_DATA, ROLE_METADATA};

/// Problems of one kind kept with full detail; the rest are only counted.
const EXAMPLES_PER_KIND: usize = 100;
/// Leaked clusters listed with their contents.
const LEAKS_LISTED: usize = 1000;

/// How a problem counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    /// Counted by qemu-img as a corruption.
    Corruption,
    /// Counted by qemu-img as a leak.
    Leak,
    /// Counted by qemu-img as a check error (the check could not complete a step).
    CheckError,
    /// Found by qvet only: damage qemu-img does not see.
    Finding,
    /// Worth knowing; not damage.
    Note,
}

impl Class {
    /// Stable lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Corruption => "corruption",
            Self::Leak => "leak",
            Self::CheckError => "check-error",
            Self::Finding => "finding",
            Self::Note => "note",
        }
    }
}

/// One problem, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Stable identifier of the kind of problem.
    pub kind: &'static str,
    /// How it counts.
    pub class: Class,
    /// What is wrong, in qemu's words where qemu has some.
    pub message: String,
    /// Host offset concerned.
    pub host_offset: Option<u64>,
    /// Guest offset concerned.
    pub guest_offset: Option<u64>,
    /// Which table ("active L1", "snapshot 1 L2 at 0x…", "refcount table").
    pub table: Option<String>,
    /// Index in that table.
    pub index: Option<u64>,
}

/// A cluster whose stored refcount exceeds its references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeakedCluster {
    /// Host cluster index.
    pub index: u64,
    /// Stored refcount.
    pub refcount: u64,
    /// References found.
    pub references: u64,
    /// Whether the cluster holds any non-zero byte (deleted-data remnant).
    pub nonzero: bool,
    /// Its first bytes.
    pub first_bytes: Vec<u8>,
}

/// Results of decoding every compressed cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CompressedStats {
    /// Distinct compressed host locations.
    pub unique: u64,
    /// Decoded to exactly one cluster.
    pub decoded: u64,
    /// Could not be decoded.
    pub failed: u64,
}

/// The outcome of a check.
#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    /// qemu's `check-errors`.
    pub check_errors: u64,
    /// qemu's `corruptions`.
    pub corruptions: u64,
    /// qemu's `leaks`.
    pub leaks: u64,
    /// qemu's `image-end-offset`.
    pub image_end_offset: u64,
    /// qemu's `total-clusters`.
    pub total_clusters: u64,
    /// qemu's `allocated-clusters`.
    pub allocated_clusters: u64,
    /// qemu's `fragmented-clusters`.
    pub fragmented_clusters: u64,
    /// qemu's `compressed-clusters`.
    pub compressed_clusters: u64,
    /// Set when the check could not complete (qemu prints no JSON then).
    pub aborted: Option<String>,
    /// Problems, at most [`EXAMPLES_PER_KIND`] (100) of each kind; `counts` has them all.
    pub problems: Vec<Problem>,
    /// Every problem kind with its class and full count.
    pub counts: BTreeMap<&'static str, (Class, u64)>,
    /// qvet-only damage (class [`Class::Finding`]).
    pub findings: u64,
    /// Leaked clusters, at most [`LEAKS_LISTED`].
    pub leaked: Vec<LeakedCluster>,
    /// Compressed cluster decoding.
    pub compressed: CompressedStats,
    /// Internal snapshots (IDs, names, dates), when the table could be read.
    pub snapshots: Vec<Snapshot>,
}

impl CheckReport {
    fn add(&mut self, p: Problem) {
        self.add_n(p, 1);
    }

    /// Records a problem that occurred `n` times (one example is kept).
    fn add_n(&mut self, p: Problem, n: u64) {
        if n == 0 {
            return;
        }
        match p.class {
            Class::Corruption => self.corruptions += n,
            Class::Leak => self.leaks += n,
            Class::CheckError => self.check_errors += n,
            Class::Finding => self.findings += n,
            Class::Note => {}
        }
        let entry = self.counts.entry(p.kind).or_insert((p.class, 0));
        let before = entry.1;
        entry.1 += n;
        if before < u64::try_from(EXAMPLES_PER_KIND).unwrap_or(u64::MAX) {
            self.problems.push(p);
        }
    }
}

/// Why a check could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckError {
    /// The header is refused even in check mode.
    #[error("could not open '{}': {error}", path.display())]
    Open {
        /// Image.
        path: std::path::PathBuf,
        /// Why.
        error: FormatError,
    },
    /// Reading failed.
    #[error("I/O error reading '{}': {error}", path.display())]
    Io {
        /// Image.
        path: std::path::PathBuf,
        /// OS error.
        error: std::io::Error,
    },
}

/// A name from the image, cut to a length that keeps reports small (snapshot
/// IDs and names may be 64 KiB each).
pub fn short(name: &[u8]) -> String {
    const MAX: usize = 64;
    let text = String::from_utf8_lossy(name.get(..MAX).unwrap_or(name)).into_owned();
    if name.len() > MAX {
        format!("{text}…")
    } else {
        text
    }
}

fn problem(kind: &'static str, class: Class, message: String) -> Problem {
    Problem {
        kind,
        class,
        message,
        host_offset: None,
        guest_offset: None,
        table: None,
        index: None,
    }
}

/// Whether a header problem is one qemu's check mode ignores at open (it
/// re-reads the snapshot table itself and tolerates a missing refcount table).
fn ignored_in_check_mode(e: &FormatError) -> bool {
    match e {
        FormatError::NoRefcountTable => true,
        FormatError::TableOffset { what, .. } | FormatError::TableTooLarge { what, .. } => {
            what.starts_with("snapshot table")
        }
        _ => false,
    }
}

/// How often an L2 table is referenced, and from where first.
#[derive(Debug, Default)]
struct L2Ref {
    /// References from the active L1 (these count in the statistics).
    active: u64,
    /// References from snapshot L1 tables.
    inactive: u64,
    /// Table that referenced it first.
    label: String,
    /// First guest cluster it maps for that table.
    first_cluster: u64,
}

struct Checker<'a> {
    src: &'a dyn ByteSource,
    h: Header,
    cs: u64,
    file_len: u64,
    imrt: Imrt,
    report: CheckReport,
    refcounts: Refcounts,
    compressed: HashSet<(u64, u64)>,
    snapshots: Vec<Snapshot>,
    snapshots_size: u64,
}

/// Checks the qcow2 image in `src`.
///
/// # Errors
/// [`CheckError::Open`] when even qemu's check mode would refuse the header,
/// [`CheckError::Io`] when its first bytes cannot be read. Every other
/// problem is part of the report.
pub fn check(src: &dyn ByteSource, path: &Path) -> Result<CheckReport, CheckError> {
    check_inner(src, path, true)
}

/// [`check`] without decoding the compressed streams: every table, refcount
/// and overlap is checked, but `compressed-undecodable` and
/// `compressed-overlap` cannot be found, and the report's
/// [`CompressedStats`] counts the distinct streams with none decoded. For
/// callers that decode every stream they need anyway (`compact` reads each
/// kept cluster, and an undecodable one fails its read), where a second
/// decoding pass would double the work on a compressed image.
///
/// # Errors
/// As [`check`].
pub fn check_structure(src: &dyn ByteSource, path: &Path) -> Result<CheckReport, CheckError> {
    check_inner(src, path, false)
}

fn check_inner(
    src: &dyn ByteSource,
    path: &Path,
    decode_streams: bool,
) -> Result<CheckReport, CheckError> {
    let head_len = src.len().min(1 << limits::MAX_CLUSTER_BITS);
    let mut head = vec![0u8; usize_from(head_len)];
    src.read_zero_padded(0, &mut head)
        .map_err(|error| CheckError::Io {
            path: path.to_path_buf(),
            error,
        })?;
    let h = Header::parse(&head).map_err(|error| CheckError::Open {
        path: path.to_path_buf(),
        error,
    })?;
    if let Some(error) = h.problems().into_iter().find(|e| !ignored_in_check_mode(e)) {
        return Err(CheckError::Open {
            path: path.to_path_buf(),
            error,
        });
    }
    let cs = h.cluster_size();
    let file_len = src.len();
    let nb_clusters = file_len.div_ceil(cs);
    let mut report = CheckReport {
        total_clusters: h.virtual_size().div_ceil(cs),
        ..CheckReport::default()
    };
    if nb_clusters > u64::from(i32::MAX.unsigned_abs()) {
        report.check_errors += 1;
        report.aborted = Some("file too large to check".into());
        return Ok(report);
    }
    let refcounts = Refcounts::load(src, &h).map_err(|e| CheckError::Io {
        path: path.to_path_buf(),
        error: std::io::Error::other(e.to_string()),
    })?;
    let mut c = Checker {
        src,
        imrt: Imrt::new(nb_clusters, h.refcount_bits()),
        cs,
        file_len,
        report,
        refcounts,
        compressed: HashSet::new(),
        snapshots: Vec::new(),
        snapshots_size: 0,
        h,
    };
    c.notes();
    if let Err(why) = c.read_snapshot_table() {
        c.report.aborted = Some(why);
        return Ok(c.report);
    }
    if let Err(why) = c.calculate_refcounts() {
        c.report.aborted = Some(why);
        return Ok(c.report);
    }
    let highest = c.compare_refcounts();
    c.check_oflag_copied();
    c.report.image_end_offset = (highest + 1) * cs;
    if decode_streams {
        c.decode_compressed();
    } else {
        c.report.compressed.unique = u64::try_from(c.compressed.len()).unwrap_or(u64::MAX);
    }
    c.overlaps();
    c.report.snapshots = std::mem::take(&mut c.snapshots);
    Ok(c.report)
}

impl Checker<'_> {
    /// Reads a table of `entries` u64s; unreadable tables read as empty.
    fn read_table(&self, offset: u64, entries: u64) -> Vec<u64> {
        load_table(self.src, "table", offset, entries).unwrap_or_default()
    }

    fn read_cluster(&self, offset: u64, len: u64) -> Result<Vec<u8>, String> {
        let mut buf = vec![0u8; usize_from(len)];
        self.src
            .read_zero_padded(offset, &mut buf)
            .map_err(|e| format!("I/O error at {offset:#x}: {e}"))?;
        Ok(buf)
    }

    fn notes(&mut self) {
        let h = &self.h;
        let mut notes = Vec::new();
        if h.incompatible_features & incompat::DIRTY != 0 {
            let lazy = h.compatible_features & compat::LAZY_REFCOUNTS != 0;
            notes.push(problem(
                "dirty-bit",
                Class::Note,
                format!(
                    "dirty bit set: refcounts may be stale{}",
                    if lazy {
                        " (lazy refcounts in use: leaks are expected after a crash)"
                    } else {
                        ""
                    }
                ),
            ));
        }
        if h.incompatible_features & incompat::CORRUPT != 0 {
            notes.push(problem(
                "corrupt-bit",
                Class::Note,
                "corrupt bit set: qemu marked this image corrupt".into(),
            ));
        }
        for (kind, mask, known) in [
            (
                FeatureKind::Compatible,
                h.compatible_features,
                compat::KNOWN,
            ),
            (
                FeatureKind::Autoclear,
                h.autoclear_features,
                autoclear::KNOWN,
            ),
        ] {
            let unknown = mask & !known;
            if unknown != 0 {
                notes.push(problem(
                    "unknown-feature-bits",
                    Class::Note,
                    format!(
                        "unknown feature bits {unknown:#x}: {}",
                        h.describe_bits(kind, unknown).join(", ")
                    ),
                ));
            }
        }
        for n in notes {
            self.report.add(n);
        }
    }

    /// qemu's `qcow2_check_read_snapshot_table`.
    fn read_snapshot_table(&mut self) -> Result<(), String> {
        let h = &self.h;
        if let Err(e) = qvet_format::header::validate_table(
            "snapshot table",
            h.snapshots_offset,
            u64::from(h.nb_snapshots),
            40,
            40 * u64::from(limits::MAX_SNAPSHOTS),
            self.cs,
        ) {
            let p = problem(
                "snapshot-table-invalid",
                Class::CheckError,
                format!("ERROR {e}"),
            );
            self.report.add(p);
            return Err(e.to_string());
        }
        if h.nb_snapshots == 0 {
            return Ok(());
        }
        let want = snapshot::max_table_bytes(h.nb_snapshots)
            .min(self.file_len.saturating_sub(h.snapshots_offset));
        let buf = self.read_cluster(h.snapshots_offset, want)?;
        match snapshot::parse_table(&buf, h.snapshots_offset, h.nb_snapshots) {
            Ok(s) => self.snapshots = s,
            Err(e) => {
                let p = problem(
                    "snapshot-table-unreadable",
                    Class::CheckError,
                    format!("Failed to read the snapshot table: {e}"),
                );
                self.report.add(p);
                return Err(e.to_string());
            }
        }
        // Table size as qemu computes it: unpadded end of the last entry.
        let mut end = 0u64;
        for s in &self.snapshots {
            end = s.entry_offset - h.snapshots_offset
                + 40
                + u64::from(s.extra_data_size)
                + u64::try_from(s.id.len() + s.name.len()).unwrap_or(0);
        }
        self.snapshots_size = end;
        if self.h.version >= 3 {
            let incomplete: Vec<Problem> = self
                .snapshots
                .iter()
                .enumerate()
                .filter(|(_, s)| s.extra_data_size < 16)
                .map(|(i, s)| {
                    let mut p = problem(
                        "snapshot-entry-incomplete",
                        Class::Corruption,
                        format!("ERROR snapshot table entry {i} is incomplete"),
                    );
                    p.host_offset = Some(s.entry_offset);
                    p.index = Some(u64::try_from(i).unwrap_or(0));
                    p
                })
                .collect();
            for p in incomplete {
                self.report.add(p);
            }
        }
        Ok(())
    }

    /// qemu's `qcow2_inc_refcounts_imrt`.
    fn inc(&mut self, offset: u64, size: u64, role: u8, what: &str) {
        self.inc_n(offset, size, 1, role, what);
    }

    /// `qcow2_inc_refcounts_imrt` applied `n` times: the same counts and
    /// problems, computed without repeating the walk.
    fn inc_n(&mut self, offset: u64, size: u64, n: u64, role: u8, what: &str) {
        if size == 0 || n == 0 {
            return;
        }
        let over = i128::from(offset) + i128::from(size) - i128::from(self.file_len);
        if over >= i128::from(self.cs) {
            let mut p = problem(
                "reference-past-eof",
                Class::Corruption,
                format!(
                    "ERROR: counting reference for region exceeding the end of the file by one cluster or more: offset {offset:#x} size {size:#x} ({what})"
                ),
            );
            p.host_offset = Some(offset);
            p.table = Some(what.to_string());
            self.report.add_n(p, n);
            return;
        }
        if offset + size > self.file_len {
            // qemu tolerates this (the last cluster may be "semi-allocated"),
            // but a table cut by the end of the file has lost entries.
            let (class, kind) = if role == ROLE_METADATA {
                (Class::Finding, "metadata-beyond-eof")
            } else {
                (Class::Note, "data-beyond-eof")
            };
            let mut p = problem(
                kind,
                class,
                format!(
                    "{what} at {offset:#x} ({size:#x} bytes) extends past the end of the file ({:#x}); the missing bytes read as zeros",
                    self.file_len
                ),
            );
            p.host_offset = Some(offset);
            p.table = Some(what.to_string());
            self.report.add(p);
        }
        let start = offset & !(self.cs - 1);
        let last = (offset + size - 1) & !(self.cs - 1);
        let mut at = start;
        while at <= last {
            let k = at / self.cs;
            if k >= self.imrt.len() {
                self.imrt.grow_to(k);
            }
            let overflow = self.imrt.add(k, n, role);
            if overflow > 0 {
                let mut p = problem(
                    "refcount-overflow",
                    Class::Corruption,
                    format!("ERROR: overflow cluster offset={at:#x}"),
                );
                p.host_offset = Some(at);
                p.table = Some(what.to_string());
                self.report.add_n(p, overflow);
            }
            at += self.cs;
        }
    }

    fn calculate_refcounts(&mut self) -> Result<(), String> {
        let cs = self.cs;
        self.inc(0, cs, ROLE_METADATA, "header");
        // L2 tables are walked once each, however many L1 entries (active or
        // in snapshots) point at them: the counts are multiplied instead, so a
        // crafted image that points everything at one table costs one walk.
        let mut l2_refs: BTreeMap<u64, L2Ref> = BTreeMap::new();
        let (l1o, l1s) = (self.h.l1_table_offset, self.h.l1_size);
        self.check_l1(l1o, l1s, 1, true, "active L1", &mut l2_refs);
        if self.h.has_data_file() && !self.snapshots.is_empty() {
            let n = self.snapshots.len();
            self.report.add(problem(
                "snapshots-with-data-file",
                Class::Corruption,
                format!("ERROR {n} snapshots in image with data file"),
            ));
        }
        let snaps = self.snapshots.clone();
        let mut snapshot_l1s: BTreeMap<(u64, u32), (u64, String)> = BTreeMap::new();
        for s in &snaps {
            let label = format!("snapshot {} ({})", short(&s.id), short(&s.name));
            if s.l1_table_offset % cs != 0 {
                let mut p = problem(
                    "snapshot-l1-unaligned",
                    Class::Corruption,
                    format!("ERROR {label} l1_offset={:#x}: L1 table is not cluster aligned; snapshot table entry corrupted", s.l1_table_offset),
                );
                p.host_offset = Some(s.entry_offset);
                self.report.add(p);
                continue;
            }
            if u64::from(s.l1_size) > limits::MAX_L1_ENTRIES {
                let mut p = problem(
                    "snapshot-l1-too-large",
                    Class::Corruption,
                    format!("ERROR {label} l1_size={:#x}: L1 table is too large; snapshot table entry corrupted", s.l1_size),
                );
                p.host_offset = Some(s.entry_offset);
                self.report.add(p);
                continue;
            }
            snapshot_l1s
                .entry((s.l1_table_offset, s.l1_size))
                .or_insert((0, format!("{label} L1")))
                .0 += 1;
        }
        for ((offset, size), (mult, label)) in snapshot_l1s {
            self.check_l1(offset, size, mult, false, &label, &mut l2_refs);
        }
        for (l2_offset, r) in l2_refs {
            self.check_l2(l2_offset, &r)?;
        }
        let (so, ss) = (self.h.snapshots_offset, self.snapshots_size);
        self.inc(so, ss, ROLE_METADATA, "snapshot table");
        let (ro, rs) = (self.h.refcount_table_offset, self.refcounts.table_len() * 8);
        self.inc(ro, rs, ROLE_METADATA, "refcount table");
        if self.h.crypt_method == CryptMethod::Luks {
            if let Some((off, len)) = self.h.crypto_header() {
                self.inc(off, len, ROLE_METADATA, "LUKS header");
            }
        }
        self.check_bitmaps()?;
        self.check_refblocks();
        Ok(())
    }

    /// qemu's `check_refcounts_l1` for an L1 table referenced `mult` times;
    /// the L2 tables it names are collected into `l2_refs`.
    fn check_l1(
        &mut self,
        offset: u64,
        l1_size: u32,
        mult: u64,
        active: bool,
        label: &str,
        l2_refs: &mut BTreeMap<u64, L2Ref>,
    ) {
        if l1_size == 0 {
            return;
        }
        self.inc_n(offset, u64::from(l1_size) * 8, mult, ROLE_METADATA, label);
        let l1 = self.read_table(offset, u64::from(l1_size));
        let l2_entries = self.h.l2_entries();
        for (i, &e) in l1.iter().enumerate() {
            if e == 0 {
                continue;
            }
            let index = u64::try_from(i).unwrap_or(0);
            if e & l2::L1_RESERVED_MASK != 0 {
                let mut p = problem(
                    "l1-reserved-bits",
                    Class::Corruption,
                    format!("ERROR found L1 entry with reserved bits set: {e:x}"),
                );
                p.table = Some(label.to_string());
                p.index = Some(index);
                p.host_offset = Some(offset + index * 8);
                self.report.add_n(p, mult);
            }
            let l2_offset = e & l2::OFFSET_MASK;
            self.inc_n(
                l2_offset,
                self.cs,
                mult,
                ROLE_METADATA,
                &format!("{label}[{index}] L2 table"),
            );
            if !l2_offset.is_multiple_of(self.cs) {
                let mut p = problem(
                    "l2-table-unaligned",
                    Class::Corruption,
                    format!("ERROR l2_offset={l2_offset:x}: Table is not cluster aligned; L1 entry corrupted"),
                );
                p.table = Some(label.to_string());
                p.index = Some(index);
                p.host_offset = Some(l2_offset);
                self.report.add_n(p, mult);
            }
            let r = l2_refs.entry(l2_offset).or_insert_with(|| L2Ref {
                label: label.to_string(),
                first_cluster: index * l2_entries,
                ..L2Ref::default()
            });
            if active {
                r.active += mult;
            } else {
                r.inactive += mult;
            }
        }
    }

    /// qemu's `check_refcounts_l2` for one L2 table, applied once per reference.
    fn check_l2(&mut self, l2_offset: u64, r: &L2Ref) -> Result<(), String> {
        let h = &self.h;
        let ext = h.extended_l2();
        let data_file = h.has_data_file();
        let cb = h.cluster_bits;
        let entry_size = h.l2_entry_size();
        let n = usize_from(h.l2_entries());
        let buf = self.read_cluster(l2_offset, self.cs)?;
        let table = be_u64_table(&buf);
        let table_label = format!("{} L2 at {l2_offset:#x}", r.label);
        let refs = r.active + r.inactive;
        let mut next_contiguous = 0u64;
        for i in 0..n {
            let (entry, bitmap) = if ext {
                (
                    table.get(2 * i).copied().unwrap_or(0),
                    table.get(2 * i + 1).copied().unwrap_or(0),
                )
            } else {
                (table.get(i).copied().unwrap_or(0), 0)
            };
            let index = u64::try_from(i).unwrap_or(0);
            let guest = (r.first_cluster + index) << cb;
            let located = |mut p: Problem, host: Option<u64>| {
                p.table = Some(table_label.clone());
                p.index = Some(index);
                p.guest_offset = Some(guest);
                p.host_offset = host;
                p
            };
            let ctype = l2::cluster_type(entry, ext, data_file);
            if ctype != ClusterType::Compressed && entry & l2::L2_STD_RESERVED_MASK != 0 {
                let p = problem(
                    "l2-reserved-bits",
                    Class::Corruption,
                    format!("ERROR found l2 entry with reserved bits set: {entry:x}"),
                );
                self.report
                    .add_n(located(p, Some(l2_offset + index * entry_size)), refs);
            }
            match ctype {
                ClusterType::Compressed => {
                    let desc = CompressedDescriptor::decode(entry & !l2::COPIED, cb);
                    if entry & l2::COPIED != 0 {
                        let p = problem(
                            "compressed-copied",
                            Class::Corruption,
                            format!("ERROR: coffset={:#x}: copied flag must never be set for compressed clusters", desc.host_offset),
                        );
                        self.report.add_n(located(p, Some(desc.host_offset)), refs);
                    }
                    if data_file {
                        let p = problem(
                            "compressed-with-data-file",
                            Class::Corruption,
                            format!(
                                "ERROR compressed cluster {i} with data file, entry={entry:#x}"
                            ),
                        );
                        self.report.add_n(located(p, None), refs);
                        continue;
                    }
                    if bitmap != 0 {
                        let p = problem(
                            "compressed-with-bitmap",
                            Class::Corruption,
                            format!("ERROR compressed cluster {i} with non-zero subcluster allocation bitmap, entry={entry:#x}"),
                        );
                        self.report.add_n(located(p, None), refs);
                        continue;
                    }
                    self.inc_n(
                        desc.host_offset,
                        desc.read_len,
                        refs,
                        ROLE_DATA,
                        &table_label,
                    );
                    // Each distinct stream is decoded once, later.
                    if self.compressed.len() < 1 << 24 {
                        self.compressed.insert((desc.host_offset, desc.read_len));
                    }
                    self.report.allocated_clusters += r.active;
                    self.report.compressed_clusters += r.active;
                    self.report.fragmented_clusters += r.active;
                }
                ClusterType::ZeroAlloc | ClusterType::Normal => {
                    let offset = entry & l2::OFFSET_MASK;
                    if (bitmap >> 32) & bitmap != 0 {
                        let p = problem(
                            "subcluster-bitmap-invalid",
                            Class::Corruption,
                            format!("ERROR offset={offset:x}: Allocated cluster has corrupted subcluster allocation bitmap"),
                        );
                        self.report.add_n(located(p, Some(offset)), refs);
                    }
                    if !offset.is_multiple_of(self.cs) {
                        let contains_data = if ext {
                            bitmap & 0xffff_ffff != 0
                        } else {
                            entry & l2::ZERO == 0
                        };
                        let msg = if contains_data {
                            format!("ERROR offset={offset:x}: Data cluster is not properly aligned; L2 entry corrupted.")
                        } else {
                            format!("ERROR offset={offset:x}: Preallocated cluster is not properly aligned; L2 entry corrupted.")
                        };
                        self.report.add_n(
                            located(
                                problem("data-cluster-unaligned", Class::Corruption, msg),
                                Some(offset),
                            ),
                            refs,
                        );
                    }
                    self.report.allocated_clusters += r.active;
                    if next_contiguous != 0 && offset != next_contiguous {
                        self.report.fragmented_clusters += r.active;
                    }
                    next_contiguous = offset + self.cs;
                    if !data_file {
                        self.inc_n(offset, self.cs, refs, ROLE_DATA, &table_label);
                    }
                }
                ClusterType::ZeroPlain => {}
                ClusterType::Unallocated => {
                    if bitmap & 0xffff_ffff != 0 {
                        let p = problem(
                            "subcluster-bitmap-invalid",
                            Class::Corruption,
                            "ERROR: Unallocated cluster has non-zero subcluster allocation map"
                                .into(),
                        );
                        self.report.add_n(located(p, None), refs);
                    }
                }
            }
        }
        Ok(())
    }

    /// qemu's `qcow2_check_bitmaps_refcounts`.
    fn check_bitmaps(&mut self) -> Result<(), String> {
        if !self.h.bitmaps_in_effect() {
            return Ok(());
        }
        let Some(ext) = self.h.bitmaps_ext() else {
            return Ok(());
        };
        self.inc(
            ext.directory_offset,
            ext.directory_size,
            ROLE_METADATA,
            "bitmap directory",
        );
        let len = ext
            .directory_size
            .min(self.file_len.saturating_sub(ext.directory_offset) + 4096);
        let dir = self.read_cluster(ext.directory_offset, len)?;
        let list =
            match bitmap::parse_directory(&dir, ext.nb_bitmaps, self.cs, self.h.virtual_size()) {
                Ok(l) => l,
                Err(e) => {
                    self.report.add(problem(
                        "bitmap-directory-invalid",
                        Class::Corruption,
                        format!("ERROR {e}"),
                    ));
                    return Err(e.to_string());
                }
            };
        for b in list {
            let name = short(&b.name);
            self.inc(
                b.table_offset,
                u64::from(b.table_size) * 8,
                ROLE_METADATA,
                &format!("bitmap '{name}' table"),
            );
            let table = self.read_table(b.table_offset, u64::from(b.table_size));
            let bad = |e: u64, cs: u64| {
                let off = e & 0x00ff_ffff_ffff_fe00;
                e & 0xff00_0000_0000_01fe != 0
                    || (off != 0 && (e & 1 != 0 || !off.is_multiple_of(cs)))
            };
            if table.iter().any(|&e| bad(e, self.cs)) {
                let mut p = problem(
                    "bitmap-table-invalid",
                    Class::Corruption,
                    format!("ERROR bitmap '{name}' table has invalid entries"),
                );
                p.host_offset = Some(b.table_offset);
                self.report.add(p);
                return Err(format!("bitmap '{name}' table is invalid"));
            }
            for e in table {
                let off = e & 0x00ff_ffff_ffff_fe00;
                if off != 0 {
                    self.inc(
                        off,
                        self.cs,
                        ROLE_METADATA,
                        &format!("bitmap '{name}' data"),
                    );
                }
            }
        }
        Ok(())
    }

    /// qemu's `check_refblocks`.
    fn check_refblocks(&mut self) {
        let entries = self.refcounts.table_len();
        for i in 0..entries {
            let e = self.refcounts.table_entry(i);
            let offset = e & REFTABLE_OFFSET_MASK;
            let cluster = offset / self.cs;
            let at = |mut p: Problem| {
                p.table = Some("refcount table".into());
                p.index = Some(i);
                p.host_offset = Some(offset);
                p
            };
            if e & REFTABLE_RESERVED_MASK != 0 {
                let p = problem(
                    "reftable-reserved-bits",
                    Class::Corruption,
                    format!("ERROR refcount table entry {i} has reserved bits set"),
                );
                self.report.add(at(p));
                continue;
            }
            if !offset.is_multiple_of(self.cs) {
                let p = problem(
                    "refblock-unaligned",
                    Class::Corruption,
                    format!("ERROR refcount block {i} is not cluster aligned; refcount table entry corrupted"),
                );
                self.report.add(at(p));
                continue;
            }
            if cluster >= self.imrt.len() {
                let p = problem(
                    "refblock-outside-image",
                    Class::Corruption,
                    format!("ERROR refcount block {i} is outside image"),
                );
                self.report.add(at(p));
                continue;
            }
            if offset != 0 {
                self.inc(offset, self.cs, ROLE_METADATA, "refcount block");
                let r = self.imrt.get(cluster);
                if r != 1 {
                    let p = problem(
                        "refblock-refcount",
                        Class::Corruption,
                        format!("ERROR refcount block {i} refcount={r}"),
                    );
                    self.report.add(at(p));
                }
            }
        }
    }

    /// qemu's `qcow2_get_refcount`: the stored refcount of a host cluster.
    fn stored_refcount(&mut self, k: u64) -> Result<u64, String> {
        match self.refcounts.get(self.src, k) {
            Ok(r) => Ok(r),
            Err(ImageError::RefblockUnaligned { .. }) => Err("Input/output error".into()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// qemu's `compare_refcounts`; returns the highest cluster in use.
    fn compare_refcounts(&mut self) -> u64 {
        let mut highest = 0u64;
        let n = self.imrt.len();
        for i in 0..n {
            let stored = match self.stored_refcount(i) {
                Ok(r) => r,
                Err(e) => {
                    let mut p = problem(
                        "refcount-unreadable",
                        Class::CheckError,
                        format!("Can't get refcount for cluster {i}: {e}"),
                    );
                    p.host_offset = Some(i * self.cs);
                    self.report.add(p);
                    continue;
                }
            };
            let refs = self.imrt.get(i);
            if stored > 0 || refs > 0 {
                highest = i;
            }
            if stored == refs {
                continue;
            }
            let (kind, class, word) = if stored < refs {
                ("refcount-too-low", Class::Corruption, "ERROR")
            } else {
                ("leaked-cluster", Class::Leak, "Leaked")
            };
            let mut p = problem(
                kind,
                class,
                format!("{word} cluster {i} refcount={stored} reference={refs}"),
            );
            p.host_offset = Some(i * self.cs);
            self.report.add(p);
            if class == Class::Leak && self.report.leaked.len() < LEAKS_LISTED {
                let data = self.read_cluster(i * self.cs, self.cs).unwrap_or_default();
                self.report.leaked.push(LeakedCluster {
                    index: i,
                    refcount: stored,
                    references: refs,
                    nonzero: data.iter().any(|&b| b != 0),
                    first_bytes: data.iter().take(32).copied().collect(),
                });
            }
        }
        highest
    }

    /// qemu's `check_oflag_copied` over the active L1 table.
    fn check_oflag_copied(&mut self) {
        let l1 = self.read_table(self.h.l1_table_offset, u64::from(self.h.l1_size));
        let ext = self.h.extended_l2();
        let data_file = self.h.has_data_file();
        let cs = self.cs;
        for (i, &l1e) in l1.iter().enumerate() {
            let l2_offset = l1e & l2::OFFSET_MASK;
            if l2_offset == 0 {
                continue;
            }
            let Ok(r) = self.stored_refcount(l2_offset / cs) else {
                continue;
            };
            if (r == 1) != (l1e & l2::COPIED != 0) {
                let mut p = problem(
                    "copied-flag",
                    Class::Corruption,
                    format!(
                        "ERROR OFLAG_COPIED L2 cluster: l1_index={i} l1_entry={l1e:x} refcount={r}"
                    ),
                );
                p.table = Some("active L1".into());
                p.index = Some(u64::try_from(i).unwrap_or(0));
                p.host_offset = Some(l2_offset);
                self.report.add(p);
            }
            let Ok(buf) = self.read_cluster(l2_offset, cs) else {
                self.report.add(problem(
                    "l2-unreadable",
                    Class::CheckError,
                    "ERROR: Could not read L2 table".into(),
                ));
                return;
            };
            let table = be_u64_table(&buf);
            let n = usize_from(self.h.l2_entries());
            for j in 0..n {
                let entry = if ext {
                    be_u64(&buf, 16 * j).unwrap_or(0)
                } else {
                    table.get(j).copied().unwrap_or(0)
                };
                let t = l2::cluster_type(entry, ext, data_file);
                if !matches!(t, ClusterType::Normal | ClusterType::ZeroAlloc) {
                    continue;
                }
                let r = if data_file {
                    1
                } else {
                    match self.stored_refcount((entry & l2::OFFSET_MASK) / cs) {
                        Ok(r) => r,
                        Err(_) => continue,
                    }
                };
                if (r == 1) != (entry & l2::COPIED != 0) {
                    let mut p = problem(
                        "copied-flag",
                        Class::Corruption,
                        format!("ERROR OFLAG_COPIED data cluster: l2_entry={entry:x} refcount={r}"),
                    );
                    p.table = Some(format!("active L1 L2 at {l2_offset:#x}"));
                    p.index = Some(u64::try_from(j).unwrap_or(0));
                    p.host_offset = Some(entry & l2::OFFSET_MASK);
                    self.report.add(p);
                }
            }
        }
    }

    /// Decodes every distinct compressed stream once, in parallel.
    fn decode_compressed(&mut self) {
        let Some(kind) = self.h.compression_type() else {
            return;
        };
        let mut list: Vec<(u64, u64)> = self.compressed.iter().copied().collect();
        list.sort_unstable();
        let cs = usize_from(self.cs);
        let src = self.src;
        // Where each stream must end: qemu packs streams back to back, so a
        // decoder that reads past the next stream's start means overlapping
        // streams (crafted), and `diff`'s stored-stream shortcut would not
        // be sound for this image.
        let mut starts: Vec<u64> = list.iter().map(|&(h, _)| h).collect();
        starts.dedup();
        let next_start = |host: u64| {
            let i = starts.partition_point(|&s| s <= host);
            starts.get(i).copied()
        };
        let results: Vec<(u64, u64, Result<usize, String>)> = list
            .par_iter()
            .map(|&(host, len)| {
                let mut input = vec![0u8; usize_from(len)];
                if let Err(e) = src.read_zero_padded(host, &mut input) {
                    return (host, len, Err(e.to_string()));
                }
                let mut out = vec![0u8; cs];
                (host, len, decompress_cluster(kind, &input, &mut out))
            })
            .collect();
        let failed = results.iter().filter(|r| r.2.is_err()).count();
        self.report.compressed = CompressedStats {
            unique: u64::try_from(list.len()).unwrap_or(0),
            decoded: u64::try_from(list.len() - failed).unwrap_or(0),
            failed: u64::try_from(failed).unwrap_or(0),
        };
        for (host, len, r) in results {
            match r {
                Err(why) => {
                    let mut p = problem(
                        "compressed-undecodable",
                        Class::Finding,
                        format!("compressed cluster at {host:#x} ({len} bytes) does not decode to one cluster: {why}"),
                    );
                    p.host_offset = Some(host);
                    self.report.add(p);
                }
                Ok(used) => {
                    let end = host.saturating_add(u64::try_from(used).unwrap_or(u64::MAX));
                    if let Some(next) = next_start(host).filter(|&n| end > n) {
                        let mut p = problem(
                            "compressed-overlap",
                            Class::Finding,
                            format!("compressed stream at {host:#x} is decoded from {used} bytes, running into the stream at {next:#x}"),
                        );
                        p.host_offset = Some(host);
                        self.report.add(p);
                    }
                }
            }
        }
    }

    /// Host clusters that are both metadata and guest data, whatever the
    /// refcounts say (a `check -r all` would "repair" these into a
    /// consistent-looking image).
    fn overlaps(&mut self) {
        let n = self.imrt.len();
        for k in 0..n {
            if self.imrt.role(k) == ROLE_METADATA | ROLE_DATA {
                let mut p = problem(
                    "data-overlaps-metadata",
                    Class::Finding,
                    format!("host cluster {k} (offset {:#x}) is referenced both as metadata and as guest data", k * self.cs),
                );
                p.host_offset = Some(k * self.cs);
                self.report.add(p);
            }
        }
    }
}
