//! A bounded view of part of a byte source (a partition of a disk).

use std::io;
use std::sync::Arc;

use qvet_image::ByteSource;

/// Bytes `[start, start + len)` of `inner`, addressed from 0.
#[derive(Debug, Clone)]
pub struct Window {
    inner: Arc<dyn ByteSource>,
    start: u64,
    len: u64,
}

impl Window {
    /// A view of `len` bytes from `start` (clipped to the source).
    pub fn new(inner: Arc<dyn ByteSource>, start: u64, len: u64) -> Self {
        let len = len.min(inner.len().saturating_sub(start));
        Self { inner, start, len }
    }
}

impl ByteSource for Window {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        if offset >= self.len {
            return Ok(0);
        }
        let n = usize::try_from(self.len - offset)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let dst = buf.get_mut(..n).unwrap_or_default();
        self.inner.read_at(self.start + offset, dst)
    }
}
