//! `qvet-write` is the only qvet crate that creates files.
//!
//! Outputs are written to a file with no name yet in the destination's
//! directory (`O_TMPFILE`, else a hidden temporary file), flushed with
//! `fsync`, and only then given their name, so a reader never sees a
//! half-written result and an interrupted run, even by `kill -9`, leaves
//! nothing behind. An existing destination is replaced only when the caller
//! asks for it, and never when it is one of the files the input was read
//! from.
//!
//! [`convert_to_raw`] writes a disk's guest view as a raw image: sparse
//! where the guest reads zeros, with reading and decompression in parallel.
//!
//! [`compact`] plans a compaction from metadata (container and filesystem
//! free space), [`compact_write`] writes it as a new qcow2 ([`qcow2_out`])
//! through the same atomic path, and [`proof`] re-reads the result and
//! proves it against the input before it is given its name.

pub mod compact;
pub mod compact_write;
pub mod proof;
pub mod qcow2_out;
mod staging;

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use qvet_image::map::MapEntry;
use qvet_image::{Disk, ImageError};
use rayon::prelude::*;
use staging::Staged;
use thiserror::Error;

/// Guest bytes read per parallel work item. Small enough that a batch's
/// items even out across cores when reading means decompressing (2 MiB
/// items left a core idle at each batch's tail: the zlib bench took 1.6-1.8 s
/// against 1.3 s now).
const CHUNK: u64 = 512 << 10;
/// Work items per parallel batch (16 MiB of guest); see [`READ_AHEAD`] for how many
/// are alive at once.
const BATCH: usize = 32;
/// Bytes written between background `fdatasync` calls.
const BACKGROUND_SYNC: u64 = 64 << 20;
/// Granularity of zero detection in data (qemu-img convert's default `-S 4k`).
const ZERO_BLOCK: usize = 4096;

/// Why an output could not be written.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum WriteError {
    /// Reading the guest view failed.
    #[error(transparent)]
    Read(#[from] ImageError),
    /// Writing the output failed.
    #[error("writing '{}': {error}", path.display())]
    Write {
        /// Destination.
        path: PathBuf,
        /// OS error.
        error: io::Error,
    },
    /// The destination exists and replacing it was not allowed.
    #[error("'{}' already exists (pass --overwrite to replace it)", .0.display())]
    Exists(PathBuf),
    /// The destination is one of the input files.
    #[error("refusing to write '{}': it is an input of this conversion", .0.display())]
    IsInput(PathBuf),
}

impl WriteError {
    /// Whether the reader of a stream output went away (not a failure for a
    /// pipeline such as `qvet convert ... - | head`).
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, Self::Write { error, .. } if error.kind() == io::ErrorKind::BrokenPipe)
    }
}

/// Where the raw image goes.
pub enum Output<'a> {
    /// A new file at this path (atomically).
    File {
        /// Destination path.
        path: &'a Path,
        /// Replace an existing file.
        overwrite: bool,
    },
    /// A stream (stdout), written in order, zeros included.
    Stream(&'a mut dyn Write),
}

/// What a conversion wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConvertStats {
    /// Guest size written.
    pub virtual_size: u64,
    /// Guest bytes read from the image (data extents).
    pub bytes_read: u64,
    /// Bytes written as data (the rest is holes, for file outputs).
    pub bytes_written: u64,
}

/// A piece of the guest: zeros known from the map, or data to read.
#[derive(Debug, Clone, Copy)]
enum Piece {
    Zero { len: u64 },
    Data { start: u64, len: u64 },
}

/// Splits map extents into pieces: zero extents whole, data in [`CHUNK`]s.
fn pieces(disk: &Disk) -> impl Iterator<Item = Result<Piece, ImageError>> + '_ {
    disk.map().flat_map(|e| -> Vec<Result<Piece, ImageError>> {
        match e {
            Err(err) => vec![Err(err)],
            Ok(MapEntry {
                zero: true, length, ..
            }) => vec![Ok(Piece::Zero { len: length })],
            Ok(MapEntry { start, length, .. }) => {
                let mut v = Vec::new();
                let mut pos = start;
                let end = start + length;
                while pos < end {
                    let len = CHUNK.min(end - pos);
                    v.push(Ok(Piece::Data { start: pos, len }));
                    pos += len;
                }
                v
            }
        }
    })
}

/// Read buffers, reused: a fresh 2 MiB allocation per piece costs a
/// mapping, its page faults and zeroing, more than the copy it holds.
#[derive(Default)]
pub(crate) struct BufferPool(std::sync::Mutex<Vec<Vec<u8>>>);

impl BufferPool {
    /// A buffer of `len` bytes (contents unspecified: the caller fills it).
    pub(crate) fn take(&self, len: usize) -> Vec<u8> {
        let reused = self.0.lock().ok().and_then(|mut v| v.pop());
        let mut b = reused.unwrap_or_default();
        b.resize(len, 0);
        b
    }

    /// Returns a buffer for reuse.
    pub(crate) fn give(&self, b: Vec<u8>) {
        if let Ok(mut v) = self.0.lock() {
            v.push(b);
        }
    }
}

/// Batches read ahead of the writer: the writer never waits for a read
/// that could have run while it wrote, and memory stays bounded (about
/// `READ_AHEAD + 2` batches alive: queued, being written, being read).
/// A deeper queue was no faster and cost compact 20 MiB of peak memory.
const READ_AHEAD: usize = 1;

/// Reads each batch with `read` and writes its result with `write`, in
/// order. Reading (parallel inside `read`, on the rayon pool) runs on the
/// calling thread and never waits for a write unless [`READ_AHEAD`] batches
/// are already queued; one dedicated thread writes, because buffered writes
/// to one file serialise on its inode lock in the kernel and more writers
/// would only spin. Stops at the first error: a failed write stops the
/// reading, a failed read is returned once the writer has drained what was
/// read before it.
pub(crate) fn overlapped<B, T, E>(
    batches: impl IntoIterator<Item = B>,
    read: impl Fn(B) -> Result<T, E> + Sync,
    mut write: impl FnMut(T) -> Result<(), E> + Send,
) -> Result<(), E>
where
    B: Send,
    T: Send,
    E: Send,
{
    let (queue, queued) = std::sync::mpsc::sync_channel::<T>(READ_AHEAD);
    std::thread::scope(|scope| {
        let writer = scope.spawn(move || -> Result<(), E> {
            for item in queued {
                write(item)?;
            }
            Ok(())
        });
        let mut read_result = Ok(());
        for batch in batches {
            match read(batch) {
                // A closed queue means the writer failed: its error wins.
                Ok(item) => {
                    if queue.send(item).is_err() {
                        break;
                    }
                }
                Err(e) => {
                    read_result = Err(e);
                    break;
                }
            }
        }
        drop(queue);
        match writer.join() {
            Ok(written) => written.and(read_result),
            // The writer only runs `write`, which cannot unwind under the
            // workspace's lints; should it, the panic is not swallowed.
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

fn write_err(path: &Path) -> impl Fn(io::Error) -> WriteError + '_ {
    move |source| WriteError::Write {
        path: path.to_path_buf(),
        error: source,
    }
}

/// Writes the non-zero 4 KiB blocks of `buf` (guest offset `start`) to `file`.
fn write_sparse(file: &File, start: u64, buf: &[u8]) -> io::Result<u64> {
    let mut written = 0u64;
    let mut run_start: Option<usize> = None;
    let blocks = buf.len().div_ceil(ZERO_BLOCK);
    for i in 0..=blocks {
        let block = buf.get(i * ZERO_BLOCK..((i + 1) * ZERO_BLOCK).min(buf.len()));
        let nonzero = block.is_some_and(|b| b.iter().any(|&x| x != 0));
        match (nonzero, run_start) {
            (true, None) => run_start = Some(i * ZERO_BLOCK),
            (false, Some(s)) => {
                let end = (i * ZERO_BLOCK).min(buf.len());
                if let Some(run) = buf.get(s..end) {
                    file.write_all_at(run, start + u64::try_from(s).unwrap_or(0))?;
                    written += u64::try_from(run.len()).unwrap_or(0);
                }
                run_start = None;
            }
            _ => {}
        }
    }
    Ok(written)
}

/// Writes the guest view of `disk` as a raw image.
///
/// `progress` receives the number of guest bytes completed so far.
///
/// # Errors
/// [`WriteError::Read`] when the guest view cannot be read (nothing is left
/// at the destination), [`WriteError::Write`], [`WriteError::Exists`],
/// [`WriteError::IsInput`].
pub fn convert_to_raw(
    disk: &Disk,
    output: Output<'_>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<ConvertStats, WriteError> {
    match output {
        Output::File { path, overwrite } => convert_to_file(disk, path, overwrite, progress),
        Output::Stream(w) => convert_to_stream(disk, w, progress),
    }
}

/// Writes `bytes` to `path` atomically: a new unnamed file in the same
/// directory, `fsync`, then given the name `path` (an existing file is
/// replaced by a rename; a reader sees the old or the new content, never a
/// mix), and an `fsync` of the directory.
///
/// # Errors
/// [`WriteError::Write`] when any step fails (nothing is left behind).
pub fn write_file_atomic(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    let staged = Staged::beside(path, &[])?;
    let mut file = staged.file();
    file.write_all(bytes).map_err(write_err(path))?;
    file.sync_all().map_err(write_err(path))?;
    staged.persist(path, true)
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

fn convert_to_file(
    disk: &Disk,
    path: &Path,
    overwrite: bool,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<ConvertStats, WriteError> {
    if disk.opened_files().iter().any(|p| same_file(p, path)) {
        return Err(WriteError::IsInput(path.to_path_buf()));
    }
    if !overwrite && std::fs::symlink_metadata(path).is_ok() {
        return Err(WriteError::Exists(path.to_path_buf()));
    }
    let staged = Staged::beside(path, &disk.opened_files())?;
    let size = disk.size();
    staged.file().set_len(size).map_err(write_err(path))?;
    let done = AtomicU64::new(0);
    let read = AtomicU64::new(0);
    let written = AtomicU64::new(0);
    let file = staged.file();
    // Batches are read (decompressed, decrypted) in parallel and written
    // by one thread while the next is read ([`overlapped`]).
    let pool = BufferPool::default();
    let read_batch = |batch: Result<Vec<(u64, u64)>, ImageError>| {
        batch?
            .par_iter()
            .map(|&(start, len)| -> Result<(u64, Vec<u8>), WriteError> {
                let mut buf = pool.take(usize::try_from(len).unwrap_or(0));
                disk.read_at(start, &mut buf)?;
                read.fetch_add(len, Ordering::Relaxed);
                Ok((start, buf))
            })
            .collect::<Result<Vec<_>, _>>()
    };
    let write_batch = |bufs: Vec<(u64, Vec<u8>)>| -> Result<(), WriteError> {
        for (start, buf) in bufs {
            let n = write_sparse(file, start, &buf).map_err(write_err(path))?;
            written.fetch_add(n, Ordering::Relaxed);
            let len = buf.len() as u64;
            progress(done.fetch_add(len, Ordering::Relaxed) + len);
            pool.give(buf);
        }
        Ok(())
    };
    // Data is flushed to disk in the background while conversion goes on,
    // so the final fsync (required before the rename) has little left to do.
    let finished = AtomicBool::new(false);
    let produce = || -> Result<(), WriteError> {
        // Batches of data pieces; zero pieces only advance the progress.
        let mut map = pieces(disk);
        let batches = std::iter::from_fn(|| {
            let mut batch = Vec::with_capacity(BATCH);
            for piece in map.by_ref() {
                match piece {
                    Err(e) => return Some(Err(e)),
                    Ok(Piece::Zero { len }) => {
                        progress(done.fetch_add(len, Ordering::Relaxed) + len);
                    }
                    Ok(Piece::Data { start, len }) => {
                        batch.push((start, len));
                        if batch.len() == BATCH {
                            return Some(Ok(batch));
                        }
                    }
                }
            }
            (!batch.is_empty()).then_some(Ok(batch))
        });
        overlapped(batches, read_batch, write_batch)
    };
    let result = std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut synced = 0u64;
            while !finished.load(Ordering::Acquire) {
                std::thread::sleep(std::time::Duration::from_millis(20));
                let now = written.load(Ordering::Relaxed);
                if now - synced >= BACKGROUND_SYNC {
                    // Errors surface in the final sync below.
                    let _ = file.sync_data();
                    synced = now;
                }
            }
        });
        let r = produce();
        finished.store(true, Ordering::Release);
        r
    });
    result?;
    file.sync_all().map_err(write_err(path))?;
    staged.persist(path, overwrite)?;
    Ok(ConvertStats {
        virtual_size: size,
        bytes_read: read.into_inner(),
        bytes_written: written.into_inner(),
    })
}

fn convert_to_stream(
    disk: &Disk,
    w: &mut dyn Write,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<ConvertStats, WriteError> {
    let path = Path::new("-");
    let zeros = vec![0u8; usize::try_from(CHUNK).unwrap_or(0)];
    let mut stats = ConvertStats {
        virtual_size: disk.size(),
        ..ConvertStats::default()
    };
    let mut done = 0u64;
    let mut batch: Vec<Piece> = Vec::with_capacity(BATCH * 2);
    let mut bufs: Vec<Vec<u8>> = Vec::new();
    let mut flush = |batch: &mut Vec<Piece>,
                     w: &mut dyn Write,
                     stats: &mut ConvertStats|
     -> Result<(), WriteError> {
        let data: Vec<(u64, u64)> = batch
            .iter()
            .filter_map(|p| match *p {
                Piece::Data { start, len } => Some((start, len)),
                Piece::Zero { .. } => None,
            })
            .collect();
        bufs.resize_with(data.len(), Vec::new);
        bufs.par_iter_mut().zip(data.par_iter()).try_for_each(
            |(buf, &(start, len))| -> Result<(), WriteError> {
                buf.resize(usize::try_from(len).unwrap_or(0), 0);
                disk.read_at(start, buf)?;
                Ok(())
            },
        )?;
        let mut next_buf = bufs.iter();
        for p in batch.iter() {
            match *p {
                Piece::Zero { len } => {
                    let mut left = len;
                    while left > 0 {
                        let n = left.min(CHUNK);
                        let z = zeros.get(..usize::try_from(n).unwrap_or(0)).unwrap_or(&[]);
                        w.write_all(z).map_err(write_err(path))?;
                        left -= n;
                        done += n;
                        progress(done);
                    }
                }
                Piece::Data { len, .. } => {
                    let buf = next_buf.next().map(Vec::as_slice).unwrap_or(&[]);
                    w.write_all(buf).map_err(write_err(path))?;
                    stats.bytes_read += len;
                    stats.bytes_written += len;
                    done += len;
                    progress(done);
                }
            }
        }
        batch.clear();
        Ok(())
    };
    for piece in pieces(disk) {
        let piece = piece?;
        batch.push(piece);
        let data_items = batch
            .iter()
            .filter(|p| matches!(p, Piece::Data { .. }))
            .count();
        if data_items >= BATCH || batch.len() >= BATCH * 4 {
            flush(&mut batch, w, &mut stats)?;
        }
    }
    flush(&mut batch, w, &mut stats)?;
    w.flush().map_err(write_err(path))?;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn overlapped_writes_in_order_and_stops_at_the_first_error() {
        use std::sync::Mutex;
        // Every batch written, in order, although reads run ahead.
        let mut seen = Vec::new();
        overlapped(
            0..50u32,
            |b| Ok::<_, String>(b * 2),
            |t| {
                seen.push(t);
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(seen, (0..50).map(|b| b * 2).collect::<Vec<_>>());
        // Nothing to read: nothing written, no error.
        let mut calls = 0;
        overlapped(0..0u32, Ok::<_, String>, |_| {
            calls += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(calls, 0);

        // A failed write stops the reading: at most READ_AHEAD + 2 batches
        // are read after it (queued, handed over, being read).
        let reads = Mutex::new(0u32);
        let r = overlapped(
            0..1000u32,
            |b| {
                *reads.lock().unwrap() += 1;
                Ok::<_, String>(b)
            },
            |t| {
                if t == 3 {
                    Err(format!("write {t}"))
                } else {
                    Ok(())
                }
            },
        );
        assert_eq!(r, Err("write 3".to_string()));
        let n = *reads.lock().unwrap();
        assert!(
            n <= 4 + READ_AHEAD as u32 + 2,
            "{n} reads after a failed write"
        );

        // A failed read is reported after the batches before it are written.
        let mut written = Vec::new();
        let r = overlapped(
            0..10u32,
            |b| {
                if b == 5 {
                    Err(format!("read {b}"))
                } else {
                    Ok(b)
                }
            },
            |t| {
                written.push(t);
                Ok(())
            },
        );
        assert_eq!(r, Err("read 5".to_string()));
        assert_eq!(written, vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn write_file_atomic_creates_and_replaces_without_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.bin");
        write_file_atomic(&p, b"first").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"first");
        write_file_atomic(&p, b"second, longer").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second, longer");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("m.bin")]);
        let missing = dir.path().join("no/such/dir/m.bin");
        assert!(matches!(
            write_file_atomic(&missing, b"x"),
            Err(WriteError::Write { .. })
        ));
    }
}
