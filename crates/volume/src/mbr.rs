//! The DOS/MBR partition table and the chain of extended boot records.

use std::collections::HashSet;

use qvet_image::ByteSource;

use crate::{read, Finding, Partition, PartitionType, VolumeError, SECTOR};

/// Logical partitions followed at most (Linux allows far fewer in practice).
const MAX_LOGICAL: usize = 256;

/// One of the four primary entries, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MbrEntry {
    /// Slot 0..3.
    pub slot: u8,
    /// Status byte (0x80 = active).
    pub status: u8,
    /// Partition type byte.
    pub kind: u8,
    /// First sector (LBA).
    pub lba_start: u32,
    /// Sectors.
    pub sectors: u32,
}

/// The MBR sector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MbrInfo {
    /// Non-empty entries.
    pub entries: Vec<MbrEntry>,
    /// Disk signature (bytes 440..444).
    pub disk_signature: u32,
    /// Whether the 440 bytes of boot code are not all zero.
    pub boot_code_present: bool,
}

fn entry(sector: &[u8], slot: u8) -> Option<MbrEntry> {
    let at = 446 + usize::from(slot) * 16;
    let e = sector.get(at..at + 16)?;
    let le32 = |o: usize| -> u32 {
        e.get(o..o + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
            .unwrap_or(0)
    };
    let kind = e.get(4).copied().unwrap_or(0);
    let sectors = le32(12);
    (kind != 0 && sectors != 0).then(|| MbrEntry {
        slot,
        status: e.first().copied().unwrap_or(0),
        kind,
        lba_start: le32(8),
        sectors,
    })
}

fn signed(sector: &[u8]) -> bool {
    sector.get(510..512) == Some([0x55, 0xaa].as_slice())
}

/// Parses sector 0; `None` without the 55 AA signature.
pub(crate) fn parse(sector: &[u8]) -> Option<MbrInfo> {
    if !signed(sector) {
        return None;
    }
    Some(MbrInfo {
        entries: (0..4).filter_map(|s| entry(sector, s)).collect(),
        disk_signature: sector
            .get(440..444)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
            .unwrap_or(0),
        boot_code_present: sector.get(..440).is_some_and(|b| b.iter().any(|&x| x != 0)),
    })
}

fn is_extended(kind: u8) -> bool {
    matches!(kind, 0x05 | 0x0f | 0x85)
}

/// Primary partitions and the logical ones along the EBR chain.
pub(crate) fn partitions(
    disk: &dyn ByteSource,
    mbr: &MbrInfo,
    disk_size: u64,
    findings: &mut Vec<Finding>,
) -> Result<Vec<Partition>, VolumeError> {
    let mut out = Vec::new();
    let mut extended = None;
    for e in &mbr.entries {
        let start = u64::from(e.lba_start) * SECTOR;
        let len = u64::from(e.sectors) * SECTOR;
        if is_extended(e.kind) {
            if extended.is_some() {
                findings.push(Finding {
                    kind: "multiple-extended",
                    message: format!(
                        "slot {} is a second extended partition; only the first is followed",
                        e.slot
                    ),
                    offset: Some(start),
                });
            } else {
                extended = Some((start, len));
            }
        }
        out.push(Partition {
            number: u32::from(e.slot) + 1,
            start,
            len,
            kind: PartitionType::Mbr(e.kind),
            bootable: e.status & 0x80 != 0,
            name: None,
            guid: None,
            attributes: 0,
            logical: false,
        });
    }
    if let Some((ext_start, ext_len)) = extended {
        logical(disk, ext_start, ext_len, disk_size, &mut out, findings)?;
    }
    Ok(out)
}

fn logical(
    disk: &dyn ByteSource,
    ext_start: u64,
    ext_len: u64,
    disk_size: u64,
    out: &mut Vec<Partition>,
    findings: &mut Vec<Finding>,
) -> Result<(), VolumeError> {
    let ext_end = ext_start.saturating_add(ext_len).min(disk_size);
    let mut seen = HashSet::new();
    let mut ebr = ext_start;
    let mut number = 5u32;
    while out.len() < MAX_LOGICAL + 4 {
        if !seen.insert(ebr) {
            findings.push(Finding {
                kind: "ebr-loop",
                message: format!("the extended boot record chain loops back to {ebr:#x}"),
                offset: Some(ebr),
            });
            break;
        }
        if ebr < ext_start || ebr >= ext_end {
            findings.push(Finding {
                kind: "ebr-outside-extended",
                message: format!(
                    "an extended boot record at {ebr:#x} lies outside the extended partition"
                ),
                offset: Some(ebr),
            });
            break;
        }
        let sector = read(disk, ebr, 512)?;
        if !signed(&sector) {
            findings.push(Finding {
                kind: "ebr-unsigned",
                message: format!("extended boot record at {ebr:#x} has no 55 AA signature"),
                offset: Some(ebr),
            });
            break;
        }
        if let Some(e) = entry(&sector, 0) {
            out.push(Partition {
                number,
                start: ebr.saturating_add(u64::from(e.lba_start) * SECTOR),
                len: u64::from(e.sectors) * SECTOR,
                kind: PartitionType::Mbr(e.kind),
                bootable: e.status & 0x80 != 0,
                name: None,
                guid: None,
                attributes: 0,
                logical: true,
            });
            number += 1;
        }
        match entry(&sector, 1) {
            Some(next) if is_extended(next.kind) => {
                ebr = ext_start.saturating_add(u64::from(next.lba_start) * SECTOR);
            }
            _ => break,
        }
    }
    Ok(())
}
