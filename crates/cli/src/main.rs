//! `qvet`: vet virtual-machine disk images, offline and read-only.
//!
//! This binary is thin: argument parsing, turning options into library calls,
//! rendering (human or JSON) and exit codes. Format logic lives in the
//! library crates.

mod audit_cmd;
mod catalog_cmd;
mod check;
mod compact_cmd;
mod diff_cmd;
mod digest_cmd;
mod diskbar;
mod docs_cmd;
mod fleet_cmd;
mod fs_cmd;
mod guest_cmd;
mod info;
mod inspect_cmd;
mod keys;
mod map;
mod picture;
mod report_html;
mod scan_cmd;
mod verify_cmd;

use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use qvet_image::{Disk, Format, OpenOptions};

/// Vet VM disk images (qcow2, raw): what they are, what they contain.
#[derive(Debug, Parser)]
#[command(name = "qvet", version, about, long_about = None)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Is it a repack, and is it dangerous? One verdict per image (genuine,
    /// repack-container, modified, suspicious, tampered, unknown) with every
    /// finding's evidence and the coverage.
    ///
    /// Exit codes: 0 no finding at or above --fail-on (default high),
    /// 2 at least one, 1 error.
    Audit(audit_cmd::AuditArgs),
    /// The audit as one self-contained HTML page (`-o FILE.html`): verdict,
    /// a picture of the disk with every finding placed on it, the findings
    /// table, the inventory and the changes against a reference.
    ///
    /// Exit codes as for audit.
    Report(audit_cmd::ReportArgs),
    /// Which operating system each partition holds (Linux distributions,
    /// IOS-XE, NX-OS, EOS, VyOS, FortiOS, RouterOS, Junos), with product,
    /// version and the evidence used.
    Inspect(inspect_cmd::InspectArgs),
    /// Every header fact, backing chain, snapshots (like `qemu-img info`).
    Info(InfoArgs),
    /// Guest allocation map (like `qemu-img map`).
    Map(MapArgs),
    /// Write the guest view as a raw image (like `qemu-img convert -O raw`).
    Convert(ConvertArgs),
    /// A new, smaller qcow2 holding what the guest needs: drops unallocated,
    /// zero and leaked clusters and filesystem free space (ext, FAT, swap),
    /// writes atomically and proves the result against the input.
    Compact(compact_cmd::CompactArgs),
    /// Structural integrity (like `qemu-img check`, with more detail); never writes.
    ///
    /// The opening options are accepted as by every command; check reads only
    /// the named file's metadata, so --allow-backing and --allow-data-file have
    /// no effect.
    ///
    /// Exit codes are qemu-img's: 0 clean, 1 check failed, 2 corruptions,
    /// 3 leaks only, 63 format cannot be checked.
    Check(CheckArgs),
    /// File digests (md5, sha1, sha256, sha512, blake3) from one read, and the
    /// guest-content digest (sha256 of the guest view, layout-independent root).
    Digest(digest_cmd::DigestArgs),
    /// The partition table (MBR/GPT) and the filesystem in each partition.
    Fs(fs_cmd::FsArgs),
    /// List files inside the guest: `IMG:/path` or `IMG:pN:/path`.
    Ls(guest_cmd::LsArgs),
    /// A guest file's bytes to stdout.
    Cat(guest_cmd::CatArgs),
    /// A guest file's metadata (symlinks not followed).
    Stat(guest_cmd::StatArgs),
    /// Find guest files by name, type, permission bits or modification time.
    Find(guest_cmd::FindArgs),
    /// What changed between two guest disks: files added, removed, modified or
    /// changed in metadata, per partition, plus partition table, boot sector
    /// and gap changes.
    ///
    /// Exit codes are `qemu-img compare`'s: 0 identical, 1 different, 2 error.
    Diff(diff_cmd::DiffArgs),
    /// Is it the vendor's original? Verdict per image: genuine, content-identical,
    /// mismatch or unknown, with the evidence; checks GNS3 `.md5sum` sidecars.
    ///
    /// Exit codes: 0 all genuine or content-identical, 2 any mismatch,
    /// 1 any error (and no mismatch), 3 unknowns (no mismatch, no error).
    Verify(verify_cmd::VerifyArgs),
    /// Find and verify every image under directories (EVE-NG, GNS3, libvirt
    /// pools, anything), in parallel, with results cached by host, path,
    /// size, mtime and inode. Exit codes as for verify.
    Scan(scan_cmd::ScanArgs),
    /// Every image the catalog knows across hosts: verdict, where each copy
    /// lives (host:path), copies under other names, overlays and their
    /// backing files, copies not seen for N days.
    Fleet(fleet_cmd::FleetArgs),
    /// The catalog of known-good references: built-in GNS3 registry data plus
    /// your own (add, import, export, migrate, list, show, remove), in an
    /// SQLite file or a shared PostgreSQL database.
    Catalog(catalog_cmd::CatalogArgs),
    /// A shell completion script (bash, zsh, fish) on stdout.
    Completions(docs_cmd::CompletionsArgs),
    /// A man page (roff) on stdout: qvet(1), or qvet-SUBCOMMAND(1).
    Man(docs_cmd::ManArgs),
}

/// `check` takes every command's opening options so one set of options
/// serves every command in a script; it reads only the named file's
/// metadata, so only `-f` has an effect.
#[derive(Debug, Args)]
struct CheckArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    output: OutputFormat,
    /// Opening options (check reads only this file: only -f has an effect).
    #[command(flatten)]
    open: OpenArgs,
    /// The image file (only this file is opened).
    image: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum OutputFormat {
    Human,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ImageFormat {
    Qcow2,
    Raw,
}

/// How images are opened: their format and which files named inside them
/// may be opened (none by default).
#[derive(Debug, Args)]
pub(crate) struct OpenArgs {
    /// Image format; probed from the file when not given.
    #[arg(short = 'f', long = "format", value_enum)]
    format: Option<ImageFormat>,
    /// Open backing files named inside the image (never done by default).
    #[arg(long)]
    allow_backing: bool,
    /// Open an external data file named inside the image (never done by default).
    #[arg(long)]
    allow_data_file: bool,
    /// Passphrase of encrypted images, read from FILE (`-`: standard input);
    /// the bytes are used exactly. Also QVET_PASSPHRASE_FILE.
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,
    /// qemu's secret syntax for the passphrase: `secret,id=ID,file=FILE`.
    #[arg(long = "object", value_name = "secret,id=ID,file=FILE")]
    object: Vec<String>,
    /// Try only this LUKS key slot (0-7) instead of every active one.
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..8))]
    key_slot: Option<u8>,
    /// The key, read once (standard input cannot be read twice).
    #[arg(skip)]
    key: std::sync::OnceLock<Option<qvet_image::Key>>,
}

impl OpenArgs {
    /// The library's open policy for these options.
    /// The passphrase these options name, read once.
    pub(crate) fn key(&self) -> Result<Option<qvet_image::Key>> {
        Ok(match self.key.get() {
            Some(k) => k.clone(),
            None => {
                let k = keys::load(self.key_file.as_deref(), &self.object, self.key_slot)?;
                self.key.get_or_init(|| k).clone()
            }
        })
    }

    pub(crate) fn options(&self, snapshot: Option<&str>) -> Result<OpenOptions> {
        let key = self.key()?;
        Ok(OpenOptions {
            format: self.format.map(|f| match f {
                ImageFormat::Qcow2 => Format::Qcow2,
                ImageFormat::Raw => Format::Raw,
            }),
            allow_backing: self.allow_backing,
            allow_data_file: self.allow_data_file,
            snapshot: snapshot.map(str::to_string),
            key,
            ..OpenOptions::default()
        })
    }

    /// Opens the image at `path` under these options.
    pub(crate) fn open(&self, path: &std::path::Path, snapshot: Option<&str>) -> Result<Disk> {
        Ok(Disk::open(path, &self.options(snapshot)?)?)
    }
}

#[derive(Debug, Args)]
pub(crate) struct ImageArgs {
    #[command(flatten)]
    open: OpenArgs,
    /// The image file.
    image: PathBuf,
}

#[derive(Debug, Args)]
struct InfoArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    output: OutputFormat,
    /// Describe every image of the backing chain (needs --allow-backing to go below the top).
    #[arg(long)]
    backing_chain: bool,
    #[command(flatten)]
    image: ImageArgs,
}

#[derive(Debug, Args)]
struct MapArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    output: OutputFormat,
    /// Map an internal snapshot (ID or name) instead of the current state.
    #[arg(short = 's', long)]
    snapshot: Option<String>,
    #[command(flatten)]
    image: ImageArgs,
}

#[derive(Debug, Args)]
struct ConvertArgs {
    /// Output format (only `raw`).
    #[arg(short = 'O', long = "target-format", default_value = "raw")]
    target_format: String,
    /// Convert an internal snapshot (ID or name) instead of the current state.
    #[arg(short = 's', long)]
    snapshot: Option<String>,
    /// Replace OUT if it exists.
    #[arg(long)]
    overwrite: bool,
    /// No progress bar.
    #[arg(short = 'q', long)]
    quiet: bool,
    #[command(flatten)]
    image: ImageArgs,
    /// Output file, or `-` for stdout.
    out: PathBuf,
}

pub(crate) fn open(args: &ImageArgs, snapshot: Option<&str>) -> Result<Disk> {
    args.open.open(&args.image, snapshot)
}

fn run(cli: Cli) -> Result<ExitCode> {
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    match cli.command {
        Command::Info(a) => {
            let disk = open(&a.image, None)?;
            match a.output {
                OutputFormat::Json => info::write_json(&mut out, &disk, a.backing_chain)?,
                OutputFormat::Human => info::write_human(&mut out, &disk, a.backing_chain)?,
            }
        }
        Command::Map(a) => {
            let disk = open(&a.image, a.snapshot.as_deref())?;
            match a.output {
                OutputFormat::Json => map::write_json(&mut out, &disk)?,
                OutputFormat::Human => map::write_human(&mut out, &disk)?,
            }
        }
        Command::Check(a) => return run_check(&a, &mut out),
        Command::Compact(a) => return compact_cmd::run(&a, &mut out),
        Command::Digest(a) => return digest_cmd::run(&a, &mut out),
        Command::Fs(a) => return fs_cmd::run(&a, &mut out),
        Command::Ls(a) => return guest_cmd::ls(&a, &mut out),
        Command::Cat(a) => return guest_cmd::cat(&a, &mut out),
        Command::Stat(a) => return guest_cmd::stat(&a, &mut out),
        Command::Find(a) => return guest_cmd::find(&a, &mut out),
        Command::Audit(a) => return audit_cmd::run(&a, &mut out),
        Command::Report(a) => return audit_cmd::run_report(&a, &mut out),
        Command::Inspect(a) => return inspect_cmd::run(&a, &mut out),
        Command::Diff(a) => return diff_cmd::run(&a, &mut out),
        Command::Verify(a) => return verify_cmd::run(&a, &mut out),
        Command::Scan(a) => return scan_cmd::run(&a, &mut out),
        Command::Fleet(a) => return fleet_cmd::run(&a, &mut out),
        Command::Catalog(a) => return catalog_cmd::run(&a, &mut out),
        Command::Completions(a) => docs_cmd::completions(&a, &mut out)?,
        Command::Man(a) => docs_cmd::man(&a, &mut out)?,
        Command::Convert(a) => {
            if a.target_format != "raw" {
                bail!(
                    "convert writes raw images only (-O raw), not '{}'",
                    a.target_format
                );
            }
            let disk = open(&a.image, a.snapshot.as_deref())?;
            let bar = progress_bar(disk.size(), a.quiet);
            let report = |done: u64| bar.set_position(done);
            let result = if a.out.as_os_str() == "-" {
                if io::stdout().is_terminal() {
                    bail!("refusing to write a disk image to a terminal; redirect stdout or name an output file");
                }
                qvet_write::convert_to_raw(&disk, qvet_write::Output::Stream(&mut out), &report)
            } else {
                qvet_write::convert_to_raw(
                    &disk,
                    qvet_write::Output::File {
                        path: &a.out,
                        overwrite: a.overwrite,
                    },
                    &report,
                )
            };
            bar.finish_and_clear();
            result.with_context(|| format!("converting '{}'", a.image.image.display()))?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Runs `check`; its exit code follows qemu-img's.
fn run_check(a: &CheckArgs, out: &mut dyn Write) -> Result<ExitCode> {
    use qvet_format::probe::{probe, Probed};
    use qvet_image::ByteSource;
    let src = qvet_image::FileSource::open(&a.image)
        .with_context(|| format!("could not open '{}'", a.image.display()))?;
    let mut first = [0u8; qvet_format::probe::PROBE_LEN];
    src.read_zero_padded(0, &mut first)?;
    let kind = match a.open.format {
        Some(ImageFormat::Raw) => Probed::Raw,
        Some(ImageFormat::Qcow2) => match probe(&first) {
            Probed::Raw | Probed::Foreign(_) => {
                bail!("'{}' is not a qcow2 image", a.image.display())
            }
            // Forced qcow2 on a v1 file: qemu-img fails to open it (exit 1).
            Probed::QcowV1 => bail!(
                "'{}': unsupported qcow2 version 1 (legacy qcow)",
                a.image.display()
            ),
            p => p,
        },
        None => probe(&first),
    };
    match kind {
        Probed::Raw | Probed::QcowV1 => {
            let what = if kind == Probed::Raw {
                "raw"
            } else {
                "legacy qcow (v1)"
            };
            let _ = writeln!(io::stderr(), "qvet: {what} images do not support checks");
            return Ok(ExitCode::from(63));
        }
        Probed::QcowUnknownVersion(v) => {
            bail!("'{}': unsupported qcow2 version {v}", a.image.display())
        }
        // Checked by qemu-img, not by qvet: "not supported" as qemu-img
        // says it for formats without a check.
        Probed::Foreign(name) => {
            let _ = writeln!(
                io::stderr(),
                "qvet: '{}' is a {name} image; qvet checks qcow2 images only",
                a.image.display()
            );
            return Ok(ExitCode::from(63));
        }
        Probed::Qcow2 => {}
    }
    let report = qvet_audit::check(&src, &a.image)?;
    let filename = a.image.display().to_string();
    match a.output {
        OutputFormat::Json => {
            let v = check::to_json(&report, &filename, std::slice::from_ref(&filename));
            serde_json::to_writer_pretty(&mut *out, &v)?;
            writeln!(out)?;
        }
        OutputFormat::Human => check::write_human(out, &report, &a.image)?,
    }
    out.flush()?;
    if let Some(why) = &report.aborted {
        let _ = writeln!(io::stderr(), "qvet: check failed: {why}");
    }
    Ok(ExitCode::from(check::exit_code(&report)))
}

/// A progress bar on stderr, drawn only when stderr is a terminal.
fn progress_bar(len: u64, quiet: bool) -> indicatif::ProgressBar {
    if quiet || !io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(len),
        indicatif::ProgressDrawTarget::stderr(),
    );
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
    ) {
        bar.set_style(style);
    }
    bar
}

/// qvet's own JSON outputs name their format and its version in a `schema`
/// field (`qvet-audit-v1` …), first in each top-level object (or each
/// object of a top-level array); `docs/schema/<command>.json` describes
/// each. qemu-compatible outputs (`info`, `map`, `check`) keep qemu's form.
pub(crate) fn with_schema(command: &str, v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    let tag = |v: Value| match v {
        Value::Object(m) => {
            let mut out = serde_json::Map::new();
            out.insert("schema".into(), Value::String(format!("qvet-{command}-v1")));
            out.extend(m.into_iter().filter(|(k, _)| k != "schema"));
            Value::Object(out)
        }
        other => other,
    };
    match v {
        Value::Array(items) => Value::Array(items.into_iter().map(tag).collect()),
        other => tag(other),
    }
}

/// A spinner on stderr (indicatif `template`: elapsed time, a message or a
/// byte count) for work whose total is not known in advance; drawn only
/// when stderr is a terminal.
pub(crate) fn progress_spinner(quiet: bool, template: &str) -> indicatif::ProgressBar {
    if quiet || !io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar =
        indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar
}

/// `find(1)` spells its tests with one dash (`-name`, `-type`, `-perm`,
/// `-newer-than` as the issue and muscle memory write them); after the
/// `find` subcommand those exact words are read as the long options.
fn find_style_args(args: impl IntoIterator<Item = std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    // The subcommand is the first argument after the program name that is
    // not an option.
    let mut subcommand_seen = false;
    let mut in_find = false;
    args.into_iter()
        .enumerate()
        .map(|(i, a)| {
            if i > 0 && !subcommand_seen && !a.to_string_lossy().starts_with('-') {
                subcommand_seen = true;
                in_find = a == "find";
                return a;
            }
            match a.to_str() {
                Some(t @ ("-name" | "-type" | "-perm" | "-newer-than")) if in_find => {
                    std::ffi::OsString::from(format!("-{t}"))
                }
                _ => a,
            }
        })
        .collect()
}

/// Whether `err` is stdout closed early (`qvet … | head`): not an error to report.
pub(crate) fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
            || e.downcast_ref::<qvet_write::WriteError>()
                .is_some_and(qvet_write::WriteError::is_broken_pipe)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse_from(find_style_args(std::env::args_os()));
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            if is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            let _ = writeln!(io::stderr(), "qvet: {err:#}");
            ExitCode::FAILURE
        }
    }
}
