//! Finding images under directories and verifying them in parallel, with
//! the scan cache.
//!
//! The walk is bounded in depth, follows symbolic links but enters each
//! directory (device, inode) once, so link loops end; it lists each file
//! (device, inode) once. Like GNS3's image listing it skips names starting
//! with `.` and `.md5sum` sidecars. A file is an image when it starts with
//! the qcow2 magic, has an image extension (`.qcow2`, `.img`, `.vmdk`,
//! `.iso`, `.raw`, …) or carries a file name some catalog entry knows.
//! EVE-NG (`/opt/unetlab/addons/qemu/<template>-<name>/hda.qcow2`), GNS3
//! (`~/GNS3/images/QEMU/`) and libvirt pools (`/var/lib/libvirt/images/`)
//! are all found this way.
//!
//! Cached facts are keyed by host, canonical path, size, mtime (ns) and
//! inode: a file that changed in any of these is read again; the verdict is
//! always recomputed against the current catalog. Results are upserted by
//! (host, path), so many hosts can scan into one shared catalog at once.

use std::collections::HashSet;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;

use crate::store::{CacheRow, FileKey};
use crate::verify::{assess_with, Assessment, Hashing};
use crate::{Catalog, CatalogError, Store};

/// Default directory depth below each root.
pub const DEFAULT_MAX_DEPTH: usize = 8;

/// Extensions taken as disk images (lower case).
pub const IMAGE_EXTENSIONS: &[&str] = &[
    "qcow2", "qcow", "img", "vmdk", "iso", "raw", "image", "disk",
];

const QCOW_MAGIC: [u8; 4] = *b"QFI\xfb";

/// Why a file was taken as an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// Named on the command line.
    Argument,
    /// qcow2 magic.
    Magic,
    /// Image extension.
    Extension,
    /// A catalog entry has this file name.
    KnownName,
}

/// An image found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Path as reached (root joined with the names walked).
    pub path: PathBuf,
    /// Canonical path (the cache key).
    pub canonical: PathBuf,
    /// Size, mtime and inode when found.
    pub key: FileKey,
    /// Why it was taken.
    pub why: Why,
}

/// What a walk found.
#[derive(Debug, Clone, Default)]
pub struct Discovery {
    /// Images, in walk order (sorted names).
    pub images: Vec<Found>,
    /// Paths skipped with a reason worth telling (unreadable, broken links,
    /// depth limit, loops).
    pub skipped: Vec<String>,
}

fn has_magic(path: &Path) -> bool {
    let mut buf = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut buf))
        .is_ok()
        && buf == QCOW_MAGIC
}

fn classify(path: &Path, name: &str, catalog: &Catalog) -> Option<Why> {
    let ext = Path::new(name)
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    if ext.is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.as_str())) {
        Some(Why::Extension)
    } else if catalog.knows_filename(name) {
        Some(Why::KnownName)
    } else if has_magic(path) {
        Some(Why::Magic)
    } else {
        None
    }
}

/// Walks `roots` (directories, or files taken as they are) down to
/// `max_depth` directory levels.
pub fn discover(roots: &[PathBuf], max_depth: usize, catalog: &Catalog) -> Discovery {
    let mut out = Discovery::default();
    let mut dirs_seen: HashSet<(u64, u64)> = HashSet::new();
    let mut files_seen: HashSet<(u64, u64)> = HashSet::new();
    let mut add = |out: &mut Discovery, path: PathBuf, meta: &std::fs::Metadata, why: Why| {
        if !files_seen.insert((meta.dev(), meta.ino())) {
            out.skipped.push(format!(
                "{}: same file as one already listed",
                path.display()
            ));
            return;
        }
        let canonical = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
        out.images.push(Found {
            path,
            canonical,
            key: FileKey::of(meta),
            why,
        });
    };
    for root in roots {
        let meta = match std::fs::metadata(root) {
            Ok(m) => m,
            Err(e) => {
                out.skipped.push(format!("{}: {e}", root.display()));
                continue;
            }
        };
        if meta.is_file() {
            add(&mut out, root.clone(), &meta, Why::Argument);
            continue;
        }
        if !meta.is_dir() {
            out.skipped
                .push(format!("{}: not a file or directory", root.display()));
            continue;
        }
        if !dirs_seen.insert((meta.dev(), meta.ino())) {
            continue;
        }
        let mut stack: Vec<(PathBuf, usize)> = vec![(root.clone(), 0)];
        while let Some((dir, depth)) = stack.pop() {
            let rd = match std::fs::read_dir(&dir) {
                Ok(rd) => rd,
                Err(e) => {
                    out.skipped.push(format!("{}: {e}", dir.display()));
                    continue;
                }
            };
            let mut names: Vec<_> = rd.filter_map(Result::ok).map(|e| e.file_name()).collect();
            names.sort();
            let mut subdirs = Vec::new();
            for name in names {
                let n = name.to_string_lossy();
                if n.starts_with('.') || n.ends_with(".md5sum") {
                    continue;
                }
                let path = dir.join(&name);
                let meta = match std::fs::metadata(&path) {
                    Ok(m) => m,
                    Err(e) => {
                        out.skipped.push(format!("{}: {e}", path.display()));
                        continue;
                    }
                };
                if meta.is_dir() {
                    if depth + 1 > max_depth {
                        out.skipped.push(format!(
                            "{}: not entered (deeper than {max_depth} levels)",
                            path.display()
                        ));
                    } else if dirs_seen.insert((meta.dev(), meta.ino())) {
                        subdirs.push(path);
                    } else {
                        out.skipped.push(format!(
                            "{}: directory already visited (link loop or second link)",
                            path.display()
                        ));
                    }
                } else if meta.is_file() {
                    if let Some(why) = classify(&path, &n, catalog) {
                        add(&mut out, path, &meta, why);
                    }
                }
            }
            // Depth first, in name order.
            for d in subdirs.into_iter().rev() {
                stack.push((d, depth + 1));
            }
        }
    }
    out
}

/// One scanned image.
#[derive(Debug)]
pub struct ScanItem {
    /// Where it was found.
    pub found: Found,
    /// Its assessment, or why there is none.
    pub outcome: Result<Assessment, CatalogError>,
    /// Nothing was read: the result came from the cache.
    pub cached: bool,
}

/// Verifies `images` in parallel, reusing and refreshing `host`'s scan
/// results in `store`. `progress` receives the bytes handled so far (cached files
/// count in full when done).
///
/// # Errors
/// Database errors; per-image errors are in [`ScanItem::outcome`].
pub fn scan(
    catalog: &Catalog,
    store: &mut Store,
    host: &str,
    images: Vec<Found>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Vec<ScanItem>, CatalogError> {
    let keys: Vec<(String, FileKey)> = images
        .iter()
        .map(|f| (f.canonical.to_string_lossy().into_owned(), f.key))
        .collect();
    let cached = store.cache_get_many(host, &keys)?;
    let done = AtomicU64::new(0);
    let outcomes: Vec<Result<Assessment, CatalogError>> = images
        .par_iter()
        .zip(cached.par_iter())
        .map(|(f, c)| {
            let last = AtomicU64::new(0);
            let report = |x: u64| {
                let prev = last.swap(x, Ordering::Relaxed);
                let now = done.fetch_add(x.saturating_sub(prev), Ordering::Relaxed);
                progress(now.saturating_add(x.saturating_sub(prev)));
            };
            // Always hashed: the cached digests let a later catalog change
            // be judged without reading the file again.
            let r = assess_with(catalog, &f.path, c.as_ref(), Hashing::Always, &report);
            let rest = f.key.size.saturating_sub(last.load(Ordering::Relaxed));
            let now = done.fetch_add(rest, Ordering::Relaxed);
            progress(now.saturating_add(rest));
            r
        })
        .collect();
    let mut rows = Vec::new();
    for (f, o) in images.iter().zip(&outcomes) {
        let Ok(a) = o else { continue };
        // Cache only what describes the file as it still is.
        let unchanged = std::fs::metadata(&f.path).is_ok_and(|m| FileKey::of(&m) == f.key);
        if unchanged {
            let r = &a.report;
            let label = r.matches.first().map(|m| m.entry.describe()).or_else(|| {
                r.claims
                    .iter()
                    .find(|c| c.by.is_strong())
                    .map(|c| format!("claims {}", c.entry.describe()))
            });
            rows.push(CacheRow {
                path: f.canonical.to_string_lossy().into_owned(),
                key: f.key,
                facts: a.facts.clone(),
                verdict: r.to_json().to_string(),
                verdict_name: r.verdict.name().to_string(),
                backing: r.overlay.as_ref().map(|o| o.backing_path.clone()),
                label,
            });
        }
    }
    store.cache_put(host, &rows)?;
    Ok(images
        .into_iter()
        .zip(outcomes)
        .map(|(found, outcome)| {
            let cached = outcome.as_ref().is_ok_and(|a| !a.hashed);
            ScanItem {
                found,
                outcome,
                cached,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walk_rules() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        let eve = root.join("addons/qemu/csr1000vng-universalk9.17.03.05");
        std::fs::create_dir_all(&eve).unwrap();
        std::fs::write(eve.join("virtioa.qcow2"), b"QFI\xfb....").unwrap();
        std::fs::write(eve.join("virtioa.qcow2.md5sum"), b"x").unwrap();
        std::fs::write(root.join(".hidden.qcow2"), b"x").unwrap();
        std::fs::write(root.join("notes.txt"), b"x").unwrap();
        std::fs::write(root.join("base"), b"QFI\xfb").unwrap();
        std::fs::write(root.join("vyos-1.5.1-kvm-amd64.qcow2.part"), b"x").unwrap();
        std::fs::write(root.join("chr-7.22.1.img"), b"x").unwrap();
        std::os::unix::fs::symlink(root, root.join("loop")).unwrap();
        std::os::unix::fs::symlink(root.join("chr-7.22.1.img"), root.join("alias.img")).unwrap();
        std::os::unix::fs::symlink(root.join("missing"), root.join("broken.img")).unwrap();
        let c = Catalog::load(None).unwrap();
        let found = discover(&[root.to_path_buf()], DEFAULT_MAX_DEPTH, &c);
        let names: Vec<String> = found
            .images
            .iter()
            .map(|f| f.path.strip_prefix(root).unwrap().display().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "alias.img",
                "base",
                "addons/qemu/csr1000vng-universalk9.17.03.05/virtioa.qcow2",
            ],
            "{found:#?}"
        );
        assert_eq!(found.images[1].why, Why::Magic);
        // chr-7.22.1.img is the same file as alias.img, listed once.
        assert!(found.skipped.iter().any(|s| s.contains("chr-7.22.1.img")));
        assert!(found.skipped.iter().any(|s| s.contains("loop")));
        assert!(found.skipped.iter().any(|s| s.contains("broken.img")));

        let shallow = discover(&[root.to_path_buf()], 1, &c);
        assert_eq!(shallow.images.len(), 2);
        assert!(shallow.skipped.iter().any(|s| s.contains("deeper than 1")));

        // Files named on the command line are taken as they are.
        let f = discover(&[root.join("notes.txt")], 0, &c);
        assert_eq!(f.images[0].why, Why::Argument);
    }

    #[test]
    fn known_names_count() {
        let d = tempfile::tempdir().unwrap();
        // Firmware and IOL files the registry names, without image extensions.
        std::fs::write(d.path().join("OVMF-edk2-stable202305.fd"), b"x").unwrap();
        std::fs::write(d.path().join("something-else.fd"), b"x").unwrap();
        let c = Catalog::load(None).unwrap();
        let found = discover(&[d.path().to_path_buf()], 2, &c);
        assert_eq!(found.images.len(), 1);
        assert_eq!(found.images[0].why, Why::KnownName);
    }
}
