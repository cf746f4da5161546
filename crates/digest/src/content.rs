//! The guest-content digest: a sha256 of the guest view and a chunk manifest
//! with a Merkle root that does not depend on the container's layout.

use rayon::prelude::*;
use sha2::{Digest as _, Sha256};

use crate::DigestError;
use qvet_image::Disk;

/// Prefix of the printed root: `qvet-content-v1:<hex>`.
pub const CONTENT_PREFIX: &str = "qvet-content-v1";
/// Guest bytes per manifest chunk.
pub const CHUNK: u64 = 1 << 20;
/// Chunks read per parallel batch.
const BATCH: usize = 32;
const MANIFEST_MAGIC: &[u8; 8] = b"QVETMAN1";

/// Hashes of fixed-size guest chunks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Guest size.
    pub virtual_size: u64,
    /// Chunk size.
    pub chunk_size: u64,
    /// sha256 of each chunk (the last one may be short).
    pub chunks: Vec<[u8; 32]>,
}

/// The content identity of a guest view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentDigest {
    /// sha256 of all guest bytes, hex.
    pub sha256: String,
    /// `qvet-content-v1:<hex>` Merkle root over the manifest.
    pub root: String,
    /// The manifest.
    pub manifest: Manifest,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Manifest {
    /// The Merkle root, as `qvet-content-v1:<hex>`. It binds the virtual size
    /// and chunk size, so equal roots mean equal guest bytes.
    pub fn root(&self) -> String {
        let mut level: Vec<[u8; 32]> = self.chunks.clone();
        while level.len() > 1 {
            level = level
                .chunks(2)
                .map(|pair| match pair {
                    [a, b] => {
                        let mut h = Sha256::new();
                        h.update([1u8]);
                        h.update(a);
                        h.update(b);
                        h.finalize().into()
                    }
                    [a] => *a,
                    _ => [0u8; 32],
                })
                .collect();
        }
        let mut h = Sha256::new();
        h.update(CONTENT_PREFIX.as_bytes());
        h.update(self.virtual_size.to_be_bytes());
        h.update(self.chunk_size.to_be_bytes());
        h.update(level.first().copied().unwrap_or([0u8; 32]));
        format!("{CONTENT_PREFIX}:{}", hex(&h.finalize()))
    }

    /// Serialises the manifest (magic, sizes, hashes).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(24 + 32 * self.chunks.len());
        out.extend_from_slice(MANIFEST_MAGIC);
        out.extend_from_slice(&self.virtual_size.to_be_bytes());
        out.extend_from_slice(&self.chunk_size.to_be_bytes());
        for c in &self.chunks {
            out.extend_from_slice(c);
        }
        out
    }

    /// Parses [`Manifest::to_bytes`] output.
    ///
    /// # Errors
    /// [`DigestError::Manifest`] on a bad magic or inconsistent sizes.
    pub fn from_bytes(b: &[u8]) -> Result<Self, DigestError> {
        let bad = |why: &str| DigestError::Manifest(why.to_string());
        if b.get(..8) != Some(MANIFEST_MAGIC.as_slice()) {
            return Err(bad("bad magic"));
        }
        let u64_at = |o: usize| -> Result<u64, DigestError> {
            let s: [u8; 8] = b
                .get(o..o + 8)
                .and_then(|s| s.try_into().ok())
                .ok_or_else(|| bad("truncated"))?;
            Ok(u64::from_be_bytes(s))
        };
        let virtual_size = u64_at(8)?;
        let chunk_size = u64_at(16)?;
        if chunk_size == 0 {
            return Err(bad("zero chunk size"));
        }
        let rest = b.get(24..).unwrap_or_default();
        let expected = virtual_size.div_ceil(chunk_size);
        if rest.len() % 32 != 0 || (rest.len() / 32) as u64 != expected {
            return Err(bad("chunk count does not match the virtual size"));
        }
        let chunks = rest
            .chunks_exact(32)
            .map(|c| {
                let mut a = [0u8; 32];
                a.copy_from_slice(c);
                a
            })
            .collect();
        Ok(Self {
            virtual_size,
            chunk_size,
            chunks,
        })
    }

    /// Indices of chunks that differ from `other` (different sizes: every
    /// chunk past the shorter one differs).
    pub fn differing_chunks(&self, other: &Self) -> Vec<u64> {
        let n = self.chunks.len().max(other.chunks.len());
        (0..n)
            .filter(|&i| self.chunks.get(i) != other.chunks.get(i))
            .map(|i| i as u64)
            .collect()
    }
}

/// Computes the content digest of `disk`'s guest view, reading it once.
///
/// # Errors
/// Read errors of the guest view (e.g. an unopened backing file).
pub fn content_digest(
    disk: &Disk,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<ContentDigest, DigestError> {
    let size = disk.size();
    let count = size.div_ceil(CHUNK);
    let mut full = Sha256::new();
    let mut chunks = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
    let mut bufs: Vec<Vec<u8>> = Vec::new();
    let mut first = 0u64;
    while first < count {
        let n = (count - first).min(BATCH as u64);
        bufs.resize_with(n as usize, Vec::new);
        let hashes: Vec<Result<[u8; 32], DigestError>> = bufs
            .par_iter_mut()
            .enumerate()
            .map(|(i, buf)| {
                let start = (first + i as u64) * CHUNK;
                let len = CHUNK.min(size - start);
                buf.resize(len as usize, 0);
                disk.read_at(start, buf)?;
                Ok(Sha256::digest(&buf[..]).into())
            })
            .collect();
        for (h, buf) in hashes.into_iter().zip(&bufs) {
            chunks.push(h?);
            full.update(buf);
        }
        first += n;
        progress((first * CHUNK).min(size));
    }
    let manifest = Manifest {
        virtual_size: size,
        chunk_size: CHUNK,
        chunks,
    };
    Ok(ContentDigest {
        sha256: hex(&full.finalize()),
        root: manifest.root(),
        manifest,
    })
}
