//! File-level baselines: the partition layout and every file's path, type,
//! mode, owner, size, sha256 and link target, per partition — what an
//! audit needs of an original to compare another image with it, without
//! the original itself. A team records the baseline of a licensed image
//! once (`qvet catalog add`) and shares the JSON (`qvet catalog
//! export-baseline`), never the image.
//!
//! The JSON (`"schema": "qvet-baseline-v1"`):
//! ```json
//! {"schema": "qvet-baseline-v1", "label": "csr1000v 16.12.1b", "filename": "csr.qcow2",
//!  "size": 123, "virtual_size": 8589934592, "digests": {"sha256": "…"},
//!  "content_root": "qvet-content-v1:…",
//!  "partitions": [{"number": 1, "start": 1048576, "length": 1073741824, "filesystem": "ext4",
//!    "files": [{"path": "/etc/passwd", "type": "f", "mode": "644", "uid": 0, "gid": 0,
//!               "size": 1203, "sha256": "…"},
//!              {"path": "/bin", "type": "l", "mode": "777", "uid": 0, "gid": 0, "size": 7,
//!               "link": "usr/bin"}]}]}
//! ```
//! `mode` is octal permission and special bits; `type` is `ls -l`'s letter
//! (`f` regular, `d`, `l`, `c`, `b`, `p`, `s`); paths and link targets that
//! are not UTF-8 add `path_base64` / `link_base64`. `sha256` is present for
//! regular files only.

use std::collections::BTreeMap;
use std::sync::Arc;

use qvet_guestfs::{FileSystem, FileType};
use qvet_image::{ByteSource, Disk};
use qvet_inspect::tree::{Entry, Tree};
use qvet_volume::Window;
use rayon::prelude::*;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::diff::{Change, ChangeKind, FieldChange};

/// The schema name written and accepted.
pub const SCHEMA: &str = "qvet-baseline-v1";
/// Largest baseline JSON read (about two million files).
pub const MAX_JSON: u64 = 1 << 30;
/// Files recorded per partition (the walk's own bound applies first).
pub const MAX_FILES: usize = 2_000_000;

/// One file of a baseline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRecord {
    /// Guest path.
    pub path: Vec<u8>,
    /// Type.
    pub kind: FileType,
    /// `st_mode & 0o7777`.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size.
    pub size: u64,
    /// sha256 (hex) of regular files.
    pub sha256: Option<String>,
    /// Symlink target.
    pub link: Option<Vec<u8>>,
}

/// One partition of a baseline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionRecord {
    /// Number as Linux gives it.
    pub number: u32,
    /// First byte.
    pub start: u64,
    /// Length.
    pub length: u64,
    /// Filesystem (`ext4`, `vfat` …), `None` when none was readable.
    pub filesystem: Option<String>,
    /// Files, sorted by path.
    pub files: Vec<FileRecord>,
}

/// A baseline.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Baseline {
    /// What it is a baseline of.
    pub label: String,
    /// The image's file name.
    pub filename: Option<String>,
    /// The image's file size.
    pub size: Option<u64>,
    /// Guest size.
    pub virtual_size: u64,
    /// File digests of the image (algorithm → hex).
    pub digests: BTreeMap<String, String>,
    /// Content root of the guest.
    pub content_root: Option<String>,
    /// Partitions.
    pub partitions: Vec<PartitionRecord>,
}

/// Why a baseline could not be taken or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BaselineError {
    /// The JSON is not a baseline.
    #[error("not a {SCHEMA} baseline: {0}")]
    Format(String),
    /// Reading the disk failed.
    #[error("reading the disk: {0}")]
    Volume(#[from] qvet_volume::VolumeError),
}

fn sha256_entry(tree: &Tree<'_>, e: &Entry) -> Option<String> {
    let mut h = Sha256::new();
    tree.stream(e, &mut |b| h.update(b)).ok()?;
    Some(qvet_inspect::packages::hex(&h.finalize()))
}

/// The records of every walked entry, regular files hashed in parallel.
pub fn records(tree: &Tree<'_>) -> Vec<FileRecord> {
    tree.entries()
        .par_iter()
        .take(MAX_FILES)
        .map(|e| FileRecord {
            path: e.path.clone(),
            kind: e.meta.kind,
            mode: e.perm(),
            uid: e.meta.uid,
            gid: e.meta.gid,
            size: e.meta.size,
            sha256: e.is_file().then(|| sha256_entry(tree, e)).flatten(),
            link: e.link.clone(),
        })
        .collect()
}

/// Opens the filesystem of one partition.
pub fn open_partition(disk: &Arc<Disk>, start: u64, len: u64) -> Option<Box<dyn FileSystem>> {
    let src: Arc<dyn ByteSource> = disk.clone();
    let window: Arc<dyn ByteSource> = Arc::new(Window::new(src, start, len));
    qvet_guestfs::open(window).ok()
}

/// Takes the baseline of `disk`.
///
/// # Errors
/// The partition table cannot be read.
pub fn take(disk: &Arc<Disk>, label: &str) -> Result<Baseline, BaselineError> {
    let map = qvet_volume::scan(disk.as_ref())?;
    let mut b = Baseline {
        label: label.to_string(),
        virtual_size: disk.size(),
        ..Baseline::default()
    };
    for p in &map.partitions {
        let mut rec = PartitionRecord {
            number: p.number,
            start: p.start,
            length: p.len,
            filesystem: None,
            files: Vec::new(),
        };
        if let Some(fs) = open_partition(disk, p.start, p.len) {
            if let Ok(tree) = Tree::walk(fs.as_ref()) {
                rec.filesystem = Some(fs.kind().to_string());
                rec.files = records(&tree);
            }
        }
        b.partitions.push(rec);
    }
    Ok(b)
}

fn bytes_field(m: &mut Map<String, Value>, key: &str, bytes: &[u8]) {
    m.insert(key.into(), json!(String::from_utf8_lossy(bytes)));
    if std::str::from_utf8(bytes).is_err() {
        m.insert(format!("{key}_base64"), json!(b64(bytes)));
    }
}

fn kind_letter(k: FileType) -> String {
    k.letter().to_string()
}

fn kind_from(s: &str) -> FileType {
    match s {
        "f" => FileType::File,
        "d" => FileType::Dir,
        "l" => FileType::Symlink,
        "c" => FileType::CharDev,
        "b" => FileType::BlockDev,
        "p" => FileType::Fifo,
        "s" => FileType::Socket,
        _ => FileType::Unknown,
    }
}

impl Baseline {
    /// The documented JSON.
    pub fn to_json(&self) -> Value {
        let partitions: Vec<Value> = self
            .partitions
            .iter()
            .map(|p| {
                let files: Vec<Value> = p
                    .files
                    .iter()
                    .map(|f| {
                        let mut m = Map::new();
                        bytes_field(&mut m, "path", &f.path);
                        m.insert("type".into(), json!(kind_letter(f.kind)));
                        m.insert("mode".into(), json!(format!("{:o}", f.mode)));
                        m.insert("uid".into(), json!(f.uid));
                        m.insert("gid".into(), json!(f.gid));
                        m.insert("size".into(), json!(f.size));
                        if let Some(h) = &f.sha256 {
                            m.insert("sha256".into(), json!(h));
                        }
                        if let Some(l) = &f.link {
                            bytes_field(&mut m, "link", l);
                        }
                        Value::Object(m)
                    })
                    .collect();
                json!({"number": p.number, "start": p.start, "length": p.length,
                       "filesystem": p.filesystem, "files": files})
            })
            .collect();
        json!({
            "schema": SCHEMA,
            "label": self.label,
            "filename": self.filename,
            "size": self.size,
            "virtual_size": self.virtual_size,
            "digests": self.digests,
            "content_root": self.content_root,
            "partitions": partitions,
        })
    }

    /// Reads the documented JSON.
    ///
    /// # Errors
    /// [`BaselineError::Format`] naming what is missing or wrong.
    pub fn from_json(v: &Value) -> Result<Self, BaselineError> {
        let bad = |what: &str| BaselineError::Format(what.to_string());
        if v.get("schema").and_then(Value::as_str) != Some(SCHEMA) {
            return Err(bad("\"schema\" is not \"qvet-baseline-v1\""));
        }
        let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let num = |v: &Value, k: &str| v.get(k).and_then(Value::as_u64);
        let bytes = |v: &Value, k: &str| -> Option<Vec<u8>> {
            if let Some(b) = v.get(format!("{k}_base64")).and_then(Value::as_str) {
                return b64_decode(b.as_bytes());
            }
            v.get(k)
                .and_then(Value::as_str)
                .map(|s| s.as_bytes().to_vec())
        };
        let mut b = Baseline {
            label: text(v, "label").unwrap_or_default(),
            filename: text(v, "filename"),
            size: num(v, "size"),
            virtual_size: num(v, "virtual_size").ok_or_else(|| bad("no \"virtual_size\""))?,
            digests: v
                .get("digests")
                .and_then(Value::as_object)
                .map(|o| {
                    o.iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                        .collect()
                })
                .unwrap_or_default(),
            content_root: text(v, "content_root"),
            partitions: Vec::new(),
        };
        let parts = v
            .get("partitions")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("no \"partitions\" array"))?;
        for p in parts {
            let number = num(p, "number")
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| bad("a partition without \"number\""))?;
            let mut rec = PartitionRecord {
                number,
                start: num(p, "start").unwrap_or(0),
                length: num(p, "length").unwrap_or(0),
                filesystem: text(p, "filesystem"),
                files: Vec::new(),
            };
            for f in p
                .get("files")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .take(MAX_FILES)
            {
                let path = bytes(f, "path").ok_or_else(|| bad("a file without \"path\""))?;
                let mode = text(f, "mode")
                    .and_then(|m| u32::from_str_radix(&m, 8).ok())
                    .unwrap_or(0);
                rec.files.push(FileRecord {
                    path,
                    kind: kind_from(&text(f, "type").unwrap_or_default()),
                    mode,
                    uid: num(f, "uid")
                        .and_then(|n| u32::try_from(n).ok())
                        .unwrap_or(0),
                    gid: num(f, "gid")
                        .and_then(|n| u32::try_from(n).ok())
                        .unwrap_or(0),
                    size: num(f, "size").unwrap_or(0),
                    sha256: text(f, "sha256"),
                    link: bytes(f, "link"),
                });
            }
            rec.files.sort_by(|a, b| a.path.cmp(&b.path));
            b.partitions.push(rec);
        }
        Ok(b)
    }
}

/// What changed from `baseline` to the files of `current` (taken from the
/// audited image), as diff changes: added, removed, modified (sha256 or
/// size), metadata (type, mode, uid, gid, link target), and partitions
/// whose place or filesystem changed.
pub fn compare(baseline: &Baseline, current: &Baseline) -> Vec<Change> {
    let mut out = Vec::new();
    for bp in &baseline.partitions {
        let Some(cp) = current.partitions.iter().find(|p| p.number == bp.number) else {
            let mut c = Change::new(ChangeKind::PartitionTable, Some(bp.number));
            c.detail = Some(format!("partition {} of the baseline is gone", bp.number));
            out.push(c);
            continue;
        };
        if (bp.start, bp.length) != (cp.start, cp.length) || bp.filesystem != cp.filesystem {
            let mut c = Change::new(ChangeKind::PartitionTable, Some(bp.number));
            c.detail = Some(format!(
                "partition {}: {}+{} {} → {}+{} {}",
                bp.number,
                bp.start,
                bp.length,
                bp.filesystem.as_deref().unwrap_or("-"),
                cp.start,
                cp.length,
                cp.filesystem.as_deref().unwrap_or("-")
            ));
            out.push(c);
        }
        let old: BTreeMap<&[u8], &FileRecord> =
            bp.files.iter().map(|f| (f.path.as_slice(), f)).collect();
        let new: BTreeMap<&[u8], &FileRecord> =
            cp.files.iter().map(|f| (f.path.as_slice(), f)).collect();
        for (path, a) in &old {
            let Some(b) = new.get(path) else {
                let mut c = Change::new(ChangeKind::Removed, Some(bp.number));
                c.path = Some(path.to_vec());
                c.size_a = Some(a.size);
                c.sha256_a.clone_from(&a.sha256);
                out.push(c);
                continue;
            };
            let mut fields = Vec::new();
            let mut field = |name: &'static str, x: String, y: String| {
                if x != y {
                    fields.push(FieldChange { name, a: x, b: y });
                }
            };
            field("type", kind_letter(a.kind), kind_letter(b.kind));
            field("mode", format!("{:o}", a.mode), format!("{:o}", b.mode));
            field("uid", a.uid.to_string(), b.uid.to_string());
            field("gid", a.gid.to_string(), b.gid.to_string());
            let lt = |l: &Option<Vec<u8>>| {
                l.as_deref()
                    .map(|l| String::from_utf8_lossy(l).into_owned())
                    .unwrap_or_default()
            };
            field("link", lt(&a.link), lt(&b.link));
            let content = a.kind == FileType::File
                && b.kind == FileType::File
                && (a.size != b.size || a.sha256 != b.sha256);
            if content || !fields.is_empty() {
                let mut c = Change::new(
                    if content {
                        ChangeKind::Modified
                    } else {
                        ChangeKind::Metadata
                    },
                    Some(bp.number),
                );
                c.path = Some(path.to_vec());
                c.fields = fields;
                if content {
                    c.size_a = Some(a.size);
                    c.size_b = Some(b.size);
                    c.sha256_a.clone_from(&a.sha256);
                    c.sha256_b.clone_from(&b.sha256);
                }
                out.push(c);
            }
        }
        for (path, b) in &new {
            if !old.contains_key(path) {
                let mut c = Change::new(ChangeKind::Added, Some(bp.number));
                c.path = Some(path.to_vec());
                c.size_b = Some(b.size);
                c.sha256_b.clone_from(&b.sha256);
                out.push(c);
            }
        }
    }
    for cp in &current.partitions {
        if !baseline.partitions.iter().any(|p| p.number == cp.number) {
            let mut c = Change::new(ChangeKind::PartitionTable, Some(cp.number));
            c.detail = Some(format!("partition {} is not in the baseline", cp.number));
            out.push(c);
        }
    }
    out
}

use qvet_inspect::base64::{decode as b64_decode, encode as b64};

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn file(path: &[u8], size: u64, sha: &str) -> FileRecord {
        FileRecord {
            path: path.to_vec(),
            kind: FileType::File,
            mode: 0o644,
            uid: 0,
            gid: 0,
            size,
            sha256: Some(sha.into()),
            link: None,
        }
    }

    fn one(files: Vec<FileRecord>) -> Baseline {
        Baseline {
            label: "x".into(),
            virtual_size: 1 << 20,
            partitions: vec![PartitionRecord {
                number: 1,
                start: 0,
                length: 1 << 20,
                filesystem: Some("ext4".into()),
                files,
            }],
            ..Baseline::default()
        }
    }

    #[test]
    fn json_round_trip_with_non_utf8_names() {
        let mut b = one(vec![file(b"/etc/a", 3, "aa"), file(b"/bad\xff", 1, "bb")]);
        b.partitions[0].files.push(FileRecord {
            path: b"/bin".to_vec(),
            kind: FileType::Symlink,
            mode: 0o777,
            uid: 0,
            gid: 0,
            size: 7,
            sha256: None,
            link: Some(b"usr/bin".to_vec()),
        });
        b.partitions[0].files.sort_by(|a, b| a.path.cmp(&b.path));
        let back = Baseline::from_json(&b.to_json()).unwrap();
        assert_eq!(back, b);
        assert!(Baseline::from_json(&json!({"schema": "other"})).is_err());
    }

    #[test]
    fn compare_names_every_kind_of_change() {
        let a = one(vec![
            file(b"/etc/a", 3, "aa"),
            file(b"/etc/gone", 1, "g"),
            file(b"/etc/mode", 1, "m"),
        ]);
        let mut moded = file(b"/etc/mode", 1, "m");
        moded.mode = 0o4755;
        let b = one(vec![
            file(b"/etc/a", 3, "XX"),
            moded,
            file(b"/etc/new", 1, "n"),
        ]);
        let changes = compare(&a, &b);
        let kinds: Vec<(String, &str)> = changes
            .iter()
            .map(|c| {
                (
                    String::from_utf8_lossy(c.path.as_deref().unwrap_or_default()).into_owned(),
                    c.kind.name(),
                )
            })
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("/etc/a".into(), "modified"),
                ("/etc/gone".into(), "removed"),
                ("/etc/mode".into(), "metadata"),
                ("/etc/new".into(), "added"),
            ]
        );
        assert!(compare(&a, &a).is_empty());
    }
}
