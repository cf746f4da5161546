//! `qvet scan`: every image under some directories, verified in parallel,
//! with results cached in the catalog database.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use qvet_catalog::scan::{discover, scan, ScanItem, Why, DEFAULT_MAX_DEPTH};
use qvet_catalog::{Catalog, Store};
use serde_json::{json, Value};

use crate::verify_cmd::{evidence, exit_code};
use crate::OutputFormat;

/// `qvet scan` arguments.
#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    pub output: OutputFormat,
    /// Catalog: an SQLite file or postgres://user@host/db shared by many
    /// hosts; also holds the scan results (created if needed; nothing is
    /// ever written next to the images) [default: $QVET_CATALOG, else the
    /// user catalog].
    #[arg(long, value_name = "PATH|URL")]
    pub catalog: Option<PathBuf>,
    /// Name of this host in the catalog's scan results [default: the
    /// machine's host name].
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,
    /// Directory levels to descend below each DIR.
    #[arg(long, default_value_t = DEFAULT_MAX_DEPTH)]
    pub max_depth: usize,
    /// No progress bar.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Also write the fleet page (one row per image: verdict, size, where,
    /// copies of the same content, overlays and their backing files) to FILE.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Directories to search (EVE-NG /opt/unetlab/addons/qemu, GNS3 images
    /// folders, libvirt pools, anything), or image files.
    #[arg(required = true, value_name = "DIR")]
    pub dirs: Vec<PathBuf>,
}

fn why_name(w: Why) -> &'static str {
    match w {
        Why::Argument => "argument",
        Why::Magic => "qcow2-magic",
        Why::Extension => "extension",
        Why::KnownName => "catalog-name",
    }
}

/// Runs `qvet scan`.
pub fn run(args: &ScanArgs, out: &mut dyn Write) -> Result<ExitCode> {
    let path = crate::catalog_cmd::catalog_path(args.catalog.as_deref())?;
    let mut store = Store::open_or_create(&path)?;
    let catalog = Catalog::load(Some(&store))?;
    let host = args
        .host
        .clone()
        .unwrap_or_else(qvet_catalog::store::local_hostname);
    let found = discover(&args.dirs, args.max_depth, &catalog);
    let total: u64 = found.images.iter().map(|f| f.key.size).sum();
    let bar = crate::progress_bar(total, args.quiet);
    let items = scan(&catalog, &mut store, &host, found.images, &|x| {
        bar.set_position(x)
    });
    bar.finish_and_clear();
    let items = items?;

    // Overlays whose backing file is among the images scanned.
    let by_path: HashMap<PathBuf, (String, &'static str)> = items
        .iter()
        .filter_map(|i| {
            let a = i.outcome.as_ref().ok()?;
            Some((
                i.found.canonical.clone(),
                (i.found.path.display().to_string(), a.report.verdict.name()),
            ))
        })
        .collect();
    let backing_of = |i: &ScanItem| -> Option<(String, &'static str)> {
        let o = i.outcome.as_ref().ok()?.report.overlay.as_ref()?;
        let canon = std::fs::canonicalize(&o.backing_path).ok()?;
        by_path.get(&canon).cloned()
    };

    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let (mut cached, mut hashed) = (0usize, 0usize);
    for i in &items {
        let name = match &i.outcome {
            Ok(a) => a.report.verdict.name(),
            Err(_) => "error",
        };
        *counts.entry(name).or_default() += 1;
        if i.outcome.is_ok() {
            if i.cached {
                cached += 1;
            } else {
                hashed += 1;
            }
        }
    }
    let n = |k: &str| counts.get(k).copied().unwrap_or(0);
    let summary = json!({
        "images": items.len(),
        "genuine": n("genuine"),
        "content_identical": n("content-identical"),
        "mismatch": n("mismatch"),
        "unknown": n("unknown"),
        "errors": n("error"),
        "hashed": hashed,
        "cached": cached,
    });

    match args.output {
        OutputFormat::Json => {
            let images: Vec<Value> = items
                .iter()
                .map(|i| {
                    let mut v = match &i.outcome {
                        Ok(a) => a.report.to_json(),
                        Err(e) => json!({
                            "filename": i.found.path.display().to_string(),
                            "verdict": "error",
                            "error": e.to_string(),
                        }),
                    };
                    if let Some(o) = v.as_object_mut() {
                        o.insert("path".into(), json!(i.found.path.display().to_string()));
                        o.insert("found_by".into(), json!(why_name(i.found.why)));
                        o.insert("cached".into(), json!(i.cached));
                        if let Some((p, verdict)) = backing_of(i) {
                            if let Some(ov) = o.get_mut("overlay").and_then(Value::as_object_mut) {
                                ov.insert(
                                    "backing_scanned".into(),
                                    json!({"path": p, "verdict": verdict}),
                                );
                            }
                        }
                    }
                    v
                })
                .collect();
            serde_json::to_writer_pretty(
                &mut *out,
                &crate::with_schema(
                    "scan",
                    json!({
                        "catalog": path.to_string(),
                        "host": host,
                        "roots": args.dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>(),
                        "images": images,
                        "skipped": found.skipped,
                        "summary": summary,
                    }),
                ),
            )?;
            writeln!(out)?;
        }
        OutputFormat::Human => {
            writeln!(
                out,
                "{:<18} {:<6} {:>12}  {:<48} EVIDENCE",
                "VERDICT", "CACHED", "SIZE", "PATH"
            )?;
            for i in &items {
                match &i.outcome {
                    Ok(a) => {
                        let r = &a.report;
                        let mut ev = evidence(r);
                        if let Some((p, verdict)) = backing_of(i) {
                            ev.push_str(&format!(" (scanned: {p}, {verdict})"));
                        }
                        writeln!(
                            out,
                            "{:<18} {:<6} {:>12}  {:<48} {ev}",
                            r.verdict.name(),
                            if i.cached { "yes" } else { "no" },
                            r.size,
                            i.found.path.display()
                        )?;
                    }
                    Err(e) => writeln!(
                        out,
                        "{:<18} {:<6} {:>12}  {:<48} {e}",
                        "error",
                        "-",
                        i.found.key.size,
                        i.found.path.display()
                    )?,
                }
            }
            for s in &found.skipped {
                let _ = writeln!(io::stderr(), "qvet: skipped {s}");
            }
            writeln!(
                out,
                "{} image(s): {} genuine, {} content-identical, {} mismatch, {} unknown, {} error(s); {hashed} hashed, {cached} from cache ({})",
                items.len(),
                n("genuine"),
                n("content-identical"),
                n("mismatch"),
                n("unknown"),
                n("error"),
                path
            )?;
        }
    }
    if let Some(h) = &args.html {
        let page = crate::report_html::fleet_page(&fleet_rows(&items));
        qvet_write::write_file_atomic(h, page.as_bytes())
            .with_context(|| format!("writing the fleet page {}", h.display()))?;
    }
    out.flush()?;
    Ok(exit_code(items.iter().map(|i| {
        i.outcome.as_ref().ok().map(|a| a.report.verdict)
    })))
}

/// The fleet page's rows: copies are images sharing a file digest.
fn fleet_rows(items: &[ScanItem]) -> Vec<crate::report_html::FleetRow> {
    let key = |i: &ScanItem| -> Option<String> {
        let d = &i.outcome.as_ref().ok()?.report.digests;
        d.iter()
            .next_back()
            .map(|(a, v)| format!("{}:{v}", a.name()))
    };
    let mut by_digest: HashMap<String, Vec<String>> = HashMap::new();
    for i in items {
        if let Some(k) = key(i) {
            by_digest
                .entry(k)
                .or_default()
                .push(i.found.path.display().to_string());
        }
    }
    items
        .iter()
        .map(|i| {
            let path = i.found.path.display().to_string();
            let duplicates = key(i)
                .and_then(|k| by_digest.get(&k))
                .map(|v| v.iter().filter(|p| **p != path).cloned().collect())
                .unwrap_or_default();
            match &i.outcome {
                Ok(a) => crate::report_html::FleetRow {
                    path,
                    size: a.report.size,
                    verdict: a.report.verdict.name().to_string(),
                    detail: evidence(&a.report),
                    duplicates,
                    backing: a.report.overlay.as_ref().map(|o| o.backing_path.clone()),
                },
                Err(e) => crate::report_html::FleetRow {
                    path,
                    size: i.found.key.size,
                    verdict: "error".into(),
                    detail: e.to_string(),
                    duplicates,
                    backing: None,
                },
            }
        })
        .collect()
}
