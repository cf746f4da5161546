//! The proof that a compacted image holds what the guest needs: the output
//! is re-read through qvet's own reader and compared with the input.
//!
//! 1. Every kept guest byte is equal. The input's bytes were digested
//!    (XXH3-128, piece by piece of 2 MiB, free space zero-filled) as they were
//!    read for writing; the output is re-read, piece by piece, and each
//!    digest must match. A mismatch re-reads the input's piece to name the
//!    first differing byte. The pieces must tile the plan's kept ranges.
//! 2. Every dropped cluster reads as zeros in the output (from its block
//!    status: nothing is allocated there).
//! 3. Everything outside the partitions (partition tables, boot code,
//!    gaps, the tail) is equal: read from both sides and compared.
//! 4. Every file of every filesystem qvet reads is equal in bytes and
//!    metadata: both trees are walked side by side (names, types, inode
//!    metadata, symlink targets, extended attributes). A regular file whose
//!    data ranges are the same on both sides and lie wholly inside kept
//!    ranges (proven equal by 1.) is proven by them; any other file (data in
//!    a dropped cluster, inline data, no range information) is read on both
//!    sides and compared. The walk runs beside 1.

use std::sync::Arc;

use qvet_guestfs::{FileSystem, FileType, NodeId};
use qvet_image::{ByteSource, Disk};
use qvet_volume::Window;
use rayon::prelude::*;

use crate::compact::{apply_zero_fill, Category, CompactError, Plan, Region};
use crate::compact_write::{piece_digest, pieces_of, PieceDigest, PIECE_DIGEST};
use crate::BufferPool;

/// Bytes compared per work item.
const CHUNK: u64 = 2 << 20;
/// Work items per parallel batch.
const BATCH: usize = 8;
/// Entries walked per filesystem, at most.
const MAX_ENTRIES: u64 = 10_000_000;

/// Equality of a set of guest ranges.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RangeProof {
    /// Ranges compared.
    pub ranges: usize,
    /// Bytes they span.
    pub bytes: u64,
    /// The algorithm of each piece's digest.
    pub algorithm: &'static str,
    /// Bytes read and compared (for kept ranges, all of them; outside the
    /// partitions, those non-zero on either side).
    pub compared: u64,
    /// The digest of each compared piece (offset, length, bytes) of the
    /// input, in guest order, chained with BLAKE3.
    pub digest_in: String,
    /// The same over the output.
    pub digest_out: String,
}

/// Equality of one filesystem's trees.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FsProof {
    /// Partition number.
    pub partition: u32,
    /// Filesystem kind.
    pub kind: String,
    /// Regular files compared.
    pub files: u64,
    /// Directories compared.
    pub dirs: u64,
    /// Symlinks and other nodes compared.
    pub others: u64,
    /// Regular files whose bytes were read and compared on both sides.
    pub files_read: u64,
    /// Regular files proven instead by their data ranges: the same on both
    /// sides and wholly inside kept guest ranges already proven equal.
    pub files_by_ranges: u64,
    /// File bytes compared (read, or covered by proven ranges).
    pub bytes: u64,
    /// BLAKE3 over paths, metadata and contents (input).
    pub digest_in: String,
    /// The same over the output.
    pub digest_out: String,
}

/// Everything proven.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Proof {
    /// Kept guest ranges.
    pub kept: RangeProof,
    /// Dropped bytes verified to read as zeros in the output.
    pub dropped_zero: u64,
    /// Bytes outside every partition.
    pub outside: RangeProof,
    /// Filesystems walked.
    pub filesystems: Vec<FsProof>,
    /// Partitions whose files could not be walked (bytes were still compared).
    pub not_walked: Vec<String>,
}

fn fail(msg: String) -> CompactError {
    CompactError::ProofFailed(msg)
}

/// Union of two sorted range lists.
fn union(a: &[(u64, u64)], b: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut all: Vec<(u64, u64)> = a.iter().chain(b.iter()).copied().collect();
    all.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (s, l) in all {
        let e = s.saturating_add(l);
        match out.last_mut() {
            Some((os, ol)) if s <= os.saturating_add(*ol) => {
                *ol = (*ol).max(e - *os);
            }
            _ => out.push((s, l)),
        }
    }
    out
}

/// Compares `ranges` of two disks (see [`RangeProof`]).
fn compare_ranges(
    a: &Disk,
    b: &Disk,
    ranges: &[(u64, u64)],
    zero_fill: &[(u64, u64)],
) -> Result<RangeProof, CompactError> {
    let mut p = RangeProof {
        algorithm: "blake3",
        ranges: ranges.len(),
        ..RangeProof::default()
    };
    let mut ha = blake3::Hasher::new();
    let mut hb = blake3::Hasher::new();
    let mut work: Vec<(u64, u64)> = Vec::new();
    for &(s, l) in ranges {
        p.bytes += l;
        let nz = union(&a.non_zero_ranges(s, l)?, &b.non_zero_ranges(s, l)?);
        for (ns, nl) in nz {
            let end = ns.saturating_add(nl);
            let mut pos = ns;
            while pos < end {
                let n = CHUNK.min(end - pos);
                work.push((pos, n));
                pos += n;
            }
        }
    }
    for batch in work.chunks(BATCH) {
        // Each chunk is compared and hashed (both sides) by its worker; the
        // chunk digests are chained in guest order.
        let sums: Vec<([u8; 32], [u8; 32])> = batch
            .par_iter()
            .map(
                |&(off, len)| -> Result<([u8; 32], [u8; 32]), CompactError> {
                    let n = usize::try_from(len).unwrap_or(0);
                    let (mut x, mut y) = (vec![0u8; n], vec![0u8; n]);
                    a.read_at(off, &mut x)?;
                    // Free space inside kept clusters must read as zeros.
                    apply_zero_fill(zero_fill, off, &mut x);
                    b.read_at(off, &mut y)
                        .map_err(|e| fail(format!("output unreadable at {off:#x}: {e}")))?;
                    if x != y {
                        let at = x.iter().zip(&y).position(|(p, q)| p != q).unwrap_or(0);
                        return Err(fail(format!(
                            "guest byte {:#x} differs",
                            off.saturating_add(at as u64)
                        )));
                    }
                    let digest = |d: &[u8]| {
                        let mut h = blake3::Hasher::new();
                        h.update(&off.to_le_bytes());
                        h.update(&len.to_le_bytes());
                        h.update(d);
                        *h.finalize().as_bytes()
                    };
                    Ok((digest(&x), digest(&y)))
                },
            )
            .collect::<Result<_, _>>()?;
        for (&(_, len), (x, y)) in batch.iter().zip(sums) {
            ha.update(&x);
            hb.update(&y);
            p.compared += len;
        }
    }
    p.digest_in = ha.finalize().to_hex().to_string();
    p.digest_out = hb.finalize().to_hex().to_string();
    Ok(p)
}

/// Compares the output's kept bytes with the digests `pieces` taken of the
/// input while writing (see the module docs, 1.).
fn compare_pieces(
    input: &Disk,
    output: &Disk,
    plan: &Plan,
    pieces: &[PieceDigest],
) -> Result<RangeProof, CompactError> {
    let expected = pieces_of(plan);
    if expected.len() != pieces.len()
        || expected
            .iter()
            .zip(pieces)
            .any(|(&(s, l), p)| s != p.start || l != p.len)
    {
        return Err(fail(
            "the pieces written do not tile the plan's kept ranges".into(),
        ));
    }
    let mut p = RangeProof {
        algorithm: PIECE_DIGEST,
        ranges: plan.keep.len(),
        bytes: plan.kept_bytes(),
        ..RangeProof::default()
    };
    let mut ha = blake3::Hasher::new();
    let mut hb = blake3::Hasher::new();
    let pool = BufferPool::default();
    for batch in pieces.chunks(BATCH) {
        let sums: Vec<u128> = batch
            .par_iter()
            .map(|piece| -> Result<u128, CompactError> {
                let mut y = pool.take(usize::try_from(piece.len).unwrap_or(0));
                output
                    .read_at(piece.start, &mut y)
                    .map_err(|e| fail(format!("output unreadable at {:#x}: {e}", piece.start)))?;
                let d = piece_digest(piece.start, &y);
                if d != piece.digest {
                    return Err(first_difference(input, plan, piece.start, &y));
                }
                pool.give(y);
                Ok(d)
            })
            .collect::<Result<_, _>>()?;
        for (piece, out) in batch.iter().zip(sums) {
            ha.update(&piece.digest.to_le_bytes());
            hb.update(&out.to_le_bytes());
            p.compared += piece.len;
        }
    }
    p.digest_in = ha.finalize().to_hex().to_string();
    p.digest_out = hb.finalize().to_hex().to_string();
    Ok(p)
}

/// The failure for an output piece `y` at `start` whose digest differs:
/// the input is read again to name the first differing byte.
fn first_difference(input: &Disk, plan: &Plan, start: u64, y: &[u8]) -> CompactError {
    let mut x = vec![0u8; y.len()];
    if let Err(e) = input.read_at(start, &mut x) {
        return fail(format!(
            "guest bytes at {start:#x} differ (input unreadable on a second read: {e})"
        ));
    }
    apply_zero_fill(&plan.zero_fill, start, &mut x);
    match x.iter().zip(y).position(|(p, q)| p != q) {
        Some(at) => fail(format!(
            "guest byte {:#x} differs",
            start.saturating_add(at as u64)
        )),
        None => fail(format!(
            "guest bytes at {start:#x} differ from what was read for writing (the input changed?)"
        )),
    }
}

/// Proves `output` against `input` under `plan` (see the module docs).
///
/// # Errors
/// [`CompactError::ProofFailed`] naming the first difference; read errors
/// of the input.
pub fn prove(
    input: &Arc<Disk>,
    output: &Arc<Disk>,
    plan: &Plan,
    pieces: &[PieceDigest],
) -> Result<Proof, CompactError> {
    // The output's size is the input's rounded up to whole sectors.
    let want = input.size().div_ceil(512).saturating_mul(512);
    if output.size() != want {
        return Err(fail(format!(
            "virtual size {} instead of {want}",
            output.size(),
        )));
    }
    if want > input.size() {
        if let Some(&(at, _)) = output
            .non_zero_ranges(input.size(), want - input.size())?
            .first()
        {
            return Err(fail(format!(
                "byte {at:#x} past the input's end is not zero"
            )));
        }
    }
    let (kept, walked) = rayon::join(
        || compare_pieces(input, output, plan, pieces),
        || walk_filesystems(input, output, plan),
    );
    let kept = kept?;
    let (filesystems, not_walked) = walked?;
    let mut proof = Proof {
        kept,
        filesystems,
        not_walked,
        ..Proof::default()
    };
    // Dropped clusters: nothing allocated in the output.
    let mut pos = 0u64;
    for &(s, l) in plan.keep.iter().chain([(plan.virtual_size, 0)].iter()) {
        if s > pos {
            if let Some(&(at, _)) = output.non_zero_ranges(pos, s - pos)?.first() {
                return Err(fail(format!("dropped guest byte {at:#x} is not zero")));
            }
            proof.dropped_zero += s - pos;
        }
        pos = pos.max(s.saturating_add(l));
    }
    // Outside the partitions.
    let mut parts: Vec<(u64, u64)> = plan
        .regions
        .iter()
        .filter(|r| r.number.is_some())
        .map(|r| (r.start, r.len))
        .collect();
    parts.sort_unstable();
    let mut outside = Vec::new();
    let mut pos = 0u64;
    for (s, l) in parts.iter().copied().chain([(plan.virtual_size, 0)]) {
        if s > pos {
            outside.push((pos, s - pos));
        }
        pos = pos.max(s.saturating_add(l));
    }
    proof.outside = compare_ranges(input, output, &outside, &[])?;
    Ok(proof)
}

/// Walks every readable filesystem of both disks side by side
/// ([`walk_both`]); partitions whose filesystem qvet cannot open are named.
fn walk_filesystems(
    input: &Arc<Disk>,
    output: &Arc<Disk>,
    plan: &Plan,
) -> Result<(Vec<FsProof>, Vec<String>), CompactError> {
    let (mut walked, mut not_walked) = (Vec::new(), Vec::new());
    let src_in: Arc<dyn ByteSource> = Arc::clone(input) as Arc<dyn ByteSource>;
    let src_out: Arc<dyn ByteSource> = Arc::clone(output) as Arc<dyn ByteSource>;
    for r in plan.regions.iter().filter(|r| r.number.is_some()) {
        let number = r.number.unwrap_or(0);
        let win_in: Arc<dyn ByteSource> =
            Arc::new(Window::new(Arc::clone(&src_in), r.start, r.len));
        let win_out: Arc<dyn ByteSource> =
            Arc::new(Window::new(Arc::clone(&src_out), r.start, r.len));
        let fs_in = match qvet_guestfs::open(win_in) {
            Ok(f) => f,
            Err(e) => {
                not_walked.push(format!("partition {number} ({}): {e}", r.content));
                continue;
            }
        };
        let fs_out = qvet_guestfs::open(win_out).map_err(|e| {
            fail(format!(
                "partition {number}: output filesystem unreadable: {e}"
            ))
        })?;
        let mut fp = match walk_both(fs_in.as_ref(), fs_out.as_ref(), plan, r.start) {
            Ok(fp) => fp,
            // Nothing was taken from this filesystem's free space: its bytes
            // are the input's (proven with the kept ranges), so a walk that
            // stumbles on the input's own damage proves nothing more.
            Err(e) if !dropped_free_space(r) => {
                not_walked.push(format!(
                    "partition {number} ({}): the walk stopped ({e}); nothing was dropped from its free space, so its bytes, compared above, prove it",
                    r.content
                ));
                continue;
            }
            Err(e) => return Err(fail(format!("partition {number}: {e}"))),
        };
        fp.partition = number;
        walked.push(fp);
    }
    Ok((walked, not_walked))
}

/// Whether compaction dropped or zero-filled any of `r`'s filesystem free
/// space (container-level zeros read the same on both sides).
fn dropped_free_space(r: &Region) -> bool {
    r.zeroed > 0
        || [Category::ExtFree, Category::FatFree, Category::Swap]
            .iter()
            .any(|c| r.dropped.get(c).is_some_and(|&b| b > 0))
}

/// Walks two filesystems side by side; `Err` names the first difference.
fn walk_both(
    a: &dyn FileSystem,
    b: &dyn FileSystem,
    plan: &Plan,
    base: u64,
) -> Result<FsProof, String> {
    let mut p = FsProof {
        kind: a.kind().to_string(),
        ..FsProof::default()
    };
    if a.kind() != b.kind() {
        return Err(format!("filesystem {} became {}", a.kind(), b.kind()));
    }
    let mut ha = blake3::Hasher::new();
    let mut hb = blake3::Hasher::new();
    let mut stack: Vec<(Vec<u8>, NodeId, NodeId, usize)> =
        vec![(b"/".to_vec(), a.root(), b.root(), 0)];
    let mut seen = std::collections::HashSet::new();
    let mut entries = 0u64;
    // Regular files are compared after the walk, in parallel.
    let mut files: Vec<(Vec<u8>, NodeId, NodeId, u64)> = Vec::new();
    while let Some((path, ia, ib, depth)) = stack.pop() {
        let shown = String::from_utf8_lossy(&path).into_owned();
        entries += 1;
        if entries > MAX_ENTRIES {
            return Err("too many entries to walk".into());
        }
        let ma = a
            .metadata(ia)
            .map_err(|e| format!("{shown}: input metadata: {e}"))?;
        let mb = b
            .metadata(ib)
            .map_err(|e| format!("{shown}: output metadata: {e}"))?;
        if ma != mb {
            return Err(format!("{shown}: metadata differs ({ma:?} / {mb:?})"));
        }
        let xa = a.xattrs(ia).map_err(|e| e.to_string());
        let xb = b.xattrs(ib).map_err(|e| e.to_string());
        if xa != xb {
            return Err(format!("{shown}: extended attributes differ"));
        }
        for h in [&mut ha, &mut hb] {
            h.update(&(path.len() as u64).to_le_bytes());
            h.update(&path);
            h.update(format!("{ma:?}").as_bytes());
        }
        match ma.kind {
            FileType::Dir => {
                p.dirs += 1;
                if !seen.insert(ia) || depth > qvet_guestfs::MAX_PATH_DEPTH {
                    continue;
                }
                let mut la = a.read_dir(ia).map_err(|e| format!("{shown}: {e}"))?;
                let mut lb = b
                    .read_dir(ib)
                    .map_err(|e| format!("{shown}: output: {e}"))?;
                la.sort_by(|x, y| x.name.cmp(&y.name));
                lb.sort_by(|x, y| x.name.cmp(&y.name));
                if la != lb {
                    return Err(format!("{shown}: directory entries differ"));
                }
                for (ea, eb) in la.into_iter().zip(lb) {
                    let mut child = path.clone();
                    if child.last() != Some(&b'/') {
                        child.push(b'/');
                    }
                    child.extend_from_slice(&ea.name);
                    stack.push((child, ea.id, eb.id, depth + 1));
                }
            }
            FileType::File => {
                p.files += 1;
                match proven_by_ranges(a, b, ia, ib, plan, base) {
                    Some(ranges) => {
                        p.files_by_ranges += 1;
                        p.bytes += ma.size;
                        for h in [&mut ha, &mut hb] {
                            for (o, l) in &ranges {
                                h.update(&o.to_le_bytes());
                                h.update(&l.to_le_bytes());
                            }
                        }
                    }
                    None => files.push((path.clone(), ia, ib, ma.size)),
                }
            }
            FileType::Symlink => {
                p.others += 1;
                let ta = a.read_link(ia).map_err(|e| e.to_string());
                let tb = b.read_link(ib).map_err(|e| e.to_string());
                if ta != tb {
                    return Err(format!("{shown}: symlink target differs"));
                }
                if let Ok(t) = ta {
                    ha.update(&t);
                }
                if let Ok(t) = tb {
                    hb.update(&t);
                }
            }
            _ => p.others += 1,
        }
    }
    p.files_read = files.len() as u64;
    let sums: Vec<([u8; 32], [u8; 32], u64)> = files
        .par_iter()
        .map(|(path, ia, ib, size)| compare_file(a, b, path, *ia, *ib, *size))
        .collect::<Result<_, _>>()?;
    for (x, y, n) in sums {
        ha.update(&x);
        hb.update(&y);
        p.bytes += n;
    }
    p.digest_in = ha.finalize().to_hex().to_string();
    p.digest_out = hb.finalize().to_hex().to_string();
    Ok(p)
}

/// A file's data ranges when they prove its bytes equal without reading
/// them: the same on both sides, not empty, and each inside one kept guest
/// range (whose bytes were compared already) and clear of the zero-filled
/// free space. `None`: read the file.
fn proven_by_ranges(
    a: &dyn FileSystem,
    b: &dyn FileSystem,
    ia: NodeId,
    ib: NodeId,
    plan: &Plan,
    base: u64,
) -> Option<Vec<(u64, u64)>> {
    let keep = &plan.keep;
    let fill = &plan.zero_fill;
    let ra = a.byte_ranges(ia).ok()?;
    let rb = b.byte_ranges(ib).ok()?;
    if ra != rb || ra.is_empty() {
        return None;
    }
    let inside = |&(o, l): &(u64, u64)| {
        let s = base.checked_add(o)?;
        let e = s.checked_add(l)?;
        let i = keep.partition_point(|&(ks, _)| ks <= s).checked_sub(1)?;
        let (ks, kl) = keep.get(i).copied()?;
        let z = fill.partition_point(|&(zs, zl)| zs.saturating_add(zl) <= s);
        let clear = fill.get(z).is_none_or(|&(zs, _)| zs >= e);
        (s >= ks && e <= ks.saturating_add(kl) && clear).then_some(())
    };
    ra.iter().all(|r| inside(r).is_some()).then_some(ra)
}

/// Compares one regular file's bytes on both sides: the BLAKE3 of each
/// side and the bytes read, or the first difference.
fn compare_file(
    a: &dyn FileSystem,
    b: &dyn FileSystem,
    path: &[u8],
    ia: NodeId,
    ib: NodeId,
    size: u64,
) -> Result<([u8; 32], [u8; 32], u64), String> {
    let shown = String::from_utf8_lossy(path);
    let mut ha = blake3::Hasher::new();
    let mut hb = blake3::Hasher::new();
    let len = usize::try_from(size.clamp(1, 1 << 20)).unwrap_or(1 << 20);
    let mut buf_a = vec![0u8; len];
    let mut buf_b = vec![0u8; len];
    let mut off = 0u64;
    while off < size {
        let (na, nb) = match (a.read(ia, off, &mut buf_a), b.read(ib, off, &mut buf_b)) {
            (Ok(x), Ok(y)) => (x, y),
            (Err(x), Err(y)) if x.to_string() == y.to_string() => break,
            (x, y) => {
                return Err(format!(
                    "{shown}: read at {off} differs ({:?} / {:?})",
                    x.map_err(|e| e.to_string()),
                    y.map_err(|e| e.to_string())
                ))
            }
        };
        if na != nb || buf_a.get(..na) != buf_b.get(..nb) {
            return Err(format!("{shown}: content differs near byte {off}"));
        }
        if na == 0 {
            break;
        }
        ha.update(buf_a.get(..na).unwrap_or_default());
        hb.update(buf_b.get(..nb).unwrap_or_default());
        off += na as u64;
    }
    Ok((*ha.finalize().as_bytes(), *hb.finalize().as_bytes(), off))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;
    use crate::compact::{plan, CompactOptions};
    use crate::compact_write::write_plan;
    use crate::qcow2_out::Sink;
    use qvet_image::OpenOptions;

    const MARK: &[u8] = b"qvet proof marker 0123456789";
    const MARK_AT: usize = 3 * 65536 + 1000;

    /// A 1 MiB raw disk of non-zero bytes with a marker, compacted into
    /// `dir`; returns the input, the output path, the plan and the pieces.
    fn compacted(dir: &std::path::Path) -> (Arc<Disk>, std::path::PathBuf, Plan, Vec<PieceDigest>) {
        let raw = dir.join("in.raw");
        let mut bytes: Vec<u8> = (0..1usize << 20).map(|i| (i % 251) as u8 | 1).collect();
        bytes[MARK_AT..MARK_AT + MARK.len()].copy_from_slice(MARK);
        std::fs::write(&raw, &bytes).unwrap();
        let disk = Arc::new(Disk::open(&raw, &OpenOptions::default()).unwrap());
        let opts = CompactOptions {
            keep_free_space: true,
            ..CompactOptions::default()
        };
        let mut p = plan(&disk, &opts).unwrap();
        let out = dir.join("out.qcow2");
        let f = std::fs::File::create(&out).unwrap();
        let w = write_plan(&disk, &mut p, &opts, Sink::File(&f), &|_| {}).unwrap();
        (disk, out, p, w.pieces)
    }

    fn open(path: &std::path::Path) -> Arc<Disk> {
        Arc::new(Disk::open(path, &OpenOptions::default()).unwrap())
    }

    #[test]
    fn an_intact_output_is_proven() {
        let dir = tempfile::tempdir().unwrap();
        let (disk, out, p, pieces) = compacted(dir.path());
        let proof = prove(&disk, &open(&out), &p, &pieces).unwrap();
        assert_eq!(proof.kept.bytes, 1 << 20);
        assert_eq!(proof.kept.compared, 1 << 20);
        assert_eq!(proof.kept.digest_in, proof.kept.digest_out);
        assert_eq!(proof.kept.algorithm, "blake3(xxh3-128 per piece)");
    }

    /// One byte changed in the output file's data is found, and named by
    /// its guest offset.
    #[test]
    fn a_changed_output_byte_fails_the_proof() {
        let dir = tempfile::tempdir().unwrap();
        let (disk, out, p, pieces) = compacted(dir.path());
        let mut file = std::fs::read(&out).unwrap();
        let at = file
            .windows(MARK.len())
            .position(|w| w == MARK)
            .expect("marker stored uncompressed");
        file[at + 5] ^= 0x20;
        std::fs::write(&out, &file).unwrap();
        let err = prove(&disk, &open(&out), &p, &pieces).unwrap_err();
        let want = format!("guest byte {:#x} differs", MARK_AT + 5);
        assert!(err.to_string().contains(&want), "{err}");
    }

    /// Digests that do not tile the plan (a piece missing) are refused.
    #[test]
    fn pieces_must_tile_the_kept_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let (disk, out, p, pieces) = compacted(dir.path());
        let err = prove(&disk, &open(&out), &p, &pieces[1..]).unwrap_err();
        assert!(err.to_string().contains("tile"), "{err}");
        let mut wrong = pieces.clone();
        wrong[0].digest ^= 1;
        let err = prove(&disk, &open(&out), &p, &wrong).unwrap_err();
        assert!(err.to_string().contains("differ"), "{err}");
    }

    #[test]
    fn union_merges_overlaps_and_neighbours() {
        assert_eq!(
            union(&[(0, 10), (20, 5)], &[(5, 10), (25, 5), (40, 1)]),
            vec![(0, 15), (20, 10), (40, 1)]
        );
        assert_eq!(union(&[], &[]), vec![]);
    }
}
