//! Bounds-checked big-endian readers: the only way parsers touch raw bytes.

/// Reads a big-endian `u16` at `offset`, or `None` when the slice is too short.
pub fn be_u16(bytes: &[u8], offset: usize) -> Option<u16> {
    let end = offset.checked_add(2)?;
    let b: [u8; 2] = bytes.get(offset..end)?.try_into().ok()?;
    Some(u16::from_be_bytes(b))
}

/// Reads a big-endian `u32` at `offset`, or `None` when the slice is too short.
pub fn be_u32(bytes: &[u8], offset: usize) -> Option<u32> {
    let end = offset.checked_add(4)?;
    let b: [u8; 4] = bytes.get(offset..end)?.try_into().ok()?;
    Some(u32::from_be_bytes(b))
}

/// Reads a big-endian `u64` at `offset`, or `None` when the slice is too short.
pub fn be_u64(bytes: &[u8], offset: usize) -> Option<u64> {
    let end = offset.checked_add(8)?;
    let b: [u8; 8] = bytes.get(offset..end)?.try_into().ok()?;
    Some(u64::from_be_bytes(b))
}

/// Reads a little-endian `u32` at `offset`, or `None` when the slice is too short.
pub fn le_u32(bytes: &[u8], offset: usize) -> Option<u32> {
    let end = offset.checked_add(4)?;
    let b: [u8; 4] = bytes.get(offset..end)?.try_into().ok()?;
    Some(u32::from_le_bytes(b))
}

/// Returns `bytes[offset..offset + len]`, or `None` when out of range.
pub fn slice(bytes: &[u8], offset: usize, len: usize) -> Option<&[u8]> {
    bytes.get(offset..offset.checked_add(len)?)
}

/// Decodes a big-endian table of `u64` entries (L1, L2, reftable).
///
/// A trailing partial entry is ignored; callers size the slice.
pub fn be_u64_table(bytes: &[u8]) -> Vec<u64> {
    bytes
        .chunks_exact(8)
        .map(|c| {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            u64::from_be_bytes(b)
        })
        .collect()
}

/// Converts a `u64` to `usize`; saturates on (theoretical) 32-bit targets so
/// that a later bounds check fails instead of wrapping.
pub fn usize_from(v: u64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

/// Widens a `u32` to `usize` (lossless on every target qvet supports).
pub fn usize_from_u32(v: u32) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

/// Widens a `usize` to `u64` (lossless on every target qvet supports).
pub fn u64_from(v: usize) -> u64 {
    u64::try_from(v).unwrap_or(u64::MAX)
}

/// A C-like string field: bytes up to the first NUL.
pub fn until_nul(bytes: &[u8]) -> &[u8] {
    match bytes.iter().position(|&b| b == 0) {
        Some(n) => bytes.get(..n).unwrap_or(bytes),
        None => bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_refuse_short_input() {
        assert_eq!(be_u32(&[0, 0, 1], 0), None);
        assert_eq!(be_u32(&[0, 0, 1, 2], 0), Some(0x102));
        assert_eq!(be_u64(&[1; 8], usize::MAX), None);
        assert_eq!(slice(&[1, 2, 3], 2, 2), None);
        assert_eq!(until_nul(b"ab\0cd"), b"ab");
        assert_eq!(be_u64_table(&[0, 0, 0, 0, 0, 0, 0, 5, 9]), vec![5]);
    }
}
