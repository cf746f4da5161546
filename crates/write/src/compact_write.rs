//! Executing a compaction [`Plan`]: kept clusters are read and encoded
//! (compressed with `-c`) in parallel, batch by batch, and handed to the
//! qcow2 writer in guest order, so the file is the same whatever the
//! number of threads. Clusters that read as zeros are dropped then
//! ([`Category::ZeroData`]). A dry run goes through the same pipeline
//! without a file, so its sizes are the real ones.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use qvet_image::{Disk, Format, OpenOptions};
use rayon::prelude::*;

use crate::compact::{apply_zero_fill, Category, CompactError, CompactOptions, Plan};
use crate::proof::{prove, Proof};
use crate::qcow2_out::{
    area_clusters, encode, Bound, Codec, Encoded, Qcow2Writer, Sink, WriterStats,
};
use crate::staging::Staged;
use crate::{overlapped, same_file, write_err, BufferPool, WriteError};

/// Guest bytes read per work item (at least one cluster).
const RUN: u64 = 2 << 20;
/// Work items per parallel batch. Two batches are in flight (one being
/// read and encoded while the previous one is written), so memory stays
/// near 2 × 8 × [`RUN`] = 32 MiB of input.
const BATCH: usize = 8;
/// Bytes written between background `fdatasync` calls.
const BACKGROUND_SYNC: u64 = 64 << 20;

/// What writing produced.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WriteOutcome {
    /// The qcow2 writer's figures (file size included).
    pub stats: WriterStats,
    /// Guest bytes read.
    pub bytes_read: u64,
    /// Clusters dropped because they read as zeros.
    pub zero_clusters: u64,
    /// The input's bytes as written, piece by piece: what the proof
    /// re-reads from the output and compares (see [`crate::proof`]).
    pub pieces: Vec<PieceDigest>,
}

/// The digest of one piece of kept guest bytes (its offset, length and
/// bytes, free space zero-filled as written), taken while the piece was
/// read for writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PieceDigest {
    /// Guest offset.
    pub start: u64,
    /// Length in bytes.
    pub len: u64,
    /// The digest ([`piece_digest`]).
    pub digest: u128,
}

/// How the kept bytes' digest that reports print is made: each 2 MiB
/// piece is digested with [`piece_digest`] (XXH3-128), and the printed
/// digest is BLAKE3 over those piece digests in guest order.
pub const PIECE_DIGEST: &str = "blake3(xxh3-128 per piece)";

/// The digest of a piece: XXH3-128 over its offset and length
/// (little-endian u64s) and its bytes. The proof compares our own output
/// with our own reading of the input, where only accidental differences
/// can occur: a 128-bit non-cryptographic hash detects them and runs at
/// memory speed (about six times BLAKE3's), which the two passes over
/// every kept byte need.
pub fn piece_digest(start: u64, bytes: &[u8]) -> u128 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&start.to_le_bytes());
    h.update(&(bytes.len() as u64).to_le_bytes());
    h.update(bytes);
    h.digest128()
}

/// Work items: `(guest offset, length)` pieces of the kept ranges, each a
/// whole number of clusters (except at the virtual end).
pub(crate) fn pieces_of(plan: &Plan) -> Vec<(u64, u64)> {
    let run = RUN.max(plan.cluster_size);
    let mut out = Vec::new();
    for &(s, l) in &plan.keep {
        let end = s.saturating_add(l);
        let mut pos = s;
        while pos < end {
            let n = run.min(end - pos);
            out.push((pos, n));
            pos += n;
        }
    }
    out
}

/// The clusters and L2 tables the kept ranges can need at most.
fn bound(plan: &Plan) -> Bound {
    let cs = plan.cluster_size;
    let per_l2 = cs.saturating_mul(cs / 8).max(1);
    let mut b = Bound::default();
    let mut last_l2: Option<u64> = None;
    for &(s, l) in &plan.keep {
        if l == 0 {
            continue;
        }
        let e = s.saturating_add(l);
        b.data_clusters += e.div_ceil(cs) - s / cs;
        let (first, last) = (s / per_l2, (e - 1) / per_l2);
        let new_first = if last_l2 == Some(first) {
            first + 1
        } else {
            first
        };
        b.l2_tables += (last + 1).saturating_sub(new_first);
        last_l2 = Some(last);
    }
    b
}

/// One work item, read and ready for the writer.
struct Piece {
    start: u64,
    len: u64,
    digest: u128,
    body: Body,
}

enum Body {
    /// Uncompressed: the bytes as read, and which clusters read as zeros.
    Raw { bytes: Vec<u8>, zero: Vec<bool> },
    /// Compressed (or not worth it) cluster by cluster; `None` reads as zeros.
    Encoded(Vec<Option<Encoded>>),
}

/// Reads one item, zero-fills free space, digests it, finds zero
/// clusters and (with a codec) compresses the others.
fn read_piece(
    disk: &Disk,
    plan: &Plan,
    codec: Option<Codec>,
    pool: &BufferPool,
    (start, len): (u64, u64),
) -> Result<Piece, CompactError> {
    let cs = usize::try_from(plan.cluster_size)
        .map_err(|_| CompactError::Geometry("cluster size".into()))?;
    let mut bytes = pool.take(usize::try_from(len).unwrap_or(0));
    disk.read_at(start, &mut bytes)?;
    apply_zero_fill(&plan.zero_fill, start, &mut bytes);
    let digest = piece_digest(start, &bytes);
    let zero: Vec<bool> = bytes
        .chunks(cs)
        .map(|c| c.iter().all(|&b| b == 0))
        .collect();
    let body = match codec {
        None => Body::Raw { bytes, zero },
        Some(_) => {
            // Cluster by cluster on the pool (nested in the per-piece
            // parallelism): a batch ends when its last cluster is encoded,
            // not its slowest piece, so no core idles at a batch's tail.
            let clusters = bytes
                .par_chunks(cs)
                .zip(&zero)
                .map(|(c, &z)| {
                    (!z).then(|| {
                        let mut data = c.to_vec();
                        data.resize(cs, 0);
                        encode(codec, data)
                    })
                })
                .collect();
            pool.give(bytes);
            Body::Encoded(clusters)
        }
    };
    Ok(Piece {
        start,
        len,
        digest,
        body,
    })
}

/// Hands a batch of pieces to the writer, in guest order.
/// Clusters that read as zeros are counted, by region, in `zero_data`.
fn store(
    writer: &mut Qcow2Writer<'_>,
    plan: &Plan,
    outcome: &mut WriteOutcome,
    zero_data: &mut BTreeMap<usize, u64>,
    pool: &BufferPool,
    batch: Vec<Piece>,
) -> Result<(), CompactError> {
    let cs = plan.cluster_size;
    let csz = usize::try_from(cs).map_err(|_| CompactError::Geometry("cluster size".into()))?;
    let mut zero_clusters = 0u64;
    let mut zero_at = |index: u64| {
        let off = index * cs;
        let len = cs.min(plan.virtual_size.saturating_sub(off));
        if let Some(r) = plan.region_of(off) {
            *zero_data.entry(r).or_insert(0) += len;
        }
        zero_clusters += 1;
    };
    for piece in batch {
        let first = piece.start / cs;
        match piece.body {
            Body::Raw { bytes, zero } => {
                // Runs of non-zero clusters go to the file in one write.
                let mut k = 0usize;
                while k < zero.len() {
                    if zero.get(k).copied().unwrap_or(true) {
                        zero_at(first + k as u64);
                        k += 1;
                        continue;
                    }
                    let end = zero
                        .get(k..)
                        .and_then(|z| z.iter().position(|&z| z))
                        .map_or(zero.len(), |n| k + n);
                    let from = k.saturating_mul(csz);
                    let to = end.saturating_mul(csz).min(bytes.len());
                    writer.push_uncompressed_run(
                        first + k as u64,
                        bytes.get(from..to).unwrap_or_default(),
                    )?;
                    k = end;
                }
                pool.give(bytes);
            }
            Body::Encoded(clusters) => {
                for (k, c) in (0u64..).zip(clusters) {
                    match c {
                        Some(c) => writer.push(first + k, c)?,
                        None => zero_at(first + k),
                    }
                }
            }
        }
        outcome.bytes_read += piece.len;
        outcome.pieces.push(PieceDigest {
            start: piece.start,
            len: piece.len,
            digest: piece.digest,
        });
    }
    outcome.zero_clusters += zero_clusters;
    Ok(())
}

/// Runs the pipeline into `sink`; updates the plan's zero-data figures.
/// Batch `n + 1` is read and encoded (in parallel) while batch `n` is
/// written, so reading and writing overlap; the file does not depend on
/// the thread count.
///
/// # Errors
/// Read errors, writer errors.
pub fn write_plan(
    disk: &Disk,
    plan: &mut Plan,
    opts: &CompactOptions,
    sink: Sink<'_>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<WriteOutcome, CompactError> {
    // An encrypted input is written encrypted again, with its own header.
    let copy = match disk.top().and_then(|l| l.qcow2()) {
        Some(q) => q.encryption_to_copy()?,
        None => None,
    };
    let mut b = bound(plan);
    b.other_clusters = area_clusters(copy.as_ref(), plan.cluster_size);
    let mut writer = Qcow2Writer::new(sink, opts.cluster_bits, plan.virtual_size, opts.codec, b)?;
    if let Some(c) = &copy {
        writer.encrypt_as(c)?;
    }
    let done = AtomicU64::new(0);
    let mut outcome = WriteOutcome::default();
    let work = pieces_of(plan);
    let pool = BufferPool::default();
    let read_batch = |batch: &[(u64, u64)]| -> Result<Vec<Piece>, CompactError> {
        batch
            .par_iter()
            .map(|&item| {
                let p = read_piece(disk, plan, opts.codec, &pool, item)?;
                progress(done.fetch_add(item.1, Ordering::Relaxed) + item.1);
                Ok(p)
            })
            .collect()
    };
    let mut zero_data: BTreeMap<usize, u64> = BTreeMap::new();
    overlapped(work.chunks(BATCH), read_batch, |pieces| {
        store(
            &mut writer,
            plan,
            &mut outcome,
            &mut zero_data,
            &pool,
            pieces,
        )
    })?;
    outcome.stats = writer.finish()?;
    for (region, bytes) in zero_data {
        if let Some(r) = plan.regions.get_mut(region) {
            *r.dropped.entry(Category::ZeroData).or_insert(0) += bytes;
        }
    }
    Ok(outcome)
}

/// The result of [`compact_to_file`].
#[derive(Debug, Clone)]
pub struct CompactOutcome {
    /// What was written.
    pub write: WriteOutcome,
    /// What was proven.
    pub proof: Proof,
}

/// Writes `plan` to a new file at `path` atomically (temporary file beside
/// it, `fsync`, proof, rename, directory `fsync`). When the proof fails the
/// temporary file is removed and nothing appears at `path`.
///
/// # Errors
/// [`WriteError::IsInput`], [`WriteError::Exists`], write errors,
/// [`CompactError::ProofFailed`].
pub fn compact_to_file(
    disk: &Arc<Disk>,
    plan: &mut Plan,
    opts: &CompactOptions,
    path: &Path,
    overwrite: bool,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<CompactOutcome, CompactError> {
    if disk.opened_files().iter().any(|p| same_file(p, path)) {
        return Err(WriteError::IsInput(path.to_path_buf()).into());
    }
    if !overwrite && std::fs::symlink_metadata(path).is_ok() {
        return Err(WriteError::Exists(path.to_path_buf()).into());
    }
    let staged = Staged::beside(path, &disk.opened_files())?;
    let file = staged.file();
    // Data is flushed in the background while writing goes on, and the
    // final fsync runs while the proof reads: neither waits for the other.
    let done = AtomicU64::new(0);
    let finished = std::sync::atomic::AtomicBool::new(false);
    let write = std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut synced = 0u64;
            while !finished.load(Ordering::Acquire) {
                std::thread::sleep(std::time::Duration::from_millis(20));
                let now = done.load(Ordering::Relaxed);
                if now.saturating_sub(synced) >= BACKGROUND_SYNC {
                    // Errors surface in the final sync.
                    let _ = file.sync_data();
                    synced = now;
                }
            }
        });
        let report = |n: u64| {
            done.store(n, Ordering::Relaxed);
            progress(n);
        };
        let r = write_plan(disk, plan, opts, Sink::File(file), &report);
        finished.store(true, Ordering::Release);
        r
    })?;
    let out = Disk::open(
        &staged.path(),
        &OpenOptions {
            format: Some(Format::Qcow2),
            key: opts.key.clone(),
            ..OpenOptions::default()
        },
    )?;
    let out = Arc::new(out);
    let (proof, synced) = std::thread::scope(|scope| {
        let sync = scope.spawn(|| file.sync_all());
        let proof = prove(disk, &out, plan, &write.pieces);
        (proof, sync.join())
    });
    let proof = proof?;
    match synced {
        Ok(r) => r.map_err(write_err(path))?,
        Err(_) => {
            return Err(WriteError::Write {
                path: path.to_path_buf(),
                error: std::io::Error::other("fsync thread failed"),
            }
            .into())
        }
    }
    staged.persist(path, overwrite)?;
    Ok(CompactOutcome { write, proof })
}
