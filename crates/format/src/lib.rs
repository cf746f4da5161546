//! `qvet-format` turns bytes into typed qcow2 structures.
//!
//! This crate is the bottom of qvet's stack. It never performs I/O, never uses
//! `unsafe` and never panics on input: every parser takes a byte slice that the
//! caller read, checks lengths before it indexes, and returns a typed
//! [`FormatError`] that names the structure and the offset it could not accept.
//! Counts found in a file are checked against [`limits`] (qemu's own limits)
//! before anything is allocated in proportion to them.
//!
//! The layout follows the qcow2 specification (`docs/interop/qcow2.rst` in
//! qemu): [`header`] (fixed fields, feature bits, extensions, backing name),
//! [`l2`] (L1/L2 entries, cluster and subcluster classification, compressed
//! descriptors), [`refcount`], [`snapshot`], [`bitmap`], [`luks`] and
//! [`probe`] (what kind of image a file is).
//!
//! ```
//! use qvet_format::probe::{probe, Probed};
//! assert_eq!(probe(b"QFI\xfb\x00\x00\x00\x01"), Probed::QcowV1);
//! ```

pub mod bitmap;
pub mod bytes;
pub mod error;
pub mod header;
pub mod l2;
pub mod limits;
pub mod luks;
pub mod luks2;
pub mod probe;
pub mod refcount;
pub mod snapshot;

pub use error::FormatError;
pub use header::Header;
