//! Errors of the image layer: I/O, refused headers, broken tables met while
//! reading, and policy refusals (what qvet would not open).

use std::path::PathBuf;

use qvet_format::FormatError;
use thiserror::Error;

/// Why an image could not be opened or read.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ImageError {
    /// Reading the host file failed.
    #[error("I/O error reading {what} at offset {offset:#x}: {error}")]
    Io {
        /// What was being read.
        what: String,
        /// Host offset.
        offset: u64,
        /// The OS error.
        error: std::io::Error,
    },
    /// Opening a host file failed.
    #[error("could not open '{}': {error}", path.display())]
    Open {
        /// Path that failed.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// The header (or a table it describes) was refused.
    #[error("{}: {error}", path.display())]
    Format {
        /// Image path.
        path: PathBuf,
        /// The refusal.
        error: FormatError,
    },
    /// An L1 entry points at an unaligned L2 table.
    #[error("L2 table offset {l2_offset:#x} unaligned (L1 index: {l1_index:#x})")]
    L2Unaligned {
        /// L1 index.
        l1_index: u64,
        /// The masked offset.
        l2_offset: u64,
    },
    /// An L2 entry's host cluster offset is unaligned.
    #[error("cluster allocation offset {host:#x} unaligned (L2 offset: {l2_offset:#x}, L2 index: {l2_index:#x})")]
    ClusterUnaligned {
        /// Host offset found.
        host: u64,
        /// L2 table offset.
        l2_offset: u64,
        /// Entry index.
        l2_index: u64,
    },
    /// An extended L2 entry whose subcluster bitmap contradicts itself.
    #[error("invalid cluster entry found (L2 offset: {l2_offset:#x}, L2 index: {l2_index:#x})")]
    InvalidEntry {
        /// L2 table offset.
        l2_offset: u64,
        /// Entry index.
        l2_index: u64,
    },
    /// A data cluster in an external data file must sit at its guest offset.
    #[error("external data file host cluster offset {host:#x} does not match guest cluster offset {guest:#x}")]
    DataFileMismatch {
        /// Host offset found.
        host: u64,
        /// Guest offset.
        guest: u64,
    },
    /// A compressed cluster in an image with an external data file.
    #[error(
        "compressed cluster entry found in image with external data file (guest offset {guest:#x})"
    )]
    CompressedWithDataFile {
        /// Guest offset.
        guest: u64,
    },
    /// A compressed cluster that does not decode to exactly one cluster.
    #[error("compressed cluster at guest offset {guest:#x} (host {host:#x}, {len} bytes) could not be decompressed: {why}")]
    Decompress {
        /// Guest offset of the cluster.
        guest: u64,
        /// Host offset of the stream.
        host: u64,
        /// Bytes read.
        len: u64,
        /// Decoder message.
        why: String,
    },
    /// The image is encrypted and no key was given.
    #[error("'{}' is encrypted ({method}); reading guest data needs its passphrase (none given)", path.display())]
    Encrypted {
        /// Image path.
        path: PathBuf,
        /// "LUKS" or "AES".
        method: &'static str,
    },
    /// No key slot accepted the passphrase.
    #[error("'{}': no key slot opened with the given passphrase (tried key slots {tried})", path.display())]
    KeyRejected {
        /// Image path.
        path: PathBuf,
        /// The slots tried, comma-separated.
        tried: String,
    },
    /// The encryption header or a key could not be used.
    #[error("'{}': cannot decrypt: {why}", path.display())]
    Crypto {
        /// Image path.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// Guest data comes from a file qvet was not allowed (or able) to open.
    #[error("guest range {start:#x}..{end:#x} of '{}' comes from {what} '{name}', which was not opened: {why}", path.display())]
    Unavailable {
        /// Image whose dependency is missing.
        path: PathBuf,
        /// "backing file" or "data file".
        what: &'static str,
        /// Name as stored in the image.
        name: String,
        /// First guest byte affected.
        start: u64,
        /// End of the affected range.
        end: u64,
        /// Why it was not opened.
        why: String,
    },
    /// A path named inside an image that qvet refuses to follow.
    #[error("refusing to open {what} '{name}' named in '{}': {why}", path.display())]
    Refused {
        /// Image naming it.
        path: PathBuf,
        /// "backing file" or "data file".
        what: &'static str,
        /// Name as stored.
        name: String,
        /// Why.
        why: String,
    },
    /// The image's format cannot be read by qvet.
    #[error("'{}': {why}", path.display())]
    Unsupported {
        /// Image path.
        path: PathBuf,
        /// What is unsupported.
        why: String,
    },
    /// A refcount table entry points at an unaligned refcount block.
    #[error("refblock offset {offset:#x} unaligned (reftable index: {index:#x})")]
    RefblockUnaligned {
        /// Refcount table index.
        index: u64,
        /// The offset found.
        offset: u64,
    },
    /// No snapshot with that ID or name.
    #[error("snapshot '{0}' not found")]
    NoSuchSnapshot(String),
    /// A guest read outside the virtual disk.
    #[error("read of {len} bytes at guest offset {offset:#x} is beyond the virtual size {size}")]
    OutOfRange {
        /// Guest offset.
        offset: u64,
        /// Length.
        len: u64,
        /// Virtual size.
        size: u64,
    },
}
