//! The Ext reader (being written; until then it recognises nothing).

use std::sync::Arc;

use qvet_image::ByteSource;

use crate::{DirEntry, FileSystem, FsError, Metadata, NodeId};

/// The Ext reader.
pub struct Ext;

impl Ext {
    /// Opens a Ext filesystem.
    ///
    /// # Errors
    /// [`FsError::NotThisFs`] until the reader exists.
    pub fn open(src: Arc<dyn ByteSource>) -> Result<Self, FsError> {
        let _magic = crate::read_bytes(src.as_ref(), 1080, 2)?;
        Err(FsError::NotThisFs("ext"))
    }
}

impl FileSystem for Ext {
    fn kind(&self) -> &'static str {
        "ext"
    }
    fn root(&self) -> NodeId {
        NodeId(0)
    }
    fn metadata(&self, _id: NodeId) -> Result<Metadata, FsError> {
        Err(FsError::Unsupported("ext".into()))
    }
    fn read_dir(&self, _id: NodeId) -> Result<Vec<DirEntry>, FsError> {
        Err(FsError::Unsupported("ext".into()))
    }
    fn read(&self, _id: NodeId, _offset: u64, _buf: &mut [u8]) -> Result<usize, FsError> {
        Err(FsError::Unsupported("ext".into()))
    }
    fn read_link(&self, _id: NodeId) -> Result<Vec<u8>, FsError> {
        Err(FsError::Unsupported("ext".into()))
    }
}
