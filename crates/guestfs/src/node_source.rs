//! A regular file inside a guest filesystem as a [`ByteSource`], so that a
//! filesystem image stored as a file (VyOS's
//! `/boot/<version>/<version>.squashfs` in an ext partition) can be opened
//! with [`crate::open`] or a reader's own `open`.

use std::io;
use std::sync::Arc;

use qvet_image::ByteSource;

use crate::{FileSystem, FileType, FsError, NodeId};

/// The bytes of one regular file of a [`FileSystem`].
pub struct NodeSource {
    fs: Arc<dyn FileSystem>,
    id: NodeId,
    size: u64,
}

impl std::fmt::Debug for NodeSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeSource")
            .field("fs", &self.fs.kind())
            .field("id", &self.id)
            .field("size", &self.size)
            .finish()
    }
}

impl NodeSource {
    /// The file `id` of `fs`.
    ///
    /// # Errors
    /// [`FsError::Unsupported`] when the node is not a regular file; the
    /// filesystem's error reading its metadata.
    pub fn new(fs: Arc<dyn FileSystem>, id: NodeId) -> Result<Self, FsError> {
        let md = fs.metadata(id)?;
        if md.kind != FileType::File {
            return Err(FsError::Unsupported(format!(
                "a {:?} as a byte source (only regular files)",
                md.kind
            )));
        }
        Ok(Self {
            fs,
            id,
            size: md.size,
        })
    }

    /// The file at `path` (symlinks followed) of `fs`.
    ///
    /// # Errors
    /// As [`crate::lookup`] and [`NodeSource::new`].
    pub fn open_path(fs: Arc<dyn FileSystem>, path: &[u8]) -> Result<Self, FsError> {
        let id = crate::lookup(fs.as_ref(), path, true)?;
        Self::new(fs, id)
    }

    /// The node read.
    pub fn id(&self) -> NodeId {
        self.id
    }
}

impl ByteSource for NodeSource {
    fn len(&self) -> u64 {
        self.size
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        if offset >= self.size {
            return Ok(0);
        }
        let want = usize::try_from(self.size - offset)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let mut done = 0usize;
        while done < want {
            let Some(dst) = buf.get_mut(done..want) else {
                break;
            };
            let n = self
                .fs
                .read(self.id, offset + done as u64, dst)
                .map_err(io::Error::other)?;
            if n == 0 {
                break;
            }
            done += n;
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DirEntry, Metadata};

    /// One file whose byte at offset i is i mod 251, read at most 7 bytes
    /// at a time (short reads must be continued).
    #[derive(Debug)]
    struct Toy;

    impl FileSystem for Toy {
        fn kind(&self) -> &'static str {
            "toy"
        }
        fn root(&self) -> NodeId {
            NodeId(1)
        }
        fn metadata(&self, id: NodeId) -> Result<Metadata, FsError> {
            Ok(Metadata {
                id,
                kind: if id.0 == 1 {
                    FileType::Dir
                } else {
                    FileType::File
                },
                size: 1000,
                mode: 0,
                uid: 0,
                gid: 0,
                nlink: 1,
                mtime: 0,
                atime: None,
                ctime: None,
                crtime: None,
            })
        }
        fn read_dir(&self, _: NodeId) -> Result<Vec<DirEntry>, FsError> {
            Ok(vec![DirEntry {
                name: b"f".to_vec(),
                id: NodeId(2),
                kind: FileType::File,
            }])
        }
        fn read(&self, _: NodeId, offset: u64, buf: &mut [u8]) -> Result<usize, FsError> {
            let n = buf
                .len()
                .min(7)
                .min(1000usize.saturating_sub(offset as usize));
            for (i, b) in buf.iter_mut().take(n).enumerate() {
                *b = ((offset as usize + i) % 251) as u8;
            }
            Ok(n)
        }
        fn read_link(&self, _: NodeId) -> Result<Vec<u8>, FsError> {
            Err(FsError::Unsupported("no".into()))
        }
    }

    #[test]
    fn reads_whole_ranges_and_stops_at_the_end() {
        let fs: Arc<dyn FileSystem> = Arc::new(Toy);
        assert!(NodeSource::new(Arc::clone(&fs), NodeId(1)).is_err());
        let src = NodeSource::open_path(fs, b"/f").unwrap();
        assert_eq!(src.len(), 1000);
        let mut buf = vec![0u8; 100];
        assert_eq!(src.read_at(990, &mut buf).unwrap(), 10);
        assert_eq!(
            buf[..10],
            (990..1000).map(|i| (i % 251) as u8).collect::<Vec<_>>()[..]
        );
        assert_eq!(src.read_at(5, &mut buf).unwrap(), 100);
        assert_eq!(buf[99], 104);
        assert_eq!(src.read_at(1000, &mut buf).unwrap(), 0);
        let mut big = vec![0u8; 2000];
        src.read_zero_padded(0, &mut big).unwrap();
        assert_eq!(big[999], (999 % 251) as u8);
        assert_eq!(big[1500], 0);
    }
}
