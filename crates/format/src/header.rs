//! The qcow2 header: fixed fields, feature bits, header extensions and the
//! backing file name, all of which live in the image's first cluster.
//!
//! [`Header::parse`] is structural: it accepts anything it can lay out and
//! fails only when the bytes cannot be a qcow2 header at all. [`Header::problems`]
//! then lists every rule qemu enforces when it opens an image, so that a strict
//! reader can refuse what qemu refuses and an auditor can report all of it.

use crate::bytes::{be_u32, be_u64, slice, u64_from, usize_from, usize_from_u32};
use crate::error::FormatError;
use crate::limits;

/// `QFI\xfb`: shared by qcow v1 and qcow2.
pub const MAGIC: u32 = 0x5146_49fb;
/// Size of a version 2 header.
pub const V2_HEADER_LEN: u32 = 72;
/// Smallest version 3 header.
pub const V3_MIN_HEADER_LEN: u32 = 104;

/// Incompatible feature bits (header offset 72).
pub mod incompat {
    /// Refcounts may be stale.
    pub const DIRTY: u64 = 1 << 0;
    /// The image was marked corrupt by qemu.
    pub const CORRUPT: u64 = 1 << 1;
    /// Guest data lives in an external data file.
    pub const DATA_FILE: u64 = 1 << 2;
    /// `compression_type` is not zlib.
    pub const COMPRESSION_TYPE: u64 = 1 << 3;
    /// 128-bit L2 entries with 32 subclusters.
    pub const EXTENDED_L2: u64 = 1 << 4;
    /// Every bit this reader understands.
    pub const KNOWN: u64 = DIRTY | CORRUPT | DATA_FILE | COMPRESSION_TYPE | EXTENDED_L2;
    /// Names as qemu writes them in its feature table.
    pub const NAMES: [&str; 5] = [
        "dirty bit",
        "corrupt bit",
        "external data file",
        "compression type",
        "extended L2 entries",
    ];
}

/// Compatible feature bits (header offset 80).
pub mod compat {
    /// Refcount updates may be deferred (sets the dirty bit while open).
    pub const LAZY_REFCOUNTS: u64 = 1 << 0;
    /// Every bit this reader understands.
    pub const KNOWN: u64 = LAZY_REFCOUNTS;
    /// Names as qemu writes them.
    pub const NAMES: [&str; 1] = ["lazy refcounts"];
}

/// Autoclear feature bits (header offset 88).
pub mod autoclear {
    /// The bitmaps extension is consistent.
    pub const BITMAPS: u64 = 1 << 0;
    /// The external data file is a valid raw image.
    pub const DATA_FILE_RAW: u64 = 1 << 1;
    /// Every bit this reader understands.
    pub const KNOWN: u64 = BITMAPS | DATA_FILE_RAW;
    /// Names as qemu writes them.
    pub const NAMES: [&str; 2] = ["bitmaps", "raw external data"];
}

/// Header extension type codes.
pub mod ext {
    /// End of the extension area.
    pub const END: u32 = 0;
    /// Backing file format name.
    pub const BACKING_FORMAT: u32 = 0xe279_2aca;
    /// Feature name table.
    pub const FEATURE_TABLE: u32 = 0x6803_f857;
    /// Bitmaps extension.
    pub const BITMAPS: u32 = 0x2385_2875;
    /// Full disk encryption header pointer.
    pub const CRYPTO: u32 = 0x0537_be77;
    /// External data file name.
    pub const DATA_FILE: u32 = 0x4441_5441;
}

/// How compressed clusters are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompressionType {
    /// Raw deflate with a 4 KiB window.
    Zlib,
    /// zstd frames.
    Zstd,
}

impl CompressionType {
    /// qemu's name for it (`compression-type` in `qemu-img info`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Zlib => "zlib",
            Self::Zstd => "zstd",
        }
    }
}

/// `crypt_method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CryptMethod {
    /// Not encrypted.
    None,
    /// Legacy AES-CBC (qemu's "aes").
    Aes,
    /// LUKS, header pointed at by the crypto extension.
    Luks,
    /// Any other value (refused by qemu).
    Other(u32),
}

/// Which feature bit word a feature-table entry names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeatureKind {
    /// Incompatible bits.
    Incompatible,
    /// Compatible bits.
    Compatible,
    /// Autoclear bits.
    Autoclear,
    /// A type byte the spec does not define.
    Other(u8),
}

/// One entry of the feature name table extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureName {
    /// Which bit word.
    pub kind: FeatureKind,
    /// Bit number (0..63 when valid).
    pub bit: u8,
    /// Name, NUL padding removed.
    pub name: Vec<u8>,
}

/// The bitmaps extension payload (24 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BitmapsExtension {
    /// Number of bitmaps in the directory.
    pub nb_bitmaps: u32,
    /// Must be zero.
    pub reserved: u32,
    /// Directory size in bytes.
    pub directory_size: u64,
    /// Directory host offset.
    pub directory_offset: u64,
}

/// A decoded header extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Extension {
    /// Backing file format name (no NUL).
    BackingFormat(Vec<u8>),
    /// Feature name table.
    FeatureNames(Vec<FeatureName>),
    /// Bitmaps extension; `None` when its length is not 24.
    Bitmaps(Option<BitmapsExtension>),
    /// Encryption header location; `None` when its length is not 16.
    Crypto(Option<(u64, u64)>),
    /// External data file name (no NUL).
    DataFile(Vec<u8>),
    /// An extension type this reader does not know, kept verbatim.
    Unknown(Vec<u8>),
}

/// An extension as found in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtensionRecord {
    /// Host offset of the extension's 8-byte header.
    pub offset: u64,
    /// Type code.
    pub kind: u32,
    /// Payload length.
    pub len: u32,
    /// Decoded payload.
    pub ext: Extension,
}

impl ExtensionRecord {
    /// A human name for the extension type.
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            ext::BACKING_FORMAT => "backing-format",
            ext::FEATURE_TABLE => "feature-name-table",
            ext::BITMAPS => "bitmaps",
            ext::CRYPTO => "crypto-header",
            ext::DATA_FILE => "data-file",
            _ => "unknown",
        }
    }
}

/// A parsed qcow2 header (v2 or v3) with its extensions and backing name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// 2 or 3.
    pub version: u32,
    /// Host offset of the backing file name (0 = none).
    pub backing_file_offset: u64,
    /// Backing file name length.
    pub backing_file_size: u32,
    /// log2 of the cluster size (9..=21).
    pub cluster_bits: u32,
    /// Virtual size in bytes as stored.
    pub size: u64,
    /// Encryption method.
    pub crypt_method: CryptMethod,
    /// Active L1 entries.
    pub l1_size: u32,
    /// Active L1 host offset.
    pub l1_table_offset: u64,
    /// Refcount table host offset.
    pub refcount_table_offset: u64,
    /// Refcount table length in clusters.
    pub refcount_table_clusters: u32,
    /// Internal snapshots.
    pub nb_snapshots: u32,
    /// Snapshot table host offset.
    pub snapshots_offset: u64,
    /// Incompatible feature bits (0 in v2).
    pub incompatible_features: u64,
    /// Compatible feature bits (0 in v2).
    pub compatible_features: u64,
    /// Autoclear feature bits (0 in v2).
    pub autoclear_features: u64,
    /// log2 of the refcount width in bits (4 in v2).
    pub refcount_order: u32,
    /// Header length (72 in v2).
    pub header_length: u32,
    /// Raw compression type byte (0 when absent).
    pub compression_type_raw: u8,
    /// Extensions in file order.
    pub extensions: Vec<ExtensionRecord>,
    /// Backing file name, when `backing_file_offset` is non-zero.
    pub backing_file: Option<Vec<u8>>,
}

fn truncated(what: &'static str, offset: u64, need: usize, have: usize) -> FormatError {
    FormatError::Truncated {
        what,
        offset,
        need: u64_from(need),
        have: u64_from(have),
    }
}

/// Copies `len` bytes at `offset`, with bytes past the end of `buf` read as
/// zero, as qemu's reads past the end of a file do.
fn zero_padded(buf: &[u8], offset: usize, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    let avail = buf.len().saturating_sub(offset).min(len);
    if let (Some(dst), Some(src)) = (out.get_mut(..avail), slice(buf, offset, avail)) {
        dst.copy_from_slice(src);
    }
    out
}

impl Header {
    /// Parses the header from the first bytes of the file.
    ///
    /// `buf` holds the start of the file (qvet passes up to one maximum-size
    /// cluster); bytes the header area needs beyond `buf` read as zeros, as
    /// they do in qemu when the file is shorter than its first cluster.
    ///
    /// # Errors
    /// [`FormatError::BadMagic`], [`FormatError::LegacyQcowV1`],
    /// [`FormatError::UnsupportedVersion`], [`FormatError::Truncated`] when the
    /// fixed fields are cut off, [`FormatError::ClusterBits`],
    /// [`FormatError::HeaderTooShort`]/[`FormatError::HeaderTooLong`], and
    /// [`FormatError::ExtensionTooLarge`]/[`FormatError::BackingOffset`] when
    /// the extension area cannot be walked.
    pub fn parse(buf: &[u8]) -> Result<Self, FormatError> {
        let magic = be_u32(buf, 0).ok_or_else(|| truncated("qcow2 header", 0, 8, buf.len()))?;
        if magic != MAGIC {
            return Err(FormatError::BadMagic);
        }
        let version = be_u32(buf, 4).ok_or_else(|| truncated("qcow2 header", 0, 8, buf.len()))?;
        match version {
            1 => return Err(FormatError::LegacyQcowV1),
            2 | 3 => {}
            v => return Err(FormatError::UnsupportedVersion(v)),
        }
        let fixed = if version == 2 {
            V2_HEADER_LEN
        } else {
            V3_MIN_HEADER_LEN
        };
        let fixed_len = usize_from_u32(fixed);
        if buf.len() < fixed_len {
            return Err(truncated("qcow2 header", 0, fixed_len, buf.len()));
        }
        let u32_at = |o| be_u32(buf, o).unwrap_or(0);
        let u64_at = |o| be_u64(buf, o).unwrap_or(0);
        let cluster_bits = u32_at(20);
        if !(limits::MIN_CLUSTER_BITS..=limits::MAX_CLUSTER_BITS).contains(&cluster_bits) {
            return Err(FormatError::ClusterBits(cluster_bits));
        }
        let cluster_size: u64 = 1 << cluster_bits;
        let (incompatible, compatible, autoclear_bits, refcount_order, header_length) =
            if version == 2 {
                (0, 0, 0, 4, V2_HEADER_LEN)
            } else {
                (u64_at(72), u64_at(80), u64_at(88), u32_at(96), u32_at(100))
            };
        if version == 3 {
            if header_length < V3_MIN_HEADER_LEN {
                return Err(FormatError::HeaderTooShort(header_length));
            }
            if u64::from(header_length) > cluster_size {
                return Err(FormatError::HeaderTooLong(header_length));
            }
        }
        let compression_type_raw = if header_length > V3_MIN_HEADER_LEN {
            buf.get(104).copied().unwrap_or(0)
        } else {
            0
        };
        let backing_file_offset = u64_at(8);
        let backing_file_size = u32_at(16);
        if backing_file_offset > cluster_size {
            return Err(FormatError::BackingOffset(backing_file_offset));
        }
        let ext_end = if backing_file_offset != 0 {
            backing_file_offset
        } else {
            cluster_size
        };
        let extensions = parse_extensions(buf, u64::from(header_length), ext_end)?;
        let backing_file = if backing_file_offset != 0 {
            let len = backing_file_size;
            if len > limits::MAX_BACKING_NAME
                || u64::from(len) > cluster_size.saturating_sub(backing_file_offset)
            {
                return Err(FormatError::BackingNameTooLong(len));
            }
            Some(zero_padded(
                buf,
                usize_from(backing_file_offset),
                usize_from_u32(len),
            ))
        } else {
            None
        };
        Ok(Self {
            version,
            backing_file_offset,
            backing_file_size,
            cluster_bits,
            size: u64_at(24),
            crypt_method: match u32_at(32) {
                0 => CryptMethod::None,
                1 => CryptMethod::Aes,
                2 => CryptMethod::Luks,
                n => CryptMethod::Other(n),
            },
            l1_size: u32_at(36),
            l1_table_offset: u64_at(40),
            refcount_table_offset: u64_at(48),
            refcount_table_clusters: u32_at(56),
            nb_snapshots: u32_at(60),
            snapshots_offset: u64_at(64),
            incompatible_features: incompatible,
            compatible_features: compatible,
            autoclear_features: autoclear_bits,
            refcount_order,
            header_length,
            compression_type_raw,
            extensions,
            backing_file,
        })
    }

    /// Cluster size in bytes.
    pub fn cluster_size(&self) -> u64 {
        1 << self.cluster_bits
    }

    /// Virtual size as qemu exposes it: rounded down to whole 512-byte sectors.
    pub fn virtual_size(&self) -> u64 {
        self.size & !511
    }

    /// Whether L2 entries are 128 bits with subcluster bitmaps.
    pub fn extended_l2(&self) -> bool {
        self.incompatible_features & incompat::EXTENDED_L2 != 0
    }

    /// Whether guest data lives in an external data file.
    pub fn has_data_file(&self) -> bool {
        self.incompatible_features & incompat::DATA_FILE != 0
    }

    /// Whether the data file is marked as a valid raw image.
    pub fn data_file_raw(&self) -> bool {
        self.autoclear_features & autoclear::DATA_FILE_RAW != 0
    }

    /// Refcount width in bits.
    pub fn refcount_bits(&self) -> u64 {
        1u64.checked_shl(self.refcount_order).unwrap_or(0)
    }

    /// Bytes per L2 entry (8, or 16 with extended L2).
    pub fn l2_entry_size(&self) -> u64 {
        if self.extended_l2() {
            16
        } else {
            8
        }
    }

    /// Entries per L2 table.
    pub fn l2_entries(&self) -> u64 {
        self.cluster_size() / self.l2_entry_size()
    }

    /// L1 entries needed to map `size` bytes (qemu's `size_to_l1`).
    pub fn l1_entries_for(&self, size: u64) -> u64 {
        let shift = self.cluster_bits + (self.cluster_bits - 3);
        let shift = if self.extended_l2() { shift - 1 } else { shift };
        let span = 1u128 << shift;
        let needed = u128::from(size).div_ceil(span);
        u64::try_from(needed).unwrap_or(u64::MAX)
    }

    /// The compression type, when valid.
    pub fn compression_type(&self) -> Option<CompressionType> {
        match self.compression_type_raw {
            0 => Some(CompressionType::Zlib),
            1 => Some(CompressionType::Zstd),
            _ => None,
        }
    }

    /// The last extension of a type (qemu lets a later one override).
    fn last_ext(&self, kind: u32) -> Option<&Extension> {
        self.extensions
            .iter()
            .rev()
            .find(|e| e.kind == kind)
            .map(|e| &e.ext)
    }

    /// Backing file format from the extension, if present.
    pub fn backing_format(&self) -> Option<&[u8]> {
        match self.last_ext(ext::BACKING_FORMAT) {
            Some(Extension::BackingFormat(v)) => Some(v),
            _ => None,
        }
    }

    /// External data file name from the extension, if present.
    pub fn data_file_name(&self) -> Option<&[u8]> {
        match self.last_ext(ext::DATA_FILE) {
            Some(Extension::DataFile(v)) => Some(v),
            _ => None,
        }
    }

    /// The bitmaps extension, when present and well-formed.
    pub fn bitmaps_ext(&self) -> Option<BitmapsExtension> {
        match self.last_ext(ext::BITMAPS) {
            Some(Extension::Bitmaps(b)) => *b,
            _ => None,
        }
    }

    /// Whether qemu uses the bitmaps extension (present and autoclear bit 0 set).
    pub fn bitmaps_in_effect(&self) -> bool {
        self.autoclear_features & autoclear::BITMAPS != 0 && self.bitmaps_ext().is_some()
    }

    /// LUKS header location (offset, length) from the crypto extension.
    pub fn crypto_header(&self) -> Option<(u64, u64)> {
        match self.last_ext(ext::CRYPTO) {
            Some(Extension::Crypto(c)) => *c,
            _ => None,
        }
    }

    /// Feature name table entries from all feature-table extensions.
    pub fn feature_names(&self) -> impl Iterator<Item = &FeatureName> {
        self.extensions.iter().flat_map(|e| match &e.ext {
            Extension::FeatureNames(v) => v.as_slice(),
            _ => &[],
        })
    }

    /// The name of a feature bit: the image's table first, then qvet's own.
    pub fn feature_name(&self, kind: FeatureKind, bit: u8) -> Option<String> {
        if let Some(f) = self
            .feature_names()
            .find(|f| f.kind == kind && f.bit == bit)
        {
            return Some(String::from_utf8_lossy(&f.name).into_owned());
        }
        let table: &[&str] = match kind {
            FeatureKind::Incompatible => &incompat::NAMES,
            FeatureKind::Compatible => &compat::NAMES,
            FeatureKind::Autoclear => &autoclear::NAMES,
            FeatureKind::Other(_) => &[],
        };
        table.get(usize::from(bit)).map(|s| (*s).to_string())
    }

    /// Names for the set bits of `mask`, qemu-style.
    pub fn describe_bits(&self, kind: FeatureKind, mask: u64) -> Vec<String> {
        (0u8..64)
            .filter(|b| mask & (1u64 << b) != 0)
            .map(|b| {
                self.feature_name(kind, b)
                    .unwrap_or_else(|| format!("unknown bit {b}"))
            })
            .collect()
    }

    /// Every rule qemu enforces at open that this header breaks, in qemu's order.
    ///
    /// An empty list means qemu would open the image (read-only).
    pub fn problems(&self) -> Vec<FormatError> {
        let mut out = Vec::new();
        let cluster_size = self.cluster_size();
        let unknown = self.incompatible_features & !incompat::KNOWN;
        if unknown != 0 {
            out.push(FormatError::UnknownIncompatible {
                mask: unknown,
                names: self
                    .describe_bits(FeatureKind::Incompatible, unknown)
                    .join(", "),
            });
        }
        if self.refcount_order > 6 {
            out.push(FormatError::RefcountOrder(self.refcount_order));
        }
        match self.compression_type() {
            None => out.push(FormatError::CompressionType(self.compression_type_raw)),
            Some(t) => {
                let bit = self.incompatible_features & incompat::COMPRESSION_TYPE != 0;
                if bit != (t != CompressionType::Zlib) {
                    out.push(FormatError::CompressionBit {
                        type_: self.compression_type_raw,
                        bit,
                    });
                }
            }
        }
        if self.extended_l2() && self.cluster_bits < limits::MIN_EXTENDED_L2_CLUSTER_BITS {
            out.push(FormatError::SubclusterSize(self.cluster_bits));
        }
        if self.refcount_table_clusters == 0 {
            out.push(FormatError::NoRefcountTable);
        }
        if let Err(e) = validate_table(
            "reference count table",
            self.refcount_table_offset,
            u64::from(self.refcount_table_clusters),
            cluster_size,
            limits::MAX_REFTABLE_BYTES,
            cluster_size,
        ) {
            out.push(e);
        }
        if self.nb_snapshots > limits::MAX_SNAPSHOTS {
            out.push(FormatError::TableTooLarge {
                what: "snapshot table (entries)",
                size: u64::from(self.nb_snapshots),
                limit: u64::from(limits::MAX_SNAPSHOTS),
            });
        } else if let Err(e) = validate_table(
            "snapshot table",
            self.snapshots_offset,
            u64::from(self.nb_snapshots),
            40,
            u64::from(limits::MAX_SNAPSHOTS) * 40,
            cluster_size,
        ) {
            out.push(e);
        }
        let needed = self.l1_entries_for(self.size);
        if u64::from(self.l1_size) > limits::MAX_L1_ENTRIES {
            out.push(FormatError::TableTooLarge {
                what: "active L1 table (entries)",
                size: u64::from(self.l1_size),
                limit: limits::MAX_L1_ENTRIES,
            });
        } else if needed > u64::from(i32::MAX.unsigned_abs()) {
            out.push(FormatError::ImageTooBig(self.size));
        } else if u64::from(self.l1_size) < needed {
            out.push(FormatError::L1TooSmall {
                l1_size: self.l1_size,
                needed,
            });
        } else if let Err(e) = validate_table(
            "active L1 table",
            self.l1_table_offset,
            u64::from(self.l1_size),
            8,
            limits::MAX_L1_BYTES,
            cluster_size,
        ) {
            out.push(e);
        }
        if let CryptMethod::Other(n) = self.crypt_method {
            out.push(FormatError::CryptMethod(n));
        }
        for rec in &self.extensions {
            match &rec.ext {
                Extension::BackingFormat(v)
                    if u64_from(v.len()) >= u64::from(limits::MAX_BACKING_FORMAT) =>
                {
                    out.push(FormatError::BadExtension {
                        what: "backing format",
                        why: format!("length {} too large (>= 16)", v.len()),
                    });
                }
                Extension::Crypto(c) => {
                    if self.crypt_method != CryptMethod::Luks {
                        out.push(FormatError::BadExtension {
                            what: "crypto header",
                            why: "only expected with LUKS encryption".into(),
                        });
                    } else if let Some((off, _)) = c {
                        if off % cluster_size != 0 {
                            out.push(FormatError::BadExtension {
                                what: "crypto header",
                                why: format!("offset {off:#x} is not cluster aligned"),
                            });
                        }
                    } else {
                        out.push(FormatError::BadExtension {
                            what: "crypto header",
                            why: format!("size {}, expected 16", rec.len),
                        });
                    }
                }
                Extension::Bitmaps(b) => {
                    if let Some(why) = bitmaps_ext_problem(*b, rec.len, cluster_size) {
                        if self.autoclear_features & autoclear::BITMAPS != 0 || b.is_none() {
                            out.push(FormatError::BadExtension {
                                what: "bitmaps",
                                why,
                            });
                        }
                    }
                }
                _ => {}
            }
        }
        if self.crypt_method == CryptMethod::Luks && self.crypto_header().is_none() {
            let has_ext = self.extensions.iter().any(|e| e.kind == ext::CRYPTO);
            if !has_ext {
                out.push(FormatError::BadExtension {
                    what: "crypto header",
                    why: "missing for LUKS encryption".into(),
                });
            }
        }
        if !self.has_data_file() && self.data_file_raw() {
            out.push(FormatError::DataFile("data-file-raw requires a data file"));
        }
        out
    }

    /// The first of [`Header::problems`], as qemu reports only the first.
    ///
    /// # Errors
    /// The first rule this header breaks.
    pub fn validate(&self) -> Result<(), FormatError> {
        match self.problems().into_iter().next() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

fn bitmaps_ext_problem(b: Option<BitmapsExtension>, len: u32, cluster_size: u64) -> Option<String> {
    let Some(b) = b else {
        return Some(format!("invalid extension length {len}"));
    };
    if b.reserved != 0 {
        return Some("reserved field is not zero".into());
    }
    if b.nb_bitmaps > limits::MAX_BITMAPS {
        return Some(format!("{} bitmaps exceed the maximum", b.nb_bitmaps));
    }
    if b.nb_bitmaps == 0 {
        return Some("extension with zero bitmaps".into());
    }
    if b.directory_offset % cluster_size != 0 {
        return Some("invalid bitmap directory offset".into());
    }
    if b.directory_size > limits::MAX_BITMAP_DIRECTORY_BYTES {
        return Some(format!(
            "bitmap directory size ({}) exceeds the maximum",
            b.directory_size
        ));
    }
    None
}

/// qemu's `qcow2_validate_table`: size limit, 63-bit end, cluster alignment.
///
/// # Errors
/// [`FormatError::TableTooLarge`] or [`FormatError::TableOffset`].
pub fn validate_table(
    what: &'static str,
    offset: u64,
    entries: u64,
    entry_len: u64,
    max_bytes: u64,
    cluster_size: u64,
) -> Result<(), FormatError> {
    if entries > max_bytes / entry_len {
        return Err(FormatError::TableTooLarge {
            what,
            size: entries.saturating_mul(entry_len),
            limit: max_bytes,
        });
    }
    let size = entries * entry_len;
    if (i64::MAX.unsigned_abs()) - size < offset || !offset.is_multiple_of(cluster_size) {
        return Err(FormatError::TableOffset { what, offset });
    }
    Ok(())
}

/// Walks the extension area `[start, end)` the way qemu does.
fn parse_extensions(buf: &[u8], start: u64, end: u64) -> Result<Vec<ExtensionRecord>, FormatError> {
    let mut out = Vec::new();
    let mut offset = start;
    // Each step advances by at least 8 bytes within one cluster (<= 2 MiB),
    // so the loop is bounded by 2 MiB / 8 iterations.
    while offset < end {
        let head = zero_padded(buf, usize_from(offset), 8);
        let kind = be_u32(&head, 0).unwrap_or(0);
        let len = be_u32(&head, 4).unwrap_or(0);
        let payload_at = offset + 8;
        if payload_at > end || u64::from(len) > end - payload_at {
            return Err(FormatError::ExtensionTooLarge { offset, kind, len });
        }
        if kind == ext::END {
            break;
        }
        let data = zero_padded(buf, usize_from(payload_at), usize_from_u32(len));
        let decoded = match kind {
            ext::BACKING_FORMAT => Extension::BackingFormat(data),
            ext::DATA_FILE => Extension::DataFile(data),
            ext::FEATURE_TABLE => Extension::FeatureNames(
                data.chunks_exact(48)
                    .map(|e| FeatureName {
                        kind: match e.first().copied().unwrap_or(0) {
                            0 => FeatureKind::Incompatible,
                            1 => FeatureKind::Compatible,
                            2 => FeatureKind::Autoclear,
                            n => FeatureKind::Other(n),
                        },
                        bit: e.get(1).copied().unwrap_or(0),
                        name: crate::bytes::until_nul(e.get(2..).unwrap_or(&[])).to_vec(),
                    })
                    .collect(),
            ),
            ext::BITMAPS => Extension::Bitmaps((len == 24).then(|| BitmapsExtension {
                nb_bitmaps: be_u32(&data, 0).unwrap_or(0),
                reserved: be_u32(&data, 4).unwrap_or(0),
                directory_size: be_u64(&data, 8).unwrap_or(0),
                directory_offset: be_u64(&data, 16).unwrap_or(0),
            })),
            ext::CRYPTO => Extension::Crypto(
                (len == 16).then(|| (be_u64(&data, 0).unwrap_or(0), be_u64(&data, 8).unwrap_or(0))),
            ),
            _ => Extension::Unknown(data),
        };
        out.push(ExtensionRecord {
            offset,
            kind,
            len,
            ext: decoded,
        });
        offset = payload_at + ((u64::from(len) + 7) & !7);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A v3 header as `qemu-img create -f qcow2 x 64M` writes it, field by field.
    pub(crate) fn v3_header() -> Vec<u8> {
        let mut h = vec![0u8; 65536];
        let put32 =
            |h: &mut Vec<u8>, o: usize, v: u32| h[o..o + 4].copy_from_slice(&v.to_be_bytes());
        h[0..4].copy_from_slice(&MAGIC.to_be_bytes());
        put32(&mut h, 4, 3); // version
        put32(&mut h, 20, 16); // cluster_bits
        h[24..32].copy_from_slice(&(64u64 << 20).to_be_bytes()); // size
        put32(&mut h, 36, 1); // l1_size
        h[40..48].copy_from_slice(&0x30000u64.to_be_bytes()); // l1_table_offset
        h[48..56].copy_from_slice(&0x10000u64.to_be_bytes()); // refcount_table_offset
        put32(&mut h, 56, 1); // refcount_table_clusters
        put32(&mut h, 96, 4); // refcount_order
        put32(&mut h, 100, 112); // header_length
        h
    }

    #[test]
    fn parses_qemu_default_header() {
        let h = Header::parse(&v3_header()).unwrap();
        assert_eq!(h.version, 3);
        assert_eq!(h.cluster_size(), 65536);
        assert_eq!(h.refcount_bits(), 16);
        assert_eq!(h.compression_type(), Some(CompressionType::Zlib));
        assert!(h.extensions.is_empty());
        assert_eq!(h.problems(), vec![]);
    }

    #[test]
    fn refuses_bad_magic_version_and_cluster_bits() {
        let mut b = v3_header();
        b[7] = 1;
        assert_eq!(Header::parse(&b), Err(FormatError::LegacyQcowV1));
        b[7] = 4;
        assert_eq!(Header::parse(&b), Err(FormatError::UnsupportedVersion(4)));
        let mut b = v3_header();
        b[23] = 22;
        assert_eq!(Header::parse(&b), Err(FormatError::ClusterBits(22)));
        b[23] = 8;
        assert_eq!(Header::parse(&b), Err(FormatError::ClusterBits(8)));
        assert_eq!(
            Header::parse(b"QFI"),
            Err(truncated("qcow2 header", 0, 8, 3))
        );
        assert_eq!(Header::parse(&[0u8; 200]), Err(FormatError::BadMagic));
        assert!(matches!(
            Header::parse(&v3_header()[..100]),
            Err(FormatError::Truncated { .. })
        ));
    }

    #[test]
    fn walks_extensions_and_names_unknown_bits() {
        let mut b = v3_header();
        // Feature table naming incompatible bit 63.
        b[112..116].copy_from_slice(&ext::FEATURE_TABLE.to_be_bytes());
        b[116..120].copy_from_slice(&48u32.to_be_bytes());
        b[120] = 0;
        b[121] = 63;
        b[122..134].copy_from_slice(b"Test feature");
        b[72] = 0x80;
        let h = Header::parse(&b).unwrap();
        assert_eq!(h.extensions.len(), 1);
        match h.validate() {
            Err(FormatError::UnknownIncompatible { mask, names }) => {
                assert_eq!(mask, 1 << 63);
                assert_eq!(names, "Test feature");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn extension_too_large_is_refused() {
        let mut b = v3_header();
        b[112..116].copy_from_slice(&0x1234_5678u32.to_be_bytes());
        b[116..120].copy_from_slice(&0x7fff_ffffu32.to_be_bytes());
        assert!(matches!(
            Header::parse(&b),
            Err(FormatError::ExtensionTooLarge { .. })
        ));
    }

    #[test]
    fn table_limits_follow_qemu() {
        let mut b = v3_header();
        b[36..40].copy_from_slice(&0xffff_ffffu32.to_be_bytes());
        let h = Header::parse(&b).unwrap();
        assert!(matches!(
            h.validate(),
            Err(FormatError::TableTooLarge { .. })
        ));
        let mut b = v3_header();
        b[24..32].copy_from_slice(&(1u64 << 62).to_be_bytes());
        assert!(matches!(
            Header::parse(&b).unwrap().validate(),
            Err(FormatError::ImageTooBig(_))
        ));
        let mut b = v3_header();
        b[60..64].copy_from_slice(&65537u32.to_be_bytes());
        assert!(Header::parse(&b).unwrap().validate().is_err());
        let mut b = v3_header();
        b[56..60].copy_from_slice(&0xffff_ffffu32.to_be_bytes());
        assert!(Header::parse(&b).unwrap().validate().is_err());
    }
}
