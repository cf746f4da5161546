//! `qvet-guestfs` reads the filesystems inside a guest disk, read-only and
//! without root, a mount or a VM: ext2/3/4 ([`ext`]), FAT12/16/32 ([`fat`]),
//! ISO 9660 ([`iso`]) and squashfs 4.0 ([`squashfs`]). A file inside one of
//! them can itself be opened as a filesystem through
//! [`node_source::NodeSource`] (VyOS keeps its root as a squashfs file in an
//! ext partition).
//!
//! For compaction, the allocation readers say which volume bytes are free
//! and why, from the filesystem's own metadata: `ext::Ext::free_space`
//! (bitmaps cross-checked with every in-use inode), `fat::Fat::free_space`
//! (every FAT copy, cross-checked with the directory tree) and [`swap`].
//!
//! Each reader implements [`FileSystem`] over a [`qvet_image::ByteSource`]
//! (normally a partition [`qvet_volume::Window`] of a guest view). Paths and
//! names are bytes. Every walk over on-disk structures is bounded (depth,
//! entries, chain length, symlink hops) so hostile filesystems give errors,
//! not hangs; nothing is ever written.

use std::sync::Arc;

use qvet_image::ByteSource;

mod bytes;
pub mod ext;
mod ext_xattr;
pub mod fat;
pub mod iso;
pub mod jbd2;
pub mod node_source;
pub mod squashfs;
pub mod swap;
pub mod xattr;

/// Longest path walked, in components.
pub const MAX_PATH_DEPTH: usize = 256;
/// Symlinks followed while resolving one path.
pub const MAX_SYMLINK_HOPS: usize = 40;
/// Entries read from one directory.
pub const MAX_DIR_ENTRIES: usize = 1 << 20;

/// File types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileType {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link.
    Symlink,
    /// Character device.
    CharDev,
    /// Block device.
    BlockDev,
    /// FIFO.
    Fifo,
    /// Socket.
    Socket,
    /// Anything else.
    Unknown,
}

impl FileType {
    /// One-letter code as `ls -l` and `find -type` use.
    pub fn letter(self) -> char {
        match self {
            Self::File => 'f',
            Self::Dir => 'd',
            Self::Symlink => 'l',
            Self::CharDev => 'c',
            Self::BlockDev => 'b',
            Self::Fifo => 'p',
            Self::Socket => 's',
            Self::Unknown => '?',
        }
    }
}

/// An inode (ext), directory entry position (FAT) or extent (ISO): whatever
/// identifies a file to its filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u64);

/// What `stat` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    /// Node.
    pub id: NodeId,
    /// Type.
    pub kind: FileType,
    /// Size in bytes.
    pub size: u64,
    /// Permission bits and type bits as in `st_mode` (synthesised where the
    /// filesystem has none).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Hard links.
    pub nlink: u32,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// Access time.
    pub atime: Option<i64>,
    /// Change time.
    pub ctime: Option<i64>,
    /// Creation time.
    pub crtime: Option<i64>,
}

/// One directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// Name (bytes; not `.` or `..`).
    pub name: Vec<u8>,
    /// Node.
    pub id: NodeId,
    /// Type, when the directory records it (else resolved from the node).
    pub kind: FileType,
}

/// Why a filesystem operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FsError {
    /// Reading the volume failed.
    #[error("I/O error at volume offset {offset:#x}: {error}")]
    Io {
        /// Offset.
        offset: u64,
        /// OS error.
        error: std::io::Error,
    },
    /// Not this kind of filesystem.
    #[error("not a {0} filesystem")]
    NotThisFs(&'static str),
    /// A feature this reader does not support.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// On-disk structures are inconsistent.
    #[error("corrupt filesystem: {0}")]
    Corrupt(String),
    /// No such file or directory.
    #[error("no such file or directory: {0}")]
    NotFound(String),
    /// A path component is not a directory.
    #[error("not a directory: {0}")]
    NotADirectory(String),
    /// Too many symlinks or components.
    #[error("too many levels of symbolic links or path components: {0}")]
    TooDeep(String),
    /// Content encrypted with a key this reader does not have (ext4
    /// `encrypt`); returned instead of ciphertext.
    #[error("encrypted: {what}")]
    Encrypted {
        /// What could not be read ("inode 12 file contents").
        what: String,
    },
}

/// A read-only filesystem.
pub trait FileSystem: Send + Sync {
    /// Short name ("ext4", "vfat", "iso9660").
    fn kind(&self) -> &'static str;
    /// The root directory.
    fn root(&self) -> NodeId;
    /// Metadata of a node.
    ///
    /// # Errors
    /// [`FsError`] for unreadable or corrupt structures.
    fn metadata(&self, id: NodeId) -> Result<Metadata, FsError>;
    /// Entries of a directory, without `.` and `..`.
    ///
    /// # Errors
    /// [`FsError::NotADirectory`], or corrupt structures.
    fn read_dir(&self, id: NodeId) -> Result<Vec<DirEntry>, FsError>;
    /// Reads file bytes at `offset`; returns the count (0 at end of file).
    ///
    /// # Errors
    /// [`FsError`] for unreadable or corrupt structures.
    fn read(&self, id: NodeId, offset: u64, buf: &mut [u8]) -> Result<usize, FsError>;
    /// A symlink's target.
    ///
    /// # Errors
    /// [`FsError`] when the node is not a symlink or is corrupt.
    fn read_link(&self, id: NodeId) -> Result<Vec<u8>, FsError>;
    /// The entry of directory `dir` named `name`, matched as the
    /// filesystem's own lookup matches (exact bytes unless overridden, e.g.
    /// by ext4 casefolded directories).
    ///
    /// # Errors
    /// As [`FileSystem::read_dir`].
    fn find_entry(&self, dir: NodeId, name: &[u8]) -> Result<Option<DirEntry>, FsError> {
        Ok(self.read_dir(dir)?.into_iter().find(|e| e.name == name))
    }
    /// Volume byte ranges `(offset, length)` holding the node's data (and
    /// the metadata blocks that map it), in file order.
    ///
    /// # Errors
    /// [`FsError::Unsupported`] unless the reader overrides it; corrupt
    /// structures.
    fn byte_ranges(&self, id: NodeId) -> Result<Vec<(u64, u64)>, FsError> {
        let _ = id;
        Err(FsError::Unsupported(format!(
            "byte ranges of files on {}",
            self.kind()
        )))
    }
    /// Extended attributes of a node (`security.capability`, ACLs,
    /// `user.*` …), with their namespace prefixes.
    ///
    /// # Errors
    /// [`FsError::Unsupported`] unless the reader overrides it; corrupt
    /// structures.
    fn xattrs(&self, id: NodeId) -> Result<Vec<xattr::Xattr>, FsError> {
        let _ = id;
        Err(FsError::Unsupported(format!(
            "extended attributes on {}",
            self.kind()
        )))
    }
    /// Entries of directory `id` that were deleted but whose records
    /// survive (forensics: what a repacker removed).
    ///
    /// # Errors
    /// [`FsError::Unsupported`] unless the reader overrides it; as
    /// [`FileSystem::read_dir`].
    fn deleted_entries(&self, id: NodeId) -> Result<Vec<Deleted>, FsError> {
        let _ = id;
        Err(FsError::Unsupported(format!(
            "listing deleted entries on {}",
            self.kind()
        )))
    }
}

/// A deleted directory entry whose record survives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deleted {
    /// Best-known name: a recovered long name, else the stored name with
    /// bytes deletion destroyed shown as `?`.
    pub name: Vec<u8>,
    /// Byte offset of the entry's record in the volume.
    pub offset: u64,
    /// Type the record gives.
    pub kind: FileType,
    /// Size the record gives, when it holds one.
    pub size: Option<u64>,
    /// Where the data was (FAT first cluster, ext inode number); it may
    /// have been reused since.
    pub node: Option<u64>,
}

/// Resolves `path` (absolute, `/`-separated bytes) to a node, following
/// symlinks in intermediate components (and in the last one when
/// `follow_last`), bounded by [`MAX_SYMLINK_HOPS`] and [`MAX_PATH_DEPTH`].
///
/// # Errors
/// [`FsError::NotFound`], [`FsError::NotADirectory`], [`FsError::TooDeep`].
pub fn lookup(fs: &dyn FileSystem, path: &[u8], follow_last: bool) -> Result<NodeId, FsError> {
    let shown = || String::from_utf8_lossy(path).into_owned();
    let mut stack: Vec<NodeId> = vec![fs.root()];
    let mut pending: Vec<Vec<u8>> = split(path).into_iter().rev().collect();
    let mut hops = 0usize;
    let mut steps = 0usize;
    while let Some(comp) = pending.pop() {
        steps += 1;
        if steps > MAX_PATH_DEPTH * 4 || stack.len() > MAX_PATH_DEPTH {
            return Err(FsError::TooDeep(shown()));
        }
        if comp == b"." {
            continue;
        }
        if comp == b".." {
            if stack.len() > 1 {
                stack.pop();
            }
            continue;
        }
        let dir = *stack.last().unwrap_or(&fs.root());
        if fs.metadata(dir)?.kind != FileType::Dir {
            return Err(FsError::NotADirectory(shown()));
        }
        let entry = fs
            .find_entry(dir, &comp)?
            .ok_or_else(|| FsError::NotFound(shown()))?;
        let md = fs.metadata(entry.id)?;
        let last = pending.is_empty();
        if md.kind == FileType::Symlink && (!last || follow_last) {
            hops += 1;
            if hops > MAX_SYMLINK_HOPS {
                return Err(FsError::TooDeep(shown()));
            }
            let target = fs.read_link(entry.id)?;
            if target.first() == Some(&b'/') {
                stack.truncate(1);
            }
            pending.extend(split(&target).into_iter().rev());
            continue;
        }
        stack.push(entry.id);
    }
    Ok(*stack.last().unwrap_or(&fs.root()))
}

/// Path components, empty ones dropped.
pub fn split(path: &[u8]) -> Vec<Vec<u8>> {
    path.split(|&b| b == b'/')
        .filter(|c| !c.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

/// Opens whichever supported filesystem `src` holds.
///
/// # Errors
/// [`FsError::NotThisFs`] ("supported") when none is recognised, or the
/// opening reader's error.
pub fn open(src: Arc<dyn ByteSource>) -> Result<Box<dyn FileSystem>, FsError> {
    match ext::Ext::open(Arc::clone(&src)) {
        Ok(fs) => return Ok(Box::new(fs)),
        Err(FsError::NotThisFs(_)) => {}
        Err(e) => return Err(e),
    }
    match fat::Fat::open(Arc::clone(&src)) {
        Ok(fs) => return Ok(Box::new(fs)),
        Err(FsError::NotThisFs(_)) => {}
        Err(e) => return Err(e),
    }
    match iso::Iso::open(Arc::clone(&src)) {
        Ok(fs) => return Ok(Box::new(fs)),
        Err(FsError::NotThisFs(_)) => {}
        Err(e) => return Err(e),
    }
    match squashfs::Squashfs::open(src) {
        Ok(fs) => Ok(Box::new(fs)),
        Err(FsError::NotThisFs(_)) => Err(FsError::NotThisFs(
            "supported (ext, FAT, ISO 9660, squashfs)",
        )),
        Err(e) => Err(e),
    }
}

/// Reads `len` bytes at `offset` of `src` (zeros past its end).
pub(crate) fn read_bytes(
    src: &dyn ByteSource,
    offset: u64,
    len: usize,
) -> Result<Vec<u8>, FsError> {
    let mut buf = vec![0u8; len];
    src.read_zero_padded(offset, &mut buf)
        .map_err(|error| FsError::Io { offset, error })?;
    Ok(buf)
}
