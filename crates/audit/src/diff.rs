//! `diff`: what changed between two guest disks, file by file.
//!
//! The fast path first finds the guest ranges that differ
//! ([`qvet_image::compare`]): both mappings are resolved, runs both know
//! are zeros cost nothing, compressed clusters whose stored streams are
//! identical are not inflated, and everything else is read from both sides
//! and compared in parallel, down to 4 KiB granules. Only then are the
//! partition tables compared, and only partitions that a differing range
//! touches are opened: their trees are walked (both sides at once, bounded,
//! loop safe) and matched by path, metadata is compared for every entry,
//! and file contents are hashed (sha256) only for files whose data ranges
//! touch a differing range, moved, or changed size. Bytes outside every
//! partition are compared exactly and reported as boot-sector,
//! partition-table or gap changes.
//!
//! Nothing here prints; results are values.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use qvet_guestfs::{FileSystem, FileType, FsError, Metadata, NodeId};
use qvet_image::compare::{differing_ranges, CompareStats};
use qvet_image::{ByteSource, Disk, ImageError};
use qvet_volume::{Partition, VolumeError, VolumeMap, Window};
use rayon::prelude::*;
use sha2::{Digest, Sha256};

/// Entries walked in one filesystem before the walk gives up.
pub const MAX_WALK_ENTRIES: usize = 10_000_000;

/// Bytes compared at a time for ranges outside filesystems.
const READ_UNIT: u64 = 1 << 20;

/// What kind of change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ChangeKind {
    /// Partition table entries or structures.
    PartitionTable,
    /// MBR boot code.
    BootSector,
    /// Bytes outside every partition.
    Gap,
    /// Bytes of a partition holding no readable filesystem (or whose
    /// filesystem type changed).
    PartitionData,
    /// A path only in B.
    Added,
    /// A path only in A.
    Removed,
    /// File content differs (metadata may too).
    Modified,
    /// Only metadata differs.
    Metadata,
}

impl ChangeKind {
    /// Name used in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Self::PartitionTable => "partition-table",
            Self::BootSector => "boot-sector",
            Self::Gap => "gap",
            Self::PartitionData => "partition-data",
            Self::Added => "added",
            Self::Removed => "removed",
            Self::Modified => "modified",
            Self::Metadata => "metadata",
        }
    }
}

/// One metadata field that differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldChange {
    /// "type", "mode", "uid", "gid", "nlink", "mtime", "ctime", "crtime",
    /// "link" or "atime" (atime only beside another field).
    pub name: &'static str,
    /// Value in A, as text (mode in octal).
    pub a: String,
    /// Value in B.
    pub b: String,
}

/// One difference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Partition number (in A, or in B when only there); `None` outside partitions.
    pub partition: Option<u32>,
    /// Guest path (bytes), for file changes.
    pub path: Option<Vec<u8>>,
    /// Kind.
    pub kind: ChangeKind,
    /// File size in A.
    pub size_a: Option<u64>,
    /// File size in B.
    pub size_b: Option<u64>,
    /// sha256 (hex) of the file in A.
    pub sha256_a: Option<String>,
    /// sha256 (hex) of the file in B.
    pub sha256_b: Option<String>,
    /// Metadata fields that differ.
    pub fields: Vec<FieldChange>,
    /// Disk offset (for changes outside filesystems).
    pub offset: Option<u64>,
    /// Length in bytes (first to last differing byte).
    pub length: Option<u64>,
    /// Explanation (partition table and partition-data changes).
    pub detail: Option<String>,
}

impl Change {
    /// An empty change of `kind`.
    pub fn new(kind: ChangeKind, partition: Option<u32>) -> Self {
        Self {
            partition,
            path: None,
            kind,
            size_a: None,
            size_b: None,
            sha256_a: None,
            sha256_b: None,
            fields: Vec::new(),
            offset: None,
            length: None,
            detail: None,
        }
    }
}

/// The result of comparing two disks.
#[derive(Debug, Clone)]
pub struct DiffReport {
    /// Guest size of A.
    pub size_a: u64,
    /// Guest size of B.
    pub size_b: u64,
    /// Guest bytes in differing 4 KiB granules.
    pub differing_bytes: u64,
    /// How the differing ranges were found (bytes skipped, compared).
    pub stats: CompareStats,
    /// Every difference found; empty when the guests are identical.
    pub changes: Vec<Change>,
    /// Entries whose only difference is their access time (not listed).
    pub atime_only: u64,
}

impl DiffReport {
    /// Whether the guest contents are identical.
    pub fn identical(&self) -> bool {
        self.changes.is_empty() && self.size_a == self.size_b && self.differing_bytes == 0
    }
}

/// Why a diff failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiffError {
    /// Comparing the guest views failed.
    #[error("comparing the guests: {0}")]
    Compare(#[source] ImageError),
    /// Reading a partition table failed.
    #[error("reading the partition table of image {side}: {error}")]
    Volume {
        /// "A" or "B".
        side: &'static str,
        /// Error.
        error: VolumeError,
    },
    /// Reading guest bytes failed.
    #[error("reading image {side} at {offset:#x}: {error}")]
    Io {
        /// "A" or "B".
        side: &'static str,
        /// Offset.
        offset: u64,
        /// Error.
        error: std::io::Error,
    },
    /// A filesystem could not be read.
    #[error("partition {partition} of image {side}: {error}")]
    Fs {
        /// "A" or "B".
        side: &'static str,
        /// Partition number.
        partition: u32,
        /// Error.
        error: FsError,
    },
    /// A filesystem has more entries than [`MAX_WALK_ENTRIES`].
    #[error("partition {partition} of image {side}: more than {MAX_WALK_ENTRIES} entries")]
    TooManyEntries {
        /// "A" or "B".
        side: &'static str,
        /// Partition number.
        partition: u32,
    },
}

/// Sorted, merged half-open ranges `[start, end)` of the guest that differ.
#[derive(Debug, Clone, Default)]
struct Ranges(Vec<(u64, u64)>);

impl Ranges {
    /// Whether any range meets `[s, e)`.
    fn intersects(&self, s: u64, e: u64) -> bool {
        let i = self.0.partition_point(|&(_, end)| end <= s);
        self.0.get(i).is_some_and(|&(start, _)| start < e)
    }

    /// The parts of the ranges inside `[s, e)`.
    fn clip(&self, s: u64, e: u64) -> Vec<(u64, u64)> {
        self.0
            .iter()
            .filter_map(|&(a, b)| {
                let (a, b) = (a.max(s), b.min(e));
                (a < b).then_some((a, b))
            })
            .collect()
    }
}

/// Compares the guests of `a` and `b`. `progress` receives the guest bytes
/// compared so far (out of the larger virtual size).
///
/// # Errors
/// [`DiffError`] when an image, table or filesystem cannot be read.
pub fn diff(
    a: &Arc<Disk>,
    b: &Arc<Disk>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<DiffReport, DiffError> {
    let (ranges, stats) = differing_ranges(a, b, progress).map_err(DiffError::Compare)?;
    let mut report = DiffReport {
        size_a: a.size(),
        size_b: b.size(),
        differing_bytes: ranges.iter().map(|(s, e)| e - s).sum(),
        stats,
        changes: Vec::new(),
        atime_only: 0,
    };
    if report.identical() {
        return Ok(report);
    }
    let dirty = Ranges(ranges);
    let src_a: Arc<dyn ByteSource> = a.clone();
    let src_b: Arc<dyn ByteSource> = b.clone();
    let va = qvet_volume::scan(src_a.as_ref())
        .map_err(|error| DiffError::Volume { side: "A", error })?;
    let vb = qvet_volume::scan(src_b.as_ref())
        .map_err(|error| DiffError::Volume { side: "B", error })?;
    let sides = Sides {
        a: &src_a,
        b: &src_b,
    };
    let mut changes = Vec::new();
    if report.size_a != report.size_b {
        let mut c = Change::new(ChangeKind::Gap, None);
        let (lo, hi) = (
            report.size_a.min(report.size_b),
            report.size_a.max(report.size_b),
        );
        c.offset = Some(lo);
        c.length = Some(hi - lo);
        c.detail = Some(format!(
            "virtual size {} → {} bytes",
            report.size_a, report.size_b
        ));
        changes.push(c);
    }
    compare_tables(&va, &vb, &mut changes);
    compare_outside(&sides, &va, &vb, &dirty, &mut changes)?;
    for pa in &va.partitions {
        let Some(pb) = vb.partitions.iter().find(|p| p.start == pa.start) else {
            continue;
        };
        let end = pa.start.saturating_add(pa.len.max(pb.len));
        if !dirty.intersects(pa.start, end) {
            continue;
        }
        report.atime_only += compare_partition(&sides, pa, pb, &dirty, &mut changes)?;
    }
    changes.sort_by(|x, y| {
        (
            x.partition.is_some(),
            x.partition,
            &x.path,
            x.offset,
            x.kind,
        )
            .cmp(&(
                y.partition.is_some(),
                y.partition,
                &y.path,
                y.offset,
                y.kind,
            ))
    });
    report.changes = changes;
    Ok(report)
}

struct Sides<'a> {
    a: &'a Arc<dyn ByteSource>,
    b: &'a Arc<dyn ByteSource>,
}

fn describe(p: &Partition) -> String {
    let kind = match &p.kind {
        qvet_volume::PartitionType::Mbr(t) => format!("type {t:#04x}"),
        qvet_volume::PartitionType::Gpt(g) => format!("type {g}"),
        qvet_volume::PartitionType::WholeDisk => "whole disk".into(),
    };
    format!(
        "partition {} at {:#x}, {} bytes, {kind}",
        p.number, p.start, p.len
    )
}

/// Partitions added, removed, moved, resized or retyped.
fn compare_tables(va: &VolumeMap, vb: &VolumeMap, out: &mut Vec<Change>) {
    if va.scheme != vb.scheme {
        let mut c = Change::new(ChangeKind::PartitionTable, None);
        c.detail = Some(format!(
            "scheme {} → {}",
            va.scheme.name(),
            vb.scheme.name()
        ));
        out.push(c);
    }
    for pa in &va.partitions {
        match vb.partitions.iter().find(|p| p.start == pa.start) {
            None => {
                let mut c = Change::new(ChangeKind::PartitionTable, None);
                c.detail = Some(format!("removed: {}", describe(pa)));
                c.offset = Some(pa.start);
                c.length = Some(pa.len);
                out.push(c);
            }
            Some(pb) if pb != pa => {
                let mut c = Change::new(ChangeKind::PartitionTable, None);
                c.detail = Some(format!("changed: {} → {}", describe(pa), describe(pb)));
                c.offset = Some(pa.start);
                c.length = Some(pa.len.max(pb.len));
                out.push(c);
            }
            Some(_) => {}
        }
    }
    for pb in &vb.partitions {
        if !va.partitions.iter().any(|p| p.start == pb.start) {
            let mut c = Change::new(ChangeKind::PartitionTable, None);
            c.detail = Some(format!("added: {}", describe(pb)));
            c.offset = Some(pb.start);
            c.length = Some(pb.len);
            out.push(c);
        }
    }
}

/// Disk ranges holding partition table structures (MBR table, GPT headers
/// and entry arrays), as `[start, end)`.
fn table_ranges(v: &VolumeMap) -> Vec<(u64, u64)> {
    let mut out = vec![(440u64, 512u64)];
    if let Some(g) = &v.gpt {
        let ss = g.sector_size;
        let first = g.header.first_usable_lba.saturating_mul(ss);
        out.push((ss, first.max(ss.saturating_mul(2))));
        let tail = g
            .header
            .last_usable_lba
            .saturating_add(1)
            .saturating_mul(ss);
        out.push((tail, v.disk_size.max(tail)));
    }
    out
}

/// Compares bytes outside every partition: boot code, table structures,
/// gaps. Only differing chunks are read; reported ranges run from the first
/// to the last differing byte of each contiguous piece.
fn compare_outside(
    sides: &Sides<'_>,
    va: &VolumeMap,
    vb: &VolumeMap,
    dirty: &Ranges,
    out: &mut Vec<Change>,
) -> Result<(), DiffError> {
    let mut parts: Vec<(u64, u64)> = va
        .partitions
        .iter()
        .chain(&vb.partitions)
        .filter(|p| p.kind != qvet_volume::PartitionType::WholeDisk || p.start != 0)
        .map(|p| (p.start, p.start.saturating_add(p.len)))
        .collect();
    // A whole-disk filesystem is all partition: nothing lies outside.
    if va.scheme == qvet_volume::Scheme::WholeDisk && vb.scheme == qvet_volume::Scheme::WholeDisk {
        return Ok(());
    }
    parts.sort_unstable();
    let mut tables = table_ranges(va);
    tables.extend(table_ranges(vb));
    for (s, e) in dirty.0.clone() {
        // Cut [s, e) by partitions into outside pieces.
        let mut pieces = Vec::new();
        let mut cur = s;
        for &(ps, pe) in &parts {
            if pe <= cur || ps >= e {
                continue;
            }
            if ps > cur {
                pieces.push((cur, ps.min(e)));
            }
            cur = cur.max(pe);
            if cur >= e {
                break;
            }
        }
        if cur < e {
            pieces.push((cur, e));
        }
        for (ps, pe) in pieces {
            // Split the piece by class: boot code, tables, gap.
            let mut bounds = vec![ps, pe];
            for &(ts, te) in tables.iter().chain(std::iter::once(&(0, 440))) {
                for x in [ts, te] {
                    if x > ps && x < pe {
                        bounds.push(x);
                    }
                }
            }
            bounds.sort_unstable();
            bounds.dedup();
            for w in bounds.windows(2) {
                let [lo, hi] = w else { continue };
                let kind = if *hi <= 440 {
                    ChangeKind::BootSector
                } else if tables.iter().any(|&(ts, te)| *lo >= ts && *hi <= te) {
                    ChangeKind::PartitionTable
                } else {
                    ChangeKind::Gap
                };
                if let Some((first, last)) = differing_bytes(sides, *lo, *hi)? {
                    let mut c = Change::new(kind, None);
                    c.offset = Some(first);
                    c.length = Some(last - first + 1);
                    out.push(c);
                }
            }
        }
    }
    Ok(())
}

/// First and last differing byte of `[s, e)` between the two sides.
fn differing_bytes(sides: &Sides<'_>, s: u64, e: u64) -> Result<Option<(u64, u64)>, DiffError> {
    let mut found: Option<(u64, u64)> = None;
    let mut pos = s;
    while pos < e {
        let n = (e - pos).min(READ_UNIT);
        let len = usize::try_from(n).unwrap_or(0);
        let mut ba = vec![0u8; len];
        let mut bb = vec![0u8; len];
        sides
            .a
            .read_zero_padded(pos, &mut ba)
            .map_err(|error| DiffError::Io {
                side: "A",
                offset: pos,
                error,
            })?;
        sides
            .b
            .read_zero_padded(pos, &mut bb)
            .map_err(|error| DiffError::Io {
                side: "B",
                offset: pos,
                error,
            })?;
        let first = ba.iter().zip(&bb).position(|(x, y)| x != y);
        let last = ba.iter().zip(&bb).rposition(|(x, y)| x != y);
        if let (Some(f), Some(l)) = (first, last) {
            let (f, l) = (pos + f as u64, pos + l as u64);
            found = Some(match found {
                Some((f0, _)) => (f0, l),
                None => (f, l),
            });
        }
        pos += n;
    }
    Ok(found)
}

/// One walked entry.
struct Entry {
    md: Metadata,
    link: Option<Vec<u8>>,
}

fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = dir.to_vec();
    if p.last() != Some(&b'/') {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

/// Every entry below the root, by path: bounded in depth and entries, and
/// a directory met twice (a loop) is not entered again.
fn walk(
    fs: &dyn FileSystem,
    side: &'static str,
    partition: u32,
) -> Result<BTreeMap<Vec<u8>, Entry>, DiffError> {
    let err = |error| DiffError::Fs {
        side,
        partition,
        error,
    };
    let mut out = BTreeMap::new();
    let mut seen: HashSet<NodeId> = HashSet::new();
    let root = fs.root();
    seen.insert(root);
    let mut stack = vec![(root, b"/".to_vec(), 0usize)];
    while let Some((dir, path, depth)) = stack.pop() {
        for e in fs.read_dir(dir).map_err(err)? {
            let child = join(&path, &e.name);
            let md = fs.metadata(e.id).map_err(err)?;
            let link = if md.kind == FileType::Symlink {
                match fs.read_link(e.id) {
                    Ok(l) => Some(l),
                    // An encrypted target (ciphertext) is not compared.
                    Err(FsError::Encrypted { .. }) => Some(b"(encrypted)".to_vec()),
                    Err(e) => return Err(err(e)),
                }
            } else {
                None
            };
            if md.kind == FileType::Dir && depth < qvet_guestfs::MAX_PATH_DEPTH && seen.insert(e.id)
            {
                stack.push((e.id, child.clone(), depth + 1));
            }
            out.insert(child, Entry { md, link });
            if out.len() > MAX_WALK_ENTRIES {
                return Err(DiffError::TooManyEntries { side, partition });
            }
        }
    }
    Ok(out)
}

/// What hashing an entry's content gave.
#[derive(Debug, PartialEq, Eq)]
enum Content {
    /// sha256 (hex) of a regular file.
    Sha256(String),
    /// Not a regular file: nothing to hash.
    NotAFile,
    /// An encrypted file: its plaintext cannot be read, so its change is
    /// judged by its blocks.
    Encrypted,
}

impl Content {
    fn sha256(self) -> Option<String> {
        match self {
            Self::Sha256(h) => Some(h),
            Self::NotAFile | Self::Encrypted => None,
        }
    }
}

/// sha256 (hex) of a file's bytes.
fn sha256_of(fs: &dyn FileSystem, id: NodeId, size: u64) -> Result<String, FsError> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut off = 0u64;
    while off < size {
        let n = fs.read(id, off, &mut buf)?;
        if n == 0 {
            break;
        }
        h.update(buf.get(..n).unwrap_or_default());
        off += n as u64;
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

fn field_changes(a: &Entry, b: &Entry) -> Vec<FieldChange> {
    let mut f = Vec::new();
    let mut push = |name, x: String, y: String| {
        if x != y {
            f.push(FieldChange { name, a: x, b: y });
        }
    };
    push(
        "type",
        a.md.kind.letter().to_string(),
        b.md.kind.letter().to_string(),
    );
    push(
        "mode",
        format!("{:o}", a.md.mode & 0o7777),
        format!("{:o}", b.md.mode & 0o7777),
    );
    push("uid", a.md.uid.to_string(), b.md.uid.to_string());
    push("gid", a.md.gid.to_string(), b.md.gid.to_string());
    push("nlink", a.md.nlink.to_string(), b.md.nlink.to_string());
    push("mtime", a.md.mtime.to_string(), b.md.mtime.to_string());
    let time = |t: Option<i64>| t.map(|t| t.to_string()).unwrap_or_default();
    push("ctime", time(a.md.ctime), time(b.md.ctime));
    push("crtime", time(a.md.crtime), time(b.md.crtime));
    let text = |l: &Option<Vec<u8>>| {
        l.as_deref()
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .unwrap_or_default()
    };
    if a.link != b.link {
        f.push(FieldChange {
            name: "link",
            a: text(&a.link),
            b: text(&b.link),
        });
    }
    // Reading a file on a mounted guest moves its atime: shown beside
    // another change, counted (not listed) when it is the only one.
    if !f.is_empty() && a.md.atime != b.md.atime {
        f.push(FieldChange {
            name: "atime",
            a: time(a.md.atime),
            b: time(b.md.atime),
        });
    }
    f
}

/// Whether a file's data may differ, judged from its byte ranges; `true`
/// when unknown.
fn may_differ(
    fa: &dyn FileSystem,
    fb: &dyn FileSystem,
    a: &Entry,
    b: &Entry,
    start: u64,
    dirty: &Ranges,
) -> bool {
    if a.md.size != b.md.size {
        return true;
    }
    let (Ok(ra), Ok(rb)) = (fa.byte_ranges(a.md.id), fb.byte_ranges(b.md.id)) else {
        return true;
    };
    if ra != rb {
        return true;
    }
    // Data kept inside the inode (ext inline data): no ranges to judge by.
    if ra.is_empty() && a.md.size > 0 {
        return true;
    }
    ra.iter().chain(&rb).any(|&(o, l)| {
        let s = start.saturating_add(o);
        dirty.intersects(s, s.saturating_add(l))
    })
}

/// Compares the filesystems of a partition present in both disks; returns
/// how many entries differ only in their access time.
fn compare_partition(
    sides: &Sides<'_>,
    pa: &Partition,
    pb: &Partition,
    dirty: &Ranges,
    out: &mut Vec<Change>,
) -> Result<u64, DiffError> {
    let n = pa.number;
    let wa: Arc<dyn ByteSource> = Arc::new(Window::new(Arc::clone(sides.a), pa.start, pa.len));
    let wb: Arc<dyn ByteSource> = Arc::new(Window::new(Arc::clone(sides.b), pb.start, pb.len));
    let opened = (qvet_guestfs::open(wa), qvet_guestfs::open(wb));
    // Without two readable filesystems of one kind, the partition's
    // differing bytes are reported as data, with the reason.
    let as_data = |why: String, out: &mut Vec<Change>| -> Result<(), DiffError> {
        let end = pa.start.saturating_add(pa.len.max(pb.len));
        for (s, e) in dirty.clip(pa.start, end) {
            if let Some((first, last)) = differing_bytes(sides, s, e)? {
                let mut c = Change::new(ChangeKind::PartitionData, Some(n));
                c.offset = Some(first);
                c.length = Some(last - first + 1);
                c.detail = Some(why.clone());
                out.push(c);
            }
        }
        Ok(())
    };
    let (fa, fb) = match opened {
        (Ok(fa), Ok(fb)) if fa.kind() == fb.kind() => (fa, fb),
        (oa, ob) => {
            let name = |r: &Result<Box<dyn FileSystem>, FsError>| match r {
                Ok(fs) => fs.kind().to_string(),
                Err(e) => format!("no readable filesystem ({e})"),
            };
            return as_data(format!("A: {}; B: {}", name(&oa), name(&ob)), out).map(|()| 0);
        }
    };
    let (fa, fb): (&dyn FileSystem, &dyn FileSystem) = (fa.as_ref(), fb.as_ref());
    let (wa, wb) = rayon::join(|| walk(fa, "A", n), || walk(fb, "B", pb.number));
    let (ta, tb) = match (wa, wb) {
        (Ok(ta), Ok(tb)) => (ta, tb),
        (Err(e), _) | (_, Err(e)) => {
            return as_data(format!("{} tree not walked: {e}", fa.kind()), out).map(|()| 0);
        }
    };
    let hash = |fs: &dyn FileSystem, side: &'static str, e: &Entry| -> Result<Content, DiffError> {
        if e.md.kind != FileType::File {
            return Ok(Content::NotAFile);
        }
        match sha256_of(fs, e.md.id, e.md.size) {
            Ok(h) => Ok(Content::Sha256(h)),
            Err(FsError::Encrypted { .. }) => Ok(Content::Encrypted),
            Err(error) => Err(DiffError::Fs {
                side,
                partition: n,
                error,
            }),
        }
    };
    const ENCRYPTED: &str = "encrypted: contents not readable; compared by their disk blocks";
    // Decide cheaply what needs hashing, then hash in parallel.
    enum Todo<'e> {
        Added(&'e Entry),
        Removed(&'e Entry),
        Both(&'e Entry, &'e Entry, Vec<FieldChange>, bool),
    }
    // Matching and the cheap checks (fields, byte ranges) run in parallel
    // too: on a large tree they cost as much as the walk.
    let judged: Vec<(&Vec<u8>, Option<Todo<'_>>, bool)> = ta
        .par_iter()
        .map(|(path, a)| match tb.get(path) {
            None => (path, Some(Todo::Removed(a)), false),
            Some(b) => {
                let fields = field_changes(a, b);
                let content = a.md.kind == FileType::File
                    && b.md.kind == FileType::File
                    && may_differ(fa, fb, a, b, pa.start, dirty);
                if content || !fields.is_empty() {
                    (path, Some(Todo::Both(a, b, fields, content)), false)
                } else {
                    (path, None, a.md.atime != b.md.atime)
                }
            }
        })
        .collect();
    let mut atime_only = 0u64;
    let mut todo: Vec<(&Vec<u8>, Todo<'_>)> = Vec::new();
    for (path, t, atime) in judged {
        atime_only += u64::from(atime);
        if let Some(t) = t {
            todo.push((path, t));
        }
    }
    for (path, b) in &tb {
        if !ta.contains_key(path) {
            todo.push((path, Todo::Added(b)));
        }
    }
    // Each item: the change, or `Err(atime differs)` when there is none.
    let found: Vec<Result<Change, bool>> = todo
        .into_par_iter()
        .map(|(path, t)| -> Result<Result<Change, bool>, DiffError> {
            let mut c = Change::new(ChangeKind::Added, Some(n));
            c.path = Some(path.clone());
            match t {
                Todo::Added(b) => {
                    c.size_b = Some(b.md.size);
                    let h = hash(fb, "B", b)?;
                    if h == Content::Encrypted {
                        c.detail = Some(ENCRYPTED.into());
                    }
                    c.sha256_b = h.sha256();
                }
                Todo::Removed(a) => {
                    c.kind = ChangeKind::Removed;
                    c.size_a = Some(a.md.size);
                    let h = hash(fa, "A", a)?;
                    if h == Content::Encrypted {
                        c.detail = Some(ENCRYPTED.into());
                    }
                    c.sha256_a = h.sha256();
                }
                Todo::Both(a, b, fields, content) => {
                    c.kind = ChangeKind::Metadata;
                    c.fields = fields;
                    if content {
                        let (ha, hb) = (hash(fa, "A", a)?, hash(fb, "B", b)?);
                        let differs = if ha == Content::Encrypted || hb == Content::Encrypted {
                            // The blocks it owns differ (that is why it is
                            // here), so it changed.
                            c.detail = Some(ENCRYPTED.into());
                            true
                        } else {
                            ha != hb
                        };
                        if differs {
                            c.kind = ChangeKind::Modified;
                            c.size_a = Some(a.md.size);
                            c.size_b = Some(b.md.size);
                            c.sha256_a = ha.sha256();
                            c.sha256_b = hb.sha256();
                        }
                    }
                    if c.kind == ChangeKind::Metadata && c.fields.is_empty() {
                        return Ok(Err(a.md.atime != b.md.atime));
                    }
                }
            }
            Ok(Ok(c))
        })
        .collect::<Result<_, _>>()?;
    for f in found {
        match f {
            Ok(c) => out.push(c),
            Err(true) => atime_only += 1,
            Err(false) => {}
        }
    }
    Ok(atime_only)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_intersect_and_clip() {
        let r = Ranges(vec![(10, 20), (30, 40)]);
        assert!(r.intersects(15, 16));
        assert!(r.intersects(0, 11));
        assert!(!r.intersects(20, 30));
        assert!(r.intersects(39, 100));
        assert!(!r.intersects(40, 100));
        assert_eq!(r.clip(15, 35), vec![(15, 20), (30, 35)]);
    }
}
