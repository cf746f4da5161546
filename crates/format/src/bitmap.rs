//! The persistent dirty bitmap directory (for `info`; bitmap data is not read).

use crate::bytes::{be_u16, be_u32, be_u64, slice, usize_from_u32};
use crate::error::FormatError;
use crate::limits;

/// Bitmap is being modified (inconsistent).
pub const FLAG_IN_USE: u32 = 1;
/// Bitmap tracks writes automatically.
pub const FLAG_AUTO: u32 = 2;
const RESERVED_FLAGS: u32 = !(FLAG_IN_USE | FLAG_AUTO);
const MAX_TABLE_ENTRIES: u32 = 0x0800_0000;
const MAX_PHYS_BYTES: u64 = 0x2000_0000;

/// One bitmap directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bitmap {
    /// Bitmap table host offset.
    pub table_offset: u64,
    /// Bitmap table entries.
    pub table_size: u32,
    /// Flags ([`FLAG_IN_USE`], [`FLAG_AUTO`]).
    pub flags: u32,
    /// Bitmap type (1 = dirty tracking).
    pub kind: u8,
    /// log2 of bytes per bit.
    pub granularity_bits: u8,
    /// Name.
    pub name: Vec<u8>,
}

fn bad(index: u32, why: impl Into<String>) -> FormatError {
    FormatError::Bitmap {
        index,
        why: why.into(),
    }
}

/// Parses the bitmap directory like qemu's `bitmap_list_load`, including its
/// per-entry constraints (`check_dir_entry`) for a disk of `virtual_size`.
///
/// # Errors
/// [`FormatError::Bitmap`] naming the entry and the broken rule.
pub fn parse_directory(
    dir: &[u8],
    expected: u32,
    cluster_size: u64,
    virtual_size: u64,
) -> Result<Vec<Bitmap>, FormatError> {
    if dir.is_empty() {
        return Err(bad(0, "bitmap directory size is zero"));
    }
    if crate::bytes::u64_from(dir.len()) > limits::MAX_BITMAP_DIRECTORY_BYTES {
        return Err(bad(0, "bitmap directory size is too big"));
    }
    let mut out = Vec::new();
    let mut pos = 0usize;
    let mut index = 0u32;
    while pos < dir.len() {
        let e = slice(dir, pos, 24).ok_or_else(|| bad(index, "broken bitmap directory"))?;
        if index >= expected {
            return Err(bad(
                index,
                "more bitmaps found than specified in header extension",
            ));
        }
        let table_offset = be_u64(e, 0).unwrap_or(0);
        let table_size = be_u32(e, 8).unwrap_or(0);
        let flags = be_u32(e, 12).unwrap_or(0);
        let kind = e.get(16).copied().unwrap_or(0);
        let granularity_bits = e.get(17).copied().unwrap_or(0);
        let name_size = be_u16(e, 18).unwrap_or(0);
        let extra = be_u32(e, 20).unwrap_or(0);
        let entry_len = 24usize
            .saturating_add(usize_from_u32(extra))
            .saturating_add(usize::from(name_size));
        let next = pos.saturating_add((entry_len.saturating_add(7)) & !7);
        if next > dir.len() {
            return Err(bad(index, "broken bitmap directory"));
        }
        if extra != 0 {
            return Err(bad(index, "bitmap extra data is not supported"));
        }
        let name = slice(dir, pos + 24, usize::from(name_size))
            .unwrap_or(&[])
            .to_vec();
        let phys = u64::from(table_size) * cluster_size;
        let covers = u128::from(phys) * 8 * (1u128 << granularity_bits.min(63));
        let fail = table_size == 0
            || table_offset == 0
            || !table_offset.is_multiple_of(cluster_size)
            || table_size > MAX_TABLE_ENTRIES
            || !(9..=31).contains(&granularity_bits)
            || flags & RESERVED_FLAGS != 0
            || u32::from(name_size) > limits::MAX_BITMAP_NAME
            || kind != 1
            || phys > MAX_PHYS_BYTES
            || (flags & FLAG_IN_USE == 0 && u128::from(virtual_size) > covers);
        if fail {
            return Err(bad(
                index,
                format!(
                    "bitmap '{}' doesn't satisfy the constraints",
                    String::from_utf8_lossy(&name)
                ),
            ));
        }
        out.push(Bitmap {
            table_offset,
            table_size,
            flags,
            kind,
            granularity_bits,
            name,
        });
        index += 1;
        pos = next;
    }
    if index != expected {
        return Err(bad(
            index,
            "fewer bitmaps found than specified in header extension",
        ));
    }
    Ok(out)
}
