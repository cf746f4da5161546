//! Which filesystem a volume holds, from its magic numbers.

use qvet_image::ByteSource;

use crate::{read, VolumeError};

/// A filesystem (or other content) recognised by its signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsKind {
    /// ext2, ext3 or ext4 (superblock magic 0xEF53).
    Ext,
    /// FAT12/16/32.
    Fat,
    /// ISO 9660.
    Iso9660,
    /// squashfs.
    Squashfs,
    /// XFS.
    Xfs,
    /// btrfs.
    Btrfs,
    /// NTFS.
    Ntfs,
    /// Linux swap.
    Swap,
    /// LVM2 physical volume.
    Lvm,
    /// LUKS container.
    Luks,
    /// FreeBSD UFS1/UFS2 (Junos, vSRX): detected, not read.
    Ufs,
    /// Nothing recognised.
    Unknown,
}

impl FsKind {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ext => "ext",
            Self::Fat => "fat",
            Self::Iso9660 => "iso9660",
            Self::Squashfs => "squashfs",
            Self::Xfs => "xfs",
            Self::Btrfs => "btrfs",
            Self::Ntfs => "ntfs",
            Self::Swap => "swap",
            Self::Lvm => "lvm2",
            Self::Luks => "luks",
            Self::Ufs => "ufs",
            Self::Unknown => "unknown",
        }
    }
}

/// Looks at the first 64 KiB of `[start, start + len)`; `None` when the range
/// is empty or reads as all zeros.
///
/// # Errors
/// [`VolumeError::Io`].
pub fn detect_filesystem(
    disk: &dyn ByteSource,
    start: u64,
    len: u64,
) -> Result<Option<FsKind>, VolumeError> {
    // 68 KiB: up to the UFS2 superblock's magic at 64 KiB + 1372.
    let want = usize::try_from(len.min(68 << 10)).unwrap_or(0);
    if want == 0 {
        return Ok(None);
    }
    let b = read(disk, start, want)?;
    if b.iter().all(|&x| x == 0) {
        return Ok(None);
    }
    let at = |o: usize, m: &[u8]| b.get(o..o + m.len()) == Some(m);
    let kind = if at(1080, &[0x53, 0xef]) {
        FsKind::Ext
    } else if at(32769, b"CD001") {
        FsKind::Iso9660
    } else if at(0, b"hsqs") {
        FsKind::Squashfs
    } else if at(0, b"XFSB") {
        FsKind::Xfs
    } else if at(0x10040, b"_BHRfS_M") {
        FsKind::Btrfs
    } else if at(3, b"NTFS    ") {
        FsKind::Ntfs
    } else if at(0, b"LUKS\xba\xbe") {
        FsKind::Luks
    } else if at(512, b"LABELONE") || at(512 + 24, b"LVM2 001") {
        FsKind::Lvm
    } else if is_swap(&b, 4096) {
        FsKind::Swap
    } else if [8192 + 1372, 65536 + 1372].iter().any(|&o| {
        // fs_magic, either byte order (UFS1 0x011954, UFS2 0x19540119).
        let m = b.get(o..o + 4);
        [0x0001_1954_u32, 0x1954_0119]
            .iter()
            .any(|v| m == Some(&v.to_le_bytes()[..]) || m == Some(&v.to_be_bytes()[..]))
    }) {
        FsKind::Ufs
    } else if is_fat(&b) {
        FsKind::Fat
    } else if SWAP_PAGE_SIZES.iter().any(|&page| is_swap(&b, page)) {
        // Larger pages last: their signature lies deep enough to be a
        // file's bytes inside another filesystem.
        FsKind::Swap
    } else {
        FsKind::Unknown
    };
    Ok(Some(kind))
}

/// Page sizes a Linux swap header can have (x86 4 KiB; arm64 and ppc64 up
/// to 64 KiB), smallest first: the signature is the page's last ten bytes.
pub const SWAP_PAGE_SIZES: [u64; 4] = [4096, 8192, 16384, 65536];

/// Signatures a hibernation image writes over `SWAPSPACE2` while it is
/// stored in the swap area (kernel swsusp, uswsusp, TuxOnIce).
pub const HIBERNATION_SIGNATURES: [&[u8]; 5] = [
    b"S1SUSPEND",
    b"S2SUSPEND",
    b"ULSUSPEND",
    b"LINHIB0001",
    b"\xed\xc3\x02\xe9\x98\x56\xe5\x0c",
];

/// A swap header's signature (v1 `SWAPSPACE2`, old v0 `SWAP-SPACE`), or a
/// hibernation image's, at the end of a first page of `page` bytes.
fn is_swap(b: &[u8], page: u64) -> bool {
    let end = usize::try_from(page).unwrap_or(usize::MAX);
    b.get(end.saturating_sub(10)..end).is_some_and(|sig| {
        sig == b"SWAPSPACE2"
            || sig == b"SWAP-SPACE"
            || HIBERNATION_SIGNATURES.iter().any(|h| sig.starts_with(h))
    })
}

/// A FAT boot sector: jump, sane bytes per sector and cluster size, 55 AA.
fn is_fat(b: &[u8]) -> bool {
    let jump = matches!(b.first(), Some(0xeb) | Some(0xe9));
    let bps = b
        .get(11..13)
        .and_then(|x| x.try_into().ok())
        .map(u16::from_le_bytes)
        .unwrap_or(0);
    let spc = b.get(13).copied().unwrap_or(0);
    let sig = b.get(510..512) == Some([0x55, 0xaa].as_slice());
    let label = b.get(54..59) == Some(b"FAT12".as_slice())
        || b.get(54..59) == Some(b"FAT16".as_slice())
        || b.get(82..87) == Some(b"FAT32".as_slice());
    jump && sig
        && matches!(bps, 512 | 1024 | 2048 | 4096)
        && spc.is_power_of_two()
        && (label || b.get(16).is_some_and(|&n| n == 1 || n == 2))
}
