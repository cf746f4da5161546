//! `qvet-audit` turns an image into findings: what is wrong with it and where.
//!
//! - [`check`] rebuilds the reference count of every host cluster from every
//!   structure that references one and compares it with the stored
//!   refcounts, classifying exactly as `qemu-img check` does, and goes
//!   further (every compressed cluster decoded, data over metadata, leaks
//!   that still hold data).
//! - [`diff`] says what changed between two guest disks, file by file.
//! - [`run::audit`] is `qvet audit`: every layer in one pass — identity,
//!   container, layout, filesystem provenance, package integrity, accounts,
//!   remote access, persistence, content, the reference diff — as
//!   [`finding::Finding`]s from the [`rules`] (one module per family, each
//!   rule with its id, documentation and tests), a [`policy::Policy`] for
//!   what a lab adds on purpose, and a [`verdict::Verdict`].
//!
//! Facts about the guest come from `qvet-inspect`; rules only judge them.
//! Nothing here prints or writes; results are values.

pub mod baseline;
pub mod check;
pub mod diff;
pub mod finding;
mod imrt;
pub mod policy;
pub mod rules;
pub mod run;
pub mod verdict;

pub use check::{check, check_structure, CheckReport, Class, Problem};
