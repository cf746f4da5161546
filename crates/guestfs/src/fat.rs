//! FAT12/16/32 reader (read-only), after Microsoft's FAT specification.
//!
//! The FAT type is decided as Linux (the kernel and `fsck.fat`) decides it:
//! FAT32 when the BPB has the FAT32 layout (16-bit FAT size 0, 32-bit FAT
//! size set), whatever the cluster count (`mkfs.fat -F 32` makes FAT32
//! volumes below the specification's 65525 clusters); otherwise FAT12 below
//! 4085 clusters and FAT16 up to 65524, more being refused as Linux refuses
//! it. Long names (VFAT LFN entries, checksum verified) are decoded
//! from UTF-16 to UTF-8; otherwise the 8.3 name is used with the NT case
//! flags. There are no inodes: a [`NodeId`] is the byte offset, within the
//! volume, of the file's short directory entry; the root directory is
//! [`ROOT`] (offset 0 is the boot sector, never a directory entry).
//!
//! Bounds: the FAT in use is loaded once (it must lie within the volume),
//! every cluster chain is walked with a visited set (a loop is
//! [`FsError::Corrupt`]), directory chains stop at the 2 MiB the
//! specification allows ([`MAX_FAT_DIR_ENTRIES`]) and listings at
//! [`MAX_DIR_ENTRIES`].

use crate::bytes::{byte, le16, le32};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use qvet_image::ByteSource;

use crate::{
    read_bytes, DirEntry, FileSystem, FileType, FsError, Metadata, NodeId, MAX_DIR_ENTRIES,
};

pub use alloc::FatFreeSpace;

#[path = "fat_alloc.rs"]
mod alloc;

/// Entries of one directory, as the FAT specification limits them (2 MiB).
pub const MAX_FAT_DIR_ENTRIES: u64 = 65_536;

/// The root directory's node.
pub const ROOT: NodeId = NodeId(0);

const ATTR_READ_ONLY: u8 = 0x01;
const ATTR_VOLUME_ID: u8 = 0x08;
const ATTR_DIRECTORY: u8 = 0x10;
const ATTR_LONG_NAME: u8 = 0x0F;

/// FAT width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FatType {
    /// 12-bit entries.
    Fat12,
    /// 16-bit entries.
    Fat16,
    /// 32-bit (28 used) entries.
    Fat32,
}

/// A directory entry that was deleted (first name byte 0xE5), for forensics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletedEntry {
    /// Byte offset of the short entry in the volume.
    pub offset: u64,
    /// 8.3 name. Deletion overwrote its first byte: it is recovered from
    /// the long-name checksum when long-name entries survive and exactly one
    /// printable character fits (preferring the long name's own first
    /// letter), else shown as `?`.
    pub name: Vec<u8>,
    /// Long name rebuilt from the deleted long-name entries before it, when
    /// they agree on one checksum that some first character satisfies.
    pub long_name: Option<Vec<u8>>,
    /// Attributes byte.
    pub attr: u8,
    /// First cluster (may have been reused).
    pub first_cluster: u32,
    /// Size recorded in the entry.
    pub size: u32,
}

/// (first cluster, clusters wanted, chain).
type CachedChain = (u32, u64, Arc<Vec<u32>>);

/// A FAT volume.
#[derive(Debug)]
pub struct Fat {
    src: Arc<dyn ByteSource>,
    fat_type: FatType,
    bytes_per_sector: u64,
    cluster_size: u64,
    num_fats: u64,
    fat_offset: u64,
    fat_bytes: u64,
    root_dir_offset: u64,
    root_entries: u64,
    root_cluster: u32,
    data_offset: u64,
    cluster_count: u32,
    fat: Vec<u8>,
    /// The boot sector (first 512 bytes).
    boot: Vec<u8>,
    /// Which FAT copy `fat` holds (0 unless FAT32 mirroring is off).
    active_fat: u64,
    /// The last file chain read: (first cluster, clusters wanted, chain).
    chain_cache: Mutex<Option<CachedChain>>,
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// FAT date and time (local time, taken as UTC) to Unix seconds; `None` for
/// a zero date.
fn fat_time(date: u16, time: u16) -> Option<i64> {
    if date == 0 {
        return None;
    }
    let year = 1980 + i64::from(date >> 9);
    let month = i64::from((date >> 5) & 0x0F).clamp(1, 12);
    let day = i64::from(date & 0x1F).max(1);
    let h = i64::from(time >> 11);
    let mi = i64::from((time >> 5) & 0x3F);
    let s = i64::from(time & 0x1F) * 2;
    Some(days_from_civil(year, month, day) * 86_400 + h * 3600 + mi * 60 + s)
}

/// The LFN checksum of an 11-byte short name.
fn lfn_checksum(short: &[u8]) -> u8 {
    short
        .iter()
        .take(11)
        .fold(0u8, |sum, &c| (sum >> 1 | (sum & 1) << 7).wrapping_add(c))
}

/// 8.3 name with NT case flags.
fn short_name(e: &[u8]) -> Vec<u8> {
    let nt = byte(e, 12);
    let mut base: Vec<u8> = e.get(0..8).unwrap_or(&[]).to_vec();
    if base.first() == Some(&0x05) {
        if let Some(b) = base.first_mut() {
            *b = 0xE5;
        }
    }
    while base.last() == Some(&b' ') {
        base.pop();
    }
    let mut ext: Vec<u8> = e.get(8..11).unwrap_or(&[]).to_vec();
    while ext.last() == Some(&b' ') {
        ext.pop();
    }
    if nt & 0x08 != 0 {
        base.make_ascii_lowercase();
    }
    if nt & 0x10 != 0 {
        ext.make_ascii_lowercase();
    }
    if !ext.is_empty() {
        base.push(b'.');
        base.extend_from_slice(&ext);
    }
    base
}

/// The 13 UTF-16 units of one LFN entry.
fn lfn_units(e: &[u8]) -> [u16; 13] {
    let mut u = [0u16; 13];
    let offs = [1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30];
    for (slot, &o) in u.iter_mut().zip(offs.iter()) {
        *slot = le16(e, o);
    }
    u
}

/// Accumulates LFN entries preceding a short entry.
#[derive(Default)]
struct LfnState {
    /// Units, in on-disk order of pieces (last piece first).
    pieces: Vec<[u16; 13]>,
    expect: u8,
    checksum: u8,
    valid: bool,
}

impl LfnState {
    fn feed(&mut self, e: &[u8]) {
        let ord = byte(e, 0);
        let seq = ord & 0x1F;
        let sum = byte(e, 13);
        if ord & 0x40 != 0 {
            self.pieces.clear();
            self.valid = (1..=20).contains(&seq);
            self.expect = seq;
            self.checksum = sum;
        } else if !self.valid || seq != self.expect || sum != self.checksum {
            self.valid = false;
            return;
        }
        if self.valid {
            self.pieces.push(lfn_units(e));
            self.expect = self.expect.saturating_sub(1);
        }
    }

    /// The long name if complete and matching `short`'s checksum; resets.
    fn take(&mut self, short: &[u8]) -> Option<Vec<u8>> {
        let ok = self.valid && self.expect == 0 && self.checksum == lfn_checksum(short);
        self.valid = false;
        let pieces = std::mem::take(&mut self.pieces);
        if !ok {
            return None;
        }
        let units: Vec<u16> = pieces
            .iter()
            .rev()
            .flat_map(|p| p.iter().copied())
            .take_while(|&u| u != 0)
            .collect();
        if units.is_empty() {
            return None;
        }
        let s: String = char::decode_utf16(units)
            .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
            .collect();
        Some(s.into_bytes())
    }
}

impl Fat {
    /// Opens a FAT volume.
    ///
    /// # Errors
    /// [`FsError::NotThisFs`] ("fat") unless the boot sector holds a valid
    /// BPB; [`FsError::Corrupt`] for impossible geometry; I/O errors.
    pub fn open(src: Arc<dyn ByteSource>) -> Result<Self, FsError> {
        let not = || FsError::NotThisFs("fat");
        let bs = read_bytes(src.as_ref(), 0, 512)?;
        let jump = byte(&bs, 0);
        if !(jump == 0xEB || jump == 0xE9) {
            return Err(not());
        }
        let bps = u64::from(le16(&bs, 11));
        if !matches!(bps, 512 | 1024 | 2048 | 4096) {
            return Err(not());
        }
        let spc = u64::from(byte(&bs, 13));
        if spc == 0 || !spc.is_power_of_two() {
            return Err(not());
        }
        let rsvd = u64::from(le16(&bs, 14));
        let num_fats = u64::from(byte(&bs, 16));
        let root_entries = u64::from(le16(&bs, 17));
        let tot16 = u64::from(le16(&bs, 19));
        let media = byte(&bs, 21);
        let fatsz16 = u64::from(le16(&bs, 22));
        let tot32 = u64::from(le32(&bs, 32));
        let fatsz32 = u64::from(le32(&bs, 36));
        if rsvd == 0 || num_fats == 0 || !(media == 0xF0 || media >= 0xF8) {
            return Err(not());
        }
        let fat_sectors = if fatsz16 != 0 { fatsz16 } else { fatsz32 };
        let total = if tot16 != 0 { tot16 } else { tot32 };
        if fat_sectors == 0 || total == 0 {
            return Err(not());
        }
        let root_sectors = (root_entries * 32).div_ceil(bps);
        let meta = rsvd + num_fats * fat_sectors + root_sectors;
        if meta >= total {
            return Err(FsError::Corrupt(format!(
                "FAT metadata ({meta} sectors) fills the volume ({total} sectors)"
            )));
        }
        let clusters = (total - meta) / spc;
        let fat_type = if fatsz16 == 0 {
            FatType::Fat32
        } else if clusters < 4085 {
            FatType::Fat12
        } else if clusters < 65525 {
            FatType::Fat16
        } else {
            return Err(FsError::Corrupt(format!(
                "FAT12/16 layout with {clusters} clusters (a FAT16 addresses at most 65524)"
            )));
        };
        if fat_type == FatType::Fat32 && root_entries != 0 {
            return Err(FsError::Corrupt("FAT32 with a fixed root directory".into()));
        }
        let fat_bytes = fat_sectors * bps;
        let fat_offset = rsvd * bps;
        if fat_offset.saturating_add(fat_bytes) > src.len() {
            return Err(FsError::Corrupt(format!(
                "FAT ({fat_bytes} bytes at {fat_offset:#x}) runs past the volume end"
            )));
        }
        // Clusters the FAT can describe bound the usable count.
        let entries = match fat_type {
            FatType::Fat12 => fat_bytes * 2 / 3,
            FatType::Fat16 => fat_bytes / 2,
            FatType::Fat32 => fat_bytes / 4,
        };
        let clusters = clusters.min(entries.saturating_sub(2)).min(0x0FFF_FFF5);
        let cluster_count = u32::try_from(clusters).unwrap_or(0x0FFF_FFF5);
        let fat_len = usize::try_from(fat_bytes)
            .map_err(|_| FsError::Corrupt("FAT larger than memory".into()))?;
        // FAT32 may disable mirroring and name the active copy.
        let ext_flags = le16(&bs, 40);
        let active = if fat_type == FatType::Fat32 && ext_flags & 0x80 != 0 {
            u64::from(ext_flags & 0x0F)
        } else {
            0
        };
        let active = if active < num_fats && fat_offset + (active + 1) * fat_bytes <= src.len() {
            active
        } else {
            0
        };
        let fat = read_bytes(src.as_ref(), fat_offset + active * fat_bytes, fat_len)?;
        Ok(Self {
            fat_type,
            bytes_per_sector: bps,
            cluster_size: spc * bps,
            num_fats,
            fat_offset,
            fat_bytes,
            root_dir_offset: (rsvd + num_fats * fat_sectors) * bps,
            root_entries,
            root_cluster: le32(&bs, 44),
            data_offset: meta * bps,
            cluster_count,
            fat,
            boot: bs,
            active_fat: active,
            chain_cache: Mutex::new(None),
            src,
        })
    }

    /// FAT width.
    pub fn fat_type(&self) -> FatType {
        self.fat_type
    }

    /// OEM name in the boot sector (e.g. `mkfs.fat`, `MSWIN4.1`).
    pub fn oem_name(&self) -> &[u8] {
        self.boot.get(3..11).unwrap_or(&[]).trim_ascii_end()
    }

    /// Offset of the extended BPB fields (boot signature first).
    fn ebpb(&self) -> usize {
        if self.fat_type == FatType::Fat32 {
            66
        } else {
            38
        }
    }

    /// Volume serial number, when the extended boot signature is present.
    pub fn volume_id(&self) -> Option<u32> {
        let at = self.ebpb();
        matches!(byte(&self.boot, at), 0x28 | 0x29).then(|| le32(&self.boot, at + 1))
    }

    /// Volume label: the root directory's label entry, else the boot
    /// sector's (unless it is `NO NAME`).
    ///
    /// # Errors
    /// As [`FileSystem::read_dir`] on the root.
    pub fn label(&self) -> Result<Option<Vec<u8>>, FsError> {
        for (_, e) in self.raw_entries(ROOT)? {
            let attr = byte(&e, 11);
            if byte(&e, 0) != 0xE5 && attr & 0x3F != ATTR_LONG_NAME && attr & ATTR_VOLUME_ID != 0 {
                return Ok(Some(e.get(0..11).unwrap_or(&[]).trim_ascii_end().to_vec()));
            }
        }
        let at = self.ebpb();
        if byte(&self.boot, at) != 0x29 {
            return Ok(None);
        }
        let l = self
            .boot
            .get(at + 5..at + 16)
            .unwrap_or(&[])
            .trim_ascii_end();
        Ok((!l.is_empty() && l != b"NO NAME").then(|| l.to_vec()))
    }

    /// Bytes per cluster.
    pub fn cluster_size(&self) -> u64 {
        self.cluster_size
    }

    /// Bytes per sector.
    pub fn bytes_per_sector(&self) -> u64 {
        self.bytes_per_sector
    }

    /// Data clusters.
    pub fn cluster_count(&self) -> u32 {
        self.cluster_count
    }

    /// Whether every FAT copy equals the one in use (the first, or the
    /// active one when FAT32 mirroring is disabled).
    ///
    /// # Errors
    /// I/O errors.
    pub fn compare_fat_copies(&self) -> Result<bool, FsError> {
        const CHUNK: u64 = 1 << 20;
        for copy in (0..self.num_fats).filter(|&c| c != self.active_fat) {
            let base = self.fat_offset + copy * self.fat_bytes;
            if base.saturating_add(self.fat_bytes) > self.src.len() {
                return Ok(false); // this copy is cut off
            }
            let mut off = 0u64;
            while off < self.fat_bytes {
                let n = CHUNK.min(self.fat_bytes - off);
                let len = usize::try_from(n).unwrap_or(0);
                let other = read_bytes(self.src.as_ref(), base + off, len)?;
                let start = usize::try_from(off).unwrap_or(usize::MAX);
                let mine = self.fat.get(start..start.saturating_add(len));
                if mine != Some(other.as_slice()) {
                    return Ok(false);
                }
                off += n;
            }
        }
        Ok(true)
    }

    fn valid_cluster(&self, c: u32) -> bool {
        c >= 2 && c - 2 < self.cluster_count
    }

    /// FAT entry of cluster `c` (masked to its width).
    fn next(&self, c: u32) -> u32 {
        let c = c as usize;
        match self.fat_type {
            FatType::Fat12 => {
                let v = u32::from(le16(&self.fat, c + c / 2));
                if c & 1 == 1 {
                    v >> 4
                } else {
                    v & 0xFFF
                }
            }
            FatType::Fat16 => u32::from(le16(&self.fat, c * 2)),
            FatType::Fat32 => le32(&self.fat, c * 4) & 0x0FFF_FFFF,
        }
    }

    fn is_eoc(&self, v: u32) -> bool {
        match self.fat_type {
            FatType::Fat12 => v >= 0xFF8,
            FatType::Fat16 => v >= 0xFFF8,
            FatType::Fat32 => v >= 0x0FFF_FFF8,
        }
    }

    /// The cluster chain from `start`, at most `max` clusters long.
    ///
    /// # Errors
    /// [`FsError::Corrupt`] on a loop, an out-of-range or free/bad link.
    pub fn chain(&self, start: u32, max: u64) -> Result<Vec<u32>, FsError> {
        let mut out = Vec::new();
        if start == 0 || max == 0 {
            return Ok(out);
        }
        // Visited set: a bitset over all clusters for long chains, a hash
        // set for short ones (directories, small files).
        let small = max < u64::from(self.cluster_count / 64);
        let mut seen_small: HashSet<u32> = HashSet::new();
        let mut seen_bits: Vec<u64> = if small {
            Vec::new()
        } else {
            vec![0u64; (self.cluster_count as usize).div_ceil(64) + 1]
        };
        let mut c = start;
        loop {
            if !self.valid_cluster(c) {
                return Err(FsError::Corrupt(format!(
                    "cluster chain from {start} reaches invalid cluster {c:#x}"
                )));
            }
            let again = if small {
                !seen_small.insert(c)
            } else {
                let i = (c - 2) as usize;
                let w = seen_bits
                    .get_mut(i / 64)
                    .ok_or_else(|| FsError::Corrupt("cluster index".into()))?;
                let was = *w & (1 << (i % 64)) != 0;
                *w |= 1 << (i % 64);
                was
            };
            if again {
                return Err(FsError::Corrupt(format!(
                    "cluster chain from {start} loops at cluster {c}"
                )));
            }
            out.push(c);
            if out.len() as u64 >= max {
                return Ok(out);
            }
            let n = self.next(c);
            if self.is_eoc(n) {
                return Ok(out);
            }
            c = n;
        }
    }

    /// Volume byte ranges `(offset, length)` holding the node's data: the
    /// whole cluster chain (for files, even past the recorded size) or the
    /// fixed FAT12/16 root region; adjacent ranges merged.
    ///
    /// # Errors
    /// [`FsError::Corrupt`] for a looping or out-of-range chain.
    pub fn byte_ranges_of(&self, id: NodeId) -> Result<Vec<(u64, u64)>, FsError> {
        let chain = if id == ROOT {
            if self.fat_type != FatType::Fat32 {
                return Ok(vec![(self.root_dir_offset, self.root_entries * 32)]);
            }
            self.chain(self.root_cluster, self.max_dir_clusters())?
        } else {
            let e = self.entry(id)?;
            let max = if kind_of(&e) == FileType::Dir {
                self.max_dir_clusters()
            } else {
                u64::from(self.cluster_count)
            };
            self.chain(first_cluster(&e), max)?
        };
        let mut out: Vec<(u64, u64)> = Vec::new();
        for c in chain {
            let at = self.cluster_offset(c);
            match out.last_mut() {
                Some((s, l)) if *s + *l == at => *l += self.cluster_size,
                _ => out.push((at, self.cluster_size)),
            }
        }
        Ok(out)
    }

    /// Whether data cluster `c` is allocated (its FAT entry is not free).
    pub fn cluster_in_use(&self, c: u32) -> bool {
        self.valid_cluster(c) && self.next(c) != 0
    }

    /// Volume byte offset of the data region (cluster 2).
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// Clusters of the largest directory the specification allows
    /// ([`MAX_FAT_DIR_ENTRIES`] entries); longer chains are cut there.
    fn max_dir_clusters(&self) -> u64 {
        (MAX_FAT_DIR_ENTRIES * 32).div_ceil(self.cluster_size)
    }

    /// A file's whole chain (at most `need` clusters), cached for the next
    /// read of the same file so sequential reads stay linear.
    fn file_chain(&self, start: u32, need: u64) -> Result<Arc<Vec<u32>>, FsError> {
        if let Ok(guard) = self.chain_cache.lock() {
            if let Some((s, n, c)) = guard.as_ref() {
                if *s == start && *n == need {
                    return Ok(Arc::clone(c));
                }
            }
        }
        let chain = Arc::new(self.chain(start, need)?);
        if let Ok(mut guard) = self.chain_cache.lock() {
            *guard = Some((start, need, Arc::clone(&chain)));
        }
        Ok(chain)
    }

    fn cluster_offset(&self, c: u32) -> u64 {
        self.data_offset + u64::from(c - 2) * self.cluster_size
    }

    /// Raw 32-byte entries of a directory with their volume offsets.
    fn raw_entries(&self, id: NodeId) -> Result<Vec<(u64, Vec<u8>)>, FsError> {
        let mut regions: Vec<(u64, u64)> = Vec::new();
        if id == ROOT {
            if self.fat_type == FatType::Fat32 {
                for c in self.chain(self.root_cluster, self.max_dir_clusters())? {
                    regions.push((self.cluster_offset(c), self.cluster_size));
                }
            } else {
                regions.push((self.root_dir_offset, self.root_entries * 32));
            }
        } else {
            let e = self.entry(id)?;
            if byte(&e, 11) & ATTR_DIRECTORY == 0 {
                return Err(FsError::NotADirectory(format!("FAT entry at {:#x}", id.0)));
            }
            for c in self.chain(first_cluster(&e), self.max_dir_clusters())? {
                regions.push((self.cluster_offset(c), self.cluster_size));
            }
        }
        let mut out = Vec::new();
        for (off, len) in regions {
            let n = usize::try_from(len).map_err(|_| FsError::Corrupt("directory size".into()))?;
            let buf = read_bytes(self.src.as_ref(), off, n)?;
            for (i, e) in buf.chunks_exact(32).enumerate() {
                if byte(e, 0) == 0 {
                    return Ok(out);
                }
                if out.len() >= MAX_DIR_ENTRIES {
                    return Err(FsError::Corrupt("directory has too many entries".into()));
                }
                out.push((off + i as u64 * 32, e.to_vec()));
            }
        }
        Ok(out)
    }

    /// The 32-byte short entry at node `id`.
    fn entry(&self, id: NodeId) -> Result<Vec<u8>, FsError> {
        if id.0 < self.root_dir_offset.min(self.data_offset)
            || !id.0.is_multiple_of(32)
            || id.0 >= self.src.len()
        {
            return Err(FsError::NotFound(format!("no FAT entry at {:#x}", id.0)));
        }
        read_bytes(self.src.as_ref(), id.0, 32)
    }

    /// Deleted entries (first byte 0xE5) of a directory, for forensics.
    ///
    /// # Errors
    /// As [`FileSystem::read_dir`].
    pub fn deleted_entries(&self, dir: NodeId) -> Result<Vec<DeletedEntry>, FsError> {
        let mut out = Vec::new();
        // Deleted long-name pieces seen since the last other entry, in disk
        // order (last piece of the name first). Deletion overwrote their
        // sequence bytes, so order and checksum are all that is left.
        let mut pieces: Vec<Vec<u8>> = Vec::new();
        for (off, e) in self.raw_entries(dir)? {
            let attr = byte(&e, 11);
            let deleted = byte(&e, 0) == 0xE5;
            if deleted && attr & 0x3F == ATTR_LONG_NAME {
                if pieces.len() == MAX_LFN_PIECES {
                    pieces.remove(0);
                }
                pieces.push(e);
                continue;
            }
            let run = std::mem::take(&mut pieces);
            if !deleted || attr & ATTR_VOLUME_ID != 0 {
                continue;
            }
            let (first, long_name) = recover_deleted_name(&e, &run);
            let mut name = short_name(&e);
            if let Some(b) = name.first_mut() {
                *b = first.unwrap_or(b'?');
            }
            out.push(DeletedEntry {
                offset: off,
                name,
                long_name,
                attr,
                first_cluster: first_cluster(&e),
                size: le32(&e, 28),
            });
        }
        Ok(out)
    }
}

/// Long-name pieces per name: 255 UTF-16 units / 13 per piece.
const MAX_LFN_PIECES: usize = 20;

/// The first byte of a deleted short entry and its long name, from the
/// deleted long-name pieces before it (disk order). The pieces must share
/// one checksum; the short name's lost first byte is a value making the
/// checksum match: the long name's first letter (upper-cased) when it does,
/// else the only printable candidate.
fn recover_deleted_name(short: &[u8], pieces: &[Vec<u8>]) -> (Option<u8>, Option<Vec<u8>>) {
    let Some(sum) = pieces.first().map(|p| byte(p, 13)) else {
        return (None, None);
    };
    if pieces.iter().any(|p| byte(p, 13) != sum) {
        return (None, None);
    }
    let mut name11: Vec<u8> = short.iter().take(11).copied().collect();
    let mut fits = |c: u8| {
        if let Some(b) = name11.first_mut() {
            *b = c;
        }
        lfn_checksum(&name11) == sum
    };
    let candidates: Vec<u8> = (0x21u8..0x7F).filter(|&c| fits(c)).collect();
    if candidates.is_empty() {
        return (None, None);
    }
    let units: Vec<u16> = pieces
        .iter()
        .rev()
        .flat_map(|p| lfn_units(p))
        .take_while(|&u| u != 0)
        .collect();
    let long: String = char::decode_utf16(units)
        .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect();
    let hint = long
        .chars()
        .next()
        .filter(char::is_ascii)
        .map(|c| c.to_ascii_uppercase() as u8);
    let first = match hint {
        Some(h) if candidates.contains(&h) => Some(h),
        _ if candidates.len() == 1 => candidates.first().copied(),
        _ => None,
    };
    let long_name = (!long.is_empty()).then(|| long.into_bytes());
    (first, long_name)
}

fn first_cluster(e: &[u8]) -> u32 {
    u32::from(le16(e, 20)) << 16 | u32::from(le16(e, 26))
}

fn kind_of(e: &[u8]) -> FileType {
    if byte(e, 11) & ATTR_DIRECTORY != 0 {
        FileType::Dir
    } else {
        FileType::File
    }
}

impl FileSystem for Fat {
    fn kind(&self) -> &'static str {
        "vfat"
    }

    fn byte_ranges(&self, id: NodeId) -> Result<Vec<(u64, u64)>, FsError> {
        self.byte_ranges_of(id)
    }

    fn deleted_entries(&self, id: NodeId) -> Result<Vec<crate::Deleted>, FsError> {
        Ok(Fat::deleted_entries(self, id)?
            .into_iter()
            .map(|d| crate::Deleted {
                name: d.long_name.unwrap_or(d.name),
                offset: d.offset,
                kind: if d.attr & ATTR_DIRECTORY != 0 {
                    FileType::Dir
                } else {
                    FileType::File
                },
                size: Some(u64::from(d.size)),
                node: Some(u64::from(d.first_cluster)),
            })
            .collect())
    }

    fn root(&self) -> NodeId {
        ROOT
    }

    fn metadata(&self, id: NodeId) -> Result<Metadata, FsError> {
        if id == ROOT {
            return Ok(Metadata {
                id,
                kind: FileType::Dir,
                size: 0,
                mode: 0o040_755,
                uid: 0,
                gid: 0,
                nlink: 1,
                mtime: 0,
                atime: None,
                ctime: None,
                crtime: None,
            });
        }
        let e = self.entry(id)?;
        let attr = byte(&e, 11);
        let kind = kind_of(&e);
        let mut mode = if kind == FileType::Dir {
            0o040_755
        } else {
            0o100_644
        };
        if attr & ATTR_READ_ONLY != 0 {
            mode &= !0o222;
        }
        Ok(Metadata {
            id,
            kind,
            size: if kind == FileType::Dir {
                0
            } else {
                u64::from(le32(&e, 28))
            },
            mode,
            uid: 0,
            gid: 0,
            nlink: 1,
            mtime: fat_time(le16(&e, 24), le16(&e, 22)).unwrap_or(0),
            atime: fat_time(le16(&e, 18), 0),
            ctime: None,
            crtime: fat_time(le16(&e, 16), le16(&e, 14)),
        })
    }

    fn read_dir(&self, id: NodeId) -> Result<Vec<DirEntry>, FsError> {
        let mut lfn = LfnState::default();
        let mut out = Vec::new();
        for (off, e) in self.raw_entries(id)? {
            let first = byte(&e, 0);
            let attr = byte(&e, 11);
            if first == 0xE5 {
                lfn = LfnState::default();
                continue;
            }
            if attr & 0x3F == ATTR_LONG_NAME {
                lfn.feed(&e);
                continue;
            }
            let short = e.get(0..11).unwrap_or(&[]);
            let long = lfn.take(short);
            if attr & ATTR_VOLUME_ID != 0 || short == b".          " || short == b"..         " {
                continue;
            }
            let name = long.unwrap_or_else(|| short_name(&e));
            out.push(DirEntry {
                name,
                id: NodeId(off),
                kind: kind_of(&e),
            });
        }
        Ok(out)
    }

    fn read(&self, id: NodeId, offset: u64, buf: &mut [u8]) -> Result<usize, FsError> {
        let e = if id == ROOT {
            return Err(FsError::Unsupported("read of a directory".into()));
        } else {
            self.entry(id)?
        };
        if kind_of(&e) == FileType::Dir {
            return Err(FsError::Unsupported("read of a directory".into()));
        }
        let size = u64::from(le32(&e, 28));
        if offset >= size || buf.is_empty() {
            return Ok(0);
        }
        let want = (size - offset).min(buf.len() as u64);
        let first_idx = offset / self.cluster_size;
        let last_idx = (offset + want - 1) / self.cluster_size;
        let chain = self.file_chain(first_cluster(&e), size.div_ceil(self.cluster_size))?;
        let mut done = 0u64;
        for idx in first_idx..=last_idx {
            let Some(&c) = chain.get(usize::try_from(idx).unwrap_or(usize::MAX)) else {
                if done > 0 {
                    break; // the next read reports the short chain
                }
                return Err(FsError::Corrupt(format!(
                    "cluster chain of the file at {:#x} ends before its size {size}",
                    id.0
                )));
            };
            let pos = offset + done;
            let within = pos - idx * self.cluster_size;
            let n = (self.cluster_size - within).min(want - done);
            let (a, b) = (done as usize, (done + n) as usize);
            let Some(dst) = buf.get_mut(a..b) else { break };
            let at = self.cluster_offset(c) + within;
            self.src
                .read_zero_padded(at, dst)
                .map_err(|error| FsError::Io { offset: at, error })?;
            done += n;
        }
        Ok(done as usize)
    }

    fn read_link(&self, _id: NodeId) -> Result<Vec<u8>, FsError> {
        Err(FsError::Unsupported("FAT has no symbolic links".into()))
    }
}
