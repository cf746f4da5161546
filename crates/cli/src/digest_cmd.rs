//! `qvet digest`: file digests from one read, and the guest-content digest.
//!
//! * File digests (`--algo`, default `md5,sha256,sha512`: the algorithms
//!   vendors and registries publish — GNS3 and Cisco MD5, Cisco/Arista/Glance
//!   SHA-512, Palo Alto/Extreme/Juniper SHA-256) are computed from one read of
//!   the file, one thread per algorithm. `--algo all` adds sha1 and blake3;
//!   `--algo none` skips the file digests.
//! * `--content` adds the sha256 of the guest view (what `qemu-img convert -O
//!   raw` writes) and the layout-independent manifest root
//!   (`qvet-content-v1:<hex>`); `--content=root` computes only the root.
//!   `--manifest-out F` stores the chunk manifest (atomically).
//!
//! Output: `human`; `json`, always an array with one object per image
//! (`filename`, `size`, `file` {algo: hex}, `content` {…}, or `filename` and
//! `error` for an image that failed); `sums`, GNU coreutils lines
//! (`<hex>  <name>`) in one block per algorithm, each block headed by a
//! `# <algo>` comment line, which `md5sum -c`, `sha1sum -c`, `sha256sum -c`
//! and `sha512sum -c` skip. Each of those checks the lines of its own length
//! and warns about the others as improperly formatted; blake3 and sha256 are
//! both 64 hex digits, so keep them apart: `--algo sha256 --output sums`
//! gives a file for `sha256sum -c` alone.
//!
//! An image that cannot be read is reported (`qvet: IMG: why`) and the
//! others are still processed; the exit code is then 1.

use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use qvet_digest::{Algo, ContentDigest, FileDigests, Manifest};
use qvet_image::{Disk, FileSource, Format};
use serde_json::{json, Map, Value};

/// Default file digests: what vendors and registries publish.
const DEFAULT_ALGOS: [Algo; 3] = [Algo::Md5, Algo::Sha256, Algo::Sha512];

#[derive(Debug, Args)]
pub struct DigestArgs {
    /// File digests, comma-separated: md5, sha1, sha256, sha512, blake3,
    /// `all`, or `none` (content digest only). Default: md5,sha256,sha512.
    #[arg(long = "algo", value_delimiter = ',', value_parser = parse_algo, value_name = "ALGOS")]
    algo: Vec<AlgoChoice>,
    /// Also digest the guest content: `--content` (= `full`) gives the sha256
    /// of the guest view (as `qemu-img convert -O raw` writes it) and the
    /// layout-independent manifest root; `--content=root` only the root (faster).
    #[arg(long, value_enum, num_args = 0..=1, require_equals = true, default_missing_value = "full", value_name = "WHAT")]
    content: Option<ContentMode>,
    /// Store the guest chunk manifest in F (replaced atomically; one image
    /// only; implies --content=root unless --content is given).
    #[arg(long, value_name = "F")]
    manifest_out: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    output: DigestOutput,
    /// How images are opened for the content digest.
    #[command(flatten)]
    open: crate::OpenArgs,
    /// No progress bar.
    #[arg(short = 'q', long)]
    quiet: bool,
    /// The image files.
    #[arg(required = true, value_name = "IMG")]
    images: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AlgoChoice {
    One(Algo),
    All,
    None,
}

fn parse_algo(s: &str) -> Result<AlgoChoice, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "all" => Ok(AlgoChoice::All),
        "none" => Ok(AlgoChoice::None),
        other => Algo::from_name(other).map(AlgoChoice::One).ok_or_else(|| {
            format!("unknown algorithm '{s}' (md5, sha1, sha256, sha512, blake3, all, none)")
        }),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ContentMode {
    /// sha256 of the guest view and the manifest root.
    Full,
    /// The manifest root only (skips the sequential full sha256).
    Root,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DigestOutput {
    Human,
    Json,
    /// `<hex>  <name>` lines that `md5sum -c` / `sha256sum -c` … accept.
    Sums,
}

/// What was computed for one image.
struct Report {
    path: PathBuf,
    file: FileDigests,
    /// Requested content digest, or why it could not be computed.
    content: Option<Result<Content, String>>,
}

struct Content {
    format: Option<Format>,
    /// None for `--content=root`.
    sha256: Option<String>,
    root: String,
    manifest: Manifest,
    manifest_file: Option<PathBuf>,
}

/// The algorithms selected, in output order (deduplicated).
fn algorithms(choices: &[AlgoChoice]) -> Vec<Algo> {
    if choices.is_empty() {
        return DEFAULT_ALGOS.to_vec();
    }
    let mut v: Vec<Algo> = Vec::new();
    for c in choices {
        match c {
            AlgoChoice::One(a) => v.push(*a),
            AlgoChoice::All => v.extend(Algo::ALL),
            AlgoChoice::None => {}
        }
    }
    v.sort_unstable();
    v.dedup();
    v
}

/// Runs `qvet digest`; exit code 0, or 1 when any image failed.
pub fn run(args: &DigestArgs, out: &mut dyn Write) -> Result<ExitCode> {
    let algos = algorithms(&args.algo);
    let content = match (args.content, &args.manifest_out) {
        (Some(m), _) => Some(m),
        (None, Some(_)) => Some(ContentMode::Root),
        (None, None) => None,
    };
    if algos.is_empty() && content.is_none() {
        bail!("nothing to compute: --algo none without --content");
    }
    if let Some(m) = &args.manifest_out {
        if args.images.len() != 1 {
            bail!("--manifest-out takes exactly one image");
        }
        if args.images.iter().any(|i| same_file(i, m)) {
            bail!(
                "refusing to write the manifest over the image '{}'",
                m.display()
            );
        }
    }
    let mut failed = false;
    let mut reports: Vec<Result<Report, (PathBuf, String)>> = Vec::new();
    let mut printed = false;
    for path in &args.images {
        let r = digest_one(args, path, &algos, content);
        match &r {
            Err(e) => {
                failed = true;
                let _ = writeln!(io::stderr(), "qvet: {}: {e:#}", path.display());
            }
            Ok(Report {
                content: Some(Err(e)),
                ..
            }) => {
                failed = true;
                let _ = writeln!(io::stderr(), "qvet: {}: {e}", path.display());
            }
            Ok(_) => {}
        }
        match args.output {
            // Human output streams image by image.
            DigestOutput::Human => {
                if let Ok(rep) = &r {
                    if printed {
                        writeln!(out)?;
                    }
                    printed = true;
                    write_human(out, rep)?;
                    out.flush()?;
                }
            }
            DigestOutput::Json | DigestOutput::Sums => {
                reports.push(r.map_err(|e| (path.clone(), format!("{e:#}"))));
            }
        }
    }
    match args.output {
        DigestOutput::Human => {}
        DigestOutput::Json => {
            let v: Vec<Value> = reports.iter().map(to_json).collect();
            serde_json::to_writer_pretty(
                &mut *out,
                &crate::with_schema("digest", Value::Array(v)),
            )?;
            writeln!(out)?;
        }
        DigestOutput::Sums => {
            let ok: Vec<&Report> = reports.iter().filter_map(|r| r.as_ref().ok()).collect();
            write_sums(out, &ok, &algos)?;
        }
    }
    out.flush()?;
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

fn digest_one(
    args: &DigestArgs,
    path: &Path,
    algos: &[Algo],
    content: Option<ContentMode>,
) -> Result<Report> {
    let src =
        FileSource::open(path).with_context(|| format!("could not open '{}'", path.display()))?;
    // Pipes and devices report no length: their digest would silently be
    // that of an empty file.
    let meta =
        std::fs::metadata(path).with_context(|| format!("could not open '{}'", path.display()))?;
    if !meta.is_file() {
        bail!(
            "'{}' is not a regular file (devices and pipes are not supported)",
            path.display()
        );
    }
    let file_len = qvet_image::ByteSource::len(&src);
    // Opened before hashing so the progress bar knows the guest size; a
    // failure only costs the content digest, the file digests still count.
    let opts = args.open.options(None)?;
    let disk = content.map(|_| Disk::open(path, &opts));
    let file_part = if algos.is_empty() { 0 } else { file_len };
    let guest = match &disk {
        Some(Ok(d)) => d.size(),
        _ => 0,
    };
    let bar = crate::progress_bar(file_part + guest, args.quiet);
    if !bar.is_hidden() {
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{msg} {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
        ) {
            bar.set_style(style);
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        bar.set_message(name);
    }
    let file = qvet_digest::digest_file(&src, algos, &|n| bar.set_position(n))
        .with_context(|| format!("reading '{}'", path.display()));
    let file = match file {
        Ok(f) => f,
        Err(e) => {
            bar.finish_and_clear();
            return Err(e);
        }
    };
    let content = match (disk, content) {
        (Some(disk), Some(mode)) => {
            let report = |n: u64| bar.set_position(file_part + n);
            let c = disk
                .map_err(anyhow::Error::from)
                .and_then(|d| content_of(args, &d, mode, &report))
                .map_err(|e| format!("content digest: {e:#}"));
            Some(c)
        }
        _ => None,
    };
    bar.finish_and_clear();
    Ok(Report {
        path: path.to_path_buf(),
        file,
        content,
    })
}

fn content_of(
    args: &DigestArgs,
    disk: &Disk,
    mode: ContentMode,
    report: &(dyn Fn(u64) + Sync),
) -> Result<Content> {
    let (sha256, root, manifest) = match mode {
        ContentMode::Full => {
            let ContentDigest {
                sha256,
                root,
                manifest,
            } = qvet_digest::content_digest(disk, report)?;
            (Some(sha256), root, manifest)
        }
        ContentMode::Root => {
            let m = qvet_digest::content_manifest(disk, report)?;
            (None, m.root(), m)
        }
    };
    let manifest_file = match &args.manifest_out {
        Some(f) => {
            qvet_write::write_file_atomic(f, &manifest.to_bytes())?;
            Some(f.clone())
        }
        None => None,
    };
    Ok(Content {
        format: disk.top().map(|l| l.driver.format()),
        sha256,
        root,
        manifest,
        manifest_file,
    })
}

fn human_size(n: u64) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else {
        format!("{n} bytes")
    }
}

fn write_human(out: &mut dyn Write, r: &Report) -> io::Result<()> {
    writeln!(out, "{}", r.path.display())?;
    writeln!(out, "  {:<15} {} bytes", "size", r.file.size)?;
    for (algo, hex) in &r.file.digests {
        writeln!(out, "  {:<15} {hex}", algo.name())?;
    }
    if let Some(Err(e)) = &r.content {
        writeln!(out, "  {:<15} not computed: {e}", "content")?;
    }
    if let Some(Ok(c)) = &r.content {
        let m = &c.manifest;
        writeln!(
            out,
            "  {:<15} {} bytes ({} guest view)",
            "virtual size",
            m.virtual_size,
            c.format.map_or("?", Format::name)
        )?;
        if let Some(sha) = &c.sha256 {
            writeln!(out, "  {:<15} {sha}", "content sha256")?;
        }
        writeln!(out, "  {:<15} {}", "content root", c.root)?;
        writeln!(
            out,
            "  {:<15} {} of {}, {} all zero",
            "chunks",
            m.chunks.len(),
            human_size(m.chunk_size),
            m.zero_chunks()
        )?;
        if let Some(f) = &c.manifest_file {
            writeln!(out, "  {:<15} {}", "manifest", f.display())?;
        }
    }
    Ok(())
}

fn to_json(r: &Result<Report, (PathBuf, String)>) -> Value {
    let r = match r {
        Ok(r) => r,
        Err((path, why)) => {
            return json!({ "filename": path.to_string_lossy(), "error": why });
        }
    };
    let mut o = Map::new();
    o.insert("filename".into(), json!(r.path.to_string_lossy()));
    o.insert("size".into(), json!(r.file.size));
    let file: Map<String, Value> = r
        .file
        .digests
        .iter()
        .map(|(a, h)| (a.name().to_string(), json!(h)))
        .collect();
    o.insert("file".into(), Value::Object(file));
    if let Some(Err(e)) = &r.content {
        o.insert("content".into(), json!({ "error": e }));
    }
    if let Some(Ok(c)) = &r.content {
        let m = &c.manifest;
        let mut co = Map::new();
        co.insert("format".into(), json!(c.format.map(Format::name)));
        co.insert("virtual_size".into(), json!(m.virtual_size));
        co.insert("sha256".into(), json!(c.sha256));
        co.insert("root".into(), json!(c.root));
        co.insert("chunk_size".into(), json!(m.chunk_size));
        co.insert("chunks".into(), json!(m.chunks.len()));
        co.insert("zero_chunks".into(), json!(m.zero_chunks()));
        if let Some(f) = &c.manifest_file {
            co.insert("manifest_file".into(), json!(f.to_string_lossy()));
        }
        o.insert("content".into(), Value::Object(co));
    }
    Value::Object(o)
}

/// A file name as GNU coreutils prints it in a sums line: with `\\`, `\n`
/// and `\r` escaped, and whether the line needs the leading `\`.
fn gnu_name(path: &Path) -> (bool, Vec<u8>) {
    let raw = path.as_os_str().as_bytes();
    let mut escaped = false;
    let mut v = Vec::with_capacity(raw.len());
    for &b in raw {
        match b {
            b'\\' => v.extend_from_slice(b"\\\\"),
            b'\n' => v.extend_from_slice(b"\\n"),
            b'\r' => v.extend_from_slice(b"\\r"),
            _ => {
                v.push(b);
                continue;
            }
        }
        escaped = true;
    }
    (escaped, v)
}

fn write_sum_line(out: &mut dyn Write, prefix: &str, hex: &str, path: &Path) -> io::Result<()> {
    let (escaped, name) = gnu_name(path);
    out.write_all(prefix.as_bytes())?;
    if escaped {
        out.write_all(b"\\")?;
    }
    out.write_all(hex.as_bytes())?;
    out.write_all(b"  ")?;
    out.write_all(&name)?;
    out.write_all(b"\n")
}

fn write_sums(out: &mut dyn Write, reports: &[&Report], algos: &[Algo]) -> io::Result<()> {
    for algo in algos {
        writeln!(out, "# {}", algo.name())?;
        for r in reports {
            if let Some(hex) = r.file.digests.get(algo) {
                write_sum_line(out, "", hex, &r.path)?;
            }
        }
    }
    // The content digests are comments: they are not digests of the files.
    if reports.iter().any(|r| matches!(r.content, Some(Ok(_)))) {
        writeln!(
            out,
            "# qvet content (guest view; not digests of these files)"
        )?;
        for r in reports {
            if let Some(Ok(c)) = &r.content {
                if let Some(sha) = &c.sha256 {
                    write_sum_line(out, "# content-sha256 ", sha, &r.path)?;
                }
                write_sum_line(out, "# content-root ", &c.root, &r.path)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn gnu_escaping() {
        assert_eq!(gnu_name(Path::new("a b")), (false, b"a b".to_vec()));
        assert_eq!(
            gnu_name(Path::new("we\\ird\nna\rme")),
            (true, b"we\\\\ird\\nna\\rme".to_vec())
        );
    }

    #[test]
    fn algorithm_selection() {
        assert_eq!(algorithms(&[]), DEFAULT_ALGOS.to_vec());
        assert_eq!(algorithms(&[AlgoChoice::All]), Algo::ALL.to_vec());
        assert!(algorithms(&[AlgoChoice::None]).is_empty());
        assert_eq!(
            algorithms(&[
                AlgoChoice::One(Algo::Sha512),
                AlgoChoice::One(Algo::Md5),
                AlgoChoice::One(Algo::Sha512)
            ]),
            vec![Algo::Md5, Algo::Sha512]
        );
        assert_eq!(
            parse_algo("SHA-256").unwrap(),
            AlgoChoice::One(Algo::Sha256)
        );
        assert!(parse_algo("crc32").is_err());
    }
}
