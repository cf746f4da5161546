//! Which guest ranges differ between two disks, reading as little as the
//! mappings allow.
//!
//! `qemu-img compare` reads and decompresses both sides wherever either is
//! allocated. Here each side's storage is resolved first
//! ([`Disk::storage`]): runs that both mappings know are zeros cost
//! nothing, a zero run against data reads only the data side, and two
//! compressed clusters at the same guest offset whose stored streams are
//! byte-identical are equal without being inflated (a re-packed image that
//! was recompressed with the same settings keeps most of its streams; see
//! [`crate::qcow2::Qcow2Image::read_compressed_stream`] for where a stored
//! stream ends).
//! Everything else is read from both sides and compared directly. The
//! mappings are walked once to plan the work (so a huge, mostly unallocated
//! disk costs what its allocation costs), and the planned pieces of at most
//! [`UNIT`] bytes are compared in parallel.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;

use crate::disk::{Disk, StorageKind};
use crate::error::ImageError;

/// Guest bytes compared per parallel task.
pub const UNIT: u64 = 4 << 20;

/// Differing ranges are reported at this granularity (guest filesystem
/// blocks are at most this size in the common case, so a range maps to the
/// files it touches without dragging in neighbours).
pub const GRANULE: u64 = 4096;

thread_local! {
    /// Per-thread read buffers (side A, side B), reused across units.
    static BUFFERS: RefCell<(Vec<u8>, Vec<u8>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// What [`differing_ranges`] did, for reports and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompareStats {
    /// Guest bytes both mappings knew to be zeros (nothing read).
    pub zero_bytes: u64,
    /// Guest bytes in compressed clusters found equal by their stored
    /// streams (nothing inflated).
    pub same_stream_bytes: u64,
    /// Guest bytes read and compared.
    pub compared_bytes: u64,
}

impl CompareStats {
    fn add(&mut self, o: &Self) {
        self.zero_bytes += o.zero_bytes;
        self.same_stream_bytes += o.same_stream_bytes;
        self.compared_bytes += o.compared_bytes;
    }
}

/// Sorted, merged `[start, end)` guest ranges, aligned to [`GRANULE`] (and
/// cut at the larger size), where the guest bytes of `a` and `b` differ.
/// The shorter disk reads as zeros beyond its size. `progress` receives the
/// guest bytes done so far.
///
/// # Errors
/// Mapping or read errors of either side.
pub fn differing_ranges(
    a: &Disk,
    b: &Disk,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(Vec<(u64, u64)>, CompareStats), ImageError> {
    let size = a.size().max(b.size());
    let (units, zero_bytes) = plan(a, b, size)?;
    let done = AtomicU64::new(zero_bytes);
    progress(zero_bytes);
    let parts: Vec<(Vec<(u64, u64)>, CompareStats)> = units
        .into_par_iter()
        .map(|(start, end)| {
            let r = compare_unit(a, b, start, end);
            let d = done.fetch_add(end - start, Ordering::Relaxed) + (end - start);
            progress(d);
            r
        })
        .collect::<Result<_, _>>()?;
    let mut out: Vec<(u64, u64)> = Vec::new();
    let mut stats = CompareStats {
        zero_bytes,
        ..CompareStats::default()
    };
    for (ranges, s) in parts {
        stats.add(&s);
        for (s, e) in ranges {
            push_merged(&mut out, s, e.min(size));
        }
    }
    Ok((out, stats))
}

/// The work: `[start, end)` pieces of at most [`UNIT`] bytes (within one
/// `UNIT`-aligned window) covering everything but the runs both mappings
/// know are zeros, and the bytes of those runs. Walking the mappings first
/// keeps the work proportional to what is allocated, not to the virtual
/// size (a hostile header may claim petabytes).
fn plan(a: &Disk, b: &Disk, size: u64) -> Result<(Vec<(u64, u64)>, u64), ImageError> {
    let mut units: Vec<(u64, u64)> = Vec::new();
    let mut zero = 0u64;
    let mut pos = 0u64;
    while pos < size {
        let left = size - pos;
        let sa = a.storage(pos, left)?;
        let sb = b.storage(pos, left)?;
        let n = sa.len.min(sb.len).min(left).max(1);
        if sa.kind == StorageKind::Zero && sb.kind == StorageKind::Zero {
            zero += n;
        } else {
            let end = pos + n;
            let mut p = pos;
            while p < end {
                let window_end = (p / UNIT + 1).saturating_mul(UNIT).min(end);
                match units.last_mut() {
                    Some((s, e)) if *e == p && *s / UNIT == p / UNIT => *e = window_end,
                    _ => units.push((p, window_end)),
                }
                p = window_end;
            }
        }
        pos += n;
    }
    Ok((units, zero))
}

fn push_merged(out: &mut Vec<(u64, u64)>, s: u64, e: u64) {
    match out.last_mut() {
        Some((_, last)) if *last >= s => *last = (*last).max(e),
        _ => out.push((s, e)),
    }
}

fn usize_of(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Compares `[start, end)`; both are [`GRANULE`]-aligned except at the end.
fn compare_unit(
    a: &Disk,
    b: &Disk,
    start: u64,
    end: u64,
) -> Result<(Vec<(u64, u64)>, CompareStats), ImageError> {
    let mut out = Vec::new();
    let mut stats = CompareStats::default();
    let mut pos = start;
    while pos < end {
        let sa = a.storage(pos, end - pos)?;
        let sb = b.storage(pos, end - pos)?;
        let n = sa.len.min(sb.len).min(end - pos).max(1);
        match (sa.kind, sb.kind) {
            (StorageKind::Zero, StorageKind::Zero) => stats.zero_bytes += n,
            (
                StorageKind::Compressed {
                    layer: la,
                    desc: da,
                    cluster_start: ca,
                },
                StorageKind::Compressed {
                    layer: lb,
                    desc: db,
                    cluster_start: cb,
                },
            ) if ca == cb && same_stream(a, la, da, b, lb, db)? => stats.same_stream_bytes += n,
            (ka, kb) => {
                stats.compared_bytes += n;
                compare_bytes(a, b, pos, n, ka, kb, &mut out)?;
            }
        }
        pos += n;
    }
    Ok((out, stats))
}

/// Whether two compressed clusters have the same cluster size, compression
/// type and stored bytes (and therefore the same contents).
fn same_stream(
    a: &Disk,
    la: usize,
    da: qvet_format::l2::CompressedDescriptor,
    b: &Disk,
    lb: usize,
    db: qvet_format::l2::CompressedDescriptor,
) -> Result<bool, ImageError> {
    let (Some(qa), Some(qb)) = (
        a.layers().get(la).and_then(|l| l.qcow2()),
        b.layers().get(lb).and_then(|l| l.qcow2()),
    ) else {
        return Ok(false);
    };
    let (ha, hb) = (qa.header(), qb.header());
    if ha.cluster_size() != hb.cluster_size()
        || ha.compression_type() != hb.compression_type()
        || qa.encryption().is_some()
        || qb.encryption().is_some()
    {
        return Ok(false);
    }
    STREAMS.with(|s| {
        let (sa, sb) = &mut *s.borrow_mut();
        qa.read_compressed_stream(da, sa)?;
        qb.read_compressed_stream(db, sb)?;
        Ok(sa == sb)
    })
}

thread_local! {
    /// Per-thread buffers for stored compressed streams.
    static STREAMS: RefCell<(Vec<u8>, Vec<u8>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// Reads `[pos, pos + n)` from the sides that need reading (a zero side is
/// not read) and records the differing granules.
fn compare_bytes(
    a: &Disk,
    b: &Disk,
    pos: u64,
    n: u64,
    ka: StorageKind,
    kb: StorageKind,
    out: &mut Vec<(u64, u64)>,
) -> Result<(), ImageError> {
    BUFFERS.with(|bufs| {
        let (ba, bb) = &mut *bufs.borrow_mut();
        let len = usize_of(n);
        // The buffers only grow (and are not re-zeroed): each read fills
        // exactly the `len` bytes compared.
        let read = |disk: &Disk, kind: StorageKind, buf: &mut Vec<u8>| -> Result<(), ImageError> {
            if buf.len() < len {
                buf.resize(len, 0);
            }
            let dst = buf.get_mut(..len).unwrap_or_default();
            if kind == StorageKind::Zero {
                dst.fill(0);
                return Ok(());
            }
            read_guest(disk, pos, dst)
        };
        read(a, ka, ba)?;
        read(b, kb, bb)?;
        let (ba, bb) = (
            ba.get(..len).unwrap_or_default(),
            bb.get(..len).unwrap_or_default(),
        );
        if ba == bb {
            return Ok(());
        }
        // Granules are aligned to guest offsets, not to `pos`.
        let mut g = pos;
        while g < pos + n {
            let ge = ((g / GRANULE) + 1).saturating_mul(GRANULE).min(pos + n);
            let (s, e) = (usize_of(g - pos), usize_of(ge - pos));
            if ba.get(s..e) != bb.get(s..e) {
                push_merged(out, g - g % GRANULE, ge.div_ceil(GRANULE) * GRANULE);
            }
            g = ge;
        }
        Ok(())
    })
}

/// Reads guest bytes; past the disk's size they are zeros.
fn read_guest(disk: &Disk, pos: u64, buf: &mut [u8]) -> Result<(), ImageError> {
    let size = disk.size();
    let inside = usize_of(size.saturating_sub(pos)).min(buf.len());
    let (head, tail) = buf.split_at_mut(inside);
    tail.fill(0);
    if head.is_empty() {
        return Ok(());
    }
    disk.read_at(pos, head)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::MemSource;
    use std::sync::Arc;

    fn raw(bytes: Vec<u8>) -> Disk {
        let opts = crate::OpenOptions {
            format: Some(crate::Format::Raw),
            ..crate::OpenOptions::default()
        };
        Disk::from_source(Arc::new(MemSource(bytes)), "mem", &opts)
            .unwrap_or_else(|e| panic!("open: {e}"))
    }

    #[test]
    fn finds_exactly_the_differing_granules() {
        let base: Vec<u8> = (0..(3 * UNIT as usize + 5000))
            .map(|i| (i % 251) as u8)
            .collect();
        let mut other = base.clone();
        other[10] ^= 1;
        other[UNIT as usize + 4096 * 3 + 7] ^= 1;
        other[UNIT as usize + 4096 * 4] ^= 1;
        let last = other.len() - 1;
        other[last] ^= 1;
        let (da, db) = (raw(base.clone()), raw(other));
        let (r, stats) = differing_ranges(&da, &db, &|_| {}).unwrap_or_else(|e| panic!("{e}"));
        let u = UNIT;
        // The raw driver rounds the size up to whole sectors, as qemu does.
        let size = da.size();
        let end = size.div_ceil(GRANULE) * GRANULE;
        assert_eq!(
            r,
            vec![
                (0, 4096),
                (u + 4096 * 3, u + 4096 * 5),
                (end - GRANULE, size)
            ]
        );
        assert_eq!(stats.compared_bytes, size);
        let (same, _) = differing_ranges(&raw(base.clone()), &raw(base), &|_| {})
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(same.is_empty());
    }

    #[test]
    fn a_longer_disk_differs_only_where_its_tail_is_not_zero() {
        let a = raw(vec![7u8; 10_000]);
        let mut longer = vec![7u8; 10_000];
        longer.extend(vec![0u8; 20_000]);
        longer[25_000] = 1;
        let (r, _) = differing_ranges(&a, &raw(longer), &|_| {}).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r, vec![(24_576, 28_672)]);
    }
}
