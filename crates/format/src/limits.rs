//! Limits on sizes read from an image: qemu's own, so that every image qemu
//! opens is opened here too, and nothing larger drives an allocation.

/// Smallest cluster size exponent (512 B).
pub const MIN_CLUSTER_BITS: u32 = 9;
/// Largest cluster size exponent (2 MiB), qemu's `MAX_CLUSTER_BITS`.
pub const MAX_CLUSTER_BITS: u32 = 21;
/// Extended L2 needs subclusters of at least 512 B, so clusters of 16 KiB.
pub const MIN_EXTENDED_L2_CLUSTER_BITS: u32 = 14;
/// Active or snapshot L1 table, in bytes (`QCOW_MAX_L1_SIZE`).
pub const MAX_L1_BYTES: u64 = 32 << 20;
/// Entries in an L1 table.
pub const MAX_L1_ENTRIES: u64 = MAX_L1_BYTES / 8;
/// Refcount table, in bytes (`QCOW_MAX_REFTABLE_SIZE`).
pub const MAX_REFTABLE_BYTES: u64 = 8 << 20;
/// Internal snapshots (`QCOW_MAX_SNAPSHOTS`).
pub const MAX_SNAPSHOTS: u32 = 65536;
/// Extra data per snapshot table entry (`QCOW_MAX_SNAPSHOT_EXTRA_DATA`).
pub const MAX_SNAPSHOT_EXTRA_DATA: u32 = 1024;
/// Whole snapshot table, in bytes (`QCOW_MAX_SNAPSHOTS_SIZE`).
pub const MAX_SNAPSHOT_TABLE_BYTES: u64 = 1024 * 65536;
/// Backing file name length (qemu: 1023 bytes).
pub const MAX_BACKING_NAME: u32 = 1023;
/// Backing format extension must be shorter than this.
pub const MAX_BACKING_FORMAT: u32 = 16;
/// Bitmaps in one image (`QCOW2_MAX_BITMAPS`).
pub const MAX_BITMAPS: u32 = 65535;
/// Bitmap directory entry names.
pub const MAX_BITMAP_NAME: u32 = 1023;
/// Bitmap directory, in bytes (`QCOW2_MAX_BITMAP_DIRECTORY_SIZE`).
pub const MAX_BITMAP_DIRECTORY_BYTES: u64 = 1024 * 65535;
/// Largest host offset a table entry can express (`QCOW_MAX_CLUSTER_OFFSET`).
pub const MAX_HOST_OFFSET: u64 = (1 << 56) - 1;
/// Backing chain depth followed when the user allows it.
pub const MAX_BACKING_DEPTH: usize = 16;
