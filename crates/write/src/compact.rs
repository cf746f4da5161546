//! Planning a compaction: which guest clusters of the output must hold
//! data, from metadata only (block status, partition tables, filesystem
//! allocation metadata). Nothing that will be dropped is ever read.
//!
//! A cluster is dropped only when every one of its bytes is known to be
//! unneeded: unallocated or zero in the input's block status, or free space
//! of a filesystem qvet reads (see `qvet_guestfs::ext::Ext::free_space`,
//! `qvet_guestfs::fat::Fat::free_space`, `qvet_guestfs::swap`).
//! Everything else (partition tables, boot code, gaps, unknown or encrypted
//! volumes, LVM) is kept byte for byte.

use std::collections::BTreeMap;
use std::sync::Arc;

use qvet_guestfs::swap::SwapSpace;
use qvet_image::{ByteSource, Disk, ImageError};
use qvet_volume::{FsKind, PartitionType, Window};

use crate::qcow2_out::Codec;

/// Why bytes are not in the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Category {
    /// Unallocated in the input (and not in a backing file).
    Unallocated,
    /// Zero clusters (zero flag, preallocated metadata, holes).
    Zero,
    /// Allocated data that reads as zeros (found while reading).
    ZeroData,
    /// Free blocks of an ext2/3/4 filesystem.
    ExtFree,
    /// Free clusters of a FAT filesystem.
    FatFree,
    /// Stale swap.
    Swap,
}

impl Category {
    /// Stable name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Unallocated => "unallocated",
            Self::Zero => "zero",
            Self::ZeroData => "zero_data",
            Self::ExtFree => "ext_free",
            Self::FatFree => "fat_free",
            Self::Swap => "swap",
        }
    }

    /// Every category, in report order.
    pub const ALL: [Self; 6] = [
        Self::Unallocated,
        Self::Zero,
        Self::ZeroData,
        Self::ExtFree,
        Self::FatFree,
        Self::Swap,
    ];
}

/// Options of a compaction.
#[derive(Debug, Clone)]
pub struct CompactOptions {
    /// Do not drop filesystem free space.
    pub keep_free_space: bool,
    /// Output cluster size, as bits (9..=21).
    pub cluster_bits: u32,
    /// Compression.
    pub codec: Option<Codec>,
    /// Write the active view of an image with internal snapshots.
    pub drop_snapshots: bool,
    /// The passphrase the input was opened with: the proof opens the
    /// (encrypted) output with it.
    pub key: Option<qvet_image::Key>,
}

impl Default for CompactOptions {
    fn default() -> Self {
        Self {
            keep_free_space: false,
            cluster_bits: 16,
            codec: None,
            drop_snapshots: false,
            key: None,
        }
    }
}

/// One region of the disk in the plan: a partition, or what lies outside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    /// Partition number (None: outside every partition).
    pub number: Option<u32>,
    /// First byte.
    pub start: u64,
    /// Length.
    pub len: u64,
    /// What it holds ("ext4", "fat", "swap", "lvm2", "unknown", ...).
    pub content: String,
    /// What was reclaimed and how, or why nothing was.
    pub note: String,
    /// Bytes the filesystem reports free (before cluster rounding).
    pub fs_free: u64,
    /// Free bytes inside kept clusters, written as zeros.
    pub zeroed: u64,
    /// Bytes dropped, by category (whole output clusters).
    pub dropped: BTreeMap<Category, u64>,
}

/// The plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Guest size.
    pub virtual_size: u64,
    /// Output cluster size.
    pub cluster_size: u64,
    /// Guest byte ranges to copy, sorted, cluster-aligned (the last may end
    /// at the virtual size).
    pub keep: Vec<(u64, u64)>,
    /// Regions: partitions, then (number None) everything outside them.
    pub regions: Vec<Region>,
    /// Partition scheme found.
    pub scheme: String,
    /// Host bytes pinned only by internal snapshots (dropped).
    pub snapshot_bytes: u64,
    /// Names of the internal snapshots dropped.
    pub snapshots: Vec<String>,
    /// Filesystem free space inside kept clusters (sorted guest byte
    /// ranges): written as zeros, as `zerofree` would leave it, so that the
    /// stale bytes go and compressed clusters shrink.
    pub zero_fill: Vec<(u64, u64)>,
}

impl Plan {
    /// Bytes kept (before zero-data detection).
    pub fn kept_bytes(&self) -> u64 {
        self.keep.iter().map(|r| r.1).sum()
    }

    /// Guest bytes stored in the output: the kept bytes less the clusters
    /// found to read as zeros while writing ([`Category::ZeroData`]). With
    /// the guest-byte categories of [`Plan::dropped`] it adds up to the
    /// virtual size.
    pub fn stored_bytes(&self) -> u64 {
        let zero_data = self.dropped().get(&Category::ZeroData).copied();
        self.kept_bytes().saturating_sub(zero_data.unwrap_or(0))
    }

    /// Dropped bytes by category, over all regions.
    pub fn dropped(&self) -> BTreeMap<Category, u64> {
        let mut out = BTreeMap::new();
        for r in &self.regions {
            for (c, b) in &r.dropped {
                *out.entry(*c).or_insert(0) += b;
            }
        }
        out
    }

    /// Index of the region holding guest offset `off` (partitions first).
    pub fn region_of(&self, off: u64) -> Option<usize> {
        self.regions
            .iter()
            .position(|r| r.number.is_some() && off >= r.start && off - r.start < r.len)
            .or_else(|| self.regions.iter().position(|r| r.number.is_none()))
    }
}

/// Why a compaction could not be planned or done.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CompactError {
    /// Reading the input failed.
    #[error(transparent)]
    Read(#[from] ImageError),
    /// Reading the partition table failed.
    #[error(transparent)]
    Volume(#[from] qvet_volume::VolumeError),
    /// The image has internal snapshots and dropping them was not allowed.
    #[error("the image has internal snapshots ({0}); they pin old data: pass --drop-snapshots to write the current state only")]
    Snapshots(String),
    /// Part of the guest view comes from a file that was not opened.
    #[error("part of the guest view is in a backing or data file that was not opened (guest offset {0:#x}); pass --allow-backing / --allow-data-file to flatten it")]
    Unavailable(u64),
    /// An encrypted layer that compact cannot write encrypted again: a
    /// backing file under an unencrypted top (its content would land in
    /// plaintext), or compression asked of an encrypted image.
    #[error("'{0}' is encrypted ({1}): {2}")]
    Encrypted(String, &'static str, &'static str),
    /// The output geometry is impossible.
    #[error("{0}")]
    Geometry(String),
    /// Writing failed.
    #[error(transparent)]
    Write(#[from] crate::WriteError),
    /// The qcow2 writer failed.
    #[error(transparent)]
    Qcow2(#[from] crate::qcow2_out::Qcow2WriteError),
    /// The proof found a difference; the output was removed.
    #[error("proof failed, output removed: {0}")]
    ProofFailed(String),
}

/// Drop candidates: sorted byte ranges per category.
type Drops = BTreeMap<Category, Vec<(u64, u64)>>;

fn add_range(d: &mut Drops, cat: Category, start: u64, len: u64) {
    if len == 0 {
        return;
    }
    let v = d.entry(cat).or_default();
    match v.last_mut() {
        Some((s, l)) if s.saturating_add(*l) == start => *l += len,
        _ => v.push((start, len)),
    }
}

/// Plans the compaction of `disk` (see the module docs).
///
/// # Errors
/// [`CompactError::Snapshots`] unless allowed; [`CompactError::Unavailable`]
/// for a backing or data file that was not opened; read errors.
pub fn plan(disk: &Arc<Disk>, opts: &CompactOptions) -> Result<Plan, CompactError> {
    if !(9..=21).contains(&opts.cluster_bits) {
        return Err(CompactError::Geometry(format!(
            "cluster size 2^{} (512 B to 2 MiB)",
            opts.cluster_bits
        )));
    }
    // An encrypted top layer is written encrypted again (its scheme and
    // key slots copied); plaintext never reaches the output's disk.
    let top_encrypted = disk
        .top()
        .and_then(|l| l.qcow2())
        .and_then(|q| q.encryption())
        .is_some();
    for layer in disk.layers() {
        if let Some(kind) = layer.qcow2().and_then(|q| q.encryption()) {
            if !top_encrypted {
                return Err(CompactError::Encrypted(
                    layer.filename.clone(),
                    kind,
                    "it backs an unencrypted image, whose compacted copy would hold its content in plaintext",
                ));
            }
            if opts.codec.is_some() {
                return Err(CompactError::Encrypted(
                    layer.filename.clone(),
                    kind,
                    "qemu does not compress encrypted images; compact it without -c (the output stays encrypted)",
                ));
            }
        }
    }
    let cs = 1u64 << opts.cluster_bits;
    let size = disk.size();
    let (snapshots, snapshot_bytes) = snapshot_facts(disk, opts)?;
    // Container level.
    let mut drops: Drops = BTreeMap::new();
    for e in disk.map() {
        let e = e?;
        if e.unavailable {
            return Err(CompactError::Unavailable(e.start));
        }
        if e.zero {
            let cat = if e.present || e.depth > 0 {
                Category::Zero
            } else {
                Category::Unallocated
            };
            add_range(&mut drops, cat, e.start, e.length);
        }
    }
    // Filesystem level.
    let vm = qvet_volume::scan(disk.as_ref())?;
    let src: Arc<dyn ByteSource> = Arc::clone(disk) as Arc<dyn ByteSource>;
    let mut regions = Vec::new();
    let parts: Vec<_> = vm
        .partitions
        .iter()
        .filter(|p| !matches!(p.kind, PartitionType::Mbr(0x05 | 0x0f | 0x85)))
        .collect();
    let overlapping = |a: &qvet_volume::Partition| {
        parts.iter().any(|b| {
            b.number != a.number
                && a.start < b.start.saturating_add(b.len)
                && b.start < a.start.saturating_add(a.len)
        })
    };
    for p in &parts {
        let len = p.len.min(size.saturating_sub(p.start));
        let mut r = Region {
            number: Some(p.number),
            start: p.start,
            len,
            content: "unknown".into(),
            note: String::new(),
            fs_free: 0,
            zeroed: 0,
            dropped: BTreeMap::new(),
        };
        let kind = qvet_volume::detect_filesystem(disk.as_ref(), p.start, len)?;
        let win: Arc<dyn ByteSource> = Arc::new(Window::new(Arc::clone(&src), p.start, len));
        r.content = kind.map_or("empty", FsKind::name).to_string();
        if opts.keep_free_space {
            r.note = "kept (--keep-free-space)".into();
        } else if overlapping(p) {
            r.note = "kept: overlaps another partition".into();
        } else if p.start.saturating_add(p.len) > size {
            r.note = "kept: runs past the end of the disk".into();
        } else {
            reclaim(kind, &win, &mut r, &mut drops)?;
        }
        regions.push(r);
    }
    regions.push(Region {
        number: None,
        start: 0,
        len: size,
        content: "outside partitions".into(),
        note: "partition tables, boot code, gaps: kept byte for byte".into(),
        fs_free: 0,
        zeroed: 0,
        dropped: BTreeMap::new(),
    });
    let mut plan = Plan {
        virtual_size: size,
        cluster_size: cs,
        keep: Vec::new(),
        regions,
        scheme: vm.scheme.name().to_string(),
        snapshot_bytes,
        snapshots,
        zero_fill: Vec::new(),
    };
    resolve(&mut plan, &drops);
    Ok(plan)
}

/// Drop candidates of one partition's content.
fn reclaim(
    kind: Option<FsKind>,
    win: &Arc<dyn ByteSource>,
    r: &mut Region,
    drops: &mut Drops,
) -> Result<(), CompactError> {
    let base = r.start;
    match kind {
        Some(FsKind::Ext) => match qvet_guestfs::ext::Ext::open(Arc::clone(win)) {
            Ok(fs) => {
                r.content = qvet_guestfs::FileSystem::kind(&fs).to_string();
                let free = match fs.free_space() {
                    Ok(f) => f,
                    Err(e) => {
                        r.note = format!("kept: allocation unreadable ({e})");
                        return Ok(());
                    }
                };
                if let Some(why) = &free.kept_whole {
                    r.note = format!("kept whole: {why}");
                    return Ok(());
                }
                for (s, l) in &free.free {
                    add_range(drops, Category::ExtFree, base.saturating_add(*s), *l);
                }
                r.fs_free = free.free_bytes();
                let mut note = format!(
                    "bitmaps{} cross-checked with {} inodes",
                    if free.replayed {
                        " (journal replayed)"
                    } else {
                        ""
                    },
                    free.inodes_walked
                );
                if free.itable_free_blocks > 0 {
                    note.push_str(&format!(
                        "; {} unused inode-table blocks",
                        free.itable_free_blocks
                    ));
                }
                if !free.kept_groups.is_empty() {
                    let shown: Vec<String> = free
                        .kept_groups
                        .iter()
                        .take(5)
                        .map(|k| format!("group {}: {}", k.group, k.reason))
                        .collect();
                    note.push_str(&format!(
                        "; {} group(s) kept whole ({}{})",
                        free.kept_groups.len(),
                        shown.join("; "),
                        if free.kept_groups.len() > 5 {
                            "; ..."
                        } else {
                            ""
                        }
                    ));
                }
                r.note = note;
            }
            Err(e) => r.note = format!("kept: ext not readable ({e})"),
        },
        Some(FsKind::Fat) => match qvet_guestfs::fat::Fat::open(Arc::clone(win)) {
            Ok(fs) => {
                r.content = "fat".into();
                let free = match fs.free_space() {
                    Ok(f) => f,
                    Err(e) => {
                        r.note = format!("kept: allocation unreadable ({e})");
                        return Ok(());
                    }
                };
                if let Some(why) = &free.kept_whole {
                    r.note = format!("kept whole: {why}");
                    return Ok(());
                }
                for (s, l) in &free.free {
                    add_range(drops, Category::FatFree, base.saturating_add(*s), *l);
                }
                r.fs_free = free.free_bytes();
                r.note = format!(
                    "clusters free in all {} FAT copies, cross-checked with {} entries",
                    free.fat_copies, free.entries_walked
                );
            }
            Err(e) => r.note = format!("kept: FAT not readable ({e})"),
        },
        Some(FsKind::Swap) | Some(FsKind::Unknown) => {
            match qvet_guestfs::swap::swap_space(win.as_ref()) {
                Ok(SwapSpace::Free { page_size, free }) => {
                    r.content = "swap".into();
                    add_range(drops, Category::Swap, base.saturating_add(free.0), free.1);
                    r.fs_free = free.1;
                    r.note = format!("stale swap after the {page_size}-byte header page");
                }
                Ok(SwapSpace::Kept(why)) if why != "no swap signature" => {
                    r.content = "swap".into();
                    r.note = format!("kept whole: {why}");
                }
                Ok(SwapSpace::Kept(_)) => r.note = "kept: content not recognised".into(),
                Err(e) => r.note = format!("kept: {e}"),
            }
        }
        Some(k) => r.note = format!("kept: {} is not compacted", k.name()),
        None => r.note = "reads as zeros".into(),
    }
    Ok(())
}

/// Turns drop candidates into whole dropped clusters, attributes them to
/// regions and categories, and computes the kept ranges.
fn resolve(plan: &mut Plan, drops: &Drops) {
    let cs = plan.cluster_size;
    let size = plan.virtual_size;
    // Union of every candidate.
    let mut all: Vec<(u64, u64)> = drops.values().flatten().copied().collect();
    all.sort_unstable();
    let mut union: Vec<(u64, u64)> = Vec::new();
    for (s, l) in all {
        let e = s.saturating_add(l);
        match union.last_mut() {
            Some((_, ue)) if s <= *ue => *ue = (*ue).max(e),
            _ => union.push((s, e)),
        }
    }
    // Whole clusters covered by the union.
    let mut dropped_clusters: Vec<(u64, u64)> = Vec::new();
    for (s, e) in union {
        let first = s.div_ceil(cs);
        let end = if e >= size { size.div_ceil(cs) } else { e / cs };
        if end > first {
            dropped_clusters.push((first, end));
        }
    }
    // Attribution: per cluster, the first category covering it entirely,
    // else the one covering its first byte.
    let lists: Vec<(Category, &Vec<(u64, u64)>)> = drops.iter().map(|(c, v)| (*c, v)).collect();
    let mut cursors = vec![0usize; lists.len()];
    for &(first, end) in &dropped_clusters {
        for c in first..end {
            let cstart = c * cs;
            let cend = (cstart + cs).min(size);
            let mut whole = None;
            let mut touching = None;
            for ((cat, list), cur) in lists.iter().zip(cursors.iter_mut()) {
                while list
                    .get(*cur)
                    .is_some_and(|(s, l)| s.saturating_add(*l) <= cstart)
                {
                    *cur += 1;
                }
                if let Some(&(s, l)) = list.get(*cur) {
                    let e = s.saturating_add(l);
                    if s <= cstart && e >= cend && whole.is_none() {
                        whole = Some(*cat);
                    }
                    if s <= cstart && touching.is_none() {
                        touching = Some(*cat);
                    }
                }
            }
            let cat = whole.or(touching).unwrap_or(Category::Zero);
            if let Some(i) = plan.region_of(cstart) {
                if let Some(r) = plan.regions.get_mut(i) {
                    *r.dropped.entry(cat).or_insert(0) += cend - cstart;
                }
            }
        }
    }
    // Kept: the complement.
    let mut pos = 0u64;
    let total = size.div_ceil(cs);
    for (first, end) in dropped_clusters.iter().copied().chain([(total, total)]) {
        if first > pos {
            let s = pos * cs;
            let e = (first * cs).min(size);
            plan.keep.push((s, e - s));
        }
        pos = pos.max(end);
    }
    // Filesystem free space left inside kept clusters: zero-filled.
    let mut free: Vec<(u64, u64)> = drops
        .iter()
        .filter(|(c, _)| matches!(c, Category::ExtFree | Category::FatFree | Category::Swap))
        .flat_map(|(_, v)| v.iter().copied())
        .collect();
    free.sort_unstable();
    let mut k = 0usize;
    for (s, l) in free {
        let e = s.saturating_add(l);
        while plan.keep.get(k).is_some_and(|(ks, kl)| ks + kl <= s) {
            k += 1;
        }
        let mut j = k;
        while let Some(&(ks, kl)) = plan.keep.get(j) {
            if ks >= e {
                break;
            }
            let (a, b) = (s.max(ks), e.min(ks + kl));
            if b > a {
                match plan.zero_fill.last_mut() {
                    Some((zs, zl)) if *zs + *zl >= a => *zl = (*zl).max(b - *zs),
                    _ => plan.zero_fill.push((a, b - a)),
                }
                if let Some(r) = plan.region_of(a).and_then(|i| plan.regions.get_mut(i)) {
                    r.zeroed += b - a;
                }
            }
            j += 1;
        }
    }
}

/// Zeroes, in `buf` (guest bytes from `start`), the parts of `fill` (sorted
/// ranges) it holds.
pub fn apply_zero_fill(fill: &[(u64, u64)], start: u64, buf: &mut [u8]) {
    let end = start.saturating_add(buf.len() as u64);
    let first = fill.partition_point(|&(s, l)| s.saturating_add(l) <= start);
    for &(s, l) in fill.get(first..).unwrap_or_default() {
        if s >= end {
            break;
        }
        let a = usize::try_from(s.max(start) - start).unwrap_or(0);
        let b = usize::try_from(s.saturating_add(l).min(end) - start).unwrap_or(0);
        if let Some(z) = buf.get_mut(a..b) {
            z.fill(0);
        }
    }
}

/// Internal snapshots of the top layer: refused unless dropping them is
/// allowed; then their names and the host bytes only they reference.
fn snapshot_facts(
    disk: &Arc<Disk>,
    opts: &CompactOptions,
) -> Result<(Vec<String>, u64), CompactError> {
    let Some(top) = disk.top() else {
        return Ok((Vec::new(), 0));
    };
    let Some(q) = top.qcow2() else {
        return Ok((Vec::new(), 0));
    };
    let snaps = q.snapshots();
    if snaps.is_empty() {
        return Ok((Vec::new(), 0));
    }
    let names: Vec<String> = snaps
        .iter()
        .map(|s| {
            format!(
                "{} ({})",
                String::from_utf8_lossy(&s.id),
                String::from_utf8_lossy(&s.name)
            )
        })
        .collect();
    if !opts.drop_snapshots {
        return Err(CompactError::Snapshots(names.join(", ")));
    }
    let cs = 1u64 << q.header().cluster_bits;
    let host_clusters = |d: &Disk| -> Result<std::collections::HashSet<u64>, CompactError> {
        let mut set = std::collections::HashSet::new();
        for e in d.map() {
            let e = e?;
            if let (0, Some(off), true) = (e.depth, e.offset, e.data) {
                let mut c = off / cs;
                while c * cs < off.saturating_add(e.length) {
                    set.insert(c);
                    c += 1;
                }
            }
        }
        Ok(set)
    };
    let active = host_clusters(disk)?;
    let mut only = std::collections::HashSet::new();
    for s in snaps {
        let o = qvet_image::OpenOptions {
            format: Some(qvet_image::Format::Qcow2),
            snapshot: Some(String::from_utf8_lossy(&s.id).into_owned()),
            ..qvet_image::OpenOptions::default()
        };
        // A snapshot that cannot be opened pins nothing we can count.
        if let Ok(d) = Disk::open(&top.path, &o) {
            for c in host_clusters(&d)? {
                if !active.contains(&c) {
                    only.insert(c);
                }
            }
        }
    }
    Ok((names, (only.len() as u64).saturating_mul(cs)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn plan_with(size: u64, cs: u64, drops: &[(Category, u64, u64)]) -> Plan {
        let mut d: Drops = BTreeMap::new();
        for &(c, s, l) in drops {
            add_range(&mut d, c, s, l);
        }
        let mut p = Plan {
            virtual_size: size,
            cluster_size: cs,
            keep: Vec::new(),
            regions: vec![
                Region {
                    number: Some(1),
                    start: 1024,
                    len: size - 1024,
                    content: "ext4".into(),
                    note: String::new(),
                    fs_free: 0,
                    zeroed: 0,
                    dropped: BTreeMap::new(),
                },
                Region {
                    number: None,
                    start: 0,
                    len: size,
                    content: String::new(),
                    note: String::new(),
                    fs_free: 0,
                    zeroed: 0,
                    dropped: BTreeMap::new(),
                },
            ],
            scheme: "mbr".into(),
            snapshot_bytes: 0,
            snapshots: Vec::new(),
            zero_fill: Vec::new(),
        };
        resolve(&mut p, &d);
        p
    }

    #[test]
    fn only_whole_clusters_are_dropped() {
        // 10 clusters of 1 KiB; free space covers 1.5 .. 4.5 KiB and zeros
        // cover 4 .. 6 KiB: clusters 2, 3 (free) and 4, 5 (zero / mixed).
        let p = plan_with(
            10 * 1024,
            1024,
            &[
                (Category::ExtFree, 1536, 3072),
                (Category::Zero, 4096, 2048),
            ],
        );
        assert_eq!(p.keep, vec![(0, 2048), (6144, 4096)]);
        let d = p.dropped();
        assert_eq!(d.get(&Category::ExtFree), Some(&2048));
        assert_eq!(d.get(&Category::Zero), Some(&2048));
        assert_eq!(p.kept_bytes() + d.values().sum::<u64>(), 10 * 1024);
    }

    #[test]
    fn a_partial_last_cluster_is_dropped_when_covered_to_the_end() {
        let p = plan_with(2500, 1024, &[(Category::Unallocated, 1024, 1476)]);
        assert_eq!(p.keep, vec![(0, 1024)]);
        assert_eq!(p.regions[0].dropped.values().sum::<u64>(), 1476);
        let p = plan_with(2500, 1024, &[(Category::Unallocated, 1024, 1000)]);
        assert_eq!(p.keep, vec![(0, 2500)], "24 bytes of cluster 1 are needed");
        let p = plan_with(2500, 1024, &[(Category::Unallocated, 1024, 1024)]);
        assert_eq!(p.keep, vec![(0, 1024), (2048, 452)]);
    }

    #[test]
    fn free_space_inside_kept_clusters_is_zero_filled() {
        let p = plan_with(
            10 * 1024,
            1024,
            &[
                (Category::ExtFree, 1536, 3072),
                (Category::Zero, 4096, 2048),
                (Category::FatFree, 8000, 100),
            ],
        );
        // 1536..2048 lies in kept cluster 1; 8000..8100 in kept cluster 7.
        assert_eq!(p.zero_fill, vec![(1536, 512), (8000, 100)]);
        let mut buf = vec![1u8; 4096];
        apply_zero_fill(&p.zero_fill, 6144, &mut buf);
        assert!(buf[..1856].iter().all(|&b| b == 1));
        assert!(buf[1856..1956].iter().all(|&b| b == 0));
        assert!(buf[1956..].iter().all(|&b| b == 1));
        let mut buf = vec![1u8; 1024];
        apply_zero_fill(&p.zero_fill, 1024, &mut buf);
        assert!(buf[..512].iter().all(|&b| b == 1) && buf[512..].iter().all(|&b| b == 0));
    }

    #[test]
    fn nothing_to_drop_keeps_everything() {
        let p = plan_with(3000, 512, &[]);
        assert_eq!(p.keep, vec![(0, 3000)]);
        assert!(p.dropped().is_empty());
    }
}
