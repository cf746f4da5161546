//! Helpers shared by the filesystem reader tests (FAT, ISO 9660).

// Each test crate uses a different subset.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use qvet_guestfs::{FileSystem, FileType, FsError, NodeId};

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A fresh temporary directory `qvet-<kind>-<pid>-<tag>-<n>`.
pub fn scratch(kind: &str, tag: &str) -> PathBuf {
    let n = SEQ.fetch_add(1, Ordering::SeqCst);
    let d = std::env::temp_dir().join(format!("qvet-{kind}-{}-{tag}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Deterministic pseudo-random bytes: distinct per seed.
pub fn content(seed: usize, len: usize) -> Vec<u8> {
    let mut x = (seed as u64)
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    (0..len)
        .map(|_| {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (x >> 33) as u8
        })
        .collect()
}

/// Reads a whole file through `FileSystem::read` in `chunk`-byte reads (odd
/// sizes exercise reads that straddle clusters and extents).
pub fn read_all_in(fs: &dyn FileSystem, id: NodeId, chunk: usize) -> Result<Vec<u8>, FsError> {
    let size = fs.metadata(id)?.size;
    let mut out = Vec::new();
    let mut buf = vec![0u8; chunk];
    loop {
        let n = fs.read(id, out.len() as u64, &mut buf)?;
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        assert!(out.len() as u64 <= size, "read past the file size");
    }
    Ok(out)
}

/// Runs `f` on a thread and fails the test if it panics or takes over 20 s.
pub fn bounded<F: FnOnce() + Send + 'static>(f: F) {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        f();
        let _ = tx.send(());
    });
    rx.recv_timeout(Duration::from_secs(20))
        .expect("timed out or panicked");
}

/// Walks everything, tolerating errors: metadata of every entry, symlink
/// targets, file contents; bounded in entries and depth.
pub fn walk_lenient(fs: &dyn FileSystem) {
    let mut stack = vec![(0usize, fs.root())];
    let mut seen = 0usize;
    while let Some((depth, id)) = stack.pop() {
        let _ = fs.metadata(id);
        let Ok(entries) = fs.read_dir(id) else {
            continue;
        };
        for e in entries {
            seen += 1;
            if seen > 20_000 {
                return;
            }
            let _ = fs.metadata(e.id);
            match e.kind {
                FileType::Dir if depth < 16 => stack.push((depth + 1, e.id)),
                FileType::Symlink => {
                    let _ = fs.read_link(e.id);
                }
                _ => {
                    let _ = read_all_in(fs, e.id, 4096);
                }
            }
        }
    }
}
