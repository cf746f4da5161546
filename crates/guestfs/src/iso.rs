//! The Iso reader (being written; until then it recognises nothing).

use std::sync::Arc;

use qvet_image::ByteSource;

use crate::{DirEntry, FileSystem, FsError, Metadata, NodeId};

/// The Iso reader.
pub struct Iso;

impl Iso {
    /// Opens a Iso filesystem.
    ///
    /// # Errors
    /// [`FsError::NotThisFs`] until the reader exists.
    pub fn open(_src: Arc<dyn ByteSource>) -> Result<Self, FsError> {
        Err(FsError::NotThisFs("iso"))
    }
}

impl FileSystem for Iso {
    fn kind(&self) -> &'static str {
        "iso"
    }
    fn root(&self) -> NodeId {
        NodeId(0)
    }
    fn metadata(&self, _id: NodeId) -> Result<Metadata, FsError> {
        Err(FsError::Unsupported("iso".into()))
    }
    fn read_dir(&self, _id: NodeId) -> Result<Vec<DirEntry>, FsError> {
        Err(FsError::Unsupported("iso".into()))
    }
    fn read(&self, _id: NodeId, _offset: u64, _buf: &mut [u8]) -> Result<usize, FsError> {
        Err(FsError::Unsupported("iso".into()))
    }
    fn read_link(&self, _id: NodeId) -> Result<Vec<u8>, FsError> {
        Err(FsError::Unsupported("iso".into()))
    }
}
