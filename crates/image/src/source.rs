//! Byte sources: positioned, read-only access to a host file or a buffer.
//!
//! Reads take `&self` and use `pread`, so one source serves many threads.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Where a host byte lies: in written data or in a hole (for `map`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostExtent {
    /// Data up to the given end offset.
    Data(u64),
    /// Hole up to the given end offset.
    Hole(u64),
    /// Past the last data: a trailing hole.
    TrailingHole,
    /// The host cannot tell.
    Unknown,
}

/// A read-only, positioned byte source.
pub trait ByteSource: Send + Sync + std::fmt::Debug {
    /// Length in bytes.
    fn len(&self) -> u64;

    /// Whether the source is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads up to `buf.len()` bytes at `offset`; returns the count, which is
    /// short only at the end of the source.
    ///
    /// # Errors
    /// The OS error of the read.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize>;

    /// Host path, when the source is a file.
    fn path(&self) -> Option<&Path> {
        None
    }

    /// Bytes the host has allocated for the file (`st_blocks * 512`).
    fn allocated_bytes(&self) -> Option<u64> {
        None
    }

    /// Data/hole extent at `offset` (`SEEK_DATA`/`SEEK_HOLE`).
    fn extent_at(&self, _offset: u64) -> HostExtent {
        HostExtent::Unknown
    }

    /// Fills `buf` from `offset`; bytes past the end read as zeros, as qemu's
    /// reads past the end of a host file do.
    ///
    /// # Errors
    /// The OS error of the read.
    fn read_zero_padded(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let mut done = 0usize;
        while done < buf.len() {
            let at = offset.saturating_add(u64::try_from(done).unwrap_or(u64::MAX));
            let Some(dst) = buf.get_mut(done..) else {
                break;
            };
            match self.read_at(at, dst) {
                Ok(0) => {
                    dst.fill(0);
                    break;
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// A host file opened read-only.
#[derive(Debug)]
pub struct FileSource {
    file: File,
    path: PathBuf,
    len: u64,
    allocated: u64,
}

impl FileSource {
    /// Opens `path` read-only. The file is never locked or written.
    ///
    /// # Errors
    /// The OS error of `open` or `fstat`.
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = File::open(path)?;
        let meta = file.metadata()?;
        if meta.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                "is a directory",
            ));
        }
        Ok(Self {
            len: meta.len(),
            allocated: meta.blocks().saturating_mul(512),
            file,
            path: path.to_path_buf(),
        })
    }
}

impl ByteSource for FileSource {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        if offset >= self.len {
            return Ok(0);
        }
        self.file.read_at(buf, offset)
    }

    fn path(&self) -> Option<&Path> {
        Some(&self.path)
    }

    fn allocated_bytes(&self) -> Option<u64> {
        Some(self.allocated)
    }

    fn extent_at(&self, offset: u64) -> HostExtent {
        use rustix::fs::{seek, SeekFrom};
        match seek(&self.file, SeekFrom::Data(offset)) {
            Err(rustix::io::Errno::NXIO) => HostExtent::TrailingHole,
            Err(_) => HostExtent::Unknown,
            Ok(data) if data < offset => HostExtent::Unknown,
            Ok(data) if data > offset => HostExtent::Hole(data),
            Ok(_) => match seek(&self.file, SeekFrom::Hole(offset)) {
                Ok(hole) if hole > offset => HostExtent::Data(hole),
                _ => HostExtent::Unknown,
            },
        }
    }
}

/// An in-memory source (tests, fuzzing).
#[derive(Debug, Clone)]
pub struct MemSource(pub Vec<u8>);

impl ByteSource for MemSource {
    fn len(&self) -> u64 {
        u64::try_from(self.0.len()).unwrap_or(u64::MAX)
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let Ok(start) = usize::try_from(offset) else {
            return Ok(0);
        };
        let Some(src) = self.0.get(start..) else {
            return Ok(0);
        };
        let n = src.len().min(buf.len());
        if let (Some(d), Some(s)) = (buf.get_mut(..n), src.get(..n)) {
            d.copy_from_slice(s);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_padding_past_end() {
        let m = MemSource(vec![1, 2, 3]);
        let mut b = [9u8; 5];
        m.read_zero_padded(1, &mut b).unwrap();
        assert_eq!(b, [2, 3, 0, 0, 0]);
        m.read_zero_padded(100, &mut b).unwrap();
        assert_eq!(b, [0; 5]);
    }
}
