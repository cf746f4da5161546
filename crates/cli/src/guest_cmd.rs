//! `qvet ls`, `cat`, `stat`, `find`: files inside the guest, read-only.
//!
//! Guest paths are `IMG:/path` when the disk holds one filesystem and
//! `IMG:pN:/path` to pick partition N (numbered as Linux numbers them).

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use qvet_guestfs::{FileSystem, FileType, Metadata, NodeId};
use qvet_image::{ByteSource, Disk};
use serde_json::{json, Map, Value};

use crate::OutputFormat;

/// A parsed `IMG[:pN][:/path]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestPath {
    /// Image file.
    pub image: PathBuf,
    /// Partition number, when given.
    pub partition: Option<u32>,
    /// Path inside the filesystem (bytes).
    pub path: Vec<u8>,
}

/// Splits `IMG[:pN][:/path]`, taking the image as the longest prefix that
/// names an existing file (image names may contain colons).
pub fn parse_guest_path(arg: &str) -> Result<GuestPath> {
    let colons: Vec<usize> = arg.match_indices(':').map(|(i, _)| i).collect();
    for &i in colons.iter().rev() {
        let (image, rest) = (&arg[..i], &arg[i + 1..]);
        if !Path::new(image).is_file() {
            continue;
        }
        let (partition, path) = match rest.strip_prefix('p') {
            Some(r)
                if r.split(':')
                    .next()
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())) =>
            {
                let (n, p) = r.split_once(':').unwrap_or((r, "/"));
                (Some(n.parse::<u32>().context("partition number")?), p)
            }
            _ => (None, rest),
        };
        let path = if path.is_empty() { "/" } else { path };
        if !path.starts_with('/') {
            continue;
        }
        return Ok(GuestPath {
            image: PathBuf::from(image),
            partition,
            path: path.as_bytes().to_vec(),
        });
    }
    if Path::new(arg).is_file() {
        return Ok(GuestPath {
            image: PathBuf::from(arg),
            partition: None,
            path: b"/".to_vec(),
        });
    }
    bail!("'{arg}' is not IMG:/path or IMG:pN:/path with an existing image file")
}

/// Common options of the guest commands.
#[derive(Debug, Args)]
pub struct GuestArgs {
    #[command(flatten)]
    open: crate::OpenArgs,
    /// Read an internal snapshot (ID or name) instead of the current state.
    #[arg(short = 's', long)]
    snapshot: Option<String>,
}

/// Opens the filesystem a guest path points into.
fn open_fs(g: &GuestArgs, gp: &GuestPath) -> Result<Box<dyn FileSystem>> {
    let disk: Arc<Disk> = Arc::new(g.open.open(&gp.image, g.snapshot.as_deref())?);
    let map = qvet_volume::scan(disk.as_ref())?;
    let src: Arc<dyn ByteSource> = disk.clone();
    let part = match gp.partition {
        Some(n) => map
            .partitions
            .iter()
            .find(|p| p.number == n)
            .ok_or_else(|| anyhow!("'{}' has no partition {n}", gp.image.display()))?,
        None => {
            let with_fs: Vec<_> = map
                .partitions
                .iter()
                .filter(|p| {
                    matches!(
                        qvet_volume::detect_filesystem(disk.as_ref(), p.start, p.len),
                        Ok(Some(k)) if k != qvet_volume::FsKind::Unknown
                    )
                })
                .collect();
            match with_fs.as_slice() {
                [one] => *one,
                [] => bail!("'{}' holds no recognised filesystem", gp.image.display()),
                many => bail!(
                    "'{}' holds {} filesystems (partitions {}); name one as IMG:pN:/path",
                    gp.image.display(),
                    many.len(),
                    many.iter()
                        .map(|p| p.number.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }
        }
    };
    let window: Arc<dyn ByteSource> = Arc::new(qvet_volume::Window::new(src, part.start, part.len));
    // A LUKS1 container inside the guest opens with the same passphrase.
    let name = PathBuf::from(format!("{}:p{}", gp.image.display(), part.number));
    let window = qvet_image::crypt::volume::open_if_luks(window, disk.key(), &name)?;
    qvet_guestfs::open(window).with_context(|| format!("partition {}", part.number))
}

pub(crate) use qvet_inspect::base64::encode as b64;

/// A name for JSON: text, plus base64 of the raw bytes when not UTF-8.
fn name_fields(m: &mut Map<String, Value>, key: &str, bytes: &[u8]) {
    m.insert(key.into(), json!(String::from_utf8_lossy(bytes)));
    if std::str::from_utf8(bytes).is_err() {
        m.insert(format!("{key}_base64"), json!(b64(bytes)));
    }
}

fn mode_string(md: &Metadata) -> String {
    let mut s = String::new();
    s.push(match md.kind {
        FileType::File => '-',
        other => other.letter(),
    });
    let m = md.mode;
    let bits = [
        (0o400, 'r'),
        (0o200, 'w'),
        (0o100, 'x'),
        (0o040, 'r'),
        (0o020, 'w'),
        (0o010, 'x'),
        (0o004, 'r'),
        (0o002, 'w'),
        (0o001, 'x'),
    ];
    for (i, (bit, c)) in bits.iter().enumerate() {
        let special = match i {
            2 => (m & 0o4000 != 0).then_some(if m & bit != 0 { 's' } else { 'S' }),
            5 => (m & 0o2000 != 0).then_some(if m & bit != 0 { 's' } else { 'S' }),
            8 => (m & 0o1000 != 0).then_some(if m & bit != 0 { 't' } else { 'T' }),
            _ => None,
        };
        s.push(special.unwrap_or(if m & bit != 0 { *c } else { '-' }));
    }
    s
}

fn entry_json(path: &[u8], md: &Metadata, link: Option<&[u8]>) -> Value {
    let mut m = Map::new();
    name_fields(&mut m, "path", path);
    m.insert("type".into(), json!(md.kind.letter().to_string()));
    m.insert("size".into(), json!(md.size));
    m.insert("mode".into(), json!(format!("{:o}", md.mode & 0o7777)));
    m.insert("uid".into(), json!(md.uid));
    m.insert("gid".into(), json!(md.gid));
    m.insert("mtime".into(), json!(md.mtime));
    m.insert("inode".into(), json!(md.id.0));
    if let Some(l) = link {
        name_fields(&mut m, "link", l);
    }
    Value::Object(m)
}

fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = dir.to_vec();
    if p.last() != Some(&b'/') {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

/// Called for every entry of a walk: path, metadata, symlink target.
type Visitor<'a> = dyn FnMut(&[u8], &Metadata, Option<Vec<u8>>) -> Result<()> + 'a;

/// Walks `dir` depth-first, bounded in depth and by a visited set (a
/// directory met twice is a loop and is not entered again).
fn walk(
    fs: &dyn FileSystem,
    dir: NodeId,
    path: &[u8],
    recursive: bool,
    visit: &mut Visitor<'_>,
) -> Result<()> {
    let mut seen = HashSet::new();
    let mut stack = vec![(dir, path.to_vec(), 0usize)];
    seen.insert(dir);
    while let Some((d, p, depth)) = stack.pop() {
        let mut entries = fs.read_dir(d)?;
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        let mut subdirs = Vec::new();
        for e in entries {
            let child = join(&p, &e.name);
            let md = match fs.metadata(e.id) {
                Ok(md) => md,
                Err(err) => {
                    eprintln!("qvet: {}: {err}", String::from_utf8_lossy(&child));
                    continue;
                }
            };
            let link = (md.kind == FileType::Symlink)
                .then(|| fs.read_link(e.id).ok())
                .flatten();
            visit(&child, &md, link)?;
            if recursive
                && md.kind == FileType::Dir
                && depth < qvet_guestfs::MAX_PATH_DEPTH
                && seen.insert(e.id)
            {
                subdirs.push((e.id, child, depth + 1));
            }
        }
        stack.extend(subdirs.into_iter().rev());
    }
    Ok(())
}

/// Arguments of `qvet ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// Long listing (type, mode, owner, size, mtime, link target).
    #[arg(short = 'l')]
    long: bool,
    /// Recurse into subdirectories.
    #[arg(short = 'R')]
    recursive: bool,
    /// Read every regular file and show its sha256 (human: a column before
    /// the path; JSON: a "sha256" field). Files are read in parallel.
    #[arg(long)]
    sha256: bool,
    /// Also list deleted entries whose records survive in each listed
    /// directory (FAT: long names and the lost first letter recovered from
    /// the long-name checksum), after the live entries.
    #[arg(long)]
    deleted: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    output: OutputFormat,
    #[command(flatten)]
    guest: GuestArgs,
    /// IMG[:pN]:/path
    target: String,
}

/// Bytes per read when hashing a file (memory stays at one such buffer per
/// worker thread).
const HASH_READ: usize = 1 << 20;
/// Entries hashed together: a batch is flushed at this many entries or at
/// [`HASH_BATCH_BYTES`] of file data, whichever comes first.
const HASH_BATCH_ENTRIES: usize = 4096;
const HASH_BATCH_BYTES: u64 = 256 << 20;

thread_local! {
    static HASH_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn hex(bytes: &[u8]) -> String {
    const D: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        for nib in [b >> 4, b & 15] {
            s.push(char::from(D.get(usize::from(nib)).copied().unwrap_or(b'?')));
        }
    }
    s
}

/// sha256 of a regular file's content, streamed in [`HASH_READ`] reads.
fn sha256_file(fs: &dyn FileSystem, md: &Metadata) -> Result<String> {
    use sha2::{Digest as _, Sha256};
    HASH_BUF.with(|cell| {
        let mut buf = cell.borrow_mut();
        if buf.len() < HASH_READ {
            buf.resize(HASH_READ, 0);
        }
        let mut h = Sha256::new();
        let mut offset = 0u64;
        while offset < md.size {
            let want = usize::try_from(md.size - offset)
                .unwrap_or(HASH_READ)
                .min(HASH_READ);
            let chunk = buf.get_mut(..want).unwrap_or_default();
            let n = fs.read(md.id, offset, chunk)?;
            if n == 0 {
                bail!("short read: {offset} of {} bytes", md.size);
            }
            h.update(chunk.get(..n).unwrap_or_default());
            offset += n as u64;
        }
        Ok(hex(&h.finalize()))
    })
}

/// An entry waiting for its hash: path, metadata, symlink target.
type Pending = (Vec<u8>, Metadata, Option<Vec<u8>>);
/// Prints one entry with its hash (`None` for non-files).
type Printer<'a> =
    dyn FnMut(&[u8], &Metadata, Option<Vec<u8>>, Option<Result<String>>) -> Result<()> + 'a;

/// Hashes the regular files of `batch` in parallel, then prints the batch in
/// order.
fn hash_batch(
    fs: &dyn FileSystem,
    batch: &mut Vec<Pending>,
    print: &mut Printer<'_>,
    bar: &indicatif::ProgressBar,
) -> Result<()> {
    use rayon::prelude::*;
    bar.inc(batch.iter().map(|(_, md, _)| md.size).sum());
    let hashes: Vec<Option<Result<String>>> = batch
        .par_iter()
        .map(|(_, md, _)| (md.kind == FileType::File).then(|| sha256_file(fs, md)))
        .collect();
    for ((path, md, link), h) in batch.drain(..).zip(hashes) {
        print(&path, &md, link, h)?;
    }
    Ok(())
}

/// Runs `qvet ls`.
pub fn ls(a: &LsArgs, out: &mut dyn Write) -> Result<ExitCode> {
    let gp = parse_guest_path(&a.target)?;
    let fs = open_fs(&a.guest, &gp)?;
    let id = qvet_guestfs::lookup(fs.as_ref(), &gp.path, true)?;
    let md = fs.metadata(id)?;
    if a.deleted && md.kind == FileType::Dir {
        // Refuse before listing anything when the reader cannot do it.
        fs.deleted_entries(id)
            .with_context(|| format!("--deleted on {}", fs.kind()))?;
    }
    // Directories whose deleted entries are listed at the end.
    let mut dirs: Vec<(Vec<u8>, NodeId)> = Vec::new();
    if a.deleted && md.kind == FileType::Dir {
        dirs.push((gp.path.clone(), id));
    }
    let mut rows: Vec<Value> = Vec::new();
    let mut failed = false;
    let mut print = |path: &[u8],
                     md: &Metadata,
                     link: Option<Vec<u8>>,
                     hash: Option<Result<String>>|
     -> Result<()> {
        let hash = match hash {
            Some(Ok(h)) => Some(h),
            Some(Err(e)) => {
                eprintln!("qvet: {}: {e:#}", String::from_utf8_lossy(path));
                failed = true;
                None
            }
            None => None,
        };
        // The hash column: the digest, `?` for an unreadable file, `-` else.
        let column = || match (&hash, md.kind) {
            (Some(h), _) => format!("{h}  "),
            (None, FileType::File) => format!("{:<64}  ", "?"),
            (None, _) => format!("{:<64}  ", "-"),
        };
        let column = if a.sha256 { column() } else { String::new() };
        match a.output {
            OutputFormat::Json => {
                let mut v = entry_json(path, md, link.as_deref());
                if let (true, Value::Object(m)) = (a.sha256, &mut v) {
                    m.insert("sha256".into(), json!(hash));
                }
                rows.push(v);
            }
            OutputFormat::Human if a.long => {
                let target = link
                    .map(|l| format!(" -> {}", String::from_utf8_lossy(&l)))
                    .unwrap_or_default();
                writeln!(
                    out,
                    "{} {:>5} {:>5} {:>12} {:>11} {}{}{}",
                    mode_string(md),
                    md.uid,
                    md.gid,
                    md.size,
                    md.mtime,
                    column,
                    String::from_utf8_lossy(path),
                    target
                )?;
            }
            OutputFormat::Human => {
                writeln!(out, "{}{}", column, String::from_utf8_lossy(path))?;
            }
        }
        Ok(())
    };
    let fsr = fs.as_ref();
    // Bytes hashed so far, on stderr when it is a terminal (the total is not
    // known before the walk ends).
    let bar = crate::progress_spinner(
        !a.sha256,
        "{spinner} [{elapsed_precise}] {bytes} hashed ({bytes_per_sec})",
    );
    let mut batch: Vec<Pending> = Vec::new();
    let mut batch_bytes = 0u64;
    let mut visit = |path: &[u8], md: &Metadata, link: Option<Vec<u8>>| -> Result<()> {
        if a.deleted && a.recursive && md.kind == FileType::Dir {
            dirs.push((path.to_vec(), md.id));
        }
        if !a.sha256 {
            return print(path, md, link, None);
        }
        if md.kind == FileType::File {
            batch_bytes = batch_bytes.saturating_add(md.size);
        }
        batch.push((path.to_vec(), md.clone(), link));
        if batch.len() >= HASH_BATCH_ENTRIES || batch_bytes >= HASH_BATCH_BYTES {
            batch_bytes = 0;
            hash_batch(fsr, &mut batch, &mut print, &bar)?;
        }
        Ok(())
    };
    if md.kind == FileType::Dir {
        walk(fsr, id, &gp.path, a.recursive, &mut visit)?;
    } else {
        let link = (md.kind == FileType::Symlink)
            .then(|| fs.read_link(id).ok())
            .flatten();
        visit(&gp.path, &md, link)?;
    }
    hash_batch(fsr, &mut batch, &mut print, &bar)?;
    bar.finish_and_clear();
    for (dir, dir_id) in &dirs {
        let deleted = match fs.deleted_entries(*dir_id) {
            Ok(d) => d,
            Err(e) => {
                eprintln!(
                    "qvet: {}: deleted entries: {e}",
                    String::from_utf8_lossy(dir)
                );
                failed = true;
                continue;
            }
        };
        for d in deleted {
            let path = join(dir, &d.name);
            match a.output {
                OutputFormat::Json => {
                    let mut m = Map::new();
                    name_fields(&mut m, "path", &path);
                    m.insert("deleted".into(), json!(true));
                    m.insert("type".into(), json!(d.kind.letter().to_string()));
                    m.insert("size".into(), json!(d.size));
                    m.insert("record_offset".into(), json!(d.offset));
                    m.insert("node".into(), json!(d.node));
                    rows.push(Value::Object(m));
                }
                OutputFormat::Human => writeln!(
                    out,
                    "deleted {} {} ({} bytes, record at {:#x}{})",
                    d.kind.letter(),
                    String::from_utf8_lossy(&path),
                    d.size.map_or_else(|| "?".to_string(), |n| n.to_string()),
                    d.offset,
                    d.node.map(|n| format!(", node {n}")).unwrap_or_default()
                )?,
            }
        }
    }
    if a.output == OutputFormat::Json {
        serde_json::to_writer_pretty(&mut *out, &crate::with_schema("ls", Value::Array(rows)))?;
        writeln!(out)?;
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Arguments of `qvet cat`.
#[derive(Debug, Args)]
pub struct CatArgs {
    #[command(flatten)]
    guest: GuestArgs,
    /// IMG[:pN]:/path
    target: String,
}

/// Runs `qvet cat`: the file's bytes to stdout.
pub fn cat(a: &CatArgs, out: &mut dyn Write) -> Result<ExitCode> {
    let gp = parse_guest_path(&a.target)?;
    let fs = open_fs(&a.guest, &gp)?;
    let id = qvet_guestfs::lookup(fs.as_ref(), &gp.path, true)?;
    let md = fs.metadata(id)?;
    if md.kind != FileType::File {
        bail!("{}: not a regular file", String::from_utf8_lossy(&gp.path));
    }
    let mut buf = vec![0u8; 1 << 20];
    let mut offset = 0u64;
    while offset < md.size {
        let n = fs.read(id, offset, &mut buf)?;
        if n == 0 {
            break;
        }
        out.write_all(buf.get(..n).unwrap_or_default())?;
        offset += n as u64;
    }
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `qvet stat`.
#[derive(Debug, Args)]
pub struct StatArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    output: OutputFormat,
    #[command(flatten)]
    guest: GuestArgs,
    /// IMG[:pN]:/path
    target: String,
}

/// Runs `qvet stat` (symlinks are not followed).
pub fn stat(a: &StatArgs, out: &mut dyn Write) -> Result<ExitCode> {
    let gp = parse_guest_path(&a.target)?;
    let fs = open_fs(&a.guest, &gp)?;
    let id = qvet_guestfs::lookup(fs.as_ref(), &gp.path, false)?;
    let md = fs.metadata(id)?;
    let link = (md.kind == FileType::Symlink)
        .then(|| fs.read_link(id).ok())
        .flatten();
    let mut v = entry_json(&gp.path, &md, link.as_deref());
    if let Value::Object(m) = &mut v {
        m.insert("filesystem".into(), json!(fs.kind()));
        m.insert("nlink".into(), json!(md.nlink));
        m.insert("atime".into(), json!(md.atime));
        m.insert("ctime".into(), json!(md.ctime));
        m.insert("crtime".into(), json!(md.crtime));
    }
    match a.output {
        OutputFormat::Json => {
            serde_json::to_writer_pretty(&mut *out, &crate::with_schema("stat", v))?;
            writeln!(out)?;
        }
        OutputFormat::Human => {
            if let Value::Object(m) = v {
                for (k, val) in m {
                    let shown = match val {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    writeln!(out, "{:<10} {shown}", format!("{k}:"))?;
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `qvet find`.
#[derive(Debug, Args)]
pub struct FindArgs {
    /// Shell glob on the entry name (`*`, `?`, `[...]`).
    #[arg(long = "name")]
    name: Option<String>,
    /// Entry type: f, d or l.
    #[arg(long = "type")]
    kind: Option<char>,
    /// `-NNNN`: all these permission bits set (e.g. `-4000` for setuid).
    #[arg(long = "perm", allow_hyphen_values = true)]
    perm: Option<String>,
    /// Modified after this Unix time (seconds).
    #[arg(long = "newer-than")]
    newer_than: Option<i64>,
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    output: OutputFormat,
    #[command(flatten)]
    guest: GuestArgs,
    /// IMG[:pN][:/path]
    target: String,
}

/// Glob matching on bytes: `*`, `?`, `[abc]`, `[a-z]`, `[!x]`.
pub use qvet_inspect::tree::glob_match as glob;

/// Runs `qvet find`.
pub fn find(a: &FindArgs, out: &mut dyn Write) -> Result<ExitCode> {
    let gp = parse_guest_path(&a.target)?;
    let fs = open_fs(&a.guest, &gp)?;
    let id = qvet_guestfs::lookup(fs.as_ref(), &gp.path, true)?;
    let perm = match &a.perm {
        None => None,
        Some(p) => Some(
            u32::from_str_radix(p.trim_start_matches('-'), 8)
                .with_context(|| format!("--perm {p}: expected octal bits such as -4000"))?,
        ),
    };
    let mut rows = Vec::new();
    let mut visit = |path: &[u8], md: &Metadata, link: Option<Vec<u8>>| -> Result<()> {
        let name = path.rsplit(|&b| b == b'/').next().unwrap_or(path);
        let ok = a.name.as_ref().is_none_or(|g| glob(g.as_bytes(), name))
            && a.kind.is_none_or(|k| md.kind.letter() == k)
            && perm.is_none_or(|bits| md.mode & bits == bits)
            && a.newer_than.is_none_or(|t| md.mtime > t);
        if ok {
            match a.output {
                OutputFormat::Json => rows.push(entry_json(path, md, link.as_deref())),
                OutputFormat::Human => writeln!(out, "{}", String::from_utf8_lossy(path))?,
            }
        }
        Ok(())
    };
    walk(fs.as_ref(), id, &gp.path, true, &mut visit)?;
    if a.output == OutputFormat::Json {
        serde_json::to_writer_pretty(&mut *out, &crate::with_schema("find", Value::Array(rows)))?;
        writeln!(out)?;
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_find() {
        assert!(glob(b"*.conf", b"ssh.conf"));
        assert!(!glob(b"*.conf", b"ssh.confx"));
        assert!(glob(b"auth*_keys", b"authorized_keys"));
        assert!(glob(b"[a-c]?", b"bz"));
        assert!(!glob(b"[!a-c]?", b"bz"));
        assert!(glob(b"*", b""));
        assert!(glob(b"a*b*c", b"a_b_b_c"));
        assert!(!glob(b"a*b*c", b"a_b_b_"));
    }

    #[test]
    fn base64_of_raw_names() {
        assert_eq!(b64(b""), "");
        assert_eq!(b64(b"f"), "Zg==");
        assert_eq!(b64(b"fo"), "Zm8=");
        assert_eq!(b64(b"foo"), "Zm9v");
        assert_eq!(b64(&[0xff, 0xfe]), "//4=");
    }

    #[test]
    fn guest_paths_split_at_an_existing_image() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("a:b.img");
        std::fs::write(&img, b"x").unwrap();
        let s = img.display().to_string();
        let g = parse_guest_path(&format!("{s}:p2:/etc/passwd")).unwrap();
        assert_eq!(
            (g.image, g.partition, g.path),
            (img.clone(), Some(2), b"/etc/passwd".to_vec())
        );
        let g = parse_guest_path(&format!("{s}:/root/.ssh")).unwrap();
        assert_eq!((g.partition, g.path), (None, b"/root/.ssh".to_vec()));
        let g = parse_guest_path(&s).unwrap();
        assert_eq!(g.path, b"/".to_vec());
        assert!(parse_guest_path("/nonexistent.img:/x").is_err());
    }
}
