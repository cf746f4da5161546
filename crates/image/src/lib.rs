//! `qvet-image` is the guest view of a disk image: the bytes a VM would see.
//!
//! Everything qvet answers about an image is a function of these bytes, so
//! this crate is built to be identical to qemu's view and to stay safe on
//! hostile files:
//!
//! * [`source`]: positioned, read-only byte sources (`pread`), shareable
//!   across threads; reads past the end of a host file return zeros, as in qemu.
//! * [`qcow2`] and [`raw`]: the two image drivers. The qcow2 driver maps guest
//!   offsets through L1/L2 tables (standard and extended L2), reads compressed
//!   clusters (deflate and zstd, capped at one cluster), external data files
//!   and internal snapshots.
//! * [`crypt`]: LUKS1 key-slot opening and the legacy AES scheme, so that
//!   encrypted images read with a passphrase ([`Key`]).
//! * [`disk`]: opening an image and its backing chain under a deny-by-default
//!   [`disk::OpenOptions`] policy, and the [`disk::Disk`] guest view with
//!   `read_at` and qemu-compatible block status ([`map`]).
//! * [`compare`]: the guest ranges where two disks differ, using both
//!   mappings to skip zeros and identical compressed streams.
//!
//! Nothing here writes to a file or prints.

pub mod compare;
pub mod crypt;
pub mod decompress;
pub mod disk;
pub mod error;
pub mod map;
pub mod qcow2;
pub mod raw;
pub mod refcounts;
pub mod source;

pub use crypt::Key;
pub use disk::{Disk, Format, OpenOptions};
pub use error::ImageError;
pub use source::{ByteSource, FileSource, MemSource};
