//! `qvet-audit` turns an image into findings: what is wrong with it and where.
//!
//! [`check`] rebuilds the reference count of every host cluster from every
//! structure that references one and compares it with the stored refcounts,
//! classifying exactly as `qemu-img check` does (so its counts and exit code
//! agree with qemu's), and goes further: every compressed cluster is decoded,
//! data that overlaps metadata is reported whatever the refcounts say, and
//! leaked clusters are listed with whether they still hold data.
//!
//! Nothing here prints or writes; results are values.

pub mod check;
pub mod diff;
mod imrt;

pub use check::{check, CheckReport, Class, Problem};
