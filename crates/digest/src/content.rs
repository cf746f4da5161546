//! The guest-content digest: a sha256 of the guest view and a chunk manifest
//! with a Merkle root that does not depend on the container's layout.
//!
//! # Definition (`qvet-content-v1`)
//!
//! * The guest view (what `qemu-img convert -O raw` writes) is cut into
//!   [`CHUNK`] (1 MiB) chunks; the last one may be short.
//! * Leaf *i* is the plain BLAKE3 hash of chunk *i*, so any leaf can be
//!   checked with `dd if=guest.raw bs=1M skip=i count=1 | b3sum`. (Leaf
//!   hashing touches every guest byte and runs beside decompression; BLAKE3
//!   does it about 2.5 times faster per core than SHA-256 with SHA-NI.)
//! * Leaves are paired left to right, each pair hashed as
//!   `sha256(0x01 ‖ left ‖ right)`; an odd last node moves up unchanged; this
//!   repeats until one node is left (the tree's shape depends only on the
//!   chunk count, which the root binds).
//! * root = `sha256("qvet-content-v1" ‖ virtual size (u64 BE) ‖ chunk size
//!   (u64 BE) ‖ top node)` (top node: 32 zero bytes for an empty disk),
//!   printed as `qvet-content-v1:<hex>`.
//!
//! Equal roots therefore mean equal guest bytes, whatever the container
//! (raw, any qcow2 cluster size, compressed or not, backing chains); a
//! manifest stored with one image tells which chunks of another differ.
//!
//! # How it is computed
//!
//! The disk map (`qemu-img map`'s extents) tells which ranges read as zeros:
//! those chunks get a precomputed zero leaf without being read. The other
//! chunks are read (decompressed) and hashed by worker threads, in units of
//! at least one qcow2 cluster so that a compressed cluster is decoded once.
//! A read chunk that turns out to be all zeros also gets the zero leaf
//! without hashing. The calling thread puts the results back in guest order,
//! builds the manifest and, unless only the root is wanted, feeds every guest
//! byte to one sequential sha256 (known-zero ranges from a static zero
//! buffer). A bounded pool of buffers caps memory (see [`MAX_POOL_BYTES`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Mutex;

use sha2::{Digest as _, Sha256};

use crate::{hex, DigestError};
use qvet_image::map::{MapEntry, MapWalker};
use qvet_image::Disk;

/// Prefix of the printed root: `qvet-content-v1:<hex>`.
pub const CONTENT_PREFIX: &str = "qvet-content-v1";
/// Guest bytes per manifest chunk.
pub const CHUNK: u64 = 1 << 20;
/// Largest guest size whose content digest is computed (16 TiB: a manifest
/// of 512 MiB). Larger virtual sizes are refused instead of allocating.
pub const MAX_VIRTUAL_SIZE: u64 = 16 << 40;
/// Upper bound of the read buffers in flight.
pub const MAX_POOL_BYTES: u64 = 32 << 20;
/// Most worker threads used (each may also hold a cluster of decompression
/// scratch inside the image reader).
const MAX_WORKERS: usize = 8;
/// Most chunks covered by one zero-run job (keeps progress reports flowing
/// and the full hash's zero feeding interleaved with data).
const ZERO_RUN_CHUNKS: u64 = 1024;
const MANIFEST_MAGIC: &[u8; 8] = b"QVETMAN1";

/// Zeros fed to the full sha256 for known-zero ranges. A never-written
/// static: its pages all map the kernel's shared zero page, so reading it
/// stays in cache.
static ZEROS: [u8; 256 << 10] = [0u8; 256 << 10];

/// Hashes of fixed-size guest chunks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Guest size.
    pub virtual_size: u64,
    /// Chunk size.
    pub chunk_size: u64,
    /// BLAKE3 hash of each chunk (the last one may be short).
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

/// The leaf hash of a chunk.
fn leaf_hash(chunk: &[u8]) -> [u8; 32] {
    *blake3::hash(chunk).as_bytes()
}

/// The leaf of a chunk of `len` zero bytes.
fn zero_leaf(len: u64) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    let mut left = len;
    while left > 0 {
        let n = left.min(ZEROS.len() as u64);
        h.update(
            ZEROS
                .get(..usize::try_from(n).unwrap_or(0))
                .unwrap_or_default(),
        );
        left -= n;
    }
    *h.finalize().as_bytes()
}

/// Feeds `len` zero bytes to `h`.
fn feed_zeros(h: &mut Sha256, len: u64) {
    let mut left = len;
    while left > 0 {
        let n = left.min(ZEROS.len() as u64);
        h.update(
            ZEROS
                .get(..usize::try_from(n).unwrap_or(0))
                .unwrap_or_default(),
        );
        left -= n;
    }
}

/// Whether every byte of `b` is zero (fast: 64-byte blocks, early exit).
fn all_zero(b: &[u8]) -> bool {
    let mut blocks = b.chunks_exact(64);
    let body = blocks
        .by_ref()
        .all(|blk| blk.iter().fold(0u8, |acc, &x| acc | x) == 0);
    body && blocks.remainder().iter().all(|&x| x == 0)
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

    /// Guest range `(start, length)` of chunk `index`, if it exists.
    pub fn chunk_range(&self, index: u64) -> Option<(u64, u64)> {
        let start = index.checked_mul(self.chunk_size)?;
        (start < self.virtual_size).then(|| (start, self.chunk_size.min(self.virtual_size - start)))
    }

    /// How many chunks read as all zeros (known from their hash, so the
    /// count is the same for every container of the same guest bytes).
    pub fn zero_chunks(&self) -> u64 {
        if self.chunks.is_empty() || self.chunk_size == 0 {
            return 0;
        }
        let full = zero_leaf(self.chunk_size);
        let tail = self.virtual_size % self.chunk_size;
        let last = self.chunks.len() - 1;
        let mut n = 0u64;
        for (i, c) in self.chunks.iter().enumerate() {
            let zero = if i == last && tail != 0 {
                *c == zero_leaf(tail)
            } else {
                *c == full
            };
            n += u64::from(zero);
        }
        n
    }

    /// Serialises the manifest: `QVETMAN1`, virtual size and chunk size
    /// (u64 big-endian), then the 32-byte leaves in guest order.
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

/// Computes the content digest of `disk`'s guest view (full sha256 and
/// manifest), reading it once. `progress` receives the guest bytes done.
///
/// # Errors
/// Read errors of the guest view (e.g. an unopened backing file),
/// [`DigestError::TooLarge`].
pub fn content_digest(
    disk: &Disk,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<ContentDigest, DigestError> {
    let (sha256, manifest) = compute(disk, true, progress)?;
    Ok(ContentDigest {
        sha256: sha256.unwrap_or_default(),
        root: manifest.root(),
        manifest,
    })
}

/// Computes only the manifest (and so the root, [`Manifest::root`]) of
/// `disk`'s guest view, skipping the sequential full sha256: faster when
/// only the layout-independent identity is needed.
///
/// # Errors
/// As [`content_digest`].
pub fn content_manifest(
    disk: &Disk,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Manifest, DigestError> {
    compute(disk, false, progress).map(|(_, m)| m)
}

/// A piece of work, in guest order.
#[derive(Debug, Clone, Copy)]
struct Job {
    /// First chunk index.
    first: u64,
    /// Guest range.
    start: u64,
    len: u64,
    /// Known from the map to read as zeros.
    zero: bool,
}

/// Cuts the guest into jobs: read units of `unit` bytes (a multiple of
/// [`CHUNK`]), consecutive all-zero units merged into zero runs.
struct Planner<'a> {
    map: MapWalker<'a>,
    /// The map extent covering the planning position, if fetched.
    extent: Option<MapEntry>,
    size: u64,
    unit: u64,
    pos: u64,
    /// A unit already classified as data, waiting behind a zero run.
    held: Option<Job>,
    failed: bool,
}

impl<'a> Planner<'a> {
    fn new(disk: &'a Disk, unit: u64) -> Self {
        Self {
            map: disk.map(),
            extent: None,
            size: disk.size(),
            unit,
            pos: 0,
            held: None,
            failed: false,
        }
    }

    /// Whether `[start, end)` reads as zeros according to the map. Extents
    /// are consumed in order; `start` never goes backwards.
    fn is_zero(&mut self, start: u64, end: u64) -> Result<bool, DigestError> {
        let mut at = start;
        while at < end {
            let covers = |e: &MapEntry| e.start <= at && at < e.start.saturating_add(e.length);
            if !self.extent.as_ref().is_some_and(covers) {
                self.extent = loop {
                    match self.map.next() {
                        Some(Ok(e)) if e.start.saturating_add(e.length) <= at => {}
                        Some(Ok(e)) => break Some(e),
                        Some(Err(err)) => return Err(err.into()),
                        // The map ended early: let the reads decide.
                        None => return Ok(false),
                    }
                };
            }
            let Some(e) = self.extent.as_ref().filter(|e| covers(e)) else {
                return Ok(false);
            };
            if !e.zero {
                return Ok(false);
            }
            at = e.start.saturating_add(e.length).min(end);
        }
        Ok(true)
    }

    fn next_unit(&mut self) -> Result<Option<Job>, DigestError> {
        if self.pos >= self.size {
            return Ok(None);
        }
        let start = self.pos;
        let len = self.unit.min(self.size - start);
        let zero = self.is_zero(start, start + len)?;
        self.pos += len;
        Ok(Some(Job {
            first: start / CHUNK,
            start,
            len,
            zero,
        }))
    }

    fn next_job(&mut self) -> Result<Option<Job>, DigestError> {
        if self.failed {
            return Ok(None);
        }
        let r = self.plan();
        if r.is_err() {
            self.failed = true;
        }
        r
    }

    fn plan(&mut self) -> Result<Option<Job>, DigestError> {
        if let Some(j) = self.held.take() {
            return Ok(Some(j));
        }
        let Some(mut job) = self.next_unit()? else {
            return Ok(None);
        };
        if !job.zero {
            return Ok(Some(job));
        }
        while job.len < ZERO_RUN_CHUNKS * CHUNK {
            match self.next_unit()? {
                Some(n) if n.zero => job.len += n.len,
                Some(n) => {
                    self.held = Some(n);
                    break;
                }
                None => break,
            }
        }
        Ok(Some(job))
    }
}

/// A finished job, sent back to the collecting thread.
struct Done {
    job: Job,
    /// One leaf per chunk of the job.
    leaves: Vec<[u8; 32]>,
    /// The job's guest bytes (data jobs), or an unused pool buffer.
    buf: Vec<u8>,
}

/// Shared state of the workers.
struct Shared<'a> {
    disk: &'a Disk,
    planner: Mutex<Planner<'a>>,
    pool: Mutex<Receiver<Vec<u8>>>,
    stop: AtomicBool,
    /// The first failure, by guest offset.
    error: Mutex<Option<(u64, DigestError)>>,
    zero_chunk_leaf: [u8; 32],
}

impl Shared<'_> {
    fn fail(&self, at: u64, e: DigestError) {
        self.stop.store(true, Ordering::Release);
        if let Ok(mut slot) = self.error.lock() {
            if slot.as_ref().is_none_or(|(o, _)| at < *o) {
                *slot = Some((at, e));
            }
        }
    }

    fn leaf(&self, chunk: &[u8]) -> [u8; 32] {
        if all_zero(chunk) {
            if chunk.len() as u64 == CHUNK {
                self.zero_chunk_leaf
            } else {
                zero_leaf(chunk.len() as u64)
            }
        } else {
            leaf_hash(chunk)
        }
    }

    /// One worker: take a pool buffer, then the next job (in that order, so
    /// the lowest unfinished job always holds a buffer and the collector can
    /// always make progress), do it, send it back.
    fn work(&self, pool_home: &Sender<Vec<u8>>, results: &Sender<Done>) {
        loop {
            let buf = match self.pool.lock() {
                Ok(rx) => rx.recv().ok(),
                Err(_) => None,
            };
            let Some(mut buf) = buf else { return };
            if self.stop.load(Ordering::Acquire) {
                // Pass the buffer on so that a worker waiting for one wakes
                // up, sees the stop and leaves too.
                let _ = pool_home.send(buf);
                return;
            }
            let job = match self.planner.lock() {
                Ok(mut p) => {
                    let at = p.pos;
                    p.next_job().map_err(|e| (at, e))
                }
                Err(_) => Ok(None),
            };
            let job = match job {
                Ok(Some(j)) => j,
                Ok(None) => {
                    let _ = pool_home.send(buf);
                    return;
                }
                Err((at, e)) => {
                    self.fail(at, e);
                    let _ = pool_home.send(buf);
                    return;
                }
            };
            let leaves = if job.zero {
                let count = job.len.div_ceil(CHUNK);
                let tail = job.len % CHUNK;
                let mut v = vec![self.zero_chunk_leaf; usize::try_from(count).unwrap_or(0)];
                if tail != 0 {
                    if let Some(last) = v.last_mut() {
                        *last = zero_leaf(tail);
                    }
                }
                v
            } else {
                let n = usize::try_from(job.len).unwrap_or(0);
                if buf.len() < n {
                    buf.resize(n, 0);
                }
                let data = buf.get_mut(..n).unwrap_or_default();
                if let Err(e) = self.disk.read_at(job.start, data) {
                    self.fail(job.start, e.into());
                    let _ = pool_home.send(buf);
                    return;
                }
                data.chunks(CHUNK as usize).map(|c| self.leaf(c)).collect()
            };
            if results.send(Done { job, leaves, buf }).is_err() {
                return;
            }
        }
    }
}

/// Read-unit size for `disk`: one chunk, or one cluster of the largest
/// cluster size in the chain when that is bigger (2 MiB at most).
fn read_unit(disk: &Disk) -> u64 {
    disk.layers()
        .iter()
        .filter_map(|l| l.qcow2().map(|q| q.header().cluster_size()))
        .fold(CHUNK, u64::max)
        .min(2 << 20)
}

fn compute(
    disk: &Disk,
    full: bool,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(Option<String>, Manifest), DigestError> {
    let size = disk.size();
    if size > MAX_VIRTUAL_SIZE {
        return Err(DigestError::TooLarge {
            size,
            limit: MAX_VIRTUAL_SIZE,
        });
    }
    let unit = read_unit(disk);
    let workers = std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(2)
        .clamp(1, MAX_WORKERS);
    let pool_size = usize::try_from(MAX_POOL_BYTES / unit)
        .unwrap_or(4)
        .min(2 * workers + 4)
        .max(2);
    let (pool_home, pool_rx) = mpsc::channel::<Vec<u8>>();
    for _ in 0..pool_size {
        let _ = pool_home.send(Vec::new());
    }
    let shared = Shared {
        disk,
        planner: Mutex::new(Planner::new(disk, unit)),
        pool: Mutex::new(pool_rx),
        stop: AtomicBool::new(false),
        error: Mutex::new(None),
        zero_chunk_leaf: zero_leaf(CHUNK),
    };
    let count = size.div_ceil(CHUNK);
    // Grows as results arrive; the reservation is capped so that a huge
    // sparse disk does not reserve its whole manifest up front.
    let mut leaves: Vec<[u8; 32]> =
        Vec::with_capacity(usize::try_from(count.min(1 << 20)).unwrap_or(0));
    let mut sha = full.then(Sha256::new);
    let (res_tx, res_rx) = mpsc::channel::<Done>();
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let tx = res_tx.clone();
            let home = pool_home.clone();
            let shared = &shared;
            scope.spawn(move || shared.work(&home, &tx));
        }
        drop(res_tx);
        // Collect in guest order.
        let mut pending: BTreeMap<u64, Done> = BTreeMap::new();
        let mut next_chunk = 0u64;
        let mut done_bytes = 0u64;
        for d in res_rx {
            pending.insert(d.job.first, d);
            while let Some(d) = pending.remove(&next_chunk) {
                if let Some(h) = sha.as_mut() {
                    if d.job.zero {
                        feed_zeros(h, d.job.len);
                    } else {
                        let n = usize::try_from(d.job.len).unwrap_or(0);
                        h.update(d.buf.get(..n).unwrap_or_default());
                    }
                }
                leaves.extend_from_slice(&d.leaves);
                next_chunk += d.job.len.div_ceil(CHUNK);
                done_bytes += d.job.len;
                let _ = pool_home.send(d.buf);
                progress(done_bytes);
            }
        }
    });
    if let Some((_, e)) = shared.error.into_inner().ok().flatten() {
        return Err(e);
    }
    if leaves.len() as u64 != count {
        return Err(DigestError::Manifest(format!(
            "internal: {} of {count} chunks hashed",
            leaves.len()
        )));
    }
    let manifest = Manifest {
        virtual_size: size,
        chunk_size: CHUNK,
        chunks: leaves,
    };
    Ok((sha.map(|h| hex(&h.finalize())), manifest))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;
    use qvet_image::{Format, MemSource, OpenOptions};
    use std::sync::Arc;

    fn raw_disk(bytes: Vec<u8>) -> Disk {
        let opts = OpenOptions {
            format: Some(Format::Raw),
            ..OpenOptions::default()
        };
        Disk::from_source(Arc::new(MemSource(bytes)), "mem", &opts).unwrap()
    }

    /// The definition, computed the slow obvious way.
    fn reference(bytes: &[u8]) -> (String, Manifest) {
        let chunks = bytes
            .chunks(CHUNK as usize)
            .map(|c| *blake3::hash(c).as_bytes())
            .collect();
        (
            hex(&Sha256::digest(bytes)),
            Manifest {
                virtual_size: bytes.len() as u64,
                chunk_size: CHUNK,
                chunks,
            },
        )
    }

    fn pattern(len: usize) -> Vec<u8> {
        let mut v: Vec<u8> = (0..len).map(|i| (i * 7 + i / 4096) as u8).collect();
        // A zero stretch spanning whole chunks, and one inside a chunk.
        let z = (3 * CHUNK as usize).min(len);
        for b in v.iter_mut().take(z).skip(CHUNK as usize) {
            *b = 0;
        }
        v
    }

    #[test]
    fn matches_the_definition() {
        for len in [0usize, 1, 512, CHUNK as usize, 5 * CHUNK as usize + 4096] {
            let mut bytes = pattern(len);
            let disk = raw_disk(bytes.clone());
            // qemu shows raw files rounded up to whole 512-byte sectors.
            assert_eq!(disk.size(), (len as u64).div_ceil(512) * 512);
            bytes.resize(disk.size() as usize, 0);
            let got = content_digest(&disk, &|_| {}).unwrap();
            let (sha, m) = reference(&bytes);
            assert_eq!(got.sha256, sha, "len {len}");
            assert_eq!(got.manifest, m, "len {len}");
            assert_eq!(got.root, m.root());
            assert_eq!(content_manifest(&disk, &|_| {}).unwrap(), m);
        }
    }

    #[test]
    fn zero_chunks_are_counted_by_hash() {
        let mut bytes = vec![0u8; 4 * CHUNK as usize + 1024];
        bytes[CHUNK as usize + 5] = 1;
        let m = content_manifest(&raw_disk(bytes), &|_| {}).unwrap();
        assert_eq!(m.chunks.len(), 5);
        assert_eq!(m.zero_chunks(), 4);
        assert_eq!(m.chunks[4], zero_leaf(1024));
        assert_eq!(m.chunk_range(4), Some((4 * CHUNK, 1024)));
        assert_eq!(m.chunk_range(5), None);
    }

    #[test]
    fn one_byte_changes_the_root_and_names_the_chunk() {
        let a = pattern(4 * CHUNK as usize);
        let mut b = a.clone();
        b[2 * CHUNK as usize + 17] ^= 0x40;
        let ma = content_manifest(&raw_disk(a), &|_| {}).unwrap();
        let mb = content_manifest(&raw_disk(b), &|_| {}).unwrap();
        assert_ne!(ma.root(), mb.root());
        assert_eq!(ma.differing_chunks(&mb), vec![2]);
    }

    #[test]
    fn root_binds_the_size() {
        let a = content_manifest(&raw_disk(vec![0; 1024]), &|_| {}).unwrap();
        let b = content_manifest(&raw_disk(vec![0; 1536]), &|_| {}).unwrap();
        assert_ne!(a.root(), b.root());
        let e = content_manifest(&raw_disk(Vec::new()), &|_| {}).unwrap();
        assert!(e.chunks.is_empty());
        assert!(e.root().starts_with("qvet-content-v1:"));
    }

    #[test]
    fn manifest_round_trip_and_refusals() {
        let m = content_manifest(&raw_disk(pattern(3 * CHUNK as usize + 1)), &|_| {}).unwrap();
        let b = m.to_bytes();
        assert_eq!(Manifest::from_bytes(&b).unwrap(), m);
        assert!(Manifest::from_bytes(&b[..b.len() - 1]).is_err());
        assert!(Manifest::from_bytes(&b[..20]).is_err());
        let mut bad = b.clone();
        bad[0] = b'X';
        assert!(Manifest::from_bytes(&bad).is_err());
        let mut zero_chunk = b.clone();
        zero_chunk[16..24].copy_from_slice(&0u64.to_be_bytes());
        assert!(Manifest::from_bytes(&zero_chunk).is_err());
    }

    #[test]
    fn merkle_shape() {
        let leaf = |x: u8| [x; 32];
        let node = |a: [u8; 32], b: [u8; 32]| -> [u8; 32] {
            let mut h = Sha256::new();
            h.update([1u8]);
            h.update(a);
            h.update(b);
            h.finalize().into()
        };
        let top = |t: [u8; 32], size: u64| {
            let mut h = Sha256::new();
            h.update(CONTENT_PREFIX.as_bytes());
            h.update(size.to_be_bytes());
            h.update(CHUNK.to_be_bytes());
            h.update(t);
            format!("{CONTENT_PREFIX}:{}", hex(&h.finalize()))
        };
        let m = Manifest {
            virtual_size: 3 * CHUNK,
            chunk_size: CHUNK,
            chunks: vec![leaf(1), leaf(2), leaf(3)],
        };
        assert_eq!(
            m.root(),
            top(node(node(leaf(1), leaf(2)), leaf(3)), 3 * CHUNK)
        );
    }

    #[test]
    fn all_zero_detection() {
        assert!(all_zero(&[]));
        assert!(all_zero(&[0; 200]));
        let mut v = vec![0u8; 200];
        v[199] = 1;
        assert!(!all_zero(&v));
        v[199] = 0;
        v[3] = 1;
        assert!(!all_zero(&v));
    }

    #[test]
    fn refuses_absurd_sizes_without_allocating() {
        // A raw source that claims 32 TiB.
        #[derive(Debug)]
        struct Huge;
        impl qvet_image::ByteSource for Huge {
            fn len(&self) -> u64 {
                32 << 40
            }
            fn read_at(&self, _: u64, buf: &mut [u8]) -> std::io::Result<usize> {
                buf.fill(0);
                Ok(buf.len())
            }
        }
        let opts = OpenOptions {
            format: Some(Format::Raw),
            ..OpenOptions::default()
        };
        let disk = Disk::from_source(Arc::new(Huge), "huge", &opts).unwrap();
        assert!(matches!(
            content_manifest(&disk, &|_| {}),
            Err(DigestError::TooLarge { .. })
        ));
    }
}
