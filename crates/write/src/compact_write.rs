//! Executing a compaction [`Plan`]: kept clusters are read and encoded
//! (compressed with `-c`) in parallel, batch by batch, and handed to the
//! qcow2 writer in guest order, so the file is the same whatever the
//! number of threads. Clusters that read as zeros are dropped then
//! ([`Category::ZeroData`]). A dry run goes through the same pipeline
//! without a file, so its sizes are the real ones.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use qvet_image::{Disk, Format, OpenOptions};
use rayon::prelude::*;

use crate::compact::{apply_zero_fill, Category, CompactError, CompactOptions, Plan};
use crate::proof::{prove, Proof};
use crate::qcow2_out::{encode, Bound, Encoded, Qcow2Writer, Sink, WriterStats};
use crate::{same_file, temp_beside, write_err, WriteError};

/// Guest bytes read per work item (at least one cluster).
const RUN: u64 = 2 << 20;
/// Work items per parallel batch (bounds memory to about 32 MiB of input).
const BATCH: usize = 16;
/// Bytes written between background `fdatasync` calls.
const BACKGROUND_SYNC: u64 = 64 << 20;

/// What writing produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WriteOutcome {
    /// The qcow2 writer's figures (file size included).
    pub stats: WriterStats,
    /// Guest bytes read.
    pub bytes_read: u64,
    /// Clusters dropped because they read as zeros.
    pub zero_clusters: u64,
}

/// Work items: `(guest offset, length)` pieces of the kept ranges, each a
/// whole number of clusters (except at the virtual end).
fn items(plan: &Plan) -> Vec<(u64, u64)> {
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

/// Runs the pipeline into `sink`; updates the plan's zero-data figures.
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
    let cs = plan.cluster_size;
    let csz = usize::try_from(cs).map_err(|_| CompactError::Geometry("cluster size".into()))?;
    let mut writer = Qcow2Writer::new(
        sink,
        opts.cluster_bits,
        plan.virtual_size,
        opts.codec,
        bound(plan),
    )?;
    let done = AtomicU64::new(0);
    let mut outcome = WriteOutcome::default();
    let work = items(plan);
    for batch in work.chunks(BATCH) {
        let encoded: Vec<Vec<(u64, Option<Encoded>)>> = batch
            .par_iter()
            .map(
                |&(start, len)| -> Result<Vec<(u64, Option<Encoded>)>, CompactError> {
                    let mut buf = vec![0u8; usize::try_from(len).unwrap_or(0)];
                    disk.read_at(start, &mut buf)?;
                    apply_zero_fill(&plan.zero_fill, start, &mut buf);
                    let mut out = Vec::new();
                    for (k, chunk) in (0u64..).zip(buf.chunks(csz)) {
                        let index = start / cs + k;
                        if chunk.iter().all(|&b| b == 0) {
                            out.push((index, None));
                        } else {
                            let mut data = chunk.to_vec();
                            data.resize(csz, 0);
                            out.push((index, Some(encode(opts.codec, data))));
                        }
                    }
                    progress(done.fetch_add(len, Ordering::Relaxed) + len);
                    Ok(out)
                },
            )
            .collect::<Result<_, _>>()?;
        for &(_, len) in batch {
            outcome.bytes_read += len;
        }
        for (index, cluster) in encoded.into_iter().flatten() {
            match cluster {
                Some(c) => writer.push(index, c)?,
                None => {
                    outcome.zero_clusters += 1;
                    let off = index * cs;
                    let len = cs.min(plan.virtual_size.saturating_sub(off));
                    if let Some(r) = plan.region_of(off).and_then(|i| plan.regions.get_mut(i)) {
                        *r.dropped.entry(Category::ZeroData).or_insert(0) += len;
                    }
                }
            }
        }
    }
    outcome.stats = writer.finish()?;
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
    let (tmp, dir) = temp_beside(path)?;
    let file = tmp.as_file();
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
        tmp.path(),
        &OpenOptions {
            format: Some(Format::Qcow2),
            ..OpenOptions::default()
        },
    )?;
    let out = Arc::new(out);
    let (proof, synced) = std::thread::scope(|scope| {
        let sync = scope.spawn(|| file.sync_all());
        let proof = prove(disk, &out, plan);
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
    crate::persist(tmp, path, dir, overwrite)?;
    Ok(CompactOutcome { write, proof })
}
