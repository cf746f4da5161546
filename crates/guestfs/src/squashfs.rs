//! squashfs 4.0 reader (read-only), written from the on-disk layout in
//! squashfs-tools' `squashfs_fs.h` and the kernel's `fs/squashfs/`.
//!
//! Layout: a 96-byte superblock; data and fragment blocks; then tables of
//! *metadata blocks* (a 2-byte header — bit 15 set means stored — and at
//! most 8 KiB of payload once decoded): inodes, directories, fragment
//! entries, the uid/gid table, extended attributes. Inodes and directory
//! listings run on across metadata block boundaries.
//!
//! A [`NodeId`] is the inode *reference*: the inode's metadata block,
//! relative to the inode table, shifted left 16 bits, plus its offset
//! inside the decoded block — what directory entries and the superblock's
//! root hold.
//!
//! Bounds: every table and block must lie below the superblock's
//! `bytes_used`, which must fit in the source; metadata blocks decode to at
//! most 8 KiB, data and fragment blocks to at most the block size; a
//! directory header covers at most 256 entries and a directory at most
//! [`MAX_DIR_ENTRIES`]; a file's block list at most [`MAX_FILE_BLOCKS`]
//! entries; symlink targets at most [`MAX_SYMLINK`] bytes. Metadata reads
//! only move forward and stop at their table's end, so no input loops.
//!
//! Compressors: gzip (zlib), xz, lzma, zstd, lz4 and lzo.

use std::sync::{Arc, Mutex};

use qvet_image::ByteSource;

use crate::bytes::{le16, le32};
use crate::xattr::Xattr;
use crate::MAX_DIR_ENTRIES;
use crate::{read_bytes, DirEntry, FileSystem, FileType, FsError, Metadata, NodeId};

mod cache;
mod decompress;
mod lzo;
mod superblock;

use cache::Lru;
pub use decompress::Compressor;
pub use superblock::Superblock;

/// Decoded size of a metadata block.
pub const METADATA_SIZE: usize = 8192;
/// Entries of a file's block list read (with 128 KiB blocks, a 512 GiB
/// file); larger files are refused as unsupported.
pub const MAX_FILE_BLOCKS: u64 = 1 << 22;
/// Longest symlink target.
pub const MAX_SYMLINK: usize = 65_535;
/// Largest extended attribute value (Linux `XATTR_SIZE_MAX`).
pub const MAX_XATTR_VALUE: usize = 65_536;
/// Bytes of names and values of one node's extended attributes (out-of-line
/// values can be shared, so a small image could otherwise name the same
/// large value many times).
pub const MAX_XATTR_TOTAL: usize = 1 << 20;
/// Entries one directory header may announce.
const DIR_HEADER_MAX: u32 = 256;
/// Decoded metadata blocks kept.
const META_CACHE: usize = 64;
/// Decoded data and fragment blocks kept.
const DATA_CACHE: usize = 8;
/// Block lists of files kept.
const LIST_CACHE: usize = 8;
/// "No fragment", "no xattr".
const INVALID: u32 = 0xffff_ffff;
/// Superblock table pointer meaning "absent".
const ABSENT: u64 = u64::MAX;
/// Data/fragment size word: bit 24 set means stored.
const BLOCK_STORED: u32 = 1 << 24;

/// Builds a [`FsError::Corrupt`].
pub(crate) fn corrupt(what: impl Into<String>) -> FsError {
    FsError::Corrupt(what.into())
}

pub(crate) fn le64(b: &[u8], at: usize) -> u64 {
    b.get(at..at.saturating_add(8))
        .and_then(|s| s.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

/// One decoded metadata block and where the next one starts.
#[derive(Debug)]
struct MetaBlock {
    data: Vec<u8>,
    next: u64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A decoded inode.
#[derive(Debug, Clone)]
pub struct Inode {
    /// Inode type as stored (1–14).
    pub itype: u16,
    /// Permission bits as stored.
    pub mode: u16,
    /// Index into the uid/gid table.
    pub uid_idx: u16,
    /// Index into the uid/gid table.
    pub gid_idx: u16,
    /// Modification time.
    pub mtime: u32,
    /// Inode number.
    pub number: u32,
    /// Link count (1 for basic files).
    pub nlink: u32,
    /// Extended attribute index, [`u32::MAX`] when none.
    pub xattr: u32,
    /// Type-specific part.
    pub body: Body,
}

/// What an inode holds besides its common header.
#[derive(Debug, Clone)]
pub enum Body {
    /// Directory listing location.
    Dir {
        /// Metadata block of the listing, relative to the directory table.
        start_block: u32,
        /// Offset within the decoded block.
        offset: u16,
        /// Listing size plus 3, as stored.
        file_size: u32,
        /// Parent inode number.
        parent: u32,
    },
    /// Regular file.
    File {
        /// Absolute offset of the first data block.
        blocks_start: u64,
        /// Size in bytes.
        size: u64,
        /// Fragment index, [`u32::MAX`] when the tail is a full block.
        fragment: u32,
        /// Offset of the tail inside the fragment block.
        frag_offset: u32,
        /// Bytes saved by sparse blocks (extended inodes).
        sparse: u64,
        /// Where the block list starts: (metadata block, offset) in the
        /// inode table.
        list_at: (u64, usize),
    },
    /// Symbolic link.
    Symlink {
        /// Target.
        target: Vec<u8>,
    },
    /// Block or character device.
    Device {
        /// Device number as stored (`new_encode_dev`).
        rdev: u32,
    },
    /// FIFO or socket.
    Ipc,
}

impl Inode {
    /// The file type.
    pub fn kind(&self) -> FileType {
        type_of(self.itype)
    }
}

fn type_of(t: u16) -> FileType {
    match t {
        1 | 8 => FileType::Dir,
        2 | 9 => FileType::File,
        3 | 10 => FileType::Symlink,
        4 | 11 => FileType::BlockDev,
        5 | 12 => FileType::CharDev,
        6 | 13 => FileType::Fifo,
        7 | 14 => FileType::Socket,
        _ => FileType::Unknown,
    }
}

fn type_bits(k: FileType) -> u32 {
    match k {
        FileType::Dir => 0o040_000,
        FileType::File => 0o100_000,
        FileType::Symlink => 0o120_000,
        FileType::BlockDev => 0o060_000,
        FileType::CharDev => 0o020_000,
        FileType::Fifo => 0o010_000,
        FileType::Socket => 0o140_000,
        FileType::Unknown => 0,
    }
}

/// A file's block list, with each block's absolute start.
#[derive(Debug)]
struct BlockList {
    words: Vec<u32>,
    starts: Vec<u64>,
}

/// A squashfs 4.0 filesystem.
#[derive(Debug)]
pub struct Squashfs {
    src: Arc<dyn ByteSource>,
    sb: Superblock,
    ids: Vec<u32>,
    /// Absolute offsets of the metadata blocks holding fragment entries.
    frag_index: Vec<u64>,
    /// Xattr table start and the metadata blocks holding xattr id entries.
    xattr: Option<(u64, u32, Vec<u64>)>,
    meta: Mutex<Lru<u64, MetaBlock>>,
    data: Mutex<Lru<(u64, u32), Vec<u8>>>,
    lists: Mutex<Lru<NodeId, BlockList>>,
}

/// Reads a forward-only stream of bytes from a metadata table.
struct Cursor<'a> {
    fs: &'a Squashfs,
    end: u64,
    block: Arc<MetaBlock>,
    at: u64,
    off: usize,
}

impl Cursor<'_> {
    fn read(&mut self, out: &mut [u8]) -> Result<(), FsError> {
        let mut done = 0usize;
        while done < out.len() {
            if self.off >= self.block.data.len() {
                let next = self.block.next;
                self.block = self.fs.meta_block(next, self.end)?;
                self.at = next;
                self.off = 0;
            }
            let avail = self.block.data.get(self.off..).unwrap_or(&[]);
            let n = avail.len().min(out.len() - done);
            if let (Some(dst), Some(src)) = (out.get_mut(done..done + n), avail.get(..n)) {
                dst.copy_from_slice(src);
            }
            done += n;
            self.off += n;
        }
        Ok(())
    }

    fn take(&mut self, n: usize) -> Result<Vec<u8>, FsError> {
        let mut v = vec![0u8; n];
        self.read(&mut v)?;
        Ok(v)
    }

    fn u32(&mut self) -> Result<u32, FsError> {
        let mut b = [0u8; 4];
        self.read(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    /// Where the next byte comes from: (block, offset), normalised so the
    /// offset lies inside its block.
    fn position(&self) -> (u64, usize) {
        if self.off >= self.block.data.len() {
            (self.block.next, 0)
        } else {
            (self.at, self.off)
        }
    }
}

impl Squashfs {
    /// Opens a squashfs 4.0 image.
    ///
    /// # Errors
    /// [`FsError::NotThisFs`] ("squashfs") without the `hsqs` magic;
    /// [`FsError::Unsupported`] or [`FsError::Corrupt`] for a superblock or
    /// table this reader does not accept.
    pub fn open(src: Arc<dyn ByteSource>) -> Result<Self, FsError> {
        if src.len() < 96 {
            return Err(FsError::NotThisFs("squashfs"));
        }
        let b = read_bytes(src.as_ref(), 0, 96)?;
        let sb = Superblock::parse(&b, src.len())?;
        let mut fs = Self {
            src,
            sb,
            ids: Vec::new(),
            frag_index: Vec::new(),
            xattr: None,
            meta: Mutex::new(Lru::new(META_CACHE)),
            data: Mutex::new(Lru::new(DATA_CACHE)),
            lists: Mutex::new(Lru::new(LIST_CACHE)),
        };
        let sb = fs.sb.clone();
        // uid/gid table: no_ids u32s in metadata blocks indexed at
        // id_table_start.
        let id_bytes = usize::from(sb.no_ids) * 4;
        let index = fs.table_index(sb.id_table_start, id_bytes, "id")?;
        let raw = fs.read_indexed(&index, id_bytes)?;
        fs.ids = raw
            .chunks_exact(4)
            .map(|c| le32(c, 0))
            .collect::<Vec<u32>>();
        if sb.fragments > 0 {
            let bytes = usize::try_from(u64::from(sb.fragments) * 16)
                .map_err(|_| corrupt("fragment table size"))?;
            fs.frag_index = fs.table_index(sb.fragment_table_start, bytes, "fragment")?;
        }
        if sb.xattr_id_table_start != ABSENT && sb.flags & (1 << 9) == 0 {
            let h = fs.raw(sb.xattr_id_table_start, 16)?;
            let (start, count) = (le64(&h, 0), le32(&h, 8));
            if start >= sb.bytes_used {
                return Err(corrupt(format!(
                    "squashfs xattr table at {start:#x} outside the image"
                )));
            }
            let bytes = usize::try_from(u64::from(count) * 16)
                .map_err(|_| corrupt("xattr id table size"))?;
            let index = fs.table_index(sb.xattr_id_table_start + 16, bytes, "xattr id")?;
            fs.xattr = Some((start, count, index));
        }
        Ok(fs)
    }

    /// The superblock.
    pub fn superblock(&self) -> &Superblock {
        &self.sb
    }

    /// The compressor the image uses.
    pub fn compressor(&self) -> Compressor {
        self.sb.compressor
    }

    /// `len` raw bytes at `at`, which must lie below `bytes_used`.
    fn raw(&self, at: u64, len: usize) -> Result<Vec<u8>, FsError> {
        let end = at
            .checked_add(len as u64)
            .ok_or_else(|| corrupt("offset overflow"))?;
        if end > self.sb.bytes_used {
            return Err(corrupt(format!(
                "squashfs read {at:#x}+{len} past the end of the image ({} bytes)",
                self.sb.bytes_used
            )));
        }
        read_bytes(self.src.as_ref(), at, len)
    }

    /// The pointers (u64, absolute) to the metadata blocks of a table of
    /// `bytes` bytes whose index starts at `at`.
    fn table_index(&self, at: u64, bytes: usize, what: &str) -> Result<Vec<u64>, FsError> {
        let blocks = bytes.div_ceil(METADATA_SIZE);
        let idx_len = blocks * 8;
        if at.saturating_add(idx_len as u64) > self.sb.bytes_used {
            return Err(corrupt(format!(
                "squashfs {what} table index at {at:#x} ({blocks} blocks) past the image end"
            )));
        }
        let raw = self.raw(at, idx_len)?;
        let ptrs: Vec<u64> = raw.chunks_exact(8).map(|c| le64(c, 0)).collect();
        if let Some(p) = ptrs.iter().find(|&&p| p >= self.sb.bytes_used) {
            return Err(corrupt(format!(
                "squashfs {what} table block at {p:#x} outside the image"
            )));
        }
        Ok(ptrs)
    }

    /// Reads the first `bytes` bytes of a table whose metadata blocks are
    /// listed in `index` (each block is read whole, as the index says).
    fn read_indexed(&self, index: &[u64], bytes: usize) -> Result<Vec<u8>, FsError> {
        let mut out = Vec::with_capacity(bytes.min(index.len() * METADATA_SIZE));
        for &p in index {
            if out.len() >= bytes {
                break;
            }
            let b = self.meta_block(p, self.sb.bytes_used)?;
            out.extend_from_slice(&b.data);
        }
        if out.len() < bytes {
            return Err(corrupt("squashfs table shorter than its count"));
        }
        out.truncate(bytes);
        Ok(out)
    }

    /// Decodes the metadata block at absolute offset `at`, which with its
    /// payload must end at or before `end`.
    fn meta_block(&self, at: u64, end: u64) -> Result<Arc<MetaBlock>, FsError> {
        if let Some(b) = lock(&self.meta).get(at) {
            if b.next <= end {
                return Ok(b);
            }
        }
        if at.saturating_add(2) > end {
            return Err(corrupt(format!(
                "squashfs metadata block at {at:#x} past its table's end {end:#x}"
            )));
        }
        let h = le16(&self.raw(at, 2)?, 0);
        let size = usize::from(h & 0x7fff);
        if size == 0 || size > METADATA_SIZE {
            return Err(corrupt(format!(
                "squashfs metadata block at {at:#x} of {size} bytes"
            )));
        }
        let next = at + 2 + size as u64;
        if next > end {
            return Err(corrupt(format!(
                "squashfs metadata block at {at:#x} runs past its table's end {end:#x}"
            )));
        }
        let payload = self.raw(at + 2, size)?;
        let data = if h & 0x8000 != 0 {
            payload
        } else {
            self.sb
                .compressor
                .decompress(&payload, METADATA_SIZE)
                .map_err(|e| corrupt(format!("squashfs metadata block at {at:#x}: {e}")))?
        };
        if data.is_empty() {
            return Err(corrupt(format!(
                "squashfs metadata block at {at:#x} is empty"
            )));
        }
        let b = Arc::new(MetaBlock { data, next });
        lock(&self.meta).put(at, Arc::clone(&b));
        Ok(b)
    }

    /// A cursor at (`block` relative to `table`, `off`), bounded by `end`.
    fn cursor(&self, table: u64, block: u64, off: usize, end: u64) -> Result<Cursor<'_>, FsError> {
        let at = table
            .checked_add(block)
            .filter(|&a| a < end)
            .ok_or_else(|| {
                corrupt(format!(
                    "squashfs metadata reference {block:#x} outside its table"
                ))
            })?;
        let b = self.meta_block(at, end)?;
        if off >= b.data.len() {
            return Err(corrupt(format!(
                "squashfs offset {off} past a {}-byte metadata block",
                b.data.len()
            )));
        }
        Ok(Cursor {
            fs: self,
            end,
            block: b,
            at,
            off,
        })
    }

    fn inode_cursor(&self, id: NodeId) -> Result<Cursor<'_>, FsError> {
        let (block, off) = (id.0 >> 16, (id.0 & 0xffff) as usize);
        self.cursor(
            self.sb.inode_table_start,
            block,
            off,
            self.sb.directory_table_start,
        )
    }

    /// Decodes the inode `id` refers to.
    ///
    /// # Errors
    /// [`FsError::Corrupt`] for references outside the inode table or
    /// malformed inodes.
    pub fn inode(&self, id: NodeId) -> Result<Inode, FsError> {
        let mut c = self.inode_cursor(id)?;
        let h = c.take(16)?;
        let itype = le16(&h, 0);
        let mut ino = Inode {
            itype,
            mode: le16(&h, 2),
            uid_idx: le16(&h, 4),
            gid_idx: le16(&h, 6),
            mtime: le32(&h, 8),
            number: le32(&h, 12),
            nlink: 1,
            xattr: INVALID,
            body: Body::Ipc,
        };
        match itype {
            1 => {
                let b = c.take(16)?;
                ino.nlink = le32(&b, 4);
                ino.body = Body::Dir {
                    start_block: le32(&b, 0),
                    file_size: u32::from(le16(&b, 8)),
                    offset: le16(&b, 10),
                    parent: le32(&b, 12),
                };
            }
            8 => {
                let b = c.take(24)?;
                ino.nlink = le32(&b, 0);
                ino.xattr = le32(&b, 20);
                ino.body = Body::Dir {
                    file_size: le32(&b, 4),
                    start_block: le32(&b, 8),
                    parent: le32(&b, 12),
                    offset: le16(&b, 18),
                };
            }
            2 => {
                let b = c.take(16)?;
                ino.body = Body::File {
                    blocks_start: u64::from(le32(&b, 0)),
                    fragment: le32(&b, 4),
                    frag_offset: le32(&b, 8),
                    size: u64::from(le32(&b, 12)),
                    sparse: 0,
                    list_at: c.position(),
                };
            }
            9 => {
                let b = c.take(40)?;
                ino.nlink = le32(&b, 24);
                ino.xattr = le32(&b, 36);
                ino.body = Body::File {
                    blocks_start: le64(&b, 0),
                    size: le64(&b, 8),
                    sparse: le64(&b, 16),
                    fragment: le32(&b, 28),
                    frag_offset: le32(&b, 32),
                    list_at: c.position(),
                };
            }
            3 | 10 => {
                let b = c.take(8)?;
                ino.nlink = le32(&b, 0);
                let len = le32(&b, 4) as usize;
                if len > MAX_SYMLINK {
                    return Err(corrupt(format!("squashfs symlink target of {len} bytes")));
                }
                let target = c.take(len)?;
                if itype == 10 {
                    ino.xattr = c.u32()?;
                }
                ino.body = Body::Symlink { target };
            }
            4 | 5 | 11 | 12 => {
                let b = c.take(8)?;
                ino.nlink = le32(&b, 0);
                if itype > 7 {
                    ino.xattr = c.u32()?;
                }
                ino.body = Body::Device { rdev: le32(&b, 4) };
            }
            6 | 7 | 13 | 14 => {
                ino.nlink = c.u32()?;
                if itype > 7 {
                    ino.xattr = c.u32()?;
                }
            }
            t => return Err(corrupt(format!("squashfs inode type {t} at {:#x}", id.0))),
        }
        Ok(ino)
    }

    fn id(&self, idx: u16) -> Result<u32, FsError> {
        self.ids
            .get(usize::from(idx))
            .copied()
            .ok_or_else(|| corrupt(format!("squashfs uid/gid index {idx} past the id table")))
    }

    /// Device number (`st_rdev` as the kernel encodes it) of a device node.
    ///
    /// # Errors
    /// As [`Squashfs::inode`]; [`FsError::Unsupported`] for other nodes.
    pub fn rdev(&self, id: NodeId) -> Result<u32, FsError> {
        match self.inode(id)?.body {
            Body::Device { rdev } => Ok(rdev),
            _ => Err(FsError::Unsupported("not a device node".into())),
        }
    }

    /// Number of data blocks in the block list of a file.
    fn block_count(&self, size: u64, fragment: u32) -> u64 {
        let bs = u64::from(self.sb.block_size);
        if fragment == INVALID {
            size.div_ceil(bs)
        } else {
            size / bs
        }
    }

    /// The block list of file `id`, through the cache.
    fn block_list(&self, id: NodeId, ino: &Inode) -> Result<Arc<BlockList>, FsError> {
        let Body::File {
            blocks_start,
            size,
            fragment,
            list_at,
            ..
        } = ino.body
        else {
            return Err(FsError::Unsupported("read of a non-file".into()));
        };
        if let Some(l) = lock(&self.lists).get(id) {
            return Ok(l);
        }
        let n = self.block_count(size, fragment);
        if n > MAX_FILE_BLOCKS {
            return Err(FsError::Unsupported(format!(
                "squashfs file of {n} blocks (more than {MAX_FILE_BLOCKS})"
            )));
        }
        let n = n as usize;
        let mut words = Vec::new();
        let mut starts = Vec::new();
        let mut at = blocks_start;
        if n > 0 {
            let mut c = Cursor {
                fs: self,
                end: self.sb.directory_table_start,
                block: self.meta_block(list_at.0, self.sb.directory_table_start)?,
                at: list_at.0,
                off: list_at.1,
            };
            for _ in 0..n {
                let w = c.u32()?;
                let len = u64::from(w & !BLOCK_STORED);
                if len > u64::from(self.sb.block_size) {
                    return Err(corrupt(format!(
                        "squashfs data block of {len} bytes (block size {})",
                        self.sb.block_size
                    )));
                }
                words.push(w);
                starts.push(at);
                at = at.saturating_add(len);
            }
            if at > self.sb.bytes_used {
                return Err(corrupt(format!(
                    "squashfs file data {blocks_start:#x}..{at:#x} past the image end"
                )));
            }
        }
        let l = Arc::new(BlockList { words, starts });
        lock(&self.lists).put(id, Arc::clone(&l));
        Ok(l)
    }

    /// Decodes the data or fragment block at `at` with size word `word`
    /// (`None` for a sparse block).
    fn data_block(&self, at: u64, word: u32) -> Result<Arc<Vec<u8>>, FsError> {
        if let Some(b) = lock(&self.data).get((at, word)) {
            return Ok(b);
        }
        let len = (word & !BLOCK_STORED) as usize;
        let bs = self.sb.block_size as usize;
        if len > bs {
            return Err(corrupt(format!("squashfs data block of {len} bytes")));
        }
        let raw = self.raw(at, len)?;
        let data = if word & BLOCK_STORED != 0 {
            raw
        } else {
            self.sb
                .compressor
                .decompress(&raw, bs)
                .map_err(|e| corrupt(format!("squashfs data block at {at:#x}: {e}")))?
        };
        let b = Arc::new(data);
        lock(&self.data).put((at, word), Arc::clone(&b));
        Ok(b)
    }

    /// Fragment entry `idx`: (block start, size word).
    fn fragment(&self, idx: u32) -> Result<(u64, u32), FsError> {
        if idx >= self.sb.fragments {
            return Err(corrupt(format!(
                "squashfs fragment {idx} of {}",
                self.sb.fragments
            )));
        }
        let byte = idx as usize * 16;
        let ptr = self
            .frag_index
            .get(byte / METADATA_SIZE)
            .copied()
            .ok_or_else(|| corrupt("squashfs fragment index"))?;
        let b = self.meta_block(ptr, self.sb.bytes_used)?;
        let e = b
            .data
            .get(byte % METADATA_SIZE..byte % METADATA_SIZE + 16)
            .ok_or_else(|| corrupt(format!("squashfs fragment entry {idx} missing")))?;
        let (start, word) = (le64(e, 0), le32(e, 8));
        if start.saturating_add(u64::from(word & !BLOCK_STORED)) > self.sb.bytes_used {
            return Err(corrupt(format!(
                "squashfs fragment {idx} at {start:#x} past the image end"
            )));
        }
        Ok((start, word))
    }

    /// The decoded directory listing of directory inode `ino`.
    fn listing(&self, ino: &Inode) -> Result<Vec<DirEntry>, FsError> {
        let Body::Dir {
            start_block,
            offset,
            file_size,
            ..
        } = ino.body
        else {
            return Err(FsError::NotADirectory(format!(
                "squashfs inode {}",
                ino.number
            )));
        };
        let mut out = Vec::new();
        // The size counts 3 bytes for "." and "..".
        let mut left = u64::from(file_size.saturating_sub(3));
        if left == 0 {
            return Ok(out);
        }
        let mut c = self.cursor(
            self.sb.directory_table_start,
            u64::from(start_block),
            usize::from(offset),
            self.sb.bytes_used,
        )?;
        while left > 0 {
            if left < 12 {
                return Err(corrupt("squashfs directory ends inside a header"));
            }
            let h = c.take(12)?;
            left -= 12;
            let count = le32(&h, 0).saturating_add(1);
            let block = le32(&h, 4);
            if count > DIR_HEADER_MAX {
                return Err(corrupt(format!(
                    "squashfs directory header of {count} entries"
                )));
            }
            for _ in 0..count {
                if left < 8 {
                    return Err(corrupt("squashfs directory ends inside an entry"));
                }
                let e = c.take(8)?;
                let name_len = usize::from(le16(&e, 6)) + 1;
                if name_len > 256 || left < 8 + name_len as u64 {
                    return Err(corrupt(format!(
                        "squashfs directory entry name of {name_len} bytes"
                    )));
                }
                left -= 8 + name_len as u64;
                let name = c.take(name_len)?;
                if name.contains(&b'/') || name == b"." || name == b".." || name.contains(&0) {
                    return Err(corrupt(format!(
                        "squashfs directory entry named {:?}",
                        String::from_utf8_lossy(&name)
                    )));
                }
                if out.len() >= MAX_DIR_ENTRIES {
                    return Err(corrupt("squashfs directory has too many entries"));
                }
                out.push(DirEntry {
                    name,
                    id: NodeId(u64::from(block) << 16 | u64::from(le16(&e, 0))),
                    kind: type_of(le16(&e, 4)),
                });
            }
        }
        Ok(out)
    }

    /// Extended attributes at xattr index `idx`.
    fn xattrs_at(&self, idx: u32) -> Result<Vec<Xattr>, FsError> {
        let Some((start, count, index)) = &self.xattr else {
            return Err(corrupt("squashfs inode has xattrs but no xattr table"));
        };
        if idx >= *count {
            return Err(corrupt(format!("squashfs xattr index {idx} of {count}")));
        }
        let byte = idx as usize * 16;
        let ptr = index
            .get(byte / METADATA_SIZE)
            .copied()
            .ok_or_else(|| corrupt("squashfs xattr id index"))?;
        let b = self.meta_block(ptr, self.sb.bytes_used)?;
        let e = b
            .data
            .get(byte % METADATA_SIZE..byte % METADATA_SIZE + 16)
            .ok_or_else(|| corrupt(format!("squashfs xattr id {idx} missing")))?;
        let (xref, n) = (le64(e, 0), le32(e, 8));
        if n as usize > crate::xattr::MAX_ENTRIES {
            return Err(corrupt(format!("squashfs xattr set of {n} entries")));
        }
        let end = self.sb.bytes_used;
        let mut c = self.cursor(*start, xref >> 16, (xref & 0xffff) as usize, end)?;
        let mut out = Vec::new();
        let mut total = 0usize;
        for _ in 0..n {
            let h = c.take(4)?;
            let (ty, name_len) = (le16(&h, 0), usize::from(le16(&h, 2)));
            let prefix: &[u8] = match ty & 0xff {
                0 => b"user.",
                1 => b"trusted.",
                2 => b"security.",
                t => return Err(corrupt(format!("squashfs xattr prefix {t}"))),
            };
            let mut name = prefix.to_vec();
            name.extend_from_slice(&c.take(name_len)?);
            let vlen = c.u32()? as usize;
            if vlen > MAX_XATTR_VALUE {
                return Err(corrupt(format!("squashfs xattr value of {vlen} bytes")));
            }
            let value = if ty & 0x100 != 0 {
                // Out of line: the value is a reference to (size, value).
                let r = c.take(8)?;
                let vref = le64(&r, 0);
                let mut v = self.cursor(*start, vref >> 16, (vref & 0xffff) as usize, end)?;
                let len = v.u32()? as usize;
                if len > MAX_XATTR_VALUE {
                    return Err(corrupt(format!("squashfs xattr value of {len} bytes")));
                }
                v.take(len)?
            } else {
                c.take(vlen)?
            };
            total += name.len() + value.len();
            if total > MAX_XATTR_TOTAL {
                return Err(corrupt(format!(
                    "squashfs xattr set {idx} holds more than {MAX_XATTR_TOTAL} bytes"
                )));
            }
            out.push(Xattr { name, value });
        }
        Ok(out)
    }

    /// Volume byte ranges of a file's data blocks and fragment block.
    fn ranges(&self, id: NodeId) -> Result<Vec<(u64, u64)>, FsError> {
        let ino = self.inode(id)?;
        let Body::File { fragment, .. } = ino.body else {
            return Ok(Vec::new());
        };
        let list = self.block_list(id, &ino)?;
        let mut out: Vec<(u64, u64)> = list
            .words
            .iter()
            .zip(&list.starts)
            .map(|(&w, &s)| (s, u64::from(w & !BLOCK_STORED)))
            .filter(|r| r.1 > 0)
            .collect();
        if fragment != INVALID {
            let (start, word) = self.fragment(fragment)?;
            out.push((start, u64::from(word & !BLOCK_STORED)));
        }
        Ok(out)
    }
}

impl FileSystem for Squashfs {
    fn kind(&self) -> &'static str {
        "squashfs"
    }

    fn root(&self) -> NodeId {
        NodeId(self.sb.root_inode)
    }

    fn metadata(&self, id: NodeId) -> Result<Metadata, FsError> {
        let ino = self.inode(id)?;
        let kind = ino.kind();
        let size = match &ino.body {
            Body::Dir { file_size, .. } => u64::from(*file_size),
            Body::File { size, .. } => *size,
            Body::Symlink { target } => target.len() as u64,
            Body::Device { .. } | Body::Ipc => 0,
        };
        Ok(Metadata {
            id,
            kind,
            size,
            mode: type_bits(kind) | u32::from(ino.mode & 0o7777),
            uid: self.id(ino.uid_idx)?,
            gid: self.id(ino.gid_idx)?,
            nlink: ino.nlink,
            mtime: i64::from(ino.mtime),
            atime: None,
            ctime: None,
            crtime: None,
        })
    }

    fn read_dir(&self, id: NodeId) -> Result<Vec<DirEntry>, FsError> {
        let ino = self.inode(id)?;
        self.listing(&ino)
    }

    fn read(&self, id: NodeId, offset: u64, buf: &mut [u8]) -> Result<usize, FsError> {
        let ino = self.inode(id)?;
        let Body::File {
            size,
            fragment,
            frag_offset,
            ..
        } = ino.body
        else {
            return Err(FsError::Unsupported("read of a non-file".into()));
        };
        if offset >= size || buf.is_empty() {
            return Ok(0);
        }
        let list = self.block_list(id, &ino)?;
        let bs = u64::from(self.sb.block_size);
        let want = (size - offset).min(buf.len() as u64) as usize;
        let mut done = 0usize;
        while done < want {
            let pos = offset + done as u64;
            let bi = pos / bs;
            let within = (pos % bs) as usize;
            // Bytes this block holds for the file.
            let block_len = (size - bi * bs).min(bs) as usize;
            let n = (block_len - within).min(want - done);
            let dst = buf
                .get_mut(done..done + n)
                .ok_or_else(|| corrupt("read window"))?;
            let idx = usize::try_from(bi).unwrap_or(usize::MAX);
            if let (Some(&word), Some(&start)) = (list.words.get(idx), list.starts.get(idx)) {
                if word & !BLOCK_STORED == 0 {
                    dst.fill(0); // sparse block
                } else {
                    let b = self.data_block(start, word)?;
                    let src = b.get(within..within + n).ok_or_else(|| {
                        corrupt(format!(
                            "squashfs data block {bi} of inode {} decodes to {} bytes, needs {block_len}",
                            ino.number,
                            b.len()
                        ))
                    })?;
                    dst.copy_from_slice(src);
                }
            } else if fragment != INVALID && idx == list.words.len() {
                let (start, word) = self.fragment(fragment)?;
                let b = self.data_block(start, word)?;
                let at = (frag_offset as usize).saturating_add(within);
                let src = b.get(at..at.saturating_add(n)).ok_or_else(|| {
                    corrupt(format!(
                        "squashfs fragment {fragment} tail {frag_offset}+{block_len} past its {}-byte block",
                        b.len()
                    ))
                })?;
                dst.copy_from_slice(src);
            } else {
                return Err(corrupt(format!(
                    "squashfs inode {} has no block {bi}",
                    ino.number
                )));
            }
            done += n;
        }
        Ok(done)
    }

    fn read_link(&self, id: NodeId) -> Result<Vec<u8>, FsError> {
        match self.inode(id)?.body {
            Body::Symlink { target } => Ok(target),
            _ => Err(FsError::Unsupported("not a symbolic link".into())),
        }
    }

    fn byte_ranges(&self, id: NodeId) -> Result<Vec<(u64, u64)>, FsError> {
        self.ranges(id)
    }

    fn xattrs(&self, id: NodeId) -> Result<Vec<Xattr>, FsError> {
        let ino = self.inode(id)?;
        if ino.xattr == INVALID {
            return Ok(Vec::new());
        }
        self.xattrs_at(ino.xattr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_and_mode_bits() {
        for (t, k) in [
            (1, FileType::Dir),
            (9, FileType::File),
            (10, FileType::Symlink),
            (4, FileType::BlockDev),
            (12, FileType::CharDev),
            (6, FileType::Fifo),
            (14, FileType::Socket),
            (0, FileType::Unknown),
            (15, FileType::Unknown),
        ] {
            assert_eq!(type_of(t), k);
        }
        assert_eq!(type_bits(FileType::Symlink), 0o120_000);
    }
}
