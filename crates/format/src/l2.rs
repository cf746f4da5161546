//! L1 and L2 table entries and what a guest cluster (or subcluster) maps to.
//!
//! The classification mirrors qemu's `qcow2_get_subcluster_type` exactly, so
//! that reads and `map` agree with `qemu-img` bit for bit.

/// Offset bits of L1 and standard L2 entries (`L1E_OFFSET_MASK`).
pub const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
/// Reserved bits of an L1 entry.
pub const L1_RESERVED_MASK: u64 = 0x7f00_0000_0000_01ff;
/// Reserved bits of a standard (uncompressed) L2 entry.
pub const L2_STD_RESERVED_MASK: u64 = 0x3f00_0000_0000_01fe;
/// "COPIED": refcount is exactly one.
pub const COPIED: u64 = 1 << 63;
/// Compressed cluster descriptor.
pub const COMPRESSED: u64 = 1 << 62;
/// Reads as zero (v3, standard L2 only).
pub const ZERO: u64 = 1;
/// Subclusters per cluster with extended L2 entries.
pub const SUBCLUSTERS: u32 = 32;

/// What a whole cluster maps to, from word 0 of its L2 entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterType {
    /// No host cluster: read from the backing file, or zeros.
    Unallocated,
    /// Reads as zeros, no host cluster.
    ZeroPlain,
    /// Reads as zeros, host cluster reserved at `host`.
    ZeroAlloc,
    /// Data at a host cluster.
    Normal,
    /// A compressed cluster.
    Compressed,
}

/// What a subcluster (or a whole cluster without extended L2) maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubclusterType {
    /// Data at the host offset.
    Normal,
    /// Reads as zero, host cluster reserved.
    ZeroAlloc,
    /// Reads as zero, nothing reserved.
    ZeroPlain,
    /// Not allocated: backing file or zeros; host cluster reserved.
    UnallocatedAlloc,
    /// Not allocated: backing file or zeros.
    UnallocatedPlain,
    /// Compressed cluster.
    Compressed,
    /// Contradictory entry (qemu: "Invalid cluster entry found").
    Invalid,
}

impl SubclusterType {
    /// Whether qemu counts this as allocated in this layer.
    pub fn is_allocated_here(self) -> bool {
        matches!(
            self,
            Self::Normal | Self::ZeroAlloc | Self::ZeroPlain | Self::Compressed
        )
    }

    /// Whether the subcluster has a host offset `qemu-img map` prints.
    pub fn has_host_offset(self) -> bool {
        matches!(
            self,
            Self::Normal | Self::ZeroAlloc | Self::UnallocatedAlloc
        )
    }
}

/// Classifies word 0 of an L2 entry (qemu's `qcow2_get_cluster_type`).
pub fn cluster_type(entry: u64, extended_l2: bool, has_data_file: bool) -> ClusterType {
    if entry & COMPRESSED != 0 {
        ClusterType::Compressed
    } else if entry & ZERO != 0 && !extended_l2 {
        if entry & OFFSET_MASK != 0 {
            ClusterType::ZeroAlloc
        } else {
            ClusterType::ZeroPlain
        }
    } else if entry & OFFSET_MASK == 0 {
        // With a data file, offset 0 is a real cluster when COPIED is set.
        if has_data_file && entry & COPIED != 0 {
            ClusterType::Normal
        } else {
            ClusterType::Unallocated
        }
    } else {
        ClusterType::Normal
    }
}

/// Classifies subcluster `sc` of an entry (qemu's `qcow2_get_subcluster_type`).
///
/// `bitmap` is word 1 of an extended L2 entry, `None` for standard entries.
pub fn subcluster_type(
    entry: u64,
    bitmap: Option<u64>,
    sc: u32,
    has_data_file: bool,
) -> SubclusterType {
    let ctype = cluster_type(entry, bitmap.is_some(), has_data_file);
    let Some(bm) = bitmap else {
        return match ctype {
            ClusterType::Compressed => SubclusterType::Compressed,
            ClusterType::ZeroPlain => SubclusterType::ZeroPlain,
            ClusterType::ZeroAlloc => SubclusterType::ZeroAlloc,
            ClusterType::Normal => SubclusterType::Normal,
            ClusterType::Unallocated => SubclusterType::UnallocatedPlain,
        };
    };
    let sc = sc % SUBCLUSTERS;
    let alloc_bit = 1u64 << sc;
    let zero_bit = 1u64 << (sc + 32);
    match ctype {
        ClusterType::Compressed => SubclusterType::Compressed,
        ClusterType::Normal => {
            if (bm >> 32) & bm & 0xffff_ffff != 0 {
                SubclusterType::Invalid
            } else if bm & zero_bit != 0 {
                SubclusterType::ZeroAlloc
            } else if bm & alloc_bit != 0 {
                SubclusterType::Normal
            } else {
                SubclusterType::UnallocatedAlloc
            }
        }
        ClusterType::Unallocated | ClusterType::ZeroPlain | ClusterType::ZeroAlloc => {
            if bm & 0xffff_ffff != 0 {
                SubclusterType::Invalid
            } else if bm & zero_bit != 0 {
                SubclusterType::ZeroPlain
            } else {
                SubclusterType::UnallocatedPlain
            }
        }
    }
}

/// Where a compressed cluster's bytes are, decoded from its L2 entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompressedDescriptor {
    /// Host byte offset of the compressed stream (not aligned).
    pub host_offset: u64,
    /// Bytes qemu reads from `host_offset`: whole 512-byte sectors, less the
    /// part of the first sector before `host_offset`.
    pub read_len: u64,
}

impl CompressedDescriptor {
    /// Decodes a compressed L2 entry for clusters of `1 << cluster_bits` bytes.
    ///
    /// `cluster_bits` must be 9..=21 (guaranteed by [`crate::Header::parse`]).
    pub fn decode(entry: u64, cluster_bits: u32) -> Self {
        let shift = 62u32.saturating_sub(cluster_bits.saturating_sub(8));
        let offset_mask = (1u64 << shift) - 1;
        let sectors_mask = (1u64 << cluster_bits.saturating_sub(8)) - 1;
        let host_offset = entry & offset_mask;
        let sectors = ((entry >> shift) & sectors_mask) + 1;
        let read_len = sectors * 512 - (host_offset & 511);
        Self {
            host_offset,
            read_len,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_like_qemu() {
        assert_eq!(cluster_type(0, false, false), ClusterType::Unallocated);
        assert_eq!(cluster_type(1, false, false), ClusterType::ZeroPlain);
        assert_eq!(cluster_type(0x50001, false, false), ClusterType::ZeroAlloc);
        assert_eq!(
            cluster_type(COPIED | 0x50000, false, false),
            ClusterType::Normal
        );
        assert_eq!(cluster_type(COPIED, false, false), ClusterType::Unallocated);
        assert_eq!(cluster_type(COPIED, false, true), ClusterType::Normal);
        assert_eq!(cluster_type(1, true, false), ClusterType::Unallocated);
    }

    #[test]
    fn extended_l2_matches_observed_entry() {
        // qcow2.md 1.7: 16 KiB clusters, 1 KiB written at 2 KiB, zeroes at 8..10 KiB.
        let e = 0x8000_0000_0001_4000;
        let bm = 0x000f_0000_0000_0030;
        assert_eq!(
            subcluster_type(e, Some(bm), 0, false),
            SubclusterType::UnallocatedAlloc
        );
        assert_eq!(
            subcluster_type(e, Some(bm), 4, false),
            SubclusterType::Normal
        );
        assert_eq!(
            subcluster_type(e, Some(bm), 16, false),
            SubclusterType::ZeroAlloc
        );
        assert_eq!(
            subcluster_type(e, Some(0x1_0000_0001), 3, false),
            SubclusterType::Invalid
        );
        assert_eq!(
            subcluster_type(0, Some(1), 3, false),
            SubclusterType::Invalid
        );
        assert_eq!(
            subcluster_type(0, Some(1 << 33), 1, false),
            SubclusterType::ZeroPlain
        );
    }

    #[test]
    fn compressed_descriptor_fields() {
        // qcow2.md 1.6: 64 KiB cluster, entry 0x5100000000050000 -> 69 sectors at 0x50000.
        let d = CompressedDescriptor::decode(0x5100_0000_0005_0000 & !COPIED, 16);
        assert_eq!(d.host_offset, 0x50000);
        assert_eq!(d.read_len, 69 * 512);
        let d = CompressedDescriptor::decode(0x4008_0000_00a0_0802, 21);
        assert_eq!(d.host_offset, 0xa00802);
        assert_eq!(d.read_len, 5 * 512 - 2);
    }
}
