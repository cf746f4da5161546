//! `qvet-digest`: what an image's bytes hash to.
//!
//! Two identities (see `../shared/reference/domain.md` §1.7):
//! * the **file digests** (md5, sha1, sha256, sha512, blake3) of the container
//!   as stored, computed from one read of the file, the algorithms in
//!   parallel ([`digest_file`]);
//! * the **guest-content digest** ([`content_digest`]): the sha256 of the guest
//!   view (equal to `qemu-img convert -O raw IMG OUT; sha256sum OUT`) and a
//!   chunk manifest whose Merkle root is the same for the same guest bytes in
//!   any container layout (raw, any cluster size, compressed or not, backing
//!   chains); [`content_manifest`] computes the manifest and root alone.

use std::collections::BTreeMap;
use std::fmt;
use std::io;

use qvet_image::{ByteSource, Disk, ImageError};

/// A digest algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Algo {
    /// MD5 (GNS3 registry, Cisco, Glance `checksum`).
    Md5,
    /// SHA-1.
    Sha1,
    /// SHA-256.
    Sha256,
    /// SHA-512 (Cisco, Arista, Glance `os_hash_value`).
    Sha512,
    /// BLAKE3.
    Blake3,
}

impl Algo {
    /// Every algorithm, in output order.
    pub const ALL: [Algo; 5] = [
        Algo::Md5,
        Algo::Sha1,
        Algo::Sha256,
        Algo::Sha512,
        Algo::Blake3,
    ];

    /// Lower-case name ("md5", "sha256", …).
    pub fn name(self) -> &'static str {
        match self {
            Self::Md5 => "md5",
            Self::Sha1 => "sha1",
            Self::Sha256 => "sha256",
            Self::Sha512 => "sha512",
            Self::Blake3 => "blake3",
        }
    }

    /// Parses a name ("md5", "SHA-256", "sha512" …).
    pub fn from_name(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().replace('-', "").as_str() {
            "md5" => Some(Self::Md5),
            "sha1" => Some(Self::Sha1),
            "sha256" => Some(Self::Sha256),
            "sha512" => Some(Self::Sha512),
            "blake3" | "b3" => Some(Self::Blake3),
            _ => None,
        }
    }

    /// Hex length of a digest of this algorithm.
    pub fn hex_len(self) -> usize {
        match self {
            Self::Md5 => 32,
            Self::Sha1 => 40,
            Self::Sha256 | Self::Blake3 => 64,
            Self::Sha512 => 128,
        }
    }
}

impl fmt::Display for Algo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Digests of a file's bytes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FileDigests {
    /// Bytes hashed.
    pub size: u64,
    /// Lower-case hex digest per requested algorithm.
    pub digests: BTreeMap<Algo, String>,
}

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DigestError {
    /// Reading the file failed.
    #[error("reading at offset {offset:#x}: {error}")]
    Io {
        /// Offset.
        offset: u64,
        /// OS error.
        error: io::Error,
    },
    /// Reading the guest view failed.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// A stored manifest could not be parsed.
    #[error("invalid manifest: {0}")]
    Manifest(String),
    /// The guest is too large for a content digest (its manifest would not
    /// fit the memory bound).
    #[error("virtual size {size} bytes exceeds the content-digest limit of {limit} bytes")]
    TooLarge {
        /// Virtual size.
        size: u64,
        /// The limit ([`MAX_VIRTUAL_SIZE`]).
        limit: u64,
    },
}

/// Lower-case hex of `b`.
pub(crate) fn hex(b: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for &x in b {
        for nibble in [x >> 4, x & 15] {
            s.push(char::from(
                DIGITS.get(usize::from(nibble)).copied().unwrap_or(b'0'),
            ));
        }
    }
    s
}

mod content;
mod file;

pub use content::{
    content_digest, content_manifest, ContentDigest, Manifest, CHUNK, CONTENT_PREFIX,
    MAX_POOL_BYTES, MAX_VIRTUAL_SIZE,
};
pub use file::digest_file;

/// Convenience: hashes a guest view of a whole disk (not a file).
pub fn size_of(disk: &Disk) -> u64 {
    disk.size()
}

/// Convenience re-export for callers holding a byte source.
pub type Source = dyn ByteSource;
