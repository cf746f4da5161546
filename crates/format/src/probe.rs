//! What kind of image a file is, from its first bytes.

use crate::bytes::{be_u32, le_u32};
use crate::header::MAGIC;

/// Bytes [`probe`] looks at: enough for every signature it knows (VDI's
/// lies at offset 0x40).
pub const PROBE_LEN: usize = 512;

/// The result of looking at the start of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probed {
    /// qcow2 magic with version 2 or 3.
    Qcow2,
    /// qcow2 magic with version 1: the legacy qcow format.
    QcowV1,
    /// qcow2 magic with an unknown version.
    QcowUnknownVersion(u32),
    /// Another image format qemu knows by its first bytes (VMDK, VDI,
    /// VHDX, VHD, QED, Parallels, Bochs), which qvet does not read: read as
    /// raw, its container bytes would pass for a guest disk.
    Foreign(&'static str),
    /// Anything else is a raw image.
    Raw,
}

/// Signatures at offset 0, as qemu's block drivers probe them.
const AT_START: &[(&[u8], &str)] = &[
    (b"KDMV", "VMDK"),
    (b"COWD", "VMDK"),
    (b"# Disk DescriptorFile", "VMDK"),
    (b"vhdxfile", "VHDX"),
    (b"conectix", "VHD"),
    (b"QED\0", "QED"),
    (b"WithoutFreeSpace", "Parallels"),
    (b"WithouFreSpacExt", "Parallels"),
    (b"Bochs Virtual HD Image", "Bochs"),
];

/// VDI's signature (little-endian u32 at offset 0x40).
const VDI_SIGNATURE: u32 = 0xbeda_107f;

/// Classifies a file by its first bytes (at least 8 are needed to see
/// qcow2, [`PROBE_LEN`] to see every other format).
pub fn probe(first: &[u8]) -> Probed {
    match (be_u32(first, 0), be_u32(first, 4)) {
        (Some(MAGIC), Some(1)) => return Probed::QcowV1,
        (Some(MAGIC), Some(2 | 3)) => return Probed::Qcow2,
        (Some(MAGIC), Some(v)) => return Probed::QcowUnknownVersion(v),
        _ => {}
    }
    if let Some((_, name)) = AT_START.iter().find(|(sig, _)| first.starts_with(sig)) {
        return Probed::Foreign(name);
    }
    if le_u32(first, 0x40) == Some(VDI_SIGNATURE) {
        return Probed::Foreign("VDI");
    }
    Probed::Raw
}

#[cfg(test)]
mod tests {
    #![allow(clippy::indexing_slicing)]
    use super::*;

    fn at(offset: usize, sig: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; PROBE_LEN];
        b[offset..offset + sig.len()].copy_from_slice(sig);
        b
    }

    #[test]
    fn foreign_formats_are_named() {
        assert_eq!(probe(&at(0, b"KDMV\x01\0\0\0")), Probed::Foreign("VMDK"));
        assert_eq!(
            probe(&at(0, b"# Disk DescriptorFile\n")),
            Probed::Foreign("VMDK")
        );
        assert_eq!(probe(&at(0, b"vhdxfile")), Probed::Foreign("VHDX"));
        assert_eq!(probe(&at(0, b"conectix")), Probed::Foreign("VHD"));
        assert_eq!(probe(&at(0, b"QED\0")), Probed::Foreign("QED"));
        assert_eq!(
            probe(&at(0x40, &VDI_SIGNATURE.to_le_bytes())),
            Probed::Foreign("VDI")
        );
        // Zeros, a boot sector, a short file: raw.
        assert_eq!(probe(&[0u8; PROBE_LEN]), Probed::Raw);
        assert_eq!(probe(&at(510, &[0x55, 0xaa])), Probed::Raw);
        assert_eq!(probe(b"KDM"), Probed::Raw);
        // The VDI signature elsewhere is data.
        assert_eq!(probe(&at(0x44, &VDI_SIGNATURE.to_le_bytes())), Probed::Raw);
    }
}
