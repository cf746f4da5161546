//! Read-only ext2/3/4 reader.
//!
//! Written here rather than taken from a crate (see `shared/reference/crates.md`
//! §5): we need ext2 without `filetype`, inline data, inode numbers, block
//! maps and bitmaps, and bounded behaviour on hostile images.
//!
//! Every walk is bounded: extent trees by depth (≤ 5) and a visited set,
//! indirect maps by their three levels and a visited set, directories block by
//! block with at most [`crate::MAX_DIR_ENTRIES`] entries. `metadata_csum`
//! checksums (superblock, group descriptors, inodes, extent blocks, directory
//! leaves) are verified where cheap; mismatches become findings
//! ([`Ext::checksum_errors`]), never errors.
//!
//! A filesystem whose superblock asks for journal recovery is read as the
//! kernel mounts it: the committed journal transactions ([`crate::jbd2`])
//! overlay the on-disk blocks, superblock and group descriptors included.
//! Nothing is written; a broken journal is a finding and leaves the
//! on-disk state.
//!
//! Encrypted files and symlinks (`encrypt`) are errors, never ciphertext;
//! encrypted directory names are listed as the bytes on disk, with a
//! finding. Casefolded directories (`casefold`) match names without case
//! for lookups.

use crate::bytes::{byte, le16, le32};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use qvet_image::ByteSource;

pub use crate::jbd2::JournalFacts;
pub use alloc::{ExtFreeSpace, KeptGroup};

#[path = "ext_alloc.rs"]
mod alloc;
use crate::{DirEntry, FileSystem, FileType, FsError, Metadata, NodeId};

/// Deepest extent tree accepted.
pub const MAX_EXTENT_DEPTH: u16 = 5;
/// Findings kept.
const MAX_FINDINGS: usize = 1000;
/// Longest symlink target read.
const MAX_LINK: u64 = 4096;
/// Runs returned by [`Ext::blocks_of`].
const MAX_RUNS: usize = 1 << 22;
/// Group descriptors kept in memory.
const CACHED_GROUPS: u64 = 1 << 16;
/// Inode tables are read and cached in aligned pieces of this many bytes:
/// a tree walk meets inodes roughly in allocation order, so one read serves
/// a run of neighbours instead of one `pread` per inode.
const ITABLE_PIECE: u64 = 32 << 10;
/// Cached inode-table pieces (at most 16 MiB); the cache is emptied when full.
const ITABLE_PIECES: usize = 512;

const INCOMPAT_FILETYPE: u32 = 0x2;
const INCOMPAT_META_BG: u32 = 0x10;
const INCOMPAT_64BIT: u32 = 0x80;
const INCOMPAT_EA_INODE: u32 = 0x400;
const INCOMPAT_CSUM_SEED: u32 = 0x2000;
const RO_COMPAT_SPARSE_SUPER: u32 = 0x1;
const RO_COMPAT_METADATA_CSUM: u32 = 0x400;
const COMPAT_HAS_JOURNAL: u32 = 0x4;
const INCOMPAT_RECOVER: u32 = 0x4;
const INCOMPAT_ENCRYPT: u32 = 0x1_0000;
const INCOMPAT_CASEFOLD: u32 = 0x2_0000;

const FL_ENCRYPT: u32 = 0x800;
const FL_EXTENTS: u32 = 0x8_0000;
/// Hashed-tree (htree) directory.
const FL_INDEX: u32 = 0x1000;
const FL_INLINE_DATA: u32 = 0x1000_0000;
/// An inode holding one extended attribute value (`ea_inode`).
const FL_EA_INODE: u32 = 0x20_0000;
const FL_CASEFOLD: u32 = 0x4000_0000;

const COMPAT_NAMES: &[(u32, &str)] = &[
    (0x1, "dir_prealloc"),
    (0x2, "imagic_inodes"),
    (0x4, "has_journal"),
    (0x8, "ext_attr"),
    (0x10, "resize_inode"),
    (0x20, "dir_index"),
    (0x40, "lazy_bg"),
    (0x80, "exclude_inode"),
    (0x100, "exclude_bitmap"),
    (0x200, "sparse_super2"),
    (0x400, "fast_commit"),
    (0x800, "stable_inodes"),
    (0x1000, "orphan_file"),
];
const INCOMPAT_NAMES: &[(u32, &str)] = &[
    (0x1, "compression"),
    (0x2, "filetype"),
    (0x4, "needs_recovery"),
    (0x8, "journal_dev"),
    (0x10, "meta_bg"),
    (0x40, "extent"),
    (0x80, "64bit"),
    (0x100, "mmp"),
    (0x200, "flex_bg"),
    (0x400, "ea_inode"),
    (0x1000, "dirdata"),
    (0x2000, "metadata_csum_seed"),
    (0x4000, "large_dir"),
    (0x8000, "inline_data"),
    (0x1_0000, "encrypt"),
    (0x2_0000, "casefold"),
];
const RO_COMPAT_NAMES: &[(u32, &str)] = &[
    (0x1, "sparse_super"),
    (0x2, "large_file"),
    (0x4, "btree_dir"),
    (0x8, "huge_file"),
    (0x10, "uninit_bg"),
    (0x20, "dir_nlink"),
    (0x40, "extra_isize"),
    (0x80, "has_snapshot"),
    (0x100, "quota"),
    (0x200, "bigalloc"),
    (0x400, "metadata_csum"),
    (0x800, "replica"),
    (0x1000, "read-only"),
    (0x2000, "project"),
    (0x4000, "shared_blocks"),
    (0x8000, "verity"),
    (0x1_0000, "orphan_present"),
];
/// INCOMPAT features this reader understands.
const INCOMPAT_READABLE: u32 = 0x2
    | 0x4
    | 0x10
    | 0x40
    | 0x80
    | 0x100
    | 0x200
    | 0x400
    | 0x2000
    | 0x4000
    | 0x8000
    | 0x1_0000
    | 0x2_0000;

/// Raw CRC-32C update as ext4 and jbd2 use it (no pre- or post-inversion).
/// The `crc32c` crate (hardware CRC instructions where present) computes the
/// inverted form, so the state is inverted on the way in and out.
pub(crate) fn crc32c(crc: u32, data: &[u8]) -> u32 {
    !crc32c::crc32c_append(!crc, data)
}

fn names(bits: u32, table: &[(u32, &str)]) -> Vec<String> {
    let mut out = Vec::new();
    let mut known = 0u32;
    for &(bit, name) in table {
        known |= bit;
        if bits & bit != 0 {
            out.push(name.to_string());
        }
    }
    let unknown = bits & !known;
    for i in 0..32 {
        if unknown & (1u32 << i) != 0 {
            out.push(format!("FEATURE_{:#x}", 1u32 << i));
        }
    }
    out
}

fn cstr(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(b.get(..end).unwrap_or_default()).into_owned()
}

fn nonzero_time(t: i64) -> Option<i64> {
    (t != 0).then_some(t)
}

/// What the superblock says, for forensic reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuperblockFacts {
    /// "ext2", "ext3" or "ext4".
    pub kind: &'static str,
    /// Volume label.
    pub label: String,
    /// Filesystem UUID (8-4-4-4-12).
    pub uuid: String,
    /// Directory where it was last mounted.
    pub last_mounted: String,
    /// Mounts since the last check.
    pub mount_count: u16,
    /// Mounts allowed before a check (-1: no limit).
    pub max_mount_count: i16,
    /// Last mount time.
    pub last_mount_time: Option<i64>,
    /// Last write time.
    pub last_write_time: Option<i64>,
    /// Creation (mkfs) time.
    pub creation_time: Option<i64>,
    /// Last check time.
    pub last_check_time: Option<i64>,
    /// "clean", "not clean", with "errors" and "orphans being recovered" added.
    pub state: String,
    /// What the kernel does on errors: "continue", "remount-ro", "panic".
    pub errors_behaviour: String,
    /// Creator OS ("Linux", "Hurd", "Masix", "FreeBSD", "Lites").
    pub creator_os: String,
    /// Revision level.
    pub revision: u32,
    /// Minor revision level.
    pub minor_revision: u16,
    /// Compatible features.
    pub features_compat: Vec<String>,
    /// Incompatible features.
    pub features_incompat: Vec<String>,
    /// Read-only compatible features.
    pub features_ro_compat: Vec<String>,
    /// Block size in bytes.
    pub block_size: u64,
    /// Blocks.
    pub blocks_count: u64,
    /// Free blocks.
    pub free_blocks: u64,
    /// Blocks reserved for root.
    pub reserved_blocks: u64,
    /// Inodes.
    pub inodes_count: u32,
    /// Free inodes.
    pub free_inodes: u32,
    /// Inode size.
    pub inode_size: u32,
    /// Blocks per group.
    pub blocks_per_group: u32,
    /// Inodes per group.
    pub inodes_per_group: u32,
    /// Block groups.
    pub group_count: u64,
    /// Superblock checksum valid (None without `metadata_csum`).
    pub checksum_ok: Option<bool>,
    /// The `encrypt` feature: some files may be encrypted.
    pub encryption: bool,
    /// Filename encoding of casefolded directories ("utf8-12.1"), with the
    /// `casefold` feature.
    pub casefold_encoding: Option<String>,
    /// Casefold strict mode: invalid UTF-8 names are refused.
    pub casefold_strict: bool,
    /// The journal and its recovery (None without `has_journal` or
    /// `needs_recovery`).
    pub journal: Option<JournalFacts>,
}

/// Parsed superblock fields the reader uses.
#[derive(Debug, Clone)]
struct Sb {
    raw: Vec<u8>,
    block_size: u64,
    inode_size: u64,
    blocks_per_group: u64,
    inodes_per_group: u64,
    inodes_count: u64,
    blocks_count: u64,
    first_data_block: u64,
    desc_size: u64,
    group_count: u64,
    compat: u32,
    incompat: u32,
    ro_compat: u32,
    first_meta_bg: u64,
    csum_seed: u32,
    csum: bool,
    cluster_ratio: u64,
}

/// One group descriptor.
#[derive(Debug, Clone, Copy)]
struct Group {
    block_bitmap: u64,
    inode_table: u64,
    flags: u16,
}

/// A raw inode.
#[derive(Debug, Clone)]
struct Inode {
    ino: u64,
    raw: Vec<u8>,
}

impl Inode {
    fn mode(&self) -> u16 {
        le16(&self.raw, 0)
    }
    fn flags(&self) -> u32 {
        le32(&self.raw, 32)
    }
    fn size(&self) -> u64 {
        u64::from(le32(&self.raw, 4)) | (u64::from(le32(&self.raw, 108)) << 32)
    }
    fn i_block(&self) -> &[u8] {
        self.raw.get(40..100).unwrap_or_default()
    }
    fn generation(&self) -> u32 {
        le32(&self.raw, 100)
    }
    fn file_acl(&self) -> u64 {
        u64::from(le32(&self.raw, 104)) | (u64::from(le16(&self.raw, 118)) << 32)
    }
    fn i_blocks(&self) -> u64 {
        u64::from(le32(&self.raw, 28)) | (u64::from(le16(&self.raw, 116)) << 32)
    }
    fn extra_isize(&self) -> usize {
        if self.raw.len() > 128 {
            usize::from(le16(&self.raw, 128))
        } else {
            0
        }
    }
    /// Whether the extra field ending at `end` (absolute offset) is present.
    fn has_extra(&self, end: usize) -> bool {
        self.raw.len() > 128 && 128 + self.extra_isize() >= end && end <= self.raw.len()
    }
    fn time(&self, base: usize, extra: Option<usize>) -> i64 {
        let mut t = i64::from(le32(&self.raw, base) as i32);
        if let Some(e) = extra {
            if self.has_extra(e + 4) {
                t += i64::from(le32(&self.raw, e) & 3) << 32;
            }
        }
        t
    }
    fn kind(&self) -> FileType {
        match self.mode() & 0xF000 {
            0x4000 => FileType::Dir,
            0x8000 => FileType::File,
            0xA000 => FileType::Symlink,
            0x2000 => FileType::CharDev,
            0x6000 => FileType::BlockDev,
            0x1000 => FileType::Fifo,
            0xC000 => FileType::Socket,
            _ => FileType::Unknown,
        }
    }
}

/// Where a logical block lives.
#[derive(Debug, Clone, Copy)]
struct Mapping {
    /// Physical block, `None` for a hole or uninitialized extent.
    phys: Option<u64>,
    /// Blocks from the logical block on with the same state (contiguous).
    run: u64,
}

/// A read-only ext2/3/4 filesystem.
pub struct Ext {
    src: Arc<dyn ByteSource>,
    sb: Sb,
    kind: &'static str,
    findings: Mutex<(Vec<String>, HashSet<String>)>,
    /// Descriptors of the first [`CACHED_GROUPS`] groups, read at open.
    groups: Vec<Group>,
    /// Inode-table pieces by disk offset (see [`ITABLE_PIECE`]).
    itable: Mutex<HashMap<u64, Arc<Vec<u8>>>>,
    /// What journal recovery found and did.
    journal: Option<JournalFacts>,
    /// Replayed blocks, when the view is the journal-recovered one.
    overlay: Option<Arc<Overlay>>,
}

/// A filesystem block whose recovered content is a journal copy.
#[derive(Debug, Clone, Copy)]
struct Replayed {
    /// Byte offset of the copy in the volume.
    at: u64,
    /// The copy's first four bytes stand for the journal magic.
    escaped: bool,
}

/// The volume as journal recovery would leave it, without writing: reads of
/// replayed blocks come from their journal copies, the rest from the volume.
#[derive(Debug)]
struct Overlay {
    inner: Arc<dyn ByteSource>,
    block_size: u64,
    blocks: BTreeMap<u64, Replayed>,
}

impl ByteSource for Overlay {
    fn len(&self) -> u64 {
        self.inner.len()
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        let len = self.inner.len();
        if offset >= len || self.block_size == 0 {
            return Ok(0);
        }
        let want = usize::try_from((len - offset).min(buf.len() as u64)).unwrap_or(buf.len());
        let bs = self.block_size;
        let mut done = 0usize;
        while done < want {
            let pos = offset.saturating_add(done as u64);
            let block = pos / bs;
            let within = pos % bs;
            let left = (want - done) as u64;
            let (n, from, escaped) = match self.blocks.get(&block) {
                Some(r) => (
                    (bs - within).min(left),
                    r.at.saturating_add(within),
                    r.escaped,
                ),
                None => {
                    // Up to the next replayed block in one read.
                    let next = self
                        .blocks
                        .range(block.saturating_add(1)..)
                        .next()
                        .map_or(u64::MAX, |(&b, _)| b.saturating_mul(bs));
                    (next.saturating_sub(pos).min(left).max(1), pos, false)
                }
            };
            let n = usize::try_from(n).unwrap_or(want - done);
            let Some(dst) = buf.get_mut(done..done.saturating_add(n)) else {
                break;
            };
            self.inner.read_zero_padded(from, dst)?;
            if escaped && within < 4 {
                // The log zeroes a leading magic; restore it.
                let magic = crate::jbd2::MAGIC.to_be_bytes();
                let skip = usize::try_from(within).unwrap_or(4);
                for (d, m) in dst.iter_mut().zip(magic.iter().skip(skip)) {
                    *d = *m;
                }
            }
            done = done.saturating_add(n);
        }
        Ok(done)
    }
}

/// Logical-to-disk mapping of the journal inode, remembering the last run
/// (the log is read mostly in order).
struct JournalBlocks<'a> {
    fs: &'a Ext,
    inode: Inode,
    last: Option<(u64, u64, u64)>,
}

impl JournalBlocks<'_> {
    /// Disk block of logical journal block `jblock`.
    fn phys(&mut self, jblock: u64) -> Result<u64, FsError> {
        if let Some((l, p, run)) = self.last {
            if jblock >= l && jblock - l < run {
                return Ok(p.saturating_add(jblock - l));
            }
        }
        let m = self.fs.map(&self.inode, jblock)?;
        let p = m
            .phys
            .ok_or_else(|| corrupt(format!("journal block {jblock} is not mapped")))?;
        self.last = Some((jblock, p, m.run.max(1)));
        Ok(p)
    }

    fn read(&mut self, jblock: u64) -> Result<Vec<u8>, FsError> {
        let p = self.phys(jblock)?;
        self.fs.read_block(p)
    }
}

impl std::fmt::Debug for Ext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ext")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

fn corrupt(msg: impl Into<String>) -> FsError {
    FsError::Corrupt(msg.into())
}

impl Ext {
    /// Opens an ext2/3/4 filesystem.
    ///
    /// # Errors
    /// [`FsError::NotThisFs`] without the ext magic; [`FsError::Unsupported`]
    /// for INCOMPAT features this reader cannot read; [`FsError::Corrupt`] for
    /// impossible superblock geometry.
    pub fn open(src: Arc<dyn ByteSource>) -> Result<Self, FsError> {
        let mut fs = Self::open_volume(Arc::clone(&src))?;
        let journaled = fs.sb.compat & COMPAT_HAS_JOURNAL != 0;
        if journaled || fs.sb.incompat & INCOMPAT_RECOVER != 0 {
            let (mut facts, blocks) = fs.plan_recovery();
            if !blocks.is_empty() {
                let bs = fs.sb.block_size;
                let overlay = Arc::new(Overlay {
                    inner: src,
                    block_size: bs,
                    blocks,
                });
                let view: Arc<dyn ByteSource> = Arc::clone(&overlay) as Arc<dyn ByteSource>;
                // The kernel mounts with the replayed superblock and group
                // descriptors, so the filesystem is opened again over them.
                match Self::open_volume(view) {
                    Ok(replayed) if replayed.sb.block_size == bs => {
                        facts.applied = true;
                        fs = replayed;
                        fs.overlay = Some(overlay);
                    }
                    Ok(_) => facts.problem(
                        "the replayed superblock changes the block size; journal not applied"
                            .to_string(),
                    ),
                    Err(e) => facts.problem(format!(
                        "the replayed filesystem is unreadable ({e}); journal not applied"
                    )),
                }
            }
            for p in &facts.problems {
                fs.finding(format!("journal: {p}"));
            }
            fs.journal = Some(facts);
        }
        // Root must be a directory.
        let root = fs.inode(2)?;
        if root.kind() != FileType::Dir {
            return Err(corrupt("root inode is not a directory"));
        }
        Ok(fs)
    }

    /// Opens the filesystem `src` holds as it is (no journal recovery).
    fn open_volume(src: Arc<dyn ByteSource>) -> Result<Self, FsError> {
        if src.len() < 2048 {
            return Err(FsError::NotThisFs("ext"));
        }
        let raw = crate::read_bytes(src.as_ref(), 1024, 1024)?;
        if le16(&raw, 56) != 0xEF53 {
            return Err(FsError::NotThisFs("ext"));
        }
        let log_bs = le32(&raw, 24);
        if log_bs > 6 {
            return Err(corrupt(format!(
                "log block size {log_bs} (block size over 64 KiB)"
            )));
        }
        let block_size = 1024u64 << log_bs;
        let rev = le32(&raw, 76);
        let inode_size = if rev == 0 {
            128
        } else {
            u64::from(le16(&raw, 88))
        };
        if inode_size < 128 || !inode_size.is_power_of_two() || inode_size > block_size {
            return Err(corrupt(format!("inode size {inode_size}")));
        }
        let blocks_per_group = u64::from(le32(&raw, 32));
        let inodes_per_group = u64::from(le32(&raw, 40));
        let compat = le32(&raw, 92);
        let incompat = le32(&raw, 96);
        let ro_compat = le32(&raw, 100);
        let bigalloc = ro_compat & 0x200 != 0;
        let log_cluster = le32(&raw, 28);
        let cluster_ratio = if bigalloc {
            if log_cluster < log_bs || log_cluster - log_bs > 16 {
                return Err(corrupt(format!("log cluster size {log_cluster}")));
            }
            1u64 << (log_cluster - log_bs)
        } else {
            1
        };
        if blocks_per_group == 0 || blocks_per_group > block_size * 8 * cluster_ratio {
            return Err(corrupt(format!("{blocks_per_group} blocks per group")));
        }
        if inodes_per_group == 0 || inodes_per_group > block_size * 8 {
            return Err(corrupt(format!("{inodes_per_group} inodes per group")));
        }
        let unreadable = incompat & !INCOMPAT_READABLE;
        if unreadable != 0 {
            return Err(FsError::Unsupported(format!(
                "ext INCOMPAT features {}",
                names(unreadable, INCOMPAT_NAMES).join(", ")
            )));
        }
        let is64 = incompat & INCOMPAT_64BIT != 0;
        let desc_size = if is64 { u64::from(le16(&raw, 254)) } else { 32 };
        if !(32..=1024).contains(&desc_size) || !desc_size.is_power_of_two() {
            return Err(corrupt(format!("group descriptor size {desc_size}")));
        }
        let mut blocks_count = u64::from(le32(&raw, 4));
        if is64 {
            blocks_count |= u64::from(le32(&raw, 336)) << 32;
        }
        let first_data_block = u64::from(le32(&raw, 20));
        if blocks_count <= first_data_block {
            return Err(corrupt(format!("{blocks_count} blocks")));
        }
        if blocks_count.checked_mul(block_size).is_none() {
            return Err(corrupt(format!(
                "{blocks_count} blocks of {block_size} bytes"
            )));
        }
        let group_count = (blocks_count - first_data_block).div_ceil(blocks_per_group);
        let inodes_count = u64::from(le32(&raw, 0));
        let csum = ro_compat & RO_COMPAT_METADATA_CSUM != 0;
        let csum_seed = if incompat & INCOMPAT_CSUM_SEED != 0 {
            le32(&raw, 0x270)
        } else {
            crc32c(!0, raw.get(104..120).unwrap_or_default())
        };
        let sb = Sb {
            block_size,
            inode_size,
            blocks_per_group,
            inodes_per_group,
            inodes_count,
            blocks_count,
            first_data_block,
            desc_size,
            group_count,
            compat,
            incompat,
            ro_compat,
            first_meta_bg: u64::from(le32(&raw, 260)),
            csum_seed,
            csum,
            cluster_ratio,
            raw,
        };
        let kind = if incompat & !(INCOMPAT_FILETYPE | INCOMPAT_META_BG | 0x4) != 0
            || ro_compat & !(0x1 | 0x2 | 0x4) != 0
        {
            "ext4"
        } else if compat & COMPAT_HAS_JOURNAL != 0 {
            "ext3"
        } else {
            "ext2"
        };
        let mut fs = Self {
            src,
            sb,
            kind,
            findings: Mutex::new((Vec::new(), HashSet::new())),
            groups: Vec::new(),
            itable: Mutex::new(HashMap::new()),
            journal: None,
            overlay: None,
        };
        if fs.sb.csum {
            if let Some(false) = fs.superblock_checksum_ok() {
                fs.finding("superblock checksum mismatch".to_string());
            }
        }
        // Descriptors (and their checksums) of a bounded number of groups.
        let cached = fs.sb.group_count.min(CACHED_GROUPS);
        let mut groups = Vec::new();
        for g in 0..cached {
            groups.push(fs.read_group(g)?);
        }
        fs.groups = groups;
        Ok(fs)
    }

    /// Reads the internal journal when the superblock asks for recovery:
    /// its facts, and where each replayed block's newest committed copy is.
    fn plan_recovery(&self) -> (JournalFacts, BTreeMap<u64, Replayed>) {
        let r = &self.sb.raw;
        let mut facts = JournalFacts {
            needs_recovery: self.sb.incompat & INCOMPAT_RECOVER != 0,
            inode: le32(r, 0xE0),
            ..JournalFacts::default()
        };
        let mut out = BTreeMap::new();
        if !facts.needs_recovery {
            return (facts, out);
        }
        if self.sb.compat & COMPAT_HAS_JOURNAL == 0 {
            facts
                .problem("needs_recovery is set without has_journal; nothing replayed".to_string());
            return (facts, out);
        }
        let ino = u64::from(facts.inode);
        if ino == 0 {
            facts.problem(format!(
                "the journal is external (device {:#x}); not replayed",
                le32(r, 0xE4)
            ));
            return (facts, out);
        }
        let inode = match self.inode(ino) {
            Ok(i) if i.kind() == FileType::File => i,
            Ok(_) => {
                facts.problem(format!(
                    "journal inode {ino} is not a regular file; not replayed"
                ));
                return (facts, out);
            }
            Err(e) => {
                facts.problem(format!("journal inode {ino}: {e}; not replayed"));
                return (facts, out);
            }
        };
        let bs = self.sb.block_size;
        // A journal cannot be larger than the filesystem or the volume
        // holding it; this bounds the scan by the input's size.
        let jlen = (inode.size() / bs)
            .min(self.sb.blocks_count)
            .min(self.src.len() / bs);
        let mut jmap = JournalBlocks {
            fs: self,
            inode,
            last: None,
        };
        let planned = crate::jbd2::plan(
            bs,
            self.sb.blocks_count,
            jlen,
            &mut |j| jmap.read(j),
            &mut facts,
        );
        for (block, logged) in planned {
            match jmap.phys(logged.jblock) {
                Ok(p) => {
                    out.insert(
                        block,
                        Replayed {
                            at: p.saturating_mul(bs),
                            escaped: logged.escaped,
                        },
                    );
                }
                Err(e) => facts.problem(format!("journal block {}: {e}", logged.jblock)),
            }
        }
        (facts, out)
    }

    /// What journal recovery found and did (None without a journal or a
    /// recovery flag).
    pub fn journal_facts(&self) -> Option<JournalFacts> {
        self.journal.clone()
    }

    fn finding(&self, msg: String) {
        if let Ok(mut f) = self.findings.lock() {
            if f.0.len() < MAX_FINDINGS && f.1.insert(msg.clone()) {
                f.0.push(msg);
            }
        }
    }

    /// Everything noticed so far that is not an error: checksum
    /// mismatches (superblock and group descriptors at open; inodes, extent
    /// blocks and directory leaves as they are read), journal problems,
    /// encrypted directories.
    pub fn findings(&self) -> Vec<String> {
        self.findings
            .lock()
            .map(|f| f.0.clone())
            .unwrap_or_default()
    }

    /// The checksum mismatches among [`Self::findings`].
    pub fn checksum_errors(&self) -> Vec<String> {
        let mut f = self.findings();
        f.retain(|m| m.contains("checksum"));
        f
    }

    fn superblock_checksum_ok(&self) -> Option<bool> {
        if !self.sb.csum {
            return None;
        }
        let want = le32(&self.sb.raw, 0x3FC);
        let got = crc32c(!0, self.sb.raw.get(..0x3FC).unwrap_or_default());
        Some(want == got)
    }

    /// The inode number of a node (the node id is the inode number; root is 2).
    pub fn inode_number(id: NodeId) -> u64 {
        id.0
    }

    /// Block size in bytes.
    pub fn block_size(&self) -> u64 {
        self.sb.block_size
    }

    /// The superblock's forensic facts.
    pub fn superblock_facts(&self) -> SuperblockFacts {
        let r = &self.sb.raw;
        let is64 = self.sb.incompat & INCOMPAT_64BIT != 0;
        let hi = |lo: usize, hi: usize| {
            let mut v = u64::from(le32(r, lo));
            if is64 {
                v |= u64::from(le32(r, hi)) << 32;
            }
            v
        };
        let t = |lo: usize, hi: usize| {
            nonzero_time(i64::from(le32(r, lo)) | (i64::from(byte(r, hi)) << 32))
        };
        let state_bits = le16(r, 58);
        let mut state = if state_bits & 1 != 0 {
            "clean".to_string()
        } else {
            "not clean".to_string()
        };
        if state_bits & 2 != 0 {
            state.push_str(", errors");
        }
        if state_bits & 4 != 0 {
            state.push_str(", orphans being recovered");
        }
        let errors_behaviour = match le16(r, 60) {
            1 => "continue".to_string(),
            2 => "remount-ro".to_string(),
            3 => "panic".to_string(),
            n => format!("unknown ({n})"),
        };
        let creator_os = match le32(r, 72) {
            0 => "Linux".to_string(),
            1 => "Hurd".to_string(),
            2 => "Masix".to_string(),
            3 => "FreeBSD".to_string(),
            4 => "Lites".to_string(),
            n => format!("unknown ({n})"),
        };
        let u = r.get(104..120).unwrap_or_default();
        let hex: String = u.iter().map(|b| format!("{b:02x}")).collect();
        let uuid = if hex.len() == 32 {
            format!(
                "{}-{}-{}-{}-{}",
                hex.get(0..8).unwrap_or_default(),
                hex.get(8..12).unwrap_or_default(),
                hex.get(12..16).unwrap_or_default(),
                hex.get(16..20).unwrap_or_default(),
                hex.get(20..32).unwrap_or_default()
            )
        } else {
            hex
        };
        SuperblockFacts {
            kind: self.kind,
            label: cstr(r.get(120..136).unwrap_or_default()),
            uuid,
            last_mounted: cstr(r.get(136..200).unwrap_or_default()),
            mount_count: le16(r, 52),
            max_mount_count: le16(r, 54) as i16,
            last_mount_time: t(44, 0x275),
            last_write_time: t(48, 0x274),
            creation_time: t(264, 0x276),
            last_check_time: t(64, 0x277),
            state,
            errors_behaviour,
            creator_os,
            revision: le32(r, 76),
            minor_revision: le16(r, 62),
            features_compat: names(self.sb.compat, COMPAT_NAMES),
            features_incompat: names(self.sb.incompat, INCOMPAT_NAMES),
            features_ro_compat: names(self.sb.ro_compat, RO_COMPAT_NAMES),
            block_size: self.sb.block_size,
            blocks_count: self.sb.blocks_count,
            free_blocks: hi(12, 344),
            reserved_blocks: hi(8, 340),
            inodes_count: le32(r, 0),
            free_inodes: le32(r, 16),
            inode_size: u32::try_from(self.sb.inode_size).unwrap_or(u32::MAX),
            blocks_per_group: le32(r, 32),
            inodes_per_group: le32(r, 40),
            group_count: self.sb.group_count,
            checksum_ok: self.superblock_checksum_ok(),
            encryption: self.sb.incompat & INCOMPAT_ENCRYPT != 0,
            casefold_encoding: (self.sb.incompat & INCOMPAT_CASEFOLD != 0).then(|| {
                match le16(r, 0x27C) {
                    1 => "utf8-12.1".to_string(),
                    n => format!("unknown ({n})"),
                }
            }),
            casefold_strict: self.sb.incompat & INCOMPAT_CASEFOLD != 0 && le16(r, 0x27E) & 1 != 0,
            journal: self.journal.clone(),
        }
    }

    fn read_block(&self, block: u64) -> Result<Vec<u8>, FsError> {
        if block >= self.sb.blocks_count {
            return Err(corrupt(format!("block {block} beyond the filesystem")));
        }
        let len = usize::try_from(self.sb.block_size).map_err(|_| corrupt("block size"))?;
        crate::read_bytes(
            self.src.as_ref(),
            block.saturating_mul(self.sb.block_size),
            len,
        )
    }

    fn has_super(&self, group: u64) -> bool {
        if self.sb.ro_compat & RO_COMPAT_SPARSE_SUPER == 0 || group <= 1 {
            return true;
        }
        for base in [3u64, 5, 7] {
            let mut p = base;
            while p < group {
                p = p.saturating_mul(base);
            }
            if p == group {
                return true;
            }
        }
        false
    }

    /// Byte offset of group `g`'s descriptor.
    fn desc_offset(&self, g: u64) -> u64 {
        let bs = self.sb.block_size;
        let per_block = bs / self.sb.desc_size;
        let meta_group = g / per_block;
        if self.sb.incompat & INCOMPAT_META_BG != 0 && meta_group >= self.sb.first_meta_bg {
            let first = meta_group * per_block;
            let block = first
                .saturating_mul(self.sb.blocks_per_group)
                .saturating_add(self.sb.first_data_block)
                .saturating_add(u64::from(self.has_super(first)));
            block
                .saturating_mul(bs)
                .saturating_add((g % per_block) * self.sb.desc_size)
        } else {
            (self.sb.first_data_block + 1) * bs + g * self.sb.desc_size
        }
    }

    fn group(&self, g: u64) -> Result<Group, FsError> {
        if let Some(grp) = usize::try_from(g).ok().and_then(|i| self.groups.get(i)) {
            return Ok(*grp);
        }
        self.read_group(g)
    }

    fn read_group(&self, g: u64) -> Result<Group, FsError> {
        if g >= self.sb.group_count {
            return Err(corrupt(format!("group {g} beyond {}", self.sb.group_count)));
        }
        let len = usize::try_from(self.sb.desc_size).map_err(|_| corrupt("descriptor size"))?;
        let d = crate::read_bytes(self.src.as_ref(), self.desc_offset(g), len)?;
        let wide = self.sb.desc_size >= 64 && self.sb.incompat & INCOMPAT_64BIT != 0;
        let lohi = |lo: usize, hi: usize| {
            let mut v = u64::from(le32(&d, lo));
            if wide {
                v |= u64::from(le32(&d, hi)) << 32;
            }
            v
        };
        if self.sb.csum {
            let g32 = u32::try_from(g).unwrap_or(u32::MAX);
            let mut c = crc32c(self.sb.csum_seed, &g32.to_le_bytes());
            c = crc32c(c, d.get(..0x1E).unwrap_or_default());
            c = crc32c(c, &[0, 0]);
            c = crc32c(c, d.get(0x20..).unwrap_or_default());
            if (c & 0xFFFF) as u16 != le16(&d, 0x1E) {
                self.finding(format!("group descriptor {g} checksum mismatch"));
            }
        }
        Ok(Group {
            block_bitmap: lohi(0, 0x20),
            inode_table: lohi(8, 0x28),
            flags: le16(&d, 18),
        })
    }

    fn inode(&self, ino: u64) -> Result<Inode, FsError> {
        if ino == 0
            || ino > self.sb.inodes_count
            || ino > self.sb.group_count.saturating_mul(self.sb.inodes_per_group)
        {
            return Err(FsError::NotFound(format!("inode {ino}")));
        }
        let g = (ino - 1) / self.sb.inodes_per_group;
        let idx = (ino - 1) % self.sb.inodes_per_group;
        let grp = self.group(g)?;
        if grp.inode_table == 0 || grp.inode_table >= self.sb.blocks_count {
            return Err(corrupt(format!(
                "group {g} inode table at block {}",
                grp.inode_table
            )));
        }
        let off = (grp.inode_table.saturating_mul(self.sb.block_size))
            .saturating_add(idx.saturating_mul(self.sb.inode_size));
        let raw = self.inode_bytes(off)?;
        let inode = Inode { ino, raw };
        if self.sb.csum {
            self.check_inode(&inode);
        }
        Ok(inode)
    }

    /// The `inode_size` bytes at disk offset `off`, through the piece cache.
    fn inode_bytes(&self, off: u64) -> Result<Vec<u8>, FsError> {
        let len = usize::try_from(self.sb.inode_size).map_err(|_| corrupt("inode size"))?;
        let base = off - off % ITABLE_PIECE;
        let at = usize::try_from(off - base).map_err(|_| corrupt("inode offset"))?;
        let cached = self.itable.lock().ok().and_then(|c| c.get(&base).cloned());
        let piece = match cached {
            Some(p) => p,
            None => {
                let p = Arc::new(crate::read_bytes(
                    self.src.as_ref(),
                    base,
                    usize::try_from(ITABLE_PIECE).unwrap_or(0),
                )?);
                if let Ok(mut c) = self.itable.lock() {
                    if c.len() >= ITABLE_PIECES {
                        c.clear();
                    }
                    c.insert(base, Arc::clone(&p));
                }
                p
            }
        };
        match piece.get(at..at + len) {
            Some(b) => Ok(b.to_vec()),
            // An inode straddling two pieces (inode sizes are powers of two
            // up to the block size, so only on a corrupt layout): read it alone.
            None => crate::read_bytes(self.src.as_ref(), off, len),
        }
    }

    fn inode_seed(&self, inode: &Inode) -> u32 {
        let ino32 = u32::try_from(inode.ino).unwrap_or(u32::MAX);
        let c = crc32c(self.sb.csum_seed, &ino32.to_le_bytes());
        crc32c(c, &inode.generation().to_le_bytes())
    }

    fn check_inode(&self, inode: &Inode) {
        let r = &inode.raw;
        if r.iter().all(|&b| b == 0) {
            return;
        }
        let has_hi = inode.has_extra(0x84);
        let mut c = self.inode_seed(inode);
        c = crc32c(c, r.get(..0x7C).unwrap_or_default());
        c = crc32c(c, &[0, 0]);
        if has_hi {
            c = crc32c(c, r.get(0x7E..0x82).unwrap_or_default());
            c = crc32c(c, &[0, 0]);
            c = crc32c(c, r.get(0x84..).unwrap_or_default());
        } else {
            c = crc32c(c, r.get(0x7E..).unwrap_or_default());
        }
        let ok = if has_hi {
            c == (u32::from(le16(r, 0x7C)) | (u32::from(le16(r, 0x82)) << 16))
        } else {
            (c & 0xFFFF) as u16 == le16(r, 0x7C)
        };
        if !ok {
            self.finding(format!("inode {} checksum mismatch", inode.ino));
        }
    }

    fn check_extent_block(&self, inode: &Inode, block: u64, node: &[u8]) {
        if !self.sb.csum {
            return;
        }
        let max = usize::from(le16(node, 4));
        let tail = 12 + 12 * max;
        if tail + 4 > node.len() {
            return;
        }
        let c = crc32c(self.inode_seed(inode), node.get(..tail).unwrap_or_default());
        if c != le32(node, tail) {
            self.finding(format!(
                "inode {} extent block {block} checksum mismatch",
                inode.ino
            ));
        }
    }

    fn check_dir_block(&self, inode: &Inode, block: u64, data: &[u8]) {
        if !self.sb.csum || data.len() < 12 {
            return;
        }
        let t = data.len() - 12;
        // Only leaf blocks carry the 12-byte tail (inode 0, rec_len 12,
        // name_len 0, type 0xDE); htree index blocks are skipped.
        if le32(data, t) != 0 || le16(data, t + 4) != 12 || byte(data, t + 7) != 0xDE {
            return;
        }
        let c = crc32c(self.inode_seed(inode), data.get(..t).unwrap_or_default());
        if c != le32(data, t + 8) {
            self.finding(format!(
                "directory inode {} block {block} checksum mismatch",
                inode.ino
            ));
        }
    }

    /// Parses and validates an extent node header; returns (entries, depth).
    fn extent_header(&self, inode: &Inode, node: &[u8]) -> Result<(usize, u16), FsError> {
        if le16(node, 0) != 0xF30A {
            return Err(corrupt(format!(
                "inode {}: bad extent header magic",
                inode.ino
            )));
        }
        let entries = usize::from(le16(node, 2));
        let max = usize::from(le16(node, 4));
        let depth = le16(node, 6);
        if entries > max || max > node.len().saturating_sub(12) / 12 {
            return Err(corrupt(format!(
                "inode {}: extent node with {entries} entries, max {max}",
                inode.ino
            )));
        }
        if depth > MAX_EXTENT_DEPTH {
            return Err(corrupt(format!(
                "inode {}: extent tree depth {depth}",
                inode.ino
            )));
        }
        Ok((entries, depth))
    }

    fn map_extent(&self, inode: &Inode, lblk: u64) -> Result<Mapping, FsError> {
        let mut node = inode.i_block().to_vec();
        let mut expect: Option<u16> = None;
        // Logical block where the current subtree ends (exclusive).
        let mut bound: Option<u64> = None;
        for _ in 0..=MAX_EXTENT_DEPTH + 1 {
            let (entries, depth) = self.extent_header(inode, &node)?;
            if let Some(d) = expect {
                if depth != d {
                    return Err(corrupt(format!(
                        "inode {}: extent node depth {depth}, expected {d}",
                        inode.ino
                    )));
                }
            }
            if depth == 0 {
                let mut next = bound;
                for i in 0..entries {
                    let e = 12 + 12 * i;
                    let start = u64::from(le32(&node, e));
                    let raw_len = le16(&node, e + 4);
                    let (len, uninit) = if raw_len > 32768 {
                        (u64::from(raw_len - 32768), true)
                    } else {
                        (u64::from(raw_len), false)
                    };
                    let phys =
                        u64::from(le32(&node, e + 8)) | (u64::from(le16(&node, e + 6)) << 32);
                    if lblk >= start && lblk < start + len {
                        if phys.saturating_add(len) > self.sb.blocks_count {
                            return Err(corrupt(format!(
                                "inode {}: extent at block {phys} (+{len}) beyond the filesystem",
                                inode.ino
                            )));
                        }
                        let off = lblk - start;
                        return Ok(Mapping {
                            phys: (!uninit).then_some(phys + off),
                            run: len - off,
                        });
                    }
                    if start > lblk {
                        next = Some(next.map_or(start, |n| n.min(start)));
                    }
                }
                return Ok(Mapping {
                    phys: None,
                    run: next.map_or(u64::MAX, |n| n.saturating_sub(lblk).max(1)),
                });
            }
            let mut chosen: Option<usize> = None;
            let mut first_start: Option<u64> = None;
            for i in 0..entries {
                let s = u64::from(le32(&node, 12 + 12 * i));
                if i == 0 {
                    first_start = Some(s);
                }
                if s <= lblk {
                    chosen = Some(i);
                }
            }
            let Some(i) = chosen else {
                let run = first_start.map_or(u64::MAX, |s| s.saturating_sub(lblk).max(1));
                return Ok(Mapping { phys: None, run });
            };
            if i + 1 < entries {
                let n = u64::from(le32(&node, 12 + 12 * (i + 1)));
                if n > lblk {
                    bound = Some(bound.map_or(n, |b| b.min(n)));
                }
            }
            let e = 12 + 12 * i;
            let child = u64::from(le32(&node, e + 4)) | (u64::from(le16(&node, e + 8)) << 32);
            if child == 0 {
                return Err(corrupt(format!(
                    "inode {}: extent index to block 0",
                    inode.ino
                )));
            }
            node = self.read_block(child)?;
            self.check_extent_block(inode, child, &node);
            expect = Some(depth - 1);
        }
        Err(corrupt(format!(
            "inode {}: extent tree too deep",
            inode.ino
        )))
    }

    fn map_indirect(&self, inode: &Inode, lblk: u64) -> Result<Mapping, FsError> {
        let ib = inode.i_block();
        let per = self.sb.block_size / 4;
        if lblk < 12 {
            let p = u64::from(le32(ib, usize::try_from(lblk).unwrap_or(0) * 4));
            return Ok(Mapping {
                phys: (p != 0).then_some(p),
                run: 1,
            });
        }
        let mut rel = lblk - 12;
        let mut span = per;
        for level in 1..=3u32 {
            if rel < span {
                let mut ptr = u64::from(le32(ib, 48 + 4 * (level as usize - 1)));
                let mut sub = span;
                for _ in 0..level {
                    if ptr == 0 {
                        return Ok(Mapping {
                            phys: None,
                            run: sub - rel,
                        });
                    }
                    let block = self.read_block(ptr)?;
                    sub /= per;
                    let idx = rel / sub;
                    rel %= sub;
                    ptr = u64::from(le32(&block, usize::try_from(idx * 4).unwrap_or(0)));
                }
                if ptr >= self.sb.blocks_count {
                    return Err(corrupt(format!(
                        "inode {}: block {ptr} beyond the filesystem",
                        inode.ino
                    )));
                }
                return Ok(Mapping {
                    phys: (ptr != 0).then_some(ptr),
                    run: 1,
                });
            }
            rel -= span;
            span = span.saturating_mul(per);
        }
        Ok(Mapping {
            phys: None,
            run: u64::MAX,
        })
    }

    fn map(&self, inode: &Inode, lblk: u64) -> Result<Mapping, FsError> {
        if inode.flags() & FL_EXTENTS != 0 {
            if lblk > u64::from(u32::MAX) {
                return Ok(Mapping {
                    phys: None,
                    run: u64::MAX,
                });
            }
            self.map_extent(inode, lblk)
        } else {
            self.map_indirect(inode, lblk)
        }
    }

    /// The `system.data` extended attribute value in the inode body.
    fn inline_xattr(&self, inode: &Inode) -> Vec<u8> {
        let r = &inode.raw;
        let start = 128 + inode.extra_isize();
        if !inode.has_extra(start) || le32(r, start) != 0xEA02_0000 {
            return Vec::new();
        }
        let base = start + 4;
        let mut pos = base;
        for _ in 0..256 {
            if pos + 16 > r.len() || le32(r, pos) == 0 {
                break;
            }
            let name_len = usize::from(byte(r, pos));
            let index = byte(r, pos + 1);
            let value_offs = usize::from(le16(r, pos + 2));
            let value_inum = le32(r, pos + 4);
            let value_size = le32(r, pos + 8) as usize;
            let name = r.get(pos + 16..pos + 16 + name_len).unwrap_or_default();
            if index == 7 && name == b"data" && value_inum == 0 {
                return r
                    .get(base + value_offs..base + value_offs + value_size)
                    .map(<[u8]>::to_vec)
                    .unwrap_or_default();
            }
            pos += (16 + name_len + 3) & !3;
        }
        Vec::new()
    }

    /// Extended attributes of `inode` (decoded by [`crate::ext_xattr`]):
    /// the in-inode area, then the attribute block (its `metadata_csum`
    /// checksum a finding), EA-inode values read.
    fn xattrs_of(&self, inode: &Inode) -> Result<Vec<crate::xattr::Xattr>, FsError> {
        use crate::ext_xattr as xa;
        let ea_inode = self.sb.incompat & INCOMPAT_EA_INODE != 0;
        let what = format!("inode {} extended attributes", inode.ino);
        let mut entries = xa::ibody(&inode.raw, inode.extra_isize(), ea_inode, &what)?;
        // l_i_file_acl_high counts only on 64-bit filesystems, as in the kernel.
        let acl = if self.sb.incompat & INCOMPAT_64BIT != 0 {
            inode.file_acl()
        } else {
            u64::from(le32(&inode.raw, 104))
        };
        if acl != 0 {
            let what = format!("inode {} extended attribute block {acl}", inode.ino);
            let data = self.read_block(acl)?;
            if self.sb.csum && !xa::block_checksum_ok(self.sb.csum_seed, acl, &data) {
                self.finding(format!("{what} checksum mismatch"));
            }
            entries.extend(xa::block(&data, ea_inode, &what)?);
        }
        xa::resolve(entries, |ino, size| self.ea_inode_value(inode, ino, size))
    }

    /// The `size`-byte value `owner` keeps in EA inode `ino`: a regular
    /// file with the `EA_INODE` flag holding exactly `size` bytes.
    fn ea_inode_value(&self, owner: &Inode, ino: u64, size: usize) -> Result<Vec<u8>, FsError> {
        let bad = |why: String| {
            corrupt(format!(
                "inode {}: extended attribute value inode {ino} {why}",
                owner.ino
            ))
        };
        if ino == owner.ino || ino == 2 {
            return Err(bad("is not an EA inode".to_string()));
        }
        let ea = match self.inode(ino) {
            Err(FsError::NotFound(_)) => return Err(bad("does not exist".to_string())),
            r => r?,
        };
        if ea.kind() != FileType::File || ea.flags() & FL_EA_INODE == 0 {
            return Err(bad("is not an EA inode".to_string()));
        }
        if ea.size() != size as u64 {
            return Err(bad(format!("holds {} bytes, the entry {size}", ea.size())));
        }
        let mut value = vec![0u8; size];
        let n = self.read(NodeId(ino), 0, &mut value)?;
        if n != size {
            return Err(bad(format!("gave {n} of {size} bytes")));
        }
        Ok(value)
    }

    fn inline_data(&self, inode: &Inode) -> Vec<u8> {
        let mut data = inode.i_block().to_vec();
        data.extend(self.inline_xattr(inode));
        data
    }

    fn dirent_kind(&self, code: u8, ino: u64) -> FileType {
        if self.sb.incompat & INCOMPAT_FILETYPE != 0 {
            let k = match code {
                1 => FileType::File,
                2 => FileType::Dir,
                3 => FileType::CharDev,
                4 => FileType::BlockDev,
                5 => FileType::Fifo,
                6 => FileType::Socket,
                7 => FileType::Symlink,
                _ => FileType::Unknown,
            };
            if k != FileType::Unknown {
                return k;
            }
        }
        self.inode(ino).map_or(FileType::Unknown, |i| i.kind())
    }

    /// Calls `f(physical block, bytes)` for each allocated block of a
    /// (non-inline) directory, checksums checked, bounded in count.
    fn for_each_dir_block(
        &self,
        inode: &Inode,
        mut f: impl FnMut(u64, &[u8]) -> Result<(), FsError>,
    ) -> Result<(), FsError> {
        let bs = self.sb.block_size;
        let nblocks = inode.size().div_ceil(bs);
        let mut lblk = 0u64;
        let mut seen = 0usize;
        while lblk < nblocks {
            let m = self.map(inode, lblk)?;
            let Some(phys) = m.phys else {
                lblk = lblk.saturating_add(m.run.max(1));
                continue;
            };
            seen += 1;
            if seen > crate::MAX_DIR_ENTRIES {
                return Err(corrupt(format!("directory inode {} too large", inode.ino)));
            }
            let data = self.read_block(phys)?;
            self.check_dir_block(inode, phys, &data);
            f(phys, &data)?;
            lblk += 1;
        }
        Ok(())
    }

    /// Deleted entries left in one directory block: removing an entry
    /// folds it into the previous record's length (its bytes stay in that
    /// record's slack), or, for a block's first entry, zeroes its inode
    /// number. Slack is searched at 4-byte steps for plausible records.
    fn deleted_dirents(
        &self,
        data: &[u8],
        base: u64,
        htree_root: bool,
        out: &mut Vec<crate::Deleted>,
    ) {
        let filetype = self.sb.incompat & INCOMPAT_FILETYPE != 0;
        let name_len_at = |q: usize| {
            if filetype {
                usize::from(byte(data, q + 6))
            } else {
                usize::from(le16(data, q + 6))
            }
        };
        let plausible_name = |n: &[u8]| !n.is_empty() && !n.iter().any(|&b| b == 0 || b == b'/');
        let record = |q: usize, ino: u32, n: &[u8], out: &mut Vec<crate::Deleted>| {
            if out.len() >= crate::MAX_DIR_ENTRIES || n == b"." || n == b".." {
                return;
            }
            let node =
                (ino != 0 && u64::from(ino) <= self.sb.inodes_count).then_some(u64::from(ino));
            let (kind, size) = match node.map(|i| self.inode(i)) {
                Some(Ok(i)) if i.mode() != 0 => {
                    (self.dirent_kind(byte(data, q + 7), i.ino), Some(i.size()))
                }
                _ => (FileType::Unknown, None),
            };
            out.push(crate::Deleted {
                name: n.to_vec(),
                offset: base.saturating_add(q as u64),
                kind,
                size,
                node,
            });
        };
        let mut pos = 0usize;
        while pos + 8 <= data.len() {
            let ino = le32(data, pos);
            let raw_rec = le16(data, pos + 4);
            let rec = self.rec_len(raw_rec);
            if rec < 8 || pos + rec > data.len() {
                return;
            }
            let name_len = name_len_at(pos);
            if ino == 0 && name_len == 0 && rec == data.len() {
                // An empty block, or an htree index node behind a fake record.
                return;
            }
            if htree_root && data.get(pos + 8..pos + 8 + name_len) == Some(&b".."[..]) {
                return;
            }
            let used = if ino == 0 {
                // A block's first entry, deleted: its name is still here.
                let n = data.get(pos + 8..pos + 8 + name_len).unwrap_or_default();
                if name_len > 0 && 8 + name_len <= rec && plausible_name(n) {
                    record(pos, 0, n, out);
                    (8 + name_len).next_multiple_of(4)
                } else {
                    8
                }
            } else {
                (8 + name_len).next_multiple_of(4)
            };
            let end = pos + rec;
            let mut q = pos + used;
            while q + 8 <= end {
                let dino = le32(data, q);
                let drec = usize::from(le16(data, q + 4));
                let dlen = name_len_at(q);
                let n = data.get(q + 8..q + 8 + dlen).unwrap_or_default();
                if dino != 0
                    && u64::from(dino) <= self.sb.inodes_count
                    && dlen > 0
                    && q + 8 + dlen <= end
                    && drec >= 8 + dlen
                    && drec % 4 == 0
                    && plausible_name(n)
                {
                    record(q, dino, n, out);
                    q += (8 + dlen).next_multiple_of(4);
                } else {
                    q += 4;
                }
            }
            pos = end;
        }
    }

    /// A directory record's length from its stored 16 bits (64 KiB blocks
    /// keep bits 16-17 in the low bits, and 0 or 65535 for a whole block).
    fn rec_len(&self, raw: u16) -> usize {
        if self.sb.block_size >= 65536 && (raw == 0 || raw == 65535) {
            65536
        } else {
            usize::from(raw & 0xFFFC) | (usize::from(raw & 3) << 16)
        }
    }

    /// Parses linear directory entries in `data` into `out`.
    fn parse_dirents(&self, dir: u64, data: &[u8], out: &mut Vec<DirEntry>) -> Result<(), FsError> {
        let filetype = self.sb.incompat & INCOMPAT_FILETYPE != 0;
        let mut pos = 0usize;
        while pos + 8 <= data.len() {
            let ino = le32(data, pos);
            let raw_rec = le16(data, pos + 4);
            let rec = self.rec_len(raw_rec);
            if rec < 8 || !rec.is_multiple_of(4) || pos + rec > data.len() {
                return Err(corrupt(format!(
                    "directory inode {dir}: record length {raw_rec} at offset {pos}"
                )));
            }
            let name_len = if filetype {
                usize::from(byte(data, pos + 6))
            } else {
                usize::from(le16(data, pos + 6))
            };
            if ino != 0 && name_len > 0 && 8 + name_len <= rec {
                let name = data.get(pos + 8..pos + 8 + name_len).unwrap_or_default();
                if name != b"." && name != b".." {
                    if out.len() >= crate::MAX_DIR_ENTRIES {
                        return Err(corrupt(format!(
                            "directory inode {dir} has more than {} entries",
                            crate::MAX_DIR_ENTRIES
                        )));
                    }
                    let kind = self.dirent_kind(byte(data, pos + 7), u64::from(ino));
                    out.push(DirEntry {
                        name: name.to_vec(),
                        id: NodeId(u64::from(ino)),
                        kind,
                    });
                }
            }
            pos += rec;
        }
        Ok(())
    }

    /// Disk blocks the node owns (data, extent tree or indirect blocks, and
    /// its extended-attribute block), as `(start, count)` runs in disk order
    /// of discovery, adjacent runs merged.
    ///
    /// # Errors
    /// [`FsError`] for unreadable or corrupt maps.
    pub fn blocks_of(&self, id: NodeId) -> Result<Vec<(u64, u64)>, FsError> {
        let inode = self.inode(id.0)?;
        let mut runs: Vec<(u64, u64)> = Vec::new();
        let mut visited: HashSet<u64> = HashSet::new();
        let acl = inode.file_acl();
        if acl != 0 && acl < self.sb.blocks_count {
            push_run(&mut runs, acl, 1)?;
        }
        if inode.flags() & FL_INLINE_DATA != 0 {
            return Ok(runs);
        }
        let kind = inode.kind();
        if kind == FileType::Symlink && self.is_fast_symlink(&inode) {
            return Ok(runs);
        }
        if !matches!(kind, FileType::File | FileType::Dir | FileType::Symlink) {
            return Ok(runs);
        }
        if inode.flags() & FL_EXTENTS != 0 {
            let root = inode.i_block().to_vec();
            self.walk_extents(&inode, &root, None, &mut visited, &mut runs)?;
        } else {
            let ib = inode.i_block();
            for i in 0..12 {
                let p = u64::from(le32(ib, i * 4));
                if p != 0 && p < self.sb.blocks_count {
                    push_run(&mut runs, p, 1)?;
                }
            }
            for level in 1..=3u32 {
                let p = u64::from(le32(ib, 48 + 4 * (level as usize - 1)));
                self.walk_indirect(p, level, &mut visited, &mut runs)?;
            }
        }
        Ok(runs)
    }

    fn walk_extents(
        &self,
        inode: &Inode,
        node: &[u8],
        expect: Option<u16>,
        visited: &mut HashSet<u64>,
        runs: &mut Vec<(u64, u64)>,
    ) -> Result<(), FsError> {
        let (entries, depth) = self.extent_header(inode, node)?;
        if let Some(d) = expect {
            if depth != d {
                return Err(corrupt(format!(
                    "inode {}: extent node depth {depth}, expected {d}",
                    inode.ino
                )));
            }
        }
        for i in 0..entries {
            let e = 12 + 12 * i;
            if depth == 0 {
                let raw_len = le16(node, e + 4);
                let len = u64::from(if raw_len > 32768 {
                    raw_len - 32768
                } else {
                    raw_len
                });
                let phys = u64::from(le32(node, e + 8)) | (u64::from(le16(node, e + 6)) << 32);
                if len == 0 {
                    continue;
                }
                if phys.saturating_add(len) > self.sb.blocks_count {
                    return Err(corrupt(format!(
                        "inode {}: extent at block {phys} (+{len}) beyond the filesystem",
                        inode.ino
                    )));
                }
                push_run(runs, phys, len)?;
            } else {
                let child = u64::from(le32(node, e + 4)) | (u64::from(le16(node, e + 8)) << 32);
                if child == 0 || !visited.insert(child) {
                    return Err(corrupt(format!(
                        "inode {}: extent block {child} repeated",
                        inode.ino
                    )));
                }
                let data = self.read_block(child)?;
                self.check_extent_block(inode, child, &data);
                push_run(runs, child, 1)?;
                self.walk_extents(inode, &data, Some(depth - 1), visited, runs)?;
            }
        }
        Ok(())
    }

    fn walk_indirect(
        &self,
        ptr: u64,
        level: u32,
        visited: &mut HashSet<u64>,
        runs: &mut Vec<(u64, u64)>,
    ) -> Result<(), FsError> {
        if ptr == 0 {
            return Ok(());
        }
        if !visited.insert(ptr) {
            return Err(corrupt(format!("indirect block {ptr} repeated")));
        }
        let block = self.read_block(ptr)?;
        push_run(runs, ptr, 1)?;
        for i in 0..block.len() / 4 {
            let p = u64::from(le32(&block, i * 4));
            if p == 0 {
                continue;
            }
            if p >= self.sb.blocks_count {
                return Err(corrupt(format!("block {p} beyond the filesystem")));
            }
            if level == 1 {
                push_run(runs, p, 1)?;
            } else {
                self.walk_indirect(p, level - 1, visited, runs)?;
            }
        }
        Ok(())
    }

    /// Whether `block` is marked in use in its group's block bitmap (groups
    /// whose bitmap is uninitialised read as free).
    ///
    /// # Errors
    /// [`FsError::Corrupt`] for a block beyond the filesystem or a bad
    /// bitmap location.
    pub fn block_in_use(&self, block: u64) -> Result<bool, FsError> {
        if block >= self.sb.blocks_count {
            return Err(corrupt(format!("block {block} beyond the filesystem")));
        }
        if block < self.sb.first_data_block {
            return Ok(true);
        }
        let rel = block - self.sb.first_data_block;
        let g = rel / self.sb.blocks_per_group;
        let bit = (rel % self.sb.blocks_per_group) / self.sb.cluster_ratio;
        let grp = self.group(g)?;
        if grp.flags & 0x2 != 0 {
            return Ok(false);
        }
        let bitmap = self.read_block(grp.block_bitmap)?;
        let b = bitmap
            .get(usize::try_from(bit / 8).unwrap_or(usize::MAX))
            .copied()
            .ok_or_else(|| corrupt("bitmap bit beyond the bitmap block"))?;
        Ok(b & (1 << (bit % 8)) != 0)
    }

    /// Whether lookups in directory `inode` ignore case: the `casefold`
    /// feature and flag, and not encrypted (then names are ciphertext and
    /// match only exactly).
    fn casefolded(&self, inode: &Inode) -> bool {
        self.sb.incompat & INCOMPAT_CASEFOLD != 0
            && inode.flags() & FL_CASEFOLD != 0
            && inode.flags() & FL_ENCRYPT == 0
    }

    fn is_fast_symlink(&self, inode: &Inode) -> bool {
        // As the kernel decides: no data blocks besides the xattr block.
        if inode.flags() & FL_INLINE_DATA != 0 {
            return false;
        }
        let acl_sectors = if inode.file_acl() != 0 {
            self.sb.block_size / 512
        } else {
            0
        };
        inode.i_blocks() <= acl_sectors
    }
}

/// Whether two names are equal in a casefolded directory. ASCII letters
/// fold as in the kernel; other characters of valid UTF-8 names fold by
/// Unicode lowercase mapping, which approximates the kernel's utf8-12.1
/// NFD case folding (no canonical decomposition, no multi-character folds
/// such as "ß" = "ss"). Invalid UTF-8 compares exactly, as the kernel's
/// non-strict mode does.
fn casefold_eq(a: &[u8], b: &[u8]) -> bool {
    if a == b {
        return true;
    }
    if a.is_ascii() && b.is_ascii() {
        return a.eq_ignore_ascii_case(b);
    }
    match (std::str::from_utf8(a), std::str::from_utf8(b)) {
        (Ok(x), Ok(y)) => x
            .chars()
            .flat_map(char::to_lowercase)
            .eq(y.chars().flat_map(char::to_lowercase)),
        _ => false,
    }
}

fn push_run(runs: &mut Vec<(u64, u64)>, start: u64, count: u64) -> Result<(), FsError> {
    if let Some(last) = runs.last_mut() {
        if last.0.saturating_add(last.1) == start {
            last.1 += count;
            return Ok(());
        }
    }
    if runs.len() >= MAX_RUNS {
        return Err(corrupt("too many block runs"));
    }
    runs.push((start, count));
    Ok(())
}

impl FileSystem for Ext {
    fn kind(&self) -> &'static str {
        self.kind
    }

    fn xattrs(&self, id: NodeId) -> Result<Vec<crate::xattr::Xattr>, FsError> {
        self.xattrs_of(&self.inode(Self::inode_number(id))?)
    }

    fn byte_ranges(&self, id: NodeId) -> Result<Vec<(u64, u64)>, FsError> {
        let bs = self.sb.block_size;
        let mut out = Vec::new();
        for (block, count) in self.blocks_of(id)? {
            let (Some(o), Some(l), Some(end)) = (
                block.checked_mul(bs),
                count.checked_mul(bs),
                block.checked_add(count),
            ) else {
                return Err(FsError::Corrupt(format!("block run {block}+{count}")));
            };
            let Some(ov) = &self.overlay else {
                out.push((o, l));
                continue;
            };
            // Replayed blocks live at their journal copies.
            let mut pos = block;
            for (&b, r) in ov.blocks.range(block..end) {
                if b > pos {
                    out.push((pos.saturating_mul(bs), (b - pos).saturating_mul(bs)));
                }
                out.push((r.at, bs));
                pos = b.saturating_add(1);
            }
            if pos < end {
                out.push((pos.saturating_mul(bs), (end - pos).saturating_mul(bs)));
            }
            if out.len() > MAX_RUNS {
                return Err(corrupt("too many block runs"));
            }
        }
        Ok(out)
    }

    fn find_entry(&self, dir: NodeId, name: &[u8]) -> Result<Option<DirEntry>, FsError> {
        let entries = self.read_dir(dir)?;
        let fold = self.casefolded(&self.inode(dir.0)?);
        // Directory order, as the kernel's linear search; in a casefolded
        // directory an exact name also matches folded.
        Ok(entries.into_iter().find(|e| {
            if fold {
                casefold_eq(&e.name, name)
            } else {
                e.name == name
            }
        }))
    }

    fn root(&self) -> NodeId {
        NodeId(2)
    }

    fn metadata(&self, id: NodeId) -> Result<Metadata, FsError> {
        let i = self.inode(id.0)?;
        let r = &i.raw;
        let crtime = i
            .has_extra(148)
            .then(|| i.time(144, Some(148)))
            .and_then(nonzero_time);
        Ok(Metadata {
            id,
            kind: i.kind(),
            size: i.size(),
            mode: u32::from(i.mode()),
            uid: u32::from(le16(r, 2)) | (u32::from(le16(r, 120)) << 16),
            gid: u32::from(le16(r, 24)) | (u32::from(le16(r, 122)) << 16),
            nlink: u32::from(le16(r, 26)),
            mtime: i.time(16, Some(136)),
            atime: Some(i.time(8, Some(140))),
            ctime: Some(i.time(12, Some(132))),
            crtime,
        })
    }

    fn read_dir(&self, id: NodeId) -> Result<Vec<DirEntry>, FsError> {
        let inode = self.inode(id.0)?;
        if inode.kind() != FileType::Dir {
            return Err(FsError::NotADirectory(format!("inode {}", id.0)));
        }
        if inode.flags() & FL_ENCRYPT != 0 {
            self.finding(format!(
                "directory inode {} is encrypted: its entry names are ciphertext",
                id.0
            ));
        }
        let mut out = Vec::new();
        if inode.flags() & FL_INLINE_DATA != 0 {
            let ib = inode.i_block();
            self.parse_dirents(id.0, ib.get(4..).unwrap_or_default(), &mut out)?;
            let extra = self.inline_xattr(&inode);
            self.parse_dirents(id.0, &extra, &mut out)?;
            return Ok(out);
        }
        self.for_each_dir_block(&inode, |_, data| {
            // htree index blocks parse as empty linear entries.
            self.parse_dirents(id.0, data, &mut out)
        })?;
        Ok(out)
    }

    fn deleted_entries(&self, id: NodeId) -> Result<Vec<crate::Deleted>, FsError> {
        let inode = self.inode(id.0)?;
        if inode.kind() != FileType::Dir {
            return Err(FsError::NotADirectory(format!("inode {}", id.0)));
        }
        let mut out = Vec::new();
        if inode.flags() & FL_INLINE_DATA != 0 {
            // Inline directories live in the inode; their slack is not searched.
            return Ok(out);
        }
        let bs = self.sb.block_size;
        // An htree directory's first block is its index root: the slack of
        // its ".." record holds the index, not deleted entries.
        let mut htree_root = inode.flags() & FL_INDEX != 0;
        self.for_each_dir_block(&inode, |phys, data| {
            self.deleted_dirents(data, phys.saturating_mul(bs), htree_root, &mut out);
            htree_root = false;
            Ok(())
        })?;
        Ok(out)
    }

    fn read(&self, id: NodeId, offset: u64, buf: &mut [u8]) -> Result<usize, FsError> {
        let inode = self.inode(id.0)?;
        if inode.flags() & FL_ENCRYPT != 0 && inode.kind() != FileType::Dir {
            let what = if inode.kind() == FileType::Symlink {
                "symlink target"
            } else {
                "file contents"
            };
            return Err(FsError::Encrypted {
                what: format!("inode {} {what}", id.0),
            });
        }
        let size = inode.size();
        if offset >= size || buf.is_empty() {
            return Ok(0);
        }
        let want = usize::try_from((size - offset).min(buf.len() as u64)).unwrap_or(buf.len());
        if inode.flags() & FL_INLINE_DATA != 0 {
            let data = self.inline_data(&inode);
            let start = usize::try_from(offset).unwrap_or(usize::MAX);
            let dst = buf.get_mut(..want).unwrap_or_default();
            for (i, d) in dst.iter_mut().enumerate() {
                *d = data.get(start.saturating_add(i)).copied().unwrap_or(0);
            }
            return Ok(want);
        }
        if inode.kind() == FileType::Symlink && self.is_fast_symlink(&inode) {
            let data = inode.i_block();
            let start = usize::try_from(offset).unwrap_or(usize::MAX);
            let dst = buf.get_mut(..want).unwrap_or_default();
            for (i, d) in dst.iter_mut().enumerate() {
                *d = data.get(start.saturating_add(i)).copied().unwrap_or(0);
            }
            return Ok(want);
        }
        let bs = self.sb.block_size;
        let mut done = 0usize;
        while done < want {
            let pos = offset + done as u64;
            let lblk = pos / bs;
            let within = pos % bs;
            let m = self.map(&inode, lblk)?;
            let avail = m.run.saturating_mul(bs).saturating_sub(within);
            let n = usize::try_from(avail.min((want - done) as u64)).unwrap_or(want - done);
            let n = n.max(1).min(want - done);
            let dst = buf
                .get_mut(done..done + n)
                .ok_or_else(|| corrupt("read window"))?;
            match m.phys {
                None => dst.fill(0),
                Some(p) => {
                    let at = p.saturating_mul(bs).saturating_add(within);
                    self.src
                        .read_zero_padded(at, dst)
                        .map_err(|error| FsError::Io { offset: at, error })?;
                }
            }
            done += n;
        }
        Ok(done)
    }

    fn read_link(&self, id: NodeId) -> Result<Vec<u8>, FsError> {
        let inode = self.inode(id.0)?;
        if inode.kind() != FileType::Symlink {
            return Err(corrupt(format!("inode {} is not a symlink", id.0)));
        }
        let size = inode.size();
        if size > MAX_LINK {
            return Err(corrupt(format!("symlink inode {} of {size} bytes", id.0)));
        }
        let mut buf = vec![0u8; usize::try_from(size).unwrap_or(0)];
        let n = self.read(id, 0, &mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }
}
