//! The GUID partition table: primary header at LBA 1, backup at the last
//! LBA, both with CRC32s over the header and the entry array.

use qvet_image::ByteSource;

use crate::{read, Finding, Partition, PartitionType, VolumeError};

/// Largest entry array read (the spec's minimum is 16 KiB; 128 × 128 B).
const MAX_ENTRY_BYTES: u64 = 1 << 20;

/// A GPT header as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptHeader {
    /// LBA this header is at.
    pub my_lba: u64,
    /// LBA of the other header.
    pub alternate_lba: u64,
    /// First usable LBA.
    pub first_usable_lba: u64,
    /// Last usable LBA.
    pub last_usable_lba: u64,
    /// Disk GUID.
    pub disk_guid: String,
    /// LBA of the entry array.
    pub entries_lba: u64,
    /// Entries.
    pub num_entries: u32,
    /// Bytes per entry.
    pub entry_size: u32,
    /// Header CRC matches.
    pub header_crc_ok: bool,
    /// Entry array CRC matches.
    pub entries_crc_ok: bool,
}

/// The GPT as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptInfo {
    /// Logical sector size used (512 or 4096).
    pub sector_size: u64,
    /// The header the partitions come from.
    pub header: GptHeader,
    /// Whether that header is the backup (the primary was unusable).
    pub from_backup: bool,
    /// Partitions (non-empty entries).
    pub partitions: Vec<Partition>,
}

fn le32(b: &[u8], o: usize) -> u32 {
    b.get(o..o + 4)
        .and_then(|x| x.try_into().ok())
        .map(u32::from_le_bytes)
        .unwrap_or(0)
}

fn le64(b: &[u8], o: usize) -> u64 {
    b.get(o..o + 8)
        .and_then(|x| x.try_into().ok())
        .map(u64::from_le_bytes)
        .unwrap_or(0)
}

/// GUID text in the usual mixed-endian form.
pub(crate) fn guid(b: &[u8]) -> String {
    let g = |i: usize| b.get(i).copied().unwrap_or(0);
    format!(
        "{:02X}{:02X}{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}{:02X}{:02X}{:02X}{:02X}",
        g(3), g(2), g(1), g(0), g(5), g(4), g(7), g(6), g(8), g(9), g(10), g(11), g(12), g(13), g(14), g(15)
    )
}

/// Reads and checks the header at `lba`; `None` without the signature.
fn header(
    disk: &dyn ByteSource,
    lba: u64,
    sector: u64,
) -> Result<Option<(GptHeader, Vec<u8>)>, VolumeError> {
    let b = read(disk, lba.saturating_mul(sector), 512)?;
    if b.get(..8) != Some(b"EFI PART".as_slice()) {
        return Ok(None);
    }
    let header_size = usize::try_from(le32(&b, 12)).unwrap_or(0).clamp(92, 512);
    let stored_crc = le32(&b, 16);
    let mut copy = b.get(..header_size).unwrap_or_default().to_vec();
    if let Some(c) = copy.get_mut(16..20) {
        c.fill(0);
    }
    let header_crc_ok = crc32fast::hash(&copy) == stored_crc;
    let num_entries = le32(&b, 80);
    let entry_size = le32(&b, 84);
    let entries_lba = le64(&b, 72);
    let bytes = u64::from(num_entries) * u64::from(entry_size);
    let (entries, entries_crc_ok) = if entry_size >= 128 && bytes <= MAX_ENTRY_BYTES {
        let e = read(
            disk,
            entries_lba.saturating_mul(sector),
            usize::try_from(bytes).unwrap_or(0),
        )?;
        let ok = crc32fast::hash(&e) == le32(&b, 88);
        (e, ok)
    } else {
        (Vec::new(), false)
    };
    Ok(Some((
        GptHeader {
            my_lba: le64(&b, 24),
            alternate_lba: le64(&b, 32),
            first_usable_lba: le64(&b, 40),
            last_usable_lba: le64(&b, 48),
            disk_guid: guid(b.get(56..72).unwrap_or_default()),
            entries_lba,
            num_entries,
            entry_size,
            header_crc_ok,
            entries_crc_ok,
        },
        entries,
    )))
}

fn partitions(h: &GptHeader, entries: &[u8], sector: u64) -> Vec<Partition> {
    let size = usize::try_from(h.entry_size).unwrap_or(128).max(128);
    entries
        .chunks_exact(size)
        .enumerate()
        .filter(|(_, e)| e.get(..16).is_some_and(|t| t.iter().any(|&x| x != 0)))
        .map(|(i, e)| {
            let first = le64(e, 32);
            let last = le64(e, 40);
            let name: Vec<u16> = e
                .get(56..128)
                .unwrap_or_default()
                .chunks_exact(2)
                .map(|c| {
                    u16::from_le_bytes([
                        c.first().copied().unwrap_or(0),
                        c.get(1).copied().unwrap_or(0),
                    ])
                })
                .take_while(|&c| c != 0)
                .collect();
            Partition {
                number: u32::try_from(i + 1).unwrap_or(u32::MAX),
                start: first.saturating_mul(sector),
                len: last
                    .saturating_sub(first)
                    .saturating_add(1)
                    .saturating_mul(sector),
                kind: PartitionType::Gpt(guid(e.get(..16).unwrap_or_default())),
                bootable: false,
                name: Some(String::from_utf16_lossy(&name)),
                guid: Some(guid(e.get(16..32).unwrap_or_default())),
                attributes: le64(e, 48),
                logical: false,
            }
        })
        .collect()
}

/// Finds the GPT (sector size 512, then 4096); primary first, backup when
/// the primary is missing or fails its CRCs.
pub(crate) fn scan(
    disk: &dyn ByteSource,
    disk_size: u64,
    findings: &mut Vec<Finding>,
) -> Result<Option<GptInfo>, VolumeError> {
    for sector in [512u64, 4096] {
        let last_lba = (disk_size / sector).saturating_sub(1);
        let primary = header(disk, 1, sector)?;
        let good = |h: &GptHeader| h.header_crc_ok && h.entries_crc_ok;
        if let Some((h, e)) = &primary {
            if good(h) {
                let backup = header(disk, h.alternate_lba.min(last_lba), sector)?;
                match backup {
                    Some((b, _)) if good(&b) => {}
                    _ => findings.push(Finding {
                        kind: "gpt-backup-damaged",
                        message: "the backup GPT header is missing or fails its CRC".into(),
                        offset: Some(h.alternate_lba.saturating_mul(sector)),
                    }),
                }
                return Ok(Some(GptInfo {
                    sector_size: sector,
                    partitions: partitions(h, e, sector),
                    header: h.clone(),
                    from_backup: false,
                }));
            }
        }
        let alt = primary
            .as_ref()
            .map(|(h, _)| h.alternate_lba)
            .filter(|&a| a != 0 && a <= last_lba);
        let backup = match alt {
            Some(a) => header(disk, a, sector)?,
            None => None,
        };
        let backup = match backup {
            Some(b) => Some(b),
            None => header(disk, last_lba, sector)?,
        };
        if let Some((h, e)) = backup {
            if good(&h) {
                findings.push(Finding {
                    kind: "gpt-primary-damaged",
                    message: if primary.is_some() {
                        "the primary GPT fails its CRC; partitions come from the backup header"
                            .into()
                    } else {
                        "the primary GPT header is missing; partitions come from the backup header"
                            .into()
                    },
                    offset: Some(sector),
                });
                return Ok(Some(GptInfo {
                    sector_size: sector,
                    partitions: partitions(&h, &e, sector),
                    header: h,
                    from_backup: true,
                }));
            }
        }
        if let Some((h, e)) = primary {
            findings.push(Finding {
                kind: "gpt-crc-mismatch",
                message:
                    "the GPT fails its CRC checks and has no usable backup; entries shown as found"
                        .into(),
                offset: Some(sector),
            });
            return Ok(Some(GptInfo {
                sector_size: sector,
                partitions: partitions(&h, &e, sector),
                header: h,
                from_backup: false,
            }));
        }
    }
    Ok(None)
}
