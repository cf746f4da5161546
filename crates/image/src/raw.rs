//! The raw driver: guest bytes are host bytes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::ImageError;
use crate::source::ByteSource;

/// A raw image.
#[derive(Debug)]
pub struct RawImage {
    file: Arc<dyn ByteSource>,
    path: PathBuf,
}

impl RawImage {
    /// Wraps a host file as a raw image.
    pub fn open(file: Arc<dyn ByteSource>, path: &Path) -> Self {
        Self {
            file,
            path: path.to_path_buf(),
        }
    }

    /// The host file.
    pub fn file(&self) -> &Arc<dyn ByteSource> {
        &self.file
    }

    /// The image path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Guest size: the file length rounded up to whole sectors, as qemu does.
    pub fn size(&self) -> u64 {
        self.file.len().div_ceil(512).saturating_mul(512)
    }

    /// Reads guest bytes; the sector-rounding tail reads as zeros.
    ///
    /// # Errors
    /// [`ImageError::Io`].
    pub fn read(&self, guest: u64, dst: &mut [u8]) -> Result<(), ImageError> {
        self.file
            .read_zero_padded(guest, dst)
            .map_err(|source| ImageError::Io {
                what: "raw image".into(),
                offset: guest,
                error: source,
            })
    }
}
