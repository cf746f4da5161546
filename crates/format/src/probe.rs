//! What kind of image a file is, from its first bytes.

use crate::bytes::be_u32;
use crate::header::MAGIC;

/// The result of looking at the start of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probed {
    /// qcow2 magic with version 2 or 3.
    Qcow2,
    /// qcow2 magic with version 1: the legacy qcow format.
    QcowV1,
    /// qcow2 magic with an unknown version.
    QcowUnknownVersion(u32),
    /// Anything else is a raw image.
    Raw,
}

/// Classifies a file by its first bytes (at least 8 are needed to see qcow2).
pub fn probe(first: &[u8]) -> Probed {
    match (be_u32(first, 0), be_u32(first, 4)) {
        (Some(MAGIC), Some(1)) => Probed::QcowV1,
        (Some(MAGIC), Some(2 | 3)) => Probed::Qcow2,
        (Some(MAGIC), Some(v)) => Probed::QcowUnknownVersion(v),
        _ => Probed::Raw,
    }
}
