//! The internal snapshot table.

use crate::bytes::{be_u16, be_u32, be_u64, slice, u64_from, usize_from_u32};
use crate::error::FormatError;
use crate::limits;

/// One internal snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Host offset of this table entry.
    pub entry_offset: u64,
    /// The snapshot's L1 table offset.
    pub l1_table_offset: u64,
    /// The snapshot's L1 entries.
    pub l1_size: u32,
    /// Unique ID string.
    pub id: Vec<u8>,
    /// Name.
    pub name: Vec<u8>,
    /// Creation time, seconds since the epoch.
    pub date_sec: u32,
    /// Creation time, nanoseconds part.
    pub date_nsec: u32,
    /// Guest run time at the snapshot, in nanoseconds.
    pub vm_clock_nsec: u64,
    /// VM state size (the 64-bit field when extra data carries it).
    pub vm_state_size: u64,
    /// Virtual disk size at snapshot time, when recorded.
    pub disk_size: Option<u64>,
    /// Instruction count, when recorded (`u64::MAX` = disabled).
    pub icount: Option<u64>,
    /// Extra data length.
    pub extra_data_size: u32,
}

/// Fixed part of a table entry.
const ENTRY_FIXED: usize = 40;

/// Parses `count` entries from `table`, the bytes at the snapshot table offset
/// (bytes past the end read as zero, as qemu's reads past EOF do).
///
/// # Errors
/// [`FormatError::Snapshot`] for extra data above qemu's limit or a table
/// beyond 64 MiB; [`FormatError::TableTooLarge`] above 65536 entries.
pub fn parse_table(
    table: &[u8],
    table_offset: u64,
    count: u32,
) -> Result<Vec<Snapshot>, FormatError> {
    if count > limits::MAX_SNAPSHOTS {
        return Err(FormatError::TableTooLarge {
            what: "snapshot table (entries)",
            size: u64::from(count),
            limit: u64::from(limits::MAX_SNAPSHOTS),
        });
    }
    let mut out = Vec::new();
    let mut pos: usize = 0;
    let zero = [0u8; ENTRY_FIXED];
    for index in 0..count {
        let entry_offset = table_offset.saturating_add(u64_from(pos));
        let fixed = slice(table, pos, ENTRY_FIXED).unwrap_or(&zero);
        let extra_size = be_u32(fixed, 36).unwrap_or(0);
        if extra_size > limits::MAX_SNAPSHOT_EXTRA_DATA {
            return Err(FormatError::Snapshot {
                index,
                offset: entry_offset,
                why: format!("too much extra metadata ({extra_size} bytes)"),
            });
        }
        let id_len = usize::from(be_u16(fixed, 12).unwrap_or(0));
        let name_len = usize::from(be_u16(fixed, 14).unwrap_or(0));
        let extra_at = pos + ENTRY_FIXED;
        let extra_len = usize_from_u32(extra_size);
        let read = |at: usize, len: usize| -> Vec<u8> {
            let mut v = vec![0u8; len];
            let avail = table.len().saturating_sub(at).min(len);
            if let (Some(d), Some(s)) = (v.get_mut(..avail), slice(table, at, avail)) {
                d.copy_from_slice(s);
            }
            v
        };
        let extra = read(extra_at, extra_len);
        let id = read(extra_at + extra_len, id_len);
        let name = read(extra_at + extra_len + id_len, name_len);
        let vm_state_size = if extra_len >= 8 {
            be_u64(&extra, 0).unwrap_or(0)
        } else {
            u64::from(be_u32(fixed, 32).unwrap_or(0))
        };
        out.push(Snapshot {
            entry_offset,
            l1_table_offset: be_u64(fixed, 0).unwrap_or(0),
            l1_size: be_u32(fixed, 8).unwrap_or(0),
            id,
            name,
            date_sec: be_u32(fixed, 16).unwrap_or(0),
            date_nsec: be_u32(fixed, 20).unwrap_or(0),
            vm_clock_nsec: be_u64(fixed, 24).unwrap_or(0),
            vm_state_size,
            disk_size: (extra_len >= 16).then(|| be_u64(&extra, 8).unwrap_or(0)),
            icount: (extra_len >= 24).then(|| be_u64(&extra, 16).unwrap_or(0)),
            extra_data_size: extra_size,
        });
        let entry_len = ENTRY_FIXED + extra_len + id_len + name_len;
        pos += (entry_len + 7) & !7;
        if u64_from(pos) > limits::MAX_SNAPSHOT_TABLE_BYTES {
            return Err(FormatError::Snapshot {
                index,
                offset: entry_offset,
                why: "snapshot table is too big".into(),
            });
        }
    }
    Ok(out)
}

/// Upper bound on the table's size in bytes for `count` entries, so the
/// caller can read it in one go: 40 + 1024 + 2 × 65535 bytes per entry.
pub fn max_table_bytes(count: u32) -> u64 {
    let per_entry = 40 + u64::from(limits::MAX_SNAPSHOT_EXTRA_DATA) + 2 * 65535 + 7;
    (u64::from(count) * per_entry).min(limits::MAX_SNAPSHOT_TABLE_BYTES + per_entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_qemu_written_entry() {
        let mut t = vec![0u8; 72];
        t[0..8].copy_from_slice(&0x60000u64.to_be_bytes());
        t[8..12].copy_from_slice(&1u32.to_be_bytes());
        t[12..14].copy_from_slice(&1u16.to_be_bytes());
        t[14..16].copy_from_slice(&5u16.to_be_bytes());
        t[16..20].copy_from_slice(&1_795_599_647u32.to_be_bytes());
        t[36..40].copy_from_slice(&24u32.to_be_bytes());
        t[48..56].copy_from_slice(&(64u64 << 20).to_be_bytes());
        t[64] = b'1';
        t[65..70].copy_from_slice(b"snap1");
        let s = parse_table(&t, 0x70000, 1).unwrap();
        assert_eq!(s[0].name, b"snap1");
        assert_eq!(s[0].id, b"1");
        assert_eq!(s[0].disk_size, Some(64 << 20));
        assert_eq!(s[0].icount, Some(0));
        assert_eq!(s[0].date_sec, 1_795_599_647);
    }

    #[test]
    fn refuses_oversized_extra_and_counts() {
        let mut t = vec![0u8; 40];
        t[36..40].copy_from_slice(&0x10000u32.to_be_bytes());
        assert!(parse_table(&t, 0, 1).is_err());
        assert!(parse_table(&[], 0, 65537).is_err());
        // Many all-zero entries past the end of the data parse without allocation blowup.
        assert_eq!(parse_table(&[], 0, 1000).unwrap().len(), 1000);
    }
}
