//! ext reader tests.

use std::sync::Arc;

use qvet_guestfs::{ext::Ext, FsError};
use qvet_image::MemSource;

#[test]
fn zeros_are_not_ext() {
    let src = Arc::new(MemSource(vec![0u8; 4096]));
    assert!(matches!(Ext::open(src), Err(FsError::NotThisFs(_))));
}
