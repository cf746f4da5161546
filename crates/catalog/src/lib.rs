//! `qvet-catalog`: what an image *should* hash to, and what it is.
//!
//! * [`builtin`]: the GNS3 registry's public MD5s and sizes (current and
//!   superseded), embedded in the binary and parsed at first use.
//! * [`store`]: the user catalog (SQLite by default, or a PostgreSQL
//!   database shared by many hosts, see [`Location`]): references the user
//!   imported or recorded with their baselines, scan results by host and
//!   path, audit verdicts; [`export`] moves it as JSON lines.
//! * [`import`]: readers for `.gns3a` appliance files (or a whole
//!   gns3-registry checkout), `md5sum`/`sha*sum` files (GNU and BSD style),
//!   Cisco download-page text and OpenStack Glance image JSON.
//! * [`Catalog`]: every trusted reference in memory, indexed by digest,
//!   file name, size and guest-content root.
//! * [`verify`]: one image → digests (one read) → a verdict with evidence:
//!   genuine, content-identical, mismatch or unknown; the GNS3 `.md5sum`
//!   sidecar check.
//! * [`scan`]: finding images under directories and verifying them in
//!   parallel, with results cached by path, size, mtime and inode.
//!
//! Nothing here prints. Image files are only ever opened read-only; the only
//! things this crate writes are the catalog database and export files.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

pub use qvet_digest::Algo;

pub mod builtin;
mod catalog;
pub mod export;
pub mod import;
pub mod location;
mod pg;
pub mod scan;
mod sqlite;
pub mod store;
pub mod verify;

pub use catalog::Catalog;
pub use location::Location;
pub use store::Store;

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogError {
    /// The catalog database failed.
    #[error("catalog database '{}': {error}", path.display())]
    Db {
        /// Database path.
        path: PathBuf,
        /// SQLite error.
        error: rusqlite::Error,
    },
    /// The PostgreSQL catalog failed (the location shown without password).
    #[error("catalog database {location}: {error}")]
    Pg {
        /// Redacted connection string.
        location: String,
        /// The client's or the server's message.
        error: String,
    },
    /// The role connected may only read the catalog.
    #[error("catalog database {location} is read-only for this connection: {why}")]
    ReadOnly {
        /// Redacted connection string.
        location: String,
        /// What was refused.
        why: String,
    },
    /// The catalog's connection is in use by another operation.
    #[error("catalog database {0}: connection busy")]
    Busy(String),
    /// The database is not a qvet catalog or has an unknown schema.
    #[error("catalog database '{}': {why}", path.display())]
    Schema {
        /// Database path.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// A file could not be read.
    #[error("'{}': {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// OS error.
        error: io::Error,
    },
    /// An import file could not be understood.
    #[error("'{}': {why}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong (with a line number where there is one).
        why: String,
    },
    /// No entry with this ID.
    #[error("no catalog entry '{0}'")]
    NoSuchEntry(String),
    /// Built-in entries are part of the program.
    #[error(
        "'{0}' is a built-in entry (GNS3 registry data shipped with qvet); it cannot be removed"
    )]
    BuiltinReadOnly(String),
    /// Neither `XDG_DATA_HOME` nor `HOME` is set.
    #[error("no default catalog location: set XDG_DATA_HOME or HOME, or pass --catalog PATH")]
    NoDefaultPath,
    /// Digesting failed.
    #[error(transparent)]
    Digest(#[from] qvet_digest::DigestError),
    /// The image could not be opened.
    #[error(transparent)]
    Image(#[from] qvet_image::ImageError),
}

/// Identifies a catalog entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EntryId {
    /// Built-in GNS3 registry row (`gns3:N`).
    Builtin(u32),
    /// User catalog row (`N`).
    User(i64),
    /// A reference given on the command line (`arg:N`).
    Adhoc(u32),
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Builtin(n) => write!(f, "gns3:{n}"),
            Self::User(n) => write!(f, "{n}"),
            Self::Adhoc(n) => write!(f, "arg:{n}"),
        }
    }
}

impl EntryId {
    /// Parses `gns3:N`, `arg:N` or a plain number (a user entry).
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        if let Some(n) = s.strip_prefix("gns3:") {
            n.parse().ok().map(Self::Builtin)
        } else if let Some(n) = s.strip_prefix("arg:") {
            n.parse().ok().map(Self::Adhoc)
        } else {
            s.parse().ok().map(Self::User)
        }
    }
}

/// A guest-content reference: the identity of the bytes the guest sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentRef {
    /// `qvet-content-v1:<hex>` Merkle root.
    pub root: String,
    /// sha256 of the guest view.
    pub sha256: String,
    /// Guest size in bytes.
    pub virtual_size: u64,
    /// Serialised chunk manifest ([`qvet_digest::Manifest::to_bytes`]).
    pub manifest: Option<Vec<u8>>,
}

/// What a trusted source says about one file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reference {
    /// Appliance, product or user label.
    pub label: String,
    /// File name the source gives (a base name), if any.
    pub filename: Option<String>,
    /// Version text, if any.
    pub version: Option<String>,
    /// Size in bytes, if the source gives one.
    pub size: Option<u64>,
    /// Lower-case hex digest per algorithm.
    pub digests: BTreeMap<Algo, String>,
    /// Guest-content identity (entries recorded with `catalog add`).
    pub content: Option<ContentRef>,
    /// The source has replaced this entry (a superseded registry row).
    pub superseded: bool,
    /// Where the entry was read from (a file path), if anywhere.
    pub imported_from: Option<String>,
}

/// Source names used in [`Entry::source`].
pub mod source {
    /// Built-in GNS3 registry data.
    pub const GNS3_BUILTIN: &str = "gns3-registry";
    /// `catalog add`: a reference the user recorded from an image.
    pub const USER: &str = "user";
    /// Imported `.gns3a` appliance files.
    pub const GNS3A: &str = "gns3a";
    /// Imported checksum files.
    pub const SUMS: &str = "sums";
    /// Imported Cisco download-page text.
    pub const CISCO: &str = "cisco";
    /// Imported OpenStack Glance image JSON.
    pub const GLANCE: &str = "glance";
    /// A digest given on the command line (`--md5` …).
    pub const COMMAND_LINE: &str = "command-line";
    /// A checksum file given on the command line (`--sums`).
    pub const SUMS_ARG: &str = "sums-file";
}

/// A catalog entry: a reference, where it came from and its ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its ID.
    pub id: EntryId,
    /// Source kind (see [`source`]).
    pub source: String,
    /// The reference.
    pub reference: Reference,
}

impl Entry {
    /// One-line description: label, file name, version.
    pub fn describe(&self) -> String {
        let r = &self.reference;
        let mut s = r.label.clone();
        if let Some(f) = &r.filename {
            if f != &r.label {
                s.push(' ');
                s.push_str(f);
            }
        }
        if let Some(v) = &r.version {
            s.push_str(&format!(" ({v})"));
        }
        s
    }
}

/// The default user catalog: `$XDG_DATA_HOME/qvet/catalog.sqlite`, else
/// `$HOME/.local/share/qvet/catalog.sqlite`.
///
/// # Errors
/// [`CatalogError::NoDefaultPath`] when neither variable is usable.
pub fn default_path() -> Result<PathBuf, CatalogError> {
    let from = |var: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    if let Some(d) = from("XDG_DATA_HOME") {
        return Ok(d.join("qvet").join("catalog.sqlite"));
    }
    if let Some(h) = from("HOME") {
        return Ok(h
            .join(".local")
            .join("share")
            .join("qvet")
            .join("catalog.sqlite"));
    }
    Err(CatalogError::NoDefaultPath)
}

/// Normalises a hex digest as vendors print it: case, `:`/space/`-`
/// grouping. `None` unless only hex digits remain.
pub fn normalize_hex(s: &str) -> Option<String> {
    let h: String = s
        .chars()
        .filter(|c| !matches!(c, ':' | ' ' | '-' | '\t'))
        .map(|c| c.to_ascii_lowercase())
        .collect();
    (!h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit())).then_some(h)
}

/// A digest checked against its algorithm's length.
pub fn digest_for(algo: Algo, s: &str) -> Option<String> {
    normalize_hex(s).filter(|h| h.len() == algo.hex_len())
}

/// Base name of a path as text.
pub fn base_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.to_string_lossy().into_owned())
}

/// Reads a whole (small) file, refusing more than `max` bytes.
pub(crate) fn read_limited(path: &Path, max: u64) -> Result<Vec<u8>, CatalogError> {
    use std::io::Read;
    let io_err = |error| CatalogError::Io {
        path: path.to_path_buf(),
        error,
    };
    let f = std::fs::File::open(path).map_err(io_err)?;
    let mut buf = Vec::new();
    f.take(max.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(io_err)?;
    if buf.len() as u64 > max {
        return Err(CatalogError::Parse {
            path: path.to_path_buf(),
            why: format!("larger than {max} bytes; not a checksum or metadata file"),
        });
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_normalisation() {
        assert_eq!(
            normalize_hex("6A:BE:CE 87-d6").as_deref(),
            Some("6abece87d6")
        );
        assert_eq!(normalize_hex("xyz"), None);
        assert_eq!(normalize_hex(""), None);
        assert_eq!(digest_for(Algo::Md5, "00"), None);
    }

    #[test]
    fn entry_ids() {
        assert_eq!(EntryId::parse("gns3:12"), Some(EntryId::Builtin(12)));
        assert_eq!(EntryId::parse("7"), Some(EntryId::User(7)));
        assert_eq!(EntryId::parse("arg:0"), Some(EntryId::Adhoc(0)));
        assert_eq!(EntryId::parse("x"), None);
        assert_eq!(EntryId::Builtin(3).to_string(), "gns3:3");
    }
}
