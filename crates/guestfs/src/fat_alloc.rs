//! Free clusters of a FAT12/16/32 volume, for compaction.
//!
//! A cluster is free only when its entry is 0 in **every** FAT copy (FAT32
//! entries masked to 28 bits) and no file or directory reached from the
//! root uses it (a chain that cannot be followed keeps the whole volume).
//! Reserved sectors, the FATs, the FAT12/16 root directory and the sectors
//! after the last cluster are never free. FSInfo's free count is ignored.
//! A volume marked dirty (FAT\[1\] clean-shutdown bit clear, or the boot
//! sector's dirty flag set) is kept whole: its FAT may be ahead of or behind
//! its directories.

use std::collections::HashSet;

use super::{Fat, FatType, ROOT};
use crate::bytes::{byte, le16, le32};
use crate::{read_bytes, FileSystem, FileType, FsError, NodeId, MAX_PATH_DEPTH};

/// Directory entries walked for the cross-check.
const MAX_WALK_ENTRIES: usize = 1 << 22;

/// Free space of a FAT volume.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FatFreeSpace {
    /// Bytes per cluster.
    pub cluster_size: u64,
    /// Free byte ranges `(offset, length)` in the volume, sorted, merged.
    pub free: Vec<(u64, u64)>,
    /// Set when nothing is free because of this reason.
    pub kept_whole: Option<String>,
    /// FAT copies compared.
    pub fat_copies: u64,
    /// Files and directories walked for the cross-check.
    pub entries_walked: u64,
}

impl FatFreeSpace {
    fn whole(cluster_size: u64, why: String) -> Self {
        Self {
            cluster_size,
            kept_whole: Some(why),
            ..Self::default()
        }
    }

    /// Free bytes in total.
    pub fn free_bytes(&self) -> u64 {
        self.free.iter().map(|r| r.1).sum()
    }
}

impl Fat {
    fn entry_in(&self, fat: &[u8], c: u32) -> u32 {
        let i = c as usize;
        match self.fat_type {
            FatType::Fat12 => {
                let v = u32::from(le16(fat, i + i / 2));
                if i & 1 == 1 {
                    v >> 4
                } else {
                    v & 0xFFF
                }
            }
            FatType::Fat16 => u32::from(le16(fat, i * 2)),
            FatType::Fat32 => le32(fat, i * 4) & 0x0FFF_FFFF,
        }
    }

    fn dirty(&self) -> Option<String> {
        let f1 = self.entry_in(&self.fat, 1);
        let clean_bit = match self.fat_type {
            FatType::Fat12 => None,
            FatType::Fat16 => Some(f1 & 0x8000 != 0),
            FatType::Fat32 => Some(f1 & 0x0800_0000 != 0),
        };
        if clean_bit == Some(false) {
            return Some("FAT[1] says the volume was not cleanly unmounted".into());
        }
        let state = match self.fat_type {
            FatType::Fat32 => byte(&self.boot, 65),
            _ => byte(&self.boot, 37),
        };
        if state & 1 != 0 {
            return Some("the boot sector's dirty flag is set".into());
        }
        None
    }

    /// Free space of this volume (see the module docs).
    ///
    /// # Errors
    /// I/O errors reading the FAT copies.
    pub fn free_space(&self) -> Result<FatFreeSpace, FsError> {
        let cs = self.cluster_size;
        if let Some(why) = self.dirty() {
            return Ok(FatFreeSpace::whole(cs, why));
        }
        let end = self
            .data_offset
            .saturating_add(u64::from(self.cluster_count).saturating_mul(cs));
        if end > self.src.len() {
            return Ok(FatFreeSpace::whole(
                cs,
                "the data region runs past the volume".into(),
            ));
        }
        let fat_len = usize::try_from(self.fat_bytes).unwrap_or(0);
        let mut copies: Vec<Vec<u8>> = Vec::new();
        for copy in 0..self.num_fats {
            let base = self
                .fat_offset
                .saturating_add(copy.saturating_mul(self.fat_bytes));
            if base.saturating_add(self.fat_bytes) > self.src.len() {
                return Ok(FatFreeSpace::whole(
                    cs,
                    format!("FAT copy {copy} is cut off"),
                ));
            }
            if copy == self.active_fat {
                continue;
            }
            copies.push(read_bytes(self.src.as_ref(), base, fat_len)?);
        }
        // The cross-check: every cluster reachable from the root.
        // One bit per cluster (at most 2^28 bits = 32 MiB, bounded by the
        // FAT the volume holds).
        let mut used = vec![
            0u64;
            usize::try_from(u64::from(self.cluster_count).div_ceil(64) + 1)
                .unwrap_or(0)
        ];
        let mark = |used: &mut Vec<u64>, c: u64| {
            if let Some(w) = usize::try_from(c / 64).ok().and_then(|i| used.get_mut(i)) {
                *w |= 1 << (c % 64);
            }
        };
        let mut walked = 0u64;
        let mut stack: Vec<(NodeId, usize)> = vec![(ROOT, 0)];
        let mut seen_dirs: HashSet<NodeId> = HashSet::new();
        while let Some((dir, depth)) = stack.pop() {
            if depth > MAX_PATH_DEPTH || !seen_dirs.insert(dir) {
                continue;
            }
            let mut nodes = vec![dir];
            let entries = match self.read_dir(dir) {
                Ok(e) => e,
                Err(e) => {
                    return Ok(FatFreeSpace::whole(
                        cs,
                        format!("a directory cannot be read ({e})"),
                    ))
                }
            };
            for e in entries {
                walked += 1;
                if walked > MAX_WALK_ENTRIES as u64 {
                    return Ok(FatFreeSpace::whole(cs, "too many directory entries".into()));
                }
                if e.kind == FileType::Dir {
                    stack.push((e.id, depth + 1));
                } else {
                    nodes.push(e.id);
                }
            }
            for n in nodes {
                let ranges = match self.byte_ranges_of(n) {
                    Ok(r) => r,
                    Err(e) => {
                        return Ok(FatFreeSpace::whole(
                            cs,
                            format!("a cluster chain cannot be followed ({e})"),
                        ))
                    }
                };
                for (off, len) in ranges {
                    if off < self.data_offset {
                        continue; // the FAT12/16 root directory region
                    }
                    let first = (off - self.data_offset) / cs;
                    for k in 0..len / cs {
                        mark(&mut used, first.saturating_add(k));
                    }
                }
            }
        }
        let mut out = FatFreeSpace {
            cluster_size: cs,
            fat_copies: self.num_fats,
            entries_walked: walked,
            ..FatFreeSpace::default()
        };
        for i in 0..self.cluster_count {
            let c = i.saturating_add(2);
            let free =
                self.entry_in(&self.fat, c) == 0 && copies.iter().all(|f| self.entry_in(f, c) == 0);
            if !free {
                continue;
            }
            let idx = u64::from(i);
            let in_use = usize::try_from(idx / 64)
                .ok()
                .and_then(|w| used.get(w))
                .is_some_and(|w| w & (1 << (idx % 64)) != 0);
            if in_use {
                return Ok(FatFreeSpace::whole(
                    cs,
                    format!("cluster {c} is free in the FAT but used by a file"),
                ));
            }
            let off = self.cluster_offset(c);
            match out.free.last_mut() {
                Some((s, l)) if s.saturating_add(*l) == off => *l += cs,
                _ => out.free.push((off, cs)),
            }
        }
        Ok(out)
    }
}
