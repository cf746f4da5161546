//! `qvet-volume` finds the volumes inside a guest disk: MBR partitions
//! (primary, and logical ones along the EBR chain, loop-safe), GPT partitions
//! (header and entry-array CRCs checked, falling back to the backup header
//! when the primary is damaged), or a filesystem on the whole disk. It also
//! reports what lies outside any partition (gaps, data after the last one)
//! and what looks wrong (overlaps, partitions past the end, hybrid MBRs).
//!
//! Reading goes through [`qvet_image::ByteSource`]; every partition is a
//! bounded [`Window`] onto the disk. Nothing here writes or prints.

mod gpt;
mod mbr;
mod probe;
mod window;

use qvet_image::ByteSource;

pub use gpt::{GptHeader, GptInfo};
pub use mbr::{MbrEntry, MbrInfo};
pub use probe::{detect_filesystem, FsKind, HIBERNATION_SIGNATURES, SWAP_PAGE_SIZES};
pub use window::Window;

/// Sector size assumed for MBR and tried first for GPT.
pub const SECTOR: u64 = 512;

/// How the disk is divided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// DOS/MBR partition table.
    Mbr,
    /// GUID partition table.
    Gpt,
    /// A filesystem on the whole disk.
    WholeDisk,
    /// Nothing recognised.
    Unknown,
}

impl Scheme {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Mbr => "mbr",
            Self::Gpt => "gpt",
            Self::WholeDisk => "whole-disk",
            Self::Unknown => "unknown",
        }
    }
}

/// What a partition table says a partition is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartitionType {
    /// MBR type byte.
    Mbr(u8),
    /// GPT type GUID (text form).
    Gpt(String),
    /// The whole disk.
    WholeDisk,
}

/// One partition (or the whole disk).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// Number as Linux gives it: MBR primaries 1–4, logicals from 5; GPT entry index + 1.
    pub number: u32,
    /// First byte on the disk.
    pub start: u64,
    /// Length in bytes.
    pub len: u64,
    /// Type.
    pub kind: PartitionType,
    /// MBR active flag.
    pub bootable: bool,
    /// GPT partition name.
    pub name: Option<String>,
    /// GPT unique GUID.
    pub guid: Option<String>,
    /// GPT attribute bits.
    pub attributes: u64,
    /// Logical partition inside an extended one.
    pub logical: bool,
}

/// Something about the layout worth reporting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Stable identifier.
    pub kind: &'static str,
    /// What was found.
    pub message: String,
    /// Disk offset concerned.
    pub offset: Option<u64>,
}

/// A byte range of the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// First byte.
    pub start: u64,
    /// Length.
    pub len: u64,
}

/// The volumes of a disk.
#[derive(Debug, Clone)]
pub struct VolumeMap {
    /// Disk size.
    pub disk_size: u64,
    /// Scheme found.
    pub scheme: Scheme,
    /// The MBR (also present, as a protective MBR, on GPT disks).
    pub mbr: Option<MbrInfo>,
    /// The GPT.
    pub gpt: Option<GptInfo>,
    /// Partitions, in table order (primaries, then logicals).
    pub partitions: Vec<Partition>,
    /// Ranges outside every partition and outside the table structures
    /// (after the first MiB for MBR; outside the usable area for GPT excluded).
    pub gaps: Vec<Range>,
    /// Problems and notable facts.
    pub findings: Vec<Finding>,
}

/// Errors reading a disk.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VolumeError {
    /// The disk could not be read.
    #[error("reading the disk at offset {offset:#x}: {error}")]
    Io {
        /// Offset.
        offset: u64,
        /// Error.
        error: std::io::Error,
    },
}

pub(crate) fn read(src: &dyn ByteSource, offset: u64, len: usize) -> Result<Vec<u8>, VolumeError> {
    let mut buf = vec![0u8; len];
    src.read_zero_padded(offset, &mut buf)
        .map_err(|error| VolumeError::Io { offset, error })?;
    Ok(buf)
}

/// Reads the partition table(s) of `disk`.
///
/// # Errors
/// [`VolumeError::Io`] when the disk cannot be read; a damaged table is a
/// finding, not an error.
pub fn scan(disk: &dyn ByteSource) -> Result<VolumeMap, VolumeError> {
    let size = disk.len();
    let mut map = VolumeMap {
        disk_size: size,
        scheme: Scheme::Unknown,
        mbr: None,
        gpt: None,
        partitions: Vec::new(),
        gaps: Vec::new(),
        findings: Vec::new(),
    };
    let sector0 = read(disk, 0, 512)?;
    let whole = detect_filesystem(disk, 0, size)?;
    let mbr = mbr::parse(&sector0);
    let protective = mbr
        .as_ref()
        .is_some_and(|m| m.entries.iter().any(|e| e.kind == 0xee));
    // A filesystem boot sector also ends in 55 AA: trust it over the table.
    let whole_disk_fs = whole.is_some_and(|k| k != FsKind::Unknown) && !protective;
    if protective || (mbr.is_none() && !whole_disk_fs) {
        if let Some(g) = gpt::scan(disk, size, &mut map.findings)? {
            map.scheme = Scheme::Gpt;
            map.partitions = g.partitions.clone();
            map.gpt = Some(g);
            if let Some(m) = mbr.clone() {
                if m.entries.iter().any(|e| e.kind != 0xee && e.kind != 0) {
                    map.findings.push(Finding {
                        kind: "hybrid-mbr",
                        message: "the protective MBR also lists ordinary partitions (hybrid MBR)"
                            .into(),
                        offset: Some(446),
                    });
                }
                map.mbr = Some(m);
            }
        }
    }
    if map.scheme == Scheme::Unknown {
        if whole_disk_fs {
            map.scheme = Scheme::WholeDisk;
            map.partitions.push(Partition {
                number: 1,
                start: 0,
                len: size,
                kind: PartitionType::WholeDisk,
                bootable: false,
                name: None,
                guid: None,
                attributes: 0,
                logical: false,
            });
        } else if let Some(m) = mbr {
            map.scheme = Scheme::Mbr;
            map.partitions = mbr::partitions(disk, &m, size, &mut map.findings)?;
            map.mbr = Some(m);
        }
    }
    layout_findings(&mut map);
    Ok(map)
}

/// Overlaps, partitions past the end, gaps and trailing data.
fn layout_findings(map: &mut VolumeMap) {
    let size = map.disk_size;
    let mut spans: Vec<(u64, u64, u32)> = map
        .partitions
        .iter()
        .map(|p| (p.start, p.start.saturating_add(p.len), p.number))
        .collect();
    spans.sort_unstable();
    for p in &map.partitions {
        if p.start.saturating_add(p.len) > size {
            map.findings.push(Finding {
                kind: "partition-past-end",
                message: format!(
                    "partition {} ends at {:#x}, past the end of the disk ({size:#x})",
                    p.number,
                    p.start.saturating_add(p.len)
                ),
                offset: Some(p.start),
            });
        }
    }
    for w in spans.windows(2) {
        if let [a, b] = w {
            if b.0 < a.1 {
                map.findings.push(Finding {
                    kind: "partitions-overlap",
                    message: format!("partitions {} and {} overlap", a.2, b.2),
                    offset: Some(b.0),
                });
            }
        }
    }
    if map.scheme == Scheme::WholeDisk || map.scheme == Scheme::Unknown {
        return;
    }
    // Gaps: from the end of the table area (1 MiB alignment is conventional,
    // so only what lies after the first partition's start and between
    // partitions is reported, plus the tail).
    let first_start = spans.first().map(|s| s.0).unwrap_or(size);
    let mut cursor = first_start;
    for &(start, end, _) in &spans {
        if start > cursor {
            map.gaps.push(Range {
                start: cursor,
                len: start - cursor,
            });
        }
        cursor = cursor.max(end);
    }
    let table_tail = match &map.gpt {
        // The backup GPT occupies the last 33 sectors.
        Some(g) => g
            .header
            .last_usable_lba
            .saturating_add(1)
            .saturating_mul(g.sector_size),
        None => size,
    };
    if cursor < table_tail.min(size) {
        map.gaps.push(Range {
            start: cursor,
            len: table_tail.min(size) - cursor,
        });
    }
}

#[cfg(test)]
mod tests;
