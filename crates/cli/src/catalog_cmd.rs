//! `qvet catalog add|import|export|migrate|list|show|remove`: the known-good
//! references, in an SQLite file or a shared PostgreSQL database.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use qvet_catalog::import::{import_path, Format};
use qvet_catalog::store::Added;
use qvet_catalog::{builtin, Catalog, CatalogError, Entry, EntryId, Location, Store};
use serde_json::{json, Value};

use crate::OutputFormat;

/// Manage the catalog of known-good references.
#[derive(Debug, Args)]
pub struct CatalogArgs {
    /// User catalog: an SQLite file or postgres://user@host/db [default:
    /// $QVET_CATALOG, else $XDG_DATA_HOME/qvet/catalog.sqlite, else
    /// ~/.local/share/qvet/catalog.sqlite].
    #[arg(long, global = true, value_name = "PATH|URL")]
    pub catalog: Option<PathBuf>,
    #[command(subcommand)]
    pub command: CatalogCommand,
}

/// Catalog subcommands.
#[derive(Debug, Subcommand)]
pub enum CatalogCommand {
    /// Record a trusted image of your own: md5, sha1, sha256, sha512, the
    /// guest-content digest with its chunk manifest, and a file-level
    /// baseline (every file's path, type, mode, owner, size, sha256, link
    /// target) that `audit` compares other images with.
    Add {
        /// Label for the entry (product, version, where it came from).
        #[arg(long)]
        label: String,
        /// Version text.
        #[arg(long = "version", value_name = "TEXT")]
        image_version: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value = "human")]
        output: OutputFormat,
        /// No progress bar.
        #[arg(short = 'q', long)]
        quiet: bool,
        /// Opening options, accepted as by every command; they have no effect:
        /// the entry records the file itself (format probed, nothing else opened).
        #[command(flatten)]
        open: crate::OpenArgs,
        /// The image (opened read-only; backing files are never opened).
        image: PathBuf,
    },
    /// Import published digests: a .gns3a file or a gns3-registry checkout,
    /// md5sum/sha*sum files (GNU or BSD style), Cisco download-page text,
    /// OpenStack Glance image JSON.
    Import {
        /// Input format; detected when not given.
        #[arg(long, value_enum)]
        format: Option<ImportFormat>,
        /// Output format.
        #[arg(long, value_enum, default_value = "human")]
        output: OutputFormat,
        /// The file, or a directory of .gns3a files / a gns3-registry checkout.
        path: PathBuf,
    },
    /// Write an entry's file-level baseline as JSON (schema
    /// qvet-baseline-v1), to share an original's baseline without the image;
    /// `catalog import FILE` reads it back.
    ExportBaseline {
        /// Entry ID (a user catalog entry recorded with `catalog add`).
        id: String,
        /// Output file (written atomically); standard output when absent.
        #[arg(short = 'o', long = "output-file", value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// Write the whole user catalog (entries with their baselines, scan
    /// results, audit verdicts) as JSON lines; `catalog import FILE` merges
    /// it into another catalog, SQLite or PostgreSQL.
    Export {
        /// Output file (written atomically); standard output for `-`.
        file: PathBuf,
    },
    /// Create the catalog or bring its schema to this qvet's version (also
    /// done on first use by any command that writes).
    Migrate,
    /// List the user catalog's entries (and with --all the built-in ones).
    List {
        /// Output format.
        #[arg(long, value_enum, default_value = "human")]
        output: OutputFormat,
        /// Also list the built-in GNS3 registry entries.
        #[arg(long)]
        all: bool,
    },
    /// Show one entry: a number (user catalog) or gns3:N (built-in).
    Show {
        /// Output format.
        #[arg(long, value_enum, default_value = "human")]
        output: OutputFormat,
        /// Entry ID.
        id: String,
    },
    /// Remove a user catalog entry.
    Remove {
        /// Entry ID.
        id: String,
    },
}

/// `--format` of `catalog import`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ImportFormat {
    /// GNS3 appliance files (.gns3a) or a gns3-registry checkout.
    Gns3a,
    /// md5sum / sha1sum / sha256sum / sha512sum output, GNU or BSD style.
    Sums,
    /// Cisco download-page text (MD5 / SHA512 lines).
    Cisco,
    /// OpenStack Glance image JSON.
    Glance,
}

impl From<ImportFormat> for Format {
    fn from(f: ImportFormat) -> Self {
        match f {
            ImportFormat::Gns3a => Format::Gns3a,
            ImportFormat::Sums => Format::Sums,
            ImportFormat::Cisco => Format::Cisco,
            ImportFormat::Glance => Format::Glance,
        }
    }
}

/// Takes the file-level baseline of `image` and stores it for entry `id`;
/// returns the number of files recorded.
fn record_baseline(
    store: &mut Store,
    id: i64,
    image: &Path,
    reference: &qvet_catalog::Reference,
) -> Result<usize> {
    let disk = std::sync::Arc::new(
        qvet_image::Disk::open(image, &qvet_image::OpenOptions::default())
            .with_context(|| format!("opening '{}'", image.display()))?,
    );
    let mut b = qvet_audit::baseline::take(&disk, &reference.label)
        .with_context(|| format!("taking the baseline of '{}'", image.display()))?;
    b.filename.clone_from(&reference.filename);
    b.size = reference.size;
    b.digests = reference
        .digests
        .iter()
        .map(|(a, h)| (a.name().to_string(), h.clone()))
        .collect();
    b.content_root = reference.content.as_ref().map(|c| c.root.clone());
    store.put_baseline(id, &b.to_json().to_string())?;
    Ok(b.partitions.iter().map(|p| p.files.len()).sum())
}

/// A baseline JSON file, or `None` when `path` is something else.
fn read_baseline_file(path: &Path) -> Result<Option<qvet_audit::baseline::Baseline>> {
    if !path.is_file()
        || std::fs::metadata(path).map_or(true, |m| m.len() > qvet_audit::baseline::MAX_JSON)
    {
        return Ok(None);
    }
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(None);
    };
    let Ok(v) = serde_json::from_str::<Value>(&text) else {
        return Ok(None);
    };
    if v.get("schema").and_then(Value::as_str) != Some(qvet_audit::baseline::SCHEMA) {
        return Ok(None);
    }
    Ok(Some(
        qvet_audit::baseline::Baseline::from_json(&v)
            .with_context(|| format!("in {}", path.display()))?,
    ))
}

/// Whether `path` starts like a `catalog export` file.
fn is_export_file(path: &Path) -> bool {
    use std::io::{BufRead, Read};
    let Ok(f) = std::fs::File::open(path) else {
        return false;
    };
    let mut first = Vec::new();
    if std::io::BufReader::new(f.take(4096))
        .read_until(b'\n', &mut first)
        .is_err()
    {
        return false;
    }
    serde_json::from_slice::<Value>(&first)
        .ok()
        .and_then(|v| v.get("schema").and_then(Value::as_str).map(str::to_string))
        .is_some_and(|s| s == qvet_catalog::export::SCHEMA)
}

/// `catalog import FILE` of a `catalog export` file: merges it.
fn import_export_file(
    path: &Location,
    input: &Path,
    output: OutputFormat,
    out: &mut dyn Write,
) -> Result<ExitCode> {
    let f = std::fs::File::open(input)
        .with_context(|| format!("could not open '{}'", input.display()))?;
    let mut store = Store::open_or_create(path)?;
    let n = qvet_catalog::export::import(
        &mut store,
        &mut std::io::BufReader::new(f),
        &input.display().to_string(),
    )?;
    match output {
        OutputFormat::Json => write_json(
            out,
            &json!({"catalog": path.to_string(), "format": "qvet-catalog-export",
                    "entries_added": n.entries, "entries_present": n.existing,
                    "baselines": n.baselines, "scans": n.scans, "audits": n.audits}),
        )?,
        OutputFormat::Human => writeln!(
            out,
            "merged {} into {path}: {} new entries, {} already present, {} baselines, {} scan results, {} audit verdicts",
            input.display(),
            n.entries,
            n.existing,
            n.baselines,
            n.scans,
            n.audits
        )?,
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Adds an entry for an imported baseline (its digests, when it records
/// them) and stores the baseline with it.
fn import_baseline(
    store: &mut Store,
    b: &qvet_audit::baseline::Baseline,
    from: &Path,
) -> Result<i64> {
    let reference = qvet_catalog::Reference {
        label: b.label.clone(),
        filename: b.filename.clone(),
        size: b.size,
        digests: b
            .digests
            .iter()
            .filter_map(|(a, h)| Some((qvet_catalog::Algo::from_name(a)?, h.clone())))
            .collect(),
        imported_from: Some(from.display().to_string()),
        ..qvet_catalog::Reference::default()
    };
    let added = store.add("baseline", std::slice::from_ref(&reference))?;
    let id = match added.first() {
        Some(Added::New(id) | Added::Existing(id)) => *id,
        None => bail!("nothing added"),
    };
    store.put_baseline(id, &b.to_json().to_string())?;
    Ok(id)
}

/// The user catalog: `--catalog`, else `$QVET_CATALOG`, else the default
/// SQLite file.
pub fn catalog_path(opt: Option<&Path>) -> Result<Location> {
    if let Some(p) = opt {
        return Ok(Location::from(p));
    }
    if let Some(v) = std::env::var_os("QVET_CATALOG").filter(|v| !v.is_empty()) {
        return Ok(Location::parse(&v));
    }
    Ok(Location::Sqlite(qvet_catalog::default_path()?))
}

/// Everything trusted, for reading commands: never creates the database.
pub fn load_catalog(opt: Option<&Path>) -> Result<Catalog> {
    match catalog_path(opt) {
        Ok(p) => Ok(Catalog::open(&p)?),
        // No default location and none given: the built-in data still works.
        Err(e) if opt.is_none() && is_no_default(&e) => Ok(Catalog::load(None)?),
        Err(e) => Err(e),
    }
}

fn is_no_default(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<CatalogError>(),
        Some(CatalogError::NoDefaultPath)
    )
}

fn digests_json(e: &Entry) -> Value {
    Value::Object(
        e.reference
            .digests
            .iter()
            .map(|(a, h)| (a.name().to_string(), Value::String(h.clone())))
            .collect(),
    )
}

/// An entry with everything but the manifest bytes.
pub fn entry_json(e: &Entry) -> Value {
    let r = &e.reference;
    json!({
        "id": e.id.to_string(),
        "source": e.source,
        "label": r.label,
        "filename": r.filename,
        "version": r.version,
        "size": r.size,
        "superseded": r.superseded,
        "imported_from": r.imported_from,
        "digests": digests_json(e),
        "content": r.content.as_ref().map(|c| json!({
            "root": c.root,
            "sha256": c.sha256,
            "virtual_size": c.virtual_size,
            "manifest_bytes": c.manifest.as_ref().map(Vec::len),
        })),
    })
}

fn builtin_json() -> Value {
    let s = builtin::stats();
    json!({
        "source": qvet_catalog::source::GNS3_BUILTIN,
        "commit": builtin::REGISTRY_COMMIT,
        "date": builtin::REGISTRY_DATE,
        "current": s.current,
        "superseded": s.superseded,
    })
}

fn write_json(out: &mut dyn Write, v: &Value) -> Result<()> {
    serde_json::to_writer_pretty(&mut *out, &crate::with_schema("catalog", v.clone()))?;
    writeln!(out)?;
    Ok(())
}

/// Runs a `catalog` subcommand.
pub fn run(args: &CatalogArgs, out: &mut dyn Write) -> Result<ExitCode> {
    let path_opt = args.catalog.as_deref();
    match &args.command {
        CatalogCommand::Add {
            label,
            image_version,
            output,
            quiet,
            image,
            open: _,
        } => {
            let path = catalog_path(path_opt)?;
            let size = std::fs::metadata(image)
                .with_context(|| format!("could not open '{}'", image.display()))?
                .len();
            let bar = crate::progress_bar(size, *quiet);
            let result = qvet_catalog::verify::reference_for_image(
                image,
                label,
                image_version.as_deref(),
                &|done, total| {
                    bar.set_length(total);
                    bar.set_position(done);
                },
            )
            .with_context(|| format!("hashing '{}'", image.display()));
            bar.finish_and_clear();
            let (reference, notes) = result?;
            for n in &notes {
                let _ = writeln!(std::io::stderr(), "qvet: note: {n}");
            }
            let mut store = Store::open_or_create(&path)?;
            let added = store.add(qvet_catalog::source::USER, std::slice::from_ref(&reference))?;
            let (id, new) = match added.first() {
                Some(Added::New(id)) => (*id, true),
                Some(Added::Existing(id)) => (*id, false),
                None => bail!("nothing added"),
            };
            let entry = store
                .entry(id)?
                .with_context(|| format!("entry {id} vanished"))?;
            let files = record_baseline(&mut store, id, image, &reference)?;
            match output {
                OutputFormat::Json => {
                    let mut v = entry_json(&entry);
                    if let Some(o) = v.as_object_mut() {
                        o.insert("baseline_files".into(), json!(files));
                        o.insert("new".into(), Value::Bool(new));
                        o.insert("catalog".into(), json!(path.to_string()));
                    }
                    write_json(out, &v)?;
                }
                OutputFormat::Human => {
                    let verb = if new { "added" } else { "already present as" };
                    writeln!(out, "{verb} entry {id} in {path}")?;
                    write_entry_human(out, &entry)?;
                    writeln!(out, "  baseline: {files} files recorded")?;
                }
            }
        }
        CatalogCommand::Import {
            format,
            output,
            path: input,
        } => {
            let path = catalog_path(path_opt)?;
            if format.is_none() && is_export_file(input) {
                return import_export_file(&path, input, *output, out);
            }
            if format.is_none() {
                if let Some(b) = read_baseline_file(input)? {
                    let mut store = Store::open_or_create(&path)?;
                    let id = import_baseline(&mut store, &b, input)?;
                    let files: usize = b.partitions.iter().map(|p| p.files.len()).sum();
                    match output {
                        OutputFormat::Json => write_json(
                            out,
                            &json!({"catalog": path.to_string(), "format": "baseline",
                                    "entry": id, "baseline_files": files}),
                        )?,
                        OutputFormat::Human => writeln!(
                            out,
                            "imported baseline '{}' as entry {id} ({files} files) into {}",
                            b.label, path
                        )?,
                    }
                    return Ok(ExitCode::SUCCESS);
                }
            }
            let imported = import_path(input, format.map(Format::from))?;
            let mut store = Store::open_or_create(&path)?;
            let added = store.add(imported.format.name(), &imported.references)?;
            let new: Vec<i64> = added
                .iter()
                .filter_map(|a| match a {
                    Added::New(id) => Some(*id),
                    Added::Existing(_) => None,
                })
                .collect();
            let existing = added.len() - new.len();
            match output {
                OutputFormat::Json => write_json(
                    out,
                    &json!({
                        "catalog": path.to_string(),
                        "format": imported.format.name(),
                        "files": imported.files,
                        "entries": added.len(),
                        "added": new,
                        "already_present": existing,
                        "warnings": imported.warnings,
                    }),
                )?,
                OutputFormat::Human => {
                    for w in &imported.warnings {
                        writeln!(out, "warning: {w}")?;
                    }
                    writeln!(
                        out,
                        "imported {} entries as {} from {} file(s): {} new, {existing} already present ({})",
                        added.len(),
                        imported.format.name(),
                        imported.files,
                        new.len(),
                        path
                    )?;
                }
            }
        }
        CatalogCommand::ExportBaseline { id, file } => {
            let path = catalog_path(path_opt)?;
            let Some(EntryId::User(n)) = EntryId::parse(id) else {
                bail!("'{id}' is not a user catalog entry ID (baselines are recorded by `catalog add`)");
            };
            let store =
                Store::open_read_only(&path)?.with_context(|| format!("no catalog at {path}"))?;
            let json = store
                .baseline(n)?
                .with_context(|| format!("entry {n} has no baseline"))?;
            let v: Value =
                serde_json::from_str(&json).context("the stored baseline is not JSON")?;
            let mut text = serde_json::to_string_pretty(&v)?;
            text.push('\n');
            match file {
                Some(f) => qvet_write::write_file_atomic(f, text.as_bytes())
                    .with_context(|| format!("writing {}", f.display()))?,
                None => out.write_all(text.as_bytes())?,
            }
        }
        CatalogCommand::Export { file } => {
            let path = catalog_path(path_opt)?;
            let store =
                Store::open_read_only(&path)?.with_context(|| format!("no catalog at {path}"))?;
            let mut buf = Vec::new();
            let n = qvet_catalog::export::export(&store, &mut buf)?;
            if file.as_os_str() == "-" {
                out.write_all(&buf)?;
            } else {
                qvet_write::write_file_atomic(file, &buf)
                    .with_context(|| format!("writing {}", file.display()))?;
                writeln!(
                    out,
                    "exported {} entries ({} baselines), {} scan results, {} audit verdicts from {path} to {}",
                    n.entries,
                    n.baselines,
                    n.scans,
                    n.audits,
                    file.display()
                )?;
            }
        }
        CatalogCommand::Migrate => {
            let path = catalog_path(path_opt)?;
            let (store, before) = Store::migrate(&path)?;
            match before {
                None => writeln!(
                    out,
                    "created catalog {path} at schema version {}",
                    store.version()
                )?,
                Some(v) if v == store.version() => writeln!(
                    out,
                    "catalog {path} is at schema version {v}; nothing to do"
                )?,
                Some(v) => writeln!(
                    out,
                    "migrated catalog {path} from schema version {v} to {}",
                    store.version()
                )?,
            }
        }
        CatalogCommand::List { output, all } => {
            let path = catalog_path(path_opt).ok();
            let store = match &path {
                Some(p) => Store::open_read_only(p)?,
                None => None,
            };
            let user = match &store {
                Some(s) => s.entries()?,
                None => Vec::new(),
            };
            let builtin_entries: &[Entry] = if *all { builtin::entries() } else { &[] };
            match output {
                OutputFormat::Json => {
                    let entries: Vec<Value> =
                        user.iter().chain(builtin_entries).map(entry_json).collect();
                    write_json(
                        out,
                        &json!({
                            "catalog": path.as_ref().map(ToString::to_string),
                            "catalog_exists": store.is_some(),
                            "builtin": builtin_json(),
                            "entries": entries,
                        }),
                    )?;
                }
                OutputFormat::Human => {
                    writeln!(
                        out,
                        "{:<10} {:<13} {:<32} {:<44} {:>12}  DIGESTS",
                        "ID", "SOURCE", "LABEL", "FILENAME (VERSION)", "SIZE"
                    )?;
                    for e in user.iter().chain(builtin_entries) {
                        write_entry_row(out, e)?;
                    }
                    match (&path, &store) {
                        (Some(p), Some(_)) => {
                            writeln!(out, "user catalog {}: {} entries", p, user.len())?
                        }
                        (Some(p), None) => writeln!(
                            out,
                            "user catalog {}: not created yet (catalog add / import create it)",
                            p
                        )?,
                        (None, _) => writeln!(out, "user catalog: no location (pass --catalog)")?,
                    }
                    let s = builtin::stats();
                    writeln!(
                        out,
                        "built-in: GNS3 registry {} ({}): {} current and {} superseded entries{}",
                        builtin::REGISTRY_COMMIT.get(..8).unwrap_or_default(),
                        builtin::REGISTRY_DATE,
                        s.current,
                        s.superseded,
                        if *all { "" } else { " (--all lists them)" }
                    )?;
                }
            }
        }
        CatalogCommand::Show { output, id } => {
            let parsed = EntryId::parse(id)
                .with_context(|| format!("'{id}' is not an entry ID (N or gns3:N)"))?;
            let entry = match parsed {
                EntryId::Builtin(_) => builtin::get(parsed).cloned(),
                EntryId::User(n) => {
                    let p = catalog_path(path_opt)?;
                    match Store::open_read_only(&p)? {
                        Some(s) => s.entry(n)?,
                        None => None,
                    }
                }
                EntryId::Adhoc(_) => None,
            };
            let entry = entry.ok_or_else(|| CatalogError::NoSuchEntry(id.clone()))?;
            match output {
                OutputFormat::Json => write_json(out, &entry_json(&entry))?,
                OutputFormat::Human => write_entry_human(out, &entry)?,
            }
        }
        CatalogCommand::Remove { id } => {
            let n = match EntryId::parse(id) {
                Some(EntryId::User(n)) => n,
                Some(EntryId::Builtin(_)) => {
                    return Err(CatalogError::BuiltinReadOnly(id.clone()).into())
                }
                _ => bail!("'{id}' is not a user entry ID (a number)"),
            };
            let p = catalog_path(path_opt)?;
            if Store::open_read_only(&p)?.is_none() {
                return Err(CatalogError::NoSuchEntry(id.clone()).into());
            }
            let mut store = Store::open_or_create(&p)?;
            if !store.remove(n)? {
                return Err(CatalogError::NoSuchEntry(id.clone()).into());
            }
            writeln!(out, "removed entry {n} from {}", p)?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn write_entry_row(out: &mut dyn Write, e: &Entry) -> Result<()> {
    let r = &e.reference;
    let mut name = r.filename.clone().unwrap_or_else(|| "-".into());
    if let Some(v) = &r.version {
        name.push_str(&format!(" ({v})"));
    }
    let mut digests: Vec<&str> = r.digests.keys().map(|a| a.name()).collect();
    if r.content.is_some() {
        digests.push("content");
    }
    if r.superseded {
        digests.push("[superseded]");
    }
    writeln!(
        out,
        "{:<10} {:<13} {:<32} {:<44} {:>12}  {}",
        e.id.to_string(),
        e.source,
        r.label,
        name,
        r.size.map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
        digests.join(" ")
    )?;
    Ok(())
}

fn write_entry_human(out: &mut dyn Write, e: &Entry) -> Result<()> {
    let r = &e.reference;
    let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
    writeln!(out, "id:            {}", e.id)?;
    writeln!(out, "source:        {}", e.source)?;
    writeln!(out, "label:         {}", r.label)?;
    writeln!(out, "filename:      {}", opt(&r.filename))?;
    writeln!(out, "version:       {}", opt(&r.version))?;
    writeln!(
        out,
        "size:          {}",
        r.size.map(|s| s.to_string()).unwrap_or_else(|| "-".into())
    )?;
    writeln!(
        out,
        "superseded:    {}",
        if r.superseded { "yes" } else { "no" }
    )?;
    if let Some(f) = &r.imported_from {
        writeln!(out, "imported from: {f}")?;
    }
    for (a, h) in &r.digests {
        writeln!(out, "{:<14} {h}", format!("{a}:"))?;
    }
    if let Some(c) = &r.content {
        writeln!(out, "content root:  {}", c.root)?;
        writeln!(out, "content sha256: {}", c.sha256)?;
        writeln!(out, "virtual size:  {}", c.virtual_size)?;
        if let Some(m) = &c.manifest {
            writeln!(out, "manifest:      {} bytes", m.len())?;
        }
    }
    Ok(())
}
