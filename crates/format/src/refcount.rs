//! Refcount table entries and refcount block decoding at every width (1..64 bits).

/// Offset bits of a refcount table entry.
pub const REFTABLE_OFFSET_MASK: u64 = 0xffff_ffff_ffff_fe00;
/// Reserved bits of a refcount table entry.
pub const REFTABLE_RESERVED_MASK: u64 = 0x1ff;

/// Reads entry `index` of a refcount block with `1 << order`-bit entries.
///
/// Widths below 8 bits are packed least-significant bits first within each
/// byte; wider entries are big-endian integers. `None` when `index` is
/// outside `block` or `order > 6`.
pub fn refcount_at(block: &[u8], order: u32, index: u64) -> Option<u64> {
    let bits: u64 = 1u64.checked_shl(order)?;
    if order > 6 {
        return None;
    }
    if bits < 8 {
        let per_byte = 8 / bits;
        let byte = *block.get(usize::try_from(index / per_byte).ok()?)?;
        let shift = (index % per_byte) * bits;
        let mask = (1u64 << bits) - 1;
        return Some((u64::from(byte) >> shift) & mask);
    }
    let width = usize::try_from(bits / 8).ok()?;
    let start = usize::try_from(index).ok()?.checked_mul(width)?;
    let raw = block.get(start..start.checked_add(width)?)?;
    Some(raw.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_packed_and_wide_entries() {
        // 1-bit: clusters 0-3 used -> first byte 0x0f (qcow2.md 1.8).
        let b = [0x0f, 0x00];
        assert_eq!(refcount_at(&b, 0, 0), Some(1));
        assert_eq!(refcount_at(&b, 0, 3), Some(1));
        assert_eq!(refcount_at(&b, 0, 4), Some(0));
        assert_eq!(refcount_at(&b, 2, 1), Some(0));
        assert_eq!(refcount_at(&[0x21], 2, 1), Some(2));
        assert_eq!(refcount_at(&[0, 1, 0, 2], 4, 1), Some(2));
        assert_eq!(refcount_at(&[0, 0, 0, 0, 0, 0, 1, 0], 6, 0), Some(256));
        assert_eq!(refcount_at(&[0, 1], 4, 1), None);
        assert_eq!(refcount_at(&[0, 1], 7, 0), None);
    }
}
