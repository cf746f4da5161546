//! Free space of an ext2/3/4 filesystem, from its allocation metadata only
//! (never by reading free blocks), for compaction.
//!
//! A cluster (a block without `bigalloc`) is reported free only when two
//! independent sources agree:
//!
//! 1. the group's block bitmap says free. `BLOCK_UNINIT` groups are
//!    computed as libext2fs does (superblock and descriptor backups with the
//!    reserved GDT blocks, and every group's bitmaps and inode table that
//!    lies in the group, wherever `flex_bg` put them), and the flag is
//!    trusted only when the descriptor checksum verifies; a bitmap whose
//!    `metadata_csum` checksum fails keeps its group;
//! 2. nothing references it: no block of any in-use inode (extent tree or
//!    block map, extended-attribute block) and no filesystem metadata
//!    (superblock and descriptor copies, bitmaps, inode tables, MMP block).
//!
//! Descriptors that fail libext2fs's sanity check (a bitmap or inode table
//! out of range or overlapping other metadata: e2fsck would read a backup
//! copy) keep the whole filesystem. A group's word on unused inodes is taken
//! only as e2fsck takes it: verified checksum, no more unused than free
//! inodes, `INODE_UNINIT` only with every inode free; otherwise its whole
//! inode table is scanned. The inodes skipped as unused (groups flagged
//! `INODE_UNINIT`, the tail a descriptor's `itable_unused` names) are
//! checked against the rest of the
//! metadata, since the kernel reads an inode wherever it lies: an inode the
//! superblock names (journal, quota, orphan file, lost+found, orphan list)
//! or a reserved one, an inode-bitmap bit, or a directory entry pointing
//! into a skipped part keeps the whole filesystem.
//!
//! Whole inode-table blocks past the last initialised inode of a group
//! (all of them with `INODE_UNINIT`), in groups whose descriptor checksum
//! verifies, are free too: neither the kernel nor e2fsck reads them as
//! inodes, and they are what the kernel's lazy init and `e2fsck -E discard`
//! zero. They hold stale bytes when `mke2fs` ran with `lazy_itable_init` on
//! a disk that was not zeroed. Such a tail is dropped only if no other
//! metadata and no inode's blocks lie in it.
//!
//! Any disagreement (a referenced block the bitmap calls free) keeps the
//! whole group and is reported with its reason; anything the reader cannot
//! account for (an unreadable inode map, unknown features, a journal that
//! needs recovery and was not replayed) keeps the whole filesystem. Blocks
//! before `first_data_block` (block 0 with 1 KiB blocks), bitmap padding past
//! `blocks_count` and anything after the filesystem are never free.
//!
//! Work is bounded by the geometry the superblock gives, which is itself
//! bounded by the volume's size: one bit per cluster, one pass over the
//! inode tables of initialised groups.

use super::{corrupt, crc32c, Ext, Group, INCOMPAT_META_BG};
use crate::bytes::{le16, le32};
use crate::{FsError, NodeId};

const RO_COMPAT_GDT_CSUM: u32 = 0x10;
const RO_COMPAT_BIGALLOC: u32 = 0x200;
const COMPAT_SPARSE_SUPER2: u32 = 0x200;
const COMPAT_FAST_COMMIT: u32 = 0x400;
const INCOMPAT_MMP: u32 = 0x100;
const INCOMPAT_FLEX_BG: u32 = 0x200;
const BG_INODE_UNINIT: u16 = 0x1;
const BG_BLOCK_UNINIT: u16 = 0x2;
/// ro_compat features whose meaning for allocation this module knows:
/// sparse_super, large_file, btree_dir, huge_file, uninit_bg, dir_nlink,
/// extra_isize, quota, bigalloc, metadata_csum, read-only, project, verity,
/// orphan_present.
const RO_COMPAT_KNOWN: u32 = 0x1
    | 0x2
    | 0x4
    | 0x8
    | 0x10
    | 0x20
    | 0x40
    | 0x100
    | 0x200
    | 0x400
    | 0x1000
    | 0x2000
    | 0x8000
    | 0x1_0000;
/// compat features that change what a bitmap means (exclude_inode,
/// exclude_bitmap: ext4 snapshots).
const COMPAT_UNSAFE: u32 = 0x80 | 0x100;

/// Why a group (or the whole filesystem) is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptGroup {
    /// Group number.
    pub group: u64,
    /// Why.
    pub reason: String,
}

/// Free space of an ext filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExtFreeSpace {
    /// Block size in bytes.
    pub block_size: u64,
    /// Bytes per allocation unit (block, or bigalloc cluster).
    pub cluster_bytes: u64,
    /// Free byte ranges `(offset, length)` in the volume, sorted, merged.
    pub free: Vec<(u64, u64)>,
    /// Groups kept whole although their bitmap shows free space.
    pub kept_groups: Vec<KeptGroup>,
    /// Set when nothing at all is free because of this reason.
    pub kept_whole: Option<String>,
    /// Inodes walked for the cross-check.
    pub inodes_walked: u64,
    /// Unused inode-table blocks among the free ranges.
    pub itable_free_blocks: u64,
    /// Whether the bitmaps are those of the journal-replayed view.
    pub replayed: bool,
}

impl ExtFreeSpace {
    fn whole(block_size: u64, why: String) -> Self {
        Self {
            block_size,
            kept_whole: Some(why),
            ..Self::default()
        }
    }

    /// Free bytes in total.
    pub fn free_bytes(&self) -> u64 {
        self.free.iter().map(|r| r.1).sum()
    }
}

/// A plain bitset over `n` bits.
struct Bits(Vec<u64>);

impl Bits {
    fn new(n: u64) -> Result<Self, FsError> {
        let words = usize::try_from(n.div_ceil(64)).map_err(|_| corrupt("bitmap too large"))?;
        Ok(Self(vec![0; words]))
    }
    fn set(&mut self, i: u64) {
        if let Some(w) = usize::try_from(i / 64).ok().and_then(|w| self.0.get_mut(w)) {
            *w |= 1 << (i % 64);
        }
    }
    fn get(&self, i: u64) -> bool {
        usize::try_from(i / 64)
            .ok()
            .and_then(|w| self.0.get(w))
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }
}

/// CRC-16 (ANSI, reflected polynomial 0xA001) as ext4's `uninit_bg`
/// descriptor checksum uses it.
fn crc16(mut crc: u16, data: &[u8]) -> u16 {
    for &b in data {
        crc ^= u16::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xA001
            } else {
                crc >> 1
            };
        }
    }
    crc
}

/// One group descriptor with what this module needs.
#[derive(Debug, Clone, Copy)]
struct Desc {
    group: Group,
    inode_bitmap: u64,
    itable_unused: u64,
    free_inodes: u64,
    block_csum: u32,
    inode_csum: u32,
    /// The descriptor checksum verifies (`None`: the filesystem has none).
    csum_ok: Option<bool>,
}

impl Desc {
    /// Why the descriptor's word on unused inodes (`INODE_UNINIT`,
    /// `itable_unused`) cannot be taken, as e2fsck decides it: no verified
    /// checksum, more unused than free inodes or than the group holds, or
    /// `INODE_UNINIT` on a group whose inodes are not all free. `None`: it
    /// is trusted.
    fn distrust(&self, csum_any: bool, ipg: u64) -> Option<String> {
        if !csum_any || self.csum_ok != Some(true) {
            return Some("no verified descriptor checksum".into());
        }
        if self.itable_unused > self.free_inodes || self.itable_unused > ipg {
            return Some(format!(
                "{} unused inodes but {} free (e2fsck resets it)",
                self.itable_unused, self.free_inodes
            ));
        }
        if self.group.flags & BG_INODE_UNINIT != 0 && self.free_inodes != ipg {
            return Some(format!(
                "INODE_UNINIT with {} of {ipg} inodes free",
                self.free_inodes
            ));
        }
        None
    }
}

impl Ext {
    /// Free space of this filesystem, cross-checked (see the module docs).
    ///
    /// # Errors
    /// I/O errors reading metadata. Inconsistencies are not errors: they
    /// keep groups or the whole filesystem, with the reason.
    pub fn free_space(&self) -> Result<ExtFreeSpace, FsError> {
        let sb = &self.sb;
        let bs = sb.block_size;
        if let Some(j) = &self.journal {
            // A log with nothing committed and no problem recovers to the
            // on-disk state; anything else that was not replayed is unknown.
            let nothing_to_replay = j.transactions == 0 && j.problems.is_empty();
            if j.needs_recovery && !j.applied && !nothing_to_replay {
                return Ok(ExtFreeSpace::whole(
                    bs,
                    "the journal needs recovery and could not be replayed".into(),
                ));
            }
        }
        let replayed = self.overlay.is_some();
        // Fast-commit records are replayed by the kernel after the journal
        // and may allocate blocks; this reader does not replay them.
        if self.journal.as_ref().is_some_and(|j| j.needs_recovery)
            && sb.compat & COMPAT_FAST_COMMIT != 0
        {
            return Ok(ExtFreeSpace::whole(
                bs,
                "the journal needs recovery and holds fast-commit records".into(),
            ));
        }
        if sb.ro_compat & !RO_COMPAT_KNOWN != 0 {
            return Ok(ExtFreeSpace::whole(
                bs,
                format!(
                    "unknown ro_compat features {:#x}",
                    sb.ro_compat & !RO_COMPAT_KNOWN
                ),
            ));
        }
        if sb.compat & COMPAT_UNSAFE != 0 {
            return Ok(ExtFreeSpace::whole(
                bs,
                "ext4 snapshot features (exclude_inode/exclude_bitmap)".into(),
            ));
        }
        let fs_bytes = sb.blocks_count.saturating_mul(bs);
        if fs_bytes > self.src.len() {
            return Ok(ExtFreeSpace::whole(
                bs,
                format!(
                    "the filesystem ({fs_bytes} bytes) is larger than its volume ({} bytes)",
                    self.src.len()
                ),
            ));
        }
        // Inode tables live inside the filesystem: a count that cannot fit
        // is corrupt (and would make the walk below unbounded).
        if sb.inodes_count.saturating_mul(sb.inode_size) > fs_bytes {
            return Ok(ExtFreeSpace::whole(
                bs,
                format!("{} inodes cannot fit in the filesystem", sb.inodes_count),
            ));
        }
        let ratio = sb.cluster_ratio.max(1);
        if sb.ro_compat & RO_COMPAT_BIGALLOC != 0 && sb.first_data_block != 0 {
            return Ok(ExtFreeSpace::whole(
                bs,
                "bigalloc with first_data_block != 0".into(),
            ));
        }
        let clusters = sb.blocks_count.div_ceil(ratio);
        let csum_any = sb.csum || sb.ro_compat & RO_COMPAT_GDT_CSUM != 0;
        let mut descs = Vec::new();
        for g in 0..sb.group_count {
            descs.push(self.read_desc(g)?);
        }
        if let Err(why) = self.check_descriptors(&descs) {
            return Ok(ExtFreeSpace::whole(
                bs,
                format!("the group descriptors fail e2fsck's check ({why}); e2fsck would read the backup copies"),
            ));
        }
        // Which inodes the scan below skips as unused, and why.
        let skipped = |ino: u64| -> Option<String> {
            let ipg = sb.inodes_per_group.max(1);
            let idx0 = ino.checked_sub(1)?;
            let g = idx0 / ipg;
            let d = descs.get(usize::try_from(g).ok()?)?;
            if d.distrust(csum_any, ipg).is_some() {
                return None;
            }
            if d.group.flags & BG_INODE_UNINIT != 0 {
                return Some(format!("group {g} is flagged INODE_UNINIT"));
            }
            let limit = ipg.saturating_sub(d.itable_unused);
            (idx0 % ipg >= limit).then(|| {
                format!(
                    "group {g}'s descriptor says its last {} inodes are unused",
                    d.itable_unused
                )
            })
        };
        for (ino, role) in self.named_inodes() {
            if ino == 0 || ino > sb.inodes_count {
                continue;
            }
            if let Some(why) = skipped(ino) {
                return Ok(ExtFreeSpace::whole(
                    bs,
                    format!("inode {ino} ({role}) is used by the filesystem, but {why}"),
                ));
            }
        }
        // The orphan list goes on through each orphan's `i_dtime`; the
        // kernel and e2fsck read every inode on it.
        let mut next = u64::from(le32(&sb.raw, 0xE8));
        let mut steps = 0u64;
        while next != 0 && next <= sb.inodes_count && steps < sb.inodes_count.min(1 << 16) {
            if let Some(why) = skipped(next) {
                return Ok(ExtFreeSpace::whole(
                    bs,
                    format!("inode {next} is on the orphan list, but {why}"),
                ));
            }
            next = match self.inode(next) {
                Ok(i) => u64::from(le32(&i.raw, 20)),
                Err(_) => 0,
            };
            steps += 1;
        }
        let itable_blocks = (sb.inodes_per_group.saturating_mul(sb.inode_size)).div_ceil(bs);
        let tails = self.unused_itable_tails(&descs, csum_any, itable_blocks);
        // An inode's block in a tail makes the layout a lie.
        let tail_overlap = |b: u64, n: u64| -> Option<(u64, u64)> {
            let end = b.saturating_add(n);
            let i = tails.partition_point(|t| t.1.saturating_add(t.2) <= b);
            tails
                .get(i)
                .filter(|t| t.1 < end)
                .map(|t| (t.0, b.max(t.1)))
        };
        // References: metadata first.
        let mut referenced = Bits::new(clusters)?;
        let mark = |refd: &mut Bits, block: u64, count: u64| {
            let end = block.saturating_add(count).min(sb.blocks_count);
            let mut b = block;
            while b < end {
                refd.set(b / ratio);
                b = b.saturating_add(1);
            }
        };
        // (No metadata lies in a tail: `check_descriptors` saw to that.)
        for (g, d) in (0u64..).zip(descs.iter()) {
            for (b, n) in self.super_and_bgd(g) {
                mark(&mut referenced, b, n);
            }
            mark(&mut referenced, d.group.block_bitmap, 1);
            mark(&mut referenced, d.inode_bitmap, 1);
            mark(&mut referenced, d.group.inode_table, itable_blocks);
        }
        if let Some(mmp) = self.mmp_block() {
            mark(&mut referenced, mmp, 1);
        }
        let meta_refs = referenced.0.clone();
        // References: every in-use inode.
        let mut walked = 0u64;
        let mut dirs: Vec<u64> = Vec::new();
        for (g, d) in (0u64..).zip(descs.iter()) {
            let distrust = d.distrust(csum_any, sb.inodes_per_group);
            let trusted_uninit = distrust.is_none();
            if d.group.flags & BG_INODE_UNINIT != 0 {
                match distrust {
                    None => continue,
                    Some(why) => {
                        return Ok(ExtFreeSpace::whole(
                            bs,
                            format!("group {g}: INODE_UNINIT not trusted: {why}"),
                        ))
                    }
                }
            }
            let ibm = self.read_block(d.inode_bitmap)?;
            if sb.csum {
                let len = usize::try_from(sb.inodes_per_group / 8).unwrap_or(0);
                let c = crc32c(sb.csum_seed, ibm.get(..len).unwrap_or_default());
                let want = if sb.desc_size >= 0x3C { c } else { c & 0xFFFF };
                if d.inode_csum != want {
                    return Ok(ExtFreeSpace::whole(
                        bs,
                        format!("group {g}: inode bitmap checksum mismatch"),
                    ));
                }
            }
            // Inodes past the initialised part of the table are unused
            // (`bg_itable_unused`, trusted with a verified checksum).
            let limit = if trusted_uninit {
                sb.inodes_per_group.saturating_sub(d.itable_unused)
            } else {
                sb.inodes_per_group
            };
            // The kernel raises itable_unused's limit before it allocates
            // an inode: a bit set past it means the descriptor lies.
            for idx in limit..sb.inodes_per_group {
                let set = ibm
                    .get(usize::try_from(idx / 8).unwrap_or(usize::MAX))
                    .is_some_and(|b| b & (1 << (idx % 8)) != 0);
                if set {
                    return Ok(ExtFreeSpace::whole(
                        bs,
                        format!(
                            "group {g}: inode {} is set in the inode bitmap, but the descriptor says its last {} inodes are unused",
                            g.saturating_mul(sb.inodes_per_group).saturating_add(idx).saturating_add(1),
                            d.itable_unused
                        ),
                    ));
                }
            }
            for idx in 0..limit {
                let ino = g
                    .saturating_mul(sb.inodes_per_group)
                    .saturating_add(idx)
                    .saturating_add(1);
                if ino > sb.inodes_count {
                    break;
                }
                let in_bitmap = ibm
                    .get(usize::try_from(idx / 8).unwrap_or(usize::MAX))
                    .is_some_and(|b| b & (1 << (idx % 8)) != 0);
                if !in_bitmap {
                    // An inode the bitmap calls free but that still looks
                    // alive (links, no deletion time) is walked too.
                    let Ok(inode) = self.inode(ino) else {
                        return Ok(ExtFreeSpace::whole(
                            bs,
                            format!("inode {ino} cannot be read"),
                        ));
                    };
                    let links = le16(&inode.raw, 26);
                    let dtime = le32(&inode.raw, 20);
                    if links == 0 || dtime != 0 || inode.mode() == 0 {
                        continue;
                    }
                }
                walked += 1;
                if let Ok(inode) = self.inode(ino) {
                    if inode.mode() & 0xF000 == 0x4000 {
                        dirs.push(ino);
                    }
                }
                match self.blocks_of(NodeId(ino)) {
                    Ok(runs) => {
                        for (b, n) in runs {
                            if let Some((tg, at)) = tail_overlap(b, n) {
                                return Ok(ExtFreeSpace::whole(
                                    bs,
                                    format!("inode {ino} uses block {at}, in group {tg}'s unused inode table"),
                                ));
                            }
                            mark(&mut referenced, b, n);
                        }
                    }
                    Err(e) => {
                        return Ok(ExtFreeSpace::whole(
                            bs,
                            format!("inode {ino}: its blocks cannot be listed ({e})"),
                        ))
                    }
                }
            }
        }
        // Every inode a directory names must be one the scan saw.
        for &dir in &dirs {
            let entries = match crate::FileSystem::read_dir(self, NodeId(dir)) {
                Ok(e) => e,
                Err(e) => {
                    return Ok(ExtFreeSpace::whole(
                        bs,
                        format!("directory inode {dir} cannot be read ({e})"),
                    ))
                }
            };
            for e in entries {
                let ino = e.id.0;
                if ino == 0 || ino > sb.inodes_count {
                    return Ok(ExtFreeSpace::whole(
                        bs,
                        format!("directory inode {dir} names inode {ino}, outside the inode table"),
                    ));
                }
                if let Some(why) = skipped(ino) {
                    return Ok(ExtFreeSpace::whole(
                        bs,
                        format!("directory inode {dir} names inode {ino}, but {why}"),
                    ));
                }
            }
        }
        // Compare with the bitmaps, group by group.
        let cpg = (sb.blocks_per_group / ratio).max(1);
        let mut out = ExtFreeSpace {
            block_size: bs,
            cluster_bytes: bs.saturating_mul(ratio),
            replayed,
            inodes_walked: walked,
            ..ExtFreeSpace::default()
        };
        let first_cluster = sb.first_data_block / ratio;
        for (g, d) in (0u64..).zip(descs.iter()) {
            let start = first_cluster.saturating_add(g.saturating_mul(cpg));
            let count = cpg.min(clusters.saturating_sub(start));
            let bitmap: Vec<u8> = if d.group.flags & BG_BLOCK_UNINIT != 0 {
                if !(csum_any && d.csum_ok == Some(true)) {
                    out.kept_groups.push(KeptGroup {
                        group: g,
                        reason: "BLOCK_UNINIT without a verified descriptor checksum".into(),
                    });
                    continue;
                }
                // As libext2fs: only the group's own metadata is in use;
                // those blocks are among the metadata references already.
                let words = usize::try_from(count.div_ceil(8)).unwrap_or(0);
                let mut bm = vec![0u8; words];
                for i in 0..count {
                    if meta_bit(&meta_refs, start.saturating_add(i)) {
                        if let Some(b) = bm.get_mut(usize::try_from(i / 8).unwrap_or(usize::MAX)) {
                            *b |= 1 << (i % 8);
                        }
                    }
                }
                bm
            } else {
                if d.group.block_bitmap == 0 || d.group.block_bitmap >= sb.blocks_count {
                    out.kept_groups.push(KeptGroup {
                        group: g,
                        reason: format!("block bitmap at block {}", d.group.block_bitmap),
                    });
                    continue;
                }
                let bm = self.read_block(d.group.block_bitmap)?;
                if sb.csum {
                    let len = usize::try_from(cpg / 8).unwrap_or(0);
                    let c = crc32c(sb.csum_seed, bm.get(..len).unwrap_or_default());
                    let want = if sb.desc_size >= 0x3C { c } else { c & 0xFFFF };
                    if d.block_csum != want {
                        out.kept_groups.push(KeptGroup {
                            group: g,
                            reason: "block bitmap checksum mismatch".into(),
                        });
                        continue;
                    }
                }
                bm
            };
            let mut free_here: Vec<u64> = Vec::new();
            let mut disagree: Option<u64> = None;
            for i in 0..count {
                let used = bitmap
                    .get(usize::try_from(i / 8).unwrap_or(usize::MAX))
                    .is_none_or(|b| b & (1 << (i % 8)) != 0);
                let c = start.saturating_add(i);
                let refd = referenced.get(c);
                if !used && refd {
                    disagree = Some(c);
                    break;
                }
                if !used {
                    free_here.push(c);
                }
            }
            if let Some(c) = disagree {
                out.kept_groups.push(KeptGroup {
                    group: g,
                    reason: format!(
                        "block {} is free in the bitmap but referenced by an inode or metadata",
                        c.saturating_mul(ratio)
                    ),
                });
                continue;
            }
            let cb = out.cluster_bytes;
            for c in free_here {
                let off = c.saturating_mul(cb);
                // Never past the filesystem's last block.
                let len = cb.min(fs_bytes.saturating_sub(off));
                if len == 0 {
                    continue;
                }
                match out.free.last_mut() {
                    Some((s, l)) if s.saturating_add(*l) == off => *l += len,
                    _ => out.free.push((off, len)),
                }
            }
        }
        // Unused inode-table tails, except where the group they lie in was
        // kept whole.
        let group_of = |b: u64| b.saturating_sub(sb.first_data_block) / sb.blocks_per_group.max(1);
        let kept: std::collections::HashSet<u64> =
            out.kept_groups.iter().map(|k| k.group).collect();
        for &(_, b, n) in &tails {
            let last = b.saturating_add(n).saturating_sub(1);
            if kept.contains(&group_of(b)) || kept.contains(&group_of(last)) {
                continue;
            }
            out.itable_free_blocks = out.itable_free_blocks.saturating_add(n);
            out.free.push((b.saturating_mul(bs), n.saturating_mul(bs)));
        }
        out.free.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(out.free.len());
        for (s0, l0) in std::mem::take(&mut out.free) {
            match merged.last_mut() {
                Some((s, l)) if s.saturating_add(*l) >= s0 => {
                    *l = (*l).max(s0.saturating_add(l0).saturating_sub(*s));
                }
                _ => merged.push((s0, l0)),
            }
        }
        out.free = merged;
        Ok(out)
    }

    /// The descriptor sanity check libext2fs makes before trusting the
    /// primary descriptors (e2fsck falls back to a backup copy when it
    /// fails): every bitmap and inode table inside the filesystem (inside
    /// its own group without `flex_bg`), none overlapping another, a
    /// superblock or descriptor copy, or the MMP block.
    fn check_descriptors(&self, descs: &[Desc]) -> Result<(), String> {
        let sb = &self.sb;
        let itable_blocks =
            (sb.inodes_per_group.saturating_mul(sb.inode_size)).div_ceil(sb.block_size);
        let flex = sb.incompat & INCOMPAT_FLEX_BG != 0;
        let mut layout: Vec<(u64, u64, String)> = Vec::new();
        for (g, d) in (0u64..).zip(descs.iter()) {
            let first = sb
                .first_data_block
                .saturating_add(g.saturating_mul(sb.blocks_per_group));
            let end = first
                .saturating_add(sb.blocks_per_group)
                .min(sb.blocks_count);
            let (lo, hi) = if flex {
                (sb.first_data_block, sb.blocks_count)
            } else {
                (first, end)
            };
            for (b, n, what) in [
                (d.group.block_bitmap, 1, "block bitmap"),
                (d.inode_bitmap, 1, "inode bitmap"),
                (d.group.inode_table, itable_blocks, "inode table"),
            ] {
                if b < lo || b.saturating_add(n) > hi {
                    return Err(format!("group {g}'s {what} at block {b} is out of range"));
                }
                layout.push((b, n, format!("group {g}'s {what}")));
            }
            for (b, n) in self.super_and_bgd(g) {
                layout.push((b, n, format!("group {g}'s superblock or descriptors")));
            }
        }
        if let Some(mmp) = self.mmp_block() {
            layout.push((mmp, 1, "the MMP block".into()));
        }
        layout.sort_unstable_by_key(|l| l.0);
        for w in layout.windows(2) {
            if let [a, b] = w {
                if a.0.saturating_add(a.1) > b.0 {
                    return Err(format!("{} and {} overlap at block {}", a.2, b.2, b.0));
                }
            }
        }
        Ok(())
    }

    /// The unused tail of each trusted group's inode table, as `(group,
    /// first block, blocks)` sorted by block: the whole blocks past the last
    /// initialised inode (`itable_unused`; all of them with `INODE_UNINIT`).
    /// The tables lie inside the filesystem and apart
    /// ([`Self::check_descriptors`]).
    fn unused_itable_tails(
        &self,
        descs: &[Desc],
        csum_any: bool,
        itable_blocks: u64,
    ) -> Vec<(u64, u64, u64)> {
        let sb = &self.sb;
        let per_block = (sb.block_size / sb.inode_size.max(1)).max(1);
        let mut tails = Vec::new();
        for (g, d) in (0u64..).zip(descs.iter()) {
            if d.distrust(csum_any, sb.inodes_per_group).is_some() {
                continue;
            }
            let used_inodes = if d.group.flags & BG_INODE_UNINIT != 0 {
                0
            } else {
                sb.inodes_per_group.saturating_sub(d.itable_unused)
            };
            let used = used_inodes.div_ceil(per_block);
            if used < itable_blocks {
                let start = d.group.inode_table.saturating_add(used);
                tails.push((g, start, itable_blocks - used));
            }
        }
        tails.sort_unstable_by_key(|t| t.1);
        tails
    }

    /// The MMP block, with the `mmp` feature.
    fn mmp_block(&self) -> Option<u64> {
        let r = &self.sb.raw;
        (self.sb.incompat & INCOMPAT_MMP != 0)
            .then(|| u64::from(le32(r, 0x168)) | (u64::from(le32(r, 0x16C)) << 32))
    }

    /// Inodes used without a directory entry: the reserved ones (below
    /// `s_first_ino`) and those the superblock names.
    fn named_inodes(&self) -> Vec<(u64, &'static str)> {
        let r = &self.sb.raw;
        let revision = le32(r, 0x4C);
        let first_ino = if revision == 0 {
            11
        } else {
            u64::from(le32(r, 0x54)).clamp(1, 1 << 16)
        };
        let mut out: Vec<(u64, &'static str)> = Vec::new();
        for (at, role) in [
            (0xE0, "the journal"),
            (0xE8, "the head of the orphan list"),
            (0x240, "user quota"),
            (0x244, "group quota"),
            (0x268, "lost+found"),
            (0x26C, "project quota"),
            (0x280, "the orphan file"),
        ] {
            out.push((u64::from(le32(r, at)), role));
        }
        out.extend((1..first_ino).map(|i| (i, "a reserved inode")));
        out
    }

    /// Group `g`'s descriptor, with its checksum verified.
    fn read_desc(&self, g: u64) -> Result<Desc, FsError> {
        let sb = &self.sb;
        let len = usize::try_from(sb.desc_size).map_err(|_| corrupt("descriptor size"))?;
        let d = crate::read_bytes(self.src.as_ref(), self.desc_offset(g), len)?;
        let wide = sb.desc_size >= 64 && sb.incompat & super::INCOMPAT_64BIT != 0;
        let lohi32 = |lo: usize, hi: usize| {
            let mut v = u64::from(le32(&d, lo));
            if wide {
                v |= u64::from(le32(&d, hi)) << 32;
            }
            v
        };
        let lohi16 = |lo: usize, hi: usize| {
            let mut v = u32::from(le16(&d, lo));
            if sb.desc_size >= 0x3C {
                v |= u32::from(le16(&d, hi)) << 16;
            }
            v
        };
        let g32 = u32::try_from(g).unwrap_or(u32::MAX);
        let stored = le16(&d, 0x1E);
        let csum_ok = if sb.csum {
            let mut c = crc32c(sb.csum_seed, &g32.to_le_bytes());
            c = crc32c(c, d.get(..0x1E).unwrap_or_default());
            c = crc32c(c, &[0, 0]);
            c = crc32c(c, d.get(0x20..).unwrap_or_default());
            Some((c & 0xFFFF) as u16 == stored)
        } else if sb.ro_compat & RO_COMPAT_GDT_CSUM != 0 {
            let mut c = crc16(!0, sb.raw.get(104..120).unwrap_or_default());
            c = crc16(c, &g32.to_le_bytes());
            c = crc16(c, d.get(..0x1E).unwrap_or_default());
            c = crc16(c, d.get(0x20..).unwrap_or_default());
            Some(c == stored)
        } else {
            None
        };
        Ok(Desc {
            group: Group {
                block_bitmap: lohi32(0, 0x20),
                inode_table: lohi32(8, 0x28),
                flags: le16(&d, 18),
            },
            inode_bitmap: lohi32(4, 0x24),
            itable_unused: u64::from(lohi16(0x1C, 0x32)),
            free_inodes: u64::from(lohi16(0x0E, 0x2E)),
            block_csum: lohi16(0x18, 0x38),
            inode_csum: lohi16(0x1A, 0x3A),
            csum_ok,
        })
    }

    /// Whether group `g` holds a superblock copy, exactly as libext2fs's
    /// `ext2fs_bg_has_super` says (with sparse_super2, only the two backup
    /// groups the superblock names).
    fn exact_has_super(&self, g: u64) -> bool {
        let sb = &self.sb;
        if g == 0 {
            return true;
        }
        if sb.compat & COMPAT_SPARSE_SUPER2 != 0 {
            let b0 = u64::from(le32(&sb.raw, 0x24C));
            let b1 = u64::from(le32(&sb.raw, 0x250));
            return g == b0 || g == b1;
        }
        self.has_super(g)
    }

    /// Blocks of group `g` holding the superblock and descriptor copies
    /// (with the reserved GDT blocks), as `(block, count)` runs, as
    /// libext2fs's `ext2fs_reserve_super_and_bgd` computes them.
    fn super_and_bgd(&self, g: u64) -> Vec<(u64, u64)> {
        let sb = &self.sb;
        let has_super = self.exact_has_super(g);
        let bs = sb.block_size;
        let start = sb
            .first_data_block
            .saturating_add(g.saturating_mul(sb.blocks_per_group));
        let per_block = (bs / sb.desc_size).max(1);
        let desc_blocks = sb.group_count.div_ceil(per_block);
        let reserved_gdt = u64::from(le16(&sb.raw, 206));
        let meta_bg = sb.incompat & INCOMPAT_META_BG != 0;
        let mut out = Vec::new();
        if has_super {
            out.push((start, 1));
        }
        let old_desc = if meta_bg {
            sb.first_meta_bg
        } else {
            desc_blocks.saturating_add(reserved_gdt)
        };
        let mg = g / per_block;
        if !meta_bg || mg < sb.first_meta_bg {
            if has_super && old_desc > 0 {
                out.push((start.saturating_add(1), old_desc));
            }
        } else {
            let r = g % per_block;
            if r == 0 || r == 1 || r == per_block - 1 {
                out.push((start.saturating_add(u64::from(has_super)), 1));
            }
        }
        // Group 0 with 1 KiB blocks: block 0 lies before the first group and
        // is never in a bitmap; it is never reported free either.
        out
    }
}

fn meta_bit(words: &[u64], i: u64) -> bool {
    usize::try_from(i / 64)
        .ok()
        .and_then(|w| words.get(w))
        .is_some_and(|w| w & (1 << (i % 64)) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_matches_the_ansi_check_value() {
        // CRC-16/ARC of "123456789" is 0xBB3D (init 0).
        assert_eq!(crc16(0, b"123456789"), 0xBB3D);
        // CRC-16/MODBUS (init 0xFFFF) is 0x4B37.
        assert_eq!(crc16(!0, b"123456789"), 0x4B37);
    }

    #[test]
    fn bits_ignore_out_of_range() {
        let mut b = Bits::new(10).unwrap_or(Bits(Vec::new()));
        b.set(3);
        b.set(1000);
        assert!(b.get(3));
        assert!(!b.get(4));
        assert!(!b.get(1000));
    }
}
