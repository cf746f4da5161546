//! `qvet fleet`: every image the catalog knows across hosts. One entry per
//! content (file digest): its verify verdict and latest audit verdict,
//! every copy as host:path, copies under other names, overlays and whether
//! their backing file was seen, and copies not scanned for N days.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use qvet_catalog::store::{AuditRecord, ScanRecord};
use qvet_catalog::Store;
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{json, Value};

/// Output formats of `qvet fleet`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FleetOutput {
    /// For people: one block per image.
    Human,
    /// One object per image.
    Json,
    /// The self-contained fleet page (as `scan --html` writes).
    Html,
}

/// `qvet fleet` arguments.
#[derive(Debug, Args)]
pub struct FleetArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    pub output: FleetOutput,
    /// Catalog: an SQLite file or postgres://user@host/db (read only)
    /// [default: $QVET_CATALOG, else the user catalog].
    #[arg(long, value_name = "PATH|URL")]
    pub catalog: Option<PathBuf>,
    /// Copies not scanned for this many days are listed as stale.
    #[arg(long, value_name = "N", default_value_t = 30)]
    pub stale_days: u64,
    /// Also write the fleet page to FILE.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

/// A sequence serialised item by item, each built only when written.
struct Lazy<'a, T>(&'a [T], &'a dyn Fn(&T) -> Value);

impl<T> Serialize for Lazy<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(self.1))
    }
}

/// One copy of an image.
struct Copy<'a> {
    rec: &'a ScanRecord,
    name: String,
    stale: bool,
}

/// One image: every copy with the same content.
struct Image<'a> {
    digest: Option<String>,
    copies: Vec<Copy<'a>>,
    audit: Option<&'a AuditRecord>,
}

impl Image<'_> {
    /// The most recently scanned copy speaks for the image.
    fn latest(&self) -> Option<&ScanRecord> {
        self.copies
            .iter()
            .map(|c| c.rec)
            .max_by_key(|r| r.scanned_at)
    }

    fn names(&self) -> BTreeSet<&str> {
        self.copies.iter().map(|c| c.name.as_str()).collect()
    }
}

fn base(path: &str) -> String {
    path.rsplit('/').next().unwrap_or(path).to_string()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn group<'a>(
    scans: &'a [ScanRecord],
    audits: &'a [AuditRecord],
    stale_days: u64,
) -> Vec<Image<'a>> {
    let limit =
        now().saturating_sub(i64::try_from(stale_days.saturating_mul(86_400)).unwrap_or(i64::MAX));
    let mut by_key: HashMap<String, usize> = HashMap::new();
    let mut images: Vec<Image<'a>> = Vec::new();
    for rec in scans {
        let digest = rec.digest_key.clone();
        let key = digest
            .clone()
            .unwrap_or_else(|| format!("path:{}:{}", rec.host, rec.row.path));
        let i = *by_key.entry(key).or_insert_with(|| {
            images.push(Image {
                digest,
                copies: Vec::new(),
                audit: None,
            });
            images.len() - 1
        });
        if let Some(img) = images.get_mut(i) {
            img.copies.push(Copy {
                rec,
                name: base(&rec.row.path),
                stale: rec.scanned_at < limit,
            });
        }
    }
    // The latest audit of any copy, of this content (or of unknown digest).
    let mut audit_of: HashMap<(&str, &str), Vec<&AuditRecord>> = HashMap::new();
    for a in audits {
        audit_of
            .entry((a.host.as_str(), a.path.as_str()))
            .or_default()
            .push(a);
    }
    for img in &mut images {
        let want = img.digest.clone().unwrap_or_default();
        img.audit = img
            .copies
            .iter()
            .filter_map(|c| audit_of.get(&(c.rec.host.as_str(), c.rec.row.path.as_str())))
            .flatten()
            .filter(|a| a.digest == want || a.digest.is_empty())
            .max_by_key(|a| a.audited_at)
            .copied();
    }
    images.sort_by(|a, b| {
        let n = |i: &Image<'_>| i.copies.first().map(|c| c.name.clone());
        n(a).cmp(&n(b)).then(a.digest.cmp(&b.digest))
    });
    images
}

fn audit_json(a: &AuditRecord) -> Value {
    json!({
        "verdict": a.verdict,
        "host": a.host,
        "path": a.path,
        "audited_at": a.audited_at,
        "counts": serde_json::from_str::<Value>(&a.counts).unwrap_or(Value::Null),
        "findings": serde_json::from_str::<Value>(&a.findings).unwrap_or(Value::Null),
    })
}

/// Runs `qvet fleet`.
pub fn run(args: &FleetArgs, out: &mut dyn Write) -> Result<ExitCode> {
    let location = crate::catalog_cmd::catalog_path(args.catalog.as_deref())?;
    let store = Store::open_read_only(&location)?.with_context(|| {
        format!("no catalog at {location} yet: `qvet scan --catalog … DIR` fills it")
    })?;
    let scans = store.scans(false)?;
    let audits = store.audits()?;
    let images = group(&scans, &audits, args.stale_days);
    // (host, path) → image index, to tell whether an overlay's backing file
    // is known.
    let mut at: HashMap<(&str, &str), usize> = HashMap::new();
    for (i, img) in images.iter().enumerate() {
        for c in &img.copies {
            at.insert((c.rec.host.as_str(), c.rec.row.path.as_str()), i);
        }
    }
    let backing_of = |c: &Copy<'_>| -> Option<(String, Option<&Image<'_>>)> {
        let b = c.rec.row.backing.clone()?;
        let found = at
            .get(&(c.rec.host.as_str(), b.as_str()))
            .and_then(|i| images.get(*i));
        Some((b, found))
    };
    let hosts: BTreeSet<&str> = scans.iter().map(|s| s.host.as_str()).collect();
    let renamed = images.iter().filter(|i| i.names().len() > 1).count();
    let overlays = scans.iter().filter(|s| s.row.backing.is_some()).count();
    let stale = images
        .iter()
        .flat_map(|i| &i.copies)
        .filter(|c| c.stale)
        .count();
    // Keys in snake_case, like every key of qvet's JSON.
    let mut verdicts: BTreeMap<String, usize> = BTreeMap::new();
    for img in &images {
        if let Some(l) = img.latest() {
            *verdicts
                .entry(l.row.verdict_name.replace('-', "_"))
                .or_default() += 1;
        }
    }
    let summary = json!({
        "images": images.len(),
        "copies": scans.len(),
        "hosts": hosts.len(),
        "same_content_other_names": renamed,
        "overlays": overlays,
        "stale_copies": stale,
        "verdicts": verdicts,
    });

    let rows = || -> Vec<crate::report_html::FleetRow> {
        let mut rows = Vec::new();
        for img in &images {
            for c in &img.copies {
                let here = format!("{}:{}", c.rec.host, c.rec.row.path);
                let mut detail = c.rec.row.label.clone().unwrap_or_default();
                if let Some(a) = img.audit {
                    detail.push_str(&format!(" [audit: {}]", a.verdict));
                }
                if c.stale {
                    detail.push_str(" [stale]");
                }
                rows.push(crate::report_html::FleetRow {
                    path: here.clone(),
                    size: c.rec.row.key.size,
                    verdict: c.rec.row.verdict_name.clone(),
                    detail: detail.trim().to_string(),
                    duplicates: img
                        .copies
                        .iter()
                        .map(|o| format!("{}:{}", o.rec.host, o.rec.row.path))
                        .filter(|o| *o != here)
                        .collect(),
                    backing: c.rec.row.backing.clone(),
                });
            }
        }
        rows
    };

    match args.output {
        FleetOutput::Html => {
            out.write_all(crate::report_html::fleet_page(&rows()).as_bytes())?;
        }
        FleetOutput::Json => {
            let image_json = |img: &Image<'_>| -> Value {
                let latest = img.latest();
                let first_name = img.copies.first().map(|c| c.name.clone());
                json!({
                    "digest": img.digest,
                    "size": latest.map(|l| l.row.key.size),
                    "verdict": latest.map(|l| l.row.verdict_name.clone()),
                    "label": latest.and_then(|l| l.row.label.clone()),
                    "audit": img.audit.map(audit_json),
                    "names": img.names(),
                    "copies": img.copies.iter().map(|c| {
                        let mut v = json!({
                            "host": c.rec.host,
                            "path": c.rec.row.path,
                            "scanned_at": c.rec.scanned_at,
                            "stale": c.stale,
                            "other_name": Some(&c.name) != first_name.as_ref(),
                        });
                        if let (Some((b, found)), Some(o)) = (backing_of(c), v.as_object_mut()) {
                            o.insert("backing".into(), json!({
                                "path": b,
                                "known": found.is_some(),
                                "digest": found.and_then(|f| f.digest.clone()),
                                "verdict": found.and_then(|f| f.latest()).map(|l| l.row.verdict_name.clone()),
                            }));
                        }
                        v
                    }).collect::<Vec<_>>(),
                })
            };
            // One image's tree at a time: 100,000 copies stay fast.
            let mut ser = serde_json::Serializer::pretty(&mut *out);
            let mut m = ser.serialize_map(Some(5))?;
            m.serialize_entry("schema", "qvet-fleet-v1")?;
            m.serialize_entry("catalog", &location.to_string())?;
            m.serialize_entry("stale_days", &args.stale_days)?;
            m.serialize_entry("images", &Lazy(&images, &image_json))?;
            m.serialize_entry("summary", &summary)?;
            m.end()?;
            writeln!(out)?;
        }
        FleetOutput::Human => {
            let mut text = String::new();
            for img in &images {
                let Some(l) = img.latest() else { continue };
                let audit = img.audit.map_or("-", |a| a.verdict.as_str());
                text.push_str(&format!(
                    "{:<18} audit {:<12} {:>12}  {} cop{}  {}\n",
                    l.row.verdict_name,
                    audit,
                    l.row.key.size,
                    img.copies.len(),
                    if img.copies.len() == 1 { "y" } else { "ies" },
                    img.digest.as_deref().unwrap_or("(not hashed)"),
                ));
                if let Some(label) = &l.row.label {
                    text.push_str(&format!("    {label}\n"));
                }
                let first = img.copies.first().map(|c| c.name.as_str());
                for c in &img.copies {
                    let mut notes = Vec::new();
                    if Some(c.name.as_str()) != first {
                        notes.push("same content, other name".to_string());
                    }
                    if c.stale {
                        notes.push(format!(
                            "stale: not seen for {} days",
                            (now() - c.rec.scanned_at) / 86_400
                        ));
                    }
                    if let Some((b, found)) = backing_of(c) {
                        notes.push(match found.and_then(|f| f.latest()) {
                            Some(f) => format!("overlay of {b} ({})", f.row.verdict_name),
                            None => format!("overlay of {b} (backing file not scanned)"),
                        });
                    }
                    text.push_str(&format!("    {}:{}", c.rec.host, c.rec.row.path));
                    if !notes.is_empty() {
                        text.push_str(&format!("  [{}]", notes.join("; ")));
                    }
                    text.push('\n');
                }
            }
            text.push_str(&format!(
                "{} image(s), {} cop{} on {} host(s): {} with copies under other names, {} overlay(s), {} stale cop{} (> {} days) ({location})\n",
                images.len(),
                scans.len(),
                if scans.len() == 1 { "y" } else { "ies" },
                hosts.len(),
                renamed,
                overlays,
                stale,
                if stale == 1 { "y" } else { "ies" },
                args.stale_days,
            ));
            out.write_all(text.as_bytes())?;
        }
    }
    if let Some(h) = &args.html {
        qvet_write::write_file_atomic(h, crate::report_html::fleet_page(&rows()).as_bytes())
            .with_context(|| format!("writing the fleet page {}", h.display()))?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
