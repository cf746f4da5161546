//! Linux swap areas, for compaction: what in them is free.
//!
//! The header page (its size is where the signature sits: `SWAPSPACE2` at
//! `page_size - 10`) is always kept; everything after it is stale swap and
//! free, unless the area holds a hibernation image (`S1SUSPEND`,
//! `S2SUSPEND`, `ULSUSPEND`, `LINHIB0001`, ... at the signature place),
//! which the next boot resumes from: then it is kept whole, as is anything
//! unrecognised (old `SWAP-SPACE` areas included).

use qvet_image::ByteSource;
use qvet_volume::{HIBERNATION_SIGNATURES, SWAP_PAGE_SIZES};

use crate::{read_bytes, FsError};

/// What a swap area holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwapSpace {
    /// Plain swap: everything from `page_size` to the end is free.
    Free {
        /// Page size (the header's length).
        page_size: u64,
        /// Free byte range `(offset, length)` in the volume.
        free: (u64, u64),
    },
    /// Kept whole, with the reason.
    Kept(String),
}

/// Reads the swap header of `src`.
///
/// # Errors
/// I/O errors.
pub fn swap_space(src: &dyn ByteSource) -> Result<SwapSpace, FsError> {
    let len = src.len();
    for ps in SWAP_PAGE_SIZES {
        if ps > len {
            break;
        }
        let sig = read_bytes(src, ps - 10, 10)?;
        if sig == b"SWAPSPACE2" {
            return Ok(SwapSpace::Free {
                page_size: ps,
                free: (ps, len - ps),
            });
        }
        if sig == b"SWAP-SPACE" {
            return Ok(SwapSpace::Kept("old-style (v0) swap area".into()));
        }
        if HIBERNATION_SIGNATURES.iter().any(|h| sig.starts_with(h)) {
            return Ok(SwapSpace::Kept(format!(
                "hibernation image ({})",
                String::from_utf8_lossy(&sig).trim_end_matches('\0')
            )));
        }
    }
    Ok(SwapSpace::Kept("no swap signature".into()))
}

/// Whether `src` starts like a swap area or a hibernation image (a
/// hibernated swap partition no longer carries `SWAPSPACE2`).
///
/// # Errors
/// I/O errors.
pub fn looks_like_swap(src: &dyn ByteSource) -> Result<bool, FsError> {
    Ok(match swap_space(src)? {
        SwapSpace::Free { .. } => true,
        SwapSpace::Kept(why) => why != "no swap signature",
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use qvet_image::MemSource;

    fn area(sig: &[u8], at: usize, len: usize) -> MemSource {
        let mut v = vec![0xAAu8; len];
        v[at..at + sig.len()].copy_from_slice(sig);
        MemSource(v)
    }

    #[test]
    fn plain_swap_frees_all_but_the_header_page() {
        let s = area(b"SWAPSPACE2", 4086, 1 << 20);
        assert_eq!(
            swap_space(&s).unwrap(),
            SwapSpace::Free {
                page_size: 4096,
                free: (4096, (1 << 20) - 4096)
            }
        );
        let s = area(b"SWAPSPACE2", 65526, 1 << 20);
        assert!(matches!(
            swap_space(&s).unwrap(),
            SwapSpace::Free {
                page_size: 65536,
                ..
            }
        ));
    }

    #[test]
    fn hibernation_and_unknown_are_kept() {
        let s = area(b"S1SUSPEND\0", 4086, 1 << 20);
        assert!(matches!(swap_space(&s).unwrap(), SwapSpace::Kept(w) if w.contains("hibernation")));
        let s = area(b"SWAP-SPACE", 4086, 1 << 20);
        assert!(matches!(swap_space(&s).unwrap(), SwapSpace::Kept(_)));
        let s = MemSource(vec![0; 100]);
        assert!(matches!(swap_space(&s).unwrap(), SwapSpace::Kept(_)));
    }
}
