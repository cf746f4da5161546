//! Where things live on a disk, as data for the report's picture: the
//! partitions, the allocation of every guest range (data, compressed, zero,
//! unallocated, from a backing file), the ranges that differ from the
//! reference, and the byte ranges of the files each finding names (from
//! the filesystem's own block maps). Metadata only: no file is read.

use std::collections::HashMap;
use std::sync::Arc;

use qvet_audit::finding::{Finding, Severity};
use qvet_audit::run::Report;
use qvet_guestfs::{ext::Ext, FileSystem, FsError};
use qvet_image::{ByteSource, Disk};
use qvet_volume::Window;

/// Allocation classes, as `qemu-img map` tells them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alloc {
    /// Data in this image.
    Data,
    /// Compressed data.
    Compressed,
    /// Allocated zeros.
    Zero,
    /// Not allocated anywhere (reads zeros).
    Unallocated,
    /// Provided by a backing file.
    Backing,
}

impl Alloc {
    /// Name for legends and CSS classes.
    pub fn name(self) -> &'static str {
        match self {
            Self::Data => "data",
            Self::Compressed => "compressed",
            Self::Zero => "zero",
            Self::Unallocated => "unallocated",
            Self::Backing => "backing",
        }
    }
}

/// A partition box.
#[derive(Debug, Clone)]
pub struct PartBox {
    /// Number.
    pub number: u32,
    /// First byte.
    pub start: u64,
    /// Length.
    pub len: u64,
    /// Filesystem.
    pub fs: String,
    /// The OS found there.
    pub os: Option<String>,
}

/// A marked range: a finding's file, a change.
#[derive(Debug, Clone)]
pub struct Mark {
    /// Disk offset.
    pub start: u64,
    /// Length.
    pub len: u64,
    /// The finding's index in the report (for the link), if a finding.
    pub finding: Option<usize>,
    /// Severity (findings).
    pub severity: Option<Severity>,
    /// What it is (shown on hover).
    pub label: String,
}

/// The picture's data for one image.
#[derive(Debug, Clone, Default)]
pub struct Picture {
    /// Virtual size.
    pub size: u64,
    /// Partitions.
    pub partitions: Vec<PartBox>,
    /// Allocation runs (merged; coarsened to at most [`MAX_SEGMENTS`]).
    pub allocation: Vec<(u64, u64, Alloc)>,
    /// Bytes per class.
    pub totals: Vec<(Alloc, u64)>,
    /// Findings located on the disk.
    pub marks: Vec<Mark>,
    /// Allocated ranges `qvet compact` would not copy (filesystem free
    /// space, zeros, leaks), merged to at most [`MAX_SEGMENTS`].
    pub reclaimable: Vec<(u64, u64)>,
    /// Their total, when the plan could be made.
    pub reclaimable_bytes: Option<u64>,
    /// Ranges that differ from the reference.
    pub changed: Vec<Mark>,
    /// Findings that could not be placed (no path, or no block map).
    pub unplaced: usize,
}

/// Allocation runs drawn at most.
pub const MAX_SEGMENTS: usize = 2_000;
/// Byte ranges kept per located file.
const RANGES_PER_FILE: usize = 64;
/// Marks kept in all.
const MAX_MARKS: usize = 5_000;

fn classify(e: &qvet_image::map::MapEntry) -> Alloc {
    if !e.present && e.depth == 0 && !e.data {
        Alloc::Unallocated
    } else if e.depth > 0 || e.unavailable {
        Alloc::Backing
    } else if e.compressed {
        Alloc::Compressed
    } else if e.data {
        Alloc::Data
    } else if e.zero && e.present {
        Alloc::Zero
    } else {
        Alloc::Unallocated
    }
}

/// Coarsens runs into at most `max` equal bins, each taking the class that
/// holds most of its bytes.
fn coarsen(runs: &[(u64, u64, Alloc)], size: u64, max: usize) -> Vec<(u64, u64, Alloc)> {
    if runs.len() <= max || size == 0 {
        return runs.to_vec();
    }
    let bin = size.div_ceil(max as u64).max(1);
    let mut out: Vec<(u64, u64, Alloc)> = Vec::new();
    let mut idx = 0usize;
    let mut start = 0u64;
    while start < size {
        let end = (start + bin).min(size);
        let mut bytes: HashMap<Alloc, u64> = HashMap::new();
        while let Some(&(s, l, c)) = runs.get(idx) {
            if s >= end {
                break;
            }
            let overlap = (s + l).min(end).saturating_sub(s.max(start));
            *bytes.entry(c).or_default() += overlap;
            if s + l <= end {
                idx += 1;
            } else {
                break;
            }
        }
        let class = bytes
            .into_iter()
            .max_by_key(|(c, b)| (*b, *c != Alloc::Unallocated))
            .map_or(Alloc::Unallocated, |(c, _)| c);
        match out.last_mut() {
            Some(last) if last.2 == class => last.1 += end - start,
            _ => out.push((start, end - start, class)),
        }
        start = end;
    }
    out
}

/// Builds the picture of `disk` for `report`.
pub fn build(disk: &Arc<Disk>, report: &Report) -> Picture {
    let size = disk.size();
    let mut pic = Picture {
        size,
        ..Picture::default()
    };
    let mut runs: Vec<(u64, u64, Alloc)> = Vec::new();
    let mut totals: HashMap<Alloc, u64> = HashMap::new();
    for e in disk.map() {
        let Ok(e) = e else { break };
        let c = classify(&e);
        *totals.entry(c).or_default() += e.length;
        match runs.last_mut() {
            Some(last) if last.2 == c && last.0 + last.1 == e.start => last.1 += e.length,
            _ => runs.push((e.start, e.length, c)),
        }
    }
    pic.allocation = coarsen(&runs, size, MAX_SEGMENTS);
    reclaimable(disk, &mut pic);
    let mut t: Vec<(Alloc, u64)> = totals.into_iter().collect();
    t.sort_by_key(|(c, _)| c.name());
    pic.totals = t;
    let src: Arc<dyn ByteSource> = disk.clone();
    let Ok(map) = qvet_volume::scan(src.as_ref()) else {
        return pic;
    };
    for p in &map.partitions {
        let summary = report.partitions.iter().find(|s| s.number == p.number);
        pic.partitions.push(PartBox {
            number: p.number,
            start: p.start,
            len: p.len,
            fs: summary.map_or_else(
                || {
                    qvet_volume::detect_filesystem(src.as_ref(), p.start, p.len)
                        .ok()
                        .flatten()
                        .map_or("empty", qvet_volume::FsKind::name)
                        .to_string()
                },
                |s| s.filesystem.clone(),
            ),
            os: summary.and_then(|s| s.os.clone()),
        });
    }
    // Filesystems opened once each, for the findings' and changes' files.
    let mut opened: HashMap<u32, Option<Box<dyn FileSystem>>> = HashMap::new();
    let mut locate = |partition: u32, path: &str| -> Option<Vec<(u64, u64)>> {
        let part = map.partitions.iter().find(|p| p.number == partition)?;
        let fs = opened
            .entry(partition)
            .or_insert_with(|| {
                let w: Arc<dyn ByteSource> =
                    Arc::new(Window::new(src.clone(), part.start, part.len));
                match Ext::open(w.clone()) {
                    Ok(e) => Some(Box::new(e) as Box<dyn FileSystem>),
                    Err(FsError::NotThisFs(_)) => qvet_guestfs::open(w).ok(),
                    Err(_) => None,
                }
            })
            .as_ref()?;
        let id = qvet_guestfs::lookup(fs.as_ref(), path.as_bytes(), false).ok()?;
        let ranges = fs.byte_ranges(id).ok()?;
        Some(
            ranges
                .into_iter()
                .take(RANGES_PER_FILE)
                .map(|(o, l)| (part.start + o, l))
                .collect(),
        )
    };
    for (i, f) in report.findings.iter().enumerate() {
        if f.suppressed.is_some() || pic.marks.len() >= MAX_MARKS {
            continue;
        }
        let label = format!("{} {}: {}", f.severity.name(), f.rule.id, f.title);
        let ranges = finding_ranges(f).or_else(|| match (f.partition, f.path.as_deref()) {
            (Some(n), Some(p)) if p.starts_with('/') => locate(n, p),
            _ => None,
        });
        match ranges {
            Some(r) if !r.is_empty() => {
                for (start, len) in r {
                    pic.marks.push(Mark {
                        start,
                        len,
                        finding: Some(i),
                        severity: Some(f.severity),
                        label: label.clone(),
                    });
                }
            }
            _ => pic.unplaced += 1,
        }
    }
    for c in report.changes.iter().take(MAX_MARKS) {
        let label = format!(
            "{} {}",
            c.kind.name(),
            c.path
                .as_deref()
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .or_else(|| c.detail.clone())
                .unwrap_or_default()
        );
        let ranges = match (c.offset, c.length, c.partition, &c.path) {
            (Some(o), Some(l), _, _) => Some(vec![(o, l)]),
            (_, _, Some(n), Some(p)) => locate(n, &String::from_utf8_lossy(p)),
            _ => None,
        };
        for (start, len) in ranges.unwrap_or_default() {
            pic.changed.push(Mark {
                start,
                len,
                finding: None,
                severity: None,
                label: label.clone(),
            });
        }
    }
    pic
}

/// What compact's plan leaves out of the allocated ranges: the picture's
/// "reclaimable" row (snapshots are not an obstacle for a picture).
fn reclaimable(disk: &Arc<Disk>, pic: &mut Picture) {
    let opts = qvet_write::compact::CompactOptions {
        drop_snapshots: true,
        ..qvet_write::compact::CompactOptions::default()
    };
    let (Ok(plan), Ok(data)) = (
        qvet_write::compact::plan(disk, &opts),
        disk.non_zero_ranges(0, pic.size),
    ) else {
        return;
    };
    // data minus keep, both sorted.
    let mut out: Vec<(u64, u64)> = Vec::new();
    let mut k = plan.keep.iter().peekable();
    for &(start, len) in &data {
        let end = start.saturating_add(len);
        let mut pos = start;
        while pos < end {
            while k
                .peek()
                .is_some_and(|(ks, kl)| ks.saturating_add(*kl) <= pos)
            {
                k.next();
            }
            match k.peek() {
                Some(&&(ks, kl)) if ks <= pos => pos = ks.saturating_add(kl).min(end),
                Some(&&(ks, _)) => {
                    let stop = ks.min(end);
                    out.push((pos, stop - pos));
                    pos = stop;
                }
                None => {
                    out.push((pos, end - pos));
                    pos = end;
                }
            }
        }
    }
    pic.reclaimable_bytes = Some(out.iter().map(|r| r.1).sum());
    // Merge neighbours closer than a drawn pixel so the SVG stays small.
    let slack = pic.size / 4000;
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (s, l) in out {
        match merged.last_mut() {
            Some((ms, ml)) if *ms + *ml + slack >= s => *ml = s + l - *ms,
            _ => merged.push((s, l)),
        }
    }
    merged.truncate(MAX_SEGMENTS);
    pic.reclaimable = merged;
}

/// Ranges a finding names by itself (gaps, layout).
fn finding_ranges(f: &Finding) -> Option<Vec<(u64, u64)>> {
    let get = |k: &str| {
        f.evidence
            .iter()
            .find(|(key, _)| *key == k)
            .and_then(|(_, v)| v.parse::<u64>().ok())
    };
    match (get("gap-start"), get("gap-length")) {
        (Some(s), Some(l)) => Some(vec![(s, l)]),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coarsening_keeps_the_majority() {
        let runs = vec![
            (0, 10, Alloc::Data),
            (10, 1, Alloc::Zero),
            (11, 9, Alloc::Unallocated),
            (20, 20, Alloc::Compressed),
        ];
        assert_eq!(coarsen(&runs, 40, 10), runs);
        let c = coarsen(&runs, 40, 2);
        assert_eq!(c, vec![(0, 20, Alloc::Data), (20, 20, Alloc::Compressed)]);
        let total: u64 = coarsen(&runs, 40, 3).iter().map(|r| r.1).sum();
        assert_eq!(total, 40);
    }
}
