//! Where an output's bytes go until they are complete and synced.
//!
//! Preferably an unnamed file in the destination's directory (`O_TMPFILE`):
//! it has no name until [`Staged::persist`] links it into place, so a
//! crash, a `kill -9` or a power cut mid-write leaves nothing behind, not
//! even a temporary file. Where the filesystem cannot make unnamed files
//! (or `/proc/self/fd`, needed to give one a name, is missing), a named
//! temporary file `.NAME.XXXX.qvet-tmp` beside the destination is used, as
//! before; it is removed on every error path, only a `kill -9` can leave it.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags, CWD};

use crate::{write_err, WriteError};

/// An output being written: the file, and how it gets its name.
#[derive(Debug)]
pub(crate) struct Staged {
    file: File,
    named: Option<tempfile::TempPath>,
    dir: PathBuf,
}

/// Attempts at a free hidden name when an unnamed file replaces a file.
const NAME_ATTEMPTS: u32 = 64;

impl Staged {
    /// A new file for `path`, in its directory (so that naming it is a link
    /// or rename within one filesystem), with the permissions the finished
    /// file should have ([`output_mode`]) before any byte is written.
    pub(crate) fn beside(path: &Path, inputs: &[PathBuf]) -> Result<Self, WriteError> {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        // 0666 as open(2) applies the umask: what any tool's new file gets.
        let unnamed = Path::new("/proc/self/fd").is_dir().then(|| {
            rustix::fs::openat(
                CWD,
                &dir,
                OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o666),
            )
        });
        let staged = match unnamed {
            Some(Ok(fd)) => Staged {
                file: File::from(fd),
                named: None,
                dir,
            },
            // A missing or read-only directory fails either way: say so
            // about OUT, not about a temporary name.
            Some(Err(e)) if !unsupported(e) => {
                return Err(WriteError::Write {
                    path: path.to_path_buf(),
                    error: e.into(),
                })
            }
            // No O_TMPFILE here (EOPNOTSUPP, EISDIR on old kernels, ...):
            // a named temporary file.
            _ => {
                let tmp = tempfile::Builder::new()
                    .prefix(&format!(".{}.", file_name(path)))
                    .suffix(".qvet-tmp")
                    .permissions(std::fs::Permissions::from_mode(0o666))
                    .tempfile_in(&dir)
                    .map_err(write_err(path))?;
                let (file, named) = tmp.into_parts();
                Staged {
                    file,
                    named: Some(named),
                    dir,
                }
            }
        };
        let created = staged
            .file
            .metadata()
            .map_err(write_err(path))?
            .permissions()
            .mode();
        let existing = std::fs::metadata(path).ok().map(|m| m.permissions().mode());
        let input = inputs
            .first()
            .and_then(|p| std::fs::metadata(p).ok())
            .map(|m| m.permissions().mode());
        let mode = output_mode(created, existing, input);
        if mode != created & 0o7777 {
            staged
                .file
                .set_permissions(std::fs::Permissions::from_mode(mode))
                .map_err(write_err(path))?;
        }
        Ok(staged)
    }

    /// The file, open for reading and writing.
    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    /// Whether the file has a name before [`Staged::persist`] (the
    /// fallback): tests use it to know what a kill may leave.
    #[cfg(test)]
    pub(crate) fn is_named(&self) -> bool {
        self.named.is_some()
    }

    /// A path that opens this very file (to re-read it, e.g. for a proof).
    pub(crate) fn path(&self) -> PathBuf {
        match &self.named {
            Some(p) => p.to_path_buf(),
            None => PathBuf::from(format!("/proc/self/fd/{}", self.file.as_raw_fd())),
        }
    }

    /// Gives the (synced) file its name `path`: without `overwrite` only if
    /// nothing is there ([`WriteError::Exists`] otherwise, checked
    /// atomically by the link or rename), with it replacing what is there
    /// in one rename. Then syncs the directory.
    pub(crate) fn persist(self, path: &Path, overwrite: bool) -> Result<(), WriteError> {
        let Staged { file, named, dir } = self;
        match named {
            Some(tmp) => {
                let persisted = if overwrite {
                    tmp.persist(path)
                } else {
                    tmp.persist_noclobber(path)
                };
                persisted.map_err(|e| {
                    if e.error.kind() == std::io::ErrorKind::AlreadyExists {
                        WriteError::Exists(path.to_path_buf())
                    } else {
                        WriteError::Write {
                            path: path.to_path_buf(),
                            error: e.error,
                        }
                    }
                })?;
            }
            None => {
                let me = format!("/proc/self/fd/{}", file.as_raw_fd());
                if overwrite {
                    // A hidden name first, then one rename over `path`: a
                    // reader sees the old file or the new one, never none.
                    let hidden = link_hidden(&me, &dir, path)?;
                    if let Err(error) = std::fs::rename(&hidden, path) {
                        let _ = std::fs::remove_file(&hidden);
                        return Err(WriteError::Write {
                            path: path.to_path_buf(),
                            error,
                        });
                    }
                } else {
                    rustix::fs::linkat(CWD, me.as_str(), CWD, path, AtFlags::SYMLINK_FOLLOW)
                        .map_err(|e| {
                            if e == rustix::io::Errno::EXIST {
                                WriteError::Exists(path.to_path_buf())
                            } else {
                                WriteError::Write {
                                    path: path.to_path_buf(),
                                    error: e.into(),
                                }
                            }
                        })?;
                }
                drop(file);
            }
        }
        sync_dir(&dir);
        Ok(())
    }
}

/// Links the unnamed file `me` (a `/proc/self/fd` path) into `dir` under a
/// free hidden name `.NAME.PID.N.qvet-tmp`; returns that name.
fn link_hidden(me: &str, dir: &Path, path: &Path) -> Result<PathBuf, WriteError> {
    let base = file_name(path);
    let pid = std::process::id();
    let mut last = None;
    for n in 0..NAME_ATTEMPTS {
        let hidden = dir.join(format!(".{base}.{pid}.{n}.qvet-tmp"));
        match rustix::fs::linkat(CWD, me, CWD, &hidden, AtFlags::SYMLINK_FOLLOW) {
            Ok(()) => return Ok(hidden),
            Err(e) if e == rustix::io::Errno::EXIST => last = Some(e),
            Err(e) => {
                return Err(WriteError::Write {
                    path: path.to_path_buf(),
                    error: e.into(),
                })
            }
        }
    }
    Err(WriteError::Write {
        path: path.to_path_buf(),
        error: last.map_or_else(|| std::io::Error::other("no free name"), Into::into),
    })
}

/// The permission bits of a written file:
/// - replacing a file, that file's bits (as `qemu-img convert`, which
///   truncates the file in place, leaves them);
/// - else what a new file gets (0666 less the umask: `created`), but no
///   wider for group and others than the input image: an image only its
///   owner may read does not become world-readable by being converted.
fn output_mode(created: u32, existing: Option<u32>, input: Option<u32>) -> u32 {
    if let Some(old) = existing {
        return old & 0o7777;
    }
    let created = created & 0o777;
    match input {
        Some(input) => created & (0o700 | (input & 0o077)),
        None => created,
    }
}

/// Errors of `open(O_TMPFILE)` that mean the filesystem or kernel cannot
/// make unnamed files (a named temporary file may still work), as opposed
/// to the directory being missing or not writable.
fn unsupported(e: rustix::io::Errno) -> bool {
    use rustix::io::Errno;
    [Errno::OPNOTSUPP, Errno::ISDIR, Errno::INVAL, Errno::NOSYS].contains(&e)
}

/// Makes the new name durable (best effort: some filesystems cannot sync a
/// directory, and the data itself is already synced).
fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::io::Write;

    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn output_mode_keeps_a_replaced_file_and_never_widens_the_input() {
        // Replacing: the old file's bits, whatever the input.
        assert_eq!(output_mode(0o644, Some(0o100_640), Some(0o600)), 0o640);
        // New, umask 022: 0644 from a world-readable input ...
        assert_eq!(output_mode(0o100_644, None, Some(0o100_644)), 0o644);
        // ... but an owner-only input stays owner-only, and a group-only
        // one group-only.
        assert_eq!(output_mode(0o644, None, Some(0o600)), 0o600);
        assert_eq!(output_mode(0o664, None, Some(0o640)), 0o640);
        // The input's execute or write bits are not added.
        assert_eq!(output_mode(0o644, None, Some(0o777)), 0o644);
        // No input (small files): what the umask gave.
        assert_eq!(output_mode(0o600, None, None), 0o600);
    }

    #[test]
    fn an_unnamed_file_has_no_name_until_persisted() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("out.img");
        let s = Staged::beside(&out, &[]).unwrap();
        // This machine's filesystems make unnamed files; the fallback is
        // exercised below.
        assert!(!s.is_named(), "O_TMPFILE unavailable in {:?}", d.path());
        s.file().write_all(b"bytes").unwrap();
        assert!(names(d.path()).is_empty(), "{:?}", names(d.path()));
        // Readable through its path while unnamed.
        assert_eq!(std::fs::read(s.path()).unwrap(), b"bytes");
        s.persist(&out, false).unwrap();
        assert_eq!(names(d.path()), vec!["out.img".to_string()]);
        assert_eq!(std::fs::read(&out).unwrap(), b"bytes");
    }

    #[test]
    fn an_unpersisted_file_leaves_nothing() {
        let d = tempfile::tempdir().unwrap();
        let s = Staged::beside(&d.path().join("out.img"), &[]).unwrap();
        s.file().write_all(b"partial").unwrap();
        drop(s);
        assert!(names(d.path()).is_empty());
    }

    #[test]
    fn persisting_refuses_or_replaces_an_existing_file() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("out.img");
        std::fs::write(&out, b"old").unwrap();
        let s = Staged::beside(&out, &[]).unwrap();
        s.file().write_all(b"new").unwrap();
        assert!(matches!(s.persist(&out, false), Err(WriteError::Exists(_))));
        assert_eq!(std::fs::read(&out).unwrap(), b"old");
        assert_eq!(names(d.path()), vec!["out.img".to_string()]);
        let s = Staged::beside(&out, &[]).unwrap();
        s.file().write_all(b"new").unwrap();
        s.persist(&out, true).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"new");
        assert_eq!(names(d.path()), vec!["out.img".to_string()]);
    }

    #[test]
    fn a_missing_directory_is_reported_about_the_output() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("no/such/dir/out.img");
        match Staged::beside(&out, &[]) {
            Err(WriteError::Write { path, error }) => {
                assert_eq!(path, out);
                assert_eq!(error.kind(), std::io::ErrorKind::NotFound);
                // Not about a temporary name.
                assert!(!error.to_string().contains("qvet-tmp"), "{error}");
            }
            other => panic!("expected a write error, got {other:?}"),
        }
    }

    #[test]
    fn the_named_fallback_behaves_the_same() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("out.img");
        let tmp = tempfile::Builder::new()
            .prefix(".out.img.")
            .suffix(".qvet-tmp")
            .tempfile_in(d.path())
            .unwrap();
        let (file, named) = tmp.into_parts();
        let s = Staged {
            file,
            named: Some(named),
            dir: d.path().to_path_buf(),
        };
        assert!(s.is_named());
        s.file().write_all(b"fallback").unwrap();
        assert_eq!(std::fs::read(s.path()).unwrap(), b"fallback");
        s.persist(&out, false).unwrap();
        assert_eq!(names(d.path()), vec!["out.img".to_string()]);
        assert_eq!(std::fs::read(&out).unwrap(), b"fallback");
    }
}
