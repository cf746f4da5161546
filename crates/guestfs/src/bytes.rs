//! Fixed-width integers read from on-disk structures. Every reader here
//! parses hostile bytes, so a field past the end of its buffer reads as 0
//! (the structure's own checks then reject it) instead of failing or
//! panicking.

/// Little-endian u16 at `at`, or 0 past the end.
pub(crate) fn le16(b: &[u8], at: usize) -> u16 {
    b.get(at..at.saturating_add(2))
        .and_then(|s| s.try_into().ok())
        .map_or(0, u16::from_le_bytes)
}

/// Little-endian u32 at `at`, or 0 past the end.
pub(crate) fn le32(b: &[u8], at: usize) -> u32 {
    b.get(at..at.saturating_add(4))
        .and_then(|s| s.try_into().ok())
        .map_or(0, u32::from_le_bytes)
}

/// Big-endian u16 at `at`, or 0 past the end (jbd2 is big-endian).
pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    b.get(at..at.saturating_add(2))
        .and_then(|s| s.try_into().ok())
        .map_or(0, u16::from_be_bytes)
}

/// Big-endian u32 at `at`, or 0 past the end.
pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    b.get(at..at.saturating_add(4))
        .and_then(|s| s.try_into().ok())
        .map_or(0, u32::from_be_bytes)
}

/// Big-endian u64 at `at`, or 0 past the end.
pub(crate) fn be64(b: &[u8], at: usize) -> u64 {
    b.get(at..at.saturating_add(8))
        .and_then(|s| s.try_into().ok())
        .map_or(0, u64::from_be_bytes)
}

/// The byte at `at`, or 0 past the end.
pub(crate) fn byte(b: &[u8], at: usize) -> u8 {
    b.get(at).copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_orders_and_zero_past_the_end() {
        let b = [1u8, 2, 3, 4, 5, 6, 7, 8];
        assert_eq!(le16(&b, 0), 0x0201);
        assert_eq!(le32(&b, 4), 0x0807_0605);
        assert_eq!(be16(&b, 0), 0x0102);
        assert_eq!(be32(&b, 4), 0x0506_0708);
        assert_eq!(be64(&b, 0), 0x0102_0304_0506_0708);
        assert_eq!(byte(&b, 7), 8);
        assert_eq!(
            (le16(&b, 7), le32(&b, 5), be64(&b, 1), byte(&b, 8)),
            (0, 0, 0, 0)
        );
        assert_eq!(le32(&b, usize::MAX), 0);
    }
}
