//! The one error type of this crate: each variant is one reason a structure
//! was refused, carrying the offending value and where it was found.

use thiserror::Error;

/// Why a qcow2 structure could not be accepted.
///
/// Messages follow qemu's wording where qemu refuses the same thing, so that a
/// user who knows `qemu-img` recognises them.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum FormatError {
    /// Fewer bytes than the structure needs.
    #[error("{what} truncated: need {need} bytes at offset {offset:#x}, file has {have}")]
    Truncated {
        /// Structure being read.
        what: &'static str,
        /// Host offset of the structure.
        offset: u64,
        /// Bytes needed.
        need: u64,
        /// Bytes available.
        have: u64,
    },
    /// The magic is not `QFI\xfb`.
    #[error("image is not in qcow2 format (bad magic)")]
    BadMagic,
    /// Legacy qcow (version 1) shares qcow2's magic.
    #[error("legacy qcow version 1 image: not supported (convert it with `qemu-img convert -O qcow2` first)")]
    LegacyQcowV1,
    /// Version other than 2 or 3.
    #[error("unsupported qcow2 version {0}")]
    UnsupportedVersion(u32),
    /// `cluster_bits` outside 9..=21.
    #[error("unsupported cluster size: 2^{0}")]
    ClusterBits(u32),
    /// Extended L2 needs subclusters of at least 512 bytes.
    #[error("unsupported subcluster size: extended L2 needs clusters of at least 16 KiB, image has 2^{0}")]
    SubclusterSize(u32),
    /// `header_length` below 104 (v3).
    #[error("qcow2 header too short: header_length {0}")]
    HeaderTooShort(u32),
    /// `header_length` above the cluster size.
    #[error("qcow2 header exceeds cluster size: header_length {0}")]
    HeaderTooLong(u32),
    /// `refcount_order` above 6.
    #[error("reference count entry width too large (refcount_order {0}); may not exceed 64 bits")]
    RefcountOrder(u32),
    /// Unknown `compression_type` byte.
    #[error("unknown compression type {0}")]
    CompressionType(u8),
    /// Compression type and incompatible bit 3 disagree.
    #[error("compression type {type_} disagrees with incompatible feature bit 3 ({bit})")]
    CompressionBit {
        /// The compression type byte.
        type_: u8,
        /// Whether bit 3 is set.
        bit: bool,
    },
    /// `crypt_method` other than 0, 1, 2.
    #[error("unsupported encryption method {0}")]
    CryptMethod(u32),
    /// Incompatible feature bits this reader does not know.
    #[error("unsupported qcow2 feature(s): {names} (incompatible bits {mask:#x})")]
    UnknownIncompatible {
        /// The unknown bits.
        mask: u64,
        /// Names from the image's feature table, or "unknown bit N".
        names: String,
    },
    /// Padding bytes 105..112 of a v3 header that must be zero are not.
    #[error("header padding after compression_type is not zero")]
    HeaderPadding,
    /// Backing file offset past the first cluster.
    #[error("invalid backing file offset {0:#x}")]
    BackingOffset(u64),
    /// Backing file name longer than qemu accepts.
    #[error("backing file name too long ({0} bytes)")]
    BackingNameTooLong(u32),
    /// Header extension runs past its area.
    #[error("header extension at offset {offset:#x} too large (type {kind:#010x}, length {len})")]
    ExtensionTooLarge {
        /// Offset of the extension header.
        offset: u64,
        /// Extension type.
        kind: u32,
        /// Claimed length.
        len: u32,
    },
    /// An extension whose payload qemu would refuse.
    #[error("invalid {what} header extension: {why}")]
    BadExtension {
        /// Which extension.
        what: &'static str,
        /// What is wrong.
        why: String,
    },
    /// A table whose offset is not cluster aligned or overflows.
    #[error("{what} offset {offset:#x} invalid (must be cluster aligned and fit in 63 bits)")]
    TableOffset {
        /// Which table.
        what: &'static str,
        /// Offset found.
        offset: u64,
    },
    /// A table larger than qemu's limit.
    #[error("{what} too large: {size} (limit {limit})")]
    TableTooLarge {
        /// Which table.
        what: &'static str,
        /// Size found (entries or bytes as named).
        size: u64,
        /// Limit.
        limit: u64,
    },
    /// The active L1 table cannot map the whole virtual disk.
    #[error("L1 table is too small: {l1_size} entries, virtual size needs {needed}")]
    L1TooSmall {
        /// Entries in the header.
        l1_size: u32,
        /// Entries needed.
        needed: u64,
    },
    /// Virtual size needs more L1 entries than qemu can address.
    #[error("image is too big: virtual size {0} bytes")]
    ImageTooBig(u64),
    /// The image has no refcount table.
    #[error("image does not contain a reference count table")]
    NoRefcountTable,
    /// Data file bit without a name, or a name without the bit and so on.
    #[error("external data file: {0}")]
    DataFile(&'static str),
    /// A snapshot table entry qemu would refuse.
    #[error("snapshot table entry {index} at offset {offset:#x}: {why}")]
    Snapshot {
        /// Entry index.
        index: u32,
        /// Host offset of the entry.
        offset: u64,
        /// What is wrong.
        why: String,
    },
    /// A bitmap directory entry qemu would refuse.
    #[error("bitmap directory entry {index}: {why}")]
    Bitmap {
        /// Entry index.
        index: u32,
        /// What is wrong.
        why: String,
    },
    /// The LUKS header could not be parsed.
    #[error("LUKS header at offset {offset:#x}: {why}")]
    Luks {
        /// Host offset of the LUKS header.
        offset: u64,
        /// What is wrong.
        why: &'static str,
    },
}
